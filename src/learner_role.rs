//! The learner role from a config: builds the configured algorithm and the
//! loop's setup, then runs `cml_run::run_learner`. `cml-rl learner` runs it
//! alone (cluster runs); `cml-rl train` runs it beside its children.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use anyhow::Context;
use cml_proto::SharedKey;
use cml_run::{algorithms, LearnerOptions, LearnerSetup, RunSummary};

use crate::config::Config;

/// Runs the learner of `config`. `key_file` overrides the config's key
/// (`train` makes one per run).
pub fn run(
    config: &Config,
    options: LearnerOptions,
    key_file: Option<&Path>,
    stop: &AtomicBool,
) -> anyhow::Result<RunSummary> {
    let key = match key_file {
        Some(path) => SharedKey::read_file(path)?,
        None => config.read_key()?,
    };
    let layout = config.unroll_layout()?;
    let mut algorithm = algorithms::build(
        &config.learner,
        &config.model,
        &layout,
        &config.observation_shape()?,
        config.train.total_frames,
        config.seed,
        None,
    )?;
    let setup = LearnerSetup {
        layout,
        key,
        sockets: config.transport.socket_options(),
        replay_endpoints: config.replay_endpoints(),
        weights_endpoints: config.weights_endpoints(),
        learner: &config.learner,
        train: &config.train,
        beta: config.replay.beta,
        update_priorities: config.replay.mode == cml_replay::index::SamplingMode::Prioritized,
        config_fingerprint: cml_learner::checkpoint::config_fingerprint(&config.fingerprint_source()),
        seed: config.seed,
        options,
    };
    Ok(cml_run::run_learner(setup, algorithm.as_mut(), stop)?)
}

/// A run directory name: `{runs_dir}/{env}-{unix seconds}`.
pub fn new_run_dir(config: &Config) -> anyhow::Result<PathBuf> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let name: String = config
        .env
        .id
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' })
        .collect();
    let mut dir = config.train.runs_dir.join(format!("{name}-{secs}"));
    let mut n = 1;
    while dir.exists() {
        dir = config.train.runs_dir.join(format!("{name}-{secs}-{n}"));
        n += 1;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// Prints a run summary.
pub fn print_summary(summary: &RunSummary, run_dir: &Path) {
    println!(
        "stopped: {} after {:.1} s: {} env frames produced, {} consumed, {} learner steps, {} episodes, mean return (last 100) {}",
        summary.reason,
        summary.seconds,
        summary.env_frames,
        summary.frames_consumed,
        summary.learner_steps,
        summary.episodes,
        summary.mean_return.map_or("-".to_string(), |m| format!("{m:.1}"))
    );
    println!("run directory: {}", run_dir.display());
}

/// `cml-rl learner --config FILE [--run-dir DIR] [--resume]`: the learner
/// alone, for cluster runs.
pub fn run_command(config_path: &Path, run_dir: Option<PathBuf>, resume: bool) -> anyhow::Result<()> {
    let launched = std::time::Instant::now();
    let config = Config::load(config_path)?;
    cml_run::plumbing::init_compute_threads();
    let run_dir = match run_dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            dir
        }
        None if resume => anyhow::bail!("--resume needs --run-dir"),
        None => new_run_dir(&config)?,
    };
    // A copy of the config, as `train` keeps one: `eval` finds the network
    // and env there.
    let copy = run_dir.join("config.toml");
    if !copy.exists() {
        std::fs::copy(config_path, &copy)
            .with_context(|| format!("copying {} to {}", config_path.display(), copy.display()))?;
    }
    let stop = cml_run::plumbing::stop_flag()?;
    let options = LearnerOptions {
        run_dir: run_dir.clone(),
        resume,
        progress: false,
        launched,
    };
    let summary = run(&config, options, None, &stop)?;
    print_summary(&summary, &run_dir);
    Ok(())
}
