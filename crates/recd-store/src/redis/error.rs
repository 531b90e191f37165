//! How Redis errors map onto [`StoreError`]: unreachable → `Unavailable`, the rest → `Internal`.

use redis::{ErrorKind, RedisError, ServerErrorKind};

use crate::StoreError;

/// Classifies a Redis error: anything that retrying later may fix is `Unavailable`.
pub(crate) fn from_redis(e: RedisError) -> StoreError {
    let transient = e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || matches!(
            e.kind(),
            ErrorKind::Server(
                ServerErrorKind::BusyLoading
                    | ServerErrorKind::TryAgain
                    | ServerErrorKind::ClusterDown
                    | ServerErrorKind::MasterDown
                    | ServerErrorKind::ReadOnly
            )
        );
    if transient {
        StoreError::Unavailable(format!("redis: {e}"))
    } else {
        StoreError::Internal(format!("redis: {e}"))
    }
}

/// Whether the error says the search index (or its alias) does not exist, as after a
/// restart of a Redis without persistence.
pub(crate) fn is_missing_index(e: &RedisError) -> bool {
    let text = e.to_string().to_ascii_lowercase();
    text.contains("no such index") || text.contains("unknown index name")
}

/// An `Internal` error for a reply that does not have the expected shape.
pub(crate) fn bad_reply(what: &str) -> StoreError {
    StoreError::Internal(format!("unexpected redis reply: {what}"))
}
