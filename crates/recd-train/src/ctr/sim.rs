//! A simulated shop with a known click model, to check that the learned ranker recovers
//! what drives clicks and the fixed blend cannot see.
//!
//! Items belong to one of `categories` categories; an item's vector is its category's
//! centroid plus noise, and it has a static popularity. Each user has a long-term vector
//! made of three categories they used to like (stale) and a current interest that moves
//! to a random category at a session with probability `shift`. A session: two organic
//! views of items in the current interest, then a list of `list_len` served by the fixed
//! blend (similarity to the long-term vector + 0.1 × relative popularity, over the top
//! `candidates` by similarity and the 20 most popular, the last `explore` slots filled at
//! random from the remaining candidates), then clicks by the click model:
//!
//! `P(click at 0-based position p) = (1 + p)^-0.8 · σ(-2.5 + ln(1 + c) + 1.2·[interest] + 0.5·pop)`
//!
//! where `c` is the user's clicks on the item's category in the previous 24 h, `interest`
//! whether the item is in the current interest, and `pop` its relative popularity: users
//! prefer categories they clicked recently, with position bias.
//!
//! [`run`] with [`Policy::Ab`] is the A/B test on simulated users: half of them (by the
//! experiments' hash) get the learned ranker's lists, read from online features as the
//! server reads them, and the click model decides.

use std::collections::{BTreeMap, HashMap};

use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use recd_core::experiment::stats::PairSums;
use recd_core::experiment::stats::ratio::ratio_ztest;
use recd_core::features::{FeatureSet, LinearRanker, LoggedItem, LoggedList, RankerInputs};
use recd_core::{Event, EventType, FieldType, FieldValue, Item, Schema};
use serde::Serialize;

use crate::ctr::export::OfflineFeatures;

/// The simulation's size and behaviour.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimParams {
    /// Users.
    pub users: usize,
    /// Items.
    pub items: usize,
    /// Categories.
    pub categories: usize,
    /// Days simulated.
    pub days: usize,
    /// Sessions per user and day.
    pub sessions_per_day: usize,
    /// Items per served list.
    pub list_len: usize,
    /// KNN candidates of the blend.
    pub candidates: usize,
    /// Random slots at the end of each list.
    pub explore: usize,
    /// Probability that a session starts with a new interest.
    pub shift: f64,
    /// Seed.
    pub seed: u64,
    /// When the first day starts, ms since the epoch.
    pub start_ms: i64,
}

impl Default for SimParams {
    fn default() -> Self {
        Self {
            users: 300,
            items: 800,
            categories: 16,
            days: 8,
            sessions_per_day: 4,
            list_len: 10,
            candidates: 60,
            explore: 3,
            shift: 0.25,
            seed: 7,
            start_ms: START_MS,
        }
    }
}

/// What the simulation produced: the catalog, the event log and the impression log.
#[derive(Debug, Clone)]
pub struct Simulated {
    /// `category` (tag) and `popularity` (numeric), 16-d vectors.
    pub schema: Schema,
    /// The catalog.
    pub items: Vec<Item>,
    /// Views and clicks (clicks cite their list).
    pub events: Vec<Event>,
    /// The served lists.
    pub lists: Vec<LoggedList>,
}

const DIM: usize = 16;
const DAY_MS: i64 = 86_400_000;
/// 2026-01-01T00:00:00Z: the default start.
pub const START_MS: i64 = 1_767_225_600_000;

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

fn normalize(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
}

/// How the lists of a run are ranked.
#[derive(Debug, Clone, Copy)]
pub enum Policy<'a> {
    /// Every user gets the fixed blend.
    Blend,
    /// An A/B test: users in the lower half of the hash buckets (`recd_core`'s experiment
    /// hash) get the blend (control), the others `ranker` over `set`'s features, read as
    /// the server reads them (online state of the events and lists so far).
    Ab {
        /// The features the ranker reads.
        set: &'a FeatureSet,
        /// The treatment.
        ranker: &'a LinearRanker,
    },
}

/// An A/B run's outcome: per arm, users' clicks over their lists, and the delta-method
/// test of the ratio (the experiments layer's statistics).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AbOutcome {
    /// Control (blend): lists and clicks.
    pub control: (u64, u64),
    /// Treatment (ranker): lists and clicks.
    pub treatment: (u64, u64),
    /// Clicks per list, control.
    pub control_ctr: f64,
    /// Clicks per list, treatment.
    pub treatment_ctr: f64,
    /// Two-sided p-value of the difference (users as the unit).
    pub p_value: Option<f64>,
}

/// Runs the simulation with the fixed blend.
pub fn simulate(p: &SimParams) -> Simulated {
    run(p, Policy::Blend).0
}

/// One simulated user.
struct SimUser {
    id: String,
    interest: usize,
    /// (time, category) of their clicks.
    clicks: Vec<(i64, usize)>,
    /// The blend's candidates: (item, similarity, relative popularity, found by KNN),
    /// best blend score first.
    pool: Vec<(usize, f64, f64, bool)>,
    treated: bool,
    lists: u64,
    clicked: u64,
}

/// Runs the simulation under `policy`: sessions in global time order, so that the
/// online feature state a ranker reads holds exactly the events and lists before it.
pub fn run(p: &SimParams, policy: Policy<'_>) -> (Simulated, Option<AbOutcome>) {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(p.seed);
    let gauss = |rng: &mut Xoshiro256PlusPlus| -> f32 {
        // Box–Muller.
        let (u1, u2): (f64, f64) = (rng.random::<f64>().max(1e-12), rng.random::<f64>());
        ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
    };
    let centroids: Vec<Vec<f32>> = (0..p.categories)
        .map(|_| {
            let mut c: Vec<f32> = (0..DIM).map(|_| gauss(&mut rng)).collect();
            normalize(&mut c);
            c
        })
        .collect();
    let mut items = Vec::with_capacity(p.items);
    let mut cat_of = Vec::with_capacity(p.items);
    let mut pop = Vec::with_capacity(p.items);
    for i in 0..p.items {
        let cat = rng.random_range(0..p.categories);
        let mut v: Vec<f32> = centroids[cat]
            .iter()
            .map(|c| c + 0.5 * gauss(&mut rng))
            .collect();
        normalize(&mut v);
        // Zipf-like static popularity in (0, 1].
        let popularity = 1.0 / (1.0 + (rng.random_range(0..p.items) as f64) / 20.0);
        let mut fields = BTreeMap::new();
        fields.insert("category".into(), FieldValue::Tags(vec![format!("c{cat}")]));
        fields.insert("popularity".into(), FieldValue::Number(popularity));
        items.push(Item {
            id: format!("i{i}"),
            vector: Some(v),
            fields,
        });
        cat_of.push(cat);
        pop.push(popularity);
    }
    let by_cat: Vec<Vec<usize>> = (0..p.categories)
        .map(|c| (0..p.items).filter(|&i| cat_of[i] == c).collect())
        .collect();
    let pop_max = pop.iter().copied().fold(0.0, f64::max);
    let mut popular: Vec<usize> = (0..p.items).collect();
    popular.sort_by(|a, b| pop[*b].total_cmp(&pop[*a]).then(a.cmp(b)));
    popular.truncate(20);
    let blend = |c: &(usize, f64, f64, bool)| c.1 + 0.1 * c.2;

    let mut users = Vec::with_capacity(p.users);
    for u in 0..p.users {
        let old: Vec<usize> = (0..3).map(|_| rng.random_range(0..p.categories)).collect();
        let mut long_term = vec![0.0f32; DIM];
        for &c in &old {
            long_term
                .iter_mut()
                .zip(&centroids[c])
                .for_each(|(a, b)| *a += b);
        }
        normalize(&mut long_term);
        // The blend's candidates: fixed, since the long-term vector is.
        let sims: Vec<f64> = items
            .iter()
            .map(|it| {
                f64::from(recd_core::vector::dot(
                    it.vector.as_deref().unwrap_or(&[]),
                    &long_term,
                ))
            })
            .collect();
        let mut knn: Vec<usize> = (0..p.items).collect();
        knn.sort_by(|a, b| sims[*b].total_cmp(&sims[*a]).then(a.cmp(b)));
        knn.truncate(p.candidates);
        let floor = knn.last().map_or(0.0, |&i| sims[i]);
        let mut pool: Vec<(usize, f64, f64, bool)> = knn
            .iter()
            .map(|&i| (i, sims[i], pop[i] / pop_max, true))
            .collect();
        for &i in &popular {
            if !knn.contains(&i) {
                pool.push((i, floor, pop[i] / pop_max, false));
            }
        }
        pool.sort_by(|a, b| blend(b).total_cmp(&blend(a)).then(a.0.cmp(&b.0)));
        let id = format!("u{u}");
        let treated = matches!(policy, Policy::Ab { .. })
            && recd_core::experiment::hash::bucket("sim-ab", &id) >= 0.5;
        users.push(SimUser {
            id,
            interest: old[0],
            clicks: Vec::new(),
            pool,
            treated,
            lists: 0,
            clicked: 0,
        });
    }
    // Every session, in time order.
    let gap = DAY_MS / p.sessions_per_day as i64;
    let mut sessions: Vec<(i64, usize, usize)> = Vec::new();
    for u in 0..p.users {
        for s in 0..p.days * p.sessions_per_day {
            sessions.push((
                p.start_ms + s as i64 * gap + rng.random_range(0..gap / 2),
                u,
                s,
            ));
        }
    }
    sessions.sort_unstable();

    let mut online = OfflineFeatures::default();
    let mut events = Vec::new();
    let mut lists = Vec::new();
    let mut scratch = Vec::new();
    for (t, u, s) in sessions {
        let user = &mut users[u];
        if rng.random::<f64>() < p.shift {
            user.interest = rng.random_range(0..p.categories);
        }
        let mut fresh: Vec<Event> = Vec::new();
        for k in 0..2 {
            let pick = &by_cat[user.interest];
            if let Some(&i) = pick.get(rng.random_range(0..pick.len().max(1))) {
                fresh.push(Event {
                    user_id: user.id.clone(),
                    item_id: items[i].id.clone(),
                    kind: EventType::View,
                    value: None,
                    timestamp_ms: t - 60_000 + k * 1000,
                    recommendation_id: None,
                });
            }
        }
        if let Policy::Ab { set, .. } = policy {
            for e in &fresh {
                online.apply_event(set, e, item_of(&items, &e.item_id));
            }
        }
        events.append(&mut fresh);
        // The list: the policy's order over the pool, the last `explore` slots at random.
        let ranked: Vec<(usize, f64, f64, bool, f64)> = match policy {
            Policy::Ab { set, ranker } if user.treated => {
                let mut r: Vec<(usize, f64, f64, bool, f64)> = user
                    .pool
                    .iter()
                    .map(|c| {
                        online.values_into(set, &user.id, &items[c.0], t, &mut scratch);
                        let sig = RankerInputs {
                            similarity: c.1,
                            popularity: c.2,
                            knn: c.3,
                            position: 0.0,
                        };
                        (c.0, c.1, c.2, c.3, ranker.probability(&scratch, &sig))
                    })
                    .collect();
                r.sort_by(|a, b| b.4.total_cmp(&a.4).then(a.0.cmp(&b.0)));
                r
            }
            _ => user
                .pool
                .iter()
                .map(|c| (c.0, c.1, c.2, c.3, blend(c)))
                .collect(),
        };
        let head = p.list_len.saturating_sub(p.explore);
        let mut shown: Vec<&(usize, f64, f64, bool, f64)> = ranked.iter().take(head).collect();
        let mut rest: Vec<&(usize, f64, f64, bool, f64)> = ranked.iter().skip(head).collect();
        while shown.len() < p.list_len && !rest.is_empty() {
            let k = rng.random_range(0..rest.len());
            shown.push(rest.swap_remove(k));
        }
        let rec = format!("r{u}-{s}");
        let recent = |clicks: &[(i64, usize)], cat: usize| {
            clicks
                .iter()
                .filter(|(at, c)| *c == cat && *at > t - DAY_MS && *at < t)
                .count()
        };
        let mut new_clicks = Vec::new();
        for (pos, c) in shown.iter().enumerate() {
            let cat = cat_of[c.0];
            let attract = sigmoid(
                -2.5 + (recent(&user.clicks, cat) as f64).ln_1p()
                    + 1.2 * f64::from(u8::from(cat == user.interest))
                    + 0.5 * c.2,
            );
            let examine = (1.0 + pos as f64).powf(-0.8);
            if rng.random::<f64>() < examine * attract {
                let at = t + 1000 * (pos as i64 + 1);
                new_clicks.push((at, cat));
                fresh.push(Event {
                    user_id: user.id.clone(),
                    item_id: items[c.0].id.clone(),
                    kind: EventType::Click,
                    value: None,
                    timestamp_ms: at,
                    recommendation_id: Some(rec.clone()),
                });
            }
        }
        user.lists += 1;
        user.clicked += new_clicks.len() as u64;
        user.clicks.extend(new_clicks);
        let list = LoggedList {
            recommendation_id: rec,
            user_id: user.id.clone(),
            at_ms: t,
            strategy: if user.treated { "learned" } else { "default" }.into(),
            items: shown
                .iter()
                .map(|c| LoggedItem {
                    id: items[c.0].id.clone(),
                    score: c.4,
                    similarity: c.1,
                    popularity: c.2,
                    knn: c.3,
                })
                .collect(),
        };
        if let Policy::Ab { set, .. } = policy {
            for i in &list.items {
                online.apply_impression(set, &i.id, t);
            }
            for e in &fresh {
                online.apply_event(set, e, item_of(&items, &e.item_id));
            }
        }
        events.append(&mut fresh);
        lists.push(list);
    }
    let outcome = matches!(policy, Policy::Ab { .. }).then(|| ab_outcome(&users));
    let mut fields = BTreeMap::new();
    fields.insert("category".to_string(), FieldType::Tag);
    fields.insert("popularity".to_string(), FieldType::Numeric);
    let schema = Schema {
        vector: recd_core::VectorSpec {
            dim: DIM,
            metric: recd_core::Metric::Cosine,
            quantization: recd_core::Quantization::None,
            partition_by: None,
        },
        fields,
    };
    (
        Simulated {
            schema,
            items,
            events,
            lists,
        },
        outcome,
    )
}

fn item_of<'a>(items: &'a [Item], id: &str) -> Option<&'a Item> {
    // Ids are `i{index}`.
    id.strip_prefix('i')
        .and_then(|n| n.parse::<usize>().ok())
        .and_then(|n| items.get(n))
}

fn ab_outcome(users: &[SimUser]) -> AbOutcome {
    let (mut c, mut t) = (PairSums::default(), PairSums::default());
    for u in users.iter().filter(|u| u.lists > 0) {
        let arm = if u.treated { &mut t } else { &mut c };
        arm.add(u.clicked as f64, u.lists as f64);
    }
    let ctr = |s: &PairSums| {
        if s.sum_y > 0.0 {
            s.sum_x / s.sum_y
        } else {
            0.0
        }
    };
    AbOutcome {
        control: (c.sum_y as u64, c.sum_x as u64),
        treatment: (t.sum_y as u64, t.sum_x as u64),
        control_ctr: ctr(&c),
        treatment_ctr: ctr(&t),
        p_value: ratio_ztest(&c, &t).ok().map(|z| z.p_value),
    }
}

/// The catalog by id.
pub fn catalog(items: &[Item]) -> HashMap<String, Item> {
    items.iter().map(|i| (i.id.clone(), i.clone())).collect()
}
