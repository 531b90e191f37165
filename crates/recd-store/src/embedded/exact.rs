//! Test support: the exact answer a KNN is checked against (cosine, by brute force).

use crate::Hit;

/// Cosine similarity of `a` and `b`.
pub fn cos(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let n = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (n(a) * n(b))
}

/// Of the 10 `candidates` (id, vector) nearest to `q` by cosine: how many `hits` found, and
/// how many there were (fewer than 10 when there are fewer candidates).
pub fn found_of_top10<'a>(
    q: &[f32],
    candidates: impl Iterator<Item = (&'a String, &'a [f32])>,
    hits: &[Hit],
) -> (usize, usize) {
    let mut exact: Vec<(f32, &String)> = candidates.map(|(id, v)| (cos(q, v), id)).collect();
    exact.sort_by(|a, b| b.0.total_cmp(&a.0));
    exact.truncate(10);
    let found = exact
        .iter()
        .filter(|(_, id)| hits.iter().any(|h| &&h.item.id == id))
        .count();
    (found, exact.len())
}
