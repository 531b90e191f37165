//! The learned ranker in the serving path, through the router: a strategy naming it scores
//! with it, the online features follow each event before the next recommendation, explain
//! shows the contributions, and the bad requests around it are 4xx.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::http::{Method, Request, StatusCode, header};
use recd_core::Schema;
use recd_core::features::LinearRanker;
use recd_core::features::ranker::Input;
use recd_server::engine::models::ModelInfo;
use recd_server::features::RankerSettings;
use recd_server::{AppState, Config, router};
use recd_store::Store;
use recd_store::embedded::EmbeddedStore;
use serde_json::{Value, json};
use tower::ServiceExt;

async fn send(app: &Router, method: Method, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
    let mut request = Request::builder().method(method).uri(uri);
    if body.is_some() {
        request = request.header(header::CONTENT_TYPE, "application/json");
    }
    let request = request
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = to_bytes(response.into_body(), 1 << 20).await.unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn state(features: bool) -> AppState {
    let mut config = Config::default();
    config.features.enabled = features;
    state_with(config)
}

fn state_with(config: Config) -> AppState {
    let store: Arc<dyn Store> =
        Arc::new(EmbeddedStore::in_memory(Schema::demo(4), Default::default()).unwrap());
    AppState::new(store, config).unwrap()
}

/// A ranker over the default features that cares about the user's clicks on the item's
/// category (and a little about similarity).
async fn record_ranker(state: &AppState) -> String {
    let version = record_a_ranker(state, true).await;
    assert_eq!(state.engine.refresh_rankers().await.unwrap(), 1);
    version
}

/// Records [`record_ranker`]'s ranker as a new version, accepted or not.
async fn record_a_ranker(state: &AppState, accepted: bool) -> String {
    let engine = &state.engine;
    let set = engine.features().unwrap().set().clone();
    let names = LinearRanker::input_names(&set);
    let weights = names
        .iter()
        .map(|n| match n.as_str() {
            "user_tag_clicks_24h" => 3.0,
            "similarity" => 0.1,
            _ => 0.0,
        })
        .collect();
    let ranker = LinearRanker {
        inputs: names
            .iter()
            .map(|n| Input {
                name: n.clone(),
                log: false,
                mean: 0.0,
                scale: 1.0,
            })
            .collect(),
        weights,
        bias: -2.0,
    };
    let version = engine.new_model_version().await.unwrap();
    let settings = RankerSettings {
        kind: "ranker".into(),
        features: set.fingerprint().to_string(),
        ranker,
        fit: Value::Null,
    };
    let info = ModelInfo {
        created_at: "2026-12-03T00:00:00Z".into(),
        accepted,
        settings: serde_json::to_value(settings).unwrap(),
        gate: Value::Null,
        counts: Value::Null,
    };
    engine.record_model(&version, 0, info).await.unwrap();
    version
}

fn top(body: &Value) -> &str {
    body["items"][0]["id"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn a_learned_strategy_follows_the_users_clicks() {
    let state = state(true);
    let app = router(state.clone());
    let items = json!({"items": [
        {"id": "shoe1", "vector": [1, 0, 0, 0], "category": "shoes"},
        {"id": "shoe2", "vector": [0.9, 0.1, 0, 0], "category": "shoes"},
        {"id": "bag1", "vector": [0, 0, 1, 0], "category": "bags"},
        {"id": "bag2", "vector": [0.5, 0, 0.5, 0.1], "category": "bags"}]});
    assert_eq!(
        send(&app, Method::PUT, "/v1/items", Some(items)).await.0,
        StatusCode::OK
    );
    let version = record_ranker(&state).await;
    let (status, body) = send(
        &app,
        Method::PUT,
        "/v1/strategies/learned",
        Some(json!({"ranking": {"ranker": "latest"}})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let ask = json!({"user_id": "u", "count": 2, "strategy": "learned", "explain": true});
    let view = json!({"events": [{"user_id": "u", "item_id": "shoe1", "type": "view"}]});
    assert_eq!(
        send(&app, Method::POST, "/v1/events", Some(view)).await.0,
        StatusCode::OK
    );
    // Only a view of a shoe: shoes are most similar, and no category was clicked.
    let (status, body) = send(&app, Method::POST, "/v1/recommend", Some(ask.clone())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(top(&body), "shoe2", "{body}");
    assert_eq!(body["stages"]["score"]["scorer"], "learned");
    assert_eq!(body["stages"]["score"]["ranker"], version.as_str());

    // A click on a bag: the very next list puts the other bag first, and says why.
    let click = json!({"events": [{"user_id": "u", "item_id": "bag1", "type": "click"}]});
    assert_eq!(
        send(&app, Method::POST, "/v1/events", Some(click)).await.0,
        StatusCode::OK
    );
    let (_, body) = send(&app, Method::POST, "/v1/recommend", Some(ask.clone())).await;
    assert_eq!(top(&body), "bag2", "{body}");
    let why = &body["stages"]["score"]["contributions"]["bag2"][0];
    assert_eq!(why["feature"], "user_tag_clicks_24h", "{body}");
    assert_eq!(why["value"], 1.0);
    // The default strategy is the fixed blend.
    let blend = json!({"user_id": "u", "count": 2, "explain": true});
    let (_, body) = send(&app, Method::POST, "/v1/recommend", Some(blend)).await;
    assert_eq!(
        body["stages"]["score"],
        json!({"scorer": "blend"}),
        "{body}"
    );

    // A ranker version is not activated like vectors: a strategy names it.
    let (status, body) = send(
        &app,
        Method::POST,
        &format!("/v1/models/{version}/activate"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("ranker")
    );
    // Forgetting the user forgets their features too.
    assert_eq!(
        send(&app, Method::DELETE, "/v1/users/u", None).await.0,
        StatusCode::NO_CONTENT
    );
    let anon = json!({"user_id": "u", "count": 4, "strategy": "learned", "explain": true});
    let (_, body) = send(&app, Method::POST, "/v1/recommend", Some(anon)).await;
    let contributions = body["stages"]["score"]["contributions"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    for (id, c) in contributions {
        let tag = c
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["feature"] == "user_tag_clicks_24h");
        assert!(tag.is_none_or(|t| t["value"] == 0.0), "{id}: {c}");
    }
}

#[tokio::test]
async fn strategies_naming_a_ranker_are_checked() {
    let app = router(state(true));
    for (ranker, what) in [("best", "not a version"), ("v99", "no such ranker")] {
        let (status, body) = send(
            &app,
            Method::PUT,
            "/v1/strategies/s",
            Some(json!({"ranking": {"ranker": ranker}})),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {body}");
        assert_eq!(body["error"]["code"], "invalid_argument");
    }
    // Features off: no learned ranker can serve.
    let app = router(state(false));
    let (status, body) = send(
        &app,
        Method::PUT,
        "/v1/strategies/s",
        Some(json!({"ranking": {"ranker": "latest"}})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("features")
    );
}

#[tokio::test]
async fn retention_keeps_pinned_rankers_and_the_latest_accepted_one() {
    let mut config = Config::default();
    config.features.enabled = true;
    config.model.keep_versions = 2;
    let state = state_with(config);
    let app = router(state.clone());
    let items = json!({"items": [
        {"id": "shoe1", "vector": [1, 0, 0, 0], "category": "shoes"},
        {"id": "bag1", "vector": [0, 0, 1, 0], "category": "bags"}]});
    assert_eq!(
        send(&app, Method::PUT, "/v1/items", Some(items)).await.0,
        StatusCode::OK
    );
    let v1 = record_a_ranker(&state, true).await;
    state.engine.refresh_rankers().await.unwrap();
    let (status, body) = send(
        &app,
        Method::PUT,
        "/v1/strategies/pinned",
        Some(json!({"ranking": {"ranker": v1}})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Two more accepted (the last one is what "latest" serves), then two rejected: with
    // keep_versions 2 the plain oldest-first rule would delete v1 at v3 and v3 at v5.
    let mut recorded = vec![v1.clone()];
    for accepted in [true, true, false, false] {
        recorded.push(record_a_ranker(&state, accepted).await);
    }
    let (status, models) = send(&app, Method::GET, "/v1/models", None).await;
    assert_eq!(status, StatusCode::OK, "{models}");
    let kept: Vec<&str> = models["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["version"].as_str().unwrap())
        .collect();
    assert_eq!(
        kept,
        [&recorded[0], &recorded[2], &recorded[4]].map(String::as_str),
        "the pinned v1, the newest accepted v3 and the new v5: {models}"
    );
    state.engine.refresh_rankers().await.unwrap();
    let (status, body) = send(
        &app,
        Method::PUT,
        "/v1/strategies/newest",
        Some(json!({"ranking": {"ranker": "latest"}})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let view = json!({"events": [{"user_id": "u", "item_id": "shoe1", "type": "view"}]});
    assert_eq!(
        send(&app, Method::POST, "/v1/events", Some(view)).await.0,
        StatusCode::OK
    );
    for (strategy, version) in [("pinned", &recorded[0]), ("newest", &recorded[2])] {
        let ask = json!({"user_id": "u", "count": 2, "strategy": strategy, "explain": true});
        let (status, body) = send(&app, Method::POST, "/v1/recommend", Some(ask)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["stages"]["score"]["scorer"], "learned", "{body}");
        assert_eq!(
            body["stages"]["score"]["ranker"],
            version.as_str(),
            "{body}"
        );
    }
}
