//! Hyper-parameter search (`recd tune`): a grid, or a seeded random sample of it, over
//! factors, regularization, alpha and confidence scaling, each trial scored by NDCG@k on a
//! [`Validation`] split carved from the training data (never a test half). The iteration
//! count of every trial is chosen by early stopping on the same validation
//! ([`crate::early_stop::choose_iterations`]), up to the grid's `max_iterations`.

use std::time::Instant;

use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::als::AlsParams;
use crate::confidence::Scaling;
use crate::early_stop::{Validation, choose_iterations};
use crate::error::{Result, TrainError};

/// The values to try.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Grid {
    /// Latent factors.
    pub factors: Vec<usize>,
    /// λ.
    pub regularization: Vec<f32>,
    /// Confidence slope.
    pub alpha: Vec<f32>,
    /// Confidence scalings.
    pub scaling: Vec<Scaling>,
    /// Most iterations per trial (early stopping picks the count).
    pub max_iterations: usize,
    /// Early-stopping patience of each trial (0: run `max_iterations`, pick the best).
    pub patience: usize,
    /// Trials drawn at random from the grid (seeded); 0 = the whole grid.
    pub trials: usize,
    /// Seed of the draw.
    pub seed: u64,
}

impl Default for Grid {
    fn default() -> Self {
        Self {
            factors: vec![32, 64, 128],
            regularization: vec![1.0, 5.0, 20.0, 50.0],
            alpha: vec![0.5, 2.0, 10.0],
            scaling: vec![Scaling::Linear, Scaling::Log, Scaling::Bm25],
            max_iterations: 30,
            patience: 3,
            trials: 20,
            seed: 42,
        }
    }
}

impl Grid {
    /// Every combination, in a fixed order.
    pub fn combinations(&self) -> Vec<(usize, f32, f32, Scaling)> {
        let mut out = Vec::new();
        for &f in &self.factors {
            for &r in &self.regularization {
                for &a in &self.alpha {
                    for &s in &self.scaling {
                        out.push((f, r, a, s));
                    }
                }
            }
        }
        out
    }

    fn validate(&self) -> Result<()> {
        for (name, empty) in [
            ("factors", self.factors.is_empty()),
            ("regularization", self.regularization.is_empty()),
            ("alpha", self.alpha.is_empty()),
            ("scaling", self.scaling.is_empty()),
        ] {
            if empty {
                return Err(TrainError::param(name, "needs at least one value to try"));
            }
        }
        if self.max_iterations == 0 {
            return Err(TrainError::param("iterations", "must be >= 1"));
        }
        Ok(())
    }
}

/// One trial's settings and score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trial {
    /// The settings, with the iteration count early stopping chose.
    pub params: AlsParams,
    /// Validation NDCG@k at that count.
    pub ndcg: f64,
    /// Seconds the trial took.
    pub seconds: f64,
}

/// The search's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TuneReport {
    /// Every trial, in the order run.
    pub trials: Vec<Trial>,
    /// Index of the best trial in `trials` (the first of equals).
    pub best: usize,
    /// Validation users scored.
    pub users: usize,
    /// Validation events held out.
    pub validation_events: usize,
}

impl TuneReport {
    /// The winning trial.
    pub fn best(&self) -> &Trial {
        &self.trials[self.best]
    }
}

/// Run the search: every trial starts from `base` (threads, seed, CG steps, the confidence's
/// other settings) with the grid's values set; `on_trial` sees each finished trial.
pub fn tune(
    validation: &Validation,
    base: &AlsParams,
    grid: &Grid,
    mut on_trial: impl FnMut(&Trial),
) -> Result<TuneReport> {
    grid.validate()?;
    let mut combos = grid.combinations();
    if grid.trials > 0 && grid.trials < combos.len() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(grid.seed);
        combos.shuffle(&mut rng);
        combos.truncate(grid.trials);
    }
    let mut trials = Vec::with_capacity(combos.len());
    for (factors, regularization, alpha, scaling) in combos {
        let mut params = AlsParams {
            factors,
            regularization,
            alpha,
            iterations: grid.max_iterations,
            ..base.clone()
        };
        params.confidence.scaling = scaling;
        let t = Instant::now();
        let stop = choose_iterations(validation, &params, grid.patience)?;
        params.iterations = stop.iterations;
        let trial = Trial {
            params,
            ndcg: stop.ndcg,
            seconds: t.elapsed().as_secs_f64(),
        };
        on_trial(&trial);
        trials.push(trial);
    }
    let best = (0..trials.len()).fold(0, |b, i| {
        if trials[i].ndcg > trials[b].ndcg {
            i
        } else {
            b
        }
    });
    Ok(TuneReport {
        trials,
        best,
        users: validation.users(),
        validation_events: validation.split.test.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::als;
    use crate::early_stop::tests::groups;

    #[test]
    fn tune_chooses_the_setting_that_is_better_on_validation() {
        let data = groups();
        let v = Validation::carve(&data, 0.2, 3, 10).unwrap();
        let base = AlsParams {
            threads: 1,
            ..AlsParams::default()
        };
        // A regularization of 1e4 crushes 8 factors to near zero: that trial must lose.
        let grid = Grid {
            factors: vec![8],
            regularization: vec![1e4, 0.5],
            alpha: vec![5.0],
            scaling: vec![Scaling::Linear, Scaling::Log],
            max_iterations: 15,
            patience: 2,
            trials: 0,
            seed: 1,
        };
        let mut seen = 0;
        let report = tune(&v, &base, &grid, |_| seen += 1).unwrap();
        assert_eq!((report.trials.len(), seen), (4, 4));
        let best = report.best();
        assert_eq!(best.params.regularization, 0.5, "{report:?}");
        for t in &report.trials {
            assert!(best.ndcg >= t.ndcg, "{report:?}");
        }
        let worst = report.trials.iter().map(|t| t.ndcg).fold(1.0, f64::min);
        assert!(best.ndcg > worst + 0.05, "{report:?}");
        // the chosen settings, trained again, score what the search reported
        let model = als::train(&v.split.train, &best.params).unwrap();
        assert!((v.score(&model) - best.ndcg).abs() < 1e-9);
    }

    #[test]
    fn random_search_draws_the_asked_number_of_trials() {
        let v = Validation::carve(&groups(), 0.2, 3, 10).unwrap();
        let grid = Grid {
            factors: vec![2, 4],
            regularization: vec![0.5, 1.0],
            alpha: vec![1.0, 5.0],
            scaling: vec![Scaling::Linear],
            max_iterations: 3,
            patience: 0,
            trials: 3,
            seed: 9,
        };
        let base = AlsParams {
            threads: 1,
            ..AlsParams::default()
        };
        let a = tune(&v, &base, &grid, |_| {}).unwrap();
        assert_eq!(a.trials.len(), 3);
        let b = tune(&v, &base, &grid, |_| {}).unwrap();
        assert_eq!(a, b.clone().with_seconds(&a), "seeded: the same draw");
        let empty = Grid {
            alpha: vec![],
            ..grid
        };
        assert!(tune(&v, &base, &empty, |_| {}).is_err());
    }

    impl TuneReport {
        /// This report with `other`'s timings (timings never repeat).
        fn with_seconds(mut self, other: &TuneReport) -> Self {
            for (t, o) in self.trials.iter_mut().zip(&other.trials) {
                t.seconds = o.seconds;
            }
            self
        }
    }
}
