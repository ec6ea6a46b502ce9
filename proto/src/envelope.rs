//! Sealing and opening messages: the envelope every message shares.
//!
//! A message is a ZeroMQ multipart message of at least two frames:
//!
//! ```text
//! frame 0          header: a MessagePack map {v, type, sender, seq, body}
//! frames 1..n-2    payload: raw little-endian tensor bytes (may be none)
//! frame n-1        MAC: 32 bytes, keyed BLAKE3 over frames 0..n-2 (see `mac`)
//! ```
//!
//! [`Opener::open`] checks, in this order: frame count and total size, the MAC,
//! the header's MessagePack, the protocol version, the message type, and the
//! sequence number (strictly increasing per sender: a replayed or reordered
//! message is refused). Only then does the caller decode the body.

use std::collections::HashMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::key::SharedKey;
use crate::{Frame, MessageKind, RejectReason, Rejection, PROTOCOL_VERSION};

/// Length of the MAC frame.
pub const MAC_LEN: usize = 32;

/// Most frames a message may have (header + payload + MAC).
pub const MAX_FRAMES: usize = 64;

/// The MAC of a message: BLAKE3 in keyed mode over
/// `u32_le(frame_count) ‖ for each frame: u64_le(len) ‖ bytes`, where the
/// frames are every frame before the MAC (header first). The length prefixes
/// make the split between frames part of what is authenticated.
pub fn mac<F: Frame>(key: &SharedKey, frames: &[F]) -> [u8; MAC_LEN] {
    let mut hasher = blake3::Hasher::new_keyed(key.as_bytes());
    hasher.update(&(frames.len() as u32).to_le_bytes());
    for frame in frames {
        let frame = frame.bytes();
        hasher.update(&(frame.len() as u64).to_le_bytes());
        hasher.update(frame);
    }
    *hasher.finalize().as_bytes()
}

#[derive(Serialize)]
struct HeaderOut<'a, B> {
    v: u16,
    #[serde(rename = "type")]
    kind: &'a str,
    sender: u64,
    seq: u64,
    body: &'a B,
}

#[derive(Deserialize)]
struct VersionOnly {
    v: u16,
}

#[derive(Deserialize)]
struct HeaderIn {
    #[serde(rename = "type")]
    kind: String,
    sender: u64,
    seq: u64,
}

#[derive(Deserialize)]
struct BodyOnly<B> {
    body: B,
}

/// Seals outgoing messages for one sender: numbers them and appends the MAC.
#[derive(Debug)]
pub struct Sealer {
    key: SharedKey,
    sender: u64,
    next_seq: u64,
}

impl Sealer {
    /// A sealer with the given sender id; sequence numbers start at 1.
    pub fn new(key: SharedKey, sender: u64) -> Sealer {
        Sealer {
            key,
            sender,
            next_seq: 1,
        }
    }

    /// A sealer with a random sender id (one per process incarnation, so a
    /// restarted process never collides with its earlier sequence numbers).
    pub fn with_random_sender(key: SharedKey) -> Result<Sealer, crate::ProtoError> {
        let mut bytes = [0u8; 8];
        getrandom::fill(&mut bytes).map_err(|e| crate::ProtoError::Key(format!("no OS randomness: {e}")))?;
        Ok(Sealer::new(key, u64::from_le_bytes(bytes)))
    }

    pub fn sender(&self) -> u64 {
        self.sender
    }

    /// The sequence number the next sealed message will carry.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Builds the frames `[header, payload..., mac]` of one message.
    pub fn seal<B: Serialize>(
        &mut self,
        kind: MessageKind,
        body: &B,
        payload: Vec<Vec<u8>>,
    ) -> Result<Vec<Vec<u8>>, crate::ProtoError> {
        let seq = self.next_seq;
        let header = rmp_serde::to_vec_named(&HeaderOut {
            v: PROTOCOL_VERSION,
            kind: kind.as_str(),
            sender: self.sender,
            seq,
            body,
        })
        .map_err(|e| crate::ProtoError::Encode(e.to_string()))?;
        let mut frames = Vec::with_capacity(payload.len() + 2);
        frames.push(header);
        frames.extend(payload);
        let tag = mac(&self.key, &frames);
        frames.push(tag.to_vec());
        self.next_seq += 1;
        Ok(frames)
    }
}

/// An authenticated message whose header has been checked.
#[derive(Debug)]
pub struct Opened<'a, F> {
    pub kind: MessageKind,
    pub sender: u64,
    pub seq: u64,
    header: &'a [u8],
    /// The payload frames (between the header and the MAC).
    pub payload: &'a [F],
}

impl<F: Frame> Opened<'_, F> {
    /// Decodes the header's `body` as `B`.
    pub fn body<B: DeserializeOwned>(&self) -> Result<B, Rejection> {
        rmp_serde::from_slice::<BodyOnly<B>>(self.header)
            .map(|b| b.body)
            .map_err(|e| Rejection::new(RejectReason::BadBody, format!("{} body: {e}", self.kind.as_str())))
    }
}

/// Opens incoming messages: authenticates them and refuses replays.
#[derive(Debug)]
pub struct Opener {
    key: SharedKey,
    max_message_bytes: usize,
    /// Highest sequence number seen per sender.
    last_seq: HashMap<u64, u64>,
}

impl Opener {
    pub fn new(key: SharedKey, max_message_bytes: usize) -> Opener {
        Opener {
            key,
            max_message_bytes,
            last_seq: HashMap::new(),
        }
    }

    /// Number of senders whose sequence numbers are remembered.
    pub fn known_senders(&self) -> usize {
        self.last_seq.len()
    }

    /// Checks one message (frames as received, routing frames removed).
    pub fn open<'a, F: Frame>(&mut self, frames: &'a [F]) -> Result<Opened<'a, F>, Rejection> {
        if frames.len() < 2 {
            return Err(Rejection::new(
                RejectReason::Malformed,
                format!("{} frame(s); a message has at least a header and a MAC", frames.len()),
            ));
        }
        if frames.len() > MAX_FRAMES {
            return Err(Rejection::new(
                RejectReason::Malformed,
                format!("{} frames; at most {MAX_FRAMES}", frames.len()),
            ));
        }
        let total: usize = frames.iter().map(|f| f.bytes().len()).sum();
        if total > self.max_message_bytes {
            return Err(Rejection::new(
                RejectReason::Oversize,
                format!("{total} bytes; at most {}", self.max_message_bytes),
            ));
        }
        let (body_frames, tag) = frames.split_at(frames.len() - 1);
        let tag = tag[0].bytes();
        if tag.len() != MAC_LEN {
            return Err(Rejection::new(
                RejectReason::BadMac,
                format!("last frame has {} bytes; a MAC has {MAC_LEN}", tag.len()),
            ));
        }
        let expected = blake3::Hash::from_bytes(mac(&self.key, body_frames));
        let mut received = [0u8; MAC_LEN];
        received.copy_from_slice(tag);
        // blake3::Hash compares in constant time.
        if expected != blake3::Hash::from_bytes(received) {
            return Err(Rejection::new(RejectReason::BadMac, "MAC does not match".to_string()));
        }
        let header = body_frames[0].bytes();
        let version: VersionOnly = rmp_serde::from_slice(header)
            .map_err(|e| Rejection::new(RejectReason::Malformed, format!("header: {e}")))?;
        if version.v != PROTOCOL_VERSION {
            return Err(Rejection::new(
                RejectReason::Version,
                format!("protocol version {}; this build speaks {PROTOCOL_VERSION}", version.v),
            ));
        }
        let head: HeaderIn = rmp_serde::from_slice(header)
            .map_err(|e| Rejection::new(RejectReason::Malformed, format!("header: {e}")))?;
        let kind = MessageKind::parse(&head.kind)
            .ok_or_else(|| Rejection::new(RejectReason::UnknownType, format!("message type {:?}", head.kind)))?;
        let last = self.last_seq.entry(head.sender).or_insert(0);
        if head.seq <= *last {
            return Err(Rejection::new(
                RejectReason::Replayed,
                format!(
                    "sender {:016x}: seq {} after seq {} (replayed or reordered)",
                    head.sender, head.seq, *last
                ),
            ));
        }
        *last = head.seq;
        Ok(Opened {
            kind,
            sender: head.sender,
            seq: head.seq,
            header,
            payload: &body_frames[1..],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::SampleRequest;

    fn key(b: u8) -> SharedKey {
        SharedKey::from_bytes([b; 32])
    }

    #[test]
    fn seal_then_open_round_trips() {
        let mut sealer = Sealer::new(key(7), 42);
        let mut opener = Opener::new(key(7), 1 << 20);
        let body = SampleRequest {
            request_id: 9,
            count: 32,
        };
        let frames = sealer.seal(MessageKind::Sample, &body, vec![vec![1, 2, 3]]).unwrap();
        assert_eq!(frames.len(), 3);
        let opened = opener.open(&frames).unwrap();
        assert_eq!((opened.kind, opened.sender, opened.seq), (MessageKind::Sample, 42, 1));
        assert_eq!(opened.payload.len(), 1);
        assert_eq!(opened.body::<SampleRequest>().unwrap(), body);
    }

    #[test]
    fn header_is_a_plain_msgpack_map() {
        let mut sealer = Sealer::new(key(1), 5);
        let frames = sealer
            .seal(
                MessageKind::Sample,
                &SampleRequest {
                    request_id: 1,
                    count: 2,
                },
                vec![],
            )
            .unwrap();
        // fixmap with 5 entries, first key "v".
        assert_eq!(frames[0][0], 0x85);
        assert_eq!(&frames[0][1..3], &[0xa1, b'v']);
    }

    #[test]
    fn rejects_each_defect_with_its_reason() {
        let mut sealer = Sealer::new(key(7), 42);
        let body = SampleRequest {
            request_id: 9,
            count: 32,
        };
        let good = sealer.seal(MessageKind::Sample, &body, vec![vec![0; 16]]).unwrap();
        let reason = |frames: &[Vec<u8>]| Opener::new(key(7), 1024).open(frames).unwrap_err().reason;

        assert_eq!(reason(&good[..1]), RejectReason::Malformed);
        assert_eq!(reason(&vec![vec![0u8; 1]; MAX_FRAMES + 1]), RejectReason::Malformed);
        let mut big = good.clone();
        big[1] = vec![0; 2048];
        assert_eq!(reason(&big), RejectReason::Oversize);
        let mut tampered = good.clone();
        tampered[1][3] ^= 1;
        assert_eq!(reason(&tampered), RejectReason::BadMac);
        let mut short_mac = good.clone();
        short_mac[2].pop();
        assert_eq!(reason(&short_mac), RejectReason::BadMac);
        // Dropping a payload frame changes the frame count under the MAC.
        let dropped = vec![good[0].clone(), good[2].clone()];
        assert_eq!(reason(&dropped), RejectReason::BadMac);
        let other_key = Opener::new(key(8), 1024).open(&good).unwrap_err().reason;
        assert_eq!(other_key, RejectReason::BadMac);

        // Authenticated but wrong inside: forge with the right key.
        let forge = |header: Vec<u8>| {
            let tag = mac(&key(7), std::slice::from_ref(&header));
            vec![header, tag.to_vec()]
        };
        assert_eq!(reason(&forge(vec![0xc1])), RejectReason::Malformed);
        // A version-1 peer: refused, naming both versions.
        let v1 = rmp_serde::to_vec_named(&HeaderOut {
            v: 1,
            kind: "sample",
            sender: 1,
            seq: 1,
            body: &body,
        })
        .unwrap();
        let refused = Opener::new(key(7), 1024).open(&forge(v1)).unwrap_err();
        assert_eq!(refused.reason, RejectReason::Version);
        assert_eq!(refused.detail, "protocol version 1; this build speaks 2");
        let unknown = rmp_serde::to_vec_named(&HeaderOut {
            v: PROTOCOL_VERSION,
            kind: "teleport",
            sender: 1,
            seq: 1,
            body: &body,
        })
        .unwrap();
        assert_eq!(reason(&forge(unknown)), RejectReason::UnknownType);
    }

    #[test]
    fn replayed_and_reordered_sequence_numbers_are_refused() {
        let mut sealer = Sealer::new(key(3), 11);
        let mut opener = Opener::new(key(3), 1 << 16);
        let body = SampleRequest {
            request_id: 1,
            count: 1,
        };
        let first = sealer.seal(MessageKind::Sample, &body, vec![]).unwrap();
        let second = sealer.seal(MessageKind::Sample, &body, vec![]).unwrap();
        opener.open(&second).unwrap();
        assert_eq!(opener.open(&first).unwrap_err().reason, RejectReason::Replayed);
        assert_eq!(opener.open(&second).unwrap_err().reason, RejectReason::Replayed);
        // Another sender has its own sequence.
        let mut other = Sealer::new(key(3), 12);
        opener
            .open(&other.seal(MessageKind::Sample, &body, vec![]).unwrap())
            .unwrap();
        assert_eq!(opener.known_senders(), 2);
    }

    #[test]
    fn wrong_body_type_is_bad_body() {
        let mut sealer = Sealer::new(key(3), 11);
        let frames = sealer.seal(MessageKind::Sample, &"text", vec![]).unwrap();
        let mut opener = Opener::new(key(3), 1 << 16);
        let opened = opener.open(&frames).unwrap();
        assert_eq!(
            opened.body::<SampleRequest>().unwrap_err().reason,
            RejectReason::BadBody
        );
    }
}
