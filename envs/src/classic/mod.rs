//! Gymnasium 1.4's classic-control environments, ported bit for bit.
//!
//! Each keeps Gymnasium's order of floating-point operations and its dtypes
//! (float64 state, float32 observations, and the few float32 spots noted in
//! each file), so that from the same internal state and actions every
//! observation and flag matches Gymnasium exactly and every reward to 1e-9.
//! `reset(seed)` draws the same initial state as Gymnasium for the same seed
//! (see [`crate::rng`]). Each env exposes `state()` / `set_state()`, the
//! equivalent of Gymnasium's `env.unwrapped.state`.

pub mod acrobot;
pub mod cartpole;
mod cartpole_vec;
pub mod continuous_mountain_car;
pub mod mountain_car;
pub mod pendulum;

pub use acrobot::Acrobot;
pub use cartpole::CartPole;
pub use cartpole_vec::CartPoleVec;
pub use continuous_mountain_car::MountainCarContinuous;
pub use mountain_car::MountainCar;
pub use pendulum::Pendulum;

use crate::rng::NumpyRng;

/// The env's random stream for a `reset(seed)`: a new NumPy-compatible
/// generator for `Some(seed)`, the existing one for `None` (seeded from the
/// OS on first use), as `gymnasium.Env.reset` does.
pub(crate) fn reset_rng(rng: &mut Option<NumpyRng>, seed: Option<u64>) -> &mut NumpyRng {
    match seed {
        Some(s) => rng.insert(NumpyRng::from_seed(s)),
        None => rng.get_or_insert_with(NumpyRng::from_os_entropy),
    }
}

/// `x ** 2` on a NumPy float64 scalar (or Python's `math.pow(x, 2)`): a call
/// to libm's `pow`, which differs from `x * x` in the last bit for some
/// inputs. The exponent goes through `black_box` so the compiler cannot
/// rewrite `pow(x, 2.0)` into `x * x`.
#[inline]
pub(crate) fn np_pow2(x: f64) -> f64 {
    x.powf(std::hint::black_box(2.0))
}

/// `x ** 2` on a NumPy float32 scalar: libm's `powf`.
#[inline]
pub(crate) fn np_pow2_f32(x: f32) -> f32 {
    x.powf(std::hint::black_box(2.0))
}

/// The [`crate::Env`] trait's two space accessors, for an env struct with
/// `observation_space` and `action_space` fields (every env here).
macro_rules! space_accessors {
    () => {
        fn observation_space(&self) -> &$crate::space::Space {
            &self.observation_space
        }

        fn action_space(&self) -> &$crate::space::Space {
            &self.action_space
        }
    };
}
pub(crate) use space_accessors;
