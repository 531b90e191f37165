//! The process's allocator, mimalloc, and the one setting recd changes in it: how long
//! freed memory stays in the process before it goes back to the OS (the *purge delay*).
//!
//! # Why
//! mimalloc asks for transparent huge pages on its heap (`MADV_HUGEPAGE` on its arenas),
//! which recommend requests gain from (without them, 0.83–0.94× the unfiltered recommend
//! throughput in one A/B; BENCHMARKS.md, session 35). By default it returns memory that
//! stayed free for 1 s (`MADV_DONTNEED`). Under a steady request load that is memory the
//! next second reuses: returning part of a huge page splits it, khugepaged collapses it
//! again, and each collapse holds the process's `mmap_lock` for writing, so every page
//! fault of every request worker waits behind it (up to 6.7 ms, 5–16 times in 20 s of
//! events at saturation). With a 60 s delay the churn is never returned, khugepaged found
//! nothing to collapse (0–1 collapses in 20 s after 60 s of load), and a transient peak
//! (an import, a training write-back) still goes back within a minute. The cost is the
//! memory the churn keeps: 1.3 GB resident instead of 1.0 GB after 3 minutes of saturating
//! events (+27–31 %).
//!
//! `MIMALLOC_PURGE_DELAY` (milliseconds, mimalloc's own variable) wins when it is set.
//!
//! # Safety
//! This module's `unsafe` is two calls into mimalloc's option table (`mi_option_get`,
//! `mi_option_set`): plain C functions on an integer table, not thread safe, so [`tune`]
//! runs first thing in `main`, before any other thread exists.

use libmimalloc_sys::{mi_option_get, mi_option_set, mi_option_t};

/// `mi_option_purge_delay` in mimalloc v3's option enum (the version libmimalloc-sys
/// 0.1.49 builds by default), which libmimalloc-sys does not export as a constant. The
/// test below checks that this option is the one `MIMALLOC_PURGE_DELAY` sets.
const PURGE_DELAY: mi_option_t = 15;
/// mimalloc v3's default purge delay: what that option reads when nobody set it. Anything
/// else means the option table is not the one this module was written against.
const MIMALLOC_DEFAULT_MS: i64 = 1_000;
/// recd's purge delay (see the module docs).
pub const PURGE_DELAY_MS: i64 = 60_000;

/// What [`tune`] did, for the log once logging is up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tuning {
    /// recd's delay was set.
    Set(i64),
    /// `MIMALLOC_PURGE_DELAY` is set: the operator's value stands.
    Operator(i64),
    /// The option did not read mimalloc's default, so it was left alone (a mimalloc whose
    /// options are numbered differently).
    Unrecognized(i64),
}

impl Tuning {
    /// Logs the outcome (a warning only when the setting could not be applied).
    pub fn log(self) {
        match self {
            Tuning::Set(ms) => tracing::debug!(purge_delay_ms = ms, "allocator tuned"),
            Tuning::Operator(ms) => {
                tracing::debug!(
                    purge_delay_ms = ms,
                    "allocator purge delay from MIMALLOC_PURGE_DELAY"
                )
            }
            Tuning::Unrecognized(found) => tracing::warn!(
                found,
                expected = MIMALLOC_DEFAULT_MS,
                "mimalloc's purge delay option is not where recd expects it; left at its default"
            ),
        }
    }
}

/// The purge delay mimalloc uses now, in milliseconds (-1: never).
pub fn purge_delay_ms() -> i64 {
    #[allow(unsafe_code)]
    // SAFETY: reads one entry of mimalloc's option table (initialising it from the
    // environment on first use); `PURGE_DELAY` is within the table (`_mi_option_last` is
    // 47 in v3).
    let ms = unsafe { mi_option_get(PURGE_DELAY) };
    #[allow(clippy::useless_conversion)] // `c_long` is 32 bits on some targets
    i64::from(ms)
}

/// Sets recd's purge delay unless the operator chose one. Must run before any thread is
/// started (mimalloc's option setters are not thread safe).
pub fn tune() -> Tuning {
    let current = purge_delay_ms();
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return Tuning::Operator(current);
    }
    if current != MIMALLOC_DEFAULT_MS {
        return Tuning::Unrecognized(current);
    }
    #[allow(unsafe_code)]
    // SAFETY: writes one entry of mimalloc's option table, checked above to be the purge
    // delay at its default; no other thread exists yet (see the function's docs).
    unsafe {
        mi_option_set(PURGE_DELAY, PURGE_DELAY_MS as std::ffi::c_long)
    };
    Tuning::Set(PURGE_DELAY_MS)
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    /// Runs [`child`] in a fresh copy of this test binary (so mimalloc's options start
    /// uninitialised and the environment is the one given) and returns what it printed.
    fn in_child(mode: &str, purge_delay: Option<&str>) -> String {
        let exe = std::env::current_exe().expect("the test binary's path");
        let mut cmd = Command::new(exe);
        cmd.args([
            "--exact",
            "allocator::tests::child",
            "--ignored",
            "--nocapture",
        ])
        .env("RECD_ALLOCATOR_TEST_CHILD", mode)
        .env_remove("MIMALLOC_PURGE_DELAY");
        if let Some(v) = purge_delay {
            cmd.env("MIMALLOC_PURGE_DELAY", v);
        }
        let out = cmd.output().expect("the child test runs");
        assert!(out.status.success(), "child failed: {out:?}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        stdout
            .lines()
            .find_map(|l| l.strip_prefix("ALLOCATOR "))
            .unwrap_or_else(|| panic!("no result line in {stdout}"))
            .to_string()
    }

    /// Not a test of its own: what [`in_child`] runs (ignored in a normal run).
    #[test]
    #[ignore = "run by the allocator tests in a child process"]
    fn child() {
        match std::env::var("RECD_ALLOCATOR_TEST_CHILD").as_deref() {
            Ok("read") => println!("ALLOCATOR {}", purge_delay_ms()),
            Ok("tune") => {
                let tuning = tune();
                println!("ALLOCATOR {tuning:?} {}", purge_delay_ms());
            }
            _ => {}
        }
    }

    #[test]
    fn the_option_recd_sets_is_the_one_mimalloc_purge_delay_names() {
        assert_eq!(in_child("read", Some("4321")), "4321");
        assert_eq!(in_child("read", None), MIMALLOC_DEFAULT_MS.to_string());
    }

    #[test]
    fn tuning_sets_recds_delay_and_leaves_the_operators_alone() {
        assert_eq!(
            in_child("tune", None),
            format!("Set({PURGE_DELAY_MS}) {PURGE_DELAY_MS}")
        );
        assert_eq!(in_child("tune", Some("250")), "Operator(250) 250");
    }
}
