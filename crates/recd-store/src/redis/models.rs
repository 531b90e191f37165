//! The model registry of the redis backend (see `crate::models`): `{prefix}model:seq`
//! (INCR), `{prefix}models` (Hash: seq → record JSON), `{prefix}model:live` (the live
//! seq) and one Hash of chunks per version, `{prefix}model:{seq}` (field: chunk index).
//! Every key is named from the prefix and numbers only; listing reads one Hash (the
//! registry keeps a bounded number of versions), nothing is scanned.

use std::sync::LazyLock;

use redis::Script;

use super::conn::Conn;
use super::error::from_redis;
use super::keys::Keys;
use crate::models::{live_kept, unknown};
use crate::{ModelRecord, ModelRegistry, StoreResult};

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
/// Hash. ARGV: seq. Returns -1 for the live version, else how many records were deleted.
static DELETE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[2]) == ARGV[1] then return -1 end
redis.call('DEL', KEYS[3])
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
        .arg(seq)
        .invoke_async(conn)
        .await
        .map_err(from_redis)?;
    if done < 0 {
        return Err(live_kept(seq));
    }
    Ok(done > 0)
}
