//! Acknowledged writes: `WAIT` for replicas after a write (`[redis] wait_replicas`).
//!
//! Redis replicates asynchronously: a master acknowledges a write before any replica has
//! it, and a failover that promotes a replica loses what the replica had not received. With
//! `wait_replicas = n` recd sends `WAIT n timeout` to every master it wrote, over the very
//! connection that carried the write (a multiplexed connection is one Redis client, and
//! `WAIT` covers that client's latest write, so ours and any later one), and answers only
//! once `n` replicas hold it. Fewer within `wait_timeout_ms` is an error
//! ([`StoreError::Unavailable`], HTTP 503): the write is applied on the master but not known
//! to survive its loss, and the client learns it instead of getting a silent ack.
//!
//! `WAIT` does not make a write strongly consistent (a replica that acknowledged it may
//! still lose the election to one that did not, in rare partitions), but it closes the
//! common case: a master killed right after acknowledging.

use futures_util::future::try_join_all;

use super::RedisConfig;
use super::conn::Conn;
use super::error::bad_reply;
use crate::{StoreError, StoreResult};

/// `WAIT` on the master of each of `keys`' slots (one key per shard written), concurrently;
/// nothing when `config.wait_replicas` is 0.
pub(crate) async fn acknowledge<K: AsRef<str>>(
    conn: &Conn,
    config: &RedisConfig,
    keys: &[K],
) -> StoreResult<()> {
    if config.wait_replicas == 0 || keys.is_empty() {
        return Ok(());
    }
    try_join_all(keys.iter().map(|key| {
        let mut conn = conn.clone();
        async move { wait_one(&mut conn, config, key.as_ref()).await }
    }))
    .await?;
    Ok(())
}

async fn wait_one(conn: &mut Conn, config: &RedisConfig, key: &str) -> StoreResult<()> {
    let want = config.wait_replicas;
    let mut cmd = redis::cmd("WAIT");
    cmd.arg(want).arg(config.wait_timeout_ms);
    // Any failure of the WAIT itself (a failover under way: the slot's node is a replica
    // now, or unreachable) leaves the write applied but unconfirmed: unavailable.
    let reply = conn.on_key_master(key, &cmd).await.map_err(|e| {
        StoreError::Unavailable(format!(
            "the write is applied on the master, but waiting for its replicas failed: {e}"
        ))
    })?;
    let reached: i64 =
        redis::from_redis_value(reply).map_err(|_| bad_reply("WAIT did not answer a number"))?;
    check(reached, want, config.wait_timeout_ms)
}

/// Whether `reached` replicas are enough.
fn check(reached: i64, want: u32, timeout_ms: u64) -> StoreResult<()> {
    if reached >= i64::from(want) {
        return Ok(());
    }
    Err(StoreError::Unavailable(format!(
        "the write reached {reached} of the {want} replicas asked for (`[redis] wait_replicas`) \
         within {timeout_ms} ms: it is applied on the master but may be lost if that master \
         fails"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn too_few_replicas_is_unavailable() {
        assert!(check(1, 1, 100).is_ok());
        assert!(check(2, 1, 100).is_ok());
        let e = check(0, 1, 100).unwrap_err();
        assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}");
        assert!(e.to_string().contains("0 of the 1"), "{e}");
    }
}
