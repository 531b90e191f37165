//! Fault injection for the durability tests, in the style of redb's `CrashBackend`: a log
//! write that fails as a full disk does, a checkpoint that stops on either side of its redb
//! commit (or pauses before it while writers go on), and a store dropped the way a killed
//! process leaves its files.
//!
//! Outside the crate's own tests nothing sets a fault; checking one costs an atomic load
//! per group of log writes and per checkpoint.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use parking_lot::{Condvar, Mutex};

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
    /// Checkpoints pause once they have read the log, before their commit, until released
    /// (the fast path's check; `hold` has the state).
    hold_armed: AtomicBool,
    /// The hold is for the idle background's checkpoints only.
    hold_background_only: AtomicBool,
    hold: Mutex<Hold>,
    hold_changed: Condvar,
}

/// A checkpoint hold's state.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Hold {
    #[default]
    Off,
    /// The next checkpoint pauses.
    Armed,
    /// A checkpoint is paused.
    Reached,
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

    /// Where a checkpoint that has read the log and not yet committed pauses while a test
    /// holds it (no-op otherwise); `background`: it is the idle background's.
    pub fn checkpoint_pause(&self, background: bool) {
        if !self.hold_armed.load(Ordering::Relaxed)
            || (self.hold_background_only.load(Ordering::Relaxed) && !background)
        {
            return;
        }
        let mut h = self.hold.lock();
        if *h == Hold::Armed {
            *h = Hold::Reached;
            self.hold_changed.notify_all();
        }
        while *h == Hold::Reached {
            self.hold_changed.wait(&mut h);
        }
    }

    /// Makes the next checkpoint pause before its commit (see [`Self::checkpoint_pause`]).
    #[cfg(test)]
    pub fn hold_checkpoint(&self) {
        *self.hold.lock() = Hold::Armed;
        self.hold_background_only.store(false, Ordering::Relaxed);
        self.hold_armed.store(true, Ordering::Relaxed);
    }

    /// Makes the idle background's next checkpoint pause before its commit (others run
    /// through).
    #[cfg(test)]
    pub fn hold_background_checkpoint(&self) {
        *self.hold.lock() = Hold::Armed;
        self.hold_background_only.store(true, Ordering::Relaxed);
        self.hold_armed.store(true, Ordering::Relaxed);
    }

    /// Waits until a held checkpoint has paused.
    #[cfg(test)]
    pub fn wait_checkpoint_held(&self) {
        let mut h = self.hold.lock();
        while *h == Hold::Armed {
            self.hold_changed.wait(&mut h);
        }
    }

    /// Lets a paused checkpoint go on; later checkpoints do not pause.
    #[cfg(test)]
    pub fn release_checkpoint(&self) {
        self.hold_armed.store(false, Ordering::Relaxed);
        *self.hold.lock() = Hold::Off;
        self.hold_changed.notify_all();
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
