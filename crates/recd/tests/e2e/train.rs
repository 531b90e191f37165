//! `recd import movielens` → `recd train` → `recd serve`, `recd eval --json`, and vectors
//! written while requests are being served (Redis across processes, embedded in-process).
//!
//! The data is a tiny ml-latest folder written here: three genres, users with a planted
//! taste for one of them (no ../shared data needed). `target`: `recd train --target URL`
//! against a running server.

mod models;
mod target;
mod transitions;

use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use recd_core::{Event, EventType, ItemUpsert, Schema};
use recd_store::embedded::EmbeddedStore;
use recd_store::{ModelSettings, Store};
use serde_json::{Value, json};
use tokio::sync::{Mutex, Notify};

use crate::server::{DataDir, Server, data_dir, ids};

const GENRES: [&str; 3] = ["Action", "Comedy", "Horror"];
const MOVIES_PER_GENRE: u32 = 20;
const USERS: u32 = 45;
const DIM: usize = 16;

fn genre_of(movie: u32) -> &'static str {
    GENRES[((movie - 1) / MOVIES_PER_GENRE) as usize]
}

fn planted(user: u32) -> &'static str {
    GENRES[(user % 3) as usize]
}

/// An ml-latest folder: 60 movies in 3 genres; user u loves genre u % 3 (12 of its 20
/// movies at 4–5 stars) and rated two movies of other genres at 2–3 stars.
fn write_movielens(name: &str) -> DataDir {
    let dir = data_dir(&format!("ml-{name}"));
    std::fs::create_dir_all(&dir).expect("create the movielens dir");
    let mut movies = String::from("movieId,title,genres\r\n");
    for m in 1..=MOVIES_PER_GENRE * 3 {
        movies.push_str(&format!(
            "{m},\"Movie {m}, the {} one ({})\",{}\r\n",
            genre_of(m),
            1980 + m,
            genre_of(m)
        ));
    }
    let mut ratings = String::from("userId,movieId,rating,timestamp\r\n");
    for u in 1..=USERS {
        let g = (u % 3) * MOVIES_PER_GENRE;
        let mut t = 1_500_000_000 + u64::from(u) * 3600;
        for j in 0..12 {
            let m = g + 1 + (u * 7 + j * 3) % MOVIES_PER_GENRE;
            let stars = if (u + j) % 2 == 0 { "5.0" } else { "4.0" };
            ratings.push_str(&format!("{u},{m},{stars},{t}\r\n"));
            t += 60;
        }
        for (n, off) in [1, 2].into_iter().enumerate() {
            let other = ((u % 3 + off) % 3) * MOVIES_PER_GENRE;
            let m = other + 1 + (u * 5 + n as u32) % MOVIES_PER_GENRE;
            ratings.push_str(&format!("{u},{m},{}.0,{t}\r\n", 2 + n));
            t += 60;
        }
    }
    // a movie of the catalog nobody rated: it must stay without a vector
    std::fs::write(dir.join("movies.csv"), movies).expect("write movies.csv");
    std::fs::write(dir.join("ratings.csv"), ratings).expect("write ratings.csv");
    dir
}

pub(crate) fn recd(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_recd"));
    cmd.args(args).env("RECD_LOG", "warn");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().expect("run recd")
}

pub(crate) fn ok(out: &Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed ({:?}):\n{stdout}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// How many of the answer's items carry `genre`.
fn in_genre(answer: &Value, genre: &str) -> usize {
    answer["items"].as_array().map_or(0, |items| {
        items
            .iter()
            .filter(|i| match &i["item"]["genres"] {
                // one tag is written as a string, several as an array
                Value::String(g) => g == genre,
                Value::Array(gs) => gs.iter().any(|g| g == genre),
                _ => false,
            })
            .count()
    })
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

/// `recd import movielens ML --data-dir D --factors DIM`, embedded: what the train tests
/// start from. Its output.
fn import_movielens(ml: &Path, d: &str) -> String {
    let dim = DIM.to_string();
    let args = [
        "import",
        "movielens",
        path(ml),
        "--data-dir",
        d,
        "--factors",
        &dim,
    ];
    ok(&recd(&args, &[]), "import movielens")
}

/// `recd train --data-dir D --iterations 10 --threads 2`: a quick, fixed training. Its output.
fn train_quick(d: &str) -> String {
    let args = [
        "train",
        "--data-dir",
        d,
        "--iterations",
        "10",
        "--threads",
        "2",
    ];
    ok(&recd(&args, &[]), "train")
}

#[tokio::test(flavor = "multi_thread")]
async fn import_train_serve_recommends_the_planted_genre() {
    let ml = write_movielens("embedded");
    let dir = data_dir("train-embedded");
    let d = path(&dir);
    let out = import_movielens(&ml, d);
    assert!(
        out.contains("60 items") && out.contains("ml-latest"),
        "{out}"
    );
    // importing the ratings twice would double-count them
    let again = recd(&["import", "movielens", path(&ml), "--data-dir", d], &[]);
    assert_eq!(again.status.code(), Some(2));

    // before training: items have no vectors, everyone gets popular items
    {
        let s = Server::start(&["serve", "--data-dir", d], &[]);
        let a = s.recommend(json!({"user_id": "1", "count": 5})).await;
        assert_eq!(a["source"], "popular", "{a}");
        let (_, item) = s.get("/v1/items/1?include_vector=true").await;
        assert!(item.get("vector").is_none(), "{item}");
        assert_eq!(item["year"], 1981.0);
        assert_eq!(item["title"], "Movie 1, the Action one");
        // the embedded data dir has one owner: training against a running server says so
        let busy = recd(&["train", "--data-dir", d], &[]);
        assert_eq!(busy.status.code(), Some(1));
        let err = String::from_utf8_lossy(&busy.stderr);
        assert!(err.contains("in use by another process"), "{err}");
    }

    let out = train_quick(d);
    assert!(
        out.contains("trained ALS") && out.contains("45 user vectors"),
        "{out}"
    );
    let wrong = recd(&["train", "--data-dir", d, "--factors", "8"], &[]);
    assert_eq!(wrong.status.code(), Some(2), "factors must match the store");

    let s = Server::start(&["serve", "--data-dir", d], &[]);
    let mut dominated = 0;
    for u in 1..=USERS {
        let a = s
            .recommend(json!({"user_id": u.to_string(), "count": 5}))
            .await;
        assert_eq!(a["source"], "personalized", "{a}");
        assert_eq!(ids(&a).len(), 5);
        if in_genre(&a, planted(u)) >= 4 {
            dominated += 1;
        }
    }
    assert!(
        dominated >= USERS * 9 / 10,
        "only {dominated} of {USERS} users get their planted genre"
    );
    let (_, item) = s.get("/v1/items/1?include_vector=true").await;
    assert_eq!(item["vector"].as_array().map(Vec::len), Some(DIM), "{item}");
}

#[test]
fn eval_json_has_the_api_shape() {
    let ml = write_movielens("eval");
    let out = ok(
        &recd(
            &[
                "eval",
                "--interactions",
                path(&ml),
                "--json",
                "--factors",
                "8",
                "--iterations",
                "10",
                "--regularization",
                "2",
                "--session-mix",
                "auto",
            ],
            &[],
        ),
        "eval --json",
    );
    let v: Value = serde_json::from_str(out.trim()).expect("eval --json prints one JSON document");
    assert!(v["dataset"].is_string() && v["split"] == "random" && v["k"] == 10);
    assert!(v["train_seconds"].as_f64().is_some_and(f64::is_finite));
    for model in ["popularity", "item_knn", "als", "pipeline"] {
        for key in [
            "precision",
            "recall",
            "ndcg",
            "map",
            "hit_rate",
            "coverage",
            "diversity",
            "novelty",
        ] {
            let x = v["models"][model][key].as_f64();
            assert!(x.is_some_and(f64::is_finite), "models.{model}.{key}: {v}");
        }
    }
    for arm in ["popularity", "batch", "realtime"] {
        for key in ["hit_rate", "ndcg"] {
            let x = v["replay"][arm][key].as_f64();
            assert!(x.is_some_and(f64::is_finite), "replay.{arm}.{key}: {v}");
        }
        assert!(v["replay"][arm]["events"].as_u64().is_some_and(|n| n > 0));
    }
    // the planted structure is learnable: ALS beats popularity
    assert!(v["models"]["als"]["ndcg"].as_f64() > v["models"]["popularity"]["ndcg"].as_f64());
    // --session-mix auto: the mix chosen on validation, with every trial, is reported
    let mix = &v["session_mix"];
    let chosen = mix["chosen"].as_f64().expect("session_mix.chosen");
    let trials = mix["trials"].as_array().expect("session_mix.trials");
    assert!(
        trials.len() > 1 && mix["validation_events"].as_u64() > Some(0),
        "{mix}"
    );
    assert!(
        trials.iter().any(|t| t["mix"].as_f64() == Some(chosen)),
        "{mix}"
    );
    let bad = recd(
        &["eval", "--interactions", path(&ml), "--session-mix", "2"],
        &[],
    );
    assert_eq!(bad.status.code(), Some(2));

    let bad = recd(&["eval", "--interactions", path(&ml), "--k", "0"], &[]);
    assert_eq!(bad.status.code(), Some(2));
    let empty = data_dir("not-movielens");
    std::fs::create_dir_all(&empty).expect("mkdir");
    let bad = recd(&["import", "movielens", path(&empty)], &[]);
    assert_eq!(bad.status.code(), Some(2));
}

/// A MovieLens folder whose users rate movies of their genre over 40 days (so a time split
/// leaves each of them events on both sides), a few of another genre now and then.
fn write_movielens_over_time(name: &str) -> DataDir {
    let dir = data_dir(&format!("ml-{name}"));
    std::fs::create_dir_all(&dir).expect("create the movielens dir");
    let mut movies = String::from("movieId,title,genres\r\n");
    for m in 1..=MOVIES_PER_GENRE * 3 {
        movies.push_str(&format!("{m},Movie {m} ({}),{}\r\n", 1980 + m, genre_of(m)));
    }
    let mut ratings = String::from("userId,movieId,rating,timestamp\r\n");
    for u in 1..=USERS {
        let g = (u % 3) * MOVIES_PER_GENRE;
        for j in 0..16u32 {
            // Every 2.5 days, at an hour of the user's own.
            let t = 1_500_000_000 + u64::from(j) * 216_000 + u64::from(u) * 1_800;
            let m = if j % 5 == 4 {
                ((u % 3 + 1) % 3) * MOVIES_PER_GENRE + 1 + (u + j) % MOVIES_PER_GENRE
            } else {
                g + 1 + (u * 7 + j * 3) % MOVIES_PER_GENRE
            };
            ratings.push_str(&format!("{u},{m},{}.0,{t}\r\n", 4 + (u + j) % 2));
        }
    }
    std::fs::write(dir.join("movies.csv"), movies).expect("write movies.csv");
    std::fs::write(dir.join("ratings.csv"), ratings).expect("write ratings.csv");
    dir
}

#[test]
fn eval_ranker_adds_the_learned_pipeline_trained_on_the_train_half() {
    let ml = write_movielens_over_time("eval-ranker");
    let out = recd(
        &[
            "eval",
            "--interactions",
            path(&ml),
            "--split",
            "time",
            "--ranker",
            "--no-replay",
            "--json",
            "--factors",
            "8",
            "--iterations",
            "10",
            "--regularization",
            "2",
        ],
        &[],
    );
    let stdout = ok(&out, "eval --ranker");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let v: Value =
        serde_json::from_str(stdout.trim()).expect("eval --json prints one JSON document");
    for model in ["pipeline", "pipeline_learned"] {
        for key in ["precision", "recall", "ndcg", "hit_rate", "coverage"] {
            let x = v["models"][model][key].as_f64();
            assert!(x.is_some_and(f64::is_finite), "models.{model}.{key}: {v}");
        }
    }
    // The ranker learned from replayed lists with clicks, and the genre it can read in
    // the users' features beats mere popularity.
    let line = stderr
        .lines()
        .find(|l| l.contains("replayed lists"))
        .unwrap_or_else(|| panic!("no replay summary in:\n{stderr}"));
    let numbers: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    assert!(
        numbers.len() == 3 && numbers.iter().all(|&n| n > 0) && numbers[2] < numbers[1],
        "{line}"
    );
    assert!(
        v["models"]["pipeline_learned"]["ndcg"].as_f64()
            > v["models"]["popularity"]["ndcg"].as_f64(),
        "{v}"
    );
}

/// One request of [`hammer`]: status, `source`, and when it was in flight.
#[derive(Debug, Clone)]
struct Sent {
    status: u16,
    source: String,
    start: Instant,
    end: Instant,
}

/// Runs recommend requests for every user in `loops` concurrent loops until `stop`;
/// `answered` is notified after each answer (so a writer can interleave with requests).
async fn hammer(
    base: String,
    loops: usize,
    stop: Arc<AtomicBool>,
    answered: Arc<Notify>,
) -> Vec<Sent> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for l in 0..loops {
        let (base, stop, seen) = (base.clone(), stop.clone(), seen.clone());
        let answered = answered.clone();
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut n = l as u32;
            while !stop.load(Ordering::SeqCst) {
                let user = n % USERS + 1;
                n += loops as u32;
                let start = Instant::now();
                // past the cache: what the store answers while vectors are being written
                let resp = client
                    .post(format!("{base}/v1/recommend"))
                    .json(&json!({"user_id": user.to_string(), "count": 5, "use_cache": false}))
                    .send()
                    .await;
                let (status, source) = match resp {
                    Ok(r) => {
                        let status = r.status().as_u16();
                        let v: Value = r.json().await.unwrap_or(Value::Null);
                        (status, v["source"].as_str().unwrap_or("").to_string())
                    }
                    Err(e) => (0, format!("transport error: {e}")),
                };
                let end = Instant::now();
                seen.lock().await.push(Sent {
                    status,
                    source,
                    start,
                    end,
                });
                answered.notify_one();
            }
        }));
    }
    for t in tasks {
        t.await.expect("request loop");
    }
    seen.lock().await.clone()
}

/// The longest stretch of `[from, to]` during which no request was in flight.
fn longest_gap(sent: &[Sent], from: Instant, to: Instant) -> Duration {
    let mut spans: Vec<(Instant, Instant)> = sent.iter().map(|s| (s.start, s.end)).collect();
    spans.sort();
    let mut covered = from;
    let mut gap = Duration::ZERO;
    for (a, b) in spans {
        if a > covered && a < to {
            gap = gap.max(a - covered);
        }
        covered = covered.max(b);
    }
    if covered < to {
        gap = gap.max(to - covered);
    }
    gap
}

/// `recd train --backend redis` in its own process while a `recd serve --backend redis`
/// answers a stream of requests: every request succeeds, and the answers switch from
/// popular to personalized while the training process is writing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_train_writes_while_the_server_serves() {
    let Some(url) = crate::redis::redis_or_skip() else {
        return;
    };
    let ml = write_movielens("redis");
    let config = crate::server::scratch_file("train-redis-config", "toml");
    std::fs::write(
        &config,
        format!(
            "[schema]\nvector = {{ dim = {DIM}, metric = \"ip\" }}\n\
             [schema.fields]\ntitle = \"text\"\ngenres = \"tag\"\nyear = \"numeric\"\n"
        ),
    )
    .expect("write config");
    let prefix = format!("e2e-train-{}:", std::process::id());
    let envs = [("RECD_REDIS__PREFIX", prefix.as_str())];
    let store = [
        "--backend",
        "redis",
        "--redis-url",
        url.as_str(),
        "--config",
        path(&config),
    ];
    let import: Vec<&str> = ["import", "movielens", path(&ml)]
        .into_iter()
        .chain(store)
        .collect();
    ok(&recd(&import, &envs), "import movielens --backend redis");
    let serve: Vec<&str> = ["serve"].into_iter().chain(store).collect();
    let s = Server::start(&serve, &envs);

    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn(hammer(
        s.base.clone(),
        8,
        stop.clone(),
        Arc::new(Notify::new()),
    ));
    // requests are flowing before training starts; user 1's popular list gets cached
    let one = json!({"user_id": "1", "count": 5});
    let before = s.recommend(one.clone()).await;
    assert_eq!(before["source"], "popular");
    let cached = s.recommend(one.clone()).await;
    assert!(cached.get("cache").is_some(), "{cached}");
    assert_eq!(cached["source"], "popular");

    // no --config: the trainer uses the schema the deployment recorded in Redis
    let train: Vec<String> = ["train", "--iterations", "10", "--batch", "1"]
        .into_iter()
        .chain(store[..4].iter().copied())
        .map(String::from)
        .collect();
    let envs_owned: Vec<(String, String)> = envs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let t0 = Instant::now();
    let out = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = train.iter().map(String::as_str).collect();
        let envs: Vec<(&str, &str)> = envs_owned
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        recd(&args, &envs)
    })
    .await
    .expect("train task");
    let t1 = Instant::now();
    let printed = ok(&out, "train --backend redis");
    assert!(printed.contains("45 user vectors"), "{printed}");
    // The trainer dropped the server's cached lists (on the shared tier: the mark at once,
    // the server's L1 when the pub/sub message reaches it): user 1's popular list goes.
    let fresh = async {
        loop {
            let a = s.recommend(one.clone()).await;
            if a.get("cache").is_none() {
                return a;
            }
        }
    };
    let fresh = tokio::time::timeout(Duration::from_secs(30), fresh)
        .await
        .expect("the server kept serving its cached popular list after training");
    assert_eq!(fresh["source"], "personalized", "{fresh}");
    // a few more rounds after the write, then stop
    for u in 1..=USERS {
        s.recommend(json!({"user_id": u.to_string(), "count": 5}))
            .await;
    }
    stop.store(true, Ordering::SeqCst);
    let sent = load.await.expect("load");

    let failed: Vec<_> = sent.iter().filter(|s| s.status != 200).collect();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {:?}",
        failed.len(),
        sent.len(),
        &failed[..failed.len().min(5)]
    );
    // Requests were in flight while the training process ran (its 105 one-vector writes
    // among them); how densely is printed, not asserted (it depends on the machine's load).
    let gap = longest_gap(&sent, t0, t1);
    let overlapping = sent.iter().filter(|s| s.end > t0 && s.start < t1).count();
    eprintln!(
        "{overlapping} requests while `recd train` ran for {:?}; longest moment without a request in flight: {gap:?}; {printed}",
        t1 - t0
    );
    assert!(overlapping >= 8, "{overlapping} requests while training");
    let during: HashSet<&str> = sent
        .iter()
        .filter(|s| s.start > t0 && s.end < t1)
        .map(|s| s.source.as_str())
        .collect();
    let after: HashSet<&str> = sent
        .iter()
        .filter(|s| s.start > t1)
        .map(|s| s.source.as_str())
        .collect();
    assert!(during.contains("popular"), "{during:?}");
    assert_eq!(after, HashSet::from(["personalized"]));
    let mut dominated = 0;
    for u in 1..=USERS {
        let a = s
            .recommend(json!({"user_id": u.to_string(), "count": 5, "use_cache": false}))
            .await;
        assert_eq!(a["source"], "personalized");
        if in_genre(&a, planted(u)) >= 4 {
            dominated += 1;
        }
    }
    assert!(dominated >= USERS * 9 / 10, "{dominated} of {USERS}");
}

/// The embedded store written in batches from another task while `recd_server` serves it
/// in the same process (how an in-process trainer would do it): no request fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_vector_writes_never_fail_a_request() {
    let mut schema = Schema::demo(DIM);
    schema.fields.clear();
    let store = Arc::new(
        EmbeddedStore::in_memory(schema.clone(), ModelSettings::default()).expect("store"),
    );
    let items: Vec<ItemUpsert> = (1..=MOVIES_PER_GENRE * 3)
        .map(|m| ItemUpsert::from_json(&json!({"id": m.to_string()}), &schema).expect("item"))
        .collect();
    store.upsert_items(items).await.expect("items");
    let events: Vec<Event> = (1..=USERS)
        .flat_map(|u| {
            (0..5).map(move |j| Event {
                user_id: u.to_string(),
                item_id: ((u * 3 + j) % 60 + 1).to_string(),
                kind: EventType::View,
                value: None,
                timestamp_ms: 1_000 + i64::from(j),
                recommendation_id: None,
            })
        })
        .collect();
    store.apply_events(&events).await.expect("events");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let state =
        recd_server::AppState::new(store.clone(), recd_server::Config::default()).expect("state");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(recd_server::serve(listener, state, async {
        let _ = rx.await;
    }));

    // before any vector: popular items
    let client = reqwest::Client::new();
    let ask = |user: u32| {
        client
            .post(format!("{base}/v1/recommend"))
            .json(&json!({"user_id": user.to_string(), "count": 5, "use_cache": false}))
            .send()
    };
    let before: Value = ask(1).await.expect("recommend").json().await.expect("json");
    assert_eq!(before["source"], "popular", "{before}");

    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(Notify::new());
    let load = tokio::spawn(hammer(base.clone(), 8, stop.clone(), answered.clone()));
    // "trainings" for at least a second and five rounds: every item and user vector
    // rewritten in batches of 7, with at least one request answered between two batches
    let t0 = Instant::now();
    let mut round = 0u32;
    while round < 5 || t0.elapsed() < Duration::from_millis(1500) {
        round += 1;
        let vec_of = |seed: u32| -> Vec<f32> {
            (0..DIM as u32)
                .map(|d| (((seed * 31 + d * 17 + round * 7) % 13) as f32) - 6.0 + 0.5)
                .collect()
        };
        let item_vectors: Vec<(String, Vec<f32>)> = (1..=MOVIES_PER_GENRE * 3)
            .map(|m| (m.to_string(), vec_of(m)))
            .collect();
        for chunk in item_vectors.chunks(7) {
            answered.notified().await;
            store
                .set_item_vectors(chunk.to_vec())
                .await
                .expect("set item vectors");
        }
        let user_vectors: Vec<(String, Vec<f32>)> = (1..=USERS)
            .map(|u| (u.to_string(), vec_of(1000 + u)))
            .collect();
        for chunk in user_vectors.chunks(7) {
            answered.notified().await;
            store
                .set_user_vectors(chunk.to_vec())
                .await
                .expect("set user vectors");
        }
    }
    stop.store(true, Ordering::SeqCst);
    let sent = load.await.expect("load");
    // after the writes: the user's own vector
    let after: Value = ask(1).await.expect("recommend").json().await.expect("json");
    let _ = tx.send(());
    let _ = server.await;
    let failed = sent.iter().filter(|s| s.status != 200).count();
    assert_eq!(failed, 0, "{failed} of {} requests failed", sent.len());
    assert_eq!(after["source"], "personalized", "{after}");
}

/// A data set whose every event weighs 0 under the configured event weights (ratings of
/// 1 star with `rating_neutral = 2.5`) teaches nothing: `recd eval` says so.
#[test]
fn eval_warns_when_every_event_weighs_nothing() {
    let dir = data_dir("neutral");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let mut lines = String::new();
    for u in 0..30 {
        for i in 0..5 {
            lines.push_str(&format!(
                "{{\"user_id\":\"u{u}\",\"item_id\":\"i{}\",\"type\":\"rating\",\"value\":1.0,\"timestamp\":{}}}\n",
                (u + i) % 12,
                1_000 * (u * 5 + i + 1)
            ));
        }
    }
    let data = dir.join("ratings.jsonl");
    std::fs::write(&data, lines).expect("write data");
    let config = dir.join("recd.toml");
    std::fs::write(&config, "[model.session.weights]\nrating_neutral = 2.5\n").expect("config");
    let out = recd(
        &[
            "eval",
            "--interactions",
            path(&data),
            "--config",
            path(&config),
            "--factors",
            "4",
            "--iterations",
            "2",
            "--no-replay",
        ],
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning: all 150 rating events weigh 0")
            && stderr.contains("which is every event"),
        "{stderr}"
    );
    // the default weights count every rating: no warning
    let out = recd(
        &[
            "eval",
            "--interactions",
            path(&data),
            "--factors",
            "4",
            "--iterations",
            "2",
            "--no-replay",
        ],
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("warning:"), "{stderr}");
}
