//! V-trace off-policy correction (Espeholt et al. 2018, "IMPALA", §4.1).
//!
//! All tensors are time-major, `[T, B]` (`[T, B, A]` for logits). c̄ is fixed
//! at 1 and λ multiplies c, as in the reference implementation. A `None`
//! threshold means no clipping. The outputs `vs` and `pg_advantages` carry
//! no gradient (they are targets); in [`from_logits`] the returned
//! `target_action_log_probs` keeps its graph so the policy loss can use it.
//! Everything runs on the inputs' device.

use candle_core::{DType, Tensor, D};

/// Errors from malformed V-trace inputs.
#[derive(Debug, thiserror::Error)]
pub enum VTraceError {
    /// `expected` uses `usize::MAX` for "any size ≥ 1" (printed as `T`/`B`).
    #[error("v-trace: {name} has shape {got:?}, expected {}", show_shape(expected))]
    Shape {
        name: &'static str,
        got: Vec<usize>,
        expected: Vec<usize>,
    },
    #[error("v-trace: {0}")]
    Candle(#[from] candle_core::Error),
}

fn show_shape(dims: &[usize]) -> String {
    let parts: Vec<String> = dims
        .iter()
        .map(|d| {
            if *d == usize::MAX {
                "N≥1".to_string()
            } else {
                d.to_string()
            }
        })
        .collect();
    format!("[{}]", parts.join(", "))
}

/// What V-trace returns: the targets `vs` and the policy-gradient advantages.
#[derive(Debug, Clone)]
pub struct VTraceReturns {
    /// v_s, the V-trace value targets, `[T, B]`.
    pub vs: Tensor,
    /// ρ̄_pg,t (r_t + γ_t v_{t+1} − V(x_t)), `[T, B]`.
    pub pg_advantages: Tensor,
}

/// [`VTraceReturns`] plus the log-probabilities it was computed from.
#[derive(Debug, Clone)]
pub struct VTraceFromLogitsReturns {
    pub vs: Tensor,
    pub pg_advantages: Tensor,
    /// log π(a_t|x_t) − log μ(a_t|x_t), `[T, B]` (no gradient).
    pub log_rhos: Tensor,
    /// log μ(a_t|x_t) under the behaviour policy, `[T, B]`.
    pub behaviour_action_log_probs: Tensor,
    /// log π(a_t|x_t) under the target policy, `[T, B]`, with its graph.
    pub target_action_log_probs: Tensor,
}

/// The inputs every V-trace entry point takes besides the policies: γ_t, r_t
/// and V(x_t) as `[T, B]`, and V(x_T) as `[B]`.
#[derive(Clone, Copy, Debug)]
pub struct Trajectory<'a> {
    /// γ_t: 0 where the episode ended at step t, γ elsewhere.
    pub discounts: &'a Tensor,
    pub rewards: &'a Tensor,
    pub values: &'a Tensor,
    pub bootstrap_value: &'a Tensor,
}

/// ρ̄ and ρ̄_pg (`None`: no clipping) and λ.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Clipping {
    pub clip_rho_threshold: Option<f32>,
    pub clip_pg_rho_threshold: Option<f32>,
    pub lambda: f32,
}

fn check_shape(name: &'static str, t: &Tensor, expected: &[usize]) -> Result<(), VTraceError> {
    if t.dims() == expected {
        Ok(())
    } else {
        Err(VTraceError::Shape {
            name,
            got: t.dims().to_vec(),
            expected: expected.to_vec(),
        })
    }
}

/// `min(threshold, x)` element-wise, or `x` for `None`.
fn clip_above(x: &Tensor, threshold: Option<f32>) -> candle_core::Result<Tensor> {
    match threshold {
        Some(th) => x.clamp(f32::NEG_INFINITY, th),
        None => Ok(x.clone()),
    }
}

/// V-trace from log importance weights log(π/μ) (IMPALA eq. 1):
///
/// - ρ_t = exp(log_rho_t), ρ̄_t = min(ρ̄, ρ_t), c_t = λ min(1, ρ_t)
/// - δ_t = ρ̄_t (r_t + γ_t V_{t+1} − V_t), with V_T = bootstrap_value
/// - v_t = V_t + δ_t + γ_t c_t (v_{t+1} − V_{t+1})
/// - pg_advantage_t = min(ρ̄_pg, ρ_t) (r_t + γ_t v_{t+1} − V_t), v_T = bootstrap
///
/// `discounts` is γ_t: 0 where the episode ended at step t, γ elsewhere.
/// A time-limit truncation still bootstraps from the true final observation:
/// the learner folds γ·V(x_final) into that step's reward first
/// ([`crate::loss::bootstrap_truncated`]).
pub fn from_importance_weights(
    log_rhos: &Tensor,
    trajectory: Trajectory<'_>,
    clipping: Clipping,
) -> Result<VTraceReturns, VTraceError> {
    let Trajectory {
        discounts,
        rewards,
        values,
        bootstrap_value,
    } = trajectory;
    let Clipping {
        clip_rho_threshold,
        clip_pg_rho_threshold,
        lambda,
    } = clipping;
    let dims = log_rhos.dims().to_vec();
    let (t_len, batch) = match dims[..] {
        [t_len, batch] if t_len >= 1 => (t_len, batch),
        _ => {
            return Err(VTraceError::Shape {
                name: "log_rhos",
                got: dims.clone(),
                expected: vec![usize::MAX, usize::MAX],
            })
        }
    };
    check_shape("discounts", discounts, &[t_len, batch])?;
    check_shape("rewards", rewards, &[t_len, batch])?;
    check_shape("values", values, &[t_len, batch])?;
    check_shape("bootstrap_value", bootstrap_value, &[batch])?;

    // Targets carry no gradient.
    let (log_rhos, discounts, rewards, values, bootstrap_value) = (
        log_rhos.detach(),
        discounts.detach(),
        rewards.detach(),
        values.detach(),
        bootstrap_value.detach(),
    );
    let rhos = log_rhos.exp()?;
    let clipped_rhos = clip_above(&rhos, clip_rho_threshold)?;
    let cs = (rhos.clamp(f32::NEG_INFINITY, 1.0f32)? * f64::from(lambda))?;
    let bootstrap_row = bootstrap_value.unsqueeze(0)?;
    // V_{t+1}, with V_T = bootstrap_value.
    let values_t_plus_1 = Tensor::cat(&[values.narrow(0, 1, t_len - 1)?, bootstrap_row.clone()], 0)?;
    let deltas = (&clipped_rhos * ((&rewards + (&discounts * &values_t_plus_1)?)? - &values)?)?;

    // Backward recursion: (v_t − V_t) = δ_t + γ_t c_t (v_{t+1} − V_{t+1}).
    // A scan over T of [B] rows: done on the host in f64 (two small copies
    // instead of ~4T tiny tensor ops or kernel launches).
    let discounted_cs = (&discounts * &cs)?;
    let deltas_host = deltas.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
    let dcs_host = discounted_cs.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
    let mut vs_minus_v = vec![0.0f64; t_len * batch];
    let mut acc = vec![0.0f64; batch];
    for t in (0..t_len).rev() {
        let row = t * batch..(t + 1) * batch;
        for (((out, a), d), dc) in vs_minus_v[row.clone()]
            .iter_mut()
            .zip(acc.iter_mut())
            .zip(&deltas_host[row.clone()])
            .zip(&dcs_host[row])
        {
            *a = d + dc * *a;
            *out = *a;
        }
    }
    let vs_minus_v = Tensor::from_vec(vs_minus_v, (t_len, batch), values.device())?.to_dtype(values.dtype())?;
    let vs = (vs_minus_v + &values)?;

    // v_{t+1}, with v_T = bootstrap_value.
    let vs_t_plus_1 = Tensor::cat(&[vs.narrow(0, 1, t_len - 1)?, bootstrap_row], 0)?;
    let clipped_pg_rhos = clip_above(&rhos, clip_pg_rho_threshold)?;
    let pg_advantages = (&clipped_pg_rhos * ((&rewards + (&discounts * &vs_t_plus_1)?)? - &values)?)?;
    Ok(VTraceReturns {
        vs: vs.detach(),
        pg_advantages: pg_advantages.detach(),
    })
}

/// log-probabilities of `actions` (`[T, B]`, integer) under `logits`
/// (`[T, B, A]`): log_softmax then gather.
pub fn action_log_probs(logits: &Tensor, actions: &Tensor) -> candle_core::Result<Tensor> {
    let log_probs = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    let idx = actions.to_dtype(DType::U32)?.unsqueeze(D::Minus1)?;
    log_probs.gather(&idx, D::Minus1)?.squeeze(D::Minus1)
}

/// V-trace for discrete actions from behaviour and target policy logits
/// (`[T, B, A]`) and the actions taken (`[T, B]`).
pub fn from_logits(
    behaviour_policy_logits: &Tensor,
    target_policy_logits: &Tensor,
    actions: &Tensor,
    trajectory: Trajectory<'_>,
    clipping: Clipping,
) -> Result<VTraceFromLogitsReturns, VTraceError> {
    let dims = target_policy_logits.dims().to_vec();
    let [t_len, batch, _] = dims[..] else {
        return Err(VTraceError::Shape {
            name: "target_policy_logits",
            got: dims.clone(),
            expected: vec![usize::MAX, usize::MAX, usize::MAX],
        });
    };
    check_shape("behaviour_policy_logits", behaviour_policy_logits, &dims)?;
    check_shape("actions", actions, &[t_len, batch])?;
    let target_action_log_probs = action_log_probs(target_policy_logits, actions)?;
    let behaviour_action_log_probs = action_log_probs(&behaviour_policy_logits.detach(), actions)?;
    from_log_probs(
        &behaviour_action_log_probs,
        target_action_log_probs,
        trajectory,
        clipping,
    )
}

/// V-trace from the log-probabilities of the actions taken under the
/// behaviour and target policies (`[T, B]`): for continuous actions, where
/// the policy heads give log-densities directly.
pub fn from_log_probs(
    behaviour_action_log_probs: &Tensor,
    target_action_log_probs: Tensor,
    trajectory: Trajectory<'_>,
    clipping: Clipping,
) -> Result<VTraceFromLogitsReturns, VTraceError> {
    check_shape(
        "behaviour_action_log_probs",
        behaviour_action_log_probs,
        target_action_log_probs.dims(),
    )?;
    let log_rhos = (target_action_log_probs.detach() - behaviour_action_log_probs.detach())?;
    let r = from_importance_weights(&log_rhos, trajectory, clipping)?;
    Ok(VTraceFromLogitsReturns {
        vs: r.vs,
        pg_advantages: r.pg_advantages,
        log_rhos,
        behaviour_action_log_probs: behaviour_action_log_probs.detach(),
        target_action_log_probs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trajectory<'a>(
        discounts: &'a Tensor,
        rewards: &'a Tensor,
        values: &'a Tensor,
        bootstrap_value: &'a Tensor,
    ) -> Trajectory<'a> {
        Trajectory {
            discounts,
            rewards,
            values,
            bootstrap_value,
        }
    }

    fn clipping(clip_rho_threshold: Option<f32>, clip_pg_rho_threshold: Option<f32>, lambda: f32) -> Clipping {
        Clipping {
            clip_rho_threshold,
            clip_pg_rho_threshold,
            lambda,
        }
    }
    use candle_core::{Device, Var};

    /// V-trace written straight from the definitions, in f64, one sequence
    /// at a time: v_t − V_t summed as Σ_{s≥t} γ^{(t..s)} (Π c) δ_s.
    #[allow(clippy::too_many_arguments, clippy::needless_range_loop)]
    fn naive(
        log_rhos: &[f64],
        discounts: &[f64],
        rewards: &[f64],
        values: &[f64],
        bootstrap: f64,
        rho_bar: Option<f64>,
        pg_rho_bar: Option<f64>,
        lambda: f64,
    ) -> (Vec<f64>, Vec<f64>) {
        let t_len = log_rhos.len();
        let rho = |t: usize| log_rhos[t].exp();
        let v = |t: usize| if t == t_len { bootstrap } else { values[t] };
        let delta =
            |t: usize| rho_bar.map_or(rho(t), |b| rho(t).min(b)) * (rewards[t] + discounts[t] * v(t + 1) - v(t));
        let c = |t: usize| lambda * rho(t).min(1.0);
        let mut vs = vec![0.0; t_len];
        for (s_start, out) in vs.iter_mut().enumerate() {
            let mut sum = 0.0;
            let mut weight = 1.0;
            for s in s_start..t_len {
                sum += weight * delta(s);
                weight *= discounts[s] * c(s);
            }
            *out = values[s_start] + sum;
        }
        let vs_next = |t: usize| if t + 1 == t_len { bootstrap } else { vs[t + 1] };
        let pg = (0..t_len)
            .map(|t| {
                pg_rho_bar.map_or(rho(t), |b| rho(t).min(b)) * (rewards[t] + discounts[t] * vs_next(t) - values[t])
            })
            .collect();
        (vs, pg)
    }

    #[test]
    fn matches_the_definition_for_random_shapes_and_thresholds() {
        let mut rng = cml_test_rng(42);
        for (t_len, batch) in [(1, 1), (2, 5), (7, 3), (33, 2)] {
            for (rho_bar, pg_rho_bar, lambda) in [
                (Some(1.0), Some(1.0), 1.0),
                (None, None, 0.95),
                (Some(0.3), None, 0.5),
                (Some(2.0), Some(0.7), 1.0),
            ] {
                let n = t_len * batch;
                let gen = |rng: &mut u64, lo: f32, hi: f32| -> Vec<f32> {
                    (0..n).map(|_| lo + (hi - lo) * next_unit(rng)).collect()
                };
                let log_rhos = gen(&mut rng, -2.0, 2.0);
                let discounts: Vec<f32> = gen(&mut rng, 0.0, 1.0)
                    .iter()
                    .map(|u| if *u < 0.2 { 0.0 } else { 0.99 })
                    .collect();
                let rewards = gen(&mut rng, -1.0, 1.0);
                let values = gen(&mut rng, -3.0, 3.0);
                let boot: Vec<f32> = (0..batch).map(|_| next_unit(&mut rng) * 2.0).collect();
                let dev = Device::Cpu;
                let tt = |v: &Vec<f32>| Tensor::from_vec(v.clone(), (t_len, batch), &dev).unwrap();
                let (d, r, v) = (tt(&discounts), tt(&rewards), tt(&values));
                let bootstrap = Tensor::from_vec(boot.clone(), batch, &dev).unwrap();
                let out = from_importance_weights(
                    &tt(&log_rhos),
                    trajectory(&d, &r, &v, &bootstrap),
                    clipping(rho_bar, pg_rho_bar, lambda),
                )
                .unwrap();
                let vs: Vec<Vec<f32>> = out.vs.to_vec2().unwrap();
                let pg: Vec<Vec<f32>> = out.pg_advantages.to_vec2().unwrap();
                for b in 0..batch {
                    let col = |v: &Vec<f32>| (0..t_len).map(|t| f64::from(v[t * batch + b])).collect::<Vec<_>>();
                    let (want_vs, want_pg) = naive(
                        &col(&log_rhos),
                        &col(&discounts),
                        &col(&rewards),
                        &col(&values),
                        f64::from(boot[b]),
                        rho_bar.map(f64::from),
                        pg_rho_bar.map(f64::from),
                        f64::from(lambda),
                    );
                    for t in 0..t_len {
                        let tol = |w: f64| 1e-4 * w.abs().max(1.0);
                        assert!(
                            (f64::from(vs[t][b]) - want_vs[t]).abs() <= tol(want_vs[t]),
                            "vs T={t_len} t={t}"
                        );
                        assert!(
                            (f64::from(pg[t][b]) - want_pg[t]).abs() <= tol(want_pg[t]),
                            "pg T={t_len} t={t}"
                        );
                    }
                }
            }
        }
    }

    fn cml_test_rng(seed: u64) -> u64 {
        seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1
    }

    fn next_unit(state: &mut u64) -> f32 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        (*state >> 40) as f32 / (1u64 << 24) as f32
    }

    #[test]
    fn outputs_carry_no_gradient_but_target_log_probs_do() {
        let dev = Device::Cpu;
        let (t_len, batch, a) = (3, 2, 4);
        let target = Var::from_tensor(
            &Tensor::arange(0f32, 24.0, &dev)
                .unwrap()
                .reshape((t_len, batch, a))
                .unwrap()
                .affine(0.1, 0.0)
                .unwrap(),
        )
        .unwrap();
        let behaviour = Tensor::zeros((t_len, batch, a), DType::F32, &dev).unwrap();
        let values = Var::from_tensor(&Tensor::ones((t_len, batch), DType::F32, &dev).unwrap()).unwrap();
        let actions = Tensor::from_vec(vec![0u32, 1, 2, 3, 0, 1], (t_len, batch), &dev).unwrap();
        let zeros = Tensor::zeros((t_len, batch), DType::F32, &dev).unwrap();
        let discounts = (zeros.ones_like().unwrap() * 0.9).unwrap();
        let boot = Tensor::zeros(batch, DType::F32, &dev).unwrap();
        let out = from_logits(
            &behaviour,
            &target,
            &actions,
            trajectory(&discounts, &zeros, values.as_tensor(), &boot),
            clipping(Some(1.0), Some(1.0), 1.0),
        )
        .unwrap();
        let grads = (out.vs.sum_all().unwrap() + out.pg_advantages.sum_all().unwrap())
            .unwrap()
            .backward()
            .unwrap();
        assert!(grads.get(&values).is_none() && grads.get(&target).is_none());
        let grads = out.target_action_log_probs.sum_all().unwrap().backward().unwrap();
        assert!(grads.get(&target).is_some());
    }

    #[test]
    fn bad_shapes_are_errors() {
        let dev = Device::Cpu;
        let m = Tensor::zeros((4, 2), DType::F32, &dev).unwrap();
        let boot = Tensor::zeros(2, DType::F32, &dev).unwrap();
        let bad = Tensor::zeros((4, 3), DType::F32, &dev).unwrap();
        let no_clipping = clipping(None, None, 1.0);
        let e = from_importance_weights(&m, trajectory(&bad, &m, &m, &boot), no_clipping).unwrap_err();
        assert_eq!(e.to_string(), "v-trace: discounts has shape [4, 3], expected [4, 2]");
        let e = from_importance_weights(&m, trajectory(&m, &m, &m, &m), no_clipping).unwrap_err();
        assert!(e.to_string().contains("bootstrap_value"), "{e}");
        let empty = Tensor::zeros((0, 2), DType::F32, &dev).unwrap();
        assert!(from_importance_weights(&empty, trajectory(&empty, &empty, &empty, &boot), no_clipping).is_err());
    }
}
