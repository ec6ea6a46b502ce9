//! Property tests: [`SumTree`] and [`MinTree`] against a plain `Vec` of leaves.

use cml_replay::{MinTree, SumTree};
use proptest::prelude::*;

/// Leaf values: mostly ordinary, some zeros, some tiny or huge to make sums round.
fn leaf_value() -> impl Strategy<Value = f64> {
    prop_oneof![
        6 => 0.0..10.0f64,
        3 => Just(0.0),
        1 => Just(1e-300),
        1 => Just(1e-17),
        1 => Just(1e12),
    ]
}

/// A capacity, then a sequence of (leaf, value) writes within it.
fn writes() -> impl Strategy<Value = (usize, Vec<(usize, f64)>)> {
    (1..40usize).prop_flat_map(|capacity| {
        (
            Just(capacity),
            prop::collection::vec((0..capacity, leaf_value()), 0..200),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn sum_tree_matches_linear_scan((capacity, writes) in writes(), probes in prop::collection::vec(0.0..=1.0f64, 1..32)) {
        let mut tree = SumTree::new(capacity);
        let mut leaves = vec![0.0f64; capacity];
        for &(index, value) in &writes {
            tree.set(index, value);
            leaves[index] = value;
        }
        for (index, &value) in leaves.iter().enumerate() {
            prop_assert_eq!(tree.get(index), value);
        }
        let exact: f64 = leaves.iter().sum();
        let total = tree.total();
        prop_assert!((total - exact).abs() <= 1e-12 * exact.max(1e-300), "total {} vs {}", total, exact);
        prop_assert_eq!(total > 0.0, leaves.iter().any(|v| *v > 0.0));
        for &u in &probes {
            let mass = u * total;
            let leaf = tree.find_prefix_sum(mass);
            prop_assert!(leaf < capacity);
            if total > 0.0 {
                // Never a zero leaf, and the mass is in the leaf's prefix interval (up to rounding).
                prop_assert!(leaves[leaf] > 0.0, "mass {} found zero leaf {}", mass, leaf);
                let before: f64 = leaves[..leaf].iter().sum();
                let slack = 1e-9 * total;
                prop_assert!(before <= mass + slack, "prefix {} > mass {}", before, mass);
                if u < 1.0 {
                    prop_assert!(mass < before + leaves[leaf] + slack, "mass {} past leaf {}", mass, leaf);
                }
            } else {
                prop_assert_eq!(leaf, 0);
            }
        }
    }

    #[test]
    fn min_tree_matches_linear_scan((capacity, writes) in writes(), unset in prop::collection::vec(any::<prop::sample::Index>(), 0..10)) {
        let mut tree = MinTree::new(capacity);
        let mut leaves = vec![f64::INFINITY; capacity];
        for &(index, value) in &writes {
            tree.set(index, value);
            leaves[index] = value;
            prop_assert_eq!(tree.min(), leaves.iter().copied().fold(f64::INFINITY, f64::min));
        }
        for index in unset {
            let index = index.index(capacity);
            tree.set(index, f64::INFINITY);
            leaves[index] = f64::INFINITY;
            prop_assert_eq!(tree.min(), leaves.iter().copied().fold(f64::INFINITY, f64::min));
        }
    }
}
