//! `POST /v1/events`: validate the whole batch, then apply it (atomically per user).

use axum::Json;
use axum::extract::State;
use recd_core::Event;
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::answer::Accepted;
use crate::clock::now_ms;
use crate::error::{ApiError, AppJson};
use crate::openapi::Op;
use crate::openapi::shapes::EventDoc;
use crate::state::AppState;

/// `POST /v1/events`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventsBody {
    /// The events (at most `[server] max_batch`).
    #[schema(value_type = Vec<EventDoc>)]
    events: Vec<Value>,
}

pub fn ingest_doc() -> Op {
    Op::new("Ingest events; applied before the answer (read-your-writes)")
        .describe("Any invalid event is a 400 listing each as {index, message}, and nothing is applied. Each user's events apply atomically and in order.")
        .body::<EventsBody>()
        .answer::<Accepted>(200, "every event applied")
}

pub async fn ingest(
    State(state): State<AppState>,
    AppJson(body): AppJson<EventsBody>,
) -> Result<Json<Accepted>, ApiError> {
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
    Ok(Json(Accepted { accepted }))
}
