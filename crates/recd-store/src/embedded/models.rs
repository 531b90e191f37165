//! The model registry of the embedded backend (see `crate::models`): redb tables beside
//! the serving state for a data dir, maps in memory for an in-memory store.
//!
//! Registry writes do not go through the write log: they are rare, large and not on the
//! request path, so each is one durable redb transaction of its own (and a version is
//! listed only once its record is committed, after its chunks).

use std::collections::{BTreeMap, HashMap};

use redb::{ReadableDatabase, ReadableTable, TableDefinition};

use super::durable::Durable;
use crate::models::{decode_next, encode_next, live_kept, unknown};
use crate::{ModelRecord, ModelRegistry, NextList, StoreResult};

/// seq → the record's JSON.
pub(super) const MODELS: TableDefinition<u64, &[u8]> = TableDefinition::new("models");
/// (seq, chunk) → the chunk's bytes.
pub(super) const MODEL_CHUNKS: TableDefinition<(u64, u32), &[u8]> =
    TableDefinition::new("model_chunks");
/// seq (8 bytes big endian) followed by the item id → its successor list
/// (`crate::models::encode_next`): one version's lists are one contiguous key range.
pub(super) const MODEL_NEXT: TableDefinition<&[u8], &[u8]> = TableDefinition::new("model_next");
/// `meta` key: the last version number given (u64 LE).
const SEQ: &str = "model_seq";
/// `meta` key: the live version (u64 LE).
const LIVE: &str = "model_live";

/// The `MODEL_NEXT` key of `item` in version `seq`.
fn next_key(seq: u64, item: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + item.len());
    k.extend_from_slice(&seq.to_be_bytes());
    k.extend_from_slice(item.as_bytes());
    k
}

/// The live version's transition table, loaded once (see `Inner::live_next`).
#[derive(Debug, Default)]
pub(super) struct LiveNext {
    /// Item → its successors.
    pub(super) lists: HashMap<String, Vec<(String, f32)>>,
}

fn u64_of(bytes: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = bytes.len().min(8);
    b[..n].copy_from_slice(&bytes[..n]);
    u64::from_le_bytes(b)
}

/// The registry of an in-memory store.
#[derive(Debug, Default)]
pub(super) struct MemoryModels {
    seq: u64,
    records: BTreeMap<u64, ModelRecord>,
    chunks: BTreeMap<(u64, u32), Vec<u8>>,
    live: Option<u64>,
    next: BTreeMap<(u64, String), Vec<(String, f32)>>,
}

impl MemoryModels {
    pub(super) fn put_next(&mut self, seq: u64, lists: Vec<NextList>) {
        for (item, list) in lists {
            self.next.insert((seq, item), list);
        }
    }

    /// The live version's table.
    pub(super) fn live_next(&self) -> LiveNext {
        let Some(seq) = self.live else {
            return LiveNext::default();
        };
        let lists = self
            .next
            .range((seq, String::new())..)
            .take_while(|((s, _), _)| *s == seq)
            .map(|((_, item), list)| (item.clone(), list.clone()))
            .collect();
        LiveNext { lists }
    }

    pub(super) fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    pub(super) fn put_chunk(&mut self, seq: u64, index: u32, bytes: Vec<u8>) {
        self.chunks.insert((seq, index), bytes);
    }

    pub(super) fn chunk(&self, seq: u64, index: u32) -> Option<Vec<u8>> {
        self.chunks.get(&(seq, index)).cloned()
    }

    pub(super) fn put(&mut self, record: ModelRecord) {
        self.records.insert(record.seq, record);
    }

    pub(super) fn registry(&self) -> ModelRegistry {
        ModelRegistry {
            models: self.records.values().cloned().collect(),
            live: self.live,
        }
    }

    pub(super) fn set_live(&mut self, seq: u64) -> StoreResult<()> {
        if !self.records.contains_key(&seq) {
            return Err(unknown(seq));
        }
        self.live = Some(seq);
        Ok(())
    }

    pub(super) fn delete(&mut self, seq: u64) -> StoreResult<bool> {
        if self.live == Some(seq) {
            return Err(live_kept(seq));
        }
        self.chunks.retain(|(s, _), _| *s != seq);
        self.next.retain(|(s, _), _| *s != seq);
        Ok(self.records.remove(&seq).is_some())
    }
}

impl Durable {
    pub(super) fn next_model_seq(&self) -> StoreResult<u64> {
        self.write(|txn| {
            let mut meta = txn
                .open_table(super::durable::META)
                .map_err(|e| self.err(e))?;
            let next = meta
                .get(SEQ)
                .map_err(|e| self.err(e))?
                .map_or(0, |v| u64_of(v.value()))
                + 1;
            meta.insert(SEQ, next.to_le_bytes().as_slice())
                .map_err(|e| self.err(e))?;
            Ok(next)
        })
    }

    pub(super) fn put_model_chunk(&self, seq: u64, index: u32, bytes: &[u8]) -> StoreResult<()> {
        self.write(|txn| {
            txn.open_table(MODEL_CHUNKS)
                .map_err(|e| self.err(e))?
                .insert((seq, index), bytes)
                .map_err(|e| self.err(e))?;
            Ok(())
        })
    }

    pub(super) fn model_chunk(&self, seq: u64, index: u32) -> StoreResult<Option<Vec<u8>>> {
        self.with_db(|db| {
            let read = db.begin_read().map_err(|e| self.err(e))?;
            let table = read.open_table(MODEL_CHUNKS).map_err(|e| self.err(e))?;
            let got = table.get((seq, index)).map_err(|e| self.err(e))?;
            Ok(got.map(|v| v.value().to_vec()))
        })
    }

    pub(super) fn put_model(&self, record: &ModelRecord) -> StoreResult<()> {
        let bytes = record.encode()?;
        self.write(|txn| {
            txn.open_table(MODELS)
                .map_err(|e| self.err(e))?
                .insert(record.seq, bytes.as_slice())
                .map_err(|e| self.err(e))?;
            Ok(())
        })
    }

    pub(super) fn models(&self) -> StoreResult<ModelRegistry> {
        self.with_db(|db| {
            let read = db.begin_read().map_err(|e| self.err(e))?;
            let table = read.open_table(MODELS).map_err(|e| self.err(e))?;
            let mut models = Vec::new();
            for row in table.iter().map_err(|e| self.err(e))? {
                let (_, v) = row.map_err(|e| self.err(e))?;
                models.push(ModelRecord::decode(v.value())?);
            }
            let meta = read
                .open_table(super::durable::META)
                .map_err(|e| self.err(e))?;
            let live = meta
                .get(LIVE)
                .map_err(|e| self.err(e))?
                .map(|v| u64_of(v.value()));
            Ok(ModelRegistry { models, live })
        })
    }

    pub(super) fn set_live_model(&self, seq: u64) -> StoreResult<()> {
        self.write(|txn| {
            if txn
                .open_table(MODELS)
                .map_err(|e| self.err(e))?
                .get(seq)
                .map_err(|e| self.err(e))?
                .is_none()
            {
                return Err(unknown(seq));
            }
            txn.open_table(super::durable::META)
                .map_err(|e| self.err(e))?
                .insert(LIVE, seq.to_le_bytes().as_slice())
                .map_err(|e| self.err(e))?;
            Ok(())
        })
    }

    pub(super) fn delete_model(&self, seq: u64) -> StoreResult<bool> {
        self.write(|txn| {
            let live = txn
                .open_table(super::durable::META)
                .map_err(|e| self.err(e))?
                .get(LIVE)
                .map_err(|e| self.err(e))?
                .map(|v| u64_of(v.value()));
            if live == Some(seq) {
                return Err(live_kept(seq));
            }
            let mut chunks = txn.open_table(MODEL_CHUNKS).map_err(|e| self.err(e))?;
            chunks
                .retain_in((seq, 0)..=(seq, u32::MAX), |_, _| false)
                .map_err(|e| self.err(e))?;
            let mut next = txn.open_table(MODEL_NEXT).map_err(|e| self.err(e))?;
            let (from, to) = (seq.to_be_bytes(), (seq + 1).to_be_bytes());
            next.retain_in(from.as_slice()..to.as_slice(), |_, _| false)
                .map_err(|e| self.err(e))?;
            let existed = txn
                .open_table(MODELS)
                .map_err(|e| self.err(e))?
                .remove(seq)
                .map_err(|e| self.err(e))?
                .is_some();
            Ok(existed)
        })
    }

    pub(super) fn put_model_transitions(&self, seq: u64, lists: &[NextList]) -> StoreResult<()> {
        let encoded = lists
            .iter()
            .map(|(item, list)| Ok((next_key(seq, item), encode_next(list)?)))
            .collect::<StoreResult<Vec<_>>>()?;
        self.write(|txn| {
            let mut table = txn.open_table(MODEL_NEXT).map_err(|e| self.err(e))?;
            for (k, v) in &encoded {
                table
                    .insert(k.as_slice(), v.as_slice())
                    .map_err(|e| self.err(e))?;
            }
            Ok(())
        })
    }

    /// The live version's table, read in one transaction.
    pub(super) fn live_next(&self) -> StoreResult<LiveNext> {
        self.with_db(|db| {
            let read = db.begin_read().map_err(|e| self.err(e))?;
            let meta = read
                .open_table(super::durable::META)
                .map_err(|e| self.err(e))?;
            let Some(seq) = meta
                .get(LIVE)
                .map_err(|e| self.err(e))?
                .map(|v| u64_of(v.value()))
            else {
                return Ok(LiveNext::default());
            };
            let table = read.open_table(MODEL_NEXT).map_err(|e| self.err(e))?;
            let (from, to) = (seq.to_be_bytes(), (seq + 1).to_be_bytes());
            let mut lists = HashMap::new();
            for row in table
                .range(from.as_slice()..to.as_slice())
                .map_err(|e| self.err(e))?
            {
                let (k, v) = row.map_err(|e| self.err(e))?;
                let item = std::str::from_utf8(&k.value()[8..]).map_err(|_| {
                    crate::StoreError::Internal("a transition key is not UTF-8".into())
                })?;
                lists.insert(item.to_owned(), decode_next(v.value())?);
            }
            Ok(LiveNext { lists })
        })
    }
}
