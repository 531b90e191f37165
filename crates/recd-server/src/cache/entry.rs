//! One cached value with what its expiry and early refresh need: when it was made, how long
//! it lives (jittered once, at creation) and how long it took to compute.

use std::time::Duration;

use rand::RngExt;

/// What is cached; the label on every cache metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A user's recommendation list for one request shape.
    Recs,
    /// The popular candidates for one filter.
    Popular,
    /// One item's details.
    Item,
}

impl Kind {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Recs => "recs",
            Kind::Popular => "popular",
            Kind::Item => "item",
        }
    }
}

/// A cached value.
#[derive(Debug)]
pub struct Entry<V> {
    /// The value.
    pub value: V,
    /// Milliseconds since the epoch when it was computed.
    pub created_ms: i64,
    /// Its time to live, jitter included.
    pub ttl_ms: u64,
    /// How long computing it took (XFetch's δ).
    pub compute_ms: f64,
}

impl<V> Entry<V> {
    /// When it expires, in milliseconds since the epoch.
    pub fn expires_ms(&self) -> i64 {
        self.created_ms + self.ttl_ms as i64
    }

    /// The time it has left to live at `now_ms` (zero once expired).
    pub fn remaining(&self, now_ms: i64) -> Duration {
        Duration::from_millis(self.expires_ms().saturating_sub(now_ms).max(0) as u64)
    }

    /// XFetch (Vattani et al., "Optimal probabilistic cache stampede prevention"): refresh
    /// early when `now − δ·β·ln(u) ≥ expiry`, u uniform in (0, 1]. Entries that are slow to
    /// compute start refreshing earlier; a hot entry is refreshed by one request shortly
    /// before it would expire, so the herd never sees it missing.
    pub fn should_refresh_early(&self, now_ms: i64, beta: f64, u: f64) -> bool {
        if beta <= 0.0 || u <= 0.0 {
            return false;
        }
        let gap = -self.compute_ms * beta * u.ln();
        now_ms as f64 + gap >= self.expires_ms() as f64
    }
}

/// `base_ms × (1 ± jitter)`, drawn uniformly.
pub fn jittered_ttl_ms(base_seconds: f64, jitter: f64) -> u64 {
    let factor = if jitter > 0.0 {
        rand::rng().random_range(1.0 - jitter..=1.0 + jitter)
    } else {
        1.0
    };
    (base_seconds * 1000.0 * factor).round().max(1.0) as u64
}

/// A uniform draw in (0, 1] for [`Entry::should_refresh_early`].
pub fn unit_draw() -> f64 {
    1.0 - rand::rng().random_range(0.0..1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(compute_ms: f64) -> Entry<()> {
        Entry {
            value: (),
            created_ms: 1_000,
            ttl_ms: 10_000,
            compute_ms,
        }
    }

    #[test]
    fn jitter_stays_within_bounds_and_spreads() {
        let draws: Vec<u64> = (0..2000).map(|_| jittered_ttl_ms(60.0, 0.1)).collect();
        assert!(draws.iter().all(|&t| (54_000..=66_000).contains(&t)));
        let (lo, hi) = (draws.iter().min().unwrap(), draws.iter().max().unwrap());
        assert!(hi - lo > 6_000, "jitter does not spread: {lo}..{hi}");
        assert_eq!(jittered_ttl_ms(60.0, 0.0), 60_000);
    }

    #[test]
    fn xfetch_refreshes_only_near_expiry_and_sooner_for_slow_entries() {
        let u = 0.5; // -ln(0.5) ≈ 0.69
        let fast = entry(10.0);
        let slow = entry(2_000.0);
        // Far from expiry (at 2 s of an 11 s life): neither.
        assert!(!fast.should_refresh_early(2_000, 1.0, u));
        assert!(!slow.should_refresh_early(2_000, 1.0, u));
        // 1 s before expiry: only the slow one (its gap is ~1.4 s).
        assert!(!fast.should_refresh_early(10_000, 1.0, u));
        assert!(slow.should_refresh_early(10_000, 1.0, u));
        // β = 0 turns it off; at expiry everything refreshes.
        assert!(!slow.should_refresh_early(10_999, 0.0, u));
        assert!(fast.should_refresh_early(11_000, 1.0, u));
        // A draw near 0 means a large gap: the rare early refresher.
        assert!(fast.should_refresh_early(5_000, 1.0, 1e-300));
    }

    #[test]
    fn remaining_never_underflows() {
        let e = entry(1.0);
        assert_eq!(e.remaining(1_000), Duration::from_millis(10_000));
        assert_eq!(e.remaining(20_000), Duration::ZERO);
    }
}
