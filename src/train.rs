//! `cml-rl train CONFIG`: the whole system on one machine. The replay shards
//! and the actor host are child processes of this same binary (`cml-rl
//! replay`, `cml-rl actor`), connected over loopback ZeroMQ exactly as in a
//! cluster; the learner runs in this process, which also supervises the
//! children (restarting one that dies) and owns the run directory.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use cml_proto::SharedKey;
use parking_lot::Mutex;

use cml_run::plumbing::{stop_flag, KEY_FILE_ENV, SUPERVISOR_PID_ENV};
use cml_run::LearnerOptions;

use crate::config::Config;
use crate::learner_role::{new_run_dir, print_summary};

/// Restarts allowed per child before `train` gives up on it ...
const MAX_RESTARTS: u32 = 5;
/// ... counted again from 0 once a child has stayed up this long.
const HEALTHY_AFTER: Duration = Duration::from_secs(60);

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
struct Supervisor {
    exe: PathBuf,
    key_file: PathBuf,
    children: Vec<ChildSpec>,
}

impl Supervisor {
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

    fn start_all(&mut self) -> anyhow::Result<()> {
        for i in 0..self.children.len() {
            self.launch(i)?;
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

    /// SIGTERM to every child, then SIGKILL to those still running after 2 s.
    fn stop_all(&mut self) {
        for spec in &self.children {
            if let Some(child) = &spec.child {
                let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
            }
        }
        let deadline = Instant::now() + Duration::from_secs(2);
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

/// `cml-rl train CONFIG [--resume RUN_DIR]`.
pub fn run_train(config_path: Option<&Path>, resume: Option<&Path>) -> anyhow::Result<()> {
    let launched = Instant::now();
    let (config, run_dir) = match (resume, config_path) {
        (Some(dir), Some(path)) => anyhow::bail!(
            "give {} or --resume {}, not both: a resumed run reads {}",
            path.display(),
            dir.display(),
            dir.join("config.toml").display()
        ),
        (Some(dir), None) => {
            let config = Config::load(&dir.join("config.toml"))?;
            (config, dir.to_path_buf())
        }
        (None, Some(path)) => {
            let config = Config::load(path)?;
            let dir = new_run_dir(&config)?;
            std::fs::copy(path, dir.join("config.toml")).with_context(|| format!("copying {}", path.display()))?;
            (config, dir)
        }
        (None, None) => anyhow::bail!("train needs a config file or --resume RUN_DIR"),
    };
    // Before any thread starts.
    cml_run::plumbing::init_compute_threads(config.learner.cpu_threads);
    // The key: the config's, or one made for this run.
    let key_file = match (&config.transport.key_file, std::env::var_os(KEY_FILE_ENV)) {
        (_, Some(env)) => PathBuf::from(env),
        (Some(path), None) if resume.is_none() => config.resolve(path),
        _ => {
            let path = run_dir.join("run.key");
            if !path.exists() {
                SharedKey::generate()?.write_new_file(&path)?;
            }
            path
        }
    };
    let key_file = std::fs::canonicalize(&key_file).with_context(|| format!("{}", key_file.display()))?;
    let logs = run_dir.join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let config_arg = run_dir.join("config.toml").to_string_lossy().into_owned();
    let mut children: Vec<ChildSpec> = (0..config.replay.shards)
        .map(|i| ChildSpec {
            name: format!("replay shard {i}"),
            args: vec![
                "replay".into(),
                "--config".into(),
                config_arg.clone(),
                "--shard".into(),
                i.to_string(),
            ],
            log: logs.join(format!("replay-{i}.log")),
            child: None,
            started: Instant::now(),
            restarts: 0,
        })
        .collect();
    children.push(ChildSpec {
        name: "actor host".into(),
        args: vec!["actor".into(), "--config".into(), config_arg],
        log: logs.join("actor.log"),
        child: None,
        started: Instant::now(),
        restarts: 0,
    });
    let supervisor = Arc::new(Mutex::new(Supervisor {
        exe: std::env::current_exe().context("locating the cml-rl executable")?,
        key_file: key_file.clone(),
        children,
    }));
    let stop = stop_flag()?;
    // (The guard must be dropped before `stop_all` locks again.)
    let started = supervisor.lock().start_all();
    if let Err(e) = started {
        // Stop whatever did start before reporting.
        supervisor.lock().stop_all();
        return Err(e);
    }
    let failed = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (supervisor, stop, failed) = (Arc::clone(&supervisor), Arc::clone(&stop), Arc::clone(&failed));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(200));
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
    };
    println!("run directory: {}", run_dir.display());
    let options = LearnerOptions {
        run_dir: run_dir.clone(),
        resume: resume.is_some(),
        progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
        launched,
    };
    let result = crate::learner_role::run(&config, options, Some(&key_file), &stop);
    stop.store(true, Ordering::Relaxed);
    let _ = watcher.join();
    supervisor.lock().stop_all();
    if failed.load(Ordering::Relaxed) {
        // The cause, not its symptom in the learner (a replay timeout).
        let learner = result.err().map(|e| format!(" (learner: {e:#})")).unwrap_or_default();
        anyhow::bail!("a child process kept failing; see {}{learner}", logs.display());
    }
    let summary = result?;
    print_summary(&summary, &run_dir);
    Ok(())
}
