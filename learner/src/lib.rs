//! `cml-learner`: V-trace, the IMPALA loss, optimizers, the learner step
//! and checkpoints, on candle (CPU, or CUDA with the `cuda` feature). The
//! network itself lives in `cml-policy`, shared with actor hosts.
//!
//! - [`vtrace`]: V-trace, matched against the reference cases.
//! - [`loss`]: the IMPALA actor-critic loss, reward clipping, truncation
//!   bootstrapping.
//! - [`optim`]: RMSProp, Adam, global-norm clipping, linear LR decay.
//! - [`learner`]: [`Learner::step`] on an [`UnrollBatch`].
//! - [`checkpoint`]: atomic safetensors checkpoints with a manifest.

pub mod broadcast;
pub mod checkpoint;
pub mod learner;
pub mod loss;
pub mod optim;
pub mod vtrace;

pub use learner::{
    parse_device, set_cpu_threads, Learner, LearnerConfig, LearnerError, OptimizerConfig, StepReport, UnrollBatch,
};
