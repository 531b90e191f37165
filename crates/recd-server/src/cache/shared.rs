//! L2 in Redis: entries shared by every recd server on one Redis, fill locks across servers,
//! and the pub/sub channel that carries invalidations to the other servers' L1.
//!
//! Keys (under `{redis.prefix}cache:`):
//! - `recs:{user}:{shape}` / `item:{id}`: an entry with PX = its TTL. Its body records the
//!   user's (item's) mark and the lists' epoch it was computed under.
//! - `umark:{user}` / `imark:{id}`: counters moved by each invalidation (living as long as the
//!   longest entry, so an expired mark cannot revive an entry older than it); `epoch`: the
//!   counter of every list (moved by item writes); `depoch`: all items' details (the catalog source lost track). A read fetches entry, mark and epoch in one MGET and uses the entry
//!   only if both still match: an invalidation is one INCR, nothing has to be found and
//!   deleted, and a fill that raced with an invalidation writes an entry nobody will use.
//! - `lock:{...}`: `SET NX PX` with a random token, released by compare-and-delete.
//! - `ukeys:{user}`: a Set of the user's `recs:` keys (living as long as a mark), so that
//!   forgetting a user deletes exactly their entries: O(their keys), never a keyspace SCAN.
//! - channel `inv`: `{instance}\t{u|i|e}\t{id}\t{id}...`; each server ignores its own.

use std::sync::Arc;
use std::time::Duration;

use recd_store::redis::{Conn, Target, id_tag};
use redis::Script;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::entry::Entry;

/// Why an L2 operation failed; callers treat it as a miss and log it.
#[derive(Debug, thiserror::Error)]
#[error("redis cache: {0}")]
pub struct SharedError(String);

impl From<redis::RedisError> for SharedError {
    fn from(e: redis::RedisError) -> Self {
        SharedError(e.to_string())
    }
}

type SharedResult<T> = Result<T, SharedError>;

/// The keys one entry's validity is read from.
#[derive(Debug, Clone)]
pub struct Keys {
    /// The entry.
    pub data: String,
    /// The mark of its user or item.
    pub mark: String,
    /// The epoch it depends on.
    pub epoch: String,
    /// The set indexing the owner's entries, for erasure (a user's lists).
    pub index: Option<String>,
}

/// What a read found: the entry's body (if any) and the current mark and epoch.
#[derive(Debug, Default)]
pub struct Lookup {
    /// The stored body.
    pub body: Option<Vec<u8>>,
    /// The current mark of the user or item.
    pub mark: i64,
    /// The current epoch of every list (or of all items' details, for an item entry).
    pub epoch: i64,
}

/// What an invalidation message says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalidation {
    /// These users' lists.
    Users(Vec<String>),
    /// These items' details, and every list (recd's items were written or deleted).
    Items(Vec<String>),
    /// These items' details only (the catalog source changed, recd's items did not).
    Details(Vec<String>),
    /// Every item's details.
    AllDetails,
}

impl Invalidation {
    /// The wire form, tagged with the sending instance.
    pub fn encode(&self, instance: &str) -> String {
        let none = Vec::new();
        let (tag, ids) = match self {
            Invalidation::Users(ids) => ("u", ids),
            Invalidation::Items(ids) => ("i", ids),
            Invalidation::Details(ids) => ("d", ids),
            Invalidation::AllDetails => ("a", &none),
        };
        let mut out = format!("{instance}\t{tag}");
        for id in ids {
            out.push('\t');
            out.push_str(id);
        }
        out
    }

    /// Parses a message; `None` for one this instance sent or one it does not understand.
    /// Ids cannot contain tabs (control characters are rejected by the API).
    pub fn decode(msg: &str, instance: &str) -> Option<Invalidation> {
        let mut parts = msg.split('\t');
        if parts.next()? == instance {
            return None;
        }
        let tag = parts.next()?;
        let ids: Vec<String> = parts.map(str::to_string).collect();
        match tag {
            "u" => Some(Invalidation::Users(ids)),
            "i" => Some(Invalidation::Items(ids)),
            "d" => Some(Invalidation::Details(ids)),
            "a" => Some(Invalidation::AllDetails),
            _ => None,
        }
    }
}

/// The Redis tier.
#[derive(Clone)]
pub struct RedisTier {
    /// Every node the URL names, for pub/sub: on a cluster a classic `PUBLISH` reaches
    /// every node, so any live one will do (a dead seed must not silence invalidations).
    clients: Arc<Vec<redis::Client>>,
    /// The node [`RedisTier::subscribe`] tries first: the last one that answered.
    next_client: Arc<std::sync::atomic::AtomicUsize>,
    conn: Conn,
    prefix: String,
    /// A cluster: a user's keys share a hash tag, an item's too, the epochs another one,
    /// and no multi-key unit spans two of them.
    cluster: bool,
    /// Marks outlive every entry by this much.
    mark_ttl_ms: u64,
    unlock: Script,
}

impl std::fmt::Debug for RedisTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTier")
            .field("prefix", &self.prefix)
            .finish()
    }
}

/// Deletes the lock only if it still holds our token (a lock that expired and was taken by
/// another server must not be released by us).
const UNLOCK: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0";

impl RedisTier {
    /// Connects (lazily reconnecting afterwards, like the store's connection).
    pub async fn connect(
        url: &str,
        key_prefix: &str,
        max_ttl_ms: u64,
        connect_timeout: Duration,
        response_timeout: Duration,
    ) -> SharedResult<Self> {
        let target = Target::parse(url, false).map_err(|e| SharedError(e.to_string()))?;
        let clients = target
            .nodes()
            .into_iter()
            .map(redis::Client::open)
            .collect::<Result<Vec<_>, _>>()?;
        let conn = recd_store::redis::connect_url(url, false, connect_timeout, response_timeout)
            .await
            .map_err(|e| SharedError(e.to_string()))?;
        Ok(Self {
            clients: Arc::new(clients),
            next_client: Default::default(),
            cluster: conn.is_cluster(),
            conn,
            prefix: format!("{key_prefix}cache:"),
            mark_ttl_ms: max_ttl_ms + 1_000,
            unlock: Script::new(UNLOCK),
        })
    }

    fn key(&self, rest: &str) -> String {
        format!("{}{rest}", self.prefix)
    }

    /// A key of one user's (`kind` 'u') or item's ('i') entries: under the id's hash tag
    /// on a cluster.
    fn id_key(&self, kind: char, family: &str, id: &str, rest: &str) -> String {
        if self.cluster {
            format!("{}{}:{family}{id}{rest}", self.prefix, id_tag(kind, id))
        } else {
            format!("{}{family}{id}{rest}", self.prefix)
        }
    }

    /// A deployment-wide counter (`epoch`, `depoch`).
    fn global_key(&self, name: &str) -> String {
        if self.cluster {
            format!("{}{{g}}:{name}", self.prefix)
        } else {
            self.key(name)
        }
    }

    /// The pub/sub channel.
    pub fn channel(&self) -> String {
        self.key("inv")
    }

    /// The keys of a user's list for one request shape: the entry, the user's mark, and
    /// the epoch it depends on.
    pub fn recs_keys(&self, user: &str, shape: u128) -> Keys {
        Keys {
            data: self.id_key('u', "recs:", user, &format!(":{shape:032x}")),
            mark: self.id_key('u', "umark:", user, ""),
            epoch: self.global_key("epoch"),
            index: Some(self.user_index(user)),
        }
    }

    /// The keys of an item's details.
    pub fn item_keys(&self, id: &str) -> Keys {
        Keys {
            data: self.id_key('i', "item:", id, ""),
            mark: self.id_key('i', "imark:", id, ""),
            epoch: self.global_key("depoch"),
            index: None,
        }
    }

    /// The fill lock of a data key.
    pub fn lock_key(&self, data_key: &str) -> String {
        format!("{data_key}:lock")
    }

    /// Entry, mark and epoch in one round trip (on a cluster, one per slot, concurrent).
    pub async fn get(&self, keys: &Keys) -> SharedResult<Lookup> {
        let mut conn = self.conn.clone();
        let (body, mark, epoch): (Option<Vec<u8>>, Option<i64>, Option<i64>) = redis::cmd("MGET")
            .arg(&keys.data)
            .arg(&keys.mark)
            .arg(&keys.epoch)
            .query_async(&mut conn)
            .await?;
        Ok(Lookup {
            body,
            mark: mark.unwrap_or(0),
            epoch: epoch.unwrap_or(0),
        })
    }

    /// The set of a user's list keys.
    fn user_index(&self, user: &str) -> String {
        self.id_key('u', "ukeys:", user, "")
    }

    /// Stores a body for its TTL (and indexes it under its owner, if it has one).
    pub async fn set(&self, keys: &Keys, body: Vec<u8>, ttl_ms: u64) -> SharedResult<()> {
        let mut pipe = redis::pipe();
        pipe.pset_ex(&keys.data, body, ttl_ms.max(1)).ignore();
        if let Some(index) = &keys.index {
            pipe.sadd(index, &keys.data).ignore();
            pipe.pexpire(index, self.mark_ttl_ms as i64).ignore();
        }
        let mut conn = self.conn.clone();
        let () = pipe.query_async(&mut conn).await?;
        Ok(())
    }

    /// Tries to take the fill lock; `Some(token)` when taken.
    pub async fn lock(&self, lock_key: &str, ttl_ms: u64) -> SharedResult<Option<String>> {
        let token = uuid::Uuid::new_v4().to_string();
        let mut conn = self.conn.clone();
        let taken: Option<String> = redis::cmd("SET")
            .arg(lock_key)
            .arg(&token)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms)
            .query_async(&mut conn)
            .await?;
        Ok(taken.map(|_| token))
    }

    /// Releases a lock we hold.
    pub async fn unlock(&self, lock_key: &str, token: &str) -> SharedResult<()> {
        let mut conn = self.conn.clone();
        let _: i64 = self
            .unlock
            .key(lock_key)
            .arg(token)
            .invoke_async(&mut conn)
            .await?;
        Ok(())
    }

    /// Moves the marks (and, for item writes, the epoch) and tells the other servers.
    /// On a cluster: one pipeline per id (its mark's slot), then the epoch, then the
    /// message; a failure part way is an error (the caller does not acknowledge the write).
    pub async fn invalidate(&self, what: &Invalidation, instance: &str) -> SharedResult<()> {
        let mut pipe = redis::pipe();
        let none = Vec::new();
        let (ids, kind, mark) = match what {
            Invalidation::Users(ids) => (ids, 'u', "umark:"),
            Invalidation::Items(ids) | Invalidation::Details(ids) => (ids, 'i', "imark:"),
            Invalidation::AllDetails => (&none, 'i', "imark:"),
        };
        let mut conn = self.conn.clone();
        for id in ids {
            let key = self.id_key(kind, mark, id, "");
            pipe.incr(&key, 1).ignore();
            pipe.pexpire(&key, self.mark_ttl_ms as i64).ignore();
            if self.cluster {
                let () = pipe.query_async(&mut conn).await?;
                pipe = redis::pipe();
            }
        }
        let epoch = match what {
            Invalidation::Items(_) => Some("epoch"),
            Invalidation::AllDetails => Some("depoch"),
            _ => None,
        };
        if let Some(epoch) = epoch {
            pipe.incr(self.global_key(epoch), 1).ignore();
            if self.cluster {
                let () = pipe.query_async(&mut conn).await?;
                pipe = redis::pipe();
            }
        }
        pipe.publish(self.channel(), what.encode(instance)).ignore();
        let () = pipe.query_async(&mut conn).await?;
        Ok(())
    }

    /// Deletes every cached list of `user`: the members of their index set, then the set.
    /// Costs O(the user's entries), whatever the size of the keyspace.
    pub async fn erase_user(&self, user: &str) -> SharedResult<()> {
        let index = self.user_index(user);
        let mut conn = self.conn.clone();
        let keys: Vec<String> = redis::cmd("SMEMBERS")
            .arg(&index)
            .query_async(&mut conn)
            .await?;
        let _: i64 = redis::cmd("UNLINK")
            .arg(&keys)
            .arg(&index)
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    /// `used_memory` and `evicted_keys` from INFO.
    pub async fn memory(&self) -> SharedResult<(f64, f64)> {
        let mut conn = self.conn.clone();
        let info: String = redis::cmd("INFO")
            .arg("memory")
            .arg("stats")
            .query_async(&mut conn)
            .await?;
        let field = |name: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        Ok((field("used_memory"), field("evicted_keys")))
    }

    /// A fresh pub/sub connection subscribed to the invalidation channel, on the first
    /// node of the URL that answers (from the last one that did).
    pub async fn subscribe(&self) -> SharedResult<redis::aio::PubSub> {
        use std::sync::atomic::Ordering::Relaxed;
        let n = self.clients.len();
        let start = self.next_client.load(Relaxed);
        let mut failed = None;
        for i in 0..n {
            let at = (start + i) % n;
            let attempt = async {
                let mut pubsub = self.clients[at].get_async_pubsub().await?;
                pubsub.subscribe(self.channel()).await?;
                Ok::<_, redis::RedisError>(pubsub)
            };
            match attempt.await {
                Ok(pubsub) => {
                    self.next_client.store(at, Relaxed);
                    return Ok(pubsub);
                }
                Err(e) => failed = Some(e),
            }
        }
        Err(failed.map_or_else(|| SharedError("no node to subscribe on".into()), Into::into))
    }
}

/// An entry's L2 body: the value plus what decides whether it is still valid.
#[derive(Serialize, Deserialize)]
struct Body<V> {
    /// The owner's mark when it was computed.
    m: i64,
    /// The epoch when it was computed.
    e: i64,
    /// `Entry::created_ms`.
    c: i64,
    /// `Entry::ttl_ms`.
    t: u64,
    /// `Entry::compute_ms`.
    d: f64,
    /// The value.
    v: V,
}

/// An entry's L2 body (JSON: readable with redis-cli when debugging).
pub fn encode<V: Serialize>(entry: &Entry<V>, mark: i64, epoch: i64) -> Vec<u8> {
    let body = Body {
        m: mark,
        e: epoch,
        c: entry.created_ms,
        t: entry.ttl_ms,
        d: entry.compute_ms,
        v: &entry.value,
    };
    // Serializing our own types into a Vec cannot fail; an empty body reads as a miss.
    serde_json::to_vec(&body).unwrap_or_default()
}

/// The entry in a lookup, if it is still valid (its mark and its epoch match). A body that
/// does not parse (e.g. written by an older version) counts as a miss.
pub fn decode<V: DeserializeOwned>(lookup: &Lookup) -> Option<Entry<V>> {
    let body: Body<V> = serde_json::from_slice(lookup.body.as_deref()?).ok()?;
    if body.m != lookup.mark || body.e != lookup.epoch {
        return None;
    }
    Some(Entry {
        created_ms: body.c,
        ttl_ms: body.t,
        compute_ms: body.d,
        value: body.v,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_own_messages_are_ignored() {
        let m = Invalidation::Users(vec!["u 1".into(), "ü:{x}".into()]);
        let wire = m.encode("a");
        assert_eq!(Invalidation::decode(&wire, "b"), Some(m));
        assert_eq!(Invalidation::decode(&wire, "a"), None);
        let items = Invalidation::Items(vec!["sku-1".into()]);
        assert_eq!(Invalidation::decode(&items.encode("a"), "b"), Some(items));
        assert_eq!(
            Invalidation::decode(&Invalidation::AllDetails.encode("a"), "b"),
            Some(Invalidation::AllDetails)
        );
        assert_eq!(Invalidation::decode("x\tzz\t1", "b"), None);
    }

    #[test]
    fn bodies_are_valid_only_under_the_same_mark_and_epoch() {
        let entry = Entry {
            value: vec![1, 2],
            created_ms: 5,
            ttl_ms: 60_000,
            compute_ms: 1.5,
        };
        let body = encode(&entry, 3, 7);
        let at = |mark, epoch| Lookup {
            body: Some(body.clone()),
            mark,
            epoch,
        };
        let e: Entry<Vec<i32>> = decode(&at(3, 7)).unwrap();
        assert_eq!(e.value, vec![1, 2]);
        assert_eq!((e.created_ms, e.ttl_ms), (5, 60_000));
        assert!(
            decode::<Vec<i32>>(&at(4, 7)).is_none(),
            "user invalidated since"
        );
        assert!(
            decode::<Vec<i32>>(&at(3, 8)).is_none(),
            "lists invalidated since"
        );
        assert!(decode::<Vec<i32>>(&Lookup::default()).is_none());
        assert!(
            decode::<String>(&at(3, 7)).is_none(),
            "another shape is a miss"
        );
    }
}
