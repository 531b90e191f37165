//! The state every handler shares: the engine, behind an `Arc`.

use std::sync::Arc;

use recd_store::Store;

use crate::cache::RedisTier;
use crate::catalog::PgCatalog;
use crate::config::Config;
use crate::engine::Engine;

/// Cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState {
    /// Every use case.
    pub engine: Arc<Engine>,
}

impl AppState {
    /// State over `store` with `config`, an in-process cache and no catalog source.
    pub fn new(store: Arc<dyn Store>, config: Config) -> Self {
        Self::build(store, config, None, None)
    }

    /// State with a shared L2 cache tier (redis mode) and a catalog source.
    pub fn build(
        store: Arc<dyn Store>,
        config: Config,
        l2: Option<RedisTier>,
        catalog: Option<PgCatalog>,
    ) -> Self {
        Self {
            engine: Arc::new(Engine::new(store, config, l2, catalog)),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        self.engine.config()
    }
}
