//! A bottom-k sample of the distinct keys of a stream, with each sampled key's exact count.
//!
//! The summary keeps the `capacity` keys with the smallest hashes seen so far and counts
//! their occurrences. Hashes are uniform, so the kept keys are a uniform random sample of
//! the distinct keys (not of the occurrences: a key seen a million times is as likely to be
//! in it as one seen once), and a kept key's count is exact: once full, a key only enters by
//! having a smaller hash than the largest kept one, which can only decrease, so a key with a
//! hash at or below the current [`threshold`](BottomK::threshold) has been kept since its
//! first occurrence. The same argument makes summaries mergeable: over several summaries
//! (the buckets of a window), the keys at or below the smallest threshold have their exact
//! total counts in the union.

use std::collections::BTreeMap;

use crate::error::ValidationError;

/// The most keys a bottom-k summary may keep.
pub const MAX_BOTTOM_K: usize = 1 << 16;

/// The `capacity` smallest key hashes seen, with their counts.
#[derive(Debug, Clone)]
pub struct BottomK {
    capacity: usize,
    counts: BTreeMap<u64, u64>,
    /// Whether some key was left out (evicted or never admitted).
    partial: bool,
}

impl BottomK {
    /// An empty summary keeping up to `capacity` (1..=[`MAX_BOTTOM_K`]) keys.
    pub fn new(capacity: usize) -> Result<Self, ValidationError> {
        if capacity == 0 || capacity > MAX_BOTTOM_K {
            return crate::invalid!(
                "bottom-k capacity must be in 1..={MAX_BOTTOM_K}, got {capacity}"
            );
        }
        Ok(Self {
            capacity,
            counts: BTreeMap::new(),
            partial: false,
        })
    }

    /// Counts one occurrence of a key (by its well-mixed 64-bit hash).
    pub fn insert(&mut self, hash: u64) {
        if let Some(c) = self.counts.get_mut(&hash) {
            *c = c.saturating_add(1);
            return;
        }
        if self.counts.len() < self.capacity {
            self.counts.insert(hash, 1);
            return;
        }
        self.partial = true;
        if self
            .counts
            .last_key_value()
            .is_some_and(|(&max, _)| hash < max)
        {
            self.counts.pop_last();
            self.counts.insert(hash, 1);
        }
    }

    /// `None` while every key seen is kept; else the largest kept hash: exactly the keys
    /// with a hash at or below it are kept.
    pub fn threshold(&self) -> Option<u64> {
        if self.partial {
            self.counts.last_key_value().map(|(&k, _)| k)
        } else {
            None
        }
    }

    /// The exact count of a kept key (`None` when it is not kept).
    pub fn count(&self, hash: u64) -> Option<u64> {
        self.counts.get(&hash).copied()
    }

    /// The kept keys and their exact counts, by ascending hash.
    pub fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.counts.iter().map(|(&k, &c)| (k, c))
    }

    /// Number of keys kept.
    pub fn len(&self) -> usize {
        self.counts.len()
    }

    /// Whether nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// Forgets the stream.
    pub fn clear(&mut self) {
        self.counts.clear();
        self.partial = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_smallest_hashes_with_exact_counts() {
        let mut b = BottomK::new(2).unwrap();
        for h in [50, 10, 50, 30, 10, 70, 10] {
            b.insert(h);
        }
        // 30 pushed 50 out; 70 never got in; 10 counted 3 times since its first occurrence
        assert_eq!(b.iter().collect::<Vec<_>>(), vec![(10, 3), (30, 1)]);
        assert_eq!(b.threshold(), Some(30));
        b.clear();
        b.insert(5);
        assert_eq!((b.threshold(), b.len()), (None, 1));
        assert!(BottomK::new(0).is_err());
    }

    #[test]
    fn the_sample_is_uniform_over_distinct_keys() {
        // 10 000 distinct keys, key i occurring 1 + (i % 3) times: the 500 kept keys have
        // exact counts and a mean count near the population's 2.
        let mut b = BottomK::new(500).unwrap();
        for i in 0..10_000u64 {
            for _ in 0..=(i % 3) {
                b.insert(crate::monitor::key_hash(&i.to_le_bytes()));
            }
        }
        assert_eq!(b.len(), 500);
        let mean = b.iter().map(|(_, c)| c as f64).sum::<f64>() / 500.0;
        assert!((mean - 2.0).abs() < 0.15, "{mean}");
        assert!(b.iter().all(|(_, c)| (1..=3).contains(&c)));
    }
}
