//! Small dense-vector helpers used by the session vector, the query blend and scoring.

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
}
