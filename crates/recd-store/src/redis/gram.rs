//! The fold-in's `YᵀY` on the Redis backend.
//!
//! Every write of item vectors (upserts, write-back, deletes) moves the counter
//! `{prefix}vectors:gen` after it (on a cluster under the deployment's own tag, one slot
//! for the whole deployment); the event path reads the counter with the user's state (in
//! the same `MULTI` on a single Redis, right after it on a cluster). Each server computes
//! `YᵀY` from the items' vectors (each shard's ids a page at a time, their vectors in one
//! pipelined round trip per page: O(items · k²) once per model) and keeps it while the
//! counter stays where it was read. The first fold-in of a server computes it before
//! answering (a computation cut short by the operation's deadline goes on where it
//! stopped at the next call); afterwards a moved counter recomputes it in the background
//! while events fold in with the previous one (during a write-back the vectors themselves
//! are half old, half new). The fold-in itself is recd-core's (`recd_core::foldin`);
//! nothing here is math.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::conn::Conn;
use super::error::{bad_reply, from_redis};
use super::schema::vector_from_bytes;
use super::shards::Shards;
use crate::StoreResult;
use parking_lot::Mutex;
use recd_core::Gram;

/// Ids per page of the computation.
const PAGE: usize = 1000;

/// A computation of `YᵀY` under way.
#[derive(Debug)]
struct Partial {
    /// The counter value it is for.
    generation: i64,
    /// The sum so far.
    gram: Gram,
    /// The shard being read (shards before it are summed).
    shard: usize,
    /// The last id of that shard read.
    after: Option<String>,
}

/// The `YᵀY` a server folds in with, and the counter value it was computed at.
#[derive(Debug, Default)]
pub(crate) struct GramCache {
    current: Mutex<Option<(i64, Arc<Gram>)>>,
    /// A computation under way (see [`Partial`]). A page that fails (a deadline on a busy
    /// Redis) loses nothing: the next call goes on from there, so that the computation
    /// ends however short each call's deadline.
    partial: tokio::sync::Mutex<Option<Partial>>,
    refreshing: AtomicBool,
}

impl GramCache {
    /// `YᵀY` for the counter value `generation` (see the module doc): the cached one when
    /// it matches, computed now when there is none, else the cached one while a
    /// background task computes the new one.
    pub(crate) async fn get(
        self: &Arc<Self>,
        conn: &Conn,
        shards: &Shards,
        dim: usize,
        generation: i64,
    ) -> StoreResult<Arc<Gram>> {
        let cached = self.current.lock().clone();
        match cached {
            Some((g, gram)) if g == generation => Ok(gram),
            Some((_, gram)) => {
                if !self.refreshing.swap(true, Ordering::AcqRel) {
                    let me = self.clone();
                    let (conn, shards) = (conn.clone(), shards.clone());
                    tokio::spawn(async move {
                        if let Err(e) = me.compute(conn, &shards, dim, generation).await {
                            tracing::warn!(error = %e, "fold-in: YᵀY not recomputed yet");
                        }
                        me.refreshing.store(false, Ordering::Release);
                    });
                }
                Ok(gram)
            }
            None => self.compute(conn.clone(), shards, dim, generation).await,
        }
    }

    /// Computes (or goes on computing) `YᵀY` at `generation` and keeps it.
    async fn compute(
        &self,
        mut conn: Conn,
        shards: &Shards,
        dim: usize,
        generation: i64,
    ) -> StoreResult<Arc<Gram>> {
        let mut partial = self.partial.lock().await;
        // Someone computed it while this call waited.
        if let Some((g, gram)) = self.current.lock().clone()
            && g >= generation
        {
            return Ok(gram);
        }
        if partial.as_ref().is_none_or(|p| p.generation != generation) {
            *partial = Some(Partial {
                generation,
                gram: Gram::new(dim),
                shard: 0,
                after: None,
            });
        }
        let Some(p) = partial.as_mut() else {
            return Err(crate::StoreError::Internal("no YᵀY under way".into()));
        };
        while let Some(keys) = shards.all().get(p.shard) {
            let ids = super::lex_range(
                conn.clone(),
                keys.ids().to_string(),
                p.after.as_deref(),
                PAGE,
            )
            .await?;
            if !ids.is_empty() {
                // One shard's keys: one slot on a cluster, so one pipeline.
                let mut pipe = redis::pipe();
                for id in &ids {
                    pipe.hget(keys.item(id), "vector");
                }
                let found: Vec<Option<Vec<u8>>> =
                    pipe.query_async(&mut conn).await.map_err(from_redis)?;
                for bytes in found.into_iter().flatten() {
                    let v =
                        vector_from_bytes(&bytes).ok_or_else(|| bad_reply("item vector bytes"))?;
                    p.gram.add(&v);
                }
            }
            if ids.len() < PAGE {
                p.shard += 1;
                p.after = None;
            } else {
                p.after = ids.last().cloned();
            }
        }
        let done = Arc::new(std::mem::replace(&mut p.gram, Gram::new(dim)));
        *partial = None;
        let mut current = self.current.lock();
        if current.as_ref().is_none_or(|(g, _)| *g <= generation) {
            *current = Some((generation, done.clone()));
        }
        Ok(done)
    }
}
