//! `/v1/items`: batch upsert, the listing, get, delete, and similar items.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use recd_core::{Filter, ItemUpsert};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

use super::page::{MAX_LIMIT, decode_cursor, encode_cursor, parse_limit};
use super::path_id;
use super::recommend::{parse_count, parse_filter};
use crate::answer::{
    ItemDetails, ItemDetailsView, ItemFields, ItemsPage, Recommendation, Upserted,
};
use crate::error::{ApiError, AppJson};
use crate::openapi::Op;
use crate::openapi::shapes::FilterDoc;
use crate::state::AppState;

/// `PUT /v1/items`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpsertBody {
    /// The items (at most `[server] max_batch`); each is checked against the schema.
    #[schema(value_type = Vec<ItemFields>)]
    items: Vec<Value>,
}

pub fn upsert_doc() -> Op {
    Op::new("Upsert a batch of items, all or nothing")
        .describe("Any invalid item is a 400 listing each as {index, id, message}, and nothing is written. A field given as null is removed; an item without `vector` keeps the one it has.")
        .body::<UpsertBody>()
        .answer::<Upserted>(200, "every item written")
}

pub fn list_doc() -> Op {
    Op::new("The items in id order (byte order), a page at a time, optionally filtered")
        .describe("Items without vectors (and without a catalog source's details; GET /v1/items/{id} has those). \
            Pass next_cursor back as cursor for the next page; it is null after the last page. Paging is stable: an item that \
            exists for the whole walk is returned exactly once, whatever is written meanwhile. A cursor this server did not \
            give out, a limit outside 1-1000 or a bad filter is a 400.")
        .query::<ListParams>()
        .json_query("filter", "A Filter as JSON (URL-encoded), as in POST /v1/recommend", "Filter")
        .answer::<ItemsPage>(200, "a page")
}

pub fn get_doc() -> Op {
    Op::new("One item (with its catalog source row under `details` when a source is configured), through the item cache")
        .query::<GetParams>()
        .answer::<ItemDetails>(200, "the item; its vector only with include_vector=true")
        .error(404, "no such item (not_found)")
}

pub fn delete_doc() -> Op {
    Op::new("Delete an item; it is never recommended again")
        .empty(204, "deleted")
        .error(404, "no such item (not_found)")
}

pub fn invalidate_doc() -> Op {
    Op::new("The item's details changed at their source: drop them from every cache tier")
        .empty(204, "dropped (whether or not they were cached)")
}

pub fn similar_doc() -> Op {
    Op::new("Items similar to this one")
        .body::<SimilarBody>()
        .answer::<Recommendation>(200, "the list, best first")
        .error(404, "no such item (not_found)")
}

pub async fn upsert(
    State(state): State<AppState>,
    AppJson(body): AppJson<UpsertBody>,
) -> Result<Json<Upserted>, ApiError> {
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
    Ok(Json(Upserted { upserted }))
}

/// The query of `GET /v1/items`.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Items per page (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u64>,
    /// `next_cursor` of the previous page (opaque: the hex of a UTF-8 position, which the
    /// pattern spells out byte by byte).
    #[param(
        min_length = 2,
        max_length = 512,
        pattern = "^(?:[0-7][0-9a-f]|(?:c[2-9a-f]|d[0-9a-f])[89ab][0-9a-f]|e0[ab][0-9a-f][89ab][0-9a-f]|(?:e[1-9a-c]|e[ef])[89ab][0-9a-f][89ab][0-9a-f]|ed[89][0-9a-f][89ab][0-9a-f]|f0[9ab][0-9a-f][89ab][0-9a-f][89ab][0-9a-f]|f[1-3][89ab][0-9a-f][89ab][0-9a-f][89ab][0-9a-f]|f48[0-9a-f][89ab][0-9a-f][89ab][0-9a-f])+$"
    )]
    cursor: Option<String>,
    /// A Filter as JSON (URL-encoded), as in `POST /v1/recommend`.
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

/// The query of `GET /v1/items/{id}`.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct GetParams {
    /// Include the item's vector.
    #[serde(default)]
    #[param(required = false)]
    include_vector: bool,
    /// `false` reads the source, bypassing both cache tiers.
    #[serde(default = "yes")]
    #[param(required = false)]
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

/// `POST /v1/items/{id}/similar`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SimilarBody {
    /// How many items (default 10).
    #[serde(default, deserialize_with = "super::recommend::whole_number")]
    #[schema(minimum = 1, maximum = 1000)]
    count: Option<u64>,
    /// Only items passing it.
    #[schema(value_type = Option<FilterDoc>)]
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
