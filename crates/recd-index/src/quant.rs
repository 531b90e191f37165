//! int8 scalar quantization (SQ8): a compact copy of every vector that the graph walk and
//! the exact scan read instead of the `f32` one, with the final short list re-scored in
//! `f32` (see `index`), so results and scores stay exact.
//!
//! # Codes
//! Each dimension `d` has an offset `o_d` and a step `s_d`, trained from the data: the
//! minimum and `(max - min) / 255` of that dimension over every stored vector (in query
//! form, i.e. normalized under cosine). A vector `x` is stored as `u_d = round((x_d - o_d) /
//! s_d)` clamped to `0..=255`, standing for `x̂_d = o_d + s_d · u_d`. Values outside the
//! trained range (vectors added after training) are clamped; the store retrains whenever
//! the index has doubled since the last training, and a load from a snapshot trains afresh.
//!
//! Codes are laid out in whole, 64-byte aligned cache lines (`ceil(dim / 64)` per vector,
//! padded with zeros), so a 64-d vector is exactly one line: a walk touches one line per
//! node instead of four.
//!
//! # Distances on codes
//! For a prepared query `q`: `q · x̂ = Σ q_d o_d + Σ (q_d s_d) u_d`. The first sum is one
//! number per query (`bias`); the weights `w_d = q_d s_d` are rounded to `i16` with one
//! scale, `w_d ≈ scale · w̃_d`, `|w̃_d| ≤ 2047`, so that `Σ w̃_d u_d` is an integer dot
//! product (`u8 × i16 → i32`) that LLVM vectorizes (no float reassociation to forbid it)
//! and that cannot overflow `i32` up to 4,096 dimensions (`2047 · 255 · 4096 < 2³¹`).
//! Then cosine / ip: `-(bias + scale · Σ)`; l2: `|q|² - 2 (bias + scale · Σ) + |x̂|²`, with
//! `|x̂|²` kept per vector.

/// How the index stores the copy of the vectors its searches read: recd-core's schema
/// type (`none` | `int8`), so that the schema option reaches the index unchanged.
pub use recd_core::Quantization;

/// Bytes per code line (one cache line).
pub(crate) const LINE: usize = 64;

/// One cache line of codes, aligned so that a 64-d vector never straddles two lines.
#[derive(Debug, Clone, Copy)]
#[repr(C, align(64))]
pub(crate) struct Line(pub(crate) [u8; LINE]);

impl Line {
    pub(crate) const ZERO: Line = Line([0; LINE]);
}

/// Largest magnitude of a query weight code (see the module docs for why 2047).
const QMAX: f32 = 2047.0;

/// Code lines per vector of `dim` dimensions.
pub(crate) fn lines_for(dim: usize) -> usize {
    dim.div_ceil(LINE).max(1)
}

/// Trained per-dimension offsets and steps.
#[derive(Debug, Clone)]
pub(crate) struct Sq8 {
    offset: Vec<f32>,
    step: Vec<f32>,
    inv_step: Vec<f32>,
}

impl Sq8 {
    /// Trains on `vectors` (in query form). With no vectors, every dimension gets the range
    /// [-1, 1] (replaced at the first retraining).
    pub(crate) fn train<V: AsRef<[f32]>>(dim: usize, vectors: impl Iterator<Item = V>) -> Self {
        let mut lo = vec![f32::INFINITY; dim];
        let mut hi = vec![f32::NEG_INFINITY; dim];
        for v in vectors {
            for ((l, h), &x) in lo.iter_mut().zip(hi.iter_mut()).zip(v.as_ref()) {
                *l = l.min(x);
                *h = h.max(x);
            }
        }
        let mut offset = Vec::with_capacity(dim);
        let mut step = Vec::with_capacity(dim);
        for (&l, &h) in lo.iter().zip(&hi) {
            let (l, h) = if l <= h { (l, h) } else { (-1.0, 1.0) };
            // A constant dimension still needs a positive step; give it a small range
            // around its value so later, slightly different values are not all clamped.
            let span = if h > l {
                h - l
            } else {
                l.abs().max(1.0) * 1e-2
            };
            let s = span / 255.0;
            offset.push(l);
            step.push(if s.is_finite() && s > 0.0 {
                s
            } else {
                f32::MAX / 255.0
            });
        }
        let inv_step = step.iter().map(|s| 1.0 / s).collect();
        Sq8 {
            offset,
            step,
            inv_step,
        }
    }

    /// Writes the codes of `v` (query form) into `out` (`lines_for(dim)` lines) and returns
    /// `|x̂|²`, the squared norm of the vector the codes stand for.
    pub(crate) fn encode(&self, v: &[f32], out: &mut [Line]) -> f32 {
        for line in out.iter_mut() {
            *line = Line::ZERO;
        }
        let mut norm2 = 0f64;
        for (d, &x) in v.iter().enumerate() {
            let u = ((x - self.offset[d]) * self.inv_step[d]).round();
            // NaN cannot reach here (vectors are validated); clamp handles the rest.
            let u = u.clamp(0.0, 255.0) as u8;
            out[d / LINE].0[d % LINE] = u;
            let xh = f64::from(self.offset[d]) + f64::from(self.step[d]) * f64::from(u);
            norm2 += xh * xh;
        }
        norm2 as f32
    }

    /// The value codes `u` stand for in dimension `d` (tests).
    #[cfg(test)]
    pub(crate) fn decode(&self, d: usize, u: u8) -> f32 {
        self.offset[d] + self.step[d] * f32::from(u)
    }

    /// A prepared query (normalized under cosine) in the form the code kernel takes.
    pub(crate) fn query(&self, q: &[f32], lines: usize) -> CodedQuery {
        let mut bias = 0f64;
        let mut wmax = 0f32;
        let mut w = Vec::with_capacity(q.len());
        for (d, &x) in q.iter().enumerate() {
            bias += f64::from(x) * f64::from(self.offset[d]);
            let wd = x * self.step[d];
            wmax = wmax.max(wd.abs());
            w.push(wd);
        }
        // 2047 keeps the integer sum in i32 up to 4,096 dimensions (recd's schema limit);
        // an index built wider than that gets proportionally coarser query weights.
        let qmax = QMAX.min((f64::from(i32::MAX) / (255.0 * q.len().max(1) as f64)).floor() as f32);
        let scale = if wmax > 0.0 && wmax.is_finite() {
            wmax / qmax
        } else {
            1.0
        };
        let mut codes = vec![[0i16; LINE]; lines];
        for (d, wd) in w.iter().enumerate() {
            // |wd / scale| <= QMAX by construction; the clamp guards rounding.
            codes[d / LINE][d % LINE] = (wd / scale).round().clamp(-qmax, qmax) as i16;
        }
        let norm2: f64 = q.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
        CodedQuery {
            codes,
            scale,
            bias: bias as f32,
            norm2: norm2 as f32,
        }
    }
}

/// A query prepared for scoring code lines ([`CodedQuery::dot`]).
#[derive(Debug, Clone)]
pub(crate) struct CodedQuery {
    codes: Vec<[i16; LINE]>,
    scale: f32,
    bias: f32,
    /// `|q|²` (l2).
    pub(crate) norm2: f32,
}

impl CodedQuery {
    /// `q · x̂` for a vector's code lines.
    #[inline(always)]
    pub(crate) fn dot(&self, codes: &[Line]) -> f32 {
        let mut acc = 0i32;
        for (c, q) in codes.iter().zip(&self.codes) {
            acc = acc.wrapping_add(dot_line(&c.0, q));
        }
        self.bias + self.scale * acc as f32
    }
}

/// `Σ u_d · w_d` over one line. Written as sums of adjacent pairs into four accumulators so
/// that LLVM emits the multiply-add-pairs instruction (`pmaddwd`: eight u8 widened to i16,
/// times eight i16, summed pairwise into four i32) on baseline x86-64: 47 instructions for
/// a 64-d line with SSE2, 21 with AVX2, where the plain `zip().map().sum()` form gave 111
/// with SSE2. Integer sums may be reordered freely, so no float-style reassociation stands
/// in the way. Wrapping ops only keep debug builds free of overflow checks: the bounds in
/// the module docs rule overflow out.
#[inline(always)]
fn dot_line(c: &[u8; LINE], q: &[i16; LINE]) -> i32 {
    let mut acc = [0i32; 4];
    for j in 0..LINE / 8 {
        for (l, a) in acc.iter_mut().enumerate() {
            let i = j * 8 + 2 * l;
            let pair = (i32::from(c[i]).wrapping_mul(i32::from(q[i])))
                .wrapping_add(i32::from(c[i + 1]).wrapping_mul(i32::from(q[i + 1])));
            *a = a.wrapping_add(pair);
        }
    }
    acc.iter().fold(0, |s, a| s.wrapping_add(*a))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(seed: u64, n: usize) -> Vec<f32> {
        crate::testing::vectors(1, n, seed, 1, 0).remove(0).1
    }

    #[test]
    fn codes_round_trip_within_half_a_step() {
        let dim = 100;
        let data: Vec<Vec<f32>> = (0..50).map(|i| values(i + 1, dim)).collect();
        let sq = Sq8::train(dim, data.iter().map(Vec::as_slice));
        let mut out = vec![Line::ZERO; lines_for(dim)];
        for v in &data {
            let norm2 = sq.encode(v, &mut out);
            let mut n2 = 0f32;
            for (d, &x) in v.iter().enumerate() {
                let xh = sq.decode(d, out[d / LINE].0[d % LINE]);
                assert!((xh - x).abs() <= sq.step[d] * 0.5 + 1e-6, "dim {d}");
                n2 += xh * xh;
            }
            assert!((n2 - norm2).abs() < 1e-3);
            // Padding stays zero, so it adds nothing to a dot product.
            assert!(out[1].0[dim - LINE..].iter().all(|&u| u == 0));
        }
        // A value outside the trained range is clamped, not wrapped.
        let mut far = data[0].clone();
        far[3] = 100.0;
        far[4] = -100.0;
        sq.encode(&far, &mut out);
        assert_eq!((out[0].0[3], out[0].0[4]), (255, 0));
    }

    #[test]
    fn coded_dot_matches_the_float_dot_closely() {
        let dim = 130;
        let data: Vec<Vec<f32>> = (0..64).map(|i| values(i + 100, dim)).collect();
        let sq = Sq8::train(dim, data.iter().map(Vec::as_slice));
        let lines = lines_for(dim);
        let mut codes = vec![Line::ZERO; lines];
        for (i, q) in data.iter().enumerate().take(8) {
            let cq = sq.query(q, lines);
            for v in data.iter().skip(i) {
                sq.encode(v, &mut codes);
                let exact: f32 = q.iter().zip(v).map(|(a, b)| a * b).sum();
                let approx = cq.dot(&codes);
                // Values in [-1, 1): a step is ~2/255; the error is a sum of 130 roughly
                // independent terms of at most half a step each.
                assert!((approx - exact).abs() < 0.1, "{approx} vs {exact}");
            }
        }
    }

    #[test]
    fn constant_and_empty_training_sets_give_usable_steps() {
        let sq = Sq8::train(3, [[2.0f32, 0.0, -5.0]].iter().map(|v| &v[..]));
        assert!(sq.step.iter().all(|s| *s > 0.0 && s.is_finite()));
        let mut out = [Line::ZERO];
        sq.encode(&[2.0, 0.0, -5.0], &mut out);
        assert_eq!(&out[0].0[..3], &[0, 0, 0]);
        let empty = Sq8::train(2, std::iter::empty::<Vec<f32>>());
        assert_eq!(empty.offset, vec![-1.0, -1.0]);
    }

    #[test]
    fn very_wide_vectors_cannot_overflow_the_integer_sum() {
        // 10,000 dimensions at the extremes of both ranges: with 2047 as the weight bound
        // the sum would wrap past i32::MAX and turn negative.
        let dim = 10_000;
        let lo = vec![0.0f32; dim];
        let hi = vec![1.0f32; dim];
        let sq = Sq8::train(dim, [lo, hi.clone()].iter());
        let lines = lines_for(dim);
        let mut codes = vec![Line::ZERO; lines];
        sq.encode(&hi, &mut codes);
        let cq = sq.query(&hi, lines);
        let dot = cq.dot(&codes);
        assert!((dot - dim as f32).abs() < 1.0, "{dot}");
    }

    #[test]
    fn the_integer_kernel_is_exact_at_its_extremes() {
        let c = [255u8; LINE];
        let q = [2047i16; LINE];
        assert_eq!(dot_line(&c, &q), 255 * 2047 * LINE as i32);
        let q = [-2047i16; LINE];
        assert_eq!(dot_line(&c, &q), -255 * 2047 * LINE as i32);
    }
}
