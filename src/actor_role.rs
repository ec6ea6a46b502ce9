//! The actor role from a config: `cml-rl actor --config FILE`.

use std::time::Duration;

use cml_actors::{ActorHost, HostConfig, HostReport};

use crate::config::Config;
use cml_run::config::AlgorithmKind;
use cml_run::plumbing::stop_flag;

/// The actor host's configuration from the run config.
pub fn host_config(config: &Config, max_unrolls: Option<u64>) -> anyhow::Result<HostConfig> {
    let a = &config.actor;
    Ok(HostConfig {
        env_id: config.env.id.clone(),
        env_params: config.env.params.clone(),
        max_episode_steps: config.env.max_episode_steps,
        workers: a.worker_count(),
        envs_per_worker: a.envs_per_worker,
        worker_splits: a.worker_splits,
        unroll_length: a.unroll_length,
        seed: config.seed,
        host_id: a.host_id,
        net: config.model.clone(),
        replay_endpoints: config.replay_endpoints(),
        weights_endpoint: config.weights_endpoints().0,
        weights_request_endpoint: config.weights_endpoints().1,
        insert_batch: a.insert_batch,
        pending_chunks: a.pending_chunks,
        key: config.read_key()?,
        socket: config.transport.socket_options(),
        max_unrolls,
        report_interval: Duration::from_secs_f64(a.report_interval_s),
        paced: config.learner.replay_ratio.is_some(),
        env_restarts: a.restart_limit(),
        apex: match config.learner.algorithm {
            AlgorithmKind::Impala => None,
            AlgorithmKind::ApexDqn => {
                Some(a.apex_acting(config.learner.dqn.n_step_return(), config.learner.dqn.priority_eta))
            }
        },
    })
}

/// `cml-rl actor`: runs until SIGINT/SIGTERM (or `max_unrolls`), then
/// prints the report as one JSON line when `json` is set.
pub fn run_actor(config: &Config, max_unrolls: Option<u64>, json: bool) -> anyhow::Result<()> {
    // Each worker thread is one compute thread.
    cml_run::plumbing::init_compute_threads();
    let host = host_config(config, max_unrolls)?;
    let stop = stop_flag()?;
    tracing::info!(
        workers = host.workers,
        envs_per_worker = host.envs_per_worker,
        actors = host.workers * host.envs_per_worker,
        shards = host.replay_endpoints.len(),
        "actor host starting"
    );
    let report = ActorHost::run(&host, &stop)?;
    log_report(&report);
    if json {
        println!("{}", report_json(&report));
    }
    Ok(())
}

fn log_report(r: &HostReport) {
    tracing::info!(
        unrolls = r.unrolls_delivered,
        env_steps = r.env_steps_delivered,
        seconds = format!("{:.2}", r.seconds),
        env_steps_per_s = format!("{:.0}", r.env_steps_delivered as f64 / r.seconds.max(1e-9)),
        version = r.weights_version,
        paused_s = format!("{:.2}", r.paused_seconds),
        dropped = r.dropped_unrolls,
        "actor host stopped"
    );
}

/// The report as JSON (also the time breakdown, in seconds).
pub fn report_json(r: &HostReport) -> serde_json::Value {
    let s = |ns: u64| ns as f64 / 1e9;
    serde_json::json!({
        "actors": r.actors,
        "unrolls_delivered": r.unrolls_delivered,
        "env_steps_delivered": r.env_steps_delivered,
        "env_steps_per_s": r.env_steps_delivered as f64 / r.seconds.max(1e-9),
        "episodes": r.episodes,
        "refused_inserts": r.refused_inserts,
        "dropped_unrolls": r.dropped_unrolls,
        "weights_version": r.weights_version,
        "weight_updates": r.weight_updates,
        "seconds": r.seconds,
        "paused_seconds": r.paused_seconds,
        "outages": r.outages,
        "worker_seconds": {
            "inference": s(r.workers.inference_ns),
            "sampling": s(r.workers.sampling_ns),
            "env": s(r.workers.env_ns),
            "unroll": s(r.workers.unroll_ns),
        },
        "io_seconds": {
            "slicing": s(r.slicing_ns),
            "seal_and_mac": s(r.seal_ns),
            "socket": s(r.send_ns),
        },
        "ticks": r.workers.ticks,
    })
}
