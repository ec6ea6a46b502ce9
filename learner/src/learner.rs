//! The learner step: a batch of unrolls in, losses, metrics and replay
//! priorities out, parameters updated.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{Optimizer, VarMap};
use cml_policy::{ActionKind, NetConfig, PolicyNet, PolicyParams};
use serde::{Deserialize, Serialize};

use crate::loss::{bootstrap_truncated, impala_loss, LossConfig, LossInputs};
use crate::optim::{clip_grad_norm, linear_decay, Adam, AdamConfig, NamedVars, OptimizerState, RmsProp, RmsPropConfig};

/// Errors from the learner.
#[derive(Debug, thiserror::Error)]
pub enum LearnerError {
    #[error("learner: device `{0}`: expected \"cpu\", \"cuda\" or \"cuda:N\"")]
    BadDevice(String),
    #[error("learner: device `{0}` needs a build with the `cuda` feature (cargo build --features cuda)")]
    CudaNotBuilt(String),
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

/// Sets how many threads candle's CPU kernels (matmuls and element-wise
/// ops) use, through `RAYON_NUM_THREADS`, which candle and rayon read. Call
/// it first thing in `main`, before any thread starts: the environment is
/// process-wide. An existing `RAYON_NUM_THREADS` wins (an explicit choice of
/// the user).
pub fn set_cpu_threads(threads: usize) {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        std::env::set_var("RAYON_NUM_THREADS", threads.max(1).to_string());
    }
}

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
        Ok(Device::new_cuda(ordinal)?)
    } else {
        let _ = ordinal;
        Err(LearnerError::CudaNotBuilt(spec.to_string()))
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
        OptimizerConfig::Rmsprop(RmsPropConfig {
            lr: 6e-4,
            decay: 0.99,
            epsilon: 0.01,
        })
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
    /// (0: constant).
    #[serde(default)]
    pub total_frames: u64,
    /// Seed of the parameter initialisation.
    #[serde(default)]
    pub seed: u64,
    /// Threads for candle's CPU kernels. One by default: at IMPALA's batch
    /// sizes the ops are small and thread hand-offs cost more than they give
    /// (MLP 64×64, 32×20 batch on a 2-core machine, one run: 709k samples/s
    /// on one thread, 531k on two). Candle reads it from `RAYON_NUM_THREADS`, so it
    /// takes effect through [`set_cpu_threads`] at process start.
    #[serde(default = "default_cpu_threads")]
    pub cpu_threads: usize,
    #[serde(default)]
    pub loss: LossConfig,
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
        }
    }
}

/// A batch of B unrolls of length T, time-major.
#[derive(Clone, Debug)]
pub struct UnrollBatch {
    /// x_0 … x_T, `[T+1, B, obs_dim]` f32: x_T is the observation after the
    /// last step (its value bootstraps the unroll). After a step that ended an
    /// episode, x_{t+1} is the next episode's first observation.
    pub observations: Tensor,
    /// a_t: `[T, B]` u32 (discrete) or `[T, B, A]` f32 (continuous).
    pub actions: Tensor,
    /// log μ(a_t | x_t) under the behaviour policy, `[T, B]` f32.
    pub behaviour_log_probs: Tensor,
    /// r_t, `[T, B]` f32.
    pub rewards: Tensor,
    /// 1.0 where the episode terminated at step t, `[T, B]` f32.
    pub terminated: Tensor,
    /// 1.0 where the episode was truncated (time limit) at step t, `[T, B]`.
    pub truncated: Tensor,
    /// The true final observation where truncated, `[T, B, obs_dim]` (any
    /// values elsewhere); required when any step is truncated.
    pub final_observations: Option<Tensor>,
}

/// What one learner step reports.
#[derive(Clone, Debug, PartialEq)]
pub struct StepReport {
    pub policy_loss: f32,
    pub baseline_loss: f32,
    pub entropy: f32,
    pub total_loss: f32,
    /// Global gradient norm before clipping.
    pub grad_norm: f32,
    pub mean_rho: f32,
    pub rho_clipped_fraction: f32,
    pub explained_variance: f32,
    pub learning_rate: f64,
    /// One new replay priority per unroll: mean over t of |v_s − V(x_t)|.
    pub priorities: Vec<f32>,
}

enum LearnerOptimizer {
    RmsProp(RmsProp),
    Adam(Adam),
}

impl LearnerOptimizer {
    fn as_optimizer_state(&self) -> &dyn OptimizerState {
        match self {
            LearnerOptimizer::RmsProp(o) => o,
            LearnerOptimizer::Adam(o) => o,
        }
    }
}

/// The network, its optimizer and the counters.
pub struct Learner {
    varmap: VarMap,
    net: PolicyNet,
    vars: NamedVars,
    optimizer: LearnerOptimizer,
    config: LearnerConfig,
    initial_lr: f64,
    device: Device,
    steps: u64,
    frames: u64,
}

impl Learner {
    /// A learner with a freshly initialised network.
    pub fn new(obs_dim: usize, action: ActionKind, net: &NetConfig, config: LearnerConfig) -> Result<Self> {
        let device = parse_device(&config.device)?;
        let varmap = VarMap::new();
        let policy = PolicyNet::init(&varmap, obs_dim, action, net, config.seed, &device)?;
        let mut vars: NamedVars = varmap
            .data()
            .lock()
            .map_err(|_| LearnerError::Batch("variable map lock poisoned".into()))?
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let (optimizer, initial_lr) = match config.optimizer {
            OptimizerConfig::Rmsprop(c) => (LearnerOptimizer::RmsProp(RmsProp::with_names(vars.clone(), c)?), c.lr),
            OptimizerConfig::Adam(c) => (LearnerOptimizer::Adam(Adam::with_names(vars.clone(), c)?), c.lr),
        };
        Ok(Learner {
            varmap,
            net: policy,
            vars,
            optimizer,
            config,
            initial_lr,
            device,
            steps: 0,
            frames: 0,
        })
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn net(&self) -> &PolicyNet {
        &self.net
    }

    pub fn config(&self) -> &LearnerConfig {
        &self.config
    }

    /// Learner steps taken.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Env frames trained on (T·B per step).
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// The current weights as safetensors bytes (for the broadcast).
    pub fn weights(&self) -> Result<Vec<u8>> {
        Ok(PolicyNet::to_safetensors(&self.varmap)?)
    }

    /// The parameters by name (sorted).
    pub fn parameters(&self) -> Vec<(String, Tensor)> {
        self.vars
            .iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
            .collect()
    }

    /// Optimizer state by name.
    pub fn optimizer_state(&self) -> Result<Vec<(String, Tensor)>> {
        Ok(self.optimizer.as_optimizer_state().state()?)
    }

    /// Restores parameters, optimizer state and counters (from a checkpoint).
    /// Everything is checked before anything is changed.
    pub fn restore(&mut self, tensors: &HashMap<String, Tensor>, steps: u64, frames: u64) -> Result<()> {
        for (name, current) in self.optimizer_state()? {
            match tensors.get(&name) {
                Some(t) if t.dims() == current.dims() => {}
                Some(t) => {
                    return Err(LearnerError::Batch(format!(
                        "optimizer state `{name}` has shape {:?}, expected {:?}",
                        t.dims(),
                        current.dims()
                    )))
                }
                None => {
                    return Err(LearnerError::Batch(format!(
                        "optimizer state `{name}` is missing (another optimizer?)"
                    )))
                }
            }
        }
        for (name, var) in &self.vars {
            match tensors.get(name) {
                Some(t) if t.dims() == var.dims() => {}
                Some(t) => {
                    return Err(LearnerError::Batch(format!(
                        "parameter `{name}` has shape {:?}, the network has {:?}",
                        t.dims(),
                        var.dims()
                    )))
                }
                None => return Err(LearnerError::Batch(format!("parameter `{name}` is missing"))),
            }
        }
        for (name, var) in &self.vars {
            let t = tensors
                .get(name)
                .ok_or_else(|| LearnerError::Batch(format!("parameter `{name}` is missing")))?;
            if t.dims() != var.dims() {
                return Err(LearnerError::Batch(format!(
                    "parameter `{name}` has shape {:?}, the network has {:?}",
                    t.dims(),
                    var.dims()
                )));
            }
            var.set(&t.to_device(&self.device)?.to_dtype(var.dtype())?)?;
        }
        let state: HashMap<String, Tensor> = tensors
            .iter()
            .map(|(k, v)| Ok((k.clone(), v.to_device(&self.device)?)))
            .collect::<Result<_>>()?;
        match &mut self.optimizer {
            LearnerOptimizer::RmsProp(o) => o.load_state(&state)?,
            LearnerOptimizer::Adam(o) => o.load_state(&state)?,
        }
        self.steps = steps;
        self.frames = frames;
        Ok(())
    }

    fn check_batch(&self, b: &UnrollBatch) -> Result<(usize, usize)> {
        let d = self.net.obs_dim();
        let od = b.observations.dims();
        if od.len() != 3 || od[0] < 2 || od[2] != d {
            return Err(LearnerError::Batch(format!(
                "observations have shape {od:?}, expected [T+1, B, {d}] with T ≥ 1"
            )));
        }
        let (t, bsz) = (od[0] - 1, od[1]);
        for (name, x) in [
            ("behaviour_log_probs", &b.behaviour_log_probs),
            ("rewards", &b.rewards),
            ("terminated", &b.terminated),
            ("truncated", &b.truncated),
        ] {
            if x.dims() != [t, bsz] {
                return Err(LearnerError::Batch(format!(
                    "{name} has shape {:?}, expected [{t}, {bsz}]",
                    x.dims()
                )));
            }
        }
        let expected_actions: Vec<usize> = match self.net.action_kind() {
            ActionKind::Categorical(_) => vec![t, bsz],
            ActionKind::Gaussian(a) => vec![t, bsz, a],
        };
        if b.actions.dims() != expected_actions {
            return Err(LearnerError::Batch(format!(
                "actions have shape {:?}, expected {expected_actions:?}",
                b.actions.dims()
            )));
        }
        if let ActionKind::Categorical(n) = self.net.action_kind() {
            let max = b.actions.to_dtype(DType::U32)?.max_all()?.to_scalar::<u32>()?;
            if max as usize >= n {
                return Err(LearnerError::Batch(format!("action {max} is outside Discrete({n})")));
            }
        }
        if let Some(f) = &b.final_observations {
            if f.dims() != [t, bsz, d] {
                return Err(LearnerError::Batch(format!(
                    "final_observations have shape {:?}, expected [{t}, {bsz}, {d}]",
                    f.dims()
                )));
            }
        }
        Ok((t, bsz))
    }

    /// One IMPALA update on `batch`. A batch with a wrong shape, or a step
    /// whose loss or gradient is not finite, is refused with an error and
    /// changes nothing.
    pub fn step(&mut self, batch: &UnrollBatch) -> Result<StepReport> {
        let (t, b) = self.check_batch(batch)?;
        let to_dev = |x: &Tensor| -> candle_core::Result<Tensor> { x.to_device(&self.device)?.to_dtype(DType::F32) };
        let obs = to_dev(&batch.observations)?;
        let rewards = to_dev(&batch.rewards)?;
        let terminated = to_dev(&batch.terminated)?;
        let truncated = to_dev(&batch.truncated)?;
        let behaviour = to_dev(&batch.behaviour_log_probs)?;
        let d = self.net.obs_dim();

        let lr = linear_decay(self.initial_lr, self.frames, self.config.total_frames);
        match &mut self.optimizer {
            LearnerOptimizer::RmsProp(o) => o.set_learning_rate(lr),
            LearnerOptimizer::Adam(o) => o.set_learning_rate(lr),
        }

        // One forward pass over x_0 … x_T.
        let out = self.net.forward(&obs.reshape(((t + 1) * b, d))?)?;
        let all_values = out.value.reshape((t + 1, b))?;
        let values = all_values.narrow(0, 0, t)?;
        let bootstrap_value = all_values.get(t)?.detach();
        let first_t = |x: &Tensor| x.narrow(0, 0, t * b);
        let policy = match &out.policy {
            PolicyParams::Logits(l) => PolicyParams::Logits(first_t(l)?),
            PolicyParams::Gaussian { mean, log_std } => PolicyParams::Gaussian {
                mean: first_t(mean)?,
                log_std: log_std.clone(),
            },
        };
        let actions = match self.net.action_kind() {
            ActionKind::Categorical(_) => batch
                .actions
                .to_device(&self.device)?
                .to_dtype(DType::U32)?
                .reshape(t * b)?,
            ActionKind::Gaussian(a) => to_dev(&batch.actions)?.reshape((t * b, a))?,
        };
        let target_log_probs = policy.log_prob(&actions)?.reshape((t, b))?;
        let entropy = policy.entropy()?.reshape((t, b))?;

        let any_truncated = truncated.sum_all()?.to_scalar::<f32>()? > 0.0;
        let final_values = match (&batch.final_observations, any_truncated) {
            (Some(f), true) => Some(
                self.net
                    .forward(&to_dev(f)?.reshape((t * b, d))?)?
                    .value
                    .reshape((t, b))?
                    .detach(),
            ),
            (None, true) => {
                return Err(LearnerError::Batch(
                    "steps are truncated but final_observations are missing (needed to bootstrap)".into(),
                ))
            }
            _ => None,
        };
        let rewards = if self.config.loss.reward_scale == 1.0 {
            rewards
        } else {
            (rewards * f64::from(self.config.loss.reward_scale))?
        };
        let rewards = self.config.loss.reward_clipping.apply(&rewards)?;
        let (rewards, discounts) = bootstrap_truncated(
            &rewards,
            &terminated,
            &truncated,
            final_values.as_ref(),
            self.config.loss.discount,
        )?;

        let loss = impala_loss(
            LossInputs {
                target_action_log_probs: target_log_probs,
                behaviour_action_log_probs: &behaviour,
                entropy,
                values,
                bootstrap_value,
                rewards,
                discounts,
            },
            &self.config.loss,
        )?;
        let total = loss.total.to_scalar::<f32>()?;
        if !total.is_finite() {
            return Err(LearnerError::NonFinite {
                what: "loss",
                value: total,
            });
        }
        let mut grads = loss.total.backward()?;
        let vars: Vec<Var> = self.vars.iter().map(|(_, v)| v.clone()).collect();
        let grad_norm = clip_grad_norm(&mut grads, &vars, self.config.max_grad_norm)?;
        if !grad_norm.is_finite() {
            return Err(LearnerError::NonFinite {
                what: "gradient norm",
                value: grad_norm as f32,
            });
        }
        match &mut self.optimizer {
            LearnerOptimizer::RmsProp(o) => o.step(&grads)?,
            LearnerOptimizer::Adam(o) => o.step(&grads)?,
        }
        self.steps += 1;
        self.frames += (t * b) as u64;
        Ok(StepReport {
            policy_loss: loss.policy_loss,
            baseline_loss: loss.baseline_loss,
            entropy: loss.entropy,
            total_loss: total,
            grad_norm: grad_norm as f32,
            mean_rho: loss.mean_rho,
            rho_clipped_fraction: loss.rho_clipped_fraction,
            explained_variance: loss.explained_variance,
            learning_rate: lr,
            priorities: loss.priorities,
        })
    }
}

impl UnrollBatch {
    /// A time-major batch from `count` unrolls in the wire layout
    /// (batch-major frames, `cml_proto::unroll`), on `device`.
    pub fn from_wire(
        layout: &cml_proto::UnrollLayout,
        count: usize,
        frames: &[Vec<u8>],
        device: &Device,
    ) -> Result<UnrollBatch> {
        use cml_proto::tensor::{f32s, u32s};
        let specs = layout.tensor_specs(count);
        if frames.len() != specs.len() {
            return Err(LearnerError::Batch(format!(
                "{} frames, expected {}",
                frames.len(),
                specs.len()
            )));
        }
        for (spec, frame) in specs.iter().zip(frames) {
            if spec.byte_len() != Some(frame.len()) {
                return Err(LearnerError::Batch(format!(
                    "frame {:?} has {} bytes, expected {:?}",
                    spec.name,
                    frame.len(),
                    spec.byte_len()
                )));
            }
        }
        let t = layout.unroll_length as usize;
        let d = layout.obs_dim as usize;
        // [B, ...] on the wire -> [T(+1), B, ...] for the learner.
        let time_major = |values: Vec<f32>, steps: usize, inner: usize| -> Result<Tensor> {
            let shape: Vec<usize> = if inner == 1 {
                vec![count, steps]
            } else {
                vec![count, steps, inner]
            };
            Ok(Tensor::from_vec(values, shape, &Device::Cpu)?
                .transpose(0, 1)?
                .contiguous()?
                .to_device(device)?)
        };
        let flags = |bytes: &[u8]| bytes.iter().map(|&b| f32::from(b)).collect::<Vec<f32>>();
        let observations = time_major(f32s(&frames[0]).collect(), t + 1, d)?;
        let actions = match layout.action {
            cml_proto::ActionLayout::Discrete { .. } => {
                let a: Vec<u32> = u32s(&frames[1]).collect();
                Tensor::from_vec(a, (count, t), &Device::Cpu)?
                    .transpose(0, 1)?
                    .contiguous()?
                    .to_device(device)?
            }
            // Always [T, B, A], also for A = 1.
            cml_proto::ActionLayout::Continuous { dim } => {
                let a: Vec<f32> = f32s(&frames[1]).collect();
                Tensor::from_vec(a, (count, t, dim as usize), &Device::Cpu)?
                    .transpose(0, 1)?
                    .contiguous()?
                    .to_device(device)?
            }
        };
        let truncated_flags = flags(&frames[5]);
        let any_truncated = truncated_flags.iter().any(|&f| f > 0.0);
        Ok(UnrollBatch {
            observations,
            actions,
            behaviour_log_probs: time_major(f32s(&frames[2]).collect(), t, 1)?,
            rewards: time_major(f32s(&frames[3]).collect(), t, 1)?,
            terminated: time_major(flags(&frames[4]), t, 1)?,
            truncated: time_major(truncated_flags, t, 1)?,
            final_observations: if any_truncated {
                Some(time_major(f32s(&frames[6]).collect(), t, d)?)
            } else {
                None
            },
        })
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
