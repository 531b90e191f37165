//! The HTTP edge through the router, without a socket (`tower::ServiceExt::oneshot` on
//! `recd_server::router` over an in-memory embedded store): the API.md error shape for
//! every failure (issue 9, finding 12), API keys and scopes, rate limits, the JSON-only
//! rule, CORS, load shedding, metric label bounds (finding 6) and filter size (finding 3).

use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Poll;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode, header};
use axum::response::Response;
use recd_core::Schema;
use recd_server::access::keys::hash_key;
use recd_server::access::{Access, Grant, KeyConfig, Rate};
use recd_server::config::Config;
use recd_server::routes::{Scope, table};
use recd_server::{AppState, router};
use recd_store::ModelSettings;
use recd_store::embedded::EmbeddedStore;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tower::ServiceExt;

const READER: &str = "key-reader";
const WRITER: &str = "key-writer";
const ADMIN: &str = "key-admin";

fn config() -> Config {
    Config {
        schema: Some(Schema::demo(4)),
        ..Config::default()
    }
}

fn with_keys(mut config: Config) -> Config {
    let key = |name: &str, secret: &str, scopes: &[Grant]| KeyConfig {
        name: name.into(),
        hash: hash_key(secret),
        scopes: scopes.iter().copied().collect(),
    };
    config.auth.keys = vec![
        key("reader", READER, &[Grant::Read]),
        key("writer", WRITER, &[Grant::Write]),
        key("admin", ADMIN, &[Grant::Admin]),
    ];
    config
}

fn state(config: Config) -> AppState {
    config.validate().expect("valid test config");
    let store = EmbeddedStore::in_memory(Schema::demo(4), ModelSettings::default())
        .expect("in-memory store");
    AppState::new(Arc::new(store), config).expect("state")
}

fn app(config: Config) -> Router {
    router(state(config))
}

fn request(method: Method, path: &str, key: Option<&str>, body: Option<Value>) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(path);
    if let Some(key) = key {
        b = b.header(header::AUTHORIZATION, format!("Bearer {key}"));
    }
    match body {
        Some(v) => b
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(v.to_string())),
        None => b.body(Body::empty()),
    }
    .expect("request")
}

async fn send(app: &Router, req: Request<Body>) -> Response {
    app.clone().oneshot(req).await.expect("infallible")
}

/// The status and the body, checked to be in the API.md error shape when not 2xx.
async fn call(app: &Router, req: Request<Body>) -> (StatusCode, Value) {
    let response = send(app, req).await;
    let status = response.status();
    let json_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if !status.is_success() {
        assert!(
            json_type,
            "{status}: not JSON: {:?}",
            String::from_utf8_lossy(&bytes)
        );
        assert_error_shape(&body, status);
    }
    (status, body)
}

fn assert_error_shape(body: &Value, status: StatusCode) {
    let codes = [
        "invalid_argument",
        "not_found",
        "unauthorized",
        "forbidden",
        "rate_limited",
        "unavailable",
        "internal",
    ];
    let code = body["error"]["code"].as_str().unwrap_or_default();
    assert!(codes.contains(&code), "{status}: {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{status}: {body}"
    );
}

fn recommend() -> Value {
    json!({"user_id": "u1", "count": 3})
}

#[tokio::test]
async fn framework_errors_are_in_the_error_shape() {
    let mut c = config();
    c.server.body_limit_bytes = 1024;
    c.server.max_header_bytes = 1024;
    let app = app(c);

    // 405 keeps its Allow header.
    let response = send(&app, request(Method::PATCH, "/v1/recommend", None, None)).await;
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert!(response.headers().contains_key(header::ALLOW));
    let (status, body) = call(&app, request(Method::PATCH, "/v1/recommend", None, None)).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::METHOD_NOT_ALLOWED, Some("invalid_argument"))
    );

    // A path that does not decode as UTF-8.
    let (status, body) = call(&app, request(Method::GET, "/v1/items/%FF%FE", None, None)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "invalid_argument");
    let (status, _) = call(&app, request(Method::DELETE, "/v1/users/%C0", None, None)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // A body over body_limit_bytes.
    let big = json!({"user_id": "u1", "query": "x".repeat(4096)});
    let (status, body) = call(
        &app,
        request(Method::POST, "/v1/recommend", None, Some(big)),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["error"]["code"], "invalid_argument");

    // Headers over max_header_bytes.
    let req = Request::builder()
        .uri("/v1/users/u1")
        .header("x-padding", "p".repeat(2048))
        .body(Body::empty())
        .unwrap();
    let (status, body) = call(&app, req).await;
    assert_eq!(
        status,
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "{body}"
    );

    // JSON that does not parse, and an unknown route.
    let req = Request::builder()
        .method(Method::POST)
        .uri("/v1/recommend")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{\"user_id\":"))
        .unwrap();
    assert_eq!(call(&app, req).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(
        call(&app, request(Method::GET, "/nope", None, None))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
}

/// A body that never arrives: the handler waits on it until the deadline.
fn endless_body(first_poll: Option<oneshot::Sender<()>>) -> Body {
    let mut first_poll = first_poll;
    Body::from_stream(futures_util::stream::poll_fn(
        move |_| -> Poll<Option<Result<Bytes, std::io::Error>>> {
            if let Some(tx) = first_poll.take() {
                let _ = tx.send(());
            }
            Poll::Pending
        },
    ))
}

fn endless_events(first_poll: Option<oneshot::Sender<()>>) -> Request<Body> {
    Request::builder()
        .method(Method::POST)
        .uri("/v1/events")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::TRANSFER_ENCODING, "chunked")
        .body(endless_body(first_poll))
        .unwrap()
}

#[tokio::test]
async fn the_request_deadline_is_a_503_in_the_error_shape() {
    let mut c = config();
    c.server.request_timeout_ms = 50;
    let app = app(c);
    let (status, body) = call(&app, endless_events(None)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "unavailable");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("request_timeout_ms"),
        "{body}"
    );
}

#[tokio::test]
async fn requests_beyond_max_in_flight_are_shed_with_a_503() {
    let mut c = config();
    c.server.max_in_flight = 1;
    let app = app(c);
    let (tx, rx) = oneshot::channel();
    let busy = tokio::spawn(app.clone().oneshot(endless_events(Some(tx))));
    // The first request holds the only permit once its handler reads the body.
    rx.await.expect("the first request reached its handler");
    let response = send(
        &app,
        request(Method::POST, "/v1/recommend", None, Some(recommend())),
    )
    .await;
    assert_eq!(
        response
            .headers()
            .get(header::RETRY_AFTER)
            .map(|v| v.as_bytes()),
        Some(&b"1"[..])
    );
    let (status, body) = call(
        &app,
        request(Method::POST, "/v1/recommend", None, Some(recommend())),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_in_flight"),
        "{body}"
    );
    // Public routes are never shed.
    assert_eq!(
        call(&app, request(Method::GET, "/health", None, None))
            .await
            .0,
        StatusCode::OK
    );
    busy.abort();
}

#[tokio::test]
async fn every_keyed_route_needs_a_key_with_its_own_scope() {
    let app = app(with_keys(config()));
    for route in table() {
        let path = route
            .path
            .replace("{id}", "x1")
            .replace("{version}", "v1")
            .replace("{name}", "n1");
        let body = matches!(route.method, Method::POST | Method::PUT).then(|| json!({}));
        let req = |key: Option<&str>| request(route.method.clone(), &path, key, body.clone());
        if route.scope == Scope::Public {
            let (status, body) = call(&app, req(None)).await;
            assert!(
                status.is_success(),
                "{} {path}: {status} {body}",
                route.method
            );
            continue;
        }
        let response = send(&app, req(None)).await;
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "{} {path}",
            route.method
        );
        let challenge = response
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .expect("WWW-Authenticate");
        assert!(challenge.to_str().unwrap().starts_with("Bearer"));
        let (status, body) = call(&app, req(Some("recd_not-a-key"))).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("unauthorized"))
        );
        let (own, others): (&str, [&str; 2]) = match route.scope {
            Scope::Read => (READER, [WRITER, ADMIN]),
            Scope::Write => (WRITER, [READER, ADMIN]),
            Scope::Admin | Scope::Public => (ADMIN, [READER, WRITER]),
        };
        for other in others {
            let (status, body) = call(&app, req(Some(other))).await;
            assert_eq!(
                (status, body["error"]["code"].as_str()),
                (StatusCode::FORBIDDEN, Some("forbidden")),
                "{} {path} with {other}",
                route.method
            );
        }
        let (status, body) = call(&app, req(Some(own))).await;
        assert!(
            !matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN),
            "{} {path} with its own scope: {status} {body}",
            route.method
        );
    }
}

#[tokio::test]
async fn keys_work_end_to_end_and_the_scheme_is_case_insensitive() {
    let app = app(with_keys(config()));
    let (status, body) = call(
        &app,
        request(
            Method::POST,
            "/v1/recommend",
            Some(READER),
            Some(recommend()),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let req = Request::builder()
        .method(Method::POST)
        .uri("/v1/events")
        .header(header::AUTHORIZATION, format!("bearer   {WRITER}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            json!({"events": [{"user_id": "u1", "item_id": "i1", "type": "view"}]}).to_string(),
        ))
        .unwrap();
    let (status, body) = call(&app, req).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = call(
        &app,
        request(Method::DELETE, "/v1/users/u1", Some(ADMIN), None),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    // Basic auth is not an API key.
    let req = Request::builder()
        .method(Method::GET)
        .uri("/v1/users/u1")
        .header(header::AUTHORIZATION, format!("Basic {READER}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(call(&app, req).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_reloaded_keys_file_takes_effect_and_a_broken_one_keeps_the_old_keys() {
    let dir = std::env::temp_dir().join(format!("recd-edge-keys-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("keys.toml");
    let write = |secret: &str| {
        std::fs::write(
            &file,
            format!(
                "[[keys]]\nname = \"app\"\nhash = \"{}\"\nscopes = [\"read\"]\n",
                hash_key(secret)
            ),
        )
        .unwrap();
    };
    write("first-key");
    let mut c = config();
    c.auth.keys_file = Some(file.clone());
    let access = Arc::new(Access::load(&c.auth, &c.limits).expect("keys file"));
    let app = router(state(c).with_access(access.clone()));
    let get = |key: &'static str| request(Method::GET, "/v1/users/nobody", Some(key), None);
    assert_eq!(call(&app, get("first-key")).await.0, StatusCode::NOT_FOUND);
    write("second-key");
    assert_eq!(access.reload().expect("reload"), 1);
    assert_eq!(
        call(&app, get("first-key")).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(call(&app, get("second-key")).await.0, StatusCode::NOT_FOUND);
    std::fs::write(&file, "[[keys]]\nname = ").unwrap();
    assert!(access.reload().is_err());
    assert_eq!(call(&app, get("second-key")).await.0, StatusCode::NOT_FOUND);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn auth_is_off_without_keys_but_a_keys_file_turns_it_on_even_when_empty() {
    let open = app(config());
    let (status, _) = call(
        &open,
        request(Method::POST, "/v1/recommend", None, Some(recommend())),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let dir = std::env::temp_dir().join(format!("recd-edge-empty-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("keys.json");
    std::fs::write(&file, r#"{"keys": []}"#).unwrap();
    let mut c = config();
    c.auth.keys_file = Some(file);
    let access = Arc::new(Access::load(&c.auth, &c.limits).expect("keys file"));
    let closed = router(state(c).with_access(access));
    let (status, _) = call(
        &closed,
        request(Method::POST, "/v1/recommend", None, Some(recommend())),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let _ = std::fs::remove_dir_all(&dir);
}

fn from(ip: [u8; 4], mut req: Request<Body>) -> Request<Body> {
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from((ip, 40000))));
    req
}

#[tokio::test]
async fn over_the_rate_limit_is_a_429_with_retry_after() {
    let mut c = with_keys(config());
    // One request per 1000 s: nothing is replenished while the test runs.
    c.limits.per_key = Rate {
        rps: 0.001,
        burst: 2,
    };
    c.limits.per_ip = Rate {
        rps: 0.001,
        burst: 3,
    };
    let app = app(c);
    let rec = |key: &str, ip: [u8; 4]| {
        from(
            ip,
            request(Method::POST, "/v1/recommend", Some(key), Some(recommend())),
        )
    };
    for _ in 0..2 {
        assert_eq!(
            call(&app, rec(READER, [10, 0, 0, 1])).await.0,
            StatusCode::OK
        );
    }
    let response = send(&app, rec(READER, [10, 0, 0, 2])).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = response.headers()[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=1000).contains(&retry), "{retry}");
    let (status, body) = call(&app, rec(READER, [10, 0, 0, 3])).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("rate_limited"))
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("per_key"),
        "{body}"
    );
    // Another key has its own budget; 10.0.0.1 has spent 2 of its 3.
    assert_eq!(
        call(&app, rec(ADMIN, [10, 0, 0, 1])).await.0,
        StatusCode::FORBIDDEN
    );
    // The address limit comes before the key check: even a bad key spends it.
    let (status, body) = call(&app, rec("recd_wrong", [10, 0, 0, 1])).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("per_ip"),
        "{body}"
    );
    // Public routes are not limited.
    let health = || from([10, 0, 0, 1], request(Method::GET, "/health", None, None));
    assert_eq!(call(&app, health()).await.0, StatusCode::OK);
}

#[tokio::test]
async fn bodies_must_be_json() {
    let app = app(config());
    let post = |content_type: Option<&str>, body: &'static str| {
        let mut b = Request::builder().method(Method::POST).uri("/v1/recommend");
        if let Some(ct) = content_type {
            b = b.header(header::CONTENT_TYPE, ct);
        }
        b.header(header::CONTENT_LENGTH, body.len())
            .body(Body::from(body))
            .unwrap()
    };
    let body = r#"{"user_id":"u1"}"#;
    for ct in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        None,
    ] {
        let (status, reply) = call(&app, post(ct, body)).await;
        assert_eq!(
            status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{ct:?}: {reply}"
        );
        assert_eq!(reply["error"]["code"], "invalid_argument");
        assert!(
            reply["error"]["message"]
                .as_str()
                .unwrap()
                .contains("application/json")
        );
    }
    let events = Request::builder()
        .method(Method::POST)
        .uri("/v1/events")
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from(
            json!({"events": [{"user_id": "u1", "item_id": "i1", "type": "purchase"}]}).to_string(),
        ))
        .unwrap();
    assert_eq!(
        call(&app, events).await.0,
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
    assert_eq!(
        call(&app, request(Method::GET, "/v1/users/u1", None, None))
            .await
            .0,
        StatusCode::NOT_FOUND,
        "the refused event was not applied"
    );
    assert_eq!(
        call(&app, post(Some("application/json; charset=utf-8"), body))
            .await
            .0,
        StatusCode::OK
    );
    // A POST without a body needs no content type.
    let invalidate = request(Method::POST, "/v1/items/i1/invalidate", None, None);
    assert_eq!(call(&app, invalidate).await.0, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn cors_is_off_by_default_and_follows_the_allow_list() {
    let preflight = |origin: &str| {
        Request::builder()
            .method(Method::OPTIONS)
            .uri("/v1/recommend")
            .header(header::ORIGIN, origin)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .header(
                header::ACCESS_CONTROL_REQUEST_HEADERS,
                "authorization,content-type",
            )
            .body(Body::empty())
            .unwrap()
    };
    let allow_origin = |r: &Response| {
        r.headers()
            .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
            .cloned()
    };
    let off = app(config());
    assert_eq!(
        allow_origin(&send(&off, preflight("https://shop.example")).await),
        None
    );
    let mut c = with_keys(config());
    c.server.cors_allow_origins = vec!["https://shop.example".into()];
    let on = app(c);
    let response = send(&on, preflight("https://shop.example")).await;
    assert!(response.status().is_success(), "{}", response.status());
    assert_eq!(allow_origin(&response).unwrap(), "https://shop.example");
    assert_eq!(
        allow_origin(&send(&on, preflight("https://evil.example")).await),
        None
    );
    // The real request still needs its key.
    let mut req = request(Method::POST, "/v1/recommend", None, Some(recommend()));
    req.headers_mut()
        .insert(header::ORIGIN, "https://shop.example".parse().unwrap());
    let response = send(&on, req).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(allow_origin(&response).unwrap(), "https://shop.example");
}

#[tokio::test]
async fn unknown_methods_and_paths_share_bounded_metric_labels() {
    recd_server::metrics::handle();
    let app = app(config());
    for i in 0..50 {
        let method = Method::from_bytes(format!("M{i}X").as_bytes()).unwrap();
        send(&app, request(method.clone(), "/v1/recommend", None, None)).await;
        send(&app, request(method, &format!("/random/{i}"), None, None)).await;
    }
    let response = send(&app, request(Method::GET, "/metrics", None, None)).await;
    let text = String::from_utf8(
        axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec(),
    )
    .unwrap();
    assert!(
        !text.contains("M1X") && !text.contains("/random/"),
        "unbounded labels in:\n{text}"
    );
    assert!(
        text.contains(
            r#"recd_http_requests_total{method="other",path="/v1/recommend",status="405"}"#
        ),
        "{text}"
    );
    assert!(
        text.contains(r#"recd_http_requests_total{method="other",path="unmatched",status="404"}"#),
        "{text}"
    );
    assert!(
        !text.contains("\nhttp_requests_total"),
        "the old metric name is gone"
    );
}

#[tokio::test]
async fn oversized_filters_are_refused_before_the_store() {
    let app = app(config());
    let leaf = json!({"brand": {"any": ["acme"]}});
    let wide = json!({"count": 5, "filter": {"or": vec![leaf; 20_000]}});
    let (status, body) = call(
        &app,
        request(Method::POST, "/v1/items/x1/similar", None, Some(wide)),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("MAX_BRANCHES"),
        "{body}"
    );
    let words: Vec<String> = (0..253).map(|i| format!("w{i}")).collect();
    let terms = json!({"user_id": "u1", "filter": {"title": {"match": words.join(" ")}}});
    let (status, body) = call(
        &app,
        request(Method::POST, "/v1/recommend", None, Some(terms)),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("MAX_TERMS"),
        "{body}"
    );
}
