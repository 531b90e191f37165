//! The read-through catalog source: item details from PostgreSQL, for the item-detail cache.
//!
//! [`PgCatalog`] runs one configured query (`$1` = the item id, at most one row; it may join
//! and aggregate) on a small connection pool and turns the row into a JSON object, one key
//! per column, by the column's type. The id is always a bound parameter, never spliced into
//! SQL. The query is prepared when the catalog connects, so a query that cannot work (a
//! syntax error, an unknown table, a column type with no JSON form) stops the server at
//! start instead of failing every request.
//!
//! With `notify_channel` set, [`PgCatalog::listen`] follows `LISTEN`/`NOTIFY` on a dedicated
//! connection: each notification's payload is an item id that changed
//! ([`CatalogChange::Item`]). When that connection drops it reconnects with backoff and then
//! sends [`CatalogChange::All`], because notifications sent meanwhile are lost.
//!
//! Every query has a deadline (`timeout_ms`, both on the client and as the server's
//! `statement_timeout`), and the connections are read-only (`default_transaction_read_only`),
//! so a misconfigured query cannot write to the catalog.
//!
//! Column types and their JSON form:
//!
//! | PostgreSQL | JSON |
//! |---|---|
//! | `text`, `varchar`, `char(n)`, `name`, `citext`, enums | string |
//! | `int2`, `int4`, `int8`, `oid` | number |
//! | `float4`, `float8`, `numeric` (as f64) | number; `NaN` and infinities as the strings `"NaN"`, `"Infinity"`, `"-Infinity"` |
//! | `bool` | `true` / `false` |
//! | `timestamptz` | RFC 3339 string in UTC (`2024-05-01T12:00:00.25Z`); `"infinity"` / `"-infinity"` |
//! | `timestamp` | the same without the `Z`; `date`: `2024-05-01` |
//! | `uuid` | string |
//! | `json`, `jsonb` | the JSON value itself |
//! | one-dimensional arrays of any of these (`text[]`, `int8[]`, …) | array |
//! | `NULL` | `null` |
//!
//! Any other type is refused at connect with an error naming the column; cast it in the
//! query (`price::text`, `tags::text[]`).

use std::fmt;
use std::future::poll_fn;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Number, Value};
use tokio::sync::mpsc;
use tokio_postgres::config::SslMode;
use tokio_postgres::types::{FromSql, Kind, ToSql, Type};
use tokio_postgres::{AsyncMessage, NoTls, Row};

/// Capacity of the channel [`PgCatalog::listen`] returns. When the consumer falls this far
/// behind, single-item changes are collapsed into one [`CatalogChange::All`].
pub const LISTEN_BUFFER: usize = 1024;

/// First and longest pause between two attempts to re-establish the `LISTEN` connection.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// The `[catalog]` section: where item details come from when they are not cached.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CatalogConfig {
    /// The PostgreSQL connection, as a URL (`postgres://user:password@host:port/db`) or a
    /// libpq key/value string. `None`: no catalog source. Connections are made without TLS,
    /// so `sslmode=require` is refused.
    pub source: Option<String>,
    /// The SQL that fetches one item: `$1` is the item id (bound, never interpolated) and it
    /// returns at most one row, whose columns become the item's JSON fields. It may join and
    /// aggregate. `$1` may be compared with a text, integer or uuid column: an id that is not
    /// a valid value of that type simply matches nothing.
    pub query: String,
    /// The channel to `LISTEN` on for changes; each `NOTIFY` payload is an item id (an empty
    /// payload means "anything may have changed"). `None`: no notifications.
    pub notify_channel: Option<String>,
    /// Most connections the pool keeps open.
    pub pool_size: usize,
    /// Deadline of each fetch, end to end (waiting for a connection, connecting, running the
    /// query), in milliseconds; also the server-side `statement_timeout`.
    pub timeout_ms: u64,
}

impl Default for CatalogConfig {
    fn default() -> Self {
        Self {
            source: None,
            query: "SELECT * FROM items WHERE id = $1".into(),
            notify_channel: None,
            pool_size: 8,
            timeout_ms: 1000,
        }
    }
}

/// Debug output hides the password of `source` (configs get logged).
impl fmt::Debug for CatalogConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CatalogConfig")
            .field("source", &self.source.as_deref().map(redact_password))
            .field("query", &self.query)
            .field("notify_channel", &self.notify_channel)
            .field("pool_size", &self.pool_size)
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

impl CatalogConfig {
    /// Checks what can be checked without connecting; the error names the key.
    pub fn validate(&self) -> Result<(), CatalogError> {
        if let Some(source) = &self.source {
            parse_source(source)?;
        }
        if self.query.trim().is_empty() {
            return Err(CatalogError::Invalid("catalog.query is empty".into()));
        }
        if self.pool_size == 0 {
            return Err(CatalogError::Invalid(
                "catalog.pool_size must be at least 1".into(),
            ));
        }
        if self.timeout_ms == 0 {
            return Err(CatalogError::Invalid(
                "catalog.timeout_ms must be at least 1".into(),
            ));
        }
        if let Some(channel) = &self.notify_channel
            && (channel.is_empty() || channel.len() > 63 || channel.contains('\0'))
        {
            return Err(CatalogError::Invalid(
                "catalog.notify_channel must be 1-63 bytes without NUL".into(),
            ));
        }
        Ok(())
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

/// Why the catalog could not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    /// The source cannot answer now: unreachable, refusing connections, shutting down, or
    /// no answer within `timeout_ms`. Transient; an HTTP layer answers 503.
    #[error("catalog source unavailable: {0}")]
    Unavailable(String),
    /// The configuration cannot work: a bad URL or setting, a query that does not prepare,
    /// does not take exactly one parameter, or returns a column with no JSON form, a
    /// database that does not exist, authentication refused. Found at connect.
    #[error("invalid catalog configuration: {0}")]
    Invalid(String),
    /// The source answered, but not usably: the query failed on this id or returned more
    /// than one row, or a value could not be decoded.
    #[error("catalog source error: {0}")]
    Internal(String),
}

/// A change announced on the notify channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatalogChange {
    /// This item's details changed (the payload of one `NOTIFY`).
    Item(String),
    /// Anything may have changed: notifications were lost (the `LISTEN` connection dropped,
    /// or the consumer fell [`LISTEN_BUFFER`] behind), or a `NOTIFY` had an empty payload.
    All,
}

/// How the id is bound to `$1`, from the parameter type the server inferred.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IdKind {
    Text,
    Int2,
    Int4,
    Int8,
    Uuid,
}

/// One id, converted for its parameter.
enum IdParam<'a> {
    Text(&'a str),
    Int2(i16),
    Int4(i32),
    Int8(i64),
    Uuid(uuid::Uuid),
}

impl IdKind {
    fn of(ty: &Type) -> Option<IdKind> {
        match *ty {
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => Some(IdKind::Text),
            Type::INT2 => Some(IdKind::Int2),
            Type::INT4 => Some(IdKind::Int4),
            Type::INT8 => Some(IdKind::Int8),
            Type::UUID => Some(IdKind::Uuid),
            _ if ty.name() == "citext" => Some(IdKind::Text),
            _ => None,
        }
    }

    /// The parameter for `id`, or `None` when no row can have it (not a number for an
    /// integer key, not a uuid for a uuid key, a NUL byte that no text can hold).
    fn bind(self, id: &str) -> Option<IdParam<'_>> {
        match self {
            IdKind::Text => (!id.contains('\0')).then_some(IdParam::Text(id)),
            IdKind::Int2 => id.parse().ok().map(IdParam::Int2),
            IdKind::Int4 => id.parse().ok().map(IdParam::Int4),
            IdKind::Int8 => id.parse().ok().map(IdParam::Int8),
            IdKind::Uuid => uuid::Uuid::parse_str(id).ok().map(IdParam::Uuid),
        }
    }
}

impl IdParam<'_> {
    fn as_sql(&self) -> &(dyn ToSql + Sync) {
        match self {
            IdParam::Text(v) => v,
            IdParam::Int2(v) => v,
            IdParam::Int4(v) => v,
            IdParam::Int8(v) => v,
            IdParam::Uuid(v) => v,
        }
    }
}

/// Counters behind the metrics.
#[derive(Debug, Default)]
struct Stats {
    queries: AtomicU64,
    errors: AtomicU64,
    latency_us: AtomicU64,
}

/// The PostgreSQL catalog source. Cloning is cheap and shares the pool and the counters.
#[derive(Clone)]
pub struct PgCatalog {
    pool: Pool,
    query: Arc<str>,
    id_kind: IdKind,
    timeout: Duration,
    /// Connection settings of the `LISTEN` connection (no statement timeout: it idles).
    listen_config: tokio_postgres::Config,
    notify_channel: Option<String>,
    stats: Arc<Stats>,
}

impl fmt::Debug for PgCatalog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgCatalog")
            .field("query", &self.query)
            .field("id_kind", &self.id_kind)
            .field("timeout", &self.timeout)
            .field("notify_channel", &self.notify_channel)
            .field("pool", &self.pool.status())
            .finish_non_exhaustive()
    }
}

impl PgCatalog {
    /// Opens the pool, checks that the source answers, and prepares the query.
    ///
    /// Errors: [`CatalogError::Invalid`] for a configuration that cannot work (including a
    /// query the server rejects), [`CatalogError::Unavailable`] when the server cannot be
    /// reached within `timeout_ms`.
    pub async fn connect(config: &CatalogConfig) -> Result<Self, CatalogError> {
        config.validate()?;
        let source = config
            .source
            .as_deref()
            .ok_or_else(|| CatalogError::Invalid("catalog.source is not set".into()))?;
        let timeout = config.timeout();
        let mut base = parse_source(source)?;
        base.connect_timeout(timeout);
        if base.get_application_name().is_none() {
            base.application_name("recd-catalog");
        }
        let listen_config = {
            let mut c = base.clone();
            // The LISTEN connection idles for hours: find a dead peer in about a minute.
            c.keepalives(true)
                .keepalives_idle(Duration::from_secs(30))
                .keepalives_interval(Duration::from_secs(10))
                .keepalives_retries(3);
            c
        };
        let mut pool_config = base;
        let options = format!(
            "{} -c statement_timeout={} -c default_transaction_read_only=on",
            pool_config.get_options().unwrap_or(""),
            config.timeout_ms
        );
        pool_config.options(options.trim_start());

        let manager = Manager::from_config(
            pool_config,
            NoTls,
            ManagerConfig {
                // A closed connection is replaced; a live one is reused without a round trip.
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(config.pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(timeout))
            .create_timeout(Some(timeout))
            .recycle_timeout(Some(timeout))
            .build()
            .map_err(|e| CatalogError::Internal(format!("cannot build the pool: {e}")))?;

        let query = config.query.as_str();
        let prepare = async {
            let client = pool
                .get()
                .await
                .map_err(|e| pool_error(e, Phase::Connect))?;
            client
                .prepare_cached(query)
                .await
                .map_err(|e| pg_error(&e, Phase::Connect))
        };
        let statement = tokio::time::timeout(timeout, prepare)
            .await
            .map_err(|_| deadline(timeout, "connecting and preparing the query"))??;

        let params = statement.params();
        if params.len() != 1 {
            return Err(CatalogError::Invalid(format!(
                "catalog.query must take exactly one parameter, $1 = the item id; it takes {}",
                params.len()
            )));
        }
        let id_kind = IdKind::of(&params[0]).ok_or_else(|| {
            CatalogError::Invalid(format!(
                "catalog.query compares $1 (the item id) with a value of type {}; \
                 it must be text, varchar, an integer or uuid",
                params[0].name()
            ))
        })?;
        if statement.columns().is_empty() {
            return Err(CatalogError::Invalid(
                "catalog.query returns no columns".into(),
            ));
        }
        for column in statement.columns() {
            if !supported(column.type_()) {
                return Err(CatalogError::Invalid(format!(
                    "catalog.query: column `{}` has type {}, which has no JSON form here; \
                     cast it in the query (e.g. `{}::text`)",
                    column.name(),
                    column.type_().name(),
                    column.name()
                )));
            }
        }
        Ok(Self {
            pool,
            query: config.query.as_str().into(),
            id_kind,
            timeout,
            listen_config,
            notify_channel: config.notify_channel.clone(),
            stats: Arc::default(),
        })
    }

    /// The details of item `id`, or `None` when the query returns no row for it.
    pub async fn fetch(&self, id: &str) -> Result<Option<Map<String, Value>>, CatalogError> {
        let Some(param) = self.id_kind.bind(id) else {
            return Ok(None);
        };
        let run = async {
            let client = self
                .pool
                .get()
                .await
                .map_err(|e| pool_error(e, Phase::Fetch))?;
            let statement = client
                .prepare_cached(&self.query)
                .await
                .map_err(|e| pg_error(&e, Phase::Fetch))?;
            let rows = client
                .query(&statement, &[param.as_sql()])
                .await
                .map_err(|e| pg_error(&e, Phase::Fetch))?;
            one_row(&rows)
        };
        self.timed(1, run).await
    }

    /// The details of each of `ids`, in order (`None` where there is no row), on one
    /// connection with the queries pipelined: one round trip's latency for the batch, not
    /// one per id. Counts one query per id.
    pub async fn fetch_many(
        &self,
        ids: &[String],
    ) -> Result<Vec<Option<Map<String, Value>>>, CatalogError> {
        let params: Vec<Option<IdParam<'_>>> = ids.iter().map(|id| self.id_kind.bind(id)).collect();
        let bound = params.iter().flatten().count();
        if bound == 0 {
            return Ok(vec![None; ids.len()]);
        }
        let run = async {
            let client = self
                .pool
                .get()
                .await
                .map_err(|e| pool_error(e, Phase::Fetch))?;
            let statement = client
                .prepare_cached(&self.query)
                .await
                .map_err(|e| pg_error(&e, Phase::Fetch))?;
            let queries = params.iter().map(|param| {
                let client = &client;
                let statement = &statement;
                async move {
                    match param {
                        None => Ok(None),
                        Some(p) => {
                            let rows = client
                                .query(statement, &[p.as_sql()])
                                .await
                                .map_err(|e| pg_error(&e, Phase::Fetch))?;
                            one_row(&rows)
                        }
                    }
                }
            });
            futures_util::future::try_join_all(queries).await
        };
        self.timed(bound as u64, run).await
    }

    /// Runs `work` (worth `queries` source queries) under the deadline, counting and timing it.
    async fn timed<T>(
        &self,
        queries: u64,
        work: impl Future<Output = Result<T, CatalogError>>,
    ) -> Result<T, CatalogError> {
        self.stats.queries.fetch_add(queries, Ordering::Relaxed);
        let started = Instant::now();
        let result = tokio::time::timeout(self.timeout, work)
            .await
            .unwrap_or_else(|_| Err(deadline(self.timeout, "the query")));
        let elapsed = started.elapsed();
        self.stats.latency_us.fetch_add(
            u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        metrics::histogram!("recd_catalog_query_duration_seconds").record(elapsed.as_secs_f64());
        if result.is_err() {
            self.stats.errors.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    /// Source queries issued so far (one per id fetched; failed ones included).
    pub fn queries(&self) -> u64 {
        self.stats.queries.load(Ordering::Relaxed)
    }

    /// Fetches (single or batch) that failed, including those that ran out of time.
    pub fn errors(&self) -> u64 {
        self.stats.errors.load(Ordering::Relaxed)
    }

    /// Total wall time spent in fetches, in seconds; with [`Self::queries`] it gives the
    /// mean. (Each fetch is also recorded in the `recd_catalog_query_duration_seconds`
    /// histogram of the `metrics` facade.)
    pub fn query_seconds_total(&self) -> f64 {
        self.stats.latency_us.load(Ordering::Relaxed) as f64 / 1e6
    }

    /// Follows `LISTEN`/`NOTIFY` on `notify_channel`. Returns once the subscription is
    /// active, so every `NOTIFY` committed after this returns is delivered (or covered by a
    /// later [`CatalogChange::All`]).
    ///
    /// A background task owns a dedicated connection; if it drops, the task reconnects
    /// with backoff (100 ms doubling to 5 s) and then sends [`CatalogChange::All`]. The task
    /// ends when the receiver is dropped.
    ///
    /// Errors: [`CatalogError::Invalid`] when no `notify_channel` is configured;
    /// [`CatalogError::Unavailable`] when the first subscription cannot be made.
    pub async fn listen(&self) -> Result<mpsc::Receiver<CatalogChange>, CatalogError> {
        let channel = self.notify_channel.clone().ok_or_else(|| {
            CatalogError::Invalid("catalog.notify_channel is not set; nothing to listen to".into())
        })?;
        let first = subscribe(&self.listen_config, &channel, self.timeout).await?;
        let (tx, rx) = mpsc::channel(LISTEN_BUFFER);
        tokio::spawn(follow(
            first,
            tx,
            self.listen_config.clone(),
            channel,
            self.timeout,
        ));
        Ok(rx)
    }
}

/// An active `LISTEN`: the client keeps the connection open; `notes` carries the
/// notifications its driver task reads, and ends when the connection does.
struct Subscription {
    _client: tokio_postgres::Client,
    notes: mpsc::UnboundedReceiver<String>,
}

/// Connects and runs `LISTEN channel`.
async fn subscribe(
    config: &tokio_postgres::Config,
    channel: &str,
    timeout: Duration,
) -> Result<Subscription, CatalogError> {
    let work = async {
        let (client, mut connection) = config
            .connect(NoTls)
            .await
            .map_err(|e| pg_error(&e, Phase::Fetch))?;
        let (tx, notes) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            // Drives the connection (queries make progress only while it is polled) and
            // forwards notifications; ends when the connection closes.
            loop {
                match poll_fn(|cx| connection.poll_message(cx)).await {
                    Some(Ok(AsyncMessage::Notification(n))) => {
                        if tx.send(n.payload().to_string()).is_err() {
                            break;
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        tracing::warn!(cause = %error_chain(&e), "catalog LISTEN connection failed");
                        break;
                    }
                    None => break,
                }
            }
        });
        client
            .batch_execute(&format!("LISTEN {}", quote_ident(channel)))
            .await
            .map_err(|e| pg_error(&e, Phase::Fetch))?;
        Ok(Subscription {
            _client: client,
            notes,
        })
    };
    tokio::time::timeout(timeout, work)
        .await
        .unwrap_or_else(|_| Err(deadline(timeout, "subscribing to the notify channel")))
}

/// The listener task: forwards notifications, collapses them into `All` when the consumer
/// lags, and re-subscribes when the connection drops.
async fn follow(
    mut subscription: Subscription,
    tx: mpsc::Sender<CatalogChange>,
    config: tokio_postgres::Config,
    channel: String,
    timeout: Duration,
) {
    // An `All` is owed: changes were lost, and single-item changes are dropped until it
    // is delivered (it covers them).
    let mut owe_all = false;
    loop {
        if forward(&mut subscription.notes, &tx, &mut owe_all).await == Flow::ConsumerGone {
            return;
        }
        tracing::warn!(channel = %channel, "catalog LISTEN connection lost; reconnecting");
        let mut delay = BACKOFF_MIN;
        subscription = loop {
            tokio::select! {
                () = tx.closed() => return,
                result = subscribe(&config, &channel, timeout) => match result {
                    Ok(s) => break s,
                    Err(e) => tracing::warn!(cause = %e, retry_in_ms = delay.as_millis() as u64,
                        "catalog LISTEN reconnect failed"),
                },
            }
            tokio::select! {
                () = tx.closed() => return,
                () = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(BACKOFF_MAX);
        };
        tracing::info!(channel = %channel, "catalog LISTEN re-established");
        owe_all = true;
    }
}

/// Why [`forward`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    /// The receiver was dropped: stop listening.
    ConsumerGone,
    /// The connection ended: subscribe again.
    ConnectionLost,
}

/// Forwards the payloads of one subscription to `tx` until either side ends. A change that
/// does not fit in `tx` is dropped and `owe_all` set; the `All` goes out as soon as there is
/// room, before any further payload (which it covers).
async fn forward(
    notes: &mut mpsc::UnboundedReceiver<String>,
    tx: &mpsc::Sender<CatalogChange>,
    owe_all: &mut bool,
) -> Flow {
    loop {
        tokio::select! {
            biased;
            () = tx.closed() => return Flow::ConsumerGone,
            permit = tx.reserve(), if *owe_all => match permit {
                Ok(permit) => {
                    permit.send(CatalogChange::All);
                    *owe_all = false;
                }
                Err(_) => return Flow::ConsumerGone,
            },
            note = notes.recv() => match note {
                Some(_) if *owe_all => {}
                Some(payload) => {
                    let change = if payload.is_empty() {
                        CatalogChange::All
                    } else {
                        CatalogChange::Item(payload)
                    };
                    match tx.try_send(change) {
                        Ok(()) => {}
                        Err(mpsc::error::TrySendError::Full(_)) => *owe_all = true,
                        Err(mpsc::error::TrySendError::Closed(_)) => return Flow::ConsumerGone,
                    }
                }
                None => return Flow::ConnectionLost,
            },
        }
    }
}

/// Where an error happened, which decides how a failure is classified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Checking the configuration: what the server rejects is a configuration error.
    Connect,
    /// Serving: a rejected query is a failure of this fetch.
    Fetch,
}

fn deadline(timeout: Duration, what: &str) -> CatalogError {
    CatalogError::Unavailable(format!(
        "no answer within {} ms ({what})",
        timeout.as_millis()
    ))
}

fn pool_error(e: PoolError, phase: Phase) -> CatalogError {
    match e {
        PoolError::Backend(e) => pg_error(&e, phase),
        PoolError::Timeout(kind) => {
            CatalogError::Unavailable(format!("timed out waiting for a connection ({kind:?})"))
        }
        PoolError::Closed => CatalogError::Unavailable("the connection pool is closed".into()),
        other => CatalogError::Internal(format!("connection pool: {other}")),
    }
}

/// Classifies a driver error. Server errors go by SQLSTATE class; errors without one are
/// the connection's (refused, reset, closed, timed out) except configuration and
/// authentication failures, which the driver reports only by kind (its `Display`).
fn pg_error(e: &tokio_postgres::Error, phase: Phase) -> CatalogError {
    let message = error_chain(e);
    if let Some(db) = e.as_db_error() {
        let class = db.code().code().get(..2).unwrap_or("");
        return match (class, phase) {
            // connection exception, insufficient resources, operator intervention (shutdown,
            // statement_timeout), system error
            ("08" | "53" | "57" | "58", _) => CatalogError::Unavailable(message),
            // authorization, unknown database: the configuration is wrong
            ("28" | "3D", Phase::Connect) => CatalogError::Invalid(message),
            ("28" | "3D", Phase::Fetch) => CatalogError::Unavailable(message),
            (_, Phase::Connect) => CatalogError::Invalid(message),
            (_, Phase::Fetch) => CatalogError::Internal(message),
        };
    }
    let kind = e.to_string();
    let config_error = kind.starts_with("invalid configuration")
        || kind.starts_with("invalid connection string")
        || kind.starts_with("authentication error");
    match phase {
        Phase::Connect if config_error => CatalogError::Invalid(message),
        _ => CatalogError::Unavailable(message),
    }
}

/// An error and its causes, `: `-separated (the driver's own `Display` is only its kind).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

fn parse_source(source: &str) -> Result<tokio_postgres::Config, CatalogError> {
    let config: tokio_postgres::Config = source
        .parse()
        .map_err(|e| CatalogError::Invalid(format!("catalog.source: {}", error_chain(&e))))?;
    if config.get_ssl_mode() == SslMode::Require {
        return Err(CatalogError::Invalid(
            "catalog.source: sslmode=require is not supported (the catalog connects without TLS)"
                .into(),
        ));
    }
    Ok(config)
}

/// `source` with the password replaced by `***`, in URL (`user:pw@`) and key/value
/// (`password=pw`) forms.
fn redact_password(source: &str) -> String {
    let mut out = source.to_string();
    if let Some(scheme_end) = out.find("://") {
        let rest = scheme_end + 3;
        let authority_end = out[rest..].find(['/', '?']).map_or(out.len(), |i| rest + i);
        if let Some(at) = out[rest..authority_end].rfind('@')
            && let Some(colon) = out[rest..rest + at].find(':')
        {
            out.replace_range(rest + colon + 1..rest + at, "***");
        }
    }
    let mut from = 0;
    while let Some(i) = out[from..].find("password=") {
        let start = from + i + "password=".len();
        let end = out[start..]
            .find(['&', ' '])
            .map_or(out.len(), |j| start + j);
        out.replace_range(start..end, "***");
        from = start + 3;
    }
    out
}

/// `name` as a quoted SQL identifier.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn one_row(rows: &[Row]) -> Result<Option<Map<String, Value>>, CatalogError> {
    match rows {
        [] => Ok(None),
        [row] => row_to_json(row).map(Some),
        _ => Err(CatalogError::Internal(format!(
            "catalog.query returned {} rows for one id; it must return at most one",
            rows.len()
        ))),
    }
}

fn row_to_json(row: &Row) -> Result<Map<String, Value>, CatalogError> {
    let mut object = Map::with_capacity(row.len());
    for (i, column) in row.columns().iter().enumerate() {
        let cell: Option<Cell> = row.try_get(i).map_err(|e| {
            CatalogError::Internal(format!("column `{}`: {}", column.name(), error_chain(&e)))
        })?;
        object.insert(column.name().to_string(), cell.map_or(Value::Null, |c| c.0));
    }
    Ok(object)
}

type DecodeError = Box<dyn std::error::Error + Sync + Send>;

/// One column value as JSON (`NULL` is `Option::None` around it).
struct Cell(Value);

impl<'a> FromSql<'a> for Cell {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, DecodeError> {
        decode(ty, raw).map(Cell)
    }

    fn accepts(ty: &Type) -> bool {
        supported(ty)
    }
}

/// Whether a column of type `ty` has a JSON form (see the module's table).
fn supported(ty: &Type) -> bool {
    match ty.kind() {
        Kind::Array(inner) => !matches!(inner.kind(), Kind::Array(_)) && supported(inner),
        Kind::Domain(inner) => supported(inner),
        Kind::Enum(_) => true,
        _ => {
            matches!(
                *ty,
                Type::BOOL
                    | Type::INT2
                    | Type::INT4
                    | Type::INT8
                    | Type::OID
                    | Type::FLOAT4
                    | Type::FLOAT8
                    | Type::NUMERIC
                    | Type::TEXT
                    | Type::VARCHAR
                    | Type::BPCHAR
                    | Type::NAME
                    | Type::UUID
                    | Type::JSON
                    | Type::JSONB
                    | Type::TIMESTAMPTZ
                    | Type::TIMESTAMP
                    | Type::DATE
            ) || ty.name() == "citext"
        }
    }
}

/// Decodes one non-NULL value in PostgreSQL's binary format.
fn decode(ty: &Type, raw: &[u8]) -> Result<Value, DecodeError> {
    match ty.kind() {
        Kind::Array(_) => {
            let cells = Vec::<Option<Cell>>::from_sql(ty, raw)?;
            return Ok(Value::Array(
                cells
                    .into_iter()
                    .map(|c| c.map_or(Value::Null, |c| c.0))
                    .collect(),
            ));
        }
        Kind::Domain(inner) => return decode(inner, raw),
        Kind::Enum(_) => return Ok(Value::String(std::str::from_utf8(raw)?.to_owned())),
        _ => {}
    }
    Ok(match *ty {
        Type::BOOL => Value::Bool(bool::from_sql(ty, raw)?),
        Type::INT2 => Value::from(i16::from_sql(ty, raw)?),
        Type::INT4 => Value::from(i32::from_sql(ty, raw)?),
        Type::INT8 => Value::from(i64::from_sql(ty, raw)?),
        Type::OID => Value::from(u32::from_sql(ty, raw)?),
        // Through the shortest decimal form, so a float4 0.1 reads 0.1, not 0.10000000149.
        Type::FLOAT4 => float(f32::from_sql(ty, raw)?.to_string().parse()?),
        Type::FLOAT8 => float(f64::from_sql(ty, raw)?),
        Type::NUMERIC => numeric(raw)?,
        Type::UUID => Value::String(uuid::Uuid::from_sql(ty, raw)?.to_string()),
        Type::JSON | Type::JSONB => Value::from_sql(ty, raw)?,
        Type::TIMESTAMPTZ => timestamp(raw, "Z")?,
        Type::TIMESTAMP => timestamp(raw, "")?,
        Type::DATE => date(raw)?,
        // text, varchar, char(n), name, citext: the binary form is the UTF-8 text.
        _ => Value::String(std::str::from_utf8(raw)?.to_owned()),
    })
}

/// A float as a JSON number; NaN and the infinities (which JSON lacks) as PostgreSQL spells them.
fn float(v: f64) -> Value {
    match Number::from_f64(v) {
        Some(n) => Value::Number(n),
        None if v.is_nan() => Value::String("NaN".into()),
        None if v > 0.0 => Value::String("Infinity".into()),
        None => Value::String("-Infinity".into()),
    }
}

fn be_u16(raw: &[u8], at: usize) -> Result<u16, DecodeError> {
    raw.get(at..at + 2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
        .ok_or_else(|| "truncated numeric value".into())
}

/// `numeric` (binary: ndigits, weight, sign, dscale, then base-10000 digits) as an f64,
/// parsed from its exact decimal form so that it is correctly rounded.
fn numeric(raw: &[u8]) -> Result<Value, DecodeError> {
    let ndigits = usize::from(be_u16(raw, 0)?);
    let weight = i32::from(be_u16(raw, 2)? as i16);
    let sign = be_u16(raw, 4)?;
    let negative = match sign {
        0x0000 => false,
        0x4000 => true,
        0xC000 => return Ok(Value::String("NaN".into())),
        0xD000 => return Ok(Value::String("Infinity".into())),
        0xF000 => return Ok(Value::String("-Infinity".into())),
        _ => return Err(format!("bad numeric sign {sign:#x}").into()),
    };
    if raw.len() != 8 + 2 * ndigits {
        return Err("numeric value has the wrong length".into());
    }
    if ndigits == 0 {
        return Ok(Value::from(0.0));
    }
    let mut text = String::with_capacity(8 + 4 * ndigits);
    if negative {
        text.push('-');
    }
    text.push_str("0.");
    for i in 0..ndigits {
        let digit = be_u16(raw, 8 + 2 * i)?;
        if digit >= 10_000 {
            return Err("bad numeric digit".into());
        }
        text.push_str(&format!("{digit:04}"));
    }
    text.push_str(&format!("e{}", 4 * (weight + 1)));
    Ok(float(text.parse()?))
}

/// Microseconds (timestamps) and days (dates) count from 2000-01-01.
const PG_EPOCH_DAYS_FROM_UNIX: i64 = 10_957;

fn timestamp(raw: &[u8], zone: &str) -> Result<Value, DecodeError> {
    let bytes: [u8; 8] = raw.try_into().map_err(|_| "bad timestamp length")?;
    let us = i64::from_be_bytes(bytes);
    if us == i64::MAX {
        return Ok(Value::String("infinity".into()));
    }
    if us == i64::MIN {
        return Ok(Value::String("-infinity".into()));
    }
    let days = us.div_euclid(86_400_000_000);
    let in_day = us.rem_euclid(86_400_000_000);
    let (secs, micros) = (in_day / 1_000_000, in_day % 1_000_000);
    let mut text = format!(
        "{}T{:02}:{:02}:{:02}",
        civil_date(days + PG_EPOCH_DAYS_FROM_UNIX),
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
    if micros != 0 {
        let fraction = format!(".{micros:06}");
        text.push_str(fraction.trim_end_matches('0'));
    }
    text.push_str(zone);
    Ok(Value::String(text))
}

fn date(raw: &[u8]) -> Result<Value, DecodeError> {
    let bytes: [u8; 4] = raw.try_into().map_err(|_| "bad date length")?;
    let days = i32::from_be_bytes(bytes);
    Ok(Value::String(match days {
        i32::MAX => "infinity".into(),
        i32::MIN => "-infinity".into(),
        d => civil_date(i64::from(d) + PG_EPOCH_DAYS_FROM_UNIX),
    }))
}

/// `YYYY-MM-DD` of a day count from 1970-01-01 (proleptic Gregorian; H. Hinnant's
/// `civil_from_days`). Years outside 0..=9999 get a sign, as ISO 8601's expanded form.
fn civil_date(days_from_unix: i64) -> String {
    let z = days_from_unix + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    if (0..=9999).contains(&year) {
        format!("{year:04}-{month:02}-{day:02}")
    } else {
        format!("{year:+}-{month:02}-{day:02}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric_raw(weight: i16, sign: u16, digits: &[u16]) -> Vec<u8> {
        let mut raw = Vec::new();
        raw.extend_from_slice(&(digits.len() as u16).to_be_bytes());
        raw.extend_from_slice(&weight.to_be_bytes());
        raw.extend_from_slice(&sign.to_be_bytes());
        raw.extend_from_slice(&0u16.to_be_bytes());
        for d in digits {
            raw.extend_from_slice(&d.to_be_bytes());
        }
        raw
    }

    #[test]
    fn numeric_decodes_to_the_nearest_f64() {
        let cases: &[(i16, u16, &[u16], f64)] = &[
            (1, 0, &[1, 2345, 6780], 12345.678),
            (-1, 0, &[5000], 0.5),
            (-2, 0, &[1000], 0.00001),
            (0, 0x4000, &[3, 2500], -3.25),
            (2, 0, &[1], 100_000_000.0),
            (0, 0, &[], 0.0),
        ];
        for &(weight, sign, digits, want) in cases {
            let got = numeric(&numeric_raw(weight, sign, digits)).expect("valid numeric");
            assert_eq!(got, Value::from(want), "{weight} {sign:#x} {digits:?}");
        }
        assert_eq!(
            numeric(&numeric_raw(0, 0xC000, &[])).expect("NaN"),
            Value::String("NaN".into())
        );
        assert!(numeric(&[0, 1, 0]).is_err(), "truncated");
        assert!(
            numeric(&numeric_raw(0, 0, &[10_000])).is_err(),
            "digit too big"
        );
        assert!(numeric(&numeric_raw(0, 0x1234, &[1])).is_err(), "bad sign");
    }

    #[test]
    fn dates_and_timestamps_format_as_rfc_3339() {
        assert_eq!(civil_date(0), "1970-01-01");
        assert_eq!(civil_date(PG_EPOCH_DAYS_FROM_UNIX), "2000-01-01");
        assert_eq!(civil_date(11_016), "2000-02-29");
        assert_eq!(civil_date(19_844), "2024-05-01");
        assert_eq!(civil_date(-1), "1969-12-31");
        assert_eq!(civil_date(2_932_897), "+10000-01-01");
        // 2024-05-01T12:00:00.25Z, in microseconds from 2000-01-01
        let us: i64 = (19_844 - PG_EPOCH_DAYS_FROM_UNIX) * 86_400_000_000 + 43_200_250_000;
        assert_eq!(
            timestamp(&us.to_be_bytes(), "Z").expect("valid"),
            Value::String("2024-05-01T12:00:00.25Z".into())
        );
        assert_eq!(
            timestamp(&(-1i64).to_be_bytes(), "").expect("valid"),
            Value::String("1999-12-31T23:59:59.999999".into())
        );
        assert_eq!(
            timestamp(&i64::MAX.to_be_bytes(), "Z").expect("valid"),
            Value::String("infinity".into())
        );
        assert!(timestamp(&[0, 1], "Z").is_err());
    }

    #[test]
    fn floats_without_json_form_become_strings() {
        assert_eq!(float(f64::NAN), Value::String("NaN".into()));
        assert_eq!(float(f64::NEG_INFINITY), Value::String("-Infinity".into()));
        assert_eq!(float(1.5), Value::from(1.5));
    }

    #[test]
    fn debug_hides_the_password() {
        assert_eq!(
            redact_password("postgres://u:secret@h:5432/db?password=other&x=1"),
            "postgres://u:***@h:5432/db?password=***&x=1"
        );
        assert_eq!(redact_password("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            redact_password("host=h password=secret dbname=db"),
            "host=h password=*** dbname=db"
        );
        let config = CatalogConfig {
            source: Some("postgres://u:secret@h/db".into()),
            ..CatalogConfig::default()
        };
        let debug = format!("{config:?}");
        assert!(!debug.contains("secret"), "{debug}");
    }

    #[test]
    fn config_defaults_and_unknown_keys() {
        let config: CatalogConfig =
            serde_json::from_value(serde_json::json!({"source": "postgres://h/db"}))
                .expect("valid config");
        assert_eq!(config.query, CatalogConfig::default().query);
        assert_eq!(config.pool_size, 8);
        config.validate().expect("valid");
        let err = serde_json::from_value::<CatalogConfig>(serde_json::json!({"sorce": "x"}))
            .expect_err("unknown key");
        assert!(err.to_string().contains("sorce"), "{err}");
    }

    #[test]
    fn validate_names_the_bad_key() {
        let bad = |c: CatalogConfig, key: &str| match c.validate() {
            Err(CatalogError::Invalid(m)) => assert!(m.contains(key), "{m}"),
            other => panic!("{key}: {other:?}"),
        };
        let base = CatalogConfig::default;
        bad(
            CatalogConfig {
                pool_size: 0,
                ..base()
            },
            "catalog.pool_size",
        );
        bad(
            CatalogConfig {
                timeout_ms: 0,
                ..base()
            },
            "catalog.timeout_ms",
        );
        bad(
            CatalogConfig {
                query: " ".into(),
                ..base()
            },
            "catalog.query",
        );
        bad(
            CatalogConfig {
                source: Some("postgres://h/db?sslmode=require".into()),
                ..base()
            },
            "sslmode",
        );
        bad(
            CatalogConfig {
                source: Some("postgres://h:notaport/db".into()),
                ..base()
            },
            "catalog.source",
        );
        bad(
            CatalogConfig {
                notify_channel: Some(String::new()),
                ..base()
            },
            "catalog.notify_channel",
        );
    }

    #[test]
    fn ids_that_cannot_match_are_not_bound() {
        assert!(IdKind::Int4.bind("42").is_some());
        assert!(IdKind::Int4.bind("sku-1").is_none());
        assert!(IdKind::Int2.bind("70000").is_none());
        assert!(IdKind::Uuid.bind("not-a-uuid").is_none());
        assert!(IdKind::Text.bind("a\0b").is_none());
        assert!(IdKind::Text.bind("'; DROP TABLE items; --").is_some());
    }

    #[tokio::test]
    async fn a_lagging_consumer_gets_all_instead_of_lost_changes() {
        let (tx, mut rx) = mpsc::channel(2);
        let (notes_tx, mut notes) = mpsc::unbounded_channel();
        for p in ["a", "b", "c", "d"] {
            notes_tx.send(p.to_string()).expect("open");
        }
        drop(notes_tx);
        let mut owe_all = false;
        assert_eq!(
            forward(&mut notes, &tx, &mut owe_all).await,
            Flow::ConnectionLost
        );
        assert!(owe_all, "c and d did not fit");
        assert_eq!(rx.recv().await, Some(CatalogChange::Item("a".into())));
        assert_eq!(rx.recv().await, Some(CatalogChange::Item("b".into())));
        // With room again, the All goes out before anything newer.
        let (notes_tx, mut notes) = mpsc::unbounded_channel();
        notes_tx.send("e".to_string()).expect("open");
        drop(notes_tx);
        assert_eq!(
            forward(&mut notes, &tx, &mut owe_all).await,
            Flow::ConnectionLost
        );
        assert!(!owe_all);
        assert_eq!(rx.recv().await, Some(CatalogChange::All));
        assert_eq!(rx.recv().await, Some(CatalogChange::Item("e".into())));
        drop(rx);
        let (_keep, mut notes) = mpsc::unbounded_channel::<String>();
        assert_eq!(
            forward(&mut notes, &tx, &mut owe_all).await,
            Flow::ConsumerGone
        );
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("items"), "\"items\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
