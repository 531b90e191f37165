//! Shards whose slot moves between masters (resharding): where a shard's search index must
//! be before queries may use it, and the per-shard report of `recd admin reshard-check`.
//!
//! What RediSearch 2.10 does on a cluster (measured, 2026-12-03): a key that arrives by
//! `MIGRATE` (a `RESTORE`) is indexed at once by an index of the receiving node whose
//! `PREFIX` matches, and the leaving node's index drops it. `FT.CREATE` is routed like a
//! key (the index name's slot): a node that does not serve that slot answers `MOVED`, one
//! importing it accepts it after `ASKING`. And while a slot is `MIGRATING`, its source
//! answers every query naming an index of that slot with `ASK` (the index name is never a
//! key it holds), so the cluster client asks the importing node, which has only the keys
//! moved so far: a silently partial answer if it had an index to answer with.
//!
//! So a shard's queries go through an alias set only where the index is complete, and
//! named after the master that set it (`keys.alias_at(node id)`): a master aliases the
//! shard's index when it serves the slot, no move of the slot is under way, and its index
//! has indexed every key it found ([`ready_index`]). A query names the alias of the master
//! it last found serving the shard; any other node has no alias of that name, so a query
//! that a move sends elsewhere (`ASK` to the importing node, `MOVED` to the new owner)
//! finds none, looks again ([`ready_index`]), and answers `Unavailable` (503) until the
//! new owner's index is complete, then names the new owner's alias. A master that held the
//! shard before keeps its old index and alias, but under its own name, which queries no
//! longer use; a slot moving back to it is again 503 until the move ends. Complete answers
//! or an error, never a partial one. During a move the index is created on the importing
//! node too (`ASKING` + `FT.CREATE` on a connection of its own), so that it indexes the
//! keys as they arrive and is complete when the move ends. (On a failover the
//! promoted replica has the index and the alias already: the module replicates both.)

use redis::Value;
use serde::Serialize;

use super::conn::Conn;
use super::error::{bad_reply, from_redis, is_missing_index};
use super::keys::Keys;
use super::shards::slot;
use super::{RedisConfig, create_index};
use crate::{StoreError, StoreResult};
use recd_core::Schema;

/// Whether a shard's index may answer its queries.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum IndexState {
    /// The alias points at a complete index on the slot's master.
    Ready,
    /// The index on the slot's master is still indexing the keys it found (this share).
    Building(f64),
    /// The shard's slot is being migrated between masters.
    Moving,
}

impl IndexState {
    /// The error a query of the shard answers while the index is not ready.
    pub(crate) fn unavailable(&self, keys: &Keys) -> StoreError {
        let what = match self {
            IndexState::Ready => "was missing; retry".to_string(),
            IndexState::Building(share) => format!(
                "is being built on the master serving its slot ({:.0} % indexed)",
                share * 100.0
            ),
            IndexState::Moving => {
                "is not complete anywhere while the shard's slot moves between masters".into()
            }
        };
        StoreError::Unavailable(format!("the search index {} {what}", keys.index()))
    }
}

/// Makes `keys`' index ready on the master serving its slot (see the module doc): creates
/// it when missing and sets the alias once it has indexed every key there. Also the alias
/// queries should name: `keys.alias()` on a single Redis, the serving master's on a
/// cluster (set or not).
pub(crate) async fn ready_index(
    conn: &mut Conn,
    keys: &Keys,
    schema: &Schema,
    config: &RedisConfig,
    seed: &str,
) -> StoreResult<(IndexState, String)> {
    let alias = if conn.is_cluster() {
        let (nodes, serving) = serving_nodes(conn, &keys.index(), keys.ids()).await?;
        if !serving {
            // The client's slot map still names a master that no longer serves the shard:
            // a move just ended. Unavailable until the map catches up; the next query names
            // `keys.alias()`, which no cluster node has, so it looks again.
            return Ok((IndexState::Moving, keys.alias()));
        }
        let node = myself(&nodes)
            .and_then(|l| l.split_whitespace().next())
            .ok_or_else(|| bad_reply("CLUSTER NODES without the node's own line"))?;
        let alias = keys.alias_at(node);
        let slot = slot(&keys.index());
        if moving_in(&nodes, slot) {
            // The index on the importing master before (more of) the keys arrive: it
            // indexes them as they do, and is complete when the move ends.
            if let Some(addr) = importing_node(&nodes, slot)
                && let Err(e) = create_on_importing(seed, &addr, keys, schema, config).await
            {
                tracing::warn!(index = %keys.index(), node = %addr, error = %e, "no index on the importing master yet");
            }
            return Ok((IndexState::Moving, alias));
        }
        alias
    } else {
        keys.alias()
    };
    create_index(conn, keys, schema, config).await?;
    let info = index_info(conn, keys)
        .await?
        .ok_or_else(|| bad_reply("FT.INFO of an index just created"))?;
    if info.indexing {
        // The first scan walks the node's whole keyspace, and other deployments' keys
        // count too: an index that has every item of its shard already is complete (a key
        // written meanwhile is indexed on its write, whatever the scan).
        let items: u64 = redis::cmd("ZCARD")
            .arg(keys.ids())
            .query_async(conn)
            .await
            .map_err(from_redis)?;
        if info.num_docs < items {
            return Ok((IndexState::Building(info.percent_indexed), alias));
        }
    }
    conn.on_key_master(
        &alias,
        redis::cmd("FT.ALIASUPDATE").arg(&alias).arg(keys.index()),
    )
    .await
    .map_err(from_redis)?;
    Ok((IndexState::Ready, alias))
}

/// `CLUSTER NODES` as the master serving (or moving) the slot of `key` answers it, and
/// true; the last answer and false when only a node that no longer serves it answered.
///
/// `CLUSTER NODES` names no key, so nothing redirects it: it goes where the cluster
/// client's slot map says, and right after a move that map can still name the old owner
/// (the client followed a query's `MOVED` but refreshes the map in the background; seen
/// in the reshard conformance test). That node's `myself` would name the alias after the
/// wrong master. So a keyed command goes first (its `MOVED` makes the client refresh),
/// and the answer is asked again a few times while the map catches up.
async fn serving_nodes(conn: &mut Conn, key: &str, ids: &str) -> StoreResult<(String, bool)> {
    const ATTEMPTS: u32 = 5;
    let slot = slot(key);
    let mut attempt = 0;
    loop {
        let nodes = cluster_nodes(conn, key).await?;
        if serves(&nodes, slot) || moving_in(&nodes, slot) {
            return Ok((nodes, true));
        }
        attempt += 1;
        if attempt == ATTEMPTS {
            return Ok((nodes, false));
        }
        // Any keyed command of the slot: a stale map gets `MOVED`, which refreshes it.
        let _: i64 = redis::cmd("EXISTS")
            .arg(ids)
            .query_async(conn)
            .await
            .map_err(from_redis)?;
        tokio::time::sleep(std::time::Duration::from_millis(5 << attempt)).await;
    }
}

async fn cluster_nodes(conn: &mut Conn, key: &str) -> StoreResult<String> {
    let reply = conn
        .on_key_master(key, redis::cmd("CLUSTER").arg("NODES"))
        .await
        .map_err(from_redis)?;
    redis::from_redis_value(reply).map_err(|_| bad_reply("CLUSTER NODES is not text"))
}

/// Whether the node whose `CLUSTER NODES` answer this is serves `slot` (its own line's
/// slot ranges, `a-b` or `a`, hold it).
fn serves(nodes: &str, slot: u16) -> bool {
    myself(nodes).is_some_and(|line| {
        line.split_whitespace().skip(8).any(|range| {
            let (a, b) = range.split_once('-').unwrap_or((range, range));
            matches!((a.parse::<u16>(), b.parse::<u16>()), (Ok(a), Ok(b)) if a <= slot && slot <= b)
        })
    })
}

/// The `myself` line of a `CLUSTER NODES` answer.
fn myself(nodes: &str) -> Option<&str> {
    nodes.lines().find(|l| {
        l.split_whitespace()
            .nth(2)
            .is_some_and(|flags| flags.split(',').any(|f| f == "myself"))
    })
}

/// The `host:port` of the node that `slot` is migrating to, from the source's `CLUSTER
/// NODES` answer (`[slot->-<node id>]` on its own line, then that node's line).
fn importing_node(nodes: &str, slot: u16) -> Option<String> {
    let out = format!("[{slot}->-");
    let to = myself(nodes)?
        .split_whitespace()
        .skip(8)
        .find_map(|t| t.strip_prefix(&out)?.strip_suffix(']'))?;
    let line = nodes
        .lines()
        .find(|l| l.split_whitespace().next() == Some(to))?;
    let addr = line.split_whitespace().nth(1)?;
    Some(addr.split('@').next().unwrap_or(addr).to_string())
}

/// `FT.CREATE` on the node at `addr` (`host:port`) that is importing the index's slot: a
/// node accepts it for a slot it imports only after `ASKING`, on the same connection, right
/// before (the cluster client's own `ASK` handling sends them apart; measured to fail). A
/// connection of its own, with the seed URL's credentials and TLS.
async fn create_on_importing(
    seed: &str,
    addr: &str,
    keys: &Keys,
    schema: &Schema,
    config: &RedisConfig,
) -> redis::RedisResult<()> {
    use redis::{ConnectionAddr, IntoConnectionInfo};
    let bad = || redis::RedisError::from((redis::ErrorKind::InvalidClientConfig, "node address"));
    let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let info = seed.into_connection_info()?;
    let at = match info.addr() {
        ConnectionAddr::TcpTls {
            insecure,
            tls_params,
            ..
        } => ConnectionAddr::TcpTls {
            host: host.to_string(),
            port,
            insecure: *insecure,
            tls_params: tls_params.clone(),
        },
        _ => ConnectionAddr::Tcp(host.to_string(), port),
    };
    let client = redis::Client::open(info.set_addr(at))?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let index = keys.index();
    let args = super::schema::create_args(&index, keys.item_prefix(), schema, config);
    let mut pipe = redis::pipe();
    pipe.cmd("ASKING")
        .ignore()
        .cmd("FT.CREATE")
        .arg(&args)
        .ignore();
    match pipe.query_async::<()>(&mut conn).await {
        Err(e) if !e.to_string().contains("already exists") => Err(e),
        _ => {
            tracing::info!(index = %index, node = %addr, "created search index on the importing master");
            Ok(())
        }
    }
}

/// Whether `slot` is migrating away from, or being imported into, the node whose
/// `CLUSTER NODES` answer this is (`[slot->-node]` / `[slot-<-node]` on its own line).
fn moving_in(nodes: &str, slot: u16) -> bool {
    let (out, into) = (format!("[{slot}->-"), format!("[{slot}-<-"));
    myself(nodes).is_some_and(|line| {
        line.split_whitespace()
            .skip(8)
            .any(|t| t.starts_with(&out) || t.starts_with(&into))
    })
}

/// The `host:port` of the node whose `CLUSTER NODES` answer this is.
fn address(nodes: &str) -> Option<String> {
    let addr = myself(nodes)?.split_whitespace().nth(1)?;
    Some(addr.split('@').next().unwrap_or(addr).to_string())
}

/// What `FT.INFO` says of an index.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IndexInfo {
    /// Documents (item hashes) in the index.
    pub num_docs: u64,
    /// Whether it is still indexing the keys it found when created.
    pub indexing: bool,
    /// The share of those keys indexed so far (1 when done).
    pub percent_indexed: f64,
}

/// `FT.INFO` of `keys`' index on the master of its slot; `None` when it has none.
async fn index_info(conn: &mut Conn, keys: &Keys) -> StoreResult<Option<IndexInfo>> {
    let index = keys.index();
    match conn
        .on_key_master(&index, redis::cmd("FT.INFO").arg(&index))
        .await
    {
        Ok(v) => parse_info(v).map(Some),
        Err(e) if is_missing_index(&e) => Ok(None),
        Err(e) => Err(from_redis(e)),
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(n) => Some(n.to_string()),
        Value::Double(d) => Some(d.to_string()),
        _ => None,
    }
}

fn parse_info(v: Value) -> StoreResult<IndexInfo> {
    let Value::Array(items) = v else {
        return Err(bad_reply("FT.INFO is not an array"));
    };
    let field = |name: &str| {
        items
            .chunks(2)
            .find(|kv| text(&kv[0]).as_deref() == Some(name))
            .and_then(|kv| kv.get(1).and_then(text))
    };
    let num = |name: &str| field(name).and_then(|s| s.parse::<f64>().ok());
    Ok(IndexInfo {
        num_docs: num("num_docs").unwrap_or(0.0) as u64,
        indexing: num("indexing").is_some_and(|x| x != 0.0),
        percent_indexed: num("percent_indexed").unwrap_or(1.0),
    })
}

/// One shard as `recd admin reshard-check` reports it.
#[derive(Debug, Clone, Serialize)]
pub struct ShardReport {
    /// The shard's number.
    pub shard: usize,
    /// Its hash tag (empty on a single Redis).
    pub tag: String,
    /// Its slot (none on a single Redis).
    pub slot: Option<u16>,
    /// The master serving the slot (`host:port`; none on a single Redis).
    pub master: Option<String>,
    /// Whether the slot is migrating or importing on that master.
    pub moving: bool,
    /// Items in the shard (its id set).
    pub items: u64,
    /// The shard's index on that master; none when it has none.
    pub index: Option<IndexInfo>,
    /// Whether the alias queries go through exists there.
    pub aliased: bool,
    /// What needs attention (empty: healthy).
    pub problems: Vec<String>,
}

/// The report of shard `shard` (see [`ShardReport`]).
pub(crate) async fn report(
    conn: &mut Conn,
    shard: usize,
    tag: &str,
    keys: &Keys,
) -> StoreResult<ShardReport> {
    let cluster = conn.is_cluster();
    let index_name = keys.index();
    let mut stale = false;
    let (master, moving, alias) = if cluster {
        let (nodes, serving) = serving_nodes(conn, &index_name, keys.ids()).await?;
        stale = !serving;
        let node = myself(&nodes).and_then(|l| l.split_whitespace().next());
        (
            address(&nodes),
            moving_in(&nodes, slot(&index_name)),
            keys.alias_at(node.unwrap_or("")),
        )
    } else {
        (None, false, keys.alias())
    };
    let items: u64 = redis::cmd("ZCARD")
        .arg(keys.ids())
        .query_async(conn)
        .await
        .map_err(from_redis)?;
    // During a move the source answers ASK for the index (see the module doc): what it
    // reports then is the importing node's.
    let index = index_info(conn, keys).await?;
    let aliased = match conn
        .on_key_master(&alias, redis::cmd("FT.INFO").arg(&alias))
        .await
    {
        Ok(_) => true,
        Err(e) if is_missing_index(&e) => false,
        Err(e) => return Err(from_redis(e)),
    };
    let mut problems = Vec::new();
    if stale {
        problems.push(
            "the cluster client's slot map still names a master that no longer serves its \
             slot (a move just ended): run the check again"
                .into(),
        );
    }
    if moving {
        problems.push("its slot is moving: its reads answer 503 until the move ends".into());
    }
    match &index {
        None => problems.push("no index on the master serving its slot".into()),
        Some(i) if i.indexing && i.num_docs < items => problems.push(format!(
            "its index is still indexing ({:.0} %)",
            i.percent_indexed * 100.0
        )),
        Some(i) if i.num_docs != items && !moving => problems.push(format!(
            "its index holds {} documents for {items} items",
            i.num_docs
        )),
        Some(_) => {}
    }
    if !aliased && !moving {
        problems.push(
            "no alias on the master serving its slot: its reads answer 503 until a query (or a \
             server start) finds the index complete and sets it"
                .into(),
        );
    }
    Ok(ShardReport {
        shard,
        tag: tag.to_string(),
        slot: cluster.then(|| slot(&index_name)),
        master,
        moving,
        items,
        index,
        aliased,
        problems,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODES: &str = "\
07c3 127.0.0.1:30004@40004 slave e7d1 0 1426238317239 4 connected
e7d1 127.0.0.1:30001@40001 myself,master - 0 0 1 connected 0-5460 [93->-292f] [77-<-67ed]
292f 127.0.0.1:30002@40002 master - 0 1426238316232 2 connected 5461-10922 [93-<-e7d1]
";

    #[test]
    fn moving_slots_are_read_from_the_own_line() {
        assert!(moving_in(NODES, 93));
        assert!(moving_in(NODES, 77));
        assert!(!moving_in(NODES, 94));
        assert!(!moving_in(NODES, 9));
        assert_eq!(address(NODES).as_deref(), Some("127.0.0.1:30001"));
        assert!(!moving_in("", 93));
        assert!(serves(NODES, 0) && serves(NODES, 93) && serves(NODES, 5460));
        assert!(!serves(NODES, 5461) && !serves(NODES, 10000));
        let single = "e7d1 127.0.0.1:30001@40001 myself,master - 0 0 1 connected 4022 10407\n";
        assert!(serves(single, 4022) && serves(single, 10407));
        assert!(!serves(single, 4023) && !serves("", 0));
        assert_eq!(
            importing_node(NODES, 93).as_deref(),
            Some("127.0.0.1:30002")
        );
        assert_eq!(importing_node(NODES, 77), None);
    }

    #[test]
    fn ft_info_fields() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let v = Value::Array(vec![
            bulk("index_name"),
            bulk("x"),
            bulk("num_docs"),
            bulk("42"),
            bulk("indexing"),
            Value::Int(1),
            bulk("percent_indexed"),
            bulk("0.25"),
        ]);
        let info = parse_info(v).unwrap();
        assert_eq!(
            info,
            IndexInfo {
                num_docs: 42,
                indexing: true,
                percent_indexed: 0.25
            }
        );
    }
}
