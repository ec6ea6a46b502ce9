//! The learner crate's config sections: `[learner.optimizer]` (written
//! flat, so errors name the key) and the checks of `[learner.loss]`.
//! Each check returns `"key: reason"` with the key relative to its section;
//! the binary adds the section path (`learner.optimizer.lr: ...`).

use serde::Deserialize;

use crate::loss::LossConfig;
use crate::optim::{AdamConfig, RmsPropConfig};
use crate::OptimizerConfig;

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
/// Unset keys take [`RmsPropConfig::default`] / [`AdamConfig::default`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimizerSection {
    #[serde(default)]
    pub kind: OptimizerKind,
    pub lr: Option<f64>,
    /// RMSProp only.
    pub decay: Option<f64>,
    /// Adam only.
    pub beta1: Option<f64>,
    /// Adam only.
    pub beta2: Option<f64>,
    pub epsilon: Option<f64>,
}

impl OptimizerSection {
    /// The optimizer settings, with defaults filled in.
    pub fn to_config(&self) -> OptimizerConfig {
        match self.kind {
            OptimizerKind::Rmsprop => {
                let d = RmsPropConfig::default();
                OptimizerConfig::Rmsprop(RmsPropConfig {
                    lr: self.lr.unwrap_or(d.lr),
                    decay: self.decay.unwrap_or(d.decay),
                    epsilon: self.epsilon.unwrap_or(d.epsilon),
                })
            }
            OptimizerKind::Adam => {
                let d = AdamConfig::default();
                OptimizerConfig::Adam(AdamConfig {
                    lr: self.lr.unwrap_or(d.lr),
                    beta1: self.beta1.unwrap_or(d.beta1),
                    beta2: self.beta2.unwrap_or(d.beta2),
                    epsilon: self.epsilon.unwrap_or(d.epsilon),
                })
            }
        }
    }

    /// `"key: reason"` for the first bad value.
    pub fn validate(&self) -> Result<(), String> {
        let rmsprop_only = [("decay", self.decay)];
        let adam_only = [("beta1", self.beta1), ("beta2", self.beta2)];
        let (kind, foreign): (&str, &[(&str, Option<f64>)]) = match self.kind {
            OptimizerKind::Rmsprop => ("rmsprop", &adam_only),
            OptimizerKind::Adam => ("adam", &rmsprop_only),
        };
        for &(key, value) in foreign {
            if value.is_some() {
                return Err(format!("{key}: not a setting of kind = \"{kind}\""));
            }
        }
        for (key, v) in [("lr", self.lr), ("epsilon", self.epsilon)] {
            if let Some(x) = v {
                if !(x.is_finite() && x > 0.0) {
                    return Err(format!("{key}: must be a finite number above 0, found {x}"));
                }
            }
        }
        for (key, v) in [("decay", self.decay), ("beta1", self.beta1), ("beta2", self.beta2)] {
            if let Some(x) = v {
                if !(0.0..1.0).contains(&x) {
                    return Err(format!("{key}: must be in [0, 1), found {x}"));
                }
            }
        }
        Ok(())
    }
}

impl LossConfig {
    /// Values the loss would turn into NaN or nonsense: `"key: reason"`.
    pub fn validate(&self) -> Result<(), String> {
        let unit = |x: f32| (0.0..=1.0).contains(&x);
        let non_negative = |x: f32| x.is_finite() && x >= 0.0;
        let positive = |x: f32| x.is_finite() && x > 0.0;
        for (key, ok, reason) in [
            ("discount", unit(self.discount), "must be in [0, 1]"),
            ("lambda", unit(self.lambda), "must be in [0, 1]"),
            (
                "baseline_cost",
                non_negative(self.baseline_cost),
                "must be a number >= 0",
            ),
            ("entropy_cost", non_negative(self.entropy_cost), "must be a number >= 0"),
            ("reward_scale", positive(self.reward_scale), "must be a number > 0"),
            (
                "clip_rho_threshold",
                self.clip_rho_threshold.is_none_or(positive),
                "must be a number > 0",
            ),
            (
                "clip_pg_rho_threshold",
                self.clip_pg_rho_threshold.is_none_or(positive),
                "must be a number > 0",
            ),
            (
                "ppo_clip",
                self.ppo_clip.is_none_or(|e| e.is_finite() && e > 0.0 && e < 1.0),
                "must be a number in (0, 1)",
            ),
        ] {
            if !ok {
                return Err(format!("{key}: {reason}"));
            }
        }
        Ok(())
    }
}
