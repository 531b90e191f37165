//! The one mapping from failures to HTTP: every error leaves the server in the API.md shape
//! `{"error":{"code","message","details"}}` with the status matching its code.

use crate::engine::EngineError;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
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
    /// 503: the backend is unreachable; retry later.
    Unavailable,
    /// 500: a bug.
    Internal,
}

impl Code {
    fn parts(self) -> (StatusCode, &'static str) {
        match self {
            Code::InvalidArgument => (StatusCode::BAD_REQUEST, "invalid_argument"),
            Code::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            Code::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            Code::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
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
        Self {
            code: Code::Unavailable,
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
        (status, Json(self.body())).into_response()
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
            ApiError::invalid(format!("cannot read the request body: {}", e.body_text()))
        })?;
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
