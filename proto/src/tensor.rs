//! Tensor descriptors: what each payload frame holds.

use serde::{Deserialize, Serialize};

/// Element type of a payload frame; always little-endian, C order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    F32,
    U32,
    U8,
}

impl DType {
    pub fn size(self) -> usize {
        match self {
            DType::F32 | DType::U32 => 4,
            DType::U8 => 1,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::U32 => "u32",
            DType::U8 => "u8",
        }
    }
}

/// Describes one payload frame: `{name, dtype, shape}`; the frame holds
/// `prod(shape) * dtype.size()` bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorSpec {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<u64>,
}

impl TensorSpec {
    /// Bytes the frame must hold, or None on overflow.
    pub fn byte_len(&self) -> Option<usize> {
        let mut n: usize = self.dtype.size();
        for &d in &self.shape {
            n = n.checked_mul(usize::try_from(d).ok()?)?;
        }
        Some(n)
    }
}

/// Reads little-endian f32s from a byte slice (length a multiple of 4).
pub fn f32s(bytes: &[u8]) -> impl Iterator<Item = f32> + '_ {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
}

/// Reads little-endian u32s from a byte slice (length a multiple of 4).
pub fn u32s(bytes: &[u8]) -> impl Iterator<Item = u32> + '_ {
    bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
}

/// Appends f32s as little-endian bytes.
pub fn extend_f32(out: &mut Vec<u8>, values: &[f32]) {
    out.reserve(values.len() * 4);
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
}

/// Appends u32s as little-endian bytes.
pub fn extend_u32(out: &mut Vec<u8>, values: &[u32]) {
    out.reserve(values.len() * 4);
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
}
