//! The replay role from a config: `cml-rl replay`, `cml-rl keygen` and
//! `cml-rl replay-stats`.

use std::path::Path;
use std::time::Duration;

use cml_proto::SharedKey;
use cml_replay::shard::InsertRateLimit;
use cml_replay::{ReplayClient, ReplayShard, ShardConfig};
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
        insert_rate: config.learner.replay_ratio.map(|ratio| InsertRateLimit {
            samples_per_insert: ratio,
            // This shard's share of learning_starts, in unrolls.
            warmup_unrolls: config
                .learner
                .learning_starts
                .div_ceil(u64::from(config.actor.unroll_length) * u64::from(r.shards.max(1))),
        }),
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
