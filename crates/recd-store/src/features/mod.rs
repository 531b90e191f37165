//! The online feature store: the state behind recd-core's features (`recd_core::features`),
//! updated on every event and impression and read for a user and a list of candidates.
//!
//! What an event changes and how a value is read are recd-core's ([`FeatureSet`]); a
//! backend only keeps [`recd_core::features::EntityState`]s: [`MemoryFeatures`] in
//! process (the embedded backend), [`RedisFeatures`] as one Hash per user and per item
//! (`{prefix}feat:{fingerprint}:u:{user}`, `...:i:{item}`) changed by one script per event, with
//! the state's TTL on the key. Both give the values the offline export computes from the
//! logs (`recd-train`'s `ctr::export`); `tests/conformance/features.rs` holds them to it.
//!
//! # Layout
//! - [`memory`]: in-process, sharded, with TTL sweeps.
//! - [`hashes`]: Redis Hashes, updated by a Lua script, user values passed as arguments.

pub mod hashes;
pub mod memory;

use std::sync::Arc;

use async_trait::async_trait;
use recd_core::features::FeatureSet;
use recd_core::{Event, Item};

pub use hashes::RedisFeatures;
pub use memory::MemoryFeatures;

use crate::StoreResult;

/// Where the online feature state lives.
#[async_trait]
pub trait FeatureStore: Send + Sync + std::fmt::Debug {
    /// Applies `events` in order; `items[i]` is `events[i]`'s item when the catalog has it
    /// (its tags feed per-tag features). Must be atomic per event.
    async fn apply_events(
        &self,
        set: &FeatureSet,
        events: &[Event],
        items: &[Option<Arc<Item>>],
    ) -> StoreResult<()>;

    /// Counts one impression at `at_ms` for each of `items` (rates' denominators).
    async fn log_impressions(
        &self,
        set: &FeatureSet,
        items: &[String],
        at_ms: i64,
    ) -> StoreResult<()>;

    /// The feature vectors of `items` for `user` at `now_ms`, row-major: `items.len()`
    /// rows of `set.len()` values in the set's order. (References to the shared items: a
    /// request passes its ~150 candidates without touching their reference counts.)
    async fn values(
        &self,
        set: &FeatureSet,
        user: &str,
        items: &[&Arc<Item>],
        now_ms: i64,
    ) -> StoreResult<Vec<f64>>;

    /// Forgets everything about `user`.
    async fn delete_user(&self, set: &FeatureSet, user: &str) -> StoreResult<()>;
}
