//! The model registry's records: every `recd train` run becomes a version whose vectors
//! are kept beside the serving state, so that an older model can be put back
//! (`POST /v1/models/{version}/activate`, `recd model activate`).
//!
//! The store keeps three things and knows nothing of what they mean:
//! - a counter ([`Store::next_model_seq`](crate::Store::next_model_seq)): version numbers
//!   are monotonic and never reused, even after a version is deleted;
//! - per version, its vectors as opaque chunks of bytes (the server encodes them, a few
//!   thousand vectors per chunk, so that no single value or write is large);
//! - per version, a [`ModelRecord`] (written after its chunks: a listed version is
//!   complete), and which version is live.
//!
//! Embedded: redb tables `models` (seq → record JSON) and `model_chunks` ((seq, chunk) →
//! bytes) and two `meta` keys, each write one durable redb transaction (an in-memory store
//! keeps them in memory). Redis: `{prefix}model:seq` (INCR), `{prefix}models` (Hash seq →
//! record JSON), `{prefix}model:live`, and one Hash `{prefix}model:{seq}` of chunks per
//! version (so deleting a version is one `DEL`, and nothing is ever scanned).

use serde::{Deserialize, Serialize};

use crate::{StoreError, StoreResult};

/// One version as the registry records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelRecord {
    /// The version number (`v{seq}` in the API), from `Store::next_model_seq`.
    pub seq: u64,
    /// How many vector chunks it has: `0..chunks`, each stored before this record.
    pub chunks: u32,
    /// What the trainer records about it (creation time, settings, gate metrics, counts):
    /// a JSON object the store keeps as given.
    pub info: serde_json::Value,
}

impl ModelRecord {
    /// The record as stored.
    pub(crate) fn encode(&self) -> StoreResult<Vec<u8>> {
        serde_json::to_vec(self).map_err(|e| StoreError::Internal(format!("model record: {e}")))
    }

    /// A stored record.
    pub(crate) fn decode(bytes: &[u8]) -> StoreResult<Self> {
        serde_json::from_slice(bytes)
            .map_err(|e| StoreError::Internal(format!("corrupt model record: {e}")))
    }
}

/// The registry's content.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelRegistry {
    /// Every recorded version, oldest (lowest seq) first.
    pub models: Vec<ModelRecord>,
    /// The live version's seq, if one was ever activated.
    pub live: Option<u64>,
}

/// The error for activating or deleting a version that is not recorded.
pub(crate) fn unknown(seq: u64) -> StoreError {
    StoreError::Invalid(recd_core::ValidationError::new(format!(
        "model version v{seq} does not exist"
    )))
}

/// The error for deleting the live version.
pub(crate) fn live_kept(seq: u64) -> StoreError {
    StoreError::Invalid(recd_core::ValidationError::new(format!(
        "model version v{seq} is live and cannot be deleted"
    )))
}
