//! `/v1/users`: the known users a page at a time, what the engine knows about a user, and
//! forgetting it.

use super::page::{MAX_LIMIT, decode_cursor, encode_cursor, parse_limit};
use super::path_id;
use crate::answer::{UserView, UsersPage};
use crate::error::ApiError;
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    limit: Option<u64>,
    cursor: Option<String>,
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
