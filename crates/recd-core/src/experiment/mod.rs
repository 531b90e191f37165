//! Experiments (A/B tests, bandits, interleaving): the pure statistics and assignment core.
//!
//! Nothing here reads a clock, a file or the network: the server keeps the running counts
//! and passes them in, and randomness comes from a generator the caller provides (seeded
//! in tests), or from a seed derived from an id where a choice must be reproducible.
//!
//! - [`hash`]: the stable 64-bit hash that maps (experiment, user) to a point of [0, 1).
//! - [`assign`]: experiments, variants, holdouts, overrides and mutually exclusive layers.
//! - [`stats`]: intervals and tests of the results: proportions, ratio metrics (delta
//!   method), always-valid p-values (mSPRT), Bayesian comparison, sample-ratio mismatch,
//!   sample size, CUPED.
//! - [`bandit`]: Thompson sampling over Beta posteriors with a floor of exploration.
//! - [`interleave`]: team-draft interleaving of two rankers, its credit and sign test.

pub mod assign;
pub mod bandit;
pub mod hash;
pub mod interleave;
pub mod stats;

pub use assign::{
    Assignment, Experiment, ExperimentSpec, Layer, LayerSlot, LayerSlotSpec, LayerSpec, VariantSpec,
};
pub use bandit::Arm;
pub use hash::{bucket, layer_bucket, seed_from_id};
pub use interleave::{Outcome, Slot, Tally, Team};
pub use stats::{Interval, PairSums, Proportion, StatsError, ZTest};
