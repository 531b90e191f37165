//! The learned ranker's model: a logistic regression over the feature vector, the
//! retrieval signals and the position the item was shown at.
//!
//! Inputs, in order: every feature of the [`FeatureSet`] (count-like ones through
//! `ln(1 + x)`), then [`SIGNALS`]: the KNN similarity (a candidate KNN did not find gets
//! the lowest similarity of the list, as the fixed blend does), the relative popularity,
//! whether KNN found it, and `ln(1 + position)`. Each input is standardized with the
//! training rows' mean and deviation, so the weights are comparable and a contribution is
//! `weight × standardized value`.
//!
//! Position bias: training sees the position each logged item was shown at, so the
//! position's effect on clicks goes into its own weight instead of into the others'. At
//! serving the position is set to the constant 0 (the top), so it shifts every candidate
//! alike and never changes the order.

use serde::{Deserialize, Serialize};

use crate::error::ValidationError;
use crate::features::spec::FeatureSet;

/// The retrieval and position inputs that follow the features.
pub const SIGNALS: [&str; 4] = ["similarity", "popularity", "knn", "position"];

/// One input column: its name, whether it is logged, and its standardization.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Input {
    /// The feature's or signal's name.
    pub name: String,
    /// Whether `ln(1 + max(x, 0))` is taken first.
    pub log: bool,
    /// The training mean of the (transformed) value.
    pub mean: f64,
    /// The training standard deviation (1 when it was 0).
    pub scale: f64,
}

impl Input {
    /// The standardized value of raw `x`.
    pub fn standardize(&self, x: f64) -> f64 {
        let x = if self.log { ln_1p(x.max(0.0)) } else { x };
        let z = (x - self.mean) / self.scale;
        if z.is_finite() { z } else { 0.0 }
    }
}

/// Whole numbers below this have their `ln(1 + k)` in a table.
const LN_1P_TABLE: usize = 1024;

/// `ln(1 + x)`, read from a table for the small whole numbers that counts mostly are
/// (four `log1p` calls per candidate under the default features were a tenth of scoring a
/// list); the same bits as `x.ln_1p()`, since the table holds its results.
fn ln_1p(x: f64) -> f64 {
    static TABLE: std::sync::LazyLock<Box<[f64]>> =
        std::sync::LazyLock::new(|| (0..LN_1P_TABLE).map(|k| (k as f64).ln_1p()).collect());
    // Saturating (NaN → 0); the bit comparison keeps -0.0, fractions and the rest exact.
    let k = x as u32 as usize;
    match TABLE.get(k) {
        Some(&v) if (k as f64).to_bits() == x.to_bits() => v,
        _ => x.ln_1p(),
    }
}

/// The raw (untransformed) signals of one candidate.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct RankerInputs {
    /// Similarity to the query (the list's floor when KNN did not find it).
    pub similarity: f64,
    /// Popularity relative to the most popular candidate (0 when unknown).
    pub popularity: f64,
    /// Whether KNN found it.
    pub knn: bool,
    /// 0-based position it was shown at (0 at serving).
    pub position: f64,
}

impl RankerInputs {
    /// The signal values in [`SIGNALS`] order, position as `ln(1 + p)`.
    pub fn values(&self) -> [f64; 4] {
        [0, 1, 2, 3].map(|j| self.value(j))
    }

    /// Signal `j` of [`RankerInputs::values`] alone (0 past the last).
    pub fn value(&self, j: usize) -> f64 {
        match j {
            0 => self.similarity,
            1 => self.popularity,
            2 => f64::from(u8::from(self.knn)),
            3 => self.position.max(0.0).ln_1p(),
            _ => 0.0,
        }
    }
}

/// A trained ranker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinearRanker {
    /// The input columns: the features' names, then [`SIGNALS`].
    pub inputs: Vec<Input>,
    /// One weight per input.
    pub weights: Vec<f64>,
    /// The intercept.
    pub bias: f64,
}

impl LinearRanker {
    /// The input names for `set`: its features, then [`SIGNALS`].
    pub fn input_names(set: &FeatureSet) -> Vec<String> {
        set.names()
            .map(str::to_string)
            .chain(SIGNALS.iter().map(|s| s.to_string()))
            .collect()
    }

    /// Whether the raw row `features ++ signals` needs the log for column `i` of `set`.
    pub fn logged(set: &FeatureSet, i: usize) -> bool {
        set.defs.get(i).is_some_and(|d| d.is_count_like())
    }

    /// Checks that it was trained on `set`'s features (same names, same order).
    pub fn check(&self, set: &FeatureSet) -> Result<(), ValidationError> {
        let names = Self::input_names(set);
        let mine: Vec<&str> = self.inputs.iter().map(|i| i.name.as_str()).collect();
        if mine != names || self.weights.len() != self.inputs.len() {
            return crate::invalid!(
                "the ranker was trained on inputs {mine:?}, the configured features give {names:?}"
            );
        }
        Ok(())
    }

    /// The logit of raw `features` (the set's order) and `signals`.
    pub fn logit(&self, features: &[f64], signals: &RankerInputs) -> f64 {
        let sig = signals.values();
        let raw = features.iter().chain(sig.iter());
        self.bias
            + self
                .inputs
                .iter()
                .zip(&self.weights)
                .zip(raw)
                .map(|((inp, w), x)| w * inp.standardize(*x))
                .sum::<f64>()
    }

    /// The click probability.
    pub fn probability(&self, features: &[f64], signals: &RankerInputs) -> f64 {
        1.0 / (1.0 + (-self.logit(features, signals)).exp())
    }

    /// Each input's share of the logit (`weight × standardized value`) with its raw value,
    /// largest magnitude first.
    pub fn contributions(&self, features: &[f64], signals: &RankerInputs) -> Vec<Contribution> {
        let sig = signals.values();
        let raw: Vec<f64> = features
            .iter()
            .copied()
            .chain(sig.iter().copied())
            .collect();
        let mut out: Vec<Contribution> = self
            .inputs
            .iter()
            .zip(&self.weights)
            .zip(&raw)
            .map(|((inp, w), x)| Contribution {
                feature: inp.name.clone(),
                value: *x,
                contribution: w * inp.standardize(*x),
            })
            .collect();
        out.sort_by(|a, b| {
            b.contribution
                .abs()
                .partial_cmp(&a.contribution.abs())
                .unwrap_or(std::cmp::Ordering::Equal)
                .then_with(|| a.feature.cmp(&b.feature))
        });
        out
    }
}

/// A ranker made ready for one list: inputs whose weight is 0 dropped, and inputs whose
/// raw value is the same for every candidate (user-only features, the serving position)
/// folded into the intercept once, so a candidate costs only the inputs that can tell it
/// from the others. Its logits equal [`LinearRanker::logit`]'s up to the order of the sum.
#[derive(Debug, Clone)]
pub struct PreparedRanker<'r> {
    intercept: f64,
    /// (column of the raw row `features ++ signals`, weight, input) of the varying inputs.
    terms: Vec<(usize, f64, &'r Input)>,
    features: usize,
}

impl PreparedRanker<'_> {
    /// The logit of one candidate's raw `features` (the set's order) and `signals`.
    pub fn logit(&self, features: &[f64], signals: &RankerInputs) -> f64 {
        let mut z = self.intercept;
        // Only the signals a term reads (the serving position, constant, is folded in).
        for &(col, w, inp) in &self.terms {
            let x = if col < self.features {
                features.get(col).copied().unwrap_or(0.0)
            } else {
                signals.value(col - self.features)
            };
            z += w * inp.standardize(x);
        }
        z
    }

    /// The click probability.
    pub fn probability(&self, features: &[f64], signals: &RankerInputs) -> f64 {
        1.0 / (1.0 + (-self.logit(features, signals)).exp())
    }

    /// The click probabilities of a whole list ([`PreparedRanker::probability`] of each
    /// row of `features`, `d` values a row, with `signals[r]`), bit for bit.
    ///
    /// Computed a term at a time over every row, not a row at a time: the choices that
    /// depend on the term only (feature or signal, logged or not) are made once per term
    /// instead of once per term and candidate, and the loop over rows has no branch but
    /// the table's. Each row's logit still adds the same terms in the same order.
    pub fn probabilities(&self, features: &[f64], d: usize, signals: &[RankerInputs]) -> Vec<f64> {
        let mut z = vec![self.intercept; signals.len()];
        let rows = features.len().checked_div(d).unwrap_or(0);
        for &(col, w, inp) in &self.terms {
            let add = |z: &mut f64, x: f64| {
                let s = (x - inp.mean) / inp.scale;
                *z += w * if s.is_finite() { s } else { 0.0 };
            };
            // A row past the end of `features` reads as zeros, as `probability` of an
            // empty row does.
            let feature = |r: usize| {
                if r < rows {
                    features.get(r * d + col).copied().unwrap_or(0.0)
                } else {
                    0.0
                }
            };
            match (col < self.features, inp.log) {
                (true, true) => {
                    for (r, z) in z.iter_mut().enumerate() {
                        add(z, ln_1p(feature(r).max(0.0)));
                    }
                }
                (true, false) => {
                    for (r, z) in z.iter_mut().enumerate() {
                        add(z, feature(r));
                    }
                }
                (false, log) => {
                    let j = col - self.features;
                    for (s, z) in signals.iter().zip(z.iter_mut()) {
                        let x = s.value(j);
                        add(z, if log { ln_1p(x.max(0.0)) } else { x });
                    }
                }
            }
        }
        for z in &mut z {
            *z = 1.0 / (1.0 + (-*z).exp());
        }
        z
    }
}

impl LinearRanker {
    /// Prepares the ranker for a list whose feature rows are `features` (row-major, `d`
    /// values each) and whose candidates' signals are `signals`.
    pub fn prepare(
        &self,
        features: &[f64],
        d: usize,
        signals: &[RankerInputs],
    ) -> PreparedRanker<'_> {
        self.prepare_by(features, d, signals.len(), |r| &signals[r])
    }

    /// [`LinearRanker::prepare`] of `rows` candidates whose signals `signal(r)` gives
    /// (wherever the caller keeps them: no list of them is built).
    pub fn prepare_by<'s>(
        &self,
        features: &[f64],
        d: usize,
        rows: usize,
        signal: impl Fn(usize) -> &'s RankerInputs,
    ) -> PreparedRanker<'_> {
        let mut intercept = self.bias;
        let mut terms = Vec::with_capacity(self.inputs.len());
        for (col, (inp, &w)) in self.inputs.iter().zip(&self.weights).enumerate() {
            if w == 0.0 {
                continue;
            }
            let value = |r: usize| -> f64 {
                if col < d {
                    features.get(r * d + col).copied().unwrap_or(0.0)
                } else {
                    signal(r).value(col - d)
                }
            };
            // Constant over the list (bit for bit), or no list at all.
            let constant = rows == 0 || {
                let x0 = value(0).to_bits();
                (1..rows).all(|r| value(r).to_bits() == x0)
            };
            if constant {
                if rows > 0 {
                    intercept += w * inp.standardize(value(0));
                }
            } else {
                terms.push((col, w, inp));
            }
        }
        PreparedRanker {
            intercept,
            terms,
            features: d,
        }
    }
}

/// One input's share of a score (`explain`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Contribution {
    /// The feature or signal.
    pub feature: String,
    /// Its raw value.
    pub value: f64,
    /// Its term in the logit.
    pub contribution: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranker() -> LinearRanker {
        let inp = |name: &str, log: bool, mean: f64, scale: f64| Input {
            name: name.into(),
            log,
            mean,
            scale,
        };
        LinearRanker {
            inputs: vec![
                inp("clicks", true, 0.0, 1.0),
                inp("similarity", false, 0.5, 0.25),
                inp("popularity", false, 0.0, 1.0),
                inp("knn", false, 0.0, 1.0),
                inp("position", false, 1.0, 2.0),
            ],
            weights: vec![2.0, 1.0, 0.0, 0.5, -1.0],
            bias: -1.0,
        }
    }

    #[test]
    fn the_table_gives_ln_1p_bit_for_bit() {
        let mut xs: Vec<f64> = (0..3000).map(f64::from).collect();
        xs.extend([
            -0.0,
            -1.0,
            0.5,
            1.5,
            1023.0,
            1023.5,
            1024.0,
            4_294_967_296.0,
            f64::INFINITY,
            f64::NAN,
            f64::MIN_POSITIVE,
        ]);
        for x in xs {
            assert_eq!(ln_1p(x).to_bits(), x.ln_1p().to_bits(), "{x}");
        }
    }

    #[test]
    fn logit_and_contributions_by_hand() {
        let r = ranker();
        let sig = RankerInputs {
            similarity: 0.75,
            popularity: 0.3,
            knn: true,
            position: 0.0,
        };
        // bias -1; clicks e - 1 → ln(e) = 1, × 2 = 2; similarity (0.75 - 0.5) / 0.25 = 1;
        // popularity weight 0; knn 1 × 0.5; position (ln 1 - 1) / 2 = -0.5, × -1 = 0.5.
        let x = [std::f64::consts::E - 1.0];
        assert!((r.logit(&x, &sig) - (-1.0 + 2.0 + 1.0 + 0.0 + 0.5 + 0.5)).abs() < 1e-12);
        let c = r.contributions(&x, &sig);
        assert_eq!(c[0].feature, "clicks");
        assert!((c[0].contribution - 2.0).abs() < 1e-12);
        assert_eq!(c[1].feature, "similarity");
        let total: f64 = c.iter().map(|c| c.contribution).sum::<f64>() + r.bias;
        assert!((total - r.logit(&x, &sig)).abs() < 1e-12);
        assert!((r.probability(&x, &sig) - 1.0 / (1.0 + (-3.0f64).exp())).abs() < 1e-12);
    }

    #[test]
    fn a_prepared_ranker_scores_like_the_ranker() {
        let mut r = ranker();
        // A zero weight is dropped; the constant first feature is folded in.
        r.weights[2] = 0.0;
        let sig = |s: f64, p: f64, knn: bool| RankerInputs {
            similarity: s,
            popularity: p,
            knn,
            position: 0.0,
        };
        let signals = [
            sig(0.9, 0.1, true),
            sig(0.4, 0.7, false),
            sig(0.6, 0.0, true),
        ];
        let features = [3.0, 3.0, 3.0];
        let prepared = r.prepare(&features, 1, &signals);
        assert_eq!(prepared.terms.len(), 2, "similarity and knn vary");
        for (i, s) in signals.iter().enumerate() {
            let want = r.logit(&features[i..=i], s);
            assert!((prepared.logit(&features[i..=i], s) - want).abs() < 1e-12);
        }
        // A feature that varies is kept.
        let features = [1.0, 0.0, 5.0];
        let prepared = r.prepare(&features, 1, &signals);
        assert_eq!(prepared.terms.len(), 3);
        for (i, s) in signals.iter().enumerate() {
            let want = r.probability(&features[i..=i], s);
            assert!((prepared.probability(&features[i..=i], s) - want).abs() < 1e-12);
        }
    }

    #[test]
    fn probabilities_of_a_list_are_each_rows_probability_bit_for_bit() {
        let mut r = ranker();
        r.inputs[1].log = true; // a logged signal too
        let signals: Vec<RankerInputs> = (0..7)
            .map(|i| RankerInputs {
                similarity: 0.1 * f64::from(i),
                popularity: f64::from(i % 3),
                knn: i % 2 == 0,
                position: 0.0,
            })
            .collect();
        // Whole counts (the table), fractions, a negative, -0.0, infinity (a non-finite
        // standardized value counts 0); then a list whose last rows have no features.
        let full = [3.0, 0.5, -2.0, -0.0, 1500.0, f64::INFINITY, 7.0];
        for features in [&full[..], &full[..4]] {
            let prepared = r.prepare(features, 1, &signals);
            let got = prepared.probabilities(features, 1, &signals);
            for (i, s) in signals.iter().enumerate() {
                let row = features.get(i..=i).unwrap_or(&[]);
                assert_eq!(
                    got[i].to_bits(),
                    prepared.probability(row, s).to_bits(),
                    "{i}"
                );
            }
        }
    }

    #[test]
    fn position_shifts_every_candidate_alike() {
        let r = ranker();
        let a = RankerInputs {
            similarity: 0.9,
            ..Default::default()
        };
        let b = RankerInputs {
            similarity: 0.6,
            ..Default::default()
        };
        let moved = |s: RankerInputs, p: f64| RankerInputs { position: p, ..s };
        let gap0 = r.logit(&[1.0], &a) - r.logit(&[1.0], &b);
        let gap5 = r.logit(&[1.0], &moved(a, 5.0)) - r.logit(&[1.0], &moved(b, 5.0));
        assert!((gap0 - gap5).abs() < 1e-12);
    }
}
