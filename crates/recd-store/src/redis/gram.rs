//! The fold-in's `YᵀY` on the Redis backend.
//!
//! Every write of item vectors (upserts, write-back, deletes) moves the counter
//! `{prefix}vectors:gen` after it; the event path reads the counter in the same `MULTI` as
//! the user's state. Each server computes `YᵀY` from the items' vectors (the ids a page at
//! a time, their vectors in one pipelined round trip per page: O(items · k²) once per
//! model) and keeps it while the counter stays where it was read. The first fold-in of a
//! server computes it before answering; afterwards a moved counter recomputes it in the
//! background while events fold in with the previous one (during a write-back the vectors
//! themselves are half old, half new). The fold-in itself is recd-core's
//! (`recd_core::foldin`); nothing here is math.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;
use recd_core::Gram;
use redis::aio::ConnectionManager;

use super::error::{bad_reply, from_redis};
use super::keys::Keys;
use super::schema::vector_from_bytes;
use crate::StoreResult;

/// Ids per page of the computation.
const PAGE: usize = 1000;

/// The `YᵀY` a server folds in with, and the counter value it was computed at.
#[derive(Debug, Default)]
pub(crate) struct GramCache {
    current: Mutex<Option<(i64, Arc<Gram>)>>,
    refreshing: Arc<AtomicBool>,
}

impl GramCache {
    /// `YᵀY` for the counter value `generation` (see the module doc): the cached one when
    /// it matches, computed now when there is none, else the cached one while a
    /// background task computes the new one.
    pub(crate) async fn get(
        self: &Arc<Self>,
        conn: &ConnectionManager,
        keys: &Keys,
        dim: usize,
        generation: i64,
    ) -> StoreResult<Arc<Gram>> {
        let cached = self.current.lock().clone();
        match cached {
            Some((g, gram)) if g == generation => Ok(gram),
            Some((_, gram)) => {
                if !self.refreshing.swap(true, Ordering::AcqRel) {
                    let me = self.clone();
                    let (conn, keys) = (conn.clone(), keys.clone());
                    tokio::spawn(async move {
                        match compute(conn, &keys, dim).await {
                            Ok(fresh) => me.store(generation, Arc::new(fresh)),
                            Err(e) => tracing::warn!(error = %e, "fold-in: YᵀY not recomputed"),
                        }
                        me.refreshing.store(false, Ordering::Release);
                    });
                }
                Ok(gram)
            }
            None => {
                let fresh = Arc::new(compute(conn.clone(), keys, dim).await?);
                self.store(generation, fresh.clone());
                Ok(fresh)
            }
        }
    }

    /// Keeps `gram`, unless one of a later counter value is there already.
    fn store(&self, generation: i64, gram: Arc<Gram>) {
        let mut current = self.current.lock();
        if current.as_ref().is_none_or(|(g, _)| *g <= generation) {
            *current = Some((generation, gram));
        }
    }
}

/// `YᵀY` of every item's vector, read a page of ids at a time.
async fn compute(mut conn: ConnectionManager, keys: &Keys, dim: usize) -> StoreResult<Gram> {
    let mut gram = Gram::new(dim);
    let mut after: Option<String> = None;
    loop {
        let ids = super::lex_range(conn.clone(), keys.ids(), after.as_deref(), PAGE).await?;
        if ids.is_empty() {
            break;
        }
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.hget(keys.item(id), "vector");
        }
        let found: Vec<Option<Vec<u8>>> = pipe.query_async(&mut conn).await.map_err(from_redis)?;
        for bytes in found.into_iter().flatten() {
            let v = vector_from_bytes(&bytes).ok_or_else(|| bad_reply("item vector bytes"))?;
            gram.add(&v);
        }
        if ids.len() < PAGE {
            break;
        }
        after = ids.last().cloned();
    }
    Ok(gram)
}
