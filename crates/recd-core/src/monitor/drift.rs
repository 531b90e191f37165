//! Drift between a reference and a live distribution: the Population Stability Index, a
//! two-sample test per feature, and a [`DriftReport`].
//!
//! # PSI
//! Over shared bins (or categories) with reference shares eᵢ and live shares aᵢ:
//! PSI = Σ (aᵢ − eᵢ)·ln(aᵢ / eᵢ). Each term is ≥ 0 and PSI is symmetric in the two
//! distributions (it is the symmetrized Kullback–Leibler divergence). An empty bin would make
//! a term infinite, so every share is first floored at [`PSI_EPSILON`] = 10⁻⁴ (max(p, ε), not
//! renormalized): an empty bin against a bin of share a then adds about a·ln(a/10⁻⁴), a
//! large but finite penalty. The usual rule of thumb (credit scoring): PSI < 0.1 no
//! significant change, 0.1–0.25 a moderate shift worth a look, > 0.25 a major shift. The
//! default threshold, [`DEFAULT_PSI_THRESHOLD`] = 0.2, flags the upper part of the moderate
//! band. For a normal feature binned by deciles, a mean shift of δ standard deviations gives
//! PSI ≈ δ² (0.25 for δ = 0.5).
//!
//! # Tests
//! PSI says how *much* a distribution moved but not whether the move is beyond sampling
//! noise, which matters when the live side holds few values. So each report also has a
//! p-value of the null hypothesis "same distribution":
//! - numeric: the two-sample Kolmogorov–Smirnov test on the reference's and the live
//!   stream's reservoir samples ([`ks_two_sample`]), or on binned counts ([`ks_binned`]);
//! - categorical: the chi-square test of homogeneity of the 2 × k table of counts
//!   ([`chi_square_homogeneity`]).
//!
//! A feature is reported as drifted when PSI ≥ the threshold **and** p < α (default 0.05).
//! With large samples any tiny difference is "significant", so the p-value alone would
//! flag everything; with small ones PSI is noisy, so PSI alone would flag noise.

use serde::{Deserialize, Serialize};
use statrs::distribution::{ChiSquared, ContinuousCDF};

use super::histogram::{BinEdges, CategoricalCounts, CategoricalSummary, NumericHistogram};
use super::sample::{NumericSummary, Reservoir};
use crate::error::ValidationError;

/// The floor of each share in [`psi`]: max(p, 10⁻⁴).
pub const PSI_EPSILON: f64 = 1e-4;
/// The default PSI threshold of drift (see the module docs for the 0.1 / 0.25 rule of thumb).
pub const DEFAULT_PSI_THRESHOLD: f64 = 0.2;
/// The default significance level of the two-sample test.
pub const DEFAULT_ALPHA: f64 = 0.05;

/// PSI between reference shares `expected` and live shares `actual` (same length,
/// non-negative, finite; each normally summing to 1), with the [`PSI_EPSILON`] floor.
pub fn psi(expected: &[f64], actual: &[f64]) -> Result<f64, ValidationError> {
    if expected.len() != actual.len() {
        return crate::invalid!(
            "PSI needs the same bins on both sides, got {} and {}",
            expected.len(),
            actual.len()
        );
    }
    if let Some(p) = expected
        .iter()
        .chain(actual)
        .find(|p| !(p.is_finite() && **p >= 0.0))
    {
        return crate::invalid!("PSI needs non-negative finite shares, got {p}");
    }
    Ok(expected
        .iter()
        .zip(actual)
        .map(|(&e, &a)| {
            let (e, a) = (e.max(PSI_EPSILON), a.max(PSI_EPSILON));
            (a - e) * (a / e).ln()
        })
        .sum())
}

/// PSI between two vectors of counts over the same bins; errors when either side is empty.
pub fn psi_counts(expected: &[u64], actual: &[u64]) -> Result<f64, ValidationError> {
    let (Some(e), Some(a)) = (
        super::histogram::proportions(expected),
        super::histogram::proportions(actual),
    ) else {
        return crate::invalid!("PSI needs at least one value on each side");
    };
    psi(&e, &a)
}

/// PSI between a reference and a live histogram over the same edges.
pub fn psi_numeric(
    reference: &NumericHistogram,
    live: &NumericHistogram,
) -> Result<f64, ValidationError> {
    if reference.edges() != live.edges() {
        return crate::invalid!("PSI needs the same bin edges on both sides");
    }
    psi_counts(reference.counts(), live.counts())
}

/// PSI between a reference and a live categorical distribution over the same categories
/// ("other" is one more bin).
pub fn psi_categorical(
    reference: &CategoricalCounts,
    live: &CategoricalCounts,
) -> Result<f64, ValidationError> {
    if reference.categories() != live.categories() {
        return crate::invalid!("PSI needs the same categories on both sides");
    }
    psi_counts(reference.counts(), live.counts())
}

/// The result of a two-sample Kolmogorov–Smirnov test.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct KsTest {
    /// D = sup |F_a(x) − F_b(x)| of the two empirical distribution functions.
    pub statistic: f64,
    /// The asymptotic p-value of D (see [`ks_p_value`]).
    pub p_value: f64,
    /// Size of the first sample.
    pub n_a: u64,
    /// Size of the second sample.
    pub n_b: u64,
}

/// The two-sample Kolmogorov–Smirnov test (two-sided) of two samples; NaNs are ignored.
/// The statistic equals `scipy.stats.ks_2samp`'s (ties handled the same way); the
/// p-value is [`ks_p_value`]. Errors when a sample has no value.
pub fn ks_two_sample(a: &[f64], b: &[f64]) -> Result<KsTest, ValidationError> {
    let sorted = |v: &[f64]| {
        let mut s: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
        s.sort_by(f64::total_cmp);
        s
    };
    ks_sorted(&sorted(a), &sorted(b))
}

/// [`ks_two_sample`] of two ascending NaN-free samples.
fn ks_sorted(a: &[f64], b: &[f64]) -> Result<KsTest, ValidationError> {
    if a.is_empty() || b.is_empty() {
        return crate::invalid!("the KS test needs at least one value in each sample");
    }
    let (na, nb) = (a.len() as f64, b.len() as f64);
    let (mut i, mut j, mut d) = (0usize, 0usize, 0.0f64);
    while i < a.len() && j < b.len() {
        // step both empirical CDFs past the next value (past all of its ties)
        let x = a[i].min(b[j]);
        while i < a.len() && a[i] <= x {
            i += 1;
        }
        while j < b.len() && b[j] <= x {
            j += 1;
        }
        d = d.max((i as f64 / na - j as f64 / nb).abs());
    }
    Ok(KsTest {
        statistic: d,
        p_value: ks_p_value(d, a.len() as u64, b.len() as u64),
        n_a: a.len() as u64,
        n_b: b.len() as u64,
    })
}

/// The KS test on binned data: D is taken at the bin edges only, so it is at most the D of
/// the underlying values (the test is conservative); the sample sizes are the histograms'
/// totals. Errors on different edges or an empty histogram.
pub fn ks_binned(
    reference: &NumericHistogram,
    live: &NumericHistogram,
) -> Result<KsTest, ValidationError> {
    if reference.edges() != live.edges() {
        return crate::invalid!("the binned KS test needs the same bin edges on both sides");
    }
    let (na, nb) = (reference.total(), live.total());
    if na == 0 || nb == 0 {
        return crate::invalid!("the KS test needs at least one value in each sample");
    }
    let (mut ca, mut cb, mut d) = (0u64, 0u64, 0.0f64);
    for (&x, &y) in reference.counts().iter().zip(live.counts()) {
        ca += x;
        cb += y;
        d = d.max((ca as f64 / na as f64 - cb as f64 / nb as f64).abs());
    }
    Ok(KsTest {
        statistic: d,
        p_value: ks_p_value(d, na, nb),
        n_a: na,
        n_b: nb,
    })
}

/// The asymptotic two-sided p-value of a two-sample KS statistic `d` for sample sizes
/// n_a, n_b: the Kolmogorov distribution's survival function at
/// λ = (√nₑ + 0.12 + 0.11/√nₑ)·d, nₑ = n_a·n_b/(n_a + n_b) (Stephens' small-sample
/// correction, as in Numerical Recipes' `kstwo`). Against scipy's `ks_2samp(method="asymp")`,
/// which evaluates the exact one-sample distribution at round(nₑ), it agrees within a few
/// percent (relative) for p-values above 10⁻⁸, and the largest differences are in the far
/// tail where both are tiny.
pub fn ks_p_value(d: f64, n_a: u64, n_b: u64) -> f64 {
    if n_a == 0 || n_b == 0 || d.is_nan() {
        return 1.0;
    }
    let (na, nb) = (n_a as f64, n_b as f64);
    let en = (na * nb / (na + nb)).sqrt();
    kolmogorov_sf((en + 0.12 + 0.11 / en) * d)
}

/// The survival function of the Kolmogorov distribution,
/// Q(λ) = P(K > λ) = 2 Σ_{k≥1} (−1)^(k−1) e^(−2k²λ²) (scipy's `special.kolmogorov`). Below
/// λ = 1 it is computed as 1 − P(K ≤ λ) with P(K ≤ λ) = (√(2π)/λ) Σ_{k≥1} e^(−(2k−1)²π²/(8λ²)),
/// which converges fast there.
pub fn kolmogorov_sf(lambda: f64) -> f64 {
    if lambda.is_nan() || lambda <= 0.0 {
        return 1.0;
    }
    if lambda < 1.0 {
        let c = std::f64::consts::PI.powi(2) / (8.0 * lambda * lambda);
        let mut sum = 0.0;
        for k in 1..=100u32 {
            let odd = f64::from(2 * k - 1);
            let term = (-odd * odd * c).exp();
            sum += term;
            if term <= sum * 1e-17 {
                break;
            }
        }
        let cdf = (2.0 * std::f64::consts::PI).sqrt() / lambda * sum;
        return (1.0 - cdf).clamp(0.0, 1.0);
    }
    let mut sum = 0.0;
    let mut sign = 1.0;
    for k in 1..=100u32 {
        let kf = f64::from(k);
        let term = (-2.0 * kf * kf * lambda * lambda).exp();
        sum += sign * term;
        sign = -sign;
        if term <= sum.abs() * 1e-17 {
            break;
        }
    }
    (2.0 * sum).clamp(0.0, 1.0)
}

/// The result of a chi-square test of homogeneity.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ChiSquareTest {
    /// Σ (O − E)² / E over the cells of the 2 × k table.
    pub statistic: f64,
    /// Degrees of freedom, k − 1 over the categories seen on either side.
    pub dof: u64,
    /// P(χ²_dof ≥ statistic); 1 when dof is 0.
    pub p_value: f64,
}

/// The chi-square test of homogeneity of two vectors of counts over the same categories
/// (a 2 × k contingency table; categories empty on both sides are left out; no continuity
/// correction: `scipy.stats.chi2_contingency(..., correction=False)`). Errors on different
/// lengths or an empty side.
pub fn chi_square_homogeneity(a: &[u64], b: &[u64]) -> Result<ChiSquareTest, ValidationError> {
    if a.len() != b.len() {
        return crate::invalid!(
            "the chi-square test needs the same categories on both sides, got {} and {}",
            a.len(),
            b.len()
        );
    }
    let na: f64 = a.iter().map(|&x| x as f64).sum();
    let nb: f64 = b.iter().map(|&x| x as f64).sum();
    if na == 0.0 || nb == 0.0 {
        return crate::invalid!("the chi-square test needs at least one value on each side");
    }
    let n = na + nb;
    let mut statistic = 0.0;
    let mut columns = 0u64;
    for (&x, &y) in a.iter().zip(b) {
        let col = x as f64 + y as f64;
        if col == 0.0 {
            continue;
        }
        columns += 1;
        let (ea, eb) = (na * col / n, nb * col / n);
        statistic += (x as f64 - ea).powi(2) / ea + (y as f64 - eb).powi(2) / eb;
    }
    let dof = columns.saturating_sub(1);
    let p_value = if dof == 0 {
        1.0
    } else {
        ChiSquared::new(dof as f64)
            .map_err(|e| ValidationError::new(format!("chi-square distribution: {e}")))?
            .sf(statistic)
            .clamp(0.0, 1.0)
    };
    Ok(ChiSquareTest {
        statistic,
        dof,
        p_value,
    })
}

/// When a feature counts as drifted (`[monitor.drift]`-style settings).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DriftThresholds {
    /// PSI at or above which a feature may have drifted (default 0.2).
    pub psi: f64,
    /// Significance level the two-sample test must also reach (default 0.05).
    pub alpha: f64,
}

impl Default for DriftThresholds {
    fn default() -> Self {
        Self {
            psi: DEFAULT_PSI_THRESHOLD,
            alpha: DEFAULT_ALPHA,
        }
    }
}

impl DriftThresholds {
    /// Checks that `psi` is positive and finite and `alpha` in (0, 1).
    pub fn validate(&self) -> Result<(), ValidationError> {
        if !(self.psi > 0.0 && self.psi.is_finite()) {
            return crate::invalid!("the PSI threshold must be positive, got {}", self.psi);
        }
        if !(self.alpha > 0.0 && self.alpha < 1.0) {
            return crate::invalid!("alpha must be in (0, 1), got {}", self.alpha);
        }
        Ok(())
    }

    /// Whether a PSI and a p-value mean drift: psi ≥ the threshold and p < alpha.
    pub fn drifted(&self, psi: f64, p_value: f64) -> bool {
        psi >= self.psi && p_value < self.alpha
    }
}

/// A summary of one side of a feature.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Summary {
    /// Count, mean, p50 and p90.
    Numeric(NumericSummary),
    /// Count and the category shares.
    Categorical(CategoricalSummary),
}

/// Which two-sample test gave a report's p-value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftTest {
    /// Two-sample Kolmogorov–Smirnov on reservoir samples.
    Ks,
    /// Chi-square test of homogeneity on category counts.
    ChiSquare,
}

/// The drift of one feature, ready to serialize (e.g. into a metrics or admin endpoint).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DriftReport {
    /// The feature.
    pub name: String,
    /// The reference side.
    pub reference: Summary,
    /// The live side.
    pub live: Summary,
    /// Population Stability Index of live against reference.
    pub psi: f64,
    /// The test behind `statistic` and `p_value`.
    pub test: DriftTest,
    /// The test's statistic (KS D, or χ²).
    pub statistic: f64,
    /// The test's p-value.
    pub p_value: f64,
    /// The PSI threshold applied.
    pub threshold: f64,
    /// The significance level applied.
    pub alpha: f64,
    /// psi ≥ threshold and p_value < alpha.
    pub drifted: bool,
}

/// Settings of a [`NumericDriftMonitor`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NumericMonitorParams {
    /// Equal-mass bins cut from the reference's quantiles (default 10: deciles).
    pub bins: usize,
    /// Reservoir size of each side, for quantiles and the KS test (default 4096).
    pub sample: usize,
    /// Seed of the reservoirs.
    pub seed: u64,
}

impl Default for NumericMonitorParams {
    fn default() -> Self {
        Self {
            bins: 10,
            sample: 4096,
            seed: 0x5eed,
        }
    }
}

/// Drift of a numeric feature: a fixed reference, and a live histogram (for PSI) and
/// reservoir (for quantiles and KS) fed one value at a time. Memory: bins + 2 × sample.
#[derive(Debug, Clone)]
pub struct NumericDriftMonitor {
    name: String,
    reference: NumericHistogram,
    reference_summary: NumericSummary,
    reference_sample: Vec<f64>,
    live: NumericHistogram,
    live_sample: Reservoir,
}

impl NumericDriftMonitor {
    /// A monitor whose bins are the reference's quantiles (`params.bins`).
    pub fn new(
        name: impl Into<String>,
        reference: &[f64],
        params: &NumericMonitorParams,
    ) -> Result<Self, ValidationError> {
        let edges = BinEdges::from_quantiles(reference, params.bins)?;
        Self::with_edges(name, reference, edges, params)
    }

    /// A monitor over given bins (`params.bins` unused).
    pub fn with_edges(
        name: impl Into<String>,
        reference: &[f64],
        edges: BinEdges,
        params: &NumericMonitorParams,
    ) -> Result<Self, ValidationError> {
        let Some(reference_summary) = NumericSummary::from_values(reference) else {
            return crate::invalid!("a drift reference needs at least one finite value");
        };
        // The reference sample uses a different stream of choices than the live one.
        let mut sample = Reservoir::new(params.sample, params.seed ^ 0x9e37_79b9_7f4a_7c15)?;
        for &x in reference {
            sample.offer(x);
        }
        Ok(Self {
            name: name.into(),
            reference: NumericHistogram::from_values(edges.clone(), reference),
            reference_summary,
            reference_sample: sample.sorted(),
            live: NumericHistogram::new(edges),
            live_sample: Reservoir::new(params.sample, params.seed)?,
        })
    }

    /// Feeds one live value (a non-finite one is counted as missing).
    pub fn observe(&mut self, x: f64) {
        self.live.add(x);
        self.live_sample.offer(x);
    }

    /// Forgets the live side (e.g. at the start of each reporting period).
    pub fn reset_live(&mut self) {
        self.live.clear();
        self.live_sample.clear();
    }

    /// The feature's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The reference histogram.
    pub fn reference(&self) -> &NumericHistogram {
        &self.reference
    }

    /// The live histogram.
    pub fn live(&self) -> &NumericHistogram {
        &self.live
    }

    /// The live side so far against the reference; `None` before any finite live value.
    pub fn report(&self, thresholds: &DriftThresholds) -> Option<DriftReport> {
        let live = self.live_sample.summary()?;
        let psi = psi_numeric(&self.reference, &self.live).ok()?;
        let ks = ks_sorted(&self.reference_sample, &self.live_sample.sorted()).ok()?;
        Some(DriftReport {
            name: self.name.clone(),
            reference: Summary::Numeric(self.reference_summary),
            live: Summary::Numeric(live),
            psi,
            test: DriftTest::Ks,
            statistic: ks.statistic,
            p_value: ks.p_value,
            threshold: thresholds.psi,
            alpha: thresholds.alpha,
            drifted: thresholds.drifted(psi, ks.p_value),
        })
    }
}

/// Drift of a categorical feature over the reference's top categories + "other".
/// Memory: the categories.
#[derive(Debug, Clone)]
pub struct CategoricalDriftMonitor {
    name: String,
    reference: CategoricalCounts,
    live: CategoricalCounts,
}

impl CategoricalDriftMonitor {
    /// A monitor against reference counts (the live side gets the same categories).
    pub fn new(name: impl Into<String>, reference: CategoricalCounts) -> Self {
        let live = reference.empty_like();
        Self {
            name: name.into(),
            reference,
            live,
        }
    }

    /// A monitor against a reference sample, keeping its `max_categories` most frequent values.
    pub fn from_values<S: AsRef<str>>(
        name: impl Into<String>,
        reference: impl IntoIterator<Item = S>,
        max_categories: usize,
    ) -> Result<Self, ValidationError> {
        Ok(Self::new(
            name,
            CategoricalCounts::from_values(reference, max_categories)?,
        ))
    }

    /// Feeds one live value.
    pub fn observe(&mut self, category: &str) {
        self.live.add(category);
    }

    /// Forgets the live side.
    pub fn reset_live(&mut self) {
        self.live.clear();
    }

    /// The feature's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The reference counts.
    pub fn reference(&self) -> &CategoricalCounts {
        &self.reference
    }

    /// The live counts.
    pub fn live(&self) -> &CategoricalCounts {
        &self.live
    }

    /// The live side so far against the reference; `None` before any live value (or for an
    /// empty reference).
    pub fn report(&self, thresholds: &DriftThresholds) -> Option<DriftReport> {
        let reference = self.reference.summary()?;
        let live = self.live.summary()?;
        let psi = psi_categorical(&self.reference, &self.live).ok()?;
        let chi = chi_square_homogeneity(self.reference.counts(), self.live.counts()).ok()?;
        Some(DriftReport {
            name: self.name.clone(),
            reference: Summary::Categorical(reference),
            live: Summary::Categorical(live),
            psi,
            test: DriftTest::ChiSquare,
            statistic: chi.statistic,
            p_value: chi.p_value,
            threshold: thresholds.psi,
            alpha: thresholds.alpha,
            drifted: thresholds.drifted(psi, chi.p_value),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::SplitMix64;

    fn rel(a: f64, b: f64) -> f64 {
        (a - b).abs() / b.abs()
    }

    #[test]
    fn psi_by_hand() {
        // e = [0.5, 0.5], a = [0.25, 0.75]:
        // (0.25 − 0.5)·ln(0.25/0.5) + (0.75 − 0.5)·ln(0.75/0.5)
        //   = 0.25·ln 2 + (−0.25)·ln(2/3) = 0.25·ln 3 = 0.274653072167…
        // (numpy gives 0.2746530721670274, scripts/monitor-reference.py)
        let p = psi(&[0.5, 0.5], &[0.25, 0.75]).unwrap();
        assert!((p - 0.25 * 3f64.ln()).abs() < 1e-15);
        assert!((p - 0.274_653_072_167_027_4).abs() < 1e-15);
        // symmetric, and 0 for equal distributions
        assert!((psi(&[0.25, 0.75], &[0.5, 0.5]).unwrap() - p).abs() < 1e-15);
        assert_eq!(psi(&[0.2, 0.8], &[0.2, 0.8]).unwrap(), 0.0);
        // an empty bin is floored at ε = 1e-4:
        // (0.5 − 1)·ln(0.5/1) + (0.5 − 1e-4)·ln(0.5/1e-4) = 0.5·ln 2 + 0.4999·ln 5000
        let p = psi(&[1.0, 0.0], &[0.5, 0.5]).unwrap();
        assert!((p - (0.5 * 2f64.ln() + 0.4999 * 5000f64.ln())).abs() < 1e-12);
        // counts: [50, 50] vs [25, 75] are the shares above
        assert!((psi_counts(&[50, 50], &[25, 75]).unwrap() - 0.25 * 3f64.ln()).abs() < 1e-15);
        assert!(psi(&[0.5], &[0.5, 0.5]).is_err());
        assert!(psi(&[f64::NAN], &[1.0]).is_err());
        assert!(psi_counts(&[0, 0], &[1, 1]).is_err());
    }

    /// The deterministic samples of `ks_case` in scripts/monitor-reference.py.
    fn ks_case(name: &str) -> (Vec<f64>, Vec<f64>) {
        match name {
            "small_ties" => (
                vec![1.0, 2.0, 2.0, 3.0, 4.0, 5.0, 5.0, 6.0],
                vec![2.0, 3.0, 3.0, 4.0, 7.0, 8.0, 9.0],
            ),
            "uniform_shifted" => (
                (0..300u64)
                    .map(|i| ((i * 7919) % 1000) as f64 / 1000.0)
                    .collect(),
                (0..200u64)
                    .map(|j| ((j * 6007) % 997) as f64 / 997.0 * 0.9 + 0.15)
                    .collect(),
            ),
            "large_close" => (
                (0..2000u64)
                    .map(|i| ((i * 7919) % 10007) as f64 / 10007.0)
                    .collect(),
                (0..1500u64)
                    .map(|j| (((j * 4001) % 9973) as f64 / 9973.0).powf(1.15))
                    .collect(),
            ),
            _ => unreachable!(),
        }
    }

    #[test]
    fn ks_matches_scipy() {
        // (case, scipy ks_2samp statistic, ks_2samp(method="asymp") p-value,
        //  kstwobign.sf((√nₑ + 0.12 + 0.11/√nₑ)·d)), printed by scripts/monitor-reference.py
        // with scipy 1.17.1.
        let cases = [
            (
                "small_ties",
                0.428_571_428_571_428_6,
                0.350_895_460_224_906_14,
                0.387_360_240_005_408_25,
            ),
            (
                "uniform_shifted",
                0.153_333_333_333_333_32,
                0.006_271_946_384_819_702,
                0.006_193_318_549_084_721,
            ),
            (
                "large_close",
                0.055_333_333_333_333_345,
                0.010_113_612_526_892_326,
                0.010_051_002_837_282_011,
            ),
        ];
        for (name, d, p_scipy, p_stephens) in cases {
            let (a, b) = ks_case(name);
            let t = ks_two_sample(&a, &b).unwrap();
            assert!(
                (t.statistic - d).abs() < 1e-12,
                "{name}: D {} vs {d}",
                t.statistic
            );
            assert!(
                rel(t.p_value, p_stephens) < 1e-9,
                "{name}: p {} vs {p_stephens}",
                t.p_value
            );
            // scipy's asymp evaluates the exact finite-n distribution at round(nₑ); the
            // corrected limit is within 2 % of it from nₑ ≈ 120 on, and 10 % at nₑ ≈ 3.7.
            let tol = if name == "small_ties" { 0.11 } else { 0.02 };
            assert!(
                rel(t.p_value, p_scipy) < tol,
                "{name}: p {} vs scipy {p_scipy}",
                t.p_value
            );
            // the test is symmetric in its samples
            assert_eq!(ks_two_sample(&b, &a).unwrap().statistic, t.statistic);
        }
        assert!(ks_two_sample(&[], &[1.0]).is_err());
        assert!(ks_two_sample(&[f64::NAN], &[1.0]).is_err());
        // identical samples: D = 0, p = 1
        let t = ks_two_sample(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]).unwrap();
        assert_eq!((t.statistic, t.p_value), (0.0, 1.0));
    }

    #[test]
    fn kolmogorov_sf_matches_scipy() {
        // scipy.special.kolmogorov, printed by scripts/monitor-reference.py
        let points = [
            (0.3, 0.999_990_694_198_665_5),
            (0.5, 0.963_945_243_664_875_1),
            (0.8, 0.544_142_411_574_198_1),
            (1.0, 0.269_999_671_677_354_56),
            (1.2, 0.112_249_666_670_724_97),
            (1.36, 0.049_485_876_755_377_876),
            (2.0, 0.000_670_925_255_779_695_3),
            (3.0, 3.045_995_948_942_526e-8),
        ];
        for (lambda, q) in points {
            let got = kolmogorov_sf(lambda);
            assert!(rel(got, q) < 1e-10, "Q({lambda}) = {got}, scipy {q}");
        }
        assert_eq!(kolmogorov_sf(0.0), 1.0);
        assert_eq!(kolmogorov_sf(f64::NAN), 1.0);
        assert_eq!(kolmogorov_sf(40.0), 0.0);
    }

    #[test]
    fn binned_ks_is_taken_at_the_edges() {
        // reference [10, 10, 10, 10], live [0, 10, 10, 20] (shares): cumulative
        // 0.25/0, 0.5/0.25, 0.75/0.5, 1/1 → D = 0.25
        let e = BinEdges::fixed(vec![1.0, 2.0, 3.0]).unwrap();
        let r = NumericHistogram::from_values(e.clone(), &[0.5, 1.5, 2.5, 3.5]);
        let l = NumericHistogram::from_values(e, &[1.5, 2.5, 3.5, 3.6]);
        let t = ks_binned(&r, &l).unwrap();
        assert_eq!(t.statistic, 0.25);
        assert_eq!((t.n_a, t.n_b), (4, 4));
        assert_eq!(t.p_value, ks_p_value(0.25, 4, 4));
        let other = NumericHistogram::new(BinEdges::fixed(vec![0.0]).unwrap());
        assert!(ks_binned(&r, &other).is_err());
    }

    #[test]
    fn chi_square_matches_scipy() {
        // scipy.stats.chi2_contingency([[120, 80, 40, 10], [90, 95, 50, 25]],
        // correction=False) = (12.920000000000002, p 0.004812843059593781, dof 3),
        // scripts/monitor-reference.py; the all-zero fifth column is left out here.
        let t = chi_square_homogeneity(&[120, 80, 40, 10, 0], &[90, 95, 50, 25, 0]).unwrap();
        assert!((t.statistic - 12.920_000_000_000_002).abs() < 1e-10);
        assert_eq!(t.dof, 3);
        assert!(
            rel(t.p_value, 0.004_812_843_059_593_781) < 1e-9,
            "{}",
            t.p_value
        );
        // by hand, 2 × 2: [10, 10] vs [20, 0]: E = [15, 5] / [15, 5]
        // χ² = 25/15 + 25/5 + 25/15 + 25/5 = 13.333…
        let t = chi_square_homogeneity(&[10, 10], &[20, 0]).unwrap();
        assert!((t.statistic - 40.0 / 3.0).abs() < 1e-12);
        assert_eq!(t.dof, 1);
        // one category seen: nothing to test
        let t = chi_square_homogeneity(&[5, 0], &[7, 0]).unwrap();
        assert_eq!((t.statistic, t.dof, t.p_value), (0.0, 0, 1.0));
        assert!(chi_square_homogeneity(&[1], &[1, 2]).is_err());
        assert!(chi_square_homogeneity(&[0, 0], &[1, 2]).is_err());
    }

    fn normals(seed: u64, n: usize, mean: f64) -> Vec<f64> {
        let mut r = SplitMix64::new(seed);
        (0..n).map(|_| mean + r.normal()).collect()
    }

    #[test]
    fn a_shifted_numeric_stream_drifts_and_an_unshifted_one_does_not() {
        // Reference N(0, 1), decile bins. Live: 5 000 values of N(0.5, 1) (PSI ≈ 0.25, KS
        // rejects), and 5 000 of N(0, 1) (PSI ≈ 9·(1/5000 + 1/5000) ≈ 0.004 from noise).
        // Seeded: deterministic, but another seed could land an unshifted p below 0.05.
        let t = DriftThresholds::default();
        let reference = normals(1, 5_000, 0.0);
        let params = NumericMonitorParams::default();
        let mut m = NumericDriftMonitor::new("price", &reference, &params).unwrap();
        assert_eq!(m.report(&t), None);

        for x in normals(2, 5_000, 0.5) {
            m.observe(x);
        }
        let shifted = m.report(&t).unwrap();
        assert!(shifted.psi > 0.2 && shifted.psi < 0.35, "{shifted:?}");
        assert!(shifted.p_value < 1e-6, "{shifted:?}");
        assert!(shifted.drifted);
        let Summary::Numeric(live) = shifted.live else {
            panic!("numeric summary expected")
        };
        assert_eq!(live.count, 5_000);
        assert!((live.mean - 0.5).abs() < 0.05 && (live.p50 - 0.5).abs() < 0.1);

        m.reset_live();
        for x in normals(3, 5_000, 0.0) {
            m.observe(x);
        }
        let same = m.report(&t).unwrap();
        assert!(same.psi < 0.02, "{same:?}");
        assert!(same.p_value > 0.05, "{same:?}");
        assert!(!same.drifted);
        assert_eq!(same.test, DriftTest::Ks);
        // the binned test agrees
        assert!(ks_binned(m.reference(), m.live()).unwrap().p_value > 0.05);
    }

    fn categories(seed: u64, n: usize, mix: &[(&'static str, f64)]) -> Vec<&'static str> {
        let mut r = SplitMix64::new(seed);
        (0..n)
            .map(|_| {
                let mut u = r.next_f64();
                for &(c, p) in mix {
                    if u < p {
                        return c;
                    }
                    u -= p;
                }
                mix[mix.len() - 1].0
            })
            .collect()
    }

    #[test]
    fn a_changed_category_mix_drifts_and_an_unchanged_one_does_not() {
        // Reference mix 50/30/15/5 %; changed mix 25/30/25/20 % has PSI
        // −0.25·ln 0.5 + 0 + 0.10·ln(25/15) + 0.15·ln 4 = 0.173 + 0.051 + 0.208 = 0.432.
        let base = [
            ("drama", 0.5),
            ("comedy", 0.3),
            ("action", 0.15),
            ("horror", 0.05),
        ];
        let changed = [
            ("drama", 0.25),
            ("comedy", 0.3),
            ("action", 0.25),
            ("horror", 0.2),
        ];
        let t = DriftThresholds::default();
        let mut m =
            CategoricalDriftMonitor::from_values("genre", categories(1, 5_000, &base), 3).unwrap();
        assert_eq!(m.reference().categories(), &["drama", "comedy", "action"]);
        for c in categories(2, 5_000, &changed) {
            m.observe(c);
        }
        let r = m.report(&t).unwrap();
        assert!((r.psi - 0.432).abs() < 0.05, "{r:?}");
        assert!(r.p_value < 1e-6 && r.drifted, "{r:?}");

        m.reset_live();
        for c in categories(3, 5_000, &base) {
            m.observe(c);
        }
        let r = m.report(&t).unwrap();
        assert!(r.psi < 0.01 && r.p_value > 0.05 && !r.drifted, "{r:?}");
        assert_eq!(r.test, DriftTest::ChiSquare);
        let Summary::Categorical(live) = &r.live else {
            panic!("categorical summary expected")
        };
        assert_eq!(live.shares.len(), 3);
        assert!((live.other_share - 0.05).abs() < 0.01);
    }

    #[test]
    fn reports_serialize() {
        let mut m = CategoricalDriftMonitor::from_values("genre", ["a", "a", "b"], 1).unwrap();
        m.observe("b");
        let r = m.report(&DriftThresholds::default()).unwrap();
        let j = serde_json::to_value(&r).unwrap();
        assert_eq!(j["name"], "genre");
        assert_eq!(j["test"], "chi_square");
        assert_eq!(j["reference"]["kind"], "categorical");
        assert_eq!(j["reference"]["shares"][0]["category"], "a");
        assert_eq!(j["live"]["other_share"], 1.0);
        assert_eq!(j["threshold"], 0.2);

        let mut n =
            NumericDriftMonitor::new("x", &[1.0, 2.0, 3.0], &NumericMonitorParams::default())
                .unwrap();
        n.observe(2.0);
        let j = serde_json::to_value(n.report(&DriftThresholds::default()).unwrap()).unwrap();
        assert_eq!(j["reference"]["kind"], "numeric");
        assert_eq!(j["reference"]["p50"], 2.0);
        assert_eq!(j["live"]["count"], 1);
        assert!(NumericDriftMonitor::new("x", &[], &NumericMonitorParams::default()).is_err());
        assert!(DriftThresholds::default().validate().is_ok());
        assert!(
            DriftThresholds {
                psi: 0.0,
                alpha: 0.05
            }
            .validate()
            .is_err()
        );
        assert!(
            DriftThresholds {
                psi: 0.2,
                alpha: 1.0
            }
            .validate()
            .is_err()
        );
    }
}
