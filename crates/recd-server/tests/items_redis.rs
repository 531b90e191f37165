//! The redis store's in-process items and popular lists across two servers on one Redis:
//! a write on one server is read fresh on the other (the invalidation channel reaches its
//! store), a write is read fresh on the server that made it at once, and a server whose
//! channel dropped keeps nothing from before (a message may have been lost), and answers no
//! list from L1 while it is down.
//!
//! Redis comes from `scripts/redis.sh` (one instance per test binary); under `CI=true` a
//! Redis that cannot start fails these tests, elsewhere they are skipped loudly. The tests
//! run one at a time: one of them drops every pub/sub connection of the Redis.

mod support;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use recd_core::{Filter, Item, ItemUpsert, Schema};
use recd_server::answer::{CachedItem, CachedList, Source};
use recd_server::cache::{CacheConfig, Caches, Compute, Origin, RedisTier};
use recd_store::{ModelSettings, RedisConfig, RedisStore, Store};
use serde_json::json;

static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// One server: its store (items and popular lists kept as long as the test runs) and its
/// caches, following the invalidation channel as `recd serve` does.
struct Server {
    store: Arc<RedisStore>,
    caches: Arc<Caches>,
}

async fn server(url: &str, prefix: &str) -> Server {
    let config = RedisConfig {
        prefix: prefix.into(),
        item_cache_ttl_ms: 600_000,
        popular_refresh_ms: 600_000,
        ..RedisConfig::default()
    };
    let store = RedisStore::connect(url, Schema::demo(4), ModelSettings::default(), config)
        .await
        .expect("connect the store");
    let store = Arc::new(store);
    let cache = CacheConfig::default();
    let tier = RedisTier::connect(
        url,
        prefix,
        cache.max_ttl_ms(),
        Duration::from_secs(2),
        Duration::from_secs(5),
    )
    .await
    .expect("connect the L2 tier");
    let caches = Caches::new(cache, Some(tier));
    caches.follow(store.clone() as Arc<dyn Store>);
    caches.listen().await;
    Server { store, caches }
}

async fn pair(name: &str) -> Option<(Server, Server, String)> {
    let url = support::redis::redis_url("REDIS ITEM CACHE TESTS")?;
    let prefix = support::redis::unique_prefix(name);
    let a = server(&url, &prefix).await;
    let b = server(&url, &prefix).await;
    Some((a, b, prefix))
}

fn item(id: &str, brand: &str, vector: [f32; 4]) -> ItemUpsert {
    let item = Item::from_json(
        &json!({"id": id, "vector": vector, "brand": brand, "price": 1}),
        &Schema::demo(4),
    )
    .expect("a valid item");
    ItemUpsert {
        item,
        keep_vector: false,
    }
}

/// What the engine does on `PUT /v1/items`: the write, then the invalidation it publishes.
async fn put(server: &Server, up: ItemUpsert) {
    let id = up.item.id.clone();
    server.store.upsert_items(vec![up]).await.unwrap();
    server.caches.items_changed(vec![id]).await;
}

/// The brand of the nearest item to `[1, 0, 0, 0]` (item `x` in these tests).
async fn brand(server: &Server) -> String {
    let hits = server
        .store
        .knn(&[1.0, 0.0, 0.0, 0.0], 1, &Filter::all())
        .await
        .unwrap();
    let item = &hits.first().expect("x is found").item;
    assert_eq!(item.id, "x");
    match item.fields.get("brand") {
        Some(recd_core::FieldValue::Tags(t)) => t.join(","),
        other => panic!("brand {other:?}"),
    }
}

/// Polls `check` until it holds; fails after 20 s (a message that never arrives).
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::task::yield_now().await;
    }
}

/// Rewrites item `x`'s doc behind every server's back (no invalidation): a server that
/// still answers with the old brand answers from what it kept.
async fn rewrite_doc_unannounced(url: &str, prefix: &str, from: &str, to: &str) {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let key = format!("{prefix}doc:x");
    let doc: String = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(doc.contains(from), "{doc}");
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg(doc.replace(from, to))
        .query_async(&mut conn)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_item_written_on_one_server_is_read_fresh_on_both() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some((a, b, prefix)) = pair("fresh").await else {
        return;
    };
    let url = support::redis::redis_url("REDIS ITEM CACHE TESTS").unwrap();
    put(&a, item("x", "one", [1.0, 0.0, 0.0, 0.0])).await;
    put(&a, item("y", "other", [0.0, 1.0, 0.0, 0.0])).await;
    assert_eq!(brand(&a).await, "one");
    assert_eq!(brand(&b).await, "one");
    // Both now answer from what they kept, not from Redis.
    rewrite_doc_unannounced(&url, &prefix, "one", "unannounced").await;
    assert_eq!(brand(&a).await, "one");
    assert_eq!(brand(&b).await, "one");
    put(&a, item("x", "two", [1.0, 0.0, 0.0, 0.0])).await;
    // The writer at once (its own write dropped its entry before it was acknowledged) ...
    assert_eq!(brand(&a).await, "two");
    // ... the other server once the invalidation reaches it.
    eventually("b reads the new brand", || async {
        brand(&b).await == "two"
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_whose_channel_dropped_keeps_nothing_from_before() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some((a, b, _)) = pair("lost").await else {
        return;
    };
    let url = support::redis::redis_url("REDIS ITEM CACHE TESTS").unwrap();
    put(&a, item("x", "one", [1.0, 0.0, 0.0, 0.0])).await;
    assert_eq!(brand(&b).await, "one");
    // A write whose invalidation is lost (never published) ...
    a.store
        .upsert_items(vec![item("x", "two", [1.0, 0.0, 0.0, 0.0])])
        .await
        .unwrap();
    assert_eq!(brand(&b).await, "one", "b kept x and heard nothing");
    // ... is read once b's channel drops (it reconnects by itself).
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(&mut conn)
        .await
        .unwrap();
    eventually("b reads the new brand", || async {
        brand(&b).await == "two"
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn popular_lists_drop_a_deleted_item_on_both_servers() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some((a, b, _)) = pair("popular").await else {
        return;
    };
    put(&a, item("x", "one", [1.0, 0.0, 0.0, 0.0])).await;
    put(&a, item("y", "other", [0.0, 1.0, 0.0, 0.0])).await;
    let ids = |s: &Server| {
        let store = s.store.clone();
        async move {
            let mut ids: Vec<String> = store
                .popular(10, &Filter::all())
                .await
                .unwrap()
                .iter()
                .map(|h| h.item.id.clone())
                .collect();
            ids.sort();
            ids
        }
    };
    assert_eq!(ids(&a).await, ["x", "y"]);
    assert_eq!(ids(&b).await, ["x", "y"]);
    assert!(a.store.delete_item("x").await.unwrap());
    a.caches.items_changed(vec!["x".into()]).await;
    assert_eq!(ids(&a).await, ["y"], "the writer at once");
    eventually("b's popular list loses x", || async {
        ids(&b).await == ["y"]
    })
    .await;
}

/// A list compute that counts its runs; each list names the run that made it.
fn counted_list(runs: &Arc<AtomicUsize>) -> Compute<CachedList> {
    let runs = Arc::clone(runs);
    Arc::new(move || {
        let n = runs.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            let item = Item {
                id: format!("run-{n}"),
                vector: None,
                fields: Default::default(),
            };
            Ok(CachedList {
                items: vec![CachedItem {
                    item: Arc::new(item),
                    score: 1.0,
                    reasons: Vec::new(),
                }],
                source: Source::Personalized,
            })
        })
    })
}

/// `ACL SETUSER default <rule>` on the test's Redis: `resetchannels` drops every pub/sub
/// connection and refuses new ones (and every `PUBLISH`), `allchannels` lets them back.
async fn channels(url: &str, rule: &str) {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("default")
        .arg(rule)
        .query_async(&mut conn)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_list_is_answered_from_memory_while_the_channel_is_down() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some((a, b, _)) = pair("down").await else {
        return;
    };
    let url = support::redis::redis_url("REDIS ITEM CACHE TESTS").unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let compute = counted_list(&runs);
    b.caches.recommend("u", 1, compute.clone()).await.unwrap();
    let (_, o) = b.caches.recommend("u", 1, compute.clone()).await.unwrap();
    assert_eq!(o, Origin::L1, "b keeps u's list");

    // No channel for anyone: b's subscription is dropped and cannot come back, and a's
    // invalidations reach L2's marks but no other server.
    channels(&url, "resetchannels").await;
    eventually("b notices its channel is down", || async {
        !b.caches.l1_live()
    })
    .await;
    a.caches.users_changed(vec!["u".into()]).await;
    let (e, o) = b.caches.recommend("u", 1, compute.clone()).await.unwrap();
    let id = e.value.items[0].item.id.clone();
    channels(&url, "allchannels").await;
    assert_eq!(
        (o, id.as_str()),
        (Origin::Computed, "run-1"),
        "b answered u's old list from memory after a's unheard event"
    );

    // Back: b subscribes again, then answers from memory again.
    eventually("b follows the channel again", || async {
        b.caches.l1_live()
    })
    .await;
    b.caches.recommend("u", 1, compute.clone()).await.unwrap();
    let (_, o) = b.caches.recommend("u", 1, compute).await.unwrap();
    assert_eq!(o, Origin::L1);
}
