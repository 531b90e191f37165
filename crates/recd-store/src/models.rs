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
//!
//! A version may also have a transition table (item → its likely next items, the
//! serving pipeline's transitions source): one encoded list per item ([`encode_next`]).
//! Embedded: the redb table `model_next` ((seq, item) → list), the live version's loaded
//! in memory on first use. Redis: one Hash `{prefix}model-next:{seq}` (field: item id,
//! value: list), read with one `HMGET` of the recent items.

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

/// A successor list as stored: a `u32` count, then per entry a `u16` id length, the id's
/// UTF-8 bytes and the `f32` probability, all little endian.
pub(crate) fn encode_next(list: &[(String, f32)]) -> StoreResult<Vec<u8>> {
    let mut out = Vec::with_capacity(4 + list.iter().map(|(b, _)| 6 + b.len()).sum::<usize>());
    out.extend_from_slice(&(list.len() as u32).to_le_bytes());
    for (b, p) in list {
        let len = u16::try_from(b.len()).map_err(|_| {
            StoreError::Invalid(recd_core::ValidationError::new(
                "a transition's item id is longer than 65535 bytes",
            ))
        })?;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(b.as_bytes());
        out.extend_from_slice(&p.to_le_bytes());
    }
    Ok(out)
}

/// The check of [`encode_next`] without the encoding (a store that keeps lists decoded).
pub(crate) fn check_next(lists: &[crate::NextList]) -> StoreResult<()> {
    for (_, list) in lists {
        if list.iter().any(|(b, _)| b.len() > usize::from(u16::MAX)) {
            return Err(StoreError::Invalid(recd_core::ValidationError::new(
                "a transition's item id is longer than 65535 bytes",
            )));
        }
    }
    Ok(())
}

/// Reads [`encode_next`]'s bytes back; anything else is an internal error (the store
/// returned bytes it was not given).
pub(crate) fn decode_next(bytes: &[u8]) -> StoreResult<Vec<(String, f32)>> {
    let corrupt = || StoreError::Internal("corrupt transition list".into());
    let mut at = 0usize;
    let mut take = |n: usize| -> StoreResult<&[u8]> {
        let end = at.checked_add(n).ok_or_else(corrupt)?;
        let out = bytes.get(at..end).ok_or_else(corrupt)?;
        at = end;
        Ok(out)
    };
    let count = take(4)?;
    let n = u32::from_le_bytes([count[0], count[1], count[2], count[3]]) as usize;
    let mut out = Vec::with_capacity(n.min(1 << 12));
    for _ in 0..n {
        let len = take(2)?;
        let len = u16::from_le_bytes([len[0], len[1]]) as usize;
        let id = std::str::from_utf8(take(len)?)
            .map_err(|_| corrupt())?
            .to_owned();
        let p = take(4)?;
        out.push((id, f32::from_le_bytes([p[0], p[1], p[2], p[3]])));
    }
    if at != bytes.len() {
        return Err(corrupt());
    }
    Ok(out)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_successor_list_round_trips_and_corruption_is_an_error() {
        let list = vec![("sku-\u{e9}".to_string(), 0.75f32), ("a:b c".into(), 0.25)];
        let bytes = encode_next(&list).expect("encode");
        assert_eq!(decode_next(&bytes).expect("decode"), list);
        assert_eq!(
            decode_next(&encode_next(&[]).expect("empty")).expect("empty"),
            []
        );
        assert!(decode_next(&bytes[..bytes.len() - 1]).is_err());
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode_next(&longer).is_err());
        assert!(encode_next(&[("x".repeat(70_000), 1.0)]).is_err());
    }
}
