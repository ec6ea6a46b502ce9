//! A vectorized stepper over many envs with automatic reset.
//!
//! Autoreset happens in the same step (Gymnasium's `SAME_STEP` mode): when
//! env `i` ends an episode, its true final observation is kept in
//! [`VecEnv::final_observation`] and its row of [`VecEnv::observations`]
//! already holds the first observation of the next episode. A learner must
//! bootstrap a truncated episode from the final observation, never from the
//! reset one. All buffers are allocated once; stepping allocates nothing.

use crate::env::{Action, Env, EnvError};
use crate::params::Params;
use crate::registry::EnvHandle;
use crate::space::Space;

/// The actions for one vector step, one per env.
#[derive(Clone, Copy, Debug)]
pub enum VecActions<'a> {
    /// One discrete action per env.
    Discrete(&'a [i64]),
    /// `num_envs × action_dim` values, env-major.
    Continuous(&'a [f32]),
}

/// Many envs of one kind stepped together, with automatic reset in the same
/// step. Implemented by [`VecEnv`] (any [`Env`]s) and by native vectorized
/// envs such as [`crate::classic::CartPoleVec`]; [`crate::make_vec`] picks
/// the native one where an env registers it.
pub trait VectorEnv: Send {
    /// How many envs.
    fn num_envs(&self) -> usize;
    /// The observation space of one env.
    fn observation_space(&self) -> &Space;
    /// The action space of one env.
    fn action_space(&self) -> &Space;
    /// Resets every env; with `Some(seed)`, env `i` gets seed `seed + i` (as
    /// Gymnasium's vector envs). The first observations are then in
    /// [`VectorEnv::observations`].
    fn reset(&mut self, seed: Option<u64>) -> Result<(), EnvError>;
    /// Steps every env once with its action; envs whose episode ended are
    /// reset at once (their final observation is kept).
    fn step(&mut self, actions: VecActions<'_>) -> Result<(), EnvError>;
    /// Current observations, `num_envs × observation_dim`, env-major. For an
    /// env whose episode just ended this is the next episode's first one.
    fn observations(&self) -> &[f32];
    /// Rewards of the last step.
    fn rewards(&self) -> &[f64];
    /// `terminated` flags of the last step.
    fn terminated(&self) -> &[bool];
    /// `truncated` flags of the last step.
    fn truncated(&self) -> &[bool];
    /// The true final observation of env `i`, if its episode ended on the
    /// last step (terminated or truncated).
    fn final_observation(&self, i: usize) -> Option<&[f32]>;
    /// Flat length of one observation.
    fn observation_dim(&self) -> usize {
        self.observation_space().flat_dim()
    }
}

/// Checks the number of action values for `count` envs of `action_dim`.
pub(crate) fn check_action_count(actions: VecActions<'_>, count: usize, action_dim: usize) -> Result<(), EnvError> {
    let (got, expected) = match actions {
        VecActions::Discrete(a) => (a.len(), count),
        VecActions::Continuous(a) => (a.len(), count * action_dim),
    };
    if got == expected {
        Ok(())
    } else {
        Err(EnvError::Other {
            env: "vector env".to_string(),
            message: format!("got {got} action values for {count} envs, expected {expected}"),
        })
    }
}

/// Env `index` of `count`'s error, wrapped to say which env it was.
pub(crate) fn in_vector(index: usize, count: usize) -> impl FnOnce(EnvError) -> EnvError {
    move |e| EnvError::InVector {
        index,
        count,
        source: Box::new(e),
    }
}

/// `N` [`Env`]s stepped together, with automatic reset.
pub struct VecEnv<E: Env = EnvHandle> {
    envs: Vec<E>,
    obs_dim: usize,
    action_dim: usize,
    observations: Vec<f32>,
    final_observations: Vec<f32>,
    rewards: Vec<f64>,
    terminated: Vec<bool>,
    truncated: Vec<bool>,
    has_reset: bool,
}

impl VecEnv<EnvHandle> {
    /// `num_envs` copies of the registered env `id`.
    pub fn make(id: &str, params: &Params, num_envs: usize) -> Result<Self, EnvError> {
        let envs = (0..num_envs)
            .map(|_| crate::registry::make(id, params))
            .collect::<Result<Vec<_>, _>>()?;
        VecEnv::new(envs)
    }
}

impl<E: Env> VecEnv<E> {
    /// Steps `envs` together; they must be at least one and share their
    /// observation and action spaces.
    pub fn new(envs: Vec<E>) -> Result<Self, EnvError> {
        let first = envs.first().ok_or_else(|| EnvError::Other {
            env: "vector env".to_string(),
            message: "needs at least one env".to_string(),
        })?;
        let (obs_space, act_space) = (first.observation_space().clone(), first.action_space().clone());
        for (index, env) in envs.iter().enumerate().skip(1) {
            for (what, got, expected) in [
                ("observation space", env.observation_space(), &obs_space),
                ("action space", env.action_space(), &act_space),
            ] {
                if got != expected {
                    return Err(EnvError::MismatchedSpaces {
                        env: "vector env".to_string(),
                        index,
                        what,
                        got: got.to_string(),
                        expected: expected.to_string(),
                    });
                }
            }
        }
        let n = envs.len();
        let obs_dim = obs_space.flat_dim();
        let action_dim = act_space.flat_dim();
        Ok(VecEnv {
            envs,
            obs_dim,
            action_dim,
            observations: vec![0.0; n * obs_dim],
            final_observations: vec![0.0; n * obs_dim],
            rewards: vec![0.0; n],
            terminated: vec![false; n],
            truncated: vec![false; n],
            has_reset: false,
        })
    }

    /// The envs themselves.
    pub fn envs(&self) -> &[E] {
        &self.envs
    }
}

impl<E: Env> VectorEnv for VecEnv<E> {
    fn num_envs(&self) -> usize {
        self.envs.len()
    }

    fn observation_dim(&self) -> usize {
        self.obs_dim
    }

    fn observation_space(&self) -> &Space {
        self.envs[0].observation_space()
    }

    fn action_space(&self) -> &Space {
        self.envs[0].action_space()
    }

    /// Resets every env; with `Some(seed)`, env `i` gets seed `seed + i`
    /// (as Gymnasium's vector envs). Returns the first observations.
    fn reset(&mut self, seed: Option<u64>) -> Result<(), EnvError> {
        let count = self.envs.len();
        for (i, (env, obs)) in self
            .envs
            .iter_mut()
            .zip(self.observations.chunks_exact_mut(self.obs_dim))
            .enumerate()
        {
            let s = seed.map(|s| s.wrapping_add(i as u64));
            env.reset(s, obs).map_err(in_vector(i, count))?;
        }
        self.rewards.fill(0.0);
        self.terminated.fill(false);
        self.truncated.fill(false);
        self.has_reset = true;
        Ok(())
    }

    /// Steps every env once with its action; envs whose episode ended are
    /// reset at once (their final observation is kept, see above).
    fn step(&mut self, actions: VecActions<'_>) -> Result<(), EnvError> {
        let count = self.envs.len();
        if !self.has_reset {
            return Err(EnvError::ResetNeeded {
                env: "vector env".to_string(),
            });
        }
        check_action_count(actions, count, self.action_dim)?;
        let obs_rows = self.observations.chunks_exact_mut(self.obs_dim);
        let final_rows = self.final_observations.chunks_exact_mut(self.obs_dim);
        for (i, (env, (obs, final_obs))) in self.envs.iter_mut().zip(obs_rows.zip(final_rows)).enumerate() {
            let action = match actions {
                VecActions::Discrete(a) => Action::Discrete(a[i]),
                VecActions::Continuous(a) => Action::Continuous(&a[i * self.action_dim..(i + 1) * self.action_dim]),
            };
            let step = env.step(action, obs).map_err(in_vector(i, count))?;
            self.rewards[i] = step.reward;
            self.terminated[i] = step.terminated;
            self.truncated[i] = step.truncated;
            if step.done() {
                final_obs.copy_from_slice(obs);
                env.reset(None, obs).map_err(in_vector(i, count))?;
            }
        }
        Ok(())
    }

    /// Current observations, `num_envs × observation_dim`, env-major. For an
    /// env whose episode just ended this is the next episode's first one.
    fn observations(&self) -> &[f32] {
        &self.observations
    }

    /// Rewards of the last step.
    fn rewards(&self) -> &[f64] {
        &self.rewards
    }

    /// `terminated` flags of the last step.
    fn terminated(&self) -> &[bool] {
        &self.terminated
    }

    /// `truncated` flags of the last step.
    fn truncated(&self) -> &[bool] {
        &self.truncated
    }

    /// The true final observation of env `i`, if its episode ended on the
    /// last step (terminated or truncated).
    fn final_observation(&self, i: usize) -> Option<&[f32]> {
        if self.terminated.get(i).copied().unwrap_or(false) || self.truncated.get(i).copied().unwrap_or(false) {
            Some(&self.final_observations[i * self.obs_dim..(i + 1) * self.obs_dim])
        } else {
            None
        }
    }
}
