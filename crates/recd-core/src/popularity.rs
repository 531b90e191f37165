//! Time-decayed item popularity, kept in the log domain.
//!
//! Popularity is Σ wᵢ·2^(−(now − tᵢ)/half_life). Storing it "forward-decayed",
//! as log Σ wᵢ·2^(tᵢ/half_life), makes the *order* of items independent of `now`, so a
//! sorted set (the embedded index's map, or a Redis ZSET) never needs rewriting as time
//! passes; the log keeps it finite for decades of timestamps. Both backends use these
//! functions, so they rank popular items identically.

use serde::{Deserialize, Serialize};

/// Popularity settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PopularityParams {
    /// After this many hours an event counts half as much.
    pub half_life_hours: f64,
}

impl Default for PopularityParams {
    fn default() -> Self {
        Self {
            half_life_hours: 72.0,
        }
    }
}

impl PopularityParams {
    /// The log-domain contribution of an event of weight `weight` at `t_ms`;
    /// `None` for a weight that adds nothing.
    pub fn log_increment(&self, weight: f64, t_ms: i64) -> Option<f64> {
        if !(weight > 0.0 && weight.is_finite()) {
            return None;
        }
        let half_life_ms = self.half_life_hours.max(1e-6) * 3_600_000.0;
        Some(weight.ln() + (t_ms as f64 / half_life_ms) * std::f64::consts::LN_2)
    }
}

/// log(eᵃ + eᵇ) without overflow.
pub fn log_add(a: f64, b: f64) -> f64 {
    if a == f64::NEG_INFINITY {
        return b;
    }
    if b == f64::NEG_INFINITY {
        return a;
    }
    let (hi, lo) = if a > b { (a, b) } else { (b, a) };
    hi + (lo - hi).exp().ln_1p()
}

/// A log-domain score relative to the top one: in (0, 1], 1 for the most popular item.
pub fn relative(log_score: f64, log_max: f64) -> f64 {
    (log_score - log_max).exp().clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_events_outweigh_older_ones_by_the_half_life() {
        let p = PopularityParams {
            half_life_hours: 1.0,
        };
        let old = p.log_increment(1.0, 0).unwrap();
        let new = p.log_increment(1.0, 3_600_000).unwrap();
        assert!((relative(old, new) - 0.5).abs() < 1e-9);
        // two old events equal one event a half-life later
        assert!((log_add(old, old) - new).abs() < 1e-9);
        assert_eq!(p.log_increment(0.0, 5), None);
    }

    #[test]
    fn an_event_within_the_accepted_skew_is_overtaken_by_a_few_current_ones() {
        // The most an accepted event can be worth is one dated `DEFAULT_MAX_FUTURE_MS`
        // ahead: with the default 72 h half-life that is a factor 2^(5 min / 72 h) ≈ 1.0008,
        // so two real events now outweigh it; a very old event weighs next to nothing.
        let p = PopularityParams::default();
        let now = 1_800_000_000_000;
        let skewed = p
            .log_increment(1.0, now + crate::event::DEFAULT_MAX_FUTURE_MS)
            .unwrap();
        let current = p.log_increment(1.0, now).unwrap();
        assert!(skewed > current);
        assert!(log_add(current, current) > skewed);
        let ancient = p.log_increment(6.0, 0).unwrap();
        assert!(relative(ancient, current) < 1e-9);
        assert!(log_add(current, ancient) - current < 1e-9);
    }

    #[test]
    fn stays_finite_for_decades_of_timestamps() {
        let p = PopularityParams {
            half_life_hours: 1.0,
        };
        let s = p.log_increment(5.0, 4_000_000_000_000).unwrap();
        assert!(s.is_finite());
        assert!(log_add(s, s).is_finite());
    }
}
