//! Wire batches (batch-major) become time-major learner batches.

use candle_core::Device;
use cml_learner::UnrollBatch;
use cml_proto::tensor::f32s;
use cml_proto::{ActionLayout, UnrollLayout};
use cml_replay::synthetic::synthetic_unrolls;

#[test]
fn wire_batches_become_time_major() {
    for action in [
        ActionLayout::Discrete { n: 3 },
        ActionLayout::Continuous { dim: 1 },
        ActionLayout::Continuous { dim: 2 },
    ] {
        let layout = UnrollLayout {
            unroll_length: 5,
            obs_dim: 3,
            action,
        };
        let m = synthetic_unrolls(&layout, 2, 0, 4);
        let batch = UnrollBatch::from_wire(&layout, 4, &m.frames, &Device::Cpu).unwrap();
        assert_eq!(batch.observations.dims(), &[6, 4, 3]);
        let expected_actions: &[usize] = match action {
            ActionLayout::Discrete { .. } => &[5, 4],
            ActionLayout::Continuous { dim } => &[5, 4, dim as usize],
        };
        assert_eq!(batch.actions.dims(), expected_actions, "{action:?}");
        assert_eq!(batch.rewards.dims(), &[5, 4]);
        // x_t of unroll b is wire observation [b, t].
        let wire: Vec<f32> = f32s(&m.frames[0]).collect();
        let obs = batch.observations.to_vec3::<f32>().unwrap();
        for t in 0..6 {
            for b in 0..4 {
                assert_eq!(obs[t][b], wire[(b * 6 + t) * 3..(b * 6 + t + 1) * 3].to_vec());
            }
        }
        let rewards = batch.rewards.to_vec2::<f32>().unwrap();
        let wire_rewards: Vec<f32> = f32s(&m.frames[3]).collect();
        assert_eq!(rewards[2][3], wire_rewards[3 * 5 + 2]);
        // Unroll 0 (index 0) is truncated at its last step: final observations present.
        assert!(batch.final_observations.is_some());
    }
    let layout = UnrollLayout {
        unroll_length: 5,
        obs_dim: 3,
        action: ActionLayout::Discrete { n: 3 },
    };
    let m = synthetic_unrolls(&layout, 2, 0, 4);
    let mut short = m.frames.clone();
    short[0].pop();
    assert!(UnrollBatch::from_wire(&layout, 4, &short, &Device::Cpu).is_err());
}
