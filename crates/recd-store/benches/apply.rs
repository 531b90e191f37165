//! The embedded write path: applying events to 10k users over a 1k × 64 catalog (user
//! state, session vector, popularity, the log append and its acknowledgement), in memory
//! and durable under each fsync policy:
//! - `one_event`: one event per call, one caller (the latency of one acknowledged event);
//! - `concurrent_32`: 32 tasks each applying one event per call (group commit; the time is
//!   per event);
//! - `concurrent_32_checkpointing`: the same under everysec while checkpoints run back to
//!   back beside the writers (they must not stall them);
//! - `checkpoint`: redb absorbing the log of 20k events, in the background in production;
//!   the time is per event absorbed. `20k_events`: 2 per user (10k users); `…_20_per_user`:
//!   1k users, the shape of a steady load, where a checkpoint absorbs ~10 events per
//!   active user (BENCHMARKS.md, session 34).
//!
//!     cargo bench -p recd-store --bench apply

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use recd_core::{Event, EventType, Item, ItemUpsert, Schema};
use recd_store::embedded::{EmbeddedOptions, EmbeddedStore, Fsync};
use recd_store::{ModelSettings, Store};
use tokio::runtime::Runtime;

const USERS: usize = 10_000;
const ITEMS: usize = 1_000;
const DIM: usize = 64;
const TASKS: usize = 32;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// A store of `kind` ("memory", or an fsync policy) holding the catalog; its dir.
fn store(rt: &Runtime, kind: &str) -> (EmbeddedStore, Option<tempfile::TempDir>) {
    let schema = Schema::demo(DIM);
    let settings = ModelSettings::default();
    let (store, dir) = match kind {
        "memory" => (
            EmbeddedStore::in_memory(schema, settings).expect("store"),
            None,
        ),
        policy => {
            let fsync = match policy {
                "always" => Fsync::Always,
                "everysec" => Fsync::Everysec,
                _ => Fsync::Never,
            };
            let dir = tempfile::tempdir().expect("tempdir");
            let options = EmbeddedOptions {
                fsync,
                ..EmbeddedOptions::default()
            };
            let s =
                EmbeddedStore::open(dir.path(), Some(schema), settings, options).expect("store");
            (s, Some(dir))
        }
    };
    // Seeded xorshift: the same vectors every run.
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    let items: Vec<ItemUpsert> = (0..ITEMS)
        .map(|i| ItemUpsert {
            item: Item {
                id: format!("i{i}"),
                vector: Some((0..DIM).map(|_| next()).collect()),
                fields: Default::default(),
            },
            keep_vector: false,
        })
        .collect();
    rt.block_on(store.upsert_items(items)).expect("catalog");
    (store, dir)
}

fn event(n: usize) -> Event {
    event_of(n, USERS)
}

/// Event `n` of one of `users` users (round robin).
fn event_of(n: usize, users: usize) -> Event {
    Event {
        user_id: format!("u{}", n % users),
        item_id: format!("i{}", (n * 7) % ITEMS),
        kind: if n.is_multiple_of(10) {
            EventType::Purchase
        } else {
            EventType::View
        },
        value: None,
        timestamp_ms: 1_700_000_000_000 + n as i64,
        recommendation_id: None,
    }
}

/// `iters` events applied by [`TASKS`] concurrent tasks; the time per event, scaled to
/// `iters`.
fn concurrent(
    rt: &Runtime,
    store: &Arc<EmbeddedStore>,
    counter: &Arc<AtomicUsize>,
    iters: u64,
) -> Duration {
    let per_task = (iters as usize).div_ceil(TASKS);
    let start = Instant::now();
    rt.block_on(async {
        let mut tasks = Vec::with_capacity(TASKS);
        for _ in 0..TASKS {
            let (store, counter) = (store.clone(), counter.clone());
            tasks.push(tokio::spawn(async move {
                for _ in 0..per_task {
                    let n = counter.fetch_add(1, Ordering::Relaxed);
                    store.apply_events(&[event(n)]).await.expect("apply");
                }
            }));
        }
        for t in tasks {
            t.await.expect("task");
        }
    });
    let elapsed = start.elapsed();
    black_box(store);
    elapsed.mul_f64(iters as f64 / (per_task * TASKS) as f64)
}

fn bench(c: &mut Criterion) {
    let rt = runtime();
    let mut one = c.benchmark_group("one_event");
    one.measurement_time(Duration::from_secs(5)).sample_size(20);
    one.throughput(Throughput::Elements(1));
    for kind in ["memory", "never", "everysec", "always"] {
        let (store, _dir) = store(&rt, kind);
        let mut n = 0usize;
        one.bench_function(BenchmarkId::from_parameter(kind), |b| {
            b.iter(|| {
                n += 1;
                rt.block_on(store.apply_events(&[event(n)])).expect("apply");
            })
        });
    }
    one.finish();

    let mut many = c.benchmark_group("concurrent_32");
    many.measurement_time(Duration::from_secs(5))
        .sample_size(20);
    many.throughput(Throughput::Elements(1));
    for kind in ["memory", "never", "everysec", "always"] {
        let (store, _dir) = store(&rt, kind);
        let store = Arc::new(store);
        let counter = Arc::new(AtomicUsize::new(0));
        many.bench_function(BenchmarkId::from_parameter(kind), |b| {
            b.iter_custom(|iters| concurrent(&rt, &store, &counter, iters))
        });
    }
    many.finish();

    // The same 32 writers (everysec) while checkpoints run back to back beside them, the
    // worst case of redb absorbing the log: writers never wait for a checkpoint, they only
    // share the machine with it.
    let mut busy = c.benchmark_group("concurrent_32_checkpointing");
    busy.measurement_time(Duration::from_secs(5))
        .sample_size(20);
    busy.throughput(Throughput::Elements(1));
    {
        let (store, _dir) = store(&rt, "everysec");
        let store = Arc::new(store);
        let counter = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let checkpoints = {
            let (store, stop) = (store.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut runs = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    store.checkpoint().expect("checkpoint");
                    runs += 1;
                }
                runs
            })
        };
        busy.bench_function("everysec", |b| {
            b.iter_custom(|iters| concurrent(&rt, &store, &counter, iters))
        });
        stop.store(true, Ordering::Relaxed);
        let runs = checkpoints.join().expect("checkpoint thread");
        eprintln!("({runs} checkpoints ran beside the writers)");
    }
    busy.finish();

    let mut cp = c.benchmark_group("checkpoint");
    cp.sample_size(10)
        .throughput(Throughput::Elements(2 * USERS as u64));
    let (store, _dir) = store(&rt, "never");
    let mut n = 0usize;
    for (name, users) in [
        ("20k_events", USERS),
        ("20k_events_20_per_user", USERS / 10),
    ] {
        cp.bench_function(name, |b| {
            b.iter_batched(
                || {
                    for _ in 0..2 * USERS {
                        n += 1;
                        rt.block_on(store.apply_events(&[event_of(n, users)]))
                            .expect("apply");
                    }
                },
                |()| store.checkpoint().expect("checkpoint"),
                criterion::BatchSize::PerIteration,
            )
        });
    }
    cp.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
