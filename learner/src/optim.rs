//! Optimizers (candle-nn has no RMSProp), global-norm gradient clipping
//! (candle has none) and the linear learning-rate decay.
//!
//! Both optimizers implement candle-nn's [`Optimizer`] trait and
//! [`OptimizerState`], which exposes their state by name so checkpoints can
//! save and restore it exactly.

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, DType, InplaceOp2, InplaceOp3, Layout, Result, Tensor, Var};
use candle_nn::Optimizer;
use serde::{Deserialize, Serialize};

/// The parts of candle-nn's `Optimizer` that both optimizers here share:
/// `new` (positional variable names, then `with_names`) and the learning
/// rate, kept in `self.config.lr`.
macro_rules! optimizer_common {
    ($config:ty) => {
        type Config = $config;

        fn new(vars: Vec<Var>, config: $config) -> Result<Self> {
            Self::with_names(positional_names(vars), config)
        }

        fn learning_rate(&self) -> f64 {
            self.config.lr
        }

        fn set_learning_rate(&mut self, lr: f64) {
            self.config.lr = lr;
        }
    };
}

/// Variables with stable names (the names checkpoints use).
pub type NamedVars = Vec<(String, Var)>;

fn positional_names(vars: Vec<Var>) -> NamedVars {
    vars.into_iter()
        .enumerate()
        .map(|(i, v)| (format!("param.{i}"), v))
        .collect()
}

/// Optimizer state as named tensors, for checkpoints.
pub trait OptimizerState {
    /// Every state tensor, by name (plus scalar state as 0-d tensors).
    fn state(&self) -> Result<Vec<(String, Tensor)>>;
    /// Restores what [`OptimizerState::state`] returned; every name must be there.
    fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<()>;
}

fn take(state: &HashMap<String, Tensor>, name: &str, like: &Tensor) -> Result<Tensor> {
    let t = state
        .get(name)
        .ok_or_else(|| candle_core::Error::Msg(format!("optimizer state `{name}` is missing")))?;
    if t.dims() != like.dims() {
        return Err(candle_core::Error::Msg(format!(
            "optimizer state `{name}` has shape {:?}, expected {:?}",
            t.dims(),
            like.dims()
        )));
    }
    t.to_device(like.device())?.to_dtype(like.dtype())
}

/// Whether `t` takes the optimizers' CPU fast path: one fused loop per
/// tensor, updating in place and allocating nothing, instead of ~10 small
/// tensor ops, each allocating (other devices and dtypes take the tensor
/// path).
fn cpu_f32(t: &Tensor) -> bool {
    t.device().is_cpu() && t.dtype() == DType::F32
}

fn f32_values<'a>(storage: &'a CpuStorage, layout: &Layout) -> Result<&'a [f32]> {
    match (storage, layout.contiguous_offsets()) {
        (CpuStorage::F32(values), Some((start, end))) => values
            .get(start..end)
            .ok_or_else(|| candle_core::Error::Msg("optimizer: a tensor's layout exceeds its storage".into())),
        _ => candle_core::bail!("optimizer: expected a contiguous f32 CPU tensor"),
    }
}

fn f32_values_mut<'a>(storage: &'a mut CpuStorage, layout: &Layout) -> Result<&'a mut [f32]> {
    match (storage, layout.contiguous_offsets()) {
        (CpuStorage::F32(values), Some((start, end))) => values
            .get_mut(start..end)
            .ok_or_else(|| candle_core::Error::Msg("optimizer: a tensor's layout exceeds its storage".into())),
        _ => candle_core::bail!("optimizer: expected a contiguous f32 CPU tensor"),
    }
}

/// One zero tensor per variable, its shape, dtype and device (optimizer state).
fn zeros_like(vars: &NamedVars) -> Result<Vec<Var>> {
    vars.iter()
        .map(|(_, v)| Var::zeros(v.shape(), v.dtype(), v.device()))
        .collect()
}

/// `x`, or 0 if it is subnormal (|x| < `f32::MIN_POSITIVE`, 1.2e-38): the
/// moments of a weight whose gradient stays 0 decay geometrically and would
/// spend ~150 steps (β 0.9) to thousands (β 0.999) in subnormal numbers,
/// whose arithmetic is many times slower on x86 (measured: Adam's update
/// took 10–11% of the learner's CPU time on MinAtar Breakout, where many FC
/// inputs are 0). A moment that small moves its weight by nothing.
#[inline]
fn flushed(x: f32) -> f32 {
    if x.abs() < f32::MIN_POSITIVE {
        0.0
    } else {
        x
    }
}

/// `dst[i] = f(dst[i], a[i])` over every element, in place.
struct InPlace2<F: Fn(&mut f32, f32)>(F);

impl<F: Fn(&mut f32, f32)> InplaceOp2 for InPlace2<F> {
    fn name(&self) -> &'static str {
        "optimizer update"
    }

    fn cpu_fwd(&self, dst: &mut CpuStorage, dst_l: &Layout, a: &CpuStorage, a_l: &Layout) -> Result<()> {
        let (dst, a) = (f32_values_mut(dst, dst_l)?, f32_values(a, a_l)?);
        if dst.len() != a.len() {
            candle_core::bail!("optimizer update: {} values against {}", dst.len(), a.len())
        }
        for (d, a) in dst.iter_mut().zip(a) {
            (self.0)(d, *a);
        }
        Ok(())
    }
}

/// `dst[i] = f(dst[i], a[i], b[i])` over every element, in place.
struct InPlace3<F: Fn(&mut f32, f32, f32)>(F);

impl<F: Fn(&mut f32, f32, f32)> InplaceOp3 for InPlace3<F> {
    fn name(&self) -> &'static str {
        "optimizer update"
    }

    fn cpu_fwd(
        &self,
        dst: &mut CpuStorage,
        dst_l: &Layout,
        a: &CpuStorage,
        a_l: &Layout,
        b: &CpuStorage,
        b_l: &Layout,
    ) -> Result<()> {
        let (dst, a, b) = (f32_values_mut(dst, dst_l)?, f32_values(a, a_l)?, f32_values(b, b_l)?);
        if dst.len() != a.len() || dst.len() != b.len() {
            candle_core::bail!(
                "optimizer update: {} values against {} and {}",
                dst.len(),
                a.len(),
                b.len()
            )
        }
        for ((d, a), b) in dst.iter_mut().zip(a).zip(b) {
            (self.0)(d, *a, *b);
        }
        Ok(())
    }
}

/// RMSProp as IMPALA's public implementations run it (decay 0.99, ε 0.01,
/// momentum 0), in PyTorch's form:
/// v ← α v + (1 − α) g²;  θ ← θ − lr · g / (√v + ε), with v starting at 0.
/// (TensorFlow's RMSPropOptimizer puts ε inside the square root and starts
/// v at 1; with ε = 0.01 the two differ mostly in the first steps.)
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RmsPropConfig {
    pub lr: f64,
    pub decay: f64,
    pub epsilon: f64,
}

/// IMPALA's settings: lr 6e-4, decay 0.99, ε 0.01 (the only place they are written).
impl Default for RmsPropConfig {
    fn default() -> Self {
        RmsPropConfig {
            lr: 6e-4,
            decay: 0.99,
            epsilon: 0.01,
        }
    }
}

pub struct RmsProp {
    vars: NamedVars,
    square_avg: Vec<Var>,
    config: RmsPropConfig,
}

impl RmsProp {
    /// With stable names for the variables (used in checkpoints).
    pub fn with_names(vars: NamedVars, config: RmsPropConfig) -> Result<Self> {
        Ok(RmsProp {
            square_avg: zeros_like(&vars)?,
            vars,
            config,
        })
    }
}

impl Optimizer for RmsProp {
    optimizer_common!(RmsPropConfig);

    fn step(&mut self, grads: &GradStore) -> Result<()> {
        let RmsPropConfig { lr, decay, epsilon } = self.config;
        for ((_, var), sq) in self.vars.iter().zip(&self.square_avg) {
            let Some(g) = grads.get(var) else { continue };
            if cpu_f32(var) && cpu_f32(sq) && cpu_f32(g) {
                let g = g.contiguous()?;
                let (lr, decay, epsilon) = (lr as f32, decay as f32, epsilon as f32);
                sq.inplace_op2(
                    &g,
                    &InPlace2(|v: &mut f32, g: f32| *v = flushed(decay * *v + (1.0 - decay) * g * g)),
                )?;
                var.inplace_op3(
                    &g,
                    sq,
                    &InPlace3(|p: &mut f32, g: f32, v: f32| *p -= lr * g / (v.sqrt() + epsilon)),
                )?;
                continue;
            }
            let v = ((sq.as_tensor() * decay)? + (g.sqr()? * (1.0 - decay))?)?;
            let update = (g / (v.sqrt()? + epsilon)?)?;
            var.set(&(var.as_tensor() - (update * lr)?)?)?;
            sq.set(&v)?;
        }
        Ok(())
    }
}

impl OptimizerState for RmsProp {
    fn state(&self) -> Result<Vec<(String, Tensor)>> {
        Ok(self
            .vars
            .iter()
            .zip(&self.square_avg)
            .map(|((name, _), sq)| (format!("rmsprop.square_avg.{name}"), sq.as_tensor().clone()))
            .collect())
    }

    fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        for ((name, _), sq) in self.vars.iter().zip(&self.square_avg) {
            sq.set(&take(state, &format!("rmsprop.square_avg.{name}"), sq.as_tensor())?)?;
        }
        Ok(())
    }
}

/// Adam (Kingma & Ba), bias-corrected:
/// m ← β₁m + (1−β₁)g; v ← β₂v + (1−β₂)g²; θ ← θ − lr · m̂ / (√v̂ + ε).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdamConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub epsilon: f64,
}

/// Kingma & Ba's settings: lr 1e-3, β₁ 0.9, β₂ 0.999, ε 1e-8 (the only place they are written).
impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-8,
        }
    }
}

pub struct Adam {
    vars: NamedVars,
    first: Vec<Var>,
    second: Vec<Var>,
    steps: u64,
    config: AdamConfig,
}

impl Adam {
    /// With stable names for the variables (used in checkpoints).
    pub fn with_names(vars: NamedVars, config: AdamConfig) -> Result<Self> {
        Ok(Adam {
            first: zeros_like(&vars)?,
            second: zeros_like(&vars)?,
            vars,
            steps: 0,
            config,
        })
    }
}

impl Optimizer for Adam {
    optimizer_common!(AdamConfig);

    fn step(&mut self, grads: &GradStore) -> Result<()> {
        self.steps += 1;
        let AdamConfig {
            lr,
            beta1,
            beta2,
            epsilon,
        } = self.config;
        let t = self.steps as i32;
        let (c1, c2) = (1.0 - beta1.powi(t), 1.0 - beta2.powi(t));
        for (((_, var), m), v) in self.vars.iter().zip(&self.first).zip(&self.second) {
            let Some(g) = grads.get(var) else { continue };
            if cpu_f32(var) && cpu_f32(m) && cpu_f32(v) && cpu_f32(g) {
                let g = g.contiguous()?;
                let (b1, b2, lr, eps, c1, c2) = (
                    beta1 as f32,
                    beta2 as f32,
                    lr as f32,
                    epsilon as f32,
                    c1 as f32,
                    c2 as f32,
                );
                m.inplace_op2(
                    &g,
                    &InPlace2(|m: &mut f32, g: f32| *m = flushed(b1 * *m + (1.0 - b1) * g)),
                )?;
                v.inplace_op2(
                    &g,
                    &InPlace2(|v: &mut f32, g: f32| *v = flushed(b2 * *v + (1.0 - b2) * g * g)),
                )?;
                var.inplace_op3(
                    m,
                    v,
                    &InPlace3(|p: &mut f32, m: f32, v: f32| *p -= lr * (m / c1) / ((v / c2).sqrt() + eps)),
                )?;
                continue;
            }
            let m_new = ((m.as_tensor() * beta1)? + (g * (1.0 - beta1))?)?;
            let v_new = ((v.as_tensor() * beta2)? + (g.sqr()? * (1.0 - beta2))?)?;
            let m_hat = (&m_new / c1)?;
            let v_hat = (&v_new / c2)?;
            let update = (m_hat / (v_hat.sqrt()? + epsilon)?)?;
            var.set(&(var.as_tensor() - (update * lr)?)?)?;
            m.set(&m_new)?;
            v.set(&v_new)?;
        }
        Ok(())
    }
}

impl OptimizerState for Adam {
    fn state(&self) -> Result<Vec<(String, Tensor)>> {
        let device = self
            .vars
            .first()
            .map(|(_, v)| v.device().clone())
            .unwrap_or(candle_core::Device::Cpu);
        let mut out = vec![("adam.steps".to_string(), Tensor::new(self.steps as f64, &device)?)];
        for (((name, _), m), v) in self.vars.iter().zip(&self.first).zip(&self.second) {
            out.push((format!("adam.m.{name}"), m.as_tensor().clone()));
            out.push((format!("adam.v.{name}"), v.as_tensor().clone()));
        }
        Ok(out)
    }

    fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        let steps = state
            .get("adam.steps")
            .ok_or_else(|| candle_core::Error::Msg("optimizer state `adam.steps` is missing".into()))?;
        self.steps = steps.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()? as u64;
        for (((name, _), m), v) in self.vars.iter().zip(&self.first).zip(&self.second) {
            m.set(&take(state, &format!("adam.m.{name}"), m.as_tensor())?)?;
            v.set(&take(state, &format!("adam.v.{name}"), v.as_tensor())?)?;
        }
        Ok(())
    }
}

/// Scales the gradients of `vars` so their global L2 norm is at most
/// `max_norm` (TensorFlow's `clip_by_global_norm`: g · max_norm /
/// max(norm, max_norm)). Returns the norm before clipping.
pub fn clip_grad_norm(grads: &mut GradStore, vars: &[Var], max_norm: f64) -> Result<f64> {
    let mut sum_sq = 0.0f64;
    for var in vars {
        if let Some(g) = grads.get(var) {
            sum_sq += g
                .sqr()?
                .sum_all()?
                .to_dtype(candle_core::DType::F64)?
                .to_scalar::<f64>()?;
        }
    }
    let norm = sum_sq.sqrt();
    if norm > max_norm && norm.is_finite() {
        let scale = max_norm / norm;
        for var in vars {
            if let Some(g) = grads.get(var) {
                let clipped = (g * scale)?;
                grads.insert(var, clipped);
            }
        }
    }
    Ok(norm)
}

/// The learning rate after `frames` env frames, decaying linearly from
/// `initial` to zero at `total_frames` (IMPALA's schedule).
pub fn linear_decay(initial: f64, frames: u64, total_frames: u64) -> f64 {
    if total_frames == 0 {
        return initial;
    }
    initial * (1.0 - (frames as f64 / total_frames as f64)).max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn grads_for(var: &Var, loss: Tensor) -> GradStore {
        let g = loss.backward().unwrap();
        assert!(g.get(var).is_some());
        g
    }

    #[test]
    fn rmsprop_step_matches_a_hand_computation() {
        // θ = [1, −2], loss = ½ Σ θ² so g = θ.
        let var = Var::new(&[1.0f32, -2.0], &Device::Cpu).unwrap();
        let mut opt = RmsProp::new(
            vec![var.clone()],
            RmsPropConfig {
                lr: 0.1,
                decay: 0.99,
                epsilon: 0.01,
            },
        )
        .unwrap();
        let g = grads_for(&var, (var.as_tensor().sqr().unwrap().sum_all().unwrap() * 0.5).unwrap());
        opt.step(&g).unwrap();
        // v = 0.01 g²; √v = 0.1 |g|; θ −= 0.1 g / (0.1|g| + 0.01)
        let want = [
            1.0 - 0.1 * 1.0 / (0.1 * 1.0 + 0.01),
            -2.0 + 0.1 * 2.0 / (0.1 * 2.0 + 0.01),
        ];
        let got = var.as_tensor().to_vec1::<f32>().unwrap();
        for (g, w) in got.iter().zip(want) {
            assert!((f64::from(*g) - w).abs() < 1e-6, "{got:?} vs {want:?}");
        }
        // Second step: v = 0.99 v₁ + 0.01 g₂².
        let g1 = [1.0f64, -2.0];
        let g2: Vec<f64> = got.iter().map(|x| f64::from(*x)).collect();
        let g = grads_for(&var, (var.as_tensor().sqr().unwrap().sum_all().unwrap() * 0.5).unwrap());
        opt.step(&g).unwrap();
        let got2 = var.as_tensor().to_vec1::<f32>().unwrap();
        for i in 0..2 {
            let v = 0.99 * 0.01 * g1[i] * g1[i] + 0.01 * g2[i] * g2[i];
            let want = g2[i] - 0.1 * g2[i] / (v.sqrt() + 0.01);
            assert!((f64::from(got2[i]) - want).abs() < 1e-6);
        }
    }

    #[test]
    fn adam_first_step_moves_by_lr() {
        // Bias correction makes Adam's first step ≈ lr · sign(g).
        let var = Var::new(&[3.0f32, -0.5], &Device::Cpu).unwrap();
        let mut opt = Adam::new(
            vec![var.clone()],
            AdamConfig {
                lr: 0.01,
                beta1: 0.9,
                beta2: 0.999,
                epsilon: 1e-8,
            },
        )
        .unwrap();
        let g = grads_for(&var, (var.as_tensor().sqr().unwrap().sum_all().unwrap() * 0.5).unwrap());
        opt.step(&g).unwrap();
        let got = var.as_tensor().to_vec1::<f32>().unwrap();
        assert!((got[0] - 2.99).abs() < 1e-6 && (got[1] + 0.49).abs() < 1e-6, "{got:?}");
    }

    #[test]
    fn global_norm_clipping_hits_the_exact_norm() {
        let a = Var::new(&[3.0f32, 0.0], &Device::Cpu).unwrap();
        let b = Var::new(&[0.0f32, 4.0], &Device::Cpu).unwrap();
        // g_a = [3, 0], g_b = [0, 4]: global norm 5.
        let loss = ((a.as_tensor().sqr().unwrap().sum_all().unwrap()
            + b.as_tensor().sqr().unwrap().sum_all().unwrap())
        .unwrap()
            * 0.5)
            .unwrap();
        let mut grads = loss.backward().unwrap();
        let vars = [a.clone(), b.clone()];
        let norm = clip_grad_norm(&mut grads, &vars, 2.0).unwrap();
        assert!((norm - 5.0).abs() < 1e-6);
        let ga = grads.get(&a).unwrap().to_vec1::<f32>().unwrap();
        let gb = grads.get(&b).unwrap().to_vec1::<f32>().unwrap();
        assert!(
            (ga[0] - 1.2).abs() < 1e-6 && (gb[1] - 1.6).abs() < 1e-6,
            "{ga:?} {gb:?}"
        );
        let after = clip_grad_norm(&mut grads, &vars, 2.0).unwrap();
        assert!((after - 2.0).abs() < 1e-6, "clipped to exactly 2: {after}");
        // Under the limit: untouched.
        let again = clip_grad_norm(&mut grads, &vars, 10.0).unwrap();
        assert!((again - 2.0).abs() < 1e-6);
    }

    #[test]
    fn learning_rate_decays_linearly_to_zero() {
        assert_eq!(linear_decay(0.5, 0, 100), 0.5);
        assert!((linear_decay(0.5, 25, 100) - 0.375).abs() < 1e-12);
        assert_eq!(linear_decay(0.5, 100, 100), 0.0);
        assert_eq!(linear_decay(0.5, 150, 100), 0.0);
    }

    #[test]
    fn state_round_trips() {
        let var = Var::new(&[1.0f32, 2.0], &Device::Cpu).unwrap();
        let mut opt = Adam::new(
            vec![var.clone()],
            AdamConfig {
                lr: 0.1,
                beta1: 0.9,
                beta2: 0.999,
                epsilon: 1e-8,
            },
        )
        .unwrap();
        let g = grads_for(&var, var.as_tensor().sqr().unwrap().sum_all().unwrap());
        opt.step(&g).unwrap();
        let state: HashMap<String, Tensor> = opt.state().unwrap().into_iter().collect();
        let var2 = Var::new(&[1.0f32, 2.0], &Device::Cpu).unwrap();
        let mut opt2 = Adam::new(
            vec![var2],
            AdamConfig {
                lr: 0.1,
                beta1: 0.9,
                beta2: 0.999,
                epsilon: 1e-8,
            },
        )
        .unwrap();
        opt2.load_state(&state).unwrap();
        assert_eq!(opt2.steps, 1);
        let mut partial = state.clone();
        partial.remove("adam.m.param.0");
        assert!(opt2
            .load_state(&partial)
            .unwrap_err()
            .to_string()
            .contains("adam.m.param.0"));
    }

    /// f32 CPU variables take the in-place loops, f64 ones the tensor ops:
    /// the same updates, step after step, for both optimizers.
    #[test]
    fn in_place_cpu_updates_match_the_tensor_path() {
        let start = [[0.5f64, -1.5, 3.0], [2.0, 0.25, -0.75]];
        for adam in [false, true] {
            let x32 = Var::new(&start.map(|r| r.map(|v| v as f32)), &Device::Cpu).unwrap();
            let x64 = Var::new(&start, &Device::Cpu).unwrap();
            let (mut r32, mut r64, mut a32, mut a64) = (
                RmsProp::new(vec![x32.clone()], RmsPropConfig::default()).unwrap(),
                RmsProp::new(vec![x64.clone()], RmsPropConfig::default()).unwrap(),
                Adam::new(vec![x32.clone()], AdamConfig::default()).unwrap(),
                Adam::new(vec![x64.clone()], AdamConfig::default()).unwrap(),
            );
            for step in 1..=6 {
                // loss = c · Σ x³ with c growing each step: g = 3c · x², a
                // gradient that changes from step to step.
                let loss = |x: &Var| {
                    let c = (step as f64) * 0.5;
                    (x.as_tensor().powf(3.0).unwrap().sum_all().unwrap() * c).unwrap()
                };
                let (g32, g64) = (grads_for(&x32, loss(&x32)), grads_for(&x64, loss(&x64)));
                if adam {
                    a32.step(&g32).unwrap();
                    a64.step(&g64).unwrap();
                } else {
                    r32.step(&g32).unwrap();
                    r64.step(&g64).unwrap();
                }
                let got = x32.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap();
                let want = x64.as_tensor().flatten_all().unwrap().to_vec1::<f64>().unwrap();
                for (g, w) in got.iter().zip(&want) {
                    assert!(
                        (f64::from(*g) - w).abs() < 1e-5,
                        "adam {adam} step {step}: {got:?} vs {want:?}"
                    );
                }
            }
        }
    }

    /// A moment that decays into subnormal numbers is stored as 0 (see
    /// `flushed`): here Adam's first moment after one gradient of 1e-3 and
    /// 850 zero gradients, which unflushed would be about 1e-43.
    #[test]
    fn subnormal_moments_are_flushed_to_zero() {
        let var = Var::new(&[1.0f32], &Device::Cpu).unwrap();
        let mut opt = Adam::new(vec![var.clone()], AdamConfig::default()).unwrap();
        let scaled = |c: f32| {
            let c = Tensor::new(&[c], &Device::Cpu).unwrap();
            grads_for(&var, var.as_tensor().mul(&c).unwrap().sum_all().unwrap())
        };
        opt.step(&scaled(1e-3)).unwrap();
        let zero = scaled(0.0);
        let mut unflushed = 1e-4f32; // (1 − β₁) · 1e-3
        for _ in 0..850 {
            opt.step(&zero).unwrap();
            unflushed *= 0.9;
        }
        assert!(unflushed > 0.0 && unflushed < f32::MIN_POSITIVE, "{unflushed}");
        let state: HashMap<String, Tensor> = opt.state().unwrap().into_iter().collect();
        let m = state["adam.m.param.0"].to_vec1::<f32>().unwrap();
        assert_eq!(m, [0.0]);
        let v = state["adam.v.param.0"].to_vec1::<f32>().unwrap();
        assert!(v[0] > 0.0, "the second moment (β₂ 0.999) is still normal: {v:?}");
    }
}
