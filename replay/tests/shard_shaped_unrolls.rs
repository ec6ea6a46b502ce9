//! Protocol v2 unrolls through a shard: u8 observations of shape
//! `[3, 3, 2]`, final observations only where a step was truncated, and a
//! recurrent state per unroll; stored and sampled back byte for byte, and a
//! state of the wrong size refused before anything is stored.

use std::time::Duration;

use cml_proto::{
    ActionLayout, Batch, DType, ErrorReply, Hello, Insert, MessageKind, Opener, SampleRequest, Sealer, SharedKey,
    SocketOptions, UnrollLayout,
};
use cml_replay::index::{IndexConfig, SamplingMode};
use cml_replay::synthetic::{synthetic_item, synthetic_unrolls};
use cml_replay::{ReplayShard, ShardConfig};

fn key() -> SharedKey {
    SharedKey::from_bytes([9; 32])
}

fn layout() -> UnrollLayout {
    UnrollLayout {
        observation_shape: vec![3, 3, 2],
        observation_dtype: DType::U8,
        recurrent_state_size: 4,
        ..UnrollLayout::flat(6, 18, ActionLayout::Discrete { n: 3 })
    }
}

fn shard() -> ReplayShard {
    ReplayShard::new(ShardConfig {
        shard: 0,
        shards: 1,
        endpoint: "inproc://unused".into(),
        layout: layout(),
        index: IndexConfig {
            capacity: 64,
            mode: SamplingMode::Queue,
            alpha: 1.0,
            priority_epsilon: 1e-6,
            max_samples_per_item: None,
            fresh_fraction: 0.0,
            seed: 1,
        },
        max_bytes: 1 << 30,
        credit_window: 64,
        insert_rate: None,
        sender_timeout: Duration::from_secs(60),
        stats_interval: Duration::from_secs(60),
        socket: SocketOptions::default(),
        key: key(),
    })
    .unwrap()
}

fn deliver(shard: &mut ReplayShard, frames: Vec<Vec<u8>>) -> Vec<(MessageKind, Vec<Vec<u8>>)> {
    let mut all = vec![b"peer".to_vec()];
    all.extend(frames);
    let mut out = Vec::new();
    shard.handle(&all, &mut out);
    out.into_iter()
        .map(|(_, frames)| {
            let kind = Opener::new(key(), 1 << 30).open(&frames).unwrap().kind;
            (kind, frames)
        })
        .collect()
}

fn insert(
    sealer: &mut Sealer,
    first: u64,
    count: u32,
    tamper: impl FnOnce(&mut Insert, &mut Vec<Vec<u8>>),
) -> Vec<Vec<u8>> {
    let l = layout();
    let mut m = synthetic_unrolls(&l, 3, first, count);
    let mut body = Insert {
        shard: 0,
        count,
        actor_ids: m.actor_ids,
        policy_versions: m.policy_versions,
        priorities: None,
        episodes: vec![],
        tensors: l.tensor_specs(count as usize, l.final_count(&m.frames)),
    };
    tamper(&mut body, &mut m.frames);
    sealer.seal(MessageKind::Insert, &body, m.frames).unwrap()
}

#[test]
fn shaped_u8_unrolls_with_sparse_finals_and_state_round_trip() {
    let l = layout();
    let mut shard = shard();
    let mut sealer = Sealer::new(key(), 5);
    let hello = sealer
        .seal(MessageKind::Hello, &Hello { role: "actor".into() }, vec![])
        .unwrap();
    assert_eq!(deliver(&mut shard, hello)[0].0, MessageKind::Welcome);

    // 15 unrolls, of which 0, 7 and 14 end truncated.
    let frames = insert(&mut sealer, 0, 15, |_, _| {});
    assert_eq!(deliver(&mut shard, frames)[0].0, MessageKind::Credit);
    assert_eq!(shard.len(), 15);
    for key in 0..15 {
        assert_eq!(shard.item(key).unwrap(), synthetic_item(&l, 3, key), "item {key}");
    }
    // Memory: the fixed fields, plus one observation per truncation.
    assert_eq!(l.item_bytes(), 7 * 18 + 4 * 6 * 3 + 6 * 2 + 4 * 4);
    assert_eq!(shard.stats().bytes as usize, 15 * l.item_bytes() + 3 * 18);

    // A recurrent state of the wrong size, described or sent: refused as
    // bad_tensor, nothing stored.
    for tamper in [
        (|_: &mut Insert, f: &mut Vec<Vec<u8>>| f[7].truncate(12)) as fn(&mut Insert, &mut Vec<Vec<u8>>),
        |b, f| {
            b.tensors[7].shape = vec![2, 5];
            f[7].extend_from_slice(&[0; 8]);
        },
        |b, f| {
            b.tensors.pop();
            f.pop();
        },
        // A dense [B, T, obs…] final-observation tensor, as v1 sent it.
        |b, f| {
            b.tensors[6].shape = vec![12, 3, 3, 2];
            f[6] = vec![0; 12 * 18];
        },
    ] {
        let out = deliver(&mut shard, insert(&mut sealer, 100, 2, tamper));
        let opened = Opener::new(key(), 1 << 30).open(&out[0].1).unwrap();
        let error = opened.body::<ErrorReply>().unwrap();
        assert_eq!(error.reason, "bad_tensor", "{}", error.detail);
        assert_eq!(shard.len(), 15);
    }

    // Sampled back: a batch whose frames pass the same checks, in the
    // same sparse form, equal to what was inserted.
    let request = sealer
        .seal(
            MessageKind::Sample,
            &SampleRequest {
                request_id: 1,
                count: 15,
            },
            vec![],
        )
        .unwrap();
    let out = deliver(&mut shard, request);
    let (kind, frames) = &out[0];
    assert_eq!(*kind, MessageKind::Batch);
    let opened = Opener::new(key(), 1 << 30).open(frames).unwrap();
    let batch = opened.body::<Batch>().unwrap();
    assert_eq!(batch.count, 15);
    let payload: Vec<Vec<u8>> = opened.payload.to_vec();
    l.check_payload(15, &batch.tensors, &payload).unwrap();
    assert_eq!(batch.tensors[6].shape, vec![3, 3, 3, 2]);
    let sent = synthetic_unrolls(&l, 3, 0, 15);
    assert_eq!(payload, sent.frames);
}
