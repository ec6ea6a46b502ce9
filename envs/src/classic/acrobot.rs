//! Acrobot-v1 (gymnasium/envs/classic_control/acrobot.py, "book" dynamics).
//!
//! Precision: the reset state is cast to float32 (so the first observation
//! takes cos/sin of float32 angles, in float32: see `observe` for the one
//! known, rare, one-ulp difference there); each step appends the torque and
//! integrates one RK4 step in float64; observations are float32.

use std::f64::consts::PI;

use crate::classic::{np_pow2, reset_rng};
use crate::env::{check_observation_buffer, discrete_action, Action, Env, EnvError, Step};
use crate::params::{ParamReader, Params};
use crate::rng::NumpyRng;
use crate::space::Space;

const ID: &str = "Acrobot-v1";
/// Integration time step [s].
const DT: f64 = 0.2;
const LINK_LENGTH_1: f64 = 1.0;
const LINK_MASS_1: f64 = 1.0;
const LINK_MASS_2: f64 = 1.0;
const LINK_COM_POS_1: f64 = 0.5;
const LINK_COM_POS_2: f64 = 0.5;
const LINK_MOI: f64 = 1.0;
const MAX_VEL_1: f64 = 4.0 * PI;
const MAX_VEL_2: f64 = 9.0 * PI;
const AVAIL_TORQUE: [f64; 3] = [-1.0, 0.0, 1.0];
const G: f64 = 9.8;

/// Swing a two-link pendulum's tip above the bar by torquing the joint
/// between the links: torque −1 (0), 0 (1) or +1 (2); −1 per step until done.
#[derive(Clone, Debug)]
pub struct Acrobot {
    state: Option<[f64; 4]>,
    /// True right after `reset`: Gymnasium then holds a float32 state, and
    /// the observation is computed in float32.
    state_is_f32: bool,
    rng: Option<NumpyRng>,
    observation_space: Space,
    action_space: Space,
}

impl Default for Acrobot {
    fn default() -> Self {
        Self::new()
    }
}

impl Acrobot {
    /// Registry id.
    pub const ID: &'static str = ID;
    /// Gymnasium's registered time limit.
    pub const MAX_EPISODE_STEPS: u64 = 500;

    pub fn new() -> Self {
        let high = vec![1.0, 1.0, 1.0, 1.0, MAX_VEL_1 as f32, MAX_VEL_2 as f32];
        Acrobot {
            state: None,
            state_is_f32: false,
            rng: None,
            observation_space: Space::bounded(high.iter().map(|h| -h).collect(), high, vec![6]),
            action_space: Space::Discrete(3),
        }
    }

    /// Acrobot takes no parameters.
    pub fn from_params(params: &Params) -> Result<Self, EnvError> {
        ParamReader::new(ID, params, &[])?;
        Ok(Self::new())
    }

    /// The internal state `[theta1, theta2, dtheta1, dtheta2]`.
    pub fn state(&self) -> Option<[f64; 4]> {
        self.state
    }

    /// Sets a float64 internal state (as after any step).
    pub fn set_state(&mut self, state: [f64; 4]) {
        self.state = Some(state);
        self.state_is_f32 = false;
    }

    /// Sets a float32 internal state (as right after `reset`).
    pub fn set_state_f32(&mut self, state: [f32; 4]) {
        self.state = Some(state.map(f64::from));
        self.state_is_f32 = true;
    }

    /// Writes the observation of the current state:
    /// `[cos θ1, sin θ1, cos θ2, sin θ2, dθ1, dθ2]`.
    pub fn observe(&self, obs: &mut [f32]) -> Result<(), EnvError> {
        check_observation_buffer(ID, &self.observation_space, obs)?;
        let s = self
            .state
            .ok_or_else(|| EnvError::ResetNeeded { env: ID.to_string() })?;
        if self.state_is_f32 {
            // NumPy's float32 cos/sin (its own SIMD code, not libm's cosf/
            // sinf) agree with the correctly rounded float64 result cast to
            // float32 on all but ~0.05% of inputs, where they differ by one
            // ulp; glibc's sinf differs on ~0.4%. So the closest exact-by-
            // construction choice is the float64 result, cast. This affects
            // only the first observation after reset; steps use float64.
            let (t1, t2) = (s[0] as f32 as f64, s[1] as f32 as f64);
            obs.copy_from_slice(&[
                t1.cos() as f32,
                t1.sin() as f32,
                t2.cos() as f32,
                t2.sin() as f32,
                s[2] as f32,
                s[3] as f32,
            ]);
        } else {
            obs.copy_from_slice(&[
                s[0].cos() as f32,
                s[0].sin() as f32,
                s[1].cos() as f32,
                s[1].sin() as f32,
                s[2] as f32,
                s[3] as f32,
            ]);
        }
        Ok(())
    }

    /// `_dsdt`: time derivative of the augmented state `[θ1, θ2, dθ1, dθ2, a]`.
    fn dsdt(s: &[f64; 5]) -> [f64; 5] {
        let (m1, m2, l1, lc1, lc2, i1, i2) = (
            LINK_MASS_1,
            LINK_MASS_2,
            LINK_LENGTH_1,
            LINK_COM_POS_1,
            LINK_COM_POS_2,
            LINK_MOI,
            LINK_MOI,
        );
        let [theta1, theta2, dtheta1, dtheta2, a] = *s;
        // Python-float constants: `lc1**2` etc. are exact (0.25, 1.0).
        let (lc1_sq, lc2_sq, l1_sq) = (lc1 * lc1, lc2 * lc2, l1 * l1);
        let d1 = m1 * lc1_sq + m2 * (l1_sq + lc2_sq + 2.0 * l1 * lc2 * theta2.cos()) + i1 + i2;
        let d2 = m2 * (lc2_sq + l1 * lc2 * theta2.cos()) + i2;
        let phi2 = m2 * lc2 * G * (theta1 + theta2 - PI / 2.0).cos();
        let phi1 = -m2 * l1 * lc2 * np_pow2(dtheta2) * theta2.sin()
            - 2.0 * m2 * l1 * lc2 * dtheta2 * dtheta1 * theta2.sin()
            + (m1 * lc1 + m2 * l1) * G * (theta1 - PI / 2.0).cos()
            + phi2;
        // "book" dynamics (book_or_nips == "book").
        let ddtheta2 = (a + d2 / d1 * phi1 - m2 * l1 * lc2 * np_pow2(dtheta1) * theta2.sin() - phi2)
            / (m2 * lc2_sq + i2 - np_pow2(d2) / d1);
        let ddtheta1 = -(d2 * ddtheta2 + phi1) / d1;
        [dtheta1, dtheta2, ddtheta1, ddtheta2, 0.0]
    }

    /// One classic RK4 step of length `DT` (Gymnasium's `rk4` with t = [0, dt]).
    fn rk4(y0: &[f64; 5]) -> [f64; 5] {
        let dt = DT - 0.0;
        let dt2 = dt / 2.0;
        let add = |y: &[f64; 5], h: f64, k: &[f64; 5]| -> [f64; 5] { std::array::from_fn(|i| y[i] + h * k[i]) };
        let k1 = Self::dsdt(y0);
        let k2 = Self::dsdt(&add(y0, dt2, &k1));
        let k3 = Self::dsdt(&add(y0, dt2, &k2));
        let k4 = Self::dsdt(&add(y0, dt, &k3));
        let h = dt / 6.0;
        std::array::from_fn(|i| y0[i] + h * (k1[i] + 2.0 * k2[i] + 2.0 * k3[i] + k4[i]))
    }
}

/// Gymnasium's `wrap`: shift `x` by whole periods into `[m, M]`.
fn wrap(mut x: f64, m: f64, big_m: f64) -> f64 {
    let diff = big_m - m;
    while x > big_m {
        x -= diff;
    }
    while x < m {
        x += diff;
    }
    x
}

/// Gymnasium's `bound`: Python's `min(max(x, m), M)`.
fn bound(x: f64, m: f64, big_m: f64) -> f64 {
    let lo = if m > x { m } else { x };
    if big_m < lo {
        big_m
    } else {
        lo
    }
}

impl Env for Acrobot {
    crate::classic::space_accessors!();

    fn reset(&mut self, seed: Option<u64>, obs: &mut [f32]) -> Result<(), EnvError> {
        check_observation_buffer(ID, &self.observation_space, obs)?;
        let rng = reset_rng(&mut self.rng, seed);
        // np_random.uniform(low=-0.1, high=0.1, size=(4,)).astype(np.float32)
        let mut state = [0.0f32; 4];
        for s in &mut state {
            *s = rng.uniform(-0.1, 0.1) as f32;
        }
        self.set_state_f32(state);
        self.observe(obs)
    }

    fn step(&mut self, action: Action<'_>, obs: &mut [f32]) -> Result<Step, EnvError> {
        let action = discrete_action(ID, &self.action_space, action)?;
        check_observation_buffer(ID, &self.observation_space, obs)?;
        let s = self
            .state
            .ok_or_else(|| EnvError::ResetNeeded { env: ID.to_string() })?;
        let torque = AVAIL_TORQUE[action];
        let s_augmented = [s[0], s[1], s[2], s[3], torque];
        let ns = Self::rk4(&s_augmented);
        let state = [
            wrap(ns[0], -PI, PI),
            wrap(ns[1], -PI, PI),
            bound(ns[2], -MAX_VEL_1, MAX_VEL_1),
            bound(ns[3], -MAX_VEL_2, MAX_VEL_2),
        ];
        self.set_state(state);
        let terminated = -state[0].cos() - (state[1] + state[0]).cos() > 1.0;
        let reward = if terminated { 0.0 } else { -1.0 };
        self.observe(obs)?;
        Ok(Step {
            reward,
            terminated,
            truncated: false,
        })
    }
}
