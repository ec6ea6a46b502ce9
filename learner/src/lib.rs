//! `cml-learner`: learning algorithms on candle (CPU, or CUDA with the
//! `cuda` feature) behind one [`Algorithm`] trait, their losses and
//! optimizers, and checkpoints. The network itself lives in `cml-policy`,
//! shared with actor hosts; the loop that drives an algorithm lives in
//! `cml-run`.
//!
//! - [`algorithm`]: the [`Algorithm`] trait the learner loop drives.
//! - [`batch`]: [`UnrollBatch`], sampled unrolls time-major, from the wire.
//! - [`trainable`]: a network with its optimizer; target-network copies.
//! - [`impala`]: IMPALA, [`ImpalaLearner`] on an [`UnrollBatch`].
//! - [`apex`]: Ape-X DQN, [`ApexDqnLearner`] (n-step double Q, dueling,
//!   target network, R2D2 sequence priorities).
//! - [`vtrace`]: V-trace, matched against the reference cases.
//! - [`loss`]: the IMPALA actor-critic loss, reward clipping, truncation
//!   bootstrapping, importance weights.
//! - [`optim`]: RMSProp, Adam, global-norm clipping, linear LR decay.
//! - [`config`]: `[learner.optimizer]` and the `[learner.loss]` checks.
//! - [`checkpoint`]: atomic safetensors checkpoints of any [`Algorithm`].

pub mod algorithm;
pub mod apex;
pub mod batch;
pub mod checkpoint;
pub mod config;
pub mod impala;
pub mod learner;
pub mod loss;
pub mod optim;
pub mod trainable;
pub mod vtrace;

pub use algorithm::{Algorithm, SampledUnrolls, ScalarSpec, StepOutcome};
pub use apex::{ApexDqnLearner, DqnConfig};
pub use batch::UnrollBatch;
pub use impala::{ImpalaLearner, StepReport};
pub use learner::{cuda_available, parse_device, LearnerConfig, LearnerError, OptimizerConfig};
