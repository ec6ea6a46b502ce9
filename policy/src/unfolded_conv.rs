//! 2-D convolution over channels-last (`[N, H, W, C]`) images as one matrix
//! product over unfolded patches ("im2col"), differentiable, for the CPU.
//!
//! candle's `conv2d` on the CPU unfolds its forward pass too, but its
//! backward computes the input's gradient with a direct-loop
//! `conv_transpose2d` and the kernel's with another direct-loop
//! convolution; those loops were 58% of a Nature-network update. Here one
//! custom op, `[relu](unfold(x) · Kᵀ)`, does a layer:
//!
//! - forward: `P = unfold(x)` (`[N·oh·ow, k·k·C + 1]`, features ordered
//!   (ky, kx, c), then a 1 for the bias), `y = P · Kᵀ` with
//!   `K = [W permuted to (out, ky, kx, in) | b]` (one gemm), so `y` is
//!   `[N, oh, ow, out]` already, channels last, no transpose after it; the
//!   ReLU, if any, in place;
//! - backward: `G = ∂y ⊙ [y > 0]`, `∂K = Gᵀ · P` (P unfolded again),
//!   and, only if `x` needs a gradient, `∂x = fold(G · K)`: the scatter-add
//!   of the patch gradients back onto the image, unfold's adjoint. A first
//!   layer (observations need no gradient) costs one gemm back, and no
//!   patch-sized tensor passes through candle's autograd at all.
//!
//! Weights are PyTorch's `[out, in, k, k]` and bias `[out]`, so the names and
//! values stored in a checkpoint do not depend on which path ran. Zero
//! padding on every side (`padding`), any stride. On other devices the layer
//! runs candle's `conv2d` over NCHW between two permutes, the same function.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, Layout, Shape, Storage, Tensor};

use crate::{PolicyError, Result};

/// One convolution's shapes: input `[n, h, w, c]`, a `kernel`×`kernel`
/// window moved by `stride` over the image padded by `padding` zeros.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Geometry {
    n: usize,
    h: usize,
    w: usize,
    c: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
}

impl Geometry {
    fn out_side(size: usize, kernel: usize, stride: usize, padding: usize) -> Option<usize> {
        let padded = size + 2 * padding;
        (stride > 0 && kernel > 0 && padded >= kernel).then(|| (padded - kernel) / stride + 1)
    }

    fn out_h(&self) -> usize {
        Self::out_side(self.h, self.kernel, self.stride, self.padding).unwrap_or(0)
    }

    fn out_w(&self) -> usize {
        Self::out_side(self.w, self.kernel, self.stride, self.padding).unwrap_or(0)
    }

    /// Values in one patch row: the window, then the bias column's 1.
    fn row_len(&self) -> usize {
        self.kernel * self.kernel * self.c + 1
    }

    fn rows(&self) -> usize {
        self.n * self.out_h() * self.out_w()
    }

    fn image_len(&self) -> usize {
        self.h * self.w * self.c
    }

    /// For output position `o` along an axis of `size`: the part of the
    /// window inside the image, as (first kernel offset inside, first input
    /// index, how many); `None` if the window lies in the padding.
    fn span(&self, o: usize, size: usize) -> Option<(usize, usize, usize)> {
        let start = (o * self.stride) as isize - self.padding as isize;
        let first_k = (-start).max(0) as usize;
        let end = (start + self.kernel as isize).min(size as isize);
        let first = start.max(0) as usize;
        (end > first as isize).then(|| (first_k, first, end as usize - first))
    }

    /// Calls `visit(patch_offset, image_offset, len)` for every run of
    /// values one patch row `(image, oy, ox)` shares with its image:
    /// `patch_offset` within the row, `image_offset` within the image.
    /// Values of the window outside the image are padding (zero).
    fn for_each_run(&self, oy: usize, ox: usize, mut visit: impl FnMut(usize, usize, usize)) {
        let (k, c) = (self.kernel, self.c);
        let (Some((kx0, x0, xs)), Some((ky0, y0, ys))) = (self.span(ox, self.w), self.span(oy, self.h)) else {
            return;
        };
        for dy in 0..ys {
            let patch = ((ky0 + dy) * k + kx0) * c;
            let image = ((y0 + dy) * self.w + x0) * c;
            visit(patch, image, xs * c);
        }
    }

    /// The patch rows of `x` (`[n, h, w, c]`, contiguous), each value
    /// times `scale`, the last column 1: `[rows, row_len]`.
    fn unfold(&self, x: &[f32], scale: f32) -> Vec<f32> {
        let (oh, ow, row_len) = (self.out_h(), self.out_w(), self.row_len());
        let mut rows = vec![0f32; self.rows() * row_len];
        let mut at = 0;
        for image in x.chunks_exact(self.image_len()) {
            for oy in 0..oh {
                for ox in 0..ow {
                    let row = &mut rows[at..at + row_len];
                    self.for_each_run(oy, ox, |patch, from, len| {
                        let (dst, src) = (&mut row[patch..patch + len], &image[from..from + len]);
                        if scale == 1.0 {
                            dst.copy_from_slice(src);
                        } else {
                            dst.iter_mut().zip(src).for_each(|(d, v)| *d = v * scale);
                        }
                    });
                    row[row_len - 1] = 1.0;
                    at += row_len;
                }
            }
        }
        rows
    }

    /// Unfold's adjoint: the patch rows summed back onto `[n, h, w, c]`,
    /// each value times `scale`, the bias column dropped.
    fn fold(&self, rows: &[f32], scale: f32) -> Vec<f32> {
        let (oh, ow, row_len) = (self.out_h(), self.out_w(), self.row_len());
        let mut x = vec![0f32; self.n * self.image_len()];
        let mut patch_rows = rows.chunks_exact(row_len);
        for image in x.chunks_exact_mut(self.image_len()) {
            for oy in 0..oh {
                for ox in 0..ow {
                    // `rows` holds rows() · row_len values (checked by the caller).
                    let Some(row) = patch_rows.next() else { return x };
                    self.for_each_run(oy, ox, |patch, at, len| {
                        for (out, value) in image[at..at + len].iter_mut().zip(&row[patch..patch + len]) {
                            *out += value * scale;
                        }
                    });
                }
            }
        }
        x
    }
}

/// The contiguous `f32` values of a CPU tensor's storage.
fn contiguous_f32<'a>(storage: &'a CpuStorage, layout: &Layout, op: &str) -> candle_core::Result<&'a [f32]> {
    let CpuStorage::F32(values) = storage else {
        candle_core::bail!("{op}: expected f32 values, found {:?}", storage.dtype())
    };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&values[start..end]),
        None => candle_core::bail!("{op}: expected a contiguous tensor"),
    }
}

/// Runs `f` on the values of a CPU `f32` tensor, contiguous (made so if
/// need be), borrowed from its storage.
fn with_values<R>(t: &Tensor, op: &str, f: impl FnOnce(&[f32]) -> candle_core::Result<R>) -> candle_core::Result<R> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else {
        candle_core::bail!("{op}: expected a CPU tensor")
    };
    f(contiguous_f32(cpu, layout, op)?)
}

/// A matrix operand: values and (row stride, column stride).
struct Operand<'a> {
    values: &'a [f32],
    row_stride: usize,
    col_stride: usize,
}

impl Operand<'_> {
    /// Row-major `rows`×`cols` values, read as they are or transposed.
    fn row_major(values: &[f32], cols: usize, transposed: bool) -> Operand<'_> {
        let (row_stride, col_stride) = if transposed { (1, cols) } else { (cols, 1) };
        Operand {
            values,
            row_stride,
            col_stride,
        }
    }

    /// Whether an `r`×`c` matrix read with these strides stays inside.
    fn fits(&self, r: usize, c: usize) -> bool {
        r == 0 || c == 0 || (r - 1) * self.row_stride + (c - 1) * self.col_stride < self.values.len()
    }
}

/// `a · b` (`m`×`k` times `k`×`n`), row-major `m`×`n`, by the `gemm` crate
/// candle's CPU matmul uses, on candle's CPU threads.
fn matmul(m: usize, n: usize, k: usize, a: Operand<'_>, b: Operand<'_>) -> candle_core::Result<Vec<f32>> {
    if !a.fits(m, k) || !b.fits(k, n) {
        candle_core::bail!("unfolded conv: a {m}×{k} · {k}×{n} product does not fit its operands")
    }
    let mut dst = vec![0f32; m * n];
    if m == 0 || n == 0 || k == 0 {
        return Ok(dst);
    }
    let threads = candle_core::utils::get_num_threads();
    let parallelism = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: `dst` holds m·n values written row-major (row stride n,
    // column stride 1), and `fits` checked that every element of the
    // m×k and k×n operands, read with their strides, lies inside its slice.
    // read_dst = false: dst is only written (alpha is then unused).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.values.as_ptr(),
            a.col_stride as isize,
            a.row_stride as isize,
            b.values.as_ptr(),
            b.col_stride as isize,
            b.row_stride as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
    Ok(dst)
}

/// `y = [relu](unfold(scale · x) · Kᵀ)` over `x` `[N, H, W, C]` and the
/// kernel matrix `K` `[out, k·k·C + 1]`; `y` is `[N, oh, ow, out]`.
struct UnfoldedConvOp {
    geometry: Geometry,
    scale: f32,
    relu: bool,
}

impl CustomOp2 for UnfoldedConvOp {
    fn name(&self) -> &'static str {
        "unfolded-conv-nhwc"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        x_layout: &Layout,
        kernel: &CpuStorage,
        kernel_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = self.geometry;
        let x = contiguous_f32(x, x_layout, self.name())?;
        let kernel = contiguous_f32(kernel, kernel_layout, self.name())?;
        let (row_len, out) = (g.row_len(), kernel.len() / g.row_len());
        if x.len() != g.n * g.image_len() || kernel.len() != out * row_len {
            candle_core::bail!("{}: operands do not fit {g:?}", self.name())
        }
        let patches = g.unfold(x, self.scale);
        let mut y = matmul(
            g.rows(),
            out,
            row_len,
            Operand::row_major(&patches, row_len, false),
            Operand::row_major(kernel, row_len, true),
        )?;
        if self.relu {
            y.iter_mut().for_each(|v| *v = v.max(0.0));
        }
        Ok((CpuStorage::F32(y), Shape::from((g.n, g.out_h(), g.out_w(), out))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        kernel: &Tensor,
        y: &Tensor,
        grad_y: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let g = self.geometry;
        let (row_len, out) = (g.row_len(), kernel.dim(0)?);
        let name = self.name();
        // G: the output's gradient, through the ReLU where the output is
        // positive.
        let grad = with_values(grad_y, name, |grad| {
            if !self.relu {
                return Ok(grad.to_vec());
            }
            with_values(y, name, |y| {
                Ok(grad
                    .iter()
                    .zip(y)
                    .map(|(d, y)| if *y > 0.0 { *d } else { 0.0 })
                    .collect::<Vec<f32>>())
            })
        })?;
        let patches = with_values(x, name, |x| Ok(g.unfold(x, self.scale)))?;
        // ∂K = Gᵀ · P: [out, rows] · [rows, row_len].
        let grad_kernel = matmul(
            out,
            row_len,
            g.rows(),
            Operand::row_major(&grad, out, true),
            Operand::row_major(&patches, row_len, false),
        )?;
        drop(patches);
        let grad_kernel = Tensor::from_vec(grad_kernel, (out, row_len), kernel.device())?;
        if !x.track_op() {
            return Ok((None, Some(grad_kernel)));
        }
        // ∂P = G · K: [rows, out] · [out, row_len], folded back onto x.
        let grad_patches = with_values(kernel, name, |kernel| {
            matmul(
                g.rows(),
                row_len,
                out,
                Operand::row_major(&grad, out, false),
                Operand::row_major(kernel, row_len, false),
            )
        })?;
        let grad_x = g.fold(&grad_patches, self.scale);
        let grad_x = Tensor::from_vec(grad_x, (g.n, g.h, g.w, g.c), x.device())?;
        Ok((Some(grad_x), Some(grad_kernel)))
    }
}

/// A convolution layer over `[N, H, W, C]`: PyTorch's `nn.Conv2d` weights
/// (`weight` `[out, in, k, k]`, `bias` `[out]`), square kernel, zero
/// padding, output `[N, oh, ow, out]`; optionally the input scaled first
/// (the pixel frames' 1/255, folded into the unfolding).
pub struct UnfoldedConv2d {
    weight: Tensor,
    bias: Tensor,
    kernel: usize,
    stride: usize,
    padding: usize,
    input_scale: f64,
}

impl UnfoldedConv2d {
    /// Reads `weight` and `bias` for `in_c` → `out_c` channels from `vb`.
    pub fn build(
        vb: candle_nn::VarBuilder,
        in_c: usize,
        out_c: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
    ) -> Result<Self> {
        Ok(UnfoldedConv2d {
            weight: vb.get((out_c, in_c, kernel, kernel), "weight")?,
            bias: vb.get(out_c, "bias")?,
            kernel,
            stride,
            padding,
            input_scale: 1.0,
        })
    }

    /// The same layer reading `scale · x`.
    pub fn scaling_input(self, scale: f64) -> Self {
        UnfoldedConv2d {
            input_scale: scale,
            ..self
        }
    }

    /// `conv(x)`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.run(x, false)
    }

    /// `relu(conv(x))`.
    pub fn forward_relu(&self, x: &Tensor) -> Result<Tensor> {
        self.run(x, true)
    }

    /// Unfolded on the CPU, candle's `conv2d` elsewhere.
    fn run(&self, x: &Tensor, relu: bool) -> Result<Tensor> {
        if x.device().is_cpu() {
            self.forward_unfolded(x, relu)
        } else {
            let y = self.forward_conv2d(x)?;
            Ok(if relu { y.relu()? } else { y })
        }
    }

    /// The im2col path (CPU only).
    fn forward_unfolded(&self, x: &Tensor, relu: bool) -> Result<Tensor> {
        let (n, h, w, c) = x.dims4()?;
        let geometry = Geometry {
            n,
            h,
            w,
            c,
            kernel: self.kernel,
            stride: self.stride,
            padding: self.padding,
        };
        if geometry.out_h() == 0 || geometry.out_w() == 0 || self.weight.dim(1)? != c {
            return Err(PolicyError::Config(format!(
                "a {k}×{k} convolution (stride {}, padding {}) of {} input channels cannot read images \
                 [{h}, {w}, {c}]",
                self.stride,
                self.padding,
                self.weight.dim(1)?,
                k = self.kernel
            )));
        }
        // [out, in, ky, kx] -> [out, (ky, kx, in)], the patches' order, and
        // the bias as the last column (each patch row ends with a 1): the
        // bias costs no pass of its own over the output, forward or back.
        let kernel = self.weight.permute((0, 2, 3, 1))?.flatten_from(1)?;
        let kernel = Tensor::cat(&[&kernel, &self.bias.unsqueeze(1)?], 1)?;
        let op = UnfoldedConvOp {
            geometry,
            scale: self.input_scale as f32,
            relu,
        };
        Ok(x.contiguous()?.apply_op2(&kernel, op)?)
    }

    /// candle's `conv2d` over NCHW, between permutes (any device).
    fn forward_conv2d(&self, x: &Tensor) -> Result<Tensor> {
        let (k, s, p) = (self.kernel, self.stride, self.padding);
        let x = (x.permute((0, 3, 1, 2))?.contiguous()? * self.input_scale)?;
        let x = x.pad_with_zeros(2, p, p)?.pad_with_zeros(3, p, p)?;
        // Rows and columns no window reaches are cut: they do not change
        // the output, and candle's conv2d backward (a transposed
        // convolution) returns a gradient of the covered size only.
        let (_, _, h, w) = x.dims4()?;
        let used = |side: usize| Geometry::out_side(side, k, s, 0).map_or(side, |out| (out - 1) * s + k);
        let x = x.narrow(2, 0, used(h))?.narrow(3, 0, used(w))?;
        let y = x.conv2d(&self.weight, 0, s, 1, 1)?;
        let y = y.broadcast_add(&self.bias.reshape((1, self.bias.dim(0)?, 1, 1))?)?;
        Ok(y.permute((0, 2, 3, 1))?.contiguous()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn values(len: usize, seed: usize) -> Vec<f32> {
        (0..len)
            .map(|i| (((i * 7919 + seed * 104729) % 2003) as f32 / 1001.0) - 1.0)
            .collect()
    }

    fn layer(in_c: usize, out_c: usize, kernel: usize, stride: usize, padding: usize) -> (UnfoldedConv2d, Var, Var) {
        let weight = Var::from_tensor(
            &Tensor::from_vec(
                values(out_c * in_c * kernel * kernel, 1),
                (out_c, in_c, kernel, kernel),
                &Device::Cpu,
            )
            .unwrap(),
        )
        .unwrap();
        let bias = Var::from_tensor(&Tensor::from_vec(values(out_c, 2), out_c, &Device::Cpu).unwrap()).unwrap();
        let conv = UnfoldedConv2d {
            weight: weight.as_tensor().clone(),
            bias: bias.as_tensor().clone(),
            kernel,
            stride,
            padding,
            input_scale: 1.0,
        };
        (conv, weight, bias)
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        assert_eq!(a.dims(), b.dims());
        (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar().unwrap()
    }

    /// Output and the gradients of input, weight and bias equal those of
    /// candle's `conv2d` (the other devices' path), with and without the
    /// ReLU, with an input that needs a gradient and one that does not (a
    /// first layer), for the Nature, IMPALA and MinAtar layers' geometries
    /// and odd ones (a stride that leaves rows unread, padding with a stride).
    #[test]
    fn unfolded_convolution_and_its_gradients_equal_candles_conv2d() {
        for &((n, h, w, c), out_c, k, s, p, scale) in &[
            ((2, 20, 20, 3), 5, 8, 4, 0, 1.0 / 255.0),
            ((2, 9, 9, 4), 6, 4, 2, 0, 1.0),
            ((1, 7, 6, 3), 4, 3, 1, 1, 1.0),
            ((3, 10, 10, 4), 16, 3, 1, 0, 1.0),
            ((2, 11, 13, 2), 3, 3, 2, 1, 0.5),
            ((1, 12, 10, 2), 2, 5, 3, 0, 1.0),
        ] {
            for (relu, input_needs_grad) in [(false, true), (true, true), (true, false)] {
                let case = format!("[{n},{h},{w},{c}] out {out_c} k{k} s{s} p{p} relu {relu}");
                let (conv, weight, bias) = layer(c, out_c, k, s, p);
                let conv = conv.scaling_input(scale);
                let x = Tensor::from_vec(values(n * h * w * c, 3), (n, h, w, c), &Device::Cpu).unwrap();
                let x = Var::from_tensor(&x).unwrap();
                let input = if input_needs_grad {
                    x.as_tensor().clone()
                } else {
                    x.as_tensor().detach()
                };
                let ours = conv.forward_unfolded(&input, relu).unwrap();
                let reference = conv.forward_conv2d(&input).unwrap();
                let reference = if relu { reference.relu().unwrap() } else { reference };
                assert!(max_diff(&ours, &reference) < 1e-4, "{case}: forward");
                // A weighted sum, so every output's gradient differs.
                let mix = Tensor::from_vec(values(ours.elem_count(), 4), ours.dims(), &Device::Cpu).unwrap();
                let g_ours = (ours * &mix).unwrap().sum_all().unwrap().backward().unwrap();
                let g_ref = (reference * &mix).unwrap().sum_all().unwrap().backward().unwrap();
                for (name, var) in [("input", &x), ("weight", &weight), ("bias", &bias)] {
                    let (a, b) = (g_ours.get(var.as_tensor()), g_ref.get(var.as_tensor()));
                    if name == "input" && !input_needs_grad {
                        assert!(a.is_none() && b.is_none(), "{case}: a detached input got a gradient");
                        continue;
                    }
                    let (a, b) = (a.unwrap(), b.unwrap());
                    let norm: f32 = b.abs().unwrap().max_all().unwrap().to_scalar().unwrap();
                    assert!(norm > 0.0, "{case}: {name} has no gradient");
                    assert!(max_diff(a, b) < 1e-4 * norm.max(1.0), "{case}: {name} gradient");
                }
            }
        }
    }

    /// Unfold and fold are adjoint: ⟨unfold(x), r⟩ = ⟨x, fold(r)⟩ over the
    /// window values (the bias column, a constant 1, excluded).
    #[test]
    fn fold_is_the_adjoint_of_unfold() {
        let g = Geometry {
            n: 2,
            h: 7,
            w: 5,
            c: 3,
            kernel: 3,
            stride: 2,
            padding: 1,
        };
        let x = values(g.n * g.h * g.w * g.c, 5);
        let r = values(g.rows() * g.row_len(), 6);
        let unfolded = g.unfold(&x, 1.0);
        let folded = g.fold(&r, 1.0);
        let left: f64 = unfolded
            .chunks_exact(g.row_len())
            .zip(r.chunks_exact(g.row_len()))
            .map(|(u, r)| {
                u[..u.len() - 1]
                    .iter()
                    .zip(r)
                    .map(|(a, b)| f64::from(*a) * f64::from(*b))
                    .sum::<f64>()
            })
            .sum();
        let right: f64 = x.iter().zip(&folded).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum();
        assert!((left - right).abs() < 1e-3, "{left} vs {right}");
        assert!(unfolded
            .chunks_exact(g.row_len())
            .all(|row| row[g.row_len() - 1] == 1.0));
    }

    #[test]
    fn a_kernel_larger_than_the_image_is_an_error_not_a_panic() {
        let (conv, _, _) = layer(2, 3, 8, 4, 0);
        let x = Tensor::zeros((1, 5, 20, 2), candle_core::DType::F32, &Device::Cpu).unwrap();
        let e = conv.forward(&x).err().unwrap().to_string();
        assert!(e.contains("8×8") && e.contains("[5, 20, 2]"), "{e}");
    }
}
