//! Filtered-search planning: exact scan over the allowed ids, or a filtered graph walk.
//!
//! The choice follows the filter's exact cardinality `c = |filter ∩ live|` (roaring gives it
//! cheaply), as Qdrant does with its full-scan threshold, using a two-term cost model:
//! - an exact scan scores `c` vectors: `c · SCAN_NS`;
//! - a filtered walk with beam `ef'` must reach about `ef' / s` nodes (only a fraction
//!   `s = c / n` of them are admitted): `(ef' / s) · WALK_NS_PER_EF`.
//!
//! The walk's beam grows as the filter gets more selective, `ef' = ef / sqrt(s)` (capped):
//! with a narrow filter the admitted nodes are sparse along the walk and, when the filter
//! correlates with the embedding (a category), far from the query, so a fixed `ef` loses
//! recall (measured: 0.91 → 0.97 recall@50 for a correlated 10 % filter). That widening
//! applies to the index's default beam (`ef_search`) only: an `ef` the caller gives
//! ([`SearchOptions::ef`]) is the beam, as hnswlib's `ef` is, so that a sweep over `ef` (a
//! benchmark, a caller tuning recall against speed) reaches every point of the trade-off;
//! widened, a 10 % filter at k = 10 could not go below a beam of 32 (recall@10 0.998 on the
//! 100k benchmark catalog, where a beam of 10 gives 0.967 at 2.4x the speed). The constants
//! are single-thread costs measured on the 100k × 64 benchmark catalog (BENCHMARKS.md,
//! "Planner calibration"); only their ratio matters. A walk that still ends with fewer than `min(k, c)` hits (a
//! region cut off by concurrent inserts, say) falls back to the scan, so a filter never
//! returns fewer matches than exist.

/// How a search is carried out; `Auto` is what [`VectorIndex::search`](crate::VectorIndex::search) uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// Let the planner choose by the filter's cardinality.
    #[default]
    Auto,
    /// Always scan exactly (same as `exact_search`).
    Exact,
    /// Always walk the graph (still falls back to a scan if the walk finds too few).
    Graph,
}

/// Per-query knobs for [`VectorIndex::search_with`](crate::VectorIndex::search_with).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SearchOptions {
    /// Beam width of the walk, used as given; `None` uses the index's `ef_search`, widened
    /// for a selective filter (see the module doc). Always at least `k`.
    pub ef: Option<usize>,
    /// Scan, walk, or let the planner decide.
    pub strategy: Strategy,
}

/// Cost of scoring one allowed vector in the exact scan (prefetched, scattered reads).
/// Recalibrated 2026-12-03 (Xeon VM, arrays on transparent huge pages, k = 10, ef 64, random
/// 5-20 % filters on 100k × 64): 25-28 ns per id on `f32` vectors, 12-15 ns on int8 codes
/// (the 2026-11 figure, 53-55 ns, predates huge pages and was taken on an EPYC VM).
const SCAN_NS: f64 = 26.0;
/// Cost of a walk per unit of `ef' / s`: measured 0.39-0.44 µs at s = 0.1-0.2 (`f32`; 0.9 at
/// s = 0.05), 0.26-0.34 µs on int8 codes. The int8 mode halves both costs, so the ratio —
/// all the model uses — barely moves and one pair of constants serves both modes: the scan
/// is chosen below s ≈ 0.17 at 100k (measured crossover at k = 10: 0.1-0.2 in both modes)
/// and below s ≈ 0.07 at 1M.
const WALK_NS_PER_EF: f64 = 450.0;
/// Per allowed id, a scan whose first pass reads the 1-bit sketches (see `sketch`): about
/// 11-13 ns per id on either mode against 14 (int8 codes) and 54 (`f32`) without them
/// (same run as above), so in this model's units about half of [`SCAN_NS`].
const SKETCH_SCAN_NS: f64 = 12.0;
/// Largest beam the selectivity boost may reach.
const MAX_FILTERED_EF: usize = 2_048;

/// What the planner decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Plan {
    Exact,
    Graph { ef: usize },
}

/// Beam for a filtered walk that admits `allowed` of `live` nodes.
pub(crate) fn filtered_ef(ef: usize, allowed: u64, live: u64) -> usize {
    let s = selectivity(allowed, live);

    let boosted = (ef as f64 / s.sqrt()).ceil() as usize;
    boosted.clamp(ef, MAX_FILTERED_EF.max(ef))
}

fn selectivity(allowed: u64, live: u64) -> f64 {
    (allowed as f64 / live.max(1) as f64).clamp(1e-9, 1.0)
}

/// Picks the plan for a query with `allowed` admissible live ids out of `live`
/// (`filtered` says whether a filter was given at all). `widen` says whether `ef` is the
/// index's default, to be widened for a filter (see the module doc), rather than the
/// caller's. `sketched` says whether a scan would read the sketches first (see `index`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn plan(
    strategy: Strategy,
    filtered: bool,
    allowed: u64,
    live: u64,
    k: usize,
    ef: usize,
    widen: bool,
    sketched: bool,
) -> Plan {
    let walk_ef = walk_beam(filtered, allowed, live, k, ef, widen);
    match strategy {
        Strategy::Exact => Plan::Exact,
        Strategy::Graph => Plan::Graph { ef: walk_ef },
        Strategy::Auto if allowed <= k as u64 => Plan::Exact,
        Strategy::Auto => {
            let (scan, walk) = costs(allowed, live, walk_ef, sketched);
            if scan < walk {
                Plan::Exact
            } else {
                Plan::Graph { ef: walk_ef }
            }
        }
    }
}

/// The model's cost, in its nanoseconds, of the plan [`plan`] picks under `Strategy::Auto`
/// (same arguments): what a caller holding several indexes compares to pick one (only
/// ratios between such estimates mean anything).
pub(crate) fn auto_cost(
    filtered: bool,
    allowed: u64,
    live: u64,
    k: usize,
    ef: usize,
    widen: bool,
    sketched: bool,
) -> f64 {
    let walk_ef = walk_beam(filtered, allowed, live, k, ef, widen);
    let (scan, walk) = costs(allowed, live, walk_ef, sketched);
    if allowed <= k as u64 {
        scan
    } else {
        scan.min(walk)
    }
}

/// The beam a walk would use: `ef` (at least `k`), widened for a filter when `widen`.
fn walk_beam(filtered: bool, allowed: u64, live: u64, k: usize, ef: usize, widen: bool) -> usize {
    let ef = ef.max(k);
    if filtered && widen {
        filtered_ef(ef, allowed, live)
    } else {
        ef
    }
}

/// (scan, walk) costs of a search among `allowed` of `live` ids with a beam of `walk_ef`.
fn costs(allowed: u64, live: u64, walk_ef: usize, sketched: bool) -> (f64, f64) {
    let scan = allowed as f64 * if sketched { SKETCH_SCAN_NS } else { SCAN_NS };
    let walk = walk_ef as f64 / selectivity(allowed, live) * WALK_NS_PER_EF;
    (scan, walk)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fewer_allowed_than_k_always_scans() {
        assert_eq!(
            plan(Strategy::Auto, true, 50, 1_000_000_000, 50, 1, true, false),
            Plan::Exact
        );
        assert_eq!(
            plan(Strategy::Auto, true, 0, 10, 1, 1, true, false),
            Plan::Exact
        );
        assert_eq!(
            plan(Strategy::Auto, false, 5, 5, 10, 64, true, false),
            Plan::Exact
        );
    }

    #[test]
    fn the_auto_cost_is_the_cost_of_the_auto_plan() {
        let live = 1_000_000;
        for allowed in [5, 1_000, 20_000, 100_000, 500_000, live] {
            for sketched in [false, true] {
                let filtered = allowed < live;
                let cost = auto_cost(filtered, allowed, live, 10, 64, true, sketched);
                let walk_ef = if filtered {
                    filtered_ef(64, allowed, live)
                } else {
                    64
                };
                let (scan, walk) = costs(allowed, live, walk_ef, sketched);
                let chosen = plan(
                    Strategy::Auto,
                    filtered,
                    allowed,
                    live,
                    10,
                    64,
                    true,
                    sketched,
                );
                let want = if chosen == Plan::Exact { scan } else { walk };
                assert_eq!(cost, want, "{allowed} allowed, sketched {sketched}");
            }
        }
        // One value's own graph (every node admitted) costs a plain walk; the same items
        // among a million cost the main index a scan of them or a widened walk.
        let own = auto_cost(false, 20_000, 20_000, 10, 64, true, false);
        let main = auto_cost(true, 20_000, 1_000_000, 10, 64, true, true);
        assert!(own < main, "{own} vs {main}");
    }

    #[test]
    fn selective_filters_scan_and_broad_ones_walk() {
        let n = 100_000;
        assert_eq!(
            plan(Strategy::Auto, true, 100, n, 10, 64, true, false),
            Plan::Exact
        );
        assert_eq!(
            plan(Strategy::Auto, true, n / 10, n, 10, 64, true, false),
            Plan::Exact
        );
        assert_eq!(
            plan(Strategy::Auto, false, n, n, 10, 64, true, false),
            Plan::Graph { ef: 64 }
        );
        assert!(matches!(
            plan(Strategy::Auto, true, n / 2, n, 50, 64, true, false),
            Plan::Graph { .. }
        ));
        // The bigger the index, the more selective a filter can be and still walk.
        let big = 10_000_000;
        assert!(matches!(
            plan(Strategy::Auto, true, big / 10, big, 50, 64, true, false),
            Plan::Graph { .. }
        ));
    }

    #[test]
    fn a_sketched_scan_takes_broader_filters_than_a_plain_one() {
        let n = 100_000;
        // 20 % at k = 10: the plain scan loses to the walk, the sketched one wins.
        assert!(matches!(
            plan(Strategy::Auto, true, n / 5, n, 10, 64, true, false),
            Plan::Graph { .. }
        ));
        assert_eq!(
            plan(Strategy::Auto, true, n / 5, n, 10, 64, true, true),
            Plan::Exact
        );
        // Half the nodes still walk.
        assert!(matches!(
            plan(Strategy::Auto, true, n / 2, n, 10, 64, true, true),
            Plan::Graph { .. }
        ));
    }

    #[test]
    fn beam_grows_as_the_filter_narrows() {
        assert_eq!(filtered_ef(64, 100, 100), 64);
        assert_eq!(filtered_ef(64, 25, 100), 128);
        assert_eq!(filtered_ef(64, 1, 1_000_000_000), MAX_FILTERED_EF);
        assert_eq!(
            filtered_ef(5_000, 1, 100),
            5_000,
            "never below the requested ef"
        );
    }

    #[test]
    fn forced_strategies() {
        assert_eq!(
            plan(Strategy::Exact, true, 1 << 30, 1 << 30, 1, 1, true, false),
            Plan::Exact
        );
        assert_eq!(
            plan(Strategy::Graph, false, 1, 1 << 30, 5, 1, true, false),
            Plan::Graph { ef: 5 }
        );
        assert_eq!(
            plan(Strategy::Graph, true, 25, 100, 5, 64, true, false),
            Plan::Graph { ef: 128 }
        );
        // The caller's beam is not widened.
        assert_eq!(
            plan(Strategy::Graph, true, 25, 100, 5, 64, false, false),
            Plan::Graph { ef: 64 }
        );
    }
}
