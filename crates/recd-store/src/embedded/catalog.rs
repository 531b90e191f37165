//! The in-memory catalog of the embedded backend: items by id and slot, and their
//! attribute indexes (popularity lives beside it, in `popularity`).
//!
//! A *slot* is the dense `u32` that names an item inside the vector index and the bitmaps.
//! Slots are never reused: a deleted item's slot stays empty, so a search racing with a
//! delete can only find an empty slot (and skip it), never another item.
//!
//! Ids are kept in a `BTreeMap`, so that listing items in id order (`GET /v1/items`) walks
//! from a cursor instead of sorting the catalog per page, and in a hash map for point
//! lookups: each event looks up its item and the fold-in every recent item of the user, and
//! a B-tree walk over 100k `String` keys is a chain of dependent cache misses and string
//! compares per lookup. Vectors are read by slot from [`SlotVectors`] (one miss, not the
//! item's two).
//!
//! The catalog also keeps `YᵀY` of its item vectors ([`Gram`]), updated by every write of
//! a vector (O(k²) each), which the fold-in of events solves with: every path that changes
//! a vector (upserts, write-back, deletes, recovery) goes through [`Catalog::put`],
//! [`Catalog::set_vector`] or [`Catalog::remove`].

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::{Arc, OnceLock};

use compact_str::CompactString;
use recd_core::pipeline::rerank::Exclusions;
use recd_core::user::item_key;
use recd_core::{Filter, FoldInParams, FoldModel, Gram, Item, Schema};
use roaring::RoaringBitmap;

use super::attributes::AttributeIndex;
use super::popularity::RankKey;
use super::slot_vectors::SlotVectors;

/// The point-lookup index: ids of up to 24 bytes live inline in the key (no pointer to
/// chase to compare them), hashed by foldhash (no need for DoS resistance here: item ids
/// come from the catalog's owner, and a collision costs a probe, not correctness).
type SlotById = HashMap<CompactString, u32, foldhash::fast::RandomState>;

/// Items and attribute indexes.
#[derive(Debug)]
pub struct Catalog {
    /// Item id → slot, in id order (pages of `GET /v1/items`).
    ids: BTreeMap<String, u32>,
    /// The same map, hashed (every point lookup).
    slot_by_id: SlotById,
    /// [`item_key`] → slot: what a user's exclusion set (keys, not ids) names.
    slot_by_key: HashMap<u64, u32, foldhash::fast::RandomState>,
    /// Slot → item (with its vector); `None` once deleted.
    slots: Vec<Option<Arc<Item>>>,
    /// Filters → bitmaps.
    attrs: AttributeIndex,
    /// Σ y yᵀ over the live items' vectors, and the fold-in's model of it.
    gram: GramWithModel,
    /// The live items' vectors by slot (what the fold-in reads).
    vectors: SlotVectors,
}

/// `YᵀY` of the catalog's vectors and the fold-in's model of it (with the parameters it
/// was built with). The model is built by the first event after a vector changed, then
/// shared by every event until the next change: building it copies the k × k matrix
/// (32 KB at k = 64), which per event was a tenth of the event path's own CPU. Every change
/// of the sum goes through [`GramWithModel::add`] or [`GramWithModel::remove`], which drop
/// the model, so it cannot go stale.
#[derive(Debug)]
struct GramWithModel {
    gram: Gram,
    model: OnceLock<(FoldInParams, Option<Arc<FoldModel>>)>,
}

impl GramWithModel {
    fn add(&mut self, y: &[f32]) {
        self.gram.add(y);
        self.model.take();
    }

    fn remove(&mut self, y: &[f32]) {
        self.gram.remove(y);
        self.model.take();
    }

    /// [`FoldModel::new`] of the sum, cached for the parameters first asked for.
    fn model(&self, params: &FoldInParams) -> Option<Arc<FoldModel>> {
        let build = || FoldModel::new(&self.gram, params).map(Arc::new);
        let (built_with, model) = self.model.get_or_init(|| (params.clone(), build()));
        if built_with == params {
            model.clone()
        } else {
            build()
        }
    }
}

impl Catalog {
    /// An empty catalog for `schema`.
    pub fn new(schema: &Schema) -> Self {
        Self {
            ids: BTreeMap::new(),
            slot_by_id: SlotById::default(),
            slot_by_key: HashMap::default(),
            slots: Vec::new(),
            attrs: AttributeIndex::new(schema),
            gram: GramWithModel {
                gram: Gram::new(schema.vector.dim),
                model: OnceLock::new(),
            },
            vectors: SlotVectors::new(schema.vector.dim),
        }
    }

    /// The fold-in's model of the current `YᵀY` ([`FoldModel::new`]), `None` without item
    /// vectors. Cached until a vector changes.
    pub fn fold_model(&self, params: &FoldInParams) -> Option<Arc<FoldModel>> {
        self.gram.model(params)
    }

    /// Number of live items.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// The slot of `id`, if it is a live item.
    pub fn slot_of(&self, id: &str) -> Option<u32> {
        self.slot_by_id.get(id).copied()
    }

    /// The vector of the live item in `slot`, if it has one.
    pub fn vector_at(&self, slot: u32) -> Option<&[f32]> {
        // The table holds every vector of the schema's dimension; an item stored with
        // another (from before a change of dimension) is read from the item.
        self.vectors
            .get(slot)
            .or_else(|| self.item_at(slot).and_then(|it| it.vector.as_deref()))
    }

    /// The vector of the live item `id`, if it has one.
    pub fn vector_of(&self, id: &str) -> Option<&[f32]> {
        self.slot_of(id).and_then(|s| self.vector_at(s))
    }

    /// The vector of the live item `id`, found through `hint` (its slot, when the hint
    /// was set by an earlier call for the same `id`) without looking the id up; the hint
    /// is set to the item's slot when the lookup was needed. Slots are never reused and
    /// an item keeps its slot while it lives, so a slot that still has a vector in the
    /// table is still `id`'s (a deleted item's slot reads as empty, and an item stored
    /// anew gets another slot, which the lookup finds).
    pub fn vector_hinted(&self, id: &str, hint: &mut u32) -> Option<&[f32]> {
        if let Some(v) = self.vectors.get(*hint) {
            return Some(v);
        }
        let slot = self.slot_of(id)?;
        *hint = slot;
        self.vector_at(slot)
    }

    /// The slots of the live items `exclude` names, by id or by [`item_key`] (an id whose
    /// key collides with an excluded one's is excluded too, as [`Exclusions::contains`]
    /// has it). The seen ids are found through their lookup hints where those hold (see
    /// [`Catalog::slot_hinted`]).
    pub fn slots_excluded(&self, exclude: &Exclusions<'_>) -> RoaringBitmap {
        let by_id = exclude
            .ids_with_hints()
            .filter_map(|(id, hint)| self.slot_hinted(id, hint));
        let by_key = exclude
            .keys()
            .filter_map(|key| self.slot_by_key.get(&key).copied());
        let mut slots: Vec<u32> = by_id.chain(by_key).collect();
        // Sorted first: inserting ~300 unsorted slots one by one shifted roaring's arrays
        // each time (a twentieth of a recommend's CPU for a user with 200 seen items).
        slots.sort_unstable();
        slots.dedup();
        match RoaringBitmap::from_sorted_iter(slots.iter().copied()) {
            Ok(bitmap) => bitmap,
            Err(_) => slots.into_iter().collect(),
        }
    }

    /// The slot of the live item `id`, `hint` itself when it is a live slot: a hint set by
    /// [`Catalog::vector_hinted`] for `id` (or [`LookupHints::NONE`](recd_core::LookupHints::NONE))
    /// names `id`'s slot while that slot is live, since slots are never reused. Without
    /// hints, resolving a user's 200 seen ids was a tenth of a recommend's CPU (a hash
    /// probe each, most of them cache misses).
    pub fn slot_hinted(&self, id: &str, hint: u32) -> Option<u32> {
        match self.item_at(hint) {
            Some(_) => Some(hint),
            None => self.slot_of(id),
        }
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
        self.vectors.set(slot, item.vector.as_deref());
        self.ids.insert(item.id.clone(), slot);
        self.slot_by_id
            .insert(CompactString::from(item.id.as_str()), slot);
        self.slot_by_key.insert(item_key(&item.id), slot);
        self.slots[i] = Some(Arc::new(item));
    }

    /// Removes the item with `id`; returns its slot.
    pub fn remove(&mut self, id: &str) -> Option<u32> {
        let slot = self.ids.remove(id)?;
        self.slot_by_id.remove(id);
        // Another id with the same key (a 64-bit collision) keeps its entry.
        let key = item_key(id);
        if self.slot_by_key.get(&key) == Some(&slot) {
            self.slot_by_key.remove(&key);
        }
        self.vectors.set(slot, None);
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
            self.vectors.set(slot, Some(&vector));
            Arc::make_mut(item).vector = Some(vector);
        }
    }

    /// The live slots carrying `value` in the tag `field` (`None`: no item does).
    pub fn tag_slots(&self, field: &str, value: &str) -> Option<&RoaringBitmap> {
        self.attrs.tag_slots(field, value)
    }

    /// Every value of the tag `field` with the live slots carrying it.
    pub fn tag_values(&self, field: &str) -> impl Iterator<Item = (&str, &RoaringBitmap)> {
        self.attrs.tag_values(field)
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use recd_core::{Item, Schema};

    use super::*;

    const DIM: usize = 3;

    #[derive(Debug, Clone)]
    enum Op {
        /// Upsert item `id` with a vector (seeded by the u8) or none.
        Put(u8, Option<u8>),
        /// Replace the vector of item `id`, if live.
        SetVector(u8, u8),
        /// Delete item `id`.
        Remove(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..12, proptest::option::of(any::<u8>())).prop_map(|(i, v)| Op::Put(i, v)),
            (0u8..12, any::<u8>()).prop_map(|(i, v)| Op::SetVector(i, v)),
            (0u8..12).prop_map(Op::Remove),
        ]
    }

    fn id(i: u8) -> String {
        // Some ids longer than CompactString's 24 inline bytes, to cover heap keys too.
        if i.is_multiple_of(3) {
            format!("item-with-a-long-identifier-number-{i}")
        } else {
            format!("i{i}")
        }
    }

    fn vector(seed: u8) -> Vec<f32> {
        (0..DIM).map(|d| f32::from(seed) + d as f32 + 1.0).collect()
    }

    /// Applies `op` as the store's writers do: a new id takes the next slot, an existing
    /// one keeps its slot.
    fn apply(c: &mut Catalog, op: &Op) {
        match op {
            Op::Put(i, v) => {
                let slot = c.ids.get(id(*i).as_str()).copied().unwrap_or(c.next_slot());
                c.put(
                    slot,
                    Item {
                        id: id(*i),
                        vector: v.map(vector),
                        fields: Default::default(),
                    },
                );
            }
            Op::SetVector(i, v) => {
                if let Some(slot) = c.ids.get(id(*i).as_str()).copied() {
                    c.set_vector(slot, vector(*v));
                }
            }
            Op::Remove(i) => {
                c.remove(&id(*i));
            }
        }
    }

    /// The hash index answers as the ordered map, and the vector table as the items.
    fn check(c: &Catalog) {
        for i in 0..12 {
            let id = id(i);
            assert_eq!(
                c.slot_of(&id),
                c.ids.get(id.as_str()).copied(),
                "slot of {id}"
            );
            let item_vector = c.get(&id).and_then(|it| it.vector.as_deref());
            assert_eq!(c.vector_of(&id), item_vector, "vector of {id}");
        }
        for slot in 0..c.next_slot() + 2 {
            let item_vector = c.item_at(slot).and_then(|it| it.vector.as_deref());
            assert_eq!(c.vector_at(slot), item_vector, "vector at {slot}");
        }
        assert_eq!(c.slot_by_id.len(), c.ids.len());
        // The key map (what exclusion sets name) too.
        assert_eq!(c.slot_by_key.len(), c.ids.len());
        for i in 0..12 {
            let id = id(i);
            let by_key = c.slot_by_key.get(&item_key(&id)).copied();
            assert_eq!(by_key, c.slot_of(&id), "slot of {id}'s key");
        }
        // The cached fold-in model is the current YᵀY's (asked at every step, so a cache
        // left stale by a write would show at the next one), whatever parameters ask.
        for params in [
            FoldInParams::default(),
            FoldInParams {
                alpha: 7.0,
                ..Default::default()
            },
        ] {
            assert_eq!(
                c.fold_model(&params).as_deref(),
                FoldModel::new(&c.gram.gram, &params).as_ref(),
                "fold model with {params:?}"
            );
        }
    }

    proptest! {
        #[test]
        fn point_lookups_and_slot_vectors_follow_every_write(ops in proptest::collection::vec(op(), 1..60)) {
            let mut c = Catalog::new(&Schema::demo(DIM));
            // Hints kept across the writes, as users' states keep them between events.
            let mut hints = [u32::MAX; 12];
            for op in &ops {
                apply(&mut c, op);
                check(&c);
                for (i, hint) in (0u8..).zip(&mut hints) {
                    let id = id(i);
                    prop_assert_eq!(c.vector_hinted(&id, hint), c.vector_of(&id), "hinted vector of {}", id);
                    // The same hints resolve exclusions: to the item's slot or to nothing.
                    prop_assert_eq!(c.slot_hinted(&id, *hint), c.slot_of(&id), "hinted slot of {}", id);
                }
            }
        }
    }

    #[test]
    fn a_vector_of_another_dimension_is_read_from_the_item() {
        let mut c = Catalog::new(&Schema::demo(DIM));
        c.put(
            0,
            Item {
                id: "old".into(),
                vector: Some(vec![1.0, 2.0]),
                fields: Default::default(),
            },
        );
        assert_eq!(c.vector_of("old"), Some(&[1.0, 2.0][..]));
    }
}
