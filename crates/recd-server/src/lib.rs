//! recd-server: the HTTP face of the engine (axum), over any `recd_store::Store`.
//!
//! Requests flow `routes` (parse) → [`engine::Engine`] (the use case: cache-then-compute
//! or write-then-invalidate) → `recommend` (the pipeline's IO) → `recd_store` / `recd_core`;
//! answers come back as `answer` types and are shaped by serde.
//!
//! # Layout
//! - [`config`]: the layered, validated configuration.
//! - [`config_doc`]: every configuration key with its default and doc (`recd config defaults`).
//! - [`access`]: API keys and scopes, rate limits, load shedding (API.md "Access").
//! - [`console`]: the web console's embedded files, served at `/`.
//! - [`edge`]: request deadline, header size, JSON-only bodies, every error in the API shape.
//! - [`server`]: the accept loop: connection cap, header and idle timeouts, graceful stop.
//! - [`engine`]: the use cases; the one place that knows about caches and invalidation.
//! - [`answer`]: typed answers (recommendation, user, item details) and what caches keep.
//! - [`experiments`]: strategies, experiments, impressions and attribution.
//! - [`features`]: online features, the impression log and learned rankers when serving.
//! - [`recommend`]: the request path of a recommendation (IO around `recd_core::pipeline`).
//! - [`cache`]: L1 / L2 cache tiers, invalidation, stampede protection.
//! - [`catalog`]: the PostgreSQL catalog source of item details.
//! - [`routes`]: one module per API resource, and the route table the router and the
//!   OpenAPI document share.
//! - [`failure`]: [`failure::EngineError`], what every use case can fail with.
//! - [`error`]: the single mapping from failures to the API's error shape.
//! - [`monitoring`]: online quality (coverage, exposure, diversity, source mix) and drift.
//! - [`metrics`]: Prometheus counters and histograms per route and pipeline stage.
//! - [`openapi`]: the `/openapi.json` document, generated from the route table and the types.
//! - [`state`]: what handlers share (the engine).
//! - [`clock`]: the wall clock in milliseconds.

// The OpenAPI document is one large `json!` literal.
#![recursion_limit = "256"]

pub mod access;
pub mod answer;
pub mod cache;
pub mod catalog;
pub mod clock;
pub mod config;
pub mod config_doc;
pub mod console;
pub mod edge;
pub mod engine;
pub mod error;
pub mod experiments;
pub mod failure;
pub mod features;
pub mod metrics;
pub mod monitoring;
pub mod openapi;
pub mod parse_errors;
pub mod recommend;
pub mod routes;
pub mod server;
pub mod state;
pub mod trace;

pub use config::Config;
pub use engine::Engine;
pub use routes::router;
pub use server::serve;
pub use state::AppState;
