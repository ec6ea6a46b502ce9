//! One replay shard over loopback ZeroMQ, MAC on: CartPole-sized unrolls
//! (T = 20, 936 bytes each) inserted per second by client processes, and
//! sampled per second by a learner-side client, alone and at the same time.
//!
//! `cargo bench --bench replay_shard` (release build; spawns the `cml-rl`
//! binary). Environment: `CML_BENCH_UNROLLS` per inserting client (default
//! 400 000), `CML_BENCH_SECONDS` per sampling phase (default 5),
//! `CML_BENCH_BATCH` unrolls per insert message (default 64).

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cml_proto::{SharedKey, SocketOptions};
use cml_replay::ReplayClient;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() {
    let bin = env!("CARGO_BIN_EXE_cml-rl");
    let unrolls = env_u64("CML_BENCH_UNROLLS", 400_000);
    let seconds = env_u64("CML_BENCH_SECONDS", 5);
    let batch = env_u64("CML_BENCH_BATCH", 64);
    let dir = std::env::temp_dir().join(format!("cml-replay-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = SharedKey::generate().unwrap();
    key.write_new_file(&dir.join("run.key")).unwrap();
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    std::fs::write(
        dir.join("run.toml"),
        format!(
            "[env]\nid = \"CartPole-v1\"\n[actor]\nunroll_length = 20\n[transport]\nkey_file = \"run.key\"\n\
             [replay]\nbase_port = {port}\ncapacity = 1000000\nmax_memory_mb = 2048\ncredit_window = 1024\n"
        ),
    )
    .unwrap();
    let _shard = Reaped(
        Command::new(bin)
            .args(["replay", "--config", "run.toml", "--shard", "0"])
            .current_dir(&dir)
            .env("RUST_LOG", "warn")
            .spawn()
            .unwrap(),
    );
    let ctx = zmq::Context::new();
    let endpoint = format!("tcp://127.0.0.1:{port}");
    let mut learner = ReplayClient::connect(&ctx, &key, &SocketOptions::default(), &[endpoint], 7).unwrap();
    let welcome = learner.hello(Duration::from_secs(20)).unwrap();
    let unroll_bytes = welcome[0].layout.item_bytes() as f64;
    println!(
        "replay shard bench: unroll T=20 obs_dim=4 ({unroll_bytes} bytes), {batch} unrolls per insert message, MAC on"
    );

    let load = |actor: u64, n: u64| {
        Reaped(
            Command::new(bin)
                .args(["replay-load", "--config", "run.toml", "--actor-id", &actor.to_string()])
                .args([
                    "--unrolls",
                    &n.to_string(),
                    "--batch",
                    &batch.to_string(),
                    "--timeout",
                    "60",
                ])
                .current_dir(&dir)
                .env("RUST_LOG", "warn")
                .stdout(Stdio::piped())
                .spawn()
                .unwrap(),
        )
    };
    let finish = |mut child: Reaped| -> serde_json::Value {
        let out = std::mem::replace(&mut child.0, Command::new("true").spawn().unwrap())
            .wait_with_output()
            .unwrap();
        assert!(out.status.success());
        serde_json::from_slice(&out.stdout).unwrap()
    };

    // 1. Inserts alone: one client process.
    let started = Instant::now();
    let summary = finish(load(1, unrolls));
    let wall = started.elapsed().as_secs_f64();
    let rate = summary["unrolls_per_s"].as_f64().unwrap();
    println!(
        "insert, 1 client:      {:>9.0} unrolls/s  {:>7.1} MB/s   ({} unrolls in {wall:.2} s)",
        rate,
        rate * unroll_bytes / 1e6,
        summary["stored"]
    );

    // 2. Samples alone, batches of 256.
    let sample_phase = |learner: &mut ReplayClient, label: &str| {
        let t = Instant::now();
        let mut sampled = 0usize;
        while t.elapsed() < Duration::from_secs(seconds) {
            sampled += learner.sample(256, 0.4, Duration::from_secs(10)).unwrap().count;
        }
        let rate = sampled as f64 / t.elapsed().as_secs_f64();
        println!(
            "{label} {:>9.0} unrolls/s  {:>7.1} MB/s",
            rate,
            rate * unroll_bytes / 1e6
        );
    };
    sample_phase(&mut learner, "sample, batch 256:    ");

    // 3. Both at once: one inserting client, the learner sampling.
    let started = Instant::now();
    let child = load(2, unrolls);
    sample_phase(&mut learner, "sample while inserting:");
    let summary = finish(child);
    let rate = summary["unrolls_per_s"].as_f64().unwrap();
    println!(
        "insert while sampling: {:>9.0} unrolls/s  {:>7.1} MB/s   ({:.2} s)",
        rate,
        rate * unroll_bytes / 1e6,
        started.elapsed().as_secs_f64()
    );
    let stats = learner.stats(0, Duration::from_secs(5)).unwrap();
    println!(
        "shard: size {} inserted {} sampled {} rejected {}",
        stats.size,
        stats.inserted_total,
        stats.sampled_total,
        stats.rejected.values().sum::<u64>()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
