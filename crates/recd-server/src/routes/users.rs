//! `/v1/users/{id}`: what the engine knows about a user, and forgetting it.

use super::path_id;
use crate::answer::UserView;
use crate::error::ApiError;
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

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
