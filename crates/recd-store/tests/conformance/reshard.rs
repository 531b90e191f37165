//! Resharding while serving (docs/cluster.md, "Resharding"): a shard's slot moved to a
//! newly added master under reads. Every read during and after the move is complete (the
//! same ids as before it, which are every item) or unavailable (503), never a shorter list;
//! `shard_reports` follows the shard to its new master.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use recd_core::Filter;
use recd_store::{RedisConfig, RedisStore, Store, StoreError};
use redis::aio::MultiplexedConnection;

use crate::cluster::{catalog, nodes, port, private_cluster};
use crate::support::add_master;

const ITEMS: usize = 120;

/// One round of reads: KNN over every item, text over every item, the counts. Each is
/// complete or unavailable; true when all were complete.
async fn read_round(store: &RedisStore, every: &BTreeSet<String>) -> bool {
    let all = Filter::all();
    let mut complete = true;
    match store.knn(&[1.0, 0.0, 0.0, 0.0], ITEMS, &all).await {
        Ok(hits) => {
            let got: BTreeSet<String> = hits.into_iter().map(|h| h.item.id.clone()).collect();
            assert_eq!(&got, every, "a partial KNN answer");
        }
        Err(StoreError::Unavailable(_)) => complete = false,
        Err(e) => panic!("knn: {e}"),
    }
    let terms = vec!["thing".to_string()];
    match store.text_search(&terms, 1000, &all).await {
        Ok(items) => assert_eq!(items.len(), ITEMS, "a partial text answer"),
        Err(StoreError::Unavailable(_)) => complete = false,
        Err(e) => panic!("text: {e}"),
    }
    match store.counts().await {
        Ok(c) => assert_eq!(c.items, ITEMS as u64, "a partial count"),
        Err(StoreError::Unavailable(_)) => complete = false,
        Err(e) => panic!("counts: {e}"),
    }
    complete
}

async fn direct(node: &str) -> MultiplexedConnection {
    redis::Client::open(format!("redis://{node}"))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

async fn run(conn: &mut MultiplexedConnection, cmd: &redis::Cmd) -> redis::Value {
    cmd.query_async(conn).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_moved_to_a_new_master_answers_completely_or_not_at_all() {
    let Some((url, store)) = private_cluster(0, RedisConfig::default()).await else {
        return;
    };
    store.upsert_items(catalog(ITEMS)).await.unwrap();
    let every: BTreeSet<String> = (0..ITEMS).map(|i| format!("item-{i}")).collect();
    assert!(read_round(&store, &every).await);
    let before = store.shard_reports().await.unwrap();
    assert_eq!(before.len(), 3);
    for r in &before {
        assert!(r.problems.is_empty(), "{r:?}");
        assert_eq!(r.index.as_ref().map(|i| i.num_docs), Some(r.items), "{r:?}");
    }
    let slot = before[0].slot.unwrap();
    let source = before[0].master.clone().unwrap();
    let target = add_master(port(&nodes(&url)[0])).expect("a new master");

    // A concurrent reader, beside the reads between the steps below.
    let stop = Arc::new(AtomicBool::new(false));
    let rounds = Arc::new(AtomicUsize::new(0));
    let reader = {
        let (store, every, stop, rounds) =
            (store.clone(), every.clone(), stop.clone(), rounds.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                read_round(&store, &every).await;
                rounds.fetch_add(1, Ordering::Relaxed);
            }
        })
    };

    // The move, as `redis-cli --cluster reshard` makes it: IMPORTING, MIGRATING, the keys
    // in batches, then the new owner everywhere.
    let (mut src, mut dst) = (direct(&source).await, direct(&target).await);
    let id = |v: redis::Value| redis::from_redis_value::<String>(v).unwrap();
    let src_id = id(run(&mut src, redis::cmd("CLUSTER").arg("MYID")).await);
    let dst_id = id(run(&mut dst, redis::cmd("CLUSTER").arg("MYID")).await);
    run(
        &mut dst,
        redis::cmd("CLUSTER")
            .arg("SETSLOT")
            .arg(slot)
            .arg("IMPORTING")
            .arg(&src_id),
    )
    .await;
    run(
        &mut src,
        redis::cmd("CLUSTER")
            .arg("SETSLOT")
            .arg(slot)
            .arg("MIGRATING")
            .arg(&dst_id),
    )
    .await;
    assert!(
        !read_round(&store, &every).await,
        "complete answers from a moving shard"
    );
    let moving = store.shard_reports().await.unwrap();
    assert!(
        moving[0].moving && !moving[0].problems.is_empty(),
        "{:?}",
        moving[0]
    );
    let (host, dst_port) = target.rsplit_once(':').unwrap();
    let mut batches = 0;
    loop {
        let keys: Vec<String> = redis::from_redis_value(
            run(
                &mut src,
                redis::cmd("CLUSTER").arg("GETKEYSINSLOT").arg(slot).arg(10),
            )
            .await,
        )
        .unwrap();
        if keys.is_empty() {
            break;
        }
        let mut migrate = redis::cmd("MIGRATE");
        migrate
            .arg(host)
            .arg(dst_port)
            .arg("")
            .arg(0)
            .arg(5000)
            .arg("KEYS")
            .arg(&keys);
        run(&mut src, &migrate).await;
        batches += 1;
        read_round(&store, &every).await;
    }
    assert!(
        batches > 1,
        "the shard's keys moved in one batch: no read saw the middle"
    );
    let masters: Vec<String> = nodes(&url)
        .into_iter()
        .take(3)
        .chain([target.clone()])
        .collect();
    for node in [&target, &source].into_iter().chain(masters.iter()) {
        let mut c = direct(node).await;
        run(
            &mut c,
            redis::cmd("CLUSTER")
                .arg("SETSLOT")
                .arg(slot)
                .arg("NODE")
                .arg(&dst_id),
        )
        .await;
    }

    // After: complete again once the new master's index is ready (a few queries at most).
    let mut tries = 0;
    while !read_round(&store, &every).await {
        tries += 1;
        assert!(tries < 100, "the moved shard never answered again");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    reader.await.unwrap();
    assert!(rounds.load(Ordering::Relaxed) > 0);
    let after = store.shard_reports().await.unwrap();
    assert_eq!(
        after[0].master.as_deref(),
        Some(target.as_str()),
        "{:?}",
        after[0]
    );
    for r in &after {
        assert!(r.problems.is_empty(), "{r:?}");
    }
    let _ = std::process::Command::new("bash")
        .arg(crate::support::redis_script())
        .args(["cluster", "stop", &url])
        .status();
}
