//! One connection type for a single Redis and for a Redis Cluster.
//!
//! [`Conn`] is a [`ConnectionManager`] (one multiplexed connection that reconnects by
//! itself) or a [`ClusterConnection`] (a multiplexed connection per node that follows
//! `MOVED`/`ASK` and refreshes the slot map by itself). Both carry the same commands, so
//! the backend's code is written once; what a cluster forbids (a `MULTI`, a script or a
//! pipeline whose keys span slots) the callers avoid by keeping every multi-key unit
//! inside one shard's hash tag (`super::shards`).
//!
//! A URL `redis+cluster://host:port,host:port,...` (or `[redis] cluster = true` with a
//! `redis://` URL) asks for a cluster; the hosts are seeds, any live one is enough.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{Cmd, Pipeline, RedisFuture, Value};

use super::RedisConfig;
use super::error::from_redis;
use crate::{StoreError, StoreResult};
use recd_core::ValidationError;

/// The URL scheme of a Redis Cluster.
pub const CLUSTER_SCHEME: &str = "redis+cluster://";

/// A connection to a single Redis or to a Redis Cluster; cheap to clone. The server's own
/// Redis state (L2 cache, rate limits, experiments) uses it too ([`connect_url`]).
#[derive(Clone)]
pub enum Conn {
    /// A single Redis.
    Single(ConnectionManager),
    /// A Redis Cluster.
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

impl Conn {
    /// Whether this is a cluster connection (multi-key units must then share a hash tag).
    pub fn is_cluster(&self) -> bool {
        matches!(self, Conn::Cluster(_))
    }

    /// Runs `cmd` on the master serving the slot of `key` (for keyless commands the
    /// cluster client would send to a random node, such as `FT.CREATE`, whose index
    /// name the search module routes like a key).
    /// A server's error reply is an `Err` here (a routed command returns it as a value).
    pub async fn on_key_master(&mut self, key: &str, cmd: &Cmd) -> redis::RedisResult<Value> {
        let reply = match self {
            Conn::Single(c) => cmd.query_async::<Value>(c).await,
            Conn::Cluster(c) => {
                let route = Route::with_key(key.as_bytes(), SlotAddr::Master);
                c.route_command(
                    cmd.clone(),
                    RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route)),
                )
                .await
            }
        };
        reply.and_then(Value::extract_error)
    }
}

/// Where to connect: one Redis, or the seed nodes of a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `redis://...` (or `rediss://`, `unix://`).
    Single(String),
    /// Seed node URLs (`redis://host:port`).
    Cluster(Vec<String>),
}

impl Target {
    /// Reads `url` (see the module doc); `cluster` forces a cluster for a `redis://` URL.
    pub fn parse(url: &str, cluster: bool) -> StoreResult<Target> {
        let bad = |why: &str| {
            StoreError::Invalid(ValidationError::new(format!(
                "bad redis url '{url}': {why}"
            )))
        };
        if let Some(rest) = url.strip_prefix(CLUSTER_SCHEME) {
            let nodes: Vec<String> = rest
                .split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(|n| format!("redis://{n}"))
                .collect();
            if nodes.is_empty() {
                return Err(bad("a cluster URL names at least one host:port"));
            }
            for n in &nodes {
                redis::Client::open(n.as_str()).map_err(|e| bad(&e.to_string()))?;
            }
            return Ok(Target::Cluster(nodes));
        }
        redis::Client::open(url).map_err(|e| bad(&e.to_string()))?;
        Ok(if cluster {
            Target::Cluster(vec![url.to_string()])
        } else {
            Target::Single(url.to_string())
        })
    }

    /// Whether this is a cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self, Target::Cluster(_))
    }

    /// The URL of one node: the Redis itself, or a cluster's first seed (a classic
    /// `PUBLISH` on a cluster reaches every node, so subscribing on one node hears all).
    pub fn first_node(&self) -> &str {
        match self {
            Target::Single(url) => url,
            Target::Cluster(nodes) => nodes.first().map_or("", String::as_str),
        }
    }

    /// The URL of every node named: the Redis itself, or a cluster's seeds.
    pub fn nodes(&self) -> Vec<&str> {
        match self {
            Target::Single(url) => vec![url.as_str()],
            Target::Cluster(nodes) => nodes.iter().map(String::as_str).collect(),
        }
    }

    /// One connection, within `config`'s timeouts.
    pub async fn connect(&self, config: &RedisConfig) -> StoreResult<Conn> {
        let connect = Duration::from_millis(config.connect_timeout_ms);
        let response = Duration::from_millis(config.response_timeout_ms);
        let deadline = Duration::from_millis(config.operation_timeout_ms);
        let what = match self {
            Target::Single(url) => url.clone(),
            Target::Cluster(nodes) => format!("{CLUSTER_SCHEME}{}", nodes.join(",")),
        };
        let made = async {
            match self {
                Target::Single(url) => {
                    let client = redis::Client::open(url.as_str()).map_err(from_redis)?;
                    let manager = ConnectionManagerConfig::new()
                        .set_connection_timeout(Some(connect))
                        .set_response_timeout(Some(response))
                        .set_number_of_retries(1)
                        .set_min_delay(Duration::from_millis(20))
                        .set_max_delay(Duration::from_millis(200));
                    ConnectionManager::new_with_config(client, manager)
                        .await
                        .map(Conn::Single)
                        .map_err(from_redis)
                }
                Target::Cluster(nodes) => {
                    // Retries follow MOVED/ASK and ride out a failover (the replica's
                    // promotion takes about the cluster's node timeout); the operation
                    // deadline bounds them all.
                    let client = ClusterClient::builder(nodes.iter().map(String::as_str))
                        .connection_timeout(connect)
                        .response_timeout(response)
                        .retries(6)
                        .min_retry_wait(20)
                        .max_retry_wait(400)
                        .build()
                        .map_err(from_redis)?;
                    client
                        .get_async_connection()
                        .await
                        .map(Conn::Cluster)
                        .map_err(from_redis)
                }
            }
        };
        tokio::time::timeout(deadline, made)
            .await
            .map_err(|_| StoreError::Unavailable(format!("redis at {what}: connect timed out")))?
    }
}

/// The masters of a cluster and the slot ranges each serves (`CLUSTER SLOTS`), ordered by
/// their first slot.
pub(crate) async fn masters(conn: &mut Conn) -> StoreResult<Vec<Vec<(u16, u16)>>> {
    let slots: Vec<Value> = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query_async(conn)
        .await
        .map_err(from_redis)?;
    let mut by_master: std::collections::BTreeMap<String, Vec<(u16, u16)>> = Default::default();
    for range in slots {
        let Value::Array(parts) = range else { continue };
        let (Some(from), Some(to), Some(Value::Array(master))) =
            (parts.first(), parts.get(1), parts.get(2))
        else {
            continue;
        };
        let (Ok(from), Ok(to)) = (
            redis::from_redis_value::<u16>(from.clone()),
            redis::from_redis_value::<u16>(to.clone()),
        ) else {
            continue;
        };
        // A master is its host:port (the node id is the third field only on newer Redis).
        let who: Vec<String> = master
            .iter()
            .take(2)
            .filter_map(|v| redis::from_redis_value::<String>(v.clone()).ok())
            .collect();
        by_master.entry(who.join(":")).or_default().push((from, to));
    }
    let mut out: Vec<Vec<(u16, u16)>> = by_master.into_values().collect();
    for ranges in &mut out {
        ranges.sort_unstable();
    }
    out.sort_by_key(|r| r.first().map_or(u16::MAX, |(from, _)| *from));
    Ok(out)
}

/// `url` in the form that names a cluster by itself (`redis+cluster://host:port`) when
/// `cluster` (`[redis] cluster`) says a `redis://` URL is a cluster's seed; else `url`.
pub fn effective_url(url: &str, cluster: bool) -> String {
    if !cluster || url.starts_with(CLUSTER_SCHEME) {
        return url.to_string();
    }
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    format!("{CLUSTER_SCHEME}{}", rest.trim_end_matches('/'))
}

/// A connection to `url` (`[redis] cluster` forcing a cluster) with these timeouts, for the
/// server's own Redis state.
pub async fn connect_url(
    url: &str,
    cluster: bool,
    connect_timeout: Duration,
    response_timeout: Duration,
) -> StoreResult<Conn> {
    let config = RedisConfig {
        connect_timeout_ms: connect_timeout.as_millis() as u64,
        response_timeout_ms: response_timeout.as_millis() as u64,
        operation_timeout_ms: (connect_timeout + response_timeout).as_millis() as u64 * 4,
        ..RedisConfig::default()
    };
    Target::parse(url, cluster)?.connect(&config).await
}
