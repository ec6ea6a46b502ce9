//! `cml-rl eval CKPT_A CKPT_B ... --episodes N`: several checkpoints of one
//! env on the same seeds, side by side, each against the first with a 95%
//! interval on the paired difference of returns.

use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::eval::{config_of, evaluate, mean_std, EvalReport};

/// One checkpoint's return minus the first one's, over the same seeds.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Difference {
    pub checkpoint: PathBuf,
    pub baseline: PathBuf,
    /// Mean over episodes of (return − baseline's return on the same seed).
    pub mean: f64,
    /// The 95% interval of that mean (Student's t on the paired differences).
    pub low: f64,
    pub high: f64,
}

/// What the comparison measured.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Comparison {
    pub env: String,
    pub episodes: usize,
    /// Episode `i` of every checkpoint was reset with seed `seed + i`.
    pub seed: u64,
    pub reports: Vec<EvalReport>,
    pub differences: Vec<Difference>,
}

/// Two-sided 95% quantiles of Student's t for 1..=30 degrees of freedom;
/// beyond, [`t_95`]'s expansion.
const T_95: [f64; 30] = [
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131, 2.120,
    2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
];

/// The two-sided 95% quantile of Student's t with `df` degrees of freedom:
/// the table up to 30, then the Cornish–Fisher expansion around the
/// normal's 1.959964 (within 1e-3 of the exact value from 31 on).
pub fn t_95(df: usize) -> f64 {
    if let Some(t) = df.checked_sub(1).and_then(|i| T_95.get(i)) {
        return *t;
    }
    let (z, v) = (1.959_964f64, df.max(1) as f64);
    z + (z.powi(3) + z) / (4.0 * v) + (5.0 * z.powi(5) + 16.0 * z.powi(3) + 3.0 * z) / (96.0 * v * v)
}

/// The mean of `b[i] − a[i]` and its 95% interval (a zero-width interval
/// for a single episode, where there is no spread to measure).
pub fn paired_difference(a: &[f64], b: &[f64]) -> (f64, f64, f64) {
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| y - x).collect();
    let n = d.len();
    let (mean, population_std) = mean_std(&d);
    if n < 2 {
        return (mean, mean, mean);
    }
    let sample_std = population_std * (n as f64 / (n - 1) as f64).sqrt();
    let t = t_95(n - 1);
    let half = t * sample_std / (n as f64).sqrt();
    (mean, mean - half, mean + half)
}

/// Evaluates every checkpoint (config: `config`, else each one's run
/// directory's) on the same seeds. Checkpoints of different envs (id or
/// time limit) are refused before any episode is played; the same env with
/// other `[env.params]` is played as each config says, with a warning.
pub fn compare(
    checkpoints: &[PathBuf],
    config: Option<&Path>,
    episodes: usize,
    sample: bool,
) -> anyhow::Result<Comparison> {
    let mut configs = Vec::with_capacity(checkpoints.len());
    for checkpoint in checkpoints {
        let path = config.map_or_else(|| config_of(checkpoint), Path::to_path_buf);
        configs.push(Config::load(&path)?);
    }
    let (Some(first), Some(first_config)) = (checkpoints.first(), configs.first()) else {
        anyhow::bail!("eval needs at least one checkpoint");
    };
    let env = &first_config.env;
    for (checkpoint, other) in checkpoints.iter().zip(&configs).skip(1) {
        let o = &other.env;
        // The time limit each one plays with: its config's, else the registry's.
        let limit = |c: &Config| -> anyhow::Result<Option<u64>> {
            Ok(c.env.max_episode_steps.or(cml_envs::max_episode_steps(&c.env.id)?))
        };
        if (o.id.as_str(), limit(other)?) != (env.id.as_str(), limit(first_config)?) {
            anyhow::bail!(
                "checkpoints of different envs: {} plays {} (max_episode_steps {:?}), {} plays {} (max_episode_steps {:?})",
                first.display(),
                env.id,
                limit(first_config)?,
                checkpoint.display(),
                o.id,
                limit(other)?
            );
        }
        // The same env with other parameters (or a default written out):
        // each plays its own, and the user is told.
        if o.params != env.params {
            tracing::warn!(
                "{} plays {} with params {:?}, {} with {:?}",
                first.display(),
                env.id,
                env.params,
                checkpoint.display(),
                o.params
            );
        }
    }
    let seed = first_config.seed.wrapping_add(1_000_003);
    let mut reports = Vec::with_capacity(checkpoints.len());
    for (checkpoint, config) in checkpoints.iter().zip(&configs) {
        reports.push(evaluate(checkpoint, config, episodes, sample, seed)?);
    }
    let differences = reports
        .iter()
        .skip(1)
        .map(|r| {
            let (mean, low, high) = paired_difference(&reports[0].returns, &r.returns);
            Difference {
                checkpoint: r.checkpoint.clone(),
                baseline: reports[0].checkpoint.clone(),
                mean,
                low,
                high,
            }
        })
        .collect();
    Ok(Comparison {
        env: env.id.clone(),
        episodes,
        seed,
        reports,
        differences,
    })
}

/// `cml-rl eval` with two or more checkpoints: a table, or `--json`.
pub fn run_compare(
    checkpoints: &[PathBuf],
    config: Option<&Path>,
    episodes: usize,
    sample: bool,
    json: bool,
) -> anyhow::Result<()> {
    let c = compare(checkpoints, config, episodes, sample)?;
    if json {
        println!("{}", serde_json::to_string(&c)?);
        return Ok(());
    }
    let mode = if sample { "sampled" } else { "greedy" };
    println!(
        "{} over {} episodes ({mode}), seeds {}..{}:",
        c.env,
        c.episodes,
        c.seed,
        c.seed + c.episodes as u64 - 1
    );
    for (i, r) in c.reports.iter().enumerate() {
        let vs = match i.checked_sub(1).and_then(|j| c.differences.get(j)) {
            Some(d) => format!("   {:+.2} [{:+.2}, {:+.2}] against the first", d.mean, d.low, d.high),
            None => String::new(),
        };
        println!(
            "  {}: return {:.2} ± {:.2}, length {:.1} ± {:.1}{vs}",
            r.checkpoint.display(),
            r.mean_return,
            r.std_return,
            r.mean_length,
            r.std_length
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paired_difference_by_hand() {
        // d = [1, 2, 3]: mean 2, sample std 1, t(2) = 4.303, half = 4.303 / √3.
        let (mean, low, high) = paired_difference(&[0.0, 0.0, 0.0], &[1.0, 2.0, 3.0]);
        let half = 4.303 / 3f64.sqrt();
        assert!((mean - 2.0).abs() < 1e-12);
        assert!((low - (2.0 - half)).abs() < 1e-9 && (high - (2.0 + half)).abs() < 1e-9);
        // Equal returns: a zero difference, a zero-width interval.
        assert_eq!(paired_difference(&[5.0, 7.0], &[5.0, 7.0]), (0.0, 0.0, 0.0));
        // One episode: no spread.
        assert_eq!(paired_difference(&[1.0], &[4.0]), (3.0, 3.0, 3.0));
        // Many episodes: t(99) = 1.984.
        let a = vec![0.0; 100];
        let b: Vec<f64> = (0..100).map(|i| f64::from(i % 2)).collect();
        let (mean, low, _) = paired_difference(&a, &b);
        let sample_std = (0.25f64 * 100.0 / 99.0).sqrt();
        assert!((mean - 0.5).abs() < 1e-12 && (mean - low - t_95(99) * sample_std / 10.0).abs() < 1e-9);
    }

    #[test]
    fn t_quantiles_match_the_exact_values() {
        // Exact two-sided 95% quantiles (scipy.stats.t.ppf(0.975, df)).
        for (df, exact) in [
            (1, 12.706),
            (30, 2.042),
            (31, 2.0395),
            (40, 2.0211),
            (60, 2.0003),
            (120, 1.9799),
            (1000, 1.9623),
        ] {
            assert!((t_95(df) - exact).abs() < 1.5e-3, "df {df}: {} vs {exact}", t_95(df));
        }
    }
}
