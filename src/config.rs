//! The run configuration: one TOML file shared by every role, composed of
//! the sections each crate owns (`[actor]` in cml-actors, `[model]` in
//! cml-policy, `[learner]`/`[train]` in cml-run with `[learner.optimizer]`
//! and `[learner.loss]` in cml-learner, `[replay]` in cml-replay,
//! `[transport]` in cml-proto); `[env]` and `[cluster]` are the binary's.
//! Each crate holds its section's defaults and checks; this file adds the
//! section path and the file name to their errors.
//!
//! Unknown keys are rejected, and every error names the file and the key
//! path (`env.max_episode_steps: invalid type: string "long", expected u64`).
//! Every section but `[env]` has defaults, so a minimal config is two lines.

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
    #[serde(default)]
    pub actor: cml_actors::ActorConfig,
    #[serde(default)]
    pub model: cml_policy::NetConfig,
    #[serde(default)]
    pub learner: cml_run::config::LearnerSection,
    #[serde(default)]
    pub train: cml_run::config::TrainSection,
    #[serde(default)]
    pub cluster: ClusterConfig,
    #[serde(default)]
    pub replay: cml_replay::ReplayConfig,
    #[serde(default)]
    pub transport: cml_proto::config::TransportConfig,
    /// Directory of the config file; relative paths in it are resolved
    /// against it.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

/// serde's Rust type names in an error, said as a config author would
/// (`expected f64` becomes `expected a number`).
fn plain_types(message: &str) -> String {
    let mut out = message.to_string();
    for (rust, plain) in [
        ("expected f64", "expected a number"),
        ("expected f32", "expected a number"),
        ("expected u64", "expected a whole number >= 0"),
        ("expected u32", "expected a whole number >= 0"),
        ("expected u16", "expected a whole number >= 0"),
        ("expected usize", "expected a whole number >= 0"),
        ("expected i64", "expected a whole number"),
        ("expected a boolean", "expected true or false"),
    ] {
        out = out.replace(rust, plain);
    }
    out
}

/// `[cluster]`: where each role runs, for runs across hosts. When set,
/// these take precedence over `replay.host`/`replay.endpoints` and the
/// learner's endpoint strings.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// The learner's address: weights on `tcp://{learner_host}:{weights_port}`
    /// (PUB) and `:{weights_request_port}` (ROUTER).
    pub learner_host: Option<String>,
    pub weights_port: Option<u16>,
    pub weights_request_port: Option<u16>,
    /// Replay shard i runs on `replay_hosts[i % len]`, port `replay.base_port + i`.
    pub replay_hosts: Option<Vec<String>>,
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
    /// `gymnasium:` ids: keyword arguments for `gymnasium.make` (`[env.kwargs]`).
    #[serde(default)]
    pub kwargs: toml::Table,
    /// `gymnasium:` ids: wrappers from `gymnasium.wrappers`, applied in order.
    #[serde(default)]
    pub wrappers: Vec<WrapperConfig>,
    /// `gymnasium:` ids: the Python interpreter (default `python3` on PATH;
    /// a relative path with a `/` is taken from the config's directory).
    #[serde(default)]
    pub python: Option<String>,
    /// `gymnasium:` ids: modules to import first, e.g. `["ale_py"]`.
    #[serde(default)]
    pub import: Vec<String>,
    /// `gymnasium:` ids: seconds a Python worker may take on one step before
    /// it counts as hung.
    #[serde(default)]
    pub step_timeout_s: Option<f64>,
    /// `gymnasium:` ids: `"none"` (K envs from `gymnasium.make`, the
    /// default) or `"vector_entry_point"` (the id's own batched vector env,
    /// e.g. ale_py's C++ `AtariVectorEnv`; `[env.kwargs]` are its options).
    #[serde(default)]
    pub vectorization: Option<cml_pyenvs::Vectorization>,
    /// `gymnasium:` ids: `"hwc"` (default) or `"chw"` for envs whose image
    /// observations are channels first; they are stored channels last.
    #[serde(default)]
    pub observation_layout: Option<cml_pyenvs::ObservationLayout>,
    /// `gymnasium:` ids: a life lost (`info["lives"]` falls) ends the
    /// episode for learning while the game, and the return reported, go on.
    #[serde(default)]
    pub episodic_life: Option<bool>,
}

/// One `[[env.wrappers]]` entry: a class of `gymnasium.wrappers` and its
/// keyword arguments.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WrapperConfig {
    pub name: String,
    #[serde(default)]
    pub args: toml::Table,
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
    /// Endpoint of every replay shard, in shard order (`[cluster]` first).
    pub fn replay_endpoints(&self) -> Vec<String> {
        match &self.cluster.replay_hosts {
            Some(hosts) if !hosts.is_empty() => (0..self.replay.shards)
                .map(|i| {
                    let host = &hosts[i as usize % hosts.len()];
                    format!("tcp://{host}:{}", u32::from(self.replay.base_port) + i)
                })
                .collect(),
            _ => self.replay.shard_endpoints(),
        }
    }

    /// The learner's (PUB, ROUTER) weight endpoints (`[cluster]` first).
    pub fn weights_endpoints(&self) -> (String, String) {
        match &self.cluster.learner_host {
            Some(host) => (
                format!("tcp://{host}:{}", self.cluster.weights_port.unwrap_or(5550)),
                format!("tcp://{host}:{}", self.cluster.weights_request_port.unwrap_or(5551)),
            ),
            None => (
                self.learner.weights_endpoint.clone(),
                self.learner.weights_request_endpoint.clone(),
            ),
        }
    }

    /// The configured env's unroll layout.
    pub fn unroll_layout(&self) -> Result<cml_proto::UnrollLayout, cml_run::RunError> {
        cml_run::plumbing::unroll_layout(&self.env.id, &self.env.params, self.actor.unroll_length, &self.model)
    }

    /// The shape of one observation of the configured env.
    pub fn observation_shape(&self) -> Result<Vec<usize>, cml_run::RunError> {
        cml_run::plumbing::observation_shape(&self.env.id, &self.env.params)
    }

    /// The shared key (`transport.key_file`, or the one `train` hands down).
    pub fn read_key(&self) -> Result<cml_proto::SharedKey, cml_run::RunError> {
        cml_run::plumbing::read_key(&self.transport, &self.base_dir)
    }

    /// Reads and checks a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: path.to_path_buf(),
            source,
        })?;
        let mut config = Config::parse(&text).map_err(|message| ConfigError::Invalid {
            file: path.to_path_buf(),
            message,
        })?;
        config.base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        if let Some(gymnasium) = config.gymnasium_env() {
            cml_pyenvs::register(&gymnasium).map_err(|e| ConfigError::Invalid {
                file: path.to_path_buf(),
                message: format!("env: {e}"),
            })?;
        }
        Ok(config)
    }

    /// The Python env a `gymnasium:` id names, with its `[env]` keys.
    pub fn gymnasium_env(&self) -> Option<cml_pyenvs::GymnasiumEnv> {
        let id = self.env.id.strip_prefix(cml_pyenvs::GYMNASIUM_PREFIX)?;
        let mut env = cml_pyenvs::GymnasiumEnv::new(id);
        env.kwargs = self.env.kwargs.clone();
        env.wrappers = self
            .env
            .wrappers
            .iter()
            .map(|w| (w.name.clone(), w.args.clone()))
            .collect();
        env.import = self.env.import.clone();
        if let Some(python) = &self.env.python {
            env.python = if python.contains('/') {
                self.resolve(Path::new(python)).to_string_lossy().into_owned()
            } else {
                python.clone()
            };
        }
        if let Some(seconds) = self.env.step_timeout_s {
            env.step_timeout = std::time::Duration::from_secs_f64(seconds);
        }
        env.vectorization = self.env.vectorization.unwrap_or_default();
        env.observation_layout = self.env.observation_layout.unwrap_or_default();
        env.episodic_life = self.env.episodic_life.unwrap_or(false);
        Some(env)
    }

    /// A path from the config, resolved against the config file's directory.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.base_dir.join(path)
        }
    }

    /// Parses config text; the error names the key path.
    pub fn parse(text: &str) -> Result<Config, String> {
        let de = toml::Deserializer::new(text);
        let config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            // toml's own message starts with a location and a snippet; the
            // last line is the reason.
            let reason = plain_types(inner.message().trim());
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

    /// Each section's own checks, with the section path added.
    fn validate(&self) -> Result<(), String> {
        if self.env.max_episode_steps == Some(0) {
            return Err("env.max_episode_steps: must be at least 1".to_string());
        }
        if !self.env.id.starts_with(cml_pyenvs::GYMNASIUM_PREFIX) {
            let python_keys = [
                ("kwargs", !self.env.kwargs.is_empty()),
                ("wrappers", !self.env.wrappers.is_empty()),
                ("python", self.env.python.is_some()),
                ("import", !self.env.import.is_empty()),
                ("step_timeout_s", self.env.step_timeout_s.is_some()),
                ("vectorization", self.env.vectorization.is_some()),
                ("observation_layout", self.env.observation_layout.is_some()),
                ("episodic_life", self.env.episodic_life.is_some()),
            ];
            if let Some((key, _)) = python_keys.iter().find(|(_, set)| *set) {
                return Err(format!(
                    "env.{key}: only for Python envs (ids starting with `gymnasium:`); `{}` is a Rust env \
                     (its parameters go in [env.params])",
                    self.env.id
                ));
            }
        } else if !self.env.params.is_empty() {
            return Err("env.params: Python envs take [env.kwargs] (handed to gymnasium.make)".to_string());
        } else if self.env.kwargs.get("episodic_life").and_then(|v| v.as_bool()) == Some(true)
            && self.env.id.starts_with("gymnasium:ALE/")
        {
            return Err(
                "env.kwargs.episodic_life: ale_py's own episodic life makes each life an episode, and \
                        the returns reported would be per life; use [env] episodic_life = true (the game's \
                        score is reported)"
                    .to_string(),
            );
        }
        if self.env.id.starts_with(cml_pyenvs::GYMNASIUM_PREFIX)
            && self.env.vectorization == Some(cml_pyenvs::Vectorization::VectorEntryPoint)
        {
            if !self.env.wrappers.is_empty() {
                return Err(
                    "env.wrappers: not with vectorization = \"vector_entry_point\" (wrappers wrap single \
                            envs; give the vector env's own options in [env.kwargs])"
                        .to_string(),
                );
            }
            if self.env.max_episode_steps.is_some() {
                return Err(
                    "env.max_episode_steps: not with vectorization = \"vector_entry_point\" (give the \
                            vector env's own limit in [env.kwargs], for ALE `max_num_frames_per_episode`)"
                        .to_string(),
                );
            }
        }
        if let Some(seconds) = self.env.step_timeout_s {
            if !(seconds.is_finite() && seconds > 0.0) {
                return Err(format!(
                    "env.step_timeout_s: must be a positive number of seconds, got {seconds}"
                ));
            }
        }
        fn within(section: &'static str) -> impl Fn(String) -> String {
            move |e| format!("{section}.{e}")
        }
        self.actor.validate().map_err(within("actor"))?;
        self.model.validate().map_err(within("model"))?;
        self.learner.validate().map_err(within("learner"))?;
        self.train.validate().map_err(within("train"))?;
        self.replay.validate().map_err(within("replay"))?;
        self.transport.validate().map_err(within("transport"))?;
        if self.learner.replay_ratio.is_some() && self.replay.mode == cml_replay::index::SamplingMode::Queue {
            return Err(
                "learner.replay_ratio: replay.mode = \"queue\" uses each unroll once (a ratio of 1); \
                 use \"prioritized\" or \"uniform\" to set another"
                    .to_string(),
            );
        }
        if let (Some(ratio), Some(cap)) = (self.learner.replay_ratio, self.replay.max_samples_per_item) {
            if ratio > f64::from(cap) {
                return Err(format!(
                    "learner.replay_ratio: {ratio} draws per unroll cannot happen when replay.max_samples_per_item = {cap} \
                     retires each unroll after {cap}"
                ));
            }
        }
        let queue_frames =
            self.replay.capacity as u64 * u64::from(self.replay.shards) * u64::from(self.actor.unroll_length);
        if self.replay.mode == cml_replay::index::SamplingMode::Queue && self.learner.learning_starts > queue_frames {
            return Err(format!(
                "learner.learning_starts: {} frames do not fit in the queue ({queue_frames} frames: replay.capacity × shards × T)",
                self.learner.learning_starts
            ));
        }
        let apex = self.learner.algorithm == cml_run::config::AlgorithmKind::ApexDqn;
        if apex && self.actor.hosts > 1 && self.actor.workers == 0 {
            return Err(
                "actor.workers: set it (not 0 = one per core) when actor.hosts > 1: Ape-X numbers every host's actors alike"
                    .to_string(),
            );
        }
        if apex && self.model.frame_stack > 1 {
            return Err(
                "model.frame_stack: Ape-X takes unstacked observations (frame_stack = 1); stack frames in the env"
                    .to_string(),
            );
        }
        if apex && self.actor.host_id >= self.actor.hosts {
            return Err(format!(
                "actor.host_id: {} is not below actor.hosts = {} (Ape-X numbers the actors of all hosts)",
                self.actor.host_id, self.actor.hosts
            ));
        }
        if self.cluster.replay_hosts.as_ref().is_some_and(Vec::is_empty) {
            return Err("cluster.replay_hosts: list at least one host".to_string());
        }
        Ok(())
    }

    /// What a checkpoint's meaning depends on, canonically: the env (id,
    /// params, time limit, Python env keys), the unroll length, `[model]`, the algorithm,
    /// optimizer, loss and gradient clip, as JSON with sorted keys and every
    /// value that equals its default left out, so a field added later with
    /// a default does not change the fingerprint of an old run.
    pub fn fingerprint_source(&self) -> String {
        use serde_json::{json, Value};
        fn value(x: impl serde::Serialize) -> Value {
            serde_json::to_value(x).unwrap_or(Value::Null)
        }
        /// `v` without the entries that equal `default`'s.
        fn prune(v: Value, default: &Value) -> Value {
            match v {
                Value::Object(map) => Value::Object(
                    map.into_iter()
                        .filter_map(|(k, x)| {
                            let d = default.get(&k).cloned().unwrap_or(Value::Null);
                            if x == d {
                                return None;
                            }
                            Some((k, prune(x, &d)))
                        })
                        .collect(),
                ),
                other => other,
            }
        }
        let defaults = cml_run::config::LearnerSection::default();
        let current = json!({
            "env": {
                "id": self.env.id,
                "params": value(&self.env.params),
                "max_episode_steps": self.env.max_episode_steps,
                "kwargs": value(&self.env.kwargs),
                "wrappers": self.env.wrappers.iter().map(|w| json!([w.name, value(&w.args)])).collect::<Vec<_>>(),
                "vectorization": value(self.env.vectorization),
                "observation_layout": value(self.env.observation_layout),
                "episodic_life": self.env.episodic_life,
            },
            "unroll_length": self.actor.unroll_length,
            "model": value(&self.model),
            "algorithm": value(self.learner.algorithm),
            "optimizer": value(self.learner.optimizer.to_config()),
            "loss": value(&self.learner.loss),
            "dqn": value(&self.learner.dqn),
            "max_grad_norm": self.learner.max_grad_norm,
        });
        let default = json!({
            "env": {"params": {}, "max_episode_steps": null, "kwargs": {}, "wrappers": []},
            "unroll_length": cml_actors::ActorConfig::default().unroll_length,
            "model": value(cml_policy::NetConfig::default()),
            "algorithm": value(defaults.algorithm),
            "optimizer": value(defaults.optimizer.to_config()),
            "loss": value(&defaults.loss),
            "dqn": value(&defaults.dqn),
            "max_grad_norm": defaults.max_grad_norm,
        });
        prune(current, &default).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cml_replay::index::SamplingMode;

    #[test]
    fn minimal_config_parses_with_defaults() {
        let c = Config::parse("[env]\nid = \"CartPole-v1\"\n").unwrap();
        assert_eq!(c.env.id, "CartPole-v1");
        assert_eq!(c.seed, 0);
        assert!(c.env.params.is_empty());
        assert_eq!(c.env.max_episode_steps, None);
    }

    #[test]
    fn optimizer_section_defaults_and_checks() {
        use cml_learner::OptimizerConfig;
        let parse =
            |section: &str| Config::parse(&format!("[env]\nid = \"CartPole-v1\"\n[learner.optimizer]\n{section}"));
        // No kind: RMSProp with IMPALA's settings and the given lr.
        match parse("lr = 0.001\n").unwrap().learner.optimizer.to_config() {
            OptimizerConfig::Rmsprop(c) => assert_eq!((c.lr, c.decay, c.epsilon), (0.001, 0.99, 0.01)),
            other => panic!("{other:?}"),
        }
        match parse("kind = \"adam\"\nbeta2 = 0.99\n")
            .unwrap()
            .learner
            .optimizer
            .to_config()
        {
            OptimizerConfig::Adam(c) => assert_eq!((c.lr, c.beta1, c.beta2, c.epsilon), (1e-3, 0.9, 0.99, 1e-8)),
            other => panic!("{other:?}"),
        }
        let e = parse("beta1 = 0.9\n").unwrap_err();
        assert_eq!(e, "learner.optimizer.beta1: not a setting of kind = \"rmsprop\"");
        let e = parse("kind = \"adam\"\ndecay = 0.9\n").unwrap_err();
        assert_eq!(e, "learner.optimizer.decay: not a setting of kind = \"adam\"");
        let e = parse("lr = -1.0\n").unwrap_err();
        assert!(e.starts_with("learner.optimizer.lr: must be"), "{e}");
        let e = parse("kind = \"sgd\"\n").unwrap_err();
        assert!(e.starts_with("learner.optimizer.kind: unknown variant `sgd`"), "{e}");
        let e = parse("momentum = 0.9\n").unwrap_err();
        assert!(e.starts_with("learner.optimizer.momentum: unknown field"), "{e}");
    }

    #[test]
    fn loss_values_and_durations_are_checked() {
        let parse = |extra: &str| Config::parse(&format!("[env]\nid = \"CartPole-v1\"\n{extra}"));
        for (extra, key) in [
            ("[learner.loss]\ndiscount = 1.5\n", "learner.loss.discount: "),
            ("[learner.loss]\nlambda = -0.1\n", "learner.loss.lambda: "),
            ("[learner.loss]\nentropy_cost = nan\n", "learner.loss.entropy_cost: "),
            ("[learner.loss]\nreward_scale = 0.0\n", "learner.loss.reward_scale: "),
            ("[learner.loss]\nppo_clip = 1.0\n", "learner.loss.ppo_clip: "),
            ("[learner.loss]\nppo_clip = 0.0\n", "learner.loss.ppo_clip: "),
            (
                "[learner.loss]\nclip_rho_threshold = -1.0\n",
                "learner.loss.clip_rho_threshold: ",
            ),
            ("[model]\ninitial_log_std = inf\n", "model.initial_log_std: "),
            (
                "[learner]\nreport_interval_s = 1e300\n",
                "learner.report_interval_s: at most",
            ),
            (
                "[replay]\nstats_interval_s = 1e20\n",
                "replay.stats_interval_s: at most",
            ),
        ] {
            let e = parse(extra).unwrap_err();
            assert!(e.starts_with(key), "{extra}: {e}");
        }
        assert!(parse("[learner.loss]\ndiscount = 1.0\nlambda = 0.0\nentropy_cost = 0.0\n").is_ok());
    }

    #[test]
    fn frame_stacks_are_checked() {
        let env = "[env]\nid = \"CartPole-v1\"\n";
        let c = Config::parse(&format!("{env}[model]\nframe_stack = 4\n")).unwrap();
        assert_eq!(c.model.frame_stack, 4);
        for (text, expected) in [
            ("[model]\nframe_stack = 0\n", "model.frame_stack: must be in 1..=16"),
            ("[model]\nframe_stack = 17\n", "model.frame_stack: must be in 1..=16"),
            (
                "[model]\nframe_stack = 4\n[learner]\nalgorithm = \"apex_dqn\"\n",
                "model.frame_stack: Ape-X takes unstacked",
            ),
        ] {
            let e = Config::parse(&format!("{env}{text}")).unwrap_err();
            assert!(e.starts_with(expected), "{text}: {e}");
        }
    }

    #[test]
    fn params_are_kept_as_a_table() {
        let c = Config::parse("[env]\nid = \"Pendulum-v1\"\n[env.params]\ng = 9.81\n").unwrap();
        assert_eq!(c.env.params.get("g").and_then(|v| v.as_float()), Some(9.81));
    }

    #[test]
    fn python_env_keys_are_read_and_checked() {
        let c = Config::parse(
            "[env]\nid = \"gymnasium:LunarLander-v3\"\npython = \"venv/bin/python\"\nimport = [\"ale_py\"]\n\
             step_timeout_s = 2.5\n[env.kwargs]\ncontinuous = true\n[[env.wrappers]]\nname = \"ClipReward\"\n\
             args = { min_reward = -1.0 }\n",
        )
        .unwrap();
        let g = c.gymnasium_env().unwrap();
        assert_eq!(g.id, "LunarLander-v3");
        assert_eq!(g.python, "venv/bin/python");
        assert_eq!(g.import, vec!["ale_py".to_string()]);
        assert_eq!(g.step_timeout, std::time::Duration::from_millis(2500));
        assert_eq!(g.kwargs.get("continuous").and_then(|v| v.as_bool()), Some(true));
        assert_eq!(g.wrappers[0].0, "ClipReward");
        assert_eq!(g.vectorization, cml_pyenvs::Vectorization::None);
        assert_eq!(g.observation_layout, cml_pyenvs::ObservationLayout::Hwc);
        let v = Config::parse(
            "[env]\nid = \"gymnasium:ALE/Pong-v5\"\nvectorization = \"vector_entry_point\"\n\
             observation_layout = \"chw\"\n",
        )
        .unwrap()
        .gymnasium_env()
        .unwrap();
        assert_eq!(v.vectorization, cml_pyenvs::Vectorization::VectorEntryPoint);
        assert_eq!(v.observation_layout, cml_pyenvs::ObservationLayout::Chw);
        assert!(!v.episodic_life);
        let lives = Config::parse("[env]\nid = \"gymnasium:ALE/Breakout-v5\"\nepisodic_life = true\n").unwrap();
        assert!(lives.gymnasium_env().unwrap().episodic_life);
        assert!(Config::parse("[env]\nid = \"CartPole-v1\"\n")
            .unwrap()
            .gymnasium_env()
            .is_none());
        for (text, expected) in [
            (
                "id = \"CartPole-v1\"\n[env.kwargs]\nx = 1\n",
                "env.kwargs: only for Python envs",
            ),
            (
                "id = \"CartPole-v1\"\nimport = [\"m\"]\n",
                "env.import: only for Python envs",
            ),
            (
                "id = \"gymnasium:CartPole-v1\"\n[env.params]\nx = 1\n",
                "env.params: Python envs take [env.kwargs]",
            ),
            (
                "id = \"gymnasium:CartPole-v1\"\nstep_timeout_s = 0.0\n",
                "env.step_timeout_s: must be a positive",
            ),
            (
                "id = \"CartPole-v1\"\nvectorization = \"vector_entry_point\"\n",
                "env.vectorization: only for Python envs",
            ),
            (
                "id = \"gymnasium:ALE/Pong-v5\"\nvectorization = \"threads\"\n",
                "env.vectorization: unknown variant `threads`",
            ),
            (
                "id = \"gymnasium:ALE/Pong-v5\"\nobservation_layout = \"nchw\"\n",
                "env.observation_layout: unknown variant `nchw`",
            ),
            (
                "id = \"gymnasium:ALE/Pong-v5\"\nvectorization = \"vector_entry_point\"\n\
                 [[env.wrappers]]\nname = \"AtariPreprocessing\"\n",
                "env.wrappers: not with vectorization",
            ),
            (
                "id = \"gymnasium:ALE/Pong-v5\"\nvectorization = \"vector_entry_point\"\nmax_episode_steps = 9\n",
                "env.max_episode_steps: not with vectorization",
            ),
            (
                "id = \"gymnasium:ALE/Breakout-v5\"\n[env.kwargs]\nepisodic_life = true\n",
                "env.kwargs.episodic_life: ale_py's own episodic life",
            ),
            (
                "id = \"MinAtar/Breakout-v1\"\nepisodic_life = true\n",
                "env.episodic_life: only for Python envs",
            ),
        ] {
            let e = Config::parse(&format!("[env]\n{text}")).unwrap_err();
            assert!(e.starts_with(expected), "{text}: {e}");
        }
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
        let e = Config::parse("[env]\nid = \"CartPole-v1\"\n[learner.optimizer]\nkind = \"adam\"\nlr = \"fast\"\n")
            .unwrap_err();
        assert!(e.starts_with("learner.optimizer.lr: "), "{e}");
        assert!(e.contains("expected a number") && e.contains("line 5"), "{e}");
        let e = Config::parse("[env\n").unwrap_err();
        assert!(e.contains("line 1"), "{e}");
    }

    #[test]
    fn ape_x_settings_are_checked_with_their_key_paths() {
        let base = "[env]\nid = \"CartPole-v1\"\n";
        let c = Config::parse(&format!(
            "{base}[learner]\nalgorithm = \"apex_dqn\"\nreplay_ratio = 4.0\nlearning_starts = 5000\n\
             [learner.dqn]\nn_step = 5\n[actor]\nhosts = 2\nhost_id = 1\nworkers = 1\n"
        ))
        .unwrap();
        assert_eq!((c.learner.dqn.n_step, c.learner.dqn.discount), (5, 0.99));
        assert_eq!((c.learner.replay_ratio, c.learner.learning_starts), (Some(4.0), 5000));
        for (text, want) in [
            ("[learner.dqn]\nn_step = 0\n", "learner.dqn.n_step: must be at least 1"),
            (
                "[learner.dqn]\npriority_eta = 2.0\n",
                "learner.dqn.priority_eta: must be in [0, 1]",
            ),
            (
                "[learner]\nreplay_ratio = -1.0\n",
                "learner.replay_ratio: must be a number > 0",
            ),
            (
                "[learner]\nreplay_ratio = 2.0\n[replay]\nmode = \"queue\"\n",
                "learner.replay_ratio: replay.mode = \"queue\"",
            ),
            (
                "[learner]\nalgorithm = \"apex_dqn\"\n[actor]\nhost_id = 1\n",
                "actor.host_id: 1 is not below actor.hosts = 1",
            ),
            ("[actor]\nepsilon_base = 1.5\n", "actor.epsilon_base: must be in [0, 1]"),
            (
                "[learner]\nreplay_ratio = 8.0\n[replay]\nmax_samples_per_item = 4\n",
                "learner.replay_ratio: 8 draws per unroll cannot happen",
            ),
            (
                "[learner]\nlearning_starts = 2000\n[replay]\nmode = \"queue\"\ncapacity = 64\n",
                "learner.learning_starts: 2000 frames do not fit in the queue (1280 frames",
            ),
            (
                "[learner]\nalgorithm = \"apex_dqn\"\n[actor]\nhosts = 2\n",
                "actor.workers: set it",
            ),
        ] {
            let e = Config::parse(&format!("{base}{text}")).unwrap_err();
            assert!(e.starts_with(want), "{text}: {e}");
        }
        // The DQN settings are part of what a checkpoint means.
        let default = Config::parse(base).unwrap().fingerprint_source();
        let other = Config::parse(&format!("{base}[learner.dqn]\nn_step = 5\n"))
            .unwrap()
            .fingerprint_source();
        assert_ne!(default, other);
        assert!(
            !default.contains("dqn"),
            "defaults leave the fingerprint as it was: {default}"
        );
    }

    #[test]
    fn replay_sections_have_defaults_and_checks() {
        let c = Config::parse("[env]\nid = \"CartPole-v1\"\n").unwrap();
        assert_eq!(c.replay.shard_endpoints(), vec!["tcp://127.0.0.1:5600".to_string()]);
        assert_eq!(c.actor.unroll_length, 20);
        let c =
            Config::parse("[env]\nid = \"CartPole-v1\"\n[replay]\nshards = 2\nbase_port = 7000\nmode = \"queue\"\n")
                .unwrap();
        assert_eq!(c.replay.mode, SamplingMode::Queue);
        assert_eq!(c.replay.shard_endpoints()[1], "tcp://127.0.0.1:7001");
        let bad = |extra: &str| Config::parse(&format!("[env]\nid = \"CartPole-v1\"\n{extra}")).unwrap_err();
        assert!(bad("[replay]\nalpha = \"fast\"\n").starts_with("replay.alpha: invalid type"));
        assert!(bad("[replay]\nfresh_fraction = 2.0\n").starts_with("replay.fresh_fraction: must be in [0, 1]"));
        assert!(bad("[replay]\nmode = \"lifo\"\n").starts_with("replay.mode: unknown variant"));
        assert!(bad("[replay]\nshards = 2\nendpoints = [\"tcp://a:1\"]\n").starts_with("replay.endpoints: 1 endpoints"));
        assert!(bad("[transport]\nmax_message_mb = 0\n").starts_with("transport.max_message_mb"));
        assert!(bad("[actor]\nunroll_length = 0\n").starts_with("actor.unroll_length"));
    }

    #[test]
    fn cluster_section_places_the_roles() {
        let c = Config::parse(
            "[env]\nid = \"CartPole-v1\"\n[replay]\nshards = 3\nbase_port = 7000\n\
             [cluster]\nlearner_host = \"10.0.0.1\"\nreplay_hosts = [\"10.0.0.2\", \"10.0.0.3\"]\n",
        )
        .unwrap();
        assert_eq!(
            c.replay_endpoints(),
            vec!["tcp://10.0.0.2:7000", "tcp://10.0.0.3:7001", "tcp://10.0.0.2:7002"]
        );
        assert_eq!(
            c.weights_endpoints(),
            ("tcp://10.0.0.1:5550".to_string(), "tcp://10.0.0.1:5551".to_string())
        );
        let plain = Config::parse("[env]\nid = \"CartPole-v1\"\n").unwrap();
        assert_eq!(plain.weights_endpoints().0, "tcp://127.0.0.1:5550");
        let e = Config::parse("[env]\nid = \"CartPole-v1\"\n[cluster]\nreplay_hosts = []\n").unwrap_err();
        assert!(e.starts_with("cluster.replay_hosts"), "{e}");
    }

    #[test]
    fn shipped_configs_parse() {
        for name in ["cartpole", "acrobot", "pendulum", "cluster-example", "minimal"] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("configs/{name}.toml"));
            Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
        }
    }

    #[test]
    fn load_names_the_file() {
        let e = Config::load(Path::new("/nonexistent/cml.toml")).unwrap_err();
        assert!(e.to_string().starts_with("/nonexistent/cml.toml: cannot read"), "{e}");
    }

    #[test]
    fn fingerprint_covers_what_a_checkpoint_means_and_ignores_defaults() {
        let base = "[env]\nid = \"CartPole-v1\"\n";
        let fp = |extra: &str| Config::parse(&format!("{base}{extra}")).unwrap().fingerprint_source();
        let plain = fp("");
        // Writing a default out, or changing what does not shape the
        // checkpoint (endpoints, stop conditions), keeps the fingerprint.
        assert_eq!(plain, fp("[learner.loss]\ndiscount = 0.99\n"));
        assert_eq!(plain, fp("[model]\nhidden = [64, 64]\nframe_stack = 1\n"));
        assert_eq!(plain, fp("[train]\nmax_seconds = 5.0\n[learner]\nbatch_size = 8\n"));
        // Model, loss, optimizer, env and its params each change it.
        for extra in [
            "[model]\nhidden = [32]\n",
            "[learner.loss]\nentropy_cost = 0.02\n",
            "[learner.optimizer]\nkind = \"adam\"\n",
            "[learner.optimizer]\nlr = 0.001\n",
            "[learner]\nmax_grad_norm = 1.0\n",
            "[actor]\nunroll_length = 10\n",
            "[env.params]\nsutton_barto_reward = true\n",
            "[model]\nframe_stack = 2\n",
        ] {
            assert_ne!(plain, fp(extra), "{extra}");
        }
        // The Python env keys: each changes it, unset they are left out.
        let python = |extra: &str| {
            Config::parse(&format!("[env]\nid = \"gymnasium:ALE/Pong-v5\"\n{extra}"))
                .unwrap()
                .fingerprint_source()
        };
        let pong = python("");
        assert!(
            !pong.contains("vectorization") && !pong.contains("episodic_life"),
            "{pong}"
        );
        for extra in [
            "vectorization = \"vector_entry_point\"\n",
            "observation_layout = \"chw\"\n",
            "episodic_life = true\n",
        ] {
            assert_ne!(pong, python(extra), "{extra}");
        }
        let other_env = Config::parse("[env]\nid = \"Acrobot-v1\"\n")
            .unwrap()
            .fingerprint_source();
        assert_ne!(plain, other_env);
    }
}
