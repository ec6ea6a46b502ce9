//! CartPole-v1 (gymnasium/envs/classic_control/cartpole.py).
//!
//! Precision: the state is float64 throughout and termination is tested on
//! it; the observation is its float32 cast.

use crate::classic::reset_rng;
use crate::env::{check_observation_buffer, discrete_action, Action, Env, EnvError, Step};
use crate::params::{ParamReader, Params};
use crate::rng::NumpyRng;
use crate::space::Space;

const ID: &str = "CartPole-v1";
const GRAVITY: f64 = 9.8;
const MASSCART: f64 = 1.0;
const MASSPOLE: f64 = 0.1;
const TOTAL_MASS: f64 = MASSPOLE + MASSCART;
/// Half the pole's length.
const LENGTH: f64 = 0.5;
const POLEMASS_LENGTH: f64 = MASSPOLE * LENGTH;
const FORCE_MAG: f64 = 10.0;
/// Seconds between state updates.
const TAU: f64 = 0.02;
const THETA_THRESHOLD_RADIANS: f64 = 12.0 * 2.0 * std::f64::consts::PI / 360.0;
const X_THRESHOLD: f64 = 2.4;

/// Balance a pole on a cart by pushing it left (0) or right (1); +1 per step
/// until the pole falls past 12° or the cart leaves ±2.4.
#[derive(Clone, Debug)]
pub struct CartPole {
    state: Option<[f64; 4]>,
    rng: Option<NumpyRng>,
    steps_beyond_terminated: Option<u64>,
    sutton_barto_reward: bool,
    /// Observations `[x, θ]` only (the velocities hidden): a memory task.
    mask_velocity: bool,
    observation_space: Space,
    action_space: Space,
}

impl Default for CartPole {
    fn default() -> Self {
        Self::new(false)
    }
}

impl CartPole {
    /// Registry id.
    pub const ID: &'static str = ID;
    /// Gymnasium's registered time limit.
    pub const MAX_EPISODE_STEPS: u64 = 500;

    /// `sutton_barto_reward`: 0 per step and −1 on failure instead of +1 per
    /// step (Gymnasium's `sutton_barto_reward` option).
    pub fn new(sutton_barto_reward: bool) -> Self {
        Self::with_options(sutton_barto_reward, false)
    }

    /// As [`CartPole::new`]; with `mask_velocity` the observations are
    /// `[x, θ]` (both velocities hidden, as in the POMDP versions of
    /// CartPole used to test recurrent policies); the dynamics, rewards and
    /// random stream are unchanged.
    pub fn with_options(sutton_barto_reward: bool, mask_velocity: bool) -> Self {
        let high = [
            (X_THRESHOLD * 2.0) as f32,
            f32::INFINITY,
            (THETA_THRESHOLD_RADIANS * 2.0) as f32,
            f32::INFINITY,
        ];
        let observation_space = if mask_velocity {
            Space::bounded(vec![-high[0], -high[2]], vec![high[0], high[2]], vec![2])
        } else {
            Space::bounded(high.iter().map(|h| -h).collect(), high.to_vec(), vec![4])
        };
        CartPole {
            state: None,
            rng: None,
            steps_beyond_terminated: None,
            sutton_barto_reward,
            mask_velocity,
            observation_space,
            action_space: Space::Discrete(2),
        }
    }

    /// From the config's `[env.params]`: `sutton_barto_reward` and
    /// `mask_velocity` (bools, default false).
    pub fn from_params(params: &Params) -> Result<Self, EnvError> {
        let p = ParamReader::new(ID, params, &["sutton_barto_reward", "mask_velocity"])?;
        Ok(Self::with_options(
            p.bool_or("sutton_barto_reward", false)?,
            p.bool_or("mask_velocity", false)?,
        ))
    }

    /// The internal state `[x, x_dot, theta, theta_dot]` (Gymnasium's
    /// `env.unwrapped.state`), if the env has been reset.
    pub fn state(&self) -> Option<[f64; 4]> {
        self.state
    }

    /// Sets the internal state, as assigning `env.unwrapped.state`.
    pub fn set_state(&mut self, state: [f64; 4]) {
        self.state = Some(state);
        self.steps_beyond_terminated = None;
    }

    /// The float32 cast of the state, or of `[x, θ]` with `mask_velocity`.
    #[inline(always)]
    pub(crate) fn write_obs(state: &[f64; 4], mask_velocity: bool, obs: &mut [f32]) {
        if mask_velocity {
            obs[0] = state[0] as f32;
            obs[1] = state[2] as f32;
        } else {
            for (o, s) in obs.iter_mut().zip(state) {
                *o = *s as f32;
            }
        }
    }
}

/// One Euler step of the cart-pole dynamics from `state`, given sin and cos
/// of its angle and whether the force pushes right. Gymnasium's order of
/// operations, term by term (`np.square(v)` is `v * v`). Shared by
/// [`CartPole`] and [`super::CartPoleVec`] so both compute identical bits.
#[inline(always)]
pub(crate) fn dynamics(state: [f64; 4], sintheta: f64, costheta: f64, push_right: bool) -> [f64; 4] {
    let [x, x_dot, theta, theta_dot] = state;
    let force = if push_right { FORCE_MAG } else { -FORCE_MAG };
    let temp = (force + POLEMASS_LENGTH * (theta_dot * theta_dot) * sintheta) / TOTAL_MASS;
    let thetaacc =
        (GRAVITY * sintheta - costheta * temp) / (LENGTH * (4.0 / 3.0 - MASSPOLE * (costheta * costheta) / TOTAL_MASS));
    let xacc = temp - POLEMASS_LENGTH * thetaacc * costheta / TOTAL_MASS;
    // Explicit Euler (kinematics_integrator == "euler").
    [
        x + TAU * x_dot,
        x_dot + TAU * xacc,
        theta + TAU * theta_dot,
        theta_dot + TAU * thetaacc,
    ]
}

/// Gymnasium's termination test on the float64 state, comparisons as
/// written: a NaN state does not terminate (`!range.contains(&x)` would).
#[inline(always)]
#[allow(clippy::manual_range_contains)]
pub(crate) fn is_terminal(state: &[f64; 4]) -> bool {
    let (x, theta) = (state[0], state[2]);
    x < -X_THRESHOLD || x > X_THRESHOLD || theta < -THETA_THRESHOLD_RADIANS || theta > THETA_THRESHOLD_RADIANS
}

/// The reward of a step that ends in `terminated`, for an episode that had
/// not terminated before.
#[inline(always)]
pub(crate) fn reward(terminated: bool, sutton_barto_reward: bool) -> f64 {
    match (terminated, sutton_barto_reward) {
        (false, false) => 1.0,
        (false, true) => 0.0,
        (true, false) => 1.0,
        (true, true) => -1.0,
    }
}

/// `np_random.uniform(low=-0.05, high=0.05, size=(4,))`.
pub(crate) fn initial_state(rng: &mut NumpyRng) -> [f64; 4] {
    let mut state = [0.0; 4];
    for s in &mut state {
        *s = rng.uniform(-0.05, 0.05);
    }
    state
}

impl Env for CartPole {
    crate::classic::space_accessors!();

    fn reset(&mut self, seed: Option<u64>, obs: &mut [f32]) -> Result<(), EnvError> {
        check_observation_buffer(ID, &self.observation_space, obs)?;
        let state = initial_state(reset_rng(&mut self.rng, seed));
        self.set_state(state);
        Self::write_obs(&state, self.mask_velocity, obs);
        Ok(())
    }

    fn step(&mut self, action: Action<'_>, obs: &mut [f32]) -> Result<Step, EnvError> {
        let action = discrete_action(ID, &self.action_space, action)?;
        check_observation_buffer(ID, &self.observation_space, obs)?;
        let state = self
            .state
            .ok_or_else(|| EnvError::ResetNeeded { env: ID.to_string() })?;
        let (sintheta, costheta) = state[2].sin_cos();
        let state = dynamics(state, sintheta, costheta, action == 1);
        self.state = Some(state);
        let terminated = is_terminal(&state);
        let reward = if !terminated {
            reward(false, self.sutton_barto_reward)
        } else if let Some(beyond) = self.steps_beyond_terminated.as_mut() {
            // Stepping past termination is undefined in Gymnasium; it pays 0
            // (or −1 with the Sutton-Barto reward) and we do the same.
            *beyond += 1;
            if self.sutton_barto_reward {
                -1.0
            } else {
                0.0
            }
        } else {
            self.steps_beyond_terminated = Some(0);
            reward(true, self.sutton_barto_reward)
        };
        Self::write_obs(&state, self.mask_velocity, obs);
        Ok(Step {
            reward,
            terminated,
            truncated: false,
        })
    }
}
