//! The conformance suite on the Redis backend, plus what only Redis has: key prefixes,
//! the hash layout, schema checks at connect, and surviving a Redis restart.

use std::sync::Arc;
use std::time::{Duration, Instant};

use recd_core::{EventType, Filter, Schema};
use recd_store::{ModelSettings, RedisConfig, RedisStore, Store, StoreError};
use serde_json::json;

use crate::support::{
    event, redis_url, schema, settings, start_redis, start_replica, stop_redis, unique_prefix,
    upsert,
};

/// A store on the shared test Redis under a fresh prefix.
pub async fn make(schema: Schema, settings: ModelSettings) -> Option<Arc<dyn Store>> {
    let store = connect(schema, settings, &unique_prefix("suite")).await?;
    Some(Arc::new(store))
}

async fn connect(schema: Schema, settings: ModelSettings, prefix: &str) -> Option<RedisStore> {
    let url = redis_url()?;
    let config = RedisConfig {
        prefix: prefix.into(),
        ..RedisConfig::default()
    };
    Some(
        RedisStore::connect(&url, schema, settings, config)
            .await
            .expect("connect to the test redis"),
    )
}

crate::conformance_tests!(make);

/// The suite again with the store keeping items in process, as on a server following the
/// invalidation channel (popular lists not kept: events move popularity without any
/// invalidation, within `popular_refresh_ms`, which the suite does not wait for).
mod following {
    use super::*;

    pub async fn make(schema: Schema, settings: ModelSettings) -> Option<Arc<dyn Store>> {
        let url = redis_url()?;
        let config = RedisConfig {
            prefix: unique_prefix("suite-following"),
            popular_refresh_ms: 0,
            ..RedisConfig::default()
        };
        let store = RedisStore::connect(&url, schema, settings, config)
            .await
            .expect("connect to the test redis");
        store.follow_item_writes(true);
        Some(Arc::new(store))
    }

    crate::conformance_tests!(make);
}

#[tokio::test]
async fn prefixes_isolate_deployments() {
    let (pa, pb) = (unique_prefix("iso-a"), unique_prefix("iso-b"));
    let Some(a) = connect(schema(), settings(), &pa).await else {
        return;
    };
    let Some(b) = connect(schema(), settings(), &pb).await else {
        return;
    };
    a.upsert_items(vec![upsert(
        json!({"id":"x","vector":[1,0,0,0],"brand":"in-a"}),
    )])
    .await
    .unwrap();
    b.upsert_items(vec![upsert(
        json!({"id":"x","vector":[0,1,0,0],"brand":"in-b"}),
    )])
    .await
    .unwrap();
    a.apply_events(&[event("u", "x", EventType::Purchase, None, 1)])
        .await
        .unwrap();
    let in_b = b.get_items(&["x".into()]).await.unwrap().remove(0).unwrap();
    assert_eq!(in_b.vector.as_deref(), Some(&[0.0, 1.0, 0.0, 0.0][..]));
    let hits = b
        .knn(&[1.0, 0.0, 0.0, 0.0], 10, &Filter::all())
        .await
        .unwrap();
    assert_eq!(hits.len(), 1);
    assert!((hits[0].score - 0.0).abs() < 1e-6, "b sees only its own x");
    assert!(b.get_user("u").await.unwrap().is_none());
    assert!(b.events().await.unwrap().is_empty());
    assert_eq!(b.counts().await.unwrap().users, 0);
    assert_eq!(
        b.popular(1, &Filter::all()).await.unwrap()[0].log_score,
        f64::NEG_INFINITY
    );
    assert_eq!(a.counts().await.unwrap().items, 1);
    assert!(b.delete_user("u").await.is_ok_and(|existed| !existed));
    assert!(a.get_user("u").await.unwrap().is_some());
}

#[tokio::test]
async fn connect_is_idempotent_and_checks_the_schema() {
    let prefix = unique_prefix("schema");
    let Some(first) = connect(schema(), settings(), &prefix).await else {
        return;
    };
    first
        .upsert_items(vec![upsert(json!({"id":"x","vector":[1,0,0,0]}))])
        .await
        .unwrap();
    // A second server with the same schema shares the data.
    let second = connect(schema(), settings(), &prefix).await.unwrap();
    assert_eq!(second.counts().await.unwrap().items, 1);
    // The embedded index's own settings may differ: this backend ignores them.
    let mut indexed = schema();
    indexed.vector.partition_by = Some("category".into());
    indexed.vector.quantization = recd_core::Quantization::Int8;
    let third = connect(indexed, settings(), &prefix).await.unwrap();
    assert_eq!(third.counts().await.unwrap().items, 1);
    // Another schema on the same prefix is refused, not silently mixed.
    let url = redis_url().unwrap();
    let config = RedisConfig {
        prefix: prefix.clone(),
        ..RedisConfig::default()
    };
    let err = RedisStore::connect(&url, Schema::demo(8), settings(), config)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
}

/// Data an older recd wrote (layout 1: no item docs, popularity inside the indexed hashes)
/// is refused at connect with a message that says what to do, not served as empty answers.
#[tokio::test]
async fn connect_refuses_an_older_key_layout() {
    let prefix = unique_prefix("layout");
    let Some(first) = connect(schema(), settings(), &prefix).await else {
        return;
    };
    drop(first);
    let url = redis_url().unwrap();
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    // what the layout-1 store left in its meta hash: version and schema, no layout
    let () = redis::cmd("HDEL")
        .arg(format!("{prefix}meta"))
        .arg("layout")
        .query_async(&mut conn)
        .await
        .unwrap();
    let config = RedisConfig {
        prefix: prefix.clone(),
        ..RedisConfig::default()
    };
    let err = RedisStore::connect(&url, schema(), settings(), config)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    assert!(err.to_string().contains("re-import"), "{err}");
}

/// A deployment of key layout 2 (item and user ids in SETs) is upgraded at connect: its ids
/// move into sorted sets, so that they list in id order, and nothing else changes.
#[tokio::test]
async fn connect_upgrades_key_layout_2() {
    let prefix = unique_prefix("layout2");
    let Some(first) = connect(schema(), settings(), &prefix).await else {
        return;
    };
    first
        .upsert_items(vec![
            upsert(json!({"id":"b","vector":[1,0,0,0]})),
            upsert(json!({"id":"a","vector":[0,1,0,0]})),
        ])
        .await
        .unwrap();
    first
        .apply_events(&[
            event("v", "a", EventType::View, None, 1),
            event("u", "b", EventType::View, None, 2),
        ])
        .await
        .unwrap();
    drop(first);
    // What a layout-2 recd leaves: the same ids in plain SETs.
    let client = redis::Client::open(redis_url().unwrap().as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    for (key, members) in [("ids", ["a", "b"]), ("users", ["u", "v"])] {
        let key = format!("{prefix}{key}");
        let () = redis::pipe()
            .del(&key)
            .ignore()
            .sadd(&key, &members[..])
            .ignore()
            .hset(format!("{prefix}meta"), "layout", 2)
            .ignore()
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    let store = connect(schema(), settings(), &prefix).await.unwrap();
    let layout: u32 = redis::cmd("HGET")
        .arg(format!("{prefix}meta"))
        .arg("layout")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(layout, 3);
    assert_eq!(store.counts().await.unwrap().items, 2);
    assert_eq!(store.counts().await.unwrap().users, 2);
    let items = store.list_items(None, 10, &Filter::all()).await.unwrap();
    let ids: Vec<&str> = items.entries.iter().map(|it| it.id.as_str()).collect();
    assert_eq!(ids, ["a", "b"]);
    assert_eq!(
        store.list_users(None, 10).await.unwrap().entries,
        ["u", "v"]
    );
    // Writes keep the sorted sets.
    assert!(store.delete_user("u").await.unwrap());
    assert_eq!(store.list_users(None, 10).await.unwrap().entries, ["v"]);
    // A second server connecting later finds layout 3 and changes nothing.
    let again = connect(schema(), settings(), &prefix).await.unwrap();
    assert_eq!(again.counts().await.unwrap().items, 2);
}

#[tokio::test]
async fn items_are_plain_hashes_any_client_can_read() {
    let prefix = unique_prefix("layout");
    let Some(store) = connect(schema(), settings(), &prefix).await else {
        return;
    };
    store
        .upsert_items(vec![upsert(
            json!({"id":"sku-1","vector":[0.5,0,0,-1],"category":["shoes","sale"],
                                         "price":59.9,"in_stock":true,"title":"Trail shoe"}),
        )])
        .await
        .unwrap();
    let client = redis::Client::open(redis_url().unwrap()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let hash: std::collections::HashMap<String, Vec<u8>> = redis::cmd("HGETALL")
        .arg(format!("{prefix}item:sku-1"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(hash["price"], b"59.9");
    assert_eq!(hash["in_stock"], b"true");
    assert_eq!(hash["title"], b"Trail shoe");
    assert_eq!(hash["category"], b"shoes\x1fsale");
    let floats: Vec<f32> = hash["vector"]
        .chunks(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(floats, [0.5, 0.0, 0.0, -1.0]);
    // The alias answers a hand-written query.
    let total: Vec<redis::Value> = redis::cmd("FT.SEARCH")
        .arg(format!("{prefix}idx:items"))
        .arg("@category:{sale} @price:[50 60]")
        .arg("NOCONTENT")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(total.first(), Some(&redis::Value::Int(1)));
}

/// KNN distances come back as the hits' sort keys (`WITHSORTKEYS`, 17 digits): the scores
/// are exactly those of the distances `RETURN` gives (12 digits), hit for hit.
#[tokio::test]
async fn knn_scores_are_the_returned_distances() {
    let prefix = unique_prefix("scores");
    let Some(store) = connect(schema(), settings(), &prefix).await else {
        return;
    };
    assert_eq!(schema().vector.metric, recd_core::Metric::Cosine);
    // Vectors spread over the sphere (a fixed pseudo-random walk), 60 items.
    let mut x: u32 = 7;
    let mut next = move || {
        x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        f64::from(x >> 8) / f64::from(1u32 << 24) - 0.5
    };
    let items: Vec<_> = (0..60)
        .map(|i| upsert(json!({"id": format!("i{i}"), "vector": [next(), next(), next(), next()]})))
        .collect();
    store.upsert_items(items).await.unwrap();
    let query = [0.3f32, -0.7, 0.2, 0.9];
    let hits = store.knn(&query, 60, &Filter::all()).await.unwrap();
    assert_eq!(hits.len(), 60);

    let client = redis::Client::open(redis_url().unwrap().as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let bytes: Vec<u8> = query.iter().flat_map(|x| x.to_le_bytes()).collect();
    let raw: Vec<redis::Value> = redis::cmd("FT.SEARCH")
        .arg(format!("{prefix}idx:items"))
        .arg("(*)=>[KNN 60 @vector $vec EF_RUNTIME 64 AS d]")
        .arg("PARAMS")
        .arg(2)
        .arg("vec")
        .arg(bytes)
        .arg("SORTBY")
        .arg("d")
        .arg("RETURN")
        .arg(1)
        .arg("d")
        .arg("LIMIT")
        .arg(0)
        .arg(60)
        .arg("DIALECT")
        .arg(2)
        .query_async(&mut conn)
        .await
        .unwrap();
    let text = |v: &redis::Value| match v {
        redis::Value::BulkString(b) => String::from_utf8(b.clone()).unwrap(),
        other => panic!("not a string: {other:?}"),
    };
    let mut want = Vec::new();
    for pair in raw[1..].chunks(2) {
        let id = text(&pair[0])
            .strip_prefix(&format!("{prefix}item:"))
            .unwrap()
            .to_string();
        let redis::Value::Array(fields) = &pair[1] else {
            panic!("no fields: {pair:?}");
        };
        let distance: f32 = text(&fields[1]).parse().unwrap();
        want.push((id, 1.0 - distance));
    }
    let got: Vec<(String, f32)> = hits.iter().map(|h| (h.item.id.clone(), h.score)).collect();
    assert_eq!(got, want);
}

/// `connections` is how many connections a store opens (0 counts as 1), and requests go
/// through all of them: each sees what was written through another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_opens_its_configured_connections() {
    if redis_url().is_none() {
        return;
    }
    // A Redis of its own, so that no other test's clients are counted.
    let url = start_redis(None).expect("a private redis for the connection test");
    let port: u16 = url
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port in url");
    let mut probe = redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let mut clients = async || -> usize {
        let info: String = redis::cmd("INFO")
            .arg("clients")
            .query_async(&mut probe)
            .await
            .unwrap();
        info.lines()
            .find_map(|l| l.strip_prefix("connected_clients:"))
            .and_then(|n| n.trim().parse().ok())
            .expect("connected_clients")
    };
    let prefix = unique_prefix("pool");
    let config = |connections| RedisConfig {
        prefix: prefix.clone(),
        connections,
        ..RedisConfig::default()
    };
    let three = RedisStore::connect(&url, schema(), settings(), config(3))
        .await
        .unwrap();
    assert_eq!(clients().await, 1 + 3);
    let one = RedisStore::connect(&url, schema(), settings(), config(0))
        .await
        .unwrap();
    assert_eq!(clients().await, 1 + 3 + 1);
    for (i, writer) in [&three, &one, &three, &three].into_iter().enumerate() {
        let id = format!("i{i}");
        writer
            .upsert_items(vec![upsert(json!({"id": id, "vector":[1,0,0,0]}))])
            .await
            .unwrap();
        for reader in [&three, &one, &three, &three] {
            let hits = reader
                .knn(&[1.0, 0.0, 0.0, 0.0], 10, &Filter::all())
                .await
                .unwrap();
            assert_eq!(
                hits.len(),
                i + 1,
                "written through one connection, read through another"
            );
        }
    }
    three.ping().await.unwrap();
    stop_redis(port);
}

/// Stops the Redis process under a connected store and starts it again: requests fail fast
/// with `Unavailable` while it is down, and the same store serves again once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_a_redis_restart() {
    if redis_url().is_none() {
        return;
    }
    let url = start_redis(None).expect("a second redis for the restart test");
    let port: u16 = url
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port in url");
    let config = RedisConfig {
        prefix: unique_prefix("restart"),
        ..RedisConfig::default()
    };
    let store = RedisStore::connect(&url, schema(), settings(), config)
        .await
        .unwrap();
    store
        .upsert_items(vec![upsert(json!({"id":"a","vector":[1,0,0,0]}))])
        .await
        .unwrap();
    store.ping().await.unwrap();

    stop_redis(port);
    for _ in 0..3 {
        let t = Instant::now();
        let err = store.ping().await.unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
        assert!(
            t.elapsed() < Duration::from_millis(1500),
            "ping took {:?}",
            t.elapsed()
        );
        let t = Instant::now();
        let err = store
            .knn(&[1.0, 0.0, 0.0, 0.0], 1, &Filter::all())
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
        assert!(
            t.elapsed() < Duration::from_millis(1500),
            "knn took {:?}",
            t.elapsed()
        );
    }

    start_redis(Some(port)).expect("restart redis on the same port");
    let t = Instant::now();
    while store.ping().await.is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the store did not reconnect"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The restarted Redis is empty (no persistence): the index comes back by itself.
    assert!(
        store
            .knn(&[1.0, 0.0, 0.0, 0.0], 1, &Filter::all())
            .await
            .unwrap()
            .is_empty()
    );
    store
        .upsert_items(vec![upsert(json!({"id":"b","vector":[1,0,0,0]}))])
        .await
        .unwrap();
    let hits = store
        .knn(&[1.0, 0.0, 0.0, 0.0], 1, &Filter::all())
        .await
        .unwrap();
    assert_eq!(hits[0].item.id, "b");
    stop_redis(port);
}

/// A schema change builds a new index version and swaps the alias while a server keeps
/// querying: not one request fails or comes back short; then a dimension change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_change_swaps_the_alias_without_a_failed_request() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    let prefix = unique_prefix("swap");
    let Some(old) = connect(schema(), settings(), &prefix).await else {
        return;
    };
    let items = (0..300)
        .map(|i| {
            upsert(json!({"id": format!("s{i}"), "vector": [1.0, (i % 7) as f64, (i % 11) as f64, 0.5],
                          "category": if i % 2 == 0 { "even" } else { "odd" }, "price": i, "title": format!("item number{}", i % 5)}))
        })
        .collect();
    old.upsert_items(items).await.unwrap();
    old.apply_events(&[event("u", "s7", EventType::Purchase, None, 1)])
        .await
        .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let (done, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let querier = {
        let (old, stop, done, failed) = (old.clone(), stop.clone(), done.clone(), failed.clone());
        tokio::spawn(async move {
            let even = Filter::TagAny {
                field: "category".into(),
                values: vec!["even".into()],
            };
            while !stop.load(Ordering::Relaxed) {
                let knn = old.knn(&[1.0, 3.0, 5.0, 0.5], 10, &even).await;
                let pop = old.popular(5, &Filter::all()).await;
                let text = old
                    .text_search(&["number3".into()], 100, &Filter::all())
                    .await;
                let ok = knn.is_ok_and(|h| {
                    h.len() == 10 && h.iter().all(|h| h.item.field("category").is_some())
                }) && pop.is_ok_and(|p| p.len() == 5 && p[0].item.id == "s7")
                    && text.is_ok_and(|t| t.len() == 60);
                done.fetch_add(1, Ordering::Relaxed);
                if !ok {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut with_color = schema();
    with_color
        .fields
        .insert("color".into(), recd_core::FieldType::Tag);
    let new = old.migrate(with_color.clone(), Vec::new()).await.unwrap();
    let at_swap = done.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    querier.await.unwrap();
    let total = done.load(Ordering::Relaxed);
    assert!(
        at_swap > 0 && total > at_swap,
        "queries ran before ({at_swap}) and after ({total}) the swap"
    );
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "failed or short answers out of {total}"
    );

    // The new version serves the new field; popularity and vectors came along.
    assert_eq!((old.version(), new.version()), (1, 2));
    new.upsert_items(vec![
        recd_core::ItemUpsert::from_json(
            &json!({"id":"c","vector":[0,0,0,1],"color":"red"}),
            &with_color,
        )
        .unwrap(),
    ])
    .await
    .unwrap();
    let red = Filter::TagAny {
        field: "color".into(),
        values: vec!["red".into()],
    };
    let hits = new.knn(&[0.0, 0.0, 0.0, 1.0], 10, &red).await.unwrap();
    assert_eq!(
        hits.iter().map(|h| h.item.id.as_str()).collect::<Vec<_>>(),
        ["c"]
    );
    assert_eq!(
        new.popular(1, &Filter::all()).await.unwrap()[0].item.id,
        "s7"
    );
    assert_eq!(new.counts().await.unwrap().items, 301);
    // Servers reconnect with the new schema; the old one is refused now.
    let url = redis_url().unwrap();
    let config = RedisConfig {
        prefix: prefix.clone(),
        ..RedisConfig::default()
    };
    let again = RedisStore::connect(&url, with_color.clone(), settings(), config.clone())
        .await
        .unwrap();
    assert_eq!(again.version(), 2);
    assert!(
        RedisStore::connect(&url, schema(), settings(), config)
            .await
            .is_err()
    );

    // A dimension change: new vectors for every item, KNN in the new space.
    let mut dim8 = with_color.clone();
    dim8.vector.dim = 8;
    // Class i % 8 points along axis i % 8, each item a little apart from its class.
    let vectors = (0..300)
        .map(|i| {
            (
                format!("s{i}"),
                (0..8)
                    .map(|j| {
                        if j == i % 8 {
                            1.0
                        } else {
                            0.1 + 0.001 * (i * (j + 1) % 97) as f32
                        }
                    })
                    .collect(),
            )
        })
        .collect();
    let v3 = new.migrate(dim8, vectors).await.unwrap();
    let mut q = vec![0.1f32; 8];
    q[3] = 1.0;
    let hits = v3.knn(&q, 50, &Filter::all()).await.unwrap();
    assert_eq!(hits.len(), 50);
    let class = |id: &str| {
        id.trim_start_matches('s')
            .parse::<usize>()
            .map_or(usize::MAX, |i| i % 8)
    };
    assert!(
        hits[..38].iter().all(|h| class(&h.item.id) == 3),
        "the 38 items of class 3 first"
    );
    assert!(
        v3.get_items(&["c".into()]).await.unwrap()[0]
            .as_ref()
            .is_some_and(|c| c.vector.is_none())
    );
    // Old versions go away (hashes, docs, per-tag popularity); the one in service cannot.
    let client = redis::Client::open(url.as_str()).unwrap();
    let conn = client.get_multiplexed_async_connection().await.unwrap();
    let count = |pattern: String| {
        let mut conn = conn.clone();
        async move {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(pattern)
                .query_async(&mut conn)
                .await
                .unwrap();
            keys.len()
        }
    };
    assert_eq!(count(format!("{prefix}doc:*")).await, 300);
    assert!(count(format!("{prefix}popby:*")).await > 0, "s7 is popular");
    v3.drop_version(1).await.unwrap();
    v3.drop_version(2).await.unwrap();
    assert!(v3.drop_version(3).await.is_err());
    for family in [
        "item:*",
        "doc:*",
        "popby:*",
        "ids",
        "item.v2:*",
        "doc.v2:*",
        "popby.v2:*",
        "ids.v2",
    ] {
        assert_eq!(count(format!("{prefix}{family}")).await, 0, "{family}");
    }
    assert_eq!(count(format!("{prefix}doc.v3:*")).await, 301);
    assert_eq!(v3.counts().await.unwrap().items, 301);
}

/// Forcing either hybrid policy (and a tiny batch size), or keeping ranges inside
/// RediSearch instead of checking them on an over-fetch, changes speed, never answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_knn_strategy_gives_the_same_answers() {
    use recd_store::redis::HybridPolicy;
    let Some(url) = redis_url() else { return };
    let strategies = [
        (Some(HybridPolicy::Batches), Some(2), 3),
        (Some(HybridPolicy::AdhocBf), None, 3),
        (None, None, 0),
        (Some(HybridPolicy::Batches), None, 0),
    ];
    for (policy, batch_size, range_overfetch) in strategies {
        for check in [0, 1] {
            let config = RedisConfig {
                prefix: unique_prefix("policy"),
                hybrid_policy: policy,
                batch_size,
                range_overfetch,
                hnsw_ef_runtime: 10,
                ..RedisConfig::default()
            };
            let store = RedisStore::connect(&url, schema(), settings(), config)
                .await
                .unwrap();
            if check == 0 {
                crate::checks::knn_scores_and_filters(&store).await;
            } else {
                crate::checks::knn_tag_and_range(&store).await;
            }
        }
    }
}

/// Every write of a user sets the expiry of its keys to the session TTL (Redis forgets an
/// inactive user by itself), and the sweep takes expired ids off the set of users.
#[tokio::test]
async fn user_keys_expire_after_the_ttl() {
    let prefix = unique_prefix("ttl");
    let Some(store) = connect(schema(), crate::checks::hour_ttl(), &prefix).await else {
        return;
    };
    store
        .apply_events(&[
            event("u", "x", EventType::Purchase, None, 1),
            event("v", "x", EventType::View, None, 1),
        ])
        .await
        .unwrap();
    store
        .set_user_vectors(vec![("w".into(), vec![1.0, 0.0, 0.0, 0.0])])
        .await
        .unwrap();
    let client = redis::Client::open(redis_url().unwrap()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    for key in ["user:u", "recent:u", "user-events:u", "user:w"] {
        let ttl: i64 = redis::cmd("PTTL")
            .arg(format!("{prefix}{key}"))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!((3_500_000..=3_600_000).contains(&ttl), "{key}: {ttl}");
    }
    // Redis expired v (as it would after an hour): the sweep takes v off the set of users
    let () = redis::cmd("DEL")
        .arg(format!("{prefix}user:v"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(store.counts().await.unwrap().users, 3);
    let mut expired = 0;
    loop {
        let e = store.expire_users(0).await.unwrap();
        expired += e.users;
        if e.pass_done {
            break;
        }
    }
    assert_eq!(expired, 1);
    assert_eq!(store.counts().await.unwrap().users, 2);
    assert!(store.get_user("u").await.unwrap().is_some());
}

/// A user written before exclusion sets (purchases in a `purchased:{id}` Set, no
/// `purchased_list`) reads with those purchases as exclusions, and their next write
/// moves them into the hash and drops the Set.
#[tokio::test]
async fn users_of_the_older_layout_keep_their_purchases_excluded() {
    let prefix = unique_prefix("old-user");
    let Some(store) = connect(schema(), settings(), &prefix).await else {
        return;
    };
    let client = redis::Client::open(redis_url().unwrap()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let () = redis::pipe()
        .hset_multiple(
            format!("{prefix}user:old"),
            &[("purchase", "2"), ("last_event_ms", "9"), ("version", "4")],
        )
        .ignore()
        .sadd(format!("{prefix}purchased:old"), &["b", "a"])
        .ignore()
        .zadd(format!("{prefix}users"), "old", 0)
        .ignore()
        .query_async(&mut conn)
        .await
        .unwrap();
    let old = store.get_user("old").await.unwrap().unwrap();
    assert_eq!(old.purchased, ["a", "b"]);
    assert!(old.excluded.contains("a") && old.excluded.contains("b"));
    assert_eq!(old.counters.purchase, 2);
    store
        .apply_events(&[event("old", "c", EventType::Purchase, None, 10)])
        .await
        .unwrap();
    let now = store.get_user("old").await.unwrap().unwrap();
    assert_eq!(now.purchased, ["c", "a", "b"]);
    assert!(["a", "b", "c"].iter().all(|id| now.excluded.contains(id)));
    let set: bool = redis::cmd("EXISTS")
        .arg(format!("{prefix}purchased:old"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        !set,
        "the legacy Set is gone once the hash holds the purchases"
    );
}

/// `[redis] wait_replicas` on one Redis with a replica: a write is acknowledged once the
/// replica holds it; with the replica gone, it answers unavailable (503) instead of a
/// silent acknowledgement, although the master applied it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_wait_for_a_replica() {
    if redis_url().is_none() {
        return;
    }
    let port = |url: &str| -> u16 { url.rsplit(':').next().unwrap().parse().unwrap() };
    let master = start_redis(None).expect("a Redis of this test's own");
    let replica = start_replica(port(&master)).expect("a replica");
    let mut conn = redis::Client::open(replica.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    for tries in 0.. {
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query_async(&mut conn)
            .await
            .unwrap();
        if info.contains("master_link_status:up") {
            break;
        }
        assert!(tries < 200, "the replica never caught up: {info}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let config = RedisConfig {
        prefix: unique_prefix("wait"),
        wait_replicas: 1,
        wait_timeout_ms: 300,
        ..RedisConfig::default()
    };
    let store = RedisStore::connect(&master, schema(), settings(), config)
        .await
        .unwrap();
    let item = |id: &str| upsert(json!({"id": id, "vector": [1, 0, 0, 0]}));
    store.upsert_items(vec![item("a")]).await.unwrap();
    let click = |u: &str| event(u, "a", EventType::Click, None, 1_000);
    store.apply_events(&[click("u1")]).await.unwrap();
    stop_redis(port(&replica));
    let refused = store.apply_events(&[click("u2")]).await;
    assert!(
        matches!(refused, Err(StoreError::Unavailable(ref m)) if m.contains("0 of the 1")),
        "{refused:?}"
    );
    let refused = store.upsert_items(vec![item("b")]).await;
    assert!(
        matches!(refused, Err(StoreError::Unavailable(_))),
        "{refused:?}"
    );
    // Applied on the master all the same: the error says it may not survive it.
    assert!(store.get_user("u2").await.unwrap().is_some());
    stop_redis(port(&master));
}
