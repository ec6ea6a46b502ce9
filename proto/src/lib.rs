//! `cml-proto`: the wire protocol — the only crate that knows how messages
//! look on the wire (MessagePack headers, raw little-endian tensor frames,
//! keyed BLAKE3 MACs). See `docs/PROTOCOL.md`.
//!
//! Not built yet: this crate is filled by the wire-protocol/replay issue. It
//! deliberately exports nothing, so no caller can mistake it for a working
//! component.
