//! Local invalidation without scanning: every cache key carries the generation of what it
//! depends on (a user, an item, every list), read before the value is computed. An
//! invalidation moves the generation on, so later requests use a new key: they miss, never
//! see the old entry, and never join a computation that started before the invalidation
//! (which would break read-your-writes). Orphaned entries age out by TTL or size.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Generations of users, items, every list and every item's details.
pub struct Generations {
    /// The source of every generation: strictly increasing.
    counter: AtomicU64,
    /// The last invalidation of each recently invalidated user (`u:`) or item (`i:`).
    /// A mark only has to outlive the entries computed before it: any entry computed before
    /// an invalidation expires within the longest TTL, so marks live that long and then
    /// fall back to generation 0 without reviving anything.
    marks: moka::sync::Cache<String, u64>,
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
            marks: moka::sync::Cache::builder()
                .time_to_live(max_ttl + Duration::from_secs(1))
                .build(),
            lists: AtomicU64::new(0),
            details: AtomicU64::new(0),
        }
    }

    fn next(&self) -> u64 {
        self.counter.fetch_add(1, Ordering::SeqCst)
    }

    /// The generation of user `id`'s lists.
    pub fn user(&self, id: &str) -> u64 {
        self.marks.get(&user_key(id)).unwrap_or(0)
    }

    /// The generation of item `id`'s details.
    pub fn item(&self, id: &str) -> u64 {
        self.marks.get(&item_key(id)).unwrap_or(0)
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
        self.marks.insert(user_key(id), g);
    }

    /// Drops item `id`'s details.
    pub fn bump_item(&self, id: &str) {
        let g = self.next();
        self.marks.insert(item_key(id), g);
    }

    /// Drops every list (an item was written or deleted somewhere).
    pub fn bump_lists(&self) {
        let g = self.next();
        self.lists.store(g, Ordering::SeqCst);
    }
}

fn user_key(id: &str) -> String {
    format!("u:{id}")
}

fn item_key(id: &str) -> String {
    format!("i:{id}")
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
}
