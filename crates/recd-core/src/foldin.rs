//! Fold-in: a user's implicit-ALS vector solved from their interactions with the item
//! factors fixed — the real-time update of [`crate::UserState`] under
//! `update = "fold_in"`.
//!
//! Implicit ALS (Hu, Koren & Volinsky 2008) solves, for a user with confidences
//! `c_i = 1 + alpha·w_i` on the items they touched (`w_i` their summed positive event
//! weight, `p_i = 1`):
//!
//! `x = (YᵀY + λI + Σ_i (c_i − 1) y_i y_iᵀ)⁻¹ Σ_i c_i y_i`
//!
//! which is the user half-step of training (`recd-train`'s `als`) and `implicit`'s
//! `recalculate_user`. `YᵀY` is the same for every user of a model: [`Gram`] keeps it as
//! a running sum that the stores update when an item vector is written or removed, so
//! that it always describes the vectors actually served. A solve is then O(n·k²) to add
//! the user's `n` items plus a `k×k` Cholesky (k³/3): for n = 200 and k = 64 about a
//! million multiply-adds, a few hundred µs, bounded by the number of items a user's state
//! keeps (`recent_capacity`).
//!
//! Everything is in `f64`: the running sum takes many additions and removals, and the
//! Cholesky of a system with λ small against `YᵀY` needs the precision.

use serde::{Deserialize, Serialize};

use crate::vector::dot_f64;

/// How each event changes the user's real-time vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpdateRule {
    /// Fold the interaction into the user's ALS vector: solve the user's regularised
    /// weighted least squares over their recent items with the item vectors fixed.
    #[default]
    FoldIn,
    /// The session vector: a time-decayed weighted average of the touched items' vectors.
    DecayedAverage,
}

impl UpdateRule {
    /// The config name.
    pub fn as_str(self) -> &'static str {
        match self {
            UpdateRule::FoldIn => "fold_in",
            UpdateRule::DecayedAverage => "decayed_average",
        }
    }
}

/// Settings of the fold-in (`[model.session.fold_in]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FoldInParams {
    /// `λ` of the solve: the trained model's (`recd train --regularization`).
    pub regularization: f64,
    /// The confidence slope `c = 1 + alpha·w`: the trained model's (`recd train --alpha`).
    pub alpha: f64,
    /// Share of the folded-in vector in the query, the rest being the long-term vector
    /// (both unit length): 1 = the fold-in alone.
    pub share: f64,
    /// The largest share of the decayed-average session vector mixed into the fold-in's
    /// query (0: the fold-in alone), reached as the session's decayed weight grows
    /// (`[ranking] session_saturation`, [`session_mix_share`]): the fold-in is the user's
    /// least-squares taste, the session points at the last few items, and which of the
    /// two predicts the next event is a property of the data, so `recd eval
    /// --session-mix auto` and `recd tune` choose it on a validation split.
    pub session_mix: f64,
}

/// The share of the session vector in the fold-in's query: `mix · w / (w + saturation)`
/// for a session of decayed weight `w` — the decayed-average rule's formula with
/// `session_mix` as its maximum, so that a session fades out of the query as it ages.
pub fn session_mix_share(mix: f64, weight: f64, saturation: f64) -> f64 {
    if !(mix > 0.0 && weight > 0.0 && weight.is_finite()) {
        return 0.0;
    }
    mix.min(1.0) * weight / (weight + saturation.max(1e-9))
}

/// λ and alpha are `recd train`'s defaults; `share` was chosen on a validation split cut
/// from the train half of ml-latest-small (BENCHMARKS.md, "Fold-in").
impl Default for FoldInParams {
    fn default() -> Self {
        Self {
            regularization: 20.0,
            alpha: 0.5,
            share: 1.0,
            session_mix: 0.0,
        }
    }
}

impl FoldInParams {
    /// Checks a configuration; the message names the key.
    pub fn check(&self) -> Result<(), crate::ValidationError> {
        if !(self.regularization.is_finite() && self.regularization > 0.0) {
            return crate::invalid!("fold_in.regularization must be a number > 0");
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return crate::invalid!("fold_in.alpha must be a number > 0");
        }
        if !(self.share.is_finite() && (0.0..=1.0).contains(&self.share)) {
            return crate::invalid!("fold_in.share must be between 0 and 1");
        }
        if !(self.session_mix.is_finite() && (0.0..=1.0).contains(&self.session_mix)) {
            return crate::invalid!("fold_in.session_mix must be between 0 and 1");
        }
        Ok(())
    }
}

/// `YᵀY`: the sum of `y yᵀ` over the item vectors of one dimension (full symmetric,
/// row-major), kept up to date as vectors come and go.
#[derive(Debug, Clone, PartialEq)]
pub struct Gram {
    k: usize,
    sum: Vec<f64>,
    items: i64,
}

impl Gram {
    /// The sum over no vectors, for dimension `k`.
    pub fn new(k: usize) -> Self {
        Self {
            k,
            sum: vec![0.0; k * k],
            items: 0,
        }
    }

    /// The dimension.
    pub fn dim(&self) -> usize {
        self.k
    }

    /// How many vectors are in the sum.
    pub fn items(&self) -> i64 {
        self.items
    }

    /// Adds `y yᵀ` (a vector of another dimension is ignored).
    pub fn add(&mut self, y: &[f32]) {
        self.update(y, 1.0);
    }

    /// Removes `y yᵀ` (a vector added before).
    pub fn remove(&mut self, y: &[f32]) {
        self.update(y, -1.0);
    }

    fn update(&mut self, y: &[f32], sign: f64) {
        if y.len() != self.k {
            return;
        }
        let k = self.k;
        for r in 0..k {
            let yr = sign * f64::from(y[r]);
            let row = &mut self.sum[r * k..(r + 1) * k];
            for (s, yc) in row.iter_mut().zip(y) {
                *s += yr * f64::from(*yc);
            }
        }
        self.items += sign as i64;
        if self.items <= 0 {
            // Back to empty: drop what rounding left behind.
            self.items = 0;
            self.sum.fill(0.0);
        }
    }

    /// The sum, row-major `k×k`.
    pub fn matrix(&self) -> &[f64] {
        &self.sum
    }
}

/// What a fold-in needs of the model: `YᵀY + λI` and alpha, built once per batch of events.
#[derive(Debug, Clone, PartialEq)]
pub struct FoldModel {
    k: usize,
    base: Vec<f64>,
    alpha: f64,
}

impl FoldModel {
    /// From the items' Gram matrix; `None` while no item has a vector.
    pub fn new(gram: &Gram, params: &FoldInParams) -> Option<Self> {
        if gram.items() == 0 || gram.dim() == 0 {
            return None;
        }
        let k = gram.dim();
        let mut base = gram.matrix().to_vec();
        for d in 0..k {
            base[d * k + d] += params.regularization.max(1e-9);
        }
        Some(Self {
            k,
            base,
            alpha: params.alpha,
        })
    }

    /// The dimension.
    pub fn dim(&self) -> usize {
        self.k
    }

    /// The user vector for `(item vector, summed weight w)` interactions: `w > 0` is a
    /// positive (`p = 1`) with confidence `1 + alpha·w`, `w < 0` a negative (`p = 0`, what
    /// a dislike or skip says) with confidence `1 + alpha·|w|`; items with `w = 0` or a
    /// vector of another dimension are left out. `None` when nothing is left, or the
    /// system is not positive definite (only possible with non-finite vectors).
    pub fn solve<'v>(
        &self,
        interactions: impl IntoIterator<Item = (&'v [f32], f32)>,
    ) -> Option<Vec<f32>> {
        self.solve_from(None, interactions.into_iter().map(|(y, w)| (y, w, w)))
    }

    /// The user vector for `(item vector, summed weight, fresh weight)` interactions, where
    /// the fresh weight is what came after the trained vector `prior` was solved (the rest
    /// the model knew). The items the user touched before their last few hundred are not
    /// kept, but `prior` carries them: with `A_T` the system of the trained weights
    /// (`YᵀY + λI + Σ alpha·(w − fresh) y yᵀ`), whose solution `prior` is, the fold-in
    /// solves `A x = A_T·prior + Σ (alpha·fresh + [item new to the user]) y` with `A` the
    /// system of the summed weights: without fresh weight it returns `prior`; when every
    /// item the user touched is kept and `prior` is exact, it is the exact solve over all
    /// of them (training's user step); a dropped item keeps its pull through `prior`.
    /// Without `prior` (or of another dimension) every weight counts as fresh. A negative
    /// summed weight (a disliked or skipped item) is a `p = 0` with confidence
    /// `1 + alpha·|w|` (it turns the vector away from the item); an item the prior was
    /// solved with as a positive loses that pull.
    pub fn solve_from<'v>(
        &self,
        prior: Option<&[f32]>,
        interactions: impl IntoIterator<Item = (&'v [f32], f32, f32)>,
    ) -> Option<Vec<f32>> {
        let k = self.k;
        let prior: Option<Vec<f64>> = prior
            .filter(|p| p.len() == k && p.iter().all(|x| x.is_finite()))
            .map(|p| p.iter().map(|&x| f64::from(x)).collect());
        let mut a = self.base.clone();
        let mut b = match &prior {
            // (YᵀY + λI)·prior; the trained items' part is added below
            Some(p) => self
                .base
                .chunks_exact(k)
                .map(|row| dot_f64(row, p))
                .collect(),
            None => vec![0f64; k],
        };
        let mut any = prior.is_some();
        let mut y = vec![0f64; k];
        for (v, total, fresh) in interactions {
            if v.len() != k || !total.is_finite() {
                continue;
            }
            // The trained part: what the prior was solved with (never a negative: training
            // drops those). Without a prior everything is fresh.
            let trained = match (&prior, fresh.is_finite()) {
                (Some(_), true) => f64::from(total - fresh).max(0.0),
                _ => 0.0,
            };
            let total = f64::from(total);
            if total == 0.0 && trained == 0.0 {
                continue;
            }
            any = true;
            // c − 1 = alpha·|w|: a negative weight is confidence that p = 0
            let s = self.alpha * total.abs();
            for (d, x) in y.iter_mut().zip(v) {
                *d = f64::from(*x);
            }
            // b = A_T·prior (its trained part here) − the trained b part + the true b part
            let mut coef = if total > 0.0 {
                1.0 + self.alpha * total
            } else {
                0.0
            };
            if let (Some(p), true) = (&prior, trained > 0.0) {
                let yp: f64 = y.iter().zip(p).map(|(a, b)| a * b).sum();
                coef += self.alpha * trained * yp - (1.0 + self.alpha * trained);
            }
            for r in 0..k {
                b[r] += coef * y[r];
                let yr = s * y[r];
                // lower triangle only: the Cholesky below reads nothing else
                let row = &mut a[r * k..r * k + r + 1];
                for (acc, yc) in row.iter_mut().zip(&y) {
                    *acc += yr * yc;
                }
            }
        }
        if !any {
            return None;
        }
        cholesky_solve(&mut a, &mut b, k)?;
        let x: Vec<f32> = b.iter().map(|&v| v as f32).collect();
        x.iter().all(|v| v.is_finite()).then_some(x)
    }
}

/// Solves `A x = b` in place (`b` becomes `x`) for a symmetric positive-definite `A` given
/// by its lower triangle (overwritten by the Cholesky factor); `None` if not SPD.
fn cholesky_solve(a: &mut [f64], b: &mut [f64], k: usize) -> Option<()> {
    cholesky(a, k)?;
    solve_factored(a, b, k);
    Some(())
}

/// Factors a symmetric positive-definite `k×k` `A`, given by its lower triangle, into
/// `L Lᵀ` in place (the lower triangle becomes `L`); `None` if not SPD. The one Cholesky of
/// the crate: the fold-ins of users and items and the content map's ridge regression
/// (`crate::newitems`) all solve through it.
pub(crate) fn cholesky(a: &mut [f64], k: usize) -> Option<()> {
    for r in 0..k {
        for c in 0..=r {
            // L[r][c] from the first c entries of rows r and c (both already factored)
            let sum = a[r * k + c] - dot_f64(&a[r * k..r * k + c], &a[c * k..c * k + c]);
            if r == c {
                if !(sum > 0.0 && sum.is_finite()) {
                    return None;
                }
                a[r * k + r] = sum.sqrt();
            } else {
                a[r * k + c] = sum / a[c * k + c];
            }
        }
    }
    Some(())
}

/// Solves `L Lᵀ x = b` in place with the factor of [`cholesky`].
pub(crate) fn solve_factored(a: &[f64], b: &mut [f64], k: usize) {
    // L z = b, then Lᵀ x = z
    for r in 0..k {
        b[r] = (b[r] - dot_f64(&a[r * k..r * k + r], &b[..r])) / a[r * k + r];
    }
    for r in (0..k).rev() {
        let mut sum = b[r];
        for j in r + 1..k {
            sum -= a[j * k + r] * b[j];
        }
        b[r] = sum / a[r * k + r];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vector::dot;

    /// Deterministic pseudo-random item vectors.
    fn items(n: usize, k: usize) -> Vec<Vec<f32>> {
        let mut s = 0x9e37_79b9_7f4a_7c15u64;
        (0..n)
            .map(|_| {
                (0..k)
                    .map(|_| {
                        s ^= s << 13;
                        s ^= s >> 7;
                        s ^= s << 17;
                        ((s >> 11) as f64 / (1u64 << 53) as f64 - 0.5) as f32
                    })
                    .collect()
            })
            .collect()
    }

    fn gram(ys: &[Vec<f32>]) -> Gram {
        let mut g = Gram::new(ys[0].len());
        ys.iter().for_each(|y| g.add(y));
        g
    }

    /// The normal equations' residual `‖A x − b‖` computed densely, independently of the
    /// solver: the fold-in must be the exact least-squares solution.
    fn residual(ys: &[Vec<f32>], p: &FoldInParams, seen: &[(usize, f32)], x: &[f32]) -> f64 {
        let k = ys[0].len();
        let mut worst = 0f64;
        for r in 0..k {
            let mut ax = p.regularization * f64::from(x[r]);
            let mut b = 0.0;
            for (i, y) in ys.iter().enumerate() {
                let c = seen
                    .iter()
                    .find(|(j, _)| *j == i)
                    .map_or(1.0, |(_, w)| 1.0 + p.alpha * f64::from(*w));
                let p_i = if c > 1.0 { 1.0 } else { 0.0 };
                ax += c * f64::from(y[r]) * f64::from(dot(y, x));
                b += c * p_i * f64::from(y[r]);
            }
            worst = worst.max((ax - b).abs());
        }
        worst
    }

    #[test]
    fn the_fold_in_is_the_exact_als_user_step() {
        let ys = items(40, 6);
        let p = FoldInParams {
            regularization: 0.7,
            alpha: 3.0,
            ..Default::default()
        };
        let model = FoldModel::new(&gram(&ys), &p).unwrap();
        let seen = [(3usize, 1.0f32), (7, 2.5), (19, 0.5), (33, 4.0)];
        let x = model
            .solve(seen.iter().map(|(i, w)| (ys[*i].as_slice(), *w)))
            .unwrap();
        assert!(residual(&ys, &p, &seen, &x) < 1e-4, "{x:?}");
    }

    #[test]
    fn an_interaction_raises_its_items_score() {
        let ys = items(30, 8);
        let model = FoldModel::new(&gram(&ys), &FoldInParams::default()).unwrap();
        let before = [(1usize, 2.0f32), (2, 1.0)];
        let x0 = model
            .solve(before.iter().map(|(i, w)| (ys[*i].as_slice(), *w)))
            .unwrap();
        let after = [(1usize, 2.0f32), (2, 1.0), (9, 2.0)];
        let x1 = model
            .solve(after.iter().map(|(i, w)| (ys[*i].as_slice(), *w)))
            .unwrap();
        assert!(dot(&x1, &ys[9]) > dot(&x0, &ys[9]));
    }

    #[test]
    fn nothing_positive_folds_to_nothing_and_the_gram_sum_round_trips() {
        let ys = items(5, 3);
        let mut g = gram(&ys);
        let model = FoldModel::new(&g, &FoldInParams::default()).unwrap();
        assert_eq!(model.solve([(ys[0].as_slice(), 0.0)]), None);
        assert_eq!(model.solve([(&[1.0f32][..], 1.0)]), None);
        let before = g.clone();
        g.add(&[1.0, 2.0, 3.0]);
        g.remove(&[1.0, 2.0, 3.0]);
        assert_eq!(g.items(), before.items());
        assert!(
            g.matrix()
                .iter()
                .zip(before.matrix())
                .all(|(a, b)| (a - b).abs() < 1e-9)
        );
        ys.iter().for_each(|y| g.remove(y));
        assert_eq!(FoldModel::new(&g, &FoldInParams::default()), None);
    }

    #[test]
    fn settings_are_checked() {
        assert!(FoldInParams::default().check().is_ok());
        let bad = FoldInParams {
            share: 1.5,
            ..Default::default()
        };
        assert!(bad.check().unwrap_err().message.contains("fold_in.share"));
    }

    #[test]
    fn a_prior_carries_the_trained_items_and_fresh_events_move_it() {
        let ys = items(40, 6);
        let p = FoldInParams {
            regularization: 0.7,
            alpha: 3.0,
            ..Default::default()
        };
        let model = FoldModel::new(&gram(&ys), &p).unwrap();
        let trained = [(3usize, 1.0f32), (7, 2.5), (19, 0.5)];
        let x_lt = model
            .solve(trained.iter().map(|(i, w)| (ys[*i].as_slice(), *w)))
            .unwrap();
        // nothing fresh: the prior itself
        let same = model
            .solve_from(
                Some(&x_lt),
                trained.iter().map(|(i, w)| (ys[*i].as_slice(), *w, 0.0)),
            )
            .unwrap();
        assert!(same.iter().zip(&x_lt).all(|(a, b)| (a - b).abs() < 1e-5));
        // fresh events on a known item and a new one: the exact solve over everything
        let all = [
            (3usize, 1.0f32, 0.0f32),
            (7, 4.0, 1.5),
            (19, 0.5, 0.0),
            (33, 2.0, 2.0),
        ];
        let folded = model
            .solve_from(
                Some(&x_lt),
                all.iter().map(|(i, w, f)| (ys[*i].as_slice(), *w, *f)),
            )
            .unwrap();
        let seen: Vec<(usize, f32)> = all.iter().map(|(i, w, _)| (*i, *w)).collect();
        assert!(residual(&ys, &p, &seen, &folded) < 1e-4, "{folded:?}");
        // an item the state no longer keeps still pulls through the prior
        let kept = &all[1..];
        let partial = model
            .solve_from(
                Some(&x_lt),
                kept.iter().map(|(i, w, f)| (ys[*i].as_slice(), *w, *f)),
            )
            .unwrap();
        let cold = model
            .solve(kept.iter().map(|(i, w, _)| (ys[*i].as_slice(), *w)))
            .unwrap();
        assert!(dot(&partial, &ys[3]) > dot(&cold, &ys[3]));
    }

    #[test]
    fn a_negative_weight_turns_the_vector_away_and_undoes_a_trained_positive() {
        let ys = items(30, 6);
        let model = FoldModel::new(&gram(&ys), &FoldInParams::default()).unwrap();
        let liked = [(1usize, 2.0f32)];
        let x = model
            .solve(liked.iter().map(|(i, w)| (ys[*i].as_slice(), *w)))
            .unwrap();
        let x_neg = model
            .solve([(ys[1].as_slice(), 2.0), (ys[5].as_slice(), -4.0)])
            .unwrap();
        assert!(dot(&x_neg, &ys[5]) < dot(&x, &ys[5]));
        // trained positive on item 5, then disliked: weight -4, of which the trained 3
        let x_lt = model
            .solve([(ys[1].as_slice(), 2.0), (ys[5].as_slice(), 3.0)])
            .unwrap();
        let undone = model
            .solve_from(
                Some(&x_lt),
                [(ys[1].as_slice(), 2.0, 0.0), (ys[5].as_slice(), -4.0, -7.0)],
            )
            .unwrap();
        assert!(
            undone.iter().zip(&x_neg).all(|(a, b)| (a - b).abs() < 1e-4),
            "{undone:?} vs {x_neg:?}"
        );
    }
}
