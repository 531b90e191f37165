//! ALS settings of `recd train`, `recd eval` and `recd tune`: the flags, over the config's
//! `[train]` section, over recd-train's defaults (flag > env > file > default).

use recd_server::config::TrainConfig;
use recd_train::als::AlsParams;
use recd_train::confidence::{Confidence, Scaling};
use recd_train::early_stop::EarlyStopping;

use crate::UsageError;
use crate::train::train_error;

/// ALS hyper-parameters, shared by `recd train`, `recd eval` and `recd tune`. Unset flags
/// take the config's `[train]` keys.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct AlsArgs {
    /// Latent factors (= the store's vector dimension) [default: `[train] factors`, else the
    /// store's dimension; 64 for eval].
    #[arg(long)]
    pub factors: Option<usize>,
    /// ALS iterations (the most, with early stopping) [default: `[train] iterations`, 15].
    #[arg(long)]
    pub iterations: Option<usize>,
    /// L2 regularization (lambda) [default: `[train] regularization`, 20].
    #[arg(long)]
    pub regularization: Option<f32>,
    /// Confidence slope: c = 1 + alpha * s(w) (w: stars for a rating, 8 for a purchase, ...)
    /// [default: `[train] alpha`, 0.5].
    #[arg(long)]
    pub alpha: Option<f32>,
    /// How a user-item pair's summed weight becomes s(w): linear, log, bm25 or tfidf
    /// [default: `[train] scaling`, linear].
    #[arg(long)]
    pub scaling: Option<String>,
    /// Half-life of an event's weight by its age in days (0: off) [default: `[train]
    /// recency_half_life_days`, 0].
    #[arg(long, value_name = "DAYS")]
    pub recency_half_life_days: Option<f64>,
    /// Early stopping: stop after this many iterations without a better NDCG@10 on a
    /// validation split of the training data, and train with the best count (0: off)
    /// [default: `[train] early_stopping_patience`, 0].
    #[arg(long, value_name = "PATIENCE")]
    pub early_stopping: Option<usize>,
    /// Share of each user's training items held out as early stopping's validation
    /// [default: `[train] validation_fraction`, 0.1].
    #[arg(long)]
    pub validation_fraction: Option<f64>,
    /// Worker threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Seed of the initial factors.
    #[arg(long, default_value_t = AlsParams::default().seed)]
    pub seed: u64,
}

impl AlsArgs {
    /// The factors the flags or the config name, if any.
    pub fn factors(&self, config: &TrainConfig) -> Option<usize> {
        self.factors.or(config.factors)
    }

    /// The parameters with `factors` resolved, flags over `config`.
    pub fn params(&self, factors: usize, config: &TrainConfig) -> anyhow::Result<AlsParams> {
        let scaling = self.scaling.as_deref().unwrap_or(&config.scaling);
        let params = AlsParams {
            factors,
            iterations: self.iterations.unwrap_or(config.iterations),
            regularization: self.regularization.unwrap_or(config.regularization),
            alpha: self.alpha.unwrap_or(config.alpha),
            threads: self.threads,
            seed: self.seed,
            confidence: Confidence {
                scaling: Scaling::from_name(scaling).map_err(train_error)?,
                log_epsilon: config.log_epsilon,
                bm25_k1: config.bm25_k1,
                bm25_b: config.bm25_b,
                recency_half_life_days: self
                    .recency_half_life_days
                    .unwrap_or(config.recency_half_life_days),
            },
            ..AlsParams::default()
        };
        params.validate().map_err(train_error)?;
        Ok(params)
    }

    /// Early stopping, flags over `config`.
    pub fn early_stopping(&self, config: &TrainConfig) -> anyhow::Result<EarlyStopping> {
        let fraction = self
            .validation_fraction
            .unwrap_or(config.validation_fraction);
        if !(fraction > 0.0 && fraction < 1.0) {
            return Err(UsageError(format!(
                "--validation-fraction {fraction}: expected a share in (0, 1), e.g. 0.1"
            ))
            .into());
        }
        Ok(EarlyStopping {
            patience: self
                .early_stopping
                .unwrap_or(config.early_stopping_patience),
            validation_fraction: fraction,
            ..EarlyStopping::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_defaults_are_recd_trains() {
        let config = TrainConfig::default();
        let params = AlsArgs::default().params(64, &config).unwrap();
        let lib = AlsParams::default();
        assert_eq!(
            (params.iterations, params.regularization, params.alpha),
            (lib.iterations, lib.regularization, lib.alpha)
        );
        assert_eq!(params.confidence, Confidence::default());
        let stop = AlsArgs::default().early_stopping(&config).unwrap();
        assert_eq!(stop, EarlyStopping::default());
    }

    #[test]
    fn flags_win_over_the_config() {
        let config = TrainConfig {
            iterations: 7,
            alpha: 2.0,
            scaling: "log".into(),
            recency_half_life_days: 30.0,
            early_stopping_patience: 3,
            ..TrainConfig::default()
        };
        let args = AlsArgs {
            alpha: Some(4.0),
            scaling: Some("bm25".into()),
            ..AlsArgs::default()
        };
        let p = args.params(8, &config).unwrap();
        assert_eq!((p.iterations, p.alpha), (7, 4.0));
        assert_eq!(p.confidence.scaling, Scaling::Bm25);
        assert_eq!(p.confidence.recency_half_life_days, 30.0);
        assert_eq!(args.early_stopping(&config).unwrap().patience, 3);
        let bad = AlsArgs {
            scaling: Some("cubic".into()),
            ..AlsArgs::default()
        };
        assert!(bad.params(8, &config).is_err());
    }
}
