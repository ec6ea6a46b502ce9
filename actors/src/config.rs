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
    /// S: each worker's K envs as S vector envs of about K/S, stepped in
    /// turn (double-buffered sampling, Sample Factory's
    /// `worker_num_splits`): while one split's envs step in their Python
    /// worker process, the worker runs the next split's inference. 2 pays
    /// for Python envs, whose steps run outside the worker thread; native
    /// envs step on the worker thread, so splits only shrink its batches.
    pub worker_splits: usize,
    /// Unrolls per insert message.
    pub insert_batch: u32,
    /// Completed chunks of K unrolls that may wait for delivery, per worker.
    pub pending_chunks: usize,
    /// Distinguishes hosts: actor ids are `host_id << 32 | index`.
    pub host_id: u64,
    /// Seconds between progress log lines.
    pub report_interval_s: f64,
    /// Ape-X (`learner.algorithm = "apex_dqn"`): actor i of N over all
    /// hosts explores with ε_i = epsilon_base^(1 + epsilon_alpha·i/(N − 1)).
    pub epsilon_base: f64,
    pub epsilon_alpha: f64,
    /// Ape-X: hosts in the run, each with host_id in 0..hosts and the same
    /// workers × envs_per_worker, so N = hosts × actors per host and host h's
    /// actors are i = h·(actors per host) + local index.
    pub hosts: u64,
    /// A worker whose envs fail (an error from `step`, a Python
    /// worker process that crashed or hung) makes them afresh, at most this
    /// many times within `env_restart_window_s`; one failure more stops the
    /// host with the error. 0: the first failure does.
    pub env_restart_limit: u32,
    pub env_restart_window_s: f64,
}

impl Default for ActorConfig {
    fn default() -> ActorConfig {
        ActorConfig {
            unroll_length: 20,
            workers: 0,
            envs_per_worker: 256,
            worker_splits: 1,
            insert_batch: 64,
            pending_chunks: 2,
            host_id: 0,
            report_interval_s: 10.0,
            epsilon_base: 0.4,
            epsilon_alpha: 7.0,
            hosts: 1,
            env_restart_limit: 5,
            env_restart_window_s: 600.0,
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

    /// Ape-X's acting for this host: ε per global actor index and the
    /// first-priority settings (`[learner.dqn]`'s n-step return and η).
    pub fn apex_acting(&self, n_step: cml_policy::q_values::NStep, priority_eta: f64) -> crate::ApexActing {
        let per_host = (self.worker_count() * self.envs_per_worker) as u64;
        crate::ApexActing {
            epsilon_base: self.epsilon_base,
            epsilon_alpha: self.epsilon_alpha,
            total_actors: self.hosts.saturating_mul(per_host),
            first_actor_index: self.host_id.saturating_mul(per_host),
            n_step,
            priority_eta,
        }
    }

    /// How often a worker may make its envs afresh.
    pub fn restart_limit(&self) -> crate::RestartLimit {
        crate::RestartLimit {
            limit: self.env_restart_limit,
            window: std::time::Duration::from_secs_f64(self.env_restart_window_s),
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
        if !(1..=self.envs_per_worker).contains(&self.worker_splits) {
            return Err(format!(
                "worker_splits: must be in 1..=envs_per_worker ({}), found {}",
                self.envs_per_worker, self.worker_splits
            ));
        }
        if !(0.0..=1.0).contains(&self.epsilon_base) {
            return Err("epsilon_base: must be in [0, 1]".into());
        }
        if !(self.epsilon_alpha.is_finite() && self.epsilon_alpha >= 0.0) {
            return Err("epsilon_alpha: must be a number >= 0".into());
        }
        if self.hosts == 0 {
            return Err("hosts: must be at least 1".into());
        }
        if self.host_id > u64::from(u32::MAX) {
            return Err(format!(
                "host_id: at most {} (actor ids are host_id << 32 | index)",
                u32::MAX
            ));
        }
        cml_proto::config::check_seconds("env_restart_window_s", self.env_restart_window_s)?;
        cml_proto::config::check_seconds("report_interval_s", self.report_interval_s)
    }
}
