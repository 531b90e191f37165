//! New and cold items end to end, on both backends: after `recd train` makes a model live,
//! an item without a vector and without content gets one from its first interactions
//! (the item fold-in, at `min_interactions` users) and is then in the index, its
//! neighbours' `/similar` finding it;
//! an item with content and no interaction gets one from the content map at its upsert.

use std::process::Command;

use serde_json::{Value, json};

use crate::redis::{redis_demo, redis_or_skip, stop_redis};
use crate::server::{Server, data_dir, ids};

/// `recd train --target` against `s`: a live model version (its vectors, its content map).
fn train(s: &Server) {
    let out = Command::new(env!("CARGO_BIN_EXE_recd"))
        .args([
            "train",
            "--target",
            &s.url(""),
            "--iterations",
            "4",
            "--force",
        ])
        .env("RECD_LOG", "warn")
        .output()
        .expect("run recd train");
    assert!(
        out.status.success(),
        "recd train: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn vector(s: &Server, id: &str) -> Option<Vec<f64>> {
    let (status, item) = s.get(&format!("/v1/items/{id}?include_vector=true")).await;
    assert_eq!(status, 200, "{item}");
    item["vector"]
        .as_array()
        .map(|v| v.iter().filter_map(Value::as_f64).collect())
}

async fn similar(s: &Server, id: &str, count: usize) -> Vec<String> {
    let (status, a) = s
        .post(&format!("/v1/items/{id}/similar"), json!({"count": count}))
        .await;
    assert_eq!(status, 200, "{a}");
    ids(&a)
}

async fn new_items_get_vectors(s: &Server) {
    train(s);
    // A new item with no content the map knows (no tags, no title): only events place it.
    let (status, v) = s
        .put(
            "/v1/items",
            json!({"items": [{"id": "fresh-1", "price": 10.0}]}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(vector(s, "fresh-1").await, None);
    // Below min_interactions (3): still nothing.
    s.event("user-1", "fresh-1", "purchase").await;
    s.event("user-2", "fresh-1", "purchase").await;
    assert_eq!(vector(s, "fresh-1").await, None, "folded in before 3 users");
    s.event("user-3", "fresh-1", "purchase").await;
    let y = vector(s, "fresh-1")
        .await
        .expect("a vector after 3 users' events");
    assert!(y.iter().any(|x| *x != 0.0));
    // It is in the index now. Its twin, touched by the same users, folds in to the same
    // vector: each is the other's nearest neighbour, whose /similar finds it first.
    assert!(!similar(s, "fresh-1", 5).await.is_empty());
    let (status, v) = s
        .put(
            "/v1/items",
            json!({"items": [{"id": "fresh-1b", "price": 11.0}]}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    for u in ["user-1", "user-2", "user-3"] {
        s.event(u, "fresh-1b", "purchase").await;
    }
    assert_eq!(
        similar(s, "fresh-1b", 5).await.first().map(String::as_str),
        Some("fresh-1")
    );
    assert_eq!(
        similar(s, "fresh-1", 5).await.first().map(String::as_str),
        Some("fresh-1b")
    );

    // A trained item's vector is never replaced by a fold-in.
    let (_, trained) = s.get("/v1/items/sku-5?include_vector=true").await;
    for u in ["user-4", "user-5", "user-6"] {
        s.event(u, "sku-5", "purchase").await;
    }
    let (_, still) = s.get("/v1/items/sku-5?include_vector=true").await;
    assert_eq!(still["vector"], trained["vector"]);

    // Content only: a new item with a catalog item's category, brand and title gets a
    // vector at its upsert, next to items like it.
    let (_, like) = s.get("/v1/items/sku-7").await;
    let mut item = json!({"id": "fresh-2"});
    for f in ["category", "brand", "title"] {
        item[f] = like[f].clone();
    }
    let (status, v) = s.put("/v1/items", json!({"items": [item]})).await;
    assert_eq!(status, 200, "{v}");
    vector(s, "fresh-2")
        .await
        .expect("a content vector at the upsert");
    assert!(!similar(s, "fresh-2", 5).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn embedded_places_new_items() {
    let dir = data_dir("newitems");
    let s = Server::demo(&dir, &[]);
    new_items_get_vectors(&s).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_places_new_items() {
    let Some(url) = redis_or_skip() else {
        return;
    };
    let s = redis_demo(&url, "newitems-redis", &[]);
    new_items_get_vectors(&s).await;
    drop(s);
    if let Some(port) = url.rsplit(':').next().and_then(|p| p.parse().ok()) {
        stop_redis(port);
    }
}
