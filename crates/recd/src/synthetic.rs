//! The demo's synthetic catalog and interaction history, deterministic for a seed.
//!
//! The same latent model as `../shared/bench/catalog_gen.py`: 50 category "super-centres"
//! on the unit sphere, 200 clusters of uneven size hanging off them, each item its cluster
//! centre plus variation along a cluster-specific rank-16 subspace plus isotropic noise,
//! normalized. 80% of a cluster's items carry its home category; brands follow categories
//! 70% of the time; prices are lognormal in [5, 500]; 90% are in stock; popularity is
//! Zipf-like; titles are two category words and one or two general words.
//! Users have one to three interests (clusters); their histories are drawn from the items
//! of those clusters, so a model that learns from the history can find their taste.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, LogNormal, StandardNormal};
use recd_core::{Event, EventType};
use serde_json::{Value, json};

const N_CATEGORIES: usize = 50;
const N_BRANDS: usize = 500;
const N_CLUSTERS: usize = 200;
const RANK: usize = 16;
const SYLLABLES: [&str; 20] = [
    "ka", "lo", "mi", "ra", "te", "zu", "po", "ne", "si", "da", "vo", "ri", "ba", "ge", "lu", "fa",
    "no", "xi", "we", "ty",
];
/// The history ends here (2026-01-01T00:00:00Z), so that a seed always gives the same data.
pub const HISTORY_END_MS: i64 = 1_767_225_600_000;
const HISTORY_SPAN_MS: i64 = 14 * 24 * 3_600_000;

/// A generated catalog and history.
#[derive(Debug)]
pub struct Synthetic {
    /// Items as API JSON (with vectors).
    pub items: Vec<Value>,
    /// Interaction history, in time order.
    pub events: Vec<Event>,
    /// Each item's cluster (the tests check that vectors reflect it).
    #[cfg_attr(not(test), allow(dead_code))]
    pub item_cluster: Vec<usize>,
}

fn gauss(rng: &mut StdRng) -> f32 {
    StandardNormal.sample(rng)
}

fn normalize(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
}

fn unit(rng: &mut StdRng, dim: usize) -> Vec<f32> {
    let mut v: Vec<f32> = (0..dim).map(|_| gauss(rng)).collect();
    normalize(&mut v);
    v
}

fn words(
    rng: &mut StdRng,
    count: usize,
    syllables: std::ops::RangeInclusive<usize>,
) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(count);
    while out.len() < count {
        let k = rng.random_range(syllables.clone());
        let w: String = (0..k)
            .map(|_| SYLLABLES[rng.random_range(0..SYLLABLES.len())])
            .collect();
        if !out.contains(&w) {
            out.push(w);
        }
    }
    out
}

/// Draws an index with probability proportional to `weights` (cumulative sums given).
fn pick(rng: &mut StdRng, cumulative: &[f64]) -> usize {
    let total = cumulative.last().copied().unwrap_or(0.0);
    let x = rng.random_range(0.0..total.max(f64::MIN_POSITIVE));
    cumulative
        .partition_point(|c| *c <= x)
        .min(cumulative.len().saturating_sub(1))
}

fn cumulative(weights: impl Iterator<Item = f64>) -> Vec<f64> {
    weights
        .scan(0.0, |acc, w| {
            *acc += w;
            Some(*acc)
        })
        .collect()
}

/// Generates `n_items` items of dimension `dim` and the histories of `n_users` users.
pub fn generate(n_items: usize, n_users: usize, dim: usize, seed: u64) -> Synthetic {
    let mut rng = StdRng::seed_from_u64(seed);
    let supers: Vec<Vec<f32>> = (0..N_CATEGORIES).map(|_| unit(&mut rng, dim)).collect();
    let home: Vec<usize> = (0..N_CLUSTERS)
        .map(|_| rng.random_range(0..N_CATEGORIES))
        .collect();
    let scale = 1.0 / (dim as f32).sqrt();
    let centres: Vec<Vec<f32>> = home
        .iter()
        .map(|&c| {
            let mut v: Vec<f32> = supers[c]
                .iter()
                .map(|x| x + gauss(&mut rng) * scale)
                .collect();
            normalize(&mut v);
            v
        })
        .collect();
    let bases: Vec<Vec<Vec<f32>>> = (0..N_CLUSTERS)
        .map(|_| {
            (0..RANK)
                .map(|_| (0..dim).map(|_| gauss(&mut rng) * scale).collect())
                .collect()
        })
        .collect();
    // Uneven cluster sizes (a stand-in for Dirichlet(2) weights: Gamma(2) draws).
    let sizes = cumulative((0..N_CLUSTERS).map(|_| {
        let a: f64 = rng.random_range(1e-9..1.0);
        let b: f64 = rng.random_range(1e-9..1.0);
        -(a.ln() + b.ln())
    }));
    let cat_words = words(&mut rng, N_CATEGORIES, 2..=2);
    let cat_vocab: Vec<Vec<String>> = (0..N_CATEGORIES)
        .map(|_| words(&mut rng, 6, 2..=3))
        .collect();
    let general = words(&mut rng, 40, 2..=3);
    let price_dist =
        LogNormal::new(3.5, 0.8).unwrap_or_else(|_| unreachable!("constant parameters are valid"));

    let mut items = Vec::with_capacity(n_items);
    let mut item_cluster = Vec::with_capacity(n_items);
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); N_CLUSTERS];
    // Zipf-like popularity: rank^-1 over a random permutation.
    let mut ranks: Vec<usize> = (1..=n_items).collect();
    for i in (1..ranks.len()).rev() {
        ranks.swap(i, rng.random_range(0..=i));
    }
    for (i, rank) in ranks.iter().enumerate() {
        let cluster = pick(&mut rng, &sizes);
        let z: Vec<f32> = (0..RANK)
            .map(|_| gauss(&mut rng) * (0.6 / (RANK as f32).sqrt()))
            .collect();
        let mut v: Vec<f32> = centres[cluster].clone();
        for (r, zr) in z.iter().enumerate() {
            for (x, b) in v.iter_mut().zip(&bases[cluster][r]) {
                *x += zr * b;
            }
        }
        v.iter_mut()
            .for_each(|x| *x += gauss(&mut rng) * (0.6 * scale));
        normalize(&mut v);
        let category = if rng.random_bool(0.8) {
            home[cluster]
        } else {
            rng.random_range(0..N_CATEGORIES)
        };
        let brand = if rng.random_bool(0.7) {
            category * (N_BRANDS / N_CATEGORIES) + rng.random_range(0..N_BRANDS / N_CATEGORIES)
        } else {
            rng.random_range(0..N_BRANDS)
        };
        let sampled: f64 = price_dist.sample(&mut rng);
        let price = (sampled.clamp(5.0, 500.0) * 100.0).round() / 100.0;
        let vocab = &cat_vocab[category];
        let mut title = vec![
            vocab[rng.random_range(0..vocab.len())].clone(),
            vocab[rng.random_range(0..vocab.len())].clone(),
        ];
        for _ in 0..rng.random_range(1..=2usize) {
            title.push(general[rng.random_range(0..general.len())].clone());
        }
        let popularity = ((1000.0 / *rank as f64) * 1000.0).round() / 1000.0;
        items.push(json!({
            "id": format!("sku-{i}"),
            "vector": v,
            "category": cat_words[category],
            "brand": format!("brand-{brand}"),
            "price": price,
            "in_stock": rng.random_bool(0.9),
            "popularity": popularity,
            "title": title.join(" "),
        }));
        members[cluster].push(i);
        item_cluster.push(cluster);
    }

    let populated: Vec<usize> = (0..N_CLUSTERS)
        .filter(|c| !members[*c].is_empty())
        .collect();
    let mut events = Vec::new();
    if !populated.is_empty() {
        for u in 0..n_users {
            let k = rng.random_range(1..=3usize);
            let interests: Vec<usize> = (0..k)
                .map(|_| populated[rng.random_range(0..populated.len())])
                .collect();
            let weights = cumulative([1.0, 0.7, 0.5].into_iter().take(k));
            let n_events = rng.random_range(5..=40usize);
            let mut t = HISTORY_END_MS - rng.random_range(0..HISTORY_SPAN_MS);
            for _ in 0..n_events {
                let cluster = interests[pick(&mut rng, &weights)];
                let pool = &members[cluster];
                // Favour the front of the cluster: a mild popularity skew within a taste.
                let idx = ((rng.random_range(0.0..1.0f64).powi(2)) * pool.len() as f64) as usize;
                let item = pool[idx.min(pool.len() - 1)];
                let roll = rng.random_range(0.0..1.0f64);
                let (kind, value) = match roll {
                    r if r < 0.55 => (EventType::View, None),
                    r if r < 0.75 => (EventType::Click, None),
                    r if r < 0.87 => (
                        EventType::Dwell,
                        Some(f64::from(rng.random_range(5..180u32))),
                    ),
                    r if r < 0.95 => (EventType::AddToCart, None),
                    _ => (EventType::Purchase, None),
                };
                t = (t + rng.random_range(10_000..3_600_000)).min(HISTORY_END_MS);
                events.push(Event {
                    user_id: format!("user-{u}"),
                    item_id: format!("sku-{item}"),
                    kind,
                    value,
                    timestamp_ms: t,
                    recommendation_id: None,
                });
            }
        }
    }
    events.sort_by_key(|e| e.timestamp_ms);
    Synthetic {
        items,
        events,
        item_cluster,
    }
}

#[cfg(test)]
mod tests {
    use recd_core::{Item, Schema};

    use super::*;

    /// The default of `os.getenv("NAME") or "<default>"` in a wrk script.
    fn lua_default<'s>(script: &'s str, name: &str) -> Option<&'s str> {
        let at = script.find(&format!("os.getenv(\"{name}\") or \""))?;
        let rest = &script[at..];
        let start = rest.find(" or \"")? + 5;
        let len = rest[start..].find('"')?;
        Some(&rest[start..start + len])
    }

    /// The wrk scripts behind the event and recommend benchmarks send ids this generator
    /// makes (sessions 13-22 measured events for ids the demo did not have, which the server
    /// accepts, so nothing failed).
    #[test]
    fn the_wrk_scripts_send_the_demos_ids() {
        let demo = generate(10, 5, 4, 1);
        let user = demo.events[0].user_id.as_str();
        let item = demo.items[0]["id"].as_str().unwrap();
        for (name, script) in [
            (
                "events.lua",
                include_str!("../../../scripts/wrk/events.lua"),
            ),
            (
                "recommend.lua",
                include_str!("../../../scripts/wrk/recommend.lua"),
            ),
        ] {
            let prefix = lua_default(script, "USER_PREFIX").unwrap();
            assert!(user.starts_with(prefix), "{name}: {prefix} vs {user}");
            assert!(
                !script.contains("\"u%d"),
                "{name} formats ids without its prefix"
            );
        }
        let events = include_str!("../../../scripts/wrk/events.lua");
        let prefix = lua_default(events, "ITEM_PREFIX").unwrap();
        assert!(item.starts_with(prefix), "events.lua: {prefix} vs {item}");
        assert!(
            !events.contains("\"i%d"),
            "events.lua formats ids without its prefix"
        );
    }

    #[test]
    fn deterministic_valid_and_clustered() {
        let a = generate(2000, 50, 16, 7);
        let b = generate(2000, 50, 16, 7);
        assert_eq!(a.items, b.items);
        assert_eq!(a.events, b.events);
        assert_ne!(generate(2000, 50, 16, 8).items, a.items);
        let schema = Schema::demo(16);
        let items: Vec<Item> = a
            .items
            .iter()
            .map(|v| Item::from_json(v, &schema).unwrap())
            .collect();
        // items of one cluster are closer to each other than to items of other clusters
        let v = |i: usize| items[i].vector.clone().unwrap();
        let dot = |x: &[f32], y: &[f32]| x.iter().zip(y).map(|(a, b)| a * b).sum::<f32>();
        let (mut same, mut other, mut ns, mut no) = (0.0, 0.0, 0, 0);
        for i in 0..300 {
            for j in (i + 1)..300 {
                if a.item_cluster[i] == a.item_cluster[j] {
                    same += dot(&v(i), &v(j));
                    ns += 1;
                } else {
                    other += dot(&v(i), &v(j));
                    no += 1;
                }
            }
        }
        assert!(same / ns as f32 > other / no as f32 + 0.2);
        assert!(
            a.events
                .windows(2)
                .all(|w| w[0].timestamp_ms <= w[1].timestamp_ms)
        );
        assert!(a.events.len() >= 50 * 5);
    }
}
