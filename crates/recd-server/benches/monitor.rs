//! What online monitoring costs one request: `Monitor::served` on a freshly computed list of
//! 10 items with 64-d vectors (category entropy, diversity, novelty, exposure window, drift
//! features) and `Monitor::events` on one click, with monitoring on and off.
//!
//! Steady state: before measuring, the hour-long exposure window is filled (100,000 lists
//! over 60 minutes), and lists then arrive at 10,000 a second of their clock. The work that
//! waits in the per-thread buffer is folded inline whenever a shard fills (no background
//! tick runs here), so the time per list includes it: it is the whole CPU cost.
//!
//! `cargo bench -p recd-server --bench monitor`

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use recd_core::{Event, EventType, Item, Schema};
use recd_server::answer::{ItemFields, Recommendation, ServedItem, Source};
use recd_server::monitoring::tag::ListLabels;
use recd_server::monitoring::{Monitor, MonitoringConfig};

fn list(round: u64, schema: &Schema) -> Recommendation {
    let items = (0..10u64)
        .map(|i| {
            let id = (round * 7 + i * 131) % 100_000;
            let vector: Vec<f64> = (0..64).map(|d| (((id + d) % 17) as f64) - 8.0).collect();
            let item = Item::from_json(
                &serde_json::json!({"id": format!("sku-{id}"), "category": [format!("c{}", id % 20)], "vector": vector}),
                schema,
            )
            .expect("item");
            ServedItem {
                id: item.id.clone(),
                score: 1.0 - i as f64 * 0.05,
                reasons: vec![],
                item: ItemFields(Arc::new(item)),
                signals: None,
            }
        })
        .collect();
    Recommendation {
        recommendation_id: "r".into(),
        user_id: Some("u".into()),
        items,
        source: Source::Personalized,
        cache: None,
        strategy: "default".into(),
        experiment: None,
        variant: None,
        took_ms: 1.0,
        stages: None,
    }
}

fn bench(c: &mut Criterion) {
    let schema = Schema::demo(64);
    let lists: Vec<Recommendation> = (0..1024).map(|r| list(r, &schema)).collect();
    let labels = ListLabels::unknown();
    for enabled in [true, false] {
        let m = Monitor::new(
            MonitoringConfig {
                enabled,
                ..MonitoringConfig::default()
            },
            &schema,
        )
        .expect("monitor");
        m.export(100_000, 0);
        const HOUR_MS: i64 = 3_600_000;
        for n in 0..100_000i64 {
            m.served(
                &lists[n as usize % lists.len()],
                &labels,
                n * HOUR_MS / 100_000,
            );
        }
        m.export(100_000, HOUR_MS);
        let name = if enabled { "on" } else { "off" };
        let mut i = 0usize;
        c.bench_function(&format!("served list of 10, monitoring {name}"), |b| {
            b.iter(|| {
                i += 1;
                let t = HOUR_MS + (i / 10) as i64;
                m.served(black_box(&lists[i % lists.len()]), &labels, t);
            })
        });
        let mut t = 0i64;
        c.bench_function(&format!("one click event, monitoring {name}"), |b| {
            b.iter(|| {
                t += 1000;
                m.events(black_box(&[Event {
                    user_id: format!("u{}", t % 5000),
                    item_id: "sku-1".into(),
                    kind: EventType::Click,
                    value: None,
                    timestamp_ms: t,
                    recommendation_id: None,
                }]));
            })
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
