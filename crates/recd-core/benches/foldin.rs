//! The fold-in solve every event of a user runs under `update = "fold_in"` (the largest
//! part of an event's CPU in the embedded store's profile): 64 factors, a trained prior,
//! and 25 or 200 recent items (a typical user, and `recent_capacity`'s default bound).
//! Both solvers on the same system: the exact one (`solver = "cholesky"`) and 3 steps of
//! conjugate gradient (`solver = "cg"`, the default) warm-started from the exact solution
//! of the user's system before their latest event, as `UserState::refold` starts it.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use recd_core::foldin::{FoldInParams, FoldModel, Gram};

const K: usize = 64;

/// Deterministic pseudo-random vectors (an LCG: the bench needs no RNG crate).
fn vectors(n: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            (0..K)
                .map(|_| {
                    s = s
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    ((s >> 33) as f32 / (1u64 << 31) as f32 - 0.5) * 0.4
                })
                .collect()
        })
        .collect()
}

fn bench_solve(c: &mut Criterion) {
    let catalog = vectors(5_000, 7);
    let mut gram = Gram::new(K);
    catalog.iter().for_each(|y| gram.add(y));
    let Some(model) = FoldModel::new(&gram, &FoldInParams::default()) else {
        panic!("a Gram of 5,000 vectors gives a model");
    };
    let prior = vectors(1, 11).remove(0);
    for n in [25, 200] {
        // every third item fresh (came after the prior), the rest trained
        let items: Vec<(&[f32], f32, f32)> = catalog
            .iter()
            .take(n)
            .enumerate()
            .map(|(i, y)| {
                let w = 1.0 + (i % 4) as f32;
                (y.as_slice(), w, if i % 3 == 0 { 1.0 } else { 0.0 })
            })
            .collect();
        c.bench_function(&format!("fold-in solve, k = {K}, {n} items"), |b| {
            b.iter(|| model.solve_from(Some(black_box(&prior)), black_box(&items).iter().copied()))
        });
        // the start: the exact vector of the system without the latest (fresh) item
        let Some(start) = model.solve_from(Some(&prior), items[1..].iter().copied()) else {
            panic!("the system has a solution");
        };
        c.bench_function(&format!("fold-in cg 3 steps, k = {K}, {n} items"), |b| {
            b.iter(|| {
                model.solve_cg(
                    Some(black_box(&prior)),
                    Some(black_box(&start)),
                    3,
                    black_box(&items).iter().copied(),
                )
            })
        });
    }
}

criterion_group!(benches, bench_solve);
criterion_main!(benches);
