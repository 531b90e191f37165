//! The cache tiers against a real Redis with two `Caches` sharing it, as two servers would:
//! L2 hits across servers, one fill overall under a stampede on both, invalidations that
//! reach the other server's L1, and a fill lock whose holder died.
//!
//! Redis comes from `scripts/redis.sh` (one instance per test binary); under `CI=true` a
//! Redis that cannot start fails these tests, elsewhere they are skipped loudly.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use recd_core::Item;
use recd_server::answer::{CachedItem, CachedList, Source};
use recd_server::cache::{CacheConfig, Caches, Compute, Origin, RedisTier};
use recd_store::StoreError;
use tokio::sync::Semaphore;

fn redis_url() -> Option<String> {
    support::redis::redis_url("REDIS CACHE TESTS")
}

/// Two "servers" on one Redis under one prefix.
async fn pair(name: &str, config: CacheConfig) -> Option<(Arc<Caches>, Arc<Caches>, RedisTier)> {
    let url = redis_url()?;
    let prefix = support::redis::unique_prefix(name);
    let tier = || async {
        RedisTier::connect(
            &url,
            &prefix,
            config.max_ttl_ms(),
            Duration::from_secs(2),
            Duration::from_secs(5),
        )
        .await
        .expect("connect the L2 tier")
    };
    let raw = tier().await;
    let a = Caches::new(config.clone(), Some(tier().await));
    let b = Caches::new(config.clone(), Some(tier().await));
    a.listen().await;
    b.listen().await;
    Some((a, b, raw))
}

/// A list whose one item names the run that computed it.
fn list(run: usize) -> CachedList {
    let item = Item {
        id: format!("run-{run}"),
        vector: None,
        fields: Default::default(),
    };
    CachedList {
        items: vec![CachedItem {
            item: Arc::new(item),
            score: 1.0,
            reasons: Vec::new(),
        }],
        source: Source::Personalized,
    }
}

/// The run that computed a list (see [`list`]).
fn run(list: &CachedList) -> usize {
    list.items[0]
        .item
        .id
        .strip_prefix("run-")
        .and_then(|n| n.parse().ok())
        .expect("a list made by `list`")
}

fn counted(runs: &Arc<AtomicUsize>, gate: &Arc<Semaphore>) -> Compute<CachedList> {
    let runs = Arc::clone(runs);
    let gate = Arc::clone(gate);
    Arc::new(move || {
        let runs = Arc::clone(&runs);
        let gate = Arc::clone(&gate);
        Box::pin(async move {
            let n = runs.fetch_add(1, Ordering::SeqCst);
            let _permit = gate
                .acquire()
                .await
                .map_err(|e| StoreError::Internal(e.to_string()))?;
            Ok(list(n))
        })
    })
}

fn open() -> Arc<Semaphore> {
    Arc::new(Semaphore::new(Semaphore::MAX_PERMITS))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_server_fills_and_the_other_reads_l2() {
    let Some((a, b, _)) = pair("l2", CacheConfig::default()).await else {
        return;
    };
    let runs = Arc::new(AtomicUsize::new(0));
    let compute = counted(&runs, &open());
    let (_, o) = a.recommend("u1", 1, compute.clone()).await.unwrap();
    assert_eq!(o, Origin::Computed);
    let (e, o) = b.recommend("u1", 1, compute.clone()).await.unwrap();
    assert_eq!((o, run(&e.value)), (Origin::L2, 0));
    let (_, o) = b.recommend("u1", 1, compute.clone()).await.unwrap();
    assert_eq!(o, Origin::L1);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stampede_on_two_servers_computes_once_overall() {
    let config = CacheConfig {
        lock_wait_ms: 30_000,
        lock_ttl_ms: 30_000,
        ..CacheConfig::default()
    };
    let Some((a, b, _)) = pair("stampede", config).await else {
        return;
    };
    let runs = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Semaphore::new(0));
    let compute = counted(&runs, &gate);
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let c = Arc::clone(if i % 2 == 0 { &a } else { &b });
            let compute = Arc::clone(&compute);
            tokio::spawn(async move { c.recommend("hot", 9, compute).await })
        })
        .collect();
    while runs.load(Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    gate.add_permits(Semaphore::MAX_PERMITS);
    let mut origins = Vec::new();
    for t in tasks {
        let (e, o) = t.await.unwrap().unwrap();
        assert_eq!(run(&e.value), 0);
        origins.push(o);
    }
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "computed more than once overall"
    );
    assert_eq!(
        origins.iter().filter(|o| **o == Origin::Computed).count(),
        1
    );
}

/// Polls `b` until its answer for `user` is no longer the L1 entry it had.
async fn until_recomputed(
    b: &Arc<Caches>,
    user: &str,
    compute: Compute<CachedList>,
) -> (usize, Origin) {
    let poll = async {
        loop {
            let (e, o) = b.recommend(user, 1, compute.clone()).await.unwrap();
            if o != Origin::L1 {
                return (run(&e.value), o);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), poll)
        .await
        .expect("the invalidation never reached the other server's L1")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn invalidations_reach_the_other_servers_l1_and_l2() {
    let Some((a, b, _)) = pair("inv", CacheConfig::default()).await else {
        return;
    };
    let runs = Arc::new(AtomicUsize::new(0));
    let compute = counted(&runs, &open());
    a.recommend("u", 1, compute.clone()).await.unwrap();
    assert_eq!(
        b.recommend("u", 1, compute.clone()).await.unwrap().1,
        Origin::L2
    );
    assert_eq!(
        b.recommend("u", 1, compute.clone()).await.unwrap().1,
        Origin::L1
    );

    // An event on server a drops u's list everywhere: a computes anew at once (read your
    // writes), b once the message arrives, and neither reads the old L2 entry again.
    a.users_changed(vec!["u".into()]).await;
    let (_, o) = a.recommend("u", 1, compute.clone()).await.unwrap();
    assert_eq!(o, Origin::Computed);
    let (v, o) = until_recomputed(&b, "u", compute.clone()).await;
    assert_eq!((o, v), (Origin::L2, 1), "b takes a's new entry from L2");

    // An item write on b drops every list on a.
    b.items_changed(vec!["sku-1".into()]).await;
    let (v, o) = until_recomputed(&a, "u", compute.clone()).await;
    assert_eq!((o, v), (Origin::Computed, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_lock_holder_delays_a_fill_by_at_most_the_lock_wait() {
    let config = CacheConfig {
        lock_wait_ms: 200,
        lock_ttl_ms: 60_000,
        ..CacheConfig::default()
    };
    let Some((a, _, raw)) = pair("deadlock", config).await else {
        return;
    };
    let keys = raw.recs_keys("u", 1);
    let token = raw.lock(&raw.lock_key(&keys.data), 60_000).await.unwrap();
    assert!(token.is_some(), "took the lock as a server that then dies");
    let runs = Arc::new(AtomicUsize::new(0));
    let (_, o) = a.recommend("u", 1, counted(&runs, &open())).await.unwrap();
    assert_eq!(o, Origin::Computed);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn prefixes_keep_deployments_apart() {
    let Some((a, _, _)) = pair("p1", CacheConfig::default()).await else {
        return;
    };
    let Some((c, _, _)) = pair("p2", CacheConfig::default()).await else {
        return;
    };
    let runs = Arc::new(AtomicUsize::new(0));
    let compute = counted(&runs, &open());
    a.recommend("u", 1, compute.clone()).await.unwrap();
    assert_eq!(
        c.recommend("u", 1, compute).await.unwrap().1,
        Origin::Computed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forgetting_a_user_erases_exactly_their_l2_lists() {
    let Some((a, _, raw)) = pair("forget", CacheConfig::default()).await else {
        return;
    };
    let runs = Arc::new(AtomicUsize::new(0));
    let compute = counted(&runs, &open());
    // "u*" as a glob would match "u*x" and "uz" too.
    for user in ["u*", "u*x", "uz"] {
        for shape in [1, 2] {
            a.recommend(user, shape, compute.clone()).await.unwrap();
        }
    }
    let stored = |user: &'static str, shape: u128| {
        let raw = raw.clone();
        async move {
            let keys = raw.recs_keys(user, shape);
            raw.get(&keys).await.unwrap().body.is_some()
        }
    };
    assert!(stored("u*", 1).await && stored("u*", 2).await);
    // Erasing costs O(the user's entries): no SCAN of the keyspace (issue 19).
    let scans = scan_calls(&redis_url().expect("redis is up")).await;
    a.forget_user("u*").await;
    assert_eq!(
        scan_calls(&redis_url().expect("redis is up")).await,
        scans,
        "forgetting a user ran SCAN"
    );
    assert!(!stored("u*", 1).await && !stored("u*", 2).await);
    assert!(stored("u*x", 1).await && stored("uz", 2).await);
    assert_eq!(
        a.recommend("u*", 1, compute).await.unwrap().1,
        Origin::Computed
    );
}

/// How many SCAN commands the Redis has run (`INFO commandstats`).
async fn scan_calls(url: &str) -> u64 {
    let client = redis::Client::open(url).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut conn)
        .await
        .expect("INFO commandstats");
    info.lines()
        .find_map(|l| l.strip_prefix("cmdstat_scan:calls="))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// On a Redis Cluster invalidations travel by classic `PUBLISH`, which reaches every node:
/// a server subscribes on any node of the URL that answers, so a dead first seed does not
/// silence them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidations_subscribe_past_a_dead_seed() {
    if redis_url().is_none() {
        return;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/redis.sh");
    let bash = |args: &[&str]| {
        std::process::Command::new("bash")
            .arg(script)
            .args(args)
            .output()
            .expect("run scripts/redis.sh")
    };
    let pid = std::process::id().to_string();
    let started = bash(&["cluster", "start", "--masters", "3", "--owner", &pid]);
    assert!(
        started.status.success(),
        "{}",
        String::from_utf8_lossy(&started.stderr)
    );
    let url = String::from_utf8_lossy(&started.stdout).trim().to_string();
    let tier = RedisTier::connect(
        &url,
        &support::redis::unique_prefix("seed"),
        1_000,
        Duration::from_secs(2),
        Duration::from_secs(5),
    )
    .await
    .expect("connect the L2 tier");
    let first = url
        .trim_start_matches("redis+cluster://")
        .split(',')
        .next()
        .unwrap();
    let port = first.rsplit(':').next().unwrap();
    assert!(bash(&["stop", port]).status.success());
    let subscribed = tier.subscribe().await;
    bash(&["cluster", "stop", &url]);
    assert!(subscribed.is_ok(), "{:?}", subscribed.err());
}
