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
//! - `PUT /v1/admin/models/{version}/transitions`: one batch of its transition table,
//!   `{"items":[{"id":"a","next":[{"id":"b","p":0.5}]}]}` (each item's likely next items,
//!   most likely first), before it is recorded;
//! - `POST /v1/admin/models/{version}/live`: records it live, for a trainer that wrote its
//!   vectors through `PUT /v1/admin/vectors` itself.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::ToSchema;

use super::admin::{VectorsBody, parse_vectors};
use super::path_id;
use crate::answer::{Activation, ChunkStored, MarkedLive, NewVersion, VectorRows};
use crate::engine::models::{Activated, ModelChunk, ModelInfo, ModelView, ModelsAnswer};
use crate::error::{ApiError, AppJson};
use crate::openapi::Op;
use crate::state::AppState;

pub fn list_doc() -> Op {
    Op::new("Model versions: each `recd train` run, with created_at, settings, quality-gate figures and status (live, available, rejected); which one is live")
        .describe("Oldest first. `gate` holds the held-out HR@10 and NDCG@10 of the new model and of its baseline (the live model, or popularity when none was live), the margin and the verdict. Also `gate_margin` and `keep_versions` from [model].")
        .answer::<ModelsAnswer>(200, "the versions")
}

pub fn activate_doc() -> Op {
    Op::new("Make a model version live: its vectors are written into the serving state (rollback is activating an older one)")
        .describe("Item vectors, then users' long-term vectors, then every logged user's session is rebuilt with the new item vectors and cached lists are dropped; serving continues throughout. Activating the live version writes nothing (`already_live`). A rejected version may be activated on purpose.")
        .answer::<Activation>(200, "live")
        .error(404, "no such version (not_found)")
}

pub fn create_doc() -> Op {
    Op::new(
        "A new model version number (recd train --target, before it stores the version's vectors)",
    )
    .answer::<NewVersion>(201, "the number")
}

pub fn record_doc() -> Op {
    Op::new("Record a model version whose vector chunks are stored; old versions beyond [model] keep_versions are deleted (never the live one)")
        .body::<RecordBody>()
        .answer::<ModelView>(200, "recorded")
        .error(404, "no such version, or one of its `chunks` is not stored (not_found)")
}

pub fn get_chunk_doc() -> Op {
    Op::new("One batch of a recorded version's vectors")
        .answer::<VectorRows>(200, "the vectors")
        .error(404, "no such version or chunk (not_found)")
}

pub fn put_chunk_doc() -> Op {
    Op::new("Store one batch of a version's vectors before it is recorded")
        .describe("Validated as PUT /v1/admin/vectors: any bad entry is a 400 listing each, and nothing is written.")
        .body::<VectorsBody>()
        .answer::<ChunkStored>(200, "stored")
        .error(404, "no such version (not_found)")
        .error(409, "the version is recorded already: its vectors cannot change (code invalid_argument)")
}

pub fn put_transitions_doc() -> Op {
    Op::new("Store one batch of a version's transition table (each item's likely next items) before it is recorded")
        .describe("What the transitions candidate source serves once the version is live ([ranking] transitions_candidates). Each item id and successor id is validated as an id, each `p` must be a finite number in [0, 1], at most 1000 successors per item and [server] max_batch items per batch: any bad entry is a 400 listing each, and nothing is written.")
        .body::<TransitionsBody>()
        .answer::<TransitionsStored>(200, "stored")
        .error(404, "no such version (not_found)")
        .error(409, "the version is recorded already: its table cannot change (code invalid_argument)")
}

pub fn mark_live_doc() -> Op {
    Op::new("Record a version live without writing vectors (a trainer that wrote them through PUT /v1/admin/vectors)")
        .answer::<MarkedLive>(200, "recorded live")
        .error(404, "no such version (not_found)")
}

pub async fn list(State(state): State<AppState>) -> Result<Json<ModelsAnswer>, ApiError> {
    Ok(Json(state.engine.models().await?))
}

pub async fn activate(
    State(state): State<AppState>,
    Path(version): Path<String>,
) -> Result<Json<Activation>, ApiError> {
    path_id(&version, "model version")?;
    // Spawned: a request deadline must not stop an activation halfway.
    let engine = state.engine.clone();
    let v = version.clone();
    let done: Activated = tokio::spawn(async move { engine.activate_model(&v).await })
        .await
        .map_err(|e| ApiError::from(crate::failure::EngineError::Internal(e.to_string())))??;
    Ok(Json(Activation {
        version,
        live: true,
        already_live: done.already_live,
        items: done.items,
        unknown_items: done.unknown_items,
        users: done.users,
        sessions: done.sessions,
    }))
}

pub async fn create(
    State(state): State<AppState>,
) -> Result<(StatusCode, Json<NewVersion>), ApiError> {
    let version = state.engine.new_model_version().await?;
    Ok((StatusCode::CREATED, Json(NewVersion { version })))
}

/// `{n}` of a chunk path.
fn chunk_index(raw: &str) -> Result<u32, ApiError> {
    raw.parse().map_err(|_| {
        ApiError::invalid(format!(
            "chunk index '{raw}' is not a number 0 to 4294967295"
        ))
    })
}

pub async fn put_chunk(
    State(state): State<AppState>,
    Path((version, index)): Path<(String, String)>,
    AppJson(body): AppJson<VectorsBody>,
) -> Result<Json<ChunkStored>, ApiError> {
    path_id(&version, "model version")?;
    let index = chunk_index(&index)?;
    let n = body.items.len() + body.users.len();
    let (items, users) = parse_vectors(&state, &body.items, &body.users, "a chunk")?;
    let chunk = ModelChunk { items, users };
    state
        .engine
        .put_model_chunk(&version, index, &chunk)
        .await?;
    Ok(Json(ChunkStored {
        version,
        chunk: index,
        vectors: n,
    }))
}

pub async fn get_chunk(
    State(state): State<AppState>,
    Path((version, index)): Path<(String, String)>,
) -> Result<Json<VectorRows>, ApiError> {
    path_id(&version, "model version")?;
    let index = chunk_index(&index)?;
    let chunk = state.engine.model_chunk(&version, index).await?;
    Ok(Json(VectorRows::new(&chunk.items, &chunk.users)))
}

/// A `u32` that JSON may spell `6` or `6.0` (both are an OpenAPI `integer`).
fn whole_u32<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    use serde::de::Error;
    match super::recommend::whole_number(d)? {
        Some(n) => {
            u32::try_from(n).map_err(|_| D::Error::custom(format!("{n} is over 4294967295")))
        }
        None => Err(D::Error::custom("a whole number is required")),
    }
}

/// `PUT /v1/admin/models/{version}`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordBody {
    /// How many chunks were stored.
    #[serde(deserialize_with = "whole_u32")]
    chunks: u32,
    /// What the trainer records.
    info: ModelInfo,
}

pub async fn record(
    State(state): State<AppState>,
    Path(version): Path<String>,
    AppJson(body): AppJson<RecordBody>,
) -> Result<Json<ModelView>, ApiError> {
    path_id(&version, "model version")?;
    for (name, v) in [
        ("settings", &body.info.settings),
        ("gate", &body.info.gate),
        ("counts", &body.info.counts),
    ] {
        if !(v.is_object() || v.is_null()) {
            return Err(ApiError::invalid(format!(
                "'info.{name}' must be an object (or null)"
            )));
        }
    }
    Ok(Json(
        state
            .engine
            .record_model(&version, body.chunks, body.info)
            .await?,
    ))
}

/// Successors per item a batch may give (training keeps `[train] transitions_top`, 50).
const MAX_SUCCESSORS: usize = 1000;

/// `PUT /v1/admin/models/{version}/transitions`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransitionsBody {
    /// Items and their successors.
    items: Vec<TransitionsEntry>,
}

/// One item's successors.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransitionsEntry {
    /// The item.
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    id: String,
    /// Its likely next items, most likely first.
    #[schema(max_items = 1000)]
    next: Vec<NextEntry>,
}

/// One successor.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NextEntry {
    /// The next item.
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    id: String,
    /// P(next | item).
    #[schema(minimum = 0.0, maximum = 1.0)]
    p: f64,
}

/// The answer of `PUT /v1/admin/models/{version}/transitions`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, ToSchema)]
pub struct TransitionsStored {
    /// The version.
    pub version: String,
    /// Items whose successors were stored.
    pub items: usize,
}

pub async fn put_transitions(
    State(state): State<AppState>,
    Path(version): Path<String>,
    AppJson(body): AppJson<TransitionsBody>,
) -> Result<Json<TransitionsStored>, ApiError> {
    path_id(&version, "model version")?;
    let max = state.config().server.max_batch;
    let n = body.items.len();
    if n > max {
        return Err(ApiError::invalid(format!(
            "a transitions batch holds at most {max} items, got {n}"
        )));
    }
    let mut problems = Vec::new();
    let mut lists: Vec<recd_store::NextList> = Vec::with_capacity(n);
    for (index, entry) in body.items.into_iter().enumerate() {
        let mut bad = |message: String| {
            problems.push(serde_json::json!({"index": index, "id": entry.id, "message": message}));
        };
        if let Err(e) = recd_core::id::validate_id(&entry.id, "item id") {
            bad(e.to_string());
            continue;
        }
        if entry.next.len() > MAX_SUCCESSORS {
            bad(format!(
                "at most {MAX_SUCCESSORS} successors per item, got {}",
                entry.next.len()
            ));
            continue;
        }
        let mut list = Vec::with_capacity(entry.next.len());
        let mut ok = true;
        for next in &entry.next {
            if let Err(e) = recd_core::id::validate_id(&next.id, "successor id") {
                bad(e.to_string());
                ok = false;
                break;
            }
            if !(next.p.is_finite() && (0.0..=1.0).contains(&next.p)) {
                bad(format!(
                    "successor '{}': p must be a number in [0, 1]",
                    next.id
                ));
                ok = false;
                break;
            }
            list.push((next.id.clone(), next.p as f32));
        }
        if ok {
            lists.push((entry.id, list));
        }
    }
    if !problems.is_empty() {
        return Err(ApiError::invalid_batch(
            format!(
                "{} of {n} items are invalid; nothing was written",
                problems.len()
            ),
            problems,
        ));
    }
    state.engine.put_model_transitions(&version, lists).await?;
    Ok(Json(TransitionsStored { version, items: n }))
}

pub async fn mark_live(
    State(state): State<AppState>,
    Path(version): Path<String>,
) -> Result<Json<MarkedLive>, ApiError> {
    path_id(&version, "model version")?;
    state.engine.mark_model_live(&version).await?;
    // New items move into the new model's space in the background: that reads the whole
    // catalog, longer than a request may take.
    let engine = std::sync::Arc::clone(&state.engine);
    tokio::spawn(async move { engine.place_new_items_logged().await });
    Ok(Json(MarkedLive {
        version,
        live: true,
    }))
}
