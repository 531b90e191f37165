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
//!
//! # Versions
//! postcard is positional: a struct's bytes are its fields in order, with no names, so a
//! field added to [`UserState`] makes older bytes unreadable as the new type. Records and
//! redb rows therefore say which layout they hold: the records that carry user states
//! have one variant per layout (new variants go at the end of the enum, whose index is
//! the record's first byte), and a user row starts with a tag byte no older row starts
//! with (the first field of the first layout, an `Option`, starts with 0 or 1; the second
//! layout's rows start with [`USER_V2`], the third's with [`USER_V3`], the current ones
//! with [`USER_V4`]). Older layouts are read through their own structs ([`UserStateV1`],
//! [`UserStateV2`]) and converted. Changing [`UserState`] again means a new variant, a
//! new row tag and a conversion here.
//!
//! Layouts: 1 before negative events and exact exclusions; 2 before the fold-in
//! (`UserState::fold`: recent items' weights and the folded-in vector); 3 the state
//! alone; 4 (now) the state after the sequence number of the last record it includes, and
//! since the fold-in is solved at reads, a byte after the state when its solve is due
//! ([`refold_due_byte`], which 4's older readers ignore).
//!
//! # Events are logged as events
//! An events record carries the events and the wall clock of their application (each
//! user's `active_ms`), not the states they made: logging each event's user whole (1.2 KB
//! per event on a fresh 100k demo, against ~70 bytes for the event alone) was most of the
//! log's bytes and of a checkpoint's reading.
//! A checkpoint stores the states it finds in memory instead, each with the sequence number
//! of the last record it includes (the user row's [`USER_V4`] layout), and recovery
//! replays the events after it (`replay`). Older events records carried their users' states
//! (inline, then as rows) and read back as [`Applied::States`].

use std::cell::RefCell;

use recd_core::{
    CompactString, Counters, Event, ExcludedItems, FoldState, Item, SessionParams, SessionVector,
    UserState,
};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::error::{StoreError, StoreResult};

/// The first byte of a user row in the second layout.
pub const USER_V2: u8 = 2;
/// The first byte of a user row in the third layout.
pub const USER_V3: u8 = 3;
/// The first byte of a user row in the current layout: then the sequence number of the
/// last record the state includes (`u64`, little-endian), then the state.
pub const USER_V4: u8 = 4;

/// A user's state as recd wrote it before the fold-in (the second layout): the current
/// fields without `fold`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct UserStateV2 {
    long_term: Option<Vec<f32>>,
    session: Option<SessionVector>,
    counters: Counters,
    recent: Vec<CompactString>,
    purchased: Vec<CompactString>,
    excluded: ExcludedItems,
    last_event_ms: i64,
    active_ms: i64,
}

impl UserStateV2 {
    /// The state in the current layout: no fold-in weights (its recent items count 0
    /// until touched again, see `UserState::apply`) and no folded vector yet.
    pub fn upgrade(self) -> UserState {
        UserState {
            long_term: self.long_term,
            session: self.session,
            counters: self.counters,
            recent: self.recent,
            purchased: self.purchased,
            excluded: self.excluded,
            last_event_ms: self.last_event_ms,
            active_ms: self.active_ms,
            fold: FoldState::default(),
        }
    }
}

/// A user's state as recd wrote it before negative events and exact exclusions (the
/// first layout): the counters of six event kinds, `purchased` a sorted set of ids.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct UserStateV1 {
    long_term: Option<Vec<f32>>,
    session: Option<SessionVector>,
    counters: CountersV1,
    recent: Vec<CompactString>,
    purchased: Vec<CompactString>,
    last_event_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
struct CountersV1 {
    view: u64,
    click: u64,
    dwell: u64,
    add_to_cart: u64,
    purchase: u64,
    rating: u64,
    dwell_seconds: f64,
}

impl UserStateV1 {
    /// The state in the current layout. Its purchases (the only exclusion it recorded
    /// exactly) become its exclusion set; its activity clock starts at `now_ms`, so that
    /// the inactivity TTL counts from the upgrade rather than expiring every old user.
    pub fn upgrade(self, now_ms: i64) -> UserState {
        let params = SessionParams::default();
        let mut excluded = ExcludedItems::default();
        for id in &self.purchased {
            excluded.insert(id, params.excluded_capacity);
        }
        let c = self.counters;
        UserState {
            long_term: self.long_term,
            session: self.session,
            counters: Counters {
                view: c.view,
                click: c.click,
                dwell: c.dwell,
                add_to_cart: c.add_to_cart,
                purchase: c.purchase,
                rating: c.rating,
                dwell_seconds: c.dwell_seconds,
                ..Counters::default()
            },
            recent: self.recent,
            purchased: self.purchased,
            excluded,
            last_event_ms: self.last_event_ms,
            active_ms: now_ms,
            fold: FoldState::default(),
        }
    }
}

/// After a user row's state, when the state's fold-in refold is due
/// ([`UserState::refold_due`]: events changed it since its vector was solved and nothing read
/// it since), one byte: how many batches of events it is due for (1 to 255, saturating).
/// The embedded store solves at the user's next read; a checkpoint stores the state as it
/// is, so that the read after a restart solves as memory would have. postcard reads a
/// value and ignores the bytes after it, so a version that does not know the byte reads
/// the row as it did (and serves the vector of the last solve until the user's next event).
fn refold_due_byte(state: &UserState) -> Option<u8> {
    state
        .refold_due()
        .then(|| u8::try_from(state.fold.due).unwrap_or(u8::MAX))
}

/// A user row of redb in the current layout: `state` as of the record `seq`.
pub fn encode_user(state: &UserState, seq: u64) -> StoreResult<Vec<u8>> {
    let mut row = Vec::with_capacity(512);
    row.push(USER_V4);
    row.extend_from_slice(&seq.to_le_bytes());
    let mut row = postcard::to_extend(state, row)
        .map_err(|e| StoreError::Internal(format!("cannot encode a user: {e}")))?;
    row.extend(refold_due_byte(state));
    Ok(row)
}

/// A user row of redb in any layout, with the sequence number of the last record it
/// includes (0 for the layouts that did not record it); `now_ms` as in
/// [`UserStateV1::upgrade`].
pub fn decode_user(bytes: &[u8], now_ms: i64) -> Result<(UserState, u64), postcard::Error> {
    match bytes.split_first() {
        Some((&USER_V4, rest)) => {
            let (seq, state) = rest
                .split_first_chunk::<8>()
                .ok_or(postcard::Error::DeserializeUnexpectedEnd)?;
            let (mut state, after): (UserState, _) = postcard::take_from_bytes(state)?;
            state.fold.due = after.first().map_or(0, |&batches| u32::from(batches));
            Ok((state, u64::from_le_bytes(*seq)))
        }
        Some((&USER_V3, rest)) => Ok((postcard::from_bytes(rest)?, 0)),
        Some((&USER_V2, rest)) => {
            postcard::from_bytes::<UserStateV2>(rest).map(|v2| (v2.upgrade(), 0))
        }
        _ => postcard::from_bytes::<UserStateV1>(bytes).map(|v1| (v1.upgrade(now_ms), 0)),
    }
}

/// The largest scratch buffer a thread keeps between encodings: a larger one (a big batch
/// of items) is freed after use rather than held by the thread for good.
const SCRATCH_KEPT: usize = 1 << 20;

thread_local! {
    /// The record being encoded ([`OpRef::encode_with`]).
    static RECORD: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on the thread's [`RECORD`] buffer, emptied. The buffer keeps its capacity from
/// one encoding to the next: encoding a record into a fresh `Vec` grew it from nothing,
/// several reallocations and copies per event (BENCHMARKS.md, session 22). The buffer is taken out
/// of the cell while `f` runs, so a nested call gets a fresh one instead of a borrow panic.
fn with_scratch<R>(f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    RECORD.with(|c| {
        let mut buf = c.take();
        buf.clear();
        let out = f(&mut buf);
        if buf.capacity() <= SCRATCH_KEPT {
            c.replace(buf);
        }
        out
    })
}

/// The wire form of a record: every layout ever written, in the order of [`OpRef`].
#[derive(Deserialize)]
enum Wire {
    Items(Vec<Item>),
    DeleteItem(String),
    EventsV1 {
        events: Vec<Event>,
        users: Vec<(String, UserStateV1)>,
        popularity: Vec<(String, f64)>,
    },
    UsersV1(Vec<(String, UserStateV1)>),
    DeleteUser(String),
    EventsV2 {
        events: Vec<Event>,
        users: Vec<(String, UserStateV2)>,
        popularity: Vec<(String, f64)>,
    },
    UsersV2(Vec<(String, UserStateV2)>),
    ExpireUsers(Vec<String>),
    EventsV3 {
        events: Vec<Event>,
        users: Vec<(String, UserState)>,
        popularity: Vec<(String, f64)>,
    },
    Users(Vec<(String, UserState)>),
    EventsV4 {
        events: Vec<Event>,
        users: Vec<(String, ByteBuf)>,
        popularity: Vec<(String, f64)>,
    },
    Events {
        events: Vec<Event>,
        popularity: Vec<(String, f64)>,
        at_ms: i64,
    },
}

/// A logged write, as read back (older layouts converted to the current one).
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Items written whole (upserts, training write-back of vectors).
    Items(Vec<Item>),
    /// An item removed.
    DeleteItem(String),
    /// Events applied: the events (the record's sequence numbers, in order), how their
    /// users' states are recovered, and the log-domain popularity increments of their items.
    Events {
        /// The events.
        events: Vec<Event>,
        /// What the record says about its users' states.
        applied: Applied,
        /// `(item id, log increment)`, added with `log_add`.
        popularity: Vec<(String, f64)>,
    },
    /// Users' states written whole (long-term vectors, rebuilt sessions).
    Users(Vec<(String, UserState)>),
    /// A user forgotten, with their events.
    DeleteUser(String),
    /// Users forgotten after the inactivity TTL; their events stay in the log.
    ExpireUsers(Vec<String>),
}

/// What an events record says about its users' states.
#[derive(Debug, Clone, PartialEq)]
pub enum Applied {
    /// The current layout: the events were applied at this wall-clock time (each user's
    /// `active_ms`); the states are what replaying them makes.
    At(i64),
    /// The older layouts: each user's whole state after the events.
    States(Vec<(String, UserState)>),
}

/// A logged write, as written: borrows what [`Op`] owns. The variants are those of the
/// wire form, in its order; the older layouts are never written.
#[derive(Debug, Serialize)]
pub enum OpRef<'a> {
    /// See [`Op::Items`].
    Items(&'a [Item]),
    /// See [`Op::DeleteItem`].
    DeleteItem(&'a str),
    /// The first layout of events (read only).
    #[serde(skip)]
    #[allow(dead_code)]
    EventsV1,
    /// The first layout of users (read only).
    #[serde(skip)]
    #[allow(dead_code)]
    UsersV1,
    /// See [`Op::DeleteUser`].
    DeleteUser(&'a str),
    /// The second layout of events (read only).
    #[serde(skip)]
    #[allow(dead_code)]
    EventsV2,
    /// The second layout of users (read only).
    #[serde(skip)]
    #[allow(dead_code)]
    UsersV2,
    /// See [`Op::ExpireUsers`].
    ExpireUsers(&'a [String]),
    /// The third layout of events: states inline (read only).
    #[serde(skip)]
    #[allow(dead_code)]
    EventsV3,
    /// See [`Op::Users`].
    Users(Vec<(&'a str, &'a UserState)>),
    /// The fourth layout of events: states as rows (read only).
    #[serde(skip)]
    #[allow(dead_code)]
    EventsV4,
    /// See [`Op::Events`].
    Events {
        /// The events.
        events: &'a [Event],
        /// `(item id, log increment)`.
        popularity: Vec<(&'a str, f64)>,
        /// The wall clock when they were applied ([`Applied::At`]).
        at_ms: i64,
    },
}

impl OpRef<'_> {
    /// How many sequence numbers the record takes: one per event, at least one.
    pub fn span(&self) -> u64 {
        match self {
            OpRef::Events { events, .. } => events.len().max(1) as u64,
            _ => 1,
        }
    }

    /// The payload bytes (the log encodes through [`OpRef::encode_with`]).
    #[cfg(test)]
    pub fn encode(&self) -> StoreResult<Vec<u8>> {
        postcard::to_stdvec(self).map_err(encode_error)
    }

    /// Calls `f` with the payload bytes, encoded into a buffer the thread reuses (see
    /// [`with_scratch`]): the log copies them into its group anyway.
    pub fn encode_with<R>(&self, f: impl FnOnce(&[u8]) -> StoreResult<R>) -> StoreResult<R> {
        with_scratch(|buf| {
            *buf = postcard::to_extend(self, std::mem::take(buf)).map_err(encode_error)?;
            f(buf)
        })
    }
}

fn encode_error(e: postcard::Error) -> StoreError {
    StoreError::Internal(format!("cannot encode a log record: {e}"))
}

impl Op {
    /// How many sequence numbers the record takes (as [`OpRef::span`]).
    pub fn span(&self) -> u64 {
        match self {
            Op::Events { events, .. } => events.len().max(1) as u64,
            _ => 1,
        }
    }

    /// Decodes a payload of any layout; `now_ms` as in [`UserStateV1::upgrade`].
    pub fn decode(bytes: &[u8], now_ms: i64) -> Result<Op, postcard::Error> {
        let upgrade = |users: Vec<(String, UserStateV1)>| {
            users
                .into_iter()
                .map(|(id, s)| (id, s.upgrade(now_ms)))
                .collect::<Vec<_>>()
        };
        let upgrade2 = |users: Vec<(String, UserStateV2)>| {
            users
                .into_iter()
                .map(|(id, s)| (id, s.upgrade()))
                .collect::<Vec<_>>()
        };
        Ok(match postcard::from_bytes(bytes)? {
            Wire::Items(items) => Op::Items(items),
            Wire::DeleteItem(id) => Op::DeleteItem(id),
            Wire::EventsV1 {
                events,
                users,
                popularity,
            } => Op::Events {
                events,
                applied: Applied::States(upgrade(users)),
                popularity,
            },
            Wire::UsersV1(users) => Op::Users(upgrade(users)),
            Wire::DeleteUser(id) => Op::DeleteUser(id),
            Wire::EventsV2 {
                events,
                users,
                popularity,
            } => Op::Events {
                events,
                applied: Applied::States(upgrade2(users)),
                popularity,
            },
            Wire::UsersV2(users) => Op::Users(upgrade2(users)),
            Wire::EventsV3 {
                events,
                users,
                popularity,
            } => Op::Events {
                events,
                applied: Applied::States(users),
                popularity,
            },
            Wire::Users(users) => Op::Users(users),
            Wire::EventsV4 {
                events,
                users,
                popularity,
            } => Op::Events {
                events,
                applied: Applied::States(
                    users
                        .into_iter()
                        .map(|(id, row)| Ok((id, decode_user(&row, now_ms)?.0)))
                        .collect::<Result<_, postcard::Error>>()?,
                ),
                popularity,
            },
            Wire::Events {
                events,
                popularity,
                at_ms,
            } => Op::Events {
                events,
                applied: Applied::At(at_ms),
                popularity,
            },
            Wire::ExpireUsers(ids) => Op::ExpireUsers(ids),
        })
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
        state.excluded.insert("i", 10);
        state.active_ms = 7;
        let items = [item.clone()];
        let events = [event.clone(), event.clone()];
        let gone = ["a".to_string(), "b".to_string()];
        let cases = [
            (OpRef::Items(&items), Op::Items(vec![item])),
            (OpRef::DeleteItem("i"), Op::DeleteItem("i".into())),
            (
                OpRef::Events {
                    events: &events,
                    popularity: vec![("i", 1.5), ("i", -0.5)],
                    at_ms: 1234,
                },
                Op::Events {
                    events: events.to_vec(),
                    applied: Applied::At(1234),
                    popularity: vec![("i".into(), 1.5), ("i".into(), -0.5)],
                },
            ),
            (
                OpRef::Users(vec![("u", &state)]),
                Op::Users(vec![("u".into(), state.clone())]),
            ),
            (OpRef::DeleteUser("u"), Op::DeleteUser("u".into())),
            (OpRef::ExpireUsers(&gone), Op::ExpireUsers(gone.to_vec())),
        ];
        for (written, want) in &cases {
            let bytes = written.encode().unwrap();
            // the log's path, through the thread's reused buffers, writes the same bytes,
            // whatever the previous record on the thread was (the cases go from a large
            // record to small ones and back)
            assert_eq!(written.encode_with(|b| Ok(b.to_vec())).unwrap(), bytes);
            let read = Op::decode(&bytes, 0).unwrap();
            assert_eq!(read.span(), written.span());
            assert_eq!(read, *want);
        }
    }
}

#[cfg(test)]
mod upgrade_tests {
    use std::collections::BTreeSet;

    use super::*;

    /// The first layout as it was written (the type recd had then, field for field).
    #[derive(Serialize)]
    struct WrittenV1 {
        long_term: Option<Vec<f32>>,
        session: Option<SessionVector>,
        counters: [u64; 6],
        dwell_seconds: f64,
        recent: Vec<String>,
        purchased: BTreeSet<String>,
        last_event_ms: i64,
    }

    /// The records as the older layouts wrote them, each variant at the index it had (the
    /// record's first byte); the variants the tests do not write carry nothing.
    #[derive(Serialize)]
    #[allow(dead_code)]
    enum WrittenOp<'a> {
        Items,
        DeleteItem,
        EventsV1 {
            events: &'a [Event],
            users: Vec<(&'a str, &'a WrittenV1)>,
            popularity: Vec<(&'a str, f64)>,
        },
        UsersV1,
        DeleteUser,
        EventsV2,
        UsersV2(Vec<(&'a str, &'a WrittenV2)>),
        ExpireUsers,
        /// The third layout: states inline.
        EventsV3 {
            events: &'a [Event],
            users: Vec<(&'a str, &'a UserState)>,
            popularity: Vec<(&'a str, f64)>,
        },
        Users,
        /// The fourth layout: states as rows of the third layout.
        EventsV4 {
            events: &'a [Event],
            users: Vec<(&'a str, serde_bytes::ByteBuf)>,
            popularity: Vec<(&'a str, f64)>,
        },
    }

    fn v1() -> WrittenV1 {
        WrittenV1 {
            long_term: Some(vec![0.5, 0.5]),
            session: None,
            counters: [1, 2, 3, 4, 5, 6],
            dwell_seconds: 7.5,
            recent: vec!["b".into(), "a".into()],
            purchased: ["a".to_string(), "z".to_string()].into(),
            last_event_ms: 99,
        }
    }

    fn check(u: &UserState) {
        assert_eq!(u.long_term, Some(vec![0.5, 0.5]));
        assert_eq!(
            (u.counters.view, u.counters.rating, u.counters.dislike),
            (1, 6, 0)
        );
        assert_eq!(u.counters.dwell_seconds, 7.5);
        assert_eq!(u.recent, ["b", "a"]);
        assert_eq!(u.purchased, ["a", "z"]);
        assert!(u.excluded.contains("a") && u.excluded.contains("z") && !u.excluded.contains("b"));
        assert_eq!((u.last_event_ms, u.active_ms), (99, 1234));
    }

    #[test]
    fn first_layout_rows_and_records_read_back_upgraded() {
        // a redb row
        let bytes = postcard::to_stdvec(&v1()).unwrap();
        let (state, seq) = decode_user(&bytes, 1234).unwrap();
        check(&state);
        assert_eq!(seq, 0, "the first layout records no sequence number");
        // a log record
        let state = v1();
        let events: [Event; 0] = [];
        let rec = postcard::to_stdvec(&WrittenOp::EventsV1 {
            events: &events,
            users: vec![("u", &state)],
            popularity: vec![("a", 1.0)],
        })
        .unwrap();
        match Op::decode(&rec, 1234).unwrap() {
            Op::Events {
                applied: Applied::States(users),
                ..
            } => check(&users[0].1),
            other => panic!("{other:?}"),
        }
        // and the current layout round-trips, with its sequence number
        let mut now = UserState::default();
        now.excluded.insert("x", 3);
        now.active_ms = 5;
        assert_eq!(
            decode_user(&encode_user(&now, 77).unwrap(), 0).unwrap(),
            (now, 77)
        );
    }

    /// The second layout as it was written: today's fields without `fold`.
    #[derive(Serialize)]
    struct WrittenV2 {
        long_term: Option<Vec<f32>>,
        session: Option<SessionVector>,
        counters: Counters,
        recent: Vec<String>,
        purchased: Vec<String>,
        excluded: ExcludedItems,
        last_event_ms: i64,
        active_ms: i64,
    }

    #[test]
    fn second_layout_rows_and_records_read_back_without_fold_in_state() {
        let mut excluded = ExcludedItems::default();
        excluded.insert("a", 5);
        let v2 = WrittenV2 {
            long_term: Some(vec![0.5, 0.5]),
            session: None,
            counters: Counters {
                view: 3,
                ..Default::default()
            },
            recent: vec!["b".into(), "a".into()],
            purchased: vec!["a".into()],
            excluded,
            last_event_ms: 99,
            active_ms: 7,
        };
        let check = |u: &UserState| {
            assert_eq!((u.counters.view, u.last_event_ms, u.active_ms), (3, 99, 7));
            assert_eq!(u.recent, ["b", "a"]);
            assert!(u.excluded.contains("a"));
            assert_eq!(u.fold, FoldState::default());
        };
        let mut row = vec![USER_V2];
        row.extend(postcard::to_stdvec(&v2).unwrap());
        check(&decode_user(&row, 0).unwrap().0);
        let rec = postcard::to_stdvec(&WrittenOp::UsersV2(vec![("u", &v2)])).unwrap();
        match Op::decode(&rec, 0).unwrap() {
            Op::Users(users) => check(&users[0].1),
            other => panic!("{other:?}"),
        }
        // the current layout keeps the fold-in state
        let mut now = UserState::default();
        now.fold.weights = vec![1.5];
        now.recent = vec!["x".into()];
        now.fold.vector = Some(vec![0.25, -1.0]);
        assert_eq!(
            decode_user(&encode_user(&now, 3).unwrap(), 0).unwrap(),
            (now, 3)
        );
    }

    /// A state whose fold-in refold is due comes back due, for as many batches (up to
    /// 255); a solved one does not. The mark
    /// follows the state, so the row's state reads as it did for a reader that does not
    /// know the mark (this layout's readers before it: `postcard::from_bytes` after the
    /// sequence number). Seen failing with the mark not read back.
    #[test]
    fn a_due_refold_is_kept_in_the_row_where_older_readers_do_not_see_it() {
        let mut state = UserState::default();
        state.fold.weights = vec![1.5];
        state.recent = vec!["x".into()];
        state.fold.vector = Some(vec![0.25, -1.0]);
        let solved = encode_user(&state, 9).unwrap();
        assert!(!decode_user(&solved, 0).unwrap().0.refold_due());
        state.mark_refold_due();
        state.mark_refold_due();
        let due = encode_user(&state, 9).unwrap();
        assert_eq!(due.len(), solved.len() + 1);
        let (back, seq) = decode_user(&due, 0).unwrap();
        assert_eq!(seq, 9);
        assert_eq!(back.fold.due, 2, "two batches");
        assert_eq!(back, state);
        state.fold.due = 1000;
        let (back, _) = decode_user(&encode_user(&state, 9).unwrap(), 0).unwrap();
        assert_eq!(back.fold.due, 255, "saturated");
        let older: UserState = postcard::from_bytes(&due[9..]).unwrap();
        assert!(!older.refold_due());
        assert_eq!(older.fold.vector, state.fold.vector);
        assert_eq!(older.fold.weights, state.fold.weights);
    }

    #[test]
    fn third_and_fourth_layout_events_records_read_back_with_their_users_states() {
        let state = UserState {
            recent: vec!["x".into(), "y".into()],
            fold: FoldState {
                weights: vec![2.0, 1.0],
                fresh: vec![2.0, 1.0],
                vector: Some(vec![0.5, 0.25]),
                hints: Default::default(),
                due: 0,
            },
            active_ms: 11,
            ..Default::default()
        };
        let events: [Event; 0] = [];
        let v3 = postcard::to_stdvec(&WrittenOp::EventsV3 {
            events: &events,
            users: vec![("u", &state)],
            popularity: vec![("x", 2.0)],
        })
        .unwrap();
        let mut row = vec![USER_V3];
        row.extend(postcard::to_stdvec(&state).unwrap());
        let v4 = postcard::to_stdvec(&WrittenOp::EventsV4 {
            events: &events,
            users: vec![("u", serde_bytes::ByteBuf::from(row))],
            popularity: vec![("x", 2.0)],
        })
        .unwrap();
        assert_ne!(v3, v4);
        let want = Op::Events {
            events: vec![],
            applied: Applied::States(vec![("u".into(), state.clone())]),
            popularity: vec![("x".into(), 2.0)],
        };
        assert_eq!(Op::decode(&v3, 0).unwrap(), want);
        assert_eq!(Op::decode(&v4, 0).unwrap(), want);
        // the current record is another variant, which carries no state
        let now = OpRef::Events {
            events: &events,
            popularity: vec![("x", 2.0)],
            at_ms: 5,
        }
        .encode()
        .unwrap();
        assert!(matches!(
            Op::decode(&now, 0).unwrap(),
            Op::Events {
                applied: Applied::At(5),
                ..
            }
        ));
    }
}
