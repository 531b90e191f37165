//! The redis backend end to end: the real binary against a real Redis with the Query Engine,
//! including Redis going away and coming back.
//!
//! Redis is started through `scripts/redis.sh`. Outside CI a machine that cannot run it skips
//! with a loud message; under `CI=true` the test fails.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::server::{Server, data_dir, ids};

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/redis.sh")
}

pub fn start_redis(port: Option<u16>) -> Result<String, String> {
    let mut cmd = Command::new(script());
    cmd.arg("start");
    if let Some(p) = port {
        cmd.arg(p.to_string());
    }
    cmd.args(["--owner", &std::process::id().to_string()]);
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run scripts/redis.sh: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// A Redis of its own for one test, or `None` after a loud message when this machine cannot
/// run one; under `CI=true` that is a failure, never a skip.
pub fn redis_or_skip() -> Option<String> {
    start_redis(None)
        .map_err(|e| {
            assert!(
                !std::env::var("CI").is_ok_and(|v| v == "true" || v == "1"),
                "CI=true and Redis cannot start: {e}"
            );
            eprintln!(
                "\n!!!!! SKIPPED: no Redis with the Query Engine ({e}); run scripts/redis.sh install\n"
            );
        })
        .ok()
}

/// A 3-master Redis Cluster of its own for one test (`scripts/redis.sh cluster`): its
/// `redis+cluster://` URL, or `None` after a loud message when this machine cannot run
/// one; under `CI=true` that is a failure, never a skip.
pub fn cluster_or_skip() -> Option<String> {
    let out = Command::new(script())
        .args(["cluster", "start", "--masters", "3"])
        .args(["--owner", &std::process::id().to_string()])
        .output()
        .expect("run scripts/redis.sh");
    if !out.status.success() {
        let e = String::from_utf8_lossy(&out.stderr);
        assert!(
            !std::env::var("CI").is_ok_and(|v| v == "true" || v == "1"),
            "CI=true and the Redis Cluster cannot start: {e}"
        );
        eprintln!("\n!!!!! SKIPPED: no Redis Cluster ({e})\n");
        return None;
    }
    let url = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(url.starts_with("redis+cluster://"), "{url}");
    Some(url)
}

/// Stops the cluster [`cluster_or_skip`] started.
pub fn stop_cluster(url: &str) {
    let _ = Command::new(script())
        .args(["cluster", "stop", url])
        .status();
}

pub fn stop_redis(port: u16) {
    let _ = Command::new(script())
        .args(["stop", &port.to_string()])
        .status();
}

/// Polls `f` until it holds or `limit` passes: waiting on an external process, not a sleep
/// standing in for synchronization.
pub async fn eventually<F, Fut>(limit: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

pub const SCHEMA: &str = "[schema]\nvector = { dim = 64, metric = \"cosine\" }\n[schema.fields]\ncategory = \"tag\"\nbrand = \"tag\"\nprice = \"numeric\"\nin_stock = \"bool\"\npopularity = \"numeric\"\ntitle = \"text\"\n";

/// A demo server on the redis backend at `url` (1,500 items, 100 users, seed 3) under a
/// key prefix of its own named after `name`, with `envs` set.
pub fn redis_demo(url: &str, name: &str, envs: &[(&str, String)]) -> Server {
    let dir = data_dir(name);
    let config = dir.with_extension("toml");
    std::fs::write(&config, SCHEMA).expect("config");
    let mut all = vec![(
        "RECD_REDIS__PREFIX",
        format!("e2e-{name}{}:", std::process::id()),
    )];
    all.extend(envs.iter().map(|(k, v)| (*k, v.clone())));
    let all: Vec<(&str, &str)> = all.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Server::start(
        &[
            "demo",
            "--backend",
            "redis",
            "--redis-url",
            url,
            "--config",
            config.to_str().expect("utf-8 path"),
            "--data-dir",
            dir.to_str().expect("utf-8 path"),
            "--items",
            "1500",
            "--users",
            "100",
            "--seed",
            "3",
        ],
        &all,
    )
    .owning(dir)
}

#[tokio::test(flavor = "multi_thread")]
async fn serves_from_redis_and_survives_redis_restarts() {
    let Some(url) = redis_or_skip() else {
        return;
    };
    let port: u16 = url
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port in url");
    let config = crate::server::scratch_file("redis-config", "toml");
    std::fs::write(&config, SCHEMA).expect("config");
    let prefix = format!("e2e{}:", std::process::id());
    let envs = [("RECD_REDIS__PREFIX", prefix.as_str())];
    let dir = crate::server::data_dir("redis");
    let s = Server::start(
        &[
            "demo",
            "--backend",
            "redis",
            "--redis-url",
            &url,
            "--config",
            config.to_str().unwrap(),
            "--data-dir",
            dir.to_str().unwrap(),
            "--items",
            "1500",
            "--users",
            "100",
            "--seed",
            "3",
        ],
        &envs,
    );
    let (_, h) = s.get("/health").await;
    assert_eq!(
        (h["backend"].as_str(), h["items"].as_u64()),
        (Some("redis"), Some(1500))
    );

    // A second server needs no config: the deployment's schema is recorded in Redis.
    let dir2 = crate::server::data_dir("redis-second");
    let second = Server::start(
        &[
            "serve",
            "--backend",
            "redis",
            "--redis-url",
            &url,
            "--data-dir",
            dir2.to_str().unwrap(),
        ],
        &envs,
    );
    let (_, h2) = second.get("/health").await;
    assert_eq!(h2["items"].as_u64(), Some(1500), "{h2}");
    drop(second);
    // ... unless the prefix holds no deployment: a usage error naming the fix.
    let out = Command::new(env!("CARGO_BIN_EXE_recd"))
        .args(["serve", "--backend", "redis", "--redis-url", &url])
        .args(["--data-dir", dir2.to_str().unwrap()])
        .env("RECD_REDIS__PREFIX", format!("{prefix}empty:"))
        .output()
        .expect("run recd");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("[schema]"), "{stderr}");

    // The contract holds on this backend too: personalized, filtered, read-your-writes.
    let a = s
        .recommend(json!({"user_id":"user-1","count":10,"filter":{"price":{"lt":50}}}))
        .await;
    assert_eq!(a["source"], "personalized");
    assert!(
        a["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["item"]["price"].as_f64().unwrap() < 50.0)
    );
    s.event("r-visitor", "sku-5", "purchase").await;
    let b = s.recommend(json!({"user_id":"r-visitor","count":10})).await;
    assert_eq!(b["source"], "personalized");
    assert!(!ids(&b).contains(&"sku-5".to_string()));

    // Redis goes away: not ready, and requests fail fast with `unavailable`.
    stop_redis(port);
    assert!(
        eventually(Duration::from_secs(10), || async {
            s.get("/ready").await.0 == 503
        })
        .await
    );
    let started = Instant::now();
    let (status, body) = s.post("/v1/recommend", json!({"user_id":"user-1"})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("unavailable")),
        "{body}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "did not fail fast"
    );

    // Redis comes back (same port, empty: `--save ""`): the server recovers by itself.
    start_redis(Some(port)).expect("restart redis");
    assert!(
        eventually(Duration::from_secs(20), || async {
            s.get("/ready").await.0 == 200
        })
        .await,
        "never ready again"
    );
    stop_redis(port);
}

/// A script that keeps Redis busy (read-only, so `SCRIPT KILL` stops it) for at most
/// `ARGV[1]` ms: the bound only matters if the test fails before it kills the script.
const BUSY_SCRIPT: &str = "local t0 = os.clock() \
    while os.clock() - t0 < tonumber(ARGV[1]) / 1000 do end \
    return 1";

/// Issue 9, finding 10: a Redis that refuses for real (`BUSY`: a script runs past
/// `busy-reply-threshold`) makes every API answer a 503 `unavailable` in the error shape,
/// never a 500, and `/ready` not ready; once the script is killed recd serves again by
/// itself.
#[tokio::test(flavor = "multi_thread")]
async fn a_busy_redis_is_unavailable_then_recovers() {
    let Some(url) = redis_or_skip() else {
        return;
    };
    let port: u16 = url
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port in url");
    let config = crate::server::scratch_file("redis-busy-config", "toml");
    std::fs::write(&config, SCHEMA).expect("config");
    let dir = crate::server::data_dir("redis-busy");
    let s = Server::start(
        &[
            "demo",
            "--backend",
            "redis",
            "--redis-url",
            &url,
            "--config",
            config.to_str().unwrap(),
            "--data-dir",
            dir.to_str().unwrap(),
            "--items",
            "300",
            "--users",
            "30",
            "--seed",
            "5",
        ],
        &[],
    );
    let requests = || async {
        vec![
            (
                "recommend",
                s.post(
                    "/v1/recommend",
                    json!({"user_id":"user-1","count":5,"use_cache":false}),
                )
                .await,
            ),
            (
                "events",
                s.post(
                    "/v1/events",
                    json!({"events":[{"user_id":"busy-visitor","item_id":"sku-1","type":"click"}]}),
                )
                .await,
            ),
            (
                "items",
                s.put(
                    "/v1/items",
                    json!({"items":[{"id":"busy-item","category":["shoes"],"price":10}]}),
                )
                .await,
            ),
            ("user", s.get("/v1/users/user-1").await),
            ("ready", s.get("/ready").await),
        ]
    };
    for (what, (status, body)) in requests().await {
        assert_eq!(status, 200, "{what} before: {body}");
    }

    let client = ::redis::Client::open(url.as_str()).expect("redis url");
    let mut admin = client
        .get_multiplexed_async_connection()
        .await
        .expect("admin connection");
    let () = ::redis::cmd("CONFIG")
        .arg("SET")
        .arg("busy-reply-threshold")
        .arg("50")
        .query_async(&mut admin)
        .await
        .expect("CONFIG SET");
    let mut runner = client
        .get_multiplexed_async_connection()
        .await
        .expect("script connection");
    let script = tokio::spawn(async move {
        ::redis::cmd("EVAL")
            .arg(BUSY_SCRIPT)
            .arg(0)
            .arg(60_000)
            .query_async::<i64>(&mut runner)
            .await
    });
    // Wait for Redis to refuse (an external process' state, polled).
    assert!(
        eventually(Duration::from_secs(10), || {
            let mut probe = admin.clone();
            async move {
                ::redis::cmd("PING")
                    .query_async::<String>(&mut probe)
                    .await
                    .is_err_and(|e| e.code() == Some("BUSY"))
            }
        })
        .await,
        "redis never answered BUSY"
    );
    let during = requests().await;
    let killed: ::redis::RedisResult<()> = ::redis::cmd("SCRIPT")
        .arg("KILL")
        .query_async(&mut admin)
        .await;
    // The script's own reply (an error, once killed) does not matter.
    let _ = script.await;
    for (what, (status, body)) in during {
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (503, Some("unavailable")),
            "{what} while redis is busy: {body}"
        );
        assert!(body["error"]["message"].is_string(), "{what}: {body}");
    }
    killed.expect("SCRIPT KILL: the script was still running");

    // Recovered by itself: every request succeeds again, the writes refused meanwhile
    // were not half-done.
    assert!(
        eventually(Duration::from_secs(20), || async {
            s.get("/ready").await.0 == 200
        })
        .await,
        "never ready again"
    );
    for (what, (status, body)) in requests().await {
        assert_eq!(status, 200, "{what} after: {body}");
    }
    let (_, user) = s.get("/v1/users/busy-visitor").await;
    assert_eq!(user["counters"]["click"].as_u64(), Some(2), "{user}");
    stop_redis(port);
}

/// Issue 17: the same contract on a Redis Cluster (`redis+cluster://`, 3 masters from
/// `scripts/redis.sh cluster`): two servers share the deployment, and an event through one is
/// reflected at once by the other (the cache marks and pub/sub work across slots).
#[tokio::test(flavor = "multi_thread")]
async fn serves_from_a_redis_cluster() {
    let Some(url) = cluster_or_skip() else {
        return;
    };
    let config = crate::server::scratch_file("cluster-config", "toml");
    std::fs::write(&config, SCHEMA).expect("config");
    let dir = crate::server::data_dir("redis-cluster");
    let s = Server::start(
        &[
            "demo",
            "--backend",
            "redis",
            "--redis-url",
            &url,
            "--config",
            config.to_str().unwrap(),
            "--data-dir",
            dir.to_str().unwrap(),
            "--items",
            "600",
            "--users",
            "50",
            "--seed",
            "5",
        ],
        &[],
    );
    let (_, h) = s.get("/health").await;
    assert_eq!(
        (h["backend"].as_str(), h["items"].as_u64()),
        (Some("redis"), Some(600)),
        "{h}"
    );
    let dir2 = crate::server::data_dir("redis-cluster-second");
    let second = Server::start(
        &[
            "serve",
            "--backend",
            "redis",
            "--redis-url",
            &url,
            "--data-dir",
            dir2.to_str().unwrap(),
        ],
        &[],
    );
    let a = second
        .recommend(json!({"user_id":"user-1","count":10,"filter":{"price":{"lt":50}}}))
        .await;
    assert_eq!(a["source"], "personalized", "{a}");
    let items = a["items"].as_array().unwrap();
    assert!(!items.is_empty());
    assert!(
        items
            .iter()
            .all(|i| i["item"]["price"].as_f64().unwrap() < 50.0)
    );
    // Cached on the second server, then a purchase through the first: gone from the first
    // at once (read your writes), and from the second once the invalidation reaches it.
    let body = json!({"user_id":"c-visitor","count":20});
    let before = second.recommend(body.clone()).await;
    assert_eq!(second.recommend(body.clone()).await["cache"]["tier"], "l1");
    let bought = ids(&before)[0].clone();
    s.event("c-visitor", &bought, "purchase").await;
    assert!(!ids(&s.recommend(body.clone()).await).contains(&bought));
    let reached = async {
        loop {
            let x = second.recommend(body.clone()).await;
            if !ids(&x).contains(&bought) {
                return x;
            }
        }
    };
    let after = tokio::time::timeout(Duration::from_secs(30), reached)
        .await
        .expect("the second server kept serving the purchased item");
    assert_eq!(after["source"], "personalized", "{after}");
    drop(second);
    drop(s);
    // `recd admin reshard-check`: every shard on a master, its index holding its items.
    let out = Command::new(env!("CARGO_BIN_EXE_recd"))
        .args(["admin", "reshard-check", "--json", "--backend", "redis"])
        .args(["--redis-url", &url])
        .output()
        .expect("run recd admin reshard-check");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shards: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let shards = shards.as_array().expect("an array of shards");
    assert_eq!(shards.len(), 3, "{shards:?}");
    let items: u64 = shards.iter().map(|r| r["items"].as_u64().unwrap()).sum();
    assert_eq!(items, 600);
    for r in shards {
        assert!(r["master"].is_string(), "{r}");
        assert_eq!(r["index"]["num_docs"], r["items"], "{r}");
        assert_eq!(r["problems"], json!([]), "{r}");
    }
    stop_cluster(&url);
}
