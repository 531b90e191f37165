//! The per-value graphs' snapshot files (`DATA_DIR/index/partitions/`; the graphs are
//! `partitions`'): one file per value of `vector.partition_by`, the value in the file's
//! CRC-checked extra bytes, saved with the main index's snapshot under the same slot
//! numbers and, like it, never trusted unverified: the loader checks every graph against
//! the catalog (see `index_file`).
//!
//! # Only what changed is written
//! A save writes the graphs that changed since their file was written — by their change
//! count, and by identity, since a graph built afresh (grown, or rebuilt at open) counts
//! from zero — and deletes every other file (of values that no longer have a graph, or left
//! by a start that did not read them because the main snapshot was unusable). The graphs are
//! about as large as the main index (at 1M × 64 in fifty categories, 340 MB beside its
//! 354 MB; BENCHMARKS.md, session 24), and an item write touches the graphs of its one or
//! two values: rewriting all of them at every snapshot was most of its IO.
//!
//! Each file is written to `<name>.tmp`, fsynced and renamed over the old one (the
//! directory is fsynced after), so a crash leaves each value's file old or new, and a file
//! older than the others only costs its graph the re-inserts that bring it up to date at
//! the next start. Leftover temp files, and files that cannot be read, are deleted at load
//! (the graph of such a file is built afresh, then saved).

use std::collections::HashMap;
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use recd_index::{HnswParams, Metric, VectorIndex};

use super::index_file;

/// A file name's ending; temp files add `.tmp` to it.
const EXTENSION: &str = "snapshot";

/// The directory of the per-value graphs' files.
pub(super) fn dir(data_dir: &Path) -> PathBuf {
    index_file::dir_of(data_dir).join("partitions")
}

/// Where the previous format wrote a whole new set before swapping it in (deleted at load).
fn legacy_temp_dir(data_dir: &Path) -> PathBuf {
    index_file::dir_of(data_dir).join("partitions.tmp")
}

/// What [`load`] read: the graphs by value, and each value's file name.
#[derive(Default)]
pub(super) struct Loaded {
    pub(super) graphs: HashMap<String, VectorIndex>,
    pub(super) files: HashMap<String, String>,
}

/// Reads the per-value graphs' files of `data_dir`. A file that cannot be used is logged,
/// deleted and left out (its value's graph is then built afresh); so are temp files of a
/// save that never finished.
pub(super) fn load(data_dir: &Path, dim: usize, metric: Metric, params: HnswParams) -> Loaded {
    let legacy = legacy_temp_dir(data_dir);
    if legacy.exists() {
        tracing::warn!(dir = %legacy.display(), "deleting partition snapshots that were never finished");
        if let Err(e) = std::fs::remove_dir_all(&legacy) {
            tracing::warn!(cause = %e, "cannot delete the unfinished partition snapshots");
        }
    }
    let mut out = Loaded::default();
    let Ok(entries) = std::fs::read_dir(dir(data_dir)) else {
        return out;
    };
    for entry in entries.flatten() {
        let file = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.ends_with(EXTENSION) {
            tracing::warn!(file = %file.display(), "deleting a partition snapshot that was never finished");
            discard(&file);
            continue;
        }
        let read = std::fs::read(&file)
            .map_err(|e| e.to_string())
            .and_then(|bytes| {
                VectorIndex::read_snapshot(&bytes, dim, metric, params)
                    .map_err(|e| e.to_string())
                    .and_then(|(index, extra)| {
                        String::from_utf8(extra.to_vec())
                            .map(|value| (value, index))
                            .map_err(|_| "the value is not UTF-8".to_string())
                    })
            });
        match read {
            Ok((value, index)) => {
                out.graphs.insert(value.clone(), index);
                out.files.insert(value, name);
            }
            Err(cause) => {
                tracing::warn!(file = %file.display(), cause, "partition snapshot unusable; deleted, its graph is rebuilt");
                discard(&file);
            }
        }
    }
    out
}

fn discard(file: &Path) {
    if let Err(e) = std::fs::remove_file(file) {
        tracing::warn!(file = %file.display(), cause = %e, "cannot delete a partition snapshot");
    }
}

/// What a save wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Written {
    /// Graphs written (the others' files were current).
    pub(super) files: usize,
    /// Bytes written.
    pub(super) bytes: u64,
    /// Files deleted (of values without a graph now, or of no value known).
    pub(super) deleted: usize,
}

/// The file a value's graph was last written to, and which graph at what change count.
#[derive(Debug)]
struct Saved {
    file: String,
    graph: Weak<VectorIndex>,
    changes: u64,
}

impl Saved {
    fn holds(&self, graph: &Arc<VectorIndex>) -> bool {
        // The `Weak` keeps the allocation of a dropped graph, so a new graph cannot take
        // its address: equal pointers mean the same graph.
        std::ptr::eq(self.graph.as_ptr(), Arc::as_ptr(graph)) && self.changes == graph.changes()
    }
}

/// The per-value graphs' files of one data dir: which are current.
#[derive(Debug)]
pub(super) struct PartitionFiles {
    dir: PathBuf,
    saved: Mutex<HashMap<String, Saved>>,
}

impl PartitionFiles {
    /// `files`: each value's file as [`load`] found it; `graphs`: the graphs the store
    /// opened with. A graph loaded from its file and not changed since (no re-insert at
    /// open: its change count is 0) is current; any other value's file is rewritten at the
    /// next save (or deleted, for a value without a graph).
    pub(super) fn new(
        data_dir: &Path,
        files: HashMap<String, String>,
        graphs: &[(String, Arc<VectorIndex>)],
    ) -> Self {
        let saved = files
            .into_iter()
            .map(|(value, file)| {
                let graph = graphs.iter().find(|(v, _)| *v == value).map(|(_, g)| g);
                let saved = match graph {
                    Some(g) if g.changes() == 0 => Saved {
                        file,
                        graph: Arc::downgrade(g),
                        changes: 0,
                    },
                    _ => Saved {
                        file,
                        graph: Weak::new(),
                        changes: u64::MAX,
                    },
                };
                (value, saved)
            })
            .collect();
        Self {
            dir: dir(data_dir),
            saved: Mutex::new(saved),
        }
    }

    /// Whether a save would write anything, or delete a file it knows of.
    pub(super) fn stale(&self, graphs: &[(String, Arc<VectorIndex>)]) -> bool {
        let saved = self.saved.lock();
        saved.len() != graphs.len()
            || graphs
                .iter()
                .any(|(value, g)| saved.get(value).is_none_or(|s| !s.holds(g)))
    }

    /// Writes the graphs whose file is not current and deletes every other file of the
    /// directory (the whole directory when there is no graph).
    pub(super) fn save(&self, graphs: &[(String, Arc<VectorIndex>)]) -> std::io::Result<Written> {
        let mut saved = self.saved.lock();
        let mut written = Written::default();
        if graphs.is_empty() {
            if self.dir.exists() {
                std::fs::remove_dir_all(&self.dir)?;
                sync_parent(&self.dir)?;
                written.deleted = saved.len();
            }
            saved.clear();
            return Ok(written);
        }
        if !self.dir.exists() {
            std::fs::create_dir_all(&self.dir)?;
            sync_parent(&self.dir)?;
        }
        for (value, graph) in graphs {
            if saved.get(value).is_some_and(|s| s.holds(graph)) {
                continue;
            }
            // Read before writing: changes made during the write count for the next save.
            let changes = graph.changes();
            let file = match saved.get(value) {
                Some(s) => s.file.clone(),
                None => free_name(&saved),
            };
            let temp = self.dir.join(format!("{file}.tmp"));
            let mut w = BufWriter::with_capacity(1 << 20, File::create(&temp)?);
            written.bytes += graph.write_snapshot(&mut w, value.as_bytes())?.bytes;
            w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
            std::fs::rename(&temp, self.dir.join(&file))?;
            written.files += 1;
            let graph = Arc::downgrade(graph);
            saved.insert(
                value.clone(),
                Saved {
                    file,
                    graph,
                    changes,
                },
            );
        }
        saved.retain(|v, _| graphs.iter().any(|(g, _)| g == v));
        // Every file that is not a current graph's goes: those of values without a graph
        // now, and any the map never knew (the files of a start that did not read them
        // because the main snapshot was unusable; their names may be taken by new graphs,
        // and a second file for a value would be loaded in its place at the next start).
        for entry in std::fs::read_dir(&self.dir)?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if saved.values().all(|s| s.file != name) {
                match std::fs::remove_file(entry.path()) {
                    Ok(()) => written.deleted += 1,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
        }
        if written.files + written.deleted > 0 {
            File::open(&self.dir)?.sync_all()?;
        }
        Ok(written)
    }
}

/// A file name no value uses.
fn free_name(saved: &HashMap<String, Saved>) -> String {
    (0..)
        .map(|n| format!("p{n}.{EXTENSION}"))
        .find(|name| saved.values().all(|s| s.file != *name))
        .unwrap_or_default()
}

fn sync_parent(dir: &Path) -> std::io::Result<()> {
    match dir.parent() {
        Some(parent) => File::open(parent)?.sync_all(),
        None => Ok(()),
    }
}
