//! The conformance suite on the embedded backend, in memory and durable (write log +
//! redb, with a checkpoint every few KiB of log so that checkpoints run under the checks'
//! writes: reads must not care where a write is, log or redb).

use std::sync::Arc;

use recd_core::Schema;
use recd_store::embedded::{EmbeddedOptions, EmbeddedStore};
use recd_store::{ModelSettings, Store};

/// A fresh in-memory store.
pub async fn make(schema: Schema, settings: ModelSettings) -> Option<Arc<dyn Store>> {
    Some(Arc::new(
        EmbeddedStore::in_memory(schema, settings).expect("in-memory store"),
    ))
}

crate::conformance_tests!(make);

/// The suite again on durable stores.
mod durable_suite {
    use super::*;

    /// A fresh durable store in its own dir under the target's tmp dir (kept: the store
    /// outlives the constructor).
    pub async fn make(schema: Schema, settings: ModelSettings) -> Option<Arc<dyn Store>> {
        let dir = tempfile::Builder::new()
            .prefix("conformance-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .expect("tempdir")
            .keep();
        let options = EmbeddedOptions {
            checkpoint_bytes: 4096,
            ..EmbeddedOptions::default()
        };
        Some(Arc::new(
            EmbeddedStore::open(&dir, Some(schema), settings, options).expect("durable store"),
        ))
    }

    crate::conformance_tests!(make);
}

/// A durable store in `dir`.
fn durable(dir: &std::path::Path) -> Arc<dyn Store> {
    Arc::new(
        EmbeddedStore::open(
            dir,
            Some(crate::support::schema()),
            crate::support::settings(),
            EmbeddedOptions::default(),
        )
        .expect("durable store"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_rebuild_sessions() {
    let dir = tempfile::tempdir().expect("tempdir");
    crate::checks::rebuild_sessions(&*durable(dir.path())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_rebuild_sessions_race_events() {
    let dir = tempfile::tempdir().expect("tempdir");
    crate::checks::rebuild_sessions_race_events(durable(dir.path())).await;
}
