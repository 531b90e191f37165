//! Local invalidation without scanning: every cache key carries the generation of what it
//! depends on (a user, an item, every list), read before the value is computed. An
//! invalidation moves the generation on, so later requests use a new key: they miss, never
//! see the old entry, and never join a computation that started before the invalidation
//! (which would break read-your-writes). Orphaned entries age out by TTL or size.
//!
//! Every event moves its user's generation, so marking is on the event path: a mark is a
//! keyed 64-bit fingerprint of the id in a sharded map (no allocation, no cache policy),
//! and marks age out by swapping a shard's map for a fresh one once per TTL.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Generations of users, items, every list and every item's details.
pub struct Generations {
    /// The source of every generation: strictly increasing.
    counter: AtomicU64,
    /// The last invalidation of each recently invalidated user.
    users: Marks,
    /// The last invalidation of each recently invalidated item's details.
    items: Marks,
    /// The generation of every list: every item write moves it, dropping every list.
    lists: AtomicU64,
    /// The generation of all item details (the catalog source says anything may have changed).
    details: AtomicU64,
}

impl Generations {
    /// Marks live `max_ttl` (the longest any entry lives).
    pub fn new(max_ttl: Duration) -> Self {
        Self {
            counter: AtomicU64::new(1),
            users: Marks::new(max_ttl + Duration::from_secs(1)),
            items: Marks::new(max_ttl + Duration::from_secs(1)),
            lists: AtomicU64::new(0),
            details: AtomicU64::new(0),
        }
    }

    fn next(&self) -> u64 {
        self.counter.fetch_add(1, Ordering::SeqCst)
    }

    /// The generation of user `id`'s lists.
    pub fn user(&self, id: &str) -> u64 {
        self.users.get(id)
    }

    /// The generation of item `id`'s details.
    pub fn item(&self, id: &str) -> u64 {
        self.items.get(id)
    }

    /// The generation of every list.
    pub fn lists(&self) -> u64 {
        self.lists.load(Ordering::SeqCst)
    }

    /// The generation of all item details.
    pub fn details(&self) -> u64 {
        self.details.load(Ordering::SeqCst)
    }

    /// Drops every item's details.
    pub fn bump_details(&self) {
        let g = self.next();
        self.details.store(g, Ordering::SeqCst);
    }

    /// Drops user `id`'s lists.
    pub fn bump_user(&self, id: &str) {
        let g = self.next();
        self.users.set(id, g);
    }

    /// Drops item `id`'s details.
    pub fn bump_item(&self, id: &str) {
        let g = self.next();
        self.items.set(id, g);
    }

    /// Drops every list (an item was written or deleted somewhere).
    pub fn bump_lists(&self) {
        let g = self.next();
        self.lists.store(g, Ordering::SeqCst);
    }
}

/// How many independently locked parts [`Marks`] has: events of different users rarely
/// wait for one another.
const MARK_SHARDS: usize = 16;

/// The generation of each recently marked id, for at least `ttl` after its mark (then 0).
///
/// A mark only has to outlive the entries computed before it: any entry computed before an
/// invalidation expires within the longest TTL, so a mark that is gone after that falls back
/// to generation 0 without reviving anything. Ids are kept as fingerprints from a hasher
/// keyed at random per process: two ids that share one (or a guessed one) only invalidate
/// each other's entries more often, never less, so no collision can serve a stale list.
struct Marks {
    hasher: RandomState,
    ttl: Duration,
    shards: Box<[Mutex<MarkShard>]>,
}

/// One part of [`Marks`]: marks are set in `current`; once per `ttl` it becomes `previous`
/// (and the old `previous` is dropped), so a mark lives between one and two TTLs.
struct MarkShard {
    current: HashMap<u64, u64>,
    previous: HashMap<u64, u64>,
    rotated: Instant,
}

impl Marks {
    fn new(ttl: Duration) -> Self {
        let now = Instant::now();
        Self {
            hasher: RandomState::new(),
            ttl,
            shards: (0..MARK_SHARDS)
                .map(|_| {
                    Mutex::new(MarkShard {
                        current: HashMap::new(),
                        previous: HashMap::new(),
                        rotated: now,
                    })
                })
                .collect(),
        }
    }

    /// The shard of `id`, its TTL turns taken, and the fingerprint.
    fn shard(&self, id: &str) -> (parking_lot::MutexGuard<'_, MarkShard>, u64) {
        let fingerprint = self.hasher.hash_one(id);
        let mut shard = self.shards[(fingerprint >> 60) as usize % MARK_SHARDS].lock();
        let now = Instant::now();
        if now.duration_since(shard.rotated) >= self.ttl {
            shard.previous = std::mem::take(&mut shard.current);
            shard.rotated = now;
        }
        (shard, fingerprint)
    }

    fn get(&self, id: &str) -> u64 {
        let (shard, fingerprint) = self.shard(id);
        shard
            .current
            .get(&fingerprint)
            .or_else(|| shard.previous.get(&fingerprint))
            .copied()
            .unwrap_or(0)
    }

    fn set(&self, id: &str, generation: u64) {
        let (mut shard, fingerprint) = self.shard(id);
        shard.current.insert(fingerprint, generation);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bumps_move_only_their_own_generation() {
        let g = Generations::new(Duration::from_secs(60));
        assert_eq!(g.user("a"), 0);
        g.bump_user("a");
        let a1 = g.user("a");
        assert!(a1 > 0);
        assert_eq!(g.user("b"), 0);
        assert_eq!(g.item("a"), 0, "users and items are separate namespaces");
        g.bump_user("a");
        assert!(g.user("a") > a1);
        let l0 = g.lists();
        g.bump_item("x");
        assert_eq!(g.lists(), l0, "an item's details are not the lists");
        g.bump_lists();
        assert!(g.lists() > l0);
    }

    #[test]
    fn marks_outlive_their_ttl_once_and_then_fall_back_to_zero() {
        let marks = Marks::new(Duration::from_millis(40));
        marks.set("a", 7);
        assert_eq!(marks.get("a"), 7);
        // Age every shard by hand instead of sleeping: one TTL turn keeps the mark...
        let age = |marks: &Marks| {
            for s in marks.shards.iter() {
                let mut s = s.lock();
                s.rotated -= Duration::from_millis(41);
            }
        };
        age(&marks);
        assert_eq!(marks.get("a"), 7, "a mark lives at least one TTL");
        marks.set("b", 9);
        // ...the second drops it.
        age(&marks);
        assert_eq!(marks.get("a"), 0);
        assert_eq!(
            marks.get("b"),
            9,
            "marked after the first turn: still within its TTL"
        );
        marks.set("a", 11);
        assert_eq!(marks.get("a"), 11);
    }
}
