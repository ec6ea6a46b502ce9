//! Deterministic synthetic unrolls: content that depends only on (actor id,
//! unroll index), so a test or benchmark on the far side of a socket can
//! recompute what it should have received. The unroll index travels as the
//! policy version.

use cml_proto::tensor::{extend_f32, extend_u32};
use cml_proto::{ActionLayout, DType, UnrollLayout};

use crate::client::UnrollMessage;

/// `count` unrolls of `actor_id` with indices `first..first + count`.
pub fn synthetic_unrolls(layout: &UnrollLayout, actor_id: u64, first: u64, count: u32) -> UnrollMessage {
    let t_len = layout.unroll_length as usize;
    let d = layout.obs_dim();
    let mut frames = vec![Vec::new(); layout.frame_count()];
    let mut obs = Vec::with_capacity((t_len + 1) * d);
    for j in first..first + u64::from(count) {
        let base = ((actor_id % 1000) * 1000 + j % 1000) as f32 * 1e-3;
        obs.clear();
        obs.extend((0..(t_len + 1) * d).map(|i| base + i as f32 * 0.01));
        match layout.observation_dtype {
            // u8 layouts: the same pattern, as bytes.
            DType::U8 => frames[0].extend(obs.iter().map(|v| (v * 100.0) as u8)),
            _ => extend_f32(&mut frames[0], &obs),
        }
        match layout.action {
            ActionLayout::Discrete { n } => {
                let actions: Vec<u32> = (0..t_len)
                    .map(|t| ((actor_id + j + t as u64) % u64::from(n)) as u32)
                    .collect();
                extend_u32(&mut frames[1], &actions);
            }
            ActionLayout::Continuous { dim } => {
                let actions: Vec<f32> = (0..t_len * dim as usize).map(|i| base - i as f32 * 0.1).collect();
                extend_f32(&mut frames[1], &actions);
            }
        }
        let log_probs: Vec<f32> = (0..t_len).map(|t| -0.01 - (t % 7) as f32 * 0.1).collect();
        extend_f32(&mut frames[2], &log_probs);
        let rewards: Vec<f32> = (0..t_len).map(|_| 1.0 + (j % 3) as f32).collect();
        extend_f32(&mut frames[3], &rewards);
        let terminated_at = (j % 5 == 0).then_some(j as usize % t_len);
        let truncated_at = (j % 7 == 0).then_some(t_len - 1);
        frames[4].extend((0..t_len).map(|t| u8::from(Some(t) == terminated_at)));
        frames[5].extend((0..t_len).map(|t| u8::from(Some(t) == truncated_at && terminated_at != Some(t))));
        if truncated_at.is_some() && terminated_at != truncated_at {
            match layout.observation_dtype {
                DType::U8 => frames[6].extend((0..d).map(|i| (j as usize + i) as u8)),
                _ => extend_f32(&mut frames[6], &vec![base + 0.5; d]),
            }
        }
        if layout.recurrent_state_size > 0 {
            let state: Vec<f32> = (0..layout.recurrent_state_size)
                .map(|i| base - i as f32 * 0.01)
                .collect();
            extend_f32(&mut frames[7], &state);
        }
    }
    UnrollMessage {
        count,
        actor_ids: vec![actor_id; count as usize],
        policy_versions: (first..first + u64::from(count)).collect(),
        priorities: None,
        episodes: Vec::new(),
        frames,
    }
}

/// One synthetic unroll as a shard's `item` returns it: the frames of a
/// one-unroll message, concatenated in frame order.
pub fn synthetic_item(layout: &UnrollLayout, actor_id: u64, index: u64) -> Vec<u8> {
    synthetic_unrolls(layout, actor_id, index, 1).frames.concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_unrolls_pass_the_shard_checks() {
        let frames = UnrollLayout {
            observation_shape: vec![2, 3, 2],
            observation_dtype: DType::U8,
            recurrent_state_size: 5,
            ..UnrollLayout::flat(20, 4, ActionLayout::Discrete { n: 3 })
        };
        for layout in [
            UnrollLayout::flat(20, 4, ActionLayout::Discrete { n: 3 }),
            UnrollLayout::flat(20, 4, ActionLayout::Continuous { dim: 2 }),
            frames,
        ] {
            let m = synthetic_unrolls(&layout, 7, 0, 40);
            let specs = layout.tensor_specs(40, layout.final_count(&m.frames));
            assert!(specs[6].shape[0] > 0, "some unrolls are truncated");
            layout.check_payload(40, &specs, &m.frames).unwrap();
            assert_eq!(synthetic_item(&layout, 7, 3).len(), layout.item_bytes());
            assert_ne!(synthetic_item(&layout, 7, 3), synthetic_item(&layout, 8, 3));
        }
    }
}
