//! Statistical tests with fixed seeds: the empirical frequencies of
//! [`ReplayIndex::sample`] pass a chi-square goodness-of-fit test against the
//! intended distribution, `P(i) = p_i^alpha / sum_k p_k^alpha` (PER eq. 1).

use cml_replay::{IndexConfig, ReplayIndex, SamplingMode};

/// 0.999 quantile of the chi-square distribution with 7 degrees of freedom.
const CHI_SQUARE_7_DOF_999: f64 = 24.32;
const DRAWS: usize = 200_000;
const BATCH: usize = 500;

/// Inserts items with priorities 1..=8, draws `DRAWS` samples, returns the
/// chi-square statistic against `expected` (probabilities summing to 1).
fn chi_square(mode: SamplingMode, alpha: f64, seed: u64, expected: &[f64; 8]) -> f64 {
    let config = IndexConfig {
        alpha,
        priority_epsilon: 1e-6,
        seed,
        ..IndexConfig::new(8, mode)
    };
    let mut index = match ReplayIndex::new(config) {
        Ok(index) => index,
        Err(e) => panic!("{e}"),
    };
    for priority in 1..=8 {
        if let Err(e) = index.insert(Some(f64::from(priority))) {
            panic!("{e}");
        }
    }
    let mut counts = [0u64; 8];
    let mut out = Vec::with_capacity(BATCH);
    for _ in 0..DRAWS / BATCH {
        index.sample(BATCH, &mut out);
        assert_eq!(out.len(), BATCH);
        for s in &out {
            counts[s.slot] += 1;
            // The reported probability is the intended one.
            assert!((s.probability - expected[s.slot]).abs() < 1e-12);
        }
    }
    assert_eq!(counts.iter().sum::<u64>(), DRAWS as u64);
    // X^2 = sum_i (O_i - E_i)^2 / E_i
    counts
        .iter()
        .zip(expected)
        .map(|(&observed, &p)| {
            let expected_count = p * DRAWS as f64;
            (observed as f64 - expected_count).powi(2) / expected_count
        })
        .sum()
}

fn normalized(weights: [f64; 8]) -> [f64; 8] {
    let total: f64 = weights.iter().sum();
    weights.map(|w| w / total)
}

#[test]
fn prioritized_alpha_1_is_proportional() {
    let expected = normalized(std::array::from_fn(|i| (i + 1) as f64));
    let statistic = chi_square(SamplingMode::Prioritized, 1.0, 7, &expected);
    assert!(statistic < CHI_SQUARE_7_DOF_999, "chi-square {statistic}");
}

#[test]
fn prioritized_alpha_half_is_proportional_to_sqrt() {
    let expected = normalized(std::array::from_fn(|i| ((i + 1) as f64).sqrt()));
    let statistic = chi_square(SamplingMode::Prioritized, 0.5, 11, &expected);
    assert!(statistic < CHI_SQUARE_7_DOF_999, "chi-square {statistic}");
}

#[test]
fn uniform_is_uniform() {
    let expected = [1.0 / 8.0; 8];
    let statistic = chi_square(SamplingMode::Uniform, 1.0, 13, &expected);
    assert!(statistic < CHI_SQUARE_7_DOF_999, "chi-square {statistic}");
}

#[test]
fn wrong_distribution_is_detected() {
    // The test has power: uniform draws fail against priorities 1..=8.
    let expected = normalized(std::array::from_fn(|i| (i + 1) as f64));
    let statistic = chi_square_observed_uniform(&expected);
    assert!(statistic > CHI_SQUARE_7_DOF_999, "chi-square {statistic}");
}

/// Chi-square of uniform-mode draws against `expected` (probabilities not checked).
fn chi_square_observed_uniform(expected: &[f64; 8]) -> f64 {
    let mut index = match ReplayIndex::new(IndexConfig::new(8, SamplingMode::Uniform)) {
        Ok(index) => index,
        Err(e) => panic!("{e}"),
    };
    for _ in 0..8 {
        if let Err(e) = index.insert(None) {
            panic!("{e}");
        }
    }
    let mut counts = [0u64; 8];
    let mut out = Vec::with_capacity(BATCH);
    for _ in 0..DRAWS / BATCH {
        index.sample(BATCH, &mut out);
        for s in &out {
            counts[s.slot] += 1;
        }
    }
    counts
        .iter()
        .zip(expected)
        .map(|(&observed, &p)| (observed as f64 - p * DRAWS as f64).powi(2) / (p * DRAWS as f64))
        .sum()
}
