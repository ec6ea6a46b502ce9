//! `[learner]` and `[train]`: the learner role's settings, defaults and
//! checks. `[learner.optimizer]` and `[learner.loss]` belong to
//! `cml-learner`, which owns their defaults and checks. Errors are
//! `"key: reason"` with the key inside the section; the binary adds the
//! section name and the file.

use std::path::PathBuf;

use cml_learner::config::OptimizerSection;
use cml_learner::loss::LossConfig;
use cml_proto::config::check_seconds;
use serde::{Deserialize, Serialize};

/// Which [`cml_learner::Algorithm`] the learner runs (`[learner] algorithm`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlgorithmKind {
    /// IMPALA: V-trace actor-critic.
    #[default]
    Impala,
    /// Ape-X: distributed prioritized n-step double DQN, dueling network.
    ApexDqn,
}

/// `[learner]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LearnerSection {
    pub algorithm: AlgorithmKind,
    /// PUB socket broadcasting every published policy version.
    pub weights_endpoint: String,
    /// ROUTER socket answering `get_weights` (hosts that join late).
    pub weights_request_endpoint: String,
    /// `"cpu"`, `"cuda"` or `"cuda:N"` (CUDA needs a `--features cuda` build).
    pub device: String,
    /// `[learner.optimizer]`.
    pub optimizer: OptimizerSection,
    /// Global gradient-norm clip.
    pub max_grad_norm: f64,
    /// CPU threads that share one IMPALA update (the batch split along B).
    pub cpu_threads: usize,
    /// `[learner.loss]` (IMPALA).
    pub loss: LossConfig,
    /// `[learner.dqn]` (Ape-X DQN).
    pub dqn: cml_learner::DqnConfig,
    /// Unrolls per learner step.
    pub batch_size: usize,
    /// Frames consumed per env frame produced, held by pacing both sides:
    /// the learner waits while it is ahead, and the shards grant actors
    /// credit only as the learner draws (prioritized and uniform mode;
    /// queue mode is 1 by construction). None: each side runs flat out.
    pub replay_ratio: Option<f64>,
    /// Env frames produced before the first learner step.
    pub learning_starts: u64,
    /// Learner steps between published versions (each one is broadcast).
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
    /// Serve the live dashboard on `http://{dashboard_host}:{dashboard_port}/`.
    pub dashboard_port: Option<u16>,
    /// Loopback by default; any other address needs `dashboard_token`.
    pub dashboard_host: String,
    /// Required by the dashboard (`?token=` or `Authorization: Bearer`)
    /// when set; must be set when `dashboard_host` is not loopback.
    pub dashboard_token: Option<String>,
}

impl Default for LearnerSection {
    fn default() -> LearnerSection {
        let training = cml_learner::LearnerConfig::default();
        LearnerSection {
            algorithm: AlgorithmKind::default(),
            weights_endpoint: "tcp://127.0.0.1:5550".into(),
            weights_request_endpoint: "tcp://127.0.0.1:5551".into(),
            device: training.device,
            optimizer: OptimizerSection::default(),
            max_grad_norm: training.max_grad_norm,
            cpu_threads: training.cpu_threads,
            loss: training.loss,
            dqn: training.dqn,
            batch_size: 32,
            replay_ratio: None,
            learning_starts: 0,
            publish_interval_steps: 1,
            checkpoint_interval_s: 60.0,
            keep_checkpoints: 3,
            report_interval_s: 1.0,
            metrics_port: None,
            metrics_host: "127.0.0.1".into(),
            dashboard_port: None,
            dashboard_host: "127.0.0.1".into(),
            dashboard_token: None,
        }
    }
}

impl LearnerSection {
    /// The training settings `cml-learner` takes.
    pub fn training(&self, total_frames: u64, seed: u64) -> cml_learner::LearnerConfig {
        cml_learner::LearnerConfig {
            device: self.device.clone(),
            optimizer: self.optimizer.to_config(),
            max_grad_norm: self.max_grad_norm,
            total_frames,
            seed,
            cpu_threads: self.cpu_threads,
            loss: self.loss.clone(),
            dqn: self.dqn.clone(),
        }
    }

    /// `"key: reason"` for the first bad value.
    pub fn validate(&self) -> Result<(), String> {
        self.optimizer.validate().map_err(|e| format!("optimizer.{e}"))?;
        self.loss.validate().map_err(|e| format!("loss.{e}"))?;
        self.dqn.validate().map_err(|e| format!("dqn.{e}"))?;
        for (key, ok, reason) in [
            ("batch_size", self.batch_size >= 1, "must be at least 1"),
            (
                "publish_interval_steps",
                self.publish_interval_steps >= 1,
                "must be at least 1",
            ),
            ("keep_checkpoints", self.keep_checkpoints >= 1, "must be at least 1"),
            ("cpu_threads", self.cpu_threads >= 1, "must be at least 1"),
            (
                "max_grad_norm",
                self.max_grad_norm.is_finite() && self.max_grad_norm > 0.0,
                "must be positive",
            ),
        ] {
            if !ok {
                return Err(format!("{key}: {reason}"));
            }
        }
        if let Some(ratio) = self.replay_ratio {
            if !(ratio.is_finite() && ratio > 0.0) {
                return Err(format!("replay_ratio: must be a number > 0, found {ratio}"));
            }
        }
        check_seconds("checkpoint_interval_s", self.checkpoint_interval_s)?;
        check_seconds("report_interval_s", self.report_interval_s)?;
        self.dashboard_address().map(|_| ())
    }

    /// Where the dashboard listens, if it is on: `dashboard_host` must be an
    /// IP address, and a non-loopback one needs a `dashboard_token` (at
    /// least 16 characters).
    pub fn dashboard_address(&self) -> Result<Option<std::net::SocketAddr>, String> {
        let Some(port) = self.dashboard_port else {
            return Ok(None);
        };
        let ip: std::net::IpAddr = self
            .dashboard_host
            .parse()
            .map_err(|_| format!("dashboard_host: {:?} is not an IP address", self.dashboard_host))?;
        match &self.dashboard_token {
            Some(token) if token.chars().count() < 16 => Err("dashboard_token: at least 16 characters".to_string()),
            None if !ip.is_loopback() => Err(format!(
                "dashboard_token: required when dashboard_host ({ip}) is not a loopback address"
            )),
            _ => Ok(Some(std::net::SocketAddr::new(ip, port))),
        }
    }
}

/// `[train]`: when a run stops, and where it writes.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainSection {
    /// Stop once the actors have produced this many env frames (0: no
    /// limit). Also the horizon of the linear learning-rate decay and of
    /// β's annealing to 1.
    pub total_frames: u64,
    /// Stop when the mean return of the last 100 episodes reaches this.
    pub target_return: Option<f64>,
    /// With `target_return`: keep training this many seconds after the
    /// target is first reached, then stop (0: stop at once). For seeing
    /// whether a run holds its target.
    pub continue_after_target_s: f64,
    /// Stop after this many seconds of training (over every resume).
    pub max_seconds: Option<f64>,
    /// Where run directories are created (relative to the working directory).
    pub runs_dir: PathBuf,
}

impl Default for TrainSection {
    fn default() -> TrainSection {
        TrainSection {
            total_frames: 0,
            target_return: None,
            continue_after_target_s: 0.0,
            max_seconds: None,
            runs_dir: PathBuf::from("runs"),
        }
    }
}

impl TrainSection {
    pub fn validate(&self) -> Result<(), String> {
        if let Some(s) = self.max_seconds {
            check_seconds("max_seconds", s)?;
        }
        if self.target_return.is_some_and(|r| !r.is_finite()) {
            return Err("target_return: must be a finite number".into());
        }
        if self.continue_after_target_s != 0.0 {
            check_seconds("continue_after_target_s", self.continue_after_target_s)?;
            if self.target_return.is_none() {
                return Err("continue_after_target_s: needs target_return".into());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dashboard_needs_a_token_off_loopback() {
        let on = |host: &str, token: Option<&str>| LearnerSection {
            dashboard_port: Some(8080),
            dashboard_host: host.into(),
            dashboard_token: token.map(String::from),
            ..LearnerSection::default()
        };
        assert_eq!(LearnerSection::default().dashboard_address(), Ok(None));
        assert_eq!(
            on("127.0.0.1", None).dashboard_address(),
            Ok(Some(([127, 0, 0, 1], 8080).into()))
        );
        assert_eq!(
            on("::1", None)
                .dashboard_address()
                .map(|a| a.map(|a| a.ip().is_loopback())),
            Ok(Some(true))
        );
        let e = on("0.0.0.0", None).validate().unwrap_err();
        assert!(e.starts_with("dashboard_token: required"), "{e}");
        assert!(on("0.0.0.0", Some("sixteen-chars-ok")).validate().is_ok());
        assert!(on("0.0.0.0", Some("short"))
            .validate()
            .unwrap_err()
            .contains("at least 16"));
        assert!(on("example.org", None)
            .validate()
            .unwrap_err()
            .contains("not an IP address"));
    }
}
