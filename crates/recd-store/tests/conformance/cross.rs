//! Both backends side by side against the reference semantics in `recd-core`:
//! random catalogs and random filters must select exactly the items `Filter::matches`
//! selects, through `knn` and `popular` alike; random event sequences must leave the same
//! user state (session vectors within 1e-5).

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use recd_core::{EventType, FieldValue, Filter, Item, ItemUpsert, UserState};
use recd_store::Store;

use crate::support::{event, redis_url, schema, settings, unique_prefix};

const TAGS: &[&str] = &[
    "a",
    "A",
    "b c",
    " lead",
    "trail ",
    "x|y",
    "{z}",
    "@brand:{a}",
    "-n",
    "*",
    "\"q\"",
    "a\\b",
    "é",
    "$p0",
    "%^&=~",
    "(a) | (b)",
];
const WORDS: &[&str] = &["alpha", "beta", "gamma", "x_y", "ünï", "12", "v2", "ΣΑΣ"];
const SEPARATORS: &[&str] = &[" ", "-", ", ", "·", "|", "@", "(", "\"", "_"];

fn tags() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(prop::sample::select(TAGS), 1..3)
        .prop_map(|v| v.into_iter().map(String::from).collect())
}

fn text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        (
            prop::sample::select(WORDS),
            prop::sample::select(SEPARATORS),
        ),
        1..5,
    )
    .prop_map(|parts| parts.into_iter().map(|(w, s)| format!("{w}{s}")).collect())
}

fn number() -> impl Strategy<Value = f64> {
    (-4i32..5).prop_map(|n| f64::from(n) / 2.0)
}

fn item(id: usize) -> impl Strategy<Value = Item> {
    (
        prop::option::of(prop::collection::vec(-1.0f32..1.0, 4)),
        prop::option::of(tags()),
        prop::option::of(tags()),
        prop::option::of(number()),
        prop::option::of(any::<bool>()),
        prop::option::of(text()),
    )
        .prop_map(move |(vector, category, brand, price, in_stock, title)| {
            let mut fields = BTreeMap::new();
            let mut put = |k: &str, v: Option<FieldValue>| {
                if let Some(v) = v {
                    fields.insert(k.to_string(), v);
                }
            };
            put("category", category.map(FieldValue::Tags));
            put("brand", brand.map(FieldValue::Tags));
            put("price", price.map(FieldValue::Number));
            put("in_stock", in_stock.map(FieldValue::Bool));
            put("title", title.map(FieldValue::Text));
            let vector = vector.map(|mut v| {
                v[0] += 2.0; // never the zero vector
                v
            });
            Item {
                id: format!("i{id} {}", TAGS[id % TAGS.len()]),
                vector,
                fields,
            }
        })
}

fn bound() -> impl Strategy<Value = Bound<f64>> {
    prop_oneof![
        Just(Bound::Unbounded),
        number().prop_map(Bound::Included),
        number().prop_map(Bound::Excluded)
    ]
}

fn leaf() -> impl Strategy<Value = Filter> {
    let tag_field = prop::sample::select(&["category", "brand"][..]);
    let values = prop::collection::vec(prop::sample::select(TAGS), 1..3)
        .prop_map(|v| v.into_iter().map(String::from).collect::<Vec<_>>());
    prop_oneof![
        (tag_field.clone(), values.clone()).prop_map(|(f, values)| Filter::TagAny {
            field: f.into(),
            values
        }),
        (tag_field, values).prop_map(|(f, values)| Filter::TagNone {
            field: f.into(),
            values
        }),
        (bound(), bound()).prop_map(|(min, max)| Filter::Range {
            field: "price".into(),
            min,
            max
        }),
        any::<bool>().prop_map(|value| Filter::Bool {
            field: "in_stock".into(),
            value
        }),
        prop::collection::btree_set(prop::sample::select(WORDS), 1..3).prop_map(|w| Filter::Text {
            field: "title".into(),
            terms: w.into_iter().map(|t| t.to_lowercase()).collect(),
        }),
    ]
}

fn filter() -> impl Strategy<Value = Filter> {
    leaf().prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Filter::And),
            prop::collection::vec(inner.clone(), 1..3).prop_map(Filter::Or),
            inner.prop_map(|f| Filter::Not(Box::new(f))),
        ]
    })
}

fn catalog() -> impl Strategy<Value = Vec<Item>> {
    (0usize..30).prop_flat_map(|n| (0..n).map(item).collect::<Vec<_>>())
}

async fn matched(store: &dyn Store, f: &Filter) -> (Vec<String>, Vec<String>) {
    let mut knn: Vec<String> = store
        .knn(&[1.0, 0.5, -0.5, 0.25], 1000, f)
        .await
        .expect("knn")
        .into_iter()
        .map(|h| h.item.id.clone())
        .collect();
    let mut popular: Vec<String> = store
        .popular(1000, f)
        .await
        .expect("popular")
        .into_iter()
        .map(|h| h.item.id.clone())
        .collect();
    knn.sort();
    popular.sort();
    (knn, popular)
}

async fn check_case(stores: &[Arc<dyn Store>], items: &[Item], filters: &[Filter]) {
    for store in stores {
        let ups = items
            .iter()
            .map(|i| ItemUpsert {
                item: i.clone(),
                keep_vector: false,
            })
            .collect();
        store.upsert_items(ups).await.expect("upsert");
    }
    for f in filters {
        let mut want_all: Vec<String> = items
            .iter()
            .filter(|i| f.matches(i))
            .map(|i| i.id.clone())
            .collect();
        want_all.sort();
        let mut want_vec: Vec<String> = items
            .iter()
            .filter(|i| i.vector.is_some() && f.matches(i))
            .map(|i| i.id.clone())
            .collect();
        want_vec.sort();
        for store in stores {
            let (knn, popular) = matched(&**store, f).await;
            assert_eq!(knn, want_vec, "{} knn, filter {f:?}", store.backend());
            assert_eq!(
                popular,
                want_all,
                "{} popular, filter {f:?}",
                store.backend()
            );
        }
    }
}

async fn both(prefix: &str) -> Vec<Arc<dyn Store>> {
    both_with(prefix, schema()).await
}

async fn both_with(prefix: &str, schema: recd_core::Schema) -> Vec<Arc<dyn Store>> {
    let mut stores: Vec<Arc<dyn Store>> = Vec::new();
    if let Some(s) = crate::embedded::make(schema.clone(), settings()).await {
        stores.push(s);
    }
    if let Some(url) = redis_url() {
        let config = recd_store::RedisConfig {
            prefix: unique_prefix(prefix),
            ..Default::default()
        };
        let s = recd_store::RedisStore::connect(&url, schema.clone(), settings(), config)
            .await
            .expect("connect");
        stores.push(Arc::new(s));
    }
    if let Some(url) = crate::support::cluster_url() {
        let config = recd_store::RedisConfig {
            prefix: unique_prefix(prefix),
            ..Default::default()
        };
        let s = recd_store::RedisStore::connect(&url, schema, settings(), config)
            .await
            .expect("connect to the cluster");
        stores.push(Arc::new(s));
    }
    stores
}

/// Embedded, Redis and `Filter::matches` select the same items, for random catalogs and filters.
#[test]
fn random_filters_agree_with_the_reference() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(48);
    let mut runner = TestRunner::new(Config {
        cases,
        ..Config::default()
    });
    runner
        .run(
            &(catalog(), prop::collection::vec(filter(), 1..8)),
            |(items, filters)| {
                rt.block_on(async {
                    let stores = both("prop").await;
                    check_case(&stores, &items, &filters).await;
                });
                Ok(())
            },
        )
        .expect("backends agree with Filter::matches");
}

/// The same events leave the same state on both backends (session vectors within 1e-5),
/// and the same folded-in vector as recd-core computes from the items' vectors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_events_same_user_state() {
    let stores = both("session").await;
    let items: Vec<ItemUpsert> = (0..12)
        .map(|i| {
            let v = vec![
                1.0 + i as f32,
                (i % 3) as f32 - 1.0,
                (i * 7 % 5) as f32,
                0.5,
            ];
            ItemUpsert {
                item: Item {
                    id: format!("it{i}"),
                    vector: Some(v),
                    fields: BTreeMap::new(),
                },
                keep_vector: false,
            }
        })
        .collect();
    let kinds = [
        (EventType::View, None),
        (EventType::Click, None),
        (EventType::Dwell, Some(20.0)),
        (EventType::AddToCart, None),
        (EventType::Purchase, None),
        (EventType::Rating, Some(4.0)),
    ];
    // Out-of-order timestamps and an unknown item included.
    let events: Vec<_> = (0..120)
        .map(|i: i64| {
            let (kind, value) = kinds[(i as usize * 5) % kinds.len()];
            let item = if i % 17 == 0 {
                "unknown".to_string()
            } else {
                format!("it{}", (i * 7) % 12)
            };
            let t = 1_700_000_000_000 + i * 60_000 - if i % 9 == 0 { 900_000 } else { 0 };
            event(["ua", "ub"][i as usize % 2], &item, kind, value, t)
        })
        .collect();
    let mut states = Vec::new();
    for store in &stores {
        store.upsert_items(items.clone()).await.unwrap();
        for chunk in events.chunks(7) {
            store.apply_events(chunk).await.unwrap();
        }
        states.push((
            store.get_user("ua").await.unwrap().unwrap(),
            store.get_user("ub").await.unwrap().unwrap(),
            store.popular(20, &Filter::all()).await.unwrap(),
        ));
    }
    // The reference fold-in: recd-core over the whole catalog's vectors.
    let mut gram = recd_core::Gram::new(4);
    items
        .iter()
        .filter_map(|u| u.item.vector.as_deref())
        .for_each(|v| gram.add(v));
    let session = settings().session;
    let model = recd_core::FoldModel::new(&gram, &session.fold_in);
    let vector = |id: &str| {
        items
            .iter()
            .find(|u| u.item.id == id)
            .and_then(|u| u.item.vector.as_deref())
    };
    for (user, state) in states.iter().flat_map(|s| [("ua", &s.0), ("ub", &s.1)]) {
        let mut reference = UserState::default();
        for e in events.iter().filter(|e| e.user_id == user) {
            reference.apply(e, vector(&e.item_id), &session);
        }
        // the exact solve: the stores ran CG steps per batch, warm-started, towards it
        reference.refold_exact(model.as_ref(), vector);
        assert_eq!(state.fold.weights, reference.fold.weights);
        let (got, want) = (state.fold.vector.as_ref(), reference.fold.vector.as_ref());
        let (got, want) = (got.expect("folded in"), want.expect("folded in"));
        for (x, y) in got.iter().zip(want) {
            assert!(
                (x - y).abs() < 1e-4 * y.abs().max(1.0),
                "{got:?} vs {want:?}"
            );
        }
    }
    let Some((first, rest)) = states.split_first() else {
        return;
    };
    for other in rest {
        for (a, b) in [(&first.0, &other.0), (&first.1, &other.1)] {
            assert_eq!(a.counters, b.counters);
            assert_eq!(a.recent, b.recent);
            assert_eq!(a.purchased, b.purchased);
            assert_eq!(a.last_event_ms, b.last_event_ms);
            let (sa, sb) = (a.session.as_ref().unwrap(), b.session.as_ref().unwrap());
            assert_eq!(sa.updated_ms, sb.updated_ms);
            assert!((sa.weight - sb.weight).abs() < 1e-9 * sa.weight.max(1.0));
            for (x, y) in sa.sum.iter().zip(&sb.sum) {
                assert!((x - y).abs() < 1e-5, "{:?} vs {:?}", sa.sum, sb.sum);
            }
        }
        let order = |p: &Vec<recd_store::PopularHit>| {
            p.iter().map(|h| h.item.id.clone()).collect::<Vec<_>>()
        };
        assert_eq!(order(&first.2), order(&other.2));
        for (x, y) in first.2.iter().zip(&other.2) {
            assert!((x.log_score - y.log_score).abs() < 1e-9 || x.log_score == y.log_score);
        }
    }
}

/// A write of item vectors reaches the next fold-in of a user whose recent items it changed,
/// on both backends (the guard for any copy of item vectors kept between refolds).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vector_write_reaches_the_next_fold_in() {
    let stores = both("foldvec").await;
    let before: Vec<Vec<f32>> = (0..6)
        .map(|i| {
            vec![
                1.0 + i as f32,
                (i % 3) as f32 - 1.0,
                (i * 7 % 5) as f32,
                0.5,
            ]
        })
        .collect();
    // it0 and it1 trade vectors: the catalog's Gram matrix (a sum over every item) stays
    // the same, so only the two vectors themselves can change the next refold.
    let mut after = before.clone();
    after.swap(0, 1);
    let upserts = |vectors: &[Vec<f32>]| -> Vec<ItemUpsert> {
        vectors
            .iter()
            .enumerate()
            .map(|(i, v)| ItemUpsert {
                item: Item {
                    id: format!("it{i}"),
                    vector: Some(v.clone()),
                    fields: BTreeMap::new(),
                },
                keep_vector: false,
            })
            .collect()
    };
    let t = 1_700_000_000_000;
    let first = [
        event("u", "it0", EventType::Purchase, None, t),
        event("u", "it1", EventType::View, None, t + 1),
        event("u", "it2", EventType::Click, None, t + 2),
    ];
    // A batch of its own: on Redis its refold reads it0..it2 by themselves (the first
    // batch's own items came with the user's state).
    let middle = [event("u", "it4", EventType::View, None, t + 3)];
    let second = [event("u", "it3", EventType::View, None, t + 4)];
    let session = settings().session;
    let mut gram = recd_core::Gram::new(4);
    after.iter().for_each(|v| gram.add(v));
    let model = recd_core::FoldModel::new(&gram, &session.fold_in);
    let vector = |id: &str| {
        let i: usize = id.strip_prefix("it")?.parse().ok()?;
        after.get(i).map(Vec::as_slice)
    };
    let mut reference = UserState::default();
    for e in first.iter().chain(&middle).chain(&second) {
        reference.apply(e, vector(&e.item_id), &session);
    }
    reference.refold_exact(model.as_ref(), vector);
    let want = reference.fold.vector.expect("folded in");
    for store in &stores {
        store.upsert_items(upserts(&before)).await.unwrap();
        store.apply_events(&first).await.unwrap();
        store.apply_events(&middle).await.unwrap();
        // Read once: a refold over it0's and it1's first vectors.
        let folded = store.get_user("u").await.unwrap().unwrap().fold.vector;
        store.upsert_items(upserts(&after)).await.unwrap();
        store.apply_events(&second).await.unwrap();
        let state = store.get_user("u").await.unwrap().unwrap();
        let got = state.fold.vector.expect("folded in");
        assert_ne!(
            folded.as_ref(),
            Some(&got),
            "the second batch changed the vector"
        );
        // The test's catalog is 4-d and a batch takes 4 CG steps: the exact solve.
        for (x, y) in got.iter().zip(&want) {
            assert!(
                (x - y).abs() < 1e-4 * y.abs().max(1.0),
                "{got:?} vs {want:?} (the vectors after the write)"
            );
        }
    }
}

/// Scores mean the same on both backends for every metric: cosine similarity, inner
/// product, negated squared L2 distance (RediSearch returns distances; the store converts).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scores_per_metric() {
    use recd_core::Metric;
    let vectors: Vec<Vec<f32>> = (0..20)
        .map(|i| {
            let x = i as f32;
            vec![
                1.0 + x * 0.1,
                (x * 0.7).sin() * 2.0,
                (x * 1.3).cos(),
                0.5 - x * 0.05,
            ]
        })
        .collect();
    let q = [0.3f32, -1.2, 0.8, 2.0];
    for metric in [Metric::Cosine, Metric::Ip, Metric::L2] {
        let mut schema = schema();
        schema.vector.metric = metric;
        let items: Vec<ItemUpsert> = vectors
            .iter()
            .enumerate()
            .map(|(i, v)| ItemUpsert {
                item: Item {
                    id: format!("m{i}"),
                    vector: Some(v.clone()),
                    fields: BTreeMap::new(),
                },
                keep_vector: false,
            })
            .collect();
        let expected = |v: &[f32]| -> f32 {
            match metric {
                Metric::Cosine => recd_core::vector::cosine(v, &q),
                Metric::Ip => recd_core::vector::dot(v, &q),
                Metric::L2 => -v
                    .iter()
                    .zip(&q)
                    .map(|(a, b)| (a - b) * (a - b))
                    .sum::<f32>(),
            }
        };
        for store in both_with("metric", schema).await {
            store.upsert_items(items.clone()).await.unwrap();
            let hits = store.knn(&q, 20, &Filter::all()).await.unwrap();
            assert_eq!(hits.len(), 20, "{metric:?} {}", store.backend());
            assert!(
                hits.windows(2).all(|w| w[0].score >= w[1].score),
                "{metric:?} order"
            );
            for h in &hits {
                let i: usize = h.item.id[1..].parse().unwrap();
                let want = expected(&vectors[i]);
                assert!(
                    (h.score - want).abs() < 1e-4 * want.abs().max(1.0),
                    "{metric:?} {}: {} vs {want}",
                    store.backend(),
                    h.score
                );
            }
        }
    }
}
