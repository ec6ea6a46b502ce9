//! Ape-X's Q-values and n-step double-Q targets (Horgan et al. 2018), in
//! one place for both sides: the learner's loss and the actors' first
//! priority of each unroll use the same arithmetic, so an actor's priority
//! equals the learner's for the same weights and data.
//!
//! The network is [`PolicyNet`](crate::PolicyNet) read as a dueling
//! Q-network (Wang et al. 2016): the action head gives the advantages
//! A(x, ·), the value head V(x). Targets are computed inside one unroll,
//! time-major, on the host (they are constants for the gradient).

use candle_core::{Tensor, D};

use crate::{PolicyError, PolicyOutput, PolicyParams, Result};

/// Dueling aggregation, Wang et al. 2016 eq. 9:
/// Q(x, a) = V(x) + A(x, a) − mean_a' A(x, a'). `[N, A]` from a categorical
/// network's output; an error for a Gaussian head (DQN needs discrete
/// actions).
pub fn dueling_q(output: &PolicyOutput) -> Result<Tensor> {
    let PolicyParams::Logits(advantages) = &output.policy else {
        return Err(PolicyError::Config(
            "Q-values need a discrete action space (a categorical head)".into(),
        ));
    };
    let centred = advantages.broadcast_sub(&advantages.mean_keepdim(D::Minus1)?)?;
    Ok(centred.broadcast_add(&output.value.unsqueeze(D::Minus1)?)?)
}

/// The index of the largest value (the first of equal ones).
pub fn argmax(values: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] {
            best = i;
        }
    }
    best
}

/// Double Q-learning's value of a state (van Hasselt et al. 2016): the
/// target network's Q of the online network's greedy action,
/// Q_target(x, argmax_a Q_online(x, a)).
pub fn double_q_value(online: &[f32], target: &[f32]) -> f32 {
    target.get(argmax(online)).copied().unwrap_or(0.0)
}

/// n-step returns inside one unroll of length T.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NStep {
    /// n ≥ 1.
    pub n: usize,
    /// γ in [0, 1].
    pub discount: f32,
}

/// One unroll's data for [`NStep::targets`], time-major, all length T
/// unless said.
pub struct NStepInputs<'a> {
    pub rewards: &'a [f32],
    pub terminated: &'a [bool],
    /// Truncated (time limit) and not terminated.
    pub truncated: &'a [bool],
    /// The bootstrap value of x_0 … x_T (length T + 1), e.g.
    /// [`double_q_value`]. Only x_1 … x_T are used.
    pub state_values: &'a [f32],
    /// The bootstrap value of the true final observation where step t was
    /// truncated (anything elsewhere).
    pub final_values: &'a [f32],
}

impl NStep {
    /// G_t = Σ_{i=t}^{m−1} γ^{i−t} r_i + γ^{m−t} B for every t < T, where m
    /// is the first of t + n, T, or one past the step that ended the episode;
    /// B is 0 after a termination, the final observation's value after a
    /// truncation, and x_m's value otherwise (the bootstrap observation x_T
    /// at the unroll's end). Writes G into `out` (length T).
    pub fn targets(&self, inputs: &NStepInputs<'_>, out: &mut [f32]) -> Result<()> {
        let t_len = inputs.rewards.len();
        let lengths = [
            inputs.terminated.len(),
            inputs.truncated.len(),
            inputs.final_values.len(),
            out.len(),
        ];
        if lengths.iter().any(|&l| l != t_len) || inputs.state_values.len() != t_len + 1 {
            return Err(PolicyError::Config(format!(
                "n-step targets: rewards {t_len}, flags/final values/out {lengths:?}, state values {} (want T + 1)",
                inputs.state_values.len()
            )));
        }
        if self.n == 0 {
            return Err(PolicyError::Config("n-step targets: n must be at least 1".into()));
        }
        for (t, g) in out.iter_mut().enumerate() {
            let end = (t + self.n).min(t_len);
            let mut sum = 0.0f32;
            let mut scale = 1.0f32;
            let mut bootstrap = None;
            for i in t..end {
                sum += scale * inputs.rewards[i];
                scale *= self.discount;
                if inputs.terminated[i] {
                    bootstrap = Some(0.0);
                    break;
                }
                if inputs.truncated[i] {
                    bootstrap = Some(inputs.final_values[i]);
                    break;
                }
            }
            *g = sum + scale * bootstrap.unwrap_or(inputs.state_values[end]);
        }
        Ok(())
    }
}

/// R2D2's priority of a sequence (Kapturowski et al. 2019):
/// η·max_t |δ_t| + (1 − η)·mean_t |δ_t|.
pub fn sequence_priority(abs_td_errors: &[f32], eta: f64) -> f64 {
    if abs_td_errors.is_empty() {
        return 0.0;
    }
    let max = abs_td_errors.iter().fold(0.0f32, |m, &x| m.max(x));
    let mean = abs_td_errors.iter().map(|&x| f64::from(x)).sum::<f64>() / abs_td_errors.len() as f64;
    eta * f64::from(max) + (1.0 - eta) * mean
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn inputs<'a>(
        rewards: &'a [f32],
        terminated: &'a [bool],
        truncated: &'a [bool],
        state_values: &'a [f32],
        final_values: &'a [f32],
    ) -> NStepInputs<'a> {
        NStepInputs {
            rewards,
            terminated,
            truncated,
            state_values,
            final_values,
        }
    }

    #[test]
    fn n_step_targets_stop_at_termination_truncation_and_the_unroll_end() {
        // T = 6, n = 3, γ = 0.5. Step 1 terminates, step 4 is truncated.
        let r = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let term = [false, true, false, false, false, false];
        let trunc = [false, false, false, false, true, false];
        // V(x_0) … V(x_6); V(x_6) is the bootstrap observation.
        let v = [10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0];
        let fin = [0.0, 0.0, 0.0, 0.0, 100.0, 0.0];
        let mut g = [0.0; 6];
        let n3 = NStep { n: 3, discount: 0.5 };
        n3.targets(&inputs(&r, &term, &trunc, &v, &fin), &mut g).unwrap();
        let want = [
            1.0 + 0.5 * 2.0,                              // t=0: r0 + γ r1, terminated at 1
            2.0,                                          // t=1: terminates at once
            3.0 + 0.5 * 4.0 + 0.25 * 5.0 + 0.125 * 100.0, // t=2: to step 4, truncated: final value
            4.0 + 0.5 * 5.0 + 0.25 * 100.0,               // t=3
            5.0 + 0.5 * 100.0,                            // t=4: truncated at once
            6.0 + 0.5 * 70.0,                             // t=5: the unroll ends: x_6
        ];
        assert_eq!(g, want);
        // n = 1 is one-step Q-learning.
        let n1 = NStep { n: 1, discount: 0.5 };
        n1.targets(&inputs(&r, &term, &trunc, &v, &fin), &mut g).unwrap();
        assert_eq!(g, [1.0 + 10.0, 2.0, 3.0 + 20.0, 4.0 + 25.0, 5.0 + 50.0, 6.0 + 35.0]);
        // No episode end: a full n-step window bootstraps from x_{t+n}.
        let none = [false; 6];
        n3.targets(&inputs(&r, &none, &none, &v, &fin), &mut g).unwrap();
        assert_eq!(g[0], 1.0 + 0.5 * 2.0 + 0.25 * 3.0 + 0.125 * 40.0);
        assert_eq!(g[4], 5.0 + 0.5 * 6.0 + 0.25 * 70.0, "window cut at T");
        // Lengths are checked.
        assert!(n3.targets(&inputs(&r, &term, &trunc, &v[..6], &fin), &mut g).is_err());
    }

    #[test]
    fn double_q_takes_the_online_argmax_and_the_target_value() {
        assert_eq!(double_q_value(&[1.0, 3.0, 2.0], &[7.0, 5.0, 9.0]), 5.0);
        assert_eq!(argmax(&[2.0, 2.0, 1.0]), 0, "ties go to the first");
        assert_eq!(sequence_priority(&[1.0, 3.0], 0.9), 0.9 * 3.0 + 0.1 * 2.0);
        assert_eq!(sequence_priority(&[], 0.9), 0.0);
    }

    #[test]
    fn dueling_aggregation_centres_the_advantages() {
        let dev = Device::Cpu;
        let output = PolicyOutput {
            policy: PolicyParams::Logits(Tensor::new(&[[1.0f32, 2.0, 6.0], [0.0, 0.0, 3.0]], &dev).unwrap()),
            value: Tensor::new(&[10.0f32, -1.0], &dev).unwrap(),
        };
        let q = dueling_q(&output).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(q, vec![vec![8.0, 9.0, 13.0], vec![-2.0, -2.0, 1.0]]);
        // The greedy action of Q is the greedy action of the advantages.
        let PolicyParams::Logits(a) = &output.policy else {
            unreachable!()
        };
        assert_eq!(
            a.argmax(D::Minus1).unwrap().to_vec1::<u32>().unwrap(),
            vec![argmax(&q[0]) as u32, argmax(&q[1]) as u32]
        );
        let gaussian = PolicyOutput {
            policy: PolicyParams::Gaussian {
                mean: Tensor::zeros((2, 1), candle_core::DType::F32, &dev).unwrap(),
                log_std: Tensor::zeros(1, candle_core::DType::F32, &dev).unwrap(),
            },
            value: Tensor::zeros(2, candle_core::DType::F32, &dev).unwrap(),
        };
        assert!(dueling_q(&gaussian).is_err());
    }
}
