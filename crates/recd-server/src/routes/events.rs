//! `POST /v1/events`: validate the whole batch, then apply it (atomically per user).

use axum::Json;
use axum::extract::State;
use recd_core::Event;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::clock::now_ms;
use crate::error::{ApiError, AppJson};
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsBody {
    events: Vec<Value>,
}

pub async fn ingest(
    State(state): State<AppState>,
    AppJson(body): AppJson<EventsBody>,
) -> Result<Json<Value>, ApiError> {
    let max = state.config().server.max_batch;
    if body.events.len() > max {
        return Err(ApiError::invalid(format!(
            "a batch holds at most {max} events, got {}",
            body.events.len()
        )));
    }
    let now = now_ms();
    let max_future = state.config().server.max_event_future_ms();
    let mut events = Vec::with_capacity(body.events.len());
    let mut problems = Vec::new();
    for (index, v) in body.events.iter().enumerate() {
        match Event::from_json(v, now, max_future) {
            Ok(e) => events.push(e),
            Err(e) => problems.push(json!({"index": index, "message": e.message})),
        }
    }
    if !problems.is_empty() {
        return Err(ApiError::invalid_batch(
            format!(
                "{} of {} events are invalid; nothing was applied",
                problems.len(),
                body.events.len()
            ),
            problems,
        ));
    }
    let accepted = state.engine.apply_events(&events).await?;
    Ok(Json(json!({ "accepted": accepted })))
}
