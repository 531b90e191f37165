//! The caching tiers in front of the pipeline: L1 in-process (moka, size-bounded, per-entry
//! TTL with jitter), L2 in Redis when the redis backend runs (shared by every server), and
//! the source behind them (the pipeline, the store, the catalog source).
//!
//! What is cached:
//! - `recs`: a user's answer to one request shape (count, filter, exclusions, query,
//!   diversity), in both tiers.
//! - `popular`: the popular candidates for one filter, shared by every user, in L1 only
//!   (each server recomputes it at most once per TTL and filter: too little load to share).
//! - `item`: one item's details (with the catalog source's row), in both tiers.
//!
//! Invalidation never scans: keys carry generations ([`generations`]) and L2 bodies carry
//! marks ([`shared`]); events of the configured types move the user's generation, item
//! writes move the item's and every list's, before the write is acknowledged; other
//! servers hear it on pub/sub, and with L2 a server answers from L1 only while it follows
//! that channel (a message missed while it is down may leave an L1 entry stale: L1 is
//! bypassed until the channel is back, then cleared). Stampedes: concurrent misses for one key compute once per
//! process (moka's `try_get_with`) and, with L2, once across servers (a `SET NX PX` fill
//! lock; the others wait for the entry, bounded by `lock_wait_ms`, then compute themselves).
//! Hot `recs` entries are refreshed early in the background (XFetch), so they never expire
//! under load.

pub mod config;
pub mod entry;
pub mod generations;
pub mod shared;

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use moka::Expiry;
use moka::future::Cache;
use moka::notification::RemovalCause;
use recd_core::Filter;
use recd_store::{PopularHit, Store, StoreError, StoreResult};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use self::config::{CacheConfig, TtlSeconds};
pub use self::entry::{Entry, Kind};
use self::entry::{jittered_ttl_ms, unit_draw};
use self::generations::Generations;
pub use self::shared::{Invalidation, RedisTier};
use self::shared::{Keys, decode, encode};
use crate::answer::{CachedList, ItemDetails};
use crate::clock::now_ms;

/// Computes a value on a miss; `'static` so that an early refresh can run it in the
/// background after the request that triggered it has been answered.
pub type Compute<V> = Arc<dyn Fn() -> BoxFuture<'static, StoreResult<V>> + Send + Sync>;

/// Where an answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// An L1 hit.
    L1,
    /// An L2 hit (Redis), possibly filled by another server.
    L2,
    /// Computed by this request.
    Computed,
    /// Computed by a concurrent request for the same key, which this one waited for.
    Joined,
}

impl Origin {
    /// Whether the value was already cached when the request arrived.
    pub fn is_hit(self) -> bool {
        matches!(self, Origin::L1 | Origin::L2)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct RecsKey {
    user: String,
    shape: u128,
    generation: u64,
    lists: u64,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct PopularKey {
    filter: String,
    k: usize,
    lists: u64,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct ItemKey {
    id: String,
    generation: u64,
    all: u64,
}

/// Entries expire by their own (jittered) TTL, counted from when they were computed, so an
/// entry taken from L2 keeps the deadline it had there.
struct ByEntry;

impl<K, V> Expiry<K, Arc<Entry<V>>> for ByEntry {
    fn expire_after_create(
        &self,
        _key: &K,
        value: &Arc<Entry<V>>,
        _at: std::time::Instant,
    ) -> Option<Duration> {
        Some(value.remaining(now_ms()))
    }

    fn expire_after_update(
        &self,
        _key: &K,
        value: &Arc<Entry<V>>,
        _at: std::time::Instant,
        _left: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.remaining(now_ms()))
    }
}

fn l1<K, V>(kind: Kind, max_entries: u64) -> Cache<K, Arc<Entry<V>>>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Send + Sync + 'static,
{
    Cache::builder()
        .max_capacity(max_entries)
        .expire_after(ByEntry)
        .eviction_listener(move |_key, _value, cause| {
            if cause == RemovalCause::Size {
                metrics::counter!("recd_cache_evictions_total", "kind" => kind.as_str())
                    .increment(1);
            }
        })
        .build()
}

/// Hit and miss counts per kind and tier, for the hit-ratio gauges.
#[derive(Default)]
struct Stats {
    /// [kind][tier][hit = 0, miss = 1]
    counts: [[[AtomicU64; 2]; 2]; 3],
}

const KINDS: [Kind; 3] = [Kind::Recs, Kind::Popular, Kind::Item];
const TIERS: [&str; 2] = ["l1", "l2"];

impl Stats {
    fn record(&self, kind: Kind, tier: usize, hit: bool) {
        let k = KINDS.iter().position(|&x| x == kind).unwrap_or(0);
        self.counts[k][tier][usize::from(!hit)].fetch_add(1, Ordering::Relaxed);
        metrics::counter!(
            "recd_cache_lookups_total",
            "kind" => kind.as_str(),
            "tier" => TIERS[tier],
            "result" => if hit { "hit" } else { "miss" }
        )
        .increment(1);
    }
}

/// The caches of one server.
pub struct Caches {
    config: CacheConfig,
    /// Tags this server's invalidation messages, so that it ignores its own.
    instance: String,
    generations: Generations,
    recs: Cache<RecsKey, Arc<Entry<CachedList>>>,
    popular: Cache<PopularKey, Arc<Entry<Arc<Vec<PopularHit>>>>>,
    items: Cache<ItemKey, Arc<Entry<Option<ItemDetails>>>>,
    l2: Option<RedisTier>,
    /// Keys with an early refresh under way (one refresh per key at a time).
    refreshing: Mutex<HashSet<u64>>,
    stats: Stats,
    /// The store that keeps items in process: told of other servers' item writes and of
    /// whether the channel is up (see [`Caches::follow`]).
    store: std::sync::OnceLock<Arc<dyn Store>>,
    /// Whether L1 may answer. With L2 (several servers on one Redis) only while the
    /// invalidation channel is up: while it is down another server's write goes unheard,
    /// so an L1 entry may be stale; requests then go to L2, whose marks live in Redis.
    /// Without L2 this server hears every invalidation there is, so always.
    l1_live: AtomicBool,
}

impl std::fmt::Debug for Caches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caches")
            .field("enabled", &self.config.enabled)
            .field("l2", &self.l2.is_some())
            .finish()
    }
}

/// Rebuilds a shared error (moka hands one error to every waiter of a failed fill).
fn unshare(e: &StoreError) -> StoreError {
    match e {
        StoreError::Invalid(v) => StoreError::Invalid(v.clone()),
        StoreError::Unavailable(m) => StoreError::Unavailable(m.clone()),
        StoreError::Internal(m) => StoreError::Internal(m.clone()),
    }
}

impl Caches {
    /// Caches per `config`, with `l2` in redis mode. In redis mode, call [`Caches::listen`]
    /// before serving so that other servers' invalidations reach this one.
    pub fn new(config: CacheConfig, l2: Option<RedisTier>) -> Arc<Self> {
        let max = config.l1_max_entries;
        let max_ttl = Duration::from_millis(config.max_ttl_ms());
        let l2 = if config.l2 { l2 } else { None };
        // With L2, L1 serves once the channel is up (see `Caches::listen`).
        let l2_absent = l2.is_none();
        // Every lookup series exists from the start (at 0), so a hit ratio has data before
        // the first hit.
        let tiers = if l2.is_some() {
            &TIERS[..]
        } else {
            &TIERS[..1]
        };
        for kind in KINDS {
            for tier in tiers {
                for result in ["hit", "miss"] {
                    metrics::counter!(
                        "recd_cache_lookups_total",
                        "kind" => kind.as_str(),
                        "tier" => *tier,
                        "result" => result
                    )
                    .increment(0);
                }
            }
        }
        Arc::new(Self {
            instance: uuid::Uuid::new_v4().simple().to_string(),
            generations: Generations::new(max_ttl),
            recs: l1(Kind::Recs, max),
            popular: l1(Kind::Popular, max),
            items: l1(Kind::Item, max),
            l2,
            refreshing: Mutex::new(HashSet::new()),
            stats: Stats::default(),
            store: std::sync::OnceLock::new(),
            l1_live: AtomicBool::new(l2_absent),
            config,
        })
    }

    /// Passes the invalidation channel on to `store` (the redis backend keeps items and
    /// popular lists in process): other servers' item writes, and whether the channel is
    /// up — the store serves what it keeps only while it is, since every message counts.
    /// Call before [`Caches::listen`]; without a channel (no L2) the store is never told it
    /// is up, so it keeps nothing.
    pub fn follow(&self, store: Arc<dyn Store>) {
        let _ = self.store.set(store);
    }

    /// Whether the channel is up: L1 serves, and the followed store keeps items, only
    /// while it is. Called with `true` only after L1 was cleared of what a lost message
    /// may have left stale.
    fn channel_up(&self, up: bool) {
        self.l1_live.store(up, Ordering::Release);
        if let Some(store) = self.store.get() {
            store.follow_item_writes(up);
        }
    }

    /// Whether L1 answers at the moment (in redis mode: whether this server follows the
    /// other servers' invalidations).
    pub fn l1_live(&self) -> bool {
        self.l1_live.load(Ordering::Acquire)
    }

    /// Whether caching is on at all.
    pub fn enabled(&self) -> bool {
        self.config.enabled
    }

    /// The configuration.
    pub fn config(&self) -> &CacheConfig {
        &self.config
    }

    fn ttl_seconds(&self, kind: Kind) -> f64 {
        let t = &self.config.ttl_seconds;
        match kind {
            Kind::Recs => t.recs,
            Kind::Popular => t.popular,
            Kind::Item => t.item,
        }
    }

    fn entry<V>(&self, kind: Kind, value: V, started: Instant) -> Entry<V> {
        Entry {
            value,
            created_ms: now_ms(),
            ttl_ms: jittered_ttl_ms(self.ttl_seconds(kind), self.config.jitter),
            compute_ms: started.elapsed().as_secs_f64() * 1000.0,
        }
    }

    /// A user's answer for one request shape (see [`shape_hash`]).
    pub async fn recommend(
        self: &Arc<Self>,
        user: &str,
        shape: u128,
        compute: Compute<CachedList>,
    ) -> StoreResult<(Arc<Entry<CachedList>>, Origin)> {
        let key = RecsKey {
            user: user.to_string(),
            shape,
            generation: self.generations.user(user),
            lists: self.generations.lists(),
        };
        let l2 = self.l2.as_ref().map(|r| r.recs_keys(user, shape));
        if !self.l1_live() {
            self.stats.record(Kind::Recs, 0, false);
            return self.fill(Kind::Recs, l2.as_ref(), &compute, false).await;
        }
        if let Some(e) = self.recs.get(&key).await {
            self.stats.record(Kind::Recs, 0, true);
            self.maybe_refresh_early(key, &e, l2, compute);
            return Ok((e, Origin::L1));
        }
        self.stats.record(Kind::Recs, 0, false);
        self.through_l2(&self.recs, key, Kind::Recs, l2, compute)
            .await
    }

    /// One item's details (`None` caches "no such item").
    pub async fn item(
        self: &Arc<Self>,
        id: &str,
        compute: Compute<Option<ItemDetails>>,
    ) -> StoreResult<(Option<ItemDetails>, Origin)> {
        let key = ItemKey {
            id: id.to_string(),
            generation: self.generations.item(id),
            all: self.generations.details(),
        };
        let l2 = self.l2.as_ref().map(|r| r.item_keys(id));
        if !self.l1_live() {
            self.stats.record(Kind::Item, 0, false);
            let (e, origin) = self.fill(Kind::Item, l2.as_ref(), &compute, false).await?;
            return Ok((e.value.clone(), origin));
        }
        if let Some(e) = self.items.get(&key).await {
            self.stats.record(Kind::Item, 0, true);
            return Ok((e.value.clone(), Origin::L1));
        }
        self.stats.record(Kind::Item, 0, false);
        let (e, origin) = self
            .through_l2(&self.items, key, Kind::Item, l2, compute)
            .await?;
        Ok((e.value.clone(), origin))
    }

    /// The popular candidates for `filter` (L1 only).
    pub async fn popular<F>(
        &self,
        k: usize,
        filter: &Filter,
        compute: F,
    ) -> StoreResult<Arc<Vec<PopularHit>>>
    where
        F: Future<Output = StoreResult<Vec<PopularHit>>>,
    {
        let key = PopularKey {
            filter: filter.canonical(),
            k,
            lists: self.generations.lists(),
        };
        if !self.l1_live() {
            self.stats.record(Kind::Popular, 0, false);
            fill_counter(Kind::Popular);
            return Ok(Arc::new(compute.await?));
        }
        if let Some(e) = self.popular.get(&key).await {
            self.stats.record(Kind::Popular, 0, true);
            return Ok(e.value.clone());
        }
        self.stats.record(Kind::Popular, 0, false);
        let filled = self
            .popular
            .try_get_with(key, async {
                fill_counter(Kind::Popular);
                let started = Instant::now();
                let hits = compute.await?;
                Ok::<_, StoreError>(Arc::new(self.entry(Kind::Popular, Arc::new(hits), started)))
            })
            .await
            .map_err(|e| unshare(&e))?;
        Ok(filled.value.clone())
    }

    /// L1 miss: single-flight per process around the L2 read, the cross-server lock and the
    /// computation.
    async fn through_l2<K, V>(
        self: &Arc<Self>,
        cache: &Cache<K, Arc<Entry<V>>>,
        key: K,
        kind: Kind,
        l2: Option<Keys>,
        compute: Compute<V>,
    ) -> StoreResult<(Arc<Entry<V>>, Origin)>
    where
        K: Hash + Eq + Clone + Send + Sync + 'static,
        V: Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        let origin = Mutex::new(None);
        let entry = cache
            .try_get_with(key, async {
                let (entry, o) = self.fill(kind, l2.as_ref(), &compute, false).await?;
                if let Ok(mut slot) = origin.lock() {
                    *slot = Some(o);
                }
                Ok::<_, StoreError>(entry)
            })
            .await
            .map_err(|e| unshare(&e))?;
        let origin = origin
            .lock()
            .ok()
            .and_then(|o| *o)
            .unwrap_or(Origin::Joined);
        Ok((entry, origin))
    }

    /// Reads L2, else takes the fill lock (or waits for the server holding it), computes,
    /// and writes L2. With `force` (an early refresh) an L2 entry is not taken as the answer.
    async fn fill<V: Serialize + DeserializeOwned>(
        &self,
        kind: Kind,
        l2: Option<&Keys>,
        compute: &Compute<V>,
        force: bool,
    ) -> StoreResult<(Arc<Entry<V>>, Origin)> {
        let tier = self.l2.as_ref().zip(l2);
        let mut marks = None;
        let mut lock = None;
        if let Some((redis, keys)) = tier {
            match redis.get(keys).await {
                Ok(found) => {
                    if !force {
                        let hit = decode(&found);
                        self.stats.record(kind, 1, hit.is_some());
                        if let Some(e) = hit {
                            return Ok((Arc::new(e), Origin::L2));
                        }
                    }
                    marks = Some((found.mark, found.epoch));
                    let lock_key = redis.lock_key(&keys.data);
                    match redis.lock(&lock_key, self.config.lock_ttl_ms).await {
                        // Another server may have filled the entry and released its lock
                        // between our read and our lock: read again before computing.
                        Ok(Some(token)) if !force => match redis.get(keys).await {
                            Ok(again) => match decode(&again) {
                                Some(e) => {
                                    release(redis, &lock_key, &token).await;
                                    return Ok((Arc::new(e), Origin::L2));
                                }
                                None => {
                                    marks = Some((again.mark, again.epoch));
                                    lock = Some((lock_key, token));
                                }
                            },
                            Err(e) => {
                                tracing::warn!(cause = %e, "L2 cache read failed; computing");
                                lock = Some((lock_key, token));
                            }
                        },
                        Ok(Some(token)) => lock = Some((lock_key, token)),
                        Ok(None) if !force => {
                            if let Some(e) = self.wait_for_peer(redis, keys).await {
                                return Ok((Arc::new(e), Origin::L2));
                            }
                        }
                        Ok(None) => {}
                        Err(e) => {
                            tracing::warn!(cause = %e, "cache fill lock failed; computing anyway")
                        }
                    }
                }
                Err(e) => tracing::warn!(cause = %e, "L2 cache read failed; computing"),
            }
        }
        fill_counter(kind);
        let started = Instant::now();
        let computed = compute().await;
        let result = computed.map(|value| self.entry(kind, value, started));
        if let (Ok(entry), Some((redis, keys)), Some((mark, epoch))) = (&result, tier, marks) {
            let body = encode(entry, mark, epoch);
            if let Err(e) = redis.set(keys, body, entry.ttl_ms).await {
                tracing::warn!(cause = %e, "L2 cache write failed");
            }
        }
        if let (Some(redis), Some((lock_key, token))) = (self.l2.as_ref(), lock) {
            release(redis, &lock_key, &token).await;
        }
        Ok((Arc::new(result?), Origin::Computed))
    }

    /// Another server holds the fill lock: poll L2 with backoff until its entry appears or
    /// `lock_wait_ms` passes (then the caller computes itself: a dead holder never blocks
    /// anyone for longer than that).
    async fn wait_for_peer<V: DeserializeOwned>(
        &self,
        redis: &RedisTier,
        keys: &Keys,
    ) -> Option<Entry<V>> {
        metrics::counter!("recd_cache_lock_waits_total").increment(1);
        let deadline = Instant::now() + Duration::from_millis(self.config.lock_wait_ms);
        let mut delay = Duration::from_millis(2);
        while Instant::now() < deadline {
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_millis(50));
            if let Ok(found) = redis.get(keys).await
                && let Some(e) = decode(&found)
            {
                return Some(e);
            }
        }
        metrics::counter!("recd_cache_lock_wait_timeouts_total").increment(1);
        None
    }

    /// XFetch on an L1 hit: maybe recompute in the background and replace the entry.
    fn maybe_refresh_early(
        self: &Arc<Self>,
        key: RecsKey,
        entry: &Entry<CachedList>,
        l2: Option<Keys>,
        compute: Compute<CachedList>,
    ) {
        if !entry.should_refresh_early(now_ms(), self.config.xfetch_beta, unit_draw()) {
            return;
        }
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut hasher);
        let id = hasher.finish();
        let first = self
            .refreshing
            .lock()
            .map(|mut set| set.insert(id))
            .unwrap_or(false);
        if !first {
            return;
        }
        metrics::counter!("recd_cache_early_refreshes_total", "kind" => Kind::Recs.as_str())
            .increment(1);
        let this = Arc::clone(self);
        tokio::spawn(async move {
            match this.fill(Kind::Recs, l2.as_ref(), &compute, true).await {
                Ok((fresh, _)) => this.recs.insert(key, fresh).await,
                Err(e) => tracing::warn!(cause = %e, "early refresh failed"),
            }
            if let Ok(mut set) = this.refreshing.lock() {
                set.remove(&id);
            }
        });
    }

    /// Events changed these users' state: drop their lists here, in L2 and on the other
    /// servers, before the events are acknowledged.
    pub async fn users_changed(&self, users: Vec<String>) {
        if users.is_empty() {
            return;
        }
        for u in &users {
            self.generations.bump_user(u);
        }
        self.publish(Invalidation::Users(users)).await;
    }

    /// A user was forgotten: drop their lists everywhere and erase them from L2 (a GDPR
    /// erasure must not leave the user's lists behind until they expire).
    pub async fn forget_user(&self, user: &str) {
        self.users_changed(vec![user.to_string()]).await;
        if let Some(redis) = &self.l2
            && let Err(e) = redis.erase_user(user).await
        {
            tracing::warn!(cause = %e, "could not erase a forgotten user's cached lists");
        }
    }

    /// Every list may be stale (e.g. new vectors were written back): drop them all here, in
    /// L2 and on the other servers. Item details stay.
    pub async fn lists_changed(&self) {
        self.items_changed(Vec::new()).await;
    }

    /// Items were written or deleted: drop their details and every list.
    pub async fn items_changed(&self, ids: Vec<String>) {
        for id in &ids {
            self.generations.bump_item(id);
        }
        self.generations.bump_lists();
        self.publish(Invalidation::Items(ids)).await;
    }

    /// The catalog source says these items' details changed (recd's own items did not).
    pub async fn details_changed(&self, ids: Vec<String>) {
        for id in &ids {
            self.generations.bump_item(id);
        }
        self.publish(Invalidation::Details(ids)).await;
    }

    /// The catalog source may have changed anything: drop every item's details.
    pub async fn all_details_changed(&self) {
        self.generations.bump_details();
        self.publish(Invalidation::AllDetails).await;
    }

    async fn publish(&self, what: Invalidation) {
        if let Some(redis) = &self.l2
            && let Err(e) = redis.invalidate(&what, &self.instance).await
        {
            // The write itself succeeded; failing it now would invite a retry that
            // applies it twice. L2 entries it should have dropped live at most one TTL.
            metrics::counter!("recd_cache_invalidation_failures_total").increment(1);
            tracing::warn!(cause = %e, "cache invalidation could not reach Redis");
        }
    }

    /// Applies another server's invalidation to L1.
    fn apply_remote(&self, what: &Invalidation) {
        match what {
            Invalidation::Users(ids) => ids.iter().for_each(|u| self.generations.bump_user(u)),
            Invalidation::Items(ids) => {
                ids.iter().for_each(|i| self.generations.bump_item(i));
                self.generations.bump_lists();
                if let Some(store) = self.store.get() {
                    store.items_written_elsewhere(ids);
                }
            }
            Invalidation::Details(ids) => ids.iter().for_each(|i| self.generations.bump_item(i)),
            Invalidation::AllDetails => self.generations.bump_details(),
        }
    }

    /// Drops all of L1 (after the invalidation channel was lost: messages may be missing).
    pub fn clear_l1(&self) {
        self.generations.bump_lists();
        self.recs.invalidate_all();
        self.popular.invalidate_all();
        self.items.invalidate_all();
    }

    /// Subscribes to other servers' invalidations (redis mode). The first subscription is
    /// made before this returns, so that nothing published after start is missed; a lost
    /// connection is re-established with backoff and clears L1.
    pub async fn listen(self: &Arc<Self>) {
        let Some(redis) = self.l2.clone() else {
            return;
        };
        let first = match redis.subscribe().await {
            Ok(p) => {
                // Subscribed before serving: from now on every write is heard, and L1 holds
                // nothing yet.
                self.channel_up(true);
                Some(p)
            }
            Err(e) => {
                tracing::warn!(cause = %e, "cannot subscribe to cache invalidations yet; retrying");
                None
            }
        };
        let weak = Arc::downgrade(self);
        tokio::spawn(listen_loop(weak, redis, first));
    }

    /// Updates the gauges exported on `/metrics`.
    pub async fn export_gauges(&self) {
        // Entry counts are eventually consistent in moka: settle them first.
        self.recs.run_pending_tasks().await;
        self.popular.run_pending_tasks().await;
        self.items.run_pending_tasks().await;
        metrics::gauge!("recd_cache_entries", "kind" => "recs").set(self.recs.entry_count() as f64);
        metrics::gauge!("recd_cache_entries", "kind" => "popular")
            .set(self.popular.entry_count() as f64);
        metrics::gauge!("recd_cache_entries", "kind" => "item")
            .set(self.items.entry_count() as f64);
        for (k, kind) in KINDS.iter().enumerate() {
            for (t, tier) in TIERS.iter().enumerate() {
                let hits = self.stats.counts[k][t][0].load(Ordering::Relaxed) as f64;
                let misses = self.stats.counts[k][t][1].load(Ordering::Relaxed) as f64;
                if hits + misses > 0.0 {
                    metrics::gauge!("recd_cache_hit_ratio", "kind" => kind.as_str(), "tier" => *tier)
                        .set(hits / (hits + misses));
                }
            }
        }
        if let Some(redis) = &self.l2 {
            match redis.memory().await {
                Ok((used, evicted)) => {
                    metrics::gauge!("recd_redis_used_memory_bytes").set(used);
                    // INFO reports a running total: export it as the counter it is.
                    metrics::counter!("recd_redis_evicted_keys_total").absolute(evicted as u64);
                }
                Err(e) => tracing::debug!(cause = %e, "INFO for metrics failed"),
            }
        }
    }
}

/// Releases a fill lock we hold; a failure only delays the next fill (the lock expires).
async fn release(redis: &RedisTier, lock_key: &str, token: &str) {
    if let Err(e) = redis.unlock(lock_key, token).await {
        tracing::warn!(cause = %e, "cache fill lock release failed (it expires by itself)");
    }
}

fn fill_counter(kind: Kind) {
    metrics::counter!("recd_cache_fills_total", "kind" => kind.as_str()).increment(1);
}

async fn listen_loop(weak: Weak<Caches>, redis: RedisTier, mut pubsub: Option<redis::aio::PubSub>) {
    let mut delay = Duration::from_millis(100);
    // A first subscription that failed may already have missed messages.
    let mut lost = pubsub.is_none();
    loop {
        if let Some(mut p) = pubsub.take() {
            if lost {
                // Back after a gap: what L1 kept from before may have missed a message.
                // Cleared first, then served again.
                match weak.upgrade() {
                    Some(this) => {
                        this.clear_l1();
                        this.channel_up(true);
                    }
                    None => return,
                }
            }
            delay = Duration::from_millis(100);
            let mut stream = p.on_message();
            while let Some(msg) = stream.next().await {
                let Some(this) = weak.upgrade() else {
                    return;
                };
                let Ok(payload) = msg.get_payload::<String>() else {
                    continue;
                };
                if let Some(what) = Invalidation::decode(&payload, &this.instance) {
                    this.apply_remote(&what);
                }
            }
            tracing::warn!("cache invalidation channel lost; reconnecting");
            lost = true;
            if let Some(this) = weak.upgrade() {
                this.channel_up(false);
            }
        }
        if weak.strong_count() == 0 {
            return;
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
        match redis.subscribe().await {
            Ok(p) => {
                // Subscribed: L1 is cleared and served again at the top of the loop.
                pubsub = Some(p);
            }
            Err(e) => {
                lost = true;
                tracing::debug!(cause = %e, "cache invalidation channel: reconnect failed");
            }
        }
    }
}

/// A stable hash of a request's shape (everything but the user): equal requests share an
/// entry, across servers and restarts (xxh3, not the per-process `DefaultHasher`).
pub fn shape_hash(parts: &[&str]) -> u128 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for p in parts {
        h.update(&(p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    h.digest128()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use recd_core::Item;
    use tokio::sync::Semaphore;

    use super::*;
    use crate::answer::{CachedItem, Source};

    /// A list whose one item says which run made it (`{tag}:{run}`).
    fn list(tag: &str, run: usize) -> CachedList {
        let item = Item {
            id: format!("{tag}:{run}"),
            vector: None,
            fields: Default::default(),
        };
        CachedList {
            items: vec![CachedItem {
                item: Arc::new(item),
                score: 1.0,
                reasons: Vec::new(),
            }],
            source: Source::Personalized,
        }
    }

    /// The run that made a list (see [`list`]).
    fn run(list: &CachedList) -> usize {
        let id = &list.items[0].item.id;
        id.rsplit(':').next().and_then(|n| n.parse().ok()).unwrap()
    }

    /// The tag of a list (see [`list`]).
    fn tag(list: &CachedList) -> &str {
        let id = &list.items[0].item.id;
        id.split(':').next().unwrap()
    }

    /// A compute that counts its runs and, while `gate` has no permits, blocks.
    fn counted(
        runs: &Arc<AtomicUsize>,
        gate: &Arc<Semaphore>,
        tag: &'static str,
    ) -> Compute<CachedList> {
        let runs = Arc::clone(runs);
        let gate = Arc::clone(gate);
        Arc::new(move || {
            let runs = Arc::clone(&runs);
            let gate = Arc::clone(&gate);
            Box::pin(async move {
                let n = runs.fetch_add(1, Ordering::SeqCst);
                let _permit = gate
                    .acquire()
                    .await
                    .map_err(|e| StoreError::Internal(e.to_string()))?;
                Ok(list(tag, n))
            })
        })
    }

    /// An item-details compute that counts its runs.
    fn counted_item(runs: &Arc<AtomicUsize>) -> Compute<Option<ItemDetails>> {
        let runs = Arc::clone(runs);
        Arc::new(move || {
            let n = runs.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                let item = Item {
                    id: format!("item:{n}"),
                    vector: None,
                    fields: Default::default(),
                };
                Ok(Some(ItemDetails {
                    item: Arc::new(item),
                    from_source: false,
                    details: None,
                }))
            })
        })
    }

    fn open_gate() -> Arc<Semaphore> {
        Arc::new(Semaphore::new(Semaphore::MAX_PERMITS))
    }

    fn caches() -> Arc<Caches> {
        Caches::new(CacheConfig::default(), None)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_misses_for_one_key_compute_once() {
        let c = caches();
        let runs = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(Semaphore::new(0));
        let compute = counted(&runs, &gate, "list");
        let tasks: Vec<_> = (0..200)
            .map(|_| {
                let (c, compute) = (Arc::clone(&c), Arc::clone(&compute));
                tokio::spawn(async move { c.recommend("u1", 7, compute).await })
            })
            .collect();
        // Let the first fill start, then let it finish: whichever requests have arrived by
        // then wait for it, the rest find it in L1. Either way it runs once.
        while runs.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        gate.add_permits(Semaphore::MAX_PERMITS);
        let mut computed = 0;
        for t in tasks {
            let (entry, origin) = t.await.unwrap().unwrap();
            assert_eq!(run(&entry.value), 0);
            computed += usize::from(origin == Origin::Computed);
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(computed, 1);
    }

    #[tokio::test]
    async fn an_invalidated_user_misses_and_others_keep_their_entries() {
        let c = caches();
        let runs = Arc::new(AtomicUsize::new(0));
        let compute = counted(&runs, &open_gate(), "one");
        assert_eq!(
            c.recommend("a", 1, compute.clone()).await.unwrap().1,
            Origin::Computed
        );
        assert_eq!(
            c.recommend("b", 1, compute.clone()).await.unwrap().1,
            Origin::Computed
        );
        assert_eq!(
            c.recommend("a", 1, compute.clone()).await.unwrap().1,
            Origin::L1
        );
        assert_eq!(
            c.recommend("a", 2, compute.clone()).await.unwrap().1,
            Origin::Computed,
            "another shape"
        );
        c.users_changed(vec!["a".into()]).await;
        let (e, o) = c.recommend("a", 1, compute.clone()).await.unwrap();
        assert_eq!(o, Origin::Computed);
        assert_eq!(run(&e.value), 3);
        assert_eq!(
            c.recommend("b", 1, compute.clone()).await.unwrap().1,
            Origin::L1
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_request_after_an_invalidation_never_joins_a_fill_that_started_before_it() {
        let c = caches();
        let runs = Arc::new(AtomicUsize::new(0));
        let closed = Arc::new(Semaphore::new(0));
        let slow = counted(&runs, &closed, "stale");
        let before = {
            let c = Arc::clone(&c);
            tokio::spawn(async move { c.recommend("u", 1, slow).await })
        };
        while runs.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        c.users_changed(vec!["u".into()]).await;
        // The first fill is still blocked; this one must compute on its own (if it joined
        // the old fill it would wait for the closed gate, and the timeout would fail it).
        let fresh = counted(&runs, &open_gate(), "fresh");
        let (e, o) = tokio::time::timeout(Duration::from_secs(30), c.recommend("u", 1, fresh))
            .await
            .expect("joined a fill that started before the invalidation")
            .unwrap();
        assert_eq!((o, tag(&e.value)), (Origin::Computed, "fresh"));
        closed.add_permits(1);
        before.await.unwrap().unwrap();
        // The stale fill landed under the old generation: nobody sees it.
        let fresh = counted(&runs, &open_gate(), "fresh");
        let (e, o) = c.recommend("u", 1, fresh).await.unwrap();
        assert_eq!((o, tag(&e.value)), (Origin::L1, "fresh"));
    }

    #[tokio::test]
    async fn item_writes_drop_that_items_details_and_every_list_but_not_other_details() {
        let c = caches();
        let runs = Arc::new(AtomicUsize::new(0));
        let compute = counted(&runs, &open_gate(), "one");
        let details = counted_item(&runs);
        c.recommend("a", 1, compute.clone()).await.unwrap();
        c.item("x", details.clone()).await.unwrap();
        c.item("y", details.clone()).await.unwrap();
        assert_eq!(c.item("x", details.clone()).await.unwrap().1, Origin::L1);
        c.items_changed(vec!["x".into()]).await;
        assert_eq!(
            c.item("x", details.clone()).await.unwrap().1,
            Origin::Computed
        );
        assert_eq!(c.item("y", details.clone()).await.unwrap().1, Origin::L1);
        assert_eq!(
            c.recommend("a", 1, compute.clone()).await.unwrap().1,
            Origin::Computed,
            "a deleted item may be in any list"
        );
        c.details_changed(vec!["y".into()]).await;
        assert_eq!(
            c.item("y", details.clone()).await.unwrap().1,
            Origin::Computed
        );
        assert_eq!(
            c.recommend("a", 1, compute.clone()).await.unwrap().1,
            Origin::L1,
            "details are not lists"
        );
    }

    #[tokio::test]
    async fn failures_are_not_cached() {
        let c = caches();
        let calls = Arc::new(AtomicUsize::new(0));
        let failing: Compute<CachedList> = {
            let calls = Arc::clone(&calls);
            Arc::new(move || {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                Box::pin(async move {
                    if n == 0 {
                        Err(StoreError::Unavailable("down".into()))
                    } else {
                        Ok(list("ok", 0))
                    }
                })
            })
        };
        assert!(matches!(
            c.recommend("u", 1, failing.clone()).await,
            Err(StoreError::Unavailable(_))
        ));
        let (e, o) = c.recommend("u", 1, failing).await.unwrap();
        assert_eq!((o, tag(&e.value)), (Origin::Computed, "ok"));
    }

    #[tokio::test]
    async fn l1_answers_nothing_while_the_channel_is_down() {
        let c = caches();
        let runs = Arc::new(AtomicUsize::new(0));
        let compute = counted(&runs, &open_gate(), "list");
        let item_runs = Arc::new(AtomicUsize::new(0));
        let popular_runs = AtomicUsize::new(0);
        let popular = || async {
            popular_runs.fetch_add(1, Ordering::SeqCst);
            Ok(Vec::new())
        };
        c.recommend("u", 1, compute.clone()).await.unwrap();
        c.item("x", counted_item(&item_runs)).await.unwrap();
        c.popular(10, &Filter::all(), popular()).await.unwrap();
        assert_eq!(
            c.recommend("u", 1, compute.clone()).await.unwrap().1,
            Origin::L1
        );

        // Down: every answer is computed (no L2 here), and nothing is kept for later.
        c.channel_up(false);
        assert!(!c.l1_live());
        for expected in 1..3 {
            let (e, o) = c.recommend("u", 1, compute.clone()).await.unwrap();
            assert_eq!((o, run(&e.value)), (Origin::Computed, expected));
            let (_, o) = c.item("x", counted_item(&item_runs)).await.unwrap();
            assert_eq!(o, Origin::Computed);
            c.popular(10, &Filter::all(), popular()).await.unwrap();
        }
        assert_eq!(item_runs.load(Ordering::SeqCst), 3);
        assert_eq!(popular_runs.load(Ordering::SeqCst), 3);

        // Back (after the clear the listener makes): L1 fills and answers again.
        c.clear_l1();
        c.channel_up(true);
        assert_eq!(
            c.recommend("u", 1, compute.clone()).await.unwrap().1,
            Origin::Computed
        );
        assert_eq!(c.recommend("u", 1, compute).await.unwrap().1, Origin::L1);
        assert_eq!(runs.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn popular_lists_are_keyed_by_filter_and_dropped_by_item_writes() {
        let c = caches();
        let runs = AtomicUsize::new(0);
        let fill = || async {
            runs.fetch_add(1, Ordering::SeqCst);
            Ok(Vec::new())
        };
        let all = Filter::all();
        let some = Filter::Bool {
            field: "in_stock".into(),
            value: true,
        };
        c.popular(10, &all, fill()).await.unwrap();
        c.popular(10, &all, fill()).await.unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        c.popular(10, &some, fill()).await.unwrap();
        c.popular(20, &all, fill()).await.unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 3);
        c.items_changed(vec!["x".into()]).await;
        c.popular(10, &all, fill()).await.unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 4);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_hit_close_to_expiry_is_refreshed_in_the_background() {
        // β so large that every hit is "close to expiry".
        let c = Caches::new(
            CacheConfig {
                xfetch_beta: 1e12,
                ..CacheConfig::default()
            },
            None,
        );
        let runs = Arc::new(AtomicUsize::new(0));
        let compute = counted(&runs, &open_gate(), "one");
        c.recommend("u", 1, compute.clone()).await.unwrap();
        let (e, o) = c.recommend("u", 1, compute.clone()).await.unwrap();
        assert_eq!(
            (o, run(&e.value)),
            (Origin::L1, 0),
            "the hit is served at once"
        );
        // The refresh replaces the entry; poll until it has (it runs on another task).
        let refreshed = async {
            loop {
                let (e, _) = c.recommend("u", 1, compute.clone()).await.unwrap();
                if run(&e.value) != 0 {
                    return;
                }
                tokio::task::yield_now().await;
            }
        };
        tokio::time::timeout(Duration::from_secs(30), refreshed)
            .await
            .expect("no early refresh happened");
        assert!(runs.load(Ordering::SeqCst) >= 2);
    }

    #[test]
    fn shapes_differ_when_any_part_differs_and_parts_do_not_run_together() {
        assert_eq!(shape_hash(&["10", "{}"]), shape_hash(&["10", "{}"]));
        assert_ne!(shape_hash(&["10", "{}"]), shape_hash(&["11", "{}"]));
        assert_ne!(shape_hash(&["ab", "c"]), shape_hash(&["a", "bc"]));
    }
}
