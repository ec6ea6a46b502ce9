//! The learner loop: sample a batch from every shard, hand it to the
//! [`Algorithm`], send the priorities back, publish weights, report, and
//! checkpoint, until a `[train]` stop condition or a signal. It never names
//! an algorithm.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cml_learner::checkpoint::{Checkpointer, Counters, RunCounters};
use cml_learner::{Algorithm, SampledUnrolls};
use cml_proto::weights::WeightPublisher;
use cml_proto::{SharedKey, SocketOptions, UnrollLayout};
use cml_replay::{InsertCounting, ReplayClient, SampledBatch};

use crate::config::{LearnerSection, TrainSection};
use crate::dashboard::DashboardRecorder;
use crate::recorders::{
    CsvRecorder, Figures, ProgressRecorder, PrometheusRecorder, Recorder, Report, TensorBoardRecorder,
};
use crate::RunError;

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

/// Everything the loop needs besides the algorithm.
pub struct LearnerSetup<'a> {
    pub layout: UnrollLayout,
    pub key: SharedKey,
    pub sockets: SocketOptions,
    pub replay_endpoints: Vec<String>,
    /// (PUB, ROUTER) of the weight protocol.
    pub weights_endpoints: (String, String),
    pub learner: &'a LearnerSection,
    pub train: &'a TrainSection,
    /// β at the start; annealed to 1 over `train.total_frames`.
    pub beta: f64,
    /// Send new priorities back (prioritized mode).
    pub update_priorities: bool,
    /// What the checkpoints must match on resume.
    pub config_fingerprint: String,
    pub seed: u64,
    pub options: LearnerOptions,
}

/// Why and where a run ended.
#[derive(Clone, Debug, PartialEq)]
pub struct RunSummary {
    pub reason: String,
    pub seconds: f64,
    /// Env frames the actors produced.
    pub env_frames: u64,
    /// Frames the learner trained on.
    pub frames_consumed: u64,
    pub learner_steps: u64,
    pub episodes: u64,
    pub mean_return: Option<f64>,
    pub checkpoint: Option<PathBuf>,
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
pub fn drop_rows_after(path: &Path, steps: u64) -> Result<(), RunError> {
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
        std::fs::write(&tmp, body).map_err(|e| RunError::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| RunError::io(path, e))?;
        tracing::info!(dropped, "metrics.csv: dropped rows written after the checkpoint");
    }
    Ok(())
}

/// When the run ends: `[train]`'s conditions, plus when the target return
/// was first reached (for `continue_after_target_s`).
struct StopConditions<'a> {
    train: &'a TrainSection,
    deadline: Option<Instant>,
    target_reached_at: Option<Instant>,
}

impl StopConditions<'_> {
    /// Why the run should end now, if it should: `stop` (a signal), or one
    /// of `[train]`'s conditions.
    fn reason(&mut self, stop: &AtomicBool, env_frames: u64, returns: &Returns) -> Option<String> {
        let train = self.train;
        if stop.load(Ordering::Relaxed) {
            return Some("interrupted".to_string());
        }
        if train.total_frames > 0 && env_frames >= train.total_frames {
            return Some(format!("trained on {env_frames} env frames"));
        }
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return Some(format!(
                "reached max_seconds = {}",
                train.max_seconds.unwrap_or_default()
            ));
        }
        let target = train.target_return?;
        let mean = returns.full_mean()?;
        if self.target_reached_at.is_none() && mean >= target {
            self.target_reached_at = Some(Instant::now());
            if train.continue_after_target_s > 0.0 {
                tracing::info!(
                    "mean return {mean:.1} over the last 100 episodes reached {target}; training on for {} s",
                    train.continue_after_target_s
                );
            }
        }
        let since = self.target_reached_at?.elapsed().as_secs_f64();
        if since < train.continue_after_target_s {
            None
        } else if train.continue_after_target_s > 0.0 {
            Some(format!(
                "trained {since:.0} s on after the mean return over the last 100 episodes reached {target} (now {mean:.1})"
            ))
        } else {
            Some(format!(
                "mean return {mean:.1} over the last 100 episodes reached {target}"
            ))
        }
    }
}

/// β annealed linearly from `beta0` to 1 over `total_frames` env frames.
pub fn annealed_beta(beta0: f64, env_frames: u64, total_frames: u64) -> f64 {
    if total_frames == 0 {
        return beta0;
    }
    let progress = (env_frames as f64 / total_frames as f64).min(1.0);
    beta0 + (1.0 - beta0) * progress
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
    returns: &mut Returns,
) -> Result<Option<SampledBatch>, RunError> {
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
        for e in &batch.episodes {
            returns.push(e.episode_return);
        }
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

/// Whether the learner may take a step: `learning_starts` frames were
/// produced in the run, and (with a `replay_ratio`) the frames this process
/// consumed are not ahead of ratio × the frames it saw produced.
fn may_step(learner: &LearnerSection, env_frames: u64, produced_here: u64, consumed_here: u64) -> bool {
    env_frames >= learner.learning_starts
        && learner
            .replay_ratio
            .is_none_or(|ratio| consumed_here as f64 <= ratio * produced_here as f64)
}

/// The run's counters between reports.
struct Throughput {
    at: Instant,
    env_frames: u64,
    frames_consumed: u64,
    steps: u64,
    lag_sum: f64,
    lag_count: u64,
}

/// Runs `algorithm` until a stop condition or `stop`; returns the summary.
pub fn run_learner(
    setup: LearnerSetup<'_>,
    algorithm: &mut dyn Algorithm,
    stop: &AtomicBool,
) -> Result<RunSummary, RunError> {
    let options = &setup.options;
    let learner = setup.learner;
    let train = setup.train;
    let t = u64::from(setup.layout.unroll_length);
    let checkpointer = Checkpointer::new(options.run_dir.join("checkpoints"), learner.keep_checkpoints)?;
    let mut resumed = Counters::default();
    match (options.resume, checkpointer.latest()?) {
        (false, Some(existing)) => {
            return Err(RunError::Config(format!(
                "{} already holds a run ({}): pass --resume to continue it, or choose another run directory",
                options.run_dir.display(),
                existing.display()
            )))
        }
        (true, None) => {
            return Err(RunError::Config(format!(
                "{}: no checkpoint to resume from",
                options.run_dir.display()
            )))
        }
        (true, Some(path)) => {
            let loaded = Checkpointer::load(&path, algorithm.device())?;
            Checkpointer::restore(algorithm, &loaded, Some(&setup.config_fingerprint))?;
            resumed = loaded.counters();
            tracing::info!(
                checkpoint = %path.display(),
                steps = algorithm.steps(),
                env_frames = resumed.env_frames,
                "resumed"
            );
        }
        (false, None) => {}
    }

    let mut publisher = WeightPublisher::start(
        &setup.key,
        &setup.sockets,
        &setup.weights_endpoints.0,
        &setup.weights_endpoints.1,
    )?;
    let mut recorders: Vec<Box<dyn Recorder>> = Vec::new();
    let prometheus = match learner.metrics_port {
        Some(port) => {
            let ip: std::net::IpAddr = learner.metrics_host.parse().map_err(|_| {
                RunError::Config(format!(
                    "learner.metrics_host: {:?} is not an IP address",
                    learner.metrics_host
                ))
            })?;
            // SocketAddr::new, not "host:port": an IPv6 host has colons.
            recorders.push(Box::new(PrometheusRecorder::serve(std::net::SocketAddr::new(
                ip, port,
            ))?));
            true
        }
        None => false,
    };
    let dashboard = match learner
        .dashboard_address()
        .map_err(|e| RunError::Config(format!("learner.{e}")))?
    {
        Some(address) => {
            let dashboard = DashboardRecorder::serve(address, learner.dashboard_token.clone(), publisher.hosts())?;
            println!("dashboard: http://{}/", dashboard.address());
            recorders.push(Box::new(dashboard));
            true
        }
        None => false,
    };
    // Version = learner steps + 1: a fresh learner publishes version 1.
    let version = |algorithm: &dyn Algorithm| algorithm.steps() + 1;
    publisher.publish(version(algorithm), algorithm.weights()?);

    let ctx = zmq::Context::new();
    let mut replay = ReplayClient::connect(&ctx, &setup.key, &setup.sockets, &setup.replay_endpoints, setup.seed)?;
    if options.resume {
        replay.set_insert_counting(InsertCounting::FromFirstReply);
    }
    let welcomes = replay.hello(Duration::from_secs(30))?;
    if let Some(w) = welcomes.iter().find(|w| w.layout != setup.layout) {
        return Err(RunError::Config(format!(
            "replay shards hold {:?}, this config produces {:?}",
            w.layout, setup.layout
        )));
    }

    let metrics_path = options.run_dir.join("metrics.csv");
    if options.resume {
        drop_rows_after(&metrics_path, algorithm.steps())?;
    }
    recorders.push(Box::new(CsvRecorder::open(&metrics_path, algorithm.scalars())?));
    recorders.push(Box::new(TensorBoardRecorder::create(
        &options.run_dir.join("tensorboard"),
    )?));
    recorders.push(Box::new(ProgressRecorder::new(options.progress)));

    let mut returns = Returns {
        last: VecDeque::with_capacity(100),
        total: resumed.run.episodes,
    };
    // Seconds trained so far, over every resume of this run.
    let trained_s = || resumed.run.elapsed_ms as f64 / 1000.0 + options.launched.elapsed().as_secs_f64();
    let mut stop_conditions = StopConditions {
        train,
        deadline: train
            .max_seconds
            .map(|s| options.launched + Duration::from_secs_f64((s - resumed.run.elapsed_ms as f64 / 1000.0).max(0.0))),
        target_reached_at: None,
    };
    let env_frames = |replay: &ReplayClient| resumed.env_frames + replay.inserted_unrolls() * t;
    let mut frames_consumed = resumed.frames_consumed;
    let counters = |env_frames: u64, frames_consumed: u64, returns: &Returns| Counters {
        env_frames,
        frames_consumed,
        run: RunCounters {
            episodes: returns.total,
            elapsed_ms: (trained_s() * 1000.0) as u64,
        },
    };
    let mut non_finite_in_a_row = 0u32;
    let mut paced_logged = false;
    // A batch gathered while the previous step ran.
    let mut prefetched: Option<SampledBatch> = None;
    let mut last_checkpoint = Instant::now();
    let mut since = Throughput {
        at: Instant::now(),
        env_frames: env_frames(&replay),
        frames_consumed,
        steps: algorithm.steps(),
        lag_sum: 0.0,
        lag_count: 0,
    };
    let reason = loop {
        if let Some(reason) = stop_conditions.reason(stop, env_frames(&replay), &returns) {
            break reason;
        }
        // The ratio is held on this process's own counts (frames consumed
        // here, inserts seen by this client), so a learner that restarts
        // against shards already at their rate limit draws first and lets
        // them grant again.
        let consumed_here = frames_consumed - resumed.frames_consumed;
        if !may_step(
            learner,
            env_frames(&replay),
            replay.inserted_unrolls() * t,
            consumed_here,
        ) {
            // Ahead of the actors (learning_starts, replay_ratio): wait for
            // them; an empty request brings the shards' insert counts and
            // the episodes that finished.
            if !paced_logged {
                tracing::info!(
                    learning_starts = learner.learning_starts,
                    replay_ratio = ?learner.replay_ratio,
                    "the learner waits for the actors' frames"
                );
                paced_logged = true;
            }
            match replay.refresh(Duration::from_secs(2)) {
                Ok(polled) => {
                    for e in &polled.episodes {
                        returns.push(e.episode_return);
                    }
                }
                Err(cml_replay::ClientError::Timeout { endpoint, .. }) => {
                    tracing::warn!(%endpoint, "replay shard not answering; retrying");
                }
                Err(e) => return Err(e.into()),
            }
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        let beta = annealed_beta(setup.beta, env_frames(&replay), train.total_frames);
        let deadline = stop_conditions.deadline;
        let gather_batch = |replay: &mut ReplayClient, returns: &mut Returns| {
            gather(replay, learner.batch_size, beta, stop, deadline, returns)
        };
        let batch = match prefetched.take() {
            Some(batch) => batch,
            None => {
                let Some(batch) = gather_batch(&mut replay, &mut returns)? else {
                    // Stopped, or out of time while waiting for data; the
                    // top of the loop says which.
                    continue;
                };
                batch
            }
        };
        let unrolls = SampledUnrolls {
            layout: &setup.layout,
            count: batch.count,
            frames: &batch.frames,
            importance_weights: &batch.weights,
        };
        // The step runs (and publishes its weights) on its own thread while
        // this one gathers the next batch, if the next step may follow at
        // once (the pacing above, on the counts after this step). In
        // prioritized mode that batch is drawn before this step's
        // priorities arrive, as in Ape-X.
        let produced_before = env_frames(&replay);
        let prefetch = may_step(
            learner,
            produced_before,
            replay.inserted_unrolls() * t,
            consumed_here + batch.count as u64 * t,
        );
        let (stepped, next) = std::thread::scope(|scope| {
            let stepping = scope.spawn(|| -> Result<_, RunError> {
                let outcome = algorithm.step(&unrolls, produced_before);
                // Published as soon as the step ends, not after the next
                // batch is gathered.
                if outcome.is_ok() && algorithm.steps() % learner.publish_interval_steps == 0 {
                    publisher.publish(version(algorithm), algorithm.weights()?);
                }
                Ok(outcome)
            });
            let next = if prefetch {
                gather_batch(&mut replay, &mut returns)
            } else {
                Ok(None)
            };
            (stepping.join(), next)
        });
        prefetched = next?;
        let stepped = stepped
            .map_err(|_| RunError::Config("the learner step panicked (its message is printed above)".into()))??;
        let outcome = match stepped {
            Ok(outcome) => outcome,
            Err(e) if cml_learner::algorithm::is_skippable(&e) => {
                // Skipped, parameters unchanged: keep training, unless
                // nothing but skipped steps come (bad data or settings).
                non_finite_in_a_row += 1;
                if non_finite_in_a_row >= MAX_NON_FINITE_IN_A_ROW {
                    return Err(RunError::Config(format!(
                        "{MAX_NON_FINITE_IN_A_ROW} learner steps in a row were skipped; the last: {e}"
                    )));
                }
                tracing::warn!("{e}");
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        non_finite_in_a_row = 0;
        frames_consumed += batch.count as u64 * t;
        let v = version(algorithm) as f64;
        for &behaviour in &batch.policy_versions {
            since.lag_sum += v - 1.0 - behaviour as f64;
            since.lag_count += 1;
        }
        if setup.update_priorities {
            replay.update_priorities(&batch.shards, &batch.keys, &outcome.priorities)?;
        }

        // A run that ends after this step reports it first, so the row
        // that met the stop condition is in metrics.csv.
        let produced = env_frames(&replay);
        let ending = stop_conditions.reason(stop, produced, &returns);
        if ending.is_some() || since.at.elapsed().as_secs_f64() >= learner.report_interval_s {
            let elapsed = since.at.elapsed().as_secs_f64().max(1e-9);
            let shards = if prometheus || dashboard {
                (0..replay.shards())
                    .filter_map(|i| replay.stats(i, Duration::from_millis(200)).ok().map(|s| (i, s)))
                    .collect()
            } else {
                Vec::new()
            };
            let report = Report {
                figures: Figures {
                    wall_s: trained_s(),
                    env_frames: produced,
                    frames_consumed,
                    learner_steps: algorithm.steps(),
                    episodes: returns.total,
                    mean_return_100: returns.mean(),
                    replay_ratio: if produced > 0 {
                        frames_consumed as f64 / produced as f64
                    } else {
                        0.0
                    },
                    policy_lag: if since.lag_count > 0 {
                        since.lag_sum / since.lag_count as f64
                    } else {
                        0.0
                    },
                    env_frames_per_s: produced.saturating_sub(since.env_frames) as f64 / elapsed,
                    frames_consumed_per_s: (frames_consumed - since.frames_consumed) as f64 / elapsed,
                    learner_steps_per_s: (algorithm.steps() - since.steps) as f64 / elapsed,
                    replay_size: batch.replay_size,
                },
                scalars: algorithm.scalars(),
                values: &outcome.scalars,
                shards: &shards,
            };
            for recorder in &mut recorders {
                recorder.record(&report)?;
            }
            since = Throughput {
                at: Instant::now(),
                env_frames: produced,
                frames_consumed,
                steps: algorithm.steps(),
                lag_sum: 0.0,
                lag_count: 0,
            };
        }
        if let Some(reason) = ending {
            break reason;
        }
        if last_checkpoint.elapsed().as_secs_f64() >= learner.checkpoint_interval_s {
            checkpointer.save(
                algorithm,
                &setup.config_fingerprint,
                counters(produced, frames_consumed, &returns),
            )?;
            last_checkpoint = Instant::now();
        }
    };
    let produced = env_frames(&replay);
    let checkpoint = checkpointer.save(
        algorithm,
        &setup.config_fingerprint,
        counters(produced, frames_consumed, &returns),
    )?;
    for recorder in &mut recorders {
        recorder.finish()?;
    }
    Ok(RunSummary {
        reason,
        seconds: trained_s(),
        env_frames: produced,
        frames_consumed,
        learner_steps: algorithm.steps(),
        episodes: returns.total,
        mean_return: returns.mean(),
        checkpoint: Some(checkpoint),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn returns_of(value: f64, count: usize) -> Returns {
        let mut returns = Returns {
            last: VecDeque::new(),
            total: 0,
        };
        for _ in 0..count {
            returns.push(value);
        }
        returns
    }

    #[test]
    fn the_learner_waits_for_learning_starts_and_the_replay_ratio() {
        let paced = LearnerSection {
            replay_ratio: Some(4.0),
            learning_starts: 1000,
            ..LearnerSection::default()
        };
        assert!(!may_step(&paced, 999, 999, 0), "before learning_starts");
        assert!(may_step(&paced, 1000, 1000, 0));
        assert!(may_step(&paced, 1000, 1000, 4000), "at the ratio");
        assert!(!may_step(&paced, 1000, 1000, 4001), "ahead of it");
        // A resumed learner: the run's frames count for learning_starts,
        // its own for the ratio, so it may draw first.
        assert!(may_step(&paced, 50_000, 0, 0));
        assert!(!may_step(&paced, 50_000, 0, 640));
        assert!(
            may_step(&LearnerSection::default(), 0, 0, 1 << 40),
            "no pacing by default"
        );
    }

    #[test]
    fn the_run_stops_at_the_target_or_continues_after_it() {
        let never = AtomicBool::new(false);
        let at_once = TrainSection {
            target_return: Some(475.0),
            ..TrainSection::default()
        };
        let mut stop = StopConditions {
            train: &at_once,
            deadline: None,
            target_reached_at: None,
        };
        // Under 100 episodes, or under the target: no stop.
        assert_eq!(stop.reason(&never, 0, &returns_of(500.0, 99)), None);
        assert_eq!(stop.reason(&never, 0, &returns_of(474.0, 100)), None);
        let reason = stop.reason(&never, 0, &returns_of(480.0, 100)).unwrap();
        assert_eq!(reason, "mean return 480.0 over the last 100 episodes reached 475");

        let held = TrainSection {
            continue_after_target_s: 0.3,
            ..at_once.clone()
        };
        let mut stop = StopConditions {
            train: &held,
            deadline: None,
            target_reached_at: None,
        };
        assert_eq!(
            stop.reason(&never, 0, &returns_of(480.0, 100)),
            None,
            "the clock starts"
        );
        let first = stop.target_reached_at.unwrap();
        // Falling back under the target does not restart the clock.
        assert_eq!(stop.reason(&never, 0, &returns_of(400.0, 100)), None);
        assert_eq!(stop.target_reached_at, Some(first));
        std::thread::sleep(Duration::from_millis(350));
        let reason = stop.reason(&never, 0, &returns_of(400.0, 100)).unwrap();
        assert!(
            reason
                .starts_with("trained 0 s on after the mean return over the last 100 episodes reached 475 (now 400.0)"),
            "{reason}"
        );
        // A signal still ends the run at once.
        let mut stop = StopConditions {
            train: &held,
            deadline: None,
            target_reached_at: None,
        };
        assert_eq!(
            stop.reason(&AtomicBool::new(true), 0, &returns_of(0.0, 0)).as_deref(),
            Some("interrupted")
        );
    }

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

    #[test]
    fn beta_anneals_to_one_over_env_frames() {
        assert_eq!(annealed_beta(0.4, 0, 1000), 0.4);
        assert!((annealed_beta(0.4, 500, 1000) - 0.7).abs() < 1e-12);
        assert_eq!(annealed_beta(0.4, 2000, 1000), 1.0);
        assert_eq!(annealed_beta(0.4, 2000, 0), 0.4, "no horizon: constant");
    }
}
