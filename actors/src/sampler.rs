//! Drawing actions from the policy's output, one RNG stream per actor.

use rand::rngs::SmallRng;
use rand::Rng;

/// ln(2π)/2, for the Gaussian log-density.
const HALF_LN_2PI: f32 = 0.918_938_5;

/// Samples a ~ softmax(logits) (inverse CDF) and returns (a, log π(a)).
pub fn sample_categorical(logits: &[f32], rng: &mut SmallRng) -> (u32, f32) {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f32;
    for &l in logits {
        sum += (l - max).exp();
    }
    let u = rng.random::<f32>() * sum;
    let mut cumulative = 0.0f32;
    let mut action = logits.len() - 1;
    for (i, &l) in logits.iter().enumerate() {
        cumulative += (l - max).exp();
        if u < cumulative {
            action = i;
            break;
        }
    }
    // log softmax: l_a - max - ln Σ exp(l - max)
    (action as u32, logits[action] - max - sum.ln())
}

/// One standard normal draw (Box–Muller).
fn standard_normal(rng: &mut SmallRng) -> f32 {
    // u1 in (0, 1]: ln(u1) is finite.
    let u1 = 1.0 - rng.random::<f32>();
    let u2 = rng.random::<f32>();
    (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
}

/// Samples a ~ N(mean, exp(log_std)²) per dimension into `action` and
/// returns log π(a) = Σ_d [−(a−μ)²/(2σ²) − log σ − ln(2π)/2].
pub fn sample_gaussian(mean: &[f32], log_std: &[f32], rng: &mut SmallRng, action: &mut [f32]) -> f32 {
    let mut log_prob = 0.0f32;
    for ((a, &mu), &ls) in action.iter_mut().zip(mean).zip(log_std) {
        let z = standard_normal(rng);
        *a = mu + ls.exp() * z;
        log_prob += -0.5 * z * z - ls - HALF_LN_2PI;
    }
    log_prob
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn categorical_frequencies_and_log_probs() {
        let logits = [0.0f32, (2.0f32).ln(), (5.0f32).ln()]; // probabilities 1/8, 2/8, 5/8
        let mut rng = SmallRng::seed_from_u64(1);
        let mut counts = [0usize; 3];
        for _ in 0..80_000 {
            let (a, lp) = sample_categorical(&logits, &mut rng);
            counts[a as usize] += 1;
            let p = [1.0f32 / 8.0, 2.0 / 8.0, 5.0 / 8.0][a as usize];
            assert!((lp - p.ln()).abs() < 1e-5);
        }
        for (c, p) in counts.iter().zip([0.125, 0.25, 0.625]) {
            assert!((*c as f64 / 80_000.0 - p).abs() < 0.01, "{counts:?}");
        }
    }

    #[test]
    fn gaussian_moments_and_log_density() {
        let mut rng = SmallRng::seed_from_u64(2);
        let (mean, log_std) = ([1.5f32], [(0.5f32).ln()]);
        let mut a = [0.0f32];
        let (mut sum, mut sum_sq) = (0.0f64, 0.0f64);
        let n = 100_000;
        for _ in 0..n {
            let lp = sample_gaussian(&mean, &log_std, &mut rng, &mut a);
            let x = f64::from(a[0]);
            sum += x;
            sum_sq += x * x;
            let expected = -((a[0] - 1.5) / 0.5).powi(2) / 2.0 - 0.5f32.ln() - HALF_LN_2PI;
            assert!((lp - expected).abs() < 1e-4);
        }
        let m = sum / n as f64;
        let var = sum_sq / n as f64 - m * m;
        assert!((m - 1.5).abs() < 0.01 && (var - 0.25).abs() < 0.01, "{m} {var}");
    }
}
