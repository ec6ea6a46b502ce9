//! The replay role from a config: `cml-rl replay`, `cml-rl keygen`, and the
//! synthetic load generator used by tests and benchmarks.

use std::path::Path;
use std::time::{Duration, Instant};

use cml_proto::SharedKey;
use cml_replay::synthetic::synthetic_unrolls;
use cml_replay::{InsertClient, ReplayClient, ReplayShard, ShardConfig, ShardedInserter};
use cml_run::plumbing::stop_flag;

use crate::config::Config;

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
        layout: config.unroll_layout()?,
        index: r.index_config(shard, config.seed),
        max_bytes: (r.max_memory_mb as usize) << 20,
        credit_window: r.credit_window,
        sender_timeout: r.sender_timeout(),
        stats_interval: r.stats_interval(),
        socket: config.transport.socket_options(),
        key,
    })
}

/// `cml-rl replay --config FILE --shard I`.
pub fn run_shard(config: &Config, shard: u32) -> anyhow::Result<()> {
    let key = config.read_key()?;
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
    let key = config.read_key()?;
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
        let mut client = InsertClient::connect(&ctx, &key, &config.transport.socket_options(), &endpoints[0], shard)?;
        client.hello(options.timeout)?;
        ShardedInserter::from_clients(vec![client])?
    } else {
        ShardedInserter::connect(
            &ctx,
            &key,
            &config.transport.socket_options(),
            &endpoints,
            options.timeout,
        )?
    };
    let layout = inserter.layout()?;
    let expected = config.unroll_layout()?;
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
    let key = config.read_key()?;
    let ctx = zmq::Context::new();
    let endpoints = config.replay_endpoints();
    let mut client = ReplayClient::connect(&ctx, &key, &config.transport.socket_options(), &endpoints, config.seed)?;
    for shard in 0..endpoints.len() {
        let stats = client.stats(shard, timeout)?;
        println!("{}", serde_json::to_string(&stats)?);
    }
    Ok(())
}
