//! Rates (CTR, conversion) counted per user: the Wilson interval and the two-proportion
//! z-test.
//!
//! A [`Proportion`] counts users (trials) and users who converted (successes), one
//! Bernoulli outcome per user, so the users are the independent units. Per-impression
//! rates, where one user contributes many correlated trials, belong in [`super::ratio`].

use serde::{Deserialize, Serialize};

use super::{Interval, StatsError, ZTest, invalid_arg, not_enough, z_for_confidence};

/// Successes out of trials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Proportion {
    /// Trials with the outcome (users who clicked / converted).
    pub successes: u64,
    /// All trials (users).
    pub trials: u64,
}

impl Proportion {
    /// A proportion; `successes` must not exceed `trials`.
    pub fn new(successes: u64, trials: u64) -> Result<Self, StatsError> {
        let p = Self { successes, trials };
        p.check()?;
        Ok(p)
    }

    pub(crate) fn check(&self) -> Result<(), StatsError> {
        if self.successes > self.trials {
            return invalid_arg!("{} successes out of {} trials", self.successes, self.trials);
        }
        Ok(())
    }

    /// Trials without the outcome.
    pub fn failures(&self) -> u64 {
        self.trials.saturating_sub(self.successes)
    }

    /// successes / trials; `None` without trials.
    pub fn rate(&self) -> Option<f64> {
        (self.trials > 0).then(|| self.successes as f64 / self.trials as f64)
    }

    /// The Wilson score interval at the two-sided `confidence` level (e.g. 0.95).
    ///
    /// Unlike the Wald interval p̂ ± z·√(p̂(1−p̂)/n), it keeps its coverage near 0 and 1
    /// and for small n, which matters for CTRs of a few percent: with 0 successes it is
    /// [0, z²/(n+z²)] rather than the empty [0, 0].
    pub fn wilson_interval(&self, confidence: f64) -> Result<Interval, StatsError> {
        self.check()?;
        let z = z_for_confidence(confidence)?;
        if self.trials == 0 {
            return not_enough!("no trials");
        }
        let n = self.trials as f64;
        let p = self.successes as f64 / n;
        let z2 = z * z;
        let denom = 1.0 + z2 / n;
        let center = (p + z2 / (2.0 * n)) / denom;
        let half = z / denom * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
        Ok(Interval {
            estimate: p,
            lo: (center - half).max(0.0),
            hi: (center + half).min(1.0),
        })
    }
}

/// The two-proportion z-test of treatment − control, two-sided, with the *pooled*
/// variance p̄(1 − p̄)(1/n_c + 1/n_t) of the null hypothesis (as statsmodels'
/// `proportions_ztest` and most A/B tools do).
pub fn two_proportion_ztest(
    control: Proportion,
    treatment: Proportion,
) -> Result<ZTest, StatsError> {
    control.check()?;
    treatment.check()?;
    let (Some(pc), Some(pt)) = (control.rate(), treatment.rate()) else {
        return not_enough!("a variant has no users");
    };
    let (nc, nt) = (control.trials as f64, treatment.trials as f64);
    let pooled = (control.successes + treatment.successes) as f64 / (nc + nt);
    ZTest::new(pt - pc, pooled * (1.0 - pooled) * (1.0 / nc + 1.0 / nt))
}

/// The Wald interval of treatment − control with the unpooled variance
/// p_c(1 − p_c)/n_c + p_t(1 − p_t)/n_t, at the two-sided `confidence` level.
pub fn difference_interval(
    control: Proportion,
    treatment: Proportion,
    confidence: f64,
) -> Result<Interval, StatsError> {
    control.check()?;
    treatment.check()?;
    let z = z_for_confidence(confidence)?;
    let (Some(pc), Some(pt)) = (control.rate(), treatment.rate()) else {
        return not_enough!("a variant has no users");
    };
    let se = (pc * (1.0 - pc) / control.trials as f64 + pt * (1.0 - pt) / treatment.trials as f64)
        .sqrt();
    let d = pt - pc;
    Ok(Interval {
        estimate: d,
        lo: d - z * se,
        hi: d + z * se,
    })
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::Xoshiro256PlusPlus;
    use rand_distr::{Binomial, Distribution};

    use super::super::testing::{close, rejection_rate};
    use super::*;

    fn prop(s: u64, n: u64) -> Proportion {
        Proportion::new(s, n).unwrap()
    }

    #[test]
    fn wilson_matches_statsmodels() {
        // scripts/experiment-reference.py: statsmodels proportion_confint(method='wilson').
        let cases = [
            (
                (37, 1000, 0.95),
                (0.026961180875554734, 0.05058239748206931),
            ),
            ((0, 50, 0.95), (0.0, 0.07134759913335874)),
            ((50, 50, 0.95), (0.9286524008666412, 1.0)),
            (
                (1234, 56789, 0.95),
                (0.020562371863068946, 0.022961449015183377),
            ),
            ((7, 40, 0.99), (0.07064423503673015, 0.3718333537431997)),
        ];
        for ((s, n, level), (lo, hi)) in cases {
            let i = prop(s, n).wilson_interval(level).unwrap();
            close(i.lo, lo, 1e-9);
            close(i.hi, hi, 1e-9);
            close(i.estimate, s as f64 / n as f64, 0.0);
        }
    }

    #[test]
    fn ztest_matches_statsmodels() {
        // scripts/experiment-reference.py: statsmodels proportions_ztest([x_t, x_c], [n_t, n_c]).
        let cases = [
            (
                (100, 2000),
                (130, 2000),
                2.0375893277870785,
                0.04159102022986781,
            ),
            (
                (512, 10000),
                (560, 10000),
                1.5069764964192438,
                0.1318166818238966,
            ),
            ((45, 900), (30, 1100), -2.661545653496, 0.007778279201453443),
            ((5, 100), (5, 100), 0.0, 1.0),
        ];
        for ((xc, nc), (xt, nt), z, p) in cases {
            let t = two_proportion_ztest(prop(xc, nc), prop(xt, nt)).unwrap();
            close(t.z, z, 1e-9);
            close(t.p_value, p, 1e-9);
        }
    }

    #[test]
    fn rejects_bad_and_empty_inputs() {
        assert!(Proportion::new(3, 2).is_err());
        let bad = Proportion {
            successes: 3,
            trials: 2,
        };
        assert!(bad.wilson_interval(0.95).is_err());
        assert!(two_proportion_ztest(bad, prop(1, 2)).is_err());
        assert!(matches!(
            prop(0, 0).wilson_interval(0.95),
            Err(StatsError::NotEnoughData(_))
        ));
        assert!(matches!(
            two_proportion_ztest(prop(0, 10), prop(0, 0)),
            Err(StatsError::NotEnoughData(_))
        ));
        // No successes anywhere: no variance, no test.
        assert!(matches!(
            two_proportion_ztest(prop(0, 10), prop(0, 10)),
            Err(StatsError::NotEnoughData(_))
        ));
        assert!(prop(1, 2).wilson_interval(1.0).is_err());
        assert_eq!(prop(0, 0).rate(), None);
        assert_eq!(prop(3, 10).failures(), 7);
    }

    #[test]
    fn difference_interval_is_the_unpooled_wald_interval() {
        // 0.065 − 0.05 ± 1.959964·√(0.05·0.95/2000 + 0.065·0.935/2000)
        let i = difference_interval(prop(100, 2000), prop(130, 2000), 0.95).unwrap();
        let se = (0.05f64 * 0.95 / 2000.0 + 0.065 * 0.935 / 2000.0).sqrt();
        close(i.estimate, 0.015, 1e-12);
        close(i.hi - i.estimate, 1.959_963_984_540_054 * se, 1e-12);
        close(i.estimate - i.lo, 1.959_963_984_540_054 * se, 1e-12);
    }

    #[test]
    fn a_a_experiments_reject_at_the_nominal_rate() {
        // 1000 A/A experiments (2000 users per variant, CTR 0.05), one look each: the
        // z-test rejects 5 % ± 1.5 % of them (the Monte Carlo sd is 0.7 %).
        let rate = rejection_rate(0.05, 0.05, 2000, 1000, 7);
        assert!((rate - 0.05).abs() <= 0.015, "A/A rejection rate {rate}");
    }

    #[test]
    fn wilson_covers_the_true_rate_about_95_percent_of_the_time() {
        // 2000 samples of 200 trials at p = 0.03 (where the Wald interval undercovers):
        // coverage within 95 % ± 2 %.
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(11);
        let b = Binomial::new(200, 0.03).unwrap();
        let covered = (0..2000)
            .filter(|_| {
                prop(b.sample(&mut rng), 200)
                    .wilson_interval(0.95)
                    .unwrap()
                    .contains(0.03)
            })
            .count();
        let coverage = covered as f64 / 2000.0;
        assert!((coverage - 0.95).abs() <= 0.02, "coverage {coverage}");
    }
}
