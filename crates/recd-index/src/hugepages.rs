//! Transparent huge pages for the arrays a walk reads at random, in mappings of their own.
//!
//! # Why huge pages
//! A walk touches a few thousand nodes at random addresses of the vector, code, sketch and
//! neighbour-list arrays (25 + 6 + 13 MB at 100k × 64); with 4 KiB pages nearly every
//! touch also misses the TLB, and the page walk stalls the prefetches meant to hide the
//! memory latency (`perf`: the prefetch instructions held 75 % of a quantized walk's
//! cycles). Measured on 100k × 64 (same-run A/B, all allocations on huge pages through
//! glibc's `glibc.malloc.hugetlb=1` tunable vs none, load 5.5-6): f32 walk p50 53 -> 38-43
//! µs, int8 walk 38 -> 32-33 µs, f32 10 % filter scan 415-441 -> 280 µs; see BENCHMARKS.md.
//! Kernels with THP set to `madvise` (the usual default) give huge pages only to ranges
//! that ask (`MADV_HUGEPAGE`); with `always` the advice is redundant, with `never` a no-op.
//!
//! # Why mappings of their own
//! The arrays used to be `Vec`s of the global allocator, advised in place. In mappings of
//! their own ([`HugePages`]: 2 MiB-aligned anonymous mappings, advised before their first
//! touch, unmapped when freed) the index's huge pages no longer depend on what the global
//! allocator does (with mimalloc built without THP the index kept its 40–42 MB of huge
//! pages), every whole 2 MiB of an array gets a huge page at its first fault (when the
//! kernel has one free), and a buffer the index outgrew goes back to the kernel instead of
//! leaving an advised range inside the allocator. Walk times did not change (criterion,
//! 0.93–1.08×; BENCHMARKS.md, session 35).
//! Session 34 blamed those advised leftovers for khugepaged's collapses under an event
//! load; session 35 found the collapses were in mimalloc's own arena (see recd's
//! `allocator.rs`). Small arrays, and everything on other systems, use the global
//! allocator as before.
//!
//! # Safety
//! The crate's second `unsafe`: the [`Allocator`] implementation (`mmap`, `munmap`,
//! `madvise` on the mapping it owns). The invariants are stated at each block.

use std::alloc::Layout;
use std::ptr::NonNull;

use allocator_api2::alloc::{AllocError, Allocator, Global};

/// A `Vec` whose buffer, once it reaches [`HUGE`] bytes, lives in a huge-page mapping of
/// its own (see the module docs). Same API as `std::vec::Vec`, built with `new_in`.
pub(crate) type HugeVec<T> = allocator_api2::vec::Vec<T, HugePages>;

/// An empty [`HugeVec`].
pub(crate) fn huge_vec<T>() -> HugeVec<T> {
    HugeVec::new_in(HugePages)
}

/// An empty [`HugeVec`] with room for `capacity` elements.
pub(crate) fn huge_vec_with_capacity<T>(capacity: usize) -> HugeVec<T> {
    HugeVec::with_capacity_in(capacity, HugePages)
}

/// Size of a huge page on x86-64 and of the common arm64 configuration; a buffer smaller
/// than this gains nothing from one and stays with the global allocator.
const HUGE: usize = 2 << 20;
/// Alignment an anonymous mapping has at least (a base page).
const PAGE: usize = 4096;

/// The allocator behind [`HugeVec`]: buffers of at least [`HUGE`] bytes (with an alignment
/// a page satisfies) get a mapping of their own, the rest go to the global allocator. The
/// choice is a function of the layout alone, so `deallocate` makes the same one.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct HugePages;

/// Whether a buffer of `layout` gets a mapping of its own.
fn mapped(layout: Layout) -> bool {
    cfg!(target_os = "linux") && layout.size() >= HUGE && layout.align() <= PAGE
}

/// The length of the mapping that holds `size` bytes: whole huge pages, so that the last
/// one is not shared with (nor split by) anything else.
fn mapping_len(size: usize) -> Option<usize> {
    size.checked_next_multiple_of(HUGE)
}

/// Where an aligned buffer goes inside a fresh mapping one huge page longer than it, at
/// `base`: `(start, head, tail)`, the first `HUGE` boundary at or after `base` and the
/// lengths of the unaligned head and of the tail left over, to be unmapped. (Kernels since
/// 6.7 place such mappings on a boundary themselves, so there `head` is 0; older ones do
/// not.)
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn aligned_within(base: usize) -> (usize, usize, usize) {
    let start = base.next_multiple_of(HUGE);
    let head = start - base;
    (start, head, HUGE - head)
}

// SAFETY: `allocate` returns either the global allocator's block or a fresh mapping of
// `mapping_len(size)` bytes, readable and writable, aligned to `HUGE` (so to any alignment
// `mapped` accepts), valid until `deallocate`; `deallocate` routes a block back by the same
// rule (`mapped(layout)`: a `Layout` that fits a block has the size it was allocated or
// grown with, and a size at or above `HUGE` maps to the same `mapping_len` either way).
// The allocator is a unit struct, so every copy frees what any other allocated.
#[allow(unsafe_code)]
unsafe impl Allocator for HugePages {
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if !mapped(layout) {
            return Global.allocate(layout);
        }
        let len = mapping_len(layout.size()).ok_or(AllocError)?;
        let ptr = sys::map_aligned(len).ok_or(AllocError)?;
        Ok(NonNull::slice_from_raw_parts(ptr, len))
    }

    fn allocate_zeroed(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if !mapped(layout) {
            return Global.allocate_zeroed(layout);
        }
        // A fresh anonymous mapping reads as zeros; writing them would fault in the whole
        // capacity at once.
        self.allocate(layout)
    }

    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        if !mapped(layout) {
            // SAFETY: by the routing rule this block came from `Global` with this layout.
            unsafe { Global.deallocate(ptr, layout) };
            return;
        }
        if let Some(len) = mapping_len(layout.size()) {
            // SAFETY: by the routing rule this block is a mapping made by `allocate` of
            // exactly `len` bytes, and the caller no longer uses it.
            unsafe { sys::unmap(ptr, len) };
        }
    }
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
mod sys {
    use std::ptr::NonNull;

    use super::{HUGE, aligned_within};

    /// A fresh private anonymous mapping of `len` bytes (a multiple of `HUGE`) that starts
    /// on a `HUGE` boundary, given `MADV_HUGEPAGE` before anything touches it.
    pub(super) fn map_aligned(len: usize) -> Option<NonNull<u8>> {
        // Over-map by one huge page, then give back the unaligned head and the tail.
        let padded = len.checked_add(HUGE)?;
        // SAFETY: a new anonymous mapping at an address of the kernel's choosing; it
        // overlaps nothing that exists.
        let raw = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                padded,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if raw == libc::MAP_FAILED {
            return None;
        }
        let (start, head, tail) = aligned_within(raw as usize);
        // SAFETY: `[raw, raw + head)` and `[start + len, raw + padded)` are the parts of
        // the mapping just made that lie outside `[start, start + len)`; nothing refers to
        // them. A failure leaves a few unused pages mapped, nothing worse.
        unsafe {
            if head > 0 {
                libc::munmap(raw, head);
            }
            if tail > 0 {
                libc::munmap((start + len) as *mut libc::c_void, tail);
            }
        }
        // SAFETY: `[start, start + len)` is mapped and ours. MADV_HUGEPAGE only changes how
        // the kernel backs the pages; a failure (THP compiled out) is harmless.
        unsafe {
            libc::madvise(start as *mut libc::c_void, len, libc::MADV_HUGEPAGE);
        }
        NonNull::new(start as *mut u8)
    }

    /// Unmaps `[ptr, ptr + len)`.
    ///
    /// # Safety
    /// The range is a mapping made by [`map_aligned`] with this `len`, no longer used.
    pub(super) unsafe fn unmap(ptr: NonNull<u8>, len: usize) {
        // SAFETY: see the function's contract.
        unsafe {
            libc::munmap(ptr.as_ptr().cast(), len);
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod sys {
    use std::ptr::NonNull;

    // `mapped` is false off Linux, so these are never called.
    pub(super) fn map_aligned(_len: usize) -> Option<NonNull<u8>> {
        None
    }

    pub(super) unsafe fn unmap(_ptr: NonNull<u8>, _len: usize) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_large_page_aligned_buffers_get_a_mapping() {
        let mb = 1 << 20;
        assert!(!mapped(Layout::from_size_align(mb, 8).unwrap()));
        assert!(!mapped(Layout::from_size_align(2 * mb - 1, 8).unwrap()));
        assert!(!mapped(Layout::from_size_align(4 * mb, 2 * PAGE).unwrap()));
        assert_eq!(
            mapped(Layout::from_size_align(2 * mb, 8).unwrap()),
            cfg!(target_os = "linux")
        );
        assert_eq!(mapping_len(2 * mb), Some(2 * mb));
        assert_eq!(mapping_len(2 * mb + 1), Some(4 * mb));
        assert_eq!(mapping_len(usize::MAX), None);
    }

    #[test]
    fn the_aligned_part_of_an_over_sized_mapping_starts_on_a_huge_page() {
        let len = 4 * HUGE;
        for base in [HUGE, 3 * PAGE, HUGE + PAGE, 7 * HUGE - PAGE] {
            let (start, head, tail) = aligned_within(base);
            assert_eq!(start % HUGE, 0, "base {base}");
            assert_eq!(start, base + head, "base {base}");
            // The three parts tile the mapping of `len + HUGE` bytes exactly.
            assert_eq!(head + len + tail, len + HUGE, "base {base}");
        }
        assert_eq!(aligned_within(HUGE), (HUGE, 0, HUGE));
    }

    #[test]
    fn a_growing_vec_keeps_its_elements_across_the_switch_to_a_mapping() {
        // 1 MiB, then 2 MiB (the first mapped buffer), then 4 MiB: the contents must
        // survive each move, zeroed elements must read as zeros, and every buffer must be
        // freed through the path that made it (a mismatch aborts or faults).
        let n = (4 << 20) / size_of::<u64>();
        let mut v: HugeVec<u64> = huge_vec_with_capacity(n / 4);
        for i in 0..n as u64 {
            v.push(i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        }
        assert!(v.capacity() >= n);
        if cfg!(target_os = "linux") {
            assert_eq!(
                v.as_ptr() as usize % HUGE,
                0,
                "a mapped buffer starts on a huge page"
            );
        }
        assert!(
            v.iter()
                .enumerate()
                .all(|(i, &x)| x == (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
        );
        v.resize(n + HUGE / size_of::<u64>(), 0);
        assert!(v[n..].iter().all(|&x| x == 0));
        v.truncate(10);
        v.shrink_to_fit();
        assert_eq!(v.len(), 10);
        assert_eq!(v[9], 9u64.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let z: HugeVec<u8> = allocator_api2::vec![in HugePages; 0u8; 3 * HUGE];
        assert!(z.iter().all(|&b| b == 0));
    }
}
