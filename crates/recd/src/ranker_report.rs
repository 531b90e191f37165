//! What `recd eval --ranker` prints about the ranker it fits (stderr), so that a learned
//! ranker that loses to the blend can be diagnosed from the run itself: the fitted weights,
//! a validation of the fit on the replay's latest lists (never the test half), and the
//! mean inputs of the top 10 the learned ranker and the blend return to the evaluated users.

use std::collections::BTreeMap;

use recd_core::features::{FeatureSet, LinearRanker};
use recd_train::ctr::export::Row;
use recd_train::ctr::fit::{FitParams, fit};
use recd_train::eval::Evaluation;

use crate::eval::Pipeline;

/// The share of replayed lists (the latest) held out by [`validate`].
const HELD_OUT: f64 = 0.2;

/// Prints each input's standardization and weight, largest weight first.
pub(crate) fn print_weights(r: &LinearRanker) {
    let mut order: Vec<usize> = (0..r.inputs.len()).collect();
    order.sort_by(|&a, &b| r.weights[b].abs().total_cmp(&r.weights[a].abs()));
    eprintln!(
        "recd eval: ranker: bias {:+.3}; weights per standard deviation:",
        r.bias
    );
    for i in order {
        let inp = &r.inputs[i];
        eprintln!(
            "recd eval: ranker:   {:<24} {:+.3}  (mean {:.3}, sd {:.3}{})",
            inp.name,
            r.weights[i],
            inp.mean,
            inp.scale,
            if inp.log { ", of ln(1 + x)" } else { "" }
        );
    }
}

/// Mean NDCG@10 of the labels within each list, over `lists` (row ranges of `rows`),
/// ordered by `score` (higher first; ties by the logged order).
fn list_ndcg(rows: &[Row], lists: &[(usize, usize)], score: impl Fn(&Row) -> f64) -> f64 {
    let mut total = 0.0;
    let mut counted = 0usize;
    for &(a, b) in lists {
        let list = &rows[a..b];
        let relevant: Vec<u32> = (0..list.len() as u32)
            .filter(|&i| list[i as usize].label)
            .collect();
        if relevant.is_empty() {
            continue;
        }
        let mut order: Vec<u32> = (0..list.len() as u32).collect();
        order.sort_by(|&x, &y| score(&list[y as usize]).total_cmp(&score(&list[x as usize])));
        total += recd_train::metrics::ndcg_at_k(&order, &relevant, 10);
        counted += 1;
    }
    if counted == 0 {
        0.0
    } else {
        total / counted as f64
    }
}

/// Fits on the replay's earlier lists and compares, on its latest [`HELD_OUT`] share, the
/// ranking of each held-out list by the fit against the blend's (the served score):
/// mean NDCG@10 of its clicks. Returns (learned, blend). `rows` are in list order.
pub(crate) fn validate(set: &FeatureSet, rows: &[Row], params: &FitParams) -> Option<(f64, f64)> {
    let mut lists: Vec<(usize, usize)> = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        match lists.last_mut() {
            Some(last) if rows[last.0].recommendation_id == r.recommendation_id => last.1 = i + 1,
            _ => lists.push((i, i + 1)),
        }
    }
    let cut = ((lists.len() as f64) * (1.0 - HELD_OUT)).round() as usize;
    let (train, held) = lists.split_at(cut.min(lists.len()));
    let end = train.last()?.1;
    let ranker = fit(set, &rows[..end], params).ok()?;
    let learned = list_ndcg(rows, held, |r| ranker.logit(&r.features, &r.signals));
    let blend = list_ndcg(rows, held, |r| r.served_score);
    Some((learned, blend))
}

/// Prints the mean raw inputs (features and signals) of the top 10 of the learned
/// ranker and of the blend, over the evaluated users, and the mean number of train users
/// of those items (what novelty measures).
pub(crate) fn print_tops(pipeline: &mut Pipeline, set: &FeatureSet, ev: &Evaluation) {
    let Some(features) = pipeline.features.clone() else {
        return;
    };
    let learned = pipeline.ranking.ranker.take();
    let names = LinearRanker::input_names(set);
    let mut sums: BTreeMap<&str, (Vec<f64>, f64, usize)> = BTreeMap::new();
    for (label, ranker) in [("blend", None), ("learned", learned.clone())] {
        pipeline.ranking.ranker = ranker;
        let entry = sums
            .entry(label)
            .or_insert_with(|| (vec![0.0; names.len()], 0.0, 0));
        for &u in &ev.context.users {
            let exclude = &ev.context.train_items[u as usize];
            let Some(answer) = pipeline.answer(u, 10, exclude, pipeline.now_ms()) else {
                continue;
            };
            let Some(user_id) = pipeline.users.id(u) else {
                continue;
            };
            let items: Vec<_> = answer.items.iter().map(|r| &r.item).collect();
            let Ok(values) = pipeline.handle.block_on(features.store().values(
                set,
                user_id,
                &items,
                pipeline.now_ms(),
            )) else {
                continue;
            };
            let d = set.len().max(1);
            for (r, row) in answer.items.iter().zip(values.chunks(d)) {
                let sig = r.signals.values();
                for (s, x) in entry.0.iter_mut().zip(row.iter().chain(sig.iter())) {
                    *s += x;
                }
                if let Some(j) = pipeline.items.get(&r.item.id) {
                    entry.1 += f64::from(ev.context.item_users[j as usize]);
                }
                entry.2 += 1;
            }
        }
    }
    pipeline.ranking.ranker = learned;
    eprintln!("recd eval: ranker: mean input of the top 10 (evaluated users)   blend   learned");
    let (b, l) = (&sums["blend"], &sums["learned"]);
    let mean = |s: f64, n: usize| if n == 0 { 0.0 } else { s / n as f64 };
    for (i, name) in names.iter().enumerate() {
        eprintln!(
            "recd eval: ranker:   {:<40} {:>9.3} {:>9.3}",
            name,
            mean(b.0[i], b.2),
            mean(l.0[i], l.2)
        );
    }
    eprintln!(
        "recd eval: ranker:   {:<40} {:>9.1} {:>9.1}",
        "train users per item",
        mean(b.1, b.2),
        mean(l.1, l.2)
    );
}
