//! Model versions: every `recd train` run is recorded as a version (`v1`, `v2`, ...) with
//! its vectors, its settings and its quality-gate figures; one version is live, and an
//! older one can be made live again (rollback) without stopping serving.
//!
//! The store keeps the registry (`recd_store::models`); this module gives it meaning:
//! - a version's vectors are stored as [`ModelChunk`]s, encoded compactly
//!   ([`ModelChunk::encode`]: ids and little-endian `f32`s), a batch of vectors each;
//! - [`ModelInfo`] is what the trainer records (creation time, settings, gate, counts);
//! - [`Engine::activate_model`] writes a version's vectors into the serving state through
//!   the same path as a training write-back (item vectors, then users' long-term vectors,
//!   then every logged user's session rebuilt with the new item vectors, which drops every
//!   cached list), then records it as live. Requests keep being answered throughout (old
//!   vectors until new ones land). Vectors the version does not have (items or users it
//!   never trained on) are left as they are.
//! - retention: after a version is recorded, the oldest versions beyond
//!   `[model] keep_versions` are deleted, never the live one, a ranker a strategy pins
//!   (`"ranker": "v7"`), nor the newest accepted ranker (`"latest"`); those are kept
//!   even when that leaves more than `keep_versions`.
//!
//! Activations of one server are serialized; two servers activating different versions of
//! one Redis deployment at the same moment would interleave their writes (the last one to
//! finish is recorded live, and activating it again settles the vectors).

use recd_store::{ModelRecord, ModelRegistry};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Engine;
use crate::failure::{EngineError, EngineResult};

/// Users per session rebuild during an activation (each rebuild drops the cached lists).
const SESSION_BATCH: usize = 1000;

/// A batch of a version's vectors: items' and users' (either list may be empty).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelChunk {
    /// (item id, vector).
    pub items: Vec<(String, Vec<f32>)>,
    /// (user id, long-term vector).
    pub users: Vec<(String, Vec<f32>)>,
}

/// Leading bytes of an encoded chunk (format 1).
const MAGIC: &[u8; 4] = b"RMC1";

impl ModelChunk {
    /// `RMC1`, then per list (items, users): a `u32` count, then per row a `u16` id
    /// length, the id's UTF-8 bytes, a `u32` length and the vector's `f32`s, all little
    /// endian.
    pub fn encode(&self) -> Vec<u8> {
        let size: usize = self
            .items
            .iter()
            .chain(&self.users)
            .map(|(id, v)| 6 + id.len() + 4 * v.len())
            .sum();
        let mut out = Vec::with_capacity(12 + size);
        out.extend_from_slice(MAGIC);
        for list in [&self.items, &self.users] {
            out.extend_from_slice(&(list.len() as u32).to_le_bytes());
            for (id, v) in list {
                // ids are at most 256 bytes (recd_core::id)
                out.extend_from_slice(&(id.len() as u16).to_le_bytes());
                out.extend_from_slice(id.as_bytes());
                out.extend_from_slice(&(v.len() as u32).to_le_bytes());
                for x in v {
                    out.extend_from_slice(&x.to_le_bytes());
                }
            }
        }
        out
    }

    /// Reads [`ModelChunk::encode`]'s bytes back; anything else is an internal error
    /// (the store returned bytes it was not given).
    pub fn decode(bytes: &[u8]) -> EngineResult<Self> {
        let corrupt = |what: &str| EngineError::Internal(format!("corrupt model chunk: {what}"));
        let mut r = Reader { bytes, at: 0 };
        if r.take(4).ok_or_else(|| corrupt("too short"))? != MAGIC {
            return Err(corrupt("unknown format"));
        }
        let mut lists = [Vec::new(), Vec::new()];
        for list in &mut lists {
            let n = r.u32().ok_or_else(|| corrupt("truncated count"))? as usize;
            list.reserve(n.min(1 << 16));
            for _ in 0..n {
                let len = r.u16().ok_or_else(|| corrupt("truncated id"))? as usize;
                let id = r.take(len).ok_or_else(|| corrupt("truncated id"))?;
                let id = std::str::from_utf8(id).map_err(|_| corrupt("id is not UTF-8"))?;
                let dim = r.u32().ok_or_else(|| corrupt("truncated vector"))? as usize;
                let raw = r
                    .take(dim.checked_mul(4).ok_or_else(|| corrupt("vector length"))?)
                    .ok_or_else(|| corrupt("truncated vector"))?;
                let v = raw
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect();
                list.push((id.to_string(), v));
            }
        }
        if r.at != bytes.len() {
            return Err(corrupt("trailing bytes"));
        }
        let [items, users] = lists;
        Ok(ModelChunk { items, users })
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(n)?;
        let out = self.bytes.get(self.at..end)?;
        self.at = end;
        Some(out)
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// What the trainer records about a version (the record's `info`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelInfo {
    /// When it was trained (RFC 3339).
    pub created_at: String,
    /// Whether it may go live: it passed the quality gate, or was forced.
    pub accepted: bool,
    /// The training settings (factors, iterations, regularization, alpha, seed, source...).
    #[serde(default)]
    #[schema(value_type = Object, nullable = true)]
    pub settings: Value,
    /// The quality gate's figures and verdict.
    #[serde(default)]
    #[schema(value_type = Object, nullable = true)]
    pub gate: Value,
    /// Sizes (vectors, interactions, held-out events...).
    #[serde(default)]
    #[schema(value_type = Object, nullable = true)]
    pub counts: Value,
}

/// One version as `GET /v1/models` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ModelView {
    /// `v{n}`.
    pub version: String,
    /// When it was trained (RFC 3339).
    pub created_at: String,
    /// `live`, `available` (accepted, not live) or `rejected` (failed the gate).
    #[schema(value_type = String, pattern = "^(live|available|rejected)$")]
    pub status: &'static str,
    /// Whether it is the live version.
    pub live: bool,
    /// The training settings.
    #[schema(value_type = Object, nullable = true)]
    pub settings: Value,
    /// The quality gate's figures and verdict.
    #[schema(value_type = Object, nullable = true)]
    pub gate: Value,
    /// Sizes.
    #[schema(value_type = Object, nullable = true)]
    pub counts: Value,
    /// Stored vector chunks.
    pub chunks: u32,
}

/// `GET /v1/models`.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ModelsAnswer {
    /// Every kept version, oldest first.
    pub models: Vec<ModelView>,
    /// The live version, if any.
    #[schema(required = true)]
    pub live: Option<String>,
    /// `[model] gate_margin`: how much worse than the live model a new one may rank.
    pub gate_margin: f64,
    /// `[model] keep_versions`: how many versions are kept.
    pub keep_versions: usize,
}

/// What an activation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Activated {
    /// Item vectors replaced.
    pub items: usize,
    /// Item ids of the version the catalog no longer has (skipped).
    pub unknown_items: usize,
    /// Users' long-term vectors set.
    pub users: usize,
    /// Users whose session was rebuilt.
    pub sessions: usize,
    /// It was live already: nothing was written.
    pub already_live: bool,
}

/// Now, RFC 3339 (a version's `created_at`).
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// `v12` → 12; anything else is no version.
pub fn parse_version(version: &str) -> Option<u64> {
    let digits = version.strip_prefix('v')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|n| *n > 0)
}

/// `12` → `v12`.
pub fn version_name(seq: u64) -> String {
    format!("v{seq}")
}

fn not_found(version: &str) -> EngineError {
    EngineError::NotFound(format!(
        "model version '{version}' does not exist (GET /v1/models lists them)"
    ))
}

fn view(record: &ModelRecord, live: Option<u64>) -> ModelView {
    let info: Option<ModelInfo> = serde_json::from_value(record.info.clone()).ok();
    let is_live = live == Some(record.seq);
    let accepted = info.as_ref().is_some_and(|i| i.accepted);
    ModelView {
        version: version_name(record.seq),
        created_at: info
            .as_ref()
            .map(|i| i.created_at.clone())
            .unwrap_or_default(),
        status: if is_live {
            "live"
        } else if accepted {
            "available"
        } else {
            "rejected"
        },
        live: is_live,
        settings: info
            .as_ref()
            .map(|i| i.settings.clone())
            .unwrap_or(Value::Null),
        gate: info.as_ref().map(|i| i.gate.clone()).unwrap_or(Value::Null),
        counts: info.map(|i| i.counts).unwrap_or(Value::Null),
        chunks: record.chunks,
    }
}

impl Engine {
    /// Every kept version, and which is live.
    pub async fn models(&self) -> EngineResult<ModelsAnswer> {
        let ModelRegistry { models, live } = self.store.models().await?;
        Ok(ModelsAnswer {
            models: models.iter().map(|r| view(r, live)).collect(),
            live: live.map(version_name),
            gate_margin: self.config.model.gate_margin,
            keep_versions: self.config.model.keep_versions,
        })
    }

    /// A new version number for a training run about to store its vectors.
    pub async fn new_model_version(&self) -> EngineResult<String> {
        Ok(version_name(self.store.next_model_seq().await?))
    }

    /// Stores chunk `index` of `version`'s vectors. The version must not be recorded yet
    /// (a recorded version's vectors never change).
    pub async fn put_model_chunk(
        &self,
        version: &str,
        index: u32,
        chunk: &ModelChunk,
    ) -> EngineResult<()> {
        let seq = parse_version(version).ok_or_else(|| not_found(version))?;
        let registry = self.store.models().await?;
        if registry.models.iter().any(|m| m.seq == seq) {
            return Err(EngineError::Conflict(format!(
                "model version '{version}' is recorded: its vectors cannot change"
            )));
        }
        Ok(self
            .store
            .put_model_chunk(seq, index, chunk.encode())
            .await?)
    }

    /// Stores part of `version`'s transition table. The version must not be recorded yet
    /// (a recorded version never changes).
    pub async fn put_model_transitions(
        &self,
        version: &str,
        lists: Vec<recd_store::NextList>,
    ) -> EngineResult<()> {
        let seq = parse_version(version).ok_or_else(|| not_found(version))?;
        let registry = self.store.models().await?;
        if registry.models.iter().any(|m| m.seq == seq) {
            return Err(EngineError::Conflict(format!(
                "model version '{version}' is recorded: its transitions cannot change"
            )));
        }
        Ok(self.store.put_model_transitions(seq, lists).await?)
    }

    /// Chunk `index` of a recorded `version`.
    pub async fn model_chunk(&self, version: &str, index: u32) -> EngineResult<ModelChunk> {
        let seq = parse_version(version).ok_or_else(|| not_found(version))?;
        let registry = self.store.models().await?;
        let Some(record) = registry.models.iter().find(|m| m.seq == seq) else {
            return Err(not_found(version));
        };
        if index >= record.chunks {
            return Err(EngineError::NotFound(format!(
                "model version '{version}' has {} chunks (0 to {})",
                record.chunks,
                record.chunks.saturating_sub(1)
            )));
        }
        match self.store.model_chunk(seq, index).await? {
            Some(bytes) => ModelChunk::decode(&bytes),
            None => Err(EngineError::Internal(format!(
                "model version '{version}' lacks its chunk {index}"
            ))),
        }
    }

    /// Records `version` (whose `chunks` vector chunks are stored), then deletes the
    /// oldest versions beyond `[model] keep_versions` (never the live one, this one, nor a
    /// ranker that is pinned or serves `"latest"`).
    pub async fn record_model(
        &self,
        version: &str,
        chunks: u32,
        info: ModelInfo,
    ) -> EngineResult<ModelView> {
        let seq = parse_version(version).ok_or_else(|| not_found(version))?;
        for index in 0..chunks {
            if self.store.model_chunk(seq, index).await?.is_none() {
                // The request names a chunk that is not there: not found, like a version
                // that is not there (the chunk count itself is any u32).
                return Err(EngineError::NotFound(format!(
                    "model version '{version}' lacks its chunk {index} of {chunks} (PUT it first)"
                )));
            }
        }
        let info = serde_json::to_value(info)
            .map_err(|e| EngineError::Internal(format!("model info: {e}")))?;
        let record = ModelRecord { seq, chunks, info };
        self.store.put_model(record.clone()).await?;
        let registry = self.store.models().await?;
        let keep = self.config.model.keep_versions.max(1);
        let pinned = self.pinned_rankers(&registry);
        let mut excess = registry.models.len().saturating_sub(keep);
        for old in &registry.models {
            if excess == 0 {
                break;
            }
            if Some(old.seq) == registry.live || old.seq == seq || pinned.contains(&old.seq) {
                continue;
            }
            if let Err(e) = self.store.delete_model(old.seq).await {
                tracing::warn!(version = old.seq, cause = %e, "could not delete an old model version");
            } else {
                tracing::info!(version = %version_name(old.seq), "deleted an old model version (keep_versions)");
            }
            excess -= 1;
        }
        Ok(view(&record, registry.live))
    }

    /// The ranker versions retention must keep: every version a strategy pins
    /// (`"ranking": {"ranker": "v7"}`), and the newest accepted ranker (what `"latest"`
    /// serves). Deleting one would silently send its strategies back to the fixed blend.
    fn pinned_rankers(&self, registry: &ModelRegistry) -> Vec<u64> {
        let mut pinned: Vec<u64> = self
            .experiments
            .strategies()
            .values()
            .filter_map(|s| s.ranking.ranker.as_deref())
            .filter_map(parse_version)
            .collect();
        let latest = registry
            .models
            .iter()
            .filter(|m| {
                crate::features::is_ranker(&m.info)
                    && m.info.get("accepted").and_then(Value::as_bool) == Some(true)
            })
            .map(|m| m.seq)
            .max();
        pinned.extend(latest);
        pinned
    }

    /// Records `version` as live without writing vectors: for a trainer that wrote the
    /// version's vectors itself (`recd train --target`).
    pub async fn mark_model_live(&self, version: &str) -> EngineResult<()> {
        let seq = parse_version(version).ok_or_else(|| not_found(version))?;
        self.store.set_live_model(seq).await.map_err(|e| match e {
            recd_store::StoreError::Invalid(_) => not_found(version),
            other => other.into(),
        })?;
        // Drift is judged against the model now serving: pin new references.
        self.monitor.reset();
        self.content_map_of(seq).await;
        Ok(())
    }

    /// The content map of the version `seq` that just went live (logged, never failing:
    /// the version is live either way).
    async fn content_map_of(&self, seq: u64) {
        if let Err(e) = self.keep_content_map(seq).await {
            metrics::counter!("recd_new_item_failures_total", "op" => "activation").increment(1);
            tracing::warn!(version = %version_name(seq), cause = %e, "no content map for the live model");
        }
    }

    /// [`Engine::place_new_items`], logged instead of failing.
    pub async fn place_new_items_logged(&self) {
        if let Err(e) = self.place_new_items().await {
            metrics::counter!("recd_new_item_failures_total", "op" => "activation").increment(1);
            tracing::warn!(cause = %e, "new items not placed in the live model");
        }
    }

    /// Makes `version` live: writes its vectors into the serving state, rebuilds every
    /// logged user's session with the new item vectors (dropping every cached list), and
    /// records it live (see the module doc). Activating the live version does nothing.
    pub async fn activate_model(&self, version: &str) -> EngineResult<Activated> {
        let seq = parse_version(version).ok_or_else(|| not_found(version))?;
        let _one_at_a_time = self.activation.lock().await;
        let registry = self.store.models().await?;
        let Some(record) = registry.models.iter().find(|m| m.seq == seq) else {
            return Err(not_found(version));
        };
        if crate::features::is_ranker(&record.info) {
            return Err(EngineError::Invalid(recd_core::ValidationError::new(
                format!(
                    "model version '{version}' is a learned ranker: a strategy serves it \
                 (\"ranking\": {{\"ranker\": \"{version}\"}}, or \"latest\"); rolling back is \
                 naming an older version there"
                ),
            )));
        }
        if registry.live == Some(seq) {
            return Ok(Activated {
                items: 0,
                unknown_items: 0,
                users: 0,
                sessions: 0,
                already_live: true,
            });
        }
        let mut done = Activated {
            items: 0,
            unknown_items: 0,
            users: 0,
            sessions: 0,
            already_live: false,
        };
        for index in 0..record.chunks {
            let Some(bytes) = self.store.model_chunk(seq, index).await? else {
                return Err(EngineError::Internal(format!(
                    "model version '{version}' lacks its chunk {index}"
                )));
            };
            let chunk = ModelChunk::decode(&bytes)?;
            let written = self.write_vectors(chunk.items, chunk.users).await?;
            done.items += written.items;
            done.unknown_items += written.unknown_items;
            done.users += written.users;
        }
        let mut users: Vec<String> = self
            .store
            .events()
            .await?
            .into_iter()
            .map(|e| e.user_id)
            .collect();
        users.sort_unstable();
        users.dedup();
        for batch in users.chunks(SESSION_BATCH) {
            done.sessions += self.rebuild_sessions(batch).await?;
        }
        if users.is_empty() && self.caches.enabled() {
            self.caches.lists_changed().await;
        }
        self.store.set_live_model(seq).await?;
        // Drift is judged against the model now serving: pin new references.
        self.monitor.reset();
        self.content_map_of(seq).await;
        self.place_new_items_logged().await;
        tracing::info!(
            version,
            items = done.items,
            users = done.users,
            sessions = done.sessions,
            "model version activated"
        );
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_round_trips_and_corruption_is_an_error() {
        let chunk = ModelChunk {
            items: vec![
                ("sku-\u{e9}".into(), vec![1.5, -0.0, f32::MIN_POSITIVE]),
                ("x".into(), vec![]),
            ],
            users: vec![("u:1".into(), vec![0.25; 64])],
        };
        let bytes = chunk.encode();
        assert_eq!(ModelChunk::decode(&bytes).expect("decode"), chunk);
        assert_eq!(
            ModelChunk::decode(&ModelChunk::default().encode()).expect("empty"),
            ModelChunk::default()
        );
        for bad in [
            &bytes[..bytes.len() - 1],
            &bytes[..3],
            b"XXXX\0\0\0\0\0\0\0\0",
        ] {
            assert!(matches!(
                ModelChunk::decode(bad),
                Err(EngineError::Internal(_))
            ));
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(ModelChunk::decode(&longer).is_err());
    }

    #[test]
    fn versions_parse_strictly() {
        assert_eq!(parse_version("v1"), Some(1));
        assert_eq!(parse_version("v42"), Some(42));
        for bad in [
            "",
            "v",
            "1",
            "v0",
            "v-1",
            "v1.0",
            "V1",
            "v 1",
            "v99999999999999999999",
        ] {
            assert_eq!(parse_version(bad), None, "{bad}");
        }
        assert_eq!(version_name(7), "v7");
    }
}
