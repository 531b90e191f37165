//! The HTTP surface of API.md: one module per resource, and [`table`], the one list of
//! routes that [`router`] serves and the OpenAPI document is checked against.
//!
//! Handlers only parse the request, call one [`crate::engine::Engine`] method, and return
//! its typed answer; none touches a cache or the store.

mod admin;
mod events;
mod experiments;
mod health;
mod items;
mod models;
mod monitoring;
mod page;
mod recommend;
mod users;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::Method;
use axum::middleware;
use axum::routing::{MethodRouter, delete, get, post, put};
use recd_core::id::validate_id;
use tokio::sync::Semaphore;

use crate::access::Gate;
pub use crate::access::Scope;
use crate::error::ApiError;
use crate::openapi::Op;
use crate::state::AppState;
pub use recommend::decode_body as decode_recommend_body;

/// One route: method, path template, who may call it, and its handler.
pub struct Route {
    /// The HTTP method.
    pub method: Method,
    /// The path template (`{id}` for path parameters).
    pub path: &'static str,
    /// Who may call it.
    pub scope: Scope,
    handler: MethodRouter<AppState>,
    /// What the OpenAPI document says of it (`crate::openapi`).
    pub doc: fn() -> Op,
}

fn route(
    method: Method,
    path: &'static str,
    scope: Scope,
    handler: MethodRouter<AppState>,
    doc: fn() -> Op,
) -> Route {
    Route {
        method,
        path,
        scope,
        handler,
        doc,
    }
}

/// Every route of the service.
pub fn table() -> Vec<Route> {
    use Scope::{Admin, Public, Read, Write};
    vec![
        route(
            Method::GET,
            "/health",
            Public,
            get(health::health),
            health::health_doc,
        ),
        route(
            Method::GET,
            "/ready",
            Public,
            get(health::ready),
            health::ready_doc,
        ),
        route(
            Method::GET,
            "/metrics",
            Public,
            get(health::metrics),
            health::metrics_doc,
        ),
        route(
            Method::GET,
            "/openapi.json",
            Public,
            get(health::openapi),
            health::openapi_doc,
        ),
        route(
            Method::PUT,
            "/v1/items",
            Write,
            put(items::upsert),
            items::upsert_doc,
        ),
        route(
            Method::GET,
            "/v1/items",
            Read,
            get(items::list),
            items::list_doc,
        ),
        route(
            Method::GET,
            "/v1/items/{id}",
            Read,
            get(items::get),
            items::get_doc,
        ),
        route(
            Method::DELETE,
            "/v1/items/{id}",
            Admin,
            delete(items::delete),
            items::delete_doc,
        ),
        route(
            Method::POST,
            "/v1/items/{id}/similar",
            Read,
            post(items::similar),
            items::similar_doc,
        ),
        route(
            Method::POST,
            "/v1/items/{id}/invalidate",
            Write,
            post(items::invalidate),
            items::invalidate_doc,
        ),
        route(
            Method::POST,
            "/v1/recommend",
            Read,
            post(recommend::recommend),
            recommend::recommend_doc,
        ),
        route(
            Method::POST,
            "/v1/recommend/batch",
            Read,
            post(recommend::batch),
            recommend::batch_doc,
        ),
        route(
            Method::POST,
            "/v1/events",
            Write,
            post(events::ingest),
            events::ingest_doc,
        ),
        route(
            Method::GET,
            "/v1/users",
            Read,
            get(users::list),
            users::list_doc,
        ),
        route(
            Method::GET,
            "/v1/users/{id}",
            Read,
            get(users::get),
            users::get_doc,
        ),
        route(
            Method::DELETE,
            "/v1/users/{id}",
            Admin,
            delete(users::delete),
            users::delete_doc,
        ),
        // What filters and items may name: the console's filters need it with a read key.
        route(
            Method::GET,
            "/v1/schema",
            Read,
            get(admin::schema),
            admin::schema_doc,
        ),
        route(
            Method::GET,
            "/v1/admin/schema",
            Admin,
            get(admin::schema),
            admin::schema_doc,
        ),
        route(
            Method::GET,
            "/v1/admin/events",
            Admin,
            get(admin::events),
            admin::events_doc,
        ),
        route(
            Method::PUT,
            "/v1/admin/vectors",
            Admin,
            put(admin::put_vectors),
            admin::put_vectors_doc,
        ),
        route(
            Method::POST,
            "/v1/admin/sessions/rebuild",
            Admin,
            post(admin::rebuild_sessions),
            admin::rebuild_sessions_doc,
        ),
        route(
            Method::GET,
            "/v1/strategies",
            Admin,
            get(experiments::list_strategies),
            experiments::list_strategies_doc,
        ),
        route(
            Method::PUT,
            "/v1/strategies/{name}",
            Admin,
            put(experiments::put_strategy),
            experiments::put_strategy_doc,
        ),
        route(
            Method::GET,
            "/v1/experiments",
            Admin,
            get(experiments::list),
            experiments::list_doc,
        ),
        route(
            Method::POST,
            "/v1/experiments",
            Admin,
            post(experiments::create),
            experiments::create_doc,
        ),
        route(
            Method::GET,
            "/v1/experiments/{id}",
            Admin,
            get(experiments::results),
            experiments::results_doc,
        ),
        route(
            Method::POST,
            "/v1/experiments/{id}/stop",
            Admin,
            post(experiments::stop),
            experiments::stop_doc,
        ),
        route(
            Method::GET,
            "/v1/models",
            Admin,
            get(models::list),
            models::list_doc,
        ),
        route(
            Method::POST,
            "/v1/models/{version}/activate",
            Admin,
            post(models::activate),
            models::activate_doc,
        ),
        route(
            Method::POST,
            "/v1/admin/models",
            Admin,
            post(models::create),
            models::create_doc,
        ),
        route(
            Method::PUT,
            "/v1/admin/models/{version}",
            Admin,
            put(models::record),
            models::record_doc,
        ),
        route(
            Method::GET,
            "/v1/admin/models/{version}/chunks/{index}",
            Admin,
            get(models::get_chunk),
            models::get_chunk_doc,
        ),
        route(
            Method::PUT,
            "/v1/admin/models/{version}/chunks/{index}",
            Admin,
            put(models::put_chunk),
            models::put_chunk_doc,
        ),
        route(
            Method::PUT,
            "/v1/admin/models/{version}/transitions",
            Admin,
            put(models::put_transitions),
            models::put_transitions_doc,
        ),
        route(
            Method::POST,
            "/v1/admin/models/{version}/live",
            Admin,
            post(models::mark_live),
            models::mark_live_doc,
        ),
        route(
            Method::GET,
            "/v1/monitoring/drift",
            Admin,
            get(monitoring::drift),
            monitoring::drift_doc,
        ),
        route(
            Method::POST,
            "/v1/monitoring/drift/reset",
            Admin,
            post(monitoring::reset),
            monitoring::reset_doc,
        ),
    ]
}

/// Every route of the service, each behind its scope's [`gate`](crate::access::gate),
/// with the limits of `[server]` and metrics. Layers, outermost first: error shape, CORS,
/// metrics, header size, deadline, body size.
pub fn router(state: AppState) -> Router {
    let limits = &state.config().server;
    let body_limit = limits.body_limit_bytes;
    let timeout = Duration::from_millis(limits.request_timeout_ms);
    let cors = crate::edge::cors(&limits.cors_allow_origins);
    let in_flight = Arc::new(Semaphore::new(limits.max_in_flight));
    let mut router = Router::new();
    for r in table() {
        let gate = Gate {
            scope: r.scope,
            access: state.access.clone(),
            in_flight: in_flight.clone(),
        };
        let handler = r
            .handler
            .route_layer(middleware::from_fn_with_state(gate, crate::access::gate));
        router = router.route(r.path, handler);
    }
    if state.config().server.console {
        // Not API routes: outside the table (and the OpenAPI document) and the gate.
        router = router.merge(crate::console::router());
    }
    router
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn_with_state(
            timeout,
            crate::edge::deadline,
        ))
        .layer(middleware::from_fn_with_state(
            limits.max_header_bytes,
            crate::edge::header_limit,
        ))
        .layer(middleware::from_fn(crate::metrics::track))
        .layer(tower::util::option_layer(cors))
        .layer(middleware::from_fn(crate::edge::error_shape))
        .layer(crate::trace::layer())
        .layer(middleware::from_fn(crate::trace::request_id))
        .with_state(state)
}

/// Checks an id taken from the path.
fn path_id(id: &str, what: &str) -> Result<(), ApiError> {
    validate_id(id, what).map_err(ApiError::from)
}
