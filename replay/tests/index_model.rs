//! Property tests: [`ReplayIndex`] against a naive reference model (a `Vec`
//! of live items with the same rules), over random sequences of inserts,
//! priority updates (stale keys included) and samples, in every mode.

use std::collections::HashMap;

use cml_replay::{IndexConfig, ReplayError, ReplayIndex, Sampled, SamplingMode, UpdateOutcome};
use proptest::prelude::*;

/// Relative tolerance for sums compared with the model.
const REL_TOL: f64 = 1e-9;

#[derive(Clone, Debug)]
enum Op {
    Insert(Option<f64>),
    /// Update the key `next_key - back` (may be evicted, removed or, when
    /// `back` is 0, not yet inserted).
    Update {
        back: u64,
        priority: f64,
    },
    Sample(usize),
}

#[derive(Clone, Debug)]
struct Item {
    key: u64,
    stored: f64,
    times_sampled: u32,
}

/// The reference: live items sorted by key.
struct Model {
    config: IndexConfig,
    items: Vec<Item>,
    next_key: u64,
    max_priority: f64,
}

impl Model {
    fn new(config: IndexConfig) -> Self {
        Self {
            config,
            items: Vec::new(),
            next_key: 0,
            max_priority: 1.0,
        }
    }

    fn valid(raw: f64) -> bool {
        raw.is_finite() && raw >= 0.0
    }

    fn stored(&self, raw: f64) -> f64 {
        match self.config.mode {
            SamplingMode::Prioritized => raw
                .max(self.config.priority_epsilon)
                .powf(self.config.alpha)
                .max(f64::MIN_POSITIVE),
            SamplingMode::Uniform | SamplingMode::Queue => 1.0,
        }
    }

    fn position(&self, key: u64) -> Option<usize> {
        self.items.iter().position(|item| item.key == key)
    }

    fn total(&self) -> f64 {
        self.items.iter().map(|item| item.stored).sum()
    }

    fn min(&self) -> f64 {
        self.items.iter().map(|item| item.stored).fold(f64::INFINITY, f64::min)
    }
}

fn close(actual: f64, expected: f64) -> bool {
    (actual - expected).abs() <= REL_TOL * expected.abs().max(1e-300)
}

/// Checks everything observable against the model.
fn check_state(index: &ReplayIndex, model: &Model) -> Result<(), TestCaseError> {
    prop_assert_eq!(index.len(), model.items.len());
    prop_assert_eq!(index.is_empty(), model.items.is_empty());
    prop_assert_eq!(index.is_full(), model.items.len() == model.config.capacity);
    prop_assert_eq!(index.next_key(), model.next_key);
    prop_assert_eq!(index.max_priority(), model.max_priority);
    let total = index.total_priority();
    prop_assert!(
        close(total, model.total()),
        "total {} vs model {}",
        total,
        model.total()
    );
    prop_assert_eq!(index.min_priority(), model.min());
    // The set of live keys equals the model's: look at every key that could be live, and a few more.
    let capacity = model.config.capacity as u64;
    let first = model.next_key.saturating_sub(capacity + 2);
    for key in first..model.next_key + 2 {
        let live = model.position(key).is_some();
        prop_assert_eq!(index.contains(key), live, "key {}", key);
        let expected_slot = live.then_some((key % capacity) as usize);
        prop_assert_eq!(index.slot_of(key), expected_slot, "key {}", key);
    }
    Ok(())
}

/// Per-run history checks: eviction order, queue order, sample cap.
#[derive(Default)]
struct History {
    last_evicted: Option<u64>,
    last_consumed: Option<u64>,
    draws: HashMap<u64, u32>,
}

fn apply_sample(model: &mut Model, history: &mut History, n: usize, out: &[Sampled]) -> Result<(), TestCaseError> {
    let config = model.config.clone();
    if config.mode == SamplingMode::Queue {
        let expected: Vec<u64> = model.items.iter().take(n).map(|item| item.key).collect();
        let got: Vec<u64> = out.iter().map(|s| s.key).collect();
        prop_assert_eq!(&got, &expected);
        for s in out {
            prop_assert_eq!((s.priority, s.probability, s.times_sampled), (1.0, 1.0, 1));
            prop_assert_eq!(s.slot, (s.key % config.capacity as u64) as usize);
            // Each key handed out once, in insertion order.
            prop_assert!(history.last_consumed.is_none_or(|last| last < s.key));
            history.last_consumed = Some(s.key);
        }
        model.items.drain(..got.len());
        return Ok(());
    }
    let n_fresh = ((n as f64 * config.fresh_fraction).round() as usize).min(n);
    let mut fresh_exhausted = false;
    for (i, s) in out.iter().enumerate() {
        let Some(position) = model.position(s.key) else {
            return Err(TestCaseError::fail(format!("sampled key {} is not live", s.key)));
        };
        if i < n_fresh && !fresh_exhausted {
            match model.items.iter().find(|item| item.times_sampled == 0) {
                Some(oldest_fresh) => prop_assert_eq!(s.key, oldest_fresh.key, "fresh pick {}", i),
                None => fresh_exhausted = true,
            }
        }
        let total = model.total();
        let len = model.items.len();
        let item = &mut model.items[position];
        prop_assert_eq!(s.slot, (s.key % config.capacity as u64) as usize);
        prop_assert_eq!(s.priority, item.stored);
        let expected_probability = match config.mode {
            SamplingMode::Prioritized => item.stored / total,
            SamplingMode::Uniform | SamplingMode::Queue => 1.0 / len as f64,
        };
        prop_assert!(
            close(s.probability, expected_probability),
            "{} vs {}",
            s.probability,
            expected_probability
        );
        item.times_sampled += 1;
        prop_assert_eq!(s.times_sampled, item.times_sampled);
        let draws = history.draws.entry(s.key).or_insert(0);
        *draws += 1;
        if let Some(cap) = config.max_samples_per_item {
            prop_assert!(*draws <= cap, "key {} sampled {} times, cap {}", s.key, *draws, cap);
            if item.times_sampled >= cap {
                model.items.remove(position);
            }
        }
    }
    // A short batch only when nothing is left to draw.
    if out.len() < n {
        prop_assert!(
            model.items.is_empty(),
            "short batch {} < {} with live items",
            out.len(),
            n
        );
    }
    Ok(())
}

fn run(config: IndexConfig, ops: &[Op]) -> Result<(), TestCaseError> {
    let Ok(mut index) = ReplayIndex::new(config.clone()) else {
        return Err(TestCaseError::fail("config rejected"));
    };
    let mut model = Model::new(config.clone());
    let mut history = History::default();
    let mut out = Vec::new();
    let capacity = config.capacity as u64;
    for op in ops {
        match *op {
            Op::Insert(priority) => {
                let result = index.insert(priority);
                let raw = priority.unwrap_or(model.max_priority);
                if config.mode == SamplingMode::Queue && model.items.len() == config.capacity {
                    prop_assert_eq!(result, Err(ReplayError::Full));
                } else if !Model::valid(raw) {
                    let is_invalid =
                        matches!(result, Err(ReplayError::InvalidPriority { key, .. }) if key == model.next_key);
                    prop_assert!(is_invalid, "{:?}", result);
                } else {
                    let Ok(inserted) = result else {
                        return Err(TestCaseError::fail(format!("insert failed: {result:?}")));
                    };
                    let key = model.next_key;
                    prop_assert_eq!(inserted.key, key);
                    prop_assert_eq!(inserted.slot, (key % capacity) as usize);
                    let old = key.checked_sub(capacity);
                    let expected_evicted = old.and_then(|old| model.position(old).map(|p| (old, p)));
                    prop_assert_eq!(inserted.evicted.map(|(k, _)| k), expected_evicted.map(|(k, _)| k));
                    if let Some((old_key, position)) = expected_evicted {
                        prop_assert_eq!(inserted.evicted.map(|(_, slot)| slot), Some(inserted.slot));
                        prop_assert!(history.last_evicted.is_none_or(|last| last < old_key));
                        history.last_evicted = Some(old_key);
                        model.items.remove(position);
                    }
                    model.max_priority = model.max_priority.max(raw);
                    let stored = model.stored(raw);
                    model.items.push(Item {
                        key,
                        stored,
                        times_sampled: 0,
                    });
                    model.next_key += 1;
                }
            }
            Op::Update { back, priority } => {
                let key = model.next_key.wrapping_sub(back);
                let result = index.update_priority(key, priority);
                if !Model::valid(priority) {
                    // NaN != NaN: compare the key and the value's bits.
                    let is_invalid = matches!(result, Err(ReplayError::InvalidPriority { key: k, value })
                        if k == key && value.to_bits() == priority.to_bits());
                    prop_assert!(is_invalid, "{:?}", result);
                    continue;
                }
                let stored = model.stored(priority);
                match model.position(key) {
                    Some(position) => {
                        prop_assert_eq!(result, Ok(UpdateOutcome::Updated));
                        model.items[position].stored = stored;
                        model.max_priority = model.max_priority.max(priority);
                    }
                    None => prop_assert_eq!(result, Ok(UpdateOutcome::Stale)),
                }
            }
            Op::Sample(n) => {
                index.sample(n, &mut out);
                prop_assert!(out.len() <= n);
                apply_sample(&mut model, &mut history, n, &out)?;
            }
        }
        check_state(&index, &model)?;
    }
    Ok(())
}

fn raw_priority() -> impl Strategy<Value = f64> {
    prop_oneof![
        8 => 0.0..10.0f64,
        1 => Just(0.0),
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
        1 => Just(-1.0),
    ]
}

fn op(capacity: usize) -> impl Strategy<Value = Op> {
    let max_back = 2 * capacity as u64 + 2;
    prop_oneof![
        4 => prop::option::weighted(0.7, raw_priority()).prop_map(Op::Insert),
        2 => (0..=max_back, raw_priority()).prop_map(|(back, priority)| Op::Update { back, priority }),
        2 => (0..6usize).prop_map(Op::Sample),
    ]
}

fn config(mode: SamplingMode) -> impl Strategy<Value = IndexConfig> {
    (
        1..9usize,
        prop_oneof![Just(0.0), Just(0.5), Just(1.0), 0.0..2.0f64],
        prop_oneof![Just(1e-3), Just(0.5)],
        prop::option::of(1..4u32),
        prop_oneof![Just(0.0), Just(0.5), Just(1.0), 0.0..=1.0f64],
        any::<u64>(),
    )
        .prop_map(
            move |(capacity, alpha, priority_epsilon, max_samples_per_item, fresh_fraction, seed)| IndexConfig {
                capacity,
                mode,
                alpha,
                priority_epsilon,
                max_samples_per_item,
                fresh_fraction,
                seed,
            },
        )
}

fn case(mode: SamplingMode) -> impl Strategy<Value = (IndexConfig, Vec<Op>)> {
    config(mode).prop_flat_map(|config| {
        let ops = prop::collection::vec(op(config.capacity), 0..120);
        (Just(config), ops)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn prioritized_matches_model((config, ops) in case(SamplingMode::Prioritized)) {
        run(config, &ops)?;
    }

    #[test]
    fn uniform_matches_model((config, ops) in case(SamplingMode::Uniform)) {
        run(config, &ops)?;
    }

    #[test]
    fn queue_matches_model((config, ops) in case(SamplingMode::Queue)) {
        run(config, &ops)?;
    }
}
