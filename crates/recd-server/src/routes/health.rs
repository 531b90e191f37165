//! Operations endpoints: health, readiness, metrics, the OpenAPI document.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::state::AppState;

pub async fn health(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let counts = state.store.counts().await?;
    Ok(Json(json!({
        "status": "ok",
        "backend": state.store.backend(),
        "items": counts.items,
        "users": counts.users,
        "version": env!("CARGO_PKG_VERSION"),
    })))
}

pub async fn ready(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    state.store.ping().await?;
    Ok(Json(json!({"status": "ready"})))
}

pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    state.caches.export_gauges().await;
    if let Some(catalog) = &state.catalog {
        metrics::counter!("recd_catalog_queries_total").absolute(catalog.queries());
        metrics::counter!("recd_catalog_errors_total").absolute(catalog.errors());
    }
    let body = crate::metrics::handle()
        .map(|h| h.render())
        .unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}

pub async fn openapi() -> Json<Value> {
    Json(crate::openapi::document())
}
