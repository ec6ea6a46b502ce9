//! Replay: where unrolls wait between actor hosts and the learner.
//!
//! - [`sum_tree`]: sum- and min-trees in f64 for proportional sampling.
//! - [`index`]: [`ReplayIndex`], the bookkeeping of one shard (keys, FIFO
//!   eviction, priorities, sampling modes, the replay-ratio cap). It holds no
//!   payload: the shard keeps item bytes in a slab indexed by slot.

pub mod index;
pub mod sum_tree;

pub use index::{
    importance_weights, IndexConfig, Inserted, ReplayError, ReplayIndex, Sampled, SamplingMode, UpdateOutcome,
};
pub use sum_tree::{MinTree, SumTree};

pub mod client;
pub mod config;
pub mod shard;
pub mod synthetic;

pub use client::{
    ClientError, InsertClient, InsertCounting, InsertProgress, ReplayClient, SampledBatch, ShardedInserter,
    UnrollMessage,
};
pub use config::ReplayConfig;
pub use shard::{serve, ReplayShard, ShardConfig, ShardError};
