//! Which users' states the checkpoints still have to store, oldest change first.
//!
//! The log holds every event, so a user's row in redb only bounds how much of the log a
//! restart replays into that user (`checkpoint`). Storing every changed user at every
//! checkpoint wrote each active user's whole state (~1.6 KB) every five seconds, and that
//! write, beside the requests, was what raised the recommend tail under a steady event
//! load (BENCHMARKS.md, session 30). So a background checkpoint stores only a share of
//! the changed users, the longest-changed first, sized to store each about once per half
//! of `bound` records, and at the latest once `bound` records were logged after its
//! change; the `USERS_APPLIED` mark is then the oldest unstored change. A restart replays
//! at most about `bound` records, and each stored row covers every event its user had in
//! that window.

use std::collections::{BTreeSet, HashSet, VecDeque};

/// The changed users not stored yet.
#[derive(Debug, Default)]
pub struct Dirty {
    /// `(sequence number of the first record not in the user's row, user)`, ascending.
    queue: VecDeque<(u64, String)>,
    /// The users in `queue`.
    members: HashSet<String>,
}

/// Which users a checkpoint stores, decided before its commit and applied to [`Dirty`]
/// only after it ([`Dirty::commit`]): a failed commit leaves the users dirty.
#[derive(Debug)]
pub struct Plan {
    /// The users to store, in key order (how they go into the B-tree).
    pub store: BTreeSet<String>,
    /// Every user row includes the records up to this sequence number once they are.
    pub mark: u64,
    /// Users the checkpoint's records changed that were not dirty, with the first
    /// sequence number they may lack.
    added: Vec<(u64, String)>,
    /// How many of `queue ++ added`, from the front, are in `store`.
    taken: usize,
}

/// How many of the changed users a checkpoint stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Share {
    /// Every one (on demand and at shutdown: a restart then replays nothing).
    All,
    /// The background's share: enough to store each about once per `bound / 2` records,
    /// and every one changed `bound` or more records ago. A `bound` of 0 stores all.
    Due {
        /// The most records a restart should replay.
        bound: u64,
    },
}

impl Dirty {
    /// How many users are changed and not stored.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether every changed user is stored.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Plans a checkpoint that absorbed the records `first..=applied`, which changed
    /// `touched`.
    pub fn plan(&self, touched: &BTreeSet<String>, first: u64, applied: u64, share: Share) -> Plan {
        let added: Vec<(u64, String)> = touched
            .iter()
            .filter(|id| !self.members.contains(*id))
            .map(|id| (first, id.clone()))
            .collect();
        let total = self.queue.len() + added.len();
        let taken = match share {
            Share::All | Share::Due { bound: 0 } => total,
            Share::Due { bound } => {
                let records = applied.saturating_sub(first).saturating_add(1);
                // A share that stores each changed user about once per half the bound.
                let quota = (total as u128 * records as u128).div_ceil((bound / 2).max(1) as u128);
                // Those whose change is `bound` records old must go now, whatever the quota.
                let overdue = self
                    .queue
                    .iter()
                    .take_while(|(seq, _)| seq.saturating_add(bound) <= applied)
                    .count();
                usize::try_from(quota)
                    .unwrap_or(usize::MAX)
                    .max(overdue)
                    .min(total)
            }
        };
        let mut entries = self.queue.iter().chain(added.iter());
        let store: BTreeSet<String> = entries
            .by_ref()
            .take(taken)
            .map(|(_, id)| id.clone())
            .collect();
        // The oldest change left unstored: the rows include everything before it.
        let mark = entries.next().map_or(applied, |(seq, _)| seq - 1);
        Plan {
            store,
            mark,
            added,
            taken,
        }
    }

    /// After the plan's commit: its users are stored, the newly changed ones are dirty.
    pub fn commit(&mut self, plan: Plan) {
        let taken = plan.taken;
        self.add(plan.added);
        for (_, id) in self.queue.drain(..taken) {
            self.members.remove(&id);
        }
    }

    /// After a checkpoint that failed, whose commit may have gone through all the same:
    /// the newly changed users are dirty (a retry skips the records redb has and would not
    /// see them), and the ones it was to store stay dirty.
    pub fn failed(&mut self, plan: Plan) {
        self.add(plan.added);
    }

    fn add(&mut self, added: Vec<(u64, String)>) {
        for (seq, id) in added {
            self.members.insert(id.clone());
            self.queue.push_back((seq, id));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[&str]) -> BTreeSet<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn all_stores_every_changed_user_and_marks_everything() {
        let mut d = Dirty::default();
        let p = d.plan(&set(&["a", "b"]), 1, 10, Share::Due { bound: 1000 });
        assert_eq!(
            p.store,
            set(&["a"]),
            "2 users x 10 records / 500, rounded up"
        );
        d.commit(p);
        let p = d.plan(&set(&["c"]), 11, 20, Share::All);
        assert_eq!(p.store, set(&["b", "c"]));
        assert_eq!(p.mark, 20);
        d.commit(p);
        assert_eq!(d.len(), 0);
    }

    #[test]
    fn a_bound_of_zero_stores_all() {
        let d = Dirty::default();
        let p = d.plan(&set(&["a", "b"]), 1, 10, Share::Due { bound: 0 });
        assert_eq!((p.store.len(), p.mark), (2, 10));
    }

    #[test]
    fn the_share_is_the_oldest_changes_in_proportion_to_the_records() {
        let mut d = Dirty::default();
        // 100 users changed by records 1..=10; bound 200: a quarter stored per 25 records.
        let ids: Vec<String> = (0..100).map(|i| format!("u{i:03}")).collect();
        let touched: BTreeSet<String> = ids.iter().cloned().collect();
        let p = d.plan(&touched, 1, 10, Share::Due { bound: 200 });
        assert_eq!(p.store.len(), 10, "100 users x 10 records / 100");
        assert_eq!(p.mark, 0, "the others' changes start at record 1");
        d.commit(p);
        assert_eq!(d.len(), 90);
        // Nothing new changed; 50 records later half of the 90 go, oldest first.
        let p = d.plan(&BTreeSet::new(), 11, 60, Share::Due { bound: 200 });
        assert_eq!(p.store.len(), 45);
        assert!(
            p.store
                .iter()
                .all(|id| id.as_str() >= "u010" && id.as_str() < "u055")
        );
        d.commit(p);
        // A user stored and changed again is dirty from the new records on.
        let p = d.plan(&set(&["u000", "u099"]), 61, 61, Share::Due { bound: 200 });
        assert_eq!(p.added.len(), 1, "u099 is dirty already");
        d.commit(p);
        let p = d.plan(&BTreeSet::new(), 62, 62, Share::All);
        assert!(p.store.contains("u000") && p.store.contains("u099"));
    }

    #[test]
    fn changes_bound_records_old_are_stored_whatever_the_share() {
        let mut d = Dirty::default();
        let ten: Vec<String> = (0..10).map(|i| format!("u{i}")).collect();
        let p = d.plan(
            &ten.iter().cloned().collect(),
            1,
            1,
            Share::Due { bound: 1_000_000 },
        );
        assert_eq!(
            p.store,
            set(&["u0"]),
            "a share rounds up to one user, the first in key order"
        );
        d.commit(p);
        let p = d.plan(&set(&["new"]), 2, 999, Share::Due { bound: 1_000_000 });
        assert_eq!(p.store, set(&["u1"]));
        assert_eq!(p.mark, 0, "u2..u9 lack record 1 on");
        d.commit(p);
        // One record later: a share of one user, but eight changes are a million old.
        let p = d.plan(
            &BTreeSet::new(),
            1_000_001,
            1_000_001,
            Share::Due { bound: 1_000_000 },
        );
        let overdue: BTreeSet<String> = ten[2..].iter().cloned().collect();
        assert_eq!(p.store, overdue, "changed at 1, a million records ago");
        assert_eq!(p.mark, 1, "only 'new' is left, from record 2");
    }

    #[test]
    fn a_plan_not_committed_changes_nothing() {
        let mut d = Dirty::default();
        let p = d.plan(&set(&["a", "b"]), 1, 5, Share::Due { bound: 1 << 40 });
        d.commit(p);
        let (queue, members) = (d.queue.clone(), d.members.clone());
        let _dropped = d.plan(&set(&["c"]), 6, 90, Share::All);
        assert_eq!((d.queue.clone(), d.members.clone()), (queue, members));
        assert_eq!(d.len(), 1, "b, left by the first plan");
        // A failed one leaves its users dirty and adds the ones it found changed.
        let failed = d.plan(&set(&["c"]), 6, 90, Share::All);
        d.failed(failed);
        let p = d.plan(&BTreeSet::new(), 91, 91, Share::All);
        assert_eq!((p.store, p.mark), (set(&["b", "c"]), 91));
        let order: Vec<(u64, &str)> = d.queue.iter().map(|(s, id)| (*s, id.as_str())).collect();
        assert_eq!(
            order,
            [(1, "b"), (6, "c")],
            "each from its first unstored record"
        );
    }
}
