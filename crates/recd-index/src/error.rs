//! The crate's error type: everything a caller can get wrong when handing vectors to the index.
//!
//! Every variant but one is a *user* error (bad input); the exception is
//! [`IndexError::Storage`], the int8 mode's vector file failing to grow (internal invariants
//! are `expect`ed with a message instead).

/// Why a vector (stored or query) was rejected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum IndexError {
    /// The vector's length differs from the index dimension.
    #[error("vector has dimension {got}, the index expects {expected}")]
    DimensionMismatch {
        /// The index dimension.
        expected: usize,
        /// The length of the vector that was given.
        got: usize,
    },
    /// A component is NaN or infinite.
    #[error("vector component {position} is not a finite number")]
    NonFinite {
        /// Index of the first offending component.
        position: usize,
    },
    /// The squared norm does not fit in an `f32`, so scores would overflow.
    #[error("vector norm is too large to score without overflow")]
    NormOverflow,
    /// An all-zero vector under the cosine metric (its direction is undefined).
    #[error("zero vector has no direction under the cosine metric")]
    ZeroVector,
    /// The index already holds `u32::MAX` nodes.
    #[error("the index is full")]
    Full,
    /// The file holding an int8 index's `f32` vectors could not grow (disk full, say);
    /// nothing was written.
    #[error("cannot store the vector: {0}")]
    Storage(String),
}

/// Why a snapshot could not be loaded. Every variant means "rebuild instead": a snapshot
/// is a cache of the index, never the only copy of anything.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// The bytes are not a snapshot at all.
    #[error("not an index snapshot")]
    NotASnapshot,
    /// The file ends early (a write that never finished, or a cut copy).
    #[error("the snapshot is truncated")]
    Truncated,
    /// The checksum does not match the contents.
    #[error("the snapshot's checksum does not match its contents")]
    Checksum,
    /// Written by another version of the format.
    #[error("snapshot format version {0} is not supported")]
    Version(u32),
    /// Made for an index of another dimension, metric or `m`.
    #[error("the snapshot was made for another index: {0}")]
    Mismatch(String),
    /// Intact bytes describing an impossible graph.
    #[error("the snapshot is inconsistent: {0}")]
    Corrupt(String),
}
