//! Distance kernels and the metric-to-distance mapping.
//!
//! Kernels are plain safe Rust shaped so that LLVM vectorizes them: eight independent
//! accumulators over `chunks_exact(8)` (two SSE registers on baseline x86-64, one AVX register
//! with `target-cpu` set), then a scalar tail. Internally the index works with a *distance*
//! (lower is better); the public score is its negation, so that higher is better:
//! cosine similarity, dot product, or minus the squared L2 distance.

use serde::{Deserialize, Serialize};

/// Similarity metric of an index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Metric {
    /// Cosine similarity in \[-1, 1\]; vectors need not be normalized (the index keeps norms).
    #[serde(rename = "cosine")]
    Cosine,
    /// Dot product (maximum inner product search).
    #[serde(rename = "ip")]
    InnerProduct,
    /// Euclidean; the score is minus the squared distance.
    #[serde(rename = "l2")]
    L2,
}

impl Metric {
    /// The metric's configuration name: `"cosine"`, `"ip"` or `"l2"` (same as its serde form).
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Cosine => "cosine",
            Metric::InnerProduct => "ip",
            Metric::L2 => "l2",
        }
    }
}

impl std::fmt::Display for Metric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

const LANES: usize = 8;

/// Dot product of two equal-length slices.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let ca = a.chunks_exact(LANES);
    let cb = b.chunks_exact(LANES);
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    let mut acc = [0.0f32; LANES];
    for (x, y) in ca.zip(cb) {
        for ((s, x), y) in acc.iter_mut().zip(x).zip(y) {
            *s += x * y;
        }
    }
    reduce(acc) + tail
}

/// Squared Euclidean distance of two equal-length slices.
#[inline]
pub fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let ca = a.chunks_exact(LANES);
    let cb = b.chunks_exact(LANES);
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| (x - y) * (x - y))
        .sum();
    let mut acc = [0.0f32; LANES];
    for (x, y) in ca.zip(cb) {
        for ((s, x), y) in acc.iter_mut().zip(x).zip(y) {
            let d = x - y;
            *s += d * d;
        }
    }
    reduce(acc) + tail
}

#[inline]
fn reduce(acc: [f32; LANES]) -> f32 {
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]))
}

/// Squared norm accumulated in f64, so that validation can detect overflow of the f32 result.
pub(crate) fn norm_squared_f64(v: &[f32]) -> f64 {
    v.iter().map(|&x| f64::from(x) * f64::from(x)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive_dot(a: &[f32], b: &[f32]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(x, y)| f64::from(*x) * f64::from(*y))
            .sum()
    }

    fn naive_l2(a: &[f32], b: &[f32]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2))
            .sum()
    }

    /// Deterministic pseudo-random values in [-1, 1) without pulling an RNG into unit tests.
    fn values(seed: u64, n: usize) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                ((s >> 40) as f32 / (1u64 << 23) as f32) - 1.0
            })
            .collect()
    }

    #[test]
    fn kernels_match_naive_for_all_tail_lengths() {
        for dim in 0..=70 {
            let a = values(dim as u64 + 1, dim);
            let b = values(dim as u64 + 1000, dim);
            let tol = 1e-4 * (dim as f64 + 1.0);
            assert!(
                (f64::from(dot(&a, &b)) - naive_dot(&a, &b)).abs() < tol,
                "dot dim {dim}"
            );
            assert!(
                (f64::from(l2_squared(&a, &b)) - naive_l2(&a, &b)).abs() < tol,
                "l2 dim {dim}"
            );
        }
    }

    #[test]
    fn kernels_on_known_values() {
        let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0];
        let b = [1.0; 9];
        assert_eq!(dot(&a, &b), 45.0);
        assert_eq!(l2_squared(&a, &a), 0.0);
        assert_eq!(l2_squared(&[0.0, 3.0], &[4.0, 0.0]), 25.0);
    }

    #[test]
    fn metric_serde_names_are_lowercase_and_match_as_str() {
        let names = [
            (Metric::Cosine, "cosine"),
            (Metric::InnerProduct, "ip"),
            (Metric::L2, "l2"),
        ];
        for (m, n) in names {
            assert_eq!(m.as_str(), n);
            assert_eq!(
                serde_json::to_string(&m).expect("serialize"),
                format!("\"{n}\"")
            );
            let back: Metric = serde_json::from_str(&format!("\"{n}\"")).expect("deserialize");
            assert_eq!(back, m);
        }
        assert!(serde_json::from_str::<Metric>("\"Cosine\"").is_err());
    }
}
