//! The learned ranker against the fixed blend in an A/B test of the experiments layer, on
//! the real binary: `recd features simulate` loads a shop with a known click model and
//! its impression log, `recd train-ranker` learns from that log, a server serves both
//! strategies, and simulated users, split by the experiment, click by the same click
//! model (users prefer categories they clicked recently, with position bias). The
//! experiment's own statistics (`GET /v1/experiments/{id}`) must name the learned
//! variant the winner, significantly.
//!
//! Deterministic: the shop, the ranker's fit and the simulated users are seeded (the users'
//! split follows the experiment's hash of their ids).

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::experiments::{Lcg, variant};
use crate::server::{Server, data_dir, ids};
use crate::train::{ok, recd};

/// An index below `n` from `rng`.
fn below(rng: &mut Lcg, n: usize) -> usize {
    ((rng.unit() * n as f64) as usize).min(n.saturating_sub(1))
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// The category of an answer's or a listing's item.
fn category(item: &Value) -> String {
    item["category"][0].as_str().unwrap_or_default().to_string()
}

/// One simulated user: their current interest and their clicks per category.
struct User {
    id: String,
    interest: String,
    clicks: HashMap<String, u32>,
}

#[tokio::test(flavor = "multi_thread")]
async fn the_learned_ranker_wins_an_ab_test_against_the_fixed_blend() {
    let dir = data_dir("learned-ab");
    std::fs::create_dir_all(&dir).expect("data dir");
    let config = dir.join("recd.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\n\
             [features]\nenabled = true\nimpression_log = \"impressions.jsonl\"\n\
             [strategies.learned]\nranking = {{ ranker = \"latest\" }}\n",
            dir.join("data").display()
        ),
    )
    .expect("write config");
    let cfg = config.to_str().expect("utf-8 path");
    ok(
        &recd(
            &[
                "features", "simulate", "--config", cfg, "--users", "200", "--items", "400",
                "--days", "3", "--seed", "11",
            ],
            &[],
        ),
        "features simulate",
    );
    let report = ok(
        &recd(&["train-ranker", "--config", cfg, "--json"], &[]),
        "train-ranker",
    );
    let report: Value = serde_json::from_str(report.trim()).expect("train-ranker --json");
    assert_eq!(report["accepted"], true, "{report}");

    let s = Server::start(&["serve", "--config", cfg], &[]);
    let (status, body) = s
        .post(
            "/v1/experiments",
            json!({"id": "ltr", "kind": "ab", "metric": "click",
                   "variants": [{"name": "blend", "strategy": "default", "weight": 0.5},
                                {"name": "learned", "strategy": "learned", "weight": 0.5}]}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    // The catalog by category, for the users' organic views.
    let (status, listing) = s.get("/v1/items?limit=1000").await;
    assert_eq!(status, 200, "{listing}");
    let mut by_category: HashMap<String, Vec<String>> = HashMap::new();
    for item in listing["items"].as_array().expect("items") {
        by_category
            .entry(category(item))
            .or_default()
            .push(item["id"].as_str().expect("id").to_string());
    }
    let mut categories: Vec<String> = by_category.keys().cloned().collect();
    categories.sort();
    assert!(categories.len() > 8, "{categories:?}");

    // Sessions in rounds over the users: sometimes a new interest, two organic views in
    // it, a list of 10, then clicks by the simulation's click model:
    // P(click at 0-based p) = (1 + p)^-0.8 · σ(-2.5 + ln(1 + c) + 1.2·[interest] + 0.5·pop),
    // c the user's clicks on the item's category so far.
    let mut rng = Lcg(11);
    let mut users: Vec<User> = (0..200)
        .map(|u| User {
            id: format!("ab-{u}"),
            interest: categories[below(&mut rng, categories.len())].clone(),
            clicks: HashMap::new(),
        })
        .collect();
    let mut served: HashMap<String, u32> = HashMap::new();
    for _round in 0..5 {
        for user in &mut users {
            if rng.unit() < 0.25 {
                user.interest = categories[below(&mut rng, categories.len())].clone();
            }
            let pool = &by_category[&user.interest];
            let views: Vec<Value> = (0..2)
                .map(|_| json!({"user_id": user.id, "item_id": pool[below(&mut rng, pool.len())], "type": "view"}))
                .collect();
            let (status, body) = s.post("/v1/events", json!({"events": views})).await;
            assert_eq!(status, 200, "{body}");
            let a = s.recommend(json!({"user_id": user.id, "count": 10})).await;
            assert_eq!(a["experiment"], "ltr", "{a}");
            *served
                .entry(a["variant"].as_str().unwrap_or_default().to_string())
                .or_default() += 1;
            let mut clicks = Vec::new();
            for (p, item) in a["items"].as_array().expect("items").iter().enumerate() {
                let cat = category(&item["item"]);
                let c = f64::from(user.clicks.get(&cat).copied().unwrap_or(0));
                let pop = item["item"]["popularity"].as_f64().unwrap_or(0.0);
                let attract = sigmoid(
                    -2.5 + c.ln_1p() + 1.2 * f64::from(u8::from(cat == user.interest)) + 0.5 * pop,
                );
                if rng.unit() < (1.0 + p as f64).powf(-0.8) * attract {
                    clicks.push((ids(&a)[p].clone(), cat));
                }
            }
            if clicks.is_empty() {
                continue;
            }
            let events: Vec<Value> = clicks
                .iter()
                .map(|(item, _)| json!({"user_id": user.id, "item_id": item, "type": "click", "recommendation_id": a["recommendation_id"]}))
                .collect();
            let (status, body) = s.post("/v1/events", json!({"events": events})).await;
            assert_eq!(status, 200, "{body}");
            for (_, cat) in clicks {
                *user.clicks.entry(cat).or_default() += 1;
            }
        }
    }
    let (status, r) = s.get("/v1/experiments/ltr").await;
    assert_eq!(status, 200, "{r}");
    eprintln!("learned vs blend A/B: {r}");
    let (blend, learned) = (variant(&r, "blend"), variant(&r, "learned"));
    assert_eq!(
        blend["impressions"].as_u64().unwrap() + learned["impressions"].as_u64().unwrap(),
        1000,
        "{r}"
    );
    assert!(
        served.get("blend") > Some(&300) && served.get("learned") > Some(&300),
        "{served:?}"
    );
    assert!(
        learned["ctr"]["value"].as_f64().unwrap() > blend["ctr"]["value"].as_f64().unwrap(),
        "{r}"
    );
    assert!(learned["p_value"].as_f64().unwrap() < 0.05, "{r}");
    assert_eq!(r["srm"]["mismatch"], false, "{r}");
    drop(s);
}
