//! IMPALA (Espeholt et al. 2018): V-trace actor-critic. [`ImpalaLearner`]
//! is the network, its optimizer and the IMPALA step; it implements
//! [`Algorithm`] for the shared learner loop.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use cml_policy::{ActionKind, NetConfig, ObservationShape, PolicyNet, PolicyParams, UnrollInputs};

use crate::algorithm::{
    frames_trained, frames_trained_entry, Algorithm, SampledUnrolls, ScalarSpec, StepOutcome, GRAD_NORM,
    IMPORTANCE_WEIGHT_MEAN, LEARNING_RATE,
};
use crate::batch::UnrollBatch;
use crate::learner::{parse_device, LearnerConfig, LearnerError, Result};
use crate::loss::{bootstrap_truncated, impala_loss, LossFigures, LossInputs, LossOutput, LossSummary};
use crate::trainable::{unprefixed, TrainableNet};

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

/// The network, its optimizer and the counters.
pub struct ImpalaLearner {
    trainable: TrainableNet,
    config: LearnerConfig,
    device: Device,
    steps: u64,
    frames: u64,
}

impl ImpalaLearner {
    /// A learner with a freshly initialised network.
    /// `obs`: the shape of one observation (`[d]`, or `[H, W, C]` for a
    /// convolutional torso).
    pub fn new(
        obs: impl Into<ObservationShape>,
        action: ActionKind,
        net: &NetConfig,
        config: LearnerConfig,
    ) -> Result<Self> {
        let device = parse_device(&config.device)?;
        let trainable = TrainableNet::new(obs, action, net, config.optimizer, config.seed, &device)?;
        Ok(ImpalaLearner {
            trainable,
            config,
            device,
            steps: 0,
            frames: 0,
        })
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn net(&self) -> &PolicyNet {
        self.trainable.net()
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
        self.trainable.weights()
    }

    /// The parameters by name (sorted).
    pub fn parameters(&self) -> Vec<(String, Tensor)> {
        self.trainable.parameters()
    }

    /// Optimizer state by name.
    pub fn optimizer_state(&self) -> Result<Vec<(String, Tensor)>> {
        self.trainable.optimizer_state()
    }

    /// Restores parameters, optimizer state and counters (from a checkpoint).
    /// Everything is checked before anything is changed.
    pub fn restore(&mut self, tensors: &HashMap<String, Tensor>, steps: u64, frames: u64) -> Result<()> {
        self.trainable.restore(tensors, &self.device)?;
        self.steps = steps;
        self.frames = frames;
        Ok(())
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
        let (t, b) = batch.check(self.net().obs_dim(), self.net().action_kind())?;
        let to_dev = |x: &Tensor| -> candle_core::Result<Tensor> { x.to_device(&self.device)?.to_dtype(DType::F32) };
        let obs = to_dev(&batch.observations)?;
        let rewards = to_dev(&batch.rewards)?;
        let terminated = to_dev(&batch.terminated)?;
        let truncated = to_dev(&batch.truncated)?;
        let behaviour = to_dev(&batch.behaviour_log_probs)?;
        let importance_weights = batch.importance_weights.as_ref().map(to_dev).transpose()?;

        let lr = self.trainable.decay_learning_rate(env_frames, self.config.total_frames);

        let actions = match self.net().action_kind() {
            ActionKind::Categorical(_) => batch.actions.to_device(&self.device)?.to_dtype(DType::U32)?,
            ActionKind::Gaussian(_) => to_dev(&batch.actions)?,
        };
        let any_truncated = truncated.sum_all()?.to_scalar::<f32>()? > 0.0;
        let final_observations = match (&batch.final_observations, any_truncated) {
            (Some(f), true) => Some(to_dev(f)?),
            (None, true) => {
                return Err(LearnerError::Batch(
                    "steps are truncated but final_observations are missing (needed to bootstrap)".into(),
                ))
            }
            _ => None,
        };
        let state_size = self.net().recurrent_state_size();
        let initial_state = match (&batch.initial_state, state_size) {
            (_, 0) => None,
            (Some(s), n) if s.dim(1)? == n => Some(to_dev(s)?),
            (s, n) => {
                return Err(LearnerError::Batch(format!(
                    "the recurrent policy needs initial_state [{b}, {n}]; the batch has {:?}",
                    s.as_ref().map(Tensor::dims)
                )))
            }
        };
        let dones = (&terminated + &truncated)?.minimum(1f32)?;
        let tensors = StepTensors {
            observations: obs,
            actions,
            rewards,
            terminated,
            truncated,
            dones,
            behaviour,
            importance_weights,
            final_observations,
            initial_state,
        };
        // Data parallel on the CPU: each part of the unrolls (along B) is
        // a sum of its own loss terms, built and differentiated on its own
        // thread; the summed gradient is the whole batch's.
        let parts = if self.device.is_cpu() {
            self.config.cpu_threads.clamp(1, b.max(1))
        } else {
            1
        };
        let config = &self.config;
        let (grad_norm, outputs) = self.trainable.apply_parts(parts, config.max_grad_norm, |net, i| {
            let (start, len) = part_columns(b, parts, i);
            let loss = part_loss(net, &tensors.columns(start, len)?, t, len, config)?;
            Ok((loss.total.clone(), loss))
        })?;
        let summary = LossSummary::of(&outputs, &self.config.loss)?;
        self.steps += 1;
        self.frames += (t * b) as u64;
        let LossFigures {
            policy_loss,
            baseline_loss,
            entropy,
            mean_rho,
            rho_clipped_fraction,
            explained_variance,
            priorities,
        } = summary.figures;
        Ok(StepReport {
            policy_loss,
            baseline_loss,
            entropy,
            total_loss: summary.total,
            grad_norm: grad_norm as f32,
            mean_rho,
            rho_clipped_fraction,
            explained_variance,
            learning_rate: lr,
            priorities,
        })
    }
}

/// Part `i` of `parts` of `b` unrolls: `(first column, columns)`, the
/// first `b % parts` parts one larger.
fn part_columns(b: usize, parts: usize, i: usize) -> (usize, usize) {
    let (base, extra) = (b / parts, b % parts);
    (i * base + i.min(extra), base + usize::from(i < extra))
}

/// One step's batch on the learner's device, time-major.
struct StepTensors {
    /// `[T + 1, B, obs]`.
    observations: Tensor,
    /// `[T, B]` (categorical) or `[T, B, A]`.
    actions: Tensor,
    rewards: Tensor,
    terminated: Tensor,
    truncated: Tensor,
    /// terminated or truncated.
    dones: Tensor,
    behaviour: Tensor,
    /// `[B]`.
    importance_weights: Option<Tensor>,
    /// `[T, B, obs]`.
    final_observations: Option<Tensor>,
    /// `[B, S]`.
    initial_state: Option<Tensor>,
}

impl StepTensors {
    /// Unrolls `start .. start + len` of every tensor.
    fn columns(&self, start: usize, len: usize) -> Result<StepTensors> {
        let along_b = |x: &Tensor| x.narrow(1, start, len);
        let first_dim = |x: &Tensor| x.narrow(0, start, len);
        let truncated = along_b(&self.truncated)?;
        // V(final observation) is needed only where a step was truncated.
        let final_observations = if truncated.sum_all()?.to_scalar::<f32>()? > 0.0 {
            self.final_observations.as_ref().map(along_b).transpose()?
        } else {
            None
        };
        Ok(StepTensors {
            observations: along_b(&self.observations)?,
            actions: along_b(&self.actions)?,
            rewards: along_b(&self.rewards)?,
            terminated: along_b(&self.terminated)?,
            truncated,
            dones: along_b(&self.dones)?,
            behaviour: along_b(&self.behaviour)?,
            importance_weights: self.importance_weights.as_ref().map(first_dim).transpose()?,
            final_observations,
            initial_state: self.initial_state.as_ref().map(first_dim).transpose()?,
        })
    }
}

/// The IMPALA loss of `b` unrolls of `t` steps.
fn part_loss(net: &PolicyNet, x: &StepTensors, t: usize, b: usize, config: &LearnerConfig) -> Result<LossOutput> {
    // x_0 … x_T through the network as the actors ran it (one batched
    // pass, or the recurrent core stepped from each unroll's state), and
    // V of the truncations' final observations.
    let (out, final_values) = net.forward_unroll(&UnrollInputs {
        observations: &x.observations,
        actions: &x.actions,
        rewards: &x.rewards,
        dones: &x.dones,
        initial_state: x.initial_state.as_ref(),
        final_observations: x.final_observations.as_ref(),
    })?;
    let final_values = final_values.map(|v| v.detach());
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
    let actions = match net.action_kind() {
        ActionKind::Categorical(_) => x.actions.reshape(t * b)?,
        ActionKind::Gaussian(a) => x.actions.reshape((t * b, a))?,
    };
    let target_log_probs = policy.log_prob(&actions)?.reshape((t, b))?;
    let entropy = policy.entropy()?.reshape((t, b))?;

    let rewards = if config.loss.reward_scale == 1.0 {
        x.rewards.clone()
    } else {
        (&x.rewards * f64::from(config.loss.reward_scale))?
    };
    let rewards = config.loss.reward_clipping.apply(&rewards)?;
    let (rewards, discounts) = bootstrap_truncated(
        &rewards,
        &x.terminated,
        &x.truncated,
        final_values.as_ref(),
        config.loss.discount,
    )?;
    Ok(impala_loss(
        LossInputs {
            target_action_log_probs: target_log_probs,
            behaviour_action_log_probs: &x.behaviour,
            entropy,
            values,
            bootstrap_value,
            rewards,
            discounts,
            importance_weights: x.importance_weights.as_ref(),
        },
        &config.loss,
    )?)
}

/// What [`ImpalaLearner`] reports after each step, in [`StepOutcome`] order.
const IMPALA_SCALARS: &[ScalarSpec] = &[
    ScalarSpec {
        name: "loss/policy",
        help: "policy-gradient loss: sum over T and B of -w_b * A_pg * log pi(a), IS-weighted (with ppo_clip: -w_b * min(q*A, clip(q)*A), q = pi/mu)",
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
    GRAD_NORM,
    LEARNING_RATE,
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
    IMPORTANCE_WEIGHT_MEAN,
];

impl Algorithm for ImpalaLearner {
    fn name(&self) -> &'static str {
        "impala"
    }

    fn scalars(&self) -> &'static [ScalarSpec] {
        IMPALA_SCALARS
    }

    fn step(&mut self, batch: &SampledUnrolls<'_>, env_frames: u64) -> Result<StepOutcome> {
        let unrolls = UnrollBatch::from_sampled(batch, &self.device)?;
        let r = self.step_at(&unrolls, env_frames)?;
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
                batch.mean_importance_weight(),
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
        let mut state = self.trainable.state_entries()?;
        // Frames trained on, for `step`'s own schedule.
        state.push(frames_trained_entry(self.frames)?);
        Ok(state)
    }

    fn restore(&mut self, state: &HashMap<String, Tensor>, steps: u64) -> Result<()> {
        let frames = frames_trained(state)?;
        ImpalaLearner::restore(self, &unprefixed(state), steps, frames)
    }

    fn device(&self) -> &Device {
        &self.device
    }
}
