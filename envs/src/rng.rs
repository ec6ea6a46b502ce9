//! NumPy-compatible random numbers, so `reset(seed)` gives exactly the initial
//! state Gymnasium gives for the same seed.
//!
//! Gymnasium seeds every env with `np.random.Generator(np.random.PCG64(
//! np.random.SeedSequence(seed)))` and draws initial states with
//! `Generator.uniform`. This module reimplements that chain: NumPy's
//! `SeedSequence` entropy pool (pool size 4, 32-bit hash mixing), the PCG64
//! generator (128-bit LCG, XSL-RR output) and the 53-bit double conversion.
//! Nothing here allocates after construction.

/// NumPy `SeedSequence` constants (numpy/random/bit_generator.pyx).
const INIT_A: u32 = 0x43b0_d7e5;
const MULT_A: u32 = 0x931e_8875;
const INIT_B: u32 = 0x8b51_f9dd;
const MULT_B: u32 = 0x58f3_8ded;
const MIX_MULT_L: u32 = 0xca01_f9dd;
const MIX_MULT_R: u32 = 0x4973_f715;
const XSHIFT: u32 = 16;
const POOL_SIZE: usize = 4;

/// PCG64's 128-bit LCG multiplier (PCG_DEFAULT_MULTIPLIER_128).
const PCG_MULT: u128 = 0x2360_ed05_1fc6_5da4_4385_df64_9fcc_f645;

/// NumPy's `SeedSequence` for a seed made of up to four 32-bit words and no
/// spawn key: the pool after `mix_entropy`.
struct SeedSequence {
    pool: [u32; POOL_SIZE],
}

fn hashmix(value: u32, hash_const: &mut u32) -> u32 {
    let mut value = value ^ *hash_const;
    *hash_const = hash_const.wrapping_mul(MULT_A);
    value = value.wrapping_mul(*hash_const);
    value ^ (value >> XSHIFT)
}

fn mix(x: u32, y: u32) -> u32 {
    let result = MIX_MULT_L.wrapping_mul(x).wrapping_sub(MIX_MULT_R.wrapping_mul(y));
    result ^ (result >> XSHIFT)
}

impl SeedSequence {
    /// `SeedSequence(entropy)` for a non-negative integer entropy, split into
    /// little-endian 32-bit words as NumPy's `_int_to_uint32_array` does
    /// (zero is one word, `[0]`).
    fn from_u128(entropy: u128) -> Self {
        let mut words = [0u32; 4];
        let mut n_words = 0;
        let mut n = entropy;
        if n == 0 {
            n_words = 1;
        }
        while n > 0 {
            words[n_words] = (n & 0xffff_ffff) as u32;
            n >>= 32;
            n_words += 1;
        }
        let entropy = &words[..n_words];

        let mut pool = [0u32; POOL_SIZE];
        let mut hash_const = INIT_A;
        for (i, slot) in pool.iter_mut().enumerate() {
            let word = entropy.get(i).copied().unwrap_or(0);
            *slot = hashmix(word, &mut hash_const);
        }
        for i_src in 0..POOL_SIZE {
            for i_dst in 0..POOL_SIZE {
                if i_src != i_dst {
                    let h = hashmix(pool[i_src], &mut hash_const);
                    pool[i_dst] = mix(pool[i_dst], h);
                }
            }
        }
        // At most four entropy words, so no word is left over for a second
        // mixing pass (NumPy mixes words past the pool size in here).
        SeedSequence { pool }
    }

    /// `generate_state(n, np.uint64)`: 2n 32-bit words, read as n
    /// little-endian u64s.
    fn generate_state_u64<const N: usize>(&self) -> [u64; N] {
        let mut hash_const = INIT_B;
        let mut out = [0u64; N];
        for (i, slot) in out.iter_mut().enumerate() {
            let mut pair = [0u32; 2];
            for (j, half) in pair.iter_mut().enumerate() {
                let mut data = self.pool[(2 * i + j) % POOL_SIZE];
                data ^= hash_const;
                hash_const = hash_const.wrapping_mul(MULT_B);
                data = data.wrapping_mul(hash_const);
                data ^= data >> XSHIFT;
                *half = data;
            }
            *slot = u64::from(pair[0]) | (u64::from(pair[1]) << 32);
        }
        out
    }
}

/// 128 random bits from the operating system, for generators of envs that
/// were never given a seed. Without an OS entropy source: the clock and the
/// address of a stack value, which still differ from env to env.
pub(crate) fn os_entropy() -> u128 {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let addr = &bytes as *const _ as usize as u128;
        return nanos ^ (addr << 64);
    }
    u128::from_le_bytes(bytes)
}

/// NumPy's `PCG64` bit generator with Gymnasium's seeding: the same seed gives
/// the same stream of doubles as `gymnasium.utils.seeding.np_random(seed)`.
#[derive(Clone, Debug)]
pub struct NumpyRng {
    state: u128,
    inc: u128,
}

impl NumpyRng {
    /// The generator Gymnasium makes for `reset(seed=seed)`.
    pub fn from_seed(seed: u64) -> Self {
        Self::from_entropy_value(u128::from(seed))
    }

    /// A generator seeded from the operating system, as Gymnasium does when
    /// an env is reset without ever having been given a seed.
    pub fn from_os_entropy() -> Self {
        Self::from_entropy_value(os_entropy())
    }

    fn from_entropy_value(entropy: u128) -> Self {
        let seq = SeedSequence::from_u128(entropy);
        let s: [u64; 4] = seq.generate_state_u64();
        let init_state = (u128::from(s[0]) << 64) | u128::from(s[1]);
        let init_seq = (u128::from(s[2]) << 64) | u128::from(s[3]);
        // pcg_setseq_128_srandom_r
        let mut rng = NumpyRng {
            state: 0,
            inc: (init_seq << 1) | 1,
        };
        rng.step();
        rng.state = rng.state.wrapping_add(init_state);
        rng.step();
        rng
    }

    #[inline]
    fn step(&mut self) {
        self.state = self.state.wrapping_mul(PCG_MULT).wrapping_add(self.inc);
    }

    /// Next raw 64-bit output (PCG XSL-RR 128/64).
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.step();
        let hi = (self.state >> 64) as u64;
        let lo = self.state as u64;
        (hi ^ lo).rotate_right((self.state >> 122) as u32)
    }

    /// A double in [0, 1) with 53 random bits, as NumPy's `next_double`.
    #[inline]
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / 9_007_199_254_740_992.0)
    }

    /// `Generator.uniform(low, high)`: `low + (high - low) * next_double`.
    #[inline]
    pub fn uniform(&mut self, low: f64, high: f64) -> f64 {
        let range = high - low;
        low + range * self.next_f64()
    }

    /// A uniform integer in `0..n` (n > 0) by Lemire's multiply-shift; used
    /// for random actions in tests and benchmarks, not for Gymnasium parity.
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `np.random.Generator(np.random.PCG64(np.random.SeedSequence(s))).random()`
    /// for a few seeds, recorded with NumPy 2.4.
    #[test]
    fn doubles_match_numpy() {
        let mut rng = NumpyRng::from_seed(0);
        assert_eq!(rng.next_f64(), 0.6369616873214543);
        assert_eq!(rng.next_f64(), 0.2697867137638703);
        let mut rng = NumpyRng::from_seed(42);
        assert_eq!(rng.next_f64(), 0.7739560485559633);
        let mut rng = NumpyRng::from_seed(u64::MAX);
        assert_eq!(rng.next_u64(), 12544278110101001871);
        // Entropy wider than 64 bits (four 32-bit words).
        let mut rng = NumpyRng::from_entropy_value((1u128 << 100) + 12345);
        assert_eq!(rng.next_u64(), 3496373735757741504);
    }

    #[test]
    fn below_stays_in_range() {
        let mut rng = NumpyRng::from_seed(7);
        let mut seen = [0u32; 3];
        for _ in 0..3000 {
            let k = rng.below(3) as usize;
            seen[k] += 1;
        }
        assert!(seen.iter().all(|&c| c > 800), "{seen:?}");
    }
}
