//! The ranking pipeline between retrieval and the answer, as pure functions.
//!
//! The server does the IO (one backend call for the user, one for each candidate source);
//! everything that decides *what* to show happens here, so the offline replay, both backends
//! and the HTTP path rank identically:
//! 1. [`query::query_vector`]: blend the long-term and the session vector;
//! 2. [`candidates::merge`]: union the KNN, popular, text and transitions candidates
//!    ([`transitions`]: what often comes next after the user's recent items), keeping each
//!    signal;
//! 3. [`score::score_all`]: one score per candidate (weighted signals, or reciprocal rank
//!    fusion when a text query takes part), or [`learned::score_learned`] when the
//!    strategy names a learned ranker (its click probability from the candidate's
//!    features and signals);
//! 4. [`rerank::rerank`]: drop excluded / purchased / seen items, cap by a diversity field,
//!    attach reasons, cut to `count`.

pub mod candidates;
pub mod learned;
pub mod query;
pub mod rerank;
pub mod score;
pub mod transitions;

use serde::{Deserialize, Serialize};

pub use candidates::{Candidate, merge, merge_with_next};
pub use learned::score_learned;
pub use query::{QueryVector, query_vector};
pub use rerank::{Diversity, Ranked, RerankOutcome, rerank};
pub use score::{Scored, score_all};

/// `transitions_candidates` when the source is on (recd eval's `*_transitions` arms, the
/// README's suggestion). Off by default: it helps on time splits (BENCHMARKS.md), but
/// whether it costs anything on random and leave-last-out splits is not measured yet.
pub const DEFAULT_TRANSITIONS_CANDIDATES: usize = 50;
/// Default `transitions_weight`.
pub const DEFAULT_TRANSITIONS_WEIGHT: f64 = 0.5;

/// Settings of the ranking pipeline (`[ranking]` in config).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RankParams {
    /// KNN candidates fetched per request (before re-ranking), at least `count`.
    pub candidates: usize,
    /// Popular candidates fetched per request.
    pub popular_candidates: usize,
    /// Transitions candidates per request: items that often come next after the user's
    /// recent ones, from the live model version's transition table; 0 = off.
    pub transitions_candidates: usize,
    /// Weight of the transitions score (relative to the best transitions candidate, in
    /// (0, 1]) in the score.
    pub transitions_weight: f64,
    /// The largest share the session vector can take in the query vector...
    pub session_share_max: f64,
    /// ...reached gradually: at this much (decayed) session weight the share is half the max.
    pub session_saturation: f64,
    /// Weight of vector similarity in the score.
    pub similarity_weight: f64,
    /// Weight of (relative, time-decayed) popularity in the score.
    pub popularity_weight: f64,
    /// Whether items the user recently touched are left out.
    pub exclude_seen: bool,
    /// The k of reciprocal rank fusion, 1/(k + rank).
    pub rrf_k: f64,
    /// The learned ranker that scores instead of the fixed blend: `"latest"` (the newest
    /// accepted `recd train-ranker` version) or a version (`"v7"`); none: the blend.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ranker: Option<String>,
}

impl Default for RankParams {
    fn default() -> Self {
        Self {
            candidates: 50,
            popular_candidates: 50,
            transitions_candidates: 0,
            transitions_weight: DEFAULT_TRANSITIONS_WEIGHT,
            session_share_max: 0.8,
            session_saturation: 1.0,
            similarity_weight: 1.0,
            popularity_weight: 0.1,
            exclude_seen: true,
            rrf_k: 60.0,
            ranker: None,
        }
    }
}
