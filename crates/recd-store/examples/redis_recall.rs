//! KNN recall of a Redis (or Redis Cluster) deployment against brute force over its own
//! vectors: `Store::knn(q, k)` for `--queries` query vectors (stored item vectors with noise)
//! against the exact top k by the schema's metric.
//!
//! ```text
//! cargo run --release -p recd-store --example redis_recall -- \
//!     --url redis+cluster://127.0.0.1:PORT,... [--prefix recd:] [--k 50] [--queries 200]
//! ```
//! Prints one JSON line: `{"k":50,"queries":200,"items":N,"recall":F,"min_recall":F}`.

use recd_core::{Filter, Metric};
use recd_store::{ModelSettings, RedisConfig, RedisStore, Store};

#[path = "support/args.rs"]
mod args;
use args::arg;

fn score(metric: Metric, q: &[f32], v: &[f32]) -> f32 {
    match metric {
        Metric::Cosine => recd_core::vector::cosine(q, v),
        Metric::Ip => recd_core::vector::dot(q, v),
        Metric::L2 => -recd_core::vector::l2_squared(q, v),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = arg("--url", "redis://127.0.0.1:6379");
    let k: usize = arg("--k", "50").parse()?;
    let queries: usize = arg("--queries", "200").parse()?;
    let config = RedisConfig {
        prefix: arg("--prefix", "recd:"),
        operation_timeout_ms: 30_000,
        ..RedisConfig::default()
    };
    let schema = RedisStore::recorded_schema(&url, &config)
        .await?
        .ok_or("no deployment under that prefix")?;
    let metric = schema.vector.metric;
    let store = RedisStore::connect(&url, schema, ModelSettings::default(), config).await?;
    // Every item with its vector.
    let mut ids = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store
            .list_items(after.as_deref(), 1000, &Filter::all())
            .await?;
        ids.extend(page.entries.iter().map(|i| i.id.clone()));
        match page.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    let mut items: Vec<(String, Vec<f32>)> = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(500) {
        for item in store.get_items(chunk).await?.into_iter().flatten() {
            if let Some(v) = item.vector {
                items.push((item.id, v));
            }
        }
    }
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut rand = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let (mut sum, mut min) = (0.0f64, 1.0f64);
    for _ in 0..queries {
        let base = &items[(rand() % items.len() as u64) as usize].1;
        let q: Vec<f32> = base
            .iter()
            .map(|c| c + ((rand() % 2000) as f32 / 1000.0 - 1.0) * 0.3)
            .collect();
        let got = store.knn(&q, k, &Filter::all()).await?;
        let mut exact: Vec<(f32, &str)> = items
            .iter()
            .map(|(id, v)| (score(metric, &q, v), id.as_str()))
            .collect();
        exact.sort_by(|a, b| b.0.total_cmp(&a.0));
        let want: std::collections::HashSet<&str> =
            exact.iter().take(k).map(|(_, id)| *id).collect();
        let hit = got
            .iter()
            .filter(|h| want.contains(h.item.id.as_str()))
            .count();
        let recall = hit as f64 / want.len().max(1) as f64;
        sum += recall;
        min = min.min(recall);
    }
    println!(
        "{{\"k\":{k},\"queries\":{queries},\"items\":{},\"recall\":{:.4},\"min_recall\":{:.4}}}",
        items.len(),
        sum / queries as f64,
        min
    );
    Ok(())
}
