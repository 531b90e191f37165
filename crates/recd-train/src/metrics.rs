//! Offline top-k metrics: precision, recall, NDCG, MAP, hit rate, coverage, diversity, novelty.
//!
//! Definitions (binary relevance; `rel` = the user's relevant test items, `hits` = items of
//! the first `k` recommendations that are in `rel`; per-user values are averaged over the
//! evaluated users, i.e. macro averages):
//! - precision@k = hits / k (a list shorter than k still divides by k);
//! - recall@k = hits / |rel|;
//! - NDCG@k = DCG / IDCG with gain 1/log2(rank + 1) (rank from 1) and IDCG over
//!   min(|rel|, k) hits: the same as `implicit.evaluation.ranking_metrics_at_k`;
//! - MAP@k = Σ_{hit at rank r} (hits up to r / r) / min(|rel|, k): also as in `implicit`;
//! - hit rate@k = share of users with at least one hit;
//! - catalog coverage = distinct items recommended to any evaluated user / catalog size;
//! - intra-list diversity = 1 − mean pairwise cosine similarity of the recommended items,
//!   measured with an [`ItemSimilarity`] (item vectors, or binary sets such as genres);
//! - novelty = mean over recommended items of −log2(share of train users who interacted
//!   with the item) (Zhou et al. 2010); an item no train user has seen counts as seen by one.
//!
//! `implicit`'s "precision" is not precision@k: it is Σ hits / Σ min(|rel|, k) over users
//! (a micro-averaged, capped recall). [`MetricsAccumulator::implicit_precision`] computes it
//! so that figures can be compared with `implicit`'s directly.

use serde::{Deserialize, Serialize};

/// The metric set of API.md's `recd eval --json` (`M`), plus how many users it averages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// precision@k.
    pub precision: f64,
    /// recall@k.
    pub recall: f64,
    /// NDCG@k.
    pub ndcg: f64,
    /// MAP@k.
    pub map: f64,
    /// Hit rate@k.
    pub hit_rate: f64,
    /// Catalog coverage.
    pub coverage: f64,
    /// Intra-list diversity.
    pub diversity: f64,
    /// Novelty in bits.
    pub novelty: f64,
    /// Users evaluated.
    pub users: usize,
}

fn is_hit(relevant: &[u32], item: u32) -> bool {
    relevant.binary_search(&item).is_ok()
}

fn hits_at_k(recs: &[u32], relevant: &[u32], k: usize) -> usize {
    recs.iter()
        .take(k)
        .filter(|&&i| is_hit(relevant, i))
        .count()
}

/// precision@k. `relevant` must be sorted.
pub fn precision_at_k(recs: &[u32], relevant: &[u32], k: usize) -> f64 {
    if k == 0 {
        return 0.0;
    }
    hits_at_k(recs, relevant, k) as f64 / k as f64
}

/// recall@k = hits / |relevant|. `relevant` must be sorted.
pub fn recall_at_k(recs: &[u32], relevant: &[u32], k: usize) -> f64 {
    if relevant.is_empty() {
        return 0.0;
    }
    hits_at_k(recs, relevant, k) as f64 / relevant.len() as f64
}

/// Discount of (0-based) position `pos`: 1 / log2(pos + 2).
fn discount(pos: usize) -> f64 {
    1.0 / ((pos + 2) as f64).log2()
}

/// NDCG@k with binary gains; IDCG over min(|relevant|, k). `relevant` must be sorted.
pub fn ndcg_at_k(recs: &[u32], relevant: &[u32], k: usize) -> f64 {
    let ideal = relevant.len().min(k);
    if ideal == 0 {
        return 0.0;
    }
    let dcg: f64 = recs
        .iter()
        .take(k)
        .enumerate()
        .filter(|&(_, &i)| is_hit(relevant, i))
        .map(|(pos, _)| discount(pos))
        .sum();
    let idcg: f64 = (0..ideal).map(discount).sum();
    dcg / idcg
}

/// Average precision@k, normalised by min(|relevant|, k). `relevant` must be sorted.
pub fn average_precision_at_k(recs: &[u32], relevant: &[u32], k: usize) -> f64 {
    let norm = relevant.len().min(k);
    if norm == 0 {
        return 0.0;
    }
    let mut hits = 0usize;
    let mut sum = 0.0;
    for (pos, &i) in recs.iter().take(k).enumerate() {
        if is_hit(relevant, i) {
            hits += 1;
            sum += hits as f64 / (pos + 1) as f64;
        }
    }
    sum / norm as f64
}

/// 1 when any of the first k recommendations is relevant.
pub fn hit_at_k(recs: &[u32], relevant: &[u32], k: usize) -> f64 {
    if hits_at_k(recs, relevant, k) > 0 {
        1.0
    } else {
        0.0
    }
}

/// How two items' similarity is measured for intra-list diversity.
#[derive(Debug, Clone)]
pub enum ItemSimilarity {
    /// Cosine of item vectors (e.g. ALS item factors), row-major `n_items × dim`.
    Vectors {
        /// Vector length.
        dim: usize,
        /// Unit-normalised vectors (zero vectors stay zero).
        unit: Vec<f32>,
    },
    /// Cosine of binary sets (e.g. genres): |A ∩ B| / sqrt(|A| |B|). Each set sorted.
    Sets(Vec<Vec<u32>>),
}

impl ItemSimilarity {
    /// From raw (not necessarily normalised) row-major vectors.
    pub fn from_vectors(dim: usize, vectors: &[f32]) -> Self {
        let mut unit = vectors.to_vec();
        if dim > 0 {
            for row in unit.chunks_exact_mut(dim) {
                let n = row.iter().map(|x| x * x).sum::<f32>().sqrt();
                if n > 0.0 {
                    row.iter_mut().for_each(|x| *x /= n);
                }
            }
        }
        Self::Vectors { dim, unit }
    }

    /// From sets of labels per item (sorted and deduplicated here).
    pub fn from_sets(mut sets: Vec<Vec<u32>>) -> Self {
        for s in &mut sets {
            s.sort_unstable();
            s.dedup();
        }
        Self::Sets(sets)
    }

    /// Cosine similarity of items `a` and `b`; 0 for unknown items or empty sets.
    pub fn similarity(&self, a: u32, b: u32) -> f64 {
        match self {
            ItemSimilarity::Vectors { dim, unit } => {
                let (a, b) = (a as usize * dim, b as usize * dim);
                match (unit.get(a..a + dim), unit.get(b..b + dim)) {
                    (Some(x), Some(y)) => x.iter().zip(y).map(|(p, q)| p * q).sum::<f32>() as f64,
                    _ => 0.0,
                }
            }
            ItemSimilarity::Sets(sets) => match (sets.get(a as usize), sets.get(b as usize)) {
                (Some(x), Some(y)) if !x.is_empty() && !y.is_empty() => {
                    let common = x.iter().filter(|v| y.binary_search(v).is_ok()).count();
                    common as f64 / ((x.len() * y.len()) as f64).sqrt()
                }
                _ => 0.0,
            },
        }
    }
}

/// 1 − mean pairwise similarity of the list; `None` for lists of fewer than two items.
pub fn intra_list_diversity(recs: &[u32], sim: &ItemSimilarity) -> Option<f64> {
    if recs.len() < 2 {
        return None;
    }
    let mut sum = 0.0;
    let mut pairs = 0usize;
    for (x, &a) in recs.iter().enumerate() {
        for &b in &recs[x + 1..] {
            sum += sim.similarity(a, b);
            pairs += 1;
        }
    }
    Some(1.0 - sum / pairs as f64)
}

/// Mean self-information −log2(users(i) / n_users) of the list; `None` for an empty list.
/// `item_users[i]` = train users who interacted with item i (0 counts as 1).
pub fn novelty(recs: &[u32], item_users: &[u32], n_users: usize) -> Option<f64> {
    if recs.is_empty() || n_users == 0 {
        return None;
    }
    let n = n_users as f64;
    let sum: f64 = recs
        .iter()
        .map(|&i| {
            let c = item_users.get(i as usize).copied().unwrap_or(0).max(1) as f64;
            -(c / n).min(1.0).log2()
        })
        .sum();
    Some(sum / recs.len() as f64)
}

/// Catalog coverage: distinct recommended items / catalog size.
pub fn catalog_coverage(distinct_recommended: usize, catalog: usize) -> f64 {
    if catalog == 0 {
        return 0.0;
    }
    distinct_recommended as f64 / catalog as f64
}

/// Accumulates per-user metrics into a [`Metrics`].
#[derive(Debug, Clone)]
pub struct MetricsAccumulator {
    k: usize,
    users: usize,
    precision: f64,
    recall: f64,
    ndcg: f64,
    map: f64,
    hits: f64,
    diversity: f64,
    diversity_lists: usize,
    novelty: f64,
    novelty_lists: usize,
    recommended: Vec<bool>,
    total_hits: usize,
    capped_relevant: usize,
}

impl MetricsAccumulator {
    /// For top-`k` lists over a catalog of `n_items`.
    pub fn new(k: usize, n_items: usize) -> Self {
        Self {
            k,
            users: 0,
            precision: 0.0,
            recall: 0.0,
            ndcg: 0.0,
            map: 0.0,
            hits: 0.0,
            diversity: 0.0,
            diversity_lists: 0,
            novelty: 0.0,
            novelty_lists: 0,
            recommended: vec![false; n_items],
            total_hits: 0,
            capped_relevant: 0,
        }
    }

    /// Add one user's list. `relevant` must be sorted and non-empty to count; `sim` and
    /// `item_users`/`n_train_users` feed diversity and novelty.
    pub fn add(
        &mut self,
        recs: &[u32],
        relevant: &[u32],
        sim: Option<&ItemSimilarity>,
        item_users: &[u32],
        n_train_users: usize,
    ) {
        if relevant.is_empty() {
            return;
        }
        let k = self.k;
        let recs = &recs[..recs.len().min(k)];
        self.users += 1;
        self.precision += precision_at_k(recs, relevant, k);
        self.recall += recall_at_k(recs, relevant, k);
        self.ndcg += ndcg_at_k(recs, relevant, k);
        self.map += average_precision_at_k(recs, relevant, k);
        self.hits += hit_at_k(recs, relevant, k);
        self.total_hits += hits_at_k(recs, relevant, k);
        self.capped_relevant += relevant.len().min(k);
        if let Some(d) = sim.and_then(|s| intra_list_diversity(recs, s)) {
            self.diversity += d;
            self.diversity_lists += 1;
        }
        if let Some(n) = novelty(recs, item_users, n_train_users) {
            self.novelty += n;
            self.novelty_lists += 1;
        }
        for &i in recs {
            if let Some(slot) = self.recommended.get_mut(i as usize) {
                *slot = true;
            }
        }
    }

    /// Merge another accumulator (from a parallel worker) into this one.
    pub fn merge(&mut self, other: &MetricsAccumulator) {
        self.users += other.users;
        self.precision += other.precision;
        self.recall += other.recall;
        self.ndcg += other.ndcg;
        self.map += other.map;
        self.hits += other.hits;
        self.diversity += other.diversity;
        self.diversity_lists += other.diversity_lists;
        self.novelty += other.novelty;
        self.novelty_lists += other.novelty_lists;
        self.total_hits += other.total_hits;
        self.capped_relevant += other.capped_relevant;
        for (a, &b) in self.recommended.iter_mut().zip(&other.recommended) {
            *a |= b;
        }
    }

    /// `implicit`'s "precision": Σ hits / Σ min(|rel|, k).
    pub fn implicit_precision(&self) -> f64 {
        if self.capped_relevant == 0 {
            return 0.0;
        }
        self.total_hits as f64 / self.capped_relevant as f64
    }

    /// The averages.
    pub fn finish(&self) -> Metrics {
        let per_user = |s: f64| {
            if self.users == 0 {
                0.0
            } else {
                s / self.users as f64
            }
        };
        let mean = |s: f64, n: usize| if n == 0 { 0.0 } else { s / n as f64 };
        Metrics {
            precision: per_user(self.precision),
            recall: per_user(self.recall),
            ndcg: per_user(self.ndcg),
            map: per_user(self.map),
            hit_rate: per_user(self.hits),
            coverage: catalog_coverage(
                self.recommended.iter().filter(|&&b| b).count(),
                self.recommended.len(),
            ),
            diversity: mean(self.diversity, self.diversity_lists),
            novelty: mean(self.novelty, self.novelty_lists),
            users: self.users,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EPS: f64 = 1e-9;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-6
    }

    // recs 1..=5, relevant {2, 5, 9}: hits at ranks 2 and 5.
    const RECS: [u32; 5] = [1, 2, 3, 4, 5];
    const REL: [u32; 3] = [2, 5, 9];

    #[test]
    fn precision_and_recall_by_hand() {
        assert!((precision_at_k(&RECS, &REL, 5) - 0.4).abs() < EPS); // 2 / 5
        assert!((recall_at_k(&RECS, &REL, 5) - 2.0 / 3.0).abs() < EPS); // 2 / 3
        assert!((precision_at_k(&RECS, &REL, 2) - 0.5).abs() < EPS); // 1 / 2
        assert!((recall_at_k(&RECS, &REL, 2) - 1.0 / 3.0).abs() < EPS);
        assert_eq!(precision_at_k(&RECS, &REL, 1), 0.0);
        // a short list still divides by k
        assert!((precision_at_k(&[2], &REL, 10) - 0.1).abs() < EPS);
    }

    #[test]
    fn ndcg_by_hand() {
        // DCG = 1/log2(3) + 1/log2(6) = 0.6309298 + 0.3868528 = 1.0177826
        // IDCG (3 relevant, k = 5) = 1 + 0.6309298 + 0.5 = 2.1309298
        assert!(close(ndcg_at_k(&RECS, &REL, 5), 1.0177826 / 2.1309298));
        assert!(close(ndcg_at_k(&RECS, &REL, 5), 0.4776244));
        // k = 2: DCG = 0.6309298, IDCG over min(3, 2) = 1.6309298
        assert!(close(ndcg_at_k(&RECS, &REL, 2), 0.6309298 / 1.6309298));
        // perfect list
        assert!(close(ndcg_at_k(&[9, 2, 5], &REL, 3), 1.0));
        assert_eq!(ndcg_at_k(&RECS, &[], 5), 0.0);
    }

    #[test]
    fn map_by_hand() {
        // hits at ranks 2 and 5: (1/2 + 2/5) / min(3, 5) = 0.9 / 3 = 0.3
        assert!(close(average_precision_at_k(&RECS, &REL, 5), 0.3));
        // k = 2: (1/2) / min(3, 2) = 0.25
        assert!(close(average_precision_at_k(&RECS, &REL, 2), 0.25));
        assert!(close(average_precision_at_k(&[2, 5, 9], &REL, 3), 1.0));
    }

    #[test]
    fn hit_rate_by_hand() {
        assert_eq!(hit_at_k(&RECS, &REL, 5), 1.0);
        assert_eq!(hit_at_k(&RECS, &REL, 1), 0.0);
    }

    #[test]
    fn diversity_on_genre_sets_by_hand() {
        // a = {1, 2}, b = {1}, c = {3}: cos(a,b) = 1/√2, cos(a,c) = cos(b,c) = 0
        // ILD = 1 − (0.7071068 / 3) = 0.7642977
        let sim = ItemSimilarity::from_sets(vec![vec![2, 1], vec![1], vec![3]]);
        assert!(close(
            intra_list_diversity(&[0, 1, 2], &sim).unwrap_or(f64::NAN),
            0.7642977
        ));
        assert_eq!(intra_list_diversity(&[0], &sim), None);
    }

    #[test]
    fn diversity_on_vectors_by_hand() {
        // (1,0), (2,0), (0,3): cosines 1, 0, 0 → ILD = 1 − 1/3
        let sim = ItemSimilarity::from_vectors(2, &[1.0, 0.0, 2.0, 0.0, 0.0, 3.0]);
        assert!(close(
            intra_list_diversity(&[0, 1, 2], &sim).unwrap_or(f64::NAN),
            2.0 / 3.0
        ));
    }

    #[test]
    fn novelty_by_hand() {
        // 8 train users; item 0 seen by 8, item 1 by 2, item 2 by 1, item 3 by none
        // −log2(8/8) = 0, −log2(2/8) = 2, −log2(1/8) = 3 → mean 5/3
        let counts = [8, 2, 1, 0];
        assert!(close(
            novelty(&[0, 1, 2], &counts, 8).unwrap_or(f64::NAN),
            5.0 / 3.0
        ));
        // unseen item counts as seen by one user: 3 bits
        assert!(close(novelty(&[3], &counts, 8).unwrap_or(f64::NAN), 3.0));
        assert_eq!(novelty(&[], &counts, 8), None);
    }

    #[test]
    fn accumulator_averages_over_users_and_counts_coverage() {
        let mut acc = MetricsAccumulator::new(2, 10);
        let counts = [1u32; 10];
        // user A: recs [1, 2], rel {2}: p = 0.5, r = 1, ndcg = 0.6309298, ap = 0.5, hit
        acc.add(&[1, 2, 7], &[2], None, &counts, 1);
        // user B: recs [3, 4], rel {5, 6}: all zero
        let mut other = MetricsAccumulator::new(2, 10);
        other.add(&[3, 4], &[5, 6], None, &counts, 1);
        // a user without relevant items is not evaluated
        other.add(&[8, 9], &[], None, &counts, 1);
        acc.merge(&other);
        let m = acc.finish();
        assert_eq!(m.users, 2);
        assert!(close(m.precision, 0.25));
        assert!(close(m.recall, 0.5));
        assert!(close(m.ndcg, 0.6309298 / 2.0));
        assert!(close(m.map, 0.25));
        assert!(close(m.hit_rate, 0.5));
        // items 1, 2, 3, 4 of 10 (7 was beyond k)
        assert!(close(m.coverage, 0.4));
        // implicit's precision: 1 hit / (min(1,2) + min(2,2)) = 1/3
        assert!(close(acc.implicit_precision(), 1.0 / 3.0));
    }
}
