//! `cml-learner`: learning algorithms on candle (CPU, or CUDA with the
//! `cuda` feature) behind one [`Algorithm`] trait, their losses and
//! optimizers, and checkpoints. The network itself lives in `cml-policy`,
//! shared with actor hosts; the loop that drives an algorithm lives in
//! `cml-run`.
//!
//! - [`algorithm`]: the [`Algorithm`] trait the learner loop drives.
//! - [`impala`]: IMPALA, [`ImpalaLearner`] on an [`UnrollBatch`].
//! - [`vtrace`]: V-trace, matched against the reference cases.
//! - [`loss`]: the IMPALA actor-critic loss, reward clipping, truncation
//!   bootstrapping, importance weights.
//! - [`optim`]: RMSProp, Adam, global-norm clipping, linear LR decay.
//! - [`config`]: `[learner.optimizer]` and the `[learner.loss]` checks.
//! - [`checkpoint`]: atomic safetensors checkpoints of any [`Algorithm`].

pub mod algorithm;
pub mod checkpoint;
pub mod config;
pub mod impala;
pub mod learner;
pub mod loss;
pub mod optim;
pub mod vtrace;

pub use algorithm::{Algorithm, SampledUnrolls, ScalarSpec, StepOutcome};
pub use impala::{ImpalaLearner, StepReport, UnrollBatch};
pub use learner::{cuda_available, parse_device, LearnerConfig, LearnerError, OptimizerConfig};
