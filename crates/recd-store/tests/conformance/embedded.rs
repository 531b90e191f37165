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

/// A data dir keeps the live version's transition table across a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_transitions_survive_a_restart() {
    use recd_store::ModelRecord;

    let dir = tempfile::tempdir().expect("tempdir");
    let next = vec![("n".to_string(), 0.5f32), ("m".to_string(), 0.25)];
    {
        let store = durable(dir.path());
        let seq = store.next_model_seq().await.expect("seq");
        store
            .put_model_transitions(seq, vec![("x".into(), next.clone())])
            .await
            .expect("write");
        store
            .put_model(ModelRecord {
                seq,
                chunks: 0,
                info: serde_json::json!({}),
            })
            .await
            .expect("record");
        store.set_live_model(seq).await.expect("live");
        assert_eq!(
            store.transitions(&["x".into()]).await.expect("read"),
            vec![next.clone()]
        );
    }
    let store = durable(dir.path());
    assert_eq!(
        store
            .transitions(&["x".into(), "n".into()])
            .await
            .expect("read"),
        vec![next, vec![]]
    );
}

/// Users inactive past the TTL are forgotten by the sweep (their state, not their events),
/// one shard per call; active ones stay; a reopened data dir neither brings the expired
/// back nor loses the new layout's exclusions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inactive_users_expire_and_stay_expired_after_a_reopen() {
    use recd_core::EventType;

    use crate::checks::{hour_ttl, now_ms};
    use crate::support::event;

    let dir = tempfile::tempdir().expect("tempdir");
    let open = || {
        EmbeddedStore::open(
            dir.path(),
            Some(crate::support::schema()),
            hour_ttl(),
            EmbeddedOptions::default(),
        )
        .expect("durable store")
    };
    let store = open();
    let users: Vec<String> = (0..300).map(|i| format!("u{i}")).collect();
    let events: Vec<_> = users
        .iter()
        .map(|u| event(u, "gone-item", EventType::Purchase, None, 1))
        .collect();
    store.apply_events(&events).await.unwrap();
    let sweep = |store: EmbeddedStore, at: i64| async move {
        let mut expired = 0;
        let mut calls = 0;
        loop {
            let e = store.expire_users(at).await.unwrap();
            expired += e.users;
            calls += 1;
            if e.pass_done {
                return (expired, calls);
            }
        }
    };
    // 59 minutes on: nobody is old enough
    let (expired, _) = sweep(store.clone(), now_ms() + 3_540_000).await;
    assert_eq!(expired, 0);
    // an hour and a millisecond after the latest write, everyone is gone
    let mut latest = 0;
    for u in &users {
        latest = latest.max(store.get_user(u).await.unwrap().unwrap().active_ms);
    }
    // every call checked one shard: a pass is bounded work per call
    let (expired, calls) = sweep(store.clone(), latest + 3_600_001).await;
    assert_eq!(calls, 64);
    assert_eq!(expired, 300);
    assert_eq!(store.counts().await.unwrap().users, 0);
    assert!(store.get_user("u3").await.unwrap().is_none());
    // the event log keeps their events (training data)
    assert_eq!(store.events().await.unwrap().len(), 300);
    // one comes back
    store
        .apply_events(&[event("u7", "x", EventType::View, None, 2)])
        .await
        .unwrap();
    let u7 = store.get_user("u7").await.unwrap().unwrap();
    assert_eq!(u7.counters.purchase, 0, "an expired user starts afresh");
    assert!(u7.excluded.is_empty());
    drop(store);
    let store = open();
    assert_eq!(store.counts().await.unwrap().users, 1);
    assert!(store.get_user("u3").await.unwrap().is_none());
    let back = store.get_user("u7").await.unwrap().unwrap();
    assert_eq!(back, u7);
}
