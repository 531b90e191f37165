//! `recd train --target URL` against a running demo server (the embedded data dir stays
//! owned by the server): requests keep succeeding while the trainer reads the log and writes
//! the vectors back, the vectors change, answers keep every rule of API.md, and a session
//! built before training follows its items into the new vector space.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{Value, json};
use tokio::sync::Mutex;

use super::{ok, path, recd};
use crate::server::{Server, data_dir, ids};

/// Every answer of the request loops: status, whether the request had the filter, and the
/// body (or the transport error).
type Answers = Vec<(u16, bool, Value)>;

/// Recommend requests for the demo's users (`user-N`, a filter on every other one) in
/// `loops` concurrent loops until `stop`, then a final round once it is set.
async fn load(base: String, loops: usize, stop: Arc<AtomicBool>) -> Answers {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for l in 0..loops {
        let (base, stop, seen) = (base.clone(), stop.clone(), seen.clone());
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut n = l;
            while !stop.load(Ordering::SeqCst) {
                n += loops;
                let mut body = json!({"user_id": format!("user-{}", n % 200), "count": 10});
                let filtered = n % 2 == 0;
                if filtered {
                    body["filter"] = json!({"in_stock": true, "price": {"lt": 80}});
                }
                let answer = match client
                    .post(format!("{base}/v1/recommend"))
                    .json(&body)
                    .send()
                    .await
                {
                    Ok(r) => {
                        let status = r.status().as_u16();
                        (status, filtered, r.json().await.unwrap_or(Value::Null))
                    }
                    Err(e) => (0, filtered, json!({"transport error": e.to_string()})),
                };
                seen.lock().await.push(answer);
            }
        }));
    }
    for t in tasks {
        t.await.expect("request loop");
    }
    seen.lock().await.clone()
}

/// The API.md rules of one recommend answer for `count` items under the loop's filter.
fn check_answer(answer: &Value, filtered: bool) {
    let items = answer["items"].as_array().expect("items");
    assert!(!items.is_empty() && items.len() <= 10, "{answer}");
    let unique: HashSet<String> = ids(answer).into_iter().collect();
    assert_eq!(unique.len(), items.len(), "duplicates in {answer}");
    let scores: Vec<f64> = items.iter().filter_map(|i| i["score"].as_f64()).collect();
    assert_eq!(scores.len(), items.len(), "{answer}");
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    if filtered {
        for i in items {
            let (stock, price) = (i["item"]["in_stock"].as_bool(), i["item"]["price"].as_f64());
            assert!(
                stock == Some(true) && price.is_some_and(|p| p < 80.0),
                "{i}"
            );
        }
    }
}

/// The event log of the server as NDJSON lines (parsed).
async fn log(s: &Server) -> Vec<Value> {
    s.get_text("/v1/admin/events")
        .await
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON event per line"))
        .collect()
}

fn vector(item: &Value) -> Vec<f64> {
    item["vector"]
        .as_array()
        .expect("an item with a vector")
        .iter()
        .filter_map(Value::as_f64)
        .collect()
}

/// The item most events of the log are about.
fn most_touched(log: &[Value]) -> String {
    let mut n: HashMap<&str, usize> = HashMap::new();
    for e in log {
        *n.entry(e["item_id"].as_str().expect("item_id"))
            .or_default() += 1;
    }
    let top = n
        .into_iter()
        .max_by_key(|(id, c)| (*c, *id))
        .expect("events");
    top.0.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn train_target_writes_back_while_requests_are_served() {
    let dir = data_dir("train-target");
    let s = Server::demo(&dir, &[]);
    let events = log(&s).await;
    assert!(events.len() > 1000, "{} events", events.len());
    let x = most_touched(&events);
    let (_, before) = s.get(&format!("/v1/items/{x}?include_vector=true")).await;
    let old = vector(&before);

    // The data dir belongs to the server: direct training says so and points to --target.
    let busy = recd(&["train", "--data-dir", path(&dir)], &[]);
    assert_eq!(busy.status.code(), Some(1));
    let err = String::from_utf8_lossy(&busy.stderr);
    assert!(
        err.contains("in use by another process") && err.contains("--target"),
        "{err}"
    );

    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn(load(s.base.clone(), 6, stop.clone()));
    let target = s.base.clone();
    let out = tokio::task::spawn_blocking(move || {
        recd(
            &[
                "train",
                "--target",
                &target,
                "--iterations",
                "5",
                "--batch",
                "200",
            ],
            &[],
        )
    })
    .await
    .expect("train task");
    stop.store(true, Ordering::SeqCst);
    let answers = load.await.expect("load");
    let printed = ok(&out, "train --target");

    // Zero failed requests, and every answer keeps the contract.
    let failed: Vec<&(u16, bool, Value)> = answers.iter().filter(|(st, ..)| *st != 200).collect();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed, e.g. {:?}",
        failed.len(),
        answers.len(),
        &failed[..failed.len().min(3)]
    );
    assert!(
        answers.len() >= 6,
        "the load ran: {} answers",
        answers.len()
    );
    for (_, filtered, a) in &answers {
        check_answer(a, *filtered);
    }
    assert!(printed.contains("trained ALS: 64 factors"), "{printed}");
    assert!(
        printed.contains("user vectors to the embedded store at http://"),
        "{printed}"
    );
    assert!(
        printed.contains("rebuilt the session vectors of 200 users"),
        "{printed}"
    );

    // The vectors are new, and answers after training still keep every rule.
    let (_, after) = s.get(&format!("/v1/items/{x}?include_vector=true")).await;
    let new = vector(&after);
    assert_eq!(new.len(), old.len());
    assert_ne!(new, old, "{x} kept its vector");
    for u in 0..20 {
        let filtered = u % 2 == 0;
        let mut body = json!({"user_id": format!("user-{u}"), "count": 10});
        if filtered {
            body["filter"] = json!({"in_stock": true, "price": {"lt": 80}});
        }
        let a = s.recommend(body).await;
        assert!(a["source"] == "personalized", "{a}");
        check_answer(&a, filtered);
    }
    // Training twice is harmless (the write-back is idempotent in effect): the same
    // settings on the same log give the same model, which passes the quality gate against
    // the live one.
    let again = recd(&["train", "--target", &s.base, "--iterations", "5"], &[]);
    let printed = ok(&again, "train --target, again");
    assert!(printed.contains("model v2 is live"), "{printed}");
}

/// A user known only by a click before training (no long-term vector: training reads a
/// file without them) gets, after training, the neighbours of the clicked item's *new*
/// vector: the session was rebuilt from the click with the new vectors.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_session_follows_its_items_into_the_new_space() {
    let data = data_dir("train-target-session");
    let s = Server::demo(&data, &[]);
    let events = log(&s).await;
    let x = most_touched(&events);
    s.event("probe", &x, "click").await;
    // the probe's list is cached before training
    let probe = json!({"user_id": "probe", "count": 10});
    s.recommend(probe.clone()).await;
    assert!(s.recommend(probe.clone()).await.get("cache").is_some());
    let file = crate::server::scratch_file("train-target-session-events", "jsonl");
    let lines: Vec<String> = log(&s)
        .await
        .iter()
        .filter(|e| e["user_id"] != "probe")
        .map(Value::to_string)
        .collect();
    assert_eq!(
        lines.len(),
        events.len(),
        "the probe's click is the only new event"
    );
    std::fs::write(&file, lines.join("\n")).expect("write the interactions");

    let out = recd(
        &[
            "train",
            "--target",
            &s.base,
            "--interactions",
            path(&file),
            "--iterations",
            "5",
        ],
        &[],
    );
    let printed = ok(&out, "train --target --interactions");
    // every user of the server's log, the probe included
    assert!(
        printed.contains("rebuilt the session vectors of 201 users"),
        "{printed}"
    );

    let (_, u) = s.get("/v1/users/probe").await;
    assert_eq!(u["counters"]["click"], 1, "{u}");
    let near_x: HashSet<String> = {
        let (status, similar) = s
            .post(&format!("/v1/items/{x}/similar"), json!({"count": 20}))
            .await;
        assert_eq!(status, 200, "{similar}");
        ids(&similar).into_iter().collect()
    };
    // the write-back dropped the cached list: this one is ranked with the rebuilt session
    let a = s.recommend(probe).await;
    assert_eq!(a["source"], "personalized", "{a}");
    let explained = s
        .recommend(json!({"user_id": "probe", "explain": true, "use_cache": false}))
        .await;
    assert_eq!(
        explained["stages"]["query"]["has_long_term"], false,
        "{explained}"
    );
    let got = ids(&a);
    assert!(!got.contains(&x), "the clicked item came back");
    let close = got.iter().filter(|id| near_x.contains(*id)).count();
    eprintln!("{close} of the probe's 10 items are among the 20 nearest to {x}'s new vector");
    assert!(
        close >= 6,
        "only {close} of {got:?} are among the 20 nearest to {x}'s new vector {near_x:?}"
    );
}
