//! The cache tiers end to end on the real binary: cached answers marked as such, bypass,
//! invalidation by events and item writes, a stampede computed once, and (redis mode) two
//! servers sharing L2 with invalidations reaching the other server's L1.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::server::{Server, data_dir, ids};

/// The value of the Prometheus sample `name{labels}` (0 when absent).
async fn metric(s: &Server, sample: &str) -> f64 {
    s.get_text("/metrics")
        .await
        .lines()
        .find_map(|l| l.strip_prefix(sample)?.trim().parse().ok())
        .unwrap_or(0.0)
}

const RECS_FILLS: &str = "recd_cache_fills_total{kind=\"recs\"}";

#[tokio::test(flavor = "multi_thread")]
async fn lists_are_cached_bypassed_and_invalidated() {
    let data = data_dir("cache");
    let s = Server::demo(&data, &[]);
    let ask = json!({"user_id": "user-3", "count": 10});

    let first = s.recommend(ask.clone()).await;
    assert_eq!(first["source"], "personalized");
    let second = s.recommend(ask.clone()).await;
    // A cached answer keeps how the list was built and says where it came from.
    assert_eq!(second["source"], "personalized");
    assert_eq!(second["cache"]["tier"], "l1");
    assert!(first.get("cache").is_none(), "{first}");
    assert_eq!(ids(&second), ids(&first));
    assert_eq!(second["items"], first["items"], "same scores and reasons");
    assert_ne!(second["recommendation_id"], first["recommendation_id"]);

    // Bypass, explain, and a different request shape all compute.
    let mut bypass = ask.clone();
    bypass["use_cache"] = json!(false);
    assert_eq!(s.recommend(bypass).await["source"], "personalized");
    let mut explain = ask.clone();
    explain["explain"] = json!(true);
    assert!(s.recommend(explain).await.get("stages").is_some());
    let mut other = ask.clone();
    other["count"] = json!(5);
    assert_eq!(s.recommend(other).await["source"], "personalized");

    // A view does not invalidate by default; a click does, before /v1/events answers.
    s.event("user-3", "sku-11", "view").await;
    assert!(s.recommend(ask.clone()).await.get("cache").is_some());
    s.event("user-3", "sku-11", "click").await;
    let after = s.recommend(ask.clone()).await;
    assert_eq!(after["source"], "personalized");
    assert!(after.get("cache").is_none(), "{after}");

    // A purchase drops the list and the item is never shown again.
    let top = ids(&after)[0].clone();
    s.event("user-3", &top, "purchase").await;
    let after = s.recommend(ask.clone()).await;
    assert!(after.get("cache").is_none(), "{after}");
    assert!(!ids(&after).contains(&top));

    // A deleted item leaves every cached list at once (another user's, too).
    let other_user = json!({"user_id": "user-4", "count": 10});
    let cached = s.recommend(other_user.clone()).await;
    assert!(s.recommend(other_user.clone()).await.get("cache").is_some());
    let victim = ids(&cached)[0].clone();
    assert_eq!(s.delete(&format!("/v1/items/{victim}")).await, 204);
    let after = s.recommend(other_user.clone()).await;
    assert!(after.get("cache").is_none(), "{after}");
    assert!(!ids(&after).contains(&victim));
}

#[tokio::test(flavor = "multi_thread")]
async fn item_details_are_cached_and_dropped_on_upsert_and_delete() {
    let data = data_dir("cache-items");
    let s = Server::demo(&data, &[]);
    let hits = "recd_cache_lookups_total{kind=\"item\",tier=\"l1\",result=\"hit\"}";

    // Warming: the most popular item's details are cached before anyone asked for them.
    let cold = s
        .recommend(json!({"user_id": "nobody-yet", "count": 1}))
        .await;
    assert_eq!(cold["source"], "popular");
    let top = ids(&cold)[0].clone();
    let before = metric(&s, hits).await;
    assert_eq!(s.get(&format!("/v1/items/{top}")).await.0, 200);
    assert_eq!(metric(&s, hits).await, before + 1.0, "{top} was not warmed");
    let (status, a) = s.get("/v1/items/sku-1").await;
    assert_eq!(status, 200);
    let before = metric(&s, hits).await;
    let (_, b) = s.get("/v1/items/sku-1").await;
    assert_eq!(a, b);
    assert!(
        metric(&s, hits).await > before,
        "the second read was not a hit"
    );

    let mut changed = a.clone();
    changed["title"] = json!("renamed by the cache test");
    let (status, _) = s.put("/v1/items", json!({"items": [changed]})).await;
    assert_eq!(status, 200);
    let (_, c) = s.get("/v1/items/sku-1").await;
    assert_eq!(c["title"], "renamed by the cache test");

    assert_eq!(s.delete("/v1/items/sku-1").await, 204);
    assert_eq!(s.get("/v1/items/sku-1").await.0, 404);
    // A cached "absent" is dropped by the upsert that creates the item.
    let (status, _) = s.put("/v1/items", json!({"items": [a]})).await;
    assert_eq!(status, 200);
    assert_eq!(s.get("/v1/items/sku-1").await.0, 200);
}

/// `n` concurrent identical requests spread over `servers`; every one must succeed.
async fn stampede(servers: &[&Server], body: Value, n: usize) -> Vec<Value> {
    let clients: Vec<(reqwest::Client, String)> = servers
        .iter()
        .map(|s| (s.client.clone(), format!("{}/v1/recommend", s.base)))
        .collect();
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let (client, url) = clients[i % clients.len()].clone();
            let (body, barrier) = (body.clone(), Arc::clone(&barrier));
            tokio::spawn(async move {
                barrier.wait().await;
                let resp = client.post(url).json(&body).send().await.expect("request");
                assert_eq!(resp.status().as_u16(), 200);
                resp.json::<Value>().await.expect("json")
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.expect("task"));
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stampede_on_a_cold_key_runs_the_pipeline_once() {
    let data = data_dir("cache-stampede");
    let s = Server::demo(&data, &[]);
    let before = metric(&s, RECS_FILLS).await;
    let body = json!({"user_id": "user-7", "count": 20});
    let answers = stampede(&[&s], body, 200).await;
    assert_eq!(metric(&s, RECS_FILLS).await - before, 1.0);
    let first = ids(&answers[0]);
    assert!(answers.iter().all(|a| ids(a) == first));
}

#[tokio::test(flavor = "multi_thread")]
async fn two_servers_share_l2_compute_once_and_invalidate_each_other() {
    let Some(url) = crate::redis::redis_or_skip() else {
        return;
    };
    let config_file = crate::server::scratch_file("cache-config", "toml");
    std::fs::write(&config_file, crate::redis::SCHEMA).expect("config");
    let config = config_file.to_str().expect("utf-8").to_string();
    let prefix = format!("e2ecache{}:", std::process::id());
    let envs = [
        ("RECD_REDIS__PREFIX", prefix.as_str()),
        ("RECD_CACHE__LOCK_WAIT_MS", "60000"),
        ("RECD_CACHE__LOCK_TTL_MS", "60000"),
    ];
    let dir = data_dir("cache-redis");
    let dir = dir.to_str().expect("utf-8");
    let redis = [
        "--backend",
        "redis",
        "--redis-url",
        &url,
        "--config",
        &config,
    ];
    let a = Server::start(
        &[
            &[
                "demo",
                "--data-dir",
                dir,
                "--items",
                "1500",
                "--users",
                "100",
                "--seed",
                "5",
            ],
            &redis[..],
        ]
        .concat(),
        &envs,
    );
    let b = Server::start(&[&["serve"], &redis[..]].concat(), &envs);

    // 200 concurrent requests for one cold key, half on each server: one pipeline run.
    let before = metric(&a, RECS_FILLS).await + metric(&b, RECS_FILLS).await;
    let body = json!({"user_id": "user-9", "count": 10});
    let answers = stampede(&[&a, &b], body.clone(), 200).await;
    let after = metric(&a, RECS_FILLS).await + metric(&b, RECS_FILLS).await;
    assert_eq!(after - before, 1.0);
    let first = ids(&answers[0]);
    assert!(answers.iter().all(|x| ids(x) == first));

    // b now has the list in L1; a click on a must reach it.
    assert_eq!(b.recommend(body.clone()).await["cache"]["tier"], "l1");
    a.event("user-9", "sku-3", "click").await;
    assert!(
        a.recommend(body.clone()).await.get("cache").is_none(),
        "read your writes on a"
    );
    let reached = async {
        loop {
            let x = b.recommend(body.clone()).await;
            if x["cache"]["tier"] != "l1" {
                return x;
            }
        }
    };
    let x = tokio::time::timeout(Duration::from_secs(30), reached)
        .await
        .expect("b kept serving its L1 entry after the invalidation");
    assert_eq!(x["cache"]["tier"], "l2", "b reads a's fresh entry: {x}");

    // An item deleted on b disappears from a's cached lists.
    let cached = a.recommend(body.clone()).await;
    let victim = ids(&cached)[0].clone();
    assert_eq!(b.delete(&format!("/v1/items/{victim}")).await, 204);
    let started = Instant::now();
    loop {
        let x = a.recommend(body.clone()).await;
        if !ids(&x).contains(&victim) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "a still shows the deleted item {victim}"
        );
    }

    // Redis memory is exported.
    assert!(metric(&a, "recd_redis_used_memory_bytes").await > 0.0);
}
