//! `cml-rl replay-load` (hidden): deterministic synthetic unrolls into the
//! replay shards, respecting credit, for tests and benchmarks of the replay
//! service.

use std::time::{Duration, Instant};

use cml_replay::synthetic::synthetic_unrolls;
use cml_replay::{InsertClient, ShardedInserter};

use crate::config::Config;

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
        let n = u64::from(batch).min(options.unrolls - sent) as u32;
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
