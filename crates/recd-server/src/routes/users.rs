//! `/v1/users/{id}`: what the engine knows about a user, and forgetting it.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::path_id;
use crate::error::ApiError;
use crate::state::AppState;

pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    path_id(&id, "user id")?;
    let Some(u) = state.store.get_user(&id).await? else {
        return Err(ApiError::not_found(format!("user '{id}' is unknown")));
    };
    let c = &u.counters;
    Ok(Json(json!({
        "user_id": id,
        "counters": {"view": c.view, "click": c.click, "dwell": c.dwell, "add_to_cart": c.add_to_cart,
                     "purchase": c.purchase, "rating": c.rating, "dwell_seconds": c.dwell_seconds},
        "recent_items": u.recent,
        "purchased": u.purchased,
        "session_vector_norm": u.session_vector_norm(),
        "has_long_term_vector": u.long_term.is_some(),
        "last_event_ms": u.last_event_ms,
    })))
}

/// Forgetting is idempotent: 204 whether or not the user was known.
pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    path_id(&id, "user id")?;
    state.store.delete_user(&id).await?;
    state.caches.forget_user(&id).await;
    Ok(StatusCode::NO_CONTENT)
}
