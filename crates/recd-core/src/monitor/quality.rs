//! Quality of one served list, and the Gini coefficient of a distribution of counts.
//!
//! - **Intra-list diversity**: the mean pairwise cosine distance 1 − cos(a, b) over all
//!   pairs of the list's item vectors (0 for identical directions, 1 for orthogonal, up to
//!   2 for opposite); a zero vector is at distance 1 from everything (its cosine is 0).
//! - **Category entropy**: the Shannon entropy, in bits, of the list's values of a tag
//!   field (each value of a multi-valued tag counts once): 0 when every item shares one
//!   value, log₂ k for k values equally often.
//! - **Novelty**: the mean self-information −log₂ p of the listed items, p being each
//!   item's share of popularity (interactions) in the catalog: recommending the head of the
//!   catalog scores low, the long tail high. Shares must be positive; [`smoothed_share`]
//!   gives never-seen items one.
//! - **Gini coefficient** of non-negative values x₁ ≤ … ≤ xₙ (sorted):
//!   G = 2·Σ i·xᵢ / (n·Σ xᵢ) − (n + 1)/n, equal to Σᵢ Σⱼ |xᵢ − xⱼ| / (2n²·mean): 0 when
//!   every value is equal, (n − 1)/n when one value holds everything. Over item impression
//!   counts it measures how concentrated exposure is.

use std::collections::HashMap;
use std::hash::Hash;

use serde::Serialize;

use crate::error::ValidationError;

/// Mean pairwise cosine distance of the vectors; `None` for fewer than two (no pair).
/// Errors on vectors of different lengths or with a non-finite component.
pub fn intra_list_diversity<V: AsRef<[f32]>>(
    vectors: &[V],
) -> Result<Option<f64>, ValidationError> {
    let Some(first) = vectors.first() else {
        return Ok(None);
    };
    let dim = first.as_ref().len();
    for v in vectors {
        let v = v.as_ref();
        if v.len() != dim {
            return crate::invalid!("vectors of dimensions {dim} and {} in one list", v.len());
        }
        if v.iter().any(|x| !x.is_finite()) {
            return crate::invalid!("a vector has a non-finite component");
        }
    }
    if vectors.len() < 2 {
        return Ok(None);
    }
    let norms: Vec<f64> = vectors
        .iter()
        .map(|v| dot64(v.as_ref(), v.as_ref()).sqrt())
        .collect();
    let mut sum = 0.0;
    let mut pairs = 0u64;
    for (i, a) in vectors.iter().enumerate() {
        for (j, b) in vectors.iter().enumerate().skip(i + 1) {
            let d = norms[i] * norms[j];
            // The pairs in f32 (SIMD; ~1e-7 relative error, far below what a diversity
            // histogram resolves), the norms in f64.
            let cos = if d > 0.0 {
                f64::from(crate::vector::dot(a.as_ref(), b.as_ref())) / d
            } else {
                0.0
            };
            sum += 1.0 - cos.clamp(-1.0, 1.0);
            pairs += 1;
        }
    }
    Ok(Some(sum / pairs as f64))
}

/// A dot product accumulated in f64 (cosines of nearly equal vectors need it), in eight
/// independent lanes so that the compiler can vectorize it (a single running sum cannot be
/// reordered).
fn dot64(a: &[f32], b: &[f32]) -> f64 {
    const LANES: usize = 8;
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut lanes = [0.0f64; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f64 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(&x, &y)| f64::from(x) * f64::from(y))
        .sum();
    for (x, y) in ca.zip(cb) {
        for ((l, &x), &y) in lanes.iter_mut().zip(x).zip(y) {
            *l += f64::from(x) * f64::from(y);
        }
    }
    lanes.iter().sum::<f64>() + tail
}

/// Shannon entropy in bits of the distribution of the values (0 for none).
pub fn category_entropy<T: Hash + Eq>(values: impl IntoIterator<Item = T>) -> f64 {
    // A served list has a handful of categories: a linear scan beats hashing until then.
    const LINEAR_UP_TO: usize = 16;
    let mut few: Vec<(T, u64)> = Vec::new();
    let mut values = values.into_iter();
    for v in values.by_ref() {
        if let Some((_, c)) = few.iter_mut().find(|(k, _)| *k == v) {
            *c += 1;
            continue;
        }
        if few.len() < LINEAR_UP_TO {
            few.push((v, 1));
            continue;
        }
        // Many distinct values: count the rest by hash.
        let mut counts: HashMap<T, u64, foldhash::fast::FixedState> =
            HashMap::with_hasher(foldhash::fast::FixedState::default());
        counts.extend(few);
        *counts.entry(v).or_insert(0) += 1;
        for v in values {
            *counts.entry(v).or_insert(0) += 1;
        }
        let c: Vec<u64> = counts.into_values().collect();
        return entropy_bits(&c);
    }
    let c: Vec<u64> = few.into_iter().map(|(_, c)| c).collect();
    entropy_bits(&c)
}

/// Shannon entropy in bits, −Σ pᵢ log₂ pᵢ, of the distribution given by counts (0 for none).
pub fn entropy_bits(counts: &[u64]) -> f64 {
    let total: f64 = counts.iter().map(|&c| c as f64).sum();
    if total <= 0.0 {
        return 0.0;
    }
    let h: f64 = counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / total;
            -p * p.log2()
        })
        .sum();
    h.max(0.0)
}

/// Mean −log₂(share) of the listed items' popularity shares; `None` for an empty list.
/// Each share must be in (0, 1].
pub fn novelty(shares: &[f64]) -> Result<Option<f64>, ValidationError> {
    if let Some(s) = shares.iter().find(|s| !(**s > 0.0 && **s <= 1.0)) {
        return crate::invalid!("popularity shares must be in (0, 1], got {s}");
    }
    if shares.is_empty() {
        return Ok(None);
    }
    Ok(Some(
        shares.iter().map(|s| -s.log2()).sum::<f64>() / shares.len() as f64,
    ))
}

/// An item's popularity share with add-one (Laplace) smoothing, so that an item never
/// interacted with still has a finite novelty: (count + 1) / (total + catalog_size), with
/// `total` the interactions over the whole catalog of `catalog_size` items. Always in (0, 1].
pub fn smoothed_share(count: u64, total: u64, catalog_size: u64) -> f64 {
    let num = count as f64 + 1.0;
    let den = total as f64 + catalog_size.max(1) as f64;
    (num / den).min(1.0)
}

/// The Gini coefficient of non-negative finite values (0 for none or all zero).
pub fn gini(values: &[f64]) -> Result<f64, ValidationError> {
    if let Some(v) = values.iter().find(|v| !(v.is_finite() && **v >= 0.0)) {
        return crate::invalid!("Gini needs non-negative finite values, got {v}");
    }
    Ok(gini_weighted(values.iter().map(|&v| (v, 1.0)).collect()))
}

/// The Gini coefficient of counts (0 for none or all zero).
pub fn gini_counts(counts: &[u64]) -> f64 {
    gini_weighted(counts.iter().map(|&c| (c as f64, 1.0)).collect())
}

/// The Gini coefficient of a population given as (value, weight) groups: `weight` items of
/// value `value` (a weight may be fractional when a group stands for an estimated number
/// of items), so that a catalog of millions of zero-count items costs one group. Groups with
/// a negative or non-finite value or weight are skipped; 0 for no mass.
///
/// Computed as the mean absolute difference over all ordered pairs:
/// G = Σ_g Σ_h w_g·w_h·|v_g − v_h| / (2·W·S), W = Σ w, S = Σ w·v, which for unit weights
/// is the sorted-rank formula of the module docs. After sorting by value, the pairs with
/// h after g add up to Σ_h w_h·(v_h·W_{<h} − S_{<h}), one pass.
pub fn gini_weighted(mut groups: Vec<(f64, f64)>) -> f64 {
    groups.retain(|&(v, w)| v.is_finite() && v >= 0.0 && w.is_finite() && w > 0.0);
    groups.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (mut w_before, mut s_before, mut pairs) = (0.0, 0.0, 0.0);
    for &(v, w) in &groups {
        pairs += w * (v * w_before - s_before);
        w_before += w;
        s_before += w * v;
    }
    if w_before <= 0.0 || s_before <= 0.0 {
        return 0.0;
    }
    (pairs / (w_before * s_before)).clamp(0.0, 1.0)
}

/// The quality measures of one served list.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ListQuality {
    /// Items in the list.
    pub len: usize,
    /// [`intra_list_diversity`]; `None` for fewer than two items.
    pub diversity: Option<f64>,
    /// [`category_entropy`] of the list's tag values, in bits.
    pub category_entropy_bits: f64,
    /// [`novelty`]; `None` for an empty list.
    pub novelty: Option<f64>,
}

impl ListQuality {
    /// Measures a list from its items' vectors, their tag values (flattened), and their
    /// popularity shares (one per item, e.g. from [`smoothed_share`]).
    pub fn measure<V: AsRef<[f32]>, T: Hash + Eq>(
        vectors: &[V],
        tags: impl IntoIterator<Item = T>,
        shares: &[f64],
    ) -> Result<Self, ValidationError> {
        if shares.len() != vectors.len() {
            return crate::invalid!(
                "{} popularity shares for {} items",
                shares.len(),
                vectors.len()
            );
        }
        Ok(Self {
            len: vectors.len(),
            diversity: intra_list_diversity(vectors)?,
            category_entropy_bits: category_entropy(tags),
            novelty: novelty(shares)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn diversity_by_hand() {
        // orthogonal unit vectors: every pair has cos 0 → distance 1, mean 1
        let ortho = [[1.0f32, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
        assert!(close(intra_list_diversity(&ortho).unwrap().unwrap(), 1.0));
        // e1, e1 (scaled), −e1: pairs cos = 1, −1, −1 → distances 0, 2, 2 → mean 4/3
        let v = [vec![1.0f32, 0.0], vec![3.0, 0.0], vec![-1.0, 0.0]];
        assert!(close(intra_list_diversity(&v).unwrap().unwrap(), 4.0 / 3.0));
        // (1,0) and (1,1)/√2-direction: cos = 1/√2 → 1 − 0.70710678…
        let v = [[1.0f32, 0.0], [1.0, 1.0]];
        let d = intra_list_diversity(&v).unwrap().unwrap();
        assert!((d - (1.0 - std::f64::consts::FRAC_1_SQRT_2)).abs() < 1e-7);
        // a zero vector is at distance 1
        assert!(close(
            intra_list_diversity(&[[0.0f32, 0.0], [1.0, 0.0]])
                .unwrap()
                .unwrap(),
            1.0
        ));
        assert_eq!(intra_list_diversity(&[[1.0f32]]).unwrap(), None);
        assert_eq!(intra_list_diversity::<[f32; 1]>(&[]).unwrap(), None);
        assert!(intra_list_diversity(&[vec![1.0f32], vec![1.0, 2.0]]).is_err());
        assert!(intra_list_diversity(&[[f32::NAN], [1.0]]).is_err());
    }

    #[test]
    fn entropy_by_hand() {
        // [a, a, b, b]: p = ½, ½ → −2·½·log₂ ½ = 1 bit
        assert!(close(category_entropy(["a", "a", "b", "b"]), 1.0));
        // one value → 0; four distinct → log₂ 4 = 2
        assert!(close(category_entropy(["a", "a", "a"]), 0.0));
        assert!(close(category_entropy(["a", "b", "c", "d"]), 2.0));
        // [a, a, a, b]: −¾·log₂ ¾ − ¼·log₂ ¼ = 0.311278… + 0.5 = 0.811278124459…
        assert!((category_entropy(["a", "a", "a", "b"]) - 0.811_278_124_459_132_9).abs() < 1e-12);
        assert_eq!(category_entropy(Vec::<&str>::new()), 0.0);
        // Past the linear scan's 16 distinct values: 32 values once each (5 bits), and 64
        // values of which 32 twice, in an order that crosses the switch mid-way.
        assert!(close(category_entropy(0..32), 5.0));
        assert!(close(category_entropy((0..32).chain(0..32)), 5.0));
        assert!(close(category_entropy((0..20).chain([0; 20])), {
            // 0 has 21 of 40, the 19 others 1 each.
            let p0: f64 = 21.0 / 40.0;
            -(p0 * p0.log2()) - 19.0 * (1.0 / 40.0) * (1.0f64 / 40.0).log2()
        }));
        assert_eq!(entropy_bits(&[0, 0]), 0.0);
    }

    #[test]
    fn novelty_by_hand() {
        // shares ½ and ⅛: (1 + 3) / 2 = 2 bits
        assert!(close(novelty(&[0.5, 0.125]).unwrap().unwrap(), 2.0));
        assert_eq!(novelty(&[]).unwrap(), None);
        assert!(novelty(&[0.0]).is_err());
        assert!(novelty(&[1.5]).is_err());
        assert!(novelty(&[f64::NAN]).is_err());
        // (0 + 1) / (6 + 2) = ⅛ → 3 bits for a never-seen item
        assert!(close(smoothed_share(0, 6, 2), 0.125));
        assert_eq!(smoothed_share(10, 0, 0), 1.0);
    }

    #[test]
    fn gini_by_hand() {
        // [0, 0, 0, 10]: Σ i·xᵢ = 4·10 = 40 → 2·40/(4·10) − 5/4 = 0.75
        assert!(close(gini(&[0.0, 0.0, 0.0, 10.0]).unwrap(), 0.75));
        assert!(close(gini_counts(&[10, 0, 0, 0]), 0.75));
        // equal values → 0; [1, 2, 3]: Σ|xᵢ−xⱼ| over ordered pairs = 8, 8/(2·9·2) = 2/9
        assert!(close(gini(&[5.0, 5.0]).unwrap(), 0.0));
        assert!(close(gini(&[3.0, 1.0, 2.0]).unwrap(), 2.0 / 9.0));
        assert_eq!(gini(&[]).unwrap(), 0.0);
        assert_eq!(gini_counts(&[0, 0]), 0.0);
        assert!(gini(&[-1.0]).is_err());
        // grouped = expanded: 999 998 zeros and two items with 5 and 15
        let grouped = gini_weighted(vec![(15.0, 1.0), (0.0, 999_998.0), (5.0, 1.0)]);
        let mut expanded = vec![0u64; 999_998];
        expanded.extend([5, 15]);
        assert!((grouped - gini_counts(&expanded)).abs() < 1e-9);
        // equal-value groups merge: [0×3, 10×1] as weights → 0.75
        assert!(close(gini_weighted(vec![(0.0, 3.0), (10.0, 1.0)]), 0.75));
        // fractional weights: 1½ items of value 0 and ½ of value 2 (the shape of
        // [0, 0, 0, 2]): pairs ½·(2·1½ − 0) = 1.5, W·S = 2·1 → 0.75
        assert!(close(gini_weighted(vec![(2.0, 0.5), (0.0, 1.5)]), 0.75));
        assert_eq!(gini_weighted(vec![(f64::NAN, 1.0), (1.0, -1.0)]), 0.0);
    }

    #[test]
    fn list_quality_combines_the_measures() {
        let q = ListQuality::measure(
            &[[1.0f32, 0.0], [0.0, 1.0]],
            ["drama", "comedy"],
            &[0.5, 0.125],
        )
        .unwrap();
        assert_eq!(q.len, 2);
        assert!(close(q.diversity.unwrap(), 1.0));
        assert!(close(q.category_entropy_bits, 1.0));
        assert!(close(q.novelty.unwrap(), 2.0));
        assert!(ListQuality::measure(&[[1.0f32]], ["x"], &[]).is_err());
    }
}
