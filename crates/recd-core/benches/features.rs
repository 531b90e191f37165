//! What online features cost: applying one event to a user's and an item's state (the
//! default feature set: eight features, three of them per category; and three distinct
//! counts), reading the feature vectors of 100 candidates (one pair at a time, and through
//! a request's `UserView`),
//! scoring a list of 150 candidates with the fixed blend and with the learned ranker (its
//! features read through the `UserView` included, as the server does), and (printed
//! once) the memory a user's state takes.
//!
//! `cargo bench -p recd-core --bench features`

use std::collections::{BTreeMap, HashMap};

use criterion::{Criterion, criterion_group, criterion_main};
use std::sync::Arc;

use recd_core::features::ranker::Input;
use recd_core::features::{EntityState, FeatureSet, FeatureSpec, LinearRanker, Target};
use recd_core::pipeline::{RankParams, merge, score_all, score_learned};
use recd_core::{Event, EventType, FieldValue, Item, Schema};

const H: i64 = 3_600_000;

fn items(n: usize) -> Vec<Item> {
    (0..n)
        .map(|i| {
            let mut fields = BTreeMap::new();
            let mut tags = vec![format!("cat-{}", i % 40)];
            if i % 3 == 0 {
                tags.push(format!("cat-{}", (i / 3) % 40));
            }
            fields.insert("category".into(), FieldValue::Tags(tags));
            Item {
                id: format!("sku-{i}"),
                vector: None,
                fields,
            }
        })
        .collect()
}

fn event(user: usize, item: usize, at: i64, n: usize) -> Event {
    let kinds = [
        EventType::View,
        EventType::View,
        EventType::Click,
        EventType::AddToCart,
    ];
    Event {
        user_id: format!("user-{user}"),
        item_id: format!("sku-{item}"),
        kind: kinds[n % kinds.len()],
        value: None,
        timestamp_ms: at,
        recommendation_id: None,
    }
}

/// A week of a user's activity: `per_day` events a day over `items`.
fn history(
    set: &FeatureSet,
    items: &[Item],
    per_day: usize,
    seed: usize,
) -> (EntityState, HashMap<String, EntityState>) {
    let mut user = EntityState::default();
    let mut by_item: HashMap<String, EntityState> = HashMap::new();
    for n in 0..7 * per_day {
        let at = 1_767_225_600_000 + (n as i64) * 24 * H / per_day as i64;
        let it = &items[(n * 7919 + seed * 104_729) % items.len()];
        let e = event(seed, (n * 7919 + seed * 104_729) % items.len(), at, n);
        for u in set.event_updates(&e, Some(it)) {
            match u.target {
                Target::User => user.apply(&u.key, &u.op, at),
                Target::Item => by_item
                    .entry(it.id.clone())
                    .or_default()
                    .apply(&u.key, &u.op, at),
            }
        }
    }
    (user, by_item)
}

fn bench(c: &mut Criterion) {
    let schema = Schema::demo(8);
    let set = FeatureSet::default_for(&schema);
    let items = items(10_000);
    let t0 = 1_767_225_600_000i64;
    // The default set, then three distinct counts (a user's items, a user's items per
    // category, an item's users; 24 h each) on the same stream of events.
    let distinct: FeatureSet = {
        let specs: BTreeMap<String, FeatureSpec> = serde_json::from_value(serde_json::json!({
            "user_items": {"kind": "distinct", "entity": "user", "event": "view", "window": "24h"},
            "user_tag_items": {"kind": "distinct", "entity": "user_tag", "field": "category", "event": "view", "window": "24h"},
            "item_users": {"kind": "distinct", "entity": "item", "event": "view", "window": "24h"}
        }))
        .expect("specs");
        FeatureSet::from_specs(&specs, &schema).expect("a valid set")
    };
    for (name, set) in [
        ("features/apply_event", &set),
        ("features/apply_event_3_distinct", &distinct),
    ] {
        let mut users: HashMap<String, EntityState> = HashMap::new();
        let mut states: HashMap<String, EntityState> = HashMap::new();
        let mut n = 0usize;
        c.bench_function(name, |b| {
            b.iter(|| {
                n += 1;
                let item = n * 7919 % items.len();
                let e = event(n % 10_000, item, t0 + (n as i64) * 1000, n);
                let updates = set.event_updates(&e, Some(&items[item]));
                let user = users.entry(e.user_id.clone()).or_default();
                for u in updates.iter().filter(|u| u.target == Target::User) {
                    user.apply(&u.key, &u.op, e.timestamp_ms);
                }
                let it = states.entry(e.item_id.clone()).or_default();
                for u in updates.iter().filter(|u| u.target == Target::Item) {
                    it.apply(&u.key, &u.op, e.timestamp_ms);
                }
            })
        });
    }
    let (user, by_item) = history(&set, &items, 50, 1);
    let candidates: Vec<&Item> = items.iter().step_by(97).take(100).collect();
    let now = t0 + 7 * 24 * H;
    let mut out = vec![0.0; set.len()];
    c.bench_function("features/values_100_candidates", |b| {
        b.iter(|| {
            for it in &candidates {
                set.values_into(Some(&user), by_item.get(&it.id), it, now, &mut out);
            }
            out[0]
        })
    });
    // The request path: the user's side once, then each candidate's item side.
    c.bench_function("features/values_100_candidates_user_view", |b| {
        b.iter(|| {
            let view = set.user_view(Some(&user), now);
            for it in &candidates {
                view.values_into(by_item.get(&it.id), it, &mut out);
            }
            out[0]
        })
    });
    // One list as the server scores it: 100 KNN candidates and 50 popular ones (some
    // found by both), the blend against the learned ranker reading their features.
    let pool: Vec<Arc<Item>> = items
        .iter()
        .step_by(37)
        .take(150)
        .cloned()
        .map(Arc::new)
        .collect();
    let knn: Vec<(Arc<Item>, f32)> = pool[..100]
        .iter()
        .enumerate()
        .map(|(r, it)| (Arc::clone(it), 0.9 - r as f32 * 0.004))
        .collect();
    let popular: Vec<(Arc<Item>, f64)> = pool[90..140]
        .iter()
        .enumerate()
        .map(|(r, it)| (Arc::clone(it), 8.0 - r as f64 * 0.05))
        .collect();
    let list = merge(knn, popular, vec![]);
    let states: Vec<Option<&EntityState>> = list.iter().map(|c| by_item.get(&c.item.id)).collect();
    let params = RankParams::default();
    let ranker = bench_ranker(&set);
    c.bench_function("features/score_150_blend", |b| {
        b.iter(|| score_all(list.clone(), &params, false).len())
    });
    let mut values = vec![0.0; list.len() * set.len()];
    c.bench_function("features/score_150_learned", |b| {
        b.iter(|| {
            let view = set.user_view(Some(&user), now);
            for ((c, state), row) in list.iter().zip(&states).zip(values.chunks_mut(set.len())) {
                view.values_into(*state, &c.item, row);
            }
            score_learned(list.clone(), &values, &ranker).len()
        })
    });
    // Memory per user, printed once: users with 10 and 50 events a day for a week.
    for per_day in [10, 50] {
        let bytes: usize = (0..200)
            .map(|s| history(&set, &items, per_day, s).0.approx_bytes())
            .sum();
        eprintln!(
            "features: {} bytes per user ({per_day} events a day for a week, default set)",
            bytes / 200
        );
    }
}

/// A ranker over `set`'s features and the signals with every weight non-zero (nothing is
/// dropped by preparation, as in a ranker trained on real data).
fn bench_ranker(set: &FeatureSet) -> LinearRanker {
    let names = LinearRanker::input_names(set);
    let inputs: Vec<Input> = names
        .iter()
        .enumerate()
        .map(|(i, name)| Input {
            name: name.clone(),
            log: LinearRanker::logged(set, i),
            mean: 0.5,
            scale: 1.5,
        })
        .collect();
    let weights = (0..inputs.len()).map(|i| 0.3 - 0.05 * i as f64).collect();
    LinearRanker {
        inputs,
        weights,
        bias: -2.0,
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
