//! What a redis-backed server keeps in process so that a recommend does not read (and
//! decode) the same items from Redis request after request: decoded items by id, and the
//! popular list per filter.
//!
//! An uncached recommend used to cost Redis a KNN, an `MGET` of the hits' docs, a
//! `ZREVRANGE` and an `MGET` of 50 popular docs, and the server the parsing and JSON decoding
//! of ~130 docs (BENCHMARKS.md, "Redis request path"). With this cache a hit whose item is
//! here costs neither the `MGET` nor the decoding.
//!
//! Nothing here is served unless the server follows every other server's item writes
//! ([`LocalCache::follow`]: the cache invalidation channel is subscribed). Then:
//! - this store's own item writes drop their entries right after the write ran (also when it
//!   failed: it may have been applied), before the write is acknowledged;
//! - another server's writes arrive on the channel ([`LocalCache::forget`]);
//! - when the channel drops (messages may be lost) everything is dropped and nothing is
//!   served or kept until it is back, and dropped again then;
//! - a read that raced with a write never stores what it read: each id's lock shard has an
//!   epoch, taken before the `MGET` is sent and moved by every invalidation of an id of that
//!   shard; an entry is stored only if its epoch did not move in between;
//! - an entry is the item of one doc key (an index version: after a migration, hits name
//!   another version's keys and miss), and lives at most `item_cache_ttl_ms` (a bound for
//!   writes no server announced, e.g. `recd import` run against a live deployment);
//! - a popular list lives at most `popular_refresh_ms` (events move popularity without any
//!   invalidation: that is its staleness bound) and item writes drop every list.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use recd_core::Item;

use crate::PopularHit;

/// Lock shards of the per-id epochs.
const SHARDS: usize = 64;
/// Popular lists kept (one per filter and size); beyond, they start over.
const MAX_POPULAR_LISTS: usize = 256;

/// One cached item: the doc key it was read from (its index version) and the item.
struct Cached {
    doc_key: String,
    item: Arc<Item>,
}

/// A popular list: when it was read, and what.
type Kept = (Instant, Arc<Vec<PopularHit>>);

/// The popular lists and their epoch (moved by every item invalidation).
#[derive(Default)]
struct PopularLists {
    epoch: u64,
    /// By (canonical filter, k).
    lists: HashMap<(String, usize), Kept>,
}

/// See the module doc.
pub(crate) struct LocalCache {
    /// `None`: no item caching (`item_cache = 0` or `item_cache_ttl_ms = 0`).
    items: Option<moka::sync::Cache<String, Arc<Cached>>>,
    /// Per lock shard of ids: moved by every invalidation of one of its ids.
    epochs: Vec<Mutex<u64>>,
    hasher: foldhash::fast::RandomState,
    /// Whether every other server's item write reaches [`LocalCache::forget`].
    live: AtomicBool,
    popular: Mutex<PopularLists>,
    popular_refresh: Duration,
}

/// What [`LocalCache::ticket`] returns: the epoch an id's entry may be stored under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ticket(u64);

impl LocalCache {
    /// A cache of at most `entries` items, each kept at most `ttl`; popular lists kept
    /// `popular_refresh` (zero: not kept). Not live until [`LocalCache::follow`]`(true)`.
    pub(crate) fn new(entries: usize, ttl: Duration, popular_refresh: Duration) -> Self {
        let items = (entries > 0 && !ttl.is_zero()).then(|| {
            moka::sync::Cache::builder()
                .max_capacity(entries as u64)
                .time_to_live(ttl)
                .build()
        });
        LocalCache {
            items,
            epochs: (0..SHARDS).map(|_| Mutex::new(0)).collect(),
            hasher: Default::default(),
            live: AtomicBool::new(false),
            popular: Mutex::new(PopularLists::default()),
            popular_refresh,
        }
    }

    fn shard(&self, id: &str) -> &Mutex<u64> {
        &self.epochs[self.hasher.hash_one(id) as usize % SHARDS]
    }

    /// Whether items are served from here now.
    pub(crate) fn items_live(&self) -> bool {
        self.items.is_some() && self.live.load(Ordering::SeqCst)
    }

    /// The item `id` read from `doc_key`, when cached and live.
    pub(crate) fn item(&self, id: &str, doc_key: &str) -> Option<Arc<Item>> {
        if !self.live.load(Ordering::SeqCst) {
            return None;
        }
        let found = self.items.as_ref()?.get(id)?;
        (found.doc_key == doc_key).then(|| found.item.clone())
    }

    /// Take before reading `id` from Redis; give to [`LocalCache::store`] with what was read.
    pub(crate) fn ticket(&self, id: &str) -> Ticket {
        Ticket(*self.shard(id).lock())
    }

    /// Keeps `item`, read from `doc_key` after `ticket` was taken, unless `id` was
    /// invalidated (or the cache cleared or not live) since.
    pub(crate) fn store(&self, id: &str, doc_key: &str, item: &Arc<Item>, ticket: Ticket) {
        let Some(items) = &self.items else { return };
        let epoch = self.shard(id).lock();
        if *epoch == ticket.0 && self.live.load(Ordering::SeqCst) {
            let cached = Cached {
                doc_key: doc_key.to_string(),
                item: item.clone(),
            };
            items.insert(id.to_string(), Arc::new(cached));
        }
    }

    /// These items were written or deleted (here, or by another server): drop them and
    /// every popular list. An empty `ids` drops the popular lists only.
    pub(crate) fn forget(&self, ids: &[String]) {
        for id in ids {
            let mut epoch = self.shard(id).lock();
            *epoch += 1;
            if let Some(items) = &self.items {
                items.invalidate(id);
            }
        }
        self.drop_popular();
    }

    fn drop_popular(&self) {
        let mut popular = self.popular.lock();
        popular.epoch += 1;
        popular.lists.clear();
    }

    /// Drops everything (and refuses what reads under way would store).
    pub(crate) fn clear(&self) {
        let mut held: Vec<_> = self.epochs.iter().map(|e| e.lock()).collect();
        for epoch in &mut held {
            **epoch += 1;
        }
        if let Some(items) = &self.items {
            items.invalidate_all();
        }
        drop(held);
        self.drop_popular();
    }

    /// Whether the server now hears every other server's item writes. Either way the cache
    /// starts empty: on the way down messages may already be lost, on the way up the ones
    /// sent while it was down are.
    pub(crate) fn follow(&self, live: bool) {
        if live {
            self.clear();
            self.live.store(true, Ordering::SeqCst);
        } else {
            self.live.store(false, Ordering::SeqCst);
            self.clear();
        }
    }

    /// The popular list for (`filter`, `k`), when kept and younger than the refresh bound,
    /// else the epoch to store a fresh one under.
    pub(crate) fn popular(
        &self,
        filter: &str,
        k: usize,
    ) -> Result<Arc<Vec<PopularHit>>, Option<Ticket>> {
        if self.popular_refresh.is_zero() || !self.live.load(Ordering::SeqCst) {
            return Err(None);
        }
        let popular = self.popular.lock();
        match popular.lists.get(&(filter.to_string(), k)) {
            Some((at, list)) if at.elapsed() < self.popular_refresh => Ok(list.clone()),
            _ => Err(Some(Ticket(popular.epoch))),
        }
    }

    /// Keeps a popular list read after `ticket` was taken, unless an item write came since.
    pub(crate) fn store_popular(
        &self,
        filter: String,
        k: usize,
        list: Arc<Vec<PopularHit>>,
        ticket: Ticket,
        read_at: Instant,
    ) {
        let mut popular = self.popular.lock();
        if popular.epoch != ticket.0 || !self.live.load(Ordering::SeqCst) {
            return;
        }
        if popular.lists.len() >= MAX_POPULAR_LISTS {
            popular.lists.clear();
        }
        popular.lists.insert((filter, k), (read_at, list));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: &str) -> Arc<Item> {
        Arc::new(Item {
            id: id.into(),
            vector: None,
            fields: Default::default(),
        })
    }

    fn cache() -> LocalCache {
        LocalCache::new(100, Duration::from_secs(600), Duration::from_secs(600))
    }

    #[test]
    fn nothing_is_served_or_kept_unless_live() {
        let c = cache();
        let t = c.ticket("a");
        c.store("a", "k:a", &item("a"), t);
        assert!(c.item("a", "k:a").is_none());
        c.follow(true);
        let t = c.ticket("a");
        c.store("a", "k:a", &item("a"), t);
        assert!(c.item("a", "k:a").is_some());
        assert!(c.item("a", "k.v2:a").is_none(), "another index version");
        // The channel dropped: nothing served, nothing kept, and still nothing once it is
        // back (messages sent in between are lost).
        c.follow(false);
        assert!(c.item("a", "k:a").is_none());
        let t = c.ticket("a");
        c.store("a", "k:a", &item("a"), t);
        c.follow(true);
        assert!(c.item("a", "k:a").is_none());
    }

    #[test]
    fn a_read_that_raced_with_a_write_is_not_kept() {
        let c = cache();
        c.follow(true);
        // An id in another lock shard than "a" (the hasher is seeded per cache, so a fixed
        // "b" shared a's shard, and its epoch, once in SHARDS runs).
        let b = (0..)
            .map(|i| format!("b{i}"))
            .find(|id| !std::ptr::eq(c.shard("a"), c.shard(id)))
            .expect("some id lands in another shard");
        let b = b.as_str();
        let before = c.ticket("a");
        let other = c.ticket(b);
        // The write lands (and is announced) while the read is under way.
        c.forget(&["a".to_string()]);
        c.store("a", "k:a", &item("a"), before);
        assert!(c.item("a", "k:a").is_none());
        c.store(b, "k:b", &item(b), other);
        assert!(c.item(b, "k:b").is_some(), "another id is not affected");
        let after = c.ticket("a");
        c.store("a", "k:a", &item("a"), after);
        assert!(c.item("a", "k:a").is_some());
        c.forget(&["a".to_string()]);
        assert!(c.item("a", "k:a").is_none());
        // A clear refuses every read under way.
        let t = c.ticket(b);
        c.clear();
        c.store(b, "k:b", &item(b), t);
        assert!(c.item(b, "k:b").is_none());
    }

    #[test]
    fn popular_lists_are_dropped_by_item_writes_and_kept_per_filter() {
        let c = cache();
        assert_eq!(c.popular("{}", 5).err(), Some(None), "not live");
        c.follow(true);
        let Err(Some(t)) = c.popular("{}", 5) else {
            panic!("nothing kept yet")
        };
        let list = Arc::new(vec![PopularHit {
            item: item("a"),
            log_score: 1.0,
        }]);
        c.store_popular("{}".into(), 5, list.clone(), t, Instant::now());
        assert!(c.popular("{}", 5).is_ok());
        assert!(c.popular("{}", 6).is_err());
        let Err(Some(stale)) = c.popular("{\"x\":1}", 5) else {
            panic!()
        };
        c.forget(&[]);
        assert!(c.popular("{}", 5).is_err());
        c.store_popular("{\"x\":1}".into(), 5, list, stale, Instant::now());
        assert!(c.popular("{\"x\":1}", 5).is_err(), "read before the write");
        let off = LocalCache::new(100, Duration::from_secs(1), Duration::ZERO);
        off.follow(true);
        assert_eq!(off.popular("{}", 5).err(), Some(None));
    }
}
