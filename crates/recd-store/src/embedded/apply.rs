//! How logged writes change user states: one batch of events (the write path, and the
//! same code again when recovery replays it) and the replay of the log's user records into
//! memory at start-up.
//!
//! Events are logged as events (see `record`), so a crash leaves redb's user rows as of
//! the last checkpoint, each with the sequence number of the last record it includes.
//! [`Replayer`] brings them up to date: every user record of the log that a user's state
//! does not include yet is applied in log order (read from the segments one record at a
//! time, so that a long log tail costs start-up time, not memory), the events through
//! [`apply_batch`] as the write path applied them. Users are independent, so the replay
//! runs on one thread per core ([`replay_in_parallel`]), each user's records on one of
//! them. The item vectors are the catalog's as recovered (the log holds item writes in
//! order too, but an event and a concurrent upsert are not ordered between the catalog and
//! the log): a session vector replayed across such an upsert uses the item's new vector,
//! as a `rebuild_sessions` would.

use std::collections::hash_map::Entry as MapEntry;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use recd_core::{Event, SessionParams, UpdateRule, UserState};

use super::catalog::Catalog;
use super::record::{Applied, Op};
use super::users::Users;
use crate::{StoreError, StoreResult};

/// A log record's effect on user states, as recovery replays it.
#[derive(Debug, Clone, PartialEq)]
pub enum UserRecord {
    /// Events applied at `at_ms` (the users' `active_ms`).
    Events {
        /// The events, in order.
        events: Vec<Event>,
        /// The wall clock of their application.
        at_ms: i64,
    },
    /// Users' states written whole.
    Set(Vec<(String, UserState)>),
    /// Users forgotten (deleted, or expired after the inactivity TTL).
    Forget(Vec<String>),
}

impl UserRecord {
    /// What `op` does to user states (`None`: nothing).
    pub fn of(op: Op) -> Option<UserRecord> {
        Some(match op {
            Op::Events {
                events,
                applied: Applied::At(at_ms),
                ..
            } => UserRecord::Events { events, at_ms },
            Op::Events {
                applied: Applied::States(states),
                ..
            }
            | Op::Users(states) => UserRecord::Set(states),
            Op::DeleteUser(id) => UserRecord::Forget(vec![id]),
            Op::ExpireUsers(ids) => UserRecord::Forget(ids),
            Op::Items(_) | Op::DeleteItem(_) => return None,
        })
    }
}

/// Each event's item slot (`None`: not an item of the catalog), as [`apply_batch`] takes
/// them.
pub fn item_slots(events: &[Event], catalog: &Catalog) -> Vec<Option<u32>> {
    events.iter().map(|e| catalog.slot_of(&e.item_id)).collect()
}

/// Applies one batch of `events` to their users' `states` (each present, as it was before
/// the batch): every event in order, each user's activity clock set to `at_ms`, then the
/// fold-in once per user (with [`UpdateRule::FoldIn`]). `slots` are the events' item
/// slots ([`item_slots`]).
pub fn apply_batch(
    states: &mut HashMap<&str, UserState>,
    events: &[Event],
    slots: &[Option<u32>],
    catalog: &Catalog,
    session: &SessionParams,
    at_ms: i64,
) {
    for (e, slot) in events.iter().zip(slots) {
        if let Some(state) = states.get_mut(e.user_id.as_str()) {
            state.apply(e, slot.and_then(|s| catalog.vector_at(s)), session);
            state.active_ms = at_ms;
        }
    }
    if session.update == UpdateRule::FoldIn {
        let model = catalog.fold_model(&session.fold_in);
        for state in states.values_mut() {
            state.refold_hinted(model.as_deref(), |id, slot| catalog.vector_hinted(id, slot));
        }
    }
}

/// Replays the user records `feed` hands over (in log order) into `users` on `workers`
/// threads. Every thread sees every record and applies it to the users of its shards
/// only, so each user's records are applied in order by one thread, exactly as a single
/// [`Replayer`] would; users are independent, so the threads share nothing but the
/// read-only catalog. Returns how many records were handed over and every user a record
/// applied to.
pub fn replay_in_parallel(
    users: &Users,
    catalog: &Catalog,
    session: &SessionParams,
    workers: usize,
    feed: impl FnOnce(&mut dyn FnMut(u64, UserRecord)) -> StoreResult<()>,
) -> StoreResult<(usize, BTreeSet<String>)> {
    let workers = workers.max(1);
    std::thread::scope(|scope| {
        let mut senders = Vec::with_capacity(workers);
        let mut handles = Vec::with_capacity(workers);
        for worker in 0..workers {
            // Bounded: the reader waits for the workers rather than queueing the log.
            let (tx, rx) = std::sync::mpsc::sync_channel::<Arc<(u64, UserRecord)>>(256);
            senders.push(tx);
            handles.push(scope.spawn(move || {
                let mut replayer = Replayer::new(users, catalog, session, (worker, workers));
                for record in rx {
                    replayer.apply(record.0, &record.1);
                }
                replayer.changed()
            }));
        }
        let mut fed = 0usize;
        let fed_ok = feed(&mut |seq, record| {
            fed += 1;
            let record = Arc::new((seq, record));
            for tx in &senders {
                // A worker stops only by panicking, which the join below reports.
                let _ = tx.send(record.clone());
            }
        });
        drop(senders);
        let mut changed = BTreeSet::new();
        for h in handles {
            let mine = h.join().map_err(|_| {
                StoreError::Internal("a thread replaying the write log panicked".into())
            })?;
            changed.extend(mine);
        }
        fed_ok.map(|()| (fed, changed))
    })
}

/// Replays user records into `users`, in log order ([`Replayer::apply`]): each applies to
/// a user only if the user's state does not include it yet (its sequence number is larger
/// than the state's).
pub struct Replayer<'a> {
    users: &'a Users,
    catalog: &'a Catalog,
    session: &'a SessionParams,
    /// `(this one, of how many)`: the replayer applies records to the users whose shard
    /// is this one modulo how many (`(0, 1)`: every user).
    share: (usize, usize),
    /// Every user a record applied to, whose state (or absence) is to be stored.
    changed: BTreeSet<String>,
}

impl<'a> Replayer<'a> {
    /// A replay into `users` (those of `share`), with the item vectors of `catalog`.
    pub fn new(
        users: &'a Users,
        catalog: &'a Catalog,
        session: &'a SessionParams,
        share: (usize, usize),
    ) -> Self {
        Self {
            users,
            catalog,
            session,
            share,
            changed: BTreeSet::new(),
        }
    }

    /// Whether the record `seq` applies to `id`: one of this replayer's users whose state
    /// does not include it yet.
    fn applies(&self, id: &str, seq: u64) -> bool {
        let (me, of) = self.share;
        self.users.shard_of(id) % of == me && self.users.with(id, |e| e.is_none_or(|e| e.seq < seq))
    }

    /// Applies the record whose last sequence number is `seq`.
    pub fn apply(&mut self, seq: u64, record: &UserRecord) {
        let users = self.users;
        match record {
            UserRecord::Events { events, at_ms } => {
                let mut states: HashMap<&str, UserState> = HashMap::new();
                for e in events {
                    if let MapEntry::Vacant(v) = states.entry(e.user_id.as_str())
                        && self.applies(&e.user_id, seq)
                    {
                        v.insert(users.get(&e.user_id).unwrap_or_default());
                    }
                }
                if states.is_empty() {
                    return;
                }
                // The others' events are skipped: their users are not in `states`.
                let slots = item_slots(events, self.catalog);
                apply_batch(
                    &mut states,
                    events,
                    &slots,
                    self.catalog,
                    self.session,
                    *at_ms,
                );
                for (id, state) in states {
                    users.load(id.to_string(), state, seq);
                    self.changed.insert(id.to_string());
                }
            }
            UserRecord::Set(states) => {
                for (id, state) in states {
                    if self.applies(id, seq) {
                        users.load(id.clone(), state.clone(), seq);
                        self.changed.insert(id.clone());
                    }
                }
            }
            UserRecord::Forget(ids) => {
                for id in ids {
                    // A state newer than the deletion is a user who came back after it.
                    if self.applies(id, seq) {
                        users.remove(id);
                        self.changed.insert(id.clone());
                    }
                }
            }
        }
    }

    /// Every user a record applied to.
    pub fn changed(self) -> BTreeSet<String> {
        self.changed
    }
}

#[cfg(test)]
mod tests {
    use recd_core::{EventType, Item, Schema, UpdateRule};

    use super::*;

    fn records() -> Vec<(u64, UserRecord)> {
        let mut out = Vec::new();
        let mut seq = 0;
        for b in 0..40u64 {
            let events: Vec<Event> = (0..7)
                .map(|i| Event {
                    user_id: format!("u{}", (b * 3 + i) % 13),
                    item_id: format!("i{}", (b + i) % 9),
                    kind: [EventType::View, EventType::Click, EventType::Purchase][i as usize % 3],
                    value: None,
                    timestamp_ms: (b * 100 + i) as i64,
                    recommendation_id: None,
                })
                .collect();
            seq += events.len() as u64;
            out.push((
                seq,
                UserRecord::Events {
                    events,
                    at_ms: b as i64,
                },
            ));
            seq += 1;
            out.push((
                seq,
                match b % 3 {
                    0 => UserRecord::Forget(vec![format!("u{}", b % 13), "nobody".into()]),
                    1 => UserRecord::Set(vec![(format!("u{}", b % 5), UserState::default())]),
                    _ => UserRecord::Forget(vec![]),
                },
            ));
        }
        out
    }

    fn states(users: &Users) -> Vec<Option<(UserState, u64)>> {
        (0..13)
            .map(|u| users.with(&format!("u{u}"), |e| e.map(|e| (e.state.clone(), e.seq))))
            .collect()
    }

    /// Each user's records are applied by one thread in log order: the states are exactly
    /// those of a replay on one thread (seen failing with a user's records spread over
    /// threads).
    #[test]
    fn a_parallel_replay_makes_exactly_what_one_thread_makes() {
        let schema = Schema::demo(2);
        let mut catalog = Catalog::new(&schema);
        for i in 0..9u32 {
            catalog.put(
                i,
                Item {
                    id: format!("i{i}"),
                    vector: Some(vec![1.0 + i as f32, 0.5]),
                    fields: Default::default(),
                },
            );
        }
        let session = SessionParams {
            update: UpdateRule::FoldIn,
            ..Default::default()
        };
        let one = Users::new(0);
        let mut replayer = Replayer::new(&one, &catalog, &session, (0, 1));
        for (seq, r) in records() {
            replayer.apply(seq, &r);
        }
        let one_changed = replayer.changed();
        for workers in [2, 3, 8] {
            let many = Users::new(0);
            let (fed, changed) = replay_in_parallel(&many, &catalog, &session, workers, |f| {
                for (seq, r) in records() {
                    f(seq, r);
                }
                Ok(())
            })
            .unwrap();
            assert_eq!(fed, records().len());
            assert_eq!(changed, one_changed, "{workers} workers");
            assert_eq!(states(&many), states(&one), "{workers} workers");
        }
        assert!(states(&one).iter().flatten().count() > 5);
    }
}
