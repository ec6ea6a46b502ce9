//! `cml-envs`: the environment API of cml-rl.
//!
//! - [`Env`]: Gymnasium's `reset` / `step` semantics with caller-owned
//!   observation buffers (stepping allocates nothing), discrete and
//!   continuous actions, [`Space::Discrete`] and [`Space::Box`].
//! - The registry: [`make`]`("CartPole-v1", &params)`, [`register`] for your
//!   own envs, Gymnasium's time limits ([`EnvHandle`]).
//! - [`VectorEnv`] / [`make_vec`]: many envs stepped together with
//!   automatic reset ([`VecEnv`] over any envs, or a native vectorized env
//!   such as [`classic::CartPoleVec`]).
//! - [`VecEnv`]: many envs stepped together with automatic reset that keeps
//!   each finished episode's true final observation.
//! - [`classic`]: CartPole-v1, Acrobot-v1, MountainCar-v0,
//!   MountainCarContinuous-v0 and Pendulum-v1, bit-exact with Gymnasium 1.4.
//! - [`minatar`]: the five MinAtar games (`MinAtar/Breakout-v1`, ...),
//!   bit-exact with the `minatar` 1.0.15 package.
//! - With the `gymnasium-rs` feature, [`gymnasium_rs_adapter`] runs any
//!   `gymnasium_rs` env as ours.
//!
//! This crate depends on no runtime, network or tensor crate.

pub mod classic;
mod env;
#[cfg(feature = "gymnasium-rs")]
pub mod gymnasium_rs_adapter;
pub mod minatar;
mod params;
mod registry;
pub mod rng;
mod space;
mod vector;

pub use env::{check_observation_buffer, continuous_action, discrete_action, Action, Env, EnvError, Step};
pub use params::{ParamReader, Params};
pub use registry::{
    make, make_vec, make_vec_with_time_limit, make_with_time_limit, max_episode_steps, register, register_spec,
    registered_ids, EnvFactory, EnvHandle, EnvSpec, Registry, VecFactory,
};
pub use space::{BoxDtype, Space};
pub use vector::{VecActions, VecEnv, VecStepBuffers, VecStepOutput, VectorEnv};
