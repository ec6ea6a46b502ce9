//! CartPole-v1 env steps/s with random actions, one core:
//! - `cartpole/single`: one env, stepped and reset on episode end;
//! - `cartpole/vec1024_raw`: 1024 `CartPole`s in a `VecEnv` (autoreset);
//! - `cartpole/vec1024_registry`: 1024 envs from `make("CartPole-v1")`
//!   (time limit and input checks included), in a `VecEnv`.
//!
//! `benches/env_bench.sh` runs this and Gymnasium side by side and prints
//! the ratios.

use std::hint::black_box;

use cml_envs::classic::CartPole;
use cml_envs::rng::NumpyRng;
use cml_envs::{Action, Env, Params, VecActions, VecEnv};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const N: usize = 1024;

fn cartpole(c: &mut Criterion) {
    let mut group = c.benchmark_group("cartpole");

    group.throughput(Throughput::Elements(1));
    group.bench_function("single", |b| {
        let mut env = CartPole::default();
        let mut obs = [0.0f32; 4];
        let mut rng = NumpyRng::from_seed(1);
        env.reset(Some(0), &mut obs).expect("reset");
        b.iter(|| {
            let a = rng.below(2) as i64;
            let step = env.step(Action::Discrete(a), &mut obs).expect("step");
            if step.done() {
                env.reset(None, &mut obs).expect("reset");
            }
            black_box(&obs);
        })
    });

    group.throughput(Throughput::Elements(N as u64));
    group.bench_function("vec1024_raw", |b| {
        let mut venv = VecEnv::new(vec![CartPole::default(); N]).expect("vector");
        venv.reset(Some(0)).expect("reset");
        let mut rng = NumpyRng::from_seed(2);
        let mut actions = vec![0i64; N];
        b.iter(|| {
            for a in actions.iter_mut() {
                *a = rng.below(2) as i64;
            }
            venv.step(VecActions::Discrete(&actions)).expect("step");
            black_box(venv.observations());
        })
    });

    group.bench_function("vec1024_registry", |b| {
        let mut venv = VecEnv::make("CartPole-v1", &Params::new(), N).expect("vector");
        venv.reset(Some(0)).expect("reset");
        let mut rng = NumpyRng::from_seed(3);
        let mut actions = vec![0i64; N];
        b.iter(|| {
            for a in actions.iter_mut() {
                *a = rng.below(2) as i64;
            }
            venv.step(VecActions::Discrete(&actions)).expect("step");
            black_box(venv.observations());
        })
    });
    group.finish();
}

criterion_group!(benches, cartpole);
criterion_main!(benches);
