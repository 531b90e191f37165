//! The impression log's record: one served list with each item's retrieval signals and
//! served score, one JSON object per line. The server appends it (`[features]
//! impression_log`), `recd features export` and `recd train-ranker` read it.

use serde::{Deserialize, Serialize};

use crate::features::ranker::RankerInputs;

/// One item of a logged list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoggedItem {
    /// The item.
    pub id: String,
    /// The score it was served with (the fixed blend's, or the ranker's).
    pub score: f64,
    /// The similarity it was scored with (the candidates' lowest when KNN did not find
    /// it, as the fixed blend scores it).
    pub similarity: f64,
    /// Its popularity relative to the most popular candidate (0 when unknown).
    pub popularity: f64,
    /// Whether KNN found it.
    pub knn: bool,
}

/// One served list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoggedList {
    /// The answer's `recommendation_id` (events cite it).
    pub recommendation_id: String,
    /// Who it was shown to.
    pub user_id: String,
    /// When, ms since the epoch.
    pub at_ms: i64,
    /// The strategy that ranked it.
    pub strategy: String,
    /// The items, in the order shown (position = index).
    pub items: Vec<LoggedItem>,
}

impl LoggedItem {
    /// The ranker's signals of the item shown at `position`.
    pub fn signals(&self, position: usize) -> RankerInputs {
        RankerInputs {
            similarity: self.similarity,
            popularity: self.popularity,
            knn: self.knn,
            position: position as f64,
        }
    }
}
