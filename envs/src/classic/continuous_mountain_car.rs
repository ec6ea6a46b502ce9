//! MountainCarContinuous-v0
//! (gymnasium/envs/classic_control/continuous_mountain_car.py).
//!
//! Precision is mixed, and decided by NumPy 2's promotion rules (NEP 50): the
//! reset state is float64, but every step stores the state as float32, and a
//! float32 NumPy scalar combined with a Python float stays float32 (the
//! Python float is cast down). So the force term, the comparisons with the
//! speed and position limits, and everything after the first step happen in
//! float32, while Python-float constants assigned by the clamps are float64.
//! [`Num`] tracks these three kinds so the step reads like the Python. The
//! reward uses the unclipped action.

use crate::classic::mountain_car::{
    goal_velocity_param, hill_observation_space, write_hill_observation, MAX_POSITION, MAX_SPEED, MIN_POSITION,
};
use crate::classic::{np_pow2, reset_rng};
use crate::env::{check_observation_buffer, continuous_action, Action, Env, EnvError, Step};
use crate::params::Params;
use crate::rng::NumpyRng;
use crate::space::Space;

const ID: &str = "MountainCarContinuous-v0";
const MIN_ACTION: f64 = -1.0;
const MAX_ACTION: f64 = 1.0;
const GOAL_POSITION: f64 = 0.45;
const POWER: f64 = 0.0015;

/// A number as Python/NumPy hold it during the step: a NumPy float32 scalar,
/// a NumPy float64 scalar, or a Python float (a "weak" float64 that takes the
/// NumPy operand's type).
#[derive(Clone, Copy, Debug)]
enum Num {
    F32(f32),
    F64(f64),
    Py(f64),
}

impl Num {
    fn f64(self) -> f64 {
        match self {
            Num::F32(v) => f64::from(v),
            Num::F64(v) | Num::Py(v) => v,
        }
    }

    /// Applies a binary operation with NumPy 2's promotion: float32 unless a
    /// float64 NumPy scalar is involved or both are Python floats.
    fn op(self, rhs: Num, f32_op: fn(f32, f32) -> f32, f64_op: fn(f64, f64) -> f64) -> Num {
        match (self, rhs) {
            (Num::F64(_), _) | (_, Num::F64(_)) => Num::F64(f64_op(self.f64(), rhs.f64())),
            (Num::Py(a), Num::Py(b)) => Num::Py(f64_op(a, b)),
            _ => Num::F32(f32_op(self.f64() as f32, rhs.f64() as f32)),
        }
    }

    fn add(self, rhs: Num) -> Num {
        self.op(rhs, |a, b| a + b, |a, b| a + b)
    }

    fn sub(self, rhs: Num) -> Num {
        self.op(rhs, |a, b| a - b, |a, b| a - b)
    }

    fn mul(self, rhs: Num) -> Num {
        self.op(rhs, |a, b| a * b, |a, b| a * b)
    }

    /// Compares in the promoted type, as `a < b` does in NumPy 2.
    fn cmp(self, rhs: Num) -> Option<std::cmp::Ordering> {
        match (self, rhs) {
            (Num::F64(_), _) | (_, Num::F64(_)) | (Num::Py(_), Num::Py(_)) => self.f64().partial_cmp(&rhs.f64()),
            _ => (self.f64() as f32).partial_cmp(&(rhs.f64() as f32)),
        }
    }

    fn gt(self, rhs: Num) -> bool {
        self.cmp(rhs) == Some(std::cmp::Ordering::Greater)
    }

    fn lt(self, rhs: Num) -> bool {
        self.cmp(rhs) == Some(std::cmp::Ordering::Less)
    }

    fn eq(self, rhs: Num) -> bool {
        self.cmp(rhs) == Some(std::cmp::Ordering::Equal)
    }

    fn ge(self, rhs: Num) -> bool {
        matches!(
            self.cmp(rhs),
            Some(std::cmp::Ordering::Greater | std::cmp::Ordering::Equal)
        )
    }
}

/// Drive an under-powered car up a hill with a continuous force in [−1, 1];
/// +100 at the goal (x ≥ 0.45), −0.1·a² per step.
#[derive(Clone, Debug)]
pub struct MountainCarContinuous {
    state: Option<[f64; 2]>,
    /// Gymnasium holds a float64 state after reset and a float32 one after
    /// any step.
    state_is_f32: bool,
    goal_velocity: f64,
    rng: Option<NumpyRng>,
    observation_space: Space,
    action_space: Space,
}

impl Default for MountainCarContinuous {
    fn default() -> Self {
        Self::new(0.0)
    }
}

impl MountainCarContinuous {
    /// Registry id.
    pub const ID: &'static str = ID;
    /// Gymnasium's registered time limit.
    pub const MAX_EPISODE_STEPS: u64 = 999;

    /// `goal_velocity`: the episode ends at the goal only at this speed or
    /// more (Gymnasium's default 0).
    pub fn new(goal_velocity: f64) -> Self {
        MountainCarContinuous {
            state: None,
            state_is_f32: false,
            goal_velocity,
            rng: None,
            observation_space: hill_observation_space(),
            action_space: Space::uniform_box(MIN_ACTION as f32, MAX_ACTION as f32, 1),
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

    /// Sets a float64 internal state (as right after `reset`).
    pub fn set_state(&mut self, state: [f64; 2]) {
        self.state = Some(state);
        self.state_is_f32 = false;
    }

    /// Sets a float32 internal state (as after any step).
    pub fn set_state_f32(&mut self, state: [f32; 2]) {
        self.state = Some(state.map(f64::from));
        self.state_is_f32 = true;
    }
}

impl Env for MountainCarContinuous {
    crate::classic::space_accessors!();

    fn reset(&mut self, seed: Option<u64>, obs: &mut [f32]) -> Result<(), EnvError> {
        check_observation_buffer(ID, &self.observation_space, obs)?;
        let rng = reset_rng(&mut self.rng, seed);
        let state = [rng.uniform(-0.6, -0.4), 0.0];
        self.set_state(state);
        write_hill_observation(&state, obs);
        Ok(())
    }

    fn step(&mut self, action: Action<'_>, obs: &mut [f32]) -> Result<Step, EnvError> {
        let a = continuous_action(ID, &self.action_space, action)?[0];
        check_observation_buffer(ID, &self.observation_space, obs)?;
        let s = self
            .state
            .ok_or_else(|| EnvError::ResetNeeded { env: ID.to_string() })?;
        let (mut position, mut velocity) = if self.state_is_f32 {
            (Num::F32(s[0] as f32), Num::F32(s[1] as f32))
        } else {
            (Num::F64(s[0]), Num::F64(s[1]))
        };
        let action0 = Num::F32(a);

        // force = min(max(action[0], self.min_action), self.max_action)
        let mut force = if Num::Py(MIN_ACTION).gt(action0) {
            Num::Py(MIN_ACTION)
        } else {
            action0
        };
        if Num::Py(MAX_ACTION).lt(force) {
            force = Num::Py(MAX_ACTION);
        }
        // velocity += force * self.power - 0.0025 * math.cos(3 * position)
        let cos_term = Num::Py(0.0025 * Num::Py(3.0).mul(position).f64().cos());
        velocity = velocity.add(force.mul(Num::Py(POWER)).sub(cos_term));
        if velocity.gt(Num::Py(MAX_SPEED)) {
            velocity = Num::Py(MAX_SPEED);
        }
        if velocity.lt(Num::Py(-MAX_SPEED)) {
            velocity = Num::Py(-MAX_SPEED);
        }
        position = position.add(velocity);
        if position.gt(Num::Py(MAX_POSITION)) {
            position = Num::Py(MAX_POSITION);
        }
        if position.lt(Num::Py(MIN_POSITION)) {
            position = Num::Py(MIN_POSITION);
        }
        if position.eq(Num::Py(MIN_POSITION)) && velocity.lt(Num::Py(0.0)) {
            velocity = Num::Py(0.0);
        }
        let terminated = position.ge(Num::Py(GOAL_POSITION)) && velocity.ge(Num::Py(self.goal_velocity));

        // The reward uses the unclipped action: reward -= math.pow(action[0], 2) * 0.1
        let mut reward = if terminated { 100.0 } else { 0.0 };
        reward -= np_pow2(f64::from(a)) * 0.1;

        // self.state = np.array([position, velocity], dtype=np.float32)
        let state = [position.f64() as f32, velocity.f64() as f32];
        self.set_state_f32(state);
        obs.copy_from_slice(&state);
        Ok(Step {
            reward,
            terminated,
            truncated: false,
        })
    }
}
