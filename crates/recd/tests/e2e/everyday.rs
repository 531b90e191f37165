//! The everyday endpoints of API.md v2 on the real binary.

use serde_json::json;

use crate::server::{Server, data_dir, ids};

#[tokio::test(flavor = "multi_thread")]
async fn batch_recommend_answers_in_order_with_errors_in_place() {
    let dir = data_dir("batch");
    let s = Server::demo(&dir, &[]);
    let single = s
        .recommend(json!({"user_id": "user-1", "count": 5, "use_cache": false}))
        .await;
    let (status, body) = s
        .post(
            "/v1/recommend/batch",
            json!({"requests": [
                {"user_id": "user-1", "count": 5, "use_cache": false},
                {"user_id": "user-2", "count": 0},
                {"user_id": "never-seen", "count": 3, "filter": {"in_stock": true}},
                {"user": "typo"}
            ]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let results = body["results"].as_array().expect("results");
    assert_eq!(results.len(), 4);
    assert_eq!(results[0]["user_id"], "user-1");
    assert_eq!(
        ids(&results[0]),
        ids(&single),
        "same answer as a single request"
    );
    assert_eq!(results[1]["error"]["code"], "invalid_argument", "{body}");
    assert_eq!(results[2]["source"], "popular");
    assert!(ids(&results[2]).len() == 3);
    assert_eq!(results[3]["error"]["code"], "invalid_argument", "{body}");
    let too_many: Vec<_> = (0..1001)
        .map(|i| json!({"user_id": format!("u{i}")}))
        .collect();
    let (status, body) = s
        .post("/v1/recommend/batch", json!({ "requests": too_many }))
        .await;
    assert_eq!(status, 400, "{body}");
    let _ = std::fs::remove_dir_all(&dir);
}
