//! `cml-rl rollout`: runs the configured env under a uniformly random policy
//! through [`cml_envs::make_vec`] and reports episode statistics. A smoke test of an
//! env and its config (yours included) before training on it.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use cml_envs::rng::NumpyRng;
use cml_envs::VecActions;

use crate::config::Config;

/// What to run.
#[derive(Clone, Debug)]
pub struct RolloutOptions {
    /// Stop after this many finished episodes.
    pub episodes: usize,
    /// Envs stepped together.
    pub num_envs: usize,
    /// Give up after this long, even with fewer episodes.
    pub time_limit: Duration,
}

impl Default for RolloutOptions {
    fn default() -> Self {
        RolloutOptions {
            episodes: 100,
            num_envs: 16,
            time_limit: Duration::from_secs(60),
        }
    }
}

/// Statistics of the finished episodes.
#[derive(Clone, Debug, PartialEq)]
pub struct RolloutReport {
    pub env_id: String,
    pub episodes: usize,
    pub mean_return: f64,
    pub std_return: f64,
    pub mean_length: f64,
    pub terminated: usize,
    pub truncated: usize,
    pub env_steps: u64,
    pub seconds: f64,
}

impl std::fmt::Display for RolloutReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} episodes under a random policy: return {:.2} ± {:.2}, length {:.1} \
             ({} terminated, {} truncated); {} env steps in {:.2} s ({:.0} steps/s)",
            self.env_id,
            self.episodes,
            self.mean_return,
            self.std_return,
            self.mean_length,
            self.terminated,
            self.truncated,
            self.env_steps,
            self.seconds,
            self.env_steps as f64 / self.seconds.max(1e-9)
        )
    }
}

/// Runs the rollout. The envs come from the process-wide registry, so envs a
/// program registered before calling this are available by id.
pub fn run(config: &Config, options: &RolloutOptions) -> anyhow::Result<RolloutReport> {
    if options.num_envs == 0 || options.episodes == 0 {
        bail!("rollout needs at least one env and one episode");
    }
    let env_cfg = &config.env;
    let limit = match env_cfg.max_episode_steps {
        Some(steps) => Some(steps),
        None => cml_envs::max_episode_steps(&env_cfg.id).context("env.id")?,
    };
    let mut vec_env =
        cml_envs::make_vec_with_time_limit(&env_cfg.id, &env_cfg.params, options.num_envs, limit).context("env")?;
    let space = vec_env.action_space().clone();
    let n = vec_env.num_envs();
    let mut discrete = vec![0i64; n];
    let mut continuous = vec![0.0f32; n * space.flat_dim()];
    let mut rng = NumpyRng::from_seed(config.seed ^ 0x5eed_ac70);
    let mut returns = vec![0.0f64; n];
    let mut lengths = vec![0u64; n];
    let (mut finished_returns, mut finished_lengths) = (Vec::new(), Vec::new());
    let (mut terminated, mut truncated, mut env_steps) = (0usize, 0usize, 0u64);

    let start = Instant::now();
    vec_env.reset(Some(config.seed))?;
    while finished_returns.len() < options.episodes && start.elapsed() < options.time_limit {
        space.sample(&mut rng, &mut discrete, &mut continuous);
        let actions = if space.is_discrete() {
            VecActions::Discrete(&discrete)
        } else {
            VecActions::Continuous(&continuous)
        };
        vec_env.step(actions)?;
        env_steps += n as u64;
        for i in 0..n {
            returns[i] += vec_env.rewards()[i];
            lengths[i] += 1;
            let (term, trunc) = (vec_env.terminated()[i], vec_env.truncated()[i]);
            if term || trunc {
                if finished_returns.len() < options.episodes {
                    finished_returns.push(returns[i]);
                    finished_lengths.push(lengths[i]);
                    terminated += usize::from(term);
                    truncated += usize::from(trunc && !term);
                }
                returns[i] = 0.0;
                lengths[i] = 0;
            }
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let k = finished_returns.len();
    if k == 0 {
        bail!(
            "{}: no episode finished within {:?}; set env.max_episode_steps",
            env_cfg.id,
            options.time_limit
        );
    }
    let (mean_return, std_return) = crate::eval::mean_std(&finished_returns);
    Ok(RolloutReport {
        env_id: env_cfg.id.clone(),
        episodes: k,
        mean_return,
        std_return,
        mean_length: finished_lengths.iter().sum::<u64>() as f64 / k as f64,
        terminated,
        truncated,
        env_steps,
        seconds,
    })
}
