//! Sample-ratio mismatch: are the users split as configured?
//!
//! If a 50/50 experiment has 52 % of its users in one variant, something between the
//! assignment and the logging drops or duplicates users of one variant (a redirect that
//! loses some, a bot filter that hits one variant, a crash in the new code), and the
//! variants' metrics are not comparable. A chi-square goodness-of-fit test of the users
//! per variant against the configured weights finds this; the usual threshold is
//! p < 0.001 (strict, since the test runs on every report and false alarms are costly).

use serde::{Deserialize, Serialize};
use statrs::distribution::{ChiSquared, ContinuousCDF};

use super::{StatsError, invalid_arg, not_enough};

/// The p-value below which users per variant are declared mismatched.
pub const SRM_P_THRESHOLD: f64 = 0.001;

/// The result of the sample-ratio check.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SampleRatio {
    /// Pearson's χ² = Σ (observed − expected)² / expected.
    pub statistic: f64,
    /// Degrees of freedom: variants with a positive weight, minus one.
    pub degrees_of_freedom: usize,
    /// P(χ² ≥ statistic) under the configured split.
    pub p_value: f64,
    /// `p_value < SRM_P_THRESHOLD`.
    pub mismatch: bool,
}

/// Checks `observed` users per variant against the configured `weights` (any positive
/// scale, e.g. [`Experiment::weights`](crate::experiment::Experiment::weights)). A variant
/// of weight 0 that has users is a mismatch outright; one without users is left out.
pub fn sample_ratio_mismatch(observed: &[u64], weights: &[f64]) -> Result<SampleRatio, StatsError> {
    if observed.len() != weights.len() {
        return invalid_arg!(
            "{} observed counts for {} weights",
            observed.len(),
            weights.len()
        );
    }
    if weights.iter().any(|w| !(w.is_finite() && *w >= 0.0)) {
        return invalid_arg!("weights {weights:?} must be finite and >= 0");
    }
    let total_w: f64 = weights.iter().sum();
    if !(total_w > 0.0 && total_w.is_finite()) {
        return invalid_arg!("weights {weights:?} must have a positive finite sum");
    }
    let total: u64 = observed.iter().sum();
    if total == 0 {
        return not_enough!("no users yet");
    }
    let n = total as f64;
    let mut statistic = 0.0;
    let mut cells = 0usize;
    for (&o, &w) in observed.iter().zip(weights) {
        if w == 0.0 {
            if o > 0 {
                statistic = f64::INFINITY;
            }
            continue;
        }
        cells += 1;
        let expected = n * w / total_w;
        let d = o as f64 - expected;
        statistic += d * d / expected;
    }
    let degrees_of_freedom = cells.saturating_sub(1);
    let p_value = if statistic == f64::INFINITY {
        0.0
    } else if degrees_of_freedom == 0 {
        // One variant takes everyone, and everyone is in it.
        1.0
    } else {
        match ChiSquared::new(degrees_of_freedom as f64) {
            Ok(chi) => chi.sf(statistic),
            Err(e) => return invalid_arg!("chi-square with {degrees_of_freedom} df: {e}"),
        }
    };
    Ok(SampleRatio {
        statistic,
        degrees_of_freedom,
        p_value,
        mismatch: p_value < SRM_P_THRESHOLD,
    })
}

#[cfg(test)]
mod tests {
    use super::super::testing::{close, close_rel};
    use super::*;
    use crate::experiment::assign::{Assignment, Experiment, ExperimentSpec, VariantSpec};

    #[test]
    fn matches_scipy_chisquare() {
        // scripts/experiment-reference.py: scipy.stats.chisquare(observed, N · weights).
        let cases: [(&[u64], &[f64], f64, f64); 3] = [
            (&[5050, 4950], &[0.5, 0.5], 1.0, 0.31731050786291115),
            (&[5200, 4800], &[0.5, 0.5], 16.0, 6.334248366623988e-05),
            (
                &[10321, 9876, 4950],
                &[0.4, 0.4, 0.2],
                11.410247743269574,
                0.003328865007640678,
            ),
        ];
        for (obs, w, chi2, p) in cases {
            let r = sample_ratio_mismatch(obs, w).unwrap();
            close(r.statistic, chi2, 1e-9);
            close_rel(r.p_value, p, 1e-9);
            assert_eq!(r.degrees_of_freedom, obs.len() - 1);
            assert_eq!(r.mismatch, p < 0.001);
        }
        // Weights of any scale.
        let r = sample_ratio_mismatch(&[5200, 4800], &[3.0, 3.0]).unwrap();
        assert!(r.mismatch);
    }

    #[test]
    fn zero_weights_and_bad_inputs() {
        let r = sample_ratio_mismatch(&[500, 500, 0], &[1.0, 1.0, 0.0]).unwrap();
        assert_eq!((r.degrees_of_freedom, r.statistic), (1, 0.0));
        assert!(!r.mismatch);
        let r = sample_ratio_mismatch(&[500, 500, 1], &[1.0, 1.0, 0.0]).unwrap();
        assert!(r.mismatch && r.p_value == 0.0);
        assert!(sample_ratio_mismatch(&[1, 2], &[1.0]).is_err());
        assert!(sample_ratio_mismatch(&[1, 2], &[1.0, -1.0]).is_err());
        assert!(sample_ratio_mismatch(&[1, 2], &[0.0, 0.0]).is_err());
        assert!(sample_ratio_mismatch(&[1, 2], &[f64::NAN, 1.0]).is_err());
        assert!(matches!(
            sample_ratio_mismatch(&[0, 0], &[1.0, 1.0]),
            Err(StatsError::NotEnoughData(_))
        ));
    }

    #[test]
    fn the_hash_assignment_passes_and_a_lossy_variant_fails() {
        // 50k users through a real 60/40 experiment: no mismatch. Then drop 5 % of the
        // treatment's users (as a logging bug would): mismatch.
        let e = Experiment::new(ExperimentSpec {
            id: "srm".into(),
            variants: vec![
                VariantSpec {
                    name: "control".into(),
                    weight: 60.0,
                },
                VariantSpec {
                    name: "treatment".into(),
                    weight: 40.0,
                },
            ],
            holdout: 0.0,
            overrides: Default::default(),
        })
        .unwrap();
        let mut counts = [0u64; 2];
        let mut lossy = [0u64; 2];
        for u in 0..50_000u64 {
            if let Assignment::Variant(i) = e.assign(&format!("u{u}")) {
                counts[i] += 1;
                if !(i == 1 && u % 20 == 0) {
                    lossy[i] += 1;
                }
            }
        }
        let ok = sample_ratio_mismatch(&counts, e.weights()).unwrap();
        assert!(!ok.mismatch, "{ok:?} for {counts:?}");
        let bad = sample_ratio_mismatch(&lossy, e.weights()).unwrap();
        assert!(bad.mismatch, "{bad:?} for {lossy:?}");
    }
}
