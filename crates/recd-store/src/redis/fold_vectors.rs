//! Item vectors the Redis backend's fold-in reads, kept in process per vector generation.
//!
//! A refold reads the vectors of every recent item of the user (200 at steady state, about
//! 51 KB at 64 dimensions), which without this cache is one pipelined `HGET` per item at
//! each event: most of Redis's work and recd's per event once users have filled their
//! recent lists. Every write of item vectors moves `{prefix}vectors:gen` after it (see
//! [`super::gram`]), and the event path reads that counter in the same snapshot as the
//! user's state, so an entry is used only by a refold that read the generation it was
//! fetched under; a newer generation drops the older entries (freeing them: they would
//! never match again). An entry fetched while a vector write was under way may be the new
//! vector under the old generation: the same mix of old and new a refold without the cache
//! reads during a write-back, and gone at the counter's next move.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use moka::sync::Cache;

/// What one entry holds: the generation it was read under and the vector (`None`: the item
/// had none then).
type Entry = (i64, Option<Arc<[f32]>>);

/// The cache (see the module doc); `None` inside when sized 0.
pub(crate) struct FoldVectors {
    cache: Option<Cache<String, Entry>>,
    /// The newest generation seen; entries of older ones were dropped when it moved.
    newest: AtomicI64,
}

impl FoldVectors {
    /// A cache of at most about `max_bytes` of vectors and ids (0: nothing is kept).
    pub(crate) fn new(max_bytes: u64) -> Self {
        let cache = (max_bytes > 0).then(|| {
            Cache::builder()
                .max_capacity(max_bytes)
                .weigher(|id: &String, (_, v): &Entry| {
                    let bytes = id.len() + v.as_ref().map_or(0, |v| v.len() * 4) + 64;
                    u32::try_from(bytes).unwrap_or(u32::MAX)
                })
                .build()
        });
        Self {
            cache,
            newest: AtomicI64::new(i64::MIN),
        }
    }

    /// The vector of `id` as read under `generation`, if kept: `Some(None)` means the item
    /// had no vector then. A generation newer than any seen drops every entry first.
    pub(crate) fn get(&self, generation: i64, id: &str) -> Option<Option<Arc<[f32]>>> {
        let cache = self.cache.as_ref()?;
        if self.newest.fetch_max(generation, Ordering::AcqRel) < generation {
            cache.invalidate_all();
            return None;
        }
        match cache.get(id) {
            Some((at, v)) if at == generation => Some(v),
            _ => None,
        }
    }

    /// Keeps `id`'s vector as read under `generation` (ignored if a newer one was seen).
    pub(crate) fn put(&self, generation: i64, id: &str, vector: Option<&[f32]>) {
        let Some(cache) = &self.cache else { return };
        if self.newest.load(Ordering::Acquire) > generation {
            return;
        }
        cache.insert(id.to_string(), (generation, vector.map(Arc::from)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_serves_only_the_generation_it_was_read_under() {
        let c = FoldVectors::new(1 << 20);
        assert_eq!(c.get(7, "a"), None);
        c.put(7, "a", Some(&[1.0, 2.0]));
        c.put(7, "none", None);
        assert_eq!(c.get(7, "a").flatten().as_deref(), Some(&[1.0f32, 2.0][..]));
        assert_eq!(c.get(7, "none"), Some(None));
        // The counter moved: nothing of generation 7 is served any more.
        assert_eq!(c.get(8, "a"), None);
        c.put(8, "a", Some(&[3.0, 4.0]));
        assert_eq!(c.get(8, "a").flatten().as_deref(), Some(&[3.0f32, 4.0][..]));
        // A refold that read the older generation neither sees nor overwrites the newer.
        assert_eq!(c.get(7, "a"), None);
        c.put(7, "a", Some(&[1.0, 2.0]));
        assert_eq!(c.get(8, "a").flatten().as_deref(), Some(&[3.0f32, 4.0][..]));
    }

    #[test]
    fn sized_zero_it_keeps_nothing() {
        let c = FoldVectors::new(0);
        c.put(1, "a", Some(&[1.0]));
        assert_eq!(c.get(1, "a"), None);
    }
}
