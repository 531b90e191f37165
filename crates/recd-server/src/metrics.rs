//! Prometheus metrics: the catalogue of everything recd exports (name, type, unit, help:
//! `/metrics` describes each, and a test checks that no metric is recorded that the
//! catalogue does not list), the process-wide recorder, request counts and latency per
//! endpoint and per pipeline stage, build information and process metrics (RSS, CPU, open
//! file descriptors, threads; Prometheus' standard `process_*` names).
//!
//! Every label takes a bounded set of values, whatever clients send (issue 9, finding 6:
//! 20,000 requests with random method tokens added 224 MiB of label sets): `path` is the
//! route *template* or `unmatched`, `method` one of the standard methods or `other`,
//! `status` the numeric code.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use metrics::Unit;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Millisecond-scale buckets: the engine answers in single-digit milliseconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5,
];

/// Buckets of the per-list quality histograms (entropy and novelty in bits, diversity as a
/// cosine distance in [0, 2]).
const BITS_BUCKETS: &[f64] = &[
    0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 12.0, 16.0, 20.0,
];
const DISTANCE_BUCKETS: &[f64] = &[
    0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.2, 1.5, 2.0,
];

/// What kind of Prometheus metric a catalogue entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (name ends in `_total`).
    Counter,
    /// Goes up and down.
    Gauge,
    /// A distribution in buckets.
    Histogram,
}

/// One metric recd exports.
#[derive(Debug, Clone, Copy)]
pub struct MetricDef {
    /// Its name (`recd_` prefix, base units, `_total` on counters).
    pub name: &'static str,
    /// Counter, gauge or histogram.
    pub kind: Kind,
    /// The `# HELP` text.
    pub help: &'static str,
}

const fn def(name: &'static str, kind: Kind, help: &'static str) -> MetricDef {
    MetricDef { name, kind, help }
}

use Kind::{Counter, Gauge, Histogram};

/// Every metric recd records. Adding a metric means adding it here (a test scans the
/// sources for names this table lacks); the dashboards and alert rules in `deploy/` are
/// checked against a real Prometheus scraping a real server.
pub const CATALOGUE: &[MetricDef] = &[
    def(
        "recd_build_info",
        Gauge,
        "Always 1; the labels say which version and commit is running.",
    ),
    def(
        "recd_ready",
        Gauge,
        "1 when the server is ready to serve (its backend answers), else 0; set at each scrape.",
    ),
    def(
        "recd_runtime_workers",
        Gauge,
        "Threads answering requests (the async runtime's workers: `[server] workers`, or one per core).",
    ),
    def(
        "recd_http_requests_total",
        Counter,
        "HTTP requests answered, by method, route template and status.",
    ),
    def(
        "recd_http_request_duration_seconds",
        Histogram,
        "Time to answer an HTTP request, by method, route template and status.",
    ),
    def(
        "recd_request_timeouts_total",
        Counter,
        "Requests cut off by the per-request deadline (answered 503).",
    ),
    def(
        "recd_requests_shed_total",
        Counter,
        "Requests refused with 503 because max_in_flight requests were already running.",
    ),
    def("recd_open_connections", Gauge, "Open client connections."),
    def(
        "recd_idle_connections_closed_total",
        Counter,
        "Connections closed for idling or trickling headers.",
    ),
    def(
        "recd_auth_denied_total",
        Counter,
        "Requests refused by access control, by reason (missing, invalid, scope).",
    ),
    def(
        "recd_rate_limited_total",
        Counter,
        "Requests refused with 429, by what was limited (key or address).",
    ),
    def(
        "recd_rate_limit_errors_total",
        Counter,
        "Rate-limit checks that failed (Redis unreachable); the request was let through.",
    ),
    def(
        "recd_stage_duration_seconds",
        Histogram,
        "Time spent in one stage of the recommendation pipeline, by stage.",
    ),
    def(
        "recd_recommendations_total",
        Counter,
        "Recommendation lists served, by source (personalized, popular, cache).",
    ),
    def(
        "recd_cold_recommendations_total",
        Counter,
        "Lists served to users with no usable state (popular fallback).",
    ),
    def(
        "recd_impressions_total",
        Counter,
        "Lists served, by strategy, experiment, variant and source; the denominator of CTR.",
    ),
    def(
        "recd_clicks_total",
        Counter,
        "Click events that named the recommendation_id of a served list, by that list's strategy, experiment, variant and source.",
    ),
    def(
        "recd_conversions_total",
        Counter,
        "Purchase events that named the recommendation_id of a served list, by that list's strategy, experiment, variant and source.",
    ),
    def("recd_events_total", Counter, "Events applied, by type."),
    def(
        "recd_event_visible_duration_seconds",
        Histogram,
        "Time from a validated batch of events reaching the engine until every later recommendation reflects it: the store applied it to its users' state and their cached lists were invalidated. The embedded store leaves the fold-in's solve to the user's next read (inside that read's time); it makes events visible before its log acknowledges them (the answer still waits for the log); Redis, once written. Measured per batch, before the answer is sent.",
    ),
    def(
        "recd_list_category_entropy",
        Histogram,
        "Shannon entropy of the category mix of each served list, in bits (no unit suffix: Prometheus names base units, and promtool reads `_bits` as a non-base one).",
    ),
    def(
        "recd_list_diversity",
        Histogram,
        "Mean pairwise cosine distance between the items of each freshly computed list.",
    ),
    def(
        "recd_list_novelty",
        Histogram,
        "Mean self-information -log2(share of exposure) of the items of each served list, over the exposure window, in bits.",
    ),
    def(
        "recd_catalog_coverage_ratio",
        Gauge,
        "Share of the catalog recommended at least once in the sliding window.",
    ),
    def(
        "recd_exposure_gini",
        Gauge,
        "Gini coefficient of item exposure in the sliding window (0 = even, 1 = one item gets everything).",
    ),
    def(
        "recd_drift_psi",
        Gauge,
        "Population stability index of a watched feature, live window vs reference.",
    ),
    def(
        "recd_drift_p_value",
        Gauge,
        "p-value of the two-sample test (KS or chi-squared) of a watched feature.",
    ),
    def(
        "recd_drift_detected",
        Gauge,
        "1 when a watched feature drifted (PSI over threshold and a significant test), else 0.",
    ),
    def(
        "recd_impression_log_failures_total",
        Counter,
        "Served lists whose impression could not be logged.",
    ),
    def(
        "recd_attribution_failures_total",
        Counter,
        "Event batches whose credit to served lists could not be recorded.",
    ),
    def(
        "recd_feature_failures_total",
        Counter,
        "Online feature updates that failed, by op (events, impressions); the request itself succeeded.",
    ),
    def(
        "recd_new_item_vectors_total",
        Counter,
        "Provisional item vectors written to new items (item fold-in on events, content map on upserts and activations).",
    ),
    def(
        "recd_new_item_failures_total",
        Counter,
        "New-item updates that failed, by op (fold_in, content, activation); the request itself succeeded.",
    ),
    def(
        "recd_ranker_fallbacks_total",
        Counter,
        "Requests whose strategy names a learned ranker but were scored with the fixed blend, by reason (missing, features).",
    ),
    def(
        "recd_cache_lookups_total",
        Counter,
        "Cache lookups, by kind, tier (l1 in process, l2 Redis) and result (hit, miss).",
    ),
    def(
        "recd_cache_hit_ratio",
        Gauge,
        "Hits / lookups since start, by kind and tier (use recd_cache_lookups_total for rates).",
    ),
    def(
        "recd_cache_entries",
        Gauge,
        "Entries in the in-process cache, by kind.",
    ),
    def(
        "recd_cache_fills_total",
        Counter,
        "Cache misses filled by computing the answer, by kind.",
    ),
    def(
        "recd_cache_evictions_total",
        Counter,
        "Entries evicted from the in-process cache for size, by kind.",
    ),
    def(
        "recd_cache_early_refreshes_total",
        Counter,
        "Entries recomputed ahead of expiry (probabilistic early refresh), by kind.",
    ),
    def(
        "recd_cache_lock_waits_total",
        Counter,
        "Requests that waited for another server's fill of the same entry.",
    ),
    def(
        "recd_cache_lock_wait_timeouts_total",
        Counter,
        "Waits for another server's fill that gave up and computed.",
    ),
    def(
        "recd_cache_invalidation_failures_total",
        Counter,
        "Invalidations that could not reach Redis.",
    ),
    def(
        "recd_redis_used_memory_bytes",
        Gauge,
        "Memory used by the shared Redis (INFO used_memory).",
    ),
    def(
        "recd_redis_evicted_keys_total",
        Counter,
        "Keys the shared Redis evicted for maxmemory (INFO evicted_keys).",
    ),
    def(
        "recd_index_plan_total",
        Counter,
        "KNN searches of the embedded vector index by the plan that answered them (`plan`: `exact` scan, `graph` walk with the filter applied during the walk, `graph_then_exact` when a walk found too few and a scan completed it, `sketch_scan` for a scan of a broad filter that read 1-bit sketches first, `partitioned` for a filter on a few values of the schema's `vector.partition_by` field answered by their own graphs); absent on the redis backend, whose query engine does not report its plan.",
    ),
    def(
        "recd_checkpoint_duration_seconds",
        Histogram,
        "Time of each background checkpoint of the embedded backend's write-ahead log into redb (counted at the scrape after it ran); absent on the redis backend.",
    ),
    def(
        "recd_replay_records",
        Gauge,
        "Write-log records a restart after a crash now would replay into user states (those after the oldest change no stored user row includes); background checkpoints keep it to about `embedded.replay_records`. Absent on the redis backend.",
    ),
    def(
        "recd_checkpoint_handovers_total",
        Counter,
        "Checkpoints of the embedded backend that changed hands (`embedded.checkpoint_idle`): `kind=\"gave_way\"` background checkpoints on idle cycles dropped for another caller (an event-log reader, shutdown, the catch-up thread), `kind=\"catch_up\"` checkpoints the catch-up thread ran because none had finished for two intervals (the cores had no idle cycles). Absent on the redis backend.",
    ),
    def(
        "recd_catalog_queries_total",
        Counter,
        "Queries sent to the external item catalog.",
    ),
    def(
        "recd_catalog_errors_total",
        Counter,
        "Queries to the external item catalog that failed.",
    ),
    def(
        "recd_catalog_query_duration_seconds",
        Histogram,
        "Time of one query to the external item catalog.",
    ),
];

/// Describes every catalogue metric to the recorder (so `/metrics` prints `# HELP`) and
/// the process collector's.
fn describe() {
    for m in CATALOGUE {
        let unit = m.name.ends_with("_seconds").then_some(Unit::Seconds);
        let unit = unit.or(m.name.ends_with("_bytes").then_some(Unit::Bytes));
        match (m.kind, unit) {
            (Kind::Counter, Some(u)) => metrics::describe_counter!(m.name, u, m.help),
            (Kind::Counter, None) => metrics::describe_counter!(m.name, m.help),
            (Kind::Gauge, Some(u)) => metrics::describe_gauge!(m.name, u, m.help),
            (Kind::Gauge, None) => metrics::describe_gauge!(m.name, m.help),
            (Kind::Histogram, Some(u)) => metrics::describe_histogram!(m.name, u, m.help),
            (Kind::Histogram, None) => metrics::describe_histogram!(m.name, m.help),
        }
    }
    process().describe();
    // Counters without labels exist from the start at 0, so that a rate or an alert on
    // them has data before the first occurrence (Prometheus' advice: no missing series).
    for name in UNLABELLED_COUNTERS {
        metrics::counter!(*name).increment(0);
    }
}

/// The catalogue's counters that carry no labels.
const UNLABELLED_COUNTERS: &[&str] = &[
    "recd_request_timeouts_total",
    "recd_requests_shed_total",
    "recd_idle_connections_closed_total",
    "recd_rate_limit_errors_total",
    "recd_cold_recommendations_total",
    "recd_impression_log_failures_total",
    "recd_attribution_failures_total",
    "recd_new_item_vectors_total",
    "recd_cache_lock_waits_total",
    "recd_cache_lock_wait_timeouts_total",
    "recd_cache_invalidation_failures_total",
];

fn process() -> &'static metrics_process::Collector {
    static PROCESS: OnceLock<metrics_process::Collector> = OnceLock::new();
    PROCESS.get_or_init(metrics_process::Collector::default)
}

static BUILD: OnceLock<(String, String)> = OnceLock::new();

/// Says which build is running: `/metrics` then exports `recd_build_info{version,commit} 1`.
/// The binary calls it once at start with what its build script found.
pub fn set_build_info(version: &str, commit: &str) {
    let _ = BUILD.set((version.to_string(), commit.to_string()));
}

/// The text of `/metrics`: refreshes the build and process metrics, then renders everything.
pub fn render() -> String {
    let (version, commit) = BUILD
        .get()
        .cloned()
        .unwrap_or_else(|| (env!("CARGO_PKG_VERSION").to_string(), "unknown".to_string()));
    metrics::gauge!("recd_build_info", "version" => version, "commit" => commit).set(1.0);
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        metrics::gauge!("recd_runtime_workers").set(runtime.metrics().num_workers() as f64);
    }
    process().collect();
    handle().map(PrometheusHandle::render).unwrap_or_default()
}

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide recorder once and returns its handle (None if another
/// recorder was installed first, e.g. by an embedding application).
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("duration_seconds".into()), LATENCY_BUCKETS)
                .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_bits".into()), BITS_BUCKETS))
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("recd_list_diversity".into()),
                        DISTANCE_BUCKETS,
                    )
                })
                .ok()?;
            match builder.install_recorder() {
                Ok(h) => {
                    describe();
                    Some(h)
                }
                Err(e) => {
                    tracing::warn!(cause = %e, "cannot install the Prometheus recorder; /metrics will be empty");
                    None
                }
            }
        })
        .as_ref()
}

/// Middleware: counts and times every request (matched or not) by method, route template
/// and status.
pub async fn track(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let path = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = method_label(req.method());
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    let labels = [
        ("method", method.to_string()),
        ("path", path),
        ("status", status),
    ];
    metrics::counter!("recd_http_requests_total", &labels).increment(1);
    metrics::histogram!("recd_http_request_duration_seconds", &labels)
        .record(start.elapsed().as_secs_f64());
    response
}

/// The standard methods by name; any other token is `other`.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

/// Records how long one pipeline stage took.
pub fn stage(name: &'static str, seconds: f64) {
    metrics::histogram!("recd_stage_duration_seconds", "stage" => name).record(seconds);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `"recd_…"` metric name recorded anywhere in the server's sources is in the
    /// catalogue (so it has `# HELP`), and every catalogue name follows the conventions.
    #[test]
    fn the_catalogue_lists_every_recorded_metric() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut missing = Vec::new();
        let mut stack = vec![src];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).expect("read src") {
                let path = entry.expect("dir entry").path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                if path.extension().is_none_or(|e| e != "rs") || path.ends_with("metrics.rs") {
                    continue;
                }
                let text = std::fs::read_to_string(&path).expect("read source");
                for (i, _) in text.match_indices("!(\"recd_") {
                    let rest = &text[i + 3..];
                    let name = &rest[..rest.find('"').unwrap_or(rest.len())];
                    if !CATALOGUE.iter().any(|m| m.name == name) {
                        missing.push(format!("{}: {name}", path.display()));
                    }
                }
                for (i, _) in text.match_indices("!(\n") {
                    // A macro call whose name is on the next line.
                    let rest = text[i + 3..].trim_start();
                    if let Some(quoted) = rest.strip_prefix("\"recd_") {
                        let name = format!("recd_{}", &quoted[..quoted.find('"').unwrap_or(0)]);
                        if !CATALOGUE.iter().any(|m| m.name == name) {
                            missing.push(format!("{}: {name}", path.display()));
                        }
                    }
                }
            }
        }
        assert!(
            missing.is_empty(),
            "metrics missing from CATALOGUE: {missing:?}"
        );
        for m in CATALOGUE {
            assert!(m.name.starts_with("recd_"), "{}", m.name);
            assert_eq!(
                m.kind == Kind::Counter,
                m.name.ends_with("_total"),
                "counters and only counters end in _total: {}",
                m.name
            );
            assert!(!m.help.is_empty());
        }
        for name in UNLABELLED_COUNTERS {
            assert!(
                CATALOGUE
                    .iter()
                    .any(|m| m.name == *name && m.kind == Kind::Counter),
                "{name}"
            );
        }
        let mut names: Vec<_> = CATALOGUE.iter().map(|m| m.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), CATALOGUE.len(), "a name is listed twice");
    }
}
