//! [`UnrollBatch`]: B sampled unrolls, time-major `[T, B]`, as every
//! algorithm takes them; built from the wire layout by
//! [`UnrollBatch::from_wire`] and checked by [`UnrollBatch::check`].

use candle_core::{DType, Device, Tensor};
use cml_policy::ActionKind;

use crate::algorithm::SampledUnrolls;
use crate::learner::{LearnerError, Result};

/// Rebuilds the network's stacked inputs from an unroll's `T + k` frames
/// (`cml_proto::UnrollLayout::frame_stack`): the stack at step t is frames
/// t … t + k − 1, each frame from before the episode of the last replaced
/// by that episode's first frame, as the actors' `FrameStacks` pad.
struct FrameStacking {
    t: usize,
    k: usize,
    d: usize,
    channels: usize,
    count: usize,
    /// terminated or truncated, `[B, T]`: x_{u+1} starts an episode.
    done: Vec<bool>,
}

impl FrameStacking {
    fn new(layout: &cml_proto::UnrollLayout, count: usize, done: Vec<bool>) -> FrameStacking {
        FrameStacking {
            t: layout.unroll_length as usize,
            k: layout.frame_stack as usize,
            d: layout.obs_dim(),
            channels: layout.observation_shape.last().map_or(1, |&c| c as usize).max(1),
            count,
            done,
        }
    }

    /// The frame index (of T + k) where the episode of x_t starts within
    /// unroll b, or 0 if it started before x_0 (its earlier frames are the
    /// unroll's first k − 1, already padded by the actor).
    fn episode_start(&self, b: usize, t: usize) -> usize {
        (1..=t)
            .rev()
            .find(|&u| self.done[b * self.t + u - 1])
            .map_or(0, |u| u + self.k - 1)
    }

    /// Writes frames `sources` (frame indices of unroll b, oldest first)
    /// stacked along the channels into `out` (d·k values).
    fn stack(&self, sequence: &[f32], b: usize, sources: impl Iterator<Item = usize>, out: &mut [f32]) {
        let (c, kc) = (self.channels, self.channels * self.k);
        let unroll = &sequence[b * (self.t + self.k) * self.d..(b + 1) * (self.t + self.k) * self.d];
        for (j, source) in sources.enumerate() {
            let frame = &unroll[source * self.d..(source + 1) * self.d];
            for (pixel, values) in out.chunks_exact_mut(kc).zip(frame.chunks_exact(c)) {
                pixel[j * c..(j + 1) * c].copy_from_slice(values);
            }
        }
    }

    /// `[B, T+1, d·k]`: the stacked x_0 … x_T of every unroll.
    fn observations(&self, sequence: &[f32]) -> Vec<f32> {
        let input = self.d * self.k;
        let mut out = vec![0f32; self.count * (self.t + 1) * input];
        for b in 0..self.count {
            for t in 0..=self.t {
                let start = self.episode_start(b, t);
                let at = (b * (self.t + 1) + t) * input;
                self.stack(
                    sequence,
                    b,
                    (t..t + self.k).map(|i| i.max(start)),
                    &mut out[at..at + input],
                );
            }
        }
        out
    }

    /// The stack of the final observation `last` of unroll b's truncation
    /// at step t: frames x_{t−k+2} … x_t, then `last`.
    fn final_stack(&self, sequence: &[f32], b: usize, t: usize, last: &[f32], out: &mut [f32]) {
        let start = self.episode_start(b, t);
        self.stack(sequence, b, (t + 1..t + self.k).map(|i| i.max(start)), out);
        let (c, kc) = (self.channels, self.channels * self.k);
        for (pixel, values) in out.chunks_exact_mut(kc).zip(last.chunks_exact(c)) {
            pixel[(self.k - 1) * c..].copy_from_slice(values);
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
    /// w_b: one importance-sampling weight per unroll, `[B]` f32 (see
    /// `crate::loss::impala_loss` for how they weigh the loss); `None`: all 1.
    pub importance_weights: Option<Tensor>,
    /// Each unroll's recurrent state before x_0, `[B, S]` f32 (recurrent
    /// policies; the wire's `initial_recurrent_state`).
    pub initial_state: Option<Tensor>,
}

impl UnrollBatch {
    /// The time-major batch of what the learner loop sampled, with its
    /// importance weights, on `device`.
    pub fn from_sampled(sampled: &SampledUnrolls<'_>, device: &Device) -> Result<UnrollBatch> {
        if sampled.importance_weights.len() != sampled.count {
            return Err(LearnerError::Batch(format!(
                "{} importance weights for {} unrolls",
                sampled.importance_weights.len(),
                sampled.count
            )));
        }
        let mut batch = UnrollBatch::from_wire(sampled.layout, sampled.count, sampled.frames, device)?;
        batch.importance_weights = Some(Tensor::from_slice(sampled.importance_weights, sampled.count, device)?);
        Ok(batch)
    }

    /// Checks every shape against a network of `obs_dim` inputs and
    /// `action` outputs (and discrete actions against the range); returns
    /// (T, B).
    pub fn check(&self, obs_dim: usize, action: ActionKind) -> Result<(usize, usize)> {
        let (b, d) = (self, obs_dim);
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
        let expected_actions: Vec<usize> = match action {
            ActionKind::Categorical(_) => vec![t, bsz],
            ActionKind::Gaussian(a) => vec![t, bsz, a],
        };
        if b.actions.dims() != expected_actions {
            return Err(LearnerError::Batch(format!(
                "actions have shape {:?}, expected {expected_actions:?}",
                b.actions.dims()
            )));
        }
        if let ActionKind::Categorical(n) = action {
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
        if let Some(s) = &b.initial_state {
            if s.rank() != 2 || s.dim(0)? != bsz {
                return Err(LearnerError::Batch(format!(
                    "initial_state has shape {:?}, expected [{bsz}, S]",
                    s.dims()
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

    /// A time-major batch from `count` unrolls in the wire layout
    /// (batch-major frames, `cml_proto::unroll`), on `device`.
    pub fn from_wire(
        layout: &cml_proto::UnrollLayout,
        count: usize,
        frames: &[Vec<u8>],
        device: &Device,
    ) -> Result<UnrollBatch> {
        use cml_proto::tensor::{f32s, u32s};
        use cml_proto::unroll::{FINAL_OBSERVATIONS, TERMINATED, TRUNCATED};
        let specs = layout.tensor_specs(count, layout.final_count(frames));
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
        let d = layout.obs_dim();
        // Observations enter the network as f32 values (u8: 0..=255 as is).
        let observation_values = |bytes: &[u8]| -> Vec<f32> {
            match layout.observation_dtype {
                cml_proto::DType::U8 => bytes.iter().map(|&v| f32::from(v)).collect(),
                _ => f32s(bytes).collect(),
            }
        };
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
        let k = layout.frame_stack as usize;
        let stacking = (k > 1).then(|| {
            let done: Vec<bool> = frames[TERMINATED]
                .iter()
                .zip(&frames[TRUNCATED])
                .map(|(&a, &b)| a != 0 || b != 0)
                .collect();
            FrameStacking::new(layout, count, done)
        });
        // The unrolls' frames: x_0 … x_T, or with stacks the T + k frames
        // (kept for stacking the final observations).
        let sequence = observation_values(&frames[0]);
        let (observations, sequence) = match &stacking {
            Some(stacking) => (
                time_major(stacking.observations(&sequence), t + 1, d * k)?,
                Some(sequence),
            ),
            None => (time_major(sequence, t + 1, d)?, None),
        };
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
        let truncated_flags = flags(&frames[TRUNCATED]);
        let truncations = truncated_flags.iter().filter(|&&f| f == 1.0).count();
        if frames[FINAL_OBSERVATIONS].len() != truncations * layout.observation_bytes() {
            return Err(LearnerError::Batch(format!(
                "final_observations has {} bytes for {truncations} truncated steps of {} bytes each",
                frames[FINAL_OBSERVATIONS].len(),
                layout.observation_bytes()
            )));
        }
        // Sparse on the wire (one per truncated step, in (b, t) order);
        // dense [B, T, obs] here, zeros where not truncated (with frame
        // stacks: each stacked after the frames before it).
        let final_observations = if truncated_flags.iter().any(|&f| f > 0.0) {
            let sparse = observation_values(&frames[FINAL_OBSERVATIONS]);
            let input = d * k;
            let mut dense = vec![0f32; count * t * input];
            for (rank, i) in truncated_flags
                .iter()
                .enumerate()
                .filter(|(_, &f)| f == 1.0)
                .map(|(i, _)| i)
                .enumerate()
            {
                let last = &sparse[rank * d..(rank + 1) * d];
                let out = &mut dense[i * input..(i + 1) * input];
                match (&stacking, &sequence) {
                    (Some(stacking), Some(sequence)) => stacking.final_stack(sequence, i / t, i % t, last, out),
                    _ => out.copy_from_slice(last),
                }
            }
            Some(time_major(dense, t, input)?)
        } else {
            None
        };
        Ok(UnrollBatch {
            observations,
            actions,
            behaviour_log_probs: time_major(f32s(&frames[2]).collect(), t, 1)?,
            rewards: time_major(f32s(&frames[3]).collect(), t, 1)?,
            terminated: time_major(flags(&frames[4]), t, 1)?,
            truncated: time_major(truncated_flags, t, 1)?,
            final_observations,
            importance_weights: None,
            initial_state: match layout.recurrent_state_size {
                0 => None,
                s => Some(
                    Tensor::from_vec(
                        f32s(&frames[cml_proto::unroll::INITIAL_RECURRENT_STATE]).collect::<Vec<f32>>(),
                        (count, s as usize),
                        &Device::Cpu,
                    )?
                    .to_device(device)?,
                ),
            },
        })
    }
}
