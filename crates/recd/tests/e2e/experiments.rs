//! Experiments on the real binary: strategies through the admin API, an A/B test whose
//! simulated users click more under one strategy, results that name it, and assignment and
//! counts that survive a restart; an interleaving experiment that credits the better ranker.

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::server::{Server, data_dir, ids};

/// A tiny deterministic generator, so the simulated clicks are the same on every run.
pub(crate) struct Lcg(pub(crate) u64);

impl Lcg {
    pub(crate) fn unit(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

async fn click(s: &Server, user: &str, answer: &Value, position: usize) {
    let item = &ids(answer)[position];
    let (status, body) = s
        .post(
            "/v1/events",
            json!({"events": [{"user_id": user, "item_id": item, "type": "click",
                               "recommendation_id": answer["recommendation_id"]}]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

pub(crate) fn variant<'a>(results: &'a Value, name: &str) -> &'a Value {
    results["variants"]
        .as_array()
        .and_then(|v| v.iter().find(|v| v["name"] == name))
        .unwrap_or_else(|| panic!("no variant {name}: {results}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ab_test_names_the_better_strategy_and_survives_a_restart() {
    let dir = data_dir("experiments-ab");
    let envs = [("RECD_EMBEDDED__FSYNC", "always")];
    let s = Server::demo(&dir, &envs);
    let (status, body) = s
        .put(
            "/v1/strategies/popular-first",
            json!({"ranking": {"similarity_weight": 0.0, "popularity_weight": 1.0}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = s.get("/v1/strategies").await;
    assert_eq!(status, 200);
    assert!(
        body["strategies"]["default"].is_object()
            && body["strategies"]["popular-first"].is_object(),
        "{body}"
    );
    // A bad experiment is a 400 and creates nothing.
    let (status, body) = s
        .post(
            "/v1/experiments",
            json!({"id": "bad", "kind": "ab", "variants": [{"name": "a", "strategy": "default"}, {"name": "b", "strategy": "nope"}]}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = s
        .post(
            "/v1/experiments",
            json!({"id": "e1", "kind": "ab", "metric": "click",
                   "variants": [{"name": "control", "strategy": "default", "weight": 0.5},
                                {"name": "treatment", "strategy": "popular-first", "weight": 0.5}]}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    // Before any traffic the results already have API.md's shape.
    let (status, fresh) = s.get("/v1/experiments/e1").await;
    assert_eq!(status, 200, "{fresh}");
    assert!(
        fresh["srm"]["p_value"].is_null() && fresh["srm"]["mismatch"] == false,
        "{fresh}"
    );
    assert!(
        fresh["sample_size"]["required_per_variant"].is_null(),
        "{fresh}"
    );
    assert_eq!(s.post("/v1/experiments/nope/stop", json!({})).await.0, 404);

    // Simulated users: a list from the treatment is clicked 45 % of the time, from the
    // control 15 % (the users see the variant only through what they are shown).
    let mut rng = Lcg(7);
    let mut assigned: HashMap<String, String> = HashMap::new();
    for u in 0..400 {
        let user = format!("sim-{u}");
        for _ in 0..2 {
            let a = s.recommend(json!({"user_id": user, "count": 10})).await;
            assert_eq!(a["experiment"], "e1", "{a}");
            let v = a["variant"].as_str().expect("variant").to_string();
            let expected_strategy = if v == "treatment" {
                "popular-first"
            } else {
                "default"
            };
            assert_eq!(a["strategy"], expected_strategy, "{a}");
            if let Some(before) = assigned.insert(user.clone(), v.clone()) {
                assert_eq!(before, v, "a user keeps their variant");
            }
            let p = if v == "treatment" { 0.45 } else { 0.15 };
            if rng.unit() < p && !ids(&a).is_empty() {
                click(&s, &user, &a, 0).await;
                // A second click on the same list does not count twice.
                click(&s, &user, &a, 0).await;
            }
        }
    }
    let (status, r) = s.get("/v1/experiments/e1").await;
    assert_eq!(status, 200, "{r}");
    let (c, t) = (variant(&r, "control"), variant(&r, "treatment"));
    let users = |v: &Value| v["users"].as_u64().unwrap();
    assert_eq!(users(c) + users(t), 400, "{r}");
    assert_eq!(
        c["impressions"].as_u64().unwrap() + t["impressions"].as_u64().unwrap(),
        800
    );
    assert!(c["clicks"].as_u64().unwrap() <= c["impressions"].as_u64().unwrap());
    assert!(
        t["ctr"]["value"].as_f64().unwrap() > c["ctr"]["value"].as_f64().unwrap(),
        "{r}"
    );
    assert!(
        t["ctr"]["low"].as_f64().unwrap() > c["ctr"]["value"].as_f64().unwrap(),
        "{r}"
    );
    assert!(t["p_value"].as_f64().unwrap() < 0.001, "{r}");
    assert!(t["always_valid_p_value"].as_f64().unwrap() < 0.05, "{r}");
    assert!(t["prob_beat_control"].as_f64().unwrap() > 0.99, "{r}");
    assert_eq!(r["srm"]["mismatch"], false, "{r}");
    assert!(
        r["sample_size"]["required_per_variant"].as_u64().unwrap() > 0,
        "{r}"
    );
    let (_, list) = s.get("/v1/experiments").await;
    assert_eq!(list["experiments"][0]["id"], "e1", "{list}");

    // A graceful stop, then the same data dir: same assignment, same counts.
    let before = r.clone();
    let pid = s.child.id().to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
    let mut s = s;
    let _ = s.child.wait();
    drop(s);
    let s = Server::start(&["serve", "--data-dir", dir.to_str().unwrap()], &envs);
    let (_, after) = s.get("/v1/experiments/e1").await;
    for name in ["control", "treatment"] {
        for field in ["users", "impressions", "clicks"] {
            assert_eq!(
                variant(&after, name)[field],
                variant(&before, name)[field],
                "{name}.{field} after a restart"
            );
        }
    }
    for (user, v) in assigned.iter().take(20) {
        let a = s.recommend(json!({"user_id": user, "count": 10})).await;
        assert_eq!(&a["variant"], v, "{user} after a restart");
    }
    // Stopping ends assignment; results stay.
    let (status, body) = s.post("/v1/experiments/e1/stop", json!({})).await;
    assert_eq!(status, 200, "{body}");
    let a = s.recommend(json!({"user_id": "sim-1", "count": 10})).await;
    assert!(a.get("experiment").is_none(), "{a}");
    assert_eq!(a["strategy"], "default");
    let (_, stopped) = s.get("/v1/experiments/e1").await;
    assert_eq!(stopped["status"], "stopped");
    assert_eq!(
        variant(&stopped, "treatment")["users"],
        variant(&before, "treatment")["users"]
    );
    // A request may name a strategy outside experiments; an unknown one is a 404.
    let a = s
        .recommend(json!({"user_id": "x", "count": 5, "strategy": "popular-first"}))
        .await;
    assert_eq!(a["strategy"], "popular-first");
    let (status, _) = s
        .post("/v1/recommend", json!({"user_id": "x", "strategy": "nope"}))
        .await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn interleaving_credits_the_ranker_whose_picks_are_clicked() {
    let dir = data_dir("experiments-il");
    let s = Server::demo(&dir, &[]);
    let (status, body) = s
        .put(
            "/v1/strategies/popular-first",
            json!({"ranking": {"similarity_weight": 0.0, "popularity_weight": 1.0}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = s
        .post(
            "/v1/experiments",
            json!({"id": "il", "kind": "interleaving",
                   "variants": [{"name": "personal", "strategy": "default"},
                                {"name": "popular", "strategy": "popular-first"}]}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    // Users with history; each clicks the first item of the list that is not also in the
    // popular-first ranking's own top list (a taste only the personalized ranker serves).
    let mut clicked = 0;
    for u in 0..60 {
        let user = format!("user-{u}");
        let a = s.recommend(json!({"user_id": user, "count": 10})).await;
        assert_eq!(
            (&a["experiment"], &a["variant"]),
            (&json!("il"), &json!("interleaved")),
            "{a}"
        );
        let scores: Vec<f64> = a["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["score"].as_f64().unwrap())
            .collect();
        assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{a}");
        let popular = s
            .recommend(json!({"user_id": user, "count": 10, "strategy": "popular-first", "use_cache": false}))
            .await;
        let popular = ids(&popular);
        if let Some(p) = ids(&a).iter().position(|id| !popular.contains(id)) {
            click(&s, &user, &a, p).await;
            clicked += 1;
        }
    }
    assert!(
        clicked >= 30,
        "too few lists had a personal pick to click: {clicked}"
    );
    let (_, r) = s.get("/v1/experiments/il").await;
    let il = &r["interleaving"];
    assert!(
        il["a_wins"].as_u64().unwrap() > il["b_wins"].as_u64().unwrap(),
        "{r}"
    );
    assert!(il["preference"].as_f64().unwrap() < 0.0, "{r}");
    assert_eq!(il["winner"], "personal", "{r}");
    assert_eq!(il["impressions"], 60, "{r}");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_redis_servers_share_assignment_and_counts() {
    let Some(url) = crate::redis::redis_or_skip() else {
        return;
    };
    let config_file = crate::server::scratch_file("exp-config", "toml");
    std::fs::write(&config_file, crate::redis::SCHEMA).expect("config");
    let config = config_file.to_str().expect("utf-8").to_string();
    let prefix = format!("e2eexp{}:", std::process::id());
    let envs = [("RECD_REDIS__PREFIX", prefix.as_str())];
    let dir = data_dir("experiments-redis");
    let dir = dir.to_str().expect("utf-8");
    let redis = [
        "--backend",
        "redis",
        "--redis-url",
        &url,
        "--config",
        &config,
    ];
    let demo = [
        "demo",
        "--data-dir",
        dir,
        "--items",
        "1000",
        "--users",
        "60",
        "--seed",
        "3",
    ];
    let a = Server::start(&[&demo[..], &redis[..]].concat(), &envs);
    let b = Server::start(&[&["serve"], &redis[..]].concat(), &envs);
    let (status, body) = a
        .put(
            "/v1/strategies/popular-first",
            json!({"ranking": {"similarity_weight": 0.0, "popularity_weight": 1.0}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = a
        .post(
            "/v1/experiments",
            json!({"id": "shared", "kind": "ab",
                   "variants": [{"name": "control", "strategy": "default"},
                                {"name": "treatment", "strategy": "popular-first"}]}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    // b reads the definitions from Redis (at once for results, within a second for requests).
    let (status, r) = b.get("/v1/experiments/shared").await;
    assert_eq!(status, 200, "{r}");
    let enrolled = async {
        loop {
            let x = b.recommend(json!({"user_id": "probe", "count": 5})).await;
            if x["experiment"] == "shared" {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(30), enrolled)
        .await
        .expect("b never assigned users to the experiment created on a");
    // Same user, same variant on both servers; a list served by a, clicked through b.
    let mut clicks = 0;
    for u in 0..40 {
        let user = format!("user-{u}");
        let on_a = a.recommend(json!({"user_id": user, "count": 5})).await;
        let on_b = b.recommend(json!({"user_id": user, "count": 5})).await;
        assert_eq!(on_a["variant"], on_b["variant"], "{user}");
        if u % 2 == 0 && !ids(&on_a).is_empty() {
            click(&b, &user, &on_a, 0).await;
            clicks += 1;
        }
    }
    let (_, from_a) = a.get("/v1/experiments/shared").await;
    let (_, from_b) = b.get("/v1/experiments/shared").await;
    let total = |r: &Value, f: &str| -> u64 {
        r["variants"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v[f].as_u64().unwrap())
            .sum()
    };
    assert_eq!(total(&from_a, "clicks"), clicks, "{from_a}");
    assert_eq!(total(&from_a, "impressions"), total(&from_b, "impressions"));
    assert!(total(&from_a, "impressions") >= 80, "{from_a}");
}
