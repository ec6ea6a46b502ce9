//! The `Env` trait: Gymnasium's semantics, with caller-owned observation
//! buffers so that stepping allocates nothing.

use crate::space::Space;

/// One action, borrowed from the caller.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Action<'a> {
    /// An index into a `Discrete(n)` action space. Signed so that a negative
    /// (invalid) action can be reported rather than wrapped around.
    Discrete(i64),
    /// The flat values of an action in a `Box` action space.
    Continuous(&'a [f32]),
}

impl std::fmt::Display for Action<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Action::Discrete(a) => write!(f, "{a}"),
            Action::Continuous(v) => write!(f, "{v:?}"),
        }
    }
}

/// What one `step` returns besides the observation (written to the caller's
/// buffer), as Gymnasium's `(obs, reward, terminated, truncated, info)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Step {
    /// The reward, in f64 as Gymnasium computes it.
    pub reward: f64,
    /// The episode reached a terminal state of the MDP: do not bootstrap.
    pub terminated: bool,
    /// The episode was cut short (e.g. a time limit): the observation written
    /// by this step is the true last one, and a learner should bootstrap
    /// from it.
    pub truncated: bool,
}

impl Step {
    /// True when the episode is over, either way.
    pub fn done(&self) -> bool {
        self.terminated || self.truncated
    }
}

/// Everything that can go wrong when making or driving an environment. Every
/// variant names the env it is about.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum EnvError {
    #[error("unknown env id `{id}`; registered ids: {}", registered.join(", "))]
    UnknownEnv { id: String, registered: Vec<String> },

    #[error("env id `{id}` is already registered")]
    AlreadyRegistered { id: String },

    #[error("{env}: action {action} is outside the action space {space}")]
    InvalidAction { env: String, action: String, space: String },

    #[error("{env}: expected a {expected} action for the action space {space}, got {action}")]
    WrongActionKind {
        env: String,
        expected: &'static str,
        action: String,
        space: String,
    },

    #[error("{env}: observation buffer has length {got}, but the observation space {space} needs {expected}")]
    ObservationBuffer {
        env: String,
        expected: usize,
        got: usize,
        space: String,
    },

    #[error("{env}: step() was called before reset()")]
    ResetNeeded { env: String },

    #[error("{env}: unknown parameter `{key}`; known parameters: {}", if known.is_empty() { "(none)".to_string() } else { known.join(", ") })]
    UnknownParam {
        env: String,
        key: String,
        known: Vec<String>,
    },

    #[error("{env}: parameter `{key}`: {reason}")]
    InvalidParam { env: String, key: String, reason: String },

    #[error("{env}: envs of a vector must share spaces: env {index} has {what} {got}, env 0 has {expected}")]
    MismatchedSpaces {
        env: String,
        index: usize,
        what: &'static str,
        got: String,
        expected: String,
    },

    #[error("vector env: env {index} of {count}: {source}")]
    InVector {
        index: usize,
        count: usize,
        #[source]
        source: Box<EnvError>,
    },

    #[error("{env}: {message}")]
    Other { env: String, message: String },
}

/// A reinforcement-learning environment with Gymnasium's semantics.
///
/// - `reset(seed)` starts an episode and writes the first observation. A
///   `Some(seed)` reseeds the env's random stream; `None` continues it (and
///   seeds from the OS on first use), exactly as Gymnasium.
/// - `step(action)` advances one step and writes the next observation.
///   `terminated` means the MDP reached a terminal state; `truncated` means
///   the episode was cut (a time limit), and the observation written is the
///   true final one.
/// - Observations are written into a buffer the caller owns, of length
///   `observation_space().flat_dim()`; a buffer of another length is an error.
///   Stepping allocates nothing.
///
/// Implement this for your own environment and register it by name with
/// [`crate::register`]; see `examples/custom_env.rs`.
pub trait Env: Send {
    /// The space observations live in.
    fn observation_space(&self) -> &Space;
    /// The space actions live in.
    fn action_space(&self) -> &Space;
    /// Start a new episode and write its first observation into `obs`.
    fn reset(&mut self, seed: Option<u64>, obs: &mut [f32]) -> Result<(), EnvError>;
    /// Apply `action`, write the next observation into `obs`.
    fn step(&mut self, action: Action<'_>, obs: &mut [f32]) -> Result<Step, EnvError>;
}

impl<E: Env + ?Sized> Env for Box<E> {
    fn observation_space(&self) -> &Space {
        (**self).observation_space()
    }
    fn action_space(&self) -> &Space {
        (**self).action_space()
    }
    fn reset(&mut self, seed: Option<u64>, obs: &mut [f32]) -> Result<(), EnvError> {
        (**self).reset(seed, obs)
    }
    fn step(&mut self, action: Action<'_>, obs: &mut [f32]) -> Result<Step, EnvError> {
        (**self).step(action, obs)
    }
}

/// Checks that `obs` has room for exactly one observation of `space`.
#[inline]
pub fn check_observation_buffer(env: &str, space: &Space, obs: &[f32]) -> Result<(), EnvError> {
    let expected = space.flat_dim();
    if obs.len() == expected {
        Ok(())
    } else {
        Err(EnvError::ObservationBuffer {
            env: env.to_string(),
            expected,
            got: obs.len(),
            space: space.to_string(),
        })
    }
}

/// The index of a discrete action, checked against `space` (which must be
/// `Discrete`).
#[inline]
pub fn discrete_action(env: &str, space: &Space, action: Action<'_>) -> Result<usize, EnvError> {
    match (space, action) {
        (Space::Discrete(n), Action::Discrete(a)) if a >= 0 && (a as u64) < *n as u64 => Ok(a as usize),
        (Space::Discrete(_), Action::Discrete(a)) => Err(EnvError::InvalidAction {
            env: env.to_string(),
            action: a.to_string(),
            space: space.to_string(),
        }),
        _ => Err(EnvError::WrongActionKind {
            env: env.to_string(),
            expected: "discrete",
            action: action.to_string(),
            space: space.to_string(),
        }),
    }
}

/// The values of a continuous action, checked for length and finiteness
/// against `space` (which must be a `Box`). Values outside the bounds are
/// allowed: each env clips them as Gymnasium does.
#[inline]
pub fn continuous_action<'a>(env: &str, space: &Space, action: Action<'a>) -> Result<&'a [f32], EnvError> {
    match action {
        Action::Continuous(values) if !space.is_discrete() => {
            if values.len() != space.flat_dim() {
                return Err(EnvError::InvalidAction {
                    env: env.to_string(),
                    action: format!("{values:?} ({} values)", values.len()),
                    space: format!("{space} ({} values)", space.flat_dim()),
                });
            }
            if values.iter().any(|v| !v.is_finite()) {
                return Err(EnvError::InvalidAction {
                    env: env.to_string(),
                    action: format!("{values:?} (not finite)"),
                    space: space.to_string(),
                });
            }
            Ok(values)
        }
        _ => Err(EnvError::WrongActionKind {
            env: env.to_string(),
            expected: "continuous",
            action: action.to_string(),
            space: space.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discrete_actions_are_checked() {
        let s = Space::Discrete(2);
        assert_eq!(discrete_action("E", &s, Action::Discrete(1)), Ok(1));
        let e = discrete_action("E", &s, Action::Discrete(2)).unwrap_err();
        assert_eq!(e.to_string(), "E: action 2 is outside the action space Discrete(2)");
        assert!(discrete_action("E", &s, Action::Discrete(-1)).is_err());
        let e = discrete_action("E", &s, Action::Continuous(&[0.5])).unwrap_err();
        assert!(matches!(e, EnvError::WrongActionKind { .. }), "{e}");
    }

    #[test]
    fn continuous_actions_are_checked() {
        let s = Space::uniform_box(-2.0, 2.0, 1);
        assert_eq!(
            continuous_action("E", &s, Action::Continuous(&[5.0])),
            Ok(&[5.0f32][..])
        );
        assert!(continuous_action("E", &s, Action::Continuous(&[1.0, 2.0])).is_err());
        let e = continuous_action("E", &s, Action::Continuous(&[f32::NAN])).unwrap_err();
        assert!(e.to_string().contains("not finite"), "{e}");
        assert!(continuous_action("E", &s, Action::Discrete(0)).is_err());
    }

    #[test]
    fn observation_buffers_are_checked() {
        let s = Space::uniform_box(-1.0, 1.0, 4);
        assert!(check_observation_buffer("E", &s, &[0.0; 4]).is_ok());
        let e = check_observation_buffer("E", &s, &[0.0; 3]).unwrap_err();
        assert!(e.to_string().contains("length 3"), "{e}");
    }
}
