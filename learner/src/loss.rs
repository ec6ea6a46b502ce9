//! The IMPALA actor-critic loss on V-trace targets.
//!
//! Reductions: every term is a **sum** over time and batch, as in the IMPALA
//! reference implementation, so its published hyperparameters (learning rate,
//! `baseline_cost` 0.5, `entropy_cost` 0.01, gradient clipping at 40) carry
//! over unchanged. The learning rate therefore scales with T·B; the metrics
//! report per-step means for readability.

use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};

use crate::vtrace;

/// How rewards are clipped before V-trace.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RewardClipping {
    /// Rewards as the env gives them.
    #[default]
    None,
    /// clip(r, −1, 1).
    AbsOne,
    /// IMPALA's soft asymmetric clipping: 5·tanh(r/5), scaled by 0.3 for
    /// negative rewards.
    SoftAsymmetric,
}

impl RewardClipping {
    pub fn apply(self, rewards: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            RewardClipping::None => Ok(rewards.clone()),
            RewardClipping::AbsOne => rewards.clamp(-1.0f32, 1.0f32),
            RewardClipping::SoftAsymmetric => {
                let squeezed = ((rewards / 5.0)?.tanh()? * 5.0)?;
                let negative = rewards.lt(0.0f32)?;
                negative.where_cond(&(&squeezed * 0.3)?, &squeezed)
            }
        }
    }
}

/// The loss's coefficients and V-trace settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LossConfig {
    #[serde(default = "default_discount")]
    pub discount: f32,
    #[serde(default = "default_baseline_cost")]
    pub baseline_cost: f32,
    #[serde(default = "default_entropy_cost")]
    pub entropy_cost: f32,
    /// ρ̄; `None` for no clipping. A config file cannot say `None` (an
    /// omitted key means the default, 1.0): a large value such as 1e9 clips
    /// nothing in practice.
    #[serde(default = "default_clip")]
    pub clip_rho_threshold: Option<f32>,
    /// ρ̄ for the policy-gradient advantages; `None` for no clipping (see
    /// above for config files).
    #[serde(default = "default_clip")]
    pub clip_pg_rho_threshold: Option<f32>,
    #[serde(default = "default_lambda")]
    pub lambda: f32,
    #[serde(default)]
    pub reward_clipping: RewardClipping,
    /// Rewards are multiplied by this before clipping (e.g. 0.1 for
    /// Pendulum's rewards of up to -16 per step).
    #[serde(default = "default_reward_scale")]
    pub reward_scale: f32,
    /// ε of PPO's clipped surrogate in place of IMPALA's policy gradient
    /// (APPO, as Sample Factory and RLlib run it); `None` (the default) is
    /// IMPALA's loss. The ratio is π/μ against the behaviour policy that
    /// made the unroll, so an update stops pushing a step's action once π
    /// has moved more than ε from μ there.
    #[serde(default)]
    pub ppo_clip: Option<f32>,
}

fn default_reward_scale() -> f32 {
    1.0
}

fn default_discount() -> f32 {
    0.99
}
fn default_baseline_cost() -> f32 {
    0.5
}
fn default_entropy_cost() -> f32 {
    0.01
}
fn default_clip() -> Option<f32> {
    Some(1.0)
}
fn default_lambda() -> f32 {
    1.0
}

impl Default for LossConfig {
    fn default() -> Self {
        LossConfig {
            discount: default_discount(),
            baseline_cost: default_baseline_cost(),
            entropy_cost: default_entropy_cost(),
            clip_rho_threshold: default_clip(),
            clip_pg_rho_threshold: default_clip(),
            lambda: default_lambda(),
            reward_clipping: RewardClipping::None,
            reward_scale: default_reward_scale(),
            ppo_clip: None,
        }
    }
}

/// Everything the loss needs, time-major `[T, B]`.
pub struct LossInputs<'a> {
    /// log π(a_t | x_t) under the learner's policy, with its graph.
    pub target_action_log_probs: Tensor,
    /// log μ(a_t | x_t) under the behaviour policy.
    pub behaviour_action_log_probs: &'a Tensor,
    /// H(π(· | x_t)), with its graph.
    pub entropy: Tensor,
    /// V(x_t), with its graph.
    pub values: Tensor,
    /// V(x_T), the value after the last step (no gradient needed).
    pub bootstrap_value: Tensor,
    /// Rewards, already adjusted for truncation (see [`bootstrap_truncated`]).
    pub rewards: Tensor,
    /// γ_t: 0 where the episode ended at t, `discount` elsewhere.
    pub discounts: Tensor,
    /// w_b: one importance-sampling weight per unroll, `[B]` (prioritized
    /// replay); `None` weighs every unroll 1.
    pub importance_weights: Option<&'a Tensor>,
}

/// What an IMPALA loss reports, of one part of a batch or of all of it.
#[derive(Clone, Debug, PartialEq)]
pub struct LossFigures {
    /// Σ −pg_advantage · log π(a).
    pub policy_loss: f32,
    /// ½ Σ (v_s − V)² (before `baseline_cost`).
    pub baseline_loss: f32,
    /// Mean entropy per step.
    pub entropy: f32,
    /// Mean ρ_t.
    pub mean_rho: f32,
    /// Fraction of ρ_t above ρ̄.
    pub rho_clipped_fraction: f32,
    /// 1 − Var(v_s − V) / Var(v_s).
    pub explained_variance: f32,
    /// One replay priority per unroll: mean_t |v_s − V(x_t)|.
    pub priorities: Vec<f32>,
}

/// The loss and what it was made of.
pub struct LossOutput {
    pub total: Tensor,
    pub figures: LossFigures,
    /// The per-step values the figures came from.
    pub steps: StepValues,
}

/// log ρ_t, v_s and V(x_t) of every step of a batch, time-major `[T, B]`
/// flattened, on the host.
pub struct StepValues {
    pub log_rhos: Vec<f32>,
    pub vs: Vec<f32>,
    pub values: Vec<f32>,
}

/// The figures of one batch whose unrolls were split into parts along B
/// (a data-parallel step): the sums add, the means and the explained
/// variance pool every step of every part, the priorities follow the
/// parts' order.
#[derive(Clone, Debug, PartialEq)]
pub struct LossSummary {
    /// The loss minimized, summed over the parts.
    pub total: f32,
    pub figures: LossFigures,
}

impl LossSummary {
    pub fn of(parts: &[LossOutput], config: &LossConfig) -> candle_core::Result<LossSummary> {
        let mut total = 0.0f32;
        let (mut policy_loss, mut baseline_loss, mut entropy_sum, mut steps) = (0.0f32, 0.0f32, 0.0f64, 0usize);
        let mut priorities = Vec::new();
        for part in parts {
            total += scalar(&part.total)?;
            policy_loss += part.figures.policy_loss;
            baseline_loss += part.figures.baseline_loss;
            entropy_sum += f64::from(part.figures.entropy) * part.steps.vs.len() as f64;
            steps += part.steps.vs.len();
            priorities.extend_from_slice(&part.figures.priorities);
        }
        let pooled = pooled_metrics(parts.iter().map(|p| &p.steps), config.clip_rho_threshold);
        Ok(LossSummary {
            total,
            figures: LossFigures {
                policy_loss,
                baseline_loss,
                entropy: (entropy_sum / steps.max(1) as f64) as f32,
                mean_rho: pooled.mean_rho,
                rho_clipped_fraction: pooled.rho_clipped_fraction,
                explained_variance: pooled.explained_variance,
                priorities,
            },
        })
    }
}

struct PooledMetrics {
    mean_rho: f32,
    rho_clipped_fraction: f32,
    explained_variance: f32,
}

/// Mean ρ, the fraction of ρ above ρ̄ and 1 − Var(v_s − V) / Var(v_s)
/// over every step of `parts`.
fn pooled_metrics<'a>(parts: impl Iterator<Item = &'a StepValues> + Clone, clip_rho: Option<f32>) -> PooledMetrics {
    let log_rhos = parts.clone().flat_map(|p| p.log_rhos.iter());
    let n = log_rhos.clone().count().max(1) as f64;
    let rhos = log_rhos.map(|l| f64::from(*l).exp());
    let mean_rho = (rhos.clone().sum::<f64>() / n) as f32;
    let rho_clipped_fraction = match clip_rho {
        Some(th) => (rhos.filter(|r| *r > f64::from(th)).count() as f64 / n) as f32,
        None => 0.0,
    };
    let pairs = parts.flat_map(|p| p.vs.iter().zip(&p.values));
    let variance = |xs: &mut dyn Iterator<Item = f64>| -> f64 {
        let xs: Vec<f64> = xs.collect();
        let mean = xs.iter().sum::<f64>() / xs.len().max(1) as f64;
        xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len().max(1) as f64
    };
    let var_vs = variance(&mut pairs.clone().map(|(a, _)| f64::from(*a)));
    let var_resid = variance(&mut pairs.map(|(a, b)| f64::from(a - b)));
    let explained_variance = if var_vs > 0.0 {
        (1.0 - var_resid / var_vs) as f32
    } else {
        f32::NAN
    };
    PooledMetrics {
        mean_rho,
        rho_clipped_fraction,
        explained_variance,
    }
}

/// The partial-episode bootstrap for time-limit truncations: at a step t
/// that was truncated (not terminated), the next observation in the unroll
/// belongs to the next episode, so the step's target becomes
/// r_t + γ V(x'_{t+1}), with x' the true final observation, and the discount
/// after it becomes 0. Terminated steps just get discount 0.
///
/// Returns `(rewards, discounts)`. `final_values` is V of the final
/// observations (any value where not truncated); `done` and `truncated` are
/// 0/1 masks.
pub fn bootstrap_truncated(
    rewards: &Tensor,
    terminated: &Tensor,
    truncated: &Tensor,
    final_values: Option<&Tensor>,
    discount: f32,
) -> candle_core::Result<(Tensor, Tensor)> {
    let ended = terminated.maximum(truncated)?;
    let discounts = ((ended.ones_like()? - &ended)? * f64::from(discount))?;
    let rewards = match final_values {
        Some(v) => {
            // Only where truncated and not terminated.
            let only_truncated = (truncated * (terminated.ones_like()? - terminated)?)?;
            (rewards + ((only_truncated * v.detach())? * f64::from(discount))?)?
        }
        None => rewards.clone(),
    };
    Ok((rewards, discounts))
}

/// A_t = r_t + γ_t v_{s,t+1} − V(x_t), with v_{s,T} = V(x_T); detached
/// (`[T, B]`).
fn vtrace_advantages(
    vs: &Tensor,
    rewards: &Tensor,
    discounts: &Tensor,
    values: &Tensor,
    bootstrap_value: &Tensor,
) -> candle_core::Result<Tensor> {
    let t_len = vs.dim(0)?;
    let vs_t_plus_1 = Tensor::cat(&[vs.narrow(0, 1, t_len - 1)?, bootstrap_value.unsqueeze(0)?], 0)?;
    Ok(((rewards + (discounts * vs_t_plus_1)?)? - values.detach())?.detach())
}

fn scalar(t: &Tensor) -> candle_core::Result<f32> {
    t.to_dtype(DType::F32)?.to_scalar::<f32>()
}

/// IMPALA's loss: policy gradient + baseline_cost · baseline − entropy_cost ·
/// entropy, all sums over `[T, B]` (see the module doc).
///
/// With importance weights w_b (one per unroll b, from prioritized replay),
/// every term of unroll b is scaled by w_b, as PER scales each sample's loss:
/// L = Σ_b w_b [ −Σ_t A^pg_{t,b} log π(a_{t,b}) + baseline_cost · ½ Σ_t (v_{s,t,b} − V(x_{t,b}))²
///              − entropy_cost · Σ_t H(π(·|x_{t,b})) ].
/// V-trace targets and advantages themselves are not weighted. The reported
/// `policy_loss`, `baseline_loss` and `entropy` are the weighted terms.
pub fn impala_loss(inputs: LossInputs<'_>, config: &LossConfig) -> Result<LossOutput, vtrace::VTraceError> {
    let LossInputs {
        target_action_log_probs,
        behaviour_action_log_probs,
        entropy,
        values,
        bootstrap_value,
        rewards,
        discounts,
        importance_weights,
    } = inputs;
    let vt = vtrace::from_log_probs(
        behaviour_action_log_probs,
        target_action_log_probs.clone(),
        vtrace::Trajectory {
            discounts: &discounts,
            rewards: &rewards,
            values: &values,
            bootstrap_value: &bootstrap_value,
        },
        vtrace::Clipping {
            clip_rho_threshold: config.clip_rho_threshold,
            clip_pg_rho_threshold: config.clip_pg_rho_threshold,
            lambda: config.lambda,
        },
    )?;
    // w_b broadcast over T: [1, B] against [T, B].
    let weigh = |x: Tensor| -> candle_core::Result<Tensor> {
        match importance_weights {
            Some(w) => x.broadcast_mul(&w.to_dtype(x.dtype())?.unsqueeze(0)?),
            None => Ok(x),
        }
    };
    let policy_loss = match config.ppo_clip {
        // Policy gradient: −Σ w_b A_t^{pg} log π(a_t | x_t), advantages detached.
        None => weigh((&vt.pg_advantages * &target_action_log_probs)?)?
            .sum_all()?
            .neg()?,
        // PPO's clipped surrogate (Schulman et al. 2017, eq. 7) on V-trace's
        // advantage: −Σ w_b min(q_t A_t, clip(q_t, 1 − ε, 1 + ε) A_t), with the
        // ratio q_t = π(a_t|x_t)/μ(a_t|x_t) and A_t = r_t + γ_t v_{s,t+1} − V(x_t)
        // (no ρ̄ factor: the ratio is in the surrogate itself).
        Some(epsilon) => {
            let advantages = vtrace_advantages(&vt.vs, &rewards, &discounts, &values, &bootstrap_value)?;
            let ratio = (&target_action_log_probs - behaviour_action_log_probs.detach())?.exp()?;
            let eps = f64::from(epsilon);
            let unclipped = (&ratio * &advantages)?;
            let clipped = (ratio.clamp(1.0 - eps, 1.0 + eps)? * &advantages)?;
            weigh(unclipped.minimum(&clipped)?)?.sum_all()?.neg()?
        }
    };
    // Baseline: ½ Σ w_b (v_s − V(x_t))².
    let advantages = (&vt.vs - &values)?;
    let baseline_loss = (weigh(advantages.sqr()?)?.sum_all()? * 0.5)?;
    // Entropy bonus: −Σ w_b H(π(· | x_t)).
    let entropy_loss = weigh(entropy)?.sum_all()?.neg()?;
    let total = ((&policy_loss + (&baseline_loss * f64::from(config.baseline_cost))?)?
        + (&entropy_loss * f64::from(config.entropy_cost))?)?;

    // Metrics on the host: [T, B] is small, and a few loops beat a dozen
    // tiny tensor ops and read-backs.
    let host =
        |t: &Tensor| -> candle_core::Result<Vec<f32>> { t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>() };
    let steps = StepValues {
        log_rhos: host(&vt.log_rhos)?,
        vs: host(&vt.vs)?,
        values: host(&values.detach())?,
    };
    let n = steps.vs.len().max(1) as f64;
    let batch = values.dim(1)?.max(1);
    let mut priorities = vec![0.0f32; batch];
    for (i, (a, b)) in steps.vs.iter().zip(&steps.values).enumerate() {
        priorities[i % batch] += (a - b).abs();
    }
    let per_unroll = (steps.vs.len() / batch).max(1) as f32;
    priorities.iter_mut().for_each(|p| *p /= per_unroll);
    let pooled = pooled_metrics(std::iter::once(&steps), config.clip_rho_threshold);
    Ok(LossOutput {
        figures: LossFigures {
            policy_loss: scalar(&policy_loss)?,
            baseline_loss: scalar(&baseline_loss)?,
            entropy: (-f64::from(scalar(&entropy_loss)?) / n) as f32,
            mean_rho: pooled.mean_rho,
            rho_clipped_fraction: pooled.rho_clipped_fraction,
            explained_variance: pooled.explained_variance,
            priorities,
        },
        total,
        steps,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn t2(rows: &[&[f32]]) -> Tensor {
        let flat: Vec<f32> = rows.iter().flat_map(|r| r.iter().copied()).collect();
        Tensor::from_vec(flat, (rows.len(), rows[0].len()), &Device::Cpu).unwrap()
    }

    #[test]
    fn reward_clipping_modes() {
        let r = Tensor::new(&[-10.0f32, -0.5, 0.0, 0.5, 10.0], &Device::Cpu).unwrap();
        assert_eq!(
            RewardClipping::None.apply(&r).unwrap().to_vec1::<f32>().unwrap(),
            [-10.0, -0.5, 0.0, 0.5, 10.0]
        );
        assert_eq!(
            RewardClipping::AbsOne.apply(&r).unwrap().to_vec1::<f32>().unwrap(),
            [-1.0, -0.5, 0.0, 0.5, 1.0]
        );
        let soft = RewardClipping::SoftAsymmetric
            .apply(&r)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let want = |x: f64| {
            if x < 0.0 {
                0.3 * 5.0 * (x / 5.0).tanh()
            } else {
                5.0 * (x / 5.0).tanh()
            }
        };
        for (g, x) in soft.iter().zip([-10.0, -0.5, 0.0, 0.5, 10.0]) {
            assert!((f64::from(*g) - want(x)).abs() < 1e-5, "{g} vs {}", want(x));
        }
    }

    #[test]
    fn truncation_bootstraps_from_the_final_observation() {
        // B = 1, T = 3: step 0 ordinary, step 1 truncated, step 2 terminated.
        let rewards = t2(&[&[1.0], &[1.0], &[1.0]]);
        let terminated = t2(&[&[0.0], &[0.0], &[1.0]]);
        let truncated = t2(&[&[0.0], &[1.0], &[0.0]]);
        let final_values = t2(&[&[100.0], &[10.0], &[100.0]]);
        let (r, d) = bootstrap_truncated(&rewards, &terminated, &truncated, Some(&final_values), 0.9).unwrap();
        assert_eq!(r.to_vec2::<f32>().unwrap(), [[1.0], [1.0 + 0.9 * 10.0], [1.0]]);
        assert_eq!(d.to_vec2::<f32>().unwrap(), [[0.9], [0.0], [0.0]]);
    }

    #[test]
    fn on_policy_loss_terms_match_hand_computation() {
        // On-policy (ρ = 1), λ = 1, T = 2, B = 1, no clipping effects.
        let logp = t2(&[&[-0.5], &[-1.0]]);
        let values = t2(&[&[1.0], &[2.0]]);
        let boot = Tensor::new(&[3.0f32], &Device::Cpu).unwrap();
        let rewards = t2(&[&[1.0], &[0.5]]);
        let discounts = t2(&[&[0.9], &[0.9]]);
        let entropy = t2(&[&[0.6], &[0.4]]);
        let cfg = LossConfig {
            baseline_cost: 0.5,
            entropy_cost: 0.1,
            ..Default::default()
        };
        let out = impala_loss(
            LossInputs {
                target_action_log_probs: logp.clone(),
                behaviour_action_log_probs: &logp,
                entropy,
                values,
                bootstrap_value: boot,
                rewards,
                discounts,
                importance_weights: None,
            },
            &cfg,
        )
        .unwrap();
        // On-policy V-trace = n-step returns: v_1 = 0.5 + 0.9·3 = 3.2, v_0 = 1 + 0.9·3.2 = 3.88.
        // pg_adv_0 = 1 + 0.9·3.2 − 1 = 2.88; pg_adv_1 = 0.5 + 0.9·3 − 2 = 1.2.
        let (logp0, logp1) = (-0.5, -1.0);
        let policy = -(2.88 * logp0 + 1.2 * logp1);
        let baseline = 0.5 * ((3.88f64 - 1.0).powi(2) + (3.2f64 - 2.0).powi(2));
        let total = policy + 0.5 * baseline - 0.1 * 1.0;
        assert!((f64::from(out.figures.policy_loss) - policy).abs() < 1e-5);
        assert!((f64::from(out.figures.baseline_loss) - baseline).abs() < 1e-4);
        assert!((f64::from(out.total.to_scalar::<f32>().unwrap()) - total).abs() < 1e-4);
        assert!((out.figures.entropy - 0.5).abs() < 1e-6);
        assert!((out.figures.mean_rho - 1.0).abs() < 1e-6 && out.figures.rho_clipped_fraction == 0.0);
        assert_eq!(out.figures.priorities.len(), 1);
        assert!((f64::from(out.figures.priorities[0]) - (2.88 + 1.2) / 2.0).abs() < 1e-5);
    }

    #[test]
    fn importance_weights_scale_each_unrolls_gradient() {
        use candle_core::Var;
        // T = 2, B = 3, off-policy so every V-trace term is active.
        let logp = Var::from_tensor(&t2(&[&[-0.5, -1.2, -0.1], &[-1.0, -0.3, -2.0]])).unwrap();
        let behaviour = t2(&[&[-0.7, -1.0, -0.4], &[-0.9, -0.6, -1.5]]);
        let values = Var::from_tensor(&t2(&[&[1.0, -0.5, 0.2], &[2.0, 0.3, -1.0]])).unwrap();
        let entropy = Var::from_tensor(&t2(&[&[0.6, 0.5, 0.9], &[0.4, 0.7, 0.2]])).unwrap();
        let boot = Tensor::new(&[3.0f32, 1.0, -2.0], &Device::Cpu).unwrap();
        let rewards = t2(&[&[1.0, 0.0, -1.0], &[0.5, 2.0, 0.0]]);
        let discounts = t2(&[&[0.9, 0.0, 0.9], &[0.9, 0.9, 0.9]]);
        let cfg = LossConfig {
            entropy_cost: 0.1,
            ..Default::default()
        };
        let grads = |w: Option<&Tensor>| {
            let out = impala_loss(
                LossInputs {
                    target_action_log_probs: logp.as_tensor().clone(),
                    behaviour_action_log_probs: &behaviour,
                    entropy: entropy.as_tensor().clone(),
                    values: values.as_tensor().clone(),
                    bootstrap_value: boot.clone(),
                    rewards: rewards.clone(),
                    discounts: discounts.clone(),
                    importance_weights: w,
                },
                &cfg,
            )
            .unwrap();
            let g = out.total.backward().unwrap();
            [&logp, &values, &entropy].map(|v| g.get(v).unwrap().to_vec2::<f32>().unwrap())
        };
        let w = [0.25f32, 2.0, 0.0];
        let weighted = grads(Some(&Tensor::new(&w, &Device::Cpu).unwrap()));
        let plain = grads(None);
        let ones = grads(Some(&Tensor::new(&[1.0f32; 3], &Device::Cpu).unwrap()));
        for (k, (gw, gp)) in weighted.iter().zip(&plain).enumerate() {
            for t in 0..2 {
                for b in 0..3 {
                    let want = w[b] * gp[t][b];
                    assert!(
                        (gw[t][b] - want).abs() < 1e-5,
                        "input {k} [{t}, {b}]: {} vs {want}",
                        gw[t][b]
                    );
                    assert_eq!(ones[k][t][b], gp[t][b], "weights of 1 change nothing");
                }
            }
            assert!(gp.iter().flatten().any(|g| g.abs() > 1e-3), "input {k} has a gradient");
        }
    }

    #[test]
    fn ppo_clip_stops_the_gradient_where_the_ratio_left_its_range() {
        use candle_core::Var;
        // T = 2, B = 2, λ = 1, ε = 0.2. Ratios q = exp(log π − log μ):
        //   [0, 0] 1.1 (inside),  [0, 1] 1.5 (above),
        //   [1, 0] 0.5 (below),   [1, 1] 1.0 (inside).
        let ratios = [[1.1f64, 1.5], [0.5, 1.0]];
        let behaviour = t2(&[&[-0.7, -1.0], &[-0.4, -0.9]]);
        let logp_rows: Vec<Vec<f32>> = (0..2)
            .map(|t| {
                let mu = behaviour.get(t).unwrap().to_vec1::<f32>().unwrap();
                (0..2).map(|b| mu[b] + ratios[t][b].ln() as f32).collect()
            })
            .collect();
        let logp = Var::from_tensor(&t2(&[&logp_rows[0], &logp_rows[1]])).unwrap();
        let values = t2(&[&[1.0, -0.5], &[2.0, 0.3]]);
        let boot = Tensor::new(&[3.0f32, 1.0], &Device::Cpu).unwrap();
        let rewards = t2(&[&[1.0, 2.0], &[-4.0, 0.0]]);
        let discounts = t2(&[&[0.9, 0.9], &[0.9, 0.0]]);
        let cfg = LossConfig {
            ppo_clip: Some(0.2),
            entropy_cost: 0.0,
            baseline_cost: 0.0,
            ..Default::default()
        };
        let out = impala_loss(
            LossInputs {
                target_action_log_probs: logp.as_tensor().clone(),
                behaviour_action_log_probs: &behaviour,
                entropy: t2(&[&[0.0, 0.0], &[0.0, 0.0]]),
                values: values.clone(),
                bootstrap_value: boot,
                rewards,
                discounts,
                importance_weights: Some(&Tensor::new(&[1.0f32, 0.5], &Device::Cpu).unwrap()),
            },
            &cfg,
        )
        .unwrap();
        // V-trace with ρ̄ = c̄ = 1: c_t = min(1, r), ρ_t = min(1, r).
        //   b = 0: δ_1 = 0.5·(−4 + 0.9·3 − 2) = −1.65, v_1 = 0.35;
        //          δ_0 = 1·(1 + 0.9·2 − 1) = 1.8, v_0 = 1 + 1.8 + 0.9·1·(0.35 − 2) = 1.315.
        //   b = 1: δ_1 = 1·(0 + 0 − 0.3) = −0.3, v_1 = 0;
        //          δ_0 = 1·(2 + 0.9·0.3 + 0.5) = 2.77, v_0 = −0.5 + 2.77 + 0.9·1·(0 − 0.3) = 2.0.
        // A_t = r_t + γ_t v_{t+1} − V(x_t):
        let adv = [
            [1.0 + 0.9 * 0.35 - 1.0, 2.0 + 0.9 * 0.0 + 0.5],
            [-4.0 + 0.9 * 3.0 - 2.0, 0.0 - 0.3],
        ];
        let w = [1.0, 0.5];
        let mut policy = 0.0;
        let mut grad = [[0.0f64; 2]; 2];
        for t in 0..2 {
            for b in 0..2 {
                let (q, a) = (ratios[t][b], adv[t][b]);
                let (unclipped, clipped) = (q * a, q.clamp(0.8, 1.2) * a);
                policy -= w[b] * unclipped.min(clipped);
                // d/d log π of −w·q·A is −w·q·A where the unclipped term is the minimum, else 0.
                if unclipped <= clipped {
                    grad[t][b] = -w[b] * q * a;
                }
            }
        }
        // [0, 1] (A > 0, q above 1 + ε) and [1, 0] (A < 0, q below 1 − ε) are clipped.
        assert_eq!(grad[0][1], 0.0);
        assert_eq!(grad[1][0], 0.0);
        assert!(
            (f64::from(out.figures.policy_loss) - policy).abs() < 1e-4,
            "{} vs {policy}",
            out.figures.policy_loss
        );
        let g = out.total.backward().unwrap();
        let got = g.get(&logp).unwrap().to_vec2::<f32>().unwrap();
        for t in 0..2 {
            for b in 0..2 {
                assert!(
                    (f64::from(got[t][b]) - grad[t][b]).abs() < 1e-4,
                    "[{t}, {b}]: {} vs {}",
                    got[t][b],
                    grad[t][b]
                );
            }
        }
        assert!(grad[0][0].abs() > 0.1 && grad[1][1].abs() > 0.1);
    }
}
