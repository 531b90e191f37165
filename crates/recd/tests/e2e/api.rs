//! The API contract of API.md, end to end on the embedded backend.

use std::collections::HashSet;

use serde_json::{Value, json};

use crate::server::{Server, data_dir, ids};

fn vector_of(item: &Value) -> Vec<f64> {
    item["vector"]
        .as_array()
        .expect("vector")
        .iter()
        .filter_map(Value::as_f64)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn recommendations_keep_every_rule_of_the_contract() {
    let data = data_dir("contract");
    let s = Server::demo(&data, &[]);
    let filters = [
        json!(null),
        json!({"price": {"gte": 20, "lt": 80}, "in_stock": true}),
        json!({"or": [{"price": {"lt": 10}}, {"in_stock": false}]}),
        json!({"not": {"in_stock": true}}),
    ];
    for user in ["user-1", "user-2", "user-3", "never-seen"] {
        for filter in &filters {
            let mut body = json!({"user_id": user, "count": 20, "explain": true});
            if !filter.is_null() {
                body["filter"] = filter.clone();
            }
            let a = s.recommend(body).await;
            let items = a["items"].as_array().unwrap();
            assert!(!items.is_empty() && items.len() <= 20, "{a}");
            let unique: HashSet<_> = ids(&a).into_iter().collect();
            assert_eq!(unique.len(), items.len(), "duplicates in {a}");
            let scores: Vec<f64> = items.iter().map(|i| i["score"].as_f64().unwrap()).collect();
            assert!(
                scores.windows(2).all(|w| w[0] >= w[1]),
                "scores not sorted: {scores:?}"
            );
            for i in items {
                let it = &i["item"];
                assert!(it.get("vector").is_none());
                assert!(!i["reasons"].as_array().unwrap().is_empty());
                let price = it["price"].as_f64().unwrap();
                let stock = it["in_stock"].as_bool().unwrap();
                let ok = match filter
                    .get("price")
                    .map(|_| ())
                    .or(filter.get("or").map(|_| ()))
                {
                    _ if filter.is_null() => true,
                    _ if filter.get("or").is_some() => price < 10.0 || !stock,
                    _ if filter.get("not").is_some() => !stock,
                    _ => (20.0..80.0).contains(&price) && stock,
                };
                assert!(ok, "{it} fails {filter}");
            }
            let expected = if user == "never-seen" {
                "popular"
            } else {
                "personalized"
            };
            assert_eq!(a["source"], expected);
            assert!(a["stages"]["retrieve"]["merged"].as_u64().unwrap() >= items.len() as u64);
            let plan = &a["stages"]["retrieve"]["knn_plan"];
            if user == "never-seen" {
                assert!(plan.is_null(), "no vector query, no plan: {plan}");
            } else if filter.is_null() {
                assert_eq!(plan["plan"], "graph", "{plan}");
                assert_eq!(plan["allowed"], plan["indexed"], "{plan}");
                // The user's seen items (every demo item has a vector) are excluded inside
                // the search, and none of them is returned.
                let (_, u) = s.get(&format!("/v1/users/{user}")).await;
                let seen: HashSet<String> = u["recent_items"]
                    .as_array()
                    .expect("recent items")
                    .iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect();
                assert!(!seen.is_empty(), "{u}");
                let excluded = plan["excluded"].as_u64().unwrap_or(0);
                assert!(excluded >= seen.len() as u64, "{plan} {u}");
                assert!(ids(&a).iter().all(|id| !seen.contains(id)), "{a}");
                assert!(
                    plan["ef"].as_u64().unwrap()
                        >= a["stages"]["retrieve"]["knn_k"].as_u64().unwrap()
                );
            } else {
                assert!(
                    plan["allowed"].as_u64().unwrap() < plan["indexed"].as_u64().unwrap(),
                    "{plan}"
                );
            }
            assert!(a["took_ms"].as_f64().unwrap() >= 0.0);
            assert!(
                a["recommendation_id"]
                    .as_str()
                    .is_some_and(|r| !r.is_empty())
            );
        }
    }
    // `explain` says how the index searched: one category (a few % of the catalogue) is
    // scanned exactly (cheaper than a walk that admits so few nodes); a filter nothing passes
    // is not searched at all.
    let some = s.recommend(json!({"user_id":"user-1","count":1})).await;
    let category = some["items"][0]["item"]["category"].clone();
    let one = json!({"category": {"any": category}});
    let a = s
        .recommend(json!({"user_id":"user-1","count":5,"filter":one,"explain":true}))
        .await;
    let plan = &a["stages"]["retrieve"]["knn_plan"];
    assert_eq!(plan["plan"], "exact", "{a}");
    assert!(plan.get("ef").is_none(), "{plan}");
    let allowed = plan["allowed"].as_u64().unwrap();
    let indexed = plan["indexed"].as_u64().unwrap();
    assert!(allowed > 0 && allowed * 10 < indexed, "{plan}");
    let none = json!({"price": {"lt": -1}});
    let a = s
        .recommend(json!({"user_id":"user-1","count":5,"filter":none,"explain":true}))
        .await;
    assert_eq!(a["stages"]["retrieve"]["knn_plan"]["plan"], "none", "{a}");
    assert_eq!(a["stages"]["retrieve"]["knn_plan"]["allowed"], 0, "{a}");
    // A diversity cap holds.
    let a = s.recommend(json!({"user_id":"user-1","count":12,"diversity":{"field":"category","max_per_value":2}})).await;
    let mut per: std::collections::HashMap<String, usize> = Default::default();
    for i in a["items"].as_array().unwrap() {
        *per.entry(i["item"]["category"].to_string()).or_default() += 1;
    }
    assert!(per.values().all(|n| *n <= 2), "{per:?}");
    // The request's exclusions hold.
    let first = ids(&s.recommend(json!({"user_id":"user-1","count":5})).await);
    let again = ids(&s
        .recommend(json!({"user_id":"user-1","count":5,"exclude": first}))
        .await);
    assert!(again.iter().all(|id| !first.contains(id)));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cold_user_gets_popular_items_then_the_next_request_reflects_each_event() {
    let data = data_dir("realtime");
    let s = Server::demo(&data, &[]);
    let a = s.recommend(json!({"user_id":"visitor","count":10})).await;
    assert_eq!(a["source"], "popular");
    let (status, _) = s.get("/v1/users/visitor").await;
    assert_eq!(status, 404);

    // One click: the very next answer is personalized and close to the clicked item.
    let (_, clicked) = s.get("/v1/items/sku-17?include_vector=true").await;
    s.event("visitor", "sku-17", "click").await;
    let a = s.recommend(json!({"user_id":"visitor","count":10})).await;
    assert_eq!(a["source"], "personalized", "{a}");
    assert!(
        !ids(&a).contains(&"sku-17".to_string()),
        "a seen item came back"
    );
    let v17 = vector_of(&clicked);
    let mut close = 0;
    for id in ids(&a) {
        let (_, it) = s.get(&format!("/v1/items/{id}?include_vector=true")).await;
        let dot: f64 = vector_of(&it).iter().zip(&v17).map(|(x, y)| x * y).sum();
        if dot > 0.5 {
            close += 1;
        }
    }
    assert!(
        close >= 8,
        "only {close} of 10 are close to the clicked item"
    );

    // A purchase is excluded at once, and counted.
    let top = ids(&a)[0].clone();
    s.event("visitor", &top, "purchase").await;
    let b = s.recommend(json!({"user_id":"visitor","count":10})).await;
    assert!(!ids(&b).contains(&top));
    let (status, u) = s.get("/v1/users/visitor").await;
    assert_eq!(status, 200);
    assert_eq!(u["counters"]["click"], 1);
    assert_eq!(u["counters"]["purchase"], 1);
    assert_eq!(u["purchased"], json!([top]));
    assert!(u["session_vector_norm"].as_f64().unwrap() > 0.0);

    // Forgetting the user: 204, then unknown, then cold again.
    assert_eq!(s.delete("/v1/users/visitor").await, 204);
    assert_eq!(s.get("/v1/users/visitor").await.0, 404);
    assert_eq!(
        s.recommend(json!({"user_id":"visitor"})).await["source"],
        "popular"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn items_upsert_get_delete_and_similar() {
    let data = data_dir("items");
    let s = Server::demo(&data, &[]);
    let (_, sku0) = s.get("/v1/items/sku-0?include_vector=true").await;
    let twin = json!({"id":"twin-of-0","vector": sku0["vector"],"category":["rare-tag"],"price":1.5,"in_stock":true,"title":"Twin"});
    let (status, v) = s
        .put(
            "/v1/items",
            json!({"items": [twin, {"id":"no-vector","category":"rare-tag","title":"plain"}]}),
        )
        .await;
    assert_eq!((status, v["upserted"].as_u64()), (200, Some(2)));

    let (status, sim) = s.post("/v1/items/sku-0/similar", json!({"count": 5})).await;
    assert_eq!(status, 200, "{sim}");
    assert_eq!(ids(&sim)[0], "twin-of-0");
    assert!(!ids(&sim).contains(&"sku-0".to_string()));

    // A selective filter returns every match and nothing else.
    let a = s
        .recommend(
            json!({"user_id":"user-1","count":10,"filter":{"category":{"any":["rare-tag"]}}}),
        )
        .await;
    let mut got = ids(&a);
    got.sort();
    assert_eq!(got, ["no-vector", "twin-of-0"]);

    // An update without a vector keeps it; GET hides it unless asked.
    let (status, _) = s
        .put(
            "/v1/items",
            json!({"items": [{"id":"twin-of-0","category":"rare-tag","price":2.5}]}),
        )
        .await;
    assert_eq!(status, 200);
    let (_, t) = s.get("/v1/items/twin-of-0").await;
    assert_eq!(t["price"], 2.5);
    assert!(t.get("vector").is_none());
    let (_, t) = s.get("/v1/items/twin-of-0?include_vector=true").await;
    assert_eq!(t["vector"], sku0["vector"]);

    // Deleted: 404 everywhere and never recommended again.
    assert_eq!(s.delete("/v1/items/twin-of-0").await, 204);
    assert_eq!(s.delete("/v1/items/twin-of-0").await, 404);
    assert_eq!(s.get("/v1/items/twin-of-0").await.0, 404);
    let (_, sim) = s
        .post("/v1/items/sku-0/similar", json!({"count": 50}))
        .await;
    assert!(!ids(&sim).contains(&"twin-of-0".to_string()));
    let a = s
        .recommend(
            json!({"user_id":"user-1","count":10,"filter":{"category":{"any":["rare-tag"]}}}),
        )
        .await;
    assert_eq!(ids(&a), ["no-vector"]);
    assert_eq!(s.post("/v1/items/nope/similar", json!({})).await.0, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn operations_endpoints() {
    let data = data_dir("ops");
    let s = Server::demo(&data, &[]);
    let (status, h) = s.get("/health").await;
    assert_eq!(status, 200);
    assert_eq!(
        (
            h["status"].as_str(),
            h["backend"].as_str(),
            h["items"].as_u64()
        ),
        (Some("ok"), Some("embedded"), Some(3000))
    );
    assert!(h["users"].as_u64().unwrap() > 100);
    assert_eq!(s.get("/ready").await.0, 200);
    s.recommend(json!({"user_id":"user-1"})).await;
    let metrics = s.get_text("/metrics").await;
    assert!(
        metrics.contains(
            "recd_http_requests_total{method=\"POST\",path=\"/v1/recommend\",status=\"200\"}"
        ),
        "{metrics}"
    );
    for stage in ["user", "retrieve", "score", "rerank"] {
        assert!(
            metrics.contains(&format!(
                "recd_stage_duration_seconds_bucket{{stage=\"{stage}\""
            )),
            "no {stage} in {metrics}"
        );
    }
    let (_, doc) = s.get("/openapi.json").await;
    for path in [
        "/health",
        "/ready",
        "/metrics",
        "/openapi.json",
        "/v1/items",
        "/v1/items/{id}",
        "/v1/items/{id}/similar",
        "/v1/recommend",
        "/v1/events",
        "/v1/users/{id}",
        "/v1/admin/schema",
        "/v1/admin/events",
        "/v1/admin/vectors",
        "/v1/admin/sessions/rebuild",
    ] {
        assert!(
            doc["paths"].get(path).is_some(),
            "{path} missing from /openapi.json"
        );
    }
}

/// A broad filter on a catalogue large enough for 1-bit sketches (4,096 vectors and up) is
/// scanned through them: `explain` names the plan and how many vectors were scored exactly,
/// `/metrics` counts it, and the filter holds for every item returned.
#[tokio::test(flavor = "multi_thread")]
async fn a_broad_filter_is_scanned_through_the_sketches_and_explain_says_so() {
    let dir = data_dir("sketched");
    let dir_arg = dir.to_str().expect("utf-8 path");
    let s = Server::start(
        &[
            "demo",
            "--data-dir",
            dir_arg,
            "--items",
            "12000",
            "--users",
            "200",
            "--seed",
            "7",
        ],
        &[],
    );
    let sketch_scans = |metrics: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("recd_index_plan_total{plan=\"sketch_scan\"} "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    let before = sketch_scans(&s.get_text("/metrics").await);
    // About 45 % of the demo's prices are below 30: broad enough for the sketches, too
    // narrow for the graph walk to be cheaper.
    let filter = json!({"price": {"lt": 30}});
    let a = s
        .recommend(json!({"user_id": "user-1", "count": 10, "explain": true, "filter": filter}))
        .await;
    let plan = &a["stages"]["retrieve"]["knn_plan"];
    assert_eq!(plan["plan"], "sketch_scan", "{a}");
    let allowed = plan["allowed"].as_u64().expect("allowed");
    let indexed = plan["indexed"].as_u64().expect("indexed");
    let scored = plan["scored"].as_u64().expect("scored");
    assert!(allowed * 5 > indexed && allowed < indexed, "{plan}");
    // The sketches rule most of the allowed vectors out; the rest are scored exactly.
    assert!(scored > 0 && scored < allowed, "{plan}");
    let items = a["items"].as_array().expect("items");
    assert!(!items.is_empty(), "{a}");
    for i in items {
        let price = i["item"]["price"].as_f64().expect("price");
        assert!(price < 30.0, "{i} fails the filter");
    }
    let after = sketch_scans(&s.get_text("/metrics").await);
    assert!(after > before, "sketch_scan count {before} -> {after}");
    drop(s);
}
