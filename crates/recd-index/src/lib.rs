//! recd's embedded vector index: a concurrent HNSW graph with filtered search, and an exact
//! scan that is both the fallback for selective filters and the test oracle.
//!
//! This crate knows only vectors and `u32` ids: no items, schemas or JSON. Filters arrive as
//! a [`roaring::RoaringBitmap`] of allowed ids, built by the caller from its attribute indexes.
//!
//! ```
//! use recd_index::{HnswParams, Metric, VectorIndex};
//! use roaring::RoaringBitmap;
//!
//! let index = VectorIndex::new(2, Metric::Cosine, HnswParams::default());
//! index.insert(1, &[1.0, 0.0])?;
//! index.insert(2, &[0.0, 1.0])?;
//! index.insert(3, &[0.7, 0.7])?;
//! let hits = index.search(&[1.0, 0.1], 2, None)?;
//! assert_eq!(hits[0].id, 1);
//! let only_two: RoaringBitmap = [2].into_iter().collect();
//! let hits = index.search(&[1.0, 0.1], 2, Some(&only_two))?;
//! assert_eq!(hits.iter().map(|h| h.id).collect::<Vec<_>>(), vec![2]);
//! # Ok::<(), recd_index::IndexError>(())
//! ```
//!
//! # Layout
//! - `distance`: the [`Metric`] enum (the dot / squared-L2 kernels are recd-core's,
//!   `recd_core::vector`, shared with scoring and training).
//! - `error`: [`IndexError`].
//! - `store`: node storage — one contiguous `f32` arena, neighbour lists as atomic arrays,
//!   tombstones, the id ↔ slot maps, and a bitmap of live ids.
//! - `hnsw`: graph algorithms — level draw, greedy descent, layer search with an admission
//!   predicate (the filtered walk), the neighbour heuristic, linking.
//! - `flat`: exact scans over all live vectors or over a set of ids.
//! - `planner`: exact scan vs. filtered walk, chosen by the filter's cardinality.
//! - `index`: [`VectorIndex`], validation, and the public API.
//! - `snapshot`: the saved form of the graph ([`VectorIndex::write_snapshot`],
//!   [`VectorIndex::read_snapshot`]): a checksummed stream written under short locks while
//!   the index keeps serving, so that a restart loads the graph instead of rebuilding it.
//! - `topk`, `visited`: the bounded heap and the pooled visited sets the searches share.
//! - `quant`: int8 scalar quantization ([`Quantization`]): the codes, the integer kernel.
//! - `sketch`: 1-bit sketches (RaBitQ's estimator and error bound) that a broad filtered
//!   scan reads first, to pick which allowed vectors it scores on codes or vectors.
//! - `mapped`: where the `f32` vectors live — a heap array, or in the int8 mode an unnamed
//!   file mapping, so that only codes and graph stay resident.
//! - `prefetch`, `hugepages`: the cache-prefetch and transparent-huge-page hints (the
//!   crate's `unsafe` besides `mapped`'s `mmap`, one call each).
//!
//! # Concurrency design
//! All state sits behind one `parking_lot::RwLock<Store>` plus per-node locks, chosen so
//! that searches take **one** uncontended read lock per query and nothing else:
//! - **Write lock** (short, memcpy-sized): appending a node (its vector, an empty neighbour
//!   block, its level), overwriting a vector on re-insert, removing. `insert` then
//!   *downgrades* to a read lock for the expensive part, linking.
//! - **Read lock**: searches, and linking. Linking mutates neighbour lists under the read
//!   lock: lists are `AtomicU32` arrays (`[len, n0, n1, …]`); writers of one node's lists
//!   serialize on that node's `parking_lot::Mutex<()>` (one byte), readers take no lock and
//!   may see a list mid-rewrite — harmless, since every entry is always some valid slot.
//!   A thread never holds two node mutexes at once, so there is no lock order to violate.
//! - The entry point (node with the highest level) is behind its own mutex, read once per
//!   search.
//! - `insert_batch` appends all vectors under one write lock, then links them on the rayon
//!   pool, taking the read lock per node so that single writers are never starved.
//!
//! - Graph health: each node's level-0 in-degree is tracked, and a prune never cuts a live
//!   node's last in-link; prunes racing on two threads can still strand a node, so
//!   [`VectorIndex::repair`] (run after large batches) reconnects anything a walk from the
//!   entry point cannot reach.
//!
//! A vector is only ever read under a lock that excludes its writer, so a search never
//! scores a half-written vector, and because scores are always computed from the stored
//! vector, an updated id is never returned with its old vector's score. Slots are never
//! freed: a removed id is a tombstone that still routes walks and is revived in place by a
//! re-insert; updates re-link the node in place (no growth).
//!
//! Distances are recd-core's safe, auto-vectorized kernels (`recd_core::vector`), or, in the
//! int8 mode, `quant`'s integer kernel over the codes followed by an exact `f32` re-score of
//! a short list (so scores are exact in both modes). The crate's only `unsafe` is a hint and
//! two kinds of mapping: a software prefetch (`prefetch`), kept for a measured 2-3x on
//! scattered vector reads, an allocator that puts the arrays those reads hit in
//! transparent-huge-page mappings of their own (`hugepages`), for their TLB misses, and the
//! `mmap` of the int8 mode's vector file (`mapped`); everything else is checked by the
//! `unsafe_code = "deny"` lint.

#![warn(missing_docs)]

mod distance;
mod error;
mod flat;
mod hnsw;
mod hugepages;
mod index;
mod mapped;
mod planner;
mod prefetch;
mod quant;
mod reorder;
mod sketch;
mod snapshot;
mod store;
#[cfg(test)]
mod testing;
mod topk;
mod visited;

pub use distance::Metric;
pub use error::{IndexError, SnapshotError};
pub use index::{Hit, HnswParams, MemoryUsage, PlanCounts, SearchReport, VectorIndex};
pub use planner::{SearchOptions, Strategy};
pub use quant::Quantization;
pub use roaring;
pub use snapshot::SnapshotInfo;
