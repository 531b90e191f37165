//! CUPED: variance reduction with a pre-experiment covariate (Deng, Xu, Kohavi & Walker,
//! "Improving the Sensitivity of Online Controlled Experiments by Utilizing
//! Pre-Experiment Data", WSDM 2013).
//!
//! A user's metric y during the experiment correlates with the same user's behaviour x
//! before it (heavy users stay heavy). Subtracting the predictable part,
//! y' = y − θ(x − x̄), with θ = cov(x, y)/var(x), leaves the means' difference unbiased
//! (x was measured before assignment, so its mean is the same in every variant in
//! expectation) and shrinks the variance by the factor 1 − ρ²(x, y).
//!
//! Everything comes from running sums per variant in a [`PairSums`] with
//! x = pre-experiment covariate, y = metric. θ is estimated once on all variants pooled
//! and then applied to each variant, so every variant is adjusted alike.

use serde::{Deserialize, Serialize};

use super::{PairSums, StatsError, ZTest, not_enough};

/// θ = cov(x, y)/var(x) from `pooled` sums (all variants merged with
/// [`PairSums::merge`]); x = covariate, y = metric.
pub fn cuped_theta(pooled: &PairSums) -> Result<f64, StatsError> {
    let m = pooled.moments()?;
    if m.var_x <= 0.0 {
        return not_enough!("the covariate does not vary; CUPED has nothing to use");
    }
    Ok(m.cov_xy / m.var_x)
}

/// A variant's CUPED-adjusted mean.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdjustedMean {
    /// ȳ − θ(x̄ − x_center).
    pub mean: f64,
    /// The variance of that mean: (s²ᵧ − 2θ·sₓᵧ + θ²·s²ₓ)/n.
    pub variance_of_mean: f64,
    /// The variance of the plain mean ȳ, s²ᵧ/n, for comparison.
    pub unadjusted_variance_of_mean: f64,
}

/// The CUPED-adjusted mean of one variant's `sums` with the pooled `theta` and the pooled
/// covariate mean `x_center` (any common center gives the same differences between
/// variants; the pooled mean keeps each adjusted mean on the metric's scale).
pub fn cuped_adjust(
    sums: &PairSums,
    theta: f64,
    x_center: f64,
) -> Result<AdjustedMean, StatsError> {
    if !theta.is_finite() || !x_center.is_finite() {
        return super::invalid_arg!("theta {theta} and center {x_center} must be finite");
    }
    let m = sums.moments()?;
    let var = (m.var_y - 2.0 * theta * m.cov_xy + theta * theta * m.var_x).max(0.0);
    Ok(AdjustedMean {
        mean: m.mean_y - theta * (m.mean_x - x_center),
        variance_of_mean: var / m.n,
        unadjusted_variance_of_mean: m.var_y / m.n,
    })
}

/// The two-sided z-test of the CUPED-adjusted means, treatment − control, with θ and the
/// center from both variants pooled.
pub fn cuped_ztest(control: &PairSums, treatment: &PairSums) -> Result<ZTest, StatsError> {
    let mut pooled = *control;
    pooled.merge(treatment);
    let theta = cuped_theta(&pooled)?;
    let center = pooled.moments()?.mean_x;
    let c = cuped_adjust(control, theta, center)?;
    let t = cuped_adjust(treatment, theta, center)?;
    ZTest::new(t.mean - c.mean, c.variance_of_mean + t.variance_of_mean)
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::Xoshiro256PlusPlus;
    use rand_distr::{Distribution, Gamma, Poisson};

    use super::super::testing::{close, close_rel, sums};
    use super::*;

    // scripts/experiment-reference.py, "CUPED": 2000 users per variant, x = purchases
    // before, y = purchases during; (n, Σx, Σy, Σx², Σy², Σxy). numpy computed θ, the
    // adjusted values y − θ(x − x̄_pooled) and their mean and variance from the raw data.
    const CONTROL: (u64, u64, u64, u64, u64, u64) = (2000, 3959, 3938, 15757, 15244, 11607);
    const TREATMENT: (u64, u64, u64, u64, u64, u64) = (2000, 3982, 4715, 15804, 21685, 14060);

    #[test]
    fn matches_numpy_on_the_raw_data() {
        let (c, t) = (sums(CONTROL), sums(TREATMENT));
        let mut pooled = c;
        pooled.merge(&t);
        let theta = cuped_theta(&pooled).unwrap();
        close(theta, 0.5373868083098015, 1e-12);
        let center = pooled.moments().unwrap().mean_x;
        close(center, 1.98525, 1e-12);
        let ac = cuped_adjust(&c, theta, center).unwrap();
        close(ac.mean, 1.972089974147781, 1e-12);
        close_rel(ac.variance_of_mean, 0.0014208484706504495, 1e-9);
        close_rel(ac.unadjusted_variance_of_mean, 0.001873456228114057, 1e-9);
        let at = cuped_adjust(&t, theta, center).unwrap();
        close(at.mean, 2.3544100258522187, 1e-12);
        close_rel(at.variance_of_mean, 0.001956477793735487, 1e-9);
        let z = cuped_ztest(&c, &t).unwrap();
        close(z.difference, 0.3823200517044376, 1e-12);
        close(z.z, 6.578707350924285, 1e-8);
        close_rel(z.p_value, 4.745557451269897e-11, 1e-6);
    }

    #[test]
    fn a_constant_covariate_is_refused() {
        let mut s = PairSums::default();
        for y in [1.0, 2.0, 3.0] {
            s.add(5.0, y);
        }
        assert!(matches!(cuped_theta(&s), Err(StatsError::NotEnoughData(_))));
        assert!(cuped_adjust(&s, f64::NAN, 0.0).is_err());
    }

    #[test]
    fn cuped_shrinks_the_variance_and_keeps_the_a_a_error_rate() {
        // 1000 A/A experiments of 500 users per variant whose purchases before and during
        // come from the same per-user habit (Gamma(2, 1)): the adjusted variance is
        // smaller in every one of them (ρ² = 0.25 here), and the CUPED z-test still
        // rejects 5 % ± 2 % (Monte Carlo sd 0.7 %).
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(31);
        let habit = Gamma::new(2.0, 1.0).unwrap();
        let runs = 1000;
        let mut rejected = 0;
        let mut ratio_sum = 0.0;
        for _ in 0..runs {
            let mut arms = [PairSums::default(); 2];
            for arm in &mut arms {
                for _ in 0..500 {
                    let h = habit.sample(&mut rng);
                    let p = Poisson::new(h).unwrap();
                    arm.add(p.sample(&mut rng), p.sample(&mut rng));
                }
            }
            let mut pooled = arms[0];
            pooled.merge(&arms[1]);
            let theta = cuped_theta(&pooled).unwrap();
            let center = pooled.moments().unwrap().mean_x;
            let adjusted = cuped_adjust(&arms[0], theta, center).unwrap();
            assert!(adjusted.variance_of_mean < adjusted.unadjusted_variance_of_mean);
            ratio_sum += adjusted.variance_of_mean / adjusted.unadjusted_variance_of_mean;
            if cuped_ztest(&arms[0], &arms[1]).unwrap().p_value < 0.05 {
                rejected += 1;
            }
        }
        let rate = rejected as f64 / runs as f64;
        assert!(
            (rate - 0.05).abs() <= 0.02,
            "CUPED A/A rejection rate {rate}"
        );
        // Var(y) = E[h] + Var(h) = 4, Cov(x, y) = Var(h) = 2, so 1 − ρ² = 1 − 4/16 = 0.75.
        let mean_ratio = ratio_sum / runs as f64;
        assert!(
            (mean_ratio - 0.75).abs() < 0.02,
            "variance ratio {mean_ratio}"
        );
    }
}
