//! Deterministic synthetic shop sessions: purchase-style evidence beside MovieLens's ratings.
//!
//! Ratings data is dense and repeat-free; a shop's log is neither. This generator writes the
//! shape such logs have, from a seed (no data is committed, the generator is):
//! - **Sessions.** A user's visits (power-law count per user) each browse one category —
//!   mostly one of the user's two favourites, otherwise one in season — viewing a few items,
//!   putting some in the cart and buying some of those.
//! - **Popularity.** Items within a category follow a power law; a new item draws extra
//!   attention for its first two weeks.
//! - **New items.** A quarter of the catalogue launches during the period, at a uniform day;
//!   nothing is seen before its launch.
//! - **Seasonality.** Each category's weight follows a yearly sine with its own phase.
//! - **Repeat purchases.** The first tenth of the categories are consumables: a user who
//!   bought one re-buys it (a view then a purchase) on a later visit once its period (two to
//!   five weeks, per item) has passed, with probability 0.7.
//!
//! Events come out in time order as [`Interaction`]s (`view`, `add_to_cart`, `purchase`),
//! user ids `c<n>`, item ids `p<n>`; `examples/shop_sessions.rs` writes them as CSV for
//! `recd eval --interactions`.

use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use recd_core::EventType;

use crate::dataset::Interaction;

/// 2026-01-01T00:00:00Z in epoch milliseconds: where the generated period starts.
const START_MS: i64 = 1_767_225_600_000;
const DAY_MS: i64 = 86_400_000;

/// Size and shape of the generated shop.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShopSpec {
    /// Customers.
    pub users: usize,
    /// Products.
    pub items: usize,
    /// Product categories; the first tenth are consumables (re-bought).
    pub categories: usize,
    /// Length of the period in days.
    pub days: u32,
    /// Mean visits per customer (the count is power-law distributed around it).
    pub mean_sessions: f64,
    /// Seed of the stream.
    pub seed: u64,
}

impl Default for ShopSpec {
    /// 6,000 customers and 4,000 products in 40 categories over 180 days, 6 visits per
    /// customer on average: about 150k events, MovieLens latest-small's order of size.
    fn default() -> Self {
        Self {
            users: 6_000,
            items: 4_000,
            categories: 40,
            days: 180,
            mean_sessions: 6.0,
            seed: 1,
        }
    }
}

struct Item {
    category: usize,
    launch_day: u32,
    /// Days between two purchases of a consumable by one customer.
    period_days: u32,
    /// Power-law weight within its category.
    weight: f64,
}

impl ShopSpec {
    /// The category of product `p{item}` (its content: `recd eval --new-items --items`).
    pub fn category_of(&self, item: usize) -> usize {
        item % self.categories.max(1)
    }

    /// Every event, in time order.
    pub fn generate(&self) -> Vec<Interaction> {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(self.seed);
        let categories = self.categories.max(1);
        let consumables = (categories / 10).max(1);
        let days = self.days.max(1);
        let items: Vec<Item> = (0..self.items.max(1))
            .map(|i| {
                let new = rng.random_bool(0.25);
                Item {
                    category: self.category_of(i),
                    launch_day: if new { rng.random_range(0..days) } else { 0 },
                    period_days: rng.random_range(14..=35),
                    weight: ((i / categories + 1) as f64).powf(-1.0),
                }
            })
            .collect();
        let by_category: Vec<Vec<usize>> = (0..categories)
            .map(|c| (c..items.len()).step_by(categories).collect())
            .collect();
        let phase: Vec<f64> = (0..categories)
            .map(|_| rng.random_range(0.0..std::f64::consts::TAU))
            .collect();
        let season = |c: usize, day: u32| {
            let t = f64::from(day) / 365.0 * std::f64::consts::TAU;
            1.0 + 0.8 * (t + phase[c]).sin()
        };
        let mut events = Vec::new();
        for u in 0..self.users {
            let user = format!("c{u}");
            let favourites = [
                rng.random_range(0..categories),
                rng.random_range(0..categories),
            ];
            // Pareto(1.5) visits scaled to the mean (a mean of 3 × the minimum).
            let pareto = (1.0 - rng.random::<f64>()).powf(-1.0 / 1.5);
            let sessions = ((pareto * self.mean_sessions / 3.0).round() as usize).clamp(1, 200);
            let mut visits: Vec<u32> = (0..sessions).map(|_| rng.random_range(0..days)).collect();
            visits.sort_unstable();
            // (item, day it was last bought) of the consumables this customer buys.
            let mut restock: Vec<(usize, u32)> = Vec::new();
            // Durables this customer owns: viewed again, perhaps, but never bought twice.
            let mut owned: Vec<usize> = Vec::new();
            for day in visits {
                let mut t =
                    START_MS + i64::from(day) * DAY_MS + rng.random_range(0..DAY_MS - 3_600_000);
                let mut emit =
                    |item: usize, kind: EventType, t: &mut i64, rng: &mut Xoshiro256PlusPlus| {
                        events.push(Interaction {
                            user: user.clone(),
                            item: format!("p{item}"),
                            kind,
                            value: None,
                            timestamp_ms: *t,
                        });
                        *t += rng.random_range(20_000..120_000);
                    };
                for (item, last) in &mut restock {
                    if day >= *last + items[*item].period_days && rng.random_bool(0.7) {
                        emit(*item, EventType::View, &mut t, &mut rng);
                        emit(*item, EventType::Purchase, &mut t, &mut rng);
                        *last = day;
                    }
                }
                let category = match rng.random::<f64>() {
                    x if x < 0.6 => favourites[0],
                    x if x < 0.85 => favourites[1],
                    _ => {
                        let w: Vec<f64> = (0..categories).map(|c| season(c, day)).collect();
                        pick(&mut rng, &w)
                    }
                };
                let pool = &by_category[category];
                let weights: Vec<f64> = pool
                    .iter()
                    .map(|&i| {
                        let it = &items[i];
                        if it.launch_day > day {
                            return 0.0;
                        }
                        let fresh = if day - it.launch_day < 14 { 4.0 } else { 1.0 };
                        it.weight * fresh * season(category, day)
                    })
                    .collect();
                if weights.iter().all(|&w| w == 0.0) {
                    continue;
                }
                let views = 2 + geometric(&mut rng, 0.25).min(20);
                for _ in 0..views {
                    let item = pool[pick(&mut rng, &weights)];
                    emit(item, EventType::View, &mut t, &mut rng);
                    if !owned.contains(&item) && rng.random_bool(0.15) {
                        emit(item, EventType::AddToCart, &mut t, &mut rng);
                        if rng.random_bool(0.5) {
                            emit(item, EventType::Purchase, &mut t, &mut rng);
                            if items[item].category >= consumables {
                                owned.push(item);
                            } else if !restock.iter().any(|(i, _)| *i == item) {
                                restock.push((item, day));
                            }
                        }
                    }
                }
            }
        }
        events.sort_by(|a, b| {
            a.timestamp_ms
                .cmp(&b.timestamp_ms)
                .then_with(|| a.user.cmp(&b.user))
        });
        events
    }
}

/// An index drawn with probability proportional to `weights` (not all zero).
fn pick(rng: &mut Xoshiro256PlusPlus, weights: &[f64]) -> usize {
    let total: f64 = weights.iter().sum();
    let mut x = rng.random::<f64>() * total;
    for (i, &w) in weights.iter().enumerate() {
        if x < w {
            return i;
        }
        x -= w;
    }
    weights.iter().rposition(|&w| w > 0.0).unwrap_or(0)
}

/// Failures before the first success of a `p` coin.
fn geometric(rng: &mut Xoshiro256PlusPlus, p: f64) -> usize {
    let mut n = 0;
    while !rng.random_bool(p) && n < 1_000 {
        n += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use super::*;

    fn small() -> ShopSpec {
        ShopSpec {
            users: 800,
            items: 600,
            ..ShopSpec::default()
        }
    }

    #[test]
    fn the_same_spec_gives_the_same_log_in_time_order() {
        let a = small().generate();
        assert_eq!(a, small().generate());
        assert_ne!(a, ShopSpec { seed: 2, ..small() }.generate());
        assert!(a.windows(2).all(|w| w[0].timestamp_ms <= w[1].timestamp_ms));
        let end = START_MS + i64::from(small().days) * DAY_MS;
        assert!(a.iter().all(|e| (START_MS..end).contains(&e.timestamp_ms)));
    }

    #[test]
    fn a_funnel_of_views_carts_and_purchases_with_repeats() {
        let log = small().generate();
        let count = |k| log.iter().filter(|e| e.kind == k).count();
        let (views, carts, buys) = (
            count(EventType::View),
            count(EventType::AddToCart),
            count(EventType::Purchase),
        );
        assert!(
            views > 5 * carts && carts > buys && buys > 0,
            "{views} {carts} {buys}"
        );
        let mut bought: HashMap<(&str, &str), usize> = HashMap::new();
        for e in log.iter().filter(|e| e.kind == EventType::Purchase) {
            *bought.entry((&e.user, &e.item)).or_default() += 1;
        }
        let repeats: Vec<_> = bought.iter().filter(|(_, n)| **n > 1).collect();
        assert!(!repeats.is_empty());
        // Only consumables (the first tenth of the categories: item index mod 40 < 4) repeat.
        for ((_, item), _) in repeats {
            let i: usize = item[1..].parse().expect("p<n>");
            assert!(i % 40 < 4, "{item} is not a consumable");
        }
    }

    #[test]
    fn new_items_appear_only_after_their_launch() {
        let log = small().generate();
        let mut first_seen: HashMap<&str, i64> = HashMap::new();
        for e in &log {
            first_seen.entry(&e.item).or_insert(e.timestamp_ms);
        }
        let late = first_seen
            .values()
            .filter(|&&t| t > START_MS + 30 * DAY_MS)
            .count();
        // A quarter of the catalogue launches during the period, so many items are first
        // seen late; an old item's first view comes early (its first days' visits).
        assert!(
            late * 10 > first_seen.len(),
            "{late} of {}",
            first_seen.len()
        );
        let users: HashSet<&str> = log.iter().map(|e| e.user.as_str()).collect();
        assert_eq!(users.len(), small().users);
    }
}
