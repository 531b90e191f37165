//! Deterministic test data for the unit tests of this crate (no RNG dependency).

/// `n` vectors of `dim` values in [-1, 1) from a xorshift stream seeded by `seed`; the
/// i-th has id `i * stride + offset` (sparse ids, so tests do not lean on ids being slots).
pub(crate) fn vectors(
    n: usize,
    dim: usize,
    seed: u64,
    stride: u32,
    offset: u32,
) -> Vec<(u32, Vec<f32>)> {
    let mut s = seed | 1;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        ((s >> 40) as f32 / (1u64 << 23) as f32) - 1.0
    };
    (0..n)
        .map(|i| {
            (
                i as u32 * stride + offset,
                (0..dim).map(|_| next()).collect(),
            )
        })
        .collect()
}
