//! Reading the feature vectors of many candidates for one user, as a request does.
//!
//! [`FeatureSet::values_into`] reads one (user, item) pair from scratch: every candidate
//! re-sums the user's windows and looks up each of its tags once per `user_tag` feature.
//! A request scores ~150 candidates for the same user at the same time, so [`UserView`]
//! does the user's side once: the user-only values (windows, recency) and, for every tag
//! value the user has state for, the window sums of every `user_tag` feature, in one flat
//! table. A candidate then costs one hash lookup per tag it carries, plus its own item
//! state. The values are the same as [`FeatureSet::values_into`]'s, bit for bit (same sums
//! in the same order); the test below holds them to it.
//!
//! The item side is what is left per candidate: an item's windowed sums and rates change
//! only when its state does or when "now" crosses a bucket boundary of one of their
//! windows, yet every request re-summed them. [`CachedItem`] keeps an item's state with an
//! [`ItemSnapshot`] of those values and the span of time they hold for; a store serving
//! from memory reads the snapshot while it holds, recomputes it otherwise, and drops it on
//! every update but one (the type allows no other update that keeps it). The values are
//! exactly the recomputed ones, not an approximation: over the span, every window covers
//! the same buckets of the same state.
//!
//! The update kept is an impression: it adds 1 to a rate's impressions and changes
//! nothing else the snapshot holds. Every served list logs one for each of its items, so
//! dropping the snapshot on it meant the popular items', which are candidates of almost
//! every request, were recomputed on almost every request. The snapshot keeps each rate's
//! windowed (successes, impressions) beside its value, and an impression inside the
//! snapshot's buckets adds to the impressions and divides again: the value a recompute
//! gives, bit for bit, since a sum of whole numbers below 2^52 is exact in any order
//! (the snapshot is dropped as before when its impressions are not such a sum).

use std::collections::HashMap;
use std::sync::Arc;

use crate::features::spec::{Entity, FeatureKind, FeatureSet};
use crate::features::state::{
    EntityState, Op, Slot, SlotKey, item_value, rate_parts, rate_value, tags, user_value,
};
use crate::features::tag_ids::{FIELD_END, ItemTags, TagIds};
use crate::features::window::Window;
use crate::item::Item;

type Fast = foldhash::fast::RandomState;

/// One user's side of the features at one time, ready to be combined with many items.
#[derive(Debug, Clone)]
pub struct UserView<'s> {
    set: &'s FeatureSet,
    now_ms: i64,
    /// Every feature's value where the item does not matter (user-only features), 0
    /// where it does (filled per item).
    base: Vec<f64>,
    /// Per tag field read by `user_tag` features: the field and its features as
    /// (feature index, column in `sums`).
    tag_fields: Vec<(&'s str, Vec<(usize, usize)>)>,
    /// Tag value → its row's offset in `sums`, when the tags are not numbered.
    by_tag: HashMap<Box<str>, usize, Fast>,
    /// The same by the tags' numbers, sorted ([`FeatureSet::user_view_numbered`]); `None`:
    /// by string.
    by_id: Option<(&'s TagIds, Vec<(u32, usize)>)>,
    /// One row per tag value the user has state for, one column per `user_tag` feature.
    sums: Vec<f64>,
    /// Features read from the item (its state or its fields).
    item_side: Vec<usize>,
    /// Whether any item-side feature reads the item's state (else it need not be fetched).
    item_state: bool,
    /// The item-side features a snapshot keeps (item windows and rates), in its order.
    snapshot: Vec<usize>,
    /// The item-side features read live (recency moves with "now"; fields are the item's).
    live: Vec<usize>,
    /// The span around `now_ms` over which every window of `snapshot` covers the same
    /// buckets: `[from, until)`.
    span: (i64, i64),
    /// [`fingerprint_key`] of the set's fingerprint, which a snapshot must carry.
    fingerprint: u64,
}

/// The feature set's fingerprint as a number, kept in each snapshot: comparing it costs
/// nothing per candidate, where comparing the string read another heap allocation (a cache
/// miss) for every candidate of every request.
fn fingerprint_key(fingerprint: &str) -> u64 {
    use std::hash::BuildHasher;
    foldhash::fast::FixedState::default().hash_one(fingerprint)
}

/// Whether rate feature `i`'s impressions in the buckets `window` covers at `now_ms` are
/// whole numbers ≥ 0 with a sum below [`EXACT`] (then so is every partial sum).
fn covered_whole(state: &EntityState, i: usize, window: &Window, now_ms: i64) -> bool {
    let Some(Slot::Buckets(b)) = state.get(i as u16, 1, None) else {
        return true;
    };
    let (lo, hi) = (window.first_bucket(now_ms), window.bucket_of(now_ms));
    let covered = b.0.iter().filter(|(k, _)| (lo..=hi).contains(k));
    covered.clone().all(|&(_, v)| is_whole(v)) && is_whole(covered.map(|(_, v)| v).sum())
}

/// An item's state-derived values (its windows and rates) at one time, and the span of
/// time they hold for (see the module doc).
#[derive(Debug, Clone, PartialEq)]
pub struct ItemSnapshot {
    /// The feature set's fingerprint ([`fingerprint_key`]): a snapshot of another set is
    /// never read.
    fingerprint: u64,
    /// Valid for "now" in `[from, until)`.
    from_ms: i64,
    until_ms: i64,
    /// One value per feature of the view's `snapshot` list.
    values: Vec<f64>,
    /// The rates among them, with what they are computed from (read on impressions only).
    rates: Vec<RateParts>,
}

/// One rate of a snapshot: what an impression updates in place.
#[derive(Debug, Clone, PartialEq)]
struct RateParts {
    /// The feature's index in its set.
    feature: u16,
    /// Its window (an impression of another window is of another set: the snapshot is
    /// dropped).
    window: Window,
    /// Its index in the snapshot's `values`.
    at: usize,
    /// The windowed successes and impressions.
    hits: f64,
    shown: f64,
    /// Whether `shown` is a sum of whole numbers ≥ 0 below [`EXACT`]: then adding a
    /// whole number gives the recomputed sum exactly.
    whole: bool,
}

/// Whole numbers below this add exactly in an `f64` in any order.
const EXACT: f64 = (1u64 << 52) as f64;

fn is_whole(x: f64) -> bool {
    (0.0..EXACT).contains(&x) && x.fract() == 0.0
}

impl ItemSnapshot {
    /// Takes an update into the snapshot if it can: an impression of one of its rates (a
    /// rate's part 1, without a tag) in a bucket its windows cover changes that rate's
    /// value, one in a bucket before them changes nothing. Else (any other update, a
    /// bucket after them, which prunes covered ones, a sum not known to stay exact) `false`:
    /// the snapshot must be dropped.
    fn absorb(&mut self, key: &SlotKey, op: &Op) -> bool {
        let Op::Add {
            window,
            bucket,
            value,
        } = *op
        else {
            return false;
        };
        if key.part != 1 || key.tag.is_some() {
            return false;
        }
        let Some(rate) = self
            .rates
            .iter_mut()
            .find(|r| r.feature == key.feature && r.window == window)
        else {
            return false;
        };
        // Every "now" of [from, until) is in the same bucket of every window.
        let (lo, hi) = (
            window.first_bucket(self.from_ms),
            window.bucket_of(self.from_ms),
        );
        if bucket < lo {
            return true;
        }
        if bucket > hi || !rate.whole || !is_whole(value) || !is_whole(rate.shown + value) {
            return false;
        }
        rate.shown += value;
        self.values[rate.at] = rate_value(rate.hits, rate.shown);
        true
    }
}

/// An item's feature state and the snapshot of its values, which every update but an
/// impression inside its windows drops.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CachedItem {
    state: EntityState,
    snapshot: Option<ItemSnapshot>,
    /// The item's tags as numbers (kept across updates: they change with the catalog's
    /// item, not with its state).
    tags: Option<ItemTags>,
}

impl CachedItem {
    /// The state.
    pub fn state(&self) -> &EntityState {
        &self.state
    }

    /// Applies one update to the state ([`EntityState::apply`]), dropping the snapshot
    /// unless the update is an impression it can take in (see the module doc).
    pub fn apply(&mut self, key: &SlotKey, op: &Op, at_ms: i64) {
        if !self.snapshot.as_mut().is_some_and(|s| s.absorb(key, op)) {
            self.snapshot = None;
        }
        self.state.apply(key, op, at_ms);
    }

    /// Reads what [`UserView::values_into_cached`] reads first (the state's time, the
    /// snapshot's span and first value, the first tag number) and returns a mix of them:
    /// a store calls it on the entries of many candidates before reading any, so that
    /// their cache misses overlap instead of coming one after another.
    pub fn touch(&self) -> u64 {
        let mut x = self.state.touched_ms as u64;
        if let Some(s) = &self.snapshot {
            x ^= s.until_ms as u64 ^ s.values.first().map_or(0, |v| v.to_bits());
        }
        if let Some(t) = &self.tags {
            x ^= u64::from(t.ids.first().copied().unwrap_or(0));
        }
        x
    }

    /// Whether a snapshot is kept (tests, figures).
    pub fn has_snapshot(&self) -> bool {
        self.snapshot.is_some()
    }
}

impl FeatureSet {
    /// The user's side of every feature at `now_ms` (`None`, or expired: no history).
    pub fn user_view(&self, user: Option<&EntityState>, now_ms: i64) -> UserView<'_> {
        self.view(user, now_ms, None)
    }

    /// [`FeatureSet::user_view`] reading the tags of items kept in a store by number
    /// ([`TagIds`]): the user's tags are numbered here, under one read lock, and kept by
    /// number only (no copy of each tag's string), so any tag a candidate's numbers name
    /// that the user has state for is found; [`UserView::values_into_cached`] keeps each
    /// item's tag numbers in its entry. If a tag cannot be numbered, tags are read by
    /// string as in [`FeatureSet::user_view`].
    pub fn user_view_numbered<'s>(
        &'s self,
        user: Option<&EntityState>,
        now_ms: i64,
        numbers: &'s TagIds,
    ) -> UserView<'s> {
        self.view(user, now_ms, Some(numbers))
    }

    fn view<'s>(
        &'s self,
        user: Option<&EntityState>,
        now_ms: i64,
        numbers: Option<&'s TagIds>,
    ) -> UserView<'s> {
        let user = user.filter(|s| !s.expired(now_ms, self.ttl_ms));
        let mut base = vec![0.0; self.defs.len()];
        let mut tag_fields: Vec<(&str, Vec<(usize, usize)>)> = Vec::new();
        // Feature index → its column in `sums`, for user_tag features.
        let mut column: Vec<Option<usize>> = vec![None; self.defs.len()];
        let mut item_side = Vec::new();
        let (mut snapshot, mut live) = (Vec::new(), Vec::new());
        let mut span = (i64::MIN, i64::MAX);
        let mut columns = 0;
        for (i, def) in self.defs.iter().enumerate() {
            match &def.kind {
                FeatureKind::Windowed {
                    entity: Entity::UserTag(field),
                    ..
                }
                | FeatureKind::Distinct {
                    entity: Entity::UserTag(field),
                    ..
                } => {
                    column[i] = Some(columns);
                    match tag_fields.iter_mut().find(|(f, _)| *f == field.as_str()) {
                        Some((_, list)) => list.push((i, columns)),
                        None => tag_fields.push((field.as_str(), vec![(i, columns)])),
                    }
                    columns += 1;
                }
                FeatureKind::Windowed {
                    entity: Entity::User,
                    ..
                }
                | FeatureKind::Recency {
                    entity: Entity::User | Entity::UserTag(_),
                    ..
                }
                | FeatureKind::Distinct {
                    entity: Entity::User,
                    ..
                } => base[i] = user_value(i, def, user, now_ms),
                FeatureKind::Windowed { window, .. }
                | FeatureKind::Rate { window, .. }
                | FeatureKind::Distinct { window, .. } => {
                    item_side.push(i);
                    snapshot.push(i);
                    // The sums depend on "now" only through its bucket.
                    let g = window.granularity_ms().max(1);
                    let from = window.bucket_of(now_ms).saturating_mul(g);
                    span = (span.0.max(from), span.1.min(from.saturating_add(g)));
                }
                _ => {
                    item_side.push(i);
                    live.push(i);
                }
            }
        }
        let mut by_tag = HashMap::with_hasher(Fast::default());
        let mut by_id = None;
        let mut sums = Vec::new();
        if columns > 0
            && let Some(user) = user
        {
            // (tag, its row's offset), numbered or put in `by_tag` below.
            let mut rows: Vec<(&str, usize)> = Vec::new();
            for (tag, slots) in user.tag_slots() {
                let off = sums.len();
                sums.resize(off + columns, 0.0);
                for (feature, part, slot) in slots {
                    let (Some(Some(col)), 0) = (column.get(usize::from(*feature)), *part) else {
                        continue;
                    };
                    sums[off + col] = match (&self.defs[usize::from(*feature)].kind, slot) {
                        (FeatureKind::Windowed { window, .. }, Slot::Buckets(b)) => {
                            b.sum(window, now_ms)
                        }
                        (FeatureKind::Distinct { window, .. }, Slot::Distinct(d)) => {
                            d.count(window, now_ms)
                        }
                        _ => continue,
                    };
                }
                rows.push((tag, off));
            }
            let tags: Vec<&str> = rows.iter().map(|&(t, _)| t).collect();
            let numbered = numbers.and_then(|n| Some((n, n.numbers_of(&tags)?)));
            match numbered {
                Some((numbers, ids)) => {
                    let mut ids: Vec<(u32, usize)> = ids
                        .into_iter()
                        .zip(rows.iter().map(|&(_, off)| off))
                        .collect();
                    ids.sort_unstable();
                    by_id = Some((numbers, ids));
                }
                None => by_tag.extend(rows.into_iter().map(|(t, off)| (t.into(), off))),
            }
        } else if let Some(numbers) = numbers {
            // No tag sums: nothing to find, by number or string.
            by_id = Some((numbers, Vec::new()));
        }
        let item_state = item_side
            .iter()
            .any(|&i| !matches!(self.defs[i].kind, FeatureKind::Field { .. }));
        UserView {
            set: self,
            now_ms,
            base,
            tag_fields,
            by_tag,
            by_id,
            sums,
            item_side,
            item_state,
            snapshot,
            live,
            span,
            fingerprint: fingerprint_key(self.fingerprint()),
        }
    }
}

impl UserView<'_> {
    /// Whether item states are read at all (else pass `None` and skip fetching them).
    pub fn needs_item_state(&self) -> bool {
        self.item_state
    }

    /// The feature vector of `item` (whose state is `item_state`) for this user, in the
    /// set's order, into `out` (`out.len() == set.len()`).
    pub fn values_into(&self, item_state: Option<&EntityState>, item: &Item, out: &mut [f64]) {
        self.user_side_into(item, out);
        if !self.item_side.is_empty() {
            let state = item_state.filter(|s| !s.expired(self.now_ms, self.set.ttl_ms));
            for &i in &self.item_side {
                out[i] = item_value(i, &self.set.defs[i], state, item, self.now_ms);
            }
        }
    }

    /// [`UserView::values_into`] with the item's windows and rates read from its snapshot
    /// when it holds at this view's time, else recomputed and kept in `cached`. The values
    /// are the same as [`UserView::values_into`]'s on `cached.state()`, bit for bit.
    pub fn values_into_cached(
        &self,
        cached: Option<&mut CachedItem>,
        item: &Arc<Item>,
        out: &mut [f64],
    ) {
        let Some(cached) = cached.filter(|c| !c.state.expired(self.now_ms, self.set.ttl_ms)) else {
            return self.values_into(None, item, out);
        };
        self.user_side_numbered(&mut cached.tags, item, out);
        if self.item_side.is_empty() {
            return;
        }
        let valid = cached.snapshot.as_ref().is_some_and(|s| {
            (s.from_ms..s.until_ms).contains(&self.now_ms) && s.fingerprint == self.fingerprint
        });
        if !valid && !self.snapshot.is_empty() {
            cached.snapshot = Some(self.snapshot_of(&cached.state, item));
        }
        if let Some(snap) = &cached.snapshot {
            for (&i, &v) in self.snapshot.iter().zip(&snap.values) {
                out[i] = v;
            }
        }
        for &i in &self.live {
            out[i] = item_value(i, &self.set.defs[i], Some(&cached.state), item, self.now_ms);
        }
    }

    /// [`UserView::user_side_into`] through the item's tag numbers in `tags` (made, or
    /// made again, when they are not `item`'s for this set): the same sums in the same
    /// order, found by number. By string when the view has no numbers or a tag has none.
    fn user_side_numbered(&self, tags: &mut Option<ItemTags>, item: &Arc<Item>, out: &mut [f64]) {
        let Some((numbers, by_id)) = self.by_id.as_ref().filter(|_| !self.sums.is_empty()) else {
            return self.user_side_into(item, out);
        };
        if !tags
            .as_ref()
            .is_some_and(|t| t.hold_for(item, self.fingerprint))
        {
            let fields = self.tag_fields.iter().map(|(f, _)| *f);
            *tags = ItemTags::new(item, fields, self.fingerprint, numbers);
        }
        let Some(tags) = tags.as_ref() else {
            return self.user_side_into(item, out);
        };
        out.copy_from_slice(&self.base);
        let mut ids = tags.ids.iter();
        for (_, features) in &self.tag_fields {
            for &id in ids.by_ref().take_while(|&&id| id != FIELD_END) {
                if let Ok(k) = by_id.binary_search_by_key(&id, |&(id, _)| id) {
                    let off = by_id[k].1;
                    for &(i, col) in features {
                        out[i] += self.sums[off + col];
                    }
                }
            }
        }
    }

    /// The snapshot of `item`'s `state` (unexpired at this view's time) at this view's time.
    fn snapshot_of(&self, state: &EntityState, item: &Item) -> ItemSnapshot {
        let mut rates = Vec::new();
        let values = self
            .snapshot
            .iter()
            .enumerate()
            .map(|(at, &i)| match &self.set.defs[i].kind {
                FeatureKind::Rate { window, .. } => {
                    let (hits, shown) = rate_parts(Some(state), i, window, self.now_ms);
                    rates.push(RateParts {
                        feature: i as u16,
                        window: *window,
                        at,
                        hits,
                        shown,
                        whole: covered_whole(state, i, window, self.now_ms),
                    });
                    rate_value(hits, shown)
                }
                _ => item_value(i, &self.set.defs[i], Some(state), item, self.now_ms),
            })
            .collect();
        // Past `touched + ttl` the state counts as expired: no snapshot beyond it.
        let expires = state
            .touched_ms
            .saturating_add(self.set.ttl_ms)
            .saturating_add(1);
        ItemSnapshot {
            fingerprint: self.fingerprint,
            from_ms: self.span.0,
            until_ms: self.span.1.min(expires),
            values,
            rates,
        }
    }

    /// The user-only values and the user × tag sums of `item`'s tags into `out`; the
    /// item-side entries are left for the caller.
    fn user_side_into(&self, item: &Item, out: &mut [f64]) {
        out.copy_from_slice(&self.base);
        if self.sums.is_empty() {
            return;
        }
        let add = |out: &mut [f64], features: &[(usize, usize)], off: usize| {
            for &(i, col) in features {
                out[i] += self.sums[off + col];
            }
        };
        for (field, features) in &self.tag_fields {
            let item_tags = tags(item, field);
            match &self.by_id {
                // The user's tags are kept by number: the item's are looked up in the
                // table (a tag without a number is one the user has no sums for).
                Some((numbers, by_id)) => {
                    numbers.each_number(item_tags.iter().map(String::as_str), |id| {
                        if let Ok(k) = by_id.binary_search_by_key(&id, |&(id, _)| id) {
                            add(out, features, by_id[k].1);
                        }
                    })
                }
                None => {
                    for t in item_tags {
                        if let Some(&off) = self.by_tag.get(t.as_str()) {
                            add(out, features, off);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::event::{Event, EventType};
    use crate::features::spec::FeatureSpec;
    use crate::features::state::Target;
    use crate::item::FieldValue;
    use crate::schema::Schema;

    const H: i64 = 3_600_000;

    fn item(n: usize) -> Item {
        let mut fields = BTreeMap::new();
        let mut cats = vec![format!("c{}", n % 7)];
        if n.is_multiple_of(3) {
            cats.push(format!("c{}", (n / 3) % 7));
        }
        fields.insert("category".into(), FieldValue::Tags(cats));
        fields.insert("price".into(), FieldValue::Number(n as f64 / 4.0));
        Item {
            id: format!("i{n}"),
            vector: None,
            fields,
        }
    }

    #[test]
    fn snapshots_give_the_recomputed_values_across_buckets_updates_and_expiry() {
        let specs: BTreeMap<String, FeatureSpec> = serde_json::from_str(
            r#"{"ctr":{"kind":"ctr","window":"1h","buckets":4},
                "item_views_1h":{"kind":"count","entity":"item","event":"view","window":"1h"},
                "item_dwell_2h":{"kind":"sum","entity":"item","event":"dwell","window":"2h","buckets":3},
                "item_last_view":{"kind":"recency","entity":"item","event":"view"},
                "price":{"kind":"field","field":"price"}}"#,
        )
        .unwrap();
        let set = FeatureSet::from_specs(&specs, &Schema::demo(2)).unwrap();
        let items: Vec<Arc<Item>> = (0..6).map(|n| Arc::new(item(n))).collect();
        let mut plain: Vec<EntityState> = vec![EntityState::default(); items.len()];
        let mut cached: Vec<CachedItem> = vec![CachedItem::default(); items.len()];
        let kinds = [EventType::View, EventType::Click, EventType::Dwell];
        let (mut reused, mut recomputed) = (0, 0);
        // Events and reads interleaved every 7 min over 5 h (bucket boundaries every 15
        // and 40 min are crossed between reads), then reads past the TTL.
        for n in 0..60i64 {
            let now = 10 * H + n * 7 * 60_000;
            let k = (n as usize * 5) % items.len();
            if n % 3 != 2 {
                let e = Event {
                    user_id: "u".into(),
                    item_id: items[k].id.clone(),
                    kind: kinds[n as usize % kinds.len()],
                    value: Some(1.25 + (n % 4) as f64),
                    timestamp_ms: now,
                    recommendation_id: None,
                };
                for u in set.event_updates(&e, Some(&*items[k])) {
                    plain[k].apply(&u.key, &u.op, now);
                    cached[k].apply(&u.key, &u.op, now);
                }
                for u in set.impression_updates(now) {
                    plain[(k + 1) % items.len()].apply(&u.key, &u.op, now);
                    cached[(k + 1) % items.len()].apply(&u.key, &u.op, now);
                }
            }
            for read in [now, now + 60_000, now + 3 * 60_000] {
                let view = set.user_view(None, read);
                for (j, it) in items.iter().enumerate() {
                    let had = cached[j].has_snapshot();
                    let before = cached[j].snapshot.clone();
                    let mut got = vec![0.0; set.len()];
                    view.values_into_cached(Some(&mut cached[j]), it, &mut got);
                    let want = set.values(None, Some(&plain[j]), it, read);
                    assert_eq!(got, want, "{} at {read}", it.id);
                    if had && cached[j].snapshot == before {
                        reused += 1;
                    } else {
                        recomputed += 1;
                    }
                }
            }
        }
        // Both paths were taken: snapshots were reused and renewed.
        assert!(reused > 100 && recomputed > 100, "{reused} {recomputed}");
        for late in [10 * H + 8 * H, 10 * H + 40 * H] {
            let view = set.user_view(None, late);
            for (j, it) in items.iter().enumerate() {
                let mut got = vec![0.0; set.len()];
                view.values_into_cached(Some(&mut cached[j]), it, &mut got);
                assert_eq!(got, set.values(None, Some(&plain[j]), it, late), "{late}");
            }
        }
    }

    #[test]
    fn impressions_kept_in_snapshots_give_the_recomputed_values() {
        use rand::rngs::Xoshiro256PlusPlus;
        use rand::{RngExt, SeedableRng};
        let specs: BTreeMap<String, FeatureSpec> = serde_json::from_str(
            r#"{"ctr":{"kind":"ctr","window":"1h","buckets":4},
                "ctr_2h":{"kind":"ctr","window":"2h","buckets":2},
                "item_views_1h":{"kind":"count","entity":"item","event":"view","window":"1h"},
                "item_last_view":{"kind":"recency","entity":"item","event":"view"}}"#,
        )
        .unwrap();
        let set = FeatureSet::from_specs(&specs, &Schema::demo(2)).unwrap();
        let items: Vec<Arc<Item>> = (0..8).map(|n| Arc::new(item(n))).collect();
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(20);
        let (mut kept, mut dropped) = (0, 0);
        for stream in 0..40 {
            let mut plain = vec![EntityState::default(); items.len()];
            let mut cached = vec![CachedItem::default(); items.len()];
            let mut now = 10 * H;
            for _ in 0..300 {
                now += rng.random_range(0..8 * 60_000);
                let k = rng.random_range(0..items.len());
                let updates = match rng.random_range(0..10) {
                    // Events, some late.
                    0..=2 => {
                        let kind = [EventType::View, EventType::Click][rng.random_range(0..2)];
                        let at = now - rng.random_range(0..40 * 60_000);
                        let e = Event {
                            user_id: "u".into(),
                            item_id: items[k].id.clone(),
                            kind,
                            value: None,
                            timestamp_ms: at,
                            recommendation_id: None,
                        };
                        set.event_updates(&e, Some(&*items[k]))
                            .into_iter()
                            .map(|u| (u, at))
                            .collect::<Vec<_>>()
                    }
                    // Impressions: mostly now, some hours old (before the windows), some
                    // ahead of "now" (a later bucket), rarely a fraction.
                    _ => {
                        let at = match rng.random_range(0..10) {
                            0 => now - rng.random_range(0..4 * H),
                            1 => now + rng.random_range(0..30 * 60_000),
                            _ => now,
                        };
                        let mut ups = set.impression_updates(at);
                        if rng.random_range(0..50) == 0
                            && let Op::Add { value, .. } = &mut ups[0].op
                        {
                            *value = 0.5;
                        }
                        ups.into_iter().map(|u| (u, at)).collect()
                    }
                };
                for (u, at) in updates {
                    let had = cached[k].has_snapshot();
                    plain[k].apply(&u.key, &u.op, at);
                    cached[k].apply(&u.key, &u.op, at);
                    if had && u.key.part == 1 {
                        if cached[k].has_snapshot() {
                            kept += 1;
                        } else {
                            dropped += 1;
                        }
                    }
                }
                let read = now + rng.random_range(0..3 * 60_000);
                let view = set.user_view(None, read);
                for (j, it) in items.iter().enumerate() {
                    let mut got = vec![0.0; set.len()];
                    view.values_into_cached(Some(&mut cached[j]), it, &mut got);
                    let want = set.values(None, Some(&plain[j]), it, read);
                    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    assert_eq!(
                        bits(&got),
                        bits(&want),
                        "stream {stream}, {} at {read}",
                        it.id
                    );
                }
            }
        }
        // Both ways were taken: impressions kept in snapshots, and snapshots dropped
        // (a later bucket).
        assert!(kept > 1000 && dropped > 100, "{kept} {dropped}");
    }

    #[test]
    fn numbered_tags_read_what_strings_read_and_follow_a_replaced_item() {
        let specs: BTreeMap<String, FeatureSpec> = serde_json::from_str(
            r#"{"cat_clicks_1h":{"kind":"count","entity":"user_tag","field":"category","event":"click","window":"1h","buckets":4},
                "cat_dwell_1d":{"kind":"sum","entity":"user_tag","field":"category","event":"dwell","window":"1d"},
                "item_views_1h":{"kind":"count","entity":"item","event":"view","window":"1h"},
                "dwell_1h":{"kind":"sum","entity":"user","event":"dwell","window":"1h","buckets":4}}"#,
        )
        .unwrap();
        let set = FeatureSet::from_specs(&specs, &Schema::demo(2)).unwrap();
        let mut items: Vec<Arc<Item>> = (0..21).map(|n| Arc::new(item(n))).collect();
        let mut user = EntityState::default();
        let mut plain = vec![EntityState::default(); items.len()];
        let mut cached = vec![CachedItem::default(); items.len()];
        let kinds = [EventType::Click, EventType::View, EventType::Dwell];
        for n in 0..200usize {
            let k = (n * 13) % items.len();
            let e = Event {
                user_id: "u".into(),
                item_id: items[k].id.clone(),
                kind: kinds[n % kinds.len()],
                value: Some(1.5 + (n % 5) as f64),
                timestamp_ms: 10 * H + (n as i64) * 37_000,
                recommendation_id: None,
            };
            for u in set.event_updates(&e, Some(&*items[k])) {
                match u.target {
                    Target::User => user.apply(&u.key, &u.op, e.timestamp_ms),
                    Target::Item => {
                        plain[k].apply(&u.key, &u.op, e.timestamp_ms);
                        cached[k].apply(&u.key, &u.op, e.timestamp_ms);
                    }
                }
            }
        }
        let numbers = TagIds::default();
        let end = 10 * H + 200 * 37_000;
        let check = |items: &[Arc<Item>], cached: &mut [CachedItem], now: i64| {
            let view = set.user_view_numbered(Some(&user), now, &numbers);
            for (j, it) in items.iter().enumerate() {
                let mut got = vec![0.0; set.len()];
                view.values_into_cached(Some(&mut cached[j]), it, &mut got);
                let want = set.values(Some(&user), Some(&plain[j]), it, now);
                assert_eq!(got, want, "{} at {now}", it.id);
                // Read by number, not by string.
                assert!(
                    cached[j]
                        .tags
                        .as_ref()
                        .is_some_and(|t| t.hold_for(it, view.fingerprint))
                );
            }
        };
        for now in [end, end + H / 2, end + 3 * H] {
            check(&items, &mut cached, now);
        }
        // The catalog replaces every item with one in another category: its numbers are
        // made again (with the old ones the user's sums of the old category would be read).
        for (n, it) in items.iter_mut().enumerate() {
            let mut moved = item(n + 3);
            moved.id = it.id.clone();
            *it = Arc::new(moved);
        }
        check(&items, &mut cached, end);
        // Not vacuous: the user has sums for the categories read.
        let view = set.user_view_numbered(Some(&user), end, &numbers);
        let mut v = vec![0.0; set.len()];
        view.values_into_cached(Some(&mut cached[0]), &items[0], &mut v);
        assert!(v[0] > 0.0 || v[1] > 0.0, "{v:?}");
    }

    #[test]
    fn the_view_reads_exactly_what_values_into_reads() {
        let specs: BTreeMap<String, FeatureSpec> = serde_json::from_str(
            r#"{"cat_clicks_1h":{"kind":"count","entity":"user_tag","field":"category","event":"click","window":"1h","buckets":4},
                "cat_dwell_1d":{"kind":"sum","entity":"user_tag","field":"category","event":"dwell","window":"1d"},
                "ctr":{"kind":"ctr","window":"1h","buckets":4},
                "item_views_1h":{"kind":"count","entity":"item","event":"view","window":"1h"},
                "item_last_view":{"kind":"recency","entity":"item","event":"view"},
                "dwell_1h":{"kind":"sum","entity":"user","event":"dwell","window":"1h","buckets":4},
                "last_click":{"kind":"recency","entity":"user","event":"click"},
                "price":{"kind":"field","field":"price"}}"#,
        )
        .unwrap();
        let set = FeatureSet::from_specs(&specs, &Schema::demo(2)).unwrap();
        let items: Vec<Item> = (0..40).map(item).collect();
        let mut user = EntityState::default();
        let mut states: HashMap<String, EntityState> = HashMap::new();
        let kinds = [
            EventType::Click,
            EventType::View,
            EventType::Dwell,
            EventType::View,
        ];
        for n in 0..300usize {
            let it = &items[(n * 13) % items.len()];
            let e = Event {
                user_id: "u".into(),
                item_id: it.id.clone(),
                kind: kinds[n % kinds.len()],
                value: Some(1.5 + (n % 5) as f64),
                timestamp_ms: 10 * H + (n as i64) * 37_000,
                recommendation_id: None,
            };
            for u in set.event_updates(&e, Some(it)) {
                match u.target {
                    Target::User => user.apply(&u.key, &u.op, e.timestamp_ms),
                    Target::Item => states.entry(it.id.clone()).or_default().apply(
                        &u.key,
                        &u.op,
                        e.timestamp_ms,
                    ),
                }
            }
        }
        let end = 10 * H + 300 * 37_000;
        // Inside the windows, half out, and past the TTL; with and without the user; the
        // user's tags by string and by number (an item's tags then looked up by number).
        let numbers = TagIds::default();
        for now in [end, end + H / 2, end + 2 * H, end + 30 * H] {
            for (u, numbered) in [(Some(&user), false), (None, false), (Some(&user), true)] {
                let view = match numbered {
                    true => set.user_view_numbered(u, now, &numbers),
                    false => set.user_view(u, now),
                };
                let mut got = vec![0.0; set.len()];
                for it in &items {
                    let state = states.get(&it.id);
                    view.values_into(state, it, &mut got);
                    let want = set.values(u, state, it, now);
                    assert_eq!(got, want, "{} at {now}", it.id);
                }
            }
        }
        // Some candidates carry state the view must combine: not a vacuous comparison.
        let view = set.user_view(Some(&user), end);
        let mut v = vec![0.0; set.len()];
        view.values_into(states.get("i0"), &items[0], &mut v);
        assert!(v[0] > 0.0 && v[1] > 0.0, "{v:?}");
    }
}
