//! recd-server: the HTTP face of the engine (axum), over any `recd_store::Store`.
//!
//! Requests flow `routes` (parse) → [`engine::Engine`] (the use case: cache-then-compute
//! or write-then-invalidate) → `recommend` (the pipeline's IO) → `recd_store` / `recd_core`;
//! answers come back as `answer` types and are shaped by serde.
//!
//! # Layout
//! - [`config`]: the layered, validated configuration.
//! - [`engine`]: the use cases; the one place that knows about caches and invalidation.
//! - [`answer`]: typed answers (recommendation, user, item details) and what caches keep.
//! - [`experiments`]: strategies, experiments, impressions and attribution.
//! - [`recommend`]: the request path of a recommendation (IO around `recd_core::pipeline`).
//! - [`cache`]: L1 / L2 cache tiers, invalidation, stampede protection.
//! - [`catalog`]: the PostgreSQL catalog source of item details.
//! - [`routes`]: one module per API resource, and the route table the router and the
//!   OpenAPI document share.
//! - [`error`]: the single mapping from failures to the API's error shape.
//! - [`monitoring`]: online quality (coverage, exposure, diversity, source mix) and drift.
//! - [`metrics`]: Prometheus counters and histograms per route and pipeline stage.
//! - [`openapi`]: the `/openapi.json` document.
//! - [`state`]: what handlers share (the engine).
//! - [`clock`]: the wall clock in milliseconds.

pub mod answer;
pub mod cache;
pub mod catalog;
pub mod clock;
pub mod config;
pub mod engine;
pub mod error;
pub mod experiments;
pub mod metrics;
pub mod monitoring;
pub mod openapi;
pub mod recommend;
pub mod routes;
pub mod state;

use std::future::Future;

use tokio::net::TcpListener;

pub use config::Config;
pub use engine::Engine;
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
