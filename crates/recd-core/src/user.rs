//! A user's real-time state and how one event changes it.
//!
//! [`UserState::apply`] is the single definition of an event's effect: counters, the
//! recent and purchased items, and the *session vector* — a time-decayed weighted average
//! of the vectors of the items the user touched, where each event weighs by its kind
//! (and dwell seconds), and its weight halves every `half_life_seconds`. Both backends call
//! it (the Redis backend inside an optimistic read-modify-write), so they agree exactly.
//!
//! Exclusions are exact, not windowed: every item the user touched with an event whose
//! type is not `repeatable` (by default add-to-cart, purchase, rating, and always dislike
//! and hide) goes into [`ExcludedItems`], a compact set of 64-bit item keys, and never
//! comes back in their recommendations. The set holds at most `excluded_capacity` keys
//! (oldest dropped first), so one user's state, and the cost of each of their events,
//! stay bounded however many events they send.

use compact_str::CompactString;
use serde::{Deserialize, Serialize};

use crate::event::{Event, EventType, EventWeights};
use crate::experiment::hash::{fnv1a64, mix64};
use crate::foldin::{FoldInParams, FoldModel, UpdateRule};
use crate::vector::normalized;

/// Settings of the real-time user model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionParams {
    /// After this many seconds an event counts half as much in the session vector.
    pub half_life_seconds: f64,
    /// How many distinct recent items are remembered (and excluded as "seen").
    pub recent_capacity: usize,
    /// Event weights.
    pub weights: EventWeights,
    /// Event types after which the item may be recommended to the user again. Any other
    /// type excludes the item for good (up to `excluded_capacity`); `dislike` and `hide`
    /// always exclude. Put `purchase` here for a shop of consumables.
    pub repeatable: Vec<EventType>,
    /// Most items excluded per user; beyond it the oldest exclusion is dropped first.
    pub excluded_capacity: usize,
    /// Most purchased items listed per user (most recent first); their exclusion is kept
    /// by `excluded_capacity`, this only bounds the list `GET /v1/users/{id}` shows.
    pub purchased_capacity: usize,
    /// A user with no write for this many seconds is forgotten (0: never).
    pub ttl_seconds: u64,
    /// What each event does to the real-time vector the query blends with the long-term
    /// one: `fold_in` (the user's ALS vector re-solved over their `recent_capacity` most
    /// recent items, [`crate::foldin`]) or `decayed_average` (the session vector). Until
    /// the catalog has item vectors a fold-in has no model, and the session vector serves.
    pub update: UpdateRule,
    /// The fold-in's λ, alpha and share of the query.
    pub fold_in: FoldInParams,
}

impl Default for SessionParams {
    fn default() -> Self {
        Self {
            half_life_seconds: 1800.0,
            recent_capacity: 200,
            weights: EventWeights::default(),
            repeatable: vec![
                EventType::View,
                EventType::Click,
                EventType::Dwell,
                EventType::Skip,
            ],
            excluded_capacity: 10_000,
            purchased_capacity: 200,
            ttl_seconds: 30 * 24 * 3600,
            update: UpdateRule::default(),
            fold_in: FoldInParams::default(),
        }
    }
}

impl SessionParams {
    /// Whether an event of `kind` excludes its item for the user.
    pub fn excludes(&self, kind: EventType) -> bool {
        kind.is_rejection() || !self.repeatable.contains(&kind)
    }

    /// Checks a configuration; the message names the key.
    pub fn check(&self) -> Result<(), crate::ValidationError> {
        if !(self.half_life_seconds.is_finite() && self.half_life_seconds > 0.0) {
            return crate::invalid!("half_life_seconds must be a positive number");
        }
        if let Some(kind) = self.repeatable.iter().find(|k| k.is_rejection()) {
            return crate::invalid!(
                "repeatable may not hold '{kind}': a {kind} always excludes the item"
            );
        }
        if self.excluded_capacity == 0 {
            return crate::invalid!("excluded_capacity must be at least 1");
        }
        self.fold_in.check()?;
        self.weights.check()
    }

    /// `ttl_seconds` in milliseconds; `None` when users never expire.
    pub fn ttl_ms(&self) -> Option<i64> {
        (self.ttl_seconds > 0)
            .then(|| i64::try_from(self.ttl_seconds.saturating_mul(1000)).unwrap_or(i64::MAX))
    }

    /// The decay factor for an age of `dt_ms` milliseconds.
    pub fn decay(&self, dt_ms: i64) -> f64 {
        let hl_ms = self.half_life_seconds.max(1e-3) * 1000.0;
        (-(dt_ms.max(0) as f64) / hl_ms * std::f64::consts::LN_2).exp()
    }
}

/// The decaying weighted sum behind the session vector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionVector {
    /// Σ wᵢ·decay·vᵢ (unit vᵢ), as of `updated_ms`.
    pub sum: Vec<f32>,
    /// Σ wᵢ·decay, as of `updated_ms`.
    pub weight: f64,
    /// When `sum` and `weight` were last decayed to.
    pub updated_ms: i64,
}

impl SessionVector {
    /// The session's direction (unit length), if it has one.
    pub fn direction(&self) -> Option<Vec<f32>> {
        normalized(&self.sum)
    }

    /// The session's total weight decayed to `now_ms`.
    pub fn weight_at(&self, now_ms: i64, params: &SessionParams) -> f64 {
        self.weight * params.decay(now_ms - self.updated_ms)
    }

    /// Adds the unit vector `v` of an event of weight `w` at `t_ms` (what
    /// [`UserState::apply`] does with a positive event; the offline replay of
    /// `recd-train` calls it too, so that both decay alike).
    pub fn add(&mut self, v: &[f32], w: f64, t_ms: i64, params: &SessionParams) {
        if t_ms >= self.updated_ms {
            // Decay what we had to the new event's time, then add it at full weight.
            let f = params.decay(t_ms - self.updated_ms) as f32;
            self.sum.iter_mut().for_each(|x| *x *= f);
            self.weight *= f as f64;
            self.updated_ms = t_ms;
            self.add_weighted(v, w);
        } else {
            // An event arriving out of order is added at the weight it has by now.
            self.add_weighted(v, w * params.decay(self.updated_ms - t_ms));
        }
    }

    /// Adds `w · v` to the sum and `|w|` to the weight: a negative weight turns the
    /// direction away from `v`, and the weight stays the total evidence (so the sum's
    /// norm never exceeds it).
    fn add_weighted(&mut self, v: &[f32], w: f64) {
        for (s, x) in self.sum.iter_mut().zip(v) {
            *s += (w as f32) * x;
        }
        self.weight += w.abs();
    }
}

/// Per-user event counters (API.md `GET /v1/users/{id}`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counters {
    /// Views.
    pub view: u64,
    /// Clicks.
    pub click: u64,
    /// Dwell events.
    pub dwell: u64,
    /// Add-to-carts.
    pub add_to_cart: u64,
    /// Purchases.
    pub purchase: u64,
    /// Ratings.
    pub rating: u64,
    /// Dislikes.
    pub dislike: u64,
    /// Hides.
    pub hide: u64,
    /// Skips.
    pub skip: u64,
    /// Total dwell seconds.
    pub dwell_seconds: f64,
}

/// The 64-bit key of an item id in [`ExcludedItems`]: FNV-1a 64 finished with SplitMix64
/// (`experiment::hash`), fixed by golden values, so that it never changes between
/// versions, processes or backends. Two ids share a key with probability 2⁻⁶⁴ per pair:
/// with a user's 10,000 exclusions and a million candidate ids, one wrongly excluded item
/// is expected once in about 2·10⁹ such users.
pub fn item_key(id: &str) -> u64 {
    mix64(fnv1a64(id.as_bytes()))
}

/// The items a user must never be shown again, as [`item_key`]s in the order they were
/// excluded (oldest first), at most `excluded_capacity` of them. Eight bytes per item
/// on either backend, whatever the length of the ids.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ExcludedItems(Vec<u64>);

impl ExcludedItems {
    /// From keys, oldest first (as stored).
    pub fn from_keys(keys: Vec<u64>) -> Self {
        Self(keys)
    }

    /// The keys, oldest first.
    pub fn keys(&self) -> &[u64] {
        &self.0
    }

    /// How many items are excluded.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `id` is excluded.
    pub fn contains(&self, id: &str) -> bool {
        self.0.contains(&item_key(id))
    }

    /// Excludes `id` as the newest entry (an item already there moves to the end), then
    /// drops the oldest entries beyond `capacity`. O(len), with len ≤ `capacity`.
    pub fn insert(&mut self, id: &str, capacity: usize) {
        let key = item_key(id);
        if let Some(at) = self.0.iter().position(|k| *k == key) {
            self.0.remove(at);
        }
        self.0.push(key);
        if self.0.len() > capacity {
            let extra = self.0.len() - capacity;
            self.0.drain(..extra);
        }
    }
}

/// What the fold-in rule keeps of a user: the weight of each recent item and the vector
/// solved from them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FoldState {
    /// The summed event weight of each item of [`UserState::recent`], in its order: the
    /// positive weights summed (`p = 1`, confidence `1 + alpha·w`); after a dislike its
    /// (negative) weight alone, after a hide 0 (training drops such pairs); skips of an
    /// item not liked add up below 0 (`p = 0`, confidence `1 + alpha·|w|`).
    pub weights: Vec<f32>,
    /// The part of each weight that came after the long-term vector was written (the rest
    /// the trained model knew), in the same order: the fold-in starts from the long-term
    /// vector and adds only this ([`FoldModel::solve_from`]).
    pub fresh: Vec<f32>,
    /// The user's ALS vector folded in over those items with the current item vectors
    /// ([`UserState::refold`]); `None` without a model or any positive interaction.
    pub vector: Option<Vec<f32>>,
    /// The caller's lookup hints for [`UserState::recent`]'s items ([`LookupHints`]): not
    /// stored, not compared.
    #[serde(skip)]
    pub hints: LookupHints,
    /// How many batches of events changed `weights` since `vector` was solved (0: none):
    /// a refold is due before anything reads the vector ([`UserState::mark_refold_due`]),
    /// and its CG steps are per batch ([`FoldModel::fold_batches`]). Not serialized with
    /// the state (whose layout older versions read): the embedded store's rows carry it
    /// after the state, and a state logged whole is solved first.
    #[serde(skip)]
    pub due: u32,
}

/// One `u32` per item of [`UserState::recent`], in its order, that the caller of
/// [`UserState::refold_hinted`] may use to find the item's vector without looking its id
/// up (the embedded store keeps the item's slot): a refold at `recent_capacity` (200 by
/// default) looked up 200 ids per event, and at steady state those hash probes were as
/// much CPU as the solve. [`UserState::apply`] moves them with the items, so `recent`
/// must change only through it (hints whose count no longer matches are dropped; a
/// reordering of the same length would misname them); a hint is [`LookupHints::NONE`]
/// until the caller sets it. They are a cache: never stored (a decoded state starts
/// without), and two states are equal whatever their hints.
#[derive(Debug, Clone, Default)]
pub struct LookupHints(Vec<u32>);

impl LookupHints {
    /// No hint yet.
    pub const NONE: u32 = u32::MAX;

    /// How many hints are kept (0, or the length of `recent` they were kept for).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether none are kept.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The hints, one per item of `recent` (or none).
    pub fn as_slice(&self) -> &[u32] {
        &self.0
    }

    /// These hints (tests of their readers).
    #[cfg(test)]
    pub(crate) fn from_slots(slots: Vec<u32>) -> Self {
        Self(slots)
    }
}

impl PartialEq for LookupHints {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// Everything the engine knows about one user.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UserState {
    /// The long-term taste vector from training, if any.
    pub long_term: Option<Vec<f32>>,
    /// The real-time session vector, once the user touched an item that has a vector.
    pub session: Option<SessionVector>,
    /// Event counters.
    pub counters: Counters,
    /// Distinct recently touched items, most recent first, at most `recent_capacity`.
    /// Ids of up to 24 bytes are kept inline ([`CompactString`]): every event copies its
    /// user's state (a write that fails must leave it unchanged), and a list of `String`s
    /// cost one allocation per id to copy.
    pub recent: Vec<CompactString>,
    /// Distinct items bought, most recent first, at most `purchased_capacity` (the list
    /// shown; what is never recommended again is `excluded`). Inline ids, as `recent`.
    pub purchased: Vec<CompactString>,
    /// Items never recommended to this user again.
    pub excluded: ExcludedItems,
    /// Time of the latest event.
    pub last_event_ms: i64,
    /// The store's clock (ms since the epoch) at the latest write of this state: the
    /// inactivity TTL counts from it. Event timestamps cannot serve, as imported history
    /// may be years old. Set by the stores, not by [`UserState::apply`].
    pub active_ms: i64,
    /// The fold-in's interactions and vector (kept under either update rule, so that a
    /// change of rule takes effect at the user's next event).
    #[serde(default)]
    pub fold: FoldState,
}

impl UserState {
    /// Applies one event. `item_vector` is the item's vector, if it has one.
    pub fn apply(&mut self, event: &Event, item_vector: Option<&[f32]>, params: &SessionParams) {
        let c = &mut self.counters;
        match event.kind {
            EventType::View => c.view += 1,
            EventType::Click => c.click += 1,
            EventType::Dwell => {
                c.dwell += 1;
                c.dwell_seconds += event.value.unwrap_or(0.0);
            }
            EventType::AddToCart => c.add_to_cart += 1,
            EventType::Purchase => {
                c.purchase += 1;
                self.purchased.retain(|id| *id != event.item_id);
                self.purchased
                    .insert(0, CompactString::from(&event.item_id));
                self.purchased.truncate(params.purchased_capacity);
            }
            EventType::Rating => c.rating += 1,
            EventType::Dislike => c.dislike += 1,
            EventType::Hide => c.hide += 1,
            EventType::Skip => c.skip += 1,
        }
        if params.excludes(event.kind) {
            self.excluded
                .insert(&event.item_id, params.excluded_capacity);
        }
        let w = params.weights.weight(event.kind, event.value);
        // A state from before fold-in has no weights: its recent items count 0 (the
        // long-term vector has them) until touched again.
        self.fold.weights.resize(self.recent.len(), 0.0);
        self.fold.fresh.resize(self.recent.len(), 0.0);
        // Hints whose count is not `recent`'s (a list changed behind this method's back)
        // are dropped, and the next refold looks every id up again; only here do they
        // move with the items. A change that keeps the length is not detected: hence
        // "change `recent` only through `apply`" on `LookupHints`.
        let hints = &mut self.fold.hints.0;
        let hinted = hints.len() == self.recent.len();
        if !hinted {
            hints.clear();
        }
        let (before, fresh) = match self.recent.iter().position(|id| *id == event.item_id) {
            Some(at) => {
                self.recent.remove(at);
                if hinted {
                    let hint = hints.remove(at);
                    hints.insert(0, hint);
                }
                (self.fold.weights.remove(at), self.fold.fresh.remove(at))
            }
            None => {
                if hinted {
                    hints.insert(0, LookupHints::NONE);
                }
                (0.0, 0.0)
            }
        };
        // The part the trained model knew stays what it was; only the total moves.
        let trained = before - fresh;
        let w32 = w as f32;
        let summed = if event.kind.is_rejection() {
            // the user said no: a negative (p = 0, confidence 1 + alpha·|w|), or nothing
            // for a hide, whatever came before (training drops the pair entirely)
            w32.min(0.0)
        } else if w32 > 0.0 {
            before.max(0.0) + w32
        } else if before > 0.0 {
            // a skip of a liked item leaves it liked (training ignores skips)
            before
        } else {
            before + w32
        };
        let fresh = summed - trained;
        self.recent.insert(0, CompactString::from(&event.item_id));
        self.fold.weights.insert(0, summed);
        self.fold.fresh.insert(0, fresh);
        self.recent.truncate(params.recent_capacity);
        self.fold.weights.truncate(params.recent_capacity);
        self.fold.fresh.truncate(params.recent_capacity);
        self.fold.hints.0.truncate(params.recent_capacity);
        self.last_event_ms = self.last_event_ms.max(event.timestamp_ms);

        if w < 0.0 {
            // A negative event turns an existing session away from the item; alone it
            // makes none (a session of dislikes only would point at "anything unlike
            // these", which is no taste).
            if let (Some(v), Some(session)) = (item_vector.and_then(normalized), &mut self.session)
                && session.sum.len() == v.len()
            {
                session.add(&v, w, event.timestamp_ms, params);
            }
            return;
        }
        if let (Some(v), true) = (item_vector.and_then(normalized), w > 0.0) {
            let session = self.session.get_or_insert_with(|| SessionVector {
                sum: vec![0.0; v.len()],
                weight: 0.0,
                updated_ms: event.timestamp_ms,
            });
            if session.sum.len() == v.len() {
                session.add(&v, w, event.timestamp_ms, params);
            } else {
                // The vector dimension changed (a new model): start the session afresh.
                *session = SessionVector {
                    sum: v.iter().map(|x| x * w as f32).collect(),
                    weight: w,
                    updated_ms: event.timestamp_ms,
                };
            }
        }
    }

    /// The session vector `events` (one user's, in the order they were applied) give when
    /// each item has the vector `vector(item_id)`: what [`UserState::apply`] would have
    /// built had those vectors been in place all along. After training replaces the item
    /// vectors, a session built from the old ones points nowhere in the new space; this
    /// recomputes it (`None` when no event touched an item with a vector).
    pub fn session_from<'v>(
        events: &[Event],
        mut vector: impl FnMut(&str) -> Option<&'v [f32]>,
        params: &SessionParams,
    ) -> Option<SessionVector> {
        let mut replay = UserState::default();
        for e in events {
            replay.apply(e, vector(&e.item_id), params);
        }
        replay.session
    }

    /// Re-solves the fold-in vector over the recent items and their weights with the
    /// items' current vectors `vector(item_id)` ([`FoldModel::fold`]); the stores call it
    /// once per user after a batch of events under `update = "fold_in"`. It starts from the
    /// long-term vector, if any, and adds the fresh weights; under `solver = "cg"` the
    /// iterations start from the current folded vector (the solution before this batch),
    /// so a few steps suffice. Without a model the vector is dropped.
    pub fn refold<'v>(
        &mut self,
        model: Option<&FoldModel>,
        mut vector: impl FnMut(&str) -> Option<&'v [f32]>,
    ) {
        self.refold_with(model, false, |id, _| vector(id));
    }

    /// [`UserState::refold`] with the caller's [`LookupHints`]: `lookup(id, hint)` finds
    /// the vector of the recent item `id` and may read and set its `hint` (initially
    /// [`LookupHints::NONE`]), which stays with the item until the caller changes it. A
    /// hint must only ever name that item: the refold cannot check it.
    pub fn refold_hinted<'v>(
        &mut self,
        model: Option<&FoldModel>,
        lookup: impl FnMut(&str, &mut u32) -> Option<&'v [f32]>,
    ) {
        let hints = &mut self.fold.hints.0;
        if hints.len() != self.recent.len() {
            hints.clear();
            hints.resize(self.recent.len(), LookupHints::NONE);
        }
        self.refold_with(model, false, lookup);
    }

    /// [`UserState::refold`] solved exactly whatever the solver: for after the item
    /// vectors were replaced (training), when the current folded vector belongs to the old
    /// model's space and would be a poor start for a few CG steps.
    pub fn refold_exact<'v>(
        &mut self,
        model: Option<&FoldModel>,
        mut vector: impl FnMut(&str) -> Option<&'v [f32]>,
    ) {
        self.refold_with(model, true, |id, _| vector(id));
    }

    fn refold_with<'v>(
        &mut self,
        model: Option<&FoldModel>,
        exact: bool,
        mut lookup: impl FnMut(&str, &mut u32) -> Option<&'v [f32]>,
    ) {
        self.fold.fresh.resize(self.fold.weights.len(), 0.0);
        // Every item's vector is looked up, and its cache lines touched, before the solve
        // reads any: the lookups and loads of a short loop overlap, where inside the solve
        // each item's misses (its id's hash bucket, then its vector) came one after another.
        let hinted = self.fold.hints.0.len() == self.recent.len();
        let mut interactions: Vec<(&[f32], f32, f32)> = Vec::with_capacity(self.recent.len());
        let kept = self
            .recent
            .iter()
            .zip(self.fold.weights.iter().zip(&self.fold.fresh))
            .enumerate();
        for (i, (id, (&w, &f))) in kept {
            if w == 0.0 && w == f {
                continue;
            }
            let mut unhinted = LookupHints::NONE;
            let hint = match self.fold.hints.0.get_mut(i) {
                Some(hint) if hinted => hint,
                _ => &mut unhinted,
            };
            if let Some(v) = lookup(id, hint) {
                interactions.push((v, w, f));
            }
        }
        const F32_PER_CACHE_LINE: usize = 16;
        let touched: f32 = interactions
            .iter()
            .flat_map(|(v, _, _)| v.iter().step_by(F32_PER_CACHE_LINE))
            .sum();
        std::hint::black_box(touched);
        let prior = self.long_term.as_deref();
        let folded = model.and_then(|m| {
            if exact {
                m.solve_from(prior, interactions)
            } else {
                m.fold_batches(
                    prior,
                    self.fold.vector.as_deref(),
                    self.fold.due,
                    interactions,
                )
            }
        });
        self.fold.vector = folded;
        self.fold.due = 0;
    }

    /// Marks the fold-in vector as behind the interactions, for a store that applies
    /// events without solving and solves at the user's next read ([`FoldState::due`]):
    /// a user's events between two reads then cost one solve instead of one per batch.
    /// The solve starts from the vector as it is (the last one solved), so one batch
    /// between reads gives the vector solving after it gave; more take CG steps for each.
    pub fn mark_refold_due(&mut self) {
        self.fold.due = self.fold.due.saturating_add(1);
    }

    /// Whether events changed the fold-in's interactions since its vector was solved.
    pub fn refold_due(&self) -> bool {
        self.fold.due > 0
    }

    /// Sets the long-term vector (training write-back): every weight kept so far is now
    /// the trained model's, so none is fresh any more.
    pub fn set_long_term(&mut self, vector: Vec<f32>) {
        self.long_term = Some(vector);
        self.fold.fresh.clear();
        self.fold.fresh.resize(self.fold.weights.len(), 0.0);
    }

    /// How many events were applied to this state (the sum of the per-kind counters).
    pub fn event_count(&self) -> u64 {
        let c = &self.counters;
        c.view
            + c.click
            + c.dwell
            + c.add_to_cart
            + c.purchase
            + c.rating
            + c.dislike
            + c.hide
            + c.skip
    }

    /// The norm of the session vector's direction-carrying sum divided by its weight:
    /// 1 when every event pointed the same way, near 0 when they cancel out.
    pub fn session_vector_norm(&self) -> f64 {
        match &self.session {
            Some(s) if s.weight > 0.0 => f64::from(crate::vector::norm(&s.sum)) / s.weight,
            _ => 0.0,
        }
    }

    /// Whether the engine knows nothing personal about the user yet.
    pub fn is_cold(&self) -> bool {
        self.long_term.is_none() && self.session.is_none() && self.fold.vector.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(item: &str, kind: EventType, t: i64) -> Event {
        Event {
            user_id: "u".into(),
            item_id: item.into(),
            kind,
            value: None,
            timestamp_ms: t,
            recommendation_id: None,
        }
    }

    #[test]
    fn counters_recent_and_purchased() {
        let p = SessionParams {
            recent_capacity: 2,
            ..Default::default()
        };
        let mut u = UserState::default();
        u.apply(&ev("a", EventType::View, 1), None, &p);
        u.apply(&ev("b", EventType::Purchase, 2), None, &p);
        u.apply(&ev("c", EventType::Click, 3), None, &p);
        u.apply(&ev("b", EventType::View, 4), None, &p);
        assert_eq!(u.counters.view, 2);
        assert_eq!(u.recent, ["b", "c"]);
        assert_eq!(u.purchased, ["b"]);
        assert!(u.session.is_none() && u.is_cold());
    }

    #[test]
    fn exclusions_are_exact_past_the_recent_window_and_bounded() {
        let p = SessionParams {
            recent_capacity: 2,
            excluded_capacity: 3,
            purchased_capacity: 2,
            ..Default::default()
        };
        let mut u = UserState::default();
        for (i, kind) in [
            EventType::Rating,
            EventType::Purchase,
            EventType::View,
            EventType::Hide,
            EventType::Click,
            EventType::Dislike,
            EventType::Skip,
            EventType::Dwell,
        ]
        .into_iter()
        .enumerate()
        {
            let mut e = ev(&format!("i{i}"), kind, i as i64);
            e.value = Some(4.0);
            u.apply(&e, None, &p);
        }
        // rating, purchase, hide, dislike exclude; views, clicks, skips and dwell repeat.
        // The capacity (3) dropped the oldest exclusion (i0, the rating).
        let excluded: Vec<usize> = (0..8)
            .filter(|i| u.excluded.contains(&format!("i{i}")))
            .collect();
        assert_eq!(excluded, [1, 3, 5]);
        assert_eq!(u.recent, ["i7", "i6"]);
        // re-excluding moves an item to the newest end
        u.apply(&ev("i1", EventType::Purchase, 9), None, &p);
        u.apply(&ev("i8", EventType::Purchase, 10), None, &p);
        assert!(u.excluded.contains("i1") && !u.excluded.contains("i3"));
        assert_eq!(u.purchased, ["i8", "i1"]);
        // consumables: purchases may repeat when configured
        let consumables = SessionParams {
            repeatable: vec![EventType::View, EventType::Purchase],
            ..Default::default()
        };
        let mut u = UserState::default();
        u.apply(&ev("milk", EventType::Purchase, 1), None, &consumables);
        assert!(u.excluded.is_empty() && u.purchased == ["milk"]);
        u.apply(&ev("milk", EventType::Hide, 2), None, &consumables);
        assert!(u.excluded.contains("milk"));
    }

    #[test]
    fn settings_are_checked() {
        assert!(SessionParams::default().check().is_ok());
        let hide_repeats = SessionParams {
            repeatable: vec![EventType::View, EventType::Hide],
            ..Default::default()
        };
        let err = hide_repeats.check().unwrap_err();
        assert!(
            err.message.contains("repeatable may not hold 'hide'"),
            "{err}"
        );
        let none = SessionParams {
            excluded_capacity: 0,
            ..Default::default()
        };
        assert!(
            none.check()
                .unwrap_err()
                .message
                .contains("excluded_capacity")
        );
        assert_eq!(
            SessionParams::default().ttl_ms(),
            Some(30 * 24 * 3600 * 1000)
        );
        let forever = SessionParams {
            ttl_seconds: 0,
            ..Default::default()
        };
        assert_eq!(forever.ttl_ms(), None);
    }

    #[test]
    fn item_keys_are_stable() {
        // Golden values: stored exclusion sets depend on them never changing.
        assert_eq!(item_key("sku-1"), 0xf6ba_4edd_272e_0924);
        assert_eq!(item_key(""), 0xf52a_15e9_a9b5_e89b);
        assert_ne!(item_key("a"), item_key("b"));
    }

    #[test]
    fn a_dislike_turns_the_session_away_and_alone_makes_none() {
        let p = SessionParams::default();
        let mut u = UserState::default();
        u.apply(&ev("x", EventType::Dislike, 0), Some(&[1.0, 0.0]), &p);
        assert!(u.session.is_none());
        u.apply(&ev("a", EventType::Click, 0), Some(&[1.0, 1.0]), &p);
        let before = u.session.as_ref().unwrap().direction().unwrap();
        u.apply(&ev("x", EventType::Dislike, 0), Some(&[1.0, 0.0]), &p);
        let s = u.session.as_ref().unwrap();
        let after = s.direction().unwrap();
        // turned away from x: less similar to it than before
        assert!(after[0] < before[0], "{before:?} -> {after:?}");
        assert!(u.session_vector_norm() <= 1.0 + 1e-9);
        // a skip pushes too, but less
        let mut skipped = u.clone();
        skipped.apply(&ev("x", EventType::Skip, 0), Some(&[1.0, 0.0]), &p);
        let mut disliked = u.clone();
        disliked.apply(&ev("x", EventType::Dislike, 0), Some(&[1.0, 0.0]), &p);
        let x = |s: &UserState| s.session.as_ref().unwrap().direction().unwrap()[0];
        assert!(x(&disliked) < x(&skipped) && x(&skipped) < x(&u));
    }

    #[test]
    fn session_vector_is_a_decayed_weighted_average() {
        let p = SessionParams {
            half_life_seconds: 1.0,
            ..Default::default()
        };
        let mut u = UserState::default();
        // a click (weight 2) on x, then one half-life later a view (weight 1) on y:
        // the click has decayed to weight 1, so the two count equally.
        u.apply(&ev("x", EventType::Click, 0), Some(&[2.0, 0.0]), &p);
        u.apply(&ev("y", EventType::View, 1000), Some(&[0.0, 5.0]), &p);
        let s = u.session.as_ref().unwrap();
        assert!((s.weight - 2.0).abs() < 1e-6);
        assert!((s.sum[0] - 1.0).abs() < 1e-6 && (s.sum[1] - 1.0).abs() < 1e-6);
        let d = s.direction().unwrap();
        assert!((d[0] - d[1]).abs() < 1e-6);
        assert!((s.weight_at(2000, &p) - 1.0).abs() < 1e-6);
    }

    #[test]
    fn out_of_order_events_count_at_their_decayed_weight() {
        let p = SessionParams {
            half_life_seconds: 1.0,
            ..Default::default()
        };
        let mut u = UserState::default();
        u.apply(&ev("y", EventType::View, 1000), Some(&[0.0, 1.0]), &p);
        u.apply(&ev("x", EventType::Click, 0), Some(&[1.0, 0.0]), &p);
        let s = u.session.as_ref().unwrap();
        assert_eq!(s.updated_ms, 1000);
        assert!((s.sum[0] - 1.0).abs() < 1e-6 && (s.sum[1] - 1.0).abs() < 1e-6);
    }

    #[test]
    fn session_from_replays_the_events_with_other_vectors() {
        let p = SessionParams {
            half_life_seconds: 1.0,
            ..Default::default()
        };
        let events = [
            ev("x", EventType::Click, 0),
            ev("y", EventType::View, 1000),
            ev("gone", EventType::Purchase, 1500),
        ];
        let old = |id: &str| match id {
            "x" => Some(&[1.0f32, 0.0][..]),
            "y" => Some(&[0.0f32, 1.0][..]),
            _ => None,
        };
        let mut live = UserState::default();
        for e in &events {
            live.apply(e, old(&e.item_id), &p);
        }
        // the same vectors give exactly the live session
        assert_eq!(UserState::session_from(&events, old, &p), live.session);
        assert_eq!(live.event_count(), 3);
        // new vectors: x and y swapped axes, so the session's direction swaps too
        let new = |id: &str| match id {
            "x" => Some(&[0.0f32, 3.0][..]),
            "y" => Some(&[2.0f32, 0.0][..]),
            _ => None,
        };
        let rebuilt = UserState::session_from(&events, new, &p).unwrap();
        let live = live.session.unwrap();
        assert_eq!(
            (rebuilt.weight, rebuilt.updated_ms),
            (live.weight, live.updated_ms)
        );
        assert!((rebuilt.sum[0] - live.sum[1]).abs() < 1e-6);
        assert!((rebuilt.sum[1] - live.sum[0]).abs() < 1e-6);
        // no vectors at all: no session
        assert_eq!(UserState::session_from(&events, |_| None, &p), None);
    }

    #[test]
    fn zero_weight_events_leave_the_session_alone() {
        let mut p = SessionParams::default();
        p.weights.rating_neutral = 2.5;
        let mut u = UserState::default();
        let mut e = ev("x", EventType::Rating, 0);
        e.value = Some(1.0);
        u.apply(&e, Some(&[1.0, 0.0]), &p);
        assert!(u.session.is_none());
        assert_eq!(u.counters.rating, 1);
    }

    #[test]
    fn recent_items_keep_their_summed_weights_and_refold_solves_over_them() {
        let p = SessionParams {
            recent_capacity: 2,
            ..Default::default()
        };
        let mut u = UserState::default();
        u.apply(&ev("a", EventType::Click, 0), None, &p);
        u.apply(&ev("b", EventType::View, 1), None, &p);
        u.apply(&ev("a", EventType::View, 2), None, &p);
        let (click, view) = (p.weights.click as f32, p.weights.view as f32);
        assert_eq!(u.recent, ["a", "b"]);
        assert_eq!(u.fold.weights, [click + view, view]);
        // a dislike replaces the item's weight by its own (negative) one, as training
        // drops the pair; a hide leaves nothing
        u.apply(&ev("b", EventType::Dislike, 3), None, &p);
        let dislike = p.weights.dislike as f32;
        assert_eq!(u.fold.weights, [dislike, click + view]);
        // past the capacity the oldest item and its weight go together; a skip of an
        // item not liked is a weak negative
        u.apply(&ev("c", EventType::Skip, 4), None, &p);
        assert_eq!((u.recent.len(), u.fold.weights.len()), (2, 2));
        assert_eq!(u.fold.weights, [p.weights.skip as f32, dislike]);
        u.apply(&ev("b", EventType::Hide, 5), None, &p);
        u.apply(&ev("c", EventType::Hide, 6), None, &p);
        assert_eq!(u.fold.weights, [0.0, 0.0]);

        let ys: [(&str, [f32; 2]); 3] = [("a", [1.0, 0.2]), ("b", [0.1, 1.0]), ("c", [0.5, 0.5])];
        let mut g = crate::Gram::new(2);
        ys.iter().for_each(|(_, y)| g.add(y));
        let model = FoldModel::new(&g, &p.fold_in).unwrap();
        let vector = |id: &str| ys.iter().find(|(i, _)| *i == id).map(|(_, y)| &y[..]);
        // nothing positive left: no folded vector
        u.refold(Some(&model), vector);
        assert_eq!(u.fold.vector, None);
        u.apply(&ev("a", EventType::Purchase, 7), None, &p);
        u.refold(Some(&model), vector);
        let w = p.weights.purchase as f32;
        let exact = model.solve([(&ys[0].1[..], w)]).unwrap();
        let got = u.fold.vector.clone().unwrap();
        // CG (the default) converges in 2 steps on a 2-d system, up to rounding
        assert!(
            got.iter().zip(&exact).all(|(a, b)| (a - b).abs() < 1e-5),
            "{got:?}"
        );
        u.refold_exact(Some(&model), vector);
        assert_eq!(u.fold.vector, Some(exact));
        assert!(!u.is_cold());
        // trained: the long-term vector is the fold-in until a fresh event moves it
        let lt = u.fold.vector.clone().unwrap();
        u.set_long_term(lt.clone());
        assert!(u.fold.fresh.iter().all(|f| *f == 0.0));
        u.refold(Some(&model), vector);
        let same = u.fold.vector.clone().unwrap();
        assert!(same.iter().zip(&lt).all(|(a, b)| (a - b).abs() < 1e-5));
        u.apply(&ev("b", EventType::Click, 8), None, &p);
        assert_eq!(u.fold.fresh[0], p.weights.click as f32);
        u.refold(Some(&model), vector);
        let moved = u.fold.vector.clone().unwrap();
        let b = &ys[1].1[..];
        assert!(crate::vector::dot(&moved, b) > crate::vector::dot(&lt, b));
        u.refold(None, vector);
        assert_eq!(u.fold.vector, None);
    }

    #[test]
    fn lookup_hints_move_with_their_items_and_are_only_a_cache() {
        let p = SessionParams {
            recent_capacity: 3,
            ..Default::default()
        };
        let k = 4;
        let ys: Vec<(String, Vec<f32>)> = (0..6)
            .map(|i| {
                let y = (0..k).map(|d| ((i * 5 + d * 3) % 7) as f32 / 7.0 - 0.4);
                (format!("i{i}"), y.collect())
            })
            .collect();
        let mut g = crate::Gram::new(k);
        ys.iter().for_each(|(_, y)| g.add(y));
        let model = FoldModel::new(&g, &p.fold_in).unwrap();
        let slot = |id: &str| ys.iter().position(|(i, _)| i == id).unwrap() as u32;
        // A hinted lookup that checks every hint it is given names its own item, sets the
        // missing ones, and counts them.
        let mut missing = Vec::new();
        let refold = |u: &mut UserState, missing: &mut Vec<String>| {
            missing.clear();
            u.refold_hinted(Some(&model), |id, hint| {
                if *hint == LookupHints::NONE {
                    missing.push(id.to_string());
                    *hint = slot(id);
                }
                assert_eq!(*hint, slot(id), "the hint of {id}");
                Some(&ys[*hint as usize].1[..])
            });
        };
        let mut u = UserState::default();
        let mut plain = UserState::default();
        for (t, item) in ["i0", "i1", "i2", "i1", "i3", "i1", "i4"]
            .into_iter()
            .enumerate()
        {
            let e = ev(item, EventType::Click, t as i64);
            let known = u.recent.iter().any(|id| id == item);
            u.apply(&e, None, &p);
            plain.apply(&e, None, &p);
            refold(&mut u, &mut missing);
            plain.refold(Some(&model), |id| Some(&ys[slot(id) as usize].1[..]));
            // only an item new to the list is looked up: a repeat takes its hint to the
            // front, and the item pushed past the capacity leaves with its own
            let expected: &[&str] = if known { &[] } else { &[item] };
            assert_eq!(missing, expected, "event {t}");
            assert_eq!(u.fold.hints.len(), u.recent.len());
            // the hints change nothing of the result
            assert_eq!(u.fold.vector, plain.fold.vector, "event {t}");
        }
        assert_eq!(missing, ["i4"]);
        assert_eq!(u.recent, ["i4", "i1", "i3"]);
        // a repeat of an item already hinted needs no lookup
        u.apply(&ev("i3", EventType::View, 9), None, &p);
        refold(&mut u, &mut missing);
        assert!(missing.is_empty(), "{missing:?}");
        // not stored: a decoded state starts without, looks everything up once, and is
        // equal to the hinted one all along
        let decoded: UserState = serde_json::from_str(&serde_json::to_string(&u).unwrap()).unwrap();
        assert!(decoded.fold.hints.is_empty());
        assert_eq!(decoded, u);
        let mut decoded = decoded;
        refold(&mut decoded, &mut missing);
        assert_eq!(missing, ["i3", "i4", "i1"]);
        // a list whose length changed behind `apply`'s back drops its hints rather than
        // misname items
        u.recent.swap(0, 2);
        u.recent.pop();
        u.fold.weights.pop();
        u.apply(&ev("i5", EventType::View, 10), None, &p);
        assert!(u.fold.hints.is_empty());
        refold(&mut u, &mut missing);
        assert_eq!(missing.len(), u.recent.len());
    }

    #[test]
    fn refold_under_cg_starts_from_the_folded_vector() {
        let p = SessionParams::default();
        let k = 8;
        let ys: Vec<(String, Vec<f32>)> = (0..30)
            .map(|i| {
                let y = (0..k).map(|d| ((i * 7 + d * 3) % 11) as f32 / 11.0 - 0.5);
                (format!("i{i}"), y.collect())
            })
            .collect();
        let mut g = crate::Gram::new(k);
        ys.iter().for_each(|(_, y)| g.add(y));
        // one step per event: far from converged, so where it starts shows
        let model = FoldModel::new(&g, &p.fold_in)
            .unwrap()
            .with_solver(crate::FoldSolver::Cg, 1);
        let vector = |id: &str| ys.iter().find(|(i, _)| i == id).map(|(_, y)| &y[..]);
        // What a refold solves over: (vector, summed weight, fresh weight) per recent item.
        let interactions_of = |u: &UserState| -> Vec<(&[f32], f32, f32)> {
            u.recent
                .iter()
                .zip(u.fold.weights.iter().zip(&u.fold.fresh))
                .filter_map(|(id, (w, f))| Some((vector(id)?, *w, *f)))
                .collect()
        };
        let mut u = UserState::default();
        u.set_long_term(vec![0.1; k]);
        for (t, item) in ["i3", "i8", "i3", "i21"].iter().enumerate() {
            let before = u.fold.vector.clone();
            u.apply(&ev(item, EventType::Click, t as i64), None, &p);
            u.refold(Some(&model), vector);
            let interactions = interactions_of(&u);
            let from_before = model.solve_cg(
                u.long_term.as_deref(),
                before.as_deref(),
                1,
                interactions.iter().copied(),
            );
            assert_eq!(u.fold.vector, from_before, "event {t}");
            if t > 0 {
                let from_prior = model.solve_cg(
                    u.long_term.as_deref(),
                    None,
                    1,
                    interactions.iter().copied(),
                );
                assert_ne!(u.fold.vector, from_prior, "event {t}");
            }
        }
        // refold_exact ignores the start and the solver
        u.refold_exact(Some(&model), vector);
        let interactions = interactions_of(&u);
        assert_eq!(
            u.fold.vector,
            model.solve_from(u.long_term.as_deref(), interactions)
        );
    }
}
