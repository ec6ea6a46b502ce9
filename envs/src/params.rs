//! Env parameters: the env's own table from the TOML config
//! (`[env.params]`), handed to its factory by [`crate::make`].

use crate::env::EnvError;

/// An env's parameters, as written in the config's `[env.params]` table.
pub type Params = toml::Table;

/// Reads typed parameters for one env and rejects keys it does not know, so
/// a misspelt parameter is an error rather than silently ignored.
pub struct ParamReader<'a> {
    env: &'a str,
    params: &'a Params,
}

impl<'a> ParamReader<'a> {
    /// Fails if `params` holds a key outside `known`.
    pub fn new(env: &'a str, params: &'a Params, known: &[&str]) -> Result<Self, EnvError> {
        if let Some(key) = params.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(EnvError::UnknownParam {
                env: env.to_string(),
                key: key.clone(),
                known: known.iter().map(|k| k.to_string()).collect(),
            });
        }
        Ok(ParamReader { env, params })
    }

    fn invalid(&self, key: &str, reason: String) -> EnvError {
        EnvError::InvalidParam {
            env: self.env.to_string(),
            key: key.to_string(),
            reason,
        }
    }

    /// A finite number (integer or float), or `default` when absent.
    pub fn f64_or(&self, key: &str, default: f64) -> Result<f64, EnvError> {
        let value = match self.params.get(key) {
            None => return Ok(default),
            Some(toml::Value::Float(f)) => *f,
            Some(toml::Value::Integer(i)) => *i as f64,
            Some(other) => return Err(self.invalid(key, format!("expected a number, found {}", describe(other)))),
        };
        if value.is_finite() {
            Ok(value)
        } else {
            Err(self.invalid(key, format!("expected a finite number, found {value}")))
        }
    }

    /// A boolean, or `default` when absent.
    pub fn bool_or(&self, key: &str, default: bool) -> Result<bool, EnvError> {
        match self.params.get(key) {
            None => Ok(default),
            Some(toml::Value::Boolean(b)) => Ok(*b),
            Some(other) => Err(self.invalid(key, format!("expected a boolean, found {}", describe(other)))),
        }
    }

    /// A non-negative integer, or `default` when absent.
    pub fn u64_or(&self, key: &str, default: u64) -> Result<u64, EnvError> {
        match self.params.get(key) {
            None => Ok(default),
            Some(toml::Value::Integer(i)) if *i >= 0 => Ok(*i as u64),
            Some(other) => Err(self.invalid(
                key,
                format!("expected a non-negative integer, found {}", describe(other)),
            )),
        }
    }
}

fn describe(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => format!("{s:?}"),
        other => format!("{} {}", other.type_str(), other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> Params {
        text.parse().expect("test table parses")
    }

    #[test]
    fn reads_typed_values_and_defaults() {
        let p = table("g = 9\nflag = true\nn = 3");
        let r = ParamReader::new("E", &p, &["g", "flag", "n", "other"]).unwrap();
        assert_eq!(r.f64_or("g", 10.0).unwrap(), 9.0);
        assert_eq!(r.f64_or("other", 10.0).unwrap(), 10.0);
        assert!(r.bool_or("flag", false).unwrap());
        assert_eq!(r.u64_or("n", 1).unwrap(), 3);
    }

    #[test]
    fn rejects_unknown_and_mistyped_keys() {
        let p = table("gg = 1.0");
        let e = ParamReader::new("Pendulum-v1", &p, &["g"]).err().unwrap();
        assert_eq!(
            e.to_string(),
            "Pendulum-v1: unknown parameter `gg`; known parameters: g"
        );
        let p = table("g = \"fast\"");
        let r = ParamReader::new("Pendulum-v1", &p, &["g"]).unwrap();
        let e = r.f64_or("g", 10.0).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Pendulum-v1: parameter `g`: expected a number, found \"fast\""
        );
        let p = table("g = nan");
        let r = ParamReader::new("Pendulum-v1", &p, &["g"]).unwrap();
        assert!(r.f64_or("g", 10.0).is_err());
    }
}
