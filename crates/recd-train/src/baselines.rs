//! Baselines: popularity and item-kNN.
//!
//! - [`Popularity`]: items ranked by the number of distinct train users who interacted
//!   with them (ties: lower index first). The same list for everyone.
//! - [`ItemKnn`]: cosine similarity on the binary item × user co-occurrence matrix,
//!   `sim(i, j) = |U_i ∩ U_j| / sqrt(|U_i| |U_j|)`, keeping each item's `neighbours`
//!   most similar items (100 by default); a user's score for item `i` is the sum of
//!   `sim(j, i)` over the user's train items `j` that have `i` as a neighbour.

use std::time::Instant;

use rayon::prelude::*;

use crate::dataset::{Csr, Interactions};
use crate::rank::{top_k, top_k_iter};
use crate::recommender::Recommender;

/// Most popular items first.
#[derive(Debug, Clone)]
pub struct Popularity {
    /// Distinct train users per item.
    pub counts: Vec<u32>,
    /// Items by decreasing count.
    order: Vec<u32>,
}

impl Popularity {
    /// Count distinct users per item in `train`.
    pub fn fit(train: &Interactions) -> Self {
        Self::from_counts(train.item_user_counts())
    }

    /// From per-item counts.
    pub fn from_counts(counts: Vec<u32>) -> Self {
        let mut order: Vec<u32> = (0..counts.len() as u32).collect();
        order.sort_by_key(|&i| (std::cmp::Reverse(counts[i as usize]), i));
        Self { counts, order }
    }

    /// The `k` most popular items not in the sorted `exclude`.
    pub fn top(&self, k: usize, exclude: &[u32]) -> Vec<u32> {
        self.order
            .iter()
            .copied()
            .filter(|i| exclude.binary_search(i).is_err())
            .take(k)
            .collect()
    }
}

impl Recommender for Popularity {
    fn recommend(&self, _user: u32, k: usize, exclude: &[u32]) -> Vec<u32> {
        self.top(k, exclude)
    }
}

/// Item-based kNN on binary co-occurrence cosine.
#[derive(Debug, Clone)]
pub struct ItemKnn {
    /// Row `i`: the neighbours of item `i` (by item index) with their similarity.
    pub neighbours: Csr,
    /// The train items of each user (binary).
    user_items: Csr,
    /// Seconds `fit` took.
    pub train_seconds: f64,
}

impl ItemKnn {
    /// Build the neighbour lists from `train`, `neighbours` per item.
    pub fn fit(train: &Interactions, neighbours: usize) -> Self {
        let start = Instant::now();
        let user_items = train.user_item_matrix().map_values(|_| 1.0);
        let item_users = user_items.transpose();
        let n_items = item_users.rows;
        let lists: Vec<Vec<(u32, f32)>> = (0..n_items)
            .into_par_iter()
            .map_init(
                || (vec![0u32; n_items], Vec::<u32>::new()),
                |(counts, touched), i| {
                    let (users, _) = item_users.row(i);
                    if users.is_empty() {
                        return Vec::new();
                    }
                    for &u in users {
                        for &j in user_items.row(u as usize).0 {
                            if counts[j as usize] == 0 {
                                touched.push(j);
                            }
                            counts[j as usize] += 1;
                        }
                    }
                    let ni = users.len() as f32;
                    let cands = touched.iter().filter(|&&j| j as usize != i).map(|&j| {
                        let nj = (item_users.indptr[j as usize + 1] - item_users.indptr[j as usize])
                            as f32;
                        (j, counts[j as usize] as f32 / (ni * nj).sqrt())
                    });
                    let best = top_k_iter(cands, neighbours, &[]);
                    for &j in touched.iter() {
                        counts[j as usize] = 0;
                    }
                    touched.clear();
                    best
                },
            )
            .collect();
        let triplets = lists
            .iter()
            .enumerate()
            .flat_map(|(i, l)| l.iter().map(move |&(j, s)| (i as u32, j, s)));
        let neighbours = Csr::from_triplets(n_items, n_items, triplets);
        Self {
            neighbours,
            user_items,
            train_seconds: start.elapsed().as_secs_f64(),
        }
    }

    /// Scores of every item for a set of items a user interacted with.
    pub fn scores_for(&self, items: &[u32]) -> Vec<f32> {
        let mut scores = vec![0f32; self.neighbours.rows];
        for &j in items {
            if (j as usize) < self.neighbours.rows {
                let (nb, sims) = self.neighbours.row(j as usize);
                for (&i, &s) in nb.iter().zip(sims) {
                    scores[i as usize] += s;
                }
            }
        }
        scores
    }
}

impl Recommender for ItemKnn {
    fn recommend(&self, user: u32, k: usize, exclude: &[u32]) -> Vec<u32> {
        if user as usize >= self.user_items.rows {
            return Vec::new();
        }
        let scores = self.scores_for(self.user_items.row(user as usize).0);
        top_k(&scores, k, exclude)
            .into_iter()
            .filter(|&(_, s)| s > 0.0)
            .map(|(i, _)| i)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // users: u0 {0,1}, u1 {0,1,2}, u2 {2,3}, u3 {0}
    fn data() -> Interactions {
        Interactions::from_indices(
            4,
            5,
            &[
                (0, 0, 1.0, 0),
                (0, 1, 1.0, 0),
                (1, 0, 1.0, 0),
                (1, 1, 2.0, 0),
                (1, 2, 1.0, 0),
                (2, 2, 1.0, 0),
                (2, 3, 1.0, 0),
                (3, 0, 1.0, 0),
            ],
        )
    }

    #[test]
    fn popularity_counts_distinct_users() {
        let p = Popularity::fit(&data());
        assert_eq!(p.counts, vec![3, 2, 2, 1, 0]);
        assert_eq!(p.recommend(0, 3, &[]), vec![0, 1, 2]);
        assert_eq!(p.recommend(0, 3, &[0, 1]), vec![2, 3, 4]);
    }

    #[test]
    fn knn_cosine_by_hand() {
        let knn = ItemKnn::fit(&data(), 10);
        // |U0| = 3, |U1| = 2, |U2| = 2, |U3| = 1
        // sim(0,1) = 2/√6, sim(0,2) = 1/√6, sim(1,2) = 1/2, sim(2,3) = 1/√2
        let (nb, s) = knn.neighbours.row(0);
        let get = |nb: &[u32], s: &[f32], j: u32| nb.iter().position(|&x| x == j).map(|p| s[p]);
        assert!((get(nb, s, 1).unwrap_or(0.0) - 2.0 / 6f32.sqrt()).abs() < 1e-6);
        assert!((get(nb, s, 2).unwrap_or(0.0) - 1.0 / 6f32.sqrt()).abs() < 1e-6);
        assert_eq!(get(nb, s, 3), None);
        let (nb, s) = knn.neighbours.row(2);
        assert!((get(nb, s, 3).unwrap_or(0.0) - 1.0 / 2f32.sqrt()).abs() < 1e-6);
        assert!((get(nb, s, 1).unwrap_or(0.0) - 0.5).abs() < 1e-6);
        // u3 has {0}: scores 1 → 0.816, 2 → 0.408; excluding its own item
        assert_eq!(knn.recommend(3, 5, &[0]), vec![1, 2]);
        // u0 has {0,1}: item 2 = 1/√6 + 1/2, item 3 = 0 → only item 2
        assert_eq!(knn.recommend(0, 5, &[0, 1]), vec![2]);
    }

    #[test]
    fn knn_keeps_only_top_neighbours() {
        let knn = ItemKnn::fit(&data(), 1);
        assert_eq!(knn.neighbours.row(0).0, &[1]);
        assert_eq!(knn.neighbours.row(4).0.len(), 0);
    }
}
