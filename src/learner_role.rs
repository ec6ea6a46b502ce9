//! The learner role: samples unrolls from every replay shard, trains with
//! V-trace, sends priorities back, broadcasts weights, and records the run
//! (metrics.csv, TensorBoard scalars, checkpoints, progress).
//!
//! `cml-rl learner --config FILE` runs it alone (cluster runs); `cml-rl
//! train` runs it in its own process beside the shard and actor processes.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use cml_learner::checkpoint::{config_fingerprint, Checkpointer, RunCounters};
use cml_learner::{Learner, UnrollBatch};
use cml_policy::ActionKind;
use cml_proto::{ActionLayout, UnrollLayout};
use cml_replay::{ReplayClient, SampledBatch};

use crate::config::{Config, ReplayMode};
use crate::replay_role::{read_key, socket_options, unroll_layout};
use crate::tensorboard::EventWriter;

/// How the learner is run.
pub struct LearnerOptions {
    /// Where metrics.csv, tensorboard/ and checkpoints/ go.
    pub run_dir: PathBuf,
    /// Continue from the newest checkpoint in `run_dir/checkpoints`.
    pub resume: bool,
    /// Show a progress bar (a terminal run).
    pub progress: bool,
    /// When the process started (for "seconds from launch").
    pub launched: Instant,
}

/// Why and where a run ended.
#[derive(Clone, Debug, PartialEq)]
pub struct RunSummary {
    pub reason: String,
    pub seconds: f64,
    pub env_frames: u64,
    pub learner_steps: u64,
    pub episodes: u64,
    pub mean_return: Option<f64>,
    pub checkpoint: Option<PathBuf>,
}

/// The learner's view of an action space.
pub fn action_kind(layout: &UnrollLayout) -> ActionKind {
    match layout.action {
        ActionLayout::Discrete { n } => ActionKind::Categorical(n as usize),
        ActionLayout::Continuous { dim } => ActionKind::Gaussian(dim as usize),
    }
}

/// The training settings for `cml_learner`.
pub fn training_config(config: &Config) -> cml_learner::LearnerConfig {
    let l = &config.learner;
    cml_learner::LearnerConfig {
        device: l.device.clone(),
        optimizer: l.optimizer.to_config(),
        max_grad_norm: l.max_grad_norm,
        total_frames: config.train.total_frames,
        seed: config.seed,
        cpu_threads: l.cpu_threads,
        loss: l.loss.clone(),
    }
}

/// Returns of the last 100 episodes.
struct Returns {
    last: VecDeque<f64>,
    total: u64,
}

impl Returns {
    fn push(&mut self, r: f64) {
        if self.last.len() == 100 {
            self.last.pop_front();
        }
        self.last.push_back(r);
        self.total += 1;
    }

    fn mean(&self) -> Option<f64> {
        (!self.last.is_empty()).then(|| self.last.iter().sum::<f64>() / self.last.len() as f64)
    }

    /// The mean over a full window of 100 episodes.
    fn full_mean(&self) -> Option<f64> {
        (self.last.len() == 100).then(|| self.mean()).flatten()
    }
}

/// On resume: metrics.csv rows written after the checkpoint (learner steps
/// beyond `steps`) describe training that is being redone; they are dropped
/// so the file's curves do not go back in time.
fn drop_rows_after(path: &Path, steps: u64) -> anyhow::Result<()> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(());
    };
    let mut lines = text.lines();
    let mut kept: Vec<&str> = lines.next().into_iter().collect();
    let mut dropped = 0usize;
    for line in lines {
        match line.split(',').nth(2).and_then(|s| s.parse::<u64>().ok()) {
            Some(s) if s > steps => dropped += 1,
            _ => kept.push(line),
        }
    }
    if dropped > 0 {
        let tmp = path.with_extension("csv.tmp");
        let mut body = kept.join("\n");
        body.push('\n');
        std::fs::write(&tmp, body).with_context(|| format!("{}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("{}", path.display()))?;
        tracing::info!(dropped, "metrics.csv: dropped rows written after the checkpoint");
    }
    Ok(())
}

/// Why the run should end now, if it should: `stop` (a signal), or one of
/// `[train]`'s conditions.
fn stop_reason(
    stop: &AtomicBool,
    train: &crate::config::TrainConfig,
    frames: u64,
    deadline: Option<Instant>,
    returns: &Returns,
) -> Option<String> {
    if stop.load(Ordering::Relaxed) {
        return Some("interrupted".to_string());
    }
    if train.total_frames > 0 && frames >= train.total_frames {
        return Some(format!("trained on {frames} env frames"));
    }
    if deadline.is_some_and(|d| Instant::now() >= d) {
        return Some(format!(
            "reached max_seconds = {}",
            train.max_seconds.unwrap_or_default()
        ));
    }
    if let (Some(target), Some(mean)) = (train.target_return, returns.full_mean()) {
        if mean >= target {
            return Some(format!(
                "mean return {mean:.1} over the last 100 episodes reached {target}"
            ));
        }
    }
    None
}

/// Learner steps skipped in a row (non-finite loss or gradients) before the
/// run fails instead of spinning.
const MAX_NON_FINITE_IN_A_ROW: u32 = 100;

/// Samples until `want` unrolls are gathered (queue mode may hand out fewer
/// per request); `None` once `stop` is set or `deadline` has passed.
fn gather(
    replay: &mut ReplayClient,
    want: usize,
    beta: f64,
    stop: &AtomicBool,
    deadline: Option<Instant>,
    episodes: &mut Vec<f64>,
) -> anyhow::Result<Option<SampledBatch>> {
    let mut all: Option<SampledBatch> = None;
    let mut idle = 0u32;
    loop {
        if stop.load(Ordering::Relaxed) || deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(None);
        }
        let have = all.as_ref().map_or(0, |b| b.count);
        if have >= want {
            return Ok(all);
        }
        let batch = match replay.sample(want - have, beta, Duration::from_secs(2)) {
            Ok(batch) => batch,
            Err(cml_replay::ClientError::Timeout { endpoint, .. }) => {
                tracing::warn!(%endpoint, "replay shard not answering; retrying");
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        episodes.extend(batch.episodes.iter().map(|e| e.episode_return));
        if batch.count == 0 {
            idle += 1;
            // Nothing stored yet: wait for the actors (up to 5 ms per try).
            std::thread::sleep(Duration::from_micros(200 * u64::from(idle.min(25))));
            continue;
        }
        idle = 0;
        match &mut all {
            None => all = Some(batch),
            Some(acc) => {
                for (dst, src) in acc.frames.iter_mut().zip(&batch.frames) {
                    dst.extend_from_slice(src);
                }
                acc.count += batch.count;
                acc.shards.extend(batch.shards);
                acc.keys.extend(batch.keys);
                acc.probabilities.extend(batch.probabilities);
                acc.weights.extend(batch.weights);
                acc.times_sampled.extend(batch.times_sampled);
                acc.actor_ids.extend(batch.actor_ids);
                acc.policy_versions.extend(batch.policy_versions);
                acc.replay_size = batch.replay_size;
            }
        }
    }
}

const CSV_HEADER: [&str; 14] = [
    "wall_s",
    "env_frames",
    "learner_steps",
    "episodes",
    "mean_return_100",
    "policy_loss",
    "baseline_loss",
    "entropy",
    "grad_norm",
    "learning_rate",
    "policy_lag",
    "env_frames_per_s",
    "learner_steps_per_s",
    "replay_size",
];

/// Runs the learner until a stop condition or `stop`; returns the summary.
pub fn run_learner(config: &Config, options: &LearnerOptions, stop: &AtomicBool) -> anyhow::Result<RunSummary> {
    cml_learner::set_cpu_threads(config.learner.cpu_threads);
    let key = read_key(config)?;
    let layout = unroll_layout(config)?;
    let sockets = socket_options(config);
    let mut learner = Learner::new(
        layout.obs_dim as usize,
        action_kind(&layout),
        &config.model,
        training_config(config),
    )?;
    let config_text = toml::to_string(&config_fingerprint_source(config)).unwrap_or_default();
    let fingerprint = config_fingerprint(&config_text);
    let checkpointer = Checkpointer::new(options.run_dir.join("checkpoints"), config.learner.keep_checkpoints)?;
    let mut resumed = RunCounters::default();
    if !options.resume {
        if let Some(existing) = checkpointer.latest()? {
            anyhow::bail!(
                "{} already holds a run ({}): pass --resume to continue it, or choose another run directory",
                options.run_dir.display(),
                existing.display()
            );
        }
    }
    if options.resume {
        let path = checkpointer
            .latest()?
            .with_context(|| format!("{}: no checkpoint to resume from", options.run_dir.display()))?;
        let loaded = Checkpointer::load(&path, learner.device())?;
        Checkpointer::restore(&mut learner, &loaded, Some(&fingerprint))?;
        resumed = loaded.manifest.run;
        tracing::info!(
            checkpoint = %path.display(),
            steps = learner.steps(),
            frames = learner.frames(),
            "resumed"
        );
    }

    if let Some(port) = config.learner.metrics_port {
        let ip: std::net::IpAddr = config.learner.metrics_host.parse().with_context(|| {
            format!(
                "learner.metrics_host: {:?} is not an IP address",
                config.learner.metrics_host
            )
        })?;
        // SocketAddr::new, not "host:port": an IPv6 host has colons.
        let address = std::net::SocketAddr::new(ip, port);
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .with_http_listener(address)
            .install()
            .with_context(|| format!("serving Prometheus metrics on {address}"))?;
        tracing::info!(%address, "Prometheus metrics at /metrics");
    }
    let publisher = cml_learner::broadcast::WeightPublisher::start(
        &key,
        &sockets,
        &config.weights_endpoints().0,
        &config.weights_endpoints().1,
    )?;
    let version = |learner: &Learner| learner.steps() + 1;
    publisher.publish(version(&learner), learner.weights()?);

    let ctx = zmq::Context::new();
    let endpoints = config.replay_endpoints();
    let mut replay = ReplayClient::connect(&ctx, &key, &sockets, &endpoints, config.seed)?;
    let welcomes = replay.hello(Duration::from_secs(30)).context("replay shards")?;
    if welcomes[0].layout != layout {
        anyhow::bail!(
            "replay shards hold {:?}, this config produces {layout:?}",
            welcomes[0].layout
        );
    }

    let metrics_path = options.run_dir.join("metrics.csv");
    if options.resume {
        drop_rows_after(&metrics_path, learner.steps())?;
    }
    let new_file = !metrics_path.exists();
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&metrics_path)
        .with_context(|| format!("{}", metrics_path.display()))?;
    let mut csv = csv::Writer::from_writer(file);
    if new_file {
        csv.write_record(CSV_HEADER)?;
        csv.flush()?;
    }
    let mut tensorboard = EventWriter::create(&options.run_dir.join("tensorboard"))?;
    let progress = options.progress.then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    });

    let train = &config.train;
    let prioritized = config.replay.mode == ReplayMode::Prioritized;
    let mut returns = Returns {
        last: VecDeque::with_capacity(100),
        total: resumed.episodes,
    };
    // Seconds trained so far, over every resume of this run.
    let trained_s = || resumed.elapsed_ms as f64 / 1000.0 + options.launched.elapsed().as_secs_f64();
    let counters = |returns: &Returns| RunCounters {
        episodes: returns.total,
        elapsed_ms: (trained_s() * 1000.0) as u64,
    };
    let deadline = train
        .max_seconds
        .map(|s| options.launched + Duration::from_secs_f64((s - resumed.elapsed_ms as f64 / 1000.0).max(0.0)));
    let mut non_finite_in_a_row = 0u32;
    // Last totals seen per shard, for the Prometheus counters.
    let mut shard_totals = std::collections::HashMap::new();
    let mut new_returns = Vec::new();
    let mut last_report = Instant::now();
    let mut last_checkpoint = Instant::now();
    let (mut report_frames, mut report_steps) = (learner.frames(), learner.steps());
    let mut lag_sum = 0.0f64;
    let mut lag_count = 0u64;
    let reason = loop {
        if let Some(reason) = stop_reason(stop, train, learner.frames(), deadline, &returns) {
            break reason;
        }
        let beta = if train.total_frames > 0 {
            let progress = (learner.frames() as f64 / train.total_frames as f64).min(1.0);
            config.replay.beta + (1.0 - config.replay.beta) * progress
        } else {
            config.replay.beta
        };
        let Some(batch) = gather(
            &mut replay,
            config.learner.batch_size,
            beta,
            stop,
            deadline,
            &mut new_returns,
        )?
        else {
            // Stopped, or out of time while waiting for data; the top of
            // the loop says which.
            continue;
        };
        for r in new_returns.drain(..) {
            returns.push(r);
        }
        let replay_size = batch.replay_size;
        let unrolls = UnrollBatch::from_wire(&layout, batch.count, &batch.frames, learner.device())?;
        let report = match learner.step(&unrolls) {
            Ok(report) => report,
            Err(e @ cml_learner::LearnerError::NonFinite { .. }) => {
                // Skipped, parameters unchanged: keep training, unless
                // nothing but non-finite steps come (bad data or settings).
                non_finite_in_a_row += 1;
                if non_finite_in_a_row >= MAX_NON_FINITE_IN_A_ROW {
                    anyhow::bail!("{MAX_NON_FINITE_IN_A_ROW} learner steps in a row were skipped; the last: {e}");
                }
                tracing::warn!("{e}");
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        non_finite_in_a_row = 0;
        let v = version(&learner) as f64;
        for &behaviour in &batch.policy_versions {
            lag_sum += v - 1.0 - behaviour as f64;
            lag_count += 1;
        }
        if prioritized {
            let priorities: Vec<f64> = report.priorities.iter().map(|&p| f64::from(p)).collect();
            replay.update_priorities(&batch.shards, &batch.keys, &priorities)?;
        }
        if learner.steps() % config.learner.publish_interval_steps == 0 {
            publisher.publish(version(&learner), learner.weights()?);
        }

        // A run that ends after this step reports it first, so the row
        // that met the stop condition is in metrics.csv.
        let ending = stop_reason(stop, train, learner.frames(), deadline, &returns);
        if ending.is_some() || last_report.elapsed().as_secs_f64() >= config.learner.report_interval_s {
            let elapsed = last_report.elapsed().as_secs_f64();
            let fps = (learner.frames() - report_frames) as f64 / elapsed;
            let sps = (learner.steps() - report_steps) as f64 / elapsed;
            let lag = if lag_count > 0 { lag_sum / lag_count as f64 } else { 0.0 };
            let mean = returns.mean();
            {
                let step = &report;
                let wall = trained_s();
                csv.write_record([
                    format!("{wall:.3}"),
                    learner.frames().to_string(),
                    learner.steps().to_string(),
                    returns.total.to_string(),
                    mean.map_or(String::new(), |m| format!("{m:.3}")),
                    step.policy_loss.to_string(),
                    step.baseline_loss.to_string(),
                    step.entropy.to_string(),
                    step.grad_norm.to_string(),
                    step.learning_rate.to_string(),
                    format!("{lag:.3}"),
                    format!("{fps:.1}"),
                    format!("{sps:.2}"),
                    replay_size.to_string(),
                ])?;
                csv.flush()?;
                let frames = learner.frames() as i64;
                let mut scalars: Vec<(&str, f32)> = vec![
                    ("loss/policy", step.policy_loss),
                    ("loss/baseline", step.baseline_loss),
                    ("loss/entropy", step.entropy),
                    ("train/grad_norm", step.grad_norm),
                    ("train/policy_lag", lag as f32),
                    ("throughput/env_frames_per_s", fps as f32),
                    ("throughput/learner_steps_per_s", sps as f32),
                ];
                if let Some(m) = mean {
                    scalars.push(("episode/mean_return_100", m as f32));
                }
                tensorboard.add_scalars(&scalars, frames)?;
                tensorboard.flush()?;
                if config.learner.metrics_port.is_some() {
                    export_metrics(
                        &learner,
                        step,
                        &scalars,
                        returns.total,
                        &mut replay,
                        config.replay.shards,
                        &mut shard_totals,
                    );
                }
            }
            let line = format!(
                "frames {} ({:.0}/s) | return {} | steps {} ({:.1}/s) | lag {:.1}",
                learner.frames(),
                fps,
                mean.map_or("-".to_string(), |m| format!("{m:.1}")),
                learner.steps(),
                sps,
                lag
            );
            match &progress {
                Some(bar) => bar.set_message(line),
                None => tracing::info!("{line}"),
            }
            (report_frames, report_steps) = (learner.frames(), learner.steps());
            lag_sum = 0.0;
            lag_count = 0;
            last_report = Instant::now();
        }
        if let Some(reason) = ending {
            break reason;
        }
        if last_checkpoint.elapsed().as_secs_f64() >= config.learner.checkpoint_interval_s {
            checkpointer.save_with(&learner, &fingerprint, counters(&returns))?;
            last_checkpoint = Instant::now();
        }
    };
    let checkpoint = checkpointer.save_with(&learner, &fingerprint, counters(&returns))?;
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    csv.flush()?;
    tensorboard.flush()?;
    Ok(RunSummary {
        reason,
        seconds: trained_s(),
        env_frames: learner.frames(),
        learner_steps: learner.steps(),
        episodes: returns.total,
        mean_return: returns.mean(),
        checkpoint: Some(checkpoint),
    })
}

/// What identifies a run's training setup for checkpoints: env, model and
/// learner settings (not endpoints or stop conditions, which may change on
/// resume).
fn config_fingerprint_source(config: &Config) -> toml::Table {
    let mut table = toml::Table::new();
    table.insert("env".into(), toml::Value::String(config.env.id.clone()));
    table.insert(
        "unroll_length".into(),
        toml::Value::Integer(i64::from(config.actor.unroll_length)),
    );
    table.insert("model".into(), toml::Value::String(format!("{:?}", config.model)));
    table.insert(
        "optimizer".into(),
        toml::Value::String(format!("{:?}", config.learner.optimizer.to_config())),
    );
    table
}

/// A run directory name: `{runs_dir}/{env}-{unix seconds}`.
pub fn new_run_dir(config: &Config) -> anyhow::Result<PathBuf> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let name: String = config
        .env
        .id
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' })
        .collect();
    let mut dir = config.train.runs_dir.join(format!("{name}-{secs}"));
    let mut n = 1;
    while dir.exists() {
        dir = config.train.runs_dir.join(format!("{name}-{secs}-{n}"));
        n += 1;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// Prints a run summary.
pub fn print_summary(summary: &RunSummary, run_dir: &Path) {
    println!(
        "stopped: {} after {:.1} s: {} env frames, {} learner steps, {} episodes, mean return (last 100) {}",
        summary.reason,
        summary.seconds,
        summary.env_frames,
        summary.learner_steps,
        summary.episodes,
        summary.mean_return.map_or("-".to_string(), |m| format!("{m:.1}"))
    );
    println!("run directory: {}", run_dir.display());
}

/// Sets the Prometheus gauges: learner counters and the reported scalars,
/// and each shard's replay statistics (asked for now, briefly).
fn export_metrics(
    learner: &Learner,
    step: &cml_learner::StepReport,
    scalars: &[(&str, f32)],
    episodes: u64,
    replay: &mut ReplayClient,
    shards: u32,
    shard_totals: &mut std::collections::HashMap<String, u64>,
) {
    // Monotonic totals are counters (`_total`); the rest are gauges.
    metrics::counter!("cml_env_frames_total").absolute(learner.frames());
    metrics::counter!("cml_learner_steps_total").absolute(learner.steps());
    metrics::counter!("cml_episodes_total").absolute(episodes);
    metrics::gauge!("cml_learning_rate").set(step.learning_rate);
    for (name, value) in scalars {
        let name = format!("cml_{}", name.replace('/', "_"));
        metrics::gauge!(name).set(f64::from(*value));
    }
    for shard in 0..shards as usize {
        let Ok(stats) = replay.stats(shard, Duration::from_millis(200)) else {
            continue;
        };
        let s = shard.to_string();
        metrics::gauge!("cml_replay_size", "shard" => s.clone()).set(stats.size as f64);
        metrics::gauge!("cml_replay_bytes", "shard" => s.clone()).set(stats.bytes as f64);
        // A shard's totals start again from 0 when it restarts; the
        // learner's counters add what is new since the last report, so they
        // keep rising across shard restarts.
        let mut new_since = |what: &str, now: u64| {
            let last = shard_totals.insert(format!("{what}/{s}"), now).unwrap_or(0);
            if now >= last {
                now - last
            } else {
                now
            }
        };
        metrics::counter!("cml_replay_inserted_total", "shard" => s.clone())
            .increment(new_since("inserted", stats.inserted_total));
        metrics::counter!("cml_replay_sampled_total", "shard" => s.clone())
            .increment(new_since("sampled", stats.sampled_total));
        metrics::gauge!("cml_replay_inserts_per_s", "shard" => s.clone()).set(stats.inserts_per_s);
        metrics::gauge!("cml_replay_samples_per_s", "shard" => s.clone()).set(stats.samples_per_s);
        for (reason, count) in &stats.rejected {
            metrics::counter!("cml_replay_rejected_total", "shard" => s.clone(), "reason" => reason.clone())
                .increment(new_since(&format!("rejected/{reason}"), *count));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_drops_rows_written_after_the_checkpoint() {
        let dir = std::env::temp_dir().join(format!("cml-rows-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("metrics.csv");
        std::fs::write(&path, "wall_s,env_frames,learner_steps\n1,10,5\n2,20,10\n3,30,15\n").unwrap();
        drop_rows_after(&path, 10).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "wall_s,env_frames,learner_steps\n1,10,5\n2,20,10\n"
        );
        // Nothing to drop: the file stays as it is; no file: no error.
        drop_rows_after(&path, 10).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 3);
        drop_rows_after(&dir.join("none.csv"), 0).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
