//! The vector index's snapshot file (`DATA_DIR/index/hnsw.snapshot`): saved at shutdown and
//! in the background, loaded at start so that a restart does not re-link every vector
//! (a rebuild is 16-18 s per 100k items on 2 cores; a load is a sequential read).
//!
//! # What the file is, and why it can never give a wrong answer
//! The file is a *cache* of the index, never a source of truth: the stored items (redb +
//! the write log) are. So instead of proving that the file matches the data through log
//! positions (which would tie it to the write path's internals and to exactly when a
//! checkpoint ran), the loader **checks the contents**: after loading, every stored item's
//! vector is compared bit for bit with the index's copy (`VectorIndex::holds`, ~50 ms per
//! million 64-d vectors) and anything that differs — items added, updated or deleted after
//! the snapshot, or saved while the index was changing (snapshots are fuzzy, see
//! `recd_index`'s `snapshot` module) — is re-inserted or removed. After that the index
//! holds exactly the stored vectors, whatever the file's age; an old file only costs the
//! re-inserts. A reachability repair pass then reconnects any node that a snapshot taken
//! mid-link saved with partial lists.
//!
//! Index ids are catalog slots, and a restart would otherwise number the items afresh, so
//! the file also keeps the catalog's slot table (slot → item id, the `extra` bytes of the
//! index snapshot): at load, every item known to the snapshot gets its old slot back, and
//! new items get slots after them.
//!
//! The per-value graphs of `vector.partition_by` (see `partitions`) are saved with it, one
//! file per value in `DATA_DIR/index/partitions/` (see `partition_files`: only the graphs
//! that changed are rewritten), under the same slot numbers, and checked the same way at
//! open; a graph whose file is missing or unusable is built afresh from the catalog, and
//! none is loaded when the main snapshot was not (its slot numbers would not hold).
//!
//! Anything that cannot be verified — a missing, truncated, corrupted or foreign file, a
//! format of another version, another dimension, metric or `m` — is logged as a warning
//! and the index is rebuilt from the items as before: never a wrong answer, never a failed
//! start. Checksums (CRC-32 over the whole file) catch torn or damaged bytes.
//!
//! # Writing
//! Atomic: the snapshot streams to `hnsw.snapshot.tmp` (the index holds a lock only per
//! ~1,000 nodes, so writes and searches go on), is fsynced, renamed over the old file, and
//! the directory is fsynced. A crash mid-write leaves a temp file the next start deletes;
//! the previous snapshot stays intact.
//!
//! # When
//! - At a clean shutdown (skipped when nothing changed since the file was written).
//! - In the background ([`SnapshotOptions`]): once `changes` inserts/updates/removes were
//!   made since the last snapshot, or `seconds` after it if anything changed at all, so a
//!   crash restarts from a recent file. Never more often than ten times the previous
//!   snapshot's duration after it ended, so that snapshot IO stays under ~10 % of the time
//!   even during a bulk import of a huge catalog. Before such a snapshot, an index whose
//!   writes since its last renumbering reach a sixteenth of its nodes (a training
//!   write-back re-links every node in place; new items go at the end) is renumbered in
//!   graph order (`VectorIndex::reorder_if_stale`): the snapshot, and the running index,
//!   then keep the order searches are fastest in.
//! - Compaction: removed items stay in the graph as waypoints. When a snapshot's dead nodes
//!   (removed, or not matching any stored item) are over a quarter of it, the start
//!   rebuilds instead of loading, and the next snapshot is compact: the file stays bounded
//!   by the live catalog.

use std::collections::HashMap;
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, RwLock};
use recd_index::{HnswParams, Metric, SnapshotInfo, VectorIndex};
use serde::{Deserialize, Serialize};

use super::catalog::Catalog;
use super::partition_files::PartitionFiles;
use super::partitions::Partitions;

/// `[embedded.index_snapshot]`: when the vector index is saved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SnapshotOptions {
    /// Save the index at shutdown and in the background, and load it at start. Off: every
    /// start rebuilds the index from the items (and an existing file is left alone).
    pub enabled: bool,
    /// Save in the background once this many vector inserts, updates and removes were made
    /// since the last snapshot.
    pub changes: u64,
    /// ...or this many seconds after the last snapshot if anything changed at all (a value
    /// that is not a positive number means the default, 300).
    pub seconds: f64,
}

impl Default for SnapshotOptions {
    fn default() -> Self {
        Self {
            enabled: true,
            changes: 10_000,
            seconds: 300.0,
        }
    }
}

impl SnapshotOptions {
    fn interval(&self) -> Duration {
        Duration::try_from_secs_f64(self.seconds)
            .ok()
            .filter(|d| !d.is_zero())
            .unwrap_or(Duration::from_secs(300))
    }
}

const FILE: &str = "hnsw.snapshot";
const TEMP: &str = "hnsw.snapshot.tmp";
/// Version of the slot table kept in the snapshot's extra bytes.
const TABLE_VERSION: u8 = 1;
/// Catalog slots copied per read-lock hold while the slot table is built.
const TABLE_CHUNK: u32 = 4096;
/// A failed background snapshot is retried after this long (not every second).
const RETRY_AFTER: Duration = Duration::from_secs(60);
/// How often the background thread looks at the change count.
const TICK: Duration = Duration::from_secs(1);

/// The directory of the index's snapshot files (the per-value graphs' too).
pub(super) fn dir_of(data_dir: &Path) -> PathBuf {
    data_dir.join("index")
}

/// The snapshot file of a data dir.
pub fn path(data_dir: &Path) -> PathBuf {
    dir_of(data_dir).join(FILE)
}

/// The temp file a snapshot is written to before its rename.
pub fn temp_path(data_dir: &Path) -> PathBuf {
    dir_of(data_dir).join(TEMP)
}

/// A loaded snapshot: the index, and the item id of each catalog slot it was saved with.
pub(super) struct Loaded {
    pub(super) index: VectorIndex,
    pub(super) slots: Vec<Option<String>>,
}

/// How the index came to be at open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexStart {
    /// Built by inserting every stored vector.
    Rebuilt {
        /// Vectors inserted.
        vectors: usize,
    },
    /// Loaded from its snapshot, then brought up to date with the stored items.
    Loaded {
        /// Vectors in the index after the update.
        vectors: usize,
        /// Vectors added or changed after the snapshot (re-inserted).
        reinserted: usize,
        /// Vectors the snapshot held that are no longer stored (removed).
        removed: usize,
    },
}

/// Reads the snapshot of `data_dir` for an index of `dim` / `metric` / `params`. `None`
/// (after a log line saying why) when there is none or it cannot be used. A temp file left
/// by a snapshot that never finished is deleted.
pub(super) fn load(
    data_dir: &Path,
    dim: usize,
    metric: Metric,
    params: HnswParams,
) -> Option<Loaded> {
    let temp = temp_path(data_dir);
    if temp.exists() {
        tracing::warn!(file = %temp.display(), "deleting an index snapshot that was never finished");
        if let Err(e) = std::fs::remove_file(&temp) {
            tracing::warn!(cause = %e, "cannot delete the unfinished index snapshot");
        }
    }
    let file = path(data_dir);
    let bytes = match std::fs::read(&file) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(file = %file.display(), cause = %e, "cannot read the index snapshot; rebuilding the index");
            return None;
        }
    };
    let decoded =
        VectorIndex::read_snapshot(&bytes, dim, metric, params).and_then(|(index, extra)| {
            let slots = decode_table(extra).ok_or_else(|| {
                recd_index::SnapshotError::Corrupt("the catalog slot table".into())
            })?;
            Ok(Loaded { index, slots })
        });
    match decoded {
        Ok(l) => Some(l),
        Err(e) => {
            tracing::warn!(file = %file.display(), cause = %e, "index snapshot unusable; rebuilding the index");
            None
        }
    }
}

/// Whether a loaded snapshot is mostly dead weight: more than a quarter of its nodes are
/// removed or match no stored item (`matched` items of the catalog have their slot in it).
pub(super) fn needs_compaction(nodes: usize, matched: usize) -> bool {
    nodes.saturating_sub(matched).saturating_mul(4) > nodes
}

/// The catalog's slot table: `version u8 | slots u64 | per slot: len u32 (u32::MAX: no
/// item) + UTF-8 id`. Built in chunks, each under a short read lock of the catalog.
fn encode_table(catalog: &RwLock<Catalog>) -> Vec<u8> {
    let mut out = vec![TABLE_VERSION];
    let slots = catalog.read().next_slot();
    out.extend_from_slice(&u64::from(slots).to_le_bytes());
    for start in (0..slots).step_by(TABLE_CHUNK as usize) {
        let c = catalog.read();
        for slot in start..slots.min(start.saturating_add(TABLE_CHUNK)) {
            match c.item_at(slot) {
                Some(item) => {
                    // Item ids are validated short strings; a 4 GiB id cannot exist.
                    out.extend_from_slice(&(item.id.len() as u32).to_le_bytes());
                    out.extend_from_slice(item.id.as_bytes());
                }
                None => out.extend_from_slice(&u32::MAX.to_le_bytes()),
            }
        }
    }
    out
}

fn decode_table(bytes: &[u8]) -> Option<Vec<Option<String>>> {
    let (&version, rest) = bytes.split_first()?;
    if version != TABLE_VERSION {
        return None;
    }
    let (n, mut rest) = rest.split_at_checked(8)?;
    let n = usize::try_from(u64::from_le_bytes(n.try_into().ok()?)).ok()?;
    // Every entry takes at least 4 bytes: refuse a count the bytes cannot hold.
    if n > rest.len() / 4 {
        return None;
    }
    let mut slots = Vec::with_capacity(n);
    for _ in 0..n {
        let (len, tail) = rest.split_at_checked(4)?;
        let len = u32::from_le_bytes(len.try_into().ok()?);
        rest = tail;
        if len == u32::MAX {
            slots.push(None);
            continue;
        }
        let (id, tail) = rest.split_at_checked(len as usize)?;
        slots.push(Some(std::str::from_utf8(id).ok()?.to_owned()));
        rest = tail;
    }
    rest.is_empty().then_some(slots)
}

/// Old slot of each item id in a loaded snapshot's table.
pub(super) fn slot_map(slots: &[Option<String>]) -> HashMap<&str, u32> {
    slots
        .iter()
        .enumerate()
        .filter_map(|(slot, id)| id.as_deref().map(|id| (id, slot as u32)))
        .collect()
}

/// Writes the snapshot atomically (temp file, fsync, rename, fsync of the directory).
fn save(
    data_dir: &Path,
    index: &VectorIndex,
    catalog: &RwLock<Catalog>,
) -> std::io::Result<SnapshotInfo> {
    let dir = dir_of(data_dir);
    std::fs::create_dir_all(&dir)?;
    let temp = temp_path(data_dir);
    let written = (|| {
        let table = encode_table(catalog);
        let mut w = BufWriter::with_capacity(1 << 20, File::create(&temp)?);
        let info = index.write_snapshot(&mut w, &table)?;
        let file = w.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        Ok(info)
    })();
    let info = match written {
        Ok(info) => info,
        Err(e) => {
            let _ = std::fs::remove_file(&temp);
            return Err(e);
        }
    };
    std::fs::rename(&temp, path(data_dir))?;
    File::open(&dir)?.sync_all()?;
    Ok(info)
}

/// Saves the index of a durable store: on demand, in the background, and at shutdown.
#[derive(Debug)]
pub(super) struct Snapshots {
    data_dir: PathBuf,
    options: SnapshotOptions,
    index: Arc<VectorIndex>,
    partitions: Arc<Partitions>,
    catalog: Arc<RwLock<Catalog>>,
    /// One snapshot at a time (they share the temp file).
    saving: Mutex<()>,
    /// `index.changes()` as of the file on disk; `u64::MAX`: the file is not current.
    saved: AtomicU64,
    /// Which per-value graphs' files are current.
    partition_files: PartitionFiles,
    stop: Mutex<bool>,
    wake: Condvar,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Snapshots {
    /// `current`: whether the file on disk already holds exactly this index (a clean load);
    /// `partition_files`: the file each per-value graph was loaded from (see
    /// `partition_files::load`).
    pub(super) fn new(
        data_dir: &Path,
        options: SnapshotOptions,
        index: Arc<VectorIndex>,
        partitions: Arc<Partitions>,
        catalog: Arc<RwLock<Catalog>>,
        current: bool,
        partition_files: HashMap<String, String>,
    ) -> Arc<Self> {
        let saved = if current { index.changes() } else { u64::MAX };
        let partition_files = PartitionFiles::new(data_dir, partition_files, &partitions.graphs());
        Arc::new(Self {
            data_dir: data_dir.to_path_buf(),
            options,
            index,
            partitions,
            catalog,
            saving: Mutex::new(()),
            saved: AtomicU64::new(saved),
            partition_files,
            stop: Mutex::new(false),
            wake: Condvar::new(),
            thread: Mutex::new(None),
        })
    }

    /// Starts the background thread (when snapshots are enabled).
    pub(super) fn start(self: &Arc<Self>) -> std::io::Result<()> {
        if !self.options.enabled {
            return Ok(());
        }
        let me = self.clone();
        let handle = std::thread::Builder::new()
            .name("recd-index-snapshot".into())
            .spawn(move || me.run())?;
        *self.thread.lock() = Some(handle);
        Ok(())
    }

    /// Saves now what is not current: the main index's file, and the per-value graphs'
    /// files that changed (see `partition_files`). Returns what the main file got (`None`:
    /// it was current, or snapshots are off).
    pub(super) fn save_now(&self) -> std::io::Result<Option<SnapshotInfo>> {
        if !self.options.enabled {
            return Ok(None);
        }
        let _one = self.saving.lock();
        // Read before writing: changes made during the write count for the next one.
        let changes = self.index.changes();
        let graphs = self.partitions.graphs();
        let main_current = self.saved.load(Ordering::Relaxed) == changes;
        if main_current && !self.partition_files.stale(&graphs) {
            return Ok(None);
        }
        let started = Instant::now();
        let info = if main_current {
            None
        } else {
            Some(save(&self.data_dir, &self.index, &self.catalog)?)
        };
        let partitions = self.partition_files.save(&graphs)?;
        self.saved.store(changes, Ordering::Relaxed);
        tracing::info!(
            nodes = info.map(|i| i.nodes),
            live = info.map(|i| i.live),
            bytes = info.map_or(0, |i| i.bytes),
            partitions = graphs.len(),
            partition_files = partitions.files,
            partition_bytes = partitions.bytes,
            partition_files_deleted = partitions.deleted,
            secs = format!("{:.2}", started.elapsed().as_secs_f64()),
            "vector index snapshot saved"
        );
        Ok(info)
    }

    /// Whether the next save has something to write.
    fn pending(&self) -> bool {
        self.saved.load(Ordering::Relaxed) != self.index.changes()
            || self.partition_files.stale(&self.partitions.graphs())
    }

    /// Stops the background thread (waits for a snapshot in progress).
    pub(super) fn stop(&self) {
        *self.stop.lock() = true;
        self.wake.notify_all();
        if let Some(handle) = self.thread.lock().take() {
            let _ = handle.join();
        }
    }

    /// The background policy (see the module docs).
    fn run(&self) {
        let interval = self.options.interval();
        let mut last = Instant::now();
        let mut gap = Duration::ZERO;
        loop {
            {
                let mut stop = self.stop.lock();
                if !*stop {
                    self.wake.wait_for(&mut stop, TICK);
                }
                if *stop {
                    return;
                }
            }
            if !self.pending() {
                continue;
            }
            let saved = self.saved.load(Ordering::Relaxed);
            let changes = self.index.changes();
            // A graph built or changed with the main index current (a value's graph grown,
            // or built at open beside a loaded main index) counts as one change: it is
            // saved `seconds` after the last snapshot.
            let pending = if saved == u64::MAX {
                changes
            } else {
                changes.wrapping_sub(saved)
            }
            .max(1);
            if !due(pending, last.elapsed(), self.options.changes, interval, gap) {
                continue;
            }
            let started = Instant::now();
            match self.background_save() {
                Ok(_) => gap = started.elapsed() * 10,
                Err(e) => {
                    tracing::warn!(cause = %e, "vector index snapshot failed; retrying later");
                    gap = RETRY_AFTER;
                }
            }
            last = Instant::now();
        }
    }

    /// What the background thread does when a snapshot is due: renumber the running index
    /// if it drifted from graph order, then save. Written nodes sit where they were (an
    /// update) or at the end (a new item); after a training write-back or many new items
    /// they are put back in graph order first (searches go on meanwhile; writes wait,
    /// ~0.15 s per 100k nodes). The file is in graph order either way (see
    /// `recd_index::snapshot`); this is for the running server's searches.
    fn background_save(&self) -> std::io::Result<Option<SnapshotInfo>> {
        let started = Instant::now();
        match self.index.reorder_if_stale() {
            Ok(true) => tracing::info!(
                nodes = self.index.nodes(),
                secs = format!("{:.2}", started.elapsed().as_secs_f64()),
                "vector index renumbered in graph order"
            ),
            Ok(false) => {}
            Err(e) => tracing::warn!(cause = %e, "vector index left in its order"),
        }
        for (value, graph) in self.partitions.graphs() {
            if let Err(e) = graph.reorder_if_stale() {
                tracing::warn!(value, cause = %e, "partition graph left in its order");
            }
        }
        self.save_now()
    }
}

/// Whether the background thread saves now: something changed, and either `changes`
/// changes piled up or `interval` passed since the last snapshot — but never sooner than
/// `gap` after it (ten times the last snapshot's duration, so that saving a huge index
/// during a bulk import takes at most ~10 % of the time).
fn due(pending: u64, since: Duration, changes: u64, interval: Duration, gap: Duration) -> bool {
    pending > 0 && since >= gap && (pending >= changes || since >= interval)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_background_policy() {
        let (n, t) = (100, Duration::from_secs(300));
        let s = Duration::from_secs;
        assert!(!due(0, s(10_000), n, t, s(0)), "nothing changed");
        assert!(!due(99, s(10), n, t, s(0)), "too few changes, too soon");
        assert!(due(100, s(10), n, t, s(0)), "enough changes");
        assert!(due(1, s(300), n, t, s(0)), "one change, long enough ago");
        assert!(
            !due(1_000_000, s(10), n, t, s(20)),
            "within ten times the last duration"
        );
        assert!(due(1_000_000, s(20), n, t, s(20)));
    }

    #[test]
    fn slot_tables_round_trip_and_refuse_garbage() {
        let slots = vec![Some("a".to_string()), None, Some("ü-1".to_string())];
        let mut bytes = vec![TABLE_VERSION];
        bytes.extend_from_slice(&3u64.to_le_bytes());
        for s in &slots {
            match s {
                Some(id) => {
                    bytes.extend_from_slice(&(id.len() as u32).to_le_bytes());
                    bytes.extend_from_slice(id.as_bytes());
                }
                None => bytes.extend_from_slice(&u32::MAX.to_le_bytes()),
            }
        }
        assert_eq!(decode_table(&bytes), Some(slots));
        for cut in 0..bytes.len() {
            assert_eq!(decode_table(&bytes[..cut]), None, "cut at {cut}");
        }
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(decode_table(&long), None);
        let mut huge = bytes.clone();
        huge[1..9].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(decode_table(&huge), None);
    }
}

#[cfg(test)]
mod store_tests {
    //! The store's side: a restart loads the index, an old snapshot is brought up to date,
    //! and anything unusable is rebuilt — with the same, right answers in every case.

    use std::collections::BTreeMap;

    use recd_core::{Filter, ItemUpsert, Schema};
    use serde_json::json;

    use super::IndexStart;
    use crate::embedded::exact::{cos, found_of_top10};
    use crate::embedded::{EmbeddedOptions, EmbeddedStore, Fsync, Sink};
    use crate::{ModelSettings, Store};

    const DIM: usize = 8;

    fn schema() -> Schema {
        Schema::demo(DIM)
    }

    fn options() -> EmbeddedOptions {
        EmbeddedOptions {
            fsync: Fsync::Always,
            ..EmbeddedOptions::default()
        }
    }

    /// [`options`] with index snapshots off: every open rebuilds.
    fn snapshots_off() -> EmbeddedOptions {
        EmbeddedOptions {
            index_snapshot: super::SnapshotOptions {
                enabled: false,
                ..Default::default()
            },
            ..options()
        }
    }

    fn open(dir: &std::path::Path, options: EmbeddedOptions) -> EmbeddedStore {
        EmbeddedStore::open(dir, Some(schema()), ModelSettings::default(), options).expect("open")
    }

    /// Deterministic vectors (xorshift).
    fn vector(seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..DIM)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                ((s >> 40) as f32 / (1u64 << 23) as f32) - 1.0
            })
            .collect()
    }

    /// The test's own copy of what is stored: id -> (vector, category).
    type Data = BTreeMap<String, (Option<Vec<f32>>, &'static str)>;

    fn category(i: u64) -> &'static str {
        ["a", "b", "c"][(i % 3) as usize]
    }

    async fn put(s: &EmbeddedStore, data: &mut Data, ids: impl Iterator<Item = u64>, seed: u64) {
        let mut batch = Vec::new();
        for i in ids {
            let (id, v, cat) = (format!("i{i}"), vector(i * 1_000 + seed), category(i));
            let j = json!({"id": id, "vector": v, "category": cat});
            batch.push(ItemUpsert::from_json(&j, &schema()).expect("item"));
            data.insert(id, (Some(v), cat));
        }
        s.upsert_items(batch).await.expect("upsert");
    }

    fn by_category(cat: &str) -> Filter {
        Filter::parse(&json!({"category": {"any": [cat]}}), &schema()).expect("filter")
    }

    /// The answers to a fixed set of queries, unfiltered and filtered.
    async fn answers(s: &EmbeddedStore) -> Vec<Vec<(String, f32)>> {
        let mut out = Vec::new();
        for q in 0..25 {
            let q = vector(777_000 + q);
            for f in [Filter::all(), by_category("a"), by_category("c")] {
                let hits = s.knn(&q, 10, &f).await.expect("knn");
                out.push(
                    hits.into_iter()
                        .map(|h| (h.item.id.clone(), h.score))
                        .collect(),
                );
            }
        }
        out
    }

    /// Every answer agrees with `data`: only items with a vector, scored by their current
    /// vector, within the filter, and near-exact (recall@10 >= 0.9 against a brute force).
    async fn assert_right(s: &EmbeddedStore, data: &Data) {
        let mut found = 0;
        let mut wanted = 0;
        for q in 0..25 {
            let q = vector(555_000 + q);
            for cat in [None, Some("a")] {
                let f = cat.map_or_else(Filter::all, by_category);
                let hits = s.knn(&q, 10, &f).await.expect("knn");
                for h in &hits {
                    let (v, c) = &data[&h.item.id];
                    let v = v.as_ref().expect("only items with a vector are found");
                    assert!(
                        (h.score - cos(&q, v)).abs() < 1e-4,
                        "{}: stale score",
                        h.item.id
                    );
                    assert!(cat.is_none_or(|cat| cat == *c), "outside the filter");
                }
                let candidates = data
                    .iter()
                    .filter(|(_, (_, c))| cat.is_none_or(|cat| cat == *c))
                    .filter_map(|(id, (v, _))| Some((id, v.as_deref()?)));
                let (f, w) = found_of_top10(&q, candidates, &hits);
                found += f;
                wanted += w;
            }
        }
        assert!(found * 10 >= wanted * 9, "recall {found}/{wanted}");
        // Every stored vector is findable as itself (new and updated ones included).
        for (id, (v, _)) in data.iter().step_by(7) {
            if let Some(v) = v {
                let top = s.knn(v, 1, &Filter::all()).await.expect("knn");
                assert_eq!(&top[0].item.id, id);
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_restart_loads_the_index_and_answers_the_same() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut data = Data::new();
        let before = {
            let s = open(dir.path(), options());
            assert_eq!(s.index_start(), IndexStart::Rebuilt { vectors: 0 });
            put(&s, &mut data, 0..2_000, 1).await;
            for i in (0..2_000).step_by(10) {
                s.delete_item(&format!("i{i}")).await.expect("delete");
                data.remove(&format!("i{i}"));
            }
            answers(&s).await
        };
        assert!(super::path(dir.path()).exists(), "saved at shutdown");
        let s = open(dir.path(), options());
        assert_eq!(
            s.index_start(),
            IndexStart::Loaded {
                vectors: 1_800,
                reinserted: 0,
                removed: 0
            }
        );
        assert_eq!(answers(&s).await, before);
        assert_right(&s, &data).await;
        // Nothing changed: the file is current, no snapshot is written.
        assert_eq!(s.snapshot_index().expect("snapshot"), None);
        // The loaded index takes writes as usual.
        put(&s, &mut data, 5_000..5_100, 2).await;
        assert_right(&s, &data).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_training_write_back_is_put_back_in_graph_order_by_the_background_snapshot() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut data = Data::new();
        let s = open(dir.path(), options());
        put(&s, &mut data, 0..2_000, 1).await;
        let Sink::Log(logged) = &s.inner.sink else {
            panic!("a durable store logs");
        };
        let (snapshots, index) = (&logged.snapshots, &s.inner.index);
        // The first background step renumbers the 2,000 new items and saves: nothing is
        // left to renumber.
        assert!(snapshots.background_save().expect("save").is_some());
        assert!(!index.reorder_if_stale().expect("in order"));
        // A write-back re-links every node where it sits: out of graph order.
        let mut back = Vec::new();
        for i in 0..2_000u64 {
            let v = vector(i * 1_000 + 9);
            data.entry(format!("i{i}"))
                .and_modify(|e| e.0 = Some(v.clone()));
            back.push((format!("i{i}"), v));
        }
        assert_eq!(s.set_item_vectors(back).await.expect("write-back"), 2_000);
        // The background step renumbers the running index before it saves, so the
        // index is in graph order again (nothing left for a renumbering to do) and every
        // answer is still right.
        let info = snapshots.background_save().expect("save").expect("written");
        assert_eq!(info.live, 2_000);
        assert!(!index.reorder_if_stale().expect("in order"));
        assert_right(&s, &data).await;
        let before = answers(&s).await;
        drop(s);
        let s = open(dir.path(), options());
        assert!(matches!(
            s.index_start(),
            IndexStart::Loaded { reinserted: 0, .. }
        ));
        assert_eq!(answers(&s).await, before);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_snapshot_older_than_the_data_is_brought_up_to_date() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut data = Data::new();
        {
            let s = open(dir.path(), options());
            put(&s, &mut data, 0..2_000, 1).await;
            let info = s.snapshot_index().expect("snapshot").expect("written");
            assert_eq!(info.live, 2_000);
            // After the snapshot: 50 new items, 30 new vectors, 40 deletes, 10 vectors
            // dropped, and one id deleted then created again.
            put(&s, &mut data, 2_000..2_050, 1).await;
            put(&s, &mut data, 100..130, 2).await;
            for i in 200..240 {
                s.delete_item(&format!("i{i}")).await.expect("delete");
                data.remove(&format!("i{i}"));
            }
            let mut none = Vec::new();
            for i in 300..310 {
                let j = json!({"id": format!("i{i}"), "vector": null, "category": category(i)});
                none.push(ItemUpsert::from_json(&j, &schema()).expect("item"));
                data.insert(format!("i{i}"), (None, category(i)));
            }
            s.upsert_items(none).await.expect("upsert");
            s.delete_item("i400").await.expect("delete");
            put(&s, &mut data, 400..401, 3).await;
            // A crash: no final snapshot, nothing absorbed; the log has the writes.
            s.crash();
        }
        let s = open(dir.path(), options());
        assert_eq!(
            s.index_start(),
            IndexStart::Loaded {
                vectors: 2_000 + 50 - 40 - 10,
                reinserted: 50 + 30 + 1,
                removed: 40 + 10,
            }
        );
        assert_right(&s, &data).await;
        // Brought up to date, it is saved again at shutdown, and the next start is clean.
        drop(s);
        let s = open(dir.path(), options());
        assert!(matches!(
            s.index_start(),
            IndexStart::Loaded {
                reinserted: 0,
                removed: 0,
                ..
            }
        ));
        assert_right(&s, &data).await;
    }

    /// What a damage is called, and what it does to the file's bytes.
    type Damage = (&'static str, fn(&mut Vec<u8>));

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_damaged_snapshot_is_rebuilt_with_right_answers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut data = Data::new();
        let before = {
            let s = open(dir.path(), options());
            put(&s, &mut data, 0..1_500, 1).await;
            answers(&s).await
        };
        let file = super::path(dir.path());
        let damages: [Damage; 4] = [
            ("truncated", |b| b.truncate(b.len() / 2)),
            ("a flipped byte", |b| {
                let mid = b.len() / 2;
                b[mid] ^= 1;
            }),
            ("empty", Vec::clear),
            ("another file", |b| {
                *b = b"{\"not\": \"a snapshot\"}".repeat(10)
            }),
        ];
        for (what, damage) in damages {
            let mut bytes = std::fs::read(&file).expect("a snapshot was saved");
            damage(&mut bytes);
            std::fs::write(&file, &bytes).expect("write");
            let s = open(dir.path(), options());
            assert_eq!(
                s.index_start(),
                IndexStart::Rebuilt { vectors: 1_500 },
                "{what}"
            );
            assert_right(&s, &data).await;
            assert_eq!(answers(&s).await.len(), before.len());
            // Dropping the rebuilt store saves a good snapshot for the next damage.
        }
        let s = open(dir.path(), options());
        assert!(matches!(s.index_start(), IndexStart::Loaded { .. }));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_crash_during_a_snapshot_leaves_the_previous_one_or_a_rebuild() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut data = Data::new();
        // A crash during the very first snapshot: only a partial temp file.
        {
            let s = open(dir.path(), options());
            put(&s, &mut data, 0..1_000, 1).await;
            let mut bytes = Vec::new();
            s.inner
                .index
                .write_snapshot(&mut bytes, &[])
                .expect("to a Vec");
            std::fs::create_dir_all(super::dir_of(dir.path())).expect("mkdir");
            std::fs::write(super::temp_path(dir.path()), &bytes[..bytes.len() / 3])
                .expect("partial temp file");
            s.crash();
        }
        let s = open(dir.path(), options());
        assert_eq!(s.index_start(), IndexStart::Rebuilt { vectors: 1_000 });
        assert!(
            !super::temp_path(dir.path()).exists(),
            "the temp file is deleted"
        );
        assert_right(&s, &data).await;
        s.snapshot_index().expect("snapshot").expect("written");
        // A crash during a later one: the complete previous snapshot is loaded, with the
        // writes made since re-inserted.
        put(&s, &mut data, 1_000..1_100, 1).await;
        let mut bytes = Vec::new();
        s.inner
            .index
            .write_snapshot(&mut bytes, &[])
            .expect("to a Vec");
        std::fs::write(super::temp_path(dir.path()), &bytes[..bytes.len() - 5])
            .expect("partial temp file");
        s.crash();
        let s = open(dir.path(), options());
        assert!(matches!(
            s.index_start(),
            IndexStart::Loaded {
                reinserted: 100,
                removed: 0,
                ..
            }
        ));
        assert!(!super::temp_path(dir.path()).exists());
        assert_right(&s, &data).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_snapshot_of_mostly_removed_items_is_compacted_by_a_rebuild() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut data = Data::new();
        {
            let s = open(dir.path(), options());
            put(&s, &mut data, 0..1_000, 1).await;
            for i in 0..600 {
                s.delete_item(&format!("i{i}")).await.expect("delete");
                data.remove(&format!("i{i}"));
            }
        }
        let s = open(dir.path(), options());
        assert_eq!(s.index_start(), IndexStart::Rebuilt { vectors: 400 });
        assert_right(&s, &data).await;
        let info = s.snapshot_index().expect("snapshot").expect("written");
        assert_eq!(
            (info.nodes, info.live),
            (400, 400),
            "the new snapshot is compact"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_inserts_at_open_are_told_to_the_progress_observer() {
        #[derive(Debug, Default)]
        struct Seen {
            begun: std::sync::Mutex<Vec<usize>>,
            written: std::sync::atomic::AtomicUsize,
            ended: std::sync::atomic::AtomicUsize,
        }
        impl crate::bulk::Observer for Seen {
            fn written(&self, rows: usize) {
                self.written
                    .fetch_add(rows, std::sync::atomic::Ordering::Relaxed);
            }
            fn begin(&self, total: usize) {
                self.begun.lock().expect("lock").push(total);
            }
            fn end(&self) {
                self.ended
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let off = snapshots_off();
        let mut data = Data::new();
        {
            let s = open(dir.path(), off.clone());
            put(&s, &mut data, 0..250, 1).await;
        }
        let seen = std::sync::Arc::new(Seen::default());
        let observed = EmbeddedOptions {
            open_progress: super::super::OpenProgress(Some(seen.clone())),
            ..off
        };
        let s = open(dir.path(), observed);
        assert_eq!(s.index_start(), IndexStart::Rebuilt { vectors: 250 });
        assert_eq!(*seen.begun.lock().expect("lock"), vec![250]);
        assert_eq!(seen.written.load(std::sync::atomic::Ordering::Relaxed), 250);
        assert_eq!(seen.ended.load(std::sync::atomic::Ordering::Relaxed), 1);
        assert_right(&s, &data).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn snapshots_off_always_rebuild_and_write_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let off = snapshots_off();
        let mut data = Data::new();
        {
            let s = open(dir.path(), off.clone());
            put(&s, &mut data, 0..300, 1).await;
            assert_eq!(s.snapshot_index().expect("snapshot"), None);
        }
        assert!(!super::dir_of(dir.path()).exists());
        let s = open(dir.path(), off);
        assert_eq!(s.index_start(), IndexStart::Rebuilt { vectors: 300 });
        assert_right(&s, &data).await;
    }
}
