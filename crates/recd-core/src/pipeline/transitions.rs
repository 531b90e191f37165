//! The transitions candidate source: items that often come next after the user's recent ones.
//!
//! Training counts, per item `a`, which items `b` users touched right after it (weighted by
//! the arriving event's weight) and keeps each item's most likely successors with
//! `P(b | a)` (recd-train's `transitions`); the live model version carries that table.
//! At serving time the user's most recent distinct items `r0` (latest), `r1`, … propose
//! their successors: `score(b) = Σ_j DECAY^j · P(b | r_j)` over the last [`RECENT`] of
//! them — the same formula as the offline model, so the eval arm measures what serves.
//! Each candidate remembers the recent item that contributed most to it, for its reason
//! ("often next after X").

use std::collections::HashMap;

/// Recent distinct items of a user that propose successors.
pub const RECENT: usize = 3;
/// Weight of each step further back.
pub const DECAY: f32 = 0.5;

/// One proposed next item.
#[derive(Debug, Clone, PartialEq)]
pub struct Next {
    /// The proposed item.
    pub item: String,
    /// `Σ_j DECAY^j · P(item | r_j)`.
    pub score: f32,
    /// The recent item whose term in the score is the largest.
    pub after: String,
}

/// Up to `k` items following `recent` (latest first, each with its successor list `(b,
/// P(b | a))`), best first, ties by id. Only the first [`RECENT`] lists count; a recent
/// item proposing itself (a repeat) is skipped.
pub fn next_items(recent: &[(&str, &[(String, f32)])], k: usize) -> Vec<Next> {
    // item → (score, best single contribution, its source)
    let mut scores: HashMap<&str, (f32, f32, &str)> = HashMap::new();
    let mut weight = 1.0f32;
    for &(a, successors) in recent.iter().take(RECENT) {
        for (b, p) in successors {
            if b == a || !p.is_finite() || *p <= 0.0 {
                continue;
            }
            let term = weight * p;
            let e = scores.entry(b.as_str()).or_insert((0.0, 0.0, a));
            e.0 += term;
            if term > e.1 {
                e.1 = term;
                e.2 = a;
            }
        }
        weight *= DECAY;
    }
    let mut out: Vec<Next> = scores
        .into_iter()
        .map(|(item, (score, _, after))| Next {
            item: item.to_owned(),
            score,
            after: after.to_owned(),
        })
        .collect();
    out.sort_by(|x, y| {
        y.score
            .total_cmp(&x.score)
            .then_with(|| x.item.cmp(&y.item))
    });
    out.truncate(k);
    out
}

/// The user's first [`RECENT`] distinct items of `recent` (most recent first), the items
/// whose successors are read.
pub fn recent_items<S: AsRef<str>>(recent: &[S]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(RECENT);
    for id in recent.iter().map(AsRef::as_ref) {
        if out.len() >= RECENT {
            break;
        }
        if !out.iter().any(|o| o == id) {
            out.push(id.to_owned());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(v: &[(&str, f32)]) -> Vec<(String, f32)> {
        v.iter().map(|(b, p)| (b.to_string(), *p)).collect()
    }

    #[test]
    fn recent_items_propose_their_successors_decayed() {
        let x = list(&[("b", 0.6), ("c", 0.4)]);
        let y = list(&[("c", 1.0), ("x", 0.5)]);
        // x is the latest (weight 1), y before it (0.5)
        let out = next_items(&[("x", &x), ("y", &y)], 10);
        let got: Vec<_> = out.iter().map(|n| (n.item.as_str(), n.score)).collect();
        // c: 0.4 + 0.5 = 0.9, b: 0.6, x: 0.25
        assert_eq!(got, [("c", 0.9), ("b", 0.6), ("x", 0.25)]);
        assert_eq!(out[0].after, "y", "c owes more to y (0.5) than to x (0.4)");
        assert_eq!(out[1].after, "x");
        assert_eq!(next_items(&[("x", &x), ("y", &y)], 1).len(), 1);
    }

    #[test]
    fn only_the_last_few_count_and_repeats_are_no_successors() {
        let own = list(&[("a", 1.0), ("n", 0.5)]);
        let far = list(&[("z", 1.0)]);
        let lists: Vec<(&str, &[(String, f32)])> = vec![
            ("a", &own),
            ("p", &[]),
            ("q", &[]),
            ("r", &far), // the fourth: beyond RECENT
        ];
        let out = next_items(&lists, 10);
        let ids: Vec<_> = out.iter().map(|n| n.item.as_str()).collect();
        assert_eq!(ids, ["n"]);
        assert!(next_items(&[], 10).is_empty());
        let r = recent_items(&["a", "b", "a", "c", "d"]);
        assert_eq!(r, ["a", "b", "c"]);
    }
}
