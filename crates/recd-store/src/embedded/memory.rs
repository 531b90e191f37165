//! The event log of an in-memory store (tests, offline replay): events by sequence number
//! and, per user, their sequence numbers, so that forgetting a user or reading one user's
//! events costs that user's events.

use std::collections::{BTreeMap, HashMap};

use recd_core::Event;

use super::log::Ticket;
use super::record::OpRef;

/// Events in log order, indexed by user.
#[derive(Debug)]
pub struct MemoryLog {
    next: u64,
    events: BTreeMap<u64, Event>,
    by_user: HashMap<String, Vec<u64>>,
}

impl Default for MemoryLog {
    fn default() -> Self {
        Self {
            next: 1,
            events: BTreeMap::new(),
            by_user: HashMap::new(),
        }
    }
}

impl MemoryLog {
    /// Takes a record's events (and a user's deletion), as the durable log would.
    pub fn append(&mut self, op: &OpRef<'_>) -> Ticket {
        let first = self.next;
        self.next += op.span();
        match op {
            OpRef::Events { events, .. } => {
                for (i, e) in events.iter().enumerate() {
                    let seq = first + i as u64;
                    self.events.insert(seq, e.clone());
                    self.by_user.entry(e.user_id.clone()).or_default().push(seq);
                }
            }
            OpRef::DeleteUser(id) => {
                for seq in self.by_user.remove(*id).unwrap_or_default() {
                    self.events.remove(&seq);
                }
            }
            OpRef::Items(_)
            | OpRef::DeleteItem(_)
            | OpRef::Users(_)
            | OpRef::ExpireUsers(_)
            | OpRef::EventsV1
            | OpRef::UsersV1
            | OpRef::EventsV2
            | OpRef::UsersV2
            | OpRef::EventsV3
            | OpRef::EventsV4 => {}
        }
        Ticket {
            first,
            ack: None,
            lead: None,
        }
    }

    /// Every event, in order.
    pub fn events(&self) -> Vec<Event> {
        self.events.values().cloned().collect()
    }

    /// Up to `take` events after the sequence number `after`, in order.
    pub fn page(&self, after: u64, take: usize) -> Vec<(u64, Event)> {
        self.events
            .range(after.saturating_add(1)..)
            .take(take)
            .map(|(seq, e)| (*seq, e.clone()))
            .collect()
    }

    /// How many events there are.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// `user`'s events, in order.
    pub fn user_events(&self, user: &str) -> Vec<Event> {
        self.by_user.get(user).map_or_else(Vec::new, |seqs| {
            seqs.iter()
                .filter_map(|s| self.events.get(s).cloned())
                .collect()
        })
    }
}
