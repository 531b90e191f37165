//! The state every handler shares: the engine and the access rules, behind `Arc`s.

use std::sync::Arc;

use recd_store::Store;

use crate::access::Access;
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
    /// API keys and rate limits.
    pub access: Arc<Access>,
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
        // `[auth] keys` only: reading the keys file is IO that can fail, which the binary
        // does (and reports) before serving, then hands over with `with_access`. Until
        // then a configured file's keys are refused: failing closed.
        let access = Access::without_file(&config.auth, &config.limits).unwrap_or_else(|e| {
            tracing::error!(cause = %e, "API keys unusable; refusing every keyed request");
            Access::closed(&config.limits)
        });
        Self {
            engine: Arc::new(Engine::new(store, config, l2, catalog, experiments)),
            access: Arc::new(access),
        }
    }

    /// The same state with other access rules (the keys file read, shared rate limits).
    pub fn with_access(mut self, access: Arc<Access>) -> Self {
        self.access = access;
        self
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        self.engine.config()
    }
}
