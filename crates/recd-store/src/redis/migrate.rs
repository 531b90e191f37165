//! Schema and dimension changes: a new index version built beside the serving one, then
//! swapped in atomically.
//!
//! [`RedisStore::migrate`] creates `{prefix}idx:items:v{N+1}` over the new key prefix
//! `{prefix}item.v{N+1}:`, copies every item into it (fields the new schema keeps, the new
//! vectors given; the upsert puts touched items into the new version's per-tag popularity
//! ZSETs), then in one `MULTI` points the alias
//! `{prefix}idx:items` at it (`FT.ALIASUPDATE`) and records the new version and schema in
//! `{prefix}meta`. Queries go through the alias, so each one sees either the whole old
//! index or the whole new one, and none fails: a store opened with the old schema keeps
//! answering (it reads hits of either version), except KNN after a *dimension* change,
//! whose old-size query vectors the new index cannot take. Servers then reconnect with the
//! new schema, and [`RedisStore::drop_version`] removes the old index, its hashes, docs and
//! per-tag ZSETs. Item writes made through old-version stores during the copy are not
//! carried over, and events applied through them until they reconnect move the main
//! popularity ZSET but not the new version's per-tag ones (a later event on the item does).

use std::collections::HashMap;
use std::sync::Arc;

use recd_core::item::check_vector;
use recd_core::{Item, ItemUpsert, Schema, ValidationError};

use super::error::{bad_reply, from_redis};
use super::reply::hash_reply;
use super::{Inner, RedisStore, create_index, schema, scripts};
use crate::{StoreError, StoreResult};

impl RedisStore {
    /// Refuses `what` on a cluster deployment (not built for shards yet).
    fn single_redis_only(&self, what: &str) -> StoreResult<()> {
        if self.inner.cluster {
            return Err(StoreError::Invalid(ValidationError::new(format!(
                "{what} is not supported on a Redis Cluster deployment yet; re-import under a \
                 new prefix instead"
            ))));
        }
        Ok(())
    }
}

/// Items copied per round trip.
const BATCH: usize = 500;

impl RedisStore {
    /// The index version this store reads and writes.
    pub fn version(&self) -> u32 {
        self.inner.keys.version()
    }

    /// Builds index version N+1 for `new_schema` from the current items, giving them
    /// `vectors` (an item without an entry keeps its vector if the dimension is unchanged,
    /// and has none otherwise), swaps the alias to it, and returns a store on it.
    pub async fn migrate(
        &self,
        new_schema: Schema,
        vectors: Vec<(String, Vec<f32>)>,
    ) -> StoreResult<RedisStore> {
        schema::check_schema(&new_schema)?;
        for (id, v) in &vectors {
            check_vector(v, &new_schema).map_err(|e| {
                ValidationError::new(format!("vector of item '{id}': {}", e.message))
            })?;
        }
        self.single_redis_only("a schema migration")?;
        let mut conn = self.conn();
        let old = &self.inner.keys;
        let current: Option<u32> = redis::cmd("HGET")
            .arg(old.meta())
            .arg("version")
            .query_async(&mut conn)
            .await
            .map_err(from_redis)?;
        if current != Some(old.version()) {
            return Err(StoreError::Invalid(ValidationError::new(format!(
                "this store is at index version {} but the deployment is at {current:?}; reconnect first",
                old.version()
            ))));
        }
        let new = old.at_version(old.version() + 1);
        create_index(&mut conn, &new, &new_schema, &self.inner.config).await?;

        let same_dim = new_schema.vector.dim == self.inner.schema.vector.dim;
        let mut vectors: HashMap<String, Vec<f32>> = vectors.into_iter().collect();
        let mut cursor: u64 = 0;
        let mut copied = 0usize;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(old.item_pattern())
                .arg("COUNT")
                .arg(BATCH)
                .query_async(&mut conn)
                .await
                .map_err(from_redis)?;
            if !keys.is_empty() {
                let mut pipe = redis::pipe();
                for k in &keys {
                    pipe.hgetall(k);
                }
                let values: Vec<redis::Value> =
                    pipe.query_async(&mut conn).await.map_err(from_redis)?;
                let mut batch = Vec::with_capacity(keys.len());
                for (key, v) in keys.iter().zip(values) {
                    let Some(id) = old.item_id(key) else { continue };
                    let fields = hash_reply(v)?;
                    if fields.is_empty() {
                        continue; // deleted meanwhile
                    }
                    let item = schema::item_from_fields(id, &fields, &self.inner.schema)?;
                    batch.push(ItemUpsert {
                        item: convert(item, &new_schema, same_dim, &mut vectors),
                        keep_vector: false,
                    });
                }
                copied += upsert_at(&mut conn, &new, &new_schema, batch).await?;
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }

        let schema_json = serde_json::to_string(&new_schema)
            .map_err(|e| StoreError::Internal(format!("schema to json: {e}")))?;
        let () = redis::pipe()
            .atomic()
            .cmd("FT.ALIASUPDATE")
            .arg(new.alias())
            .arg(new.index())
            .ignore()
            .hset(new.meta(), "version", new.version())
            .ignore()
            .hset(new.meta(), "schema", schema_json)
            .ignore()
            .query_async(&mut conn)
            .await
            .map_err(from_redis)?;
        tracing::info!(prefix = %self.inner.config.prefix, version = new.version(), copied, "swapped in a new index version");
        Ok(RedisStore {
            inner: Arc::new(Inner::new(
                self.inner.conns.clone(),
                new_schema,
                self.inner.settings.clone(),
                self.inner.config.clone(),
                new.clone(),
                super::shards::Shards::single(new),
            )),
        })
    }

    /// Drops index version `version` and deletes its item hashes; refuses the current one.
    pub async fn drop_version(&self, version: u32) -> StoreResult<()> {
        self.single_redis_only("dropping an index version")?;
        let mut conn = self.conn();
        let keys = self.inner.keys.at_version(version);
        let current: Option<u32> = redis::cmd("HGET")
            .arg(keys.meta())
            .arg("version")
            .query_async(&mut conn)
            .await
            .map_err(from_redis)?;
        if current == Some(version) {
            return Err(StoreError::Invalid(ValidationError::new(format!(
                "index version {version} is the one in service"
            ))));
        }
        match redis::cmd("FT.DROPINDEX")
            .arg(keys.index())
            .arg("DD")
            .query_async::<()>(&mut conn)
            .await
        {
            Ok(()) => {}
            Err(e) if super::error::is_missing_index(&e) => {}
            Err(e) => return Err(from_redis(e)),
        }
        let () = redis::cmd("UNLINK")
            .arg(keys.ids())
            .query_async(&mut conn)
            .await
            .map_err(from_redis)?;
        for pattern in [keys.popular_by_pattern(), keys.doc_pattern()] {
            let mut cursor: u64 = 0;
            loop {
                let (next, found): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(BATCH)
                    .query_async(&mut conn)
                    .await
                    .map_err(from_redis)?;
                if !found.is_empty() {
                    let () = redis::cmd("UNLINK")
                        .arg(&found)
                        .query_async(&mut conn)
                        .await
                        .map_err(from_redis)?;
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok(())
    }
}

/// The item as the new schema has it.
fn convert(
    mut item: Item,
    new_schema: &Schema,
    same_dim: bool,
    vectors: &mut HashMap<String, Vec<f32>>,
) -> Item {
    use recd_core::{FieldType as T, FieldValue as V};
    item.fields.retain(|name, value| {
        matches!(
            (new_schema.field(name), value),
            (Some(T::Tag), V::Tags(_))
                | (Some(T::Numeric), V::Number(_))
                | (Some(T::Bool), V::Bool(_))
                | (Some(T::Text), V::Text(_))
        )
    });
    item.vector = match vectors.remove(&item.id) {
        Some(v) => Some(v),
        None if same_dim => item.vector,
        None => None,
    };
    item
}

/// Writes items under another version's keys (the upsert script, as `upsert_items` does).
async fn upsert_at(
    conn: &mut super::conn::Conn,
    keys: &super::keys::Keys,
    schema: &Schema,
    batch: Vec<ItemUpsert>,
) -> StoreResult<usize> {
    if batch.is_empty() {
        return Ok(0);
    }
    let mut inv = scripts::UPSERT_ITEMS.prepare_invoke();
    for up in &batch {
        inv.key(keys.item(&up.item.id));
    }
    for up in &batch {
        inv.key(keys.doc(&up.item.id));
    }
    inv.key(keys.ids()).key(keys.popularity());
    let tag_fields = schema::tag_fields(schema);
    inv.arg(keys.popular_by_prefix()).arg(tag_fields.len());
    for f in tag_fields {
        inv.arg(f);
    }
    for up in &batch {
        let fields = schema::item_fields(&up.item, schema);
        inv.arg(up.item.id.as_str())
            .arg("0")
            .arg(schema::doc_bytes(&up.item))
            .arg(fields.len());
        for (f, v) in fields {
            inv.arg(f).arg(v);
        }
    }
    let n: usize = inv.invoke_async(conn).await.map_err(from_redis)?;
    if n != batch.len() {
        return Err(bad_reply("upsert script count"));
    }
    Ok(n)
}
