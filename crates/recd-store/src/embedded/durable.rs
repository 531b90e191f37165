//! The embedded backend's durable file: a redb database holding the schema, items, user
//! state, item popularity and the event log.
//!
//! Memory is the serving copy; this file is the truth a restart (or a kill -9) comes back
//! to. Every mutation commits here *before* it is published in memory and acknowledged,
//! so with `fsync = "always"` (redb `Durability::Immediate`) no acknowledged write is lost.
//! With `everysec`, commits are non-durable and a background flusher makes them durable
//! once a second (at most about a second lost on a crash, as with Redis's AOF everysec);
//! with `never`, only the flush at shutdown makes them durable.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use recd_core::{Event, Item, Schema, UserState};
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
    WriteTransaction,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{StoreError, StoreResult};

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const ITEMS: TableDefinition<&str, &[u8]> = TableDefinition::new("items");
const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("users");
const POPULARITY: TableDefinition<&str, f64> = TableDefinition::new("popularity");
const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");

/// When commits reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fsync {
    /// Every acknowledged write is on disk.
    Always,
    /// Writes reach the disk within about a second.
    #[default]
    Everysec,
    /// Writes reach the disk at shutdown (or with the next `always` flush).
    Never,
}

/// Everything read back at start-up.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The stored schema, if the file was initialised before.
    pub schema: Option<Schema>,
    /// Every item.
    pub items: Vec<Item>,
    /// Every user.
    pub users: Vec<(String, UserState)>,
    /// Popularity by item id.
    pub popularity: Vec<(String, f64)>,
}

/// One batch of changes, committed atomically.
#[derive(Debug, Default)]
pub struct Batch<'a> {
    /// Items to write (whole).
    pub items: Vec<&'a Item>,
    /// Item ids to remove.
    pub deleted_items: Vec<&'a str>,
    /// Users to write (whole state).
    pub users: Vec<(&'a str, &'a UserState)>,
    /// A user to forget, with their events.
    pub deleted_user: Option<&'a str>,
    /// Popularity values to write.
    pub popularity: Vec<(&'a str, f64)>,
    /// Events to append to the log.
    pub events: Vec<&'a Event>,
}

/// The redb file and its write policy.
#[derive(Debug)]
pub struct Durable {
    db: Database,
    fsync: Fsync,
    /// Non-durable commits exist that the flusher has not yet made durable.
    dirty: AtomicBool,
    /// Sequence number of the next event in the log.
    next_event: AtomicU64,
}

fn internal(e: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(e.to_string())
}

fn decode<T: DeserializeOwned>(bytes: &[u8], what: &str) -> StoreResult<T> {
    postcard::from_bytes(bytes)
        .map_err(|e| StoreError::Internal(format!("corrupt {what} record: {e}")))
}

fn encode<T: Serialize>(value: &T) -> StoreResult<Vec<u8>> {
    postcard::to_stdvec(value).map_err(internal)
}

impl Durable {
    /// Opens (or creates) `dir/recd.redb` and reads everything back.
    pub fn open(dir: &Path, fsync: Fsync) -> StoreResult<(Durable, Loaded)> {
        std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::Internal(format!("cannot create data dir {}: {e}", dir.display()))
        })?;
        let path = dir.join("recd.redb");
        let db = Database::create(&path)
            .map_err(|e| StoreError::Internal(format!("cannot open {}: {e}", path.display())))?;
        // Create every table once, so that readers never meet a missing table.
        let txn = db.begin_write().map_err(internal)?;
        for t in [META, ITEMS, USERS] {
            txn.open_table(t).map_err(internal)?;
        }
        txn.open_table(POPULARITY).map_err(internal)?;
        txn.open_table(EVENTS).map_err(internal)?;
        txn.commit().map_err(internal)?;

        let mut loaded = Loaded::default();
        let read = db.begin_read().map_err(internal)?;
        let meta = read.open_table(META).map_err(internal)?;
        if let Some(bytes) = meta.get("schema").map_err(internal)? {
            loaded.schema = Some(serde_json::from_slice(bytes.value()).map_err(internal)?);
        }
        for row in read
            .open_table(ITEMS)
            .map_err(internal)?
            .iter()
            .map_err(internal)?
        {
            let (_, v) = row.map_err(internal)?;
            loaded.items.push(decode(v.value(), "item")?);
        }
        for row in read
            .open_table(USERS)
            .map_err(internal)?
            .iter()
            .map_err(internal)?
        {
            let (k, v) = row.map_err(internal)?;
            loaded
                .users
                .push((k.value().to_string(), decode(v.value(), "user")?));
        }
        for row in read
            .open_table(POPULARITY)
            .map_err(internal)?
            .iter()
            .map_err(internal)?
        {
            let (k, v) = row.map_err(internal)?;
            loaded.popularity.push((k.value().to_string(), v.value()));
        }
        let events = read.open_table(EVENTS).map_err(internal)?;
        let next_event = events
            .last()
            .map_err(internal)?
            .map_or(0, |(k, _)| k.value() + 1);
        drop(events);
        drop(read);
        let durable = Durable {
            db,
            fsync,
            dirty: AtomicBool::new(false),
            next_event: AtomicU64::new(next_event),
        };
        Ok((durable, loaded))
    }

    /// Stores the schema (first open of a data dir).
    pub fn save_schema(&self, schema: &Schema) -> StoreResult<()> {
        let bytes = serde_json::to_vec(schema).map_err(internal)?;
        self.write(|txn| {
            txn.open_table(META)
                .map_err(internal)?
                .insert("schema", bytes.as_slice())
                .map_err(internal)?;
            Ok(())
        })
    }

    /// Commits one batch atomically, under the configured fsync policy.
    pub fn commit(&self, batch: &Batch<'_>) -> StoreResult<()> {
        self.write(|txn| {
            {
                let mut items = txn.open_table(ITEMS).map_err(internal)?;
                for item in &batch.items {
                    items
                        .insert(item.id.as_str(), encode(item)?.as_slice())
                        .map_err(internal)?;
                }
                for id in &batch.deleted_items {
                    items.remove(*id).map_err(internal)?;
                }
            }
            {
                let mut users = txn.open_table(USERS).map_err(internal)?;
                for (id, state) in &batch.users {
                    users
                        .insert(*id, encode(state)?.as_slice())
                        .map_err(internal)?;
                }
                if let Some(id) = batch.deleted_user {
                    users.remove(id).map_err(internal)?;
                }
            }
            {
                let mut pop = txn.open_table(POPULARITY).map_err(internal)?;
                for (id, score) in &batch.popularity {
                    pop.insert(*id, *score).map_err(internal)?;
                }
            }
            let mut log = txn.open_table(EVENTS).map_err(internal)?;
            for event in &batch.events {
                let seq = self.next_event.fetch_add(1, Ordering::Relaxed);
                log.insert(seq, encode(event)?.as_slice())
                    .map_err(internal)?;
            }
            if let Some(id) = batch.deleted_user {
                // The log is keyed by sequence: forgetting a user means a scan. Rare (GDPR
                // requests), and it keeps the log in time order for training.
                log.retain(|_, bytes| {
                    decode::<Event>(bytes, "event")
                        .map(|e| e.user_id != id)
                        .unwrap_or(true)
                })
                .map_err(internal)?;
            }
            Ok(())
        })
    }

    /// The event log, in order.
    pub fn events(&self) -> StoreResult<Vec<Event>> {
        let read = self.db.begin_read().map_err(internal)?;
        let table = read.open_table(EVENTS).map_err(internal)?;
        let mut out = Vec::with_capacity(table.len().map_err(internal)? as usize);
        for row in table.iter().map_err(internal)? {
            let (_, v) = row.map_err(internal)?;
            out.push(decode(v.value(), "event")?);
        }
        Ok(out)
    }

    /// The logged events of `users` with sequence numbers from `from` on, per user in log
    /// order, and the sequence number to continue from. Reads one consistent snapshot, so
    /// it runs beside writers (the scan is the slow part of a session rebuild).
    pub fn user_events(
        &self,
        users: &HashSet<&str>,
        from: u64,
    ) -> StoreResult<(HashMap<String, Vec<Event>>, u64)> {
        let read = self.db.begin_read().map_err(internal)?;
        let table = read.open_table(EVENTS).map_err(internal)?;
        let mut out: HashMap<String, Vec<Event>> = HashMap::new();
        let mut next = from;
        for row in table.range(from..).map_err(internal)? {
            let (k, v) = row.map_err(internal)?;
            next = k.value() + 1;
            let event: Event = decode(v.value(), "event")?;
            if users.contains(event.user_id.as_str()) {
                out.entry(event.user_id.clone()).or_default().push(event);
            }
        }
        Ok((out, next))
    }

    /// Makes every earlier commit durable (an empty `Immediate` commit), if any is pending.
    pub fn flush(&self) -> StoreResult<()> {
        if self.dirty.swap(false, Ordering::AcqRel) {
            let mut txn = self.db.begin_write().map_err(internal)?;
            txn.set_durability(Durability::Immediate)
                .map_err(internal)?;
            txn.commit().map_err(internal)?;
        }
        Ok(())
    }

    /// The fsync policy.
    pub fn fsync(&self) -> Fsync {
        self.fsync
    }

    fn write(&self, f: impl FnOnce(&WriteTransaction) -> StoreResult<()>) -> StoreResult<()> {
        let mut txn = self.db.begin_write().map_err(internal)?;
        let durability = match self.fsync {
            Fsync::Always => Durability::Immediate,
            Fsync::Everysec | Fsync::Never => Durability::None,
        };
        txn.set_durability(durability).map_err(internal)?;
        f(&txn)?;
        txn.commit().map_err(internal)?;
        if self.fsync != Fsync::Always {
            self.dirty.store(true, Ordering::Release);
        }
        Ok(())
    }
}
