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
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

use parking_lot::Mutex;
use roaring::RoaringBitmap;

use recd_core::vector::{dot, l2_squared};

use crate::distance::Metric;
use crate::hugepages::{HugeVec, huge_vec, huge_vec_with_capacity};
use crate::mapped::{MappedVectors, Vectors};
use crate::quant::{self, CodedQuery, Line, Quantization, Sq8};
use crate::sketch::{self, SketchQuery, Sketcher};

/// Node storage; see the module docs for the locking contract.
#[derive(Debug)]
pub(crate) struct Store {
    dim: usize,
    metric: Metric,
    /// Max neighbours on level 0 (`2 * M`, as in the HNSW paper).
    m0: usize,
    /// Max neighbours on levels ≥ 1 (`M`).
    m: usize,
    /// `slot * dim ..` is the slot's vector in the form the kernels read: normalized under
    /// cosine (so a score is one dot product over one contiguous read; a separate `1 / |v|`
    /// array cost every scored node a second cache miss), as given under the other
    /// metrics. One heap array, or a file mapping in the int8 mode (see `mapped`).
    vectors: Vectors,
    /// Level-0 neighbour lists, `1 + m0` atomics per slot: `[len, n0 .. n(m0-1)]`.
    links0: HugeVec<AtomicU32>,
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
    /// The int8 copy of the vectors, when the index is quantized (see `quant`).
    codes: Option<Codes>,
    /// 1-bit sketches for the first pass of broad filtered scans, in both modes, once
    /// there are [`sketch::MIN_SLOTS`] slots (see `sketch`).
    sketches: Option<Sketches>,
}

/// The quantized copy: `lines` code lines per slot, and the trained quantizer.
#[derive(Debug)]
struct Codes {
    sq: Sq8,
    lines: usize,
    /// `slot * lines ..`: the slot's codes.
    arena: HugeVec<Line>,
    /// `|x̂|²` per slot (l2 distances on codes need it).
    norms2: Vec<f32>,
    /// Slot count at the last training; retrained once the index has doubled.
    trained_at: usize,
}

/// The sketches: `stride` words per slot (the sign words, then the factors).
#[derive(Debug)]
struct Sketches {
    sk: Sketcher,
    stride: usize,
    /// `slot * stride ..`: the slot's sketch.
    arena: HugeVec<u64>,
    /// `|x|²` per slot under l2 (the estimate needs it), empty otherwise.
    norms2: Vec<f32>,
    /// Slot count at the last training; retrained once the index has doubled.
    trained_at: usize,
}

/// Read-only view of the sketches (see [`Store::sketch_view`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct SketchView<'a> {
    /// `slot * stride ..`: the slot's sketch.
    pub(crate) arena: &'a [u64],
    pub(crate) stride: usize,
    /// `|x|²` per slot under l2, empty otherwise.
    pub(crate) norms2: &'a [f32],
}

/// Read-only view of a quantized store's codes (see [`Store::codes_view`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct CodesView<'a> {
    /// `slot * lines ..`: the slot's code lines.
    pub(crate) arena: &'a [Line],
    pub(crate) lines: usize,
    /// `|x̂|²` per slot (l2).
    pub(crate) norms2: &'a [f32],
    pub(crate) metric: Metric,
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
            vectors: Vectors::Heap(huge_vec()),
            links0: huge_vec(),
            in0: Vec::new(),
            upper: Vec::new(),
            levels: Vec::new(),
            link_locks: Vec::new(),
            slot_ids: Vec::new(),
            deleted: Vec::new(),
            id_slots: IdMap::default(),
            live: RoaringBitmap::new(),
            codes: None,
            sketches: None,
        }
    }

    /// The quantization mode in use.
    pub(crate) fn quantization(&self) -> Quantization {
        if self.codes.is_some() {
            Quantization::Int8
        } else {
            Quantization::None
        }
    }

    /// Switches the quantization mode: `Int8` trains on every stored vector and encodes
    /// them all (also how a retraining is done) and moves the `f32` vectors into a file
    /// mapping under `dir` (see `mapped`); `None` drops the codes and moves the vectors back
    /// to the heap. If the file cannot be made the vectors stay on the heap (correct, only
    /// larger) and the error is returned.
    pub(crate) fn set_quantization(&mut self, mode: Quantization, dir: &Path) -> io::Result<()> {
        self.codes = match mode {
            Quantization::None => None,
            Quantization::Int8 => Some(self.trained_codes()),
        };
        match mode {
            Quantization::None => self.move_vectors(None),
            Quantization::Int8 => self.move_vectors(Some(dir)),
        }
    }

    /// Copies the vectors into a file mapping under `dir` (`Some`) or onto the heap
    /// (`None`), unless they are there already. On an error nothing moved.
    fn move_vectors(&mut self, dir: Option<&Path>) -> io::Result<()> {
        let moved = match (&self.vectors, dir) {
            (Vectors::Heap(_), Some(dir)) => {
                let mut m = Vectors::Mapped(MappedVectors::create(dir, self.dim)?);
                for slot in 0..self.slots() as u32 {
                    m.push(self.vector(slot))?;
                }
                m
            }
            (Vectors::Mapped(_), None) => {
                let mut v = huge_vec_with_capacity(self.slots() * self.dim);
                for slot in 0..self.slots() as u32 {
                    v.extend_from_slice(self.vector(slot));
                }
                Vectors::Heap(v)
            }
            _ => return Ok(()),
        };
        self.vectors = moved;
        Ok(())
    }

    /// Retrains the quantizer if the index has doubled since it was last trained (values
    /// outside the old ranges were clamped meanwhile). Called under the write lock after
    /// new slots are appended: `O(slots · dim)`, amortized O(dim) per insert.
    pub(crate) fn maybe_retrain(&mut self) {
        if let Some(c) = &self.codes
            && self.slots() > c.trained_at.saturating_mul(2)
        {
            self.codes = Some(self.trained_codes());
        }
        let stale = match &self.sketches {
            Some(s) => self.slots() > s.trained_at.saturating_mul(2),
            None => self.slots() >= sketch::MIN_SLOTS,
        };
        if stale {
            self.sketches = Some(self.trained_sketches());
        }
    }

    fn trained_sketches(&self) -> Sketches {
        let slots = self.slots();
        let sk = Sketcher::train(self.dim, (0..slots as u32).map(|s| self.vector(s)));
        let stride = sk.words() + 1;
        let mut arena = huge_vec_with_capacity(slots.saturating_mul(2 * stride));
        arena.resize(slots * stride, 0);
        let l2 = self.metric == Metric::L2;
        let mut s = Sketches {
            sk,
            stride,
            arena,
            norms2: vec![0.0; if l2 { slots } else { 0 }],
            trained_at: slots,
        };
        for slot in 0..slots {
            self.sketch_into(&mut s, slot);
        }
        s
    }

    fn sketch_into(&self, s: &mut Sketches, slot: usize) {
        let v = self.vector(slot as u32);
        let norm2 =
            s.sk.encode(v, &mut s.arena[slot * s.stride..(slot + 1) * s.stride]);
        if let Some(n) = s.norms2.get_mut(slot) {
            *n = norm2;
        }
    }

    fn trained_codes(&self) -> Codes {
        let slots = self.slots();
        // Trained on the query form (normalized under cosine): what the codes stand for.
        let sq = Sq8::train(self.dim, (0..slots as u32).map(|s| self.vector(s)));
        let lines = quant::lines_for(self.dim);
        // Room for twice as many (retraining happens at each doubling).
        let mut arena = huge_vec_with_capacity(slots.max(1024).saturating_mul(2 * lines));
        arena.resize(slots * lines, Line::ZERO);
        let mut c = Codes {
            sq,
            lines,
            arena,
            norms2: vec![0.0; slots],
            trained_at: slots,
        };
        for s in 0..slots {
            self.encode_into(&mut c, s);
        }
        c
    }

    fn encode_into(&self, c: &mut Codes, slot: usize) {
        let v = self.vectors.get(slot as u32, self.dim);
        let lines = &mut c.arena[slot * c.lines..(slot + 1) * c.lines];
        c.norms2[slot] = c.sq.encode(v, lines);
    }

    /// Makes room for `additional` more slots (a snapshot load knows its size up front).
    pub(crate) fn reserve(&mut self, additional: usize) {
        self.vectors.reserve(additional, self.dim);
        self.links0.reserve(additional.saturating_mul(1 + self.m0));
        self.in0.reserve(additional);
        self.upper.reserve(additional);
        self.levels.reserve(additional);
        self.link_locks.reserve(additional);
        self.slot_ids.reserve(additional);
        self.deleted.reserve(additional);
        if let Some(c) = &mut self.codes {
            c.arena.reserve(additional.saturating_mul(c.lines));
            c.norms2.reserve(additional);
        }
        if let Some(s) = &mut self.sketches {
            s.arena.reserve(additional.saturating_mul(s.stride));
            s.norms2
                .reserve(if s.norms2.is_empty() { 0 } else { additional });
        }
    }

    /// A copy of this store with its slots renumbered: new slot `i` is old slot `order[i]`
    /// (`order` must hold every slot once: see `reorder`). Ids, vectors, levels, tombstones
    /// and the trained quantizer and sketcher carry over, and every neighbour list is
    /// rewritten in the new numbers, so a walk on the copy visits the same nodes and
    /// returns the same results. Mapped vectors go to a new mapping under `dir`; on an error
    /// (that file cannot be made or grown) this store is untouched.
    pub(crate) fn permuted(&self, order: &[u32], dir: &Path) -> io::Result<Store> {
        debug_assert_eq!(order.len(), self.slots());
        let new_of = crate::reorder::inverse(order);
        let mut out = Store::new(self.dim, self.metric, self.m);
        if matches!(self.vectors, Vectors::Mapped(_)) {
            out.vectors = Vectors::Mapped(MappedVectors::create(dir, self.dim)?);
        }
        out.reserve(order.len());
        for &old in order {
            let s = old as usize;
            let level = self.levels[s];
            out.upsert(self.slot_ids[s], self.vector(old), |_| level)
                .map_err(|e| io::Error::other(e.to_string()))?;
        }
        let mut list = Vec::with_capacity(self.m0);
        for (new, &old) in order.iter().enumerate() {
            for lc in 0..=self.level(old) {
                self.neighbours(old, lc, &mut list);
                for n in &mut list {
                    *n = new_of[*n as usize];
                }
                out.set_neighbours(new as u32, lc, &list);
            }
        }
        for (s, &deleted) in self.deleted.iter().enumerate() {
            if deleted {
                out.remove(self.slot_ids[s]);
            }
        }
        out.codes = self.codes.as_ref().map(|c| Codes {
            sq: c.sq.clone(),
            lines: c.lines,
            arena: permute_rows(&c.arena, c.lines, order),
            norms2: permute_values(&c.norms2, order),
            trained_at: c.trained_at,
        });
        out.sketches = self.sketches.as_ref().map(|s| Sketches {
            sk: s.sk.clone(),
            stride: s.stride,
            arena: permute_rows(&s.arena, s.stride, order),
            norms2: if s.norms2.is_empty() {
                Vec::new()
            } else {
                permute_values(&s.norms2, order)
            },
            trained_at: s.trained_at,
        });
        Ok(out)
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
    /// it if it was removed). `vector` is in stored form (`Metric::stored_form`: the caller
    /// normalizes under cosine). `level_of` picks the level of a *new* slot from its number.
    pub(crate) fn upsert(
        &mut self,
        id: u32,
        vector: &[f32],
        level_of: impl FnOnce(u32) -> u8,
    ) -> Result<Upserted, crate::IndexError> {
        debug_assert_eq!(vector.len(), self.dim);
        if let Some(slot) = self.id_slots.get(id) {
            let s = slot as usize;
            self.vectors.set(slot, vector);
            self.deleted[s] = false;
            self.id_slots.set_removed(id, false);
            self.live.insert(id);
            self.encode_slot(s);
            return Ok(Upserted { slot });
        }
        let slot = u32::try_from(self.slots())
            .ok()
            .filter(|&s| s < IdMap::REMOVED)
            .ok_or(crate::IndexError::Full)?;
        // First, as the only step that can fail (a mapped file that cannot grow): on an
        // error nothing has changed.
        self.vectors
            .push(vector)
            .map_err(|e| crate::IndexError::Storage(e.to_string()))?;
        let level = level_of(slot);
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
        if let Some(c) = &mut self.codes {
            c.arena.extend((0..c.lines).map(|_| Line::ZERO));
            c.norms2.push(0.0);
        }
        if let Some(s) = &mut self.sketches {
            s.arena.extend((0..s.stride).map(|_| 0));
            if self.metric == Metric::L2 {
                s.norms2.push(0.0);
            }
        }
        self.encode_slot(slot as usize);
        Ok(Upserted { slot })
    }

    /// (Re)writes the codes of a slot whose vector was just written.
    fn encode_slot(&mut self, slot: usize) {
        if let Some(mut c) = self.codes.take() {
            self.encode_into(&mut c, slot);
            self.codes = Some(c);
        }
        if let Some(mut s) = self.sketches.take() {
            self.sketch_into(&mut s, slot);
            self.sketches = Some(s);
        }
    }

    /// Marks `id` removed; returns whether it was live.
    pub(crate) fn remove(&mut self, id: u32) -> bool {
        match self.id_slots.get(id) {
            Some(slot) if self.live.remove(id) => {
                self.deleted[slot as usize] = true;
                self.id_slots.set_removed(id, true);
                true
            }
            _ => false,
        }
    }

    /// Whether `id` has a slot (live or removed).
    pub(crate) fn knows(&self, id: u32) -> bool {
        self.id_slots.get(id).is_some()
    }

    /// Live slot of `id`, if any.
    #[inline]
    pub(crate) fn slot_of(&self, id: u32) -> Option<u32> {
        self.id_slots.live_slot(id)
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
        self.vectors.get(slot, self.dim)
    }

    /// Hints the CPU to start loading what `distance` reads for the slot: its vector.
    #[inline]
    pub(crate) fn prefetch(&self, slot: u32) {
        crate::prefetch::prefetch(self.vector(slot));
    }

    /// Starts loading `id_of(slot)`.
    #[inline]
    pub(crate) fn prefetch_id(&self, slot: u32) {
        let s = slot as usize;
        crate::prefetch::prefetch(&self.slot_ids[s..=s]);
    }

    /// The query in the form the code kernel takes, if the index is quantized.
    pub(crate) fn coded_query(&self, q: &[f32]) -> Option<CodedQuery> {
        self.codes.as_ref().map(|c| c.sq.query(q, c.lines))
    }

    /// The slot's code lines. Panics if the index is not quantized (callers get here only
    /// with a `CodedQuery`, which only a quantized store gives out).
    #[inline(always)]
    fn code_lines(&self, slot: u32) -> (&[Line], f32) {
        let c = self
            .codes
            .as_ref()
            .expect("code distances are asked of a quantized store only");
        let s = slot as usize;
        (&c.arena[s * c.lines..(s + 1) * c.lines], c.norms2[s])
    }

    /// Approximate distance from a coded query to a slot, on the same scale as `distance`.
    #[inline(always)]
    pub(crate) fn code_distance(&self, q: &CodedQuery, slot: u32) -> f32 {
        let (lines, norm2) = self.code_lines(slot);
        let dot = q.dot(lines);
        match self.metric {
            Metric::Cosine | Metric::InnerProduct => -dot,
            Metric::L2 => q.norm2 - 2.0 * dot + norm2,
        }
    }

    /// The codes as one borrowed view, for a scan that reads many of them: the mode and
    /// metric are checked once per query instead of once per vector. `None` if the index is
    /// not quantized.
    pub(crate) fn codes_view(&self) -> Option<CodesView<'_>> {
        self.codes.as_ref().map(|c| CodesView {
            arena: &c.arena,
            lines: c.lines,
            norms2: &c.norms2,
            metric: self.metric,
        })
    }

    /// The query in the form the sketch scan takes, if there are sketches.
    pub(crate) fn sketch_query(&self, q: &[f32]) -> Option<SketchQuery> {
        self.sketches
            .as_ref()
            .map(|s| s.sk.query(q, self.metric == Metric::L2))
    }

    /// The sketches as one borrowed view, if there are any.
    pub(crate) fn sketch_view(&self) -> Option<SketchView<'_>> {
        self.sketches.as_ref().map(|s| SketchView {
            arena: &s.arena,
            stride: s.stride,
            norms2: &s.norms2,
        })
    }

    /// Hints the CPU to start loading the slot's codes.
    #[inline]
    pub(crate) fn prefetch_codes(&self, slot: u32) {
        crate::prefetch::prefetch(self.code_lines(slot).0);
    }

    /// Bytes held per part (vectors, codes, graph, bookkeeping), for sizing.
    pub(crate) fn memory(&self) -> crate::index::MemoryUsage {
        use std::mem::size_of;
        let upper: usize = self
            .upper
            .iter()
            .map(|u| u.as_ref().map_or(0, |b| b.len() * size_of::<AtomicU32>()))
            .sum();
        crate::index::MemoryUsage {
            nodes: self.slots(),
            vectors: self.vectors.heap_bytes(),
            vectors_mapped: self.vectors.mapped_bytes(),
            codes: self.codes.as_ref().map_or(0, |c| {
                c.arena.len() * size_of::<Line>() + c.norms2.len() * size_of::<f32>()
            }),
            sketches: self.sketches.as_ref().map_or(0, |s| {
                s.arena.len() * size_of::<u64>() + s.norms2.len() * size_of::<f32>()
            }),
            graph: (self.links0.len() + self.in0.len()) * size_of::<AtomicU32>()
                + upper
                + self.upper.len() * size_of::<Option<Box<[AtomicU32]>>>()
                + self.levels.len()
                + self.link_locks.len() * size_of::<Mutex<()>>(),
            ids: self.slot_ids.len() * size_of::<u32>()
                + self.deleted.len()
                + self.id_slots.dense.len() * size_of::<u32>()
                + self.id_slots.sparse.len() * 2 * size_of::<u32>()
                + self.live.serialized_size(),
        }
    }

    /// Distance (lower is better) from a prepared query (normalized under cosine) to a slot.
    #[inline]
    pub(crate) fn distance(&self, query: &[f32], slot: u32) -> f32 {
        let v = self.vector(slot);
        match self.metric {
            Metric::Cosine | Metric::InnerProduct => -dot(query, v),
            Metric::L2 => l2_squared(query, v),
        }
    }

    /// Distance between two stored slots.
    #[inline]
    pub(crate) fn distance_between(&self, a: u32, b: u32) -> f32 {
        let (va, vb) = (self.vector(a), self.vector(b));
        match self.metric {
            Metric::Cosine | Metric::InnerProduct => -dot(va, vb),
            Metric::L2 => l2_squared(va, vb),
        }
    }

    /// Hints the CPU to start loading the slot's neighbour list on `level`: a walk reads it
    /// when the slot comes off the candidate heap, and without the hint that read was a
    /// cache miss taking 40 % of a quantized walk's time (`perf`, 100k × 64).
    #[inline]
    pub(crate) fn prefetch_links(&self, slot: u32, level: usize) {
        crate::prefetch::prefetch(self.block(slot, level));
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
        self.append_neighbours(slot, level, out);
    }

    /// [`neighbours`](Self::neighbours) added after what `out` holds.
    #[inline]
    pub(crate) fn append_neighbours(&self, slot: u32, level: usize, out: &mut Vec<u32>) {
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

/// `rows` (`width` values per slot) in the slot order `order` (`order[new] = old`), in a new
/// huge-page array.
fn permute_rows<T: Copy>(rows: &[T], width: usize, order: &[u32]) -> HugeVec<T> {
    let mut out = huge_vec_with_capacity(rows.len());
    for &old in order {
        let s = old as usize * width;
        out.extend_from_slice(&rows[s..s + width]);
    }
    out
}

/// `values` (one per slot) in the slot order `order` (`order[new] = old`).
fn permute_values(values: &[f32], order: &[u32]) -> Vec<f32> {
    order.iter().map(|&old| values[old as usize]).collect()
}

/// Caller id -> slot. Ids are expected to be dense-ish, so ids up to a few times the number
/// of slots live in a plain array (one load per lookup, which matters for the filtered exact
/// scan); ids far beyond that go to a hash map so that one huge id cannot blow up memory.
/// A removed id keeps its slot with the [`REMOVED`](Self::REMOVED) bit set, so that the
/// scan's lookup of a live slot is one load (a second one, of the slot's tombstone, was a
/// tenth of a 10 % filter's scan: `perf`).
#[derive(Debug, Default)]
struct IdMap {
    /// `dense[id]` is the slot of `id` (with `REMOVED` if removed), or `NONE`.
    dense: Vec<u32>,
    /// Ids `>= dense.len()`.
    sparse: HashMap<u32, u32, BuildHasherDefault<IdHasher>>,
}

impl IdMap {
    const NONE: u32 = u32::MAX;
    /// Marks a removed id's entry; slots stay below it (`Store::upsert`).
    const REMOVED: u32 = 1 << 31;

    #[inline]
    fn entry(&self, id: u32) -> Option<u32> {
        match self.dense.get(id as usize) {
            Some(&s) => (s != Self::NONE).then_some(s),
            None => self.sparse.get(&id).copied(),
        }
    }

    /// The slot of `id`, live or removed.
    #[inline]
    fn get(&self, id: u32) -> Option<u32> {
        self.entry(id).map(|s| s & !Self::REMOVED)
    }

    /// The slot of `id` if it is live.
    #[inline]
    fn live_slot(&self, id: u32) -> Option<u32> {
        self.entry(id).filter(|s| s & Self::REMOVED == 0)
    }

    /// Sets or clears the removed mark of a mapped `id`.
    fn set_removed(&mut self, id: u32, removed: bool) {
        let entry = match self.dense.get_mut(id as usize) {
            Some(s) if *s != Self::NONE => s,
            Some(_) => return,
            None => match self.sparse.get_mut(&id) {
                Some(s) => s,
                None => return,
            },
        };
        if removed {
            *entry |= Self::REMOVED;
        } else {
            *entry &= !Self::REMOVED;
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
        let a = s.upsert(7, &[1.0, 2.0], |_| 0).expect("insert");
        let b = s.upsert(9, &[3.0, 4.0], |_| 2).expect("insert");
        assert_eq!((a.slot, b.slot), (0, 1));
        assert_eq!(s.level(1), 2);
        assert_eq!(s.live_len(), 2);
        assert!(s.remove(7));
        assert!(!s.remove(7));
        assert!(!s.remove(8));
        assert_eq!(s.slot_of(7), None);
        assert_eq!(s.live_len(), 1);
        let again = s.upsert(7, &[5.0, 6.0], |_| 0).expect("revive");
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
            s.upsert(id, &[0.0, 0.0], |slot| if slot == 5 { 1 } else { 0 })
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
