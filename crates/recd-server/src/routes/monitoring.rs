//! `/v1/monitoring` (admin): the drift report of the watched features.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use crate::monitoring::DriftAnswer;
use crate::state::AppState;

pub async fn drift(State(state): State<AppState>) -> Json<DriftAnswer> {
    Json(state.engine.drift())
}

/// Pins new references from the next observations on (e.g. after a retrain).
pub async fn reset(State(state): State<AppState>) -> StatusCode {
    state.engine.reset_drift();
    StatusCode::NO_CONTENT
}
