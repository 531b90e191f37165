//! `popular(k, filter)`: the most popular items passing a filter, read from sorted sets.
//!
//! Popularity never lives in the indexed item hashes: any write there makes RediSearch
//! re-index the whole item, vector included (an event took ~100 ms that way). Instead:
//! - `{prefix}popularity`: every touched id → its log-domain popularity (ids that are not
//!   items yet included, so an item arriving after its events carries them);
//! - `{popby}{field}:{value}` ([`Keys::popular_by`]): per value of a tag or bool field, the
//!   touched *items* holding it, with the same scores. The event script, the item upsert and
//!   the item delete keep them in step, atomically.
//!
//! A query walks sorted sets from the top, fetches the items' fields (one pipelined `HMGET`
//! per round) and keeps what `Filter::matches` accepts — the reference semantics, so the
//! answers are the embedded backend's — until it has `k`:
//! - no filter: the main ZSET; usually one `ZREVRANGE` and one fetch;
//! - a conjunction holding a tag `any` or a bool condition (the "driver"): that condition's
//!   per-value ZSETs (the driver with the fewest entries when there are several), merged by
//!   score; every touched match is in them, and most of what they hold matches;
//! - anything else (ranges, text, `or`, `not` alone): the main ZSET while the walk looks
//!   short; when the match rate seen so far says it would be long (a selective filter), one
//!   `FT.SEARCH ... NOCONTENT` for every matching id, ranked by `ZMSCORE`, instead.
//!
//! Items nobody touched rank last (`-inf`, in any order); when the sorted sets run out
//! before `k`, they come from pages of an `FT.AGGREGATE` of the filter (which, unlike
//! `FT.SEARCH`, stops at the page instead of counting every match), minus the touched
//! ones. So a selective filter never misses a match that exists.

use std::collections::HashSet;

use recd_core::{FieldType, Filter};

use super::RedisStore;
use super::error::{bad_reply, from_redis};
use super::keys::Keys;
use super::query::{aggregate_keys_args, is_nothing, keys_args, simplify, split_ranges};
use super::schema::encode_tag;
use crate::{PopularHit, StoreResult};

/// A driver with more values than this is not used (that many cursors cost more than
/// walking the main ZSET).
const MAX_DRIVER_KEYS: usize = 16;
/// The most entries one `ZREVRANGE` reads.
const MAX_CHUNK: usize = 2000;
/// The index path takes filters matching at most this many items; beyond, the walk goes on.
const INDEX_PATH_CAP: usize = 20_000;
/// Walks projected shorter than this never switch to the index path.
const MIN_SWITCH: usize = 500;

/// A position in one sorted set, read from the top down.
struct Cursor {
    key: String,
    /// Entries read so far.
    offset: usize,
    /// The lowest score read so far: no unread entry scores higher.
    last: f64,
    done: bool,
}

/// What a walk ended with.
enum Walked {
    /// `k` items found.
    Enough,
    /// Every sorted set was read to its end.
    Exhausted,
    /// The walk would be long; the index path is cheaper.
    TooLong,
}

/// A walk over one or more sorted sets, merged by score, checking `filter` on each item.
struct Walk<'a> {
    store: &'a RedisStore,
    /// The shard walked.
    keys: &'a Keys,
    filter: &'a Filter,
    k: usize,
    cursors: Vec<Cursor>,
    /// Read but not yet checked (only with several cursors: entries above every cursor's
    /// `last` are final in order).
    pool: Vec<(f64, String)>,
    seen: HashSet<String>,
    walked: usize,
    /// Entries whose items were fetched and checked.
    checked: usize,
    /// Entries of the main ZSET (for the cost estimate), when a budget applies.
    main_card: Option<usize>,
    found: Vec<PopularHit>,
}

impl<'a> Walk<'a> {
    fn new(
        store: &'a RedisStore,
        shard: &'a Keys,
        filter: &'a Filter,
        k: usize,
        keys: Vec<String>,
    ) -> Self {
        Walk {
            store,
            keys: shard,
            filter,
            k,
            cursors: keys
                .into_iter()
                .map(|key| Cursor {
                    key,
                    offset: 0,
                    last: f64::INFINITY,
                    done: false,
                })
                .collect(),
            pool: Vec::new(),
            seen: HashSet::new(),
            walked: 0,
            checked: 0,
            main_card: None,
            found: Vec::new(),
        }
    }

    /// The share of checked entries expected to match: what was seen so far, or before
    /// anything was seen, all of them without a filter and most with one.
    fn rate(&self) -> f64 {
        if self.checked == 0 {
            if self.filter.is_all() { 1.0 } else { 0.8 }
        } else {
            (self.found.len() + 1) as f64 / (self.checked + 1) as f64
        }
    }

    /// How many entries should yield the `k - found` items still missing, with a margin.
    fn enough(&self) -> usize {
        let need = (self.k - self.found.len()) as f64;
        (need / self.rate() * 1.1).ceil() as usize + 2
    }

    /// Entries to read from each live cursor next.
    fn chunk(&self) -> usize {
        let live = self.cursors.iter().filter(|c| !c.done).count().max(1);
        (self.enough() / live).clamp(16.min(self.k + 8), MAX_CHUNK)
    }

    /// Reads and checks until `k` items are found or the sorted sets end; with `budget`,
    /// gives up as soon as the index path looks cheaper.
    async fn run(&mut self, budget: bool) -> StoreResult<Walked> {
        let keys = self.keys;
        loop {
            let chunk = self.chunk();
            let live: Vec<usize> = (0..self.cursors.len())
                .filter(|&i| !self.cursors[i].done)
                .collect();
            if live.is_empty() && self.pool.is_empty() {
                return Ok(Walked::Exhausted);
            }
            if !live.is_empty() {
                let mut pipe = redis::pipe();
                for &i in &live {
                    let c = &self.cursors[i];
                    pipe.zrevrange_withscores(
                        &c.key,
                        c.offset as isize,
                        (c.offset + chunk - 1) as isize,
                    );
                }
                let want_card = budget && self.main_card.is_none();
                if want_card {
                    pipe.zcard(keys.popularity());
                }
                let mut replies: Vec<redis::Value> = pipe
                    .query_async(&mut self.store.conn())
                    .await
                    .map_err(from_redis)?;
                if want_card {
                    let card = replies.pop().map(redis::from_redis_value::<usize>);
                    let card = card.transpose().map_err(|_| bad_reply("ZCARD"))?;
                    self.main_card = Some(card.unwrap_or(0));
                }
                for (&i, reply) in live.iter().zip(replies) {
                    let entries: Vec<(String, f64)> =
                        redis::from_redis_value(reply).map_err(|_| bad_reply("ZREVRANGE"))?;
                    let c = &mut self.cursors[i];
                    c.offset += entries.len();
                    c.done = entries.len() < chunk;
                    if let Some((_, s)) = entries.last() {
                        c.last = *s;
                    }
                    self.walked += entries.len();
                    for (id, s) in entries {
                        if self.seen.insert(id.clone()) {
                            self.pool.push((s, id));
                        }
                    }
                }
            }
            // Entries at or above every live cursor's lowest score are final in order.
            let threshold = self
                .cursors
                .iter()
                .filter(|c| !c.done)
                .map(|c| c.last)
                .fold(f64::NEG_INFINITY, f64::max);
            self.pool.sort_by(|a, b| b.0.total_cmp(&a.0));
            let ready = self
                .pool
                .iter()
                .take_while(|(s, _)| *s >= threshold)
                .count();
            let ready: Vec<(f64, String)> = self.pool.drain(..ready).collect();
            // Fetch what should suffice, then more only if it did not.
            let mut rest = ready.as_slice();
            while !rest.is_empty() {
                let (now, later) = rest.split_at(self.enough().min(rest.len()));
                rest = later;
                let ids: Vec<&str> = now.iter().map(|(_, id)| id.as_str()).collect();
                let items = self.store.fetch_items(self.keys, &ids).await?;
                self.checked += now.len();
                for ((score, _), item) in now.iter().zip(items) {
                    if let Some(item) = item.filter(|it| self.filter.matches(it)) {
                        self.found.push(PopularHit {
                            item,
                            log_score: *score,
                        });
                        if self.found.len() == self.k {
                            return Ok(Walked::Enough);
                        }
                    }
                }
            }
            if budget && self.too_long() {
                return Ok(Walked::TooLong);
            }
        }
    }

    /// Whether finishing the walk would cost more than the index path: an entry walked
    /// (`ZREVRANGE` + `HMGET`) costs Redis about twice what a matching id costs there
    /// (`FT.SEARCH NOCONTENT` + `ZMSCORE`), measured on 100k items.
    fn too_long(&self) -> bool {
        let rate = (self.found.len() + 1) as f64 / (self.walked + 1) as f64;
        let remaining = (self.k - self.found.len()) as f64 / rate;
        let matches = rate * self.main_card.unwrap_or(usize::MAX) as f64;
        matches <= INDEX_PATH_CAP as f64
            && remaining > MIN_SWITCH as f64
            && remaining > 2.0 * matches
    }
}

impl RedisStore {
    /// See the module doc; the items of the shard of `shard` only.
    pub(super) async fn popular_items(
        &self,
        shard: &Keys,
        k: usize,
        filter: &Filter,
    ) -> StoreResult<Vec<PopularHit>> {
        let filter = simplify(filter);
        if k == 0 || is_nothing(&filter) {
            return Ok(Vec::new());
        }
        let driver = self.driver(shard, &filter).await?;
        let budget = driver.is_none() && !filter.is_all();
        let keys = driver.unwrap_or_else(|| vec![shard.popularity()]);
        let mut walk = Walk::new(self, shard, &filter, k, keys);
        match walk.run(budget).await? {
            Walked::Enough => return Ok(walk.found),
            Walked::Exhausted => {}
            Walked::TooLong => match self.popular_by_index(shard, k, &filter).await? {
                Some(hits) => return Ok(hits),
                // Too many matches for the index path after all: walk on.
                None => {
                    if let Walked::Enough = walk.run(false).await? {
                        return Ok(walk.found);
                    }
                }
            },
        }
        let mut found = walk.found;
        self.fill_untouched(shard, k, &filter, &mut found).await?;
        Ok(found)
    }

    /// The per-value ZSETs of the filter's best driver condition (see the module doc), or
    /// `None` when it has none.
    async fn driver(&self, keys: &Keys, filter: &Filter) -> StoreResult<Option<Vec<String>>> {
        let schema = &self.inner.schema;
        let conjuncts: Vec<&Filter> = match filter {
            Filter::And(all) => all.iter().collect(),
            other => vec![other],
        };
        let mut drivers: Vec<Vec<String>> = Vec::new();
        for c in conjuncts {
            let mut zsets = match c {
                Filter::TagAny { field, values }
                    if schema.field(field) == Some(FieldType::Tag)
                        && values.len() <= MAX_DRIVER_KEYS =>
                {
                    values
                        .iter()
                        .map(|v| keys.popular_by(field, &encode_tag(v)))
                        .collect::<Vec<_>>()
                }
                Filter::Bool { field, value } if schema.field(field) == Some(FieldType::Bool) => {
                    vec![keys.popular_by(field, &value.to_string())]
                }
                _ => continue,
            };
            zsets.sort();
            zsets.dedup();
            drivers.push(zsets);
        }
        if drivers.len() <= 1 && drivers.first().is_none_or(|d| d.len() <= 1) {
            return Ok(drivers.pop());
        }
        // Several candidates: the one with the fewest entries.
        let mut pipe = redis::pipe();
        for key in drivers.iter().flatten() {
            pipe.zcard(key);
        }
        let cards: Vec<usize> = pipe
            .query_async(&mut self.conn())
            .await
            .map_err(from_redis)?;
        let mut cards = cards.into_iter();
        let sizes: Vec<usize> = drivers
            .iter()
            .map(|d| d.iter().map(|_| cards.next().unwrap_or(0)).sum())
            .collect();
        let best = (0..drivers.len()).min_by_key(|&i| sizes[i]).unwrap_or(0);
        Ok(Some(drivers.swap_remove(best)))
    }

    /// Every item matching `filter` from one `FT.SEARCH`, ranked by popularity; `None`
    /// when more than [`INDEX_PATH_CAP`] match.
    async fn popular_by_index(
        &self,
        keys: &Keys,
        k: usize,
        filter: &Filter,
    ) -> StoreResult<Option<Vec<PopularHit>>> {
        // Ranges cost RediSearch far more than they narrow; `matches` checks them below.
        let pre = split_ranges(filter).map_or_else(|| filter.clone(), |(pre, _)| pre);
        let args = keys_args(
            &self.alias(keys),
            &self.inner.config,
            &pre,
            0,
            INDEX_PATH_CAP,
        );
        let (total, found_keys) = self.search_keys(args, keys).await?;
        if total > found_keys.len() as u64 {
            return Ok(None);
        }
        let ids: Vec<&str> = found_keys
            .iter()
            .filter_map(|key| keys.any_item_id(key))
            .collect();
        let scores = self.scores(keys, &ids).await?;
        let mut ranked: Vec<(f64, &str)> = scores
            .into_iter()
            .map(|s| s.unwrap_or(f64::NEG_INFINITY))
            .zip(ids)
            .collect();
        ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut found = Vec::with_capacity(k);
        let step = k + k / 4 + 8;
        for chunk in ranked.chunks(step) {
            let ids: Vec<&str> = chunk.iter().map(|(_, id)| *id).collect();
            for ((score, _), item) in chunk.iter().zip(self.fetch_items(keys, &ids).await?) {
                if let Some(item) = item.filter(|it| filter.matches(it)) {
                    found.push(PopularHit {
                        item,
                        log_score: *score,
                    });
                    if found.len() == k {
                        return Ok(Some(found));
                    }
                }
            }
        }
        Ok(Some(found))
    }

    /// Tops `found` up to `k` with matching items nobody touched (`-inf`), once every
    /// touched match is in `found`.
    async fn fill_untouched(
        &self,
        keys: &Keys,
        k: usize,
        filter: &Filter,
        found: &mut Vec<PopularHit>,
    ) -> StoreResult<()> {
        let have: HashSet<String> = found.iter().map(|h| h.item.id.clone()).collect();
        let mut offset = 0;
        while found.len() < k {
            // The touched matches are all in `found` already: a page of `need` plus a few
            // usually does.
            let need = k - found.len();
            let page = need + need / 4 + 8 + have.len().min(need);
            let args =
                aggregate_keys_args(&self.alias(keys), &self.inner.config, filter, offset, page);
            let page_keys = self.aggregate_keys(args, keys).await?;
            let ids: Vec<&str> = page_keys
                .iter()
                .filter_map(|key| keys.any_item_id(key))
                .filter(|id| !have.contains(*id))
                .collect();
            let scores = self.scores(keys, &ids).await?;
            let untouched: Vec<&str> = ids
                .iter()
                .zip(scores)
                .filter(|(_, s)| s.is_none())
                .map(|(id, _)| *id)
                .collect();
            for item in self
                .fetch_items(keys, &untouched)
                .await?
                .into_iter()
                .flatten()
            {
                if found.len() < k && filter.matches(&item) {
                    found.push(PopularHit {
                        item,
                        log_score: f64::NEG_INFINITY,
                    });
                }
            }
            offset += page_keys.len();
            if page_keys.len() < page {
                break;
            }
        }
        Ok(())
    }

    /// The popularity of each id (`None`: never touched), in one `ZMSCORE`.
    async fn scores(&self, keys: &Keys, ids: &[&str]) -> StoreResult<Vec<Option<f64>>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        redis::cmd("ZMSCORE")
            .arg(keys.popularity())
            .arg(ids)
            .query_async(&mut self.conn())
            .await
            .map_err(from_redis)
    }
}
