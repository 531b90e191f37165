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
/// the batch): every event in order, and each user's activity clock set to `at_ms`. With
/// [`UpdateRule::FoldIn`] the users' fold-in vectors are left due
/// ([`UserState::mark_refold_due`]), to be solved by [`refold_if_due`] at the user's next
/// read (a checkpoint stores the state due, as it is). `slots` are the events' item slots
/// ([`item_slots`]).
///
/// The solve was most of an event's CPU at steady state (~27 % of the request workers',
/// perf, 200 recent items at k = 64), and it ran under the user's shard lock. Solved at
/// the next read instead, a user's events between two reads cost one solve, and an event
/// none: at saturation with events alone, 1.17-1.80x the events, the p50 0.54-0.83x and the
/// p99 lower in 5 of 6 pairs (BENCHMARKS.md, session 37).
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
        for state in states.values_mut() {
            state.mark_refold_due();
        }
    }
}

/// Solves `state`'s fold-in vector if events left it due ([`apply_batch`]) and the rule
/// is still [`UpdateRule::FoldIn`]; returns whether it solved. What the vector would have
/// been had each batch been solved as it was applied, when each batch is read before the
/// next: the solve starts from the vector last solved either way.
pub fn refold_if_due(state: &mut UserState, catalog: &Catalog, session: &SessionParams) -> bool {
    if !state.refold_due() {
        return false;
    }
    if session.update != UpdateRule::FoldIn {
        // Only that rule leaves a refold due; nothing is left to solve under another.
        state.fold.due = 0;
        return false;
    }
    let model = catalog.fold_model(&session.fold_in);
    state.refold_hinted(model.as_deref(), |id, slot| catalog.vector_hinted(id, slot));
    true
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

    fn catalog_of_nine() -> Catalog {
        let mut catalog = Catalog::new(&Schema::demo(2));
        for i in 0..9u32 {
            catalog.put(
                i,
                Item {
                    id: format!("i{i}"),
                    vector: Some(vec![1.0 + i as f32, 0.5 - i as f32 / 4.0]),
                    fields: Default::default(),
                },
            );
        }
        catalog
    }

    fn clicks(user: &str, items: &[u32], at: i64) -> Vec<Event> {
        items
            .iter()
            .enumerate()
            .map(|(n, i)| Event {
                user_id: user.into(),
                item_id: format!("i{i}"),
                kind: EventType::Click,
                value: None,
                timestamp_ms: at + n as i64,
                recommendation_id: None,
            })
            .collect()
    }

    /// A batch leaves its user's refold due instead of solving it, and solving it later
    /// (before the next batch) gives the vector the write path solved right after the
    /// batch, bit for bit, from the first events and from a solved vector alike; it is
    /// solved once; a burst read once takes CG steps for each of its batches. Seen failing
    /// with the exact solve in place of CG from the last vector (batch 1: the last bit of
    /// a component), and with one batch's steps for the burst.
    #[test]
    fn a_batch_leaves_its_refold_due_and_solving_it_later_is_solving_it_then() {
        let catalog = catalog_of_nine();
        let session = SessionParams {
            update: UpdateRule::FoldIn,
            ..Default::default()
        };
        let model = catalog.fold_model(&session.fold_in);
        let mut eager = UserState::default();
        let mut lazy = UserState::default();
        for (b, items) in [&[1u32, 2, 3][..], &[4, 1], &[7]].into_iter().enumerate() {
            let events = clicks("u", items, 100 * b as i64);
            let slots = item_slots(&events, &catalog);
            let mut batch = HashMap::from([("u", lazy)]);
            apply_batch(&mut batch, &events, &slots, &catalog, &session, 1);
            lazy = batch.remove("u").unwrap_or_default();
            assert!(lazy.refold_due(), "batch {b}");
            // What the write path did before: the events, then the solve at once.
            for e in &events {
                eager.apply(e, catalog.vector_of(&e.item_id), &session);
            }
            eager.active_ms = 1;
            eager.refold(model.as_deref(), |id| catalog.vector_of(id));

            assert_ne!(lazy.fold.vector, eager.fold.vector, "not solved yet");
            assert!(refold_if_due(&mut lazy, &catalog, &session));
            assert!(!lazy.refold_due());
            assert!(eager.fold.vector.is_some());
            assert_eq!(lazy.fold.vector, eager.fold.vector, "batch {b}");
            assert_eq!(lazy, eager, "batch {b}");
            assert!(!refold_if_due(&mut lazy, &catalog, &session), "solved once");
        }

        // A burst: two batches read once take a CG step per batch (one each here, so two:
        // k, where CG has converged to the exact solve).
        let one_step = SessionParams {
            update: UpdateRule::FoldIn,
            fold_in: recd_core::FoldInParams {
                cg_steps: 1,
                ..Default::default()
            },
            ..Default::default()
        };
        let mut burst = lazy.clone();
        for (b, items) in [&[5u32, 6][..], &[8]].into_iter().enumerate() {
            let events = clicks("u", items, 1_000 + 100 * b as i64);
            let slots = item_slots(&events, &catalog);
            let mut batch = HashMap::from([("u", burst)]);
            apply_batch(&mut batch, &events, &slots, &catalog, &one_step, 2);
            burst = batch.remove("u").unwrap_or_default();
        }
        assert_eq!(burst.fold.due, 2);
        let mut exact = burst.clone();
        exact.refold_exact(model.as_deref(), |id| catalog.vector_of(id));
        assert!(refold_if_due(&mut burst, &catalog, &one_step));
        let (got, want) = (burst.fold.vector.unwrap(), exact.fold.vector.unwrap());
        for (x, y) in got.iter().zip(&want) {
            assert!(
                (x - y).abs() < 1e-4 * y.abs().max(1.0),
                "{got:?} vs {want:?}"
            );
        }

        // Under another rule nothing is left due, and a refold found due is dropped
        // unsolved.
        let decayed = SessionParams {
            update: UpdateRule::DecayedAverage,
            ..Default::default()
        };
        let events = clicks("v", &[2, 5], 0);
        let mut batch = HashMap::from([("v", UserState::default())]);
        apply_batch(
            &mut batch,
            &events,
            &item_slots(&events, &catalog),
            &catalog,
            &decayed,
            1,
        );
        assert!(!batch["v"].refold_due());
        let mut due = lazy.clone();
        due.mark_refold_due();
        assert!(!refold_if_due(&mut due, &catalog, &decayed));
        assert!(!due.refold_due());
        assert_eq!(due.fold.vector, lazy.fold.vector);
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
