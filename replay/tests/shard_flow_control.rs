//! Credit-based flow control in a shard's message handler.

use std::time::Duration;

use cml_proto::{
    ActionLayout, Credit, Hello, Insert, MessageKind, Opener, SampleRequest, Sealer, SharedKey, SocketOptions,
    UnrollLayout, Welcome,
};
use cml_replay::index::{IndexConfig, SamplingMode};
use cml_replay::shard::InsertRateLimit;
use cml_replay::shard::Outgoing;
use cml_replay::synthetic::{synthetic_item, synthetic_unrolls};
use cml_replay::{ReplayShard, ShardConfig};

fn key() -> SharedKey {
    SharedKey::from_bytes([9; 32])
}

fn layout() -> UnrollLayout {
    UnrollLayout::flat(4, 3, ActionLayout::Continuous { dim: 2 })
}

fn shard(mode: SamplingMode, capacity: usize, window: u32) -> ReplayShard {
    limited_shard(mode, capacity, window, None)
}

fn limited_shard(
    mode: SamplingMode,
    capacity: usize,
    window: u32,
    insert_rate: Option<InsertRateLimit>,
) -> ReplayShard {
    ReplayShard::new(ShardConfig {
        shard: 0,
        shards: 1,
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
        credit_window: window,
        insert_rate,
        sender_timeout: Duration::from_millis(200),
        stats_interval: Duration::from_secs(60),
        socket: SocketOptions::default(),
        key: key(),
    })
    .unwrap()
}

struct Peer {
    id: Vec<u8>,
    sealer: Sealer,
    opener: Opener,
    next_unroll: u64,
}

impl Peer {
    fn new(id: &str, sender: u64) -> Peer {
        Peer {
            id: id.as_bytes().to_vec(),
            sealer: Sealer::new(key(), sender),
            opener: Opener::new(key(), 1 << 30),
            next_unroll: 0,
        }
    }

    fn send(&mut self, shard: &mut ReplayShard, frames: Vec<Vec<u8>>) -> Vec<Outgoing> {
        let mut all = vec![self.id.clone()];
        all.extend(frames);
        let mut out = Vec::new();
        shard.handle(&all, &mut out);
        out
    }

    /// Asks for `count` unrolls (as a learner).
    fn sample(&mut self, shard: &mut ReplayShard, request_id: u64, count: u32) -> Vec<Outgoing> {
        let frames = self
            .sealer
            .seal(MessageKind::Sample, &SampleRequest { request_id, count }, vec![])
            .unwrap();
        self.send(shard, frames)
    }

    fn hello(&mut self, shard: &mut ReplayShard) -> u32 {
        let frames = self
            .sealer
            .seal(MessageKind::Hello, &Hello { role: "actor".into() }, vec![])
            .unwrap();
        let out = self.send(shard, frames);
        let opened = self.opener.open(&out[0].1).unwrap();
        opened.body::<Welcome>().unwrap().credit
    }

    fn insert(&mut self, shard: &mut ReplayShard, count: u32) -> Vec<Outgoing> {
        let m = synthetic_unrolls(&layout(), 1, self.next_unroll, count);
        self.next_unroll += u64::from(count);
        let body = Insert {
            shard: 0,
            count,
            actor_ids: m.actor_ids,
            policy_versions: m.policy_versions,
            priorities: None,
            episodes: vec![],
            tensors: layout().tensor_specs(count as usize, layout().final_count(&m.frames)),
        };
        let frames = self.sealer.seal(MessageKind::Insert, &body, m.frames).unwrap();
        self.send(shard, frames)
    }
}

/// Decodes every reply addressed to `peer` as (type, credit grant if any).
fn grants(peer: &mut Peer, out: &[Outgoing]) -> Vec<(MessageKind, u32)> {
    out.iter()
        .filter(|(id, _)| *id == peer.id)
        .map(|(_, frames)| {
            let opened = peer.opener.open(frames).unwrap();
            let grant = match opened.kind {
                MessageKind::Credit => opened.body::<Credit>().unwrap().grant,
                _ => 0,
            };
            (opened.kind, grant)
        })
        .collect()
}

#[test]
fn queue_mode_makes_actors_wait_and_never_overfills() {
    let mut shard = shard(SamplingMode::Queue, 20, 10);
    let mut a = Peer::new("a", 1);
    let mut b = Peer::new("b", 2);
    assert_eq!(a.hello(&mut shard), 10);
    assert_eq!(b.hello(&mut shard), 10);
    // All 20 slots are promised: a third actor gets nothing yet.
    let mut c = Peer::new("c", 3);
    assert_eq!(c.hello(&mut shard), 0);

    let out = a.insert(&mut shard, 10);
    assert_eq!(
        grants(&mut a, &out),
        vec![(MessageKind::Credit, 0)],
        "no free slot to grant"
    );
    let out = b.insert(&mut shard, 10);
    assert_eq!(grants(&mut b, &out), vec![(MessageKind::Credit, 0)]);
    assert_eq!(shard.len(), 20);
    // Beyond credit: refused, counted, nothing lost.
    let out = a.insert(&mut shard, 1);
    assert_eq!(grants(&mut a, &out), vec![(MessageKind::Error, 0)]);
    assert_eq!(shard.rejected(cml_proto::RejectReason::NoCredit), 1);
    assert_eq!(shard.len(), 20);

    // The learner consumes 8: the freed slots go to waiting actors, oldest first.
    let mut learner = Peer::new("learner", 9);
    let out = learner.sample(&mut shard, 1, 8);
    assert_eq!(grants(&mut learner, &out), vec![(MessageKind::Batch, 0)]);
    let to_c: u32 = grants(&mut c, &out).iter().map(|g| g.1).sum();
    let to_a: u32 = grants(&mut a, &out).iter().map(|g| g.1).sum();
    let to_b: u32 = grants(&mut b, &out).iter().map(|g| g.1).sum();
    assert_eq!(to_c + to_a + to_b, 8, "exactly the freed slots are granted");
    assert_eq!(to_c, 8, "c waited longest");
    let out = c.insert(&mut shard, 8);
    assert_eq!(grants(&mut c, &out)[0].0, MessageKind::Credit);
    assert_eq!(shard.len(), 20);
    assert_eq!(shard.stats().outstanding_credit, 0);
}

#[test]
fn queue_mode_refills_credit_while_there_is_room() {
    let mut shard = shard(SamplingMode::Queue, 20, 8);
    let mut a = Peer::new("a", 1);
    assert_eq!(a.hello(&mut shard), 8);
    // 8 stored, 12 free: the window refills completely.
    let out = a.insert(&mut shard, 8);
    assert_eq!(grants(&mut a, &out), vec![(MessageKind::Credit, 8)]);
    // 16 stored, 4 free: only 4 can be promised.
    let out = a.insert(&mut shard, 8);
    assert_eq!(grants(&mut a, &out), vec![(MessageKind::Credit, 4)]);
    let out = a.insert(&mut shard, 4);
    assert_eq!(grants(&mut a, &out), vec![(MessageKind::Credit, 0)]);
    assert_eq!(shard.len(), 20);
}

#[test]
fn queue_mode_hands_out_each_unroll_once_in_order() {
    let mut shard = shard(SamplingMode::Queue, 50, 50);
    let mut a = Peer::new("a", 1);
    a.hello(&mut shard);
    a.insert(&mut shard, 30);
    let mut learner = Peer::new("learner", 9);
    let mut versions = Vec::new();
    for request_id in 1..=4 {
        let out = learner.sample(&mut shard, request_id, 8);
        let opened = learner.opener.open(&out[0].1).unwrap();
        let batch = opened.body::<cml_proto::Batch>().unwrap();
        // The payload is the unrolls themselves, in order.
        let l = layout();
        for (i, &v) in batch.policy_versions.iter().enumerate() {
            let item = l.slice_unrolls(opened.payload, i..i + 1).concat();
            assert_eq!(item, synthetic_item(&l, 1, v));
        }
        versions.extend(batch.policy_versions);
    }
    assert_eq!(versions, (0..30).collect::<Vec<u64>>());
    assert!(shard.is_empty());
}

#[test]
fn prioritized_mode_refills_credit_and_evicts_fifo() {
    let mut shard = shard(SamplingMode::Prioritized, 16, 8);
    let mut a = Peer::new("a", 1);
    assert_eq!(a.hello(&mut shard), 8);
    for _ in 0..5 {
        let out = a.insert(&mut shard, 8);
        assert_eq!(grants(&mut a, &out), vec![(MessageKind::Credit, 8)]);
    }
    let stats = shard.stats();
    assert_eq!((stats.size, stats.inserted_total, stats.evicted_total), (16, 40, 24));
    // The newest 16 remain.
    for key in 24..40u64 {
        assert_eq!(shard.item(key).unwrap(), synthetic_item(&layout(), 1, key));
    }
    assert!(shard.item(23).is_none());
}

#[test]
fn silent_senders_lose_their_credit() {
    let mut shard = shard(SamplingMode::Queue, 10, 10);
    let mut a = Peer::new("a", 1);
    assert_eq!(a.hello(&mut shard), 10);
    let mut b = Peer::new("b", 2);
    assert_eq!(b.hello(&mut shard), 0);
    std::thread::sleep(Duration::from_millis(300));
    // b keeps asking; a stays silent past the timeout and is forgotten.
    assert_eq!(b.hello(&mut shard), 0);
    let mut out = Vec::new();
    shard.expire_senders(&mut out);
    let to_b: u32 = grants(&mut b, &out).iter().map(|g| g.1).sum();
    assert_eq!(to_b, 10, "a's reclaimed credit goes to b");
    let out = a.insert(&mut shard, 1);
    assert_eq!(grants(&mut a, &out), vec![(MessageKind::Error, 0)]);
}

#[test]
fn an_actor_that_says_goodbye_gives_its_credit_back_at_once() {
    // One actor holds the whole queue's credit; another waits for some.
    let mut shard = shard(SamplingMode::Queue, 10, 10);
    let mut a = Peer::new("a", 1);
    assert_eq!(a.hello(&mut shard), 10);
    let mut b = Peer::new("b", 2);
    assert_eq!(b.hello(&mut shard), 0);
    assert_eq!(shard.stats().senders, 2);
    // a stops: its goodbye (no reply to a) hands b the 10 at once, long
    // before the sender timeout.
    let frames = a
        .sealer
        .seal(MessageKind::Goodbye, &cml_proto::Goodbye {}, vec![])
        .unwrap();
    let out = a.send(&mut shard, frames);
    assert!(grants(&mut a, &out).is_empty(), "goodbye is not answered");
    let to_b: u32 = grants(&mut b, &out).iter().map(|g| g.1).sum();
    assert_eq!(to_b, 10);
    let stats = shard.stats();
    assert_eq!((stats.senders, stats.outstanding_credit), (1, 10));
    // a is forgotten: an insert without a new hello is refused.
    let out = a.insert(&mut shard, 1);
    assert_eq!(grants(&mut a, &out), vec![(MessageKind::Error, 0)]);
    // A goodbye from a sender the shard does not know changes nothing.
    let mut stranger = Peer::new("s", 7);
    let frames = stranger
        .sealer
        .seal(MessageKind::Goodbye, &cml_proto::Goodbye {}, vec![])
        .unwrap();
    assert!(stranger.send(&mut shard, frames).is_empty());
    assert_eq!(shard.stats().outstanding_credit, 10);
}

#[test]
fn an_insert_rate_limit_makes_actors_wait_for_the_learners_draws() {
    // Two draws per insert, 10 unrolls of warm-up, window 4.
    let limit = InsertRateLimit {
        samples_per_insert: 2.0,
        warmup_unrolls: 10,
    };
    let mut shard = limited_shard(SamplingMode::Uniform, 1000, 4, Some(limit));
    let mut a = Peer::new("a", 1);
    assert_eq!(a.hello(&mut shard), 4);
    // Warm-up 10 + slack 4 × (1 actor + 1) = 18 unrolls before any draw.
    let mut stored = 0u32;
    let mut credit = 4u32;
    while credit > 0 {
        let out = a.insert(&mut shard, credit);
        stored += credit;
        credit = grants(&mut a, &out).iter().map(|g| g.1).sum();
    }
    assert_eq!(stored, 18);
    assert_eq!(shard.stats().outstanding_credit, 0);
    // 8 draws earn 4 inserts, granted to the waiting actor at once.
    let mut learner = Peer::new("learner", 9);
    let out = learner.sample(&mut shard, 1, 8);
    let to_a: u32 = grants(&mut a, &out).iter().map(|g| g.1).sum();
    assert_eq!(to_a, 4);
    let out = a.insert(&mut shard, 4);
    assert_eq!(
        grants(&mut a, &out),
        vec![(MessageKind::Credit, 0)],
        "spent: wait again"
    );
    let stats = shard.stats();
    assert_eq!((stats.inserted_total, stats.sampled_total), (22, 8));
}
