//! The online replay: walk the test events in time order; before each event ask the
//! recommender for its top-k for that user, score whether the event's item is in it
//! (hit rate) and where (NDCG with one relevant item: 1/log2(rank + 1)), then let the
//! recommender observe the event.
//!
//! What the walker does for every recommender alike:
//! - the `exclude` list is the user's train items plus the items of test events already
//!   replayed (what a serving system knows the user has);
//! - an event whose item is already in that list (a repeat) is observed but not scored;
//! - users without train history are included: a real-time recommender may serve them.
//!
//! Implementations here: [`RealtimePopularity`] (popularity updated by every event, with an
//! optional half-life), [`BatchAls`] (fixed ALS vectors; cold users get train popularity)
//! and [`RealtimeAls`] (the same item vectors, but each event updates its user's vector
//! exactly: the reference for what real-time updates are worth), and [`FoldInAls`] (the
//! serving rule `update = "fold_in"` on the model alone: recd-core's fold-in over the
//! user's most recent distinct items, blended with the trained vector).
//! The serving pipeline implements [`ReplayRecommender`] itself.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use recd_core::foldin::{FoldInParams, FoldModel, FoldSolver, Gram, session_mix_share};
use recd_core::user::{SessionParams, SessionVector};
use recd_core::vector::normalized;

use crate::als::{AlsModel, UserSolver};
use crate::baselines::Popularity;
use crate::dataset::{Csr, Interactions};
use crate::rank::top_k;
use crate::split::Split;

/// One replayed event (dense indices, as in [`Interactions`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReplayEvent {
    /// User index.
    pub user: u32,
    /// Item index.
    pub item: u32,
    /// Confidence input `w` of the event.
    pub weight: f32,
    /// Milliseconds since the epoch.
    pub timestamp_ms: i64,
}

/// A recommender that learns while it serves.
pub trait ReplayRecommender {
    /// Up to `k` items for `user` at time `now_ms`, best first, none in the sorted `exclude`.
    fn recommend(&mut self, user: u32, k: usize, exclude: &[u32], now_ms: i64) -> Vec<u32>;
    /// Learn from an event (called after `recommend` for it).
    fn observe(&mut self, event: &ReplayEvent);
}

/// API.md's `R`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ReplayMetrics {
    /// Share of scored events whose item was in the top-k.
    pub hit_rate: f64,
    /// Mean of 1/log2(rank + 1) over scored events (0 for a miss).
    pub ndcg: f64,
    /// Events scored.
    pub events: usize,
}

/// The test events of `split` in replay order: by timestamp, then by position.
pub fn replay_events(test: &Interactions) -> Vec<ReplayEvent> {
    let mut order: Vec<usize> = (0..test.len()).collect();
    order.sort_by_key(|&e| (test.timestamps[e], e));
    order
        .into_iter()
        .map(|e| ReplayEvent {
            user: test.users[e],
            item: test.items[e],
            weight: test.weights[e],
            timestamp_ms: test.timestamps[e],
        })
        .collect()
}

/// Replay `split.test` through `rec`.
pub fn replay(split: &Split, rec: &mut dyn ReplayRecommender, k: usize) -> ReplayMetrics {
    let mut seen = split.train.items_by_user();
    let mut hits = 0usize;
    let mut ndcg = 0.0;
    let mut events = 0usize;
    for ev in replay_events(&split.test) {
        let known = &mut seen[ev.user as usize];
        if let Err(pos) = known.binary_search(&ev.item) {
            let recs = rec.recommend(ev.user, k, known, ev.timestamp_ms);
            if let Some(rank) = recs.iter().take(k).position(|&i| i == ev.item) {
                hits += 1;
                ndcg += 1.0 / ((rank + 2) as f64).log2();
            }
            events += 1;
            known.insert(pos, ev.item);
        }
        rec.observe(&ev);
    }
    let mean = |s: f64| if events == 0 { 0.0 } else { s / events as f64 };
    ReplayMetrics {
        hit_rate: mean(hits as f64),
        ndcg: mean(ndcg),
        events,
    }
}

/// Popularity that every event updates: each event adds `2^((t − t0) / half_life)` to its
/// item (plain counts without a half-life), so recent events weigh more.
#[derive(Debug, Clone)]
pub struct RealtimePopularity {
    scores: Vec<f64>,
    half_life_ms: Option<f64>,
    /// Reference time of the exponent; moved forward when scores grow large.
    t0: i64,
}

impl RealtimePopularity {
    /// Start from the train events.
    pub fn new(train: &Interactions, half_life_ms: Option<f64>) -> Self {
        let t0 = train.timestamps.iter().copied().max().unwrap_or(0);
        let mut me = Self {
            scores: vec![0.0; train.n_items()],
            half_life_ms: half_life_ms.filter(|h| h.is_finite() && *h > 0.0),
            t0,
        };
        for (&i, &t) in train.items.iter().zip(&train.timestamps) {
            me.add(i, t);
        }
        me
    }

    fn add(&mut self, item: u32, t: i64) {
        let w = match self.half_life_ms {
            None => 1.0,
            Some(h) => {
                let mut e = (t - self.t0) as f64 / h;
                if e > 500.0 {
                    // rescale everything to a later reference time to stay finite
                    let shift = e.floor();
                    let f = (-shift).exp2();
                    self.scores.iter_mut().for_each(|s| *s *= f);
                    self.t0 += (shift * h) as i64;
                    e = (t - self.t0) as f64 / h;
                }
                e.exp2()
            }
        };
        if let Some(s) = self.scores.get_mut(item as usize) {
            *s += w;
        }
    }
}

impl ReplayRecommender for RealtimePopularity {
    fn recommend(&mut self, _user: u32, k: usize, exclude: &[u32], _now_ms: i64) -> Vec<u32> {
        let scores: Vec<f32> = self.scores.iter().map(|&s| s as f32).collect();
        top_k(&scores, k, exclude)
            .into_iter()
            .map(|(i, _)| i)
            .collect()
    }

    fn observe(&mut self, event: &ReplayEvent) {
        self.add(event.item, event.timestamp_ms);
    }
}

/// ALS vectors fixed at training time; no updates. Users without train items (zero
/// vectors) get the train popularity list. Each user's ranking is computed once and
/// cached (the vectors never change), then filtered by the growing `exclude`.
#[derive(Debug)]
pub struct BatchAls<'a> {
    model: &'a AlsModel,
    popularity: Popularity,
    cache: HashMap<u32, Vec<u32>>,
}

impl<'a> BatchAls<'a> {
    /// Serve `model`, falling back to `popularity` for cold users.
    pub fn new(model: &'a AlsModel, popularity: Popularity) -> Self {
        Self {
            model,
            popularity,
            cache: HashMap::new(),
        }
    }
}

impl ReplayRecommender for BatchAls<'_> {
    fn recommend(&mut self, user: u32, k: usize, exclude: &[u32], _now_ms: i64) -> Vec<u32> {
        let cold = self
            .model
            .user_vector(user)
            .is_none_or(|v| v.iter().all(|&x| x == 0.0));
        if cold {
            return self.popularity.top(k, exclude);
        }
        let want = k + exclude.len();
        let model = self.model;
        let ranked = self.cache.entry(user).or_default();
        if ranked.len() < want.min(model.n_items()) {
            // long enough to survive the exclusions of the rest of the replay
            *ranked = model
                .recommend_excluding(user, (want * 2).max(100), &[])
                .into_iter()
                .map(|(i, _)| i)
                .collect();
        }
        ranked
            .iter()
            .copied()
            .filter(|i| exclude.binary_search(i).is_err())
            .take(k)
            .collect()
    }

    fn observe(&mut self, _event: &ReplayEvent) {}
}

/// ALS item vectors fixed, user vectors updated exactly by every event: each user who
/// appears in the replay gets a [`UserSolver`] (built from their train history on their
/// first event), and every event is a rank-one update, O(k²) however long the history.
/// Users with no history get the train popularity list.
#[derive(Debug)]
pub struct RealtimeAls<'a> {
    model: &'a AlsModel,
    popularity: Popularity,
    train: Csr,
    solvers: HashMap<u32, (UserSolver, Vec<f32>)>,
}

impl<'a> RealtimeAls<'a> {
    /// Start from `model` (trained on `train`) and the train histories.
    pub fn new(model: &'a AlsModel, train: &Interactions, popularity: Popularity) -> Self {
        Self {
            model,
            popularity,
            train: train.user_item_matrix(),
            solvers: HashMap::new(),
        }
    }

    fn vector(&self, user: u32) -> Option<&[f32]> {
        let v = match self.solvers.get(&user) {
            Some((_, v)) => v.as_slice(),
            None => self.model.user_vector(user)?,
        };
        v.iter().any(|&x| x != 0.0).then_some(v)
    }
}

impl ReplayRecommender for RealtimeAls<'_> {
    fn recommend(&mut self, user: u32, k: usize, exclude: &[u32], _now_ms: i64) -> Vec<u32> {
        match self.vector(user) {
            Some(v) => top_k(&self.model.scores(v), k, exclude)
                .into_iter()
                .map(|(i, _)| i)
                .collect(),
            None => self.popularity.top(k, exclude),
        }
    }

    fn observe(&mut self, event: &ReplayEvent) {
        let (model, train) = (self.model, &self.train);
        let (solver, v) = self.solvers.entry(event.user).or_insert_with(|| {
            let history: Vec<(u32, f32)> = if (event.user as usize) < train.rows {
                let (cols, w) = train.row(event.user as usize);
                cols.iter().copied().zip(w.iter().copied()).collect()
            } else {
                Vec::new()
            };
            (model.user_solver(&history), Vec::new())
        });
        solver.add(model, event.item, event.weight);
        *v = solver.vector();
    }
}

/// A kept item of [`FoldInAls`]: `(item, summed weight, fresh weight)`.
type Kept = (u32, f32, f32);

/// The serving fold-in on the model alone: each user keeps their `capacity` most recent
/// distinct items with summed weights (train events in time order, then the replayed
/// ones, which are the fresh part), as `UserState` does, and every event re-solves their
/// vector with recd-core's [`FoldModel::solve_from`] starting from the trained vector;
/// the query is the trained vector's direction and the fold-in's blended at `share`, as
/// `pipeline::query_vector` blends them. With [`FoldInAls::with_session_mix`] each user
/// also keeps recd-core's decayed-average [`SessionVector`] of the replayed events, mixed
/// into the query at `fold_in.session_mix` as the pipeline mixes it. Users with neither
/// get the train popularity list.
#[derive(Debug)]
pub struct FoldInAls<'a> {
    model: &'a AlsModel,
    fold: Option<FoldModel>,
    popularity: Popularity,
    capacity: usize,
    share: f32,
    /// Each user's train events (indices into `train`), in time order.
    history: Vec<Vec<usize>>,
    train: &'a Interactions,
    /// Per user met in the replay: recent `(item, summed weight, fresh weight)`, most
    /// recent first, and the folded-in vector (not normalized: under the CG solver it is
    /// the next solve's start, as `UserState::refold` keeps it).
    users: HashMap<u32, (Vec<Kept>, Option<Vec<f32>>)>,
    /// `(session_mix, session params, [ranking] session_saturation)`; `None`: no mix.
    mix: Option<(f64, SessionParams, f64)>,
    /// Per user met in the replay: the session vector of their replayed events (as the
    /// pipeline's, which starts empty in `recd eval`: the train events are applied
    /// before the item vectors exist).
    sessions: HashMap<u32, SessionVector>,
}

impl<'a> FoldInAls<'a> {
    /// Serve `model` (trained on `train`) with recd-core's fold-in of λ and alpha of the
    /// model, `capacity` recent items and the fold-in's `share` of the query.
    pub fn new(
        model: &'a AlsModel,
        train: &'a Interactions,
        popularity: Popularity,
        capacity: usize,
        share: f64,
    ) -> Self {
        let mut gram = Gram::new(model.factors);
        model
            .item_factors
            .chunks_exact(model.factors)
            .for_each(|y| gram.add(y));
        let params = FoldInParams {
            regularization: f64::from(model.regularization()),
            alpha: f64::from(model.alpha()),
            share,
            session_mix: 0.0,
            ..FoldInParams::default()
        };
        let mut history = vec![Vec::new(); train.n_users()];
        let mut order: Vec<usize> = (0..train.len()).collect();
        order.sort_by_key(|&e| (train.timestamps[e], e));
        for e in order {
            history[train.users[e] as usize].push(e);
        }
        Self {
            model,
            fold: FoldModel::new(&gram, &params),
            popularity,
            capacity: capacity.max(1),
            share: share.clamp(0.0, 1.0) as f32,
            history,
            train,
            users: HashMap::new(),
            mix: None,
            sessions: HashMap::new(),
        }
    }

    /// Solves each event's fold-in with `solver` (`cg_steps` steps under CG, started from
    /// the user's previous folded vector), as the stores do under `[model.session.fold_in]`.
    pub fn with_solver(mut self, solver: FoldSolver, cg_steps: usize) -> Self {
        self.fold = self.fold.map(|m| m.with_solver(solver, cg_steps));
        self
    }

    /// [`FoldInAls::with_solver`] with the solver `fold_in` names (`[model.session.fold_in]`).
    pub fn with_solver_of(self, fold_in: &FoldInParams) -> Self {
        self.with_solver(fold_in.solver, fold_in.cg_steps)
    }

    /// Mixes each user's session vector (`session`'s half-life) into the query at up to
    /// `mix`, its share growing with the session's weight against `saturation`
    /// (`[ranking] session_saturation`), as `pipeline::query_vector` does under
    /// `fold_in.session_mix`; a mix of 0 changes nothing.
    pub fn with_session_mix(mut self, mix: f64, session: SessionParams, saturation: f64) -> Self {
        self.mix = (mix > 0.0).then_some((mix, session, saturation));
        self
    }

    fn touch(recent: &mut Vec<Kept>, item: u32, w: f32, fresh: bool, capacity: usize) {
        let (total, new) = match recent.iter().position(|(i, _, _)| *i == item) {
            Some(at) => {
                let (_, t, f) = recent.remove(at);
                (t, f)
            }
            None => (0.0, 0.0),
        };
        let w = w.max(0.0);
        recent.insert(0, (item, total + w, if fresh { new + w } else { new }));
        recent.truncate(capacity);
    }

    fn long_term(&self, user: u32) -> Option<Vec<f32>> {
        self.model.user_vector(user).and_then(normalized)
    }
}

impl ReplayRecommender for FoldInAls<'_> {
    fn recommend(&mut self, user: u32, k: usize, exclude: &[u32], now_ms: i64) -> Vec<u32> {
        let folded = self
            .users
            .get(&user)
            .and_then(|(_, f)| f.as_deref().and_then(normalized));
        let query = match (self.long_term(user), folded) {
            (Some(lt), Some(f)) => {
                let s = self.share;
                let mixed: Vec<f32> = lt
                    .iter()
                    .zip(&f)
                    .map(|(a, b)| (1.0 - s) * a + s * b)
                    .collect();
                normalized(&mixed)
            }
            (lt, f) => f.or(lt),
        };
        let query = match (query, &self.mix, self.sessions.get(&user)) {
            (Some(q), Some((mix, params, saturation)), Some(s)) => {
                let share =
                    session_mix_share(*mix, s.weight_at(now_ms, params), *saturation) as f32;
                match s.direction().filter(|d| d.len() == q.len() && share > 0.0) {
                    Some(d) => {
                        let mixed: Vec<f32> = q
                            .iter()
                            .zip(&d)
                            .map(|(a, b)| (1.0 - share) * a + share * b)
                            .collect();
                        normalized(&mixed).or(Some(q))
                    }
                    None => Some(q),
                }
            }
            (q, _, _) => q,
        };
        match query {
            Some(q) => top_k(&self.model.scores(&q), k, exclude)
                .into_iter()
                .map(|(i, _)| i)
                .collect(),
            None => self.popularity.top(k, exclude),
        }
    }

    fn observe(&mut self, event: &ReplayEvent) {
        let (train, capacity) = (self.train, self.capacity);
        let history = self.history.get(event.user as usize);
        let (recent, folded) = self.users.entry(event.user).or_insert_with(|| {
            let mut recent = Vec::new();
            for &e in history.into_iter().flatten() {
                Self::touch(
                    &mut recent,
                    train.items[e],
                    train.weights[e],
                    false,
                    capacity,
                );
            }
            (recent, None)
        });
        Self::touch(recent, event.item, event.weight, true, capacity);
        let model = self.model;
        if let Some((_, params, _)) = &self.mix
            && event.weight > 0.0
            && let Some(v) = model.item_vector(event.item).and_then(normalized)
        {
            let session = self
                .sessions
                .entry(event.user)
                .or_insert_with(|| SessionVector {
                    sum: vec![0.0; v.len()],
                    weight: 0.0,
                    updated_ms: event.timestamp_ms,
                });
            session.add(&v, f64::from(event.weight), event.timestamp_ms, params);
        }
        let prior = model
            .user_vector(event.user)
            .filter(|v| v.iter().any(|x| *x != 0.0));
        let start = folded.take();
        *folded = self.fold.as_ref().and_then(|m| {
            m.fold(
                prior,
                start.as_deref(),
                recent
                    .iter()
                    .filter_map(|(i, w, f)| Some((model.item_vector(*i)?, *w, *f))),
            )
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::split::SplitMethod;

    /// Always recommends the fixed list.
    struct Fixed(Vec<u32>, usize);

    impl ReplayRecommender for Fixed {
        fn recommend(&mut self, _u: u32, k: usize, exclude: &[u32], _now: i64) -> Vec<u32> {
            self.0
                .iter()
                .copied()
                .filter(|i| exclude.binary_search(i).is_err())
                .take(k)
                .collect()
        }
        fn observe(&mut self, _e: &ReplayEvent) {
            self.1 += 1;
        }
    }

    fn split_of(train: &[(u32, u32, f32, i64)], test: &[(u32, u32, f32, i64)]) -> Split {
        let all: Vec<_> = train.iter().chain(test).copied().collect();
        let d = Interactions::from_indices(3, 6, &all);
        let n = train.len();
        Split {
            train: d.subset(&(0..n).collect::<Vec<_>>()),
            test: d.subset(&(n..all.len()).collect::<Vec<_>>()),
            method: SplitMethod::LeaveLastOut,
        }
    }

    #[test]
    fn walker_scores_in_time_order_and_skips_repeats() {
        // test events (out of order in the file): u0 item 2 @20, u0 item 1 @10, u1 item 0 @30 (repeat of train)
        let s = split_of(
            &[(0, 0, 1.0, 0), (1, 0, 1.0, 0)],
            &[(0, 2, 1.0, 20), (0, 1, 1.0, 10), (1, 0, 1.0, 30)],
        );
        let mut rec = Fixed(vec![0, 1, 3, 2], 0);
        let m = replay(&s, &mut rec, 2);
        // @10 u0 excl {0}: [1, 3] → hit at rank 1 (ndcg 1)
        // @20 u0 excl {0, 1}: [3, 2] → hit at rank 2 (ndcg 1/log2(3))
        // @30 u1 item 0 is a repeat: not scored, but observed
        assert_eq!(m.events, 2);
        assert_eq!(rec.1, 3);
        assert!((m.hit_rate - 1.0).abs() < 1e-12);
        assert!((m.ndcg - (1.0 + 1.0 / 3f64.log2()) / 2.0).abs() < 1e-12);
    }

    #[test]
    fn realtime_popularity_follows_the_events() {
        // train: item 0 popular; then three events on item 5 make it the top
        let s = split_of(
            &[(0, 0, 1.0, 0), (1, 0, 1.0, 0), (2, 1, 1.0, 0)],
            &[
                (0, 5, 1.0, 1),
                (1, 5, 1.0, 2),
                (2, 5, 1.0, 3),
                (2, 4, 1.0, 4),
            ],
        );
        let mut rt = RealtimePopularity::new(&s.train, None);
        assert_eq!(rt.recommend(0, 2, &[], 0), vec![0, 1]);
        for ev in replay_events(&s.test) {
            rt.observe(&ev);
        }
        assert_eq!(rt.recommend(0, 1, &[], 5), vec![5]);
    }

    #[test]
    fn realtime_als_learns_a_cold_user_from_events() {
        // two groups: users 0..10 like items 0..5, users 10..20 like items 5..10; user 20
        // appears only in test, with two events in the second group
        let mut ev = Vec::new();
        for u in 0..20u32 {
            let base = if u < 10 { 0 } else { 5 };
            for j in 0..5 {
                if (u + j) % 5 != 0 {
                    ev.push((u, base + j, 1.0, 0));
                }
            }
        }
        let n_train = ev.len();
        ev.extend([(20, 5, 1.0, 10), (20, 6, 1.0, 11), (20, 7, 1.0, 12)]);
        let d = Interactions::from_indices(21, 10, &ev);
        let s = Split {
            train: d.subset(&(0..n_train).collect::<Vec<_>>()),
            test: d.subset(&(n_train..ev.len()).collect::<Vec<_>>()),
            method: SplitMethod::Time { test_fraction: 0.1 },
        };
        let params = crate::als::AlsParams {
            factors: 4,
            regularization: 0.5,
            alpha: 2.0,
            iterations: 10,
            threads: 1,
            ..Default::default()
        };
        let model = crate::als::train(&s.train, &params).unwrap();
        let mut live = RealtimeAls::new(&model, &s.train, Popularity::fit(&s.train));
        let mut batch = BatchAls::new(&model, Popularity::fit(&s.train));
        let events = replay_events(&s.test);
        live.observe(&events[0]);
        live.observe(&events[1]);
        let recs = live.recommend(20, 3, &[5, 6], 12);
        assert!(recs.iter().all(|&i| i >= 5), "{recs:?}");
        assert!(recs.contains(&7));
        // the batch model still treats user 20 as cold (popularity)
        assert_eq!(
            batch.recommend(20, 3, &[5, 6], 12),
            Popularity::fit(&s.train).top(3, &[5, 6])
        );
    }

    #[test]
    fn decay_prefers_recent_items_and_stays_finite() {
        let day = 86_400_000i64;
        let s = split_of(&[(0, 0, 1.0, 0), (1, 0, 1.0, 0), (2, 0, 1.0, 0)], &[]);
        let mut rt = RealtimePopularity::new(&s.train, Some(day as f64));
        // one event 10 half-lives later outweighs three old ones
        rt.observe(&ReplayEvent {
            user: 0,
            item: 3,
            weight: 1.0,
            timestamp_ms: 10 * day,
        });
        assert_eq!(rt.recommend(0, 1, &[], 10 * day), vec![3]);
        // 2000 half-lives later: rescaled, still finite and ordered
        rt.observe(&ReplayEvent {
            user: 0,
            item: 4,
            weight: 1.0,
            timestamp_ms: 2000 * day,
        });
        assert!(rt.scores.iter().all(|s| s.is_finite()));
        assert_eq!(rt.recommend(0, 1, &[], 2000 * day), vec![4]);
    }

    /// Three taste clusters of 10 items; each user has 6 train items of their cluster and,
    /// later, 6 test events in the next cluster (the taste moved).
    fn drifting() -> Split {
        let mut ev = Vec::new();
        for u in 0..30u32 {
            let home = u % 3;
            for j in 0..6u32 {
                ev.push((u, home * 10 + (u + j) % 10, 1.0, i64::from(j)));
            }
        }
        let n_train = ev.len();
        for u in 0..30u32 {
            let next = (u % 3 + 1) % 3;
            for j in 0..6u32 {
                ev.push((
                    u,
                    next * 10 + (u + 3 * j) % 10,
                    1.0,
                    100 + i64::from(u * 10 + j),
                ));
            }
        }
        let d = Interactions::from_indices(30, 30, &ev);
        Split {
            train: d.subset(&(0..n_train).collect::<Vec<_>>()),
            test: d.subset(&(n_train..ev.len()).collect::<Vec<_>>()),
            method: SplitMethod::Time { test_fraction: 0.5 },
        }
    }

    #[test]
    fn the_fold_in_follows_a_moving_taste_where_batch_als_cannot() {
        let s = drifting();
        let params = crate::als::AlsParams {
            factors: 6,
            regularization: 0.5,
            alpha: 4.0,
            iterations: 15,
            threads: 1,
            ..Default::default()
        };
        let model = crate::als::train(&s.train, &params).unwrap();
        let pop = Popularity::fit(&s.train);
        let batch = replay(&s, &mut BatchAls::new(&model, pop.clone()), 5);
        let mut fold = FoldInAls::new(&model, &s.train, pop.clone(), 200, 1.0);
        let folded = replay(&s, &mut fold, 5);
        assert!(
            folded.hit_rate > batch.hit_rate,
            "fold-in {folded:?} vs batch {batch:?}"
        );
        // a capacity below the history: the prior keeps the dropped items' pull, and the
        // fresh events still move the vector
        let mut short = FoldInAls::new(&model, &s.train, pop, 3, 1.0);
        let short = replay(&s, &mut short, 5);
        assert!(short.hit_rate > batch.hit_rate, "{short:?} vs {batch:?}");
    }

    #[test]
    fn the_fold_in_of_a_full_history_is_the_exact_user_solve() {
        let s = drifting();
        let params = crate::als::AlsParams {
            factors: 4,
            regularization: 1.0,
            alpha: 2.0,
            iterations: 10,
            threads: 1,
            ..Default::default()
        };
        let model = crate::als::train(&s.train, &params).unwrap();
        let pop = Popularity::fit(&s.train);
        // the exact solver: this is about the system solved, not the CG steps' accuracy
        let mut fold = FoldInAls::new(&model, &s.train, pop.clone(), 200, 1.0)
            .with_solver(FoldSolver::Cholesky, 3);
        let mut exact = RealtimeAls::new(&model, &s.train, pop);
        for ev in replay_events(&s.test).iter().take(20) {
            fold.observe(ev);
            exact.observe(ev);
            // kept as solved (the next CG start), so normalized here
            let f = normalized(fold.users[&ev.user].1.as_deref().unwrap()).unwrap();
            let x = normalized(exact.vector(ev.user).unwrap()).unwrap();
            let cos: f32 = f.iter().zip(&x).map(|(a, b)| a * b).sum();
            // the prior is training's vector (3 CG steps per sweep), not the exact solve
            assert!(cos > 0.999, "user {}: cos {cos}", ev.user);
        }
    }
}
