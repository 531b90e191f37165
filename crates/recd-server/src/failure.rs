//! What an engine use case can fail with, classified for its callers: the HTTP layer maps
//! each kind to one status in one `match` (`crate::error`), the CLI to an exit code.

use recd_core::ValidationError;
use recd_store::StoreError;

use crate::catalog::CatalogError;

/// Why a use case failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The request is wrong; nothing was changed.
    #[error("{}", .0.message)]
    Invalid(ValidationError),
    /// The thing asked about does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request is well formed, but the state of what it names forbids it; nothing was
    /// changed (409).
    #[error("{0}")]
    Conflict(String),
    /// A backend (store, Redis, the catalog source) cannot answer now; retry later.
    #[error("{0}")]
    Unavailable(String),
    /// A bug or a broken invariant.
    #[error("{0}")]
    Internal(String),
}

/// The result of a use case.
pub type EngineResult<T> = Result<T, EngineError>;

impl From<StoreError> for EngineError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Invalid(v) => EngineError::Invalid(v),
            StoreError::Unavailable(m) => EngineError::Unavailable(m),
            StoreError::Internal(m) => EngineError::Internal(m),
        }
    }
}

impl From<ValidationError> for EngineError {
    fn from(e: ValidationError) -> Self {
        EngineError::Invalid(e)
    }
}

/// A catalog source failure as the store error the caches carry.
pub(crate) fn catalog_failure(e: CatalogError) -> StoreError {
    match e {
        CatalogError::Unavailable(m) => StoreError::Unavailable(format!("catalog source: {m}")),
        other => StoreError::Internal(format!("catalog source: {other}")),
    }
}
