//! The space-saving summary (Metwally, Agrawal & El Abbadi, 2005): the most frequent keys
//! of a stream in a fixed number of counters.
//!
//! At most `capacity` keys are tracked. A tracked key's counter goes up by one per
//! occurrence; an untracked key takes over the counter of the least counted tracked key,
//! inheriting its count as *error* (count = min + 1, error = min). So every counter
//! over-estimates its key's true count by at most its error, the errors are at most
//! total/capacity, every key occurring more than total/capacity times is tracked, and
//! the counters always add up to the stream's length. Until more than `capacity`
//! distinct keys arrive nothing is evicted and every count is exact ([`is_exact`]).
//!
//! Keys are 64-bit hashes ([`key_hash`](crate::monitor::key_hash)), not ids: 16 bytes of key and
//! count per counter plus the ordering index, whatever the ids' length.
//!
//! [`is_exact`]: SpaceSaving::is_exact

use std::collections::{BTreeSet, HashMap};

use crate::error::ValidationError;

/// The most counters a summary may have.
pub const MAX_TOP_K: usize = 1 << 16;

/// One tracked key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counter {
    /// The key (hash).
    pub key: u64,
    /// Its estimated count, an upper bound of the true one.
    pub count: u64,
    /// How much of `count` may be inherited: the true count is in [count − error, count].
    pub error: u64,
}

/// A space-saving summary with a fixed number of counters.
#[derive(Debug, Clone)]
pub struct SpaceSaving {
    capacity: usize,
    /// key → (count, error)
    counters: HashMap<u64, (u64, u64), foldhash::fast::FixedState>,
    /// (count, key), to find the least counted key in O(log k).
    order: BTreeSet<(u64, u64)>,
    total: u64,
    evicted: bool,
}

impl SpaceSaving {
    /// An empty summary of `capacity` (1..=[`MAX_TOP_K`]) counters.
    pub fn new(capacity: usize) -> Result<Self, ValidationError> {
        if capacity == 0 || capacity > MAX_TOP_K {
            return crate::invalid!("top-k capacity must be in 1..={MAX_TOP_K}, got {capacity}");
        }
        Ok(Self {
            capacity,
            counters: HashMap::with_hasher(foldhash::fast::FixedState::default()),
            order: BTreeSet::new(),
            total: 0,
            evicted: false,
        })
    }

    /// Counts one occurrence of a key.
    pub fn insert(&mut self, key: u64) {
        self.total = self.total.saturating_add(1);
        if let Some((count, _)) = self.counters.get_mut(&key) {
            self.order.remove(&(*count, key));
            *count = count.saturating_add(1);
            self.order.insert((*count, key));
            return;
        }
        if self.counters.len() < self.capacity {
            self.counters.insert(key, (1, 0));
            self.order.insert((1, key));
            return;
        }
        // Full: the new key takes over the least counted key's counter.
        let Some((min, victim)) = self.order.pop_first() else {
            return;
        };
        self.counters.remove(&victim);
        let count = min.saturating_add(1);
        self.counters.insert(key, (count, min));
        self.order.insert((count, key));
        self.evicted = true;
    }

    /// The tracked keys, most counted first (ties by key).
    pub fn top(&self) -> Vec<Counter> {
        self.order
            .iter()
            .rev()
            .map(|&(count, key)| Counter {
                key,
                count,
                error: self.counters.get(&key).map_or(0, |&(_, e)| e),
            })
            .collect()
    }

    /// The tracked counters, in no particular order.
    pub fn counters(&self) -> impl Iterator<Item = Counter> + '_ {
        self.counters
            .iter()
            .map(|(&key, &(count, error))| Counter { key, count, error })
    }

    /// The estimated count of a key (0 when untracked).
    pub fn count(&self, key: u64) -> u64 {
        self.counters.get(&key).map_or(0, |&(c, _)| c)
    }

    /// The smallest counter once keys have been evicted (the most an untracked key can have
    /// occurred), 0 while the summary is exact.
    pub fn min_count(&self) -> u64 {
        if self.evicted {
            self.order.first().map_or(0, |&(c, _)| c)
        } else {
            0
        }
    }

    /// Occurrences counted in all (the counters' sum).
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Number of keys tracked.
    pub fn len(&self) -> usize {
        self.counters.len()
    }

    /// Whether nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.counters.is_empty()
    }

    /// Whether every count is exact (no key was ever evicted).
    pub fn is_exact(&self) -> bool {
        !self.evicted
    }

    /// Forgets the stream.
    pub fn clear(&mut self) {
        self.counters.clear();
        self.order.clear();
        self.total = 0;
        self.evicted = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_until_full() {
        let mut s = SpaceSaving::new(3).unwrap();
        for k in [1, 2, 1, 3, 1, 2] {
            s.insert(k);
        }
        assert!(s.is_exact());
        assert_eq!(s.min_count(), 0);
        let top: Vec<(u64, u64)> = s.top().iter().map(|c| (c.key, c.count)).collect();
        assert_eq!(top, vec![(1, 3), (2, 2), (3, 1)]);
        assert!(SpaceSaving::new(0).is_err());
    }

    #[test]
    fn evicts_the_least_counted_and_bounds_the_error() {
        let mut s = SpaceSaving::new(2).unwrap();
        for k in [1, 1, 1, 2, 3] {
            s.insert(k);
        }
        // 3 took over 2's counter (count 1): count 2, error 1; 1 untouched.
        assert!(!s.is_exact());
        assert_eq!(s.count(1), 3);
        assert_eq!(s.count(2), 0);
        let c3 = s.top().into_iter().find(|c| c.key == 3).unwrap();
        assert_eq!((c3.count, c3.error), (2, 1));
        assert_eq!(s.counters().map(|c| c.count).sum::<u64>(), s.total());
        // 1 is tracked with 3; the least counter is 2 → an untracked key occurred ≤ 2 times
        assert_eq!(s.min_count(), 2);
    }

    #[test]
    fn heavy_hitters_survive_a_long_tail() {
        // key 0 is 10 % of 10 000 occurrences; 9 000 others occur once each.
        let mut s = SpaceSaving::new(50).unwrap();
        for i in 0..10_000u64 {
            s.insert(if i % 10 == 0 { 0 } else { 1 + i });
        }
        let top = s.top();
        assert_eq!(top[0].key, 0);
        // over-estimate at most total / capacity = 200
        assert!(top[0].count >= 1000 && top[0].count - top[0].error <= 1000);
        assert!(top[0].count <= 1000 + 200);
        assert_eq!(s.len(), 50);
    }
}
