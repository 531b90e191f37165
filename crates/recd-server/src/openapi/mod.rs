//! The OpenAPI 3.1 document served at `/openapi.json`, generated from code: the route table
//! (`crate::routes::table`) gives every operation's method, path and scope, each route's
//! [`Op`] its summary, query parameters, request body and own answers, whose schemas are
//! derived from the Rust types the handler parses and returns (`utoipa::ToSchema`,
//! `utoipa::IntoParams`). Nothing here is prose that could drift from the answers: the e2e
//! suite validates every answer it gets against this document.
//!
//! What every operation shares is added here from the table, so that a route added later
//! gets it too: path parameters (from the `{name}`s of its template), the bearer key and its
//! scope (`x-recd-scope`), and the error answers of access and the edge — 400 for a bad path
//! id, query or body, 401/403/429 where a key is needed, 413 where a body is read, 415 for
//! every POST and PUT, 431 and 503 everywhere — all in the error shape.
//!
//! Items and filters depend on the data's schema: [`shapes`] fills them in for the schema
//! the server runs with.

mod op;
pub mod shapes;

use recd_core::Schema;
use serde_json::{Value, json};
use utoipa::openapi::path::{OperationBuilder, Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::{
    ComponentsBuilder, Content, HttpMethod, InfoBuilder, OpenApiBuilder, Paths, Ref, RefOr,
    Required, ResponsesBuilder,
};

pub use op::Op;

use crate::routes::{Route, Scope, table};

/// The document for a server whose data has `schema` (`None`: items and filters stay open
/// objects).
pub fn document(schema: Option<&Schema>) -> Value {
    let mut paths = Paths::new();
    let mut schemas: Vec<(String, RefOr<utoipa::openapi::Schema>)> = Vec::new();
    let mut extensions: Vec<(String, String, Scope)> = Vec::new();
    for route in table() {
        let op = (route.doc)();
        schemas.extend(op.schemas.iter().cloned());
        let method = http_method(&route);
        paths.add_path_operation(route.path, vec![method], operation(&route, op));
        extensions.push((
            route.path.to_string(),
            route.method.as_str().to_lowercase(),
            route.scope,
        ));
    }
    // The shared answers reference the error shape.
    schemas.push(("Error".into(), shapes::item_any()));
    let components = ComponentsBuilder::new().schemas_from_iter(schemas).build();
    let info = InfoBuilder::new()
        .title("recd")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(
            "Real-time recommendation engine: filtered vector retrieval, real-time events, ranking. \
             Every error answer is {\"error\":{\"code\",\"message\",\"details\"}}; 405, 413, 415 and 431 use the \
             code invalid_argument. Each operation's x-recd-scope names the key scope it needs (a key has exactly \
             the scopes it lists); /health, /ready, /metrics and /openapi.json need none, nor does anything when \
             the server runs without keys (on loopback, or with --insecure).",
        ))
        .build();
    let doc = OpenApiBuilder::new()
        .info(info)
        .paths(paths)
        .components(Some(components))
        .build();
    // Serializing the document's own types cannot fail.
    let mut doc = serde_json::to_value(doc).unwrap_or_default();
    doc["components"]["securitySchemes"] = json!({"bearer": {"type": "http", "scheme": "bearer",
        "description": "An API key from `recd keys create`: Authorization: Bearer recd_..."}});
    for (path, method, scope) in extensions {
        let op = &mut doc["paths"][path.as_str()][method.as_str()];
        if scope == Scope::Public {
            op["security"] = json!([]);
        } else {
            op["security"] = json!([{"bearer": []}]);
            op["x-recd-scope"] = json!(scope.as_str());
        }
    }
    shapes::specialize(&mut doc, schema);
    doc
}

fn http_method(route: &Route) -> HttpMethod {
    match route.method.as_str() {
        "GET" => HttpMethod::Get,
        "PUT" => HttpMethod::Put,
        "DELETE" => HttpMethod::Delete,
        "PATCH" => HttpMethod::Patch,
        _ => HttpMethod::Post,
    }
}

/// The schema of a path parameter, by its name in the template.
fn path_param(name: &str) -> Parameter {
    let schema = match name {
        "version" => json!({"type": "string", "pattern": "^v[1-9][0-9]*$", "maxLength": 24}),
        "index" => json!({"type": "integer", "minimum": 0, "maximum": u32::MAX}),
        _ => shapes::id(),
    };
    let schema: Option<RefOr<utoipa::openapi::Schema>> = serde_json::from_value(schema).ok();
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Path)
        .required(Required::True)
        .schema(schema)
        .build()
}

/// Why each shared error answer may come.
fn shared_reason(status: u16) -> &'static str {
    match status {
        400 => "a malformed path id, query or body (invalid_argument)",
        401 => "no API key, or not a valid one (unauthorized; WWW-Authenticate: Bearer)",
        403 => "the key lacks this endpoint's scope (forbidden)",
        413 => "the body is over [server] body_limit_bytes (invalid_argument)",
        415 => "a body that is not application/json (invalid_argument)",
        429 => {
            "over a rate limit per key or per client address (rate_limited; Retry-After: seconds)"
        }
        431 => "the headers are over [server] max_header_bytes (invalid_argument)",
        _ => {
            "unavailable: the backend cannot be reached, too many requests are in flight, or the request deadline passed"
        }
    }
}

/// The statuses every operation of `route` may answer besides its own.
fn shared_statuses(route: &Route, op: &Op) -> Vec<u16> {
    let mut codes = vec![431, 503];
    let takes_input = op.body.is_some() || !op.query.is_empty() || route.path.contains('{');
    if takes_input {
        codes.push(400);
    }
    if route.scope != Scope::Public {
        codes.extend([401, 403, 429]);
        if matches!(route.method.as_str(), "POST" | "PUT") {
            codes.push(415);
        }
    }
    if op.body.is_some() {
        codes.push(413);
    }
    codes
}

fn error_content() -> Content {
    Content::new(Some(Ref::from_schema_name("Error")))
}

fn operation(route: &Route, op: Op) -> utoipa::openapi::path::Operation {
    let mut params: Vec<Parameter> = route
        .path
        .split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(path_param)
        .collect();
    params.extend(op.query.iter().cloned());
    let mut responses = ResponsesBuilder::new();
    let mut own = Vec::new();
    for answer in &op.answers {
        own.push(answer.status);
        let mut response = ResponseBuilder::new().description(answer.description.clone());
        if let Some((media, schema)) = &answer.content {
            response = response.content(*media, Content::new(Some(schema.clone())));
        }
        for (name, why, schema) in &answer.headers {
            let header = utoipa::openapi::header::HeaderBuilder::new()
                .schema(Some(schema.clone()))
                .description(Some(*why))
                .build();
            response = response.header(*name, header);
        }
        responses = responses.response(answer.status.to_string(), response.build());
    }
    for status in shared_statuses(route, &op) {
        if own.contains(&status) {
            continue;
        }
        let mut response = ResponseBuilder::new()
            .description(shared_reason(status))
            .content("application/json", error_content());
        let integer = || {
            serde_json::from_value::<RefOr<utoipa::openapi::Schema>>(
                json!({"type": "integer", "minimum": 1}),
            )
            .ok()
        };
        if status == 401 {
            response = response.header(
                "WWW-Authenticate",
                utoipa::openapi::header::HeaderBuilder::new().build(),
            );
        }
        if status == 429 || status == 503 {
            response = response.header(
                "Retry-After",
                utoipa::openapi::header::HeaderBuilder::new()
                    .schema(integer())
                    .description(Some("seconds to wait"))
                    .build(),
            );
        }
        responses = responses.response(status.to_string(), response.build());
    }
    if !op.query.is_empty() && !own.contains(&414) {
        // hyper refuses a request target over `server::MAX_URI_BYTES` itself, before a
        // request exists; `parse_errors` puts its answer in the error shape. Only a query
        // can grow that long: path parameters are bounded ids.
        responses = responses.response(
            "414",
            ResponseBuilder::new()
                .description(format!(
                    "the URL is longer than {} bytes (a filter too large for a URL: send it in a POST body) (invalid_argument)",
                    crate::server::MAX_URI_BYTES
                ))
                .content("application/json", error_content())
                .build(),
        );
    }
    let body = op.body.clone().map(|schema| {
        RequestBodyBuilder::new()
            .required(Some(Required::True))
            .content("application/json", Content::new(Some(schema)))
            .build()
    });
    OperationBuilder::new()
        .summary(Some(op.summary))
        .description(op.description.clone())
        .operation_id(Some(operation_id(route)))
        .parameters(Some(params))
        .request_body(body)
        .responses(responses.build())
        .build()
}

/// `get_v1_items_id` for `GET /v1/items/{id}`.
fn operation_id(route: &Route) -> String {
    let mut id = route.method.as_str().to_lowercase();
    for seg in route.path.split('/').filter(|s| !s.is_empty()) {
        id.push('_');
        id.extend(
            seg.chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                .map(|c| c.to_ascii_lowercase()),
        );
    }
    id
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
        let doc = document(None);
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
        let doc = document(Some(&Schema::demo(4)));
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
                assert_eq!(op["x-recd-scope"], route.scope.as_str(), "{what}");
            }
            if op.get("requestBody").is_some() {
                assert!(has("415") && has("413") && has("400"), "{what}");
            }
            if route.path.contains("{id}") {
                assert!(has("400"), "{what}: a bad id is a 400");
            }
        }
    }

    #[test]
    fn every_reference_resolves() {
        let doc = document(Some(&Schema::demo(4)));
        let text = doc.to_string();
        let schemas = doc["components"]["schemas"].as_object().expect("schemas");
        for part in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = part.split('"').next().unwrap_or_default();
            assert!(schemas.contains_key(name), "dangling $ref to {name}");
        }
    }
}
