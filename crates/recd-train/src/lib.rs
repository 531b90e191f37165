//! recd-train: offline learning and evaluation for recd.
//!
//! Everything the `recd train`, `recd eval` and `recd import movielens` commands need,
//! as a library with no IO beyond reading data files. The binary wires the CLI.
//!
//! # Layout
//! - [`dataset`]: raw interactions (string ids, recd-core's event types) → dense [`Interactions`]
//!   with id maps, [`ConfidenceWeights`] (event kind / rating / dwell → confidence input),
//!   and the sparse [`Csr`] matrix the models train on.
//! - [`movielens`]: the three GroupLens layouts (ml-100k, ml-1m, ml-latest) and the generic
//!   jsonl / csv interaction files of `--interactions FILE`.
//! - [`newitems`]: the new-item evaluation (`recd eval --new-items`): items first seen in
//!   the test period, with the item fold-in and the content map against none.
//! - [`table`]: interaction files as users have them: CSV, TSV or JSON lines, plain or
//!   gzip, sniffed, with a column mapping (`recd import events`, `recd eval --interactions`).
//! - [`split`]: train/test splits: random per user, global time cutoff, leave-last-out.
//! - [`confidence`]: how summed event weights become ALS confidences: linear, log, bm25 or
//!   tf-idf scaling as in `implicit`, and recency weighting by event age.
//! - [`als`]: implicit-feedback ALS (Hu, Koren & Volinsky) with the conjugate-gradient
//!   solver (Takács et al.), multi-threaded with rayon.
//! - [`early_stop`]: a validation split carved from training data; early stopping of ALS
//!   by validation NDCG.
//! - [`tune`]: grid or random search of ALS settings on that validation (`recd tune`).
//! - [`transitions`]: item-to-item transitions (first-order Markov): the next item after
//!   each item, as a model, a replay arm and a serving candidate source's table.
//! - [`baselines`]: popularity and item-kNN (cosine on binary co-occurrence).
//! - [`metrics`]: precision, recall, NDCG, MAP, hit rate @k; coverage, diversity, novelty.
//! - [`recommender`]: [`recommender::Recommender`], what a model under offline evaluation
//!   implements (popularity, item-kNN, ALS here; the serving pipeline in `recd eval`).
//! - [`gate`]: the quality gate a trained model passes before it goes live (held-out
//!   recent events, the live model or popularity as the baseline, sane vectors).
//! - [`eval`]: the offline protocol: run each [`recommender::Recommender`] on a split, report.
//! - [`replay`]: the online replay: walk test events in time order, ask a
//!   [`replay::ReplayRecommender`] before each event, then let it observe the event.
//! - [`session_mix`]: `fold_in.session_mix` (the session vector mixed into the fold-in's
//!   query) chosen on a validation split of the train half by the replay.
//! - [`ctr`]: the learned ranker offline: point-in-time training rows from the event and
//!   impression logs, logistic regression, AUC against the fixed blend, a click simulation.
//! - [`rank`]: deterministic top-k selection.
//! - [`shop`]: deterministic synthetic shop sessions (views, carts, purchases, repeats, new
//!   items, seasons): purchase-style evaluation data.
//! - [`synthetic`]: deterministic power-law interaction matrices of any size (ALS scaling
//!   benchmarks).
//! - [`error`]: the library's error type.
//!
//! # Wiring the CLI
//! ```
//! use recd_core::EventType;
//! use recd_train::{als, eval, ConfidenceWeights, Interaction, Interactions};
//!
//! // `recd train`: events (from the log, or `movielens::read_interactions`) → vectors
//! let events: Vec<Interaction> = (0..40)
//!     .map(|n| Interaction {
//!         user: format!("u{}", n % 8),
//!         item: format!("sku-{}", (n * 7) % 11),
//!         kind: EventType::Purchase,
//!         value: None,
//!         timestamp_ms: 1_700_000_000_000 + n,
//!     })
//!     .collect();
//! let (data, _skipped) = Interactions::from_raw(events, &ConfidenceWeights::default());
//! let params = als::AlsParams { factors: 8, iterations: 5, regularization: 1.0, ..Default::default() };
//! let model = als::train(&data, &params)?;
//! for (i, id) in model.item_ids.ids().iter().enumerate() {
//!     let _vector: &[f32] = model.item_vector(i as u32).unwrap_or(&[]); // write back under `id`
//! }
//! let _top = model.recommend(0, 5, true); // (item index, score), training items excluded
//!
//! // `recd eval`: built-in models + replay, then the pipeline through the traits
//! let config = eval::EvalConfig { als: params, ..Default::default() };
//! let ev = eval::Evaluation::prepare(&data, "example", config, None)?;
//! let mut report = ev.run_builtin();
//! // ev.add_model(&mut report, "pipeline", &pipeline, seconds);     // impl recommender::Recommender
//! // ev.add_replay(&mut report, "realtime", &mut realtime);          // impl replay::ReplayRecommender
//! let _json = serde_json::to_string(&report).unwrap_or_default();   // `--json`
//! let _table = report.to_table();                                   // default output
//! # Ok::<(), recd_train::TrainError>(())
//! ```

pub mod als;
pub mod baselines;
pub mod confidence;
pub mod ctr;
pub mod dataset;
pub mod early_stop;
pub mod error;
pub mod eval;
pub mod gate;
pub mod metrics;
pub mod movielens;
pub mod newitems;
pub mod rank;
pub mod recommender;
pub mod replay;
pub mod session_mix;
pub mod shop;
pub mod split;
pub mod synthetic;
pub mod table;
pub mod transitions;
pub mod tune;

pub use dataset::{ConfidenceWeights, Csr, IdMap, Interaction, Interactions, neutral_warning};
pub use error::{Result, TrainError};
