//! A real replay shard process on loopback, fed by two real client
//! processes, sampled and reprioritised by this test as the learner.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{setup, spawn};

use cml_proto::{ActionLayout, SharedKey, SocketOptions, UnrollLayout};
use cml_replay::synthetic::synthetic_item;
use cml_replay::{ReplayClient, SampledBatch};

fn layout() -> UnrollLayout {
    UnrollLayout::flat(20, 4, ActionLayout::Discrete { n: 2 })
}

/// Unroll b of a sampled batch, its frames concatenated (as `synthetic_item`).
fn item(batch: &SampledBatch, b: usize) -> Vec<u8> {
    layout().slice_unrolls(&batch.frames, b..b + 1).concat()
}

#[test]
fn shard_process_serves_two_clients_survives_a_killed_one_and_keeps_contents() {
    let (dir, config, endpoint) = setup("main", "capacity = 3000\nalpha = 1.0\ncredit_window = 64\n");
    let config_arg = config.to_str().unwrap();
    let mut shard = spawn(&["replay", "--config", config_arg, "--shard", "0"], &dir, Stdio::null());

    let key = SharedKey::read_file(&dir.join("run.key")).unwrap();
    let ctx = zmq::Context::new();
    let mut learner = ReplayClient::connect(
        &ctx,
        &key,
        &SocketOptions::default(),
        std::slice::from_ref(&endpoint),
        1,
    )
    .unwrap();
    let welcome = learner.hello(Duration::from_secs(20)).expect("the shard answers");
    assert_eq!(welcome[0].layout, layout());
    assert_eq!(welcome[0].capacity, 3000);

    // Client A inserts 1500 unrolls and exits; client B streams until killed.
    let load = |actor: &str, unrolls: &str, out: Stdio| {
        spawn(
            &[
                "replay-load",
                "--config",
                config_arg,
                "--actor-id",
                actor,
                "--unrolls",
                unrolls,
                "--batch",
                "25",
            ],
            &dir,
            out,
        )
    };
    let mut a = load("1", "1500", Stdio::piped());
    let mut b = load("2", "100000000", Stdio::null());

    // Wait (bounded) until B has inserted a good amount, then SIGKILL it.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let stats = learner.stats(0, Duration::from_secs(5)).unwrap();
        if stats.inserted_total >= 4000 {
            break;
        }
        assert!(Instant::now() < deadline, "inserts too slow: {stats:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    b.0.kill().unwrap();
    b.0.wait().unwrap();

    let a_status = a.0.wait().unwrap();
    let mut summary = String::new();
    a.0.stdout.take().unwrap().read_to_string(&mut summary).unwrap();
    assert!(a_status.success(), "client A failed: {summary}");
    let summary: serde_json::Value = serde_json::from_str(summary.trim()).unwrap();
    assert_eq!(summary["stored"], 1500, "{summary}");
    assert_eq!(summary["refused"], 0, "{summary}");

    // The shard is still serving after B vanished mid-stream.
    std::thread::sleep(Duration::from_millis(300));
    let stats = learner.stats(0, Duration::from_secs(5)).unwrap();
    assert!(stats.inserted_total >= 4000);
    assert_eq!(stats.size, 3000, "a full prioritized shard holds its capacity");
    assert_eq!(stats.evicted_total, stats.inserted_total - 3000, "{stats:?}");
    // Only the killed client's last inserts may be refused: once its
    // connection is gone the shard forgets it, and inserts still queued from
    // it have no credit (at most its window of 64 unrolls: 3 inserts).
    let refused: u64 = stats.rejected.values().sum();
    assert!(refused == stats.rejected["no_credit"] && refused <= 3, "{stats:?}");
    let settled = stats.inserted_total;

    // Every sampled unroll is exactly what its client generated.
    let batch = learner.sample(512, 0.4, Duration::from_secs(5)).unwrap();
    assert_eq!(batch.count, 512);
    let mut seen_actors = [false; 3];
    for i in 0..batch.count {
        let (actor, index) = (batch.actor_ids[i], batch.policy_versions[i]);
        assert!(actor == 1 || actor == 2, "actor {actor}");
        seen_actors[actor as usize] = true;
        assert_eq!(
            item(&batch, i),
            synthetic_item(&layout(), actor, index),
            "item {i}: actor {actor} #{index}"
        );
        assert!(
            batch.keys[i] >= settled - 3000 && batch.keys[i] < settled,
            "key {} evicted",
            batch.keys[i]
        );
        assert!(
            (batch.weights[i] - 1.0).abs() < 1e-6,
            "equal priorities give equal weights"
        );
    }
    assert!(seen_actors[2]);

    // Raise one item's priority far above the rest: it dominates sampling,
    // and its importance weight is the smallest.
    let hot = batch.keys[0];
    learner.update_priorities(&[0], &[hot], &[3000.0 * 99.0]).unwrap();
    // An update for an evicted item is ignored and counted.
    learner.update_priorities(&[0], &[0], &[5.0]).unwrap();
    let batch = learner.sample(400, 1.0, Duration::from_secs(5)).unwrap();
    let hits = batch.keys.iter().filter(|&&k| k == hot).count();
    // P(hot) = 297000 / (297000 + 2999) ≈ 0.99.
    assert!(hits >= 380, "hot item drawn {hits} of 400 times");
    let hot_weight = batch.weights[batch.keys.iter().position(|&k| k == hot).unwrap()];
    let cold_weight = batch.weights.iter().copied().fold(0.0f32, f32::max);
    assert!((cold_weight - 1.0).abs() < 1e-6);
    // w = (P_hot / P_min)^-1 = 1 / 297000 with β = 1.
    assert!(
        (hot_weight as f64 - 1.0 / 297000.0).abs() < 1e-8,
        "hot weight {hot_weight}"
    );
    let stats = learner.stats(0, Duration::from_secs(5)).unwrap();
    assert_eq!(stats.priority_updates_total, 1);
    assert_eq!(stats.stale_updates_total, 1);
    assert_eq!(stats.inserted_total, settled);
    assert_eq!(stats.sampled_total, 912);

    // SIGTERM stops the shard cleanly.
    let pid = shard.0.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(status) = shard.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "shard ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "shard exit: {status:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
