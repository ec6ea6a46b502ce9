//! Sum- and min-trees over `f64` leaves, for proportional sampling (PER:
//! Schaul et al. 2016, appendix B.2.1 "sum-tree").
//!
//! Both trees are complete binary trees stored flat in one `Vec<f64>`
//! (heap order: the root at 1, the children of node `i` at `2i` and `2i + 1`,
//! the leaves at `[leaves, 2 * leaves)`). The number of leaves is the
//! capacity rounded up to a power of two; the padding leaves hold the
//! identity (0 for sums, +inf for minima) and can never be found or set.
//!
//! An update rewrites every node on the leaf's path from its two children
//! (not by adding a delta), so the sums never drift however many updates
//! there are: each internal node is always exactly `left + right` as
//! computed in `f64` from the current leaves.

/// Number of leaves for `capacity`: a power of two, at least 1.
///
/// # Panics
/// When `capacity` exceeds the largest power of two a `usize` holds.
fn leaf_count(capacity: usize) -> usize {
    match capacity.max(1).checked_next_power_of_two() {
        Some(leaves) => leaves,
        None => panic!("sum tree: capacity {capacity} is too large"),
    }
}

/// The layout both trees share: `nodes[0]` unused, `nodes[1]` the root,
/// `nodes[leaves + i]` leaf `i`; padding leaves hold the tree's identity.
#[derive(Clone, Debug)]
struct FlatTree {
    capacity: usize,
    /// Number of leaves (a power of two, `>= capacity`).
    leaves: usize,
    nodes: Vec<f64>,
}

impl FlatTree {
    /// `capacity` leaves (0 is treated as 1), every node `identity`.
    fn new(capacity: usize, identity: f64) -> Self {
        let leaves = leaf_count(capacity);
        FlatTree {
            capacity: capacity.max(1),
            leaves,
            nodes: vec![identity; 2 * leaves],
        }
    }

    /// The node of leaf `index`; `tree` names the tree in the panic.
    #[inline]
    fn leaf_node(&self, index: usize, tree: &str) -> usize {
        assert!(
            index < self.capacity,
            "{tree}: leaf {index} out of range (capacity {})",
            self.capacity
        );
        self.leaves + index
    }
}

/// A sum-tree: `O(log n)` point updates, `O(1)` total and `O(log n)`
/// inverse-prefix-sum search (which leaf a given mass falls in).
#[derive(Clone, Debug)]
pub struct SumTree(FlatTree);

impl SumTree {
    /// A tree of `capacity` leaves, all 0. A capacity of 0 is treated as 1.
    ///
    /// # Panics
    /// When `capacity` exceeds the largest power of two a `usize` holds.
    pub fn new(capacity: usize) -> Self {
        SumTree(FlatTree::new(capacity, 0.0))
    }

    /// Number of usable leaves.
    pub fn capacity(&self) -> usize {
        self.0.capacity
    }

    /// Sets leaf `index` to `value` (finite and `>= 0`, checked in debug
    /// builds) and recomputes the sums on its path to the root.
    ///
    /// # Panics
    /// When `index >= capacity()`.
    #[inline]
    pub fn set(&mut self, index: usize, value: f64) {
        let mut node = self.0.leaf_node(index, "sum tree");
        debug_assert!(
            value.is_finite() && value >= 0.0,
            "sum tree: leaf value {value} must be finite and >= 0"
        );
        let nodes = &mut self.0.nodes;
        nodes[node] = value;
        // sum(node) = sum(2 node) + sum(2 node + 1), from the children: no drift.
        while node > 1 {
            node /= 2;
            nodes[node] = nodes[2 * node] + nodes[2 * node + 1];
        }
    }

    /// The value of leaf `index`.
    ///
    /// # Panics
    /// When `index >= capacity()`.
    #[inline]
    pub fn get(&self, index: usize) -> f64 {
        self.0.nodes[self.0.leaf_node(index, "sum tree")]
    }

    /// Sum of all leaves.
    #[inline]
    pub fn total(&self) -> f64 {
        self.0.nodes[1]
    }

    /// The leaf `i` with `prefix(i) <= mass < prefix(i + 1)`, where
    /// `prefix(i)` is the sum of leaves `0..i` (PER, appendix B.2.1).
    ///
    /// `mass` is clamped to `[0, total)` (NaN counts as 0): a mass at or past
    /// the total gives the last leaf with a non-zero value. When the total is
    /// positive, the leaf found always has a non-zero value, whatever the
    /// float rounding of the sums on the way; when the total is 0, it is
    /// leaf 0.
    #[inline]
    pub fn find_prefix_sum(&self, mass: f64) -> usize {
        let FlatTree { leaves, nodes, .. } = &self.0;
        // `f64::max` drops a NaN operand, so NaN becomes 0.
        let mut mass = mass.max(0.0);
        let mut node = 1;
        while node < *leaves {
            let left = 2 * node;
            let left_sum = nodes[left];
            let right_sum = nodes[left + 1];
            // Never descend into an empty subtree: rounding may leave `mass`
            // just past the left sum with nothing on the right, or vice versa.
            if right_sum <= 0.0 || (mass < left_sum && left_sum > 0.0) {
                node = left;
            } else {
                mass -= left_sum;
                node = left + 1;
            }
        }
        node - leaves
    }
}

/// A min-tree: `O(log n)` point updates and `O(1)` minimum over all leaves.
/// Leaves never set (or reset to `f64::INFINITY`) count as +inf.
#[derive(Clone, Debug)]
pub struct MinTree(FlatTree);

impl MinTree {
    /// A tree of `capacity` leaves, all +inf. A capacity of 0 is treated as 1.
    ///
    /// # Panics
    /// When `capacity` exceeds the largest power of two a `usize` holds.
    pub fn new(capacity: usize) -> Self {
        MinTree(FlatTree::new(capacity, f64::INFINITY))
    }

    /// Number of usable leaves.
    pub fn capacity(&self) -> usize {
        self.0.capacity
    }

    /// Sets leaf `index` to `value` (not NaN, checked in debug builds; use
    /// `f64::INFINITY` to unset) and recomputes the minima on its path (up to the first node that keeps its value).
    ///
    /// # Panics
    /// When `index >= capacity()`.
    #[inline]
    pub fn set(&mut self, index: usize, value: f64) {
        let mut node = self.0.leaf_node(index, "min tree");
        debug_assert!(!value.is_nan(), "min tree: leaf value must not be NaN");
        let nodes = &mut self.0.nodes;
        nodes[node] = value;
        // min(node) = min(min(2 node), min(2 node + 1)); minima are exact, so
        // once a node keeps its value its ancestors are unchanged too.
        while node > 1 {
            node /= 2;
            let min = nodes[2 * node].min(nodes[2 * node + 1]);
            if nodes[node] == min {
                break;
            }
            nodes[node] = min;
        }
    }

    /// The value of leaf `index` (+inf when unset).
    ///
    /// # Panics
    /// When `index >= capacity()`.
    #[inline]
    pub fn get(&self, index: usize) -> f64 {
        self.0.nodes[self.0.leaf_node(index, "min tree")]
    }

    /// Minimum over all leaves (+inf when none is set).
    #[inline]
    pub fn min(&self) -> f64 {
        self.0.nodes[1]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks `find_prefix_sum` against a linear scan of the leaves.
    fn linear_find(values: &[f64], mass: f64) -> usize {
        let mut prefix = 0.0;
        let mut last_non_zero = 0;
        for (i, &v) in values.iter().enumerate() {
            if v > 0.0 {
                if mass < prefix + v {
                    return i;
                }
                last_non_zero = i;
            }
            prefix += v;
        }
        last_non_zero
    }

    #[test]
    fn totals_and_prefix_search_by_hand() {
        let mut tree = SumTree::new(4);
        for (i, v) in [1.0, 2.0, 3.0, 4.0].into_iter().enumerate() {
            tree.set(i, v);
        }
        assert_eq!(tree.capacity(), 4);
        assert_eq!(tree.total(), 10.0);
        // prefix sums: 0, 1, 3, 6, 10
        assert_eq!(tree.find_prefix_sum(0.0), 0);
        assert_eq!(tree.find_prefix_sum(0.999), 0);
        assert_eq!(tree.find_prefix_sum(1.0), 1);
        assert_eq!(tree.find_prefix_sum(2.999), 1);
        assert_eq!(tree.find_prefix_sum(3.0), 2);
        assert_eq!(tree.find_prefix_sum(5.5), 2);
        assert_eq!(tree.find_prefix_sum(6.0), 3);
        assert_eq!(tree.find_prefix_sum(9.999), 3);
        // Clamped to [0, total).
        assert_eq!(tree.find_prefix_sum(10.0), 3);
        assert_eq!(tree.find_prefix_sum(1e300), 3);
        assert_eq!(tree.find_prefix_sum(-5.0), 0);
        assert_eq!(tree.find_prefix_sum(f64::NAN), 0);
        tree.set(2, 0.5);
        assert_eq!(tree.total(), 7.5);
        assert_eq!(tree.get(2), 0.5);
        assert_eq!(tree.find_prefix_sum(3.2), 2);
        assert_eq!(tree.find_prefix_sum(3.5), 3);
    }

    #[test]
    fn zero_leaves_are_never_found() {
        let mut tree = SumTree::new(8);
        tree.set(1, 2.0);
        tree.set(5, 3.0);
        // Only leaves 1 and 5 have mass.
        assert_eq!(tree.find_prefix_sum(0.0), 1);
        assert_eq!(tree.find_prefix_sum(1.999), 1);
        assert_eq!(tree.find_prefix_sum(2.0), 5);
        assert_eq!(tree.find_prefix_sum(4.999), 5);
        assert_eq!(tree.find_prefix_sum(5.0), 5);
        assert_eq!(tree.find_prefix_sum(100.0), 5);
        // A mass at the very edge of a subtree, past what rounding leaves on the left.
        let mut tree = SumTree::new(4);
        tree.set(0, 0.1);
        tree.set(1, 0.2);
        tree.set(3, 0.0);
        let total = tree.total();
        let found = tree.find_prefix_sum(total);
        assert!(tree.get(found) > 0.0);
        // Empty tree: leaf 0.
        let tree = SumTree::new(5);
        assert_eq!(tree.total(), 0.0);
        assert_eq!(tree.find_prefix_sum(0.3), 0);
    }

    #[test]
    fn rounding_never_selects_a_zero_leaf() {
        // Values of very different magnitudes so sums round.
        let values = [1e-17, 1.0, 0.0, 3e-17, 0.1, 0.0, 0.2, 1e-300, 0.0, 0.0];
        let mut tree = SumTree::new(values.len());
        for (i, &v) in values.iter().enumerate() {
            tree.set(i, v);
        }
        let total = tree.total();
        let probes = (0..=1000).map(|k| total * f64::from(k) / 1000.0);
        for mass in probes.chain([total, f64::MAX, f64::MIN_POSITIVE]) {
            let leaf = tree.find_prefix_sum(mass);
            assert!(leaf < values.len());
            assert!(values[leaf] > 0.0, "mass {mass} found zero leaf {leaf}");
        }
    }

    #[test]
    fn non_power_of_two_capacity() {
        let values = [0.5, 0.0, 1.5, 2.0, 0.25];
        let mut tree = SumTree::new(values.len());
        assert_eq!(tree.capacity(), 5);
        for (i, &v) in values.iter().enumerate() {
            tree.set(i, v);
        }
        assert_eq!(tree.total(), 4.25);
        for k in 0..=100 {
            let mass = 4.25 * f64::from(k) / 100.0;
            assert_eq!(tree.find_prefix_sum(mass), linear_find(&values, mass), "mass {mass}");
        }
        // Past the end: the last non-zero leaf, never a padding leaf.
        assert_eq!(tree.find_prefix_sum(4.25), 4);
        let single = {
            let mut t = SumTree::new(1);
            t.set(0, 3.0);
            t
        };
        assert_eq!(single.total(), 3.0);
        assert_eq!(single.find_prefix_sum(2.9), 0);
        assert_eq!(SumTree::new(0).capacity(), 1);
    }

    #[test]
    fn recomputation_does_not_drift() {
        let mut tree = SumTree::new(3);
        tree.set(0, 1.0);
        tree.set(2, 1.0);
        // Many updates of a leaf with values that do not add exactly.
        for k in 0..10_000 {
            tree.set(1, 0.1 * f64::from(k % 7) + 1e-9);
        }
        tree.set(1, 0.0);
        assert_eq!(tree.total(), 2.0);
    }

    #[test]
    #[should_panic(expected = "out of range")]
    fn set_out_of_range_panics() {
        let mut tree = SumTree::new(5);
        tree.set(5, 1.0);
    }

    #[test]
    fn min_tree_by_hand() {
        let mut tree = MinTree::new(5);
        assert_eq!(tree.capacity(), 5);
        assert_eq!(tree.min(), f64::INFINITY);
        assert_eq!(tree.get(3), f64::INFINITY);
        tree.set(3, 2.0);
        assert_eq!(tree.min(), 2.0);
        tree.set(0, 4.0);
        tree.set(4, 0.5);
        assert_eq!(tree.min(), 0.5);
        assert_eq!(tree.get(4), 0.5);
        tree.set(4, f64::INFINITY);
        assert_eq!(tree.min(), 2.0);
        tree.set(3, 7.0);
        assert_eq!(tree.min(), 4.0);
        tree.set(0, f64::INFINITY);
        tree.set(3, f64::INFINITY);
        assert_eq!(tree.min(), f64::INFINITY);
    }
}
