//! An actor host process with 1024 actors against a real replay shard
//! process and an in-test learner-side weight publisher, all on loopback:
//! unrolls arrive with the right layout and version, a weight bump shows up
//! in later unrolls, delivery resumes after the shard is killed and
//! restarted, and the learner side's host table shows the host while it
//! runs and as gone (it said so) once it stops.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use candle_core::Device;
use candle_nn::VarMap;
use cml_policy::{ActionKind, NetConfig, PolicyNet};
use cml_proto::weights::WeightPublisher;
use cml_proto::{ActionLayout, SharedKey, SocketOptions, UnrollLayout};
use cml_replay::ReplayClient;
use common::{free_port, setup, spawn};

fn weights(seed: u64) -> Vec<u8> {
    let varmap = VarMap::new();
    PolicyNet::init(
        &varmap,
        4,
        ActionKind::Categorical(2),
        &NetConfig::default(),
        seed,
        &Device::Cpu,
    )
    .unwrap();
    PolicyNet::to_safetensors(&varmap).unwrap()
}

/// Samples (queue mode: consumes) up to `n` unrolls; returns their policy versions.
fn drain(learner: &mut ReplayClient, n: usize) -> Vec<u64> {
    let batch = learner.sample(n, 1.0, Duration::from_secs(5)).expect("shard answers");
    let layout = UnrollLayout::flat(20, 4, ActionLayout::Discrete { n: 2 });
    layout
        .check_payload(
            batch.count,
            &layout.tensor_specs(batch.count, layout.final_count(&batch.frames)),
            &batch.frames,
        )
        .expect("the batch is well formed");
    for &a in &batch.actor_ids {
        assert!(a < 1024, "actor id {a}");
    }
    // CartPole gives reward 1 per step.
    for r in cml_proto::tensor::f32s(&batch.frames[3]) {
        assert_eq!(r, 1.0);
    }
    // CartPole episodes: return = length, within the time limit.
    for e in &batch.episodes {
        assert!(e.actor_id < 1024 && (1..=500).contains(&e.length), "{e:?}");
        assert_eq!(e.episode_return, e.length as f64);
    }
    batch.policy_versions
}

#[test]
fn actor_host_delivers_follows_weights_and_survives_a_shard_restart() {
    let (wp, wr) = (free_port(), free_port());
    let (dir, config, endpoint) = setup(
        "actor",
        &format!(
            "mode = \"queue\"\ncapacity = 20000\n\
             [actor]\nworkers = 2\nenvs_per_worker = 512\ninsert_batch = 64\nreport_interval_s = 1.0\n\
             [learner]\nweights_endpoint = \"tcp://127.0.0.1:{wp}\"\n\
             weights_request_endpoint = \"tcp://127.0.0.1:{wr}\"\n"
        ),
    );
    let config_arg = config.to_str().unwrap();
    let key = SharedKey::read_file(&dir.join("run.key")).unwrap();
    let start_publisher = || {
        WeightPublisher::start(
            &key,
            &SocketOptions::default(),
            &format!("tcp://127.0.0.1:{wp}"),
            &format!("tcp://127.0.0.1:{wr}"),
        )
        .unwrap()
    };
    let mut publisher = start_publisher();
    // Published before the host starts: it must ask for them (late join).
    publisher.publish(1, weights(1));
    let shard_args = ["replay", "--config", config_arg, "--shard", "0"];
    let mut shard = spawn(&shard_args, &dir, Stdio::null());
    let mut actor = spawn(&["actor", "--config", config_arg, "--json"], &dir, Stdio::piped());

    let ctx = zmq::Context::new();
    let mut learner = ReplayClient::connect(
        &ctx,
        &key,
        &SocketOptions::default(),
        std::slice::from_ref(&endpoint),
        3,
    )
    .unwrap();
    learner.hello(Duration::from_secs(20)).unwrap();

    // Unrolls of version 1 arrive.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = 0usize;
    while seen < 2048 {
        assert!(Instant::now() < deadline, "only {seen} unrolls arrived");
        let versions = drain(&mut learner, 512);
        assert!(versions.iter().all(|&v| v == 1), "{versions:?}");
        seen += versions.len();
        std::thread::sleep(Duration::from_millis(20));
    }

    // Bump the weights: later unrolls carry version 2.
    publisher.publish(2, weights(2));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(Instant::now() < deadline, "version 2 never became the only one");
        let versions = drain(&mut learner, 512);
        if !versions.is_empty() && versions.iter().all(|&v| v == 2) {
            break;
        }
        assert!(versions.iter().all(|&v| v == 1 || v == 2));
        std::thread::sleep(Duration::from_millis(20));
    }
    // The host reports itself once a second: the learner's table has it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let row = loop {
        let rows = publisher.hosts().rows(Instant::now());
        if let Some(row) = rows
            .first()
            .filter(|r| r.policy_version == 2 && r.env_steps_per_s > 0.0)
        {
            break row.clone();
        }
        assert!(Instant::now() < deadline, "no host row with version 2: {rows:?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        (row.state, row.left, row.actors, row.host_id),
        ("active", false, 1024, 0)
    );
    assert!(row.address.contains("127.0.0.1"), "{row:?}");
    assert!(row.env_steps_total >= 2048 * 20 && row.unrolls_total >= 2048, "{row:?}");
    assert_eq!(row.hostname, cml_proto::host_table::local_hostname());

    // Kill the shard and start a new one on the same port: delivery resumes.
    shard.0.kill().unwrap();
    shard.0.wait().unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        actor.0.try_wait().unwrap().is_none(),
        "the actor host died with the shard"
    );
    let _shard = spawn(&shard_args, &dir, Stdio::null());
    let mut learner = ReplayClient::connect(
        &ctx,
        &key,
        &SocketOptions::default(),
        std::slice::from_ref(&endpoint),
        4,
    )
    .unwrap();
    learner.hello(Duration::from_secs(20)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut resumed = 0usize;
    while resumed < 1024 {
        assert!(Instant::now() < deadline, "delivery did not resume ({resumed} unrolls)");
        let versions = drain(&mut learner, 512);
        assert!(versions.iter().all(|&v| v == 2));
        resumed += versions.len();
        std::thread::sleep(Duration::from_millis(50));
    }

    // A new learner process (a restart from an older checkpoint) publishes
    // version 1 again on the same endpoints: the host follows it, though 1
    // is lower than the 2 it has.
    drop(publisher);
    let mut publisher = start_publisher();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(
            Instant::now() < deadline,
            "the host never took the new learner's version 1"
        );
        // Published again and again: a SUB joining late misses the first.
        publisher.publish(1, weights(3));
        let versions = drain(&mut learner, 512);
        if !versions.is_empty() && versions.iter().all(|&v| v == 1) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }

    // SIGTERM: a clean stop within a second or two, with a report.
    let pid = actor.0.id().to_string();
    let stopped = Instant::now();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = loop {
        if let Some(status) = actor.0.try_wait().unwrap() {
            break status;
        }
        assert!(stopped.elapsed() < Duration::from_secs(5), "actor host ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
    assert!(
        stopped.elapsed() < Duration::from_secs(2),
        "stop took {:?}",
        stopped.elapsed()
    );
    // It said it was leaving: gone at once, long before a silence would
    // count (HOST_GONE_AFTER).
    let deadline = stopped + Duration::from_secs(3);
    let gone = loop {
        let rows = publisher.hosts().rows(Instant::now());
        if let Some(row) = rows.iter().find(|r| r.state == "gone") {
            break row.clone();
        }
        assert!(Instant::now() < deadline, "the stopped host is not gone: {rows:?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(cml_proto::host_table::HOST_GONE_AFTER > Duration::from_secs(3));
    assert!(gone.left, "{gone:?}");
    // It said goodbye to the shard too: forgotten there at once, not after
    // the shard's sender timeout (30 s by default).
    let stats = learner.stats(0, Duration::from_secs(5)).unwrap();
    assert_eq!((stats.senders, stats.outstanding_credit), (0, 0), "{stats:?}");
    let mut out = String::new();
    std::io::Read::read_to_string(&mut actor.0.stdout.take().unwrap(), &mut out).unwrap();
    let report: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(report["actors"], 1024);
    assert_eq!(report["weights_version"], 1);
    assert!(report["outages"].as_u64().unwrap() >= 1, "{report}");
    assert!(report["unrolls_delivered"].as_u64().unwrap() >= 2048 + 1024, "{report}");
    // The last status carries the final counts.
    assert_eq!(report["unrolls_delivered"], gone.unrolls_total);
    assert_eq!(report["env_steps_delivered"], gone.env_steps_total);
    assert_eq!((gone.policy_version, gone.actors), (1, 1024));
    let _ = std::fs::remove_dir_all(&dir);
}
