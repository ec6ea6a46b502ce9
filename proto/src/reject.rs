//! Why a message was refused, counters per reason, and rate-limited logging.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Every reason a message can be refused; the names are the wire names
/// (`error.reason`, `stats.rejected`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// Wrong frame count, or a header that is not the expected MessagePack.
    Malformed,
    /// MAC frame missing, wrong length or not matching.
    BadMac,
    /// Unknown protocol version.
    Version,
    /// Unknown message type.
    UnknownType,
    /// Sequence number not above the sender's last one.
    Replayed,
    /// Larger than the configured maximum message size.
    Oversize,
    /// The body does not decode as its type's fields.
    BadBody,
    /// Tensor names, dtypes, shapes or frame lengths do not match the layout.
    BadTensor,
    /// NaN/inf, an action out of range, a flag other than 0/1, a negative priority.
    BadValue,
    /// An insert addressed to another shard.
    WrongShard,
    /// More unrolls than the sender's credit (or the shard is full in queue mode).
    NoCredit,
    /// A message type this role does not accept.
    Unexpected,
}

impl RejectReason {
    pub const ALL: [RejectReason; 12] = [
        RejectReason::Malformed,
        RejectReason::BadMac,
        RejectReason::Version,
        RejectReason::UnknownType,
        RejectReason::Replayed,
        RejectReason::Oversize,
        RejectReason::BadBody,
        RejectReason::BadTensor,
        RejectReason::BadValue,
        RejectReason::WrongShard,
        RejectReason::NoCredit,
        RejectReason::Unexpected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::Malformed => "malformed",
            RejectReason::BadMac => "bad_mac",
            RejectReason::Version => "version",
            RejectReason::UnknownType => "unknown_type",
            RejectReason::Replayed => "replayed",
            RejectReason::Oversize => "oversize",
            RejectReason::BadBody => "bad_body",
            RejectReason::BadTensor => "bad_tensor",
            RejectReason::BadValue => "bad_value",
            RejectReason::WrongShard => "wrong_shard",
            RejectReason::NoCredit => "no_credit",
            RejectReason::Unexpected => "unexpected",
        }
    }

    fn index(self) -> usize {
        RejectReason::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }

    /// True for refusals of the envelope itself (size, MAC, header,
    /// version, type, sequence). Those are never answered: an
    /// unauthenticated or replaying peer gets nothing back. Refusals of an
    /// authenticated message's contents are answered with `error`.
    pub fn is_envelope(self) -> bool {
        matches!(
            self,
            RejectReason::Malformed
                | RejectReason::BadMac
                | RejectReason::Oversize
                | RejectReason::Version
                | RejectReason::UnknownType
                | RejectReason::Replayed
        )
    }
}

/// A refused message: the reason and a human-readable detail.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}: {detail}", reason.as_str())]
pub struct Rejection {
    pub reason: RejectReason,
    pub detail: String,
}

impl Rejection {
    pub fn new(reason: RejectReason, detail: String) -> Rejection {
        Rejection { reason, detail }
    }
}

/// Counts refusals by reason and logs them at most once per second per
/// reason (with how many were not logged), so a flood never floods the log.
#[derive(Debug)]
pub struct RejectLog {
    role: &'static str,
    counts: [u64; RejectReason::ALL.len()],
    last_logged: [Option<Instant>; RejectReason::ALL.len()],
    unlogged: [u64; RejectReason::ALL.len()],
    interval: Duration,
}

impl RejectLog {
    pub fn new(role: &'static str) -> RejectLog {
        RejectLog {
            role,
            counts: [0; RejectReason::ALL.len()],
            last_logged: [None; RejectReason::ALL.len()],
            unlogged: [0; RejectReason::ALL.len()],
            interval: Duration::from_secs(1),
        }
    }

    /// Counts one refusal and logs it unless this reason was logged within
    /// the last second.
    pub fn record(&mut self, rejection: &Rejection) {
        let i = rejection.reason.index();
        self.counts[i] += 1;
        let now = Instant::now();
        let due = self.last_logged[i].is_none_or(|t| now.duration_since(t) >= self.interval);
        if due {
            tracing::warn!(
                role = self.role,
                reason = rejection.reason.as_str(),
                suppressed = self.unlogged[i],
                "refused a message: {}",
                rejection.detail
            );
            self.last_logged[i] = Some(now);
            self.unlogged[i] = 0;
        } else {
            self.unlogged[i] += 1;
        }
    }

    pub fn count(&self, reason: RejectReason) -> u64 {
        self.counts[reason.index()]
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Every reason with its count (zeros included), by wire name.
    pub fn to_map(&self) -> BTreeMap<String, u64> {
        RejectReason::ALL
            .iter()
            .map(|r| (r.as_str().to_string(), self.counts[r.index()]))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_every_refusal_and_names_them() {
        let mut log = RejectLog::new("test");
        for _ in 0..1000 {
            log.record(&Rejection::new(RejectReason::BadMac, "x".into()));
        }
        log.record(&Rejection::new(RejectReason::Replayed, "y".into()));
        assert_eq!(log.count(RejectReason::BadMac), 1000);
        assert_eq!(log.total(), 1001);
        let map = log.to_map();
        assert_eq!(map.len(), RejectReason::ALL.len());
        assert_eq!(map["replayed"], 1);
        assert_eq!(map["no_credit"], 0);
        // Only the first of the 1000 was logged; the rest wait for the next second.
        assert_eq!(log.unlogged[RejectReason::BadMac.index()], 999);
    }

    #[test]
    fn names_are_unique() {
        let mut names: Vec<_> = RejectReason::ALL.iter().map(|r| r.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), RejectReason::ALL.len());
    }
}
