//! Scoring with the learned ranker: each candidate's click probability from its features
//! and retrieval signals, the position at its serving constant (0), so the position bias
//! the ranker learned shifts every candidate alike.

use crate::features::LinearRanker;
use crate::pipeline::score::{signals, similarity_floor, sort_scored};
use crate::pipeline::{Candidate, Scored};

/// Scores `candidates` with `ranker`; `features` holds one row of `d` values per candidate
/// (row-major, the feature set's order, `d = features.len() / candidates.len()`), and
/// sorts best first (ties by id).
pub fn score_learned(
    candidates: Vec<Candidate>,
    features: &[f64],
    ranker: &LinearRanker,
) -> Vec<Scored> {
    let floor = similarity_floor(&candidates);
    let d = features.len().checked_div(candidates.len()).unwrap_or(0);
    let sigs: Vec<_> = candidates.iter().map(|c| signals(c, floor)).collect();
    let prepared = ranker.prepare(features, d, &sigs);
    let mut scored: Vec<Scored> = candidates
        .into_iter()
        .zip(sigs)
        .enumerate()
        .map(|(i, (c, sig))| {
            let row = features.get(i * d..(i + 1) * d).unwrap_or(&[]);
            let p = prepared.probability(row, &sig);
            Scored {
                candidate: c,
                score: if p.is_finite() { p } else { f64::MIN },
                signals: sig,
            }
        })
        .collect();
    sort_scored(&mut scored);
    scored
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use super::*;
    use crate::features::ranker::Input;
    use crate::item::Item;
    use crate::pipeline::merge;

    fn it(id: &str) -> Arc<Item> {
        Arc::new(Item {
            id: id.into(),
            vector: None,
            fields: BTreeMap::new(),
        })
    }

    #[test]
    fn a_feature_the_ranker_weighs_reorders_the_blend() {
        let inp = |name: &str| Input {
            name: name.into(),
            log: false,
            mean: 0.0,
            scale: 1.0,
        };
        let ranker = LinearRanker {
            inputs: ["tag_clicks", "similarity", "popularity", "knn", "position"]
                .map(inp)
                .to_vec(),
            weights: vec![3.0, 1.0, 0.0, 0.0, -0.5],
            bias: 0.0,
        };
        // b is less similar, but the user clicks its category.
        let c = merge(
            vec![(it("a"), 0.9), (it("b"), 0.6)],
            vec![(it("z"), 0.0)],
            vec![],
        );
        let s = score_learned(c, &[0.0, 1.0, 0.0], &ranker);
        let ids: Vec<_> = s.iter().map(|s| s.candidate.item.id.as_str()).collect();
        assert_eq!(ids, ["b", "a", "z"]);
        // z, found by popularity alone, is scored at the list's lowest similarity.
        assert_eq!(s[2].signals.similarity, f64::from(0.6f32));
        assert!(!s[2].signals.knn);
        assert!(s.windows(2).all(|w| w[0].score >= w[1].score));
    }
}
