//! The statistics of experiment results, computed from running counts and sums.
//!
//! The server keeps per variant either success counts ([`Proportion`]) or the six running
//! sums of a pair of per-user values ([`PairSums`]), and asks these functions for
//! intervals and tests whenever it reports. By convention the *control* is the first
//! argument and differences are treatment − control.
//!
//! - [`proportion`]: Wilson score interval of a rate; two-proportion z-test.
//! - [`ratio`]: ratio metrics (clicks / impressions summed per user) with delta-method
//!   variances: interval and z-test.
//! - [`sequential`]: always-valid p-values and intervals by the mixture SPRT, for
//!   looking at results every day without inflating false positives.
//! - [`bayes`]: Beta posteriors; probability to beat control and expected loss.
//! - [`srm`]: sample-ratio mismatch (chi-square goodness of fit of users per variant).
//! - [`power`]: users per variant needed to detect a minimum effect.
//! - [`cuped`]: variance reduction with a pre-experiment covariate.

pub mod bayes;
pub mod cuped;
pub mod power;
pub mod proportion;
pub mod ratio;
pub mod sequential;
pub mod srm;

use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, Normal};
use thiserror::Error;

pub use bayes::{BayesComparison, BetaPosterior, compare_monte_carlo, compare_normal};
pub use cuped::{AdjustedMean, cuped_adjust, cuped_theta, cuped_ztest};
pub use power::{Effect, sample_size_exact, sample_size_per_variant};
pub use proportion::{Proportion, difference_interval, two_proportion_ztest};
pub use ratio::{ratio_interval, ratio_variance, ratio_ztest};
pub use sequential::{
    msprt_interval, msprt_likelihood_ratio, msprt_log_likelihood_ratio, msprt_p_value,
};
pub use srm::{SRM_P_THRESHOLD, SampleRatio, sample_ratio_mismatch};

/// Why a statistic could not be computed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StatsError {
    /// An argument is out of its domain (a negative share, more successes than trials, a
    /// NaN, ...): a bug or bad input of the caller.
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// The data cannot support the statistic yet (too few users, no variance): a normal
    /// state early in an experiment, to be shown as "not enough data".
    #[error("not enough data: {0}")]
    NotEnoughData(String),
}

/// Shorthand for `Err(StatsError::Invalid(format!(...)))`.
macro_rules! invalid_arg {
    ($($arg:tt)*) => {
        Err($crate::experiment::stats::StatsError::Invalid(format!($($arg)*)))
    };
}
/// Shorthand for `Err(StatsError::NotEnoughData(format!(...)))`.
macro_rules! not_enough {
    ($($arg:tt)*) => {
        Err($crate::experiment::stats::StatsError::NotEnoughData(format!($($arg)*)))
    };
}
pub(crate) use {invalid_arg, not_enough};

/// An estimate with a two-sided confidence interval `[lo, hi]`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// The point estimate.
    pub estimate: f64,
    /// Lower end.
    pub lo: f64,
    /// Upper end.
    pub hi: f64,
}

impl Interval {
    /// Whether the interval contains `x`.
    pub fn contains(&self, x: f64) -> bool {
        self.lo <= x && x <= self.hi
    }
}

/// A two-sided z-test of treatment − control.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ZTest {
    /// Treatment − control.
    pub difference: f64,
    /// The standard error the z-score divides by.
    pub std_error: f64,
    /// `difference / std_error`.
    pub z: f64,
    /// Two-sided p-value, 2·(1 − Φ(|z|)).
    pub p_value: f64,
}

impl ZTest {
    /// The test of `difference` with variance `variance` (> 0).
    pub(crate) fn new(difference: f64, variance: f64) -> Result<Self, StatsError> {
        if !difference.is_finite() || !variance.is_finite() || variance < 0.0 {
            return invalid_arg!("difference {difference} with variance {variance}");
        }
        if variance == 0.0 {
            return not_enough!("the difference has no variance yet");
        }
        let std_error = variance.sqrt();
        let z = difference / std_error;
        Ok(Self {
            difference,
            std_error,
            z,
            p_value: two_sided_p(z),
        })
    }

    /// The interval `difference ± z·std_error` at the two-sided `confidence` level (e.g.
    /// 0.95). Meaningful where `std_error` estimates the difference's spread under the
    /// alternative too (ratio, CUPED); for proportions see
    /// [`proportion::difference_interval`].
    pub fn interval(&self, confidence: f64) -> Result<Interval, StatsError> {
        let z = z_for_confidence(confidence)?;
        Ok(Interval {
            estimate: self.difference,
            lo: self.difference - z * self.std_error,
            hi: self.difference + z * self.std_error,
        })
    }
}

/// The standard normal quantile z with P(|Z| ≤ z) = `confidence`, for `confidence` in
/// (0, 1).
pub fn z_for_confidence(confidence: f64) -> Result<f64, StatsError> {
    if !(confidence > 0.0 && confidence < 1.0) {
        return invalid_arg!("confidence level {confidence} is not in (0, 1)");
    }
    Ok(Normal::standard().inverse_cdf(0.5 + confidence / 2.0))
}

/// The standard normal quantile Φ⁻¹(`q`) for `q` in (0, 1).
pub(crate) fn normal_quantile(q: f64, what: &str) -> Result<f64, StatsError> {
    if !(q > 0.0 && q < 1.0) {
        return invalid_arg!("{what} {q} is not in (0, 1)");
    }
    Ok(Normal::standard().inverse_cdf(q))
}

/// The two-sided p-value of a z-score, 2·(1 − Φ(|z|)) (computed from the upper tail, so
/// tiny p-values keep their precision).
pub fn two_sided_p(z: f64) -> f64 {
    (2.0 * Normal::standard().sf(z.abs())).min(1.0)
}

/// Running sums of a pair of per-user values (x, y): n, Σx, Σy, Σx², Σy², Σxy.
///
/// Enough for means, variances and the covariance, so a server can keep one of these per
/// variant and update it per user. What x and y are depends on the use: numerator and
/// denominator of a ratio metric ([`ratio`]), or covariate and metric ([`cuped`]).
/// Variances come from the sums as (Σx² − (Σx)²/n)/(n − 1), which loses precision when
/// the mean is much larger than the spread; per-user counts and amounts are far from that.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct PairSums {
    /// Number of users.
    pub n: u64,
    /// Σx.
    pub sum_x: f64,
    /// Σy.
    pub sum_y: f64,
    /// Σx².
    pub sum_xx: f64,
    /// Σy².
    pub sum_yy: f64,
    /// Σxy.
    pub sum_xy: f64,
}

/// Means and sample (n − 1) variances and covariance of a [`PairSums`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Moments {
    /// Number of users.
    pub n: f64,
    /// Mean of x.
    pub mean_x: f64,
    /// Mean of y.
    pub mean_y: f64,
    /// Sample variance of x (≥ 0).
    pub var_x: f64,
    /// Sample variance of y (≥ 0).
    pub var_y: f64,
    /// Sample covariance of x and y.
    pub cov_xy: f64,
}

impl PairSums {
    /// Adds one user's values.
    pub fn add(&mut self, x: f64, y: f64) {
        self.n += 1;
        self.sum_x += x;
        self.sum_y += y;
        self.sum_xx += x * x;
        self.sum_yy += y * y;
        self.sum_xy += x * y;
    }

    /// Adds the users of `other` (e.g. to pool two variants).
    pub fn merge(&mut self, other: &PairSums) {
        self.n += other.n;
        self.sum_x += other.sum_x;
        self.sum_y += other.sum_y;
        self.sum_xx += other.sum_xx;
        self.sum_yy += other.sum_yy;
        self.sum_xy += other.sum_xy;
    }

    /// Means, variances and covariance; needs n ≥ 2 and finite sums.
    pub fn moments(&self) -> Result<Moments, StatsError> {
        let sums = [
            self.sum_x,
            self.sum_y,
            self.sum_xx,
            self.sum_yy,
            self.sum_xy,
        ];
        if sums.iter().any(|s| !s.is_finite()) {
            return invalid_arg!("running sums {self:?} are not finite");
        }
        if self.sum_xx < 0.0 || self.sum_yy < 0.0 {
            return invalid_arg!("running sums of squares {self:?} are negative");
        }
        if self.n < 2 {
            return not_enough!("{} user(s); a variance needs 2", self.n);
        }
        let n = self.n as f64;
        let mean_x = self.sum_x / n;
        let mean_y = self.sum_y / n;
        let var_x = ((self.sum_xx - self.sum_x * mean_x) / (n - 1.0)).max(0.0);
        let var_y = ((self.sum_yy - self.sum_y * mean_y) / (n - 1.0)).max(0.0);
        let cov_xy = (self.sum_xy - self.sum_x * mean_y) / (n - 1.0);
        Ok(Moments {
            n,
            mean_x,
            mean_y,
            var_x,
            var_y,
            cov_xy,
        })
    }
}

/// Test helpers shared by the statistics' tests.
#[cfg(test)]
pub(crate) mod testing {
    use rand::SeedableRng;
    use rand::rngs::Xoshiro256PlusPlus;
    use rand_distr::{Binomial, Distribution};

    use super::PairSums;
    use super::proportion::{Proportion, two_proportion_ztest};

    /// Running sums given as the reference script prints them: (n, Σx, Σy, Σx², Σy², Σxy).
    pub fn sums(s: (u64, u64, u64, u64, u64, u64)) -> PairSums {
        PairSums {
            n: s.0,
            sum_x: s.1 as f64,
            sum_y: s.2 as f64,
            sum_xx: s.3 as f64,
            sum_yy: s.4 as f64,
            sum_xy: s.5 as f64,
        }
    }

    /// Simulated experiments of `n` users per variant with true rates `pc` and `pt`:
    /// the share in which the z-test rejects at α = 0.05.
    pub fn rejection_rate(pc: f64, pt: f64, n: u64, runs: usize, seed: u64) -> f64 {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let (bc, bt) = (Binomial::new(n, pc).unwrap(), Binomial::new(n, pt).unwrap());
        let mut rejected = 0;
        for _ in 0..runs {
            let c = Proportion::new(bc.sample(&mut rng), n).unwrap();
            let t = Proportion::new(bt.sample(&mut rng), n).unwrap();
            if two_proportion_ztest(c, t).unwrap().p_value < 0.05 {
                rejected += 1;
            }
        }
        rejected as f64 / runs as f64
    }

    /// |a − b| ≤ tol, with a message.
    #[track_caller]
    pub fn close(a: f64, b: f64, tol: f64) {
        assert!((a - b).abs() <= tol, "{a} vs {b} (tolerance {tol})");
    }

    /// |a − b| ≤ rel·|b|, with a message.
    #[track_caller]
    pub fn close_rel(a: f64, b: f64, rel: f64) {
        assert!(
            (a - b).abs() <= rel * b.abs(),
            "{a} vs {b} (relative tolerance {rel})"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::testing::close;
    use super::*;

    #[test]
    fn moments_from_running_sums_match_direct_computation() {
        let xs = [1.0, 4.0, 2.0, 0.0, 3.0];
        let ys = [2.0, 9.0, 3.0, 1.0, 5.0];
        let mut s = PairSums::default();
        for (x, y) in xs.iter().zip(ys) {
            s.add(*x, y);
        }
        let m = s.moments().unwrap();
        // Direct two-pass: mean x 2, mean y 4; deviations x (-1,2,0,-2,1), y (-2,5,-1,-3,1).
        close(m.mean_x, 2.0, 1e-12);
        close(m.mean_y, 4.0, 1e-12);
        close(m.var_x, 10.0 / 4.0, 1e-12);
        close(m.var_y, 40.0 / 4.0, 1e-12);
        close(m.cov_xy, 19.0 / 4.0, 1e-12);
        let (mut a, mut b) = (PairSums::default(), PairSums::default());
        for (i, (x, y)) in xs.iter().zip(ys).enumerate() {
            if i % 2 == 0 { &mut a } else { &mut b }.add(*x, y);
        }
        a.merge(&b);
        assert_eq!(a, s);
    }

    #[test]
    fn moments_need_two_users_and_finite_sums() {
        let mut s = PairSums::default();
        s.add(1.0, 1.0);
        assert!(matches!(s.moments(), Err(StatsError::NotEnoughData(_))));
        s.add(f64::NAN, 1.0);
        assert!(matches!(s.moments(), Err(StatsError::Invalid(_))));
    }

    #[test]
    fn normal_helpers() {
        // Φ⁻¹(0.975) and 2(1 − Φ(1.96)), standard table values.
        close(
            z_for_confidence(0.95).unwrap(),
            1.959_963_984_540_054,
            1e-12,
        );
        close(two_sided_p(1.959_963_984_540_054), 0.05, 1e-10);
        close(two_sided_p(0.0), 1.0, 0.0);
        assert!(two_sided_p(30.0) > 0.0, "the tail keeps its precision");
        for bad in [0.0, 1.0, -0.5, f64::NAN] {
            assert!(z_for_confidence(bad).is_err());
        }
        assert!(matches!(
            ZTest::new(0.0, 0.0),
            Err(StatsError::NotEnoughData(_))
        ));
        let t = ZTest::new(0.02, 1e-4).unwrap();
        close(t.z, 2.0, 1e-12);
        let i = t.interval(0.95).unwrap();
        close(i.hi - i.lo, 2.0 * 1.959_963_984_540_054 * 0.01, 1e-12);
        assert!(i.contains(0.02) && !i.contains(0.0));
    }
}
