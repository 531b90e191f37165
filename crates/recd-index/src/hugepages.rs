//! Transparent huge pages for the arrays a walk reads at random: the crate's second (and
//! last) `unsafe`, one `madvise` call.
//!
//! Why: a walk touches a few thousand nodes at random addresses of the vector, code and
//! neighbour-list arrays (25 + 6 + 13 MB at 100k × 64); with 4 KiB pages nearly every
//! touch also misses the TLB, and the page walk stalls the prefetches meant to hide the
//! memory latency (`perf`: the prefetch instructions held 75 % of a quantized walk's
//! cycles). Measured on 100k × 64 (same-run A/B, all allocations on huge pages through
//! glibc's `glibc.malloc.hugetlb=1` tunable vs none, load 5.5-6): f32 walk p50 53 -> 38-43
//! µs, int8 walk 38 -> 32-33 µs, f32 10 % filter scan 415-441 -> 280 µs; see BENCHMARKS.md.
//! Kernels with THP set to `madvise` (the usual default) give huge pages only to ranges
//! that ask, hence this call; with `always` it is redundant, with `never` a no-op.

/// The page-aligned part of `[addr, addr + len)`, as `(start, len)`, if it holds at least
/// one whole huge page (smaller ranges gain nothing).
fn aligned_range(addr: usize, len: usize) -> Option<(usize, usize)> {
    const PAGE: usize = 4096;
    const HUGE: usize = 2 << 20;
    let start = addr.checked_add(PAGE - 1)? & !(PAGE - 1);
    let end = addr.checked_add(len)? & !(PAGE - 1);
    (end > start && end - start >= HUGE).then(|| (start, end - start))
}

/// Asks the kernel to back the whole buffer of `v` (its capacity, so that the elements
/// still to come fault in huge pages too) with transparent huge pages. A hint: failures
/// are ignored, and nothing observable changes but speed.
pub(crate) fn advise<T>(v: &Vec<T>) {
    let bytes = v.capacity().saturating_mul(std::mem::size_of::<T>());
    if let Some((start, len)) = aligned_range(v.as_ptr() as usize, bytes) {
        madvise_hugepage(start, len);
    }
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn madvise_hugepage(start: usize, len: usize) {
    // SAFETY: `[start, start + len)` lies inside one live allocation (a Vec's buffer, page
    // aligned inward by `aligned_range`), so it is mapped memory of this process.
    // MADV_HUGEPAGE only changes how the kernel backs those pages (it may later move their
    // contents into a huge page, preserving them); it never changes their contents or
    // permissions, so no Rust reference to the buffer can observe it.
    let _ = unsafe { libc::madvise(start as *mut libc::c_void, len, libc::MADV_HUGEPAGE) };
}

#[cfg(not(target_os = "linux"))]
fn madvise_hugepage(_start: usize, _len: usize) {}

/// Remembers which buffers were advised, so a grown (moved) buffer is advised again and
/// an unchanged one is not (one comparison per array on every append).
#[derive(Debug, Default)]
pub(crate) struct Advised {
    seen: [(usize, usize); 4],
}

impl Advised {
    /// Advises `v` (the array numbered `which`) if its buffer moved or grew since last time.
    pub(crate) fn refresh<T>(&mut self, which: usize, v: &Vec<T>) {
        let now = (v.as_ptr() as usize, v.capacity());
        if self.seen[which] != now {
            self.seen[which] = now;
            advise(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_whole_pages_of_big_ranges_are_advised() {
        let mb = 1 << 20;
        assert_eq!(aligned_range(4096, 4 * mb), Some((4096, 4 * mb)));
        // Rounded inward to page boundaries.
        assert_eq!(aligned_range(4097, 4 * mb), Some((8192, 4 * mb - 4096)));
        assert_eq!(aligned_range(0, mb), None, "under one huge page");
        assert_eq!(aligned_range(usize::MAX - 10, 4 * mb), None);
        // And the call itself is harmless on a real buffer.
        let v: Vec<u64> = Vec::with_capacity(mb);
        advise(&v);
        let mut a = Advised::default();
        a.refresh(0, &v);
        a.refresh(0, &v);
    }
}
