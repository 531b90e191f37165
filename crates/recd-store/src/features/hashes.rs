//! The Redis feature store: one Hash per user (`{prefix}feat:{fp}:u:{user}`) and per item
//! (`{prefix}feat:{fp}:i:{item}`), in [`EntityState::to_fields`]'s layout: `t` the latest
//! update time, one field per slot holding its buckets (`"b:v b:v"`) or its last time
//! (`"@ms"`). One script applies an event's updates to both hashes atomically: it adds
//! to the bucket, drops the buckets the window has left (so a field holds at most the
//! window's bucket count) and renews the key's TTL (the feature set's). Ids, tag values
//! and numbers reach Redis only as script keys and arguments, never inside a command.
//! A read is one pipeline of `HGETALL`s (the user, then each candidate when the set
//! has item features).

use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::ConnectionManager;
use ::redis::{AsyncCommands, Script};
use async_trait::async_trait;
use recd_core::features::{EntityState, FeatureSet, Op, Target, Update};
use recd_core::{Event, Item};

use super::FeatureStore;
use crate::{StoreError, StoreResult};

fn from_redis(e: ::redis::RedisError) -> StoreError {
    StoreError::Unavailable(format!("redis (features): {e}"))
}

/// KEYS: the user's and the item's hash. ARGV: ttl ms, the update time, the number of
/// updates, then per update six values: target (1 user, 2 item), field, op (`a` add, `l`
/// last, `d` a distinct count's insert), bucket or time, the window's bucket count, value
/// (the id's hash for `d`). `__SKETCH__` is replaced by the sketch size when loaded.
const APPLY: &str = r#"
local ttl, at, n = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local touched = {}
local i = 4
for _ = 1, n do
  local key, field, op = KEYS[tonumber(ARGV[i])], ARGV[i + 1], ARGV[i + 2]
  if op == 'a' then
    local b, nb, v = tonumber(ARGV[i + 3]), tonumber(ARGV[i + 4]), tonumber(ARGV[i + 5])
    local cur = redis.call('HGET', key, field)
    local bs, vs, found, newest = {}, {}, false, b
    if cur then
      for bb, vv in string.gmatch(cur, '(%-?%d+):(%S+)') do
        bb, vv = tonumber(bb), tonumber(vv)
        if bb == b then vv = vv + v; found = true end
        bs[#bs + 1], vs[#vs + 1] = bb, vv
        if bb > newest then newest = bb end
      end
    end
    if not found then
      local at_ = #bs + 1
      for k = 1, #bs do
        if bs[k] > b then at_ = k; break end
      end
      table.insert(bs, at_, b)
      table.insert(vs, at_, v)
    end
    local keep, out = newest - nb + 1, {}
    for k = 1, #bs do
      if bs[k] >= keep then out[#out + 1] = string.format('%.0f:%.17g', bs[k], vs[k]) end
    end
    redis.call('HSET', key, field, table.concat(out, ' '))
  elseif op == 'd' then
    -- A distinct count's bucket b keeps its __SKETCH__ smallest hashes (recd_core's
    -- features::distinct, in the same form: # then b:h,h b:h).
    local b, nb, h = tonumber(ARGV[i + 3]), tonumber(ARGV[i + 4]), tonumber(ARGV[i + 5])
    local cur = redis.call('HGET', key, field)
    local bs, hs, newest = {}, {}, b
    if cur and string.sub(cur, 1, 1) == '#' then
      for bb, list in string.gmatch(string.sub(cur, 2), '(%-?%d+):(%S*)') do
        bb = tonumber(bb)
        local l = {}
        for x in string.gmatch(list, '%d+') do l[#l + 1] = tonumber(x) end
        bs[#bs + 1], hs[#hs + 1] = bb, l
        if bb > newest then newest = bb end
      end
    end
    local at_ = nil
    for k = 1, #bs do
      if bs[k] == b then at_ = k; break end
    end
    if not at_ then
      at_ = #bs + 1
      for k = 1, #bs do
        if bs[k] > b then at_ = k; break end
      end
      table.insert(bs, at_, b)
      table.insert(hs, at_, {})
    end
    local l, pos, present = hs[at_], #hs[at_] + 1, false
    for k = 1, #l do
      if l[k] == h then present = true; break end
      if l[k] > h then pos = k; break end
    end
    if (not present) and pos <= __SKETCH__ then
      table.insert(l, pos, h)
      while #l > __SKETCH__ do table.remove(l) end
    end
    local keep, out = newest - nb + 1, {}
    for k = 1, #bs do
      if bs[k] >= keep then
        local strs = {}
        for q = 1, #hs[k] do strs[q] = string.format('%.0f', hs[k][q]) end
        out[#out + 1] = string.format('%.0f', bs[k]) .. ':' .. table.concat(strs, ',')
      end
    end
    redis.call('HSET', key, field, '#' .. table.concat(out, ' '))
  else
    local t = tonumber(ARGV[i + 3])
    local cur = redis.call('HGET', key, field)
    local c = cur and tonumber(string.sub(cur, 2))
    if (not c) or c < t then
      redis.call('HSET', key, field, '@' .. string.format('%.0f', t))
    end
  end
  touched[key] = true
  i = i + 6
end
for key, _ in pairs(touched) do
  local t = redis.call('HGET', key, 't')
  if (not t) or tonumber(t) < at then
    redis.call('HSET', key, 't', string.format('%.0f', at))
  end
  redis.call('PEXPIRE', key, ttl)
end
return n
"#;

/// The redis backend's feature store.
#[derive(Clone)]
pub struct RedisFeatures {
    client: ::redis::Client,
    /// Connected on first use, so that the engine can be built synchronously.
    conn: Arc<tokio::sync::OnceCell<ConnectionManager>>,
    timeout: Duration,
    prefix: String,
    apply: Arc<Script>,
}

impl std::fmt::Debug for RedisFeatures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisFeatures")
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl RedisFeatures {
    /// A store under the deployment's key prefix, connecting on first use.
    pub fn new(url: &str, prefix: &str, timeout: Duration) -> StoreResult<Self> {
        let client = ::redis::Client::open(url).map_err(|e| {
            StoreError::Invalid(recd_core::ValidationError::new(format!(
                "bad redis url '{url}': {e}"
            )))
        })?;
        Ok(Self {
            client,
            conn: Arc::new(tokio::sync::OnceCell::new()),
            timeout,
            prefix: prefix.to_string(),
            apply: Arc::new(Script::new(&APPLY.replace(
                "__SKETCH__",
                &recd_core::features::distinct::SKETCH.to_string(),
            ))),
        })
    }

    /// Connects now (a store that cannot reach Redis fails here, not on first use).
    pub async fn connect(url: &str, prefix: &str, timeout: Duration) -> StoreResult<Self> {
        let store = Self::new(url, prefix, timeout)?;
        store.conn().await?;
        Ok(store)
    }

    async fn conn(&self) -> StoreResult<ConnectionManager> {
        let conn = self
            .conn
            .get_or_try_init(|| async {
                let config = ::redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(self.timeout))
                    .set_response_timeout(Some(self.timeout));
                self.client
                    .get_connection_manager_with_config(config)
                    .await
                    .map_err(from_redis)
            })
            .await?;
        Ok(conn.clone())
    }

    fn user_key(&self, set: &FeatureSet, user: &str) -> String {
        format!("{}feat:{}:u:{user}", self.prefix, set.fingerprint())
    }

    fn item_key(&self, set: &FeatureSet, item: &str) -> String {
        format!("{}feat:{}:i:{item}", self.prefix, set.fingerprint())
    }

    async fn run(
        &self,
        user_key: &str,
        item_key: &str,
        updates: &[Update],
        at_ms: i64,
        ttl_ms: i64,
    ) -> StoreResult<()> {
        let mut inv = self.apply.key(user_key);
        inv.key(item_key)
            .arg(ttl_ms.max(1))
            .arg(at_ms)
            .arg(updates.len());
        for u in updates {
            let target = match u.target {
                Target::User => 1,
                Target::Item => 2,
            };
            inv.arg(target).arg(u.key.encode());
            match u.op {
                Op::Add {
                    window,
                    bucket,
                    value,
                } => inv
                    .arg("a")
                    .arg(bucket)
                    .arg(window.buckets)
                    .arg(format!("{value:?}")),
                Op::Last { at_ms } => inv.arg("l").arg(at_ms).arg(0).arg(0),
                Op::Insert {
                    window,
                    bucket,
                    hash,
                } => inv.arg("d").arg(bucket).arg(window.buckets).arg(hash),
            };
        }
        let mut conn = self.conn().await?;
        let _: i64 = inv.invoke_async(&mut conn).await.map_err(from_redis)?;
        Ok(())
    }
}

fn state(fields: &[(String, String)]) -> Option<EntityState> {
    (!fields.is_empty())
        .then(|| EntityState::from_fields(fields.iter().map(|(k, v)| (k.as_str(), v.as_str()))))
}

#[async_trait]
impl FeatureStore for RedisFeatures {
    async fn apply_events(
        &self,
        set: &FeatureSet,
        events: &[Event],
        items: &[Option<Arc<Item>>],
    ) -> StoreResult<()> {
        for (i, e) in events.iter().enumerate() {
            let item = items.get(i).and_then(|i| i.as_deref());
            let updates = set.event_updates(e, item);
            if updates.is_empty() {
                continue;
            }
            self.run(
                &self.user_key(set, &e.user_id),
                &self.item_key(set, &e.item_id),
                &updates,
                e.timestamp_ms,
                set.ttl_ms,
            )
            .await?;
        }
        Ok(())
    }

    async fn log_impressions(
        &self,
        set: &FeatureSet,
        items: &[String],
        at_ms: i64,
    ) -> StoreResult<()> {
        let updates = set.impression_updates(at_ms);
        if updates.is_empty() {
            return Ok(());
        }
        for id in items {
            // The user key is unused by item-only updates (never touched, never created).
            self.run(
                &self.user_key(set, ""),
                &self.item_key(set, id),
                &updates,
                at_ms,
                set.ttl_ms,
            )
            .await?;
        }
        Ok(())
    }

    async fn values(
        &self,
        set: &FeatureSet,
        user: &str,
        items: &[&Arc<Item>],
        now_ms: i64,
    ) -> StoreResult<Vec<f64>> {
        let d = set.len();
        let mut out = vec![0.0; items.len() * d];
        if d == 0 {
            return Ok(out);
        }
        let with_items = set.has_item_state();
        let mut pipe = ::redis::pipe();
        pipe.hgetall(self.user_key(set, user));
        if with_items {
            for it in items {
                pipe.hgetall(self.item_key(set, &it.id));
            }
        }
        let mut conn = self.conn().await?;
        let replies: Vec<Vec<(String, String)>> =
            pipe.query_async(&mut conn).await.map_err(from_redis)?;
        let u = replies.first().and_then(|f| state(f));
        let view = set.user_view(u.as_ref(), now_ms);
        for (k, (item, row)) in items.iter().zip(out.chunks_mut(d)).enumerate() {
            let s = if with_items {
                replies.get(k + 1).and_then(|f| state(f))
            } else {
                None
            };
            view.values_into(s.as_ref(), item, row);
        }
        Ok(out)
    }

    async fn delete_user(&self, set: &FeatureSet, user: &str) -> StoreResult<()> {
        let mut conn = self.conn().await?;
        let _: i64 = conn
            .del(self.user_key(set, user))
            .await
            .map_err(from_redis)?;
        Ok(())
    }
}
