//! Node order for memory locality: which slot numbers the graph's nodes should have so that
//! nodes a walk visits together sit together in the vector, code and link arrays.
//!
//! Slots are handed out in insertion order, which for a catalog is unrelated to where an
//! item sits in the embedding space: the nodes of one walk are spread over the whole arena
//! and almost every distance is a cache and TLB miss. Numbering the nodes in breadth-first
//! order of the level-0 graph (from the entry point) puts each node's neighbours, and their
//! neighbours, close to it — a Cuthill–McKee-style order, which Coleman et al. (2022, "Graph
//! reordering for cache-efficient near neighbor search") found about as good as far costlier
//! orders for HNSW. Measured on the benchmark catalogs (`BENCHMARKS.md`, session 20): the
//! same graph answers the same results 1.25–1.8× faster in the `f32` mode.
//!
//! The order is applied when a snapshot is written (`snapshot::encode`) and by
//! [`VectorIndex::reorder`](crate::VectorIndex::reorder) after a bulk build.

use crate::store::Store;

/// A locality order of the store's slots: `order[new] = old`. Breadth-first over level 0
/// from `entry`, then from every slot not reached yet in slot order (removed nodes are
/// waypoints and keep their place in the walk; a node no walk reaches still gets a slot).
/// Every slot appears exactly once. One pass over the level-0 lists.
pub(crate) fn locality_order(st: &Store, entry: Option<u32>) -> Vec<u32> {
    let slots = st.slots();
    let mut order: Vec<u32> = Vec::with_capacity(slots);
    let mut placed = vec![false; slots];
    let mut list = Vec::with_capacity(st.max_links(0));
    let roots = entry.into_iter().chain(0..slots as u32);
    for root in roots {
        let r = root as usize;
        if r >= slots || placed[r] {
            continue;
        }
        placed[r] = true;
        // `order` doubles as the queue: everything after `head` is waiting to be expanded.
        let mut head = order.len();
        order.push(root);
        while head < order.len() {
            let node = order[head];
            head += 1;
            st.neighbours(node, 0, &mut list);
            for &n in &list {
                // Neighbour entries are always valid slots (see `store`), but a snapshot
                // writer may pass a slot count taken before later appends: stay in range.
                if let Some(p) = placed.get_mut(n as usize)
                    && !*p
                {
                    *p = true;
                    order.push(n);
                }
            }
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
