//! Bad input against a shard's message handler: every defect is refused
//! with its own counter (and, once authenticated, an `error` reply naming
//! it), the shard keeps serving, and every stored unroll stays intact.

use std::time::Duration;

use cml_proto::envelope::mac;
use cml_proto::{
    ActionLayout, DType, ErrorReply, Hello, Insert, MessageKind, Opener, PriorityUpdate, RejectReason, SampleRequest,
    Sealer, SharedKey, SocketOptions, UnrollLayout,
};
use cml_replay::index::{IndexConfig, SamplingMode};
use cml_replay::shard::Outgoing;
use cml_replay::synthetic::{synthetic_item, synthetic_unrolls};
use cml_replay::{ReplayShard, ShardConfig, UnrollMessage};

const PEER: &[u8] = b"peer-1";

fn key() -> SharedKey {
    SharedKey::from_bytes([42; 32])
}

fn layout() -> UnrollLayout {
    UnrollLayout::flat(5, 4, ActionLayout::Discrete { n: 2 })
}

fn shard(mode: SamplingMode, capacity: usize) -> ReplayShard {
    ReplayShard::new(ShardConfig {
        shard: 0,
        shards: 2,
        endpoint: "inproc://unused".into(),
        layout: layout(),
        index: IndexConfig {
            capacity,
            mode,
            alpha: 1.0,
            priority_epsilon: 1e-6,
            max_samples_per_item: None,
            fresh_fraction: 0.0,
            seed: 1,
        },
        max_bytes: 1 << 30,
        credit_window: 100,
        insert_rate: None,
        sender_timeout: Duration::from_secs(60),
        stats_interval: Duration::from_secs(60),
        socket: SocketOptions {
            max_message_bytes: 1 << 20,
            ..SocketOptions::default()
        },
        key: key(),
    })
    .unwrap()
}

/// Delivers frames as the ROUTER would (routing id first).
fn deliver(shard: &mut ReplayShard, frames: Vec<Vec<u8>>) -> Vec<Outgoing> {
    let mut all = vec![PEER.to_vec()];
    all.extend(frames);
    let mut out = Vec::new();
    shard.handle(&all, &mut out);
    out
}

/// Opens replies with a fresh opener and returns (type, header frames).
fn replies(out: &[Outgoing]) -> Vec<(MessageKind, Vec<Vec<u8>>)> {
    let mut opener = Opener::new(key(), 1 << 30);
    out.iter()
        .map(|(id, frames)| {
            assert_eq!(id, PEER);
            (opener.open(frames).unwrap().kind, frames.clone())
        })
        .collect()
}

fn error_reason(out: &[Outgoing]) -> String {
    let mut opener = Opener::new(key(), 1 << 30);
    assert_eq!(out.len(), 1, "expected one error reply");
    let opened = opener.open(&out[0].1).unwrap();
    assert_eq!(opened.kind, MessageKind::Error);
    opened.body::<ErrorReply>().unwrap().reason
}

fn insert_frames(sealer: &mut Sealer, message: UnrollMessage, shard: u32) -> Vec<Vec<u8>> {
    let body = Insert {
        shard,
        count: message.count,
        actor_ids: message.actor_ids,
        policy_versions: message.policy_versions,
        priorities: message.priorities,
        episodes: message.episodes,
        tensors: layout().tensor_specs(message.count as usize, layout().final_count(&message.frames)),
    };
    sealer.seal(MessageKind::Insert, &body, message.frames).unwrap()
}

/// Re-signs frames (all but the old MAC) with the right key: a defect that
/// only an authenticated peer could send.
fn resign(mut frames: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    frames.pop();
    let tag = mac(&key(), &frames);
    frames.push(tag.to_vec());
    frames
}

#[test]
fn every_bad_input_is_refused_counted_and_harmless() {
    let mut shard = shard(SamplingMode::Prioritized, 64);
    let mut sealer = Sealer::new(key(), 77);
    let hello = sealer
        .seal(MessageKind::Hello, &Hello { role: "actor".into() }, vec![])
        .unwrap();
    assert_eq!(replies(&deliver(&mut shard, hello))[0].0, MessageKind::Welcome);
    let good = insert_frames(&mut sealer, synthetic_unrolls(&layout(), 5, 0, 10), 0);
    assert_eq!(replies(&deliver(&mut shard, good))[0].0, MessageKind::Credit);
    assert_eq!(shard.len(), 10);

    let expect = |shard: &mut ReplayShard, frames: Vec<Vec<u8>>, reason: RejectReason| {
        let before = shard.rejected(reason);
        let out = deliver(shard, frames);
        assert_eq!(shard.rejected(reason), before + 1, "{reason:?} not counted");
        if reason.is_envelope() && reason != RejectReason::Version {
            assert!(out.is_empty(), "{reason:?}: an envelope refusal got an answer");
        } else {
            assert_eq!(error_reason(&out), reason.as_str());
        }
    };
    let fresh = |sealer: &mut Sealer| insert_frames(sealer, synthetic_unrolls(&layout(), 5, 100, 2), 0);

    // Malformed MessagePack header (correctly signed).
    let mut frames = fresh(&mut sealer);
    frames[0] = vec![0xc1, 0xff, 0x00];
    expect(&mut shard, resign(frames), RejectReason::Malformed);
    // Not a map at all.
    let mut frames = fresh(&mut sealer);
    frames[0] = rmp_serde::to_vec(&[1u8, 2, 3]).unwrap();
    expect(&mut shard, resign(frames), RejectReason::Malformed);
    // Only one frame: no MAC.
    let frames = fresh(&mut sealer);
    expect(&mut shard, vec![frames[0].clone()], RejectReason::Malformed);
    // Truncated: a payload frame cut short (the MAC no longer matches).
    let mut frames = fresh(&mut sealer);
    frames[3].truncate(5);
    expect(&mut shard, frames, RejectReason::BadMac);
    // Truncated but re-signed: the tensor check catches it.
    let mut frames = fresh(&mut sealer);
    frames[3].truncate(5);
    expect(&mut shard, resign(frames), RejectReason::BadTensor);
    // A missing payload frame, re-signed.
    let mut frames = fresh(&mut sealer);
    frames.remove(7);
    expect(&mut shard, resign(frames), RejectReason::BadTensor);
    // Bad MAC: one bit flipped; wrong key; MAC frame cut.
    let mut frames = fresh(&mut sealer);
    let last = frames.len() - 1;
    frames[last][0] ^= 0x80;
    expect(&mut shard, frames, RejectReason::BadMac);
    let mut other = Sealer::new(SharedKey::from_bytes([1; 32]), 77);
    expect(&mut shard, fresh(&mut other), RejectReason::BadMac);
    let mut frames = fresh(&mut sealer);
    frames[last].truncate(16);
    expect(&mut shard, frames, RejectReason::BadMac);
    // Wrong version: an authenticated peer is told both versions.
    let mut frames = fresh(&mut sealer);
    frames[0] = forged_header(9, "insert");
    expect(&mut shard, resign(frames), RejectReason::Version);
    let mut frames = fresh(&mut sealer);
    frames[0] = forged_header(1, "insert");
    let out = deliver(&mut shard, resign(frames));
    let opened = Opener::new(key(), 1 << 20).open(&out[0].1).unwrap();
    let error = opened.body::<ErrorReply>().unwrap();
    assert_eq!(error.reason, "version");
    assert_eq!(error.detail, "protocol version 1; this build speaks 2");
    // Unknown message type.
    let mut frames = fresh(&mut sealer);
    frames[0] = forged_header(cml_proto::PROTOCOL_VERSION, "teleport");
    expect(&mut shard, resign(frames), RejectReason::UnknownType);
    // Replayed sequence number: the very first good insert again.
    let mut replay_sealer = Sealer::new(key(), 77);
    let _hello_again = replay_sealer.seal(MessageKind::Hello, &Hello { role: "x".into() }, vec![]);
    let replayed = insert_frames(&mut replay_sealer, synthetic_unrolls(&layout(), 5, 0, 10), 0);
    expect(&mut shard, replayed, RejectReason::Replayed);
    // Oversize (the shard allows 1 MiB).
    let mut frames = fresh(&mut sealer);
    frames[1] = vec![0; 2 << 20];
    expect(&mut shard, resign(frames), RejectReason::Oversize);
    // Wrong shape and wrong dtype in the description.
    let mut m = synthetic_unrolls(&layout(), 5, 100, 2);
    let mut body = Insert {
        shard: 0,
        count: 2,
        actor_ids: m.actor_ids.clone(),
        policy_versions: m.policy_versions.clone(),
        priorities: None,
        episodes: vec![],
        tensors: layout().tensor_specs(2, layout().final_count(&m.frames)),
    };
    body.tensors[0].shape = vec![2, 6, 5];
    let frames = sealer.seal(MessageKind::Insert, &body, m.frames.clone()).unwrap();
    expect(&mut shard, frames, RejectReason::BadTensor);
    body.tensors = layout().tensor_specs(2, layout().final_count(&m.frames));
    body.tensors[1].dtype = DType::F32;
    let frames = sealer.seal(MessageKind::Insert, &body, m.frames.clone()).unwrap();
    expect(&mut shard, frames, RejectReason::BadTensor);
    // NaN and inf values; an action out of range.
    for (frame, value) in [(0usize, f32::NAN), (3, f32::INFINITY), (2, f32::NEG_INFINITY)] {
        let mut bad = m.clone();
        bad.frames[frame][8..12].copy_from_slice(&value.to_le_bytes());
        expect(&mut shard, insert_frames(&mut sealer, bad, 0), RejectReason::BadValue);
    }
    m.frames[1][0..4].copy_from_slice(&7u32.to_le_bytes());
    expect(&mut shard, insert_frames(&mut sealer, m, 0), RejectReason::BadValue);
    // NaN priority on insert.
    let mut bad = synthetic_unrolls(&layout(), 5, 100, 2);
    bad.priorities = Some(vec![1.0, f64::NAN]);
    expect(&mut shard, insert_frames(&mut sealer, bad, 0), RejectReason::BadValue);
    // Lengths that disagree with count.
    let mut bad = synthetic_unrolls(&layout(), 5, 100, 2);
    bad.actor_ids.pop();
    expect(&mut shard, insert_frames(&mut sealer, bad, 0), RejectReason::BadBody);
    // A body of the wrong type.
    let frames = sealer.seal(MessageKind::Insert, &"not an insert", vec![]).unwrap();
    expect(&mut shard, frames, RejectReason::BadBody);
    // Unknown shard.
    let frames = insert_frames(&mut sealer, synthetic_unrolls(&layout(), 5, 100, 2), 1);
    expect(&mut shard, frames, RejectReason::WrongShard);
    // A message type a shard does not take.
    let frames = sealer
        .seal(MessageKind::Welcome, &Hello { role: "x".into() }, vec![])
        .unwrap();
    expect(&mut shard, frames, RejectReason::Unexpected);
    // Inserting without credit (a sender that never said hello).
    let mut stranger = Sealer::new(key(), 78);
    let frames = insert_frames(&mut stranger, synthetic_unrolls(&layout(), 6, 0, 1), 0);
    expect(&mut shard, frames, RejectReason::NoCredit);
    // NaN and negative priorities in an update; mismatched lengths.
    for p in [f64::NAN, -1.0, f64::INFINITY] {
        let update = PriorityUpdate {
            incarnation: None,
            keys: vec![0, 1],
            priorities: vec![2.0, p],
        };
        let frames = sealer.seal(MessageKind::Priorities, &update, vec![]).unwrap();
        expect(&mut shard, frames, RejectReason::BadValue);
    }
    let update = PriorityUpdate {
        incarnation: None,
        keys: vec![0, 1],
        priorities: vec![2.0],
    };
    let frames = sealer.seal(MessageKind::Priorities, &update, vec![]).unwrap();
    expect(&mut shard, frames, RejectReason::BadBody);

    // A priority whose stored value p^alpha would overflow the trees
    // (alpha = 1 here): refused before anything is applied or stored.
    let update = PriorityUpdate {
        incarnation: None,
        keys: vec![0, 1],
        priorities: vec![2.0, 1e250],
    };
    let frames = sealer.seal(MessageKind::Priorities, &update, vec![]).unwrap();
    expect(&mut shard, frames, RejectReason::BadValue);
    let mut bad = synthetic_unrolls(&layout(), 5, 100, 2);
    bad.priorities = Some(vec![1.0, 1e250]);
    expect(&mut shard, insert_frames(&mut sealer, bad, 0), RejectReason::BadValue);
    // A hello with an unknown role.
    let frames = sealer
        .seal(MessageKind::Hello, &Hello { role: "Actor".into() }, vec![])
        .unwrap();
    expect(&mut shard, frames, RejectReason::BadBody);
    assert_eq!(
        shard.stats().priority_updates_total,
        0,
        "a refused update changed nothing"
    );
    assert_eq!(shard.stats().inserted_total, 10);

    // Nothing stored was touched, and nothing was added.
    assert_eq!(shard.len(), 10);
    for key in 0..10u64 {
        assert_eq!(
            shard.item(key).unwrap(),
            synthetic_item(&layout(), 5, key),
            "item {key}"
        );
    }
    // The shard still serves: a good insert and a sample.
    let good = insert_frames(&mut sealer, synthetic_unrolls(&layout(), 5, 10, 3), 0);
    assert_eq!(replies(&deliver(&mut shard, good))[0].0, MessageKind::Credit);
    assert_eq!(shard.len(), 13);
    let sample = sealer
        .seal(
            MessageKind::Sample,
            &SampleRequest {
                request_id: 1,
                count: 4,
            },
            vec![],
        )
        .unwrap();
    let out = deliver(&mut shard, sample);
    assert_eq!(replies(&out)[0].0, MessageKind::Batch);
    let stats = shard.stats();
    assert_eq!(stats.inserted_total, 13);
    assert!(stats.rejected.values().sum::<u64>() >= 25);
}

#[test]
fn priority_updates_for_an_earlier_shard_process_are_stale() {
    let mut shard = shard(SamplingMode::Prioritized, 64);
    let mut sealer = Sealer::new(key(), 77);
    let hello = sealer
        .seal(MessageKind::Hello, &Hello { role: "actor".into() }, vec![])
        .unwrap();
    deliver(&mut shard, hello);
    deliver(
        &mut shard,
        insert_frames(&mut sealer, synthetic_unrolls(&layout(), 5, 0, 4), 0),
    );
    let before = shard.stats().total_priority;
    for (incarnation, stale) in [
        (Some(shard.incarnation() ^ 1), 2),
        (Some(shard.incarnation()), 0),
        (None, 0),
    ] {
        let update = PriorityUpdate {
            incarnation,
            keys: vec![0, 1],
            priorities: vec![9.0, 9.0],
        };
        let stats_before = shard.stats();
        let out = deliver(
            &mut shard,
            sealer.seal(MessageKind::Priorities, &update, vec![]).unwrap(),
        );
        assert!(out.is_empty());
        let stats = shard.stats();
        assert_eq!(stats.stale_updates_total - stats_before.stale_updates_total, stale);
        assert_eq!(
            stats.priority_updates_total - stats_before.priority_updates_total,
            2 - stale
        );
    }
    assert!(shard.stats().total_priority > before);
}

/// A header with any version and type (and an empty body).
fn forged_header(v: u16, kind: &str) -> Vec<u8> {
    #[derive(serde::Serialize)]
    struct Forged<'a> {
        v: u16,
        #[serde(rename = "type")]
        kind: &'a str,
        sender: u64,
        seq: u64,
        body: (),
    }
    rmp_serde::to_vec_named(&Forged {
        v,
        kind,
        sender: 77,
        seq: 1 << 40,
        body: (),
    })
    .unwrap()
}
