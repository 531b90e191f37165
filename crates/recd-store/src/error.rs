//! The store's error type, classified the way the HTTP layer needs it.

use recd_core::ValidationError;
use thiserror::Error;

/// Shorthand result.
pub type StoreResult<T> = Result<T, StoreError>;

/// Why a store operation failed.
#[derive(Debug, Error)]
pub enum StoreError {
    /// User error (400): the input cannot be stored as given.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// The backend cannot be reached right now (503); retrying later may work.
    #[error("backend unavailable: {0}")]
    Unavailable(String),
    /// A bug or corrupted state (500).
    #[error("internal store error: {0}")]
    Internal(String),
}
