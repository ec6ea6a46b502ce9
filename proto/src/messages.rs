//! Message types and their bodies (the `body` map of the header).
//!
//! Field names here are the wire names; docs/PROTOCOL.md is the reference.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::tensor::TensorSpec;
use crate::unroll::UnrollLayout;

/// The `type` field of a header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MessageKind {
    /// client -> shard: introduce yourself, ask for credit and the layout.
    Hello,
    /// shard -> client: the answer to `hello`.
    Welcome,
    /// actor -> shard: a batch of unrolls.
    Insert,
    /// shard -> actor: an insert was stored; more credit.
    Credit,
    /// learner -> shard: ask for sampled unrolls.
    Sample,
    /// shard -> learner: sampled unrolls.
    Batch,
    /// learner -> shard: new priorities for sampled items.
    Priorities,
    /// anyone -> shard: ask for the shard's statistics.
    GetStats,
    /// shard -> anyone: statistics.
    Stats,
    /// shard -> sender of an authenticated message it refused.
    Error,
    /// learner -> actor hosts (PUB, and the reply to `get_weights`): policy
    /// weights of one version.
    Weights,
    /// actor host -> learner: send me the current weights now.
    GetWeights,
    /// actor host -> learner, once a second: who I am and what I did.
    HostStatus,
    /// actor -> shard: I am stopping; forget me and take back my credit.
    Goodbye,
}

impl MessageKind {
    pub const ALL: [MessageKind; 14] = [
        MessageKind::Hello,
        MessageKind::Welcome,
        MessageKind::Insert,
        MessageKind::Credit,
        MessageKind::Sample,
        MessageKind::Batch,
        MessageKind::Priorities,
        MessageKind::GetStats,
        MessageKind::Stats,
        MessageKind::Error,
        MessageKind::Weights,
        MessageKind::GetWeights,
        MessageKind::HostStatus,
        MessageKind::Goodbye,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Hello => "hello",
            MessageKind::Welcome => "welcome",
            MessageKind::Insert => "insert",
            MessageKind::Credit => "credit",
            MessageKind::Sample => "sample",
            MessageKind::Batch => "batch",
            MessageKind::Priorities => "priorities",
            MessageKind::GetStats => "get_stats",
            MessageKind::Stats => "stats",
            MessageKind::Error => "error",
            MessageKind::Weights => "weights",
            MessageKind::GetWeights => "get_weights",
            MessageKind::HostStatus => "host_status",
            MessageKind::Goodbye => "goodbye",
        }
    }

    pub fn parse(name: &str) -> Option<MessageKind> {
        MessageKind::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

/// Body of `hello`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    /// `"actor"` (wants insert credit) or `"learner"` (samples).
    pub role: String,
}

/// Body of `welcome`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Welcome {
    pub shard: u32,
    pub shards: u32,
    /// `"prioritized"`, `"uniform"` or `"queue"`.
    pub mode: String,
    pub layout: UnrollLayout,
    /// Unrolls this sender may insert now (replaces any earlier credit).
    pub credit: u32,
    /// Slots of this shard (unrolls).
    pub capacity: u64,
    pub max_message_bytes: u64,
    /// Most credit an actor holds at once.
    pub credit_window: u32,
    /// An actor silent this long loses its credit (say hello again).
    pub sender_timeout_ms: u64,
    /// Random per shard process: item keys are only meaningful within one
    /// incarnation (`batch.incarnation`, `priorities.incarnation`).
    pub incarnation: u64,
}

/// One finished episode, reported by the actor that ran it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Episode {
    pub actor_id: u64,
    #[serde(rename = "return")]
    pub episode_return: f64,
    pub length: u64,
}

/// Body of `insert`; payload frames as listed in `tensors`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Insert {
    /// The shard this insert is for (a shard refuses others').
    pub shard: u32,
    /// Unrolls in this message, B >= 1.
    pub count: u32,
    /// Per unroll, B entries.
    pub actor_ids: Vec<u64>,
    /// Per unroll: the policy version that chose its actions.
    pub policy_versions: Vec<u64>,
    /// Per unroll initial priority; `nil` = the shard's running max.
    pub priorities: Option<Vec<f64>>,
    /// Episodes finished since the sender's last insert to this shard.
    pub episodes: Vec<Episode>,
    pub tensors: Vec<TensorSpec>,
}

/// Body of `credit`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Credit {
    /// Seq of the insert this acknowledges (0: a grant without an insert).
    pub ack_seq: u64,
    /// Unrolls stored from that insert.
    pub stored: u32,
    /// Additional unrolls the sender may insert.
    pub grant: u32,
}

/// Body of `sample`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SampleRequest {
    /// Echoed in the reply.
    pub request_id: u64,
    /// Unrolls wanted (the reply may hold fewer, even zero).
    pub count: u32,
}

/// Body of `batch`; payload frames as listed in `tensors`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    pub request_id: u64,
    pub shard: u32,
    /// The shard process's incarnation (see `Welcome`).
    pub incarnation: u64,
    pub count: u32,
    /// Item keys, for priority updates (unique within a shard).
    pub keys: Vec<u64>,
    /// Stored priority p^α of each item when drawn (1.0 in uniform/queue mode).
    pub priorities: Vec<f64>,
    /// How many times each item has been sampled, this time included.
    pub times_sampled: Vec<u32>,
    pub actor_ids: Vec<u64>,
    pub policy_versions: Vec<u64>,
    /// Items in the shard after this sample.
    pub size: u64,
    /// Sum of stored priorities in the shard after this sample.
    pub total_priority: f64,
    /// Smallest stored priority in the shard (+inf when empty).
    pub min_priority: f64,
    /// Episodes reported by actors since the last `batch` from this shard.
    pub episodes: Vec<Episode>,
    pub tensors: Vec<TensorSpec>,
    /// Unrolls this shard incarnation has accepted since it started (the
    /// learner counts env frames produced from it); 0 from older shards.
    #[serde(default)]
    pub inserted: u64,
}

/// Body of `priorities`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PriorityUpdate {
    /// The incarnation the keys came from; if it is not the shard's current
    /// one, every key is stale (the shard restarted). `nil`: not checked.
    #[serde(default)]
    pub incarnation: Option<u64>,
    pub keys: Vec<u64>,
    /// Raw priorities (finite, >= 0); the shard stores max(p, ε)^α.
    pub priorities: Vec<f64>,
}

/// Body of `get_stats` (an empty map).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GetStats {}

/// Body of `stats`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ShardStats {
    pub shard: u32,
    pub mode: String,
    pub size: u64,
    pub capacity: u64,
    /// Payload bytes held (size × bytes per unroll).
    pub bytes: u64,
    pub capacity_bytes: u64,
    pub inserted_total: u64,
    pub sampled_total: u64,
    pub evicted_total: u64,
    /// Items removed after reaching the sample cap or consumed in queue mode.
    pub retired_total: u64,
    pub priority_updates_total: u64,
    /// Updates for items no longer stored (ignored).
    pub stale_updates_total: u64,
    /// Over the last stats interval.
    pub inserts_per_s: f64,
    pub samples_per_s: f64,
    pub total_priority: f64,
    /// Actor connections known to the shard and the credit they hold.
    pub senders: u64,
    pub outstanding_credit: u64,
    /// Refused messages by reason (see `RejectReason`).
    pub rejected: BTreeMap<String, u64>,
    /// Replies that could not be handed to ZeroMQ (peer gone, or its queue
    /// at the high-water mark); an actor whose credit reply was lost says
    /// hello again.
    pub replies_undelivered: u64,
    pub uptime_s: f64,
}

/// Body of `error`: why an authenticated message was refused.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorReply {
    /// Seq of the refused message.
    pub seq: u64,
    /// A `RejectReason` name.
    pub reason: String,
    pub detail: String,
}

/// Body of `weights`; one payload frame holds the weights.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Weights {
    /// Policy version: learner steps + 1 when published (a fresh learner
    /// publishes 1); increases. 0 means
    /// "no weights yet" (then the payload frame is empty).
    pub version: u64,
    /// `"safetensors"`: the frame is a safetensors file of the policy
    /// network's tensors (names `torso.{i}.weight`, `policy.bias`, ...).
    pub format: String,
    /// A random id of the publishing learner process, the same on its PUB
    /// and ROUTER sockets and new in every process: versions only rise
    /// within one publisher, so a host follows a new publisher's versions
    /// from scratch. 0 (or absent) from a publisher that does not say.
    #[serde(default)]
    pub publisher: u64,
}

/// Body of `goodbye` (an empty map): the actor stops; the shard forgets it
/// and its credit at once instead of after `sender_timeout`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Goodbye {}

/// Body of `get_weights` (an empty map).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GetWeights {}

/// Body of `host_status`: an actor host's report to the learner, sent about
/// once a second on the `get_weights` connection (never answered). The
/// counters are the host's own since it started; the learner derives rates
/// from successive reports of one sender.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HostStatus {
    /// `actor.host_id` (actor ids are `host_id << 32 | index`).
    pub host_id: u64,
    /// The machine's host name (at most 255 bytes are kept).
    pub hostname: String,
    /// Env actors on this host (workers × envs per worker).
    pub actors: u64,
    /// Env steps in unrolls handed to replay.
    pub env_steps_total: u64,
    pub unrolls_total: u64,
    /// Episodes finished.
    pub episodes_total: u64,
    /// The policy version the host acts with (0: no weights yet).
    pub policy_version: u64,
    /// Seconds since the host started.
    pub uptime_s: f64,
    /// Seconds the host waited for replay credit, in total.
    #[serde(default)]
    pub paused_s: f64,
    /// Times a worker's envs failed (a crashed or hung env process, an env
    /// error) and were made afresh, and the episodes those failures cut
    /// short (not in `episodes_total`).
    #[serde(default)]
    pub env_restarts_total: u64,
    #[serde(default)]
    pub episodes_cut_short_total: u64,
    /// The host is stopping: this is its last status.
    #[serde(default)]
    pub leaving: bool,
}
