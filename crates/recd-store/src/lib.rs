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
//! - [`bulk`]: bulk writes (demo, import, training write-back) in batches sized by time,
//!   idempotent ones retried, that finish on a slow backend.
//! - [`features`]: the online feature store ([`features::FeatureStore`]): in process or
//!   Redis Hashes, the state behind recd-core's features.
//! - [`error`]: [`StoreError`], classified user / unavailable / internal.
//! - [`models`]: the model registry's records ([`ModelRecord`], [`ModelRegistry`]).
//! - [`once`]: the marks that make a bulk load's event batches safe to retry.

pub mod bulk;
pub mod embedded;
pub mod error;
pub mod features;
pub mod models;
pub mod once;
pub mod redis;

use std::sync::Arc;

use async_trait::async_trait;
use recd_core::pipeline::rerank::Exclusions;
use recd_core::popularity::PopularityParams;
use recd_core::{Event, Filter, Item, ItemUpsert, Schema, SessionParams, UserState};
use serde::{Deserialize, Serialize};

pub use self::redis::{RedisConfig, RedisStore};
pub use error::{StoreError, StoreResult};
pub use models::{ModelRecord, ModelRegistry};

/// The most results [`Store::knn_excluding`]'s default asks for: a user excluding
/// thousands of items gets the best of this many, not a search as wide as their list.
pub const KNN_EXCLUSION_CAP: usize = 5000;

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

/// How one KNN search was carried out by an in-process index: the planner's choice and the
/// numbers it chose on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KnnPlan {
    /// `exact` (a scan of the allowed ids), `sketch_scan` (a scan of a broad filter that
    /// read 1-bit sketches first and scored only what they could not rule out), `graph` (a
    /// walk with the filter applied during it), `graph_then_exact` (a walk that found too few
    /// allowed items, then a scan), `partitioned` (the per-value graphs of the filter's
    /// values of `vector.partition_by`, see `partitions`), or `none` (the filter admits no
    /// item, so nothing was searched).
    pub plan: &'static str,
    /// Beam width of the walk (grown for selective filters); absent for a scan.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ef: Option<usize>,
    /// Items the filter admits (every item with a vector without a filter).
    pub allowed: u64,
    /// Of those, the items the request's exclusions (its `exclude`, the user's seen and
    /// excluded items) kept the search from returning; not shown when 0.
    #[serde(skip_serializing_if = "is_zero")]
    pub excluded: u64,
    /// Items with a vector in the index.
    pub indexed: u64,
    /// Vectors a `sketch_scan` scored after its first pass.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scored: Option<usize>,
    /// For `plan: "partitioned"` (the filter required a few values of the schema's
    /// `vector.partition_by` field): the per-value graphs walked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partitions: Option<usize>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
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

/// One page of a listing walked in a stable order, and where the next page starts.
///
/// `next` is `Some` exactly when more entries followed this page when it was read: pass it
/// back (as `after`) for the next page. An entry that exists for the whole walk is returned
/// exactly once, whatever is inserted or deleted meanwhile, because pages are cut by
/// *position in the order* (the last id or sequence number seen), never by count.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The entries, in the listing's order.
    pub entries: Vec<T>,
    /// Where the next page starts, `None` at the end.
    pub next: Option<String>,
}

impl<T> Page<T> {
    /// A page of `found`, which holds up to `limit + 1` entries in order: the extra one,
    /// if there, only says that more follow (`next` is then the last kept entry's key).
    pub fn cut(mut found: Vec<T>, limit: usize, key: impl Fn(&T) -> String) -> Self {
        let more = found.len() > limit;
        found.truncate(limit);
        let next = if more { found.last().map(key) } else { None };
        Page {
            entries: found,
            next,
        }
    }
}

/// `(item id, user id, event weight)`: one event on an item, for its interaction list.
pub type NewItemTouch = (String, String, f32);
/// `(item id, [(user id, summed positive weight)])`, most recent user first.
pub type NewItemList = (String, Vec<(String, f32)>);

/// One item's successors in a model version's transition table: `(item id, [(next item id,
/// P(next | item))])`, most likely first (see `recd_core::pipeline::transitions`).
pub type NextList = (String, Vec<(String, f32)>);

/// The model settings (`[model]`): the real-time ones every backend applies identically
/// when events arrive, and those of the trained model's versions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelSettings {
    /// Session vector, recent items, event weights.
    pub session: SessionParams,
    /// Time-decayed popularity.
    pub popularity: PopularityParams,
    /// The quality gate of `recd train`: a new model goes live only if its NDCG@10 on the
    /// held-out recent events is at least the live model's × (1 − gate_margin).
    pub gate_margin: f64,
    /// Model versions kept (the oldest beyond this are deleted; never the live one).
    pub keep_versions: usize,
    /// New and cold items: the item fold-in and the content map.
    pub new_items: recd_core::NewItemParams,
}

impl Default for ModelSettings {
    fn default() -> Self {
        Self {
            session: SessionParams::default(),
            popularity: PopularityParams::default(),
            gate_margin: 0.05,
            keep_versions: 5,
            new_items: recd_core::NewItemParams::default(),
        }
    }
}

/// The wall clock in milliseconds since the epoch: when a user state was last written
/// (`UserState::active_ms`, which the inactivity TTL counts from).
pub(crate) fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// What is left of a write made visible by [`Store::apply_events_visible`]: waiting until it
/// is as durable as the store's policy makes it (the embedded log's write, or its fsync
/// under `always`).
#[must_use = "a write may be acknowledged only once it is durable"]
pub struct Durability(Option<futures_util::future::BoxFuture<'static, StoreResult<()>>>);

impl Durability {
    /// Nothing left to wait for.
    pub fn done() -> Self {
        Durability(None)
    }

    /// Durable when `wait` resolves.
    pub fn pending(
        wait: impl std::future::Future<Output = StoreResult<()>> + Send + 'static,
    ) -> Self {
        Durability(Some(Box::pin(wait)))
    }

    /// Waits until the write is durable, or for the error that kept it from being so.
    pub async fn wait(self) -> StoreResult<()> {
        match self.0 {
            Some(wait) => wait.await,
            None => Ok(()),
        }
    }
}

impl std::fmt::Debug for Durability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Durability::Pending"
        } else {
            "Durability::Done"
        })
    }
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

    /// [`knn`](Self::knn), also saying how the search was carried out (`explain` shows it).
    /// `None` where the plan is chosen out of process (Redis's query engine does not say).
    async fn knn_explained(
        &self,
        query: &[f32],
        k: usize,
        filter: &Filter,
    ) -> StoreResult<(Vec<Hit>, Option<KnnPlan>)> {
        Ok((self.knn(query, k, filter).await?, None))
    }

    /// [`knn_explained`](Self::knn_explained) (the plan only when `explain`) among the
    /// items `exclude` does not name: the `k` best of the rest, as many as exist.
    ///
    /// This default asks [`knn`](Self::knn) for `k` plus as many as may be excluded (at
    /// most [`KNN_EXCLUSION_CAP`]) and drops the excluded ones, so its search is as wide as
    /// that. A store whose index can skip them during the search should: a recommender's
    /// exclusions (what the user has seen) are the items nearest their vector.
    async fn knn_excluding(
        &self,
        query: &[f32],
        k: usize,
        filter: &Filter,
        exclude: &Exclusions<'_>,
        explain: bool,
    ) -> StoreResult<(Vec<Hit>, Option<KnnPlan>)> {
        let wanted = k
            .saturating_add(exclude.len())
            .min(k.max(KNN_EXCLUSION_CAP));
        let (mut hits, plan) = if explain {
            self.knn_explained(query, wanted, filter).await?
        } else {
            (self.knn(query, wanted, filter).await?, None)
        };
        hits.retain(|h| !exclude.contains(&h.item.id));
        hits.truncate(k);
        Ok((hits, plan))
    }

    /// How many KNN searches each plan of an in-process index answered (`exact`, `graph`,
    /// `graph_then_exact`), for `recd_index_plan_total`. Empty where the plan is chosen
    /// out of process (Redis's query engine does not report it).
    fn index_plans(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }

    /// How long each background checkpoint of a durable in-process log took since the last
    /// call, oldest first, for `recd_checkpoint_duration_seconds`. Empty where there is no
    /// such log (in memory; Redis persists by itself).
    fn take_checkpoint_durations(&self) -> Vec<std::time::Duration> {
        Vec::new()
    }

    /// How many logged records a restart after a crash now would replay into user states
    /// (those after the oldest change no stored user row includes), for
    /// `recd_replay_records`. `None` where there is no such log.
    fn replay_records(&self) -> Option<u64> {
        None
    }

    /// Background checkpoints that ran on idle cycles and gave way to another caller, and
    /// checkpoints the catch-up thread ran because the idle ones could not (both since
    /// start), for `recd_checkpoint_handovers_total`. `None` where there is no such log.
    fn checkpoint_handovers(&self) -> Option<(u64, u64)> {
        None
    }

    /// The `k` most popular items passing `filter`, most popular first (ties in any order).
    async fn popular(&self, k: usize, filter: &Filter) -> StoreResult<Vec<PopularHit>>;

    /// Another server wrote or deleted these items (heard on the cache invalidation
    /// channel; empty: every list may be stale): drop whatever this store keeps of them in
    /// process. Nothing to do for a store that keeps nothing of another server's data.
    fn items_written_elsewhere(&self, _ids: &[String]) {}

    /// Whether every other server's item write now reaches
    /// [`Store::items_written_elsewhere`] (the invalidation channel is subscribed). A store
    /// keeping another server's data in process serves it only while this is true, and drops
    /// it on every change (messages may have been lost in between).
    fn follow_item_writes(&self, _following: bool) {}

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

    /// [`Store::apply_events`] in two steps: returns as soon as the events are visible to
    /// reads, with the wait for their durability still to do. The engine invalidates the
    /// users' cached lists in between, so that an event shows in the next recommendation
    /// while its log record is still being written; the write is acknowledged only after
    /// [`Durability::wait`]. (As with Redis's AOF, a read may see a write that a crash then
    /// loses; nothing unacknowledged is promised.) A store whose writes become visible only
    /// when they are durable keeps this default.
    async fn apply_events_visible(&self, events: &[Event]) -> StoreResult<Durability> {
        self.apply_events(events).await?;
        Ok(Durability::done())
    }

    /// [`Store::apply_events`] for a batch that may be sent again (a bulk load retrying a
    /// batch that timed out): event `i` is at position `batch.first + i` of the run
    /// `batch.run`, and every event the store already applied for its run and user is
    /// skipped, so that a batch applied twice, whole or in part, counts once (see
    /// [`once`]). A run's calls come one at a time, in the order of their positions.
    async fn apply_events_once(&self, batch: once::Positioned<'_>) -> StoreResult<()>;

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

    /// Up to `limit` live items passing `filter`, in ascending byte order of their ids,
    /// starting after the id `after` (from the start when `None`); `next` is the last id
    /// returned when more items pass after it. Items may carry their vector. The cost is
    /// bounded by the page (and, with a filter, by the items skipped to fill it), never
    /// the whole catalog held in memory at once.
    async fn list_items(
        &self,
        after: Option<&str>,
        limit: usize,
        filter: &Filter,
    ) -> StoreResult<Page<Arc<Item>>>;

    /// Up to `limit` ids of users with state, in ascending byte order, after `after`.
    async fn list_users(&self, after: Option<&str>, limit: usize) -> StoreResult<Page<String>>;

    /// Up to `limit` events of the log in the order they were applied, after the position
    /// `after` (a `next` of an earlier page; the format is the backend's own, and anything
    /// else is [`StoreError::Invalid`]). Events of users forgotten meanwhile are gone; the
    /// position of every other event stays valid. Memory is bounded by the page.
    async fn events_page(&self, after: Option<&str>, limit: usize) -> StoreResult<Page<Event>>;

    /// How many events the log holds.
    async fn events_len(&self) -> StoreResult<u64>;

    /// Recomputes the session vectors of `users` from their events in the log with the
    /// items' *current* vectors ([`UserState::session_from`]) — and, under the fold-in
    /// rule, re-solves their folded-in vectors ([`UserState::refold`]) — leaving counters, recent and
    /// purchased items and the long-term vector alone. Training write-back calls it after
    /// replacing item vectors: a session averaged from the old vectors points nowhere in
    /// the new space. Each user is rebuilt atomically with respect to `apply_events`, so an
    /// event applied concurrently is counted exactly once (read-your-writes holds
    /// throughout); events of items that are gone or have no vector contribute nothing.
    /// Users without state are skipped (never created). Returns how many were rebuilt.
    async fn rebuild_sessions(&self, users: &[String]) -> StoreResult<usize>;

    // ---- new items (see `recd_core::newitems`) -----------------------------------------

    /// Adds `(item, user, weight)` touches to the interaction lists of the *new* items
    /// among them, and returns each new item's list after them. A new item is a catalog
    /// item without a vector, or one whose vector came from [`Store::set_new_item_vectors`]
    /// (a vector training or a client wrote makes it an ordinary item again). Each item's
    /// list changes atomically (`recd_core::newitems::touch`: positive weights only, at
    /// most `[model.new_items] capacity` users); a touch of weight 0 only reads it. Items
    /// that are not new, or not in the catalog, are left out of the answer.
    async fn touch_new_items(&self, touches: &[NewItemTouch]) -> StoreResult<Vec<NewItemList>>;

    /// Writes provisional vectors (an item fold-in, the content map) to the items among
    /// `vectors` that are still new (see [`Store::touch_new_items`]), atomically against
    /// every other vector write: a vector training or a client wrote since is never
    /// replaced. Returns how many were written.
    async fn set_new_item_vectors(&self, vectors: Vec<(String, Vec<f32>)>) -> StoreResult<usize>;

    // ---- the model registry (see [`models`]) -------------------------------------------

    /// A new model version number, larger than every number this store gave before (never
    /// reused, even after the version is deleted). Safe against concurrent callers.
    async fn next_model_seq(&self) -> StoreResult<u64>;

    /// Stores chunk `index` of version `seq`'s vectors (opaque bytes), replacing one
    /// stored before under the same index.
    async fn put_model_chunk(&self, seq: u64, index: u32, bytes: Vec<u8>) -> StoreResult<()>;

    /// Chunk `index` of version `seq`; `None` when it was never stored (or was deleted).
    async fn model_chunk(&self, seq: u64, index: u32) -> StoreResult<Option<Vec<u8>>>;

    /// Records a version, replacing its record if present. Callers write it once its
    /// chunks are stored, so that a listed version is complete.
    async fn put_model(&self, record: ModelRecord) -> StoreResult<()>;

    /// Every recorded version, oldest first, and which one is live.
    async fn models(&self) -> StoreResult<ModelRegistry>;

    /// Records `seq` as the live version; [`StoreError::Invalid`] when it is not recorded.
    /// (Writing its vectors into the serving state is the caller's part.)
    async fn set_live_model(&self, seq: u64) -> StoreResult<()>;

    /// Deletes version `seq`, its record, its chunks and its transitions; false when it was
    /// not recorded (its chunks and transitions, if any, are deleted anyway).
    /// [`StoreError::Invalid`] for the live one, which is never deleted.
    async fn delete_model(&self, seq: u64) -> StoreResult<bool>;

    /// Stores part of version `seq`'s transition table (each item's successors, most
    /// likely first), replacing the lists stored before for the same items. Like its
    /// chunks, a version's table is written before its record and never changes after;
    /// it serves once the version is live ([`Store::transitions`]), so writing it costs
    /// the live version nothing. Ids longer than 65,535 bytes are [`StoreError::Invalid`].
    async fn put_model_transitions(&self, seq: u64, lists: Vec<NextList>) -> StoreResult<()>;

    /// The live version's successors of each of `items`, in the order asked: empty where
    /// an item has none, or when no version is live. Switches with
    /// [`Store::set_live_model`], so a rollback brings the older table back too.
    async fn transitions(&self, items: &[String]) -> StoreResult<Vec<Vec<(String, f32)>>>;
}
