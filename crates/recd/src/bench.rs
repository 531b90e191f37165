//! `recd bench`: a closed-loop HTTP load generator for the service's own endpoints.
//!
//! C connections (keep-alive) each send a request, wait for the answer, and send the next,
//! for the given duration; latencies go into an HDR histogram. Users and items are the
//! server's own, sampled from its event log (`--ids log`, the default), or drawn from id
//! spaces `{prefix}N` (`--ids range`: the demo's `user-N` / `sku-N`), uniformly or
//! Zipf-distributed. A run in which more than `--max-error-ratio` of the requests failed
//! exits 1 and prints the first distinct errors the server answered.
//!
//! With `--rate R` the connections together send at most R requests per second, each on a
//! fixed schedule (a background load, e.g. 2,000 events/s next to a recommend benchmark
//! run by a second `recd bench`), instead of as fast as the server answers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, Zipf};
use serde_json::{Value, json};

use crate::UsageError;

/// What to load.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// `POST /v1/recommend`.
    Recommend,
    /// `POST /v1/events` (one event per request).
    Events,
    /// 90% recommend, 10% events.
    Mixed,
    /// `GET /v1/items/{id}` (item details; Zipf over items with `--zipf`).
    Items,
}

impl Scenario {
    fn as_str(self) -> &'static str {
        match self {
            Scenario::Recommend => "recommend",
            Scenario::Events => "events",
            Scenario::Mixed => "mixed",
            Scenario::Items => "items",
        }
    }
}

/// Where user and item ids come from.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ids {
    /// Sampled from the server's event log (`GET /v1/admin/events`); falls back to `range`
    /// when the log is empty or unreadable.
    Log,
    /// `{user-prefix}0..users` and `{item-prefix}0..items`.
    Range,
}

/// `recd bench` flags.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// The server: a base URL (http://127.0.0.1:8080) or host:port.
    #[arg(long)]
    target: String,
    /// Where user and item ids come from.
    #[arg(long, value_enum, default_value_t = Ids::Log)]
    ids: Ids,
    /// Exit 1 when more than this share of the requests failed.
    #[arg(long, default_value_t = 0.01)]
    max_error_ratio: f64,
    /// API key with the scopes the scenario needs (read; write for events).
    #[arg(long, env = "RECD_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Concurrent connections.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Seconds to run.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of warm-up before measuring.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Send at most this many requests per second in all (spread over the connections,
    /// each on a fixed schedule); unset: as fast as the server answers.
    #[arg(long)]
    rate: Option<f64>,
    /// Scenario.
    #[arg(long, value_enum, default_value_t = Scenario::Recommend)]
    scenario: Scenario,
    /// Users are `{user-prefix}0` .. `{user-prefix}(N-1)`.
    #[arg(long, default_value_t = 5_000)]
    users: usize,
    /// Items are `{item-prefix}0` .. `{item-prefix}(N-1)` (for events and items).
    #[arg(long, default_value_t = 50_000)]
    items: usize,
    /// Prefix of the user ids (the demo's are `user-N`; MovieLens's are bare numbers: "").
    #[arg(long, default_value = "user-")]
    user_prefix: String,
    /// Prefix of the item ids (the demo's are `sku-N`; MovieLens's are bare numbers: "").
    #[arg(long, default_value = "sku-")]
    item_prefix: String,
    /// Draw users Zipf-distributed with this exponent (a realistic hot set) instead of uniformly.
    #[arg(long)]
    zipf: Option<f64>,
    /// `count` of each recommend request.
    #[arg(long, default_value_t = 10)]
    count: usize,
    /// A filter (JSON) added to every recommend request.
    #[arg(long)]
    filter: Option<String>,
    /// Bypass the caches (`use_cache: false`; `?use_cache=false` for items).
    #[arg(long)]
    no_cache: bool,
    /// The strategy every recommend request names (e.g. one whose ranking uses a learned
    /// ranker); unset: the server's choice.
    #[arg(long)]
    strategy: Option<String>,
    /// Random seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print the result as JSON (API.md shape).
    #[arg(long)]
    json: bool,
}

/// The ids requests are made with.
#[derive(Debug, Default)]
struct IdPool {
    users: Vec<String>,
    items: Vec<String>,
}

impl IdPool {
    fn user(&self, args: &BenchArgs, n: usize) -> String {
        match self.users.get(n % self.users.len().max(1)) {
            Some(u) => u.clone(),
            None => format!("{}{n}", args.user_prefix),
        }
    }

    fn item(&self, args: &BenchArgs, n: usize) -> String {
        match self.items.get(n % self.items.len().max(1)) {
            Some(i) => i.clone(),
            None => format!("{}{n}", args.item_prefix),
        }
    }
}

/// Distinct user and item ids from the first events of the server's log (at most 100k
/// events are read), in order of appearance.
async fn sample_ids(client: &reqwest::Client, target: &str) -> Result<IdPool> {
    const MAX_EVENTS: usize = 100_000;
    let mut resp = client
        .get(format!("{target}/v1/admin/events"))
        .send()
        .await?
        .error_for_status()?;
    let (mut users, mut items) = (Vec::new(), Vec::new());
    let (mut seen_u, mut seen_i) = (
        std::collections::HashSet::new(),
        std::collections::HashSet::new(),
    );
    let mut pending: Vec<u8> = Vec::new();
    let mut events = 0;
    'read: while let Some(chunk) = resp.chunk().await? {
        pending.extend_from_slice(&chunk);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            if let Ok(v) = serde_json::from_slice::<Value>(&line) {
                if let Some(u) = v["user_id"].as_str()
                    && seen_u.insert(u.to_string())
                {
                    users.push(u.to_string());
                }
                if let Some(i) = v["item_id"].as_str()
                    && seen_i.insert(i.to_string())
                {
                    items.push(i.to_string());
                }
            }
            events += 1;
            if events >= MAX_EVENTS {
                break 'read;
            }
        }
    }
    Ok(IdPool { users, items })
}

/// `host:port` → `http://host:port`; a URL stays as it is (without a trailing slash).
fn base_url(target: &str) -> String {
    let t = target.trim_end_matches('/');
    if t.contains("://") {
        t.to_string()
    } else {
        format!("http://{t}")
    }
}

/// How many distinct server errors a run reports.
const ERRORS_SHOWN: usize = 5;

struct Worker {
    latencies: Histogram<u64>,
    requests: u64,
    errors: u64,
    /// The first distinct failures: status and what the server (or the client) said.
    first_errors: Vec<String>,
    /// Answers marked `"source":"cache"`.
    cache_hits: u64,
    /// The server's own `took_ms` of cache hits, in microseconds.
    hit_took: Histogram<u64>,
}

fn body_for(
    args: &BenchArgs,
    ids: &IdPool,
    filter: &Option<Value>,
    rng: &mut StdRng,
    zipf: &Option<Zipf<f64>>,
    events: bool,
) -> (String, Value) {
    let user = match zipf {
        Some(z) => (z.sample(rng) as usize).saturating_sub(1),
        None => rng.random_range(0..args.users.max(1)),
    };
    let user = ids.user(args, user);
    if events {
        let item = ids.item(args, rng.random_range(0..args.items.max(1)));
        let kinds = ["view", "view", "view", "click", "add_to_cart", "purchase"];
        let kind = kinds[rng.random_range(0..kinds.len())];
        (
            "/v1/events".into(),
            json!({"events": [{
                "user_id": user,
                "item_id": item,
                "type": kind,
            }]}),
        )
    } else {
        let mut body = json!({"user_id": user, "count": args.count});
        if let Some(f) = filter {
            body["filter"] = f.clone();
        }
        if args.no_cache {
            body["use_cache"] = json!(false);
        }
        if let Some(s) = &args.strategy {
            body["strategy"] = json!(s);
        }
        ("/v1/recommend".into(), body)
    }
}

#[allow(clippy::too_many_arguments)]
async fn worker(
    id: usize,
    args: Arc<BenchArgs>,
    ids: Arc<IdPool>,
    client: reqwest::Client,
    start: Instant,
    warm_until: Instant,
    end: Instant,
) -> Result<Worker> {
    let filter: Option<Value> = match &args.filter {
        Some(f) => Some(
            serde_json::from_str(f)
                .map_err(|e| UsageError(format!("--filter is not JSON: {e}")))?,
        ),
        None => None,
    };
    let zipf = match args.zipf {
        Some(s) => Some(
            Zipf::new(args.users.max(1) as f64, s)
                .map_err(|e| UsageError(format!("--zipf: {e}")))?,
        ),
        None => None,
    };
    let item_zipf = match args.zipf {
        Some(s) => Some(
            Zipf::new(args.items.max(1) as f64, s)
                .map_err(|e| UsageError(format!("--zipf: {e}")))?,
        ),
        None => None,
    };
    let mut rng = StdRng::seed_from_u64(args.seed.wrapping_mul(1_000_003).wrapping_add(id as u64));
    // `--rate`: this connection's share, one request per `interval`, the connections'
    // schedules staggered so that the load is even.
    let interval = args
        .rate
        .map(|r| Duration::from_secs_f64(args.concurrency as f64 / r));
    let mut next_send = interval.map(|i| start + i.mul_f64(id as f64 / args.concurrency as f64));
    let mut w = Worker {
        latencies: Histogram::new_with_bounds(1, 60_000_000, 3)?,
        requests: 0,
        errors: 0,
        first_errors: Vec::new(),
        cache_hits: 0,
        hit_took: Histogram::new_with_bounds(1, 60_000_000, 3)?,
    };
    loop {
        if let (Some(at), Some(interval)) = (next_send.as_mut(), interval) {
            tokio::time::sleep_until((*at).into()).await;
            // A server that fell behind gets the requests it missed at its own pace, not
            // as a burst: the schedule never lags more than one interval.
            *at = (*at + interval).max(Instant::now());
        }
        let now = Instant::now();
        if now >= end {
            break;
        }
        let request = if args.scenario == Scenario::Items {
            let item = match &item_zipf {
                Some(z) => (z.sample(&mut rng) as usize).saturating_sub(1),
                None => rng.random_range(0..args.items.max(1)),
            };
            let item = ids.item(&args, item);
            let query = if args.no_cache {
                "?use_cache=false"
            } else {
                ""
            };
            client.get(format!("{}/v1/items/{item}{query}", args.target))
        } else {
            let events = match args.scenario {
                Scenario::Events => true,
                Scenario::Mixed => rng.random_range(0..10) == 0,
                Scenario::Recommend | Scenario::Items => false,
            };
            let (path, body) = body_for(&args, &ids, &filter, &mut rng, &zipf, events);
            client.post(format!("{}{}", args.target, path)).json(&body)
        };
        let sent = Instant::now();
        let result = request.send().await;
        let (ok, body, failure) = match result {
            Ok(resp) => {
                let status = resp.status();
                // Read the whole body: the answer is only complete when its last byte arrived.
                match resp.bytes().await {
                    Ok(body) if status.is_success() => (true, Some(body), None),
                    Ok(body) => {
                        let said =
                            String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
                        (false, None, Some(format!("{status}: {said}")))
                    }
                    Err(e) => (false, None, Some(format!("reading the answer: {e}"))),
                }
            }
            Err(e) => (false, None, Some(format!("request failed: {e}"))),
        };
        let micros = sent.elapsed().as_micros() as u64;
        if sent >= warm_until {
            w.requests += 1;
            if ok {
                w.latencies.record(micros.max(1)).ok();
                if let Some(took) = body.as_deref().and_then(cache_hit_took_ms) {
                    w.cache_hits += 1;
                    w.hit_took.record(((took * 1000.0) as u64).max(1)).ok();
                }
            } else {
                w.errors += 1;
                if let Some(f) = failure
                    && w.first_errors.len() < ERRORS_SHOWN
                    && !w.first_errors.contains(&f)
                {
                    w.first_errors.push(f);
                }
            }
        }
    }
    Ok(w)
}

/// The server's `took_ms` when an answer says it came from the cache (`"cache":{"tier":..}`).
/// A cheap substring check first: most answers need not be parsed.
fn cache_hit_took_ms(body: &[u8]) -> Option<f64> {
    let needle = b"\"cache\":{\"tier\"";
    if !body.windows(needle.len()).any(|w| w == needle) {
        return None;
    }
    let v: Value = serde_json::from_slice(body).ok()?;
    v.get("took_ms")?.as_f64()
}

/// A counter's value from the server's `/metrics` (None when the server does not export it).
async fn server_counter(client: &reqwest::Client, target: &str, sample: &str) -> Option<f64> {
    let text = client
        .get(format!("{target}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.trim().parse().ok())
}

const CATALOG_QUERIES: &str = "recd_catalog_queries_total";

/// `recd bench`.
pub async fn run(mut args: BenchArgs) -> Result<()> {
    if args.concurrency == 0 || args.duration <= 0.0 {
        return Err(UsageError("--concurrency and --duration must be positive".into()).into());
    }
    if args.rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
        return Err(UsageError("--rate must be a positive number".into()).into());
    }
    if !(0.0..=1.0).contains(&args.max_error_ratio) {
        return Err(UsageError("--max-error-ratio must be in [0, 1]".into()).into());
    }
    args.target = base_url(&args.target);
    if reqwest::Url::parse(&args.target).is_err() {
        return Err(UsageError(format!(
            "--target {} is not a URL or host:port",
            args.target
        ))
        .into());
    }
    let client = reqwest::Client::builder()
        .default_headers(crate::api_headers(args.api_key.as_deref())?)
        .pool_max_idle_per_host(args.concurrency)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(30))
        .build()?;
    let health: Value = client
        .get(format!("{}/health", args.target))
        .send()
        .await
        .with_context(|| format!("cannot reach {}", args.target))?
        .json()
        .await?;
    let catalog_before = server_counter(&client, &args.target, CATALOG_QUERIES).await;
    let ids = match args.ids {
        Ids::Range => IdPool::default(),
        Ids::Log => match sample_ids(&client, &args.target).await {
            Ok(pool) if !pool.users.is_empty() && !pool.items.is_empty() => {
                eprintln!(
                    "recd bench: {} users and {} items sampled from the server's event log",
                    pool.users.len(),
                    pool.items.len()
                );
                // Draw within the sampled ids.
                args.users = pool.users.len();
                args.items = pool.items.len();
                pool
            }
            Ok(_) => {
                eprintln!(
                    "recd bench: the event log is empty; using --user-prefix/--item-prefix ids"
                );
                IdPool::default()
            }
            Err(e) => {
                eprintln!(
                    "recd bench: cannot read the event log ({e}); using --user-prefix/--item-prefix ids"
                );
                IdPool::default()
            }
        },
    };
    let ids = Arc::new(ids);
    let args = Arc::new(args);
    let start = Instant::now();
    let warm_until = start + Duration::from_secs_f64(args.warmup.max(0.0));
    let end = warm_until + Duration::from_secs_f64(args.duration);
    let tasks: Vec<_> = (0..args.concurrency)
        .map(|i| {
            tokio::spawn(worker(
                i,
                args.clone(),
                ids.clone(),
                client.clone(),
                start,
                warm_until,
                end,
            ))
        })
        .collect();
    let mut all = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut hit_took = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let (mut requests, mut errors, mut hits) = (0u64, 0u64, 0u64);
    let mut first_errors: Vec<String> = Vec::new();
    for t in tasks {
        let w = t.await??;
        for e in w.first_errors {
            if first_errors.len() < ERRORS_SHOWN && !first_errors.contains(&e) {
                first_errors.push(e);
            }
        }
        all.add(&w.latencies)?;
        hit_took.add(&w.hit_took)?;
        requests += w.requests;
        errors += w.errors;
        hits += w.cache_hits;
    }
    let catalog_after = server_counter(&client, &args.target, CATALOG_QUERIES).await;
    // Includes the warm-up: the source's load over the whole run.
    let whole_run = start.elapsed().as_secs_f64();
    let source_qps = catalog_before
        .zip(catalog_after)
        .map(|(b, a)| (a - b) / whole_run);
    let secs = args.duration;
    let ms = |q: f64| all.value_at_quantile(q) as f64 / 1000.0;
    let report = json!({
        "scenario": args.scenario.as_str(),
        "concurrency": args.concurrency,
        "duration_s": secs,
        "rate": args.rate,
        "requests": requests,
        "errors": errors,
        "first_errors": first_errors,
        "rps": requests as f64 / secs,
        "latency_ms": {"p50": ms(0.5), "p90": ms(0.9), "p99": ms(0.99), "max": all.max() as f64 / 1000.0},
        "cache": {
            "hits": hits,
            "hit_ratio": if requests > 0 { hits as f64 / requests as f64 } else { 0.0 },
            "hit_took_ms": {"p50": hit_took.value_at_quantile(0.5) as f64 / 1000.0, "p99": hit_took.value_at_quantile(0.99) as f64 / 1000.0},
        },
        "catalog_queries_per_s": source_qps,
        "server": health,
    });
    if args.json {
        println!("{report}");
    } else {
        println!(
            "{} x{} for {:.0}s against {} ({} backend, {} items)\n  requests {}  errors {}  {:.0} req/s\n  latency ms  p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
            args.scenario.as_str(),
            args.concurrency,
            secs,
            args.target,
            health["backend"].as_str().unwrap_or("?"),
            health["items"],
            requests,
            errors,
            requests as f64 / secs,
            ms(0.5),
            ms(0.9),
            ms(0.99),
            all.max() as f64 / 1000.0
        );
        if hits > 0 {
            println!(
                "  cache hits {hits} ({:.1}%), server took_ms of hits p50 {:.3} p99 {:.3}",
                100.0 * hits as f64 / requests.max(1) as f64,
                hit_took.value_at_quantile(0.5) as f64 / 1000.0,
                hit_took.value_at_quantile(0.99) as f64 / 1000.0
            );
        }
        if let Some(q) = source_qps {
            println!("  catalog source queries {q:.1}/s");
        }
    }
    if !first_errors.is_empty() {
        eprintln!("recd bench: first distinct errors:");
        for e in &first_errors {
            eprintln!("  {e}");
        }
    }
    let ratio = if requests > 0 {
        errors as f64 / requests as f64
    } else {
        1.0
    };
    if ratio > args.max_error_ratio {
        anyhow::bail!(
            "{errors} of {requests} requests failed ({:.1} % > --max-error-ratio {:.1} %)",
            100.0 * ratio,
            100.0 * args.max_error_ratio
        );
    }
    Ok(())
}
