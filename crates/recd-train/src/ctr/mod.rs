//! The learned ranker offline: training rows from the logs, the fit, its quality on
//! held-out impressions against the fixed blend, and its gate.
//!
//! `recd train-ranker` runs [`train`]: [`export::export`] (point-in-time rows), a time
//! split (the latest `test_fraction` of the lists held out), [`fit::fit`] on the rest, then
//! AUC and per-list AUC on the held-out rows of the new ranker, of the fixed blend (the
//! scores the lists were served with) and of the live ranker if there is one. The rankers
//! predict each logged click with the position it was shown at, as the blend's served
//! order carries it (a ranker scored with its serving constant instead is reported too,
//! `learned_serving`: within a logged list the blend's order *is* the position, which
//! clicks follow whatever the items, so that figure understates the ranker). [`Gate`]: the new ranker passes when its per-list AUC is at
//! least the best of the others minus `margin`.
//!
//! # Layout
//! - [`export`]: point-in-time training rows; the offline feature state.
//! - [`fit`]: logistic regression by Newton's method.
//! - [`auc`]: AUC and per-list AUC.
//! - [`sim`]: a simulated shop with a known click model.

pub mod auc;
pub mod export;
pub mod fit;
pub mod sim;

use recd_core::features::{FeatureSet, LinearRanker, RankerInputs};
use serde::{Deserialize, Serialize};

use crate::error::TrainError;
use export::Row;
use fit::FitParams;

/// AUC over every held-out impression, and the per-list average.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Quality {
    /// AUC over all held-out impressions.
    pub auc: Option<f64>,
    /// AUC within lists, averaged (weighted by list length).
    pub gauc: Option<f64>,
}

/// What training found, for the version's record and the command's output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Rows (served items) trained on.
    pub train_rows: usize,
    /// Of which clicked.
    pub train_clicks: usize,
    /// Held-out rows.
    pub test_rows: usize,
    /// Of which clicked.
    pub test_clicks: usize,
    /// The new ranker on the held-out rows (with the positions shown).
    pub learned: Quality,
    /// The new ranker with the position at its serving constant.
    pub learned_serving: Quality,
    /// The served (fixed blend) scores on the held-out rows.
    pub blend: Quality,
    /// The live ranker on the held-out rows, if one is live and fits the feature set.
    pub live: Option<Quality>,
    /// The gate's verdict.
    pub passed: bool,
    /// The margin it was judged with.
    pub margin: f64,
}

/// Rows split by time: lists served before the cut train, the rest test.
pub fn time_split(rows: &[Row], test_fraction: f64) -> (Vec<Row>, Vec<Row>) {
    let mut times: Vec<i64> = rows.iter().map(|r| r.at_ms).collect();
    times.sort_unstable();
    times.dedup();
    let cut_at = ((times.len() as f64) * (1.0 - test_fraction)).floor() as usize;
    let cut = times.get(cut_at).copied().unwrap_or(i64::MAX);
    rows.iter().cloned().partition(|r| r.at_ms < cut)
}

/// The ranker's scores of `rows` at the positions they were shown at.
pub fn logged_scores(ranker: &LinearRanker, rows: &[Row]) -> Vec<f64> {
    rows.iter()
        .map(|r| ranker.logit(&r.features, &r.signals))
        .collect()
}

/// The ranker's serving scores of `rows`: the position set to its serving constant.
pub fn serving_scores(ranker: &LinearRanker, rows: &[Row]) -> Vec<f64> {
    rows.iter()
        .map(|r| {
            let s = RankerInputs {
                position: 0.0,
                ..r.signals
            };
            ranker.logit(&r.features, &s)
        })
        .collect()
}

/// AUC and per-list AUC of `scores` on `rows`.
pub fn quality(rows: &[Row], scores: &[f64]) -> Quality {
    let labels: Vec<bool> = rows.iter().map(|r| r.label).collect();
    let groups: Vec<&str> = rows.iter().map(|r| r.recommendation_id.as_str()).collect();
    Quality {
        auc: auc::auc(scores, &labels),
        gauc: auc::grouped_auc(&groups, scores, &labels),
    }
}

/// Fits on the earlier rows, measures on the later ones, and judges.
pub fn train(
    set: &FeatureSet,
    rows: &[Row],
    params: &FitParams,
    test_fraction: f64,
    live: Option<&LinearRanker>,
    margin: f64,
) -> Result<(LinearRanker, Report), TrainError> {
    if !(0.0..1.0).contains(&test_fraction) {
        return Err(TrainError::InvalidParam {
            name: "test_fraction",
            message: "must be in [0, 1)".into(),
        });
    }
    let (train_rows, test_rows) = time_split(rows, test_fraction);
    let ranker = fit::fit(set, &train_rows, params)?;
    let learned = quality(&test_rows, &logged_scores(&ranker, &test_rows));
    let learned_serving = quality(&test_rows, &serving_scores(&ranker, &test_rows));
    let served: Vec<f64> = test_rows.iter().map(|r| r.served_score).collect();
    let blend = quality(&test_rows, &served);
    let live = live
        .filter(|l| l.check(set).is_ok())
        .map(|l| quality(&test_rows, &logged_scores(l, &test_rows)));
    let best_other = [Some(blend), live]
        .into_iter()
        .flatten()
        .filter_map(|q| q.gauc)
        .fold(None, |m: Option<f64>, g| Some(m.map_or(g, |m| m.max(g))));
    let passed = match (learned.gauc, best_other) {
        (Some(l), Some(o)) => l >= o - margin,
        // Nothing held out to judge on: the fit alone decides (it is finite).
        (_, None) => true,
        (None, Some(_)) => false,
    };
    let count = |r: &[Row]| r.iter().filter(|r| r.label).count();
    let report = Report {
        train_rows: train_rows.len(),
        train_clicks: count(&train_rows),
        test_rows: test_rows.len(),
        test_clicks: count(&test_rows),
        learned,
        learned_serving,
        blend,
        live,
        passed,
        margin,
    };
    Ok((ranker, report))
}
