//! Online monitoring on the real binary: a shifted event stream crosses the drift threshold
//! (report and gauges), while the served lists' features, unshifted, do not; coverage of
//! the catalog is exported.

use serde_json::json;

use crate::server::{Server, data_dir};

#[tokio::test(flavor = "multi_thread")]
async fn a_shifted_event_mix_is_reported_as_drift() {
    let dir = data_dir("monitoring");
    let envs = [
        ("RECD_MONITORING__REFERENCE_SIZE", "100"),
        ("RECD_MONITORING__LIVE_SIZE", "1000"),
        ("RECD_MONITORING__MIN_LIVE", "100"),
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
    assert_eq!(d["drifted"], json!(["event_type"]), "{d}");
    let metrics = s.get_text("/metrics").await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("recd_drift_detected{feature=\"event_type\"} 1")),
        "{metrics}"
    );
    let coverage = metrics
        .lines()
        .find_map(|l| l.strip_prefix("recd_catalog_coverage_ratio "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .expect("coverage exported");
    assert!(coverage > 0.0 && coverage <= 1.0, "{coverage}");
    let _ = std::fs::remove_dir_all(&dir);
}
