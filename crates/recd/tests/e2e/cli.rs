//! The command line's hygiene and feedback (issue 11, "output hygiene" and "progress"): a
//! start that fails never says it is listening, and a taken port fails before any loading;
//! logs written to a pipe carry no colour; each subcommand offers only the flags it uses;
//! a missing input is a usage error (exit 2); long work reports counts, rate and ETA, and
//! `recd train` the loss of every iteration; `import events --create-items` on Redis.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::json;

use crate::server::{Server, data_dir, sample};

fn recd(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_recd"));
    cmd.args(args)
        .env("RECD_LOG", "warn")
        .env_remove("RECD_CONFIG")
        .stdin(Stdio::null());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().expect("run recd")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

/// A small CSV of (user, item, time): `users` users with `per_user` items each.
fn events_csv(path: &Path, users: usize, per_user: usize) {
    let mut out = String::from("user_id,item_id,timestamp\n");
    let t0 = 1_600_000_000_000u64;
    let mut t = 0;
    for u in 0..users {
        for j in 0..per_user {
            t += 1;
            out.push_str(&format!("u{u},i{},{}\n", (u * 7 + j * 3) % 300, t0 + t));
        }
    }
    std::fs::write(path, out).expect("write the csv");
}

#[test]
fn a_taken_port_fails_before_the_demo_loads_anything() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a port");
    let addr = taken.local_addr().expect("addr").to_string();
    let dir = data_dir("cli-taken");
    let out = recd(
        &[
            "demo",
            "--data-dir",
            p(&dir),
            "--listen",
            &addr,
            "--items",
            "2000",
            "--users",
            "100",
        ],
        &[],
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains("cannot listen on"), "{stderr}");
    assert!(!stdout.contains("recd listening"), "{stdout}");
    assert!(
        !dir.join("recd.redb").exists(),
        "the demo loaded its data before finding the port taken"
    );
}

#[test]
fn a_failed_start_never_says_it_is_listening() {
    // The catalog source refuses connections: a fatal start-up error after the bind.
    let config = crate::server::scratch_file("cli-pg-config", "toml");
    std::fs::write(
        &config,
        "[catalog]\nsource = \"postgres://recd@127.0.0.1:1/shop\"\n\
         query = \"SELECT $1::text AS id\"\n",
    )
    .expect("config");
    let dir = data_dir("cli-catalog");
    let out = recd(
        &[
            "demo",
            "--config",
            p(&config),
            "--data-dir",
            p(&dir),
            "--listen",
            "127.0.0.1:0",
            "--items",
            "300",
            "--users",
            "20",
        ],
        &[],
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(!out.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("catalog"), "{stderr}");
    assert!(
        !stdout.contains("recd listening"),
        "said listening, then failed:\n{stdout}\n{stderr}"
    );
    let _ = std::fs::remove_file(&config);
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_to_a_pipe_carry_no_colour() {
    let dir = data_dir("cli-colour");
    let mut s = Server::start_with_stderr(
        &[
            "demo",
            "--data-dir",
            p(&dir),
            "--items",
            "300",
            "--users",
            "20",
        ],
        &[("RECD_LOG", "info")],
        Stdio::piped(),
    );
    let (status, _) = s.get("/v1/items/does-not-exist").await;
    assert_eq!(status, 404);
    let mut stderr = s.child.stderr.take().expect("piped stderr");
    let _ = s.child.kill();
    let _ = s.child.wait();
    let mut log = String::new();
    stderr.read_to_string(&mut log).expect("read the log");
    assert!(log.contains("INFO"), "the log has info lines: {log}");
    assert!(
        !log.contains('\u{1b}'),
        "escape codes in a piped log:\n{log}"
    );
}

#[test]
fn each_subcommand_offers_only_the_flags_it_uses() {
    let help = |args: &[&str]| {
        let out = recd(args, &[]);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        text(&out.stdout)
    };
    for args in [
        &["import", "events", "--help"][..],
        &["import", "items", "--help"],
        &["import", "movielens", "--help"],
        &["train", "--help"],
        &["model", "list", "--help"],
    ] {
        let h = help(args);
        assert!(h.contains("--data-dir"), "{args:?}:\n{h}");
        for flag in ["--listen", "--insecure"] {
            assert!(!h.contains(flag), "{args:?} offers {flag}:\n{h}");
        }
    }
    for args in [&["serve", "--help"][..], &["demo", "--help"]] {
        let h = help(args);
        assert!(h.contains("--listen") && h.contains("--insecure"), "{h}");
    }
    // Given anyway, it is a usage error, not silently ignored.
    let out = recd(&["train", "--listen", "127.0.0.1:9"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

#[test]
fn a_missing_input_is_a_usage_error_and_creates_nothing() {
    let dir = data_dir("cli-missing");
    let missing = dir.with_extension("nowhere");
    let m = p(&missing);
    for args in [
        &["import", "events", m, "--data-dir", p(&dir)][..],
        &[
            "import",
            "events",
            m,
            "--create-items",
            "--data-dir",
            p(&dir),
        ],
        &["import", "items", m, "--data-dir", p(&dir)],
        &["import", "movielens", m, "--data-dir", p(&dir)],
        &["train", "--interactions", m, "--data-dir", p(&dir)],
        &["eval", "--interactions", m],
    ] {
        let out = recd(args, &[]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(m), "{args:?} names the file: {stderr}");
        assert!(!dir.exists(), "{args:?} created the data dir");
    }
}

#[test]
fn import_logs_progress_and_train_prints_the_loss_of_every_iteration() {
    let input = data_dir("cli-progress-in");
    std::fs::create_dir_all(&input).expect("input dir");
    let csv = input.join("events.csv");
    events_csv(&csv, 200, 20);
    let dir = data_dir("cli-progress");
    // Not a terminal: log lines (every step, to see them on a short import).
    let envs = [("RECD_LOG", "info"), ("RECD_PROGRESS_EVERY_MS", "0")];
    let out = recd(
        &[
            "import",
            "events",
            p(&csv),
            "--create-items",
            "--factors",
            "8",
            "--data-dir",
            p(&dir),
        ],
        &envs,
    );
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(text(&out.stdout).contains("imported 4000 events"));
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("events: ") && l.contains("/4000 (") && l.contains("ETA"))
        .collect();
    assert!(
        !lines.is_empty(),
        "no progress line with count, rate and ETA:\n{stderr}"
    );
    assert!(
        lines.iter().all(|l| l.contains("/s")),
        "progress lines carry a rate: {lines:?}"
    );
    assert!(stderr.contains("events: 4000 done in"), "{stderr}");
    let distinct: std::collections::HashSet<usize> = (0..200)
        .flat_map(|u| (0..20).map(move |j| (u * 7 + j * 3) % 300))
        .collect();
    assert!(
        stderr.contains(&format!("items created: {} done in", distinct.len())),
        "{stderr}"
    );

    let out = recd(
        &[
            "train",
            "--data-dir",
            p(&dir),
            "--iterations",
            "3",
            "--threads",
            "2",
        ],
        &[],
    );
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let losses: Vec<f64> = (1..=3)
        .map(|i| {
            let prefix = format!("recd train: iteration {i}/3: loss ");
            let line = stderr
                .lines()
                .find_map(|l| l.strip_prefix(&prefix))
                .unwrap_or_else(|| panic!("no loss for iteration {i}:\n{stderr}"));
            line.split_whitespace()
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("not a number: {line}"))
        })
        .collect();
    assert!(
        losses.iter().all(|l| l.is_finite() && *l > 0.0),
        "{losses:?}"
    );
    assert!(losses[2] <= losses[0], "the loss falls: {losses:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn import_events_creates_items_on_redis() {
    let Some(url) = crate::redis::redis_or_skip() else {
        return;
    };
    let input = data_dir("cli-redis-in");
    std::fs::create_dir_all(&input).expect("input dir");
    let csv = input.join("events.csv");
    events_csv(&csv, 50, 6);
    let prefix = format!("e2ecli{}:", std::process::id());
    let envs = [("RECD_REDIS__PREFIX", prefix.as_str())];
    let redis = ["--backend", "redis", "--redis-url", url.as_str()];
    let import = |file: &Path| {
        let mut args = vec![
            "import",
            "events",
            p(file),
            "--create-items",
            "--factors",
            "8",
        ];
        args.extend_from_slice(&redis);
        recd(&args, &envs)
    };
    let out = import(&csv);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    let distinct: std::collections::HashSet<usize> = (0..50)
        .flat_map(|u| (0..6).map(move |j| (u * 7 + j * 3) % 300))
        .collect();
    assert!(
        stdout.contains(&format!("created {} items", distinct.len())),
        "{stdout}"
    );
    assert!(stdout.contains("imported 300 events"), "{stdout}");
    // A second file creates only what is new.
    let more = input.join("more.csv");
    std::fs::write(&more, "user_id,item_id\nu0,i0\nu1,brand-new\n").expect("write");
    let out = import(&more);
    let stdout = text(&out.stdout);
    assert!(stdout.contains("created 1 items"), "{stdout}");

    // Served from the same Redis: the created items exist and count for popularity.
    let dir = data_dir("cli-redis");
    let mut args = vec!["serve", "--data-dir", p(&dir)];
    args.extend_from_slice(&redis);
    let s = Server::start(&args, &envs);
    let (_, h) = s.get("/health").await;
    assert_eq!(h["items"].as_u64(), Some(distinct.len() as u64 + 1), "{h}");
    let (status, item) = s.get("/v1/items/brand-new").await;
    assert_eq!(status, 200, "{item}");
    let a = s
        .recommend(json!({"user_id": "newcomer", "count": 3}))
        .await;
    assert_eq!(a["source"], "popular", "{a}");
    assert_eq!(a["items"].as_array().map(Vec::len), Some(3), "{a}");
}

#[test]
fn eval_counts_its_als_iterations() {
    let input = data_dir("cli-eval-progress");
    std::fs::create_dir_all(&input).expect("input dir");
    let csv = input.join("events.csv");
    events_csv(&csv, 120, 12);
    let envs = [("RECD_LOG", "info"), ("RECD_PROGRESS_EVERY_MS", "0")];
    let out = recd(
        &[
            "eval",
            "--interactions",
            p(&csv),
            "--factors",
            "8",
            "--iterations",
            "4",
            "--no-replay",
        ],
        &envs,
    );
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    for i in 1..=4 {
        assert!(
            stderr.contains(&format!("ALS iterations: {i}/4 (")),
            "no progress line for iteration {i}:\n{stderr}"
        );
    }
    assert!(stderr.contains("ALS iterations: 4 done in"), "{stderr}");
}

/// `[server] workers` sets how many threads answer requests (here through its environment
/// form, as a config file would), whatever the machine's core count, as
/// `recd_runtime_workers` reports; out of range it is a configuration error before anything
/// starts.
#[tokio::test(flavor = "multi_thread")]
async fn server_workers_sets_the_runtime_threads() {
    for workers in [1usize, 3] {
        let dir = data_dir(&format!("workers-{workers}"));
        let n = workers.to_string();
        let s = Server::demo(&dir, &[("RECD_SERVER__WORKERS", &n)]);
        let (status, body) = s
            .post("/v1/recommend", json!({"user_id": "user-1", "count": 3}))
            .await;
        assert_eq!(status, 200, "{body}");
        let metrics = s.get_text("/metrics").await;
        let reported = sample(&metrics, "recd_runtime_workers", &[]);
        assert_eq!(reported, workers as f64, "{metrics}");
    }
    let dir = data_dir("workers-too-many");
    let out = recd(
        &[
            "demo",
            "--data-dir",
            p(&dir),
            "--items",
            "10",
            "--users",
            "2",
        ],
        &[("RECD_SERVER__WORKERS", "100000")],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("server.workers"),
        "{}",
        text(&out.stderr)
    );
}
