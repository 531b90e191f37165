//! The in-memory catalog of the embedded backend: items by id and slot, and their
//! attribute indexes (popularity lives beside it, in `popularity`).
//!
//! A *slot* is the dense `u32` that names an item inside the vector index and the bitmaps.
//! Slots are never reused: a deleted item's slot stays empty, so a search racing with a
//! delete can only find an empty slot (and skip it), never another item.
//!
//! Ids are kept in a `BTreeMap`, so that listing items in id order (`GET /v1/items`) walks
//! from a cursor instead of sorting the catalog per page.
//!
//! The catalog also keeps `YᵀY` of its item vectors ([`Gram`]), updated by every write of
//! a vector (O(k²) each), which the fold-in of events solves with: every path that changes
//! a vector (upserts, write-back, deletes, recovery) goes through [`Catalog::put`],
//! [`Catalog::set_vector`] or [`Catalog::remove`].

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use recd_core::{Filter, Gram, Item, Schema};
use roaring::RoaringBitmap;

use super::attributes::AttributeIndex;
use super::popularity::RankKey;

/// Items and attribute indexes.
#[derive(Debug)]
pub struct Catalog {
    /// Item id → slot, in id order.
    ids: BTreeMap<String, u32>,
    /// Slot → item (with its vector); `None` once deleted.
    slots: Vec<Option<Arc<Item>>>,
    /// Filters → bitmaps.
    attrs: AttributeIndex,
    /// Σ y yᵀ over the live items' vectors.
    gram: Gram,
}

impl Catalog {
    /// An empty catalog for `schema`.
    pub fn new(schema: &Schema) -> Self {
        Self {
            ids: BTreeMap::new(),
            slots: Vec::new(),
            attrs: AttributeIndex::new(schema),
            gram: Gram::new(schema.vector.dim),
        }
    }

    /// `YᵀY` of the live items' vectors.
    pub fn gram(&self) -> &Gram {
        &self.gram
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
        }
        if let Some(old) = self.slots[i].take() {
            self.attrs.remove(slot, &old);
            if let Some(v) = &old.vector {
                self.gram.remove(v);
            }
        }
        self.attrs.insert(slot, &item);
        if let Some(v) = &item.vector {
            self.gram.add(v);
        }
        self.ids.insert(item.id.clone(), slot);
        self.slots[i] = Some(Arc::new(item));
    }

    /// Removes the item with `id`; returns its slot.
    pub fn remove(&mut self, id: &str) -> Option<u32> {
        let slot = self.ids.remove(id)?;
        if let Some(old) = self.slots.get_mut(slot as usize).and_then(Option::take) {
            self.attrs.remove(slot, &old);
            if let Some(v) = &old.vector {
                self.gram.remove(v);
            }
        }
        Some(slot)
    }

    /// Replaces the vector of a live item in place.
    pub fn set_vector(&mut self, slot: u32, vector: Vec<f32>) {
        if let Some(Some(item)) = self.slots.get_mut(slot as usize) {
            if let Some(old) = &item.vector {
                self.gram.remove(old);
            }
            self.gram.add(&vector);
            Arc::make_mut(item).vector = Some(vector);
        }
    }

    /// The bitmap of live slots passing `filter`, or `None` for "everything".
    pub fn allowed(&self, filter: &Filter) -> Option<RoaringBitmap> {
        (!filter.is_all()).then(|| self.attrs.eval(filter))
    }

    /// Up to `take` live items within `allowed` (everything when `None`), in ascending id
    /// order, with ids after `after`.
    ///
    /// Walking the ids from `after` costs the items skipped to fill the page; a filter
    /// that few items pass (under 1 in 8) is answered from its bitmap instead: its matches
    /// after `after`, sorted, so that a selective filter never walks the catalog.
    pub fn page(
        &self,
        after: Option<&str>,
        take: usize,
        allowed: Option<&RoaringBitmap>,
    ) -> Vec<Arc<Item>> {
        let after_ok = |id: &str| after.is_none_or(|a| id > a);
        if let Some(set) = allowed
            && set.len().saturating_mul(8) < self.ids.len() as u64
        {
            let mut found: Vec<&Arc<Item>> = set
                .iter()
                .filter_map(|slot| self.item_at(slot))
                .filter(|it| after_ok(&it.id))
                .collect();
            if found.len() > take {
                found.select_nth_unstable_by(take, |a, b| a.id.cmp(&b.id));
                found.truncate(take);
            }
            found.sort_unstable_by(|a, b| a.id.cmp(&b.id));
            return found.into_iter().cloned().collect();
        }
        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
        self.ids
            .range::<str, _>((lower, Bound::Unbounded))
            .filter(|(_, slot)| allowed.is_none_or(|set| set.contains(**slot)))
            .filter_map(|(_, slot)| self.item_at(*slot).cloned())
            .take(take)
            .collect()
    }

    /// Up to `k` live slots within `allowed` whose text holds any of `terms`: most terms
    /// matched first, then most popular (`popularity` by slot), then oldest slot.
    pub fn text_search(
        &self,
        terms: &[String],
        k: usize,
        allowed: Option<&RoaringBitmap>,
        popularity: impl Fn(u32) -> f64,
    ) -> Vec<u32> {
        let mut hits: Vec<(u32, RankKey)> = self
            .attrs
            .text_any_counts(terms)
            .into_iter()
            .filter(|(slot, _)| allowed.is_none_or(|set| set.contains(*slot)))
            .filter(|(slot, _)| self.item_at(*slot).is_some())
            .map(|(slot, n)| (n, RankKey(popularity(slot), slot)))
            .collect();
        hits.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        hits.into_iter().take(k).map(|(_, key)| key.1).collect()
    }
}
