//! MountainCar-v0 (gymnasium/envs/classic_control/mountain_car.py).
//!
//! Precision: all float64; the observation is the float32 cast.

use crate::classic::reset_rng;
use crate::env::{check_observation_buffer, discrete_action, Action, Env, EnvError, Step};
use crate::params::{ParamReader, Params};
use crate::rng::NumpyRng;
use crate::space::Space;

const ID: &str = "MountainCar-v0";
// Shared with MountainCarContinuous-v0, which has the same hill.
pub(crate) const MIN_POSITION: f64 = -1.2;
pub(crate) const MAX_POSITION: f64 = 0.6;
pub(crate) const MAX_SPEED: f64 = 0.07;
const GOAL_POSITION: f64 = 0.5;
const FORCE: f64 = 0.001;
const GRAVITY: f64 = 0.0025;

/// Drive an under-powered car up a hill: push left (0), nothing (1) or right
/// (2); −1 per step until the car reaches x ≥ 0.5.
#[derive(Clone, Debug)]
pub struct MountainCar {
    state: Option<[f64; 2]>,
    goal_velocity: f64,
    rng: Option<NumpyRng>,
    observation_space: Space,
    action_space: Space,
}

impl Default for MountainCar {
    fn default() -> Self {
        Self::new(0.0)
    }
}

impl MountainCar {
    /// Registry id.
    pub const ID: &'static str = ID;
    /// Gymnasium's registered time limit.
    pub const MAX_EPISODE_STEPS: u64 = 200;

    /// `goal_velocity`: the episode ends at the goal only at this speed or
    /// more (Gymnasium's default 0).
    pub fn new(goal_velocity: f64) -> Self {
        MountainCar {
            state: None,
            goal_velocity,
            rng: None,
            observation_space: hill_observation_space(),
            action_space: Space::Discrete(3),
        }
    }

    /// From the config's `[env.params]`: `goal_velocity` (number).
    pub fn from_params(params: &Params) -> Result<Self, EnvError> {
        Ok(Self::new(goal_velocity_param(ID, params)?))
    }

    /// The internal state `[position, velocity]`.
    pub fn state(&self) -> Option<[f64; 2]> {
        self.state
    }

    /// Sets the internal state, as assigning `env.unwrapped.state`.
    pub fn set_state(&mut self, state: [f64; 2]) {
        self.state = Some(state);
    }
}

/// Both mountain cars observe `[position, velocity]` within the hill's limits.
pub(crate) fn hill_observation_space() -> Space {
    Space::bounded(
        vec![MIN_POSITION as f32, -MAX_SPEED as f32],
        vec![MAX_POSITION as f32, MAX_SPEED as f32],
        vec![2],
    )
}

/// The observation of a `[position, velocity]` state (float32 casts).
pub(crate) fn write_hill_observation(state: &[f64; 2], obs: &mut [f32]) {
    obs[0] = state[0] as f32;
    obs[1] = state[1] as f32;
}

/// Both mountain cars' one parameter, `goal_velocity` (Gymnasium's default 0).
pub(crate) fn goal_velocity_param(env: &str, params: &Params) -> Result<f64, EnvError> {
    ParamReader::new(env, params, &["goal_velocity"])?.f64_or("goal_velocity", 0.0)
}

/// `np.clip(x, lo, hi)` for a float64 scalar.
fn np_clip(x: f64, lo: f64, hi: f64) -> f64 {
    if x.is_nan() {
        x
    } else {
        x.max(lo).min(hi)
    }
}

impl Env for MountainCar {
    crate::classic::space_accessors!();

    fn reset(&mut self, seed: Option<u64>, obs: &mut [f32]) -> Result<(), EnvError> {
        check_observation_buffer(ID, &self.observation_space, obs)?;
        let rng = reset_rng(&mut self.rng, seed);
        // np.array([np_random.uniform(low=-0.6, high=-0.4), 0])
        let state = [rng.uniform(-0.6, -0.4), 0.0];
        self.state = Some(state);
        write_hill_observation(&state, obs);
        Ok(())
    }

    fn step(&mut self, action: Action<'_>, obs: &mut [f32]) -> Result<Step, EnvError> {
        let action = discrete_action(ID, &self.action_space, action)?;
        check_observation_buffer(ID, &self.observation_space, obs)?;
        let [mut position, mut velocity] = self
            .state
            .ok_or_else(|| EnvError::ResetNeeded { env: ID.to_string() })?;

        velocity += (action as f64 - 1.0) * FORCE + (3.0 * position).cos() * (-GRAVITY);
        velocity = np_clip(velocity, -MAX_SPEED, MAX_SPEED);
        position += velocity;
        position = np_clip(position, MIN_POSITION, MAX_POSITION);
        if position == MIN_POSITION && velocity < 0.0 {
            velocity = 0.0;
        }
        let terminated = position >= GOAL_POSITION && velocity >= self.goal_velocity;
        let state = [position, velocity];
        self.state = Some(state);
        write_hill_observation(&state, obs);
        Ok(Step {
            reward: -1.0,
            terminated,
            truncated: false,
        })
    }
}
