//! The append-only log of the embedded backend: every write is appended here, and written
//! (and, per the fsync policy, synced) before it is acknowledged. redb absorbs the log in
//! the background (`checkpoint`), so the request path never waits for a redb commit. The
//! files and their format are `segment`'s.
//!
//! The writer starts a new segment when the active one outgrows its size, and after an IO
//! error (below). The checkpoint thread makes the next segment ahead of time
//! ([`Wal::prepare_next`]), so that a rotation swaps it in instead of creating a file and
//! syncing the directory while acknowledgements wait.
//!
//! # Group commit
//! Request threads only *append* (encode a frame into a shared buffer under a mutex held
//! for a copy) and then wait for their sequence number to be acknowledged. One writer
//! thread takes everything appended so far and writes it with one `write`; under
//! `always` it then fsyncs, before acknowledging the whole group. Requests arriving during
//! that write/fsync form the next group. Under `everysec`, a second thread fsyncs once a
//! second, never in the way of writes; under `never`, nothing is fsynced until shutdown.
//!
//! Under `everysec` and `never`, an appender that finds the writer idle may *lead* instead
//! ([`Wal::append_leading`], the event path): after releasing its own locks it writes
//! everything pending itself ([`Ticket::lead`]), with one `write`, as Redis writes its AOF
//! from the thread that serves the request. Waking the writer thread for each group and
//! being woken by it again cost two thread switches per group, which on two cores was a
//! fifth of an event's CPU. Appends during a lead join the group after it: the leader hands
//! them to the writer thread when it is done. `always` keeps its fsync off request threads.
//! Once `write` has returned, the data is in the kernel: a killed process loses nothing
//! acknowledged under any policy; a power loss, nothing under `always` and about a second
//! under `everysec` (Redis AOF semantics).
//!
//! # Errors
//! A failed write or fsync (a full disk, an IO error) fails the requests in flight with
//! [`StoreError::Unavailable`] naming the cause, and later appends are refused with it.
//! Nothing appended is dropped: the writer keeps every byte not yet known to be on disk and
//! retries (every [`RETRY`], or at once when [`Wal::health`] asks) by writing all of it to a
//! fresh segment, so the log catches up with memory as soon as the disk takes writes again.
//! (A failed fsync may have lost dirty pages of the old segment; the rewrite does not rely
//! on them.)

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex, MutexGuard};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::faults::Faults;
use super::segment::{MAX_PAYLOAD, Segment, create_segment, io_unavailable, put_frame, sync_dir};
use crate::error::{StoreError, StoreResult};

/// How often a failed log tries again by itself.
pub const RETRY: Duration = Duration::from_millis(100);
/// The longest an `always` group waits for more records (see `Wal::gather`).
const GATHER_MAX: Duration = Duration::from_micros(500);
/// The `everysec` fsync period.
const SYNC_INTERVAL: Duration = Duration::from_secs(1);

/// When log writes reach the disk (`[embedded] fsync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fsync {
    /// Every acknowledged write is on disk: each group of concurrent writes is fsynced
    /// before any of them is acknowledged.
    Always,
    /// Writes are in the kernel when acknowledged (a killed process loses nothing) and on
    /// disk within about a second (what a power loss can cost).
    #[default]
    Everysec,
    /// Writes are in the kernel when acknowledged; the kernel decides when they reach the
    /// disk (and shutdown syncs).
    Never,
}

/// The sequence numbers one appended record took, and (for the durable log) its
/// acknowledgement to wait for.
#[derive(Debug)]
pub struct Ticket {
    /// Its first sequence number (its first event's, if it has events).
    pub first: u64,
    /// Completed by the writer: `Ok` once the record is written (under `always`, synced),
    /// the IO error if its write failed.
    pub ack: Option<oneshot::Receiver<Result<(), Arc<str>>>>,
    /// The log, when this append took the lead: its holder writes the pending group
    /// ([`Ticket::lead`]); dropped unled, it hands the group to the writer thread.
    pub(super) lead: Option<Arc<Wal>>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some(wal) = self.lead.take() {
            wal.hand_over();
        }
    }
}

impl Ticket {
    /// Writes the pending group if this append took the lead (see the module doc); call it
    /// with no lock held that other appenders may wait for. Nothing otherwise.
    pub fn lead(&mut self) {
        if let Some(wal) = self.lead.take() {
            wal.lead();
        }
    }

    /// Waits for the acknowledgement (at once for a record of the in-memory log).
    pub async fn wait(mut self) -> StoreResult<()> {
        self.lead();
        let Some(ack) = self.ack.take() else {
            return Ok(());
        };
        match ack.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(cause)) => Err(refused(&cause)),
            Err(_) => Err(StoreError::Unavailable(
                "the store closed before the write was logged".into(),
            )),
        }
    }
}

/// A request waiting for its record: `(last seq, completion)`.
type Waiter = (u64, oneshot::Sender<Result<(), Arc<str>>>);

/// How the log is being closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closing {
    Open,
    /// Write what was appended, sync, stop.
    Graceful,
    /// Stop at once, as a killed process would.
    Crash,
}

#[derive(Debug)]
struct State {
    /// The sequence number the next record gets.
    next_seq: u64,
    /// Frames appended and not yet handed to the kernel.
    pending: Vec<u8>,
    /// The last sequence number in `pending`.
    pending_last: u64,
    /// Records in `pending`.
    pending_records: usize,
    /// Records in the last group written, and how long its fsync took (`always`).
    last_group: (usize, Duration),
    /// Every record up to this sequence number is in a file.
    written: u64,
    /// Every record up to this sequence number was fsynced.
    synced: u64,
    /// Groups written but not yet known to be on disk `(last seq, bytes)`: what an error
    /// makes the writer write again (everysec: up to a second of writes; always: the group
    /// in flight; never: a failed group only).
    unsynced: VecDeque<(u64, Vec<u8>)>,
    /// The IO error the log is stuck on; appends are refused while it lasts.
    failed: Option<Arc<str>>,
    /// Requests waiting for their records, in sequence order (registered at append).
    waiters: VecDeque<Waiter>,
    /// The group buffer last written, kept for its allocation.
    spare: Vec<u8>,
    /// Recovery attempts made so far (`health` waits for the next one).
    attempts: u64,
    /// `health` asks the writer to try again now.
    retry_now: bool,
    /// The writer sleeps on `wake` (appends notify it only then).
    writer_idle: bool,
    /// An appender leads: it writes the pending group on its own thread, and the writer
    /// thread leaves the log alone until it is done (see the module doc).
    leading: bool,
    /// A leader filled the active segment: the writer thread starts the next one.
    rotate_due: bool,
    /// The next segment, made ahead of time ([`Wal::prepare_next`]); always numbered
    /// `next_no`.
    prepared: Option<Segment>,
    /// [`Wal::prepare_next`] is making segment `next_no` now: a rotation meanwhile skips
    /// that number (the prepared file is then discarded).
    preparing: bool,
    closing: Closing,
    active: Segment,
    /// The number the next segment gets.
    next_no: u64,
    /// Segments before the active one that no checkpoint absorbed yet, in order.
    closed: Vec<(u64, PathBuf)>,
    /// Closed segments whose file the `everysec` syncer still has to fsync.
    retired: Vec<Arc<File>>,
    /// Bytes written, ever (drives checkpoints by size).
    bytes: u64,
}

/// What a checkpoint may read: every record up to `written` is in `closed` or in the first
/// `active.2` bytes of the active segment.
#[derive(Debug, Clone)]
pub struct View {
    /// Closed segments `(number, path)`, in order.
    pub closed: Vec<(u64, PathBuf)>,
    /// The active segment `(number, path, readable length)`.
    pub active: (u64, PathBuf, u64),
    /// The last written sequence number.
    pub written: u64,
    /// Bytes written, ever.
    pub bytes: u64,
}

/// Where a new log starts.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// `DATA_DIR/wal`.
    pub dir: PathBuf,
    /// The fsync policy.
    pub fsync: Fsync,
    /// A segment this large is closed and a new one started.
    pub segment_bytes: u64,
    /// Bytes logged since the last checkpoint that call for the next one.
    pub checkpoint_bytes: u64,
    /// The first sequence number to give out.
    pub next_seq: u64,
    /// The number of the first segment to create.
    pub next_no: u64,
}

/// The log; shared by the store, its writer and syncer threads, and the checkpointer.
pub struct Wal {
    config: LogConfig,
    state: Mutex<State>,
    /// Wakes the writer (appends, health, shutdown).
    wake: Condvar,
    /// Wakes blocking waiters (written up to a sequence number, recovery attempts).
    done: Condvar,
    /// Wakes the syncer early (shutdown).
    sync_wake: Condvar,
    /// `bytes` at the last successful checkpoint.
    absorbed_bytes: AtomicU64,
    /// Called when `checkpoint_bytes` were logged since the last checkpoint.
    on_full: Box<dyn Fn() + Send + Sync>,
    faults: Arc<Faults>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal")
            .field("config", &self.config)
            .field("state", &*self.state.lock())
            .finish_non_exhaustive()
    }
}

/// Takes the number of a segment the caller creates with the lock let go, past `next_no`
/// when `skip_next` or while [`Wal::prepare_next`] makes that one. Taken before the lock
/// goes: a segment made ahead meanwhile must not get this number or an earlier one (it
/// would then be written after this one). A failure leaves the number unused, which a
/// reader skips.
fn reserve_no(st: &mut State, skip_next: bool) -> u64 {
    let no = st.next_no + u64::from(skip_next || st.preparing);
    st.next_no = no + 1;
    no
}

/// Creates segment `no` in `dir` for a rotation and, with `sync`, syncs the directory: the
/// new file must be found after a power loss before anything in it is acknowledged. If the
/// sync fails the (empty) file is removed again.
fn new_segment(dir: &std::path::Path, no: u64, sync: bool) -> io::Result<Segment> {
    let seg = create_segment(dir, no)?;
    if sync && let Err(e) = sync_dir(dir) {
        let _ = std::fs::remove_file(&seg.path);
        return Err(e);
    }
    Ok(seg)
}

fn refused(cause: &str) -> StoreError {
    StoreError::Unavailable(format!("the write log cannot be written: {cause}"))
}

impl Wal {
    /// Creates the first segment and starts the writer (and, under `everysec`, the syncer).
    /// `on_full` is called (from the writer) whenever `checkpoint_bytes` were logged since
    /// the last [`absorbed`](Self::absorbed).
    pub fn start(
        config: LogConfig,
        faults: Arc<Faults>,
        on_full: Box<dyn Fn() + Send + Sync>,
    ) -> StoreResult<Arc<Wal>> {
        let created = !config.dir.exists();
        std::fs::create_dir_all(&config.dir)
            .map_err(|e| io_unavailable(&format!("cannot create {}", config.dir.display()), &e))?;
        if created
            && config.fsync != Fsync::Never
            && let Some(parent) = config.dir.parent()
        {
            // The new directory's entry must survive a power loss too.
            sync_dir(parent).map_err(|e| io_unavailable("cannot sync the data dir", &e))?;
        }
        let active = create_segment(&config.dir, config.next_no).map_err(|e| {
            io_unavailable(
                &format!("cannot create a log segment in {}", config.dir.display()),
                &e,
            )
        })?;
        if config.fsync != Fsync::Never {
            let synced = active.file.sync_data().and_then(|()| sync_dir(&config.dir));
            synced.map_err(|e| io_unavailable("cannot sync the new log segment", &e))?;
        }
        let last = config.next_seq.saturating_sub(1);
        let state = State {
            next_seq: config.next_seq,
            pending: Vec::new(),
            pending_last: last,
            pending_records: 0,
            last_group: (0, Duration::ZERO),
            written: last,
            synced: last,
            unsynced: VecDeque::new(),
            failed: None,
            waiters: VecDeque::new(),
            spare: Vec::new(),
            attempts: 0,
            retry_now: false,
            writer_idle: false,
            leading: false,
            rotate_due: false,
            prepared: None,
            preparing: false,
            closing: Closing::Open,
            active,
            next_no: config.next_no + 1,
            closed: Vec::new(),
            retired: Vec::new(),
            bytes: 0,
        };
        let wal = Arc::new(Wal {
            config,
            state: Mutex::new(state),
            wake: Condvar::new(),
            done: Condvar::new(),
            sync_wake: Condvar::new(),
            absorbed_bytes: AtomicU64::new(0),
            on_full,
            faults,
            threads: Mutex::new(Vec::new()),
        });
        let mut threads = Vec::new();
        let w = wal.clone();
        threads.push(
            std::thread::Builder::new()
                .name("recd-log".into())
                .spawn(move || w.run_writer())
                .map_err(|e| io_unavailable("cannot start the log writer thread", &e))?,
        );
        if wal.config.fsync == Fsync::Everysec {
            let w = wal.clone();
            match std::thread::Builder::new()
                .name("recd-fsync".into())
                .spawn(move || w.run_syncer())
            {
                Ok(t) => threads.push(t),
                Err(e) => {
                    wal.shutdown(true);
                    for t in threads {
                        let _ = t.join();
                    }
                    return Err(io_unavailable("cannot start the fsync thread", &e));
                }
            }
        }
        *wal.threads.lock() = threads;
        Ok(wal)
    }

    /// Appends a record of `span` sequence numbers; the writer picks it up at once. Refused
    /// while the log is failed (nothing is appended then).
    pub fn append(self: &Arc<Self>, payload: &[u8], span: u64) -> StoreResult<Ticket> {
        self.append_with(payload, span, false)
    }

    /// [`Wal::append`], but when the writer thread is idle (and the policy is not `always`)
    /// the ticket takes the lead: its holder must call [`Ticket::lead`] once it holds no lock
    /// other appenders wait for (or drop the ticket), and until then appends queue behind it.
    pub fn append_leading(self: &Arc<Self>, payload: &[u8], span: u64) -> StoreResult<Ticket> {
        self.append_with(payload, span, self.config.fsync != Fsync::Always)
    }

    fn append_with(
        self: &Arc<Self>,
        payload: &[u8],
        span: u64,
        may_lead: bool,
    ) -> StoreResult<Ticket> {
        if payload.len() > MAX_PAYLOAD {
            return Err(StoreError::Invalid(recd_core::ValidationError::new(
                format!(
                    "the write is too large to log ({} bytes, at most {MAX_PAYLOAD}): send smaller batches",
                    payload.len()
                ),
            )));
        }
        let mut crc = crc32fast::Hasher::new();
        crc.update(payload);
        let mut st = self.state.lock();
        if let Some(cause) = &st.failed {
            // The writer retries by itself (every RETRY); a burst of refused requests must
            // not turn into a burst of attempts.
            return Err(refused(cause));
        }
        if st.closing != Closing::Open {
            return Err(StoreError::Unavailable("the store is closing".into()));
        }
        let seq = st.next_seq;
        let last = seq + span.max(1) - 1;
        st.next_seq = last + 1;
        put_frame(&mut st.pending, seq, payload, &crc);
        st.pending_last = last;
        st.pending_records += 1;
        let (tx, rx) = oneshot::channel();
        st.waiters.push_back((last, tx));
        let mut lead = None;
        if st.writer_idle && !st.leading {
            if may_lead {
                st.leading = true;
                lead = Some(self.clone());
            } else {
                self.wake.notify_one();
            }
        }
        Ok(Ticket {
            first: seq,
            ack: Some(rx),
            lead,
        })
    }

    /// The lead of an append (see the module doc): writes everything pending as one group on
    /// this thread, then gives whatever was appended meanwhile (and a segment to rotate, a
    /// failure to retry, a shutdown) to the writer thread.
    fn lead(&self) {
        let mut st = self.state.lock();
        if st.failed.is_none() && st.closing == Closing::Open && !st.pending.is_empty() {
            self.write_group(&mut st, false);
        }
        self.end_lead(&mut st);
    }

    /// A leading ticket dropped before it led: the writer thread writes its group.
    fn hand_over(&self) {
        let mut st = self.state.lock();
        self.end_lead(&mut st);
    }

    fn end_lead(&self, st: &mut MutexGuard<'_, State>) {
        st.leading = false;
        if !st.pending.is_empty()
            || st.failed.is_some()
            || st.closing != Closing::Open
            || st.rotate_due
        {
            self.wake.notify_one();
        }
    }

    /// Blocks until every record up to `seq` is in a file (whatever the policy).
    pub fn wait_written(&self, seq: u64) -> StoreResult<()> {
        let mut st = self.state.lock();
        loop {
            if st.written >= seq {
                return Ok(());
            }
            if let Some(cause) = &st.failed {
                return Err(refused(cause));
            }
            if st.closing != Closing::Open {
                return Err(StoreError::Unavailable("the store is closing".into()));
            }
            self.done.wait(&mut st);
        }
    }

    /// The last sequence number given out.
    pub fn last_seq(&self) -> u64 {
        self.state.lock().next_seq - 1
    }

    /// Ok while the log takes writes. While it is failed, asks the writer for an immediate
    /// retry and waits for its outcome, so that a full disk that was freed is noticed by the
    /// first caller (a readiness probe) rather than by a timer.
    pub fn health(&self) -> StoreResult<()> {
        let mut st = self.state.lock();
        if st.failed.is_none() {
            return Ok(());
        }
        let attempts = st.attempts;
        st.retry_now = true;
        self.wake.notify_one();
        while st.attempts == attempts && st.failed.is_some() && st.closing == Closing::Open {
            self.done.wait(&mut st);
        }
        match &st.failed {
            Some(cause) => Err(refused(cause)),
            None => Ok(()),
        }
    }

    /// Whether the log is failed, without retrying (cheap; for the async fast path).
    pub fn is_failed(&self) -> bool {
        self.state.lock().failed.is_some()
    }

    /// Writes and fsyncs everything appended so far.
    pub fn flush(&self) -> StoreResult<()> {
        let last = self.last_seq();
        self.wait_written(last)?;
        let files: Vec<Arc<File>> = {
            let st = self.state.lock();
            let mut f = st.retired.clone();
            f.push(st.active.file.clone());
            f
        };
        for f in files {
            f.sync_data()
                .map_err(|e| io_unavailable("cannot fsync the write log", &e))?;
        }
        let mut st = self.state.lock();
        st.synced = st.synced.max(last);
        st.unsynced.retain(|(l, _)| *l > last);
        Ok(())
    }

    /// The segments a checkpoint may read now.
    pub fn view(&self) -> View {
        let st = self.state.lock();
        View {
            closed: st.closed.clone(),
            active: (st.active.no, st.active.path.clone(), st.active.len),
            written: st.written,
            bytes: st.bytes,
        }
    }

    /// After a checkpoint absorbed every closed segment up to number `upto` and the log up
    /// to `bytes`: deletes those segments.
    pub fn absorbed(&self, upto: u64, bytes: u64) {
        self.absorbed_bytes.store(bytes, Ordering::Relaxed);
        let gone: Vec<(u64, PathBuf)> = {
            let mut st = self.state.lock();
            let (gone, keep) = std::mem::take(&mut st.closed)
                .into_iter()
                .partition(|(no, _)| *no <= upto);
            st.closed = keep;
            gone
        };
        for (_, path) in &gone {
            if let Err(e) = std::fs::remove_file(path) {
                // Harmless: a later checkpoint or start-up skips records already absorbed.
                tracing::warn!(path = %path.display(), cause = %e, "cannot delete an absorbed log segment");
            }
        }
    }

    /// Stops the threads: gracefully (write and fsync what was appended) or as a crash.
    pub fn shutdown(&self, crash: bool) {
        {
            let mut st = self.state.lock();
            st.closing = if crash {
                Closing::Crash
            } else {
                Closing::Graceful
            };
            self.wake.notify_all();
            self.done.notify_all();
            self.sync_wake.notify_all();
        }
        let threads = std::mem::take(&mut *self.threads.lock());
        for t in threads {
            if t.join().is_err() {
                tracing::error!("a write log thread panicked");
            }
        }
    }

    /// Acknowledges the waiters whose records are written (under `always`, synced), and
    /// wakes blocking waiters. The acknowledgements are sent with the state unlocked: each
    /// wakes a request's task (a futex wake when its thread sleeps), and a group's worth of
    /// them under the lock kept every appender waiting.
    fn publish(&self, st: &mut MutexGuard<'_, State>) {
        let acked = if self.config.fsync == Fsync::Always {
            st.synced
        } else {
            st.written
        };
        let ready = st
            .waiters
            .iter()
            .take_while(|(last, _)| *last <= acked)
            .count();
        let ready: Vec<Waiter> = st.waiters.drain(..ready).collect();
        self.done.notify_all();
        if !ready.is_empty() {
            MutexGuard::unlocked(st, || {
                for (_, tx) in ready {
                    // A waiter that went away (its request was cancelled) is fine.
                    let _ = tx.send(Ok(()));
                }
            });
        }
    }

    /// Fails every waiter (their records stay pending for the retry) and refuses appends.
    fn fail(&self, st: &mut State, cause: String) {
        tracing::error!(%cause, "the write log failed; writes are refused until it can be written again");
        let cause: Arc<str> = cause.into();
        for (_, tx) in st.waiters.drain(..) {
            let _ = tx.send(Err(cause.clone()));
        }
        st.failed = Some(cause);
        self.done.notify_all();
    }

    fn run_writer(self: Arc<Self>) {
        let mut st = self.state.lock();
        loop {
            loop {
                if st.closing == Closing::Crash {
                    return;
                }
                if st.leading {
                    // An appender is writing a group: the log is its until it is done (it
                    // wakes this thread then).
                    st.writer_idle = true;
                    self.wake.wait(&mut st);
                    st.writer_idle = false;
                    continue;
                }
                if st.failed.is_some() {
                    if st.closing != Closing::Open {
                        // What is left was never acknowledged; the next start-up replays
                        // whatever reached a file.
                        return;
                    }
                    if !st.retry_now {
                        self.wake.wait_for(&mut st, RETRY);
                    }
                    if st.closing == Closing::Open && st.failed.is_some() {
                        break;
                    }
                    continue;
                }
                if !st.pending.is_empty() {
                    break;
                }
                if st.rotate_due {
                    // a leader filled the segment and left the rotation here
                    st.rotate_due = false;
                    self.rotate(&mut st);
                    continue;
                }
                if st.closing == Closing::Graceful {
                    let files: Vec<Arc<File>> = std::mem::take(&mut st.retired)
                        .into_iter()
                        .chain([st.active.file.clone()])
                        .collect();
                    drop(st);
                    for f in files {
                        if let Err(e) = f.sync_data() {
                            tracing::error!(cause = %e, "final fsync of the write log failed");
                        }
                    }
                    return;
                }
                st.writer_idle = true;
                self.wake.wait(&mut st);
                st.writer_idle = false;
            }
            if st.failed.is_some() {
                self.recover(&mut st);
            } else {
                self.gather(&mut st);
                self.write_group(&mut st, true);
            }
        }
    }

    /// `always`: right after a group's fsync, the first of its requests to come back would
    /// otherwise make a group of one or two, and the rest wait a whole fsync for the next
    /// (groups alternate small, large). So while fewer records are pending than the last
    /// group had, wait for them, for at most an eighth of the last fsync (and 500 µs). A
    /// lone writer (last group of one) never waits.
    fn gather(&self, st: &mut MutexGuard<'_, State>) {
        let (size, fsync) = st.last_group;
        if self.config.fsync != Fsync::Always || st.pending_records >= size {
            return;
        }
        let deadline = std::time::Instant::now() + (fsync / 8).min(GATHER_MAX);
        st.writer_idle = true;
        while st.pending_records < size
            && st.closing == Closing::Open
            && !self.wake.wait_until(st, deadline).timed_out()
        {}
        st.writer_idle = false;
    }

    /// Writes (and under `always` syncs) everything pending as one group; then starts the
    /// next segment if this one is full and `rotate` (a leader leaves that to the writer
    /// thread: creating a file and syncing the directory is no work for a request thread).
    fn write_group(&self, st: &mut MutexGuard<'_, State>, rotate: bool) {
        // The next group's buffer, sized like this one: appenders copy into it under the
        // lock, and growing it there meant reallocating and moving it several times per group.
        let spare = match std::mem::take(&mut st.spare) {
            spare if spare.capacity() > 0 => spare,
            _ => Vec::with_capacity(st.pending.len()),
        };
        let buf = std::mem::replace(&mut st.pending, spare);
        let last = st.pending_last;
        let records = std::mem::take(&mut st.pending_records);
        let file = st.active.file.clone();
        let result = MutexGuard::unlocked(st, || {
            if self.faults.disk_full() {
                let _ = (&*file).write_all(&buf[..buf.len() / 2]);
                return Err(io::Error::from_raw_os_error(28));
            }
            (&*file).write_all(&buf)?;
            let started = std::time::Instant::now();
            if self.config.fsync == Fsync::Always {
                file.sync_data()?;
            }
            Ok(started.elapsed())
        });
        match result {
            Ok(fsync) => {
                st.last_group = (records, fsync);
                st.written = last;
                st.active.len += buf.len() as u64;
                st.bytes += buf.len() as u64;
                match self.config.fsync {
                    Fsync::Always => st.synced = last,
                    Fsync::Everysec => st.unsynced.push_back((last, buf)),
                    Fsync::Never => {
                        let mut buf = buf;
                        buf.clear();
                        st.spare = buf;
                    }
                }
                self.publish(st);
                if st.bytes - self.absorbed_bytes.load(Ordering::Relaxed)
                    >= self.config.checkpoint_bytes
                {
                    (self.on_full)();
                }
                if st.active.len >= self.config.segment_bytes {
                    if rotate {
                        self.rotate(st);
                    } else {
                        st.rotate_due = true;
                    }
                }
            }
            Err(e) => {
                st.unsynced.push_back((last, buf));
                self.fail(st, e.to_string());
            }
        }
    }

    /// Closes the active segment and starts the next one. A failure is not an error: the
    /// writer keeps appending to the current segment and tries again after its next group.
    fn rotate(&self, st: &mut MutexGuard<'_, State>) {
        st.rotate_due = false;
        if let Some(seg) = st.prepared.take() {
            // Made ahead of time: a swap, where creating the file and syncing the directory
            // here kept every acknowledgement waiting (see `prepare_next`).
            st.next_no = seg.no + 1;
            self.close_active(st, seg);
            return;
        }
        let no = reserve_no(st, false);
        let dir = self.config.dir.clone();
        let sync = self.config.fsync != Fsync::Never;
        let created = MutexGuard::unlocked(st, || new_segment(&dir, no, sync));
        match created {
            Ok(seg) => self.close_active(st, seg),
            Err(e) => {
                tracing::warn!(cause = %e, "cannot start a new log segment; the current one grows on");
            }
        }
    }

    /// Makes `seg` the active segment and closes the current one.
    fn close_active(&self, st: &mut MutexGuard<'_, State>, seg: Segment) {
        let old = std::mem::replace(&mut st.active, seg);
        if self.config.fsync == Fsync::Everysec {
            st.retired.push(old.file);
        }
        st.closed.push((old.no, old.path));
    }

    /// Makes the next segment now, so that the writer's next rotation only swaps it in: a
    /// rotation creates a file and (unless `fsync = "never"`) syncs the directory, and the
    /// writer does it between two groups, so every acknowledgement waited for it (with
    /// 8 MiB segments the events' p99 under load was 1.5x that of 64 MiB ones,
    /// BENCHMARKS.md session 27). The checkpoint thread calls it after each checkpoint. Does
    /// nothing if a segment is already made or being made, or the log is failing or closing.
    pub fn prepare_next(&self) {
        let no = {
            let mut st = self.state.lock();
            if st.prepared.is_some()
                || st.preparing
                || st.failed.is_some()
                || st.closing != Closing::Open
            {
                return;
            }
            st.preparing = true;
            st.next_no
        };
        let made = new_segment(&self.config.dir, no, self.config.fsync != Fsync::Never);
        let stale = {
            let mut st = self.state.lock();
            st.preparing = false;
            match made {
                // Nothing rotated meanwhile: it is still the next one.
                Ok(seg) if st.next_no == no && st.closing == Closing::Open => {
                    st.prepared = Some(seg);
                    None
                }
                Ok(seg) => Some(seg.path),
                Err(e) => {
                    tracing::warn!(cause = %e, "cannot make the next log segment ahead; the writer will");
                    None
                }
            }
        };
        // Never written to: its number was skipped, and a start-up would find it empty.
        if let Some(path) = stale {
            let _ = std::fs::remove_file(path);
        }
    }

    /// After an IO error: writes every byte not known to be on disk, and everything pending,
    /// to a fresh segment, syncs it, and resumes.
    fn recover(&self, st: &mut MutexGuard<'_, State>) {
        st.retry_now = false;
        let mut bytes = Vec::new();
        let mut last = st.written;
        for (l, chunk) in &st.unsynced {
            bytes.extend_from_slice(chunk);
            last = last.max(*l);
        }
        if !st.pending.is_empty() {
            bytes.extend_from_slice(&st.pending);
            last = last.max(st.pending_last);
        }
        // A segment made ahead is left empty (its number skipped; a start-up reads nothing
        // from it), as is one being made.
        let skipped = st.prepared.take().map(|p| p.path);
        let no = reserve_no(st, skipped.is_some());
        let dir = self.config.dir.clone();
        let sync = self.config.fsync != Fsync::Never;
        let disk_full = self.faults.disk_full();
        let result = MutexGuard::unlocked(st, || {
            if let Some(path) = &skipped {
                let _ = std::fs::remove_file(path);
            }
            let seg = create_segment(&dir, no)?;
            let written = if disk_full {
                let _ = (&*seg.file).write_all(&bytes[..bytes.len() / 2]);
                Err(io::Error::from_raw_os_error(28))
            } else {
                (&*seg.file).write_all(&bytes).and_then(|()| {
                    if sync {
                        seg.file.sync_data()?;
                        sync_dir(&dir)?;
                    }
                    Ok(())
                })
            };
            match written {
                Ok(()) => Ok(seg),
                Err(e) => {
                    let _ = std::fs::remove_file(&seg.path);
                    Err(e)
                }
            }
        });
        st.attempts += 1;
        match result {
            Ok(mut seg) => {
                seg.len += bytes.len() as u64;
                st.next_no = no + 1;
                let old = std::mem::replace(&mut st.active, seg);
                // Its records are all in the new segment; its file needs no more syncing.
                st.closed.push((old.no, old.path));
                st.retired.clear();
                st.pending.clear();
                st.pending_records = 0;
                st.unsynced.clear();
                st.written = last;
                st.synced = last;
                st.bytes += bytes.len() as u64;
                st.failed = None;
                tracing::info!("the write log is writable again");
                self.publish(st);
            }
            Err(e) => {
                let cause = e.to_string();
                if st.failed.as_deref() != Some(cause.as_str()) {
                    tracing::warn!(%cause, "the write log is still failing");
                    st.failed = Some(cause.into());
                }
                self.publish(st);
            }
        }
    }

    /// `everysec`: fsyncs what was written, once a second, beside the writer.
    fn run_syncer(self: Arc<Self>) {
        let mut st = self.state.lock();
        loop {
            self.sync_wake.wait_for(&mut st, SYNC_INTERVAL);
            if st.closing != Closing::Open {
                return;
            }
            if st.failed.is_some() || (st.synced >= st.written && st.retired.is_empty()) {
                continue;
            }
            let written = st.written;
            let files: Vec<Arc<File>> = std::mem::take(&mut st.retired)
                .into_iter()
                .chain([st.active.file.clone()])
                .collect();
            let result =
                MutexGuard::unlocked(&mut st, || files.iter().try_for_each(|f| f.sync_data()));
            match result {
                Ok(()) => {
                    st.synced = st.synced.max(written);
                    st.unsynced.retain(|(l, _)| *l > written);
                }
                Err(e) => {
                    if st.failed.is_none() {
                        self.fail(&mut st, format!("fsync failed: {e}"));
                        self.wake.notify_one();
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::embedded::segment::{list_segments, scan};

    fn start(dir: &Path, fsync: Fsync, faults: Arc<Faults>) -> Arc<Wal> {
        Wal::start(
            LogConfig {
                dir: dir.to_path_buf(),
                fsync,
                segment_bytes: 200,
                checkpoint_bytes: u64::MAX,
                next_seq: 10,
                next_no: 1,
            },
            faults,
            Box::new(|| {}),
        )
        .unwrap()
    }

    /// Every record, once, as a checkpoint reads them (a sequence number seen is skipped).
    fn all_records(dir: &Path) -> Vec<u64> {
        let mut seqs: Vec<u64> = Vec::new();
        for (_, path) in list_segments(dir).unwrap() {
            scan(&path, 0, None, |s, _| {
                if seqs.last().is_none_or(|l| s > *l) {
                    seqs.push(s);
                }
                Ok(())
            })
            .unwrap();
        }
        seqs
    }

    #[tokio::test]
    async fn appends_are_acknowledged_once_written_across_segments() {
        for fsync in [Fsync::Always, Fsync::Everysec, Fsync::Never] {
            let dir = tempfile::tempdir().unwrap();
            let wal = start(dir.path(), fsync, Arc::default());
            let mut seqs = Vec::new();
            let mut unwaited = Vec::new();
            for i in 0..20u64 {
                let t = wal.append(&[i as u8; 40], 1 + i % 3).unwrap();
                seqs.push(t.first);
                if i % 2 == 1 {
                    // groups of two: several groups, several segments
                    t.wait().await.unwrap();
                } else {
                    unwaited.push(t);
                }
            }
            // one sequence number per span unit: 1, 2, 3, 1, ...
            assert_eq!(seqs[..4], [10, 11, 13, 16]);
            for t in unwaited {
                t.wait().await.unwrap();
            }
            assert_eq!(wal.last_seq(), seqs[19] + 1);
            assert!(wal.view().closed.len() > 1, "200-byte segments rotate");
            wal.shutdown(false);
            assert_eq!(all_records(dir.path()), seqs, "{fsync:?}");
        }
    }

    #[tokio::test]
    async fn a_segment_made_ahead_is_the_next_one_and_a_rotation_swaps_it_in() {
        for fsync in [Fsync::Always, Fsync::Everysec, Fsync::Never] {
            let dir = tempfile::tempdir().unwrap();
            let wal = start(dir.path(), fsync, Arc::default());
            let first = wal.append(&[1; 40], 1).unwrap();
            let mut want = vec![first.first];
            first.wait().await.unwrap();
            let before = wal.view().active.0;
            wal.prepare_next();
            let next = crate::embedded::segment::segment_path(dir.path(), before + 1);
            assert!(next.exists(), "made before any rotation ({fsync:?})");
            // a second call keeps the one made
            wal.prepare_next();
            let mut i = 0u8;
            while wal.view().active.0 == before {
                let t = wal.append(&[i; 40], 1).unwrap();
                want.push(t.first);
                t.wait().await.unwrap();
                i += 1;
            }
            assert_eq!(wal.view().active.0, before + 1, "{fsync:?}");
            assert_eq!(wal.view().active.1, next);
            let more = wal.append(b"after the swap", 1).unwrap();
            want.push(more.first);
            more.wait().await.unwrap();
            wal.shutdown(false);
            assert_eq!(all_records(dir.path()), want, "{fsync:?}");
        }
    }

    #[tokio::test]
    async fn segments_made_ahead_while_the_writer_rotates_lose_and_reorder_nothing() {
        for fsync in [Fsync::Everysec, Fsync::Never] {
            let dir = tempfile::tempdir().unwrap();
            let wal = start(dir.path(), fsync, Arc::default());
            let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let preparer = {
                let (wal, stop) = (wal.clone(), stop.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        wal.prepare_next();
                        std::thread::yield_now();
                    }
                })
            };
            let mut want = Vec::new();
            for i in 0..600u64 {
                // 200-byte segments: the writer rotates every few records, racing the
                // preparer (a leader would leave its rotations to the writer too)
                let t = wal.append(&[i as u8; 60], 1).unwrap();
                want.push(t.first);
                t.wait().await.unwrap();
            }
            stop.store(true, Ordering::Relaxed);
            preparer.join().unwrap();
            let rotations = wal.view().closed.len();
            assert!(rotations > 20, "rotated many times: {rotations}");
            wal.shutdown(true);
            assert_eq!(all_records(dir.path()), want, "{fsync:?}");
        }
    }

    #[tokio::test]
    async fn a_full_disk_fails_the_writes_in_flight_and_heals_when_space_returns() {
        for fsync in [Fsync::Always, Fsync::Everysec, Fsync::Never] {
            let dir = tempfile::tempdir().unwrap();
            let faults = Arc::new(Faults::default());
            let wal = start(dir.path(), fsync, faults.clone());
            let ok = wal.append(b"before", 1).unwrap();
            let ok_seq = ok.first;
            ok.wait().await.unwrap();
            faults.set_disk_full(true);
            // under everysec and never, the failing write is a leader's
            wait_idle(&wal);
            let lost = wal.append_leading(b"during", 1).unwrap();
            assert_eq!(lost.lead.is_some(), fsync != Fsync::Always, "{fsync:?}");
            let lost_seq = lost.first;
            let e = lost.wait().await.unwrap_err();
            assert!(
                matches!(&e, StoreError::Unavailable(m) if m.contains("No space left")),
                "{e:?}"
            );
            let refused = wal.append(b"refused", 1).unwrap_err();
            assert!(matches!(refused, StoreError::Unavailable(_)));
            assert!(wal.health().is_err(), "still full");
            faults.set_disk_full(false);
            wal.health().unwrap();
            let after = wal.append(b"after", 1).unwrap();
            let after_seq = after.first;
            after.wait().await.unwrap();
            wal.shutdown(false);
            // The failed record was kept and written once the disk took writes again; its
            // torn first copy stops the scan of the segment it was in, the next one has it.
            let seqs = all_records(dir.path());
            assert_eq!(seqs, [ok_seq, lost_seq, after_seq], "{fsync:?}");
        }
    }

    /// Waits (yielding) until the writer thread sleeps with nothing to do.
    fn wait_idle(wal: &Wal) {
        loop {
            {
                let st = wal.state.lock();
                if st.writer_idle && st.pending.is_empty() && !st.leading && !st.rotate_due {
                    return;
                }
            }
            std::thread::yield_now();
        }
    }

    #[tokio::test]
    async fn a_leader_writes_its_group_and_what_queued_behind_it_on_its_own_thread() {
        for fsync in [Fsync::Everysec, Fsync::Never] {
            let dir = tempfile::tempdir().unwrap();
            let wal = start(dir.path(), fsync, Arc::default());
            wait_idle(&wal);
            let mut first = wal.append_leading(b"one", 1).unwrap();
            assert!(first.lead.is_some(), "the writer is idle: the append leads");
            let second = wal.append_leading(b"two", 1).unwrap();
            assert!(second.lead.is_none(), "one leader at a time");
            let third = wal.append(b"three", 2).unwrap();
            // Nothing is written until the leader leads: the writer thread leaves the log
            // to it, and the appends behind it did not wake the writer.
            assert_eq!(wal.view().written, first.first - 1);
            first.lead();
            assert_eq!(
                wal.view().written,
                third.first + 1,
                "one group, written by lead() on this thread"
            );
            let seqs = [first.first, second.first, third.first];
            for t in [first, second, third] {
                t.wait().await.unwrap();
            }
            // The writer thread takes over again for the next append.
            let fourth = wal.append(b"four", 1).unwrap();
            let last = fourth.first;
            fourth.wait().await.unwrap();
            wal.shutdown(false);
            assert_eq!(all_records(dir.path()), [seqs[0], seqs[1], seqs[2], last]);
        }
    }

    #[tokio::test]
    async fn a_lead_dropped_unused_hands_its_group_to_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let wal = start(dir.path(), Fsync::Everysec, Arc::default());
        wait_idle(&wal);
        let leader = wal.append_leading(b"dropped", 1).unwrap();
        assert!(leader.lead.is_some());
        let behind = wal.append(b"behind", 1).unwrap();
        let seqs = [leader.first, behind.first];
        drop(leader);
        // Without the hand-over this would wait forever: bound it, to fail instead.
        tokio::time::timeout(Duration::from_secs(60), behind.wait())
            .await
            .expect("the writer thread took the group over")
            .unwrap();
        wal.shutdown(false);
        assert_eq!(all_records(dir.path()), seqs);
    }

    #[tokio::test]
    async fn a_segment_a_leader_filled_is_rotated_by_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let wal = start(dir.path(), Fsync::Everysec, Arc::default());
        wait_idle(&wal);
        let mut big = wal.append_leading(&[7u8; 300], 1).unwrap();
        assert!(big.lead.is_some());
        big.lead();
        assert!(
            wal.view().closed.is_empty(),
            "a request thread does not rotate"
        );
        let seq = big.first;
        big.wait().await.unwrap();
        wait_idle(&wal);
        assert_eq!(wal.view().closed.len(), 1, "the writer rotated once");
        let next = wal.append(b"next", 1).unwrap();
        let next_seq = next.first;
        next.wait().await.unwrap();
        assert_eq!(wal.view().closed.len(), 1);
        wal.shutdown(false);
        assert_eq!(all_records(dir.path()), [seq, next_seq]);
    }

    #[tokio::test]
    async fn a_crash_keeps_what_was_written() {
        let dir = tempfile::tempdir().unwrap();
        let wal = start(dir.path(), Fsync::Never, Arc::default());
        let t = wal.append(b"acked", 1).unwrap();
        let seq = t.first;
        t.wait().await.unwrap();
        wal.shutdown(true);
        assert_eq!(all_records(dir.path()), [seq]);
        assert!(wal.append(b"late", 1).is_err());
    }
}
