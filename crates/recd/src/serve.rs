//! `recd serve`, and opening the configured store (shared by every command).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use recd_server::access::{Access, Limiter, limits};
use recd_server::cache::RedisTier;
use recd_server::catalog::{CatalogError, PgCatalog};
use recd_server::config::Backend;
use recd_server::config::{ConfigError, check_exposure};
use recd_server::engine::shared_tier;
use recd_server::experiments::Experiments;
use recd_server::experiments::ledger::{Ledger, MemoryLedger, RedisLedger};
use recd_server::{AppState, Config};
use recd_store::embedded::EmbeddedStore;
use recd_store::{RedisStore, Store, StoreError};
use tokio::net::TcpListener;

use crate::{ServeArgs, UsageError};

/// How bulk loads (demo, import) write to the configured backend: batches aimed at a fifth
/// of Redis's response timeout at most (see `recd_store::bulk`).
pub fn bulk_options(config: &Config) -> recd_store::bulk::BulkOptions {
    match config.backend {
        Backend::Embedded => recd_store::bulk::BulkOptions::default(),
        Backend::Redis => recd_store::bulk::BulkOptions::for_response_timeout(
            std::time::Duration::from_millis(config.redis.response_timeout_ms),
        ),
    }
}

/// Opens the store the configuration names.
pub async fn open_store(config: &Config) -> Result<Arc<dyn Store>> {
    match config.backend {
        Backend::Embedded => {
            if config.schema.is_none() && !EmbeddedStore::holds_data(&config.data_dir) {
                // Refused before anything is created: a failed start leaves the dir as it
                // was, free for `demo` or `import` (issue 11).
                let dir = config.data_dir.display();
                return Err(UsageError(format!(
                    "the data dir {dir} holds no data yet, so recd needs the items' schema: give it \
                     in the [schema] section of a config file with --config FILE (or RECD_CONFIG; \
                     `recd config defaults` prints every other key), or load the demo shop with \
                     `recd demo --data-dir {dir}`"
                ))
                .into());
            }
            // On a terminal, the index's inserts at open (a rebuild can take minutes on a
            // large catalogue) draw a bar; elsewhere the store logs its progress lines.
            let mut options = config.embedded.clone();
            options.open_progress = recd_store::embedded::OpenProgress(
                crate::progress::on_terminal_when_begun("vector index"),
            );
            let store = EmbeddedStore::open(
                &config.data_dir,
                config.schema.clone(),
                config.model.clone(),
                options,
            )
            .map_err(store_error)
            .with_context(|| format!("opening the data dir {}", config.data_dir.display()))?;
            Ok(Arc::new(store))
        }
        Backend::Redis => Ok(Arc::new(open_redis(config).await?)),
    }
}

/// Opens the Redis store the configuration names.
pub async fn open_redis(config: &Config) -> Result<RedisStore> {
    let schema = match &config.schema {
        Some(schema) => schema.clone(),
        None => RedisStore::recorded_schema(&config.redis_url, &config.redis)
            .await
            .map_err(store_error)
            .with_context(|| format!("connecting to {}", config.redis_url))?
            .ok_or_else(|| {
                UsageError(format!(
                    "the redis prefix '{}' holds no deployment yet: give its [schema] in the config (--config FILE)",
                    config.redis.prefix
                ))
            })?,
    };
    RedisStore::connect(
        &config.redis_url,
        schema,
        config.model.clone(),
        config.redis.clone(),
    )
    .await
    .map_err(store_error)
    .with_context(|| format!("connecting to {}", config.redis_url))
}

/// A store's refusal of the configuration is a usage error (exit 2); the rest are failures.
fn store_error(e: StoreError) -> anyhow::Error {
    match e {
        StoreError::Invalid(v) => anyhow::Error::new(UsageError(v.message)),
        other => anyhow::Error::new(other),
    }
}

/// Redis as the L2 cache tier, in redis mode with `cache.l2` on (none, with a warning, when
/// Redis cannot be reached at start; once connected, the tier reconnects by itself and a
/// failed L2 read counts as a miss).
async fn shared_cache_tier(config: &Config) -> Option<RedisTier> {
    shared_tier(config).await.unwrap_or_else(|e| {
        tracing::warn!(cause = %e, "no L2 cache tier: Redis unreachable at start");
        None
    })
}

/// The catalog source of item details, when `[catalog] source` is set. Its query is checked
/// now: a query PostgreSQL rejects is a configuration error (exit 2).
async fn catalog_source(config: &Config) -> Result<Option<PgCatalog>> {
    if config.catalog.source.is_none() {
        return Ok(None);
    }
    match PgCatalog::connect(&config.catalog).await {
        Ok(c) => Ok(Some(c)),
        Err(CatalogError::Invalid(m)) => Err(UsageError(format!("catalog: {m}")).into()),
        Err(e) => Err(anyhow::Error::new(e).context("connecting to the catalog source")),
    }
}

/// Strategies and experiments: in the data dir (embedded) or in the deployment's Redis,
/// where every server reads the same definitions (re-read every second) and counts into the
/// same keys.
pub(crate) async fn experiments(config: &Config) -> Result<Arc<Experiments>> {
    let e = &config.experiments;
    let ledger: Arc<dyn Ledger> = match config.backend {
        Backend::Embedded => MemoryLedger::open(
            Some(&config.data_dir),
            e.window(),
            e.max_impressions,
            Duration::from_millis(e.flush_ms),
        )?,
        Backend::Redis => Arc::new(
            RedisLedger::connect(
                &recd_store::redis::effective_url(&config.redis_url, config.redis.cluster),
                &config.redis.prefix,
                e.window(),
                e.stream_max,
                Duration::from_millis(config.redis.connect_timeout_ms.max(1000)),
            )
            .await?,
        ),
    };
    let experiments = Arc::new(
        Experiments::open(
            ledger,
            config.ranking.clone(),
            &config.strategies,
            e.clone(),
        )
        .await?,
    );
    if config.backend == Backend::Redis {
        experiments.follow(Duration::from_secs(1));
    }
    Ok(experiments)
}

/// The access rules of `config`: its keys (the keys file read now: a bad one is a
/// configuration error) and rate limits, shared through the deployment's Redis in redis mode.
async fn access(config: &Config) -> Result<Arc<Access>> {
    let mut access = Access::load(&config.auth, &config.limits).map_err(ConfigError)?;
    if config.backend == Backend::Redis && access.limiter().enabled() {
        let r = &config.redis;
        let shared = limits::Shared::connect(
            &recd_store::redis::effective_url(&config.redis_url, r.cluster),
            &r.prefix,
            Duration::from_millis(r.connect_timeout_ms),
            Duration::from_millis(r.response_timeout_ms),
        )
        .await
        .with_context(|| format!("connecting the rate limiter to {}", config.redis_url))?;
        access = access.with_limiter(Limiter::shared(&config.limits, shared));
    }
    if access.enabled() {
        tracing::info!(keys = access.key_count(), "API keys required");
    } else if !config.listen.ip().is_loopback() {
        tracing::warn!(addr = %config.listen, "serving WITHOUT API keys on a non-loopback address (--insecure)");
    }
    let access = Arc::new(access);
    Access::spawn_watcher(&access);
    #[cfg(unix)]
    reload_on_sighup(&access);
    Ok(access)
}

/// `kill -HUP` reloads the keys file (while the process lives).
#[cfg(unix)]
fn reload_on_sighup(access: &Arc<Access>) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(cause = %e, "cannot listen for SIGHUP; keys reload by file poll only");
            return;
        }
    };
    let weak = Arc::downgrade(access);
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            let Some(access) = weak.upgrade() else { return };
            access.reload_logged("SIGHUP");
        }
    });
}

/// Binds `config.listen`: the first step of every command that serves, so that a port
/// already taken fails at once, before minutes of loading (issue 11: bind first, then load).
pub async fn bind(config: &Config) -> Result<TcpListener> {
    TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))
}

/// Serves on `listener` until ctrl-c or SIGTERM. "recd listening" is printed only once
/// every fallible start-up step (keys, catalog, experiments) has passed: a start that fails
/// never claims to be serving.
pub async fn serve(config: Config, store: Arc<dyn Store>, listener: TcpListener) -> Result<()> {
    check_exposure(&config)?;
    let access = access(&config).await?;
    let addr = listener.local_addr()?;
    let l2 = shared_cache_tier(&config).await;
    let catalog = catalog_source(&config).await?;
    let experiments = experiments(&config).await?;
    spawn_user_expiry(&store);
    if config.features.enabled {
        // The data dir's schema may be the one the features are checked against only now.
        config
            .features
            .feature_set(store.schema())
            .map_err(|e| UsageError(format!("features: {}", e.message)))?;
    }
    let backend = store.backend();
    let state =
        AppState::build(store, config, l2, catalog.clone(), experiments).with_access(access);
    state.engine.listen().await;
    if let Some(catalog) = &catalog
        && state.config().catalog.notify_channel.is_some()
    {
        // Subscribed before serving: no change committed after this point is missed.
        let changes = catalog
            .listen()
            .await
            .context("subscribing to the catalog source's notify_channel")?;
        let engine = state.engine.clone();
        tokio::spawn(async move { engine.follow_catalog(changes).await });
    }
    state.engine.warm().await;
    follow_rankers(&state.engine).await;
    tracing::info!(%addr, backend, "recd is serving");
    // A line on stdout that scripts and tests wait for.
    println!("recd listening on http://{addr}");
    recd_server::serve(listener, state, shutdown_signal()).await?;
    tracing::info!("recd stopped");
    Ok(())
}

/// Reads the learned rankers now, then every `features.refresh_seconds` (a ranker
/// `recd train-ranker` records is served from the next read on).
async fn follow_rankers(engine: &Arc<recd_server::Engine>) {
    if engine.features().is_none() {
        return;
    }
    match engine.rebuild_features().await {
        Ok((events, lists)) if events + lists > 0 => {
            tracing::info!(events, lists, "online features rebuilt from the logs")
        }
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(cause = %e, "online features not rebuilt; they fill as events arrive")
        }
    }
    match engine.refresh_rankers().await {
        Ok(n) => tracing::info!(rankers = n, "learned rankers loaded"),
        Err(e) => tracing::warn!(cause = %e, "learned rankers not loaded; retrying"),
    }
    let every = Duration::from_secs(engine.config().features.refresh_seconds.max(1));
    let weak = Arc::downgrade(engine);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            let Some(engine) = weak.upgrade() else { return };
            if let Err(e) = engine.refresh_rankers().await {
                tracing::debug!(cause = %e, "learned rankers: refresh failed");
            }
        }
    });
}

/// Forgets users inactive for longer than `model.session.ttl_seconds` in the background:
/// one bounded step a second (`Store::expire_users`; a pass over the embedded store's 64
/// user shards takes about a minute), never on the request path.
fn spawn_user_expiry(store: &Arc<dyn Store>) {
    let weak = Arc::downgrade(store);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tick.tick().await;
            let Some(store) = weak.upgrade() else { return };
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
            match store.expire_users(now_ms).await {
                Ok(e) if e.users > 0 => tracing::info!(users = e.users, "inactive users expired"),
                Ok(_) => {}
                Err(e) => tracing::warn!(cause = %e, "expiring inactive users failed; retrying"),
            }
        }
    });
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(cause = %e, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(cause = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { () = ctrl_c => {}, () = term => {} }
}

/// `recd serve`: bind, open the store (which may rebuild its index), serve.
pub async fn run(args: ServeArgs) -> Result<()> {
    let config = args.load()?;
    check_exposure(&config)?;
    let listener = bind(&config).await?;
    let store = open_store(&config).await?;
    serve(config, store, listener).await
}
