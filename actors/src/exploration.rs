//! Ape-X's actors (Horgan et al. 2018): ε-greedy on the dueling Q-values
//! with one ε per actor, and each unroll's first replay priority computed
//! from the actor's own Q-values, so new data does not enter replay at the
//! running maximum. The arithmetic of targets and priorities is
//! `cml_policy::q_values`, the same the learner uses: with the learner's
//! weights (and its target network equal to them) the priorities agree.

use cml_policy::q_values::{argmax, double_q_value, sequence_priority, NStep, NStepInputs};
use rand::rngs::SmallRng;
use rand::Rng;

use crate::ActorError;

/// How an Ape-X host acts and prioritises (from `[actor]` and
/// `[learner.dqn]`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ApexActing {
    /// ε_i = epsilon_base^(1 + epsilon_alpha · i / (N − 1)).
    pub epsilon_base: f64,
    pub epsilon_alpha: f64,
    /// N: actors over all hosts.
    pub total_actors: u64,
    /// The global index of this host's first actor (i of its actor 0).
    pub first_actor_index: u64,
    pub n_step: NStep,
    /// η of the priority η·max|δ| + (1 − η)·mean|δ|.
    pub priority_eta: f64,
}

impl ApexActing {
    /// ε of actor `i` of `N` (Ape-X eq. 1 with base ε and α from the
    /// config, 0.4 and 7 in the paper); one actor gets ε = base.
    pub fn epsilon(&self, i: u64) -> f64 {
        let n = self.total_actors;
        if n <= 1 {
            return self.epsilon_base;
        }
        self.epsilon_base
            .powf(1.0 + self.epsilon_alpha * i as f64 / (n - 1) as f64)
    }
}

/// One worker's ε-greedy actors and what they remember of the unroll
/// being filled, for its priorities. Buffers are sized once.
pub(crate) struct EpsilonGreedyActors {
    epsilons: Vec<f64>,
    n_step: NStep,
    eta: f64,
    /// A: actions.
    actions: usize,
    t_len: usize,
    obs_dim: usize,
    /// Q(x_t, ·) of every actor, `[K, T+1, A]`.
    q: Vec<f32>,
    /// a_t, r_t and the flags, `[K, T]`.
    taken: Vec<usize>,
    rewards: Vec<f32>,
    terminated: Vec<bool>,
    truncated: Vec<bool>,
    /// (actor, t) of each truncation of this unroll, and its final
    /// observation (`obs_dim` values each, in the same order).
    truncations: Vec<(usize, usize)>,
    final_observations: Vec<f32>,
    // Scratch for one actor's unroll.
    state_values: Vec<f32>,
    final_values: Vec<f32>,
    targets: Vec<f32>,
    abs_td: Vec<f32>,
}

impl EpsilonGreedyActors {
    /// Actors `first .. first + k` (global indices) of `acting`.
    pub(crate) fn new(acting: &ApexActing, first: u64, k: usize, t_len: usize, actions: usize, obs_dim: usize) -> Self {
        EpsilonGreedyActors {
            epsilons: (0..k as u64).map(|j| acting.epsilon(first + j)).collect(),
            n_step: acting.n_step,
            eta: acting.priority_eta,
            actions,
            t_len,
            obs_dim,
            q: vec![0.0; k * (t_len + 1) * actions],
            taken: vec![0; k * t_len],
            rewards: vec![0.0; k * t_len],
            terminated: vec![false; k * t_len],
            truncated: vec![false; k * t_len],
            truncations: Vec::with_capacity(k),
            final_observations: Vec::with_capacity(k * obs_dim),
            state_values: vec![0.0; t_len + 1],
            final_values: vec![0.0; t_len],
            targets: vec![0.0; t_len],
            abs_td: vec![0.0; t_len],
        }
    }

    pub(crate) fn epsilons(&self) -> &[f64] {
        &self.epsilons
    }

    /// A new unroll starts.
    pub(crate) fn begin(&mut self) {
        self.truncations.clear();
        self.final_observations.clear();
    }

    fn q_row(&self, actor: usize, t: usize) -> std::ops::Range<usize> {
        let at = (actor * (self.t_len + 1) + t) * self.actions;
        at..at + self.actions
    }

    /// Keeps Q(x_t, ·) of every actor (`q_all`: `[K, A]`).
    pub(crate) fn keep_q(&mut self, t: usize, q_all: &[f32]) {
        for actor in 0..self.epsilons.len() {
            let row = self.q_row(actor, t);
            self.q[row].copy_from_slice(&q_all[actor * self.actions..(actor + 1) * self.actions]);
        }
    }

    /// ε-greedy choice of `actor` at step t from its kept Q-values: a
    /// uniform action with probability ε, else the greedy one. Returns the
    /// action and its log-probability under this ε-greedy policy.
    pub(crate) fn choose(&mut self, actor: usize, t: usize, rng: &mut SmallRng) -> (usize, f32) {
        let greedy = argmax(&self.q[self.q_row(actor, t)]);
        let epsilon = self.epsilons[actor];
        let a = self.actions;
        let action = if rng.random::<f64>() < epsilon {
            rng.random_range(0..a)
        } else {
            greedy
        };
        let probability = if action == greedy {
            1.0 - epsilon + epsilon / a as f64
        } else {
            epsilon / a as f64
        };
        self.taken[actor * self.t_len + t] = action;
        (action, probability.ln() as f32)
    }

    /// What step t of `actor` gave; `final_observation` where it was
    /// truncated (and not terminated).
    pub(crate) fn record(
        &mut self,
        actor: usize,
        t: usize,
        reward: f32,
        terminated: bool,
        final_observation: Option<&[f32]>,
    ) {
        let i = actor * self.t_len + t;
        self.rewards[i] = reward;
        self.terminated[i] = terminated;
        self.truncated[i] = final_observation.is_some() && !terminated;
        if let (Some(obs), false) = (final_observation, terminated) {
            self.truncations.push((actor, t));
            self.final_observations.extend_from_slice(obs);
        }
    }

    /// The final observations of this unroll's truncations, `[M, obs_dim]`
    /// row-major (M = [`Self::truncation_count`]).
    pub(crate) fn final_observations(&self) -> &[f32] {
        &self.final_observations
    }

    pub(crate) fn truncation_count(&self) -> usize {
        self.truncations.len()
    }

    /// Each actor's first priority, given Q of x_T (`[K, A]`, kept at
    /// t = T) and Q of the final observations (`[M, A]`, in truncation
    /// order). Online and target network are both the actor's own.
    pub(crate) fn priorities(&mut self, final_q: &[f32], out: &mut Vec<f64>) -> Result<(), ActorError> {
        let (t_len, a) = (self.t_len, self.actions);
        if final_q.len() != self.truncations.len() * a {
            return Err(ActorError::Config(format!(
                "priorities: {} final Q-values for {} truncations of {a} actions",
                final_q.len(),
                self.truncations.len()
            )));
        }
        out.clear();
        for actor in 0..self.epsilons.len() {
            for s in 0..=t_len {
                let row = &self.q[self.q_row(actor, s)];
                self.state_values[s] = double_q_value(row, row);
            }
            self.final_values.fill(0.0);
            for (m, &(who, s)) in self.truncations.iter().enumerate() {
                if who == actor {
                    let row = &final_q[m * a..(m + 1) * a];
                    self.final_values[s] = double_q_value(row, row);
                }
            }
            let span = actor * t_len..(actor + 1) * t_len;
            self.n_step
                .targets(
                    &NStepInputs {
                        rewards: &self.rewards[span.clone()],
                        terminated: &self.terminated[span.clone()],
                        truncated: &self.truncated[span.clone()],
                        state_values: &self.state_values,
                        final_values: &self.final_values,
                    },
                    &mut self.targets,
                )
                .map_err(|e| ActorError::Config(e.to_string()))?;
            for s in 0..t_len {
                let q_taken = self.q[self.q_row(actor, s)][self.taken[actor * t_len + s]];
                self.abs_td[s] = (self.targets[s] - q_taken).abs();
            }
            out.push(sequence_priority(&self.abs_td, self.eta));
        }
        Ok(())
    }

    pub(crate) fn obs_dim(&self) -> usize {
        self.obs_dim
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acting(total: u64) -> ApexActing {
        ApexActing {
            epsilon_base: 0.4,
            epsilon_alpha: 7.0,
            total_actors: total,
            first_actor_index: 0,
            n_step: NStep { n: 3, discount: 0.99 },
            priority_eta: 0.9,
        }
    }

    #[test]
    fn epsilons_follow_the_ape_x_schedule() {
        let a = acting(8);
        assert!((a.epsilon(0) - 0.4).abs() < 1e-12);
        assert!((a.epsilon(7) - 0.4f64.powi(8)).abs() < 1e-12);
        // i = 3 of 8: 0.4^(1 + 7·3/7) = 0.4^4.
        assert!((a.epsilon(3) - 0.4f64.powi(4)).abs() < 1e-12);
        assert_eq!(acting(1).epsilon(0), 0.4);
    }

    #[test]
    fn epsilon_greedy_picks_greedy_at_the_rate_and_says_its_log_probability() {
        use rand::SeedableRng;
        let a = ApexActing {
            total_actors: 2,
            ..acting(2)
        };
        // Actor 0: ε = 0.4; actor 1: ε = 0.4^8.
        let mut actors = EpsilonGreedyActors::new(&a, 0, 2, 1, 4, 1);
        actors.keep_q(0, &[0.0, 5.0, 1.0, 2.0, 9.0, 0.0, 0.0, 0.0]);
        let mut rng = SmallRng::seed_from_u64(1);
        let n = 20_000;
        let mut greedy = 0;
        for _ in 0..n {
            let (action, log_p) = actors.choose(0, 0, &mut rng);
            let p = if action == 1 { 1.0 - 0.4 + 0.1 } else { 0.1 };
            assert!((f64::from(log_p) - f64::ln(p)).abs() < 1e-6);
            greedy += usize::from(action == 1);
        }
        let rate = greedy as f64 / n as f64;
        assert!((rate - 0.7).abs() < 0.02, "greedy rate {rate}");
        let (action, _) = actors.choose(1, 0, &mut rng);
        assert_eq!(action, 0, "actor 1 is all but greedy");
    }
}
