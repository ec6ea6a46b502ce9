//! `ReplayShard`: one shard of the replay service, and the loop that serves
//! it on a ZeroMQ ROUTER socket.
//!
//! The shard is single-threaded: the work per message (MAC, checks, a memcpy
//! into the slab, a few tree updates) is microseconds, and one thread owning
//! both the socket and the buffer needs no locks and no channel hops.
//! [`ReplayShard::handle`] is the whole protocol logic without any socket, so
//! tests drive it directly; [`serve`] puts it on a socket.
//!
//! Flow control: an actor holds credit, counted in unrolls. `hello` grants up
//! to `credit_window`; every stored insert is acknowledged with a `credit`
//! message that grants more. In prioritized/uniform mode the grant refills
//! the window at once (a full shard evicts its oldest items, FIFO); in queue
//! mode the shard never grants more than its free slots, so a full shard
//! makes actors wait until the learner consumes. Either way the bytes in
//! flight are bounded by senders × window × unroll size, and nothing is
//! dropped silently: an insert beyond credit is refused with `no_credit`.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cml_proto::envelope::Opener;
use cml_proto::transport::{bind_router, recv_frames};
use cml_proto::{
    Batch, Credit, Episode, ErrorReply, Frame, GetStats, Goodbye, Hello, Insert, MessageKind, PriorityUpdate,
    RejectLog, RejectReason, Rejection, SampleRequest, Sealer, ShardStats, SharedKey, SocketOptions, UnrollLayout,
    Welcome,
};

use crate::index::{IndexConfig, ReplayIndex, Sampled, SamplingMode, UpdateOutcome};

/// Episodes kept for the learner between two `batch` replies; older ones are
/// dropped (and counted) beyond this.
const MAX_PENDING_EPISODES: usize = 100_000;

/// Everything a shard needs.
#[derive(Clone, Debug)]
pub struct ShardConfig {
    pub shard: u32,
    pub shards: u32,
    /// Where the ROUTER socket binds, e.g. `tcp://127.0.0.1:5600`.
    pub endpoint: String,
    pub layout: UnrollLayout,
    /// Slots, mode, α, cap, fresh fraction, seed. `capacity` is lowered to
    /// fit `max_bytes`.
    pub index: IndexConfig,
    /// Payload memory bound, bytes.
    pub max_bytes: usize,
    /// Unrolls an actor may have in flight.
    pub credit_window: u32,
    /// Paces the actors to the learner's draws (prioritized and uniform
    /// mode); None: actors insert as fast as they produce.
    pub insert_rate: Option<InsertRateLimit>,
    /// A sender silent this long is forgotten and its credit reclaimed.
    pub sender_timeout: Duration,
    /// How often the serving loop logs its stats.
    pub stats_interval: Duration,
    pub socket: SocketOptions,
    pub key: SharedKey,
}

/// The insert side of a sample-to-insert rate limiter (as DeepMind's
/// Reverb has): credit is granted only while
/// inserted + outstanding credit ≤ warmup + sampled / samples_per_insert + slack,
/// with slack = credit_window × (known actors + 1), so no actor holding a
/// partial window can block the others for good. Actors therefore wait
/// for the learner's draws, and the ratio of draws to inserts stays near
/// `samples_per_insert` however fast either side is.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct InsertRateLimit {
    /// Draws per inserted unroll (the learner's `replay_ratio`), > 0.
    pub samples_per_insert: f64,
    /// Unrolls this shard takes before draws start to count (the learner's
    /// `learning_starts`, in this shard's share).
    pub warmup_unrolls: u64,
}

/// Errors that stop a shard from starting or serving.
#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    #[error("shard {shard}: {message}")]
    Config { shard: u32, message: String },
    #[error("shard {shard}: {source}")]
    Proto {
        shard: u32,
        #[source]
        source: cml_proto::ProtoError,
    },
    #[error("shard {shard}: socket {endpoint}: {source}")]
    Socket {
        shard: u32,
        endpoint: String,
        #[source]
        source: zmq::Error,
    },
}

/// Per-unroll metadata kept beside the payload.
#[derive(Clone, Copy, Debug, Default)]
struct ItemMeta {
    actor_id: u64,
    policy_version: u64,
}

#[derive(Debug)]
struct SenderState {
    routing_id: Vec<u8>,
    /// Credit granted and not yet used.
    outstanding: u32,
    last_seen: Instant,
}

/// A reply to route: the peer's ROUTER identity and the message frames.
pub type Outgoing = (Vec<u8>, Vec<Vec<u8>>);

/// One replay shard: the index, the payload slab, senders' credit, counters.
pub struct ReplayShard {
    config: ShardConfig,
    item_bytes: usize,
    index: ReplayIndex,
    slab: Vec<u8>,
    /// Per slot: the final observations of its unroll's truncated steps
    /// (sparse, as on the wire; buffers are reused with their slots).
    finals: Vec<Vec<u8>>,
    /// Bytes held in `finals`.
    final_bytes: usize,
    meta: Vec<ItemMeta>,
    opener: Opener,
    sealer: Sealer,
    rejects: RejectLog,
    senders: HashMap<u64, SenderState>,
    /// Actors waiting for credit (queue mode), oldest first.
    waiting: VecDeque<u64>,
    episodes: VecDeque<Episode>,
    sampled: Vec<Sampled>,
    started: Instant,
    inserted_total: u64,
    sampled_total: u64,
    evicted_total: u64,
    retired_total: u64,
    priority_updates_total: u64,
    stale_updates_total: u64,
    episodes_dropped: u64,
    /// Rates over the last stats interval (set by the serving loop).
    rates: (f64, f64),
    replies_undelivered: u64,
    /// Random per process (the sealer's sender id): keys of an earlier
    /// incarnation never match this one's.
    incarnation: u64,
}

impl ReplayShard {
    pub fn new(mut config: ShardConfig) -> Result<ReplayShard, ShardError> {
        let shard = config.shard;
        let err = |message: String| ShardError::Config { shard, message };
        config.layout.validate().map_err(|e| err(format!("layout: {e}")))?;
        if config.shards == 0 || config.shard >= config.shards {
            return Err(err(format!(
                "shard index {} is not below shards = {}",
                config.shard, config.shards
            )));
        }
        if config.credit_window == 0 {
            return Err(err("credit_window must be at least 1".into()));
        }
        if let Some(limit) = config.insert_rate {
            if !(limit.samples_per_insert.is_finite() && limit.samples_per_insert > 0.0) {
                return Err(err(format!(
                    "insert rate limit: samples_per_insert must be a number > 0, found {}",
                    limit.samples_per_insert
                )));
            }
        }
        let item_bytes = config.layout.item_bytes();
        let fit = config.max_bytes / item_bytes;
        if fit == 0 {
            return Err(err(format!(
                "max_bytes = {} cannot hold one unroll of {item_bytes} bytes",
                config.max_bytes
            )));
        }
        if fit < config.index.capacity {
            tracing::info!(
                shard,
                requested = config.index.capacity,
                capacity = fit,
                "capacity lowered to fit the memory bound"
            );
            config.index.capacity = fit;
        }
        let capacity = config.index.capacity;
        let index = ReplayIndex::new(config.index.clone()).map_err(|e| err(e.to_string()))?;
        let sealer =
            Sealer::with_random_sender(config.key.clone()).map_err(|source| ShardError::Proto { shard, source })?;
        Ok(ReplayShard {
            incarnation: sealer.sender(),
            opener: Opener::new(config.key.clone(), config.socket.max_message_bytes),
            sealer,
            rejects: RejectLog::new("replay"),
            index,
            // Zeroed pages are only committed when written: RSS follows the fill.
            slab: vec![0u8; capacity * item_bytes],
            finals: vec![Vec::new(); capacity],
            final_bytes: 0,
            meta: vec![ItemMeta::default(); capacity],
            item_bytes,
            senders: HashMap::new(),
            waiting: VecDeque::new(),
            episodes: VecDeque::new(),
            sampled: Vec::new(),
            started: Instant::now(),
            inserted_total: 0,
            sampled_total: 0,
            evicted_total: 0,
            retired_total: 0,
            priority_updates_total: 0,
            stale_updates_total: 0,
            episodes_dropped: 0,
            rates: (0.0, 0.0),
            replies_undelivered: 0,
            config,
        })
    }

    /// This process's incarnation id (see `Welcome::incarnation`).
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    pub fn config(&self) -> &ShardConfig {
        &self.config
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    pub fn rejected(&self, reason: RejectReason) -> u64 {
        self.rejects.count(reason)
    }

    /// The stored payload of a live item: the frames of a one-unroll
    /// message concatenated in frame order, for tests and inspection.
    pub fn item(&self, key: u64) -> Option<Vec<u8>> {
        let slot = self.index.slot_of(key)?;
        let mut frames = vec![Vec::new(); self.config.layout.frame_count()];
        self.config.layout.unpack_item(
            &self.slab[slot * self.item_bytes..(slot + 1) * self.item_bytes],
            &self.finals[slot],
            &mut frames,
        );
        Some(frames.concat())
    }

    fn mode_name(&self) -> &'static str {
        match self.config.index.mode {
            SamplingMode::Prioritized => "prioritized",
            SamplingMode::Uniform => "uniform",
            SamplingMode::Queue => "queue",
        }
    }

    /// Statistics (rates are filled by the serving loop).
    pub fn stats(&self) -> ShardStats {
        ShardStats {
            shard: self.config.shard,
            mode: self.mode_name().to_string(),
            size: self.index.len() as u64,
            capacity: self.index.capacity() as u64,
            bytes: (self.index.len() * self.item_bytes + self.final_bytes) as u64,
            capacity_bytes: (self.index.capacity() * self.item_bytes) as u64,
            inserted_total: self.inserted_total,
            sampled_total: self.sampled_total,
            evicted_total: self.evicted_total,
            retired_total: self.retired_total,
            priority_updates_total: self.priority_updates_total,
            stale_updates_total: self.stale_updates_total,
            inserts_per_s: self.rates.0,
            samples_per_s: self.rates.1,
            total_priority: self.index.total_priority(),
            senders: self.senders.len() as u64,
            outstanding_credit: self.senders.values().map(|s| u64::from(s.outstanding)).sum(),
            rejected: self.rejects.to_map(),
            replies_undelivered: self.replies_undelivered,
            uptime_s: self.started.elapsed().as_secs_f64(),
        }
    }

    /// Handles one message as received on the ROUTER socket (`frames[0]` is
    /// the peer's routing id) and appends the replies to send.
    pub fn handle<F: Frame>(&mut self, frames: &[F], out: &mut Vec<Outgoing>) {
        let Some((routing_id, message)) = frames.split_first() else {
            return;
        };
        let routing_id = routing_id.bytes();
        let opened = match self.opener.open(message) {
            Ok(opened) => opened,
            Err(rejection) => {
                // Not authenticated (or not even a message): count, never
                // answer. An authenticated peer of another protocol version
                // is told which version this shard speaks.
                self.rejects.record(&rejection);
                if rejection.reason == RejectReason::Version {
                    let body = ErrorReply {
                        seq: 0,
                        reason: rejection.reason.as_str().to_string(),
                        detail: rejection.detail,
                    };
                    self.reply(routing_id, MessageKind::Error, &body, Vec::new(), out);
                }
                return;
            }
        };
        let (kind, sender, seq) = (opened.kind, opened.sender, opened.seq);
        if let Some(state) = self.senders.get_mut(&sender) {
            state.last_seen = Instant::now();
            if state.routing_id != routing_id {
                state.routing_id = routing_id.to_vec();
            }
        }
        let result = match kind {
            MessageKind::Hello => opened
                .body::<Hello>()
                .and_then(|hello| self.on_hello(routing_id, sender, &hello, out)),
            MessageKind::Insert => opened
                .body::<Insert>()
                .and_then(|insert| self.on_insert(routing_id, sender, seq, &insert, opened.payload, out)),
            MessageKind::Sample => opened
                .body::<SampleRequest>()
                .and_then(|request| self.on_sample(routing_id, &request, out)),
            MessageKind::Priorities => opened
                .body::<PriorityUpdate>()
                .and_then(|update| self.on_priorities(&update)),
            MessageKind::Goodbye => opened.body::<Goodbye>().map(|_| self.on_goodbye(sender, out)),
            MessageKind::GetStats => opened.body::<GetStats>().map(|_| {
                let stats = self.stats();
                self.reply(routing_id, MessageKind::Stats, &stats, Vec::new(), out);
            }),
            other => Err(Rejection::new(
                RejectReason::Unexpected,
                format!("a replay shard does not accept {:?} messages", other.as_str()),
            )),
        };
        if let Err(rejection) = result {
            self.rejects.record(&rejection);
            let body = ErrorReply {
                seq,
                reason: rejection.reason.as_str().to_string(),
                detail: rejection.detail,
            };
            self.reply(routing_id, MessageKind::Error, &body, Vec::new(), out);
        }
    }

    fn reply<B: serde::Serialize>(
        &mut self,
        routing_id: &[u8],
        kind: MessageKind,
        body: &B,
        payload: Vec<Vec<u8>>,
        out: &mut Vec<Outgoing>,
    ) {
        match self.sealer.seal(kind, body, payload) {
            Ok(frames) => out.push((routing_id.to_vec(), frames)),
            Err(e) => tracing::error!(
                shard = self.config.shard,
                "cannot encode a {} reply: {e}",
                kind.as_str()
            ),
        }
    }

    /// Unrolls that can still be promised to actors: without overfilling
    /// (queue mode) and within the insert rate limit (when set);
    /// unlimited otherwise.
    fn free_credit(&self) -> u64 {
        let reserved: u64 = self.senders.values().map(|s| u64::from(s.outstanding)).sum();
        let queue = match self.config.index.mode {
            SamplingMode::Queue => (self.index.capacity() as u64).saturating_sub(self.index.len() as u64 + reserved),
            _ => u64::MAX,
        };
        let rate = match self.config.insert_rate {
            Some(limit) => {
                let slack = u64::from(self.config.credit_window).saturating_mul(self.senders.len() as u64 + 1);
                // `as` saturates: a tiny ratio earns u64::MAX, not a wrap.
                let earned = (self.sampled_total as f64 / limit.samples_per_insert) as u64;
                limit
                    .warmup_unrolls
                    .saturating_add(earned)
                    .saturating_add(slack)
                    .saturating_sub(self.inserted_total + reserved)
            }
            None => u64::MAX,
        };
        queue.min(rate)
    }

    /// Whether freed credit goes to waiting actors (queue mode, or an
    /// insert rate limit).
    fn credit_is_scarce(&self) -> bool {
        self.config.index.mode == SamplingMode::Queue || self.config.insert_rate.is_some()
    }

    fn on_hello(
        &mut self,
        routing_id: &[u8],
        sender: u64,
        hello: &Hello,
        out: &mut Vec<Outgoing>,
    ) -> Result<(), Rejection> {
        if hello.role != "actor" && hello.role != "learner" {
            return Err(Rejection::new(
                RejectReason::BadBody,
                format!("hello.role is {:?}; expected \"actor\" or \"learner\"", hello.role),
            ));
        }
        let credit = if hello.role == "actor" {
            // A hello replaces the sender's credit: release it, then grant anew.
            if let Some(state) = self.senders.get_mut(&sender) {
                state.outstanding = 0;
            }
            let grant = u64::from(self.config.credit_window).min(self.free_credit()) as u32;
            self.senders.insert(
                sender,
                SenderState {
                    routing_id: routing_id.to_vec(),
                    outstanding: grant,
                    last_seen: Instant::now(),
                },
            );
            if grant < self.config.credit_window && !self.waiting.contains(&sender) {
                self.waiting.push_back(sender);
            }
            grant
        } else {
            0
        };
        let welcome = Welcome {
            shard: self.config.shard,
            shards: self.config.shards,
            mode: self.mode_name().to_string(),
            layout: self.config.layout.clone(),
            credit,
            capacity: self.index.capacity() as u64,
            max_message_bytes: self.config.socket.max_message_bytes as u64,
            credit_window: self.config.credit_window,
            sender_timeout_ms: self.config.sender_timeout.as_millis() as u64,
            incarnation: self.incarnation,
        };
        self.reply(routing_id, MessageKind::Welcome, &welcome, Vec::new(), out);
        Ok(())
    }

    fn on_insert<F: Frame>(
        &mut self,
        routing_id: &[u8],
        sender: u64,
        seq: u64,
        insert: &Insert,
        payload: &[F],
        out: &mut Vec<Outgoing>,
    ) -> Result<(), Rejection> {
        if insert.shard != self.config.shard {
            return Err(Rejection::new(
                RejectReason::WrongShard,
                format!("insert for shard {}; this is shard {}", insert.shard, self.config.shard),
            ));
        }
        let count = insert.count as usize;
        let lengths_ok = count >= 1
            && insert.actor_ids.len() == count
            && insert.policy_versions.len() == count
            && insert.priorities.as_ref().is_none_or(|p| p.len() == count);
        if !lengths_ok {
            return Err(Rejection::new(
                RejectReason::BadBody,
                format!(
                    "count = {count} but {} actor_ids, {} policy_versions, {} priorities",
                    insert.actor_ids.len(),
                    insert.policy_versions.len(),
                    insert
                        .priorities
                        .as_ref()
                        .map_or("no".to_string(), |p| p.len().to_string())
                ),
            ));
        }
        let outstanding = self.senders.get(&sender).map_or(0, |s| s.outstanding);
        if insert.count > outstanding {
            return Err(Rejection::new(
                RejectReason::NoCredit,
                format!("insert of {count} unrolls with credit for {outstanding}; send hello to get credit"),
            ));
        }
        if let Some(priorities) = &insert.priorities {
            self.check_priorities(priorities)?;
        }
        if let Some(e) = insert.episodes.iter().find(|e| !e.episode_return.is_finite()) {
            return Err(Rejection::new(
                RejectReason::BadValue,
                format!("episode of actor {} has return {}", e.actor_id, e.episode_return),
            ));
        }
        self.config.layout.check_payload(count, &insert.tensors, payload)?;
        if self.config.index.mode == SamplingMode::Queue && self.index.capacity() - self.index.len() < count {
            return Err(Rejection::new(
                RejectReason::NoCredit,
                format!("queue full ({} unrolls); wait for credit", self.index.len()),
            ));
        }

        // Checked: store every unroll.
        let ib = self.item_bytes;
        let mut first_final = 0;
        for b in 0..count {
            let priority = insert.priorities.as_ref().map(|p| p[b]);
            let inserted = match self.index.insert(priority) {
                Ok(inserted) => inserted,
                Err(e) => {
                    // Unreachable after the checks above; refuse the rest loudly.
                    return Err(Rejection::new(RejectReason::NoCredit, format!("unroll {b}: {e}")));
                }
            };
            if inserted.evicted.is_some() {
                self.evicted_total += 1;
            }
            let slot = inserted.slot;
            let finals = &mut self.finals[slot];
            self.final_bytes -= finals.len();
            first_final += self.config.layout.pack_item(
                payload,
                b,
                first_final,
                &mut self.slab[slot * ib..(slot + 1) * ib],
                finals,
            );
            self.final_bytes += finals.len();
            self.meta[slot] = ItemMeta {
                actor_id: insert.actor_ids[b],
                policy_version: insert.policy_versions[b],
            };
        }
        self.inserted_total += count as u64;
        for episode in &insert.episodes {
            if self.episodes.len() == MAX_PENDING_EPISODES {
                self.episodes.pop_front();
                self.episodes_dropped += 1;
            }
            self.episodes.push_back(episode.clone());
        }

        // Acknowledge and refill the sender's credit (the used credit is
        // released first, so the stored unrolls are not counted twice).
        if let Some(state) = self.senders.get_mut(&sender) {
            state.outstanding -= insert.count;
        }
        let free = self.free_credit();
        let window = self.config.credit_window;
        let grant = match self.senders.get_mut(&sender) {
            Some(state) => {
                let grant = u64::from(window - state.outstanding).min(free) as u32;
                state.outstanding += grant;
                if state.outstanding < window && !self.waiting.contains(&sender) {
                    self.waiting.push_back(sender);
                }
                grant
            }
            None => 0,
        };
        let credit = Credit {
            ack_seq: seq,
            stored: insert.count,
            grant,
        };
        self.reply(routing_id, MessageKind::Credit, &credit, Vec::new(), out);
        Ok(())
    }

    fn on_sample(
        &mut self,
        routing_id: &[u8],
        request: &SampleRequest,
        out: &mut Vec<Outgoing>,
    ) -> Result<(), Rejection> {
        // Never build a reply larger than the peer accepts, even if every
        // step of every unroll was truncated.
        let layout = &self.config.layout;
        let worst = self.item_bytes + layout.unroll_length as usize * layout.observation_bytes();
        let fit = (self.config.socket.max_message_bytes / 2) / worst.max(1);
        let n = (request.count as usize).min(fit.max(1));
        let mut sampled = std::mem::take(&mut self.sampled);
        self.index.sample(n, &mut sampled);
        let layout = &self.config.layout;
        let mut frames: Vec<Vec<u8>> = vec![Vec::new(); layout.frame_count()];
        for field in layout.fields() {
            frames[field.frame].reserve(field.bytes() * sampled.len());
        }
        let ib = self.item_bytes;
        let mut batch = Batch {
            request_id: request.request_id,
            shard: self.config.shard,
            incarnation: self.incarnation,
            count: sampled.len() as u32,
            keys: Vec::with_capacity(sampled.len()),
            priorities: Vec::with_capacity(sampled.len()),
            times_sampled: Vec::with_capacity(sampled.len()),
            actor_ids: Vec::with_capacity(sampled.len()),
            policy_versions: Vec::with_capacity(sampled.len()),
            size: 0,
            total_priority: 0.0,
            min_priority: 0.0,
            episodes: Vec::new(),
            tensors: Vec::new(),
            inserted: self.inserted_total,
        };
        let cap = self.config.index.max_samples_per_item;
        for s in &sampled {
            // A retired item (cap reached, or consumed in queue mode) is still
            // in its slot until the slot is reused, so reading it is safe.
            self.config.layout.unpack_item(
                &self.slab[s.slot * ib..(s.slot + 1) * ib],
                &self.finals[s.slot],
                &mut frames,
            );
            let meta = self.meta[s.slot];
            batch.keys.push(s.key);
            batch.priorities.push(s.priority);
            batch.times_sampled.push(s.times_sampled);
            batch.actor_ids.push(meta.actor_id);
            batch.policy_versions.push(meta.policy_version);
            let retired = self.config.index.mode == SamplingMode::Queue || cap.is_some_and(|c| s.times_sampled >= c);
            if retired {
                self.retired_total += 1;
            }
        }
        self.sampled_total += sampled.len() as u64;
        batch.tensors = self
            .config
            .layout
            .tensor_specs(sampled.len(), self.config.layout.final_count(&frames));
        batch.size = self.index.len() as u64;
        batch.total_priority = self.index.total_priority();
        batch.min_priority = self.index.min_priority();
        batch.episodes = self.episodes.drain(..).collect();
        self.sampled = sampled;
        self.reply(routing_id, MessageKind::Batch, &batch, frames, out);
        if self.credit_is_scarce() {
            self.grant_waiting(out);
        }
        Ok(())
    }

    /// Queue mode or a rate limit: hands freed credit to actors waiting for
    /// some, oldest first.
    fn grant_waiting(&mut self, out: &mut Vec<Outgoing>) {
        let window = self.config.credit_window;
        let mut still_waiting = VecDeque::new();
        while let Some(sender) = self.waiting.pop_front() {
            let free = self.free_credit();
            let Some(state) = self.senders.get_mut(&sender) else {
                continue;
            };
            let grant = u64::from(window - state.outstanding).min(free) as u32;
            if grant > 0 {
                state.outstanding += grant;
                let routing_id = state.routing_id.clone();
                if state.outstanding < window {
                    still_waiting.push_back(sender);
                }
                let credit = Credit {
                    ack_seq: 0,
                    stored: 0,
                    grant,
                };
                self.reply(&routing_id, MessageKind::Credit, &credit, Vec::new(), out);
            } else {
                still_waiting.push_back(sender);
            }
        }
        self.waiting = still_waiting;
    }

    fn on_priorities(&mut self, update: &PriorityUpdate) -> Result<(), Rejection> {
        if update.keys.len() != update.priorities.len() {
            return Err(Rejection::new(
                RejectReason::BadBody,
                format!("{} keys but {} priorities", update.keys.len(), update.priorities.len()),
            ));
        }
        // All checked before any is applied.
        self.check_priorities(&update.priorities)?;
        if update.incarnation.is_some_and(|i| i != self.incarnation) {
            // Keys of an earlier shard process: none of them is ours.
            self.stale_updates_total += update.keys.len() as u64;
            return Ok(());
        }
        for (&key, &p) in update.keys.iter().zip(&update.priorities) {
            match self.index.update_priority(key, p) {
                Ok(UpdateOutcome::Updated) => self.priority_updates_total += 1,
                Ok(UpdateOutcome::Stale) => self.stale_updates_total += 1,
                Err(e) => return Err(Rejection::new(RejectReason::BadValue, e.to_string())),
            }
        }
        Ok(())
    }

    fn check_priorities(&self, priorities: &[f64]) -> Result<(), Rejection> {
        for (i, &p) in priorities.iter().enumerate() {
            if self.index.check_priority(p).is_err() {
                return Err(Rejection::new(
                    RejectReason::BadValue,
                    format!(
                        "priorities[{i}] is {p}; priorities are finite, >= 0, and max(p, epsilon)^alpha <= {:e}",
                        crate::index::MAX_STORED_PRIORITY
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Forgets senders silent for longer than `sender_timeout`, reclaiming
    /// their credit (queue mode hands it to others).
    pub fn expire_senders(&mut self, out: &mut Vec<Outgoing>) {
        let timeout = self.config.sender_timeout;
        let before = self.senders.len();
        self.senders.retain(|_, s| s.last_seen.elapsed() < timeout);
        if self.senders.len() != before {
            tracing::info!(
                shard = self.config.shard,
                forgotten = before - self.senders.len(),
                "forgot silent senders and reclaimed their credit"
            );
            let senders = &self.senders;
            self.waiting.retain(|s| senders.contains_key(s));
            if self.credit_is_scarce() {
                self.grant_waiting(out);
            }
        }
    }

    /// An actor said it stops: forget it now, and in queue mode hand its
    /// credit to the actors waiting for some.
    fn on_goodbye(&mut self, sender: u64, out: &mut Vec<Outgoing>) {
        if self.senders.remove(&sender).is_none() {
            return;
        }
        self.waiting.retain(|s| *s != sender);
        tracing::debug!(shard = self.config.shard, sender, "an actor said goodbye");
        if self.credit_is_scarce() {
            self.grant_waiting(out);
        }
    }

    /// A peer could not be reached: forget it (its credit returns).
    pub fn peer_unreachable(&mut self, routing_id: &[u8]) {
        self.senders.retain(|_, s| s.routing_id != routing_id);
        let senders = &self.senders;
        self.waiting.retain(|s| senders.contains_key(s));
    }
}

/// Serves `shard` on its endpoint until `stop` is set; logs stats every
/// `stats_interval`.
pub fn serve(mut shard: ReplayShard, stop: &AtomicBool) -> Result<(), ShardError> {
    let id = shard.config.shard;
    let endpoint = shard.config.endpoint.clone();
    let ctx = zmq::Context::new();
    let socket =
        bind_router(&ctx, &shard.config.socket, &endpoint).map_err(|source| ShardError::Proto { shard: id, source })?;
    tracing::info!(
        shard = id,
        endpoint = %endpoint,
        capacity = shard.index.capacity(),
        unroll_bytes = shard.item_bytes,
        mode = shard.mode_name(),
        "replay shard serving"
    );
    let mut frames = Vec::new();
    let mut out = Vec::new();
    let mut last_report = Instant::now();
    let mut last_expiry = Instant::now();
    let (mut last_inserted, mut last_sampled) = (0u64, 0u64);
    while !stop.load(Ordering::Relaxed) {
        let got = recv_frames(&socket, &mut frames, 100).map_err(|source| ShardError::Socket {
            shard: id,
            endpoint: endpoint.clone(),
            source,
        })?;
        if got {
            shard.handle(&frames, &mut out);
        }
        for (routing_id, reply) in out.drain(..) {
            let mut parts = Vec::with_capacity(reply.len() + 1);
            parts.push(routing_id.clone());
            parts.extend(reply);
            if let Err(e) = socket.send_multipart(parts, zmq::DONTWAIT) {
                // EHOSTUNREACH: the peer is gone; EAGAIN: its queue is full.
                shard.replies_undelivered += 1;
                tracing::debug!(shard = id, "reply not delivered: {e}");
                if e == zmq::Error::EHOSTUNREACH {
                    shard.peer_unreachable(&routing_id);
                }
            }
        }
        if last_expiry.elapsed() >= Duration::from_secs(1) {
            shard.expire_senders(&mut out);
            last_expiry = Instant::now();
        }
        let elapsed = last_report.elapsed();
        if elapsed >= shard.config.stats_interval {
            shard.rates = (
                (shard.inserted_total - last_inserted) as f64 / elapsed.as_secs_f64(),
                (shard.sampled_total - last_sampled) as f64 / elapsed.as_secs_f64(),
            );
            (last_inserted, last_sampled) = (shard.inserted_total, shard.sampled_total);
            let stats = shard.stats();
            let rejected: u64 = stats.rejected.values().sum();
            tracing::info!(
                shard = id,
                size = stats.size,
                bytes = stats.bytes,
                inserts_per_s = format!("{:.0}", stats.inserts_per_s),
                samples_per_s = format!("{:.0}", stats.samples_per_s),
                senders = stats.senders,
                rejected,
                episodes_dropped = shard.episodes_dropped,
                "replay stats"
            );
            last_report = Instant::now();
        }
    }
    tracing::info!(shard = id, "replay shard stopped");
    Ok(())
}
