//! The one mapping from failures to HTTP: every error leaves the server in the API.md shape
//! `{"error":{"code","message","details"}}` with the status matching its code.
//!
//! API.md's code list is closed (clients switch on it), so the statuses it has no code for
//! keep its nearest code: 405, 413, 415 and 431 are `invalid_argument` (the request is wrong
//! and resending it unchanged cannot succeed), with the precise status and a message that
//! names the problem. [`crate::edge::error_shape`] puts whatever answers the framework
//! itself produces (a 405's empty body, a path rejection's plain text) into this shape.

use crate::failure::EngineError;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use recd_core::ValidationError;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// The error codes of API.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// 400: the request is wrong; nothing was changed.
    InvalidArgument,
    /// 404.
    NotFound,
    /// 401: no API key, or one that is not configured (answered with `WWW-Authenticate`).
    Unauthorized,
    /// 403: the key lacks the route's scope.
    Forbidden,
    /// 429: over a rate limit (the response carries `Retry-After`).
    RateLimited,
    /// 503: the backend is unreachable, the server is saturated or the request ran out of
    /// time; retry later.
    Unavailable,
    /// 500: a bug.
    Internal,
    /// 405, code `invalid_argument`: the path exists, the method does not.
    MethodNotAllowed,
    /// 413, code `invalid_argument`: the body is over `[server] body_limit_bytes`.
    PayloadTooLarge,
    /// 415, code `invalid_argument`: a body that is not `application/json`.
    UnsupportedMediaType,
    /// 431, code `invalid_argument`: the headers are over `[server] max_header_bytes`.
    HeadersTooLarge,
    /// 409, code `invalid_argument`: the request is well formed but the state of what it
    /// names forbids it (e.g. storing a chunk of a model version already recorded).
    Conflict,
}

/// Names the error shape `{"error":{"code","message","details"?}}` in the OpenAPI
/// document (`crate::openapi::shapes::error_body` says what it holds).
pub struct ErrorBody;

impl Code {
    /// Every code, for the document's list of code strings.
    pub const ALL: [Code; 12] = [
        Code::InvalidArgument,
        Code::NotFound,
        Code::Unauthorized,
        Code::Forbidden,
        Code::RateLimited,
        Code::Unavailable,
        Code::Internal,
        Code::MethodNotAllowed,
        Code::PayloadTooLarge,
        Code::UnsupportedMediaType,
        Code::HeadersTooLarge,
        Code::Conflict,
    ];

    /// The status and the API.md code string.
    pub fn parts(self) -> (StatusCode, &'static str) {
        match self {
            Code::InvalidArgument => (StatusCode::BAD_REQUEST, "invalid_argument"),
            Code::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            Code::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Code::Forbidden => (StatusCode::FORBIDDEN, "forbidden"),
            Code::RateLimited => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            Code::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            Code::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            Code::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "invalid_argument"),
            Code::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "invalid_argument"),
            Code::UnsupportedMediaType => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "invalid_argument"),
            Code::HeadersTooLarge => (
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "invalid_argument",
            ),
            Code::Conflict => (StatusCode::CONFLICT, "invalid_argument"),
        }
    }

    /// The code for an answer that only has a status (the framework's own rejections).
    pub fn for_status(status: StatusCode) -> Code {
        match status.as_u16() {
            401 => Code::Unauthorized,
            403 => Code::Forbidden,
            404 | 410 => Code::NotFound,
            405 => Code::MethodNotAllowed,
            409 => Code::Conflict,
            413 => Code::PayloadTooLarge,
            415 => Code::UnsupportedMediaType,
            429 => Code::RateLimited,
            431 => Code::HeadersTooLarge,
            502..=504 => Code::Unavailable,
            400..=499 => Code::InvalidArgument,
            _ => Code::Internal,
        }
    }
}

/// An error on its way to becoming a response.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// Which kind.
    pub code: Code,
    /// For humans.
    pub message: String,
    /// Per-element problems (e.g. `{index,id,message}` for a batch).
    pub details: Vec<Value>,
}

impl ApiError {
    /// A 400 with a message.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self {
            code: Code::InvalidArgument,
            message: message.into(),
            details: Vec::new(),
        }
    }

    /// A 400 listing each bad element of a batch.
    pub fn invalid_batch(message: impl Into<String>, details: Vec<Value>) -> Self {
        Self {
            code: Code::InvalidArgument,
            message: message.into(),
            details,
        }
    }

    /// A 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self {
            code: Code::NotFound,
            message: message.into(),
            details: Vec::new(),
        }
    }

    /// A 503.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::with_code(Code::Unavailable, message)
    }

    /// An error of `code` with a message and no details.
    pub fn with_code(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            details: Vec::new(),
        }
    }
}

impl From<ValidationError> for ApiError {
    fn from(e: ValidationError) -> Self {
        ApiError::invalid(e.message)
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Invalid(v) => ApiError::invalid(v.message),
            EngineError::NotFound(m) => ApiError::not_found(m),
            EngineError::Conflict(m) => ApiError::with_code(Code::Conflict, m),
            EngineError::Unavailable(m) => ApiError::unavailable(m),
            EngineError::Internal(m) => {
                tracing::error!(cause = %m, "internal error");
                ApiError {
                    code: Code::Internal,
                    message: "internal error".into(),
                    details: Vec::new(),
                }
            }
        }
    }
}

impl ApiError {
    /// The API.md error body `{"error":{"code","message","details"?}}` (also one element
    /// of a batch answer).
    pub fn body(&self) -> Value {
        let (_, code) = self.code.parts();
        let mut error = json!({"code": code, "message": self.message});
        if !self.details.is_empty() {
            error["details"] = Value::from(self.details.clone());
        }
        json!({ "error": error })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, _) = self.code.parts();
        let mut response = (status, Json(self.body())).into_response();
        if self.code == Code::Unauthorized {
            // RFC 6750: every 401 names the scheme the client should use.
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"recd\""),
            );
        }
        response
    }
}

/// A JSON body whose every failure (too large, not JSON, wrong shape, unknown field)
/// becomes a 400 in our error shape instead of axum's plain-text rejections.
#[derive(Debug)]
pub struct AppJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for AppJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            let code = if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Code::PayloadTooLarge
            } else {
                Code::InvalidArgument
            };
            let message = if code == Code::PayloadTooLarge {
                "the request body is larger than the server accepts ([server] body_limit_bytes)"
                    .to_string()
            } else {
                format!("cannot read the request body: {}", e.body_text())
            };
            ApiError::with_code(code, message)
        })?;
        // Every body of the API is an object; serde would also read a struct from an array
        // (`[null, null]`), which no client means.
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(ApiError::invalid(
                "invalid JSON body: it must be a JSON object {...}",
            ));
        }
        let mut de = serde_json::Deserializer::from_slice(&bytes);
        let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if path.is_empty() || path == "." {
                ApiError::invalid(format!("invalid JSON body: {inner}"))
            } else {
                ApiError::invalid(format!("invalid JSON body at '{path}': {inner}"))
            }
        })?;
        de.end()
            .map_err(|e| ApiError::invalid(format!("invalid JSON body: {e}")))?;
        Ok(AppJson(value))
    }
}
