//! Synthetic unroll batches for the learner tests.

use candle_core::{Device, Tensor};
use cml_learner::UnrollBatch;

/// A deterministic pseudo-random batch (`seed` picks it) for a discrete
/// policy with `actions` actions: observations in [−1, 1], uniform behaviour
/// policy, some terminated and truncated steps.
pub fn synthetic_batch(seed: u64, t: usize, b: usize, obs_dim: usize, actions: u32) -> UnrollBatch {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32
    };
    let dev = Device::Cpu;
    let obs: Vec<f32> = (0..(t + 1) * b * obs_dim).map(|_| next() * 2.0 - 1.0).collect();
    let final_obs: Vec<f32> = (0..t * b * obs_dim).map(|_| next() * 2.0 - 1.0).collect();
    let acts: Vec<u32> = (0..t * b)
        .map(|_| ((next() * actions as f32) as u32).min(actions - 1))
        .collect();
    let rewards: Vec<f32> = (0..t * b).map(|_| next() * 2.0 - 1.0).collect();
    let terminated: Vec<f32> = (0..t * b).map(|_| f32::from(u8::from(next() < 0.05))).collect();
    let truncated: Vec<f32> = (0..t * b).map(|_| f32::from(u8::from(next() < 0.03))).collect();
    UnrollBatch {
        observations: Tensor::from_vec(obs, (t + 1, b, obs_dim), &dev).unwrap(),
        actions: Tensor::from_vec(acts, (t, b), &dev).unwrap(),
        behaviour_log_probs: Tensor::full(-(actions as f32).ln(), (t, b), &dev).unwrap(),
        rewards: Tensor::from_vec(rewards, (t, b), &dev).unwrap(),
        terminated: Tensor::from_vec(terminated, (t, b), &dev).unwrap(),
        truncated: Tensor::from_vec(truncated, (t, b), &dev).unwrap(),
        final_observations: Some(Tensor::from_vec(final_obs, (t, b, obs_dim), &dev).unwrap()),
        importance_weights: None,
        initial_state: None,
    }
}
