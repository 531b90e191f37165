//! The conformance suite on a Redis Cluster (3 masters, `scripts/redis.sh cluster`), plus
//! what only a cluster has: answers identical to a single Redis on the same data, items
//! spread over every master, and a lost shard failing queries instead of shortening them.

use std::sync::Arc;

use recd_core::{EventType, Filter, Schema};
use recd_store::{ModelSettings, RedisConfig, RedisStore, Store, StoreError};
use serde_json::json;

use crate::support::{
    cluster_url, event, redis_url, schema, settings, start_cluster, unique_prefix, upsert,
};

/// A store on the shared test cluster under a fresh prefix.
pub async fn make(schema: Schema, settings: ModelSettings) -> Option<Arc<dyn Store>> {
    let url = cluster_url()?;
    Some(Arc::new(
        connect(&url, schema, settings, &unique_prefix("cluster")).await,
    ))
}

async fn connect(url: &str, schema: Schema, settings: ModelSettings, prefix: &str) -> RedisStore {
    let config = RedisConfig {
        prefix: prefix.into(),
        ..RedisConfig::default()
    };
    RedisStore::connect(url, schema, settings, config)
        .await
        .expect("connect to the test cluster")
}

/// As [`connect`], with an HNSW `EF_RUNTIME` above the catalog size, so that every graph
/// walk is exhaustive: a single Redis's 400-item graph is otherwise approximate at k = 50
/// (while each shard's smaller graph is not), and "the same answers" would compare two
/// approximations instead of the merge.
async fn connect_exhaustive(url: &str, prefix: &str) -> RedisStore {
    let config = RedisConfig {
        prefix: prefix.into(),
        hnsw_ef_runtime: 1_000,
        ..RedisConfig::default()
    };
    RedisStore::connect(url, schema(), settings(), config)
        .await
        .expect("connect to the test Redis")
}

crate::conformance_tests!(make);

/// A catalog of `n` items with 4-d vectors, tags and prices, from a fixed seed.
pub fn catalog(n: usize) -> Vec<recd_core::ItemUpsert> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % 10_000) as f64 / 10_000.0
    };
    (0..n)
        .map(|i| {
            let v: Vec<f64> = (0..4).map(|_| next() * 2.0 - 1.0).collect();
            let cat = ["shoes", "bags", "hats"][i % 3];
            let brand = ["acme", "zeta"][i % 2];
            let price = (next() * 200.0).round();
            upsert(
                json!({"id": format!("item-{i}"), "vector": v, "category": cat,
                          "brand": brand, "price": price,
                          "in_stock": i % 4 != 0, "title": format!("thing {} of {cat}", i % 7)}),
            )
        })
        .collect()
}

/// The same items and events on one Redis and on the cluster give the same KNN (ids and
/// scores, every filter), popular and text answers, and the same users.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_match_a_single_redis() {
    let (Some(single), Some(cluster)) = (redis_url(), cluster_url()) else {
        return;
    };
    let a = connect_exhaustive(&single, &unique_prefix("same-1")).await;
    let b = connect_exhaustive(&cluster, &unique_prefix("same-c")).await;
    let events: Vec<_> = (0..300)
        .map(|i| {
            let kind = [EventType::View, EventType::Click, EventType::Purchase][i % 3];
            event(
                &format!("u{}", i % 17),
                &format!("item-{}", (i * 7) % 90),
                kind,
                None,
                1_000 + i as i64,
            )
        })
        .collect();
    let items: Vec<recd_core::Item> = catalog(400).into_iter().map(|u| u.item).collect();
    for store in [&a, &b] {
        store.upsert_items(catalog(400)).await.unwrap();
        store.apply_events(&events).await.unwrap();
    }
    let filters = [
        json!({}),
        json!({"category": {"any": ["shoes"]}}),
        json!({"category": {"any": ["bags", "hats"]}, "price": {"gte": 20, "lt": 150}}),
        json!({"brand": {"none": ["acme"]}, "in_stock": true}),
        json!({"price": {"lt": 15}}),
        json!({"or": [{"brand": {"any": ["zeta"]}}, {"title": {"match": "thing 3"}}]}),
    ];
    let queries = [
        [1.0, 0.0, 0.0, 0.0],
        [0.3, -0.8, 0.1, 0.5],
        [-0.2, 0.1, 0.9, -0.4],
    ];
    for f in &filters {
        let filter = Filter::parse(f, &schema()).unwrap();
        for q in &queries {
            for k in [1, 10, 50] {
                let (x, y) = (
                    a.knn(q, k, &filter).await.unwrap(),
                    b.knn(q, k, &filter).await.unwrap(),
                );
                let ids = |h: &[recd_store::Hit]| -> Vec<(String, i64)> {
                    h.iter()
                        .map(|h| (h.item.id.clone(), (h.score * 1e5).round() as i64))
                        .collect()
                };
                assert_eq!(ids(&x), ids(&y), "knn k={k} filter {f}");
                // And both are the exact answer (cosine, by brute force over the catalog;
                // ids only, ties at equal cosine are not expected with these vectors).
                let exact = brute_force(&items, q, k, &filter);
                let got: Vec<&str> = y.iter().map(|h| h.item.id.as_str()).collect();
                assert_eq!(got, exact, "knn k={k} filter {f} vs brute force");
                assert!(
                    !x.is_empty() || f["price"]["lt"] == 15,
                    "knn k={k} filter {f} found nothing"
                );
            }
        }
        // Popular: the touched items in the same order with the same scores (the untouched
        // ones tie at -inf, in any order).
        let (x, y) = (
            a.popular(400, &filter).await.unwrap(),
            b.popular(400, &filter).await.unwrap(),
        );
        assert_eq!(x.len(), y.len(), "popular count, filter {f}");
        let touched = |h: &[recd_store::PopularHit]| -> Vec<(String, i64)> {
            h.iter()
                .filter(|h| h.log_score.is_finite())
                .map(|h| (h.item.id.clone(), (h.log_score * 1e9).round() as i64))
                .collect()
        };
        assert_eq!(touched(&x), touched(&y), "popular, filter {f}");
        assert!(
            !touched(&x).is_empty() || f["price"]["lt"] == 15,
            "nothing popular for {f}"
        );
    }
    let terms = vec!["thing".to_string(), "3".to_string()];
    let (mut x, mut y) = (
        a.text_search(&terms, 1000, &Filter::all()).await.unwrap(),
        b.text_search(&terms, 1000, &Filter::all()).await.unwrap(),
    );
    x.sort_by(|p, q| p.id.cmp(&q.id));
    y.sort_by(|p, q| p.id.cmp(&q.id));
    assert_eq!(x.len(), 400);
    assert_eq!(x, y);
    assert_eq!(a.counts().await.unwrap(), b.counts().await.unwrap());
    for u in 0..17 {
        let id = format!("u{u}");
        // (`active_ms` is the wall clock at the write.)
        let state =
            |s: Option<recd_core::UserState>| s.map(|s| recd_core::UserState { active_ms: 0, ..s });
        let (x, y) = (
            a.get_user(&id).await.unwrap(),
            b.get_user(&id).await.unwrap(),
        );
        assert!(x.is_some(), "{id}");
        assert_eq!(state(x), state(y), "{id}");
    }
    let (mut x, mut y) = (a.events().await.unwrap(), b.events().await.unwrap());
    x.sort_by_key(|e| e.timestamp_ms);
    y.sort_by_key(|e| e.timestamp_ms);
    assert_eq!(x, y);
}

/// The ids of the `k` items passing `filter` with the highest cosine to `q`.
fn brute_force<'a>(
    items: &'a [recd_core::Item],
    q: &[f32],
    k: usize,
    filter: &Filter,
) -> Vec<&'a str> {
    let cosine = |v: &[f32]| {
        let dot: f32 = v.iter().zip(q).map(|(a, b)| a * b).sum();
        let norm = |x: &[f32]| x.iter().map(|a| a * a).sum::<f32>().sqrt();
        dot / (norm(v) * norm(q))
    };
    let mut scored: Vec<(f32, &str)> = items
        .iter()
        .filter(|i| filter.matches(i))
        .filter_map(|i| Some((cosine(i.vector.as_deref()?), i.id.as_str())))
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    scored.into_iter().take(k).map(|(_, id)| id).collect()
}

/// Items land on every master: each shard's index holds about a third of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_spread_over_the_masters() {
    let Some(url) = cluster_url() else { return };
    let prefix = unique_prefix("spread");
    let store = connect(&url, schema(), settings(), &prefix).await;
    store.upsert_items(catalog(300)).await.unwrap();
    let nodes: Vec<String> = url
        .trim_start_matches("redis+cluster://")
        .split(',')
        .map(|n| format!("redis://{n}"))
        .collect();
    let mut per_node = Vec::new();
    for node in &nodes {
        let client = redis::Client::open(node.as_str()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}*item:*"))
            .query_async(&mut conn)
            .await
            .unwrap();
        per_node.push(keys.len());
    }
    assert_eq!(per_node.iter().sum::<usize>(), 300, "{per_node:?}");
    assert!(per_node.iter().all(|n| *n >= 60), "{per_node:?}");
}

/// The settings of a store in a fault test: a short operation deadline (a request to a
/// shard that is down fails fast).
pub fn fault_config() -> RedisConfig {
    RedisConfig {
        operation_timeout_ms: 1500,
        ..RedisConfig::default()
    }
}

/// A 3-master cluster of one test's own (each master with `replicas` replicas; a fault test
/// kills nodes), its URL and a store on it with `config` (see [`fault_config`]) under a
/// fresh prefix.
pub async fn private_cluster(replicas: usize, config: RedisConfig) -> Option<(String, RedisStore)> {
    cluster_url()?;
    let url = start_cluster(3, replicas).expect("a private cluster for a fault test");
    let config = RedisConfig {
        prefix: unique_prefix("fault"),
        ..config
    };
    let store = RedisStore::connect(&url, schema(), settings(), config)
        .await
        .expect("connect to the private cluster");
    Some((url, store))
}

/// The `host:port` of the nodes of a cluster URL (masters first).
pub fn nodes(url: &str) -> Vec<String> {
    url.trim_start_matches("redis+cluster://")
        .split(',')
        .map(str::to_string)
        .collect()
}

/// The port of a `host:port`.
pub fn port(node: &str) -> u16 {
    node.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("a port")
}

/// `scripts/redis.sh signal PORT SIG`.
fn signal(port: u16, sig: &str) {
    let ok = std::process::Command::new("bash")
        .arg(crate::support::redis_script())
        .args(["signal", &port.to_string(), sig])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "signal {sig} to {port}");
}

/// A master lost without a replica: queries that need its shard fail as unavailable,
/// never answer with the other shards' items only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_shard_fails_queries_instead_of_shortening_them() {
    let Some((url, store)) = private_cluster(0, fault_config()).await else {
        return;
    };
    store.upsert_items(catalog(60)).await.unwrap();
    let all = Filter::all();
    assert_eq!(
        store
            .knn(&[1.0, 0.0, 0.0, 0.0], 60, &all)
            .await
            .unwrap()
            .len(),
        60
    );
    // Stop the second master.
    let port = url
        .split(',')
        .nth(1)
        .and_then(|n| n.rsplit(':').next())
        .unwrap();
    crate::support::stop_redis(port.parse().unwrap());
    for _ in 0..3 {
        let knn = store.knn(&[1.0, 0.0, 0.0, 0.0], 60, &all).await;
        assert!(
            matches!(knn, Err(StoreError::Unavailable(_))),
            "{:?}",
            knn.map(|h| h.len())
        );
        let popular = store.popular(60, &all).await;
        assert!(
            matches!(popular, Err(StoreError::Unavailable(_))),
            "{:?}",
            popular.map(|h| h.len())
        );
        let counts = store.counts().await;
        assert!(
            matches!(counts, Err(StoreError::Unavailable(_))),
            "{counts:?}"
        );
    }
    let _ = std::process::Command::new("bash")
        .arg(crate::support::redis_script())
        .args(["cluster", "stop", &url])
        .status();
}

/// A master killed while it has a replica: requests fail as unavailable (503) only until
/// the replica takes over, then the store serves everything again without reconnecting:
/// every item (its shard's index is on the replica too) and every acknowledged event. The
/// replica is made to lag first (frozen, its link's buffers full), so that writes the
/// master alone holds are lost with it: with `wait_replicas = 1` recd refuses to
/// acknowledge those (503), so no acknowledged event is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_a_failover() {
    let config = RedisConfig {
        wait_replicas: 1,
        wait_timeout_ms: 300,
        ..fault_config()
    };
    let Some((url, store)) = private_cluster(1, config).await else {
        return;
    };
    store.upsert_items(catalog(90)).await.unwrap();
    let click =
        |u: String, i: i64| event(&u, &format!("item-{i}"), EventType::Click, None, 1_000 + i);
    let events: Vec<_> = (0..30).map(|i| click(format!("u{i}"), i)).collect();
    store.apply_events(&events).await.unwrap();
    // Master 0's replica (node 3) falls behind: frozen, and a 32 MB value fills the link's
    // socket buffers, so what master 0 writes next stays in its own memory.
    let nodes = nodes(&url);
    let (master, replica) = (port(&nodes[0]), port(&nodes[3]));
    let mut direct = crate::support::direct_node(&nodes[0]).await;
    let mut blob = String::new();
    for i in 0.. {
        let key = format!("blob-{i}");
        let slot: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(&key)
            .query_async(&mut direct)
            .await
            .unwrap();
        if slot < 5461 {
            blob = key;
            break;
        }
    }
    signal(replica, "STOP");
    let () = redis::cmd("SET")
        .arg(&blob)
        .arg(vec![b'x'; 32 << 20])
        .query_async(&mut direct)
        .await
        .unwrap();
    // Events of every shard, each on its own: those touching master 0 reach no replica.
    let later: Vec<_> = (0..30).map(|i| click(format!("v{i}"), 100 + i)).collect();
    let answers = futures_util::future::join_all(
        later
            .iter()
            .map(|e| store.apply_events(std::slice::from_ref(e))),
    )
    .await;
    let mut acknowledged = events.clone();
    let mut refused = 0;
    for (e, answer) in later.iter().zip(answers) {
        match answer {
            Ok(()) => acknowledged.push(e.clone()),
            Err(StoreError::Unavailable(_)) => refused += 1,
            Err(other) => panic!("{}: {other}", e.user_id),
        }
    }
    assert!(
        refused > 0,
        "writes to the lagging master were acknowledged"
    );
    signal(master, "KILL");
    signal(replica, "CONT");
    let q = [1.0, 0.0, 0.0, 0.0];
    let all = Filter::all();
    let mut unavailable = 0;
    let hits = loop {
        match store.knn(&q, 90, &all).await {
            Ok(hits) => break hits,
            Err(StoreError::Unavailable(_)) => {
                unavailable += 1;
                assert!(unavailable < 200, "no failover after 200 tries");
                // Wait for the replica's promotion (the cluster's node timeout is 2 s).
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(e) => panic!("during the failover: {e}"),
        }
    };
    assert_eq!(hits.len(), 90, "every item after the failover");
    let log = store.events().await.unwrap();
    for e in &acknowledged {
        assert!(log.contains(e), "acknowledged event of {} lost", e.user_id);
    }
    for e in &events {
        assert!(
            store.get_user(&e.user_id).await.unwrap().is_some(),
            "{}",
            e.user_id
        );
    }
    // Writes go on: acknowledged where the shards written still have a replica, refused
    // (503) where they touch the promoted master, which has none now.
    let mut written = 0;
    for i in 0..10 {
        match store.apply_events(&[click(format!("w{i}"), 200 + i)]).await {
            Ok(()) => written += 1,
            Err(StoreError::Unavailable(_)) => {}
            Err(e) => panic!("after the failover: {e}"),
        }
    }
    assert!(written > 0, "no write acknowledged after the failover");
    let _ = std::process::Command::new("bash")
        .arg(crate::support::redis_script())
        .args(["cluster", "stop", &url])
        .status();
}
