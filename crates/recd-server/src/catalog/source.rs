//! [`PgCatalog`]: a small connection pool that runs the configured query for one id (or a
//! pipelined batch) under the deadline and returns the row as a JSON object. The query is
//! prepared at connect, so a query that cannot work (a syntax error, an unknown table, a
//! column type with no JSON form) stops the server at start instead of failing every
//! request. The id is always a bound parameter, never spliced into SQL, and the
//! connections are read-only (`default_transaction_read_only`).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use serde_json::{Map, Value};
use tokio::sync::mpsc;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{NoTls, Row};

use super::config::{CatalogConfig, parse_source};
use super::decode::{row_to_json, supported};
use super::follow::{self, CatalogChange};
use super::sqlstate::{CatalogError, Phase, deadline, pg_error, pool_error};

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
        follow::listen(&self.listen_config, channel, self.timeout).await
    }
}

/// The query's answer for one id: no row, its row, or an error when it returned several.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_that_cannot_match_are_not_bound() {
        assert!(IdKind::Int4.bind("42").is_some());
        assert!(IdKind::Int4.bind("sku-1").is_none());
        assert!(IdKind::Int2.bind("70000").is_none());
        assert!(IdKind::Uuid.bind("not-a-uuid").is_none());
        assert!(IdKind::Text.bind("a\0b").is_none());
        assert!(IdKind::Text.bind("'; DROP TABLE items; --").is_some());
    }
}
