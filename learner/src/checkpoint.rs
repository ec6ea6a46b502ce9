//! Crash-safe checkpoints of any [`Algorithm`]: one safetensors file per
//! checkpoint holding the algorithm's state under the names it gives them
//! (IMPALA: parameters as `param/<name>`, optimizer state as
//! `optim/<name>`) and a JSON manifest in the safetensors metadata
//! (`manifest`: format version, algorithm, learner steps, frame counters,
//! config fingerprint).
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

use crate::algorithm::Algorithm;
use crate::learner::{LearnerError, Result};

/// Bumped whenever the file layout changes.
pub const FORMAT_VERSION: u32 = 1;
const PREFIX: &str = "ckpt-";
const SUFFIX: &str = ".safetensors";

/// What a checkpoint says about itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    /// [`Algorithm::name`] of what wrote it; files from before this field
    /// were all IMPALA's.
    #[serde(default = "impala")]
    pub algorithm: String,
    pub learner_steps: u64,
    /// Env frames the actors produced (counted from the shards' inserts).
    /// In files written before `frames_consumed` existed this was the
    /// frames the learner trained on.
    pub env_frames: u64,
    /// Frames the learner trained on (B·T per step); `None` in older files,
    /// where `env_frames` holds that number.
    #[serde(default)]
    pub frames_consumed: Option<u64>,
    /// [`config_fingerprint`] of the config the run was started with.
    pub config_fingerprint: String,
    /// The run's own counters (episodes finished, milliseconds trained), so
    /// that a resumed run goes on counting; 0 in files written before they
    /// existed.
    #[serde(default)]
    pub run: RunCounters,
}

fn impala() -> String {
    "impala".to_string()
}

/// The learner loop's counters, saved with each checkpoint (the algorithm
/// keeps only its own step count).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Env frames the actors produced.
    pub env_frames: u64,
    /// Frames the learner trained on.
    pub frames_consumed: u64,
    pub run: RunCounters,
}

/// Counters of the run as a whole, saved with each checkpoint.
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
    /// The algorithm's state by the names [`Algorithm::state`] gave them.
    pub tensors: HashMap<String, Tensor>,
}

impl LoadedCheckpoint {
    /// The loop's counters as saved.
    pub fn counters(&self) -> Counters {
        Counters {
            env_frames: self.manifest.env_frames,
            frames_consumed: self.manifest.frames_consumed.unwrap_or(self.manifest.env_frames),
            run: self.manifest.run,
        }
    }
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

    /// Saves `algorithm` with `counters` atomically and prunes old
    /// checkpoints.
    pub fn save(&self, algorithm: &dyn Algorithm, config_fingerprint: &str, counters: Counters) -> Result<PathBuf> {
        let manifest = Manifest {
            format_version: FORMAT_VERSION,
            algorithm: algorithm.name().to_string(),
            learner_steps: algorithm.steps(),
            env_frames: counters.env_frames,
            frames_consumed: Some(counters.frames_consumed),
            config_fingerprint: config_fingerprint.to_string(),
            run: counters.run,
        };
        let mut tensors: HashMap<String, Tensor> = HashMap::new();
        for (name, t) in algorithm.state()? {
            if tensors.insert(name.clone(), t.to_device(&Device::Cpu)?).is_some() {
                return Err(err(&self.dir, format!("the algorithm names two tensors `{name}`")));
            }
        }
        let meta_json = serde_json::to_string(&manifest).map_err(|e| err(&self.dir, e.to_string()))?;
        let metadata = HashMap::from([("manifest".to_string(), meta_json)]);
        let bytes = safetensors::serialize(&tensors, Some(metadata)).map_err(|e| err(&self.dir, e.to_string()))?;

        let final_path = self.dir.join(format!("{PREFIX}{:012}{SUFFIX}", algorithm.steps()));
        let tmp_path = self.dir.join(format!(".{PREFIX}{:012}.tmp", algorithm.steps()));
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
        Ok(LoadedCheckpoint {
            path: path.to_path_buf(),
            manifest,
            tensors: raw.into_iter().collect(),
        })
    }

    /// Restores `algorithm` from `checkpoint`; refuses a checkpoint of
    /// another algorithm, or of another config unless
    /// `expected_fingerprint` is `None`.
    pub fn restore(
        algorithm: &mut dyn Algorithm,
        checkpoint: &LoadedCheckpoint,
        expected_fingerprint: Option<&str>,
    ) -> Result<()> {
        if checkpoint.manifest.algorithm != algorithm.name() {
            return Err(err(
                &checkpoint.path,
                format!(
                    "written by algorithm {:?}, this run's is {:?}",
                    checkpoint.manifest.algorithm,
                    algorithm.name()
                ),
            ));
        }
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
        algorithm
            .restore(&checkpoint.tensors, checkpoint.manifest.learner_steps)
            .map_err(|e| err(&checkpoint.path, e.to_string()))
    }
}
