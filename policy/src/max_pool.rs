//! Max-pooling with TensorFlow's `SAME` padding, any kernel and stride,
//! differentiable on every device.
//!
//! candle's `max_pool2d` has no padding, and its backward refuses a kernel
//! other than the stride, so the IMPALA torso's 3×3 stride-2 `SAME` pool is
//! built here from ops candle can differentiate: pad with −∞, view the padded
//! channels-last map as `[N, Hq, s, Wq, s, C]`, and take the element-wise maximum of the
//! k·k strided views, one per kernel offset. The gradient of each output
//! reaches the input element that was its maximum (candle's `maximum`
//! splits it evenly between exact ties).

use candle_core::Tensor;

use crate::{PolicyError, Result};

/// `SAME` output size and padding before / after for one axis of `size`.
pub fn same_padding(size: usize, kernel: usize, stride: usize) -> (usize, usize, usize) {
    let out = size.div_ceil(stride);
    let total = ((out - 1) * stride + kernel).saturating_sub(size);
    (out, total / 2, total - total / 2)
}

/// Pads axis `axis` of `x` with `before` and `after` entries of `value`.
fn pad_axis(x: &Tensor, axis: usize, before: usize, after: usize, value: f32) -> Result<Tensor> {
    if before == 0 && after == 0 {
        return Ok(x.clone());
    }
    let mut parts = Vec::with_capacity(3);
    let block = |n: usize| -> Result<Tensor> {
        let mut dims = x.dims().to_vec();
        dims[axis] = n;
        Ok(Tensor::full(value, dims, x.device())?.to_dtype(x.dtype())?)
    };
    if before > 0 {
        parts.push(block(before)?);
    }
    parts.push(x.clone());
    if after > 0 {
        parts.push(block(after)?);
    }
    Ok(Tensor::cat(&parts, axis)?)
}

/// Max-pools `x` (`[N, H, W, C]`, channels last) with a `kernel`×`kernel` window moved by
/// `stride`, `SAME` padding (output `ceil(H / stride)` × `ceil(W / stride)`;
/// the padding, split with the extra row or column after, never wins).
pub fn max_pool2d_same(x: &Tensor, kernel: usize, stride: usize) -> Result<Tensor> {
    let (n, h, w, c) = x.dims4()?;
    if kernel == 0 || stride == 0 || h == 0 || w == 0 {
        return Err(PolicyError::Config(format!(
            "max pool: kernel {kernel}, stride {stride} over {h}×{w}"
        )));
    }
    let (oh, top, _) = same_padding(h, kernel, stride);
    let (ow, left, _) = same_padding(w, kernel, stride);
    // Kernel offset k lands on row s·(o + k / s) + k % s: with Hq = oh +
    // (kernel − 1) / s rows of s, every offset is one strided view.
    let hq = oh + (kernel - 1) / stride;
    let wq = ow + (kernel - 1) / stride;
    let x = pad_axis(x, 1, top, hq * stride - h - top, f32::NEG_INFINITY)?;
    let x = pad_axis(&x, 2, left, wq * stride - w - left, f32::NEG_INFINITY)?;
    let grid = x.reshape((n, hq, stride, wq, stride, c))?;
    let mut out: Option<Tensor> = None;
    for ky in 0..kernel {
        let rows = grid.narrow(1, ky / stride, oh)?.narrow(2, ky % stride, 1)?;
        for kx in 0..kernel {
            let view = rows
                .narrow(3, kx / stride, ow)?
                .narrow(4, kx % stride, 1)?
                .squeeze(4)?
                .squeeze(2)?;
            out = Some(match out {
                None => view,
                Some(m) => m.maximum(&view)?,
            });
        }
    }
    // kernel ≥ 1, so there was at least one view.
    out.map(|m| m.contiguous())
        .transpose()?
        .ok_or_else(|| PolicyError::Config("max pool: empty kernel".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// NCHW → NHWC, the pool's layout, and back.
    fn nhwc(x: &Tensor) -> Tensor {
        x.permute((0, 2, 3, 1)).unwrap().contiguous().unwrap()
    }

    fn nchw(x: &Tensor) -> Tensor {
        x.permute((0, 3, 1, 2)).unwrap().contiguous().unwrap()
    }

    /// The direct definition over NCHW, in f64, with the window's first maximum.
    fn reference(x: &[f32], (n, c, h, w): (usize, usize, usize, usize), k: usize, s: usize) -> Vec<f32> {
        let (oh, top, _) = same_padding(h, k, s);
        let (ow, left, _) = same_padding(w, k, s);
        let mut out = Vec::new();
        for plane in 0..n * c {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut best = f32::NEG_INFINITY;
                    for ky in 0..k {
                        for kx in 0..k {
                            let (y, xx) = (
                                (oy * s + ky) as isize - top as isize,
                                (ox * s + kx) as isize - left as isize,
                            );
                            if y >= 0 && xx >= 0 && (y as usize) < h && (xx as usize) < w {
                                best = best.max(x[(plane * h + y as usize) * w + xx as usize]);
                            }
                        }
                    }
                    out.push(best);
                }
            }
        }
        out
    }

    fn distinct_values(len: usize, seed: u64) -> Vec<f32> {
        // A permutation of 0..len, scaled: no two inputs tie.
        let mut v: Vec<f32> = (0..len).map(|i| i as f32 * 0.37 - len as f32 * 0.1).collect();
        let mut state = seed;
        for i in (1..len).rev() {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            v.swap(i, (state >> 33) as usize % (i + 1));
        }
        v
    }

    #[test]
    fn same_padding_matches_tensorflow() {
        // (out, before, after), as tf.nn.max_pool(padding="SAME") computes.
        assert_eq!(same_padding(84, 3, 2), (42, 0, 1));
        assert_eq!(same_padding(42, 3, 2), (21, 0, 1));
        assert_eq!(same_padding(21, 3, 2), (11, 1, 1));
        assert_eq!(same_padding(10, 3, 2), (5, 0, 1));
        assert_eq!(same_padding(5, 3, 1), (5, 1, 1));
        assert_eq!(same_padding(1, 3, 2), (1, 1, 1));
    }

    #[test]
    fn forward_matches_the_definition() {
        for &(shape, k, s) in &[
            ((2, 3, 10, 10), 3, 2),
            ((1, 2, 7, 5), 3, 2),
            ((1, 1, 21, 21), 3, 2),
            ((2, 1, 6, 9), 2, 2),
            ((1, 2, 5, 4), 3, 1),
            ((1, 1, 1, 1), 3, 2),
        ] {
            let (n, c, h, w) = shape;
            let x = distinct_values(n * c * h * w, 7);
            let t = Tensor::from_vec(x.clone(), shape, &Device::Cpu).unwrap();
            let got = nchw(&max_pool2d_same(&nhwc(&t), k, s).unwrap());
            let (oh, ow) = (h.div_ceil(s), w.div_ceil(s));
            assert_eq!(got.dims(), &[n, c, oh, ow], "{shape:?} k{k} s{s}");
            assert_eq!(
                got.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                reference(&x, shape, k, s)
            );
        }
    }

    /// The gradient against central finite differences of a weighted sum of
    /// the outputs: with distinct inputs the pool is locally linear, so the
    /// two agree to rounding, and every input's share is checked.
    #[test]
    fn gradient_matches_finite_differences() {
        let shape = (2, 2, 9, 7);
        let (n, c, h, w) = shape;
        let len = n * c * h * w;
        let x = distinct_values(len, 3);
        let (oh, ow) = (h.div_ceil(2), w.div_ceil(2));
        let weights: Vec<f32> = (0..n * c * oh * ow).map(|i| ((i * 7) % 11) as f32 - 5.0).collect();
        let weights_t = Tensor::from_vec(weights.clone(), (n, c, oh, ow), &Device::Cpu).unwrap();
        let var = Var::from_tensor(&Tensor::from_vec(x.clone(), shape, &Device::Cpu).unwrap()).unwrap();
        let loss = (nchw(&max_pool2d_same(&nhwc(var.as_tensor()), 3, 2).unwrap()) * &weights_t)
            .unwrap()
            .sum_all()
            .unwrap();
        let grads = loss.backward().unwrap();
        let grad = grads
            .get(var.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let objective = |x: &[f32]| -> f64 {
            reference(x, shape, 3, 2)
                .iter()
                .zip(&weights)
                .map(|(o, w)| f64::from(*o) * f64::from(*w))
                .sum()
        };
        let eps = 0.125f32; // below half the gap between inputs (0.37): no rank changes
        let mut nonzero = 0;
        for i in 0..len {
            let (mut up, mut down) = (x.clone(), x.clone());
            up[i] += eps;
            down[i] -= eps;
            let numeric = (objective(&up) - objective(&down)) / (2.0 * f64::from(eps));
            assert!(
                (numeric - f64::from(grad[i])).abs() < 1e-3,
                "input {i}: autograd {} vs finite differences {numeric}",
                grad[i]
            );
            nonzero += usize::from(grad[i] != 0.0);
        }
        // Overlapping windows: some inputs win several, most win none.
        assert!(nonzero > 0 && nonzero < len, "{nonzero} of {len} inputs get gradient");
    }
}
