//! `Algorithm`: what the shared learner loop (`cml-run`) drives. A batch of
//! sampled unrolls in; named scalars and one replay priority per unroll
//! out; parameters to publish; state to checkpoint and restore. The loop,
//! the recorders and the checkpointer know only this trait, never an
//! algorithm by name.

use std::collections::HashMap;

use candle_core::{Device, Tensor};

use crate::learner::Result;

/// One scalar an algorithm reports after each step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScalarSpec {
    /// The TensorBoard tag (`loss/policy`); metrics.csv's column is the tag
    /// with `/` replaced by `_`, Prometheus's gauge is `cml_` + that.
    pub name: &'static str,
    /// What the number is, including whether a loss is a sum over T·B or a
    /// per-sample mean (Prometheus HELP text, README's metric table).
    pub help: &'static str,
}

/// Scalars every gradient-based algorithm here reports.
pub const GRAD_NORM: ScalarSpec = ScalarSpec {
    name: "train/grad_norm",
    help: "global gradient norm before clipping",
};
pub const LEARNING_RATE: ScalarSpec = ScalarSpec {
    name: "train/learning_rate",
    help: "learning rate of this step (linear decay over env frames produced)",
};
pub const IMPORTANCE_WEIGHT_MEAN: ScalarSpec = ScalarSpec {
    name: "train/importance_weight_mean",
    help: "mean importance-sampling weight of the batch's unrolls",
};

/// What a sampled batch gives an algorithm: unrolls in the wire layout and
/// what replay says about each one.
pub struct SampledUnrolls<'a> {
    pub layout: &'a cml_proto::UnrollLayout,
    /// B: unrolls in the batch.
    pub count: usize,
    /// The unroll tensors, batch-major `[B, ...]` (`cml_proto::unroll`).
    pub frames: &'a [Vec<u8>],
    /// One importance-sampling weight per unroll ((N·P(i))^-β over the
    /// largest weight; all 1 in uniform and queue modes).
    pub importance_weights: &'a [f32],
}

impl SampledUnrolls<'_> {
    /// The mean importance-sampling weight of the batch (the
    /// `train/importance_weight_mean` scalar).
    pub fn mean_importance_weight(&self) -> f64 {
        self.importance_weights.iter().map(|&w| f64::from(w)).sum::<f64>() / self.count.max(1) as f64
    }
}

/// The checkpoint entry of an algorithm's frames trained on (f64: exact to
/// 2^53); absent from checkpoints written before it existed.
pub const FRAMES_TRAINED: &str = "meta/frames_trained";

/// `frames` as its checkpoint entry.
pub fn frames_trained_entry(frames: u64) -> Result<(String, Tensor)> {
    Ok((FRAMES_TRAINED.to_string(), Tensor::new(frames as f64, &Device::Cpu)?))
}

/// The frames trained on of a checkpoint's state (0 when absent).
pub fn frames_trained(state: &HashMap<String, Tensor>) -> Result<u64> {
    Ok(match state.get(FRAMES_TRAINED) {
        Some(t) => t.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()? as u64,
        None => 0,
    })
}

/// What one step reports.
#[derive(Clone, Debug, PartialEq)]
pub struct StepOutcome {
    /// One value per [`Algorithm::scalars`] entry, in that order.
    pub scalars: Vec<f64>,
    /// One new replay priority per unroll of the batch.
    pub priorities: Vec<f64>,
}

/// An error a step can recover from by skipping the batch.
pub fn is_skippable(error: &crate::LearnerError) -> bool {
    matches!(error, crate::LearnerError::NonFinite { .. })
}

/// A learning algorithm the learner loop drives.
pub trait Algorithm: Send {
    /// The name in `[learner] algorithm` and in checkpoint manifests.
    fn name(&self) -> &'static str;
    /// The scalars every step reports, in order. Fixed for the life of the
    /// algorithm, so metrics.csv keeps one header per run.
    fn scalars(&self) -> &'static [ScalarSpec];
    /// One update on `batch`. `env_frames` is how many frames the actors
    /// have produced so far (learning-rate schedules follow it). A batch
    /// that cannot be used is an error and changes nothing; a
    /// [`is_skippable`] error means this batch only.
    fn step(&mut self, batch: &SampledUnrolls<'_>, env_frames: u64) -> Result<StepOutcome>;
    /// Updates taken so far.
    fn steps(&self) -> u64;
    /// The parameters actors need, as safetensors bytes.
    fn weights(&self) -> Result<Vec<u8>>;
    /// Everything a checkpoint must hold to continue exactly (parameters,
    /// optimizer state, target networks, ...), by unique name.
    fn state(&self) -> Result<Vec<(String, Tensor)>>;
    /// Restores [`Algorithm::state`] and the step count; checks everything
    /// before changing anything.
    fn restore(&mut self, state: &HashMap<String, Tensor>, steps: u64) -> Result<()>;
    /// Where the algorithm computes.
    fn device(&self) -> &Device;
}
