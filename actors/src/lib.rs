//! `cml-actors`: actor hosts — many light env actors per process, batched
//! CPU inference, unroll building, delivery to the replay shards and
//! following the learner's weight broadcast.
//!
//! - [`worker`]: `Worker`, one thread's K actors stepped together, writing
//!   unrolls straight into the wire layout.
//! - [`sampler`]: action draws from the policy output.
//! - [`exploration`]: Ape-X's ε-greedy actors and their first priorities.
//! - [`host`]: `ActorHost`, W workers and one I/O thread.

pub mod config;
pub mod exploration;
pub mod frame_stack;
pub mod host;
pub mod play;
pub mod sampler;
pub mod worker;

pub use config::ActorConfig;
pub use exploration::ApexActing;
pub use host::{ActorHost, HostConfig, HostReport};
pub use worker::{
    layout_for, policy_from_weights, EnvFactory, RestartLimit, UnrollChunk, VersionedPolicy, Worker, WorkerTimings,
};

/// Errors of an actor host; each names what failed.
#[derive(Debug, thiserror::Error)]
pub enum ActorError {
    #[error("actor host config: {0}")]
    Config(String),
    #[error("env: {0}")]
    Env(String),
    #[error("inference: {0}")]
    Inference(#[from] candle_core::Error),
    #[error("policy: {0}")]
    Policy(#[from] cml_policy::PolicyError),
    #[error("weights: {0}")]
    Weights(String),
    #[error("replay: {0}")]
    Replay(#[from] cml_replay::ClientError),
    #[error("transport: {0}")]
    Proto(#[from] cml_proto::ProtoError),
}
