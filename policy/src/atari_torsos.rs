//! The two Atari torsos, on [`UnfoldedConv2d`] over channels-last images
//! (im2col on the CPU, candle's `conv2d` elsewhere; differentiable):
//!
//! - `nature`: the DQN Nature paper's network, as TorchBeast's `AtariNet`:
//!   conv 32@8×8 stride 4, 64@4×4 stride 2, 64@3×3 stride 1 (no padding,
//!   ReLU after each), flattened CHW, fully connected 512, ReLU.
//! - `impala`: the IMPALA paper's deep ResNet (Espeholt et al. 2018, fig. 3):
//!   three stacks of 16, 32, 32 channels, each conv 3×3 (`SAME`) → max-pool
//!   3×3 stride 2 (`SAME`) → two residual blocks (x + conv(relu(conv(relu(x))))),
//!   then ReLU, flatten CHW, fully connected 256, ReLU.
//!
//! Both read HWC observations (as the env writes them) and stay channels
//! last to the end, where the features are flattened CHW as PyTorch's
//! `view(N, -1)` does (one small permute), so the fully connected weights
//! mean what TorchBeast's do. The first convolution divides the frames by
//! 255, as TorchBeast's networks do: they are meant for 0..=255 pixels.

use candle_core::Tensor;
use candle_nn::{Linear, Module, VarBuilder, VarMap};

use crate::max_pool::{max_pool2d_same, same_padding};
use crate::unfolded_conv::UnfoldedConv2d;
use crate::{init_conv, init_linear, PolicyError, Result};

/// `(out_channels, kernel, stride)` of the Nature torso's convolutions.
const NATURE_CONVS: [(usize, usize, usize); 3] = [(32, 8, 4), (64, 4, 2), (64, 3, 1)];
const NATURE_HIDDEN: usize = 512;
/// Channels of the IMPALA torso's three stacks.
const IMPALA_CHANNELS: [usize; 3] = [16, 32, 32];
const IMPALA_HIDDEN: usize = 256;
/// Pixel frames are bytes: the networks read them in [0, 1].
const PIXEL_SCALE: f64 = 1.0 / 255.0;

/// Output side of an unpadded convolution, if the input is large enough.
fn valid_out(size: usize, kernel: usize, stride: usize) -> Option<usize> {
    (size >= kernel).then(|| (size - kernel) / stride + 1)
}

/// The Nature torso's `[C, H, W]` after its three convolutions, or None if
/// the image is too small.
pub fn nature_output(height: usize, width: usize) -> Option<(usize, usize, usize)> {
    let (mut h, mut w) = (height, width);
    for (_, k, s) in NATURE_CONVS {
        h = valid_out(h, k, s)?;
        w = valid_out(w, k, s)?;
    }
    Some((NATURE_CONVS[2].0, h, w))
}

/// The IMPALA torso's `[C, H, W]` after its three stacks (each halves the
/// sides, rounding up).
pub fn impala_output(height: usize, width: usize) -> (usize, usize, usize) {
    let (mut h, mut w) = (height, width);
    for _ in IMPALA_CHANNELS {
        h = same_padding(h, 3, 2).0;
        w = same_padding(w, 3, 2).0;
    }
    (IMPALA_CHANNELS[2], h, w)
}

/// The smallest side each torso takes (Nature: 36 pixels, for a 1×1 map
/// after the third convolution).
pub const NATURE_MIN_SIDE: usize = 36;

/// HWC rows `[N, H·W·C]` as images `[N, H, W, C]`.
fn images(obs: &Tensor, (h, w, c): (usize, usize, usize)) -> Result<Tensor> {
    Ok(obs.reshape((obs.dim(0)?, h, w, c))?)
}

/// `[N, H, W, C]` features flattened CHW, as PyTorch's `view(N, -1)` of NCHW.
fn flatten_chw(x: &Tensor) -> Result<Tensor> {
    Ok(x.permute((0, 3, 1, 2))?.flatten_from(1)?)
}

/// The Nature torso's layers: `torso.conv{0,1,2}`, `torso.fc`.
pub struct NatureTorso {
    convs: Vec<UnfoldedConv2d>,
    fc: Linear,
    image: (usize, usize, usize),
}

impl NatureTorso {
    pub fn init(
        varmap: &VarMap,
        image: (usize, usize, usize),
        rng: &mut rand::rngs::StdRng,
        device: &candle_core::Device,
    ) -> Result<usize> {
        let (h, w, c) = image;
        let (oc, oh, ow) = nature_output(h, w).ok_or_else(|| too_small("nature", image))?;
        let mut in_c = c;
        for (i, (out_c, k, _)) in NATURE_CONVS.into_iter().enumerate() {
            init_conv(varmap, &format!("torso.conv{i}"), in_c, out_c, k, rng, device)?;
            in_c = out_c;
        }
        init_linear(varmap, "torso.fc", oc * oh * ow, NATURE_HIDDEN, rng, device)?;
        Ok(NATURE_HIDDEN)
    }

    pub fn build(vb: VarBuilder, image: (usize, usize, usize)) -> Result<(NatureTorso, usize)> {
        let (h, w, c) = image;
        let (oc, oh, ow) = nature_output(h, w).ok_or_else(|| too_small("nature", image))?;
        let mut convs = Vec::with_capacity(3);
        let mut in_c = c;
        for (i, (out_c, k, s)) in NATURE_CONVS.into_iter().enumerate() {
            let conv = UnfoldedConv2d::build(vb.pp(format!("torso.conv{i}")), in_c, out_c, k, s, 0)?;
            // The first layer reads the frames in [0, 1].
            convs.push(if i == 0 { conv.scaling_input(PIXEL_SCALE) } else { conv });
            in_c = out_c;
        }
        let fc = candle_nn::linear(oc * oh * ow, NATURE_HIDDEN, vb.pp("torso.fc"))?;
        Ok((NatureTorso { convs, fc, image }, NATURE_HIDDEN))
    }

    pub fn forward(&self, obs: &Tensor) -> Result<Tensor> {
        let mut x = images(obs, self.image)?;
        for conv in &self.convs {
            x = conv.forward_relu(&x)?;
        }
        Ok(self.fc.forward(&flatten_chw(&x)?)?.relu()?)
    }
}

/// One IMPALA stack: conv, pool, two residual blocks of two convs each.
struct ImpalaStack {
    conv: UnfoldedConv2d,
    residual: [[UnfoldedConv2d; 2]; 2],
}

/// The IMPALA torso's layers: `torso.stack{i}.conv`,
/// `torso.stack{i}.res{j}.conv{k}`, `torso.fc`.
pub struct ImpalaTorso {
    stacks: Vec<ImpalaStack>,
    fc: Linear,
    image: (usize, usize, usize),
}

impl ImpalaTorso {
    pub fn init(
        varmap: &VarMap,
        image: (usize, usize, usize),
        rng: &mut rand::rngs::StdRng,
        device: &candle_core::Device,
    ) -> Result<usize> {
        let (h, w, c) = image;
        let mut in_c = c;
        for (i, out_c) in IMPALA_CHANNELS.into_iter().enumerate() {
            init_conv(varmap, &format!("torso.stack{i}.conv"), in_c, out_c, 3, rng, device)?;
            for j in 0..2 {
                for k in 0..2 {
                    init_conv(
                        varmap,
                        &format!("torso.stack{i}.res{j}.conv{k}"),
                        out_c,
                        out_c,
                        3,
                        rng,
                        device,
                    )?;
                }
            }
            in_c = out_c;
        }
        let (oc, oh, ow) = impala_output(h, w);
        init_linear(varmap, "torso.fc", oc * oh * ow, IMPALA_HIDDEN, rng, device)?;
        Ok(IMPALA_HIDDEN)
    }

    pub fn build(vb: VarBuilder, image: (usize, usize, usize)) -> Result<(ImpalaTorso, usize)> {
        let (h, w, c) = image;
        let mut stacks = Vec::with_capacity(3);
        let mut in_c = c;
        for (i, out_c) in IMPALA_CHANNELS.into_iter().enumerate() {
            let s = vb.pp(format!("torso.stack{i}"));
            let res =
                |j: usize, k: usize| UnfoldedConv2d::build(s.pp(format!("res{j}.conv{k}")), out_c, out_c, 3, 1, 1);
            let conv = UnfoldedConv2d::build(s.pp("conv"), in_c, out_c, 3, 1, 1)?;
            stacks.push(ImpalaStack {
                // The first layer reads the frames in [0, 1].
                conv: if i == 0 { conv.scaling_input(PIXEL_SCALE) } else { conv },
                residual: [[res(0, 0)?, res(0, 1)?], [res(1, 0)?, res(1, 1)?]],
            });
            in_c = out_c;
        }
        let (oc, oh, ow) = impala_output(h, w);
        let fc = candle_nn::linear(oc * oh * ow, IMPALA_HIDDEN, vb.pp("torso.fc"))?;
        Ok((ImpalaTorso { stacks, fc, image }, IMPALA_HIDDEN))
    }

    pub fn forward(&self, obs: &Tensor) -> Result<Tensor> {
        let mut x = images(obs, self.image)?;
        for stack in &self.stacks {
            x = max_pool2d_same(&stack.conv.forward(&x)?, 3, 2)?;
            for [first, second] in &stack.residual {
                let y = second.forward(&first.forward_relu(&x.relu()?)?)?;
                x = (x + y)?;
            }
        }
        Ok(self.fc.forward(&flatten_chw(&x.relu()?)?)?.relu()?)
    }
}

fn too_small(torso: &str, (h, w, c): (usize, usize, usize)) -> PolicyError {
    PolicyError::Config(format!(
        "model.torso = {torso:?} needs images of at least {NATURE_MIN_SIDE}×{NATURE_MIN_SIDE} pixels; \
         the env's observations have shape [{h}, {w}, {c}]"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ActionKind, NetConfig, PolicyNet, Torso};
    use candle_core::{DType, Device};

    fn config(torso: Torso) -> NetConfig {
        NetConfig {
            torso,
            ..NetConfig::default()
        }
    }

    fn pixels(n: usize, shape: (usize, usize, usize)) -> Tensor {
        let len = n * shape.0 * shape.1 * shape.2;
        let values: Vec<f32> = (0..len).map(|i| ((i * 37 + i / 7) % 256) as f32).collect();
        Tensor::from_vec(values, (n, len / n), &Device::Cpu).unwrap()
    }

    #[test]
    fn output_sizes_on_atari_frames() {
        // 84 → 20 → 9 → 7 (TorchBeast's 3136 inputs of the FC layer).
        assert_eq!(nature_output(84, 84), Some((64, 7, 7)));
        assert_eq!(nature_output(36, 36), Some((64, 1, 1)));
        assert_eq!(nature_output(35, 84), None);
        // 84 → 42 → 21 → 11: 32·11·11 = 3872.
        assert_eq!(impala_output(84, 84), (32, 11, 11));
        assert_eq!(impala_output(10, 10), (32, 2, 2));
    }

    /// Every parameter of both torsos gets a gradient, the weight names and
    /// shapes are as documented, and the weights survive safetensors.
    #[test]
    fn both_torsos_build_train_and_round_trip() {
        for (torso, shape, names) in [
            (
                Torso::Nature,
                (44, 40, 2),
                vec![
                    ("torso.conv0.weight", vec![32, 2, 8, 8]),
                    ("torso.conv1.weight", vec![64, 32, 4, 4]),
                    ("torso.conv2.weight", vec![64, 64, 3, 3]),
                    ("torso.fc.weight", vec![512, 64 * 2]), // 2×1 after the convolutions
                ],
            ),
            (
                Torso::Impala,
                (12, 9, 3),
                vec![
                    ("torso.stack0.conv.weight", vec![16, 3, 3, 3]),
                    ("torso.stack1.res1.conv0.weight", vec![32, 32, 3, 3]),
                    ("torso.stack2.res0.conv1.bias", vec![32]),
                    ("torso.fc.weight", vec![256, 32 * 2 * 2]),
                ],
            ),
        ] {
            let varmap = candle_nn::VarMap::new();
            let obs_shape = [shape.0, shape.1, shape.2];
            let net = PolicyNet::init(
                &varmap,
                &obs_shape[..],
                ActionKind::Categorical(4),
                &config(torso),
                5,
                &Device::Cpu,
            )
            .unwrap();
            let vars = varmap.data().lock().unwrap().clone();
            for (name, dims) in &names {
                assert_eq!(vars[*name].dims(), dims.as_slice(), "{torso:?} {name}");
            }
            let x = pixels(3, shape);
            let out = net.forward(&x).unwrap();
            let crate::PolicyParams::Logits(logits) = &out.policy else {
                panic!("categorical")
            };
            assert_eq!(logits.dims(), &[3, 4]);
            let loss = (logits.sum_all().unwrap() + out.value.sum_all().unwrap()).unwrap();
            let grads = loss.backward().unwrap();
            for (name, var) in &vars {
                let g = grads
                    .get(var.as_tensor())
                    .unwrap_or_else(|| panic!("{torso:?}: no gradient for {name}"));
                let norm = g.sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
                assert!(norm.is_finite(), "{torso:?} {name}");
            }
            let conv = &vars[names[0].0];
            let g = grads.get(conv.as_tensor()).unwrap();
            assert!(g.abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap() > 0.0);

            let bytes = PolicyNet::to_safetensors(&varmap).unwrap();
            let copy = PolicyNet::from_safetensors(
                &bytes,
                &obs_shape[..],
                ActionKind::Categorical(4),
                &config(torso),
                &Device::Cpu,
            )
            .unwrap();
            let again = copy.forward(&x).unwrap().value.to_vec1::<f32>().unwrap();
            assert_eq!(again, out.value.to_vec1::<f32>().unwrap());
        }
    }

    /// The Nature torso is TorchBeast's function of the frame: a white
    /// frame (255) gives the features candle's `conv2d` over NCHW gives on
    /// ones (x / 255), flattened CHW into the same fully connected weights.
    /// So frames are scaled in the network, and the channels-last layers
    /// and the final flatten mean what PyTorch's do.
    #[test]
    fn nature_torso_is_torchbeasts_function_of_the_frame() {
        let varmap = candle_nn::VarMap::new();
        let (h, w, c) = (40, 36, 2);
        let net = PolicyNet::init(
            &varmap,
            &[h, w, c][..],
            ActionKind::Categorical(2),
            &config(Torso::Nature),
            1,
            &Device::Cpu,
        )
        .unwrap();
        let vars = varmap.data().lock().unwrap().clone();
        let var = |name: &str| vars[name].as_tensor().clone();
        // Some pixels dark, so the frame is not uniform.
        let frame: Vec<f32> = (0..h * w * c).map(|i| if i % 7 == 0 { 0.0 } else { 255.0 }).collect();
        let by_hand_input: Vec<f32> = frame.iter().map(|v| v / 255.0).collect();
        let mut x = Tensor::from_vec(by_hand_input, (1, h, w, c), &Device::Cpu)
            .unwrap()
            .permute((0, 3, 1, 2))
            .unwrap()
            .contiguous()
            .unwrap();
        for (i, (_, _, stride)) in NATURE_CONVS.into_iter().enumerate() {
            let conv = candle_nn::Conv2d::new(
                var(&format!("torso.conv{i}.weight")),
                Some(var(&format!("torso.conv{i}.bias"))),
                candle_nn::Conv2dConfig {
                    stride,
                    ..Default::default()
                },
            );
            let (_, _, xh, xw) = x.dims4().unwrap();
            let (k, used) = (NATURE_CONVS[i].1, |side: usize| {
                (side - NATURE_CONVS[i].1) / stride * stride
            });
            x = x
                .narrow(2, 0, used(xh) + k)
                .unwrap()
                .narrow(3, 0, used(xw) + k)
                .unwrap();
            x = conv.forward(&x).unwrap().relu().unwrap();
        }
        let fc = Linear::new(var("torso.fc.weight"), Some(var("torso.fc.bias")));
        let by_hand = fc.forward(&x.flatten_from(1).unwrap()).unwrap().relu().unwrap();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let (torso, _) = NatureTorso::build(vb, (h, w, c)).unwrap();
        let frame = Tensor::from_vec(frame, (1, h * w * c), &Device::Cpu).unwrap();
        let features = torso.forward(&frame).unwrap();
        let scale: f32 = by_hand.abs().unwrap().max_all().unwrap().to_scalar().unwrap();
        let diff: f32 = (features - by_hand)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar()
            .unwrap();
        assert!(scale > 0.0 && diff < 1e-5 * scale.max(1.0), "{diff} of {scale}");
        assert_eq!(net.forward(&frame).unwrap().value.dims(), &[1]);
    }

    #[test]
    fn a_torso_that_cannot_read_the_observation_names_model_torso_and_the_shape() {
        for (torso, shape) in [
            (Torso::Impala, vec![4usize]),
            (Torso::Nature, vec![10, 10, 4]),
            (Torso::Impala, vec![84, 84]),
        ] {
            let e = PolicyNet::init(
                &candle_nn::VarMap::new(),
                shape.clone(),
                ActionKind::Categorical(2),
                &config(torso),
                0,
                &Device::Cpu,
            )
            .err()
            .unwrap()
            .to_string();
            assert!(
                e.contains("model.torso") && e.contains(torso.name()) && e.contains(&format!("{shape:?}")),
                "{e}"
            );
            let e = PolicyNet::from_safetensors(
                b"",
                shape.clone(),
                ActionKind::Categorical(2),
                &config(torso),
                &Device::Cpu,
            )
            .err()
            .unwrap()
            .to_string();
            assert!(e.contains("model.torso"), "{e}");
        }
    }
}
