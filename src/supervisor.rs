//! The child processes of `cml-rl train`: each replay shard and the actor
//! host run as `cml-rl replay` / `cml-rl actor` children of the same
//! executable, each in its own process group with its log file. A child that
//! exits is restarted, a bounded number of times.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use parking_lot::Mutex;

use cml_run::plumbing::{KEY_FILE_ENV, SUPERVISOR_PID_ENV};

/// Restarts allowed per child before `train` gives up on it ...
const MAX_RESTARTS: u32 = 5;
/// ... counted again from 0 once a child has stayed up this long.
const HEALTHY_AFTER: Duration = Duration::from_secs(60);
/// How often the watcher looks at the children.
const WATCH_EVERY: Duration = Duration::from_millis(200);
/// How long a child has to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(2);

struct ChildSpec {
    name: String,
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
    /// When `child` was started.
    started: Instant,
    restarts: u32,
}

/// The child processes of a local run.
pub struct Supervisor {
    exe: PathBuf,
    key_file: PathBuf,
    children: Vec<ChildSpec>,
}

impl Supervisor {
    /// Children of the running executable, handed `key_file` through
    /// [`KEY_FILE_ENV`].
    pub fn new(key_file: PathBuf) -> anyhow::Result<Self> {
        Ok(Supervisor {
            exe: std::env::current_exe().context("locating the cml-rl executable")?,
            key_file,
            children: Vec::new(),
        })
    }

    /// Adds a child `cml-rl ARGS...` (started by [`Supervisor::start_all`]),
    /// writing its stdout and stderr to `log`.
    pub fn add(&mut self, name: String, args: Vec<String>, log: PathBuf) {
        self.children.push(ChildSpec {
            name,
            args,
            log,
            child: None,
            started: Instant::now(),
            restarts: 0,
        });
    }

    fn spawn(&self, spec: &ChildSpec) -> anyhow::Result<Child> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&spec.log)
            .with_context(|| format!("{}", spec.log.display()))?;
        let mut command = Command::new(&self.exe);
        command
            .args(&spec.args)
            .env(KEY_FILE_ENV, &self.key_file)
            .env(SUPERVISOR_PID_ENV, std::process::id().to_string())
            .stdin(Stdio::null())
            .stdout(log.try_clone().with_context(|| format!("{}", spec.log.display()))?)
            .stderr(log);
        // Own process group: Ctrl-C reaches only `train`, which then stops
        // the children in order after the final checkpoint.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        command.spawn().with_context(|| format!("starting {}", spec.name))
    }

    /// Starts child `i` (again).
    fn launch(&mut self, i: usize) -> anyhow::Result<()> {
        let child = self.spawn(&self.children[i])?;
        self.children[i].child = Some(child);
        self.children[i].started = Instant::now();
        Ok(())
    }

    /// Starts every child; on an error, stops those that did start.
    pub fn start_all(&mut self) -> anyhow::Result<()> {
        for i in 0..self.children.len() {
            if let Err(e) = self.launch(i) {
                self.stop_all();
                return Err(e);
            }
        }
        Ok(())
    }

    /// Restarts children that exited (bounded); returns an error when one
    /// keeps dying.
    fn check(&mut self) -> anyhow::Result<()> {
        for i in 0..self.children.len() {
            let exited = match self.children[i].child.as_mut().map(Child::try_wait) {
                Some(Ok(Some(status))) => Some(status),
                _ => None,
            };
            if let Some(status) = exited {
                let spec = &mut self.children[i];
                if spec.started.elapsed() >= HEALTHY_AFTER {
                    spec.restarts = 0;
                }
                spec.restarts += 1;
                if spec.restarts > MAX_RESTARTS {
                    anyhow::bail!(
                        "{} exited {} times (last: {status}); see {}",
                        spec.name,
                        spec.restarts,
                        spec.log.display()
                    );
                }
                tracing::warn!(child = %spec.name, %status, log = %spec.log.display(), "child exited; restarting it");
                self.launch(i)?;
            }
        }
        Ok(())
    }

    /// SIGTERM to every child, then SIGKILL to those still running after
    /// [`STOP_GRACE`].
    pub fn stop_all(&mut self) {
        for spec in &self.children {
            if let Some(child) = &spec.child {
                let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
            }
        }
        let deadline = Instant::now() + STOP_GRACE;
        for spec in &mut self.children {
            if let Some(child) = spec.child.as_mut() {
                while Instant::now() < deadline {
                    if let Ok(Some(_)) = child.try_wait() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// A thread that restarts exited children until `stop` is set. When a child
/// keeps failing it logs why, sets `failed` and then `stop` (which ends the
/// learner too).
pub fn watch(supervisor: Arc<Mutex<Supervisor>>, stop: Arc<AtomicBool>, failed: Arc<AtomicBool>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(WATCH_EVERY);
            if stop.load(Ordering::Relaxed) {
                break;
            }
            if let Err(e) = supervisor.lock().check() {
                tracing::error!("{e:#}");
                failed.store(true, Ordering::Relaxed);
                stop.store(true, Ordering::Relaxed);
            }
        }
    })
}
