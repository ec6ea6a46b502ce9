//! CartPole-v1 vectorized natively (Gymnasium's `vector_entry_point`
//! CartPole): the state of all envs in structure-of-arrays form, stepped in
//! passes so that independent envs overlap in the CPU (sin/cos for every env,
//! then the arithmetic for every env, which the compiler vectorizes, then
//! termination, time limits and autoreset).
//!
//! Every env is bit-for-bit the env that [`CartPole`] plus the registry's time
//! limit would be, with the same seeds: the physics is the same function
//! ([`super::cartpole::dynamics`]) and each env keeps its own NumPy-compatible
//! random stream. A test checks this against single envs.

use super::cartpole::{dynamics, initial_state, is_terminal, reward, CartPole};
use crate::env::{Env, EnvError};
use crate::params::{ParamReader, Params};
use crate::rng::NumpyRng;
use crate::space::Space;
use crate::vector::{check_action_count, in_vector, VecActions, VecStepOutput, VectorEnv};

/// `num_envs` CartPole-v1 envs with automatic reset and a time limit.
pub struct CartPoleVec {
    max_episode_steps: Option<u64>,
    sutton_barto_reward: bool,
    mask_velocity: bool,
    // State, one entry per env (structure of arrays).
    x: Vec<f64>,
    x_dot: Vec<f64>,
    theta: Vec<f64>,
    theta_dot: Vec<f64>,
    sin: Vec<f64>,
    cos: Vec<f64>,
    push_right: Vec<bool>,
    elapsed: Vec<u64>,
    rngs: Vec<NumpyRng>,
    output: VecStepOutput,
    has_reset: bool,
    observation_space: Space,
    action_space: Space,
}

impl CartPoleVec {
    /// `num_envs` envs (at least one), truncated after `max_episode_steps`
    /// (`None`: never), with Gymnasium's `sutton_barto_reward` option.
    pub fn new(num_envs: usize, max_episode_steps: Option<u64>, sutton_barto_reward: bool) -> Result<Self, EnvError> {
        Self::with_options(num_envs, max_episode_steps, sutton_barto_reward, false)
    }

    /// As [`CartPoleVec::new`], with [`CartPole::with_options`]'s
    /// `mask_velocity`.
    pub fn with_options(
        num_envs: usize,
        max_episode_steps: Option<u64>,
        sutton_barto_reward: bool,
        mask_velocity: bool,
    ) -> Result<Self, EnvError> {
        if num_envs == 0 {
            return Err(EnvError::Other {
                env: CartPole::ID.to_string(),
                message: "a vector needs at least one env".to_string(),
            });
        }
        let single = CartPole::with_options(sutton_barto_reward, mask_velocity);
        let n = num_envs;
        Ok(CartPoleVec {
            max_episode_steps,
            sutton_barto_reward,
            mask_velocity,
            x: vec![0.0; n],
            x_dot: vec![0.0; n],
            theta: vec![0.0; n],
            theta_dot: vec![0.0; n],
            sin: vec![0.0; n],
            cos: vec![0.0; n],
            push_right: vec![false; n],
            elapsed: vec![0; n],
            rngs: (0..n).map(|_| NumpyRng::from_os_entropy()).collect(),
            output: VecStepOutput::new(n, single.observation_space().flat_dim()),
            has_reset: false,
            observation_space: single.observation_space().clone(),
            action_space: single.action_space().clone(),
        })
    }

    /// From the config's `[env.params]` (as [`CartPole::from_params`]).
    pub fn from_params(params: &Params, num_envs: usize, max_episode_steps: Option<u64>) -> Result<Self, EnvError> {
        let p = ParamReader::new(CartPole::ID, params, &["sutton_barto_reward", "mask_velocity"])?;
        Self::with_options(
            num_envs,
            max_episode_steps,
            p.bool_or("sutton_barto_reward", false)?,
            p.bool_or("mask_velocity", false)?,
        )
    }

    /// Starts a new episode in env `i` from its random stream.
    fn reset_env(&mut self, i: usize) {
        let s = initial_state(&mut self.rngs[i]);
        [self.x[i], self.x_dot[i], self.theta[i], self.theta_dot[i]] = s;
        self.elapsed[i] = 0;
        CartPole::write_obs(&s, self.mask_velocity, self.output.row_mut(i));
    }
}

impl VectorEnv for CartPoleVec {
    fn num_envs(&self) -> usize {
        self.x.len()
    }

    crate::classic::space_accessors!();

    fn reset(&mut self, seed: Option<u64>) -> Result<(), EnvError> {
        for i in 0..self.num_envs() {
            match seed {
                Some(s) => self.rngs[i] = NumpyRng::from_seed(s.wrapping_add(i as u64)),
                None if !self.has_reset => self.rngs[i] = NumpyRng::from_os_entropy(),
                None => {}
            }
            self.reset_env(i);
        }
        self.output.clear_step();
        self.has_reset = true;
        Ok(())
    }

    fn step(&mut self, actions: VecActions<'_>) -> Result<(), EnvError> {
        let n = self.num_envs();
        if !self.has_reset {
            return Err(EnvError::ResetNeeded {
                env: "vector env".to_string(),
            });
        }
        check_action_count(actions, n, 1)?;
        let VecActions::Discrete(actions) = actions else {
            return Err(EnvError::WrongActionKind {
                env: CartPole::ID.to_string(),
                expected: "discrete",
                action: "continuous values".to_string(),
                space: self.action_space.to_string(),
            });
        };
        // Check every action before changing anything.
        for (i, (&a, right)) in actions.iter().zip(self.push_right.iter_mut()).enumerate() {
            if a != 0 && a != 1 {
                return Err(in_vector(i, n)(EnvError::InvalidAction {
                    env: CartPole::ID.to_string(),
                    action: a.to_string(),
                    space: self.action_space.to_string(),
                }));
            }
            *right = a == 1;
        }
        // Pass 1: sin and cos of every angle (independent libm calls).
        for ((t, s), c) in self.theta.iter().zip(&mut self.sin).zip(&mut self.cos) {
            (*s, *c) = t.sin_cos();
        }
        // Pass 2: the dynamics, element-wise over the arrays.
        let lanes = self
            .x
            .iter_mut()
            .zip(&mut self.x_dot)
            .zip(&mut self.theta)
            .zip(&mut self.theta_dot)
            .zip(self.sin.iter().zip(&self.cos).zip(&self.push_right));
        for ((((x, x_dot), theta), theta_dot), ((s, c), right)) in lanes {
            [*x, *x_dot, *theta, *theta_dot] = dynamics([*x, *x_dot, *theta, *theta_dot], *s, *c, *right);
        }
        // Pass 3: termination, reward and time limit, element-wise.
        let sutton_barto = self.sutton_barto_reward;
        let limit = self.max_episode_steps.unwrap_or(u64::MAX);
        let out = &mut self.output;
        let flags = out
            .terminated
            .iter_mut()
            .zip(&mut out.truncated)
            .zip(&mut out.rewards)
            .zip(&mut self.elapsed)
            .zip(self.x.iter().zip(&self.theta));
        for ((((term, trunc), reward_out), elapsed), (x, theta)) in flags {
            *term = is_terminal(&[*x, 0.0, *theta, 0.0]);
            *reward_out = reward(*term, sutton_barto);
            *elapsed += 1;
            *trunc = *elapsed >= limit;
        }
        // Pass 4: observations (the float32 cast of the state).
        let states = self
            .x
            .iter()
            .zip(&self.x_dot)
            .zip(self.theta.iter().zip(&self.theta_dot));
        let dim = self.output.obs_dim;
        for (obs, ((x, x_dot), (theta, theta_dot))) in self.output.observations.chunks_exact_mut(dim).zip(states) {
            CartPole::write_obs(&[*x, *x_dot, *theta, *theta_dot], self.mask_velocity, obs);
        }
        // Pass 5: autoreset the (few) envs whose episode ended.
        for i in 0..n {
            if self.output.terminated[i] || self.output.truncated[i] {
                self.output.keep_final(i);
                self.reset_env(i);
            }
        }
        Ok(())
    }

    fn output(&self) -> &VecStepOutput {
        &self.output
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{make_with_time_limit, VecEnv};

    /// Same seeds, same actions: identical to a `VecEnv` of registry-made
    /// single envs, step for step, through many autoresets.
    fn matches_single_envs(limit: Option<u64>, sutton_barto: bool, mask: bool) {
        let n = 37;
        let params: Params = format!("sutton_barto_reward = {sutton_barto}\nmask_velocity = {mask}")
            .parse()
            .unwrap();
        let mut native = CartPoleVec::from_params(&params, n, limit).unwrap();
        // The masked env: the unmasked one's x and θ, nothing else.
        let mut unmasked = CartPoleVec::new(n, limit, sutton_barto).unwrap();
        unmasked.reset(Some(11)).unwrap();
        let singles = (0..n)
            .map(|_| make_with_time_limit("CartPole-v1", &params, limit).unwrap())
            .collect();
        let mut reference = VecEnv::new(singles).unwrap();
        native.reset(Some(11)).unwrap();
        reference.reset(Some(11)).unwrap();
        assert_eq!(native.observations(), reference.observations());
        let mut rng = NumpyRng::from_seed(5);
        let mut actions = vec![0i64; n];
        let mut dones = 0;
        for t in 0..600 {
            for a in actions.iter_mut() {
                *a = rng.below(2) as i64;
            }
            native.step(VecActions::Discrete(&actions)).unwrap();
            reference.step(VecActions::Discrete(&actions)).unwrap();
            unmasked.step(VecActions::Discrete(&actions)).unwrap();
            if mask {
                let xs: Vec<f32> = unmasked.observations().chunks(4).flat_map(|o| [o[0], o[2]]).collect();
                assert_eq!(native.observations(), &xs[..], "step {t}");
            } else {
                assert_eq!(native.observations(), unmasked.observations(), "step {t}");
            }
            assert_eq!(native.observations(), reference.observations(), "step {t}");
            assert_eq!(native.rewards(), reference.rewards(), "step {t}");
            assert_eq!(native.terminated(), reference.terminated(), "step {t}");
            assert_eq!(native.truncated(), reference.truncated(), "step {t}");
            for i in 0..n {
                assert_eq!(native.final_observation(i), reference.final_observation(i));
            }
            dones += native.terminated().iter().filter(|d| **d).count();
        }
        assert!(dones > 100, "{dones}");
    }

    #[test]
    fn native_vector_matches_single_envs() {
        matches_single_envs(Some(500), false, false);
        matches_single_envs(Some(13), true, false);
        matches_single_envs(None, false, false);
        matches_single_envs(Some(500), false, true);
        assert_eq!(
            CartPole::with_options(false, true).observation_space().flat_dim(),
            2,
            "mask_velocity hides both velocities"
        );
    }

    #[test]
    fn bad_actions_change_nothing() {
        let mut v = CartPoleVec::new(3, Some(500), false).unwrap();
        assert!(v.step(VecActions::Discrete(&[0, 1, 0])).is_err(), "before reset");
        v.reset(Some(0)).unwrap();
        let before = v.observations().to_vec();
        let err = v.step(VecActions::Discrete(&[0, 1, 2])).unwrap_err();
        assert!(err.to_string().contains("env 2 of 3"), "{err}");
        assert!(err.to_string().contains("CartPole-v1: action 2"), "{err}");
        assert_eq!(v.observations(), &before[..]);
        assert!(v.step(VecActions::Continuous(&[0.0, 0.0, 0.0])).is_err());
        assert!(v.step(VecActions::Discrete(&[0])).is_err());
        assert!(CartPoleVec::new(0, None, false).is_err());
    }
}
