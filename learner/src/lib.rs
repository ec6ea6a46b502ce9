//! `cml-learner`: candle policy networks, V-trace, the IMPALA loss, optimizers
//! and checkpoints.
//!
//! Not built yet: this crate is filled by the learner issue. It deliberately
//! exports nothing, so no caller can mistake it for a working component.
