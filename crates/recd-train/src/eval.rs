//! The offline protocol: split, train each model on the train half, rank for every test
//! user, score with [`crate::metrics`].
//!
//! Protocol: a user is evaluated when they have at least one train item and at least one
//! *relevant* test item (a test item they did not already have in train). Each model ranks
//! the whole catalog for the user minus their train items (the `exclude` list), and the
//! first `k` are scored. Users with no train history are skipped (counted in
//! [`EvalReport::cold_test_users`]) because no model here can personalise for them.
//!
//! Any model plugs in through [`Recommender`]; [`Evaluation`] runs the built-in ones
//! (popularity, item-kNN, ALS) plus the online replay, and lets the caller add more
//! (the serving pipeline) with [`Evaluation::add_model`] and [`Evaluation::add_replay`].

use std::collections::BTreeMap;
use std::time::Instant;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::als::{self, AlsModel, AlsParams};
use crate::baselines::{ItemKnn, Popularity};
use crate::dataset::Interactions;
use crate::early_stop::{EarlyStopReport, EarlyStopping, Validation, choose_iterations};
use crate::error::{Result, TrainError};
use crate::metrics::{ItemSimilarity, Metrics, MetricsAccumulator};
use crate::recommender::Recommender;
use crate::replay::{
    self, BatchAls, FoldInAls, RealtimeAls, RealtimePopularity, ReplayMetrics, ReplayRecommender,
};
use crate::session_mix::{DEFAULT_GRID, MixChoice, MixSearch, choose_session_mix};
use crate::split::{self, Split, SplitMethod};
use crate::transitions::{self, Transitions, TransitionsReplay};

/// Settings of `recd eval`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvalConfig {
    /// List length.
    pub k: usize,
    /// How to split.
    pub split: SplitMethod,
    /// Seed of the split (ALS has its own in `als.seed`).
    pub seed: u64,
    /// ALS hyper-parameters.
    pub als: AlsParams,
    /// Neighbours kept per item by item-kNN.
    pub knn_neighbours: usize,
    /// Half-life of the real-time popularity in the replay, in days (None: plain counts).
    pub replay_popularity_half_life_days: Option<f64>,
    /// Skip the online replay.
    pub skip_replay: bool,
    /// The `als_fold_in` replay arm's recent items per user (`recent_capacity`).
    pub fold_in_capacity: usize,
    /// The `als_fold_in` replay arm's share of the fold-in in the query.
    pub fold_in_share: f64,
    /// Early stopping of ALS on a validation split carved from the train half (off when
    /// `patience` is 0).
    pub early_stopping: EarlyStopping,
    /// Successors kept per item by the `transitions` model.
    pub transitions_top: usize,
    /// The `als_fold_in` arm's session mix (`fold_in.session_mix`), unless chosen.
    pub fold_in_session_mix: f64,
    /// Choose the session mix on a validation split of the train half
    /// ([`crate::session_mix`]) instead, for `als_fold_in` and the report.
    pub choose_session_mix: bool,
    /// The session's half-life and weights (`[model.session]`) of the mixed session.
    #[serde(skip)]
    pub session: recd_core::user::SessionParams,
    /// `[ranking] session_saturation` of the mixed session.
    pub session_saturation: f64,
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self {
            k: 10,
            split: SplitMethod::Random { test_fraction: 0.2 },
            seed: 42,
            als: AlsParams::default(),
            knn_neighbours: 100,
            replay_popularity_half_life_days: Some(30.0),
            skip_replay: false,
            fold_in_capacity: 200,
            fold_in_share: recd_core::FoldInParams::default().share,
            early_stopping: EarlyStopping::default(),
            transitions_top: transitions::DEFAULT_TOP,
            fold_in_session_mix: recd_core::FoldInParams::default().session_mix,
            choose_session_mix: false,
            session: recd_core::user::SessionParams::default(),
            session_saturation: recd_core::pipeline::RankParams::default().session_saturation,
        }
    }
}

/// One model's entry in [`EvalReport::models`]: API.md's `M` plus its training time.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ModelReport {
    /// The metrics.
    #[serde(flatten)]
    pub metrics: Metrics,
    /// Seconds to train this model.
    pub train_seconds: f64,
}

/// The `recd eval --json` document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// Data set name.
    pub dataset: String,
    /// Split name (`random`, `time`, `leave-last-out`).
    pub split: String,
    /// List length.
    pub k: usize,
    /// ALS training seconds.
    pub train_seconds: f64,
    /// Offline metrics per model (`popularity`, `item_knn`, `als`, later `pipeline`).
    pub models: BTreeMap<String, ModelReport>,
    /// Online replay per recommender (`popularity`, `batch`, `als_realtime`, later `realtime`).
    pub replay: BTreeMap<String, ReplayMetrics>,
    /// What intra-list diversity is measured on: `genres` or `als_item_factors`.
    pub diversity_basis: String,
    /// Users evaluated offline.
    pub users: usize,
    /// Users with test items but no train history (not evaluated offline).
    pub cold_test_users: usize,
    /// Train events.
    pub train_events: usize,
    /// Test events.
    pub test_events: usize,
    /// Catalog size.
    pub items: usize,
    /// What early stopping chose (with `--early-stopping`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub early_stopping: Option<EarlyStopReport>,
    /// The session mix chosen on validation (with `--session-mix auto`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_mix: Option<MixChoice>,
}

impl EvalReport {
    /// The human-readable table `recd eval` prints without `--json`.
    pub fn to_table(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "dataset {}  split {}  k {}  users {} (cold, skipped: {})  events train {} / test {}  items {}",
            self.dataset,
            self.split,
            self.k,
            self.users,
            self.cold_test_users,
            self.train_events,
            self.test_events,
            self.items
        );
        let k = self.k;
        let _ = writeln!(
            out,
            "{:<12} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9} {:>9} {:>8} {:>8}",
            "model",
            format!("P@{k}"),
            format!("R@{k}"),
            format!("NDCG@{k}"),
            format!("MAP@{k}"),
            format!("HR@{k}"),
            "coverage",
            "diversity",
            "novelty",
            "train_s"
        );
        for (name, m) in &self.models {
            let x = &m.metrics;
            let _ = writeln!(
                out,
                "{name:<12} {:>8.4} {:>8.4} {:>8.4} {:>8.4} {:>8.4} {:>9.4} {:>9.4} {:>8.3} {:>8.3}",
                x.precision,
                x.recall,
                x.ndcg,
                x.map,
                x.hit_rate,
                x.coverage,
                x.diversity,
                x.novelty,
                m.train_seconds
            );
        }
        let _ = writeln!(
            out,
            "diversity on {}; novelty in bits",
            self.diversity_basis
        );
        if let Some(stop) = &self.early_stopping {
            let _ = writeln!(
                out,
                "ALS early stopping: {} iterations chosen (validation NDCG@{k} {:.4} on {} users; {} run)",
                stop.iterations,
                stop.ndcg,
                stop.users,
                stop.ndcg_by_iteration.len()
            );
        }
        if !self.replay.is_empty() {
            let _ = writeln!(
                out,
                "{:<12} {:>8} {:>8} {:>8}",
                "replay",
                format!("HR@{k}"),
                format!("NDCG@{k}"),
                "events"
            );
            for (name, r) in &self.replay {
                let _ = writeln!(
                    out,
                    "{name:<12} {:>8.4} {:>8.4} {:>8}",
                    r.hit_rate, r.ndcg, r.events
                );
            }
        }
        out
    }
}

/// Per-user ground truth of a split, shared by every model's evaluation.
#[derive(Debug, Clone)]
pub struct EvalContext {
    /// Sorted train items per user (the `exclude` lists).
    pub train_items: Vec<Vec<u32>>,
    /// Sorted relevant test items per user (test items not in train).
    pub relevant: Vec<Vec<u32>>,
    /// Users evaluated: ≥ 1 train item and ≥ 1 relevant test item.
    pub users: Vec<u32>,
    /// Users with relevant test items but no train items.
    pub cold_users: usize,
    /// Distinct train users per item (novelty).
    pub item_users: Vec<u32>,
    /// Users with any train item.
    pub n_train_users: usize,
    /// Catalog size.
    pub n_items: usize,
}

impl EvalContext {
    /// Ground truth of `split`.
    pub fn new(split: &Split) -> Self {
        let train_items = split.train.items_by_user();
        let test_items = split.test.items_by_user();
        let relevant: Vec<Vec<u32>> = test_items
            .into_iter()
            .zip(&train_items)
            .map(|(t, tr)| {
                t.into_iter()
                    .filter(|i| tr.binary_search(i).is_err())
                    .collect()
            })
            .collect();
        let users: Vec<u32> = (0..relevant.len() as u32)
            .filter(|&u| !relevant[u as usize].is_empty() && !train_items[u as usize].is_empty())
            .collect();
        let cold_users = (0..relevant.len())
            .filter(|&u| !relevant[u].is_empty() && train_items[u].is_empty())
            .count();
        let n_train_users = train_items.iter().filter(|t| !t.is_empty()).count();
        Self {
            item_users: split.train.item_user_counts(),
            train_items,
            relevant,
            users,
            cold_users,
            n_train_users,
            n_items: split.train.n_items(),
        }
    }

    /// Score `model`'s top-`k` lists over the evaluated users (in parallel).
    pub fn evaluate(
        &self,
        model: &dyn Recommender,
        k: usize,
        sim: Option<&ItemSimilarity>,
    ) -> Metrics {
        self.accumulate(model, k, sim).finish()
    }

    /// Like [`EvalContext::evaluate`], returning the accumulator (e.g. for
    /// [`MetricsAccumulator::implicit_precision`]).
    pub fn accumulate(
        &self,
        model: &dyn Recommender,
        k: usize,
        sim: Option<&ItemSimilarity>,
    ) -> MetricsAccumulator {
        self.accumulate_lists(k, sim, |u| {
            model.recommend(u, k, &self.train_items[u as usize])
        })
    }

    /// Score precomputed lists (`lists(u)` for each evaluated user `u`), e.g. another
    /// library's recommendations read from a file.
    pub fn accumulate_lists(
        &self,
        k: usize,
        sim: Option<&ItemSimilarity>,
        lists: impl Fn(u32) -> Vec<u32> + Sync,
    ) -> MetricsAccumulator {
        // lists in parallel, sums in user order: the report is bit-for-bit reproducible
        let recs: Vec<Vec<u32>> = self.users.par_iter().map(|&u| lists(u)).collect();
        let mut acc = MetricsAccumulator::new(k, self.n_items);
        for (&u, r) in self.users.iter().zip(&recs) {
            acc.add(
                r,
                &self.relevant[u as usize],
                sim,
                &self.item_users,
                self.n_train_users,
            );
        }
        acc
    }
}

/// A prepared evaluation: the split, its ground truth, and the trained ALS model (which
/// the serving pipeline may reuse).
#[derive(Debug)]
pub struct Evaluation {
    /// The configuration.
    pub config: EvalConfig,
    /// Data set name for the report.
    pub dataset: String,
    /// The split.
    pub split: Split,
    /// Its ground truth.
    pub context: EvalContext,
    /// ALS trained on `split.train`.
    pub als: AlsModel,
    /// The similarity diversity is measured with.
    pub similarity: ItemSimilarity,
    diversity_basis: &'static str,
    /// What early stopping chose, when it ran.
    pub early_stopping: Option<EarlyStopReport>,
    /// The settings `als` was trained with (early stopping's iterations).
    als_params: AlsParams,
}

impl Evaluation {
    /// Split `data`, train ALS on the train half. `item_sets` (e.g. genre indices per
    /// item, indexed like `data`'s item map) makes diversity use them instead of the ALS
    /// item factors.
    pub fn prepare(
        data: &Interactions,
        dataset: &str,
        config: EvalConfig,
        item_sets: Option<Vec<Vec<u32>>>,
    ) -> Result<Self> {
        let split = split::split(data, config.split, config.seed)?;
        Self::from_split(split, dataset, config, item_sets)
    }

    /// Like [`Evaluation::prepare`] on a split already made (or read).
    pub fn from_split(
        split: split::Split,
        dataset: &str,
        config: EvalConfig,
        item_sets: Option<Vec<Vec<u32>>>,
    ) -> Result<Self> {
        Self::from_split_with(split, dataset, config, item_sets, |_, _, _| {})
    }

    /// [`Evaluation::from_split`] with a callback after each ALS iteration (as
    /// [`als::train_with`]), so a caller can show the training's progress and loss.
    pub fn from_split_with(
        split: split::Split,
        dataset: &str,
        config: EvalConfig,
        item_sets: Option<Vec<Vec<u32>>>,
        on_iteration: impl FnMut(als::IterationInfo, &[f32], &[f32]),
    ) -> Result<Self> {
        if config.k == 0 {
            return Err(TrainError::param("k", "must be >= 1"));
        }
        let context = EvalContext::new(&split);
        if context.users.is_empty() {
            return Err(TrainError::Empty(
                "no test user has both train and test items".into(),
            ));
        }
        // Early stopping looks at a validation split of the train half only: the test half
        // stays unseen until the models are scored.
        let mut early_stopping = None;
        let mut params = config.als.clone();
        let stop = config.early_stopping;
        if stop.patience > 0 {
            let validation =
                Validation::carve(&split.train, stop.validation_fraction, stop.seed, stop.k)?;
            let report = choose_iterations(&validation, &params, stop.patience)?;
            params.iterations = report.iterations;
            early_stopping = Some(report);
        }
        let als = als::train_with(&split.train, &params, on_iteration)?;
        let (similarity, diversity_basis) = match item_sets {
            Some(sets) if sets.iter().any(|s| !s.is_empty()) => {
                (ItemSimilarity::from_sets(sets), "genres")
            }
            _ => (
                ItemSimilarity::from_vectors(als.factors, &als.item_factors),
                "als_item_factors",
            ),
        };
        Ok(Self {
            config,
            dataset: dataset.to_owned(),
            split,
            context,
            als,
            similarity,
            diversity_basis,
            early_stopping,
            als_params: params,
        })
    }

    /// An empty report for this evaluation.
    pub fn report(&self) -> EvalReport {
        EvalReport {
            dataset: self.dataset.clone(),
            split: self.split.method.name().to_owned(),
            k: self.config.k,
            train_seconds: self.als.train_seconds,
            models: BTreeMap::new(),
            replay: BTreeMap::new(),
            diversity_basis: self.diversity_basis.to_owned(),
            users: self.context.users.len(),
            cold_test_users: self.context.cold_users,
            train_events: self.split.train.len(),
            test_events: self.split.test.len(),
            items: self.context.n_items,
            early_stopping: self.early_stopping.clone(),
            session_mix: None,
        }
    }

    /// Evaluate `model` and record it as `name`.
    pub fn add_model(
        &self,
        report: &mut EvalReport,
        name: &str,
        model: &dyn Recommender,
        train_seconds: f64,
    ) {
        let metrics = self
            .context
            .evaluate(model, self.config.k, Some(&self.similarity));
        report.models.insert(
            name.to_owned(),
            ModelReport {
                metrics,
                train_seconds,
            },
        );
    }

    /// Replay the test events through `rec` and record it as `name`.
    pub fn add_replay(&self, report: &mut EvalReport, name: &str, rec: &mut dyn ReplayRecommender) {
        let m = replay::replay(&self.split, rec, self.config.k);
        report.replay.insert(name.to_owned(), m);
    }

    /// The session mix chosen on a validation split of the train half when the config
    /// asks for it (`None` otherwise). Only `split.train` is read: the test half is
    /// still unseen.
    pub fn choose_session_mix(&self) -> Result<Option<MixChoice>> {
        if !self.config.choose_session_mix {
            return Ok(None);
        }
        let search = MixSearch {
            grid: DEFAULT_GRID.to_vec(),
            method: self.split.method,
            seed: self.config.seed,
            k: self.config.k,
            capacity: self.config.fold_in_capacity,
            share: self.config.fold_in_share,
            session: self.config.session.clone(),
            saturation: self.config.session_saturation,
        };
        choose_session_mix(&self.split.train, &self.als_params, &search).map(Some)
    }

    /// Popularity, item-kNN and ALS offline; real-time popularity, batch ALS and ALS with
    /// real-time user vectors in the replay.
    pub fn run_builtin(&self) -> EvalReport {
        let mut report = self.report();
        let t = Instant::now();
        let pop = Popularity::fit(&self.split.train);
        self.add_model(&mut report, "popularity", &pop, t.elapsed().as_secs_f64());
        let knn = ItemKnn::fit(&self.split.train, self.config.knn_neighbours);
        self.add_model(&mut report, "item_knn", &knn, knn.train_seconds);
        self.add_model(&mut report, "als", &self.als, self.als.train_seconds);
        let t = Instant::now();
        let seq = Transitions::fit(&self.split.train, self.config.transitions_top);
        let seq_seconds = t.elapsed().as_secs_f64();
        self.add_model(&mut report, "transitions", &seq, seq_seconds);
        if !self.config.skip_replay {
            let half_life_ms = self
                .config
                .replay_popularity_half_life_days
                .map(|d| d * 86_400_000.0);
            let mut rt = RealtimePopularity::new(&self.split.train, half_life_ms);
            self.add_replay(&mut report, "popularity", &mut rt);
            let mut batch = BatchAls::new(&self.als, pop.clone());
            self.add_replay(&mut report, "batch", &mut batch);
            let mix = match self.choose_session_mix() {
                Ok(Some(choice)) => {
                    let chosen = choice.chosen;
                    report.session_mix = Some(choice);
                    chosen
                }
                Ok(None) => self.config.fold_in_session_mix,
                Err(e) => {
                    tracing::warn!(error = %e, "choosing the session mix failed; kept the configured one");
                    self.config.fold_in_session_mix
                }
            };
            let mut fold = FoldInAls::new(
                &self.als,
                &self.split.train,
                pop.clone(),
                self.config.fold_in_capacity,
                self.config.fold_in_share,
            )
            .with_solver_of(&self.config.session.fold_in)
            .with_session_mix(
                mix,
                self.config.session.clone(),
                self.config.session_saturation,
            );
            self.add_replay(&mut report, "als_fold_in", &mut fold);
            let mut live = RealtimeAls::new(&self.als, &self.split.train, pop);
            self.add_replay(&mut report, "als_realtime", &mut live);
            self.add_replay(
                &mut report,
                "transitions",
                &mut TransitionsReplay::new(&seq),
            );
        }
        report
    }
}

/// The whole of `recd eval` without the serving pipeline: prepare + [`Evaluation::run_builtin`].
pub fn run(
    data: &Interactions,
    dataset: &str,
    config: EvalConfig,
    item_sets: Option<Vec<Vec<u32>>>,
) -> Result<EvalReport> {
    Ok(Evaluation::prepare(data, dataset, config, item_sets)?.run_builtin())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two taste groups: users 0..20 like items 0..10, users 20..40 like items 10..20;
    /// item 0 and 10 are liked by everyone in their group (popular).
    fn groups() -> Interactions {
        let mut ev = Vec::new();
        for u in 0..40u32 {
            let base = if u < 20 { 0 } else { 10 };
            for j in 0..10u32 {
                if j == 0 || (u + j) % 3 != 0 {
                    ev.push((u, base + j, 1.0, i64::from(u * 10 + j)));
                }
            }
        }
        Interactions::from_indices(40, 20, &ev)
    }

    #[test]
    fn context_relevant_excludes_train_items_and_counts_cold_users() {
        let d = Interactions::from_indices(
            3,
            4,
            &[
                (0, 0, 1.0, 0),
                (0, 1, 1.0, 1),
                (1, 2, 1.0, 2),
                (0, 0, 1.0, 9),
                (0, 3, 1.0, 9),
                (2, 3, 1.0, 9),
            ],
        );
        let split = split::split(&d, SplitMethod::Time { test_fraction: 0.5 }, 0).unwrap();
        let ctx = EvalContext::new(&split);
        assert_eq!(ctx.relevant[0], vec![3], "item 0 is in train already");
        assert_eq!(ctx.users, vec![0]);
        assert_eq!(ctx.cold_users, 1, "user 2 only appears in test");
    }

    #[test]
    fn builtin_models_run_and_als_beats_popularity_on_groups() {
        let config = EvalConfig {
            als: AlsParams {
                factors: 4,
                iterations: 10,
                regularization: 1.0,
                alpha: 5.0,
                threads: 1,
                ..Default::default()
            },
            ..Default::default()
        };
        let report = run(&groups(), "groups", config, None).unwrap();
        assert_eq!(report.k, 10);
        assert_eq!(report.split, "random");
        assert_eq!(report.diversity_basis, "als_item_factors");
        let pop = report.models["popularity"].metrics;
        let knn = report.models["item_knn"].metrics;
        let als = report.models["als"].metrics;
        assert!(als.ndcg > pop.ndcg, "als {als:?} pop {pop:?}");
        assert!(knn.ndcg > pop.ndcg, "knn {knn:?} pop {pop:?}");
        assert!(report.replay.contains_key("popularity") && report.replay.contains_key("batch"));
        assert!(
            report.models.contains_key("transitions") && report.replay.contains_key("transitions")
        );
        assert!(report.early_stopping.is_none());
        let json = serde_json::to_value(&report).unwrap();
        for key in [
            "precision",
            "recall",
            "ndcg",
            "map",
            "hit_rate",
            "coverage",
            "diversity",
            "novelty",
            "train_seconds",
        ] {
            assert!(json["models"]["als"][key].is_number(), "{key} missing");
        }
        for key in ["hit_rate", "ndcg", "events"] {
            assert!(json["replay"]["batch"][key].is_number(), "{key} missing");
        }
        assert!(json["train_seconds"].is_number());
        let table = report.to_table();
        assert!(
            table.contains("NDCG@10") && table.contains("item_knn") && table.contains("batch"),
            "{table}"
        );
    }

    #[test]
    fn genre_sets_drive_diversity_when_given() {
        let sets: Vec<Vec<u32>> = (0..20).map(|i| vec![i % 2]).collect();
        let config = EvalConfig {
            skip_replay: true,
            als: AlsParams {
                factors: 4,
                iterations: 2,
                ..Default::default()
            },
            ..Default::default()
        };
        let report = run(&groups(), "groups", config, Some(sets)).unwrap();
        assert_eq!(report.diversity_basis, "genres");
        assert!(report.replay.is_empty());
        let d = report.models["popularity"].metrics.diversity;
        assert!(d > 0.0 && d < 1.0, "{d}");
    }

    /// Session-shaped data: each user walks along a ring of items, one step a minute, so
    /// the next item is the one after the last (what a session vector points at).
    fn walks() -> Interactions {
        let (users, items) = (80u32, 60u32);
        let mut ev = Vec::new();
        for u in 0..users {
            let start = (u * 13) % items;
            for step in 0..20u32 {
                let t = i64::from(step) * 60_000 + i64::from(u) * 1_000;
                ev.push((u, (start + step) % items, 1.0, t));
            }
        }
        Interactions::from_indices(users as usize, items as usize, &ev)
    }

    fn mix_config() -> EvalConfig {
        EvalConfig {
            k: 5,
            split: SplitMethod::Time { test_fraction: 0.3 },
            als: AlsParams {
                factors: 8,
                iterations: 8,
                regularization: 0.5,
                threads: 1,
                ..Default::default()
            },
            choose_session_mix: true,
            ..Default::default()
        }
    }

    #[test]
    fn the_session_mix_is_chosen_on_the_train_half_alone() {
        let a = Evaluation::prepare(&walks(), "walks", mix_config(), None).unwrap();
        // the same train half with another test half: every test event on another item
        let mut other = a.split.clone();
        let n = other.test.n_items() as u32;
        other.test.items.iter_mut().for_each(|i| *i = (*i + 17) % n);
        let b = Evaluation::from_split(other, "walks", mix_config(), None).unwrap();
        let (ca, cb) = (
            a.choose_session_mix().unwrap().unwrap(),
            b.choose_session_mix().unwrap().unwrap(),
        );
        assert_eq!(ca, cb, "the test half changed the choice");
        // the validation split is carved from the train half: fewer events than it has
        assert!(ca.validation_events > 0 && ca.validation_events < a.split.train.len());
    }

    #[test]
    fn the_chosen_session_mix_is_reported_and_serves_the_fold_in_arm() {
        let ev = Evaluation::prepare(&walks(), "walks", mix_config(), None).unwrap();
        let report = ev.run_builtin();
        let choice = report.session_mix.clone().expect("chosen");
        assert_eq!(choice.trials.len(), DEFAULT_GRID.len());
        // walks are what the session vector knows: a mix above 0 wins on validation
        assert!(choice.chosen > 0.0, "{choice:?}");
        let replay_with = |mix: f64| {
            let mut arm = FoldInAls::new(
                &ev.als,
                &ev.split.train,
                Popularity::fit(&ev.split.train),
                ev.config.fold_in_capacity,
                ev.config.fold_in_share,
            )
            .with_solver_of(&ev.config.session.fold_in)
            .with_session_mix(
                mix,
                ev.config.session.clone(),
                ev.config.session_saturation,
            );
            replay::replay(&ev.split, &mut arm, ev.config.k)
        };
        assert_eq!(report.replay["als_fold_in"], replay_with(choice.chosen));
        assert_ne!(report.replay["als_fold_in"], replay_with(0.0));
        // without choosing, the configured mix (0) serves and nothing is reported
        let fixed = Evaluation::prepare(
            &walks(),
            "walks",
            EvalConfig {
                choose_session_mix: false,
                ..mix_config()
            },
            None,
        )
        .unwrap()
        .run_builtin();
        assert!(fixed.session_mix.is_none());
        assert_eq!(fixed.replay["als_fold_in"], replay_with(0.0));
    }
}
