//! What every learner shares: errors, devices, CPU threads, and the
//! training settings (`LearnerConfig`).

use candle_core::Device;
use serde::{Deserialize, Serialize};

use crate::loss::LossConfig;
use crate::optim::{AdamConfig, RmsPropConfig};

/// Errors from the learner.
#[derive(Debug, thiserror::Error)]
pub enum LearnerError {
    #[error("learner: device `{0}`: expected \"cpu\", \"cuda\" or \"cuda:N\"")]
    BadDevice(String),
    #[error("learner: device `{0}` needs a build with the `cuda` feature (cargo build --features cuda)")]
    CudaNotBuilt(String),
    #[error("learner: device `{device}`: no usable CUDA device: {reason}")]
    CudaUnavailable { device: String, reason: String },
    #[error("learner: batch: {0}")]
    Batch(String),
    #[error("learner: {what} is not finite ({value}); the update was skipped, parameters are unchanged")]
    NonFinite { what: &'static str, value: f32 },
    #[error("learner: {0}")]
    Policy(#[from] cml_policy::PolicyError),
    #[error("learner: {0}")]
    VTrace(#[from] crate::vtrace::VTraceError),
    #[error("learner: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("learner: checkpoint {path}: {reason}")]
    Checkpoint { path: String, reason: String },
}

pub type Result<T> = std::result::Result<T, LearnerError>;

/// `device = "cpu" | "cuda" | "cuda:N"`. CUDA needs the `cuda` feature.
pub fn parse_device(spec: &str) -> Result<Device> {
    let ordinal = match spec {
        "cpu" => return Ok(Device::Cpu),
        "cuda" => 0,
        s => match s.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(n)) => n,
            _ => return Err(LearnerError::BadDevice(spec.to_string())),
        },
    };
    if cfg!(feature = "cuda") {
        Device::new_cuda(ordinal).map_err(|e| LearnerError::CudaUnavailable {
            device: spec.to_string(),
            // The driver's message, without the backtrace candle attaches
            // under RUST_BACKTRACE.
            reason: match e {
                candle_core::Error::WithBacktrace { inner, .. } => inner.to_string(),
                e => e.to_string(),
            },
        })
    } else {
        let _ = ordinal;
        Err(LearnerError::CudaNotBuilt(spec.to_string()))
    }
}

/// `Ok` when CUDA device `ordinal` can be opened; else why not (a build
/// without the `cuda` feature, no driver, no such device). For tests and
/// tools that use a GPU only where one is present.
pub fn cuda_available(ordinal: usize) -> std::result::Result<(), String> {
    match parse_device(&format!("cuda:{ordinal}")) {
        Ok(_) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

/// Which optimizer, with its settings (`[learner.optimizer]`,
/// `kind = "rmsprop" | "adam"`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum OptimizerConfig {
    Rmsprop(RmsPropConfig),
    Adam(AdamConfig),
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        OptimizerConfig::Rmsprop(RmsPropConfig::default())
    }
}

/// The learner's settings (`[learner]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LearnerConfig {
    #[serde(default = "default_device")]
    pub device: String,
    #[serde(default)]
    pub optimizer: OptimizerConfig,
    /// Global-norm gradient clipping.
    #[serde(default = "default_max_grad_norm")]
    pub max_grad_norm: f64,
    /// The learning rate decays linearly to zero over this many env frames
    /// produced by the actors (0: constant).
    #[serde(default)]
    pub total_frames: u64,
    /// Seed of the parameter initialisation.
    #[serde(default)]
    pub seed: u64,
    /// CPU threads that share one update (IMPALA on the CPU): the batch's
    /// unrolls are split into this many parts along B, each part's loss
    /// built and differentiated on its own thread, and the gradients
    /// summed (the loss is a sum over unrolls, so the update is the same
    /// up to rounding). Candle's kernels themselves run on one thread
    /// (`cml_run::plumbing::init_compute_threads`): at these batch sizes
    /// splitting a kernel costs more than it gives. Ape-X DQN and CUDA
    /// ignore it.
    #[serde(default = "default_cpu_threads")]
    pub cpu_threads: usize,
    #[serde(default)]
    pub loss: LossConfig,
    /// Ape-X DQN's settings (`[learner.dqn]`).
    #[serde(default)]
    pub dqn: crate::apex::DqnConfig,
}

fn default_device() -> String {
    "cpu".to_string()
}
fn default_max_grad_norm() -> f64 {
    40.0
}
fn default_cpu_threads() -> usize {
    1
}

impl Default for LearnerConfig {
    fn default() -> Self {
        LearnerConfig {
            device: default_device(),
            optimizer: OptimizerConfig::default(),
            max_grad_norm: default_max_grad_norm(),
            total_frames: 0,
            seed: 0,
            cpu_threads: default_cpu_threads(),
            loss: LossConfig::default(),
            dqn: crate::apex::DqnConfig::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_parse_and_cuda_without_the_feature_is_a_clear_error() {
        assert!(matches!(parse_device("cpu"), Ok(Device::Cpu)));
        assert!(matches!(parse_device("gpu"), Err(LearnerError::BadDevice(_))));
        assert!(matches!(parse_device("cuda:x"), Err(LearnerError::BadDevice(_))));
        if !cfg!(feature = "cuda") {
            let e = parse_device("cuda:1").unwrap_err();
            assert!(e.to_string().contains("--features cuda"), "{e}");
        }
    }

    #[test]
    fn config_parses_from_toml_with_defaults() {
        let c: LearnerConfig = toml_like(
            r#"{"optimizer": {"kind": "adam", "lr": 0.001}, "loss": {"entropy_cost": 0.005, "reward_clipping": "abs_one"}}"#,
        );
        assert_eq!(
            c.optimizer,
            OptimizerConfig::Adam(AdamConfig {
                lr: 0.001,
                beta1: 0.9,
                beta2: 0.999,
                epsilon: 1e-8
            })
        );
        assert_eq!(c.loss.entropy_cost, 0.005);
        assert_eq!(c.max_grad_norm, 40.0);
        let bad: std::result::Result<LearnerConfig, _> = serde_json::from_str(r#"{"optimiser": {}}"#);
        assert!(bad.is_err());
    }

    fn toml_like(json: &str) -> LearnerConfig {
        serde_json::from_str(json).expect("config parses")
    }
}
