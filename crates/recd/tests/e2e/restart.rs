//! A restart of the embedded backend loads the vector index from its snapshot instead of
//! rebuilding it, and answers exactly as before the restart.

use std::fs::File;
use std::process::Stdio;

use serde_json::{Value, json};

use crate::server::{Server, data_dir};

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
    let walks: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("recd_index_plan_total{plan=\"graph\"} "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no graph plan count in {metrics}"));
    assert!(walks >= 5, "{walks} walks");
    drop(s);
    let _ = std::fs::remove_dir_all(&dir);
    for name in ["first", "second"] {
        let _ = std::fs::remove_file(log(name));
    }
}
