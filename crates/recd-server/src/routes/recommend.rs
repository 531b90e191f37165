//! `POST /v1/recommend`.

use axum::Json;
use axum::extract::State;
use futures_util::StreamExt;
use recd_core::pipeline::Diversity;
use recd_core::{FieldType, Filter, Schema};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::answer::Recommendation;
use crate::error::{ApiError, AppJson, ErrorBody};
use crate::openapi::Op;
use crate::openapi::shapes::FilterDoc;
use crate::recommend::Request;
use crate::state::AppState;

pub fn recommend_doc() -> Op {
    Op::new("Personalized, filtered recommendations")
        .describe("At most `count` items, no duplicates, every item passes the filter, never an excluded, deleted or purchased item; a user with no history gets popular items. Scores are non-increasing down the list.")
        .body::<RecommendBody>()
        .answer::<Recommendation>(200, "the list, best first")
        .error(404, "`strategy` names no strategy (not_found)")
}

pub fn batch_doc() -> Op {
    Op::new("Up to 1000 recommendation requests in one call (e-mails, precomputation), answered in order; a failing request gets its error object in its place")
        .body::<BatchBody>()
        .answer::<BatchAnswer>(200, "one result per request, in order")
}

/// The largest `count`.
pub const MAX_COUNT: u64 = 1000;

/// An optional whole number that JSON may spell `6` or `6.0` (both are an OpenAPI
/// `integer`); a fraction, a negative or anything else is refused like any bad field.
pub fn whole_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    use serde::de::Error;
    match Option::<serde_json::Number>::deserialize(d)? {
        None => Ok(None),
        Some(n) => match (n.as_u64(), n.as_f64()) {
            (Some(u), _) => Ok(Some(u)),
            (None, Some(f)) if f >= 0.0 && f.fract() == 0.0 && f < u64::MAX as f64 => {
                Ok(Some(f as u64))
            }
            _ => Err(D::Error::custom(format!(
                "invalid value {n}, expected a whole number"
            ))),
        },
    }
}

/// `POST /v1/recommend` (and each request of a batch).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = RecommendRequest)]
pub struct RecommendBody {
    /// Whom for.
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    user_id: String,
    /// How many items (default 10).
    #[serde(default, deserialize_with = "whole_number")]
    #[schema(minimum = 1, maximum = 1000)]
    count: Option<u64>,
    /// Only items passing it (applied inside retrieval).
    #[schema(value_type = Option<FilterDoc>)]
    filter: Option<Value>,
    /// Item ids never to show (at most 10000).
    #[schema(schema_with = crate::openapi::shapes::exclude_list)]
    exclude: Option<Vec<String>>,
    /// Free text, blended in as a text-search source (at most 4096 bytes).
    #[schema(max_length = 4096)]
    query: Option<String>,
    /// A per-value cap.
    #[serde(default, deserialize_with = "diversity")]
    #[schema(schema_with = crate::openapi::shapes::diversity_ref)]
    diversity: Option<Diversity>,
    /// Per-stage candidates and scores in `stages` (bypasses the cache).
    #[serde(default)]
    explain: bool,
    /// `false` computes the list afresh.
    #[serde(default = "yes")]
    #[schema(default = true)]
    use_cache: bool,
    /// A named strategy (outside experiments).
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    strategy: Option<String>,
}

/// `diversity`, whose `max_per_value` JSON may spell `6` or `6.0` (both an OpenAPI `integer`).
fn diversity<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Diversity>, D::Error> {
    use serde::de::Error;
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(v) => serde_json::from_value(crate::experiments::model::whole_counts(&v))
            .map(Some)
            .map_err(D::Error::custom),
    }
}

fn yes() -> bool {
    true
}

/// `count` defaults to 10 and must be 1–1000.
pub fn parse_count(count: Option<u64>) -> Result<usize, ApiError> {
    match count.unwrap_or(10) {
        n @ 1..=MAX_COUNT => Ok(n as usize),
        n => Err(ApiError::invalid(format!(
            "'count' must be between 1 and {MAX_COUNT}, got {n}"
        ))),
    }
}

/// Parses a filter against the schema.
pub fn parse_filter(v: &Value, schema: &Schema) -> Result<Filter, ApiError> {
    Filter::parse(v, schema).map_err(|e| ApiError::invalid(format!("filter: {}", e.message)))
}

impl RecommendBody {
    fn validate(self, schema: &Schema) -> Result<Request, ApiError> {
        recd_core::id::validate_id(&self.user_id, "user_id")?;
        let count = parse_count(self.count)?;
        if let Some(s) = &self.strategy {
            recd_core::id::validate_id(s, "strategy")?;
        }
        let filter = match &self.filter {
            Some(f) => parse_filter(f, schema)?,
            None => Filter::all(),
        };
        let exclude = self.exclude.unwrap_or_default();
        if exclude.len() > 10_000 {
            return Err(ApiError::invalid("'exclude' holds at most 10000 ids"));
        }
        for id in &exclude {
            recd_core::id::validate_id(id, "an 'exclude' id")?;
        }
        if let Some(d) = &self.diversity {
            match schema.field(&d.field) {
                Some(FieldType::Tag | FieldType::Bool) => {}
                Some(_) => {
                    return Err(ApiError::invalid(format!(
                        "diversity field '{}' must be a tag or bool field",
                        d.field
                    )));
                }
                None => {
                    return Err(ApiError::invalid(format!(
                        "diversity field '{}' is not in the schema",
                        d.field
                    )));
                }
            }
            if d.max_per_value == 0 {
                return Err(ApiError::invalid(
                    "'diversity.max_per_value' must be at least 1",
                ));
            }
        }
        if self.query.as_ref().is_some_and(|q| q.len() > 4096) {
            return Err(ApiError::invalid("'query' is longer than 4096 bytes"));
        }
        Ok(Request {
            user_id: self.user_id,
            count,
            filter,
            exclude,
            query: self.query,
            diversity: self.diversity,
            explain: self.explain,
            use_cache: self.use_cache,
            strategy: self.strategy,
        })
    }
}

/// The most requests in one batch.
pub const MAX_BATCH_REQUESTS: usize = 1000;

/// Requests of a batch computed at once (in order of the answers).
const BATCH_CONCURRENCY: usize = 8;

/// `POST /v1/recommend/batch`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchBody {
    /// The requests, each as `POST /v1/recommend` takes it (a `RecommendRequest`); each is
    /// checked on its own, and one that is not valid gets its error in its place.
    #[schema(value_type = Vec<serde_json::Value>, max_items = 1000)]
    requests: Vec<Value>,
}

/// One element of a batch answer: a recommendation, or the error that request got.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum BatchResult {
    /// The answer.
    Ok(Box<Recommendation>),
    /// `{"error":{...}}`.
    #[schema(value_type = ErrorBody)]
    Err(Value),
}

/// `POST /v1/recommend/batch`'s answer.
#[derive(Serialize, ToSchema)]
pub struct BatchAnswer {
    /// One per request, in order.
    results: Vec<BatchResult>,
}

/// `POST /v1/recommend/batch`: up to 1000 requests, answered in order; a request that fails
/// gets its error in its place and the others are still answered.
pub async fn batch(
    State(state): State<AppState>,
    AppJson(body): AppJson<BatchBody>,
) -> Result<Json<BatchAnswer>, ApiError> {
    if body.requests.len() > MAX_BATCH_REQUESTS {
        return Err(ApiError::invalid(format!(
            "a batch holds at most {MAX_BATCH_REQUESTS} requests, got {}",
            body.requests.len()
        )));
    }
    let engine = &state.engine;
    let results = futures_util::stream::iter(body.requests)
        .map(|v| async move {
            let parsed: Result<RecommendBody, _> = serde_json::from_value(v);
            let answered = match parsed {
                Ok(b) => match b.validate(engine.schema()) {
                    Ok(req) => engine.recommend(req).await.map_err(ApiError::from),
                    Err(e) => Err(e),
                },
                Err(e) => Err(ApiError::invalid(format!("invalid request: {e}"))),
            };
            match answered {
                Ok(r) => BatchResult::Ok(Box::new(r)),
                Err(e) => BatchResult::Err(e.body()),
            }
        })
        .buffered(BATCH_CONCURRENCY)
        .collect()
        .await;
    Ok(Json(BatchAnswer { results }))
}

pub async fn recommend(
    State(state): State<AppState>,
    AppJson(body): AppJson<RecommendBody>,
) -> Result<Json<Recommendation>, ApiError> {
    let req = body.validate(state.engine.schema())?;
    Ok(Json(state.engine.recommend(req).await?))
}

/// Decodes a `POST /v1/recommend` body into the engine's request as the route does (JSON,
/// then the checks of `RecommendBody::validate`): the entry of the fuzz target and the
/// property test that no input makes it panic.
pub fn decode_body(body: &[u8], schema: &Schema) -> Result<Request, ApiError> {
    let body: RecommendBody = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid(format!("invalid JSON body: {e}")))?;
    body.validate(schema)
}
