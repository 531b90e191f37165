//! Top-k selection shared by the models: highest scores first, ties broken by the lower
//! index so that every ranking is deterministic.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// A scored candidate ordered so that the *worst* candidate is the heap's maximum.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Worst(f32, u32);

impl Eq for Worst {}

impl Ord for Worst {
    fn cmp(&self, other: &Self) -> Ordering {
        // lower score is "greater" (worse); equal scores: higher index is worse
        other.0.total_cmp(&self.0).then(self.1.cmp(&other.1))
    }
}

impl PartialOrd for Worst {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The `k` best `(index, score)` of `scores`, skipping indices in the sorted `exclude`,
/// best first. NaN scores rank last.
pub fn top_k(scores: &[f32], k: usize, exclude: &[u32]) -> Vec<(u32, f32)> {
    top_k_iter(
        scores.iter().enumerate().map(|(i, &s)| (i as u32, s)),
        k,
        exclude,
    )
}

/// Like [`top_k`] over arbitrary `(index, score)` candidates (each index at most once).
pub fn top_k_iter(
    candidates: impl IntoIterator<Item = (u32, f32)>,
    k: usize,
    exclude: &[u32],
) -> Vec<(u32, f32)> {
    if k == 0 {
        return Vec::new();
    }
    let mut heap: BinaryHeap<Worst> = BinaryHeap::with_capacity(k + 1);
    for (i, s) in candidates {
        let s = if s.is_nan() { f32::NEG_INFINITY } else { s };
        if heap.len() == k && heap.peek().is_some_and(|w| Worst(s, i) >= *w) {
            continue;
        }
        if exclude.binary_search(&i).is_ok() {
            continue;
        }
        heap.push(Worst(s, i));
        if heap.len() > k {
            heap.pop();
        }
    }
    let mut out: Vec<Worst> = heap.into_vec();
    out.sort_unstable();
    out.into_iter().map(|Worst(s, i)| (i, s)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn best_first_ties_by_index_and_excludes() {
        let scores = [0.5, 2.0, f32::NAN, 2.0, 1.0, 3.0];
        assert_eq!(top_k(&scores, 3, &[]), vec![(5, 3.0), (1, 2.0), (3, 2.0)]);
        assert_eq!(
            top_k(&scores, 3, &[1, 5]),
            vec![(3, 2.0), (4, 1.0), (0, 0.5)]
        );
        assert_eq!(top_k(&scores, 0, &[]), vec![]);
        let all = top_k(&scores, 10, &[]);
        assert_eq!(all.len(), 6);
        assert_eq!(all[5].0, 2, "NaN last");
    }
}
