//! The fold-in update end to end, on both backends: an event re-solves the user's ALS
//! vector with the item vectors fixed, and the next answer is ranked by it.

use serde_json::{Value, json};

use crate::redis::{cluster_or_skip, redis_demo, redis_or_skip, stop_cluster, stop_redis};
use crate::server::{Server, data_dir, ids};

/// The fold-in's share of the query in these tests: a value no decayed-average blend gives
/// after one click (0.8 · 2 / (2 + 1)), so the answer shows which rule ranked it.
const SHARE: &str = "0.25";

fn envs(extra: &[(&'static str, String)]) -> Vec<(&'static str, String)> {
    let mut out = vec![
        ("RECD_MODEL__SESSION__UPDATE", "fold_in".to_string()),
        ("RECD_MODEL__SESSION__FOLD_IN__SHARE", SHARE.to_string()),
    ];
    out.extend(extra.iter().cloned());
    out
}

async fn explained(s: &Server, user: &str) -> Value {
    s.recommend(json!({"user_id": user, "count": 10, "explain": true}))
        .await
}

/// A trained user's list, then events: the next answers come from the folded-in vector
/// (blended at `SHARE` with the long-term one) and change with each event; a cold visitor
/// is served by the fold-in of their single click alone.
async fn an_event_changes_the_list_through_the_fold_in(s: &Server) {
    // user-1 gets a trained long-term vector (the demo trains none): an item's vector.
    let (_, item) = s.get("/v1/items/sku-3?include_vector=true").await;
    let (status, v) = s
        .put(
            "/v1/admin/vectors",
            json!({"items": [], "users": [{"id": "user-1", "vector": item["vector"]}]}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let before = explained(s, "user-1").await;
    assert_eq!(before["source"], "personalized", "{before}");
    let q = &before["stages"]["query"];
    assert_eq!(
        (q["update"].as_str(), q["has_long_term"].as_bool()),
        (Some("fold_in"), Some(true)),
        "{before}"
    );
    let first = ids(&before);

    // Three clicks on items far down the list: the fold-in now answers, at its share.
    let far: Vec<String> = {
        let a = s
            .recommend(json!({"user_id": "user-1", "count": 200}))
            .await;
        ids(&a).into_iter().rev().take(3).collect()
    };
    for item in &far {
        s.event("user-1", item, "click").await;
    }
    let after = explained(s, "user-1").await;
    let q = &after["stages"]["query"];
    assert_eq!(q["has_fold_in"], true, "{after}");
    assert_eq!(q["session_share"].as_f64(), SHARE.parse().ok(), "{after}");
    assert_ne!(ids(&after), first, "the events changed nothing");

    // A visitor with no history: one click, and the fold-in alone is the query.
    s.event("fold-visitor", &first[0], "click").await;
    let v = explained(s, "fold-visitor").await;
    assert_eq!(v["source"], "personalized", "{v}");
    let q = &v["stages"]["query"];
    assert_eq!(
        (q["has_fold_in"].as_bool(), q["session_share"].as_f64()),
        (Some(true), Some(1.0)),
        "{v}"
    );
    let (status, u) = s.get("/v1/users/fold-visitor").await;
    assert_eq!((status, u["counters"]["click"].as_u64()), (200, Some(1)));
}

#[tokio::test(flavor = "multi_thread")]
async fn embedded_folds_events_in() {
    let dir = data_dir("foldin");
    let envs = envs(&[]);
    let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let s = Server::demo(&dir, &envs);
    an_event_changes_the_list_through_the_fold_in(&s).await;
}

/// A demo server on the redis backend at `url` (a prefix of its own), under the fold-in.
fn fold_in_demo(url: &str, name: &str) -> Server {
    redis_demo(url, name, &envs(&[]))
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_folds_events_in() {
    let Some(url) = redis_or_skip() else {
        return;
    };
    let s = fold_in_demo(&url, "foldin-redis");
    an_event_changes_the_list_through_the_fold_in(&s).await;
    drop(s);
    if let Some(port) = url.rsplit(':').next().and_then(|p| p.parse().ok()) {
        stop_redis(port);
    }
}

/// The same on a 3-master Redis Cluster: the counter of the item vectors under the
/// deployment's tag, `YᵀY` over every shard, the items' vectors from their shards.
#[tokio::test(flavor = "multi_thread")]
async fn redis_cluster_folds_events_in() {
    let Some(url) = cluster_or_skip() else {
        return;
    };
    let s = fold_in_demo(&url, "foldin-cluster");
    an_event_changes_the_list_through_the_fold_in(&s).await;
    drop(s);
    stop_cluster(&url);
}
