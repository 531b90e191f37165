//! The OpenAPI 3 document served at `/openapi.json`.
//!
//! Written by hand rather than derived: requests are validated from raw JSON against the
//! runtime schema (so that every bad input gets our own message), which derive macros
//! cannot describe. A test checks that every route of the router is documented here.
//!
//! What every operation shares is added by [`annotate`] from the route table, so that a
//! route added later gets it too: the bearer key and its scope (`x-recd-scope`), and the
//! error answers of the edge: 400 for a bad path id or body, 401/403/429 where a key is
//! needed, 413/415 where a body is taken, 431 and 503 everywhere.

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::routes::{Scope, table};

fn error_ref() -> Value {
    json!({"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

fn body(schema: Value) -> Value {
    json!({"required": true, "content": {"application/json": {"schema": schema}}})
}

fn ok(schema: Value) -> Value {
    json!({"description": "ok", "content": {"application/json": {"schema": schema}}})
}

fn id_param() -> Value {
    json!([{"name": "id", "in": "path", "required": true, "schema": {"type": "string", "minLength": 1, "maxLength": 256}}])
}

fn version_param() -> Value {
    json!([{"name": "version", "in": "path", "required": true, "schema": {"type": "string", "pattern": "^v[1-9][0-9]*$"}}])
}

fn chunk_params() -> Value {
    json!([{"name": "version", "in": "path", "required": true, "schema": {"type": "string", "pattern": "^v[1-9][0-9]*$"}},
           {"name": "index", "in": "path", "required": true, "schema": {"type": "integer", "minimum": 0}}])
}

/// `limit` and `cursor` (and, for items, `filter`) of a listing.
fn page_params(filter: bool) -> Value {
    let mut params = vec![
        json!({"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}}),
        json!({"name": "cursor", "in": "query", "schema": {"type": "string"},
            "description": "next_cursor of the previous page (opaque)"}),
    ];
    if filter {
        params.push(
            json!({"name": "filter", "in": "query", "schema": {"type": "string"},
            "description": "A Filter as JSON (URL-encoded), as in POST /v1/recommend"}),
        );
    }
    Value::Array(params)
}

/// Said of every `/v1/admin` endpoint.
const ADMIN_NOTE: &str = "Needs a key with the admin scope.";

/// The whole document.
pub fn document() -> Value {
    let mut doc = paths_and_schemas();
    annotate(&mut doc);
    doc
}

/// Why each shared error answer may come.
const SHARED: &[(&str, &str)] = &[
    (
        "400",
        "a malformed path id, query or body (invalid_argument)",
    ),
    (
        "401",
        "no API key, or not a valid one (unauthorized; WWW-Authenticate: Bearer)",
    ),
    ("403", "the key lacks this endpoint's scope (forbidden)"),
    (
        "413",
        "the body is over [server] body_limit_bytes (invalid_argument)",
    ),
    (
        "415",
        "a body that is not application/json (invalid_argument)",
    ),
    (
        "429",
        "over a rate limit per key or per client address (rate_limited; Retry-After: seconds)",
    ),
    (
        "431",
        "the headers are over [server] max_header_bytes (invalid_argument)",
    ),
    (
        "503",
        "unavailable: the backend cannot be reached, too many requests are in flight, or the request deadline passed",
    ),
];

fn scope_name(scope: Scope) -> &'static str {
    match scope {
        Scope::Public => "public",
        Scope::Read => "read",
        Scope::Write => "write",
        Scope::Admin => "admin",
    }
}

/// Adds to each operation its security and the error answers of the edge (see the module
/// documentation), leaving answers an operation documents itself as they are.
fn annotate(doc: &mut Value) {
    let scopes: HashMap<(String, String), Scope> = table()
        .iter()
        .map(|r| {
            (
                (r.path.to_string(), r.method.as_str().to_lowercase()),
                r.scope,
            )
        })
        .collect();
    let Some(paths) = doc["paths"].as_object_mut() else {
        return;
    };
    for (path, ops) in paths.iter_mut() {
        let Some(ops) = ops.as_object_mut() else {
            continue;
        };
        for (method, op) in ops.iter_mut() {
            // A documented operation missing from the table is caught by the test below;
            // until then treat it as needing the strongest scope.
            let scope = scopes
                .get(&(path.clone(), method.clone()))
                .copied()
                .unwrap_or(Scope::Admin);
            let has_body = op.get("requestBody").is_some();
            let has_params = op.get("parameters").is_some() || path.contains('{');
            let mut codes = vec!["431", "503"];
            if has_body || has_params {
                codes.push("400");
            }
            if scope != Scope::Public {
                codes.extend(["401", "403", "429"]);
            }
            if has_body {
                codes.extend(["413", "415"]);
            }
            if scope == Scope::Public {
                op["security"] = json!([]);
            } else {
                op["security"] = json!([{"bearer": []}]);
                op["x-recd-scope"] = json!(scope_name(scope));
            }
            let Some(responses) = op["responses"].as_object_mut() else {
                continue;
            };
            for code in codes {
                if responses.contains_key(code) {
                    continue;
                }
                let why = SHARED
                    .iter()
                    .find(|(c, _)| *c == code)
                    .map_or("error", |(_, why)| why);
                let mut response = error_ref();
                response["description"] = json!(why);
                if code == "401" {
                    response["headers"] =
                        json!({"WWW-Authenticate": {"schema": {"type": "string"}}});
                }
                if code == "429" || code == "503" {
                    response["headers"] = json!({"Retry-After": {"schema": {"type": "integer", "minimum": 1},
                        "description": "seconds to wait"}});
                }
                responses.insert(code.to_string(), response);
            }
        }
    }
}

fn paths_and_schemas() -> Value {
    let e = error_ref();
    json!({
        "openapi": "3.0.3",
        "info": {"title": "recd", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Real-time recommendation engine: filtered vector retrieval, real-time events, ranking. \
                    Every error answer is {\"error\":{\"code\",\"message\",\"details\"}}; 405, 413, 415 and 431 use the code \
                    invalid_argument. Each operation's x-recd-scope names the key scope it needs (a key has exactly the scopes \
                    it lists); /health, /ready, /metrics and /openapi.json need none, nor does anything when the server runs \
                    without keys (on loopback, or with --insecure)."},
        "security": [{"bearer": []}],
        "paths": {
            "/health": {"get": {"summary": "Liveness and sizes", "responses": {"200": ok(json!({"$ref": "#/components/schemas/Health"}))}}},
            "/ready": {"get": {"summary": "200 when the backend is reachable", "responses": {"200": ok(json!({"type": "object"})), "503": e}}},
            "/metrics": {"get": {"summary": "Prometheus text exposition", "responses": {"200": {"description": "metrics", "content": {"text/plain": {}}}}}},
            "/openapi.json": {"get": {"summary": "This document", "responses": {"200": ok(json!({"type": "object"}))}}},
            "/v1/items": {"get": {"summary": "The items in id order (byte order), a page at a time, optionally filtered",
                "description": "Items without vectors (and without a catalog source's details; GET /v1/items/{id} has those). \
                    Pass next_cursor back as cursor for the next page; it is null after the last page. Paging is stable: an item that \
                    exists for the whole walk is returned exactly once, whatever is written meanwhile. A cursor this server did not \
                    give out, a limit outside 1-1000 or a bad filter is a 400.",
                "parameters": page_params(true),
                "responses": {"200": ok(json!({"type": "object", "required": ["items", "next_cursor"], "properties": {
                    "items": {"type": "array", "items": {"$ref": "#/components/schemas/Item"}},
                    "next_cursor": {"type": "string", "nullable": true}}})), "400": e}},
                "put": {"summary": "Upsert a batch of items, all or nothing",
                "requestBody": body(json!({"type": "object", "required": ["items"], "properties": {"items": {"type": "array", "items": {"$ref": "#/components/schemas/Item"}}}})),
                "responses": {"200": ok(json!({"type": "object", "properties": {"upserted": {"type": "integer"}}})), "400": e}}},
            "/v1/items/{id}": {
                "get": {"summary": "One item (with its catalog source row under `details` when a source is configured), through the item cache", "parameters": [id_param()[0].clone(),
                    {"name": "include_vector", "in": "query", "schema": {"type": "boolean"}},
                    {"name": "use_cache", "in": "query", "schema": {"type": "boolean", "default": true}}],
                    "responses": {"200": ok(json!({"$ref": "#/components/schemas/Item"})), "404": e}},
                "delete": {"summary": "Delete an item; it is never recommended again", "parameters": id_param(),
                    "responses": {"204": {"description": "deleted"}, "404": e}}},
            "/v1/items/{id}/invalidate": {"post": {"summary": "The item's details changed at their source: drop them from every cache tier", "parameters": id_param(),
                "responses": {"204": {"description": "dropped"}, "400": e}}},
            "/v1/items/{id}/similar": {"post": {"summary": "Items similar to this one", "parameters": id_param(),
                "requestBody": body(json!({"type": "object", "properties": {"count": {"type": "integer", "minimum": 1, "maximum": 1000}, "filter": {"$ref": "#/components/schemas/Filter"}}})),
                "responses": {"200": ok(json!({"$ref": "#/components/schemas/Recommendation"})), "400": e, "404": e}}},
            "/v1/recommend": {"post": {"summary": "Personalized, filtered recommendations",
                "requestBody": body(json!({"$ref": "#/components/schemas/RecommendRequest"})),
                "responses": {"200": ok(json!({"$ref": "#/components/schemas/Recommendation"})), "400": e, "503": e}}},
            "/v1/recommend/batch": {"post": {"summary": "Up to 1000 recommendation requests in one call (e-mails, precomputation), answered in order; a failing request gets its error object in its place",
                "requestBody": body(json!({"type": "object", "required": ["requests"], "properties": {"requests": {"type": "array", "maxItems": 1000, "items": {"$ref": "#/components/schemas/RecommendRequest"}}}})),
                "responses": {"200": ok(json!({"type": "object", "properties": {"results": {"type": "array", "items": {"oneOf": [{"$ref": "#/components/schemas/Recommendation"}, {"$ref": "#/components/schemas/Error"}]}}}})), "400": e}}},
            "/v1/events": {"post": {"summary": "Ingest events; applied before the answer (read-your-writes)",
                "requestBody": body(json!({"type": "object", "required": ["events"], "properties": {"events": {"type": "array", "items": {"$ref": "#/components/schemas/Event"}}}})),
                "responses": {"200": ok(json!({"type": "object", "properties": {"accepted": {"type": "integer"}}})), "400": e}}},
            "/v1/users": {"get": {"summary": "The ids of the users with state, in id order (byte order), a page at a time",
                "description": "Pass next_cursor back as cursor for the next page; it is null after the last page. Stable under \
                    concurrent writes, like GET /v1/items.",
                "parameters": page_params(false),
                "responses": {"200": ok(json!({"type": "object", "required": ["users", "next_cursor"], "properties": {
                    "users": {"type": "array", "items": {"type": "string"}},
                    "next_cursor": {"type": "string", "nullable": true}}})), "400": e}}},
            "/v1/users/{id}": {
                "get": {"summary": "What the engine knows about a user", "parameters": id_param(),
                    "responses": {"200": ok(json!({"$ref": "#/components/schemas/User"})), "404": e}},
                "delete": {"summary": "Forget every piece of state about a user", "parameters": id_param(),
                    "responses": {"204": {"description": "forgotten"}}}},
            "/v1/schema": {"get": {"summary": "The store's schema (vector dimension and metric, fields): what filters and items may name",
                "description": "The same document as `/v1/admin/schema`, for any key with the `read` scope (the web console builds its filters from it).",
                "responses": {"200": ok(json!({"type": "object", "properties": {"vector": {"type": "object", "properties": {"dim": {"type": "integer"}, "metric": {"type": "string", "enum": ["cosine", "ip", "l2"]}}}, "fields": {"type": "object", "additionalProperties": {"type": "string", "enum": ["tag", "numeric", "bool", "text"]}}}}))}}},
            "/v1/admin/schema": {"get": {"summary": "The store's schema (vector dimension and metric, fields)",
                "description": ADMIN_NOTE,
                "responses": {"200": ok(json!({"type": "object", "properties": {"vector": {"type": "object", "properties": {"dim": {"type": "integer"}, "metric": {"type": "string", "enum": ["cosine", "ip", "l2"]}}}, "fields": {"type": "object"}}}))}}},
            "/v1/admin/events": {"get": {"summary": "The event log as NDJSON, in the order the events were applied (for training)",
                "description": format!("One Event per line, `timestamp` in epoch milliseconds; streamed from the store a page \
                    at a time as the client reads (memory per reader is one page). `offset` skips that many events (users forgotten \
                    in between shift it back); `cursor` starts after a position this endpoint gave out in `x-recd-next-cursor` \
                    (exact whatever is forgotten). With `limit` (1-10000) at most that many events are returned and, when more \
                    follow, `x-recd-next-cursor` holds the cursor of the rest; without it the body runs to the end of the log. \
                    The `x-recd-log-length` header gives the log's length when it was read. {ADMIN_NOTE}"),
                "parameters": [{"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0, "default": 0}},
                    {"name": "cursor", "in": "query", "schema": {"type": "string"}},
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 10000}}],
                "responses": {"200": {"description": "NDJSON, one Event per line",
                    "headers": {"x-recd-log-length": {"schema": {"type": "integer"}},
                        "x-recd-next-cursor": {"schema": {"type": "string"}, "description": "with limit, when more events follow"}},
                    "content": {"application/x-ndjson": {"schema": {"$ref": "#/components/schemas/Event"}}}}, "400": e, "503": e}}},
            "/v1/admin/vectors": {"put": {"summary": "Write trained item vectors and users' long-term vectors (training write-back)",
                "description": format!("Every entry is checked first (id, the schema's dimension, finite, non-zero under cosine, \
                    each id once per list, at most server.max_batch entries in all); any problem is a 400 listing each bad entry \
                    as {{list,index,id,message}} and nothing is written. Item ids the catalog lacks are skipped and counted in \
                    unknown_items; a user without state gets state holding just the vector. Items are written before users; \
                    the same body twice gives the same state (safe to retry). {ADMIN_NOTE}"),
                "requestBody": body(json!({"type": "object", "properties": {
                    "items": {"type": "array", "items": {"$ref": "#/components/schemas/IdVector"}},
                    "users": {"type": "array", "items": {"$ref": "#/components/schemas/IdVector"}}}})),
                "responses": {"200": ok(json!({"type": "object", "properties": {"items": {"type": "integer"}, "users": {"type": "integer"}, "unknown_items": {"type": "integer"}}})),
                    "400": e, "503": e}}},
            "/v1/admin/sessions/rebuild": {"post": {"summary": "Recompute users' session vectors with the current item vectors",
                "description": format!("Each listed user's session vector is recomputed from their logged events with the \
                    current item vectors, atomically against concurrent events; call it after new item vectors are written. \
                    Users without state are skipped. Idempotent. The last step of a write-back: it also drops every \
                    cached recommendation list (PUT /v1/admin/vectors leaves them to this step, or to their TTL). {ADMIN_NOTE}"),
                "requestBody": body(json!({"type": "object", "required": ["users"], "properties": {"users": {"type": "array", "items": {"type": "string"}}}})),
                "responses": {"200": ok(json!({"type": "object", "properties": {"rebuilt": {"type": "integer"}}})), "400": e, "503": e}}},
            "/v1/strategies": {"get": {"summary": "Every ranking strategy, `default` (the configured [ranking]) included",
                "responses": {"200": ok(json!({"type": "object", "properties": {"strategies": {"type": "object", "additionalProperties": {"$ref": "#/components/schemas/Strategy"}}}}))}}},
            "/v1/strategies/{name}": {"put": {"summary": "Create or replace a named strategy",
                "description": "`ranking` gives only the keys that differ from the configured [ranking] (candidates, popular_candidates, session_share_max, session_saturation, similarity_weight, popularity_weight, exclude_seen, rrf_k); `diversity` applies when a request gives none; `model` is \"live\".",
                "parameters": [{"name": "name", "in": "path", "required": true, "schema": {"type": "string", "minLength": 1, "maxLength": 256}}],
                "requestBody": body(json!({"type": "object", "properties": {"ranking": {"type": "object"}, "diversity": {"type": "object"}, "model": {"type": "string"}}})),
                "responses": {"200": ok(json!({"$ref": "#/components/schemas/Strategy"})), "400": e}}},
            "/v1/experiments": {
                "get": {"summary": "All experiments with their status",
                    "responses": {"200": ok(json!({"type": "object", "properties": {"experiments": {"type": "array", "items": {"type": "object"}}}}))}},
                "post": {"summary": "Create an experiment (A/B, bandit or interleaving) over strategies",
                    "description": "Variants `[{name, strategy, weight}]` (the first is the control); `holdout` (A/B), `metric` click|conversion, `layer` (experiments of one layer never share a user; default \"main\"), `traffic` (share of the layer), `overrides` {user: variant} for QA, `min_explore` (bandit), `mde` (relative minimum detectable effect for the sample size), `msprt_tau2`.",
                    "requestBody": body(json!({"type": "object", "required": ["id", "kind", "variants"]})),
                    "responses": {"201": ok(json!({"type": "object"})), "400": e}}},
            "/v1/experiments/{id}": {"get": {"summary": "An experiment's results: per variant users, impressions, clicks, conversions, rates with 95 % intervals, p-values (fixed-horizon and always-valid), probability to beat the control, expected loss; SRM; sample size; interleaving preference",
                "parameters": id_param(), "responses": {"200": ok(json!({"type": "object"})), "404": e}}},
            "/v1/experiments/{id}/stop": {"post": {"summary": "Stop assigning users; results stay",
                "parameters": id_param(), "responses": {"200": ok(json!({"type": "object"})), "404": e}}},
            "/v1/models": {"get": {"summary": "Model versions: each `recd train` run, with created_at, settings, quality-gate figures and status (live, available, rejected); which one is live",
                "description": "Oldest first. `gate` holds the held-out HR@10 and NDCG@10 of the new model and of its baseline (the live model, or popularity when none was live), the margin and the verdict. Also `gate_margin` and `keep_versions` from [model].",
                "responses": {"200": ok(json!({"type": "object", "properties": {
                    "models": {"type": "array", "items": {"$ref": "#/components/schemas/ModelVersion"}},
                    "live": {"type": ["string", "null"]}, "gate_margin": {"type": "number"}, "keep_versions": {"type": "integer"}}}))}}},
            "/v1/models/{version}/activate": {"post": {"summary": "Make a model version live: its vectors are written into the serving state (rollback is activating an older one)",
                "description": "Item vectors, then users' long-term vectors, then every logged user's session is rebuilt with the new item vectors and cached lists are dropped; serving continues throughout. Activating the live version writes nothing (`already_live`). A rejected version may be activated on purpose.",
                "parameters": version_param(),
                "responses": {"200": ok(json!({"type": "object", "properties": {"version": {"type": "string"}, "live": {"type": "boolean"}, "already_live": {"type": "boolean"},
                    "items": {"type": "integer"}, "unknown_items": {"type": "integer"}, "users": {"type": "integer"}, "sessions": {"type": "integer"}}})), "404": e, "503": e}}},
            "/v1/admin/models": {"post": {"summary": "A new model version number (recd train --target, before it stores the version's vectors)",
                "description": ADMIN_NOTE,
                "responses": {"201": ok(json!({"type": "object", "properties": {"version": {"type": "string"}}}))}}},
            "/v1/admin/models/{version}": {"put": {"summary": "Record a model version whose vector chunks are stored; old versions beyond [model] keep_versions are deleted (never the live one)",
                "description": ADMIN_NOTE,
                "parameters": version_param(),
                "requestBody": body(json!({"type": "object", "required": ["chunks", "info"], "properties": {"chunks": {"type": "integer"},
                    "info": {"type": "object", "required": ["created_at", "accepted"], "properties": {"created_at": {"type": "string"}, "accepted": {"type": "boolean"},
                        "settings": {"type": "object"}, "gate": {"type": "object"}, "counts": {"type": "object"}}}}})),
                "responses": {"200": ok(json!({"$ref": "#/components/schemas/ModelVersion"})), "400": e, "404": e}}},
            "/v1/admin/models/{version}/chunks/{index}": {
                "get": {"summary": "One batch of a recorded version's vectors",
                    "description": ADMIN_NOTE,
                    "parameters": chunk_params(),
                    "responses": {"200": ok(json!({"$ref": "#/components/schemas/Vectors"})), "404": e}},
                "put": {"summary": "Store one batch of a version's vectors before it is recorded",
                    "description": format!("Validated as PUT /v1/admin/vectors: any bad entry is a 400 listing each, and nothing is written. {ADMIN_NOTE}"),
                    "parameters": chunk_params(),
                    "requestBody": body(json!({"$ref": "#/components/schemas/Vectors"})),
                    "responses": {"200": ok(json!({"type": "object"})), "400": e, "404": e}}},
            "/v1/admin/models/{version}/live": {"post": {"summary": "Record a version live without writing vectors (a trainer that wrote them through PUT /v1/admin/vectors)",
                "description": ADMIN_NOTE,
                "parameters": version_param(),
                "responses": {"200": ok(json!({"type": "object"})), "404": e}}},
            "/v1/monitoring/drift": {"get": {"summary": "Drift of the watched features (top score, score spread, category mix of served items, event-type mix): reference and live summaries, PSI, two-sample test, threshold, verdict",
                "responses": {"200": ok(json!({"type": "object", "properties": {"threshold": {"type": "number"}, "alpha": {"type": "number"},
                    "drifted": {"type": "array", "items": {"type": "string"}}, "features": {"type": "array", "items": {"type": "object"}}}}))}}},
            "/v1/monitoring/drift/reset": {"post": {"summary": "Pin new references from the next observations on (e.g. after a retrain)",
                "responses": {"204": {"description": "references reset"}}}},
        },
        "components": {
          "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
            "description": "An API key from `recd keys create`: Authorization: Bearer recd_..."}},
          "schemas": {
            "ModelVersion": {"type": "object", "properties": {"version": {"type": "string"}, "created_at": {"type": "string", "format": "date-time"},
                "status": {"type": "string", "enum": ["live", "available", "rejected"]}, "live": {"type": "boolean"},
                "settings": {"type": "object"}, "gate": {"type": "object"}, "counts": {"type": "object"}, "chunks": {"type": "integer"}}},
            "Vectors": {"type": "object", "properties": {
                "items": {"type": "array", "items": {"type": "object", "properties": {"id": {"type": "string"}, "vector": {"type": "array", "items": {"type": "number"}}}}},
                "users": {"type": "array", "items": {"type": "object", "properties": {"id": {"type": "string"}, "vector": {"type": "array", "items": {"type": "number"}}}}}}},
            "Strategy": {"type": "object", "properties": {"ranking": {"type": "object"}, "diversity": {"type": "object"}, "model": {"type": "string"}}},
            "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {
                "code": {"type": "string", "enum": ["invalid_argument", "not_found", "unauthorized", "forbidden", "rate_limited", "unavailable", "internal"]},
                "message": {"type": "string"}, "details": {"type": "array", "items": {}}}}}},
            "Health": {"type": "object", "properties": {"status": {"type": "string"}, "backend": {"type": "string"}, "items": {"type": "integer"}, "users": {"type": "integer"}, "version": {"type": "string"}}},
            "Item": {"type": "object", "required": ["id"], "additionalProperties": true, "properties": {
                "id": {"type": "string", "minLength": 1, "maxLength": 256},
                "vector": {"type": "array", "items": {"type": "number"}, "nullable": true}},
                "description": "Plus the schema's fields: tag (a string or an array in requests; always an array in answers), numeric, bool, text."},
            "Filter": {"type": "object", "additionalProperties": true,
                "description": "Each key a condition, all must hold: tag {any|none}, numeric {gt,gte,lt,lte,eq}, bool, text {match}, or: [Filter], not: Filter."},
            "RecommendRequest": {"type": "object", "required": ["user_id"], "properties": {
                "user_id": {"type": "string"}, "count": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 10},
                "filter": {"$ref": "#/components/schemas/Filter"}, "exclude": {"type": "array", "items": {"type": "string"}},
                "query": {"type": "string"}, "strategy": {"type": "string", "description": "A named strategy (outside experiments)"}, "diversity": {"type": "object", "required": ["field", "max_per_value"], "properties": {"field": {"type": "string"}, "max_per_value": {"type": "integer", "minimum": 1}}},
                "explain": {"type": "boolean", "default": false}, "use_cache": {"type": "boolean", "default": true}}},
            "Recommendation": {"type": "object", "required": ["recommendation_id", "items", "source", "strategy", "took_ms"], "properties": {
                "recommendation_id": {"type": "string"}, "user_id": {"type": "string"},
                "items": {"type": "array", "items": {"type": "object", "properties": {"id": {"type": "string"}, "score": {"type": "number"}, "reasons": {"type": "array", "items": {"type": "string"}}, "item": {"$ref": "#/components/schemas/Item"}}}},
                "source": {"type": "string", "enum": ["personalized", "popular"], "description": "How the list was built (also when it came from a cache)"},
                "cache": {"type": "object", "required": ["tier", "age_ms"], "properties": {"tier": {"type": "string", "enum": ["l1", "l2"]}, "age_ms": {"type": "integer"}},
                    "description": "Present when the list came from a cache"},
                "strategy": {"type": "string", "description": "The ranking strategy that built the list"},
                "experiment": {"type": "string"}, "variant": {"type": "string"},
                "took_ms": {"type": "number"}, "stages": {"type": "object"}}},
            "Event": {"type": "object", "required": ["user_id", "item_id", "type"], "properties": {
                "user_id": {"type": "string"}, "item_id": {"type": "string"},
                "type": {"type": "string", "enum": ["view", "click", "dwell", "add_to_cart", "purchase", "rating", "dislike", "hide", "skip"],
                    "description": "dislike and hide: the item never comes back for the user (dislike also turns their session away from it); skip: a weak negative that does not exclude"},
                "value": {"type": "number"}, "timestamp": {"oneOf": [{"type": "string", "format": "date-time"}, {"type": "integer"}]},
                "recommendation_id": {"type": "string"}}},
            "IdVector": {"type": "object", "required": ["id", "vector"], "additionalProperties": false, "properties": {
                "id": {"type": "string", "minLength": 1, "maxLength": 256},
                "vector": {"type": "array", "items": {"type": "number"}}}},
            "User": {"type": "object", "properties": {"user_id": {"type": "string"}, "counters": {"type": "object"},
                "recent_items": {"type": "array", "items": {"type": "string"}}, "purchased": {"type": "array", "items": {"type": "string"}, "description": "Most recent first, at most model.session.purchased_capacity"},
                "excluded_items": {"type": "integer", "description": "Items never recommended to the user again (purchased, rated, disliked, hidden...), at most model.session.excluded_capacity"},
                "session_vector_norm": {"type": "number"}, "has_long_term_vector": {"type": "boolean"},
                "last_event_ms": {"type": "integer"}}},
        }},
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn the_document_describes_exactly_the_routes_served() {
        let served: BTreeSet<(String, String)> = crate::routes::table()
            .iter()
            .map(|r| (r.path.to_string(), r.method.as_str().to_lowercase()))
            .collect();
        let doc = document();
        let mut documented = BTreeSet::new();
        for (path, ops) in doc["paths"].as_object().expect("paths") {
            for method in ops.as_object().expect("operations").keys() {
                documented.insert((path.clone(), method.clone()));
            }
        }
        assert_eq!(served, documented);
    }

    #[test]
    fn every_operation_documents_the_answers_of_access_and_the_edge() {
        let doc = document();
        assert_eq!(
            doc["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
        for route in crate::routes::table() {
            let op = &doc["paths"][route.path][route.method.as_str().to_lowercase()];
            let responses = op["responses"].as_object().expect("responses");
            let has = |code: &str| responses.contains_key(code);
            let what = format!("{} {}", route.method, route.path);
            assert!(has("503") && has("431"), "{what}");
            if route.scope == Scope::Public {
                assert_eq!(op["security"], json!([]), "{what}");
            } else {
                assert!(has("401") && has("403") && has("429"), "{what}");
                assert_eq!(op["x-recd-scope"], scope_name(route.scope), "{what}");
            }
            if op.get("requestBody").is_some() {
                assert!(has("415") && has("413") && has("400"), "{what}");
            }
            if route.path.contains("{id}") {
                assert!(has("400"), "{what}: a bad id is a 400");
            }
        }
    }
}
