//! The embedded backend's user states, in lock-striped shards that are also the unit of
//! write atomicity.
//!
//! A writer locks the shards of the users it changes (always in ascending shard order,
//! so that two writers never wait on each other in a cycle), computes the new states,
//! appends its log record and publishes the states before unlocking. So a user's writes
//! are atomic and logged in the order they were applied, while writers of users in other
//! shards never wait for each other; readers take one shard's lock for a clone.
//!
//! Each user's state carries the sequence number of the last log record it includes
//! ([`Entry::seq`]): events are logged as events, not as the states they make, so a
//! checkpoint stores the state it finds here under that number, and recovery replays
//! only the records after it (see `checkpoint`).
//!
//! Each shard also keeps the events of its users that were logged but not yet absorbed by
//! redb (`tail`), and the users forgotten since (`forgotten`): with them, a session rebuild
//! reads a user's exact event history — redb's snapshot plus the tail — without waiting
//! for a checkpoint while it holds the lock.

use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};

use parking_lot::{Mutex, MutexGuard};
use recd_core::{Event, UserState};

use super::record::encode_user;
use crate::StoreResult;

/// How many shards the users are spread over.
pub const SHARDS: usize = 64;

/// A user's state and the last log record it includes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Entry {
    /// The state.
    pub state: UserState,
    /// The sequence number of the last record applied to `state` (0: none since the
    /// state was stored by a version that did not record it).
    pub seq: u64,
}

/// One shard.
#[derive(Debug, Default)]
pub struct Shard {
    /// User id → state, in id order (listing users walks each shard from a cursor).
    pub users: BTreeMap<String, Entry>,
    /// Events of this shard's users with sequence numbers after `tail_from`, in order.
    pub tail: VecDeque<(u64, Event)>,
    /// `tail` holds every event of the shard logged after this sequence number.
    pub tail_from: u64,
    /// Users forgotten after `tail_from`, with the sequence number of their deletion:
    /// events before it that redb may still hold are not theirs any more.
    pub forgotten: HashMap<String, u64>,
}

/// User id → state, sharded.
#[derive(Debug)]
pub struct Users {
    shards: Vec<Mutex<Shard>>,
    hasher: RandomState,
}

impl Users {
    /// No users; `applied` is the sequence number redb holds everything up to.
    pub fn new(applied: u64) -> Self {
        Self {
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        tail_from: applied,
                        ..Shard::default()
                    })
                })
                .collect(),
            hasher: RandomState::new(),
        }
    }

    /// The shard of `id` (a number below [`SHARDS`]).
    pub fn shard_of(&self, id: &str) -> usize {
        (self.hasher.hash_one(id) as usize) % SHARDS
    }

    /// A copy of the user's state.
    pub fn get(&self, id: &str) -> Option<UserState> {
        self.shards[self.shard_of(id)]
            .lock()
            .users
            .get(id)
            .map(|e| e.state.clone())
    }

    /// The user's entry, under its shard's lock, given to `f` (`None`: no such user).
    pub fn with<R>(&self, id: &str, f: impl FnOnce(Option<&Entry>) -> R) -> R {
        f(self.shards[self.shard_of(id)].lock().users.get(id))
    }

    /// The user's entry, under its shard's lock, given to `f` to change (`None`: no such
    /// user).
    pub fn with_mut<R>(&self, id: &str, f: impl FnOnce(Option<&mut Entry>) -> R) -> R {
        f(self.shards[self.shard_of(id)].lock().users.get_mut(id))
    }

    /// The user's redb row as it is now, with the sequence number of the last record it
    /// includes (`None`: no such user). Encoded under the shard's lock, which is held
    /// about as long as a write's own encoding of a record. A state whose fold-in refold is
    /// due is stored as it is, marked so (`encode_user`): the read after a restart solves
    /// it from the same vector memory would have.
    pub fn row(&self, id: &str) -> StoreResult<Option<(Vec<u8>, u64)>> {
        self.with(id, |e| {
            e.map(|e| Ok((encode_user(&e.state, e.seq)?, e.seq)))
        })
        .transpose()
    }

    /// Sets a state at start-up.
    pub fn load(&self, id: String, state: UserState, seq: u64) {
        self.shards[self.shard_of(&id)]
            .lock()
            .users
            .insert(id, Entry { state, seq });
    }

    /// Removes a user at start-up (recovery replaying a deletion).
    pub fn remove(&self, id: &str) {
        self.shards[self.shard_of(id)].lock().users.remove(id);
    }

    /// How many users there are.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().users.len()).sum()
    }

    /// Up to `take` user ids after `after`, ascending: a merge of the shards' ordered maps,
    /// each walked only while its ids can still make the page (one shard locked at a time).
    pub fn page(&self, after: Option<&str>, take: usize) -> Vec<String> {
        if take == 0 {
            return Vec::new();
        }
        let lower = after.map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded);
        // The smallest `take` ids seen so far; the top is the largest of them.
        let mut best: BinaryHeap<String> = BinaryHeap::with_capacity(take + 1);
        for shard in &self.shards {
            let s = shard.lock();
            for id in s
                .users
                .range::<str, _>((lower, std::ops::Bound::Unbounded))
                .map(|(id, _)| id)
            {
                if best.len() == take {
                    if best.peek().is_some_and(|top| id >= top) {
                        break;
                    }
                    best.pop();
                }
                best.push(id.clone());
            }
        }
        best.into_sorted_vec()
    }

    /// Every user forgotten since the last checkpoint, with the sequence number of the
    /// deletion (the latest, if several): events of theirs before it that redb still holds
    /// are not theirs any more.
    pub fn forgotten(&self) -> HashMap<String, u64> {
        let mut out: HashMap<String, u64> = HashMap::new();
        for shard in &self.shards {
            for (id, seq) in &shard.lock().forgotten {
                let at = out.entry(id.clone()).or_default();
                *at = (*at).max(*seq);
            }
        }
        out
    }

    /// Locks shard `i` (modulo [`SHARDS`]) alone.
    pub fn lock_shard(&self, i: usize) -> MutexGuard<'_, Shard> {
        self.shards[i % SHARDS].lock()
    }

    /// Locks the shards of `ids`, in ascending order.
    pub fn lock<'s>(&self, ids: impl IntoIterator<Item = &'s str>) -> Locked<'_> {
        let mut wanted: Vec<usize> = ids.into_iter().map(|id| self.shard_of(id)).collect();
        wanted.sort_unstable();
        wanted.dedup();
        Locked {
            users: self,
            guards: wanted
                .into_iter()
                .map(|i| (i, self.shards[i].lock()))
                .collect(),
        }
    }

    /// Groups `ids` by shard (in ascending shard order), for writers that lock one shard
    /// at a time.
    pub fn by_shard<'a>(&self, ids: &[&'a str]) -> Vec<Vec<&'a str>> {
        let mut groups: HashMap<usize, Vec<&'a str>> = HashMap::new();
        for id in ids {
            groups.entry(self.shard_of(id)).or_default().push(id);
        }
        let mut out: Vec<(usize, Vec<&str>)> = groups.into_iter().collect();
        out.sort_unstable_by_key(|(i, _)| *i);
        out.into_iter().map(|(_, g)| g).collect()
    }

    /// After a checkpoint absorbed everything up to `applied`: drops the tails' copies.
    ///
    /// The copies are freed after the shard's lock is released. A checkpoint absorbs
    /// seconds of events, a thousand or more per shard at a steady load, and freeing each
    /// event's strings under the lock held it for an estimated ~0.1 ms (not timed), while the checkpoint runs at a
    /// low priority: a request wanting the shard could wait for the checkpoint thread to get
    /// a core back (a priority inversion). A risk removed, not a measured gain: the long
    /// shard-lock waits traced in BENCHMARKS.md session 34 mostly had another request as the
    /// holder, and the A/B showed no difference.
    pub fn absorbed(&self, applied: u64) {
        for shard in &self.shards {
            let gone = {
                let mut s = shard.lock();
                if s.tail_from >= applied {
                    continue;
                }
                // The tail is in sequence order.
                let upto = s.tail.partition_point(|(seq, _)| *seq <= applied);
                let kept = s.tail.split_off(upto);
                s.tail_from = applied;
                s.forgotten.retain(|_, seq| *seq > applied);
                std::mem::replace(&mut s.tail, kept)
            };
            drop(gone);
        }
    }
}

/// The locked shards of one write.
#[derive(Debug)]
pub struct Locked<'a> {
    users: &'a Users,
    /// `(shard index, guard)`, ascending.
    guards: Vec<(usize, MutexGuard<'a, Shard>)>,
}

impl Locked<'_> {
    /// The locked shard of `id`. Panics if it was not locked: a bug in the caller, which
    /// locks the shards of every id it touches.
    pub fn shard(&mut self, id: &str) -> &mut Shard {
        let i = self.users.shard_of(id);
        match self.guards.binary_search_by_key(&i, |(k, _)| *k) {
            Ok(at) => &mut self.guards[at].1,
            Err(_) => unreachable!("shard of '{id}' not locked"),
        }
    }

    /// The state of `id`.
    pub fn get(&mut self, id: &str) -> Option<&UserState> {
        self.shard(id).users.get(id).map(|e| &e.state)
    }

    /// The state of `id`, moved out (a default state is left in its place until
    /// [`Locked::put`] publishes the next one: the caller holds the lock in between).
    pub fn take(&mut self, id: &str) -> Option<UserState> {
        self.shard(id)
            .users
            .get_mut(id)
            .map(|e| std::mem::take(&mut e.state))
    }

    /// Publishes `state` for `id`, as of the record `seq`.
    pub fn put(&mut self, id: &str, state: UserState, seq: u64) {
        let users = &mut self.shard(id).users;
        match users.get_mut(id) {
            Some(e) => *e = Entry { state, seq },
            None => {
                users.insert(id.to_string(), Entry { state, seq });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use recd_core::EventType;

    fn event(user: &str, item: &str) -> Event {
        Event {
            user_id: user.into(),
            item_id: item.into(),
            kind: EventType::Click,
            value: None,
            timestamp_ms: 0,
            recommendation_id: None,
        }
    }

    #[test]
    fn absorbing_drops_the_tails_up_to_the_sequence_number_and_keeps_the_rest_in_order() {
        let users = Users::new(10);
        let ids = ["ann", "bob", "cy", "dee"];
        for seq in 11..=40u64 {
            let id = ids[seq as usize % ids.len()];
            let mut locked = users.lock([id]);
            locked
                .shard(id)
                .tail
                .push_back((seq, event(id, &format!("i{seq}"))));
        }
        users
            .lock_shard(users.shard_of("bob"))
            .forgotten
            .insert("gone".into(), 20);
        users
            .lock_shard(users.shard_of("cy"))
            .forgotten
            .insert("late".into(), 30);

        users.absorbed(25);
        let mut left = Vec::new();
        for i in 0..SHARDS {
            let shard = users.lock_shard(i);
            assert_eq!(shard.tail_from, 25);
            let seqs: Vec<u64> = shard.tail.iter().map(|(s, _)| *s).collect();
            assert!(seqs.is_sorted(), "{seqs:?}");
            for (seq, e) in &shard.tail {
                assert_eq!(e.item_id, format!("i{seq}"));
            }
            left.extend(seqs);
            assert!(!shard.forgotten.contains_key("gone"));
        }
        left.sort_unstable();
        assert_eq!(left, (26..=40).collect::<Vec<_>>());
        assert!(
            users
                .lock_shard(users.shard_of("cy"))
                .forgotten
                .contains_key("late")
        );

        // An older mark changes nothing.
        users.absorbed(20);
        let total: usize = (0..SHARDS).map(|i| users.lock_shard(i).tail.len()).sum();
        assert_eq!(total, 15);
    }
}
