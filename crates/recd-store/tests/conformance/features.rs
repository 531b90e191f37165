//! The online feature stores against the offline export: a simulated shop's event and
//! impression logs are replayed in time order into each backend (events applied, lists
//! counted as impressions after their features are read, as the server does), and the
//! values each backend gives at every served list equal the training rows `recd-train`
//! recomputes from the logs. Also the TTL, forgetting a user, and hostile ids and tags.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use recd_core::features::{FeatureSet, FeatureSpec};
use recd_core::{EventType, FieldValue, Item};
use recd_store::features::{FeatureStore, MemoryFeatures, RedisFeatures};
use recd_train::ctr::export::export;
use recd_train::ctr::sim::{SimParams, catalog, simulate};

use crate::support::{event, redis_url, schema, unique_prefix};

async fn redis() -> Option<RedisFeatures> {
    let url = redis_url()?;
    Some(
        RedisFeatures::connect(&url, &unique_prefix("feat"), Duration::from_secs(5))
            .await
            .expect("connect to the test redis"),
    )
}

/// The default set of the simulation's schema, or (`distinct`) a set of distinct counts
/// beside a count.
fn parity_set(schema: &recd_core::Schema, distinct: bool) -> FeatureSet {
    if !distinct {
        return FeatureSet::default_for(schema);
    }
    let specs: BTreeMap<String, FeatureSpec> = serde_json::from_value(serde_json::json!({
        "user_items_viewed_24h": {"kind": "distinct", "entity": "user", "event": "view", "window": "24h"},
        "user_items_clicked_7d": {"kind": "distinct", "entity": "user", "event": "click", "window": "7d"},
        "item_viewers_24h": {"kind": "distinct", "entity": "item", "event": "view", "window": "24h"},
        "item_clickers_7d": {"kind": "distinct", "entity": "item", "event": "click", "window": "7d", "buckets": 7},
        "item_clicks_7d": {"kind": "count", "entity": "item", "event": "click", "window": "7d"},
        "user_tag_items_viewed_24h": {"kind": "distinct", "entity": "user_tag", "field": "category", "event": "view", "window": "24h"},
        "user_tag_views_24h": {"kind": "count", "entity": "user_tag", "field": "category", "event": "view", "window": "24h"}
    }))
    .unwrap();
    FeatureSet::from_specs(&specs, schema).unwrap()
}

/// Replays the simulation into `store` and compares every served item's online values
/// with its exported row.
async fn check_parity(store: &dyn FeatureStore, distinct: bool) {
    let sim = simulate(&SimParams {
        users: 12,
        items: 120,
        categories: 6,
        days: 3,
        ..SimParams::default()
    });
    let set = parity_set(&sim.schema, distinct);
    let items = catalog(&sim.items);
    let rows = export(&set, &items, &sim.events, &sim.lists, 3_600_000);
    let mut events = sim.events.clone();
    events.sort_by_key(|e| e.timestamp_ms);
    let mut lists = sim.lists.clone();
    lists.sort_by_key(|l| l.at_ms);
    let (mut e, mut row) = (0, 0);
    let mut compared = 0;
    for list in &lists {
        let due = events[e..].partition_point(|ev| ev.timestamp_ms < list.at_ms);
        let batch = &events[e..e + due];
        let batch_items: Vec<Option<Arc<Item>>> = batch
            .iter()
            .map(|ev| items.get(&ev.item_id).cloned().map(Arc::new))
            .collect();
        store.apply_events(&set, batch, &batch_items).await.unwrap();
        e += due;
        let shown: Vec<Arc<Item>> = list
            .items
            .iter()
            .map(|i| Arc::new(items[&i.id].clone()))
            .collect();
        let online = store
            .values(
                &set,
                &list.user_id,
                &shown.iter().collect::<Vec<_>>(),
                list.at_ms,
            )
            .await
            .unwrap();
        for (k, values) in online.chunks(set.len()).enumerate() {
            let r = &rows[row];
            assert_eq!(
                (r.recommendation_id.as_str(), r.item_id.as_str()),
                (list.recommendation_id.as_str(), list.items[k].id.as_str())
            );
            assert_eq!(
                values,
                r.features.as_slice(),
                "{} {} at {}",
                r.user_id,
                r.item_id,
                r.at_ms
            );
            row += 1;
            compared += 1;
        }
        let ids: Vec<String> = list.items.iter().map(|i| i.id.clone()).collect();
        store.log_impressions(&set, &ids, list.at_ms).await.unwrap();
    }
    assert_eq!(compared, rows.len());
    // The comparison is not vacuous: the features moved.
    let moved = |name: &str, neutral: f64| {
        let i = set.names().position(|n| n == name).unwrap();
        rows.iter().filter(|r| r.features[i] != neutral).count()
    };
    if distinct {
        for name in [
            "user_items_viewed_24h",
            "user_items_clicked_7d",
            "item_viewers_24h",
            "item_clickers_7d",
            "user_tag_items_viewed_24h",
        ] {
            assert!(moved(name, 0.0) > 10, "{name}");
        }
        // A user's distinct items per category never exceed their views in it, and repeat
        // views make them smaller somewhere.
        let (d, c) = (
            set.names()
                .position(|n| n == "user_tag_items_viewed_24h")
                .unwrap(),
            set.names().position(|n| n == "user_tag_views_24h").unwrap(),
        );
        assert!(rows.iter().all(|r| r.features[d] <= r.features[c]));
        assert!(rows.iter().any(|r| r.features[d] < r.features[c]));
        // Distinct clickers never exceed clicks.
        let (d, c) = (
            set.names().position(|n| n == "item_clickers_7d").unwrap(),
            set.names().position(|n| n == "item_clicks_7d").unwrap(),
        );
        assert!(rows.iter().all(|r| r.features[d] <= r.features[c]));
        assert!(rows.iter().any(|r| r.features[d] < r.features[c]));
    } else {
        assert!(moved("user_tag_clicks_24h", 0.0) > 10);
        assert!(moved("item_ctr_7d", 0.05) > 10);
    }
}

/// More distinct users in one bucket than a sketch keeps: both stores keep the same
/// smallest hashes (the redis script's cut is the Rust one) and estimate the same count.
async fn check_distinct_beyond_the_sketch(store: &dyn FeatureStore) {
    let specs: BTreeMap<String, FeatureSpec> = serde_json::from_value(serde_json::json!({
        "viewers": {"kind": "distinct", "entity": "item", "event": "view", "window": "1h", "buckets": 2}
    }))
    .unwrap();
    let set = FeatureSet::from_specs(&specs, &schema()).unwrap();
    let reference = MemoryFeatures::new();
    let it = item("popular", &["a"]);
    let t0 = 1_767_225_600_000;
    let n = recd_core::features::distinct::SKETCH * 3;
    let events: Vec<_> = (0..n)
        .map(|u| {
            event(
                &format!("viewer-{u}"),
                &it.id,
                EventType::View,
                None,
                t0 + u as i64,
            )
        })
        .collect();
    let items: Vec<_> = events.iter().map(|_| Some(it.clone())).collect();
    for chunk in (0..n).collect::<Vec<_>>().chunks(50) {
        let (a, b) = (chunk[0], chunk[chunk.len() - 1] + 1);
        store
            .apply_events(&set, &events[a..b], &items[a..b])
            .await
            .unwrap();
        reference
            .apply_events(&set, &events[a..b], &items[a..b])
            .await
            .unwrap();
    }
    let now = t0 + n as i64;
    let got = store.values(&set, "anyone", &[&it], now).await.unwrap();
    let want = reference.values(&set, "anyone", &[&it], now).await.unwrap();
    assert_eq!(got, want);
    let rel = (got[0] - n as f64).abs() / n as f64;
    assert!(rel < 0.19, "{} distinct viewers estimated as {}", n, got[0]);
    assert_ne!(got[0], n as f64, "an estimate, not a count");
}

fn tag_set() -> FeatureSet {
    let specs: BTreeMap<String, FeatureSpec> = serde_json::from_value(serde_json::json!({
        "tag_clicks": {"kind": "count", "entity": "user_tag", "field": "category", "event": "click", "window": "1h", "buckets": 4},
        "last_view": {"kind": "recency", "entity": "user", "event": "view"}
    }))
    .unwrap();
    FeatureSet::from_specs(&specs, &schema()).unwrap()
}

fn item(id: &str, tags: &[&str]) -> Arc<Item> {
    let mut fields = BTreeMap::new();
    fields.insert(
        "category".into(),
        FieldValue::Tags(tags.iter().map(|t| t.to_string()).collect()),
    );
    Arc::new(Item {
        id: id.into(),
        vector: None,
        fields,
    })
}

/// Ids and tag values with Redis and Lua metacharacters are data, the TTL drops idle
/// state, and forgetting a user drops theirs.
async fn check_hostile_values_ttl_and_forget(store: &dyn FeatureStore) {
    let set = tag_set();
    let user = "u*{1} ' \" \\ : @ %d";
    let it = item("i:@1 2", &["a b:c", "%s@ '\"", "x]"]);
    let t0 = 1_767_225_600_000;
    store
        .apply_events(
            &set,
            &[
                event(user, &it.id, EventType::Click, None, t0),
                event(user, &it.id, EventType::View, None, t0 + 1000),
            ],
            &[Some(it.clone()), Some(it.clone())],
        )
        .await
        .unwrap();
    let v = store.values(&set, user, &[&it], t0 + 60_000).await.unwrap();
    // Three tags, each clicked once; the view 59 s before.
    assert_eq!(v[1], 3.0);
    assert!((v[0] - 59.0 / 3600.0).abs() < 1e-12);
    // Past the TTL (the 1 h window) the state reads as none.
    let v = store
        .values(&set, user, &[&it], t0 + 1000 + 3_600_001)
        .await
        .unwrap();
    assert_eq!(v, vec![720.0, 0.0]);
    store.delete_user(&set, user).await.unwrap();
    let v = store.values(&set, user, &[&it], t0 + 60_000).await.unwrap();
    assert_eq!(v, vec![720.0, 0.0]);
}

#[tokio::test]
async fn memory_matches_the_offline_export() {
    check_parity(&MemoryFeatures::new(), false).await;
    check_parity(&MemoryFeatures::new(), true).await;
}

#[tokio::test]
async fn redis_matches_the_offline_export() {
    if let Some(store) = redis().await {
        check_parity(&store, false).await;
        check_parity(&store, true).await;
    }
}

#[tokio::test]
async fn redis_distinct_counts_beyond_the_sketch_match_memory() {
    if let Some(store) = redis().await {
        check_distinct_beyond_the_sketch(&store).await;
    }
}

#[tokio::test]
async fn memory_hostile_values_ttl_and_forget() {
    check_hostile_values_ttl_and_forget(&MemoryFeatures::new()).await;
}

#[tokio::test]
async fn redis_hostile_values_ttl_and_forget() {
    if let Some(store) = redis().await {
        check_hostile_values_ttl_and_forget(&store).await;
    }
}
