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

/// Replays the simulation into `store` and compares every served item's online values
/// with its exported row.
async fn check_parity(store: &dyn FeatureStore) {
    let sim = simulate(&SimParams {
        users: 12,
        items: 120,
        categories: 6,
        days: 3,
        ..SimParams::default()
    });
    let set = FeatureSet::default_for(&sim.schema);
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
    // The comparison is not vacuous: the per-category clicks and the CTR moved.
    let moved = |name: &str, neutral: f64| {
        let i = set.names().position(|n| n == name).unwrap();
        rows.iter().filter(|r| r.features[i] != neutral).count()
    };
    assert!(moved("user_tag_clicks_24h", 0.0) > 10);
    assert!(moved("item_ctr_7d", 0.05) > 10);
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
    check_parity(&MemoryFeatures::new()).await;
}

#[tokio::test]
async fn redis_matches_the_offline_export() {
    if let Some(store) = redis().await {
        check_parity(&store).await;
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
