//! recd-store: where the engine's serving state lives, behind one trait.
//!
//! [`Store`] is the contract both backends fulfil: the embedded one (in-process index plus
//! an append-only write log that a redb file absorbs) and the Redis one (a Hash per item,
//! one RediSearch index, one `FT.SEARCH` per filtered KNN). The server holds an
//! `Arc<dyn Store>` chosen at start-up.
//! One conformance suite (`tests/conformance`) runs against both: a behaviour difference
//! between backends is a bug in one of them.
//!
//! # Contract shared by every method
//! - Inputs are already validated by `recd-core` (ids, vectors, filters, events); a store
//!   never panics on them and returns [`StoreError::Invalid`] for anything it cannot take.
//! - Filters are applied *inside* retrieval: a result never holds a non-matching item, and
//!   when fewer items match than asked for, every match is returned.
//! - Deleted items are never returned by any retrieval method.
//! - Writes acknowledged by `Ok` are visible to the very next read (read-your-writes).
//!
//! # Layout
//! - [`embedded`]: the in-process backend ([`embedded::EmbeddedStore`]): the vector index,
//!   items and attribute bitmaps, popularity, users, made durable by an append-only log
//!   that a redb file absorbs.
//! - [`redis`]: the Redis backend ([`RedisStore`]): item Hashes, one RediSearch index, Lua
//!   scripts for atomic writes.
//! - [`error`]: [`StoreError`], classified user / unavailable / internal.

pub mod embedded;
pub mod error;
pub mod redis;

use std::sync::Arc;

use async_trait::async_trait;
use recd_core::popularity::PopularityParams;
use recd_core::{Event, Filter, Item, ItemUpsert, Schema, SessionParams, UserState};
use serde::{Deserialize, Serialize};

pub use self::redis::{RedisConfig, RedisStore};
pub use error::{StoreError, StoreResult};

/// A KNN hit: the item and its similarity to the query.
///
/// Items are shared (`Arc`): a request touches a few hundred candidates and returns ten,
/// so candidates must not be deep-copied (that was half of a request's CPU time). The item
/// may carry its vector; answers never serialize it.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    /// The item.
    pub item: Arc<Item>,
    /// Similarity, higher is better (cosine, inner product, or negated squared L2).
    pub score: f32,
}

/// A popular item: its fields (no vector) and its log-domain popularity
/// (see `recd_core::popularity`); `f64::NEG_INFINITY` for an item nobody touched yet.
#[derive(Debug, Clone, PartialEq)]
pub struct PopularHit {
    /// The item.
    pub item: Arc<Item>,
    /// log Σ wᵢ·2^(tᵢ/half_life).
    pub log_score: f64,
}

/// Sizes for `/health`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    /// Live items.
    pub items: u64,
    /// Users with state.
    pub users: u64,
}

/// The real-time model settings every backend applies identically when events arrive.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelSettings {
    /// Session vector, recent items, event weights.
    pub session: SessionParams,
    /// Time-decayed popularity.
    pub popularity: PopularityParams,
}

/// The wall clock in milliseconds since the epoch: when a user state was last written
/// (`UserState::active_ms`, which the inactivity TTL counts from).
pub(crate) fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// What one call of [`Store::expire_users`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Expired {
    /// Users forgotten by this call.
    pub users: usize,
    /// Whether this call finished a pass over every user (the next one starts another).
    pub pass_done: bool,
}

/// The serving state of the engine. Every method is safe to call concurrently.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// `"embedded"` or `"redis"`.
    fn backend(&self) -> &'static str;

    /// The item schema the store was opened with.
    fn schema(&self) -> &Schema;

    /// Ok when the store can serve; [`StoreError::Unavailable`] when its backend is unreachable.
    async fn ping(&self) -> StoreResult<()>;

    /// Live items and known users.
    async fn counts(&self) -> StoreResult<Counts>;

    /// Inserts or replaces items, all or nothing. An upsert with `keep_vector` keeps the
    /// stored vector of an existing item. Returns how many were written.
    async fn upsert_items(&self, items: Vec<ItemUpsert>) -> StoreResult<usize>;

    /// The items (with vectors) for `ids`, `None` where absent, in the order asked.
    async fn get_items(&self, ids: &[String]) -> StoreResult<Vec<Option<Item>>>;

    /// Deletes an item; false if it did not exist. It is never returned again.
    async fn delete_item(&self, id: &str) -> StoreResult<bool>;

    /// Replaces the vectors of existing items (training write-back), leaving every other
    /// field alone; ids that are not items are skipped. Serving continues throughout.
    /// Returns how many items were updated.
    async fn set_item_vectors(&self, vectors: Vec<(String, Vec<f32>)>) -> StoreResult<usize>;

    /// The `k` items most similar to `query` among those passing `filter`, best first.
    async fn knn(&self, query: &[f32], k: usize, filter: &Filter) -> StoreResult<Vec<Hit>>;

    /// The `k` most popular items passing `filter`, most popular first (ties in any order).
    async fn popular(&self, k: usize, filter: &Filter) -> StoreResult<Vec<PopularHit>>;

    /// Up to `k` items passing `filter` whose text fields contain at least one of `terms`
    /// (lowercase tokens), best match first.
    async fn text_search(
        &self,
        terms: &[String],
        k: usize,
        filter: &Filter,
    ) -> StoreResult<Vec<Arc<Item>>>;

    /// Applies events: each user's events atomically and in order (session vector,
    /// counters, recent and purchased items, exclusions), item popularity, and the event
    /// log. Events for unknown items still count for the user (the item may arrive
    /// later) but move no vector and make no popularity entry: anyone may send events,
    /// and ids that are not items must not grow the store. Each write of a user
    /// stamps `UserState::active_ms` with the store's clock.
    async fn apply_events(&self, events: &[Event]) -> StoreResult<()>;

    /// Forgets, with bounded work per call, users inactive for longer than the session
    /// TTL (`SessionParams::ttl_seconds`, 0 = never) as of `now_ms`: their state, not
    /// their events in the log. The embedded store checks one of its user shards per call
    /// under that shard's lock only; Redis expires user keys by itself (`EXPIRE`,
    /// refreshed by every write), and this call takes the expired ids off the set of
    /// users, a batch per call. The server calls it every second.
    async fn expire_users(&self, now_ms: i64) -> StoreResult<Expired>;

    /// A user's state, `None` for a user never seen.
    async fn get_user(&self, id: &str) -> StoreResult<Option<UserState>>;

    /// Forgets everything about a user: state, purchases, and their events in the log.
    /// Returns false if the user was unknown.
    async fn delete_user(&self, id: &str) -> StoreResult<bool>;

    /// Sets users' long-term vectors (training write-back), creating state where needed.
    async fn set_user_vectors(&self, vectors: Vec<(String, Vec<f32>)>) -> StoreResult<usize>;

    /// The event log in the order events were applied (for training).
    async fn events(&self) -> StoreResult<Vec<Event>>;

    /// Recomputes the session vectors of `users` from their events in the log with the
    /// items' *current* vectors ([`UserState::session_from`]), leaving counters, recent and
    /// purchased items and the long-term vector alone. Training write-back calls it after
    /// replacing item vectors: a session averaged from the old vectors points nowhere in
    /// the new space. Each user is rebuilt atomically with respect to `apply_events`, so an
    /// event applied concurrently is counted exactly once (read-your-writes holds
    /// throughout); events of items that are gone or have no vector contribute nothing.
    /// Users without state are skipped (never created). Returns how many were rebuilt.
    async fn rebuild_sessions(&self, users: &[String]) -> StoreResult<usize>;
}
