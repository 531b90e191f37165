//! Where the `f32` vectors live: in a heap array (the plain mode), or — in the int8 mode —
//! in a file mapping, so that only the codes and the graph are resident.
//!
//! # Why a file mapping
//! An int8 search walks and scans the codes and reads the `f32` vectors of its short list
//! only (`4 k` per query), so holding every `f32` vector in anonymous memory made the
//! quantized mode *larger* than the plain one (497 vs 429 bytes per 64-d vector). Mapped
//! from a file, the vectors are page cache: the kernel writes them back and evicts them
//! under memory pressure and faults in just the pages a re-score touches, so what an int8
//! index needs resident is ~235 bytes per 64-d vector (codes + graph + ids), which puts
//! 10M × 64 at ~2.4 GB. Everything that reads vectors (re-scoring, linking, `vector`,
//! snapshots, retraining) reads them through [`Vectors::get`] in either mode, so nothing
//! else changes.
//!
//! # The file
//! An unnamed temporary file (`O_TMPFILE` where the filesystem supports it, else created
//! and unlinked at once) in a directory the caller chooses — the data directory, beside the
//! snapshot, in the server — so it is never visible, never outlives the process, and is
//! not a second durable copy: durability stays the job of the caller's log and of the
//! snapshot, which reads the vectors from here like from the heap. It grows in fixed
//! segments (~32 MiB each, sparse until written), each mapped once and never moved, so an
//! append never remaps what readers hold.
//!
//! # Safety
//! Mapping a file is the crate's third `unsafe` (one call, [`map_segment`]): a mapping's
//! contents can change under a Rust reference if anything else writes or truncates the
//! file. Nothing else can: the file has no name, and its only handle is owned here.

use std::fs::File;
use std::io;
use std::path::Path;

use memmap2::{MmapMut, MmapOptions};

/// Bytes a segment aims at (a power-of-two number of vectors close to it).
const SEGMENT_BYTES: usize = 32 << 20;
/// At least this many vectors per segment, so that a segment is whole pages whatever `dim`.
const MIN_SEGMENT_SLOTS: usize = 1024;

/// The `f32` vectors of every slot, `dim` values each, in slot order.
#[derive(Debug)]
pub(crate) enum Vectors {
    /// One contiguous heap array (scans stream it; the walk gets huge pages).
    Heap(crate::hugepages::HugeVec<f32>),
    /// Segments of an unnamed file mapping (the int8 mode).
    Mapped(MappedVectors),
}

impl Vectors {
    /// The vector of `slot`.
    #[inline(always)]
    pub(crate) fn get(&self, slot: u32, dim: usize) -> &[f32] {
        match self {
            Vectors::Heap(v) => {
                let s = slot as usize * dim;
                &v[s..s + dim]
            }
            Vectors::Mapped(m) => m.get(slot),
        }
    }

    /// Overwrites the vector of an existing `slot`.
    pub(crate) fn set(&mut self, slot: u32, vector: &[f32]) {
        match self {
            Vectors::Heap(v) => {
                let s = slot as usize * vector.len();
                v[s..s + vector.len()].copy_from_slice(vector);
            }
            Vectors::Mapped(m) => m.get_mut(slot).copy_from_slice(vector),
        }
    }

    /// Appends a vector for the next slot. Only the mapped form can fail (the file cannot
    /// grow: disk full), and then nothing was appended.
    pub(crate) fn push(&mut self, vector: &[f32]) -> io::Result<()> {
        match self {
            Vectors::Heap(v) => {
                v.extend_from_slice(vector);
                Ok(())
            }
            Vectors::Mapped(m) => m.push(vector),
        }
    }

    /// Room for `additional` more vectors (heap only: segments are added as they fill).
    pub(crate) fn reserve(&mut self, additional: usize, dim: usize) {
        if let Vectors::Heap(v) = self {
            v.reserve(additional.saturating_mul(dim));
        }
    }

    /// Bytes of vectors held on the heap.
    pub(crate) fn heap_bytes(&self) -> usize {
        match self {
            Vectors::Heap(v) => std::mem::size_of_val(v.as_slice()),
            Vectors::Mapped(_) => 0,
        }
    }

    /// Bytes of vectors held in the file mapping.
    pub(crate) fn mapped_bytes(&self) -> usize {
        match self {
            Vectors::Heap(_) => 0,
            Vectors::Mapped(m) => m.len * m.dim * std::mem::size_of::<f32>(),
        }
    }
}

/// Vectors in an unnamed, segment-mapped file; see the module docs.
#[derive(Debug)]
pub(crate) struct MappedVectors {
    file: File,
    dim: usize,
    /// `log2` of the vectors per segment.
    shift: u32,
    segments: Vec<MmapMut>,
    /// Vectors stored.
    len: usize,
}

impl MappedVectors {
    /// An empty store of `dim`-dimensional vectors in a new unnamed file under `dir`.
    pub(crate) fn create(dir: &Path, dim: usize) -> io::Result<Self> {
        Self::with_segments_of(dir, dim, SEGMENT_BYTES)
    }

    /// [`create`](Self::create) with segments of about `target` bytes (tests use small ones).
    fn with_segments_of(dir: &Path, dim: usize, target: usize) -> io::Result<Self> {
        let per = (target / (dim.max(1) * 4)).max(MIN_SEGMENT_SLOTS);
        // The largest power of two <= per: a slot's segment is a shift, its place a mask.
        let shift = usize::BITS - 1 - per.leading_zeros();
        Ok(MappedVectors {
            file: tempfile::tempfile_in(dir)?,
            dim,
            shift,
            segments: Vec::new(),
            len: 0,
        })
    }

    /// Bytes per segment: whole pages, since it holds a multiple of 1,024 `f32` vectors.
    fn segment_bytes(&self) -> usize {
        (1usize << self.shift) * self.dim * 4
    }

    #[inline(always)]
    fn place(&self, slot: u32) -> (usize, usize) {
        let s = slot as usize;
        let mask = (1usize << self.shift) - 1;
        (s >> self.shift, (s & mask) * self.dim * 4)
    }

    #[inline(always)]
    fn get(&self, slot: u32) -> &[f32] {
        let (seg, at) = self.place(slot);
        let bytes = &self.segments[seg][at..at + self.dim * 4];
        // Aligned: a segment starts on a page and every vector at a multiple of 4 bytes.
        bytemuck::cast_slice(bytes)
    }

    fn get_mut(&mut self, slot: u32) -> &mut [f32] {
        let (seg, at) = self.place(slot);
        let dim = self.dim;
        bytemuck::cast_slice_mut(&mut self.segments[seg][at..at + dim * 4])
    }

    fn push(&mut self, vector: &[f32]) -> io::Result<()> {
        if self.len >> self.shift == self.segments.len() {
            let bytes = self.segment_bytes();
            let start = self.segments.len() * bytes;
            let end = start + bytes;
            // Sparse: the new segment takes disk space only as vectors are written into it.
            self.file.set_len(end as u64)?;
            let seg = map_segment(&self.file, start as u64, bytes)?;
            // Re-scores read a few vectors at random: read-ahead would only evict others.
            let _ = seg.advise(memmap2::Advice::Random);
            self.segments.push(seg);
        }
        let slot = self.len as u32;
        self.len += 1;
        self.get_mut(slot).copy_from_slice(vector);
        Ok(())
    }
}

/// Maps `len` bytes of `file` from `offset`, shared (writes land in the page cache of the
/// file, so the kernel can write them back and evict them).
#[allow(unsafe_code)]
fn map_segment(file: &File, offset: u64, len: usize) -> io::Result<MmapMut> {
    // SAFETY: the mapping is undefined behaviour only if the file is changed other than
    // through this mapping, or truncated, while it is mapped. `file` is the unnamed
    // temporary file of a `MappedVectors`, which owns its only handle, never truncates it
    // (it only grows, past every mapped range), and writes its contents only through the
    // mappings; having no name, no other process can open it.
    unsafe { MmapOptions::new().offset(offset).len(len).map_mut(file) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_round_trip_across_segments() {
        // Tiny segments (the 1,024-vector minimum: 12 KiB at dim 3), so that 2,500 vectors
        // span three of them.
        let dim = 3;
        let dir = tempfile::tempdir().expect("temp dir");
        let mapped = MappedVectors::with_segments_of(dir.path(), dim, 0).expect("create");
        let mut m = Vectors::Mapped(mapped);
        let vec_of = |i: u32| -> Vec<f32> { (0..dim).map(|d| (i * 7 + d as u32) as f32).collect() };
        for i in 0..2_500 {
            m.push(&vec_of(i)).expect("push");
        }
        let Vectors::Mapped(inner) = &m else {
            unreachable!()
        };
        assert_eq!(inner.segments.len(), 3);
        for i in [0, 1, 1_023, 1_024, 2_047, 2_048, 2_499] {
            assert_eq!(m.get(i, dim), vec_of(i).as_slice(), "slot {i}");
        }
        m.set(1_024, &vec_of(9));
        assert_eq!(m.get(1_024, dim), vec_of(9).as_slice());
        assert_eq!(m.get(1_023, dim), vec_of(1_023).as_slice());
        assert_eq!((m.heap_bytes(), m.mapped_bytes()), (0, 2_500 * dim * 4));
        // The file is unnamed: nothing is left in the directory.
        assert_eq!(std::fs::read_dir(dir.path()).expect("read dir").count(), 0);
    }

    #[test]
    fn small_vectors_get_power_of_two_segments_of_whole_pages() {
        let dir = tempfile::tempdir().expect("temp dir");
        for dim in [1, 3, 64, 100, 1536, 4096] {
            let m = MappedVectors::create(dir.path(), dim).expect("create");
            assert!(m.segment_bytes().is_multiple_of(4096), "dim {dim}");
            assert!(m.segment_bytes() <= SEGMENT_BYTES.max(MIN_SEGMENT_SLOTS * dim * 4));
        }
    }
}
