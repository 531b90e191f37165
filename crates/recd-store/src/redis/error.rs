//! How Redis errors map onto [`StoreError`]: unreachable or temporarily refusing (loading its
//! data, busy running a script, out of memory, unable to persist, a cluster slot moving or
//! failing over) → `Unavailable` (503, retry later), the rest → `Internal`.

use redis::{ErrorKind, RedisError, ServerErrorKind};

use crate::StoreError;

/// Error codes with which a Redis refuses a command for now: loading its dataset, busy with
/// a slow script or function, out of memory, failing to persist (MISCONF), or a cluster
/// state that heals by itself.
const TRANSIENT_CODES: &[&str] = &[
    "LOADING",
    "BUSY",
    "OOM",
    "MISCONF",
    "TRYAGAIN",
    "CLUSTERDOWN",
    "MASTERDOWN",
    "READONLY",
    "NOREPLICAS",
    // A redirect inside an aborted transaction (`MULTI` queued before a failover moved the
    // slot): the cluster client follows a redirect of a single command, not these.
    "MOVED",
    "ASK",
];

/// Whether the error, or any command's error inside a pipeline or an aborted transaction
/// (`EXECABORT` after a queued command got `LOADING`, say), carries a transient code.
fn has_transient_code(e: &RedisError) -> bool {
    e.clone().into_server_errors().is_some_and(|errors| {
        errors
            .iter()
            .any(|(_, s)| TRANSIENT_CODES.contains(&s.code()))
    })
}

/// Classifies a Redis error: anything that retrying later may fix is `Unavailable`.
pub(crate) fn from_redis(e: RedisError) -> StoreError {
    let transient = e.is_io_error()
        || has_transient_code(&e)
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
                    // A redirect left after the cluster client's retries: the slot's
                    // master is failing over or moving, or is down.
                    | ServerErrorKind::Moved
                    | ServerErrorKind::Ask
            ) | ErrorKind::ClusterConnectionNotFound
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
    // "Unknown index name" parses as code `Unknown`, detail "index name": compare the
    // words without the quotes and colon the error's display adds.
    let text = e.to_string().to_ascii_lowercase().replace(['"', ':'], "");
    text.contains("no such index") || text.contains("unknown index name")
}

/// An `Internal` error for a reply that does not have the expected shape.
pub(crate) fn bad_reply(what: &str) -> StoreError {
    StoreError::Internal(format!("unexpected redis reply: {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_that_heal_are_unavailable() {
        for code in ["BUSY", "LOADING", "OOM", "MISCONF"] {
            let e = redis::make_extension_error(code.into(), Some("try later".into()));
            assert!(
                matches!(from_redis(e), StoreError::Unavailable(_)),
                "{code} must be unavailable"
            );
        }
        let e = redis::make_extension_error("WRONGTYPE".into(), None);
        assert!(matches!(from_redis(e), StoreError::Internal(_)));
    }

    #[test]
    fn a_missing_index_is_recognised_in_both_spellings() {
        let unknown = redis::make_extension_error("Unknown".into(), Some("index name".into()));
        assert!(is_missing_index(&unknown), "{unknown}");
        let alias = redis::make_extension_error("idx".into(), Some("no such index".into()));
        assert!(is_missing_index(&alias), "{alias}");
        let other = redis::make_extension_error("ERR".into(), Some("syntax error".into()));
        assert!(!is_missing_index(&other));
    }
}
