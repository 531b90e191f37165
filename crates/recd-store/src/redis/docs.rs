//! Decoded item docs, kept in process while their bytes stay the same.
//!
//! A recommend request needs the fields of ~130 items (KNN hits and popular items), read
//! from their docs with one `MGET`. Decoding them was the largest cost of a redis-backed
//! server under perf (a fifth of its CPU, mostly allocation), and the popular ones are the
//! same items request after request. So the store remembers, per doc key, the bytes it
//! last decoded and the item they gave: when `MGET` returns the same bytes, the item is
//! shared instead of decoded again. (KNN hits spread over the whole catalog: caching them
//! in a cache smaller than the catalog cost more in churn than it saved.)
//!
//! Nothing here can serve stale data: every use compares the bytes Redis just returned,
//! and decoding is a pure function of those bytes (and the store's fixed schema). Deleted
//! items are absent from the `MGET` answer and never reach the cache's lookup.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex};

use recd_core::{Item, Schema};

use super::schema::item_from_doc;
use crate::StoreResult;

/// Shards, so that concurrent requests rarely wait for each other.
const SHARDS: usize = 16;

/// Doc key → (the doc's bytes, the item they decode to).
type Shard = HashMap<String, (Vec<u8>, Arc<Item>)>;

/// A bounded map from doc keys to decoded items; see the module doc.
pub(crate) struct DocCache {
    shards: Vec<Mutex<Shard>>,
    /// Entries per shard before the shard is emptied (0: no caching).
    per_shard: usize,
    hasher: RandomState,
}

impl DocCache {
    /// A cache of about `entries` items (0 disables it).
    pub(crate) fn new(entries: usize) -> Self {
        DocCache {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard: entries.div_ceil(SHARDS),
            hasher: RandomState::new(),
        }
    }

    /// The item of `doc`, the bytes just read from `key` for item `id`.
    pub(crate) fn item(
        &self,
        key: &str,
        id: &str,
        doc: Vec<u8>,
        schema: &Schema,
    ) -> StoreResult<Arc<Item>> {
        if self.per_shard == 0 {
            return item_from_doc(id, &doc, schema).map(Arc::new);
        }
        let shard = &self.shards[self.hasher.hash_one(key) as usize % SHARDS];
        if let Ok(map) = shard.lock()
            && let Some((bytes, item)) = map.get(key)
            && *bytes == doc
        {
            return Ok(item.clone());
        }
        let item = Arc::new(item_from_doc(id, &doc, schema)?);
        if let Ok(mut map) = shard.lock() {
            if map.len() >= self.per_shard {
                // Crude but cheap: hot items come back at once.
                map.clear();
            }
            map.insert(key.to_string(), (doc, item.clone()));
        }
        Ok(item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis::schema::doc_bytes;
    use serde_json::json;

    #[test]
    fn shares_an_item_while_its_bytes_stay_the_same() {
        let schema = Schema::demo(2);
        let a = Item::from_json(&json!({"id":"a","brand":"x","price":1}), &schema).unwrap();
        let b = Item::from_json(&json!({"id":"a","brand":"y","price":1}), &schema).unwrap();
        let cache = DocCache::new(64);
        let first = cache.item("k", "a", doc_bytes(&a), &schema).unwrap();
        let again = cache.item("k", "a", doc_bytes(&a), &schema).unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        let changed = cache.item("k", "a", doc_bytes(&b), &schema).unwrap();
        assert_eq!(*changed, b);
        assert!(cache.item("k", "a", b"{".to_vec(), &schema).is_err());
        let off = DocCache::new(0);
        let x = off.item("k", "a", doc_bytes(&a), &schema).unwrap();
        let y = off.item("k", "a", doc_bytes(&a), &schema).unwrap();
        assert!(!Arc::ptr_eq(&x, &y) && *x == *y);
        // Bounded: a full shard starts over.
        let small = DocCache::new(SHARDS);
        for i in 0..100 {
            small
                .item(&format!("k{i}"), "a", doc_bytes(&a), &schema)
                .unwrap();
        }
        let total: usize = small.shards.iter().map(|s| s.lock().unwrap().len()).sum();
        assert!(total <= SHARDS, "{total}");
    }
}
