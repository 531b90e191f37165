//! The 4xx paths at the router, without a process or a socket: each request goes through
//! `recd_server::router` with `tower::ServiceExt::oneshot` over an in-memory embedded store.
//! Every error must leave in the API.md shape `{"error":{"code","message"}}` with the
//! status of its code; the e2e suite covers the same paths over HTTP.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::http::{Method, Request, StatusCode, header};
use recd_core::Schema;
use recd_server::{AppState, Config, router};
use recd_store::Store;
use recd_store::embedded::EmbeddedStore;
use serde_json::{Value, json};
use tower::ServiceExt;

/// A router over an empty in-memory store with the demo schema (4 dimensions).
fn app() -> Router {
    let store = EmbeddedStore::in_memory(Schema::demo(4), Default::default())
        .expect("an in-memory store opens");
    let store: Arc<dyn Store> = Arc::new(store);
    router(AppState::new(store, Config::default()).expect("the default config is valid"))
}

/// Sends one request and returns the status and the body as JSON.
async fn send(app: &Router, method: Method, uri: &str, body: Option<&str>) -> (StatusCode, Value) {
    let mut request = Request::builder().method(method).uri(uri);
    if body.is_some() {
        request = request.header(header::CONTENT_TYPE, "application/json");
    }
    let request = request
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_owned())))
        .expect("a valid request");
    let response = app
        .clone()
        .oneshot(request)
        .await
        .expect("the router is infallible");
    let status = response.status();
    let bytes = to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("a readable body");
    let json = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "{uri}: body is not JSON ({e}): {}",
            String::from_utf8_lossy(&bytes)
        )
    });
    (status, json)
}

/// The API's error shape with this status and code, and a message that is not empty.
fn assert_error(status: StatusCode, body: &Value, want: StatusCode, code: &str, what: &str) {
    assert_eq!(status, want, "{what}: {body}");
    let error = body["error"]
        .as_object()
        .unwrap_or_else(|| panic!("{what}: no error object: {body}"));
    assert_eq!(error["code"], code, "{what}: {body}");
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: no message: {body}"
    );
    assert!(
        error
            .keys()
            .all(|k| ["code", "message", "details"].contains(&k.as_str())),
        "{what}: unexpected keys: {body}"
    );
}

fn assert_invalid(status: StatusCode, body: &Value, what: &str) {
    assert_error(
        status,
        body,
        StatusCode::BAD_REQUEST,
        "invalid_argument",
        what,
    );
}

fn assert_not_found(status: StatusCode, body: &Value, what: &str) {
    assert_error(status, body, StatusCode::NOT_FOUND, "not_found", what);
}

#[tokio::test]
async fn a_body_that_is_not_json_is_a_400() {
    let app = app();
    for raw in ["{", "not json", "", "{\"user_id\":\"u\"} trailing"] {
        let (status, body) = send(&app, Method::POST, "/v1/recommend", Some(raw)).await;
        assert_invalid(status, &body, raw);
    }
}

#[tokio::test]
async fn an_unknown_field_is_a_400_that_names_it() {
    let app = app();
    let (status, body) = send(
        &app,
        Method::POST,
        "/v1/recommend",
        Some(r#"{"user_id":"u","colour":"red"}"#),
    )
    .await;
    assert_invalid(status, &body, "unknown field");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("colour"), "{message}");
}

#[tokio::test]
async fn count_zero_is_a_400() {
    let app = app();
    let (status, body) = send(
        &app,
        Method::POST,
        "/v1/recommend",
        Some(r#"{"user_id":"u","count":0}"#),
    )
    .await;
    assert_invalid(status, &body, "count 0");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("count"), "{message}");
}

#[tokio::test]
async fn a_filter_on_a_field_the_schema_lacks_is_a_400() {
    let app = app();
    let (status, body) = send(
        &app,
        Method::POST,
        "/v1/recommend",
        Some(r#"{"user_id":"u","filter":{"colour":{"any":["red"]}}}"#),
    )
    .await;
    assert_invalid(status, &body, "bad filter field");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("colour"), "{message}");
}

#[tokio::test]
async fn an_unknown_item_is_a_404() {
    let app = app();
    let (status, body) = send(&app, Method::GET, "/v1/items/no-such-item", None).await;
    assert_not_found(status, &body, "unknown item");
}

#[tokio::test]
async fn an_unknown_endpoint_is_a_404_in_the_error_shape() {
    let app = app();
    for (method, uri) in [
        (Method::GET, "/v1/nothing"),
        (Method::POST, "/v2/recommend"),
    ] {
        let (status, body) = send(&app, method, uri, Some("{}")).await;
        assert_not_found(status, &body, uri);
    }
}

#[tokio::test]
async fn a_batch_with_one_bad_event_is_refused_whole() {
    let app = app();
    let batch = json!({"events": [
        {"user_id": "u-1", "item_id": "i-1", "type": "view"},
        {"user_id": "u-1", "item_id": "i-2", "type": "like"},
        {"user_id": "u-2", "item_id": "i-1", "type": "click"},
    ]});
    let (status, body) = send(&app, Method::POST, "/v1/events", Some(&batch.to_string())).await;
    assert_invalid(status, &body, "one bad event");
    let details = body["error"]["details"]
        .as_array()
        .unwrap_or_else(|| panic!("no details: {body}"));
    assert_eq!(details.len(), 1, "{body}");
    assert_eq!(details[0]["index"], 1, "{body}");
    assert!(
        details[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("like")),
        "{body}"
    );
    // nothing was applied: neither user exists
    for user in ["u-1", "u-2"] {
        let (status, body) = send(&app, Method::GET, &format!("/v1/users/{user}"), None).await;
        assert_not_found(status, &body, user);
    }
    // the same batch without the bad event is applied
    let good = json!({"events": [
        {"user_id": "u-1", "item_id": "i-1", "type": "view"},
    ]});
    let (status, body) = send(&app, Method::POST, "/v1/events", Some(&good.to_string())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = send(&app, Method::GET, "/v1/users/u-1", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// Model versions at the router: unknown versions are 404s, bad chunks 400s that write
/// nothing, and a version recorded through the admin endpoints is listed and can be
/// activated (writing its vectors), idempotently.
#[tokio::test]
async fn model_versions_refuse_bad_input_and_activate() {
    let app = app();
    let (status, body) = send(&app, Method::GET, "/v1/models", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["models"], json!([]));
    assert_eq!(body["live"], Value::Null);
    for path in ["/v1/models/v1/activate", "/v1/models/latest/activate"] {
        let (status, body) = send(&app, Method::POST, path, None).await;
        assert_error(status, &body, StatusCode::NOT_FOUND, "not_found", path);
    }
    let item = r#"{"items":[{"id":"a","vector":[1,0,0,0]},{"id":"b","vector":[0,1,0,0]}]}"#;
    let (status, body) = send(&app, Method::PUT, "/v1/items", Some(item)).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let (status, body) = send(&app, Method::POST, "/v1/admin/models", None).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let v = body["version"].as_str().expect("a version").to_string();
    let chunk = format!("/v1/admin/models/{v}/chunks/0");
    // a wrong dimension, a NaN-free but zero vector under cosine, an unknown field
    for bad in [
        r#"{"items":[{"id":"a","vector":[1,0]}]}"#,
        r#"{"items":[{"id":"a","vector":[0,0,0,0]}]}"#,
        r#"{"items":[],"extra":1}"#,
    ] {
        let (status, body) = send(&app, Method::PUT, &chunk, Some(bad)).await;
        assert_error(
            status,
            &body,
            StatusCode::BAD_REQUEST,
            "invalid_argument",
            bad,
        );
    }
    let (status, body) = send(
        &app,
        Method::PUT,
        &format!("/v1/admin/models/{v}/chunks/x"),
        Some("{}"),
    )
    .await;
    assert_error(
        status,
        &body,
        StatusCode::BAD_REQUEST,
        "invalid_argument",
        "chunk index",
    );
    // recording a chunk that was never stored is refused
    let info = r#"{"chunks":1,"info":{"created_at":"2026-01-01T00:00:00Z","accepted":true}}"#;
    let (status, body) = send(
        &app,
        Method::PUT,
        &format!("/v1/admin/models/{v}"),
        Some(info),
    )
    .await;
    assert_error(
        status,
        &body,
        StatusCode::NOT_FOUND,
        "not_found",
        "missing chunk",
    );

    let good = r#"{"items":[{"id":"a","vector":[0,0,1,0]},{"id":"gone","vector":[1,1,1,1]}],"users":[{"id":"u1","vector":[0,0,0,1]}]}"#;
    let (status, body) = send(&app, Method::PUT, &chunk, Some(good)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = send(
        &app,
        Method::PUT,
        &format!("/v1/admin/models/{v}"),
        Some(info),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "available");
    // a recorded version's vectors never change
    let (status, body) = send(&app, Method::PUT, &chunk, Some(good)).await;
    assert_error(
        status,
        &body,
        StatusCode::CONFLICT,
        "invalid_argument",
        "recorded",
    );
    let (status, body) = send(&app, Method::GET, &chunk, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["users"][0]["id"], "u1");

    let activate = format!("/v1/models/{v}/activate");
    let (status, body) = send(&app, Method::POST, &activate, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (
            body["items"].clone(),
            body["unknown_items"].clone(),
            body["users"].clone()
        ),
        (json!(1), json!(1), json!(1))
    );
    assert_eq!(body["already_live"], false);
    let (_, item) = send(&app, Method::GET, "/v1/items/a?include_vector=true", None).await;
    assert_eq!(item["vector"], json!([0.0, 0.0, 1.0, 0.0]), "{item}");
    let (status, body) = send(&app, Method::POST, &activate, None).await;
    assert_eq!(
        (status, body["already_live"].clone()),
        (StatusCode::OK, json!(true))
    );
    let (_, body) = send(&app, Method::GET, "/v1/models", None).await;
    assert_eq!(body["live"], v.as_str());
    assert_eq!(body["models"][0]["status"], "live");
}

/// `/openapi.json` describes exactly the routes the router serves (method and path), for
/// the schema of the data it serves.
#[tokio::test]
async fn the_served_document_lists_exactly_the_route_table() {
    let app = app();
    let (status, doc) = send(&app, Method::GET, "/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    let served: std::collections::BTreeSet<(String, String)> = recd_server::routes::table()
        .iter()
        .map(|r| (r.path.to_string(), r.method.as_str().to_lowercase()))
        .collect();
    let mut documented = std::collections::BTreeSet::new();
    for (path, ops) in doc["paths"].as_object().expect("paths") {
        for method in ops.as_object().expect("operations").keys() {
            documented.insert((path.clone(), method.clone()));
        }
    }
    assert_eq!(served, documented);
    // Items are described for the data's schema (the demo's fields, 4 dimensions).
    let item = &doc["components"]["schemas"]["Item"];
    assert_eq!(
        item["properties"]["vector"]["anyOf"][0]["maxItems"], 4,
        "{item}"
    );
    assert!(item["properties"]["category"].is_object(), "{item}");
    assert_eq!(item["additionalProperties"], false, "{item}");
}

/// JSON spells a whole number `2` or `2.0`, and OpenAPI's `integer` admits both (schemathesis
/// sends `6.0`): `count` takes either; a fraction is still a 400.
#[tokio::test]
async fn count_takes_a_whole_number_written_with_a_fraction_part() {
    let app = app();
    let (status, body) = send(
        &app,
        Method::POST,
        "/v1/recommend",
        Some(r#"{"user_id":"u","count":2.0}"#),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = send(
        &app,
        Method::POST,
        "/v1/recommend",
        Some(r#"{"user_id":"u","count":2.5}"#),
    )
    .await;
    assert_invalid(status, &body, "count 2.5");
}

/// Found by schemathesis (scripts/schemathesis.sh): a well-formed request that names
/// something absent is a 404, not a 400 (an unknown strategy, a cursor that names no
/// position of the log, a model chunk never stored), and one that the state forbids is a
/// 409 (a chunk of a recorded version).
#[tokio::test]
async fn absent_references_are_404_and_a_recorded_version_is_409() {
    let app = app();
    let (status, body) = send(
        &app,
        Method::POST,
        "/v1/recommend",
        Some(r#"{"user_id":"u","strategy":"no-such-strategy"}"#),
    )
    .await;
    assert_error(
        status,
        &body,
        StatusCode::NOT_FOUND,
        "not_found",
        "unknown strategy",
    );
    // "00" is the cursor of the position "\0", which no log has.
    let (status, body) = send(&app, Method::GET, "/v1/admin/events?cursor=00", None).await;
    assert_error(
        status,
        &body,
        StatusCode::NOT_FOUND,
        "not_found",
        "cursor of no position",
    );

    let (status, body) = send(&app, Method::POST, "/v1/admin/models", None).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let version = body["version"].as_str().expect("a version").to_string();
    let info = r#""info":{"created_at":"2026-01-01T00:00:00Z","accepted":true}"#;
    let record = format!("/v1/admin/models/{version}");
    let (status, body) = send(
        &app,
        Method::PUT,
        &record,
        Some(&format!(r#"{{"chunks":1,{info}}}"#)),
    )
    .await;
    assert_error(
        status,
        &body,
        StatusCode::NOT_FOUND,
        "not_found",
        "a chunk never stored",
    );
    let chunk = format!("/v1/admin/models/{version}/chunks/0");
    let rows = r#"{"items":[{"id":"a","vector":[1,0,0,0]}],"users":[]}"#;
    let (status, body) = send(&app, Method::PUT, &chunk, Some(rows)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // `chunks` is an OpenAPI integer: 1.0 is one.
    let (status, body) = send(
        &app,
        Method::PUT,
        &record,
        Some(&format!(r#"{{"chunks":1.0,{info}}}"#)),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = send(&app, Method::PUT, &chunk, Some(rows)).await;
    assert_error(
        status,
        &body,
        StatusCode::CONFLICT,
        "invalid_argument",
        "a recorded version's chunk",
    );
}

/// Counts are OpenAPI integers, which JSON may spell `2.0` (schemathesis does): a
/// strategy's ranking counts and a diversity cap take them like `count` does.
#[tokio::test]
async fn ranking_counts_and_diversity_caps_take_whole_numbers_with_a_fraction_part() {
    let app = app();
    let (status, body) = send(
        &app,
        Method::PUT,
        "/v1/strategies/s",
        Some(r#"{"ranking":{"candidates":20.0},"diversity":{"field":"category","max_per_value":2.0}}"#),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["ranking"]["candidates"], 20, "{body}");
    let (status, body) = send(
        &app,
        Method::POST,
        "/v1/recommend",
        Some(r#"{"user_id":"u","diversity":{"field":"category","max_per_value":2.0}}"#),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = send(
        &app,
        Method::POST,
        "/v1/recommend",
        Some(r#"{"user_id":"u","diversity":{"field":"category","max_per_value":2.5}}"#),
    )
    .await;
    assert_invalid(status, &body, "max_per_value 2.5");
}
