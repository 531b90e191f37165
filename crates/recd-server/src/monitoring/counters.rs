//! The handles of the labelled online-quality counters, kept per label set.
//!
//! `metrics::counter!(name, &labels)` builds a key (four label strings copied) and looks it
//! up in the recorder's registry on every call; a served list and its click would pay that
//! three times. The handles of one label set are made once and found again by the labels
//! themselves (borrowed, nothing copied). Label values are bounded (strategy, experiment
//! and variant names known to the server, or `unknown`), and so is this map.

use std::collections::HashMap;

use metrics::Counter;
use parking_lot::RwLock;

use super::tag::ListLabels;

/// Label sets kept at most (the map starts afresh beyond: only a cost, never wrong).
const MAX_LABEL_SETS: usize = 4_096;

/// The counters of one label set.
#[derive(Debug, Clone)]
pub struct ListCounters {
    /// `recd_recommendations_total{source}`.
    pub recommendations: Counter,
    /// `recd_impressions_total{strategy,experiment,variant,source}`.
    pub impressions: Counter,
    /// `recd_clicks_total{...}`.
    pub clicks: Counter,
    /// `recd_conversions_total{...}`.
    pub conversions: Counter,
}

impl ListCounters {
    fn register(labels: &ListLabels) -> Self {
        let pairs = labels.pairs();
        Self {
            recommendations: metrics::counter!("recd_recommendations_total", "source" => labels.source),
            impressions: metrics::counter!("recd_impressions_total", &pairs),
            clicks: metrics::counter!("recd_clicks_total", &pairs),
            conversions: metrics::counter!("recd_conversions_total", &pairs),
        }
    }
}

/// Handles by label set.
#[derive(Debug, Default)]
pub struct CounterCache {
    by_labels: RwLock<HashMap<ListLabels, ListCounters>>,
}

impl CounterCache {
    /// Runs `use_counters` with `labels`' counters (registered on first use).
    pub fn with<R>(&self, labels: &ListLabels, use_counters: impl FnOnce(&ListCounters) -> R) -> R {
        if let Some(c) = self.by_labels.read().get(labels) {
            return use_counters(c);
        }
        let counters = ListCounters::register(labels);
        let r = use_counters(&counters);
        let mut map = self.by_labels.write();
        if map.len() >= MAX_LABEL_SETS {
            map.clear();
        }
        map.insert(labels.clone(), counters);
        r
    }

    /// Label sets kept.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.by_labels.read().len()
    }

    /// Whether none is kept.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_entry_per_label_set() {
        let cache = CounterCache::default();
        let a = ListLabels::unknown();
        let b = ListLabels {
            strategy: "fresh".into(),
            ..ListLabels::unknown()
        };
        assert!(cache.is_empty());
        for _ in 0..3 {
            cache.with(&a, |c| c.impressions.increment(1));
        }
        assert_eq!(cache.len(), 1);
        cache.with(&b, |c| c.clicks.increment(1));
        assert_eq!(cache.len(), 2);
    }
}
