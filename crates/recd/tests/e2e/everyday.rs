//! The everyday endpoints of API.md v2 on the real binary.

use serde_json::json;

use crate::server::{Server, data_dir, ids};

#[tokio::test(flavor = "multi_thread")]
async fn batch_recommend_answers_in_order_with_errors_in_place() {
    let dir = data_dir("batch");
    let s = Server::demo(&dir, &[]);
    let single = s
        .recommend(json!({"user_id": "user-1", "count": 5, "use_cache": false}))
        .await;
    let (status, body) = s
        .post(
            "/v1/recommend/batch",
            json!({"requests": [
                {"user_id": "user-1", "count": 5, "use_cache": false},
                {"user_id": "user-2", "count": 0},
                {"user_id": "never-seen", "count": 3, "filter": {"in_stock": true}},
                {"user": "typo"}
            ]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let results = body["results"].as_array().expect("results");
    assert_eq!(results.len(), 4);
    assert_eq!(results[0]["user_id"], "user-1");
    assert_eq!(
        ids(&results[0]),
        ids(&single),
        "same answer as a single request"
    );
    assert_eq!(results[1]["error"]["code"], "invalid_argument", "{body}");
    assert_eq!(results[2]["source"], "popular");
    assert!(ids(&results[2]).len() == 3);
    assert_eq!(results[3]["error"]["code"], "invalid_argument", "{body}");
    let too_many: Vec<_> = (0..1001)
        .map(|i| json!({"user_id": format!("u{i}")}))
        .collect();
    let (status, body) = s
        .post("/v1/recommend/batch", json!({ "requests": too_many }))
        .await;
    assert_eq!(status, 400, "{body}");
}

/// Logs written to a pipe or file carry no colour escape codes (issue 11, output hygiene).
#[test]
fn logs_to_a_file_have_no_colour_codes() {
    use std::io::{BufRead, BufReader, Read};
    use std::process::{Command, Stdio};
    let dir = data_dir("ansi");
    let mut child = Command::new(env!("CARGO_BIN_EXE_recd"))
        .args([
            "demo",
            "--items",
            "200",
            "--users",
            "20",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(&dir)
        .env("RECD_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn recd");
    let stdout = child.stdout.take().expect("stdout");
    let listening = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .any(|l| l.starts_with("recd listening on "));
    assert!(listening, "recd never listened");
    let _ = child.kill();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    let _ = child.wait();
    assert!(stderr.contains("recd is serving"), "{stderr}");
    assert!(
        !stderr.contains('\u{1b}'),
        "escape codes in a piped log: {stderr:?}"
    );
}

/// A missing input file is a usage error (exit 2) and creates nothing.
#[test]
fn importing_a_missing_file_exits_2_and_creates_nothing() {
    let dir = data_dir("import-missing");
    for what in ["items", "events"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_recd"))
            .args([
                "import",
                what,
                "/nonexistent/recd-input.jsonl",
                "--data-dir",
            ])
            .arg(&dir)
            .output()
            .expect("run recd import");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{what}: {stderr}");
        assert!(stderr.contains("does not exist"), "{stderr}");
        assert!(!dir.exists(), "{what}: the data dir was created");
    }
}
