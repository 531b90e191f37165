//! The interface every model under offline evaluation implements.
//!
//! It has a module of its own so that the models ([`crate::als`], [`crate::baselines`]) and
//! the protocol that runs them ([`crate::eval`]) both depend on it and not on each other.

/// A model under offline evaluation.
pub trait Recommender: Sync {
    /// Up to `k` item indices for `user`, best first, none in the sorted `exclude`.
    fn recommend(&self, user: u32, k: usize, exclude: &[u32]) -> Vec<u32>;
}
