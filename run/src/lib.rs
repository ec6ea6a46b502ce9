//! `cml-run`: the learner role as a library, and the plumbing every role
//! shares.
//!
//! - [`learner_loop`]: [`run_learner`], the one loop that drives any
//!   [`cml_learner::Algorithm`] (sampling, priorities, weight publishing,
//!   stop conditions, reports, checkpoints).
//! - [`recorders`]: metrics.csv, TensorBoard, Prometheus and the progress
//!   line, all fed the same [`recorders::Report`] of named scalars.
//! - [`algorithms`]: builds the configured algorithm (the one place that
//!   names them).
//! - [`config`]: the `[learner]` and `[train]` sections.
//! - [`plumbing`]: key files, socket options, stop flags and signals, the
//!   unroll layout of an env, compute threads.
//! - [`tensorboard`]: the TensorBoard event-file writer.

pub mod algorithms;
pub mod config;
pub mod dashboard;
pub mod learner_loop;
pub mod plumbing;
pub mod recorders;
pub mod tensorboard;

pub use learner_loop::{run_learner, LearnerOptions, LearnerSetup, RunSummary};

use std::path::Path;

/// Errors of the learner role and the plumbing.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Config(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Csv {
        path: String,
        #[source]
        source: csv::Error,
    },
    #[error(transparent)]
    Learner(#[from] cml_learner::LearnerError),
    #[error("replay: {0}")]
    Replay(#[from] cml_replay::ClientError),
    #[error(transparent)]
    Proto(#[from] cml_proto::ProtoError),
    #[error(transparent)]
    Weights(#[from] cml_proto::weights::WeightsError),
}

impl RunError {
    pub fn io(path: &Path, source: std::io::Error) -> RunError {
        RunError::Io {
            path: path.display().to_string(),
            source,
        }
    }

    pub fn csv(path: &Path, source: csv::Error) -> RunError {
        RunError::Csv {
            path: path.display().to_string(),
            source,
        }
    }
}
