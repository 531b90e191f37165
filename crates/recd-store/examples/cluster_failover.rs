//! A master killed under event load on a Redis Cluster with replicas: how long writes fail
//! (503), how many acknowledged events the failover loses, and the event rate before the
//! kill, with `[redis] wait_replicas` as given (`scripts/bench-failover.sh` runs it with 0
//! and 1 on fresh clusters).
//!
//! ```text
//! cargo run --release -p recd-store --example cluster_failover -- \
//!     --url redis+cluster://127.0.0.1:P1,... --kill-port P1 [--wait 1] [--writers 16] \
//!     [--before 10] [--after 15]
//! ```
//! Writers apply one event each per call (a new user each time, an item of a 1,000-item
//! catalog), as `POST /v1/events` with one event does; the master on `--kill-port` gets a
//! SIGKILL (`scripts/redis.sh signal PORT KILL`) `--before` seconds in, and the writers go
//! on for `--after` seconds more. Then every acknowledged event is looked up in the event
//! log. Prints one JSON line.

use std::sync::Arc;
use std::time::{Duration, Instant};

use recd_core::{Event, EventType, ItemUpsert, Schema};
use recd_store::{ModelSettings, RedisConfig, RedisStore, Store, StoreError};
use tokio::sync::Mutex;

#[path = "support/args.rs"]
mod args;
use args::arg;

/// What the writers saw.
#[derive(Default)]
struct Seen {
    acknowledged: Vec<Event>,
    /// Acknowledged before the kill.
    before: usize,
    unavailable: usize,
    other_errors: usize,
    /// The other errors' messages (digits blanked) and how often each came.
    other_kinds: std::collections::BTreeMap<String, usize>,
    first_refusal: Option<Duration>,
    last_refusal: Option<Duration>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = arg("--url", "");
    let kill_port = arg("--kill-port", "");
    let wait: u32 = arg("--wait", "0").parse()?;
    let writers: usize = arg("--writers", "16").parse()?;
    let before = Duration::from_secs(arg("--before", "10").parse()?);
    let after = Duration::from_secs(arg("--after", "15").parse()?);
    let schema = Schema::demo(8);
    let config = RedisConfig {
        prefix: format!("failover:{}:", std::process::id()),
        wait_replicas: wait,
        ..RedisConfig::default()
    };
    let store = RedisStore::connect(&url, schema.clone(), ModelSettings::default(), config).await?;
    let items: Vec<ItemUpsert> = (0..1000)
        .map(|i| {
            let v: Vec<f64> = (0..8)
                .map(|d| ((i * 7 + d * 13) % 17) as f64 - 8.0)
                .collect();
            let category = ["a", "b", "c"][i % 3];
            let json = serde_json::json!({"id": format!("item-{i}"), "vector": v,
                                          "category": category, "price": i});
            ItemUpsert::from_json(&json, &schema)
        })
        .collect::<Result<_, _>>()?;
    store.upsert_items(items).await?;

    let seen = Arc::new(Mutex::new(Seen::default()));
    let start = Instant::now();
    let end = before + after;
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (store, seen) = (store.clone(), seen.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while start.elapsed() < end {
                n += 1;
                let e = Event {
                    user_id: format!("w{w}-{n}"),
                    item_id: format!("item-{}", (n * 31 + w as u64) % 1000),
                    kind: EventType::Click,
                    value: None,
                    timestamp_ms: 1_000_000 + n as i64,
                    recommendation_id: None,
                };
                let answer = store.apply_events(std::slice::from_ref(&e)).await;
                let at = start.elapsed();
                let mut s = seen.lock().await;
                match answer {
                    Ok(()) => {
                        s.acknowledged.push(e);
                        if at < before {
                            s.before += 1;
                        }
                    }
                    Err(err) => {
                        if matches!(err, StoreError::Unavailable(_)) {
                            s.unavailable += 1;
                        } else {
                            s.other_errors += 1;
                            let kind: String = err
                                .to_string()
                                .chars()
                                .map(|c| if c.is_ascii_digit() { '#' } else { c })
                                .take(120)
                                .collect();
                            *s.other_kinds.entry(kind).or_default() += 1;
                        }
                        s.first_refusal.get_or_insert(at);
                        s.last_refusal = Some(at);
                        drop(s);
                        // A refused writer backs off a little, as a client would.
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
        }));
    }
    tokio::time::sleep(before).await;
    let killed = std::process::Command::new("bash")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../scripts/redis.sh"
        ))
        .args(["signal", &kill_port, "KILL"])
        .status()?;
    if !killed.success() {
        return Err("could not kill the master".into());
    }
    let killed_at = start.elapsed();
    for t in tasks {
        t.await?;
    }
    let s = seen.lock().await;
    // Every acknowledged event, looked up in the log after the failover (retried while
    // the cluster settles).
    let mut log = None;
    for _ in 0..100 {
        match store.events().await {
            Ok(l) => {
                log = Some(l);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    let log = log.ok_or("the event log stayed unreadable")?;
    let logged: std::collections::HashSet<&str> = log.iter().map(|e| e.user_id.as_str()).collect();
    let lost = s
        .acknowledged
        .iter()
        .filter(|e| !logged.contains(e.user_id.as_str()))
        .count();
    let secs = |d: Option<Duration>| d.map(|d| d.as_secs_f64());
    println!(
        "{}",
        serde_json::json!({
            "wait_replicas": wait,
            "writers": writers,
            "events_per_s_before_kill": s.before as f64 / before.as_secs_f64(),
            "killed_at_s": killed_at.as_secs_f64(),
            "first_refusal_s": secs(s.first_refusal),
            "last_refusal_s": secs(s.last_refusal),
            "refusal_window_s": match (s.first_refusal, s.last_refusal) {
                (Some(a), Some(b)) => Some((b - a).as_secs_f64()),
                _ => None,
            },
            "unavailable": s.unavailable,
            "other_errors": s.other_errors,
            "other_kinds": s.other_kinds,
            "acknowledged": s.acknowledged.len(),
            "acknowledged_lost": lost,
        })
    );
    Ok(())
}
