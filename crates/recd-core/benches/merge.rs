//! Merging a request's candidate lists (KNN 78 + popular 50, a third of them in both): the
//! id-keyed union every recommend request runs before scoring.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use recd_core::Item;
use recd_core::pipeline::candidates::merge;

fn item(n: usize) -> Arc<Item> {
    Arc::new(Item {
        id: format!("sku-{}", n * 7919 % 100_000),
        vector: None,
        fields: BTreeMap::new(),
    })
}

type Knn = Vec<(Arc<Item>, f32)>;
type Popular = Vec<(Arc<Item>, f64)>;

fn lists() -> (Knn, Popular) {
    let knn = (0..78).map(|n| (item(n), 1.0 - n as f32 / 100.0)).collect();
    // items 52..102: the first 26 of them are also KNN hits
    let popular = (52..102)
        .map(|n| (item(n), 20.0 - n as f64 / 10.0))
        .collect();
    (knn, popular)
}

fn bench(c: &mut Criterion) {
    let (knn, popular) = lists();
    c.bench_function("merge knn78 + popular50", |b| {
        b.iter(|| {
            merge(
                black_box(knn.clone()),
                black_box(popular.clone()),
                Vec::new(),
            )
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
