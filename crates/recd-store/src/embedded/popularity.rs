//! Item popularity of the embedded backend, sharded so that events of different items
//! never wait for each other.
//!
//! Two sharded structures: log-domain scores by item id (every id an event touched, item or
//! not yet), and, for live items, the ranking by slot (a `BTreeSet` per shard plus the score
//! by slot, so that ranking a filtered set costs an index per item, not a string hash).
//! An event's update locks one score shard and one ranking shard. A `popular` query
//! read-locks every ranking shard and merges their best-first orders.
//!
//! Lock order (with the catalog's): catalog → score shard → ranking shard. Linking and
//! unlinking slots happens under the catalog's write lock, score updates under its read
//! lock, so a slot's ranking entry always carries its item's current score.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::hash::{BuildHasher, RandomState};

use parking_lot::{Mutex, RwLock, RwLockReadGuard};
use recd_core::popularity::log_add;
use roaring::RoaringBitmap;

const SCORE_SHARDS: usize = 64;
const RANK_SHARDS: usize = 16;

/// Below this many allowed slots, popular items are picked from the allowed set directly
/// instead of walking the ranking until enough pass.
const DIRECT_POPULAR_LIMIT: u64 = 4096;

/// A log-domain popularity that sorts descending, ties by slot ascending.
#[derive(Debug, Clone, Copy)]
pub struct RankKey(pub f64, pub u32);

impl PartialEq for RankKey {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for RankKey {}
impl PartialOrd for RankKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for RankKey {
    fn cmp(&self, other: &Self) -> Ordering {
        other.0.total_cmp(&self.0).then(self.1.cmp(&other.1))
    }
}

#[derive(Debug, Default)]
struct RankShard {
    /// Live slots of this shard, best first.
    ranking: BTreeSet<RankKey>,
    /// Score by `slot / RANK_SHARDS`; `-inf` for slots not linked.
    by_slot: Vec<f64>,
}

/// Popularity scores and the ranking of live items.
#[derive(Debug)]
pub struct Popularity {
    scores: Vec<Mutex<HashMap<String, f64>>>,
    ranks: Vec<RwLock<RankShard>>,
    hasher: RandomState,
}

impl Default for Popularity {
    fn default() -> Self {
        Self {
            scores: (0..SCORE_SHARDS).map(|_| Mutex::default()).collect(),
            ranks: (0..RANK_SHARDS).map(|_| RwLock::default()).collect(),
            hasher: RandomState::new(),
        }
    }
}

fn rank_pos(slot: u32) -> (usize, usize) {
    (slot as usize % RANK_SHARDS, slot as usize / RANK_SHARDS)
}

impl Popularity {
    fn score_shard(&self, id: &str) -> &Mutex<HashMap<String, f64>> {
        &self.scores[(self.hasher.hash_one(id) as usize) % SCORE_SHARDS]
    }

    /// The score of `id` (`-inf` if nobody touched it).
    pub fn of(&self, id: &str) -> f64 {
        self.score_shard(id)
            .lock()
            .get(id)
            .copied()
            .unwrap_or(f64::NEG_INFINITY)
    }

    /// Sets a score at start-up, before any slot is linked.
    pub fn load(&self, id: String, score: f64) {
        self.score_shard(&id).lock().insert(id, score);
    }

    /// Adds a log-domain increment to `id`'s score; `slot` is its slot if it is a live item
    /// (read under the catalog's read lock, which the caller holds).
    pub fn add(&self, id: &str, increment: f64, slot: Option<u32>) {
        let mut scores = self.score_shard(id).lock();
        let old = scores.get(id).copied().unwrap_or(f64::NEG_INFINITY);
        let new = log_add(old, increment);
        match scores.get_mut(id) {
            Some(s) => *s = new,
            None => {
                scores.insert(id.to_string(), new);
            }
        }
        if let Some(slot) = slot {
            let (shard, at) = rank_pos(slot);
            let mut r = self.ranks[shard].write();
            if let Some(p) = r.by_slot.get_mut(at) {
                let old = std::mem::replace(p, new);
                r.ranking.remove(&RankKey(old, slot));
                r.ranking.insert(RankKey(new, slot));
            }
        }
    }

    /// Ranks `slot` (a live item with id `id`) by `id`'s score; under the catalog's write lock.
    pub fn link(&self, slot: u32, id: &str) {
        let score = self.of(id);
        let (shard, at) = rank_pos(slot);
        let mut r = self.ranks[shard].write();
        if r.by_slot.len() <= at {
            r.by_slot.resize(at + 1, f64::NEG_INFINITY);
        }
        let old = std::mem::replace(&mut r.by_slot[at], score);
        r.ranking.remove(&RankKey(old, slot));
        r.ranking.insert(RankKey(score, slot));
    }

    /// Stops ranking `slot` (its item is gone); under the catalog's write lock.
    pub fn unlink(&self, slot: u32) {
        let (shard, at) = rank_pos(slot);
        let mut r = self.ranks[shard].write();
        if let Some(p) = r.by_slot.get_mut(at) {
            let old = std::mem::replace(p, f64::NEG_INFINITY);
            r.ranking.remove(&RankKey(old, slot));
        }
    }

    /// A consistent view of the ranking for one query.
    pub fn read(&self) -> RankView<'_> {
        RankView {
            shards: self.ranks.iter().map(|r| r.read()).collect(),
        }
    }
}

/// The ranking, read-locked.
#[derive(Debug)]
pub struct RankView<'a> {
    shards: Vec<RwLockReadGuard<'a, RankShard>>,
}

impl RankView<'_> {
    /// The score of a linked slot (`-inf` otherwise).
    pub fn of_slot(&self, slot: u32) -> f64 {
        let (shard, at) = rank_pos(slot);
        self.shards[shard]
            .by_slot
            .get(at)
            .copied()
            .unwrap_or(f64::NEG_INFINITY)
    }

    /// The `k` most popular linked slots within `allowed` (`None`: all), with their scores,
    /// best first; ties by slot ascending. `live` tells the catalog's live slots (those
    /// linked), for a small `allowed` set that is ranked directly.
    pub fn top(
        &self,
        k: usize,
        allowed: Option<&RoaringBitmap>,
        live: impl Fn(u32) -> bool,
    ) -> Vec<(u32, f64)> {
        if k == 0 {
            return Vec::new();
        }
        if let Some(set) = allowed
            && set.len() <= DIRECT_POPULAR_LIMIT
        {
            let mut keys: Vec<RankKey> = set
                .iter()
                .filter(|slot| live(*slot))
                .map(|slot| RankKey(self.of_slot(slot), slot))
                .collect();
            keys.sort_unstable();
            keys.truncate(k);
            return keys.into_iter().map(|RankKey(s, slot)| (slot, s)).collect();
        }
        // k-way merge of the shards' best-first orders.
        let mut iters: Vec<_> = self.shards.iter().map(|s| s.ranking.iter()).collect();
        let mut heads: BinaryHeap<Reverse<(RankKey, usize)>> = BinaryHeap::new();
        for (i, it) in iters.iter_mut().enumerate() {
            if let Some(key) = it.next() {
                heads.push(Reverse((*key, i)));
            }
        }
        let mut out = Vec::with_capacity(k);
        while let Some(Reverse((key, i))) = heads.pop() {
            if allowed.is_none_or(|set| set.contains(key.1)) {
                out.push((key.1, key.0));
                if out.len() == k {
                    break;
                }
            }
            if let Some(next) = iters[i].next() {
                heads.push(Reverse((*next, i)));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_like_one_sorted_list() {
        let p = Popularity::default();
        let n = 100u32;
        for slot in 0..n {
            p.link(slot, &format!("i{slot}"));
        }
        for slot in 0..n {
            // scores 0..n with a few ties
            p.add(&format!("i{slot}"), f64::from((slot * 7) % 50), Some(slot));
        }
        p.add("ghost", 1000.0, None);
        let mut want: Vec<RankKey> = (0..n)
            .map(|s| RankKey(f64::from((s * 7) % 50), s))
            .collect();
        want.sort();
        let view = p.read();
        let all: Vec<u32> = view
            .top(1000, None, |_| true)
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        assert_eq!(all, want.iter().map(|k| k.1).collect::<Vec<_>>());
        let even: RoaringBitmap = (0..n).filter(|s| s % 2 == 0).collect();
        let got: Vec<u32> = view
            .top(5, Some(&even), |_| true)
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        let want_even: Vec<u32> = want
            .iter()
            .map(|k| k.1)
            .filter(|s| s % 2 == 0)
            .take(5)
            .collect();
        assert_eq!(got, want_even);
        drop(view);
        assert_eq!(p.of("ghost"), 1000.0);
        p.unlink(3);
        assert!(
            p.read()
                .top(1000, None, |_| true)
                .iter()
                .all(|(s, _)| *s != 3)
        );
        assert!(
            p.read()
                .top(10, Some(&[3u32].into_iter().collect()), |s| s != 3)
                .is_empty()
        );
    }
}
