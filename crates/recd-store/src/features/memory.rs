//! The in-process feature store: users' and items' states in sharded maps (a request
//! locks one user shard and the item shards of its candidates, briefly, never all), and
//! state idle beyond the feature set's TTL swept away as writes go by.
//!
//! Items keep a snapshot of their windows and rates beside their state
//! ([`recd_core::features::CachedItem`]): a request reads it while it holds (until the
//! item's next event, or the next bucket boundary of its windows; an impression updates
//! its rates in place) instead of re-summing every candidate's buckets; the values are
//! the same.

use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use async_trait::async_trait;
use hashbrown::HashTable;
use parking_lot::Mutex;
use recd_core::features::{CachedItem, EntityState, FeatureSet, TagIds, Target};
use recd_core::{Event, Item};

use super::FeatureStore;
use crate::StoreResult;

const SHARDS: usize = 32;
/// One shard is swept for expired state every this many writes.
const SWEEP_EVERY: u64 = 1024;

/// Ids are hashed with foldhash, seeded per process, instead of SipHash.
type Hasher = foldhash::fast::RandomState;
/// A shard's entries, each found by its id's hash ([`Map::hash`]). A table of explicit
/// hashes: the id is hashed once per request and candidate, and that hash picks the shard
/// and finds the entry; a `HashMap` per shard hashed it again for each lookup, and twice
/// per candidate (touch, then read).
type Shard<V> = Mutex<HashTable<(Key, V)>>;

/// A map key that keeps an id of up to 24 bytes inside itself (the map's slot), a longer
/// one on the heap. A request looks up each of its ~150 candidates' item state: with
/// `String` keys every lookup's final comparison read the key's own heap allocation, a
/// cache miss per candidate (that `memcmp` was 8 % of the server's CPU under the learned
/// ranker); inline, the key's bytes come with the slot. It hashes and compares as the
/// `str` it holds, so the maps are looked up by `&str`.
type Key = compact_str::CompactString;

/// Entities of one kind, sharded by id: users' [`EntityState`]s, items' [`CachedItem`]s.
#[derive(Debug)]
struct Map<V> {
    shards: Vec<Shard<V>>,
    hasher: Hasher,
}

/// What the sweep needs of an entry.
trait Expiring {
    fn expired(&self, now_ms: i64, ttl_ms: i64) -> bool;
}

impl Expiring for EntityState {
    fn expired(&self, now_ms: i64, ttl_ms: i64) -> bool {
        EntityState::expired(self, now_ms, ttl_ms)
    }
}

impl Expiring for CachedItem {
    fn expired(&self, now_ms: i64, ttl_ms: i64) -> bool {
        self.state().expired(now_ms, ttl_ms)
    }
}

impl<V: Expiring + Default> Map<V> {
    fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashTable::new())).collect(),
            hasher: Hasher::default(),
        }
    }

    /// The hash `id` is kept under.
    fn hash(&self, id: &str) -> u64 {
        self.hasher.hash_one(id)
    }

    /// The shard of an id whose hash is `hash`. The table inside uses the hash's low bits
    /// (bucket) and top 7 (tag): the shard takes bits from the middle, so that the entries
    /// of one shard still spread over its buckets and differ in their tags.
    fn shard_of(hash: u64) -> usize {
        (hash >> 32) as usize % SHARDS
    }

    fn shard(&self, hash: u64) -> &Shard<V> {
        &self.shards[Self::shard_of(hash)]
    }

    /// Runs `f` on `id`'s entry, made (default) when there is none.
    fn update<R>(&self, id: &str, f: impl FnOnce(&mut V) -> R) -> R {
        let hash = self.hash(id);
        let mut shard = self.shard(hash).lock();
        let entry = shard.entry(
            hash,
            |(k, _)| k.as_str() == id,
            |(k, _)| self.hash(k.as_str()),
        );
        let (_, value) = entry
            .or_insert_with(|| (Key::from(id), V::default()))
            .into_mut();
        f(value)
    }

    /// Runs `f` on `id`'s entry, if there is one.
    fn read<R>(&self, id: &str, f: impl FnOnce(Option<&V>) -> R) -> R {
        let hash = self.hash(id);
        let shard = self.shard(hash).lock();
        f(shard.find(hash, |(k, _)| k.as_str() == id).map(|(_, v)| v))
    }

    /// Drops `id`'s entry.
    fn remove(&self, id: &str) {
        let hash = self.hash(id);
        if let Ok(entry) = self
            .shard(hash)
            .lock()
            .find_entry(hash, |(k, _)| k.as_str() == id)
        {
            entry.remove();
        }
    }

    /// Drops shard `i`'s entries expired at `now_ms`.
    fn sweep(&self, i: usize, now_ms: i64, ttl_ms: i64) {
        self.shards[i]
            .lock()
            .retain(|(_, s)| !s.expired(now_ms, ttl_ms));
    }

    fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }
}

/// The embedded backend's feature store.
#[derive(Debug)]
pub struct MemoryFeatures {
    users: Map<EntityState>,
    items: Map<CachedItem>,
    /// The numbers items' entries keep their tags by (see [`TagIds`]).
    tags: TagIds,
    writes: AtomicU64,
    /// The latest event time seen: "now" for sweeps (so a replay of old events is not
    /// swept as it goes).
    latest_ms: AtomicI64,
}

impl Default for MemoryFeatures {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryFeatures {
    /// An empty store.
    pub fn new() -> Self {
        Self {
            users: Map::new(),
            items: Map::new(),
            tags: TagIds::default(),
            writes: AtomicU64::new(0),
            latest_ms: AtomicI64::new(i64::MIN),
        }
    }

    fn wrote(&self, set: &FeatureSet, at_ms: i64) {
        self.latest_ms.fetch_max(at_ms, Ordering::Relaxed);
        let n = self.writes.fetch_add(1, Ordering::Relaxed);
        if n % SWEEP_EVERY == SWEEP_EVERY - 1 {
            let now = self.latest_ms.load(Ordering::Relaxed);
            let i = (n / SWEEP_EVERY) as usize % SHARDS;
            self.users.sweep(i, now, set.ttl_ms);
            self.items.sweep(i, now, set.ttl_ms);
        }
    }

    /// (users, items, approximate bytes of all users' state): the memory-per-user figure.
    pub fn footprint(&self) -> (usize, usize, usize) {
        let bytes: usize = self
            .users
            .shards
            .iter()
            .map(|s| {
                s.lock()
                    .iter()
                    .map(|(k, v)| k.as_str().len() + v.approx_bytes())
                    .sum::<usize>()
            })
            .sum();
        (self.users.len(), self.items.len(), bytes)
    }
}

#[async_trait]
impl FeatureStore for MemoryFeatures {
    async fn apply_events(
        &self,
        set: &FeatureSet,
        events: &[Event],
        items: &[Option<Arc<Item>>],
    ) -> StoreResult<()> {
        for (i, e) in events.iter().enumerate() {
            let item = items.get(i).and_then(|i| i.as_deref());
            let updates = set.event_updates(e, item);
            if updates.is_empty() {
                continue;
            }
            // One shard lock per target, each held only for its own updates.
            if updates.iter().any(|u| u.target == Target::User) {
                self.users.update(&e.user_id, |state| {
                    for u in updates.iter().filter(|u| u.target == Target::User) {
                        state.apply(&u.key, &u.op, e.timestamp_ms);
                    }
                });
            }
            if updates.iter().any(|u| u.target == Target::Item) {
                self.items.update(&e.item_id, |state| {
                    for u in updates.iter().filter(|u| u.target == Target::Item) {
                        state.apply(&u.key, &u.op, e.timestamp_ms);
                    }
                });
            }
            self.wrote(set, e.timestamp_ms);
        }
        Ok(())
    }

    async fn log_impressions(
        &self,
        set: &FeatureSet,
        items: &[String],
        at_ms: i64,
    ) -> StoreResult<()> {
        let updates = set.impression_updates(at_ms);
        if updates.is_empty() {
            return Ok(());
        }
        for id in items {
            self.items.update(id, |state| {
                for u in &updates {
                    state.apply(&u.key, &u.op, at_ms);
                }
            });
        }
        self.wrote(set, at_ms);
        Ok(())
    }

    async fn values(
        &self,
        set: &FeatureSet,
        user: &str,
        items: &[&Arc<Item>],
        now_ms: i64,
    ) -> StoreResult<Vec<f64>> {
        let d = set.len();
        let mut out = vec![0.0; items.len() * d];
        if d == 0 {
            return Ok(out);
        }
        // The user's side once (its lock released before any item's is taken), then each
        // candidate's item side.
        let view = self.users.read(user, |state| {
            set.user_view_numbered(state, now_ms, &self.tags)
        });
        if view.needs_item_state() {
            // One lock per shard the list touches (~150 candidates over 32 shards), not
            // one per candidate: each lock of a line another core last held is a miss.
            // The candidates are grouped by shard with a counting sort (one pass, no
            // comparisons); each id is hashed once, for its shard and its entry.
            let hashes: Vec<u64> = items.iter().map(|item| self.items.hash(&item.id)).collect();
            let mut start = [0usize; SHARDS + 1];
            for &h in &hashes {
                start[Map::<CachedItem>::shard_of(h) + 1] += 1;
            }
            for s in 0..SHARDS {
                start[s + 1] += start[s];
            }
            let mut next = start;
            let mut by_shard = vec![0usize; items.len()];
            for (i, &h) in hashes.iter().enumerate() {
                let s = Map::<CachedItem>::shard_of(h);
                by_shard[next[s]] = i;
                next[s] += 1;
            }
            // Each candidate's bucket in its shard's table, found in the first pass.
            let mut bucket: Vec<Option<usize>> = vec![None; items.len()];
            for s in 0..SHARDS {
                let run = &by_shard[start[s]..start[s + 1]];
                if run.is_empty() {
                    continue;
                }
                let mut shard = self.items.shards[s].lock();
                // First find and touch every entry of the run: these lookups do not depend
                // on one another, so the processor overlaps their cache misses (the
                // entries of ~150 random items are rarely in cache), where one candidate's
                // lookup followed by its reads waited for each miss in turn.
                let mut touched = 0u64;
                for &i in run {
                    let id = items[i].id.as_str();
                    bucket[i] = shard.find_bucket_index(hashes[i], |(k, _)| k.as_str() == id);
                    if let Some((_, c)) = bucket[i].and_then(|b| shard.get_bucket(b)) {
                        touched ^= c.touch();
                    }
                }
                std::hint::black_box(touched);
                for &i in run {
                    let row = &mut out[i * d..(i + 1) * d];
                    let cached = bucket[i]
                        .and_then(|b| shard.get_bucket_mut(b))
                        .map(|(_, c)| c);
                    view.values_into_cached(cached, items[i], row);
                }
            }
        } else {
            for (item, row) in items.iter().zip(out.chunks_mut(d)) {
                view.values_into(None, item, row);
            }
        }
        Ok(out)
    }

    async fn delete_user(&self, _set: &FeatureSet, user: &str) -> StoreResult<()> {
        self.users.remove(user);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An entry that remembers a number and expires when it is odd.
    #[derive(Debug, Default)]
    struct Numbered(usize);

    impl Expiring for Numbered {
        fn expired(&self, _now_ms: i64, _ttl_ms: i64) -> bool {
            self.0 % 2 == 1
        }
    }

    #[test]
    fn keys_inline_or_not_are_found_by_their_str() {
        let ids = [
            "",
            "i1",
            "exactly-24-bytes-long!!!",
            "twenty-five bytes long...",
            "éééééééééééé",  // 24 bytes of two-byte characters
            "ééééééééééééé", // 26
        ];
        let map: Map<Numbered> = Map::new();
        for (n, id) in ids.iter().enumerate() {
            let key = Key::from(*id);
            assert_eq!(key.as_str(), *id);
            assert_eq!(key.is_heap_allocated(), id.len() > 24, "{id}");
            map.update(id, |v| v.0 = n);
        }
        for (n, id) in ids.iter().enumerate() {
            assert_eq!(map.read(id, |v| v.map(|v| v.0)), Some(n), "{id}");
        }
        assert_eq!(map.read("i2", |v| v.map(|v| v.0)), None);
    }

    /// Entries stay found by their id through the tables' growth (every entry moved by
    /// its recomputed hash), updates, removal and sweeps.
    #[test]
    fn entries_survive_growth_removal_and_sweeps() {
        let map: Map<Numbered> = Map::new();
        let n = 20_000;
        for i in 0..n {
            map.update(&format!("item-{i}"), |v| v.0 = i);
        }
        assert_eq!(map.len(), n);
        for i in 0..n {
            assert_eq!(map.read(&format!("item-{i}"), |v| v.map(|v| v.0)), Some(i));
        }
        // An update reaches the existing entry instead of making a second one.
        map.update("item-7", |v| v.0 += 1);
        assert_eq!(map.read("item-7", |v| v.map(|v| v.0)), Some(8));
        assert_eq!(map.len(), n);
        map.remove("item-8");
        map.remove("not-there");
        assert_eq!(map.read("item-8", |v| v.map(|v| v.0)), None);
        assert_eq!(map.len(), n - 1);
        for s in 0..SHARDS {
            map.sweep(s, 0, 0);
        }
        // The odd numbers expired (item-7 now holds 8, item-8 is gone).
        for i in 0..n {
            let kept = map.read(&format!("item-{i}"), |v| v.map(|v| v.0));
            let want = match i {
                7 => Some(8),
                8 => None,
                _ if i % 2 == 1 => None,
                _ => Some(i),
            };
            assert_eq!(kept, want, "item-{i}");
        }
        // The entries spread over every shard.
        assert!(map.shards.iter().all(|s| !s.lock().is_empty()));
    }
}
