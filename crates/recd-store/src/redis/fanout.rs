//! Reads over every shard (`super::shards`), and merging their answers.
//!
//! On a single Redis there is one shard and each helper is the plain read. On a cluster the
//! shards are read concurrently and any shard's failure fails the whole read: an answer is
//! complete or an error, never silently shorter.

use std::future::Future;

use futures_util::future::try_join_all;

use super::keys::Keys;
use super::{RedisStore, lex_range};
use crate::StoreResult;

impl RedisStore {
    /// `f` on every shard's keys, concurrently; the answers in shard order.
    pub(super) async fn each_shard<'a, F, Fut, T>(&'a self, f: F) -> StoreResult<Vec<T>>
    where
        F: FnMut(&'a Keys) -> Fut,
        Fut: Future<Output = StoreResult<T>> + 'a,
    {
        try_join_all(self.inner.shards.all().iter().map(f)).await
    }

    /// Up to `count` members after `after`, in byte order, of the ZSET `key` (all scores 0)
    /// of every shard: each shard's first `count`, merged, cut to `count` (so the first
    /// `count` of the union).
    pub(super) async fn lex_range_all(
        &self,
        key: impl Fn(&Keys) -> String,
        after: Option<&str>,
        count: usize,
    ) -> StoreResult<Vec<String>> {
        let mut all: Vec<String> = self
            .each_shard(|keys| lex_range(self.conn(), key(keys), after, count))
            .await?
            .into_iter()
            .flatten()
            .collect();
        if self.inner.shards.len() > 1 {
            all.sort_unstable();
            all.truncate(count);
        }
        Ok(all)
    }
}

/// Up to `k` entries taken from each list in turn (its first, then each one's second, ...):
/// a merge of per-shard rankings whose scores are not comparable across shards.
pub(super) fn interleave<T>(lists: Vec<Vec<T>>, k: usize) -> Vec<T> {
    if lists.len() == 1 {
        let mut only = lists.into_iter().flatten().collect::<Vec<_>>();
        only.truncate(k);
        return only;
    }
    let mut iters: Vec<_> = lists.into_iter().map(Vec::into_iter).collect();
    let mut out = Vec::with_capacity(k);
    while out.len() < k {
        let before = out.len();
        for it in &mut iters {
            if out.len() < k
                && let Some(x) = it.next()
            {
                out.push(x);
            }
        }
        if out.len() == before {
            break;
        }
    }
    out
}

/// The order of a stream entry id (`<ms>-<seq>`), `None` when it is not one.
pub(super) fn stream_order(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

/// The event-log position of entry `id` of shard `shard` (of `n`): the stream id on a
/// single Redis, `<shard>/<stream id>` on a cluster.
pub(super) fn position(shard: usize, id: &str, n: usize) -> String {
    if n == 1 {
        id.to_string()
    } else {
        format!("{shard}/{id}")
    }
}

/// The shard and stream id of a position made by [`position`]; `None` when it is not one.
pub(super) fn parse_position(p: &str, n: usize) -> Option<(usize, &str)> {
    let (shard, id) = if n == 1 {
        (0, p)
    } else {
        let (shard, id) = p.split_once('/')?;
        (shard.parse().ok()?, id)
    };
    (shard < n && stream_order(id).is_some()).then_some((shard, id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interleave_takes_each_list_in_turn() {
        let lists = vec![vec![1, 2, 3], vec![10], vec![20, 21]];
        assert_eq!(interleave(lists.clone(), 10), [1, 10, 20, 2, 21, 3]);
        assert_eq!(interleave(lists, 4), [1, 10, 20, 2]);
        assert_eq!(interleave(vec![vec![1, 2, 3]], 2), [1, 2]);
        assert!(interleave::<u8>(vec![vec![], vec![]], 3).is_empty());
    }

    #[test]
    fn positions_round_trip() {
        assert_eq!(position(0, "5-1", 1), "5-1");
        assert_eq!(parse_position("5-1", 1), Some((0, "5-1")));
        assert_eq!(position(2, "5-1", 3), "2/5-1");
        assert_eq!(parse_position("2/5-1", 3), Some((2, "5-1")));
        for bad in ["3/5-1", "5-1", "x/5-1", "1/5", "1/a-b", ""] {
            assert_eq!(parse_position(bad, 3), None, "{bad}");
        }
        assert_eq!(parse_position("0/5-1", 1), None);
        assert_eq!(stream_order("12-3"), Some((12, 3)));
        assert!(stream_order("9-9") < stream_order("10-0"));
    }
}
