//! `/v1/admin`: what an out-of-process trainer (`recd train --target URL`) needs to retrain
//! the model of a running server without stopping it.
//!
//! - `GET /v1/admin/schema`: the store's schema (the trainer's `--factors` must equal its
//!   vector dimension).
//!   `GET /v1/schema` answers the same with the `read` scope (filters name its fields).
//! - `GET /v1/admin/events[?offset=N][&cursor=C][&limit=N]`: the event log as NDJSON, one
//!   API.md Event per line (`timestamp` in epoch milliseconds), in the order the events were
//!   applied. The body is read from the store [`EVENTS_PER_CHUNK`] events at a time as it is
//!   sent (a reader holds one page in memory, however large the log and however slowly it
//!   reads). `offset` skips that many events (a count: users forgotten in between,
//!   `DELETE /v1/users/{id}`, shift it back); `cursor` starts after a position this endpoint
//!   gave out (it stays exact whatever is forgotten); with `limit` (1–10000) the answer holds
//!   at most that many events and, when more follow, their cursor in `x-recd-next-cursor`.
//!   Without `limit` the body runs to the end of the log.
//! - `PUT /v1/admin/vectors`: `{"items":[{"id","vector"}],"users":[{"id","vector"}]}` →
//!   `{"items":N,"users":N,"unknown_items":N}`. Every entry is validated first (id, the
//!   schema's dimension, finite, non-zero under cosine, no id twice in a list, at most
//!   `server.max_batch` entries in all); any problem is a 400 listing each bad entry as
//!   `{list,index,id,message}`, and nothing is written. Then item vectors are replaced (item
//!   ids the catalog does not have are skipped and counted in `unknown_items`: the catalog
//!   may have changed since the events were read) and users' long-term vectors set (a user
//!   the server has no state for gets state holding just that vector, as
//!   `Store::set_user_vectors` does: the model may know users from an `--interactions`
//!   file). Items are written before users, each list in one write; writing the same body
//!   again gives the same state, so a client may retry a batch whose answer it lost.
//! - `POST /v1/admin/sessions/rebuild`: `{"users":[id,...]}` → `{"rebuilt":N}`: recomputes
//!   those users' session vectors from their logged events with the current item vectors
//!   (`Store::rebuild_sessions`, atomic per user against concurrent events). Call it once the
//!   new item vectors are in: a session averaged from the old vectors points nowhere in the
//!   new space. Users the server has no state for are skipped. Idempotent.
//!
//! Cached recommendation lists: a rebuild, the last step of a write-back, drops every cached
//! list before it answers (all were ranked with the replaced vectors). `PUT
//! /v1/admin/vectors` leaves them to that step (or to their TTL): a write-back of thousands
//! of vectors in small batches would otherwise empty the cache once per batch, and every
//! request would be computed while the vectors are being written (measured on Redis: p99
//! of a second while it lasted).
//!
//! These endpoints read every user's history and rewrite the model: they need a key with
//! the `admin` scope whenever keys are configured (see `crate::access`).

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use recd_core::id::validate_id;
use recd_core::item::parse_vector;
use recd_core::{Event, Schema, ValidationError};
use serde::Deserialize;
use serde_json::{Value, json};

use utoipa::{IntoParams, ToSchema};

use super::page::{decode_cursor, encode_cursor, parse_limit};
use crate::answer::{IdVectorRow, Rebuilt, VectorsWritten};
use crate::engine::Engine;
use crate::error::{ApiError, AppJson};
use crate::openapi::Op;
use crate::openapi::shapes::EventDoc;
use crate::state::AppState;

pub fn schema_doc() -> Op {
    Op::new("The store's schema (vector dimension and metric, fields)")
        .answer::<SchemaDoc>(200, "the schema")
}

/// `GET /v1/admin/schema`: `recd_core::Schema` as serde writes it.
#[derive(ToSchema)]
#[schema(as = DataSchema)]
#[allow(dead_code)] // Documents the answer; the handler returns recd_core::Schema.
pub struct SchemaDoc {
    /// `{"dim": N, "metric": "cosine"|"ip"|"l2"}`.
    #[schema(value_type = Object)]
    vector: Value,
    /// Field name → `tag`, `numeric`, `bool` or `text`.
    #[schema(value_type = Object)]
    fields: Value,
}

pub fn events_doc() -> Op {
    let integer = || -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::Integer)
            .build()
            .into()
    };
    let string = || -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .build()
            .into()
    };
    Op::new("The event log as NDJSON, in the order the events were applied (for training)")
        .describe("One Event per line, `timestamp` in epoch milliseconds; streamed from the store a page \
            at a time as the client reads (memory per reader is one page). `offset` skips that many events (users forgotten \
            in between shift it back); `cursor` starts after a position this endpoint gave out in `x-recd-next-cursor` \
            (exact whatever is forgotten). With `limit` (1-10000) at most that many events are returned and, when more \
            follow, `x-recd-next-cursor` holds the cursor of the rest; without it the body runs to the end of the log. \
            The `x-recd-log-length` header gives the log's length when it was read.")
        .query::<EventsParams>()
        .answer_as::<EventDoc>(
            200,
            "NDJSON, one Event per line",
            "application/x-ndjson",
            vec![
                ("x-recd-log-length", "the log's length when it was read", integer()),
                ("x-recd-next-cursor", "with limit, when more events follow", string()),
            ],
        )
        .error(404, "`cursor` names no position of this log (not_found)")
}

pub fn put_vectors_doc() -> Op {
    Op::new("Write trained item vectors and users' long-term vectors (training write-back)")
        .describe("Every entry is checked first (id, the schema's dimension, finite, non-zero under cosine, \
            each id once per list, at most server.max_batch entries in all); any problem is a 400 listing each bad entry \
            as {list,index,id,message} and nothing is written. Item ids the catalog lacks are skipped and counted in \
            unknown_items; a user without state gets state holding just the vector. Items are written before users; \
            the same body twice gives the same state (safe to retry).")
        .body::<VectorsBody>()
        .answer::<VectorsWritten>(200, "written")
}

pub fn rebuild_sessions_doc() -> Op {
    Op::new("Recompute users' session vectors with the current item vectors")
        .describe("Each listed user's session vector is recomputed from their logged events with the \
            current item vectors, atomically against concurrent events; call it after new item vectors are written. \
            Users without state are skipped. Idempotent. The last step of a write-back: it also drops every \
            cached recommendation list (PUT /v1/admin/vectors leaves them to this step, or to their TTL).")
        .body::<RebuildBody>()
        .answer::<Rebuilt>(200, "rebuilt")
}

/// Lines of NDJSON serialized into one chunk of the events body.
pub const EVENTS_PER_CHUNK: usize = 1024;

/// The JSON of an event, as API.md's Event with `timestamp` in epoch milliseconds; what
/// `Event::from_json` reads back into the same event.
pub fn event_json(e: &Event) -> Value {
    let mut v = json!({
        "user_id": e.user_id,
        "item_id": e.item_id,
        "type": e.kind.as_str(),
        "timestamp": e.timestamp_ms,
    });
    if let Some(value) = e.value {
        v["value"] = json!(value);
    }
    if let Some(r) = &e.recommendation_id {
        v["recommendation_id"] = json!(r);
    }
    v
}

pub async fn schema(State(state): State<AppState>) -> Json<Schema> {
    Json(state.engine.schema().clone())
}

/// The query of `GET /v1/admin/events`.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct EventsParams {
    /// Events to skip.
    #[serde(default)]
    #[param(required = false)]
    offset: usize,
    /// `x-recd-next-cursor` of an earlier answer (opaque: the hex of a UTF-8 position).
    #[param(
        min_length = 2,
        max_length = 512,
        pattern = "^(?:[0-7][0-9a-f]|(?:c[2-9a-f]|d[0-9a-f])[89ab][0-9a-f]|e0[ab][0-9a-f][89ab][0-9a-f]|(?:e[1-9a-c]|e[ef])[89ab][0-9a-f][89ab][0-9a-f]|ed[89][0-9a-f][89ab][0-9a-f]|f0[9ab][0-9a-f][89ab][0-9a-f][89ab][0-9a-f]|f[1-3][89ab][0-9a-f][89ab][0-9a-f][89ab][0-9a-f]|f48[0-9a-f][89ab][0-9a-f][89ab][0-9a-f])+$"
    )]
    cursor: Option<String>,
    /// At most this many events (1-10000); without it, to the end of the log.
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<u64>,
}

/// The largest `limit` of `GET /v1/admin/events`.
pub const MAX_EVENTS_LIMIT: u64 = 10_000;

/// `events` as NDJSON lines.
fn ndjson(events: &[Event]) -> Bytes {
    let mut buf = Vec::with_capacity(events.len() * 128);
    for e in events {
        // Serializing a `Value` into a Vec cannot fail.
        if serde_json::to_writer(&mut buf, &event_json(e)).is_ok() {
            buf.push(b'\n');
        }
    }
    Bytes::from(buf)
}

/// Where a walk of the log stands: the position after which it continues, and how many
/// events it still returns (`None`: to the end).
struct Walk {
    engine: Arc<Engine>,
    after: Option<String>,
    left: Option<usize>,
    done: bool,
}

impl Walk {
    /// Skips `n` events (pages sized to end exactly at the skip).
    async fn skip(&mut self, mut n: usize) -> Result<(), ApiError> {
        while n > 0 && !self.done {
            let page = self
                .engine
                .events_page(self.after.as_deref(), n.min(EVENTS_PER_CHUNK))
                .await?;
            n -= page.entries.len().min(n);
            self.advance(page.next, 0);
        }
        Ok(())
    }

    /// The next page, `None` at the end.
    async fn next_page(&mut self) -> Result<Option<Vec<Event>>, ApiError> {
        let want = self
            .left
            .map_or(EVENTS_PER_CHUNK, |l| l.min(EVENTS_PER_CHUNK));
        if self.done || want == 0 {
            return Ok(None);
        }
        let page = self.engine.events_page(self.after.as_deref(), want).await?;
        self.advance(page.next, page.entries.len());
        Ok((!page.entries.is_empty()).then_some(page.entries))
    }

    fn advance(&mut self, next: Option<String>, taken: usize) {
        if let Some(left) = &mut self.left {
            *left -= taken.min(*left);
        }
        self.done = next.is_none();
        if next.is_some() {
            self.after = next;
        }
    }
}

pub async fn events(
    State(state): State<AppState>,
    params: Result<Query<EventsParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::invalid(e.body_text()))?;
    let after = params.cursor.as_deref().map(decode_cursor).transpose()?;
    if let Some(position) = &after {
        // A well-formed cursor that names no position of this log (each backend has its
        // own positions) refers to something absent: 404, like an unknown id.
        if let Err(crate::failure::EngineError::Invalid(e)) =
            state.engine.events_page(Some(position), 0).await
        {
            return Err(ApiError::not_found(format!("'cursor': {}", e.message)));
        }
    }
    let limit = params
        .limit
        .map(|l| parse_limit(Some(l), MAX_EVENTS_LIMIT))
        .transpose()?;
    let total = state.engine.events_len().await?;
    let mut walk = Walk {
        engine: Arc::clone(&state.engine),
        after,
        left: limit,
        done: false,
    };
    walk.skip(params.offset).await?;
    let mut headers = vec![
        (header::CONTENT_TYPE, "application/x-ndjson".to_string()),
        (
            header::HeaderName::from_static("x-recd-log-length"),
            total.to_string(),
        ),
    ];
    if let Some(limit) = limit {
        // One bounded page: read it whole, so that the cursor after it is known for the
        // header.
        let page = walk
            .engine
            .events_page(walk.after.as_deref(), limit)
            .await?;
        if let Some(next) = &page.next {
            headers.push((
                header::HeaderName::from_static("x-recd-next-cursor"),
                encode_cursor(next),
            ));
        }
        let mut response = Body::from(ndjson(&page.entries)).into_response();
        for (name, value) in headers {
            if let Ok(value) = header::HeaderValue::from_str(&value) {
                response.headers_mut().insert(name, value);
            }
        }
        return Ok(response);
    }
    // To the end of the log, a page at a time as the client reads: the stream asks for the
    // next page only once the previous one was handed to the connection. The first page is
    // read before answering, so that a bad cursor or an unreachable store is a proper error
    // status, not a cut body.
    let first = walk.next_page().await?.map(|events| Ok(ndjson(&events)));
    let rest = futures_util::stream::unfold(walk, |mut walk| async move {
        match walk.next_page().await {
            Ok(Some(events)) => Some((Ok::<_, std::io::Error>(ndjson(&events)), walk)),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(cause = %e.message, "event log stream cut short");
                walk.done = true;
                Some((Err(std::io::Error::other(e.message)), walk))
            }
        }
    });
    let body = futures_util::stream::iter(first).chain(rest);
    let mut response = Body::from_stream(body).into_response();
    for (name, value) in headers {
        if let Ok(value) = header::HeaderValue::from_str(&value) {
            response.headers_mut().insert(name, value);
        }
    }
    Ok(response)
}

/// `PUT /v1/admin/vectors` and `PUT /v1/admin/models/{version}/chunks/{index}`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = VectorsIn)]
pub struct VectorsBody {
    /// Item vectors.
    #[serde(default)]
    #[schema(value_type = Vec<IdVectorRow>)]
    pub(super) items: Vec<Value>,
    /// Users' long-term vectors.
    #[serde(default)]
    #[schema(value_type = Vec<IdVectorRow>)]
    pub(super) users: Vec<Value>,
}

/// One `{"id","vector"}` entry.
fn parse_entry(
    v: &Value,
    what: &str,
    schema: &Schema,
) -> Result<(String, Vec<f32>), ValidationError> {
    let Value::Object(map) = v else {
        return Err(ValidationError::new(
            "an entry must be an object {\"id\":..,\"vector\":[..]}",
        ));
    };
    if let Some(key) = map.keys().find(|k| !matches!(k.as_str(), "id" | "vector")) {
        return Err(ValidationError::new(format!("unknown field '{key}'")));
    }
    let id = match map.get("id") {
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(ValidationError::new("'id' must be a string")),
        None => return Err(ValidationError::new("'id' is required")),
    };
    validate_id(&id, what)?;
    let vector = match map.get("vector") {
        Some(v) => parse_vector(v, schema)?,
        None => return Err(ValidationError::new("'vector' is required")),
    };
    Ok((id, vector))
}

/// Parsed item and user vectors, as (id, vector) lists.
pub(super) type VectorLists = (Vec<(String, Vec<f32>)>, Vec<(String, Vec<f32>)>);

/// Item and user vectors as (id, vector) lists, or a 400: more than `max_batch` together
/// (`unit` says what holds them, e.g. "a batch"), or any invalid entry (each named).
pub(super) fn parse_vectors(
    state: &AppState,
    items: &[Value],
    users: &[Value],
    unit: &str,
) -> Result<VectorLists, ApiError> {
    let max = state.config().server.max_batch;
    let n = items.len() + users.len();
    if n > max {
        return Err(ApiError::invalid(format!(
            "{unit} holds at most {max} vectors (items and users together), got {n}"
        )));
    }
    let schema = state.engine.schema();
    let mut problems = Vec::new();
    let items = parse_list("items", items, schema, &mut problems);
    let users = parse_list("users", users, schema, &mut problems);
    if !problems.is_empty() {
        return Err(ApiError::invalid_batch(
            format!(
                "{} of {n} vectors are invalid; nothing was written",
                problems.len()
            ),
            problems,
        ));
    }
    Ok((items, users))
}

/// Parses one list, adding `{list,index,id,message}` per bad entry to `problems`.
pub(super) fn parse_list(
    list: &'static str,
    entries: &[Value],
    schema: &Schema,
    problems: &mut Vec<Value>,
) -> Vec<(String, Vec<f32>)> {
    let what = if list == "items" {
        "item id"
    } else {
        "user id"
    };
    let mut out = Vec::with_capacity(entries.len());
    let mut first: HashMap<String, usize> = HashMap::new();
    for (index, v) in entries.iter().enumerate() {
        match parse_entry(v, what, schema) {
            Ok((id, vector)) => {
                if let Some(earlier) = first.get(&id) {
                    problems.push(json!({"list": list, "index": index, "id": id,
                        "message": format!("{what} '{id}' is also at index {earlier}; each id at most once per batch")}));
                } else {
                    first.insert(id.clone(), index);
                    out.push((id, vector));
                }
            }
            Err(e) => problems.push(
                json!({"list": list, "index": index, "id": v.get("id"), "message": e.message}),
            ),
        }
    }
    out
}

pub async fn put_vectors(
    State(state): State<AppState>,
    AppJson(body): AppJson<VectorsBody>,
) -> Result<Json<VectorsWritten>, ApiError> {
    let (items, users) = parse_vectors(&state, &body.items, &body.users, "a batch")?;
    Ok(Json(state.engine.write_vectors(items, users).await?))
}

/// `POST /v1/admin/sessions/rebuild`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RebuildBody {
    /// User ids (at most `[server] max_batch`).
    #[schema(schema_with = crate::openapi::shapes::id_list)]
    users: Vec<Value>,
}

pub async fn rebuild_sessions(
    State(state): State<AppState>,
    AppJson(body): AppJson<RebuildBody>,
) -> Result<Json<Rebuilt>, ApiError> {
    let max = state.config().server.max_batch;
    if body.users.len() > max {
        return Err(ApiError::invalid(format!(
            "a batch holds at most {max} users, got {}",
            body.users.len()
        )));
    }
    let mut users = Vec::with_capacity(body.users.len());
    let mut problems = Vec::new();
    for (index, v) in body.users.iter().enumerate() {
        let checked = match v {
            Value::String(id) => validate_id(id, "user id").map(|()| id.clone()),
            _ => Err(ValidationError::new("a user id must be a string")),
        };
        match checked {
            Ok(id) => users.push(id),
            Err(e) => problems.push(json!({"index": index, "id": v, "message": e.message})),
        }
    }
    if !problems.is_empty() {
        return Err(ApiError::invalid_batch(
            format!(
                "{} of {} user ids are invalid; nothing was rebuilt",
                problems.len(),
                body.users.len()
            ),
            problems,
        ));
    }
    let rebuilt = state.engine.rebuild_sessions(&users).await?;
    Ok(Json(Rebuilt { rebuilt }))
}

#[cfg(test)]
mod tests {
    use recd_core::EventType;

    use super::*;

    #[test]
    fn an_event_line_reads_back_as_the_same_event() {
        let full = Event {
            user_id: "u 1".into(),
            item_id: "sku-\"9\"".into(),
            kind: EventType::Dwell,
            value: Some(12.5),
            timestamp_ms: 1_700_000_000_123,
            recommendation_id: Some("r-1".into()),
        };
        let bare = Event {
            kind: EventType::AddToCart,
            value: None,
            recommendation_id: None,
            ..full.clone()
        };
        for e in [full, bare] {
            let bytes = ndjson(std::slice::from_ref(&e));
            let text = std::str::from_utf8(&bytes).expect("utf-8");
            assert_eq!(text.lines().count(), 1, "{text}");
            let v: Value = serde_json::from_str(text.trim_end()).expect("json");
            assert_eq!(Event::from_json(&v, 0, i64::MAX).expect("valid event"), e);
        }
    }
}
