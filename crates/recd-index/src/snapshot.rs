//! The index's snapshot format: the whole graph (every node's id, level, tombstone, vector
//! and neighbour lists, plus the entry point) in one self-checking byte stream, so that a
//! restart loads the graph instead of re-linking every vector (linking is ~99 % of a
//! rebuild; reading the same bytes back is a memcpy-speed pass).
//!
//! # Format (version 2, little endian)
//! ```text
//! header   "RECDHNSW" | version u32 | dim u32 | metric u8 + 3 zero bytes | m u32
//!          | ef_construction u32 | 0 u32 | slots u64 | entry slot u32 (u32::MAX: none)
//!          | entry level u32
//! slots ×  id u32 | level u8 | deleted u8 | 0 u16 | vector (dim × f32, as stored: normalized
//!          under cosine; version 1 held it as given, see [`VERSION`])
//!          | for each level 0..=level: count u32, count × neighbour slot u32
//! extra    len u64 | len bytes (the caller's: the store keeps its slot table there)
//! trailer  CRC-32 u32 of everything before it | "HNSWEND\0"
//! ```
//! Quantized codes are not saved: they are a function of the saved vectors (the caller
//! switches a loaded index to int8 with `VectorIndex::set_quantization`, which trains on
//! every vector and encodes them, ~50 ms per 100k × 64), and the graph is built on the
//! `f32` vectors in either mode. So one format serves both modes, a snapshot written
//! before quantization existed loads into a quantized index without a rebuild (no version
//! bump was needed), and a schema may switch modes between restarts.
//!
//! The records are in a locality order of the graph (the upper levels first, then level 0
//! breadth-first; see `reorder`), not in the writer's slot order: the file's slot numbers (record
//! positions, neighbour entries, the entry point) are that order's, so a loaded index has
//! neighbours close together in memory. The format does not depend on it: any order loads.
//!
//! Per-slot records rather than columns, so that the writer can stream the graph in
//! chunks of [`CHUNK`] slots, each copied under one short read lock (see below); neighbour
//! lists are stored at their length (most are full), not padded to `2 * M`.
//!
//! # Writing while serving
//! The writer first fixes the [`Layout`] (slot count, entry point, record order: one pass over
//! the level-0 lists, part of what a renumbering costs) with writes held off and searches going
//! on; after that it never holds a lock for more than one chunk (~1,000 nodes, tens of
//! microseconds), so inserts and searches go on during a snapshot. The stream is therefore
//! *fuzzy*: a chunk is a consistent copy of its nodes, but chunks are taken at different
//! moments. It is still a valid graph: the slot count is fixed when the snapshot starts and
//! neighbours appended after it are dropped; every neighbour entry is always some valid slot
//! (see `store`); a node being linked at that moment may be saved with partial lists, which the
//! loader's caller heals with [`VectorIndex::repair`](crate::VectorIndex::repair). Whether the
//! *vectors* are current is not this format's business: the caller verifies every vector
//! against its own data after a load (`VectorIndex::holds`) and re-inserts or removes what
//! differs, so a fuzzy or old snapshot costs time, never a wrong answer.
//!
//! # Reading
//! [`decode`] takes the whole file as one byte slice (the caller reads it with one
//! sequential read), checks the trailer and checksum first, then every structural fact a
//! search relies on (neighbour slots in range and present on that level, list lengths,
//! unique ids, levels, valid vectors, the entry point), so that a damaged or foreign file
//! is an error — never a panic, never a graph that misroutes.

use std::borrow::Cow;
use std::io::{self, Write};

use parking_lot::RwLock;

use crate::distance::Metric;
use crate::error::SnapshotError;
use crate::hnsw::MAX_LEVEL;
use crate::store::Store;

const MAGIC: &[u8; 8] = b"RECDHNSW";
const END: &[u8; 8] = b"HNSWEND\0";
/// Bumped on any change of the layout or of a field's meaning; a newer or unknown file is
/// rebuilt, not guessed at. Version 1 (written until 2026-12-04) held cosine vectors as given;
/// version 2 holds them as the index stores them, normalized. A version 1 file still loads
/// (its vectors are normalized on the way in, as an insert does), so that an upgrade does
/// not cost a rebuild.
pub(crate) const VERSION: u32 = 2;
/// The oldest version [`decode`] reads.
const OLDEST_READABLE: u32 = 1;
const HEADER_BYTES: usize = 48;
const TRAILER_BYTES: usize = 12;
/// Slots copied per read-lock hold while writing.
const CHUNK: usize = 1024;

/// What a written snapshot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// Nodes saved (live and removed).
    pub nodes: usize,
    /// Live (not removed) nodes saved.
    pub live: usize,
    /// Bytes written.
    pub bytes: u64,
}

/// A decoded snapshot's contents, before they become a `VectorIndex`.
pub(crate) struct Decoded<'a> {
    pub(crate) store: Store,
    pub(crate) entry: Option<(u32, usize)>,
    pub(crate) extra: &'a [u8],
}

fn metric_code(metric: Metric) -> u8 {
    match metric {
        Metric::Cosine => 0,
        Metric::InnerProduct => 1,
        Metric::L2 => 2,
    }
}

/// Counts bytes and checksums them on their way to `inner`.
struct Checked<W> {
    inner: W,
    crc: crc32fast::Hasher,
    bytes: u64,
}

impl<W: Write> Checked<W> {
    fn put(&mut self, buf: &[u8]) -> io::Result<()> {
        self.crc.update(buf);
        self.bytes += buf.len() as u64;
        self.inner.write_all(buf)
    }
}

/// What a snapshot writes, fixed when it starts: the entry point, the slot count, and the
/// order the records go in.
pub(crate) struct Layout {
    entry: Option<(u32, usize)>,
    slots: usize,
    /// `order[record] = slot`: a locality order (see `reorder`), so that a loaded index has
    /// neighbours close together in memory, whatever order its nodes were inserted in.
    order: Vec<u32>,
}

impl Layout {
    /// The layout of `st` with its graph's `entry` point (one pass over the level-0
    /// lists). The caller keeps writers out meanwhile, so that the entry point is a slot
    /// of `st` and the order covers every slot.
    pub(crate) fn of(st: &Store, entry: Option<(u32, usize)>) -> Self {
        Layout {
            entry,
            slots: st.slots(),
            order: crate::reorder::locality_order(st, entry.map(|(slot, _)| slot)),
        }
    }
}

/// Streams the index to `out` in `layout`'s record order (see the module docs for the
/// locking). `dim`, `metric`, `m` and `ef_construction` describe the index; `extra` is
/// stored verbatim.
pub(crate) fn encode<W: Write>(
    store: &RwLock<Store>,
    layout: Layout,
    (dim, metric, m, ef_construction): (usize, Metric, usize, usize),
    out: W,
    extra: &[u8],
) -> io::Result<SnapshotInfo> {
    let Layout {
        entry,
        slots,
        order,
    } = layout;
    let new_of = crate::reorder::inverse(&order);
    let mut w = Checked {
        inner: out,
        crc: crc32fast::Hasher::new(),
        bytes: 0,
    };
    let mut head = Vec::with_capacity(HEADER_BYTES);
    head.extend_from_slice(MAGIC);
    head.extend_from_slice(&VERSION.to_le_bytes());
    head.extend_from_slice(&u32_of(dim)?.to_le_bytes());
    head.extend_from_slice(&[metric_code(metric), 0, 0, 0]);
    head.extend_from_slice(&u32_of(m)?.to_le_bytes());
    head.extend_from_slice(&u32_of(ef_construction)?.to_le_bytes());
    head.extend_from_slice(&0u32.to_le_bytes());
    head.extend_from_slice(&(slots as u64).to_le_bytes());
    let (es, el) = entry.map_or((u32::MAX, 0), |(s, l)| (new_of[s as usize], l as u32));
    head.extend_from_slice(&es.to_le_bytes());
    head.extend_from_slice(&el.to_le_bytes());
    debug_assert_eq!(head.len(), HEADER_BYTES);
    w.put(&head)?;

    let mut buf: Vec<u8> = Vec::new();
    let mut list = Vec::new();
    let mut live = 0usize;
    for chunk in order.chunks(CHUNK) {
        buf.clear();
        {
            let st = store.read();
            for &slot in chunk {
                let level = st.level(slot);
                let deleted = st.is_deleted(slot);
                live += usize::from(!deleted);
                buf.extend_from_slice(&st.id_of(slot).to_le_bytes());
                // Levels are at most MAX_LEVEL (15).
                buf.extend_from_slice(&[level as u8, u8::from(deleted), 0, 0]);
                for x in st.vector(slot) {
                    buf.extend_from_slice(&x.to_le_bytes());
                }
                for lc in 0..=level {
                    st.neighbours(slot, lc, &mut list);
                    // Nodes appended after the snapshot started are not in it.
                    list.retain(|&n| (n as usize) < slots);
                    buf.extend_from_slice(&(list.len() as u32).to_le_bytes());
                    for &n in &list {
                        buf.extend_from_slice(&new_of[n as usize].to_le_bytes());
                    }
                }
            }
        }
        w.put(&buf)?;
    }
    w.put(&(extra.len() as u64).to_le_bytes())?;
    w.put(extra)?;
    let crc = w.crc.clone().finalize();
    let mut tail = Vec::with_capacity(TRAILER_BYTES);
    tail.extend_from_slice(&crc.to_le_bytes());
    tail.extend_from_slice(END);
    w.inner.write_all(&tail)?;
    w.inner.flush()?;
    Ok(SnapshotInfo {
        nodes: slots,
        live,
        bytes: w.bytes + TRAILER_BYTES as u64,
    })
}

fn u32_of(n: usize) -> io::Result<u32> {
    u32::try_from(n).map_err(|_| io::Error::other("index parameter does not fit in 32 bits"))
}

/// A bounds-checked little-endian reader.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], SnapshotError> {
        let end = self.pos.checked_add(n).ok_or(SnapshotError::Truncated)?;
        let s = self
            .buf
            .get(self.pos..end)
            .ok_or(SnapshotError::Truncated)?;
        self.pos = end;
        Ok(s)
    }
    fn u32(&mut self) -> Result<u32, SnapshotError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, SnapshotError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
}

fn corrupt(what: impl Into<String>) -> SnapshotError {
    SnapshotError::Corrupt(what.into())
}

/// Checks and decodes a snapshot made for an index of `dim` / `metric` / `m`; `inv_norm`
/// validates a saved vector exactly as an insert would (and gives its `1 / |v|`, which
/// normalizes a version 1 file's cosine vectors).
pub(crate) fn decode<'a>(
    bytes: &'a [u8],
    dim: usize,
    metric: Metric,
    m: usize,
    inv_norm: impl Fn(&[f32]) -> Result<f32, crate::IndexError>,
) -> Result<Decoded<'a>, SnapshotError> {
    if bytes.len() < HEADER_BYTES + TRAILER_BYTES || &bytes[..8] != MAGIC {
        return Err(if bytes.starts_with(MAGIC) || MAGIC.starts_with(bytes) {
            SnapshotError::Truncated
        } else {
            SnapshotError::NotASnapshot
        });
    }
    let (body, trailer) = bytes.split_at(bytes.len() - TRAILER_BYTES);
    if &trailer[4..] != END {
        return Err(SnapshotError::Truncated);
    }
    let stored = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
    if crc32fast::hash(body) != stored {
        return Err(SnapshotError::Checksum);
    }
    let mut c = Cursor { buf: body, pos: 8 };
    let version = c.u32()?;
    if !(OLDEST_READABLE..=VERSION).contains(&version) {
        return Err(SnapshotError::Version(version));
    }
    // A vector is saved as stored since version 2; before, as given.
    let as_given = version < 2;
    let (f_dim, f_metric) = (c.u32()? as usize, c.take(4)?[0]);
    let (f_m, _ef_construction, _zero) = (c.u32()? as usize, c.u32()?, c.u32()?);
    if f_dim != dim || f_metric != metric_code(metric) || f_m != m {
        return Err(SnapshotError::Mismatch(format!(
            "saved for dim {f_dim}, metric code {f_metric}, m {f_m}; the index has dim {dim}, \
             metric code {}, m {m}",
            metric_code(metric)
        )));
    }
    let slots = usize::try_from(c.u64()?)
        .ok()
        .filter(|&s| s < u32::MAX as usize)
        .ok_or_else(|| corrupt("slot count out of range"))?;
    let (es, el) = (c.u32()?, c.u32()? as usize);
    // Each record is at least 8 + 4 * dim + 4 bytes: refuse a count the file cannot hold
    // before reserving memory for it.
    if slots.saturating_mul(12 + 4 * dim) > body.len() {
        return Err(SnapshotError::Truncated);
    }

    let mut store = Store::new(dim, metric, m);
    store.reserve(slots);
    let mut lists_at = Vec::with_capacity(slots);
    let mut removed = Vec::new();
    let mut vector = vec![0f32; dim];
    for slot in 0..slots as u32 {
        let id = c.u32()?;
        let head = c.take(4)?;
        let (level, deleted) = (head[0], head[1]);
        if u64::from(level) > MAX_LEVEL || deleted > 1 {
            return Err(corrupt(format!("slot {slot}: bad level or flag")));
        }
        for (x, b) in vector.iter_mut().zip(c.take(4 * dim)?.chunks_exact(4)) {
            *x = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        }
        let inv = inv_norm(&vector).map_err(|e| corrupt(format!("slot {slot}: {e}")))?;
        let stored = if as_given {
            metric.stored_form(&vector, inv)
        } else {
            Cow::Borrowed(&vector[..])
        };
        let got = store
            .upsert(id, &stored, |_| level)
            .map_err(|e| corrupt(e.to_string()))?
            .slot;
        if got != slot {
            return Err(corrupt(format!("id {id} saved twice")));
        }
        if deleted == 1 {
            removed.push(id);
        }
        lists_at.push(c.pos);
        for lc in 0..=usize::from(level) {
            let n = c.u32()? as usize;
            if n > store.max_links(lc) {
                return Err(corrupt(format!(
                    "slot {slot}: {n} neighbours on level {lc}"
                )));
            }
            c.take(4 * n)?;
        }
    }
    let extra_len = usize::try_from(c.u64()?).map_err(|_| SnapshotError::Truncated)?;
    let extra = c.take(extra_len)?;
    if c.pos != body.len() {
        return Err(corrupt("bytes after the extra section"));
    }

    // Every slot exists now, so neighbour lists can be checked against their targets.
    let mut list = Vec::with_capacity(store.max_links(0));
    for (slot, &at) in lists_at.iter().enumerate() {
        let slot = slot as u32;
        let mut lc_c = Cursor { buf: body, pos: at };
        for lc in 0..=store.level(slot) {
            let n = lc_c.u32()? as usize;
            list.clear();
            for _ in 0..n {
                let t = lc_c.u32()?;
                // A neighbour on level `lc` must have lists on `lc`, or a walk would index
                // past its levels.
                if t as usize >= slots || store.level(t) < lc {
                    return Err(corrupt(format!("slot {slot}: bad neighbour {t} on {lc}")));
                }
                list.push(t);
            }
            store.set_neighbours(slot, lc, &list);
        }
    }
    for id in removed {
        store.remove(id);
    }
    // The sketches (not saved, like the codes) are trained once on every loaded vector.
    store.maybe_retrain();
    let entry = match (es, slots) {
        (u32::MAX, 0) => None,
        (s, _) if (s as usize) < slots && store.level(s) == el => Some((s, el)),
        _ => return Err(corrupt("entry point")),
    };
    Ok(Decoded {
        store,
        entry,
        extra,
    })
}

#[cfg(test)]
mod tests {
    use roaring::RoaringBitmap;

    use crate::{Hit, VectorIndex};
    use crate::{HnswParams, Metric, Quantization, SearchOptions, SnapshotError, Strategy};

    fn vectors(n: usize, dim: usize, seed: u64) -> Vec<(u32, Vec<f32>)> {
        crate::testing::vectors(n, dim, seed, 2, 5)
    }

    fn save(idx: &VectorIndex, extra: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let info = idx.write_snapshot(&mut out, extra).expect("write to a Vec");
        assert_eq!(info.bytes, out.len() as u64);
        assert_eq!((info.nodes, info.live), (idx.nodes(), idx.len()));
        out
    }

    fn load(bytes: &[u8]) -> Result<VectorIndex, SnapshotError> {
        VectorIndex::read_snapshot(bytes, 16, Metric::Cosine, HnswParams::default()).map(|x| x.0)
    }

    /// Every answer the index can give, for comparing two indexes.
    fn answers(idx: &VectorIndex, queries: &[(u32, Vec<f32>)]) -> Vec<Vec<Hit>> {
        let broad: RoaringBitmap = (0..100_000).filter(|i| i % 3 != 0).collect();
        let narrow: RoaringBitmap = (0..100_000).filter(|i| i % 37 == 0).collect();
        let mut all = Vec::new();
        for (_, q) in queries {
            for strategy in [Strategy::Auto, Strategy::Graph, Strategy::Exact] {
                let opts = SearchOptions { ef: None, strategy };
                for filter in [None, Some(&broad), Some(&narrow)] {
                    all.push(idx.search_with(q, 10, filter, opts).expect("search"));
                }
            }
        }
        all
    }

    /// A 1,500-node cosine index with removed, revived and updated nodes.
    fn used_index() -> (VectorIndex, Vec<(u32, Vec<f32>)>) {
        let idx = VectorIndex::new(16, Metric::Cosine, HnswParams::default());
        let data = vectors(1_500, 16, 21);
        idx.insert_batch(&data).expect("batch");
        for (id, _) in data.iter().step_by(7) {
            idx.remove(*id);
        }
        idx.insert(data[14].0, &data[14].1).expect("revive");
        idx.insert(data[3].0, &data[900].1).expect("update");
        (idx, data)
    }

    #[test]
    fn a_loaded_index_answers_exactly_as_the_saved_one() {
        let (idx, data) = used_index();
        let bytes = save(&idx, b"caller bytes");
        let (back, extra) =
            VectorIndex::read_snapshot(&bytes, 16, Metric::Cosine, HnswParams::default())
                .expect("load");
        assert_eq!(extra, b"caller bytes");
        assert_eq!((back.len(), back.nodes()), (idx.len(), idx.nodes()));
        assert_eq!(back.ids(), idx.ids());
        let queries: Vec<_> = data.iter().step_by(50).cloned().collect();
        assert_eq!(answers(&back, &queries), answers(&idx, &queries));
        for (id, _) in &data {
            assert_eq!(back.vector(*id), idx.vector(*id), "{id}");
        }
        assert!(back.holds(data[3].0, &data[900].1), "the updated vector");
        assert!(!back.holds(data[3].0, &data[3].1));
        assert!(!back.holds(data[7].0, &data[7].1), "a removed id");
        // The loaded index keeps working: writes link into the loaded graph.
        let new = vec![0.5; 16];
        back.insert(1, &new).expect("insert");
        assert_eq!(back.search(&new, 1, None).expect("search")[0].id, 1);
        assert_eq!(back.orphans(), 0);
    }

    #[test]
    fn a_quantized_index_loads_quantized_with_the_same_answers() {
        let (idx, data) = used_index();
        // Retrained on all its nodes now, as a load trains: the codes then match exactly.
        idx.set_quantization(Quantization::Int8)
            .expect("vector file");
        let bytes = save(&idx, &[]);
        let back = load(&bytes).expect("load");
        assert_eq!(
            back.quantization(),
            Quantization::None,
            "no codes in the file"
        );
        back.set_quantization(Quantization::Int8)
            .expect("vector file");
        let queries: Vec<_> = data.iter().step_by(50).cloned().collect();
        assert_eq!(answers(&back, &queries), answers(&idx, &queries));
        // Writes after the load keep the codes current.
        let new = vec![0.5; 16];
        back.insert(1, &new).expect("insert");
        assert_eq!(back.search(&new, 1, None).expect("search")[0].id, 1);
    }

    #[test]
    fn an_empty_index_round_trips() {
        let idx = VectorIndex::new(16, Metric::Cosine, HnswParams::default());
        let back = load(&save(&idx, &[])).expect("load");
        assert!(back.is_empty());
        back.insert(1, &[1.0; 16]).expect("insert");
        assert_eq!(back.search(&[1.0; 16], 1, None).expect("search")[0].id, 1);
    }

    #[test]
    fn every_truncation_and_every_flipped_byte_is_refused() {
        let idx = VectorIndex::new(16, Metric::Cosine, HnswParams::default());
        idx.insert_batch(&vectors(40, 16, 3)).expect("batch");
        let bytes = save(&idx, b"x");
        for cut in 0..bytes.len() {
            let e = load(&bytes[..cut]).expect_err("a truncated snapshot");
            assert!(
                matches!(e, SnapshotError::Truncated | SnapshotError::Checksum),
                "cut at {cut}: {e}"
            );
        }
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            assert!(load(&bad).is_err(), "flipped byte {i}");
        }
        assert_eq!(
            load(b"something else entirely, long enough to hold a header and a trailer....")
                .map(|_| ()),
            Err(SnapshotError::NotASnapshot)
        );
    }

    #[test]
    fn another_dimension_metric_or_m_is_a_mismatch() {
        let idx = VectorIndex::new(16, Metric::Cosine, HnswParams::default());
        idx.insert_batch(&vectors(40, 16, 3)).expect("batch");
        let bytes = save(&idx, &[]);
        let p = HnswParams::default();
        let other_m = HnswParams { m: 8, ..p };
        for (dim, metric, params) in [
            (8, Metric::Cosine, p),
            (16, Metric::L2, p),
            (16, Metric::Cosine, other_m),
        ] {
            let e = VectorIndex::read_snapshot(&bytes, dim, metric, params).map(|_| ());
            assert!(matches!(e, Err(SnapshotError::Mismatch(_))), "{e:?}");
        }
        // ef_search and ef_construction are free to change.
        let tuned = HnswParams {
            ef_search: 200,
            ef_construction: 50,
            ..p
        };
        assert!(VectorIndex::read_snapshot(&bytes, 16, Metric::Cosine, tuned).is_ok());
    }

    /// Rewrites the checksum after an edit, as a bug (not a disk) would leave a file.
    fn reseal(bytes: &mut [u8]) {
        let body = bytes.len() - super::TRAILER_BYTES;
        let crc = crc32fast::hash(&bytes[..body]);
        bytes[body..body + 4].copy_from_slice(&crc.to_le_bytes());
    }

    /// `bytes` (a current file) rewritten as version 1 wrote it: each cosine vector as the
    /// caller gave it (`given`, by id), not normalized.
    fn as_version_1(bytes: &[u8], given: &std::collections::HashMap<u32, Vec<f32>>) -> Vec<u8> {
        let mut out = bytes.to_vec();
        out[8..12].copy_from_slice(&1u32.to_le_bytes());
        let slots = u64::from_le_bytes(out[32..40].try_into().expect("8 bytes")) as usize;
        let u32_at = |b: &[u8], at: usize| {
            u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes")) as usize
        };
        let mut at = super::HEADER_BYTES;
        for _ in 0..slots {
            let id = u32_at(&out, at) as u32;
            let level = usize::from(out[at + 4]);
            at += 8;
            for (i, x) in given[&id].iter().enumerate() {
                out[at + 4 * i..at + 4 * i + 4].copy_from_slice(&x.to_le_bytes());
            }
            at += 4 * 16; // `used_index`'s dimension
            for _ in 0..=level {
                at += 4 + 4 * u32_at(&out, at);
            }
        }
        reseal(&mut out);
        out
    }

    #[test]
    fn a_version_1_file_loads_with_its_vectors_normalized_and_a_newer_one_is_refused() {
        let (idx, data) = used_index();
        let mut given: std::collections::HashMap<u32, Vec<f32>> = data.iter().cloned().collect();
        given.insert(data[3].0, data[900].1.clone());
        let bytes = save(&idx, b"");
        assert_eq!(bytes[8..12], super::VERSION.to_le_bytes());
        let old = as_version_1(&bytes, &given);
        assert_ne!(old, bytes, "the vectors were rewritten as given");
        let back = load(&old).expect("a version 1 file loads");
        // Normalized on the way in exactly as an insert does: the caller's check of every
        // vector passes (no rebuild after an upgrade), and every answer is the same.
        for (id, v) in &given {
            assert_eq!(back.holds(*id, v), idx.contains(*id), "{id}");
            assert_eq!(back.vector(*id), idx.vector(*id), "{id}");
        }
        let queries: Vec<_> = data.iter().step_by(50).cloned().collect();
        assert_eq!(answers(&back, &queries), answers(&idx, &queries));
        // The same file marked as version 2 would be read as stored: not what was written.
        let mut misread = old.clone();
        misread[8..12].copy_from_slice(&2u32.to_le_bytes());
        reseal(&mut misread);
        let wrong = load(&misread).expect("loads");
        assert!(!wrong.holds(data[0].0, &data[0].1));
        // A version this build does not know is refused (the caller rebuilds).
        let mut newer = bytes.clone();
        newer[8..12].copy_from_slice(&(super::VERSION + 1).to_le_bytes());
        reseal(&mut newer);
        assert!(matches!(
            load(&newer).map(|_| ()),
            Err(SnapshotError::Version(v)) if v == super::VERSION + 1
        ));
    }

    #[test]
    fn an_intact_file_describing_an_impossible_graph_is_refused() {
        // Two 2-d L2 nodes on level 0: slot records start at byte 48 and are
        // id, level/flags, 2 floats, count, neighbours.
        let idx = VectorIndex::new(2, Metric::L2, HnswParams::default());
        idx.insert(10, &[0.0, 1.0]).expect("insert");
        idx.insert(20, &[1.0, 0.0]).expect("insert");
        let bytes = save(&idx, &[]);
        let read = |b: &[u8]| {
            VectorIndex::read_snapshot(b, 2, Metric::L2, HnswParams::default()).map(|_| ())
        };
        assert_eq!(read(&bytes), Ok(()));
        let first = 48;
        let neighbour = first + 4 + 4 + 8 + 4;
        let edits: [(usize, &[u8]); 5] = [
            (neighbour, &7u32.to_le_bytes()),      // a slot that does not exist
            (first, &20u32.to_le_bytes()),         // an id saved twice
            (first + 4, &[3, 0, 0, 0]),            // a level with no lists saved
            (first + 8, &f32::NAN.to_le_bytes()),  // a vector an insert refuses
            (first + 16, &1_000u32.to_le_bytes()), // more neighbours than 2 * M
        ];
        for (at, patch) in edits {
            let mut bad = bytes.clone();
            bad[at..at + patch.len()].copy_from_slice(patch);
            reseal(&mut bad);
            let e = read(&bad);
            assert!(
                matches!(e, Err(SnapshotError::Corrupt(_) | SnapshotError::Truncated)),
                "edit at {at}: {e:?}"
            );
        }
    }

    #[test]
    fn a_snapshot_taken_during_inserts_is_a_valid_graph() {
        let idx = VectorIndex::new(16, Metric::Cosine, HnswParams::default());
        let data = vectors(3_000, 16, 8);
        idx.insert_batch(&data[..1_000]).expect("batch");
        let bytes = std::thread::scope(|s| {
            let writer = s.spawn(|| {
                for (id, v) in &data[1_000..] {
                    idx.insert(*id, v).expect("insert");
                }
            });
            let mut snaps = Vec::new();
            while !writer.is_finished() {
                snaps.push(save_loosely(&idx));
            }
            snaps.push(save_loosely(&idx));
            snaps
        });
        // Every snapshot loads; a few of them (the last one included) are searched.
        for b in &bytes {
            assert!(load(b).expect("a snapshot taken under writes").len() >= 1_000);
        }
        let step = (bytes.len() / 4).max(1);
        for b in bytes.iter().rev().step_by(step) {
            let back = load(b).expect("load");
            back.repair();
            assert_eq!(back.orphans(), 0);
            for (id, v) in data.iter().step_by(7) {
                if back.contains(*id) {
                    assert!(back.holds(*id, v), "{id}'s vector");
                    let walk = SearchOptions {
                        ef: None,
                        strategy: Strategy::Graph,
                    };
                    let hits = back.search_with(v, 10, None, walk).expect("search");
                    assert!(hits.iter().any(|h| h.id == *id), "{id} unreachable");
                }
            }
        }
    }

    /// `save` without the count checks (the index changes while it is written).
    fn save_loosely(idx: &VectorIndex) -> Vec<u8> {
        let mut out = Vec::new();
        idx.write_snapshot(&mut out, &[]).expect("write to a Vec");
        out
    }
}
