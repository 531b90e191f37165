//! Small dense-vector helpers used by the session vector, the query blend and scoring.

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

/// Dot product.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
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

    #[test]
    fn magnitude_bounds() {
        assert!(norm_squared_f64(&[1e19, 0.1]) > MAX_NORM_SQUARED);
        assert!(norm_squared_f64(&[1e18, 0.1]) < MAX_NORM_SQUARED);
        assert!(!can_normalize(norm_squared_f64(&[1e-45; 64])));
        assert!(can_normalize(norm_squared_f64(&[1e-20; 64])));
        assert!(!can_normalize(0.0));
    }
}
