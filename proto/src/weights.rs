//! The weight protocol, both halves side by side: [`WeightPublisher`] (the
//! learner: a PUB socket broadcasting every published version, a ROUTER
//! answering `get_weights` with the latest) and [`WeightFollower`] (an actor
//! host: SUB for the broadcasts, DEALER for requests). docs/PROTOCOL.md
//! §6.11 describes the messages.
//!
//! The publisher's I/O thread owns its two sockets; `publish` hands it a
//! version through a channel and wakes it over an inproc socket, so each
//! version is broadcast at once and none is coalesced. PUB/SUB still drops
//! messages for a subscriber that is slow or not yet connected, which is
//! why `get_weights` exists: a host that joins late never waits for the
//! next broadcast. The two streams use separate sender ids, so each one's
//! sequence numbers increase on its own.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use crate::envelope::Opener;
use crate::host_table::{HostTable, HOST_STATUS_INTERVAL};
use crate::transport::{bind_router, connect_dealer, recv_frames};
use crate::{GetWeights, HostStatus, MessageKind, ProtoError, RejectLog, Sealer, SharedKey, SocketOptions, Weights};

/// One published version: (version, safetensors bytes).
type Published = (u64, Arc<Vec<u8>>);

/// Errors starting the publisher or the follower.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("weights: {0}")]
    Proto(#[from] ProtoError),
    #[error("weights: {endpoint}: {source}")]
    Socket {
        endpoint: String,
        #[source]
        source: zmq::Error,
    },
}

fn socket_err(endpoint: &str) -> impl Fn(zmq::Error) -> WeightsError {
    let endpoint = endpoint.to_string();
    move |source| WeightsError::Socket {
        endpoint: endpoint.clone(),
        source,
    }
}

/// Each publisher's inproc wake-up endpoint is unique in the process.
static NEXT_WAKE: AtomicU64 = AtomicU64::new(0);

/// Broadcasts versioned weights to actor hosts and answers their requests.
pub struct WeightPublisher {
    tx: Option<Sender<Published>>,
    /// Wakes the I/O thread (one empty message per publish).
    wake: zmq::Socket,
    /// Versions handed to the I/O thread.
    published: u64,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    hosts: HostTable,
}

impl WeightPublisher {
    /// Binds the PUB socket at `publish_endpoint` and the ROUTER at
    /// `request_endpoint`, and starts the I/O thread.
    pub fn start(
        key: &SharedKey,
        options: &SocketOptions,
        publish_endpoint: &str,
        request_endpoint: &str,
    ) -> Result<WeightPublisher, WeightsError> {
        let ctx = zmq::Context::new();
        let publisher = ctx.socket(zmq::PUB).map_err(socket_err(publish_endpoint))?;
        publisher
            .set_sndhwm(options.send_hwm)
            .map_err(socket_err(publish_endpoint))?;
        publisher
            .set_linger(options.linger_ms)
            .map_err(socket_err(publish_endpoint))?;
        publisher.bind(publish_endpoint).map_err(socket_err(publish_endpoint))?;
        let router = bind_router(&ctx, options, request_endpoint)?;
        let wake_endpoint = format!("inproc://weights-wake-{}", NEXT_WAKE.fetch_add(1, Ordering::Relaxed));
        let wake_rx = ctx.socket(zmq::PULL).map_err(socket_err(&wake_endpoint))?;
        wake_rx.bind(&wake_endpoint).map_err(socket_err(&wake_endpoint))?;
        let wake = ctx.socket(zmq::PUSH).map_err(socket_err(&wake_endpoint))?;
        wake.connect(&wake_endpoint).map_err(socket_err(&wake_endpoint))?;
        let mut broadcast_sealer = Sealer::with_random_sender(key.clone())?;
        let mut reply_sealer = Sealer::with_random_sender(key.clone())?;
        // This process's publisher id (see `Weights::publisher`): random, as
        // the sealers' sender ids are.
        let publisher_id = broadcast_sealer.sender();
        let mut opener = Opener::new(key.clone(), options.max_message_bytes);
        let (tx, rx): (Sender<Published>, Receiver<Published>) = crossbeam_channel::unbounded();
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = Arc::clone(&stop);
        let hosts = HostTable::new();
        let thread_hosts = hosts.clone();
        let thread = std::thread::Builder::new()
            .name("weights-io".into())
            .spawn(move || {
                let _ctx = ctx;
                let mut latest: Option<Published> = None;
                let mut frames = Vec::new();
                let mut rejects = RejectLog::new("learner");
                let seal = |sealer: &mut Sealer, latest: &Option<Published>| {
                    let (version, bytes) = match latest {
                        Some((v, b)) => (*v, b.as_ref().clone()),
                        None => (0, Vec::new()),
                    };
                    let body = Weights {
                        version,
                        format: "safetensors".into(),
                        publisher: publisher_id,
                    };
                    sealer.seal(MessageKind::Weights, &body, vec![bytes])
                };
                while !thread_stop.load(Ordering::Relaxed) {
                    // Every published version goes out, in order.
                    while let Ok(update) = rx.try_recv() {
                        latest = Some(update);
                        match seal(&mut broadcast_sealer, &latest) {
                            Ok(message) => {
                                if let Err(e) = publisher.send_multipart(message, zmq::DONTWAIT) {
                                    tracing::warn!("weight broadcast not sent: {e}");
                                }
                            }
                            Err(e) => tracing::error!("cannot encode weights: {e}"),
                        }
                    }
                    let mut items = [router.as_poll_item(zmq::POLLIN), wake_rx.as_poll_item(zmq::POLLIN)];
                    if let Err(e) = zmq::poll(&mut items, 100) {
                        tracing::error!("weight sockets failed: {e}");
                        return;
                    }
                    let (request_ready, woken) = (items[0].is_readable(), items[1].is_readable());
                    if woken {
                        while wake_rx.recv_bytes(zmq::DONTWAIT).is_ok() {}
                    }
                    if !request_ready {
                        continue;
                    }
                    match recv_frames(&router, &mut frames, 0) {
                        Ok(true) => {}
                        Ok(false) => continue,
                        Err(e) => {
                            tracing::error!("weight request socket failed: {e}");
                            return;
                        }
                    }
                    // Where the request came from (for the host table): a
                    // frame from the wire carries it, the ROUTER's routing
                    // id does not.
                    let address = frames
                        .get_mut(1)
                        .and_then(|f| f.gets("Peer-Address"))
                        .map(str::to_string)
                        .unwrap_or_default();
                    let Some((routing_id, message)) = frames.split_first() else {
                        continue;
                    };
                    match opener.open(message) {
                        Ok(opened) if opened.kind == MessageKind::HostStatus => match opened.body::<HostStatus>() {
                            Ok(status) => thread_hosts.record(opened.sender, &address, &status, Instant::now()),
                            Err(r) => rejects.record(&r),
                        },
                        Ok(opened) if opened.kind == MessageKind::GetWeights => {
                            if let Err(r) = opened.body::<GetWeights>() {
                                rejects.record(&r);
                                continue;
                            }
                            let routing_id = routing_id.to_vec();
                            match seal(&mut reply_sealer, &latest) {
                                Ok(reply) => {
                                    let mut parts = vec![routing_id];
                                    parts.extend(reply);
                                    if let Err(e) = router.send_multipart(parts, zmq::DONTWAIT) {
                                        tracing::debug!("weights reply not delivered: {e}");
                                    }
                                }
                                Err(e) => tracing::error!("cannot encode weights: {e}"),
                            }
                        }
                        Ok(opened) => rejects.record(&crate::Rejection::new(
                            crate::RejectReason::Unexpected,
                            format!("the weight server does not accept {:?}", opened.kind.as_str()),
                        )),
                        Err(r) => rejects.record(&r),
                    }
                }
            })
            .map_err(|e| WeightsError::Proto(ProtoError::Socket(format!("spawning: {e}"))))?;
        Ok(WeightPublisher {
            tx: Some(tx),
            wake,
            published: 0,
            stop,
            thread: Some(thread),
            hosts,
        })
    }

    /// The actor hosts that reported to this learner (shared, live).
    pub fn hosts(&self) -> HostTable {
        self.hosts.clone()
    }

    /// Broadcasts `bytes` (safetensors) as `version`; versions should
    /// increase (actor hosts ignore anything not newer than what they have).
    pub fn publish(&mut self, version: u64, bytes: Vec<u8>) {
        if let Some(tx) = &self.tx {
            if tx.send((version, Arc::new(bytes))).is_ok() {
                self.published += 1;
                let _ = self.wake.send(&[][..], zmq::DONTWAIT);
            }
        }
    }

    /// How many versions were handed to the broadcast so far.
    pub fn published(&self) -> u64 {
        self.published
    }
}

impl Drop for WeightPublisher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.tx = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Follows the learner's weights: SUB for broadcasts, DEALER for requests.
pub struct WeightFollower {
    sub: zmq::Socket,
    request: zmq::Socket,
    sealer: Sealer,
    opener: Opener,
    rejects: RejectLog,
    frames: Vec<zmq::Message>,
    last_request: Option<Instant>,
    last_status: Option<Instant>,
    /// The publisher id (`Weights::publisher`) of the learner process
    /// whose weights this host follows.
    publisher: Option<u64>,
    /// Publisher ids of replaced learner processes: late messages from them
    /// are ignored. The newest few are kept.
    retired: VecDeque<u64>,
    /// A new learner process was seen and none of its weights taken yet:
    /// the caller's version does not count.
    new_publisher: bool,
}

impl WeightFollower {
    /// Subscribes to `publish_endpoint` (the learner's PUB) and connects a
    /// DEALER to `request_endpoint` (its ROUTER).
    pub fn connect(
        ctx: &zmq::Context,
        key: &SharedKey,
        options: &SocketOptions,
        publish_endpoint: &str,
        request_endpoint: &str,
    ) -> Result<WeightFollower, WeightsError> {
        let sub = ctx.socket(zmq::SUB).map_err(socket_err(publish_endpoint))?;
        let setup = |s: &zmq::Socket| -> Result<(), zmq::Error> {
            s.set_maxmsgsize(options.max_message_bytes as i64)?;
            s.set_rcvhwm(options.recv_hwm)?;
            s.set_linger(0)?;
            s.set_reconnect_ivl(options.reconnect_ms)?;
            s.set_reconnect_ivl_max(options.reconnect_max_ms)?;
            s.set_subscribe(b"")?;
            s.connect(publish_endpoint)
        };
        setup(&sub).map_err(socket_err(publish_endpoint))?;
        let request = connect_dealer(ctx, options, request_endpoint)?;
        Ok(WeightFollower {
            sub,
            request,
            sealer: Sealer::with_random_sender(key.clone())?,
            opener: Opener::new(key.clone(), options.max_message_bytes),
            rejects: RejectLog::new("actor"),
            frames: Vec::new(),
            last_request: None,
            last_status: None,
            publisher: None,
            retired: VecDeque::new(),
            new_publisher: false,
        })
    }

    /// Asks for the current weights (at most once per `every`).
    pub fn request(&mut self, every: Duration) -> Result<(), ProtoError> {
        if self.last_request.is_some_and(|t| t.elapsed() < every) {
            return Ok(());
        }
        let frames = self.sealer.seal(MessageKind::GetWeights, &GetWeights {}, Vec::new())?;
        // DONTWAIT: with the learner away the request waits in the queue.
        let _ = self.request.send_multipart(frames, zmq::DONTWAIT);
        self.last_request = Some(Instant::now());
        Ok(())
    }

    /// Sends `status` to the learner (fire and forget), at most once per
    /// [`HOST_STATUS_INTERVAL`] unless it is the last one (`leaving`).
    /// With the learner away it waits in ZeroMQ's queue, or is dropped
    /// when that is full.
    pub fn send_status(&mut self, status: &HostStatus) -> Result<(), ProtoError> {
        if !status.leaving && self.last_status.is_some_and(|t| t.elapsed() < HOST_STATUS_INTERVAL) {
            return Ok(());
        }
        let frames = self.sealer.seal(MessageKind::HostStatus, status, Vec::new())?;
        let _ = self.request.send_multipart(frames, zmq::DONTWAIT);
        self.last_status = Some(Instant::now());
        Ok(())
    }

    /// The newest authenticated weights that arrived: newer than `have`, or
    /// any version from a learner process that replaced the one before.
    pub fn poll(&mut self, have: u64) -> Option<(u64, Vec<u8>)> {
        let mut newest: Option<(u64, Vec<u8>)> = None;
        let mut have = if self.new_publisher { 0 } else { have };
        for which in 0..2 {
            loop {
                let socket = if which == 0 { &self.sub } else { &self.request };
                match recv_frames(socket, &mut self.frames, 0) {
                    Ok(true) => {}
                    Ok(false) | Err(_) => break,
                }
                let opened = match self.opener.open(&self.frames) {
                    Ok(o) => o,
                    Err(r) => {
                        self.rejects.record(&r);
                        continue;
                    }
                };
                if opened.kind != MessageKind::Weights {
                    continue;
                }
                let weights = match opened.body::<Weights>() {
                    Ok(w) => w,
                    Err(r) => {
                        self.rejects.record(&r);
                        continue;
                    }
                };
                if weights.format != "safetensors" || opened.payload.len() != 1 {
                    continue;
                }
                if self.retired.contains(&weights.publisher) {
                    continue;
                }
                let previous = *self.publisher.get_or_insert(weights.publisher);
                if previous != weights.publisher {
                    // A new learner process (a restart, or a resume from an
                    // older checkpoint): follow its versions from scratch.
                    tracing::info!(
                        version = weights.version,
                        "a new learner process: following its versions"
                    );
                    if self.retired.len() == 16 {
                        self.retired.pop_front();
                    }
                    self.retired.push_back(previous);
                    self.publisher = Some(weights.publisher);
                    have = 0;
                    newest = None;
                    self.new_publisher = true;
                }
                let best = newest.as_ref().map_or(have, |n| n.0);
                if weights.version > best {
                    newest = Some((weights.version, opened.payload[0].to_vec()));
                }
            }
        }
        if newest.is_some() {
            self.new_publisher = false;
        }
        newest
    }
}
