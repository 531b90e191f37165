//! Listings a page at a time (`list_items`, `list_users`, `events_page`): every walk
//! returns each entry exactly once, in the one order both backends share (bytes of the id,
//! log order for events), with filters, after deletions and under concurrent inserts.

use std::sync::Arc;

use recd_core::{Event, EventType, Filter, Item};
use recd_store::{Page, Store, StoreError};
use serde_json::json;

use crate::support::{event, schema, upsert};

/// Ids that exercise the order and the escaping of a cursor: Redis range syntax (`-`, `+`,
/// `(`, `[`), glob characters, `:`, spaces, multi-byte UTF-8, and prefixes of one another.
const TRICKY: &[&str] = &[
    "-",
    "+",
    "(a",
    "[b",
    "*",
    "a:b",
    "a b",
    "a",
    "ab",
    "ü",
    "z\u{1F600}",
    "item-1",
];

fn f(v: serde_json::Value) -> Filter {
    Filter::parse(&v, &schema()).expect("valid test filter")
}

/// Walks a listing to its end with pages of `limit`, checking each page's size and that
/// only the last one has no `next`.
async fn walk<T, F, Fut>(limit: usize, mut page: F) -> Vec<T>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: std::future::Future<Output = Result<Page<T>, StoreError>>,
{
    let mut out = Vec::new();
    let mut after = None;
    for _ in 0..10_000 {
        let p = page(after.clone()).await.expect("page");
        assert!(
            p.entries.len() <= limit,
            "a page holds at most limit entries"
        );
        out.extend(p.entries);
        match p.next {
            Some(next) => {
                assert!(after.as_ref() != Some(&next), "the cursor moves");
                after = Some(next);
            }
            None => return out,
        }
    }
    panic!("the walk never ended");
}

fn item_ids(items: &[Arc<Item>]) -> Vec<String> {
    items.iter().map(|it| it.id.clone()).collect()
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

pub async fn list_items_pages(store: &dyn Store) {
    let mut ids: Vec<String> = (0..40).map(|i| format!("item-{i:03}")).collect();
    ids.extend(TRICKY.iter().map(|s| s.to_string()));
    let ups = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let category = if i % 2 == 0 { "even" } else { "odd" };
            if i % 3 == 0 {
                upsert(json!({"id": id, "category": category, "price": i}))
            } else {
                upsert(json!({"id": id, "vector": [1, 0, 0, i], "category": category, "price": i}))
            }
        })
        .collect();
    store.upsert_items(ups).await.unwrap();
    let all = sorted(ids.clone());

    for limit in [1, 7, all.len(), 1000] {
        let got = walk(limit, |after| async move {
            store
                .list_items(after.as_deref(), limit, &Filter::all())
                .await
        })
        .await;
        assert_eq!(item_ids(&got), all, "limit {limit}");
    }
    // A page is the items as stored (a vector may come along; the fields are the item's).
    let first = store.list_items(None, 1, &Filter::all()).await.unwrap();
    let stored = store
        .get_items(&[first.entries[0].id.clone()])
        .await
        .unwrap()
        .remove(0)
        .unwrap();
    assert_eq!(first.entries[0].fields, stored.fields);
    assert_eq!(first.next.as_deref(), Some(all[0].as_str()));

    // Filters apply inside the walk: pages of matches only, every match once.
    let even = f(json!({"category": {"any": ["even"]}}));
    let want: Vec<String> = sorted(
        ids.iter()
            .enumerate()
            .filter(|(i, _)| i % 2 == 0)
            .map(|(_, id)| id.clone())
            .collect(),
    );
    let got = walk(3, |after| {
        let even = even.clone();
        async move { store.list_items(after.as_deref(), 3, &even).await }
    })
    .await;
    assert_eq!(item_ids(&got), want);
    assert!(got.iter().all(|it| even.matches(it)));
    let cheap = f(json!({"price": {"lt": 2}}));
    let got = store.list_items(None, 10, &cheap).await.unwrap();
    assert_eq!(item_ids(&got.entries), sorted(ids[..2].to_vec()));
    assert_eq!(got.next, None, "no more matches: no cursor");
    let none = f(json!({"category": {"any": ["nope"]}}));
    let got = store.list_items(None, 10, &none).await.unwrap();
    assert!(got.entries.is_empty() && got.next.is_none());

    // Deleted items are gone, and a cursor naming one still continues after it.
    store.delete_item("item-005").await.unwrap();
    store.delete_item("a:b").await.unwrap();
    let got = walk(6, |after| async move {
        store.list_items(after.as_deref(), 6, &Filter::all()).await
    })
    .await;
    let left: Vec<String> = all
        .iter()
        .filter(|id| *id != "item-005" && *id != "a:b")
        .cloned()
        .collect();
    assert_eq!(item_ids(&got), left);
    let after_deleted = store
        .list_items(Some("item-005"), 1, &Filter::all())
        .await
        .unwrap();
    assert_eq!(item_ids(&after_deleted.entries), ["item-006"]);
    // After the last id, or past every id: empty, the end.
    let last = all.last().unwrap();
    let end = store
        .list_items(Some(last), 5, &Filter::all())
        .await
        .unwrap();
    assert!(end.entries.is_empty() && end.next.is_none());
}

pub async fn list_users_pages(store: &dyn Store) {
    let mut users: Vec<String> = (0..30).map(|i| format!("user-{i:02}")).collect();
    users.extend(TRICKY.iter().map(|s| s.to_string()));
    let events: Vec<Event> = users
        .iter()
        .map(|u| event(u, "some-item", EventType::View, None, 1_000))
        .collect();
    store.apply_events(&events).await.unwrap();
    // A user known only from a trained vector is a user with state too.
    store
        .set_user_vectors(vec![("vector-only".into(), vec![1.0, 0.0, 0.0, 0.0])])
        .await
        .unwrap();
    users.push("vector-only".into());
    let all = sorted(users);
    for limit in [1, 4, all.len(), 1000] {
        let got = walk(limit, |after| async move {
            store.list_users(after.as_deref(), limit).await
        })
        .await;
        assert_eq!(got, all, "limit {limit}");
    }
    assert!(store.delete_user("user-07").await.unwrap());
    assert!(store.delete_user("+").await.unwrap());
    let got = walk(5, |after| async move {
        store.list_users(after.as_deref(), 5).await
    })
    .await;
    let left: Vec<String> = all
        .iter()
        .filter(|u| *u != "user-07" && *u != "+")
        .cloned()
        .collect();
    assert_eq!(got, left);
    assert_eq!(store.counts().await.unwrap().users, left.len() as u64);
}

pub async fn events_pages(store: &dyn Store) {
    let empty = store.events_page(None, 10).await.unwrap();
    assert!(empty.entries.is_empty() && empty.next.is_none());
    assert_eq!(store.events_len().await.unwrap(), 0);
    for i in 0..25 {
        let user = format!("u{}", i % 4);
        store
            .apply_events(&[event(&user, "x", EventType::Click, None, 100 + i)])
            .await
            .unwrap();
    }
    let log = store.events().await.unwrap();
    assert_eq!(log.len(), 25);
    assert_eq!(store.events_len().await.unwrap(), 25);
    for limit in [1, 4, 25, 100] {
        let got = walk(limit, |after| async move {
            store.events_page(after.as_deref(), limit).await
        })
        .await;
        assert_eq!(got, log, "limit {limit}");
    }
    // A position stays exact when users are forgotten: the rest of the walk is the rest of
    // the log without their events.
    let first = store.events_page(None, 10).await.unwrap();
    assert_eq!(first.entries, log[..10]);
    assert!(store.delete_user("u1").await.unwrap());
    let rest = walk(3, |after| {
        let after = after.or_else(|| first.next.clone());
        async move { store.events_page(after.as_deref(), 3).await }
    })
    .await;
    let want: Vec<Event> = log[10..]
        .iter()
        .filter(|e| e.user_id != "u1")
        .cloned()
        .collect();
    assert_eq!(rest, want);
    let left = log.iter().filter(|e| e.user_id != "u1").count();
    assert_eq!(store.events_len().await.unwrap(), left as u64);
    // A walk that reached the end continues from there with what came later.
    let end = store.events_page(None, 1000).await.unwrap();
    assert_eq!(end.next, None);
    let last_seen = store
        .events_page(None, end.entries.len() - 1)
        .await
        .unwrap();
    let later = event("u9", "y", EventType::View, None, 999);
    store
        .apply_events(std::slice::from_ref(&later))
        .await
        .unwrap();
    let tail = store
        .events_page(last_seen.next.as_deref(), 1000)
        .await
        .unwrap();
    assert_eq!(tail.entries, [end.entries.last().unwrap().clone(), later]);
    // A position the store never gave out is refused, not read as the start.
    for bad in ["nonsense", "-", "1-x", ""] {
        let r = store.events_page(Some(bad), 10).await;
        assert!(matches!(r, Err(StoreError::Invalid(_))), "{bad:?}: {r:?}");
    }
}

/// Items inserted (and deleted) between and around the pages of a walk never make it skip
/// or repeat an item that existed for the whole walk: pages are cut by id, not by count.
pub async fn list_items_under_concurrent_writes(store: Arc<dyn Store>) {
    let base: Vec<String> = (0..300).map(|i| format!("base-{i:04}")).collect();
    store
        .upsert_items(
            base.iter()
                .map(|id| upsert(json!({"id": id, "price": 1})))
                .collect(),
        )
        .await
        .unwrap();
    let writer = {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            // Ids before, between and after the base ids, in small batches.
            for round in 0..40 {
                let batch = (0..10)
                    .map(|j| {
                        let n = (round * 10 + j) * 7 % 300;
                        upsert(json!({"id": format!("base-{n:04}-new{round}"), "price": 2}))
                    })
                    .chain([upsert(json!({"id": format!("a-{round}"), "price": 2}))])
                    .collect();
                store.upsert_items(batch).await.unwrap();
                store
                    .delete_item(&format!("a-{}", round / 2))
                    .await
                    .unwrap();
            }
        })
    };
    let walked = walk(13, |after| {
        let store = Arc::clone(&store);
        async move { store.list_items(after.as_deref(), 13, &Filter::all()).await }
    })
    .await;
    writer.await.unwrap();
    let ids = item_ids(&walked);
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "ascending, no id twice"
    );
    let seen_base: Vec<&String> = ids.iter().filter(|id| id.len() == 9).collect();
    assert_eq!(seen_base.len(), base.len(), "every base item exactly once");
}
