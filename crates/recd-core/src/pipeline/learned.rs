//! Scoring with the learned ranker: each candidate's click probability from its features
//! and retrieval signals, the position at its serving constant (0), so the position bias
//! the ranker learned shifts every candidate alike.

use crate::features::{LinearRanker, RankerInputs};
use crate::pipeline::score::{signals, similarity_floor};
use crate::pipeline::{Candidate, Scored};

/// Scores `candidates` with `ranker`; `features` holds one row of `d` values per candidate
/// (row-major, the feature set's order, `d = features.len() / candidates.len()`), and
/// sorts best first (ties by id).
///
/// The scores are computed beside the candidates (with their signals, 32 bytes each), the
/// order is found on numbers ([`best_first`]), and each candidate then moves once, into
/// its place in the answer.
pub fn score_learned(
    candidates: Vec<Candidate>,
    features: &[f64],
    ranker: &LinearRanker,
) -> Vec<Scored> {
    let floor = similarity_floor(&candidates);
    let d = features.len().checked_div(candidates.len()).unwrap_or(0);
    let sigs: Vec<RankerInputs> = candidates.iter().map(|c| signals(c, floor)).collect();
    let prepared = ranker.prepare(features, d, &sigs);
    let mut scores = prepared.probabilities(features, d, &sigs);
    for p in &mut scores {
        if !p.is_finite() {
            *p = f64::MIN;
        }
    }
    let order = best_first(&candidates, &scores);
    let mut slots: Vec<Option<Candidate>> = candidates.into_iter().map(Some).collect();
    order
        .into_iter()
        .filter_map(|i| {
            Some(Scored {
                candidate: slots.get_mut(i)?.take()?,
                score: scores[i],
                signals: sigs[i],
            })
        })
        .collect()
}

/// The candidates' indices best first, ties by id: the order `score::sort_scored` gives
/// (a stable sort by score, descending, then id), found on integers.
///
/// The blend's list arrives almost in score order (KNN's, which its score mostly follows),
/// so sorting its candidates in place is cheap; the learned ranker's scores bear no
/// relation to that order, and the stable sort of ~150 candidates by `partial_cmp` (a
/// mispredicted branch per comparison, ~180-byte elements moved at every merge) was 5 % of
/// the server's CPU under the learned strategy, 2.4 times the blend's. Here each score
/// becomes a 64-bit key in the same order (`-0.0` as `0.0`, which it equals), joined to
/// its index, and the 128-bit numbers are sorted; only runs of equal scores are then
/// ordered by id, stably (the index order within a run is the original order). Scores
/// are never NaN (a non-finite one is `f64::MIN`).
fn best_first(candidates: &[Candidate], scores: &[f64]) -> Vec<usize> {
    let mut keys: Vec<u128> = scores
        .iter()
        .enumerate()
        .map(|(i, &s)| (u128::from(descending_key(s)) << 64) | i as u128)
        .collect();
    keys.sort_unstable();
    let mut order: Vec<usize> = keys.iter().map(|&k| k as u64 as usize).collect();
    let mut at = 0;
    while at < keys.len() {
        let score = keys[at] >> 64;
        let run = keys[at..].iter().take_while(|&&k| k >> 64 == score).count();
        if run > 1 {
            order[at..at + run].sort_by(|&a, &b| candidates[a].item.id.cmp(&candidates[b].item.id));
        }
        at += run;
    }
    order
}

/// A key whose ascending order is `s`'s descending order, for non-NaN `s`.
fn descending_key(s: f64) -> u64 {
    // -0.0 + 0.0 is +0.0: the two zeros get one key, as they compare equal.
    let bits = (s + 0.0).to_bits();
    let ascending = if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    };
    !ascending
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

    /// The scores and order as the straightforward computation gives them, in the
    /// prepared ranker's order of summation (the constant inputs into the intercept first,
    /// column by column, then each candidate's varying inputs), with `f64::ln_1p` itself:
    /// what `score_learned` must give bit for bit.
    fn reference(c: Vec<Candidate>, features: &[f64], r: &LinearRanker) -> Vec<(String, u64)> {
        let floor = similarity_floor(&c);
        let d = features.len() / c.len();
        let sigs: Vec<_> = c.iter().map(|c| signals(c, floor)).collect();
        let value = |row: usize, col: usize| {
            if col < d {
                features[row * d + col]
            } else {
                sigs[row].values()[col - d]
            }
        };
        let standardize = |inp: &Input, x: f64| {
            let x = if inp.log { x.max(0.0).ln_1p() } else { x };
            let z = (x - inp.mean) / inp.scale;
            if z.is_finite() { z } else { 0.0 }
        };
        let mut intercept = r.bias;
        let mut varying = Vec::new();
        for (col, (inp, &w)) in r.inputs.iter().zip(&r.weights).enumerate() {
            if w == 0.0 {
                continue;
            }
            if (1..c.len()).all(|row| value(row, col).to_bits() == value(0, col).to_bits()) {
                intercept += w * standardize(inp, value(0, col));
            } else {
                varying.push((col, w, inp));
            }
        }
        let mut out: Vec<(String, f64)> = c
            .iter()
            .enumerate()
            .map(|(row, c)| {
                let mut z = intercept;
                for &(col, w, inp) in &varying {
                    z += w * standardize(inp, value(row, col));
                }
                let p = 1.0 / (1.0 + (-z).exp());
                (c.item.id.clone(), if p.is_finite() { p } else { f64::MIN })
            })
            .collect();
        out.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap().then_with(|| a.0.cmp(&b.0)));
        out.into_iter().map(|(id, p)| (id, p.to_bits())).collect()
    }

    #[test]
    fn scores_and_order_are_the_straightforward_computations_bit_for_bit() {
        use rand::rngs::Xoshiro256PlusPlus;
        use rand::{RngExt, SeedableRng};
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(20);
        let names = [
            "a",
            "b",
            "c",
            "d",
            "similarity",
            "popularity",
            "knn",
            "position",
        ];
        let d = 4;
        for round in 0..200 {
            let ranker = LinearRanker {
                inputs: names
                    .iter()
                    .enumerate()
                    .map(|(i, n)| Input {
                        name: (*n).into(),
                        log: i < d && rng.random::<bool>(),
                        mean: rng.random_range(-1.0..1.0),
                        scale: rng.random_range(0.2..3.0),
                    })
                    .collect(),
                weights: names
                    .iter()
                    .map(|_| match rng.random_range(0..5) {
                        0 => 0.0,
                        _ => rng.random_range(-2.0..2.0),
                    })
                    .collect(),
                bias: rng.random_range(-3.0..1.0),
            };
            let n = rng.random_range(1..60);
            let knn: Vec<(Arc<Item>, f32)> = (0..n)
                .map(|i| (it(&format!("k{i}")), rng.random_range(0.0..1.0)))
                .collect();
            let popular: Vec<(Arc<Item>, f64)> = (0..rng.random_range(0..20))
                .map(|i| (it(&format!("k{}", i * 3)), rng.random_range(0.0..5.0)))
                .chain((0..5).map(|i| (it(&format!("p{i}")), 1.0)))
                .collect();
            let list = merge(knn, popular, vec![]);
            // Counts (whole, small and past the table), fractions, negatives, -0.0, a
            // column constant over the list in some rounds, and repeated rows (ties).
            let constant = round % 3 == 0;
            let mut features = Vec::new();
            for row in 0..list.len() {
                for col in 0..d {
                    let x = match (constant && col == 0, rng.random_range(0..8)) {
                        (true, _) => 4.0,
                        (_, 0..=2) => f64::from(rng.random_range(0u32..40)),
                        (_, 3) => f64::from(rng.random_range(1000u32..5000)),
                        (_, 4) => rng.random_range(0.0..30.0),
                        (_, 5) => -rng.random_range(0.0..3.0),
                        (_, 6) => -0.0,
                        _ if row > 0 => features[(row - 1) * d + col],
                        _ => 0.0,
                    };
                    features.push(x);
                }
            }
            let got: Vec<(String, u64)> = score_learned(list.clone(), &features, &ranker)
                .into_iter()
                .map(|s| (s.candidate.item.id.clone(), s.score.to_bits()))
                .collect();
            assert_eq!(got, reference(list, &features, &ranker), "round {round}");
        }
    }

    #[test]
    fn best_first_gives_the_in_place_sorts_order() {
        use rand::rngs::Xoshiro256PlusPlus;
        use rand::{RngExt, SeedableRng};
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);
        for round in 0..300 {
            let n = rng.random_range(0..200);
            // Few distinct scores (many ties, broken by id), f64::MIN, -0.0 beside 0.0.
            let list: Vec<Scored> = merge(
                (0..n)
                    .map(|i| {
                        (
                            it(&format!("i{}", rng.random_range(0..1000) * 1000 + i)),
                            0.5,
                        )
                    })
                    .collect(),
                vec![],
                vec![],
            )
            .into_iter()
            .map(|c| Scored {
                signals: signals(&c, None),
                candidate: c,
                score: match rng.random_range(0..6) {
                    0 => f64::MIN,
                    1 => -0.0,
                    2 => 0.0,
                    _ => f64::from(rng.random_range(0..8u8)) / 8.0,
                },
            })
            .collect();
            let mut want = list.clone();
            crate::pipeline::score::sort_scored(&mut want);
            let candidates: Vec<Candidate> = list.iter().map(|s| s.candidate.clone()).collect();
            let scores: Vec<f64> = list.iter().map(|s| s.score).collect();
            let got: Vec<Scored> = best_first(&candidates, &scores)
                .into_iter()
                .map(|i| list[i].clone())
                .collect();
            assert_eq!(got, want, "round {round}");
        }
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
