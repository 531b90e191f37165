//! Raw `FT.SEARCH ... KNN 50` latency at a given concurrency, with and without a
//! category + price filter, next to the same query through `RedisStore::knn`.
//!
//! ```text
//! cargo run -p recd-store --example redis_knn_bench -- \
//!     --url redis://127.0.0.1:PORT --catalog /tmp/catalog-100k [--load] \
//!     [--concurrency 32] [--seconds 10] [--ef 64] [--policy batches|adhoc_bf] [--batch-size N]
//!     [--overfetch K]   (RedisConfig::range_overfetch; 0 = price inside RediSearch too)
//! ```
//! `--catalog` is a directory written by `shared/bench/catalog_gen.py --jsonl-vectors`;
//! `--load` upserts its `items.jsonl` through the store first (prefix `bench:`).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use recd_core::{Filter, ItemUpsert, Schema};
use recd_store::redis::HybridPolicy;
use recd_store::{ModelSettings, RedisConfig, RedisStore, Store};

struct Args {
    url: String,
    catalog: String,
    load: bool,
    concurrency: usize,
    seconds: f64,
    ef: u32,
    policy: Option<HybridPolicy>,
    batch_size: Option<u32>,
    overfetch: usize,
}

fn args() -> Args {
    let mut a = Args {
        url: "redis://127.0.0.1:6379".into(),
        catalog: "/tmp/catalog-100k".into(),
        load: false,
        concurrency: 32,
        seconds: 10.0,
        ef: 64,
        policy: None,
        batch_size: None,
        overfetch: 3,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let next = argv.get(i + 1).cloned().unwrap_or_default();
        match argv[i].as_str() {
            "--url" => a.url = next,
            "--catalog" => a.catalog = next,
            "--load" => {
                a.load = true;
                i += 1;
                continue;
            }
            "--concurrency" => a.concurrency = next.parse().expect("--concurrency N"),
            "--seconds" => a.seconds = next.parse().expect("--seconds S"),
            "--ef" => a.ef = next.parse().expect("--ef N"),
            "--overfetch" => a.overfetch = next.parse().expect("--overfetch N"),
            "--batch-size" => a.batch_size = Some(next.parse().expect("--batch-size N")),
            "--policy" => {
                a.policy = match next.as_str() {
                    "batches" => Some(HybridPolicy::Batches),
                    "adhoc_bf" => Some(HybridPolicy::AdhocBf),
                    _ => None,
                }
            }
            other => panic!("unknown argument {other}"),
        }
        i += 2;
    }
    a
}

/// (category, vector) of every catalog item, and the upserts when loading.
fn read_catalog(dir: &str, schema: &Schema) -> (Vec<(String, Vec<f32>)>, Vec<ItemUpsert>) {
    let text = std::fs::read_to_string(format!("{dir}/items.jsonl")).expect("items.jsonl");
    let mut queries = Vec::new();
    let mut items = Vec::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("json line");
        let up = ItemUpsert::from_json(&v, schema).expect("valid item");
        let category = v["category"].as_str().unwrap_or_default().to_string();
        if let Some(vec) = &up.item.vector {
            queries.push((category, vec.clone()));
        }
        items.push(up);
    }
    (queries, items)
}

struct Stats {
    name: String,
    lat: Vec<Duration>,
    elapsed: Duration,
    errors: usize,
}

impl Stats {
    fn print(mut self) {
        self.lat.sort();
        let q = |p: f64| {
            let i = ((self.lat.len() as f64 - 1.0) * p).round() as usize;
            self.lat.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e3)
        };
        println!(
            "{:<44} {:>8.0} req/s  p50 {:>6.2} ms  p90 {:>6.2} ms  p99 {:>6.2} ms  max {:>7.2} ms  ({} requests, {} errors)",
            self.name,
            self.lat.len() as f64 / self.elapsed.as_secs_f64(),
            q(0.5),
            q(0.9),
            q(0.99),
            q(1.0),
            self.lat.len(),
            self.errors
        );
    }
}

/// Runs `one(i)` from `concurrency` tasks for `seconds`.
async fn drive<F, Fut>(name: &str, concurrency: usize, seconds: f64, one: F) -> Stats
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let one = Arc::new(one);
    let counter = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let stop = start + Duration::from_secs_f64(seconds);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let one = one.clone();
        let counter = counter.clone();
        tasks.spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0;
            while Instant::now() < stop {
                let i = counter.fetch_add(1, Ordering::Relaxed);
                let t = Instant::now();
                if one(i).await {
                    lat.push(t.elapsed());
                } else {
                    errors += 1;
                }
            }
            (lat, errors)
        });
    }
    let mut stats = Stats {
        name: name.into(),
        lat: Vec::new(),
        elapsed: Duration::ZERO,
        errors: 0,
    };
    while let Some(Ok((lat, errors))) = tasks.join_next().await {
        stats.lat.extend(lat);
        stats.errors += errors;
    }
    stats.elapsed = start.elapsed();
    stats
}

fn raw_query(
    filtered: bool,
    category: &str,
    ef: u32,
    policy: Option<HybridPolicy>,
    batch: Option<u32>,
) -> String {
    let mut knn = if filtered && policy == Some(HybridPolicy::AdhocBf) {
        "KNN 50 @vector $vec".to_string() // EF_RUNTIME is refused with ADHOC_BF
    } else {
        format!("KNN 50 @vector $vec EF_RUNTIME {ef}")
    };
    if filtered {
        if let Some(p) = policy {
            knn.push_str(match p {
                HybridPolicy::Batches => " HYBRID_POLICY BATCHES",
                HybridPolicy::AdhocBf => " HYBRID_POLICY ADHOC_BF",
            });
            if let (HybridPolicy::Batches, Some(b)) = (p, batch) {
                knn.push_str(&format!(" BATCH_SIZE {b}"));
            }
        }
        format!("(@category:{{{category}}} @price:[20 200])=>[{knn} AS score]")
    } else {
        format!("(*)=>[{knn} AS score]")
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let a = args();
    let schema = Schema::demo(64);
    let (queries, items) = read_catalog(&a.catalog, &schema);
    let queries = Arc::new(queries);
    let config = RedisConfig {
        prefix: "bench:".into(),
        hnsw_ef_runtime: a.ef,
        hybrid_policy: a.policy,
        batch_size: a.batch_size,
        range_overfetch: a.overfetch,
        operation_timeout_ms: 30_000,
        response_timeout_ms: 30_000,
        ..RedisConfig::default()
    };
    let store = RedisStore::connect(&a.url, schema.clone(), ModelSettings::default(), config)
        .await
        .expect("connect");
    if a.load {
        let t = Instant::now();
        let mut items = items;
        while !items.is_empty() {
            let rest = items.split_off(items.len().min(500));
            store.upsert_items(items).await.expect("upsert");
            items = rest;
        }
        println!(
            "loaded {} items in {:.1} s",
            store.counts().await.expect("counts").items,
            t.elapsed().as_secs_f64()
        );
    }
    let client = redis::Client::open(a.url.as_str()).expect("url");

    for filtered in [false, true] {
        // Raw: one connection per client, the command as a hand-written service sends it.
        let mut conns = Vec::new();
        for _ in 0..a.concurrency {
            // The crate's default 500 ms response timeout would cut slow filtered queries.
            let config = redis::AsyncConnectionConfig::new()
                .set_response_timeout(Some(Duration::from_secs(30)));
            conns.push(
                client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
                    .expect("connection"),
            );
        }
        let conns = Arc::new(conns);
        let q = queries.clone();
        let (ef, policy, batch, c) = (a.ef, a.policy, a.batch_size, a.concurrency);
        let name = format!(
            "raw FT.SEARCH KNN 50 {}",
            if filtered {
                "category+price"
            } else {
                "unfiltered"
            }
        );
        let stats = drive(&name, a.concurrency, a.seconds, move |i| {
            let (category, v) = &q[(i * 7919) % q.len()];
            let query = raw_query(filtered, category, ef, policy, batch);
            let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            let mut conn = conns[i % c].clone();
            async move {
                redis::cmd("FT.SEARCH")
                    .arg("bench:idx:items")
                    .arg(query)
                    .arg("PARAMS")
                    .arg(2)
                    .arg("vec")
                    .arg(bytes)
                    .arg("SORTBY")
                    .arg("score")
                    .arg("RETURN")
                    .arg(7)
                    .arg(&[
                        "brand",
                        "category",
                        "in_stock",
                        "popularity",
                        "price",
                        "title",
                        "score",
                    ])
                    .arg("LIMIT")
                    .arg(0)
                    .arg(50)
                    .arg("TIMEOUT")
                    .arg(0)
                    .arg("DIALECT")
                    .arg(2)
                    .query_async::<redis::Value>(&mut conn)
                    .await
                    .map_err(|e| {
                        static ONCE: std::sync::Once = std::sync::Once::new();
                        ONCE.call_once(|| eprintln!("first raw error: {e:?}"));
                    })
                    .is_ok()
            }
        })
        .await;
        stats.print();

        // The same through the store (one multiplexed connection, as a recd server has).
        let s = store.clone();
        let q = queries.clone();
        let name = format!(
            "RedisStore::knn 50 {}",
            if filtered {
                "category+price"
            } else {
                "unfiltered"
            }
        );
        let stats = drive(&name, a.concurrency, a.seconds, move |i| {
            let (category, v) = q[(i * 7919) % q.len()].clone();
            let s = s.clone();
            async move {
                let filter = if filtered {
                    Filter::And(vec![
                        Filter::TagAny {
                            field: "category".into(),
                            values: vec![category],
                        },
                        Filter::Range {
                            field: "price".into(),
                            min: std::ops::Bound::Included(20.0),
                            max: std::ops::Bound::Included(200.0),
                        },
                    ])
                } else {
                    Filter::all()
                };
                s.knn(&v, 50, &filter).await.is_ok()
            }
        })
        .await;
        stats.print();
    }
}
