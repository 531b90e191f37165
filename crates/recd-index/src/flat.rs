//! Exact (brute-force) search: the fallback for selective filters and the test oracle.
//!
//! Scores every live vector (or every allowed id) against the query and keeps the best `k`
//! in a bounded heap. Results are exact and deterministic: ties in score go to the smaller id.

use roaring::RoaringBitmap;

use crate::hnsw::Scorer;
use crate::store::Store;
use crate::topk::{Scored, TopK};

/// The `k` nearest live vectors by `scorer`, ascending distance; keys are caller ids.
pub(crate) fn scan_all(st: &Store, scorer: &impl Scorer, k: usize) -> Vec<Scored> {
    let mut top = TopK::new(k);
    for slot in 0..st.slots() as u32 {
        if !st.is_deleted(slot) {
            top.push(Scored {
                dist: scorer.dist(slot),
                key: st.id_of(slot),
            });
        }
    }
    top.into_sorted()
}

/// How many vectors ahead the id scan prefetches (16 beat 8 by ~8 % on the 10 % filter).
const PREFETCH_AHEAD: usize = 16;

/// The `k` nearest among `ids` by `scorer` (ids without a live vector are skipped); keys are caller ids.
///
/// The allowed vectors sit at scattered addresses, so the scan resolves the slots first and
/// then prefetches `PREFETCH_AHEAD` vectors ahead of the one it scores.
pub(crate) fn scan_ids(
    st: &Store,
    scorer: &impl Scorer,
    k: usize,
    ids: &RoaringBitmap,
) -> Vec<Scored> {
    let mut top = TopK::new(k);
    // A plain loop into a sized Vec: `collect` through `filter_map` asked roaring's
    // iterator for size hints it computes slowly (12 % of a 10 % filter's scan, `perf`).
    let mut targets: Vec<(u32, u32)> = Vec::with_capacity(ids.len() as usize);
    for id in ids {
        if let Some(slot) = st.slot_of(id) {
            targets.push((id, slot));
        }
    }
    for &(_, slot) in targets.iter().take(PREFETCH_AHEAD) {
        scorer.prefetch(slot);
    }
    for (i, &(id, slot)) in targets.iter().enumerate() {
        if let Some(&(_, ahead)) = targets.get(i + PREFETCH_AHEAD) {
            scorer.prefetch(ahead);
        }
        top.push(Scored {
            dist: scorer.dist(slot),
            key: id,
        });
    }
    top.into_sorted()
}
