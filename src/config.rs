//! The run configuration: one TOML file shared by every role.
//!
//! Unknown keys are rejected, and every error names the file and the key
//! path (`env.max_episode_steps: invalid type: string "long", expected u64`).
//! Sections: `[env]`, `[actor]` (unroll length), `[replay]` (shards, sampling,
//! memory, flow control) and `[transport]` (key file, message size limits).
//! Every section but `[env]` has defaults, so a minimal config is two lines.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The whole configuration file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Base seed of the run; env `i` of a vector gets `seed + i`.
    #[serde(default)]
    pub seed: u64,
    /// The environment every actor runs.
    pub env: EnvConfig,
    #[serde(default)]
    pub actor: ActorConfig,
    #[serde(default)]
    pub model: cml_policy::NetConfig,
    #[serde(default)]
    pub learner: LearnerConfig,
    #[serde(default)]
    pub train: TrainConfig,
    #[serde(default)]
    pub cluster: ClusterConfig,
    #[serde(default)]
    pub replay: ReplayConfig,
    #[serde(default)]
    pub transport: TransportConfig,
    /// Directory of the config file; relative paths in it are resolved
    /// against it.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

/// `[actor]`: actor hosts.
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
}

/// `[learner]`: the learner's training settings and where it serves weights.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LearnerConfig {
    /// PUB socket broadcasting every new policy version.
    pub weights_endpoint: String,
    /// ROUTER socket answering `get_weights` (hosts that join late).
    pub weights_request_endpoint: String,
    /// `"cpu"`, `"cuda"` or `"cuda:N"` (CUDA needs a `--features cuda` build).
    pub device: String,
    /// `[learner.optimizer]`: `kind = "rmsprop"` (lr, decay, epsilon) or
    /// `kind = "adam"` (lr, beta1, beta2, epsilon).
    pub optimizer: OptimizerSection,
    /// Global gradient-norm clip.
    pub max_grad_norm: f64,
    /// Candle CPU threads for the learner's kernels.
    pub cpu_threads: usize,
    /// `[learner.loss]`: discount, baseline_cost, entropy_cost, V-trace clips, lambda, reward_clipping.
    pub loss: cml_learner::loss::LossConfig,
    /// Unrolls per learner step.
    pub batch_size: usize,
    /// Learner steps between weight broadcasts.
    pub publish_interval_steps: u64,
    /// Seconds between checkpoints (one is also written at the end).
    pub checkpoint_interval_s: f64,
    /// Checkpoints kept.
    pub keep_checkpoints: usize,
    /// Seconds between metric reports (CSV row, TensorBoard, progress).
    pub report_interval_s: f64,
    /// Serve Prometheus metrics on `http://{metrics_host}:{metrics_port}/metrics`.
    pub metrics_port: Option<u16>,
    pub metrics_host: String,
}

/// Which optimizer the learner runs (`kind`, RMSProp by default).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    #[default]
    Rmsprop,
    Adam,
}

/// `[learner.optimizer]` as written in the file: a flat table, so that an
/// error names the key (`learner.optimizer.lr: ...`) and a table without
/// `kind` means RMSProp. Keys that belong to the other kind are errors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimizerSection {
    #[serde(default)]
    pub kind: OptimizerKind,
    /// Default: 6e-4 for RMSProp (IMPALA's), 1e-3 for Adam (Kingma & Ba's).
    pub lr: Option<f64>,
    /// RMSProp only (default 0.99).
    pub decay: Option<f64>,
    /// Adam only (default 0.9).
    pub beta1: Option<f64>,
    /// Adam only (default 0.999).
    pub beta2: Option<f64>,
    /// Default: 0.01 for RMSProp, 1e-8 for Adam.
    pub epsilon: Option<f64>,
}

impl OptimizerSection {
    /// The optimizer settings, with defaults filled in.
    pub fn to_config(&self) -> cml_learner::OptimizerConfig {
        use cml_learner::optim::{AdamConfig, RmsPropConfig};
        match self.kind {
            OptimizerKind::Rmsprop => cml_learner::OptimizerConfig::Rmsprop(RmsPropConfig {
                lr: self.lr.unwrap_or(6e-4),
                decay: self.decay.unwrap_or(0.99),
                epsilon: self.epsilon.unwrap_or(0.01),
            }),
            OptimizerKind::Adam => cml_learner::OptimizerConfig::Adam(AdamConfig {
                lr: self.lr.unwrap_or(1e-3),
                beta1: self.beta1.unwrap_or(0.9),
                beta2: self.beta2.unwrap_or(0.999),
                epsilon: self.epsilon.unwrap_or(1e-8),
            }),
        }
    }

    fn validate(&self) -> Result<(), String> {
        let rmsprop_only = [("decay", self.decay)];
        let adam_only = [("beta1", self.beta1), ("beta2", self.beta2)];
        let (kind, foreign): (&str, &[(&str, Option<f64>)]) = match self.kind {
            OptimizerKind::Rmsprop => ("rmsprop", &adam_only),
            OptimizerKind::Adam => ("adam", &rmsprop_only),
        };
        for &(key, value) in foreign {
            if value.is_some() {
                return Err(format!("learner.optimizer.{key}: not a setting of kind = \"{kind}\""));
            }
        }
        let positive = |key: &str, v: Option<f64>| match v {
            Some(x) if !(x.is_finite() && x > 0.0) => Err(format!(
                "learner.optimizer.{key}: must be a finite number above 0, found {x}"
            )),
            _ => Ok(()),
        };
        positive("lr", self.lr)?;
        positive("epsilon", self.epsilon)?;
        for (key, v) in [("decay", self.decay), ("beta1", self.beta1), ("beta2", self.beta2)] {
            if let Some(x) = v {
                if !(0.0..1.0).contains(&x) {
                    return Err(format!("learner.optimizer.{key}: must be in [0, 1), found {x}"));
                }
            }
        }
        Ok(())
    }
}

/// serde's Rust type names in an error, said as a config author would
/// (`expected f64` becomes `expected a number`).
fn plain_types(message: &str) -> String {
    let mut out = message.to_string();
    for (rust, plain) in [
        ("expected f64", "expected a number"),
        ("expected f32", "expected a number"),
        ("expected u64", "expected a whole number >= 0"),
        ("expected u32", "expected a whole number >= 0"),
        ("expected u16", "expected a whole number >= 0"),
        ("expected usize", "expected a whole number >= 0"),
        ("expected i64", "expected a whole number"),
        ("expected a boolean", "expected true or false"),
    ] {
        out = out.replace(rust, plain);
    }
    out
}

impl Default for LearnerConfig {
    fn default() -> LearnerConfig {
        let training = cml_learner::LearnerConfig::default();
        LearnerConfig {
            weights_endpoint: "tcp://127.0.0.1:5550".into(),
            weights_request_endpoint: "tcp://127.0.0.1:5551".into(),
            device: training.device,
            optimizer: OptimizerSection::default(),
            max_grad_norm: training.max_grad_norm,
            cpu_threads: training.cpu_threads,
            loss: training.loss,
            batch_size: 32,
            publish_interval_steps: 1,
            checkpoint_interval_s: 60.0,
            keep_checkpoints: 3,
            report_interval_s: 1.0,
            metrics_port: None,
            metrics_host: "127.0.0.1".into(),
        }
    }
}

/// `[cluster]`: where each role runs, for runs across hosts. When set,
/// these take precedence over `replay.host`/`replay.endpoints` and the
/// learner's endpoint strings.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// The learner's address: weights on `tcp://{learner_host}:{weights_port}`
    /// (PUB) and `:{weights_request_port}` (ROUTER).
    pub learner_host: Option<String>,
    pub weights_port: Option<u16>,
    pub weights_request_port: Option<u16>,
    /// Replay shard i runs on `replay_hosts[i % len]`, port `replay.base_port + i`.
    pub replay_hosts: Option<Vec<String>>,
}

/// `[train]`: when a run stops, and where it writes.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Stop after the learner has trained on this many env frames (0: no
    /// limit). Also the horizon of the linear learning-rate decay.
    pub total_frames: u64,
    /// Stop when the mean return of the last 100 episodes reaches this.
    pub target_return: Option<f64>,
    /// Stop after this many seconds of wall time.
    pub max_seconds: Option<f64>,
    /// Where run directories are created (relative to the working directory).
    pub runs_dir: PathBuf,
}

impl Default for TrainConfig {
    fn default() -> TrainConfig {
        TrainConfig {
            total_frames: 0,
            target_return: None,
            max_seconds: None,
            runs_dir: PathBuf::from("runs"),
        }
    }
}

/// How a replay shard hands out items.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReplayMode {
    /// Proportional to priority^alpha (Ape-X).
    Prioritized,
    /// Uniform over stored items.
    Uniform,
    /// Each item once, oldest first (pure on-policy IMPALA).
    Queue,
}

/// `[replay]`: the sharded replay service.
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
    pub mode: ReplayMode,
    /// Unrolls per shard (lowered to fit `max_memory_mb`).
    pub capacity: usize,
    /// Payload memory per shard, MiB.
    pub max_memory_mb: u64,
    /// Priority exponent α (prioritized mode).
    pub alpha: f64,
    /// Importance-sampling exponent β at the start (annealed to 1 by the learner).
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
            mode: ReplayMode::Prioritized,
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
}

/// `[transport]`: authentication and message limits for every socket.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TransportConfig {
    /// The shared key (`cml-rl keygen FILE` writes one); relative to the
    /// config file's directory.
    pub key_file: Option<PathBuf>,
    /// Largest message accepted, MiB.
    pub max_message_mb: u64,
    /// High-water mark per socket and peer, messages.
    pub high_water_mark: i32,
}

impl Default for TransportConfig {
    fn default() -> TransportConfig {
        TransportConfig {
            key_file: None,
            max_message_mb: 64,
            high_water_mark: 1000,
        }
    }
}

/// `[env]`: which registered env to make and how.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvConfig {
    /// A registered id, e.g. `"CartPole-v1"` (see `cml-rl envs`).
    pub id: String,
    /// Overrides the registered time limit (Gymnasium's `max_episode_steps`).
    #[serde(default)]
    pub max_episode_steps: Option<u64>,
    /// The env's own parameters, handed to its factory unchanged
    /// (`[env.params]`), e.g. `g = 9.81` for Pendulum-v1.
    #[serde(default)]
    pub params: toml::Table,
}

/// A config that could not be read; the message names the file and the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: {message}")]
    Invalid { file: PathBuf, message: String },
}

impl Config {
    /// Endpoint of every replay shard, in shard order (`[cluster]` first).
    pub fn replay_endpoints(&self) -> Vec<String> {
        match &self.cluster.replay_hosts {
            Some(hosts) if !hosts.is_empty() => (0..self.replay.shards)
                .map(|i| {
                    let host = &hosts[i as usize % hosts.len()];
                    format!("tcp://{host}:{}", u32::from(self.replay.base_port) + i)
                })
                .collect(),
            _ => self.replay.shard_endpoints(),
        }
    }

    /// The learner's (PUB, ROUTER) weight endpoints (`[cluster]` first).
    pub fn weights_endpoints(&self) -> (String, String) {
        match &self.cluster.learner_host {
            Some(host) => (
                format!("tcp://{host}:{}", self.cluster.weights_port.unwrap_or(5550)),
                format!("tcp://{host}:{}", self.cluster.weights_request_port.unwrap_or(5551)),
            ),
            None => (
                self.learner.weights_endpoint.clone(),
                self.learner.weights_request_endpoint.clone(),
            ),
        }
    }

    /// Reads and checks a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: path.to_path_buf(),
            source,
        })?;
        let mut config = Config::parse(&text).map_err(|message| ConfigError::Invalid {
            file: path.to_path_buf(),
            message,
        })?;
        config.base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Ok(config)
    }

    /// A path from the config, resolved against the config file's directory.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.base_dir.join(path)
        }
    }

    /// Parses config text; the error names the key path.
    pub fn parse(text: &str) -> Result<Config, String> {
        let de = toml::Deserializer::new(text);
        let config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            // toml's own message starts with a location and a snippet; the
            // last line is the reason.
            let reason = plain_types(inner.message().trim());
            let at = inner
                .span()
                .map(|span| {
                    let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                    format!(" (line {line})")
                })
                .unwrap_or_default();
            if path.is_empty() || path == "." {
                format!("{reason}{at}")
            } else {
                format!("{path}: {reason}{at}")
            }
        })?;
        config.validate()?;
        Ok(config)
    }

    /// `[learner.loss]` values the loss would turn into NaN or nonsense, and
    /// durations too long to represent (they would panic as a `Duration`).
    fn validate_loss_and_durations(&self) -> Result<(), String> {
        let l = &self.learner.loss;
        let unit = |x: f32| (0.0..=1.0).contains(&x);
        let non_negative = |x: f32| x.is_finite() && x >= 0.0;
        let positive = |x: f32| x.is_finite() && x > 0.0;
        for (key, ok, reason) in [
            ("learner.loss.discount", unit(l.discount), "must be in [0, 1]"),
            ("learner.loss.lambda", unit(l.lambda), "must be in [0, 1]"),
            (
                "learner.loss.baseline_cost",
                non_negative(l.baseline_cost),
                "must be a number >= 0",
            ),
            (
                "learner.loss.entropy_cost",
                non_negative(l.entropy_cost),
                "must be a number >= 0",
            ),
            (
                "learner.loss.reward_scale",
                positive(l.reward_scale),
                "must be a number > 0",
            ),
            (
                "learner.loss.clip_rho_threshold",
                l.clip_rho_threshold.is_none_or(positive),
                "must be a number > 0",
            ),
            (
                "learner.loss.clip_pg_rho_threshold",
                l.clip_pg_rho_threshold.is_none_or(positive),
                "must be a number > 0",
            ),
            (
                "model.initial_log_std",
                self.model.initial_log_std.is_finite() && self.model.initial_log_std.abs() <= 20.0,
                "must be a number in [-20, 20]",
            ),
        ] {
            if !ok {
                return Err(format!("{key}: {reason}"));
            }
        }
        // About 30 years: any longer is a typo, and would overflow a Duration.
        const MAX_SECONDS: f64 = 1e9;
        for (key, seconds) in [
            ("actor.report_interval_s", Some(self.actor.report_interval_s)),
            (
                "learner.checkpoint_interval_s",
                Some(self.learner.checkpoint_interval_s),
            ),
            ("learner.report_interval_s", Some(self.learner.report_interval_s)),
            ("train.max_seconds", self.train.max_seconds),
            ("replay.sender_timeout_s", Some(self.replay.sender_timeout_s)),
            ("replay.stats_interval_s", Some(self.replay.stats_interval_s)),
        ] {
            if seconds.is_some_and(|s| s > MAX_SECONDS) {
                return Err(format!("{key}: at most {MAX_SECONDS:e} seconds"));
            }
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), String> {
        if self.env.max_episode_steps == Some(0) {
            return Err("env.max_episode_steps: must be at least 1".to_string());
        }
        self.learner.optimizer.validate()?;
        self.validate_loss_and_durations()?;
        let a = &self.actor;
        for (key, ok) in [
            ("actor.unroll_length", a.unroll_length >= 1),
            ("actor.envs_per_worker", a.envs_per_worker >= 1),
            ("actor.insert_batch", a.insert_batch >= 1),
            ("actor.pending_chunks", a.pending_chunks >= 1),
        ] {
            if !ok {
                return Err(format!("{key}: must be at least 1"));
            }
        }
        if !(a.report_interval_s.is_finite() && a.report_interval_s > 0.0) {
            return Err("actor.report_interval_s: must be positive".to_string());
        }
        if self.model.hidden.contains(&0) {
            return Err("model.hidden: layer sizes must be at least 1".to_string());
        }
        let l = &self.learner;
        for (key, ok, reason) in [
            ("learner.batch_size", l.batch_size >= 1, "must be at least 1"),
            (
                "learner.publish_interval_steps",
                l.publish_interval_steps >= 1,
                "must be at least 1",
            ),
            (
                "learner.keep_checkpoints",
                l.keep_checkpoints >= 1,
                "must be at least 1",
            ),
            ("learner.cpu_threads", l.cpu_threads >= 1, "must be at least 1"),
            (
                "learner.checkpoint_interval_s",
                l.checkpoint_interval_s.is_finite() && l.checkpoint_interval_s > 0.0,
                "must be positive",
            ),
            (
                "learner.report_interval_s",
                l.report_interval_s.is_finite() && l.report_interval_s > 0.0,
                "must be positive",
            ),
            (
                "learner.max_grad_norm",
                l.max_grad_norm.is_finite() && l.max_grad_norm > 0.0,
                "must be positive",
            ),
            (
                "train.max_seconds",
                self.train.max_seconds.is_none_or(|s| s.is_finite() && s > 0.0),
                "must be positive",
            ),
            (
                "train.target_return",
                self.train.target_return.is_none_or(f64::is_finite),
                "must be a finite number",
            ),
        ] {
            if !ok {
                return Err(format!("{key}: {reason}"));
            }
        }
        let r = &self.replay;
        if r.shards == 0 {
            return Err("replay.shards: must be at least 1".to_string());
        }
        if let Some(list) = &r.endpoints {
            if list.len() != r.shards as usize {
                return Err(format!(
                    "replay.endpoints: {} endpoints for replay.shards = {}",
                    list.len(),
                    r.shards
                ));
            }
        } else if u32::from(r.base_port) + r.shards - 1 > u32::from(u16::MAX) {
            return Err("replay.base_port: base_port + shards - 1 exceeds 65535".to_string());
        }
        let checks: [(&str, bool, &str); 9] = [
            ("replay.capacity", r.capacity >= 1, "must be at least 1"),
            ("replay.max_memory_mb", r.max_memory_mb >= 1, "must be at least 1"),
            (
                "replay.alpha",
                r.alpha.is_finite() && r.alpha >= 0.0,
                "must be a number >= 0",
            ),
            ("replay.beta", (0.0..=1.0).contains(&r.beta), "must be in [0, 1]"),
            (
                "replay.priority_epsilon",
                r.priority_epsilon.is_finite() && r.priority_epsilon > 0.0,
                "must be > 0",
            ),
            (
                "replay.max_samples_per_item",
                r.max_samples_per_item != Some(0),
                "must be at least 1 (or left out)",
            ),
            (
                "replay.fresh_fraction",
                (0.0..=1.0).contains(&r.fresh_fraction),
                "must be in [0, 1]",
            ),
            ("replay.credit_window", r.credit_window >= 1, "must be at least 1"),
            (
                "replay.sender_timeout_s",
                r.sender_timeout_s.is_finite()
                    && r.sender_timeout_s > 0.0
                    && r.stats_interval_s.is_finite()
                    && r.stats_interval_s > 0.0,
                "sender_timeout_s and stats_interval_s must be positive",
            ),
        ];
        for (key, ok, reason) in checks {
            if !ok {
                return Err(format!("{key}: {reason}"));
            }
        }
        if self.cluster.replay_hosts.as_ref().is_some_and(Vec::is_empty) {
            return Err("cluster.replay_hosts: list at least one host".to_string());
        }
        let t = &self.transport;
        if !(1..=4096).contains(&t.max_message_mb) {
            return Err("transport.max_message_mb: must be in 1..=4096".to_string());
        }
        if t.high_water_mark < 1 {
            return Err("transport.high_water_mark: must be at least 1".to_string());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_config_parses_with_defaults() {
        let c = Config::parse("[env]\nid = \"CartPole-v1\"\n").unwrap();
        assert_eq!(c.env.id, "CartPole-v1");
        assert_eq!(c.seed, 0);
        assert!(c.env.params.is_empty());
        assert_eq!(c.env.max_episode_steps, None);
    }

    #[test]
    fn optimizer_section_defaults_and_checks() {
        use cml_learner::OptimizerConfig;
        let parse =
            |section: &str| Config::parse(&format!("[env]\nid = \"CartPole-v1\"\n[learner.optimizer]\n{section}"));
        // No kind: RMSProp with IMPALA's settings and the given lr.
        match parse("lr = 0.001\n").unwrap().learner.optimizer.to_config() {
            OptimizerConfig::Rmsprop(c) => assert_eq!((c.lr, c.decay, c.epsilon), (0.001, 0.99, 0.01)),
            other => panic!("{other:?}"),
        }
        match parse("kind = \"adam\"\nbeta2 = 0.99\n")
            .unwrap()
            .learner
            .optimizer
            .to_config()
        {
            OptimizerConfig::Adam(c) => assert_eq!((c.lr, c.beta1, c.beta2, c.epsilon), (1e-3, 0.9, 0.99, 1e-8)),
            other => panic!("{other:?}"),
        }
        let e = parse("beta1 = 0.9\n").unwrap_err();
        assert_eq!(e, "learner.optimizer.beta1: not a setting of kind = \"rmsprop\"");
        let e = parse("kind = \"adam\"\ndecay = 0.9\n").unwrap_err();
        assert_eq!(e, "learner.optimizer.decay: not a setting of kind = \"adam\"");
        let e = parse("lr = -1.0\n").unwrap_err();
        assert!(e.starts_with("learner.optimizer.lr: must be"), "{e}");
        let e = parse("kind = \"sgd\"\n").unwrap_err();
        assert!(e.starts_with("learner.optimizer.kind: unknown variant `sgd`"), "{e}");
        let e = parse("momentum = 0.9\n").unwrap_err();
        assert!(e.starts_with("learner.optimizer.momentum: unknown field"), "{e}");
    }

    #[test]
    fn loss_values_and_durations_are_checked() {
        let parse = |extra: &str| Config::parse(&format!("[env]\nid = \"CartPole-v1\"\n{extra}"));
        for (extra, key) in [
            ("[learner.loss]\ndiscount = 1.5\n", "learner.loss.discount: "),
            ("[learner.loss]\nlambda = -0.1\n", "learner.loss.lambda: "),
            ("[learner.loss]\nentropy_cost = nan\n", "learner.loss.entropy_cost: "),
            ("[learner.loss]\nreward_scale = 0.0\n", "learner.loss.reward_scale: "),
            (
                "[learner.loss]\nclip_rho_threshold = -1.0\n",
                "learner.loss.clip_rho_threshold: ",
            ),
            ("[model]\ninitial_log_std = inf\n", "model.initial_log_std: "),
            (
                "[learner]\nreport_interval_s = 1e300\n",
                "learner.report_interval_s: at most",
            ),
            (
                "[replay]\nstats_interval_s = 1e20\n",
                "replay.stats_interval_s: at most",
            ),
        ] {
            let e = parse(extra).unwrap_err();
            assert!(e.starts_with(key), "{extra}: {e}");
        }
        assert!(parse("[learner.loss]\ndiscount = 1.0\nlambda = 0.0\nentropy_cost = 0.0\n").is_ok());
    }

    #[test]
    fn params_are_kept_as_a_table() {
        let c = Config::parse("[env]\nid = \"Pendulum-v1\"\n[env.params]\ng = 9.81\n").unwrap();
        assert_eq!(c.env.params.get("g").and_then(|v| v.as_float()), Some(9.81));
    }

    #[test]
    fn errors_name_the_key_path() {
        let e = Config::parse("[env]\nid = \"CartPole-v1\"\nmax_episode_steps = \"long\"\n").unwrap_err();
        assert!(e.starts_with("env.max_episode_steps: "), "{e}");
        assert!(e.contains("line 3"), "{e}");
        let e = Config::parse("[env]\nid = \"CartPole-v1\"\nspeed = 3\n").unwrap_err();
        assert!(e.contains("unknown field `speed`"), "{e}");
        let e = Config::parse("seed = 1\n").unwrap_err();
        assert!(e.contains("missing field `env`"), "{e}");
        let e = Config::parse("[env]\nid = \"CartPole-v1\"\nmax_episode_steps = 0\n").unwrap_err();
        assert!(e.contains("at least 1"), "{e}");
        let e = Config::parse("[env]\nid = \"CartPole-v1\"\n[learner.optimizer]\nkind = \"adam\"\nlr = \"fast\"\n")
            .unwrap_err();
        assert!(e.starts_with("learner.optimizer.lr: "), "{e}");
        assert!(e.contains("expected a number") && e.contains("line 5"), "{e}");
        let e = Config::parse("[env\n").unwrap_err();
        assert!(e.contains("line 1"), "{e}");
    }

    #[test]
    fn replay_sections_have_defaults_and_checks() {
        let c = Config::parse("[env]\nid = \"CartPole-v1\"\n").unwrap();
        assert_eq!(c.replay.shard_endpoints(), vec!["tcp://127.0.0.1:5600".to_string()]);
        assert_eq!(c.actor.unroll_length, 20);
        let c =
            Config::parse("[env]\nid = \"CartPole-v1\"\n[replay]\nshards = 2\nbase_port = 7000\nmode = \"queue\"\n")
                .unwrap();
        assert_eq!(c.replay.mode, ReplayMode::Queue);
        assert_eq!(c.replay.shard_endpoints()[1], "tcp://127.0.0.1:7001");
        let bad = |extra: &str| Config::parse(&format!("[env]\nid = \"CartPole-v1\"\n{extra}")).unwrap_err();
        assert!(bad("[replay]\nalpha = \"fast\"\n").starts_with("replay.alpha: invalid type"));
        assert!(bad("[replay]\nfresh_fraction = 2.0\n").starts_with("replay.fresh_fraction: must be in [0, 1]"));
        assert!(bad("[replay]\nmode = \"lifo\"\n").starts_with("replay.mode: unknown variant"));
        assert!(bad("[replay]\nshards = 2\nendpoints = [\"tcp://a:1\"]\n").starts_with("replay.endpoints: 1 endpoints"));
        assert!(bad("[transport]\nmax_message_mb = 0\n").starts_with("transport.max_message_mb"));
        assert!(bad("[actor]\nunroll_length = 0\n").starts_with("actor.unroll_length"));
    }

    #[test]
    fn cluster_section_places_the_roles() {
        let c = Config::parse(
            "[env]\nid = \"CartPole-v1\"\n[replay]\nshards = 3\nbase_port = 7000\n\
             [cluster]\nlearner_host = \"10.0.0.1\"\nreplay_hosts = [\"10.0.0.2\", \"10.0.0.3\"]\n",
        )
        .unwrap();
        assert_eq!(
            c.replay_endpoints(),
            vec!["tcp://10.0.0.2:7000", "tcp://10.0.0.3:7001", "tcp://10.0.0.2:7002"]
        );
        assert_eq!(
            c.weights_endpoints(),
            ("tcp://10.0.0.1:5550".to_string(), "tcp://10.0.0.1:5551".to_string())
        );
        let plain = Config::parse("[env]\nid = \"CartPole-v1\"\n").unwrap();
        assert_eq!(plain.weights_endpoints().0, "tcp://127.0.0.1:5550");
        let e = Config::parse("[env]\nid = \"CartPole-v1\"\n[cluster]\nreplay_hosts = []\n").unwrap_err();
        assert!(e.starts_with("cluster.replay_hosts"), "{e}");
    }

    #[test]
    fn shipped_configs_parse() {
        for name in ["cartpole", "acrobot", "pendulum", "cluster-example"] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("configs/{name}.toml"));
            Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
        }
    }

    #[test]
    fn load_names_the_file() {
        let e = Config::load(Path::new("/nonexistent/cml.toml")).unwrap_err();
        assert!(e.to_string().starts_with("/nonexistent/cml.toml: cannot read"), "{e}");
    }
}
