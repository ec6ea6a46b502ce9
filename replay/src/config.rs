//! `[replay]`: the sharded replay service's settings, their defaults and
//! checks. Errors are `"key: reason"` with the key inside the section; the
//! binary adds `replay.` and the file name.

use std::time::Duration;

use serde::Deserialize;

use cml_proto::config::check_seconds;

use crate::index::{IndexConfig, SamplingMode};

/// `[replay]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReplayConfig {
    /// N: number of shards.
    pub shards: u32,
    /// Shard i listens on `tcp://{host}:{base_port + i}` unless `endpoints`
    /// lists them.
    pub host: String,
    pub base_port: u16,
    pub endpoints: Option<Vec<String>>,
    pub mode: SamplingMode,
    /// Unrolls per shard (lowered to fit `max_memory_mb`).
    pub capacity: usize,
    /// Payload memory per shard, MiB.
    pub max_memory_mb: u64,
    /// Priority exponent α (prioritized mode).
    pub alpha: f64,
    /// Importance-sampling exponent β at the start (annealed to 1 over
    /// `train.total_frames` by the learner).
    pub beta: f64,
    /// Stored priority = max(p, ε)^α.
    pub priority_epsilon: f64,
    /// Replay-ratio cap: an item is dropped after this many samples.
    pub max_samples_per_item: Option<u32>,
    /// Share of each sample taken from never-sampled items, oldest first.
    pub fresh_fraction: f64,
    /// Unrolls an actor host may have in flight to one shard.
    pub credit_window: u32,
    /// A silent sender's credit is reclaimed after this many seconds.
    pub sender_timeout_s: f64,
    /// Seconds between stats log lines.
    pub stats_interval_s: f64,
}

impl Default for ReplayConfig {
    fn default() -> ReplayConfig {
        ReplayConfig {
            shards: 1,
            host: "127.0.0.1".into(),
            base_port: 5600,
            endpoints: None,
            mode: SamplingMode::Prioritized,
            capacity: 100_000,
            max_memory_mb: 1024,
            alpha: 0.6,
            beta: 0.4,
            priority_epsilon: 1e-6,
            max_samples_per_item: None,
            fresh_fraction: 0.0,
            credit_window: 256,
            sender_timeout_s: 30.0,
            stats_interval_s: 10.0,
        }
    }
}

impl ReplayConfig {
    /// Endpoint of every shard, in shard order.
    pub fn shard_endpoints(&self) -> Vec<String> {
        match &self.endpoints {
            Some(list) => list.clone(),
            None => (0..self.shards)
                .map(|i| format!("tcp://{}:{}", self.host, u32::from(self.base_port) + i))
                .collect(),
        }
    }

    /// Shard `shard`'s index settings; `seed` is the run's seed.
    pub fn index_config(&self, shard: u32, seed: u64) -> IndexConfig {
        IndexConfig {
            capacity: self.capacity,
            mode: self.mode,
            alpha: self.alpha,
            priority_epsilon: self.priority_epsilon,
            max_samples_per_item: self.max_samples_per_item,
            fresh_fraction: self.fresh_fraction,
            seed: seed.wrapping_add(u64::from(shard)).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        }
    }

    pub fn sender_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.sender_timeout_s)
    }

    pub fn stats_interval(&self) -> Duration {
        Duration::from_secs_f64(self.stats_interval_s)
    }

    /// `"key: reason"` for the first bad value.
    pub fn validate(&self) -> Result<(), String> {
        if self.shards == 0 {
            return Err("shards: must be at least 1".to_string());
        }
        if let Some(list) = &self.endpoints {
            if list.len() != self.shards as usize {
                return Err(format!(
                    "endpoints: {} endpoints for replay.shards = {}",
                    list.len(),
                    self.shards
                ));
            }
        } else if u32::from(self.base_port) + self.shards - 1 > u32::from(u16::MAX) {
            return Err("base_port: base_port + shards - 1 exceeds 65535".to_string());
        }
        let checks: [(&str, bool, &str); 8] = [
            ("capacity", self.capacity >= 1, "must be at least 1"),
            ("max_memory_mb", self.max_memory_mb >= 1, "must be at least 1"),
            (
                "alpha",
                self.alpha.is_finite() && self.alpha >= 0.0,
                "must be a number >= 0",
            ),
            ("beta", (0.0..=1.0).contains(&self.beta), "must be in [0, 1]"),
            (
                "priority_epsilon",
                self.priority_epsilon.is_finite() && self.priority_epsilon > 0.0,
                "must be > 0",
            ),
            (
                "max_samples_per_item",
                self.max_samples_per_item != Some(0),
                "must be at least 1 (or left out)",
            ),
            (
                "fresh_fraction",
                (0.0..=1.0).contains(&self.fresh_fraction),
                "must be in [0, 1]",
            ),
            ("credit_window", self.credit_window >= 1, "must be at least 1"),
        ];
        for (key, ok, reason) in checks {
            if !ok {
                return Err(format!("{key}: {reason}"));
            }
        }
        check_seconds("sender_timeout_s", self.sender_timeout_s)?;
        check_seconds("stats_interval_s", self.stats_interval_s)
    }
}
