//! Fitting the learned ranker: L2-regularized logistic regression by Newton's method
//! (iteratively reweighted least squares). The inputs are few (tens), so each step solves
//! the exact Newton system with a Cholesky factorization: deterministic, no learning rate
//! to tune, converged in a handful of steps.
//!
//! With [`FitParams::within_list`] the weights are learned from the differences between
//! the items *of one list* only: every input is centered on its list's mean before the
//! fit. A ranker only ever orders the candidates of one list, and a linear score's order
//! is unchanged by adding a constant per list, so it serves the same way; what it stops
//! learning is why some lists are clicked more than others (who the user is, how much they
//! will do next), which can confound the item-level weights. Replayed rating data needs
//! it: a new user's first list (popular items only, no KNN candidate) is followed by a
//! whole session of ratings, a long-time user's KNN list by few, so pooled over lists
//! "found by KNN" and "similar" look like *fewer* clicks, the opposite of what holds
//! inside any one list.

use std::collections::HashMap;

use recd_core::features::ranker::Input;
use recd_core::features::{FeatureSet, LinearRanker};

use crate::ctr::export::Row;
use crate::error::TrainError;

/// Fitting settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FitParams {
    /// The L2 penalty on the (standardized) weights, per row.
    pub l2: f64,
    /// Newton steps at most.
    pub iterations: usize,
    /// Learn from differences within each list only (see the module doc); the lists are
    /// the rows' `recommendation_id`s.
    pub within_list: bool,
}

impl Default for FitParams {
    fn default() -> Self {
        Self {
            l2: 1e-4,
            iterations: 25,
            within_list: false,
        }
    }
}

/// The raw input row: features then signals.
fn raw(row: &Row) -> impl Iterator<Item = f64> + '_ {
    row.features.iter().copied().chain(row.signals.values())
}

/// Fits a ranker for `set` on `rows` (at least one click and one non-click).
pub fn fit(set: &FeatureSet, rows: &[Row], params: &FitParams) -> Result<LinearRanker, TrainError> {
    let names = LinearRanker::input_names(set);
    let d = names.len();
    let positives = rows.iter().filter(|r| r.label).count();
    if positives == 0 || positives == rows.len() {
        return Err(TrainError::InvalidParam {
            name: "impressions",
            message: format!(
                "need clicked and unclicked impressions to learn from ({positives} clicks in {} rows)",
                rows.len()
            ),
        });
    }
    if let Some(r) = rows.iter().find(|r| r.features.len() != set.len()) {
        return Err(TrainError::InvalidParam {
            name: "features",
            message: format!(
                "a row has {} features, the set {}",
                r.features.len(),
                set.len()
            ),
        });
    }
    // The transformed inputs (the count-like ones logged), row-major.
    let mut inputs: Vec<Input> = names
        .iter()
        .enumerate()
        .map(|(i, n)| Input {
            name: n.clone(),
            log: LinearRanker::logged(set, i),
            mean: 0.0,
            scale: 1.0,
        })
        .collect();
    let mut t: Vec<f64> = Vec::with_capacity(rows.len() * d);
    for r in rows {
        t.extend(
            inputs
                .iter()
                .zip(raw(r))
                .map(|(inp, x)| if inp.log { x.max(0.0).ln_1p() } else { x }),
        );
    }
    let n = rows.len() as f64;
    // The mean is kept over all rows (contributions in `explain` are relative to a
    // typical value); the centering and the scale are per list when fitting within lists.
    for (c, inp) in inputs.iter_mut().enumerate() {
        inp.mean = t.iter().skip(c).step_by(d).sum::<f64>() / n;
    }
    let centers: Vec<f64> = if params.within_list {
        list_means(rows, &t, d)
    } else {
        rows.iter()
            .flat_map(|_| inputs.iter().map(|i| i.mean))
            .collect()
    };
    for (c, inp) in inputs.iter_mut().enumerate() {
        let var = t
            .iter()
            .zip(&centers)
            .skip(c)
            .step_by(d)
            .map(|(x, m)| (x - m) * (x - m))
            .sum::<f64>()
            / n;
        inp.scale = if var > 1e-12 { var.sqrt() } else { 1.0 };
    }
    let x: Vec<Vec<f64>> = t
        .chunks(d.max(1))
        .zip(centers.chunks(d.max(1)))
        .take(rows.len())
        .map(|(row, center)| {
            let mut v: Vec<f64> = row
                .iter()
                .zip(center)
                .zip(&inputs)
                .map(|((x, m), inp)| {
                    let z = (x - m) / inp.scale;
                    if z.is_finite() { z } else { 0.0 }
                })
                .collect();
            v.push(1.0); // the intercept's column
            v
        })
        .collect();
    let y: Vec<f64> = rows.iter().map(|r| f64::from(u8::from(r.label))).collect();
    let m = d + 1;
    let mut w = vec![0.0; m];
    let base = positives as f64 / n;
    w[d] = (base / (1.0 - base)).ln();
    let lambda = params.l2 * n;
    for _ in 0..params.iterations {
        let mut grad = vec![0.0; m];
        let mut hess = vec![0.0; m * m];
        for (xi, yi) in x.iter().zip(&y) {
            let z: f64 = xi.iter().zip(&w).map(|(a, b)| a * b).sum();
            let p = 1.0 / (1.0 + (-z).exp());
            let s = (p * (1.0 - p)).max(1e-12);
            for a in 0..m {
                grad[a] += (yi - p) * xi[a];
                let sa = s * xi[a];
                for b in 0..=a {
                    hess[a * m + b] += sa * xi[b];
                }
            }
        }
        for a in 0..m {
            for b in 0..a {
                hess[b * m + a] = hess[a * m + b];
            }
            if a < d {
                grad[a] -= lambda * w[a];
                hess[a * m + a] += lambda;
            }
            // A constant input standardizes to an all-zero column: keep the system
            // solvable (its weight stays 0, its gradient being 0).
            hess[a * m + a] += 1e-9 * n;
        }
        let Some(step) = cholesky_solve(&hess, &grad, m) else {
            break;
        };
        let mut change = 0.0f64;
        for (wi, si) in w.iter_mut().zip(&step) {
            *wi += si;
            change = change.max(si.abs());
        }
        if change < 1e-8 {
            break;
        }
    }
    if w.iter().any(|v| !v.is_finite()) {
        return Err(TrainError::InvalidParam {
            name: "impressions",
            message: "the fit diverged (non-finite weights)".into(),
        });
    }
    let bias = w[d];
    w.truncate(d);
    Ok(LinearRanker {
        inputs,
        weights: w,
        bias,
    })
}

/// Each row's list means of the transformed inputs `t` (row-major, `d` per row), the
/// lists being the rows' `recommendation_id`s.
fn list_means(rows: &[Row], t: &[f64], d: usize) -> Vec<f64> {
    let mut sums: HashMap<&str, (Vec<f64>, f64)> = HashMap::new();
    for (r, x) in rows.iter().zip(t.chunks(d.max(1))) {
        let (s, n) = sums
            .entry(r.recommendation_id.as_str())
            .or_insert_with(|| (vec![0.0; d], 0.0));
        for (a, b) in s.iter_mut().zip(x) {
            *a += b;
        }
        *n += 1.0;
    }
    rows.iter()
        .flat_map(|r| {
            let (s, n) = &sums[r.recommendation_id.as_str()];
            s.iter().map(move |v| v / n)
        })
        .collect()
}

/// Solves `a x = b` for a symmetric positive definite `a` (row-major, `m × m`).
fn cholesky_solve(a: &[f64], b: &[f64], m: usize) -> Option<Vec<f64>> {
    let mut l = vec![0.0; m * m];
    for i in 0..m {
        for j in 0..=i {
            let s: f64 = (0..j).map(|k| l[i * m + k] * l[j * m + k]).sum();
            if i == j {
                let v = a[i * m + i] - s;
                if v <= 0.0 || !v.is_finite() {
                    return None;
                }
                l[i * m + i] = v.sqrt();
            } else {
                l[i * m + j] = (a[i * m + j] - s) / l[j * m + j];
            }
        }
    }
    let mut y = vec![0.0; m];
    for i in 0..m {
        let s: f64 = (0..i).map(|k| l[i * m + k] * y[k]).sum();
        y[i] = (b[i] - s) / l[i * m + i];
    }
    let mut x = vec![0.0; m];
    for i in (0..m).rev() {
        let s: f64 = (i + 1..m).map(|k| l[k * m + i] * x[k]).sum();
        x[i] = (y[i] - s) / l[i * m + i];
    }
    Some(x)
}

#[cfg(test)]
mod tests {
    use recd_core::features::RankerInputs;

    use super::*;

    #[test]
    fn cholesky_by_hand() {
        // [[4, 2], [2, 3]] x = [2, 1] → x = [0.5, 0].
        let x = cholesky_solve(&[4.0, 2.0, 2.0, 3.0], &[2.0, 1.0], 2).unwrap();
        assert!((x[0] - 0.5).abs() < 1e-12 && x[1].abs() < 1e-12);
        assert!(cholesky_solve(&[0.0, 0.0, 0.0, 0.0], &[1.0, 1.0], 2).is_none());
    }

    #[test]
    fn recovers_the_sign_and_ratio_of_a_known_logistic_model() {
        // Clicks follow logit = -1 + 1.5·z(similarity) with popularity irrelevant; rows on
        // a deterministic grid with the exact click share of each cell, so the fit's
        // optimum is the generating model.
        let set = FeatureSet::empty();
        let mut rows = Vec::new();
        for i in 0..41 {
            let sim = -1.0 + i as f64 / 20.0;
            for j in 0..5 {
                let pop = j as f64 / 4.0;
                let p = 1.0 / (1.0 + (-(-1.0 + 1.5 * sim)).exp());
                let clicks = (p * 200.0).round() as usize;
                for k in 0..200 {
                    rows.push(Row {
                        at_ms: 0,
                        recommendation_id: String::new(),
                        user_id: String::new(),
                        item_id: String::new(),
                        position: 0,
                        label: k < clicks,
                        served_score: 0.0,
                        features: vec![],
                        signals: RankerInputs {
                            similarity: sim,
                            popularity: pop,
                            knn: true,
                            position: 0.0,
                        },
                    });
                }
            }
        }
        let r = fit(
            &set,
            &rows,
            &FitParams {
                l2: 0.0,
                iterations: 50,
                ..FitParams::default()
            },
        )
        .unwrap();
        // The similarity weight is per standard deviation: 1.5 × sd.
        let sd = r.inputs[0].scale;
        assert!((r.weights[0] / sd - 1.5).abs() < 0.05, "{:?}", r.weights);
        assert!(r.weights[1].abs() < 0.05, "{:?}", r.weights);
    }

    /// One row of list `list` with similarity `sim`, clicked or not.
    fn row(list: usize, sim: f64, knn: bool, label: bool) -> Row {
        Row {
            at_ms: 0,
            recommendation_id: format!("list-{list}"),
            user_id: String::new(),
            item_id: String::new(),
            position: 0,
            label,
            served_score: 0.0,
            features: vec![],
            signals: RankerInputs {
                similarity: sim,
                popularity: 0.0,
                knn,
                position: 0.0,
            },
        }
    }

    #[test]
    fn within_lists_the_fit_ignores_what_only_tells_lists_apart() {
        // Lists of two kinds, as replayed ratings make them: "new user" lists (similarity
        // 0 throughout: no query vector yet) where 8 of 10 items are clicked, and "old
        // user" lists where only the two most similar are. Inside every list similarity
        // helps; pooled, similar items look *less* clicked.
        let mut rows = Vec::new();
        for l in 0..40 {
            for k in 0..10 {
                rows.push(if l % 2 == 0 {
                    row(l, 0.0, true, k < 8)
                } else {
                    row(l, 1.0 - k as f64 / 10.0, true, k < 2)
                });
            }
        }
        let set = FeatureSet::empty();
        let weight = |within_list: bool| {
            let params = FitParams {
                within_list,
                ..FitParams::default()
            };
            fit(&set, &rows, &params).unwrap().weights[0]
        };
        assert!(weight(false) < 0.0, "pooled: {}", weight(false));
        assert!(weight(true) > 0.5, "within lists: {}", weight(true));
    }

    #[test]
    fn refuses_rows_without_both_labels() {
        let set = FeatureSet::empty();
        assert!(fit(&set, &[], &FitParams::default()).is_err());
    }
}
