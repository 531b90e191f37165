//! Validation on the training data, and early stopping by it.
//!
//! A [`Validation`] is carved from the data a model is *trained* on (never a test half):
//! a `fraction` of each user's distinct items, at random (the random split's rule), is held
//! out, and a model trained on the rest is scored by NDCG@k on those items (the offline
//! protocol of [`crate::eval`]: each user's remaining training items excluded). At most
//! [`MAX_USERS`] users are scored (every n-th), so that scoring an iteration stays cheap on
//! large data.
//!
//! Early stopping ([`choose_iterations`]): ALS runs on the carved training part up to
//! `params.iterations`, scored after each iteration; it stops once `patience` iterations in
//! a row did not beat the best NDCG, and the iteration count that scored best is chosen.
//! [`train_early_stopped`] then trains on the whole data with that many iterations, so the
//! held-out events still teach the final model.

use std::ops::ControlFlow;

use serde::{Deserialize, Serialize};

use crate::als::{self, AlsModel, AlsParams};
use crate::dataset::Interactions;
use crate::error::{Result, TrainError};
use crate::eval::EvalContext;
use crate::rank::top_k;
use crate::split::{self, Split, SplitMethod};

/// Most validation users scored per iteration.
pub const MAX_USERS: usize = 2000;

/// Early-stopping settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EarlyStopping {
    /// Stop after this many iterations without a better validation NDCG; 0 = off.
    pub patience: usize,
    /// Share of each user's training items held out for validation, in (0, 1).
    pub validation_fraction: f64,
    /// List length of the validation NDCG.
    pub k: usize,
    /// Seed of the validation split.
    pub seed: u64,
}

impl Default for EarlyStopping {
    fn default() -> Self {
        Self {
            patience: 0,
            validation_fraction: 0.1,
            k: 10,
            seed: 7,
        }
    }
}

/// A validation split of training data, with its ground truth.
#[derive(Debug, Clone)]
pub struct Validation {
    /// The carved split: `train` to fit on, `test` the held-out validation events.
    pub split: Split,
    context: EvalContext,
    k: usize,
}

impl Validation {
    /// Hold out `fraction` of each user's items of `train` (seeded), scored at `k`.
    pub fn carve(train: &Interactions, fraction: f64, seed: u64, k: usize) -> Result<Self> {
        if k == 0 {
            return Err(TrainError::param("k", "must be >= 1"));
        }
        let method = SplitMethod::Random {
            test_fraction: fraction,
        };
        let split = split::split(train, method, seed).map_err(|e| match e {
            TrainError::InvalidParam { .. } => {
                TrainError::param("validation_fraction", "must be in (0, 1)")
            }
            other => other,
        })?;
        let mut context = EvalContext::new(&split);
        if context.users.is_empty() {
            return Err(TrainError::Empty(
                "no user has enough items for a validation split (two distinct items or more)"
                    .into(),
            ));
        }
        let step = context.users.len().div_ceil(MAX_USERS);
        context.users = context.users.iter().copied().step_by(step).collect();
        Ok(Self { split, context, k })
    }

    /// Users scored.
    pub fn users(&self) -> usize {
        self.context.users.len()
    }

    /// NDCG@k on the held-out items of user factors `x` and item factors `y` (`factors` wide).
    pub fn ndcg(&self, x: &[f32], y: &[f32], factors: usize) -> f64 {
        self.context
            .accumulate_lists(self.k, None, |u| {
                let Some(xu) = x.get(u as usize * factors..(u as usize + 1) * factors) else {
                    return Vec::new();
                };
                let scores: Vec<f32> = y
                    .chunks_exact(factors)
                    .map(|yi| recd_core::vector::dot(xu, yi))
                    .collect();
                top_k(&scores, self.k, &self.context.train_items[u as usize])
                    .into_iter()
                    .map(|(i, _)| i)
                    .collect()
            })
            .finish()
            .ndcg
    }

    /// NDCG@k of a trained model (trained on [`Validation::split`]'s train part).
    pub fn score(&self, model: &AlsModel) -> f64 {
        self.ndcg(&model.user_factors, &model.item_factors, model.factors)
    }
}

/// What early stopping saw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EarlyStopReport {
    /// Iterations chosen: the count after which validation NDCG was best.
    pub iterations: usize,
    /// That NDCG@k.
    pub ndcg: f64,
    /// Validation NDCG after each iteration run (index 0: after the first).
    pub ndcg_by_iteration: Vec<f64>,
    /// Users scored.
    pub users: usize,
}

/// Train on `validation`'s train part for up to `params.iterations`, scoring each iteration;
/// stop after `patience` iterations without improvement (0: run them all).
pub fn choose_iterations(
    validation: &Validation,
    params: &AlsParams,
    patience: usize,
) -> Result<EarlyStopReport> {
    let mut history = Vec::new();
    let (mut best, mut best_at) = (f64::NEG_INFINITY, 0usize);
    als::train_until(&validation.split.train, params, |info, x, y| {
        let ndcg = validation.ndcg(x, y, params.factors);
        history.push(ndcg);
        if ndcg > best {
            (best, best_at) = (ndcg, info.iteration + 1);
        }
        tracing::debug!(iteration = info.iteration, ndcg, "validation");
        if patience > 0 && info.iteration + 1 - best_at >= patience {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })?;
    Ok(EarlyStopReport {
        iterations: best_at.max(1),
        ndcg: best.max(0.0),
        ndcg_by_iteration: history,
        users: validation.users(),
    })
}

/// Early stopping on a validation split carved from `data`, then the final model on all of
/// `data` with the chosen iteration count. With `settings.patience == 0`, plain training.
pub fn train_early_stopped(
    data: &Interactions,
    params: &AlsParams,
    settings: &EarlyStopping,
) -> Result<(AlsModel, Option<EarlyStopReport>)> {
    if settings.patience == 0 {
        return Ok((als::train(data, params)?, None));
    }
    let validation = Validation::carve(
        data,
        settings.validation_fraction,
        settings.seed,
        settings.k,
    )?;
    let report = choose_iterations(&validation, params, settings.patience)?;
    let chosen = AlsParams {
        iterations: report.iterations,
        ..params.clone()
    };
    Ok((als::train(data, &chosen)?, Some(report)))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Two taste groups (users 0..40 like items 0..15, users 40..80 items 15..30), each
    /// user with 10 of their group's items.
    pub(crate) fn groups() -> Interactions {
        let mut ev = Vec::new();
        for u in 0..80u32 {
            let base = if u < 40 { 0 } else { 15 };
            for j in 0..10u32 {
                ev.push((u, base + (u * 7 + j * 4) % 15, 1.0, i64::from(u * 100 + j)));
            }
        }
        Interactions::from_indices(80, 30, &ev)
    }

    fn params(iterations: usize) -> AlsParams {
        AlsParams {
            factors: 4,
            iterations,
            regularization: 0.5,
            alpha: 5.0,
            threads: 1,
            ..AlsParams::default()
        }
    }

    #[test]
    fn validation_comes_from_the_training_data_only() {
        let data = groups();
        let v = Validation::carve(&data, 0.2, 1, 10).unwrap();
        assert_eq!(v.split.train.len() + v.split.test.len(), data.len());
        assert!(v.users() > 0);
        // a trained model beats random-init factors on the held-out items
        let model = als::train(&v.split.train, &params(10)).unwrap();
        let trained = v.score(&model);
        let zero = v.ndcg(&vec![0.0; 80 * 4], &vec![0.0; 30 * 4], 4);
        assert!(trained > zero + 0.1, "trained {trained} zero {zero}");
        assert!(Validation::carve(&data, 1.0, 1, 10).is_err());
    }

    #[test]
    fn early_stopping_stops_after_patience_and_picks_the_best_iteration() {
        let data = groups();
        let v = Validation::carve(&data, 0.2, 1, 10).unwrap();
        let report = choose_iterations(&v, &params(40), 2).unwrap();
        let h = &report.ndcg_by_iteration;
        let best = h.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        assert_eq!(report.ndcg, best);
        assert_eq!(h[report.iterations - 1], best, "{h:?}");
        // it stopped exactly `patience` iterations after the best, or ran them all
        assert!(
            h.len() == report.iterations + 2 || h.len() == 40,
            "{h:?} chose {}",
            report.iterations
        );
        assert!(
            h.len() < 40,
            "a 4-factor model on 30 items converges long before 40: {h:?}"
        );
        // without patience every iteration runs
        let all = choose_iterations(&v, &params(12), 0).unwrap();
        assert_eq!(all.ndcg_by_iteration.len(), 12);
        // and the final model is trained with the chosen count on all the data
        let settings = EarlyStopping {
            patience: 2,
            validation_fraction: 0.2,
            seed: 1,
            k: 10,
        };
        let (model, chosen) = train_early_stopped(&data, &params(40), &settings).unwrap();
        assert_eq!(chosen.unwrap().iterations, report.iterations);
        assert_eq!(model.n_users(), 80);
    }
}
