//! Filtered-search planning: exact scan over the allowed ids, or a filtered graph walk.
//!
//! The choice follows the filter's exact cardinality `c = |filter ∩ live|` (roaring gives it
//! cheaply), as Qdrant does with its full-scan threshold. An exact scan costs about `c`
//! distance evaluations in a tight loop; a filtered walk must reach roughly `ef / s` nodes,
//! where `s = c / n` is the selectivity, at a much higher cost per node (random access, heap
//! and visited-set upkeep). The break-even `c · a = b · ef · n / c` gives the rule
//! "scan when `c² < ALPHA · ef · n`", with `ALPHA = b / a` measured on the benchmark catalog
//! (see BENCHMARKS-index.md). A walk that still ends with fewer than `min(k, c)` hits (a
//! graph region cut off by concurrent inserts, say) falls back to the scan, so a filter never
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
    /// Beam width of the walk; `None` uses the index's `ef_search`. Always at least `k`.
    pub ef: Option<usize>,
    /// Scan, walk, or let the planner decide.
    pub strategy: Strategy,
}

/// Cost ratio of one walked node to one scanned vector, measured (see module docs).
pub(crate) const ALPHA: f64 = 24.0;

/// What the planner decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Plan {
    Exact,
    Graph { ef: usize },
}

/// Picks the plan for a query with `allowed` admissible live ids out of `live`.
pub(crate) fn plan(strategy: Strategy, allowed: u64, live: u64, k: usize, ef: usize) -> Plan {
    let ef = ef.max(k);
    match strategy {
        Strategy::Exact => Plan::Exact,
        Strategy::Graph => Plan::Graph { ef },
        Strategy::Auto => {
            let (c, n) = (allowed as f64, live as f64);
            if allowed <= k as u64 || c * c < ALPHA * ef as f64 * n {
                Plan::Exact
            } else {
                Plan::Graph { ef }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fewer_allowed_than_k_always_scans() {
        assert_eq!(plan(Strategy::Auto, 50, 1_000_000_000, 50, 1), Plan::Exact);
        assert_eq!(plan(Strategy::Auto, 0, 10, 1, 1), Plan::Exact);
    }

    #[test]
    fn selective_filters_scan_and_broad_ones_walk() {
        let n = 100_000;
        assert_eq!(plan(Strategy::Auto, 100, n, 10, 64), Plan::Exact);
        assert_eq!(plan(Strategy::Auto, n, n, 10, 64), Plan::Graph { ef: 64 });
        assert_eq!(
            plan(Strategy::Auto, n / 2, n, 100, 64),
            Plan::Graph { ef: 100 }
        );
    }

    #[test]
    fn forced_strategies() {
        assert_eq!(plan(Strategy::Exact, 1 << 30, 1 << 30, 1, 1), Plan::Exact);
        assert_eq!(
            plan(Strategy::Graph, 1, 1 << 30, 5, 1),
            Plan::Graph { ef: 5 }
        );
    }
}
