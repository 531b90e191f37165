//! `recd bench` as a user runs it: host:port targets, ids sampled from the server, and a
//! failing run that says so (exit 1, the server's errors printed).

use std::process::Command;

use crate::server::{Server, data_dir};

fn bench(target: &str, extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_recd"))
        .args([
            "bench",
            "--target",
            target,
            "--duration",
            "1",
            "--warmup",
            "0",
            "--concurrency",
            "2",
            "--json",
        ])
        .args(extra)
        .env("RECD_LOG", "warn")
        .output()
        .expect("run recd bench")
}

#[tokio::test(flavor = "multi_thread")]
async fn bench_fails_loudly_and_takes_host_port_and_real_ids() {
    let dir = data_dir("bench");
    let s = Server::demo(&dir, &[]);
    let host_port = s.base.trim_start_matches("http://").to_string();

    // Every request fails: exit 1, and the server's own error is shown.
    let out = bench(&host_port, &["--filter", r#"{"colour":{"any":["red"]}}"#]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("invalid_argument") && stderr.contains("colour"),
        "{stderr}"
    );

    // A good run on host:port exits 0, with ids sampled from the server's event log.
    let out = bench(
        &host_port,
        &["--user-prefix", "nobody-", "--item-prefix", "nothing-"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("sampled from the server's event log"),
        "{stderr}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value =
        serde_json::from_str(stdout.lines().last().unwrap_or("")).expect("json report");
    assert_eq!(report["errors"], 0, "{report}");
    assert!(report["requests"].as_u64().unwrap() > 0, "{report}");
}

/// `--rate` paces the run (a background load beside another benchmark): no more requests
/// than the rate allows, whatever the server could take; and the events it sends show in
/// the server's event-visibility histogram.
#[tokio::test(flavor = "multi_thread")]
async fn bench_rate_paces_the_requests_and_events_are_timed_until_visible() {
    let dir = data_dir("bench-rate");
    let s = Server::demo(&dir, &[]);
    let out = bench(
        &s.base,
        &["--scenario", "events", "--rate", "10", "--ids", "range"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value =
        serde_json::from_str(stdout.lines().last().unwrap_or("")).expect("json report");
    let requests = report["requests"].as_u64().unwrap();
    // 10/s for 1 s over 2 connections: each sends on its schedule (at most one early
    // request each), where an unpaced run makes hundreds.
    assert!((1..=12).contains(&requests), "{report}");
    assert_eq!(report["rate"], 10.0, "{report}");
    assert_eq!(report["errors"], 0, "{report}");

    let metrics = s.get_text("/metrics").await;
    assert!(
        metrics.contains("# HELP recd_event_visible_duration_seconds "),
        "{metrics}"
    );
    let count: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("recd_event_visible_duration_seconds_count "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    assert!(count >= requests as f64, "{count} < {requests}: {metrics}");

    let bad = bench(&s.base, &["--rate", "0"]);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("--rate"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}
