//! Where a report goes: metrics.csv, TensorBoard, Prometheus, the progress
//! line. Every recorder takes the same [`Report`]: the loop's own figures
//! plus the algorithm's named scalars, so a new algorithm's metric reaches
//! every writer without touching one.

use std::path::{Path, PathBuf};
use std::time::Duration;

use cml_learner::ScalarSpec;
use cml_proto::ShardStats;

use crate::tensorboard::EventWriter;
use crate::RunError;

/// The loop's own figures of one report (the algorithm's scalars aside).
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct Figures {
    /// Seconds trained, over every resume.
    pub wall_s: f64,
    /// Env frames the actors produced (the shards' accepted inserts × T).
    pub env_frames: u64,
    /// Frames the learner trained on (B × T per step).
    pub frames_consumed: u64,
    pub learner_steps: u64,
    pub episodes: u64,
    /// Mean return of the last 100 episodes (fewer at the start).
    pub mean_return_100: Option<f64>,
    /// Frames consumed / frames produced, over the whole run.
    pub replay_ratio: f64,
    /// Mean of (learner version − behaviour version) over the unrolls
    /// trained on since the last report.
    pub policy_lag: f64,
    pub env_frames_per_s: f64,
    pub frames_consumed_per_s: f64,
    pub learner_steps_per_s: f64,
    /// Unrolls in all shards together.
    pub replay_size: u64,
}

/// One report of the learner loop.
pub struct Report<'a> {
    pub figures: Figures,
    /// The algorithm's scalars and their values of the last step.
    pub scalars: &'a [ScalarSpec],
    pub values: &'a [f64],
    /// Each shard's statistics (asked for only when Prometheus or the
    /// dashboard is on).
    pub shards: &'a [(usize, ShardStats)],
}

/// A sink for reports.
pub trait Recorder {
    fn record(&mut self, report: &Report<'_>) -> Result<(), RunError>;
    /// Called once at the end of the run.
    fn finish(&mut self) -> Result<(), RunError> {
        Ok(())
    }
}

/// The loop's own columns; the algorithm's follow.
const LOOP_COLUMNS: [&str; 12] = [
    "wall_s",
    "env_frames",
    "learner_steps",
    "episodes",
    "mean_return_100",
    "frames_consumed",
    "replay_ratio",
    "policy_lag",
    "env_frames_per_s",
    "frames_consumed_per_s",
    "learner_steps_per_s",
    "replay_size",
];

/// The column (or Prometheus name part) of a scalar: its tag with `/` as `_`.
pub fn column_name(spec: &ScalarSpec) -> String {
    spec.name.replace('/', "_")
}

/// metrics.csv: one header per run (the loop's columns, then the
/// algorithm's), one row per report.
pub struct CsvRecorder {
    writer: csv::Writer<std::fs::File>,
    path: PathBuf,
}

impl CsvRecorder {
    /// Opens (appends to) `path`. A file whose header is not this run's
    /// (written by another version) is moved aside to `metrics-N.csv`.
    pub fn open(path: &Path, scalars: &[ScalarSpec]) -> Result<CsvRecorder, RunError> {
        let mut header: Vec<String> = LOOP_COLUMNS.iter().map(|c| c.to_string()).collect();
        header.extend(scalars.iter().map(column_name));
        let header_line = header.join(",");
        if let Ok(text) = std::fs::read_to_string(path) {
            if text.lines().next().is_some_and(|first| first != header_line) {
                let mut n = 1;
                let aside = loop {
                    let candidate = path.with_file_name(format!("metrics-{n}.csv"));
                    if !candidate.exists() {
                        break candidate;
                    }
                    n += 1;
                };
                std::fs::rename(path, &aside).map_err(|e| RunError::io(path, e))?;
                tracing::warn!(moved_to = %aside.display(), "metrics.csv had another header; moved aside");
            }
        }
        let new_file = !path.exists();
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| RunError::io(path, e))?;
        let mut writer = csv::Writer::from_writer(file);
        if new_file {
            writer.write_record(&header).map_err(|e| RunError::csv(path, e))?;
            writer.flush().map_err(|e| RunError::io(path, e))?;
        }
        Ok(CsvRecorder {
            writer,
            path: path.to_path_buf(),
        })
    }
}

impl Recorder for CsvRecorder {
    fn record(&mut self, r: &Report<'_>) -> Result<(), RunError> {
        let mut row = vec![
            format!("{:.3}", r.figures.wall_s),
            r.figures.env_frames.to_string(),
            r.figures.learner_steps.to_string(),
            r.figures.episodes.to_string(),
            r.figures.mean_return_100.map_or(String::new(), |m| format!("{m:.3}")),
            r.figures.frames_consumed.to_string(),
            format!("{:.4}", r.figures.replay_ratio),
            format!("{:.3}", r.figures.policy_lag),
            format!("{:.1}", r.figures.env_frames_per_s),
            format!("{:.1}", r.figures.frames_consumed_per_s),
            format!("{:.2}", r.figures.learner_steps_per_s),
            r.figures.replay_size.to_string(),
        ];
        row.extend(r.values.iter().map(|v| v.to_string()));
        self.writer
            .write_record(&row)
            .map_err(|e| RunError::csv(&self.path, e))?;
        self.writer.flush().map_err(|e| RunError::io(&self.path, e))
    }

    fn finish(&mut self) -> Result<(), RunError> {
        self.writer.flush().map_err(|e| RunError::io(&self.path, e))
    }
}

/// The loop's own scalars as (TensorBoard tag, value).
fn loop_scalars(r: &Report<'_>) -> Vec<(&'static str, f64)> {
    let mut out = vec![
        ("replay/ratio", r.figures.replay_ratio),
        ("train/policy_lag", r.figures.policy_lag),
        ("throughput/env_frames_per_s", r.figures.env_frames_per_s),
        ("throughput/frames_consumed_per_s", r.figures.frames_consumed_per_s),
        ("throughput/learner_steps_per_s", r.figures.learner_steps_per_s),
        ("replay/size", r.figures.replay_size as f64),
    ];
    if let Some(m) = r.figures.mean_return_100 {
        out.push(("episode/mean_return_100", m));
    }
    out
}

/// TensorBoard scalars, stepped by env frames produced.
pub struct TensorBoardRecorder {
    writer: EventWriter,
}

impl TensorBoardRecorder {
    pub fn create(dir: &Path) -> Result<TensorBoardRecorder, RunError> {
        Ok(TensorBoardRecorder {
            writer: EventWriter::create(dir).map_err(|e| RunError::io(dir, e))?,
        })
    }
}

impl Recorder for TensorBoardRecorder {
    fn record(&mut self, r: &Report<'_>) -> Result<(), RunError> {
        let mut scalars: Vec<(&str, f32)> = loop_scalars(r).into_iter().map(|(k, v)| (k, v as f32)).collect();
        scalars.extend(r.scalars.iter().zip(r.values).map(|(s, v)| (s.name, *v as f32)));
        let io = |e| RunError::io(Path::new("tensorboard"), e);
        self.writer
            .add_scalars(&scalars, r.figures.env_frames as i64)
            .map_err(io)?;
        self.writer.flush().map_err(io)
    }

    fn finish(&mut self) -> Result<(), RunError> {
        self.writer
            .flush()
            .map_err(|e| RunError::io(Path::new("tensorboard"), e))
    }
}

/// Prometheus, by its conventions (`promtool check metrics` is clean): run
/// totals as counters (`_total`), the rest as gauges, each with HELP; no
/// per-second gauges (rates are for the scraper).
pub struct PrometheusRecorder {
    /// Last totals seen per shard (a restarted shard counts from 0 again).
    shard_totals: std::collections::HashMap<String, u64>,
    described: bool,
}

impl PrometheusRecorder {
    /// Serves `/metrics` on `address`.
    pub fn serve(address: std::net::SocketAddr) -> Result<PrometheusRecorder, RunError> {
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .with_http_listener(address)
            .install()
            .map_err(|e| RunError::Config(format!("serving Prometheus metrics on {address}: {e}")))?;
        tracing::info!(%address, "Prometheus metrics at /metrics");
        Ok(PrometheusRecorder {
            shard_totals: Default::default(),
            described: false,
        })
    }

    fn describe(&mut self, r: &Report<'_>) {
        if self.described {
            return;
        }
        self.described = true;
        metrics::describe_counter!("cml_env_frames_total", "env frames the actors produced");
        metrics::describe_counter!("cml_frames_consumed_total", "frames the learner trained on");
        metrics::describe_counter!("cml_learner_steps_total", "learner steps taken");
        metrics::describe_counter!("cml_episodes_total", "episodes the actors finished");
        for (tag, help) in [
            ("replay/ratio", "frames consumed / frames produced"),
            ("train/policy_lag", "mean learner version minus behaviour version"),
            ("episode/mean_return_100", "mean return of the last 100 episodes"),
        ] {
            metrics::describe_gauge!(gauge_name(tag), help);
        }
        for s in r.scalars {
            metrics::describe_gauge!(gauge_name(s.name), s.help);
        }
        metrics::describe_gauge!("cml_replay_size", "unrolls the shard holds");
        metrics::describe_gauge!("cml_replay_bytes", "payload bytes the shard holds");
        metrics::describe_counter!("cml_replay_inserted_total", "unrolls the shard stored");
        metrics::describe_counter!("cml_replay_sampled_total", "unrolls the shard handed out in batches");
        metrics::describe_counter!("cml_replay_rejected_total", "inserts the shard refused, by reason");
    }
}

/// The gauge of a scalar tag: `cml_` + the tag with `/` as `_`. Rates are
/// left to the scraper (counters above), and `_total` is Prometheus's
/// counter suffix, so a gauge whose tag ends in `total` gets `_value`
/// appended (`loss/total` → `cml_loss_total_value`).
fn gauge_name(tag: &str) -> String {
    let name = format!("cml_{}", tag.replace('/', "_"));
    if name.ends_with("_total") {
        format!("{name}_value")
    } else {
        name
    }
}

/// The loop's scalars that Prometheus gets as gauges: not the per-second
/// rates (a scraper computes those from the counters) nor the size summed
/// over shards (each shard's `cml_replay_size` is there).
fn is_prometheus_gauge(tag: &str) -> bool {
    !tag.starts_with("throughput/") && tag != "replay/size"
}

impl Recorder for PrometheusRecorder {
    fn record(&mut self, r: &Report<'_>) -> Result<(), RunError> {
        self.describe(r);
        metrics::counter!("cml_env_frames_total").absolute(r.figures.env_frames);
        metrics::counter!("cml_frames_consumed_total").absolute(r.figures.frames_consumed);
        metrics::counter!("cml_learner_steps_total").absolute(r.figures.learner_steps);
        metrics::counter!("cml_episodes_total").absolute(r.figures.episodes);
        for (tag, value) in loop_scalars(r).into_iter().filter(|(tag, _)| is_prometheus_gauge(tag)) {
            metrics::gauge!(gauge_name(tag)).set(value);
        }
        for (spec, value) in r.scalars.iter().zip(r.values) {
            metrics::gauge!(gauge_name(spec.name)).set(*value);
        }
        for (shard, stats) in r.shards {
            let s = shard.to_string();
            metrics::gauge!("cml_replay_size", "shard" => s.clone()).set(stats.size as f64);
            metrics::gauge!("cml_replay_bytes", "shard" => s.clone()).set(stats.bytes as f64);
            // A shard's totals start again from 0 when it restarts; these
            // counters add what is new since the last report, so they keep
            // rising across shard restarts.
            let totals = &mut self.shard_totals;
            let mut new_since = |what: &str, now: u64| {
                let last = totals.insert(format!("{what}/{s}"), now).unwrap_or(0);
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
            for (reason, count) in &stats.rejected {
                metrics::counter!("cml_replay_rejected_total", "shard" => s.clone(), "reason" => reason.clone())
                    .increment(new_since(&format!("rejected/{reason}"), *count));
            }
        }
        Ok(())
    }
}

/// The progress line: a spinner on a terminal, a log line otherwise.
pub struct ProgressRecorder {
    bar: Option<indicatif::ProgressBar>,
}

impl ProgressRecorder {
    pub fn new(terminal: bool) -> ProgressRecorder {
        ProgressRecorder {
            bar: terminal.then(|| {
                let bar = indicatif::ProgressBar::new_spinner();
                bar.enable_steady_tick(Duration::from_millis(200));
                bar
            }),
        }
    }
}

impl Recorder for ProgressRecorder {
    fn record(&mut self, r: &Report<'_>) -> Result<(), RunError> {
        let line = format!(
            "frames {} ({:.0}/s) | consumed {} (ratio {:.2}) | return {} | steps {} ({:.1}/s) | lag {:.1}",
            r.figures.env_frames,
            r.figures.env_frames_per_s,
            r.figures.frames_consumed,
            r.figures.replay_ratio,
            r.figures.mean_return_100.map_or("-".to_string(), |m| format!("{m:.1}")),
            r.figures.learner_steps,
            r.figures.learner_steps_per_s,
            r.figures.policy_lag
        );
        match &self.bar {
            Some(bar) => bar.set_message(line),
            None => tracing::info!("{line}"),
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), RunError> {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        Ok(())
    }
}
