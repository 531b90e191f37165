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

/// A data dir keeps its model registry across a restart (records, chunks, the live
/// version and the version counter).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_model_registry_survives_a_restart() {
    use recd_store::ModelRecord;

    let dir = tempfile::tempdir().expect("tempdir");
    let seq = {
        let store = durable(dir.path());
        let seq = store.next_model_seq().await.expect("seq");
        store
            .put_model_chunk(seq, 0, vec![1, 2, 3])
            .await
            .expect("chunk");
        store
            .put_model(ModelRecord {
                seq,
                chunks: 1,
                info: serde_json::json!({"k": "v"}),
            })
            .await
            .expect("record");
        store.set_live_model(seq).await.expect("live");
        seq
    };
    let store = durable(dir.path());
    let listed = store.models().await.expect("models");
    assert_eq!(listed.live, Some(seq));
    assert_eq!(listed.models.len(), 1);
    assert_eq!(listed.models[0].info["k"], "v");
    assert_eq!(
        store.model_chunk(seq, 0).await.expect("chunk"),
        Some(vec![1, 2, 3])
    );
    assert!(store.next_model_seq().await.expect("seq") > seq);
}
