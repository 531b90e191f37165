//! The raw `FT.SEARCH ... KNN 50` a hand-written service would send, against the index of a
//! deployment that `recd demo --backend redis` loaded: the peer `scripts/bench-redis-path.sh`
//! measures a whole recd recommend against, on the same Redis, at the same concurrency.
//!
//! ```text
//! cargo run --release -p recd-store --example redis_raw_knn -- --url redis://127.0.0.1:PORT \
//!     [--prefix recd:] [--concurrency 32] [--seconds 20] [--warmup 1] [--queries 2000] \
//!     [--return brand,category,in_stock,popularity,price,title]
//! ```
//! Query vectors vary: the vectors of the first `--queries` items (in id order), request `i`
//! using item `(i * 7919) % queries`, so that no two neighbouring requests search the same
//! region. One multiplexed connection per client. Each hit returns its distance and the
//! `--return` fields (what the service would answer with). Prints one JSON line in the shape
//! of `recd bench --json` (`rps`, `requests`, `errors`, `latency_ms`), warm-up excluded.

use std::sync::Arc;
use std::time::{Duration, Instant};

struct Args {
    url: String,
    prefix: String,
    concurrency: usize,
    seconds: f64,
    warmup: f64,
    queries: usize,
    returned: Vec<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        url: "redis://127.0.0.1:6379".into(),
        prefix: "recd:".into(),
        concurrency: 32,
        seconds: 20.0,
        warmup: 1.0,
        queries: 2000,
        returned: [
            "brand",
            "category",
            "in_stock",
            "popularity",
            "price",
            "title",
        ]
        .map(String::from)
        .to_vec(),
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut it = argv.into_iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = format!("bad value for {flag}: {value}");
        match flag.as_str() {
            "--url" => a.url = value,
            "--prefix" => a.prefix = value,
            "--concurrency" => a.concurrency = value.parse().map_err(|_| bad.clone())?,
            "--seconds" => a.seconds = value.parse().map_err(|_| bad.clone())?,
            "--warmup" => a.warmup = value.parse().map_err(|_| bad.clone())?,
            "--queries" => a.queries = value.parse().map_err(|_| bad.clone())?,
            "--return" => {
                a.returned = value
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect()
            }
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(a)
}

/// The vectors of the first `n` items of the deployment (id order).
async fn query_vectors(
    conn: &mut redis::aio::MultiplexedConnection,
    prefix: &str,
    n: usize,
) -> redis::RedisResult<Vec<Vec<u8>>> {
    let ids: Vec<String> = redis::cmd("ZRANGE")
        .arg(format!("{prefix}ids"))
        .arg(0)
        .arg(n.saturating_sub(1))
        .query_async(conn)
        .await?;
    let mut pipe = redis::pipe();
    for id in &ids {
        pipe.hget(format!("{prefix}item:{id}"), "vector");
    }
    let vectors: Vec<Option<Vec<u8>>> = pipe.query_async(conn).await?;
    Ok(vectors.into_iter().flatten().collect())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a = parse_args()?;
    let client = redis::Client::open(a.url.as_str())?;
    let config =
        redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(30)));
    let mut first = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    let vectors = Arc::new(query_vectors(&mut first, &a.prefix, a.queries).await?);
    if vectors.is_empty() {
        return Err(format!("no item vectors under the prefix '{}'", a.prefix).into());
    }
    let index = format!("{}idx:items", a.prefix);
    let mut fields: Vec<String> = a.returned.clone();
    fields.push("score".into());
    let fields = Arc::new(fields);

    let start = Instant::now();
    let warm_until = start + Duration::from_secs_f64(a.warmup);
    let stop = warm_until + Duration::from_secs_f64(a.seconds);
    let mut tasks = tokio::task::JoinSet::new();
    for client_no in 0..a.concurrency {
        let mut conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        let (vectors, fields, index) = (vectors.clone(), fields.clone(), index.clone());
        tasks.spawn(async move {
            let mut lat: Vec<Duration> = Vec::new();
            let mut errors = 0usize;
            let mut i = client_no;
            loop {
                let sent = Instant::now();
                if sent >= stop {
                    break;
                }
                let vector = &vectors[(i * 7919) % vectors.len()];
                i += a.concurrency;
                let reply = redis::cmd("FT.SEARCH")
                    .arg(&index)
                    .arg("(*)=>[KNN 50 @vector $vec EF_RUNTIME 64 AS score]")
                    .arg("PARAMS")
                    .arg(2)
                    .arg("vec")
                    .arg(vector.as_slice())
                    .arg("SORTBY")
                    .arg("score")
                    .arg("RETURN")
                    .arg(fields.len())
                    .arg(fields.as_slice())
                    .arg("LIMIT")
                    .arg(0)
                    .arg(50)
                    .arg("DIALECT")
                    .arg(2)
                    .query_async::<redis::Value>(&mut conn)
                    .await;
                if sent < warm_until {
                    continue;
                }
                match reply {
                    Ok(_) => lat.push(sent.elapsed()),
                    Err(_) => errors += 1,
                }
            }
            (lat, errors)
        });
    }
    let mut lat = Vec::new();
    let mut errors = 0;
    while let Some(done) = tasks.join_next().await {
        let (l, e) = done?;
        lat.extend(l);
        errors += e;
    }
    lat.sort();
    let ms = |p: f64| {
        let i = ((lat.len() as f64 - 1.0) * p).round() as usize;
        lat.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    println!(
        "{{\"name\":\"raw_ft_search_knn50\",\"concurrency\":{},\"requests\":{},\"errors\":{},\"rps\":{:.1},\"latency_ms\":{{\"p50\":{:.2},\"p90\":{:.2},\"p99\":{:.2},\"max\":{:.2}}}}}",
        a.concurrency,
        lat.len(),
        errors,
        lat.len() as f64 / a.seconds,
        ms(0.5),
        ms(0.9),
        ms(0.99),
        ms(1.0)
    );
    Ok(())
}
