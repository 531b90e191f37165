//! The state every handler shares: the engine, behind an `Arc`.

use std::sync::Arc;

use recd_store::Store;

use crate::cache::RedisTier;
use crate::catalog::PgCatalog;
use crate::config::Config;
use crate::engine::Engine;
use crate::experiments::Experiments;

/// Cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState {
    /// Every use case.
    pub engine: Arc<Engine>,
}

impl AppState {
    /// State over `store` with `config`, an in-process cache, experiments kept in memory
    /// and no catalog source (tests, embedding). Fails on `[strategies]` that do not parse.
    pub fn new(store: Arc<dyn Store>, config: Config) -> Result<Self, crate::engine::EngineError> {
        let experiments = Arc::new(Experiments::in_memory(
            config.ranking.clone(),
            &config.strategies,
            config.experiments.clone(),
        )?);
        Ok(Self::build(store, config, None, None, experiments))
    }

    /// State with a shared L2 cache tier (redis mode), a catalog source and experiments.
    pub fn build(
        store: Arc<dyn Store>,
        config: Config,
        l2: Option<RedisTier>,
        catalog: Option<PgCatalog>,
        experiments: Arc<Experiments>,
    ) -> Self {
        Self {
            engine: Arc::new(Engine::new(store, config, l2, catalog, experiments)),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        self.engine.config()
    }
}
