//! The HTTP surface of API.md: one module per resource, assembled by [`router`].

mod admin;
mod events;
mod health;
mod items;
mod recommend;
mod users;

use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::{get, post, put};
use recd_core::id::validate_id;
use tower_http::timeout::TimeoutLayer;

use crate::error::ApiError;
use crate::state::AppState;

/// Every route of the service.
pub fn router(state: AppState) -> Router {
    let limits = &state.config.server;
    let body_limit = limits.body_limit_bytes;
    let timeout = Duration::from_millis(limits.request_timeout_ms);
    Router::new()
        .route("/health", get(health::health))
        .route("/ready", get(health::ready))
        .route("/metrics", get(health::metrics))
        .route("/openapi.json", get(health::openapi))
        .route("/v1/items", put(items::upsert))
        .route("/v1/items/{id}", get(items::get).delete(items::delete))
        .route("/v1/items/{id}/similar", post(items::similar))
        .route("/v1/items/{id}/invalidate", post(items::invalidate))
        .route("/v1/recommend", post(recommend::recommend))
        .route("/v1/events", post(events::ingest))
        .route("/v1/users/{id}", get(users::get).delete(users::delete))
        .route("/v1/admin/schema", get(admin::schema))
        .route("/v1/admin/events", get(admin::events))
        .route("/v1/admin/vectors", put(admin::put_vectors))
        .route("/v1/admin/sessions/rebuild", post(admin::rebuild_sessions))
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .route_layer(middleware::from_fn(crate::metrics::track))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            timeout,
        ))
        .with_state(state)
}

/// Checks an id taken from the path.
fn path_id(id: &str, what: &str) -> Result<(), ApiError> {
    validate_id(id, what).map_err(ApiError::from)
}
