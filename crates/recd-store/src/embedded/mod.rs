//! The embedded backend: everything in-process, made durable by an append-only log that a
//! local redb file absorbs in the background.
//!
//! Reads (KNN, popular, text, items, users) work on in-memory structures: the
//! `recd_index::VectorIndex` (concurrent HNSW), the [`catalog::Catalog`] (items, attribute
//! bitmaps) behind an `RwLock`, the sharded [`popularity::Popularity`] and the sharded
//! [`users::Users`]. A write (`write`) locks what it changes (a user's shard; the item
//! lock for item writes), computes, appends one record to the log, publishes in memory
//! and unlocks; the request then waits for the log to acknowledge it. So the next read
//! sees the write at once (read-your-writes), and it is acknowledged only once it is in
//! the log file (and, under `fsync = "always"`, on disk). Nothing on the request path
//! waits for redb.
//!
//! # Layout
//! - `log`: the append-only log (group commit, fsync policy, IO-error recovery).
//! - `segment`: its files (naming, framing, reading back, torn tails).
//! - `record`: what a log record says.
//! - `checkpoint`: redb absorbing the log, and replaying it at start-up.
//! - `durable`: the redb file (the state as of the last checkpoint, the event log and its
//!   per-user index).
//! - `write`: the write operations; `apply`: how events change user states (the write
//!   path's batch, and recovery's replay of the log into memory).
//! - `users`, `popularity`, `catalog` (+ `attributes`, `slot_vectors`): the in-memory state.
//! - `memory`: the event log of an in-memory store.
//! - `index_file`: the vector index's snapshot file, so that a restart loads the graph
//!   instead of rebuilding it (checked against the stored items, never trusted blindly).
//! - `partitions`: the per-value graphs of the schema's `vector.partition_by` field.
//! - `exact` (tests only): the brute-force answer KNN tests check recall against.
//! - `models`: the model registry (redb tables, or maps in memory).
//! - `faults`: fault injection for the durability tests.

mod apply;
mod attributes;
mod catalog;
mod checkpoint;
mod dirty;
mod durable;
mod event_index;
#[cfg(test)]
mod exact;
mod faults;
mod index_file;
mod log;
mod memory;
mod models;
mod partition_files;
mod partitions;
mod popularity;
mod priority;
mod record;
mod segment;
mod slot_vectors;
mod users;
mod write;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::{Mutex, RwLock};
use recd_core::item::check_vector;
use recd_core::pipeline::rerank::Exclusions;
use recd_core::{Event, Filter, Item, ItemUpsert, Metric, Schema, UserState, ValidationError};
use recd_index::{HnswParams, SearchOptions, VectorIndex};
use roaring::RoaringBitmap;
use serde::{Deserialize, Serialize};

use self::catalog::Catalog;
use self::checkpoint::{Checkpointer, Trigger};
use self::durable::{Durable, Loaded};
use self::faults::Faults;
use self::index_file::Snapshots;
pub use self::index_file::{IndexStart, SnapshotOptions};
pub use self::log::Fsync;
use self::log::{LogConfig, Ticket, Wal};
use self::memory::MemoryLog;
use self::models::MemoryModels;
use self::partitions::Partitions;
use self::popularity::Popularity;
use self::record::OpRef;
use self::users::Users;
use self::write::Written;
use crate::{
    Counts, Hit, KnnPlan, ModelRecord, ModelRegistry, ModelSettings, NextList, Page, PopularHit,
    Store, StoreError, StoreResult,
};

/// Event batches up to this size are applied on the calling task (a few microseconds per
/// event, no thread hop); larger ones on the blocking pool.
const INLINE_EVENTS: usize = 64;
/// `replay_records` unless configured.
pub const DEFAULT_REPLAY_RECORDS: u64 = 200_000;
/// The smallest log segment (a tiny `checkpoint_bytes` must not start a file per write).
const MIN_SEGMENT_BYTES: u64 = 4096;

/// Options of the embedded backend (`[embedded]` in config).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmbeddedOptions {
    /// When log writes reach the disk: `always` (fsynced before acknowledging, batched
    /// across concurrent requests), `everysec` (default: fsynced in the background once a
    /// second; a killed process loses nothing, a power loss up to about a second) or
    /// `never` (the kernel decides; shutdown syncs).
    pub fsync: Fsync,
    /// HNSW parameters of the vector index.
    pub hnsw: HnswParams,
    /// At most this many seconds between checkpoints (redb absorbing the write log) while
    /// anything is being written. Shorter: smaller log to replay at start-up; longer: fewer
    /// redb commits. Default 5 (also used for a value that is not a positive number).
    pub checkpoint_seconds: f64,
    /// A checkpoint also starts once this many bytes were logged since the last one (and
    /// log segments are this large). Default 256 MiB: under a heavy event load each
    /// checkpoint (and each new segment) is a burst beside the requests, and fewer, larger
    /// ones gave wrk events at c = 32 a p99 0.80x 64 MiB's (6 of 6 alternated pairs,
    /// BENCHMARKS.md session 27); 8 MiB gave 1.5x. Larger: more log to replay after a crash.
    pub checkpoint_bytes: u64,
    /// Most bytes of redb pages kept in memory. Default 256 MiB (redb's own default, 1 GiB,
    /// made a long-running server's RSS creep up as its event log grew).
    pub cache_bytes: u64,
    /// The nice value the checkpoint catch-up thread runs at (and the checkpoint thread
    /// with `checkpoint_idle` off), 0–19. Default 10: with the cores busy
    /// serving, a checkpoint's burst of redb work gets a share of the CPU instead of a core
    /// of its own; idle cores it gets whole. 0: the process's priority. Linux only
    /// (elsewhere ignored).
    pub checkpoint_nice: i32,
    /// Whether background checkpoints run only on idle cycles (Linux's idle scheduling
    /// class), giving way to any caller that waits for one, with a second thread at
    /// `checkpoint_nice` running any checkpoint overdue by two intervals. Default true:
    /// beside 2,000 events/s a nice-10 checkpoint kept cores from recommends for whole
    /// time slices (BENCHMARKS.md, session 31). False: the thread runs at
    /// `checkpoint_nice` (before session 31). Linux only (elsewhere ignored).
    pub checkpoint_idle: bool,
    /// About the most log records a restart replays into user states (after a crash; a
    /// clean shutdown stores every user). The log holds every event, so a user's stored
    /// state only bounds the replay: each background checkpoint stores a share of the
    /// changed users, the longest-changed first, sized to store each about once per half
    /// this many records, and any changed this many records ago. Default 200,000: beside
    /// 2,000 events/s it measured like 500,000 for recommend's tail, and its replay is
    /// ~1.6 s at the ~8 µs per record measured on two cores (BENCHMARKS.md, session 30).
    /// 0: every checkpoint stores every user its records changed (the behaviour before
    /// session 30, which wrote each active user's ~1.6 KB state every `checkpoint_seconds`
    /// and raised the recommend tail beside a steady event load).
    pub replay_records: u64,
    /// When the vector index is saved, so that a restart loads it instead of rebuilding.
    pub index_snapshot: SnapshotOptions,
    /// Told of the vectors inserted at open (a rebuild, or bringing a loaded snapshot up
    /// to date): how the command line draws a progress bar on a terminal. Not
    /// configuration: never read from or written to a config file.
    #[serde(skip)]
    pub open_progress: OpenProgress,
}

/// The [`Observer`](crate::bulk::Observer) of the vector inserts at open, if any; equal to
/// any other (it is not configuration, so it never makes two options differ).
#[derive(Clone, Default)]
pub struct OpenProgress(pub Option<Arc<dyn crate::bulk::Observer>>);

impl PartialEq for OpenProgress {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl std::fmt::Debug for OpenProgress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "observed" } else { "none" })
    }
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        Self {
            fsync: Fsync::default(),
            hnsw: HnswParams::default(),
            checkpoint_seconds: 5.0,
            checkpoint_bytes: 256 << 20,
            cache_bytes: durable::DEFAULT_CACHE_BYTES,
            checkpoint_nice: 10,
            checkpoint_idle: true,
            replay_records: DEFAULT_REPLAY_RECORDS,
            index_snapshot: SnapshotOptions::default(),
            open_progress: OpenProgress::default(),
        }
    }
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
    index: Arc<VectorIndex>,
    /// The per-value graphs of `vector.partition_by` (empty when it is not set).
    partitions: Arc<Partitions>,
    catalog: Arc<RwLock<Catalog>>,
    /// How the index came to be at open.
    index_start: IndexStart,
    popularity: Popularity,
    users: Arc<Users>,
    /// Serializes item writers (upserts, deletes, vector write-back), so that slots are
    /// given out, vectors linked and records logged in one order.
    items_lock: Mutex<()>,
    /// Where writes are logged.
    sink: Sink,
    /// The user shard the next inactivity sweep checks.
    sweep_next: std::sync::atomic::AtomicUsize,
    /// The model registry of an in-memory store (a data dir keeps it in redb).
    models: Mutex<MemoryModels>,
    /// How far the latest bulk runs are applied to each user (`Store::apply_events_once`).
    bulk_marks: Mutex<crate::once::Marks>,
    /// The new items (`Store::touch_new_items`) and their interaction lists. In memory
    /// only: the provisional vectors are logged as item writes, but after a restart the
    /// lists of items not folded in yet start anew, and items with a provisional vector
    /// count as ordinary until the next training gives them a trained one. Lock order:
    /// items lock → catalog → this.
    new_items: Mutex<std::collections::HashMap<String, Vec<(String, f32)>>>,
    /// The live model version's transition table, loaded at its first read and dropped
    /// when the live version changes (only this process writes a data dir, so nothing
    /// else can change it meanwhile).
    live_next: Mutex<Option<Arc<self::models::LiveNext>>>,
    /// Bumped by every change of the live table, so that a load that raced with one is
    /// not kept.
    live_next_gen: std::sync::atomic::AtomicU64,
}

impl Inner {
    /// Forgets the loaded live transition table (after the write that changed it).
    fn live_next_changed(&self) {
        self.live_next_gen
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        *self.live_next.lock() = None;
    }
}

impl Inner {
    /// The redb file of a data dir.
    fn durable(&self) -> StoreResult<&Durable> {
        match &self.sink {
            Sink::Log(l) => Ok(&l.durable),
            Sink::Memory(_) => Err(StoreError::Internal(
                "an in-memory store has no data file".into(),
            )),
        }
    }
}

/// Where writes are logged.
#[derive(Debug)]
enum Sink {
    /// In-memory store: only the event log is kept.
    Memory(Mutex<MemoryLog>),
    /// The durable log, absorbed by redb.
    Log(Logged),
}

#[derive(Debug)]
struct Logged {
    wal: Arc<Wal>,
    checkpointer: Arc<Checkpointer>,
    durable: Arc<Durable>,
    faults: Arc<Faults>,
    snapshots: Arc<Snapshots>,
}

impl Sink {
    /// Appends a record; must be called under the locks of what it carries.
    fn append(&self, op: &OpRef<'_>) -> StoreResult<Ticket> {
        match self {
            Sink::Memory(log) => Ok(log.lock().append(op)),
            Sink::Log(l) => op.encode_with(|bytes| l.wal.append(bytes, op.span())),
        }
    }

    /// [`Sink::append`] for the event path: the ticket may take the lead of the log's next
    /// write ([`Ticket::lead`], to call once the caller's locks are released).
    fn append_leading(&self, op: &OpRef<'_>) -> StoreResult<Ticket> {
        match self {
            Sink::Memory(log) => Ok(log.lock().append(op)),
            Sink::Log(l) => op.encode_with(|bytes| l.wal.append_leading(bytes, op.span())),
        }
    }

    /// Whether user shards keep the tail of events redb has not absorbed yet.
    fn keeps_tail(&self) -> bool {
        matches!(self, Sink::Log(_))
    }

    /// Waits for the acknowledgement of a write's record.
    async fn wait(&self, ticket: Option<Ticket>) -> StoreResult<()> {
        match ticket {
            Some(t) => t.wait().await,
            None => Ok(()),
        }
    }
}

impl EmbeddedStore {
    /// A store that lives only in memory (tests, offline replay).
    pub fn in_memory(schema: Schema, settings: ModelSettings) -> StoreResult<Self> {
        schema.validate()?;
        let options = EmbeddedOptions::default();
        let users = Arc::new(Users::new(0));
        let (index, partitions, catalog, popularity, (index_start, _)) = memory_state(
            &schema,
            &options,
            Loaded::default(),
            &users,
            Snapshot::default(),
            None,
        )?;
        Ok(Self {
            inner: Arc::new(Inner {
                schema,
                settings,
                index: Arc::new(index),
                partitions: Arc::new(partitions),
                catalog: Arc::new(RwLock::new(catalog)),
                index_start,
                popularity,
                users,
                items_lock: Mutex::new(()),
                sink: Sink::Memory(Mutex::new(MemoryLog::default())),
                models: Mutex::new(MemoryModels::default()),
                bulk_marks: Mutex::new(crate::once::Marks::default()),
                new_items: Mutex::default(),
                live_next: Mutex::default(),
                live_next_gen: Default::default(),
                sweep_next: Default::default(),
            }),
        })
    }

    /// Opens the store in `dir`, creating it if needed: replays the write log into redb,
    /// loads redb into memory, and starts the log and checkpoint threads. A data dir
    /// remembers its schema: with `schema: None` the stored one is used; a different
    /// schema is refused. Without a schema, a dir that holds no data file is refused
    /// before anything is created in it (a failed start must not leave a file behind that
    /// makes the dir look used).
    pub fn open(
        dir: &Path,
        schema: Option<Schema>,
        settings: ModelSettings,
        options: EmbeddedOptions,
    ) -> StoreResult<Self> {
        if schema.is_none() && !Durable::exists(dir) {
            return Err(StoreError::Invalid(ValidationError::new(format!(
                "the data dir {} holds no data yet and no schema was given; nothing was created",
                dir.display()
            ))));
        }
        let durable = Arc::new(Durable::open_with_cache(dir, options.cache_bytes)?);
        let wal_dir = dir.join("wal");
        let recovered = checkpoint::recover(&durable, &wal_dir)?;
        let applied = recovered.applied;
        let loaded = durable.load()?;
        let schema = match (schema, &loaded.schema) {
            (Some(given), Some(stored)) if !given.same_data(stored) => {
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
        schema.validate()?;
        // New, or changed only in how it is indexed (the dir remembers the new choice).
        if loaded.schema.as_ref() != Some(&schema) {
            durable.save_schema(&schema)?;
        }
        let users = Arc::new(Users::new(applied));
        let (snapshot, partition_files) = if options.index_snapshot.enabled {
            let (dim, metric) = (schema.vector.dim, index_metric(&schema));
            let main = index_file::load(dir, dim, metric, options.hnsw);
            // The per-value graphs are read only when they can be used: the schema asks for
            // them, and the main snapshot whose slot numbers they share was read.
            let partitions = if main.is_some() && schema.vector.partition_by.is_some() {
                partition_files::load(dir, dim, metric, options.hnsw)
            } else {
                partition_files::Loaded::default()
            };
            let snapshot = Snapshot {
                main,
                partitions: partitions.graphs,
            };
            (snapshot, partitions.files)
        } else {
            Default::default()
        };
        let (index, partitions, catalog, popularity, (index_start, partitions_built)) =
            memory_state(&schema, &options, loaded, &users, snapshot, Some(dir))?;
        // The users' states as of the log's end; stored before the log goes.
        let started = std::time::Instant::now();
        // Users are independent: one replay thread per core (the open has them to itself).
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
        let (records, changed) =
            apply::replay_in_parallel(&users, &catalog, &settings.session, workers, |f| {
                recovered.replay(f)
            })?;
        let replayed = started.elapsed().as_secs_f64();
        durable.store_users(&changed, &|id| users.row(id), applied)?;
        if records > 0 {
            tracing::info!(
                records,
                users = changed.len(),
                threads = workers,
                replay_secs = format!("{replayed:.2}"),
                store_secs = format!("{:.2}", started.elapsed().as_secs_f64() - replayed),
                "user states brought up to date from the write log"
            );
        }
        let next_no = recovered.next_no;
        recovered.done();
        let index = Arc::new(index);
        let partitions = Arc::new(partitions);
        let catalog = Arc::new(RwLock::new(catalog));
        let clean_load = partitions_built == 0
            && matches!(
                index_start,
                IndexStart::Loaded {
                    reinserted: 0,
                    removed: 0,
                    ..
                }
            );
        let snapshots = Snapshots::new(
            dir,
            options.index_snapshot.clone(),
            index.clone(),
            partitions.clone(),
            catalog.clone(),
            clean_load,
            partition_files,
        );

        let faults = Arc::new(Faults::default());
        let trigger = Arc::new(Trigger::default());
        let fire = trigger.clone();
        let wal = Wal::start(
            LogConfig {
                dir: wal_dir,
                fsync: options.fsync,
                segment_bytes: options.checkpoint_bytes.max(MIN_SEGMENT_BYTES),
                checkpoint_bytes: options.checkpoint_bytes,
                next_seq: applied + 1,
                next_no,
            },
            faults.clone(),
            Box::new(move || fire.fire()),
        )?;
        let interval = Duration::try_from_secs_f64(options.checkpoint_seconds)
            .ok()
            .filter(|d| !d.is_zero())
            .unwrap_or(Duration::from_secs(5));
        let checkpointer = Checkpointer::new(
            wal.clone(),
            durable.clone(),
            faults.clone(),
            trigger,
            checkpoint::Background {
                interval,
                nice: options.checkpoint_nice,
                idle: options.checkpoint_idle,
                replay_records: options.replay_records,
            },
            applied,
            users.clone(),
        );
        if let Err(e) = checkpointer.start() {
            wal.shutdown(false);
            return Err(e);
        }
        if let Err(e) = snapshots.start() {
            checkpointer.stop();
            wal.shutdown(false);
            return Err(StoreError::Internal(format!(
                "cannot start the index snapshot thread: {e}"
            )));
        }
        Ok(Self {
            inner: Arc::new(Inner {
                schema,
                settings,
                index,
                partitions,
                catalog,
                index_start,
                popularity,
                users,
                items_lock: Mutex::new(()),
                sink: Sink::Log(Logged {
                    wal,
                    checkpointer,
                    durable,
                    faults,
                    snapshots,
                }),
                models: Mutex::new(MemoryModels::default()),
                bulk_marks: Mutex::new(crate::once::Marks::default()),
                new_items: Mutex::default(),
                live_next: Mutex::default(),
                live_next_gen: Default::default(),
                sweep_next: Default::default(),
            }),
        })
    }

    /// Whether `dir` holds an embedded store's data (a dir without it needs a schema to
    /// be opened).
    pub fn holds_data(dir: &Path) -> bool {
        Durable::exists(dir)
    }

    /// Runs a write on the blocking pool.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| StoreError::Internal(format!("write task failed: {e}")))?
    }

    /// Runs a registry operation on the blocking pool: with the in-memory registry
    /// (`Some`) for an in-memory store, else against the redb file.
    async fn registry<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner, Option<&mut MemoryModels>) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        self.blocking(move |inner| match &inner.sink {
            Sink::Memory(_) => f(inner, Some(&mut *inner.models.lock())),
            Sink::Log(_) => f(inner, None),
        })
        .await
    }

    /// Waits for a write's acknowledgement, then returns its result.
    async fn acked<T>(&self, (value, ticket): Written<T>) -> StoreResult<T> {
        self.inner.sink.wait(ticket).await?;
        Ok(value)
    }

    /// Writes and fsyncs every write so far (the log syncs at shutdown by itself).
    pub fn flush(&self) -> StoreResult<()> {
        match &self.inner.sink {
            Sink::Log(l) => l.wal.flush(),
            Sink::Memory(_) => Ok(()),
        }
    }

    /// Absorbs everything logged so far into the redb file now (benchmarks, tests, or
    /// before copying a data dir); returns the last sequence number it holds. The store
    /// does this by itself in the background and at shutdown.
    pub fn checkpoint(&self) -> StoreResult<u64> {
        match &self.inner.sink {
            Sink::Log(l) => l.checkpointer.run(Some(l.wal.last_seq())),
            Sink::Memory(_) => Ok(0),
        }
    }

    /// Saves the vector index's snapshot now, unless the file is current (benchmarks,
    /// tests; the store does it by itself in the background and at shutdown). `None`:
    /// nothing written (an in-memory store, snapshots off, or nothing changed).
    pub fn snapshot_index(&self) -> StoreResult<Option<recd_index::SnapshotInfo>> {
        match &self.inner.sink {
            Sink::Log(l) => l
                .snapshots
                .save_now()
                .map_err(|e| StoreError::Internal(format!("index snapshot: {e}"))),
            Sink::Memory(_) => Ok(None),
        }
    }

    /// How the vector index came to be at open: rebuilt, or loaded from its snapshot.
    pub fn index_start(&self) -> IndexStart {
        self.inner.index_start
    }

    /// The per-value graphs of the schema's `vector.partition_by` field: how many there
    /// are, and how many of them were loaded from their snapshot and built at open.
    pub fn partition_graphs(&self) -> PartitionGraphs {
        let (loaded, built) = self.inner.partitions.opened();
        PartitionGraphs {
            graphs: self.inner.partitions.graphs().len(),
            loaded,
            built,
        }
    }

    /// The vector index's quantization (the schema's `vector.quantization`).
    pub fn index_quantization(&self) -> recd_index::Quantization {
        self.inner.index.quantization()
    }

    /// The fault switches of a durable store.
    #[cfg(test)]
    fn faults(&self) -> Arc<Faults> {
        match &self.inner.sink {
            Sink::Log(l) => l.faults.clone(),
            Sink::Memory(_) => Arc::default(),
        }
    }

    /// The checkpointer of a durable store.
    #[cfg(test)]
    fn checkpointer(&self) -> Option<Arc<Checkpointer>> {
        match &self.inner.sink {
            Sink::Log(l) => Some(l.checkpointer.clone()),
            Sink::Memory(_) => None,
        }
    }

    /// Drops the store as a killed process would leave its files: what the log wrote
    /// stays, nothing more is written, synced or absorbed.
    #[cfg(test)]
    fn crash(self) {
        self.faults().set_crashed();
    }

    /// A KNN search among the items `exclude` does not name (resolved to slots under the
    /// same read of the catalog as the search), with its plan when `explain` (the plan's
    /// `allowed` count can cost a filter's bitmap that the search itself did not need).
    fn knn_planned(
        &self,
        query: &[f32],
        k: usize,
        filter: &Filter,
        exclude: &Exclusions<'_>,
        explain: bool,
    ) -> StoreResult<(Vec<Hit>, Option<KnnPlan>)> {
        check_query(query, &self.inner.schema)?;
        let catalog = self.inner.catalog.read();
        let exclude = &catalog.slots_excluded(exclude);
        let indexed = self.inner.index.len() as u64;
        let nothing = || KnnPlan {
            plan: "none",
            ef: None,
            allowed: 0,
            excluded: 0,
            indexed,
            scored: None,
            partitions: None,
        };
        if k == 0 {
            return Ok((Vec::new(), explain.then(nothing)));
        }
        let invalid =
            |e: recd_index::IndexError| StoreError::Invalid(ValidationError::new(e.to_string()));
        // The filter's bitmap, built once and only when needed: a filter on a few values of
        // `vector.partition_by` and nothing else is searched in those values' graphs without
        // it (the union of five categories' bitmaps at 1M was a fifth of such a request's
        // CPU; BENCHMARKS.md, session 25).
        let allowed = std::cell::OnceCell::new();
        let bitmap = || allowed.get_or_init(|| catalog.allowed(filter)).as_ref();
        let partitioned = self.inner.partitions.search(
            &catalog,
            &self.inner.index,
            query,
            k,
            filter,
            exclude,
            bitmap,
        );
        let (hits, plan) = match partitioned {
            Some(result) => {
                let (hits, done) = result.map_err(invalid)?;
                let plan = explain.then(|| KnnPlan {
                    plan: "partitioned",
                    ef: None,
                    allowed: bitmap().map_or(indexed, RoaringBitmap::len),
                    excluded: bitmap().map_or(exclude.len(), |b| b.intersection_len(exclude)),
                    indexed,
                    scored: None,
                    partitions: Some(done.graphs),
                });
                (hits, plan)
            }
            None => {
                let allowed = bitmap();
                if allowed.is_some_and(RoaringBitmap::is_empty) {
                    return Ok((Vec::new(), explain.then(nothing)));
                }
                let (hits, report) = self
                    .inner
                    .index
                    .search_excluding(query, k, allowed, exclude, SearchOptions::default())
                    .map_err(invalid)?;
                let plan = explain.then_some(KnnPlan {
                    plan: report.plan,
                    ef: report.ef,
                    allowed: report.allowed,
                    excluded: report.excluded,
                    indexed: report.live,
                    scored: report.sketched,
                    partitions: None,
                });
                (hits, plan)
            }
        };
        let hits = hits
            .into_iter()
            .filter_map(|h| {
                catalog.item_at(h.id).map(|it| Hit {
                    item: it.clone(),
                    score: h.score,
                })
            })
            .collect();
        Ok((hits, plan))
    }
}

/// What [`EmbeddedStore::partition_graphs`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionGraphs {
    /// Values with their own graph now.
    pub graphs: usize,
    /// Graphs loaded from their snapshot at open (and brought up to date with the items).
    pub loaded: usize,
    /// Graphs built afresh at open.
    pub built: usize,
}

/// The index metric of a schema.
fn index_metric(schema: &Schema) -> recd_index::Metric {
    match schema.vector.metric {
        Metric::Cosine => recd_index::Metric::Cosine,
        Metric::Ip => recd_index::Metric::InnerProduct,
        Metric::L2 => recd_index::Metric::L2,
    }
}

/// What the index snapshots of a data dir held at open.
#[derive(Default)]
struct Snapshot {
    /// The main graph and its slot table.
    main: Option<index_file::Loaded>,
    /// The per-value graphs, by value (same slot numbers as `main`).
    partitions: std::collections::HashMap<String, VectorIndex>,
}

/// The in-memory state from what was loaded, with the vector index loaded from `snapshot`
/// (brought up to date with the items) or rebuilt, and the per-value graphs of
/// `vector.partition_by` likewise (with how many of them were built afresh). `data_dir` is
/// where an int8 index keeps its `f32` vectors (an unnamed file; `None`: the system's temp
/// directory).
#[allow(clippy::type_complexity)]
fn memory_state(
    schema: &Schema,
    options: &EmbeddedOptions,
    loaded: Loaded,
    users: &Users,
    snapshot: Snapshot,
    data_dir: Option<&Path>,
) -> StoreResult<(
    VectorIndex,
    Partitions,
    Catalog,
    Popularity,
    (IndexStart, usize),
)> {
    let mut catalog = Catalog::new(schema);
    let popularity = Popularity::default();
    for (id, score) in loaded.popularity {
        popularity.load(id, score);
    }
    let Snapshot {
        main: snapshot,
        partitions: loaded_partitions,
    } = snapshot;
    // Items the snapshot knows keep their slot (the index's ids); the rest come after.
    let (snapshot, old_slots) = match snapshot {
        Some(s) => (Some(s.index), s.slots),
        None => (None, Vec::new()),
    };
    let mut old = index_file::slot_map(&old_slots);
    let matched = loaded
        .items
        .iter()
        .filter(|it| old.contains_key(it.id.as_str()))
        .count();
    let snapshot = snapshot.filter(|index| {
        let compact = index_file::needs_compaction(index.nodes(), matched);
        if compact {
            tracing::info!(
                nodes = index.nodes(),
                matched,
                "the index snapshot is mostly removed items; rebuilding the index to compact it"
            );
        }
        !compact
    });
    let mut fresh = 0u32;
    let slots_kept = snapshot.is_some();
    if slots_kept {
        // Slots are u32 throughout; a table longer than that failed to decode.
        fresh = old_slots.len() as u32;
    } else {
        old.clear();
    }
    // The vectors leave their items for the index's work and go back to them afterwards
    // (moved, not copied: at 1M items the copy was 256 MB, and the open's peak memory
    // 4 % higher; BENCHMARKS.md, session 21).
    let mut slotted = Vec::with_capacity(loaded.items.len());
    let mut vectors = Vec::with_capacity(loaded.items.len());
    let mut skipped = 0usize;
    for mut item in loaded.items {
        let slot = old.get(item.id.as_str()).copied().unwrap_or_else(|| {
            fresh += 1;
            fresh - 1
        });
        if let Some(v) = item.vector.take() {
            // A data dir must always reopen. A stored vector the index cannot take (one
            // written before validation covered it, or by an older version) costs that
            // item its vector, not the whole server: the item stays, served by the
            // non-vector sources until training or an upsert gives it a valid one.
            match check_vector(&v, schema) {
                Ok(()) => vectors.push((slot, v)),
                Err(e) => {
                    skipped += 1;
                    tracing::warn!(item = %item.id, cause = %e.message, "stored vector skipped");
                }
            }
        }
        slotted.push((slot, item));
    }
    if skipped > 0 {
        tracing::warn!(skipped, "items reopened without their stored vector");
    }
    let (index, start) = match snapshot {
        Some(index) => {
            let start = bring_up_to_date(&index, &vectors, &options.open_progress, true);
            (index, start)
        }
        None => {
            let index = VectorIndex::new(schema.vector.dim, index_metric(schema), options.hnsw);
            rebuild_index(&index, &vectors, &options.open_progress);
            (
                index,
                IndexStart::Rebuilt {
                    vectors: vectors.len(),
                },
            )
        }
    };
    // Every slot has at most one vector, pushed in `slotted`'s order.
    let mut vectors = vectors.into_iter().peekable();
    for (slot, mut item) in slotted {
        if let Some((_, v)) = vectors.next_if(|(s, _)| *s == slot) {
            item.vector = Some(v);
        }
        popularity.link(slot, &item.id);
        catalog.put(slot, item);
    }
    // Once the index holds every stored vector, so that the quantizer trains once on all
    // of them (a snapshot carries no codes: they are a function of the vectors).
    if let Some(dir) = data_dir {
        index.set_vector_dir(dir);
    }
    if let Err(e) = index.set_quantization(schema.vector.quantization) {
        // Still int8 and still exact; only the memory saving is lost.
        tracing::warn!(cause = %e, "cannot make the int8 index's vector file; its f32 vectors stay in memory");
    }
    // The per-value graphs share the main index's slots, so a loaded one is only used with
    // the main snapshot it was saved beside (and, like it, verified against the catalog).
    let partitions = Partitions::new(
        schema,
        index_metric(schema),
        options.hnsw,
        data_dir.map(Path::to_path_buf),
    );
    let loaded_partitions = if slots_kept {
        loaded_partitions
    } else {
        std::collections::HashMap::new()
    };
    let no_progress = OpenProgress::default();
    let (reused, built) = partitions.open(
        &catalog,
        loaded_partitions,
        |graph, vectors| {
            let wanted: RoaringBitmap = vectors.iter().map(|(slot, _)| *slot).collect();
            let matched = (graph.ids() & &wanted).len() as usize;
            if index_file::needs_compaction(graph.nodes(), matched) {
                return false;
            }
            bring_up_to_date(graph, vectors, &no_progress, false);
            true
        },
        |graph, vectors| insert_stored(graph, vectors, "building a partition graph", &no_progress),
    );
    if reused + built > 0 {
        let graphs = partitions.graphs();
        let vectors: usize = graphs.iter().map(|(_, g)| g.len()).sum();
        let bytes: usize = graphs.iter().map(|(_, g)| g.memory().total()).sum();
        tracing::info!(
            field = partitions.field().unwrap_or_default(),
            loaded = reused,
            built,
            vectors,
            bytes_per_vector = bytes.checked_div(vectors).unwrap_or(0),
            "partition graphs ready"
        );
    }
    for (id, state, seq) in loaded.users {
        users.load(id, state, seq);
    }
    Ok((index, partitions, catalog, popularity, (start, built)))
}

/// Makes a loaded snapshot hold exactly the stored `vectors` (by slot): what differs bit
/// for bit, or is missing, is re-inserted; what is no longer stored is removed. Then a
/// repair pass reconnects anything a snapshot taken mid-link left unreachable. Logged for
/// the main index; a per-value graph's at debug level (fifty lines at every start of a
/// catalog with fifty categories; "partition graphs ready" sums them up).
fn bring_up_to_date(
    index: &VectorIndex,
    vectors: &[(u32, Vec<f32>)],
    progress: &OpenProgress,
    main: bool,
) -> IndexStart {
    let started = std::time::Instant::now();
    let wanted: RoaringBitmap = vectors.iter().map(|(slot, _)| *slot).collect();
    let stale: Vec<(u32, Vec<f32>)> = vectors
        .iter()
        .filter(|(slot, v)| !index.holds(*slot, v))
        .cloned()
        .collect();
    let gone = index.ids() - &wanted;
    for slot in &gone {
        index.remove(slot);
    }
    if !stale.is_empty() {
        if main {
            tracing::info!(
                vectors = stale.len(),
                "re-inserting the vectors written after the index snapshot"
            );
        }
        insert_stored(index, &stale, "re-inserting vectors", progress);
    }
    let reconnected = index.repair();
    let start = IndexStart::Loaded {
        vectors: index.len(),
        reinserted: stale.len(),
        removed: gone.len() as usize,
    };
    let secs = format!("{:.2}", started.elapsed().as_secs_f64());
    let (vectors, reinserted, removed) = (index.len(), stale.len(), gone.len());
    if main {
        tracing::info!(
            vectors,
            reinserted,
            removed,
            reconnected,
            secs,
            "vector index loaded from its snapshot"
        );
    } else {
        tracing::debug!(
            vectors,
            reinserted,
            removed,
            reconnected,
            secs,
            "partition graph loaded from its snapshot"
        );
    }
    start
}

/// Vectors inserted per step of an index rebuild: small enough for a progress line every
/// few seconds, large enough for the parallel insert to keep every core busy.
const REBUILD_STEP: usize = 20_000;

/// How often an index rebuild logs its progress.
const REBUILD_LOG_EVERY: Duration = Duration::from_secs(5);

/// Builds the index from the stored vectors at open, logging count, rate and ETA every few
/// seconds (a restart on a large catalog takes minutes: it must not look hung).
fn rebuild_index(index: &VectorIndex, vectors: &[(u32, Vec<f32>)], progress: &OpenProgress) {
    let total = vectors.len();
    if total == 0 {
        return;
    }
    tracing::info!(vectors = total, "rebuilding the vector index");
    let started = std::time::Instant::now();
    insert_stored(index, vectors, "rebuilding the vector index", progress);
    tracing::info!(
        vectors = total,
        secs = format!("{:.1}", started.elapsed().as_secs_f64()),
        "vector index rebuilt"
    );
}

/// Inserts stored vectors in steps, logging `what` with count, rate and ETA every few
/// seconds, or telling `progress` (a terminal's bar) instead when there is one.
fn insert_stored(
    index: &VectorIndex,
    vectors: &[(u32, Vec<f32>)],
    what: &str,
    progress: &OpenProgress,
) {
    let total = vectors.len();
    let observer = progress.0.as_deref();
    if let Some(o) = observer {
        o.begin(total);
    }
    let started = std::time::Instant::now();
    let mut logged = started;
    let mut reported = 0usize;
    // In steps, renumbering the nodes in graph order as the index grows (see
    // `VectorIndex::insert_bulk`): a rebuilt index searches 1.3-1.9x faster in the f32
    // mode than one left in the stored order (BENCHMARKS.md, session 20).
    let bulk = index.insert_bulk(vectors, REBUILD_STEP, |done| {
        if let Some(o) = observer {
            o.written(done - reported);
        } else if logged.elapsed() >= REBUILD_LOG_EVERY && done < total {
            logged = std::time::Instant::now();
            let secs = started.elapsed().as_secs_f64();
            let rate = done as f64 / secs.max(1e-9);
            tracing::info!(
                done,
                total,
                rate = format!("{rate:.0}/s"),
                eta_s = format!("{:.0}", (total - done) as f64 / rate.max(1e-9)),
                "{what}: {done}/{total}"
            );
        }
        reported = done;
    });
    if let Err(e) = bulk {
        // Unreachable after check_vector (the same bounds); should the two ever disagree,
        // insert one by one so that only the offending vectors are lost.
        tracing::warn!(cause = %e, "batch insert of stored vectors failed; inserting one by one");
        for (slot, v) in &vectors[reported..] {
            if let Err(e) = index.insert_batch(std::slice::from_ref(&(*slot, v.clone()))) {
                tracing::warn!(slot, cause = %e, "stored vector skipped");
            }
        }
        if let Some(o) = observer {
            o.written(total - reported);
        }
    }
    if let Some(o) = observer {
        o.end();
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let Sink::Log(l) = &self.sink else { return };
        let crashed = l.faults.crashed();
        l.snapshots.stop();
        l.checkpointer.stop();
        l.wal.shutdown(crashed);
        if crashed {
            return;
        }
        // Absorb what is left, so that the next start has nothing to replay.
        if let Err(e) = l.checkpointer.run(None) {
            tracing::error!(cause = %e, "final checkpoint failed; the next start replays the log");
        }
        // So that the next start loads the index instead of rebuilding it.
        if let Err(e) = l.snapshots.save_now() {
            tracing::error!(cause = %e, "final index snapshot failed; the next start rebuilds or updates the index");
        }
    }
}

/// The sequence number an events cursor of this backend names.
fn events_cursor(after: Option<&str>) -> StoreResult<u64> {
    after.map_or(Ok(0), |a| {
        a.parse().map_err(|_| {
            StoreError::Invalid(ValidationError::new(format!(
                "'{a}' is not a position in the event log"
            )))
        })
    })
}

impl Inner {
    /// Up to `take` events after `after`, read on the calling (blocking) thread: redb's
    /// range, a bounded read at a time, without the events of users forgotten since the
    /// last checkpoint (redb drops them at the next one); when redb runs out, a checkpoint
    /// absorbs what the log holds beyond it and the rest is read (so a walk ends at the
    /// events acknowledged when it got there).
    fn events_after(&self, after: u64, take: usize) -> StoreResult<Vec<(u64, Event)>> {
        let l = match &self.sink {
            Sink::Memory(log) => return Ok(log.lock().page(after, take)),
            Sink::Log(l) => l,
        };
        let mut found = Vec::with_capacity(take.min(4096));
        let mut from = after;
        let mut absorbed = false;
        while found.len() < take {
            // Before the read: a user forgotten after it was taken is either still listed
            // in it or already gone from the redb snapshot read below.
            let forgotten = self.users.forgotten();
            let want = take - found.len();
            let batch = l.durable.events_after(from, want)?;
            let short = batch.len() < want;
            if let Some((seq, _)) = batch.last() {
                from = *seq;
            }
            found.extend(
                batch
                    .into_iter()
                    .filter(|(seq, e)| forgotten.get(&e.user_id).is_none_or(|gone| seq > gone)),
            );
            if short {
                if absorbed {
                    break;
                }
                l.checkpointer.run_for_events(Some(l.wal.last_seq()))?;
                absorbed = true;
            }
        }
        Ok(found)
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
        match &self.inner.sink {
            Sink::Log(l) if l.wal.is_failed() => {
                // Not ready while the log refuses writes; the probe itself retries, so
                // readiness comes back as soon as the disk takes writes again.
                self.blocking(|inner| match &inner.sink {
                    Sink::Log(l) => l.wal.health(),
                    Sink::Memory(_) => Ok(()),
                })
                .await
            }
            _ => Ok(()),
        }
    }

    async fn counts(&self) -> StoreResult<Counts> {
        Ok(Counts {
            items: self.inner.catalog.read().len() as u64,
            users: self.inner.users.len() as u64,
        })
    }

    async fn upsert_items(&self, items: Vec<ItemUpsert>) -> StoreResult<usize> {
        let w = self.blocking(move |inner| inner.upsert(items)).await?;
        self.acked(w).await
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
        let w = self.blocking(move |inner| inner.delete_item(&id)).await?;
        self.acked(w).await
    }

    async fn set_item_vectors(&self, vectors: Vec<(String, Vec<f32>)>) -> StoreResult<usize> {
        let w = self
            .blocking(move |inner| inner.set_item_vectors(vectors))
            .await?;
        self.acked(w).await
    }

    async fn touch_new_items(
        &self,
        touches: &[crate::NewItemTouch],
    ) -> StoreResult<Vec<crate::NewItemList>> {
        Ok(self.inner.touch_new_items(touches))
    }

    async fn set_new_item_vectors(&self, vectors: Vec<(String, Vec<f32>)>) -> StoreResult<usize> {
        let w = self
            .blocking(move |inner| inner.set_new_item_vectors(vectors))
            .await?;
        self.acked(w).await
    }

    async fn knn(&self, query: &[f32], k: usize, filter: &Filter) -> StoreResult<Vec<Hit>> {
        self.knn_planned(query, k, filter, &Exclusions::default(), false)
            .map(|(hits, _)| hits)
    }

    async fn knn_explained(
        &self,
        query: &[f32],
        k: usize,
        filter: &Filter,
    ) -> StoreResult<(Vec<Hit>, Option<KnnPlan>)> {
        self.knn_planned(query, k, filter, &Exclusions::default(), true)
    }

    async fn knn_excluding(
        &self,
        query: &[f32],
        k: usize,
        filter: &Filter,
        exclude: &Exclusions<'_>,
        explain: bool,
    ) -> StoreResult<(Vec<Hit>, Option<KnnPlan>)> {
        self.knn_planned(query, k, filter, exclude, explain)
    }

    fn index_plans(&self) -> Vec<(&'static str, u64)> {
        let c = self.inner.index.plan_counts();
        vec![
            ("exact", c.exact),
            ("graph", c.graph),
            ("graph_then_exact", c.graph_then_exact),
            ("sketch_scan", c.sketch_scan),
            ("partitioned", self.inner.partitions.searches()),
        ]
    }

    fn checkpoint_handovers(&self) -> Option<(u64, u64)> {
        match &self.inner.sink {
            Sink::Log(l) => Some(l.checkpointer.handovers()),
            Sink::Memory(_) => None,
        }
    }

    fn take_checkpoint_durations(&self) -> Vec<std::time::Duration> {
        match &self.inner.sink {
            Sink::Log(l) => l.checkpointer.take_durations(),
            Sink::Memory(_) => Vec::new(),
        }
    }

    fn replay_records(&self) -> Option<u64> {
        match &self.inner.sink {
            Sink::Log(l) => Some(l.wal.last_seq().saturating_sub(l.checkpointer.users_mark())),
            Sink::Memory(_) => None,
        }
    }

    async fn popular(&self, k: usize, filter: &Filter) -> StoreResult<Vec<PopularHit>> {
        let catalog = self.inner.catalog.read();
        let allowed = catalog.allowed(filter);
        let ranking = self.inner.popularity.read();
        Ok(ranking
            .top(k, allowed.as_ref(), |slot| catalog.item_at(slot).is_some())
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
        let ranking = self.inner.popularity.read();
        Ok(catalog
            .text_search(terms, k, allowed.as_ref(), |slot| ranking.of_slot(slot))
            .into_iter()
            .filter_map(|slot| catalog.item_at(slot).cloned())
            .collect())
    }

    async fn apply_events(&self, events: &[Event]) -> StoreResult<()> {
        self.apply_events_visible(events).await?.wait().await
    }

    async fn apply_events_visible(&self, events: &[Event]) -> StoreResult<crate::Durability> {
        // `Inner::apply_events` publishes the new states in memory and queues the log
        // record; the ticket is the record's acknowledgement.
        let ticket = if events.len() <= INLINE_EVENTS {
            self.inner.apply_events(events)?
        } else {
            let events = events.to_vec();
            self.blocking(move |inner| inner.apply_events(&events))
                .await?
        };
        Ok(match ticket {
            Some(ticket) => crate::Durability::pending(ticket.wait()),
            None => crate::Durability::done(),
        })
    }

    async fn apply_events_once(&self, batch: crate::once::Positioned<'_>) -> StoreResult<()> {
        let (run, first, events) = (batch.run, batch.first, batch.events.to_vec());
        let ticket = self
            .blocking(move |inner| {
                // Held through the apply: the check and the mark are one step.
                let mut marks = inner.bulk_marks.lock();
                let batch = crate::once::Positioned {
                    run,
                    first,
                    events: &events,
                };
                let left = batch.unapplied(|user| marks.get(run, user));
                let todo: Vec<Event> = left.iter().map(|(_, e)| (*e).clone()).collect();
                // One log record for the whole call, or an error and nothing applied.
                let ticket = inner.apply_events(&todo)?;
                marks.applied(run, left);
                Ok(ticket)
            })
            .await?;
        self.inner.sink.wait(ticket).await
    }

    async fn get_user(&self, id: &str) -> StoreResult<Option<UserState>> {
        Ok(self.inner.user_state(id))
    }

    async fn expire_users(&self, now_ms: i64) -> StoreResult<crate::Expired> {
        let Some(ttl) = self.inner.settings.session.ttl_ms() else {
            return Ok(crate::Expired {
                users: 0,
                pass_done: true,
            });
        };
        let shard = self
            .inner
            .sweep_next
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            % users::SHARDS;
        let cutoff = now_ms.saturating_sub(ttl);
        let w = self
            .blocking(move |inner| inner.expire_shard(shard, cutoff))
            .await?;
        let users = self.acked(w).await?;
        if users > 0 {
            tracing::debug!(users, shard, "inactive users expired");
        }
        Ok(crate::Expired {
            users,
            pass_done: shard == users::SHARDS - 1,
        })
    }

    async fn delete_user(&self, id: &str) -> StoreResult<bool> {
        // O(1) here: the user's events leave redb at the next checkpoint, through the
        // per-user index.
        let w = self.inner.delete_user(id)?;
        self.acked(w).await
    }

    async fn set_user_vectors(&self, vectors: Vec<(String, Vec<f32>)>) -> StoreResult<usize> {
        let w = self
            .blocking(move |inner| inner.set_user_vectors(vectors))
            .await?;
        self.acked(w).await
    }

    async fn events(&self) -> StoreResult<Vec<Event>> {
        match &self.inner.sink {
            Sink::Memory(log) => Ok(log.lock().events()),
            Sink::Log(_) => {
                // The event log lives in redb: absorb everything logged so far first.
                self.blocking(|inner| match &inner.sink {
                    Sink::Log(l) => {
                        l.checkpointer.run_for_events(Some(l.wal.last_seq()))?;
                        l.durable.events()
                    }
                    Sink::Memory(log) => Ok(log.lock().events()),
                })
                .await
            }
        }
    }

    async fn list_items(
        &self,
        after: Option<&str>,
        limit: usize,
        filter: &Filter,
    ) -> StoreResult<Page<Arc<Item>>> {
        let after = after.map(str::to_string);
        let filter = filter.clone();
        self.blocking(move |inner| {
            let catalog = inner.catalog.read();
            let allowed = catalog.allowed(&filter);
            let found = catalog.page(after.as_deref(), limit.saturating_add(1), allowed.as_ref());
            Ok(Page::cut(found, limit, |it| it.id.clone()))
        })
        .await
    }

    async fn list_users(&self, after: Option<&str>, limit: usize) -> StoreResult<Page<String>> {
        let after = after.map(str::to_string);
        self.blocking(move |inner| {
            let found = inner.users.page(after.as_deref(), limit.saturating_add(1));
            Ok(Page::cut(found, limit, String::clone))
        })
        .await
    }

    async fn events_page(&self, after: Option<&str>, limit: usize) -> StoreResult<Page<Event>> {
        let after = events_cursor(after)?;
        let found = self
            .blocking(move |inner| inner.events_after(after, limit.saturating_add(1)))
            .await?;
        let page = Page::cut(found, limit, |(seq, _)| seq.to_string());
        Ok(Page {
            entries: page.entries.into_iter().map(|(_, e)| e).collect(),
            next: page.next,
        })
    }

    async fn events_len(&self) -> StoreResult<u64> {
        self.blocking(|inner| match &inner.sink {
            Sink::Memory(log) => Ok(log.lock().len() as u64),
            Sink::Log(l) => {
                l.checkpointer.run_for_events(Some(l.wal.last_seq()))?;
                l.durable.events_len()
            }
        })
        .await
    }

    async fn rebuild_sessions(&self, users: &[String]) -> StoreResult<usize> {
        let mut users = users.to_vec();
        users.sort_unstable();
        users.dedup();
        if users.is_empty() {
            return Ok(0);
        }
        let w = self
            .blocking(move |inner| inner.rebuild_sessions(&users))
            .await?;
        self.acked(w).await
    }

    async fn next_model_seq(&self) -> StoreResult<u64> {
        self.registry(|inner, models| match models {
            Some(m) => Ok(m.next_seq()),
            None => inner.durable()?.next_model_seq(),
        })
        .await
    }

    async fn put_model_chunk(&self, seq: u64, index: u32, bytes: Vec<u8>) -> StoreResult<()> {
        self.registry(move |inner, models| match models {
            Some(m) => {
                m.put_chunk(seq, index, bytes);
                Ok(())
            }
            None => inner.durable()?.put_model_chunk(seq, index, &bytes),
        })
        .await
    }

    async fn model_chunk(&self, seq: u64, index: u32) -> StoreResult<Option<Vec<u8>>> {
        self.registry(move |inner, models| match models {
            Some(m) => Ok(m.chunk(seq, index)),
            None => inner.durable()?.model_chunk(seq, index),
        })
        .await
    }

    async fn put_model(&self, record: ModelRecord) -> StoreResult<()> {
        self.registry(move |inner, models| match models {
            Some(m) => {
                m.put(record);
                Ok(())
            }
            None => inner.durable()?.put_model(&record),
        })
        .await
    }

    async fn models(&self) -> StoreResult<ModelRegistry> {
        self.registry(|inner, models| match models {
            Some(m) => Ok(m.registry()),
            None => inner.durable()?.models(),
        })
        .await
    }

    async fn set_live_model(&self, seq: u64) -> StoreResult<()> {
        self.registry(move |inner, models| {
            match models {
                Some(m) => m.set_live(seq)?,
                None => inner.durable()?.set_live_model(seq)?,
            }
            inner.live_next_changed();
            Ok(())
        })
        .await
    }

    async fn delete_model(&self, seq: u64) -> StoreResult<bool> {
        self.registry(move |inner, models| match models {
            Some(m) => m.delete(seq),
            None => inner.durable()?.delete_model(seq),
        })
        .await
    }

    async fn put_model_transitions(&self, seq: u64, lists: Vec<NextList>) -> StoreResult<()> {
        self.registry(move |inner, models| {
            match models {
                Some(m) => {
                    crate::models::check_next(&lists)?;
                    m.put_next(seq, lists);
                }
                None => inner.durable()?.put_model_transitions(seq, &lists)?,
            }
            // A version's table is written before it goes live; should the live one be
            // written anyway, the next read loads it again.
            inner.live_next_changed();
            Ok(())
        })
        .await
    }

    async fn transitions(&self, items: &[String]) -> StoreResult<Vec<Vec<(String, f32)>>> {
        let cached = self.inner.live_next.lock().clone();
        let table = match cached {
            Some(t) => t,
            None => {
                self.registry(|inner, models| {
                    let seen = inner
                        .live_next_gen
                        .load(std::sync::atomic::Ordering::SeqCst);
                    let loaded = Arc::new(match models {
                        Some(m) => m.live_next(),
                        None => inner.durable()?.live_next()?,
                    });
                    let mut slot = inner.live_next.lock();
                    if inner
                        .live_next_gen
                        .load(std::sync::atomic::Ordering::SeqCst)
                        == seen
                    {
                        *slot = Some(loaded.clone());
                    }
                    Ok(loaded)
                })
                .await?
            }
        };
        Ok(items
            .iter()
            .map(|i| table.lists.get(i).cloned().unwrap_or_default())
            .collect())
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

    /// The nice values of this process's threads named `name`.
    #[cfg(target_os = "linux")]
    fn nice_of_threads(name: &str) -> Vec<i32> {
        let mut nice = Vec::new();
        for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
            // The fields after the parenthesized name: state is the 3rd field, nice the 19th.
            let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
            if comm.trim_end() == name
                && let Some(n) = after.split_whitespace().nth(16)
            {
                nice.push(n.parse().unwrap());
            }
        }
        nice
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_checkpoint_thread_runs_at_the_configured_nice_value() {
        let dir = tempfile::tempdir().unwrap();
        let options = EmbeddedOptions {
            checkpoint_nice: 13,
            checkpoint_idle: false,
            ..Default::default()
        };
        let store = EmbeddedStore::open(
            dir.path(),
            Some(schema()),
            ModelSettings::default(),
            options.clone(),
        )
        .unwrap();
        // `open` returns once the thread has set its priority (Checkpointer::start).
        let seen = nice_of_threads("recd-checkpoint");
        assert!(
            seen.contains(&13),
            "checkpoint threads' nice values: {seen:?}"
        );
        drop(store);
        // On idle cycles (the default), the catch-up thread runs at the nice value.
        let idle = EmbeddedStore::open(
            dir.path(),
            None,
            ModelSettings::default(),
            EmbeddedOptions {
                checkpoint_idle: true,
                ..options
            },
        )
        .unwrap();
        let seen = nice_of_threads("recd-catchup");
        assert!(
            seen.contains(&13),
            "catch-up threads' nice values: {seen:?}"
        );
        drop(idle);
        assert!(
            !nice_of_threads("recd-log").contains(&13),
            "the log writer (on the request path) keeps the process's priority"
        );
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
        assert!(u.purchased.iter().any(|p| p == "a") && u.session.is_some());
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
    async fn the_schemas_quantization_reaches_the_index_and_a_dir_may_change_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut int8 = schema();
        int8.vector.quantization = recd_core::Quantization::Int8;
        let open = |schema: Option<Schema>| {
            EmbeddedStore::open(
                dir.path(),
                schema,
                ModelSettings::default(),
                EmbeddedOptions::default(),
            )
            .unwrap()
        };
        async fn nearest(s: &EmbeddedStore) -> Vec<(String, f32)> {
            let hits = s.knn(&[1.0, 0.1], 10, &Filter::all()).await.unwrap();
            hits.iter().map(|h| (h.item.id.clone(), h.score)).collect()
        }
        let first = {
            let s = open(Some(int8.clone()));
            assert_eq!(s.index_quantization(), recd_index::Quantization::Int8);
            s.upsert_items(vec![
                upsert(json!({"id":"a","vector":[1.0,0.0]})),
                upsert(json!({"id":"b","vector":[0.0,1.0]})),
                upsert(json!({"id":"c","vector":[1.0,0.2]})),
            ])
            .await
            .unwrap();
            let hits = nearest(&s).await;
            assert_eq!(hits[0].0, "c");
            hits
        };
        // Remembered by the dir; then changed by a config that differs only in it.
        assert_eq!(
            open(None).index_quantization(),
            recd_index::Quantization::Int8
        );
        {
            let s = open(Some(schema()));
            assert_eq!(s.index_quantization(), recd_index::Quantization::None);
            assert_eq!(
                nearest(&s).await,
                first,
                "same answers, exact scores, either way"
            );
        }
        assert_eq!(
            open(None).index_quantization(),
            recd_index::Quantization::None
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
                .sink
                .append(&OpRef::Items(std::slice::from_ref(&bad)))
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

    /// A durable store in `dir` that fsyncs every write (`always`), holding item "a".
    async fn always_store_with_one_item(
        dir: &tempfile::TempDir,
    ) -> (EmbeddedStore, EmbeddedOptions) {
        let options = EmbeddedOptions {
            fsync: Fsync::Always,
            ..Default::default()
        };
        let s = EmbeddedStore::open(
            dir.path(),
            Some(schema()),
            ModelSettings::default(),
            options.clone(),
        )
        .unwrap();
        s.upsert_items(vec![upsert(json!({"id":"a","vector":[1.0,0.0]}))])
            .await
            .unwrap();
        (s, options)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_disk_answers_unavailable_and_heals_without_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (s, options) = always_store_with_one_item(&dir).await;
        s.faults().set_disk_full(true);
        let r = s
            .apply_events(&[event("u", "a", EventType::Click, 1)])
            .await;
        assert!(
            matches!(&r, Err(StoreError::Unavailable(m)) if m.contains("No space left")),
            "{r:?}"
        );
        // Refused outright while the log is failed; not ready either.
        let r = s.upsert_items(vec![upsert(json!({"id":"b"}))]).await;
        assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
        assert!(matches!(s.ping().await, Err(StoreError::Unavailable(_))));
        assert!(s.get_items(&["b".into()]).await.unwrap()[0].is_none());
        // An event refused at the append leaves its user's state as it was (events are
        // applied, in place, only once their record is appended).
        let before = s.get_user("u").await.unwrap();
        let r = s
            .apply_events(&[event("u", "a", EventType::AddToCart, 2)])
            .await;
        assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
        assert_eq!(s.get_user("u").await.unwrap(), before);
        // Space returns: the readiness probe's retry brings the log back.
        s.faults().set_disk_full(false);
        s.ping().await.unwrap();
        s.apply_events(&[event("u", "a", EventType::Purchase, 2)])
            .await
            .unwrap();
        // The click whose write failed was applied in memory and kept for the retry: memory
        // and the log agree again (an unacknowledged write may or may not survive; here it
        // does, everywhere).
        let u = s.get_user("u").await.unwrap().unwrap();
        assert_eq!((u.counters.click, u.counters.purchase), (1, 1));
        s.crash();
        let s = EmbeddedStore::open(dir.path(), None, ModelSettings::default(), options).unwrap();
        assert_eq!(s.get_user("u").await.unwrap(), Some(u));
        assert_eq!(s.events().await.unwrap().len(), 2);
    }

    /// Visibility does not wait for the log: the events are readable as soon as
    /// `apply_events_visible` returns, while the acknowledgement is still to come (here it
    /// never comes as a success: the disk is full, so the wait reports it).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn events_are_visible_before_their_log_record_is_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let (s, _) = always_store_with_one_item(&dir).await;
        s.faults().set_disk_full(true);
        let durable = s
            .apply_events_visible(&[event("u", "a", EventType::Click, 1)])
            .await
            .expect("visible even though the log cannot be written");
        let u = s.get_user("u").await.unwrap().unwrap();
        assert_eq!(u.counters.click, 1);
        let r = durable.wait().await;
        assert!(
            matches!(&r, Err(StoreError::Unavailable(m)) if m.contains("No space left")),
            "{r:?}"
        );
        s.faults().set_disk_full(false);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn deleting_a_user_reads_only_their_events() {
        let dir = tempfile::tempdir().unwrap();
        let s = EmbeddedStore::open(
            dir.path(),
            Some(schema()),
            ModelSettings::default(),
            EmbeddedOptions::default(),
        )
        .unwrap();
        let many: Vec<Event> = (0..500)
            .map(|i| event(&format!("other{}", i % 50), "a", EventType::View, i))
            .collect();
        s.apply_events(&many).await.unwrap();
        s.apply_events(&[
            event("gdpr", "a", EventType::View, 1),
            event("gdpr", "b", EventType::Click, 2),
        ])
        .await
        .unwrap();
        s.checkpoint().unwrap();
        let Sink::Log(l) = &s.inner.sink else {
            unreachable!()
        };
        let (mine, _) = l.durable.user_events(&["gdpr"]).unwrap();
        assert_eq!(mine["gdpr"].len(), 2);
        assert!(s.delete_user("gdpr").await.unwrap());
        s.checkpoint().unwrap();
        let (mine, _) = l.durable.user_events(&["gdpr", "other7"]).unwrap();
        assert!(!mine.contains_key("gdpr"));
        assert_eq!(mine["other7"].len(), 10);
        assert_eq!(s.events().await.unwrap().len(), 500);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn each_checkpoint_that_absorbs_writes_reports_its_duration_once() {
        let dir = tempfile::tempdir().unwrap();
        // No background checkpoint during the test: only the ones it asks for.
        let options = EmbeddedOptions {
            checkpoint_seconds: 3600.0,
            ..EmbeddedOptions::default()
        };
        let s = EmbeddedStore::open(
            dir.path(),
            Some(schema()),
            ModelSettings::default(),
            options,
        )
        .unwrap();
        assert!(s.take_checkpoint_durations().is_empty());
        s.apply_events(&[event("u", "a", EventType::View, 1)])
            .await
            .unwrap();
        s.checkpoint().unwrap();
        assert_eq!(s.take_checkpoint_durations().len(), 1);
        assert!(s.take_checkpoint_durations().is_empty(), "taken once");
        s.checkpoint().unwrap();
        assert!(
            s.take_checkpoint_durations().is_empty(),
            "a checkpoint with nothing to absorb is not one"
        );
        for t in 2..4 {
            s.apply_events(&[event("u", "b", EventType::Click, t)])
                .await
                .unwrap();
            s.checkpoint().unwrap();
        }
        assert_eq!(s.take_checkpoint_durations().len(), 2);
        let memory = EmbeddedStore::in_memory(schema(), ModelSettings::default()).unwrap();
        memory
            .apply_events(&[event("u", "a", EventType::View, 1)])
            .await
            .unwrap();
        assert_eq!(memory.checkpoint().unwrap(), 0);
        assert!(memory.take_checkpoint_durations().is_empty());
    }
}
