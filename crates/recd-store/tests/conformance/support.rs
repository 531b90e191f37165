//! Fixtures shared by the checks, and the Redis the redis tests run against.
//!
//! One Redis per test binary, started by `scripts/redis.sh start --owner <pid>` (so it stops
//! when the binary exits) unless `RECD_TEST_REDIS_URL` names one; each test uses its own key
//! prefix. When no Redis can be started the redis tests skip loudly, except under
//! `CI=true`, where they fail.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use recd_core::{Event, EventType, Item, ItemUpsert, Schema};
use recd_store::ModelSettings;
use serde_json::Value;

/// The schema of the checks: the demo schema with 4-d vectors.
pub fn schema() -> Schema {
    Schema::demo(4)
}

/// Default model settings, with the fold-in update (whatever the default rule), so that
/// every check runs through it.
pub fn settings() -> ModelSettings {
    let mut s = ModelSettings::default();
    s.session.update = recd_core::UpdateRule::FoldIn;
    // The test catalog is 4-d, and k conjugate-gradient steps solve a k-d system exactly:
    // the stores' fold-in (CG, warm-started per batch) can then be held to the exact solve.
    s.session.fold_in.cg_steps = 4;
    s
}

/// An item from JSON, validated against `schema()`.
pub fn item(v: Value) -> Item {
    Item::from_json(&v, &schema()).expect("valid test item")
}

/// An upsert of an item that carries its vector (or none).
pub fn upsert(v: Value) -> ItemUpsert {
    ItemUpsert::from_json(&v, &schema()).expect("valid test item")
}

/// An event at `t` ms.
pub fn event(user: &str, item: &str, kind: EventType, value: Option<f64>, t: i64) -> Event {
    Event {
        user_id: user.into(),
        item_id: item.into(),
        kind,
        value,
        timestamp_ms: t,
        recommendation_id: None,
    }
}

/// An item, owned or shared (`Hit::item` may be either).
pub trait AsItem {
    /// The item.
    fn as_item(&self) -> &Item;
}

impl AsItem for Item {
    fn as_item(&self) -> &Item {
        self
    }
}

impl AsItem for std::sync::Arc<Item> {
    fn as_item(&self) -> &Item {
        self
    }
}

/// Sorted ids.
pub fn ids<'a, T: AsItem + 'a>(items: impl IntoIterator<Item = &'a T>) -> Vec<String> {
    let mut v: Vec<String> = items.into_iter().map(|i| i.as_item().id.clone()).collect();
    v.sort();
    v
}

/// `scripts/redis.sh` of this repository.
pub fn redis_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/redis.sh")
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// `scripts/redis.sh ARGS --owner <this binary>`: the URL it prints.
fn run_script(args: &[&str], extra: &[&str]) -> Result<String, String> {
    let out = Command::new("bash")
        .arg(redis_script())
        .args(args)
        .arg("--owner")
        .arg(std::process::id().to_string())
        .args(extra)
        .output()
        .map_err(|e| format!("cannot run scripts/redis.sh: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "scripts/redis.sh {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Starts a Redis with the Query Engine through the project script; its URL.
pub fn start_redis(port: Option<u16>) -> Result<String, String> {
    match port {
        Some(p) => run_script(&["start", &p.to_string()], &[]),
        None => run_script(&["start"], &[]),
    }
}

/// Starts a replica of the Redis on `port` through the project script; its URL.
pub fn start_replica(port: u16) -> Result<String, String> {
    run_script(
        &["start"],
        &["--", "--replicaof", "127.0.0.1", &port.to_string()],
    )
}

/// Stops the Redis on `port`.
pub fn stop_redis(port: u16) {
    let status = Command::new("bash")
        .arg(redis_script())
        .arg("stop")
        .arg(port.to_string())
        .status();
    if !matches!(status, Ok(s) if s.success()) {
        eprintln!("scripts/redis.sh stop {port} failed: {status:?}");
    }
}

/// The shared Redis of this test binary, or `None` (after a loud message) when none can be
/// had outside CI. Panics under `CI=true`.
pub fn redis_url() -> Option<String> {
    static URL: OnceLock<Option<String>> = OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(url) = std::env::var("RECD_TEST_REDIS_URL") {
            return Some(url);
        }
        match start_redis(None) {
            Ok(url) => Some(url),
            Err(e) if in_ci() => panic!("CI=true and no Redis with the Query Engine: {e}"),
            Err(e) => {
                // Straight to the stderr handle: libtest captures eprintln! of passing tests.
                let msg = format!(
                    "\n!!!!!!!!!! SKIPPING REDIS CONFORMANCE TESTS: {e}\n\
                     !!!!!!!!!! run scripts/redis.sh install, or set RECD_TEST_REDIS_URL\n\n"
                );
                let _ = std::io::Write::write_all(&mut std::io::stderr(), msg.as_bytes());
                None
            }
        }
    })
    .clone()
}

/// Starts a local Redis Cluster (`scripts/redis.sh cluster start`, stopped when this
/// binary exits); its `redis+cluster://` URL.
pub fn start_cluster(masters: usize, replicas: usize) -> Result<String, String> {
    let (m, r) = (masters.to_string(), replicas.to_string());
    run_script(
        &["cluster", "start", "--masters", &m, "--replicas", &r],
        &[],
    )
}

/// Adds an empty master to the cluster of node `port` (`scripts/redis.sh cluster
/// add-master`, stopped with the cluster); its `host:port`.
pub fn add_master(port: u16) -> Result<String, String> {
    let url = run_script(&["cluster", "add-master", &port.to_string()], &[])?;
    Ok(url.trim_start_matches("redis://").to_string())
}

/// The shared 3-master Redis Cluster of this test binary, or `None` (after a loud
/// message) when none can be had outside CI. Panics under `CI=true`.
pub fn cluster_url() -> Option<String> {
    static URL: OnceLock<Option<String>> = OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(url) = std::env::var("RECD_TEST_REDIS_CLUSTER_URL") {
            return Some(url);
        }
        match start_cluster(3, 0) {
            Ok(url) => Some(url),
            Err(e) if in_ci() => panic!("CI=true and no Redis Cluster with the Query Engine: {e}"),
            Err(e) => {
                let msg = format!(
                    "\n!!!!!!!!!! SKIPPING REDIS CLUSTER CONFORMANCE TESTS: {e}\n\
                     !!!!!!!!!! run scripts/redis.sh install, or set RECD_TEST_REDIS_CLUSTER_URL\n\n"
                );
                let _ = std::io::Write::write_all(&mut std::io::stderr(), msg.as_bytes());
                None
            }
        }
    })
    .clone()
}

/// A key prefix no other test of any run uses.
pub fn unique_prefix(name: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "t:{name}:{}:{}:{nanos}:",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A plain connection to the one node at `host:port`, as the fault tests drive nodes
/// directly. The client's default 500 ms response timeout is for serving; a test's own
/// large writes or `MIGRATE`s on a loaded machine took longer (a 32 MB `SET` timed out in
/// a loaded full run), so this waits up to 30 s.
pub async fn direct_node(node: &str) -> redis::aio::MultiplexedConnection {
    let config = redis::AsyncConnectionConfig::new()
        .set_response_timeout(Some(std::time::Duration::from_secs(30)));
    redis::Client::open(format!("redis://{node}"))
        .unwrap()
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .unwrap()
}
