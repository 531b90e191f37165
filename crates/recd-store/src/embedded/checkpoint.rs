//! Checkpoints: redb absorbs the log, in the background, and the absorbed segments go.
//!
//! A checkpoint reads the log records written since the last one (closed segments whole,
//! the active one up to what the writer has written), applies them to redb in one durable
//! transaction that also stores the last sequence number applied, and only then deletes
//! the closed segments whose records every user row includes too. A crash before the
//! commit leaves redb as it was and the log whole; a crash after it leaves records redb
//! already has, which the next reader skips by their sequence number. Either way every
//! logged record ends up applied exactly once.
//!
//! The same commit stores users' states from memory: every changed user for a checkpoint
//! on demand ([`Checkpointer::run`]) and at shutdown, a share of them in the background
//! (`dirty`, bounded by `replay_records`), so that a restart replays the rest from the log.
//!
//! One background thread checkpoints every `checkpoint_seconds`, or sooner when
//! `checkpoint_bytes` were logged; readers of the event log, which lives in redb, absorb
//! it first ([`Checkpointer::run_for_events`]). Start-up runs [`recover`]: the
//! same absorption over every segment found, truncating a torn tail instead of failing.
//!
//! # Idle cycles only
//! With `checkpoint_idle` (the default), the background thread runs in Linux's idle
//! scheduling class: a request that wakes up takes its core at once. The class cannot be
//! left again without privilege, so the thread never stands in anyone's way instead:
//! - a background checkpoint gives way (drops its uncommitted transaction, as a failed one)
//!   as soon as another caller waits for the checkpoint lock: a reader of the event log, a
//!   checkpoint on demand, shutdown;
//! - a second thread at `checkpoint_nice` (`recd-catchup`) runs the checkpoint
//!   itself whenever none has finished for two intervals, which is what keeps the log and
//!   the replay bounded when the cores have no idle cycles for long; it then runs the next
//!   [`BUSY_RUNS`] checkpoints too before the idle thread tries again, since an idle
//!   checkpoint that gives way has done work for nothing (under sustained saturation that
//!   waste cost ~6 % of the events' throughput, BENCHMARKS.md session 31).

use std::collections::{BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::apply::UserRecord;
use super::dirty::{Dirty, Share};
use super::durable::{Durable, UserRows};
use super::faults::{CheckpointStop, Faults};
use super::log::Wal;
use super::priority;
use super::record::Op;
use super::segment;
use super::users::Users;
use crate::error::{StoreError, StoreResult};

/// Wakes the checkpoint thread early (the log outgrew `checkpoint_bytes`) or stops it.
#[derive(Debug, Default)]
pub struct Trigger {
    state: Mutex<(bool, bool)>,
    cv: Condvar,
}

impl Trigger {
    /// Asks for a checkpoint now.
    pub fn fire(&self) {
        let mut s = self.state.lock();
        if !s.0 {
            s.0 = true;
            self.cv.notify_one();
        }
    }

    fn stop(&self) {
        self.state.lock().1 = true;
        self.cv.notify_one();
    }

    /// Waits for a request or `timeout`; false once stopped.
    fn wait(&self, timeout: Duration) -> bool {
        let mut s = self.state.lock();
        if !s.0 && !s.1 {
            self.cv.wait_for(&mut s, timeout);
        }
        s.0 = false;
        !s.1
    }
}

/// Where the last checkpoint stopped reading.
#[derive(Debug, Clone, Copy)]
struct Cursor {
    /// Every record up to this sequence number is in redb.
    applied: u64,
    /// The segment it read last (the then active one) and the offset it read up to.
    segment: u64,
    offset: u64,
}

/// How the background thread runs.
#[derive(Debug, Clone, Copy)]
pub struct Background {
    /// The longest time between two checkpoints while anything is written.
    pub interval: Duration,
    /// The thread's nice value ([`priority::lower_current_thread`]).
    pub nice: i32,
    /// Whether the background checkpoints run in the idle scheduling class
    /// ([`priority::idle_current_thread`]; module doc).
    pub idle: bool,
    /// About the most log records a restart replays into user states: the background
    /// stores a share of the changed users' rows sized for it ([`Share::Due`]).
    pub replay_records: u64,
}

/// Absorbs the log into redb.
pub struct Checkpointer {
    wal: Arc<Wal>,
    durable: Arc<Durable>,
    faults: Arc<Faults>,
    /// Serializes checkpoints; holds where the last one stopped.
    cursor: Mutex<Cursor>,
    trigger: Arc<Trigger>,
    background: Background,
    /// The in-memory users: a checkpoint stores the states of those its records touched
    /// as they are here ([`UserRows::Memory`]), and tells them the new applied sequence
    /// number after its commit (to drop their copies of what redb now has).
    users: Arc<Users>,
    /// The changed users whose rows are not stored yet (locked after `cursor`).
    dirty: Mutex<Dirty>,
    /// The `USERS_APPLIED` mark of the last commit (recovery leaves every user stored).
    users_mark: AtomicU64,
    /// Closed segments absorbed into redb but kept for the users not stored yet:
    /// `(number, last sequence number it holds)`, in order (locked after `cursor`).
    kept: Mutex<VecDeque<(u64, u64)>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// The catch-up thread (module doc), when the background one runs idle.
    catchup: Mutex<Option<JoinHandle<()>>>,
    /// Wakes the catch-up thread only to stop it.
    catchup_stop: Trigger,
    /// Callers other than the background waiting for `cursor` now: an idle background
    /// checkpoint gives way to them.
    waiting: AtomicUsize,
    /// Set by [`Checkpointer::stop`]: an idle background checkpoint gives way to shutdown.
    stopping: AtomicBool,
    /// When a checkpoint last finished, or found nothing to do.
    caught_up: Mutex<Instant>,
    /// Background checkpoints that gave way to another caller.
    gave_way: AtomicU64,
    /// Checkpoints the catch-up thread ran.
    caught_up_runs: AtomicU64,
    /// Checkpoints the catch-up thread still runs itself ([`BUSY_RUNS`] after a takeover);
    /// meanwhile the idle background does not start any.
    busy_runs: AtomicU32,
    /// How long each checkpoint that absorbed something took, until
    /// [`Checkpointer::take_durations`] takes them (the newest [`KEPT_DURATIONS`]).
    durations: Mutex<VecDeque<Duration>>,
}

/// How many checkpoints the catch-up thread runs itself after it had to take one over.
pub const BUSY_RUNS: u32 = 4;

/// Most checkpoint durations kept for [`Checkpointer::take_durations`]: with nobody scraping
/// the metrics, older ones are dropped.
const KEPT_DURATIONS: usize = 1024;

impl std::fmt::Debug for Checkpointer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpointer")
            .field("cursor", &*self.cursor.lock())
            .field("background", &self.background)
            .finish_non_exhaustive()
    }
}

impl Checkpointer {
    /// A checkpointer of `wal` into `durable`, which holds everything up to `applied`.
    pub fn new(
        wal: Arc<Wal>,
        durable: Arc<Durable>,
        faults: Arc<Faults>,
        trigger: Arc<Trigger>,
        background: Background,
        applied: u64,
        users: Arc<Users>,
    ) -> Arc<Checkpointer> {
        Arc::new(Checkpointer {
            wal,
            durable,
            faults,
            cursor: Mutex::new(Cursor {
                applied,
                segment: 0,
                offset: 0,
            }),
            trigger,
            background,
            users,
            dirty: Mutex::new(Dirty::default()),
            users_mark: AtomicU64::new(applied),
            kept: Mutex::new(VecDeque::new()),
            thread: Mutex::new(None),
            catchup: Mutex::new(None),
            catchup_stop: Trigger::default(),
            waiting: AtomicUsize::new(0),
            stopping: AtomicBool::new(false),
            caught_up: Mutex::new(Instant::now()),
            gave_way: AtomicU64::new(0),
            caught_up_runs: AtomicU64::new(0),
            busy_runs: AtomicU32::new(0),
            durations: Mutex::new(VecDeque::new()),
        })
    }

    /// Starts the background thread (and, when it runs idle, the catch-up thread); returns
    /// once they run at their priorities.
    pub fn start(self: &Arc<Self>) -> StoreResult<()> {
        let me = self.clone();
        let (started, running) = std::sync::mpsc::sync_channel(1);
        let t = std::thread::Builder::new()
            .name("recd-checkpoint".into())
            .spawn(move || {
                priority::lower_current_thread(me.background.nice, "recd-checkpoint");
                let idle = me.background.idle && priority::idle_current_thread("recd-checkpoint");
                // The receiver waits below; it only goes away if `start` unwound.
                let _ = started.send(idle);
                me.background(idle)
            })
            .map_err(|e| {
                StoreError::Unavailable(format!("cannot start the checkpoint thread: {e}"))
            })?;
        // Err only if the thread died before sending, i.e. panicked in the lines above.
        let idle = running.recv().unwrap_or(false);
        *self.thread.lock() = Some(t);
        if idle {
            let me = self.clone();
            let (started, running) = std::sync::mpsc::sync_channel(1);
            let t = std::thread::Builder::new()
                .name("recd-catchup".into())
                .spawn(move || {
                    priority::lower_current_thread(me.background.nice, "recd-catchup");
                    let _ = started.send(());
                    me.catch_up()
                });
            match t {
                Ok(t) => {
                    let _ = running.recv();
                    *self.catchup.lock() = Some(t);
                }
                Err(e) => {
                    self.stop();
                    return Err(StoreError::Unavailable(format!(
                        "cannot start the checkpoint catch-up thread: {e}"
                    )));
                }
            }
        }
        Ok(())
    }

    /// Stops the background threads (an idle background checkpoint gives way; a
    /// checkpoint at normal priority is finished first).
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Relaxed);
        self.trigger.stop();
        self.catchup_stop.stop();
        for t in [self.thread.lock().take(), self.catchup.lock().take()]
            .into_iter()
            .flatten()
        {
            if t.join().is_err() {
                tracing::error!("a checkpoint thread panicked");
            }
        }
    }

    fn background(&self, idle: bool) {
        let share = Share::Due {
            bound: self.background.replay_records,
        };
        while self.trigger.wait(self.background.interval) {
            if idle && self.busy_runs.load(Ordering::Acquire) > 0 {
                // The catch-up thread runs this one: no idle cycles lately.
                continue;
            }
            match self.absorb(None, share, idle) {
                Ok(Some(_)) => {}
                Ok(None) => tracing::debug!("the background checkpoint gave way"),
                Err(e) => {
                    tracing::error!(cause = %e, "checkpoint failed; the log keeps every write and the next checkpoint retries")
                }
            }
        }
    }

    /// The catch-up thread: runs the checkpoint at its own priority whenever none has
    /// finished for two intervals (the idle background found no cycles to run in), and
    /// then the next [`BUSY_RUNS`] ones.
    fn catch_up(&self) {
        let overdue = self.background.interval * 2;
        while self.catchup_stop.wait(self.background.interval) {
            let busy = self.busy_runs.load(Ordering::Acquire);
            let taking_over = busy == 0 && self.caught_up.lock().elapsed() >= overdue;
            if busy == 0 && !taking_over {
                continue;
            }
            match self.run_for_events(None) {
                Ok(_) => {
                    let left = if taking_over { BUSY_RUNS } else { busy - 1 };
                    self.busy_runs.store(left, Ordering::Release);
                    self.caught_up_runs.fetch_add(1, Ordering::Release);
                }
                Err(e) => {
                    tracing::error!(cause = %e, "catch-up checkpoint failed; the log keeps every write and the next checkpoint retries")
                }
            }
        }
    }

    /// Whether an idle background checkpoint should give way now.
    fn wanted_elsewhere(&self) -> bool {
        self.waiting.load(Ordering::Relaxed) > 0 || self.stopping.load(Ordering::Relaxed)
    }

    /// Background checkpoints that gave way, and checkpoints the catch-up thread ran.
    pub fn handovers(&self) -> (u64, u64) {
        (
            self.gave_way.load(Ordering::Relaxed),
            self.caught_up_runs.load(Ordering::Relaxed),
        )
    }

    /// Runs a checkpoint that stores every changed user (a restart after it replays
    /// nothing it absorbed); with `upto`, first waits until the log has written that
    /// sequence number, so that the checkpoint covers it. Returns the applied sequence
    /// number.
    pub fn run(&self, upto: Option<u64>) -> StoreResult<u64> {
        self.absorb_now(upto, Share::All)
    }

    /// Runs a checkpoint that stores only the background's share of the changed users:
    /// the background's own, and readers' that need the events in redb, not the user rows.
    pub fn run_for_events(&self, upto: Option<u64>) -> StoreResult<u64> {
        self.absorb_now(
            upto,
            Share::Due {
                bound: self.background.replay_records,
            },
        )
    }

    /// A checkpoint for a caller that must not wait for idle cycles: an idle background
    /// checkpoint holding the lock gives way to it.
    fn absorb_now(&self, upto: Option<u64>, share: Share) -> StoreResult<u64> {
        match self.absorb(upto, share, false) {
            Ok(Some(applied)) => Ok(applied),
            // Only a checkpoint that may give way does.
            Ok(None) => Err(StoreError::Internal("a checkpoint gave way".into())),
            Err(e) => Err(e),
        }
    }

    /// One checkpoint; `None` if it gave way (`give_way`: it is an idle background one,
    /// and another caller wants the lock).
    fn absorb(&self, upto: Option<u64>, share: Share, give_way: bool) -> StoreResult<Option<u64>> {
        let mut cur = if give_way {
            self.cursor.lock()
        } else {
            let _waiting = Waiting::new(&self.waiting);
            self.cursor.lock()
        };
        if give_way && self.wanted_elsewhere() {
            self.gave_way.fetch_add(1, Ordering::Relaxed);
            return Ok(None);
        }
        let mut dirty = self.dirty.lock();
        // `All` has users to store even with nothing new to absorb.
        let users_left = share == Share::All && !dirty.is_empty();
        if let Some(seq) = upto {
            if seq <= cur.applied && !users_left {
                return Ok(Some(cur.applied));
            }
            self.wal.wait_written(seq)?;
        }
        let view = self.wal.view();
        // Nothing to absorb, no segment to delete, no user to store.
        let nothing_new =
            view.written <= cur.applied && view.closed.len() <= self.kept.lock().len();
        if nothing_new && !users_left {
            *self.caught_up.lock() = Instant::now();
            return Ok(Some(cur.applied));
        }
        // Asked between records and between the rows the commit writes: giving way fails
        // the transaction like any error, and `gave_way` tells it from one.
        let gave_way = std::cell::Cell::new(false);
        let interrupted = || {
            if give_way && self.wanted_elsewhere() {
                gave_way.set(true);
                return Err(StoreError::Internal("the checkpoint gave way".into()));
            }
            Ok(())
        };
        let started = Instant::now();
        self.durable.reopen_if_needed()?;
        let stop = self.faults.checkpoint_stop();
        let from = *cur;
        let mut end = 0;
        let written = |seq: u64| self.wal.wait_written(seq);
        let row = |id: &str| self.users.row(id);
        let plan = std::cell::RefCell::new(None);
        let choose = |touched: &BTreeSet<String>, applied: u64| {
            let p = dirty.plan(touched, from.applied + 1, applied, share);
            let chosen = (p.store.clone(), p.mark);
            *plan.borrow_mut() = Some(p);
            chosen
        };
        let mut scanned = Vec::new();
        let applied = self.durable.absorb(
            from.applied,
            stop == Some(CheckpointStop::BeforeCommit),
            UserRows::Memory {
                row: &row,
                written: &written,
                choose: &choose,
                interrupted: &interrupted,
            },
            |absorb| {
                for (no, path) in &view.closed {
                    if *no < from.segment {
                        continue;
                    }
                    let start = if *no == from.segment { from.offset } else { 0 };
                    let scan = segment::scan(path, start, None, |seq, p| {
                        interrupted()?;
                        absorb.record(seq, p)
                    })?;
                    if let Some(reason) = scan.torn {
                        // The tail of a segment an IO error interrupted: its records were
                        // written again to a later segment.
                        tracing::warn!(segment = %path.display(), offset = scan.end, %reason, "log segment ends in a torn record");
                    }
                    // Every record of the segment is at or before what is applied now.
                    scanned.push((*no, absorb.applied()));
                }
                let (no, path, len) = &view.active;
                let start = if *no == from.segment { from.offset } else { 0 };
                end = segment::scan(path, start, Some(*len), |seq, p| {
                    interrupted()?;
                    absorb.record(seq, p)
                })?
                .end;
                self.faults.checkpoint_pause(give_way);
                Ok(())
            },
        );
        let plan = plan.into_inner();
        let applied = match applied {
            Ok(_) if stop == Some(CheckpointStop::AfterCommit) => Err(StoreError::Internal(
                "checkpoint stopped after its commit (test fault)".into(),
            )),
            other => other,
        };
        let applied = match applied {
            Ok(applied) => applied,
            Err(e) => {
                // The commit may have gone through all the same (redb can report a failure
                // after it), and then the retry skips these records and never sees whom
                // they changed: those users stay dirty from here, stored or not.
                if let Some(plan) = plan {
                    dirty.failed(plan);
                }
                if gave_way.get() {
                    self.gave_way.fetch_add(1, Ordering::Relaxed);
                    return Ok(None);
                }
                return Err(e);
            }
        };
        *cur = Cursor {
            applied,
            segment: view.active.0,
            offset: end,
        };
        // A closed segment goes once every user row includes its records.
        let mark = plan.as_ref().map_or(applied, |p| p.mark);
        let deletable = {
            let mut kept = self.kept.lock();
            kept.extend(scanned);
            let mut upto = 0;
            while let Some(&(no, last)) = kept.front()
                && last <= mark
            {
                upto = no;
                kept.pop_front();
            }
            upto
        };
        let stored = plan.as_ref().map_or(0, |p| p.store.len());
        if let Some(plan) = plan {
            dirty.commit(plan);
        }
        self.users_mark.store(mark, Ordering::Relaxed);
        tracing::debug!(
            records = applied - from.applied,
            users_stored = stored,
            users_left = dirty.len(),
            replay_from = mark,
            seconds = started.elapsed().as_secs_f64(),
            "checkpoint"
        );
        drop(dirty);
        drop(cur);
        self.wal.absorbed(deletable, view.bytes);
        self.wal.prepare_next();
        self.users.absorbed(applied);
        let mut durations = self.durations.lock();
        if durations.len() == KEPT_DURATIONS {
            durations.pop_front();
        }
        durations.push_back(started.elapsed());
        *self.caught_up.lock() = Instant::now();
        Ok(Some(applied))
    }

    /// Every user row includes the records up to this sequence number (as of the last
    /// checkpoint's commit).
    pub fn users_mark(&self) -> u64 {
        self.users_mark.load(Ordering::Relaxed)
    }

    /// The durations of the checkpoints that absorbed something since the last call, oldest
    /// first: for `recd_checkpoint_duration_seconds`. A checkpoint is the write path's
    /// background work, and its length is what its bursts take from the requests beside it.
    pub fn take_durations(&self) -> Vec<Duration> {
        self.durations.lock().drain(..).collect()
    }
}

/// Counts a caller waiting for the checkpoint lock while it exists.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Waiting(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What start-up recovered from the log ([`recover`]).
#[derive(Debug)]
pub struct Recovered {
    /// The last sequence number redb holds.
    pub applied: u64,
    /// The number for the next segment.
    pub next_no: u64,
    /// Every user row includes the records up to this sequence number; the log's user
    /// records after it are replayed into memory ([`Recovered::replay`]).
    replay_from: u64,
    /// The segments read: deleted by [`Recovered::done`], once the replayed states are
    /// stored (until then the next start-up replays them again).
    segments: Vec<PathBuf>,
}

impl Recovered {
    /// Hands `f` the effect on users of every logged record the user rows may not include
    /// (`(last sequence number, effect)`, in log order), reading the segments again one
    /// record at a time.
    pub fn replay(&self, mut f: impl FnMut(u64, UserRecord)) -> StoreResult<()> {
        for path in &self.segments {
            segment::scan(path, 0, None, |seq, payload| {
                if seq <= self.replay_from {
                    return Ok(());
                }
                // An undecodable record was reported when it was absorbed.
                if let Ok(op) = Op::decode(payload, crate::wall_clock_ms()) {
                    let last = seq + op.span() - 1;
                    if let Some(record) = UserRecord::of(op) {
                        f(last, record);
                    }
                }
                Ok(())
            })?;
        }
        Ok(())
    }

    /// Deletes the segments recovery read: everything in them is in redb now.
    pub fn done(self) {
        for path in &self.segments {
            if let Err(e) = std::fs::remove_file(path) {
                tracing::warn!(segment = %path.display(), cause = %e, "cannot delete an absorbed log segment");
            }
        }
    }
}

/// Start-up: absorbs every segment in `dir` into `durable` (skipping what it has),
/// truncating a torn tail with a warning. The caller then replays the segments' user
/// records into memory ([`Recovered::replay`]), stores the states, and deletes the segments
/// ([`Recovered::done`]).
pub fn recover(durable: &Durable, dir: &Path) -> StoreResult<Recovered> {
    let segments = segment::list_segments(dir)?;
    let applied = durable.applied()?;
    let replay_from = durable.users_applied()?;
    if segments.is_empty() {
        return Ok(Recovered {
            applied,
            next_no: 1,
            replay_from,
            segments: Vec::new(),
        });
    }
    let mut replayed = 0u64;
    let applied = durable.absorb(applied, false, UserRows::Replay, |absorb| {
        for (_, path) in &segments {
            let before = absorb.applied();
            let scan = segment::scan(path, 0, None, |seq, p| {
                replayed += u64::from(seq > before);
                absorb.record(seq, p)
            })?;
            if let Some(reason) = scan.torn {
                tracing::warn!(segment = %path.display(), offset = scan.end, %reason, "torn log tail truncated (a write that was never acknowledged)");
                let truncated = std::fs::OpenOptions::new()
                    .write(true)
                    .open(path)
                    .and_then(|f| f.set_len(scan.end));
                if let Err(e) = truncated {
                    tracing::warn!(segment = %path.display(), cause = %e, "cannot truncate the torn tail; it is ignored");
                }
            }
        }
        Ok(())
    })?;
    if replayed > 0 {
        tracing::info!(records = replayed, "replayed the write log");
    }
    let next_no = segments.last().map_or(1, |(no, _)| no + 1);
    Ok(Recovered {
        applied,
        next_no,
        replay_from,
        segments: segments.into_iter().map(|(_, p)| p).collect(),
    })
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::path::PathBuf;

    use recd_core::{EventType, Filter, ItemUpsert, Schema};
    use serde_json::json;

    use super::*;
    use crate::embedded::{EmbeddedOptions, EmbeddedStore, Fsync};
    use crate::{ModelSettings, Store};

    fn schema() -> Schema {
        Schema::demo(2)
    }

    fn options(fsync: Fsync) -> EmbeddedOptions {
        EmbeddedOptions {
            fsync,
            // Checkpoints only when a test runs one.
            checkpoint_seconds: 1e6,
            checkpoint_bytes: u64::MAX,
            ..EmbeddedOptions::default()
        }
    }

    fn open(dir: &Path, fsync: Fsync) -> EmbeddedStore {
        EmbeddedStore::open(
            dir,
            Some(schema()),
            ModelSettings::default(),
            options(fsync),
        )
        .unwrap()
    }

    fn upsert(v: serde_json::Value) -> ItemUpsert {
        ItemUpsert::from_json(&v, &schema()).unwrap()
    }

    fn event(user: &str, item: &str, kind: EventType, t: i64) -> recd_core::Event {
        recd_core::Event {
            user_id: user.into(),
            item_id: item.into(),
            kind,
            value: None,
            timestamp_ms: t,
            recommendation_id: None,
        }
    }

    /// One round of every kind of write, applied to `stores` alike.
    async fn writes(stores: &[&dyn Store], round: i64) {
        let r = round;
        for s in stores {
            s.upsert_items(vec![
                upsert(json!({"id": format!("a{r}"), "vector": [1.0, 0.5], "category": "x"})),
                upsert(json!({"id": format!("b{r}"), "vector": [0.0, 1.0]})),
                upsert(json!({"id": "shared", "vector": [r as f64 + 1.0, 1.0]})),
            ])
            .await
            .unwrap();
            s.apply_events(&[
                event(
                    &format!("u{r}"),
                    &format!("a{r}"),
                    EventType::Purchase,
                    10 + r,
                ),
                event("hot", &format!("b{r}"), EventType::View, 20 + r),
                event("hot", "shared", EventType::Click, 30 + r),
                event("ghost-item-user", "no-such-item", EventType::View, 40 + r),
            ])
            .await
            .unwrap();
            s.set_user_vectors(vec![(format!("u{r}"), vec![0.5, 0.5])])
                .await
                .unwrap();
            s.apply_events(&[event("gone", "shared", EventType::View, 50 + r)])
                .await
                .unwrap();
            assert!(s.delete_user("gone").await.unwrap());
            s.set_item_vectors(vec![(format!("a{r}"), vec![0.0, -1.0])])
                .await
                .unwrap();
            assert!(s.delete_item(&format!("b{r}")).await.unwrap());
            s.rebuild_sessions(&["hot".into()]).await.unwrap();
        }
    }

    /// Asserts that `got` holds exactly what `want` holds, for the ids the writes use.
    async fn same(got: &dyn Store, want: &dyn Store, rounds: i64) {
        assert_eq!(got.counts().await.unwrap(), want.counts().await.unwrap());
        let mut items: Vec<String> = vec!["shared".into(), "no-such-item".into()];
        let mut users: Vec<String> = vec!["hot".into(), "gone".into(), "ghost-item-user".into()];
        for r in 0..rounds {
            items.extend([format!("a{r}"), format!("b{r}")]);
            users.push(format!("u{r}"));
        }
        assert_eq!(
            got.get_items(&items).await.unwrap(),
            want.get_items(&items).await.unwrap()
        );
        // `active_ms` is each store's clock at its write: the two stores wrote at
        // different moments.
        let state = |s: Option<recd_core::UserState>| {
            s.map(|mut s| {
                s.active_ms = 0;
                s
            })
        };
        for u in &users {
            assert_eq!(
                state(got.get_user(u).await.unwrap()),
                state(want.get_user(u).await.unwrap()),
                "user {u}"
            );
        }
        let (g, w) = (
            got.popular(100, &Filter::all()).await.unwrap(),
            want.popular(100, &Filter::all()).await.unwrap(),
        );
        assert_eq!(g.len(), w.len());
        for (g, w) in g.iter().zip(&w) {
            assert_eq!(g.item.id, w.item.id);
            // Replayed increments are summed in another order: equal up to rounding, and
            // never twice (that would add ln 2).
            assert!(
                (g.log_score - w.log_score).abs() < 1e-9 || g.log_score == w.log_score,
                "{} {} vs {}",
                g.item.id,
                g.log_score,
                w.log_score
            );
        }
        assert_eq!(got.events().await.unwrap(), want.events().await.unwrap());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_crash_on_either_side_of_a_checkpoint_commit_loses_and_repeats_nothing() {
        for stop in [CheckpointStop::BeforeCommit, CheckpointStop::AfterCommit] {
            let dir = tempfile::tempdir().unwrap();
            let reference = EmbeddedStore::in_memory(schema(), ModelSettings::default()).unwrap();
            let s = open(dir.path(), Fsync::Everysec);
            writes(&[&s, &reference], 0).await;
            s.checkpoint().unwrap();
            writes(&[&s, &reference], 1).await;
            s.faults().set_checkpoint_stop(Some(stop));
            let e = s.checkpoint().unwrap_err();
            assert!(e.to_string().contains("test fault"), "{e}");
            // Writes go on while checkpoints fail.
            writes(&[&s, &reference], 2).await;
            s.crash();

            let s = open(dir.path(), Fsync::Everysec);
            same(&s, &reference, 3).await;
            // and once more, after the reopened store's own (final) checkpoint
            writes(&[&s, &reference], 3).await;
            drop(s);
            let s = open(dir.path(), Fsync::Everysec);
            same(&s, &reference, 4).await;
            assert!(
                segment::list_segments(&dir.path().join("wal"))
                    .unwrap()
                    .len()
                    <= 1,
                "absorbed segments are deleted ({stop:?})"
            );
        }
    }

    /// Task `task`'s writes of round `r` to each of `stores`: items and a user of its own
    /// (tasks commute), and views of "shared" (popularity increments commute too).
    async fn task_writes(stores: &[EmbeddedStore], task: usize, r: i64) {
        let item = format!("t{task}-i{r}");
        let user = format!("t{task}-u{}", r % 3);
        for s in stores {
            s.upsert_items(vec![upsert(
                json!({"id": item, "vector": [1.0, r as f64], "category": "x"}),
            )])
            .await
            .unwrap();
            s.apply_events(&[
                event(&user, &item, EventType::Purchase, 100 + r),
                event(&user, "shared", EventType::View, 200 + r),
            ])
            .await
            .unwrap();
            if r % 3 == 2 {
                s.set_item_vectors(vec![(item.clone(), vec![0.0, 1.0])])
                    .await
                    .unwrap();
            }
        }
    }

    /// `TASKS` concurrent tasks doing rounds `rounds` of [`task_writes`], every write
    /// acknowledged by both stores before the next.
    const TASKS: usize = 4;
    async fn concurrent_writes(stores: &[EmbeddedStore], rounds: std::ops::Range<i64>) {
        let tasks: Vec<_> = (0..TASKS)
            .map(|task| {
                let stores = stores.to_vec();
                let rounds = rounds.clone();
                tokio::spawn(async move {
                    for r in rounds {
                        task_writes(&stores, task, r).await;
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    }

    /// Like [`same`], for stores written by concurrent tasks: the event logs hold the same
    /// events in another order, and popularity ties between items may rank in another order.
    async fn same_concurrent(got: &dyn Store, want: &dyn Store, rounds: i64, what: &str) {
        assert_eq!(got.counts().await.unwrap(), want.counts().await.unwrap());
        let mut items: Vec<String> = vec!["shared".into(), "a0".into(), "b0".into()];
        let mut users: Vec<String> = vec!["hot".into(), "u0".into(), "ghost-item-user".into()];
        for task in 0..TASKS {
            items.extend((0..rounds).map(|r| format!("t{task}-i{r}")));
            users.extend((0..3).map(|u| format!("t{task}-u{u}")));
        }
        assert_eq!(
            got.get_items(&items).await.unwrap(),
            want.get_items(&items).await.unwrap()
        );
        for u in &users {
            // The folded-in vector is solved with YᵀY as it was at the event, which the
            // other tasks' concurrent item writes change in another order in each store;
            // what it is solved from (recent items, weights) must agree exactly. Likewise
            // the session vector's sum: recovery replays the events after the last
            // checkpoint against the item vectors as recovered (`apply`), and the tasks
            // change `shared`'s vector meanwhile. Its weight and clock, which the events
            // alone make, must agree exactly.
            let state = |s: Option<recd_core::UserState>| {
                s.map(|mut s| {
                    s.active_ms = 0;
                    s.fold.vector = None;
                    if let Some(session) = &mut s.session {
                        session.sum.clear();
                    }
                    s
                })
            };
            assert_eq!(
                state(got.get_user(u).await.unwrap()),
                state(want.get_user(u).await.unwrap()),
                "user {u}"
            );
        }
        let scores = |hits: Vec<crate::PopularHit>| -> Vec<(String, f64)> {
            let mut v: Vec<(String, f64)> = hits
                .into_iter()
                .map(|h| (h.item.id.clone(), h.log_score))
                .collect();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        };
        let (g, w) = (
            scores(got.popular(1000, &Filter::all()).await.unwrap()),
            scores(want.popular(1000, &Filter::all()).await.unwrap()),
        );
        assert_eq!(g.len(), w.len());
        for (g, w) in g.iter().zip(&w) {
            assert_eq!(g.0, w.0);
            assert!(
                (g.1 - w.1).abs() < 1e-9,
                "{what}: {} {} vs {}",
                g.0,
                g.1,
                w.1
            );
        }
        let sorted = |mut v: Vec<recd_core::Event>| {
            v.sort_by(|a, b| {
                (&a.user_id, &a.item_id, a.timestamp_ms).cmp(&(
                    &b.user_id,
                    &b.item_id,
                    b.timestamp_ms,
                ))
            });
            v
        };
        assert_eq!(
            sorted(got.events().await.unwrap()),
            sorted(want.events().await.unwrap())
        );
    }

    /// A checkpoint paused between reading the log and its commit while concurrent writers
    /// go on (their records land after what it read, in segments that rotate meanwhile),
    /// then a crash: on either side of the commit, or after the checkpoint completed, every
    /// acknowledged write is there after the restart, once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_acknowledged_during_a_checkpoint_survive_a_crash_at_any_point_of_it() {
        for stop in [
            None,
            Some(CheckpointStop::BeforeCommit),
            Some(CheckpointStop::AfterCommit),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let reference = EmbeddedStore::in_memory(schema(), ModelSettings::default()).unwrap();
            // 4 KiB segments: they rotate, and ask for checkpoints, while one is held.
            let options = EmbeddedOptions {
                checkpoint_bytes: 4096,
                ..options(Fsync::Everysec)
            };
            let s = EmbeddedStore::open(
                dir.path(),
                Some(schema()),
                ModelSettings::default(),
                options.clone(),
            )
            .unwrap();
            writes(&[&s, &reference], 0).await;
            let faults = s.faults();
            faults.set_checkpoint_stop(stop);
            faults.hold_checkpoint();
            let held = {
                let s = s.clone();
                std::thread::spawn(move || s.checkpoint())
            };
            let f = faults.clone();
            tokio::task::spawn_blocking(move || f.wait_checkpoint_held())
                .await
                .unwrap();
            let stores = [s.clone(), reference.clone()];
            concurrent_writes(&stores, 0..12).await;
            faults.release_checkpoint();
            let result = held.join().unwrap();
            assert_eq!(result.is_ok(), stop.is_none(), "{stop:?}: {result:?}");
            concurrent_writes(&stores, 12..15).await;
            drop(stores);
            s.crash();

            let s =
                EmbeddedStore::open(dir.path(), None, ModelSettings::default(), options).unwrap();
            same_concurrent(&s, &reference, 15, &format!("{stop:?}")).await;
        }
    }

    /// Polls `done` until it holds (the threads it waits for run on their own schedule;
    /// a minute is a hang, not slowness).
    fn until(what: &str, mut done: impl FnMut() -> bool) {
        let start = std::time::Instant::now();
        while !done() {
            assert!(start.elapsed() < Duration::from_secs(60), "never: {what}");
            std::thread::yield_now();
        }
    }

    /// A store on idle checkpoints whose background checkpoint has read one round of
    /// [`writes`] (applied to `also` too) and is held before its commit.
    async fn held_background(
        dir: &Path,
        options: EmbeddedOptions,
        also: &[&dyn Store],
    ) -> (EmbeddedStore, Arc<Checkpointer>, Arc<Faults>) {
        let s =
            EmbeddedStore::open(dir, Some(schema()), ModelSettings::default(), options).unwrap();
        let checkpointer = s.checkpointer().unwrap();
        let faults = s.faults();
        faults.hold_background_checkpoint();
        let mut stores: Vec<&dyn Store> = vec![&s];
        stores.extend_from_slice(also);
        writes(&stores, 0).await;
        checkpointer.trigger.fire();
        let f = faults.clone();
        tokio::task::spawn_blocking(move || f.wait_checkpoint_held())
            .await
            .unwrap();
        (s, checkpointer, faults)
    }

    /// An idle background checkpoint that holds the lock when another caller wants it
    /// gives way (uncommitted, its users still dirty) instead of making it wait for idle
    /// cycles; the caller's checkpoint then absorbs everything, and a crash after it loses
    /// nothing.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_idle_background_checkpoint_gives_way_to_a_caller_that_waits() {
        let dir = tempfile::tempdir().unwrap();
        let reference = EmbeddedStore::in_memory(schema(), ModelSettings::default()).unwrap();
        // Only the test starts the background's checkpoints; the catch-up thread, which
        // looks every interval, stays out of the way.
        let options = EmbeddedOptions {
            checkpoint_seconds: 600.0,
            checkpoint_idle: true,
            ..options(Fsync::Everysec)
        };
        let (s, checkpointer, faults) =
            held_background(dir.path(), options.clone(), &[&reference]).await;
        let on_demand = {
            let s = s.clone();
            std::thread::spawn(move || s.checkpoint())
        };
        until("the checkpoint on demand waits", || {
            checkpointer.waiting.load(Ordering::Relaxed) == 1
        });
        faults.release_checkpoint();
        let applied = on_demand.join().unwrap().unwrap();
        assert_eq!(
            checkpointer.handovers(),
            (1, 0),
            "the background's checkpoint gave way"
        );
        assert_eq!(applied, s.checkpointer().unwrap().cursor.lock().applied);
        assert_eq!(
            checkpointer.users_mark(),
            applied,
            "on demand stores every user"
        );
        concurrent_writes(&[s.clone(), reference.clone()], 0..3).await;
        // Its redb file stays open while anything holds it.
        drop(checkpointer);
        s.crash();
        let s = EmbeddedStore::open(dir.path(), None, ModelSettings::default(), options).unwrap();
        same_concurrent(&s, &reference, 3, "after giving way").await;
    }

    /// With the background checkpoint unable to finish (held here, as one that gets no
    /// idle cycles), the catch-up thread runs the checkpoint once none finished for two
    /// intervals; the background's gives way to it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_catch_up_thread_checkpoints_when_the_background_cannot() {
        let dir = tempfile::tempdir().unwrap();
        let options = EmbeddedOptions {
            checkpoint_seconds: 0.02,
            checkpoint_idle: true,
            ..options(Fsync::Everysec)
        };
        let (_s, checkpointer, faults) = held_background(dir.path(), options, &[]).await;
        // Nobody else asks for a checkpoint: only the catch-up thread can come to wait.
        until("the catch-up thread waits", || {
            checkpointer.waiting.load(Ordering::Relaxed) == 1
        });
        faults.release_checkpoint();
        until("the catch-up thread checkpoints", || {
            checkpointer.caught_up_runs.load(Ordering::Acquire) >= 1
        });
        assert!(checkpointer.handovers().0 >= 1, "the background gave way");
        // ...and keeps the next ones: with the background free again, only they make the
        // catch-up thread's count grow past the takeover.
        until("the catch-up thread runs its share", || {
            checkpointer.caught_up_runs.load(Ordering::Acquire) > u64::from(BUSY_RUNS)
        });
        let last = checkpointer.wal.last_seq();
        assert_eq!(
            checkpointer.cursor.lock().applied,
            last,
            "everything absorbed"
        );
    }

    /// [`open`] with the fold-in as the session update (the costlier replay: a solve per
    /// user and batch).
    fn open_fold_in(dir: &Path, fsync: Fsync) -> EmbeddedStore {
        let mut settings = ModelSettings::default();
        settings.session.update = recd_core::UpdateRule::FoldIn;
        EmbeddedStore::open(dir, Some(schema()), settings, options(fsync)).unwrap()
    }

    /// Events with no item write among them, in batches over six users, with a deletion
    /// (and the user's return), a long-term vector and an expiry-free rebuild among them;
    /// returns the ids written.
    async fn user_writes(s: &EmbeddedStore, batches: std::ops::Range<i64>) -> Vec<String> {
        let users: Vec<String> = (0..6).map(|u| format!("u{u}")).collect();
        for b in batches {
            let batch: Vec<recd_core::Event> = (0..9)
                .map(|i| {
                    let kind = [EventType::View, EventType::Click, EventType::Purchase][i % 3];
                    event(
                        &users[(b as usize + i) % 6],
                        &format!("i{}", (b * 7 + i as i64) % 20),
                        kind,
                        1_000 * b + i as i64,
                    )
                })
                .collect();
            s.apply_events(&batch).await.unwrap();
            match b % 4 {
                1 => {
                    s.delete_user("u1").await.unwrap();
                }
                2 => {
                    s.set_user_vectors(vec![("u2".into(), vec![0.25, -0.5])])
                        .await
                        .unwrap();
                }
                3 => {
                    s.rebuild_sessions(&["u3".into()]).await.unwrap();
                }
                _ => {}
            }
        }
        users
    }

    async fn states(s: &EmbeddedStore, users: &[String]) -> Vec<Option<recd_core::UserState>> {
        let mut out = Vec::new();
        for u in users {
            out.push(s.get_user(u).await.unwrap());
        }
        out
    }

    /// An event leaves its user's fold-in unsolved (the request does not solve it); the
    /// next read solves it and keeps the solve, so that later reads do not solve again. A
    /// checkpoint stores a due state as it is (it does not solve), marked due: after a
    /// restart the first read solves it as memory would have. Seen failing with the mark
    /// dropped from the row (the reopened vector is the one before the events).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_read_after_events_solves_their_refold_and_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let s = open_fold_in(dir.path(), Fsync::Everysec);
        let items: Vec<ItemUpsert> = (0..4)
            .map(|i| {
                upsert(json!({"id": format!("i{i}"), "vector": [1.0 + i as f64, 0.5 - i as f64]}))
            })
            .collect();
        s.upsert_items(items).await.unwrap();
        let due = |s: &EmbeddedStore| s.inner.users.with("u", |e| e.map(|e| e.state.refold_due()));
        s.apply_events(&[
            event("u", "i1", EventType::Click, 1),
            event("u", "i2", EventType::View, 2),
        ])
        .await
        .unwrap();
        assert_eq!(due(&s), Some(true));
        let read = s.get_user("u").await.unwrap().unwrap();
        assert!(read.fold.vector.is_some(), "solved for the read");
        assert!(!read.refold_due());
        assert_eq!(due(&s), Some(false), "and kept");
        assert_eq!(s.get_user("u").await.unwrap().as_ref(), Some(&read));

        // More events, stored by a checkpoint before any read, then a crash.
        s.apply_events(&[event("u", "i3", EventType::Purchase, 3)])
            .await
            .unwrap();
        s.checkpoint().unwrap();
        assert_eq!(due(&s), Some(true), "the checkpoint does not solve");
        let memory = s.get_user("u").await.unwrap().unwrap();
        assert_ne!(memory.fold.vector, read.fold.vector);
        s.crash();
        let s = open_fold_in(dir.path(), Fsync::Everysec);
        assert_eq!(due(&s), Some(true), "stored due");
        assert_eq!(s.get_user("u").await.unwrap(), Some(memory));
    }

    /// Events are logged as events and replayed at start-up: with no item write among
    /// them, every user comes back exactly as memory had them (session and folded-in
    /// vectors, activity clocks), whether the crash came before any checkpoint or after one
    /// that stored the users midway (whose records recovery must then skip, not apply twice).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn replayed_events_make_exactly_the_states_memory_had() {
        for checkpoint_midway in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let s = open_fold_in(dir.path(), Fsync::Everysec);
            let items: Vec<ItemUpsert> = (0..20)
                .map(|i| upsert(json!({"id": format!("i{i}"), "vector": [1.0 + i as f64, 0.5 - i as f64 / 8.0]})))
                .collect();
            s.upsert_items(items).await.unwrap();
            user_writes(&s, 0..6).await;
            if checkpoint_midway {
                s.checkpoint().unwrap();
            }
            let users = user_writes(&s, 6..13).await;
            let before = states(&s, &users).await;
            assert!(before.iter().flatten().count() >= 5);
            assert!(
                before.iter().flatten().any(|u| u.fold.vector.is_some()),
                "the fold-in ran"
            );
            s.crash();
            let s = open_fold_in(dir.path(), Fsync::Everysec);
            assert_eq!(
                states(&s, &users).await,
                before,
                "checkpoint midway: {checkpoint_midway}"
            );
        }
    }

    /// `(closed segments kept, USERS_APPLIED, APPLIED)` of a running store.
    fn lag(s: &EmbeddedStore) -> (usize, u64, u64) {
        match &s.inner.sink {
            crate::embedded::Sink::Log(l) => (
                l.wal.view().closed.len(),
                l.durable.users_applied().unwrap(),
                l.durable.applied().unwrap(),
            ),
            crate::embedded::Sink::Memory(_) => unreachable!("a data dir's store"),
        }
    }

    /// Background checkpoints store only a share of the changed users: the other users'
    /// rows lag behind what redb absorbed, the log segments holding their records stay
    /// (though redb has every record in them), and a crash replays those records into
    /// exactly the states memory had. A checkpoint on demand stores every user and lets
    /// the segments go.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn background_checkpoints_store_a_share_of_the_users_and_keep_the_log_they_lack() {
        for on_demand in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let mut settings = ModelSettings::default();
            settings.session.update = recd_core::UpdateRule::FoldIn;
            // 4 KiB segments rotate every few batches (and ask the background for a
            // checkpoint); a bound far above the test's records stores about one user per
            // checkpoint.
            let options = EmbeddedOptions {
                checkpoint_bytes: 4096,
                replay_records: 100_000,
                ..options(Fsync::Everysec)
            };
            let open = || {
                EmbeddedStore::open(
                    dir.path(),
                    Some(schema()),
                    settings.clone(),
                    options.clone(),
                )
                .unwrap()
            };
            let s = open();
            let items: Vec<ItemUpsert> = (0..20)
                .map(|i| upsert(json!({"id": format!("i{i}"), "vector": [1.0 + i as f64, 0.5]})))
                .collect();
            s.upsert_items(items).await.unwrap();
            let mut users = Vec::new();
            for round in 0..6 {
                users = user_writes(&s, round * 5..round * 5 + 5).await;
                // Reading the event log absorbs it with the background's share of users.
                s.events_len().await.unwrap();
            }
            let (kept, users_applied, applied) = lag(&s);
            assert!(
                users_applied < applied,
                "some users' rows lag: {users_applied} < {applied}"
            );
            assert!(
                kept > 0,
                "absorbed segments the lagging users need are kept"
            );
            assert_eq!(
                s.replay_records(),
                Some(applied - users_applied),
                "the gauge: what a crash now would replay"
            );
            let before = states(&s, &users).await;
            if on_demand {
                s.checkpoint().unwrap();
                let (kept, users_applied, applied) = lag(&s);
                assert_eq!((kept, users_applied), (0, applied), "every user stored");
                assert_eq!(s.replay_records(), Some(0));
            }
            s.crash();
            let s = open();
            assert_eq!(states(&s, &users).await, before, "on demand: {on_demand}");
        }
    }

    /// The events in a recovery's replay.
    fn replayed_events(r: &Recovered) -> usize {
        let mut n = 0;
        r.replay(|_, rec| {
            if let UserRecord::Events { events, .. } = rec {
                n += events.len();
            }
        })
        .unwrap();
        n
    }

    /// A checkpoint stores the users its records touched in its own commit, so recovery
    /// replays only the records after it, though the active segment it left in place still
    /// holds the ones before.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn recovery_replays_only_the_records_the_user_rows_lack() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path(), Fsync::Everysec);
        user_writes(&s, 0..4).await;
        s.checkpoint().unwrap();
        user_writes(&s, 4..6).await;
        s.crash();
        let durable = Durable::open(dir.path()).unwrap();
        let recovered = recover(&durable, &dir.path().join("wal")).unwrap();
        assert_eq!(
            replayed_events(&recovered),
            2 * 9,
            "the two batches after the checkpoint"
        );
        // Not stored yet: a second recovery (after a crash here) replays them again.
        let again = recover(&durable, &dir.path().join("wal")).unwrap();
        assert_eq!(replayed_events(&again), 2 * 9);
        drop(durable);
        drop(open(dir.path(), Fsync::Everysec));
        let durable = Durable::open(dir.path()).unwrap();
        assert_eq!(
            replayed_events(&recover(&durable, &dir.path().join("wal")).unwrap()),
            0
        );
    }

    /// Recovery absorbs the log into redb (one commit) before it stores the users it
    /// replayed (another): a crash between the two must lose nothing, so the log stays
    /// until the users are stored, and the next start replays it against the users' rows.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_crash_between_recovery_s_absorption_and_its_stored_users_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let s = open_fold_in(dir.path(), Fsync::Always);
        let items: Vec<ItemUpsert> = (0..20)
            .map(|i| upsert(json!({"id": format!("i{i}"), "vector": [1.0, i as f64]})))
            .collect();
        s.upsert_items(items).await.unwrap();
        let users = user_writes(&s, 0..9).await;
        let before = states(&s, &users).await;
        s.crash();
        {
            let durable = Durable::open(dir.path()).unwrap();
            let was = durable.applied().unwrap();
            let recovered = recover(&durable, &dir.path().join("wal")).unwrap();
            assert!(
                recovered.applied > was,
                "the log was absorbed and committed"
            );
            // ... and the process dies here: no replay stored, no segment deleted.
        }
        let s = open_fold_in(dir.path(), Fsync::Always);
        assert_eq!(states(&s, &users).await, before);
        // and the replayed states were stored: a clean restart has them from redb alone
        drop(s);
        let s = open_fold_in(dir.path(), Fsync::Always);
        assert_eq!(states(&s, &users).await, before);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_acknowledged_write_survives_a_crash_under_every_policy() {
        for fsync in [Fsync::Always, Fsync::Everysec, Fsync::Never] {
            let dir = tempfile::tempdir().unwrap();
            let reference = EmbeddedStore::in_memory(schema(), ModelSettings::default()).unwrap();
            let s = open(dir.path(), fsync);
            writes(&[&s, &reference], 0).await;
            s.crash();
            let s = open(dir.path(), fsync);
            same(&s, &reference, 1).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_torn_tail_is_truncated_and_the_rest_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let reference = EmbeddedStore::in_memory(schema(), ModelSettings::default()).unwrap();
        let s = open(dir.path(), Fsync::Always);
        writes(&[&s, &reference], 0).await;
        s.crash();
        // A write the crash interrupted: its frame is cut short.
        let segments = segment::list_segments(&dir.path().join("wal")).unwrap();
        let (_, last) = segments.last().unwrap();
        let whole = std::fs::metadata(last).unwrap().len();
        let torn = segment::frame(u64::MAX / 2, b"never acknowledged");
        std::fs::OpenOptions::new()
            .append(true)
            .open(last)
            .unwrap()
            .write_all(&torn[..torn.len() - 3])
            .unwrap();
        let durable = Durable::open(dir.path()).unwrap();
        let before = durable.applied().unwrap();
        let mut seen = Vec::new();
        let scan = segment::scan(last, 0, None, |seq, _| {
            seen.push(seq);
            Ok(())
        })
        .unwrap();
        assert_eq!(scan.end, whole);
        assert!(scan.torn.is_some());
        let applied = recover(&durable, &dir.path().join("wal")).unwrap().applied;
        assert!(applied > before && applied < u64::MAX / 2);
        drop(durable);
        // The segments stay until the replayed users are stored, which the open does.
        assert!(last.exists());
        let s = open(dir.path(), Fsync::Always);
        assert!(!last.exists());
        same(&s, &reference, 1).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn replaying_a_log_twice_applies_it_once() {
        let dir = tempfile::tempdir().unwrap();
        let reference = EmbeddedStore::in_memory(schema(), ModelSettings::default()).unwrap();
        let s = open(dir.path(), Fsync::Never);
        writes(&[&s, &reference], 0).await;
        s.flush().unwrap();
        let wal = dir.path().join("wal");
        let copies: Vec<(PathBuf, Vec<u8>)> = segment::list_segments(&wal)
            .unwrap()
            .into_iter()
            .map(|(_, p)| {
                let bytes = std::fs::read(&p).unwrap();
                (p, bytes)
            })
            .collect();
        drop(s); // absorbs everything
        // The same segments again, as if their deletion had never happened.
        for (p, bytes) in &copies {
            std::fs::write(p, bytes).unwrap();
        }
        let durable = Durable::open(dir.path()).unwrap();
        let applied = durable.applied().unwrap();
        assert_eq!(recover(&durable, &wal).unwrap().applied, applied);
        drop(durable);
        let s = open(dir.path(), Fsync::Never);
        same(&s, &reference, 1).await;
    }
}
