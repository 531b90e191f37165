//! KNN latency on 100k × 64 (cosine), k = 10 and 50: unfiltered, a ~10 % filter correlated
//! with the embedding (a "category" = one tenth of the clusters), a 10 % and a ~1 % random
//! filter (both 10 % filters go to the planner's exact scan: of the codes in int8 mode);
//! exclusions (`knn_excluding_100k_64`: 200 ids drawn from the query's 1,000 nearest, as a
//! user's seen items lie near their vector, at k = 50: inside the search, against asking for
//! k + 200 and dropping them); plus the distance kernels (recd-core's, which the index calls). Data: seeded Gaussian mixture, 200 clusters, σ = 0.6 (as in
//! tests/recall.rs). Criterion reports means; `examples/knn_latency.rs` prints p50/p99.
//!
//!     cargo bench -p recd-index --bench knn

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rand_distr::StandardNormal;
use recd_core::vector::{dot, l2_squared};
use recd_index::roaring::RoaringBitmap;
use recd_index::{HnswParams, Metric, Quantization, SearchOptions, Strategy, VectorIndex};

const N: usize = 100_000;
const DIM: usize = 64;
const CLUSTERS: usize = 200;
const QUERIES: usize = 256;

struct Data {
    index: VectorIndex,
    queries: Vec<Vec<f32>>,
    cat10: Vec<RoaringBitmap>,
    rand10: Vec<RoaringBitmap>,
    rand1: Vec<RoaringBitmap>,
}

fn data() -> Data {
    let mut rng = StdRng::seed_from_u64(7);
    let centres: Vec<Vec<f32>> = (0..CLUSTERS)
        .map(|_| (0..DIM).map(|_| rng.sample(StandardNormal)).collect())
        .collect();
    let draw = |rng: &mut StdRng| {
        let c = rng.random_range(0..CLUSTERS);
        let v: Vec<f32> = centres[c]
            .iter()
            .map(|x| x + 0.6 * rng.sample::<f32, _>(StandardNormal))
            .collect();
        (c, v)
    };
    let items: Vec<(usize, Vec<f32>)> = (0..N).map(|_| draw(&mut rng)).collect();
    let queries = (0..QUERIES).map(|_| draw(&mut rng).1).collect();
    let cat10 = (0..10)
        .map(|r| {
            (0..N as u32)
                .filter(|&i| items[i as usize].0 % 10 == r)
                .collect()
        })
        .collect();
    let rand1 = (0..10)
        .map(|_| (0..N as u32).filter(|_| rng.random_bool(0.01)).collect())
        .collect();
    // Drawn after rand1 so that rand1's sets stay the ones of earlier runs.
    let rand10 = (0..10)
        .map(|_| (0..N as u32).filter(|_| rng.random_bool(0.1)).collect())
        .collect();
    let index = VectorIndex::new(DIM, Metric::Cosine, HnswParams::default());
    let batch: Vec<(u32, Vec<f32>)> = items
        .into_iter()
        .enumerate()
        .map(|(i, (_, v))| (i as u32, v))
        .collect();
    index.insert_batch(&batch).expect("valid vectors");
    Data {
        index,
        queries,
        cat10,
        rand10,
        rand1,
    }
}

fn knn(c: &mut Criterion) {
    let d = data();
    let mut g = c.benchmark_group("knn_100k_64");
    g.sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    let cases: [(&str, Option<&[RoaringBitmap]>, Strategy); 7] = [
        ("none", None, Strategy::Auto),
        ("cat10", Some(&d.cat10), Strategy::Auto),
        ("cat10_walk", Some(&d.cat10), Strategy::Graph),
        ("cat10_scan", Some(&d.cat10), Strategy::Exact),
        ("rand10", Some(&d.rand10), Strategy::Auto),
        ("rand1", Some(&d.rand1), Strategy::Auto),
        ("none_exact", None, Strategy::Exact),
    ];
    // Then the same graph quantized (int8): walks and planner scans read the codes and
    // re-score 4k candidates; forced exact scans stay on f32, so they are not repeated.
    for mode in [Quantization::None, Quantization::Int8] {
        d.index.set_quantization(mode).expect("vector file");
        let suffix = match mode {
            Quantization::None => "",
            Quantization::Int8 => "_int8",
        };
        for k in [10usize, 50] {
            for (name, filters, strategy) in cases {
                if mode == Quantization::Int8 && strategy == Strategy::Exact {
                    continue;
                }
                let opts = SearchOptions { ef: None, strategy };
                let mut j = 0usize;
                g.bench_function(BenchmarkId::new(format!("{name}{suffix}"), k), |b| {
                    b.iter(|| {
                        j = j.wrapping_add(1);
                        let q = &d.queries[j % QUERIES];
                        let f = filters.map(|fs| &fs[j % fs.len()]);
                        black_box(d.index.search_with(q, k, f, opts).expect("valid query"))
                    })
                });
            }
        }
    }
    g.finish();
}

fn knn_excluding(c: &mut Criterion) {
    let d = data();
    let k = 50;
    let mut rng = StdRng::seed_from_u64(11);
    let excluded: Vec<RoaringBitmap> = d
        .queries
        .iter()
        .map(|q| {
            let near = d.index.exact_search(q, 1_000, None).expect("valid query");
            near.iter()
                .filter(|_| rng.random_bool(0.2))
                .map(|h| h.id)
                .collect()
        })
        .collect();
    // Recall@50 of both against the exact answer among the rest (printed, not timed).
    let all: RoaringBitmap = (0..N as u32).collect();
    let (mut inside, mut after, mut wanted) = (0, 0, 0);
    for (q, e) in d.queries.iter().zip(&excluded) {
        let rest = &all - e;
        let exact = d
            .index
            .exact_search(q, k, Some(&rest))
            .expect("valid query");
        let (a, _) = d
            .index
            .search_excluding(q, k, None, e, SearchOptions::default())
            .expect("valid query");
        let mut b = d
            .index
            .search(q, k + e.len() as usize, None)
            .expect("valid query");
        b.retain(|h| !e.contains(h.id));
        b.truncate(k);
        let found = |hits: &[recd_index::Hit]| {
            exact
                .iter()
                .filter(|x| hits.iter().any(|h| h.id == x.id))
                .count()
        };
        inside += found(&a);
        after += found(&b);
        wanted += exact.len();
    }
    eprintln!(
        "knn_excluding recall@{k}: inside {:.3}, after {:.3} ({QUERIES} queries)",
        inside as f64 / wanted as f64,
        after as f64 / wanted as f64
    );
    let mut g = c.benchmark_group("knn_excluding_100k_64");
    g.sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    let opts = SearchOptions::default();
    let mut j = 0usize;
    g.bench_function(BenchmarkId::new("inside", k), |b| {
        b.iter(|| {
            j = j.wrapping_add(1);
            let (q, e) = (&d.queries[j % QUERIES], &excluded[j % QUERIES]);
            black_box(
                d.index
                    .search_excluding(q, k, None, e, opts)
                    .expect("valid query"),
            )
        })
    });
    g.bench_function(BenchmarkId::new("after", k), |b| {
        b.iter(|| {
            j = j.wrapping_add(1);
            let (q, e) = (&d.queries[j % QUERIES], &excluded[j % QUERIES]);
            let wanted = k + e.len() as usize;
            let mut hits = d.index.search(q, wanted, None).expect("valid query");
            hits.retain(|h| !e.contains(h.id));
            hits.truncate(k);
            black_box(hits)
        })
    });
    g.finish();
}

fn kernels(c: &mut Criterion) {
    let mut g = c.benchmark_group("kernels");
    for dim in [64usize, 384] {
        let a: Vec<f32> = (0..dim).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..dim).map(|i| (i as f32 * 0.11).cos()).collect();
        g.bench_function(BenchmarkId::new("dot", dim), |bch| {
            bch.iter(|| dot(black_box(&a), black_box(&b)))
        });
        g.bench_function(BenchmarkId::new("l2_squared", dim), |bch| {
            bch.iter(|| l2_squared(black_box(&a), black_box(&b)))
        });
    }
    g.finish();
}

criterion_group!(benches, kernels, knn, knn_excluding);
criterion_main!(benches);
