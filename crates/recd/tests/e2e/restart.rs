//! A restart of the embedded backend loads the vector index from its snapshot instead of
//! rebuilding it, and answers exactly as before the restart.

use std::fs::File;
use std::process::Stdio;

use serde_json::{Value, json};

use crate::server::{Server, data_dir, sample};

/// The similar-items answers for a few items, unfiltered and within one category.
async fn answers(s: &Server, category: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    for n in [0, 1, 17, 256, 2_999] {
        let path = format!("/v1/items/sku-{n}/similar");
        for body in [
            json!({"count": 20}),
            json!({"count": 20, "filter": {"category": {"any": [category]}}}),
        ] {
            let (status, a) = s.post(&path, body).await;
            assert_eq!(status, 200, "{a}");
            let scored: Vec<Value> = a["items"]
                .as_array()
                .expect("items")
                .iter()
                .map(|i| json!([i["id"], i["score"]]))
                .collect();
            assert!(!scored.is_empty(), "{a}");
            out.push(Value::Array(scored));
        }
    }
    out
}

/// The (id, score) list of the items similar to `small-3` within `body`'s filter.
async fn similar(s: &Server, body: Value) -> Vec<(String, Value)> {
    let (status, a) = s.post("/v1/items/small-3/similar", body).await;
    assert_eq!(status, 200, "{a}");
    a["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| {
            (
                i["id"].as_str().unwrap_or_default().to_string(),
                i["score"].clone(),
            )
        })
        .collect()
}

/// Stops the server as an operator would (SIGTERM) and waits for it to exit.
fn stop(mut s: Server) {
    let pid = s.child.id().to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
    let exit = s.child.wait().expect("wait");
    assert!(exit.success(), "recd exited with {exit}");
}

#[tokio::test]
async fn a_restart_loads_the_index_instead_of_rebuilding_it() {
    let dir = data_dir("index-restart");
    let log = |name: &str| dir.with_extension(format!("{name}.log"));
    let envs = [("RECD_LOG", "info")];
    let first = File::create(log("first")).expect("log file");
    let s = Server::start_with_stderr(
        &[
            "demo",
            "--data-dir",
            dir.to_str().expect("utf-8 path"),
            "--items",
            "3000",
            "--users",
            "200",
            "--seed",
            "7",
        ],
        &envs,
        Stdio::from(first),
    );
    let (_, sku0) = s.get("/v1/items/sku-0?include_vector=true").await;
    // A tag field: one value or a list of them.
    let category = match &sku0["category"] {
        Value::Array(tags) => tags[0].clone(),
        one => one.clone(),
    };
    // An item written while serving is saved too.
    let late = json!({"id": "late", "vector": sku0["vector"], "category": sku0["category"]});
    let (status, _) = s.put("/v1/items", json!({"items": [late]})).await;
    assert_eq!(status, 200);
    let before = answers(&s, &category).await;
    assert_eq!(before[0][0][0], "late", "{:?}", before[0]);
    stop(s);
    let first = std::fs::read_to_string(log("first")).expect("first log");
    assert!(first.contains("vector index snapshot saved"), "{first}");

    let second = File::create(log("second")).expect("log file");
    let s = Server::start_with_stderr(
        &["serve", "--data-dir", dir.to_str().expect("utf-8 path")],
        &envs,
        Stdio::from(second),
    );
    let text = std::fs::read_to_string(log("second")).expect("second log");
    assert!(
        text.contains("vector index loaded from its snapshot"),
        "{text}"
    );
    assert!(!text.contains("rebuilding the vector index"), "{text}");
    assert_eq!(
        answers(&s, &category).await,
        before,
        "an answer changed across the restart"
    );
    // The planner's choices are counted: the unfiltered similar-items searches walk the
    // graph (five of them were asked since this start).
    let metrics = s.get_text("/metrics").await;
    let walks = sample(&metrics, "recd_index_plan_total", &["plan=\"graph\""]);
    assert!(walks >= 5.0, "{walks} walks in {metrics}");
    drop(s);
    let _ = std::fs::remove_dir_all(&dir);
    for name in ["first", "second"] {
        let _ = std::fs::remove_file(log(name));
    }
}

/// `vector.partition_by`: a category with enough items gets its own graph, a filter on it
/// is answered through that graph (`explain` and `/metrics` say so), and the graph is
/// saved at shutdown and loaded by the next start, with the same answers.
#[tokio::test]
async fn a_partitioned_category_is_searched_in_its_own_graph_across_a_restart() {
    let dir = data_dir("partitions");
    let config = dir.with_extension("toml");
    std::fs::write(
        &config,
        "[schema]\nvector = { dim = 4, partition_by = \"category\" }\n\
         [schema.fields]\ncategory = \"tag\"\nprice = \"numeric\"\n",
    )
    .expect("config");
    let log = |name: &str| dir.with_extension(format!("{name}.log"));
    let args = [
        "serve",
        "--config",
        config.to_str().expect("utf-8 path"),
        "--data-dir",
        dir.to_str().expect("utf-8 path"),
    ];
    let envs = [("RECD_LOG", "info")];
    let s = Server::start_with_stderr(
        &args,
        &envs,
        Stdio::from(File::create(log("first")).expect("log")),
    );
    // "big" and "other" (6,000 items each: a graph of its own, and one walk of it is cheaper
    // than the main index's scan of half the catalogue) and "small" (300: no graph).
    let item = |cat: &str, i: usize| {
        let a = i as f64 * 0.618;
        let v = match cat {
            "big" => [1.0, a.sin() * 0.5, a.cos() * 0.5, 0.1],
            "other" => [0.1, 1.0, a.sin() * 0.5, a.cos() * 0.5],
            _ => [0.1, a.sin() * 0.5, a.cos() * 0.5, 1.0],
        };
        json!({"id": format!("{cat}-{i}"), "vector": v, "category": cat, "price": i % 100})
    };
    let items: Vec<Value> = (0..6_000)
        .map(|i| item("big", i))
        .chain((0..6_000).map(|i| item("other", i)))
        .chain((0..300).map(|i| item("small", i)))
        .collect();
    for chunk in items.chunks(1_000) {
        let (status, a) = s.put("/v1/items", json!({"items": chunk})).await;
        assert_eq!(status, 200, "{a}");
    }
    let ask = |cat: &str, price: Option<u32>| {
        let mut filter = json!({"category": {"any": [cat]}});
        if let Some(p) = price {
            filter["price"] = json!({"lt": p});
        }
        json!({"count": 10, "filter": filter})
    };
    let mut before = Vec::new();
    for (cat, price) in [("big", None), ("big", Some(30)), ("small", None)] {
        let got = similar(&s, ask(cat, price)).await;
        assert_eq!(got.len(), 10, "{cat}: {got:?}");
        assert!(
            got.iter().all(|(id, _)| id.starts_with(cat)),
            "{cat}: {got:?}"
        );
        before.push(got);
    }
    // A user near "small" asking within "big": the plan is on the answer.
    s.event("shopper", "small-1", "click").await;
    let mut body = ask("big", None);
    body["user_id"] = json!("shopper");
    body["explain"] = json!(true);
    let a = s.recommend(body.clone()).await;
    let plan = &a["stages"]["retrieve"]["knn_plan"];
    assert_eq!(plan["plan"], "partitioned", "{a}");
    assert_eq!(plan["partitions"], 1, "{plan}");
    body["filter"] = json!({"category": {"any": ["small"]}});
    let a = s.recommend(body).await;
    assert_ne!(
        a["stages"]["retrieve"]["knn_plan"]["plan"], "partitioned",
        "{a}"
    );
    let metrics = s.get_text("/metrics").await;
    let partitioned = sample(&metrics, "recd_index_plan_total", &["plan=\"partitioned\""]);
    // "big" alone, twice (similar items, recommend); "big" under $30 has 1,800 items, which
    // the main index scans as fast.
    assert!(
        partitioned >= 2.0,
        "{partitioned} partitioned searches in {metrics}"
    );
    stop(s);

    let s = Server::start_with_stderr(
        &args,
        &envs,
        Stdio::from(File::create(log("second")).expect("log")),
    );
    let text = std::fs::read_to_string(log("second")).expect("second log");
    let ready = text
        .lines()
        .find(|l| l.contains("partition graphs ready"))
        .unwrap_or_else(|| panic!("no partition graphs at start: {text}"));
    assert!(
        ready.contains("loaded=2") && ready.contains("built=0"),
        "{ready}"
    );
    let mut after = Vec::new();
    for (cat, price) in [("big", None), ("big", Some(30)), ("small", None)] {
        after.push(similar(&s, ask(cat, price)).await);
    }
    assert_eq!(after, before, "an answer changed across the restart");
    drop(s);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(&config);
    for name in ["first", "second"] {
        let _ = std::fs::remove_file(log(name));
    }
}
