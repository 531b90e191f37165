//! The in-memory catalog of the embedded backend: items by id and slot, their attribute
//! indexes, and the popularity ranking.
//!
//! A *slot* is the dense `u32` that names an item inside the vector index and the bitmaps.
//! Slots are never reused: a deleted item's slot stays empty, so a search racing with a
//! delete can only find an empty slot (and skip it), never another item.

use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use recd_core::{Filter, Item, Schema};
use roaring::RoaringBitmap;

use super::attributes::AttributeIndex;

/// Below this many allowed slots, popular items are picked from the allowed set directly
/// instead of walking the global ranking until enough pass.
const DIRECT_POPULAR_LIMIT: u64 = 4096;

/// A log-domain popularity that sorts descending, ties by slot ascending.
#[derive(Debug, Clone, Copy)]
struct RankKey(f64, u32);

impl PartialEq for RankKey {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for RankKey {}
impl PartialOrd for RankKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for RankKey {
    fn cmp(&self, other: &Self) -> Ordering {
        other.0.total_cmp(&self.0).then(self.1.cmp(&other.1))
    }
}

/// Items, attribute indexes and popularity.
#[derive(Debug)]
pub struct Catalog {
    /// Item id → slot.
    ids: HashMap<String, u32>,
    /// Slot → item (with its vector); `None` once deleted.
    slots: Vec<Option<Arc<Item>>>,
    /// Filters → bitmaps.
    attrs: AttributeIndex,
    /// Log-domain popularity by item id, including ids that are not (yet) items.
    popularity: HashMap<String, f64>,
    /// Live slots ordered by popularity.
    ranking: BTreeSet<RankKey>,
    /// Popularity by slot, so that ranking a filtered set costs an index per item rather
    /// than a string hash (that lookup dominated filtered requests).
    slot_popularity: Vec<f64>,
}

impl Catalog {
    /// An empty catalog for `schema`.
    pub fn new(schema: &Schema) -> Self {
        Self {
            ids: HashMap::new(),
            slots: Vec::new(),
            attrs: AttributeIndex::new(schema),
            popularity: HashMap::new(),
            ranking: BTreeSet::new(),
            slot_popularity: Vec::new(),
        }
    }

    /// Number of live items.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// The slot of `id`, if it is a live item.
    pub fn slot_of(&self, id: &str) -> Option<u32> {
        self.ids.get(id).copied()
    }

    /// The slot the next new item will get.
    pub fn next_slot(&self) -> u32 {
        self.slots.len() as u32
    }

    /// The item in `slot`, if live.
    pub fn item_at(&self, slot: u32) -> Option<&Arc<Item>> {
        self.slots.get(slot as usize).and_then(Option::as_ref)
    }

    /// The item with `id`, if live.
    pub fn get(&self, id: &str) -> Option<&Arc<Item>> {
        self.slot_of(id).and_then(|s| self.item_at(s))
    }

    /// Puts `item` in `slot` (its existing slot, or [`next_slot`](Self::next_slot) for a new id).
    pub fn put(&mut self, slot: u32, item: Item) {
        let i = slot as usize;
        if self.slots.len() <= i {
            self.slots.resize(i + 1, None);
            self.slot_popularity.resize(i + 1, f64::NEG_INFINITY);
        }
        if let Some(old) = self.slots[i].take() {
            self.attrs.remove(slot, &old);
        }
        self.attrs.insert(slot, &item);
        let pop = self.popularity_of(&item.id);
        self.slot_popularity[i] = pop;
        self.ranking.insert(RankKey(pop, slot));
        self.ids.insert(item.id.clone(), slot);
        self.slots[i] = Some(Arc::new(item));
    }

    /// Removes the item with `id`; returns its slot.
    pub fn remove(&mut self, id: &str) -> Option<u32> {
        let slot = self.ids.remove(id)?;
        if let Some(old) = self.slots.get_mut(slot as usize).and_then(Option::take) {
            self.attrs.remove(slot, &old);
        }
        let pop = self.popularity_of(id);
        self.ranking.remove(&RankKey(pop, slot));
        Some(slot)
    }

    /// Replaces the vector of a live item in place.
    pub fn set_vector(&mut self, slot: u32, vector: Vec<f32>) {
        if let Some(Some(item)) = self.slots.get_mut(slot as usize) {
            Arc::make_mut(item).vector = Some(vector);
        }
    }

    /// The log-domain popularity of `id` (`-inf` if nobody touched it).
    pub fn popularity_of(&self, id: &str) -> f64 {
        self.popularity
            .get(id)
            .copied()
            .unwrap_or(f64::NEG_INFINITY)
    }

    /// Sets the popularity of `id`, re-ranking it if it is a live item.
    pub fn set_popularity(&mut self, id: &str, log_score: f64) {
        let old = self
            .popularity
            .insert(id.to_string(), log_score)
            .unwrap_or(f64::NEG_INFINITY);
        if let Some(slot) = self.slot_of(id) {
            self.ranking.remove(&RankKey(old, slot));
            self.ranking.insert(RankKey(log_score, slot));
            if let Some(p) = self.slot_popularity.get_mut(slot as usize) {
                *p = log_score;
            }
        }
    }

    /// The bitmap of live slots passing `filter`, or `None` for "everything".
    pub fn allowed(&self, filter: &Filter) -> Option<RoaringBitmap> {
        (!filter.is_all()).then(|| self.attrs.eval(filter))
    }

    /// The `k` most popular live slots within `allowed`, with their log scores.
    pub fn popular(&self, k: usize, allowed: Option<&RoaringBitmap>) -> Vec<(u32, f64)> {
        match allowed {
            Some(set) if set.len() <= DIRECT_POPULAR_LIMIT => {
                let mut keys: Vec<RankKey> = set
                    .iter()
                    .filter(|slot| self.item_at(*slot).is_some())
                    .map(|slot| RankKey(self.slot_popularity[slot as usize], slot))
                    .collect();
                keys.sort_unstable();
                keys.truncate(k);
                keys.into_iter().map(|RankKey(s, slot)| (slot, s)).collect()
            }
            _ => self
                .ranking
                .iter()
                .filter(|key| allowed.is_none_or(|set| set.contains(key.1)))
                .take(k)
                .map(|RankKey(s, slot)| (*slot, *s))
                .collect(),
        }
    }

    /// Up to `k` live slots within `allowed` whose text holds any of `terms`: most terms
    /// matched first, then most popular, then oldest slot.
    pub fn text_search(
        &self,
        terms: &[String],
        k: usize,
        allowed: Option<&RoaringBitmap>,
    ) -> Vec<u32> {
        let mut hits: Vec<(u32, RankKey)> = self
            .attrs
            .text_any_counts(terms)
            .into_iter()
            .filter(|(slot, _)| allowed.is_none_or(|set| set.contains(*slot)))
            .filter_map(|(slot, n)| {
                self.item_at(slot)
                    .map(|it| (n, RankKey(self.popularity_of(&it.id), slot)))
            })
            .collect();
        hits.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        hits.into_iter().take(k).map(|(_, key)| key.1).collect()
    }
}
