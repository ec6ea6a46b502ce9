//! `cml-rl train CONFIG`: the whole system on one machine. The replay shards
//! and the actor host are child processes of this same binary (`cml-rl
//! replay`, `cml-rl actor`, see [`crate::supervisor`]), connected over
//! loopback ZeroMQ exactly as in a cluster; the learner runs in this
//! process, which also supervises the children and owns the run directory.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use cml_proto::SharedKey;
use parking_lot::Mutex;

use cml_run::plumbing::{stop_flag, KEY_FILE_ENV};
use cml_run::LearnerOptions;

use crate::config::Config;
use crate::learner_role::{new_run_dir, print_summary};
use crate::supervisor::{watch, Supervisor};

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
        (Some(dir), None) => (Config::load(&dir.join("config.toml"))?, dir.to_path_buf()),
        (None, Some(path)) => {
            let config = Config::load(path)?;
            let dir = new_run_dir(&config)?;
            std::fs::copy(path, dir.join("config.toml")).with_context(|| format!("copying {}", path.display()))?;
            (config, dir)
        }
        (None, None) => anyhow::bail!("train needs a config file or --resume RUN_DIR"),
    };
    // Before any thread starts.
    cml_run::plumbing::init_compute_threads();
    let key_file = run_key_file(&config, &run_dir, resume.is_some())?;
    let logs = run_dir.join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let mut supervisor = Supervisor::new(key_file.clone())?;
    let config_arg = run_dir.join("config.toml").to_string_lossy().into_owned();
    for i in 0..config.replay.shards {
        let args = ["replay", "--config", &config_arg, "--shard", &i.to_string()].map(String::from);
        supervisor.add(
            format!("replay shard {i}"),
            args.to_vec(),
            logs.join(format!("replay-{i}.log")),
        );
    }
    let args = ["actor", "--config", &config_arg].map(String::from);
    supervisor.add("actor host".into(), args.to_vec(), logs.join("actor.log"));
    let stop = stop_flag()?;
    supervisor.start_all()?;
    let supervisor = Arc::new(Mutex::new(supervisor));
    let failed = Arc::new(AtomicBool::new(false));
    let watcher = watch(Arc::clone(&supervisor), Arc::clone(&stop), Arc::clone(&failed));
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

/// The run's key file (absolute, handed to the children): `CML_KEY_FILE`
/// when set, else the config's `transport.key_file` for a new run, else the
/// run directory's `run.key`, made on first use.
fn run_key_file(config: &Config, run_dir: &Path, resume: bool) -> anyhow::Result<PathBuf> {
    let key_file = match (&config.transport.key_file, std::env::var_os(KEY_FILE_ENV)) {
        (_, Some(env)) => PathBuf::from(env),
        (Some(path), None) if !resume => config.resolve(path),
        _ => {
            let path = run_dir.join("run.key");
            if !path.exists() {
                SharedKey::generate()?.write_new_file(&path)?;
            }
            path
        }
    };
    std::fs::canonicalize(&key_file).with_context(|| format!("{}", key_file.display()))
}
