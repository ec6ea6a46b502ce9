//! Ape-X DQN's step against values computed here from its two networks:
//! the n-step double-Q targets, the TD errors and priorities, the IS
//! weighting of the loss, the target network's cadence, checkpoints.

mod common;

use std::collections::HashMap;

use candle_core::{Device, Tensor};
use cml_learner::{Algorithm, ApexDqnLearner, DqnConfig, LearnerConfig, OptimizerConfig, UnrollBatch};
use cml_policy::q_values::dueling_q;
use cml_policy::{ActionKind, NetConfig, PolicyNet};
use common::synthetic_batch;

fn learner(dqn: DqnConfig) -> ApexDqnLearner {
    let config = LearnerConfig {
        optimizer: OptimizerConfig::Adam(Default::default()),
        dqn,
        seed: 5,
        ..LearnerConfig::default()
    };
    let net = NetConfig {
        hidden: vec![16],
        ..NetConfig::default()
    };
    ApexDqnLearner::new(3, ActionKind::Categorical(3), &net, config).unwrap()
}

/// Q(x, ·) rows of `obs` (`[N, 3]`) under `net`.
fn q_rows(net: &PolicyNet, obs: &Tensor) -> Vec<Vec<f32>> {
    dueling_q(&net.forward(obs).unwrap()).unwrap().to_vec2::<f32>().unwrap()
}

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

fn argmax(row: &[f32]) -> usize {
    (0..row.len()).fold(0, |best, i| if row[i] > row[best] { i } else { best })
}

/// A batch of one unroll (B = 1) of T = 4 written out by hand: step 1
/// terminates, step 2 is truncated.
fn hand_batch() -> UnrollBatch {
    let dev = Device::Cpu;
    let obs: Vec<f32> = (0..5 * 3).map(|i| (i as f32 * 0.37).sin()).collect();
    let finals: Vec<f32> = (0..4 * 3).map(|i| (i as f32 * 0.91).cos()).collect();
    UnrollBatch {
        observations: Tensor::from_vec(obs, (5, 1, 3), &dev).unwrap(),
        actions: Tensor::from_vec(vec![0u32, 2, 1, 2], (4, 1), &dev).unwrap(),
        behaviour_log_probs: Tensor::zeros((4, 1), candle_core::DType::F32, &dev).unwrap(),
        rewards: Tensor::from_vec(vec![1.0f32, -0.5, 2.0, 0.25], (4, 1), &dev).unwrap(),
        terminated: Tensor::from_vec(vec![0.0f32, 1.0, 0.0, 0.0], (4, 1), &dev).unwrap(),
        truncated: Tensor::from_vec(vec![0.0f32, 0.0, 1.0, 0.0], (4, 1), &dev).unwrap(),
        final_observations: Some(Tensor::from_vec(finals, (4, 1, 3), &dev).unwrap()),
        importance_weights: None,
        initial_state: None,
    }
}

#[test]
fn targets_are_n_step_double_q_with_termination_and_truncation() {
    let dqn = DqnConfig {
        n_step: 2,
        discount: 0.9,
        target_update_interval: 1000,
        ..DqnConfig::default()
    };
    let mut l = learner(dqn);
    // Train once on other data so the online and target networks differ
    // (the target is copied only every 1000 steps).
    l.step_at(&synthetic_batch(3, 6, 4, 3, 3), 0).unwrap();
    let batch = hand_batch();
    let obs = batch.observations.reshape((5, 3)).unwrap();
    let finals = batch.final_observations.as_ref().unwrap().reshape((4, 3)).unwrap();
    let (online, target) = (q_rows(l.net(), &obs), q_rows(l.target_net(), &obs));
    let (online_final, target_final) = (q_rows(l.net(), &finals), q_rows(l.target_net(), &finals));
    assert_ne!(online, target, "the two networks differ");
    // Double Q: the target network's value of the online network's choice.
    let boot = |s: usize| target[s][argmax(&online[s])];
    let boot_final = |s: usize| target_final[s][argmax(&online_final[s])];
    let (r, g) = ([1.0f32, -0.5, 2.0, 0.25], 0.9f32);
    let want_targets = [
        r[0] + g * r[1],          // t=0: terminated at 1, no bootstrap
        r[1],                     // t=1: terminates
        r[2] + g * boot_final(2), // t=2: truncated: the true final observation
        r[3] + g * boot(4),       // t=3: the unroll ends: x_4
    ];
    let actions = [0usize, 2, 1, 2];
    let td: Vec<f32> = (0..4).map(|s| want_targets[s] - online[s][actions[s]]).collect();
    let abs: Vec<f64> = td.iter().map(|d| f64::from(d.abs())).collect();
    let max = abs.iter().cloned().fold(0.0, f64::max);
    let want_priority = 0.9 * max + 0.1 * abs.iter().sum::<f64>() / 4.0;
    // Huber(κ = 1), mean over T·B = 4 steps.
    let huber = |d: f32| if d.abs() <= 1.0 { 0.5 * d * d } else { d.abs() - 0.5 };
    let want_loss: f32 = td.iter().map(|&d| huber(d)).sum::<f32>() / 4.0;
    let want_q_mean: f32 = (0..4).map(|s| online[s][actions[s]]).sum::<f32>() / 4.0;

    let report = l.step_at(&batch, 0).unwrap();
    assert!(
        (report.target_mean - want_targets.iter().sum::<f32>() / 4.0).abs() < 1e-5,
        "{report:?}"
    );
    assert!((report.q_mean - want_q_mean).abs() < 1e-5, "{report:?}");
    assert!((report.loss - want_loss).abs() < 1e-5, "{} vs {want_loss}", report.loss);
    assert_eq!(report.priorities.len(), 1);
    assert!(
        (report.priorities[0] - want_priority).abs() < 1e-5,
        "{report:?} vs {want_priority}"
    );
}

#[test]
fn importance_weights_scale_each_unrolls_loss_and_not_its_priority() {
    let batch = synthetic_batch(9, 5, 2, 3, 3);
    let with = |w: [f32; 2]| {
        let mut b = batch.clone();
        b.importance_weights = Some(Tensor::new(&w, &Device::Cpu).unwrap());
        learner(DqnConfig::default()).step_at(&b, 0).unwrap()
    };
    let (first, second, both, double) = (with([1.0, 0.0]), with([0.0, 1.0]), with([1.0, 1.0]), with([2.0, 0.0]));
    // The loss is linear in the weights: Σ_b w_b · (unroll b's Huber sum) / (T·B).
    assert!((both.loss - (first.loss + second.loss)).abs() < 1e-6, "{both:?}");
    assert!((double.loss - 2.0 * first.loss).abs() < 1e-6);
    assert!(first.loss > 0.0 && second.loss > 0.0);
    // A zero weight removes the unroll from the gradient, not from the priorities.
    assert_eq!(first.priorities, both.priorities);
    assert!(first.grad_norm > 0.0 && (double.grad_norm - 2.0 * first.grad_norm).abs() < 1e-4 * double.grad_norm);
}

#[test]
fn the_target_network_follows_every_interval_steps() {
    let mut l = learner(DqnConfig {
        target_update_interval: 3,
        ..DqnConfig::default()
    });
    let probe = Tensor::new(&[[0.3f32, -0.2, 0.9]], &Device::Cpu).unwrap();
    let initial = q_rows(l.target_net(), &probe);
    assert_eq!(initial, q_rows(l.net(), &probe), "the target starts as a copy");
    for step in 1..=7u64 {
        let r = l.step_at(&synthetic_batch(step, 5, 4, 3, 3), 0).unwrap();
        let (online, target) = (q_rows(l.net(), &probe), q_rows(l.target_net(), &probe));
        assert_eq!(r.target_updated, step % 3 == 0, "step {step}");
        if step % 3 == 0 {
            assert_eq!(online, target, "copied after step {step}");
        } else {
            assert_ne!(online, target, "not copied after step {step}");
        }
        if step < 3 {
            assert_eq!(target, initial, "unchanged before the first copy");
        }
    }
}

#[test]
fn state_round_trips_and_a_bad_one_changes_nothing() {
    let mut l = learner(DqnConfig {
        target_update_interval: 2,
        ..DqnConfig::default()
    });
    for step in 1..=3 {
        l.step_at(&synthetic_batch(step, 5, 4, 3, 3), 0).unwrap();
    }
    let state: HashMap<String, Tensor> = l.state().unwrap().into_iter().collect();
    assert!(state.keys().any(|k| k.starts_with("target/")) && state.keys().any(|k| k.starts_with("optim/")));
    let mut fresh = learner(DqnConfig {
        target_update_interval: 2,
        ..DqnConfig::default()
    });
    let probe = Tensor::new(&[[0.1f32, 0.2, 0.3]], &Device::Cpu).unwrap();
    let mut broken = state.clone();
    broken.retain(|k, _| !k.starts_with("target/"));
    let before = (q_rows(fresh.net(), &probe), q_rows(fresh.target_net(), &probe));
    assert!(fresh.restore(&broken, 3).is_err());
    assert_eq!(fresh.steps(), 0, "nothing changed");
    assert_eq!(
        (q_rows(fresh.net(), &probe), q_rows(fresh.target_net(), &probe)),
        before
    );
    fresh.restore(&state, 3).unwrap();
    assert_eq!(fresh.steps(), 3);
    assert_eq!(q_rows(fresh.net(), &probe), q_rows(l.net(), &probe));
    assert_eq!(q_rows(fresh.target_net(), &probe), q_rows(l.target_net(), &probe));
    // Both continue identically.
    let batch = synthetic_batch(11, 5, 4, 3, 3);
    let (a, b) = (l.step_at(&batch, 0).unwrap(), fresh.step_at(&batch, 0).unwrap());
    assert_eq!(a, b);
    assert_eq!(
        values(&l.net().forward(&probe).unwrap().value),
        values(&fresh.net().forward(&probe).unwrap().value)
    );
}

#[test]
fn continuous_actions_and_bad_settings_are_refused() {
    let e = ApexDqnLearner::new(
        3,
        ActionKind::Gaussian(1),
        &NetConfig::default(),
        LearnerConfig::default(),
    )
    .err()
    .unwrap();
    assert!(e.to_string().contains("discrete action space"), "{e}");
    let bad = LearnerConfig {
        dqn: DqnConfig {
            n_step: 0,
            ..DqnConfig::default()
        },
        ..LearnerConfig::default()
    };
    let e = ApexDqnLearner::new(3, ActionKind::Categorical(2), &NetConfig::default(), bad)
        .err()
        .unwrap();
    assert!(e.to_string().contains("dqn.n_step"), "{e}");
}
