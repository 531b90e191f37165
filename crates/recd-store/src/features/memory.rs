//! The in-process feature store: users' and items' states in sharded maps (a request
//! locks one user shard and the item shards of its candidates, briefly, never all), and
//! state idle beyond the feature set's TTL swept away as writes go by.
//!
//! Items keep a snapshot of their windows and rates beside their state
//! ([`recd_core::features::CachedItem`]): a request reads it while it holds (until the
//! item's next event, or the next bucket boundary of its windows; an impression updates
//! its rates in place) instead of re-summing every candidate's buckets; the values are
//! the same.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use async_trait::async_trait;
use parking_lot::Mutex;
use recd_core::features::{CachedItem, EntityState, FeatureSet, TagIds, Target};
use recd_core::{Event, Item};

use super::FeatureStore;
use crate::StoreResult;

const SHARDS: usize = 32;
/// One shard is swept for expired state every this many writes.
const SWEEP_EVERY: u64 = 1024;

/// Ids are hashed twice per candidate on the request path (shard, then entry): foldhash,
/// seeded per process, instead of SipHash.
type Hasher = foldhash::fast::RandomState;
type Shard<V> = Mutex<HashMap<Key, V, Hasher>>;

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

impl<V: Expiring> Map<V> {
    fn new() -> Self {
        Self {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(HashMap::with_hasher(Hasher::default())))
                .collect(),
            hasher: Hasher::default(),
        }
    }

    fn shard(&self, id: &str) -> &Shard<V> {
        &self.shards[self.shard_index(id)]
    }

    fn shard_index(&self, id: &str) -> usize {
        (self.hasher.hash_one(id) as usize) % SHARDS
    }

    /// Drops shard `i`'s entries expired at `now_ms`.
    fn sweep(&self, i: usize, now_ms: i64, ttl_ms: i64) {
        self.shards[i]
            .lock()
            .retain(|_, s| !s.expired(now_ms, ttl_ms));
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
                let mut shard = self.users.shard(&e.user_id).lock();
                let state = shard.entry(Key::from(e.user_id.as_str())).or_default();
                for u in updates.iter().filter(|u| u.target == Target::User) {
                    state.apply(&u.key, &u.op, e.timestamp_ms);
                }
            }
            if updates.iter().any(|u| u.target == Target::Item) {
                let mut shard = self.items.shard(&e.item_id).lock();
                let state = shard.entry(Key::from(e.item_id.as_str())).or_default();
                for u in updates.iter().filter(|u| u.target == Target::Item) {
                    state.apply(&u.key, &u.op, e.timestamp_ms);
                }
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
            let mut shard = self.items.shard(id).lock();
            let state = shard.entry(Key::from(id.as_str())).or_default();
            for u in &updates {
                state.apply(&u.key, &u.op, at_ms);
            }
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
        let view = {
            let users = self.users.shard(user).lock();
            set.user_view_numbered(users.get(user), now_ms, &self.tags)
        };
        if view.needs_item_state() {
            // One lock per shard the list touches (~150 candidates over 32 shards), not
            // one per candidate: each lock of a line another core last held is a miss.
            // The candidates are grouped by shard with a counting sort (one pass, no
            // comparisons).
            let shard_of: Vec<usize> = items
                .iter()
                .map(|item| self.items.shard_index(&item.id))
                .collect();
            let mut start = [0usize; SHARDS + 1];
            for &s in &shard_of {
                start[s + 1] += 1;
            }
            for s in 0..SHARDS {
                start[s + 1] += start[s];
            }
            let mut next = start;
            let mut by_shard = vec![0usize; items.len()];
            for (i, &s) in shard_of.iter().enumerate() {
                by_shard[next[s]] = i;
                next[s] += 1;
            }
            for s in 0..SHARDS {
                let run = &by_shard[start[s]..start[s + 1]];
                if run.is_empty() {
                    continue;
                }
                let mut shard = self.items.shards[s].lock();
                // First touch every entry of the run: these lookups do not depend on one
                // another, so the processor overlaps their cache misses (the entries of
                // ~150 random items are rarely in cache), where one candidate's lookup
                // followed by its reads waited for each miss in turn.
                let mut touched = 0u64;
                for &i in run {
                    if let Some(c) = shard.get(items[i].id.as_str()) {
                        touched ^= c.touch();
                    }
                }
                std::hint::black_box(touched);
                for &i in run {
                    let item = &items[i];
                    let row = &mut out[i * d..(i + 1) * d];
                    view.values_into_cached(shard.get_mut(item.id.as_str()), item, row);
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
        self.users.shard(user).lock().remove(user);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let mut map: HashMap<Key, usize, Hasher> = HashMap::with_hasher(Hasher::default());
        for (n, id) in ids.iter().enumerate() {
            let key = Key::from(*id);
            assert_eq!(key.as_str(), *id);
            assert_eq!(key.is_heap_allocated(), id.len() > 24, "{id}");
            map.insert(key, n);
        }
        for (n, id) in ids.iter().enumerate() {
            assert_eq!(map.get(*id), Some(&n), "{id}");
        }
        assert_eq!(map.get("i2"), None);
    }
}
