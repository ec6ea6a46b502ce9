//! The replay role from a config: `cml-rl replay`, `cml-rl keygen`, and the
//! synthetic load generator used by tests and benchmarks.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use cml_envs::Env;
use cml_proto::{SharedKey, SocketOptions, UnrollLayout};
use cml_replay::index::{IndexConfig, SamplingMode};
use cml_replay::synthetic::synthetic_unrolls;
use cml_replay::{InsertClient, ReplayClient, ReplayShard, ShardConfig, ShardedInserter};

use crate::config::{Config, ReplayMode};

/// The unroll layout of the configured env and unroll length.
pub fn unroll_layout(config: &Config) -> anyhow::Result<UnrollLayout> {
    let env = cml_envs::make(&config.env.id, &config.env.params).with_context(|| format!("env {:?}", config.env.id))?;
    cml_actors::layout_for(env.observation_space(), env.action_space(), config.actor.unroll_length)
        .with_context(|| format!("env {:?}", config.env.id))
}

/// Socket options from `[transport]`.
pub fn socket_options(config: &Config) -> SocketOptions {
    SocketOptions {
        max_message_bytes: (config.transport.max_message_mb as usize) << 20,
        send_hwm: config.transport.high_water_mark,
        recv_hwm: config.transport.high_water_mark,
        ..SocketOptions::default()
    }
}

/// The shared key named by `transport.key_file`.
/// `CML_KEY_FILE`, when set, overrides `transport.key_file` (how `train`
/// hands its key to the processes it starts).
pub fn read_key(config: &Config) -> anyhow::Result<SharedKey> {
    if let Some(path) = std::env::var_os(crate::train::KEY_FILE_ENV) {
        return Ok(SharedKey::read_file(std::path::Path::new(&path))?);
    }
    let path = config.transport.key_file.as_ref().ok_or_else(|| {
        anyhow::anyhow!("transport.key_file: not set; create a key with `cml-rl keygen FILE` and name it there")
    })?;
    Ok(SharedKey::read_file(&config.resolve(path))?)
}

/// The configuration of shard `shard`.
pub fn shard_config(config: &Config, shard: u32, key: SharedKey) -> anyhow::Result<ShardConfig> {
    let r = &config.replay;
    if shard >= r.shards {
        anyhow::bail!(
            "--shard {shard}: the config has replay.shards = {} (shards 0..{})",
            r.shards,
            r.shards
        );
    }
    let endpoints = config.replay_endpoints();
    Ok(ShardConfig {
        shard,
        shards: r.shards,
        endpoint: endpoints[shard as usize].clone(),
        layout: unroll_layout(config)?,
        index: IndexConfig {
            capacity: r.capacity,
            mode: match r.mode {
                ReplayMode::Prioritized => SamplingMode::Prioritized,
                ReplayMode::Uniform => SamplingMode::Uniform,
                ReplayMode::Queue => SamplingMode::Queue,
            },
            alpha: r.alpha,
            priority_epsilon: r.priority_epsilon,
            max_samples_per_item: r.max_samples_per_item,
            fresh_fraction: r.fresh_fraction,
            seed: config
                .seed
                .wrapping_add(u64::from(shard))
                .wrapping_mul(0x9E37_79B9_7F4A_7C15),
        },
        max_bytes: (r.max_memory_mb as usize) << 20,
        credit_window: r.credit_window,
        sender_timeout: Duration::from_secs_f64(r.sender_timeout_s),
        stats_interval: Duration::from_secs_f64(r.stats_interval_s),
        socket: socket_options(config),
        key,
    })
}

/// A flag set by SIGINT or SIGTERM.
///
/// A child of `cml-rl train` (which sets [`SUPERVISOR_PID_ENV`] for it) also
/// stops when its parent is gone: a `train` killed with SIGKILL, or one
/// that crashed, leaves no shard or actor host behind.
pub fn stop_flag() -> anyhow::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop)).context("installing a signal handler")?;
    }
    if let Some(supervisor) = std::env::var(SUPERVISOR_PID_ENV)
        .ok()
        .and_then(|s| s.parse::<u32>().ok())
    {
        let stop = Arc::clone(&stop);
        std::thread::Builder::new()
            .name("parent-watch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if std::os::unix::process::parent_id() != supervisor {
                        tracing::warn!(supervisor, "the supervising cml-rl train is gone; stopping");
                        stop.store(true, Ordering::Relaxed);
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(200));
                }
            })
            .context("starting the parent watcher")?;
    }
    Ok(stop)
}

/// Environment variable `cml-rl train` sets for its children: its own pid,
/// so that a child stops when it is re-parented (its supervisor died).
pub const SUPERVISOR_PID_ENV: &str = "CML_SUPERVISOR_PID";

/// `cml-rl replay --config FILE --shard I`.
pub fn run_shard(config: &Config, shard: u32) -> anyhow::Result<()> {
    let key = read_key(config)?;
    let shard = ReplayShard::new(shard_config(config, shard, key)?)?;
    let stop = stop_flag()?;
    cml_replay::serve(shard, &stop)?;
    Ok(())
}

/// `cml-rl keygen FILE`.
pub fn keygen(path: &Path) -> anyhow::Result<()> {
    SharedKey::generate()?.write_new_file(path)?;
    println!("wrote a new shared key to {} (mode 0600)", path.display());
    Ok(())
}

/// Options of the synthetic load generator.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// One shard, or None to spread over all of them.
    pub shard: Option<u32>,
    pub actor_id: u64,
    pub unrolls: u64,
    pub batch: u32,
    pub timeout: Duration,
}

/// Inserts `unrolls` synthetic unrolls into one shard or spread over all,
/// respecting credit; prints a JSON summary (sent, stored, refused, seconds,
/// unrolls/s, per-shard counts).
pub fn run_load(config: &Config, options: &LoadOptions) -> anyhow::Result<()> {
    let key = read_key(config)?;
    let all = config.replay_endpoints();
    let endpoints: Vec<String> = match options.shard {
        Some(shard) => vec![all
            .get(shard as usize)
            .ok_or_else(|| anyhow::anyhow!("--shard {shard}: the config has {} shards", all.len()))?
            .clone()],
        None => all,
    };
    let ctx = zmq::Context::new();
    let mut inserter = if let Some(shard) = options.shard {
        let mut client = InsertClient::connect(&ctx, &key, &socket_options(config), &endpoints[0], shard)?;
        client.hello(options.timeout)?;
        ShardedInserter::from_clients(vec![client])?
    } else {
        ShardedInserter::connect(&ctx, &key, &socket_options(config), &endpoints, options.timeout)?
    };
    let layout = inserter.layout()?;
    let expected = unroll_layout(config)?;
    if layout != expected {
        anyhow::bail!("shard layout {layout:?} differs from this config's {expected:?}");
    }
    let started = Instant::now();
    let (mut sent, mut stored, mut refused) = (0u64, 0u64, 0u64);
    let mut per_shard = vec![0u64; endpoints.len()];
    let batch = options.batch.max(1);
    while sent < options.unrolls {
        let n = batch.min((options.unrolls - sent) as u32);
        let message = synthetic_unrolls(&layout, options.actor_id, sent, n);
        let Some(shard) = inserter.send(message, options.timeout)? else {
            anyhow::bail!("no shard gave credit for {:?} after {sent} unrolls", options.timeout);
        };
        per_shard[shard] += u64::from(n);
        sent += u64::from(n);
        let progress = inserter.take_progress();
        stored += progress.stored;
        refused += progress.errors.len() as u64;
    }
    // Wait for the last acknowledgements.
    let deadline = Instant::now() + options.timeout;
    while inserter.unacked() > 0 && Instant::now() < deadline {
        for client in inserter.clients() {
            client.wait_for_credit(u32::MAX, Duration::from_millis(10))?;
        }
        let progress = inserter.take_progress();
        stored += progress.stored;
        refused += progress.errors.len() as u64;
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "actor_id": options.actor_id,
            "sent": sent,
            "stored": stored,
            "refused": refused,
            "per_shard": per_shard,
            "seconds": seconds,
            "unrolls_per_s": sent as f64 / seconds,
            "mb_per_s": (sent as f64 * layout.item_bytes() as f64) / seconds / 1e6,
        })
    );
    Ok(())
}

/// `cml-rl replay-stats --config FILE`: every shard's stats as JSON lines.
pub fn print_stats(config: &Config, timeout: Duration) -> anyhow::Result<()> {
    let key = read_key(config)?;
    let ctx = zmq::Context::new();
    let endpoints = config.replay_endpoints();
    let mut client = ReplayClient::connect(&ctx, &key, &socket_options(config), &endpoints, config.seed)?;
    for shard in 0..endpoints.len() {
        let stats = client.stats(shard, timeout)?;
        println!("{}", serde_json::to_string(&stats)?);
    }
    Ok(())
}
