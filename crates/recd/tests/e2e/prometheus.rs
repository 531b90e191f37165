//! Dashboards and alerts as code, checked against the real thing: a real Prometheus
//! (Debian's `prometheus` package) scrapes a real recd on Redis, loads
//! `deploy/prometheus/alerts.yml`, and every expression of the rules and of
//! `deploy/grafana/recd.json` must return data — none may refer to a metric that does not
//! exist. `promtool` checks the rules file and lints `/metrics` (HELP on every metric,
//! naming conventions).
//!
//! Outside CI a machine without `prometheus`/`promtool` (or Redis) skips loudly; under
//! `CI=true` that is a failure.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::server::{Server, data_dir, ids};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// `name` on the PATH (or in /usr/bin), or `None` after a loud message; a failure in CI.
fn tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain([PathBuf::from("/usr/bin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file());
    if found.is_none() {
        assert!(
            !in_ci(),
            "CI=true and `{name}` is not installed (apt-get install prometheus)"
        );
        eprintln!("\n!!!!! SKIPPED: `{name}` is not installed (apt-get install prometheus)\n");
    }
    found
}

/// A Prometheus process; killed when dropped.
struct Prometheus {
    child: Child,
    base: String,
    client: reqwest::Client,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Prometheus {
    fn start(bin: &Path, dir: &Path, target: &str) -> Prometheus {
        std::fs::create_dir_all(dir).expect("prometheus dir");
        let rules = repo().join("deploy/prometheus/alerts.yml");
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 rule_files:\n  - {}\n\
                 scrape_configs:\n  - job_name: recd\n    static_configs:\n      - targets: ['{target}']\n",
                rules.display()
            ),
        )
        .expect("prometheus.yml");
        let port = free_port();
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn prometheus");
        Prometheus {
            child,
            base: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::new(),
        }
    }

    async fn api(&self, path: &str, query: &[(&str, &str)]) -> Option<Value> {
        let url = reqwest::Url::parse_with_params(&format!("{}{path}", self.base), query).ok()?;
        let resp = self.client.get(url).send().await.ok()?;
        let v: Value = resp.json().await.ok()?;
        (v["status"] == "success").then(|| v["data"].clone())
    }

    /// Whether `expr` evaluates to at least one sample now.
    async fn has_data(&self, expr: &str) -> bool {
        self.api("/api/v1/query", &[("query", expr)])
            .await
            .and_then(|d| d["result"].as_array().map(|r| !r.is_empty()))
            .unwrap_or(false)
    }
}

/// An alert expression's query without its final `<comparison> <number>`, or `None` when
/// it does not end that way (the convention the rules file states).
fn alert_query(expr: &str) -> Option<String> {
    let expr = expr.trim_end();
    let number_start = expr
        .rfind(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == 'e'))
        .map(|i| i + 1)?;
    if number_start == expr.len() {
        return None;
    }
    let rest = expr[..number_start].trim_end();
    ["==", "!=", ">=", "<=", ">", "<"]
        .iter()
        .find_map(|op| rest.strip_suffix(op))
        .map(|q| q.trim_end().to_string())
}

/// Metric names a PromQL expression mentions (ours, the process ones, `up`).
fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let starts = |p: &str| expr[i..].starts_with(p);
        let boundary = i == 0
            || !(bytes[i - 1].is_ascii_alphanumeric()
                || bytes[i - 1] == b'_'
                || bytes[i - 1] == b':');
        if boundary && (starts("recd_") || starts("process_")) {
            let end = expr[i..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .map_or(expr.len(), |e| i + e);
            out.push(expr[i..end].to_string());
            i = end;
        } else {
            i += 1;
        }
    }
    out
}

#[test]
fn alert_queries_and_names_are_found() {
    assert_eq!(
        alert_query("min(recd_ready) < 1").as_deref(),
        Some("min(recd_ready)")
    );
    assert_eq!(
        alert_query("a / b > 0.05\n").as_deref(),
        Some("a / b"),
        "multi-line rules end in a newline"
    );
    assert_eq!(alert_query("x >= -1e3").as_deref(), Some("x"));
    assert_eq!(alert_query("rate(x[5m])"), None);
    assert_eq!(
        metric_names("sum(rate(recd_a_total[5m])) / recd:ctr:rate1h + process_open_fds"),
        vec!["recd_a_total", "process_open_fds"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_real_prometheus_evaluates_every_dashboard_and_alert_expression() {
    let (Some(prometheus), Some(promtool)) = (tool("prometheus"), tool("promtool")) else {
        return;
    };
    let rules = repo().join("deploy/prometheus/alerts.yml");
    let check = Command::new(&promtool)
        .arg("check")
        .arg("rules")
        .arg(&rules)
        .output()
        .expect("run promtool");
    assert!(
        check.status.success(),
        "promtool check rules: {}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    let Some(url) = crate::redis::redis_or_skip() else {
        return;
    };

    // recd on Redis (so the Redis panels have data), with drift windows small enough for a
    // short test.
    let dir = data_dir("prometheus");
    std::fs::create_dir_all(&dir).expect("dir");
    let config = dir.join("recd.toml");
    std::fs::write(
        &config,
        format!(
            "{}\n[monitoring]\nreference_size = 10\nlive_size = 20\nmin_live = 10\ndiversity_sample = 1.0\n",
            crate::redis::SCHEMA
        ),
    )
    .expect("config");
    let prefix = format!("e2eprom{}:", std::process::id());
    let data = dir.join("data");
    let s = Server::start(
        &[
            "demo",
            "--data-dir",
            data.to_str().expect("utf-8"),
            "--items",
            "500",
            "--users",
            "40",
            "--seed",
            "5",
            "--backend",
            "redis",
            "--redis-url",
            &url,
            "--config",
            config.to_str().expect("utf-8"),
        ],
        &[("RECD_REDIS__PREFIX", prefix.as_str())],
    );

    // /metrics passes promtool's lint (HELP everywhere, counter and unit naming).
    let text = s.get_text("/metrics").await;
    let mut lint = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool check metrics");
    {
        use std::io::Write;
        let mut stdin = lint.stdin.take().expect("stdin");
        stdin.write_all(text.as_bytes()).expect("write metrics");
    }
    let out = lint.wait_with_output().expect("promtool output");
    assert!(
        out.status.success(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let target = s
        .base
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let prom = Prometheus::start(&prometheus, &dir.join("prometheus"), &target);

    // Traffic that exercises every panel: recommendations (fresh and cached), clicks and a
    // purchase naming the lists they came from, new items with vectors.
    let mut items = Vec::new();
    for i in 0..12 {
        let v: Vec<f64> = (0..64).map(|d| ((i * 64 + d) % 7) as f64 + 0.5).collect();
        items.push(json!({"id": format!("new-{i}"), "vector": v, "category": ["books"]}));
    }
    let (status, body) = s.put("/v1/items", json!({"items": items})).await;
    assert_eq!(status, 200, "{body}");
    let traffic = || async {
        for round in 0..2 {
            for u in 0..20 {
                let user = format!("user-{u}");
                let answer = s
                    .recommend(json!({"user_id": user, "count": 10, "use_cache": round == 1}))
                    .await;
                let (Some(item), Some(rec)) = (
                    ids(&answer).first().cloned(),
                    answer["recommendation_id"].as_str(),
                ) else {
                    continue;
                };
                let kind = if u % 5 == 0 { "purchase" } else { "click" };
                let (status, body) = s
                    .post(
                        "/v1/events",
                        json!({"events": [{"user_id": user, "item_id": item, "type": kind, "recommendation_id": rec}]}),
                    )
                    .await;
                assert_eq!(status, 200, "{body}");
            }
        }
    };
    traffic().await;

    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("deploy/grafana/recd.json")).expect("dashboard"),
    )
    .expect("dashboard JSON");
    let mut queries: Vec<(String, String)> = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for t in panel["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().expect("expr");
            queries.push((format!("panel '{}'", panel["title"]), expr.to_string()));
        }
    }
    assert!(queries.len() >= 20, "the dashboard has its panels");

    // Prometheus loaded the rules file (from the API: what it actually runs).
    let mut alerts = 0;
    let loaded = crate::redis::eventually(Duration::from_secs(60), || async {
        prom.api("/api/v1/rules", &[])
            .await
            .is_some_and(|d| d["groups"].as_array().is_some_and(|g| g.len() == 2))
    })
    .await;
    assert!(
        loaded,
        "Prometheus did not load deploy/prometheus/alerts.yml"
    );
    let groups = prom.api("/api/v1/rules", &[]).await.expect("rules");
    for group in groups["groups"].as_array().expect("groups") {
        for rule in group["rules"].as_array().expect("rules") {
            let expr = rule["query"].as_str().expect("query").to_string();
            let name = rule["name"].as_str().unwrap_or("?").to_string();
            if rule["type"] == "alerting" {
                alerts += 1;
                let query = alert_query(&expr).unwrap_or_else(|| {
                    panic!("alert {name}: `{expr}` does not end in <comparison> <number>")
                });
                queries.push((format!("alert {name}"), query));
            } else {
                queries.push((format!("rule {name}"), expr));
            }
        }
    }
    assert!(alerts >= 8, "the alerts of the issue are there");

    // Scrapes and rule evaluations come every second: poll (keeping traffic flowing, so
    // rates have two samples) until every query has data, or say which never did.
    let mut missing: Vec<String> = Vec::new();
    for _ in 0..60 {
        missing.clear();
        for (what, q) in &queries {
            if !prom.has_data(q).await {
                missing.push(format!("{what}: {q}"));
            }
        }
        if missing.is_empty() {
            break;
        }
        traffic().await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        missing.is_empty(),
        "queries without data:\n{}",
        missing.join("\n")
    );

    // And no query names a series recd does not export (`or vector(0)` could hide one).
    let names = prom
        .api("/api/v1/label/__name__/values", &[])
        .await
        .expect("metric names");
    let names: Vec<&str> = names
        .as_array()
        .expect("names")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for (what, q) in &queries {
        for n in metric_names(q) {
            assert!(
                names.contains(&n.as_str()),
                "{what} refers to `{n}`, which does not exist"
            );
        }
    }
}
