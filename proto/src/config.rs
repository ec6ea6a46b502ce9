//! `[transport]`: the shared key and message limits of every socket, and
//! the duration check every config section uses. Errors are `"key: reason"`
//! with the key inside the section; the binary adds the section and file.

use std::path::PathBuf;

use serde::Deserialize;

use crate::SocketOptions;

/// `[transport]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TransportConfig {
    /// The shared key (`cml-rl keygen FILE` writes one); relative to the
    /// config file's directory.
    pub key_file: Option<PathBuf>,
    /// Largest message accepted, MiB.
    pub max_message_mb: u64,
    /// High-water mark per socket and peer, messages.
    pub high_water_mark: i32,
}

impl Default for TransportConfig {
    fn default() -> TransportConfig {
        TransportConfig {
            key_file: None,
            max_message_mb: 64,
            high_water_mark: 1000,
        }
    }
}

impl TransportConfig {
    /// The socket options every role uses.
    pub fn socket_options(&self) -> SocketOptions {
        SocketOptions {
            max_message_bytes: (self.max_message_mb as usize) << 20,
            send_hwm: self.high_water_mark,
            recv_hwm: self.high_water_mark,
            ..SocketOptions::default()
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if !(1..=4096).contains(&self.max_message_mb) {
            return Err("max_message_mb: must be in 1..=4096".to_string());
        }
        if self.high_water_mark < 1 {
            return Err("high_water_mark: must be at least 1".to_string());
        }
        Ok(())
    }
}

/// About 30 years: any longer is a typo, and would overflow a `Duration`.
pub const MAX_SECONDS: f64 = 1e9;

/// `"key: reason"` unless `seconds` is a positive number of seconds that a
/// `Duration` can hold.
pub fn check_seconds(key: &str, seconds: f64) -> Result<(), String> {
    if seconds > MAX_SECONDS {
        return Err(format!("{key}: at most {MAX_SECONDS:e} seconds"));
    }
    if !(seconds.is_finite() && seconds > 0.0) {
        return Err(format!("{key}: must be positive, found {seconds}"));
    }
    Ok(())
}
