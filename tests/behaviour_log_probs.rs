//! On an on-policy batch the learner recomputes exactly the behaviour
//! log-probabilities the actors sent (issue 12, item 4): the actors' worker
//! acts on MinAtar Breakout with the learner's published weights, the
//! unrolls go through the learner's own wire-to-batch conversion, and the
//! learner's network gives log π(a_t | x_t) for every step within 1e-5 of
//! the actor's — for the MLP torso and for the MinAtar CNN torso (whose
//! HWC-to-CHW conversion both sides must make the same way).

use candle_core::Device;
use cml_actors::{policy_from_weights, Worker};
use cml_learner::{ImpalaLearner, LearnerConfig, SampledUnrolls, UnrollBatch};
use cml_policy::{ActionKind, NetConfig, Torso};

fn check(torso: Torso) {
    let (k, t) = (8usize, 12u32);
    let net = NetConfig {
        torso,
        hidden: vec![64],
        ..NetConfig::default()
    };
    let venv = cml_envs::make_vec("MinAtar/Breakout-v1", &cml_envs::Params::new(), k).unwrap();
    let mut worker = Worker::new(0, venv, t, 0, 21, None).unwrap();
    assert_eq!(worker.observation_shape(), &[10, 10, 4]);
    let config = LearnerConfig {
        seed: 9,
        ..LearnerConfig::default()
    };
    let learner = ImpalaLearner::new(worker.observation_shape(), ActionKind::Categorical(3), &net, config).unwrap();
    let layout = worker.layout().clone();
    let policy = policy_from_weights(
        &learner.weights().unwrap(),
        1,
        &layout,
        worker.observation_shape(),
        &net,
    )
    .unwrap();

    let mut chunk = worker.new_chunk();
    // Two chunks: the second starts mid-episode, and Breakout's short random
    // episodes put resets inside the unrolls.
    worker.fill(&policy, &mut chunk).unwrap();
    worker.fill(&policy, &mut chunk).unwrap();
    assert!(
        chunk.frames[4].contains(&1),
        "{torso:?}: an episode ended inside the unrolls"
    );

    let weights = vec![1.0f32; k];
    let sampled = SampledUnrolls {
        layout: &layout,
        count: k,
        frames: &chunk.frames,
        importance_weights: &weights,
    };
    let batch = UnrollBatch::from_sampled(&sampled, &Device::Cpu).unwrap();
    let (t, d) = (t as usize, 400);
    let obs = batch.observations.narrow(0, 0, t).unwrap().reshape((t * k, d)).unwrap();
    let actions = batch.actions.reshape(t * k).unwrap();
    let learner_log_probs: Vec<f32> = learner
        .net()
        .forward(&obs)
        .unwrap()
        .policy
        .log_prob(&actions)
        .unwrap()
        .to_vec1()
        .unwrap();
    let actor_log_probs: Vec<f32> = batch.behaviour_log_probs.reshape(t * k).unwrap().to_vec1().unwrap();
    assert_eq!(learner_log_probs.len(), actor_log_probs.len());
    let mut spread = Vec::new();
    for (i, (l, a)) in learner_log_probs.iter().zip(&actor_log_probs).enumerate() {
        assert!(
            (l - a).abs() <= 1e-5,
            "{torso:?}: step {} of unroll {}: learner {l}, actor {a}",
            i / k,
            i % k
        );
        spread.push(*a);
    }
    // Not a constant: the policy's probabilities differ between states.
    spread.sort_by(f32::total_cmp);
    assert!(spread[spread.len() - 1] - spread[0] > 1e-4, "{torso:?}: {spread:?}");
}

#[test]
fn the_learner_recomputes_the_actors_log_probs_mlp() {
    check(Torso::Mlp);
}

#[test]
fn the_learner_recomputes_the_actors_log_probs_minatar_cnn() {
    check(Torso::Minatar);
}
