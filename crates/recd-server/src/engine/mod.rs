//! The engine: recd's use cases over a store, its caches and the catalog source, each
//! doing cache-then-compute or write-then-invalidate in exactly one place.
//!
//! HTTP handlers and CLI commands only parse, call one method here, and shape the answer;
//! none of them touches a cache. What plugs into every request (experiments, impression
//! logging, online metrics, auth decisions that depend on the data) plugs in here.
//!
//! Invariants kept here:
//! - A write is invalidated before it is acknowledged: items (and every list, since any
//!   list may hold them) on item writes; the users' lists on events of the types in
//!   `cache.invalidate_on`; every list when a write-back's sessions are rebuilt.
//! - `explain` and `use_cache: false` always run the pipeline; every other recommendation
//!   goes through the cache of its request shape.
//! - Answers are typed (`crate::answer`); the caches keep [`CachedList`]s, never JSON.
//!
//! Every use case fails with [`EngineError`] (`crate::failure`, outside this module so that
//! the HTTP error mapping and the experiments need not depend on the engine).
//!
//! # Layout
//! - [`details`]: item details through the item cache, the catalog source's change feed,
//!   cache warming.
//! - [`listing`]: items, users and the event log a page at a time.
//! - [`models`]: model versions: the registry's meaning, activation (rollback).
//! - [`newitems`]: new and cold items: the item fold-in on events, the content map.
//! - [`shared_tier`]: connecting the L2 tier a deployment's servers share.

pub mod details;
pub mod listing;
pub mod models;
pub mod newitems;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use recd_core::{Event, Filter, Item, ItemUpsert, Schema};
use recd_store::{Counts, PopularHit, Store, StoreError};
use serde::Serialize;

use crate::answer::{
    CacheInfo, CachedList, ItemFields, Recommendation, ServedItem, Tier, UserView, VectorsWritten,
};
use crate::cache::shared::SharedError;
use crate::cache::{Caches, Compute, Origin, RedisTier, shape_hash};
use crate::catalog::PgCatalog;
use crate::clock::now_ms;
use crate::config::{Backend, Config};
use crate::experiments::{Choice, Experiments};
pub use crate::failure::{EngineError, EngineResult};
use crate::features::Features;
use crate::monitoring::tag::{self, ListLabels};
use crate::monitoring::{DriftAnswer, Monitor};
use crate::recommend::{PopularSource, QueryWatch, Recommender, Request};
use recd_core::experiment::{Team, interleave, seed_from_id};

/// A list as one ranking path built it, before it becomes a [`Recommendation`].
struct Listed {
    items: Vec<ServedItem>,
    source: crate::answer::Source,
    /// Where it came from, when a cache answered.
    cache: Option<CacheInfo>,
    /// `explain`'s per-stage detail.
    stages: Option<serde_json::Value>,
    /// Interleaving: each position's team.
    teams: Option<Vec<Team>>,
}

/// `/health`'s answer.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Health {
    /// Always "ok" when answered.
    #[schema(value_type = String, pattern = "^ok$")]
    pub status: &'static str,
    /// "embedded" or "redis".
    #[schema(value_type = String, pattern = "^(embedded|redis)$")]
    pub backend: &'static str,
    /// Live items.
    pub items: u64,
    /// Users with state.
    pub users: u64,
    /// recd's version.
    #[schema(value_type = String)]
    pub version: &'static str,
}

/// The engine of one server (or of one CLI command). Cheap to share: hold it in an `Arc`.
pub struct Engine {
    store: Arc<dyn Store>,
    caches: Arc<Caches>,
    recommender: Recommender,
    catalog: Option<PgCatalog>,
    experiments: Arc<Experiments>,
    monitor: Arc<Monitor>,
    config: Arc<Config>,
    /// Serializes model activations of this engine (`models`).
    activation: tokio::sync::Mutex<()>,
    /// Online features and learned rankers (`[features] enabled`).
    features: Option<Arc<Features>>,
    /// What the live model gives new items (`newitems`).
    new_items: newitems::NewItemModels,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("backend", &self.store.backend())
            .field("caches", &self.caches)
            .finish()
    }
}

/// Popular candidates through the engine's popular-list cache.
struct CachedPopular {
    store: Arc<dyn Store>,
    caches: Arc<Caches>,
}

impl PopularSource for CachedPopular {
    fn popular<'a>(
        &'a self,
        k: usize,
        filter: &'a Filter,
        use_cache: bool,
    ) -> BoxFuture<'a, Result<Vec<PopularHit>, StoreError>> {
        Box::pin(async move {
            if use_cache && self.caches.enabled() {
                let hits = self
                    .caches
                    .popular(k, filter, self.store.popular(k, filter))
                    .await?;
                Ok(hits.as_ref().clone())
            } else {
                self.store.popular(k, filter).await
            }
        })
    }
}

/// Connects the L2 tier the servers of `config`'s deployment share: `Ok(None)` unless the
/// backend is Redis and both `cache.enabled` and `cache.l2` are on.
pub async fn shared_tier(config: &Config) -> Result<Option<RedisTier>, SharedError> {
    let cache = &config.cache;
    if config.backend != Backend::Redis || !cache.enabled || !cache.l2 {
        return Ok(None);
    }
    let r = &config.redis;
    RedisTier::connect(
        &recd_store::redis::effective_url(&config.redis_url, r.cluster),
        &r.prefix,
        cache.max_ttl_ms(),
        Duration::from_millis(r.connect_timeout_ms),
        Duration::from_millis(r.response_timeout_ms),
    )
    .await
    .map(Some)
}

impl Engine {
    /// An engine over `store` with `config`'s ranking, model and cache settings; `l2` is the
    /// shared cache tier (redis mode), `catalog` the source of item details, `experiments`
    /// the strategies and experiments (see [`Experiments::open`]).
    pub fn new(
        store: Arc<dyn Store>,
        config: Config,
        l2: Option<RedisTier>,
        catalog: Option<PgCatalog>,
        experiments: Arc<Experiments>,
    ) -> Self {
        // The recorder first: what the engine's parts register at start (series at 0)
        // must not go to the no-op recorder.
        crate::metrics::handle();
        let caches = Caches::new(config.cache.clone(), l2);
        caches.follow(Arc::clone(&store));
        let popular = Arc::new(CachedPopular {
            store: Arc::clone(&store),
            caches: Arc::clone(&caches),
        });
        let monitor = match Monitor::new(config.monitoring.clone(), store.schema()) {
            Ok(m) => m,
            Err(e) => {
                // Config::validate checked the numbers; only the category field can still
                // not fit this store's schema: watch without a category mix.
                tracing::warn!(cause = %e, "monitoring: no category mix");
                Monitor::without_categories(config.monitoring.clone())
            }
        };
        let monitor = Arc::new(monitor);
        let mut recommender = Recommender::new(
            Arc::clone(&store),
            config.ranking.clone(),
            config.model.session.clone(),
        )
        .with_popular(popular)
        .with_watch(Arc::clone(&monitor) as Arc<dyn QueryWatch>);
        let features = online_features(&config, store.schema());
        if let Some(f) = &features {
            recommender = recommender.with_features(Arc::clone(f));
        }
        Self {
            features,
            monitor,
            store,
            caches,
            recommender,
            catalog,
            experiments,
            config: Arc::new(config),
            activation: tokio::sync::Mutex::new(()),
            new_items: Default::default(),
        }
    }

    /// Online features, when on.
    pub fn features(&self) -> Option<&Arc<Features>> {
        self.features.as_ref()
    }

    /// Re-reads the learned rankers from the model registry (at start, then every
    /// `features.refresh_seconds`); the number loaded.
    pub async fn refresh_rankers(&self) -> EngineResult<usize> {
        match &self.features {
            Some(f) => Ok(f.refresh(self.store.as_ref()).await?),
            None => Ok(0),
        }
    }

    /// Rebuilds the in-process online features at start (embedded backend; Redis keeps
    /// its own): the event log's events within the features' TTL, then the impression
    /// log's lists within it. Returns (events, lists) applied.
    pub async fn rebuild_features(&self) -> EngineResult<(usize, usize)> {
        let Some(f) = &self.features else {
            return Ok((0, 0));
        };
        if self.config.backend != Backend::Embedded {
            return Ok((0, 0));
        }
        let since = now_ms() - f.set().ttl_ms;
        let (mut events, mut lists) = (0, 0);
        let mut after: Option<String> = None;
        loop {
            let page = self.store.events_page(after.as_deref(), 10_000).await?;
            let recent: Vec<Event> = page
                .entries
                .into_iter()
                .filter(|e| e.timestamp_ms >= since)
                .collect();
            events += recent.len();
            self.update_features(f, &recent).await?;
            match page.next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        if let Some(path) = self.config.features.impression_log.as_ref() {
            let path = if path.is_absolute() {
                path.clone()
            } else {
                self.config.data_dir.join(path)
            };
            if let Ok(file) = std::fs::File::open(&path) {
                use std::io::BufRead;
                for line in std::io::BufReader::new(file).lines().map_while(Result::ok) {
                    // A torn last line (a crash mid-write) is skipped, not fatal.
                    let Ok(list) = serde_json::from_str::<recd_core::features::LoggedList>(&line)
                    else {
                        continue;
                    };
                    if list.at_ms < since {
                        continue;
                    }
                    let ids: Vec<String> = list.items.into_iter().map(|i| i.id).collect();
                    f.store().log_impressions(f.set(), &ids, list.at_ms).await?;
                    lists += 1;
                }
            }
        }
        Ok((events, lists))
    }

    /// The strategies and experiments.
    pub fn experiments(&self) -> &Arc<Experiments> {
        &self.experiments
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    /// The item schema.
    pub fn schema(&self) -> &Schema {
        self.store.schema()
    }

    /// "embedded" or "redis".
    pub fn backend(&self) -> &'static str {
        self.store.backend()
    }

    /// The catalog source, when configured.
    pub fn catalog(&self) -> Option<&PgCatalog> {
        self.catalog.as_ref()
    }

    /// Subscribes to the other servers' cache invalidations (redis mode); call before
    /// serving.
    pub async fn listen(&self) {
        self.caches.listen().await;
    }

    // ---- reads ------------------------------------------------------------------------

    /// Liveness and sizes.
    pub async fn health(&self) -> EngineResult<Health> {
        let Counts { items, users } = self.store.counts().await?;
        Ok(Health {
            status: "ok",
            backend: self.store.backend(),
            items,
            users,
            version: env!("CARGO_PKG_VERSION"),
        })
    }

    /// Whether the backend answers.
    pub async fn ready(&self) -> EngineResult<()> {
        Ok(self.store.ping().await?)
    }

    /// Recommends for `req.user_id` with the strategy the request names, else the one its
    /// experiment assigns, else `default`: from the cache of the request's shape (strategy
    /// included) unless the request bypasses it (`use_cache: false`, or `explain`, which
    /// wants this run's stages) or interleaves two strategies; then logs the impression.
    pub async fn recommend(&self, mut req: Request) -> EngineResult<Recommendation> {
        let started = Instant::now();
        let choice = self
            .experiments
            .choose(&req.user_id, req.strategy.as_deref())
            .await?;
        if req.diversity.is_none() {
            req.diversity.clone_from(&choice.strategy.diversity);
        }
        let unique = uuid::Uuid::new_v4().to_string();
        let user_id = req.user_id.clone();
        let list = match &choice.interleave_with {
            Some((_, other)) => {
                self.interleave(&req, &choice, &other.ranking, &unique)
                    .await?
            }
            None => self.ranked(req, &choice).await?,
        };
        let labels = ListLabels {
            strategy: choice.strategy_name.clone(),
            experiment: choice
                .enrolment
                .as_ref()
                .map_or_else(|| tag::NONE.into(), |e| e.experiment.clone()),
            variant: choice
                .enrolment
                .as_ref()
                .map_or_else(|| tag::NONE.into(), |e| e.variant.clone()),
            source: tag::source_label(list.cache.is_some(), list.source),
        };
        // The id says which list it was, so a click naming it counts on any server.
        let recommendation_id = tag::tagged_id(&unique, &labels);
        if let Err(e) = self
            .experiments
            .log(
                &recommendation_id,
                &user_id,
                &choice,
                &list.items,
                list.teams,
                now_ms(),
            )
            .await
        {
            // The answer matters more than its statistics.
            metrics::counter!("recd_impression_log_failures_total").increment(1);
            tracing::warn!(cause = %e, "impression not logged");
        }
        if let Some(f) = &self.features
            && let Err(e) = f
                .served(
                    &recommendation_id,
                    &user_id,
                    &choice.strategy_name,
                    &list.items,
                    now_ms(),
                )
                .await
        {
            metrics::counter!("recd_feature_failures_total", "op" => "impressions").increment(1);
            tracing::warn!(cause = %e, "impressions not counted in the features");
        }
        let (experiment, variant) = match choice.enrolment {
            Some(e) => (Some(e.experiment), Some(e.variant)),
            None => (None, None),
        };
        let answer = Recommendation {
            recommendation_id,
            user_id: Some(user_id),
            items: list.items,
            source: list.source,
            cache: list.cache,
            strategy: choice.strategy_name,
            experiment,
            variant,
            took_ms: started.elapsed().as_secs_f64() * 1000.0,
            stages: list.stages,
        };
        self.monitor.served(&answer, &labels, now_ms());
        if self.monitor.wants_vectors(&answer) {
            // Lists served without vectors (Redis, cache): a sample has them fetched, off
            // the request path, so diversity is measured on every backend.
            let store = Arc::clone(&self.store);
            let ids: Vec<String> = answer.items.iter().map(|i| i.id.clone()).collect();
            tokio::spawn(async move {
                if let Ok(items) = store.get_items(&ids).await {
                    let vectors: Vec<Vec<f32>> = items
                        .into_iter()
                        .flatten()
                        .filter_map(|i| i.vector)
                        .collect();
                    if vectors.len() == ids.len() {
                        Monitor::record_diversity(&vectors);
                    }
                }
            });
        }
        Ok(answer)
    }

    /// The drift report of the watched features.
    pub fn drift(&self) -> DriftAnswer {
        self.monitor.drift()
    }

    /// Pins new drift references (e.g. after a retrain).
    pub fn reset_drift(&self) {
        self.monitor.reset();
    }

    /// One strategy's list, through the cache unless bypassed.
    async fn ranked(&self, req: Request, choice: &Choice) -> EngineResult<Listed> {
        if !(req.use_cache && self.caches.enabled()) || req.explain {
            let answer = self
                .recommender
                .recommend_with(&req, now_ms(), &choice.strategy.ranking)
                .await?;
            return Ok(Listed {
                items: answer.items.into_iter().map(ServedItem::from).collect(),
                source: answer.source,
                cache: None,
                stages: answer.stages,
                teams: None,
            });
        }
        let shape = request_shape(&req, &choice.strategy_name);
        let recommender = self.recommender.clone();
        let strategy = Arc::clone(&choice.strategy);
        let user_id = req.user_id.clone();
        let req = Arc::new(req);
        let compute: Compute<CachedList> = Arc::new(move || {
            let recommender = recommender.clone();
            let req = Arc::clone(&req);
            let strategy = Arc::clone(&strategy);
            Box::pin(async move {
                let answer = recommender
                    .recommend_with(&req, now_ms(), &strategy.ranking)
                    .await?;
                Ok(CachedList::new(&answer.items, answer.source))
            })
        });
        let (entry, origin) = self.caches.recommend(&user_id, shape, compute).await?;
        let cache = match origin {
            Origin::L1 => Some(Tier::L1),
            Origin::L2 => Some(Tier::L2),
            Origin::Computed | Origin::Joined => None,
        }
        .map(|tier| CacheInfo {
            tier,
            age_ms: (now_ms() - entry.created_ms).max(0),
        });
        Ok(Listed {
            items: entry.value.served(),
            source: entry.value.source,
            cache,
            stages: None,
            teams: None,
        })
    }

    /// Team-draft interleaving of the control's and the treatment's lists (both computed
    /// now, uncached), seeded by the recommendation id so the list can be rebuilt. Scores
    /// are the interleaved rank's (1 down to 1/count), so they never increase down the
    /// list; each item keeps its ranker's reasons.
    async fn interleave(
        &self,
        req: &Request,
        choice: &Choice,
        treatment: &recd_core::pipeline::RankParams,
        recommendation_id: &str,
    ) -> EngineResult<Listed> {
        let now = now_ms();
        let (a, b) = tokio::try_join!(
            self.recommender
                .recommend_with(req, now, &choice.strategy.ranking),
            self.recommender.recommend_with(req, now, treatment),
        )?;
        let source = a.source;
        let a_ids: Vec<&str> = a.items.iter().map(|r| r.item.id.as_str()).collect();
        let b_ids: Vec<&str> = b.items.iter().map(|r| r.item.id.as_str()).collect();
        let slots = interleave::team_draft_seeded(
            &a_ids,
            &b_ids,
            req.count,
            seed_from_id(recommendation_id),
        );
        let n = slots.len().max(1) as f64;
        let mut items = Vec::with_capacity(slots.len());
        let mut teams = Vec::with_capacity(slots.len());
        for (i, slot) in slots.iter().enumerate() {
            let from = match slot.team {
                Team::A => &a.items,
                Team::B => &b.items,
            };
            let Some(r) = from.iter().find(|r| r.item.id == *slot.id) else {
                continue;
            };
            items.push(ServedItem {
                id: r.item.id.clone(),
                score: (n - i as f64) / n,
                reasons: r.reasons.clone(),
                item: ItemFields(Arc::clone(&r.item)),
                signals: Some(recd_core::features::RankerInputs {
                    position: items.len() as f64,
                    ..r.signals
                }),
            });
            teams.push(slot.team);
        }
        Ok(Listed {
            items,
            source,
            cache: None,
            stages: None,
            teams: Some(teams),
        })
    }

    /// Items similar to `item_id` passing `filter`.
    pub async fn similar(
        &self,
        item_id: &str,
        count: usize,
        filter: &Filter,
    ) -> EngineResult<Recommendation> {
        let started = Instant::now();
        let Some(answer) = self.recommender.similar(item_id, count, filter).await? else {
            return Err(EngineError::NotFound(format!(
                "item '{item_id}' does not exist"
            )));
        };
        Ok(Recommendation {
            recommendation_id: uuid::Uuid::new_v4().to_string(),
            user_id: None,
            items: answer.items.into_iter().map(ServedItem::from).collect(),
            source: answer.source,
            cache: None,
            strategy: crate::experiments::model::DEFAULT_STRATEGY.to_string(),
            experiment: None,
            variant: None,
            took_ms: started.elapsed().as_secs_f64() * 1000.0,
            stages: None,
        })
    }

    /// One item with its vector (vectors are not cached: large, and replaced by training).
    pub async fn item_with_vector(&self, id: &str) -> EngineResult<Item> {
        self.store
            .get_items(&[id.to_string()])
            .await?
            .pop()
            .flatten()
            .ok_or_else(|| EngineError::NotFound(format!("item '{id}' does not exist")))
    }

    /// What the engine knows about a user.
    pub async fn user(&self, id: &str) -> EngineResult<UserView> {
        match self.store.get_user(id).await? {
            Some(state) => Ok(UserView::new(id.to_string(), &state)),
            None => Err(EngineError::NotFound(format!("user '{id}' is unknown"))),
        }
    }

    /// The event log, in the order the events were applied.
    pub async fn events(&self) -> EngineResult<Vec<Event>> {
        Ok(self.store.events().await?)
    }

    // ---- writes: each invalidates what it made stale before it returns --------------------

    /// Upserts a validated batch of items, all or nothing.
    pub async fn upsert_items(&self, items: Vec<ItemUpsert>) -> EngineResult<usize> {
        let ids: Vec<String> = items.iter().map(|u| u.item.id.clone()).collect();
        self.monitor.items_upserted(&items);
        let without: Vec<ItemUpsert> = items
            .iter()
            .filter(|u| u.item.vector.is_none())
            .cloned()
            .collect();
        let upserted = self.store.upsert_items(items).await?;
        self.caches.items_changed(ids).await;
        if let Err(e) = self.map_new_items(&without).await {
            // The items are written; only their content vector waits (for the next model).
            metrics::counter!("recd_new_item_failures_total", "op" => "content").increment(1);
            tracing::warn!(cause = %e, "new items: no content vector");
        }
        Ok(upserted)
    }

    /// Deletes an item; it is never recommended again.
    pub async fn delete_item(&self, id: &str) -> EngineResult<()> {
        if !self.store.delete_item(id).await? {
            return Err(EngineError::NotFound(format!("item '{id}' does not exist")));
        }
        self.caches.items_changed(vec![id.to_string()]).await;
        Ok(())
    }

    /// The items' details changed at their source: drop them from every cache tier.
    pub async fn details_changed(&self, ids: Vec<String>) {
        self.caches.details_changed(ids).await;
    }

    /// Applies a validated batch of events (atomically per user); the next recommendation
    /// for each of their users reflects them.
    pub async fn apply_events(&self, events: &[Event]) -> EngineResult<usize> {
        let started = Instant::now();
        // Visible first (in memory, then no cached list from before them), durable second:
        // the log's acknowledgement is not on the path to visibility.
        let durable = self.store.apply_events_visible(events).await?;
        if self.caches.enabled() {
            let invalidating = &self.caches.config().invalidate_on;
            let mut users: Vec<String> = events
                .iter()
                // A dislike or hide always drops the lists: the item must never come
                // back, not even from a cache.
                .filter(|e| e.kind.is_rejection() || invalidating.contains(&e.kind))
                .map(|e| e.user_id.clone())
                .collect();
            users.sort_unstable();
            users.dedup();
            self.caches.users_changed(users).await;
        }
        // From here a recommendation for any of these users reflects the events: the
        // store's read-your-writes, and no cached list from before them is served.
        metrics::histogram!("recd_event_visible_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        // Before the answer, so that the events' new items are similar to their
        // neighbours as soon as the events are acknowledged.
        if let Err(e) = self.fold_new_items(events).await {
            // The events are applied; only the new items' vectors wait.
            metrics::counter!("recd_new_item_failures_total", "op" => "fold_in").increment(1);
            tracing::warn!(cause = %e, "new items not folded in");
        }
        durable.wait().await?;
        self.monitor.events(events);
        for e in events {
            if let Some(id) = &e.recommendation_id {
                self.monitor
                    .attributed(e.kind, &self.experiments.list_labels(id));
            }
        }
        if let Err(e) = self.experiments.attribute(events).await {
            // The events are applied; only their credit to a list is lost.
            metrics::counter!("recd_attribution_failures_total").increment(1);
            tracing::warn!(cause = %e, "events not attributed to their lists");
        }
        if let Some(f) = &self.features
            && let Err(e) = self.update_features(f, events).await
        {
            // The events are applied; only the features lag them.
            metrics::counter!("recd_feature_failures_total", "op" => "events").increment(1);
            tracing::warn!(cause = %e, "events not applied to the features");
        }
        Ok(events.len())
    }

    /// Applies events to the online features, with their items (one read for the batch).
    async fn update_features(&self, f: &Features, events: &[Event]) -> EngineResult<()> {
        let mut ids: Vec<String> = events.iter().map(|e| e.item_id.clone()).collect();
        ids.sort_unstable();
        ids.dedup();
        let found = self.store.get_items(&ids).await?;
        let by_id: std::collections::HashMap<&str, Arc<Item>> = ids
            .iter()
            .zip(found)
            .filter_map(|(id, item)| item.map(|i| (id.as_str(), Arc::new(i))))
            .collect();
        let items: Vec<Option<Arc<Item>>> = events
            .iter()
            .map(|e| by_id.get(e.item_id.as_str()).cloned())
            .collect();
        f.apply_events(events, &items).await?;
        Ok(())
    }

    /// Forgets every piece of state about a user, cached lists included (idempotent).
    pub async fn forget_user(&self, id: &str) -> EngineResult<()> {
        self.store.delete_user(id).await?;
        if let Some(f) = &self.features {
            f.forget_user(id).await?;
        }
        self.caches.forget_user(id).await;
        Ok(())
    }

    /// Writes trained item vectors, then users' long-term vectors. Cached lists are left to
    /// [`Engine::rebuild_sessions`], the last step of a write-back (dropping them once per
    /// batch would compute every request while thousands of vectors are written).
    pub async fn write_vectors(
        &self,
        items: Vec<(String, Vec<f32>)>,
        users: Vec<(String, Vec<f32>)>,
    ) -> EngineResult<VectorsWritten> {
        let sent = items.len();
        let updated = if items.is_empty() {
            0
        } else {
            self.store.set_item_vectors(items).await?
        };
        let set_users = if users.is_empty() {
            0
        } else {
            self.store.set_user_vectors(users).await?
        };
        Ok(VectorsWritten {
            items: updated,
            users: set_users,
            unknown_items: sent.saturating_sub(updated),
        })
    }

    /// Recomputes users' session vectors with the current item vectors, then drops every
    /// cached list (all were ranked with the replaced vectors).
    pub async fn rebuild_sessions(&self, users: &[String]) -> EngineResult<usize> {
        let rebuilt = self.store.rebuild_sessions(users).await?;
        if self.caches.enabled() {
            self.caches.lists_changed().await;
        }
        Ok(rebuilt)
    }

    /// Creates or replaces a named strategy; its diversity field must be a tag or bool
    /// field of the schema.
    pub async fn put_strategy(
        &self,
        name: &str,
        body: &serde_json::Value,
    ) -> EngineResult<crate::experiments::model::Strategy> {
        if let Some(field) = body
            .get("diversity")
            .and_then(|d| d.get("field"))
            .and_then(|f| f.as_str())
            && !matches!(
                self.schema().field(field),
                Some(recd_core::FieldType::Tag | recd_core::FieldType::Bool)
            )
        {
            return Err(EngineError::Invalid(recd_core::ValidationError::new(
                format!("diversity field '{field}' must be a tag or bool field of the schema"),
            )));
        }
        if let Some(ranker) = body
            .get("ranking")
            .and_then(|r| r.get("ranker"))
            .and_then(|r| r.as_str())
        {
            crate::features::check_ranker_name(ranker)?;
            let Some(f) = &self.features else {
                return Err(EngineError::Invalid(recd_core::ValidationError::new(
                    "a learned ranker needs online features: set [features] enabled = true",
                )));
            };
            if ranker != "latest" {
                f.refresh(self.store.as_ref()).await?;
                if f.ranker(ranker).is_none() {
                    return Err(EngineError::Invalid(recd_core::ValidationError::new(
                        format!(
                            "'{ranker}' is not a learned ranker of these features (recd model list; \
                         recd train-ranker makes one)"
                        ),
                    )));
                }
            }
        }
        if let Some(model) = body.get("model").and_then(|m| m.as_str())
            && model != "live"
        {
            return Err(EngineError::Invalid(recd_core::ValidationError::new(
                self.strategy_model_problem(model).await,
            )));
        }
        self.experiments.put_strategy(name, body).await
    }

    /// Why a strategy cannot name model `model`: strategies serve the live version only
    /// (per-version serving is not implemented), whatever version that is.
    async fn strategy_model_problem(&self, model: &str) -> String {
        let registry = self.store.models().await.ok();
        let live = registry
            .as_ref()
            .and_then(|r| r.live)
            .map(models::version_name);
        let known = models::parse_version(model).is_some_and(|seq| {
            registry
                .iter()
                .flat_map(|r| &r.models)
                .any(|m| m.seq == seq)
        });
        let what = match (&live, known) {
            (Some(l), _) if l == model => format!("model version '{model}' is the live one"),
            (_, true) => format!(
                "model version '{model}' is not live (the live one is {})",
                live.as_deref().unwrap_or("none")
            ),
            (_, false) => format!("model version '{model}' does not exist"),
        };
        format!(
            "{what}; a strategy serves the live model (\"model\": \"live\"): serving a \
             model version per strategy is not supported. Make a version live with \
             POST /v1/models/{{version}}/activate"
        )
    }

    /// Folds what online monitoring buffered (the server runs it every 250 ms).
    pub fn monitor_tick(&self) {
        self.monitor.tick();
    }

    /// Updates the cache and catalog gauges exported on `/metrics`.
    pub async fn export_gauges(&self) {
        self.caches.export_gauges().await;
        match self.store.counts().await {
            Ok(c) => self.monitor.export(c.items, now_ms()),
            Err(e) => tracing::debug!(cause = %e, "counts for coverage failed"),
        }
        // Drift gauges are set when the report is computed.
        let _ = self.monitor.drift();
        for (plan, n) in self.store.index_plans() {
            metrics::counter!("recd_index_plan_total", "plan" => plan).absolute(n);
        }
        for took in self.store.take_checkpoint_durations() {
            metrics::histogram!("recd_checkpoint_duration_seconds").record(took.as_secs_f64());
        }
        if let Some(n) = self.store.replay_records() {
            metrics::gauge!("recd_replay_records").set(n as f64);
        }
        if let Some((gave_way, catch_up)) = self.store.checkpoint_handovers() {
            metrics::counter!("recd_checkpoint_handovers_total", "kind" => "gave_way")
                .absolute(gave_way);
            metrics::counter!("recd_checkpoint_handovers_total", "kind" => "catch_up")
                .absolute(catch_up);
        }
        if let Some(catalog) = &self.catalog {
            metrics::counter!("recd_catalog_queries_total").absolute(catalog.queries());
            metrics::counter!("recd_catalog_errors_total").absolute(catalog.errors());
        }
    }
}

/// The online features `config` asks for over `schema` (in process for the embedded
/// backend, Redis Hashes for redis), or none (off, or unusable: logged).
fn online_features(config: &Config, schema: &Schema) -> Option<Arc<Features>> {
    if !config.features.enabled {
        return None;
    }
    let set = match config.features.feature_set(schema) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(cause = %e.message, "features off: their definitions do not fit the schema");
            return None;
        }
    };
    let store: Arc<dyn recd_store::features::FeatureStore> = match config.backend {
        Backend::Embedded => Arc::new(recd_store::features::MemoryFeatures::new()),
        Backend::Redis => match recd_store::features::RedisFeatures::new(
            &config.redis_url,
            &config.redis.prefix,
            Duration::from_millis(config.redis.response_timeout_ms.max(1000)),
        ) {
            Ok(s) => Arc::new(s),
            Err(e) => {
                tracing::error!(cause = %e, "features off: redis unusable");
                return None;
            }
        },
    };
    let log = config.features.impression_log.as_ref().map(|p| {
        if p.is_absolute() {
            p.clone()
        } else {
            config.data_dir.join(p)
        }
    });
    match Features::new(set, store, log.as_deref()) {
        Ok(f) => Some(Arc::new(f)),
        Err(e) => {
            tracing::error!(cause = %e, "features off: the impression log cannot be opened");
            None
        }
    }
}

/// Everything about a request but the user, and the strategy ranking it, as the cache's key.
fn request_shape(req: &Request, strategy: &str) -> u128 {
    let mut exclude: Vec<&str> = req.exclude.iter().map(String::as_str).collect();
    exclude.sort_unstable();
    exclude.dedup();
    let count = req.count.to_string();
    let filter = req.filter.canonical();
    let exclude = exclude.join("\t");
    let query = req.query.clone().unwrap_or_default();
    let diversity = req
        .diversity
        .as_ref()
        .map(|d| format!("{}:{}", d.field, d.max_per_value))
        .unwrap_or_default();
    shape_hash(&[&count, &filter, &exclude, &query, &diversity, strategy])
}
