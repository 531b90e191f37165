//! recd-train: offline learning and evaluation for recd.
//!
//! Everything the `recd train`, `recd eval` and `recd import movielens` commands need,
//! as a library with no IO beyond reading data files. The binary wires the CLI.
//!
//! # Layout
//! - [`dataset`]: raw interactions (string ids, event kinds) → dense [`Interactions`]
//!   with id maps, [`ConfidenceWeights`] (event kind / rating / dwell → confidence input),
//!   and the sparse [`Csr`] matrix the models train on.
//! - [`movielens`]: the three GroupLens layouts (ml-100k, ml-1m, ml-latest) and the generic
//!   jsonl / csv interaction files of `--interactions FILE`.
//! - [`split`]: train/test splits: random per user, global time cutoff, leave-last-out.
//! - [`als`]: implicit-feedback ALS (Hu, Koren & Volinsky) with the conjugate-gradient
//!   solver (Takács et al.), multi-threaded with rayon.
//! - [`baselines`]: popularity and item-kNN (cosine on binary co-occurrence).
//! - [`metrics`]: precision, recall, NDCG, MAP, hit rate @k; coverage, diversity, novelty.
//! - [`eval`]: the offline protocol: run each [`eval::Recommender`] on a split, report.
//! - [`replay`]: the online replay: walk test events in time order, ask a
//!   [`replay::ReplayRecommender`] before each event, then let it observe the event.
//! - [`error`]: the library's error type.

pub mod als;
pub mod baselines;
pub mod dataset;
pub mod error;
pub mod eval;
pub mod metrics;
pub mod movielens;
pub mod rank;
pub mod replay;
pub mod split;

pub use dataset::{ConfidenceWeights, Csr, IdMap, Interaction, Interactions, Kind};
pub use error::{Result, TrainError};
