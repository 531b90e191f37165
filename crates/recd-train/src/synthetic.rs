//! Deterministic synthetic implicit feedback at any size, for scaling benchmarks of ALS where
//! no public dataset of the wanted size is at hand (the repository holds only MovieLens
//! latest-small, 100k ratings).
//!
//! The shape follows what real interaction logs show: user activity and item popularity are
//! both power laws (a few heavy users and blockbuster items, long tails of both), and taste
//! has structure a factorisation can find: items fall into `clusters` genres, each user
//! prefers one genre and draws most of their items from it (by the genre's own popularity
//! law), the rest from the whole catalogue. Repeated (user, item) draws are summed, as
//! repeat purchases would be.
//!
//! The same [`PowerLawSpec`] always gives the same matrix (a seeded xoshiro stream, one
//! thread), so a benchmark at 20M interactions can be re-run and compared with a peer fed
//! the same matrix.

use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};

use crate::dataset::Csr;

/// Size and shape of a synthetic interaction matrix.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PowerLawSpec {
    /// Distinct (user, item) pairs to store (draws go on until there are this many).
    pub interactions: usize,
    /// Users (rows).
    pub users: usize,
    /// Items (columns).
    pub items: usize,
    /// Genres; each user prefers one.
    pub clusters: usize,
    /// Share of a user's draws from their preferred genre.
    pub in_genre: f64,
    /// Exponent of user activity (`P(user r) ∝ (r + 1)^-s`).
    pub user_exponent: f64,
    /// Exponent of item popularity, globally and within a genre.
    pub item_exponent: f64,
    /// Seed of the stream.
    pub seed: u64,
}

impl PowerLawSpec {
    /// The default shape for `interactions` stored pairs: 50 per user and 200 per item on
    /// average (MovieLens-20M has 145 and 740; a shop has fewer per user), genres of ~200
    /// items (10 to 500 of them), 75 % of a user's draws in their genre, exponents 0.5
    /// (users: the heaviest of 20,000 users makes ~0.35 % of the draws) and 1.0 (items).
    pub fn scaled(interactions: usize, seed: u64) -> Self {
        let items = (interactions / 200).max(500);
        Self {
            interactions,
            users: (interactions / 50).max(1_000),
            items,
            clusters: (items / 200).clamp(10, 500),
            in_genre: 0.75,
            user_exponent: 0.5,
            item_exponent: 1.0,
            seed,
        }
    }

    /// The matrix (`users × items`): draws are made until `interactions` distinct pairs are
    /// stored (or the matrix is full); each draw adds 1.0 to its pair, so repeats sum.
    pub fn generate(&self) -> Csr {
        let users = self.users.max(1);
        let items = self.items.max(1);
        let clusters = self.clusters.clamp(1, items);
        let target = self.interactions.min(users.saturating_mul(items));
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(self.seed);
        let user_law = Cumulative::power_law(users, self.user_exponent);
        let item_law = Cumulative::power_law(items, self.item_exponent);
        // Genre g holds items g, g + clusters, g + 2·clusters, …: its most popular members
        // are among the catalogue's most popular, as a genre's hits are.
        let genre_law = Cumulative::power_law(items.div_ceil(clusters), self.item_exponent);
        // A user's genre: a fixed scramble of the user index, so that heavy users (low
        // indices) spread over genres.
        let genre_of = |u: usize| (u.wrapping_mul(0x9E37_79B9) >> 7) % clusters;
        let draw = |rng: &mut Xoshiro256PlusPlus| {
            let u = user_law.draw(rng.random());
            let i = if rng.random_bool(self.in_genre) {
                let g = genre_of(u);
                let members = (items - g).div_ceil(clusters);
                let r = genre_law.draw_below(rng.random(), members);
                g + r * clusters
            } else {
                item_law.draw(rng.random())
            };
            // Both < u32::MAX: `users` and `items` are counts of a matrix that fits memory.
            (u as u32, i as u32, 1.0f32)
        };
        let mut draws: Vec<(u32, u32, f32)> = Vec::with_capacity(target + target / 3);
        let mut m = Csr::from_triplets(users, items, Vec::new());
        // Rounds of draws until enough distinct pairs: each round draws what is missing plus
        // a quarter (repeats) plus 0.5 % of the target (so that the last rounds are not
        // tiny: the result overshoots by at most about that much).
        while m.nnz() < target {
            let missing = target - m.nnz();
            let round = missing + missing / 4 + target / 200 + 1;
            draws.extend((0..round).map(|_| draw(&mut rng)));
            m = Csr::from_triplets(users, items, draws.iter().copied());
            // A spec whose laws cannot reach the target (nearly all mass on a few pairs)
            // stops instead of drawing for ever.
            if draws.len() > target.saturating_mul(64) {
                break;
            }
        }
        m
    }
}

/// A discrete power law as a cumulative table: `draw` maps a uniform `[0, 1)` to a rank.
struct Cumulative {
    cdf: Vec<f64>,
}

impl Cumulative {
    fn power_law(n: usize, exponent: f64) -> Self {
        let mut total = 0.0;
        let cdf = (0..n)
            .map(|r| {
                total += ((r + 1) as f64).powf(-exponent);
                total
            })
            .collect();
        Self { cdf }
    }

    fn draw(&self, u: f64) -> usize {
        self.draw_below(u, self.cdf.len())
    }

    /// A rank below `n` (the law restricted to its first `n` ranks).
    fn draw_below(&self, u: f64, n: usize) -> usize {
        let n = n.clamp(1, self.cdf.len());
        let target = u * self.cdf[n - 1];
        self.cdf[..n].partition_point(|&c| c <= target).min(n - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> PowerLawSpec {
        PowerLawSpec::scaled(200_000, 7)
    }

    #[test]
    fn the_same_spec_gives_the_same_matrix_and_another_seed_another() {
        let a = small().generate();
        assert_eq!(a, small().generate());
        let other = PowerLawSpec { seed: 8, ..small() }.generate();
        assert_ne!(a, other);
    }

    #[test]
    fn the_matrix_holds_the_pairs_asked_for_and_repeats_are_summed() {
        let spec = small();
        let m = spec.generate();
        assert_eq!((m.rows, m.cols), (spec.users, spec.items));
        assert!(m.nnz() >= spec.interactions && m.nnz() < spec.interactions * 11 / 10);
        let total: f64 = m.data.iter().map(|&v| f64::from(v)).sum();
        assert!(total as usize > m.nnz(), "a power law repeats pairs");
        assert!(m.data.iter().any(|&v| v > 1.0));
    }

    #[test]
    fn activity_and_popularity_are_heavy_tailed() {
        let spec = small();
        let m = spec.generate();
        let mut per_item = vec![0f64; m.cols];
        for (&c, &v) in m.indices.iter().zip(&m.data) {
            per_item[c as usize] += f64::from(v);
        }
        let per_user: Vec<f64> = (0..m.rows)
            .map(|r| m.row(r).1.iter().map(|&v| f64::from(v)).sum())
            .collect();
        let top_share = |mut v: Vec<f64>| {
            v.sort_by(|a, b| b.total_cmp(a));
            let top = v.len() / 100;
            v[..top].iter().sum::<f64>() / v.iter().sum::<f64>()
        };
        // Uniform draws would give the top 1 % about 1 % of the mass.
        let (items, users) = (top_share(per_item), top_share(per_user));
        assert!(items > 0.08 && users > 0.08, "items {items}, users {users}");
    }

    #[test]
    fn users_mostly_stay_in_their_genre() {
        let spec = small();
        let m = spec.generate();
        let clusters = spec.clusters;
        // The share of each user's draws falling in their most frequent genre.
        let (mut in_top, mut all) = (0.0, 0.0);
        for r in 0..m.rows {
            let mut genres = vec![0f64; clusters];
            let (cols, vals) = m.row(r);
            for (&c, &v) in cols.iter().zip(vals) {
                genres[c as usize % clusters] += f64::from(v);
            }
            in_top += genres.iter().copied().fold(0.0, f64::max);
            all += genres.iter().sum::<f64>();
        }
        assert!(in_top / all > 0.6, "{}", in_top / all);
    }
}
