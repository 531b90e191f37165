//! 1-bit sketches of the vectors: the first pass of a broad filtered scan.
//!
//! A scan of a 10 % filter scores ~10,000 scattered vectors; on `f32` vectors that is four
//! cache lines each from DRAM (~54 ns per id on the 100k × 64 catalog). A sketch is one bit
//! per (padded) dimension plus one word of two factors: 16 bytes for a 64-d vector, so 100k
//! sketches take 1.6 MB and mostly stay in cache. The scan estimates every allowed
//! vector's distance from its sketch with a lower bound, scores the vectors with the
//! lowest bounds (`4 k`, at least 256) and then every other one whose bound is below the
//! `k`-th best distance found (`flat::scan_sketched`): results and scores stay exact up to
//! the bound's confidence (recall measured in `tests/recall.rs`).
//!
//! # The estimator (RaBitQ, Gao & Long, SIGMOD 2024)
//! Vectors in query form `x` (normalized under cosine) are centered on the mean `c` of the
//! trained data and rotated: `r = R (x - c)`, with `R = H D / sqrt(P)` — a random sign flip
//! `D` then the Walsh-Hadamard transform `H` on the dimensions zero-padded to `P`, a power
//! of two (an orthonormal map that spreads each dimension's variance over all of them, in
//! `O(P log P)`). The sketch keeps the signs `s_i` of `r` and `F = |r|² / Σ|r_i|`. For a
//! query `q` rotated the same way, `y = R q`:
//!
//! `x · q = c · q + r · y ≈ c · q + F · Σ s_i y_i`
//!
//! (`Σ s_i y_i / sqrt(P)` is the query's projection on the sketch's unit vector, divided by
//! the sketch's own projection on `r`, `Σ|r_i| / (sqrt(P) |r|)`: RaBitQ's unbiased form).
//! `c · q` is the same for every vector (with `|q|²`, under l2, it is the query's `shift`).
//!
//! The estimate's error is bounded, with high probability, by
//! `ε₀ · |q| · e` with `e = |r| · sqrt(1 - a²) / (a · sqrt(P - 1))`, where
//! `a = Σ|r_i| / (sqrt(P) |r|)` is how well the signs align with `r`; each sketch keeps
//! its `e`, and the scan's lower bound is the estimate minus that ([`CONFIDENCE`] = `ε₀`).
//!
//! `y` is quantized to 4 bits per dimension, `y_i ≈ lo + Δ u_i`, and kept as four bit
//! planes, so `Σ_{s_i = +1} u_i = Σ_j 2^j popcount(bits ∧ plane_j)`: five popcounts per 64
//! dimensions. The popcounts run under `pulp`'s runtime dispatch (`flat`), where the CPU's
//! `POPCNT` instruction is enabled.
//!
//! Training is the mean; like the int8 quantizer, the sketches are retrained (and every
//! vector re-sketched, `O(n · P log P)`) whenever the index has doubled since, and not
//! kept at all below [`MIN_SLOTS`] vectors, where no filter is broad enough to need them.

/// Fewer slots than this: no sketches (a filter then has at most a few thousand ids, which
/// the scan of codes reads fast enough).
pub(crate) const MIN_SLOTS: usize = 4_096;

/// How many error scales a sketch's estimate may be above the true distance before the
/// scan stops trusting it: RaBitQ's `ε₀` = 1.9, its bound holding with high probability.
/// Measured on a 64-d Gaussian mixture's correlated 20 % filter (numpy, 2026-12-04):
/// recall@10 0.930 / 0.978 / 0.993 at 1.0 / 1.5 / 1.9, re-scoring 530 / 890 / 1,290 of
/// 11,600 allowed vectors; 266 of 4,900 for a random 10 % filter at 1.9.
const CONFIDENCE: f32 = 1.9;

/// Bits of the query's quantized coordinates (RaBitQ's default: the error it adds is small
/// next to the sketch's own, measured on the benchmark catalog: recall@10 the same ±0.003).
const QUERY_BITS: usize = 4;
const _: () = assert!(QUERY_BITS == 4, "`SketchQuery::dist` sums four planes");

/// Seed of the sign flip (fixed: a sketch must mean the same across a retraining's reads).
const SIGN_SEED: u64 = 0x005e_ed0f_b175;

/// The trained centre and rotation.
#[derive(Debug, Clone)]
pub(crate) struct Sketcher {
    dim: usize,
    /// Dimensions after padding: a power of two, at least 64.
    padded: usize,
    center: Vec<f32>,
    /// ±1 per padded dimension.
    signs: Vec<f32>,
}

impl Sketcher {
    /// Trains on `vectors` (query form): their mean is the centre.
    pub(crate) fn train<V: AsRef<[f32]>>(dim: usize, vectors: impl Iterator<Item = V>) -> Self {
        let mut sum = vec![0f64; dim];
        let mut n = 0usize;
        for v in vectors {
            for (s, &x) in sum.iter_mut().zip(v.as_ref()) {
                *s += f64::from(x);
            }
            n += 1;
        }
        let center = sum
            .iter()
            .map(|s| if n == 0 { 0.0 } else { (s / n as f64) as f32 })
            .collect();
        let padded = dim.next_power_of_two().max(64);
        let mut state = SIGN_SEED;
        let signs = (0..padded)
            .map(|_| {
                if splitmix64(&mut state) & 1 == 1 {
                    1.0
                } else {
                    -1.0
                }
            })
            .collect();
        Sketcher {
            dim,
            padded,
            center,
            signs,
        }
    }

    /// 64-bit words of sign bits per sketch.
    pub(crate) fn words(&self) -> usize {
        self.padded / 64
    }

    /// `R v` for a vector of `dim` values (zero-padded), see the module docs.
    fn rotate(&self, v: impl Iterator<Item = f32>) -> Vec<f32> {
        let mut r = vec![0f32; self.padded];
        for ((slot, x), s) in r.iter_mut().zip(v).zip(&self.signs) {
            *slot = x * s;
        }
        walsh_hadamard(&mut r);
        let norm = 1.0 / (self.padded as f32).sqrt();
        for x in &mut r {
            *x *= norm;
        }
        r
    }

    /// Writes the sketch of `v` (query form): `words()` words of signs, then one word with
    /// `F` in its low half and the error scale `e` in its high half (see [`SketchQuery`]).
    /// Returns `|v|²` (the l2 metric keeps it beside the sketches).
    pub(crate) fn encode(&self, v: &[f32], out: &mut [u64]) -> f32 {
        debug_assert_eq!(v.len(), self.dim);
        debug_assert_eq!(out.len(), self.words() + 1);
        let r = self.rotate(v.iter().zip(&self.center).map(|(x, c)| x - c));
        let (mut norm2, mut l1) = (0f64, 0f64);
        for w in out.iter_mut() {
            *w = 0;
        }
        for (i, &x) in r.iter().enumerate() {
            if x > 0.0 {
                out[i / 64] |= 1 << (i % 64);
            }
            norm2 += f64::from(x) * f64::from(x);
            l1 += f64::from(x.abs());
        }
        let (factor, error) = if l1 > 0.0 {
            // a = <x̄, r̂>: how well the signs align with the residual (1 / sqrt(P) .. 1).
            let p = self.padded as f64;
            let norm = norm2.sqrt();
            let a = (l1 / (p.sqrt() * norm)).min(1.0);
            let error = norm * (1.0 - a * a).max(0.0).sqrt() / a / (p - 1.0).sqrt();
            ((norm2 / l1) as f32, error as f32)
        } else {
            (0.0, 0.0)
        };
        out[self.words()] = pack(factor, error);
        v.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>() as f32
    }

    /// A prepared query (normalized under cosine) in the form the sketch scan takes.
    pub(crate) fn query(&self, q: &[f32], l2: bool) -> SketchQuery {
        let y = self.rotate(q.iter().copied());
        let q2: f64 = q.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
        let cq: f64 = q
            .iter()
            .zip(&self.center)
            .map(|(&x, &c)| f64::from(x) * f64::from(c))
            .sum();
        // The part of every distance the sketch does not see (`c · q`, and `|q|²` under l2).
        let shift = if l2 { q2 - 2.0 * cq } else { -cq } as f32;
        let (lo, hi) = y
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &x| {
                (l.min(x), h.max(x))
            });
        let levels = ((1 << QUERY_BITS) - 1) as f32;
        let delta = if hi > lo { (hi - lo) / levels } else { 1.0 };
        let mut planes = vec![0u64; self.words() * QUERY_BITS];
        let mut sum_u = 0u64;
        for (i, &x) in y.iter().enumerate() {
            let u = ((x - lo) / delta).round().clamp(0.0, levels) as u64;
            sum_u += u;
            for (j, plane) in planes[(i / 64) * QUERY_BITS..][..QUERY_BITS]
                .iter_mut()
                .enumerate()
            {
                *plane |= ((u >> j) & 1) << (i % 64);
            }
        }
        SketchQuery {
            planes,
            two_lo: 2.0 * lo,
            two_delta: 2.0 * delta,
            sum_y: self.padded as f32 * lo + delta * sum_u as f32,
            l2,
            bound: CONFIDENCE * q2.sqrt() as f32 * if l2 { 2.0 } else { 1.0 },
            shift,
        }
    }
}

/// A query prepared for [`SketchQuery::dist`].
#[derive(Debug, Clone)]
pub(crate) struct SketchQuery {
    /// Per sign word, `QUERY_BITS` planes of the quantized coordinates.
    planes: Vec<u64>,
    /// `2 lo` and `2 Δ` of the quantized coordinates `y_i ≈ lo + Δ u_i`.
    two_lo: f32,
    two_delta: f32,
    /// `Σ y_i` of the quantized coordinates.
    sum_y: f32,
    l2: bool,
    /// `CONFIDENCE · |q|` (twice that under l2, whose distance counts the product twice):
    /// times a sketch's error scale, the most its estimate may be above the truth.
    bound: f32,
    /// Added to every estimate to put it on the scale of true distances.
    shift: f32,
}

impl SketchQuery {
    /// The estimated distance (on the scale of `Store::distance`) from this query to the
    /// vector `sketch` stands for, and the lowest its true distance may be:
    /// `(estimate, lower bound)`. `norm2` is the vector's `|x|²` under l2 (ignored
    /// otherwise).
    #[inline(always)]
    pub(crate) fn dist(&self, sketch: &[u64], norm2: f32) -> (f32, f32) {
        let (bits, tail) = sketch.split_at(sketch.len() - 1);
        // One accumulator per plane, combined once: written as one expression per plane,
        // LLVM vectorized the four popcounts with byte shuffles and horizontal sums, ~2x
        // the instructions of four `POPCNT`s (`perf annotate`).
        let (mut ones, mut w0, mut w1, mut w2, mut w3) = (0u32, 0u32, 0u32, 0u32, 0u32);
        for (&b, p) in bits.iter().zip(self.planes.chunks_exact(QUERY_BITS)) {
            ones += b.count_ones();
            w0 += (b & p[0]).count_ones();
            w1 += (b & p[1]).count_ones();
            w2 += (b & p[2]).count_ones();
            w3 += (b & p[3]).count_ones();
        }
        let weighted = w0 + 2 * w1 + 4 * w2 + 8 * w3;
        self.finish(ones, weighted, tail[0], norm2)
    }

    /// The estimate and its bound from the popcounts.
    #[inline(always)]
    fn finish(&self, ones: u32, weighted: u32, tail: u64, norm2: f32) -> (f32, f32) {
        // Σ s_i y_i = 2 Σ_{s_i = +1} y_i - Σ y_i, with Σ_{s_i = +1} y_i = lo · ones + Δ · weighted.
        let proj = self.two_lo * ones as f32 + self.two_delta * weighted as f32 - self.sum_y;
        let (factor, error) = unpack(tail);
        let est = self.shift
            + if self.l2 {
                norm2 - 2.0 * factor * proj
            } else {
                -factor * proj
            };
        (est, est - self.bound * error)
    }

    /// The one-word form, if the sketches have one sign word.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub(crate) fn one_word(&self) -> Option<OneWordQuery<'_>> {
        let planes: [u64; QUERY_BITS] = self.planes.as_slice().try_into().ok()?;
        Some(OneWordQuery { q: self, planes })
    }
}

/// A [`SketchQuery`] of one sign word (up to 64 dimensions), its planes in registers: what
/// the AVX2 scan (`avx2`) loads its lanes from and scores its last few sketches with.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
#[derive(Debug, Clone, Copy)]
pub(crate) struct OneWordQuery<'a> {
    q: &'a SketchQuery,
    planes: [u64; QUERY_BITS],
}

#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
impl OneWordQuery<'_> {
    /// [`SketchQuery::dist`] for a sketch of sign word `bits` and factor word `tail`.
    #[inline(always)]
    pub(crate) fn dist(&self, bits: u64, tail: u64, norm2: f32) -> (f32, f32) {
        let [p0, p1, p2, p3] = self.planes;
        let weighted = (bits & p0).count_ones()
            + 2 * (bits & p1).count_ones()
            + 4 * (bits & p2).count_ones()
            + 8 * (bits & p3).count_ones();
        self.q.finish(bits.count_ones(), weighted, tail, norm2)
    }
}

/// Four sketches at a time with AVX2 (x86-64-v3): the one-word scan's kernel where the CPU
/// has it. Popcounts come from a nibble table (`vpshufb`) per byte, summed per sketch with
/// `vpsadbw`; the four planes' byte counts are weighted (1, 2, 4, 8) before the sum, which
/// fits a byte (at most 8 · 15). The float steps are the scalar ones in the same order, so
/// the bounds are bit for bit [`OneWordQuery::dist`]'s (a test holds it).
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2 {
    use core::arch::x86_64::{__m128, __m256i};
    use pulp::x86::V3;

    use super::OneWordQuery;

    /// The query's constants in registers.
    #[derive(Clone, Copy)]
    pub(crate) struct Lanes {
        lut: __m256i,
        low: __m256i,
        zero: __m256i,
        planes: [__m256i; 4],
        even: __m256i,
        odd: __m256i,
        two_lo: __m128,
        two_delta: __m128,
        sum_y: __m128,
        shift: __m128,
        bound: __m128,
        two: __m128,
        l2: bool,
    }

    impl Lanes {
        #[inline(always)]
        pub(crate) fn new(v3: V3, one: &OneWordQuery<'_>) -> Self {
            let q = one.q;
            let counts: [i8; 16] = [0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4];
            let mut lut = [0i8; 32];
            lut[..16].copy_from_slice(&counts);
            lut[16..].copy_from_slice(&counts);
            let splat = |x: f32| bytemuck::cast::<[f32; 4], __m128>([x; 4]);
            Lanes {
                lut: bytemuck::cast(lut),
                low: v3.avx._mm256_set1_epi8(0x0f),
                zero: v3.avx._mm256_setzero_si256(),
                planes: one.planes.map(|p| bytemuck::cast([p; 4])),
                even: bytemuck::cast([0i32, 2, 4, 6, 0, 2, 4, 6]),
                odd: bytemuck::cast([1i32, 3, 5, 7, 1, 3, 5, 7]),
                two_lo: splat(q.two_lo),
                two_delta: splat(q.two_delta),
                sum_y: splat(q.sum_y),
                shift: splat(q.shift),
                bound: splat(q.bound),
                two: splat(2.0),
                l2: q.l2,
            }
        }
    }

    /// Per byte of `x`, its number of set bits.
    #[inline(always)]
    fn byte_counts(v3: V3, c: &Lanes, x: __m256i) -> __m256i {
        let a = v3.avx2;
        let lo = a._mm256_and_si256(x, c.low);
        let hi = a._mm256_and_si256(a._mm256_srli_epi16::<4>(x), c.low);
        a._mm256_add_epi8(
            a._mm256_shuffle_epi8(c.lut, lo),
            a._mm256_shuffle_epi8(c.lut, hi),
        )
    }

    /// The lower bounds of four one-word sketches (sign words `bits`, factor words
    /// `tails`, `|x|²` in `norm2` under l2).
    #[inline(always)]
    pub(crate) fn lower4(
        v3: V3,
        c: &Lanes,
        bits: [u64; 4],
        tails: [u64; 4],
        norm2: [f32; 4],
    ) -> [f32; 4] {
        let (a, avx, sse) = (v3.avx2, v3.avx, v3.sse);
        let b: __m256i = bytemuck::cast(bits);
        let ones8 = byte_counts(v3, c, b);
        let plane = |j: usize| byte_counts(v3, c, a._mm256_and_si256(b, c.planes[j]));
        // 8 c3 + 4 c2 + 2 c1 + c0 per byte, by Horner's rule.
        let mut w8 = plane(3);
        for j in [2, 1, 0] {
            w8 = a._mm256_add_epi8(a._mm256_add_epi8(w8, w8), plane(j));
        }
        let ones = a._mm256_sad_epu8(ones8, c.zero);
        let weighted = a._mm256_sad_epu8(w8, c.zero);
        // Dwords [w0, ones0, w1, ones1, …] (the sums are below 2^10), to floats.
        let both =
            avx._mm256_cvtepi32_ps(a._mm256_or_si256(weighted, a._mm256_slli_epi64::<32>(ones)));
        let low = |v, idx| avx._mm256_castps256_ps128(a._mm256_permutevar8x32_ps(v, idx));
        let (wf, of) = (low(both, c.even), low(both, c.odd));
        let t = avx._mm256_castsi256_ps(bytemuck::cast(tails));
        let (factor, error) = (low(t, c.even), low(t, c.odd));
        let proj = sse._mm_sub_ps(
            sse._mm_add_ps(
                sse._mm_mul_ps(c.two_lo, of),
                sse._mm_mul_ps(c.two_delta, wf),
            ),
            c.sum_y,
        );
        let est = if c.l2 {
            let n2: __m128 = bytemuck::cast(norm2);
            let twice = sse._mm_mul_ps(sse._mm_mul_ps(c.two, factor), proj);
            sse._mm_add_ps(c.shift, sse._mm_sub_ps(n2, twice))
        } else {
            sse._mm_sub_ps(c.shift, sse._mm_mul_ps(factor, proj))
        };
        bytemuck::cast(sse._mm_sub_ps(est, sse._mm_mul_ps(c.bound, error)))
    }
}

fn pack(lo: f32, hi: f32) -> u64 {
    u64::from(lo.to_bits()) | (u64::from(hi.to_bits()) << 32)
}

#[inline(always)]
fn unpack(w: u64) -> (f32, f32) {
    (f32::from_bits(w as u32), f32::from_bits((w >> 32) as u32))
}

/// In-place unnormalized Walsh-Hadamard transform; `v.len()` is a power of two.
fn walsh_hadamard(v: &mut [f32]) {
    let n = v.len();
    let mut h = 1;
    while h < n {
        for block in v.chunks_exact_mut(2 * h) {
            let (a, b) = block.split_at_mut(h);
            for (x, y) in a.iter_mut().zip(b.iter_mut()) {
                let (s, d) = (*x + *y, *x - *y);
                *x = s;
                *y = d;
            }
        }
        h *= 2;
    }
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dot(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn the_rotation_keeps_lengths_and_angles() {
        let sk = Sketcher::train(5, std::iter::empty::<Vec<f32>>());
        assert_eq!((sk.padded, sk.words()), (64, 1));
        let a = [0.3, -1.0, 2.0, 0.5, 0.0];
        let b = [1.0, 1.0, -0.5, 0.25, 3.0];
        let (ra, rb) = (sk.rotate(a.into_iter()), sk.rotate(b.into_iter()));
        assert!((dot(&ra, &rb) - dot(&a, &b)).abs() < 1e-4);
        assert!((dot(&ra, &ra) - dot(&a, &a)).abs() < 1e-4);
    }

    /// Sketches of `vs` and their `|x|²`.
    fn sketch_all(sk: &Sketcher, vs: &[Vec<f32>]) -> Vec<(Vec<u64>, f32)> {
        vs.iter()
            .map(|v| {
                let mut out = vec![0; sk.words() + 1];
                let n2 = sk.encode(v, &mut out);
                (out, n2)
            })
            .collect()
    }

    fn true_dist(l2: bool, x: &[f32], q: &[f32]) -> f32 {
        if l2 {
            x.iter().zip(q).map(|(a, b)| (a - b) * (a - b)).sum()
        } else {
            -dot(x, q)
        }
    }

    #[test]
    fn estimates_track_true_distances_and_their_bounds_hold() {
        let data = crate::testing::vectors(2_000, 64, 5, 8, 0);
        let vs: Vec<Vec<f32>> = data.iter().map(|(_, v)| unit(v)).collect();
        let sk = Sketcher::train(64, vs.iter());
        let sketches = sketch_all(&sk, &vs);
        for l2 in [false, true] {
            let (mut hits, mut found, mut pairs, mut held) = (0, 0, 0, 0);
            for (qi, q) in vs.iter().enumerate().step_by(97) {
                let sq = sk.query(q, l2);
                let one = sq.one_word().expect("64-d: one word");
                let mut est = Vec::new();
                for ((s, n2), v) in sketches.iter().zip(&vs) {
                    let (e, lower) = sq.dist(s, *n2);
                    // The one-word form computes the same.
                    assert_eq!(one.dist(s[0], s[1], *n2), (e, lower));
                    assert!(lower <= e);
                    held += usize::from(lower <= true_dist(l2, v, q));
                    pairs += 1;
                    est.push(e);
                }
                let best = (0..est.len())
                    .min_by(|&a, &b| est[a].total_cmp(&est[b]))
                    .expect("vectors");
                hits += usize::from(best == qi);
                // The true 10 nearest, in the estimate's best 200 (of 2,000).
                let mut by_est: Vec<usize> = (0..est.len()).collect();
                by_est.sort_by(|&a, &b| est[a].total_cmp(&est[b]));
                let short: std::collections::HashSet<usize> =
                    by_est[..200].iter().copied().collect();
                let mut by_true: Vec<usize> = (0..vs.len()).collect();
                by_true.sort_by(|&a, &b| {
                    true_dist(l2, &vs[a], q).total_cmp(&true_dist(l2, &vs[b], q))
                });
                found += by_true[..10].iter().filter(|i| short.contains(i)).count();
            }
            // Uniform data in 64-d has no close neighbours; the sketch still keeps ~90 %
            // of the true ten in a tenth of the set.
            assert!(found >= 190, "l2 {l2}: {found} of 210 in the short lists");
            assert!(hits >= 19, "l2 {l2}: itself first for {hits} of 21 queries");
            // The lower bound is below the true distance for all but a few pairs (97 % on
            // this uniform data, the estimate's worst case; a flipped sign gives ~50 %).
            assert!(
                held * 100 >= pairs * 96,
                "l2 {l2}: {held} of {pairs} bounds hold"
            );
        }
    }

    #[test]
    fn estimates_follow_inner_products_on_wide_vectors() {
        // 300 dimensions: padded to 512, eight sign words.
        let data = crate::testing::vectors(500, 300, 9, 4, 0);
        let vs: Vec<Vec<f32>> = data.iter().map(|(_, v)| unit(v)).collect();
        let sk = Sketcher::train(300, vs.iter());
        assert_eq!(sk.words(), 8);
        let q = &vs[7];
        let sq = sk.query(q, false);
        assert!(sq.one_word().is_none());
        let mut est = Vec::new();
        let mut truth = Vec::new();
        for ((s, n2), v) in sketch_all(&sk, &vs).iter().zip(&vs) {
            est.push(-sq.dist(s, *n2).0);
            truth.push(dot(v, q));
        }
        // Estimates and true products move together (Pearson r), far above chance.
        let r = pearson(&est, &truth);
        assert!(r > 0.9, "r = {r}");
    }

    #[test]
    fn an_all_zero_residual_has_no_factor() {
        let sk = Sketcher::train(3, [[1.0f32, 2.0, 3.0]].iter());
        let mut out = vec![0; 2];
        assert_eq!(sk.encode(&[1.0, 2.0, 3.0], &mut out), 14.0);
        assert_eq!(out, [0, 0]);
        // Only the part the sketch cannot see is left: -c · q.
        assert_eq!(
            sk.query(&[1.0, 0.0, 0.0], false).dist(&out, 14.0),
            (-1.0, -1.0)
        );
    }

    fn unit(v: &[f32]) -> Vec<f32> {
        let n = dot(v, v).sqrt();
        v.iter().map(|x| x / n).collect()
    }

    fn pearson(a: &[f32], b: &[f32]) -> f64 {
        let n = a.len() as f64;
        let (ma, mb) = (
            a.iter().map(|&x| f64::from(x)).sum::<f64>() / n,
            b.iter().map(|&x| f64::from(x)).sum::<f64>() / n,
        );
        let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
        for (&x, &y) in a.iter().zip(b) {
            let (dx, dy) = (f64::from(x) - ma, f64::from(y) - mb);
            sab += dx * dy;
            saa += dx * dx;
            sbb += dy * dy;
        }
        sab / (saa * sbb).sqrt()
    }
}
