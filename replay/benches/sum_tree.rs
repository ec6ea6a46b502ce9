//! Throughput of the replay data structures at 1M capacity: `SumTree` set
//! (update) and `find_prefix_sum` (sample), and `ReplayIndex` insert,
//! update_priority and sample (batch 256) in prioritized mode.
//!
//! Inputs are random and pre-generated (1M of each, larger than the caches'
//! share of the tree), walked in chunks so consecutive iterations touch
//! different leaves. Throughput is reported per element (per tree op, per
//! inserted / updated / sampled item).
//!
//! Run: `cargo bench -p cml-replay --bench sum_tree`.

use std::hint::black_box;
use std::time::Duration;

use cml_replay::{IndexConfig, ReplayIndex, SamplingMode, SumTree};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const CAPACITY: usize = 1 << 20;
/// Pre-generated inputs per benchmark.
const INPUTS: usize = 1 << 20;
/// Ops per timed iteration.
const CHUNK: usize = 1024;
const SAMPLE_BATCH: usize = 256;

/// Walks `inputs` in chunks of `CHUNK`, wrapping around.
struct Chunks<T> {
    inputs: Vec<T>,
    cursor: usize,
}

impl<T> Chunks<T> {
    fn new(inputs: Vec<T>) -> Self {
        Self { inputs, cursor: 0 }
    }

    fn next(&mut self) -> &[T] {
        let start = self.cursor;
        self.cursor = (self.cursor + CHUNK) % self.inputs.len();
        &self.inputs[start..start + CHUNK]
    }
}

fn random_tree(rng: &mut SmallRng) -> SumTree {
    let mut tree = SumTree::new(CAPACITY);
    for index in 0..CAPACITY {
        tree.set(index, rng.random::<f64>());
    }
    tree
}

fn full_index(rng: &mut SmallRng) -> ReplayIndex {
    let config = IndexConfig {
        seed: 42,
        ..IndexConfig::new(CAPACITY, SamplingMode::Prioritized)
    };
    let mut index = match ReplayIndex::new(config) {
        Ok(index) => index,
        Err(e) => panic!("{e}"),
    };
    for _ in 0..CAPACITY {
        if let Err(e) = index.insert(Some(rng.random::<f64>() * 10.0)) {
            panic!("{e}");
        }
    }
    index
}

fn sum_tree(c: &mut Criterion) {
    let mut rng = SmallRng::seed_from_u64(1);
    let mut group = c.benchmark_group("sum_tree_1M");
    group.throughput(Throughput::Elements(CHUNK as u64));

    let mut tree = random_tree(&mut rng);
    let mut writes = Chunks::new(
        (0..INPUTS)
            .map(|_| (rng.random_range(0..CAPACITY), rng.random::<f64>()))
            .collect::<Vec<_>>(),
    );
    group.bench_function("set", |b| {
        b.iter(|| {
            for &(index, value) in writes.next() {
                tree.set(index, value);
            }
        })
    });

    let total = tree.total();
    let mut masses = Chunks::new((0..INPUTS).map(|_| rng.random::<f64>() * total).collect::<Vec<_>>());
    group.bench_function("find_prefix_sum", |b| {
        b.iter(|| {
            let mut found = 0usize;
            for &mass in masses.next() {
                found ^= tree.find_prefix_sum(mass);
            }
            black_box(found)
        })
    });
    group.finish();
}

fn replay_index(c: &mut Criterion) {
    let mut rng = SmallRng::seed_from_u64(2);
    let mut group = c.benchmark_group("replay_index_1M_prioritized");

    group.throughput(Throughput::Elements(CHUNK as u64));
    let mut index = full_index(&mut rng);
    let mut priorities = Chunks::new((0..INPUTS).map(|_| rng.random::<f64>() * 10.0).collect::<Vec<_>>());
    group.bench_function("insert", |b| {
        b.iter(|| {
            for &priority in priorities.next() {
                // Full: every insert also evicts.
                if let Ok(inserted) = index.insert(Some(priority)) {
                    black_box(inserted);
                }
            }
        })
    });

    let mut index = full_index(&mut rng);
    // The index no longer changes its keys: all of [next - CAPACITY, next) stay live.
    let first_live = index.next_key() - CAPACITY as u64;
    let mut updates = Chunks::new(
        (0..INPUTS)
            .map(|_| {
                (
                    first_live + rng.random_range(0..CAPACITY as u64),
                    rng.random::<f64>() * 10.0,
                )
            })
            .collect::<Vec<_>>(),
    );
    group.bench_function("update_priority", |b| {
        b.iter(|| {
            for &(key, priority) in updates.next() {
                if let Ok(outcome) = index.update_priority(key, priority) {
                    black_box(outcome);
                }
            }
        })
    });

    group.throughput(Throughput::Elements(SAMPLE_BATCH as u64));
    let mut out = Vec::with_capacity(SAMPLE_BATCH);
    group.bench_function("sample_256", |b| {
        b.iter(|| {
            index.sample(SAMPLE_BATCH, &mut out);
            black_box(out.len())
        })
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = sum_tree, replay_index
}
criterion_main!(benches);
