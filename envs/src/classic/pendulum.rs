//! Pendulum-v1 (gymnasium/envs/classic_control/pendulum.py).
//!
//! Precision: the state is float64, but the clipped action stays a float32
//! NumPy scalar, so `3.0 / (m * l**2) * u` and `0.001 * u**2` are float32
//! arithmetic. The reward uses the state before the step.

use crate::classic::{np_pow2, np_pow2_f32, reset_rng};
use crate::env::{check_observation_buffer, continuous_action, Action, Env, EnvError, Step};
use crate::params::{ParamReader, Params};
use crate::rng::NumpyRng;
use crate::space::Space;

const ID: &str = "Pendulum-v1";
const MAX_SPEED: f64 = 8.0;
const MAX_TORQUE: f32 = 2.0;
const DT: f64 = 0.05;
const M: f64 = 1.0;
const L: f64 = 1.0;
const DEFAULT_X: f64 = std::f64::consts::PI;
const DEFAULT_Y: f64 = 1.0;

/// Swing a pendulum up and hold it upright with a torque in [−2, 2]; the
/// cost is θ² + 0.1·θ̇² + 0.001·u² per step, never terminating.
#[derive(Clone, Debug)]
pub struct Pendulum {
    state: Option<[f64; 2]>,
    g: f64,
    rng: Option<NumpyRng>,
    observation_space: Space,
    action_space: Space,
}

impl Default for Pendulum {
    fn default() -> Self {
        Self::new(10.0)
    }
}

/// `((x + π) % (2π)) − π` with NumPy's floor-modulo (`npy_divmod`).
fn angle_normalize(x: f64) -> f64 {
    let a = x + std::f64::consts::PI;
    let b = 2.0 * std::f64::consts::PI;
    let mut m = a % b; // fmod
    if m != 0.0 {
        if (b < 0.0) != (m < 0.0) {
            m += b;
        }
    } else {
        m = 0.0f64.copysign(b);
    }
    m - std::f64::consts::PI
}

impl Pendulum {
    /// Registry id.
    pub const ID: &'static str = ID;
    /// Gymnasium's registered time limit.
    pub const MAX_EPISODE_STEPS: u64 = 200;

    /// `g`: gravity (Gymnasium's default 10.0).
    pub fn new(g: f64) -> Self {
        let high = vec![1.0, 1.0, MAX_SPEED as f32];
        Pendulum {
            state: None,
            g,
            rng: None,
            observation_space: Space::bounded(high.iter().map(|h| -h).collect(), high, vec![3]),
            action_space: Space::uniform_box(-MAX_TORQUE, MAX_TORQUE, 1),
        }
    }

    /// From the config's `[env.params]`: `g` (number).
    pub fn from_params(params: &Params) -> Result<Self, EnvError> {
        let p = ParamReader::new(ID, params, &["g"])?;
        Ok(Self::new(p.f64_or("g", 10.0)?))
    }

    /// The internal state `[theta, theta_dot]`.
    pub fn state(&self) -> Option<[f64; 2]> {
        self.state
    }

    /// Sets the internal state, as assigning `env.unwrapped.state`.
    pub fn set_state(&mut self, state: [f64; 2]) {
        self.state = Some(state);
    }

    fn write_obs(state: &[f64; 2], obs: &mut [f32]) {
        let [theta, thetadot] = *state;
        obs[0] = theta.cos() as f32;
        obs[1] = theta.sin() as f32;
        obs[2] = thetadot as f32;
    }
}

impl Env for Pendulum {
    crate::classic::space_accessors!();

    fn reset(&mut self, seed: Option<u64>, obs: &mut [f32]) -> Result<(), EnvError> {
        check_observation_buffer(ID, &self.observation_space, obs)?;
        let rng = reset_rng(&mut self.rng, seed);
        // np_random.uniform(low=-high, high=high) with high = [π, 1]
        let state = [rng.uniform(-DEFAULT_X, DEFAULT_X), rng.uniform(-DEFAULT_Y, DEFAULT_Y)];
        self.state = Some(state);
        Self::write_obs(&state, obs);
        Ok(())
    }

    fn step(&mut self, action: Action<'_>, obs: &mut [f32]) -> Result<Step, EnvError> {
        let u = continuous_action(ID, &self.action_space, action)?[0];
        check_observation_buffer(ID, &self.observation_space, obs)?;
        let [th, thdot] = self
            .state
            .ok_or_else(|| EnvError::ResetNeeded { env: ID.to_string() })?;
        let g = self.g;

        // u = np.clip(u, -max_torque, max_torque)[0]: stays float32
        let u = u.clamp(-MAX_TORQUE, MAX_TORQUE);
        // costs = angle_normalize(th)**2 + 0.1 * thdot**2 + 0.001 * (u**2)
        let costs = np_pow2(angle_normalize(th)) + 0.1 * np_pow2(thdot) + f64::from(0.001f32 * np_pow2_f32(u));
        // newthdot = thdot + (3 * g / (2 * l) * sin(th) + 3.0 / (m * l**2) * u) * dt
        let torque_term = (3.0 / (M * (L * L))) as f32 * u;
        let newthdot = thdot + (3.0 * g / (2.0 * L) * th.sin() + f64::from(torque_term)) * DT;
        let newthdot = newthdot.clamp(-MAX_SPEED, MAX_SPEED);
        let newth = th + newthdot * DT;
        let state = [newth, newthdot];
        self.state = Some(state);
        Self::write_obs(&state, obs);
        Ok(Step {
            reward: -costs,
            terminated: false,
            truncated: false,
        })
    }
}
