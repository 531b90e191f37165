//! What one logged write says: the payload of a log record ([`Op`] to read, [`OpRef`] to
//! write without copying).
//!
//! Records are *physical* wherever the order of concurrent writers matters: a user's whole
//! state after the write, whole items. Replaying them needs no item vector or model setting
//! of the moment they were written, and the log's order per user (or per item) is the
//! order they were published in memory, because each is appended under that user's (or
//! the catalog's) lock. Popularity is the exception: it is logged as increments, because
//! log-domain addition is commutative, so events of one item need not be ordered against
//! each other and no lock is held across them.
//!
//! A record takes one sequence number per event it carries (at least one), so that events
//! keep the numbers they are stored under in redb (`EVENTS`), as before the log existed.

use recd_core::{Event, Item, UserState};
use serde::{Deserialize, Serialize};

use crate::error::{StoreError, StoreResult};

/// A logged write, as read back. The variants and fields must stay in the order of
/// [`OpRef`]: both encode to the same bytes (postcard writes a slice as a `Vec`, a `&str`
/// as a `String`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub enum Op {
    /// Items written whole (upserts, training write-back of vectors).
    Items(Vec<Item>),
    /// An item removed.
    DeleteItem(String),
    /// Events applied: the events (the record's sequence numbers, in order), the states of
    /// their users after them, and the log-domain popularity increments of their items.
    Events {
        /// The events.
        events: Vec<Event>,
        /// Each user's whole state after the events.
        users: Vec<(String, UserState)>,
        /// `(item id, log increment)`, added with `log_add`.
        popularity: Vec<(String, f64)>,
    },
    /// Users' states written whole (long-term vectors, rebuilt sessions).
    Users(Vec<(String, UserState)>),
    /// A user forgotten, with their events.
    DeleteUser(String),
}

/// A logged write, as written: borrows what [`Op`] owns.
#[derive(Debug, Serialize)]
pub enum OpRef<'a> {
    /// See [`Op::Items`].
    Items(&'a [Item]),
    /// See [`Op::DeleteItem`].
    DeleteItem(&'a str),
    /// See [`Op::Events`].
    Events {
        /// The events.
        events: &'a [Event],
        /// Each user's whole state after the events.
        users: Vec<(&'a str, &'a UserState)>,
        /// `(item id, log increment)`.
        popularity: Vec<(&'a str, f64)>,
    },
    /// See [`Op::Users`].
    Users(Vec<(&'a str, &'a UserState)>),
    /// See [`Op::DeleteUser`].
    DeleteUser(&'a str),
}

impl OpRef<'_> {
    /// How many sequence numbers the record takes: one per event, at least one.
    pub fn span(&self) -> u64 {
        match self {
            OpRef::Events { events, .. } => events.len().max(1) as u64,
            _ => 1,
        }
    }

    /// The payload bytes.
    pub fn encode(&self) -> StoreResult<Vec<u8>> {
        postcard::to_stdvec(self)
            .map_err(|e| StoreError::Internal(format!("cannot encode a log record: {e}")))
    }
}

impl Op {
    /// How many sequence numbers the record takes (as [`OpRef::span`]).
    pub fn span(&self) -> u64 {
        match self {
            Op::Events { events, .. } => events.len().max(1) as u64,
            _ => 1,
        }
    }

    /// Decodes a payload.
    pub fn decode(bytes: &[u8]) -> Result<Op, postcard::Error> {
        postcard::from_bytes(bytes)
    }
}

#[cfg(test)]
mod tests {
    use recd_core::EventType;

    use super::*;

    #[test]
    fn every_op_reads_back_as_written() {
        let item = Item {
            id: "i".into(),
            vector: Some(vec![1.0, 2.0]),
            fields: Default::default(),
        };
        let event = Event {
            user_id: "u".into(),
            item_id: "i".into(),
            kind: EventType::Dwell,
            value: Some(3.0),
            timestamp_ms: 42,
            recommendation_id: Some("r".into()),
        };
        let mut state = UserState::default();
        state.apply(&event, Some(&[1.0, 0.0]), &Default::default());
        let items = [item.clone()];
        let events = [event.clone(), event.clone()];
        let cases = [
            (OpRef::Items(&items), Op::Items(vec![item])),
            (OpRef::DeleteItem("i"), Op::DeleteItem("i".into())),
            (
                OpRef::Events {
                    events: &events,
                    users: vec![("u", &state)],
                    popularity: vec![("i", 1.5), ("i", -0.5)],
                },
                Op::Events {
                    events: events.to_vec(),
                    users: vec![("u".into(), state.clone())],
                    popularity: vec![("i".into(), 1.5), ("i".into(), -0.5)],
                },
            ),
            (
                OpRef::Users(vec![("u", &state)]),
                Op::Users(vec![("u".into(), state.clone())]),
            ),
            (OpRef::DeleteUser("u"), Op::DeleteUser("u".into())),
        ];
        for (written, want) in cases {
            let bytes = written.encode().unwrap();
            let read = Op::decode(&bytes).unwrap();
            assert_eq!(read.span(), written.span());
            assert_eq!(read, want);
        }
    }
}
