//! The model registry of the redis backend (see `crate::models`): `{prefix}model:seq`
//! (INCR), `{prefix}models` (Hash: seq → record JSON), `{prefix}model:live` (the live
//! seq) and one Hash of chunks per version, `{prefix}model:{seq}` (field: chunk index), and
//! one of its transition table, `{prefix}model-next:{seq}` (field: item id, passed as an
//! argument, never spliced into a command or script).
//! Every key is named from the prefix and numbers only; listing reads one Hash (the
//! registry keeps a bounded number of versions), nothing is scanned.

use std::sync::LazyLock;

use redis::Script;

use super::conn::Conn;
use super::error::from_redis;
use super::keys::Keys;
use crate::models::{decode_next, encode_next, live_kept, unknown};
use crate::{ModelRecord, ModelRegistry, NextList, StoreResult};

/// Successor lists per `HSET` (each a few hundred bytes to a few kB): bounded commands,
/// so that Redis serves other clients between them.
const NEXT_BATCH: usize = 200;

/// Marks a recorded version live. KEYS: the records Hash, the live key. ARGV: seq.
/// Returns 0 when the version is not recorded.
static SET_LIVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('SET', KEYS[2], ARGV[1])
return 1
",
    )
});

/// Deletes a version unless it is live. KEYS: the records Hash, the live key, the chunks
/// Hash, the transitions Hash. ARGV: seq. Returns -1 for the live version, else how many
/// records were deleted.
static DELETE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[2]) == ARGV[1] then return -1 end
redis.call('DEL', KEYS[3], KEYS[4])
return redis.call('HDEL', KEYS[1], ARGV[1])
",
    )
});

pub(crate) async fn next_seq(conn: &mut Conn, keys: &Keys) -> StoreResult<u64> {
    redis::cmd("INCR")
        .arg(keys.model_seq())
        .query_async(conn)
        .await
        .map_err(from_redis)
}

pub(crate) async fn put_chunk(
    conn: &mut Conn,
    keys: &Keys,
    seq: u64,
    index: u32,
    bytes: Vec<u8>,
) -> StoreResult<()> {
    redis::cmd("HSET")
        .arg(keys.model_chunks(seq))
        .arg(index)
        .arg(bytes)
        .query_async::<()>(conn)
        .await
        .map_err(from_redis)
}

pub(crate) async fn chunk(
    conn: &mut Conn,
    keys: &Keys,
    seq: u64,
    index: u32,
) -> StoreResult<Option<Vec<u8>>> {
    redis::cmd("HGET")
        .arg(keys.model_chunks(seq))
        .arg(index)
        .query_async(conn)
        .await
        .map_err(from_redis)
}

pub(crate) async fn put(conn: &mut Conn, keys: &Keys, record: &ModelRecord) -> StoreResult<()> {
    redis::cmd("HSET")
        .arg(keys.models())
        .arg(record.seq)
        .arg(record.encode()?)
        .query_async::<()>(conn)
        .await
        .map_err(from_redis)
}

pub(crate) async fn registry(conn: &mut Conn, keys: &Keys) -> StoreResult<ModelRegistry> {
    let (records, live): (Vec<Vec<u8>>, Option<u64>) = redis::pipe()
        .cmd("HVALS")
        .arg(keys.models())
        .cmd("GET")
        .arg(keys.model_live())
        .query_async(conn)
        .await
        .map_err(from_redis)?;
    let mut models = records
        .iter()
        .map(|r| ModelRecord::decode(r))
        .collect::<StoreResult<Vec<_>>>()?;
    models.sort_by_key(|m| m.seq);
    Ok(ModelRegistry { models, live })
}

pub(crate) async fn set_live(conn: &mut Conn, keys: &Keys, seq: u64) -> StoreResult<()> {
    let done: i64 = SET_LIVE
        .key(keys.models())
        .key(keys.model_live())
        .arg(seq)
        .invoke_async(conn)
        .await
        .map_err(from_redis)?;
    if done == 0 {
        return Err(unknown(seq));
    }
    Ok(())
}

pub(crate) async fn delete(conn: &mut Conn, keys: &Keys, seq: u64) -> StoreResult<bool> {
    let done: i64 = DELETE
        .key(keys.models())
        .key(keys.model_live())
        .key(keys.model_chunks(seq))
        .key(keys.model_next(seq))
        .arg(seq)
        .invoke_async(conn)
        .await
        .map_err(from_redis)?;
    if done < 0 {
        return Err(live_kept(seq));
    }
    Ok(done > 0)
}

pub(crate) async fn put_next(
    conn: &mut Conn,
    keys: &Keys,
    seq: u64,
    lists: &[NextList],
) -> StoreResult<()> {
    for batch in lists.chunks(NEXT_BATCH) {
        let mut cmd = redis::cmd("HSET");
        cmd.arg(keys.model_next(seq));
        for (item, list) in batch {
            cmd.arg(item).arg(encode_next(list)?);
        }
        cmd.query_async::<()>(conn).await.map_err(from_redis)?;
    }
    Ok(())
}

/// The live version's lists of `items`: its seq, then one `HMGET` (a version changes
/// rarely; the two reads may straddle an activation, which at worst serves the previous
/// table once).
pub(crate) async fn live_next(
    conn: &mut Conn,
    keys: &Keys,
    items: &[String],
) -> StoreResult<Vec<Vec<(String, f32)>>> {
    if items.is_empty() {
        return Ok(Vec::new());
    }
    let live: Option<u64> = redis::cmd("GET")
        .arg(keys.model_live())
        .query_async(conn)
        .await
        .map_err(from_redis)?;
    let Some(seq) = live else {
        return Ok(vec![Vec::new(); items.len()]);
    };
    let raw: Vec<Option<Vec<u8>>> = redis::cmd("HMGET")
        .arg(keys.model_next(seq))
        .arg(items)
        .query_async(conn)
        .await
        .map_err(from_redis)?;
    raw.into_iter()
        .map(|v| v.map_or_else(|| Ok(Vec::new()), |b| decode_next(&b)))
        .collect()
}
