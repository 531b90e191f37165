//! Bad input: a clear 400 in the API's error shape, nothing written, the server keeps serving.

use serde_json::{Value, json};

use crate::server::{Server, data_dir};

fn assert_invalid(status: u16, body: &Value, what: &str) {
    assert_eq!(status, 400, "{what}: {body}");
    assert_eq!(body["error"]["code"], "invalid_argument", "{what}: {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{what}: {body}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_are_400s_and_change_nothing() {
    let dir = data_dir("bad");
    let s = Server::demo(
        &dir,
        &[
            ("RECD_SERVER__BODY_LIMIT_BYTES", "65536"),
            ("RECD_SERVER__MAX_BATCH", "4"),
        ],
    );
    let (_, before) = s.get("/health").await;
    let (_, sku1_before) = s.get("/v1/items/sku-1?include_vector=true").await;
    let (_, user1_before) = s.get("/v1/users/user-1").await;
    let long_id = "x".repeat(257);
    let v63 = vec![0.1f32; 63];
    let mut v_nan = vec![json!(0.1); 64];
    v_nan[3] = json!("NaN");
    let recommend_cases = [
        json!({"user_id": "u", "count": 0}),
        json!({"user_id": "u", "count": 1001}),
        json!({"user_id": "u", "count": -1}),
        json!({"user_id": "u", "count": "ten"}),
        json!({"user_id": "u\u{7}"}),
        json!({"user_id": long_id}),
        json!({"user_id": ""}),
        json!({"count": 5}),
        json!({"user_id": "u", "unknown": true}),
        json!({"user_id": "u", "filter": {"colour": {"any": ["red"]}}}),
        json!({"user_id": "u", "filter": {"price": {"any": ["1"]}}}),
        json!({"user_id": "u", "filter": {"category": {"gte": 1}}}),
        json!({"user_id": "u", "filter": {"in_stock": "yes"}}),
        json!({"user_id": "u", "filter": {"title": {"match": 5}}}),
        json!({"user_id": "u", "filter": []}),
        json!({"user_id": "u", "diversity": {"field": "price", "max_per_value": 2}}),
        json!({"user_id": "u", "diversity": {"field": "category", "max_per_value": 0}}),
        json!({"user_id": "u", "exclude": ["ok", "bad\n"]}),
    ];
    for case in recommend_cases {
        let (status, body) = s.post("/v1/recommend", case.clone()).await;
        assert_invalid(status, &body, &case.to_string());
    }
    for raw in ["{", "not json", "[1,2]", "{\"user_id\":\"u\"} trailing", ""] {
        let (status, body) = s.post_raw("/v1/recommend", raw).await;
        assert_invalid(status, &body, raw);
    }
    let item_cases = [
        json!({"items": [{"id": "ok-1", "vector": vec![0.1f32; 64]}, {"id": "bad-1", "vector": v63}]}),
        json!({"items": [{"id": "ok-1"}, {"id": "bad-2", "vector": v_nan}]}),
        json!({"items": [{"id": "ok-1"}, {"id": "bad-3", "colour": "red"}]}),
        json!({"items": [{"id": "ok-1"}, {"id": "bad-4", "price": "cheap"}]}),
        json!({"items": [{"id": "ok-1"}, {"id": "bad-5", "in_stock": 1}]}),
        json!({"items": [{"id": "ok-1"}, {"id": "bad\u{0}6"}]}),
        json!({"items": [{"id": "ok-1"}, {"vector": vec![0.1f32; 64]}]}),
        json!({"items": [{"id": "ok-1"}, {"id": "bad-7", "vector": vec![0.0f32; 64]}]}),
        json!({"items": {"id": "ok-1"}}),
        json!({"things": []}),
    ];
    for case in item_cases {
        let (status, body) = s.put("/v1/items", case.clone()).await;
        assert_invalid(status, &body, &case.to_string());
    }
    let (status, body) = s
        .put(
            "/v1/items",
            json!({"items": [{"id": "ok-1"}, {"id": "bad-1", "price": "x"}]}),
        )
        .await;
    assert_invalid(status, &body, "per-item details");
    assert_eq!(body["error"]["details"][0]["index"], 1);
    assert_eq!(body["error"]["details"][0]["id"], "bad-1");
    let event_cases = [
        json!({"events": [{"user_id": "ghost", "item_id": "sku-1", "type": "view"}, {"user_id": "ghost", "item_id": "sku-1", "type": "like"}]}),
        json!({"events": [{"user_id": "ghost", "item_id": "sku-1", "type": "view"}, {"user_id": "ghost", "item_id": "sku-1", "type": "rating", "value": 9}]}),
        json!({"events": [{"user_id": "ghost", "item_id": "sku-1", "type": "dwell"}]}),
        json!({"events": [{"user_id": "ghost", "item_id": "sku-1", "type": "view", "timestamp": "yesterday"}]}),
        json!({"events": [{"user_id": "ghost", "item_id": "sku-1", "type": "view", "extra": 1}]}),
        json!({"events": [{"user_id": "ghost", "type": "view"}]}),
    ];
    for case in event_cases {
        let (status, body) = s.post("/v1/events", case.clone()).await;
        assert_invalid(status, &body, &case.to_string());
    }
    // The admin API of `recd train --target`.
    let v64 = vec![0.1f32; 64];
    let one = |id: &str| json!({"id": id, "vector": v64});
    let vector_cases = [
        json!({"items": [one("sku-1"), {"id": "sku-2", "vector": vec![0.1f32; 63]}]}),
        json!({"items": [one("sku-1")], "users": [{"id": "user-1", "vector": v_nan}]}),
        json!({"items": [{"id": "sku-1", "vector": vec![0.0f32; 64]}]}),
        json!({"users": [{"id": "bad\n", "vector": v64}]}),
        json!({"users": [{"id": "user-1", "vector": "fast"}]}),
        json!({"items": [{"id": "sku-1"}]}),
        json!({"items": [{"vector": v64}]}),
        json!({"items": [{"id": 1, "vector": v64}]}),
        json!({"items": ["sku-1"]}),
        json!({"items": [{"id": "sku-1", "vector": v64, "title": "x"}]}),
        json!({"items": [one("sku-1"), one("sku-1")]}),
        json!({"items": [one("sku-1"), one("sku-2")], "users": [one("user-1"), one("user-2"), one("user-3")]}),
        json!({"items": {"id": "sku-1", "vector": v64}}),
        json!({"vectors": []}),
    ];
    for case in vector_cases {
        let (status, body) = s.put("/v1/admin/vectors", case.clone()).await;
        assert_invalid(status, &body, &case.to_string());
    }
    let (status, body) = s
        .put(
            "/v1/admin/vectors",
            json!({"items": [one("sku-1"), {"id": "sku-2", "vector": [1, 2]}]}),
        )
        .await;
    assert_invalid(status, &body, "per-vector details");
    let detail = &body["error"]["details"][0];
    assert_eq!(
        (&detail["list"], &detail["index"], &detail["id"]),
        (&json!("items"), &json!(1), &json!("sku-2")),
        "{body}"
    );
    let rebuild_cases = [
        json!({"users": ["user-1", "bad\u{7}"]}),
        json!({"users": [1]}),
        json!({"users": "user-1"}),
        json!({}),
        json!({"users": ["a", "b", "c", "d", "e"]}),
        json!({"users": [], "extra": 1}),
    ];
    for case in rebuild_cases {
        let (status, body) = s.post("/v1/admin/sessions/rebuild", case.clone()).await;
        assert_invalid(status, &body, &case.to_string());
    }
    for query in ["offset=-1", "offset=x", "from=3"] {
        let (status, body) = s.get(&format!("/v1/admin/events?{query}")).await;
        assert_invalid(status, &body, query);
    }

    // Over the body limit: 413, still with the code invalid_argument (API.md's codes are a
    // closed list; the status says which kind of invalid).
    let huge = json!({"items": [{"id": "big", "title": "x".repeat(70_000)}]});
    let (status, body) = s.put("/v1/items", huge).await;
    assert_eq!(status, 413, "body over the limit: {body}");
    assert_invalid(400, &body, "body over the limit");
    // Path ids.
    let (status, body) = s.get(&format!("/v1/items/{}", "y".repeat(300))).await;
    assert_invalid(status, &body, "long path id");
    let (status, body) = s.get("/v1/users/a%0Ab").await;
    assert_invalid(status, &body, "control char in path id");

    // Nothing was written, and the server still serves.
    let (_, after) = s.get("/health").await;
    assert_eq!(before["items"], after["items"]);
    assert_eq!(before["users"], after["users"]);
    assert_eq!(s.get("/v1/users/ghost").await.0, 404);
    assert_eq!(s.get("/v1/items/ok-1").await.0, 404);
    let (_, sku1_after) = s.get("/v1/items/sku-1?include_vector=true").await;
    assert_eq!(sku1_before, sku1_after);
    let (_, user1_after) = s.get("/v1/users/user-1").await;
    assert_eq!(user1_before, user1_after);
    assert_eq!(
        s.recommend(json!({"user_id": "user-1"})).await["source"],
        "personalized"
    );
    // Unknown routes use the error shape too.
    let (status, body) = s.get("/v2/nothing").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
}
