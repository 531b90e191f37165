//! The Redis backend: a Hash per item, one RediSearch index, one `FT.SEARCH` per query.
//!
//! Several stateless recd servers share one Redis (8.x, or Redis Stack ≥ 7.2, with the
//! Query Engine). Every read is a single round trip and every write one atomic unit:
//! - items: `{prefix}item:{id}` Hashes ([`schema`]), upserted by one Lua script per batch;
//! - KNN with the filter inside: one `FT.SEARCH "(<filter>)=>[KNN ...]"` ([`query`]);
//! - beside each item hash, a doc string key with its fields (no vector), written in the
//!   same script, so that the fields of many items are one `MGET` ([`keys::Keys::doc`]);
//! - KNN hits return only their distance (and the fields a range post-check needs); the hits'
//!   fields come from their docs afterwards, which costs Redis far less than loading them
//!   inside RediSearch;
//! - popularity: a `{prefix}popularity` ZSET (also for ids that are not items yet) and one
//!   ZSET per tag value, never the indexed item hash ([`popular`]);
//! - users: an optimistic read → `UserState::apply` in Rust → compare-and-set script
//!   ([`users`]), which also appends to the `{prefix}events` stream and bumps popularity.
//!
//! On a Redis Cluster (`redis+cluster://host:port,...` or [`RedisConfig::cluster`]), the
//! deployment is cut into shards, each one hash tag with its own keys and search index
//! ([`shards`]); reads fan out to every shard concurrently and merge, writes go to the
//! shard of their item or user.
//!
//! Connections: a few [`ConnectionManager`]s (each one multiplexed connection that reconnects
//! by itself), used in turn: one multiplexed connection reads and parses every reply on one
//! task, which would cap a server with many cores ([`RedisConfig::connections`]). Short
//! connect / response timeouts and an overall deadline per operation, so that a
//! Redis that is down turns into [`StoreError::Unavailable`] within a fraction of a second,
//! and the store works again as soon as Redis is back (re-creating the index if the new
//! Redis came up empty).
//!
//! # Layout
//! - [`keys`]: key names under the configured prefix.
//! - [`shards`]: a cluster deployment's shards (hash tags) and what lives in each.
//! - [`conn`]: one connection type for a single Redis and for a cluster.
//! - [`schema`]: the item hash encoding and `FT.CREATE`, both derived from the `Schema`.
//! - [`query`]: `Filter` → RediSearch query with PARAMS; the `FT.SEARCH` commands.
//! - [`popular`]: the most popular items passing a filter, from the sorted sets.
//! - [`docs`]: decoded item docs, shared while their bytes stay the same.
//! - [`local`]: items and popular lists kept in process while the server follows the
//!   other servers' item writes.
//! - [`reply`]: decoding replies.
//! - [`users`]: user state and the event write path.
//! - [`gram`]: the fold-in's `YᵀY` of the item vectors, kept per server.
//! - [`reshard`]: a shard's index across slot moves; the per-shard health report.
//! - [`migrate`]: a new index version for a new schema, swapped in with `FT.ALIASUPDATE`.
//! - [`scripts`]: the Lua scripts.
//! - [`models`]: the model registry (records, chunks, the live version).
//! - [`durable`]: `WAIT` for replicas after a write (`wait_replicas`).
//! - [`error`]: Redis errors → `StoreError`.

pub mod conn;
mod docs;
mod durable;
mod error;
mod fanout;
mod gram;
mod keys;
mod local;
mod migrate;
mod models;
mod popular;
mod query;
mod reply;
mod reshard;
mod schema;
mod scripts;
mod shards;
mod users;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::future::try_join_all;
use recd_core::item::check_vector;
use recd_core::{Event, Filter, Item, ItemUpsert, Schema, ValidationError};
#[cfg(doc)]
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};

pub use self::conn::{Conn, Target, connect_url, effective_url};
use self::error::{bad_reply, from_redis, is_missing_index};
use self::keys::Keys;
use self::reply::{Doc, search_reply};
pub use self::reshard::{IndexInfo, ShardReport};
use self::shards::Shards;
pub use self::shards::id_tag;
use crate::{
    Counts, Hit, ModelRecord, ModelRegistry, ModelSettings, NextList, Page, PopularHit, Store,
    StoreError, StoreResult,
};

/// How RediSearch runs a KNN query with a filter (`HYBRID_POLICY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HybridPolicy {
    /// Walk the HNSW graph in batches and check the filter on each batch.
    Batches,
    /// Compute the distance of every item passing the filter (exact; best when few pass).
    AdhocBf,
}

impl HybridPolicy {
    fn as_str(self) -> &'static str {
        match self {
            HybridPolicy::Batches => "BATCHES",
            HybridPolicy::AdhocBf => "ADHOC_BF",
        }
    }
}

/// Options of the Redis backend (`[redis]` in config).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// Prepended to every key and index name, so that deployments can share one Redis.
    /// No deployment's prefix may be a prefix of another's.
    pub prefix: String,
    /// HNSW `M` (graph degree), fixed when the index is created.
    pub hnsw_m: u32,
    /// HNSW `EF_CONSTRUCTION`, fixed when the index is created.
    pub hnsw_ef_construction: u32,
    /// HNSW `EF_RUNTIME`, sent with every query (so it can change without a re-index).
    pub hnsw_ef_runtime: u32,
    /// Forces a hybrid policy for filtered KNN; `None` lets RediSearch choose per query.
    pub hybrid_policy: Option<HybridPolicy>,
    /// `BATCH_SIZE` under the `batches` policy; `None` lets RediSearch choose.
    pub batch_size: Option<u32>,
    /// KNN with numeric ranges next to cheaper conditions fetches `k ×` this many
    /// neighbours under the cheap conditions and checks the ranges itself (falling back to
    /// one query with everything when too few pass); 0 or 1 keeps every condition inside
    /// RediSearch. Same answers either way. On 100k × 64 with a category + wide price
    /// filter, Redis spent per filtered recommend 4.5–5.6 ms at 2, 5.9–6.4 ms at 3,
    /// 7.6 ms at 5 (the ranges inside RediSearch cost ~2x the category alone).
    pub range_overfetch: usize,
    /// Items kept decoded in process (0 turns it off). While the server follows the other
    /// servers' item writes (the cache invalidation channel, `[cache] enabled` and `l2`), a
    /// KNN hit or popular candidate found here costs no `MGET` and no decoding (dropped on
    /// every item write, everything dropped while the channel is down); otherwise only the
    /// popular items are kept, shared while Redis returns the same doc bytes for them.
    pub item_cache: usize,
    /// The longest an item is kept in process (0: not kept, as without the channel): the
    /// staleness bound for item writes no server announces (`recd import` into a live
    /// deployment).
    pub item_cache_ttl_ms: u64,
    /// How long the popular list of one filter is reused while the server follows the
    /// other servers' item writes (0: read on every request): popularity moved by events
    /// shows after at most this long; item writes drop the lists at once.
    pub popular_refresh_ms: u64,
    /// Server-side time limit of one query (`TIMEOUT`); 0 = none. A query that runs out of
    /// time fails (or, if the server's `ON_TIMEOUT` is `return`, answers partially), so
    /// keep it 0 unless the server is set to `ON_TIMEOUT FAIL`.
    pub query_timeout_ms: u64,
    /// Time to establish a connection.
    pub connect_timeout_ms: u64,
    /// Time to wait for one reply.
    pub response_timeout_ms: u64,
    /// Deadline of one store operation (all its round trips and retries); item vector
    /// write-back applies it to each of its scripts.
    pub operation_timeout_ms: u64,
    /// Multiplexed connections to Redis, used in turn (0 counts as 1). Each one reads and
    /// parses all of its replies on one task (about a fifth of a redis-backed server's CPU
    /// under perf), so a single connection would cap a server of more than ~4 cores; on 2
    /// cores 1 and 4 measured the same (BENCHMARKS.md, "Redis request path").
    pub connections: usize,
    /// The URL names a Redis Cluster (also implied by a `redis+cluster://` URL): the
    /// deployment is cut into shards over the masters, queries fan out to all of them.
    pub cluster: bool,
    /// Shards of a new cluster deployment (0: one per master found at creation). Fixed
    /// once created (recorded in the meta): a resharding moves whole shards, so set it to
    /// at least the masters the deployment may grow to.
    pub cluster_shards: usize,
    /// Replicas that must hold a write before it is acknowledged (`WAIT n`; 0: none, as
    /// Redis itself): events (the user's shard and the items' popularity shards), item
    /// upserts and deletes, user deletes. Fewer within `wait_timeout_ms` fails the write
    /// with `Unavailable` (503), though the master applied it. See [`durable`].
    pub wait_replicas: u32,
    /// How long a write waits for `wait_replicas` replicas (`WAIT`'s timeout).
    pub wait_timeout_ms: u64,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            prefix: "recd:".into(),
            hnsw_m: 16,
            hnsw_ef_construction: 200,
            hnsw_ef_runtime: 64,
            hybrid_policy: None,
            batch_size: None,
            range_overfetch: 2,
            item_cache: 100_000,
            item_cache_ttl_ms: 60_000,
            popular_refresh_ms: 1000,
            query_timeout_ms: 0,
            connect_timeout_ms: 250,
            response_timeout_ms: 1000,
            operation_timeout_ms: 2000,
            connections: 4,
            cluster: false,
            cluster_shards: 0,
            wait_replicas: 0,
            wait_timeout_ms: 500,
        }
    }
}

/// Item vectors written per script by `set_item_vectors` (see there).
const VECTORS_PER_SCRIPT: usize = 8;

/// The Redis store; cheap to clone.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.inner.config.prefix)
            .field("version", &self.inner.keys.version())
            .finish()
    }
}

struct Inner {
    /// Multiplexed connections, each re-established in the background after a failure;
    /// never empty.
    conns: Vec<Conn>,
    /// The next connection [`Inner::conn`] hands out.
    next_conn: std::sync::atomic::AtomicUsize,
    schema: Schema,
    settings: ModelSettings,
    config: RedisConfig,
    /// Key names at the index version found (or created) at connect time: the
    /// deployment-wide keys (meta, models); on a single Redis also its one shard.
    keys: Keys,
    /// The shards items and users spread over (one on a single Redis).
    shards: Shards,
    /// Whether this is a Redis Cluster.
    cluster: bool,
    /// The schema's tag and bool fields (they have per-value popularity ZSETs).
    tag_fields: Vec<String>,
    /// Decoded item docs.
    docs: docs::DocCache,
    /// Items and popular lists kept while the server follows every item write.
    local: local::LocalCache,
    /// Where the next sweep of the set of users continues (`SSCAN` cursor; 0: a new pass).
    sweep_cursor: std::sync::atomic::AtomicU64,
    /// The shard the sweep is in.
    sweep_shard: std::sync::atomic::AtomicUsize,
    /// The fold-in's `YᵀY` of the item vectors.
    grams: Arc<gram::GramCache>,
    /// Per shard, the alias its queries name: on a cluster the one of the master last
    /// found serving it (`reshard`), updated when a query finds it gone.
    aliases: std::sync::RwLock<Vec<String>>,
    /// The URL of a node (a cluster's first seed): the scheme and credentials of a
    /// connection to another node (`reshard`).
    seed: String,
}

impl Inner {
    fn new(
        conns: Vec<Conn>,
        schema: Schema,
        settings: ModelSettings,
        config: RedisConfig,
        keys: Keys,
        shards: Shards,
    ) -> Self {
        let cluster = !shards.tags().is_empty();
        let aliases = std::sync::RwLock::new(shards.all().iter().map(Keys::alias).collect());
        Inner {
            docs: docs::DocCache::new(config.item_cache),
            local: local::LocalCache::new(
                config.item_cache,
                Duration::from_millis(config.item_cache_ttl_ms),
                Duration::from_millis(config.popular_refresh_ms),
            ),
            tag_fields: schema::tag_fields(&schema)
                .into_iter()
                .map(String::from)
                .collect(),
            conns,
            next_conn: Default::default(),
            schema,
            settings,
            config,
            keys,
            cluster,
            shards,
            sweep_cursor: Default::default(),
            sweep_shard: Default::default(),
            grams: Default::default(),
            aliases,
            seed: String::new(),
        }
    }

    /// The next connection, in turn. Each store call takes one and awaits every reply
    /// before its next command, so commands of one call keep their order whichever
    /// connection carries them (a `MULTI` is one pipeline on one connection).
    fn conn(&self) -> Conn {
        let n = self
            .next_conn
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.conns[n % self.conns.len()].clone()
    }
}

impl RedisStore {
    /// The schema a deployment under `config.prefix` was created with (`None` when the
    /// prefix holds none yet): what a server started without a `[schema]` serves, the way
    /// an embedded data dir remembers its schema.
    pub async fn recorded_schema(url: &str, config: &RedisConfig) -> StoreResult<Option<Schema>> {
        let target = Target::parse(url, config.cluster)?;
        let deadline = Duration::from_millis(config.operation_timeout_ms);
        let read = async {
            let mut conn = target.connect(config).await?;
            let stored: Option<String> = redis::cmd("HGET")
                .arg(global_keys(&config.prefix, target.is_cluster(), 1).meta())
                .arg("schema")
                .query_async(&mut conn)
                .await
                .map_err(from_redis)?;
            Ok(stored)
        };
        let stored = with_deadline(deadline, read).await?;
        stored
            .map(|json| {
                serde_json::from_str(&json).map_err(|e| {
                    StoreError::Internal(format!(
                        "the schema recorded under '{}meta' does not parse: {e}",
                        config.prefix
                    ))
                })
            })
            .transpose()
    }

    /// Connects to `url` (`redis://host:port[/db]`), creates the index for `schema` if the
    /// prefix has none yet, and checks that an existing one was made for the same schema.
    pub async fn connect(
        url: &str,
        schema: Schema,
        settings: ModelSettings,
        config: RedisConfig,
    ) -> StoreResult<RedisStore> {
        schema::check_schema(&schema)?;
        let target = Target::parse(url, config.cluster)?;
        let cluster = target.is_cluster();
        if cluster && config.prefix.contains(['{', '}']) {
            return Err(StoreError::Invalid(ValidationError::new(format!(
                "on a Redis Cluster the key prefix may not hold '{{' or '}}' (it would change \
                 the keys' hash tags): '{}'",
                config.prefix
            ))));
        }
        let deadline = Duration::from_millis(config.operation_timeout_ms);
        let mut conns = Vec::with_capacity(config.connections.max(1));
        for _ in 0..config.connections.max(1) {
            conns.push(target.connect(&config).await?);
        }
        let mut first = conns[0].clone();
        let placement = if cluster {
            Placement::Cluster(None)
        } else {
            Placement::Single
        };
        let seed = target.nodes().first().map_or("", |n| n).to_string();
        let (version, shards, aliases) = with_deadline(
            deadline,
            ensure_index(&mut first, &schema, &config, 1, placement, &seed),
        )
        .await?;
        let keys = global_keys(&config.prefix, cluster, version);
        tracing::info!(prefix = %config.prefix, version, connections = conns.len(), shards = shards.len(), cluster, "redis store ready");
        let mut inner = Inner::new(conns, schema, settings, config, keys, shards);
        *inner.aliases.write().unwrap_or_else(|e| e.into_inner()) = aliases;
        inner.seed = seed;
        Ok(RedisStore {
            inner: Arc::new(inner),
        })
    }

    /// Every shard's state (see [`ShardReport`]): the master serving its slot, its item
    /// count, its index there and what needs attention; what `recd admin reshard-check`
    /// prints.
    pub async fn shard_reports(&self) -> StoreResult<Vec<ShardReport>> {
        let shards = &self.inner.shards;
        let tags = shards.tags();
        self.run(try_join_all(shards.all().iter().enumerate().map(
            |(j, keys)| async move {
                let tag = tags.get(j).map_or("", String::as_str);
                reshard::report(&mut self.conn(), j, tag, keys).await
            },
        )))
        .await
    }

    /// The configuration the store runs with.
    pub fn config(&self) -> &RedisConfig {
        &self.inner.config
    }

    /// Applies `events` (each with its position in `run`, when the call is a retryable
    /// bulk batch): each user's events, in order, as one atomic unit; users in parallel
    /// (up to USER_PARALLELISM at once, pipelined on the connections).
    async fn apply_by_user<'e>(
        &self,
        events: impl Iterator<Item = (u64, &'e Event)>,
        run: Option<u64>,
    ) -> StoreResult<()> {
        const USER_PARALLELISM: usize = 32;
        let mut by_user: BTreeMap<&str, (Vec<&Event>, Vec<u64>)> = BTreeMap::new();
        for (position, e) in events {
            let (evs, positions) = by_user.entry(e.user_id.as_str()).or_default();
            evs.push(e);
            positions.push(position);
        }
        let inner = &self.inner;
        if by_user.len() <= 1 {
            return self
                .run(async {
                    for (user, (events, positions)) in by_user {
                        let mut conn = self.conn();
                        users::apply(
                            &mut conn,
                            inner,
                            user,
                            &events,
                            run.map(|r| (r, positions.as_slice())),
                        )
                        .await?;
                    }
                    Ok(())
                })
                .await;
        }
        let mut groups: Vec<(String, Vec<Event>, Vec<u64>)> = by_user
            .into_iter()
            .map(|(u, (evs, positions))| {
                (u.to_string(), evs.into_iter().cloned().collect(), positions)
            })
            .collect();
        self.run(async {
            while !groups.is_empty() {
                let rest = groups.split_off(groups.len().min(USER_PARALLELISM));
                // Dropping the set (on the deadline) aborts the tasks; each user's write is
                // one script, so a user is either wholly applied or not at all.
                let mut set = tokio::task::JoinSet::new();
                for (user, events, positions) in std::mem::replace(&mut groups, rest) {
                    let inner = self.inner.clone();
                    set.spawn(async move {
                        let refs: Vec<&Event> = events.iter().collect();
                        let mut conn = inner.conn();
                        users::apply(
                            &mut conn,
                            &inner,
                            &user,
                            &refs,
                            run.map(|r| (r, positions.as_slice())),
                        )
                        .await
                    });
                }
                while let Some(done) = set.join_next().await {
                    done.map_err(|e| StoreError::Internal(format!("event task failed: {e}")))??;
                }
            }
            Ok(())
        })
        .await
    }

    /// Moves the item vectors' counter after a write of vectors (see [`gram`]).
    async fn vectors_changed(&self) -> StoreResult<()> {
        let key = self.inner.keys.vectors_gen();
        self.run(async {
            let mut conn = self.conn();
            let _: i64 = redis::cmd("INCR")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .map_err(from_redis)?;
            durable::acknowledge(&conn, &self.inner.config, &[key]).await
        })
        .await
    }

    fn conn(&self) -> Conn {
        self.inner.conn()
    }

    async fn run<T, F>(&self, f: F) -> StoreResult<T>
    where
        F: Future<Output = StoreResult<T>>,
    {
        with_deadline(
            Duration::from_millis(self.inner.config.operation_timeout_ms),
            f,
        )
        .await
    }

    /// Runs `FT.SEARCH args`; if the index is gone (a Redis that restarted empty), creates
    /// it again and retries once.
    async fn search(&self, args: Vec<Vec<u8>>, keys: &Keys) -> StoreResult<(u64, Vec<Doc>)> {
        search_reply(self.query_index("FT.SEARCH", args, keys).await?)
    }

    /// [`RedisStore::search`] for `NOCONTENT` queries: the total and the keys.
    async fn search_keys(
        &self,
        args: Vec<Vec<u8>>,
        keys: &Keys,
    ) -> StoreResult<(u64, Vec<String>)> {
        reply::keys_reply(self.query_index("FT.SEARCH", args, keys).await?)
    }

    /// `FT.AGGREGATE` with [`query::aggregate_keys_args`]: the keys.
    async fn aggregate_keys(&self, args: Vec<Vec<u8>>, keys: &Keys) -> StoreResult<Vec<String>> {
        reply::aggregate_keys_reply(self.query_index("FT.AGGREGATE", args, keys).await?)
    }

    /// The position of the shard of `keys` (matched by its item prefix).
    fn shard_at(&self, keys: &Keys) -> Option<usize> {
        self.inner
            .shards
            .all()
            .iter()
            .position(|k| k.item_prefix() == keys.item_prefix())
    }

    /// The alias the queries of the shard of `keys` name (see `reshard`).
    fn alias(&self, keys: &Keys) -> String {
        let aliases = self.inner.aliases.read().unwrap_or_else(|e| e.into_inner());
        self.shard_at(keys)
            .and_then(|j| aliases.get(j).cloned())
            .unwrap_or_else(|| keys.alias())
    }

    /// Records the alias the queries of the shard of `keys` name from now on.
    fn set_alias(&self, keys: &Keys, alias: String) {
        if let Some(j) = self.shard_at(keys) {
            let mut aliases = self
                .inner
                .aliases
                .write()
                .unwrap_or_else(|e| e.into_inner());
            if let Some(a) = aliases.get_mut(j) {
                *a = alias;
            }
        }
    }

    /// Runs `command args` against the index of the shard of `keys` (the first argument
    /// names its alias, [`RedisStore::alias`], which routes the command on a cluster). A
    /// missing alias: on a single Redis one that restarted empty (meta, index and alias
    /// re-created, then retried once); on a cluster a shard whose slot moved, or is moving,
    /// to another master: retried on the new master's alias once its index there is
    /// complete, `Unavailable` until then (`reshard`), never a partial answer.
    async fn query_index(
        &self,
        command: &str,
        mut args: Vec<Vec<u8>>,
        keys: &Keys,
    ) -> StoreResult<redis::Value> {
        let mut conn = self.conn();
        let build = |args: &[Vec<u8>]| {
            let mut cmd = redis::cmd(command);
            for a in args {
                cmd.arg(a.as_slice());
            }
            cmd
        };
        match build(&args).query_async::<redis::Value>(&mut conn).await {
            Ok(v) => Ok(v),
            Err(e) if is_missing_index(&e) => {
                tracing::warn!(index = %keys.index(), "search index alias missing; looking again");
                let (schema, config, seed) =
                    (&self.inner.schema, &self.inner.config, &self.inner.seed);
                if !self.inner.cluster {
                    let version = self.inner.keys.version();
                    ensure_index(&mut conn, schema, config, version, Placement::Single, seed)
                        .await?;
                }
                let (state, alias) =
                    reshard::ready_index(&mut conn, keys, schema, config, seed).await?;
                self.set_alias(keys, alias.clone());
                if state != reshard::IndexState::Ready {
                    return Err(state.unavailable(keys));
                }
                if let Some(first) = args.first_mut() {
                    *first = alias.into_bytes();
                }
                match build(&args).query_async(&mut conn).await {
                    Ok(v) => Ok(v),
                    // The slot moved again in between: the next query looks again.
                    Err(e) if is_missing_index(&e) => {
                        Err(reshard::IndexState::Moving.unavailable(keys))
                    }
                    Err(e) => Err(from_redis(e)),
                }
            }
            Err(e) => Err(from_redis(e)),
        }
    }

    fn doc_item(&self, keys: &Keys, doc: &Doc) -> StoreResult<Item> {
        let id = keys
            .any_item_id(&doc.key)
            .ok_or_else(|| bad_reply("a hit outside this store's item prefix"))?;
        schema::item_from_fields(id, &doc.fields, &self.inner.schema)
    }

    /// The KNN candidates of shard `shard` for the `k` nearest items passing `filter`,
    /// best first: its `k` nearest matches (fewer when it has fewer), possibly more (see
    /// `Store::knn`); the first `k` that still exist are the shard's answer.
    async fn knn_candidates(
        &self,
        shard: usize,
        query: &[f32],
        k: usize,
        filter: &Filter,
    ) -> StoreResult<Vec<(usize, Doc, f32)>> {
        let keys = &self.inner.shards.all()[shard];
        let tagged = |hits: Vec<(Doc, f32)>| hits.into_iter().map(|(d, s)| (shard, d, s)).collect();
        let overfetch = self.inner.config.range_overfetch;
        if let (true, Some((pre, post))) = (overfetch > 1, query::split_ranges(filter)) {
            // Cheap pre-filter, ranges checked on an over-fetch (the hits return the
            // range fields). When at least k of the k' nearest cheap matches pass the
            // ranges, they are the k nearest matches; when fewer than k' came back,
            // every cheap match was seen. Otherwise fall back to the whole filter
            // inside RediSearch.
            let fetch = k.saturating_mul(overfetch);
            let ranged = range_fields(&post);
            let hits = self.knn_query(keys, query, fetch, &pre, &ranged).await?;
            let fetched = hits.len();
            let mut passed = Vec::with_capacity(fetched);
            for (doc, score) in hits {
                if post.matches(&self.doc_item(keys, &doc)?) {
                    passed.push((doc, score));
                }
            }
            if passed.len() >= k || fetched < fetch {
                return Ok(tagged(passed));
            }
        }
        Ok(tagged(self.knn_query(keys, query, k, filter, &[]).await?))
    }

    /// One `FT.SEARCH ... KNN` with `filter` entirely inside RediSearch, on the index of
    /// the shard of `keys`: the hits' keys and scores, best first, each with the `returned`
    /// fields only.
    async fn knn_query(
        &self,
        keys: &Keys,
        query: &[f32],
        k: usize,
        filter: &Filter,
        returned: &[&str],
    ) -> StoreResult<Vec<(Doc, f32)>> {
        let schema = &self.inner.schema;
        let args = query::knn_args(
            &self.alias(keys),
            &self.inner.config,
            query,
            k,
            filter,
            returned,
        );
        if returned.is_empty() {
            // The distance is the sort key (see `query::knn_args`). It is the f32 distance
            // printed with 17 digits (`RETURN` prints 12): both parse to the same f32.
            let hits = reply::sort_keys_reply(self.query_index("FT.SEARCH", args, keys).await?)?;
            return Ok(hits
                .into_iter()
                .map(|(key, distance)| {
                    let doc = Doc {
                        key,
                        fields: BTreeMap::new(),
                    };
                    (doc, score_of(schema.vector.metric, distance as f32))
                })
                .collect());
        }
        let (_, docs) = self.search(args, keys).await?;
        docs.into_iter()
            .map(|doc| {
                let distance: f32 = doc
                    .text(schema::SCORE_ALIAS)
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| bad_reply("KNN hit without a distance"))?;
                Ok((doc, score_of(schema.vector.metric, distance)))
            })
            .collect()
    }

    /// The first `k` of `hits` (shard, doc, score; best first) whose items still exist
    /// and pass `filter`, fetched with one `MGET` of their docs per round. (Between the
    /// search and the fetch an item may have been deleted or changed; such hits are
    /// skipped.)
    async fn complete_hits(
        &self,
        hits: Vec<(usize, Doc, f32)>,
        k: usize,
        filter: &Filter,
    ) -> StoreResult<Vec<Hit>> {
        let shards = self.inner.shards.all();
        let mut out = Vec::with_capacity(k.min(hits.len()));
        let mut rest = hits.as_slice();
        while out.len() < k && !rest.is_empty() {
            let (now, later) = rest.split_at((k - out.len()).min(rest.len()));
            rest = later;
            let pairs: Vec<(&str, String)> = now
                .iter()
                .map(|(shard, doc, _)| {
                    let keys = &shards[*shard];
                    keys.any_item_id(&doc.key)
                        .zip(keys.doc_of_item_key(&doc.key))
                        .ok_or_else(|| bad_reply("a hit outside this store's item prefix"))
                })
                .collect::<StoreResult<_>>()?;
            let items = self.fetch_docs(&pairs, false).await?;
            for ((_, _, score), item) in now.iter().zip(items) {
                if let Some(item) = item.filter(|it| filter.matches(it)) {
                    out.push(Hit {
                        item,
                        score: *score,
                    });
                }
            }
        }
        Ok(out)
    }

    /// The items (fields, no vector) of this version for `ids` (of the shard of `keys`),
    /// `None` where absent, through the [`docs`] cache (popular items: the same ones
    /// request after request).
    async fn fetch_items(&self, keys: &Keys, ids: &[&str]) -> StoreResult<Vec<Option<Arc<Item>>>> {
        let pairs: Vec<(&str, String)> = ids.iter().map(|id| (*id, keys.doc(id))).collect();
        self.fetch_docs(&pairs, true).await
    }

    /// The items (fields, no vector) of `(id, doc key)` pairs: from [`local`] while it is
    /// live, the rest from one `MGET` per shard; `cached`: decoded through the [`docs`]
    /// cache (popular items, while [`local`] is not live). (KNN hits spread over the whole
    /// catalog: [`docs`], which must decode to compare, costs more in churn than it saves
    /// for them, measured.)
    async fn fetch_docs(
        &self,
        pairs: &[(&str, String)],
        cached: bool,
    ) -> StoreResult<Vec<Option<Arc<Item>>>> {
        if pairs.is_empty() {
            return Ok(Vec::new());
        }
        let local = &self.inner.local;
        let mut out: Vec<Option<Arc<Item>>> = vec![None; pairs.len()];
        // The pairs to read, each with the ticket taken before its read (see `local`).
        let mut missing: Vec<(usize, Option<local::Ticket>)> = Vec::with_capacity(pairs.len());
        let live = local.items_live();
        for (i, (id, key)) in pairs.iter().enumerate() {
            match live.then(|| local.item(id, key)).flatten() {
                Some(item) => out[i] = Some(item),
                None => missing.push((i, live.then(|| local.ticket(id)))),
            }
        }
        if missing.is_empty() {
            return Ok(out);
        }
        // One MGET per shard, concurrently (a cluster refuses keys of several slots in one;
        // the cluster client's own splitting of a multi-slot MGET miscounts replies when a
        // slot moves mid-way, measured during a failover).
        let ids: Vec<&str> = missing.iter().map(|&(i, _)| pairs[i].0).collect();
        let groups = self.inner.shards.group(&ids);
        let per = try_join_all(groups.iter().map(|(_, at)| {
            let keys: Vec<&str> = at.iter().map(|&j| pairs[missing[j].0].1.as_str()).collect();
            async move {
                let docs: Vec<Option<Vec<u8>>> = redis::cmd("MGET")
                    .arg(&keys)
                    .query_async(&mut self.conn())
                    .await
                    .map_err(from_redis)?;
                if docs.len() != keys.len() {
                    return Err(bad_reply("MGET count"));
                }
                Ok(docs)
            }
        }))
        .await?;
        let schema = &self.inner.schema;
        for ((_, at), found) in groups.iter().zip(per) {
            for (&j, doc) in at.iter().zip(found) {
                let Some(doc) = doc else { continue };
                let (i, ticket) = missing[j];
                let (id, key) = &pairs[i];
                let item = match cached && !live {
                    true => self.inner.docs.item(key, id, doc, schema)?,
                    false => Arc::new(schema::item_from_doc(id, &doc, schema)?),
                };
                if let Some(ticket) = ticket {
                    local.store(id, key, &item, ticket);
                }
                out[i] = Some(item);
            }
        }
        Ok(out)
    }

    /// The `k` most popular items passing `filter`, read from Redis (see [`popular`]).
    async fn read_popular(&self, k: usize, filter: &Filter) -> StoreResult<Vec<PopularHit>> {
        let shards = self.inner.shards.all();
        if shards.len() == 1 {
            return self.run(self.popular_items(&shards[0], k, filter)).await;
        }
        // Each shard's k most popular matches; the k most popular of their union.
        let per = self
            .run(try_join_all(
                shards
                    .iter()
                    .map(|keys| self.popular_items(keys, k, filter)),
            ))
            .await?;
        let mut all: Vec<PopularHit> = per.into_iter().flatten().collect();
        all.sort_by(|a, b| b.log_score.total_cmp(&a.log_score));
        all.truncate(k);
        Ok(all)
    }

    /// Drops what [`local`] keeps of `ids` after this store wrote them.
    fn written(&self, ids: &[String]) {
        self.inner.local.forget(ids);
    }

    fn check_vectors(&self, what: &str, vectors: &[(String, Vec<f32>)]) -> StoreResult<()> {
        for (id, v) in vectors {
            check_vector(v, &self.inner.schema).map_err(|e| {
                ValidationError::new(format!("vector of {what} '{id}': {}", e.message))
            })?;
        }
        Ok(())
    }
}

impl RedisStore {
    /// Writes item vectors with `script` (`SET_VECTORS` or `SET_NEW_VECTORS`: KEYS item
    /// keys then new-item keys, ARGV vectors); `moves` says whether the item vectors'
    /// counter moves after (see [`gram`]).
    async fn write_vectors(
        &self,
        script: &redis::Script,
        vectors: Vec<(String, Vec<f32>)>,
        moves: bool,
    ) -> StoreResult<usize> {
        self.check_vectors("item", &vectors)?;
        // A new vector makes RediSearch re-index its item (an HNSW delete + insert, ~1 ms
        // on 100k × 64), and Redis serves no one else while a script runs: a few vectors
        // per script, one script after the other, so that requests are served between
        // them however large the batch. Each script has the operation deadline (and
        // holds the vectors of one shard).
        let ids: Vec<&str> = vectors.iter().map(|(id, _)| id.as_str()).collect();
        let mut written = 0;
        let mut failed = None;
        'shards: for (shard, at) in self.inner.shards.group(&ids) {
            let keys = &self.inner.shards.all()[shard];
            for chunk in at.chunks(VECTORS_PER_SCRIPT) {
                let mut inv = script.prepare_invoke();
                for &i in chunk {
                    let (id, v) = &vectors[i];
                    inv.key(keys.item(id)).arg(schema::vector_bytes(v));
                }
                for &i in chunk {
                    inv.key(keys.new_item(&vectors[i].0));
                }
                let done = self
                    .run(async {
                        inv.invoke_async::<usize>(&mut self.conn())
                            .await
                            .map_err(from_redis)
                    })
                    .await;
                match done {
                    Ok(n) => written += n,
                    Err(e) => {
                        failed = Some(e);
                        break 'shards;
                    }
                }
            }
        }
        // The scripts before a failure wrote their vectors: the counter moves for them too
        // (and for the failed one, which the deadline may have cut after it ran).
        if moves && (written > 0 || failed.is_some()) {
            let moved = self.vectors_changed().await;
            if let Some(e) = failed {
                return Err(e);
            }
            moved?;
        } else if let Some(e) = failed {
            return Err(e);
        }
        Ok(written)
    }

    /// Upserts the items `ids` (all of shard `shard`, latest writes in `latest`) with one
    /// script; how many.
    async fn upsert_in_shard(
        &self,
        shard: usize,
        ids: Vec<&str>,
        latest: &HashMap<String, ItemUpsert>,
    ) -> StoreResult<usize> {
        let order = ids;
        let keys = &self.inner.shards.all()[shard];
        let mut inv = scripts::UPSERT_ITEMS.prepare_invoke();
        for id in &order {
            inv.key(keys.item(id));
        }
        for id in &order {
            inv.key(keys.doc(id));
        }
        inv.key(keys.ids()).key(keys.popularity());
        inv.arg(keys.popular_by_prefix())
            .arg(self.inner.tag_fields.len());
        for f in &self.inner.tag_fields {
            inv.arg(f.as_str());
        }
        for id in &order {
            let Some(up) = latest.get(*id) else { continue };
            let fields = schema::item_fields(&up.item, &self.inner.schema);
            inv.arg(*id)
                .arg(if up.keep_vector && up.item.vector.is_none() {
                    "1"
                } else {
                    "0"
                })
                .arg(schema::doc_bytes(&up.item))
                .arg(fields.len());
            for (f, v) in fields {
                inv.arg(f).arg(v);
            }
        }
        let mut conn = self.conn();
        let n: usize = inv.invoke_async(&mut conn).await.map_err(from_redis)?;
        durable::acknowledge(&conn, &self.inner.config, &[keys.ids()]).await?;
        Ok(n)
    }
}

/// Bounds `f` by `deadline`; running out is `Unavailable`.
async fn with_deadline<T>(
    deadline: Duration,
    f: impl Future<Output = StoreResult<T>>,
) -> StoreResult<T> {
    tokio::time::timeout(deadline, f).await.unwrap_or_else(|_| {
        Err(StoreError::Unavailable(format!(
            "redis did not answer within {} ms",
            deadline.as_millis()
        )))
    })
}

/// The key layout this code reads and writes, recorded in `{prefix}meta` when a deployment
/// is created. 2: item docs (`doc:`), popularity out of the indexed hashes (`popby:`), the
/// `ids` set. 3: `ids` and `users` are ZSETs (listing in id order); a layout-2 deployment is
/// upgraded at connect ([`scripts::LAYOUT_3`]; servers of the older recd then fail their
/// writes to those keys, so upgrade every server of a deployment together). Data of
/// another layout is refused at connect rather than served wrong.
const LAYOUT: u32 = 3;

/// Makes sure the prefix has an index for `schema`: records the schema and version in
/// `{prefix}meta` if absent (`version` for a deployment that has none, as after a restart
/// of a Redis without persistence), refuses another key layout or a different recorded schema, creates the index
/// of the recorded version if missing and points the alias at it. Idempotent and safe to
/// run from several servers at once. Returns the recorded version.
async fn ensure_index(
    conn: &mut Conn,
    schema: &Schema,
    config: &RedisConfig,
    version: u32,
    placement: Placement,
    seed: &str,
) -> StoreResult<(u32, Shards, Vec<String>)> {
    let cluster = !matches!(placement, Placement::Single);
    let probe = global_keys(&config.prefix, cluster, 1);
    let schema_json = serde_json::to_string(schema)
        .map_err(|e| StoreError::Internal(format!("schema to json: {e}")))?;
    // A new cluster deployment's shard tags, placed on the masters there are now (the
    // meta keeps the first server's choice).
    let proposed = match placement {
        Placement::Single => String::new(),
        Placement::Cluster(Some(tags)) => tags.join(","),
        Placement::Cluster(None) => {
            let masters = conn::masters(conn).await?;
            let n = match config.cluster_shards {
                0 => masters.len(),
                n => n,
            };
            shards::choose_tags(n, &masters)
                .ok_or_else(|| StoreError::Unavailable("no cluster master serves slots".into()))?
                .join(",")
        }
    };
    let (version, stored, layout, tags): (
        Option<u32>,
        Option<String>,
        Option<u32>,
        Option<String>,
    ) = scripts::INIT_META
        .key(probe.meta())
        .arg(version)
        .arg(&schema_json)
        .arg(LAYOUT)
        .arg(&proposed)
        .invoke_async(conn)
        .await
        .map_err(from_redis)?;
    let version = version.ok_or_else(|| bad_reply("meta version"))?;
    let layout = match layout {
        Some(2) => {
            let mut inv = scripts::LAYOUT_3.prepare_invoke();
            inv.key(probe.meta()).key(probe.users());
            for v in 1..=version {
                inv.key(probe.at_version(v).ids());
            }
            let now: Option<u32> = inv
                .arg(LAYOUT)
                .invoke_async(conn)
                .await
                .map_err(from_redis)?;
            tracing::info!(prefix = %config.prefix, "key layout 2 upgraded to 3 (id sets are sorted sets)");
            now
        }
        other => other,
    };
    if layout != Some(LAYOUT) {
        return Err(StoreError::Invalid(ValidationError::new(format!(
            "the redis prefix '{}' holds data in key layout {} and this recd reads layout {LAYOUT}; \
             re-import it under a new prefix (or FLUSH the old one)",
            config.prefix,
            layout.map_or_else(
                || "1 (before item docs and per-tag popularity)".to_string(),
                |l| l.to_string()
            )
        ))));
    }
    // Settings of the embedded index only (`vector.quantization`, `vector.partition_by`)
    // may differ: this backend ignores them.
    let same = stored.as_deref().is_some_and(|json| {
        json == schema_json
            || serde_json::from_str::<Schema>(json).is_ok_and(|s| s.same_data(schema))
    });
    if !same {
        return Err(StoreError::Invalid(ValidationError::new(format!(
            "the redis prefix '{}' holds items of another schema ({}); use another prefix, or migrate",
            config.prefix,
            stored.unwrap_or_default()
        ))));
    }
    let shards = match (cluster, tags.filter(|t| !t.is_empty())) {
        (false, _) => Shards::single(Keys::new(&config.prefix, version)),
        (true, Some(tags)) => {
            let tags: Vec<String> = tags.split(',').map(str::to_string).collect();
            Shards::cluster(&config.prefix, &tags, version)
        }
        (true, None) => {
            return Err(StoreError::Invalid(ValidationError::new(format!(
                "the redis prefix '{}' holds a deployment without shards; use another prefix",
                config.prefix
            ))));
        }
    };
    let mut aliases = Vec::with_capacity(shards.len());
    for keys in shards.all() {
        // A new index indexes what its master holds already before the alias (what
        // queries use) points at it: a fresh deployment's at once, a shard moved to a
        // master without its index after a while (its queries answer 503 until then).
        let (mut state, mut alias) = reshard::ready_index(conn, keys, schema, config, seed).await?;
        for _ in 0..INDEX_WAITS {
            if !matches!(state, reshard::IndexState::Building(_)) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            (state, alias) = reshard::ready_index(conn, keys, schema, config, seed).await?;
        }
        if state != reshard::IndexState::Ready {
            tracing::warn!(index = %keys.index(), ?state, "search index not ready: its shard answers 503 until it is");
        }
        aliases.push(alias);
    }
    Ok((version, shards, aliases))
}

/// How many times (10 ms apart) [`ensure_index`] looks again at an index still indexing
/// what its master holds (an empty one is done at once).
const INDEX_WAITS: usize = 20;

/// Where a deployment's keys go (see [`ensure_index`]).
enum Placement {
    /// One Redis.
    Single,
    /// A cluster: the shard tags to record if the deployment is new (`None`: chosen from
    /// the topology now).
    Cluster(Option<Vec<String>>),
}

/// The deployment-wide keys (meta, model registry) of `prefix`.
fn global_keys(prefix: &str, cluster: bool, version: u32) -> Keys {
    if cluster {
        Keys::new(&shards::global_prefix(prefix), version)
    } else {
        Keys::new(prefix, version)
    }
}

/// `FT.CREATE` for `keys`' version unless it exists (on the master of the index name's
/// slot, which on a cluster is the shard's).
async fn create_index(
    conn: &mut Conn,
    keys: &Keys,
    schema: &Schema,
    config: &RedisConfig,
) -> StoreResult<()> {
    let index = keys.index();
    let args = schema::create_args(&index, keys.item_prefix(), schema, config);
    match conn
        .on_key_master(&index, redis::cmd("FT.CREATE").arg(&args))
        .await
    {
        Ok(_) => {
            tracing::info!(index = %keys.index(), "created search index");
            Ok(())
        }
        Err(e) if e.to_string().contains("already exists") => Ok(()),
        Err(e) => Err(from_redis(e)),
    }
}

#[async_trait]
impl Store for RedisStore {
    fn backend(&self) -> &'static str {
        "redis"
    }

    fn schema(&self) -> &Schema {
        &self.inner.schema
    }

    async fn ping(&self) -> StoreResult<()> {
        // Every connection: healthy means each one a request may take answers (and a
        // connection broken by an outage reconnects on its first use, this one).
        self.run(async {
            for conn in &self.inner.conns {
                let () = redis::cmd("PING")
                    .query_async(&mut conn.clone())
                    .await
                    .map(|_: String| ())
                    .map_err(from_redis)?;
            }
            Ok(())
        })
        .await
    }

    async fn counts(&self) -> StoreResult<Counts> {
        self.run(async {
            let per = self
                .each_shard(|keys| async move {
                    let (items, users): (u64, u64) = redis::pipe()
                        .zcard(keys.ids())
                        .zcard(keys.users())
                        .query_async(&mut self.conn())
                        .await
                        .map_err(from_redis)?;
                    Ok((items, users))
                })
                .await?;
            Ok(Counts {
                items: per.iter().map(|(i, _)| i).sum(),
                users: per.iter().map(|(_, u)| u).sum(),
            })
        })
        .await
    }

    async fn upsert_items(&self, items: Vec<ItemUpsert>) -> StoreResult<usize> {
        // Validate everything first (nothing is written on a bad item), and keep the last
        // write of an id, as if the items had come one by one.
        let mut order: Vec<String> = Vec::new();
        let mut latest: HashMap<String, ItemUpsert> = HashMap::new();
        for up in items {
            if let Some(v) = &up.item.vector {
                check_vector(v, &self.inner.schema).map_err(|e| {
                    ValidationError::new(format!("item '{}': {}", up.item.id, e.message))
                })?;
            }
            if !latest.contains_key(&up.item.id) {
                order.push(up.item.id.clone());
            }
            latest.insert(up.item.id.clone(), up);
        }
        if order.is_empty() {
            return Ok(0);
        }
        // One script per shard: all or nothing on a single Redis; on a cluster, each
        // shard's part is (a batch whose shards fail partly reports the failure).
        let groups = self.inner.shards.group(&order);
        let written = self
            .run(try_join_all(groups.into_iter().map(|(shard, at)| {
                let ids: Vec<&str> = at.iter().map(|&i| order[i].as_str()).collect();
                self.upsert_in_shard(shard, ids, &latest)
            })))
            .await;
        // After the scripts ran (a failed one may still have written), before answering.
        self.written(&order);
        // The counter moves even after a failure: a batch that failed in one shard may
        // have written vectors in another (and a script cut by the deadline may have run).
        let moved = self.vectors_changed().await;
        let written = written?;
        moved?;
        // Items the client gave a vector are new items no more.
        let given: Vec<&str> = order
            .iter()
            .filter(|id| latest.get(*id).is_some_and(|up| up.item.vector.is_some()))
            .map(String::as_str)
            .collect();
        for (shard, at) in self.inner.shards.group(&given) {
            let keys = &self.inner.shards.all()[shard];
            let mut del = redis::cmd("DEL");
            for &i in &at {
                del.arg(keys.new_item(given[i]));
            }
            self.run(async {
                let _: () = del
                    .query_async(&mut self.conn())
                    .await
                    .map_err(from_redis)?;
                Ok(())
            })
            .await?;
        }
        Ok(written.into_iter().sum())
    }

    async fn get_items(&self, ids: &[String]) -> StoreResult<Vec<Option<Item>>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.run(async {
            let groups = self.inner.shards.group(ids);
            let per = try_join_all(groups.iter().map(|(shard, at)| {
                let keys = &self.inner.shards.all()[*shard];
                let mut pipe = redis::pipe();
                for &i in at {
                    pipe.hgetall(keys.item(&ids[i]));
                }
                async move {
                    let values: Vec<redis::Value> = pipe
                        .query_async(&mut self.conn())
                        .await
                        .map_err(from_redis)?;
                    Ok::<_, StoreError>(values)
                }
            }))
            .await?;
            let mut out: Vec<Option<Item>> = vec![None; ids.len()];
            for ((_, at), values) in groups.iter().zip(per) {
                if values.len() != at.len() {
                    return Err(bad_reply("pipeline reply count"));
                }
                for (&i, v) in at.iter().zip(values) {
                    let fields = reply::hash_reply(v)?;
                    if !fields.is_empty() {
                        out[i] = Some(schema::item_from_fields(
                            &ids[i],
                            &fields,
                            &self.inner.schema,
                        )?);
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    async fn delete_item(&self, id: &str) -> StoreResult<bool> {
        let keys = self.inner.shards.of(id);
        let mut inv = scripts::DELETE_ITEM.prepare_invoke();
        inv.key(keys.item(id))
            .key(keys.doc(id))
            .key(keys.ids())
            .arg(keys.popular_by_prefix())
            .arg(id);
        for f in &self.inner.tag_fields {
            inv.arg(f.as_str());
        }
        let deleted = self
            .run(async {
                let mut conn = self.conn();
                let n: u64 = inv.invoke_async(&mut conn).await.map_err(from_redis)?;
                durable::acknowledge(&conn, &self.inner.config, &[keys.ids()]).await?;
                Ok(n > 0)
            })
            .await;
        // After the script ran (a failed call may still have deleted), before answering.
        self.written(&[id.to_string()]);
        let deleted = deleted?;
        if deleted {
            let marker = keys.new_item(id);
            self.run(async {
                let _: () = redis::cmd("DEL")
                    .arg(&marker)
                    .query_async(&mut self.conn())
                    .await
                    .map_err(from_redis)?;
                Ok(())
            })
            .await?;
            self.vectors_changed().await?;
        }
        Ok(deleted)
    }

    async fn set_item_vectors(&self, vectors: Vec<(String, Vec<f32>)>) -> StoreResult<usize> {
        self.write_vectors(&scripts::SET_VECTORS, vectors, true)
            .await
    }

    async fn touch_new_items(
        &self,
        touches: &[crate::NewItemTouch],
    ) -> StoreResult<Vec<crate::NewItemList>> {
        // Per item, its touches in order.
        let mut order: Vec<&str> = Vec::new();
        let mut per: HashMap<&str, Vec<(&str, f32)>> = HashMap::new();
        for (item, user, w) in touches {
            per.entry(item.as_str())
                .or_insert_with(|| {
                    order.push(item.as_str());
                    Vec::new()
                })
                .push((user.as_str(), *w));
        }
        if order.is_empty() {
            return Ok(Vec::new());
        }
        let capacity = self.inner.settings.new_items.capacity;
        let groups = self.inner.shards.group(&order);
        let replies = self
            .run(try_join_all(groups.iter().map(|(shard, at)| {
                let keys = &self.inner.shards.all()[*shard];
                let mut inv = scripts::TOUCH_NEW_ITEMS.prepare_invoke();
                for &i in at {
                    inv.key(keys.item(order[i]));
                }
                for &i in at {
                    inv.key(keys.new_item(order[i]));
                }
                inv.arg(capacity);
                for &i in at {
                    let t = &per[order[i]];
                    inv.arg(t.len());
                    for (u, w) in t {
                        inv.arg(*u).arg(w.to_string());
                    }
                }
                async move {
                    let lists: Vec<Option<String>> = inv
                        .invoke_async(&mut self.conn())
                        .await
                        .map_err(from_redis)?;
                    Ok::<_, StoreError>(lists)
                }
            })))
            .await?;
        let mut out = Vec::new();
        for ((_, at), lists) in groups.iter().zip(replies) {
            if lists.len() != at.len() {
                return Err(bad_reply("new-item list count"));
            }
            for (&i, raw) in at.iter().zip(lists) {
                let Some(raw) = raw else { continue };
                // cjson writes an empty table as an object
                let list: Vec<(String, f32)> = if raw == "{}" {
                    Vec::new()
                } else {
                    serde_json::from_str(&raw).map_err(|_| bad_reply("new-item list"))?
                };
                out.push((order[i].to_string(), list));
            }
        }
        Ok(out)
    }

    async fn set_new_item_vectors(&self, vectors: Vec<(String, Vec<f32>)>) -> StoreResult<usize> {
        // The item vectors' counter stays: each server's `YᵀY` takes provisional vectors in
        // at its next recomputation (one per new item would recompute it over and over).
        self.write_vectors(&scripts::SET_NEW_VECTORS, vectors, false)
            .await
    }

    async fn knn(&self, query: &[f32], k: usize, filter: &Filter) -> StoreResult<Vec<Hit>> {
        let schema = &self.inner.schema;
        if query.len() != schema.vector.dim || query.iter().any(|x| !x.is_finite()) {
            return Err(StoreError::Invalid(ValidationError::new(format!(
                "the query vector must have {} finite components",
                schema.vector.dim
            ))));
        }
        let filter = query::simplify(filter);
        if k == 0 || query::is_nothing(&filter) {
            return Ok(Vec::new());
        }
        self.run(async {
            // Each shard's candidates hold its k nearest matches, so the k nearest of
            // their union are the k nearest overall: an exact merge of exact per-shard
            // answers. Any shard failing fails the query (never a shorter list).
            let n = self.inner.shards.len();
            let hits = if n == 1 {
                self.knn_candidates(0, query, k, &filter).await?
            } else {
                let per =
                    try_join_all((0..n).map(|shard| self.knn_candidates(shard, query, k, &filter)))
                        .await?;
                let mut all: Vec<(usize, Doc, f32)> = per.into_iter().flatten().collect();
                all.sort_by(|a, b| b.2.total_cmp(&a.2));
                all
            };
            self.complete_hits(hits, k, &filter).await
        })
        .await
    }

    async fn popular(&self, k: usize, filter: &Filter) -> StoreResult<Vec<PopularHit>> {
        let canonical = filter.canonical();
        let ticket = match self.inner.local.popular(&canonical, k) {
            Ok(list) => return Ok(list.as_ref().clone()),
            Err(ticket) => ticket,
        };
        let read_at = std::time::Instant::now();
        let list = self.read_popular(k, filter).await?;
        if let Some(ticket) = ticket {
            let kept = Arc::new(list);
            self.inner
                .local
                .store_popular(canonical, k, kept.clone(), ticket, read_at);
            return Ok(kept.as_ref().clone());
        }
        Ok(list)
    }

    fn items_written_elsewhere(&self, ids: &[String]) {
        self.inner.local.forget(ids);
    }

    fn follow_item_writes(&self, following: bool) {
        self.inner.local.follow(following);
    }
    async fn text_search(
        &self,
        terms: &[String],
        k: usize,
        filter: &Filter,
    ) -> StoreResult<Vec<Arc<Item>>> {
        // Only whole tokens can match (what the index holds); anything else matches nothing,
        // exactly as in the embedded backend.
        let terms: Vec<String> = terms
            .iter()
            .filter(|t| recd_core::text::tokenize(t) == [t.as_str()])
            .cloned()
            .collect();
        if k == 0 || query::is_nothing(&query::simplify(filter)) {
            return Ok(Vec::new());
        }
        self.run(async {
            // Every shard's best k; RediSearch's text scores are per shard (its term
            // statistics), so the merge keeps each shard's order and takes them in turn.
            let per = self
                .each_shard(|keys| {
                    let terms = &terms;
                    async move {
                        let Some(args) = query::text_args(
                            &self.alias(keys),
                            &self.inner.schema,
                            &self.inner.config,
                            terms,
                            k,
                            filter,
                        ) else {
                            return Ok(Vec::new());
                        };
                        let (_, docs) = self.search(args, keys).await?;
                        docs.iter()
                            .map(|doc| self.doc_item(keys, doc).map(Arc::new))
                            .collect::<StoreResult<Vec<_>>>()
                    }
                })
                .await?;
            Ok(fanout::interleave(per, k))
        })
        .await
    }

    async fn apply_events(&self, events: &[Event]) -> StoreResult<()> {
        self.apply_by_user(events.iter().map(|e| (0, e)), None)
            .await
    }

    async fn apply_events_once(&self, batch: crate::once::Positioned<'_>) -> StoreResult<()> {
        self.apply_by_user(batch.iter(), Some(batch.run)).await
    }

    async fn expire_users(&self, _now_ms: i64) -> StoreResult<crate::Expired> {
        // Redis expired the keys itself (PEXPIRE on every write); what is left is the id
        // in the set of users, taken off here a batch at a time.
        const BATCH: usize = 500;
        if self.inner.settings.session.ttl_ms().is_none() {
            return Ok(crate::Expired {
                users: 0,
                pass_done: true,
            });
        }
        use std::sync::atomic::Ordering::Relaxed;
        let inner = &self.inner;
        // One shard at a time; the pass is done when the last shard's is.
        let shard = inner.sweep_shard.load(Relaxed) % inner.shards.len();
        let cursor = inner.sweep_cursor.load(Relaxed);
        let keys = &inner.shards.all()[shard];
        let (next, gone) = self
            .run(users::sweep(&mut self.conn(), keys, cursor, BATCH))
            .await?;
        inner.sweep_cursor.store(next, Relaxed);
        let mut pass_done = false;
        if next == 0 {
            pass_done = shard + 1 == inner.shards.len();
            inner
                .sweep_shard
                .store((shard + 1) % inner.shards.len(), Relaxed);
        }
        Ok(crate::Expired {
            users: gone,
            pass_done,
        })
    }

    async fn get_user(&self, id: &str) -> StoreResult<Option<recd_core::UserState>> {
        self.run(users::get(&mut self.conn(), &self.inner.shards, id))
            .await
    }

    async fn delete_user(&self, id: &str) -> StoreResult<bool> {
        let keys = self.inner.shards.of(id);
        self.run(async {
            let mut conn = self.conn();
            let existed = users::delete(&mut conn, keys, id).await?;
            durable::acknowledge(&conn, &self.inner.config, &[keys.users()]).await?;
            Ok(existed)
        })
        .await
    }

    async fn set_user_vectors(&self, vectors: Vec<(String, Vec<f32>)>) -> StoreResult<usize> {
        self.check_vectors("user", &vectors)?;
        if vectors.is_empty() {
            return Ok(0);
        }
        // One `MULTI` per shard.
        let groups = self
            .inner
            .shards
            .group(&vectors.iter().map(|(id, _)| id).collect::<Vec<_>>());
        let done = self
            .run(try_join_all(groups.into_iter().map(|(shard, at)| {
                let part: Vec<&(String, Vec<f32>)> = at.iter().map(|&i| &vectors[i]).collect();
                async move {
                    users::set_vectors(
                        &mut self.conn(),
                        &self.inner.shards.all()[shard],
                        &self.inner.settings,
                        &part,
                    )
                    .await
                }
            })))
            .await?;
        Ok(done.into_iter().sum())
    }

    async fn events(&self) -> StoreResult<Vec<Event>> {
        // Paged XRANGE of each shard's log, merged in log order (see `events_page`); no
        // deadline, since the whole log may be large (training reads it).
        let mut out: Vec<((u64, u64), usize, Event)> = Vec::new();
        for (shard, keys) in self.inner.shards.all().iter().enumerate() {
            let mut conn = self.conn();
            let stream = keys.events();
            let mut start = "-".to_string();
            loop {
                let page: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
                    .arg(&stream)
                    .arg(&start)
                    .arg("+")
                    .arg("COUNT")
                    .arg(1000)
                    .query_async(&mut conn)
                    .await
                    .map_err(from_redis)?;
                let Some((last, _)) = page.last() else { break };
                start = format!("({last}");
                let full = page.len() == 1000;
                for (id, fields) in page {
                    let fields: BTreeMap<String, String> = fields.into_iter().collect();
                    let order = fanout::stream_order(&id).unwrap_or_default();
                    out.push((order, shard, users::event_from_fields(&fields)?));
                }
                if !full {
                    break;
                }
            }
        }
        if self.inner.shards.len() > 1 {
            out.sort_by_key(|(order, shard, _)| (*order, *shard));
        }
        Ok(out.into_iter().map(|(_, _, e)| e).collect())
    }

    async fn list_items(
        &self,
        after: Option<&str>,
        limit: usize,
        filter: &Filter,
    ) -> StoreResult<Page<Arc<Item>>> {
        // Ids in order from the ZSETs (merged over the shards), a chunk at a time, their
        // docs in one MGET, the filter checked here (`Filter::matches`, the reference both
        // backends are held to). Each round trip has the operation deadline; the page costs
        // the ids walked to fill it.
        const CHUNK: usize = 512;
        let filter = query::simplify(filter);
        if query::is_nothing(&filter) {
            return Ok(Page {
                entries: Vec::new(),
                next: None,
            });
        }
        let take = limit.saturating_add(1);
        let mut found: Vec<Arc<Item>> = Vec::with_capacity(take.min(CHUNK));
        let mut from = after.map(str::to_string);
        while found.len() < take {
            let want = take - found.len();
            let chunk = if filter.is_all() {
                want
            } else {
                want.max(CHUNK)
            };
            let ids = self
                .run(self.lex_range_all(|k| k.ids().to_string(), from.as_deref(), chunk))
                .await?;
            let pairs: Vec<(&str, String)> = ids
                .iter()
                .map(|id| (id.as_str(), self.inner.shards.of(id).doc(id)))
                .collect();
            let items = self.run(self.fetch_docs(&pairs, false)).await?;
            // An id whose doc is gone was deleted between the two reads.
            found.extend(
                items
                    .into_iter()
                    .flatten()
                    .filter(|it| filter.matches(it))
                    .take(want),
            );
            if ids.len() < chunk {
                break;
            }
            from = ids.last().cloned();
        }
        Ok(Page::cut(found, limit, |it| it.id.clone()))
    }

    async fn list_users(&self, after: Option<&str>, limit: usize) -> StoreResult<Page<String>> {
        let take = limit.saturating_add(1);
        let ids = self
            .run(self.lex_range_all(Keys::users, after, take))
            .await?;
        Ok(Page::cut(ids, limit, String::clone))
    }

    async fn events_page(&self, after: Option<&str>, limit: usize) -> StoreResult<Page<Event>> {
        // The log's order is its entries' stream ids (on a cluster, the shards' logs
        // merged by (stream id, shard); a position is then `<shard>/<stream id>`).
        let n = self.inner.shards.len();
        let after = match after {
            None => None,
            Some(a) => Some(fanout::parse_position(a, n).ok_or_else(|| {
                StoreError::Invalid(ValidationError::new(format!(
                    "'{a}' is not a position in the event log"
                )))
            })?),
        };
        let take = limit.saturating_add(1);
        let per = self
            .run(try_join_all(
                self.inner
                    .shards
                    .all()
                    .iter()
                    .enumerate()
                    .map(|(shard, keys)| {
                        // Past the position: a later id, or the same id in a later shard.
                        let start = match after {
                            None => "-".to_string(),
                            Some((s, id)) if shard <= s => format!("({id}"),
                            Some((_, id)) => id.to_string(),
                        };
                        async move {
                            let page: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
                                .arg(keys.events())
                                .arg(start)
                                .arg("+")
                                .arg("COUNT")
                                .arg(take)
                                .query_async(&mut self.conn())
                                .await
                                .map_err(from_redis)?;
                            Ok::<_, StoreError>(page)
                        }
                    }),
            ))
            .await?;
        let mut entries: Vec<((u64, u64), usize, String, Vec<(String, String)>)> = per
            .into_iter()
            .enumerate()
            .flat_map(|(shard, page)| {
                page.into_iter().map(move |(id, f)| {
                    let order = fanout::stream_order(&id).unwrap_or_default();
                    (order, shard, fanout::position(shard, &id, n), f)
                })
            })
            .collect();
        if n > 1 {
            entries.sort_by_key(|(order, shard, _, _)| (*order, *shard));
            entries.truncate(take);
        }
        let page = Page::cut(entries, limit, |(_, _, position, _)| position.clone());
        let entries = page
            .entries
            .into_iter()
            .map(|(_, _, _, fields)| users::event_from_fields(&fields.into_iter().collect()))
            .collect::<StoreResult<_>>()?;
        Ok(Page {
            entries,
            next: page.next,
        })
    }

    async fn events_len(&self) -> StoreResult<u64> {
        self.run(async {
            let lens = self
                .each_shard(|keys| async move {
                    redis::cmd("XLEN")
                        .arg(keys.events())
                        .query_async::<u64>(&mut self.conn())
                        .await
                        .map_err(from_redis)
                })
                .await?;
            Ok(lens.into_iter().sum())
        })
        .await
    }

    async fn rebuild_sessions(&self, users: &[String]) -> StoreResult<usize> {
        // One user at a time is one compare-and-set unit (see `users::rebuild_session`), each
        // within the operation deadline; up to USER_PARALLELISM users at once.
        const USER_PARALLELISM: usize = 32;
        let mut users = users.to_vec();
        users.sort_unstable();
        users.dedup();
        let mut rebuilt = 0;
        for chunk in users.chunks(USER_PARALLELISM) {
            let mut set = tokio::task::JoinSet::new();
            for user in chunk {
                let (inner, user) = (self.inner.clone(), user.clone());
                let deadline = Duration::from_millis(inner.config.operation_timeout_ms);
                set.spawn(async move {
                    let mut conn = inner.conn();
                    with_deadline(deadline, users::rebuild_session(&mut conn, &inner, &user)).await
                });
            }
            while let Some(done) = set.join_next().await {
                let done =
                    done.map_err(|e| StoreError::Internal(format!("rebuild task failed: {e}")))??;
                rebuilt += usize::from(done);
            }
        }
        Ok(rebuilt)
    }

    async fn next_model_seq(&self) -> StoreResult<u64> {
        self.run(models::next_seq(&mut self.conn(), &self.inner.keys))
            .await
    }

    async fn put_model_chunk(&self, seq: u64, index: u32, bytes: Vec<u8>) -> StoreResult<()> {
        self.run(models::put_chunk(
            &mut self.conn(),
            &self.inner.keys,
            seq,
            index,
            bytes,
        ))
        .await
    }

    async fn model_chunk(&self, seq: u64, index: u32) -> StoreResult<Option<Vec<u8>>> {
        self.run(models::chunk(
            &mut self.conn(),
            &self.inner.keys,
            seq,
            index,
        ))
        .await
    }

    async fn put_model(&self, record: ModelRecord) -> StoreResult<()> {
        self.run(models::put(&mut self.conn(), &self.inner.keys, &record))
            .await
    }

    async fn models(&self) -> StoreResult<ModelRegistry> {
        self.run(models::registry(&mut self.conn(), &self.inner.keys))
            .await
    }

    async fn set_live_model(&self, seq: u64) -> StoreResult<()> {
        self.run(models::set_live(&mut self.conn(), &self.inner.keys, seq))
            .await
    }

    async fn delete_model(&self, seq: u64) -> StoreResult<bool> {
        self.run(models::delete(&mut self.conn(), &self.inner.keys, seq))
            .await
    }

    async fn put_model_transitions(&self, seq: u64, lists: Vec<NextList>) -> StoreResult<()> {
        self.run(models::put_next(
            &mut self.conn(),
            &self.inner.keys,
            seq,
            &lists,
        ))
        .await
    }

    async fn transitions(&self, items: &[String]) -> StoreResult<Vec<Vec<(String, f32)>>> {
        self.run(models::live_next(&mut self.conn(), &self.inner.keys, items))
            .await
    }
}

/// Up to `count` members of the ZSET `key` (all scores 0) after `after`, in byte order
/// (`ZRANGE key (after + BYLEX LIMIT 0 count`; the id is an argument, never parsed).
async fn lex_range(
    mut conn: Conn,
    key: String,
    after: Option<&str>,
    count: usize,
) -> StoreResult<Vec<String>> {
    let min = match after {
        Some(a) => format!("({a}"),
        None => "-".to_string(),
    };
    redis::cmd("ZRANGE")
        .arg(key)
        .arg(min)
        .arg("+")
        .arg("BYLEX")
        .arg("LIMIT")
        .arg(0)
        .arg(count)
        .query_async(&mut conn)
        .await
        .map_err(from_redis)
}

/// The numeric fields a conjunction of ranges reads.
fn range_fields(ranges: &Filter) -> Vec<&str> {
    let mut out: Vec<&str> = match ranges {
        Filter::And(all) => all
            .iter()
            .filter_map(|f| match f {
                Filter::Range { field, .. } => Some(field.as_str()),
                _ => None,
            })
            .collect(),
        Filter::Range { field, .. } => vec![field.as_str()],
        _ => Vec::new(),
    };
    out.sort_unstable();
    out.dedup();
    out
}

/// Our "higher is better" score from a RediSearch distance: cosine and IP distances are
/// `1 − similarity`, L2 is the squared distance (our score is its negation).
fn score_of(metric: recd_core::Metric, distance: f32) -> f32 {
    match metric {
        recd_core::Metric::Cosine | recd_core::Metric::Ip => 1.0 - distance,
        recd_core::Metric::L2 => -distance,
    }
}
