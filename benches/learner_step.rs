//! Learner samples/s on CPU, on a batch of 32 unrolls × T = 20 of
//! CartPole-shaped data (obs 4, 2 actions), MLP 64×64:
//! - `learner/mlp64x64_b32_t20`: one IMPALA update (forward over T+1
//!   steps, V-trace, loss, backward, global-norm clipping, RMSProp);
//! - `learner/apex_mlp64x64_b32_t20`: one Ape-X DQN update (online and
//!   target forward, n-step double-Q targets, IS-weighted Huber loss,
//!   backward, clipping, Adam, priorities; target copied every 100 steps).
//!
//! - `learner/minatar_b32_t20`: the IMPALA update of the MinAtar network
//!   (conv 16@3×3 + FC 128) on 32 unrolls × T = 20 of `[10, 10, 4]` 0/1
//!   observations, 3 actions.
//! - `learner/nature_b8_t5`: the IMPALA update of the Nature network
//!   (conv 32@8×8/4, 64@4×4/2, 64@3×3/1, FC 512) on 8 unrolls × T = 5 of
//!   `[84, 84, 4]` frames of 0..=255, 6 actions (a small batch: candle's CPU
//!   convolution backward is slow).
//!
//! - `policy/nature_forward_32`: the Nature network's forward pass on 32
//!   such frames, no gradient: what an actor worker of 32 Atari envs runs
//!   each tick.
//!
//! The IMPALA updates also run with `learner.cpu_threads = 2` (the batch
//! split along B over two threads): the same names with `_threads2`.
//!
//! `benches/learner_bench.sh` runs them beside the same updates in PyTorch
//! (`benches/torch_learner_step.py`, `benches/torch_apex_step.py`) and prints
//! the ratios.

use candle_core::{Device, Tensor};
use cml_learner::optim::AdamConfig;
use cml_learner::optim::RmsPropConfig;
use cml_learner::{ApexDqnLearner, DqnConfig, ImpalaLearner, LearnerConfig, OptimizerConfig, UnrollBatch};
use cml_policy::{ActionKind, NetConfig};
use criterion::{criterion_group, Criterion, Throughput};

const T: usize = 20;
const B: usize = 32;
const OBS: usize = 4;

fn batch() -> UnrollBatch {
    batch_of(T, B, OBS, 2, Values::Signed)
}

/// What observations hold.
#[derive(Clone, Copy)]
enum Values {
    /// Uniform in [-1, 1].
    Signed,
    /// 0 or 1 (1 with probability 0.1), as MinAtar's planes.
    Binary,
    /// Integers 0..=255, as pixel frames.
    Pixels,
}

/// `b` unrolls of `t` steps, `obs_dim` values per observation and
/// `actions` actions.
fn batch_of(t: usize, b: usize, obs_dim: usize, actions: u32, values: Values) -> UnrollBatch {
    let dev = Device::Cpu;
    let mut s: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 40) as f32 / (1u64 << 24) as f32
    };
    let obs: Vec<f32> = (0..(t + 1) * b * obs_dim)
        .map(|_| match values {
            Values::Binary => f32::from(u8::from(next() < 0.1)),
            Values::Signed => next() * 2.0 - 1.0,
            Values::Pixels => (next() * 255.0).round(),
        })
        .collect();
    let n_actions = actions;
    let actions: Vec<u32> = (0..t * b)
        .map(|_| ((next() * n_actions as f32) as u32).min(n_actions - 1))
        .collect();
    let terminated: Vec<f32> = (0..t * b).map(|_| f32::from(u8::from(next() < 0.05))).collect();
    UnrollBatch {
        observations: Tensor::from_vec(obs, (t + 1, b, obs_dim), &dev).unwrap(),
        actions: Tensor::from_vec(actions, (t, b), &dev).unwrap(),
        behaviour_log_probs: Tensor::full(-(n_actions as f32).ln(), (t, b), &dev).unwrap(),
        rewards: Tensor::ones((t, b), candle_core::DType::F32, &dev).unwrap(),
        terminated: Tensor::from_vec(terminated, (t, b), &dev).unwrap(),
        truncated: Tensor::zeros((t, b), candle_core::DType::F32, &dev).unwrap(),
        final_observations: None,
        importance_weights: None,
        initial_state: None,
    }
}

/// The IMPALA learner's settings for both IMPALA benches (RMSProp, as the
/// PyTorch side).
fn impala_config() -> LearnerConfig {
    LearnerConfig {
        optimizer: OptimizerConfig::Rmsprop(RmsPropConfig {
            lr: 6e-4,
            decay: 0.99,
            epsilon: 0.01,
        }),
        ..Default::default()
    }
}

fn learner_step(c: &mut Criterion) {
    // Each IMPALA update on one thread (`learner.cpu_threads = 1`) and on
    // two (the batch split along B, data parallel): `_threads2`.
    for threads in [1, 2] {
        let config = LearnerConfig {
            cpu_threads: threads,
            ..impala_config()
        };
        let suffix = if threads == 1 {
            String::new()
        } else {
            format!("_threads{threads}")
        };
        let mut learner = ImpalaLearner::new(OBS, ActionKind::Categorical(2), &NetConfig::default(), config.clone())
            .expect("learner");
        let batch = batch();
        let mut group = c.benchmark_group("learner");
        group.throughput(Throughput::Elements((T * B) as u64));
        group.bench_function(format!("mlp64x64_b32_t20{suffix}"), |b| {
            b.iter(|| learner.step(&batch).expect("step"))
        });

        let minatar = NetConfig {
            torso: cml_policy::Torso::Minatar,
            ..NetConfig::default()
        };
        let mut learner =
            ImpalaLearner::new(vec![10, 10, 4], ActionKind::Categorical(3), &minatar, config.clone()).expect("learner");
        let batch = batch_of(T, B, 400, 3, Values::Binary);
        group.bench_function(format!("minatar_b32_t20{suffix}"), |b| {
            b.iter(|| learner.step(&batch).expect("step"))
        });
        group.finish();

        let mut learner =
            ImpalaLearner::new(vec![84, 84, 4], ActionKind::Categorical(6), &nature(), config).expect("learner");
        let (t, b) = (5, 8);
        let batch = batch_of(t, b, 84 * 84 * 4, 6, Values::Pixels);
        let mut group = c.benchmark_group("learner");
        group.throughput(Throughput::Elements((t * b) as u64));
        group.sample_size(10);
        group.bench_function(format!("nature_b8_t5{suffix}"), |bench| {
            bench.iter(|| learner.step(&batch).expect("step"))
        });
        group.finish();
    }

    let net = cml_policy::PolicyNet::init(
        &candle_nn::VarMap::new(),
        vec![84, 84, 4],
        ActionKind::Categorical(6),
        &nature(),
        0,
        &Device::Cpu,
    )
    .expect("network");
    let frames = batch_of(0, 32, 84 * 84 * 4, 6, Values::Pixels).observations;
    let frames = frames.reshape((32, 84 * 84 * 4)).expect("frames");
    let mut group = c.benchmark_group("policy");
    group.throughput(Throughput::Elements(32));
    group.sample_size(20);
    group.bench_function("nature_forward_32", |bench| {
        bench.iter(|| net.forward(&frames).expect("forward"))
    });
    group.finish();
}

fn nature() -> NetConfig {
    NetConfig {
        torso: cml_policy::Torso::Nature,
        ..NetConfig::default()
    }
}

fn apex_step(c: &mut Criterion) {
    let config = LearnerConfig {
        optimizer: OptimizerConfig::Adam(AdamConfig {
            lr: 5e-4,
            ..AdamConfig::default()
        }),
        dqn: DqnConfig {
            target_update_interval: 100,
            ..DqnConfig::default()
        },
        ..Default::default()
    };
    let mut learner =
        ApexDqnLearner::new(OBS, ActionKind::Categorical(2), &NetConfig::default(), config).expect("learner");
    let mut batch = batch();
    let weights: Vec<f32> = (0..B).map(|b| 0.1 + 0.9 * b as f32 / B as f32).collect();
    batch.importance_weights = Some(Tensor::from_vec(weights, B, &Device::Cpu).expect("weights"));
    let mut group = c.benchmark_group("learner");
    group.throughput(Throughput::Elements((T * B) as u64));
    group.bench_function("apex_mlp64x64_b32_t20", |b| {
        b.iter(|| learner.step_at(&batch, 0).expect("step"))
    });
    group.finish();
}

criterion_group!(benches, learner_step, apex_step);

fn main() {
    // Candle's CPU kernels on one thread, as in every cml-rl process, set
    // before any thread starts.
    cml_run::plumbing::init_compute_threads();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
