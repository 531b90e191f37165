//! Property: filtered exact search returns exactly the top-k of the allowed set, computed
//! here by brute force in f64, for every metric, with removals and updates mixed in; and the
//! planner-driven `search` never returns a disallowed id or fewer hits than exist.

use std::collections::BTreeMap;

use proptest::prelude::*;
use recd_index::roaring::RoaringBitmap;
use recd_index::{HnswParams, Metric, VectorIndex};

const DIM: usize = 5;

fn metric() -> impl Strategy<Value = Metric> {
    prop_oneof![
        Just(Metric::Cosine),
        Just(Metric::InnerProduct),
        Just(Metric::L2)
    ]
}

/// Small integer-valued components keep f32 dot products exact, so the oracle's order is
/// unambiguous except for true ties (which both sides break by the smaller id).
fn vector() -> impl Strategy<Value = Vec<f32>> {
    prop::collection::vec(-4i8..=4, DIM)
        .prop_filter("non-zero (cosine)", |v| v.iter().any(|&x| x != 0))
        .prop_map(|v| v.into_iter().map(f32::from).collect())
}

fn oracle_score(metric: Metric, q: &[f32], v: &[f32]) -> f64 {
    let dot: f64 = q
        .iter()
        .zip(v)
        .map(|(a, b)| f64::from(*a) * f64::from(*b))
        .sum();
    let norm = |x: &[f32]| x.iter().map(|a| f64::from(*a).powi(2)).sum::<f64>().sqrt();
    match metric {
        Metric::Cosine => dot / (norm(q) * norm(v)),
        Metric::InnerProduct => dot,
        Metric::L2 => -q
            .iter()
            .zip(v)
            .map(|(a, b)| (f64::from(*a) - f64::from(*b)).powi(2))
            .sum::<f64>(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn filtered_exact_search_is_the_top_k_of_the_allowed_set(
        metric in metric(),
        items in prop::collection::vec((0u32..60, vector()), 0..80),
        removed in prop::collection::vec(0u32..60, 0..10),
        allowed in prop::collection::vec(0u32..70, 0..40),
        query in vector(),
        k in 0usize..25,
        use_filter in any::<bool>(),
    ) {
        let index = VectorIndex::new(DIM, metric, HnswParams { m: 4, ef_construction: 16, ef_search: 8 });
        // Later inserts of the same id are updates; the model keeps the last vector.
        let mut model: BTreeMap<u32, Vec<f32>> = BTreeMap::new();
        for (id, v) in &items {
            index.insert(*id, v).expect("valid vector");
            model.insert(*id, v.clone());
        }
        for id in &removed {
            prop_assert_eq!(index.remove(*id), model.remove(id).is_some());
        }
        let filter: RoaringBitmap = allowed.iter().copied().collect();
        let filter = use_filter.then_some(&filter);

        let mut all: Vec<(f64, u32)> = model
            .iter()
            .filter(|(id, _)| filter.is_none_or(|f| f.contains(**id)))
            .map(|(id, v)| (oracle_score(metric, &query, v), *id))
            .collect();
        all.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let expected = &all[..k.min(all.len())];

        let got = index.exact_search(&query, k, filter).expect("valid query");
        prop_assert_eq!(got.len(), expected.len());
        for (h, (score, id)) in got.iter().zip(expected) {
            prop_assert!((f64::from(h.score) - score).abs() < 1e-4, "score {} vs {}", h.score, score);
            // Same id unless two allowed vectors tie on score (possibly across the k cut).
            if h.id != *id {
                let tied = all.iter().any(|(s, e)| *e == h.id && (s - score).abs() < 1e-6);
                prop_assert!(tied, "id {} where {} was expected", h.id, id);
            }
        }

        // The planner-driven search: only allowed, live ids, never fewer than exist.
        let approx = index.search(&query, k, filter).expect("valid query");
        prop_assert_eq!(approx.len(), expected.len());
        for h in &approx {
            prop_assert!(model.contains_key(&h.id));
            prop_assert!(filter.is_none_or(|f| f.contains(h.id)));
        }
    }
}
