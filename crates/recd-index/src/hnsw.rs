//! The HNSW graph algorithms (Malkov & Yashunin 2016): level assignment, the descent (greedy
//! above level 1, a beam on level 1: see [`Graph::search`]), the best-first layer search with
//! an admission predicate, the neighbour-selection heuristic, and linking a node into the
//! graph.
//!
//! Everything here works on a `&Store` (the caller holds the store's read lock), so links can
//! be built by several threads at once; each node's neighbour lists are rewritten under that
//! node's own mutex, and a thread never holds two of those mutexes at a time (no lock order
//! to get wrong). The graph's entry point sits behind its own small mutex.
//!
//! Filtering is done *inside* the walk: [`search_layer`] expands every node it reaches (the
//! graph stays connected through filtered-out and deleted nodes) but only *admits* nodes the
//! predicate accepts into the result set, and it keeps expanding until it holds `ef` admitted
//! nodes or runs out of graph. That is hnswlib's filtered search, except that a filtered walk
//! expands its few closest candidates together ([`FILTERED_BATCH`]) so that it waits on memory
//! once per batch; the planner decides when the walk beats an exact scan.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use parking_lot::Mutex;

use crate::quant::CodedQuery;
use crate::store::Store;
use crate::topk::Scored;
use crate::visited::Visited;

/// How a walk scores a node against its query: exactly on the `f32` vectors, or
/// approximately on the int8 codes. Generic (not `dyn`) so each walk is compiled for its
/// kernel and the distance call inlines.
pub(crate) trait Scorer {
    /// Distance (lower is better) from the query to `slot`.
    fn dist(&self, slot: u32) -> f32;
    /// Starts loading what `dist(slot)` will read.
    fn prefetch(&self, slot: u32);
}

/// Scores on the stored `f32` vectors (linking, unquantized searches, re-scoring).
pub(crate) struct Exact<'a> {
    pub(crate) st: &'a Store,
    pub(crate) q: &'a [f32],
}

impl Scorer for Exact<'_> {
    #[inline(always)]
    fn dist(&self, slot: u32) -> f32 {
        self.st.distance(self.q, slot)
    }
    #[inline]
    fn prefetch(&self, slot: u32) {
        self.st.prefetch(slot);
    }
}

/// Scores on the int8 codes (quantized searches; see `quant`).
pub(crate) struct Coded<'a> {
    pub(crate) st: &'a Store,
    pub(crate) q: &'a CodedQuery,
}

impl Scorer for Coded<'_> {
    // Always inlined: as a call it cost a fifth of a filtered scan (`perf`).
    #[inline(always)]
    fn dist(&self, slot: u32) -> f32 {
        self.st.code_distance(self.q, slot)
    }
    #[inline]
    fn prefetch(&self, slot: u32) {
        self.st.prefetch_codes(slot);
    }
}

/// Which nodes a walk may return (see [`search_layer`]); any `Fn(u32) -> bool` is one.
pub(crate) trait Admit {
    /// Whether `slot` may be in the result.
    fn admit(&self, slot: u32) -> bool;
    /// Starts loading what `admit(slot)` will read; called beside [`Scorer::prefetch`].
    #[inline]
    fn prefetch(&self, _slot: u32) {}
}

impl<F: Fn(u32) -> bool> Admit for F {
    #[inline(always)]
    fn admit(&self, slot: u32) -> bool {
        self(slot)
    }
}

/// Candidates a filtered walk expands together on level 0 (see [`search_layer`]). Against
/// one at a time on the 100k × 64 benchmark catalog (same graph, alternated, k = 10, ef 10
/// and 24, recall the same ±0.004): f32 1.16–1.20× for a random 10 % filter, 1.12–1.17× for
/// 20 %, 1.08–1.17× for the correlated category filter, 1.04–1.15× for 50 % (a scratch
/// build); int8 1.01–1.09×. Two and three were measured too (four was best or tied).
/// Unfiltered walks keep one: there the greedy order matters more (four: int8 0.87–0.97×).
pub(crate) const FILTERED_BATCH: usize = 4;

/// Highest level a node can get (the expected top level for 10^9 nodes at M = 16 is ~7).
pub(crate) const MAX_LEVEL: u64 = 15;
/// Fixed seed for level assignment, so a build is reproducible from its insertion order.
const LEVEL_SEED: u64 = 0x5EED_F0F4_EC0D;

/// The graph's entry point: the node with the highest level.
#[derive(Debug, Clone, Copy)]
struct Entry {
    slot: u32,
    level: usize,
}

/// Graph-wide state that is not per node: construction parameters and the entry point.
#[derive(Debug)]
pub(crate) struct Graph {
    /// Neighbours chosen per node and level at insertion (`M`).
    m: usize,
    ef_construction: usize,
    /// Level multiplier `1 / ln(M)`.
    ml: f64,
    /// `None` until the first node is linked.
    entry: Mutex<Option<Entry>>,
}

impl Graph {
    pub(crate) fn new(m: usize, ef_construction: usize) -> Self {
        Graph {
            m,
            ef_construction,
            ml: 1.0 / (m as f64).ln(),
            entry: Mutex::new(None),
        }
    }

    /// Level for a new node: `floor(-ln(U) * mL)` with `U` drawn from a hash of the slot
    /// number, so that no RNG state is shared between inserting threads.
    pub(crate) fn random_level(&self, slot: u32) -> u8 {
        let h = splitmix64(u64::from(slot) ^ LEVEL_SEED);
        let u = ((h >> 11) as f64 + 1.0) / (1u64 << 53) as f64; // (0, 1]
        let level = (-u.ln() * self.ml).floor();
        // `level` is finite and >= 0 (u in (0, 1]); the cast saturates, then we cap it.
        (level as u64).min(MAX_LEVEL) as u8
    }

    /// The entry point as `(slot, level)`, if any node has been linked.
    pub(crate) fn entry(&self) -> Option<(u32, usize)> {
        self.entry.lock().map(|e| (e.slot, e.level))
    }

    /// Sets the entry point (a snapshot load restores the saved one).
    pub(crate) fn set_entry(&self, slot: u32, level: usize) {
        *self.entry.lock() = Some(Entry { slot, level });
    }

    /// Whether any node has been linked (a walk needs an entry point).
    pub(crate) fn has_entry(&self) -> bool {
        self.entry.lock().is_some()
    }

    /// Links `slot` (already in the store) into the graph, or re-links it after its vector
    /// changed: its own lists are replaced, and it is added to its new neighbours' lists.
    pub(crate) fn link(&self, st: &Store, slot: u32, visited: &mut Visited) {
        let level = st.level(slot);
        let entry = {
            let mut e = self.entry.lock();
            match *e {
                None => {
                    *e = Some(Entry { slot, level });
                    return;
                }
                Some(en) => en,
            }
        };
        // The stored vector is the query form (normalized under cosine), and it cannot
        // change while the store is read-locked.
        let scorer = Exact {
            st,
            q: st.vector(slot),
        };
        let mut buf = Vec::with_capacity(st.max_links(0));
        let mut cur = Scored {
            dist: scorer.dist(entry.slot),
            key: entry.slot,
        };
        for lc in (level + 1..=entry.level).rev() {
            cur = greedy(st, &scorer, cur, lc, &mut buf);
        }
        let mut eps = vec![cur];
        // Linking is never cut short.
        let mut unlimited = usize::MAX;
        let top = level.min(entry.level);
        // The neighbours are chosen top-down (each level's search starts from the one
        // above), but published bottom-up, the node's own lists first: a concurrent search
        // that reaches the node on some level must find its lists on every level below.
        // Published level by level on the way down, an upper-level in-link made the node
        // reachable while its level-0 list was still empty, and a search descending through
        // it returned that one node (a stress test saw it in 7 runs out of 40). The graph
        // is the same either way: a level's search reads only that level's lists, and the
        // node's in-links on it are added after that search in both orders.
        let mut chosen = vec![Vec::new(); top + 1];
        for lc in (0..=top).rev() {
            visited.reset(st.slots());
            let admit = |n: u32| n != slot && !st.is_deleted(n);
            let found = search_layer(
                st,
                &scorer,
                &eps,
                self.ef_construction,
                1,
                lc,
                admit,
                visited,
                &mut buf,
                &mut unlimited,
            );
            chosen[lc] = select_heuristic(st, &found, self.m);
            if !found.is_empty() {
                eps = found;
            }
        }
        {
            let _g = st.lock_links(slot);
            for (lc, list) in chosen.iter().enumerate() {
                st.set_neighbours(slot, lc, list);
            }
        }
        for (lc, list) in chosen.iter().enumerate() {
            for &n in list {
                add_link(st, n, slot, lc, &mut buf);
            }
        }
        if level > entry.level {
            let mut e = self.entry.lock();
            if e.is_none_or(|e| level > e.level) {
                *e = Some(Entry { slot, level });
            }
        }
    }

    /// Best-first search for the `ef` nearest admitted nodes (ascending distance; keys are
    /// slots). Empty if the graph has no entry point yet. `budget` caps the level-0 walk's
    /// distance computations (see [`search_layer`]); 0 afterwards means it ran out.
    ///
    /// The descent is greedy down to level 2, as in the paper, but level 1 is searched with
    /// a beam of `ef` whose nodes all enter level 0. A greedy descent ends in one basin, and
    /// for a query unlike the items (a user's vector among item vectors) that basin can be
    /// the wrong one: on the 1M × 64 benchmark catalog 19 of 300 user queries found none of
    /// their 10 nearest at ef 512, the same 19 on two graphs built apart, so recall stayed
    /// at 0.936 from ef 512 to 768. Level 1 holds ~1/M of the nodes, so its beam costs a
    /// fraction of level 0's; with it the same graph reaches recall 0.967 at ef 96
    /// (`BENCHMARKS.md`, session 18).
    ///
    /// `batch`: candidates level 0 expands together (1 for an unfiltered walk,
    /// [`FILTERED_BATCH`] for a filtered one; see [`search_layer`]).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn search(
        &self,
        st: &Store,
        scorer: &impl Scorer,
        ef: usize,
        batch: usize,
        admit: impl Admit,
        visited: &mut Visited,
        budget: &mut usize,
    ) -> Vec<Scored> {
        let Some(entry) = *self.entry.lock() else {
            return Vec::new();
        };
        let mut buf = Vec::with_capacity(st.max_links(0) * batch.max(1));
        let mut cur = Scored {
            dist: scorer.dist(entry.slot),
            key: entry.slot,
        };
        for lc in (2..=entry.level).rev() {
            cur = greedy(st, scorer, cur, lc, &mut buf);
        }
        let entries = if entry.level >= 1 {
            // Every node is on level 0, so the beam's marks must not carry over; the
            // level-0 budget is not spent here either.
            let mut unlimited = usize::MAX;
            let found = search_layer(
                st,
                scorer,
                &[cur],
                ef,
                1,
                1,
                |_| true,
                visited,
                &mut buf,
                &mut unlimited,
            );
            visited.reset(st.slots());
            found
        } else {
            vec![cur]
        };
        search_layer(
            st, scorer, &entries, ef, batch, 0, admit, visited, &mut buf, budget,
        )
    }
}

impl Graph {
    /// Makes every live node reachable again from the entry point on level 0, and returns how
    /// many were reconnected. Concurrent linking can (rarely) leave a node with no in-link, or
    /// a few nodes linking only to each other; a breadth-first pass from the entry point finds
    /// them, and each is linked *into* its nearest reachable nodes' lists (replacing their
    /// farthest link whose target has another in-link). Costs one pass over all level-0 lists
    /// plus one search per reconnected node.
    ///
    /// A snapshot taken while an insert was linking can also hold a node that others link
    /// to but whose own lists are empty: the snapshot copies nodes at different moments, so
    /// it may copy the node before its lists were written and a neighbour after its in-link
    /// was (`link` publishes a node's own lists before any in-link, so a live index never
    /// shows this). A search descending through such a node would start level 0 from a node
    /// with no neighbours and find nothing. Such nodes are linked again from scratch first,
    /// and counted.
    pub(crate) fn repair(&self, st: &Store, reached: &mut Visited, scratch: &mut Visited) -> usize {
        let Some(entry) = *self.entry.lock() else {
            return 0;
        };
        let mut buf = Vec::with_capacity(st.max_links(0));
        let unlinked: Vec<u32> = if st.slots() > 1 {
            (0..st.slots() as u32)
                .filter(|&s| {
                    st.neighbours(s, 0, &mut buf);
                    buf.is_empty()
                })
                .collect()
        } else {
            Vec::new()
        };
        let mut relinked = 0;
        for &u in &unlinked {
            self.link(st, u, scratch);
            st.neighbours(u, 0, &mut buf);
            relinked += usize::from(!buf.is_empty());
        }
        reached.reset(st.slots());
        reached.insert(entry.slot);
        let mut stack = vec![entry.slot];
        while let Some(s) = stack.pop() {
            st.neighbours(s, 0, &mut buf);
            stack.extend(buf.iter().copied().filter(|&n| reached.insert(n)));
        }
        let lost: Vec<u32> = (0..st.slots() as u32)
            .filter(|&s| !st.is_deleted(s) && !reached.contains(s))
            .collect();
        for &u in &lost {
            scratch.reset(st.slots());
            // The walk starts at the entry point, so everything it finds is reachable.
            let admit = |n: u32| n != u && !st.is_deleted(n) && reached.contains(n);
            let scorer = Exact {
                st,
                q: st.vector(u),
            };
            let mut unlimited = usize::MAX;
            let found = self.search(
                st,
                &scorer,
                self.ef_construction,
                1,
                admit,
                scratch,
                &mut unlimited,
            );
            let mut linked = 0;
            for n in select_heuristic(st, &found, self.m) {
                if force_link(st, n, u, &mut buf) {
                    linked += 1;
                    if linked == 2 {
                        break;
                    }
                }
            }
        }
        relinked + lost.iter().filter(|u| !unlinked.contains(u)).count()
    }
}

/// Puts `new` into `node`'s level-0 list even when the list is full, in place of the farthest
/// neighbour that has another in-link. Returns whether `new` is in the list afterwards.
fn force_link(st: &Store, node: u32, new: u32, buf: &mut Vec<u32>) -> bool {
    let _g = st.lock_links(node);
    st.neighbours(node, 0, buf);
    if buf.contains(&new) {
        return true;
    }
    if buf.len() < st.max_links(0) {
        buf.push(new);
    } else {
        let victim = buf
            .iter()
            .enumerate()
            .filter(|&(_, &y)| st.in_degree(y) > 1)
            .max_by(|a, b| {
                st.distance_between(node, *a.1)
                    .total_cmp(&st.distance_between(node, *b.1))
            })
            .map(|(i, _)| i);
        let Some(i) = victim else {
            return false;
        };
        buf[i] = new;
    }
    st.set_neighbours(node, 0, buf);
    true
}

/// Greedy descent on one level: move to the closest neighbour until none is closer.
fn greedy(
    st: &Store,
    scorer: &impl Scorer,
    mut cur: Scored,
    level: usize,
    buf: &mut Vec<u32>,
) -> Scored {
    loop {
        let mut changed = false;
        st.neighbours(cur.key, level, buf);
        for &n in buf.iter() {
            scorer.prefetch(n);
        }
        for &n in buf.iter() {
            let d = scorer.dist(n);
            if d < cur.dist {
                cur = Scored { dist: d, key: n };
                changed = true;
            }
        }
        if !changed {
            return cur;
        }
    }
}

/// Best-first search of one level from `entry`: expands through every node (admitted or
/// not) while it can still improve the result set, and returns up to `ef` *admitted* nodes
/// in ascending distance. `visited` must be freshly reset.
///
/// `budget` is how many more distances the walk may compute: it stops (returning what it
/// has) when that reaches 0. A filter that correlates with the embedding can leave the
/// admitted nodes far from where the walk starts, and then, with the bound infinite until
/// `ef` are admitted, the walk scores a large part of the graph (measured: 60–80 ms at
/// 1M × 64 for a 10 % category filter, where a scan of the allowed codes takes ~3 ms);
/// the caller gives a filtered walk a budget worth part of that scan and scans instead
/// when it runs out.
///
/// `batch` candidates are expanded together (the closest first, each still within the
/// bound): their unseen neighbours are read, prefetched and scored as one list. A walk
/// waits on memory — each scored node's vector or code is a cache miss, prefetched only
/// once its neighbour list is read — and one at a time it waits once per expanded node;
/// together, once per batch. It also explores a little more than a strictly best-first
/// walk (a neighbour of the first candidate that is closer than the second does not get
/// ahead of it), which a filtered walk, expanding every node inside the bound anyway,
/// barely notices: see [`FILTERED_BATCH`].
#[allow(clippy::too_many_arguments)]
pub(crate) fn search_layer(
    st: &Store,
    scorer: &impl Scorer,
    entry: &[Scored],
    ef: usize,
    batch: usize,
    level: usize,
    admit: impl Admit,
    visited: &mut Visited,
    buf: &mut Vec<u32>,
    budget: &mut usize,
) -> Vec<Scored> {
    let ef = ef.max(1);
    let mut candidates: BinaryHeap<Reverse<Scored>> = BinaryHeap::with_capacity(ef * 2);
    let mut results: BinaryHeap<Scored> = BinaryHeap::with_capacity(ef + 1);
    for &e in entry {
        if visited.insert(e.key) {
            candidates.push(Reverse(e));
            if admit.admit(e.key) {
                results.push(e);
                if results.len() > ef {
                    results.pop();
                }
            }
        }
    }
    // Until `ef` nodes are admitted every reachable node is worth expanding.
    let mut bound = worst_if_full(&results, ef);
    while let Some(Reverse(c)) = candidates.pop() {
        if c.dist > bound {
            break;
        }
        st.neighbours(c.key, level, buf);
        for _ in 1..batch {
            match candidates.peek() {
                Some(&Reverse(next)) if next.dist <= bound => {
                    candidates.pop();
                    st.append_neighbours(next.key, level, buf);
                }
                _ => break,
            }
        }
        visited.keep_unmarked(buf);
        if *budget < buf.len() {
            *budget = 0;
            break;
        }
        *budget -= buf.len();
        for &n in buf.iter() {
            scorer.prefetch(n);
            admit.prefetch(n);
        }
        for &n in buf.iter() {
            let d = scorer.dist(n);
            if d < bound {
                let s = Scored { dist: d, key: n };
                st.prefetch_links(n, level);
                candidates.push(Reverse(s));
                if admit.admit(n) {
                    results.push(s);
                    if results.len() > ef {
                        results.pop();
                    }
                    bound = worst_if_full(&results, ef);
                }
            }
        }
    }
    results.into_sorted_vec()
}

#[inline]
fn worst_if_full(results: &BinaryHeap<Scored>, ef: usize) -> f32 {
    match results.peek() {
        Some(w) if results.len() >= ef => w.dist,
        _ => f32::INFINITY,
    }
}

/// HNSW's neighbour-selection heuristic (paper's Algorithm 4 without extension): take
/// candidates nearest first, keeping one only if it is closer to the base node than to every
/// neighbour kept so far. Spreads links across directions, which keeps clusters connected.
/// `sorted` must be ascending by distance to the base node.
fn select_heuristic(st: &Store, sorted: &[Scored], m: usize) -> Vec<u32> {
    if sorted.len() <= m {
        return sorted.iter().map(|s| s.key).collect();
    }
    let mut kept: Vec<u32> = Vec::with_capacity(m);
    for c in sorted {
        if kept.len() >= m {
            break;
        }
        if kept
            .iter()
            .all(|&k| st.distance_between(c.key, k) >= c.dist)
        {
            kept.push(c.key);
        }
    }
    kept
}

/// Adds `new` to `node`'s list on `level`, pruning with the heuristic when it is full.
fn add_link(st: &Store, node: u32, new: u32, level: usize, buf: &mut Vec<u32>) {
    let _g = st.lock_links(node);
    st.neighbours(node, level, buf);
    if buf.contains(&new) {
        return;
    }
    let max = st.max_links(level);
    if buf.len() < max {
        buf.push(new);
        st.set_neighbours(node, level, buf);
        return;
    }
    // The full list's vectors are a neighbour's neighbours, rarely in cache: start them all
    // loading before the first distance needs one.
    for &x in buf.iter() {
        st.prefetch(x);
    }
    let mut cands: Vec<Scored> = buf
        .iter()
        .chain(std::iter::once(&new))
        .map(|&x| Scored {
            dist: st.distance_between(node, x),
            key: x,
        })
        .collect();
    cands.sort_unstable();
    let mut kept = select_heuristic(st, &cands, max);
    if level == 0 {
        keep_last_in_links(st, &cands, &mut kept, max);
    }
    st.set_neighbours(node, level, &kept);
}

/// Orphan protection for a level-0 prune: a live candidate the heuristic dropped whose only
/// in-link is the one being pruned (or, for the node being linked, that has none yet) would
/// become unreachable by any walk. Keep it: in a free place if there is one, else instead of
/// the farthest kept node that has another in-link. In-degrees are read without a global
/// lock, so two concurrent prunes can still orphan a node; that is rare, and harmless to
/// correctness (the exact-scan fallback still finds it under a filter).
fn keep_last_in_links(st: &Store, sorted: &[Scored], kept: &mut Vec<u32>, max: usize) {
    for c in sorted {
        let x = c.key;
        if kept.contains(&x) || st.is_deleted(x) || st.in_degree(x) > 1 {
            continue;
        }
        // `x` is either in the list being pruned with in-degree 1 (this edge), or the new
        // node with in-degree <= 1 (an edge it got from a node linked just before).
        if kept.len() < max {
            kept.push(x);
        } else if let Some(i) = kept.iter().rposition(|&y| st.in_degree(y) > 1) {
            kept[i] = x;
        }
    }
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_distribution_is_geometric() {
        let g = Graph::new(16, 100);
        let n = 100_000u32;
        let above0 = (0..n).filter(|&s| g.random_level(s) > 0).count() as f64;
        // P(level > 0) = 1/M = 0.0625.
        let p = above0 / f64::from(n);
        assert!((p - 0.0625).abs() < 0.005, "P(level > 0) = {p}");
        assert!((0..n).all(|s| u64::from(g.random_level(s)) <= MAX_LEVEL));
    }
}
