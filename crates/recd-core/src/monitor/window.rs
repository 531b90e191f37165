//! A sliding time window cut into buckets, and catalog coverage and exposure concentration
//! over it.
//!
//! [`SlidingWindow`] is a ring of `buckets` slots of `bucket_ms` each (by default 60 of one
//! minute: the last hour). A time t belongs to bucket ⌊t / bucket_ms⌋; the window holds the
//! newest bucket seen (its *head*) and the `buckets − 1` before it, so it spans between
//! (buckets − 1)·bucket_ms and buckets·bucket_ms of time. [`advance`](SlidingWindow::advance)
//! moves the head to `now`, clearing the buckets that fell out; an [`add`](SlidingWindow::add)
//! newer than the head advances it too, one older than the window is dropped. Time never goes
//! back: an `advance` to an earlier time does nothing. Callers pass the server's clock, not a
//! client's timestamps (a far-future time would empty the window). Memory is `buckets` times
//! a bucket's, fixed.
//!
//! [`ExposureWindow`] counts item impressions (each item of each served list) and answers:
//! - **catalog coverage** = distinct items recommended in the window / catalog size. Distinct
//!   items are counted by a [`HyperLogLog`] per bucket, merged (register max) over the window:
//!   relative standard error ≈ 1.6 % (±4.9 % at 3σ), near exact for small counts; 4 KiB a
//!   bucket.
//! - **exposure Gini** over the catalog's impression counts (items never shown count as 0).
//!   Exact counts of every item would grow with the catalog, so each bucket keeps two small
//!   summaries keyed by the item id's hash, merged over the window at query time:
//!   - a [`SpaceSaving`] summary of `top_k` counters: the most exposed items (the *head*),
//!     with counts that are exact until the bucket sees more than `top_k` distinct items,
//!     and within the bucket's smallest counter after that;
//!   - a [`BottomK`] sample of `sample_k` distinct items with their exact counts: a uniform
//!     sample of the items (not of the impressions), exact until the bucket sees more than
//!     `sample_k` distinct items.
//!
//!   If either summary never had to leave an item out in any bucket, it holds every item of
//!   the window with its exact count and the Gini is **exact**. Otherwise it is estimated:
//!   the head is the space-saving items whose guaranteed count (count − error, summed over
//!   buckets) exceeds what an item untracked everywhere could have had (the sum of the
//!   buckets' smallest counters), taken at that count; the other distinct items (their number
//!   from the HyperLogLog) get the shape of the sample's non-head items, scaled to the
//!   impressions the head leaves; the rest of the catalog is at 0. The head keeps a few very
//!   exposed items from being missed by the sample (a sample alone would miss one item with
//!   half the impressions), and the sample keeps the bulk's shape (space-saving alone
//!   distorts the tail). [`GiniEstimate::exact`] says which case holds; in the tests a
//!   Zipf-like window of 2 000 items with 64/256-entry summaries lands within 0.02 of the
//!   truth.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::bottomk::BottomK;
use super::hll::HyperLogLog;
use super::key_hash;
use super::quality::gini_weighted;
use super::topk::SpaceSaving;
use crate::error::ValidationError;

/// The most buckets a window may have.
pub const MAX_BUCKETS: usize = 10_000;

/// How a window is cut: `buckets` buckets of `bucket_ms` milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WindowSpec {
    /// Length of one bucket in ms (≥ 1).
    pub bucket_ms: u64,
    /// Number of buckets (1..=[`MAX_BUCKETS`]).
    pub buckets: usize,
}

impl Default for WindowSpec {
    /// 60 buckets of one minute: the last hour.
    fn default() -> Self {
        Self {
            bucket_ms: 60_000,
            buckets: 60,
        }
    }
}

impl WindowSpec {
    /// Checks the bounds.
    pub fn validate(&self) -> Result<(), ValidationError> {
        if self.bucket_ms == 0 || i64::try_from(self.bucket_ms).is_err() {
            return crate::invalid!(
                "bucket_ms must be in 1..={}, got {}",
                i64::MAX,
                self.bucket_ms
            );
        }
        if self.buckets == 0 || self.buckets > MAX_BUCKETS {
            return crate::invalid!("buckets must be in 1..={MAX_BUCKETS}, got {}", self.buckets);
        }
        Ok(())
    }

    /// The longest time the window spans, buckets · bucket_ms.
    pub fn span_ms(&self) -> u64 {
        self.bucket_ms.saturating_mul(self.buckets as u64)
    }
}

/// What one time bucket accumulates.
pub trait Bucket {
    /// What is added (e.g. `str` for an item id).
    type Key: ?Sized;
    /// Records one occurrence of `key`.
    fn add(&mut self, key: &Self::Key);
    /// Empties the bucket for reuse.
    fn clear(&mut self);
}

/// A plain count of occurrences (the key is ignored).
impl Bucket for u64 {
    type Key = ();
    fn add(&mut self, _: &()) {
        *self = self.saturating_add(1);
    }
    fn clear(&mut self) {
        *self = 0;
    }
}

/// A ring of time buckets; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct SlidingWindow<B> {
    bucket_ms: i64,
    /// Each slot's bucket number ⌊t / bucket_ms⌋, `None` while empty.
    epochs: Vec<Option<i64>>,
    slots: Vec<B>,
    head: Option<i64>,
}

impl<B: Bucket> SlidingWindow<B> {
    /// An empty window, each bucket made by `make`.
    pub fn new(spec: WindowSpec, make: impl FnMut() -> B) -> Result<Self, ValidationError> {
        spec.validate()?;
        let bucket_ms = i64::try_from(spec.bucket_ms)
            .map_err(|_| ValidationError::new("bucket_ms is too large"))?;
        Ok(Self {
            bucket_ms,
            epochs: vec![None; spec.buckets],
            slots: std::iter::repeat_with(make).take(spec.buckets).collect(),
            head: None,
        })
    }

    fn epoch(&self, t_ms: i64) -> i64 {
        t_ms.div_euclid(self.bucket_ms)
    }

    fn slot(&self, epoch: i64) -> usize {
        // rem_euclid of a positive length is in 0..len
        epoch.rem_euclid(self.slots.len() as i64) as usize
    }

    /// Records `key` at `t_ms`; `false` (and nothing recorded) when `t_ms` is older than the
    /// window. A time newer than the head advances the window to it first.
    pub fn add(&mut self, t_ms: i64, key: &B::Key) -> bool {
        let e = self.epoch(t_ms);
        match self.head {
            Some(h) if e <= h => {
                if e <= h.saturating_sub(self.slots.len() as i64) {
                    return false;
                }
            }
            _ => self.advance(t_ms),
        }
        let s = self.slot(e);
        if let (Some(epoch), Some(bucket)) = (self.epochs.get_mut(s), self.slots.get_mut(s)) {
            if *epoch != Some(e) {
                bucket.clear();
                *epoch = Some(e);
            }
            bucket.add(key);
        }
        true
    }

    /// Moves the window's head to `now_ms`, clearing the buckets that fall out of it.
    pub fn advance(&mut self, now_ms: i64) {
        let e = self.epoch(now_ms);
        if self.head.is_some_and(|h| e <= h) {
            return;
        }
        let oldest_kept = e.saturating_sub(self.slots.len() as i64 - 1);
        for (epoch, bucket) in self.epochs.iter_mut().zip(&mut self.slots) {
            if epoch.is_some_and(|x| x < oldest_kept) {
                bucket.clear();
                *epoch = None;
            }
        }
        self.head = Some(e);
    }

    /// The buckets in the window, oldest first, each with its start time in ms.
    pub fn buckets(&self) -> impl Iterator<Item = (i64, &B)> + '_ {
        let mut live: Vec<(i64, &B)> = self
            .epochs
            .iter()
            .zip(&self.slots)
            .filter_map(|(e, b)| e.map(|e| (e, b)))
            .collect();
        live.sort_by_key(|&(e, _)| e);
        live.into_iter()
            .map(|(e, b)| (e.saturating_mul(self.bucket_ms), b))
    }

    /// The start time in ms of the head bucket, `None` before the first `add` or `advance`.
    pub fn head_ms(&self) -> Option<i64> {
        self.head.map(|h| h.saturating_mul(self.bucket_ms))
    }

    /// Empties every bucket (the head stays).
    pub fn clear(&mut self) {
        for (epoch, bucket) in self.epochs.iter_mut().zip(&mut self.slots) {
            bucket.clear();
            *epoch = None;
        }
    }
}

/// Settings of an [`ExposureWindow`]'s buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExposureParams {
    /// Space-saving counters per bucket: the most exposed items (default 256).
    pub top_k: usize,
    /// Items sampled per bucket, with exact counts (default 1024).
    pub sample_k: usize,
}

impl Default for ExposureParams {
    fn default() -> Self {
        Self {
            top_k: 256,
            sample_k: 1024,
        }
    }
}

/// One bucket of an [`ExposureWindow`].
#[derive(Debug, Clone)]
pub struct ExposureBucket {
    /// Impressions recorded.
    pub impressions: u64,
    /// The distinct items.
    pub distinct: HyperLogLog,
    /// The most exposed items (by [`key_hash`] of the id).
    pub top: SpaceSaving,
    /// A uniform sample of the distinct items with exact counts (by [`key_hash`]).
    pub sample: BottomK,
}

impl ExposureBucket {
    /// An empty bucket.
    pub fn new(params: ExposureParams) -> Result<Self, ValidationError> {
        Ok(Self {
            impressions: 0,
            distinct: HyperLogLog::new(),
            top: SpaceSaving::new(params.top_k)?,
            sample: BottomK::new(params.sample_k)?,
        })
    }
}

impl Bucket for ExposureBucket {
    /// The item id's [`key_hash`].
    type Key = u64;
    fn add(&mut self, &h: &u64) {
        self.impressions = self.impressions.saturating_add(1);
        self.distinct.insert_hash(h);
        self.top.insert(h);
        self.sample.insert(h);
    }
    fn clear(&mut self) {
        self.impressions = 0;
        self.distinct.clear();
        self.top.clear();
        self.sample.clear();
    }
}

/// The exposure counts of a window at one moment; see [`ExposureWindow::snapshot`].
#[derive(Debug, Clone, Default)]
pub struct ExposureSnapshot {
    counts: HashMap<u64, u64, foldhash::fast::FixedState>,
    impressions: u64,
}

impl ExposureSnapshot {
    /// How often `item_id` was shown (as [`ExposureWindow::exposure_count`] said then).
    pub fn count(&self, item_id: &str) -> u64 {
        self.counts
            .get(&key_hash(item_id.as_bytes()))
            .copied()
            .unwrap_or(0)
    }

    /// Impressions in the window then.
    pub fn impressions(&self) -> u64 {
        self.impressions
    }

    /// Items with a count.
    pub fn len(&self) -> usize {
        self.counts.len()
    }

    /// Whether no item has a count.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }
}

/// A Gini coefficient over a window and whether it is exact.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct GiniEstimate {
    /// The Gini coefficient in [0, 1).
    pub gini: f64,
    /// Whether every item's count in the window was known exactly.
    pub exact: bool,
}

/// Item impressions over a sliding window: coverage and exposure Gini; see the
/// [module docs](self). Memory: `buckets` × (4 KiB + about 64 bytes × `top_k` + about
/// 40 bytes × `sample_k`), about 3 MiB with the defaults (60 buckets, 256, 1024).
#[derive(Debug, Clone)]
pub struct ExposureWindow {
    window: SlidingWindow<ExposureBucket>,
}

impl ExposureWindow {
    /// An empty window.
    pub fn new(spec: WindowSpec, params: ExposureParams) -> Result<Self, ValidationError> {
        let proto = ExposureBucket::new(params)?;
        Ok(Self {
            window: SlidingWindow::new(spec, || proto.clone())?,
        })
    }

    /// Records one impression of `item_id` at `t_ms`; `false` when older than the window.
    pub fn add(&mut self, t_ms: i64, item_id: &str) -> bool {
        self.window.add(t_ms, &key_hash(item_id.as_bytes()))
    }

    /// Records an impression of each item of a served list.
    pub fn add_list<'a>(&mut self, t_ms: i64, item_ids: impl IntoIterator<Item = &'a str>) {
        self.add_hashes(t_ms, item_ids.into_iter().map(|id| key_hash(id.as_bytes())));
    }

    /// Records an impression of each item of a served list, given by the [`key_hash`] of
    /// its id (hashed where the ids are at hand, e.g. while the list is served).
    pub fn add_hashes(&mut self, t_ms: i64, hashes: impl IntoIterator<Item = u64>) {
        for h in hashes {
            if !self.window.add(t_ms, &h) {
                return;
            }
        }
    }

    /// Moves the window to `now_ms`.
    pub fn advance(&mut self, now_ms: i64) {
        self.window.advance(now_ms);
    }

    /// The underlying window, for per-bucket views.
    pub fn window(&self) -> &SlidingWindow<ExposureBucket> {
        &self.window
    }

    /// Impressions in the window.
    pub fn impressions(&self) -> u64 {
        self.window
            .buckets()
            .fold(0u64, |a, (_, b)| a.saturating_add(b.impressions))
    }

    /// How often `item_id` was shown in the window, estimated per bucket: its space-saving
    /// count when it is among the bucket's most exposed items, else its exact count when it
    /// is in the bucket's sample, else 0 (a rarely shown item outside both: its exposure is
    /// underestimated, so its novelty overestimated, by at most the bucket's smallest
    /// top-k counter).
    pub fn exposure_count(&self, item_id: &str) -> u64 {
        let h = key_hash(item_id.as_bytes());
        self.window.buckets().fold(0u64, |total, (_, b)| {
            let c = match b.top.count(h) {
                0 => b.sample.count(h).unwrap_or(0),
                c => c,
            };
            total.saturating_add(c)
        })
    }

    /// Every tracked item's [`exposure_count`](Self::exposure_count) at once, with the
    /// window's impressions: what novelty is measured against on the request path, where
    /// looking each item up in every bucket would cost a hash lookup per bucket per item.
    /// Cost: one pass over the buckets' summaries (at most `buckets` × (`top_k` +
    /// `sample_k`) entries).
    pub fn snapshot(&self) -> ExposureSnapshot {
        let mut counts: HashMap<u64, u64, foldhash::fast::FixedState> =
            HashMap::with_hasher(foldhash::fast::FixedState::default());
        let mut impressions = 0u64;
        for (_, b) in self.window.buckets() {
            impressions = impressions.saturating_add(b.impressions);
            // Per bucket: the space-saving count when tracked there, else the sample's.
            for c in b.top.counters() {
                let e = counts.entry(c.key).or_insert(0);
                *e = e.saturating_add(c.count);
            }
            for (k, c) in b.sample.iter() {
                if b.top.count(k) == 0 {
                    let e = counts.entry(k).or_insert(0);
                    *e = e.saturating_add(c);
                }
            }
        }
        ExposureSnapshot {
            counts,
            impressions,
        }
    }

    /// The estimated number of distinct items in the window.
    pub fn distinct_items(&self) -> f64 {
        let mut all = HyperLogLog::new();
        for (_, b) in self.window.buckets() {
            all.merge(&b.distinct);
        }
        all.estimate()
    }

    /// Distinct items shown in the window / `catalog_size`, at most 1; `None` for an empty
    /// catalog.
    pub fn coverage(&self, catalog_size: u64) -> Option<f64> {
        (catalog_size > 0).then(|| (self.distinct_items() / catalog_size as f64).min(1.0))
    }

    /// The Gini coefficient of impressions over a catalog of `catalog_size` items (at least
    /// the items seen: a smaller size counts only those); `None` before any impression.
    pub fn exposure_gini(&self, catalog_size: u64) -> Option<GiniEstimate> {
        let impressions = self.impressions();
        if impressions == 0 {
            return None;
        }
        let exact = |counts: Vec<u64>| {
            let zeros = catalog_size.saturating_sub(counts.len() as u64) as f64;
            let mut groups: Vec<(f64, f64)> = counts.into_iter().map(|c| (c as f64, 1.0)).collect();
            groups.push((0.0, zeros));
            Some(GiniEstimate {
                gini: gini_weighted(groups),
                exact: true,
            })
        };

        // The head: space-saving counts, guaranteed part, summed over buckets.
        let mut head: HashMap<u64, u64> = HashMap::new();
        let mut head_exact = true;
        let mut untracked_max = 0u64;
        for (_, b) in self.window.buckets() {
            head_exact &= b.top.is_exact();
            untracked_max = untracked_max.saturating_add(b.top.min_count());
            for c in b.top.counters() {
                let g = head.entry(c.key).or_insert(0);
                *g = g.saturating_add(c.count.saturating_sub(c.error));
            }
        }
        if head_exact {
            return exact(head.into_values().collect());
        }

        // The sample: keys at or below every partial bucket's threshold have exact totals.
        let threshold = self
            .window
            .buckets()
            .filter_map(|(_, b)| b.sample.threshold())
            .min();
        let mut sample: HashMap<u64, u64> = HashMap::new();
        for (_, b) in self.window.buckets() {
            for (k, c) in b.sample.iter() {
                if threshold.is_none_or(|t| k <= t) {
                    let e = sample.entry(k).or_insert(0);
                    *e = e.saturating_add(c);
                }
            }
        }
        if threshold.is_none() {
            return exact(sample.into_values().collect());
        }

        head.retain(|_, g| *g > untracked_max);
        let head_mass = head.values().fold(0u64, |a, &g| a.saturating_add(g));
        let rest: Vec<u64> = sample
            .iter()
            .filter(|(k, _)| !head.contains_key(k))
            .map(|(_, &c)| c)
            .collect();
        let known = (head.len() + rest.len()) as f64;
        let distinct = self.distinct_items().max(known);
        let rest_items = distinct - head.len() as f64;
        let rest_mass = impressions.saturating_sub(head_mass) as f64;
        let mut groups: Vec<(f64, f64)> = head.values().map(|&g| (g as f64, 1.0)).collect();
        let rest_sum: f64 = rest.iter().map(|&c| c as f64).sum();
        if rest_items > 0.0 && rest_mass > 0.0 {
            if rest_sum > 0.0 {
                // each sampled item stands for `weight` items; scale their counts so that
                // the rest carries the impressions the head leaves
                let weight = rest_items / rest.len() as f64;
                let scale = rest_mass / (weight * rest_sum);
                groups.extend(rest.iter().map(|&c| (c as f64 * scale, weight)));
            } else {
                groups.push((rest_mass / rest_items, rest_items));
            }
        }
        let zeros = (catalog_size as f64 - head.len() as f64 - rest_items).max(0.0);
        groups.push((0.0, zeros));
        Some(GiniEstimate {
            gini: gini_weighted(groups),
            exact: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::quality::gini_counts;

    const MIN: i64 = 60_000;

    fn counts(w: &SlidingWindow<u64>) -> Vec<(i64, u64)> {
        w.buckets().map(|(t, &c)| (t, c)).collect()
    }

    #[test]
    fn exposure_count_is_exact_while_the_summaries_are() {
        let params = ExposureParams {
            top_k: 4,
            sample_k: 8,
        };
        let mut w = ExposureWindow::new(WindowSpec::default(), params).unwrap();
        // Two buckets (minutes 0 and 1): "a" 3 + 2 times, "b" once, "c" never.
        for _ in 0..3 {
            w.add(0, "a");
        }
        w.add(0, "b");
        w.add(MIN, "a");
        w.add(MIN, "a");
        assert_eq!(w.exposure_count("a"), 5);
        assert_eq!(w.exposure_count("b"), 1);
        assert_eq!(w.exposure_count("c"), 0);
        // The first bucket leaves the hour-long window: only the second one counts.
        w.advance(60 * MIN + 1);
        assert_eq!(w.exposure_count("a"), 2);
        assert_eq!(w.exposure_count("b"), 0);
    }

    #[test]
    fn a_snapshot_agrees_with_per_item_exposure_counts() {
        // Small summaries so that both evict: counts are estimates, and the snapshot must
        // give the same estimate as the per-bucket lookup for every item.
        let params = ExposureParams {
            top_k: 8,
            sample_k: 16,
        };
        let mut w = ExposureWindow::new(WindowSpec::default(), params).unwrap();
        let ids: Vec<String> = (0..200).map(|i| format!("item-{i}")).collect();
        for minute in 0..5i64 {
            for (rank, id) in ids.iter().enumerate() {
                // Zipf-like: item r shown about 400 / (r + 1) times a minute.
                for _ in 0..(400 / (rank + 1)).max(1) {
                    w.add(minute * MIN, id);
                }
            }
        }
        let snap = w.snapshot();
        assert_eq!(snap.impressions(), w.impressions());
        let mut nonzero = 0;
        for id in &ids {
            assert_eq!(snap.count(id), w.exposure_count(id), "{id}");
            nonzero += usize::from(snap.count(id) > 0);
        }
        assert!(nonzero > 16, "only {nonzero} items tracked");
        assert_eq!(snap.count("never-shown"), 0);
        // The window slides on; an old snapshot keeps what it saw.
        w.advance(70 * MIN);
        assert_eq!(w.snapshot().impressions(), 0);
        assert!(w.snapshot().is_empty());
        assert!(snap.count("item-0") > 0);
    }

    #[test]
    fn ring_buffer_slides_and_drops_old() {
        let spec = WindowSpec {
            bucket_ms: MIN as u64,
            buckets: 3,
        };
        let mut w = SlidingWindow::new(spec, || 0u64).unwrap();
        assert_eq!(w.head_ms(), None);
        assert!(w.add(10, &()));
        assert!(w.add(MIN + 5, &()));
        assert!(w.add(MIN + 6, &()));
        assert_eq!(counts(&w), vec![(0, 1), (MIN, 2)]);
        // minute 3: minute 0 falls out (the window holds minutes 1, 2, 3)
        w.advance(3 * MIN + 1);
        assert_eq!(counts(&w), vec![(MIN, 2)]);
        assert!(!w.add(5, &()), "older than the window");
        assert!(w.add(2 * MIN, &()), "inside the window, behind the head");
        // an add in the future advances the head; going back in time does nothing
        assert!(w.add(4 * MIN, &()));
        w.advance(0);
        assert_eq!(counts(&w), vec![(2 * MIN, 1), (4 * MIN, 1)]);
        assert_eq!(w.head_ms(), Some(4 * MIN));
        // a long pause empties it
        w.advance(100 * MIN);
        assert_eq!(counts(&w), vec![]);
        // negative times are fine (floor division)
        assert!(w.add(100 * MIN - 1, &()));
        assert_eq!(counts(&w), vec![(99 * MIN, 1)]);
        w.clear();
        assert_eq!(counts(&w), vec![]);
        // extreme times do not overflow
        let mut w = SlidingWindow::new(
            WindowSpec {
                bucket_ms: 1,
                buckets: 3,
            },
            || 0u64,
        )
        .unwrap();
        assert!(w.add(i64::MIN, &()));
        assert!(w.add(i64::MAX, &()));
        assert!(!w.add(i64::MIN, &()));
        assert!(
            SlidingWindow::new(
                WindowSpec {
                    bucket_ms: 0,
                    buckets: 3
                },
                || 0u64
            )
            .is_err()
        );
        assert!(
            SlidingWindow::new(
                WindowSpec {
                    bucket_ms: 1,
                    buckets: 0
                },
                || 0u64
            )
            .is_err()
        );
    }

    #[test]
    fn coverage_and_exact_gini_over_the_window() {
        let params = ExposureParams {
            top_k: 16,
            sample_k: 16,
        };
        let mut w = ExposureWindow::new(WindowSpec::default(), params).unwrap();
        assert_eq!(w.exposure_gini(10), None);
        // minute 0: item a ×3; minute 1: a, b; minute 70: c (minutes 0 … 10 fall out)
        for _ in 0..3 {
            w.add(0, "a");
        }
        w.add_list(MIN, ["a", "b"]);
        assert_eq!(w.impressions(), 5);
        assert!((w.distinct_items() - 2.0).abs() < 0.01);
        // 2 of a 4-item catalog
        assert!((w.coverage(4).unwrap() - 0.5).abs() < 0.01);
        assert_eq!(w.coverage(0), None);
        // counts over the catalog [4, 1, 0, 0]: Σ i·xᵢ (sorted 0,0,1,4) = 3 + 16 = 19,
        // 2·19/(4·5) − 5/4 = 1.9 − 1.25 = 0.65
        let g = w.exposure_gini(4).unwrap();
        assert!(g.exact);
        assert!((g.gini - 0.65).abs() < 1e-12, "{g:?}");
        // a catalog size below the items seen counts only the items seen: [4, 1] → 0.3
        assert!((w.exposure_gini(1).unwrap().gini - 0.3).abs() < 1e-12);
        w.add(70 * MIN, "c");
        assert_eq!(w.impressions(), 1);
        assert!((w.exposure_gini(4).unwrap().gini - 0.75).abs() < 1e-12);
    }

    /// Feeds `counts[i]` impressions of item i, spread round-robin over the first 10
    /// minutes, and returns the window and the exact Gini over `catalog` items.
    fn fed(counts: &[u64], catalog: usize, params: ExposureParams) -> (ExposureWindow, f64) {
        let mut w = ExposureWindow::new(WindowSpec::default(), params).unwrap();
        for (i, &n) in counts.iter().enumerate() {
            for k in 0..n {
                w.add(((i as u64 + k) % 10) as i64 * MIN, &format!("item-{i}"));
            }
        }
        let mut truth = counts.to_vec();
        truth.resize(catalog, 0);
        (w, gini_counts(&truth))
    }

    #[test]
    fn gini_estimate_of_a_long_tail_stays_close() {
        // 2 000 items with Zipf-like impressions (item i shown ⌈400/(i+1)⌉ times) over 10
        // minutes; each bucket sees ~300 distinct items but keeps 64 counters and 256
        // sampled items.
        let counts: Vec<u64> = (0..2_000u64).map(|i| 400u64.div_ceil(i + 1)).collect();
        let params = ExposureParams {
            top_k: 64,
            sample_k: 256,
        };
        let (w, exact) = fed(&counts, 5_000, params);
        let g = w.exposure_gini(5_000).unwrap();
        assert!(!g.exact);
        assert!((g.gini - exact).abs() < 0.02, "{} vs {exact}", g.gini);
        let cov = w.coverage(5_000).unwrap();
        assert!((cov - 0.4).abs() < 0.4 * 0.05, "{cov}");
        // with summaries large enough, exact
        let big = ExposureParams {
            top_k: 4096,
            sample_k: 16,
        };
        let (w, exact) = fed(&counts, 5_000, big);
        let g = w.exposure_gini(5_000).unwrap();
        assert!(
            g.exact && (g.gini - exact).abs() < 1e-12,
            "{g:?} vs {exact}"
        );
    }

    #[test]
    fn gini_estimate_keeps_one_dominant_item() {
        // one item with half of 10 000 impressions, 5 000 items once each: a sample of 256
        // of the 5 001 items would most likely miss the dominant one; the head keeps it.
        let mut counts = vec![5_000u64];
        counts.extend(std::iter::repeat_n(1, 5_000));
        let params = ExposureParams {
            top_k: 64,
            sample_k: 256,
        };
        let (w, exact) = fed(&counts, 10_000, params);
        let g = w.exposure_gini(10_000).unwrap();
        assert!(!g.exact);
        assert!((g.gini - exact).abs() < 0.02, "{} vs {exact}", g.gini);
    }
}
