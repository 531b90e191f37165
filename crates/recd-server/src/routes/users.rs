//! `/v1/users`: the known users a page at a time, what the engine knows about a user, and
//! forgetting it.

use super::page::{MAX_LIMIT, decode_cursor, encode_cursor, parse_limit};
use super::path_id;
use crate::answer::{UserView, UsersPage};
use crate::error::ApiError;
use crate::openapi::Op;
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::IntoParams;

/// The query of `GET /v1/users`.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Users per page (default 100).
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
}

pub fn list_doc() -> Op {
    Op::new("The ids of the users with state, in id order (byte order), a page at a time")
        .describe("Pass next_cursor back as cursor for the next page; it is null after the last page. Stable under concurrent writes, like GET /v1/items.")
        .query::<ListParams>()
        .answer::<UsersPage>(200, "a page")
}

pub fn get_doc() -> Op {
    Op::new("What the engine knows about a user")
        .answer::<UserView>(200, "the user's state")
        .error(404, "a user never seen (not_found)")
}

pub fn delete_doc() -> Op {
    Op::new("Forget every piece of state about a user (GDPR); idempotent")
        .empty(204, "forgotten, whether or not the user was known")
}

/// `GET /v1/users?limit=N&cursor=C`: ids of the users with state, in id order.
pub async fn list(
    State(state): State<AppState>,
    params: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<UsersPage>, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::invalid(e.body_text()))?;
    let limit = parse_limit(params.limit, MAX_LIMIT)?;
    let after = params.cursor.as_deref().map(decode_cursor).transpose()?;
    let page = state.engine.list_users(after.as_deref(), limit).await?;
    Ok(Json(UsersPage {
        users: page.entries,
        next_cursor: page.next.as_deref().map(encode_cursor),
    }))
}

pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<UserView>, ApiError> {
    path_id(&id, "user id")?;
    Ok(Json(state.engine.user(&id).await?))
}

/// Forgetting is idempotent: 204 whether or not the user was known.
pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    path_id(&id, "user id")?;
    state.engine.forget_user(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}
