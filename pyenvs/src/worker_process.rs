//! One Python worker process: its pipes, its shared memory, its calls.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cml_envs::{BoxDtype, EnvError, Space};
use crossbeam_channel::{Receiver, RecvTimeoutError};
use memmap2::MmapMut;
use serde::Deserialize;

use crate::GymnasiumEnv;

/// The worker module, shipped in this crate and run with `python -c`.
const WORKER_SOURCE: &str = include_str!("../python/cml_gymnasium_worker.py");

/// Shared-memory files are `/dev/shm/<SHM_PREFIX><host pid>-<n>`.
pub const SHM_PREFIX: &str = "cml-rl-gym-";

const SHM_DIR: &str = "/dev/shm";

/// How long a worker may take to make its envs and describe them.
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// A space as the worker describes it (JSON).
#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum SpaceDescription {
    /// (`start` is applied by the worker: our actions are 0..n.)
    Discrete { n: u64 },
    Box {
        shape: Vec<usize>,
        dtype: String,
        low: Vec<Option<f64>>,
        high: Vec<Option<f64>>,
    },
}

#[derive(Debug, Deserialize)]
struct Hello {
    observation_space: SpaceDescription,
    action_space: SpaceDescription,
}

/// The byte regions of the shared memory, in the worker's order.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Regions {
    pub actions: usize,
    pub observations: usize,
    pub final_observations: usize,
    pub rewards: usize,
    pub terminated: usize,
    pub truncated: usize,
    pub life_lost: usize,
    pub total: usize,
}

impl Regions {
    /// The worker's `region_sizes`, each region starting at a multiple of
    /// 64; observations take `obs_bytes` a value (1 for uint8, 4 for f32).
    pub fn new(k: usize, d: usize, action_dim: usize, discrete: bool, obs_bytes: usize) -> Regions {
        let action_bytes = if discrete { k * 8 } else { k * action_dim * 4 };
        let sizes = [action_bytes, k * d * obs_bytes, k * d * obs_bytes, k * 8, k, k, k];
        let mut offsets = [0usize; 7];
        let mut at = 0;
        for (offset, size) in offsets.iter_mut().zip(sizes) {
            *offset = at;
            at += size.div_ceil(64) * 64;
        }
        Regions {
            actions: offsets[0],
            observations: offsets[1],
            final_observations: offsets[2],
            rewards: offsets[3],
            terminated: offsets[4],
            truncated: offsets[5],
            life_lost: offsets[6],
            total: at,
        }
    }
}

/// A running worker with K envs.
pub(crate) struct WorkerProcess {
    /// `gymnasium:<id>`, for errors.
    pub name: String,
    child: Child,
    stdin: ChildStdin,
    replies: Receiver<String>,
    timeout: Duration,
    path: PathBuf,
    pub memory: MmapMut,
    pub regions: Regions,
    pub observation_space: Space,
    pub action_space: Space,
    pub num_envs: usize,
}

impl WorkerProcess {
    /// Starts the worker, makes its `num_envs` envs and maps their memory.
    pub fn start(
        env: &GymnasiumEnv,
        num_envs: usize,
        autoreset: bool,
        max_episode_steps: Option<u64>,
    ) -> Result<WorkerProcess, EnvError> {
        let name = env.registry_id();
        let fail = |message: String| EnvError::Other {
            env: name.clone(),
            message,
        };
        if num_envs == 0 {
            return Err(fail("needs at least one env".into()));
        }
        remove_stale_shared_memory();
        let mut child = Command::new(&env.python)
            .arg("-u")
            .arg("-c")
            .arg(WORKER_SOURCE)
            .arg(env.spec_json(num_envs, autoreset, max_episode_steps))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| {
                fail(format!(
                    "cannot start the Python interpreter `{}` ([env] python): {e}",
                    env.python
                ))
            })?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            return Err(fail("the worker's pipes could not be opened".into()));
        };
        // A reader thread turns the worker's lines into messages, so that
        // every wait has a timeout (a hung env is found, not waited for).
        let (tx, replies) = crossbeam_channel::bounded::<String>(4);
        std::thread::Builder::new()
            .name("python-worker-reader".into())
            .spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| fail(format!("spawning the worker's reader: {e}")))?;
        let mut worker = WorkerProcess {
            name: name.clone(),
            child,
            stdin,
            replies,
            timeout: env.step_timeout,
            path: shm_path(),
            memory: MmapMut::map_anon(1).map_err(|e| fail(format!("mapping memory: {e}")))?,
            regions: Regions::new(0, 0, 0, true, 4),
            observation_space: Space::Discrete(1),
            action_space: Space::Discrete(1),
            num_envs,
        };
        let hello = worker.read_line(START_TIMEOUT, "making the envs")?;
        let value: serde_json::Value =
            serde_json::from_str(&hello).map_err(|e| fail(format!("the worker's first line `{hello}`: {e}")))?;
        if let Some(error) = value.get("error").and_then(|e| e.as_str()) {
            return Err(fail(error.to_string()));
        }
        let hello: Hello =
            serde_json::from_value(value).map_err(|e| fail(format!("the worker's spaces `{hello}`: {e}")))?;
        worker.observation_space =
            space_from(hello.observation_space).map_err(|e| fail(format!("observation space: {e}")))?;
        worker.action_space = space_from(hello.action_space).map_err(|e| fail(format!("action space: {e}")))?;
        let d = worker.observation_space.flat_dim();
        let (discrete, action_dim) = (worker.action_space.is_discrete(), worker.action_space.flat_dim());
        worker.regions = Regions::new(num_envs, d, action_dim, discrete, worker.observation_bytes());
        worker.memory = create_shared(&worker.path, worker.regions.total)
            .map_err(|e| fail(format!("shared memory {}: {e}", worker.path.display())))?;
        worker.call(&format!("map {}", worker.path.display()), START_TIMEOUT)?;
        Ok(worker)
    }

    /// Sends one command and waits for its `ok`.
    pub fn call(&mut self, command: &str, timeout: Duration) -> Result<(), EnvError> {
        self.send(command)?;
        self.wait_ok_within(command, timeout)
    }

    /// Sends one command without waiting (answered by [`WorkerProcess::wait_ok`]).
    pub fn send(&mut self, command: &str) -> Result<(), EnvError> {
        writeln!(self.stdin, "{command}").map_err(|e| self.died(&format!("sending `{command}`: {e}")))
    }

    /// Waits, within the configured timeout, for the `ok` of the command
    /// last sent.
    pub fn wait_ok(&mut self, command: &str) -> Result<(), EnvError> {
        self.wait_ok_within(command, self.timeout)
    }

    fn wait_ok_within(&mut self, command: &str, timeout: Duration) -> Result<(), EnvError> {
        let reply = self.read_line(timeout, command)?;
        if reply == "ok" {
            return Ok(());
        }
        let message = reply
            .strip_prefix("error ")
            .and_then(|json| serde_json::from_str::<String>(json).ok())
            .unwrap_or(reply);
        Err(EnvError::Other {
            env: self.name.clone(),
            message: format!("`{command}` failed in Python: {}", message.trim_end()),
        })
    }

    /// One call with the configured timeout.
    pub fn call_step(&mut self, command: &str) -> Result<(), EnvError> {
        self.call(command, self.timeout)
    }

    fn read_line(&mut self, timeout: Duration, doing: &str) -> Result<String, EnvError> {
        match self.replies.recv_timeout(timeout) {
            Ok(line) => Ok(line),
            Err(RecvTimeoutError::Timeout) => {
                let _ = self.child.kill();
                Err(EnvError::Other {
                    env: self.name.clone(),
                    message: format!(
                        "the Python worker (pid {}) took over {:.1} s on `{doing}` and was killed",
                        self.child.id(),
                        timeout.as_secs_f64()
                    ),
                })
            }
            Err(RecvTimeoutError::Disconnected) => Err(self.died(doing)),
        }
    }

    fn died(&mut self, doing: &str) -> EnvError {
        let status = match self.child.try_wait() {
            Ok(Some(status)) => status.to_string(),
            _ => {
                // The pipe closed first; give the exit a moment to land.
                std::thread::sleep(Duration::from_millis(50));
                match self.child.try_wait() {
                    Ok(Some(status)) => status.to_string(),
                    _ => "no exit status yet".to_string(),
                }
            }
        };
        EnvError::Other {
            env: self.name.clone(),
            message: format!(
                "the Python worker (pid {}) died during `{doing}` ({status}); its traceback, if any, is on stderr above",
                self.child.id()
            ),
        }
    }

    /// Bytes a value of an observation takes in shared memory: 1 for a
    /// uint8 Box (as the env makes it), 4 (f32) otherwise.
    pub fn observation_bytes(&self) -> usize {
        match self.observation_space.box_dtype() {
            Some(BoxDtype::U8) => 1,
            _ => 4,
        }
    }

    /// The shared-memory file.
    pub fn shared_memory_path(&self) -> &Path {
        &self.path
    }

    /// The process id, for reports and tests.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = writeln!(self.stdin, "close");
            let _ = self.stdin.flush();
            // Bounded: a worker that does not close in 2 s is killed.
            let deadline = std::time::Instant::now() + Duration::from_secs(2);
            while matches!(self.child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.path);
    }
}

fn shm_path() -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    Path::new(SHM_DIR).join(format!("{SHM_PREFIX}{}-{n}", std::process::id()))
}

fn create_shared(path: &Path, bytes: usize) -> std::io::Result<MmapMut> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)?;
    file.set_len(bytes as u64)?;
    // SAFETY: the file is ours (created here, exclusively) and only our
    // worker maps it; both sides keep to the regions of `Regions`.
    unsafe { MmapMut::map_mut(&file) }
}

/// Removes shared-memory files left by hosts that no longer run (a host
/// killed with SIGKILL cannot remove its own). Called before each start.
pub fn remove_stale_shared_memory() {
    let Ok(entries) = std::fs::read_dir(SHM_DIR) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(SHM_PREFIX)) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() && std::fs::remove_file(entry.path()).is_ok() {
            tracing::info!(file = %entry.path().display(), pid, "removed the shared memory of a host that is gone");
        }
    }
}

fn space_from(description: SpaceDescription) -> Result<Space, String> {
    match description {
        SpaceDescription::Discrete { n, .. } => usize::try_from(n)
            .ok()
            .filter(|&n| n >= 1)
            .map(Space::Discrete)
            .ok_or_else(|| format!("Discrete({n})")),
        SpaceDescription::Box {
            shape,
            dtype,
            low,
            high,
        } => {
            let n: usize = shape.iter().product();
            if low.len() != n || high.len() != n {
                return Err(format!(
                    "Box of shape {shape:?} with {} low and {} high bounds",
                    low.len(),
                    high.len()
                ));
            }
            let bound = |v: &Option<f64>, missing: f32| v.map_or(missing, |v| v as f32);
            let low: Vec<f32> = low.iter().map(|v| bound(v, f32::NEG_INFINITY)).collect();
            let high: Vec<f32> = high.iter().map(|v| bound(v, f32::INFINITY)).collect();
            let dtype = match dtype.as_str() {
                "uint8" => BoxDtype::U8,
                "float32" => BoxDtype::F32,
                other => return Err(format!("dtype {other}")),
            };
            Ok(Space::Box {
                low,
                high,
                shape,
                dtype,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_start_at_multiples_of_64_and_do_not_overlap() {
        let r = Regions::new(3, 5, 1, true, 4);
        assert_eq!(r.actions, 0);
        assert_eq!(r.observations, 64); // 24 bytes of actions
        assert_eq!(r.final_observations, 128); // 60 bytes of observations
        assert_eq!(r.rewards, 192);
        assert_eq!(r.terminated, 256);
        assert_eq!(r.truncated, 320);
        assert_eq!(r.life_lost, 384);
        assert_eq!(r.total, 448);
        let c = Regions::new(2, 1, 3, false, 4);
        assert_eq!(c.observations, 64); // 2 × 3 f32
        let u = Regions::new(2, 100, 1, true, 1);
        assert_eq!(u.final_observations, 64 + 256); // 200 bytes of u8 observations
        assert_eq!(u.rewards, 64 + 256 + 256);
    }

    #[test]
    fn spaces_are_read_with_infinite_bounds_and_dtypes() {
        let s: SpaceDescription =
            serde_json::from_str(r#"{"kind":"box","shape":[2],"dtype":"float32","low":[null,-1.0],"high":[null,1.0]}"#)
                .unwrap();
        let Space::Box { low, high, dtype, .. } = space_from(s).unwrap() else {
            panic!("not a box")
        };
        assert_eq!(low, vec![f32::NEG_INFINITY, -1.0]);
        assert_eq!(high, vec![f32::INFINITY, 1.0]);
        assert_eq!(dtype, BoxDtype::F32);
        let s: SpaceDescription =
            serde_json::from_str(r#"{"kind":"box","shape":[1],"dtype":"int64","low":[0],"high":[1]}"#).unwrap();
        assert_eq!(space_from(s).unwrap_err(), "dtype int64");
        let s: SpaceDescription = serde_json::from_str(r#"{"kind":"discrete","n":0,"start":0}"#).unwrap();
        assert!(space_from(s).is_err());
    }
}
