//! The catalog's errors: [`CatalogError`], and how a driver or pool error becomes one. A
//! server error goes by its SQLSTATE class and by the phase it happened in (checking the
//! configuration at connect, or serving a fetch); an error without one by its kind.

use std::time::Duration;

use deadpool_postgres::PoolError;

/// Why the catalog could not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    /// The source cannot answer now: unreachable, refusing connections, shutting down, or
    /// no answer within `timeout_ms`. Transient; an HTTP layer answers 503.
    #[error("catalog source unavailable: {0}")]
    Unavailable(String),
    /// The configuration cannot work: a bad URL or setting, a query that does not prepare,
    /// does not take exactly one parameter, or returns a column with no JSON form, a
    /// database that does not exist, authentication refused. Found at connect.
    #[error("invalid catalog configuration: {0}")]
    Invalid(String),
    /// The source answered, but not usably: the query failed on this id or returned more
    /// than one row, or a value could not be decoded.
    #[error("catalog source error: {0}")]
    Internal(String),
}

/// Where an error happened, which decides how a failure is classified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Checking the configuration: what the server rejects is a configuration error.
    Connect,
    /// Serving: a rejected query is a failure of this fetch.
    Fetch,
}

pub(super) fn deadline(timeout: Duration, what: &str) -> CatalogError {
    CatalogError::Unavailable(format!(
        "no answer within {} ms ({what})",
        timeout.as_millis()
    ))
}

pub(super) fn pool_error(e: PoolError, phase: Phase) -> CatalogError {
    match e {
        PoolError::Backend(e) => pg_error(&e, phase),
        PoolError::Timeout(kind) => {
            CatalogError::Unavailable(format!("timed out waiting for a connection ({kind:?})"))
        }
        PoolError::Closed => CatalogError::Unavailable("the connection pool is closed".into()),
        other => CatalogError::Internal(format!("connection pool: {other}")),
    }
}

/// Classifies a driver error. Server errors go by SQLSTATE class; errors without one are
/// the connection's (refused, reset, closed, timed out) except configuration and
/// authentication failures, which the driver reports only by kind (its `Display`).
pub(super) fn pg_error(e: &tokio_postgres::Error, phase: Phase) -> CatalogError {
    let message = error_chain(e);
    if let Some(db) = e.as_db_error() {
        let class = db.code().code().get(..2).unwrap_or("");
        return match (class, phase) {
            // connection exception, insufficient resources, operator intervention (shutdown,
            // statement_timeout), system error
            ("08" | "53" | "57" | "58", _) => CatalogError::Unavailable(message),
            // authorization, unknown database: the configuration is wrong
            ("28" | "3D", Phase::Connect) => CatalogError::Invalid(message),
            ("28" | "3D", Phase::Fetch) => CatalogError::Unavailable(message),
            (_, Phase::Connect) => CatalogError::Invalid(message),
            (_, Phase::Fetch) => CatalogError::Internal(message),
        };
    }
    let kind = e.to_string();
    let config_error = kind.starts_with("invalid configuration")
        || kind.starts_with("invalid connection string")
        || kind.starts_with("authentication error");
    match phase {
        Phase::Connect if config_error => CatalogError::Invalid(message),
        _ => CatalogError::Unavailable(message),
    }
}

/// An error and its causes, `: `-separated (the driver's own `Display` is only its kind).
pub(super) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}
