//! The configured algorithm, built from its config: the one place that maps
//! `[learner] algorithm` to an implementation. A new algorithm adds its
//! variant to [`AlgorithmKind`] and one arm here.

use cml_learner::{Algorithm, ApexDqnLearner, ImpalaLearner};
use cml_policy::{ActionKind, NetConfig, ObservationShape};
use cml_proto::{ActionLayout, UnrollLayout};

use crate::config::{AlgorithmKind, LearnerSection};
use crate::RunError;

/// The network's view of an action space.
pub fn action_kind(layout: &UnrollLayout) -> ActionKind {
    match layout.action {
        ActionLayout::Discrete { n } => ActionKind::Categorical(n as usize),
        ActionLayout::Continuous { dim } => ActionKind::Gaussian(dim as usize),
    }
}

/// A freshly initialised algorithm for `layout`, whose observations have
/// `observation_shape` (the env's), on `device` (the section's own unless
/// overridden, e.g. "cpu" for `eval`).
pub fn build(
    learner: &LearnerSection,
    model: &NetConfig,
    layout: &UnrollLayout,
    observation_shape: &[usize],
    total_frames: u64,
    seed: u64,
    device: Option<&str>,
) -> Result<Box<dyn Algorithm>, RunError> {
    let values: usize = observation_shape.iter().product();
    if values != layout.obs_dim() {
        return Err(RunError::Config(format!(
            "observation shape {observation_shape:?} has {values} values, the unroll layout {}",
            layout.obs_dim()
        )));
    }
    // The network's input: k stacked frames along the channels.
    let obs = ObservationShape::from(model.input_shape(observation_shape).as_slice());
    let mut training = learner.training(total_frames, seed);
    if let Some(device) = device {
        training.device = device.to_string();
    }
    Ok(match learner.algorithm {
        AlgorithmKind::Impala => Box::new(ImpalaLearner::new(obs, action_kind(layout), model, training)?),
        AlgorithmKind::ApexDqn => Box::new(ApexDqnLearner::new(obs, action_kind(layout), model, training)?),
    })
}
