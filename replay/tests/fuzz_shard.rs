//! Fuzz-style test on stable Rust: random and mutated messages into a
//! shard's handler. Nothing may panic; every message is either refused and
//! counted exactly once, or handled (answered, or a silent priority update);
//! stored unrolls stay intact.
//!
//! Cases: `CML_FUZZ_CASES` (default 20 000, bounded for CI); seed:
//! `CML_FUZZ_SEED`. Run a million once with
//! `CML_FUZZ_CASES=1000000 cargo test --release -p cml-replay --test fuzz_shard`.

use std::time::Duration;

use cml_proto::envelope::mac;
use cml_proto::{
    ActionLayout, GetStats, Hello, Insert, MessageKind, Opener, PriorityUpdate, SampleRequest, Sealer, SharedKey,
    SocketOptions, UnrollLayout,
};
use cml_replay::index::{IndexConfig, SamplingMode};
use cml_replay::synthetic::{synthetic_item, synthetic_unrolls};
use cml_replay::{ReplayShard, ShardConfig};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

fn key() -> SharedKey {
    SharedKey::from_bytes([3; 32])
}

fn layout() -> UnrollLayout {
    UnrollLayout::flat(6, 3, ActionLayout::Discrete { n: 3 })
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A valid message of a random type from `sealer`.
fn valid_message(rng: &mut SmallRng, sealer: &mut Sealer) -> Vec<Vec<u8>> {
    match rng.random_range(0..5) {
        0 => {
            let count = rng.random_range(1..4);
            let m = synthetic_unrolls(&layout(), 9, 1000 + rng.random_range(0..100), count);
            let body = Insert {
                shard: 0,
                count,
                actor_ids: m.actor_ids,
                policy_versions: m.policy_versions,
                priorities: rng.random_bool(0.5).then(|| vec![rng.random::<f64>(); count as usize]),
                episodes: vec![],
                tensors: layout().tensor_specs(count as usize, layout().final_count(&m.frames)),
            };
            sealer.seal(MessageKind::Insert, &body, m.frames).unwrap()
        }
        1 => {
            let body = SampleRequest {
                request_id: rng.random(),
                count: rng.random_range(0..8),
            };
            sealer.seal(MessageKind::Sample, &body, vec![]).unwrap()
        }
        2 => {
            let n = rng.random_range(0..4);
            let body = PriorityUpdate {
                incarnation: None,
                keys: (0..n).map(|_| rng.random_range(0..64)).collect(),
                priorities: (0..n).map(|_| rng.random::<f64>() * 3.0).collect(),
            };
            sealer.seal(MessageKind::Priorities, &body, vec![]).unwrap()
        }
        3 => sealer.seal(MessageKind::GetStats, &GetStats {}, vec![]).unwrap(),
        _ => sealer
            .seal(MessageKind::Hello, &Hello { role: "actor".into() }, vec![])
            .unwrap(),
    }
}

/// Applies 1-3 random edits; `payload_only` spares the header (frame 0).
fn mutate(rng: &mut SmallRng, frames: &mut Vec<Vec<u8>>, payload_only: bool) {
    for _ in 0..rng.random_range(1..4) {
        let first = usize::from(payload_only && frames.len() > 1);
        let f = rng.random_range(first..frames.len());
        match rng.random_range(0..8) {
            0 => {
                if !frames[f].is_empty() {
                    let i = rng.random_range(0..frames[f].len());
                    frames[f][i] ^= 1 << rng.random_range(0..8);
                }
            }
            1 => {
                if !frames[f].is_empty() {
                    let i = rng.random_range(0..frames[f].len());
                    frames[f][i] = rng.random();
                }
            }
            2 => {
                let cut = rng.random_range(0..=frames[f].len());
                frames[f].truncate(cut);
            }
            3 => {
                let i = rng.random_range(0..=frames[f].len());
                frames[f].insert(i, rng.random());
            }
            4 if frames.len() > 1 => {
                frames.remove(f);
            }
            5 => {
                let copy = frames[f].clone();
                frames.insert(f, copy);
            }
            6 => {
                let g = rng.random_range(0..frames.len());
                frames.swap(f, g);
            }
            _ => {
                let n = rng.random_range(0..64);
                frames[f] = (0..n).map(|_| rng.random()).collect();
            }
        }
    }
}

#[test]
fn random_and_mutated_messages_never_break_a_shard() {
    let cases = env_u64("CML_FUZZ_CASES", 20_000);
    let seed = env_u64("CML_FUZZ_SEED", 0x5eed);
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut shard = ReplayShard::new(ShardConfig {
        shard: 0,
        shards: 1,
        endpoint: "inproc://unused".into(),
        layout: layout(),
        index: IndexConfig {
            capacity: 64,
            mode: SamplingMode::Prioritized,
            alpha: 0.6,
            priority_epsilon: 1e-6,
            max_samples_per_item: None,
            fresh_fraction: 0.0,
            seed,
        },
        max_bytes: 1 << 30,
        credit_window: 1 << 30,
        insert_rate: None,
        sender_timeout: Duration::from_secs(3600),
        stats_interval: Duration::from_secs(3600),
        socket: SocketOptions {
            max_message_bytes: 1 << 16,
            ..SocketOptions::default()
        },
        key: key(),
    })
    .unwrap();
    // A trusted sender stores 64 unrolls first (keys 0..64, actor 1).
    let mut trusted = Sealer::new(key(), 1);
    let mut out = Vec::new();
    let hello = trusted
        .seal(MessageKind::Hello, &Hello { role: "actor".into() }, vec![])
        .unwrap();
    shard.handle(&[vec![vec![b'p']], hello].concat(), &mut out);
    let m = synthetic_unrolls(&layout(), 1, 0, 64);
    let body = Insert {
        shard: 0,
        count: 64,
        actor_ids: m.actor_ids,
        policy_versions: m.policy_versions,
        priorities: None,
        episodes: vec![],
        tensors: layout().tensor_specs(64, layout().final_count(&m.frames)),
    };
    let insert = trusted.seal(MessageKind::Insert, &body, m.frames).unwrap();
    shard.handle(&[vec![vec![b'p']], insert].concat(), &mut out);
    assert_eq!(shard.len(), 64);

    let mut fuzzers: Vec<Sealer> = (2..7).map(|sender| Sealer::new(key(), sender)).collect();
    // Fuzzers get credit too, so their valid inserts are stored.
    for sealer in &mut fuzzers {
        let hello = sealer
            .seal(MessageKind::Hello, &Hello { role: "actor".into() }, vec![])
            .unwrap();
        shard.handle(&[vec![vec![b'f']], hello].concat(), &mut out);
    }
    let mut opener = Opener::new(key(), usize::MAX);
    let (mut refused, mut answered, mut silent_updates) = (0u64, 0u64, 0u64);
    let mut last_valid: Option<Vec<Vec<u8>>> = None;
    for case in 0..cases {
        // Fuzzers speak as five senders, each with its own sequence. A
        // re-signed header mutation can push a sender's sequence sky-high
        // (making all its later messages replays), so they are replaced by
        // new senders every 500 cases.
        if case % 500 == 0 && case > 0 {
            for (i, sealer) in fuzzers.iter_mut().enumerate() {
                *sealer = Sealer::new(key(), 1000 + case + i as u64);
                let hello = sealer
                    .seal(MessageKind::Hello, &Hello { role: "actor".into() }, vec![])
                    .unwrap();
                shard.handle(&[vec![vec![b'f']], hello].concat(), &mut out);
            }
        }
        let sealer = &mut fuzzers[(case % 5) as usize];
        let frames = match rng.random_range(0..10) {
            // Pure noise.
            0 => (0..rng.random_range(0..6))
                .map(|_| (0..rng.random_range(0..80)).map(|_| rng.random()).collect())
                .collect(),
            // A valid message, mutated, MAC left stale.
            1..=2 => {
                let mut f = valid_message(&mut rng, sealer);
                mutate(&mut rng, &mut f, false);
                f
            }
            // Mutated, then correctly re-signed: gets past the MAC.
            3..=8 => {
                let mut f = valid_message(&mut rng, sealer);
                f.pop();
                let payload_only = rng.random_bool(0.7);
                mutate(&mut rng, &mut f, payload_only);
                let tag = mac(&key(), &f);
                f.push(tag.to_vec());
                f
            }
            // Valid, or an old message replayed.
            _ => {
                let f = valid_message(&mut rng, sealer);
                if rng.random_bool(0.5) {
                    last_valid.clone().unwrap_or(f)
                } else {
                    last_valid = Some(f.clone());
                    f
                }
            }
        };
        let before = shard.stats();
        let rejected_before: u64 = before.rejected.values().sum();
        let mut all = vec![vec![b'f', (case % 251) as u8]];
        all.extend(frames);
        out.clear();
        shard.handle(&all, &mut out);
        let sent = &all[1..];
        let after = shard.stats();
        let rejected_after: u64 = after.rejected.values().sum();
        let replies: Vec<MessageKind> = out.iter().map(|(_, f)| opener.open(f).unwrap().kind).collect();
        let is_error = replies.first() == Some(&MessageKind::Error);
        match rejected_after - rejected_before {
            1 => {
                assert!(
                    replies.is_empty() || (replies.len() == 1 && is_error),
                    "case {case}: {replies:?}"
                );
                refused += 1;
            }
            0 if !replies.is_empty() => {
                assert!(!is_error, "case {case}: error reply without a count");
                answered += 1;
            }
            0 => {
                // The only silent success: a valid priority update, every key
                // of it applied or counted stale.
                let touched = (after.priority_updates_total + after.stale_updates_total)
                    - (before.priority_updates_total + before.stale_updates_total);
                let mut fresh_opener = Opener::new(key(), usize::MAX);
                let opened = fresh_opener
                    .open(sent)
                    .expect("a silently handled message is authentic");
                assert_eq!(opened.kind, MessageKind::Priorities, "case {case}: silently dropped");
                let update = opened.body::<PriorityUpdate>().expect("a valid priority update");
                assert_eq!(touched, update.keys.len() as u64, "case {case}");
                silent_updates += 1;
            }
            n => panic!("case {case}: counted {n} times"),
        }
        assert!(shard.len() <= 64);
    }
    // Every stored unroll is either one of the trusted sender's, intact, or a
    // fuzzer's valid insert (actor 9).
    let stats = shard.stats();
    let first_live = stats.inserted_total - stats.size;
    for key in first_live..stats.inserted_total {
        let item = shard.item(key).unwrap();
        if key < 64 {
            assert_eq!(item, synthetic_item(&layout(), 1, key), "trusted item {key} changed");
        }
    }
    eprintln!(
        "{cases} cases: {refused} refused, {answered} answered, {silent_updates} silent priority updates; \
         rejected by reason: {:?}",
        stats.rejected
    );
    assert_eq!(refused + answered + silent_updates, cases);
    assert!(refused > cases / 2, "most fuzz cases must be refused");
}
