//! The embedded backend: everything in-process, made durable by a local redb file.
//!
//! Reads (KNN, popular, text, items, users) work on in-memory structures: the
//! `recd_index::VectorIndex` (concurrent HNSW), the [`catalog::Catalog`] (items, attribute
//! bitmaps, popularity ranking) behind an `RwLock`, and the striped [`users::Users`].
//! Writes are serialized by one write lock and follow one order: validate → commit to the
//! durable file → publish in memory → acknowledge. A write therefore either happened
//! completely (and survives a restart) or not at all, and the next read sees it.
//! Slow writes (fsync, HNSW linking) run on tokio's blocking pool, so they never stall the
//! threads that serve reads.

mod attributes;
mod catalog;
mod durable;
mod users;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::{Mutex, RwLock};
use recd_core::item::check_vector;
use recd_core::popularity::log_add;
use recd_core::{Event, Filter, Item, ItemUpsert, Metric, Schema, UserState, ValidationError};
use recd_index::{HnswParams, VectorIndex};
use serde::{Deserialize, Serialize};

use self::catalog::Catalog;
pub use self::durable::Fsync;
use self::durable::{Batch, Durable};
use self::users::Users;
use crate::{Counts, Hit, ModelSettings, PopularHit, Store, StoreError, StoreResult};

/// Users' logged events (per user, in log order) and the sequence number read up to.
type Logged = (HashMap<String, Vec<Event>>, u64);

/// Options of the embedded backend (`[embedded]` in config).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmbeddedOptions {
    /// When writes reach the disk.
    pub fsync: Fsync,
    /// HNSW parameters of the vector index.
    pub hnsw: HnswParams,
}

/// The embedded store; cheap to clone.
#[derive(Debug, Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    schema: Schema,
    settings: ModelSettings,
    index: VectorIndex,
    catalog: RwLock<Catalog>,
    users: Users,
    /// Serializes writers, so that validate → commit → publish is one step for each.
    write_lock: Mutex<()>,
    /// The durable file; `None` for an in-memory store (tests, replay).
    durable: Option<Durable>,
    /// The event log of an in-memory store.
    memory_log: Mutex<Vec<Event>>,
}

impl EmbeddedStore {
    /// A store that lives only in memory (tests, offline replay).
    pub fn in_memory(schema: Schema, settings: ModelSettings) -> StoreResult<Self> {
        Self::build(
            schema,
            settings,
            EmbeddedOptions::default(),
            None,
            durable::Loaded::default(),
        )
    }

    /// Opens the store in `dir`, creating it if needed. A data dir remembers its schema:
    /// with `schema: None` the stored one is used; a different schema is refused.
    pub fn open(
        dir: &Path,
        schema: Option<Schema>,
        settings: ModelSettings,
        options: EmbeddedOptions,
    ) -> StoreResult<Self> {
        let (durable, loaded) = Durable::open(dir, options.fsync)?;
        let schema = match (schema, &loaded.schema) {
            (Some(given), Some(stored)) if &given != stored => {
                return Err(StoreError::Invalid(ValidationError::new(format!(
                    "the data dir {} holds items of another schema (vector dim {}, {} fields); \
                     use a new data dir for a new schema",
                    dir.display(),
                    stored.vector.dim,
                    stored.fields.len()
                ))));
            }
            (Some(given), _) => given,
            (None, Some(stored)) => stored.clone(),
            (None, None) => {
                return Err(StoreError::Invalid(ValidationError::new(format!(
                    "the data dir {} is empty and no schema was given",
                    dir.display()
                ))));
            }
        };
        if loaded.schema.is_none() {
            durable.save_schema(&schema)?;
        }
        let store = Self::build(schema, settings, options, Some(durable), loaded)?;
        if store
            .inner
            .durable
            .as_ref()
            .is_some_and(|d| d.fsync() == Fsync::Everysec)
        {
            spawn_flusher(Arc::downgrade(&store.inner));
        }
        Ok(store)
    }

    fn build(
        schema: Schema,
        settings: ModelSettings,
        options: EmbeddedOptions,
        durable: Option<Durable>,
        loaded: durable::Loaded,
    ) -> StoreResult<Self> {
        schema.validate()?;
        let metric = match schema.vector.metric {
            Metric::Cosine => recd_index::Metric::Cosine,
            Metric::Ip => recd_index::Metric::InnerProduct,
            Metric::L2 => recd_index::Metric::L2,
        };
        let index = VectorIndex::new(schema.vector.dim, metric, options.hnsw);
        let mut catalog = Catalog::new(&schema);
        for (id, score) in loaded.popularity {
            catalog.set_popularity(&id, score);
        }
        let mut vectors = Vec::new();
        let mut skipped = 0usize;
        for mut item in loaded.items {
            let slot = catalog.next_slot();
            if let Some(v) = item.vector.take() {
                // A data dir must always reopen. A stored vector the index cannot take (one
                // written before validation covered it, or by an older version) costs that
                // item its vector, not the whole server: the item stays, served by the
                // non-vector sources until training or an upsert gives it a valid one.
                match check_vector(&v, &schema) {
                    Ok(()) => {
                        item.vector = Some(v.clone());
                        vectors.push((slot, v));
                    }
                    Err(e) => {
                        skipped += 1;
                        tracing::warn!(item = %item.id, cause = %e.message, "stored vector skipped");
                    }
                }
            }
            catalog.put(slot, item);
        }
        if skipped > 0 {
            tracing::warn!(skipped, "items reopened without their stored vector");
        }
        if let Err(e) = index.insert_batch(&vectors) {
            // Unreachable after check_vector (the same bounds); should the two ever disagree,
            // insert one by one so that only the offending vectors are lost.
            tracing::warn!(cause = %e, "batch insert of stored vectors failed; inserting one by one");
            for (slot, v) in &vectors {
                if let Err(e) = index.insert_batch(std::slice::from_ref(&(*slot, v.clone()))) {
                    tracing::warn!(slot, cause = %e, "stored vector skipped");
                }
            }
        }
        let users = Users::default();
        for (id, state) in loaded.users {
            users.put(&id, state);
        }
        Ok(Self {
            inner: Arc::new(Inner {
                schema,
                settings,
                index,
                catalog: RwLock::new(catalog),
                users,
                write_lock: Mutex::new(()),
                durable,
                memory_log: Mutex::new(Vec::new()),
            }),
        })
    }

    /// Runs a write on the blocking pool.
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let _serial = inner.write_lock.lock();
            f(&inner)
        })
        .await
        .map_err(|e| StoreError::Internal(format!("write task failed: {e}")))?
    }

    /// Makes every acknowledged write durable now (used at shutdown).
    pub fn flush(&self) -> StoreResult<()> {
        self.inner.durable.as_ref().map_or(Ok(()), Durable::flush)
    }
}

fn spawn_flusher(inner: Weak<Inner>) {
    std::thread::Builder::new()
        .name("recd-fsync".into())
        .spawn(move || {
            loop {
                std::thread::sleep(Duration::from_secs(1));
                let Some(inner) = inner.upgrade() else { return };
                if let Some(Err(e)) = inner.durable.as_ref().map(Durable::flush) {
                    tracing::error!(cause = %e, "periodic fsync failed");
                }
            }
        })
        .map(drop)
        .unwrap_or_else(|e| tracing::error!(cause = %e, "cannot start the fsync thread; writes become durable at shutdown"));
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(Err(e)) = self.durable.as_ref().map(Durable::flush) {
            tracing::error!(cause = %e, "final fsync failed");
        }
    }
}

impl Inner {
    fn commit(&self, batch: &Batch<'_>) -> StoreResult<()> {
        match &self.durable {
            Some(d) => d.commit(batch),
            None => {
                self.memory_log
                    .lock()
                    .extend(batch.events.iter().map(|e| (*e).clone()));
                if let Some(id) = batch.deleted_user {
                    self.memory_log.lock().retain(|e| e.user_id != id);
                }
                Ok(())
            }
        }
    }

    fn upsert(&self, batch: Vec<ItemUpsert>) -> StoreResult<usize> {
        // Last write wins within a batch, as if the items had come one by one.
        let mut by_id: HashMap<String, usize> = HashMap::new();
        let mut items: Vec<Item> = Vec::with_capacity(batch.len());
        {
            let catalog = self.catalog.read();
            for ItemUpsert {
                mut item,
                keep_vector,
            } in batch
            {
                if keep_vector && item.vector.is_none() {
                    item.vector = catalog.get(&item.id).and_then(|old| old.vector.clone());
                }
                if let Some(v) = &item.vector {
                    check_vector(v, &self.schema).map_err(|e| {
                        ValidationError::new(format!("item '{}': {}", item.id, e.message))
                    })?;
                }
                match by_id.get(&item.id) {
                    Some(&i) => items[i] = item,
                    None => {
                        by_id.insert(item.id.clone(), items.len());
                        items.push(item);
                    }
                }
            }
        }
        self.commit(&Batch {
            items: items.iter().collect(),
            ..Batch::default()
        })?;

        // Slots: an existing id keeps its slot (the index updates the node in place).
        let (mut next, existing): (u32, Vec<Option<u32>>) = {
            let catalog = self.catalog.read();
            (
                catalog.next_slot(),
                items.iter().map(|it| catalog.slot_of(&it.id)).collect(),
            )
        };
        let slots: Vec<u32> = existing
            .into_iter()
            .map(|s| {
                s.unwrap_or_else(|| {
                    next += 1;
                    next - 1
                })
            })
            .collect();
        let vectors: Vec<(u32, Vec<f32>)> = items
            .iter()
            .zip(&slots)
            .filter_map(|(it, slot)| it.vector.clone().map(|v| (*slot, v)))
            .collect();
        // Link vectors before publishing the items: a search never meets a published item
        // whose vector is missing, only (briefly) a vector whose item is not yet visible.
        self.index
            .insert_batch(&vectors)
            .map_err(|e| StoreError::Internal(format!("index rejected a validated vector: {e}")))?;
        let n = items.len();
        let mut catalog = self.catalog.write();
        for (item, slot) in items.into_iter().zip(slots) {
            if item.vector.is_none() {
                self.index.remove(slot);
            }
            catalog.put(slot, item);
        }
        Ok(n)
    }

    fn delete_item(&self, id: &str) -> StoreResult<bool> {
        if self.catalog.read().slot_of(id).is_none() {
            return Ok(false);
        }
        self.commit(&Batch {
            deleted_items: vec![id],
            ..Batch::default()
        })?;
        let slot = self.catalog.write().remove(id);
        if let Some(slot) = slot {
            self.index.remove(slot);
        }
        Ok(true)
    }

    fn set_item_vectors(&self, vectors: Vec<(String, Vec<f32>)>) -> StoreResult<usize> {
        let mut updated: Vec<Item> = Vec::new();
        let mut slots = Vec::new();
        {
            let catalog = self.catalog.read();
            for (id, v) in vectors {
                check_vector(&v, &self.schema).map_err(|e| {
                    ValidationError::new(format!("vector of item '{id}': {}", e.message))
                })?;
                if let (Some(slot), Some(item)) = (catalog.slot_of(&id), catalog.get(&id)) {
                    let mut item = Item::clone(item);
                    item.vector = Some(v);
                    updated.push(item);
                    slots.push(slot);
                }
            }
        }
        self.commit(&Batch {
            items: updated.iter().collect(),
            ..Batch::default()
        })?;
        let pairs: Vec<(u32, Vec<f32>)> = slots
            .iter()
            .zip(&updated)
            .filter_map(|(s, it)| it.vector.clone().map(|v| (*s, v)))
            .collect();
        self.index
            .insert_batch(&pairs)
            .map_err(|e| StoreError::Internal(format!("index rejected a validated vector: {e}")))?;
        let mut catalog = self.catalog.write();
        for (slot, (_, v)) in slots.iter().zip(pairs) {
            catalog.set_vector(*slot, v);
        }
        Ok(updated.len())
    }

    fn apply_events(&self, events: &[Event]) -> StoreResult<()> {
        let session = &self.settings.session;
        let mut states: HashMap<&str, UserState> = HashMap::new();
        let mut popularity: HashMap<&str, f64> = HashMap::new();
        {
            let catalog = self.catalog.read();
            for e in events {
                let state = states
                    .entry(e.user_id.as_str())
                    .or_insert_with(|| self.users.get(&e.user_id).unwrap_or_default());
                let vector = catalog.get(&e.item_id).and_then(|it| it.vector.as_deref());
                state.apply(e, vector, session);
                let weight = session.weights.weight(e.kind, e.value);
                if let Some(inc) = self
                    .settings
                    .popularity
                    .log_increment(weight, e.timestamp_ms)
                {
                    let current = popularity
                        .get(e.item_id.as_str())
                        .copied()
                        .unwrap_or_else(|| catalog.popularity_of(&e.item_id));
                    popularity.insert(e.item_id.as_str(), log_add(current, inc));
                }
            }
        }
        self.commit(&Batch {
            users: states.iter().map(|(id, s)| (*id, s)).collect(),
            popularity: popularity.iter().map(|(id, s)| (*id, *s)).collect(),
            events: events.iter().collect(),
            ..Batch::default()
        })?;
        {
            let mut catalog = self.catalog.write();
            for (id, score) in popularity {
                catalog.set_popularity(id, score);
            }
        }
        for (id, state) in states {
            self.users.put(id, state);
        }
        Ok(())
    }

    fn delete_user(&self, id: &str) -> StoreResult<bool> {
        let existed = self.users.get(id).is_some();
        self.commit(&Batch {
            deleted_user: Some(id),
            ..Batch::default()
        })?;
        self.users.remove(id);
        Ok(existed)
    }

    /// The second half of [`Store::rebuild_sessions`], under the write lock: `snapshot` is
    /// the users' events read beforehand (durable store), to which the events logged since
    /// are added here, where no event can slip in between.
    fn rebuild_sessions(&self, users: &[String], snapshot: Option<Logged>) -> StoreResult<usize> {
        let wanted: HashSet<&str> = users.iter().map(String::as_str).collect();
        let mut logged = match (&self.durable, snapshot) {
            (Some(d), Some((mut seen, next))) => {
                for (user, events) in d.user_events(&wanted, next)?.0 {
                    seen.entry(user).or_default().extend(events);
                }
                seen
            }
            (Some(d), None) => d.user_events(&wanted, 0)?.0,
            (None, _) => {
                let mut out: HashMap<String, Vec<Event>> = HashMap::new();
                for e in self.memory_log.lock().iter() {
                    if wanted.contains(e.user_id.as_str()) {
                        out.entry(e.user_id.clone()).or_default().push(e.clone());
                    }
                }
                out
            }
        };
        let mut states: Vec<(&str, UserState)> = users
            .iter()
            .filter_map(|id| self.users.get(id).map(|s| (id.as_str(), s)))
            .collect();
        // Every applied event is logged and counted once, so the events found add up to the
        // counters unless the snapshot is out of date in a way the tail cannot fix (the user
        // was forgotten and came back meanwhile): read those users' events again, here.
        let stale: HashSet<&str> = states
            .iter()
            .filter(|(id, s)| logged.get(*id).map_or(0, Vec::len) as u64 != s.event_count())
            .map(|(id, _)| *id)
            .collect();
        if let (Some(d), false) = (&self.durable, stale.is_empty()) {
            let mut again = d.user_events(&stale, 0)?.0;
            for id in &stale {
                logged.insert(id.to_string(), again.remove(*id).unwrap_or_default());
            }
        }
        {
            let catalog = self.catalog.read();
            for (id, state) in &mut states {
                let events = logged.get(*id).map_or(&[][..], Vec::as_slice);
                state.session = UserState::session_from(
                    events,
                    |item| catalog.get(item).and_then(|it| it.vector.as_deref()),
                    &self.settings.session,
                );
            }
        }
        self.commit(&Batch {
            users: states.iter().map(|(id, s)| (*id, s)).collect(),
            ..Batch::default()
        })?;
        let n = states.len();
        for (id, state) in states {
            self.users.put(id, state);
        }
        Ok(n)
    }

    fn set_user_vectors(&self, vectors: Vec<(String, Vec<f32>)>) -> StoreResult<usize> {
        let mut states = Vec::with_capacity(vectors.len());
        for (id, v) in vectors {
            check_vector(&v, &self.schema).map_err(|e| {
                ValidationError::new(format!("vector of user '{id}': {}", e.message))
            })?;
            let mut state = self.users.get(&id).unwrap_or_default();
            state.long_term = Some(v);
            states.push((id, state));
        }
        self.commit(&Batch {
            users: states.iter().map(|(id, s)| (id.as_str(), s)).collect(),
            ..Batch::default()
        })?;
        let n = states.len();
        for (id, state) in states {
            self.users.put(&id, state);
        }
        Ok(n)
    }
}

fn check_query(query: &[f32], schema: &Schema) -> StoreResult<()> {
    if query.len() != schema.vector.dim || query.iter().any(|x| !x.is_finite()) {
        return Err(StoreError::Invalid(ValidationError::new(format!(
            "the query vector must have {} finite components",
            schema.vector.dim
        ))));
    }
    Ok(())
}

#[async_trait]
impl Store for EmbeddedStore {
    fn backend(&self) -> &'static str {
        "embedded"
    }

    fn schema(&self) -> &Schema {
        &self.inner.schema
    }

    async fn ping(&self) -> StoreResult<()> {
        Ok(())
    }

    async fn counts(&self) -> StoreResult<Counts> {
        Ok(Counts {
            items: self.inner.catalog.read().len() as u64,
            users: self.inner.users.len() as u64,
        })
    }

    async fn upsert_items(&self, items: Vec<ItemUpsert>) -> StoreResult<usize> {
        self.write(move |inner| inner.upsert(items)).await
    }

    async fn get_items(&self, ids: &[String]) -> StoreResult<Vec<Option<Item>>> {
        let catalog = self.inner.catalog.read();
        Ok(ids
            .iter()
            .map(|id| catalog.get(id).map(|it| Item::clone(it)))
            .collect())
    }

    async fn delete_item(&self, id: &str) -> StoreResult<bool> {
        let id = id.to_string();
        self.write(move |inner| inner.delete_item(&id)).await
    }

    async fn set_item_vectors(&self, vectors: Vec<(String, Vec<f32>)>) -> StoreResult<usize> {
        self.write(move |inner| inner.set_item_vectors(vectors))
            .await
    }

    async fn knn(&self, query: &[f32], k: usize, filter: &Filter) -> StoreResult<Vec<Hit>> {
        check_query(query, &self.inner.schema)?;
        let catalog = self.inner.catalog.read();
        let allowed = catalog.allowed(filter);
        if k == 0 || allowed.as_ref().is_some_and(|a| a.is_empty()) {
            return Ok(Vec::new());
        }
        let hits = self
            .inner
            .index
            .search(query, k, allowed.as_ref())
            .map_err(|e| StoreError::Invalid(ValidationError::new(e.to_string())))?;
        Ok(hits
            .into_iter()
            .filter_map(|h| {
                catalog.item_at(h.id).map(|it| Hit {
                    item: it.clone(),
                    score: h.score,
                })
            })
            .collect())
    }

    async fn popular(&self, k: usize, filter: &Filter) -> StoreResult<Vec<PopularHit>> {
        let catalog = self.inner.catalog.read();
        let allowed = catalog.allowed(filter);
        Ok(catalog
            .popular(k, allowed.as_ref())
            .into_iter()
            .filter_map(|(slot, log_score)| {
                catalog.item_at(slot).map(|it| PopularHit {
                    item: it.clone(),
                    log_score,
                })
            })
            .collect())
    }

    async fn text_search(
        &self,
        terms: &[String],
        k: usize,
        filter: &Filter,
    ) -> StoreResult<Vec<Arc<Item>>> {
        let catalog = self.inner.catalog.read();
        let allowed = catalog.allowed(filter);
        Ok(catalog
            .text_search(terms, k, allowed.as_ref())
            .into_iter()
            .filter_map(|slot| catalog.item_at(slot).cloned())
            .collect())
    }

    async fn apply_events(&self, events: &[Event]) -> StoreResult<()> {
        let events = events.to_vec();
        self.write(move |inner| inner.apply_events(&events)).await
    }

    async fn get_user(&self, id: &str) -> StoreResult<Option<UserState>> {
        Ok(self.inner.users.get(id))
    }

    async fn delete_user(&self, id: &str) -> StoreResult<bool> {
        let id = id.to_string();
        self.write(move |inner| inner.delete_user(&id)).await
    }

    async fn set_user_vectors(&self, vectors: Vec<(String, Vec<f32>)>) -> StoreResult<usize> {
        self.write(move |inner| inner.set_user_vectors(vectors))
            .await
    }

    async fn events(&self) -> StoreResult<Vec<Event>> {
        match &self.inner.durable {
            Some(d) => d.events(),
            None => Ok(self.inner.memory_log.lock().clone()),
        }
    }

    async fn rebuild_sessions(&self, users: &[String]) -> StoreResult<usize> {
        let mut users = users.to_vec();
        users.sort_unstable();
        users.dedup();
        if users.is_empty() {
            return Ok(0);
        }
        // The log scan, the slow part, reads a snapshot beside the writers; the write lock
        // is then held only for the events logged since, the math and the commit.
        let snapshot = if self.inner.durable.is_some() {
            let (inner, ids) = (self.inner.clone(), users.clone());
            let scan = tokio::task::spawn_blocking(move || {
                let wanted: HashSet<&str> = ids.iter().map(String::as_str).collect();
                inner
                    .durable
                    .as_ref()
                    .map(|d| d.user_events(&wanted, 0))
                    .transpose()
            });
            scan.await
                .map_err(|e| StoreError::Internal(format!("log scan failed: {e}")))??
        } else {
            None
        };
        self.write(move |inner| inner.rebuild_sessions(&users, snapshot))
            .await
    }
}

#[cfg(test)]
mod tests {
    use recd_core::EventType;
    use serde_json::json;

    use super::*;

    fn schema() -> Schema {
        Schema::demo(2)
    }

    fn upsert(v: serde_json::Value) -> ItemUpsert {
        ItemUpsert::from_json(&v, &schema()).unwrap()
    }

    fn event(user: &str, item: &str, kind: EventType, t: i64) -> Event {
        Event {
            user_id: user.into(),
            item_id: item.into(),
            kind,
            value: None,
            timestamp_ms: t,
            recommendation_id: None,
        }
    }

    #[tokio::test]
    async fn everything_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let options = EmbeddedOptions {
            fsync: Fsync::Always,
            ..Default::default()
        };
        {
            let s = EmbeddedStore::open(
                dir.path(),
                Some(schema()),
                ModelSettings::default(),
                options.clone(),
            )
            .unwrap();
            s.upsert_items(vec![
                upsert(json!({"id":"a","vector":[1.0,0.0],"category":"x","price":5})),
                upsert(json!({"id":"b","vector":[0.0,1.0],"category":"y"})),
                upsert(json!({"id":"gone","vector":[1.0,1.0]})),
            ])
            .await
            .unwrap();
            s.delete_item("gone").await.unwrap();
            s.apply_events(&[
                event("u", "a", EventType::Purchase, 10),
                event("u", "b", EventType::View, 20),
            ])
            .await
            .unwrap();
        }
        let s = EmbeddedStore::open(dir.path(), None, ModelSettings::default(), options).unwrap();
        assert_eq!(s.counts().await.unwrap(), Counts { items: 2, users: 1 });
        let u = s.get_user("u").await.unwrap().unwrap();
        assert!(u.purchased.contains("a") && u.session.is_some());
        assert_eq!(s.events().await.unwrap().len(), 2);
        let hits = s.knn(&[1.0, 0.1], 10, &Filter::all()).await.unwrap();
        assert_eq!(
            hits.iter().map(|h| h.item.id.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        let pop = s.popular(1, &Filter::all()).await.unwrap();
        assert_eq!(pop[0].item.id, "a");
        let f = Filter::parse(&json!({"category":{"any":["y"]}}), &schema()).unwrap();
        assert_eq!(s.knn(&[1.0, 0.0], 10, &f).await.unwrap()[0].item.id, "b");
        // a different schema is refused
        let mut other = schema();
        other.vector.dim = 3;
        assert!(
            EmbeddedStore::open(
                dir.path(),
                Some(other),
                ModelSettings::default(),
                EmbeddedOptions::default()
            )
            .is_err()
        );
    }

    #[tokio::test]
    async fn a_stored_vector_the_index_refuses_never_stops_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = EmbeddedStore::open(
                dir.path(),
                Some(schema()),
                ModelSettings::default(),
                EmbeddedOptions::default(),
            )
            .unwrap();
            s.upsert_items(vec![upsert(json!({"id":"good","vector":[1.0,0.0]}))])
                .await
                .unwrap();
            // Written behind validation's back, as an older version could have.
            let bad = Item {
                id: "huge".into(),
                vector: Some(vec![1e19, 0.1]),
                fields: Default::default(),
            };
            s.inner
                .commit(&Batch {
                    items: vec![&bad],
                    ..Batch::default()
                })
                .unwrap();
            s.flush().unwrap();
        }
        let s = EmbeddedStore::open(
            dir.path(),
            None,
            ModelSettings::default(),
            EmbeddedOptions::default(),
        )
        .unwrap();
        assert_eq!(s.counts().await.unwrap().items, 2);
        let huge = s
            .get_items(&["huge".into()])
            .await
            .unwrap()
            .remove(0)
            .unwrap();
        assert_eq!(
            huge.vector, None,
            "the refused vector is dropped, the item kept"
        );
        let hits = s.knn(&[1.0, 0.0], 10, &Filter::all()).await.unwrap();
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].item.id, "good");
    }

    #[tokio::test]
    async fn vectors_whose_norm_overflows_are_refused_before_anything_is_written() {
        let s = EmbeddedStore::in_memory(schema(), ModelSettings::default()).unwrap();
        let overflow = Item {
            id: "a".into(),
            vector: Some(vec![1e19, 0.1]),
            fields: Default::default(),
        };
        let r = s
            .upsert_items(vec![ItemUpsert {
                item: overflow,
                keep_vector: false,
            }])
            .await;
        assert!(matches!(r, Err(StoreError::Invalid(_))), "{r:?}");
        s.upsert_items(vec![upsert(json!({"id":"b","vector":[1.0,0.0]}))])
            .await
            .unwrap();
        let r = s
            .set_item_vectors(vec![("b".into(), vec![1e-45, 1e-45])])
            .await;
        assert!(matches!(r, Err(StoreError::Invalid(_))), "{r:?}");
        assert_eq!(s.counts().await.unwrap().items, 1);
        let b = s.get_items(&["b".into()]).await.unwrap().remove(0).unwrap();
        assert_eq!(b.vector, Some(vec![1.0, 0.0]));
    }

    #[tokio::test]
    async fn upsert_without_vector_keeps_it_and_null_removes_it() {
        let s = EmbeddedStore::in_memory(schema(), ModelSettings::default()).unwrap();
        s.upsert_items(vec![upsert(json!({"id":"a","vector":[1.0,0.0],"price":1}))])
            .await
            .unwrap();
        s.upsert_items(vec![upsert(json!({"id":"a","price":2}))])
            .await
            .unwrap();
        let a = s.get_items(&["a".into()]).await.unwrap().remove(0).unwrap();
        assert_eq!(a.vector, Some(vec![1.0, 0.0]));
        assert_eq!(a.field("price").and_then(|v| v.as_number()), Some(2.0));
        s.upsert_items(vec![upsert(json!({"id":"a","vector":null}))])
            .await
            .unwrap();
        assert!(
            s.knn(&[1.0, 0.0], 5, &Filter::all())
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(s.popular(5, &Filter::all()).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_failed_batch_writes_nothing() {
        let s = EmbeddedStore::in_memory(schema(), ModelSettings::default()).unwrap();
        let bad = Item {
            id: "b".into(),
            vector: Some(vec![f32::NAN, 1.0]),
            fields: Default::default(),
        };
        let r = s
            .upsert_items(vec![
                upsert(json!({"id":"a","vector":[1.0,0.0]})),
                ItemUpsert {
                    item: bad,
                    keep_vector: false,
                },
            ])
            .await;
        assert!(matches!(r, Err(StoreError::Invalid(_))));
        assert_eq!(s.counts().await.unwrap().items, 0);
    }
}
