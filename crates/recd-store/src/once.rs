//! Event appends that may be retried: what makes a bulk load's event batches idempotent.
//!
//! A bulk load (`bulk::apply_events`) is a *run* with a random id, and each of its events
//! has a *position*: its index in the run. A batch that fails as unavailable may have been
//! applied in part (on Redis, each user's events are one script, and a timed-out call may
//! have run some of them, or run them after the client gave up). Retried, it must count
//! once. So each user keeps a [`Mark`]: the run and the highest position of it applied to
//! that user. Because a run is applied in order and each user's events of a call apply
//! atomically, the events of a run applied to a user are exactly those at or below the
//! mark: a retry skips them and applies the rest. The mark is one small value per user
//! (bounded), replaced by the next run's.
//!
//! Where the mark lives: on Redis, in the user's hash (`bulk_mark`), read with the state
//! and written by the same compare-and-set script, so the check and the write are one
//! atomic step even against a late execution of the call that timed out. The embedded
//! store applies a whole call in one log record or not at all, within its process (a bulk
//! run dies with the process that loads it): it keeps the marks of its latest runs in
//! memory ([`Marks`]).

use std::collections::{HashMap, VecDeque};

use recd_core::Event;

/// How far a run has been applied to one user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    /// The run's id.
    pub run: u64,
    /// The highest position of the run applied to the user.
    pub position: u64,
}

impl Mark {
    /// The form kept in a Redis user hash: `run:position`, both in hex.
    pub fn encode(&self) -> String {
        format!("{:x}:{:x}", self.run, self.position)
    }

    /// Reads [`Mark::encode`]'s form; `None` for anything else.
    pub fn decode(s: &str) -> Option<Mark> {
        let (run, position) = s.split_once(':')?;
        Some(Mark {
            run: u64::from_str_radix(run, 16).ok()?,
            position: u64::from_str_radix(position, 16).ok()?,
        })
    }

    /// Whether the event at `position` of `run` is already applied under this mark.
    pub fn covers(&self, run: u64, position: u64) -> bool {
        self.run == run && position <= self.position
    }
}

/// The events of one call, each with its position in the run.
#[derive(Debug, Clone, Copy)]
pub struct Positioned<'a> {
    /// The run.
    pub run: u64,
    /// The position of `events[0]`; event `i` is at `first + i`.
    pub first: u64,
    /// The events, in run order.
    pub events: &'a [Event],
}

impl<'a> Positioned<'a> {
    /// The events with their positions.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &'a Event)> + '_ {
        let first = self.first;
        self.events
            .iter()
            .enumerate()
            .map(move |(i, e)| (first + i as u64, e))
    }

    /// The events (with positions) that `mark_of` each user does not cover, in order.
    pub fn unapplied(&self, mark_of: impl Fn(&str) -> Option<Mark>) -> Vec<(u64, &'a Event)> {
        self.iter()
            .filter(|(p, e)| !mark_of(&e.user_id).is_some_and(|m| m.covers(self.run, *p)))
            .collect()
    }
}

/// The embedded store's marks: those of its latest [`Marks::RUNS`] runs, in memory.
#[derive(Debug, Default)]
pub struct Marks {
    /// Run id → (user → highest position applied), oldest run first.
    runs: VecDeque<(u64, HashMap<String, u64>)>,
}

impl Marks {
    /// Runs remembered at once (loads running side by side); an older one is forgotten.
    pub const RUNS: usize = 4;

    /// The mark of `user` for `run`.
    pub fn get(&self, run: u64, user: &str) -> Option<Mark> {
        let (_, users) = self.runs.iter().find(|(r, _)| *r == run)?;
        users.get(user).map(|&position| Mark { run, position })
    }

    /// Records that `events` (with their positions) of `run` are applied.
    pub fn applied<'e>(&mut self, run: u64, events: impl IntoIterator<Item = (u64, &'e Event)>) {
        let at = match self.runs.iter().position(|(r, _)| *r == run) {
            Some(at) => at,
            None => {
                if self.runs.len() >= Self::RUNS {
                    self.runs.pop_front();
                }
                self.runs.push_back((run, HashMap::new()));
                self.runs.len() - 1
            }
        };
        let users = &mut self.runs[at].1;
        for (p, e) in events {
            let m = users.entry(e.user_id.clone()).or_insert(p);
            *m = (*m).max(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use recd_core::EventType;

    fn ev(user: &str) -> Event {
        Event {
            user_id: user.into(),
            item_id: "i".into(),
            kind: EventType::Click,
            value: None,
            timestamp_ms: 1,
            recommendation_id: None,
        }
    }

    #[test]
    fn marks_round_trip_and_cover_only_their_run() {
        let m = Mark {
            run: 0xdead_beef,
            position: 41,
        };
        assert_eq!(Mark::decode(&m.encode()), Some(m));
        assert_eq!(Mark::decode("nope"), None);
        assert_eq!(Mark::decode("1:zz"), None);
        assert!(m.covers(0xdead_beef, 41) && m.covers(0xdead_beef, 0));
        assert!(!m.covers(0xdead_beef, 42));
        assert!(!m.covers(7, 0), "another run is never covered");
    }

    #[test]
    fn a_retry_skips_what_each_user_already_has() {
        let events = [ev("a"), ev("b"), ev("a"), ev("c")];
        let call = Positioned {
            run: 9,
            first: 100,
            events: &events,
        };
        let mut marks = Marks::default();
        // The first try applied a's and c's events, not b's.
        marks.applied(9, call.iter().filter(|(_, e)| e.user_id != "b"));
        let left = call.unapplied(|u| marks.get(9, u));
        assert_eq!(
            left.iter()
                .map(|(p, e)| (*p, e.user_id.as_str()))
                .collect::<Vec<_>>(),
            vec![(101, "b")]
        );
        marks.applied(9, left);
        assert!(call.unapplied(|u| marks.get(9, u)).is_empty());
        // Another run starts from nothing.
        assert_eq!(call.unapplied(|u| marks.get(10, u)).len(), 4);
    }

    #[test]
    fn only_the_latest_runs_are_kept() {
        let events = [ev("a")];
        let mut marks = Marks::default();
        for run in 0..=Marks::RUNS as u64 {
            marks.applied(run, [(0, &events[0])]);
        }
        assert_eq!(marks.get(0, "a"), None, "the oldest run is forgotten");
        assert!(marks.get(Marks::RUNS as u64, "a").is_some());
        assert_eq!(marks.runs.len(), Marks::RUNS);
    }
}
