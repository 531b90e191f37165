//! recd-core: the domain of the recommendation engine, free of IO.
//!
//! Everything here is plain data and pure functions, so that both storage backends
//! (embedded and Redis), the HTTP server, training and the offline replay share one
//! definition of what an item, a filter, an event and a user's state *mean*.
//!
//! # Layout
//! - [`id`]: validation of item and user ids (the API's 1–256 bytes, no control chars).
//! - [`schema`]: the item schema from config (vector dimension + metric, typed fields).
//! - [`item`]: an item validated against the schema, and its JSON form.
//! - [`filter`]: the filter language of API.md: parse + validate against the schema, evaluate.
//! - [`text`]: the tokenizer shared by text fields, text filters and text queries.
//! - [`event`]: events (view, click, dwell, add_to_cart, purchase, rating) and their weights.
//! - [`user`]: a user's real-time state and how an event changes it (session vector, counters).
//! - [`foldin`]: the fold-in update: a user's ALS vector solved with the item vectors fixed.
//! - [`newitems`]: new and cold items: the item-side fold-in and the content map.
//! - [`popularity`]: time-decayed item popularity in the log domain (order-preserving over time).
//! - [`vector`]: the workspace's dot / squared-L2 kernels (the index and ALS call them too),
//!   norms, normalization, cosine.
//! - [`pipeline`]: the ranking pipeline: query vector, scoring, re-ranking, diversity, reasons.
//! - [`experiment`]: experiments: deterministic assignment (variants, holdouts, layers), the
//!   statistics of their results, Thompson-sampling bandits and team-draft interleaving.
//! - [`monitor`]: the math of online monitoring: feature drift (PSI, KS, chi-square), catalog
//!   coverage and exposure Gini over a sliding window, per-list diversity/entropy/novelty.
//! - [`features`]: online features (windowed counts, recency, rates, fields) and the
//!   learned ranker's model.
//! - [`error`]: the validation error type.

pub mod error;
pub mod event;
pub mod experiment;
pub mod features;
pub mod filter;
pub mod foldin;
pub mod id;
pub mod item;
pub mod monitor;
pub mod newitems;
pub mod pipeline;
pub mod popularity;
pub mod schema;
pub mod text;
pub mod user;
pub mod vector;

/// Inline short strings (the ids [`UserState`] keeps), re-exported so that every crate
/// names the same type.
pub use compact_str::CompactString;
pub use error::ValidationError;
pub use event::{Event, EventType, EventWeights};
pub use filter::Filter;
pub use foldin::{FoldInParams, FoldModel, FoldSolver, Gram, UpdateRule};
pub use item::{FieldValue, Item, ItemUpsert};
pub use newitems::{ContentModel, NewItemParams};
pub use schema::{FieldType, Metric, Quantization, Schema, VectorSpec};
pub use user::{
    Counters, ExcludedItems, FoldState, LookupHints, SessionParams, SessionVector, UserState,
    item_key,
};
