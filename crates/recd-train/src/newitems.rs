//! The new-item evaluation (`recd eval --new-items`): how soon an item the model never
//! trained on becomes recommendable, with the serving side's two sources of new-item
//! vectors (recd-core's `newitems`: the item fold-in and the content map) against none.
//!
//! Protocol: one global time cutoff (the last `test_fraction` of the events are the test
//! period); ALS trains on the events before it. *New items* are those first seen in the
//! test period. The test events are replayed in time order, as the server would see them:
//! before each first touch of an item by a user the model knows (one with a trained
//! vector; a positive event), that user's query (their trained vector) ranks every item
//! (trained items, and the new items that have a vector in the arm) except those they
//! touched before; a hit is the item in the top `k` (NDCG: `1/log2(rank + 2)`). Then the
//! event is observed: its item's interaction list grows (`newitems::touch`, the event
//! weights of the server) and, once ready, the item is folded in against the trained user
//! vectors, as `Engine::fold_new_items` does. Arms:
//! - `none`: new items have no vector (the state before this work: only popularity or a
//!   training could surface them);
//! - `content`: the content map's vector (fitted on the trained items) from the start;
//! - `fold_in`: the item fold-in's vector once ready;
//! - `both`: the content vector until the fold-in replaces it (the server's default).
//!
//! Hits are reported separately for events on new items and on trained items (a new item
//! that ranks high steals a place from a trained one: the second figure shows the cost).
//! Scoring is exact (a dot product over every item), so the figures are the model's, not
//! an index's.

use std::collections::{HashMap, HashSet};

use recd_core::newitems::{ContentModel, NewItemParams, content_features, fold_item, ready, touch};
use recd_core::{EventWeights, FoldInParams, FoldModel, Gram, Item};
use serde::Serialize;

use crate::als::{self, AlsParams};
use crate::dataset::{Interaction, Interactions};
use crate::error::{Result, TrainError};

/// The arms, in report order.
pub const ARMS: [&str; 4] = ["none", "content", "fold_in", "both"];

/// Settings of the evaluation.
#[derive(Debug, Clone)]
pub struct NewItemEvalConfig {
    /// List length.
    pub k: usize,
    /// Share of the events (by time) in the test period.
    pub test_fraction: f64,
    /// The model trained on the events before the cutoff.
    pub als: AlsParams,
    /// The new-item settings (`min_interactions`, `capacity`, the content map's).
    pub params: NewItemParams,
}

/// Hits of one arm on one kind of event.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Score {
    /// Share of the events whose item was in the top `k`.
    pub hit_rate: f64,
    /// Mean NDCG@k of the events.
    pub ndcg: f64,
    /// Events scored.
    pub events: usize,
}

/// One arm's figures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct ArmReport {
    /// On first touches of new items.
    pub new_items: Score,
    /// On first touches of trained items.
    pub trained_items: Score,
    /// New items with a vector at the end of the test period.
    pub placed: usize,
}

/// The evaluation's result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NewItemReport {
    /// List length.
    pub k: usize,
    /// Events before the cutoff.
    pub train_events: usize,
    /// Events from it on.
    pub test_events: usize,
    /// Items first seen in the test period.
    pub new_items: usize,
    /// Of those, items with content the map knows.
    pub new_items_with_content: usize,
    /// ALS training time.
    pub train_seconds: f64,
    /// Per arm (see [`ARMS`]).
    pub arms: Vec<(String, ArmReport)>,
}

#[derive(Default, Clone, Copy)]
struct Acc {
    hits: usize,
    ndcg: f64,
    n: usize,
}

impl Acc {
    fn add(&mut self, rank: Option<usize>, k: usize) {
        self.n += 1;
        if let Some(r) = rank.filter(|r| *r < k) {
            self.hits += 1;
            self.ndcg += 1.0 / ((r + 2) as f64).log2();
        }
    }

    fn score(&self) -> Score {
        let n = self.n.max(1) as f64;
        Score {
            hit_rate: self.hits as f64 / n,
            ndcg: self.ndcg / n,
            events: self.n,
        }
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    recd_core::vector::dot(a, b)
}

/// Runs the evaluation on `raw` (any order) with `content` (item id → item with its
/// fields; may be empty) and the event `weights` of the server.
pub fn evaluate(
    raw: &[Interaction],
    content: &HashMap<String, Item>,
    weights: &EventWeights,
    cfg: &NewItemEvalConfig,
) -> Result<NewItemReport> {
    if !(cfg.test_fraction > 0.0 && cfg.test_fraction < 1.0) {
        return Err(TrainError::InvalidParam {
            name: "test_fraction",
            message: "must be between 0 and 1".into(),
        });
    }
    let mut events: Vec<&Interaction> = raw.iter().collect();
    events.sort_by_key(|e| e.timestamp_ms);
    let cut = ((events.len() as f64) * (1.0 - cfg.test_fraction)) as usize;
    let cutoff = events
        .get(cut)
        .map(|e| e.timestamp_ms)
        .ok_or_else(|| TrainError::Empty("no events in the test period".into()))?;
    let (train, test): (Vec<&Interaction>, Vec<&Interaction>) =
        events.iter().partition(|e| e.timestamp_ms < cutoff);
    let (data, _) = Interactions::from_raw(train.iter().map(|e| (*e).clone()), weights);
    let model = als::train(&data, &cfg.als)?;
    let k = cfg.als.factors;
    let (users, items) = (model.user_ids.clone(), model.item_ids.clone());
    let n_old = items.len();
    let user_vec = |u: u32| &model.user_factors[u as usize * k..(u as usize + 1) * k];
    let item_vec = |i: usize| &model.item_factors[i * k..(i + 1) * k];

    // The item fold-in's system on the trained user vectors.
    let mut gram = Gram::new(k);
    for u in 0..users.len() as u32 {
        gram.add(user_vec(u));
    }
    let fold = FoldModel::new(
        &gram,
        &FoldInParams {
            regularization: f64::from(cfg.als.regularization),
            alpha: f64::from(cfg.als.alpha),
            share: 1.0,
            session_mix: 0.0,
            ..Default::default()
        },
    );

    // New items, and their content vectors.
    let mut new_ids: HashMap<&str, usize> = HashMap::new();
    for e in &test {
        if items.get(&e.item).is_none() && !new_ids.contains_key(e.item.as_str()) {
            new_ids.insert(e.item.as_str(), new_ids.len());
        }
    }
    let n_new = new_ids.len();
    let p = &cfg.params;
    let map = {
        let trained: Vec<recd_core::newitems::ContentRow<'_>> = (0..n_old)
            .filter_map(|i| {
                let it = content.get(items.id(i as u32)?)?;
                Some((content_features(it, p.content_buckets), item_vec(i)))
            })
            .collect();
        ContentModel::fit(&trained, p.content_buckets, k, p.content_regularization)
    };
    let mut content_vec: Vec<Option<Vec<f32>>> = vec![None; n_new];
    if let Some(map) = &map {
        for (id, &j) in &new_ids {
            content_vec[j] = content.get(*id).and_then(|it| map.apply(it));
        }
    }
    let with_content = content_vec.iter().filter(|v| v.is_some()).count();

    // Each user's touched items: trained ones by index, new ones by new index.
    let mut seen_old: Vec<HashSet<u32>> = vec![HashSet::new(); users.len()];
    for (&u, &i) in data.users.iter().zip(&data.items) {
        seen_old[u as usize].insert(i);
    }
    let mut seen_new: Vec<HashSet<usize>> = vec![HashSet::new(); users.len()];
    let mut lists: Vec<Vec<(String, f32)>> = vec![Vec::new(); n_new];
    let mut folded: Vec<Option<Vec<f32>>> = vec![None; n_new];
    let mut acc_new = [Acc::default(); 4];
    let mut acc_old = [Acc::default(); 4];
    let mut old_scores = vec![0f32; n_old];

    for e in &test {
        let w = weights.weight(e.kind, e.value) as f32;
        let u = users.get(&e.user);
        let target_new = new_ids.get(e.item.as_str()).copied();
        let target_old = items.get(&e.item);
        if let (Some(u), true) = (u, w > 0.0) {
            let first = match (target_old, target_new) {
                (Some(i), _) => !seen_old[u as usize].contains(&i),
                (None, Some(j)) => !seen_new[u as usize].contains(&j),
                _ => false,
            };
            if first {
                let x = user_vec(u);
                for (i, s) in old_scores.iter_mut().enumerate() {
                    *s = dot(x, item_vec(i));
                }
                let excluded_old = &seen_old[u as usize];
                let excluded_new = &seen_new[u as usize];
                for (a, arm) in ARMS.iter().enumerate() {
                    let vec_of = |j: usize| -> Option<&Vec<f32>> {
                        match *arm {
                            "content" => content_vec[j].as_ref(),
                            "fold_in" => folded[j].as_ref(),
                            "both" => folded[j].as_ref().or(content_vec[j].as_ref()),
                            _ => None,
                        }
                    };
                    let target = match (target_old, target_new) {
                        (Some(i), _) => Some(old_scores[i as usize]),
                        (None, Some(j)) => vec_of(j).map(|y| dot(x, y)),
                        _ => None,
                    };
                    let rank = target.map(|s| {
                        let old = old_scores
                            .iter()
                            .enumerate()
                            .filter(|(i, v)| {
                                **v > s
                                    && !excluded_old.contains(&(*i as u32))
                                    && Some(*i as u32) != target_old
                            })
                            .count();
                        let new = (0..n_new)
                            .filter(|j| Some(*j) != target_new && !excluded_new.contains(j))
                            .filter_map(vec_of)
                            .filter(|y| dot(x, y) > s)
                            .count();
                        old + new
                    });
                    match target_new {
                        Some(_) => acc_new[a].add(rank, cfg.k),
                        None => acc_old[a].add(rank, cfg.k),
                    }
                }
            }
        }
        // Observe.
        if let Some(u) = u {
            match (target_old, target_new) {
                (Some(i), _) => {
                    seen_old[u as usize].insert(i);
                }
                (None, Some(j)) => {
                    seen_new[u as usize].insert(j);
                }
                _ => {}
            }
            // Only users with a trained vector count in the fold-in (the server's too).
            if let (Some(j), Some(fold)) = (target_new, fold.as_ref()) {
                touch(&mut lists[j], &e.user, w, p.capacity);
                if ready(&lists[j], p) {
                    folded[j] = fold_item(
                        fold,
                        lists[j]
                            .iter()
                            .filter_map(|(id, w)| Some((user_vec(users.get(id)?), *w))),
                    );
                }
            }
        }
    }
    let placed = [
        0,
        with_content,
        folded.iter().filter(|v| v.is_some()).count(),
        folded
            .iter()
            .zip(&content_vec)
            .filter(|(f, c)| f.is_some() || c.is_some())
            .count(),
    ];
    Ok(NewItemReport {
        k: cfg.k,
        train_events: train.len(),
        test_events: test.len(),
        new_items: n_new,
        new_items_with_content: with_content,
        train_seconds: model.train_seconds,
        arms: ARMS
            .iter()
            .enumerate()
            .map(|(a, arm)| {
                (
                    arm.to_string(),
                    ArmReport {
                        new_items: acc_new[a].score(),
                        trained_items: acc_old[a].score(),
                        placed: placed[a],
                    },
                )
            })
            .collect(),
    })
}

/// The report as a text table.
pub fn table(r: &NewItemReport) -> String {
    let mut out = format!(
        "new items: {} first seen in the test period ({} with content the map knows); \
         {} train / {} test events; ALS {:.2} s\n",
        r.new_items, r.new_items_with_content, r.train_events, r.test_events, r.train_seconds
    );
    out.push_str(&format!(
        "{:<10} {:>12} {:>12} {:>8} {:>14} {:>14} {:>8}\n",
        "arm",
        format!("new HR@{}", r.k),
        format!("new NDCG@{}", r.k),
        "events",
        format!("trained HR@{}", r.k),
        format!("trained NDCG"),
        "placed"
    ));
    for (arm, a) in &r.arms {
        out.push_str(&format!(
            "{:<10} {:>12.4} {:>12.4} {:>8} {:>14.4} {:>14.4} {:>8}\n",
            arm,
            a.new_items.hit_rate,
            a.new_items.ndcg,
            a.new_items.events,
            a.trained_items.hit_rate,
            a.trained_items.ndcg,
            a.placed
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use recd_core::EventType;

    /// Two communities; in the test period a new item is bought by one community only:
    /// once folded in, it ranks for that community's later users, and never without.
    #[test]
    fn a_folded_in_item_is_found_and_none_never_finds_it() {
        let mut raw = Vec::new();
        let mut t = 0i64;
        let ev = |u: String, i: String, t: &mut i64| {
            *t += 1000;
            Interaction {
                user: u,
                item: i,
                kind: EventType::Purchase,
                value: None,
                timestamp_ms: *t,
            }
        };
        for u in 0..60 {
            let side = u % 2;
            for i in 0..10 {
                raw.push(ev(format!("u{u}"), format!("i{}", side * 10 + i), &mut t));
            }
        }
        for u in 0..60 {
            if u % 2 == 0 {
                raw.push(ev(format!("u{u}"), "new".into(), &mut t));
            }
        }
        let cfg = NewItemEvalConfig {
            k: 5,
            test_fraction: 30.0 / raw.len() as f64,
            als: AlsParams {
                factors: 4,
                iterations: 10,
                regularization: 0.1,
                ..AlsParams::default()
            },
            params: NewItemParams::default(),
        };
        let r = evaluate(&raw, &HashMap::new(), &EventWeights::default(), &cfg).unwrap();
        assert_eq!(r.new_items, 1);
        let arm = |name: &str| r.arms.iter().find(|(a, _)| a == name).unwrap().1;
        assert_eq!(arm("none").new_items.hit_rate, 0.0);
        assert_eq!(arm("fold_in").placed, 1);
        // all but the first three touches (before the fold-in) are hits
        assert!(
            arm("fold_in").new_items.hit_rate > 0.8,
            "{:?}",
            arm("fold_in")
        );
    }
}
