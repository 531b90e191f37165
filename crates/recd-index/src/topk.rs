//! Ordered (distance, key) pairs and a bounded best-k collector shared by the graph walk and
//! the exact scan.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// A distance (lower is better) with a key: a slot in the graph, a caller id in the scan.
/// Ordered by distance, then key, with `f32::total_cmp`, so sorting is total and
/// deterministic (ties go to the smaller key).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Scored {
    pub(crate) dist: f32,
    pub(crate) key: u32,
}

impl Eq for Scored {}

impl Ord for Scored {
    #[inline]
    fn cmp(&self, other: &Self) -> Ordering {
        self.dist
            .total_cmp(&other.dist)
            .then(self.key.cmp(&other.key))
    }
}

impl PartialOrd for Scored {
    #[inline]
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Keeps the `k` smallest [`Scored`] values pushed into it.
#[derive(Debug)]
pub(crate) struct TopK {
    k: usize,
    /// Max-heap: the root is the worst value kept.
    heap: BinaryHeap<Scored>,
}

impl TopK {
    pub(crate) fn new(k: usize) -> Self {
        TopK {
            k,
            heap: BinaryHeap::with_capacity(k.saturating_add(1).min(1 << 16)),
        }
    }

    #[inline]
    pub(crate) fn push(&mut self, s: Scored) {
        if self.heap.len() < self.k {
            self.heap.push(s);
        } else if let Some(mut worst) = self.heap.peek_mut()
            && s < *worst
        {
            *worst = s;
        }
    }

    /// A distance above which a pushed value cannot be kept: the worst kept distance once
    /// `k` values are kept, else +∞. Lets a scan skip the heap for most candidates with one
    /// float compare (a value *equal* to it may still win on its key, so only `>` skips).
    #[inline]
    pub(crate) fn bound(&self) -> f32 {
        if self.heap.len() < self.k {
            f32::INFINITY
        } else {
            self.heap.peek().map_or(f32::NEG_INFINITY, |w| w.dist)
        }
    }

    /// The kept values, best first.
    pub(crate) fn into_sorted(self) -> Vec<Scored> {
        self.heap.into_sorted_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_k_best_with_deterministic_ties() {
        let mut t = TopK::new(3);
        for (d, k) in [(3.0, 1), (1.0, 9), (2.0, 4), (1.0, 2), (5.0, 0), (2.0, 3)] {
            t.push(Scored { dist: d, key: k });
        }
        let got: Vec<_> = t.into_sorted().iter().map(|s| (s.dist, s.key)).collect();
        assert_eq!(got, vec![(1.0, 2), (1.0, 9), (2.0, 3)]);
    }

    #[test]
    fn bound_is_the_worst_kept_distance_once_full() {
        let mut t = TopK::new(2);
        assert_eq!(t.bound(), f32::INFINITY);
        t.push(Scored { dist: 3.0, key: 1 });
        assert_eq!(t.bound(), f32::INFINITY);
        t.push(Scored { dist: 1.0, key: 2 });
        assert_eq!(t.bound(), 3.0);
        t.push(Scored { dist: 2.0, key: 3 });
        assert_eq!(t.bound(), 2.0);
    }

    #[test]
    fn zero_k_keeps_nothing() {
        let mut t = TopK::new(0);
        t.push(Scored { dist: 0.0, key: 0 });
        assert!(t.into_sorted().is_empty());
    }
}
