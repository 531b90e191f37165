//! The checks every backend must pass: `async fn(store)` against the `Store` contract.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use recd_core::pipeline::RankParams;
use recd_core::pipeline::rerank::{Exclusions, exclusions};
use recd_core::popularity::log_add;
use recd_core::text::tokenize;
use recd_core::{Event, EventType, FieldValue, Filter, Item, ItemUpsert, SessionVector, UserState};
use recd_store::{Store, StoreError};
use serde_json::json;

use crate::support::{event, ids, item, schema, settings, upsert};

// The listing checks live in their own module; the suite's macro finds every check here.
pub use crate::listing::{
    events_pages, list_items_pages, list_items_under_concurrent_writes, list_users_pages,
};

fn f(v: serde_json::Value) -> Filter {
    Filter::parse(&v, &schema()).expect("valid test filter")
}

/// A small catalog with every field kind.
fn catalog() -> Vec<serde_json::Value> {
    vec![
        json!({"id":"shoe","vector":[1,0,0,0],"category":["shoes","sale"],"brand":"acme","price":50,
               "in_stock":true,"title":"Trail running shoe","popularity":3}),
        json!({"id":"boot","vector":[0.9,0.1,0,0],"category":"shoes","brand":"zeta","price":120,
               "in_stock":false,"title":"Winter boot, waterproof"}),
        json!({"id":"bag","vector":[0,1,0,0],"category":"bags","brand":"acme","price":80,
               "in_stock":true,"title":"Running belt bag"}),
        json!({"id":"hat","vector":[0,0,1,0],"category":["hats","sale"],"price":15.5,"title":"Sun hat"}),
        json!({"id":"novec","category":"shoes","brand":"acme","price":10,"in_stock":true,
               "title":"Shoe laces"}),
    ]
}

async fn load(store: &dyn Store) {
    let n = store
        .upsert_items(catalog().into_iter().map(upsert).collect())
        .await
        .expect("upsert");
    assert_eq!(n, 5);
}

/// The ids `knn` (large k) and `popular` (large k) return for `filter`, and the brute force.
async fn matches(store: &dyn Store, filter: &Filter) -> (Vec<String>, Vec<String>) {
    let hits = store
        .knn(&[0.5, 0.5, 0.5, 0.5], 1000, filter)
        .await
        .expect("knn");
    let pops = store.popular(1000, filter).await.expect("popular");
    let mut knn: Vec<String> = hits.iter().map(|h| h.item.id.clone()).collect();
    knn.sort();
    (knn, ids(pops.iter().map(|p| &p.item)))
}

pub async fn items_crud(store: &dyn Store) {
    load(store).await;
    assert_eq!(store.counts().await.unwrap().items, 5);
    let got = store
        .get_items(&["bag".into(), "missing".into(), "shoe".into()])
        .await
        .unwrap();
    assert_eq!(got[0].as_ref(), Some(&item(catalog()[2].clone())));
    assert!(got[1].is_none());
    assert_eq!(got[2].as_ref(), Some(&item(catalog()[0].clone())));

    // A catalog refresh without "vector" keeps the vector; fields are replaced whole.
    store
        .upsert_items(vec![upsert(
            json!({"id":"shoe","price":45,"title":"Road shoe"}),
        )])
        .await
        .unwrap();
    let shoe = store
        .get_items(&["shoe".into()])
        .await
        .unwrap()
        .remove(0)
        .unwrap();
    assert_eq!(shoe.vector.as_deref(), Some(&[1.0, 0.0, 0.0, 0.0][..]));
    assert_eq!(shoe.field("price"), Some(&FieldValue::Number(45.0)));
    assert!(shoe.field("brand").is_none() && shoe.field("category").is_none());
    let hits = store
        .knn(&[1.0, 0.0, 0.0, 0.0], 1, &Filter::all())
        .await
        .unwrap();
    assert_eq!(hits[0].item.id, "shoe");
    // "vector": null removes it: the item is no longer a KNN candidate.
    store
        .upsert_items(vec![upsert(json!({"id":"shoe","vector":null,"price":45}))])
        .await
        .unwrap();
    let shoe = store
        .get_items(&["shoe".into()])
        .await
        .unwrap()
        .remove(0)
        .unwrap();
    assert!(shoe.vector.is_none());
    let hits = store
        .knn(&[1.0, 0.0, 0.0, 0.0], 10, &Filter::all())
        .await
        .unwrap();
    assert!(hits.iter().all(|h| h.item.id != "shoe"));

    // A bad vector in a batch writes nothing.
    let bad = recd_core::ItemUpsert {
        item: Item {
            id: "new".into(),
            vector: Some(vec![1.0, 2.0]),
            fields: Default::default(),
        },
        keep_vector: false,
    };
    let err = store
        .upsert_items(vec![upsert(json!({"id":"other","vector":[1,1,1,1]})), bad])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    assert_eq!(
        store
            .get_items(&["other".into(), "new".into()])
            .await
            .unwrap(),
        [None, None]
    );

    // Within one batch the last write of an id wins.
    store
        .upsert_items(vec![
            upsert(json!({"id":"dup","price":1})),
            upsert(json!({"id":"dup","price":2})),
        ])
        .await
        .unwrap();
    let dup = store
        .get_items(&["dup".into()])
        .await
        .unwrap()
        .remove(0)
        .unwrap();
    assert_eq!(dup.field("price"), Some(&FieldValue::Number(2.0)));

    assert!(store.delete_item("bag").await.unwrap());
    assert!(!store.delete_item("bag").await.unwrap());
    assert_eq!(store.get_items(&["bag".into()]).await.unwrap(), [None]);
    assert_eq!(store.counts().await.unwrap().items, 5);
}

pub async fn knn_scores_and_filters(store: &dyn Store) {
    load(store).await;
    let hits = store
        .knn(&[1.0, 0.0, 0.0, 0.0], 3, &Filter::all())
        .await
        .unwrap();
    let got: Vec<&str> = hits.iter().map(|h| h.item.id.as_str()).collect();
    assert_eq!(got[..2], ["shoe", "boot"]);
    assert!(
        (hits[0].score - 1.0).abs() < 1e-5,
        "cosine of equal directions: {}",
        hits[0].score
    );
    let cos_boot = 0.9 / (0.81f32 + 0.01).sqrt();
    assert!(
        (hits[1].score - cos_boot).abs() < 1e-5,
        "{} vs {cos_boot}",
        hits[1].score
    );
    assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
    assert!(
        store.knn(&[1.0, 0.0], 3, &Filter::all()).await.is_err(),
        "wrong dimension"
    );

    let cases = [
        (json!({}), vec!["bag", "boot", "hat", "novec", "shoe"]),
        (
            json!({"category":{"any":["shoes"]}}),
            vec!["boot", "novec", "shoe"],
        ),
        (json!({"category":{"none":["shoes"]}}), vec!["bag", "hat"]),
        (json!({"brand":{"none":["acme"]}}), vec!["boot", "hat"]),
        (json!({"price":{"gt":15.5,"lte":80}}), vec!["bag", "shoe"]),
        (json!({"price":{"gte":15.5,"lt":80}}), vec!["hat", "shoe"]),
        (json!({"price":{"eq":120}}), vec!["boot"]),
        (json!({"in_stock":true}), vec!["bag", "novec", "shoe"]),
        (json!({"in_stock":false}), vec!["boot"]),
        (json!({"not":{"in_stock":true}}), vec!["boot", "hat"]),
        (json!({"title":{"match":"RUNNING"}}), vec!["bag", "shoe"]),
        (json!({"title":{"match":"running trail"}}), vec!["shoe"]),
        (json!({"title":{"match":"shoe"}}), vec!["novec", "shoe"]),
        (
            json!({"or":[{"brand":{"any":["zeta"]}},{"price":{"lt":20}}]}),
            vec!["boot", "hat", "novec"],
        ),
        (
            json!({"category":{"any":["sale"]},"not":{"price":{"lt":20}}}),
            vec!["shoe"],
        ),
        (json!({"not":{}}), vec![]),
        (
            json!({"category":{"any":["shoes"]},"price":{"lte":60}}),
            vec!["novec", "shoe"],
        ),
        (
            json!({"brand":{"any":["acme"]},"price":{"gt":60},"in_stock":true}),
            vec!["bag"],
        ),
        (json!({"category":{"any":["nothing"]}}), vec![]),
    ];
    for (filter, want) in cases {
        let parsed = f(filter.clone());
        let (knn, popular) = matches(store, &parsed).await;
        let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
        let want_vec: Vec<String> = want.iter().filter(|id| *id != "novec").cloned().collect();
        assert_eq!(popular, want, "popular, filter {filter}");
        assert_eq!(knn, want_vec, "knn, filter {filter}");
        let brute: Vec<String> = ids(catalog()
            .into_iter()
            .map(item)
            .collect::<Vec<_>>()
            .iter()
            .filter(|i| parsed.matches(i)));
        assert_eq!(brute, want, "the expectation itself, filter {filter}");
    }
}

/// Values full of query syntax come back exact and never widen a query.
pub async fn injection(store: &dyn Store) {
    let nasty = [
        "@ | { } ( ) - * \" \\ : ; , . < > [ ] ~ $ % ^ & =",
        "a | b",
        "}) | (*",
        "*",
        "-x",
        " lead",
        "trail ",
        "$p0",
        "\\",
        "{",
        "x\"y",
        "@category:{shoes}",
        "é ü 中文",
    ];
    let items: Vec<recd_core::ItemUpsert> = nasty
        .iter()
        .enumerate()
        .map(|(i, v)| {
            upsert(
                json!({"id": format!("n{i} {v}"), "vector":[1,0,0,i as f64], "category": v,
                          "brand": [v, "plain"], "title": format!("{v} word{i}")}),
            )
        })
        .chain([upsert(
            json!({"id":"plain","vector":[0,1,0,0],"category":"a","brand":"b","title":"a b"}),
        )])
        .collect();
    store.upsert_items(items).await.unwrap();
    for (i, v) in nasty.iter().enumerate() {
        let id = format!("n{i} {v}");
        let got = store
            .get_items(std::slice::from_ref(&id))
            .await
            .unwrap()
            .remove(0)
            .unwrap();
        assert_eq!(
            got.field("category"),
            Some(&FieldValue::Tags(vec![v.to_string()]))
        );
        let (knn, popular) = matches(store, &f(json!({"category":{"any":[v]}}))).await;
        assert_eq!(knn, std::slice::from_ref(&id), "tag {v:?}");
        assert_eq!(popular, std::slice::from_ref(&id), "tag {v:?}");
        let (knn, _) = matches(store, &f(json!({"category":{"none":[v]}}))).await;
        assert_eq!(knn.len(), nasty.len(), "none of {v:?}");
        let (knn, _) = matches(store, &f(json!({"brand":{"any":[v, "zzz"]}}))).await;
        assert_eq!(knn, std::slice::from_ref(&id), "brand {v:?}");
        // Text: the tokens of the value plus the item's own word.
        let text_filter = f(json!({"title":{"match": format!("{v} word{i}")}}));
        let (knn, _) = matches(store, &text_filter).await;
        assert_eq!(knn, std::slice::from_ref(&id), "text {v:?}");
        let mut terms = tokenize(v);
        terms.push(format!("word{i}"));
        let found = store
            .text_search(&terms, 100, &Filter::all())
            .await
            .unwrap();
        assert!(found.iter().any(|it| it.id == id), "text_search {v:?}");
    }
    let raw = vec![
        "a) | (*".to_string(),
        "*".to_string(),
        "@category".to_string(),
    ];
    assert!(
        store
            .text_search(&raw, 100, &Filter::all())
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn text_search(store: &dyn Store) {
    load(store).await;
    let terms = vec!["running".to_string(), "hat".to_string()];
    let found = store.text_search(&terms, 10, &Filter::all()).await.unwrap();
    assert_eq!(ids(&found), ["bag", "hat", "shoe"]);
    let found = store
        .text_search(&terms, 10, &f(json!({"brand":{"any":["acme"]}})))
        .await
        .unwrap();
    assert_eq!(ids(&found), ["bag", "shoe"]);
    let found = store.text_search(&terms, 1, &Filter::all()).await.unwrap();
    assert_eq!(found.len(), 1);
    assert!(
        store
            .text_search(&[], 10, &Filter::all())
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .text_search(&["nothing".into()], 10, &Filter::all())
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn events_and_users(store: &dyn Store) {
    load(store).await;
    assert!(store.get_user("u1").await.unwrap().is_none());
    let events = vec![
        event("u1", "shoe", EventType::View, None, 1_000),
        event("u1", "boot", EventType::Click, None, 2_000),
        event("u1", "bag", EventType::Dwell, Some(45.0), 3_000),
        event("u1", "hat", EventType::Purchase, None, 4_000),
        event("u1", "ghost", EventType::AddToCart, None, 5_000),
        event("u1", "shoe", EventType::Rating, Some(4.5), 6_000),
        event("u2", "bag", EventType::View, None, 1_500),
    ];
    store.apply_events(&events).await.unwrap();
    // The reference: UserState::apply over the same events and item vectors.
    let mut want = recd_core::UserState::default();
    for e in events.iter().filter(|e| e.user_id == "u1") {
        let vector = catalog()
            .into_iter()
            .map(item)
            .find(|i| i.id == e.item_id)
            .and_then(|i| i.vector);
        want.apply(e, vector.as_deref(), &settings().session);
    }
    let got = store.get_user("u1").await.unwrap().expect("u1 exists");
    assert_eq!(got.counters, want.counters);
    assert_eq!(got.recent, ["shoe", "ghost", "hat", "bag", "boot"]);
    assert_eq!(got.recent, want.recent);
    assert_eq!(got.purchased, ["hat"]);
    assert_eq!(got.excluded, want.excluded);
    // purchased, carted (the ghost) and rated items are excluded; viewed ones are not
    for id in ["hat", "ghost", "shoe"] {
        assert!(got.excluded.contains(id), "{id}");
    }
    assert!(!got.excluded.contains("boot") && !got.excluded.contains("bag"));
    assert_eq!(got.last_event_ms, 6_000);
    let (g, w) = (
        got.session.expect("session"),
        want.session.expect("session"),
    );
    assert_eq!(g.updated_ms, w.updated_ms);
    assert!((g.weight - w.weight).abs() < 1e-9);
    for (a, b) in g.sum.iter().zip(&w.sum) {
        assert!((a - b).abs() < 1e-5, "{:?} vs {:?}", g.sum, w.sum);
    }
    assert_eq!(store.counts().await.unwrap().users, 2);
    // The log holds every event, each user's in order (users of one batch are independent
    // units and may interleave).
    let log = store.events().await.unwrap();
    assert_eq!(log.len(), events.len());
    for u in ["u1", "u2"] {
        let of = |l: &[recd_core::Event]| {
            l.iter()
                .filter(|e| e.user_id == u)
                .cloned()
                .collect::<Vec<_>>()
        };
        assert_eq!(of(&log), of(&events), "log of {u}");
    }

    // Training write-back.
    assert_eq!(
        store
            .set_user_vectors(vec![
                ("u2".into(), vec![0.0, 1.0, 0.0, 0.0]),
                ("u9".into(), vec![1.0, 0.0, 0.0, 0.0])
            ])
            .await
            .unwrap(),
        2
    );
    let u9 = store
        .get_user("u9")
        .await
        .unwrap()
        .expect("created by training");
    assert_eq!(u9.long_term.as_deref(), Some(&[1.0, 0.0, 0.0, 0.0][..]));
    let u2 = store.get_user("u2").await.unwrap().unwrap();
    assert_eq!(
        u2.counters.view, 1,
        "a long-term vector leaves the rest alone"
    );
    assert!(
        store
            .set_user_vectors(vec![("u3".into(), vec![1.0])])
            .await
            .is_err()
    );
}

pub async fn event_log_and_forget(store: &dyn Store) {
    load(store).await;
    let a = vec![
        event("ua", "shoe", EventType::View, None, 10),
        event("ua", "bag", EventType::Purchase, None, 20),
    ];
    let b = vec![event("ub", "shoe", EventType::Rating, Some(3.5), 15)];
    store.apply_events(&a).await.unwrap();
    store.apply_events(&b).await.unwrap();
    let mut rec = event("ua", "hat", EventType::Click, None, 30);
    rec.recommendation_id = Some("rec-1".into());
    store
        .apply_events(std::slice::from_ref(&rec))
        .await
        .unwrap();
    let log = store.events().await.unwrap();
    // Each user's events in the order written, nothing lost or added. Across users the
    // order is the writes' on one log; a cluster merges its shards' logs by stream id,
    // whose milliseconds tie when shards are written within one (then the sequence
    // numbers, per stream, decide): ua's second event and ub's may come either way.
    let of = |log: &[Event], user: &str| -> Vec<Event> {
        log.iter().filter(|e| e.user_id == user).cloned().collect()
    };
    assert_eq!(of(&log, "ua"), [a[0].clone(), a[1].clone(), rec]);
    assert_eq!(of(&log, "ub"), b);
    assert_eq!(log.len(), 4, "{log:?}");

    assert!(store.delete_user("ua").await.unwrap());
    assert!(store.get_user("ua").await.unwrap().is_none());
    assert_eq!(store.events().await.unwrap(), b);
    assert!(!store.delete_user("ua").await.unwrap());
    assert_eq!(store.counts().await.unwrap().users, 1);
    // A forgotten user starts from nothing.
    store
        .apply_events(&[event("ua", "shoe", EventType::View, None, 40)])
        .await
        .unwrap();
    let ua = store.get_user("ua").await.unwrap().unwrap();
    assert_eq!((ua.counters.view, ua.counters.purchase), (1, 0));
    assert!(ua.purchased.is_empty());
}

pub async fn read_your_writes(store: &dyn Store) {
    load(store).await;
    for i in 0..20 {
        store
            .apply_events(&[event("rw", "bag", EventType::Click, None, 1000 + i)])
            .await
            .unwrap();
        let u = store.get_user("rw").await.unwrap().unwrap();
        assert_eq!(u.counters.click, (i + 1) as u64);
        let top = store.popular(1, &Filter::all()).await.unwrap();
        assert_eq!(top[0].item.id, "bag");
    }
    store
        .set_item_vectors(vec![("hat".into(), vec![0.0, 0.0, 0.0, 1.0])])
        .await
        .unwrap();
    let hits = store
        .knn(&[0.0, 0.0, 0.0, 1.0], 1, &Filter::all())
        .await
        .unwrap();
    assert_eq!(
        hits[0].item.id, "hat",
        "a new vector is visible to the next query"
    );
    store.delete_item("hat").await.unwrap();
    let hits = store
        .knn(&[0.0, 0.0, 0.0, 1.0], 10, &Filter::all())
        .await
        .unwrap();
    assert!(hits.iter().all(|h| h.item.id != "hat"));
}

pub async fn set_item_vectors(store: &dyn Store) {
    load(store).await;
    let n = store
        .set_item_vectors(vec![
            ("novec".into(), vec![0.0, 0.0, 0.0, 2.0]),
            ("shoe".into(), vec![0.0, 0.0, 0.0, 1.0]),
            ("not-an-item".into(), vec![1.0, 0.0, 0.0, 0.0]),
        ])
        .await
        .unwrap();
    assert_eq!(n, 2);
    let got = store
        .get_items(&["not-an-item".into(), "shoe".into()])
        .await
        .unwrap();
    assert!(got[0].is_none());
    let shoe = got[1].clone().unwrap();
    assert_eq!(shoe.vector.as_deref(), Some(&[0.0, 0.0, 0.0, 1.0][..]));
    assert_eq!(
        shoe.field("brand"),
        Some(&FieldValue::Tags(vec!["acme".into()]))
    );
    let hits = store
        .knn(&[0.0, 0.0, 0.0, 1.0], 2, &Filter::all())
        .await
        .unwrap();
    assert_eq!(ids(hits.iter().map(|h| &h.item)), ["novec", "shoe"]);
    // A large batch (a backend may write it in parts): every existing item, in order.
    store
        .upsert_items(
            (0..30)
                .map(|i| upsert(json!({"id": format!("w{i}"), "vector": [1, 1, 1, 1]})))
                .collect(),
        )
        .await
        .unwrap();
    let batch: Vec<(String, Vec<f32>)> = (0..40)
        .map(|i| (format!("w{i}"), vec![1.0, i as f32, 0.0, 0.5]))
        .collect();
    assert_eq!(store.set_item_vectors(batch).await.unwrap(), 30);
    let got = store
        .get_items(&["w0".into(), "w29".into(), "w35".into()])
        .await
        .unwrap();
    assert_eq!(
        got[0].as_ref().unwrap().vector.as_deref(),
        Some(&[1.0, 0.0, 0.0, 0.5][..])
    );
    assert_eq!(
        got[1].as_ref().unwrap().vector.as_deref(),
        Some(&[1.0, 29.0, 0.0, 0.5][..])
    );
    assert!(got[2].is_none());
    let err = store
        .set_item_vectors(vec![("shoe".into(), vec![0.0; 4])])
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Invalid(_)),
        "zero vector under cosine: {err}"
    );
    // Finite components whose norm overflows, or (cosine) too small to normalize: refused
    // on every write path, and nothing of the batch is written.
    for bad in [vec![1e19, 0.1, 0.0, 0.0], vec![1e-45; 4]] {
        let err = store
            .set_item_vectors(vec![("shoe".into(), bad.clone())])
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Invalid(_)), "{bad:?}: {err}");
        let item = Item {
            id: "w0".into(),
            vector: Some(bad.clone()),
            fields: Default::default(),
        };
        let err = store
            .upsert_items(vec![ItemUpsert {
                item,
                keep_vector: false,
            }])
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Invalid(_)), "{bad:?}: {err}");
        let err = store
            .set_user_vectors(vec![("u-bad".into(), bad.clone())])
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Invalid(_)), "{bad:?}: {err}");
    }
    let got = store
        .get_items(&["shoe".into(), "w0".into()])
        .await
        .unwrap();
    assert_eq!(
        got[0].as_ref().unwrap().vector.as_deref(),
        Some(&[0.0, 0.0, 0.0, 1.0][..])
    );
    assert_eq!(
        got[1].as_ref().unwrap().vector.as_deref(),
        Some(&[1.0, 0.0, 0.0, 0.5][..])
    );
}

pub async fn popularity(store: &dyn Store) {
    load(store).await;
    let p = settings();
    let w = &p.session.weights;
    // Untouched items rank last with -inf.
    let all = store.popular(10, &Filter::all()).await.unwrap();
    assert_eq!(all.len(), 5);
    assert!(all.iter().all(|h| h.log_score == f64::NEG_INFINITY));

    let t0 = 1_700_000_000_000;
    let events = vec![
        event("p1", "hat", EventType::View, None, t0),
        event("p1", "bag", EventType::Purchase, None, t0),
        event("p2", "hat", EventType::View, None, t0 + 1000),
        event("p2", "boot", EventType::AddToCart, None, t0),
        event("p3", "later", EventType::Click, None, t0),
        event("p3", "shoe", EventType::Skip, None, t0),
        event("p3", "shoe", EventType::Hide, None, t0),
    ];
    store.apply_events(&events).await.unwrap();
    let top = store.popular(10, &Filter::all()).await.unwrap();
    let order: Vec<&str> = top.iter().map(|h| h.item.id.as_str()).collect();
    assert_eq!(order[..3], ["bag", "boot", "hat"]);
    let inc = |kind, value, t| {
        p.popularity
            .log_increment(w.weight(kind, value), t)
            .unwrap()
    };
    let hat = log_add(
        inc(EventType::View, None, t0),
        inc(EventType::View, None, t0 + 1000),
    );
    assert!(
        (top[2].log_score - hat).abs() < 1e-9,
        "{} vs {hat}",
        top[2].log_score
    );
    assert_eq!(
        top[3].log_score,
        f64::NEG_INFINITY,
        "a skip (negative weight) and a hide (zero) add nothing"
    );
    let sale = store
        .popular(10, &f(json!({"category":{"any":["sale"]}})))
        .await
        .unwrap();
    assert_eq!(
        sale.iter().map(|h| h.item.id.as_str()).collect::<Vec<_>>(),
        ["hat", "shoe"]
    );
    // An item that arrives after its events starts from nothing: events of ids that are
    // not items make no popularity entry.
    store
        .upsert_items(vec![upsert(json!({"id":"later","price":1}))])
        .await
        .unwrap();
    let top = store.popular(10, &Filter::all()).await.unwrap();
    let later = top.iter().find(|h| h.item.id == "later").expect("listed");
    assert_eq!(later.log_score, f64::NEG_INFINITY, "{top:?}");
    // and its events from now on count
    store
        .apply_events(&[event("p3", "later", EventType::Click, None, t0)])
        .await
        .unwrap();
    let top = store.popular(4, &Filter::all()).await.unwrap();
    assert_eq!(
        top[3].item.id, "later",
        "a click outweighs nothing: {top:?}"
    );
    let click = inc(EventType::Click, None, t0);
    assert!((top[3].log_score - click).abs() < 1e-9);
}

pub async fn concurrent_events_one_user(store: Arc<dyn Store>) {
    load(&*store).await;
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..8 {
        let store = store.clone();
        tasks.spawn(async move {
            for i in 0..50 {
                let item = ["shoe", "boot", "bag", "hat"][(t + i) % 4];
                let kind = if i % 10 == 0 {
                    EventType::Purchase
                } else {
                    EventType::View
                };
                store
                    .apply_events(&[event("hot", item, kind, None, (t * 1000 + i) as i64)])
                    .await
                    .expect("apply under contention");
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("task");
    }
    let u = store.get_user("hot").await.unwrap().unwrap();
    assert_eq!(u.counters.view, 8 * 45);
    assert_eq!(u.counters.purchase, 8 * 5);
    assert_eq!(store.events().await.unwrap().len(), 400);
    assert_eq!(u.recent.len(), 4);
    // Every event moved the session: its weight is the decayed sum of 400 events, which
    // exceeds what any lost update would leave.
    let s = u.session.unwrap();
    let p = settings().session;
    let min_weight: f64 = (0..400).map(|_| p.weights.view * p.decay(8_000)).sum();
    assert!(s.weight >= min_weight * 0.99, "{} < {min_weight}", s.weight);
}

/// The session the logged events of `user` give with the store's current item vectors.
async fn replayed_session(store: &dyn Store, user: &str) -> Option<SessionVector> {
    let events: Vec<Event> = store
        .events()
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.user_id == user)
        .collect();
    let mut ids: Vec<String> = events.iter().map(|e| e.item_id.clone()).collect();
    ids.sort();
    ids.dedup();
    let items = store.get_items(&ids).await.unwrap();
    let vectors: HashMap<&str, Vec<f32>> = ids
        .iter()
        .zip(items)
        .filter_map(|(id, it)| Some((id.as_str(), it?.vector?)))
        .collect();
    UserState::session_from(
        &events,
        |item| vectors.get(item).map(Vec::as_slice),
        &settings().session,
    )
}

/// After the item vectors change, a rebuilt session is the one the user's events give with
/// the new vectors; nothing else about the user changes; unknown users are not created.
pub async fn rebuild_sessions(store: &dyn Store) {
    load(store).await;
    store
        .apply_events(&[
            event("rb", "shoe", EventType::Click, None, 1_000),
            event("rb", "bag", EventType::View, None, 2_000),
            event("rb", "hat", EventType::Purchase, None, 2_500),
            event("rb", "gone", EventType::View, None, 2_600),
            event("other", "boot", EventType::View, None, 1_000),
        ])
        .await
        .unwrap();
    store
        .set_user_vectors(vec![("rb".into(), vec![0.5, 0.5, 0.0, 0.0])])
        .await
        .unwrap();
    let before = store.get_user("rb").await.unwrap().unwrap();
    let old_session = before.session.clone().unwrap();
    // a new model: every item moves
    store
        .set_item_vectors(vec![
            ("shoe".into(), vec![0.0, 0.0, 0.0, 1.0]),
            ("bag".into(), vec![0.0, 0.0, 1.0, 0.0]),
            ("hat".into(), vec![0.0, 1.0, 0.0, 0.0]),
            ("boot".into(), vec![1.0, 0.0, 0.0, 0.0]),
        ])
        .await
        .unwrap();
    let n = store
        .rebuild_sessions(&["rb".into(), "ghost".into(), "rb".into()])
        .await
        .unwrap();
    assert_eq!(n, 1, "one known user, asked twice");
    assert!(store.get_user("ghost").await.unwrap().is_none());
    let after = store.get_user("rb").await.unwrap().unwrap();
    let rebuilt = after.session.clone().unwrap();
    assert_eq!(Some(&rebuilt), replayed_session(store, "rb").await.as_ref());
    assert_ne!(rebuilt.sum, old_session.sum);
    // purchase (hat) > click (shoe) > view (bag), now along the new axes
    let d = rebuilt.direction().unwrap();
    assert!(d[1] > d[3] && d[3] > d[2] && d[0].abs() < 1e-6, "{d:?}");
    assert_eq!(
        (rebuilt.weight, rebuilt.updated_ms),
        (old_session.weight, old_session.updated_ms)
    );
    let unchanged = |u: &UserState| {
        (
            u.long_term.clone(),
            u.counters.clone(),
            u.recent.clone(),
            u.purchased.clone(),
            u.last_event_ms,
        )
    };
    assert_eq!(unchanged(&after), unchanged(&before));
    // the other user was not asked for: still the old session
    let other = store.get_user("other").await.unwrap().unwrap();
    assert_ne!(other.session, replayed_session(store, "other").await);
    // a user none of whose items has a vector any more has no session
    store.delete_item("boot").await.unwrap();
    assert_eq!(store.rebuild_sessions(&["other".into()]).await.unwrap(), 1);
    let other = store.get_user("other").await.unwrap().unwrap();
    assert_eq!((other.session, other.counters.view), (None, 1));
    // events after a rebuild build on it
    store
        .apply_events(&[event("rb", "bag", EventType::AddToCart, None, 3_000)])
        .await
        .unwrap();
    let later = store.get_user("rb").await.unwrap().unwrap();
    assert_eq!(later.session, replayed_session(store, "rb").await);
    assert_eq!(store.rebuild_sessions(&[]).await.unwrap(), 0);
}

/// Rebuilds racing events on the same users: every event is counted exactly once, so the
/// final session is exactly the one all the logged events give. The rebuilds stop halfway
/// through the events, so that what the last rebuild of each user got wrong (an event lost
/// between reading the log and writing, or counted twice) is not repaired by a later one.
pub async fn rebuild_sessions_race_events(store: Arc<dyn Store>) {
    const EVENTS: usize = 60;
    load(&*store).await;
    let users: Vec<String> = (0..4).map(|u| format!("race-{u}")).collect();
    let applied = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    // The event tasks start with the first rebuild, not before it: on a multi-threaded
    // runtime they could otherwise pass halfway before this task got a core (CI saw it).
    let start = Arc::new(tokio::sync::Barrier::new(users.len() + 1));
    let mut tasks = tokio::task::JoinSet::new();
    for (t, user) in users.iter().enumerate() {
        let (store, user, applied, start) =
            (store.clone(), user.clone(), applied.clone(), start.clone());
        tasks.spawn(async move {
            start.wait().await;
            for i in 0..EVENTS {
                let item = ["shoe", "boot", "bag", "hat"][(t + i) % 4];
                let e = event(&user, item, EventType::Click, None, (1_000 * i) as i64);
                store
                    .apply_events(&[e])
                    .await
                    .expect("apply during rebuilds");
                applied.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        });
    }
    let half = users.len() * EVENTS / 2;
    start.wait().await;
    loop {
        let n = store
            .rebuild_sessions(&users)
            .await
            .expect("rebuild during events");
        assert!(n <= users.len());
        if applied.load(std::sync::atomic::Ordering::SeqCst) >= half {
            break;
        }
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("event task");
    }
    for user in &users {
        let u = store.get_user(user).await.unwrap().unwrap();
        assert_eq!(u.counters.click, EVENTS as u64);
        assert_eq!(u.session, replayed_session(&*store, user).await, "{user}");
    }
}

/// A tag + range filter whose nearest tag matches mostly fail the range: the k nearest
/// items passing both are still found, exactly.
pub async fn knn_tag_and_range(store: &dyn Store) {
    let items = (0..60)
        .map(|i| {
            upsert(
                json!({"id": format!("r{i}"), "vector": [1.0, i as f64 / 10.0, 0, 0],
                          "category": if i % 2 == 0 { "even" } else { "odd" }, "price": i}),
            )
        })
        .collect();
    store.upsert_items(items).await.unwrap();
    let q = [1.0, 0.0, 0.0, 0.0];
    for (price, k, want) in [
        (json!({"gte": 50}), 2, vec!["r50", "r52"]),
        (
            json!({"gte": 50}),
            10,
            vec!["r50", "r52", "r54", "r56", "r58"],
        ),
        (json!({"lt": 6}), 2, vec!["r0", "r2"]),
        (json!({"gt": 100}), 5, vec![]),
    ] {
        let filter = f(json!({"category":{"any":["even"]},"price": price}));
        let hits = store.knn(&q, k, &filter).await.unwrap();
        let got: Vec<&str> = hits.iter().map(|h| h.item.id.as_str()).collect();
        assert_eq!(got, want, "price {price}, k {k}");
    }
}

/// The reference `popular` answer: matching live items by log-score (touched first, in
/// order), the untouched ones after them in any order.
struct PopularReference {
    /// (id, log score) of every live item.
    items: Vec<(Item, f64)>,
}

impl PopularReference {
    fn check(&self, label: &str, got: &[recd_store::PopularHit], k: usize, filter: &Filter) {
        let mut want: Vec<&(Item, f64)> = self
            .items
            .iter()
            .filter(|(i, _)| filter.matches(i))
            .collect();
        want.sort_by(|a, b| b.1.total_cmp(&a.1));
        assert_eq!(got.len(), k.min(want.len()), "{label}: count");
        let touched = want.iter().filter(|(_, s)| s.is_finite()).count();
        for (n, hit) in got.iter().enumerate() {
            assert!(
                filter.matches(&hit.item),
                "{label}: {} does not match",
                hit.item.id
            );
            if n < touched {
                let (item, score) = want[n];
                assert_eq!(hit.item.id, item.id, "{label}: position {n}");
                assert!(
                    (hit.log_score - score).abs() < 1e-9,
                    "{label}: {} scores {} vs {score}",
                    item.id,
                    hit.log_score
                );
                assert_eq!(*hit.item, *item, "{label}: the item's fields");
            } else {
                assert_eq!(
                    hit.log_score,
                    f64::NEG_INFINITY,
                    "{label}: {} is untouched",
                    hit.item.id
                );
            }
        }
        let ids: BTreeSet<&str> = got.iter().map(|h| h.item.id.as_str()).collect();
        assert_eq!(ids.len(), got.len(), "{label}: duplicates");
        if k >= want.len() {
            let all: BTreeSet<&str> = want.iter().map(|(i, _)| i.id.as_str()).collect();
            assert_eq!(ids, all, "{label}: every match");
        }
    }
}

/// `popular` equals the reference over a catalog big enough for every strategy a backend
/// may use (whole-ranking walk, per-tag rankings, an index lookup for selective filters,
/// untouched items filling up), after events, tag changes, deletes and late items.
pub async fn popular_matches_the_reference(store: &dyn Store) {
    let p = settings();
    let n = 2000usize;
    let make = |i: usize, category: String| {
        let mut v = json!({"id": format!("p{i}"), "category": category, "brand": format!("b{}", i % 13),
                           "price": i as f64 / 2.0, "title": format!("thing w{} z{}", i % 11, i % 3)});
        if i % 3 != 2 {
            v["in_stock"] = json!(i.is_multiple_of(3));
        }
        v
    };
    store
        .upsert_items(
            (0..n)
                .map(|i| upsert(make(i, format!("c{}", i % 7))))
                .collect(),
        )
        .await
        .unwrap();
    // Three quarters of the items get 1-5 events each (distinct times, so no ties), plus
    // events for ids that are not items (yet).
    let t0 = 1_700_000_000_000i64;
    let kinds = [
        EventType::View,
        EventType::Click,
        EventType::AddToCart,
        EventType::Purchase,
    ];
    let mut events = Vec::new();
    for i in (0..n).filter(|i| i % 4 != 0) {
        for j in 0..(1 + i * 7919 % 5) {
            events.push((format!("p{i}"), kinds[(i + j) % 4]));
        }
    }
    for g in 0..30 {
        events.push((format!("ghost{g}"), EventType::Click));
    }
    let mut scores: std::collections::HashMap<String, f64> = Default::default();
    let mut batch = Vec::new();
    for (m, (item, kind)) in events.iter().enumerate() {
        let t = t0 + 1000 * ((m * 104_729) % events.len()) as i64;
        let inc = p
            .popularity
            .log_increment(p.session.weights.weight(*kind, None), t)
            .unwrap();
        let s = scores.entry(item.clone()).or_insert(f64::NEG_INFINITY);
        *s = log_add(*s, inc);
        batch.push(event(&format!("u{}", m % 97), item, *kind, None, t));
    }
    for chunk in batch.chunks(500) {
        store.apply_events(chunk).await.unwrap();
    }
    // Tag changes after the events, deletes, and items that arrive after their events.
    let moved: Vec<usize> = (0..n).filter(|i| i % 10 == 1).collect();
    store
        .upsert_items(
            moved
                .iter()
                .map(|&i| upsert(make(i, format!("c{}", (i + 3) % 7))))
                .collect(),
        )
        .await
        .unwrap();
    for i in (0..n).filter(|i| i % 50 == 7) {
        assert!(store.delete_item(&format!("p{i}")).await.unwrap());
    }
    store
        .upsert_items(
            (0..10)
                .map(|g| upsert(json!({"id": format!("ghost{g}"), "category": "c1", "price": 3})))
                .collect(),
        )
        .await
        .unwrap();

    let mut items: Vec<(Item, f64)> = Vec::new();
    for i in (0..n).filter(|i| i % 50 != 7) {
        let category = if i % 10 == 1 { (i + 3) % 7 } else { i % 7 };
        let it = item(make(i, format!("c{category}")));
        let s = scores.get(&it.id).copied().unwrap_or(f64::NEG_INFINITY);
        items.push((it, s));
    }
    for g in 0..10 {
        // Events of ids that were not items made no popularity entry: an item that
        // arrives later starts from nothing.
        let it = item(json!({"id": format!("ghost{g}"), "category": "c1", "price": 3}));
        assert!(scores.contains_key(&it.id));
        items.push((it, f64::NEG_INFINITY));
    }
    let reference = PopularReference { items };
    let filters = [
        json!({}),
        json!({"category":{"any":["c1"]}}),
        json!({"category":{"any":["c1","c4","nothing"]}}),
        json!({"category":{"any":["c2"]},"price":{"gte":100,"lt":700}}),
        json!({"category":{"any":["c3"]},"in_stock":true}),
        json!({"in_stock":false,"brand":{"any":["b5"]}}),
        json!({"price":{"gte":100,"lt":104}}),
        json!({"price":{"gte":0,"lt":800}}),
        json!({"title":{"match":"w3 z1"}}),
        json!({"not":{"category":{"any":["c1"]}}}),
        json!({"or":[{"brand":{"any":["b1"]}},{"price":{"lt":20}}]}),
        json!({"category":{"none":["c0","c1","c2","c3","c4","c5"]}}),
        json!({"category":{"any":["c6"]},"brand":{"any":["b6"]},"price":{"gt":900}}),
        json!({"brand":{"any":["nobody"]}}),
        json!({"not":{}}),
    ];
    for filter in filters {
        let parsed = f(filter.clone());
        for k in [1, 10, 100, 5000] {
            let got = store.popular(k, &parsed).await.expect("popular");
            reference.check(
                &format!("{} k {k} {filter}", store.backend()),
                &got,
                k,
                &parsed,
            );
        }
    }
}

/// Many users' concurrent events on the same items: no popularity increment is lost.
pub async fn concurrent_events_one_item(store: Arc<dyn Store>) {
    load(&*store).await;
    let p = settings();
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..8 {
        let store = store.clone();
        tasks.spawn(async move {
            for i in 0..25 {
                let ts = 1_700_000_000_000 + (t * 1000 + i) as i64;
                store
                    .apply_events(&[
                        event(&format!("w{t}"), "bag", EventType::View, None, ts),
                        event(&format!("x{t}-{i}"), "hat", EventType::Click, None, ts),
                    ])
                    .await
                    .expect("apply under contention");
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("task");
    }
    let inc = |kind, t| {
        p.popularity
            .log_increment(p.session.weights.weight(kind, None), t)
            .unwrap()
    };
    let (mut bag, mut hat) = (f64::NEG_INFINITY, f64::NEG_INFINITY);
    for t in 0..8 {
        for i in 0..25 {
            let ts = 1_700_000_000_000 + (t * 1000 + i) as i64;
            bag = log_add(bag, inc(EventType::View, ts));
            hat = log_add(hat, inc(EventType::Click, ts));
        }
    }
    let top = store.popular(2, &Filter::all()).await.unwrap();
    let got: Vec<(&str, f64)> = top
        .iter()
        .map(|h| (h.item.id.as_str(), h.log_score))
        .collect();
    assert_eq!(got.len(), 2);
    for (id, want) in [("hat", hat), ("bag", bag)] {
        let (_, score) = got
            .iter()
            .find(|(i, _)| *i == id)
            .expect("both items on top");
        assert!((score - want).abs() < 1e-9, "{id}: {score} vs {want}");
    }
    let sale = store
        .popular(1, &f(json!({"category":{"any":["sale"]}})))
        .await
        .unwrap();
    assert_eq!(sale[0].item.id, "hat");
    assert!((sale[0].log_score - hat).abs() < 1e-9);
}

/// The model registry: monotonic version numbers, chunks stored and read back byte for
/// byte, records listed oldest first once written, the live version recorded (only for a
/// recorded version) and never deleted, and a deleted version gone with its chunks.
pub async fn model_registry(store: &dyn Store) {
    use recd_store::{ModelRecord, ModelRegistry};

    assert_eq!(
        store.models().await.expect("models"),
        ModelRegistry::default()
    );
    let a = store.next_model_seq().await.expect("seq");
    let b = store.next_model_seq().await.expect("seq");
    assert!(b > a, "version numbers grow: {a} then {b}");

    // Binary chunks (every byte value, and one large enough to matter) round-trip.
    let small: Vec<u8> = (0..=255u8).collect();
    let large: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    store
        .put_model_chunk(a, 0, small.clone())
        .await
        .expect("chunk");
    store
        .put_model_chunk(a, 1, large.clone())
        .await
        .expect("chunk");
    store
        .put_model_chunk(b, 0, vec![7, 7])
        .await
        .expect("chunk");
    assert_eq!(store.model_chunk(a, 0).await.expect("read"), Some(small));
    assert_eq!(store.model_chunk(a, 1).await.expect("read"), Some(large));
    assert_eq!(store.model_chunk(a, 2).await.expect("read"), None);
    // replacing a chunk
    store.put_model_chunk(b, 0, vec![8]).await.expect("chunk");
    assert_eq!(store.model_chunk(b, 0).await.expect("read"), Some(vec![8]));

    // Chunks alone are not a listed version.
    assert!(store.models().await.expect("models").models.is_empty());
    // Marking an unrecorded version live is refused.
    assert!(matches!(
        store.set_live_model(a).await,
        Err(StoreError::Invalid(_))
    ));

    let rec = |seq: u64, chunks: u32, note: &str| ModelRecord {
        seq,
        chunks,
        info: json!({"note": note, "quote": "it's \"x\"", "n": 1.5}),
    };
    store.put_model(rec(b, 1, "second")).await.expect("record");
    store.put_model(rec(a, 2, "first")).await.expect("record");
    let listed = store.models().await.expect("models");
    assert_eq!(listed.models, vec![rec(a, 2, "first"), rec(b, 1, "second")]);
    assert_eq!(listed.live, None);
    // replacing a record
    store
        .put_model(rec(a, 2, "first, gated"))
        .await
        .expect("record");

    store.set_live_model(a).await.expect("live");
    assert_eq!(store.models().await.expect("models").live, Some(a));
    assert!(matches!(
        store.delete_model(a).await,
        Err(StoreError::Invalid(_))
    ));
    store.set_live_model(b).await.expect("live");
    assert!(store.delete_model(a).await.expect("delete"));
    assert!(!store.delete_model(a).await.expect("delete again"));
    assert_eq!(store.model_chunk(a, 0).await.expect("read"), None);
    assert_eq!(store.model_chunk(a, 1).await.expect("read"), None);
    let listed = store.models().await.expect("models");
    assert_eq!(listed.models, vec![rec(b, 1, "second")]);
    assert_eq!(listed.live, Some(b));
    assert_eq!(store.model_chunk(b, 0).await.expect("read"), Some(vec![8]));
    // numbers are never reused, even after a delete
    assert!(store.next_model_seq().await.expect("seq") > b);
}

/// A version's transition table: written before the version is recorded, read back for
/// the recent items once it is live (ids with quotes, spaces, colons and non-ASCII passed
/// as they are), switched by `set_live_model` (a rollback brings the older table back),
/// and deleted with its version.
pub async fn model_transitions(store: &dyn Store) {
    use recd_store::ModelRecord;

    let items = |ids: &[&str]| ids.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let list = |v: &[(&str, f32)]| {
        v.iter()
            .map(|(b, p)| (b.to_string(), *p))
            .collect::<Vec<_>>()
    };
    // nothing live: no successors
    assert_eq!(
        store.transitions(&items(&["a", "b"])).await.expect("read"),
        vec![Vec::<(String, f32)>::new(); 2]
    );
    let a = store.next_model_seq().await.expect("seq");
    let odd = "it's \"x\" :é *";
    store
        .put_model_transitions(
            a,
            vec![
                ("a".into(), list(&[("b", 0.75), (odd, 0.25)])),
                (odd.into(), list(&[("a", 1.0)])),
            ],
        )
        .await
        .expect("write");
    // a second batch of the same version adds items (and replaces a list)
    store
        .put_model_transitions(
            a,
            vec![
                ("b".into(), list(&[("c", 1.0)])),
                ("a".into(), list(&[("b", 0.5), (odd, 0.5)])),
            ],
        )
        .await
        .expect("write");
    let rec = |seq: u64| ModelRecord {
        seq,
        chunks: 0,
        info: json!({}),
    };
    store.put_model(rec(a)).await.expect("record");
    // recorded, not live: still nothing served
    assert!(store.transitions(&items(&["a"])).await.expect("read")[0].is_empty());
    store.set_live_model(a).await.expect("live");
    assert_eq!(
        store
            .transitions(&items(&["b", "nope", "a", odd]))
            .await
            .expect("read"),
        vec![
            list(&[("c", 1.0)]),
            vec![],
            list(&[("b", 0.5), (odd, 0.5)]),
            list(&[("a", 1.0)]),
        ]
    );
    assert!(store.transitions(&[]).await.expect("read").is_empty());

    // a newer version with its own table takes over when it goes live...
    let b = store.next_model_seq().await.expect("seq");
    store
        .put_model_transitions(b, vec![("a".into(), list(&[("z", 1.0)]))])
        .await
        .expect("write");
    store.put_model(rec(b)).await.expect("record");
    assert_eq!(
        store.transitions(&items(&["a"])).await.expect("read")[0],
        list(&[("b", 0.5), (odd, 0.5)]),
        "writing a version's table leaves the live one serving"
    );
    store.set_live_model(b).await.expect("live");
    assert_eq!(
        store.transitions(&items(&["a", "b"])).await.expect("read"),
        vec![list(&[("z", 1.0)]), vec![]]
    );
    // ...and a rollback brings the older one back
    store.set_live_model(a).await.expect("live");
    assert_eq!(
        store.transitions(&items(&["b"])).await.expect("read")[0],
        list(&[("c", 1.0)])
    );
    // a deleted version takes its table along
    store.set_live_model(b).await.expect("live");
    assert!(store.delete_model(a).await.expect("delete"));
    let c = store.next_model_seq().await.expect("seq");
    store.put_model(rec(c)).await.expect("record");
    store.set_live_model(c).await.expect("live");
    assert!(store.transitions(&items(&["a"])).await.expect("read")[0].is_empty());
    assert!(matches!(
        store
            .put_model_transitions(c, vec![("a".into(), list(&[(&"x".repeat(70_000), 1.0)]))])
            .await,
        Err(StoreError::Invalid(_))
    ));
}

/// The default settings (for checks listed with their settings).
pub fn default_settings() -> recd_store::ModelSettings {
    settings()
}

/// Settings of [`exclusions_are_exact_and_bounded`]: room for 300 exclusions.
pub fn small_exclusions() -> recd_store::ModelSettings {
    let mut s = settings();
    s.session.excluded_capacity = 300;
    s
}

/// Settings of [`users_stay_while_active`]: an hour of inactivity forgets a user.
pub fn hour_ttl() -> recd_store::ModelSettings {
    let mut s = settings();
    s.session.ttl_seconds = 3600;
    s
}

/// With [`small_exclusions`]: every rated, purchased, hidden or disliked item is excluded,
/// far past the 200 recent items, up to the capacity (oldest dropped first); views and
/// skips are not. Both backends agree with `UserState::apply` exactly.
pub async fn exclusions_are_exact_and_bounded(store: &dyn Store) {
    load(store).await;
    let mut events: Vec<Event> = (0..350)
        .map(|i| {
            event(
                "heavy",
                &format!("r{i}"),
                EventType::Rating,
                Some(1.0 + (i % 4) as f64),
                i,
            )
        })
        .collect();
    events.push(event("heavy", "shoe", EventType::Hide, None, 400));
    events.push(event("heavy", "boot", EventType::Dislike, None, 401));
    events.push(event("heavy", "bag", EventType::Skip, None, 402));
    events.push(event("heavy", "hat", EventType::View, None, 403));
    store.apply_events(&events).await.unwrap();
    let got = store.get_user("heavy").await.unwrap().unwrap();
    let mut want = UserState::default();
    for e in &events {
        let v = catalog()
            .into_iter()
            .map(item)
            .find(|i| i.id == e.item_id)
            .and_then(|i| i.vector);
        want.apply(e, v.as_deref(), &small_exclusions().session);
    }
    assert_eq!(got.excluded, want.excluded);
    assert_eq!(got.excluded.len(), 300);
    // 352 exclusions in a capacity of 300: r0..r51 were dropped, oldest first
    assert!(!got.excluded.contains("r51") && got.excluded.contains("r52"));
    assert!(
        got.excluded.contains("r349")
            && got.excluded.contains("shoe")
            && got.excluded.contains("boot")
    );
    assert!(!got.excluded.contains("bag") && !got.excluded.contains("hat"));
    assert_eq!(got.recent.len(), 200);
    assert_eq!(got.counters, want.counters);
    assert_eq!(
        (
            got.counters.rating,
            got.counters.hide,
            got.counters.dislike,
            got.counters.skip
        ),
        (350, 1, 1, 1)
    );
    assert_eq!(got.event_count(), 354);
}

/// Events for ids that are not items count for the user but make no popularity entry
/// (an item that arrives later starts from nothing); events for items do.
pub async fn unknown_items_are_not_popular(store: &dyn Store) {
    load(store).await;
    store
        .apply_events(&[
            event("anon", "nope", EventType::Purchase, None, 1_000),
            event("anon", "hat", EventType::View, None, 1_000),
        ])
        .await
        .unwrap();
    let u = store.get_user("anon").await.unwrap().unwrap();
    assert_eq!((u.counters.purchase, u.counters.view), (1, 1));
    assert!(u.excluded.contains("nope"));
    store
        .upsert_items(vec![upsert(
            json!({"id":"nope","category":"hats","price":1}),
        )])
        .await
        .unwrap();
    let top = store.popular(10, &Filter::all()).await.unwrap();
    let score = |id: &str| top.iter().find(|h| h.item.id == id).map(|h| h.log_score);
    assert!(score("hat").is_some_and(f64::is_finite));
    assert_eq!(score("nope"), Some(f64::NEG_INFINITY));
}

/// With [`hour_ttl`]: a sweep as of now keeps users who just wrote, and every write
/// stamps `active_ms` with the store's clock (not the event's timestamp, which may be
/// years old for imported history).
pub async fn users_stay_while_active(store: &dyn Store) {
    load(store).await;
    let before = now_ms();
    store
        .apply_events(&[event("recent", "hat", EventType::View, None, 5)])
        .await
        .unwrap();
    store
        .set_user_vectors(vec![("trained".into(), vec![1.0, 0.0, 0.0, 0.0])])
        .await
        .unwrap();
    let after = now_ms();
    for id in ["recent", "trained"] {
        let u = store.get_user(id).await.unwrap().unwrap();
        assert!(
            (before..=after).contains(&u.active_ms),
            "{id}: {}",
            u.active_ms
        );
    }
    let mut expired = 0;
    loop {
        let e = store.expire_users(now_ms()).await.unwrap();
        expired += e.users;
        if e.pass_done {
            break;
        }
    }
    assert_eq!(expired, 0);
    assert_eq!(store.counts().await.unwrap().users, 2);
    assert!(store.get_user("recent").await.unwrap().is_some());
}

/// The wall clock in ms.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

/// New items (`touch_new_items`, `set_new_item_vectors`): only items without a vector, or
/// with a provisional one, keep interaction lists (positive weights summed per user, most
/// recent first); a provisional vector never replaces a client's or training's, and a
/// vector training writes ends the item's newness.
pub async fn new_items(store: &dyn Store) {
    load(store).await;
    let t = |i: &str, u: &str, w: f32| (i.to_string(), u.to_string(), w);
    let lists = store
        .touch_new_items(&[
            t("novec", "a", 1.0),
            t("shoe", "a", 1.0),
            t("not-an-item", "a", 1.0),
            t("novec", "b", 2.0),
            t("novec", "a", 0.5),
            t("novec", "c", -1.0),
        ])
        .await
        .unwrap();
    let list = |pairs: &[(&str, f32)]| -> Vec<(String, f32)> {
        pairs.iter().map(|(u, w)| (u.to_string(), *w)).collect()
    };
    assert_eq!(
        lists,
        vec![("novec".to_string(), list(&[("a", 1.5), ("b", 2.0)]))]
    );
    let shoe_before = store.get_items(&["shoe".into()]).await.unwrap()[0]
        .clone()
        .unwrap()
        .vector;
    let n = store
        .set_new_item_vectors(vec![
            ("novec".into(), vec![0.0, 0.0, 0.0, 1.0]),
            ("shoe".into(), vec![1.0, 0.0, 0.0, 0.0]),
            ("not-an-item".into(), vec![1.0, 0.0, 0.0, 0.0]),
        ])
        .await
        .unwrap();
    assert_eq!(n, 1);
    let got = store
        .get_items(&["novec".into(), "shoe".into()])
        .await
        .unwrap();
    let vec_of = |i: usize| got[i].clone().unwrap().vector;
    assert_eq!(vec_of(0).as_deref(), Some(&[0.0, 0.0, 0.0, 1.0][..]));
    assert_eq!(vec_of(1), shoe_before);
    let hits = store
        .knn(&[0.0, 0.0, 0.0, 1.0], 1, &Filter::all())
        .await
        .unwrap();
    assert_eq!(ids(hits.iter().map(|h| &h.item)), ["novec"]);
    // With a provisional vector it is still new: its list goes on, a new vector replaces it.
    let lists = store
        .touch_new_items(&[t("novec", "c", 1.0)])
        .await
        .unwrap();
    assert_eq!(
        lists,
        vec![(
            "novec".to_string(),
            list(&[("c", 1.0), ("a", 1.5), ("b", 2.0)])
        )]
    );
    let n = store
        .set_new_item_vectors(vec![("novec".into(), vec![0.0, 0.0, 1.0, 0.0])])
        .await
        .unwrap();
    assert_eq!(n, 1);
    // Training's vector: no longer new, and never replaced by a provisional one.
    store
        .set_item_vectors(vec![("novec".into(), vec![0.0, 0.0, 0.0, 3.0])])
        .await
        .unwrap();
    assert!(
        store
            .touch_new_items(&[t("novec", "d", 1.0)])
            .await
            .unwrap()
            .is_empty()
    );
    let n = store
        .set_new_item_vectors(vec![("novec".into(), vec![1.0, 0.0, 0.0, 0.0])])
        .await
        .unwrap();
    assert_eq!(n, 0);
    let got = store.get_items(&["novec".into()]).await.unwrap();
    assert_eq!(
        got[0].clone().unwrap().vector.as_deref(),
        Some(&[0.0, 0.0, 0.0, 3.0][..])
    );
}

/// The ids `knn_excluding` returns.
async fn knn_ids_excluding(
    store: &dyn Store,
    exclude: &Exclusions<'_>,
    k: usize,
    filter: &Filter,
    explain: bool,
) -> Vec<String> {
    let q = [1.0, 0.5, 0.1, 0.0];
    let (hits, _) = store
        .knn_excluding(&q, k, filter, exclude, explain)
        .await
        .unwrap();
    hits.iter().map(|h| h.item.id.clone()).collect()
}

/// `knn_excluding` leaves out what a user's exclusions name — by id (the request's, the
/// seen items) and by key (their exclusion set, here a rating) — and still returns the `k`
/// best of the rest, as many as exist, with or without `explain`.
pub async fn knn_leaves_out_the_excluded(store: &dyn Store) {
    load(store).await;
    store
        .apply_events(&[
            event("picky", "shoe", EventType::Rating, Some(4.0), 1_000),
            event("picky", "boot", EventType::View, None, 1_001),
        ])
        .await
        .unwrap();
    let user = store.get_user("picky").await.unwrap().unwrap();
    assert!(user.excluded.contains("shoe") && !user.excluded.contains("boot"));
    let unseen = RankParams {
        exclude_seen: false,
        ..RankParams::default()
    };
    let seen = RankParams {
        exclude_seen: true,
        ..RankParams::default()
    };
    let all = Filter::all();
    // Nothing excluded: the plain KNN (cosine to [1, .5, .1, 0]: boot, shoe, bag, hat).
    let none = Exclusions::default();
    assert_eq!(
        knn_ids_excluding(store, &none, 4, &all, false).await,
        ["boot", "shoe", "bag", "hat"]
    );
    // The key alone (the rating): the best two of the rest.
    let by_key = exclusions(Some(&user), &[], &unseen);
    assert_eq!(
        (by_key.ids_with_hints().count(), by_key.keys().count()),
        (0, 1)
    );
    for explain in [false, true] {
        assert_eq!(
            knn_ids_excluding(store, &by_key, 2, &all, explain).await,
            ["boot", "bag"]
        );
    }
    // The key, the seen item and the request's own (one of them not an item): one left,
    // however many are asked for.
    let request = ["bag".to_string(), "nope".to_string()];
    let everything = exclusions(Some(&user), &request, &seen);
    for k in [1, 2, 10] {
        assert_eq!(
            knn_ids_excluding(store, &everything, k, &all, false).await,
            ["hat"]
        );
    }
    // Within a filter: nothing left.
    let shoes = f(json!({"category":{"any":["shoes"]}}));
    assert!(
        knn_ids_excluding(store, &everything, 3, &shoes, true)
            .await
            .is_empty()
    );
    // An item deleted and stored again is still excluded by its key.
    assert!(store.delete_item("shoe").await.unwrap());
    load(store).await;
    assert_eq!(
        knn_ids_excluding(store, &by_key, 1, &all, false).await,
        ["boot"]
    );
}
