//! Ape-X actors give each unroll its first priority from their own
//! Q-values: for the learner's weights (its target network still equal to
//! them) and the same unrolls, the learner's first priorities are the
//! actors'. CartPole with a 12-step time limit, so unrolls hold
//! terminations and truncations.

use cml_actors::{policy_from_weights, ApexActing, Worker};
use cml_learner::{Algorithm, ApexDqnLearner, DqnConfig, LearnerConfig, SampledUnrolls};
use cml_policy::q_values::NStep;
use cml_policy::{ActionKind, NetConfig};

#[test]
fn actor_priorities_equal_the_learners_first_priorities() {
    let (k, t) = (16usize, 10u32);
    let net = NetConfig {
        hidden: vec![32, 32],
        ..NetConfig::default()
    };
    let dqn = DqnConfig {
        n_step: 3,
        discount: 0.97,
        ..DqnConfig::default()
    };
    let config = LearnerConfig {
        dqn: dqn.clone(),
        seed: 4,
        ..LearnerConfig::default()
    };
    let mut learner = ApexDqnLearner::new(4, ActionKind::Categorical(2), &net, config).unwrap();
    let acting = ApexActing {
        epsilon_base: 0.4,
        epsilon_alpha: 7.0,
        total_actors: k as u64,
        first_actor_index: 0,
        n_step: NStep {
            n: dqn.n_step,
            discount: dqn.discount,
        },
        priority_eta: dqn.priority_eta,
    };
    let venv = cml_envs::make_vec_with_time_limit("CartPole-v1", &cml_envs::Params::new(), k, Some(12)).unwrap();
    let mut worker = Worker::new(0, venv, t, 0, 12, &net, Some(&acting)).unwrap();
    let layout = worker.layout().clone();
    let policy = policy_from_weights(
        &learner.weights().unwrap(),
        1,
        &layout,
        worker.observation_shape(),
        &net,
    )
    .unwrap();
    let eps = worker.epsilons().to_vec();
    assert_eq!(eps.len(), k);
    assert!((eps[0] - 0.4).abs() < 1e-12 && (eps[k - 1] - 0.4f64.powi(8)).abs() < 1e-12);

    let mut chunk = worker.new_chunk();
    // A chunk (after the first: it starts mid-episode) with both episode ends.
    let mut filled = 0;
    loop {
        worker.fill(&policy, &mut chunk).unwrap();
        filled += 1;
        if filled > 1 && chunk.frames[4].contains(&1) && chunk.frames[5].contains(&1) {
            break;
        }
        assert!(filled < 20, "no chunk with a termination and a truncation");
    }
    assert_eq!(chunk.priorities.len(), k);
    let weights = vec![1.0f32; k];
    let outcome = learner
        .step(
            &SampledUnrolls {
                layout: &layout,
                count: k,
                frames: &chunk.frames,
                importance_weights: &weights,
            },
            0,
        )
        .unwrap();
    for (b, (actor, first)) in chunk.priorities.iter().zip(&outcome.priorities).enumerate() {
        assert!(
            (actor - first).abs() <= 1e-5 * first.abs().max(1.0),
            "unroll {b}: actor {actor}, learner {first}"
        );
        assert!(*actor > 0.0);
    }
    // The behaviour log-probabilities are the ε-greedy policy's.
    let log_probs: Vec<f32> = cml_proto::tensor::f32s(&chunk.frames[2]).collect();
    for (a, row) in log_probs.chunks(t as usize).enumerate() {
        let (e, n) = (eps[a], 2.0);
        let (greedy, other) = ((1.0 - e + e / n).ln() as f32, (e / n).ln() as f32);
        assert!(
            row.iter()
                .all(|&l| (l - greedy).abs() < 1e-6 || (l - other).abs() < 1e-6),
            "actor {a}: {row:?}"
        );
    }
}
