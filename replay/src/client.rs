//! Clients of the replay shards: [`InsertClient`] (an actor host's link to
//! one shard, with credit) and [`ReplayClient`] (the learner's link to all
//! shards: sampling across them as one buffer, priority updates, stats).
//!
//! Both are blocking and own their sockets: give each its own thread.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use cml_proto::envelope::Opener;
use cml_proto::transport::{connect_dealer, recv_frames};
use cml_proto::{
    Batch, Credit, Episode, ErrorReply, GetStats, Goodbye, Hello, Insert, MessageKind, PriorityUpdate, ProtoError,
    RejectLog, SampleRequest, Sealer, ShardStats, SharedKey, SocketOptions, UnrollLayout, Welcome,
};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::index::importance_weights;

/// Errors of the replay clients; each names the shard endpoint.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Proto(#[from] ProtoError),
    #[error("{endpoint}: {source}")]
    Socket {
        endpoint: String,
        #[source]
        source: zmq::Error,
    },
    #[error("{endpoint}: no {what} within {timeout:?}")]
    Timeout {
        endpoint: String,
        what: &'static str,
        timeout: Duration,
    },
    #[error("{endpoint}: refused: {reason}: {detail}")]
    Refused {
        endpoint: String,
        reason: String,
        detail: String,
    },
    #[error("{0}")]
    Usage(String),
}

/// B unrolls ready to insert: metadata and the seven tensor frames
/// (batch-major, see `cml_proto::unroll`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UnrollMessage {
    pub count: u32,
    pub actor_ids: Vec<u64>,
    pub policy_versions: Vec<u64>,
    pub priorities: Option<Vec<f64>>,
    pub episodes: Vec<Episode>,
    pub frames: Vec<Vec<u8>>,
}

/// What an `InsertClient` observed since it was last asked.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct InsertProgress {
    /// Unrolls the shard acknowledged as stored.
    pub stored: u64,
    /// Refusals the shard sent back (authenticated `error` replies).
    pub errors: Vec<ErrorReply>,
}

fn socket_err(endpoint: &str) -> impl Fn(zmq::Error) -> ClientError + '_ {
    move |source| ClientError::Socket {
        endpoint: endpoint.to_string(),
        source,
    }
}

/// An actor host's connection to one shard, with credit-based flow control.
pub struct InsertClient {
    endpoint: String,
    shard: u32,
    socket: zmq::Socket,
    sealer: Sealer,
    opener: Opener,
    rejects: RejectLog,
    layout: Option<UnrollLayout>,
    credit: u32,
    /// Inserts sent and not yet acknowledged: (seq, unrolls).
    unacked: VecDeque<(u64, u32)>,
    last_heard: Instant,
    last_hello: Option<Instant>,
    /// Seq of our last hello: inserts sent after it are counted against the
    /// welcome's credit.
    hello_seq: u64,
    frames: Vec<zmq::Message>,
    progress: InsertProgress,
    had_message: bool,
    /// Wait between unanswered hellos: 1 s, doubling to 8 s; reset by any
    /// message from the shard.
    hello_backoff: Duration,
    seal_ns: u64,
    send_ns: u64,
}

impl InsertClient {
    pub fn connect(
        ctx: &zmq::Context,
        key: &SharedKey,
        options: &SocketOptions,
        endpoint: &str,
        shard: u32,
    ) -> Result<InsertClient, ClientError> {
        let socket = connect_dealer(ctx, options, endpoint)?;
        Ok(InsertClient {
            endpoint: endpoint.to_string(),
            shard,
            socket,
            sealer: Sealer::with_random_sender(key.clone())?,
            opener: Opener::new(key.clone(), options.max_message_bytes),
            rejects: RejectLog::new("actor"),
            layout: None,
            credit: 0,
            unacked: VecDeque::new(),
            last_heard: Instant::now(),
            last_hello: None,
            hello_seq: 0,
            frames: Vec::new(),
            progress: InsertProgress::default(),
            had_message: false,
            hello_backoff: Duration::from_secs(1),
            seal_ns: 0,
            send_ns: 0,
        })
    }

    pub fn sender(&self) -> u64 {
        self.sealer.sender()
    }

    /// Unrolls this client may send now.
    pub fn credit(&self) -> u32 {
        self.credit
    }

    /// The shard's layout, once welcomed.
    pub fn layout(&self) -> Option<UnrollLayout> {
        self.layout.clone()
    }

    /// Inserts sent but not yet acknowledged.
    pub fn unacked(&self) -> usize {
        self.unacked.len()
    }

    /// Nanoseconds spent sealing (MessagePack header + MAC) and handing
    /// inserts to ZeroMQ, since the start.
    pub fn timings(&self) -> (u64, u64) {
        (self.seal_ns, self.send_ns)
    }

    /// How long the shard has been silent.
    pub fn silent_for(&self) -> Duration {
        self.last_heard.elapsed()
    }

    /// Sends `hello` (asking for credit).
    pub fn send_hello(&mut self) -> Result<(), ClientError> {
        self.hello_seq = self.sealer.next_seq();
        let frames = self
            .sealer
            .seal(MessageKind::Hello, &Hello { role: "actor".into() }, Vec::new())?;
        self.socket
            .send_multipart(frames, zmq::DONTWAIT)
            .map_err(socket_err(&self.endpoint))?;
        self.last_hello = Some(Instant::now());
        Ok(())
    }

    /// Says `goodbye`: the shard forgets this sender and takes its credit
    /// back at once (an actor that stops; nothing is answered). Inserts
    /// after it are refused until the next hello.
    pub fn goodbye(&mut self) -> Result<(), ClientError> {
        let frames = self.sealer.seal(MessageKind::Goodbye, &Goodbye {}, Vec::new())?;
        self.socket
            .send_multipart(frames, zmq::DONTWAIT)
            .map_err(socket_err(&self.endpoint))?;
        self.credit = 0;
        Ok(())
    }

    /// Says hello and waits for the welcome (its credit replaces ours).
    pub fn hello(&mut self, timeout: Duration) -> Result<Welcome, ClientError> {
        self.send_hello()?;
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ClientError::Timeout {
                    endpoint: self.endpoint.clone(),
                    what: "welcome",
                    timeout,
                });
            }
            if let Some(welcome) = self.poll_once(left)? {
                return Ok(welcome);
            }
        }
    }

    /// Sends one insert; needs `message.count` credit.
    pub fn send(&mut self, message: UnrollMessage) -> Result<(), ClientError> {
        let layout = self
            .layout
            .as_ref()
            .ok_or_else(|| ClientError::Usage(format!("{}: insert before the shard's welcome", self.endpoint)))?;
        if message.count > self.credit {
            return Err(ClientError::Usage(format!(
                "{}: insert of {} unrolls with credit for {}",
                self.endpoint, message.count, self.credit
            )));
        }
        let body = Insert {
            shard: self.shard,
            count: message.count,
            actor_ids: message.actor_ids,
            policy_versions: message.policy_versions,
            priorities: message.priorities,
            episodes: message.episodes,
            tensors: layout.tensor_specs(message.count as usize, layout.final_count(&message.frames)),
        };
        let seq = self.sealer.next_seq();
        let started = Instant::now();
        let frames = self.sealer.seal(MessageKind::Insert, &body, message.frames)?;
        let sealed = Instant::now();
        self.seal_ns += (sealed - started).as_nanos() as u64;
        // Credit keeps the queue short; EAGAIN here means the shard has been
        // unreachable for a high-water mark's worth of messages.
        self.socket
            .send_multipart(frames, zmq::DONTWAIT)
            .map_err(socket_err(&self.endpoint))?;
        self.send_ns += sealed.elapsed().as_nanos() as u64;
        self.credit -= message.count;
        self.unacked.push_back((seq, message.count));
        Ok(())
    }

    /// Waits up to `timeout` until at least `needed` credit is available,
    /// handling acknowledgements; says hello again when the shard has been
    /// silent for a second while we wait (it may have restarted).
    pub fn wait_for_credit(&mut self, needed: u32, timeout: Duration) -> Result<bool, ClientError> {
        let deadline = Instant::now() + timeout;
        while self.credit < needed || self.layout.is_none() {
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            let quiet = now.duration_since(self.last_heard) >= Duration::from_secs(1)
                && self
                    .last_hello
                    .is_none_or(|t| now.duration_since(t) >= self.hello_backoff);
            if quiet {
                if self.last_hello.is_some_and(|t| t > self.last_heard) {
                    // The previous hello went unanswered: back off.
                    self.hello_backoff = (self.hello_backoff * 2).min(Duration::from_secs(8));
                }
                self.send_hello()?;
            }
            let step = deadline.saturating_duration_since(now).min(Duration::from_millis(200));
            self.poll_once(step)?;
        }
        Ok(true)
    }

    /// Handles everything that has arrived, without waiting.
    pub fn drain(&mut self) -> Result<(), ClientError> {
        loop {
            self.poll_once(Duration::ZERO)?;
            if !self.had_message {
                return Ok(());
            }
        }
    }

    /// Takes what was observed since the last call.
    pub fn take_progress(&mut self) -> InsertProgress {
        std::mem::take(&mut self.progress)
    }

    /// Receives and handles at most one message; returns a welcome if that
    /// is what arrived.
    fn poll_once(&mut self, timeout: Duration) -> Result<Option<Welcome>, ClientError> {
        let got = recv_frames(&self.socket, &mut self.frames, timeout.as_millis() as i64)
            .map_err(socket_err(&self.endpoint))?;
        self.had_message = got;
        if !got {
            return Ok(None);
        }
        let opened = match self.opener.open(&self.frames) {
            Ok(o) => o,
            Err(rejection) => {
                self.rejects.record(&rejection);
                return Ok(None);
            }
        };
        self.last_heard = Instant::now();
        self.hello_backoff = Duration::from_secs(1);
        match opened.kind {
            MessageKind::Welcome => match opened.body::<Welcome>() {
                Ok(welcome) => {
                    if welcome.shard != self.shard {
                        return Err(ClientError::Usage(format!(
                            "{}: this endpoint serves shard {}, not shard {}",
                            self.endpoint, welcome.shard, self.shard
                        )));
                    }
                    self.layout = Some(welcome.layout.clone());
                    // The shard reset our credit when it read the hello;
                    // inserts sent after the hello use that new credit.
                    // Inserts from before it were answered before the
                    // welcome, or lost with an earlier shard process.
                    let hello_seq = self.hello_seq;
                    self.unacked.retain(|(seq, _)| *seq > hello_seq);
                    let in_flight: u32 = self.unacked.iter().map(|(_, n)| n).sum();
                    self.credit = welcome.credit.saturating_sub(in_flight);
                    Ok(Some(welcome))
                }
                Err(r) => {
                    self.rejects.record(&r);
                    Ok(None)
                }
            },
            MessageKind::Credit => {
                match opened.body::<Credit>() {
                    Ok(credit) => {
                        self.credit = self.credit.saturating_add(credit.grant);
                        if credit.ack_seq != 0 {
                            self.unacked.retain(|(seq, _)| *seq != credit.ack_seq);
                            self.progress.stored += u64::from(credit.stored);
                        }
                    }
                    Err(r) => self.rejects.record(&r),
                }
                Ok(None)
            }
            MessageKind::Error => {
                match opened.body::<ErrorReply>() {
                    Ok(error) => {
                        self.unacked.retain(|(seq, _)| *seq != error.seq);
                        if error.reason == "no_credit" {
                            // Our credit is stale (the shard restarted or forgot us).
                            self.credit = 0;
                            self.last_heard = Instant::now() - Duration::from_secs(1);
                        }
                        tracing::debug!(endpoint = %self.endpoint, "insert refused: {}: {}", error.reason, error.detail);
                        self.progress.errors.push(error);
                    }
                    Err(r) => self.rejects.record(&r),
                }
                Ok(None)
            }
            other => {
                tracing::debug!(endpoint = %self.endpoint, "ignoring an unexpected {} message", other.as_str());
                Ok(None)
            }
        }
    }
}

/// An actor host's links to every shard: each insert goes to the shard with
/// the most credit (ties in turn), so unrolls spread over the N shards and a
/// slow or full shard gets fewer.
pub struct ShardedInserter {
    clients: Vec<InsertClient>,
    next: usize,
}

impl ShardedInserter {
    /// Connects to shard i at `endpoints[i]` and says hello to each.
    pub fn connect(
        ctx: &zmq::Context,
        key: &SharedKey,
        options: &SocketOptions,
        endpoints: &[String],
        timeout: Duration,
    ) -> Result<ShardedInserter, ClientError> {
        let mut clients = Vec::with_capacity(endpoints.len());
        for (shard, endpoint) in endpoints.iter().enumerate() {
            let mut client = InsertClient::connect(ctx, key, options, endpoint, shard as u32)?;
            client.hello(timeout)?;
            clients.push(client);
        }
        if clients.is_empty() {
            return Err(ClientError::Usage("no shard endpoints".into()));
        }
        Ok(ShardedInserter { clients, next: 0 })
    }

    /// Wraps clients that have already said hello (client i = shard i).
    pub fn from_clients(clients: Vec<InsertClient>) -> Result<ShardedInserter, ClientError> {
        if clients.is_empty() {
            return Err(ClientError::Usage("no shard clients".into()));
        }
        Ok(ShardedInserter { clients, next: 0 })
    }

    pub fn clients(&mut self) -> &mut [InsertClient] {
        &mut self.clients
    }

    /// The layout every shard announced (they must agree).
    pub fn layout(&self) -> Result<UnrollLayout, ClientError> {
        let first = self.clients[0]
            .layout()
            .ok_or_else(|| ClientError::Usage("no welcome from shard 0".into()))?;
        for c in &self.clients[1..] {
            if c.layout().as_ref() != Some(&first) {
                return Err(ClientError::Usage(format!(
                    "{}: layout {:?} differs from shard 0's {first:?}",
                    c.endpoint,
                    c.layout()
                )));
            }
        }
        Ok(first)
    }

    /// Waits up to `timeout` for some shard to have `needed` credit; returns
    /// its index, or None on timeout.
    pub fn wait_for_credit(&mut self, needed: u32, timeout: Duration) -> Result<Option<usize>, ClientError> {
        let deadline = Instant::now() + timeout;
        loop {
            for c in &mut self.clients {
                c.drain()?;
            }
            let n = self.clients.len();
            let best = (0..n)
                .map(|i| (self.next + i) % n)
                .filter(|&i| self.clients[i].credit() >= needed)
                .max_by_key(|&i| (self.clients[i].credit(), std::cmp::Reverse((i + n - self.next) % n)));
            if let Some(i) = best {
                self.next = (i + 1) % n;
                return Ok(Some(i));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            // Wait on one shard a little (handles re-hellos), then look again.
            let step = Duration::from_millis(20);
            let i = self.next;
            self.clients[i].wait_for_credit(needed, step)?;
            self.next = (self.next + 1) % n;
        }
    }

    /// Sends `message` to a shard with enough credit, waiting up to
    /// `timeout`; returns the shard it went to, or None on timeout (nothing
    /// sent: the caller keeps the unrolls).
    pub fn send(&mut self, message: UnrollMessage, timeout: Duration) -> Result<Option<usize>, ClientError> {
        let Some(shard) = self.wait_for_credit(message.count, timeout)? else {
            return Ok(None);
        };
        self.clients[shard].send(message)?;
        Ok(Some(shard))
    }

    /// Acknowledged unrolls and refusals from every shard since last asked.
    pub fn take_progress(&mut self) -> InsertProgress {
        let mut all = InsertProgress::default();
        for c in &mut self.clients {
            let p = c.take_progress();
            all.stored += p.stored;
            all.errors.extend(p.errors);
        }
        all
    }

    /// Says `goodbye` to every shard (an actor host that stops cleanly),
    /// so its unused credit goes to other actors at once. Best effort: a
    /// shard that cannot be told (down, queue full) is logged and skipped;
    /// it forgets the sender by its timeout.
    pub fn goodbye(&mut self) {
        for c in &mut self.clients {
            if let Err(e) = c.goodbye() {
                tracing::debug!("goodbye not sent: {e}");
            }
        }
    }

    /// Inserts not yet acknowledged, over all shards.
    pub fn unacked(&self) -> usize {
        self.clients.iter().map(InsertClient::unacked).sum()
    }
}

/// Per-shard state the learner keeps.
struct ShardLink {
    endpoint: String,
    socket: zmq::Socket,
    /// From the shard's last `batch`: items, Σ p^α, min p^α.
    size: u64,
    total_priority: f64,
    min_priority: f64,
    layout: Option<UnrollLayout>,
    /// The shard process the last batch came from (keys belong to it).
    incarnation: Option<u64>,
    /// `Batch::inserted` of the last batch from `incarnation`.
    inserted: u64,
}

/// Sampled unrolls from all shards, with importance weights.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SampledBatch {
    pub count: usize,
    /// Per item: the shard it came from and its key there.
    pub shards: Vec<u32>,
    pub keys: Vec<u64>,
    /// P(i) over all shards together: p_i^α / Σ over every shard.
    pub probabilities: Vec<f64>,
    /// (N·P(i))^-β normalised by the largest possible weight.
    pub weights: Vec<f32>,
    pub times_sampled: Vec<u32>,
    pub actor_ids: Vec<u64>,
    pub policy_versions: Vec<u64>,
    /// The seven tensors, batch-major `[count, ...]` (`cml_proto::unroll`).
    pub frames: Vec<Vec<u8>>,
    pub episodes: Vec<Episode>,
    /// Items in all shards together after this sample.
    pub replay_size: u64,
}

/// How the learner's client counts the unrolls the shards accepted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum InsertCounting {
    /// Everything each shard incarnation accepted since it started (a fresh
    /// run: the shards started with it).
    #[default]
    FromShardStart,
    /// Only what shards accept after the client first hears from them (a
    /// resumed run, whose earlier inserts are in its checkpoint).
    FromFirstReply,
}

/// The learner's connection to every shard.
pub struct ReplayClient {
    links: Vec<ShardLink>,
    /// Unrolls the shards accepted, counted as `counting` says.
    inserted_unrolls: u64,
    counting: InsertCounting,
    sealer: Sealer,
    opener: Opener,
    rejects: RejectLog,
    rng: SmallRng,
    next_request: u64,
    frames: Vec<zmq::Message>,
}

impl ReplayClient {
    /// Connects to shard i at `endpoints[i]`.
    pub fn connect(
        ctx: &zmq::Context,
        key: &SharedKey,
        options: &SocketOptions,
        endpoints: &[String],
        seed: u64,
    ) -> Result<ReplayClient, ClientError> {
        let links = endpoints
            .iter()
            .map(|endpoint| {
                Ok(ShardLink {
                    socket: connect_dealer(ctx, options, endpoint)?,
                    endpoint: endpoint.clone(),
                    size: 0,
                    total_priority: 0.0,
                    min_priority: f64::INFINITY,
                    layout: None,
                    incarnation: None,
                    inserted: 0,
                })
            })
            .collect::<Result<Vec<_>, ClientError>>()?;
        if links.is_empty() {
            return Err(ClientError::Usage("no shard endpoints: give at least one".into()));
        }
        Ok(ReplayClient {
            inserted_unrolls: 0,
            counting: InsertCounting::default(),
            links,
            sealer: Sealer::with_random_sender(key.clone())?,
            opener: Opener::new(key.clone(), options.max_message_bytes),
            rejects: RejectLog::new("learner"),
            rng: SmallRng::seed_from_u64(seed),
            next_request: 1,
            frames: Vec::new(),
        })
    }

    pub fn shards(&self) -> usize {
        self.links.len()
    }

    /// Sets how [`ReplayClient::inserted_unrolls`] counts; call it before
    /// the first sample.
    pub fn set_insert_counting(&mut self, counting: InsertCounting) {
        self.counting = counting;
    }

    /// Unrolls the shards have accepted (the actors' production), from the
    /// `inserted` totals in their batch replies: each shard's count is as of
    /// its last reply.
    pub fn inserted_unrolls(&self) -> u64 {
        self.inserted_unrolls
    }

    /// Sends a request; returns its seq (an `error` reply names it).
    fn send(&mut self, shard: usize, kind: MessageKind, body: &impl serde::Serialize) -> Result<u64, ClientError> {
        let seq = self.sealer.next_seq();
        let frames = self.sealer.seal(kind, body, Vec::new())?;
        let link = &self.links[shard];
        link.socket
            .send_multipart(frames, zmq::DONTWAIT)
            .map_err(socket_err(&link.endpoint))?;
        Ok(seq)
    }

    /// Receives one authenticated message of `kind` from `shard` within
    /// `deadline`, skipping others (late replies to earlier requests). An
    /// `error` naming `request_seq` fails the call; errors about other
    /// messages (e.g. an earlier priority update) are logged.
    fn recv<B: serde::de::DeserializeOwned>(
        &mut self,
        shard: usize,
        kind: MessageKind,
        request_seq: u64,
        deadline: Instant,
        what: &'static str,
        timeout: Duration,
    ) -> Result<(B, Vec<Vec<u8>>), ClientError> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let link = &self.links[shard];
            let got = recv_frames(&link.socket, &mut self.frames, left.as_millis() as i64)
                .map_err(socket_err(&link.endpoint))?;
            if !got {
                return Err(ClientError::Timeout {
                    endpoint: link.endpoint.clone(),
                    what,
                    timeout,
                });
            }
            let opened = match self.opener.open(&self.frames) {
                Ok(o) => o,
                Err(r) => {
                    self.rejects.record(&r);
                    continue;
                }
            };
            if opened.kind == MessageKind::Error {
                if let Ok(e) = opened.body::<ErrorReply>() {
                    if e.seq == request_seq {
                        return Err(ClientError::Refused {
                            endpoint: link.endpoint.clone(),
                            reason: e.reason,
                            detail: e.detail,
                        });
                    }
                    tracing::warn!(endpoint = %link.endpoint, seq = e.seq, "shard refused an earlier message: {}: {}", e.reason, e.detail);
                }
                continue;
            }
            if opened.kind != kind {
                continue;
            }
            match opened.body::<B>() {
                Ok(body) => {
                    let payload = opened.payload.iter().map(|f| f.to_vec()).collect();
                    return Ok((body, payload));
                }
                Err(r) => self.rejects.record(&r),
            }
        }
    }

    /// Says hello to every shard; returns their welcomes (layouts must agree).
    pub fn hello(&mut self, timeout: Duration) -> Result<Vec<Welcome>, ClientError> {
        let deadline = Instant::now() + timeout;
        let mut welcomes = Vec::with_capacity(self.links.len());
        let mut seqs = Vec::with_capacity(self.links.len());
        for shard in 0..self.links.len() {
            seqs.push(self.send(shard, MessageKind::Hello, &Hello { role: "learner".into() })?);
        }
        for (shard, seq) in seqs.into_iter().enumerate() {
            let (welcome, _) = self.recv::<Welcome>(shard, MessageKind::Welcome, seq, deadline, "welcome", timeout)?;
            if welcome.shard as usize != shard {
                return Err(ClientError::Usage(format!(
                    "{}: serves shard {}, configured as shard {shard}",
                    self.links[shard].endpoint, welcome.shard
                )));
            }
            if let Some(first) = welcomes.first().map(|w: &Welcome| &w.layout) {
                if *first != welcome.layout {
                    return Err(ClientError::Usage(format!(
                        "{}: layout {:?} differs from shard 0's {:?}",
                        self.links[shard].endpoint, welcome.layout, first
                    )));
                }
            }
            self.links[shard].layout = Some(welcome.layout.clone());
            welcomes.push(welcome);
        }
        Ok(welcomes)
    }

    /// Samples about `count` unrolls from all shards together: the count is
    /// split across shards in proportion to their total priority (Ape-X), so
    /// N shards behave like one buffer. Shards may return fewer (empty,
    /// queue mode), so the batch can be smaller than asked.
    pub fn sample(&mut self, count: usize, beta: f64, timeout: Duration) -> Result<SampledBatch, ClientError> {
        let n_shards = self.links.len();
        // Σ p^α per shard from their last replies; unknown shards count as
        // average ones so they get asked.
        let known: Vec<f64> = self.links.iter().map(|l| l.total_priority).collect();
        let positive: Vec<f64> = known.iter().copied().filter(|t| *t > 0.0).collect();
        let fallback = if positive.is_empty() {
            1.0
        } else {
            positive.iter().sum::<f64>() / positive.len() as f64
        };
        let weights: Vec<f64> = self
            .links
            .iter()
            .map(|l| {
                if l.size == 0 && l.total_priority <= 0.0 {
                    fallback
                } else {
                    l.total_priority.max(0.0)
                }
            })
            .collect();
        let total_weight: f64 = weights.iter().sum();
        let mut per_shard = vec![0u32; n_shards];
        for _ in 0..count {
            let mut mass = self.rng.random::<f64>() * total_weight;
            let mut chosen = n_shards - 1;
            for (i, w) in weights.iter().enumerate() {
                if mass < *w {
                    chosen = i;
                    break;
                }
                mass -= w;
            }
            per_shard[chosen] += 1;
        }
        self.exchange(&per_shard, false, beta, timeout)
    }

    /// Asks every shard for nothing: the replies bring each shard's insert
    /// count (so [`ReplayClient::inserted_unrolls`] moves) and the finished
    /// episodes it holds, without drawing anything (a learner that waits
    /// for the actors polls with this).
    pub fn refresh(&mut self, timeout: Duration) -> Result<SampledBatch, ClientError> {
        let none = vec![0u32; self.links.len()];
        self.exchange(&none, true, 1.0, timeout)
    }

    /// Sends `per_shard[i]` sample requests to shard i (also 0 when
    /// `everyone`) and assembles the replies.
    fn exchange(
        &mut self,
        per_shard: &[u32],
        everyone: bool,
        beta: f64,
        timeout: Duration,
    ) -> Result<SampledBatch, ClientError> {
        let n_shards = self.links.len();
        let request_id = self.next_request;
        self.next_request += 1;
        let mut seqs = vec![0u64; n_shards];
        for (shard, &n) in per_shard.iter().enumerate() {
            if n > 0 || everyone {
                seqs[shard] = self.send(shard, MessageKind::Sample, &SampleRequest { request_id, count: n })?;
            }
        }
        let deadline = Instant::now() + timeout;
        let mut replies = Vec::new();
        for (shard, &n) in per_shard.iter().enumerate() {
            if n == 0 && !everyone {
                continue;
            }
            loop {
                let (batch, payload) =
                    self.recv::<Batch>(shard, MessageKind::Batch, seqs[shard], deadline, "batch", timeout)?;
                if batch.request_id == request_id {
                    let link = &mut self.links[shard];
                    let since = match link.incarnation {
                        Some(i) if i == batch.incarnation => link.inserted,
                        // The first reply of this client: count from the
                        // shard's start, or from now.
                        None if self.counting == InsertCounting::FromFirstReply => batch.inserted,
                        // A shard process that (re)started counts from 0.
                        _ => 0,
                    };
                    self.inserted_unrolls += batch.inserted.saturating_sub(since);
                    link.inserted = batch.inserted;
                    link.incarnation = Some(batch.incarnation);
                    link.size = batch.size;
                    link.total_priority = batch.total_priority;
                    link.min_priority = batch.min_priority;
                    replies.push((shard, batch, payload));
                    break;
                }
            }
        }
        Ok(self.assemble(replies, beta))
    }

    fn assemble(&mut self, replies: Vec<(usize, Batch, Vec<Vec<u8>>)>, beta: f64) -> SampledBatch {
        let mut out = SampledBatch::default();
        let grand_total: f64 = self.links.iter().map(|l| l.total_priority).sum();
        let replay_size: u64 = self.links.iter().map(|l| l.size).sum();
        let mut min_priority = self.links.iter().map(|l| l.min_priority).fold(f64::INFINITY, f64::min);
        let mut drawn_priorities = Vec::new();
        for (shard, batch, payload) in replies {
            if out.frames.is_empty() {
                out.frames = vec![Vec::new(); payload.len()];
            }
            for (dst, src) in out.frames.iter_mut().zip(&payload) {
                dst.extend_from_slice(src);
            }
            out.count += batch.count as usize;
            out.shards
                .extend(std::iter::repeat_n(shard as u32, batch.count as usize));
            out.keys.extend(&batch.keys);
            drawn_priorities.extend(&batch.priorities);
            out.times_sampled.extend(&batch.times_sampled);
            out.actor_ids.extend(&batch.actor_ids);
            out.policy_versions.extend(&batch.policy_versions);
            out.episodes.extend(batch.episodes);
        }
        // Items retired by this very sample are no longer in the totals.
        let denominator = grand_total + f64::EPSILON;
        for &p in &drawn_priorities {
            min_priority = min_priority.min(p);
        }
        out.probabilities = drawn_priorities
            .iter()
            .map(|p| {
                if grand_total > 0.0 {
                    p / denominator
                } else {
                    1.0 / out.count.max(1) as f64
                }
            })
            .collect();
        let min_probability = if grand_total > 0.0 && min_priority.is_finite() {
            min_priority / denominator
        } else {
            out.probabilities.iter().copied().fold(f64::INFINITY, f64::min)
        };
        importance_weights(&out.probabilities, min_probability, beta, &mut out.weights);
        out.replay_size = replay_size;
        out
    }

    /// Sends new priorities for sampled items (fire and forget; the shard
    /// counts updates for items it no longer holds as stale).
    pub fn update_priorities(&mut self, shards: &[u32], keys: &[u64], priorities: &[f64]) -> Result<(), ClientError> {
        if shards.len() != keys.len() || keys.len() != priorities.len() {
            return Err(ClientError::Usage(format!(
                "{} shards, {} keys, {} priorities",
                shards.len(),
                keys.len(),
                priorities.len()
            )));
        }
        if let Some(&s) = shards.iter().find(|&&s| s as usize >= self.links.len()) {
            return Err(ClientError::Usage(format!("unknown shard {s}")));
        }
        for shard in 0..self.links.len() {
            let mut update = PriorityUpdate {
                incarnation: self.links[shard].incarnation,
                keys: Vec::new(),
                priorities: Vec::new(),
            };
            for ((&s, &k), &p) in shards.iter().zip(keys).zip(priorities) {
                if s as usize == shard {
                    update.keys.push(k);
                    update.priorities.push(p);
                }
            }
            if !update.keys.is_empty() {
                self.send(shard, MessageKind::Priorities, &update)?;
            }
        }
        Ok(())
    }

    /// Asks one shard for its statistics.
    pub fn stats(&mut self, shard: usize, timeout: Duration) -> Result<ShardStats, ClientError> {
        if shard >= self.links.len() {
            return Err(ClientError::Usage(format!("unknown shard {shard}")));
        }
        let seq = self.send(shard, MessageKind::GetStats, &GetStats {})?;
        let deadline = Instant::now() + timeout;
        Ok(self
            .recv::<ShardStats>(shard, MessageKind::Stats, seq, deadline, "stats", timeout)?
            .0)
    }

    /// The unroll layout the shards announced (after `hello`).
    pub fn layout(&self) -> Option<UnrollLayout> {
        self.links.first().and_then(|l| l.layout.clone())
    }
}
