//! Tag values as numbers, so that reading a candidate's user × tag features does not
//! read its tags' strings.
//!
//! A request adds, for each of ~150 candidates, the user's sums of every tag the item
//! carries. Found by string, each candidate costs the item's field map, its tag list and
//! every tag's own allocation (dependent reads, cache misses on a busy server) before a
//! hash lookup. [`TagIds`] numbers tag values once per process; an item's entry in the
//! feature store keeps its tags' numbers ([`ItemTags`]), made again whenever the catalog
//! replaces the item (a different `Arc<Item>`) or the feature set changes; the user's
//! side numbers its own tags once per request. The sums added are the same, in the same
//! order, as by string.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock, Weak};

use crate::item::Item;

type Fast = foldhash::fast::RandomState;

/// Separates one tag field's numbers from the next field's in [`ItemTags`].
pub(crate) const FIELD_END: u32 = u32::MAX;

/// Tag values numbered in the order first seen; numbers are never reused or dropped, so
/// a number held anywhere stays valid. At most [`TagIds::CAPACITY`] values (the tags of
/// a catalog; past it, values are simply not numbered and read by string).
#[derive(Debug, Default)]
pub struct TagIds {
    ids: RwLock<HashMap<Box<str>, u32, Fast>>,
}

impl TagIds {
    /// How many tag values get a number.
    pub const CAPACITY: usize = 1 << 22;

    /// The number of `tag`, giving it one if it has none yet (`None` when full).
    pub fn number(&self, tag: &str) -> Option<u32> {
        if let Some(&id) = self
            .ids
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(tag)
        {
            return Some(id);
        }
        let mut ids = self.ids.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(&id) = ids.get(tag) {
            return Some(id);
        }
        if ids.len() >= Self::CAPACITY {
            return None;
        }
        let id = u32::try_from(ids.len()).ok()?;
        ids.insert(tag.into(), id);
        Some(id)
    }

    /// The numbers of `tags`, in order, under one read lock while they all have one
    /// (numbering the others as [`TagIds::number`] does; `None` if one cannot be).
    pub fn numbers_of(&self, tags: &[&str]) -> Option<Vec<u32>> {
        let found: Vec<Option<u32>> = {
            let ids = self.ids.read().unwrap_or_else(PoisonError::into_inner);
            tags.iter().map(|t| ids.get(*t).copied()).collect()
        };
        found
            .into_iter()
            .zip(tags)
            .map(|(id, t)| id.or_else(|| self.number(t)))
            .collect()
    }

    /// Calls `f` with the number of each of `tags` that has one, in order, under one
    /// read lock (numbering none).
    pub fn each_number<'t>(&self, tags: impl IntoIterator<Item = &'t str>, mut f: impl FnMut(u32)) {
        let ids = self.ids.read().unwrap_or_else(PoisonError::into_inner);
        for t in tags {
            if let Some(&id) = ids.get(t) {
                f(id);
            }
        }
    }

    /// How many values are numbered.
    pub fn len(&self) -> usize {
        self.ids
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The numbers of one item's tags, per tag field the feature set reads (in its order,
/// each field's tags in the item's order, each field ended by [`FIELD_END`]), for the
/// item as it was (`of`) and the feature set it was made for.
#[derive(Debug, Clone)]
pub(crate) struct ItemTags {
    /// The item they were read from. A `Weak` keeps the allocation, so its address cannot
    /// be reused by another item while this is kept: equal addresses mean the same item.
    of: Weak<Item>,
    /// The feature set's fingerprint key.
    fingerprint: u64,
    /// The numbers.
    pub(crate) ids: Box<[u32]>,
}

impl ItemTags {
    /// Numbers `item`'s tags of `fields` (`None` if one cannot be numbered).
    pub(crate) fn new<'f>(
        item: &Arc<Item>,
        fields: impl Iterator<Item = &'f str>,
        fingerprint: u64,
        numbers: &TagIds,
    ) -> Option<Self> {
        let mut ids = Vec::new();
        for field in fields {
            for t in crate::features::state::tags(item, field) {
                ids.push(numbers.number(t)?);
            }
            ids.push(FIELD_END);
        }
        Some(Self {
            of: Arc::downgrade(item),
            fingerprint,
            ids: ids.into(),
        })
    }

    /// Whether they were made from this very `item` for the set of `fingerprint`.
    pub(crate) fn hold_for(&self, item: &Arc<Item>, fingerprint: u64) -> bool {
        self.fingerprint == fingerprint && std::ptr::eq(self.of.as_ptr(), Arc::as_ptr(item))
    }
}

impl PartialEq for ItemTags {
    fn eq(&self, other: &Self) -> bool {
        Weak::ptr_eq(&self.of, &other.of)
            && self.fingerprint == other.fingerprint
            && self.ids == other.ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_stable_and_distinct() {
        let ids = TagIds::default();
        let a = ids.number("shoes");
        let b = ids.number("bags");
        assert_eq!(a, Some(0));
        assert_eq!(b, Some(1));
        assert_eq!(ids.number("shoes"), a);
        assert_eq!(ids.len(), 2);
    }
}
