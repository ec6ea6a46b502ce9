//! The cml-rl wire protocol: the only crate that knows the bytes on the wire.
//!
//! Every message between roles is a ZeroMQ multipart message: a MessagePack
//! header (`v`, `type`, `sender`, `seq`, `body`), raw little-endian tensor
//! frames, and a 32-byte keyed BLAKE3 MAC over all of them. docs/PROTOCOL.md
//! describes it completely; this crate implements it:
//!
//! - [`envelope`]: [`Sealer`] (number and authenticate outgoing messages) and
//!   [`Opener`] (check size, MAC, version, type and sequence of incoming ones).
//! - [`messages`]: every message type and its body.
//! - [`unroll`]: the unroll tensors, their layout and value checks.
//! - [`key`]: the shared key and its file.
//! - [`transport`]: ZeroMQ sockets with size limits, high-water marks,
//!   heartbeats.
//! - [`reject`]: refusal reasons, counters and rate-limited logging.
//! - [`weights`]: the weight protocol's two halves, publisher and follower.
//! - [`host_table`]: the learner's table of actor hosts, from their
//!   `host_status` messages.

pub mod config;
pub mod envelope;
pub mod host_table;
pub mod key;
pub mod messages;
pub mod reject;
pub mod tensor;
pub mod transport;
pub mod unroll;
pub mod weights;

pub use envelope::{mac, Opened, Opener, Sealer, MAC_LEN, MAX_FRAMES};
pub use key::SharedKey;
pub use messages::*;
pub use reject::{RejectLog, RejectReason, Rejection};
pub use tensor::{DType, TensorSpec};
pub use transport::SocketOptions;
pub use unroll::{ActionLayout, UnrollLayout};

/// The protocol version every header carries in `v`.
pub const PROTOCOL_VERSION: u16 = 2;

/// Errors of this crate's own operations (not refusals of incoming messages,
/// which are [`Rejection`]s).
#[derive(Debug, thiserror::Error)]
pub enum ProtoError {
    #[error("key: {0}")]
    Key(String),
    #[error("encoding a message: {0}")]
    Encode(String),
    #[error("socket: {0}")]
    Socket(String),
}

/// Anything that holds one frame's bytes: `Vec<u8>`, `&[u8]`, a received
/// `zmq::Message`.
pub trait Frame {
    fn bytes(&self) -> &[u8];
}

impl Frame for Vec<u8> {
    fn bytes(&self) -> &[u8] {
        self
    }
}

impl Frame for &[u8] {
    fn bytes(&self) -> &[u8] {
        self
    }
}

impl Frame for zmq::Message {
    fn bytes(&self) -> &[u8] {
        self
    }
}
