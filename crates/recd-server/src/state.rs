//! The state every handler shares.

use std::sync::Arc;

use recd_store::Store;

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
}

impl AppState {
    /// State over `store` with `config`'s ranking and model settings.
    pub fn new(store: Arc<dyn Store>, config: Config) -> Self {
        let recommender = Recommender::new(
            store.clone(),
            config.ranking.clone(),
            config.model.session.clone(),
        );
        Self {
            store,
            recommender,
            config: Arc::new(config),
        }
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
