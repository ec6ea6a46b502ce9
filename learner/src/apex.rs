//! Ape-X DQN (Horgan et al. 2018): n-step double Q-learning with a dueling
//! network, on unrolls from prioritized replay. [`ApexDqnLearner`] is the
//! online network, its optimizer, the target network and the step; it
//! implements [`Algorithm`] for the shared learner loop.
//!
//! The loss of one batch (time-major, T steps of B unrolls):
//! L = 1/(T·B) Σ_{t,b} w_b · Huber_κ(G_{t,b} − Q(x_{t,b}, a_{t,b})), with w_b
//! the unroll's importance-sampling weight and G the n-step double-Q target
//! of `cml_policy::q_values` (constant for the gradient). The new priority
//! of unroll b is η·max_t |δ_{t,b}| + (1 − η)·mean_t |δ_{t,b}| (R2D2),
//! from the TD errors before the update.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, D};
use cml_policy::q_values::{double_q_value, dueling_q, sequence_priority, NStep, NStepInputs};
use cml_policy::{ActionKind, NetConfig, ObservationShape, PolicyNet};
use serde::{Deserialize, Serialize};

use crate::algorithm::{
    frames_trained, frames_trained_entry, Algorithm, SampledUnrolls, ScalarSpec, StepOutcome, GRAD_NORM,
    IMPORTANCE_WEIGHT_MEAN, LEARNING_RATE,
};
use crate::batch::UnrollBatch;
use crate::learner::{parse_device, LearnerConfig, LearnerError, Result};
use crate::trainable::{unprefixed, FrozenNet, TrainableNet};

/// `[learner.dqn]`: Ape-X DQN's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DqnConfig {
    /// n of the n-step return (Ape-X: 3).
    pub n_step: usize,
    /// γ.
    pub discount: f32,
    /// Learner steps between copies of the online network into the target
    /// network (the copy follows the step that reaches a multiple).
    pub target_update_interval: u64,
    /// η of the priority η·max|δ| + (1 − η)·mean|δ| (R2D2: 0.9).
    pub priority_eta: f64,
    /// κ of the Huber loss (1: the DQN papers' clipped squared error).
    pub huber_delta: f32,
}

impl Default for DqnConfig {
    fn default() -> DqnConfig {
        DqnConfig {
            n_step: 3,
            discount: 0.99,
            target_update_interval: 500,
            priority_eta: 0.9,
            huber_delta: 1.0,
        }
    }
}

impl DqnConfig {
    /// `"key: reason"` for the first bad value.
    pub fn validate(&self) -> std::result::Result<(), String> {
        for (key, ok, reason) in [
            ("n_step", self.n_step >= 1, "must be at least 1"),
            ("discount", (0.0..=1.0).contains(&self.discount), "must be in [0, 1]"),
            (
                "target_update_interval",
                self.target_update_interval >= 1,
                "must be at least 1",
            ),
            (
                "priority_eta",
                (0.0..=1.0).contains(&self.priority_eta),
                "must be in [0, 1]",
            ),
            (
                "huber_delta",
                self.huber_delta.is_finite() && self.huber_delta > 0.0,
                "must be a number > 0",
            ),
        ] {
            if !ok {
                return Err(format!("{key}: {reason}"));
            }
        }
        Ok(())
    }

    /// The n-step return these settings define.
    pub fn n_step_return(&self) -> NStep {
        NStep {
            n: self.n_step,
            discount: self.discount,
        }
    }
}

/// What one Ape-X step reports.
#[derive(Clone, Debug, PartialEq)]
pub struct DqnStepReport {
    /// The loss minimized (IS-weighted Huber, a per-step mean).
    pub loss: f32,
    /// Mean |δ| over T and B, unweighted.
    pub td_abs_mean: f32,
    /// Mean Q(x_t, a_t) over T and B.
    pub q_mean: f32,
    /// Mean n-step target over T and B.
    pub target_mean: f32,
    pub grad_norm: f32,
    pub learning_rate: f64,
    /// Whether the target network was copied after this step.
    pub target_updated: bool,
    /// One new priority per unroll.
    pub priorities: Vec<f64>,
}

/// The online network and its optimizer, the target network, the counters.
pub struct ApexDqnLearner {
    online: TrainableNet,
    target: FrozenNet,
    config: LearnerConfig,
    device: Device,
    steps: u64,
    frames: u64,
    actions: usize,
}

impl ApexDqnLearner {
    /// A learner with a freshly initialised network for `actions` discrete
    /// actions; the target network starts as a copy.
    /// `obs`: the shape of one observation (`[d]`, or `[H, W, C]` for a
    /// convolutional torso).
    pub fn new(
        obs: impl Into<ObservationShape>,
        action: ActionKind,
        net: &NetConfig,
        config: LearnerConfig,
    ) -> Result<Self> {
        let ActionKind::Categorical(actions) = action else {
            return Err(LearnerError::Batch(
                "apex_dqn needs a discrete action space (this env's actions are continuous)".into(),
            ));
        };
        if net.core != cml_policy::Core::None {
            return Err(LearnerError::Batch(
                "apex_dqn takes feed-forward networks only: model.core = \"lstm\" is for impala (R2D2-style \
                 recurrent replay is not implemented)"
                    .into(),
            ));
        }
        config
            .dqn
            .validate()
            .map_err(|e| LearnerError::Batch(format!("dqn.{e}")))?;
        let device = parse_device(&config.device)?;
        let online = TrainableNet::new(obs, action, net, config.optimizer, config.seed, &device)?;
        let target = online.frozen_copy(action, net, &device)?;
        Ok(ApexDqnLearner {
            online,
            target,
            config,
            device,
            steps: 0,
            frames: 0,
            actions,
        })
    }

    pub fn net(&self) -> &PolicyNet {
        self.online.net()
    }

    pub fn target_net(&self) -> &PolicyNet {
        self.target.net()
    }

    /// Q-values of `obs` (`[N, obs_dim]`) under `net`, `[N, A]`.
    fn q(net: &PolicyNet, obs: &Tensor) -> Result<Tensor> {
        Ok(dueling_q(&net.forward(obs)?)?)
    }

    /// One update on `batch`, the learning rate decayed by `env_frames`.
    /// A batch with a wrong shape, or a non-finite loss or gradient, is
    /// refused and changes nothing.
    pub fn step_at(&mut self, batch: &UnrollBatch, env_frames: u64) -> Result<DqnStepReport> {
        let (t, b) = batch.check(self.net().obs_dim(), ActionKind::Categorical(self.actions))?;
        let (d, a) = (self.net().obs_dim(), self.actions);
        let dqn = &self.config.dqn;
        let to_dev = |x: &Tensor| -> candle_core::Result<Tensor> { x.to_device(&self.device)?.to_dtype(DType::F32) };
        let obs = to_dev(&batch.observations)?.reshape(((t + 1) * b, d))?;
        let lr = self.online.decay_learning_rate(env_frames, self.config.total_frames);

        // Q over x_0 … x_T: online (with gradient) and target.
        let q_online = Self::q(self.online.net(), &obs)?;
        let q_target = Self::q(self.target.net(), &obs)?.detach();
        let host = |x: &Tensor| -> Result<Vec<f32>> { Ok(x.flatten_all()?.to_vec1::<f32>()?) };
        let online_values = host(&q_online.detach())?;
        let target_values = host(&q_target)?;
        let rewards = host(&batch.rewards)?;
        let terminated: Vec<bool> = host(&batch.terminated)?.iter().map(|&f| f > 0.5).collect();
        let truncated: Vec<bool> = host(&batch.truncated)?.iter().map(|&f| f > 0.5).collect();
        // The true final observations, where a step was truncated.
        let finals = match &batch.final_observations {
            Some(f) if truncated.iter().any(|&x| x) => {
                let f = to_dev(f)?.reshape((t * b, d))?;
                let online = host(&Self::q(self.online.net(), &f)?.detach())?;
                let target = host(&Self::q(self.target.net(), &f)?)?;
                Some((online, target))
            }
            None if truncated.iter().any(|&x| x) => {
                return Err(LearnerError::Batch(
                    "steps are truncated but final_observations are missing (needed to bootstrap)".into(),
                ))
            }
            _ => None,
        };
        // G_{t,b}, time-major, unroll by unroll.
        let n_step = dqn.n_step_return();
        let row = |i: usize| i * a..(i + 1) * a;
        let mut targets = vec![0.0f32; t * b];
        let (mut r, mut term, mut trunc) = (vec![0.0; t], vec![false; t], vec![false; t]);
        let (mut state_values, mut final_values, mut g) = (vec![0.0; t + 1], vec![0.0; t], vec![0.0; t]);
        for u in 0..b {
            for (s, value) in state_values.iter_mut().enumerate() {
                let i = s * b + u;
                *value = double_q_value(&online_values[row(i)], &target_values[row(i)]);
            }
            for s in 0..t {
                let i = s * b + u;
                r[s] = rewards[i];
                term[s] = terminated[i];
                trunc[s] = truncated[i] && !terminated[i];
                final_values[s] = match &finals {
                    Some((online, target)) if trunc[s] => double_q_value(&online[row(i)], &target[row(i)]),
                    _ => 0.0,
                };
            }
            n_step.targets(
                &NStepInputs {
                    rewards: &r,
                    terminated: &term,
                    truncated: &trunc,
                    state_values: &state_values,
                    final_values: &final_values,
                },
                &mut g,
            )?;
            for s in 0..t {
                targets[s * b + u] = g[s];
            }
        }
        // δ = G − Q(x_t, a_t) over the first T rows.
        let actions = batch
            .actions
            .to_device(&self.device)?
            .to_dtype(DType::U32)?
            .reshape((t * b, 1))?;
        let q_taken = q_online
            .narrow(0, 0, t * b)?
            .gather(&actions, D::Minus1)?
            .squeeze(D::Minus1)?;
        let n = (t * b) as f32;
        let target_mean = targets.iter().sum::<f32>() / n;
        let target_tensor = Tensor::from_vec(targets, t * b, &self.device)?;
        let td = (&target_tensor - &q_taken)?;
        // Huber_κ(δ) = ½ min(|δ|, κ)² + κ (|δ| − min(|δ|, κ)).
        let kappa = f64::from(dqn.huber_delta);
        let abs = td.abs()?;
        let quadratic = abs.clamp(0.0, kappa)?;
        let huber = ((quadratic.sqr()? * 0.5)? + ((&abs - &quadratic)? * kappa)?)?;
        let weights = match &batch.importance_weights {
            Some(w) => to_dev(w)?,
            None => Tensor::ones(b, DType::F32, &self.device)?,
        };
        let weighted = huber.reshape((t, b))?.broadcast_mul(&weights.reshape((1, b))?)?;
        let loss = (weighted.sum_all()? / (t * b) as f64)?;

        let abs_td = host(&abs)?;
        let mut per_unroll = vec![0.0f32; t];
        let priorities = (0..b)
            .map(|u| {
                for (s, slot) in per_unroll.iter_mut().enumerate() {
                    *slot = abs_td[s * b + u];
                }
                sequence_priority(&per_unroll, dqn.priority_eta)
            })
            .collect();
        let loss_value = loss.to_scalar::<f32>()?;
        let q_mean = q_taken.mean_all()?.to_scalar::<f32>()?;
        let grad_norm = self.online.apply(&loss, self.config.max_grad_norm)?;
        self.steps += 1;
        self.frames += (t * b) as u64;
        let target_updated = self.steps % self.config.dqn.target_update_interval == 0;
        if target_updated {
            self.target.copy_from(&self.online)?;
        }
        Ok(DqnStepReport {
            loss: loss_value,
            td_abs_mean: abs_td.iter().sum::<f32>() / n,
            q_mean,
            target_mean,
            grad_norm: grad_norm as f32,
            learning_rate: lr,
            target_updated,
            priorities,
        })
    }
}

/// What [`ApexDqnLearner`] reports after each step, in [`StepOutcome`] order.
const APEX_SCALARS: &[ScalarSpec] = &[
    ScalarSpec {
        name: "loss/td",
        help: "the loss minimized: mean over T and B of w_b * Huber(G - Q(x, a)), IS-weighted",
    },
    ScalarSpec {
        name: "dqn/td_abs_mean",
        help: "mean |G - Q(x, a)| over T and B, unweighted",
    },
    ScalarSpec {
        name: "dqn/q_mean",
        help: "mean Q(x_t, a_t) of the online network over T and B",
    },
    ScalarSpec {
        name: "dqn/target_mean",
        help: "mean n-step double-Q target G over T and B",
    },
    GRAD_NORM,
    LEARNING_RATE,
    ScalarSpec {
        name: "dqn/target_updates_total",
        help: "copies of the online network into the target network so far",
    },
    IMPORTANCE_WEIGHT_MEAN,
];

impl Algorithm for ApexDqnLearner {
    fn name(&self) -> &'static str {
        "apex_dqn"
    }

    fn scalars(&self) -> &'static [ScalarSpec] {
        APEX_SCALARS
    }

    fn step(&mut self, batch: &SampledUnrolls<'_>, env_frames: u64) -> Result<StepOutcome> {
        let unrolls = UnrollBatch::from_sampled(batch, &self.device)?;
        let r = self.step_at(&unrolls, env_frames)?;
        Ok(StepOutcome {
            scalars: vec![
                f64::from(r.loss),
                f64::from(r.td_abs_mean),
                f64::from(r.q_mean),
                f64::from(r.target_mean),
                f64::from(r.grad_norm),
                r.learning_rate,
                (self.steps / self.config.dqn.target_update_interval) as f64,
                batch.mean_importance_weight(),
            ],
            priorities: r.priorities,
        })
    }

    fn steps(&self) -> u64 {
        self.steps
    }

    fn weights(&self) -> Result<Vec<u8>> {
        self.online.weights()
    }

    fn state(&self) -> Result<Vec<(String, Tensor)>> {
        let mut state = self.online.state_entries()?;
        for (name, t) in self.target.parameters() {
            state.push((format!("target/{name}"), t));
        }
        state.push(frames_trained_entry(self.frames)?);
        Ok(state)
    }

    fn restore(&mut self, state: &HashMap<String, Tensor>, steps: u64) -> Result<()> {
        let frames = frames_trained(state)?;
        let online = unprefixed(state);
        let target: HashMap<String, Tensor> = state
            .iter()
            .filter_map(|(k, v)| k.strip_prefix("target/").map(|name| (name.to_string(), v.clone())))
            .collect();
        // Both checked before either changes.
        self.online.check_restorable(&online)?;
        self.target.check_restorable(&target)?;
        self.online.restore(&online, &self.device)?;
        self.target.restore(&target, &self.device)?;
        self.steps = steps;
        self.frames = frames;
        Ok(())
    }

    fn device(&self) -> &Device {
        &self.device
    }
}
