//! The unroll layout: which tensors an unroll has, their dtypes and shapes,
//! and the checks every insert passes before a shard stores it.
//!
//! On the wire a message with B unrolls of length T carries seven frames
//! (eight with a recurrent state), in this order, batch-major (unroll b's
//! data is contiguous in every frame). `[obs…]` is the layout's
//! `observation_shape` (e.g. `[4]`, or `[10, 10, 4]` height-width-channels),
//! `obs` its `observation_dtype` (`f32` or `u8`):
//!
//! | # | name                    | dtype | shape                     |
//! |---|-------------------------|-------|---------------------------|
//! | 0 | observations            | obs   | [B, T+k, obs…]            |
//! | 1 | actions                 | u32   | [B, T] (discrete)         |
//! |   |                         | f32   | [B, T, act_dim] (continuous) |
//! | 2 | behaviour_log_probs     | f32   | [B, T]                    |
//! | 3 | rewards                 | f32   | [B, T]                    |
//! | 4 | terminated              | u8    | [B, T]                    |
//! | 5 | truncated               | u8    | [B, T]                    |
//! | 6 | final_observations      | obs   | [K, obs…]                 |
//! | 7 | initial_recurrent_state | f32   | [B, S] (only when S ≥ 1)  |
//!
//! K is the number of truncated steps in the message: one final observation
//! per `truncated = 1`, in (b, t) order, and none elsewhere.
//!
//! k is the layout's `frame_stack` (1 unless the network stacks frames):
//! an unroll carries its k − 1 frames before x_0 and then x_0 … x_T, each
//! frame once; the network's input at step t is the stack of frames
//! t … t + k − 1 (see `frame_stack` for episode starts inside it).

use serde::{Deserialize, Serialize};

use crate::tensor::{f32s, u32s, DType, TensorSpec};
use crate::{Frame, RejectReason, Rejection};

/// The most frames a network may stack.
pub const MAX_FRAME_STACK: u32 = 16;

/// Frame indices of an unroll message.
pub const OBSERVATIONS: usize = 0;
pub const ACTIONS: usize = 1;
pub const BEHAVIOUR_LOG_PROBS: usize = 2;
pub const REWARDS: usize = 3;
pub const TERMINATED: usize = 4;
pub const TRUNCATED: usize = 5;
pub const FINAL_OBSERVATIONS: usize = 6;
pub const INITIAL_RECURRENT_STATE: usize = 7;

/// The tensor names, in frame order (the last only with a recurrent state).
pub const TENSOR_NAMES: [&str; 8] = [
    "observations",
    "actions",
    "behaviour_log_probs",
    "rewards",
    "terminated",
    "truncated",
    "final_observations",
    "initial_recurrent_state",
];

/// The action part of a layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ActionLayout {
    /// One integer action in `0..n` per step.
    Discrete { n: u32 },
    /// `dim` f32 values per step.
    Continuous { dim: u32 },
}

/// What every unroll of a run looks like (the shard checks inserts against it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnrollLayout {
    /// T: steps per unroll.
    pub unroll_length: u32,
    /// The shape of one observation, as the env declares it (`[4]`,
    /// `[10, 10, 4]` height-width-channels, ...).
    pub observation_shape: Vec<u32>,
    /// `f32`, or `u8` (frames and 0/1 planes: one byte per value on the wire
    /// and in replay memory).
    pub observation_dtype: DType,
    pub action: ActionLayout,
    /// S: f32 values of recurrent state each unroll starts from; 0: the
    /// policy has none and the message has no frame for it.
    #[serde(default)]
    pub recurrent_state_size: u32,
    /// k: frames the network stacks into one input (`[model] frame_stack`;
    /// absent on the wire means 1). Each unroll carries `T + k` frames: the
    /// k − 1 before x_0 (the earlier ones of its first stack, already
    /// padded at an episode start), then x_0 … x_T. The stack at step t is
    /// frames t … t + k − 1; a frame from before the episode of the last
    /// one is replaced by that episode's first frame (an episode starts at
    /// x_0's frame after a reset, and at x_{u} after `terminated` or
    /// `truncated` at step u − 1). A final observation is stacked after the
    /// k − 1 frames up to x_t.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub frame_stack: u32,
}

fn one() -> u32 {
    1
}

fn is_one(k: &u32) -> bool {
    *k == 1
}

/// One fixed-size tensor of an unroll: name, dtype and per-unroll shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldSpec {
    /// The frame it travels in.
    pub frame: usize,
    pub name: &'static str,
    pub dtype: DType,
    pub shape: Vec<u64>,
}

impl FieldSpec {
    /// Bytes of this field for one unroll.
    pub fn bytes(&self) -> usize {
        self.shape.iter().product::<u64>() as usize * self.dtype.size()
    }
}

impl UnrollLayout {
    /// The layout of flat f32 observations of `obs_dim` values, without a
    /// recurrent state.
    pub fn flat(unroll_length: u32, obs_dim: u32, action: ActionLayout) -> UnrollLayout {
        UnrollLayout {
            unroll_length,
            observation_shape: vec![obs_dim],
            observation_dtype: DType::F32,
            action,
            recurrent_state_size: 0,
            frame_stack: 1,
        }
    }

    /// Values in one observation (the product of its shape).
    pub fn obs_dim(&self) -> usize {
        self.observation_shape.iter().map(|&d| d as usize).product()
    }

    /// Bytes of one observation.
    pub fn observation_bytes(&self) -> usize {
        self.obs_dim() * self.observation_dtype.size()
    }

    /// Frames of a message: 7, or 8 with a recurrent state.
    pub fn frame_count(&self) -> usize {
        if self.recurrent_state_size > 0 {
            8
        } else {
            7
        }
    }

    fn observation_dims(&self, leading: &[u64]) -> Vec<u64> {
        let mut shape = leading.to_vec();
        shape.extend(self.observation_shape.iter().map(|&d| u64::from(d)));
        shape
    }

    /// The fixed-size fields of one unroll, in frame order: every frame but
    /// `final_observations`, whose length depends on the truncations.
    pub fn fields(&self) -> Vec<FieldSpec> {
        let t = u64::from(self.unroll_length);
        let (action_dtype, action_shape) = match self.action {
            ActionLayout::Discrete { .. } => (DType::U32, vec![t]),
            ActionLayout::Continuous { dim } => (DType::F32, vec![t, u64::from(dim)]),
        };
        let mut fields = vec![
            (
                OBSERVATIONS,
                self.observation_dtype,
                self.observation_dims(&[t + u64::from(self.frame_stack)]),
            ),
            (ACTIONS, action_dtype, action_shape),
            (BEHAVIOUR_LOG_PROBS, DType::F32, vec![t]),
            (REWARDS, DType::F32, vec![t]),
            (TERMINATED, DType::U8, vec![t]),
            (TRUNCATED, DType::U8, vec![t]),
        ];
        if self.recurrent_state_size > 0 {
            fields.push((
                INITIAL_RECURRENT_STATE,
                DType::F32,
                vec![u64::from(self.recurrent_state_size)],
            ));
        }
        fields
            .into_iter()
            .map(|(frame, dtype, shape)| FieldSpec {
                frame,
                name: TENSOR_NAMES[frame],
                dtype,
                shape,
            })
            .collect()
    }

    /// Bytes of one unroll's fixed-size fields (final observations are
    /// stored beside them, `observation_bytes()` per truncated step).
    pub fn item_bytes(&self) -> usize {
        self.fields().iter().map(FieldSpec::bytes).sum()
    }

    /// Checks the layout itself.
    pub fn validate(&self) -> Result<(), String> {
        if self.unroll_length == 0 {
            return Err("unroll_length must be at least 1".into());
        }
        if self.observation_shape.is_empty() || self.observation_shape.contains(&0) {
            return Err(format!(
                "observation_shape {:?} must have at least one dimension, none of them 0",
                self.observation_shape
            ));
        }
        if self.observation_shape.len() > 4 {
            return Err(format!(
                "observation_shape {:?} has more than 4 dimensions",
                self.observation_shape
            ));
        }
        if !matches!(self.observation_dtype, DType::F32 | DType::U8) {
            return Err(format!(
                "observation_dtype {} is not f32 or u8",
                self.observation_dtype.as_str()
            ));
        }
        let too_big = self
            .observation_shape
            .iter()
            .try_fold(1u64, |n, &d| n.checked_mul(u64::from(d)))
            .is_none_or(|n| n > 1 << 30);
        if too_big {
            return Err(format!(
                "observation_shape {:?} holds more than 2^30 values",
                self.observation_shape
            ));
        }
        if !(1..=MAX_FRAME_STACK).contains(&self.frame_stack) {
            return Err(format!(
                "frame_stack {} is not in 1..={MAX_FRAME_STACK}",
                self.frame_stack
            ));
        }
        if self.recurrent_state_size > 1 << 20 {
            return Err(format!(
                "recurrent_state_size {} is above 2^20",
                self.recurrent_state_size
            ));
        }
        match self.action {
            ActionLayout::Discrete { n: 0 } => Err("a discrete action space needs n >= 1".into()),
            ActionLayout::Continuous { dim: 0 } => Err("a continuous action space needs dim >= 1".into()),
            _ => Ok(()),
        }
    }

    /// The `tensors` list of a message with `count` unrolls and `finals`
    /// truncated steps.
    pub fn tensor_specs(&self, count: usize, finals: usize) -> Vec<TensorSpec> {
        let mut specs: Vec<TensorSpec> = self
            .fields()
            .into_iter()
            .map(|f| {
                let mut shape = vec![count as u64];
                shape.extend(f.shape);
                TensorSpec {
                    name: f.name.to_string(),
                    dtype: f.dtype,
                    shape,
                }
            })
            .collect();
        specs.insert(
            FINAL_OBSERVATIONS,
            TensorSpec {
                name: TENSOR_NAMES[FINAL_OBSERVATIONS].to_string(),
                dtype: self.observation_dtype,
                shape: self.observation_dims(&[finals as u64]),
            },
        );
        specs
    }

    /// The number of final observations `frames` hold (its length over one
    /// observation's bytes; frames as built by a sender).
    pub fn final_count<F: Frame>(&self, frames: &[F]) -> usize {
        frames
            .get(FINAL_OBSERVATIONS)
            .map_or(0, |f| f.bytes().len() / self.observation_bytes().max(1))
    }

    /// Checks that `tensors` and the payload frames hold exactly `count`
    /// unrolls of this layout, with valid values: finite floats, discrete
    /// actions in range, flags 0 or 1, and one final observation per
    /// truncated step.
    pub fn check_payload<F: Frame>(
        &self,
        count: usize,
        tensors: &[TensorSpec],
        payload: &[F],
    ) -> Result<(), Rejection> {
        let bad = |detail: String| Rejection::new(RejectReason::BadTensor, detail);
        let frames = self.frame_count();
        if tensors.len() != frames || payload.len() != frames {
            return Err(bad(format!(
                "{} tensor descriptions and {} payload frames; expected {frames} ({})",
                tensors.len(),
                payload.len(),
                TENSOR_NAMES[..frames].join(", ")
            )));
        }
        let check_spec = |got: &TensorSpec, want: &TensorSpec, frame: &F| -> Result<(), Rejection> {
            if got != want {
                return Err(bad(format!(
                    "tensor {:?} {} {:?}; expected {:?} {} {:?}",
                    got.name,
                    got.dtype.as_str(),
                    got.shape,
                    want.name,
                    want.dtype.as_str(),
                    want.shape
                )));
            }
            let len = want.byte_len().unwrap_or(usize::MAX);
            if frame.bytes().len() != len {
                return Err(bad(format!(
                    "tensor {:?}: frame has {} bytes; {:?} {} needs {len}",
                    want.name,
                    frame.bytes().len(),
                    want.shape,
                    want.dtype.as_str()
                )));
            }
            Ok(())
        };
        // The truncated flags say how many final observations there are.
        let truncated = payload[TRUNCATED].bytes();
        let finals = truncated.iter().filter(|&&f| f == 1).count();
        let expected = self.tensor_specs(count, finals);
        for (i, want) in expected.iter().enumerate() {
            if i != FINAL_OBSERVATIONS {
                check_spec(&tensors[i], want, &payload[i])?;
            }
        }
        for (i, want) in expected.iter().enumerate() {
            if i == FINAL_OBSERVATIONS {
                continue;
            }
            self.check_values(&want.name, want.dtype, i, payload[i].bytes())?;
        }
        check_spec(
            &tensors[FINAL_OBSERVATIONS],
            &expected[FINAL_OBSERVATIONS],
            &payload[FINAL_OBSERVATIONS],
        )
        .map_err(|mut e| {
            e.detail = format!("{} ({finals} truncated steps in \"truncated\")", e.detail);
            e
        })?;
        self.check_values(
            &expected[FINAL_OBSERVATIONS].name,
            self.observation_dtype,
            FINAL_OBSERVATIONS,
            payload[FINAL_OBSERVATIONS].bytes(),
        )
    }

    fn check_values(&self, name: &str, dtype: DType, frame: usize, bytes: &[u8]) -> Result<(), Rejection> {
        let invalid = |what: String| Rejection::new(RejectReason::BadValue, format!("tensor {name:?}: {what}"));
        match (frame, dtype) {
            (ACTIONS, DType::U32) => {
                let n = match self.action {
                    ActionLayout::Discrete { n } => n,
                    ActionLayout::Continuous { .. } => u32::MAX,
                };
                if let Some((i, a)) = u32s(bytes).enumerate().find(|(_, a)| *a >= n) {
                    return Err(invalid(format!("element {i} is {a}; actions are in 0..{n}")));
                }
            }
            (_, DType::F32) => {
                if let Some((i, v)) = f32s(bytes).enumerate().find(|(_, v)| !v.is_finite()) {
                    return Err(invalid(format!("element {i} is {v}")));
                }
            }
            (TERMINATED | TRUNCATED, DType::U8) => {
                if let Some((i, v)) = bytes.iter().enumerate().find(|(_, v)| **v > 1) {
                    return Err(invalid(format!("element {i} is {v}; flags are 0 or 1")));
                }
            }
            // u8 observations: every byte is a value.
            _ => {}
        }
        Ok(())
    }

    /// Copies unroll `b` of a checked payload into `item` (the fixed-size
    /// fields concatenated in frame order; `item.len() == item_bytes()`) and
    /// its final observations into `finals` (replacing what it held);
    /// `first_final` is the number of final observations of unrolls
    /// `0..b`. Returns the number of unroll `b`'s.
    pub fn pack_item<F: Frame>(
        &self,
        payload: &[F],
        b: usize,
        first_final: usize,
        item: &mut [u8],
        finals: &mut Vec<u8>,
    ) -> usize {
        let mut offset = 0;
        for field in self.fields() {
            let n = field.bytes();
            item[offset..offset + n].copy_from_slice(&payload[field.frame].bytes()[b * n..(b + 1) * n]);
            offset += n;
        }
        let t = self.unroll_length as usize;
        let count = payload[TRUNCATED].bytes()[b * t..(b + 1) * t]
            .iter()
            .filter(|&&f| f == 1)
            .count();
        let ob = self.observation_bytes();
        finals.clear();
        finals.extend_from_slice(&payload[FINAL_OBSERVATIONS].bytes()[first_final * ob..(first_final + count) * ob]);
        count
    }

    /// Unrolls `range` of a message's frames (`frame_count()` of them, as
    /// `check_payload` accepts), as the frames of a message of their own.
    pub fn slice_unrolls<F: Frame>(&self, frames: &[F], range: std::ops::Range<usize>) -> Vec<Vec<u8>> {
        let mut out = vec![Vec::new(); self.frame_count()];
        for field in self.fields() {
            let n = field.bytes();
            out[field.frame] = frames[field.frame].bytes()[range.start * n..range.end * n].to_vec();
        }
        let t = self.unroll_length as usize;
        let truncated = frames[TRUNCATED].bytes();
        let ones = |flags: &[u8]| flags.iter().filter(|&&f| f == 1).count();
        let first = ones(&truncated[..range.start * t]);
        let count = ones(&truncated[range.start * t..range.end * t]);
        let ob = self.observation_bytes();
        out[FINAL_OBSERVATIONS] = frames[FINAL_OBSERVATIONS].bytes()[first * ob..(first + count) * ob].to_vec();
        out
    }

    /// Appends one packed item and its final observations to the output
    /// frames (`frame_count()` of them).
    pub fn unpack_item(&self, item: &[u8], finals: &[u8], frames: &mut [Vec<u8>]) {
        let mut offset = 0;
        for field in self.fields() {
            let n = field.bytes();
            frames[field.frame].extend_from_slice(&item[offset..offset + n]);
            offset += n;
        }
        frames[FINAL_OBSERVATIONS].extend_from_slice(finals);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::{extend_f32, extend_u32};

    fn layout() -> UnrollLayout {
        UnrollLayout::flat(3, 2, ActionLayout::Discrete { n: 2 })
    }

    /// `count` unrolls; unroll b is truncated at step 1 when b is odd.
    fn payload(count: usize) -> Vec<Vec<u8>> {
        let l = layout();
        let mut frames = vec![Vec::new(); 7];
        for b in 0..count {
            let base = b as f32 * 100.0;
            extend_f32(&mut frames[0], &(0..8).map(|i| base + i as f32).collect::<Vec<_>>());
            extend_u32(&mut frames[1], &[0, 1, 1]);
            extend_f32(&mut frames[2], &[-0.5, -0.6, -0.7]);
            extend_f32(&mut frames[3], &[1.0, 1.0, 1.0]);
            frames[4].extend_from_slice(&[0, 0, 1]);
            frames[5].extend_from_slice(&[0, u8::from(b % 2 == 1), 0]);
            if b % 2 == 1 {
                extend_f32(&mut frames[6], &[base + 0.5, base + 0.25]);
            }
        }
        assert_eq!(
            frames.iter().map(Vec::len).sum::<usize>(),
            count * l.item_bytes() + count / 2 * l.observation_bytes()
        );
        frames
    }

    fn specs(frames: &[Vec<u8>], count: usize) -> Vec<TensorSpec> {
        layout().tensor_specs(count, layout().final_count(frames))
    }

    #[test]
    fn item_bytes_and_specs() {
        let l = layout();
        assert_eq!(l.item_bytes(), 4 * 8 + 4 * 3 + 4 * 3 + 4 * 3 + 3 + 3);
        let specs = l.tensor_specs(5, 2);
        assert_eq!(specs[0].shape, vec![5, 4, 2]);
        assert_eq!(specs[1].dtype, DType::U32);
        assert_eq!(specs[6].shape, vec![2, 2]);
        assert_eq!(specs.len(), 7);
        let c = UnrollLayout {
            action: ActionLayout::Continuous { dim: 3 },
            ..l.clone()
        };
        assert_eq!(c.tensor_specs(1, 0)[1].shape, vec![1, 3, 3]);
        assert!(UnrollLayout {
            unroll_length: 0,
            ..l.clone()
        }
        .validate()
        .is_err());
        let frames = UnrollLayout {
            observation_shape: vec![10, 10, 4],
            observation_dtype: DType::U8,
            recurrent_state_size: 64,
            ..l.clone()
        };
        frames.validate().unwrap();
        let specs = frames.tensor_specs(2, 1);
        assert_eq!(
            (specs[0].dtype, specs[0].shape.clone()),
            (DType::U8, vec![2, 4, 10, 10, 4])
        );
        assert_eq!(specs[6].shape, vec![1, 10, 10, 4]);
        assert_eq!(
            (specs[7].name.as_str(), specs[7].shape.clone()),
            ("initial_recurrent_state", vec![2, 64])
        );
        assert_eq!(frames.item_bytes(), 400 * 4 + 4 * 3 * 3 + 3 + 3 + 64 * 4);
        // Four stacked frames: the 3 before x_0, then x_0 … x_T, each once.
        let stacked = UnrollLayout {
            frame_stack: 4,
            ..frames.clone()
        };
        stacked.validate().unwrap();
        let specs = stacked.tensor_specs(2, 1);
        assert_eq!(specs[0].shape, vec![2, 3 + 4, 10, 10, 4]);
        assert_eq!(
            specs[6].shape,
            vec![1, 10, 10, 4],
            "final observations stay single frames"
        );
        assert_eq!(stacked.item_bytes(), frames.item_bytes() + 3 * 400);
        for k in [0, MAX_FRAME_STACK + 1] {
            let e = UnrollLayout {
                frame_stack: k,
                ..frames.clone()
            }
            .validate()
            .unwrap_err();
            assert!(e.contains("frame_stack"), "{e}");
        }
        for bad in [vec![], vec![3, 0], vec![1, 1, 1, 1, 1]] {
            let e = UnrollLayout {
                observation_shape: bad,
                ..l.clone()
            }
            .validate()
            .unwrap_err();
            assert!(e.contains("observation_shape"), "{e}");
        }
        let e = UnrollLayout {
            observation_dtype: DType::U32,
            ..l
        }
        .validate()
        .unwrap_err();
        assert!(e.contains("u32"), "{e}");
    }

    #[test]
    fn pack_then_unpack_is_the_identity() {
        let l = layout();
        let frames = payload(4);
        l.check_payload(4, &specs(&frames, 4), &frames).unwrap();
        let mut out = vec![Vec::new(); 7];
        let mut item = vec![0u8; l.item_bytes()];
        let mut finals = Vec::new();
        let mut first_final = 0;
        for b in 0..4 {
            let n = l.pack_item(&frames, b, first_final, &mut item, &mut finals);
            assert_eq!(n, b % 2);
            assert_eq!(finals.len(), n * 8);
            first_final += n;
            l.unpack_item(&item, &finals, &mut out);
        }
        assert_eq!(out, frames);
        // Slices of a message are messages: 1..3 holds unroll 1's final.
        let middle = l.slice_unrolls(&frames, 1..3);
        l.check_payload(2, &l.tensor_specs(2, 1), &middle).unwrap();
        assert_eq!(middle[6], frames[6][..8]);
        assert_eq!(l.slice_unrolls(&frames, 3..4)[6], frames[6][8..]);
    }

    #[test]
    fn u8_observations_and_a_recurrent_state_round_trip() {
        let l = UnrollLayout {
            observation_shape: vec![2, 2],
            observation_dtype: DType::U8,
            recurrent_state_size: 3,
            ..layout()
        };
        let mut frames = vec![Vec::new(); 8];
        frames[0] = (0..16).map(|i| i as u8 * 17).collect();
        extend_u32(&mut frames[1], &[0, 1, 1]);
        extend_f32(&mut frames[2], &[-0.5; 3]);
        extend_f32(&mut frames[3], &[0.0; 3]);
        frames[4] = vec![0; 3];
        frames[5] = vec![1, 0, 1];
        frames[6] = vec![255; 8];
        extend_f32(&mut frames[7], &[0.1, -0.2, 0.3]);
        let specs = l.tensor_specs(1, 2);
        l.check_payload(1, &specs, &frames).unwrap();
        let mut item = vec![0u8; l.item_bytes()];
        let mut finals = Vec::new();
        assert_eq!(l.pack_item(&frames, 0, 0, &mut item, &mut finals), 2);
        let mut out = vec![Vec::new(); 8];
        l.unpack_item(&item, &finals, &mut out);
        assert_eq!(out, frames);

        // A recurrent state of the wrong size is a bad tensor.
        let mut short = frames.clone();
        short[7].truncate(8);
        let e = l.check_payload(1, &specs, &short).unwrap_err();
        assert_eq!(e.reason, RejectReason::BadTensor);
        assert!(e.detail.contains("initial_recurrent_state"), "{}", e.detail);
        let mut wrong = specs.clone();
        wrong[7].shape = vec![1, 4];
        let e = l.check_payload(1, &wrong, &frames).unwrap_err();
        assert!(e.detail.contains("initial_recurrent_state"), "{}", e.detail);
        let mut nan = frames.clone();
        nan[7][4..8].copy_from_slice(&f32::NAN.to_le_bytes());
        assert_eq!(
            l.check_payload(1, &specs, &nan).unwrap_err().reason,
            RejectReason::BadValue
        );
        // Without its eighth frame the message is refused too.
        assert!(l.check_payload(1, &specs[..7], &frames[..7]).is_err());
    }

    #[test]
    fn every_defect_is_named() {
        let l = layout();
        let frames = payload(2);
        let specs = specs(&frames, 2);
        let check = |specs: &[TensorSpec], frames: &[Vec<u8>]| l.check_payload(2, specs, frames).unwrap_err();

        let e = check(&specs[..6], &payload(2)[..6]);
        assert_eq!(e.reason, RejectReason::BadTensor);
        let mut wrong_dtype = specs.clone();
        wrong_dtype[1].dtype = DType::F32;
        assert!(check(&wrong_dtype, &payload(2)).detail.contains("\"actions\" f32"));
        let mut wrong_shape = specs.clone();
        wrong_shape[0].shape = vec![2, 4, 3];
        assert!(check(&wrong_shape, &payload(2)).detail.contains("observations"));
        let mut short = payload(2);
        short[3].pop();
        assert!(check(&specs, &short).detail.contains("frame has 23 bytes"));

        // Final observations: exactly one per truncated step.
        let mut dense = payload(2);
        dense[6].extend_from_slice(&[0; 8]);
        let e = check(&l.tensor_specs(2, 2), &dense);
        assert!(
            e.detail.contains("final_observations") && e.detail.contains("1 truncated steps"),
            "{}",
            e.detail
        );
        let mut missing = payload(2);
        missing[6].clear();
        let e = check(&l.tensor_specs(2, 0), &missing);
        assert_eq!(e.reason, RejectReason::BadTensor);
        assert!(e.detail.contains("final_observations"), "{}", e.detail);

        let mut nan = payload(2);
        nan[0][4..8].copy_from_slice(&f32::NAN.to_le_bytes());
        let e = check(&specs, &nan);
        assert_eq!(e.reason, RejectReason::BadValue);
        assert!(e.detail.contains("element 1 is NaN"), "{}", e.detail);
        let mut inf = payload(2);
        inf[3][0..4].copy_from_slice(&f32::INFINITY.to_le_bytes());
        assert_eq!(check(&specs, &inf).reason, RejectReason::BadValue);
        let mut final_nan = payload(2);
        final_nan[6][0..4].copy_from_slice(&f32::NAN.to_le_bytes());
        assert!(check(&specs, &final_nan).detail.contains("final_observations"));
        let mut action = payload(2);
        action[1][0..4].copy_from_slice(&2u32.to_le_bytes());
        assert!(check(&specs, &action).detail.contains("actions are in 0..2"));
        let mut flag = payload(2);
        flag[5][1] = 7;
        assert!(check(&specs, &flag).detail.contains("flags are 0 or 1"));
    }

    #[test]
    fn layout_serializes_with_a_kind_tag() {
        let bytes = rmp_serde::to_vec_named(&layout()).unwrap();
        let back: UnrollLayout = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(back, layout());
        // {"kind": "discrete", "n": 2} inside.
        assert!(bytes.windows(8).any(|w| w == b"discrete"));
        // frame_stack 1 is left out (peers that predate it read the same
        // map); any other value travels.
        assert!(!bytes.windows(11).any(|w| w == b"frame_stack"));
        let stacked = UnrollLayout {
            frame_stack: 4,
            ..layout()
        };
        let bytes = rmp_serde::to_vec_named(&stacked).unwrap();
        assert!(bytes.windows(11).any(|w| w == b"frame_stack"));
        assert_eq!(rmp_serde::from_slice::<UnrollLayout>(&bytes).unwrap(), stacked);
    }
}
