//! The learner's table of actor hosts, filled from their `host_status`
//! messages (docs/PROTOCOL.md §6.13) by the weight server's thread and read
//! by the dashboard.
//!
//! One row per sender id, so a host that restarts (a new process, a new
//! sender id) gets a new row and its old one turns `gone`. A row is `gone`
//! when its host said it was leaving or has been silent for
//! [`HOST_GONE_AFTER`]; a silent host that speaks again is active again.
//! Gone rows are kept for the dashboard, the oldest dropped first past
//! [`MAX_GONE_ROWS`], so the table is bounded whatever peers send.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::Serialize;

use crate::HostStatus;

/// How often an actor host sends `host_status`.
pub const HOST_STATUS_INTERVAL: Duration = Duration::from_secs(1);

/// A host silent this long is shown as gone.
pub const HOST_GONE_AFTER: Duration = Duration::from_secs(5);

/// Gone rows kept (the oldest go first).
pub const MAX_GONE_ROWS: usize = 256;

/// Active rows kept: a status from a further sender is not recorded.
pub const MAX_ACTIVE_ROWS: usize = 4096;

/// The longest host name kept, in bytes.
const MAX_HOSTNAME_BYTES: usize = 255;

/// One actor host as the dashboard shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HostRow {
    /// The envelope's sender id (one per host process).
    pub sender: u64,
    pub host_id: u64,
    pub hostname: String,
    /// The peer address ZeroMQ saw (`Peer-Address`; empty when unknown,
    /// e.g. over `ipc://`).
    pub address: String,
    pub actors: u64,
    pub env_steps_total: u64,
    pub unrolls_total: u64,
    pub episodes_total: u64,
    /// Env steps per second between the host's last two statuses.
    pub env_steps_per_s: f64,
    pub policy_version: u64,
    pub uptime_s: f64,
    pub paused_s: f64,
    /// Times the host's envs failed and were made afresh, and the episodes
    /// cut short by it.
    pub env_restarts_total: u64,
    pub episodes_cut_short_total: u64,
    /// Seconds since its last status.
    pub last_seen_s: f64,
    /// `"active"` or `"gone"`.
    pub state: &'static str,
    /// Gone because it said so (`false`: silent, or still active).
    pub left: bool,
}

struct Entry {
    row: HostRow,
    seen: Instant,
    /// When the current rate's numerator was last taken, and the count.
    rate_from: Option<(Instant, u64)>,
}

/// The table; cheap to clone (one shared table).
#[derive(Clone, Default)]
pub struct HostTable {
    entries: Arc<Mutex<HashMap<u64, Entry>>>,
}

impl HostTable {
    pub fn new() -> HostTable {
        HostTable::default()
    }

    /// Records `status` from `sender`, seen at `address`, at `now`.
    pub fn record(&self, sender: u64, address: &str, status: &HostStatus, now: Instant) {
        let mut entries = self.entries.lock();
        let new_sender = !entries.contains_key(&sender);
        if new_sender {
            let active = entries.values().filter(|e| !is_gone(e, now)).count();
            if active >= MAX_ACTIVE_ROWS {
                return;
            }
        }
        let entry = entries.entry(sender).or_insert_with(|| Entry {
            row: HostRow {
                sender,
                host_id: 0,
                hostname: String::new(),
                address: String::new(),
                actors: 0,
                env_steps_total: 0,
                unrolls_total: 0,
                episodes_total: 0,
                env_steps_per_s: 0.0,
                policy_version: 0,
                uptime_s: 0.0,
                paused_s: 0.0,
                env_restarts_total: 0,
                episodes_cut_short_total: 0,
                last_seen_s: 0.0,
                state: "active",
                left: false,
            },
            seen: now,
            rate_from: None,
        });
        let rate_from = entry.rate_from.get_or_insert((now, status.env_steps_total));
        let dt = now.saturating_duration_since(rate_from.0).as_secs_f64();
        if dt >= 0.5 {
            entry.row.env_steps_per_s = status.env_steps_total.saturating_sub(rate_from.1) as f64 / dt;
            *rate_from = (now, status.env_steps_total);
        }
        let row = &mut entry.row;
        row.host_id = status.host_id;
        row.hostname = truncated(&status.hostname, MAX_HOSTNAME_BYTES);
        if !address.is_empty() {
            row.address = truncated(address, MAX_HOSTNAME_BYTES);
        }
        row.actors = status.actors;
        row.env_steps_total = status.env_steps_total;
        row.unrolls_total = status.unrolls_total;
        row.episodes_total = status.episodes_total;
        row.policy_version = status.policy_version;
        row.uptime_s = finite_or_zero(status.uptime_s);
        row.paused_s = finite_or_zero(status.paused_s);
        row.env_restarts_total = status.env_restarts_total;
        row.episodes_cut_short_total = status.episodes_cut_short_total;
        row.left = status.leaving;
        if status.leaving {
            row.env_steps_per_s = 0.0;
        }
        entry.seen = now;
        // Rows are only added here, so bounding the gone ones when a row is
        // added keeps the table bounded (no scan per status).
        if new_sender {
            drop_oldest_gone(&mut entries, now);
        }
    }

    /// Every row at `now`: active ones first (by host id), then gone ones
    /// (the most recently seen first).
    pub fn rows(&self, now: Instant) -> Vec<HostRow> {
        let entries = self.entries.lock();
        let mut rows: Vec<(bool, Instant, HostRow)> = entries
            .values()
            .map(|e| {
                let gone = is_gone(e, now);
                let mut row = e.row.clone();
                row.last_seen_s = now.saturating_duration_since(e.seen).as_secs_f64();
                row.state = if gone { "gone" } else { "active" };
                if gone {
                    row.env_steps_per_s = 0.0;
                }
                (gone, e.seen, row)
            })
            .collect();
        rows.sort_by(|a, b| {
            a.0.cmp(&b.0)
                .then_with(|| {
                    if a.0 {
                        b.1.cmp(&a.1)
                    } else {
                        a.2.host_id.cmp(&b.2.host_id)
                    }
                })
                .then_with(|| a.2.sender.cmp(&b.2.sender))
        });
        rows.into_iter().map(|(_, _, row)| row).collect()
    }
}

/// This machine's host name as the system says it (empty when it cannot
/// be found).
pub fn local_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

fn is_gone(entry: &Entry, now: Instant) -> bool {
    entry.row.left || now.saturating_duration_since(entry.seen) >= HOST_GONE_AFTER
}

fn drop_oldest_gone(entries: &mut HashMap<u64, Entry>, now: Instant) {
    let mut gone: Vec<(Instant, u64)> = entries
        .iter()
        .filter(|(_, e)| is_gone(e, now))
        .map(|(s, e)| (e.seen, *s))
        .collect();
    if gone.len() <= MAX_GONE_ROWS {
        return;
    }
    gone.sort();
    for (_, sender) in &gone[..gone.len() - MAX_GONE_ROWS] {
        entries.remove(sender);
    }
}

fn finite_or_zero(x: f64) -> f64 {
    if x.is_finite() && x >= 0.0 {
        x
    } else {
        0.0
    }
}

/// At most `max` bytes of `s`, cut at a character boundary.
fn truncated(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(host_id: u64, steps: u64) -> HostStatus {
        HostStatus {
            host_id,
            hostname: "node-a".into(),
            actors: 32,
            env_steps_total: steps,
            policy_version: 7,
            uptime_s: 3.0,
            ..HostStatus::default()
        }
    }

    #[test]
    fn rows_have_rates_and_turn_gone_when_silent_or_leaving() {
        let table = HostTable::new();
        let t0 = Instant::now();
        table.record(11, "10.0.0.2", &status(1, 0), t0);
        table.record(22, "10.0.0.3", &status(2, 0), t0);
        table.record(11, "", &status(1, 5000), t0 + Duration::from_secs(2));
        let rows = table.rows(t0 + Duration::from_secs(3));
        assert_eq!(rows.len(), 2);
        let one = &rows[0];
        assert_eq!((one.host_id, one.sender, one.state), (1, 11, "active"));
        assert_eq!(one.address, "10.0.0.2", "an empty address keeps the known one");
        assert_eq!(one.env_steps_per_s, 2500.0);
        assert_eq!(one.last_seen_s, 1.0);
        assert_eq!((one.actors, one.policy_version), (32, 7));
        assert_eq!(rows[1].state, "active");

        // Host 2 is silent past HOST_GONE_AFTER: gone, and listed last.
        let later = t0 + HOST_GONE_AFTER + Duration::from_millis(1);
        table.record(11, "", &status(1, 6000), later);
        let rows = table.rows(later);
        assert_eq!((rows[0].host_id, rows[0].state), (1, "active"));
        assert_eq!((rows[1].host_id, rows[1].state, rows[1].left), (2, "gone", false));
        assert_eq!(rows[1].env_steps_per_s, 0.0);

        // It speaks again: active again. Host 1 says it is leaving: gone.
        table.record(22, "", &status(2, 10), later);
        let mut leaving = status(1, 6000);
        leaving.leaving = true;
        table.record(11, "", &leaving, later);
        let rows = table.rows(later);
        assert_eq!((rows[0].host_id, rows[0].state), (2, "active"));
        assert_eq!((rows[1].host_id, rows[1].state, rows[1].left), (1, "gone", true));
    }

    #[test]
    fn the_table_stays_bounded_and_values_are_cleaned() {
        let table = HostTable::new();
        let t0 = Instant::now();
        let mut bad = status(9, 1);
        bad.uptime_s = f64::NAN;
        bad.paused_s = -1.0;
        bad.hostname = "é".repeat(200);
        table.record(1, "", &bad, t0);
        let row = &table.rows(t0)[0];
        assert_eq!((row.uptime_s, row.paused_s), (0.0, 0.0));
        assert!(row.hostname.len() <= 255 && row.hostname.chars().all(|c| c == 'é'));

        // Many hosts that left: only the newest MAX_GONE_ROWS stay.
        let mut leaving = status(3, 0);
        leaving.leaving = true;
        for sender in 100..100 + MAX_GONE_ROWS as u64 + 50 {
            let at = t0 + Duration::from_millis(sender);
            table.record(sender, "", &leaving, at);
        }
        let rows = table.rows(t0 + Duration::from_secs(1));
        let gone: Vec<&HostRow> = rows.iter().filter(|r| r.state == "gone").collect();
        assert_eq!(gone.len(), MAX_GONE_ROWS);
        assert!(gone.iter().all(|r| r.sender >= 150), "the oldest were dropped");
        assert_eq!(gone[0].sender, 100 + MAX_GONE_ROWS as u64 + 49, "newest first");
    }
}
