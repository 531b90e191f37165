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
use crate::openapi::Op;
use crate::state::AppState;

/// `GET /v1/strategies`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Strategies {
    /// By name; `default` always exists.
    strategies: BTreeMap<String, Strategy>,
}

pub fn list_strategies_doc() -> Op {
    Op::new("Every ranking strategy, `default` (the configured [ranking]) included")
        .answer::<Strategies>(200, "the strategies")
}

pub fn put_strategy_doc() -> Op {
    Op::new("Create or replace a named strategy")
        .describe("`ranking` gives only the keys that differ from the configured [ranking] (candidates, popular_candidates, transitions_candidates, transitions_weight, session_share_max, session_saturation, similarity_weight, popularity_weight, exclude_seen, rrf_k); `diversity` applies when a request gives none; `model` is \"live\".")
        .body::<StrategyBody>()
        .answer::<Strategy>(200, "the strategy as stored")
}

/// `PUT /v1/strategies/{name}`: checked by `Strategy::from_json` against the configured
/// `[ranking]`.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)] // For the document: `Strategy::from_json` refuses other keys.
#[allow(dead_code)] // Documents the body; the handler reads it as JSON.
pub struct StrategyBody {
    /// Only the `[ranking]` keys that differ from the configuration.
    #[schema(schema_with = crate::openapi::shapes::ranking_overrides)]
    ranking: Option<Value>,
    /// A diversity cap applied when the request gives none.
    #[schema(schema_with = crate::openapi::shapes::diversity_ref)]
    diversity: Option<Value>,
    /// The model version it serves: `live`.
    #[schema(pattern = "^live$")]
    model: Option<String>,
}

pub fn list_doc() -> Op {
    Op::new("All experiments with their status").answer::<Experiments>(200, "the experiments")
}

pub fn create_doc() -> Op {
    Op::new("Create an experiment (A/B, bandit or interleaving) over strategies")
        .body::<ExperimentRequest>()
        .answer::<ExperimentDef>(201, "created")
}

pub fn results_doc() -> Op {
    Op::new("An experiment's results: per variant users, impressions, clicks, conversions, rates with 95 % intervals, p-values (fixed-horizon and always-valid), probability to beat the control, expected loss; SRM; sample size; interleaving preference")
        .answer::<ExperimentResults>(200, "the results")
        .error(404, "no such experiment (not_found)")
}

pub fn stop_doc() -> Op {
    Op::new("Stop assigning users; results stay")
        .answer::<ExperimentDef>(200, "stopped")
        .error(404, "no such experiment (not_found)")
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

/// `GET /v1/experiments`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Experiments {
    /// Every experiment.
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
