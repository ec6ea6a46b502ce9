//! ZeroMQ sockets with the options every role sets.
//!
//! libzmq sockets are blocking and not thread-safe: one thread owns each
//! socket. Every socket gets `ZMQ_MAXMSGSIZE` (a peer announcing a larger
//! frame is disconnected before anything is allocated), send/receive
//! high-water marks (memory per peer stays bounded), heartbeats (a dead peer
//! is noticed) and a bounded linger (closing never hangs).

use crate::ProtoError;

/// Options applied to every socket.
#[derive(Clone, Debug, PartialEq)]
pub struct SocketOptions {
    /// Largest frame accepted (`ZMQ_MAXMSGSIZE`), bytes.
    pub max_message_bytes: usize,
    /// `ZMQ_SNDHWM` / `ZMQ_RCVHWM`, messages per peer.
    pub send_hwm: i32,
    pub recv_hwm: i32,
    /// `ZMQ_HEARTBEAT_IVL` / `ZMQ_HEARTBEAT_TIMEOUT`, milliseconds.
    pub heartbeat_interval_ms: i32,
    pub heartbeat_timeout_ms: i32,
    /// `ZMQ_LINGER`, milliseconds.
    pub linger_ms: i32,
    /// `ZMQ_RECONNECT_IVL` / `ZMQ_RECONNECT_IVL_MAX`, milliseconds.
    pub reconnect_ms: i32,
    pub reconnect_max_ms: i32,
}

impl Default for SocketOptions {
    fn default() -> SocketOptions {
        SocketOptions {
            max_message_bytes: 64 << 20,
            send_hwm: 1000,
            recv_hwm: 1000,
            heartbeat_interval_ms: 1000,
            heartbeat_timeout_ms: 5000,
            linger_ms: 200,
            reconnect_ms: 100,
            reconnect_max_ms: 2000,
        }
    }
}

fn zmq_err<'a>(what: &str, endpoint: &'a str) -> impl Fn(zmq::Error) -> ProtoError + 'a {
    let what = what.to_string();
    move |e| ProtoError::Socket(format!("{what} {endpoint}: {e}"))
}

fn apply(socket: &zmq::Socket, options: &SocketOptions, endpoint: &str) -> Result<(), ProtoError> {
    let err = zmq_err("setting socket options for", endpoint);
    socket
        .set_maxmsgsize(i64::try_from(options.max_message_bytes).unwrap_or(i64::MAX))
        .map_err(&err)?;
    socket.set_sndhwm(options.send_hwm).map_err(&err)?;
    socket.set_rcvhwm(options.recv_hwm).map_err(&err)?;
    socket.set_heartbeat_ivl(options.heartbeat_interval_ms).map_err(&err)?;
    socket
        .set_heartbeat_timeout(options.heartbeat_timeout_ms)
        .map_err(&err)?;
    socket.set_linger(options.linger_ms).map_err(&err)?;
    socket.set_reconnect_ivl(options.reconnect_ms).map_err(&err)?;
    socket.set_reconnect_ivl_max(options.reconnect_max_ms).map_err(&err)?;
    Ok(())
}

/// A ROUTER socket bound to `endpoint` (a shard's or the learner's server
/// socket). Sends to a vanished peer fail (`ZMQ_ROUTER_MANDATORY`) instead of
/// vanishing silently.
pub fn bind_router(ctx: &zmq::Context, options: &SocketOptions, endpoint: &str) -> Result<zmq::Socket, ProtoError> {
    let socket = ctx
        .socket(zmq::ROUTER)
        .map_err(zmq_err("creating ROUTER for", endpoint))?;
    apply(&socket, options, endpoint)?;
    socket
        .set_router_mandatory(true)
        .map_err(zmq_err("setting ROUTER_MANDATORY for", endpoint))?;
    socket.bind(endpoint).map_err(zmq_err("binding", endpoint))?;
    Ok(socket)
}

/// A DEALER socket connected to `endpoint` (a client of a shard). libzmq
/// reconnects it by itself when the peer restarts.
pub fn connect_dealer(ctx: &zmq::Context, options: &SocketOptions, endpoint: &str) -> Result<zmq::Socket, ProtoError> {
    let socket = ctx
        .socket(zmq::DEALER)
        .map_err(zmq_err("creating DEALER for", endpoint))?;
    apply(&socket, options, endpoint)?;
    socket.connect(endpoint).map_err(zmq_err("connecting to", endpoint))?;
    Ok(socket)
}

/// Receives one multipart message into `frames` (cleared first). Returns
/// `Ok(false)` when nothing arrived within `timeout_ms` (-1 waits forever,
/// 0 does not wait) or a signal interrupted the wait.
pub fn recv_frames(socket: &zmq::Socket, frames: &mut Vec<zmq::Message>, timeout_ms: i64) -> Result<bool, zmq::Error> {
    frames.clear();
    if timeout_ms >= 0 {
        let mut items = [socket.as_poll_item(zmq::POLLIN)];
        match zmq::poll(&mut items, timeout_ms) {
            Ok(0) | Err(zmq::Error::EINTR) => return Ok(false),
            Ok(_) => {}
            Err(e) => return Err(e),
        }
    }
    loop {
        let mut msg = zmq::Message::new();
        socket.recv(&mut msg, 0)?;
        frames.push(msg);
        if !socket.get_rcvmore()? {
            return Ok(true);
        }
    }
}

/// Sends frames as one multipart message.
pub fn send_frames(socket: &zmq::Socket, frames: Vec<Vec<u8>>, flags: i32) -> Result<(), zmq::Error> {
    socket.send_multipart(frames, flags)
}
