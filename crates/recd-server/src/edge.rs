//! Middleware at the HTTP edge: the per-request deadline, the header size limit, the
//! JSON-only rule for bodies, and [`error_shape`], which puts every error answer into the
//! API.md shape, including the ones the framework makes by itself (a 405's empty body, the
//! plain text of a bad percent-encoding in a path).
//!
//! What reaches none of this: answers hyper gives before a request exists (a URL over
//! its limit, a head larger than its read buffer, a request line it cannot parse). The
//! connection's writer puts those in the error shape as they are written
//! ([`crate::parse_errors`]); a header read that timed out is closed without an answer.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::error::{ApiError, Code};

/// How much of a non-JSON error body is kept as the message.
const MAX_MESSAGE_BYTES: usize = 4096;

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(json_media_type)
}

/// `application/json`, optionally with `charset=utf-8` (JSON has no other encoding).
fn json_media_type(value: &str) -> bool {
    let mut parts = value.split(';');
    let essence = parts.next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        return false;
    }
    parts.all(|p| {
        let p = p.trim();
        p.is_empty()
            || p.split_once('=').is_some_and(|(k, v)| {
                k.trim().eq_ignore_ascii_case("charset")
                    && v.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
            })
    })
}

/// The JSON-only rule (CSRF): a POST, PUT or PATCH that has a body, or says what its body
/// is, must say `application/json`. A web page can make a browser send `text/plain`, form
/// or multipart bodies anywhere without asking (no CORS preflight), but not JSON.
pub fn require_json(req: &Request) -> Result<(), ApiError> {
    if !matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH) {
        return Ok(());
    }
    let headers = req.headers();
    let has_body = match headers.get(header::CONTENT_LENGTH) {
        Some(len) => len.as_bytes() != b"0",
        None => headers.contains_key(header::TRANSFER_ENCODING),
    };
    let content_type = headers.get(header::CONTENT_TYPE);
    if !has_body && content_type.is_none() {
        return Ok(());
    }
    if is_json(headers) {
        return Ok(());
    }
    let got = content_type
        .and_then(|v| v.to_str().ok())
        .map_or_else(|| "no Content-Type".to_string(), |v| format!("'{v}'"));
    Err(ApiError::with_code(
        Code::UnsupportedMediaType,
        format!("request bodies must be 'application/json', got {got} (status 415)"),
    ))
}

/// `[server] cors_allow_origins` as a CORS layer (none when the list is empty). Preflights
/// are answered before the gate (they carry no key); the API's own answers then name the
/// allowed origin. Bearer keys are not cookies, so credentials mode stays off.
pub fn cors(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        // Config validation checked that each is a header value.
        AllowOrigin::list(
            origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o).ok())
                .collect::<Vec<_>>(),
        )
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
            .expose_headers([header::RETRY_AFTER])
            .max_age(Duration::from_secs(600)),
    )
}

/// `[server] request_timeout_ms` as a 503 in the error shape (tower-http's timeout answers
/// with an empty body).
pub async fn deadline(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => {
            metrics::counter!("recd_request_timeouts_total").increment(1);
            ApiError::unavailable(format!(
                "the request did not finish within its deadline of {} ms ([server] request_timeout_ms)",
                limit.as_millis()
            ))
            .into_response()
        }
    }
}

/// `[server] max_header_bytes`: a 431 in the error shape for requests whose headers (names,
/// values and their separators) exceed it.
pub async fn header_limit(State(max): State<usize>, req: Request, next: Next) -> Response {
    let size: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    if size > max {
        return ApiError::with_code(
            Code::HeadersTooLarge,
            format!(
                "the request's headers take {size} bytes, more than {max} ([server] max_header_bytes)"
            ),
        )
        .into_response();
    }
    next.run(req).await
}

/// Every error answer in the API.md shape: an error response that is not JSON (made by
/// the framework, not by [`ApiError`]) gets the error body for its status, with its text
/// as the message; its status and its other headers (`Allow` on a 405) are kept.
pub async fn error_shape(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) || is_json(response.headers()) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, MAX_MESSAGE_BYTES)
        .await
        .ok()
        .and_then(|b| String::from_utf8(b.to_vec()).ok())
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty());
    let message = text.unwrap_or_else(|| default_message(status));
    let shaped = ApiError::with_code(Code::for_status(status), message).into_response();
    let (shaped_parts, shaped_body) = shaped.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.remove(header::TRANSFER_ENCODING);
    for (name, value) in &shaped_parts.headers {
        parts.headers.insert(name.clone(), value.clone());
    }
    Response::from_parts(parts, Body::new(shaped_body))
}

fn default_message(status: StatusCode) -> String {
    match status {
        StatusCode::METHOD_NOT_ALLOWED => {
            "this endpoint does not take that method (see the Allow header)".into()
        }
        s => s
            .canonical_reason()
            .map_or_else(|| format!("status {}", s.as_u16()), |r| r.to_lowercase()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_media_types() {
        for ok in [
            "application/json",
            "Application/JSON",
            "application/json; charset=utf-8",
            "application/json;charset=\"UTF-8\"",
        ] {
            assert!(json_media_type(ok), "{ok}");
        }
        for bad in [
            "text/plain",
            "application/json-patch+json",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/json; charset=latin1",
            "",
        ] {
            assert!(!json_media_type(bad), "{bad}");
        }
    }
}
