//! Users: state in Redis, changed only through `UserState::apply`.
//!
//! Keys (see [`super::keys`]): `user:{id}` Hash (counters, `last_event_ms`, `active_ms`,
//! the session vector as `session_sum` FLOAT32 bytes + `session_weight` +
//! `session_updated_ms`, the long-term vector `long_term`, the fold-in's weights of the
//! recent items `recent_weights` and the part of them that came after the long-term vector
//! `recent_fresh` (FLOAT32 bytes, in the order of `recent:{id}`) and its
//! vector `fold_vector` (FLOAT32 bytes, empty for none), the exclusion set `excluded`
//! as little-endian u64 item keys oldest first, the purchased list `purchased_list` as
//! ids joined by `\n` (ids never hold control characters), and a `version`),
//! `recent:{id}` List (most recent first), `user-events:{id}` List of the user's stream
//! entry ids. Every write of a user sets the keys' `PEXPIRE` to the session TTL (when
//! there is one), so an inactive user's keys go by themselves.
//!
//! Older deployments kept purchases in a `purchased:{id}` Set and had no exclusion set:
//! a hash without `purchased_list` is read with that Set as its purchases and
//! exclusions (as the embedded store upgrades its rows), and the next write of the user
//! stores the new fields and deletes the Set.
//!
//! Applying events is an optimistic read-modify-write: one `MULTI` reads the state, its
//! version and the items' vectors (a consistent snapshot, one round trip); Rust runs
//! `UserState::apply` — the single definition of an event's effect, so both backends agree
//! exactly; the [`APPLY_USER`] script writes the result back only if the version did not
//! move, together with the event log entries and the popularity increments (sorted sets
//! only: no indexed hash is written, so nothing is re-indexed). On a conflict it starts
//! again from a fresh read. No update is lost and no math is duplicated in Lua.
//!
//! Under the fold-in rule the write also needs the vectors of the user's recent items:
//! after the read, one pipelined `HGET` (per shard on a cluster) of those it does not have yet (at most
//! `recent_capacity`), then `UserState::refold` with the server's `YᵀY`
//! ([`super::gram`]). Item vectors are not part of the user's version: a vector written
//! meanwhile is the write-back's, whose session rebuild refolds the user afterwards.

use std::collections::BTreeMap;
use std::time::Duration;

use recd_core::{
    CompactString, Counters, Event, EventType, ExcludedItems, FoldModel, FoldState, SessionParams,
    SessionVector, UpdateRule, UserState,
};

use super::conn::Conn;
use super::durable;
use super::error::{bad_reply, from_redis};
use super::keys::Keys;
use super::reply::{bytes, hash_reply, strings_reply};
use super::schema::{vector_bytes, vector_from_bytes};
use super::scripts::{APPLY_USER, BUMP_POPULARITY, DELETE_USER, SET_SESSION};
use super::shards::Shards;
use crate::once::Mark;
use crate::{ModelSettings, StoreError, StoreResult};

/// The user hash field of the bulk run mark (see `crate::once`).
const BULK_MARK: &str = "bulk_mark";

/// How often a conflicting write is retried before giving up with `Unavailable`.
const MAX_ATTEMPTS: u32 = 200;

/// A user's state as read, with the version it was read at.
struct Snapshot {
    state: Option<UserState>,
    version: u64,
    vectors: BTreeMap<String, Vec<f32>>,
    /// How far a bulk run is applied to the user (`bulk_mark`; see `crate::once`).
    mark: Option<Mark>,
    /// The item vectors' counter (see [`super::gram`]), when asked for.
    vectors_gen: i64,
}

/// The exclusion set as hash bytes: little-endian u64 keys, oldest first.
fn excluded_bytes(excluded: &ExcludedItems) -> Vec<u8> {
    excluded
        .keys()
        .iter()
        .flat_map(|k| k.to_le_bytes())
        .collect()
}

fn excluded_from_bytes(b: &[u8]) -> StoreResult<ExcludedItems> {
    if !b.len().is_multiple_of(8) {
        return Err(bad_reply("user exclusion bytes"));
    }
    Ok(ExcludedItems::from_keys(
        b.chunks_exact(8)
            .map(|c| {
                let mut k = [0u8; 8];
                k.copy_from_slice(c);
                u64::from_le_bytes(k)
            })
            .collect(),
    ))
}

/// Decodes the user hash + recent + the legacy purchased Set; `None` when the hash does
/// not exist.
fn decode_state(
    hash: &BTreeMap<String, Vec<u8>>,
    recent: Vec<String>,
    legacy_purchased: Vec<String>,
) -> StoreResult<Option<(UserState, u64)>> {
    if hash.is_empty() {
        return Ok(None);
    }
    let text = |f: &str| hash.get(f).and_then(|v| std::str::from_utf8(v).ok());
    let int = |f: &str| -> StoreResult<u64> {
        text(f).map_or(Ok(0), |t| {
            t.parse()
                .map_err(|_| bad_reply("user counter is not an integer"))
        })
    };
    let float = |f: &str| -> StoreResult<f64> {
        text(f).map_or(Ok(0.0), |t| {
            t.parse()
                .map_err(|_| bad_reply("user field is not a number"))
        })
    };
    let ms = |f: &str| -> StoreResult<i64> {
        text(f).map_or(Ok(0), |t| {
            t.parse()
                .map_err(|_| bad_reply("user timestamp is not an integer"))
        })
    };
    let vector = |f: &str| -> StoreResult<Option<Vec<f32>>> {
        hash.get(f)
            .map(|b| vector_from_bytes(b).ok_or_else(|| bad_reply("user vector bytes")))
            .transpose()
    };
    let session = match vector("session_sum")? {
        Some(sum) => Some(SessionVector {
            sum,
            weight: float("session_weight")?,
            updated_ms: ms("session_updated_ms")?,
        }),
        None => None,
    };
    let (purchased, excluded) = match hash.get("purchased_list") {
        Some(list) => {
            let list = std::str::from_utf8(list).map_err(|_| bad_reply("purchased list"))?;
            let purchased = list
                .split('\n')
                .filter(|s| !s.is_empty())
                .map(CompactString::from)
                .collect();
            let excluded = match hash.get("excluded") {
                Some(b) => excluded_from_bytes(b)?,
                None => ExcludedItems::default(),
            };
            (purchased, excluded)
        }
        None => {
            // Written before exclusion sets: the purchases were the exact exclusions.
            let mut legacy = legacy_purchased;
            legacy.sort_unstable();
            let mut excluded = ExcludedItems::default();
            let capacity = SessionParams::default().excluded_capacity;
            for id in &legacy {
                excluded.insert(id, capacity);
            }
            (
                legacy.into_iter().map(CompactString::from).collect(),
                excluded,
            )
        }
    };
    let fold = FoldState {
        weights: vector("recent_weights")?.unwrap_or_default(),
        fresh: vector("recent_fresh")?.unwrap_or_default(),
        vector: vector("fold_vector")?.filter(|v| !v.is_empty()),
        hints: Default::default(),
        due: 0,
    };
    let state = UserState {
        fold,
        long_term: vector("long_term")?,
        session,
        counters: Counters {
            view: int("view")?,
            click: int("click")?,
            dwell: int("dwell")?,
            add_to_cart: int("add_to_cart")?,
            purchase: int("purchase")?,
            rating: int("rating")?,
            dislike: int("dislike")?,
            hide: int("hide")?,
            skip: int("skip")?,
            dwell_seconds: float("dwell_seconds")?,
        },
        recent: recent.into_iter().map(CompactString::from).collect(),
        purchased,
        excluded,
        last_event_ms: ms("last_event_ms")?,
        active_ms: ms("active_ms")?,
    };
    Ok(Some((state, int("version")?)))
}

/// The hash fields `apply` may change (never `long_term`, which only training writes).
fn state_fields(state: &UserState) -> Vec<(&'static str, Vec<u8>)> {
    let c = &state.counters;
    let mut out = vec![
        ("view", c.view.to_string().into_bytes()),
        ("click", c.click.to_string().into_bytes()),
        ("dwell", c.dwell.to_string().into_bytes()),
        ("add_to_cart", c.add_to_cart.to_string().into_bytes()),
        ("purchase", c.purchase.to_string().into_bytes()),
        ("rating", c.rating.to_string().into_bytes()),
        ("dislike", c.dislike.to_string().into_bytes()),
        ("hide", c.hide.to_string().into_bytes()),
        ("skip", c.skip.to_string().into_bytes()),
        ("dwell_seconds", c.dwell_seconds.to_string().into_bytes()),
        (
            "last_event_ms",
            state.last_event_ms.to_string().into_bytes(),
        ),
        ("active_ms", state.active_ms.to_string().into_bytes()),
        ("excluded", excluded_bytes(&state.excluded)),
        ("purchased_list", state.purchased.join("\n").into_bytes()),
    ];
    if let Some(s) = &state.session {
        out.push(("session_sum", vector_bytes(&s.sum)));
        out.push(("session_weight", s.weight.to_string().into_bytes()));
        out.push(("session_updated_ms", s.updated_ms.to_string().into_bytes()));
    }
    out.push(("recent_weights", vector_bytes(&state.fold.weights)));
    out.push(("recent_fresh", vector_bytes(&state.fold.fresh)));
    // Always written (empty for none), so that a vector that is gone is overwritten.
    out.push((
        "fold_vector",
        state
            .fold
            .vector
            .as_deref()
            .map(vector_bytes)
            .unwrap_or_default(),
    ));
    out
}

/// The stream entry of an event.
fn event_fields(e: &Event) -> Vec<(&'static str, String)> {
    let mut out = vec![
        ("user", e.user_id.clone()),
        ("item", e.item_id.clone()),
        ("type", e.kind.as_str().to_string()),
        ("ts", e.timestamp_ms.to_string()),
    ];
    if let Some(v) = e.value {
        out.push(("value", v.to_string()));
    }
    if let Some(r) = &e.recommendation_id {
        out.push(("rec", r.clone()));
    }
    out
}

/// Parses a stream entry back into an event.
pub(crate) fn event_from_fields(fields: &BTreeMap<String, String>) -> StoreResult<Event> {
    let get = |f: &str| {
        fields
            .get(f)
            .ok_or_else(|| bad_reply("event entry lacks a field"))
    };
    let kind = EventType::parse(get("type")?).ok_or_else(|| bad_reply("event type"))?;
    let value = match fields.get("value") {
        Some(v) => Some(v.parse().map_err(|_| bad_reply("event value"))?),
        None => None,
    };
    Ok(Event {
        user_id: get("user")?.clone(),
        item_id: get("item")?.clone(),
        kind,
        value,
        timestamp_ms: get("ts")?.parse().map_err(|_| bad_reply("event ts"))?,
        recommendation_id: fields.get("rec").cloned(),
    })
}

/// Reads a user's state (and the vectors of `items`) in one `MULTI`, with the item
/// vectors' counter at `gen_key` when asked for (else 0). On a cluster the items live in
/// other shards and the counter under the deployment's tag: they are read after, the
/// counter first, then the vectors one pipeline per shard (neither is part of the user's
/// compare-and-set either way).
async fn read(
    conn: &mut Conn,
    shards: &Shards,
    user: &str,
    items: &[&str],
    gen_key: Option<&str>,
) -> StoreResult<Snapshot> {
    let keys = shards.of(user);
    let together = shards.len() == 1;
    let mut pipe = redis::pipe();
    pipe.atomic()
        .hgetall(keys.user(user))
        .lrange(keys.recent(user), 0, -1)
        .smembers(keys.purchased(user));
    if together {
        for item in items {
            pipe.hget(keys.item(item), "vector");
        }
    }
    if together && let Some(key) = gen_key {
        pipe.get(key);
    }
    let values: Vec<redis::Value> = pipe.query_async(conn).await.map_err(from_redis)?;
    let mut values = values.into_iter();
    let mut next = || {
        values
            .next()
            .ok_or_else(|| bad_reply("MULTI reply too short"))
    };
    let hash = hash_reply(next()?)?;
    let recent = strings_reply(next()?)?;
    let purchased = strings_reply(next()?)?;
    let mut vectors = BTreeMap::new();
    let vectors_gen;
    if together {
        for item in items {
            if let Some(b) = bytes(next()?) {
                let v = vector_from_bytes(&b).ok_or_else(|| bad_reply("item vector bytes"))?;
                vectors.insert((*item).to_string(), v);
            }
        }
        vectors_gen = match gen_key {
            Some(_) => match next()? {
                redis::Value::Nil => 0,
                v => redis::from_redis_value::<i64>(v).map_err(|_| bad_reply("vectors:gen"))?,
            },
            None => 0,
        };
    } else {
        // The counter lives under the deployment's own tag: read after the state and
        // before the items' vectors, so that it is never newer than they are.
        vectors_gen = match gen_key {
            Some(key) => read_vectors_gen(conn, key).await?,
            None => 0,
        };
        for (item, v) in items.iter().zip(item_vectors(conn, shards, items).await?) {
            if let Some(v) = v {
                vectors.insert((*item).to_string(), v);
            }
        }
    }
    let mark = hash
        .get(BULK_MARK)
        .and_then(|b| std::str::from_utf8(b).ok())
        .and_then(Mark::decode);
    let (state, version) = match decode_state(&hash, recent, purchased)? {
        Some((s, v)) => (Some(s), v),
        None => (None, 0),
    };
    Ok(Snapshot {
        state,
        version,
        vectors,
        mark,
        vectors_gen,
    })
}

/// The item vectors' counter at `key` (see [`super::gram`]); 0 before any vector write.
async fn read_vectors_gen(conn: &mut Conn, key: &str) -> StoreResult<i64> {
    let value: Option<i64> = redis::cmd("GET")
        .arg(key)
        .query_async(conn)
        .await
        .map_err(from_redis)?;
    Ok(value.unwrap_or(0))
}

/// The vectors of `items` (`None`: no item, or no vector), one pipeline per shard.
async fn item_vectors(
    conn: &mut Conn,
    shards: &Shards,
    items: &[&str],
) -> StoreResult<Vec<Option<Vec<f32>>>> {
    let mut out = vec![None; items.len()];
    for (shard, at) in shards.group(items) {
        let keys = &shards.all()[shard];
        let mut pipe = redis::pipe();
        for &i in &at {
            pipe.hget(keys.item(items[i]), "vector");
        }
        let found: Vec<Option<Vec<u8>>> = pipe.query_async(conn).await.map_err(from_redis)?;
        if found.len() != at.len() {
            return Err(bad_reply("pipeline reply count"));
        }
        for (&i, b) in at.iter().zip(found) {
            if let Some(b) = b {
                out[i] = Some(vector_from_bytes(&b).ok_or_else(|| bad_reply("item vector bytes"))?);
            }
        }
    }
    Ok(out)
}

/// A user's state, `None` if never seen.
pub(crate) async fn get(
    conn: &mut Conn,
    shards: &Shards,
    user: &str,
) -> StoreResult<Option<UserState>> {
    Ok(read(conn, shards, user, &[], None).await?.state)
}

/// Applies one user's events (in order) atomically; see the module doc. `tag_fields`: the
/// schema's tag and bool fields, whose per-value popularity ZSETs the write keeps in step.
/// `once`: the bulk run and each event's position in it, for a batch that may be a retry:
/// the events the user's mark covers are skipped, and the mark moves with the write.
pub(crate) async fn apply(
    conn: &mut Conn,
    inner: &super::Inner,
    user: &str,
    all_events: &[&Event],
    once: Option<(u64, &[u64])>,
) -> StoreResult<()> {
    let (shards, settings, tag_fields) = (&inner.shards, &inner.settings, &inner.tag_fields);
    let keys = shards.of(user);
    let fold_in = settings.session.update == UpdateRule::FoldIn;
    let gen_key = inner.keys.vectors_gen();
    // On a cluster the items' popularity lives in their own shards: bumped after the
    // user's write, one script per shard (see the module doc).
    let together = shards.len() == 1;
    let mut items: Vec<&str> = all_events.iter().map(|e| e.item_id.as_str()).collect();
    items.sort_unstable();
    items.dedup();
    for attempt in 0..MAX_ATTEMPTS {
        let mut snap = read(conn, shards, user, &items, fold_in.then_some(&gen_key)).await?;
        // A retried bulk batch: only what this user has not had yet (read in the same
        // snapshot as the version the write is conditioned on).
        let (events, mark) = match once {
            None => (all_events.to_vec(), None),
            Some((run, positions)) => {
                let mut left = Vec::with_capacity(all_events.len());
                let mut highest = None;
                for (e, &p) in all_events.iter().zip(positions) {
                    if !snap.mark.is_some_and(|m| m.covers(run, p)) {
                        left.push(*e);
                        highest = Some(highest.map_or(p, |h: u64| h.max(p)));
                    }
                }
                let Some(position) = highest else {
                    return Ok(());
                };
                (left, Some(Mark { run, position }))
            }
        };
        let events = events.as_slice();
        let mut state = snap.state.unwrap_or_default();
        let mut increments: Vec<(&str, f64)> = Vec::new();
        for e in events {
            let vector = snap.vectors.get(&e.item_id).map(Vec::as_slice);
            state.apply(e, vector, &settings.session);
            state.active_ms = crate::wall_clock_ms();
            let weight = settings.session.weights.weight(e.kind, e.value);
            if let Some(inc) = settings.popularity.log_increment(weight, e.timestamp_ms) {
                increments.push((e.item_id.as_str(), inc));
            }
        }
        if fold_in {
            refold(conn, inner, &mut state, &mut snap.vectors, snap.vectors_gen).await?;
        }

        let mut inv = APPLY_USER.prepare_invoke();
        inv.key(keys.user(user))
            .key(keys.recent(user))
            .key(keys.purchased(user))
            .key(keys.user_events(user))
            .key(keys.events())
            .key(keys.users())
            .key(keys.popularity());
        if together {
            for (item, _) in &increments {
                inv.key(keys.item(item));
            }
        }
        inv.arg(snap.version.to_string())
            .arg(user)
            .arg(keys.popular_by_prefix())
            .arg(settings.session.ttl_ms().unwrap_or(0))
            .arg(tag_fields.len());
        for f in tag_fields {
            inv.arg(f.as_str());
        }
        let mut fields = state_fields(&state);
        if let Some(m) = mark {
            fields.push((BULK_MARK, m.encode().into_bytes()));
        }
        inv.arg(fields.len());
        for (f, v) in &fields {
            inv.arg(*f).arg(v.as_slice());
        }
        inv.arg(state.recent.len());
        for r in &state.recent {
            inv.arg(r.as_str());
        }
        inv.arg(events.len());
        for e in events {
            let f = event_fields(e);
            inv.arg(f.len());
            for (k, v) in f {
                inv.arg(k).arg(v);
            }
        }
        if together {
            for (item, inc) in &increments {
                inv.arg(*item).arg(format!("{inc:e}"));
            }
        }
        let version: i64 = inv.invoke_async(conn).await.map_err(from_redis)?;
        if version >= 0 {
            // With `wait_replicas`, acknowledged only once the replicas of every master
            // written hold it (the user's shard, the items' popularity shards).
            let mut written = vec![keys.user(user)];
            if !together {
                written.extend(bump_popularity(conn, shards, tag_fields, &increments).await?);
            }
            return durable::acknowledge(conn, &inner.config, &written).await;
        }
        // Someone else wrote this user first: back off a little (jittered) and redo.
        let jitter = u64::from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos())
                % 500,
        );
        let wait = Duration::from_micros(50 * u64::from(attempt.min(20)) + jitter);
        tracing::debug!(user, attempt, "user state changed concurrently; retrying");
        tokio::time::sleep(wait).await;
    }
    Err(StoreError::Unavailable(format!(
        "user '{user}' is written by too many writers at once; retry"
    )))
}

/// Re-solves `state`'s fold-in (see the module doc): the vectors of its recent items that
/// `vectors` lacks are read first (and added to it).
async fn refold(
    conn: &mut Conn,
    inner: &super::Inner,
    state: &mut UserState,
    vectors: &mut BTreeMap<String, Vec<f32>>,
    generation: i64,
) -> StoreResult<()> {
    let gram = inner
        .grams
        .get(conn, &inner.shards, inner.schema.vector.dim, generation)
        .await?;
    let model = FoldModel::new(&gram, &inner.settings.session.fold_in);
    if model.is_some() {
        let missing: Vec<&str> = state
            .recent
            .iter()
            .zip(state.fold.weights.iter().zip(&state.fold.fresh))
            .filter(|(id, (w, f))| (**w != 0.0 || **w != **f) && !vectors.contains_key(id.as_str()))
            .map(|(id, _)| id.as_str())
            .collect();
        for (id, v) in missing
            .iter()
            .zip(item_vectors(conn, &inner.shards, &missing).await?)
        {
            if let Some(v) = v {
                vectors.insert((*id).to_string(), v);
            }
        }
    }
    state.refold(model.as_ref(), |id| vectors.get(id).map(Vec::as_slice));
    Ok(())
}

/// Adds `increments` (item id, log increment) to the popularity of the items that exist,
/// one script per shard ([`BUMP_POPULARITY`]); a key of each shard written. A cluster's user write and its items'
/// popularity are separate atomic units: an error between them leaves the events applied
/// and some popularity not (the error is returned; popularity is a ranking signal, and a
/// retried batch is skipped by the user's compare-and-set and bulk mark).
async fn bump_popularity(
    conn: &mut Conn,
    shards: &Shards,
    tag_fields: &[String],
    increments: &[(&str, f64)],
) -> StoreResult<Vec<String>> {
    let ids: Vec<&str> = increments.iter().map(|(id, _)| *id).collect();
    let mut written = Vec::new();
    for (shard, at) in shards.group(&ids) {
        let keys = &shards.all()[shard];
        let mut inv = BUMP_POPULARITY.prepare_invoke();
        inv.key(keys.popularity());
        for &i in &at {
            inv.key(keys.item(ids[i]));
        }
        inv.arg(keys.popular_by_prefix()).arg(tag_fields.len());
        for f in tag_fields {
            inv.arg(f.as_str());
        }
        for &i in &at {
            let (id, inc) = increments[i];
            inv.arg(id).arg(format!("{inc:e}"));
        }
        let () = inv.invoke_async(conn).await.map_err(from_redis)?;
        written.push(keys.popularity());
    }
    Ok(written)
}

/// Forgets a user; false if unknown.
pub(crate) async fn delete(conn: &mut Conn, keys: &Keys, user: &str) -> StoreResult<bool> {
    let existed: i64 = DELETE_USER
        .key(keys.user(user))
        .key(keys.recent(user))
        .key(keys.purchased(user))
        .key(keys.user_events(user))
        .key(keys.events())
        .key(keys.users())
        .arg(user)
        .invoke_async(conn)
        .await
        .map_err(from_redis)?;
    Ok(existed == 1)
}

/// One step of the sweep of the users sorted set: `ZSCAN` from `cursor`, then the ids
/// whose user hash is gone (expired) are removed from it, unless they came back in
/// between (`ZREM` only if the hash still does not exist, in one script per batch).
/// Returns the next cursor (0: the pass is done) and how many ids were removed.
pub(crate) async fn sweep(
    conn: &mut Conn,
    keys: &Keys,
    cursor: u64,
    count: usize,
) -> StoreResult<(u64, usize)> {
    let (next, pairs): (u64, Vec<String>) = redis::cmd("ZSCAN")
        .arg(keys.users())
        .arg(cursor)
        .arg("COUNT")
        .arg(count)
        .query_async(conn)
        .await
        .map_err(from_redis)?;
    // member, score, member, score, ...
    let ids: Vec<String> = pairs.into_iter().step_by(2).collect();
    if ids.is_empty() {
        return Ok((next, 0));
    }
    let mut inv = super::scripts::FORGET_EXPIRED.prepare_invoke();
    inv.key(keys.users());
    for id in &ids {
        inv.key(keys.user(id));
    }
    for id in &ids {
        inv.arg(id.as_str());
    }
    let removed: i64 = inv.invoke_async(conn).await.map_err(from_redis)?;
    Ok((next, usize::try_from(removed).unwrap_or(0)))
}

/// Sets long-term vectors (one `MULTI` for all users); bumps each version so that a
/// concurrent event write-back retries on top of it, and refreshes the user's expiry.
pub(crate) async fn set_vectors(
    conn: &mut Conn,
    keys: &Keys,
    settings: &ModelSettings,
    vectors: &[&(String, Vec<f32>)],
) -> StoreResult<usize> {
    let mut pipe = redis::pipe();
    pipe.atomic();
    let now = crate::wall_clock_ms().to_string();
    for (id, v) in vectors.iter().map(|p| (&p.0, &p.1)) {
        pipe.hset(keys.user(id), "long_term", vector_bytes(v))
            .ignore()
            // every weight kept so far is the trained model's now (`UserState::set_long_term`)
            .hset(keys.user(id), "recent_fresh", Vec::<u8>::new())
            .ignore()
            .hset(keys.user(id), "active_ms", &now)
            .ignore()
            .hincr(keys.user(id), "version", 1)
            .ignore()
            .zadd(keys.users(), id, 0)
            .ignore();
        if let Some(ttl) = settings.session.ttl_ms() {
            for key in [keys.user(id), keys.recent(id), keys.user_events(id)] {
                pipe.pexpire(key, ttl).ignore();
            }
        }
    }
    let () = pipe.query_async(conn).await.map_err(from_redis)?;
    Ok(vectors.len())
}

/// One `XRANGE` entry: its id and field/value pairs.
type StreamEntry = (String, Vec<(String, String)>);

/// Recomputes one user's session from their logged events with the items' current vectors
/// (see `Store::rebuild_sessions`): one `MULTI` reads the version and the user's event ids,
/// then the events and the vectors are read, `UserState::session_from` runs in Rust, and
/// [`SET_SESSION`] writes the result only if the version did not move (an event applied
/// meanwhile bumps it: start again, so that it is counted). False when the user has no state.
pub(crate) async fn rebuild_session(
    conn: &mut Conn,
    inner: &super::Inner,
    user: &str,
) -> StoreResult<bool> {
    let (shards, settings) = (&inner.shards, &inner.settings);
    let keys = shards.of(user);
    let fold_in = settings.session.update == UpdateRule::FoldIn;
    let gen_key = inner.keys.vectors_gen();
    for attempt in 0..MAX_ATTEMPTS {
        type Read = (
            bool,
            Option<String>,
            Vec<String>,
            Vec<Option<Vec<u8>>>,
            Vec<String>,
        );
        let (exists, version, ids, fields, recent): Read = redis::pipe()
            .atomic()
            .exists(keys.user(user))
            .hget(keys.user(user), "version")
            .lrange(keys.user_events(user), 0, -1)
            .cmd("HMGET")
            .arg(keys.user(user))
            .arg("recent_weights")
            .arg("recent_fresh")
            .arg("long_term")
            .lrange(keys.recent(user), 0, -1)
            .query_async(conn)
            .await
            .map_err(from_redis)?;
        if !exists {
            return Ok(false);
        }
        // Read before the items' vectors (on a cluster it lives in another slot than the
        // user: not in the `MULTI`).
        let generation = match fold_in {
            true => read_vectors_gen(conn, &gen_key).await?,
            false => 0,
        };
        let mut events = Vec::with_capacity(ids.len());
        if !ids.is_empty() {
            let mut pipe = redis::pipe();
            for id in &ids {
                pipe.cmd("XRANGE").arg(keys.events()).arg(id).arg(id);
            }
            let entries: Vec<Vec<StreamEntry>> =
                pipe.query_async(conn).await.map_err(from_redis)?;
            for (_, fields) in entries.into_iter().flatten() {
                events.push(event_from_fields(&fields.into_iter().collect())?);
            }
        }
        let mut items: Vec<&str> = events
            .iter()
            .map(|e| e.item_id.as_str())
            .chain(recent.iter().map(String::as_str))
            .collect();
        items.sort_unstable();
        items.dedup();
        let mut vectors: BTreeMap<&str, Vec<f32>> = BTreeMap::new();
        for (item, v) in items.iter().zip(item_vectors(conn, shards, &items).await?) {
            if let Some(v) = v {
                vectors.insert(item, v);
            }
        }
        let session = UserState::session_from(
            &events,
            |item| vectors.get(item).map(Vec::as_slice),
            &settings.session,
        );
        // Only the recent items and their weights matter to the fold-in.
        let field = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.as_deref())
                .and_then(vector_from_bytes)
        };
        let mut folded = UserState {
            fold: FoldState {
                weights: field(0).unwrap_or_default(),
                fresh: field(1).unwrap_or_default(),
                vector: None,
                hints: Default::default(),
                due: 0,
            },
            long_term: field(2),
            recent: recent.iter().map(CompactString::from).collect(),
            ..UserState::default()
        };
        folded.fold.weights.resize(folded.recent.len(), 0.0);
        if fold_in {
            let gram = inner
                .grams
                .get(conn, shards, inner.schema.vector.dim, generation)
                .await?;
            let model = FoldModel::new(&gram, &settings.session.fold_in);
            // after training: solved exactly (no folded vector of the new model to start from)
            folded.refold_exact(model.as_ref(), |item| vectors.get(item).map(Vec::as_slice));
        }
        let mut inv = SET_SESSION.prepare_invoke();
        inv.key(keys.user(user))
            .arg(version.as_deref().unwrap_or("0"))
            .arg(
                folded
                    .fold
                    .vector
                    .as_deref()
                    .map(vector_bytes)
                    .unwrap_or_default(),
            );
        match &session {
            Some(s) => inv
                .arg("1")
                .arg(vector_bytes(&s.sum))
                .arg(s.weight.to_string())
                .arg(s.updated_ms.to_string()),
            None => inv.arg("0"),
        };
        let written: i64 = inv.invoke_async(conn).await.map_err(from_redis)?;
        match written {
            0 => return Ok(false),
            v if v > 0 => return Ok(true),
            _ => {}
        }
        tracing::debug!(
            user,
            attempt,
            "user state changed during a session rebuild; retrying"
        );
        tokio::time::sleep(Duration::from_micros(50 * u64::from(attempt.min(20)))).await;
    }
    Err(StoreError::Unavailable(format!(
        "user '{user}' kept changing while its session was rebuilt; retry"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_through_the_hash() {
        let p = recd_core::SessionParams::default();
        let mut s = UserState::default();
        let e = Event {
            user_id: "u".into(),
            item_id: "i".into(),
            kind: EventType::Dwell,
            value: Some(12.3),
            timestamp_ms: 1_700_000_000_123,
            recommendation_id: Some("r".into()),
        };
        s.apply(&e, Some(&[0.3, -0.7]), &p);
        let mut hash: BTreeMap<String, Vec<u8>> = state_fields(&s)
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        hash.insert("version".into(), b"3".to_vec());
        let (back, version) = decode_state(
            &hash,
            s.recent.iter().map(|r| r.to_string()).collect(),
            vec![],
        )
        .unwrap()
        .unwrap();
        assert_eq!((back, version), (s, 3));
        let fields: BTreeMap<String, String> = event_fields(&e)
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        assert_eq!(event_from_fields(&fields).unwrap(), e);
    }
}
