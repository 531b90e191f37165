//! [`VectorIndex`]: the public, thread-safe index tying the store, the graph, the exact scan
//! and the planner together. Input validation lives here, so nothing below it sees a vector
//! of the wrong length, a non-finite value, or a zero vector under cosine.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use std::path::PathBuf;

use parking_lot::{Mutex, RwLock, RwLockWriteGuard};
use rayon::prelude::*;
use roaring::RoaringBitmap;
use serde::{Deserialize, Serialize};

use recd_core::vector::norm_squared_f64;

use crate::distance::Metric;
use crate::error::{IndexError, SnapshotError};
use crate::flat;
use crate::hnsw::{Admit, Coded, Exact, FILTERED_BATCH, Graph};
use crate::planner::{self, Plan, SearchOptions, Strategy};
use crate::quant::Quantization;
use crate::snapshot::{self, SnapshotInfo};
use crate::store::Store;
use crate::topk::Scored;
use crate::visited::VisitedPool;

/// Largest accepted squared norm: keeps `|q - v|²` and `q · v` finite in f32.
const MAX_NORM_SQUARED: f64 = (f32::MAX / 4.0) as f64;

/// `insert_batch` runs [`VectorIndex::repair`] when `batch * REPAIR_BATCH_RATIO >= nodes`.
const REPAIR_BATCH_RATIO: usize = 64;
/// `insert_bulk` renumbers no index smaller than this before its last step (below it the
/// whole graph stays in cache whatever its order).
const BULK_REORDER_MIN: usize = 16_384;

/// A quantized search re-scores (in `f32`) its best `RESCORE_PER_K * k` candidates by code
/// distance (or all of the walk's `ef`, if fewer), and returns the best `k` of those.
const RESCORE_PER_K: usize = 4;
/// A sketched scan scores about the `SKETCH_PER_K * k` vectors with the lowest bounds
/// first (at least [`MIN_SKETCH_SHORTLIST`]), then whatever else its bounds cannot rule out
/// (see `flat::scan_sketched`), so this only sets how good its first k-th best distance is;
/// it also sets the smallest filter scanned this way (below). 4 (was 20) lets the service's
/// k of 50-100 sketch a 10 % filter of 100k: k = 50, f32 rand10 p50 171 -> 109 µs, cat10
/// 219 -> 180 µs, recall@50 0.997-0.998 (`knn_latency`, 2026-12-04); the recall suite's
/// correlated filters keep 0.99+.
const SKETCH_PER_K: usize = 4;
const MIN_SKETCH_SHORTLIST: usize = 256;
/// A filter is scanned through its sketches only if it admits at least this many times the
/// sketch short list: below that, scoring every allowed vector costs about as much as the
/// first pass would. On `f32` vectors (four lines each) the sketches win from ~2,000
/// allowed ids at k = 10 (rand5: 248 -> 99 µs p50); on int8 codes (one line each) only
/// from ~8,000 (rand10: 165 -> 150 µs, rand5: 84 -> 100 µs; `knn_latency`, 2026-12-04).
const SKETCH_MIN_ALLOWED_PER_SHORTLIST_F32: u64 = 8;
const SKETCH_MIN_ALLOWED_PER_SHORTLIST_CODES: u64 = 32;

/// A planned filtered walk may compute `allowed / WALK_BUDGET_DIVISOR` distances (at
/// least [`MIN_WALK_BUDGET`]) before it falls back to a scan of the allowed ids.
const WALK_BUDGET_DIVISOR: u64 = 4;

/// Floor of a filtered walk's budget: below this a walk is cheap whatever it does.
const MIN_WALK_BUDGET: usize = 4_096;

/// How many re-scored vectors ahead the re-scoring loop prefetches.
const RESCORE_PREFETCH: usize = 8;

/// HNSW construction and search parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HnswParams {
    /// Neighbours per node and level (level 0 keeps up to `2 * m`). Clamped to 2..=128.
    pub m: usize,
    /// Beam width while linking a new node; higher builds slower and searches better.
    pub ef_construction: usize,
    /// Default beam width of a search, on level 1 and on level 0 (raised to `k` when smaller).
    pub ef_search: usize,
}

impl Default for HnswParams {
    fn default() -> Self {
        HnswParams {
            m: 16,
            ef_construction: 200,
            ef_search: 64,
        }
    }
}

/// One search result.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Hit {
    /// The caller's id.
    pub id: u32,
    /// Higher is better: cosine similarity, dot product, or minus the squared L2 distance.
    pub score: f32,
}

/// A concurrent HNSW index over `dim`-dimensional `f32` vectors keyed by caller `u32` ids,
/// with filtered search (see the crate docs for the concurrency design).
#[derive(Debug)]
pub struct VectorIndex {
    dim: usize,
    metric: Metric,
    params: HnswParams,
    /// Vectors, neighbour lists and id maps; write-locked only to add, overwrite or remove.
    store: RwLock<Store>,
    graph: Graph,
    visited: VisitedPool,
    /// Inserts, updates and removes so far (a snapshot policy's clock).
    changes: AtomicU64,
    /// Searches answered per plan, for monitoring the planner.
    plans: PlanCounters,
    /// Where the int8 mode keeps its `f32` vectors (`None`: the system's temp directory).
    vector_dir: Mutex<Option<PathBuf>>,
    /// Held shared by every write and by snapshot writes (some carry slot numbers across
    /// store-lock releases), exclusively by [`reorder`](Self::reorder), which renumbers
    /// every slot: while it copies the index, writers wait here, not on the store's lock,
    /// where a parked writer would also hold up the searches.
    numbering: RwLock<()>,
    /// Vectors inserted or updated since the nodes were last renumbered (see
    /// [`reorder_if_stale`](Self::reorder_if_stale)).
    written_since_reorder: AtomicU64,
}

/// How many searches each plan answered since the index was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlanCounts {
    /// Exact scans chosen by the planner (selective filters, tiny indexes, forced).
    pub exact: u64,
    /// Graph walks (unfiltered, or filtered with the filter applied during the walk).
    pub graph: u64,
    /// Graph walks that found fewer than `min(k, allowed)` hits and fell back to a scan.
    pub graph_then_exact: u64,
    /// Scans chosen by the planner whose first pass read the 1-bit sketches (broad
    /// filters); not counted in `exact`.
    pub sketch_scan: u64,
}

/// How one search was carried out: what `explain` shows of the planner's choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchReport {
    /// `exact` (scan of the allowed ids), `sketch_scan` (a scan whose first pass read the
    /// 1-bit sketches, see [`sketched`](Self::sketched)), `graph` (a walk, the filter
    /// applied during it), or `graph_then_exact` (a walk that found too few allowed nodes,
    /// then a scan).
    pub plan: &'static str,
    /// Beam width of the walk (grown for selective filters); `None` for a scan.
    pub ef: Option<usize>,
    /// Live ids the filter admits (all live ids without a filter).
    pub allowed: u64,
    /// Of those, the ones the exclusion took out (see
    /// [`VectorIndex::search_excluding`]; 0 without one).
    pub excluded: u64,
    /// Live ids in the index.
    pub live: u64,
    /// Candidates re-scored on the `f32` vectors after a search on int8 codes; `None` when
    /// the search read the `f32` vectors throughout (unquantized, or a forced exact scan).
    pub rescored: Option<usize>,
    /// Vectors a scan scored after its first pass on the 1-bit sketches (a broad filter's
    /// scan: the sketch short list and every vector its estimate could not rule out);
    /// `None` when every allowed vector was scored on codes or vectors.
    pub sketched: Option<usize>,
}

/// Bytes an index holds in memory, by part (from the sizes of its arrays; allocator
/// slack and the pooled visited sets not included).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryUsage {
    /// Graph nodes (live and removed).
    pub nodes: usize,
    /// The `f32` vectors and their norms.
    pub vectors: usize,
    /// The int8 codes (and their squared norms); 0 when not quantized.
    pub codes: usize,
    /// The 1-bit sketches broad filtered scans read first (both modes; 0 below 4,096
    /// nodes).
    pub sketches: usize,
    /// The `f32` vectors the int8 mode keeps in a file mapping: page cache, which the
    /// kernel evicts under memory pressure (a search re-reads only its short list), so not
    /// counted in [`total`](Self::total). 0 when not quantized (or when the file could not
    /// be made and the vectors stayed in `vectors`).
    pub vectors_mapped: usize,
    /// Neighbour lists on every level, in-degrees, levels and per-node link locks.
    pub graph: usize,
    /// Id maps, tombstones and the live-id bitmap.
    pub ids: usize,
}

impl MemoryUsage {
    /// All resident parts together (not `vectors_mapped`).
    pub fn total(&self) -> usize {
        self.vectors + self.codes + self.sketches + self.graph + self.ids
    }
}

#[derive(Debug, Default)]
struct PlanCounters {
    exact: AtomicU64,
    graph: AtomicU64,
    graph_then_exact: AtomicU64,
    sketch_scan: AtomicU64,
}

impl VectorIndex {
    /// An empty index. `params.m` is clamped to 2..=128 and `ef_construction` to at least `m`.
    pub fn new(dim: usize, metric: Metric, params: HnswParams) -> Self {
        let m = params.m.clamp(2, 128);
        let params = HnswParams {
            m,
            ef_construction: params.ef_construction.max(m),
            ef_search: params.ef_search.max(1),
        };
        VectorIndex {
            dim,
            metric,
            params,
            store: RwLock::new(Store::new(dim, metric, m)),
            graph: Graph::new(m, params.ef_construction),
            visited: VisitedPool::default(),
            changes: AtomicU64::new(0),
            plans: PlanCounters::default(),
            vector_dir: Mutex::new(None),
            numbering: RwLock::new(()),
            written_since_reorder: AtomicU64::new(0),
        }
    }

    /// An empty index storing `quantization` codes besides the vectors (see
    /// [`set_quantization`](Self::set_quantization)).
    pub fn with_quantization(
        dim: usize,
        metric: Metric,
        params: HnswParams,
        quantization: Quantization,
    ) -> Self {
        let index = Self::new(dim, metric, params);
        // An empty index: a failure to make the vector file only means new vectors go to
        // the heap, as in the plain mode.
        let _ = index.set_quantization(quantization);
        index
    }

    /// Switches what searches read. `Int8` trains the quantizer on every stored vector and
    /// encodes them all (under the write lock: ~`nodes × dim` byte writes, tens of ms at
    /// 1M × 64), and from then on searches walk and scan the codes and re-score a short
    /// list exactly; the `f32` vectors move to an unnamed file mapping in the
    /// [vector directory](Self::set_vector_dir), so that only codes and graph stay
    /// resident. `None` drops the codes and brings the vectors back to the heap. The graph
    /// is the same either way (it is always built on the `f32` vectors), so a snapshot
    /// loads in any mode.
    ///
    /// The mode is always switched; an error says the vector file could not be made, so
    /// the vectors stayed on the heap (answers are the same, memory is not saved).
    pub fn set_quantization(&self, quantization: Quantization) -> std::io::Result<()> {
        let dir = self.vector_dir();
        let _numbering = self.numbering.read();
        let mut st = self.store.write();
        if st.quantization() != quantization {
            st.set_quantization(quantization, &dir)
        } else {
            Ok(())
        }
    }

    /// The directory for the int8 mode's vector file (see [`set_vector_dir`]).
    ///
    /// [`set_vector_dir`]: Self::set_vector_dir
    fn vector_dir(&self) -> PathBuf {
        self.vector_dir
            .lock()
            .clone()
            .unwrap_or_else(std::env::temp_dir)
    }

    /// Where the int8 mode keeps its `f32` vectors (an unnamed file: nothing is left there
    /// after the process ends). Default: the system's temp directory; a server passes its
    /// data directory. Takes effect at the next switch to `Int8`.
    pub fn set_vector_dir(&self, dir: impl Into<PathBuf>) {
        *self.vector_dir.lock() = Some(dir.into());
    }

    /// The quantization mode in use.
    pub fn quantization(&self) -> Quantization {
        self.store.read().quantization()
    }

    /// Bytes held in memory, by part.
    pub fn memory(&self) -> MemoryUsage {
        self.store.read().memory()
    }

    /// How many searches each plan answered (the planner's choices, for metrics).
    pub fn plan_counts(&self) -> PlanCounts {
        PlanCounts {
            exact: self.plans.exact.load(Ordering::Relaxed),
            graph: self.plans.graph.load(Ordering::Relaxed),
            graph_then_exact: self.plans.graph_then_exact.load(Ordering::Relaxed),
            sketch_scan: self.plans.sketch_scan.load(Ordering::Relaxed),
        }
    }

    /// Saves the whole index to `out` — graph, vectors, tombstones and `extra` (opaque
    /// caller bytes, kept verbatim) — in the checksummed format of the `snapshot` module.
    /// Locks are held for one chunk of ~1,000 nodes at a time, so inserts, removes and
    /// searches continue meanwhile; the result is a valid graph of the nodes that existed
    /// when it started, each as it was at some moment during the write (see the module
    /// docs: a caller that must know the exact contents verifies them after loading).
    pub fn write_snapshot<W: std::io::Write>(
        &self,
        out: W,
        extra: &[u8],
    ) -> std::io::Result<SnapshotInfo> {
        let shape = (
            self.dim,
            self.metric,
            self.params.m,
            self.params.ef_construction,
        );
        // The layout is fixed with writers kept out (on `numbering`, so that searches go
        // on); then they may write again while the records stream out.
        let numbering = self.numbering.write();
        let layout = snapshot::Layout::of(&self.store.read(), self.graph.entry());
        let _numbering = RwLockWriteGuard::downgrade(numbering);
        snapshot::encode(&self.store, layout, shape, out, extra)
    }

    /// Renumbers the nodes in a locality order (the upper levels first, then level 0
    /// breadth-first, see `reorder`), so that the nodes one search visits sit close
    /// together in memory: the same graph answers the same results, faster
    /// (`BENCHMARKS.md`, session 20). A bulk build ends in this order
    /// ([`insert_bulk`](Self::insert_bulk)) and snapshots are written in it, so a loaded
    /// index has it; writes made since then are at the end (see
    /// [`reorder_if_stale`](Self::reorder_if_stale)).
    ///
    /// Builds a renumbered copy (the index's memory twice over, for a moment: ~0.15 s per
    /// 100k × 64 nodes) under the read lock, so searches go on; writes wait until it is
    /// swapped in, and searches only for the swap. On an error (the int8 mode's vector file
    /// cannot be made) the index is unchanged.
    pub fn reorder(&self) -> std::io::Result<()> {
        let dir = self.vector_dir();
        // No write is in flight from here on, and none starts: the store only changes
        // under `numbering`, so the copy stays exact while it is made.
        let _numbering = self.numbering.write();
        let (renumbered, order, entry) = {
            let st = self.store.read();
            let entry = self.graph.entry();
            let order = crate::reorder::locality_order(&st, entry.map(|(slot, _)| slot));
            (st.permuted(&order, &dir)?, order, entry)
        };
        let old = {
            let mut st = self.store.write();
            if let Some((slot, level)) = entry {
                // The order starts from the entry point, so this finds it at once.
                let new = order.iter().position(|&s| s == slot).unwrap_or(0);
                self.graph.set_entry(new as u32, level);
            }
            std::mem::replace(&mut *st, renumbered)
        };
        // Freed after the lock: hundreds of MB at 1M nodes.
        drop(old);
        // Nothing was written since the copy started: writes wait on `numbering`.
        self.written_since_reorder.store(0, Ordering::Relaxed);
        Ok(())
    }

    /// Renumbers the nodes ([`reorder`](Self::reorder)) if the vectors inserted or updated
    /// since the last renumbering are at least a sixteenth of the nodes: after a training
    /// write-back (which re-links every node in place) or enough new items, the node order
    /// no longer follows the graph. Returns whether it renumbered. A server calls it now
    /// and then in the background.
    pub fn reorder_if_stale(&self) -> std::io::Result<bool> {
        let written = self.written_since_reorder.load(Ordering::Relaxed);
        let nodes = self.nodes() as u64;
        if written == 0 || written.saturating_mul(16) < nodes {
            return Ok(false);
        }
        self.reorder().map(|()| true)
    }

    /// Loads an index saved by [`write_snapshot`](Self::write_snapshot), for `dim` and
    /// `metric` with `params` (`m` must be the saved one; `ef_search` and `ef_construction`
    /// may differ). Returns the index and the saved `extra` bytes. Any damage, truncation or
    /// mismatch is an error, never a panic.
    pub fn read_snapshot(
        bytes: &[u8],
        dim: usize,
        metric: Metric,
        params: HnswParams,
    ) -> Result<(Self, &[u8]), SnapshotError> {
        let index = Self::new(dim, metric, params);
        let decoded = snapshot::decode(bytes, dim, metric, index.params.m, |v| index.validate(v))?;
        *index.store.write() = decoded.store;
        if let Some((slot, level)) = decoded.entry {
            index.graph.set_entry(slot, level);
        }
        Ok((index, decoded.extra))
    }

    /// How many inserts, updates and removes this index has taken (not persisted: counts
    /// from zero in each process). Snapshot policies compare it between snapshots.
    pub fn changes(&self) -> u64 {
        self.changes.load(Ordering::Relaxed)
    }

    /// Whether `id` is stored with exactly what inserting `vector` would store (bit for
    /// bit; under cosine that is the normalized vector) — how a caller checks a loaded
    /// snapshot against its own data. An invalid `vector` is never held.
    pub fn holds(&self, id: u32, vector: &[f32]) -> bool {
        let Ok(inv) = self.validate(vector) else {
            return false;
        };
        // Compared component by component, without building the stored form: a reopen
        // checks every item this way.
        let st = self.store.read();
        st.slot_of(id).is_some_and(|slot| {
            let v = st.vector(slot);
            v.len() == vector.len()
                && v.iter()
                    .zip(vector)
                    .all(|(a, &b)| a.to_bits() == self.metric.stored_value(b, inv).to_bits())
        })
    }

    /// The stored (not removed) ids.
    pub fn ids(&self) -> RoaringBitmap {
        self.store.read().live().clone()
    }

    /// Graph nodes, removed ones included (they stay as waypoints until a rebuild): with
    /// [`len`](Self::len), how much of the graph is dead weight.
    pub fn nodes(&self) -> usize {
        self.store.read().slots()
    }

    /// Inserts `id`, or replaces its vector if it is already present (or was removed).
    /// Safe to call from many threads, concurrently with searches.
    pub fn insert(&self, id: u32, vector: &[f32]) -> Result<(), IndexError> {
        let stored = self.stored_form(vector)?;
        self.changes.fetch_add(1, Ordering::Relaxed);
        let _numbering = self.numbering.read();
        self.written_since_reorder.fetch_add(1, Ordering::Relaxed);
        let mut w = self.store.write();
        let slot = w.upsert(id, &stored, |s| self.graph.random_level(s))?.slot;
        w.maybe_retrain();
        let st = RwLockWriteGuard::downgrade(w);
        let mut visited = self.visited.take(st.slots());
        self.graph.link(&st, slot, &mut visited);
        self.visited.give_back(visited);
        Ok(())
    }

    /// Inserts or updates many vectors (a rebuild, an import, a large re-insert):
    /// [`insert_batch`] in steps of `step` vectors, calling `progress` with the count done
    /// after each, and renumbering the nodes in graph order ([`reorder`]) along the way, so
    /// that later steps' linking walks, and the searches after the call, read nodes in
    /// graph order:
    /// - whenever the vectors written since the last renumbering reach the node count at
    ///   that renumbering (a build renumbers at each doubling, from 16,384 nodes);
    /// - at the end, as [`reorder_if_stale`](Self::reorder_if_stale) does: if the vectors
    ///   written since the last renumbering are at least a sixteenth of the nodes (a few
    ///   stale vectors re-inserted after a restart do not pay a renumbering).
    ///
    /// On an error the steps before it stay inserted.
    ///
    /// [`insert_batch`]: Self::insert_batch
    /// [`reorder`]: Self::reorder
    pub fn insert_bulk(
        &self,
        items: &[(u32, Vec<f32>)],
        step: usize,
        mut progress: impl FnMut(usize),
    ) -> Result<(), IndexError> {
        let mut ordered_nodes = self.nodes();
        let mut since = 0usize;
        let mut done = 0usize;
        let reorder = || {
            self.reorder()
                .map_err(|e| IndexError::Storage(e.to_string()))
        };
        for chunk in items.chunks(step.max(1)) {
            self.insert_batch(chunk)?;
            done += chunk.len();
            since += chunk.len();
            if since >= ordered_nodes.max(BULK_REORDER_MIN) {
                reorder()?;
                (ordered_nodes, since) = (self.nodes(), 0);
            }
            progress(done);
        }
        self.reorder_if_stale()
            .map_err(|e| IndexError::Storage(e.to_string()))?;
        Ok(())
    }

    /// Inserts or updates many vectors, linking them in parallel on the rayon pool. Every
    /// vector is validated before anything is written, so an invalid item leaves the index
    /// unchanged. If an id appears twice, the later vector wins.
    pub fn insert_batch(&self, items: &[(u32, Vec<f32>)]) -> Result<(), IndexError> {
        let stored = items
            .iter()
            .map(|(_, v)| self.stored_form(v))
            .collect::<Result<Vec<_>, _>>()?;
        self.changes
            .fetch_add(items.len() as u64, Ordering::Relaxed);
        // The slots handed out below are linked under later read locks.
        let _numbering = self.numbering.read();
        self.written_since_reorder
            .fetch_add(items.len() as u64, Ordering::Relaxed);
        let mut slots = {
            let mut w = self.store.write();
            // Room for the new ids up front: one move of each array at most, and fresh
            // pages that fault in as huge pages (see `hugepages`).
            let new = items.iter().filter(|(id, _)| !w.knows(*id)).count();
            w.reserve(new);
            let mut slots = Vec::with_capacity(items.len());
            for ((id, _), v) in items.iter().zip(&stored) {
                slots.push(w.upsert(*id, v, |s| self.graph.random_level(s))?.slot);
            }
            w.maybe_retrain();
            slots
        };
        // An id given twice has one slot; link it once.
        let mut seen = RoaringBitmap::new();
        slots.retain(|&s| seen.insert(s));

        // Work is handed out in insertion order from a shared counter (not rayon's
        // split-in-halves), so the graph grows roughly as a sequential build would.
        let next = AtomicUsize::new(0);
        let work = || {
            let mut visited = self.visited.take(0);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(&slot) = slots.get(i) else { break };
                // One read lock per node, so writers (single inserts, removes) get a turn.
                let st = self.store.read();
                visited.reset(st.slots());
                self.graph.link(&st, slot, &mut visited);
            }
            self.visited.give_back(visited);
        };
        if !self.graph.has_entry() && !slots.is_empty() {
            // The first node becomes the entry point; link a few more before going parallel
            // so that the threads do not all start from a one-node graph.
            let warm = slots.len().min(64);
            let st = self.store.read();
            let mut visited = self.visited.take(st.slots());
            for &slot in &slots[..warm] {
                self.graph.link(&st, slot, &mut visited);
            }
            self.visited.give_back(visited);
            next.store(warm, Ordering::Relaxed);
        }
        let threads = rayon::current_num_threads().max(1);
        (0..threads).into_par_iter().for_each(|_| work());
        // Parallel linking can strand a few nodes; a large batch pays for a reachability
        // pass (one read of every level-0 list, ~1-2 % of the batch's linking time).
        if slots.len().saturating_mul(REPAIR_BATCH_RATIO) >= self.store.read().slots() {
            self.repair_held();
        }
        Ok(())
    }

    /// Reconnects any live node that a graph walk can no longer reach (see the crate docs),
    /// returning how many there were. `insert_batch` runs it after large batches; callers
    /// that stream many single inserts may run it now and then (it takes one pass over all
    /// neighbour lists, under the read lock, so searches continue meanwhile).
    pub fn repair(&self) -> usize {
        let _numbering = self.numbering.read();
        self.repair_held()
    }

    /// [`repair`](Self::repair) for a caller already holding `numbering`.
    fn repair_held(&self) -> usize {
        let st = self.store.read();
        let mut reached = self.visited.take(st.slots());
        let mut scratch = self.visited.take(st.slots());
        let n = self.graph.repair(&st, &mut reached, &mut scratch);
        self.visited.give_back(reached);
        self.visited.give_back(scratch);
        n
    }

    /// Removes `id`; returns whether it was present. A removed id is never returned by a
    /// search; its node stays in the graph as a waypoint until the index is rebuilt.
    pub fn remove(&self, id: u32) -> bool {
        let _numbering = self.numbering.read();
        let removed = self.store.write().remove(id);
        if removed {
            self.changes.fetch_add(1, Ordering::Relaxed);
        }
        removed
    }

    /// The stored vector of `id`: as it was given, normalized under cosine.
    pub fn vector(&self, id: u32) -> Option<Vec<f32>> {
        let st = self.store.read();
        st.slot_of(id).map(|slot| st.vector(slot).to_vec())
    }

    /// Whether `id` is stored.
    pub fn contains(&self, id: u32) -> bool {
        self.store.read().slot_of(id).is_some()
    }

    /// Score of `id`'s vector against `query`, on the same scale as [`search`](Self::search);
    /// `Ok(None)` if `id` is not stored.
    pub fn score(&self, id: u32, query: &[f32]) -> Result<Option<f32>, IndexError> {
        let q = self.prepare_query(query)?;
        let st = self.store.read();
        Ok(st.slot_of(id).map(|slot| -st.distance(&q, slot)))
    }

    /// The (approximate) `k` best matches for `query`, best first, among the ids in `filter`
    /// if one is given. The filter is applied during retrieval: selective filters are
    /// scanned exactly, broad ones walk the graph admitting only allowed ids, and at least
    /// `min(k, |filter ∩ stored|)` hits are always returned.
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        filter: Option<&RoaringBitmap>,
    ) -> Result<Vec<Hit>, IndexError> {
        self.search_with(query, k, filter, SearchOptions::default())
    }

    /// The exact `k` best matches (brute force), best first; ties go to the smaller id.
    pub fn exact_search(
        &self,
        query: &[f32],
        k: usize,
        filter: Option<&RoaringBitmap>,
    ) -> Result<Vec<Hit>, IndexError> {
        let options = SearchOptions {
            strategy: Strategy::Exact,
            ..SearchOptions::default()
        };
        self.search_with(query, k, filter, options)
    }

    /// [`search`](Self::search) with explicit `ef` and strategy (for tuning and benchmarks).
    pub fn search_with(
        &self,
        query: &[f32],
        k: usize,
        filter: Option<&RoaringBitmap>,
        options: SearchOptions,
    ) -> Result<Vec<Hit>, IndexError> {
        self.search_explained(query, k, filter, options)
            .map(|(hits, _)| hits)
    }

    /// The planner's estimate of what an `Auto` search of `k` costs among `allowed` live ids
    /// (`None`: unfiltered) with the beam `ef` (`None`: the default, widened for a filter as
    /// a search does), in the nanoseconds of its cost model (see `planner`): for a caller
    /// choosing between indexes that can answer the same query (the store's per-value graphs
    /// beside its main index). Only comparisons between such estimates mean anything.
    pub fn estimated_cost(&self, allowed: Option<u64>, k: usize, ef: Option<usize>) -> f64 {
        let st = self.store.read();
        let live = st.live().len();
        let card = allowed.map_or(live, |a| a.min(live));
        let sketch_r = k.saturating_mul(SKETCH_PER_K).max(MIN_SKETCH_SHORTLIST);
        let min_allowed = (sketch_r as u64).saturating_mul(match st.codes_view() {
            Some(_) => SKETCH_MIN_ALLOWED_PER_SHORTLIST_CODES,
            None => SKETCH_MIN_ALLOWED_PER_SHORTLIST_F32,
        });
        let sketched = allowed.is_some() && card >= min_allowed && st.sketch_view().is_some();
        planner::auto_cost(
            allowed.is_some(),
            card,
            live,
            k,
            ef.unwrap_or(self.params.ef_search),
            ef.is_none(),
            sketched,
        )
    }

    /// [`search_with`](Self::search_with), also saying how the search was carried out.
    pub fn search_explained(
        &self,
        query: &[f32],
        k: usize,
        filter: Option<&RoaringBitmap>,
        options: SearchOptions,
    ) -> Result<(Vec<Hit>, SearchReport), IndexError> {
        self.search_excluding(query, k, filter, &RoaringBitmap::new(), options)
    }

    /// [`search_explained`](Self::search_explained) among the ids in `filter` (all when
    /// `None`) that are not in `exclude`: the `k` best of those, as many as exist.
    ///
    /// The exclusion is applied during retrieval, as a filter is. A caller that asked for
    /// `k + |exclude|` results and dropped the excluded ones afterwards (a recommender hiding
    /// what the user has seen: the items nearest their vector) made every walk as wide as
    /// `k + |exclude|`: with 200 seen items and 50 candidates a recommend's search asked for
    /// ~300 and was half of its CPU (BENCHMARKS.md, sessions 32-33). Here a walk keeps its
    /// beam and skips excluded nodes as results (it still walks through them); a scan scans
    /// `filter \ exclude`.
    pub fn search_excluding(
        &self,
        query: &[f32],
        k: usize,
        filter: Option<&RoaringBitmap>,
        exclude: &RoaringBitmap,
        options: SearchOptions,
    ) -> Result<(Vec<Hit>, SearchReport), IndexError> {
        let q = self.prepare_query(query)?;
        let st = self.store.read();
        if k == 0 {
            let report = SearchReport {
                plan: "exact",
                ef: None,
                allowed: 0,
                excluded: 0,
                live: st.live().len(),
                rescored: None,
                sketched: None,
            };
            return Ok((Vec::new(), report));
        }
        let ef = options.ef.unwrap_or(self.params.ef_search);
        let live = st.live().len();
        // The cardinality alone decides the plan, and a scan iterates the filter itself
        // (ids without a live slot are skipped there), so `filter ∩ live` is built only for
        // a walk, whose predicate tests it per visited node: building it cost a 10 % scan
        // an allocation and page faults (`perf`).
        let exclude = (!exclude.is_empty()).then_some(exclude);
        // Excluded ids the search would otherwise admit: they do not count as allowed.
        let filtered_live = filter.map_or(live, |f| admitted(f, st.live()));
        let excluded_live = match (exclude, filter) {
            (None, _) => 0,
            (Some(e), None) => e.intersection_len(st.live()),
            (Some(e), Some(f)) => (e & f).intersection_len(st.live()),
        };
        let card = filtered_live - excluded_live;
        // What a scan iterates with an exclusion: `filter \ exclude` (every live id without
        // a filter), built only if a scan runs.
        let scan_set = std::cell::OnceCell::new();
        let scan_ids = || -> Option<&RoaringBitmap> {
            match exclude {
                None => filter,
                Some(e) => Some(scan_set.get_or_init(|| filter.unwrap_or(st.live()) - e)),
            }
        };
        // A forced exact search stays exact (it is the oracle); everything else reads the
        // codes when there are any.
        let coded = match options.strategy {
            Strategy::Exact => None,
            Strategy::Auto | Strategy::Graph => st.coded_query(&q),
        };
        let exact_scorer = Exact { st: &st, q: &q };
        let shortlist = k.saturating_mul(RESCORE_PER_K);
        // A broad filter's scan reads the sketches first and scores about the `sketch_r`
        // lowest bounds, then what they cannot rule out (see `flat::scan_sketched`); a
        // forced exact search never does (it is the oracle).
        let sketch_r = k.saturating_mul(SKETCH_PER_K).max(MIN_SKETCH_SHORTLIST);
        let min_allowed = (sketch_r as u64).saturating_mul(match coded {
            Some(_) => SKETCH_MIN_ALLOWED_PER_SHORTLIST_CODES,
            None => SKETCH_MIN_ALLOWED_PER_SHORTLIST_F32,
        });
        let sketched = match (filter, options.strategy) {
            (Some(_), Strategy::Auto | Strategy::Graph) if card >= min_allowed => {
                st.sketch_view().zip(st.sketch_query(&q))
            }
            _ => None,
        };
        let plan = planner::plan(
            options.strategy,
            filter.is_some(),
            card,
            live,
            k,
            ef,
            options.ef.is_none(),
            sketched.is_some(),
        );
        let scan_unsketched = |report: &mut SearchReport| match &coded {
            Some(cq) => {
                let scorer = Coded { st: &st, q: cq };
                let found = match scan_ids() {
                    Some(ids) => match st.codes_view() {
                        Some(view) => flat::scan_codes(&st, view, cq, shortlist, ids),
                        None => flat::scan_ids(&st, &scorer, shortlist, ids),
                    },
                    None => flat::scan_all(&st, &scorer, shortlist),
                };
                report.rescored = Some(found.len());
                rescore(&st, &q, found, k, |id| st.slot_of(id))
            }
            None => match scan_ids() {
                Some(ids) => flat::scan_ids(&st, &exact_scorer, k, ids),
                None => flat::scan_all(&st, &exact_scorer, k),
            },
        };
        let scan = |report: &mut SearchReport| {
            if let (Some((view, sq)), Some(ids)) = (&sketched, scan_ids()) {
                let sizes = |keep| flat::SketchSizes {
                    k,
                    keep,
                    first: sketch_r,
                };
                return match &coded {
                    Some(cq) => {
                        let scorer = Coded { st: &st, q: cq };
                        let (found, scored) =
                            flat::scan_sketched(&st, *view, sq, &scorer, sizes(shortlist), ids);
                        report.sketched = Some(scored);
                        report.rescored = Some(found.len());
                        rescore(&st, &q, found, k, |id| st.slot_of(id))
                    }
                    None => {
                        let (found, scored) =
                            flat::scan_sketched(&st, *view, sq, &exact_scorer, sizes(k), ids);
                        report.sketched = Some(scored);
                        found
                    }
                };
            }
            scan_unsketched(report)
        };
        let mut report = SearchReport {
            plan: "exact",
            ef: None,
            allowed: filtered_live,
            excluded: excluded_live,
            live,
            rescored: None,
            sketched: None,
        };
        let found = match plan {
            Plan::Exact if sketched.is_some() => {
                self.plans.sketch_scan.fetch_add(1, Ordering::Relaxed);
                report.plan = "sketch_scan";
                scan(&mut report)
            }
            Plan::Exact => {
                self.plans.exact.fetch_add(1, Ordering::Relaxed);
                scan(&mut report)
            }
            Plan::Graph { ef } => {
                report.ef = Some(ef);
                // The walk tests `filter ∩ live` per node. When every filtered id is live
                // (the usual case: a caller filters its own live items) that is the filter
                // itself; building the copy cost ~2 % of a 10 % walk at 1M (`perf`).
                let allowed = filter.map(|f| {
                    if filtered_live == f.len() {
                        Cow::Borrowed(f)
                    } else {
                        Cow::Owned(f & st.live())
                    }
                });
                // Read only for a node that would enter the results (`search_layer`).
                let excluded = |s: u32| exclude.is_some_and(|e| e.contains(st.id_of(s)));
                let mut visited = self.visited.take(st.slots());
                // A planned filtered walk may score up to a quarter of the allowed nodes
                // (a scan scores them all, each faster) before it gives up and scans; see
                // `hnsw::search_layer`. Unfiltered and forced walks are not capped.
                let mut budget = match (&allowed, options.strategy) {
                    (Some(_), Strategy::Auto) => {
                        usize::try_from(card / WALK_BUDGET_DIVISOR).unwrap_or(usize::MAX)
                    }
                    _ => usize::MAX,
                }
                .max(MIN_WALK_BUDGET);
                let res = match (&coded, &allowed) {
                    (Some(cq), Some(ids)) => self.graph.search(
                        &st,
                        &Coded { st: &st, q: cq },
                        ef,
                        FILTERED_BATCH,
                        InFilter {
                            st: &st,
                            ids,
                            exclude,
                        },
                        &mut visited,
                        &mut budget,
                    ),
                    (Some(cq), None) => self.graph.search(
                        &st,
                        &Coded { st: &st, q: cq },
                        ef,
                        1,
                        |s| !st.is_deleted(s) && !excluded(s),
                        &mut visited,
                        &mut budget,
                    ),
                    (None, Some(ids)) => self.graph.search(
                        &st,
                        &exact_scorer,
                        ef,
                        FILTERED_BATCH,
                        InFilter {
                            st: &st,
                            ids,
                            exclude,
                        },
                        &mut visited,
                        &mut budget,
                    ),
                    (None, None) => self.graph.search(
                        &st,
                        &exact_scorer,
                        ef,
                        1,
                        |s| !st.is_deleted(s) && !excluded(s),
                        &mut visited,
                        &mut budget,
                    ),
                };
                self.visited.give_back(visited);
                if budget == 0 || (res.len() as u64) < card.min(k as u64) {
                    // The walk ran out of budget, or could not reach enough allowed nodes:
                    // scan (never return fewer matches than exist).
                    self.plans.graph_then_exact.fetch_add(1, Ordering::Relaxed);
                    report.plan = "graph_then_exact";
                    scan(&mut report)
                } else {
                    self.plans.graph.fetch_add(1, Ordering::Relaxed);
                    report.plan = "graph";
                    let mut res = if coded.is_some() {
                        let mut res = res;
                        res.truncate(shortlist);
                        report.rescored = Some(res.len());
                        rescore(&st, &q, res, k, Some)
                    } else {
                        res
                    };
                    res.truncate(k);
                    for s in &mut res {
                        s.key = st.id_of(s.key);
                    }
                    // Equal scores in id order, as the scans give them: an answer must
                    // not depend on how the nodes happen to be numbered (see `reorder`).
                    res.sort_unstable();
                    res
                }
            }
        };
        Ok((found.into_iter().map(to_hit).collect(), report))
    }

    /// Number of stored (not removed) vectors.
    pub fn len(&self) -> usize {
        self.store.read().live_len()
    }

    /// Whether the index holds no vectors.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Vector dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Similarity metric.
    pub fn metric(&self) -> Metric {
        self.metric
    }

    /// Effective parameters (after clamping).
    pub fn params(&self) -> HnswParams {
        self.params
    }

    /// Checks a vector and returns `1 / |v|` under cosine (1 otherwise).
    fn validate(&self, v: &[f32]) -> Result<f32, IndexError> {
        if v.len() != self.dim {
            return Err(IndexError::DimensionMismatch {
                expected: self.dim,
                got: v.len(),
            });
        }
        if let Some(position) = v.iter().position(|x| !x.is_finite()) {
            return Err(IndexError::NonFinite { position });
        }
        let n2 = norm_squared_f64(v);
        if n2 > MAX_NORM_SQUARED {
            return Err(IndexError::NormOverflow);
        }
        match self.metric {
            Metric::Cosine => {
                let inv = (1.0 / n2.sqrt()) as f32;
                if n2 == 0.0 || !inv.is_finite() {
                    return Err(IndexError::ZeroVector);
                }
                Ok(inv)
            }
            Metric::InnerProduct | Metric::L2 => Ok(1.0),
        }
    }

    /// A validated vector in the form the index stores and scores it (normalized under
    /// cosine; see [`Metric::stored_form`]).
    fn stored_form<'v>(&self, v: &'v [f32]) -> Result<Cow<'v, [f32]>, IndexError> {
        let inv = self.validate(v)?;
        Ok(self.metric.stored_form(v, inv))
    }

    /// A validated query in the form the kernels expect (normalized under cosine).
    fn prepare_query(&self, query: &[f32]) -> Result<Vec<f32>, IndexError> {
        Ok(self.stored_form(query)?.into_owned())
    }
}

/// `|filter ∩ live|`. The live ids are usually one run (`0..n`, none removed), and then
/// that is a count of the filter's ids in the run, which reads only the ends of its
/// containers: the intersection's count was ~3 % of a random 10 % filter's walk at 100k
/// (`perf`), and it reads every container of both.
fn admitted(filter: &RoaringBitmap, live: &RoaringBitmap) -> u64 {
    match (live.min(), live.max()) {
        (Some(lo), Some(hi)) if u64::from(hi - lo) + 1 == live.len() => {
            filter.range_cardinality(lo..=hi)
        }
        _ => filter.intersection_len(live),
    }
}

/// Exact distances for a quantized search's short list (ascending code distance), best
/// `k` first. Keys are kept (`slot_of` maps a key to its slot); ties go to the smaller key.
fn rescore(
    st: &Store,
    q: &[f32],
    candidates: Vec<Scored>,
    k: usize,
    slot_of: impl Fn(u32) -> Option<u32>,
) -> Vec<Scored> {
    let slots: Vec<(u32, u32)> = candidates
        .iter()
        .filter_map(|c| slot_of(c.key).map(|s| (c.key, s)))
        .collect();
    for &(_, s) in slots.iter().take(RESCORE_PREFETCH) {
        st.prefetch(s);
    }
    let mut out: Vec<Scored> = slots
        .iter()
        .enumerate()
        .map(|(i, &(key, s))| {
            if let Some(&(_, ahead)) = slots.get(i + RESCORE_PREFETCH) {
                st.prefetch(ahead);
            }
            Scored {
                dist: st.distance(q, s),
                key,
            }
        })
        .collect();
    out.sort_unstable();
    out.truncate(k);
    out
}

/// Admits the slots whose id is in a filter (the caller intersects it with the live ids)
/// and not in an exclusion.
struct InFilter<'a> {
    st: &'a Store,
    ids: &'a RoaringBitmap,
    exclude: Option<&'a RoaringBitmap>,
}

impl Admit for InFilter<'_> {
    #[inline(always)]
    fn admit(&self, slot: u32) -> bool {
        let id = self.st.id_of(slot);
        self.ids.contains(id) && self.exclude.is_none_or(|e| !e.contains(id))
    }

    // The slot -> id array (4 MB at 1M nodes) is read at random, and the stall on that load
    // was a fifth of a filtered walk's time (`perf`, 1M × 64, random 10 % filter, int8).
    // Prefetched with the codes: category filter 1.2-1.25x as fast (p99 -20-30 %), random
    // 10-20 % filters 1.04-1.15x. Unfiltered walks do not read it, and prefetching it there
    // cost them ~10 %, hence a prefetch of the admission's own (BENCHMARKS.md, session 19).
    #[inline]
    fn prefetch(&self, slot: u32) {
        self.st.prefetch_id(slot);
    }
}

fn to_hit(s: Scored) -> Hit {
    Hit {
        id: s.key,
        score: -s.dist,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl VectorIndex {
        /// Number of live slots with no level-0 in-link (unreachable by the walk unless they
        /// are the entry point) — a graph-health statistic for tests.
        pub(crate) fn orphans(&self) -> usize {
            let st = self.store.read();
            let mut has_in = vec![false; st.slots()];
            let mut buf = Vec::new();
            for s in 0..st.slots() as u32 {
                st.neighbours(s, 0, &mut buf);
                for &n in &buf {
                    has_in[n as usize] = true;
                }
            }
            (0..st.slots() as u32)
                .filter(|&s| !st.is_deleted(s) && !has_in[s as usize])
                .count()
        }
    }

    impl VectorIndex {
        /// The slot of the entry point, and the highest slot of an upper-level node and the
        /// lowest of a level-0-only node.
        fn upper_layout(&self) -> (Option<u32>, u32, u32) {
            let st = self.store.read();
            let slots = st.slots() as u32;
            let last_upper = (0..slots).filter(|&s| st.level(s) >= 1).max();
            let first_lower = (0..slots).find(|&s| st.level(s) == 0);
            let entry = self.graph.entry().map(|(slot, _)| slot);
            (entry, last_upper.unwrap_or(0), first_lower.unwrap_or(slots))
        }
    }

    fn ids(hits: &[Hit]) -> Vec<u32> {
        hits.iter().map(|h| h.id).collect()
    }

    fn vectors(n: usize, dim: usize, seed: u64) -> Vec<(u32, Vec<f32>)> {
        crate::testing::vectors(n, dim, seed, 3, 1)
    }

    #[test]
    fn empty_index_returns_nothing() {
        let idx = VectorIndex::new(3, Metric::L2, HnswParams::default());
        assert!(idx.is_empty());
        assert!(idx.search(&[0.0; 3], 5, None).expect("valid").is_empty());
        let f: RoaringBitmap = (0..10).collect();
        assert!(
            idx.search(&[0.0; 3], 5, Some(&f))
                .expect("valid")
                .is_empty()
        );
        assert_eq!(idx.vector(1), None);
        assert_eq!(idx.score(1, &[0.0; 3]), Ok(None));
    }

    #[test]
    fn tiny_exact_answers_per_metric() {
        let l2 = VectorIndex::new(2, Metric::L2, HnswParams::default());
        l2.insert(10, &[0.0, 0.0]).expect("insert");
        l2.insert(20, &[3.0, 4.0]).expect("insert");
        let hits = l2.search(&[3.0, 3.0], 2, None).expect("search");
        assert_eq!(ids(&hits), vec![20, 10]);
        assert_eq!(hits[0].score, -1.0);
        assert_eq!(hits[1].score, -18.0);

        let ip = VectorIndex::new(2, Metric::InnerProduct, HnswParams::default());
        ip.insert(1, &[1.0, 0.0]).expect("insert");
        ip.insert(2, &[10.0, 0.0]).expect("insert");
        let hits = ip.search(&[1.0, 1.0], 1, None).expect("search");
        assert_eq!((hits[0].id, hits[0].score), (2, 10.0));

        let cos = VectorIndex::new(2, Metric::Cosine, HnswParams::default());
        cos.insert(1, &[1.0, 0.0]).expect("insert");
        cos.insert(2, &[10.0, 0.1]).expect("insert");
        cos.insert(3, &[-5.0, 0.0]).expect("insert");
        let hits = cos.search(&[2.0, 0.0], 3, None).expect("search");
        assert_eq!(ids(&hits), vec![1, 2, 3]);
        assert!((hits[0].score - 1.0).abs() < 1e-6);
        assert!((hits[2].score + 1.0).abs() < 1e-6);
        // Under cosine the index keeps the normalized vector (a score is one dot product);
        // it holds what inserting the caller's vector stores: the same vector doubled
        // normalizes to the same bits (a power of two scales exactly), another does not.
        let kept = cos.vector(2).expect("stored");
        let norm = (10.0f32 * 10.0 + 0.1 * 0.1).sqrt();
        assert!((kept[0] - 10.0 / norm).abs() < 1e-6 && (kept[1] - 0.1 / norm).abs() < 1e-6);
        assert!(cos.holds(2, &[10.0, 0.1]) && cos.holds(2, &[20.0, 0.2]));
        assert!(!cos.holds(2, &[10.0, 0.2]) && !cos.holds(2, &[0.0, 0.0]));
        // Under the other metrics it is the caller's vector itself.
        assert_eq!(ip.vector(2), Some(vec![10.0, 0.0]));
        assert!(ip.holds(2, &[10.0, 0.0]) && !ip.holds(2, &[20.0, 0.0]));
    }

    #[test]
    fn invalid_input_is_an_error_not_a_panic() {
        let idx = VectorIndex::new(3, Metric::Cosine, HnswParams::default());
        assert_eq!(
            idx.insert(1, &[1.0, 2.0]),
            Err(IndexError::DimensionMismatch {
                expected: 3,
                got: 2
            })
        );
        assert_eq!(
            idx.insert(1, &[1.0, f32::NAN, 0.0]),
            Err(IndexError::NonFinite { position: 1 })
        );
        assert_eq!(
            idx.insert(1, &[f32::INFINITY, 0.0, 0.0]),
            Err(IndexError::NonFinite { position: 0 })
        );
        assert_eq!(idx.insert(1, &[0.0; 3]), Err(IndexError::ZeroVector));
        assert_eq!(
            idx.insert(1, &[f32::MAX, 0.0, 0.0]),
            Err(IndexError::NormOverflow)
        );
        assert!(idx.search(&[0.0; 3], 1, None).is_err());
        assert!(idx.exact_search(&[1.0; 4], 1, None).is_err());
        assert!(idx.score(1, &[1.0]).is_err());
        // A batch with one bad vector writes nothing.
        let batch = vec![(1, vec![1.0, 0.0, 0.0]), (2, vec![0.0, 0.0, 0.0])];
        assert_eq!(idx.insert_batch(&batch), Err(IndexError::ZeroVector));
        assert!(idx.is_empty());
        // L2 and IP accept the zero vector.
        let l2 = VectorIndex::new(3, Metric::L2, HnswParams::default());
        assert_eq!(l2.insert(1, &[0.0; 3]), Ok(()));
    }

    const MODES: [Quantization; 2] = [Quantization::None, Quantization::Int8];

    #[test]
    fn quantized_results_are_re_scored_exactly() {
        // `a` and `b` differ from the query by far less than a code step (the data spans
        // [-1, 5]: a step is ~0.02), so their codes (almost surely) tie and only the exact
        // re-score tells them apart; `b` has the smaller slot, which is what a tie on codes
        // would return. (Cosine's angle here would be below f32 resolution; its scores are
        // checked against `score` in tests/recall.rs.)
        for metric in [Metric::L2, Metric::InnerProduct] {
            let idx = VectorIndex::with_quantization(
                8,
                metric,
                HnswParams::default(),
                Quantization::Int8,
            );
            idx.insert_batch(&vectors(300, 8, 17)).expect("batch");
            let q = [5.0, -2.5, 4.5, 1.0, -3.0, 3.0, 2.0, -1.0];
            let mut a = q;
            a[0] += 1e-4;
            let mut b = q;
            b[0] += 3e-4;
            idx.insert(10_000, &b).expect("insert");
            idx.insert(10_001, &a).expect("insert");
            // Under ip the larger dot product wins: `b`.
            let best = if metric == Metric::InnerProduct {
                10_000
            } else {
                10_001
            };
            for strategy in [Strategy::Auto, Strategy::Graph] {
                let opts = SearchOptions { ef: None, strategy };
                let (hits, report) = idx.search_explained(&q, 1, None, opts).expect("search");
                assert_eq!(report.rescored, Some(4), "{metric:?}");
                assert_eq!(hits[0].id, best, "{metric:?} {strategy:?}");
                assert_eq!(idx.score(best, &q), Ok(Some(hits[0].score)));
                // A filter that leaves few enough ids for the planner's scan, on codes too.
                let few: RoaringBitmap = [10_000, 10_001, 7, 10].into_iter().collect();
                let (hits, report) = idx
                    .search_explained(&q, 1, Some(&few), opts)
                    .expect("search");
                assert_eq!((hits[0].id, report.rescored), (best, Some(4)), "{metric:?}");
            }
            // A forced exact search stays on the f32 vectors.
            let (_, report) = idx
                .search_explained(
                    &q,
                    1,
                    None,
                    SearchOptions {
                        ef: None,
                        strategy: Strategy::Exact,
                    },
                )
                .expect("search");
            assert_eq!(report.rescored, None);
        }
    }

    #[test]
    fn the_quantizer_retrains_as_the_data_moves() {
        // 100 vectors in [-1, 1), then 300 far outside that range. Clamped to the first
        // training's range, the new ones would all get the same codes and a walk on codes
        // could not tell them apart; retraining at each doubling keeps them distinct.
        let idx = VectorIndex::with_quantization(
            16,
            Metric::L2,
            HnswParams::default(),
            Quantization::Int8,
        );
        idx.insert_batch(&vectors(100, 16, 1)).expect("batch");
        let far: Vec<(u32, Vec<f32>)> = vectors(300, 16, 2)
            .into_iter()
            .map(|(id, v)| (id + 100_000, v.iter().map(|x| 20.0 + x).collect()))
            .collect();
        for (id, v) in &far {
            idx.insert(*id, v).expect("insert");
        }
        for (id, v) in &far {
            let hits = idx.search(v, 1, None).expect("search");
            assert_eq!(hits[0].id, *id);
        }
    }

    #[test]
    fn memory_is_reported_per_part() {
        let n = 500;
        let plain = VectorIndex::new(64, Metric::Cosine, HnswParams::default());
        plain.insert_batch(&vectors(n, 64, 3)).expect("batch");
        let m = plain.memory();
        assert_eq!((m.nodes, m.codes), (n, 0));
        assert_eq!(m.vectors, n * 64 * 4);
        // Level-0 lists alone are (1 + 2M) u32 per node, plus the in-degree.
        assert!(m.graph >= n * (1 + 32 + 1) * 4, "{m:?}");
        assert_eq!(m.vectors_mapped, 0);
        let before = plain
            .search(&vectors(1, 64, 4)[0].1, 10, None)
            .expect("search");
        plain
            .set_quantization(Quantization::Int8)
            .expect("vector file");
        let q = plain.memory();
        assert_eq!(
            q.codes,
            n * (64 + 4),
            "one 64-byte line and |x|² per 64-d vector"
        );
        // The f32 vectors left the heap for the file mapping: the int8 mode holds less than
        // the plain one, not more.
        assert_eq!((q.vectors, q.vectors_mapped), (0, n * 64 * 4));
        assert_eq!(q.total(), m.total() - n * 64 * 4 + q.codes);
        assert!(q.total() < m.total());
        // Inserts while mapped go to the file too.
        plain.insert(9_999, &[0.5; 64]).expect("insert");
        assert_eq!(plain.memory().vectors_mapped, (n + 1) * 64 * 4);
        assert!(plain.holds(9_999, &[0.5; 64]));
        plain.remove(9_999);
        plain
            .set_quantization(Quantization::None)
            .expect("back to the heap");
        let back = plain.memory();
        assert_eq!((back.codes, back.vectors_mapped), (0, 0));
        assert_eq!(back.vectors, (n + 1) * 64 * 4);
        let after = plain
            .search(&vectors(1, 64, 4)[0].1, 10, None)
            .expect("search");
        assert_eq!(after, before, "the vectors came back intact");
    }

    #[test]
    fn the_int8_vector_file_goes_where_it_is_told_and_leaves_nothing() {
        let dir = tempfile::tempdir().expect("temp dir");
        let idx = VectorIndex::new(16, Metric::L2, HnswParams::default());
        idx.set_vector_dir(dir.path());
        idx.insert_batch(&vectors(300, 16, 1)).expect("batch");
        idx.set_quantization(Quantization::Int8)
            .expect("vector file");
        assert_eq!(idx.memory().vectors_mapped, 300 * 16 * 4);
        assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 0);
        // A directory that cannot hold the file: the mode still switches, the vectors stay
        // on the heap, and the caller is told.
        let plain = VectorIndex::new(16, Metric::L2, HnswParams::default());
        plain.set_vector_dir(dir.path().join("missing"));
        plain.insert_batch(&vectors(300, 16, 1)).expect("batch");
        assert!(plain.set_quantization(Quantization::Int8).is_err());
        assert_eq!(plain.quantization(), Quantization::Int8);
        let m = plain.memory();
        assert_eq!((m.vectors_mapped, m.vectors), (0, 300 * 16 * 4));
        let q = vectors(1, 16, 9).remove(0).1;
        assert_eq!(
            plain.search(&q, 5, None).expect("search"),
            idx.search(&q, 5, None).expect("search")
        );
    }

    #[test]
    fn remove_is_never_returned_again() {
        for mode in MODES {
            remove_is_never_returned_again_in(mode);
        }
    }

    fn remove_is_never_returned_again_in(mode: Quantization) {
        let idx = VectorIndex::with_quantization(8, Metric::L2, HnswParams::default(), mode);
        let data = vectors(300, 8, 7);
        idx.insert_batch(&data).expect("batch");
        let (victim, v) = data[42].clone();
        assert_eq!(idx.search(&v, 1, None).expect("search")[0].id, victim);
        assert!(idx.remove(victim));
        assert!(!idx.remove(victim));
        assert_eq!(idx.len(), 299);
        assert!(!idx.contains(victim));
        assert_eq!(idx.vector(victim), None);
        assert_eq!(idx.score(victim, &v), Ok(None));
        for strategy in [Strategy::Auto, Strategy::Graph, Strategy::Exact] {
            let opts = SearchOptions { ef: None, strategy };
            let all = idx.search_with(&v, 300, None, opts).expect("search");
            assert_eq!(all.len(), 299, "{strategy:?}");
            assert!(!ids(&all).contains(&victim), "{strategy:?}");
            let near = idx.search_with(&v, 5, None, opts).expect("search");
            assert!(!ids(&near).contains(&victim), "{strategy:?}");
        }
        let only: RoaringBitmap = [victim].into_iter().collect();
        assert!(idx.search(&v, 10, Some(&only)).expect("search").is_empty());
        // A filter that still names it (a caller's stale list): the walk tests the filter
        // against the live ids, not as given.
        let stale: RoaringBitmap = data.iter().take(60).map(|d| d.0).collect();
        for strategy in [Strategy::Auto, Strategy::Graph, Strategy::Exact] {
            let opts = SearchOptions { ef: None, strategy };
            let hits = idx.search_with(&v, 10, Some(&stale), opts).expect("search");
            assert_eq!(hits.len(), 10, "{strategy:?}");
            assert!(!ids(&hits).contains(&victim), "{strategy:?}");
        }
        assert!(
            idx.exact_search(&v, 300, None)
                .expect("search")
                .iter()
                .all(|h| h.id != victim)
        );
        // Re-inserting revives it.
        idx.insert(victim, &v).expect("insert");
        assert_eq!(idx.search(&v, 1, None).expect("search")[0].id, victim);
        assert_eq!(idx.len(), 300);
    }

    #[test]
    fn update_replaces_the_vector_and_its_score() {
        for mode in MODES {
            update_replaces_the_vector_and_its_score_in(mode);
        }
    }

    fn update_replaces_the_vector_and_its_score_in(mode: Quantization) {
        let idx = VectorIndex::with_quantization(8, Metric::L2, HnswParams::default(), mode);
        let data = vectors(300, 8, 11);
        idx.insert_batch(&data).expect("batch");
        let id = data[5].0;
        let far = vec![50.0; 8];
        idx.insert(id, &far).expect("update");
        assert_eq!(idx.len(), 300, "an update does not add a node");
        assert_eq!(idx.vector(id), Some(far.clone()));
        for strategy in [Strategy::Auto, Strategy::Graph] {
            let opts = SearchOptions { ef: None, strategy };
            // Near the new position it is found first, with the new score...
            let hits = idx.search_with(&[49.0; 8], 1, None, opts).expect("search");
            assert_eq!((hits[0].id, hits[0].score), (id, -8.0), "{strategy:?}");
            // ...and near the old position its score is the new one, never the stale one.
            let old = &data[5].1;
            for h in idx.search_with(old, 300, None, opts).expect("search") {
                if h.id == id {
                    assert!(h.score < -1000.0, "stale score {}", h.score);
                }
            }
        }
        assert!(idx.score(id, &[49.0; 8]).expect("valid") == Some(-8.0));
        // Batch updates too, including the same id twice (the last wins).
        let twice = vec![(id, vec![1.0; 8]), (id, vec![2.0; 8])];
        idx.insert_batch(&twice).expect("batch");
        assert_eq!(idx.vector(id), Some(vec![2.0; 8]));
        assert_eq!(idx.len(), 300);
    }

    #[test]
    fn filters_return_all_matches_when_fewer_than_k() {
        for mode in MODES {
            filters_return_all_matches_when_fewer_than_k_in(mode);
        }
    }

    fn filters_return_all_matches_when_fewer_than_k_in(mode: Quantization) {
        let idx = VectorIndex::with_quantization(8, Metric::Cosine, HnswParams::default(), mode);
        let data = vectors(500, 8, 3);
        idx.insert_batch(&data).expect("batch");
        let allowed: RoaringBitmap = data.iter().step_by(50).map(|(id, _)| *id).collect();
        let q = &data[0].1;
        for strategy in [Strategy::Auto, Strategy::Graph, Strategy::Exact] {
            let opts = SearchOptions {
                ef: Some(1),
                strategy,
            };
            let hits = idx
                .search_with(q, 20, Some(&allowed), opts)
                .expect("search");
            let mut got = ids(&hits);
            got.sort_unstable();
            assert_eq!(got, allowed.iter().collect::<Vec<_>>(), "{strategy:?}");
        }
        // Unknown ids in the filter are simply not there.
        let ghosts: RoaringBitmap = (100_000..100_010).collect();
        assert!(idx.search(q, 5, Some(&ghosts)).expect("search").is_empty());
    }

    #[test]
    fn an_exclusion_is_applied_inside_every_plan() {
        for mode in MODES {
            an_exclusion_is_applied_inside_every_plan_in(mode);
        }
    }

    fn an_exclusion_is_applied_inside_every_plan_in(mode: Quantization) {
        // 6,000 nodes: walks, plain scans and (for half the nodes, in f32) sketched scans.
        let data = vectors(6_000, 24, 9);
        let idx = VectorIndex::with_quantization(24, Metric::Cosine, HnswParams::default(), mode);
        idx.insert_batch(&data).expect("batch");
        assert!(
            idx.remove(data[7].0),
            "a removed id in the exclusion changes nothing"
        );
        let half: RoaringBitmap = data.iter().step_by(2).map(|(id, _)| *id).collect();
        let few: RoaringBitmap = data.iter().step_by(150).map(|(id, _)| *id).collect();
        let strategies = [Strategy::Auto, Strategy::Graph, Strategy::Exact];
        let (mut found, mut wanted) = (0, 0);
        for (_, q) in data.iter().step_by(500) {
            // The worst case for a walk: the query's 30 nearest (what a user has seen lies
            // next to their vector), a few far ones, a removed id and an unknown one.
            let nearest = idx.exact_search(q, 30, None).expect("search");
            let mut exclude: RoaringBitmap = nearest.iter().map(|h| h.id).collect();
            exclude.extend(data.iter().step_by(301).map(|(id, _)| *id));
            exclude.extend([data[7].0, 1_000_000]);
            for filter in [None, Some(&half), Some(&few)] {
                let allowed = filter.unwrap_or(&idx.ids()) - &exclude;
                let oracle = idx.exact_search(q, 10, Some(&allowed)).expect("search");
                assert_eq!(oracle.len(), 10.min(allowed.len() as usize));
                for strategy in strategies {
                    let opts = SearchOptions { ef: None, strategy };
                    let (hits, report) = idx
                        .search_excluding(q, 10, filter, &exclude, opts)
                        .expect("search");
                    let what =
                        format!("{mode:?} {strategy:?} filter {:?}", filter.map(|f| f.len()));
                    assert!(hits.iter().all(|h| allowed.contains(h.id)), "{what}");
                    assert_eq!(hits.len(), oracle.len(), "{what}: as many as exist");
                    let admitted = filter.unwrap_or(&idx.ids()) & &idx.ids();
                    assert_eq!(report.allowed, admitted.len(), "{what}");
                    assert_eq!(report.excluded, admitted.len() - allowed.len(), "{what}");
                    assert!(hits.windows(2).all(|w| w[0].score >= w[1].score), "{what}");
                    if strategy == Strategy::Exact {
                        assert_eq!(ids(&hits), ids(&oracle), "{what}");
                    } else {
                        found += oracle
                            .iter()
                            .filter(|o| hits.iter().any(|h| h.id == o.id))
                            .count();
                        wanted += oracle.len();
                    }
                    if filter.is_none() && strategy == Strategy::Auto {
                        // An unfiltered search stays a walk: the exclusion is not a filter.
                        assert_eq!(report.plan, "graph", "{what}");
                    }
                }
            }
        }
        assert!(
            found * 100 >= wanted * 95,
            "{mode:?}: recall@10 {found} / {wanted}"
        );
        // Fewer left than k: all of them; nothing left: nothing.
        let q = &data[0].1;
        let mut most_of_few = few.clone();
        most_of_few.remove(few.min().expect("not empty"));
        most_of_few.remove(few.max().expect("not empty"));
        for strategy in strategies {
            let opts = SearchOptions { ef: None, strategy };
            let (hits, _) = idx
                .search_excluding(q, 10, Some(&few), &most_of_few, opts)
                .expect("search");
            let mut got = ids(&hits);
            got.sort_unstable();
            assert_eq!(
                got,
                [few.min().unwrap_or(0), few.max().unwrap_or(0)],
                "{strategy:?}"
            );
            let (hits, _) = idx
                .search_excluding(q, 10, Some(&few), &few, opts)
                .expect("search");
            assert!(hits.is_empty(), "{strategy:?}");
        }
    }

    #[test]
    fn every_search_is_counted_under_the_plan_that_answered_it() {
        let idx = VectorIndex::new(8, Metric::L2, HnswParams::default());
        let data = vectors(2_000, 8, 4);
        idx.insert_batch(&data).expect("batch");
        let q = &data[0].1;
        let few: RoaringBitmap = data.iter().take(5).map(|(id, _)| *id).collect();
        idx.search(q, 10, None).expect("walk");
        idx.search(q, 10, Some(&few))
            .expect("scan: fewer allowed than k");
        idx.exact_search(q, 10, None).expect("forced scan");
        let walk = SearchOptions {
            ef: Some(1),
            strategy: Strategy::Graph,
        };
        // A forced walk (it falls back to a scan only if the walk misses an allowed node).
        idx.search_with(q, 5, Some(&few), walk).expect("walk");
        let c = idx.plan_counts();
        assert_eq!(c.exact, 2, "{c:?}");
        assert_eq!(c.graph + c.graph_then_exact, 2, "{c:?}");
    }

    #[test]
    fn graph_search_matches_exact_on_a_small_set() {
        let idx = VectorIndex::new(16, Metric::L2, HnswParams::default());
        let data = vectors(2_000, 16, 5);
        idx.insert_batch(&data).expect("batch");
        let mut hit = 0;
        let walk = SearchOptions {
            ef: None,
            strategy: Strategy::Graph,
        };
        for (_, q) in data.iter().step_by(100) {
            let approx = ids(&idx.search_with(q, 10, None, walk).expect("search"));
            let exact = ids(&idx.exact_search(q, 10, None).expect("search"));
            hit += exact.iter().filter(|id| approx.contains(id)).count();
        }
        assert!(hit >= 190, "recall@10 = {hit}/200");
    }

    #[test]
    fn concurrent_inserts_and_searches() {
        let idx = VectorIndex::new(8, Metric::L2, HnswParams::default());
        let data = vectors(2_000, 8, 9);
        std::thread::scope(|s| {
            for t in 0..3 {
                let (idx, data) = (&idx, &data);
                s.spawn(move || {
                    let walk = SearchOptions {
                        ef: None,
                        strategy: Strategy::Graph,
                    };
                    for (id, v) in data.iter().skip(t).step_by(3) {
                        idx.insert(*id, v).expect("insert");
                        let hits = idx.search_with(v, 5, None, walk).expect("search");
                        assert!(!hits.is_empty());
                    }
                });
            }
        });
        assert_eq!(idx.len(), 2_000);
        let walk = SearchOptions {
            ef: None,
            strategy: Strategy::Graph,
        };
        for (id, v) in &data {
            let hits = idx.search_with(v, 10, None, walk).expect("search");
            assert!(hits.iter().any(|h| h.id == *id), "{id} not found");
        }
    }
    #[test]
    fn sequential_build_leaves_no_node_unreachable() {
        // Heuristic pruning alone cuts some nodes' last in-link (a few per thousand on this
        // data); orphan protection must prevent it whenever no other thread races the prune.
        let data = vectors(6_000, 64, 99);
        let idx = VectorIndex::new(64, Metric::Cosine, HnswParams::default());
        for (id, v) in &data {
            idx.insert(*id, v).expect("insert");
        }
        assert_eq!(idx.orphans(), 0);
        let walk = SearchOptions {
            ef: None,
            strategy: Strategy::Graph,
        };
        for (id, v) in &data {
            let hits = idx.search_with(v, 10, None, walk).expect("search");
            assert!(hits.iter().any(|h| h.id == *id), "{id} unreachable");
        }
    }

    #[test]
    fn repair_relinks_a_node_caught_between_its_upper_and_level_0_links() {
        // What a snapshot taken mid-insert can hold: a node already in upper-level lists
        // whose own level-0 list (and every level-0 link to it) was not written yet. A walk
        // descending through it would start level 0 from a node with no neighbours.
        let data = vectors(2_000, 16, 5);
        let idx = VectorIndex::new(16, Metric::Cosine, HnswParams::default());
        idx.insert_batch(&data).expect("batch");
        let (u, id) = {
            let st = idx.store.read();
            let entry = idx.graph.entry().map(|(s, _)| s);
            let u = (0..st.slots() as u32)
                .find(|&s| st.level(s) >= 1 && Some(s) != entry)
                .expect("a node above level 0");
            let mut buf = Vec::new();
            for s in 0..st.slots() as u32 {
                st.neighbours(s, 0, &mut buf);
                if buf.contains(&u) || s == u {
                    buf.retain(|&n| n != u && s != u);
                    let _g = st.lock_links(s);
                    st.set_neighbours(s, 0, &buf);
                }
            }
            (u, st.id_of(u))
        };
        assert_eq!(idx.orphans(), 1);
        assert!(idx.repair() >= 1);
        assert_eq!(idx.orphans(), 0);
        let st = idx.store.read();
        let mut buf = Vec::new();
        st.neighbours(u, 0, &mut buf);
        assert!(!buf.is_empty(), "its level-0 list is written again");
        drop(st);
        let walk = SearchOptions {
            ef: None,
            strategy: Strategy::Graph,
        };
        for (i, v) in data.iter().filter(|(i, _)| *i == id) {
            let hits = idx.search_with(v, 10, None, walk).expect("search");
            assert!(hits.iter().any(|h| h.id == *i), "{i} unreachable");
        }
    }

    #[test]
    fn a_filtered_walk_expanding_several_candidates_at_once_finds_what_one_at_a_time_does() {
        let (n, dim) = (4_000, 16);
        let data = vectors(n, dim, 21);
        let idx = VectorIndex::new(dim, Metric::L2, HnswParams::default());
        idx.insert_batch(&data).expect("batch");
        let st = idx.store.read();
        // Every fifth id: a 20 % filter spread over the whole graph.
        let in_filter = |s: u32| st.id_of(s).is_multiple_of(5);
        let (k, queries) = (10, 100);
        let recall = |batch: usize| {
            let mut found = 0;
            for (_, q) in data.iter().step_by(n / queries) {
                let mut visited = idx.visited.take(st.slots());
                let mut budget = usize::MAX;
                let hits = idx.graph.search(
                    &st,
                    &Exact { st: &st, q },
                    k,
                    batch,
                    in_filter,
                    &mut visited,
                    &mut budget,
                );
                idx.visited.give_back(visited);
                assert!(hits.iter().all(|h| in_filter(h.key)), "only admitted nodes");
                assert!(hits.windows(2).all(|w| w[0].dist <= w[1].dist), "ascending");
                assert_eq!(hits.len(), k);
                let mut exact: Vec<Scored> = (0..st.slots() as u32)
                    .filter(|&s| in_filter(s))
                    .map(|s| Scored {
                        dist: st.distance(q, s),
                        key: s,
                    })
                    .collect();
                exact.sort_unstable();
                found += exact[..k]
                    .iter()
                    .filter(|e| hits.iter().any(|h| h.key == e.key))
                    .count();
            }
            found as f64 / (k * queries) as f64
        };
        let (one, several) = (recall(1), recall(FILTERED_BATCH));
        assert!(one >= 0.9, "one at a time: {one}");
        assert!(
            several >= one - 0.01,
            "{FILTERED_BATCH} at a time: {several} vs {one}"
        );
    }

    #[test]
    fn a_walk_stops_when_its_budget_is_spent() {
        let data = vectors(3_000, 16, 12);
        let idx = VectorIndex::new(16, Metric::L2, HnswParams::default());
        idx.insert_batch(&data).expect("batch");
        let st = idx.store.read();
        let q = &data[0].1;
        let walk = |budget: &mut usize| {
            let mut visited = idx.visited.take(st.slots());
            // A filter nothing passes: unbounded, the walk scores every reachable node.
            let found = idx.graph.search(
                &st,
                &Exact { st: &st, q },
                10,
                1,
                |_| false,
                &mut visited,
                budget,
            );
            idx.visited.give_back(visited);
            found
        };
        let mut unbounded = usize::MAX;
        assert!(walk(&mut unbounded).is_empty());
        assert!(usize::MAX - unbounded >= 2_900, "it scored the whole graph");
        let mut budget = 100;
        assert!(walk(&mut budget).is_empty());
        assert_eq!(budget, 0, "spent, and said so");
    }

    #[test]
    fn a_search_reports_the_plan_it_ran() {
        let data = vectors(2_000, 16, 3);
        let idx = VectorIndex::new(16, Metric::Cosine, HnswParams::default());
        idx.insert_batch(&data).expect("batch");
        let q = &data[0].1;
        let auto = SearchOptions::default();
        let (hits, r) = idx.search_explained(q, 10, None, auto).expect("search");
        assert_eq!(hits.len(), 10);
        assert_eq!((r.plan, r.allowed, r.live), ("graph", 2_000, 2_000));
        assert_eq!(r.ef, Some(idx.params().ef_search.max(10)));
        // Twenty allowed ids: fewer than a walk would need to reach, so a scan.
        let few: RoaringBitmap = data.iter().take(20).map(|(id, _)| *id).collect();
        let (hits, r) = idx
            .search_explained(q, 10, Some(&few), auto)
            .expect("search");
        assert_eq!(hits.len(), 10);
        assert_eq!((r.plan, r.ef, r.allowed), ("exact", None, 20));
        // A filtered walk on the default beam reports it grown for the filter's selectivity.
        let quarter: RoaringBitmap = data.iter().step_by(4).map(|(id, _)| *id).collect();
        let walk = SearchOptions {
            ef: None,
            strategy: Strategy::Graph,
        };
        let (_, r) = idx
            .search_explained(q, 10, Some(&quarter), walk)
            .expect("search");
        assert_eq!((r.plan, r.allowed), ("graph", 500));
        assert!(r.ef > Some(idx.params().ef_search.max(10)), "{r:?}");
        // A beam the caller gives is the beam (never below k).
        for (ef, beam) in [(24, 24), (4, 10)] {
            let given = SearchOptions {
                ef: Some(ef),
                strategy: Strategy::Graph,
            };
            let (_, r) = idx
                .search_explained(q, 10, Some(&quarter), given)
                .expect("search");
            assert_eq!((r.plan, r.ef), ("graph", Some(beam)), "{r:?}");
        }
        assert_eq!(r.sketched, None, "2,000 nodes keep no sketches");
    }

    #[test]
    fn the_admitted_count_is_the_filter_within_the_live_ids() {
        let run: RoaringBitmap = (0..1_000).collect();
        let mut holed = run.clone();
        holed.remove(10);
        holed.remove(500);
        let shifted: RoaringBitmap = (100..1_000).collect();
        let filter: RoaringBitmap = [0, 10, 99, 100, 500, 999, 1_000, 70_000]
            .into_iter()
            .collect();
        for live in [&run, &holed, &shifted, &RoaringBitmap::new()] {
            assert_eq!(
                admitted(&filter, live),
                filter.intersection_len(live),
                "{live:?}"
            );
        }
        assert_eq!(admitted(&filter, &run), 6);
        assert_eq!(admitted(&filter, &holed), 4);
        assert_eq!(admitted(&filter, &shifted), 3);
    }

    #[test]
    fn a_broad_filter_scans_through_the_sketches_in_both_modes() {
        // 6,000 nodes (sketches from 4,096), a filter of half of them at k = 10: 3,000
        // allowed, above the `f32` mode's 8 x 256 but below the int8 mode's 32 x 256.
        let data = vectors(6_000, 24, 8);
        let idx = VectorIndex::new(24, Metric::Cosine, HnswParams::default());
        idx.insert_batch(&data).expect("batch");
        assert!(idx.memory().sketches > 0);
        let half: RoaringBitmap = data.iter().step_by(2).map(|(id, _)| *id).collect();
        let auto = SearchOptions::default();
        let mut found = 0;
        for (_, q) in data.iter().step_by(300) {
            let (hits, r) = idx
                .search_explained(q, 10, Some(&half), auto)
                .expect("search");
            assert_eq!((r.plan, r.rescored), ("sketch_scan", None), "{r:?}");
            // About the 256 lowest bounds and what they could not rule out, far from all
            // 3,000.
            let scored = r.sketched.expect("sketched");
            assert!((200..1_500).contains(&scored), "{r:?}");
            assert!(hits.iter().all(|h| half.contains(h.id)));
            assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
            for h in &hits {
                assert_eq!(
                    idx.score(h.id, q).expect("valid"),
                    Some(h.score),
                    "exact scores"
                );
            }
            let exact = idx.exact_search(q, 10, Some(&half)).expect("search");
            found += exact
                .iter()
                .filter(|e| hits.iter().any(|h| h.id == e.id))
                .count();
        }
        assert!(found >= 190, "recall@10 {found} / 200");
        // The forced exact search never reads them; the int8 mode reads them only for
        // broader filters (its codes are cheap to scan).
        let exact = SearchOptions {
            ef: None,
            strategy: Strategy::Exact,
        };
        let (_, r) = idx
            .search_explained(&data[0].1, 10, Some(&half), exact)
            .expect("search");
        assert_eq!((r.plan, r.sketched), ("exact", None));
        let counts = idx.plan_counts();
        // Twenty sketched scans; the oracle's twenty exact searches and the one above.
        assert_eq!((counts.sketch_scan, counts.exact), (20, 21), "{counts:?}");
        // Sketches are not saved: a loaded index trains them on what it loaded.
        let mut bytes = Vec::new();
        idx.write_snapshot(&mut bytes, &[]).expect("to a Vec");
        let (back, _) =
            VectorIndex::read_snapshot(&bytes, 24, Metric::Cosine, HnswParams::default())
                .expect("its own snapshot");
        assert!(back.memory().sketches > 0);
        let (_, r) = back
            .search_explained(&data[0].1, 10, Some(&half), auto)
            .expect("search");
        assert_eq!(r.plan, "sketch_scan", "{r:?}");
        idx.set_quantization(Quantization::Int8)
            .expect("vector file");
        let (_, r) = idx
            .search_explained(&data[0].1, 10, Some(&half), auto)
            .expect("search");
        assert_eq!(r.sketched, None, "{r:?}");
        let (_, r) = idx
            .search_explained(&data[0].1, 1, Some(&half), auto)
            .expect("search");
        assert_eq!(r.sketched, None, "3,000 < 32 x 256: {r:?}");
    }

    #[test]
    fn reordering_keeps_every_answer_and_puts_the_upper_levels_first() {
        for quantization in [Quantization::None, Quantization::Int8] {
            let idx = VectorIndex::new(8, Metric::Cosine, HnswParams::default());
            // Clustered, as embeddings are, and inserted round-robin across the clusters,
            // so that insertion order and neighbourhoods are unrelated. More than
            // sketch::MIN_SLOTS, so the sketches are renumbered too.
            let centres = vectors(40, 8, 3);
            let data: Vec<(u32, Vec<f32>)> = vectors(5_000, 8, 17)
                .into_iter()
                .enumerate()
                .map(|(i, (id, noise))| {
                    let c = &centres[i % centres.len()].1;
                    (
                        id,
                        c.iter().zip(&noise).map(|(c, e)| c + 0.15 * e).collect(),
                    )
                })
                .collect();
            idx.insert_batch(&data).expect("batch");
            for (id, _) in data.iter().step_by(9) {
                idx.remove(*id);
            }
            idx.insert(data[18].0, &data[18].1).expect("revive");
            idx.insert(data[4].0, &data[4_000].1).expect("update");
            idx.set_quantization(quantization).expect("vector file");
            let broad: RoaringBitmap = data.iter().map(|d| d.0).filter(|i| i % 2 == 0).collect();
            let narrow: RoaringBitmap = data.iter().map(|d| d.0).filter(|i| i % 41 == 0).collect();
            let answers = |idx: &VectorIndex| -> Vec<Vec<Hit>> {
                let mut all = Vec::new();
                for (_, q) in data.iter().step_by(97) {
                    for strategy in [Strategy::Graph, Strategy::Exact, Strategy::Auto] {
                        let opts = SearchOptions { ef: None, strategy };
                        for filter in [None, Some(&broad), Some(&narrow)] {
                            all.push(idx.search_with(q, 10, filter, opts).expect("search"));
                        }
                    }
                }
                all
            };
            let before = answers(&idx);
            let (len, nodes, live) = (idx.len(), idx.nodes(), idx.ids());
            let (_, last_upper, first_lower) = idx.upper_layout();
            assert!(
                last_upper > first_lower,
                "inserted round-robin: levels interleave"
            );
            idx.reorder().expect("reorder");

            assert_eq!(answers(&idx), before, "{quantization:?}");
            assert_eq!((idx.len(), idx.nodes(), idx.ids()), (len, nodes, live));
            assert_eq!(idx.quantization(), quantization);
            for (id, v) in data.iter().step_by(13) {
                let expected = match *id {
                    id if id == data[4].0 => Some(data[4_000].1.clone()),
                    id if id % 27 == 1 && id != data[18].0 => None,
                    _ => Some(v.clone()),
                };
                match expected {
                    Some(v) => assert!(idx.holds(*id, &v), "{id}"),
                    None => assert_eq!(idx.vector(*id), None, "{id}"),
                }
            }
            // The nodes every search reads (the upper levels, from the entry point) come
            // first; see `reorder`.
            let (entry, last_upper, first_lower) = idx.upper_layout();
            assert_eq!(entry, Some(0));
            assert!(last_upper < first_lower, "{last_upper} {first_lower}");
            // The renumbered index keeps taking writes.
            let new = vec![0.25; 8];
            idx.insert(2, &new).expect("insert");
            assert_eq!(idx.search(&new, 1, None).expect("search")[0].id, 2);
            assert!(idx.remove(data[1].0));
            assert_eq!(idx.orphans(), 0);
        }
    }

    #[test]
    fn a_bulk_insert_leaves_the_index_in_graph_order_unless_it_added_little() {
        let idx = VectorIndex::new(8, Metric::L2, HnswParams::default());
        let data = vectors(3_450, 8, 29);
        let mut seen = Vec::new();
        idx.insert_bulk(&data[..3_000], 500, |done| seen.push(done))
            .expect("bulk");
        assert_eq!(seen, vec![500, 1_000, 1_500, 2_000, 2_500, 3_000]);
        let (entry, last_upper, first_lower) = idx.upper_layout();
        assert_eq!(entry, Some(0));
        assert!(last_upper < first_lower, "{last_upper} {first_lower}");

        // 50 more (under a sixteenth of the nodes) are appended, not renumbered: some of
        // them are upper-level nodes, now after level-0 ones.
        idx.insert_bulk(&data[3_000..3_050], 500, |_| {})
            .expect("bulk");
        let (_, last_upper, first_lower) = idx.upper_layout();
        assert!(last_upper > first_lower, "{last_upper} {first_lower}");

        // 400 more (over a sixteenth) renumber the whole index again.
        idx.insert_bulk(&data[3_050..], 100, |_| {}).expect("bulk");
        let (entry, last_upper, first_lower) = idx.upper_layout();
        assert_eq!(entry, Some(0));
        assert!(last_upper < first_lower, "{last_upper} {first_lower}");
        assert_eq!(idx.len(), data.len());
        for (id, v) in data.iter().step_by(31) {
            assert_eq!(idx.search(v, 1, None).expect("search")[0].id, *id);
        }
    }

    #[test]
    fn a_search_never_dead_ends_on_a_node_being_linked() {
        // A node inserted with upper levels used to be published level by level, top down:
        // reachable from an upper level while its level-0 list was still empty, so a search
        // descending through it returned that node alone. With the bug this test failed in
        // 17 runs of 20 (it counts the self-queries, k = 1, that miss).
        use std::sync::atomic::AtomicBool;
        let idx = VectorIndex::new(8, Metric::L2, HnswParams::default());
        let data = vectors(12_000, 8, 41);
        idx.insert_batch(&data[..2_000]).expect("batch");
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            let searcher = s.spawn(|| {
                let mut misses = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    for (id, v) in data[..2_000].iter().step_by(53) {
                        let hits = idx.search(v, 1, None).expect("search");
                        if hits[0].id != *id {
                            misses.push((*id, hits[0].id));
                        }
                    }
                }
                misses
            });
            for (id, v) in &data[2_000..] {
                idx.insert(*id, v).expect("insert");
            }
            stop.store(true, Ordering::Relaxed);
            let misses = searcher.join().expect("searcher");
            assert!(misses.is_empty(), "(wanted, got): {misses:?}");
        });
    }

    #[test]
    fn searches_and_writes_go_on_while_the_index_is_renumbered() {
        use std::sync::atomic::AtomicBool;
        let idx = VectorIndex::new(8, Metric::L2, HnswParams::default());
        let data = vectors(4_000, 8, 41);
        idx.insert_batch(&data[..3_000]).expect("batch");
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            let searcher = s.spawn(|| {
                loop {
                    for (id, v) in data[..3_000].iter().step_by(97) {
                        let hits = idx.search(v, 1, None).expect("search");
                        assert_eq!(hits[0].id, *id, "a search during a renumbering");
                    }
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                }
            });
            let writer = s.spawn(|| {
                for (id, v) in &data[3_000..] {
                    idx.insert(*id, v).expect("insert");
                }
                assert!(idx.remove(data[5].0));
            });
            for _ in 0..4 {
                idx.reorder().expect("reorder");
            }
            writer.join().expect("writer");
            stop.store(true, Ordering::Relaxed);
            searcher.join().expect("searcher");
        });
        assert_eq!(idx.len(), data.len() - 1);
        for (id, v) in data.iter().skip(6).step_by(37) {
            assert_eq!(idx.search(v, 1, None).expect("search")[0].id, *id);
        }
        assert_eq!(idx.orphans(), 0);
    }

    #[test]
    fn a_renumbering_is_due_once_a_sixteenth_of_the_nodes_was_written() {
        let idx = VectorIndex::new(8, Metric::L2, HnswParams::default());
        let data = vectors(2_000, 8, 43);
        idx.insert_batch(&data).expect("batch");
        assert!(
            idx.reorder_if_stale().expect("reorder"),
            "a build is in insertion order"
        );
        assert!(
            !idx.reorder_if_stale().expect("reorder"),
            "nothing written since"
        );
        let moved = |v: &[f32]| v.iter().map(|x| -x).collect::<Vec<f32>>();
        for (id, v) in &data[..100] {
            idx.insert(*id, &moved(v)).expect("update");
        }
        assert!(!idx.reorder_if_stale().expect("reorder"), "100 of 2,000");
        for (id, v) in &data[100..125] {
            idx.insert(*id, &moved(v)).expect("update");
        }
        assert!(idx.reorder_if_stale().expect("reorder"), "125 of 2,000");
        let (entry, last_upper, first_lower) = idx.upper_layout();
        assert_eq!(entry, Some(0));
        assert!(last_upper < first_lower, "{last_upper} {first_lower}");
        assert_eq!(
            idx.search(&moved(&data[7].1), 1, None).expect("search")[0].id,
            data[7].0
        );
    }
}
