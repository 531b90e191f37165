//! Node order for memory locality: which slot numbers the graph's nodes should have so that
//! nodes a walk visits together sit together in the vector, code and link arrays.
//!
//! Slots are handed out in insertion order, which for a catalog is unrelated to where an
//! item sits in the embedding space: the nodes of one walk are spread over the whole arena
//! and almost every distance is a cache and TLB miss. Numbering them breadth-first through
//! the graph (a Cuthill–McKee-style order; graph reordering for HNSW is studied by Coleman
//! et al. 2022, "Graph reordering for cache-efficient near neighbor search"), with the
//! upper levels, which every search reads, first (see [`locality_order`]), makes the same
//! graph answer the same results 1.3–1.9× faster in the `f32` mode on the benchmark
//! catalogs (`BENCHMARKS.md`, session 20; less in int8, whose codes are one line each).
//!
//! The order is applied when a snapshot is written (`snapshot::encode`) and by
//! [`VectorIndex::reorder`](crate::VectorIndex::reorder): after a bulk build
//! (`insert_bulk`), and in a running server once enough nodes were written since the last
//! time (`reorder_if_stale`).

use crate::store::Store;

/// A locality order of the store's slots: `order[new] = old`, in two parts.
///
/// 1. The nodes of levels ≥ 1, breadth-first over level 1 from the entry point. Every
///    search reads them (the descent, then level 1's beam), so together they stay cached.
/// 2. Every other node, breadth-first over level 0 with all of part 1 as the starting
///    queue: the level-0 neighbours of each upper node follow it in turn, so a walk's
///    level-0 reads land near the upper nodes that led it there.
///
/// Nodes neither walk reaches (removed nodes are waypoints and are reached like any other)
/// follow in slot order, each starting its own walk. Every slot appears exactly once. One
/// pass over the level-0 and level-1 lists. Against a plain breadth-first order from the
/// entry point it measured 0.9–1.2× (3-round medians, 100k × 64; `BENCHMARKS.md`, session
/// 20): either order is the gain over insertion order.
pub(crate) fn locality_order(st: &Store, entry: Option<u32>) -> Vec<u32> {
    let slots = st.slots();
    let mut order: Vec<u32> = Vec::with_capacity(slots);
    let mut placed = vec![false; slots];
    let mut list = Vec::with_capacity(st.max_links(0));
    // `order` doubles as the queue: the nodes after `head` wait to be expanded.
    let mut expand = |order: &mut Vec<u32>, placed: &mut [bool], mut head: usize, level| {
        while head < order.len() {
            st.neighbours(order[head], level, &mut list);
            head += 1;
            for &n in &list {
                // Neighbour entries are valid slots (see `store`), but a snapshot writer
                // passes a slot count taken before later appends: stay in range.
                if let Some(p) = placed.get_mut(n as usize)
                    && !*p
                {
                    *p = true;
                    order.push(n);
                }
            }
        }
    };
    let entry = entry.filter(|&e| (e as usize) < slots);
    let upper = entry
        .into_iter()
        .chain(0..slots as u32)
        .filter(|&s| st.level(s) >= 1);
    for root in upper {
        if !std::mem::replace(&mut placed[root as usize], true) {
            let head = order.len();
            order.push(root);
            // A level-1 neighbour is always a node of level >= 1.
            expand(&mut order, &mut placed, head, 1);
        }
    }
    expand(&mut order, &mut placed, 0, 0);
    for root in entry.into_iter().chain(0..slots as u32) {
        if !std::mem::replace(&mut placed[root as usize], true) {
            let head = order.len();
            order.push(root);
            expand(&mut order, &mut placed, head, 0);
        }
    }
    order
}

/// The inverse of an order: `new_of[old] = new`.
pub(crate) fn inverse(order: &[u32]) -> Vec<u32> {
    let mut new_of = vec![0u32; order.len()];
    for (new, &old) in order.iter().enumerate() {
        // `order` has at most u32::MAX slots (slots are u32).
        new_of[old as usize] = new as u32;
    }
    new_of
}
