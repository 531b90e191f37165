//! Sliding windows kept as a few time buckets: bounded memory, one stated approximation.
//!
//! A window of width `W` split into `n` buckets of `g = W / n` milliseconds. An event at
//! time `t` falls in bucket `floor(t / g)`. The value of the window at `now` is the sum
//! of the buckets from `floor(now / g) - n + 1` to `floor(now / g)`: the current, partial
//! bucket and the `n - 1` whole ones before it. That span starts at
//! `(floor(now / g) - n + 1) · g`, which lies between `now - W` and `now - W + g`, so
//! compared with the exact sliding window `(now - W, now]`:
//! - it never counts more (nothing older than `now - W` is in it; an event dated after
//!   `now` but inside the current bucket, possible only online through clock skew, is the
//!   one exception);
//! - it misses only the events of the oldest `now mod g` milliseconds of the exact window,
//!   a span shorter than `g`: at most one bucket's worth, `1/n` of the window's span.
//!
//! Training rows and online values both use these buckets, so they agree exactly; the
//! approximation is only against the exact window.

use serde::{Deserialize, Serialize};

/// A window's width and resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    /// Width in milliseconds.
    pub width_ms: i64,
    /// How many buckets it is kept in; `width_ms` is a multiple of it.
    pub buckets: u32,
}

impl Window {
    /// The width of one bucket, `g`.
    pub fn granularity_ms(&self) -> i64 {
        self.width_ms / i64::from(self.buckets.max(1))
    }

    /// The bucket of time `at_ms`.
    pub fn bucket_of(&self, at_ms: i64) -> i64 {
        at_ms.div_euclid(self.granularity_ms().max(1))
    }

    /// The oldest bucket the window covers at `now_ms`.
    pub fn first_bucket(&self, now_ms: i64) -> i64 {
        self.bucket_of(now_ms) - i64::from(self.buckets) + 1
    }

    /// Whether bucket `b` is inside the window at `now_ms`.
    pub fn covers(&self, b: i64, now_ms: i64) -> bool {
        (self.first_bucket(now_ms)..=self.bucket_of(now_ms)).contains(&b)
    }
}

/// A window's non-empty buckets, oldest first: at most `window.buckets` of them once
/// pruned (memory is bounded by the window's resolution, not by the event rate).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Buckets(pub Vec<(i64, f64)>);

impl Buckets {
    /// Adds `value` at bucket `b`, then drops the buckets no query at or after the newest
    /// bucket can cover.
    pub fn add(&mut self, window: &Window, b: i64, value: f64) {
        match self.0.binary_search_by_key(&b, |(k, _)| *k) {
            Ok(i) => self.0[i].1 += value,
            Err(i) => self.0.insert(i, (b, value)),
        }
        prune(&mut self.0, window);
    }

    /// The window's value at `now_ms`.
    pub fn sum(&self, window: &Window, now_ms: i64) -> f64 {
        let (lo, hi) = (window.first_bucket(now_ms), window.bucket_of(now_ms));
        self.0
            .iter()
            .filter(|(b, _)| (lo..=hi).contains(b))
            .map(|(_, v)| v)
            .sum()
    }

    /// Whether no bucket is kept.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Drops the buckets (keyed by number, oldest first) that no query at or after the newest
/// one can cover: what keeps a window's memory bounded by its resolution.
pub(crate) fn prune<T>(buckets: &mut Vec<(i64, T)>, window: &Window) {
    if let Some(newest) = buckets.last().map(|(b, _)| *b) {
        let keep_from = newest - i64::from(window.buckets) + 1;
        let cut = buckets.partition_point(|(k, _)| *k < keep_from);
        buckets.drain(..cut);
    }
}

/// The exact sliding-window sum over `(now - width, now]` of `(at_ms, value)` events: the
/// reference the buckets are measured against (tests, the parity check).
pub fn exact_sum(events: &[(i64, f64)], width_ms: i64, now_ms: i64) -> f64 {
    events
        .iter()
        .filter(|(t, _)| *t > now_ms - width_ms && *t <= now_ms)
        .map(|(_, v)| v)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    fn hour_in_4() -> Window {
        // 1 h in 4 buckets of 15 min.
        Window {
            width_ms: H,
            buckets: 4,
        }
    }

    #[test]
    fn bucket_arithmetic_by_hand() {
        let w = hour_in_4();
        assert_eq!(w.granularity_ms(), 15 * 60_000);
        // 10:07 is in the 41st quarter hour since midnight: bucket 40.
        assert_eq!(w.bucket_of(10 * H + 7 * 60_000), 40);
        assert_eq!(w.first_bucket(10 * H + 7 * 60_000), 37);
        assert!(w.covers(37, 10 * H + 7 * 60_000));
        assert!(!w.covers(36, 10 * H + 7 * 60_000));
        // Negative times round down, not toward zero.
        assert_eq!(w.bucket_of(-1), -1);
    }

    #[test]
    fn window_value_by_hand() {
        let w = hour_in_4();
        let mut b = Buckets::default();
        // Events at 9:05 (bucket 36), 9:20 (37), 9:50 (39), 10:01 (40), value 1 each,
        // and 2.5 at 9:22 (37).
        for (t, v) in [
            (9 * H + 5 * 60_000, 1.0),
            (9 * H + 20 * 60_000, 1.0),
            (9 * H + 22 * 60_000, 2.5),
            (9 * H + 50 * 60_000, 1.0),
            (10 * H + 60_000, 1.0),
        ] {
            b.add(&w, w.bucket_of(t), v);
        }
        // At 10:07 the window covers buckets 37..=40: 9:20, 9:22, 9:50, 10:01 = 5.5;
        // the exact window (9:07, 10:07] holds the same events.
        let now = 10 * H + 7 * 60_000;
        assert_eq!(b.sum(&w, now), 5.5);
        // At 10:16 it covers 38..=40: 9:50 + 10:01 = 2; the exact window (9:16, 10:16]
        // also has 9:20 and 9:22: the buckets miss 3.5, all within one bucket's span.
        let now = 10 * H + 16 * 60_000;
        assert_eq!(b.sum(&w, now), 2.0);
        // 11:00 is bucket 44: the window 41..=44 holds nothing.
        assert_eq!(b.sum(&w, 11 * H), 0.0);
        // Bucket 36 was pruned when bucket 40 arrived (40 - 4 + 1 = 37 is the oldest kept).
        assert_eq!(b.0.first().map(|(k, _)| *k), Some(37));
        assert!(b.0.len() <= 4);
    }

    #[test]
    fn buckets_never_exceed_the_exact_window_and_miss_less_than_one_bucket() {
        let w = Window {
            width_ms: 24 * H,
            buckets: 24,
        };
        let g = w.granularity_ms();
        // A deterministic irregular stream over three days.
        let mut events = Vec::new();
        let mut t = 0i64;
        let mut x = 12345u64;
        while t < 72 * H {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            t += (x % (40 * 60_000)) as i64;
            events.push((t, 1.0 + (x % 3) as f64));
        }
        let mut b = Buckets::default();
        let mut applied = 0;
        for now in (0..72 * H).step_by(7 * 60_000 + 13) {
            while applied < events.len() && events[applied].0 <= now {
                let (at, v) = events[applied];
                b.add(&w, w.bucket_of(at), v);
                applied += 1;
            }
            let approx = b.sum(&w, now);
            let exact = exact_sum(&events[..applied], w.width_ms, now);
            let span_start = w.first_bucket(now) * g;
            // The exact window's events before the buckets' span: (now - W, span_start).
            let missed = exact_sum(
                &events[..applied],
                span_start - 1 - (now - w.width_ms),
                span_start - 1,
            );
            assert!(approx <= exact + 1e-9, "never more than exact at {now}");
            assert!(
                (exact - approx - missed).abs() < 1e-9,
                "misses exactly the oldest partial bucket at {now}"
            );
            assert!(span_start - (now - w.width_ms) <= g);
            assert!(b.0.len() <= w.buckets as usize);
        }
    }
}
