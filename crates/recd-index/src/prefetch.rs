//! Software prefetch: the one place in the crate that uses `unsafe`.
//!
//! Why: an exact scan over a filter's ids, and a graph walk, read vectors at scattered
//! addresses; each 64-d vector is four cache lines that are usually not cached. The CPU's
//! out-of-order window overlaps only about two such misses, so the loop waits on memory.
//! Prefetching a few vectors ahead keeps many misses in flight. Measured on the 100k × 64
//! catalog (2-core EPYC VM, same-run A/B, see BENCHMARKS.md, "Vector index"): the filtered
//! exact scan went from ~150 to ~50 ns per allowed id (10 % filter, k = 50: p50 1.6 ms ->
//! 0.55 ms), and
//! the unfiltered walk (ef 64) from 164-309 µs to 132-179 µs p50. Stable Rust has
//! no safe prefetch (`core::intrinsics::prefetch_read_data` is unstable, and
//! `_mm_prefetch` is `#[target_feature(enable = "sse")]`, hence unsafe to call from a
//! function without that attribute even though SSE is part of the x86-64 baseline).

/// Hints the CPU to pull `data` (up to its first 512 bytes) into cache. A no-op on targets
/// other than x86-64. Never reads the data and cannot fault.
#[inline(always)]
#[allow(unsafe_code)]
pub(crate) fn prefetch<T>(data: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        use core::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let start = data.as_ptr().cast::<i8>();
        let (skew, lines) = lines_touched(start as usize, std::mem::size_of_val(data));
        // `wrapping_sub`/`wrapping_add` need no `unsafe`; the addresses are only hints.
        let first = start.wrapping_sub(skew);
        for line in (0..lines).map(|i| first.wrapping_add(i * 64)) {
            // SAFETY: `_mm_prefetch` only needs SSE, which every x86-64 CPU has (it is in
            // the target's baseline features). A prefetch is a hint: it does not read memory
            // architecturally, cannot fault even on an invalid address, and has no effect
            // Rust can observe; the lines here are those a live slice touches anyway.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(line) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = data;
}

/// The 64-byte lines that the first 512 bytes (at most) of `bytes` bytes at `addr` touch:
/// `(skew, count)`, the first line starting `skew` bytes before `addr`. Counted from the
/// line that holds the first byte, not from the first byte itself, because a slice need not
/// start on a line: a 64-d vector in a `Vec<f32>` from malloc starts 16 bytes into one and
/// spans five lines, and hints at offsets 0, 64, 128 and 192 from its start missed the
/// fifth, so every distance waited on it (`perf`, 1M build).
#[inline(always)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
fn lines_touched(addr: usize, bytes: usize) -> (usize, usize) {
    let bytes = bytes.min(512);
    if bytes == 0 {
        return (0, 0);
    }
    let skew = addr % 64;
    (skew, (skew + bytes).div_ceil(64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_line_a_slice_touches_is_counted() {
        // A 64-d f32 vector: 4 lines when aligned, 5 when it starts 16 bytes into a line.
        assert_eq!(lines_touched(4096, 256), (0, 4));
        assert_eq!(lines_touched(4096 + 16, 256), (16, 5));
        // Ends exactly on a line boundary, or one byte past it.
        assert_eq!(lines_touched(48, 16), (48, 1));
        assert_eq!(lines_touched(48, 17), (48, 2));
        // Nothing to load, and the 512-byte cap (plus the line the skew adds).
        assert_eq!(lines_touched(7, 0), (0, 0));
        assert_eq!(lines_touched(0, 4096), (0, 8));
        assert_eq!(lines_touched(1, 4096), (1, 9));
        // A code line (64-byte aligned) and a level-0 list of 1 + 32 u32 at any offset.
        assert_eq!(lines_touched(128, 64), (0, 1));
        assert_eq!(lines_touched(132 * 3, 132), (12, 3));
    }
}
