//! [`ReplayIndex`]: the bookkeeping of one replay shard.
//!
//! The index assigns keys, maps them to slots of a ring, evicts the oldest
//! item when the ring wraps, keeps priorities in a [`SumTree`] and a
//! [`MinTree`], and draws samples (prioritized, uniform or as a FIFO queue).
//! It holds no payload: the shard keeps each item's bytes in its own slab at
//! the item's slot.
//!
//! - Keys are `0, 1, 2, ...` in insertion order; key `k` lives in slot
//!   `k % capacity`, so the index is a window over the last `capacity`
//!   inserts. Inserting key `k` evicts key `k - capacity` if it is still live.
//! - Prioritized (PER: Schaul et al. 2016; Ape-X: Horgan et al. 2018): the
//!   stored priority is `max(p, epsilon)^alpha`; draws are independent, with
//!   probability `P(i) = p_i^alpha / sum_k p_k^alpha` (PER eq. 1). New items
//!   without a priority get the running maximum of priorities seen.
//! - Uniform: every live item has stored priority 1.
//! - Queue: each item is handed out exactly once, oldest first.
//! - `max_samples_per_item` caps how often an item is replayed: the draw that
//!   reaches the cap removes it.
//! - `fresh_fraction` takes that share of each batch from never-sampled
//!   items, oldest first, before drawing the rest by priority.
//!
//! Nothing allocates after [`ReplayIndex::new`] (the caller owns the output
//! `Vec` of [`ReplayIndex::sample`]).

use std::collections::VecDeque;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::sum_tree::{MinTree, SumTree};

/// Key of an item: its insertion number.
pub type ItemKey = u64;

/// The largest number of slots an index accepts.
pub const MAX_CAPACITY: usize = 1 << 32;

/// The largest stored priority `max(p, epsilon)^alpha` accepted: keeps sums
/// of up to [`MAX_CAPACITY`] items finite.
pub const MAX_STORED_PRIORITY: f64 = 1e200;

/// How [`ReplayIndex::sample`] picks items (`replay.mode` in a config:
/// `"prioritized"`, `"uniform"`, `"queue"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SamplingMode {
    /// Proportional to `max(p, epsilon)^alpha`, with replacement.
    Prioritized,
    /// Uniform over live items, with replacement.
    Uniform,
    /// Oldest first, each item exactly once (consumed when sampled).
    Queue,
}

/// Settings of a [`ReplayIndex`].
#[derive(Clone, Debug, PartialEq)]
pub struct IndexConfig {
    /// Number of slots, `>= 1`.
    pub capacity: usize,
    pub mode: SamplingMode,
    /// Priority exponent (prioritized mode only), finite and `>= 0`.
    pub alpha: f64,
    /// Stored priority is `max(p, epsilon)^alpha`; finite and `> 0`.
    pub priority_epsilon: f64,
    /// Replay-ratio cap: after this many samples the item is removed
    /// (`None`: unlimited; otherwise `>= 1`). Ignored in queue mode.
    pub max_samples_per_item: Option<u32>,
    /// In `[0, 1]`: share of each batch taken from never-sampled items,
    /// oldest first; the rest by priority. Ignored in queue mode.
    pub fresh_fraction: f64,
    /// Seed of the sampling RNG.
    pub seed: u64,
}

impl IndexConfig {
    /// A config with Ape-X's defaults (`alpha` 0.6, `epsilon` 1e-6), no
    /// sample cap, no fresh share and seed 0.
    pub fn new(capacity: usize, mode: SamplingMode) -> Self {
        Self {
            capacity,
            mode,
            alpha: 0.6,
            priority_epsilon: 1e-6,
            max_samples_per_item: None,
            fresh_fraction: 0.0,
            seed: 0,
        }
    }

    /// Checks every field.
    pub fn validate(&self) -> Result<(), ReplayError> {
        let invalid = |reason: String| Err(ReplayError::InvalidConfig(reason));
        if self.capacity == 0 || self.capacity > MAX_CAPACITY {
            return invalid(format!("capacity {} must be in [1, {MAX_CAPACITY}]", self.capacity));
        }
        if !(self.alpha.is_finite() && self.alpha >= 0.0) {
            return invalid(format!("alpha {} must be finite and >= 0", self.alpha));
        }
        if !(self.priority_epsilon.is_finite() && self.priority_epsilon > 0.0) {
            return invalid(format!(
                "priority_epsilon {} must be finite and > 0",
                self.priority_epsilon
            ));
        }
        if self.max_samples_per_item == Some(0) {
            return invalid("max_samples_per_item must be >= 1 (or unset for no cap)".to_string());
        }
        if !(0.0..=1.0).contains(&self.fresh_fraction) {
            return invalid(format!("fresh_fraction {} must be in [0, 1]", self.fresh_fraction));
        }
        Ok(())
    }
}

/// Errors of a [`ReplayIndex`].
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ReplayError {
    #[error("replay index: invalid config: {0}")]
    InvalidConfig(String),
    #[error("replay index: invalid priority {value} for key {key}: must be finite and >= 0 (and max(p, epsilon)^alpha <= {MAX_STORED_PRIORITY:e})")]
    InvalidPriority { key: ItemKey, value: f64 },
    #[error("replay index: queue full: no free slot until items are consumed")]
    Full,
}

/// What [`ReplayIndex::insert`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Inserted {
    pub key: ItemKey,
    /// Where the caller stores the item's payload.
    pub slot: usize,
    /// The item evicted from that slot, `(key, slot)`, if it was still live.
    pub evicted: Option<(ItemKey, usize)>,
}

/// One draw of [`ReplayIndex::sample`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sampled {
    pub key: ItemKey,
    pub slot: usize,
    /// Stored priority `max(p, epsilon)^alpha` (1.0 in uniform and queue mode).
    pub priority: f64,
    /// Probability of this draw: stored priority / total at the draw (PER
    /// eq. 1), `1 / len` in uniform mode, 1.0 in queue mode.
    pub probability: f64,
    /// Times the item has been sampled, this draw included.
    pub times_sampled: u32,
}

/// Result of [`ReplayIndex::update_priority`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpdateOutcome {
    Updated,
    /// The key is not live: evicted, removed (sample cap or consumed), or
    /// never inserted.
    Stale,
}

/// State of one slot of the ring.
#[derive(Clone, Copy, Debug)]
struct Slot {
    /// Key of the item last inserted here.
    key: ItemKey,
    /// Whether that item is still live (not evicted, capped or consumed).
    live: bool,
    times_sampled: u32,
}

/// The bookkeeping of one replay shard: keys, slots, FIFO eviction,
/// priorities, sampling. See the [module docs](self).
#[derive(Clone, Debug)]
pub struct ReplayIndex {
    config: IndexConfig,
    slots: Vec<Slot>,
    /// Stored priorities of live items (1 in uniform mode, unused in queue mode).
    sums: SumTree,
    /// Stored priorities of live items, +inf for empty slots (prioritized mode only).
    mins: MinTree,
    /// Keys in insertion order, never sampled when pushed: the queue in
    /// queue mode, the fresh items otherwise. Entries no longer live or
    /// already sampled are skipped lazily. Holds at most `capacity` keys.
    fresh: VecDeque<ItemKey>,
    len: usize,
    next_key: ItemKey,
    /// Running max of raw priorities accepted, starts at 1.
    max_priority: f64,
    rng: SmallRng,
}

impl ReplayIndex {
    /// Validates `config` and preallocates everything.
    pub fn new(config: IndexConfig) -> Result<Self, ReplayError> {
        config.validate()?;
        let capacity = config.capacity;
        // Queue mode never reads the trees: keep them minimal.
        let tree_capacity = match config.mode {
            SamplingMode::Prioritized | SamplingMode::Uniform => capacity,
            SamplingMode::Queue => 1,
        };
        let mins_capacity = match config.mode {
            SamplingMode::Prioritized => capacity,
            SamplingMode::Uniform | SamplingMode::Queue => 1,
        };
        let empty = Slot {
            key: 0,
            live: false,
            times_sampled: 0,
        };
        Ok(Self {
            slots: vec![empty; capacity],
            sums: SumTree::new(tree_capacity),
            mins: MinTree::new(mins_capacity),
            fresh: VecDeque::with_capacity(capacity),
            len: 0,
            next_key: 0,
            max_priority: 1.0,
            rng: SmallRng::seed_from_u64(config.seed),
            config,
        })
    }

    /// The config the index was built with.
    pub fn config(&self) -> &IndexConfig {
        &self.config
    }

    /// Inserts a new item with `priority` (`None`: [`Self::max_priority`]),
    /// evicting the item `capacity` keys older if it is still live.
    ///
    /// Errors (index unchanged): [`ReplayError::InvalidPriority`] for a NaN,
    /// infinite or negative priority (or, prioritized mode, one whose stored
    /// priority exceeds [`MAX_STORED_PRIORITY`]); [`ReplayError::Full`] in queue mode
    /// when all slots hold unconsumed items.
    pub fn insert(&mut self, priority: Option<f64>) -> Result<Inserted, ReplayError> {
        let key = self.next_key;
        let slot = self.slot_index(key);
        if self.config.mode == SamplingMode::Queue && self.slots[slot].live {
            return Err(ReplayError::Full);
        }
        let raw = priority.unwrap_or(self.max_priority);
        let stored = self.stored_priority(key, raw)?;
        self.max_priority = self.max_priority.max(raw);

        let previous = self.slots[slot];
        let evicted = if previous.live {
            self.len -= 1;
            Some((previous.key, slot))
        } else {
            None
        };
        self.slots[slot] = Slot {
            key,
            live: true,
            times_sampled: 0,
        };
        self.len += 1;
        self.set_tree_priority(slot, stored);
        // The deque holds distinct keys in increasing order; when it is full
        // its front is at most `key - capacity`, which is dead from now on.
        if self.fresh.len() == self.config.capacity {
            self.fresh.pop_front();
        }
        self.fresh.push_back(key);
        self.next_key += 1;
        Ok(Inserted { key, slot, evicted })
    }

    /// Clears `out` and appends up to `n` draws.
    ///
    /// Prioritized and uniform mode: `round(n * fresh_fraction)` never-sampled
    /// items first, oldest first, then independent draws (with replacement)
    /// proportional to stored priority, until `n` or until nothing is live
    /// (with a sample cap). Queue mode: the oldest `n` unconsumed items, in
    /// insertion order, each removed.
    pub fn sample(&mut self, n: usize, out: &mut Vec<Sampled>) {
        out.clear();
        if n == 0 || self.len == 0 {
            return;
        }
        if self.config.mode == SamplingMode::Queue {
            self.sample_queue(n, out);
            return;
        }
        let n_fresh = ((n as f64 * self.config.fresh_fraction).round() as usize).min(n);
        while out.len() < n_fresh {
            match self.pop_fresh() {
                Some(slot) => out.push(self.record_draw(slot)),
                None => break,
            }
        }
        while out.len() < n && self.len > 0 {
            // mass ~ U[0, total), then the leaf whose prefix interval holds it (PER appendix B.2.1).
            let mass = self.rng.random::<f64>() * self.sums.total();
            let slot = self.sums.find_prefix_sum(mass);
            // Dead slots hold 0 and a zero leaf is never found: this guard never fires.
            let live = self.slots[slot].live;
            debug_assert!(live, "sum tree found dead slot {slot}");
            if !live {
                break;
            }
            out.push(self.record_draw(slot));
        }
    }

    /// Sets the priority of a live item. A NaN, infinite or negative
    /// priority is an error (index unchanged), checked before liveness;
    /// a key not live gives [`UpdateOutcome::Stale`]. In uniform and queue
    /// mode a live key gives [`UpdateOutcome::Updated`] and sampling is
    /// unchanged.
    pub fn update_priority(&mut self, key: ItemKey, priority: f64) -> Result<UpdateOutcome, ReplayError> {
        let stored = self.stored_priority(key, priority)?;
        let Some(slot) = self.slot_of(key) else {
            return Ok(UpdateOutcome::Stale);
        };
        self.max_priority = self.max_priority.max(priority);
        // Uniform and queue mode: the trees hold no priorities to change.
        if self.config.mode == SamplingMode::Prioritized {
            self.set_tree_priority(slot, stored);
        }
        Ok(UpdateOutcome::Updated)
    }

    /// Number of live items.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no item is live.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.config.capacity
    }

    /// Queue mode: whether every slot holds an unconsumed item, so
    /// [`Self::insert`] would fail. Other modes: `len == capacity`.
    pub fn is_full(&self) -> bool {
        self.len == self.config.capacity
    }

    /// Sum of the stored priorities of live items (`len` in uniform and
    /// queue mode).
    pub fn total_priority(&self) -> f64 {
        match self.config.mode {
            SamplingMode::Prioritized => self.sums.total(),
            SamplingMode::Uniform | SamplingMode::Queue => self.len as f64,
        }
    }

    /// Minimum stored priority over live items (+inf when empty; 1 in
    /// uniform and queue mode).
    pub fn min_priority(&self) -> f64 {
        match self.config.mode {
            SamplingMode::Prioritized => self.mins.min(),
            SamplingMode::Uniform | SamplingMode::Queue if self.len > 0 => 1.0,
            SamplingMode::Uniform | SamplingMode::Queue => f64::INFINITY,
        }
    }

    /// Running max of the raw priorities accepted (starts at 1, never
    /// decreases): the priority of items inserted without one.
    pub fn max_priority(&self) -> f64 {
        self.max_priority
    }

    /// Whether `key` is live.
    pub fn contains(&self, key: ItemKey) -> bool {
        self.slot_of(key).is_some()
    }

    /// The slot of `key` if it is live.
    pub fn slot_of(&self, key: ItemKey) -> Option<usize> {
        if key >= self.next_key {
            return None;
        }
        let slot = self.slot_index(key);
        let state = &self.slots[slot];
        (state.live && state.key == key).then_some(slot)
    }

    /// The key the next insert gets.
    pub fn next_key(&self) -> ItemKey {
        self.next_key
    }

    /// Slot of `key` in the ring: `key % capacity`.
    fn slot_index(&self, key: ItemKey) -> usize {
        // capacity <= MAX_CAPACITY fits in u64, and the remainder is < capacity.
        (key % self.config.capacity as u64) as usize
    }

    /// Validates a raw priority and returns what the trees hold for it:
    /// `max(p, epsilon)^alpha` (PER, proportional variant) in prioritized
    /// mode, 1 otherwise.
    fn stored_priority(&self, key: ItemKey, raw: f64) -> Result<f64, ReplayError> {
        let invalid = ReplayError::InvalidPriority { key, value: raw };
        if !(raw.is_finite() && raw >= 0.0) {
            return Err(invalid);
        }
        match self.config.mode {
            SamplingMode::Prioritized => {
                // p_i^alpha with p_i = max(|delta_i|, epsilon) (PER section 3.3).
                let stored = raw.max(self.config.priority_epsilon).powf(self.config.alpha);
                if !stored.is_finite() || stored > MAX_STORED_PRIORITY {
                    return Err(invalid);
                }
                // An underflow to 0 would make a live item unreachable (and a total of 0).
                Ok(stored.max(f64::MIN_POSITIVE))
            }
            SamplingMode::Uniform | SamplingMode::Queue => Ok(1.0),
        }
    }

    /// Checks a raw priority as `insert` / `update_priority` would (finite,
    /// >= 0, stored value within range) without changing anything.
    pub fn check_priority(&self, raw: f64) -> Result<(), ReplayError> {
        self.stored_priority(self.next_key, raw).map(|_| ())
    }

    /// Writes a live slot's stored priority into the trees the mode uses.
    fn set_tree_priority(&mut self, slot: usize, stored: f64) {
        match self.config.mode {
            SamplingMode::Prioritized => {
                self.sums.set(slot, stored);
                self.mins.set(slot, stored);
            }
            SamplingMode::Uniform => self.sums.set(slot, 1.0),
            SamplingMode::Queue => {}
        }
    }

    /// Removes a live item (sample cap or queue consumption); its slot
    /// stays empty until the ring reuses it.
    fn remove(&mut self, slot: usize) {
        self.slots[slot].live = false;
        self.len -= 1;
        match self.config.mode {
            SamplingMode::Prioritized => {
                self.sums.set(slot, 0.0);
                self.mins.set(slot, f64::INFINITY);
            }
            SamplingMode::Uniform => self.sums.set(slot, 0.0),
            SamplingMode::Queue => {}
        }
    }

    /// Pops the oldest live, never-sampled item's slot from the fresh deque.
    fn pop_fresh(&mut self) -> Option<usize> {
        while let Some(key) = self.fresh.pop_front() {
            if let Some(slot) = self.slot_of(key) {
                if self.slots[slot].times_sampled == 0 {
                    return Some(slot);
                }
            }
        }
        None
    }

    /// Counts a draw of a live slot (prioritized or uniform), removes the
    /// item if it reached the sample cap, and describes the draw.
    fn record_draw(&mut self, slot: usize) -> Sampled {
        let (priority, probability) = match self.config.mode {
            // P(i) = p_i^alpha / sum_k p_k^alpha (PER eq. 1), at the draw.
            SamplingMode::Prioritized => {
                let priority = self.sums.get(slot);
                (priority, priority / self.sums.total())
            }
            SamplingMode::Uniform | SamplingMode::Queue => (1.0, 1.0 / self.len as f64),
        };
        let state = &mut self.slots[slot];
        state.times_sampled = state.times_sampled.saturating_add(1);
        let sampled = Sampled {
            key: state.key,
            slot,
            priority,
            probability,
            times_sampled: state.times_sampled,
        };
        if self
            .config
            .max_samples_per_item
            .is_some_and(|cap| sampled.times_sampled >= cap)
        {
            self.remove(slot);
        }
        sampled
    }

    /// Queue mode: hands out and removes the oldest `n` live items.
    fn sample_queue(&mut self, n: usize, out: &mut Vec<Sampled>) {
        while out.len() < n {
            let Some(key) = self.fresh.pop_front() else {
                break;
            };
            let Some(slot) = self.slot_of(key) else {
                continue;
            };
            self.slots[slot].times_sampled = 1;
            self.remove(slot);
            out.push(Sampled {
                key,
                slot,
                priority: 1.0,
                probability: 1.0,
                times_sampled: 1,
            });
        }
    }
}

/// Importance-sampling weights of a batch (PER section 3.4):
/// `w_i = (N * P(i))^-beta / max_j w_j`, with `max_j w_j = (N * P_min)^-beta`
/// where `P_min = min(min_probability, min_i P(i))`.
///
/// `N` (the number of live items) cancels in the normalized weight, which is
/// computed as `(P_min / P(i))^beta`; all weights are in `[0, 1]`.
/// `beta = 0` gives all ones. A probability that is NaN or `<= 0` gets
/// weight 1. Clears `out` and fills it with one weight per probability.
pub fn importance_weights(probabilities: &[f64], min_probability: f64, beta: f64, out: &mut Vec<f32>) {
    // N cancels: (N P_i)^-beta / (N P_min)^-beta = (P_min / P_i)^beta.
    out.clear();
    if beta == 0.0 {
        out.extend(probabilities.iter().map(|_| 1.0f32));
        return;
    }
    // The rarest draw, declared or in the batch, has the largest weight.
    let batch_min = probabilities
        .iter()
        .copied()
        .filter(|p| *p > 0.0)
        .fold(f64::INFINITY, f64::min);
    let p_min = if min_probability > 0.0 {
        min_probability.min(batch_min)
    } else {
        batch_min
    };
    out.extend(probabilities.iter().map(|&p| {
        if p.is_nan() || p <= 0.0 || !p_min.is_finite() {
            return 1.0f32;
        }
        // w_i / max_j w_j = (P_min / P(i))^beta (PER section 3.4).
        (p_min / p).powf(beta).min(1.0) as f32
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(capacity: usize, mode: SamplingMode) -> IndexConfig {
        IndexConfig {
            alpha: 1.0,
            priority_epsilon: 1e-3,
            ..IndexConfig::new(capacity, mode)
        }
    }

    fn index(capacity: usize, mode: SamplingMode) -> ReplayIndex {
        match ReplayIndex::new(config(capacity, mode)) {
            Ok(index) => index,
            Err(e) => panic!("{e}"),
        }
    }

    fn insert(index: &mut ReplayIndex, priority: Option<f64>) -> Inserted {
        match index.insert(priority) {
            Ok(inserted) => inserted,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn invalid_configs_are_rejected() {
        let base = config(4, SamplingMode::Prioritized);
        let with = |edit: fn(&mut IndexConfig)| {
            let mut config = base.clone();
            edit(&mut config);
            config
        };
        let bad = [
            with(|c| c.capacity = 0),
            with(|c| c.alpha = -0.1),
            with(|c| c.alpha = f64::NAN),
            with(|c| c.alpha = f64::INFINITY),
            with(|c| c.priority_epsilon = 0.0),
            with(|c| c.priority_epsilon = -1.0),
            with(|c| c.priority_epsilon = f64::NAN),
            with(|c| c.max_samples_per_item = Some(0)),
            with(|c| c.fresh_fraction = -0.01),
            with(|c| c.fresh_fraction = 1.01),
            with(|c| c.fresh_fraction = f64::NAN),
        ];
        for config in bad {
            assert!(
                matches!(ReplayIndex::new(config.clone()), Err(ReplayError::InvalidConfig(_))),
                "{config:?}"
            );
        }
        assert!(ReplayIndex::new(base.clone()).is_ok());
        assert!(ReplayIndex::new(with(|c| {
            c.alpha = 0.0;
            c.fresh_fraction = 1.0;
        }))
        .is_ok());
    }

    #[test]
    fn prioritized_insert_update_and_totals() {
        let mut idx = index(4, SamplingMode::Prioritized);
        assert!(idx.is_empty());
        assert_eq!(idx.total_priority(), 0.0);
        assert_eq!(idx.min_priority(), f64::INFINITY);
        assert_eq!(idx.max_priority(), 1.0);
        let a = insert(&mut idx, Some(2.0));
        assert_eq!((a.key, a.slot, a.evicted), (0, 0, None));
        let b = insert(&mut idx, None); // gets max priority 2.0
        assert_eq!((b.key, b.slot), (1, 1));
        let c = insert(&mut idx, Some(0.0)); // stored max(0, 1e-3)^1
        assert_eq!(idx.len(), 3);
        assert_eq!(idx.total_priority(), 2.0 + 2.0 + 1e-3);
        assert_eq!(idx.min_priority(), 1e-3);
        assert_eq!(idx.max_priority(), 2.0);
        assert_eq!(idx.update_priority(c.key, 5.0), Ok(UpdateOutcome::Updated));
        assert_eq!(idx.total_priority(), 9.0);
        assert_eq!(idx.min_priority(), 2.0);
        assert_eq!(idx.max_priority(), 5.0);
        assert_eq!(idx.slot_of(2), Some(2));
        assert!(idx.contains(1));
        assert!(!idx.contains(3));
        assert_eq!(idx.next_key(), 3);
    }

    #[test]
    fn alpha_shapes_stored_priority() {
        let mut idx = match ReplayIndex::new(IndexConfig {
            alpha: 0.5,
            priority_epsilon: 0.01,
            ..IndexConfig::new(4, SamplingMode::Prioritized)
        }) {
            Ok(idx) => idx,
            Err(e) => panic!("{e}"),
        };
        insert(&mut idx, Some(4.0));
        insert(&mut idx, Some(0.0));
        assert_eq!(idx.total_priority(), 2.0 + 0.1);
        assert_eq!(idx.min_priority(), 0.1);
        let mut out = Vec::new();
        idx.sample(64, &mut out);
        for s in &out {
            let expected = if s.key == 0 { 2.0 } else { 0.1 };
            assert_eq!(s.priority, expected);
            assert!((s.probability - expected / 2.1).abs() < 1e-12);
        }
    }

    #[test]
    fn eviction_is_fifo() {
        let mut idx = index(3, SamplingMode::Prioritized);
        for _ in 0..3 {
            assert_eq!(insert(&mut idx, Some(1.0)).evicted, None);
        }
        assert!(idx.is_full());
        for key in 3..10u64 {
            let inserted = insert(&mut idx, Some(1.0 + key as f64));
            assert_eq!(inserted.key, key);
            assert_eq!(inserted.slot, (key % 3) as usize);
            assert_eq!(inserted.evicted, Some((key - 3, (key % 3) as usize)));
            assert_eq!(idx.len(), 3);
            assert!(!idx.contains(key - 3));
        }
        // Live keys 7, 8, 9 with priorities 8, 9, 10.
        assert_eq!(idx.total_priority(), 27.0);
        assert_eq!(idx.min_priority(), 8.0);
    }

    #[test]
    fn stale_updates() {
        let mut idx = index(2, SamplingMode::Prioritized);
        for _ in 0..3 {
            insert(&mut idx, Some(1.0));
        }
        let total = idx.total_priority();
        // Key 0 evicted, key 3 in the future.
        assert_eq!(idx.update_priority(0, 9.0), Ok(UpdateOutcome::Stale));
        assert_eq!(idx.update_priority(3, 9.0), Ok(UpdateOutcome::Stale));
        assert_eq!(idx.update_priority(u64::MAX, 9.0), Ok(UpdateOutcome::Stale));
        assert_eq!(idx.total_priority(), total);
        assert_eq!(idx.max_priority(), 1.0);
        // Validation comes first, even for stale keys.
        assert_eq!(
            idx.update_priority(0, -1.0),
            Err(ReplayError::InvalidPriority { key: 0, value: -1.0 })
        );
    }

    #[test]
    fn invalid_priorities_leave_the_index_unchanged() {
        let mut idx = index(3, SamplingMode::Prioritized);
        insert(&mut idx, Some(2.0));
        insert(&mut idx, Some(3.0));
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -1.0, 1e300] {
            assert!(matches!(
                idx.insert(Some(bad)),
                Err(ReplayError::InvalidPriority { key: 2, .. })
            ));
            assert!(matches!(
                idx.update_priority(1, bad),
                Err(ReplayError::InvalidPriority { key: 1, .. })
            ));
            assert_eq!(idx.len(), 2);
            assert_eq!(idx.next_key(), 2);
            assert_eq!(idx.total_priority(), 5.0);
            assert_eq!(idx.min_priority(), 2.0);
            assert_eq!(idx.max_priority(), 3.0);
        }
        // Uniform and queue mode validate too.
        for mode in [SamplingMode::Uniform, SamplingMode::Queue] {
            let mut idx = index(3, mode);
            insert(&mut idx, None);
            assert!(matches!(
                idx.insert(Some(f64::NAN)),
                Err(ReplayError::InvalidPriority { .. })
            ));
            assert!(matches!(
                idx.update_priority(0, -2.0),
                Err(ReplayError::InvalidPriority { .. })
            ));
            assert_eq!(idx.len(), 1);
        }
    }

    #[test]
    fn tiny_priorities_stay_reachable() {
        let mut idx = match ReplayIndex::new(IndexConfig {
            alpha: 200.0,
            priority_epsilon: 1e-6,
            ..IndexConfig::new(2, SamplingMode::Prioritized)
        }) {
            Ok(idx) => idx,
            Err(e) => panic!("{e}"),
        };
        insert(&mut idx, Some(0.0)); // (1e-6)^200 underflows to 0
        assert!(idx.total_priority() > 0.0);
        let mut out = Vec::new();
        idx.sample(3, &mut out);
        assert_eq!(out.len(), 3);
        assert!(out.iter().all(|s| s.key == 0 && s.probability == 1.0));
    }

    #[test]
    fn uniform_mode() {
        let mut idx = index(4, SamplingMode::Uniform);
        insert(&mut idx, Some(100.0));
        insert(&mut idx, Some(0.001));
        assert_eq!(idx.total_priority(), 2.0);
        assert_eq!(idx.min_priority(), 1.0);
        assert_eq!(idx.update_priority(1, 50.0), Ok(UpdateOutcome::Updated));
        assert_eq!(idx.total_priority(), 2.0);
        let mut out = Vec::new();
        idx.sample(10, &mut out);
        assert_eq!(out.len(), 10);
        for s in &out {
            assert_eq!((s.priority, s.probability), (1.0, 0.5));
        }
    }

    #[test]
    fn queue_mode_hands_out_each_item_once_in_order() {
        let mut idx = index(3, SamplingMode::Queue);
        for _ in 0..3 {
            insert(&mut idx, Some(5.0));
        }
        assert!(idx.is_full());
        assert_eq!(idx.insert(None), Err(ReplayError::Full));
        assert_eq!(idx.next_key(), 3);
        let mut out = Vec::new();
        idx.sample(2, &mut out);
        let keys: Vec<u64> = out.iter().map(|s| s.key).collect();
        assert_eq!(keys, [0, 1]);
        assert!(out
            .iter()
            .all(|s| s.probability == 1.0 && s.priority == 1.0 && s.times_sampled == 1));
        assert_eq!(idx.len(), 1);
        assert_eq!(idx.update_priority(0, 1.0), Ok(UpdateOutcome::Stale));
        assert_eq!(idx.update_priority(2, 1.0), Ok(UpdateOutcome::Updated));
        let inserted = insert(&mut idx, None);
        assert_eq!((inserted.key, inserted.slot, inserted.evicted), (3, 0, None));
        insert(&mut idx, None);
        assert_eq!(idx.insert(None), Err(ReplayError::Full));
        idx.sample(10, &mut out);
        let keys: Vec<u64> = out.iter().map(|s| s.key).collect();
        assert_eq!(keys, [2, 3, 4]);
        assert!(idx.is_empty());
        idx.sample(10, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn sample_cap_removes_items_within_a_batch() {
        let mut idx = match ReplayIndex::new(IndexConfig {
            max_samples_per_item: Some(1),
            ..config(8, SamplingMode::Prioritized)
        }) {
            Ok(idx) => idx,
            Err(e) => panic!("{e}"),
        };
        for p in 1..=5 {
            insert(&mut idx, Some(f64::from(p)));
        }
        let mut out = Vec::new();
        idx.sample(10, &mut out);
        let mut keys: Vec<u64> = out.iter().map(|s| s.key).collect();
        keys.sort_unstable();
        assert_eq!(keys, [0, 1, 2, 3, 4]);
        assert!(idx.is_empty());
        assert_eq!(idx.total_priority(), 0.0);
        assert_eq!(idx.min_priority(), f64::INFINITY);
        // The first draw's probability is its priority over the full total 15.
        assert!((out[0].probability - out[0].priority / 15.0).abs() < 1e-12);
        // Removed slots stay empty until reused: no eviction reported.
        let inserted = insert(&mut idx, None);
        assert_eq!((inserted.key, inserted.slot, inserted.evicted), (5, 5, None));
    }

    #[test]
    fn sample_cap_of_two() {
        let mut idx = match ReplayIndex::new(IndexConfig {
            max_samples_per_item: Some(2),
            ..config(4, SamplingMode::Uniform)
        }) {
            Ok(idx) => idx,
            Err(e) => panic!("{e}"),
        };
        insert(&mut idx, None);
        insert(&mut idx, None);
        let mut out = Vec::new();
        idx.sample(100, &mut out);
        assert_eq!(out.len(), 4);
        for key in [0, 1] {
            let counts: Vec<u32> = out.iter().filter(|s| s.key == key).map(|s| s.times_sampled).collect();
            assert_eq!(counts, [1, 2]);
        }
        assert_eq!(idx.update_priority(0, 1.0), Ok(UpdateOutcome::Stale));
    }

    #[test]
    fn fresh_items_come_first_oldest_first() {
        let mut idx = match ReplayIndex::new(IndexConfig {
            fresh_fraction: 0.5,
            ..config(8, SamplingMode::Prioritized)
        }) {
            Ok(idx) => idx,
            Err(e) => panic!("{e}"),
        };
        for _ in 0..6 {
            insert(&mut idx, Some(1.0));
        }
        // round(4 * 0.5) = 2 fresh picks (keys 0 and 1), then 2 priority draws.
        let mut out = Vec::new();
        idx.sample(4, &mut out);
        assert_eq!(out[0].key, 0);
        assert_eq!(out[1].key, 1);
        assert!((out[0].probability - 1.0 / 6.0).abs() < 1e-12);
        // The next fresh items are the oldest never sampled.
        let sampled: Vec<u64> = out.iter().map(|s| s.key).collect();
        let mut expected_fresh = (2..6).filter(|k| !sampled.contains(k));
        idx.sample(4, &mut out);
        assert_eq!(Some(out[0].key), expected_fresh.next());
        assert_eq!(Some(out[1].key), expected_fresh.next());
    }

    #[test]
    fn fresh_fraction_falls_back_to_priority_draws() {
        let mut idx = match ReplayIndex::new(IndexConfig {
            fresh_fraction: 1.0,
            ..config(4, SamplingMode::Uniform)
        }) {
            Ok(idx) => idx,
            Err(e) => panic!("{e}"),
        };
        for _ in 0..6 {
            insert(&mut idx, None); // keys 2..6 live
        }
        let mut out = Vec::new();
        idx.sample(6, &mut out);
        let keys: Vec<u64> = out.iter().map(|s| s.key).collect();
        assert_eq!(keys[..4], [2, 3, 4, 5]);
        assert_eq!(out.len(), 6);
        // The rest are priority draws of already-sampled items.
        assert!(out[4..].iter().all(|s| s.times_sampled >= 2));
    }

    #[test]
    fn empty_and_zero_samples() {
        for mode in [SamplingMode::Prioritized, SamplingMode::Uniform, SamplingMode::Queue] {
            let mut idx = index(4, mode);
            let mut out = vec![Sampled {
                key: 9,
                slot: 9,
                priority: 1.0,
                probability: 1.0,
                times_sampled: 1,
            }];
            idx.sample(5, &mut out);
            assert!(out.is_empty());
            insert(&mut idx, None);
            idx.sample(0, &mut out);
            assert!(out.is_empty());
        }
    }

    #[test]
    fn importance_weights_by_hand() {
        let mut out = Vec::new();
        importance_weights(&[0.5, 0.25], 0.25, 1.0, &mut out);
        assert_eq!(out, [0.5, 1.0]);
        importance_weights(&[0.5, 0.25, 0.1], 0.1, 0.5, &mut out);
        let expected = [(0.1f64 / 0.5).sqrt(), (0.1f64 / 0.25).sqrt(), 1.0];
        for (w, e) in out.iter().zip(expected) {
            assert!((f64::from(*w) - e).abs() < 1e-6);
        }
        // beta = 0: all ones.
        importance_weights(&[0.5, 0.01], 0.01, 0.0, &mut out);
        assert_eq!(out, [1.0, 1.0]);
        // A batch probability below the declared minimum gets the max weight.
        importance_weights(&[0.5, 0.1], 0.25, 1.0, &mut out);
        assert_eq!(out, [0.2, 1.0]);
        // Degenerate inputs stay finite.
        importance_weights(&[0.0, f64::NAN, 0.5], 0.0, 1.0, &mut out);
        assert_eq!(out, [1.0, 1.0, 1.0]);
        importance_weights(&[], 0.1, 1.0, &mut out);
        assert!(out.is_empty());
    }
}
