//! The run configuration: one TOML file shared by every role.
//!
//! Unknown keys are rejected, and every error names the file and the key
//! path (`env.max_episode_steps: invalid type: string "long", expected u64`).
//! Sections for the learner, replay and actors are added by the issues that
//! build them; today the file describes the environment.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The whole configuration file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Base seed of the run; env `i` of a vector gets `seed + i`.
    #[serde(default)]
    pub seed: u64,
    /// The environment every actor runs.
    pub env: EnvConfig,
}

/// `[env]`: which registered env to make and how.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvConfig {
    /// A registered id, e.g. `"CartPole-v1"` (see `cml-rl envs`).
    pub id: String,
    /// Overrides the registered time limit (Gymnasium's `max_episode_steps`).
    #[serde(default)]
    pub max_episode_steps: Option<u64>,
    /// The env's own parameters, handed to its factory unchanged
    /// (`[env.params]`), e.g. `g = 9.81` for Pendulum-v1.
    #[serde(default)]
    pub params: toml::Table,
}

/// A config that could not be read; the message names the file and the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: {message}")]
    Invalid { file: PathBuf, message: String },
}

impl Config {
    /// Reads and checks a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text).map_err(|message| ConfigError::Invalid {
            file: path.to_path_buf(),
            message,
        })
    }

    /// Parses config text; the error names the key path.
    pub fn parse(text: &str) -> Result<Config, String> {
        let de = toml::Deserializer::new(text);
        let config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            // toml's own message starts with a location and a snippet; the
            // last line is the reason.
            let reason = inner.message().trim().to_string();
            let at = inner
                .span()
                .map(|span| {
                    let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                    format!(" (line {line})")
                })
                .unwrap_or_default();
            if path.is_empty() || path == "." {
                format!("{reason}{at}")
            } else {
                format!("{path}: {reason}{at}")
            }
        })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        if self.env.max_episode_steps == Some(0) {
            return Err("env.max_episode_steps: must be at least 1".to_string());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_config_parses_with_defaults() {
        let c = Config::parse("[env]\nid = \"CartPole-v1\"\n").unwrap();
        assert_eq!(c.env.id, "CartPole-v1");
        assert_eq!(c.seed, 0);
        assert!(c.env.params.is_empty());
        assert_eq!(c.env.max_episode_steps, None);
    }

    #[test]
    fn params_are_kept_as_a_table() {
        let c = Config::parse("[env]\nid = \"Pendulum-v1\"\n[env.params]\ng = 9.81\n").unwrap();
        assert_eq!(c.env.params.get("g").and_then(|v| v.as_float()), Some(9.81));
    }

    #[test]
    fn errors_name_the_key_path() {
        let e = Config::parse("[env]\nid = \"CartPole-v1\"\nmax_episode_steps = \"long\"\n").unwrap_err();
        assert!(e.starts_with("env.max_episode_steps: "), "{e}");
        assert!(e.contains("line 3"), "{e}");
        let e = Config::parse("[env]\nid = \"CartPole-v1\"\nspeed = 3\n").unwrap_err();
        assert!(e.contains("unknown field `speed`"), "{e}");
        let e = Config::parse("seed = 1\n").unwrap_err();
        assert!(e.contains("missing field `env`"), "{e}");
        let e = Config::parse("[env]\nid = \"CartPole-v1\"\nmax_episode_steps = 0\n").unwrap_err();
        assert!(e.contains("at least 1"), "{e}");
        let e = Config::parse("[env\n").unwrap_err();
        assert!(e.contains("line 1"), "{e}");
    }

    #[test]
    fn load_names_the_file() {
        let e = Config::load(Path::new("/nonexistent/cml.toml")).unwrap_err();
        assert!(e.to_string().starts_with("/nonexistent/cml.toml: cannot read"), "{e}");
    }
}
