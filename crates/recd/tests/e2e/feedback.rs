//! Exclusions and negative feedback end to end: a user who rated far more items than the
//! recent window holds never gets one of them back, `hide` and `dislike` take an item out
//! for good, and `dislike` turns the session away from it. On the embedded backend and,
//! when a Redis can run here, the redis one: both must behave alike.

use std::collections::HashSet;

use serde_json::{Value, json};

use crate::redis::{redis_demo, redis_or_skip};
use crate::server::{Server, data_dir, ids};

/// Rates every item of `rounds` successive lists of 100 (each list the user's best
/// recommendations at that moment), 300 items in all, far more than the 200 recent
/// items; then no list ever holds one of them.
async fn rated_items_never_come_back(s: &Server) {
    let user = "heavy-rater";
    let mut rated: HashSet<String> = HashSet::new();
    for round in 0..3 {
        let a = s
            .recommend(json!({"user_id": user, "count": 100, "use_cache": false}))
            .await;
        let got = ids(&a);
        assert_eq!(got.len(), 100, "round {round}: {a}");
        for id in &got {
            assert!(
                !rated.contains(id),
                "round {round}: rated item {id} came back"
            );
        }
        let events: Vec<Value> = got
            .iter()
            .map(|id| json!({"user_id": user, "item_id": id, "type": "rating", "value": 4.0}))
            .collect();
        let (status, v) = s.post("/v1/events", json!({ "events": events })).await;
        assert_eq!(status, 200, "{v}");
        rated.extend(got);
    }
    let (_, u) = s.get(&format!("/v1/users/{user}")).await;
    assert_eq!(u["counters"]["rating"], 300, "{u}");
    assert_eq!(u["excluded_items"], 300, "{u}");
    assert_eq!(u["recent_items"].as_array().map(Vec::len), Some(200));
    for count in [10, 100, 500] {
        let a = s
            .recommend(json!({"user_id": user, "count": count, "use_cache": false}))
            .await;
        assert_eq!(a["source"], "personalized");
        let back: Vec<String> = ids(&a)
            .into_iter()
            .filter(|id| rated.contains(id))
            .collect();
        assert!(
            back.is_empty(),
            "count {count}: rated items came back: {back:?}"
        );
        assert_eq!(ids(&a).len(), count, "exclusions must not shorten the list");
    }
}

fn vector(item: &Value) -> Vec<f64> {
    item["vector"]
        .as_array()
        .expect("vector")
        .iter()
        .map(|x| x.as_f64().expect("number"))
        .collect()
}

fn score_of(answer: &Value, id: &str) -> Option<f64> {
    answer["items"]
        .as_array()?
        .iter()
        .find(|i| i["id"] == id)
        .and_then(|i| i["score"].as_f64())
}

/// `hide` and `dislike` take the item out for good; `dislike` also lowers the scores of
/// the items most like it, `hide` moves nothing.
async fn negative_feedback(s: &Server) {
    let user = "picky";
    let ask = || s.recommend(json!({"user_id": user, "count": 50, "use_cache": false}));
    s.event(user, "sku-17", "click").await;
    let before = ask().await;
    let list = ids(&before);
    let disliked = list[0].clone();
    let hidden = list[1].clone();

    // hide: gone (from a cached list too), counted, the session untouched
    let cached = s.recommend(json!({"user_id": user, "count": 50})).await;
    assert!(ids(&cached).contains(&hidden));
    let (_, u) = s.get(&format!("/v1/users/{user}")).await;
    let norm = u["session_vector_norm"].as_f64().expect("norm");
    s.event(user, &hidden, "hide").await;
    let (_, u) = s.get(&format!("/v1/users/{user}")).await;
    assert_eq!(u["counters"]["hide"], 1, "{u}");
    assert_eq!(u["session_vector_norm"].as_f64(), Some(norm));
    let after_hide = ask().await;
    assert!(!ids(&after_hide).contains(&hidden));
    let cached = s.recommend(json!({"user_id": user, "count": 50})).await;
    assert!(
        !ids(&cached).contains(&hidden),
        "a hidden item came back from the cache"
    );

    // dislike: gone, and the items most like it lose score
    let (_, d) = s
        .get(&format!("/v1/items/{disliked}?include_vector=true"))
        .await;
    let dv = vector(&d);
    let mut like_it: Vec<(f64, String)> = Vec::new();
    for id in list.iter().filter(|id| **id != disliked && **id != hidden) {
        let (_, it) = s.get(&format!("/v1/items/{id}?include_vector=true")).await;
        let dot: f64 = vector(&it).iter().zip(&dv).map(|(a, b)| a * b).sum();
        like_it.push((dot, id.clone()));
    }
    like_it.sort_by(|a, b| b.0.total_cmp(&a.0));
    let closest = like_it[0].1.clone();
    let was = score_of(&after_hide, &closest).expect("closest item listed");
    s.event(user, &disliked, "dislike").await;
    let after = s
        .recommend(json!({"user_id": user, "count": 200, "use_cache": false}))
        .await;
    assert!(
        !ids(&after).contains(&disliked),
        "a disliked item came back"
    );
    assert!(!ids(&after).contains(&hidden), "a hidden item came back");
    let now = score_of(&after, &closest).unwrap_or(f64::NEG_INFINITY);
    assert!(
        now < was,
        "the item most like the disliked one scored {was} before the dislike, {now} after"
    );
    let (_, u) = s.get(&format!("/v1/users/{user}")).await;
    assert_eq!(u["counters"]["dislike"], 1, "{u}");
    assert_eq!(u["excluded_items"], 2, "{u}");
    // a skip is not an exclusion
    let kept = ids(&after)[0].clone();
    s.event(user, &kept, "skip").await;
    let (_, u) = s.get(&format!("/v1/users/{user}")).await;
    assert_eq!(
        (u["counters"]["skip"].as_u64(), u["excluded_items"].as_u64()),
        (Some(1), Some(2))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn embedded_exclusions_and_negative_feedback() {
    let dir = data_dir("feedback");
    let s = Server::demo(&dir, &[]);
    rated_items_never_come_back(&s).await;
    negative_feedback(&s).await;
    drop(s);
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_exclusions_and_negative_feedback() {
    let Some(url) = redis_or_skip() else {
        return;
    };
    let s = redis_demo(&url, "feedback-redis", &[]);
    rated_items_never_come_back(&s).await;
    negative_feedback(&s).await;
}
