//! Crash-safe checkpoints: one safetensors file per checkpoint holding the
//! parameters (`param/<name>`), the optimizer state (`optim/<name>`) and a
//! JSON manifest in the safetensors metadata (`manifest`: format version,
//! learner steps, env frames, config fingerprint).
//!
//! Written atomically (temporary file, fsync, rename, fsync of the folder),
//! so a crash leaves either the old set or the new file complete; the oldest
//! are removed only after the new one is in place, keeping the last K.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::learner::{Learner, LearnerError, Result};

/// Bumped whenever the file layout changes.
pub const FORMAT_VERSION: u32 = 1;
const PREFIX: &str = "ckpt-";
const SUFFIX: &str = ".safetensors";

/// What a checkpoint says about itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    pub learner_steps: u64,
    pub env_frames: u64,
    /// [`config_fingerprint`] of the config the run was started with.
    pub config_fingerprint: String,
    /// The run's own counters (episodes finished, milliseconds trained), so
    /// that a resumed run goes on counting; 0 in files written before they
    /// existed.
    #[serde(default)]
    pub run: RunCounters,
}

/// Counters the learner's caller keeps beside the learner's own steps and
/// frames, saved with each checkpoint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunCounters {
    /// Episodes finished by the actors.
    pub episodes: u64,
    /// Wall-clock milliseconds of training, over every resume.
    pub elapsed_ms: u64,
}

/// A stable fingerprint of a config's text (FNV-1a, 64 bits, hex): resuming
/// with a different config is refused unless asked for.
pub fn config_fingerprint(config_text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in config_text.as_bytes() {
        h ^= u64::from(*byte);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// A checkpoint read back from disk.
pub struct LoadedCheckpoint {
    pub path: PathBuf,
    pub manifest: Manifest,
    /// Parameters and optimizer state by name.
    pub tensors: HashMap<String, Tensor>,
}

fn err(path: &Path, reason: impl Into<String>) -> LearnerError {
    LearnerError::Checkpoint {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

/// Writes and finds checkpoints in one folder.
pub struct Checkpointer {
    dir: PathBuf,
    keep: usize,
}

impl Checkpointer {
    /// Checkpoints in `dir` (created if missing), keeping the newest `keep`
    /// (at least 1).
    pub fn new(dir: impl Into<PathBuf>, keep: usize) -> Result<Self> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|e| err(&dir, format!("cannot create the folder: {e}")))?;
        Ok(Checkpointer { dir, keep: keep.max(1) })
    }

    /// The checkpoint files, oldest first (by learner steps in the name).
    pub fn list(&self) -> Result<Vec<PathBuf>> {
        let mut found: Vec<(u64, PathBuf)> = fs::read_dir(&self.dir)
            .map_err(|e| err(&self.dir, format!("cannot list: {e}")))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter_map(|p| {
                let name = p.file_name()?.to_str()?;
                let steps = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?.parse::<u64>().ok()?;
                Some((steps, p))
            })
            .collect();
        found.sort();
        Ok(found.into_iter().map(|(_, p)| p).collect())
    }

    /// The newest checkpoint file, if any.
    pub fn latest(&self) -> Result<Option<PathBuf>> {
        Ok(self.list()?.pop())
    }

    /// Saves `learner` atomically and prunes old checkpoints.
    pub fn save(&self, learner: &Learner, config_fingerprint: &str) -> Result<PathBuf> {
        self.save_with(learner, config_fingerprint, RunCounters::default())
    }

    /// [`Checkpointer::save`], with the caller's counters in the manifest.
    pub fn save_with(&self, learner: &Learner, config_fingerprint: &str, run: RunCounters) -> Result<PathBuf> {
        let manifest = Manifest {
            format_version: FORMAT_VERSION,
            learner_steps: learner.steps(),
            env_frames: learner.frames(),
            config_fingerprint: config_fingerprint.to_string(),
            run,
        };
        let mut tensors: HashMap<String, Tensor> = HashMap::new();
        for (name, t) in learner.parameters() {
            tensors.insert(format!("param/{name}"), t.to_device(&Device::Cpu)?);
        }
        for (name, t) in learner.optimizer_state()? {
            tensors.insert(format!("optim/{name}"), t.to_device(&Device::Cpu)?);
        }
        let meta_json = serde_json::to_string(&manifest).map_err(|e| err(&self.dir, e.to_string()))?;
        let metadata = HashMap::from([("manifest".to_string(), meta_json)]);
        let bytes = safetensors::serialize(&tensors, Some(metadata)).map_err(|e| err(&self.dir, e.to_string()))?;

        let final_path = self.dir.join(format!("{PREFIX}{:012}{SUFFIX}", learner.steps()));
        let tmp_path = self.dir.join(format!(".{PREFIX}{:012}.tmp", learner.steps()));
        let write = || -> std::io::Result<()> {
            let mut f = fs::File::create(&tmp_path)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            fs::rename(&tmp_path, &final_path)?;
            // Make the rename itself durable.
            fs::File::open(&self.dir)?.sync_all()
        };
        if let Err(e) = write() {
            let _ = fs::remove_file(&tmp_path);
            return Err(err(&final_path, format!("cannot write: {e}")));
        }
        let all = self.list()?;
        if all.len() > self.keep {
            // Never the file just written, even if older names sort after it.
            for old in all[..all.len() - self.keep].iter().filter(|p| **p != final_path) {
                let _ = fs::remove_file(old);
            }
        }
        Ok(final_path)
    }

    /// Reads one checkpoint file; a truncated or corrupt file is an error
    /// naming it (and nothing else is touched).
    pub fn load(path: &Path, device: &Device) -> Result<LoadedCheckpoint> {
        let bytes = fs::read(path).map_err(|e| err(path, format!("cannot read: {e}")))?;
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| {
            err(
                path,
                format!("truncated or corrupt (not a complete safetensors file): {e}"),
            )
        })?;
        let manifest_json = meta
            .metadata()
            .as_ref()
            .and_then(|m| m.get("manifest"))
            .ok_or_else(|| err(path, "no manifest in the file's metadata"))?;
        let manifest: Manifest =
            serde_json::from_str(manifest_json).map_err(|e| err(path, format!("unreadable manifest: {e}")))?;
        if manifest.format_version != FORMAT_VERSION {
            return Err(err(
                path,
                format!(
                    "format version {} (this build reads {FORMAT_VERSION})",
                    manifest.format_version
                ),
            ));
        }
        let raw = candle_core::safetensors::load_buffer(&bytes, device)
            .map_err(|e| err(path, format!("truncated or corrupt tensors: {e}")))?;
        let tensors = raw
            .into_iter()
            .map(|(k, v)| {
                let name = k
                    .strip_prefix("param/")
                    .or_else(|| k.strip_prefix("optim/"))
                    .unwrap_or(&k)
                    .to_string();
                (name, v)
            })
            .collect();
        Ok(LoadedCheckpoint {
            path: path.to_path_buf(),
            manifest,
            tensors,
        })
    }

    /// Restores `learner` from `checkpoint`; refuses a checkpoint of another
    /// config unless `expected_fingerprint` is `None`.
    pub fn restore(
        learner: &mut Learner,
        checkpoint: &LoadedCheckpoint,
        expected_fingerprint: Option<&str>,
    ) -> Result<()> {
        if let Some(expected) = expected_fingerprint {
            if checkpoint.manifest.config_fingerprint != expected {
                return Err(err(
                    &checkpoint.path,
                    format!(
                        "written for config {}, this run's config is {expected}",
                        checkpoint.manifest.config_fingerprint
                    ),
                ));
            }
        }
        learner
            .restore(
                &checkpoint.tensors,
                checkpoint.manifest.learner_steps,
                checkpoint.manifest.env_frames,
            )
            .map_err(|e| err(&checkpoint.path, e.to_string()))
    }
}
