//! Request ids and a tracing span per request.
//!
//! Every request gets an id: the client's `X-Request-Id` when it is a short printable
//! token (a load balancer's or a caller's, so logs can be joined across systems), else a
//! new one. The id goes back in the answer's `X-Request-Id` header and is a field of the
//! request's span, so every log line written while serving it carries it (in the plain
//! format as `request{id=…}`, in JSON logs — `RECD_LOG_FORMAT=json` — under `span`).

use axum::extract::{MatchedPath, Request};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tower_http::classify::{ServerErrorsAsFailures, SharedClassifier};
use tower_http::trace::{MakeSpan, TraceLayer};

/// The header that carries the id, both ways.
pub const REQUEST_ID: &str = "x-request-id";

/// Longest client id kept (longer ones are replaced, not truncated: a cut id joins nothing).
const MAX_ID_LEN: usize = 128;

/// Whether a client-sent id is kept: 1–128 visible ASCII characters.
fn acceptable(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID_LEN && id.bytes().all(|b| b.is_ascii_graphic())
}

/// The id of a request: the client's if acceptable, else a new UUID.
fn id_of(req: &Request) -> String {
    req.headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|id| acceptable(id))
        .map_or_else(|| uuid::Uuid::new_v4().simple().to_string(), str::to_string)
}

/// Middleware (outermost): settles the request's id, puts it on the request for the span
/// and on the answer, whatever produced the answer.
pub async fn request_id(mut req: Request, next: Next) -> Response {
    let id = id_of(&req);
    // Visible ASCII is always a valid header value; the fallback is never taken.
    let value = HeaderValue::from_str(&id).unwrap_or_else(|_| HeaderValue::from_static("-"));
    req.headers_mut().insert(REQUEST_ID, value.clone());
    let mut response = next.run(req).await;
    response.headers_mut().insert(REQUEST_ID, value);
    response
}

/// The span of one request: its id, method and route template (never the raw path, which
/// may carry ids).
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestSpan;

impl<B> MakeSpan<B> for RequestSpan {
    fn make_span(&mut self, req: &axum::http::Request<B>) -> tracing::Span {
        let id = req
            .headers()
            .get(REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-");
        let route = req
            .extensions()
            .get::<MatchedPath>()
            .map_or("unmatched", MatchedPath::as_str);
        tracing::info_span!("request", id = %id, method = %req.method(), route = %route)
    }
}

/// `TraceLayer` with [`RequestSpan`]: a span per request, request and response events at
/// DEBUG (`RECD_LOG=debug` shows each with its latency), failures (5xx) at ERROR.
pub fn layer() -> TraceLayer<SharedClassifier<ServerErrorsAsFailures>, RequestSpan> {
    TraceLayer::new_for_http().make_span_with(RequestSpan)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_short_printable_ids_are_kept() {
        assert!(acceptable("req-42_abc.DEF"));
        assert!(!acceptable(""));
        assert!(!acceptable("has space"));
        assert!(!acceptable("tab\there"));
        assert!(!acceptable("é"));
        assert!(!acceptable(&"x".repeat(MAX_ID_LEN + 1)));
        assert!(acceptable(&"x".repeat(MAX_ID_LEN)));
    }
}
