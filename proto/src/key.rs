//! The shared key every role uses to authenticate messages.
//!
//! A key file holds 64 hexadecimal digits (32 bytes) and a newline; `cml-rl
//! keygen` writes one with mode 0600. Python reads it with
//! `bytes.fromhex(open(path).read().strip())`.

use std::io::Write;
use std::path::Path;

use crate::ProtoError;

/// Length of the shared key in bytes (BLAKE3's key size).
pub const KEY_LEN: usize = 32;

/// A 32-byte secret shared by every process of one run.
#[derive(Clone, PartialEq, Eq)]
pub struct SharedKey([u8; KEY_LEN]);

impl std::fmt::Debug for SharedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedKey(..)")
    }
}

impl SharedKey {
    /// A key from raw bytes.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> SharedKey {
        SharedKey(bytes)
    }

    /// A fresh random key from the operating system.
    pub fn generate() -> Result<SharedKey, ProtoError> {
        let mut bytes = [0u8; KEY_LEN];
        getrandom::fill(&mut bytes).map_err(|e| ProtoError::Key(format!("no OS randomness: {e}")))?;
        Ok(SharedKey(bytes))
    }

    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// The key as 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Parses 64 hex digits (surrounding whitespace ignored).
    pub fn from_hex(text: &str) -> Result<SharedKey, ProtoError> {
        let text = text.trim();
        if text.len() != 2 * KEY_LEN || !text.is_ascii() {
            return Err(ProtoError::Key(format!(
                "expected {} hexadecimal digits, found {} characters",
                2 * KEY_LEN,
                text.chars().count()
            )));
        }
        let mut bytes = [0u8; KEY_LEN];
        if let Some(i) = text.bytes().position(|c| !c.is_ascii_hexdigit()) {
            return Err(ProtoError::Key(format!("not a hexadecimal digit at offset {i}")));
        }
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16)
                .map_err(|_| ProtoError::Key(format!("not a hexadecimal digit pair at offset {}", 2 * i)))?;
        }
        Ok(SharedKey(bytes))
    }

    /// Reads a key file; the error names the file.
    pub fn read_file(path: &Path) -> Result<SharedKey, ProtoError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ProtoError::Key(format!("{}: cannot read key file: {e}", path.display())))?;
        SharedKey::from_hex(&text).map_err(|e| ProtoError::Key(format!("{}: {e}", path.display())))
    }

    /// Writes a new key file with mode 0600; refuses to overwrite one.
    pub fn write_new_file(&self, path: &Path) -> Result<(), ProtoError> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options
            .open(path)
            .map_err(|e| ProtoError::Key(format!("{}: cannot create key file: {e}", path.display())))?;
        writeln!(file, "{}", self.to_hex())
            .and_then(|_| file.sync_all())
            .map_err(|e| ProtoError::Key(format!("{}: cannot write key file: {e}", path.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_errors() {
        let key = SharedKey::generate().unwrap();
        assert_eq!(SharedKey::from_hex(&format!("  {}\n", key.to_hex())).unwrap(), key);
        assert!(SharedKey::from_hex("abcd")
            .unwrap_err()
            .to_string()
            .contains("64 hexadecimal digits"));
        let bad = "zz".repeat(32);
        assert!(SharedKey::from_hex(&bad).unwrap_err().to_string().contains("offset 0"));
        let plus = format!("+a{}", "0".repeat(62));
        assert!(SharedKey::from_hex(&plus).is_err(), "a sign is not a digit");
    }

    #[test]
    fn key_file_is_private_and_never_overwritten() {
        let dir = std::env::temp_dir().join(format!("cml-key-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("run.key");
        let _ = std::fs::remove_file(&path);
        let key = SharedKey::generate().unwrap();
        key.write_new_file(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        assert_eq!(SharedKey::read_file(&path).unwrap(), key);
        assert!(SharedKey::generate().unwrap().write_new_file(&path).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
