//! `cml-actors`: actor hosts — many light env actors per process, batched CPU
//! inference, unroll building, delivery to the replay shards and following the
//! learner's weight broadcast.
//!
//! Not built yet: this crate is filled by the actor-host issue. It deliberately
//! exports nothing, so no caller can mistake it for a working component.
