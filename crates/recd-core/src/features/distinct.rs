//! Windowed distinct counts (a user's distinct items clicked in 24 h, an item's distinct
//! viewers in 7 d) in bounded memory: per bucket of the window ([`super::window`]), the
//! smallest [`SKETCH`] distinct 32-bit hashes of the ids seen in it (a "k minimum values"
//! sketch).
//!
//! The window's value at `now` unions the sketches of the buckets it covers and keeps the
//! `SKETCH` smallest hashes of the union, which are exactly the union's `SKETCH` smallest
//! (each bucket kept its own smallest, so none of them can be missing):
//! - fewer than `SKETCH` distinct hashes in the window (then no bucket was cut): the count
//!   is exact, up to collisions of 32-bit hashes (~n² / 2³³: under 0.1 % below 2,900 ids);
//! - otherwise the estimate `(SKETCH − 1) / h`, `h` the `SKETCH`-th smallest hash as a
//!   fraction of 2³², which is unbiased with a relative standard error of about
//!   `1 / √(SKETCH − 2)`: 6.3 % for `SKETCH` = 256.
//!
//! On top of that, the window's bucket approximation applies as for counts. Memory per slot
//! is at most `buckets × SKETCH × 4` bytes (24 KB for 24 buckets), whatever the event rate;
//! a quiet entity keeps only what it saw. The hash of an id is FNV-1a, fixed across
//! processes and versions (state in Redis outlives a process), and the redis script keeps
//! the same sketches from the hashes the Rust side passes it.

use serde::{Deserialize, Serialize};

use crate::features::window::{Window, prune};

/// How many hashes a bucket keeps.
pub const SKETCH: usize = 256;

/// The hash an id is counted by: FNV-1a over its bytes, mixed, its top 32 bits.
pub fn id_hash(id: &str) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // FNV alone leaves ids that differ in their last characters ("user-1", "user-2")
    // close together, and the estimate needs hashes spread uniformly: murmur3's finalizer.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    (h >> 32) as u32
}

/// A window's non-empty buckets, oldest first, each with its smallest distinct hashes
/// (ascending, at most [`SKETCH`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sketches(pub Vec<(i64, Vec<u32>)>);

impl Sketches {
    /// Counts `hash` in bucket `b`, then drops the buckets no query at or after the newest
    /// bucket can cover (as [`super::window::Buckets::add`]).
    pub fn insert(&mut self, window: &Window, b: i64, hash: u32) {
        let at = match self.0.binary_search_by_key(&b, |(k, _)| *k) {
            Ok(i) => i,
            Err(i) => {
                self.0.insert(i, (b, Vec::new()));
                i
            }
        };
        let hashes = &mut self.0[at].1;
        if let Err(i) = hashes.binary_search(&hash)
            && i < SKETCH
        {
            hashes.insert(i, hash);
            hashes.truncate(SKETCH);
        }
        prune(&mut self.0, window);
    }

    /// The distinct count of the window at `now_ms` (see the module doc).
    pub fn count(&self, window: &Window, now_ms: i64) -> f64 {
        let (lo, hi) = (window.first_bucket(now_ms), window.bucket_of(now_ms));
        let mut union: Vec<u32> = self
            .0
            .iter()
            .filter(|(b, _)| (lo..=hi).contains(b))
            .flat_map(|(_, h)| h.iter().copied())
            .collect();
        union.sort_unstable();
        union.dedup();
        if union.len() < SKETCH {
            return union.len() as f64;
        }
        let kth = f64::from(union[SKETCH - 1]) + 1.0;
        (SKETCH - 1) as f64 / (kth / 4_294_967_296.0)
    }

    /// Whether no bucket is kept.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `"#b:h,h,h b:h ..."`, oldest bucket first (the `#` tells it from a sum's buckets;
    /// the redis script writes the same form).
    pub fn encode(&self) -> String {
        let mut s = String::from("#");
        for (i, (b, hashes)) in self.0.iter().enumerate() {
            if i > 0 {
                s.push(' ');
            }
            s.push_str(&b.to_string());
            s.push(':');
            for (j, h) in hashes.iter().enumerate() {
                if j > 0 {
                    s.push(',');
                }
                s.push_str(&h.to_string());
            }
        }
        s
    }

    /// Reads [`Sketches::encode`]'s form back (buckets and hashes sorted, at most
    /// [`SKETCH`] per bucket, whatever the text says).
    pub fn decode(s: &str) -> Option<Self> {
        let s = s.strip_prefix('#')?;
        let mut out = Vec::new();
        for part in s.split_ascii_whitespace() {
            let (b, list) = part.split_once(':')?;
            let mut hashes = list
                .split(',')
                .filter(|h| !h.is_empty())
                .map(|h| h.parse().ok())
                .collect::<Option<Vec<u32>>>()?;
            hashes.sort_unstable();
            hashes.dedup();
            hashes.truncate(SKETCH);
            out.push((b.parse().ok()?, hashes));
        }
        out.sort_by_key(|(b, _)| *b);
        Some(Sketches(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    fn day_in_24() -> Window {
        Window {
            width_ms: 24 * H,
            buckets: 24,
        }
    }

    #[test]
    fn counts_are_exact_below_the_sketch_and_repeats_count_once() {
        let w = day_in_24();
        let mut s = Sketches::default();
        // 3 ids in hour 0, two of them again in hour 5, a fourth in hour 5.
        for (at, id) in [(0, "a"), (0, "b"), (0, "c"), (5, "a"), (5, "b"), (5, "d")] {
            s.insert(&w, w.bucket_of(at * H), id_hash(id));
        }
        assert_eq!(s.count(&w, 5 * H), 4.0);
        // At hour 24 the window starts at hour 1: hour 0's c is out, a and b seen again.
        assert_eq!(s.count(&w, 24 * H), 3.0);
        // At hour 28, hour 5 is the oldest covered; at 29 nothing is left.
        assert_eq!(s.count(&w, 28 * H), 3.0);
        assert_eq!(s.count(&w, 29 * H), 0.0);
        // Inserting far later prunes what no window can cover any more.
        s.insert(&w, w.bucket_of(100 * H), id_hash("e"));
        assert_eq!(s.0.len(), 1);
    }

    #[test]
    fn large_counts_are_estimated_within_the_stated_error() {
        let w = day_in_24();
        for n in [1_000usize, 20_000, 100_000] {
            let mut s = Sketches::default();
            for i in 0..n {
                // Spread over the day's buckets, each id seen twice.
                let at = (i as i64 % 24) * H;
                s.insert(&w, w.bucket_of(at), id_hash(&format!("user-{i}")));
                s.insert(&w, w.bucket_of(at), id_hash(&format!("user-{i}")));
            }
            let est = s.count(&w, 23 * H);
            let rel = (est - n as f64).abs() / n as f64;
            // 3 standard errors of 1/sqrt(254) = 6.3 %.
            assert!(
                rel < 0.19,
                "n {n}: estimate {est:.0}, off by {:.1} %",
                rel * 100.0
            );
            // Memory stays bounded by the buckets and the sketch size.
            assert!(s.0.iter().all(|(_, h)| h.len() <= SKETCH));
        }
    }

    #[test]
    fn the_union_keeps_the_smallest_hashes_across_buckets() {
        // The same ids in every bucket: the window counts them once, not 24 times.
        let w = day_in_24();
        let mut s = Sketches::default();
        for hour in 0..24 {
            for i in 0..1_000 {
                s.insert(&w, w.bucket_of(hour * H), id_hash(&format!("u{i}")));
            }
        }
        let est = s.count(&w, 23 * H);
        assert!((est - 1_000.0).abs() / 1_000.0 < 0.19, "{est}");
    }

    #[test]
    fn encoding_round_trips_and_rejects_garbage() {
        let w = day_in_24();
        let mut s = Sketches::default();
        for (at, id) in [(0, "a"), (1, "b"), (1, "c")] {
            s.insert(&w, w.bucket_of(at * H), id_hash(id));
        }
        assert_eq!(Sketches::decode(&s.encode()), Some(s.clone()));
        assert_eq!(Sketches::decode("#"), Some(Sketches::default()));
        assert_eq!(Sketches::decode("0:1.5"), None);
        assert_eq!(Sketches::decode("#x:1"), None);
        assert_eq!(Sketches::decode("#0:1,zz"), None);
    }

    #[test]
    fn the_hash_is_fixed() {
        // The redis store keeps these hashes across processes and versions.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^= h >> 33;
        assert_eq!(id_hash(""), (h >> 32) as u32);
        assert_ne!(id_hash("a"), id_hash("b"));
    }
}
