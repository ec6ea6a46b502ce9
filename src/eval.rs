//! `cml-rl eval CHECKPOINT --episodes N`: runs a trained policy and reports
//! mean ± std return and length.

use std::path::{Path, PathBuf};

use anyhow::Context;
use candle_core::Device;
use cml_learner::checkpoint::Checkpointer;

use crate::config::Config;

/// The step limit of an eval episode when neither the config nor the
/// registry gives the env one (a policy that never ends the episode would
/// otherwise run forever).
const EVAL_MAX_EPISODE_STEPS: u64 = 100_000;

/// What `eval` measured.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct EvalReport {
    pub checkpoint: PathBuf,
    pub env: String,
    pub episodes: usize,
    pub greedy: bool,
    pub mean_return: f64,
    pub std_return: f64,
    pub mean_length: f64,
    pub std_length: f64,
    pub returns: Vec<f64>,
}

/// The mean and the (population) standard deviation.
pub fn mean_std(values: &[f64]) -> (f64, f64) {
    let n = values.len().max(1) as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

/// The run's config for a checkpoint: `RUN_DIR/config.toml` beside
/// `RUN_DIR/checkpoints/`.
pub fn config_of(checkpoint: &Path) -> PathBuf {
    checkpoint
        .parent()
        .and_then(Path::parent)
        .map(|run| run.join("config.toml"))
        .unwrap_or_else(|| PathBuf::from("config.toml"))
}

/// Runs `episodes` episodes with the checkpoint's policy (greedy unless
/// `sample`), seeded from `seed`.
pub fn evaluate(
    checkpoint: &Path,
    config: &Config,
    episodes: usize,
    sample: bool,
    seed: u64,
) -> anyhow::Result<EvalReport> {
    if episodes == 0 {
        anyhow::bail!("--episodes must be at least 1");
    }
    let layout = config.unroll_layout()?;
    let observation_shape = config.observation_shape()?;
    let mut algorithm = cml_run::algorithms::build(
        &config.learner,
        &config.model,
        &layout,
        &observation_shape,
        config.train.total_frames,
        config.seed,
        Some("cpu"),
    )?;
    let loaded = Checkpointer::load(checkpoint, &Device::Cpu)?;
    Checkpointer::restore(algorithm.as_mut(), &loaded, None)
        .with_context(|| format!("{} does not fit the config's network", checkpoint.display()))?;
    // The policy exactly as actors get it: from the published weights.
    let policy = cml_actors::policy_from_weights(
        &algorithm.weights()?,
        algorithm.steps() + 1,
        &layout,
        &observation_shape,
        &config.model,
    )?;
    let mut env = cml_envs::make_with_time_limit(
        &config.env.id,
        &config.env.params,
        config
            .env
            .max_episode_steps
            .or(cml_envs::max_episode_steps(&config.env.id)?)
            // An env registered without a time limit still ends here.
            .or(Some(EVAL_MAX_EPISODE_STEPS)),
    )?;
    let played =
        cml_actors::play::play_episodes(&policy.net, &mut env, episodes, seed, sample, config.model.frame_stack)?;
    let returns: Vec<f64> = played.iter().map(|e| e.score).collect();
    let lengths: Vec<f64> = played.iter().map(|e| e.length as f64).collect();
    let (mean_return, std_return) = mean_std(&returns);
    let (mean_length, std_length) = mean_std(&lengths);
    Ok(EvalReport {
        checkpoint: checkpoint.to_path_buf(),
        env: config.env.id.clone(),
        episodes,
        greedy: !sample,
        mean_return,
        std_return,
        mean_length,
        std_length,
        returns,
    })
}

/// `cml-rl eval`.
pub fn run_eval(
    checkpoint: &Path,
    config: Option<&Path>,
    episodes: usize,
    sample: bool,
    json: bool,
) -> anyhow::Result<()> {
    let config_path = config.map_or_else(|| config_of(checkpoint), Path::to_path_buf);
    let config = Config::load(&config_path)?;
    let report = evaluate(
        checkpoint,
        &config,
        episodes,
        sample,
        config.seed.wrapping_add(1_000_003),
    )?;
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "{} over {} episodes ({}): return {:.2} ± {:.2}, length {:.1} ± {:.1}",
            report.env,
            report.episodes,
            if report.greedy { "greedy" } else { "sampled" },
            report.mean_return,
            report.std_return,
            report.mean_length,
            report.std_length
        );
    }
    Ok(())
}
