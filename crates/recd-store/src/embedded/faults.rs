//! Fault injection for the durability tests, in the style of redb's `CrashBackend`: a log
//! write that fails as a full disk does, a checkpoint that stops on either side of its redb
//! commit, and a store dropped the way a killed process leaves its files.
//!
//! Outside the crate's own tests nothing sets a fault; checking one costs an atomic load
//! per group of log writes and per checkpoint.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

/// Where a checkpoint stops when told to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointStop {
    /// After everything was applied to the redb transaction, before its commit.
    BeforeCommit,
    /// After the redb commit, before the absorbed log segments are deleted.
    AfterCommit,
}

/// The faults to inject; all off by default.
#[derive(Debug, Default)]
pub struct Faults {
    /// Log writes (and the rewrites that recover from them) write half their bytes, then
    /// fail with ENOSPC.
    disk_full: AtomicBool,
    /// 0: none; 1: [`CheckpointStop::BeforeCommit`]; 2: [`CheckpointStop::AfterCommit`].
    checkpoint_stop: AtomicU8,
    /// The store is going away like a killed process: pending records are dropped unwritten,
    /// nothing is synced, no final checkpoint runs.
    crashed: AtomicBool,
}

impl Faults {
    /// Whether log writes fail.
    pub fn disk_full(&self) -> bool {
        self.disk_full.load(Ordering::Relaxed)
    }

    /// Where checkpoints stop, if they do.
    pub fn checkpoint_stop(&self) -> Option<CheckpointStop> {
        match self.checkpoint_stop.load(Ordering::Relaxed) {
            1 => Some(CheckpointStop::BeforeCommit),
            2 => Some(CheckpointStop::AfterCommit),
            _ => None,
        }
    }

    /// Whether the store is being dropped as if killed.
    pub fn crashed(&self) -> bool {
        self.crashed.load(Ordering::Relaxed)
    }

    /// Makes log writes fail (or work again).
    #[cfg(test)]
    pub fn set_disk_full(&self, on: bool) {
        self.disk_full.store(on, Ordering::Relaxed);
    }

    /// Makes checkpoints stop at `at` (or run through).
    #[cfg(test)]
    pub fn set_checkpoint_stop(&self, at: Option<CheckpointStop>) {
        let v = match at {
            None => 0,
            Some(CheckpointStop::BeforeCommit) => 1,
            Some(CheckpointStop::AfterCommit) => 2,
        };
        self.checkpoint_stop.store(v, Ordering::Relaxed);
    }

    /// Marks the store as killed.
    #[cfg(test)]
    pub fn set_crashed(&self) {
        self.crashed.store(true, Ordering::Relaxed);
    }
}
