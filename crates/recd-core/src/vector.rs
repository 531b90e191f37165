//! Dense-vector helpers, and the one dot-product / squared-L2 kernel of the workspace:
//! the session vector, the query blend and scoring here, the embedded vector index
//! (`recd-index`) and ALS training (`recd-train`) all call [`dot`] and [`l2_squared`].
//!
//! The kernels are plain safe Rust shaped so that LLVM vectorizes them without
//! `-ffast-math`: eight independent accumulators over `chunks_exact(8)` (two SSE registers
//! on baseline x86-64, one AVX register with `target-cpu` set), indexed lane by lane so
//! that they stay in registers, summed in lane order at the end, then a scalar tail. At
//! 64–384 dimensions this shape measured about 2x faster than the same eight lanes
//! written with zipped iterators and a pairwise sum (recd-index's former kernel); the
//! figures of today's are in `cargo bench -p recd-index --bench knn -- kernels`.

/// Largest accepted squared norm of a stored or query vector: keeps `|q − v|²` and `q · v`
/// finite in f32 for any two accepted vectors (the embedded index refuses the same bound).
pub const MAX_NORM_SQUARED: f64 = (f32::MAX / 4.0) as f64;

/// Squared Euclidean norm accumulated in f64, so that it cannot overflow for finite f32s.
pub fn norm_squared_f64(a: &[f32]) -> f64 {
    a.iter().map(|&x| f64::from(x) * f64::from(x)).sum()
}

/// Whether a vector of this squared norm can be scaled to unit length in f32
/// (non-zero, and `1 / |v|` finite).
pub fn can_normalize(norm_squared: f64) -> bool {
    norm_squared > 0.0 && ((1.0 / norm_squared.sqrt()) as f32).is_finite()
}

/// Independent accumulators of the kernels.
const LANES: usize = 8;

/// Dot product (over the shorter length, if they differ).
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    dot_in_lanes::<f32, LANES>(a, b)
}

/// Dot product in f64 (over the shorter length, if they differ): the fold-in's Cholesky
/// and triangular solves. Four lanes: two SSE registers of f64, as eight are of f32.
#[inline]
pub fn dot_f64(a: &[f64], b: &[f64]) -> f64 {
    dot_in_lanes::<f64, 4>(a, b)
}

/// The dot kernel's shape (module doc) for either float width.
#[inline]
fn dot_in_lanes<T, const L: usize>(a: &[T], b: &[T]) -> T
where
    T: Copy + Default + std::ops::Mul<Output = T> + std::ops::Add<Output = T>,
    T: std::ops::AddAssign + std::iter::Sum,
{
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let ca = a.chunks_exact(L);
    let cb = b.chunks_exact(L);
    let tail: T = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| *x * *y)
        .sum();
    let mut acc = [T::default(); L];
    for (x, y) in ca.zip(cb) {
        for l in 0..L {
            acc[l] += x[l] * y[l];
        }
    }
    acc.iter().copied().sum::<T>() + tail
}

/// Squared Euclidean distance (over the shorter length, if they differ).
#[inline]
pub fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let ca = a.chunks_exact(LANES);
    let cb = b.chunks_exact(LANES);
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| (x - y) * (x - y))
        .sum();
    let mut acc = [0f32; LANES];
    for (x, y) in ca.zip(cb) {
        for l in 0..LANES {
            let d = x[l] - y[l];
            acc[l] += d * d;
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Euclidean norm.
pub fn norm(a: &[f32]) -> f32 {
    dot(a, a).sqrt()
}

/// `a` scaled to unit length, or `None` for a zero (or non-finite) vector.
pub fn normalized(a: &[f32]) -> Option<Vec<f32>> {
    let n = norm(a);
    (n.is_finite() && n > 0.0).then(|| a.iter().map(|x| x / n).collect())
}

/// Cosine similarity; 0 when either vector is zero.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let d = norm(a) * norm(b);
    if d > 0.0 { dot(a, b) / d } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basics() {
        assert_eq!(dot(&[1.0, 2.0], &[3.0, 4.0]), 11.0);
        assert_eq!(normalized(&[3.0, 4.0]), Some(vec![0.6, 0.8]));
        assert_eq!(normalized(&[0.0, 0.0]), None);
        assert!((cosine(&[1.0, 0.0], &[2.0, 0.0]) - 1.0).abs() < 1e-6);
    }

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
    fn kernels_on_known_values_and_unequal_lengths() {
        let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0];
        let b = [1.0; 9];
        assert_eq!(dot(&a, &b), 45.0);
        assert_eq!(l2_squared(&a, &a), 0.0);
        assert_eq!(l2_squared(&[0.0, 3.0], &[4.0, 0.0]), 25.0);
        // the shorter length counts, as for a zip
        assert_eq!(dot(&a, &b[..3]), 6.0);
        assert_eq!(dot(&a[..2], &b), 3.0);
        assert_eq!(l2_squared(&a[..1], &[3.0; 17]), 4.0);
    }

    #[test]
    fn magnitude_bounds() {
        assert!(norm_squared_f64(&[1e19, 0.1]) > MAX_NORM_SQUARED);
        assert!(norm_squared_f64(&[1e18, 0.1]) < MAX_NORM_SQUARED);
        assert!(!can_normalize(norm_squared_f64(&[1e-45; 64])));
        assert!(can_normalize(norm_squared_f64(&[1e-20; 64])));
        assert!(!can_normalize(0.0));
    }
}
