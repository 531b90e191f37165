//! One ALS epoch (users then items, 64 factors, 3 CG steps, 2 threads) on synthetic
//! power-law matrices of 1M and 10M stored pairs (`recd_train::synthetic`, seed 1): the
//! kernel behind `scripts/bench-als-scale.sh`'s end-to-end comparison with `implicit`.
//!
//!     cargo bench -p recd-train --bench als_epoch

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use recd_train::als::{AlsParams, fit_confidence};
use recd_train::synthetic::PowerLawSpec;

fn epoch(c: &mut Criterion) {
    let mut group = c.benchmark_group("als_epoch");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    let params = AlsParams {
        iterations: 1,
        threads: 2,
        ..AlsParams::default()
    };
    for pairs in [1_000_000, 10_000_000] {
        let cui = PowerLawSpec::scaled(pairs, 1)
            .generate()
            .map_values(|w| 1.0 + params.alpha * w);
        group.bench_with_input(BenchmarkId::from_parameter(pairs), &cui, |b, cui| {
            b.iter(|| black_box(fit_confidence(cui, &params, |_, _, _| {}).map(|f| f.0.len())));
        });
    }
    group.finish();
}

criterion_group!(benches, epoch);
criterion_main!(benches);
