//! Node storage: the contiguous vector arena, the neighbour-list arenas, and the id maps.
//!
//! A *slot* is the internal dense index of a node (0, 1, 2, … in insertion order); an *id* is
//! the caller's `u32`. Every slot ever created stays (removal only marks it deleted and drops
//! its id from `live`), so a slot number read from anywhere is always a valid index.
//!
//! Concurrency contract (see the crate docs for the whole picture): a [`Store`] lives behind
//! the index's `RwLock`. Growing it (new slots), overwriting a vector and removing are done
//! under the write lock; everything else — reading vectors, and reading *and writing*
//! neighbour lists — happens under the read lock. Neighbour lists are arrays of `AtomicU32`
//! (`[len, n0, n1, …]`) so they can change under the read lock: writers of one node's lists
//! serialize on that node's `link_locks` mutex, readers take no lock and may see a list
//! mid-rewrite, which is harmless because every entry is always *some* valid slot.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU32, Ordering};

use parking_lot::Mutex;
use roaring::RoaringBitmap;

use recd_core::vector::{dot, l2_squared};

use crate::distance::Metric;

/// Node storage; see the module docs for the locking contract.
#[derive(Debug)]
pub(crate) struct Store {
    dim: usize,
    metric: Metric,
    /// Max neighbours on level 0 (`2 * M`, as in the HNSW paper).
    m0: usize,
    /// Max neighbours on levels ≥ 1 (`M`).
    m: usize,
    /// `slot * dim ..` is the slot's vector exactly as given (never normalized, so that
    /// `vector()` returns the caller's values); contiguous so that a scan streams memory.
    vectors: Vec<f32>,
    /// `1 / |v|` per slot under cosine (so a score is one dot and one multiply), else 1.
    inv_norms: Vec<f32>,
    /// Level-0 neighbour lists, `1 + m0` atomics per slot: `[len, n0 .. n(m0-1)]`.
    links0: Vec<AtomicU32>,
    /// Level-0 in-degree of each slot (kept up to date by `set_neighbours`), so that pruning
    /// can avoid cutting a node's last in-link.
    in0: Vec<AtomicU32>,
    /// Levels ≥ 1 for the few slots that have them: `level * (1 + m)` atomics.
    upper: Vec<Option<Box<[AtomicU32]>>>,
    /// Top level of each slot (fixed when the slot is created).
    levels: Vec<u8>,
    /// Serializes writers of one slot's neighbour lists (readers never take it).
    link_locks: Vec<Mutex<()>>,
    /// Caller id of each slot.
    slot_ids: Vec<u32>,
    /// Tombstones: a deleted slot still routes graph walks but is never returned.
    deleted: Vec<bool>,
    /// Caller id -> slot, including removed ids (a re-insert revives the same slot).
    id_slots: IdMap,
    /// Ids currently stored (not removed): gives the exact cardinality of `filter ∩ live`.
    live: RoaringBitmap,
}

/// Outcome of [`Store::upsert`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Upserted {
    pub(crate) slot: u32,
}

impl Store {
    pub(crate) fn new(dim: usize, metric: Metric, m: usize) -> Self {
        Store {
            dim,
            metric,
            m0: 2 * m,
            m,
            vectors: Vec::new(),
            inv_norms: Vec::new(),
            links0: Vec::new(),
            in0: Vec::new(),
            upper: Vec::new(),
            levels: Vec::new(),
            link_locks: Vec::new(),
            slot_ids: Vec::new(),
            deleted: Vec::new(),
            id_slots: IdMap::default(),
            live: RoaringBitmap::new(),
        }
    }

    /// Makes room for `additional` more slots (a snapshot load knows its size up front).
    pub(crate) fn reserve(&mut self, additional: usize) {
        self.vectors.reserve(additional.saturating_mul(self.dim));
        self.inv_norms.reserve(additional);
        self.links0.reserve(additional.saturating_mul(1 + self.m0));
        self.in0.reserve(additional);
        self.upper.reserve(additional);
        self.levels.reserve(additional);
        self.link_locks.reserve(additional);
        self.slot_ids.reserve(additional);
        self.deleted.reserve(additional);
    }

    /// Number of slots ever created (live + deleted).
    #[inline]
    pub(crate) fn slots(&self) -> usize {
        self.levels.len()
    }

    pub(crate) fn live(&self) -> &RoaringBitmap {
        &self.live
    }

    pub(crate) fn live_len(&self) -> usize {
        // u64 -> usize: at most u32::MAX ids, fits on every supported platform.
        usize::try_from(self.live.len()).unwrap_or(usize::MAX)
    }

    pub(crate) fn max_links(&self, level: usize) -> usize {
        if level == 0 { self.m0 } else { self.m }
    }

    /// Inserts a new slot for `id`, or overwrites the vector of `id`'s existing slot (reviving
    /// it if it was removed). `level_of` picks the level of a *new* slot from its number.
    pub(crate) fn upsert(
        &mut self,
        id: u32,
        vector: &[f32],
        inv_norm: f32,
        level_of: impl FnOnce(u32) -> u8,
    ) -> Result<Upserted, crate::IndexError> {
        debug_assert_eq!(vector.len(), self.dim);
        if let Some(slot) = self.id_slots.get(id) {
            let s = slot as usize;
            self.vectors[s * self.dim..(s + 1) * self.dim].copy_from_slice(vector);
            self.inv_norms[s] = inv_norm;
            self.deleted[s] = false;
            self.live.insert(id);
            return Ok(Upserted { slot });
        }
        let slot = u32::try_from(self.slots())
            .ok()
            .filter(|&s| s < u32::MAX)
            .ok_or(crate::IndexError::Full)?;
        let level = level_of(slot);
        self.vectors.extend_from_slice(vector);
        self.inv_norms.push(inv_norm);
        self.links0.extend((0..=self.m0).map(|_| AtomicU32::new(0)));
        self.in0.push(AtomicU32::new(0));
        self.upper.push((level > 0).then(|| {
            (0..usize::from(level) * (1 + self.m))
                .map(|_| AtomicU32::new(0))
                .collect()
        }));
        self.levels.push(level);
        self.link_locks.push(Mutex::new(()));
        self.slot_ids.push(id);
        self.deleted.push(false);
        self.id_slots.insert(id, slot, self.slots());
        self.live.insert(id);
        Ok(Upserted { slot })
    }

    /// Marks `id` removed; returns whether it was live.
    pub(crate) fn remove(&mut self, id: u32) -> bool {
        match self.id_slots.get(id) {
            Some(slot) if self.live.remove(id) => {
                self.deleted[slot as usize] = true;
                true
            }
            _ => false,
        }
    }

    /// Live slot of `id`, if any.
    #[inline]
    pub(crate) fn slot_of(&self, id: u32) -> Option<u32> {
        self.id_slots.get(id).filter(|&s| !self.deleted[s as usize])
    }

    #[inline]
    pub(crate) fn id_of(&self, slot: u32) -> u32 {
        self.slot_ids[slot as usize]
    }

    #[inline]
    pub(crate) fn is_deleted(&self, slot: u32) -> bool {
        self.deleted[slot as usize]
    }

    #[inline]
    pub(crate) fn level(&self, slot: u32) -> usize {
        usize::from(self.levels[slot as usize])
    }

    #[inline]
    pub(crate) fn vector(&self, slot: u32) -> &[f32] {
        let s = slot as usize * self.dim;
        &self.vectors[s..s + self.dim]
    }

    /// Hints the CPU to start loading the slot's vector (see `prefetch`).
    #[inline]
    pub(crate) fn prefetch(&self, slot: u32) {
        crate::prefetch::prefetch(self.vector(slot));
    }

    /// The slot's vector in query form (normalized under cosine), for linking it.
    pub(crate) fn query_form(&self, slot: u32) -> Vec<f32> {
        let inv = self.inv_norms[slot as usize];
        self.vector(slot).iter().map(|x| x * inv).collect()
    }

    /// Distance (lower is better) from a prepared query (normalized under cosine) to a slot.
    #[inline]
    pub(crate) fn distance(&self, query: &[f32], slot: u32) -> f32 {
        let v = self.vector(slot);
        match self.metric {
            Metric::Cosine => -dot(query, v) * self.inv_norms[slot as usize],
            Metric::InnerProduct => -dot(query, v),
            Metric::L2 => l2_squared(query, v),
        }
    }

    /// Distance between two stored slots.
    #[inline]
    pub(crate) fn distance_between(&self, a: u32, b: u32) -> f32 {
        let (va, vb) = (self.vector(a), self.vector(b));
        match self.metric {
            Metric::Cosine => {
                -dot(va, vb) * self.inv_norms[a as usize] * self.inv_norms[b as usize]
            }
            Metric::InnerProduct => -dot(va, vb),
            Metric::L2 => l2_squared(va, vb),
        }
    }

    /// The `[len, n0, ..]` block of a slot's neighbour list on `level`.
    #[inline]
    fn block(&self, slot: u32, level: usize) -> &[AtomicU32] {
        if level == 0 {
            let w = 1 + self.m0;
            let s = slot as usize * w;
            &self.links0[s..s + w]
        } else {
            let w = 1 + self.m;
            let upper = self.upper[slot as usize]
                .as_deref()
                .expect("upper links exist for every level <= the slot's level");
            &upper[(level - 1) * w..level * w]
        }
    }

    /// Copies the slot's neighbours on `level` into `out` (cleared first). Lock-free; may
    /// observe a list mid-rewrite (every entry is still a valid slot).
    #[inline]
    pub(crate) fn neighbours(&self, slot: u32, level: usize, out: &mut Vec<u32>) {
        out.clear();
        let block = self.block(slot, level);
        let len = (block[0].load(Ordering::Acquire) as usize).min(block.len() - 1);
        out.extend(block[1..=len].iter().map(|a| a.load(Ordering::Relaxed)));
    }

    /// Level-0 in-degree of a slot (approximate while links are being written).
    #[inline]
    pub(crate) fn in_degree(&self, slot: u32) -> u32 {
        self.in0[slot as usize].load(Ordering::Relaxed)
    }

    /// Replaces the slot's neighbours on `level`. The caller must hold `lock_links(slot)`.
    pub(crate) fn set_neighbours(&self, slot: u32, level: usize, list: &[u32]) {
        let block = self.block(slot, level);
        let len = list.len().min(block.len() - 1);
        if level == 0 {
            let old_len = (block[0].load(Ordering::Relaxed) as usize).min(block.len() - 1);
            let old: Vec<u32> = block[1..=old_len]
                .iter()
                .map(|a| a.load(Ordering::Relaxed))
                .collect();
            let new = &list[..len];
            for &n in old.iter().filter(|n| !new.contains(n)) {
                self.in0[n as usize].fetch_sub(1, Ordering::Relaxed);
            }
            for &n in new.iter().filter(|n| !old.contains(n)) {
                self.in0[n as usize].fetch_add(1, Ordering::Relaxed);
            }
        }
        for (a, &n) in block[1..=len].iter().zip(list) {
            a.store(n, Ordering::Relaxed);
        }
        // `len` fits: it is at most 2 * M, and M is clamped far below u32::MAX.
        block[0].store(len as u32, Ordering::Release);
    }

    /// Locks the slot's neighbour lists against other writers.
    pub(crate) fn lock_links(&self, slot: u32) -> parking_lot::MutexGuard<'_, ()> {
        self.link_locks[slot as usize].lock()
    }
}

/// Caller id -> slot. Ids are expected to be dense-ish, so ids up to a few times the number
/// of slots live in a plain array (one load per lookup, which matters for the filtered exact
/// scan); ids far beyond that go to a hash map so that one huge id cannot blow up memory.
#[derive(Debug, Default)]
struct IdMap {
    /// `dense[id]` is the slot of `id`, or `NONE`.
    dense: Vec<u32>,
    /// Ids `>= dense.len()`.
    sparse: HashMap<u32, u32, BuildHasherDefault<IdHasher>>,
}

impl IdMap {
    const NONE: u32 = u32::MAX;

    #[inline]
    fn get(&self, id: u32) -> Option<u32> {
        match self.dense.get(id as usize) {
            Some(&s) => (s != Self::NONE).then_some(s),
            None => self.sparse.get(&id).copied(),
        }
    }

    /// Maps `id` (not mapped yet) to `slot`; `slots` is the slot count after the insert.
    fn insert(&mut self, id: u32, slot: u32, slots: usize) {
        let i = id as usize;
        let limit = slots.saturating_mul(4).saturating_add(1 << 16);
        if i >= self.dense.len() && i < limit {
            let new_len = (i + 1).max(self.dense.len() * 2).min(limit);
            self.dense.resize(new_len, Self::NONE);
            // Ids that were sparse and now fall inside the array move into it.
            let dense = &mut self.dense;
            self.sparse
                .retain(|&id, &mut s| match dense.get_mut(id as usize) {
                    Some(d) => {
                        *d = s;
                        false
                    }
                    None => true,
                });
        }
        match self.dense.get_mut(i) {
            Some(d) => *d = slot,
            None => {
                self.sparse.insert(id, slot);
            }
        }
    }
}

/// Hasher for `u32` keys that are caller ids (no HashDoS concern: the index is in-process and
/// ids come from the embedding application). A multiply-shift mix; far cheaper than SipHash.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.0 = (u64::from(n) ^ self.0).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 ^= self.0 >> 29;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upsert_remove_revive() {
        let mut s = Store::new(2, Metric::L2, 4);
        let a = s.upsert(7, &[1.0, 2.0], 1.0, |_| 0).expect("insert");
        let b = s.upsert(9, &[3.0, 4.0], 1.0, |_| 2).expect("insert");
        assert_eq!((a.slot, b.slot), (0, 1));
        assert_eq!(s.level(1), 2);
        assert_eq!(s.live_len(), 2);
        assert!(s.remove(7));
        assert!(!s.remove(7));
        assert!(!s.remove(8));
        assert_eq!(s.slot_of(7), None);
        assert_eq!(s.live_len(), 1);
        let again = s.upsert(7, &[5.0, 6.0], 1.0, |_| 0).expect("revive");
        assert_eq!(again.slot, 0, "a re-insert reuses the slot");
        assert_eq!(s.vector(0), &[5.0, 6.0]);
        assert_eq!(s.slot_of(7), Some(0));
    }

    #[test]
    fn id_map_dense_sparse_and_migration() {
        let mut m = IdMap::default();
        m.insert(3_000_000_000, 0, 1);
        m.insert(5, 1, 2);
        m.insert(70_000, 2, 3);
        assert_eq!(m.get(3_000_000_000), Some(0));
        assert_eq!(m.get(5), Some(1));
        assert_eq!(m.get(70_000), Some(2));
        assert_eq!(m.get(6), None);
        assert_eq!(m.get(4_000_000_000), None);
        // Grow the array past 70,000: the sparse entry must move into it.
        for i in 0..20_000u32 {
            m.insert(100_000 + i, 3 + i, 4 + i as usize);
        }
        assert!(m.dense.len() > 70_000);
        assert_eq!(m.get(70_000), Some(2));
        assert_eq!(m.get(119_999), Some(20_002));
        assert_eq!(m.get(3_000_000_000), Some(0));
    }

    #[test]
    fn neighbour_lists_round_trip_and_truncate() {
        let mut s = Store::new(2, Metric::L2, 2);
        for id in 0..6 {
            s.upsert(id, &[0.0, 0.0], 1.0, |slot| if slot == 5 { 1 } else { 0 })
                .expect("insert");
        }
        let mut out = Vec::new();
        s.neighbours(0, 0, &mut out);
        assert!(out.is_empty());
        {
            let _g = s.lock_links(0);
            s.set_neighbours(0, 0, &[1, 2, 3, 4, 5]);
        }
        s.neighbours(0, 0, &mut out);
        assert_eq!(out, vec![1, 2, 3, 4], "level 0 holds at most 2 * M");
        assert_eq!((s.in_degree(1), s.in_degree(5)), (1, 0));
        {
            let _g = s.lock_links(0);
            s.set_neighbours(0, 0, &[4, 5]);
        }
        let degrees: Vec<u32> = (0..6).map(|i| s.in_degree(i)).collect();
        assert_eq!(
            degrees,
            vec![0, 0, 0, 0, 1, 1],
            "in-degrees follow rewrites"
        );
        s.set_neighbours(5, 1, &[0, 1, 2]);
        s.neighbours(5, 1, &mut out);
        assert_eq!(out, vec![0, 1]);
    }
}
