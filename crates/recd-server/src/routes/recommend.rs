//! `POST /v1/recommend`.

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::extract::State;
use recd_core::pipeline::Diversity;
use recd_core::{FieldType, Filter, Schema};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::cache::{Compute, Entry, Origin, shape_hash};
use crate::error::{ApiError, AppJson};
use crate::recommend::{Answer, Request};
use crate::state::{AppState, now_ms};

/// The largest `count`.
pub const MAX_COUNT: u64 = 1000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecommendBody {
    user_id: String,
    count: Option<u64>,
    filter: Option<Value>,
    exclude: Option<Vec<String>>,
    query: Option<String>,
    diversity: Option<Diversity>,
    #[serde(default)]
    explain: bool,
    #[serde(default = "yes")]
    use_cache: bool,
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
        })
    }
}

/// The ranked items in the API's shape.
fn items_json(answer: &Answer) -> Value {
    Value::Array(
        answer
            .items
            .iter()
            .map(|r| json!({"id": r.item.id, "score": r.score, "reasons": r.reasons, "item": r.item.to_json(false)}))
            .collect(),
    )
}

/// The API's answer shape.
pub fn answer_json(user_id: Option<&str>, answer: &Answer, started: Instant) -> Value {
    let mut out = json!({
        "recommendation_id": uuid::Uuid::new_v4().to_string(),
        "items": items_json(answer),
        "source": answer.source.as_str(),
        "took_ms": started.elapsed().as_secs_f64() * 1000.0,
    });
    if let Some(user) = user_id {
        out["user_id"] = json!(user);
    }
    if let Some(stages) = &answer.stages {
        out["stages"] = stages.clone();
    }
    out
}

/// What the cache keeps of an answer: the items and how they were made.
fn cached_list(answer: &Answer) -> Value {
    json!({"items": items_json(answer), "source": answer.source.as_str()})
}

/// The answer shape for a list that went through the cache: `"source":"cache"` when it was
/// already there (with the tier and its age), its own source when this request made it.
fn answer_from_cache(
    user_id: &str,
    entry: &Entry<Value>,
    origin: Origin,
    started: Instant,
) -> Value {
    let list = &entry.value;
    let source = if origin.is_hit() {
        json!("cache")
    } else {
        list.get("source").cloned().unwrap_or(json!("personalized"))
    };
    let mut out = json!({
        "recommendation_id": uuid::Uuid::new_v4().to_string(),
        "user_id": user_id,
        "items": list.get("items").cloned().unwrap_or(json!([])),
        "source": source,
    });
    if origin.is_hit() {
        let tier = if origin == Origin::L1 { "l1" } else { "l2" };
        out["cache"] = json!({"tier": tier, "age_ms": (now_ms() - entry.created_ms).max(0)});
    }
    out["took_ms"] = json!(started.elapsed().as_secs_f64() * 1000.0);
    out
}

/// Everything about a request but the user, as the cache's key.
fn request_shape(req: &Request) -> u128 {
    let mut exclude: Vec<&str> = req.exclude.iter().map(String::as_str).collect();
    exclude.sort_unstable();
    exclude.dedup();
    let count = req.count.to_string();
    let filter = req.filter.canonical();
    let exclude = exclude.join("\t");
    let query = req.query.clone().unwrap_or_default();
    let diversity = req
        .diversity
        .as_ref()
        .map(|d| format!("{}:{}", d.field, d.max_per_value))
        .unwrap_or_default();
    shape_hash(&[&count, &filter, &exclude, &query, &diversity])
}

pub async fn recommend(
    State(state): State<AppState>,
    AppJson(body): AppJson<RecommendBody>,
) -> Result<Json<Value>, ApiError> {
    let started = Instant::now();
    let req = body.validate(state.store.schema())?;
    // `explain` wants this request's stages, so it always runs the pipeline.
    if !(req.use_cache && state.caches.enabled()) || req.explain {
        let answer = state.recommender.recommend(&req, now_ms()).await?;
        return Ok(Json(answer_json(Some(&req.user_id), &answer, started)));
    }
    let shape = request_shape(&req);
    let user_id = req.user_id.clone();
    let recommender = state.recommender.clone();
    let req = Arc::new(req);
    let compute: Compute = Arc::new(move || {
        let recommender = recommender.clone();
        let req = Arc::clone(&req);
        Box::pin(async move {
            let answer = recommender.recommend(&req, now_ms()).await?;
            Ok(cached_list(&answer))
        })
    });
    let (entry, origin) = state.caches.recommend(&user_id, shape, compute).await?;
    Ok(Json(answer_from_cache(&user_id, &entry, origin, started)))
}
