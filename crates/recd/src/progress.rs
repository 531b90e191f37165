//! Progress of long work (demo, import, train, eval): one way to show it everywhere.
//!
//! On a terminal, an `indicatif` bar on stderr with the count, rate and ETA. Anywhere else
//! (a file, a pipe, a service manager's journal), a log line every few seconds with the
//! count, total, rate and ETA, and one when the work is done: a bar's redraws would fill a
//! log with escape codes. `RECD_PROGRESS_EVERY_MS` sets the period of those lines (default
//! 5000; 0 logs every step).
//!
//! [`Progress`] is also the [`recd_store::bulk::Observer`] of bulk writes, so the demo's and
//! the imports' batches advance the same display.

use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The default period of the progress lines written when stderr is not a terminal.
const LOG_EVERY: Duration = Duration::from_secs(5);

/// One piece of long work being counted; cheap to clone (clones count into the same).
#[derive(Clone, Debug)]
pub struct Progress {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    view: View,
}

#[derive(Debug)]
enum View {
    Bar(ProgressBar),
    Log(Mutex<Meter>),
}

impl Progress {
    /// Counts `total` units (`None`: unknown) of `what` ("events", "items", "ALS
    /// iterations"), shown as the terminal allows.
    pub fn new(what: &str, total: Option<u64>) -> Progress {
        let view = if std::io::stderr().is_terminal() {
            View::Bar(bar(what, total))
        } else {
            View::Log(Mutex::new(Meter::new(
                what,
                total,
                log_every(),
                Instant::now(),
            )))
        };
        Progress {
            inner: Arc::new(Inner { view }),
        }
    }

    /// `n` more units done.
    pub fn add(&self, n: u64) {
        match &self.inner.view {
            View::Bar(b) => b.inc(n),
            View::Log(m) => {
                if let Ok(mut m) = m.lock()
                    && let Some(line) = m.add(n, Instant::now())
                {
                    tracing::info!("{line}");
                }
            }
        }
    }

    /// Prints `line` on stderr whatever the filter of the log (e.g. the loss of each ALS
    /// iteration): above the bar on a terminal, so that the bar stays whole.
    pub fn say(&self, line: &str) {
        match &self.inner.view {
            View::Bar(b) => b.println(line),
            View::Log(_) => eprintln!("{line}"),
        }
    }

    /// The work is done: the bar is cleared, or the final line logged.
    pub fn finish(&self) {
        match &self.inner.view {
            View::Bar(b) => b.finish_and_clear(),
            View::Log(m) => {
                if let Ok(mut m) = m.lock()
                    && let Some(line) = m.finish(Instant::now())
                {
                    tracing::info!("{line}");
                }
            }
        }
    }
}

/// A bar for work whose size the store learns only once it starts (the vector inserts of
/// an embedded store's open: a rebuild, or bringing a saved index up to date), for a
/// terminal only: elsewhere the store's own log lines say the same. `None` when stderr is
/// not a terminal.
pub fn on_terminal_when_begun(what: &str) -> Option<Arc<dyn recd_store::bulk::Observer>> {
    std::io::stderr().is_terminal().then(|| {
        Arc::new(WhenBegun {
            what: what.to_string(),
            current: Mutex::new(None),
        }) as Arc<dyn recd_store::bulk::Observer>
    })
}

/// See [`on_terminal_when_begun`]: a [`Progress`] made when the work says its size.
#[derive(Debug)]
struct WhenBegun {
    what: String,
    current: Mutex<Option<Progress>>,
}

impl recd_store::bulk::Observer for WhenBegun {
    fn begin(&self, total: usize) {
        if let Ok(mut c) = self.current.lock() {
            *c = Some(Progress::new(&self.what, Some(total as u64)));
        }
    }

    fn written(&self, rows: usize) {
        if let Ok(c) = self.current.lock()
            && let Some(p) = c.as_ref()
        {
            p.add(rows as u64);
        }
    }

    fn end(&self) {
        if let Ok(mut c) = self.current.lock()
            && let Some(p) = c.take()
        {
            p.finish();
        }
    }
}

/// `opts` with a new progress of `total` `what` as their observer: one bulk write's display.
pub fn bulk(
    opts: &recd_store::bulk::BulkOptions,
    what: &str,
    total: usize,
) -> (recd_store::bulk::BulkOptions, Progress) {
    let p = Progress::new(what, Some(total as u64));
    (opts.observed(Arc::new(p.clone())), p)
}

impl recd_store::bulk::Observer for Progress {
    fn written(&self, rows: usize) {
        self.add(rows as u64);
    }
}

/// The period of progress lines: `RECD_PROGRESS_EVERY_MS`, else [`LOG_EVERY`].
fn log_every() -> Duration {
    std::env::var("RECD_PROGRESS_EVERY_MS")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(LOG_EVERY, Duration::from_millis)
}

fn bar(what: &str, total: Option<u64>) -> ProgressBar {
    let (b, template) = match total {
        Some(t) => (
            ProgressBar::new(t),
            "{prefix} [{bar:30}] {human_pos}/{human_len} ({per_sec}, ETA {eta}) {msg}",
        ),
        None => (
            ProgressBar::no_length(),
            "{prefix} {human_pos} ({per_sec}, {elapsed}) {msg}",
        ),
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        b.set_style(style.progress_chars("=> "));
    }
    b.set_draw_target(ProgressDrawTarget::stderr());
    b.set_prefix(what.to_string());
    b
}

/// When and what to log of one piece of work, kept apart from the clock and the log so
/// that it can be tested with made-up instants.
#[derive(Debug)]
struct Meter {
    what: String,
    total: Option<u64>,
    done: u64,
    started: Instant,
    last: Instant,
    every: Duration,
    finished: bool,
}

impl Meter {
    fn new(what: &str, total: Option<u64>, every: Duration, now: Instant) -> Meter {
        Meter {
            what: what.to_string(),
            total,
            done: 0,
            started: now,
            last: now,
            every,
            finished: false,
        }
    }

    /// Counts `n` more; the line to log when a period has passed since the last one.
    fn add(&mut self, n: u64, now: Instant) -> Option<String> {
        self.done = self.done.saturating_add(n);
        if now.saturating_duration_since(self.last) < self.every {
            return None;
        }
        self.last = now;
        Some(self.line(now))
    }

    /// The final line (once).
    fn finish(&mut self, now: Instant) -> Option<String> {
        if self.finished {
            return None;
        }
        self.finished = true;
        let secs = now.saturating_duration_since(self.started).as_secs_f64();
        Some(format!(
            "{}: {} done in {secs:.1} s ({})",
            self.what,
            self.done,
            rate(self.done, secs)
        ))
    }

    /// "events: 1200/5000 (24 %, 400/s, ETA 10 s)".
    fn line(&self, now: Instant) -> String {
        let secs = now.saturating_duration_since(self.started).as_secs_f64();
        let per_sec = if secs > 0.0 {
            self.done as f64 / secs
        } else {
            0.0
        };
        match self.total {
            Some(total) => {
                let share = if total > 0 {
                    100.0 * self.done as f64 / total as f64
                } else {
                    100.0
                };
                let eta = if per_sec > 0.0 {
                    let left = total.saturating_sub(self.done) as f64 / per_sec;
                    format!("{left:.0} s")
                } else {
                    "unknown".into()
                };
                format!(
                    "{}: {}/{total} ({share:.0} %, {}, ETA {eta})",
                    self.what,
                    self.done,
                    rate(self.done, secs)
                )
            }
            None => format!("{}: {} ({})", self.what, self.done, rate(self.done, secs)),
        }
    }
}

/// "400/s" (whole units per second; one decimal below 10).
fn rate(done: u64, secs: f64) -> String {
    if secs <= 0.0 {
        return "-/s".into();
    }
    let r = done as f64 / secs;
    if r < 10.0 {
        format!("{r:.1}/s")
    } else {
        format!("{r:.0}/s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(start: Instant, ms: u64) -> Instant {
        start + Duration::from_millis(ms)
    }

    #[test]
    fn logs_once_per_period_with_count_rate_and_eta() {
        let t0 = Instant::now();
        let mut m = Meter::new("events", Some(5000), Duration::from_secs(5), t0);
        assert_eq!(m.add(1000, at(t0, 1000)), None, "within the period");
        assert_eq!(m.add(1000, at(t0, 4999)), None);
        let line = m.add(0, at(t0, 5000)).expect("a period passed");
        assert_eq!(line, "events: 2000/5000 (40 %, 400/s, ETA 8 s)");
        assert_eq!(m.add(500, at(t0, 9000)), None, "the period restarts");
        assert!(m.add(500, at(t0, 10_000)).is_some());
    }

    #[test]
    fn unknown_total_and_no_rate_yet() {
        let t0 = Instant::now();
        let mut m = Meter::new("rows", None, Duration::ZERO, t0);
        assert_eq!(m.add(3, t0).as_deref(), Some("rows: 3 (-/s)"));
        assert_eq!(m.add(2, at(t0, 2000)).as_deref(), Some("rows: 5 (2.5/s)"));
        let mut z = Meter::new("items", Some(10), Duration::ZERO, t0);
        assert_eq!(
            z.add(0, t0).as_deref(),
            Some("items: 0/10 (0 %, -/s, ETA unknown)")
        );
    }

    #[test]
    fn finishes_once() {
        let t0 = Instant::now();
        let mut m = Meter::new("items", Some(4), Duration::from_secs(5), t0);
        m.add(4, at(t0, 2000));
        assert_eq!(
            m.finish(at(t0, 2000)).as_deref(),
            Some("items: 4 done in 2.0 s (2.0/s)")
        );
        assert_eq!(m.finish(at(t0, 3000)), None);
    }

    #[test]
    fn a_progress_counts_as_a_bulk_observer() {
        // Not a terminal under `cargo test` (stderr captured): the log view.
        let p = Progress::new("rows", Some(10));
        recd_store::bulk::Observer::written(&p, 7);
        let View::Log(m) = &p.inner.view else {
            return; // a terminal after all: nothing to read back
        };
        assert_eq!(m.lock().map(|m| m.done).unwrap_or(0), 7);
    }
}
