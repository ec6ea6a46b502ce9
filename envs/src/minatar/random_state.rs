//! NumPy's legacy `numpy.random.RandomState` over MT19937, as far as MinAtar
//! draws from it: `rand()` and `randint(low, high[, size])`.
//!
//! - Seeding: `RandomState(seed)` for `seed < 2³²` is MT19937's
//!   `init_genrand(seed)`. NumPy refuses larger integers; here a seed of 2³²
//!   or more is `RandomState([seed & 0xffffffff, seed >> 32])`, NumPy's
//!   `init_by_array` of the two 32-bit halves, so every `u64` seed works and
//!   the ones NumPy accepts agree with it.
//! - `rand()`: a 53-bit double from two 32-bit outputs,
//!   `((a >> 5) · 2²⁶ + (b >> 6)) / 2⁵³`.
//! - `randint(low, high)`: the closed range `[low, high − 1]` by masked
//!   rejection on 32-bit outputs (`rng = high − 1 − low`, mask = the smallest
//!   all-ones value ≥ rng, draw `next_u32() & mask` until ≤ rng). A range of
//!   one value draws nothing.

use rand_mt::Mt;

/// The random stream of one MinAtar environment (the env and its game share
/// it, as `Environment.seed` makes them).
#[derive(Clone)]
pub struct RandomState {
    mt: Box<Mt>,
}

impl std::fmt::Debug for RandomState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RandomState(MT19937)")
    }
}

impl RandomState {
    /// `numpy.random.RandomState(seed)` (see the module notes for seeds of
    /// 2³² and more).
    pub fn from_seed(seed: u64) -> Self {
        let mt = match u32::try_from(seed) {
            Ok(small) => Mt::new(small),
            Err(_) => Mt::new_with_key([seed as u32, (seed >> 32) as u32]),
        };
        RandomState { mt: Box::new(mt) }
    }

    /// A stream seeded from the operating system (NumPy's `RandomState()`),
    /// for an env reset without ever being given a seed.
    pub fn from_os_entropy() -> Self {
        let bits = crate::rng::os_entropy();
        let key: [u32; 4] = std::array::from_fn(|i| (bits >> (32 * i)) as u32);
        RandomState {
            mt: Box::new(Mt::new_with_key(key)),
        }
    }

    /// The next raw 32-bit output.
    #[inline]
    pub fn next_u32(&mut self) -> u32 {
        self.mt.next_u32()
    }

    /// `RandomState.rand()`: a double in [0, 1).
    #[inline]
    pub fn rand(&mut self) -> f64 {
        let a = self.next_u32() >> 5;
        let b = self.next_u32() >> 6;
        (f64::from(a) * 67_108_864.0 + f64::from(b)) / 9_007_199_254_740_992.0
    }

    /// `RandomState.randint(low, high)`: one integer in `[low, high)`.
    /// `high > low`; MinAtar's ranges are all far below 2³².
    #[inline]
    pub fn randint(&mut self, low: i64, high: i64) -> i64 {
        let range = (high - low - 1) as u64;
        if range == 0 {
            return low;
        }
        if range >= u64::from(u32::MAX) {
            // Not reached by MinAtar; the full 32-bit range takes one output.
            return low + i64::from(self.next_u32());
        }
        let mask = u64::MAX >> (range | 1).leading_zeros();
        loop {
            let value = u64::from(self.next_u32()) & mask;
            if value <= range {
                return low + value as i64;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values printed by NumPy 2.4.6's legacy `RandomState`.
    #[test]
    fn draws_match_numpy_random_state() {
        // np.random.RandomState(0).rand(), .rand()
        let mut rs = RandomState::from_seed(0);
        assert_eq!(rs.rand(), 0.5488135039273248);
        assert_eq!(rs.rand(), 0.7151893663724195);
        // np.random.RandomState(5).randint(1, 6, 8)
        let mut rs = RandomState::from_seed(5);
        let got: Vec<i64> = (0..8).map(|_| rs.randint(1, 6)).collect();
        assert_eq!(got, [4, 1, 2, 1, 5, 4, 1, 1]);
        // RandomState(7): randint(1) draws nothing, so rand() is the first.
        let mut a = RandomState::from_seed(7);
        assert_eq!(a.randint(0, 1), 0);
        let mut b = RandomState::from_seed(7);
        assert_eq!(a.rand(), b.rand());
        // np.random.RandomState([1, 1]).rand(): init_by_array of the halves.
        let mut rs = RandomState::from_seed((1u64 << 32) | 1);
        assert_eq!(rs.rand(), 0.2309331037176915);
    }
}
