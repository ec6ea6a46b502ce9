//! The unroll layout: which tensors an unroll has, their dtypes and shapes,
//! and the checks every insert passes before a shard stores it.
//!
//! On the wire a message with B unrolls of length T carries seven frames, in
//! this order, batch-major (unroll b's data is contiguous in every frame):
//!
//! | name                  | dtype | shape            |
//! |-----------------------|-------|------------------|
//! | observations          | f32   | [B, T+1, obs_dim]|
//! | actions               | u32   | [B, T] (discrete) |
//! |                       | f32   | [B, T, act_dim] (continuous) |
//! | behaviour_log_probs   | f32   | [B, T]           |
//! | rewards               | f32   | [B, T]           |
//! | terminated            | u8    | [B, T]           |
//! | truncated             | u8    | [B, T]           |
//! | final_observations    | f32   | [B, T, obs_dim]  |

use serde::{Deserialize, Serialize};

use crate::tensor::{f32s, u32s, DType, TensorSpec};
use crate::{Frame, RejectReason, Rejection};

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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnrollLayout {
    /// T: steps per unroll.
    pub unroll_length: u32,
    pub obs_dim: u32,
    pub action: ActionLayout,
}

/// The tensor names, in frame order.
pub const TENSOR_NAMES: [&str; 7] = [
    "observations",
    "actions",
    "behaviour_log_probs",
    "rewards",
    "terminated",
    "truncated",
    "final_observations",
];

/// One tensor of an unroll: name, dtype and per-unroll shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldSpec {
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
    /// The seven fields in frame order, shapes without the batch dimension.
    pub fn fields(&self) -> Vec<FieldSpec> {
        let t = u64::from(self.unroll_length);
        let d = u64::from(self.obs_dim);
        let (action_dtype, action_shape) = match self.action {
            ActionLayout::Discrete { .. } => (DType::U32, vec![t]),
            ActionLayout::Continuous { dim } => (DType::F32, vec![t, u64::from(dim)]),
        };
        let dtypes = [
            (DType::F32, vec![t + 1, d]),
            (action_dtype, action_shape),
            (DType::F32, vec![t]),
            (DType::F32, vec![t]),
            (DType::U8, vec![t]),
            (DType::U8, vec![t]),
            (DType::F32, vec![t, d]),
        ];
        TENSOR_NAMES
            .iter()
            .zip(dtypes)
            .map(|(name, (dtype, shape))| FieldSpec { name, dtype, shape })
            .collect()
    }

    /// Bytes of one unroll (all fields).
    pub fn item_bytes(&self) -> usize {
        self.fields().iter().map(FieldSpec::bytes).sum()
    }

    /// Checks the layout itself.
    pub fn validate(&self) -> Result<(), String> {
        if self.unroll_length == 0 {
            return Err("unroll_length must be at least 1".into());
        }
        if self.obs_dim == 0 {
            return Err("obs_dim must be at least 1".into());
        }
        match self.action {
            ActionLayout::Discrete { n: 0 } => Err("a discrete action space needs n >= 1".into()),
            ActionLayout::Continuous { dim: 0 } => Err("a continuous action space needs dim >= 1".into()),
            _ => Ok(()),
        }
    }

    /// The `tensors` list of a message with `count` unrolls.
    pub fn tensor_specs(&self, count: usize) -> Vec<TensorSpec> {
        self.fields()
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
            .collect()
    }

    /// Checks that `tensors` and the payload frames hold exactly `count`
    /// unrolls of this layout, with valid values: finite floats, discrete
    /// actions in range, flags 0 or 1.
    pub fn check_payload<F: Frame>(
        &self,
        count: usize,
        tensors: &[TensorSpec],
        payload: &[F],
    ) -> Result<(), Rejection> {
        let bad = |detail: String| Rejection::new(RejectReason::BadTensor, detail);
        let expected = self.tensor_specs(count);
        if tensors.len() != expected.len() || payload.len() != expected.len() {
            return Err(bad(format!(
                "{} tensor descriptions and {} payload frames; expected {} ({})",
                tensors.len(),
                payload.len(),
                expected.len(),
                TENSOR_NAMES.join(", ")
            )));
        }
        for ((got, want), frame) in tensors.iter().zip(&expected).zip(payload) {
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
        }
        for (want, frame) in expected.iter().zip(payload) {
            let bytes = frame.bytes();
            let invalid =
                |what: String| Rejection::new(RejectReason::BadValue, format!("tensor {:?}: {what}", want.name));
            match (want.name.as_str(), want.dtype) {
                ("actions", DType::U32) => {
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
                (_, DType::U8) => {
                    if let Some((i, v)) = bytes.iter().enumerate().find(|(_, v)| **v > 1) {
                        return Err(invalid(format!("element {i} is {v}; flags are 0 or 1")));
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Copies unroll `b` of a checked payload into `item` (the fields
    /// concatenated in frame order; `item.len() == item_bytes()`).
    pub fn pack_item<F: Frame>(&self, payload: &[F], b: usize, item: &mut [u8]) {
        let mut offset = 0;
        for (field, frame) in self.fields().iter().zip(payload) {
            let n = field.bytes();
            item[offset..offset + n].copy_from_slice(&frame.bytes()[b * n..(b + 1) * n]);
            offset += n;
        }
    }

    /// Appends one packed item to the seven output frames.
    pub fn unpack_item(&self, item: &[u8], frames: &mut [Vec<u8>]) {
        let mut offset = 0;
        for (field, frame) in self.fields().iter().zip(frames.iter_mut()) {
            let n = field.bytes();
            frame.extend_from_slice(&item[offset..offset + n]);
            offset += n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::{extend_f32, extend_u32};

    fn layout() -> UnrollLayout {
        UnrollLayout {
            unroll_length: 3,
            obs_dim: 2,
            action: ActionLayout::Discrete { n: 2 },
        }
    }

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
            frames[5].extend_from_slice(&[0, 0, 0]);
            extend_f32(&mut frames[6], &[0.0; 6]);
        }
        assert_eq!(frames.iter().map(Vec::len).sum::<usize>(), count * l.item_bytes());
        frames
    }

    #[test]
    fn item_bytes_and_specs() {
        let l = layout();
        assert_eq!(l.item_bytes(), 4 * 8 + 4 * 3 + 4 * 3 + 4 * 3 + 3 + 3 + 4 * 6);
        let specs = l.tensor_specs(5);
        assert_eq!(specs[0].shape, vec![5, 4, 2]);
        assert_eq!(specs[1].dtype, DType::U32);
        let c = UnrollLayout {
            action: ActionLayout::Continuous { dim: 3 },
            ..l
        };
        assert_eq!(c.tensor_specs(1)[1].shape, vec![1, 3, 3]);
        assert!(UnrollLayout { unroll_length: 0, ..l }.validate().is_err());
    }

    #[test]
    fn pack_then_unpack_is_the_identity() {
        let l = layout();
        let frames = payload(3);
        l.check_payload(3, &l.tensor_specs(3), &frames).unwrap();
        let mut out = vec![Vec::new(); 7];
        let mut item = vec![0u8; l.item_bytes()];
        for b in 0..3 {
            l.pack_item(&frames, b, &mut item);
            l.unpack_item(&item, &mut out);
        }
        assert_eq!(out, frames);
    }

    #[test]
    fn every_defect_is_named() {
        let l = layout();
        let specs = l.tensor_specs(2);
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

        let mut nan = payload(2);
        nan[0][4..8].copy_from_slice(&f32::NAN.to_le_bytes());
        let e = check(&specs, &nan);
        assert_eq!(e.reason, RejectReason::BadValue);
        assert!(e.detail.contains("element 1 is NaN"), "{}", e.detail);
        let mut inf = payload(2);
        inf[3][0..4].copy_from_slice(&f32::INFINITY.to_le_bytes());
        assert_eq!(check(&specs, &inf).reason, RejectReason::BadValue);
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
    }
}
