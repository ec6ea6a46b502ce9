//! Two shards served on loopback sockets behave like one buffer: inserts
//! spread over both, and the learner's samples follow total priority across
//! them, with global probabilities and importance weights.

use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use cml_proto::{ActionLayout, SharedKey, SocketOptions, UnrollLayout};
use cml_replay::index::{IndexConfig, SamplingMode};
use cml_replay::synthetic::synthetic_unrolls;
use cml_replay::{serve, ReplayClient, ReplayShard, ShardConfig, ShardedInserter};

fn key() -> SharedKey {
    SharedKey::from_bytes([5; 32])
}

fn layout() -> UnrollLayout {
    UnrollLayout::flat(8, 4, ActionLayout::Discrete { n: 2 })
}

fn endpoint() -> String {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    format!("tcp://127.0.0.1:{port}")
}

struct Served {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn start(endpoints: &[String]) -> Served {
    let stop = Arc::new(AtomicBool::new(false));
    let threads = endpoints
        .iter()
        .enumerate()
        .map(|(i, endpoint)| {
            let shard = ReplayShard::new(ShardConfig {
                shard: i as u32,
                shards: endpoints.len() as u32,
                endpoint: endpoint.clone(),
                layout: layout(),
                index: IndexConfig {
                    capacity: 10_000,
                    mode: SamplingMode::Prioritized,
                    alpha: 1.0,
                    priority_epsilon: 1e-6,
                    max_samples_per_item: None,
                    fresh_fraction: 0.0,
                    seed: i as u64,
                },
                max_bytes: 1 << 30,
                credit_window: 64,
                insert_rate: None,
                sender_timeout: Duration::from_secs(60),
                stats_interval: Duration::from_secs(60),
                socket: SocketOptions::default(),
                key: key(),
            })
            .unwrap();
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || serve(shard, &stop).unwrap())
        })
        .collect();
    Served { stop, threads }
}

#[test]
fn two_shards_sample_like_one_buffer() {
    let endpoints = vec![endpoint(), endpoint()];
    let _served = start(&endpoints);
    let ctx = zmq::Context::new();
    let options = SocketOptions::default();
    let timeout = Duration::from_secs(10);

    let mut inserter = ShardedInserter::connect(&ctx, &key(), &options, &endpoints, timeout).unwrap();
    assert_eq!(inserter.layout().unwrap(), layout());
    let mut per_shard = [0u64; 2];
    for i in 0..100 {
        let shard = inserter
            .send(synthetic_unrolls(&layout(), 1, i * 20, 20), timeout)
            .unwrap()
            .expect("credit");
        per_shard[shard] += 20;
    }
    assert_eq!(per_shard.iter().sum::<u64>(), 2000);
    assert!(
        per_shard[0] >= 600 && per_shard[1] >= 600,
        "unrolls not spread: {per_shard:?}"
    );

    let mut learner = ReplayClient::connect(&ctx, &key(), &options, &endpoints, 11).unwrap();
    learner.hello(timeout).unwrap();
    // All acknowledged, so the shards hold everything.
    let deadline = std::time::Instant::now() + timeout;
    let mut sizes = [0u64; 2];
    while sizes.iter().sum::<u64>() < 2000 {
        assert!(std::time::Instant::now() < deadline, "inserts not stored: {sizes:?}");
        for (s, size) in sizes.iter_mut().enumerate() {
            *size = learner.stats(s, timeout).unwrap().size;
        }
    }
    assert_eq!(sizes, per_shard);
    // Frames produced come from the shards' accepted inserts, not from what
    // the learner samples: sampling with replacement consumes more than was
    // produced, and the count of inserts does not move.
    let mut consumed = 0usize;
    for _ in 0..10 {
        consumed += learner.sample(400, 0.4, timeout).unwrap().count;
    }
    assert_eq!(consumed, 4000);
    assert_eq!(learner.inserted_unrolls(), 2000, "every accepted unroll, counted once");

    // Every item of shard 1 gets priority 3, shard 0 stays at 1.
    let keys: Vec<u64> = (0..per_shard[1]).collect();
    learner
        .update_priorities(&vec![1; keys.len()], &keys, &vec![3.0; keys.len()])
        .unwrap();
    // One sample to learn the new totals, then measure.
    learner.sample(64, 1.0, timeout).unwrap();
    let (n0, n1) = (per_shard[0] as f64, per_shard[1] as f64);
    let expected_share = 3.0 * n1 / (n0 + 3.0 * n1);
    let (mut from_1, mut total) = (0usize, 0usize);
    for _ in 0..40 {
        let batch = learner.sample(250, 1.0, timeout).unwrap();
        for i in 0..batch.count {
            let grand = n0 + 3.0 * n1;
            let (p, w) = if batch.shards[i] == 1 {
                (3.0 / grand, 1.0 / 3.0)
            } else {
                (1.0 / grand, 1.0)
            };
            assert!(
                (batch.probabilities[i] - p).abs() < 1e-9 * p.max(1.0),
                "P {}",
                batch.probabilities[i]
            );
            assert!((f64::from(batch.weights[i]) - w).abs() < 1e-6, "w {}", batch.weights[i]);
        }
        from_1 += batch.shards.iter().filter(|&&s| s == 1).count();
        total += batch.count;
        assert_eq!(batch.replay_size, 2000);
    }
    let share = from_1 as f64 / total as f64;
    // 10 000 draws: the standard error is ~0.005.
    assert!(
        (share - expected_share).abs() < 0.025,
        "shard 1 share {share:.3}, expected {expected_share:.3}"
    );
}

#[test]
fn a_client_without_endpoints_is_an_error() {
    let ctx = zmq::Context::new();
    let e = ReplayClient::connect(&ctx, &key(), &SocketOptions::default(), &[], 0)
        .err()
        .expect("no endpoints refused");
    assert!(e.to_string().contains("no shard endpoints"), "{e}");
}

#[test]
fn a_resumed_learner_counts_only_new_inserts() {
    let endpoints = vec![endpoint()];
    let _served = start(&endpoints);
    let ctx = zmq::Context::new();
    let options = SocketOptions::default();
    let timeout = Duration::from_secs(10);
    let mut inserter = ShardedInserter::connect(&ctx, &key(), &options, &endpoints, timeout).unwrap();
    let mut learner = ReplayClient::connect(&ctx, &key(), &options, &endpoints, 3).unwrap();
    learner.set_insert_counting(cml_replay::InsertCounting::FromFirstReply);
    learner.hello(timeout).unwrap();
    let wait_for = |learner: &mut ReplayClient, size: u64| {
        let deadline = std::time::Instant::now() + timeout;
        while learner.stats(0, timeout).unwrap().size < size {
            assert!(std::time::Instant::now() < deadline, "inserts not stored");
        }
    };
    inserter.send(synthetic_unrolls(&layout(), 1, 0, 30), timeout).unwrap();
    wait_for(&mut learner, 30);
    learner.sample(10, 1.0, timeout).unwrap();
    assert_eq!(
        learner.inserted_unrolls(),
        0,
        "inserts before the first reply are the checkpoint's"
    );
    inserter.send(synthetic_unrolls(&layout(), 1, 30, 20), timeout).unwrap();
    wait_for(&mut learner, 50);
    learner.sample(10, 1.0, timeout).unwrap();
    assert_eq!(learner.inserted_unrolls(), 20);
}
