//! Operations endpoints: health, readiness, metrics, the OpenAPI document.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde_json::Value;

use crate::answer::Ready;
use crate::engine::Health;
use crate::error::ApiError;
use crate::openapi::Op;
use crate::state::AppState;

pub fn health_doc() -> Op {
    Op::new("Liveness and sizes").answer::<Health>(200, "the server answers")
}

pub fn ready_doc() -> Op {
    Op::new("200 when the backend is reachable")
        .answer::<Ready>(200, "ready to serve")
        .error(503, "the backend cannot be reached (unavailable)")
}

pub fn metrics_doc() -> Op {
    Op::new("Prometheus text exposition").answer_as::<String>(
        200,
        "metrics",
        "text/plain",
        Vec::new(),
    )
}

pub fn openapi_doc() -> Op {
    Op::new("This document: OpenAPI 3.1, items and filters described for the data's schema")
        .answer_as::<Value>(200, "the document", "application/json", Vec::new())
}

pub async fn health(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    Ok(Json(state.engine.health().await?))
}

pub async fn ready(State(state): State<AppState>) -> Result<Json<Ready>, ApiError> {
    state.engine.ready().await?;
    Ok(Json(Ready { status: "ready" }))
}

pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    state.engine.export_gauges().await;
    let ready = state.engine.ready().await.is_ok();
    metrics::gauge!("recd_ready").set(if ready { 1.0 } else { 0.0 });
    let body = crate::metrics::render();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}

pub async fn openapi(State(state): State<AppState>) -> Json<Value> {
    Json(crate::openapi::document(Some(state.engine.schema())))
}
