//! Durability: no acknowledged write is lost to a kill -9, under `fsync = "always"` and
//! under `everysec` (the write log is in the kernel before a write is acknowledged).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::json;
use tokio::sync::Mutex;

use crate::server::{Server, data_dir};

/// What the writers saw acknowledged.
#[derive(Default)]
struct Acked {
    items: Mutex<Vec<String>>,
    /// Users that got exactly one acknowledged purchase each.
    users: Mutex<Vec<String>>,
}

/// Writers put items and post events (one purchase per new user) until the server dies
/// under them; the server is killed once `writes` more pairs were acknowledged (progress,
/// not time, decides).
async fn write_then_kill(s: Server, tag: &str, writes: usize, acked: &Arc<Acked>) {
    let pid = s.child.id();
    let s = Arc::new(s);
    let total = Arc::new(AtomicUsize::new(0));
    let mut writers = Vec::new();
    for w in 0..4 {
        let (s, acked, total, tag) = (s.clone(), acked.clone(), total.clone(), tag.to_string());
        writers.push(tokio::spawn(async move {
            for n in 0.. {
                let user = format!("{tag}-w{w}-u{n}");
                let item = format!("{tag}-w{w}-i{n}");
                let r = s.client.put(format!("{}/v1/items", s.base))
                    .json(&json!({"items": [{"id": item, "category": "durable", "vector": vec![0.5f32; 64]}]}))
                    .send().await;
                match r {
                    Ok(resp) if resp.status().is_success() => acked.items.lock().await.push(item.clone()),
                    _ => return,
                }
                let r = s.client.post(format!("{}/v1/events", s.base))
                    .json(&json!({"events": [{"user_id": user, "item_id": item, "type": "purchase"}]}))
                    .send().await;
                match r {
                    Ok(resp) if resp.status().is_success() => acked.users.lock().await.push(user),
                    _ => return,
                }
                total.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    while total.load(Ordering::SeqCst) < writes {
        tokio::task::yield_now().await;
    }
    let status = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    for w in writers {
        let _ = w.await;
    }
}

/// Every acknowledged item is there, and every acknowledged purchase counted exactly once.
async fn check(s: &Server, acked: &Acked) {
    let items = acked.items.lock().await.clone();
    let users = acked.users.lock().await.clone();
    for item in &items {
        assert_eq!(
            s.get(&format!("/v1/items/{item}")).await.0,
            200,
            "acknowledged item {item} lost"
        );
    }
    for user in &users {
        let (status, u) = s.get(&format!("/v1/users/{user}")).await;
        assert_eq!(status, 200, "acknowledged event of {user} lost");
        assert_eq!(u["counters"]["purchase"], 1, "{user}: {u}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn acknowledged_writes_survive_kill_9() {
    let dir = data_dir("kill9");
    let envs = [("RECD_EMBEDDED__FSYNC", "always")];
    let acked = Arc::new(Acked::default());
    write_then_kill(Server::demo(&dir, &envs), "once", 60, &acked).await;
    let dir_s = dir.to_str().unwrap();
    let s = Server::start(&["serve", "--data-dir", dir_s], &envs);
    assert!(acked.items.lock().await.len() >= 60 && acked.users.lock().await.len() >= 60);
    check(&s, &acked).await;
}

/// Cycles of concurrent writers → kill -9 → restart → every write acknowledged in any
/// cycle so far is present. Checkpoints run every 64 KiB of log, so kills land before,
/// during and after them.
async fn kill_9_loop(fsync: &str) {
    let dir = data_dir(&format!("kill9-loop-{fsync}"));
    let dir_s = dir.to_str().unwrap();
    let envs = [
        ("RECD_EMBEDDED__FSYNC", fsync),
        ("RECD_EMBEDDED__CHECKPOINT_BYTES", "65536"),
    ];
    let acked = Arc::new(Acked::default());
    let mut s = Server::demo(&dir, &envs);
    for cycle in 0..3 {
        write_then_kill(s, &format!("c{cycle}"), 150, &acked).await;
        s = Server::start(&["serve", "--data-dir", dir_s], &envs);
        check(&s, &acked).await;
    }
    assert!(acked.users.lock().await.len() >= 3 * 150);
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_loop_always() {
    kill_9_loop("always").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_loop_everysec() {
    kill_9_loop("everysec").await;
}
