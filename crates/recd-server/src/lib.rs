//! recd-server: the HTTP face of the engine (axum), over any `recd_store::Store`.
//!
//! # Layout
//! - [`config`]: the layered, validated configuration.
//! - [`cache`]: L1 / L2 cache tiers, invalidation, stampede protection.
//! - [`details`]: item details through the item cache; cache warming.
//! - [`routes`]: one module per API resource; [`routes::router`] assembles them.
//! - [`recommend`]: the request path of a recommendation (IO around `recd_core::pipeline`).
//! - [`error`]: the single mapping from failures to the API's error shape.
//! - [`metrics`]: Prometheus counters and histograms per route and pipeline stage.
//! - [`openapi`]: the `/openapi.json` document.
//! - [`state`]: what handlers share.

pub mod cache;
pub mod catalog;
pub mod config;
pub mod details;
pub mod error;
pub mod metrics;
pub mod openapi;
pub mod recommend;
pub mod routes;
pub mod state;

use std::future::Future;

use tokio::net::TcpListener;

pub use config::Config;
pub use routes::router;
pub use state::AppState;

/// Serves `state` on `listener` until `shutdown` completes, then drains in-flight requests.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    metrics::handle();
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}
