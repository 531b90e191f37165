//! Findings of the adversarial test (issue 9), each reproduced against the real binary:
//! a request must not brick a data dir, nor poison what every user is shown.

use serde_json::{Value, json};

use crate::server::{Server, data_dir, ids};

fn overflowing_vectors() -> Vec<Value> {
    let mut huge = vec![json!(0.1); 64];
    huge[0] = json!(1e19);
    // Each component is a finite f32, but the norm is too small to normalize (cosine).
    let tiny = vec![json!(1e-45); 64];
    vec![Value::from(huge), Value::from(tiny)]
}

#[tokio::test(flavor = "multi_thread")]
async fn a_vector_whose_norm_overflows_is_refused_and_the_data_dir_reopens() {
    let dir = data_dir("brick");
    // `always`: the restart below follows a kill, and this test is about validation, not
    // about what `everysec` keeps across one (the durability tests cover that).
    let envs = [("RECD_EMBEDDED__FSYNC", "always")];
    let s = Server::demo(&dir, &envs);
    for (n, vector) in overflowing_vectors().into_iter().enumerate() {
        let id = format!("brick-{n}");
        let (status, body) = s
            .put(
                "/v1/items",
                json!({"items": [{"id": id, "vector": vector.clone()}]}),
            )
            .await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"]["code"], "invalid_argument", "{body}");
        assert_eq!(s.get(&format!("/v1/items/{id}")).await.0, 404);
        let (status, body) = s
            .put(
                "/v1/admin/vectors",
                json!({"items": [{"id": "sku-1", "vector": vector.clone()}]}),
            )
            .await;
        assert_eq!(status, 400, "{body}");
        let (status, body) = s
            .put(
                "/v1/admin/vectors",
                json!({"users": [{"id": "user-1", "vector": vector}]}),
            )
            .await;
        assert_eq!(status, 400, "{body}");
    }
    let (_, sku1) = s.get("/v1/items/sku-1?include_vector=true").await;
    drop(s);
    // The same data dir serves again, with sku-1's vector untouched.
    let s = Server::start(&["serve", "--data-dir", dir.to_str().unwrap()], &envs);
    let (status, health) = s.get("/health").await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(s.get("/v1/items/sku-1?include_vector=true").await.1, sku1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_far_future_timestamp_is_refused_and_cannot_take_the_popular_list() {
    let dir = data_dir("poison");
    let s = Server::demo(&dir, &[]);
    let cold = json!({"user_id": "never-seen", "count": 10, "use_cache": false});
    let before = ids(&s.recommend(cold.clone()).await);
    let target = "sku-2999";
    assert!(!before.contains(&target.to_string()), "{before:?}");
    for ts in [json!("9999-12-31T23:59:59Z"), json!(253_402_300_799_000i64)] {
        let (status, body) = s
            .post(
                "/v1/events",
                json!({"events": [{"user_id": "attacker", "item_id": target, "type": "purchase", "timestamp": ts}]}),
            )
            .await;
        assert_eq!(status, 400, "{body}");
        assert!(
            body["error"]["details"][0]["message"]
                .as_str()
                .is_some_and(|m| m.contains("future")),
            "{body}"
        );
    }
    assert_eq!(s.get("/v1/users/attacker").await.0, 404, "nothing applied");
    assert_eq!(ids(&s.recommend(cold).await), before);
}
