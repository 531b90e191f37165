//! Durability: with `fsync = "always"`, no acknowledged write is lost to a kill -9.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::json;
use tokio::sync::Mutex;

use crate::server::{Server, data_dir};

#[tokio::test(flavor = "multi_thread")]
async fn acknowledged_writes_survive_kill_9() {
    let dir = data_dir("kill9");
    let envs = [("RECD_EMBEDDED__FSYNC", "always")];
    let s = Server::demo(&dir, &envs);
    let pid = s.child.id();
    let s = Arc::new(s);
    let acked_events: Arc<Mutex<Vec<String>>> = Arc::default();
    let acked_items: Arc<Mutex<Vec<String>>> = Arc::default();
    let total = Arc::new(AtomicUsize::new(0));
    // Writers keep writing while the process is killed under them.
    let mut writers = Vec::new();
    for w in 0..4 {
        let (s, ev, it, total) = (
            s.clone(),
            acked_events.clone(),
            acked_items.clone(),
            total.clone(),
        );
        writers.push(tokio::spawn(async move {
            for n in 0.. {
                let user = format!("w{w}-u{n}");
                let item = format!("w{w}-i{n}");
                let r = s.client.put(format!("{}/v1/items", s.base))
                    .json(&json!({"items": [{"id": item, "category": "durable", "vector": vec![0.5f32; 64]}]}))
                    .send().await;
                match r {
                    Ok(resp) if resp.status().is_success() => it.lock().await.push(item.clone()),
                    _ => return,
                }
                let r = s.client.post(format!("{}/v1/events", s.base))
                    .json(&json!({"events": [{"user_id": user, "item_id": item, "type": "purchase"}]}))
                    .send().await;
                match r {
                    Ok(resp) if resp.status().is_success() => ev.lock().await.push(user),
                    _ => return,
                }
                total.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    // Kill once enough writes were acknowledged (progress, not time, decides).
    while total.load(Ordering::SeqCst) < 60 {
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
    drop(s);
    let dir_s = dir.to_str().unwrap();
    let s = Server::start(&["serve", "--data-dir", dir_s], &envs);
    let items = acked_items.lock().await.clone();
    let users = acked_events.lock().await.clone();
    assert!(items.len() >= 60 && users.len() >= 60);
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
        assert_eq!(u["counters"]["purchase"], 1);
    }
}
