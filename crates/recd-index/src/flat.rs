//! Exact (brute-force) search: the fallback for selective filters and the test oracle.
//!
//! Scores every live vector (or every allowed id) against the query and keeps the best `k`
//! in a bounded collector (`topk`). Results are exact and deterministic: ties in score go to
//! the smaller id.
//!
//! The scan of a filter's int8 codes ([`scan_codes`]), the planner's choice for selective
//! filters in the quantized mode, runs inside `pulp`'s runtime CPU-feature dispatch: the
//! whole loop is compiled once for baseline x86-64 and once for AVX2 (x86-64-v3), and the
//! best the CPU has is picked per query, so the integer kernel gets 256-bit `vpmaddwd`
//! without a `-C target-cpu` flag and without `unsafe` in this crate.

use pulp::{Simd, WithSimd};
use roaring::RoaringBitmap;

use crate::distance::Metric;
use crate::hnsw::Scorer;
use crate::prefetch::prefetch;
use crate::quant::CodedQuery;
use crate::sketch::SketchQuery;
use crate::store::{CodesView, SketchView, Store};
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

/// How many vectors ahead the id scan prefetches (16 beat 8 by ~8 % on the 10 % filter; for
/// the code scan 16, 32, 64 and 128 measured the same, 2026-12-03).
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
    let targets = targets(st, ids);
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

/// `(id, slot)` of every id in `ids` that has a live vector, in id order.
fn targets(st: &Store, ids: &RoaringBitmap) -> Vec<(u32, u32)> {
    // A plain loop into a sized Vec: `collect` through `filter_map` asked roaring's
    // iterator for size hints it computes slowly (12 % of a 10 % filter's scan, `perf`).
    let mut targets: Vec<(u32, u32)> = Vec::with_capacity(ids.len() as usize);
    let mut feed = Feed::new(st, ids);
    let mut block = [(0u32, 0u32); BLOCK];
    while let Some(n) = feed.fill(&mut block) {
        targets.extend_from_slice(&block[..n]);
    }
    targets
}

/// [`scan_ids`] on the int8 codes: the `k` nearest among `ids` by code distance (keys are
/// caller ids), identical to `scan_ids` with a `Coded` scorer, run under runtime dispatch
/// (see the module docs).
pub(crate) fn scan_codes(
    st: &Store,
    view: CodesView<'_>,
    q: &CodedQuery,
    k: usize,
    ids: &RoaringBitmap,
) -> Vec<Scored> {
    scan_codes_on(pulp::Arch::new(), st, view, q, k, ids)
}

/// [`scan_codes`] on a given dispatcher: `pulp::Arch::new()` picks the best the CPU has;
/// tests pass `pulp::Arch::Scalar` to run the baseline path on any machine.
fn scan_codes_on(
    arch: pulp::Arch,
    st: &Store,
    view: CodesView<'_>,
    q: &CodedQuery,
    k: usize,
    ids: &RoaringBitmap,
) -> Vec<Scored> {
    arch.dispatch(CodeScan {
        view,
        q,
        k,
        feed: Feed::new(st, ids),
    })
}

/// A broad filter's scan through the sketches (see `sketch`): the `keep` nearest among
/// `ids` by `scorer` (keys are caller ids), and how many vectors `scorer` scored.
///
/// The first pass estimates every allowed vector from its sketch, with a lower bound on
/// its true distance. About the `r` lowest bounds are scored; then every other vector
/// whose bound is below the `k`-th best distance found so far (it might still be among the
/// `k` best). So the short list grows with the estimates' uncertainty for this query: ~`r` for
/// a random filter, a few times that for a filter far from the query (measured in
/// `tests/recall.rs`).
pub(crate) fn scan_sketched(
    st: &Store,
    view: SketchView<'_>,
    q: &SketchQuery,
    scorer: &impl Scorer,
    sizes: SketchSizes,
    ids: &RoaringBitmap,
) -> (Vec<Scored>, usize) {
    BOUNDS.with(|cell| {
        // A buffer per thread, reused: a fresh one per query (80 KB for a 10 % filter of
        // 100k) would fault its pages in every time.
        let mut fresh = Vec::new();
        let mut held = cell.try_borrow_mut();
        let bounds = match &mut held {
            Ok(b) => &mut **b,
            Err(_) => &mut fresh,
        };
        let found = sketched_with(pulp::Arch::new(), st, view, q, scorer, sizes, ids, bounds);
        // A thread keeps at most this much between queries (a 20 % filter of 1M).
        if bounds.capacity() > MAX_KEPT_BOUNDS {
            *bounds = Vec::new();
        }
        found
    })
}

/// Largest bounds buffer (entries, 8 bytes each) a thread keeps for its next scan.
const MAX_KEPT_BOUNDS: usize = 200_000;

/// What a sketched scan returns and scores first: the `k` the bound is taken at, how many
/// it `keep`s (more than `k` when codes are re-scored after it), and about how many of the
/// lowest bounds it scores `first`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SketchSizes {
    pub(crate) k: usize,
    pub(crate) keep: usize,
    pub(crate) first: usize,
}

thread_local! {
    static BOUNDS: std::cell::RefCell<Vec<Scored>> = const { std::cell::RefCell::new(Vec::new()) };
}

#[allow(clippy::too_many_arguments)]
fn sketched_with(
    arch: pulp::Arch,
    st: &Store,
    view: SketchView<'_>,
    q: &SketchQuery,
    scorer: &impl Scorer,
    SketchSizes { k, keep, first: r }: SketchSizes,
    ids: &RoaringBitmap,
    bounds: &mut Vec<Scored>,
) -> (Vec<Scored>, usize) {
    bounds.clear();
    bounds.reserve(usize::try_from(ids.len()).unwrap_or(0).min(st.slots()));
    let scan = SketchScan {
        view,
        q,
        feed: Feed::new(st, ids),
        out: bounds,
    };
    #[cfg(target_arch = "x86_64")]
    if let (pulp::Arch::V3(v3), Some(one)) = (arch, q.one_word()) {
        v3.vectorize(SketchScanAvx2 { v3, one, scan });
    } else {
        arch.dispatch(scan);
    }
    #[cfg(not(target_arch = "x86_64"))]
    arch.dispatch(scan);
    let n = bounds.len();
    if n == 0 || k == 0 {
        return (Vec::new(), 0);
    }
    // A bound below which ~`r` vectors lie, from a sample of ~2r bounds: selecting the
    // exact r-th of all of them was a seventh of a 10 % filter's search (`perf`), and the
    // first round needs only about r of the most promising, not exactly r.
    let step = (n / (2 * r).max(1)).max(1);
    let mut sample: Vec<f32> = bounds.iter().step_by(step).map(|b| b.dist).collect();
    let at = (r / step).min(sample.len() - 1);
    let (_, &mut first_cut, _) = sample.select_nth_unstable_by(at, f32::total_cmp);
    let mut scored: Vec<Scored> = Vec::with_capacity(r + r / 2);
    let mut slots: Vec<u32> = bounds
        .iter()
        .filter(|b| b.dist <= first_cut)
        .map(|b| b.key)
        .collect();
    score_slots(st, scorer, &slots, &mut scored);
    // The k-th best distance so far: a vector whose bound is not below it cannot enter.
    let kth = if scored.len() >= k {
        let mut d: Vec<f32> = scored.iter().map(|s| s.dist).collect();
        let (_, kth, _) = d.select_nth_unstable_by(k - 1, f32::total_cmp);
        *kth
    } else {
        f32::INFINITY
    };
    slots.clear();
    slots.extend(
        bounds
            .iter()
            .filter(|b| b.dist > first_cut && b.dist < kth)
            .map(|b| b.key),
    );
    score_slots(st, scorer, &slots, &mut scored);
    let n = scored.len();
    let mut top = TopK::new(keep);
    for s in scored {
        top.push(s);
    }
    (top.into_sorted(), n)
}

/// Scores `slots` by `scorer` into `out` (keys become caller ids), prefetching ahead.
fn score_slots(st: &Store, scorer: &impl Scorer, slots: &[u32], out: &mut Vec<Scored>) {
    for &slot in slots.iter().take(PREFETCH_AHEAD) {
        scorer.prefetch(slot);
    }
    for (i, &slot) in slots.iter().enumerate() {
        if let Some(&a) = slots.get(i + PREFETCH_AHEAD) {
            scorer.prefetch(a);
        }
        out.push(Scored {
            dist: scorer.dist(slot),
            key: st.id_of(slot),
        });
    }
}

/// The first pass of a sketched scan, as a `pulp` operation (see [`CodeScan`] for why
/// everything it calls is inlined): `(lower bound, slot)` of every allowed vector into
/// `out`, prefetching ahead when the sketches do not fit the caches (see
/// [`SKETCH_PREFETCH_ABOVE`]).
struct SketchScan<'a> {
    view: SketchView<'a>,
    q: &'a SketchQuery,
    feed: Feed<'a>,
    out: &'a mut Vec<Scored>,
}

impl WithSimd for SketchScan<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(mut self, _simd: S) {
        let mut block = [(0u32, 0u32); BLOCK];
        let (arena, stride, norms2) = (self.view.arena, self.view.stride, self.view.norms2);
        let norm2 = |slot: u32| norms2.get(slot as usize).copied().unwrap_or(0.0);
        // One-word sketches on an AVX2 CPU go to `SketchScanAvx2` instead.
        while let Some(n) = self.feed.fill(&mut block) {
            for (i, &(_, slot)) in block[..n].iter().enumerate() {
                if let Some(&(_, ahead)) = block[..n].get(i + PREFETCH_AHEAD) {
                    sketch_hint(self.view, ahead);
                }
                let at = slot as usize * stride;
                if let Some(sketch) = arena.get(at..at + stride) {
                    let (_, lower) = self.q.dist(sketch, norm2(slot));
                    self.out.push(Scored {
                        dist: lower,
                        key: slot,
                    });
                }
            }
        }
    }
}

/// [`SketchScan`] of one-word sketches on AVX2, four at a time (see `sketch::avx2`); the
/// same bounds, in the same order.
#[cfg(target_arch = "x86_64")]
struct SketchScanAvx2<'a> {
    v3: pulp::x86::V3,
    one: crate::sketch::OneWordQuery<'a>,
    scan: SketchScan<'a>,
}

#[cfg(target_arch = "x86_64")]
impl pulp::NullaryFnOnce for SketchScanAvx2<'_> {
    type Output = ();

    #[inline(always)]
    fn call(self) {
        use crate::sketch::avx2;
        let SketchScanAvx2 { v3, one, scan } = self;
        let SketchScan {
            view,
            mut feed,
            out,
            ..
        } = scan;
        let lanes = avx2::Lanes::new(v3, &one);
        let norm2 = |slot: u32| view.norms2.get(slot as usize).copied().unwrap_or(0.0);
        let word = |slot: u32, i: usize| view.arena.get(slot as usize * 2 + i).copied();
        let mut block = [(0u32, 0u32); BLOCK];
        while let Some(n) = feed.fill(&mut block) {
            for &(_, slot) in block[..n].iter().take(PREFETCH_AHEAD) {
                sketch_hint(view, slot);
            }
            let mut quads = block[..n].chunks_exact(4);
            for (qi, quad) in (&mut quads).enumerate() {
                // Sketches beyond the caches (1M × 64: 16 MB) come from DRAM: keep the next
                // ones in flight.
                for &(_, ahead) in block[..n].iter().skip(qi * 4 + PREFETCH_AHEAD).take(4) {
                    sketch_hint(view, ahead);
                }
                let slots = [quad[0].1, quad[1].1, quad[2].1, quad[3].1];
                let (mut bits, mut tails) = ([0u64; 4], [0u64; 4]);
                let mut whole = true;
                for (i, &slot) in slots.iter().enumerate() {
                    match (word(slot, 0), word(slot, 1)) {
                        (Some(b), Some(t)) => (bits[i], tails[i]) = (b, t),
                        _ => whole = false,
                    }
                }
                if !whole {
                    // A slot without a sketch (the store rules it out): one at a time.
                    for &slot in &slots {
                        if let (Some(b), Some(t)) = (word(slot, 0), word(slot, 1)) {
                            let (_, dist) = one.dist(b, t, norm2(slot));
                            out.push(Scored { dist, key: slot });
                        }
                    }
                    continue;
                }
                let lower = avx2::lower4(v3, &lanes, bits, tails, slots.map(norm2));
                for (dist, key) in lower.into_iter().zip(slots) {
                    out.push(Scored { dist, key });
                }
            }
            for &(_, slot) in quads.remainder() {
                if let (Some(b), Some(t)) = (word(slot, 0), word(slot, 1)) {
                    let (_, dist) = one.dist(b, t, norm2(slot));
                    out.push(Scored { dist, key: slot });
                }
            }
        }
    }
}

/// Sketch arenas larger than this are prefetched during a scan: at 100k × 64 (1.6 MB,
/// mostly cached) the hints cost 10-15 % of a 10 % filter's scan, at 1M (16 MB, from DRAM)
/// they halve it (`knn_latency`, int8 rand10 p50 3,349 -> 1,762 µs; 2026-12-04).
const SKETCH_PREFETCH_ABOVE: usize = 4 << 20;

/// Hints the CPU to start loading `slot`'s sketch, if the sketches are large enough to
/// need it.
#[inline(always)]
fn sketch_hint(view: SketchView<'_>, slot: u32) {
    if std::mem::size_of_val(view.arena) <= SKETCH_PREFETCH_ABOVE {
        return;
    }
    let at = slot as usize * view.stride;
    if let Some(sketch) = view.arena.get(at..at + view.stride) {
        prefetch(sketch);
    }
}

/// Ids decoded (and mapped to slots) per block of the code scan.
const BLOCK: usize = 256;

/// The allowed `(id, slot)` pairs, a block at a time, in id order: decoding the bitmap in
/// blocks (`next_many`) beat one `next` per id by ~2× in a 10 % scan (`perf`), and blocks
/// instead of one list of every target keep the scan from allocating (a fresh 80 KB list per
/// query cost page faults) and the pairs in L1.
struct Feed<'a> {
    it: roaring::bitmap::Iter<'a>,
    st: &'a Store,
    ids: [u32; BLOCK],
}

impl<'a> Feed<'a> {
    fn new(st: &'a Store, ids: &'a RoaringBitmap) -> Self {
        Self {
            it: ids.iter(),
            st,
            ids: [0; BLOCK],
        }
    }

    /// Fills `out` with the next block's live pairs and returns how many; `None` once the
    /// bitmap is exhausted (a block of only removed ids gives `Some(0)`).
    #[inline(always)]
    fn fill(&mut self, out: &mut [(u32, u32); BLOCK]) -> Option<usize> {
        let got = self.it.next_many(&mut self.ids);
        if got.is_empty() {
            return None;
        }
        let mut n = 0;
        for &id in got.iter() {
            if let Some(slot) = self.st.slot_of(id) {
                out[n] = (id, slot);
                n += 1;
            }
        }
        Some(n)
    }
}

/// One scan of codes, as a `pulp` operation: `with_simd` is compiled once per instruction
/// set, and everything it calls is `#[inline(always)]` so that it is compiled inside it
/// (a call out, or a closure, would fall back to baseline code).
struct CodeScan<'a> {
    view: CodesView<'a>,
    q: &'a CodedQuery,
    k: usize,
    feed: Feed<'a>,
}

impl CodeScan<'_> {
    /// Hints the CPU to start loading `slot`'s codes.
    #[inline(always)]
    fn prefetch(&self, slot: u32) {
        let a = slot as usize * self.view.lines;
        if let Some(c) = self.view.arena.get(a..a + self.view.lines) {
            prefetch(c);
        }
    }

    /// Code distance of `slot` (`None` only if the slot has no codes, which the store rules
    /// out: `get` keeps a broken invariant from becoming a panic in a query).
    #[inline(always)]
    fn dist(&self, slot: u32) -> Option<f32> {
        let (view, lines, s) = (&self.view, self.view.lines, slot as usize);
        let codes = view.arena.get(s * lines..(s + 1) * lines)?;
        let dot = self.q.dot(codes);
        Some(match view.metric {
            Metric::Cosine | Metric::InnerProduct => -dot,
            Metric::L2 => self.q.norm2 - 2.0 * dot + view.norms2.get(s).copied().unwrap_or(0.0),
        })
    }
}

impl WithSimd for CodeScan<'_> {
    type Output = Vec<Scored>;

    #[inline(always)]
    fn with_simd<S: Simd>(mut self, _simd: S) -> Vec<Scored> {
        // Most candidates are worse than the k-th best so far: `push` rejects them with one
        // float compare (see `topk`).
        let mut top = TopK::new(self.k);
        // Two blocks: the one being scored and the next, so that the prefetch can run
        // PREFETCH_AHEAD targets ahead across a block boundary.
        let mut blocks = [[(0u32, 0u32); BLOCK]; 2];
        let mut lens = [0usize; 2];
        let mut cur = 0;
        let mut more = true;
        match self.feed.fill(&mut blocks[0]) {
            Some(n) => lens[0] = n,
            None => more = false,
        }
        for &(_, slot) in blocks[0][..lens[0]].iter().take(PREFETCH_AHEAD) {
            self.prefetch(slot);
        }
        loop {
            let nxt = 1 - cur;
            lens[nxt] = 0;
            if more {
                match self.feed.fill(&mut blocks[nxt]) {
                    Some(n) => lens[nxt] = n,
                    None => more = false,
                }
            }
            let (n, m) = (lens[cur], lens[nxt]);
            for i in 0..n {
                let a = i + PREFETCH_AHEAD;
                if a < n {
                    self.prefetch(blocks[cur][a].1);
                } else if a - n < m {
                    self.prefetch(blocks[nxt][a - n].1);
                }
                let (key, slot) = blocks[cur][i];
                if let Some(dist) = self.dist(slot) {
                    top.push(Scored { dist, key });
                }
            }
            if !more && m == 0 {
                break;
            }
            cur = nxt;
        }
        top.into_sorted()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hnsw::Coded;
    use crate::quant::Quantization;

    /// 3,000 vectors at sparse ids (1, 4, 7, …), every fifth a copy of an earlier one (equal
    /// codes: ties on distance that only the key decides), 700 consecutive ids removed (whole
    /// blocks of the scan with no live id) plus every seventh, quantized.
    fn store(metric: Metric, dim: usize) -> (Store, Vec<u32>) {
        let mut st = Store::new(dim, metric, 8);
        let data = crate::testing::vectors(3_000, dim, 11, 3, 1);
        for (i, (id, v)) in data.iter().enumerate() {
            let v = if i % 5 == 4 { &data[i - 3].1 } else { v };
            let inv = 1.0 / recd_core::vector::norm(v);
            st.upsert(*id, &metric.stored_form(v, inv), |_| 0)
                .expect("insert");
        }
        for (i, (id, _)) in data.iter().enumerate() {
            if (1_000..1_700).contains(&i) || i % 7 == 0 {
                assert!(st.remove(*id));
            }
        }
        st.set_quantization(Quantization::Int8, &std::env::temp_dir())
            .expect("vector file");
        (st, data.iter().map(|(id, _)| *id).collect())
    }

    #[test]
    fn code_scan_matches_the_generic_scan_on_every_instruction_set() {
        for (metric, dim) in [(Metric::Cosine, 64), (Metric::L2, 130)] {
            let (st, ids) = store(metric, dim);
            let view = st.codes_view().expect("quantized");
            // Every id (with removed ones and one never stored), and every other id.
            let mut all: RoaringBitmap = ids.iter().copied().collect();
            all.insert(9_999_999);
            let half: RoaringBitmap = ids.iter().copied().step_by(2).collect();
            let empty = RoaringBitmap::new();
            for (qi, q) in crate::testing::vectors(3, dim, 99, 1, 0).iter().enumerate() {
                let cq = st.coded_query(&q.1).expect("quantized");
                let scorer = Coded { st: &st, q: &cq };
                for filter in [&all, &half, &empty] {
                    for k in [0usize, 1, 10, 40, 500, 5_000] {
                        let want = scan_ids(&st, &scorer, k, filter);
                        assert_eq!(want.len(), k.min(live_in(&st, filter)));
                        // The dispatched path (AVX2 where the CPU has it) and the baseline
                        // one a CPU without AVX2 gets.
                        let got = scan_codes(&st, view, &cq, k, filter);
                        let base = scan_codes_on(pulp::Arch::Scalar, &st, view, &cq, k, filter);
                        let case = format!("{metric} dim {dim} query {qi} k {k}");
                        assert_eq!(got, want, "{case}");
                        assert_eq!(base, want, "{case}, baseline");
                    }
                }
            }
        }
    }

    #[test]
    fn sketched_scan_is_the_same_on_every_instruction_set() {
        // 64-d sketches (one word: the AVX2 kernel where the CPU has it) and 130-d (three
        // words: the general loop), both metrics; every other id allowed, k from 1 to 60.
        for (metric, dim) in [(Metric::Cosine, 64), (Metric::L2, 64), (Metric::L2, 130)] {
            let mut st = Store::new(dim, metric, 8);
            let data = crate::testing::vectors(5_000, dim, 21, 2, 1);
            for (id, v) in &data {
                let inv = 1.0 / recd_core::vector::norm(v);
                st.upsert(*id, &metric.stored_form(v, inv), |_| 0)
                    .expect("insert");
            }
            st.maybe_retrain();
            let view = st.sketch_view().expect("5,000 slots are sketched");
            let half: RoaringBitmap = data.iter().map(|(id, _)| *id).step_by(2).collect();
            for (_, q) in crate::testing::vectors(3, dim, 5, 1, 0) {
                let q = match metric {
                    Metric::Cosine => {
                        let n = recd_core::vector::norm(&q);
                        q.iter().map(|x| x / n).collect()
                    }
                    _ => q,
                };
                let sq = st.sketch_query(&q).expect("sketched");
                let scorer = crate::hnsw::Exact { st: &st, q: &q };
                for k in [1usize, 10, 60] {
                    let args = SketchSizes {
                        k,
                        keep: k,
                        first: (4 * k).max(256),
                    };
                    let run = |arch| {
                        let mut bounds = Vec::new();
                        let found =
                            sketched_with(arch, &st, view, &sq, &scorer, args, &half, &mut bounds);
                        (bounds, found)
                    };
                    let ((a, best), (b, base)) = (run(pulp::Arch::new()), run(pulp::Arch::Scalar));
                    let case = format!("{metric} dim {dim} k {k}");
                    assert_eq!(a, b, "{case}: the bounds");
                    assert_eq!(best, base, "{case}");
                    assert_eq!(best.0.len(), k, "{case}");
                    assert!(best.0.iter().all(|s| half.contains(s.key)), "{case}");
                }
            }
        }
    }

    fn live_in(st: &Store, filter: &RoaringBitmap) -> usize {
        filter.iter().filter(|&id| st.slot_of(id).is_some()).count()
    }
}
