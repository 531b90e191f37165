//! Ranking quality of click scores: the area under the ROC curve over every held-out
//! impression, and its per-list average (GAUC: only the order within a list is what a
//! ranker decides, and a list with no click or only clicks says nothing).

use std::collections::HashMap;

/// The AUC of `scores` against `labels` (ties count half); `None` without both labels.
pub fn auc(scores: &[f64], labels: &[bool]) -> Option<f64> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| {
        scores[a]
            .partial_cmp(&scores[b])
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let (mut rank_sum, mut pos) = (0.0, 0usize);
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && scores[idx[j + 1]] == scores[idx[i]] {
            j += 1;
        }
        // Ranks i+1..=j+1 share their average.
        let avg = (i + j + 2) as f64 / 2.0;
        for &k in &idx[i..=j] {
            if labels[k] {
                rank_sum += avg;
                pos += 1;
            }
        }
        i = j + 1;
    }
    let neg = scores.len() - pos;
    if pos == 0 || neg == 0 {
        return None;
    }
    let (p, n) = (pos as f64, neg as f64);
    Some((rank_sum - p * (p + 1.0) / 2.0) / (p * n))
}

/// The average AUC over groups (lists) that have both labels, weighted by impressions.
pub fn grouped_auc(groups: &[&str], scores: &[f64], labels: &[bool]) -> Option<f64> {
    let mut by: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, g) in groups.iter().enumerate() {
        by.entry(g).or_default().push(i);
    }
    let (mut sum, mut weight) = (0.0, 0.0);
    for idx in by.values() {
        let s: Vec<f64> = idx.iter().map(|&i| scores[i]).collect();
        let l: Vec<bool> = idx.iter().map(|&i| labels[i]).collect();
        if let Some(a) = auc(&s, &l) {
            sum += a * idx.len() as f64;
            weight += idx.len() as f64;
        }
    }
    (weight > 0.0).then(|| sum / weight)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_by_hand() {
        // Positives at 0.9 and 0.4, negatives at 0.5 and 0.1: of 4 pairs, 3 ordered right.
        let a = auc(&[0.9, 0.5, 0.4, 0.1], &[true, false, true, false]).unwrap();
        assert!((a - 0.75).abs() < 1e-12);
        // A tie between a positive and a negative counts half.
        assert!((auc(&[0.5, 0.5], &[true, false]).unwrap() - 0.5).abs() < 1e-12);
        assert!(auc(&[1.0], &[true]).is_none());
    }

    #[test]
    fn grouped_auc_ignores_lists_without_both_labels() {
        let g = ["a", "a", "b", "b", "c"];
        let s = [1.0, 0.0, 0.0, 1.0, 5.0];
        let l = [true, false, true, false, true];
        assert!((grouped_auc(&g, &s, &l).unwrap() - 0.5).abs() < 1e-12);
    }
}
