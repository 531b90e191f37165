//! The web console: the playground and the operator's views, a handful of static files
//! (plain ES modules, one stylesheet, one page) compiled into the binary and served at `/`
//! and under `/console/`.
//!
//! The files carry no data: everything the page shows it fetches from the API with the
//! key the user typed, under the same access rules as any other client. So they are
//! served without a key (like `/health`), outside the route table (which is the API, and
//! what `/openapi.json` describes), and without the access gate's load shedding. Nothing
//! runs on the server for the console beyond answering these GETs: an idle page, or no
//! page, costs the API nothing.
//!
//! Answers carry a strong `ETag` (a hash of the file, computed at compile time) with
//! `Cache-Control: no-cache`, so a browser revalidates with `If-None-Match` and gets a
//! bodiless 304 until the binary changes; and a Content-Security-Policy that allows
//! only this origin's scripts, styles and API (the page handles API keys).
//!
//! # Layout
//! - [`assets`]: the embedded files, their content types and ETags.

pub mod assets;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use self::assets::Asset;
use crate::error::ApiError;
use crate::state::AppState;

/// Where the console's files are served from (`/` serves `index.html`).
pub const PREFIX: &str = "/console/";

/// What a browser may load and call from a console page: this origin only, no inline
/// scripts, no frames around it.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
                   frame-ancestors 'none'";

/// The console's routes: `GET /` (the page) and `GET /console/{*path}` (its files).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/console/{*path}", get(file))
}

async fn index(headers: HeaderMap) -> Response {
    match assets::find("index.html") {
        Some(asset) => serve(asset, &headers),
        None => ApiError::not_found("the console is not built into this binary").into_response(),
    }
}

async fn file(Path(path): Path<String>, headers: HeaderMap) -> Response {
    match assets::find(&path) {
        Some(asset) => serve(asset, &headers),
        None => ApiError::not_found(format!("no console file {PREFIX}{path}")).into_response(),
    }
}

/// The file, or a 304 when the browser already holds this version of it.
fn serve(asset: &Asset, headers: &HeaderMap) -> Response {
    let etag = asset.etag();
    let mut response = if matches_etag(headers, &etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            )],
            asset.body,
        )
            .into_response()
    };
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// Whether `If-None-Match` names `etag` (or is `*`); weak validators match too, as
/// RFC 9110 asks of a GET's `If-None-Match`.
fn matches_etag(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_str(value).expect("a valid header"),
        );
        h
    }

    #[test]
    fn if_none_match_takes_lists_weak_tags_and_the_star() {
        let tag = "\"00ab\"";
        assert!(matches_etag(&with("\"00ab\""), tag));
        assert!(matches_etag(&with("\"x\", W/\"00ab\""), tag));
        assert!(matches_etag(&with("*"), tag));
        assert!(!matches_etag(&with("\"00ac\""), tag));
        assert!(!matches_etag(&HeaderMap::new(), tag));
    }
}
