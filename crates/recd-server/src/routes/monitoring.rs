//! `/v1/monitoring` (admin): the drift report of the watched features.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use crate::monitoring::DriftAnswer;
use crate::openapi::Op;
use crate::state::AppState;

pub fn drift_doc() -> Op {
    Op::new("Drift of the watched features (top score, score spread, category mix of served items, event-type mix): reference and live summaries, PSI, two-sample test, threshold, verdict")
        .answer::<DriftAnswer>(200, "the report")
}

pub fn reset_doc() -> Op {
    Op::new("Pin new references from the next observations on (e.g. after a retrain)")
        .empty(204, "references reset")
}

pub async fn drift(State(state): State<AppState>) -> Json<DriftAnswer> {
    Json(state.engine.drift())
}

/// Pins new references from the next observations on (e.g. after a retrain).
pub async fn reset(State(state): State<AppState>) -> StatusCode {
    state.engine.reset_drift();
    StatusCode::NO_CONTENT
}
