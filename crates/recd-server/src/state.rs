//! The state every handler shares.

use std::sync::Arc;

use recd_store::Store;

use crate::cache::{Caches, RedisTier};
use crate::catalog::PgCatalog;
use crate::config::Config;
use crate::recommend::Recommender;

/// Cheap to clone: everything is behind `Arc`s.
#[derive(Clone)]
pub struct AppState {
    /// The serving state.
    pub store: Arc<dyn Store>,
    /// The pipeline over it.
    pub recommender: Recommender,
    /// The validated configuration.
    pub config: Arc<Config>,
    /// The cache tiers.
    pub caches: Arc<Caches>,
    /// The catalog source of item details, when configured.
    pub catalog: Option<PgCatalog>,
}

impl AppState {
    /// State over `store` with `config`'s ranking and model settings, and an in-process cache.
    pub fn new(store: Arc<dyn Store>, config: Config) -> Self {
        Self::with_l2(store, config, None)
    }

    /// The same with a shared L2 cache tier (redis mode).
    pub fn with_l2(store: Arc<dyn Store>, config: Config, l2: Option<RedisTier>) -> Self {
        let caches = Caches::new(config.cache.clone(), l2);
        let recommender = Recommender::new(
            store.clone(),
            config.ranking.clone(),
            config.model.session.clone(),
        )
        .with_caches(caches.clone());
        Self {
            store,
            recommender,
            config: Arc::new(config),
            caches,
            catalog: None,
        }
    }

    /// The same with item details read through from `catalog`.
    pub fn with_catalog(mut self, catalog: Option<PgCatalog>) -> Self {
        self.catalog = catalog;
        self
    }
}

/// Milliseconds since the Unix epoch, from the system clock.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("backend", &self.store.backend())
            .finish()
    }
}
