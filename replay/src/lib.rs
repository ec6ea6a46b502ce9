//! `cml-replay`: sharded prioritized replay (sum/min trees, FIFO-queue mode)
//! and the replay shard service.
//!
//! Not built yet: this crate is filled by the wire-protocol/replay issue. It
//! deliberately exports nothing, so no caller can mistake it for a working
//! component.
