//! Visited-node sets for graph walks, pooled so that a query allocates nothing.
//!
//! A set is a `Vec<u32>` of epoch marks: "visited" means `marks[slot] == epoch`, and clearing
//! is bumping the epoch (a real wipe only when the counter wraps), as in hnswlib.

use parking_lot::Mutex;

#[derive(Debug, Default)]
pub(crate) struct Visited {
    marks: Vec<u32>,
    epoch: u32,
}

impl Visited {
    /// Empties the set and makes room for `slots` slots.
    pub(crate) fn reset(&mut self, slots: usize) {
        if self.marks.len() < slots {
            self.marks.resize(slots, 0);
        }
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            self.marks.fill(0);
            self.epoch = 1;
        }
    }

    /// Whether `slot` is marked.
    #[inline]
    pub(crate) fn contains(&self, slot: u32) -> bool {
        self.marks.get(slot as usize) == Some(&self.epoch)
    }

    /// Marks `slot`; returns true if it was not marked yet.
    #[inline]
    pub(crate) fn insert(&mut self, slot: u32) -> bool {
        let m = &mut self.marks[slot as usize];
        let fresh = *m != self.epoch;
        *m = self.epoch;
        fresh
    }
}

/// A pool of [`Visited`] sets (one per concurrent walk, reused across queries).
#[derive(Debug, Default)]
pub(crate) struct VisitedPool {
    free: Mutex<Vec<Visited>>,
}

impl VisitedPool {
    pub(crate) fn take(&self, slots: usize) -> Visited {
        let mut v = self.free.lock().pop().unwrap_or_default();
        v.reset(slots);
        v
    }

    pub(crate) fn give_back(&self, v: Visited) {
        self.free.lock().push(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_clears_and_wrap_is_handled() {
        let mut v = Visited::default();
        v.reset(4);
        assert!(v.insert(3));
        assert!(!v.insert(3));
        assert!(v.contains(3) && !v.contains(2) && !v.contains(99));
        v.reset(4);
        assert!(!v.contains(3));
        assert!(v.insert(3));
        // A mark left from epoch 1, four billion queries ago: after the counter wraps it must
        // not read as visited.
        v.epoch = u32::MAX;
        v.marks[1] = 1;
        v.reset(4);
        assert!(v.insert(1));
    }
}
