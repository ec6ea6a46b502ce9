//! Helpers shared by the worker tests.

use candle_core::Device;
use candle_nn::VarMap;
use cml_actors::{policy_from_weights, VersionedPolicy, Worker};
use cml_policy::{ActionKind, NetConfig, PolicyNet};

/// A freshly initialised `net` for `worker`'s envs (observations of
/// `observation_shape`, `actions` discrete actions), as the actors get it
/// from published weights.
pub fn fresh_policy(worker: &Worker, observation_shape: &[usize], actions: usize, net: &NetConfig) -> VersionedPolicy {
    let varmap = VarMap::new();
    PolicyNet::init(
        &varmap,
        net.input_shape(observation_shape).as_slice(),
        ActionKind::Categorical(actions),
        net,
        3,
        &Device::Cpu,
    )
    .unwrap();
    let weights = PolicyNet::to_safetensors(&varmap).unwrap();
    policy_from_weights(&weights, 1, worker.layout(), observation_shape, net).unwrap()
}
