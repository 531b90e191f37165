//! Scoring: one number per candidate, higher is better.
//!
//! Without a text query the score is a weighted sum of vector similarity, relative
//! popularity and the relative transitions score (what often comes next after the user's
//! recent items). A candidate that only the popular or transitions source found gets the
//! lowest similarity any KNN candidate had: KNN returned the best matches, so it is at
//! most that similar, and this keeps it comparable without fetching its vector. The
//! transitions term is on the scale of the best KNN similarity (1 without KNN
//! candidates): under the inner product a similarity is as large as the item vectors are
//! long, which differs by model and data, so `transitions_weight` says "a top successor
//! is worth this share of the best match" whatever the metric. With a text query the
//! lists are combined by reciprocal rank fusion, since text ranks and cosine scores share
//! no scale.

use std::cmp::Ordering;

use crate::features::RankerInputs;
use crate::pipeline::{Candidate, RankParams};

/// A candidate and its score.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    /// The candidate with its signals.
    pub candidate: Candidate,
    /// The final score.
    pub score: f64,
    /// The signals as scoring saw them (the impression log records them for training).
    pub signals: RankerInputs,
}

/// The lowest similarity of any KNN candidate.
pub fn similarity_floor(candidates: &[Candidate]) -> Option<f32> {
    candidates
        .iter()
        .filter_map(|c| c.similarity)
        .fold(None, |m: Option<f32>, s| Some(m.map_or(s, |m| m.min(s))))
}

/// A candidate's ranker signals: a candidate KNN did not find gets `floor` (see the
/// module doc); position 0 (where it lands is known only after re-ranking).
pub fn signals(c: &Candidate, floor: Option<f32>) -> RankerInputs {
    RankerInputs {
        similarity: f64::from(c.similarity.or(floor).unwrap_or(0.0)),
        popularity: c.popularity.unwrap_or(0.0),
        knn: c.knn_rank.is_some(),
        position: 0.0,
    }
}

/// Sorts best first, ties by id (so the order is deterministic).
pub(crate) fn sort_scored(scored: &mut [Scored]) {
    scored.sort_by(|a, b| {
        b.score
            .partial_cmp(&a.score)
            .unwrap_or(Ordering::Equal)
            .then_with(|| a.candidate.item.id.cmp(&b.candidate.item.id))
    });
}

/// Scores every candidate and sorts best first (ties by id, so the order is deterministic).
pub fn score_all(candidates: Vec<Candidate>, params: &RankParams, fusion: bool) -> Vec<Scored> {
    let floor = similarity_floor(&candidates);
    let next_scale = candidates
        .iter()
        .filter_map(|c| c.similarity)
        .fold(None, |m: Option<f32>, s| Some(m.map_or(s, |m| m.max(s))))
        .filter(|m| m.is_finite() && *m > 0.0)
        .map_or(1.0, f64::from);
    let rrf = |rank: Option<usize>| rank.map_or(0.0, |r| 1.0 / (params.rrf_k + r as f64 + 1.0));
    let mut scored: Vec<Scored> = candidates
        .into_iter()
        .map(|c| {
            let score = if fusion {
                rrf(c.knn_rank)
                    + rrf(c.text_rank)
                    + params.popularity_weight * rrf(c.popular_rank)
                    + params.transitions_weight * rrf(c.next_rank)
            } else {
                let sim = c.similarity.or(floor).unwrap_or(0.0);
                params.similarity_weight * f64::from(sim)
                    + params.popularity_weight * c.popularity.unwrap_or(0.0)
                    + params.transitions_weight * next_scale * c.next.unwrap_or(0.0)
            };
            Scored {
                signals: signals(&c, floor),
                candidate: c,
                score: if score.is_finite() { score } else { f64::MIN },
            }
        })
        .collect();
    sort_scored(&mut scored);
    scored
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::item::Item;
    use crate::pipeline::merge;

    fn it(id: &str) -> std::sync::Arc<Item> {
        std::sync::Arc::new(Item {
            id: id.into(),
            vector: None,
            fields: BTreeMap::new(),
        })
    }

    #[test]
    fn popularity_breaks_near_ties_and_popular_only_items_sit_at_the_floor() {
        let p = RankParams {
            similarity_weight: 1.0,
            popularity_weight: 0.1,
            ..Default::default()
        };
        let c = merge(
            vec![(it("a"), 0.90), (it("b"), 0.89), (it("c"), 0.5)],
            vec![(it("b"), 0.0), (it("z"), 0.0)],
            vec![],
        );
        let s = score_all(c, &p, false);
        let ids: Vec<_> = s.iter().map(|s| s.candidate.item.id.as_str()).collect();
        assert_eq!(ids, ["b", "a", "z", "c"]);
        assert!((s[2].score - (0.5 + 0.1)).abs() < 1e-6);
        assert!(s.windows(2).all(|w| w[0].score >= w[1].score));
    }

    #[test]
    fn the_transitions_score_adds_its_weight() {
        let p = RankParams {
            similarity_weight: 1.0,
            popularity_weight: 0.0,
            transitions_weight: 0.5,
            ..Default::default()
        };
        let c = crate::pipeline::merge_with_next(
            vec![(it("a"), 0.9), (it("b"), 0.6)],
            vec![],
            vec![],
            vec![(it("n"), 2.0, "x".into()), (it("b"), 1.0, "x".into())],
        );
        let s = score_all(c.clone(), &p, false);
        let got: Vec<_> = s
            .iter()
            .map(|s| (s.candidate.item.id.as_str(), s.score))
            .collect();
        // on the scale of the best similarity (0.9): n: the floor (0.6) + 0.5 · 0.9 · 1 =
        // 1.05; a: 0.9; b: 0.6 + 0.5 · 0.9 · 0.5 = 0.825
        let want = [("n", 1.05), ("a", 0.9), ("b", 0.825)];
        assert_eq!(got.len(), want.len());
        for ((id, score), (want_id, want_score)) in got.iter().zip(want) {
            assert_eq!(*id, want_id, "{got:?}");
            assert!((score - want_score).abs() < 1e-6, "{got:?}");
        }
        let off = RankParams {
            transitions_weight: 0.0,
            ..p
        };
        assert_eq!(score_all(c, &off, false)[0].candidate.item.id, "a");
    }

    #[test]
    fn fusion_rewards_agreement_between_lists() {
        let p = RankParams::default();
        let c = merge(
            vec![(it("a"), 0.9), (it("b"), 0.8)],
            vec![],
            vec![it("b"), it("c")],
        );
        let s = score_all(c, &p, true);
        assert_eq!(s[0].candidate.item.id, "b");
    }
}
