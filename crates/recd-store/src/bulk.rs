//! Bulk writes (demo, import, training write-back) that finish on a slow backend.
//!
//! A store call is one atomic unit with a deadline (on Redis, one script that blocks the
//! server while it runs: a 1,000-item upsert of indexed hashes can exceed the 1 s response
//! timeout on a loaded machine). So bulk writes here are cut into batches sized by time,
//! not by count: [`BatchSizer`] starts small, grows while a batch takes well under its
//! target (100 ms: a Redis script blocks every other client while it runs, so this is also
//! the longest stall a bulk write imposes on requests served meanwhile), shrinks when one comes near or over it, and halves after a failure.
//!
//! Writes that fail as [`StoreError::Unavailable`] (a timeout, a Redis busy or loading) are
//! tried again, smaller, after a growing pause. Item upserts and vectors are idempotent as
//! they are. Event appends are not (a timed-out batch may have been applied, in part or
//! whole, and an event applied twice counts twice), so a bulk event load is a run of
//! [`Store::apply_events_once`]: each event carries its position in the run, and each user
//! remembers how far the run reached it (see [`crate::once`]), so a retry applies only
//! what is missing. Every vector is validated before anything is written.
//!
//! Progress goes to the [`Observer`] of the options (the command line draws a bar or logs
//! a line every few seconds); rows are reported as their batch is acknowledged.
//!
//! The helpers work on any [`Store`], so both backends behave the same (the embedded one is
//! fast: its batches grow to [`BulkOptions::max_batch`] at once).

use std::sync::Arc;
use std::time::{Duration, Instant};

use recd_core::item::check_vector;
use recd_core::{Event, ItemUpsert, ValidationError};

use crate::once::Positioned;
use crate::{Store, StoreError, StoreResult};

/// How bulk writes are cut and retried.
#[derive(Debug, Clone)]
pub struct BulkOptions {
    /// The time one batch should take.
    pub target: Duration,
    /// The first batch's size.
    pub first_batch: usize,
    /// The largest batch.
    pub max_batch: usize,
    /// Tries of one idempotent batch that fails as unavailable (1: no retry).
    pub attempts: u32,
    /// The pause before the first retry; doubled for each further one.
    pub first_pause: Duration,
    /// The longest pause between tries.
    pub max_pause: Duration,
    /// Told of every acknowledged batch (none: nobody is told).
    pub observer: Option<Arc<dyn Observer>>,
}

/// Follows the progress of a bulk write: how the command line shows counts, rate and ETA.
pub trait Observer: Send + Sync + std::fmt::Debug {
    /// `rows` more rows were written (acknowledged by the store).
    fn written(&self, rows: usize);
    /// Work of `total` rows starts (told by work whose size is only known once it starts,
    /// such as the index rebuild at an embedded store's open).
    fn begin(&self, _total: usize) {}
    /// The work told of by [`Observer::begin`] is over.
    fn end(&self) {}
}

impl Default for BulkOptions {
    fn default() -> Self {
        BulkOptions {
            target: Duration::from_millis(100),
            first_batch: 16,
            max_batch: 5000,
            attempts: 10,
            first_pause: Duration::from_millis(100),
            max_pause: Duration::from_secs(3),
            observer: None,
        }
    }
}

impl BulkOptions {
    /// Defaults with a target of at most a fifth of `response_timeout` (a batch then has
    /// room to be several times slower than measured before it times out).
    pub fn for_response_timeout(response_timeout: Duration) -> Self {
        let d = BulkOptions::default();
        BulkOptions {
            target: d
                .target
                .min(response_timeout / 5)
                .max(Duration::from_millis(1)),
            ..d
        }
    }

    /// These options, with `observer` told of the progress.
    pub fn observed(&self, observer: Arc<dyn Observer>) -> Self {
        BulkOptions {
            observer: Some(observer),
            ..self.clone()
        }
    }

    fn report(&self, rows: usize) {
        if let Some(o) = &self.observer {
            o.written(rows);
        }
    }
}

/// Sizes batches by the time they take (see the module doc).
#[derive(Debug, Clone)]
pub struct BatchSizer {
    size: usize,
    max: usize,
    /// The smallest size that failed: growth stays below it, until
    /// [`BatchSizer::FORGET_AFTER`] batches in a row have succeeded.
    ceiling: usize,
    /// Batches that succeeded since the last failure.
    successes: u32,
    target: Duration,
}

impl BatchSizer {
    /// A sizer starting at `first` (within 1..=`max`), aiming at `target` per batch.
    pub fn new(target: Duration, first: usize, max: usize) -> Self {
        let max = max.max(1);
        BatchSizer {
            size: first.clamp(1, max),
            max,
            ceiling: usize::MAX,
            successes: 0,
            target,
        }
    }

    /// Successful batches in a row after which a failure's ceiling is forgotten (a
    /// timeout may come from a moment of load, not from the batch size).
    pub const FORGET_AFTER: u32 = 32;

    /// The size of the next batch.
    pub fn size(&self) -> usize {
        self.size
    }

    /// A batch of `size` took `took`: double when it took under half the target, shrink
    /// to the size that would take the target at the rate seen when it took more.
    pub fn succeeded(&mut self, size: usize, took: Duration) {
        let size = size.max(1);
        self.successes = self.successes.saturating_add(1);
        if self.successes >= Self::FORGET_AFTER {
            self.ceiling = usize::MAX;
        }
        if took > self.target {
            let estimate = size as f64 * self.target.as_secs_f64() / took.as_secs_f64();
            self.size = (estimate as usize).clamp(1, size);
        } else if took < self.target / 2 {
            let grown = size.saturating_mul(2);
            // Stay below the size that failed (a quarter under it).
            let cap = if self.ceiling == usize::MAX {
                self.max
            } else {
                (self.ceiling - self.ceiling / 4).max(1)
            };
            self.size = grown.max(size).min(cap).min(self.max).max(1);
        } else {
            self.size = size.min(self.max);
        }
    }

    /// A batch of `size` failed as unavailable (most often a timeout): halve, and never
    /// grow back to that size.
    pub fn failed(&mut self, size: usize) {
        let size = size.max(1);
        self.ceiling = self.ceiling.min(size);
        self.successes = 0;
        self.size = (size / 2).max(1);
    }
}

/// Writes `rows` in time-sized batches with `write` (given the position of the batch's
/// first row and the batch), retrying a batch that fails as unavailable (smaller, after a
/// pause). `write` must be idempotent. Returns the sum of what `write` returned.
async fn write_idempotent<T, F, Fut>(
    what: &'static str,
    rows: &[T],
    opts: &BulkOptions,
    write: F,
) -> StoreResult<usize>
where
    T: Clone,
    F: Fn(u64, Vec<T>) -> Fut,
    Fut: std::future::Future<Output = StoreResult<usize>>,
{
    let mut sizer = BatchSizer::new(opts.target, opts.first_batch, opts.max_batch);
    let mut written = 0;
    let mut at = 0;
    let mut failures = 0u32;
    let mut pause = opts.first_pause;
    while at < rows.len() {
        let size = sizer.size().min(rows.len() - at);
        let batch = rows[at..at + size].to_vec();
        let started = Instant::now();
        match write(at as u64, batch).await {
            Ok(n) => {
                sizer.succeeded(size, started.elapsed());
                written += n;
                at += size;
                failures = 0;
                pause = opts.first_pause;
                opts.report(size);
            }
            Err(StoreError::Unavailable(why)) if failures + 1 < opts.attempts.max(1) => {
                failures += 1;
                sizer.failed(size);
                tracing::warn!(
                    what,
                    batch = size,
                    next_batch = sizer.size(),
                    attempt = failures,
                    pause_ms = pause.as_millis() as u64,
                    cause = %why,
                    "bulk write: a batch failed as unavailable; trying again smaller"
                );
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(opts.max_pause);
            }
            Err(StoreError::Unavailable(why)) => {
                return Err(StoreError::Unavailable(format!(
                    "{why} ({} of {} {what} written; gave up after {} tries)",
                    at,
                    rows.len(),
                    opts.attempts.max(1)
                )));
            }
            Err(e) => return Err(e),
        }
    }
    tracing::debug!(what, rows = rows.len(), "bulk write done");
    Ok(written)
}

fn check_vectors(store: &dyn Store, what: &str, vectors: &[(String, Vec<f32>)]) -> StoreResult<()> {
    for (id, v) in vectors {
        check_vector(v, store.schema())
            .map_err(|e| ValidationError::new(format!("vector of {what} '{id}': {}", e.message)))?;
    }
    Ok(())
}

/// [`Store::upsert_items`] for many items: every vector is validated first (nothing is
/// written on a bad one), then time-sized batches, retried when unavailable. Not all or
/// nothing across batches: a failure leaves the batches before it written.
pub async fn upsert_items(
    store: &dyn Store,
    items: Vec<ItemUpsert>,
    opts: &BulkOptions,
) -> StoreResult<usize> {
    for up in &items {
        if let Some(v) = &up.item.vector {
            check_vector(v, store.schema()).map_err(|e| {
                ValidationError::new(format!("item '{}': {}", up.item.id, e.message))
            })?;
        }
    }
    write_idempotent("items", &items, opts, |_, batch| store.upsert_items(batch)).await
}

/// [`Store::set_item_vectors`] for many vectors (validated first; batches retried).
pub async fn set_item_vectors(
    store: &dyn Store,
    vectors: Vec<(String, Vec<f32>)>,
    opts: &BulkOptions,
) -> StoreResult<usize> {
    check_vectors(store, "item", &vectors)?;
    write_idempotent("item vectors", &vectors, opts, |_, batch| {
        store.set_item_vectors(batch)
    })
    .await
}

/// [`Store::set_user_vectors`] for many vectors (validated first; batches retried).
pub async fn set_user_vectors(
    store: &dyn Store,
    vectors: Vec<(String, Vec<f32>)>,
    opts: &BulkOptions,
) -> StoreResult<usize> {
    check_vectors(store, "user", &vectors)?;
    write_idempotent("user vectors", &vectors, opts, |_, batch| {
        store.set_user_vectors(batch)
    })
    .await
}

/// [`Store::apply_events`] for many events, in order, in time-sized batches, retried when
/// unavailable like the idempotent writes: the call is one run of
/// [`Store::apply_events_once`] (a fresh run id, each event at its position), so a batch
/// that timed out after being applied, whole or in part, counts once when tried again.
pub async fn apply_events(
    store: &dyn Store,
    events: &[Event],
    opts: &BulkOptions,
) -> StoreResult<usize> {
    let run = run_id();
    write_idempotent("events", events, opts, |first, batch| async move {
        store
            .apply_events_once(Positioned {
                run,
                first,
                events: &batch,
            })
            .await
            .map(|()| batch.len())
    })
    .await
}

/// A run id no other run is likely to share: the process' random hasher keys mixed with
/// the clock (a collision would only make a new run skip events of an old one for users
/// that both touch, at positions the old one reached).
fn run_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_millis(200);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn grows_while_batches_are_fast() {
        let mut s = BatchSizer::new(T, 16, 5000);
        s.succeeded(16, ms(1));
        assert_eq!(s.size(), 32, "at most doubles");
        s.succeeded(32, ms(99));
        assert_eq!(s.size(), 64);
        s.succeeded(64, ms(100));
        assert_eq!(s.size(), 64, "half the target or more: kept");
        s.succeeded(64, ms(200));
        assert_eq!(s.size(), 64);
    }

    #[test]
    fn never_past_the_maximum() {
        let mut s = BatchSizer::new(T, 4000, 5000);
        s.succeeded(4000, ms(1));
        assert_eq!(s.size(), 5000);
        s.succeeded(5000, Duration::ZERO);
        assert_eq!(s.size(), 5000);
        assert_eq!(BatchSizer::new(T, 0, 0).size(), 1);
    }

    #[test]
    fn shrinks_to_the_rate_when_over_the_target() {
        let mut s = BatchSizer::new(T, 1000, 5000);
        s.succeeded(1000, ms(800));
        assert_eq!(s.size(), 250);
        s.succeeded(250, Duration::from_secs(100));
        assert_eq!(s.size(), 1, "never below one");
    }

    #[test]
    fn halves_on_failure_and_stays_below_what_failed() {
        let mut s = BatchSizer::new(T, 1000, 5000);
        s.failed(1000);
        assert_eq!(s.size(), 500);
        s.succeeded(500, ms(1));
        assert_eq!(s.size(), 750, "a quarter under the size that failed");
        s.succeeded(750, ms(1));
        assert_eq!(s.size(), 750);
        s.failed(1);
        assert_eq!(s.size(), 1);
        s.succeeded(1, ms(1));
        assert_eq!(s.size(), 1, "one failed: stays at one");
    }

    #[test]
    fn forgets_a_failure_after_a_run_of_successes() {
        let mut s = BatchSizer::new(T, 100, 5000);
        s.failed(100);
        for _ in 1..BatchSizer::FORGET_AFTER {
            let n = s.size();
            s.succeeded(n, ms(1));
        }
        assert_eq!(s.size(), 75, "capped until then");
        s.succeeded(75, ms(1));
        assert_eq!(s.size(), 150);
    }

    #[test]
    fn target_follows_a_short_response_timeout() {
        assert_eq!(
            BulkOptions::for_response_timeout(Duration::from_secs(1)).target,
            ms(100)
        );
        assert_eq!(BulkOptions::for_response_timeout(ms(100)).target, ms(20));
    }
}
