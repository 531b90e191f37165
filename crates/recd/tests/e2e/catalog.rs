//! Item details read through from a real PostgreSQL (started by `scripts/postgres.sh`): the
//! configured query joins and aggregates, the cache spares the source, and changes reach the
//! cache by `POST /v1/items/{id}/invalidate` and by NOTIFY.

use std::process::Command;
use std::time::Duration;

use serde_json::json;

use crate::server::{Server, data_dir};

fn script() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/postgres.sh").to_string()
}

/// Runs SQL through psql (from the same PostgreSQL install as the server).
fn sql(url: &str, statement: &str) {
    let bin = Command::new("bash")
        .args([&script(), "bin"])
        .output()
        .expect("postgres.sh bin");
    let psql = format!("{}/psql", String::from_utf8_lossy(&bin.stdout).trim());
    let out = Command::new(psql)
        .args([url, "-v", "ON_ERROR_STOP=1", "-q", "-c", statement])
        .output()
        .expect("run psql");
    assert!(
        out.status.success(),
        "{statement}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn metric(s: &Server, sample: &str) -> f64 {
    s.get_text("/metrics")
        .await
        .lines()
        .find_map(|l| l.strip_prefix(sample)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn details_come_from_postgres_through_the_cache() {
    let started = Command::new("bash")
        .args([
            &script(),
            "start",
            "--owner",
            &std::process::id().to_string(),
        ])
        .output()
        .expect("run postgres.sh");
    if !started.status.success() {
        let why = String::from_utf8_lossy(&started.stderr).to_string();
        assert!(
            !std::env::var("CI").is_ok_and(|v| v == "true"),
            "CI=true and PostgreSQL cannot start: {why}"
        );
        eprintln!("\n!!!!! SKIPPED: no PostgreSQL ({why})\n");
        return;
    }
    let url = String::from_utf8_lossy(&started.stdout).trim().to_string();
    sql(
        &url,
        "CREATE TABLE products (id text PRIMARY KEY, vendor text);
         CREATE TABLE reviews (item_id text, rating float8);
         INSERT INTO products VALUES ('sku-1', 'acme'), ('sku-2', 'globex');
         INSERT INTO reviews VALUES ('sku-1', 4), ('sku-1', 2), ('sku-2', 5);",
    );
    let config = crate::server::scratch_file("catalog-config", "toml");
    std::fs::write(
        &config,
        format!(
            "[catalog]\nsource = \"{url}\"\nnotify_channel = \"item_changes\"\nquery = \"\"\"\n\
             SELECT p.vendor, avg(r.rating) AS avg_rating, count(r.*) AS review_count\n\
             FROM products p LEFT JOIN reviews r ON r.item_id = p.id\n\
             WHERE p.id = $1 GROUP BY p.id\"\"\"\n"
        ),
    )
    .expect("config");
    let dir = data_dir("catalog");
    let s = Server::start(
        &[
            "demo",
            "--config",
            config.to_str().expect("utf-8"),
            "--data-dir",
            dir.to_str().expect("utf-8"),
            "--items",
            "500",
            "--users",
            "20",
        ],
        &[],
    );

    let (status, item) = s.get("/v1/items/sku-1").await;
    assert_eq!(status, 200, "{item}");
    assert_eq!(
        item["details"],
        json!({"vendor": "acme", "avg_rating": 3.0, "review_count": 2})
    );
    assert!(item.get("category").is_some(), "recd's own fields stay");
    // In recd but not in the catalog: the item with null details.
    let (status, other) = s.get("/v1/items/sku-3").await;
    assert_eq!((status, &other["details"]), (200, &serde_json::Value::Null));

    // Repeated reads do not reach the source.
    let queries = "recd_catalog_queries_total";
    let before = metric(&s, queries).await;
    for _ in 0..20 {
        assert_eq!(s.get("/v1/items/sku-1").await.1, item);
    }
    assert_eq!(metric(&s, queries).await, before);
    let (_, bypass) = s.get("/v1/items/sku-1?use_cache=false").await;
    assert_eq!(bypass, item);
    assert_eq!(metric(&s, queries).await, before + 1.0);

    // A change at the source: cached until recd is told.
    sql(&url, "INSERT INTO reviews VALUES ('sku-1', 6)");
    assert_eq!(
        s.get("/v1/items/sku-1").await.1["details"]["review_count"],
        2
    );
    assert_eq!(s.post("/v1/items/sku-1/invalidate", json!({})).await.0, 204);
    let (_, fresh) = s.get("/v1/items/sku-1").await;
    assert_eq!(fresh["details"]["review_count"], 3);
    assert_eq!(fresh["details"]["avg_rating"], 4.0);

    // ... or by NOTIFY on the configured channel.
    assert_eq!(
        s.get("/v1/items/sku-2").await.1["details"]["vendor"],
        "globex"
    );
    sql(
        &url,
        "UPDATE products SET vendor = 'initech' WHERE id = 'sku-2'; NOTIFY item_changes, 'sku-2'",
    );
    let seen = async {
        loop {
            if s.get("/v1/items/sku-2").await.1["details"]["vendor"] == "initech" {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), seen)
        .await
        .expect("the NOTIFY never reached the item cache");
}
