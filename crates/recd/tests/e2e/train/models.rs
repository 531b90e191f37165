//! Model versions end to end: every `recd train` is a version; degenerate settings are
//! refused before anything is written; a degenerate model is rejected by the quality gate
//! and the live one keeps serving; activating an older version (HTTP or `recd model
//! activate`) brings its recommendations back; old versions beyond `keep_versions` go.
//! Both backends.

use serde_json::{Value, json};

use super::{DIM, MOVIES_PER_GENRE, USERS, import_movielens, ok, path, recd, write_movielens};
use crate::server::{DataDir, Server, data_dir, ids};

/// An interactions file in which user u loves genre (u + 1) % 3 instead of u % 3: a model
/// trained on it ranks other movies first for everyone, and its own hold-out (these
/// events) says it is better than one trained on the store's log.
fn write_rotated(name: &str) -> DataDir {
    let file = crate::server::scratch_file(&format!("rotated-{name}"), "jsonl");
    let mut lines = Vec::new();
    for u in 1..=USERS {
        let g = ((u + 1) % 3) * MOVIES_PER_GENRE;
        for j in 0..10 {
            let m = g + 1 + (u * 7 + j * 3) % MOVIES_PER_GENRE;
            lines.push(
                json!({"user_id": u.to_string(), "item_id": m.to_string(), "type": "purchase",
                       "timestamp": 1_600_000_000_000i64 + i64::from(u * 100 + j)})
                .to_string(),
            );
        }
    }
    std::fs::write(&file, lines.join("\n")).expect("write the rotated interactions");
    file
}

/// Every user's top 5, computed now (no cache), as item ids.
async fn lists(s: &Server) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for u in 1..=USERS {
        let a = s
            .recommend(json!({"user_id": u.to_string(), "count": 5, "use_cache": false}))
            .await;
        assert_eq!(a["source"], "personalized", "{a}");
        out.push(ids(&a));
    }
    out
}

async fn models(s: &Server) -> Value {
    let (status, m) = s.get("/v1/models").await;
    assert_eq!(status, 200, "{m}");
    m
}

fn versions(m: &Value) -> Vec<(String, String)> {
    m["models"]
        .as_array()
        .expect("models list")
        .iter()
        .map(|v| {
            (
                v["version"].as_str().unwrap_or("?").to_string(),
                v["status"].as_str().unwrap_or("?").to_string(),
            )
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// `recd model list --json` on `args`' store.
fn list_json(args: &[&str], envs: &[(&str, &str)]) -> Value {
    let mut all = vec!["model", "list", "--json"];
    all.extend_from_slice(args);
    let out = ok(&recd(&all, envs), "model list --json");
    serde_json::from_str(out.trim()).expect("model list --json prints JSON")
}

/// Degenerate settings exit 2 and record nothing.
fn degenerate_settings_are_refused(store: &[&str], envs: &[(&str, &str)]) {
    for bad in [
        &["--iterations", "0"][..],
        &["--alpha", "0"],
        &["--alpha", "-1"],
        &["--regularization", "-1"],
        &["--regularization", "NaN"],
        &["--factors", "0"],
        &["--gate-margin", "1.5"],
    ] {
        let mut args = vec!["train"];
        args.extend_from_slice(store);
        args.extend_from_slice(bad);
        let out = recd(&args, envs);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{bad:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let m = list_json(store, envs);
    assert_eq!(m["models"], json!([]), "nothing recorded: {m}");
    assert_eq!(m["live"], Value::Null);
}

#[tokio::test(flavor = "multi_thread")]
async fn versions_gate_and_rollback_embedded() {
    let ml = write_movielens("models");
    let dir = data_dir("train-models");
    let d = path(&dir);
    import_movielens(&ml, d);
    let store = ["--data-dir", d];
    degenerate_settings_are_refused(&store, &[]);
    // empty training data: a file without events
    let empty = crate::server::scratch_file("train-models-empty", "jsonl");
    std::fs::write(&empty, "").expect("write an empty file");
    let out = recd(
        &["train", "--data-dir", d, "--interactions", path(&empty)],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));

    // v1, direct on the data dir
    let out = ok(
        &recd(
            &[
                "train",
                "--data-dir",
                d,
                "--iterations",
                "10",
                "--seed",
                "1",
            ],
            &[],
        ),
        "train v1",
    );
    assert!(
        out.contains("quality gate: no model is live") && out.contains("model v1 is live"),
        "{out}"
    );

    let envs = [("RECD_MODEL__KEEP_VERSIONS", "3")];
    let s = Server::start(&["serve", "--data-dir", d], &envs);
    let first = lists(&s).await;
    let m = models(&s).await;
    assert_eq!(versions(&m), pairs(&[("v1", "live")]), "{m}");
    assert_eq!(m["live"], "v1");
    assert_eq!(m["keep_versions"], 3);
    assert_eq!(m["gate_margin"], 0.05);
    let v1 = &m["models"][0];
    assert!(
        v1["created_at"].as_str().is_some_and(|t| t.contains('T')),
        "{v1}"
    );
    assert_eq!(v1["live"], true);
    assert_eq!(v1["settings"]["iterations"], 10);
    assert_eq!(v1["settings"]["seed"], 1);
    assert_eq!(v1["settings"]["factors"], DIM);
    assert_eq!(v1["gate"]["baseline"], "popularity");
    assert_eq!(v1["gate"]["passed"], true);
    assert_eq!(v1["gate"]["k"], 10);
    assert_eq!(v1["gate"]["candidate"]["users"], USERS);
    assert!(v1["gate"]["candidate"]["ndcg"].is_number(), "{v1}");
    assert_eq!(v1["counts"]["users"], USERS);
    assert_eq!(v1["counts"]["held_out"], USERS);

    // v2 through the server, trained on other tastes (and better on them than v1)
    let target = s.base.clone();
    let rotated = write_rotated("embedded");
    let v2_args = [
        "train",
        "--target",
        &target,
        "--iterations",
        "10",
        "--interactions",
        path(&rotated),
    ];
    let out = ok(&recd(&v2_args, &[]), "train v2 --target");
    assert!(out.contains("model v2 is live"), "{out}");
    let m = models(&s).await;
    assert_eq!(
        versions(&m),
        pairs(&[("v1", "available"), ("v2", "live")]),
        "{m}"
    );
    assert_eq!(m["models"][1]["gate"]["baseline"], "live");
    assert_eq!(m["models"][1]["gate"]["baseline_version"], "v1");
    let second = lists(&s).await;
    assert_ne!(first, second, "other tastes, other lists");

    // A degenerate training (one sweep, absurd regularization) on the same events ranks
    // far worse than v2 on their hold-out: rejected, kept, not live; v2 keeps serving.
    let out = recd(
        &[
            "train",
            "--target",
            &target,
            "--iterations",
            "1",
            "--regularization",
            "1e30",
            "--interactions",
            path(&rotated),
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("failed the quality gate") && err.contains("v3"),
        "{err}"
    );
    let m = models(&s).await;
    assert_eq!(
        versions(&m),
        pairs(&[("v1", "available"), ("v2", "live"), ("v3", "rejected")]),
        "{m}"
    );
    assert_eq!(m["models"][2]["gate"]["passed"], false);
    assert_eq!(
        lists(&s).await,
        second,
        "the rejected model changed nothing"
    );

    // Rollback: v1's lists come back.
    let (status, a) = s.post("/v1/models/v1/activate", json!({})).await;
    assert_eq!(status, 200, "{a}");
    assert_eq!(a["already_live"], false);
    assert_eq!(a["users"], USERS);
    assert_eq!(
        lists(&s).await,
        first,
        "activating v1 restores its recommendations"
    );
    let (status, a) = s.post("/v1/models/v1/activate", json!({})).await;
    assert_eq!((status, &a["already_live"]), (200, &json!(true)), "{a}");
    for unknown in ["v9", "v0", "latest"] {
        let (status, e) = s
            .post(&format!("/v1/models/{unknown}/activate"), json!({}))
            .await;
        assert_eq!(status, 404, "{unknown}: {e}");
        assert_eq!(e["error"]["code"], "not_found");
    }
    assert_eq!(models(&s).await["live"], "v1");

    // A strategy cannot pin a version that is not live.
    let (status, e) = s.put("/v1/strategies/pinned", json!({"model": "v2"})).await;
    assert_eq!(status, 400, "{e}");
    let msg = e["error"]["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("'v2' is not live") && msg.contains("live one is v1"),
        "{msg}"
    );

    // The command line against the server.
    let table = ok(
        &recd(&["model", "list", "--target", &target], &[]),
        "model list",
    );
    assert!(
        table.contains("v3") && table.contains("rejected") && table.contains("live: v1"),
        "{table}"
    );
    let out = ok(
        &recd(&["model", "activate", "v2", "--target", &target], &[]),
        "model activate v2",
    );
    assert!(out.contains("model v2 is live"), "{out}");
    assert_eq!(lists(&s).await, second);
    let missing = recd(&["model", "activate", "v7", "--target", &target], &[]);
    assert_eq!(missing.status.code(), Some(2));

    // Retention (keep_versions 3): the fourth version deletes the oldest that is not live.
    ok(&recd(&v2_args, &[]), "train v4 (the same as v2: passes)");
    let m = models(&s).await;
    assert_eq!(
        versions(&m),
        pairs(&[("v2", "available"), ("v3", "rejected"), ("v4", "live")]),
        "{m}"
    );
    drop(s);

    // The data dir keeps the registry; the command line reads it directly.
    let m = list_json(&store, &[]);
    assert_eq!(m["live"], "v4", "{m}");
    let out = ok(
        &recd(&["model", "activate", "v2", "--data-dir", d], &[]),
        "model activate v2 --data-dir",
    );
    assert!(out.contains("model v2 is live"), "{out}");
    let s = Server::start(&["serve", "--data-dir", d], &[]);
    assert_eq!(lists(&s).await, second);
}

#[tokio::test(flavor = "multi_thread")]
async fn versions_gate_and_rollback_redis() {
    let Some(url) = crate::redis::redis_or_skip() else {
        return;
    };
    let ml = write_movielens("models-redis");
    let config = crate::server::scratch_file("train-models-redis-config", "toml");
    std::fs::write(
        &config,
        format!(
            "[schema]\nvector = {{ dim = {DIM}, metric = \"ip\" }}\n\
             [schema.fields]\ntitle = \"text\"\ngenres = \"tag\"\nyear = \"numeric\"\n"
        ),
    )
    .expect("write config");
    let prefix = format!("e2e-models-{}:", std::process::id());
    let envs = [("RECD_REDIS__PREFIX", prefix.as_str())];
    let store = [
        "--backend",
        "redis",
        "--redis-url",
        url.as_str(),
        "--config",
        path(&config),
    ];
    let with = |head: &[&str], tail: &[&str]| -> Vec<String> {
        head.iter()
            .chain(store.iter())
            .chain(tail.iter())
            .map(|s| s.to_string())
            .collect()
    };
    let run = |args: Vec<String>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        recd(&args, &envs)
    };
    ok(
        &run(with(&["import", "movielens", path(&ml)], &[])),
        "import",
    );
    degenerate_settings_are_refused(&store, &envs);

    let s = Server::start(
        &["serve"].into_iter().chain(store).collect::<Vec<_>>(),
        &envs,
    );
    ok(
        &run(with(&["train"], &["--iterations", "10", "--seed", "1"])),
        "train v1",
    );
    let first = lists(&s).await;
    let rotated = write_rotated("redis");
    ok(
        &run(with(
            &["train"],
            &["--iterations", "10", "--interactions", path(&rotated)],
        )),
        "train v2",
    );
    let m = models(&s).await;
    assert_eq!(
        versions(&m),
        pairs(&[("v1", "available"), ("v2", "live")]),
        "{m}"
    );
    let second = lists(&s).await;
    assert_ne!(first, second);

    let out = run(with(
        &["train"],
        &[
            "--iterations",
            "1",
            "--regularization",
            "1e30",
            "--interactions",
            path(&rotated),
        ],
    ));
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(models(&s).await["live"], "v2");
    assert_eq!(
        lists(&s).await,
        second,
        "the rejected model changed nothing"
    );

    // Rollback from the command line, on the shared store, while the server serves.
    let out = ok(
        &run(with(&["model", "activate", "v1"], &[])),
        "model activate v1",
    );
    assert!(out.contains("model v1 is live"), "{out}");
    assert_eq!(models(&s).await["live"], "v1");
    assert_eq!(
        lists(&s).await,
        first,
        "activating v1 restores its recommendations"
    );
    // and back over HTTP
    let (status, a) = s.post("/v1/models/v2/activate", json!({})).await;
    assert_eq!(status, 200, "{a}");
    assert_eq!(lists(&s).await, second);
    let m = list_json(&store, &envs);
    assert_eq!(
        versions(&m),
        pairs(&[("v1", "available"), ("v2", "live"), ("v3", "rejected")]),
        "{m}"
    );
}
