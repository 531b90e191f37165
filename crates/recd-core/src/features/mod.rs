//! Online features: windowed counts and sums per user, item and user × tag value, windowed
//! distinct counts (a user's items, an item's users), recency,
//! item rates and item fields; defined once in config, kept fresh online on every event
//! and impression, recomputed offline for training, and fed to the learned ranker.
//!
//! # Layout
//! - [`spec`]: the `[features.NAME]` definitions, validated against the schema.
//! - [`window`]: bucketed sliding windows (bounded memory; the approximation is stated
//!   there) and the exact window they are measured against.
//! - [`distinct`]: windowed distinct counts in bounded memory (exact below a sketch size,
//!   estimated above it; the error is stated there).
//! - [`state`]: an entity's state, the updates an event or impression makes, and the
//!   feature vector read from it.
//! - [`read`]: a request's reader: the user's side once, then each candidate's item side
//!   (from a snapshot of its windows and rates while it holds).
//! - [`tag_ids`]: tag values as numbers, which an item's entry keeps for the user × tag
//!   features.
//! - [`log`]: the impression log's record (a served list with each item's signals).
//! - [`ranker`]: the learned ranker's scoring (a logistic regression over features,
//!   retrieval signals and position) and its per-feature contributions.

pub mod distinct;
pub mod log;
pub mod ranker;
pub mod read;
pub mod spec;
pub mod state;
pub mod tag_ids;
pub mod window;

pub use log::{LoggedItem, LoggedList};
pub use ranker::{Contribution, LinearRanker, PreparedRanker, RankerInputs};
pub use read::{CachedItem, ItemSnapshot, UserView};
pub use spec::{FeatureDef, FeatureKind, FeatureSet, FeatureSpec};
pub use state::{EntityState, Op, SlotKey, Target, Update};
pub use tag_ids::TagIds;
pub use window::{Buckets, Window};
