//! Observations of served lists waiting to be folded into the monitor's shared state.
//!
//! Watching a list or an event touches a few summaries (the exposure window's sketches, the
//! drift histograms, the users' last event times) behind one mutex. Taking that mutex on
//! every request made the request threads queue behind each other (and an event request
//! wait for a whole fold of lists); instead each thread appends a compact record to one of
//! a few sharded buffers (its own shard, so the shard's mutex is uncontended) and the
//! records are folded in batches: by a background tick, by whoever reads the state (the
//! drift report, the scrape), or by the request that fills a shard to [`FOLD_AT`] (so
//! memory stays bounded when no tick runs, e.g. in an embedding application).

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;

/// Shards of the buffer (more than the worker threads of a small machine).
const SHARDS: usize = 8;

/// Records in one shard at which the request that adds the last one folds the shard.
pub const FOLD_AT: usize = 2_048;

/// One served list, as the shared state needs it.
#[derive(Debug)]
pub struct ServedList {
    /// When it was served (server clock, ms).
    pub t_ms: i64,
    /// Its first item's score.
    pub top: f64,
    /// Its first item's score minus its last's.
    pub spread: f64,
    /// Its items' ids, hashed (`recd_core::monitor::key_hash`).
    pub item_hashes: Vec<u64>,
    /// Its items' categories, joined by [`CATEGORY_SEPARATOR`] (one allocation per list).
    pub categories: String,
}

/// What separates the categories in [`ServedList::categories`] (a control character, which
/// a category value that counts in a drift report is very unlikely to hold).
pub const CATEGORY_SEPARATOR: char = '\u{1f}';

impl ServedList {
    /// The categories, one per item that has one.
    pub fn categories(&self) -> impl Iterator<Item = &str> {
        self.categories
            .split(CATEGORY_SEPARATOR)
            .filter(|c| !c.is_empty())
    }
}

/// One applied event, as the shared state needs it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SeenEvent {
    /// Its type.
    pub kind: recd_core::EventType,
    /// Its user's id, hashed (`recd_core::monitor::key_hash`).
    pub user_hash: u64,
    /// Its timestamp (ms).
    pub t_ms: i64,
}

/// What waits in one shard.
#[derive(Debug, Default)]
pub struct Batch {
    /// Served lists, oldest first.
    pub lists: Vec<ServedList>,
    /// Norms of the query vectors the pipeline computed.
    pub query_norms: Vec<f64>,
    /// Applied events, in the order this thread saw them.
    pub events: Vec<SeenEvent>,
}

impl Batch {
    fn len(&self) -> usize {
        self.lists.len() + self.query_norms.len() + self.events.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The sharded buffer.
#[derive(Debug)]
pub struct Pending {
    shards: Vec<Mutex<Batch>>,
}

impl Default for Pending {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Batch::default())).collect(),
        }
    }
}

/// The next shard to hand to a thread that has none yet.
static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's shard.
    static SHARD: Cell<Option<usize>> = const { Cell::new(None) };
}

fn this_threads_shard() -> usize {
    SHARD.with(|s| match s.get() {
        Some(i) => i,
        None => {
            let i = NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % SHARDS;
            s.set(Some(i));
            i
        }
    })
}

impl Pending {
    /// Adds to this thread's shard with `add`; when that fills the shard to [`FOLD_AT`],
    /// takes the shard's records for the caller to fold.
    pub fn push(&self, add: impl FnOnce(&mut Batch)) -> Option<Batch> {
        let shard = self.shards.get(this_threads_shard())?;
        let mut batch = shard.lock();
        add(&mut batch);
        (batch.len() >= FOLD_AT).then(|| std::mem::take(&mut *batch))
    }

    /// Takes every shard's records (each shard's in order; shards one after the other).
    pub fn take_all(&self) -> Vec<Batch> {
        self.shards
            .iter()
            .map(|s| std::mem::take(&mut *s.lock()))
            .filter(|b| !b.is_empty())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn records_wait_until_taken_or_a_shard_is_full() {
        let p = Pending::default();
        for i in 0..FOLD_AT - 1 {
            assert!(p.push(|b| b.query_norms.push(i as f64)).is_none());
        }
        // The FOLD_AT-th record of this thread's shard hands the whole shard back.
        let full = p.push(|b| b.query_norms.push(-1.0)).expect("full shard");
        assert_eq!(full.query_norms.len(), FOLD_AT);
        assert_eq!(full.query_norms.first(), Some(&0.0));
        assert!(p.take_all().is_empty());
        p.push(|b| b.query_norms.push(7.0));
        let taken = p.take_all();
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].query_norms, vec![7.0]);
        assert!(p.take_all().is_empty());
    }

    #[test]
    fn threads_share_the_shards_without_losing_records() {
        let p = Arc::new(Pending::default());
        let per_thread = 3 * FOLD_AT;
        let folded: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..12)
                .map(|_| {
                    let p = Arc::clone(&p);
                    s.spawn(move || {
                        (0..per_thread)
                            .filter_map(|i| p.push(|b| b.query_norms.push(i as f64)))
                            .map(|b| b.query_norms.len())
                            .sum::<usize>()
                    })
                })
                .collect();
            handles.into_iter().filter_map(|h| h.join().ok()).sum()
        });
        let rest: usize = p.take_all().iter().map(|b| b.query_norms.len()).sum();
        assert_eq!(folded + rest, 12 * per_thread);
    }
}
