//! CartPole-v1 env steps/s with random actions, one core:
//! - `cartpole/single`: one env, stepped and reset on episode end;
//! - `cartpole/vec1024_raw`: 1024 `CartPole`s in a `VecEnv` (autoreset);
//! - `cartpole/vec1024_native`: `make_vec("CartPole-v1", .., 1024)`, the
//!   native structure-of-arrays `CartPoleVec` (time limit included);
//! - `cartpole/vec1024_registry`: 1024 envs from `make("CartPole-v1")`
//!   (time limit and input checks included), in a `VecEnv`.
//!
//!
//! and MinAtar, per game (minimal action set, sticky actions 0.1):
//! - `minatar/<game>`: one env, a uniform random action, reset on episode
//!   end (the loop `benches/minatar_python.py` times in Python);
//! - `minatar/<game>_vec64`: 64 envs from `make_vec` (autoreset).
//!
//! `benches/env_bench.sh` and `benches/minatar_bench.sh` run these beside
//! Gymnasium and the `minatar` package and print the ratios.

use std::hint::black_box;

use cml_envs::classic::CartPole;
use cml_envs::minatar::{Asterix, Breakout, Freeway, Game, MinAtar, Seaquest, SpaceInvaders};
use cml_envs::rng::NumpyRng;
use cml_envs::{Action, Env, Params, VecActions, VecEnv, VectorEnv};
use criterion::{criterion_group, criterion_main, Bencher, Criterion, Throughput};

const N: usize = 1024;

/// Fills `actions` with uniform random 0/1 actions, 64 per random draw (the
/// Gymnasium side draws its actions in NumPy blocks, just as cheaply).
fn random_binary_actions(rng: &mut NumpyRng, actions: &mut [i64]) {
    for chunk in actions.chunks_mut(64) {
        let bits = rng.next_u64();
        for (j, a) in chunk.iter_mut().enumerate() {
            *a = ((bits >> j) & 1) as i64;
        }
    }
}

/// Times one vector step of `N` envs with random actions.
fn step_vector(b: &mut Bencher<'_>, venv: &mut dyn VectorEnv, seed: u64) {
    venv.reset(Some(0)).expect("reset");
    let mut rng = NumpyRng::from_seed(seed);
    let mut actions = vec![0i64; N];
    b.iter(|| {
        random_binary_actions(&mut rng, &mut actions);
        venv.step(VecActions::Discrete(&actions)).expect("step");
        black_box(venv.observations());
    })
}

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
        step_vector(b, &mut VecEnv::new(vec![CartPole::default(); N]).expect("vector"), 2)
    });
    group.bench_function("vec1024_native", |b| {
        step_vector(
            b,
            cml_envs::make_vec("CartPole-v1", &Params::new(), N)
                .expect("vector")
                .as_mut(),
            4,
        )
    });
    group.bench_function("vec1024_registry", |b| {
        step_vector(
            b,
            &mut VecEnv::make("CartPole-v1", &Params::new(), N).expect("vector"),
            3,
        )
    });
    group.finish();
}

/// One MinAtar game: a single env, and 64 in a vector.
fn minatar_game<G: Game>(group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>, name: &str) {
    const VEC: usize = 64;
    group.throughput(Throughput::Elements(1));
    group.bench_function(name, |b| {
        let mut env = MinAtar::<G>::new(true, 0.1, true).expect("env");
        let n_actions = env.action_set().len() as u64;
        let mut obs = vec![0.0f32; env.observation_space().flat_dim()];
        let mut rng = NumpyRng::from_seed(1);
        env.reset(Some(0), &mut obs).expect("reset");
        b.iter(|| {
            let a = rng.below(n_actions) as i64;
            let step = env.step(Action::Discrete(a), &mut obs).expect("step");
            if step.done() {
                env.reset(None, &mut obs).expect("reset");
            }
            black_box(&obs);
        })
    });
    group.throughput(Throughput::Elements(VEC as u64));
    group.bench_function(format!("{name}_vec64"), |b| {
        let id = MinAtar::<G>::id(true);
        let mut venv = cml_envs::make_vec(&id, &Params::new(), VEC).expect("vector");
        let n_actions = match venv.action_space() {
            cml_envs::Space::Discrete(n) => *n as u64,
            other => panic!("{id}: {other}"),
        };
        venv.reset(Some(0)).expect("reset");
        let mut rng = NumpyRng::from_seed(2);
        let mut actions = vec![0i64; VEC];
        b.iter(|| {
            for a in actions.iter_mut() {
                *a = rng.below(n_actions) as i64;
            }
            venv.step(VecActions::Discrete(&actions)).expect("step");
            black_box(venv.observations());
        })
    });
}

fn minatar(c: &mut Criterion) {
    let mut group = c.benchmark_group("minatar");
    minatar_game::<Asterix>(&mut group, "asterix");
    minatar_game::<Breakout>(&mut group, "breakout");
    minatar_game::<Freeway>(&mut group, "freeway");
    minatar_game::<Seaquest>(&mut group, "seaquest");
    minatar_game::<SpaceInvaders>(&mut group, "space_invaders");
    group.finish();
}

criterion_group!(benches, cartpole, minatar);
criterion_main!(benches);
