//! `[actor]`: actor hosts' settings, defaults and checks. Errors are
//! `"key: reason"` with the key inside the section; the binary adds
//! `actor.` and the file name.

use serde::Deserialize;

/// `[actor]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ActorConfig {
    /// T: env steps per unroll.
    pub unroll_length: u32,
    /// W worker threads per host; 0 = one per CPU core.
    pub workers: usize,
    /// K env actors per worker (stepped together, one batched forward pass).
    pub envs_per_worker: usize,
    /// Unrolls per insert message.
    pub insert_batch: u32,
    /// Completed chunks of K unrolls that may wait for delivery, per worker.
    pub pending_chunks: usize,
    /// Distinguishes hosts: actor ids are `host_id << 32 | index`.
    pub host_id: u64,
    /// Seconds between progress log lines.
    pub report_interval_s: f64,
}

impl Default for ActorConfig {
    fn default() -> ActorConfig {
        ActorConfig {
            unroll_length: 20,
            workers: 0,
            envs_per_worker: 256,
            insert_batch: 64,
            pending_chunks: 2,
            host_id: 0,
            report_interval_s: 10.0,
        }
    }
}

impl ActorConfig {
    /// Worker threads to start (0 in the config: one per core).
    pub fn worker_count(&self) -> usize {
        if self.workers > 0 {
            self.workers
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }

    /// `"key: reason"` for the first bad value.
    pub fn validate(&self) -> Result<(), String> {
        for (key, ok) in [
            ("unroll_length", self.unroll_length >= 1),
            ("envs_per_worker", self.envs_per_worker >= 1),
            ("insert_batch", self.insert_batch >= 1),
            ("pending_chunks", self.pending_chunks >= 1),
        ] {
            if !ok {
                return Err(format!("{key}: must be at least 1"));
            }
        }
        if self.host_id > u64::from(u32::MAX) {
            return Err(format!(
                "host_id: at most {} (actor ids are host_id << 32 | index)",
                u32::MAX
            ));
        }
        cml_proto::config::check_seconds("report_interval_s", self.report_interval_s)
    }
}
