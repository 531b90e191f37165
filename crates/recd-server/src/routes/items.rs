//! `/v1/items`: batch upsert, the listing, get, delete, and similar items.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use recd_core::{Filter, ItemUpsert};
use serde::Deserialize;
use serde_json::{Value, json};

use super::page::{MAX_LIMIT, decode_cursor, encode_cursor, parse_limit};
use super::path_id;
use super::recommend::{parse_count, parse_filter};
use crate::answer::{ItemDetailsView, ItemFields, ItemsPage, Recommendation};
use crate::error::{ApiError, AppJson};
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpsertBody {
    items: Vec<Value>,
}

pub async fn upsert(
    State(state): State<AppState>,
    AppJson(body): AppJson<UpsertBody>,
) -> Result<Json<Value>, ApiError> {
    let max = state.config().server.max_batch;
    if body.items.len() > max {
        return Err(ApiError::invalid(format!(
            "a batch holds at most {max} items, got {}",
            body.items.len()
        )));
    }
    let schema = state.engine.schema();
    let mut items = Vec::with_capacity(body.items.len());
    let mut problems = Vec::new();
    for (index, v) in body.items.iter().enumerate() {
        match ItemUpsert::from_json(v, schema) {
            Ok(item) => items.push(item),
            Err(e) => {
                problems.push(json!({"index": index, "id": v.get("id"), "message": e.message}))
            }
        }
    }
    if !problems.is_empty() {
        return Err(ApiError::invalid_batch(
            format!(
                "{} of {} items are invalid; nothing was written",
                problems.len(),
                body.items.len()
            ),
            problems,
        ));
    }
    let upserted = state.engine.upsert_items(items).await?;
    Ok(Json(json!({ "upserted": upserted })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    limit: Option<u64>,
    cursor: Option<String>,
    /// The API.md filter as JSON.
    filter: Option<String>,
}

/// `GET /v1/items?limit=N&cursor=C&filter=JSON`: the store's items passing the filter, in
/// id order, without vectors (and without a catalog source's details: those are per item,
/// `GET /v1/items/{id}`).
pub async fn list(
    State(state): State<AppState>,
    params: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<ItemsPage>, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::invalid(e.body_text()))?;
    let limit = parse_limit(params.limit, MAX_LIMIT)?;
    let after = params.cursor.as_deref().map(decode_cursor).transpose()?;
    let filter = match &params.filter {
        Some(text) => {
            let v: Value = serde_json::from_str(text)
                .map_err(|e| ApiError::invalid(format!("'filter' is not JSON: {e}")))?;
            parse_filter(&v, state.engine.schema())?
        }
        None => Filter::all(),
    };
    let page = state
        .engine
        .list_items(after.as_deref(), limit, &filter)
        .await?;
    Ok(Json(ItemsPage {
        items: page.entries.into_iter().map(ItemFields).collect(),
        next_cursor: page.next.as_deref().map(encode_cursor),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GetParams {
    #[serde(default)]
    include_vector: bool,
    /// `false` reads the source, bypassing both cache tiers.
    #[serde(default = "yes")]
    use_cache: bool,
}

fn yes() -> bool {
    true
}

pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
    params: Result<Query<GetParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    path_id(&id, "item id")?;
    let Query(params) = params.map_err(|e| ApiError::invalid(e.body_text()))?;
    if params.include_vector {
        let item = state.engine.item_with_vector(&id).await?;
        return Ok(Json(item.to_json(true)));
    }
    let details = state.engine.item_details(&id, params.use_cache).await?;
    // Serializing our own types cannot fail.
    Ok(Json(
        serde_json::to_value(ItemDetailsView(&details)).unwrap_or_default(),
    ))
}

pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    path_id(&id, "item id")?;
    state.engine.delete_item(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/items/{id}/invalidate`: the item's details changed at their source; drop them
/// from every cache tier (and the other servers' L1). 204 whether or not they were cached.
pub async fn invalidate(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    path_id(&id, "item id")?;
    state.engine.details_changed(vec![id]).await;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimilarBody {
    count: Option<u64>,
    filter: Option<Value>,
}

pub async fn similar(
    State(state): State<AppState>,
    Path(id): Path<String>,
    AppJson(body): AppJson<SimilarBody>,
) -> Result<Json<Recommendation>, ApiError> {
    path_id(&id, "item id")?;
    let count = parse_count(body.count)?;
    let filter = match &body.filter {
        Some(f) => parse_filter(f, state.engine.schema())?,
        None => Filter::all(),
    };
    Ok(Json(state.engine.similar(&id, count, &filter).await?))
}
