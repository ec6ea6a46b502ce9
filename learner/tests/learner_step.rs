//! The learner step's contract: metrics and priorities for good batches,
//! clear errors and unchanged parameters for bad ones.

mod common;

use candle_core::{DType, Device, Tensor};
use cml_learner::{ImpalaLearner, LearnerConfig, LearnerError};
use cml_policy::{ActionKind, NetConfig};
use common::synthetic_batch;

fn params(l: &ImpalaLearner) -> Vec<Vec<f32>> {
    l.parameters()
        .into_iter()
        .map(|(_, t)| t.flatten_all().unwrap().to_vec1::<f32>().unwrap())
        .collect()
}

#[test]
fn discrete_step_reports_metrics_and_priorities() {
    let mut l = ImpalaLearner::new(
        4,
        ActionKind::Categorical(2),
        &NetConfig::default(),
        LearnerConfig::default(),
    )
    .unwrap();
    let before = params(&l);
    let r = l.step(&synthetic_batch(1, 20, 8, 4, 2)).unwrap();
    assert_ne!(params(&l), before, "parameters moved");
    assert_eq!(r.priorities.len(), 8);
    assert!(r.priorities.iter().all(|p| p.is_finite() && *p >= 0.0));
    assert!(r.grad_norm > 0.0 && r.entropy > 0.0 && r.entropy <= 2f32.ln() + 1e-5);
    assert!(r.mean_rho > 0.0 && (0.0..=1.0).contains(&r.rho_clipped_fraction));
    assert_eq!((l.steps(), l.frames()), (1, 160));
}

#[test]
fn continuous_step_trains_the_gaussian_head() {
    let (t, b, a) = (10, 4, 2);
    let dev = Device::Cpu;
    let mut l = ImpalaLearner::new(
        3,
        ActionKind::Gaussian(a),
        &NetConfig::default(),
        LearnerConfig::default(),
    )
    .unwrap();
    let batch = cml_learner::UnrollBatch {
        observations: Tensor::rand(-1f32, 1f32, (t + 1, b, 3), &dev).unwrap(),
        actions: Tensor::rand(-1f32, 1f32, (t, b, a), &dev).unwrap(),
        behaviour_log_probs: Tensor::full(-2.0f32, (t, b), &dev).unwrap(),
        rewards: Tensor::rand(-1f32, 0f32, (t, b), &dev).unwrap(),
        terminated: Tensor::zeros((t, b), DType::F32, &dev).unwrap(),
        truncated: Tensor::zeros((t, b), DType::F32, &dev).unwrap(),
        final_observations: None,
        importance_weights: None,
        initial_state: None,
    };
    let before = params(&l);
    let r = l.step(&batch).unwrap();
    assert!(r.total_loss.is_finite() && r.grad_norm.is_finite());
    assert_ne!(params(&l), before);
    // Discrete actions for a Gaussian head are a shape error.
    let mut wrong = batch.clone();
    wrong.actions = Tensor::zeros((t, b), DType::U32, &dev).unwrap();
    assert!(matches!(l.step(&wrong), Err(LearnerError::Batch(_))));
}

#[test]
fn bad_batches_are_refused_and_change_nothing() {
    let mut l = ImpalaLearner::new(
        4,
        ActionKind::Categorical(2),
        &NetConfig::default(),
        LearnerConfig::default(),
    )
    .unwrap();
    let before = params(&l);

    let mut nan = synthetic_batch(2, 5, 4, 4, 2);
    nan.rewards = (nan.rewards * f64::NAN).unwrap();
    let e = l.step(&nan).unwrap_err();
    assert!(matches!(e, LearnerError::NonFinite { .. }), "{e}");
    assert!(e.to_string().contains("parameters are unchanged"));

    let mut shape = synthetic_batch(3, 5, 4, 4, 2);
    shape.rewards = Tensor::zeros((5, 3), DType::F32, &Device::Cpu).unwrap();
    let e = l.step(&shape).unwrap_err();
    assert!(
        e.to_string().contains("rewards has shape [5, 3], expected [5, 4]"),
        "{e}"
    );

    let mut action = synthetic_batch(4, 5, 4, 4, 2);
    action.actions = Tensor::full(7u32, (5, 4), &Device::Cpu).unwrap();
    let e = l.step(&action).unwrap_err();
    assert!(e.to_string().contains("action 7 is outside Discrete(2)"), "{e}");

    let mut missing = synthetic_batch(5, 5, 4, 4, 2);
    missing.truncated = Tensor::ones((5, 4), DType::F32, &Device::Cpu).unwrap();
    missing.final_observations = None;
    let e = l.step(&missing).unwrap_err();
    assert!(e.to_string().contains("final_observations are missing"), "{e}");

    assert_eq!(params(&l), before);
    assert_eq!(l.steps(), 0);
}

/// Both algorithms train every convolutional torso (MinAtar's on
/// `[10, 10, 4]`, Nature's on `[36, 36, 1]`, IMPALA's ResNet on
/// `[12, 12, 3]`, all HWC): parameters move, every number stays finite, and
/// the first convolution's weights are among those that move.
#[test]
fn both_algorithms_train_every_conv_torso() {
    use cml_policy::Torso;
    for (torso, shape, first_conv) in [
        (Torso::Minatar, vec![10, 10, 4], "torso.conv.weight"),
        (Torso::Nature, vec![36, 36, 1], "torso.conv0.weight"),
        (Torso::Impala, vec![12, 12, 3], "torso.stack0.conv.weight"),
    ] {
        train_conv_torso(torso, shape, first_conv);
    }
}

fn train_conv_torso(torso: cml_policy::Torso, shape: Vec<usize>, first_conv: &str) {
    let net = NetConfig {
        torso,
        ..Default::default()
    };
    let batch = synthetic_batch(5, 6, 4, shape.iter().product(), 3);
    let conv = |params: &[(String, Tensor)]| -> Vec<f32> {
        let (_, t) = params.iter().find(|(n, _)| n == first_conv).expect("conv weights");
        t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    };

    let mut impala = ImpalaLearner::new(
        shape.clone(),
        ActionKind::Categorical(3),
        &net,
        LearnerConfig::default(),
    )
    .unwrap();
    let before = conv(&impala.parameters());
    for _ in 0..3 {
        let r = impala.step(&batch).unwrap();
        assert!(r.total_loss.is_finite() && r.grad_norm.is_finite() && r.grad_norm > 0.0);
        assert_eq!(r.priorities.len(), 4);
    }
    assert_ne!(conv(&impala.parameters()), before);

    use cml_learner::Algorithm;
    let mut apex = cml_learner::ApexDqnLearner::new(
        shape.clone(),
        ActionKind::Categorical(3),
        &net,
        LearnerConfig::default(),
    )
    .unwrap();
    let published_conv = |apex: &cml_learner::ApexDqnLearner| -> Vec<f32> {
        let tensors = candle_core::safetensors::load_buffer(&apex.weights().unwrap(), &Device::Cpu).unwrap();
        tensors[first_conv].flatten_all().unwrap().to_vec1::<f32>().unwrap()
    };
    let before = published_conv(&apex);
    for _ in 0..3 {
        let r = apex.step_at(&batch, 0).unwrap();
        assert!(r.loss.is_finite() && r.grad_norm.is_finite() && r.grad_norm > 0.0);
    }
    assert_ne!(published_conv(&apex), before);

    // A torso that cannot read the observation is refused at construction.
    let e = ImpalaLearner::new(400, ActionKind::Categorical(3), &net, LearnerConfig::default())
        .err()
        .unwrap();
    assert!(e.to_string().contains("model.torso"), "{e}");
}

/// IMPALA trains an LSTM core (steps from each unroll's initial state,
/// truncations bootstrapped through the core): the core's weights move,
/// everything stays finite; a batch without initial states, or with states
/// of the wrong size, is refused and changes nothing; Ape-X refuses a core.
#[test]
fn impala_trains_an_lstm_core_and_refuses_batches_without_its_state() {
    let net = NetConfig {
        core: cml_policy::Core::Lstm,
        core_size: 16,
        ..NetConfig::default()
    };
    let mut l = ImpalaLearner::new(4, ActionKind::Categorical(2), &net, LearnerConfig::default()).unwrap();
    let s = 2 * 16 + 2 + 1;
    assert_eq!(l.net().recurrent_state_size(), s);
    let mut batch = synthetic_batch(3, 10, 6, 4, 2);
    assert!(batch.truncated.sum_all().unwrap().to_scalar::<f32>().unwrap() > 0.0);
    let before = params(&l);
    let e = l.step(&batch).unwrap_err();
    assert!(e.to_string().contains("initial_state"), "{e}");
    batch.initial_state = Some(Tensor::zeros((6, s - 1), DType::F32, &Device::Cpu).unwrap());
    let e = l.step(&batch).unwrap_err();
    assert!(e.to_string().contains(&format!("[6, {s}]")), "{e}");
    assert_eq!(params(&l), before);

    batch.initial_state = Some(Tensor::rand(-0.5f32, 0.5, (6, s), &Device::Cpu).unwrap());
    let core_weights = |l: &ImpalaLearner| -> Vec<f32> {
        let (_, t) = l
            .parameters()
            .into_iter()
            .find(|(n, _)| n == "core.weight_hh_l0")
            .expect("the LSTM's weights are parameters");
        t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    };
    let core_before = core_weights(&l);
    for _ in 0..3 {
        let r = l.step(&batch).unwrap();
        assert!(r.total_loss.is_finite() && r.grad_norm.is_finite() && r.grad_norm > 0.0);
    }
    assert_ne!(core_weights(&l), core_before);

    let e = cml_learner::ApexDqnLearner::new(4, ActionKind::Categorical(2), &net, LearnerConfig::default())
        .err()
        .unwrap();
    assert!(e.to_string().contains("model.core"), "{e}");
}

/// `learner.cpu_threads` splits the batch's unrolls along B over threads:
/// the update and every reported figure are the one-thread step's, up to
/// rounding (here B = 7 over 3 threads: parts of 3, 2 and 2 unrolls), for
/// an MLP with truncations and importance weights, the MinAtar CNN and an
/// LSTM core.
#[test]
fn a_batch_split_over_threads_makes_the_same_update() {
    let lstm = NetConfig {
        core: cml_policy::Core::Lstm,
        core_size: 8,
        ..NetConfig::default()
    };
    let minatar = NetConfig {
        torso: cml_policy::Torso::Minatar,
        ..NetConfig::default()
    };
    let (t, b) = (6, 7);
    for (what, net, obs_shape) in [
        ("mlp", NetConfig::default(), vec![4]),
        ("minatar", minatar, vec![10, 10, 2]),
        ("lstm", lstm, vec![4]),
    ] {
        let obs_dim: usize = obs_shape.iter().product();
        let mut batch = synthetic_batch(11, t, b, obs_dim, 3);
        assert!(batch.truncated.sum_all().unwrap().to_scalar::<f32>().unwrap() > 0.0);
        let weights: Vec<f32> = (0..b).map(|i| 0.2 + 0.1 * i as f32).collect();
        batch.importance_weights = Some(Tensor::from_vec(weights, b, &Device::Cpu).unwrap());
        let learner = |threads: usize| {
            let config = LearnerConfig {
                cpu_threads: threads,
                ..LearnerConfig::default()
            };
            ImpalaLearner::new(obs_shape.clone(), ActionKind::Categorical(3), &net, config).unwrap()
        };
        let (mut one, mut three) = (learner(1), learner(3));
        if net.core == cml_policy::Core::Lstm {
            let s = one.net().recurrent_state_size();
            batch.initial_state = Some(Tensor::rand(-0.5f32, 0.5, (b, s), &Device::Cpu).unwrap());
        }
        assert_eq!(params(&one), params(&three), "{what}: the same initial parameters");
        for step in 0..2 {
            let (r1, r3) = (one.step(&batch).unwrap(), three.step(&batch).unwrap());
            let close = |name: &str, a: f32, b: f32| {
                assert!(
                    (a - b).abs() <= 1e-4 * a.abs().max(1.0),
                    "{what} step {step}: {name} {a} (1 thread) vs {b} (3 threads)"
                );
            };
            close("policy loss", r1.policy_loss, r3.policy_loss);
            close("baseline loss", r1.baseline_loss, r3.baseline_loss);
            close("entropy", r1.entropy, r3.entropy);
            close("total loss", r1.total_loss, r3.total_loss);
            close("grad norm", r1.grad_norm, r3.grad_norm);
            close("mean rho", r1.mean_rho, r3.mean_rho);
            close("rho clipped", r1.rho_clipped_fraction, r3.rho_clipped_fraction);
            close("explained variance", r1.explained_variance, r3.explained_variance);
            assert_eq!(r1.priorities.len(), b);
            for (i, (p1, p3)) in r1.priorities.iter().zip(&r3.priorities).enumerate() {
                close(&format!("priority {i}"), *p1, *p3);
            }
            assert!(r1.grad_norm > 0.0);
        }
        for (p1, p3) in params(&one).iter().zip(&params(&three)) {
            for (a, b) in p1.iter().zip(p3) {
                assert!((a - b).abs() < 1e-5, "{what}: parameter {a} vs {b}");
            }
        }
        assert_eq!((three.steps(), three.frames()), (2, 2 * (t * b) as u64));
    }
}

/// A non-finite loss in one part of a split batch fails the whole update,
/// which changes nothing.
#[test]
fn a_bad_part_of_a_split_batch_changes_nothing() {
    let config = LearnerConfig {
        cpu_threads: 2,
        ..LearnerConfig::default()
    };
    let mut l = ImpalaLearner::new(4, ActionKind::Categorical(2), &NetConfig::default(), config).unwrap();
    let mut batch = synthetic_batch(5, 8, 6, 4, 2);
    let mut rewards = batch.rewards.to_vec2::<f32>().unwrap();
    rewards[3][5] = f32::NAN; // unroll 5: the second part
    batch.rewards = Tensor::new(rewards, &Device::Cpu).unwrap();
    let before = params(&l);
    let e = l.step(&batch).unwrap_err();
    assert!(matches!(e, LearnerError::NonFinite { what: "loss", .. }), "{e}");
    assert_eq!(params(&l), before);
    assert_eq!(l.steps(), 0);
}
