//! The learner solves an easy problem end to end: a two-armed bandit
//! (arm 1 pays 1.0 on average, arm 0 pays 0.6, both noisy), played by the learner's own policy and
//! unrolled as T-step batches of one-step episodes. Bounded in steps and time.

use std::time::{Duration, Instant};

use candle_core::{Device, Tensor, D};
use cml_learner::optim::RmsPropConfig;
use cml_learner::{ImpalaLearner, LearnerConfig, OptimizerConfig, UnrollBatch};
use cml_policy::{ActionKind, NetConfig, PolicyParams};

const T: usize = 5;
const B: usize = 16;

fn prob_of_arm_1(learner: &ImpalaLearner) -> f32 {
    let obs = Tensor::ones((1, 1), candle_core::DType::F32, &Device::Cpu).unwrap();
    let out = learner.net().forward(&obs).unwrap();
    let PolicyParams::Logits(logits) = out.policy else {
        panic!("categorical")
    };
    let probs = candle_nn::ops::softmax(&logits, D::Minus1).unwrap();
    probs.to_vec2::<f32>().unwrap()[0][1]
}

#[test]
fn learner_finds_the_better_arm() {
    let config = LearnerConfig {
        optimizer: OptimizerConfig::Rmsprop(RmsPropConfig {
            lr: 1e-3,
            decay: 0.99,
            epsilon: 0.01,
        }),
        seed: 3,
        ..Default::default()
    };
    let net = NetConfig {
        hidden: vec![16],
        ..Default::default()
    };
    let mut learner = ImpalaLearner::new(1, ActionKind::Categorical(2), &net, config).unwrap();
    let start_p = prob_of_arm_1(&learner);
    let mut rng: u64 = 0x1234_5678_9abc_def1;
    let mut uniform = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng >> 40) as f32 / (1u64 << 24) as f32
    };
    let started = Instant::now();
    let mut p = start_p;
    let mut steps = 0;
    while p < 0.95 && steps < 400 && started.elapsed() < Duration::from_secs(60) {
        // Act with the current policy (behaviour = the learner's policy now).
        let mut actions = Vec::with_capacity(T * B);
        let mut log_mu = Vec::with_capacity(T * B);
        let mut rewards = Vec::with_capacity(T * B);
        for _ in 0..T * B {
            let a = u32::from(uniform() < p);
            actions.push(a);
            log_mu.push(if a == 1 { p.ln() } else { (1.0 - p).ln() });
            // Noisy payouts: arm 1 pays 1.0 ± 0.5 on average, arm 0 pays 0.6 ± 0.5.
            let noise = uniform() - 0.5;
            rewards.push(if a == 1 { 1.0 + noise } else { 0.6 + noise });
        }
        let batch = UnrollBatch {
            observations: Tensor::ones((T + 1, B, 1), candle_core::DType::F32, &Device::Cpu).unwrap(),
            actions: Tensor::from_vec(actions, (T, B), &Device::Cpu).unwrap(),
            behaviour_log_probs: Tensor::from_vec(log_mu, (T, B), &Device::Cpu).unwrap(),
            rewards: Tensor::from_vec(rewards, (T, B), &Device::Cpu).unwrap(),
            // Every pull is a whole episode.
            terminated: Tensor::ones((T, B), candle_core::DType::F32, &Device::Cpu).unwrap(),
            truncated: Tensor::zeros((T, B), candle_core::DType::F32, &Device::Cpu).unwrap(),
            final_observations: None,
            importance_weights: None,
            initial_state: None,
        };
        let report = learner.step(&batch).unwrap();
        assert_eq!(report.priorities.len(), B);
        assert!(report.grad_norm.is_finite());
        p = prob_of_arm_1(&learner);
        steps += 1;
    }
    eprintln!("bandit: P(arm 1) {start_p} -> {p} in {steps} learner steps");
    assert!(p >= 0.95, "after {steps} steps P(arm 1) = {p} (started at {start_p})");
    assert!(start_p < 0.8, "the policy started undecided ({start_p})");
}
