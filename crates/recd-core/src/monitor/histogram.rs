//! Distributions of one feature with a fixed memory bound: a fixed-bin numeric histogram,
//! and a categorical distribution over at most N named categories plus "other".
//!
//! Drift is measured between a *reference* distribution and a *live* one, which must share
//! their bins: the bins come from the reference (its quantiles, or fixed edges) and the live
//! side is created empty with the same bins ([`NumericHistogram::new`] with the reference's
//! [`BinEdges`], [`CategoricalCounts::empty_like`]). The end bins of a numeric histogram are
//! open, so live values outside the reference's range still land in a bin, and a live
//! category the reference never had lands in "other": both show up as drift instead of
//! being lost.

use std::collections::HashMap;

use serde::Serialize;

use super::sample::quantile_sorted;
use crate::error::ValidationError;

/// The most bins a numeric histogram may have.
pub const MAX_BINS: usize = 1000;
/// The most named categories a categorical distribution may keep (besides "other").
pub const MAX_CATEGORIES: usize = 10_000;

/// The bins of a numeric histogram, as B − 1 strictly increasing finite cut points
/// c₀ < c₁ < … which make B bins (−∞, c₀), [c₀, c₁), …, [c_{B−2}, +∞).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BinEdges {
    cuts: Vec<f64>,
}

impl BinEdges {
    /// Bins from explicit cut points (strictly increasing, finite, at most [`MAX_BINS`] − 1;
    /// none makes one bin).
    pub fn fixed(cuts: Vec<f64>) -> Result<Self, ValidationError> {
        if cuts.len() >= MAX_BINS {
            return crate::invalid!("at most {} bin cuts, got {}", MAX_BINS - 1, cuts.len());
        }
        if let Some(c) = cuts.iter().find(|c| !c.is_finite()) {
            return crate::invalid!("bin cuts must be finite, got {c}");
        }
        if cuts.windows(2).any(|w| w[0] >= w[1]) {
            return crate::invalid!("bin cuts must be strictly increasing: {cuts:?}");
        }
        Ok(Self { cuts })
    }

    /// Up to `bins` equal-mass bins of the reference values: cuts at their i/bins quantiles
    /// (i = 1 … bins − 1, linear interpolation as numpy). Equal quantiles (a value repeated
    /// over more than one bin's mass) make one cut, so a discrete feature gets fewer bins.
    /// Non-finite values are ignored; at least one finite value is needed.
    pub fn from_quantiles(values: &[f64], bins: usize) -> Result<Self, ValidationError> {
        if bins == 0 || bins > MAX_BINS {
            return crate::invalid!("bins must be in 1..={MAX_BINS}, got {bins}");
        }
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return crate::invalid!("bin edges from quantiles need at least one finite value");
        }
        v.sort_by(f64::total_cmp);
        let mut cuts: Vec<f64> = (1..bins)
            .filter_map(|i| quantile_sorted(&v, i as f64 / bins as f64))
            .collect();
        cuts.dedup();
        Ok(Self { cuts })
    }

    /// The number of bins (cuts + 1).
    pub fn bins(&self) -> usize {
        self.cuts.len() + 1
    }

    /// The cut points.
    pub fn cuts(&self) -> &[f64] {
        &self.cuts
    }

    /// The bin of a value (a finite one, or ±∞ in the end bins; NaN lands in the last bin,
    /// callers count it as missing instead).
    pub fn bin_of(&self, x: f64) -> usize {
        self.cuts.partition_point(|&c| c <= x)
    }
}

/// Counts of a numeric feature in fixed bins, plus the count of missing (non-finite) values.
#[derive(Debug, Clone, PartialEq)]
pub struct NumericHistogram {
    edges: BinEdges,
    counts: Vec<u64>,
    missing: u64,
}

impl NumericHistogram {
    /// An empty histogram over `edges`.
    pub fn new(edges: BinEdges) -> Self {
        let counts = vec![0; edges.bins()];
        Self {
            edges,
            counts,
            missing: 0,
        }
    }

    /// The histogram of a slice of values over `edges`.
    pub fn from_values(edges: BinEdges, values: &[f64]) -> Self {
        let mut h = Self::new(edges);
        for &x in values {
            h.add(x);
        }
        h
    }

    /// Counts one value (a non-finite one as missing).
    pub fn add(&mut self, x: f64) {
        if !x.is_finite() {
            self.missing = self.missing.saturating_add(1);
            return;
        }
        let bin = self.edges.bin_of(x);
        if let Some(c) = self.counts.get_mut(bin) {
            *c = c.saturating_add(1);
        }
    }

    /// Adds another histogram's counts; both must have the same edges.
    pub fn merge(&mut self, other: &Self) -> Result<(), ValidationError> {
        if self.edges != other.edges {
            return crate::invalid!("cannot merge histograms with different bin edges");
        }
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a = a.saturating_add(*b);
        }
        self.missing = self.missing.saturating_add(other.missing);
        Ok(())
    }

    /// The bins.
    pub fn edges(&self) -> &BinEdges {
        &self.edges
    }

    /// The count of each bin.
    pub fn counts(&self) -> &[u64] {
        &self.counts
    }

    /// Values counted in bins (missing ones excluded).
    pub fn total(&self) -> u64 {
        self.counts.iter().fold(0u64, |a, &c| a.saturating_add(c))
    }

    /// Non-finite values seen.
    pub fn missing(&self) -> u64 {
        self.missing
    }

    /// Each bin's share of the total; `None` when empty.
    pub fn proportions(&self) -> Option<Vec<f64>> {
        proportions(&self.counts)
    }

    /// Zeroes the counts, keeping the edges.
    pub fn clear(&mut self) {
        self.counts.fill(0);
        self.missing = 0;
    }
}

/// Counts of a categorical feature over a fixed list of at most [`MAX_CATEGORIES`] named
/// categories, everything else counted as "other".
#[derive(Debug, Clone, PartialEq)]
pub struct CategoricalCounts {
    categories: Vec<String>,
    index: HashMap<String, usize>,
    /// One per category, then "other".
    counts: Vec<u64>,
}

impl CategoricalCounts {
    /// Empty counts over the given (distinct) categories.
    pub fn with_categories(categories: Vec<String>) -> Result<Self, ValidationError> {
        if categories.len() > MAX_CATEGORIES {
            return crate::invalid!(
                "at most {MAX_CATEGORIES} categories, got {}",
                categories.len()
            );
        }
        let mut index = HashMap::with_capacity(categories.len());
        for (i, c) in categories.iter().enumerate() {
            if index.insert(c.clone(), i).is_some() {
                return crate::invalid!("category {c:?} is listed twice");
            }
        }
        let counts = vec![0; categories.len() + 1];
        Ok(Self {
            categories,
            index,
            counts,
        })
    }

    /// The distribution of a reference sample, keeping its `max_categories` most frequent
    /// categories (ties broken by name, so the choice is deterministic) and counting the
    /// rest as "other". Memory while building is proportional to the sample's distinct values.
    pub fn from_values<S: AsRef<str>>(
        values: impl IntoIterator<Item = S>,
        max_categories: usize,
    ) -> Result<Self, ValidationError> {
        if max_categories == 0 || max_categories > MAX_CATEGORIES {
            return crate::invalid!(
                "max_categories must be in 1..={MAX_CATEGORIES}, got {max_categories}"
            );
        }
        let mut all: HashMap<String, u64> = HashMap::new();
        for v in values {
            let v = v.as_ref();
            match all.get_mut(v) {
                Some(c) => *c += 1,
                None => {
                    all.insert(v.to_string(), 1);
                }
            }
        }
        let mut ranked: Vec<(String, u64)> = all.into_iter().collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let other: u64 = ranked.iter().skip(max_categories).map(|(_, c)| c).sum();
        ranked.truncate(max_categories);
        let mut out = Self::with_categories(ranked.iter().map(|(n, _)| n.clone()).collect())?;
        for (slot, (_, c)) in out.counts.iter_mut().zip(&ranked) {
            *slot = *c;
        }
        if let Some(o) = out.counts.last_mut() {
            *o = other;
        }
        Ok(out)
    }

    /// Empty counts over the same categories (the live side of a reference).
    pub fn empty_like(&self) -> Self {
        Self {
            categories: self.categories.clone(),
            index: self.index.clone(),
            counts: vec![0; self.counts.len()],
        }
    }

    /// Counts one value: its category, or "other".
    pub fn add(&mut self, category: &str) {
        let i = self
            .index
            .get(category)
            .copied()
            .unwrap_or(self.categories.len());
        if let Some(c) = self.counts.get_mut(i) {
            *c = c.saturating_add(1);
        }
    }

    /// Adds another distribution's counts; both must have the same categories in the same order.
    pub fn merge(&mut self, other: &Self) -> Result<(), ValidationError> {
        if self.categories != other.categories {
            return crate::invalid!("cannot merge distributions over different categories");
        }
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a = a.saturating_add(*b);
        }
        Ok(())
    }

    /// The named categories.
    pub fn categories(&self) -> &[String] {
        &self.categories
    }

    /// One count per named category, then the count of "other".
    pub fn counts(&self) -> &[u64] {
        &self.counts
    }

    /// The count of values outside the named categories.
    pub fn other(&self) -> u64 {
        self.counts.last().copied().unwrap_or(0)
    }

    /// All values counted.
    pub fn total(&self) -> u64 {
        self.counts.iter().fold(0u64, |a, &c| a.saturating_add(c))
    }

    /// Shares in the order of [`counts`](Self::counts); `None` when empty.
    pub fn proportions(&self) -> Option<Vec<f64>> {
        proportions(&self.counts)
    }

    /// Count and category shares; `None` when empty.
    pub fn summary(&self) -> Option<CategoricalSummary> {
        let p = self.proportions()?;
        Some(CategoricalSummary {
            count: self.total(),
            shares: self
                .categories
                .iter()
                .zip(&p)
                .map(|(c, &share)| CategoryShare {
                    category: c.clone(),
                    share,
                })
                .collect(),
            other_share: p.last().copied().unwrap_or(0.0),
        })
    }

    /// Zeroes the counts, keeping the categories.
    pub fn clear(&mut self) {
        self.counts.fill(0);
    }
}

/// How a categorical feature is summarized in a drift report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CategoricalSummary {
    /// Values counted.
    pub count: u64,
    /// The share of each named category, in the reference's order (most frequent first).
    pub shares: Vec<CategoryShare>,
    /// The share of every other value.
    pub other_share: f64,
}

/// One category's share.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CategoryShare {
    /// The category.
    pub category: String,
    /// Its share of the values, in [0, 1].
    pub share: f64,
}

/// Counts as shares of their total; `None` for a zero total.
pub(crate) fn proportions(counts: &[u64]) -> Option<Vec<f64>> {
    let total = counts.iter().map(|&c| c as f64).sum::<f64>();
    (total > 0.0).then(|| counts.iter().map(|&c| c as f64 / total).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_are_left_closed_with_open_ends() {
        let e = BinEdges::fixed(vec![0.0, 1.0]).unwrap();
        assert_eq!(e.bins(), 3);
        assert_eq!(
            [-5.0, -0.0, 0.0, 0.5, 1.0, 7.0].map(|x| e.bin_of(x)),
            [0, 1, 1, 1, 2, 2]
        );
        assert!(BinEdges::fixed(vec![1.0, 1.0]).is_err());
        assert!(BinEdges::fixed(vec![0.0, f64::NAN]).is_err());
        assert_eq!(BinEdges::fixed(vec![]).unwrap().bins(), 1);
    }

    #[test]
    fn quantile_edges_make_equal_mass_bins_and_merge_ties() {
        // 1..=100 in 4 bins: cuts at the 25/50/75 % quantiles = 25.75, 50.5, 75.25
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        let e = BinEdges::from_quantiles(&v, 4).unwrap();
        assert_eq!(e.cuts(), &[25.75, 50.5, 75.25]);
        let h = NumericHistogram::from_values(e, &v);
        assert_eq!(h.counts(), &[25, 25, 25, 25]);
        // a feature that is 0 for 85 % of 100 values: the 1/5 … 4/5 quantiles are all 0
        // (the 4/5 one is at h = 99·0.8 = 79.2, between two zeros)
        let mut d = vec![0.0; 85];
        d.extend((1..=15).map(f64::from));
        let e = BinEdges::from_quantiles(&d, 5).unwrap();
        assert_eq!(e.cuts(), &[0.0]);
        assert!(BinEdges::from_quantiles(&[f64::NAN], 5).is_err());
        assert!(BinEdges::from_quantiles(&v, 0).is_err());
    }

    #[test]
    fn histogram_counts_missing_and_merges() {
        let e = BinEdges::fixed(vec![0.0]).unwrap();
        let mut a = NumericHistogram::from_values(e.clone(), &[-1.0, 1.0, 2.0, f64::NAN]);
        assert_eq!((a.counts(), a.total(), a.missing()), (&[1, 2][..], 3, 1));
        let b = NumericHistogram::from_values(e, &[-3.0]);
        a.merge(&b).unwrap();
        assert_eq!(a.counts(), &[2, 2]);
        assert_eq!(a.proportions().unwrap(), vec![0.5, 0.5]);
        let other = NumericHistogram::new(BinEdges::fixed(vec![1.0]).unwrap());
        assert!(a.merge(&other).is_err());
        a.clear();
        assert_eq!(a.proportions(), None);
    }

    #[test]
    fn categorical_keeps_top_n_and_other() {
        let v = ["a", "b", "a", "c", "b", "a", "d"];
        let c = CategoricalCounts::from_values(v, 2).unwrap();
        assert_eq!(c.categories(), &["a", "b"]);
        assert_eq!(c.counts(), &[3, 2, 2]);
        // ties broken by name: c and d both once, c kept
        let c3 = CategoricalCounts::from_values(v, 3).unwrap();
        assert_eq!(c3.categories(), &["a", "b", "c"]);
        let mut live = c.empty_like();
        for x in ["a", "zzz", "zzz", "b"] {
            live.add(x);
        }
        assert_eq!(live.counts(), &[1, 1, 2]);
        let s = live.summary().unwrap();
        assert_eq!(s.count, 4);
        assert_eq!(s.shares[0].share, 0.25);
        assert_eq!(s.other_share, 0.5);
        live.merge(&c).unwrap();
        assert_eq!(live.counts(), &[4, 3, 4]);
        assert!(live.merge(&c3).is_err());
        assert!(CategoricalCounts::with_categories(vec!["x".into(), "x".into()]).is_err());
        assert!(CategoricalCounts::from_values(v, 0).is_err());
    }
}
