//! Model versions (admin): what `recd train` recorded, and switching between them.
//!
//! - `GET /v1/models`: `{"models":[{version, created_at, status, live, settings, gate,
//!   counts, chunks}], "live": "v2"|null, "gate_margin", "keep_versions"}`, oldest first.
//! - `POST /v1/models/{version}/activate`: writes the version's vectors into the serving
//!   state and makes it live (rollback is activating an older one); 404 for an unknown
//!   version, 200 with `"already_live": true` (nothing written) for the live one. The
//!   activation runs to its end even if the client stops waiting.
//!
//! What `recd train --target URL` uses to record a version on a running server:
//! - `POST /v1/admin/models` → 201 `{"version":"v3"}`: a new version number;
//! - `PUT /v1/admin/models/{version}/chunks/{n}`: one batch of its vectors,
//!   `{"items":[{"id","vector"}],"users":[...]}`, validated as `PUT /v1/admin/vectors`;
//! - `GET /v1/admin/models/{version}/chunks/{n}`: a recorded version's batch, same shape
//!   (the trainer scores the live model with it);
//! - `PUT /v1/admin/models/{version}`: `{"chunks":N,"info":{created_at, accepted,
//!   settings, gate, counts}}` records it (listed from then on; old versions beyond
//!   `[model] keep_versions` are deleted);
//! - `POST /v1/admin/models/{version}/live`: records it live, for a trainer that wrote its
//!   vectors through `PUT /v1/admin/vectors` itself.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::admin::parse_vectors;
use super::path_id;
use crate::engine::models::{Activated, ModelChunk, ModelInfo, ModelView, ModelsAnswer};
use crate::error::{ApiError, AppJson};
use crate::state::AppState;

pub async fn list(State(state): State<AppState>) -> Result<Json<ModelsAnswer>, ApiError> {
    Ok(Json(state.engine.models().await?))
}

pub async fn activate(
    State(state): State<AppState>,
    Path(version): Path<String>,
) -> Result<Json<Value>, ApiError> {
    path_id(&version, "model version")?;
    // Spawned: a request deadline must not stop an activation halfway.
    let engine = state.engine.clone();
    let v = version.clone();
    let done: Activated = tokio::spawn(async move { engine.activate_model(&v).await })
        .await
        .map_err(|e| ApiError::from(crate::failure::EngineError::Internal(e.to_string())))??;
    Ok(Json(json!({
        "version": version,
        "live": true,
        "already_live": done.already_live,
        "items": done.items,
        "unknown_items": done.unknown_items,
        "users": done.users,
        "sessions": done.sessions,
    })))
}

pub async fn create(State(state): State<AppState>) -> Result<(StatusCode, Json<Value>), ApiError> {
    let version = state.engine.new_model_version().await?;
    Ok((StatusCode::CREATED, Json(json!({ "version": version }))))
}

/// `{n}` of a chunk path.
fn chunk_index(raw: &str) -> Result<u32, ApiError> {
    raw.parse().map_err(|_| {
        ApiError::invalid(format!(
            "chunk index '{raw}' is not a number 0 to 4294967295"
        ))
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChunkBody {
    #[serde(default)]
    items: Vec<Value>,
    #[serde(default)]
    users: Vec<Value>,
}

pub async fn put_chunk(
    State(state): State<AppState>,
    Path((version, index)): Path<(String, String)>,
    AppJson(body): AppJson<ChunkBody>,
) -> Result<Json<Value>, ApiError> {
    path_id(&version, "model version")?;
    let index = chunk_index(&index)?;
    let n = body.items.len() + body.users.len();
    let (items, users) = parse_vectors(&state, &body.items, &body.users, "a chunk")?;
    let chunk = ModelChunk { items, users };
    state
        .engine
        .put_model_chunk(&version, index, &chunk)
        .await?;
    Ok(Json(
        json!({ "version": version, "chunk": index, "vectors": n }),
    ))
}

fn rows(list: &[(String, Vec<f32>)]) -> Vec<Value> {
    list.iter()
        .map(|(id, v)| json!({"id": id, "vector": v}))
        .collect()
}

pub async fn get_chunk(
    State(state): State<AppState>,
    Path((version, index)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    path_id(&version, "model version")?;
    let index = chunk_index(&index)?;
    let chunk = state.engine.model_chunk(&version, index).await?;
    Ok(Json(
        json!({ "items": rows(&chunk.items), "users": rows(&chunk.users) }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordBody {
    chunks: u32,
    info: ModelInfo,
}

pub async fn record(
    State(state): State<AppState>,
    Path(version): Path<String>,
    AppJson(body): AppJson<RecordBody>,
) -> Result<Json<ModelView>, ApiError> {
    path_id(&version, "model version")?;
    Ok(Json(
        state
            .engine
            .record_model(&version, body.chunks, body.info)
            .await?,
    ))
}

pub async fn mark_live(
    State(state): State<AppState>,
    Path(version): Path<String>,
) -> Result<Json<Value>, ApiError> {
    path_id(&version, "model version")?;
    state.engine.mark_model_live(&version).await?;
    Ok(Json(json!({ "version": version, "live": true })))
}
