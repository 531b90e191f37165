//! Listings on the real binary: `GET /v1/items` and `GET /v1/users` walked page by page,
//! `GET /v1/admin/events` streamed and paged; and the start-up paths around a data dir
//! (`recd config defaults`, a failed start that must leave the dir untouched).

use std::process::{Command, Stdio};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::server::{Server, data_dir};

/// `s` percent-encoded for a query string.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Walks `path` (which has a query already) with `limit`, returning the entries of `key`.
async fn walk(s: &Server, path: &str, key: &str, limit: usize) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10_000 {
        let url = match &cursor {
            Some(c) => format!("{path}&limit={limit}&cursor={c}"),
            None => format!("{path}&limit={limit}"),
        };
        let (status, body) = s.get(&url).await;
        assert_eq!(status, 200, "{url}: {body}");
        let page = body[key].as_array().expect("entries");
        assert!(page.len() <= limit);
        out.extend(page.iter().cloned());
        match &body["next_cursor"] {
            Value::String(c) => cursor = Some(c.clone()),
            Value::Null => return out,
            other => panic!("next_cursor {other}"),
        }
    }
    panic!("the walk never ended")
}

#[tokio::test(flavor = "multi_thread")]
async fn items_and_users_are_listed_page_by_page() {
    let dir = data_dir("listing");
    let s = Server::demo(&dir, &[]);
    let (_, health) = s.get("/health").await;
    let items = walk(&s, "/v1/items?", "items", 700).await;
    assert_eq!(items.len() as u64, health["items"].as_u64().unwrap());
    let ids: Vec<&str> = items.iter().map(|i| i["id"].as_str().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "id order, no repeats");
    assert!(
        items.iter().all(|i| i.get("vector").is_none()),
        "no vectors"
    );
    // The same JSON as the item's own endpoint.
    let (_, one) = s.get(&format!("/v1/items/{}", ids[17])).await;
    assert_eq!(items[17], one);

    let filter = json!({"in_stock": true, "price": {"lt": 100}});
    let path = format!("/v1/items?filter={}", encode(&filter.to_string()));
    let cheap = walk(&s, &path, "items", 100).await;
    let want: Vec<&Value> = items
        .iter()
        .filter(|i| i["in_stock"] == true && i["price"].as_f64().is_some_and(|p| p < 100.0))
        .collect();
    assert!(!want.is_empty() && want.len() < items.len());
    assert_eq!(cheap.iter().collect::<Vec<_>>(), want);

    let users = walk(&s, "/v1/users?", "users", 77).await;
    assert_eq!(users.len() as u64, health["users"].as_u64().unwrap());
    let first = users[0].as_str().unwrap().to_string();
    assert_eq!(s.delete(&format!("/v1/users/{first}")).await, 204);
    let (_, page) = s.get("/v1/users?limit=1").await;
    assert_ne!(
        page["users"][0],
        first.as_str(),
        "a forgotten user is not listed"
    );

    // Default page size; bad parameters are 400s in the error shape.
    let (_, page) = s.get("/v1/items").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 100);
    for bad in [
        "/v1/items?limit=0",
        "/v1/items?limit=1001",
        "/v1/items?limit=ten",
        "/v1/items?cursor=not-a-cursor",
        "/v1/items?filter=%7Bnope",
        "/v1/items?filter=%7B%22nope%22%3A1%7D",
        "/v1/items?colour=red",
        "/v1/users?limit=5000",
        "/v1/users?cursor=zz",
    ] {
        let (status, body) = s.get(bad).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "invalid_argument", "{bad}: {body}");
    }
}

/// The NDJSON lines of an events answer, its length header and its next cursor.
async fn events(s: &Server, query: &str) -> (u16, Vec<String>, Option<u64>, Option<String>) {
    let resp = s
        .client
        .get(format!("{}/v1/admin/events{query}", s.base))
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let len = header("x-recd-log-length").and_then(|v| v.parse().ok());
    let next = header("x-recd-next-cursor");
    let text = resp.text().await.expect("body");
    let lines = text.lines().map(str::to_string).collect();
    (status, lines, len, next)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_event_log_streams_whole_or_in_pages() {
    let dir = data_dir("events-pages");
    let s = Server::demo(&dir, &[]);
    let (status, all, len, next) = events(&s, "").await;
    assert_eq!(status, 200);
    assert!(
        all.len() > 2000,
        "the demo history spans several store pages"
    );
    assert_eq!(Some(all.len() as u64), len);
    assert_eq!(next, None);
    // Paged with cursors: every event once, in order.
    let mut paged = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let query = match &cursor {
            Some(c) => format!("?limit=333&cursor={c}"),
            None => "?limit=333".to_string(),
        };
        let (status, lines, _, next) = events(&s, &query).await;
        assert_eq!(status, 200);
        assert!(lines.len() <= 333);
        paged.extend(lines);
        match next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(paged, all);
    // offset still skips, as before; with a limit it pages from there.
    let (_, rest, _, _) = events(&s, "?offset=1500").await;
    assert_eq!(rest, all[1500..]);
    let (_, some, _, next) = events(&s, "?offset=10&limit=5").await;
    assert_eq!(some, all[10..15]);
    let (_, after, _, _) = events(&s, &format!("?limit=3&cursor={}", next.unwrap())).await;
    assert_eq!(after, all[15..18]);
    for bad in ["?limit=0", "?limit=10001", "?cursor=zz"] {
        let (status, _, _, _) = events(&s, bad).await;
        assert_eq!(status, 400, "{bad}");
    }
    // A well-formed cursor ("no") that names no position of the log: nothing to find.
    let (status, _, _, _) = events(&s, "?cursor=6e6f").await;
    assert_eq!(status, 404);
}

/// Issue 11: `recd serve` on a new data dir without a schema fails with a hint that names
/// `--config`, and leaves nothing behind, so that `recd demo` takes the dir afterwards.
#[tokio::test(flavor = "multi_thread")]
async fn a_failed_start_leaves_the_data_dir_free() {
    let dir = data_dir("failed-start");
    let out = Command::new(env!("CARGO_BIN_EXE_recd"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&dir)
        .env("RECD_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("run recd");
    assert_eq!(out.status.code(), Some(2), "a usage error");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--config"), "{stderr}");
    assert!(!dir.join("recd.redb").exists(), "no data file left behind");
    let left: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "nothing left behind: {left:?}");
    let s = Server::demo(&dir, &[]);
    let (_, health) = s.get("/health").await;
    assert_eq!(health["items"], 3000, "demo took the dir: {health}");
}

/// `recd config defaults` prints a config that `recd serve --config` takes verbatim.
#[tokio::test(flavor = "multi_thread")]
async fn config_defaults_is_a_config_serve_accepts() {
    let dir = data_dir("config-defaults");
    let out = Command::new(env!("CARGO_BIN_EXE_recd"))
        .args(["config", "defaults"])
        .output()
        .expect("run recd");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8");
    for section in [
        "[server]",
        "[embedded]",
        "[redis]",
        "[model",
        "[ranking]",
        "[cache",
    ] {
        assert!(text.contains(section), "{section} missing:\n{text}");
    }
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("defaults.toml");
    std::fs::write(&file, &text).unwrap();
    // A data dir that holds a schema already (the defaults have none).
    let data = dir.join("data");
    let loaded = Command::new(env!("CARGO_BIN_EXE_recd"))
        .args([
            "demo",
            "--load-only",
            "--items",
            "200",
            "--users",
            "20",
            "--data-dir",
        ])
        .arg(&data)
        .env("RECD_LOG", "warn")
        .stdout(Stdio::null())
        .status()
        .expect("run recd demo");
    assert!(loaded.success());
    let s = Server::start(
        &[
            "serve",
            "--config",
            file.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
        ],
        &[],
    );
    let (status, health) = s.get("/health").await;
    assert_eq!((status, &health["items"]), (200, &json!(200)), "{health}");
}

/// The same demo shop in Redis lists exactly as the embedded one: same pages, same order,
/// same filter results, same users.
#[tokio::test(flavor = "multi_thread")]
async fn redis_lists_exactly_as_embedded() {
    let Some(url) = crate::redis::redis_or_skip() else {
        return;
    };
    let config = crate::server::scratch_file("list-config", "toml");
    std::fs::write(&config, crate::redis::SCHEMA).expect("config");
    let prefix = format!("e2e-list{}:", std::process::id());
    let rdir = data_dir("listing-redis");
    let redis = Server::start(
        &[
            "demo",
            "--backend",
            "redis",
            "--redis-url",
            &url,
            "--config",
            config.to_str().unwrap(),
            "--data-dir",
            rdir.to_str().unwrap(),
            "--items",
            "3000",
            "--users",
            "200",
            "--seed",
            "7",
        ],
        &[("RECD_REDIS__PREFIX", prefix.as_str())],
    );
    let edir = data_dir("listing-embedded");
    let embedded = Server::demo(&edir, &[]);
    let (_, first) = embedded.get("/v1/items?limit=1").await;
    let category = first["items"][0]["category"][0].clone();
    let filter = json!({"category": {"any": [category]}, "price": {"gte": 20}, "in_stock": true});
    let filtered = format!("/v1/items?filter={}", encode(&filter.to_string()));
    for (path, key, limit) in [
        ("/v1/items?", "items", 450),
        (filtered.as_str(), "items", 60),
        ("/v1/users?", "users", 33),
    ] {
        let a = walk(&redis, path, key, limit).await;
        let b = walk(&embedded, path, key, limit).await;
        assert!(!a.is_empty(), "{path}");
        assert_eq!(a, b, "{path}: the backends disagree");
    }
    let _ = std::fs::remove_file(&config);
}

/// `GET target` over a raw HTTP/1.1 connection (an `http::Uri`, hence reqwest, holds at
/// most 65534 bytes with the scheme and authority); the whole answer as text.
async fn raw_get(s: &Server, target: &str, extra_header: &str) -> String {
    let base = s.url("");
    let addr = base.trim_start_matches("http://").trim_end_matches('/');
    let mut conn = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connects");
    let head =
        format!("GET {target} HTTP/1.1\r\nHost: recd\r\n{extra_header}Connection: close\r\n\r\n");
    conn.write_all(head.as_bytes()).await.expect("sent");
    let mut answer = Vec::new();
    conn.read_to_end(&mut answer).await.expect("read");
    String::from_utf8_lossy(&answer).into_owned()
}

/// A filter in the URL may make it as long as hyper takes (65534 bytes): such a request
/// reaches the API, even with headers over their limit, which the API answers with a 431 in
/// the error shape (hyper's head buffer was 64 KiB: it answered a bare 431); beyond that
/// length the answer is hyper's 414, as the document says.
#[tokio::test(flavor = "multi_thread")]
async fn a_filter_as_long_as_a_url_may_be_reaches_the_api() {
    let dir = data_dir("long-url");
    let s = Server::demo(&dir, &[]);
    // `none` of many long brand names (valid, and matching every item), padded with JSON
    // whitespace to `len` bytes of path and query.
    let url_for = |values: usize, len: usize| {
        let names: Vec<String> = (0..values).map(|i| format!("{i:0>200}")).collect();
        let filter = json!({"brand": {"none": names}}).to_string();
        let mut url = format!("/v1/items?limit=5&filter={}", encode(&filter));
        while url.len() + 3 <= len {
            url.push_str("%20");
        }
        url
    };
    // Just under hyper's limit: with its request line and headers, the head is over 64 KiB.
    let long = url_for(290, 65_534);
    assert!(
        long.len() > 65_530 && long.len() <= 65_534,
        "{}",
        long.len()
    );
    let answer = raw_get(&s, &long, "").await;
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "{}",
        &answer[..answer.len().min(300)]
    );
    assert!(
        answer.contains("\"next_cursor\""),
        "{}",
        &answer[..answer.len().min(300)]
    );

    // The same URL with 60 KB of headers (over [server] max_header_bytes, 16 KiB): the
    // head still fits hyper's buffer, so the answer is the API's 431 in the error shape.
    let padding = format!("X-Padding: {}\r\n", "p".repeat(60_000));
    let answer = raw_get(&s, &long, &padding).await;
    assert!(
        answer.starts_with("HTTP/1.1 431"),
        "{}",
        &answer[..answer.len().min(300)]
    );
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    let body: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {answer}"));
    assert_eq!(body["error"]["code"], "invalid_argument", "{body}");

    let too_long = url_for(320, 0);
    assert!(too_long.len() > 65_534);
    let answer = raw_get(&s, &too_long, "").await;
    assert!(answer.starts_with("HTTP/1.1 414"), "{answer}");
}
