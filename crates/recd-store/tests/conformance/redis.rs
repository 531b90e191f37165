//! The conformance suite on the Redis backend, plus what only Redis has: key prefixes,
//! the hash layout, schema checks at connect, and surviving a Redis restart.

use std::sync::Arc;
use std::time::{Duration, Instant};

use recd_core::{EventType, Filter, Schema};
use recd_store::{ModelSettings, RedisConfig, RedisStore, Store, StoreError};
use serde_json::json;

use crate::support::{
    event, redis_url, schema, settings, start_redis, stop_redis, unique_prefix, upsert,
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
