//! The one error type of the domain: a user-supplied value did not validate.
//!
//! Every variant is a *user* error (it maps to HTTP 400 `invalid_argument`); the domain has
//! no internal failures because it does no IO.

use thiserror::Error;

/// Why a value supplied by a client (an item, a filter, an event, an id) was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{message}")]
pub struct ValidationError {
    /// A human-readable reason that names the offending field or value.
    pub message: String,
}

impl ValidationError {
    /// Builds an error from anything printable.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

/// Shorthand for `Err(ValidationError::new(format!(...)))`.
#[macro_export]
macro_rules! invalid {
    ($($arg:tt)*) => {
        Err($crate::error::ValidationError::new(format!($($arg)*)))
    };
}
