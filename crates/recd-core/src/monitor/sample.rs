//! A bounded uniform sample of a numeric stream, and the quantiles and summary drawn from it.
//!
//! [`Reservoir`] is Vitter's Algorithm R: the first `capacity` values fill the reservoir;
//! the i-th value after that (0-based, i ≥ capacity) replaces a uniformly chosen slot with
//! probability capacity/(i+1). At every moment the reservoir is a uniform sample without
//! replacement of all the values offered, whatever the stream's length, in `capacity`
//! floats. It is seeded, so a replay of the same stream keeps the same sample.
//!
//! Non-finite values (NaN, ±∞) are counted as *missing* and never sampled: a broken
//! feature must not poison the means and quantiles of a monitor that runs for months.

use serde::Serialize;

use super::SplitMix64;
use crate::error::ValidationError;

/// The largest reservoir accepted (16 M floats, 128 MiB).
pub const MAX_RESERVOIR: usize = 1 << 24;

/// A seeded uniform sample of at most `capacity` finite values of a stream.
#[derive(Debug, Clone)]
pub struct Reservoir {
    capacity: usize,
    items: Vec<f64>,
    seen: u64,
    missing: u64,
    sum: f64,
    rng: SplitMix64,
}

impl Reservoir {
    /// An empty reservoir of `capacity` (1..=[`MAX_RESERVOIR`]) values.
    pub fn new(capacity: usize, seed: u64) -> Result<Self, ValidationError> {
        if capacity == 0 || capacity > MAX_RESERVOIR {
            return crate::invalid!(
                "reservoir capacity must be in 1..={MAX_RESERVOIR}, got {capacity}"
            );
        }
        Ok(Self {
            capacity,
            items: Vec::with_capacity(capacity.min(4096)),
            seen: 0,
            missing: 0,
            sum: 0.0,
            rng: SplitMix64::new(seed),
        })
    }

    /// Offers one value of the stream.
    pub fn offer(&mut self, x: f64) {
        if !x.is_finite() {
            self.missing = self.missing.saturating_add(1);
            return;
        }
        let i = self.seen;
        self.seen = self.seen.saturating_add(1);
        self.sum += x;
        if self.items.len() < self.capacity {
            self.items.push(x);
        } else {
            // Algorithm R: keep the new value with probability capacity / (i + 1).
            let j = self.rng.below(i.saturating_add(1));
            if let Some(slot) = usize::try_from(j).ok().and_then(|j| self.items.get_mut(j)) {
                *slot = x;
            }
        }
    }

    /// The most values kept.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Finite values offered so far (all of them, not only the kept ones).
    pub fn seen(&self) -> u64 {
        self.seen
    }

    /// Non-finite values offered so far (not sampled).
    pub fn missing(&self) -> u64 {
        self.missing
    }

    /// The sample, in no particular order.
    pub fn values(&self) -> &[f64] {
        &self.items
    }

    /// The sample, sorted ascending.
    pub fn sorted(&self) -> Vec<f64> {
        let mut v = self.items.clone();
        v.sort_by(f64::total_cmp);
        v
    }

    /// The exact mean of every finite value offered (not only the sample's); `None` before any.
    pub fn mean(&self) -> Option<f64> {
        (self.seen > 0).then(|| self.sum / self.seen as f64)
    }

    /// The `q`-quantile of the sample (see [`quantile_sorted`]).
    pub fn quantile(&self, q: f64) -> Option<f64> {
        quantile_sorted(&self.sorted(), q)
    }

    /// Count and exact mean of the stream, p50 and p90 of the sample; `None` before any value.
    pub fn summary(&self) -> Option<NumericSummary> {
        let sorted = self.sorted();
        Some(NumericSummary {
            count: self.seen,
            mean: self.mean()?,
            p50: quantile_sorted(&sorted, 0.5)?,
            p90: quantile_sorted(&sorted, 0.9)?,
        })
    }

    /// Forgets the stream (the generator goes on, so a new stream gets fresh choices).
    pub fn clear(&mut self) {
        self.items.clear();
        self.seen = 0;
        self.missing = 0;
        self.sum = 0.0;
    }
}

/// The `q`-quantile (0 ≤ q ≤ 1) of ascending `sorted` values by linear interpolation between
/// order statistics (Hyndman & Fan type 7, numpy's and R's default): h = (n − 1)·q, then
/// x⌊h⌋ + (h − ⌊h⌋)·(x⌊h⌋₊₁ − x⌊h⌋). `None` for no values or a `q` outside [0, 1].
pub fn quantile_sorted(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() || !(0.0..=1.0).contains(&q) {
        return None;
    }
    let h = (sorted.len() - 1) as f64 * q;
    let lo = h.floor() as usize;
    let x_lo = *sorted.get(lo)?;
    match sorted.get(lo + 1) {
        Some(&x_hi) => Some(x_lo + (h - lo as f64) * (x_hi - x_lo)),
        None => Some(x_lo),
    }
}

/// How a numeric feature is summarized in a drift report.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct NumericSummary {
    /// Number of finite values.
    pub count: u64,
    /// Their mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
}

impl NumericSummary {
    /// The exact summary of the finite values of a slice; `None` when there are none.
    pub fn from_values(values: &[f64]) -> Option<Self> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        v.sort_by(f64::total_cmp);
        Some(Self {
            count: v.len() as u64,
            mean: (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)?,
            p50: quantile_sorted(&v, 0.5)?,
            p90: quantile_sorted(&v, 0.9)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_like_numpy() {
        // numpy.quantile([1, 2, 3, 4], 0.5) = 2.5; 0.9 → h = 2.7 → 3 + 0.7·1 = 3.7
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile_sorted(&v, 0.5), Some(2.5));
        assert!((quantile_sorted(&v, 0.9).unwrap() - 3.7).abs() < 1e-12);
        assert_eq!(quantile_sorted(&v, 0.0), Some(1.0));
        assert_eq!(quantile_sorted(&v, 1.0), Some(4.0));
        assert_eq!(quantile_sorted(&[], 0.5), None);
        assert_eq!(quantile_sorted(&v, 1.5), None);
        assert_eq!(quantile_sorted(&v, f64::NAN), None);
    }

    #[test]
    fn reservoir_keeps_everything_until_full_and_ignores_non_finite() {
        let mut r = Reservoir::new(10, 1).unwrap();
        for x in [3.0, f64::NAN, 1.0, 2.0, f64::INFINITY] {
            r.offer(x);
        }
        assert_eq!(r.sorted(), vec![1.0, 2.0, 3.0]);
        assert_eq!((r.seen(), r.missing()), (3, 2));
        let s = r.summary().unwrap();
        assert_eq!((s.count, s.mean, s.p50), (3, 2.0, 2.0));
        assert!(Reservoir::new(0, 1).is_err());
        r.clear();
        assert_eq!(r.summary(), None);
    }

    #[test]
    fn reservoir_is_bounded_and_uniform() {
        // 100 000 values 0..100 000 into 1 000 slots: the sample's mean estimates the
        // stream's (49 999.5) with a standard error of about 28 868/√1000 ≈ 913, and each
        // tenth of the stream holds about 100 of the kept values (sd ≈ 9.5).
        let mut r = Reservoir::new(1000, 42).unwrap();
        for i in 0..100_000 {
            r.offer(i as f64);
        }
        assert_eq!(r.values().len(), 1000);
        assert_eq!(r.seen(), 100_000);
        let mean = r.values().iter().sum::<f64>() / 1000.0;
        assert!((mean - 49_999.5).abs() < 4.0 * 913.0, "{mean}");
        let mut deciles = [0u32; 10];
        for &x in r.values() {
            deciles[(x / 10_000.0) as usize] += 1;
        }
        assert!(
            deciles.iter().all(|&c| (60..=140).contains(&c)),
            "{deciles:?}"
        );
        // the exact stream mean is kept beside the sample
        assert_eq!(r.mean(), Some(49_999.5));
        // same seed, same stream → same sample
        let mut r2 = Reservoir::new(1000, 42).unwrap();
        for i in 0..100_000 {
            r2.offer(i as f64);
        }
        assert_eq!(r.values(), r2.values());
    }
}
