//! `/v1/strategies` and `/v1/experiments` (admin): named ranking strategies, and the
//! experiments that compare them (A/B, bandit, interleaving) with their results.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Serialize;
use serde_json::Value;

use super::path_id;
use crate::error::{ApiError, AppJson};
use crate::experiments::ExperimentSummary;
use crate::experiments::model::{ExperimentDef, ExperimentRequest, Strategy};
use crate::experiments::results::ExperimentResults;
use crate::state::AppState;

#[derive(Serialize)]
pub struct Strategies {
    strategies: BTreeMap<String, Strategy>,
}

pub async fn list_strategies(State(state): State<AppState>) -> Json<Strategies> {
    Json(Strategies {
        strategies: state.engine.experiments().strategies(),
    })
}

pub async fn put_strategy(
    State(state): State<AppState>,
    Path(name): Path<String>,
    AppJson(body): AppJson<Value>,
) -> Result<Json<Strategy>, ApiError> {
    path_id(&name, "strategy name")?;
    Ok(Json(state.engine.put_strategy(&name, &body).await?))
}

#[derive(Serialize)]
pub struct Experiments {
    experiments: Vec<ExperimentSummary>,
}

pub async fn list(State(state): State<AppState>) -> Json<Experiments> {
    Json(Experiments {
        experiments: state.engine.experiments().list(),
    })
}

pub async fn create(
    State(state): State<AppState>,
    AppJson(body): AppJson<ExperimentRequest>,
) -> Result<(StatusCode, Json<ExperimentDef>), ApiError> {
    let def = state.engine.experiments().create(body).await?;
    Ok((StatusCode::CREATED, Json(def)))
}

pub async fn results(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ExperimentResults>, ApiError> {
    path_id(&id, "experiment id")?;
    Ok(Json(state.engine.experiments().results(&id).await?))
}

pub async fn stop(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ExperimentDef>, ApiError> {
    path_id(&id, "experiment id")?;
    Ok(Json(state.engine.experiments().stop(&id).await?))
}
