//! `WeightPublisher`: the learner's side of the weight broadcast.
//!
//! One I/O thread owns two sockets: a PUB socket on which every new version
//! is broadcast to all actor hosts, and a ROUTER socket that answers
//! `get_weights` with the latest version at once (so a host that joins late,
//! or missed a broadcast — PUB/SUB drops messages for slow or new
//! subscribers — never waits for the next one). The two streams use
//! separate sender ids, so each one's sequence numbers increase on its own.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use cml_proto::envelope::Opener;
use cml_proto::transport::{bind_router, recv_frames};
use cml_proto::{GetWeights, MessageKind, RejectLog, Sealer, SharedKey, SocketOptions, Weights};
use crossbeam_channel::{Receiver, Sender};

/// One published version: (version, safetensors bytes).
type Published = (u64, Arc<Vec<u8>>);

/// Errors starting the publisher.
#[derive(Debug, thiserror::Error)]
pub enum BroadcastError {
    #[error("weight broadcast: {0}")]
    Proto(#[from] cml_proto::ProtoError),
    #[error("weight broadcast: {endpoint}: {source}")]
    Socket {
        endpoint: String,
        #[source]
        source: zmq::Error,
    },
}

/// Broadcasts versioned weights to actor hosts and answers their requests.
pub struct WeightPublisher {
    tx: Option<Sender<Published>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl WeightPublisher {
    /// Binds the PUB socket at `publish_endpoint` and the ROUTER at
    /// `request_endpoint`, and starts the I/O thread.
    pub fn start(
        key: &SharedKey,
        options: &SocketOptions,
        publish_endpoint: &str,
        request_endpoint: &str,
    ) -> Result<WeightPublisher, BroadcastError> {
        let ctx = zmq::Context::new();
        let publisher = ctx.socket(zmq::PUB).map_err(|source| BroadcastError::Socket {
            endpoint: publish_endpoint.into(),
            source,
        })?;
        let socket_err = |endpoint: &str| {
            let endpoint = endpoint.to_string();
            move |source| BroadcastError::Socket { endpoint, source }
        };
        publisher
            .set_sndhwm(options.send_hwm)
            .map_err(socket_err(publish_endpoint))?;
        publisher
            .set_linger(options.linger_ms)
            .map_err(socket_err(publish_endpoint))?;
        publisher.bind(publish_endpoint).map_err(socket_err(publish_endpoint))?;
        let router = bind_router(&ctx, options, request_endpoint)?;
        let mut broadcast_sealer = Sealer::with_random_sender(key.clone())?;
        let mut reply_sealer = Sealer::with_random_sender(key.clone())?;
        // This process's publisher id (see `Weights::publisher`): random, as
        // the sealers' sender ids are.
        let publisher_id = broadcast_sealer.sender();
        let mut opener = Opener::new(key.clone(), options.max_message_bytes);
        let (tx, rx): (Sender<Published>, Receiver<Published>) = crossbeam_channel::unbounded();
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = Arc::clone(&stop);
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
                    // Publish only the newest of what queued up.
                    let mut newest = None;
                    while let Ok(update) = rx.try_recv() {
                        newest = Some(update);
                    }
                    if let Some(update) = newest {
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
                    match recv_frames(&router, &mut frames, 20) {
                        Ok(true) => {}
                        Ok(false) => continue,
                        Err(e) => {
                            tracing::error!("weight request socket failed: {e}");
                            return;
                        }
                    }
                    let Some((routing_id, message)) = frames.split_first() else {
                        continue;
                    };
                    match opener.open(message) {
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
                        Ok(opened) => rejects.record(&cml_proto::Rejection::new(
                            cml_proto::RejectReason::Unexpected,
                            format!("the weight server does not accept {:?}", opened.kind.as_str()),
                        )),
                        Err(r) => rejects.record(&r),
                    }
                }
            })
            .map_err(|e| BroadcastError::Proto(cml_proto::ProtoError::Socket(format!("spawning: {e}"))))?;
        Ok(WeightPublisher {
            tx: Some(tx),
            stop,
            thread: Some(thread),
        })
    }

    /// Broadcasts `bytes` (safetensors) as `version`; versions should
    /// increase (actor hosts ignore anything not newer than what they have).
    pub fn publish(&self, version: u64, bytes: Vec<u8>) {
        if let Some(tx) = &self.tx {
            let _ = tx.send((version, Arc::new(bytes)));
        }
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
