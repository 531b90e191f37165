//! Online monitoring on the real binary: a shifted event stream crosses the drift threshold
//! (report and gauges), while the served lists' features, unshifted, do not; coverage of
//! the catalog is exported.

use serde_json::json;

use crate::server::{Server, data_dir, sample};

#[tokio::test(flavor = "multi_thread")]
async fn a_shifted_event_mix_is_reported_as_drift() {
    let dir = data_dir("monitoring");
    // The drift command appends the feature it is told about to a file.
    let marker = dir.with_extension("drift");
    let _ = std::fs::remove_file(&marker);
    let command = format!(
        r#"["sh", "-c", "echo $RECD_DRIFTED_FEATURE >> {}"]"#,
        marker.display()
    );
    let envs = [
        ("RECD_MONITORING__REFERENCE_SIZE", "100"),
        ("RECD_MONITORING__LIVE_SIZE", "1000"),
        ("RECD_MONITORING__MIN_LIVE", "100"),
        ("RECD_MONITORING__ON_DRIFT_COMMAND", command.as_str()),
        ("RECD_MONITORING__ON_DRIFT_MIN_INTERVAL_MINUTES", "0"),
    ];
    let s = Server::demo(&dir, &envs);
    let (status, d) = s.get("/v1/monitoring/drift").await;
    assert_eq!(status, 200, "{d}");
    assert!(d["drifted"].as_array().unwrap().is_empty(), "{d}");
    let s = &s;
    let post = |events: Vec<serde_json::Value>| async move {
        let (status, body) = s.post("/v1/events", json!({ "events": events })).await;
        assert_eq!(status, 200, "{body}");
    };
    // Reference: views and clicks in equal parts; then the same mix, then purchases only.
    let mix = |n: usize, kinds: &[&str]| -> Vec<serde_json::Value> {
        (0..n)
            .map(|i| json!({"user_id": format!("m-{}", i % 50), "item_id": format!("sku-{}", i % 300), "type": kinds[i % kinds.len()]}))
            .collect()
    };
    post(mix(100, &["view", "click"])).await;
    // Recommendations too: their features keep one distribution throughout.
    for u in 0..250 {
        s.recommend(
            json!({"user_id": format!("user-{}", u % 100), "count": 10, "use_cache": false}),
        )
        .await;
    }
    post(mix(150, &["view", "click"])).await;
    let (_, d) = s.get("/v1/monitoring/drift").await;
    let event = d["features"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "event_type")
        .unwrap()
        .clone();
    assert_eq!(event["status"], "watching", "{d}");
    assert_eq!(event["report"]["drifted"], false, "same mix: {d}");
    let (status, _) = s.post("/v1/monitoring/drift/reset", json!({})).await;
    assert_eq!(status, 204);
    post(mix(100, &["view", "click"])).await;
    post(mix(200, &["purchase"])).await;
    let (_, d) = s.get("/v1/monitoring/drift").await;
    // The event-type mix drifted; the gaps between a user's events (timestamped by the
    // server as the test posts them) may or may not: nothing else can have.
    let drifted: Vec<&str> = d["drifted"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f.as_str())
        .collect();
    assert!(drifted.contains(&"event_type"), "{d}");
    assert!(
        drifted
            .iter()
            .all(|f| ["event_type", "user_event_gap_seconds"].contains(f)),
        "{d}"
    );
    let metrics = s.get_text("/metrics").await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("recd_drift_detected{feature=\"event_type\"} 1")),
        "{metrics}"
    );
    // The crossing ran the drift command once, for the drifted feature (the command runs
    // in the background: wait for its output, bounded).
    let ran = crate::redis::eventually(std::time::Duration::from_secs(30), || async {
        std::fs::read_to_string(&marker).is_ok_and(|t| t.contains("event_type"))
    })
    .await;
    assert!(ran, "on_drift_command did not run");
    let ran = std::fs::read_to_string(&marker).unwrap_or_default();
    assert_eq!(
        ran.lines().filter(|l| *l == "event_type").count(),
        1,
        "once per crossing: {ran}"
    );
    let coverage = metrics
        .lines()
        .find_map(|l| l.strip_prefix("recd_catalog_coverage_ratio "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .expect("coverage exported");
    assert!(coverage > 0.0 && coverage <= 1.0, "{coverage}");
}

#[tokio::test(flavor = "multi_thread")]
async fn clicks_naming_a_list_count_under_its_strategy_and_source() {
    let dir = data_dir("monitoring-ctr");
    let s = Server::demo(&dir, &[]);
    let (status, body) = s
        .put(
            "/v1/strategies/pop",
            json!({"ranking": {"similarity_weight": 0.0, "popularity_weight": 1.0}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let before = s.get_text("/metrics").await;
    let a = s
        .recommend(json!({"user_id": "user-1", "count": 5, "use_cache": false}))
        .await;
    let b = s
        .recommend(json!({"user_id": "user-2", "count": 5, "strategy": "pop", "use_cache": false}))
        .await;
    let click = |answer: &serde_json::Value, kind: &str| {
        json!({"user_id": answer["user_id"], "item_id": answer["items"][0]["id"], "type": kind,
               "recommendation_id": answer["recommendation_id"]})
    };
    let forged = json!({"user_id": "user-3", "item_id": "sku-1", "type": "click",
                        "recommendation_id": "made-up.p00000000"});
    let (status, body) = s
        .post(
            "/v1/events",
            json!({"events": [click(&a, "click"), click(&b, "click"), click(&b, "purchase"), forged]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let after = s.get_text("/metrics").await;
    let delta =
        |name: &str, labels: &[&str]| sample(&after, name, labels) - sample(&before, name, labels);
    let default = [
        r#"strategy="default""#,
        r#"experiment="none""#,
        r#"source="personalized""#,
    ];
    let pop = [
        r#"strategy="pop""#,
        r#"variant="none""#,
        r#"source="personalized""#,
    ];
    assert_eq!(delta("recd_impressions_total", &default), 1.0, "{after}");
    assert_eq!(delta("recd_impressions_total", &pop), 1.0, "{after}");
    assert_eq!(delta("recd_clicks_total", &default), 1.0, "{after}");
    assert_eq!(delta("recd_clicks_total", &pop), 1.0, "{after}");
    assert_eq!(delta("recd_conversions_total", &pop), 1.0, "{after}");
    assert_eq!(delta("recd_conversions_total", &default), 0.0, "{after}");
    // A forged id counts under `unknown`: clients cannot mint label values.
    assert_eq!(
        delta("recd_clicks_total", &[r#"strategy="unknown""#]),
        1.0,
        "{after}"
    );
    assert!(
        sample(&after, "recd_list_novelty_count", &[]) >= 2.0,
        "{after}"
    );
    // Every metric family is described, and the build is named.
    for line in after.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let name = line.split(' ').next().unwrap_or_default();
        assert!(
            after.contains(&format!("# HELP {name} ")),
            "no HELP for {name}"
        );
    }
    assert_eq!(
        sample(&after, "recd_build_info", &[r#"version=""#, r#"commit=""#]),
        1.0
    );
    assert_eq!(sample(&after, "recd_ready", &[]), 1.0);
    assert!(
        sample(&after, "process_resident_memory_bytes", &[]) > 0.0,
        "{after}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_answer_and_log_line_carries_the_request_id() {
    let dir = data_dir("request-id");
    let log = dir.with_extension("log");
    let file = std::fs::File::create(&log).expect("log file");
    let s = Server::start_with_stderr(
        &[
            "demo",
            "--data-dir",
            dir.to_str().expect("utf-8"),
            "--items",
            "300",
            "--users",
            "20",
        ],
        &[
            ("RECD_LOG", "recd_server=debug,tower_http=debug"),
            ("RECD_LOG_FORMAT", "json"),
        ],
        std::process::Stdio::from(file),
    );
    let client = reqwest::Client::new();
    let send = |id: Option<&'static str>, path: &'static str| {
        let mut req = client.get(format!("{}{path}", s.base));
        if let Some(id) = id {
            req = req.header("x-request-id", id);
        }
        async move { req.send().await.expect("request") }
    };
    let given = send(Some("trace-me-42"), "/v1/items/sku-1").await;
    assert_eq!(given.headers()["x-request-id"], "trace-me-42");
    // Errors too, and a new id when none (or an unusable one) was sent.
    let missing = send(None, "/v1/items/no-such-item").await;
    assert_eq!(missing.status(), 404);
    let generated = missing.headers()["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_string();
    assert_eq!(generated.len(), 32, "{generated}");
    let bad = send(Some("has spaces in it"), "/health").await;
    assert_ne!(bad.headers()["x-request-id"], "has spaces in it");

    // The JSON log lines written while serving carry the id in their span.
    let text = std::fs::read_to_string(&log).expect("log");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    for id in ["trace-me-42", generated.as_str()] {
        assert!(
            lines.iter().any(|l| l["span"]["id"] == id),
            "no JSON log line with request id {id}:\n{text}"
        );
    }
}

/// The embedded backend's background checkpoints (the log absorbed into redb) are timed on
/// `/metrics`: with a checkpoint every 0.2 s, events are followed by one the next scrapes count.
#[tokio::test(flavor = "multi_thread")]
async fn the_background_checkpoints_are_timed_on_metrics() {
    let dir = data_dir("checkpoint-metric");
    let s = Server::demo(&dir, &[("RECD_EMBEDDED__CHECKPOINT_SECONDS", "0.2")]);
    let (status, body) = s
        .post(
            "/v1/events",
            json!({"events": [{"user_id": "cp-1", "item_id": "sku-1", "type": "click"}]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let timed = |metrics: &str| sample(metrics, "recd_checkpoint_duration_seconds_count", &[]);
    let s = &s;
    let counted = crate::redis::eventually(std::time::Duration::from_secs(30), || async move {
        timed(&s.get_text("/metrics").await) >= 1.0
    })
    .await;
    assert!(
        counted,
        "no checkpoint on /metrics:\n{}",
        s.get_text("/metrics").await
    );
    // and what a crash now would replay into user states, beside it
    let metrics = s.get_text("/metrics").await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("recd_replay_records ")),
        "no recd_replay_records on /metrics:\n{metrics}"
    );
    // and the checkpoints that changed hands (none need have)
    for kind in ["gave_way", "catch_up"] {
        let line = format!("recd_checkpoint_handovers_total{{kind=\"{kind}\"}} ");
        assert!(
            metrics.lines().any(|l| l.starts_with(&line)),
            "no {line}on /metrics:\n{metrics}"
        );
    }
}
