//! Interactions: raw events with string ids → dense indices, confidence inputs and a CSR matrix.
//!
//! A raw [`Interaction`] is what a file or the event log holds: external user and item ids,
//! the [`EventType`] (recd-core's, the API's), an optional value (rating stars or dwell seconds) and a timestamp.
//! [`Interactions::from_raw`] maps ids to dense `u32` indices ([`IdMap`]) and turns each
//! event into a *confidence input* `w ≥ 0` with recd-core's [`EventWeights`] (the
//! serving side's definition, [`ConfidenceWeights`] here). Negative feedback is no
//! interaction: a `dislike` or `hide` of an item drops every event of that user–item
//! pair, before or after it (the user said no; a click that preceded it is not a
//! preference, and the item is never shown to them again anyway), and a `skip` (weight
//! ≤ 0) is dropped like any event without positive weight. Models see the
//! user × item matrix of summed `w` ([`Interactions::user_item_matrix`]); implicit ALS then
//! uses the confidence `c = 1 + alpha · w` of Hu, Koren & Volinsky.

use std::collections::HashMap;
use std::sync::Arc;

use recd_core::{EventType, EventWeights};
use serde::{Deserialize, Serialize};

/// One raw event with external ids, as read from a file or the event log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Interaction {
    /// External user id.
    pub user: String,
    /// External item id.
    pub item: String,
    /// Event type.
    pub kind: EventType,
    /// Stars for `rating`, seconds for `dwell`, otherwise unused.
    pub value: Option<f64>,
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
}

/// How an event becomes a confidence input `w` (ALS uses `c = 1 + alpha · w`): recd-core's
/// [`EventWeights`], the one definition the serving side (session vectors, popularity)
/// uses too, so that offline and online learning weigh an event alike. The old name stays
/// for callers that used it.
pub type ConfidenceWeights = EventWeights;

/// Why a data set may teach nothing under `weights`: the kinds of positive event whose
/// every occurrence weighs 0 (ratings all at or below `rating_neutral`, dwell events all of
/// 0 seconds, a kind whose weight is configured 0), as one warning line, or `None`.
/// `recd train` and `recd eval` print it and log it (`tracing::warn!`).
pub fn neutral_warning(raw: &[Interaction], weights: &EventWeights) -> Option<String> {
    let mut seen: HashMap<EventType, (usize, usize)> = HashMap::new();
    for ev in raw {
        if ev.kind.is_rejection() || ev.kind == EventType::Skip {
            continue;
        }
        let e = seen.entry(ev.kind).or_default();
        e.0 += 1;
        if weights.weight(ev.kind, ev.value) <= 0.0 {
            e.1 += 1;
        }
    }
    let mut neutral: Vec<String> = EventType::ALL
        .into_iter()
        .filter_map(|k| match seen.get(&k) {
            Some(&(n, zero)) if n > 0 && zero == n => Some(format!("all {n} {k} events")),
            _ => None,
        })
        .collect();
    if neutral.is_empty() {
        return None;
    }
    let every = seen.values().all(|&(n, zero)| n == zero);
    let last = neutral.pop().unwrap_or_default();
    let list = if neutral.is_empty() {
        last
    } else {
        format!("{} and {last}", neutral.join(", "))
    };
    Some(format!(
        "{list} weigh 0 under the event weights (rating_neutral {}, dwell_per_second {}){}: \
         they teach neither training nor the real-time model; check the values \
         (ratings are 0.5 to 5 stars) or [model.session.weights]",
        weights.rating_neutral,
        weights.dwell_per_second,
        if every { ", which is every event" } else { "" }
    ))
}

/// A bijection between external string ids and dense `u32` indices (in first-seen order).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IdMap {
    ids: Vec<String>,
    index: HashMap<String, u32>,
}

impl IdMap {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// The index of `id`, inserting it if new.
    pub fn get_or_insert(&mut self, id: &str) -> u32 {
        if let Some(&i) = self.index.get(id) {
            return i;
        }
        let i = self.ids.len() as u32;
        self.ids.push(id.to_owned());
        self.index.insert(id.to_owned(), i);
        i
    }

    /// The index of `id`, if known.
    pub fn get(&self, id: &str) -> Option<u32> {
        self.index.get(id).copied()
    }

    /// The external id of index `i`, if in range.
    pub fn id(&self, i: u32) -> Option<&str> {
        self.ids.get(i as usize).map(String::as_str)
    }

    /// All external ids, by index.
    pub fn ids(&self) -> &[String] {
        &self.ids
    }

    /// Number of ids.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True when no id is known.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

impl FromIterator<String> for IdMap {
    fn from_iter<T: IntoIterator<Item = String>>(iter: T) -> Self {
        let mut m = IdMap::new();
        for id in iter {
            m.get_or_insert(&id);
        }
        m
    }
}

/// Events with dense indices, column-wise. Splits share the id maps (`Arc`), so an index
/// means the same user or item in the train and test halves.
#[derive(Debug, Clone)]
pub struct Interactions {
    /// User index of each event.
    pub users: Vec<u32>,
    /// Item index of each event.
    pub items: Vec<u32>,
    /// Confidence input `w > 0` of each event.
    pub weights: Vec<f32>,
    /// Timestamp (ms since the epoch) of each event.
    pub timestamps: Vec<i64>,
    user_ids: Arc<IdMap>,
    item_ids: Arc<IdMap>,
}

impl Interactions {
    /// Map raw events to indices and confidence inputs. Events whose weight is not
    /// positive and finite (e.g. a rating at or below `rating_neutral`, a skip) and every
    /// event of a pair the user disliked or hid are dropped; the second value counts
    /// them. Ids are registered only for kept events.
    pub fn from_raw<I>(raw: I, weights: &ConfidenceWeights) -> (Self, usize)
    where
        I: IntoIterator<Item = Interaction>,
    {
        Self::from_raw_with_items(raw, weights, IdMap::new())
    }

    /// Like [`Interactions::from_raw`], but starting from a known catalog: every item in
    /// `items` is part of the catalog (coverage counts it) even without events.
    pub fn from_raw_with_items<I>(
        raw: I,
        weights: &ConfidenceWeights,
        items: IdMap,
    ) -> (Self, usize)
    where
        I: IntoIterator<Item = Interaction>,
    {
        let raw: Vec<Interaction> = raw.into_iter().collect();
        let (data, _kept, skipped) = Self::from_raw_positions(&raw, weights, items);
        (data, skipped)
    }

    /// Like [`Interactions::from_raw_with_items`], also returning the position in `raw` of
    /// each kept event (event `e` is `raw[kept[e]]`).
    pub fn from_raw_positions(
        raw: &[Interaction],
        weights: &ConfidenceWeights,
        items: IdMap,
    ) -> (Self, Vec<usize>, usize) {
        let rejected: std::collections::HashSet<(&str, &str)> = raw
            .iter()
            .filter(|ev| ev.kind.is_rejection())
            .map(|ev| (ev.user.as_str(), ev.item.as_str()))
            .collect();
        let mut user_ids = IdMap::new();
        let mut item_ids = items;
        let mut out = Self::empty(Arc::new(IdMap::new()), Arc::new(IdMap::new()));
        let mut skipped = 0;
        let mut kept = Vec::new();
        for (pos, ev) in raw.iter().enumerate() {
            let w = weights.weight(ev.kind, ev.value) as f32;
            if !(w.is_finite() && w > 0.0)
                || (!rejected.is_empty()
                    && rejected.contains(&(ev.user.as_str(), ev.item.as_str())))
            {
                skipped += 1;
                continue;
            }
            kept.push(pos);
            out.users.push(user_ids.get_or_insert(&ev.user));
            out.items.push(item_ids.get_or_insert(&ev.item));
            out.weights.push(w);
            out.timestamps.push(ev.timestamp_ms);
        }
        out.user_ids = Arc::new(user_ids);
        out.item_ids = Arc::new(item_ids);
        (out, kept, skipped)
    }

    /// No events, with the given id maps.
    pub fn empty(user_ids: Arc<IdMap>, item_ids: Arc<IdMap>) -> Self {
        Self {
            users: Vec::new(),
            items: Vec::new(),
            weights: Vec::new(),
            timestamps: Vec::new(),
            user_ids,
            item_ids,
        }
    }

    /// Build from columns (tests, or callers that have their own indices).
    ///
    /// # Panics
    /// If the columns differ in length or an index is out of range of its map: a
    /// programming error, not an input error.
    pub fn from_parts(
        users: Vec<u32>,
        items: Vec<u32>,
        weights: Vec<f32>,
        timestamps: Vec<i64>,
        user_ids: Arc<IdMap>,
        item_ids: Arc<IdMap>,
    ) -> Self {
        assert!(
            users.len() == items.len()
                && items.len() == weights.len()
                && weights.len() == timestamps.len(),
            "column lengths differ"
        );
        assert!(
            users.iter().all(|&u| (u as usize) < user_ids.len()),
            "user index out of range"
        );
        assert!(
            items.iter().all(|&i| (i as usize) < item_ids.len()),
            "item index out of range"
        );
        Self {
            users,
            items,
            weights,
            timestamps,
            user_ids,
            item_ids,
        }
    }

    /// A synthetic data set for tests: users and items named by their index.
    pub fn from_indices(n_users: usize, n_items: usize, events: &[(u32, u32, f32, i64)]) -> Self {
        let user_ids: IdMap = (0..n_users).map(|u| format!("u{u}")).collect();
        let item_ids: IdMap = (0..n_items).map(|i| format!("i{i}")).collect();
        Self::from_parts(
            events.iter().map(|e| e.0).collect(),
            events.iter().map(|e| e.1).collect(),
            events.iter().map(|e| e.2).collect(),
            events.iter().map(|e| e.3).collect(),
            Arc::new(user_ids),
            Arc::new(item_ids),
        )
    }

    /// The events at positions `idx`, sharing this set's id maps.
    pub fn subset(&self, idx: &[usize]) -> Self {
        Self {
            users: idx.iter().map(|&i| self.users[i]).collect(),
            items: idx.iter().map(|&i| self.items[i]).collect(),
            weights: idx.iter().map(|&i| self.weights[i]).collect(),
            timestamps: idx.iter().map(|&i| self.timestamps[i]).collect(),
            user_ids: Arc::clone(&self.user_ids),
            item_ids: Arc::clone(&self.item_ids),
        }
    }

    /// Number of events.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// True when there are no events.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Number of known users (the id map's size, not only those with events here).
    pub fn n_users(&self) -> usize {
        self.user_ids.len()
    }

    /// Number of known items: the catalog.
    pub fn n_items(&self) -> usize {
        self.item_ids.len()
    }

    /// User id map.
    pub fn user_ids(&self) -> &Arc<IdMap> {
        &self.user_ids
    }

    /// Item id map.
    pub fn item_ids(&self) -> &Arc<IdMap> {
        &self.item_ids
    }

    /// The `n_users × n_items` matrix of summed confidence inputs `w`.
    pub fn user_item_matrix(&self) -> Csr {
        Csr::from_triplets(
            self.n_users(),
            self.n_items(),
            self.users
                .iter()
                .zip(&self.items)
                .zip(&self.weights)
                .map(|((&u, &i), &w)| (u, i, w)),
        )
    }

    /// For each user, the sorted distinct items they interacted with.
    pub fn items_by_user(&self) -> Vec<Vec<u32>> {
        let mut by_user = vec![Vec::new(); self.n_users()];
        for (&u, &i) in self.users.iter().zip(&self.items) {
            by_user[u as usize].push(i);
        }
        for v in &mut by_user {
            v.sort_unstable();
            v.dedup();
        }
        by_user
    }

    /// For each item, the number of distinct users who interacted with it.
    pub fn item_user_counts(&self) -> Vec<u32> {
        let m = self.user_item_matrix();
        let mut counts = vec![0u32; self.n_items()];
        for &i in &m.indices {
            counts[i as usize] += 1;
        }
        counts
    }
}

/// A compressed sparse row matrix with `f32` values and sorted, distinct column indices.
#[derive(Debug, Clone, PartialEq)]
pub struct Csr {
    /// Number of rows.
    pub rows: usize,
    /// Number of columns.
    pub cols: usize,
    /// Row `r` is `indices[indptr[r]..indptr[r + 1]]`.
    pub indptr: Vec<usize>,
    /// Column index of each stored value.
    pub indices: Vec<u32>,
    /// The stored values.
    pub data: Vec<f32>,
}

impl Csr {
    /// Build from `(row, col, value)` triplets; duplicates are summed.
    ///
    /// # Panics
    /// If a row or column index is out of range (a programming error).
    pub fn from_triplets(
        rows: usize,
        cols: usize,
        triplets: impl IntoIterator<Item = (u32, u32, f32)>,
    ) -> Self {
        let mut t: Vec<(u32, u32, f32)> = triplets.into_iter().collect();
        t.sort_unstable_by_key(|&(r, c, _)| (r, c));
        let mut indptr = vec![0usize; rows + 1];
        let mut indices = Vec::with_capacity(t.len());
        let mut data: Vec<f32> = Vec::with_capacity(t.len());
        let mut last: Option<(u32, u32)> = None;
        for (r, c, v) in t {
            assert!(
                (r as usize) < rows && (c as usize) < cols,
                "triplet out of range"
            );
            if last == Some((r, c)) {
                if let Some(d) = data.last_mut() {
                    *d += v;
                }
                continue;
            }
            last = Some((r, c));
            indptr[r as usize + 1] += 1;
            indices.push(c);
            data.push(v);
        }
        for r in 0..rows {
            indptr[r + 1] += indptr[r];
        }
        Self {
            rows,
            cols,
            indptr,
            indices,
            data,
        }
    }

    /// Number of stored values.
    pub fn nnz(&self) -> usize {
        self.indices.len()
    }

    /// Column indices and values of row `r`.
    pub fn row(&self, r: usize) -> (&[u32], &[f32]) {
        let (a, b) = (self.indptr[r], self.indptr[r + 1]);
        (&self.indices[a..b], &self.data[a..b])
    }

    /// The transpose (again with sorted indices).
    pub fn transpose(&self) -> Csr {
        let mut indptr = vec![0usize; self.cols + 1];
        for &c in &self.indices {
            indptr[c as usize + 1] += 1;
        }
        for c in 0..self.cols {
            indptr[c + 1] += indptr[c];
        }
        let mut next = indptr.clone();
        let mut indices = vec![0u32; self.nnz()];
        let mut data = vec![0f32; self.nnz()];
        for r in 0..self.rows {
            let (cols, vals) = self.row(r);
            for (&c, &v) in cols.iter().zip(vals) {
                let slot = &mut next[c as usize];
                indices[*slot] = r as u32;
                data[*slot] = v;
                *slot += 1;
            }
        }
        Csr {
            rows: self.cols,
            cols: self.rows,
            indptr,
            indices,
            data,
        }
    }

    /// A copy with every value mapped through `f` (e.g. `w ↦ 1 + alpha·w`).
    pub fn map_values(&self, f: impl Fn(f32) -> f32) -> Csr {
        Csr {
            data: self.data.iter().map(|&v| f(v)).collect(),
            ..self.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(user: &str, item: &str, kind: EventType, value: Option<f64>) -> Interaction {
        Interaction {
            user: user.into(),
            item: item.into(),
            kind,
            value,
            timestamp_ms: 0,
        }
    }

    #[test]
    fn training_takes_the_weights_serving_takes() {
        // The confidence input of every kind of event is exactly the weight the session
        // vector and popularity use (`EventWeights::weight`), for defaults and a config.
        let configs = [
            EventWeights::default(),
            EventWeights {
                rating_neutral: 2.5,
                purchase: 20.0,
                dwell_per_second: 0.2,
                ..EventWeights::default()
            },
        ];
        for w in configs {
            for kind in EventType::ALL {
                for value in [None, Some(0.5), Some(3.0), Some(5.0), Some(90.0)] {
                    let serving = w.weight(kind, value);
                    let (data, skipped) = Interactions::from_raw([ev("u", "i", kind, value)], &w);
                    if serving > 0.0 {
                        assert_eq!(data.weights, [serving as f32], "{kind} {value:?}");
                    } else {
                        assert_eq!((data.len(), skipped), (0, 1), "{kind} {value:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_dislike_or_hide_takes_the_pair_out_of_training() {
        let w = EventWeights::default();
        let raw = vec![
            ev("a", "x", EventType::Click, None),
            ev("a", "y", EventType::Click, None),
            ev("a", "x", EventType::Dislike, None),
            ev("b", "x", EventType::Purchase, None),
            ev("b", "y", EventType::Hide, None),
            ev("b", "y", EventType::View, None),
            ev("b", "z", EventType::Skip, None),
        ];
        let (data, skipped) = Interactions::from_raw(raw, &w);
        let pairs: Vec<(&str, &str)> = (0..data.len())
            .map(|e| {
                (
                    data.user_ids().id(data.users[e]).unwrap(),
                    data.item_ids().id(data.items[e]).unwrap(),
                )
            })
            .collect();
        // a's click on x before the dislike, b's view of y after the hide: gone
        assert_eq!(pairs, [("a", "y"), ("b", "x")]);
        assert_eq!(skipped, 5);
    }

    #[test]
    fn a_data_set_that_weighs_nothing_is_named() {
        let w = EventWeights {
            rating_neutral: 2.5,
            ..EventWeights::default()
        };
        let ratings: Vec<Interaction> = (0..4)
            .map(|i| ev(&format!("u{i}"), "x", EventType::Rating, Some(1.0)))
            .collect();
        let msg = neutral_warning(&ratings, &w).unwrap();
        assert!(msg.contains("all 4 rating events weigh 0"), "{msg}");
        assert!(msg.contains("which is every event"), "{msg}");
        // the default weights count every rating
        assert_eq!(neutral_warning(&ratings, &EventWeights::default()), None);
        // a kind that is all neutral is named even when others teach something
        let mut mixed = ratings.clone();
        mixed.push(ev("u0", "y", EventType::View, None));
        let msg = neutral_warning(&mixed, &w).unwrap();
        assert!(
            msg.contains("rating") && !msg.contains("every event"),
            "{msg}"
        );
        // one positive rating is enough; negatives never count as neutral positives
        let mut some = ratings;
        some.push(ev("u9", "x", EventType::Rating, Some(4.0)));
        some.push(ev("u9", "x", EventType::Dislike, None));
        assert_eq!(neutral_warning(&some, &w), None);
    }

    #[test]
    fn from_raw_maps_ids_and_drops_non_positive() {
        let shifted = EventWeights {
            rating_neutral: 2.5,
            ..Default::default()
        };
        let raw = vec![
            ev("a", "x", EventType::View, None),
            ev("b", "y", EventType::Rating, Some(1.0)),
            ev("b", "x", EventType::Purchase, None),
            ev("a", "x", EventType::Click, None),
        ];
        let (it, skipped) = Interactions::from_raw(raw, &shifted);
        assert_eq!(skipped, 1);
        assert_eq!(it.len(), 3);
        assert_eq!(it.n_users(), 2);
        assert_eq!(it.n_items(), 1, "y only had a dropped event");
        assert_eq!(it.user_ids().get("b"), Some(1));
        assert_eq!(it.item_ids().id(0), Some("x"));
        let m = it.user_item_matrix();
        assert_eq!(
            m.row(0),
            (&[0u32][..], &[3.0f32][..]),
            "view + click summed"
        );
        assert_eq!(m.row(1), (&[0u32][..], &[8.0f32][..]));
    }

    #[test]
    fn csr_sums_duplicates_and_transposes() {
        let m = Csr::from_triplets(2, 3, [(1, 2, 1.0), (0, 1, 2.0), (1, 0, 3.0), (1, 2, 0.5)]);
        assert_eq!(m.indptr, vec![0, 1, 3]);
        assert_eq!(m.indices, vec![1, 0, 2]);
        assert_eq!(m.data, vec![2.0, 3.0, 1.5]);
        let t = m.transpose();
        assert_eq!((t.rows, t.cols), (3, 2));
        assert_eq!(t.row(0), (&[1u32][..], &[3.0f32][..]));
        assert_eq!(t.row(1), (&[0u32][..], &[2.0f32][..]));
        assert_eq!(t.row(2), (&[1u32][..], &[1.5f32][..]));
        assert_eq!(t.transpose(), m);
    }

    #[test]
    fn items_by_user_are_sorted_and_distinct() {
        let it = Interactions::from_indices(
            2,
            3,
            &[
                (0, 2, 1.0, 0),
                (0, 1, 1.0, 1),
                (0, 2, 1.0, 2),
                (1, 0, 1.0, 3),
            ],
        );
        assert_eq!(it.items_by_user(), vec![vec![1, 2], vec![0]]);
        assert_eq!(it.item_user_counts(), vec![1, 1, 1]);
    }
}
