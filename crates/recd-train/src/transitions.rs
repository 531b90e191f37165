//! Item-to-item transitions: a first-order Markov model of "what comes next".
//!
//! Fitting: each user's events in time order (ties by position); every consecutive pair of
//! *different* items `a → b` counts with the weight of the event on `b` (the event weights
//! of `[model.session.weights]`, as ALS and serving use them; a repeat of the same item is
//! no transition). `P(b | a) = count(a → b) / count(a → ·)`; each item keeps its
//! [`Transitions::top`] most likely successors.
//!
//! `recd train` stores the table ([`Transitions::lists`]) with each model version, and the
//! serving pipeline's transitions source (`recd_core::pipeline::transitions`) scores the
//! user's recent items with the same formula as [`Transitions::next_items`].
//!
//! Recommending for a user whose most recent distinct items are `r0` (latest), `r1`, …:
//! `score(b) = Σ_j DECAY^j · P(b | r_j)` over the last [`RECENT`] of them, best first; when
//! the successors of those items give fewer than `k` unexcluded items the list is filled
//! with the most popular ones (so its length is every other model's, and a user without
//! history gets popularity).
//!
//! Offline ([`crate::recommender::Recommender`]) the recent items are the user's last train
//! items; in the replay ([`TransitionsReplay`]) every event moves them, so the model follows
//! the session while the table stays the one trained offline.

use std::collections::HashMap;

use crate::baselines::Popularity;
use crate::dataset::Interactions;
use crate::rank::top_k_iter;
use crate::recommender::Recommender;
use crate::replay::{ReplayEvent, ReplayRecommender};

/// Recent distinct items of a user that propose successors.
pub const RECENT: usize = 3;
/// Weight of each step further back.
pub const DECAY: f32 = 0.5;
/// Successors kept per item by default.
pub const DEFAULT_TOP: usize = 50;

/// The transition table and what a recommendation needs besides it.
#[derive(Debug, Clone)]
pub struct Transitions {
    /// `successors[a]`: `(b, P(b | a))`, most likely first.
    successors: Vec<Vec<(u32, f32)>>,
    /// Each user's last [`RECENT`] distinct train items, latest first.
    recent: Vec<Vec<u32>>,
    /// The fill.
    popularity: Popularity,
    /// Successors kept per item.
    pub top: usize,
    /// Distinct `a → b` pairs counted before the cut to `top`.
    pub pairs: usize,
}

/// Each user's event positions in time order (ties by position).
fn by_user_in_time(data: &Interactions) -> Vec<Vec<usize>> {
    let mut by_user: Vec<Vec<usize>> = vec![Vec::new(); data.n_users()];
    for (e, &u) in data.users.iter().enumerate() {
        by_user[u as usize].push(e);
    }
    for events in &mut by_user {
        events.sort_by_key(|&e| (data.timestamps[e], e));
    }
    by_user
}

/// Moves `item` to the front of `recent` (distinct, at most [`RECENT`]).
fn push_recent(recent: &mut Vec<u32>, item: u32) {
    recent.retain(|&i| i != item);
    recent.insert(0, item);
    recent.truncate(RECENT);
}

impl Transitions {
    /// Count the transitions of `train`, keeping `top` successors per item.
    pub fn fit(train: &Interactions, top: usize) -> Self {
        let mut counts: HashMap<(u32, u32), f32> = HashMap::new();
        let mut recent = vec![Vec::new(); train.n_users()];
        for (u, events) in by_user_in_time(train).into_iter().enumerate() {
            let mut prev: Option<u32> = None;
            for e in events {
                let item = train.items[e];
                if let Some(a) = prev
                    && a != item
                {
                    *counts.entry((a, item)).or_default() += train.weights[e];
                }
                prev = Some(item);
                push_recent(&mut recent[u], item);
            }
        }
        let pairs = counts.len();
        let mut out_total = vec![0f32; train.n_items()];
        let mut lists: Vec<Vec<(u32, f32)>> = vec![Vec::new(); train.n_items()];
        for (&(a, _), &n) in &counts {
            out_total[a as usize] += n;
        }
        for ((a, b), n) in counts {
            lists[a as usize].push((b, n / out_total[a as usize]));
        }
        let successors = lists.into_iter().map(|l| top_k_iter(l, top, &[])).collect();
        Self {
            successors,
            recent,
            popularity: Popularity::fit(train),
            top,
            pairs,
        }
    }

    /// `(b, P(b | a))` for item `a`, most likely first.
    pub fn successors(&self, a: u32) -> &[(u32, f32)] {
        self.successors.get(a as usize).map_or(&[], Vec::as_slice)
    }

    /// The table by id: each item with successors and its list `(id, P)`, most likely
    /// first (what `recd train` stores with a model version).
    pub fn lists(&self, items: &crate::IdMap) -> Vec<(String, Vec<(String, f32)>)> {
        self.successors
            .iter()
            .enumerate()
            .filter(|(_, l)| !l.is_empty())
            .filter_map(|(a, l)| {
                let list = l
                    .iter()
                    .filter_map(|&(b, p)| Some((items.id(b)?.to_owned(), p)))
                    .collect();
                Some((items.id(a as u32)?.to_owned(), list))
            })
            .collect()
    }

    /// The user's last distinct train items, latest first.
    pub fn recent(&self, user: u32) -> &[u32] {
        self.recent.get(user as usize).map_or(&[], Vec::as_slice)
    }

    /// Up to `k` items after `recent` (latest first), none in the sorted `exclude`, filled
    /// with popular items.
    pub fn next_items(&self, recent: &[u32], k: usize, exclude: &[u32]) -> Vec<u32> {
        let mut scores: HashMap<u32, f32> = HashMap::new();
        let mut weight = 1.0;
        for &a in recent.iter().take(RECENT) {
            for &(b, p) in self.successors(a) {
                *scores.entry(b).or_default() += weight * p;
            }
            weight *= DECAY;
        }
        let mut list: Vec<u32> = top_k_iter(scores, k, exclude)
            .into_iter()
            .map(|(i, _)| i)
            .collect();
        if list.len() < k {
            let mut taken = list.clone();
            taken.extend_from_slice(exclude);
            taken.sort_unstable();
            let fill = self.popularity.top(k - list.len(), &taken);
            list.extend(fill);
        }
        list
    }
}

impl Recommender for Transitions {
    fn recommend(&self, user: u32, k: usize, exclude: &[u32]) -> Vec<u32> {
        self.next_items(self.recent(user), k, exclude)
    }
}

/// The replay arm: the offline table, each user's recent items moved by every event.
#[derive(Debug)]
pub struct TransitionsReplay<'a> {
    model: &'a Transitions,
    recent: HashMap<u32, Vec<u32>>,
}

impl<'a> TransitionsReplay<'a> {
    /// Starts from each user's train items.
    pub fn new(model: &'a Transitions) -> Self {
        Self {
            model,
            recent: HashMap::new(),
        }
    }
}

impl ReplayRecommender for TransitionsReplay<'_> {
    fn recommend(&mut self, user: u32, k: usize, exclude: &[u32], _now_ms: i64) -> Vec<u32> {
        let recent = self
            .recent
            .get(&user)
            .map_or_else(|| self.model.recent(user), Vec::as_slice);
        self.model.next_items(recent, k, exclude)
    }

    fn observe(&mut self, event: &ReplayEvent) {
        let model = self.model;
        let recent = self
            .recent
            .entry(event.user)
            .or_insert_with(|| model.recent(event.user).to_vec());
        push_recent(recent, event.item);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::replay;
    use crate::split::{SplitMethod, split};

    #[test]
    fn counts_consecutive_distinct_items_in_time_order() {
        // user 0: 0 → 1 → 1 → 2 (file order scrambled); user 1: 0 → 2
        let d = Interactions::from_indices(
            2,
            4,
            &[
                (0, 2, 1.0, 30),
                (0, 0, 1.0, 10),
                (0, 1, 1.0, 20),
                (0, 1, 1.0, 25),
                (1, 0, 1.0, 5),
                (1, 2, 1.0, 6),
            ],
        );
        let t = Transitions::fit(&d, 10);
        assert_eq!(t.pairs, 3, "0→1, 1→2, 0→2 (1→1 is no transition)");
        assert_eq!(t.successors(0), &[(1, 0.5), (2, 0.5)]);
        assert_eq!(t.successors(1), &[(2, 1.0)]);
        assert!(t.successors(2).is_empty());
        assert_eq!(t.recent(0), &[2, 1, 0]);
        // the next item after user 1's last (2) has no successor: popularity fills
        assert_eq!(t.recommend(1, 2, &[0, 2]), vec![1, 3]);
        // recent 1 (weight 1) and 0 (weight 0.5): 2 scores 1.25, 1 scores 0.25
        assert_eq!(t.next_items(&[1, 0], 2, &[]), vec![2, 1]);
    }

    #[test]
    fn event_weights_weigh_the_transitions() {
        // user 0: 0 → 1 (weight 3); user 1: 0 → 2 (weight 1)
        let d = Interactions::from_indices(
            2,
            3,
            &[
                (0, 0, 1.0, 1),
                (0, 1, 3.0, 2),
                (1, 0, 1.0, 1),
                (1, 2, 1.0, 2),
            ],
        );
        let t = Transitions::fit(&d, 10);
        assert_eq!(t.successors(0), &[(1, 0.75), (2, 0.25)]);
        let lists = t.lists(d.item_ids());
        assert_eq!(lists.len(), 1);
        assert_eq!(lists[0].1.len(), 2);
        assert_eq!(lists[0].1[0].1, 0.75);
    }

    #[test]
    fn follows_sequences_where_order_matters() {
        // Every user walks a chain i → i+1 → i+2 … from a random start; the next item is
        // always the successor of the last. A time split asks for exactly that.
        let mut ev = Vec::new();
        for u in 0..60u32 {
            let start = (u * 7) % 30;
            for step in 0..8u32 {
                ev.push((u, (start + step) % 40, 1.0, i64::from(step * 1000 + u)));
            }
        }
        let d = Interactions::from_indices(60, 40, &ev);
        let s = split(
            &d,
            SplitMethod::Time {
                test_fraction: 0.25,
            },
            0,
        )
        .unwrap();
        let t = Transitions::fit(&s.train, 10);
        let seq = replay(&s, &mut TransitionsReplay::new(&t), 1);
        let pop = replay(
            &s,
            &mut crate::replay::RealtimePopularity::new(&s.train, None),
            1,
        );
        assert!(seq.hit_rate > 0.9, "{seq:?}");
        assert!(seq.hit_rate > pop.hit_rate + 0.5, "{seq:?} vs {pop:?}");
    }
}
