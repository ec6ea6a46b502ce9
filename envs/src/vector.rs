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
    /// Starts a step like [`VectorEnv::step`]; its results are ready once
    /// [`VectorEnv::step_finish`] returns. Envs that step elsewhere (Python
    /// worker processes) return at once, so the caller can work meanwhile
    /// (an actor worker runs inference for its other envs); the default
    /// does the whole step here. A started step must be finished before
    /// anything else is called.
    fn step_start(&mut self, actions: VecActions<'_>) -> Result<(), EnvError> {
        self.step(actions)
    }
    /// Waits for the step [`VectorEnv::step_start`] started; a no-op when
    /// none is in flight.
    fn step_finish(&mut self) -> Result<(), EnvError> {
        Ok(())
    }
    /// What the last `reset` / `step` produced.
    fn output(&self) -> &VecStepOutput;
    /// Current observations, `num_envs × observation_dim`, env-major. For an
    /// env whose episode just ended this is the next episode's first one.
    fn observations(&self) -> &[f32] {
        &self.output().observations
    }
    /// Rewards of the last step.
    fn rewards(&self) -> &[f64] {
        &self.output().rewards
    }
    /// `terminated` flags of the last step.
    fn terminated(&self) -> &[bool] {
        &self.output().terminated
    }
    /// `truncated` flags of the last step.
    fn truncated(&self) -> &[bool] {
        &self.output().truncated
    }
    /// Flags of the last step: terminated because a life was lost while
    /// the game goes on (episodic life, as DQN's Atari setup): an episode
    /// end for learning, not for the returns users see. Set only together
    /// with `terminated`; always false for envs without lives.
    fn life_lost(&self) -> &[bool] {
        &self.output().life_lost
    }
    /// The true final observation of env `i`, if its episode ended on the
    /// last step (terminated or truncated).
    fn final_observation(&self, i: usize) -> Option<&[f32]> {
        self.output().final_observation(i)
    }
    /// Flat length of one observation.
    fn observation_dim(&self) -> usize {
        self.output().obs_dim
    }
}

/// The buffers a vector step writes, allocated once: observations (with
/// autoreset applied), the final observations of episodes that just ended,
/// rewards and flags.
#[derive(Clone, Debug)]
pub struct VecStepOutput {
    pub(crate) obs_dim: usize,
    pub(crate) observations: Vec<f32>,
    pub(crate) final_observations: Vec<f32>,
    pub(crate) rewards: Vec<f64>,
    pub(crate) terminated: Vec<bool>,
    pub(crate) truncated: Vec<bool>,
    pub(crate) life_lost: Vec<bool>,
}

impl VecStepOutput {
    /// Zeroed buffers for `num_envs` envs with observations of `obs_dim`.
    pub fn new(num_envs: usize, obs_dim: usize) -> Self {
        VecStepOutput {
            obs_dim,
            observations: vec![0.0; num_envs * obs_dim],
            final_observations: vec![0.0; num_envs * obs_dim],
            rewards: vec![0.0; num_envs],
            terminated: vec![false; num_envs],
            truncated: vec![false; num_envs],
            life_lost: vec![false; num_envs],
        }
    }

    /// Every buffer, writable: for vector envs implemented outside this
    /// crate (e.g. Python workers), which fill them after each step.
    pub fn buffers_mut(&mut self) -> VecStepBuffers<'_> {
        VecStepBuffers {
            observations: &mut self.observations,
            final_observations: &mut self.final_observations,
            rewards: &mut self.rewards,
            terminated: &mut self.terminated,
            truncated: &mut self.truncated,
            life_lost: &mut self.life_lost,
        }
    }

    /// Clears rewards and flags (after a reset).
    pub(crate) fn clear_step(&mut self) {
        self.rewards.fill(0.0);
        self.terminated.fill(false);
        self.truncated.fill(false);
        self.life_lost.fill(false);
    }

    /// Env `i`'s observation row.
    pub(crate) fn row_mut(&mut self, i: usize) -> &mut [f32] {
        &mut self.observations[i * self.obs_dim..(i + 1) * self.obs_dim]
    }

    /// Copies env `i`'s current observation into its final-observation row.
    pub(crate) fn keep_final(&mut self, i: usize) {
        let range = i * self.obs_dim..(i + 1) * self.obs_dim;
        self.final_observations[range.clone()].copy_from_slice(&self.observations[range]);
    }

    fn final_observation(&self, i: usize) -> Option<&[f32]> {
        let done = self.terminated.get(i).copied().unwrap_or(false) || self.truncated.get(i).copied().unwrap_or(false);
        done.then(|| &self.final_observations[i * self.obs_dim..(i + 1) * self.obs_dim])
    }
}

/// The buffers of a [`VecStepOutput`], env-major: observations and final
/// observations `num_envs × observation_dim`, one flag and reward per env.
/// A final observation is read only where its env's episode ended.
pub struct VecStepBuffers<'a> {
    pub observations: &'a mut [f32],
    pub final_observations: &'a mut [f32],
    pub rewards: &'a mut [f64],
    pub terminated: &'a mut [bool],
    pub truncated: &'a mut [bool],
    /// Terminated by a life lost, the game going on (see
    /// [`VectorEnv::life_lost`]); only where `terminated` is set.
    pub life_lost: &'a mut [bool],
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
    action_dim: usize,
    output: VecStepOutput,
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
            action_dim,
            output: VecStepOutput::new(n, obs_dim),
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

    fn observation_space(&self) -> &Space {
        self.envs[0].observation_space()
    }

    fn action_space(&self) -> &Space {
        self.envs[0].action_space()
    }

    fn reset(&mut self, seed: Option<u64>) -> Result<(), EnvError> {
        let count = self.envs.len();
        for (i, (env, obs)) in self
            .envs
            .iter_mut()
            .zip(self.output.observations.chunks_exact_mut(self.output.obs_dim))
            .enumerate()
        {
            let s = seed.map(|s| s.wrapping_add(i as u64));
            env.reset(s, obs).map_err(in_vector(i, count))?;
        }
        self.output.clear_step();
        self.has_reset = true;
        Ok(())
    }

    fn step(&mut self, actions: VecActions<'_>) -> Result<(), EnvError> {
        let count = self.envs.len();
        if !self.has_reset {
            return Err(EnvError::ResetNeeded {
                env: "vector env".to_string(),
            });
        }
        check_action_count(actions, count, self.action_dim)?;
        for (i, env) in self.envs.iter_mut().enumerate() {
            let action = match actions {
                VecActions::Discrete(a) => Action::Discrete(a[i]),
                VecActions::Continuous(a) => Action::Continuous(&a[i * self.action_dim..(i + 1) * self.action_dim]),
            };
            let step = env.step(action, self.output.row_mut(i)).map_err(in_vector(i, count))?;
            self.output.rewards[i] = step.reward;
            self.output.terminated[i] = step.terminated;
            self.output.truncated[i] = step.truncated;
            if step.done() {
                self.output.keep_final(i);
                env.reset(None, self.output.row_mut(i)).map_err(in_vector(i, count))?;
            }
        }
        Ok(())
    }

    fn output(&self) -> &VecStepOutput {
        &self.output
    }
}
