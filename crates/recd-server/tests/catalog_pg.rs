//! The PostgreSQL catalog source against a real PostgreSQL.
//!
//! One server per test binary, started by `scripts/postgres.sh start --owner <pid>` (so it
//! stops when the binary exits) unless `RECD_TEST_POSTGRES_URL` names one; each test makes
//! its own database on it. The test that stops PostgreSQL starts a second server of its own.
//! When no PostgreSQL can be started the tests skip loudly, except under `CI=true`, where
//! they fail.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use recd_server::catalog::{CatalogChange, CatalogConfig, CatalogError, PgCatalog};
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// Bounds every wait, so that a bug shows as a failure instead of a hung test run. Not a
/// performance expectation: the operations under test finish in milliseconds.
const HANG_GUARD: Duration = Duration::from_secs(60);

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/postgres.sh")
}

/// Starts a PostgreSQL through the project script; its URL.
fn start_postgres() -> Result<String, String> {
    let out = Command::new("bash")
        .arg(script())
        .arg("start")
        .arg("--owner")
        .arg(std::process::id().to_string())
        .output()
        .map_err(|e| format!("cannot run scripts/postgres.sh: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "scripts/postgres.sh start failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn stop_postgres(port: u16) {
    let status = Command::new("bash")
        .arg(script())
        .arg("stop")
        .arg(port.to_string())
        .status();
    assert!(
        matches!(status, Ok(s) if s.success()),
        "scripts/postgres.sh stop {port} failed: {status:?}"
    );
}

/// Panics under CI; otherwise says loudly that the test is skipped.
fn unavailable(e: &str) {
    if in_ci() {
        panic!("CI=true and no PostgreSQL: {e}");
    }
    // Straight to the stderr handle: libtest captures eprintln! of passing tests.
    let msg = format!(
        "\n!!!!!!!!!! SKIPPING POSTGRES CATALOG TEST: {e}\n\
         !!!!!!!!!! run scripts/postgres.sh install, or set RECD_TEST_POSTGRES_URL\n\n"
    );
    let _ = std::io::Write::write_all(&mut std::io::stderr(), msg.as_bytes());
}

/// The shared server of this binary (`postgres://user@host:port/db`), or `None` after a
/// loud message when none can be had outside CI.
fn server_url() -> Option<String> {
    static URL: OnceLock<Result<String, String>> = OnceLock::new();
    let url =
        URL.get_or_init(|| std::env::var("RECD_TEST_POSTGRES_URL").or_else(|_| start_postgres()));
    match url {
        Ok(url) => Some(url.clone()),
        Err(e) => {
            unavailable(e);
            None
        }
    }
}

/// `url` with its database replaced by `db`.
fn with_db(url: &str, db: &str) -> String {
    let base = url.rsplit_once('/').map_or(url, |(base, _)| base);
    format!("{base}/{db}")
}

/// A client whose connection is driven by a spawned task.
async fn client(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect to the test PostgreSQL");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// A fresh database on the shared server, set up with `sql`; its URL and a client on it.
async fn fresh_db(name: &str, sql: &str) -> Option<(String, tokio_postgres::Client)> {
    static N: AtomicU32 = AtomicU32::new(0);
    let server = server_url()?;
    let db = format!(
        "t_{name}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    client(&server)
        .await
        .batch_execute(&format!("CREATE DATABASE {db}"))
        .await
        .expect("create the test database");
    let url = with_db(&server, &db);
    let c = client(&url).await;
    c.batch_execute(sql).await.expect("set up the test tables");
    Some((url, c))
}

fn config(url: &str, query: &str) -> CatalogConfig {
    CatalogConfig {
        source: Some(url.to_string()),
        query: query.to_string(),
        ..CatalogConfig::default()
    }
}

async fn guarded<T>(what: &str, f: impl Future<Output = T>) -> T {
    match tokio::time::timeout(HANG_GUARD, f).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: no result within {HANG_GUARD:?}"),
    }
}

async fn next_change(rx: &mut mpsc::Receiver<CatalogChange>) -> CatalogChange {
    guarded("waiting for a catalog change", rx.recv())
        .await
        .expect("the listener task ended")
}

const SHOP: &str = "
CREATE TABLE items (
    id text PRIMARY KEY,
    title text,
    price numeric(10, 2),
    stock int4,
    views int8,
    shelf int2,
    weight float8,
    score real,
    in_stock bool,
    tags text[],
    attrs jsonb,
    released timestamptz,
    first_day date,
    uid uuid
);
CREATE TABLE reviews (item_id text REFERENCES items (id), rating int4);
INSERT INTO items VALUES
    ('sku-1', 'Trail running shoe', 59.90, 12, 9000000000, 3, 0.25, 0.1, true,
     ARRAY['shoes', 'sale', NULL], '{\"color\": \"red\", \"sizes\": [40, 41]}',
     '2024-05-01 12:00:00.25+00', '2024-05-01', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'),
    ('sku-2', 'Plain sock', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
INSERT INTO reviews VALUES ('sku-1', 4), ('sku-1', 5), ('sku-1', 5);
";

const SHOP_QUERY: &str = "
SELECT i.*, avg(r.rating)::numeric(4, 2) AS avg_rating, count(r.*) AS review_count
FROM items i LEFT JOIN reviews r ON r.item_id = i.id
WHERE i.id = $1
GROUP BY i.id";

#[tokio::test]
async fn a_joined_aggregate_becomes_typed_json() {
    let Some((url, _db)) = fresh_db("typed", SHOP).await else {
        return;
    };
    let catalog = guarded("connect", PgCatalog::connect(&config(&url, SHOP_QUERY)))
        .await
        .expect("connect");
    let got = guarded("fetch", catalog.fetch("sku-1"))
        .await
        .expect("fetch")
        .expect("sku-1 exists");
    assert_eq!(
        Value::Object(got),
        json!({
            "id": "sku-1",
            "title": "Trail running shoe",
            "price": 59.9,
            "stock": 12,
            "views": 9_000_000_000_i64,
            "shelf": 3,
            "weight": 0.25,
            "score": 0.1,
            "in_stock": true,
            "tags": ["shoes", "sale", null],
            "attrs": {"color": "red", "sizes": [40, 41]},
            "released": "2024-05-01T12:00:00.25Z",
            "first_day": "2024-05-01",
            "uid": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            "avg_rating": 4.67,
            "review_count": 3,
        })
    );
    // NULL columns and an item without reviews.
    let plain = guarded("fetch", catalog.fetch("sku-2"))
        .await
        .expect("fetch")
        .expect("sku-2 exists");
    assert_eq!(plain["title"], json!("Plain sock"));
    for key in [
        "price",
        "stock",
        "tags",
        "attrs",
        "released",
        "uid",
        "avg_rating",
    ] {
        assert_eq!(plain[key], Value::Null, "{key}");
    }
    assert_eq!(plain["review_count"], json!(0));
    assert_eq!(catalog.queries(), 2);
    assert_eq!(catalog.errors(), 0);
}

#[tokio::test]
async fn a_missing_id_is_none_and_sql_in_an_id_is_just_an_id() {
    let Some((url, db)) = fresh_db("missing", SHOP).await else {
        return;
    };
    let catalog = guarded("connect", PgCatalog::connect(&config(&url, SHOP_QUERY)))
        .await
        .expect("connect");
    assert_eq!(
        guarded("fetch", catalog.fetch("sku-404"))
            .await
            .expect("fetch"),
        None
    );
    for evil in [
        "'; DROP TABLE items; --",
        "sku-1' OR '1'='1",
        "sku-1\"; DELETE FROM reviews; --",
        "$1",
    ] {
        assert_eq!(
            guarded("fetch", catalog.fetch(evil)).await.expect("fetch"),
            None,
            "{evil}"
        );
    }
    let items: i64 = db
        .query_one("SELECT count(*) FROM items", &[])
        .await
        .expect("the items table survives")
        .get(0);
    let reviews: i64 = db
        .query_one("SELECT count(*) FROM reviews", &[])
        .await
        .expect("the reviews table survives")
        .get(0);
    assert_eq!((items, reviews), (2, 3));

    // A batch: in order, None where there is no row.
    let ids: Vec<String> = ["sku-2", "nope", "sku-1"].map(String::from).to_vec();
    let many = guarded("fetch_many", catalog.fetch_many(&ids))
        .await
        .expect("fetch_many");
    let got: Vec<Option<Value>> = many
        .into_iter()
        .map(|o| o.map(|m| m["id"].clone()))
        .collect();
    assert_eq!(got, vec![Some(json!("sku-2")), None, Some(json!("sku-1"))]);
    assert_eq!(catalog.queries(), 5 + 3);
}

#[tokio::test]
async fn an_integer_key_takes_numeric_ids_and_misses_the_rest() {
    let Some((url, _db)) = fresh_db(
        "intkey",
        "CREATE TABLE products (id int8 PRIMARY KEY, name text);
         INSERT INTO products VALUES (42, 'answer');",
    )
    .await
    else {
        return;
    };
    let catalog = guarded(
        "connect",
        PgCatalog::connect(&config(&url, "SELECT * FROM products WHERE id = $1")),
    )
    .await
    .expect("connect");
    let hit = guarded("fetch", catalog.fetch("42"))
        .await
        .expect("fetch")
        .expect("42 exists");
    assert_eq!(Value::Object(hit), json!({"id": 42, "name": "answer"}));
    assert_eq!(
        guarded("fetch", catalog.fetch("sku-42"))
            .await
            .expect("fetch"),
        None
    );
}

#[tokio::test]
async fn a_query_that_cannot_work_is_invalid_at_connect() {
    let Some((url, _db)) = fresh_db("badquery", SHOP).await else {
        return;
    };
    let cases = [
        ("SELEKT * FROM items WHERE id = $1", "syntax"),
        ("SELECT * FROM no_such_table WHERE id = $1", "no_such_table"),
        (
            "SELECT * FROM items WHERE id = $1 OR title = $2",
            "one parameter",
        ),
        ("SELECT * FROM items", "one parameter"),
        (
            "SELECT id, interval '1 day' AS wait FROM items WHERE id = $1",
            "`wait`",
        ),
        ("SELECT * FROM items WHERE in_stock = $1", "bool"),
    ];
    for (query, expect) in cases {
        match guarded("connect", PgCatalog::connect(&config(&url, query))).await {
            Err(CatalogError::Invalid(m)) => assert!(m.contains(expect), "{query}: {m}"),
            other => panic!("{query}: expected Invalid, got {other:?}"),
        }
    }
    // A database that does not exist is a configuration error too.
    let missing_db = with_db(&url, "no_such_database");
    match guarded(
        "connect",
        PgCatalog::connect(&config(&missing_db, SHOP_QUERY)),
    )
    .await
    {
        Err(CatalogError::Invalid(m)) => assert!(m.contains("no_such_database"), "{m}"),
        other => panic!("missing database: expected Invalid, got {other:?}"),
    }
}

#[tokio::test]
async fn the_source_is_read_only() {
    let Some((url, db)) = fresh_db("readonly", SHOP).await else {
        return;
    };
    let catalog = guarded(
        "connect",
        PgCatalog::connect(&config(
            &url,
            "DELETE FROM reviews WHERE item_id = $1 RETURNING item_id",
        )),
    )
    .await
    .expect("a DELETE prepares");
    match guarded("fetch", catalog.fetch("sku-1")).await {
        Err(CatalogError::Internal(m)) => assert!(m.contains("read-only"), "{m}"),
        other => panic!("expected Internal, got {other:?}"),
    }
    let reviews: i64 = db
        .query_one("SELECT count(*) FROM reviews", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(reviews, 3);
    assert_eq!(catalog.errors(), 1);
}

#[tokio::test]
async fn a_slow_query_times_out_as_unavailable() {
    let Some((url, _db)) = fresh_db("slow", SHOP).await else {
        return;
    };
    let mut cfg = config(
        &url,
        "SELECT i.id FROM items i, pg_sleep(30) WHERE i.id = $1",
    );
    cfg.timeout_ms = 200;
    let catalog = guarded("connect", PgCatalog::connect(&cfg))
        .await
        .expect("connect");
    match guarded("fetch", catalog.fetch("sku-1")).await {
        Err(CatalogError::Unavailable(_)) => {}
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert_eq!(catalog.errors(), 1);
}

#[tokio::test]
async fn notify_from_another_connection_reaches_listen() {
    let Some((url, db)) = fresh_db("notify", SHOP).await else {
        return;
    };
    let mut cfg = config(&url, SHOP_QUERY);
    cfg.notify_channel = Some("item_changes".into());
    let catalog = guarded("connect", PgCatalog::connect(&cfg))
        .await
        .expect("connect");
    let mut changes = guarded("listen", catalog.listen()).await.expect("listen");
    db.batch_execute("NOTIFY item_changes, 'sku-1'")
        .await
        .expect("notify");
    db.query("SELECT pg_notify('item_changes', $1)", &[&"it's sku-2"])
        .await
        .expect("pg_notify");
    db.batch_execute("NOTIFY other_channel, 'sku-9'; NOTIFY item_changes")
        .await
        .expect("notify");
    assert_eq!(
        next_change(&mut changes).await,
        CatalogChange::Item("sku-1".into())
    );
    assert_eq!(
        next_change(&mut changes).await,
        CatalogChange::Item("it's sku-2".into())
    );
    // An empty payload: anything may have changed.
    assert_eq!(next_change(&mut changes).await, CatalogChange::All);
}

#[tokio::test]
async fn listen_reconnects_and_says_all_after_a_dropped_connection() {
    let Some((url, db)) = fresh_db("relisten", SHOP).await else {
        return;
    };
    let mut cfg = config(&url, SHOP_QUERY);
    cfg.notify_channel = Some("relisten".into());
    let catalog = guarded("connect", PgCatalog::connect(&cfg))
        .await
        .expect("connect");
    let mut changes = guarded("listen", catalog.listen()).await.expect("listen");
    let killed: bool = db
        .query_one(
            "SELECT bool_or(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = current_database() AND query = 'LISTEN \"relisten\"'",
            &[],
        )
        .await
        .expect("terminate the listener's backend")
        .get(0);
    assert!(killed, "no LISTEN backend found to terminate");
    // The All arrives once the listener has subscribed again, so this NOTIFY is heard.
    assert_eq!(next_change(&mut changes).await, CatalogChange::All);
    db.batch_execute("NOTIFY relisten, 'sku-2'")
        .await
        .expect("notify");
    assert_eq!(
        next_change(&mut changes).await,
        CatalogChange::Item("sku-2".into())
    );
}

#[tokio::test]
async fn a_burst_of_changes_arrives_in_order_or_is_covered_by_all() {
    let Some((url, db)) = fresh_db("lag", SHOP).await else {
        return;
    };
    let mut cfg = config(&url, SHOP_QUERY);
    cfg.notify_channel = Some("lag".into());
    let catalog = guarded("connect", PgCatalog::connect(&cfg))
        .await
        .expect("connect");
    let mut changes = guarded("listen", catalog.listen()).await.expect("listen");
    let n = recd_server::catalog::LISTEN_BUFFER * 2;
    // Distinct payloads in one transaction: delivered together, more than the buffer holds.
    db.batch_execute(&format!(
        "SELECT pg_notify('lag', 'sku-' || i) FROM generate_series(0, {}) i; \
         NOTIFY lag, 'end'",
        n - 1
    ))
    .await
    .expect("notify");
    // Either every change arrives in order, or an All covers the ones that did not (which
    // one depends on scheduling; the unit test of `forward` pins the overflow path).
    let mut seen = Vec::new();
    loop {
        match next_change(&mut changes).await {
            CatalogChange::All => break,
            CatalogChange::Item(id) if id == "end" => {
                let want: Vec<String> = (0..n).map(|i| format!("sku-{i}")).collect();
                assert_eq!(seen, want, "changes were lost without an All");
                break;
            }
            CatalogChange::Item(id) => seen.push(id),
        }
    }
}

#[tokio::test]
async fn no_server_is_unavailable() {
    // A port nothing listens on: bind one, then free it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let cfg = config(
        &format!("postgres://recd@127.0.0.1:{port}/recd"),
        SHOP_QUERY,
    );
    match guarded("connect", PgCatalog::connect(&cfg)).await {
        Err(CatalogError::Unavailable(_)) => {}
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[tokio::test]
async fn a_stopped_server_is_unavailable_not_a_hang() {
    // Its own server: stopping the shared one would break the other tests.
    let url = match start_postgres() {
        Ok(url) => url,
        Err(e) => return unavailable(&e),
    };
    let port: u16 = url
        .rsplit_once(':')
        .and_then(|(_, rest)| rest.split('/').next())
        .and_then(|p| p.parse().ok())
        .expect("a port in the URL");
    client(&url)
        .await
        .batch_execute(SHOP)
        .await
        .expect("set up");
    let catalog = guarded("connect", PgCatalog::connect(&config(&url, SHOP_QUERY)))
        .await
        .expect("connect");
    assert!(
        guarded("fetch", catalog.fetch("sku-1"))
            .await
            .expect("fetch while up")
            .is_some()
    );
    stop_postgres(port);
    for _ in 0..2 {
        match guarded("fetch after stop", catalog.fetch("sku-1")).await {
            Err(CatalogError::Unavailable(_)) => {}
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }
    assert_eq!(catalog.errors(), 2);
}
