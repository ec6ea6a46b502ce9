//! IMPALA (Espeholt et al. 2018): V-trace actor-critic. [`ImpalaLearner`]
//! is the network, its optimizer and the IMPALA step; it implements
//! [`Algorithm`] for the shared learner loop.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{Optimizer, VarMap};
use cml_policy::{ActionKind, NetConfig, PolicyNet, PolicyParams};

use crate::algorithm::{Algorithm, SampledUnrolls, ScalarSpec, StepOutcome};
use crate::learner::{parse_device, LearnerConfig, LearnerError, OptimizerConfig, Result};
use crate::loss::{bootstrap_truncated, impala_loss, LossInputs};
use crate::optim::{clip_grad_norm, linear_decay, Adam, NamedVars, OptimizerState, RmsProp};

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
    /// w_b: one importance-sampling weight per unroll, `[B]` f32 (see
    /// [`impala_loss`] for how they weigh the loss); `None`: all 1.
    pub importance_weights: Option<Tensor>,
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
pub struct ImpalaLearner {
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

impl ImpalaLearner {
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
        Ok(ImpalaLearner {
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
        if let Some(w) = &b.importance_weights {
            if w.dims() != [bsz] {
                return Err(LearnerError::Batch(format!(
                    "importance_weights have shape {:?}, expected [{bsz}]",
                    w.dims()
                )));
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

    /// One IMPALA update on `batch`, with the learning rate decayed by the
    /// frames trained on so far (see [`ImpalaLearner::step_at`]).
    pub fn step(&mut self, batch: &UnrollBatch) -> Result<StepReport> {
        self.step_at(batch, self.frames)
    }

    /// One IMPALA update on `batch`, with the learning rate decayed by
    /// `env_frames` (frames the actors produced). A batch with a wrong
    /// shape, or a step whose loss or gradient is not finite, is refused
    /// with an error and changes nothing.
    pub fn step_at(&mut self, batch: &UnrollBatch, env_frames: u64) -> Result<StepReport> {
        let (t, b) = self.check_batch(batch)?;
        let to_dev = |x: &Tensor| -> candle_core::Result<Tensor> { x.to_device(&self.device)?.to_dtype(DType::F32) };
        let obs = to_dev(&batch.observations)?;
        let rewards = to_dev(&batch.rewards)?;
        let terminated = to_dev(&batch.terminated)?;
        let truncated = to_dev(&batch.truncated)?;
        let behaviour = to_dev(&batch.behaviour_log_probs)?;
        let d = self.net.obs_dim();
        let importance_weights = batch.importance_weights.as_ref().map(to_dev).transpose()?;

        let lr = linear_decay(self.initial_lr, env_frames, self.config.total_frames);
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
                importance_weights: importance_weights.as_ref(),
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
            importance_weights: None,
        })
    }
}

/// The checkpoint name of [`ImpalaLearner::frames`].
const FRAMES_TRAINED: &str = "meta/frames_trained";

/// What [`ImpalaLearner`] reports after each step, in [`StepOutcome`] order.
const IMPALA_SCALARS: &[ScalarSpec] = &[
    ScalarSpec {
        name: "loss/policy",
        help: "policy-gradient loss: sum over T and B of -w_b * A_pg * log pi(a), IS-weighted",
    },
    ScalarSpec {
        name: "loss/baseline",
        help: "baseline loss: sum over T and B of 0.5 * w_b * (v_s - V(x))^2, before baseline_cost",
    },
    ScalarSpec {
        name: "loss/entropy",
        help: "policy entropy: weighted sum over T and B of w_b * H, divided by T*B (a per-step mean)",
    },
    ScalarSpec {
        name: "loss/total",
        help: "the loss minimized: policy + baseline_cost * baseline - entropy_cost * entropy sum (a sum over T and B)",
    },
    ScalarSpec {
        name: "train/grad_norm",
        help: "global gradient norm before clipping",
    },
    ScalarSpec {
        name: "train/learning_rate",
        help: "learning rate of this step (linear decay over env frames produced)",
    },
    ScalarSpec {
        name: "vtrace/mean_rho",
        help: "mean importance ratio pi/mu over T and B",
    },
    ScalarSpec {
        name: "vtrace/rho_clipped_fraction",
        help: "fraction of importance ratios above clip_rho_threshold",
    },
    ScalarSpec {
        name: "train/explained_variance",
        help: "1 - Var(v_s - V) / Var(v_s) over the batch",
    },
    ScalarSpec {
        name: "train/importance_weight_mean",
        help: "mean importance-sampling weight of the batch's unrolls",
    },
];

impl Algorithm for ImpalaLearner {
    fn name(&self) -> &'static str {
        "impala"
    }

    fn scalars(&self) -> &'static [ScalarSpec] {
        IMPALA_SCALARS
    }

    fn step(&mut self, batch: &SampledUnrolls<'_>, env_frames: u64) -> Result<StepOutcome> {
        if batch.importance_weights.len() != batch.count {
            return Err(LearnerError::Batch(format!(
                "{} importance weights for {} unrolls",
                batch.importance_weights.len(),
                batch.count
            )));
        }
        let mut unrolls = UnrollBatch::from_wire(batch.layout, batch.count, batch.frames, &self.device)?;
        unrolls.importance_weights = Some(Tensor::from_slice(batch.importance_weights, batch.count, &self.device)?);
        let r = self.step_at(&unrolls, env_frames)?;
        let mean_weight =
            batch.importance_weights.iter().map(|&w| f64::from(w)).sum::<f64>() / batch.count.max(1) as f64;
        Ok(StepOutcome {
            scalars: vec![
                f64::from(r.policy_loss),
                f64::from(r.baseline_loss),
                f64::from(r.entropy),
                f64::from(r.total_loss),
                f64::from(r.grad_norm),
                r.learning_rate,
                f64::from(r.mean_rho),
                f64::from(r.rho_clipped_fraction),
                f64::from(r.explained_variance),
                mean_weight,
            ],
            priorities: r.priorities.iter().map(|&p| f64::from(p)).collect(),
        })
    }

    fn steps(&self) -> u64 {
        self.steps
    }

    fn weights(&self) -> Result<Vec<u8>> {
        ImpalaLearner::weights(self)
    }

    fn state(&self) -> Result<Vec<(String, Tensor)>> {
        let mut state: Vec<(String, Tensor)> = self
            .parameters()
            .into_iter()
            .map(|(name, t)| (format!("param/{name}"), t))
            .collect();
        for (name, t) in self.optimizer_state()? {
            state.push((format!("optim/{name}"), t));
        }
        // Frames trained on, for `step`'s own schedule (f64: exact to 2^53).
        state.push((
            FRAMES_TRAINED.to_string(),
            Tensor::new(self.frames as f64, &Device::Cpu)?,
        ));
        Ok(state)
    }

    fn restore(&mut self, state: &HashMap<String, Tensor>, steps: u64) -> Result<()> {
        // Absent from checkpoints written before it existed.
        let frames = match state.get(FRAMES_TRAINED) {
            Some(t) => t.to_dtype(DType::F64)?.to_scalar::<f64>()? as u64,
            None => 0,
        };
        let unprefixed: HashMap<String, Tensor> = state
            .iter()
            .filter(|(k, _)| k.as_str() != FRAMES_TRAINED)
            .map(|(k, v)| {
                let name = k
                    .strip_prefix("param/")
                    .or_else(|| k.strip_prefix("optim/"))
                    .unwrap_or(k);
                (name.to_string(), v.clone())
            })
            .collect();
        ImpalaLearner::restore(self, &unprefixed, steps, frames)
    }

    fn device(&self) -> &Device {
        &self.device
    }
}
