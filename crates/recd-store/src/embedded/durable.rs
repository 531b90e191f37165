//! The embedded backend's redb file: the state as of the last checkpoint (schema, items,
//! user state, item popularity, the event log and its per-user index).
//!
//! Nothing on the request path writes here: requests append to the log (`log`), and a
//! checkpoint ([`Durable::absorb`]) applies the logged records in one durable redb
//! transaction that also records the last sequence number it applied (`META["applied"]`).
//! Start-up loads this file and replays the log records after that number, so applying a
//! record twice is impossible: it is skipped by its sequence number.
//!
//! `USER_EVENT_SEQS` indexes every row of `EVENTS` by user (runs of a user's sequence
//! numbers, one row per user per checkpoint: `event_index`), so that forgetting a user and
//! reading one user's events cost that user's events, not a scan of the log.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::RwLock;
use recd_core::popularity::log_add;
use recd_core::{Event, Item, Schema, UserState};
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, Table,
    TableDefinition,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::event_index::{self, Pending};
use super::record::{Op, decode_user};
use crate::error::{StoreError, StoreResult};

/// The data file's name in its dir.
const FILE: &str = "recd.redb";

pub(super) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const ITEMS: TableDefinition<&str, &[u8]> = TableDefinition::new("items");
const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("users");
const POPULARITY: TableDefinition<&str, f64> = TableDefinition::new("popularity");
const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
/// The per-user event index: `(user, first seq)` → the run's packed sequence numbers
/// ([`event_index`]).
const USER_EVENT_SEQS: TableDefinition<(&str, u64), &[u8]> =
    TableDefinition::new("user_event_seqs");
/// The index's first layout, one row per event: `(user, seq)`. Read once, at the first open
/// by this version, to build `USER_EVENT_SEQS`, and then deleted.
const USER_EVENTS: TableDefinition<(&str, u64), ()> = TableDefinition::new("user_events");

/// `META` key: the last sequence number absorbed (u64 LE).
const APPLIED: &str = "applied";
/// `META` key: every user row includes the records up to this sequence number (u64 LE).
/// A background checkpoint stores only a share of the changed users (`dirty`), so this
/// mark trails `APPLIED` by up to about `replay_records`: the oldest change not stored
/// yet. Recovery's absorption does not move it (it stores the states it replays
/// afterwards, [`Durable::store_users`]), so after a crash between the two the records
/// after this mark are replayed again.
const USERS_APPLIED: &str = "users_applied";
/// `META` key: present once `USER_EVENTS` (the first layout) indexes every event. Versions
/// that wrote that layout build it at open when this key is absent; this version removes
/// the key with the table. Found present, it means such a version wrote the data dir since
/// (a downgrade and back), and its index is the complete one.
const INDEXED: &str = "user_events_indexed";
/// `META` key: present once `USER_EVENT_SEQS` indexes every event.
const SEQS_INDEXED: &str = "user_event_seqs_indexed";

/// Everything read back at start-up.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The stored schema, if the file was initialised before.
    pub schema: Option<Schema>,
    /// Every item.
    pub items: Vec<Item>,
    /// Every user, with the sequence number of the last record its state includes.
    pub users: Vec<(String, UserState, u64)>,
    /// Popularity by item id.
    pub popularity: Vec<(String, f64)>,
}

/// A user's logged events with their sequence numbers, in log order.
pub type SeqEvents = Vec<(u64, Event)>;

/// The redb file.
#[derive(Debug)]
pub struct Durable {
    path: PathBuf,
    /// redb's page cache bound (kept for [`reopen_if_needed`](Self::reopen_if_needed)).
    cache_bytes: u64,
    /// `None` only while [`reopen_if_needed`](Self::reopen_if_needed) replaces a database
    /// that hit an IO error (redb refuses every later write until it is reopened).
    db: RwLock<Option<Database>>,
    /// An IO error was met: the next checkpoint reopens the file first.
    needs_reopen: AtomicBool,
}

/// redb's page cache when the configuration does not say (`[embedded] cache_bytes`).
/// redb's own default is 1 GiB, which a long-running server fills as its event log grows:
/// the data the embedded store serves from lives in memory already (items, users, the
/// index), so redb's cache only speeds up reads of the log (user event reads, listings,
/// session rebuilds) and checkpoints.
pub const DEFAULT_CACHE_BYTES: u64 = 256 << 20;

fn create_database(path: &Path, cache_bytes: u64) -> Result<Database, redb::DatabaseError> {
    let cache = usize::try_from(cache_bytes).unwrap_or(usize::MAX);
    Database::builder().set_cache_size(cache).create(path)
}

fn decode<T: DeserializeOwned>(bytes: &[u8], what: &str) -> StoreResult<T> {
    postcard::from_bytes(bytes)
        .map_err(|e| StoreError::Internal(format!("corrupt {what} record: {e}")))
}

fn encode<T: Serialize>(value: &T) -> StoreResult<Vec<u8>> {
    postcard::to_stdvec(value).map_err(|e| StoreError::Internal(e.to_string()))
}

impl Durable {
    /// Whether `dir` holds a data file.
    pub fn exists(dir: &Path) -> bool {
        dir.join(FILE).exists()
    }

    /// Opens (or creates) `dir/recd.redb` with the default page cache
    /// ([`DEFAULT_CACHE_BYTES`]).
    #[cfg(test)]
    pub fn open(dir: &Path) -> StoreResult<Durable> {
        Self::open_with_cache(dir, DEFAULT_CACHE_BYTES)
    }

    /// Opens (or creates) `dir/recd.redb`, creating its tables and, for a data dir from
    /// before the per-user index, building it. redb keeps at most `cache_bytes` of pages
    /// in memory.
    pub fn open_with_cache(dir: &Path, cache_bytes: u64) -> StoreResult<Durable> {
        std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::Unavailable(format!("cannot create data dir {}: {e}", dir.display()))
        })?;
        let path = dir.join(FILE);
        let db = create_database(&path, cache_bytes)
            .map_err(|e| StoreError::Internal(format!("cannot open {}: {e}", path.display())))?;
        let durable = Durable {
            cache_bytes,
            path,
            db: RwLock::new(Some(db)),
            needs_reopen: AtomicBool::new(false),
        };
        durable.init()?;
        Ok(durable)
    }

    /// Maps a redb error: IO errors are [`StoreError::Unavailable`] (and call for a reopen),
    /// the rest are internal.
    pub(super) fn err(&self, e: impl Into<redb::Error>) -> StoreError {
        let e: redb::Error = e.into();
        match e {
            redb::Error::Io(_) | redb::Error::PreviousIo => {
                self.needs_reopen.store(true, Ordering::Relaxed);
                StoreError::Unavailable(format!("the data file {}: {e}", self.path.display()))
            }
            other => StoreError::Internal(format!("the data file: {other}")),
        }
    }

    /// One durable write transaction running `f`, committed when `f` returns `Ok`.
    pub(super) fn write<T>(
        &self,
        f: impl FnOnce(&redb::WriteTransaction) -> StoreResult<T>,
    ) -> StoreResult<T> {
        self.with_db(|db| {
            let txn = db.begin_write().map_err(|e| self.err(e))?;
            let out = f(&txn)?;
            txn.commit().map_err(|e| self.err(e))?;
            Ok(out)
        })
    }

    pub(super) fn with_db<T>(&self, f: impl FnOnce(&Database) -> StoreResult<T>) -> StoreResult<T> {
        let db = self.db.read();
        match db.as_ref() {
            Some(db) => f(db),
            None => Err(StoreError::Unavailable(format!(
                "the data file {} is being reopened after an IO error",
                self.path.display()
            ))),
        }
    }

    /// Closes and reopens the file if an IO error was met since it was opened.
    pub fn reopen_if_needed(&self) -> StoreResult<()> {
        if !self.needs_reopen.load(Ordering::Relaxed) {
            return Ok(());
        }
        let mut db = self.db.write();
        // Close first: redb holds a lock on the file.
        *db = None;
        let fresh = create_database(&self.path, self.cache_bytes).map_err(|e| {
            StoreError::Unavailable(format!("cannot reopen {}: {e}", self.path.display()))
        })?;
        *db = Some(fresh);
        self.needs_reopen.store(false, Ordering::Relaxed);
        tracing::info!(path = %self.path.display(), "data file reopened after an IO error");
        Ok(())
    }

    fn init(&self) -> StoreResult<()> {
        self.with_db(|db| {
            let txn = db.begin_write().map_err(|e| self.err(e))?;
            {
                for t in [META, ITEMS, USERS] {
                    txn.open_table(t).map_err(|e| self.err(e))?;
                }
                txn.open_table(POPULARITY).map_err(|e| self.err(e))?;
                txn.open_table(super::models::MODELS)
                    .map_err(|e| self.err(e))?;
                txn.open_table(super::models::MODEL_CHUNKS)
                    .map_err(|e| self.err(e))?;
                txn.open_table(super::models::MODEL_NEXT)
                    .map_err(|e| self.err(e))?;
                txn.open_table(EVENTS).map_err(|e| self.err(e))?;
                txn.open_table(USER_EVENT_SEQS).map_err(|e| self.err(e))?;
            }
            self.build_index_if_needed(&txn)?;
            txn.commit().map_err(|e| self.err(e))
        })
    }

    /// Builds `USER_EVENT_SEQS` when no complete one is there: from the first layout's
    /// index if a version that kept it wrote last, else (a data dir from before any index)
    /// from the events themselves.
    fn build_index_if_needed(&self, txn: &redb::WriteTransaction) -> StoreResult<()> {
        let (first_layout, packed) = {
            let meta = txn.open_table(META).map_err(|e| self.err(e))?;
            let has = |key| meta.get(key).map(|v| v.is_some()).map_err(|e| self.err(e));
            (has(INDEXED)?, has(SEQS_INDEXED)?)
        };
        if packed && !first_layout {
            return Ok(());
        }
        // Whatever is there was not kept up to date by the version that wrote last.
        txn.delete_table(USER_EVENT_SEQS).map_err(|e| self.err(e))?;
        let mut pending = Pending::default();
        let mut n = 0u64;
        if first_layout {
            let old = txn.open_table(USER_EVENTS).map_err(|e| self.err(e))?;
            for row in old.iter().map_err(|e| self.err(e))? {
                let (k, _) = row.map_err(|e| self.err(e))?;
                let (user, seq) = k.value();
                pending.push(user.to_string(), seq);
                n += 1;
            }
        } else {
            let events = txn.open_table(EVENTS).map_err(|e| self.err(e))?;
            for row in events.iter().map_err(|e| self.err(e))? {
                let (k, v) = row.map_err(|e| self.err(e))?;
                let event: Event = decode(v.value(), "event")?;
                pending.push(event.user_id, k.value());
                n += 1;
            }
        }
        let mut index = txn.open_table(USER_EVENT_SEQS).map_err(|e| self.err(e))?;
        put_runs(self, &mut index, &mut pending, &|| Ok(()))?;
        drop(index);
        txn.delete_table(USER_EVENTS).map_err(|e| self.err(e))?;
        let mut meta = txn.open_table(META).map_err(|e| self.err(e))?;
        meta.remove(INDEXED).map_err(|e| self.err(e))?;
        meta.insert(SEQS_INDEXED, [1u8].as_slice())
            .map_err(|e| self.err(e))?;
        if n > 0 {
            tracing::info!(events = n, "built the per-user event index");
        }
        Ok(())
    }

    /// The last sequence number absorbed: `META["applied"]`, or for a data dir written
    /// before the log existed, its last event's.
    pub fn applied(&self) -> StoreResult<u64> {
        self.with_db(|db| {
            let read = db.begin_read().map_err(|e| self.err(e))?;
            self.applied_in(&read)
        })
    }

    fn applied_in(&self, read: &redb::ReadTransaction) -> StoreResult<u64> {
        let meta = read.open_table(META).map_err(|e| self.err(e))?;
        let events = read.open_table(EVENTS).map_err(|e| self.err(e))?;
        applied_mark(self, &meta, &events)
    }

    /// The `USERS_APPLIED` mark: every user row includes the records up to it (0 for a
    /// data dir that never had it: every logged user record is replayed).
    pub fn users_applied(&self) -> StoreResult<u64> {
        self.with_db(|db| {
            let read = db.begin_read().map_err(|e| self.err(e))?;
            let meta = read.open_table(META).map_err(|e| self.err(e))?;
            Ok(mark(self, &meta, USERS_APPLIED)?.unwrap_or(0))
        })
    }

    /// Reads everything back (start-up, after the log was absorbed).
    pub fn load(&self) -> StoreResult<Loaded> {
        self.with_db(|db| {
            let mut loaded = Loaded::default();
            let read = db.begin_read().map_err(|e| self.err(e))?;
            let meta = read.open_table(META).map_err(|e| self.err(e))?;
            if let Some(bytes) = meta.get("schema").map_err(|e| self.err(e))? {
                loaded.schema = Some(
                    serde_json::from_slice(bytes.value())
                        .map_err(|e| StoreError::Internal(format!("corrupt schema: {e}")))?,
                );
            }
            let items = read.open_table(ITEMS).map_err(|e| self.err(e))?;
            for row in items.iter().map_err(|e| self.err(e))? {
                let (_, v) = row.map_err(|e| self.err(e))?;
                loaded.items.push(decode(v.value(), "item")?);
            }
            let users = read.open_table(USERS).map_err(|e| self.err(e))?;
            for row in users.iter().map_err(|e| self.err(e))? {
                let (k, v) = row.map_err(|e| self.err(e))?;
                let (state, seq) = decode_user(v.value(), crate::wall_clock_ms())
                    .map_err(|e| StoreError::Internal(format!("corrupt user record: {e}")))?;
                loaded.users.push((k.value().to_string(), state, seq));
            }
            let pop = read.open_table(POPULARITY).map_err(|e| self.err(e))?;
            for row in pop.iter().map_err(|e| self.err(e))? {
                let (k, v) = row.map_err(|e| self.err(e))?;
                loaded.popularity.push((k.value().to_string(), v.value()));
            }
            Ok(loaded)
        })
    }

    /// Stores the schema (first open of a data dir).
    pub fn save_schema(&self, schema: &Schema) -> StoreResult<()> {
        let bytes = serde_json::to_vec(schema).map_err(|e| StoreError::Internal(e.to_string()))?;
        self.with_db(|db| {
            let txn = db.begin_write().map_err(|e| self.err(e))?;
            txn.open_table(META)
                .map_err(|e| self.err(e))?
                .insert("schema", bytes.as_slice())
                .map_err(|e| self.err(e))?;
            txn.commit().map_err(|e| self.err(e))
        })
    }

    /// One checkpoint: `feed` hands records to the [`Absorb`] (skipping those up to
    /// `applied`), which are then committed in one durable transaction together with the
    /// new applied sequence number, which is returned. With `stop_before_commit` (a test
    /// fault) everything is applied and then dropped uncommitted.
    pub fn absorb(
        &self,
        applied: u64,
        stop_before_commit: bool,
        users: UserRows<'_>,
        feed: impl FnOnce(&mut Absorb<'_>) -> StoreResult<()>,
    ) -> StoreResult<u64> {
        self.with_db(|db| {
            let mut txn = db.begin_write().map_err(|e| self.err(e))?;
            txn.set_durability(Durability::Immediate)
                .map_err(|e| self.err(e))?;
            let absorbed = {
                let mut a = Absorb {
                    durable: self,
                    items: txn.open_table(ITEMS).map_err(|e| self.err(e))?,
                    users: txn.open_table(USERS).map_err(|e| self.err(e))?,
                    popularity: txn.open_table(POPULARITY).map_err(|e| self.err(e))?,
                    events: txn.open_table(EVENTS).map_err(|e| self.err(e))?,
                    index: txn.open_table(USER_EVENT_SEQS).map_err(|e| self.err(e))?,
                    meta: txn.open_table(META).map_err(|e| self.err(e))?,
                    user_rows: users,
                    touched: BTreeSet::new(),
                    increments: BTreeMap::new(),
                    pending_index: Pending::default(),
                    applied,
                    records: 0,
                };
                // redb's own mark rules: a checkpoint whose commit went through but that
                // reported a failure leaves its caller's mark behind, and skipping by that
                // alone applied its popularity increments (not idempotent) a second time.
                a.applied = a.applied.max(a.stored_applied()?);
                feed(&mut a)?;
                a.finish()?
            };
            let (new_applied, wrote) = absorbed;
            if !wrote {
                // Nothing new: no commit, no fsync.
                return Ok(new_applied);
            }
            if stop_before_commit {
                return Err(StoreError::Internal(
                    "checkpoint stopped before its commit (test fault)".into(),
                ));
            }
            txn.commit().map_err(|e| self.err(e))?;
            Ok(new_applied)
        })
    }

    /// Stores `users` as memory has them (`row` gives each one's row, `None` for a user
    /// who is gone), in one durable transaction that also marks every user row as
    /// including the records up to `applied`: recovery's replayed states.
    pub fn store_users(
        &self,
        users: &BTreeSet<String>,
        row: &RowOf<'_>,
        applied: u64,
    ) -> StoreResult<()> {
        self.with_db(|db| {
            let mut txn = db.begin_write().map_err(|e| self.err(e))?;
            txn.set_durability(Durability::Immediate)
                .map_err(|e| self.err(e))?;
            {
                let mut meta = txn.open_table(META).map_err(|e| self.err(e))?;
                if users.is_empty() && mark(self, &meta, USERS_APPLIED)? == Some(applied) {
                    return Ok(());
                }
                meta.insert(USERS_APPLIED, applied.to_le_bytes().as_slice())
                    .map_err(|e| self.err(e))?;
                let mut table = txn.open_table(USERS).map_err(|e| self.err(e))?;
                put_user_rows(self, &mut table, users, row, &|| Ok(()))?;
            }
            txn.commit().map_err(|e| self.err(e))
        })
    }

    /// The event log, in order.
    pub fn events(&self) -> StoreResult<Vec<Event>> {
        self.with_db(|db| {
            let read = db.begin_read().map_err(|e| self.err(e))?;
            let table = read.open_table(EVENTS).map_err(|e| self.err(e))?;
            let mut out = Vec::with_capacity(table.len().map_err(|e| self.err(e))? as usize);
            for row in table.iter().map_err(|e| self.err(e))? {
                let (_, v) = row.map_err(|e| self.err(e))?;
                out.push(decode(v.value(), "event")?);
            }
            Ok(out)
        })
    }

    /// Up to `take` absorbed events after the sequence number `after`, in order, with
    /// their sequence numbers (one bounded range read).
    pub fn events_after(&self, after: u64, take: usize) -> StoreResult<SeqEvents> {
        self.with_db(|db| {
            let read = db.begin_read().map_err(|e| self.err(e))?;
            let table = read.open_table(EVENTS).map_err(|e| self.err(e))?;
            let mut out = Vec::with_capacity(take.min(4096));
            if after == u64::MAX {
                return Ok(out);
            }
            for row in table
                .range(after + 1..)
                .map_err(|e| self.err(e))?
                .take(take)
            {
                let (k, v) = row.map_err(|e| self.err(e))?;
                out.push((k.value(), decode(v.value(), "event")?));
            }
            Ok(out)
        })
    }

    /// How many events are absorbed.
    pub fn events_len(&self) -> StoreResult<u64> {
        self.with_db(|db| {
            let read = db.begin_read().map_err(|e| self.err(e))?;
            let table = read.open_table(EVENTS).map_err(|e| self.err(e))?;
            table.len().map_err(|e| self.err(e))
        })
    }

    /// The absorbed events of `users` with their sequence numbers, per user in log order
    /// (through the per-user index: the cost is those users' events), and the sequence
    /// number this snapshot is complete up to.
    pub fn user_events(&self, users: &[&str]) -> StoreResult<(HashMap<String, SeqEvents>, u64)> {
        self.with_db(|db| {
            let read = db.begin_read().map_err(|e| self.err(e))?;
            let applied = self.applied_in(&read)?;
            let index = read.open_table(USER_EVENT_SEQS).map_err(|e| self.err(e))?;
            let events = read.open_table(EVENTS).map_err(|e| self.err(e))?;
            let mut out = HashMap::new();
            for user in users {
                let mut mine = Vec::new();
                for row in index
                    .range((*user, 0u64)..=(*user, u64::MAX))
                    .map_err(|e| self.err(e))?
                {
                    let (k, v) = row.map_err(|e| self.err(e))?;
                    for seq in unpack_run(k.value().1, v.value())? {
                        if let Some(v) = events.get(seq).map_err(|e| self.err(e))? {
                            mine.push((seq, decode(v.value(), "event")?));
                        }
                    }
                }
                if !mine.is_empty() {
                    out.insert(user.to_string(), mine);
                }
            }
            Ok((out, applied))
        })
    }
}

fn unpack_run(first: u64, value: &[u8]) -> StoreResult<Vec<u64>> {
    event_index::unpack(first, value).map_err(|e| StoreError::Internal(e.to_string()))
}

/// Writes the index rows `pending` holds, in key order, asking `interrupted` every
/// [`ROWS_PER_CHECK`] rows.
fn put_runs(
    d: &Durable,
    index: &mut Table<'_, (&'static str, u64), &'static [u8]>,
    pending: &mut Pending,
    interrupted: &dyn Fn() -> StoreResult<()>,
) -> StoreResult<()> {
    for (i, (user, seqs)) in pending.drain_runs().into_iter().enumerate() {
        if i % ROWS_PER_CHECK == 0 {
            interrupted()?;
        }
        index
            .insert(
                (user.as_str(), seqs[0]),
                event_index::pack(&seqs).as_slice(),
            )
            .map_err(|e| d.err(e))?;
    }
    Ok(())
}

fn read_u64(bytes: &[u8]) -> StoreResult<u64> {
    <[u8; 8]>::try_from(bytes)
        .map(u64::from_le_bytes)
        .map_err(|_| StoreError::Internal("corrupt applied mark".into()))
}

/// The `META` mark `key`, if set.
fn mark(
    d: &Durable,
    meta: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> StoreResult<Option<u64>> {
    meta.get(key)
        .map_err(|e| d.err(e))?
        .map(|v| read_u64(v.value()))
        .transpose()
}

/// The last sequence number absorbed: the `APPLIED` mark, or for a data dir written
/// before the log existed, its last event's.
fn applied_mark(
    d: &Durable,
    meta: &impl ReadableTable<&'static str, &'static [u8]>,
    events: &impl ReadableTable<u64, &'static [u8]>,
) -> StoreResult<u64> {
    let from_meta = mark(d, meta, APPLIED)?.unwrap_or(0);
    let last_event = events
        .last()
        .map_err(|e| d.err(e))?
        .map_or(0, |(k, _)| k.value());
    Ok(from_meta.max(last_event))
}

/// A user's row as memory has it now, with the sequence number of the last record it
/// includes (`None`: no such user).
pub type RowOf<'a> = dyn Fn(&str) -> StoreResult<Option<(Vec<u8>, u64)>> + 'a;

/// Which users a running store's checkpoint stores: given the users its records touched
/// and the last sequence number it applied, the users to store now and the `USERS_APPLIED`
/// mark once they are (every user row then includes the records up to it).
pub type ChooseUsers<'a> = dyn Fn(&BTreeSet<String>, u64) -> (BTreeSet<String>, u64) + 'a;

/// Where a checkpoint's user rows come from.
pub enum UserRows<'a> {
    /// A running store's checkpoint: the users `choose` picks are stored as memory has
    /// them at the end of the checkpoint (`row`), which includes every record they had;
    /// then `written(seq)` must return once the log has written every record up to the
    /// largest sequence number those rows include, so that redb never holds the effect of
    /// a record the log may still lose.
    Memory {
        /// See [`RowOf`].
        row: &'a RowOf<'a>,
        /// Waits for the log to have written a sequence number.
        written: &'a dyn Fn(u64) -> StoreResult<()>,
        /// See [`ChooseUsers`].
        choose: &'a ChooseUsers<'a>,
        /// Asked between the rows the commit writes: an error stops the checkpoint
        /// (uncommitted), an idle background one that gives way to another caller.
        interrupted: &'a dyn Fn() -> StoreResult<()>,
    },
    /// Recovery: no user row is written here. Start-up replays the log's user records
    /// into memory afterwards (`apply::Replayer`) and stores the states it makes
    /// ([`Durable::store_users`]).
    Replay,
}

/// How many rows a checkpoint writes between two asks whether it is interrupted.
const ROWS_PER_CHECK: usize = 256;

/// Puts `users`' rows (or removes those `row` says are gone), in key order, asking
/// `interrupted` every [`ROWS_PER_CHECK`] rows. Returns the largest sequence number the
/// rows include.
fn put_user_rows(
    d: &Durable,
    table: &mut Table<'_, &'static str, &'static [u8]>,
    users: &BTreeSet<String>,
    row: &RowOf<'_>,
    interrupted: &dyn Fn() -> StoreResult<()>,
) -> StoreResult<u64> {
    let mut newest = 0;
    for (i, id) in users.iter().enumerate() {
        if i % ROWS_PER_CHECK == 0 {
            interrupted()?;
        }
        match row(id)? {
            Some((bytes, seq)) => {
                newest = newest.max(seq);
                table
                    .insert(id.as_str(), bytes.as_slice())
                    .map_err(|e| d.err(e))?;
            }
            None => {
                table.remove(id.as_str()).map_err(|e| d.err(e))?;
            }
        }
    }
    Ok(newest)
}

/// A checkpoint in progress: the open redb tables, and what is coalesced until the end
/// (a user's row is written once however many records touched it; popularity increments
/// are summed).
pub struct Absorb<'t> {
    durable: &'t Durable,
    items: Table<'t, &'static str, &'static [u8]>,
    users: Table<'t, &'static str, &'static [u8]>,
    popularity: Table<'t, &'static str, f64>,
    events: Table<'t, u64, &'static [u8]>,
    index: Table<'t, (&'static str, u64), &'static [u8]>,
    meta: Table<'t, &'static str, &'static [u8]>,
    /// Where user rows come from.
    user_rows: UserRows<'t>,
    /// The users the records touched, in key order: under [`UserRows::Memory`] the rows
    /// of those it chooses (and of users touched earlier) are written at the end (see
    /// [`Absorb::finish`]).
    touched: BTreeSet<String>,
    /// Summed log-domain popularity increments per item, in key order.
    increments: BTreeMap<String, f64>,
    /// Per-user event index rows not inserted yet: they go in sorted (see [`Absorb::finish`]).
    pending_index: Pending,
    /// The last sequence number applied so far.
    applied: u64,
    /// Records applied in this checkpoint.
    records: u64,
}

impl Absorb<'_> {
    /// The last sequence number applied so far.
    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// What the last committed checkpoint applied, as `Durable::applied` reads it.
    fn stored_applied(&self) -> StoreResult<u64> {
        applied_mark(self.durable, &self.meta, &self.events)
    }

    /// Applies the record `seq` (skipped if it was applied already).
    pub fn record(&mut self, seq: u64, payload: &[u8]) -> StoreResult<()> {
        if seq <= self.applied {
            return Ok(());
        }
        let op = match Op::decode(payload, crate::wall_clock_ms()) {
            Ok(op) => op,
            Err(e) => {
                // Its checksum held, so these are the bytes that were written: a record
                // of an unknown format. The data dir must reopen all the same.
                tracing::error!(seq, cause = %e, "undecodable log record skipped");
                self.applied = seq;
                self.records += 1;
                return Ok(());
            }
        };
        let last = seq + op.span() - 1;
        let d = self.durable;
        match op {
            Op::Items(items) => {
                for item in &items {
                    self.items
                        .insert(item.id.as_str(), encode(item)?.as_slice())
                        .map_err(|e| d.err(e))?;
                }
            }
            Op::DeleteItem(id) => {
                self.items.remove(id.as_str()).map_err(|e| d.err(e))?;
            }
            Op::Events {
                events, popularity, ..
            } => {
                for (i, event) in events.into_iter().enumerate() {
                    let s = seq + i as u64;
                    self.events
                        .insert(s, encode(&event)?.as_slice())
                        .map_err(|e| d.err(e))?;
                    if !self.touched.contains(&event.user_id) {
                        self.touched.insert(event.user_id.clone());
                    }
                    self.pending_index.push(event.user_id, s);
                }
                for (id, inc) in popularity {
                    let sum = self.increments.entry(id).or_insert(f64::NEG_INFINITY);
                    *sum = log_add(*sum, inc);
                }
            }
            Op::Users(users) => {
                self.touched.extend(users.into_iter().map(|(id, _)| id));
            }
            Op::ExpireUsers(ids) => self.touched.extend(ids),
            Op::DeleteUser(id) => {
                // The user's events of this checkpoint are not in the index yet: taken
                // out of what waits (the others' rows stay whole, one per user).
                let mut seqs = self.pending_index.take(&id);
                for row in self
                    .index
                    .extract_from_if((id.as_str(), 0u64)..=(id.as_str(), u64::MAX), |_, _| true)
                    .map_err(|e| d.err(e))?
                {
                    let (k, v) = row.map_err(|e| d.err(e))?;
                    seqs.extend(unpack_run(k.value().1, v.value())?);
                }
                for s in seqs {
                    self.events.remove(s).map_err(|e| d.err(e))?;
                }
                self.touched.insert(id);
            }
        }
        self.applied = last;
        self.records += 1;
        Ok(())
    }

    /// Writes what was coalesced and the marks; `(applied, whether anything was written)`.
    /// With no new record, only users that [`UserRows::Memory`] chooses are written (a
    /// checkpoint on demand storing the users the background left).
    ///
    /// Every key goes in in ascending order: a checkpoint writes rows of thousands of users
    /// and items, and in a B-tree sorted inserts meet each leaf page once, one after another,
    /// where a hash map's order went back and forth across the tree.
    fn finish(mut self) -> StoreResult<(u64, bool)> {
        let d = self.durable;
        let mut wrote = self.records > 0;
        let mut interrupted: &dyn Fn() -> StoreResult<()> = &|| Ok(());
        if let UserRows::Memory {
            row,
            written,
            choose,
            interrupted: asked,
        } = &self.user_rows
        {
            interrupted = *asked;
            let (store, mark) = choose(&self.touched, self.applied);
            if wrote || !store.is_empty() {
                let newest = put_user_rows(d, &mut self.users, &store, row, interrupted)?;
                written(newest)?;
                self.meta
                    .insert(USERS_APPLIED, mark.to_le_bytes().as_slice())
                    .map_err(|e| d.err(e))?;
                wrote = true;
            }
        }
        if self.records == 0 {
            return Ok((self.applied, wrote));
        }
        self.insert_pending_index(interrupted)?;
        for (id, inc) in &self.increments {
            let current = self
                .popularity
                .get(id.as_str())
                .map_err(|e| d.err(e))?
                .map_or(f64::NEG_INFINITY, |v| v.value());
            self.popularity
                .insert(id.as_str(), log_add(current, *inc))
                .map_err(|e| d.err(e))?;
        }
        self.meta
            .insert(APPLIED, self.applied.to_le_bytes().as_slice())
            .map_err(|e| d.err(e))?;
        Ok((self.applied, true))
    }

    /// Inserts the per-user event index rows applied so far (one per user), in key order,
    /// asking `interrupted` every [`ROWS_PER_CHECK`] rows.
    fn insert_pending_index(
        &mut self,
        interrupted: &dyn Fn() -> StoreResult<()>,
    ) -> StoreResult<()> {
        put_runs(
            self.durable,
            &mut self.index,
            &mut self.pending_index,
            interrupted,
        )
    }
}

#[cfg(test)]
mod tests {
    use recd_core::{CompactString, EventType};

    use super::*;

    fn event(user: &str, t: i64) -> Event {
        Event {
            user_id: user.into(),
            item_id: "i".into(),
            kind: EventType::View,
            value: None,
            timestamp_ms: t,
            recommendation_id: None,
        }
    }

    #[test]
    fn user_rows_of_the_first_layout_load_upgraded_and_are_rewritten_in_the_current_one() {
        let dir = tempfile::tempdir().unwrap();
        // A row as recd wrote it before exclusion sets: postcard of the old UserState
        // (long_term, session, six counters + dwell seconds, recent, purchased, last event).
        #[derive(Serialize)]
        struct Old(
            Option<Vec<f32>>,
            Option<()>,
            [u64; 6],
            f64,
            Vec<String>,
            Vec<String>,
            i64,
        );
        let old = Old(
            None,
            None,
            [3, 0, 0, 0, 1, 0],
            0.0,
            vec!["p".into(), "v".into()],
            vec!["p".into()],
            42,
        );
        {
            let d = Durable::open(dir.path()).unwrap();
            d.with_db(|db| {
                let txn = db.begin_write().unwrap();
                txn.open_table(USERS)
                    .unwrap()
                    .insert("old", encode(&old).unwrap().as_slice())
                    .unwrap();
                txn.commit().unwrap();
                Ok(())
            })
            .unwrap();
        }
        let d = Durable::open(dir.path()).unwrap();
        let loaded = d.load().unwrap();
        let (id, u, seq) = &loaded.users[0];
        assert_eq!(id, "old");
        assert_eq!(*seq, 0, "the first layout records no sequence number");
        assert_eq!((u.counters.view, u.counters.purchase), (3, 1));
        assert_eq!(
            (u.recent.clone(), u.purchased.clone()),
            (
                vec![CompactString::from("p"), CompactString::from("v")],
                vec![CompactString::from("p")]
            )
        );
        assert!(u.excluded.contains("p") && !u.excluded.contains("v"));
        assert_eq!(u.last_event_ms, 42);
        assert!(u.active_ms > 0, "the TTL counts from the upgrade");
        // a checkpoint writes it back in the current layout, which reads back the same
        let bytes = super::super::record::encode_user(u, 9).unwrap();
        assert_eq!(bytes[0], super::super::record::USER_V4);
        assert_eq!(decode_user(&bytes, 0).unwrap(), (u.clone(), 9));
    }

    #[test]
    fn a_data_dir_from_before_the_log_gets_its_index_and_applied_mark() {
        let dir = tempfile::tempdir().unwrap();
        // What the previous version left: events keyed by sequence number, no per-user
        // index, no applied mark.
        {
            let db = Database::create(dir.path().join("recd.redb")).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut events = txn.open_table(EVENTS).unwrap();
                for (seq, user) in [(0u64, "a"), (1, "b"), (2, "a"), (7, "a")] {
                    let bytes = encode(&event(user, seq as i64)).unwrap();
                    events.insert(seq, bytes.as_slice()).unwrap();
                }
                txn.open_table(META).unwrap();
            }
            txn.commit().unwrap();
        }
        let d = Durable::open(dir.path()).unwrap();
        assert_eq!(d.applied().unwrap(), 7, "continues after the last event");
        let (mine, as_of) = d.user_events(&["a", "c"]).unwrap();
        assert_eq!(as_of, 7);
        let seqs: Vec<u64> = mine["a"].iter().map(|(s, _)| *s).collect();
        assert_eq!(seqs, [0, 2, 7]);
        assert!(!mine.contains_key("c"));
        // Forgetting a user goes through the index built at open.
        let no_rows = |_: &str| Ok(None);
        let all = |touched: &BTreeSet<String>, applied| (touched.clone(), applied);
        let applied = d
            .absorb(
                7,
                false,
                UserRows::Memory {
                    row: &no_rows,
                    written: &|_| Ok(()),
                    choose: &all,
                    interrupted: &|| Ok(()),
                },
                |a| {
                    let op = super::super::record::OpRef::DeleteUser("a").encode()?;
                    a.record(8, &op)
                },
            )
            .unwrap();
        assert_eq!(applied, 8);
        let left: Vec<String> = d.events().unwrap().into_iter().map(|e| e.user_id).collect();
        assert_eq!(left, ["b"]);
    }

    /// `(user, first seq, seqs)` of every row of the per-user index.
    fn index_rows(d: &Durable) -> Vec<(String, u64, Vec<u64>)> {
        d.with_db(|db| {
            let read = db.begin_read().unwrap();
            let index = read.open_table(USER_EVENT_SEQS).unwrap();
            let rows = index
                .iter()
                .unwrap()
                .map(|row| {
                    let (k, v) = row.unwrap();
                    let (user, first) = k.value();
                    (
                        user.to_string(),
                        first,
                        unpack_run(first, v.value()).unwrap(),
                    )
                })
                .collect();
            Ok(rows)
        })
        .unwrap()
    }

    /// Absorbs `batches` as one checkpoint, each an events record starting at its seq.
    fn absorb_events(d: &Durable, applied: u64, batches: &[(u64, Vec<Event>)]) -> u64 {
        d.absorb(applied, false, UserRows::Replay, |a| {
            for (seq, events) in batches {
                let op = super::super::record::OpRef::Events {
                    events,
                    popularity: vec![],
                    at_ms: 1,
                }
                .encode()?;
                a.record(*seq, &op)?;
            }
            Ok(())
        })
        .unwrap()
    }

    #[test]
    fn a_checkpoint_indexes_each_user_in_one_row_and_reads_and_forgets_through_it() {
        let dir = tempfile::tempdir().unwrap();
        let d = Durable::open(dir.path()).unwrap();
        // two checkpoints, each with three events of "a" and one of "b" over two records
        let one = vec![event("a", 1), event("b", 2), event("a", 3)];
        let applied = absorb_events(&d, 0, &[(1, one), (4, vec![event("a", 4)])]);
        assert_eq!(applied, 4);
        let applied = absorb_events(&d, applied, &[(5, vec![event("a", 5), event("b", 6)])]);
        assert_eq!(
            index_rows(&d),
            [
                ("a".to_string(), 1, vec![1, 3, 4]),
                ("a".to_string(), 5, vec![5]),
                ("b".to_string(), 2, vec![2]),
                ("b".to_string(), 6, vec![6]),
            ]
        );
        let (mine, _) = d.user_events(&["a"]).unwrap();
        let seqs: Vec<(u64, i64)> = mine["a"]
            .iter()
            .map(|(s, e)| (*s, e.timestamp_ms))
            .collect();
        assert_eq!(seqs, [(1, 1), (3, 3), (4, 4), (5, 5)]);
        // forgetting "a" inside a checkpoint that also logged one more of its events
        d.absorb(applied, false, UserRows::Replay, |a| {
            let op = super::super::record::OpRef::Events {
                events: &[event("a", 7)],
                popularity: vec![],
                at_ms: 1,
            }
            .encode()?;
            a.record(7, &op)?;
            let op = super::super::record::OpRef::DeleteUser("a").encode()?;
            a.record(8, &op)
        })
        .unwrap();
        let left: Vec<String> = d.events().unwrap().into_iter().map(|e| e.user_id).collect();
        assert_eq!(left, ["b", "b"]);
        let users: Vec<String> = index_rows(&d).into_iter().map(|(u, ..)| u).collect();
        assert_eq!(users, ["b", "b"]);
    }

    #[test]
    fn the_first_index_layout_is_converted_at_open_and_wins_after_a_downgrade() {
        let dir = tempfile::tempdir().unwrap();
        {
            let d = Durable::open(dir.path()).unwrap();
            absorb_events(&d, 0, &[(1, vec![event("a", 1), event("b", 2)])]);
        }
        // What a version with the first layout leaves after writing the dir: its own
        // index complete (it rebuilt it, finding its mark absent, and kept it up to date),
        // ours stale (events 3 and 4 are not in it).
        {
            let db = Database::create(dir.path().join("recd.redb")).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut events = txn.open_table(EVENTS).unwrap();
                let mut old = txn.open_table(USER_EVENTS).unwrap();
                for (seq, user) in [(1u64, "a"), (2, "b"), (3, "a"), (4, "c")] {
                    let bytes = encode(&event(user, seq as i64)).unwrap();
                    events.insert(seq, bytes.as_slice()).unwrap();
                    old.insert((user, seq), ()).unwrap();
                }
                let mut meta = txn.open_table(META).unwrap();
                meta.insert(INDEXED, [1u8].as_slice()).unwrap();
                meta.insert(APPLIED, 4u64.to_le_bytes().as_slice()).unwrap();
            }
            txn.commit().unwrap();
        }
        let d = Durable::open(dir.path()).unwrap();
        assert_eq!(
            index_rows(&d),
            [
                ("a".to_string(), 1, vec![1, 3]),
                ("b".to_string(), 2, vec![2]),
                ("c".to_string(), 4, vec![4]),
            ]
        );
        let (mine, as_of) = d.user_events(&["a", "c"]).unwrap();
        assert_eq!(as_of, 4);
        assert_eq!(mine["a"].len(), 2);
        assert_eq!(mine["c"][0].0, 4);
        // the first layout is gone with its mark, so a downgrade would rebuild it
        d.with_db(|db| {
            let read = db.begin_read().unwrap();
            assert!(read.open_table(USER_EVENTS).is_err());
            let meta = read.open_table(META).unwrap();
            assert!(meta.get(INDEXED).unwrap().is_none());
            assert!(meta.get(SEQS_INDEXED).unwrap().is_some());
            Ok(())
        })
        .unwrap();
        // and a second open changes nothing
        drop(d);
        let d = Durable::open(dir.path()).unwrap();
        assert_eq!(index_rows(&d).len(), 3);
    }
}
