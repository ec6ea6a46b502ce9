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
        let layout = UnrollLayout::flat(5, 3, action);
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
        // Unroll 0 (index 0) is truncated at its last step: its final
        // observation (sparse on the wire) lands at [4, 0], zeros elsewhere.
        let finals = batch.final_observations.as_ref().unwrap().to_vec3::<f32>().unwrap();
        assert_eq!(finals[4][0], f32s(&m.frames[6]).collect::<Vec<_>>());
        assert_eq!(m.frames[6].len(), 3 * 4);
        for (t, row) in finals.iter().enumerate() {
            for (b, value) in row.iter().enumerate() {
                if (t, b) != (4, 0) {
                    assert_eq!(*value, vec![0.0; 3], "[{t}, {b}]");
                }
            }
        }
    }
    // u8 observations become their values as f32.
    let planes = UnrollLayout {
        observation_shape: vec![1, 3],
        observation_dtype: cml_proto::DType::U8,
        ..UnrollLayout::flat(5, 3, ActionLayout::Discrete { n: 3 })
    };
    let m = synthetic_unrolls(&planes, 2, 0, 4);
    let batch = UnrollBatch::from_wire(&planes, 4, &m.frames, &Device::Cpu).unwrap();
    let obs = batch.observations.to_vec3::<f32>().unwrap();
    assert_eq!(
        obs[1][2],
        m.frames[0][(2 * 6 + 1) * 3..(2 * 6 + 2) * 3]
            .iter()
            .map(|&v| f32::from(v))
            .collect::<Vec<_>>()
    );
    let finals = batch.final_observations.unwrap().to_vec3::<f32>().unwrap();
    assert_eq!(
        finals[4][0],
        m.frames[6].iter().map(|&v| f32::from(v)).collect::<Vec<_>>()
    );
    // A final observation missing from the sparse frame is an error.
    let mut missing = m.frames.clone();
    missing[6].clear();
    assert!(UnrollBatch::from_wire(&planes, 4, &missing, &Device::Cpu).is_err());
    let layout = UnrollLayout::flat(5, 3, ActionLayout::Discrete { n: 3 });
    let m = synthetic_unrolls(&layout, 2, 0, 4);
    let mut short = m.frames.clone();
    short[0].pop();
    assert!(UnrollBatch::from_wire(&layout, 4, &short, &Device::Cpu).is_err());
}

/// One unroll's frames, built by hand: frame i of the T + k is
/// `[10 i, 10 i + 1]`; step 1 terminates, step 3 is truncated with the
/// final observation `[99, 98]`.
fn stacked_unroll(layout: &UnrollLayout) -> Vec<Vec<u8>> {
    let (t, k) = (layout.unroll_length as usize, layout.frame_stack as usize);
    let obs: Vec<f32> = (0..t + k)
        .flat_map(|i| [10.0 * i as f32, 10.0 * i as f32 + 1.0])
        .collect();
    let bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let mut terminated = vec![0u8; t];
    terminated[1] = 1;
    let mut truncated = vec![0u8; t];
    truncated[3] = 1;
    vec![
        bytes(&obs),
        vec![0; 4 * t],
        bytes(&vec![-0.5; t]),
        bytes(&vec![1.0; t]),
        terminated,
        truncated,
        bytes(&[99.0, 98.0]),
    ]
}

#[test]
fn stacked_frames_are_rebuilt_with_episode_starts_padded() {
    // T = 4, k = 3, observations [2] (one "pixel" of 2 channels): the unroll
    // carries 2 frames before x_0, then x_0 … x_4 (frames 2 … 6).
    let layout = UnrollLayout {
        frame_stack: 3,
        ..UnrollLayout::flat(4, 2, ActionLayout::Discrete { n: 2 })
    };
    let frames = stacked_unroll(&layout);
    let batch = UnrollBatch::from_wire(&layout, 1, &frames, &Device::Cpu).unwrap();
    assert_eq!(batch.observations.dims(), &[5, 1, 6]);
    let obs: Vec<Vec<f32>> = batch
        .observations
        .to_vec3::<f32>()
        .unwrap()
        .into_iter()
        .map(|row| row[0].clone())
        .collect();
    let stack = |f: [usize; 3]| -> Vec<f32> {
        f.iter()
            .flat_map(|&i| [10.0 * i as f32, 10.0 * i as f32 + 1.0])
            .collect()
    };
    // x_0, x_1: frames 0-2 and 1-3. x_2 starts an episode (step 1
    // terminated): frame 4 only, repeated. x_3: 4, 4, 5. x_4 starts another
    // (step 3 truncated): frame 6 repeated.
    assert_eq!(obs[0], stack([0, 1, 2]));
    assert_eq!(obs[1], stack([1, 2, 3]));
    assert_eq!(obs[2], stack([4, 4, 4]));
    assert_eq!(obs[3], stack([4, 4, 5]));
    assert_eq!(obs[4], stack([6, 6, 6]));
    // The final observation of step 3 is stacked after x_2, x_3 (frames 4, 5).
    let finals = batch.final_observations.unwrap().to_vec3::<f32>().unwrap();
    assert_eq!(finals[3][0], vec![40.0, 41.0, 50.0, 51.0, 99.0, 98.0]);
    assert_eq!(finals[0][0], vec![0.0; 6]);
    // A message with T + 1 frames for a stacked layout is refused.
    let mut short = frames.clone();
    short[0].truncate(5 * 2 * 4);
    assert!(UnrollBatch::from_wire(&layout, 1, &short, &Device::Cpu).is_err());
}
