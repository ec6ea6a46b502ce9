//! `cml-learner`: candle policy networks, V-trace, the IMPALA loss, optimizers
//! and checkpoints.
//!
//! Built so far: [`vtrace`] (matched against the reference cases in
//! `tests/fixtures/vtrace_cases.json`). Not built yet: networks, the loss,
//! optimizers, the learner step and checkpoints (see ARCHITECTURE.md, Status).

pub mod vtrace;
