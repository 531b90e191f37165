//! How logged writes change user states: one batch of events (the write path, and the
//! same code again when recovery replays it) and the replay of the log's user records into
//! memory at start-up.
//!
//! Events are logged as events (see `record`), so a crash leaves redb's user rows as of
//! the last checkpoint, each with the sequence number of the last record it includes.
//! [`Replayer`] brings them up to date: every user record of the log that a user's state
//! does not include yet is applied in log order (read from the segments one record at a
//! time, so that a long log tail costs start-up time, not memory), the events through
//! [`apply_batch`] as the write path applied them. The item vectors are the catalog's as recovered (the log
//! holds item writes in order too, but an event and a concurrent upsert are not ordered
//! between the catalog and the log): a session vector replayed across such an upsert uses
//! the item's new vector, as a `rebuild_sessions` would.

use std::collections::hash_map::Entry as MapEntry;
use std::collections::{BTreeSet, HashMap};

use recd_core::{Event, SessionParams, UpdateRule, UserState};

use super::catalog::Catalog;
use super::record::{Applied, Op};
use super::users::Users;

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

/// Applies one batch of `events` to their users' `states` (each present, as it was before
/// the batch): every event in order, each user's activity clock set to `at_ms`, then the
/// fold-in once per user (with [`UpdateRule::FoldIn`]). Returns each event's item slot
/// (`None`: not an item of the catalog).
pub fn apply_batch(
    states: &mut HashMap<&str, UserState>,
    events: &[Event],
    catalog: &Catalog,
    session: &SessionParams,
    at_ms: i64,
) -> Vec<Option<u32>> {
    let mut slots = Vec::with_capacity(events.len());
    for e in events {
        let slot = catalog.slot_of(&e.item_id);
        if let Some(state) = states.get_mut(e.user_id.as_str()) {
            state.apply(e, slot.and_then(|s| catalog.vector_at(s)), session);
            state.active_ms = at_ms;
        }
        slots.push(slot);
    }
    if session.update == UpdateRule::FoldIn {
        let model = catalog.fold_model(&session.fold_in);
        for state in states.values_mut() {
            state.refold(model.as_deref(), |id| catalog.vector_of(id));
        }
    }
    slots
}

/// Replays user records into `users`, in log order ([`Replayer::apply`]): each applies to
/// a user only if the user's state does not include it yet (its sequence number is larger
/// than the state's).
pub struct Replayer<'a> {
    users: &'a Users,
    catalog: &'a Catalog,
    session: &'a SessionParams,
    /// Every user a record applied to, whose state (or absence) is to be stored.
    changed: BTreeSet<String>,
    /// Records applied to at least one user.
    applied: usize,
}

impl<'a> Replayer<'a> {
    /// A replay into `users`, with the item vectors of `catalog`.
    pub fn new(users: &'a Users, catalog: &'a Catalog, session: &'a SessionParams) -> Self {
        Self {
            users,
            catalog,
            session,
            changed: BTreeSet::new(),
            applied: 0,
        }
    }

    /// Applies the record whose last sequence number is `seq`.
    pub fn apply(&mut self, seq: u64, record: UserRecord) {
        let users = self.users;
        let behind = |id: &str| users.with(id, |e| e.is_none_or(|e| e.seq < seq));
        let mut any = false;
        match record {
            UserRecord::Events { events, at_ms } => {
                let mut states: HashMap<&str, UserState> = HashMap::new();
                for e in &events {
                    if let MapEntry::Vacant(v) = states.entry(e.user_id.as_str())
                        && behind(&e.user_id)
                    {
                        v.insert(users.get(&e.user_id).unwrap_or_default());
                    }
                }
                if states.is_empty() {
                    return;
                }
                let mine: Vec<Event> = events
                    .iter()
                    .filter(|e| states.contains_key(e.user_id.as_str()))
                    .cloned()
                    .collect();
                apply_batch(&mut states, &mine, self.catalog, self.session, at_ms);
                for (id, state) in states {
                    users.load(id.to_string(), state, seq);
                    self.changed.insert(id.to_string());
                }
                any = true;
            }
            UserRecord::Set(states) => {
                for (id, state) in states {
                    if behind(&id) {
                        users.load(id.clone(), state, seq);
                        self.changed.insert(id);
                        any = true;
                    }
                }
            }
            UserRecord::Forget(ids) => {
                for id in ids {
                    // A state newer than the deletion is a user who came back after it.
                    if behind(&id) {
                        users.remove(&id);
                        self.changed.insert(id);
                        any = true;
                    }
                }
            }
        }
        self.applied += usize::from(any);
    }

    /// How many records applied to at least one user.
    pub fn records(&self) -> usize {
        self.applied
    }

    /// Every user a record applied to.
    pub fn changed(self) -> BTreeSet<String> {
        self.changed
    }
}
