//! The Lua scripts: each is one atomic unit on the Redis side.
//!
//! They only move data; no domain math happens here except `log_add` for popularity
//! (which must be atomic per *item*, across users). None of them writes an indexed item
//! hash except the item writes themselves (upsert, delete, new vectors). The user-state math is
//! `UserState::apply`, run in Rust; [`APPLY_USER`] is its compare-and-set write-back.
//! Numbers written from Lua use `%.17g`, so that doubles round-trip exactly (Lua's own
//! `tostring` keeps only 14 digits).

use std::sync::LazyLock;

use redis::Script;

/// Lua helpers shared by the scripts that keep the per-tag popularity ZSETs
/// (`Keys::popular_by`) in step: `split` a stored tag value list on the `\x1f` separator,
/// and `tag_keys` the ZSET keys of an item's stored tag values, given the `HMGET` of the
/// tag fields (`false` for an absent field).
const TAG_HELPERS: &str = r#"
local function split(s)
  local out = {}
  for v in string.gmatch(s, '[^\31]+') do out[#out + 1] = v end
  return out
end
local function tag_keys(pre, fields, values)
  local out = {}
  for t = 1, #fields do
    local v = values[t]
    if v then
      for _, x in ipairs(split(v)) do out[#out + 1] = pre .. fields[t] .. ':' .. x end
    end
  end
  return out
end
"#;

/// Lua helpers of the scripts that move item popularity (with [`TAG_HELPERS`]): `bump`
/// adds, for each item key `KEYS[from..]` in turn, the log increment `ARGV[a + 1]` to the
/// popularity of id `ARGV[a]` in the ZSET `pop` and in the item's per-tag ZSETs, when the
/// item exists (ids that are not items get no entry); returns the next `a`.
const POPULARITY_HELPERS: &str = r#"
local function log1p(x)
  local u = 1 + x
  if u == 1 then return x end
  return math.log(u) * x / (u - 1)
end
local function log_add(a, b)
  local hi, lo = b, a
  if a > b then hi, lo = a, b end
  return hi + log1p(math.exp(lo - hi))
end
local function bump(pop, from, a, pre, tagf)
  for k = from, #KEYS do
    local id, inc = ARGV[a], tonumber(ARGV[a + 1])
    a = a + 2
    if redis.call('EXISTS', KEYS[k]) == 1 then
      local old = redis.call('ZSCORE', pop, id)
      local new = inc
      if old then new = log_add(tonumber(old), inc) end
      local s = string.format('%.17g', new)
      redis.call('ZADD', pop, s, id)
      if #tagf > 0 then
        for _, zk in ipairs(tag_keys(pre, tagf, redis.call('HMGET', KEYS[k], unpack(tagf)))) do
          redis.call('ZADD', zk, s, id)
        end
      end
    end
  end
  return a
end
"#;

/// Upserts items, all or nothing.
/// KEYS: the `m` item keys, their `m` doc keys, the ids ZSET, then the popularity ZSET.
/// ARGV: the per-tag ZSET prefix, the number `t` of tag fields, their `t` names, then per
/// item: id, keep_vector ("1"/"0"), doc, n, then n field/value pairs.
/// Each item hash is replaced whole; `keep_vector` carries the stored `vector` over; the
/// doc (the fields without the vector, see `Keys::doc`) is written beside it. An item
/// that has a popularity (events may have come before it) joins the per-tag ZSETs of its
/// new tag values and leaves those of tag values it no longer has.
pub(crate) static UPSERT_ITEMS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{TAG_HELPERS}{}",
        r#"
local pop, ids = KEYS[#KEYS], KEYS[#KEYS - 1]
local pre, nt = ARGV[1], tonumber(ARGV[2])
local tagf = {}
for t = 1, nt do tagf[t] = ARGV[2 + t] end
local a = 3 + nt
local m = (#KEYS - 2) / 2
for i = 1, m do
  local key = KEYS[i]
  local id, keep, doc, n = ARGV[a], ARGV[a + 1], ARGV[a + 2], tonumber(ARGV[a + 3])
  a = a + 4
  local args, new = {}, {}
  for j = 0, n - 1 do
    local f, v = ARGV[a + 2 * j], ARGV[a + 2 * j + 1]
    args[#args + 1] = f
    args[#args + 1] = v
    new[f] = v
  end
  a = a + 2 * n
  if keep == '1' then
    local v = redis.call('HGET', key, 'vector')
    if v then args[#args + 1] = 'vector'; args[#args + 1] = v end
  end
  local old = {}
  if nt > 0 then old = tag_keys(pre, tagf, redis.call('HMGET', key, unpack(tagf))) end
  redis.call('DEL', key)
  redis.call('HSET', key, unpack(args))
  redis.call('SET', KEYS[m + i], doc)
  redis.call('ZADD', ids, 0, id)
  local newvals = {}
  for t = 1, nt do newvals[t] = new[tagf[t]] or false end
  local now = {}
  local score = redis.call('ZSCORE', pop, id)
  if score then
    for _, zk in ipairs(tag_keys(pre, tagf, newvals)) do
      now[zk] = true
      redis.call('ZADD', zk, score, id)
    end
  end
  for _, zk in ipairs(old) do
    if not now[zk] then redis.call('ZREM', zk, id) end
  end
end
return m
"#
    ))
});

/// Deletes an item and its doc, and takes it out of its per-tag popularity ZSETs (its
/// popularity in the main ZSET stays, as for ids that are not items).
/// KEYS: 1 the item key, 2 its doc key, 3 the ids ZSET. ARGV: the per-tag ZSET prefix, the
/// id, then the tag field names. Returns 1 if the item existed.
pub(crate) static DELETE_ITEM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{TAG_HELPERS}{}",
        r#"
local tagf = {}
for t = 3, #ARGV do tagf[#tagf + 1] = ARGV[t] end
if #tagf > 0 then
  for _, zk in ipairs(tag_keys(ARGV[1], tagf, redis.call('HMGET', KEYS[1], unpack(tagf)))) do
    redis.call('ZREM', zk, ARGV[2])
  end
end
redis.call('DEL', KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[2])
return redis.call('DEL', KEYS[1])
"#
    ))
});

/// Replaces the vectors of existing items (training's write-back): they are new items no
/// more. KEYS: `m` item keys, then their `m` new-item keys; ARGV: their vectors. Returns
/// how many existed.
pub(crate) static SET_VECTORS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local n, m = 0, #KEYS / 2
for i = 1, m do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('HSET', KEYS[i], 'vector', ARGV[i])
    n = n + 1
  end
  redis.call('DEL', KEYS[m + i])
end
return n
"#,
    )
});

/// Provisional vectors (`Store::set_new_item_vectors`): written only to items still new
/// (a new-item key, or no vector at all), which stay new. KEYS: `m` item keys, then their
/// `m` new-item keys; ARGV: their vectors. Returns how many were written.
pub(crate) static SET_NEW_VECTORS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local n, m = 0, #KEYS / 2
for i = 1, m do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    local marked = redis.call('EXISTS', KEYS[m + i]) == 1
    if marked or redis.call('HEXISTS', KEYS[i], 'vector') == 0 then
      redis.call('HSET', KEYS[i], 'vector', ARGV[i])
      if not marked then redis.call('SET', KEYS[m + i], '[]') end
      n = n + 1
    end
  end
end
return n
"#,
    )
});

/// `Store::touch_new_items` on one shard: `recd_core::newitems::touch` on the list of each
/// item that is new (a new-item key, or an item without a vector, which gets one).
/// KEYS: `m` item keys, then their `m` new-item keys. ARGV: the capacity, then per item a
/// count `c` and `c` user/weight pairs. Returns per item its list (JSON) or false.
pub(crate) static TOUCH_NEW_ITEMS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local m, cap, a = #KEYS / 2, tonumber(ARGV[1]), 2
local out = {}
for i = 1, m do
  local c = tonumber(ARGV[a])
  local first = a + 1
  a = a + 1 + 2 * c
  out[i] = false
  if redis.call('EXISTS', KEYS[i]) == 1 then
    local raw = redis.call('GET', KEYS[m + i])
    if not raw and redis.call('HEXISTS', KEYS[i], 'vector') == 0 then raw = '[]' end
    if raw then
      local list = cjson.decode(raw)
      for j = 0, c - 1 do
        local u, w = ARGV[first + 2 * j], tonumber(ARGV[first + 2 * j + 1])
        if w and w > 0 then
          local before = 0
          for x = 1, #list do
            if list[x][1] == u then before = list[x][2]; table.remove(list, x); break end
          end
          table.insert(list, 1, {u, before + w})
        end
      end
      while #list > cap do table.remove(list) end
      if #list == 0 then raw = '[]' else raw = cjson.encode(list) end
      redis.call('SET', KEYS[m + i], raw)
      out[i] = raw
    end
  end
end
return out
"#,
    )
});

/// Compare-and-set write-back of one user's state after `UserState::apply`, plus the
/// event log and item popularity, in one atomic unit. It writes no indexed hash: the
/// popularity goes to the main ZSET and to the per-tag ZSETs of the item's tag values
/// (read from its hash), so an event never makes RediSearch re-index anything.
/// KEYS: 1 user hash, 2 recent list, 3 purchased set, 4 user-events list, 5 event stream,
/// 6 users ZSET, 7 popularity ZSET, 8.. one item key per popularity increment.
/// ARGV: expected version, user id, the per-tag ZSET prefix, the TTL of the user's keys
/// in ms (0: none), the number `t` of tag fields, their `t` names, then sections, each a
/// count followed by its entries: hash field/value pairs; recent ids (most recent first);
/// events (each a field count and field/value pairs); then per item key: id, log
/// increment (applied only if the item exists: ids that are not items get no entry).
/// The purchases live in the hash (`purchased_list`); a legacy purchased Set is deleted.
/// Returns the new version, or -1 when the version moved (someone else wrote first).
pub(crate) static APPLY_USER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{TAG_HELPERS}{POPULARITY_HELPERS}{}",
        r#"
local function push_chunked(cmd, key, list)
  for i = 1, #list, 1000 do
    local chunk = {}
    for j = i, math.min(i + 999, #list) do chunk[#chunk + 1] = list[j] end
    redis.call(cmd, key, unpack(chunk))
  end
end

local cur = redis.call('HGET', KEYS[1], 'version') or '0'
if cur ~= ARGV[1] then return -1 end
local version = tonumber(cur) + 1
local pre, ttl, nt = ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local tagf = {}
for t = 1, nt do tagf[t] = ARGV[5 + t] end
local a = 6 + nt
local function section(width)
  local n = tonumber(ARGV[a]); a = a + 1
  local out = {}
  for i = 0, width * n - 1 do out[#out + 1] = ARGV[a + i] end
  a = a + width * n
  return out
end

local fields = section(2)
fields[#fields + 1] = 'version'
fields[#fields + 1] = tostring(version)
redis.call('HSET', KEYS[1], unpack(fields))

local recent = section(1)
redis.call('DEL', KEYS[2])
push_chunked('RPUSH', KEYS[2], recent)

redis.call('DEL', KEYS[3])

local n_events = tonumber(ARGV[a]); a = a + 1
for _ = 1, n_events do
  local f = section(2)
  local id = redis.call('XADD', KEYS[5], '*', unpack(f))
  redis.call('RPUSH', KEYS[4], id)
end

redis.call('ZADD', KEYS[6], 0, ARGV[2])
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('PEXPIRE', KEYS[2], ttl)
  redis.call('PEXPIRE', KEYS[4], ttl)
end

bump(KEYS[7], 8, a, pre, tagf)
return version
"#
    ))
});

/// The popularity half of [`APPLY_USER`] on its own, for a cluster, where the items of a
/// user's events live in other shards than the user: one call per shard, after the user's
/// write. KEYS: 1 the shard's popularity ZSET, 2.. one item key per increment. ARGV: the
/// per-tag ZSET prefix, the number `t` of tag fields, their `t` names, then per item key:
/// id, log increment (applied only if the item exists).
pub(crate) static BUMP_POPULARITY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{TAG_HELPERS}{POPULARITY_HELPERS}{}",
        r#"
local nt = tonumber(ARGV[2])
local tagf = {}
for t = 1, nt do tagf[t] = ARGV[2 + t] end
bump(KEYS[1], 2, 3 + nt, ARGV[1], tagf)
"#
    ))
});

/// Forgets a user: state, recent, purchases, and their entries in the event stream.
/// KEYS: 1 user hash, 2 recent, 3 purchased, 4 user-events, 5 stream, 6 users ZSET.
/// ARGV: the user id. Returns 1 if the user had state.
pub(crate) static DELETE_USER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local existed = redis.call('EXISTS', KEYS[1]) == 1 or redis.call('ZSCORE', KEYS[6], ARGV[1]) ~= false
local ids = redis.call('LRANGE', KEYS[4], 0, -1)
for i = 1, #ids, 500 do
  local chunk = {}
  for j = i, math.min(i + 499, #ids) do chunk[#chunk + 1] = ids[j] end
  redis.call('XDEL', KEYS[5], unpack(chunk))
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
redis.call('ZREM', KEYS[6], ARGV[1])
if existed then return 1 end
return 0
"#,
    )
});

/// Takes expired users off the users sorted set. KEYS: 1 users ZSET, 2.. one user hash per
/// id. ARGV: the ids, in the order of their hashes. An id is removed only if its hash
/// does not exist (it expired, and did not come back since). Returns how many were.
pub(crate) static FORGET_EXPIRED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local n = 0
for i = 2, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 0 then
    n = n + redis.call('ZREM', KEYS[1], ARGV[i - 1])
  end
end
return n
"#,
    )
});

/// Compare-and-set of one user's session vector and fold-in vector (a rebuild after
/// training replaced the item vectors). KEYS: 1 user hash. ARGV: expected version, the
/// fold-in vector bytes (empty: none), then `1` with the sum bytes, weight and
/// updated_ms, or `0` to remove the session. Returns the new version, -1 when the version
/// moved (an event came first: read again), 0 when the user is gone.
pub(crate) static SET_SESSION: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local cur = redis.call('HGET', KEYS[1], 'version') or '0'
if cur ~= ARGV[1] then return -1 end
local version = tostring(tonumber(cur) + 1)
redis.call('HSET', KEYS[1], 'fold_vector', ARGV[2])
if ARGV[3] == '1' then
  redis.call('HSET', KEYS[1], 'session_sum', ARGV[4], 'session_weight', ARGV[5],
    'session_updated_ms', ARGV[6], 'version', version)
else
  redis.call('HDEL', KEYS[1], 'session_sum', 'session_weight', 'session_updated_ms')
  redis.call('HSET', KEYS[1], 'version', version)
end
return tonumber(version)
"#,
    )
});

/// Records a deployment's meta when the prefix has none, then reads it back, in one atomic
/// step (several servers may start on a fresh prefix at once; an older deployment's meta,
/// which has no `layout`, must not get one written by a newer server). KEYS: 1 meta hash.
/// ARGV: version, schema JSON, layout, the shard tags of a cluster deployment ("" for a
/// single Redis). Returns [version, schema, layout, shard tags].
pub(crate) static INIT_META: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'version', ARGV[1], 'schema', ARGV[2], 'layout', ARGV[3])
  if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'shards', ARGV[4]) end
end
return redis.call('HMGET', KEYS[1], 'version', 'schema', 'layout', 'shards')
"#,
    )
});

/// Upgrades a deployment of key layout 2 to layout 3, once, atomically: the item id and
/// user id SETs become ZSETs (every score 0, so that `ZRANGE ... BYLEX` lists them in id
/// order from a cursor). KEYS: 1 meta hash, then the users key and the ids key of every
/// index version. ARGV: 1 the new layout. Returns the layout the deployment is at after.
/// Redis serves no one else while it runs (about a second per million ids, once).
pub(crate) static LAYOUT_3: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local layout = redis.call('HGET', KEYS[1], 'layout')
if layout ~= '2' then return layout end
for i = 2, #KEYS do
  if redis.call('TYPE', KEYS[i]).ok == 'set' then
    local members = redis.call('SMEMBERS', KEYS[i])
    redis.call('DEL', KEYS[i])
    for j = 1, #members, 1000 do
      local chunk = {}
      for k = j, math.min(j + 999, #members) do
        chunk[#chunk + 1] = 0
        chunk[#chunk + 1] = members[k]
      end
      redis.call('ZADD', KEYS[i], unpack(chunk))
    end
  end
end
redis.call('HSET', KEYS[1], 'layout', ARGV[1])
return ARGV[1]
"#,
    )
});
