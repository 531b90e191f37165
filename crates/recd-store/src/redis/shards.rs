//! Shards: how a deployment's keys spread over the masters of a Redis Cluster.
//!
//! The open-source search module has no cluster coordinator: an index sees only the keys
//! of the node it lives on. So a deployment on a cluster is cut into shards, each one hash
//! tag (`{prefix}{s<j>.<n>}:`), hence one slot, hence one master at a time: a shard's
//! items, docs, per-tag popularity sets, users, event log and its own search index (whose
//! name carries the tag) all live together. Every multi-key unit of the single-Redis
//! layout (an item upsert, a user's compare-and-set, a user's forget) stays inside one
//! shard and keeps its script. Items go to shard `hash(id) mod n`, users the same way; the
//! deployment's meta and its model registry live under their own tag (`{g}`).
//!
//! Queries fan out to every shard concurrently and merge the per-shard answers into one
//! exact top-k; a shard that does not answer fails the query (never a shorter list).
//!
//! The tags are chosen when the deployment is created so that shard `j` lands on master
//! `j mod masters` (its slot is searched by CRC16, as Redis computes it), and recorded in
//! the meta: later servers read them, whatever the topology is by then. A resharding
//! moves whole shards (a slot holds all of a shard), and an index follows by being
//! re-created where its shard's queries now land (see `RedisStore::query_index`). Set
//! `cluster_shards` at least to the masters the deployment may grow to.
//!
//! On a single Redis there is one shard: the deployment's own keys, unchanged.

use super::keys::Keys;

/// The tag of the deployment-wide keys (meta, model registry) on a cluster.
const GLOBAL_TAG: &str = "g";

/// The key prefix of a cluster deployment's shard (or global keys) with hash tag `tag`.
pub(crate) fn tagged_prefix(prefix: &str, tag: &str) -> String {
    format!("{prefix}{{{tag}}}:")
}

/// The prefix of the deployment-wide keys on a cluster.
pub(crate) fn global_prefix(prefix: &str) -> String {
    tagged_prefix(prefix, GLOBAL_TAG)
}

/// FNV-1a 64 of `id`: fixed forever (the data's place depends on it).
fn fnv1a(id: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The shard (of `n`) of an item or user id.
pub(crate) fn shard_of(id: &str, n: usize) -> usize {
    if n <= 1 {
        return 0;
    }
    (fnv1a(id) % n as u64) as usize
}

/// A hash tag for the keys of one id (any bytes) on a cluster: `{<kind><4 hex>}`, one of
/// 65,536 per kind, so that an id's keys share a slot and ids spread over every slot.
pub fn id_tag(kind: char, id: &str) -> String {
    format!("{{{kind}{:04x}}}", fnv1a(id) & 0xffff)
}

/// The Redis Cluster slot of `key` (CRC16/XMODEM of its hash tag, or of the whole key).
pub(crate) fn slot(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let tagged = bytes.iter().position(|b| *b == b'{').and_then(|open| {
        let close = bytes[open + 1..].iter().position(|b| *b == b'}')?;
        (close > 0).then(|| &bytes[open + 1..open + 1 + close])
    });
    crc16(tagged.unwrap_or(bytes)) % 16384
}

fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for b in bytes {
        crc ^= u16::from(*b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// Tags for `n` shards spread over `masters` (each a list of slot ranges): shard `j` gets
/// the first `s<j>.<i>` whose slot master `j mod masters` serves.
pub(crate) fn choose_tags(n: usize, masters: &[Vec<(u16, u16)>]) -> Option<Vec<String>> {
    if masters.is_empty() {
        return None;
    }
    (0..n)
        .map(|j| {
            let ranges = &masters[j % masters.len()];
            (0..1_000_000u32).map(|i| format!("s{j}.{i}")).find(|tag| {
                let s = slot(tag);
                ranges.iter().any(|(from, to)| (*from..=*to).contains(&s))
            })
        })
        .collect()
}

/// The keys of every shard of a deployment at one index version.
#[derive(Debug, Clone)]
pub(crate) struct Shards {
    /// One per shard; on a single Redis, just the deployment's keys.
    shards: Vec<Keys>,
    /// The shards' hash tags on a cluster (empty on a single Redis).
    tags: Vec<String>,
}

impl Shards {
    /// The single-Redis layout: one shard, the deployment's own keys.
    pub(crate) fn single(keys: Keys) -> Self {
        Shards {
            shards: vec![keys],
            tags: Vec::new(),
        }
    }

    /// A cluster deployment's shards from their recorded tags.
    pub(crate) fn cluster(prefix: &str, tags: &[String], version: u32) -> Self {
        Shards {
            shards: tags
                .iter()
                .map(|t| Keys::new(&tagged_prefix(prefix, t), version))
                .collect(),
            tags: tags.to_vec(),
        }
    }

    /// The shards' hash tags (empty on a single Redis).
    pub(crate) fn tags(&self) -> &[String] {
        &self.tags
    }

    /// Every shard's keys.
    pub(crate) fn all(&self) -> &[Keys] {
        &self.shards
    }

    /// How many shards there are.
    pub(crate) fn len(&self) -> usize {
        self.shards.len()
    }

    /// The index of the shard holding id `id` (an item or a user).
    pub(crate) fn index_of(&self, id: &str) -> usize {
        shard_of(id, self.shards.len())
    }

    /// The keys of the shard holding id `id`.
    pub(crate) fn of(&self, id: &str) -> &Keys {
        &self.shards[self.index_of(id)]
    }

    /// `ids` grouped by shard: (shard index, the positions in `ids` of its ids), in shard
    /// order, only shards with at least one.
    pub(crate) fn group<I: AsRef<str>>(&self, ids: &[I]) -> Vec<(usize, Vec<usize>)> {
        let mut by: Vec<Vec<usize>> = vec![Vec::new(); self.shards.len()];
        for (i, id) in ids.iter().enumerate() {
            by[self.index_of(id.as_ref())].push(i);
        }
        by.into_iter()
            .enumerate()
            .filter(|(_, v)| !v.is_empty())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_redis_slots() {
        // The check value of CRC16/XMODEM, and `CLUSTER KEYSLOT` answers from the Redis docs.
        assert_eq!(crc16(b"123456789"), 0x31c3);
        assert_eq!(slot("foo"), 12182);
        assert_eq!(slot("somekey"), 11058);
        assert_eq!(slot("{user1000}.following"), slot("{user1000}.followers"));
        assert_eq!(slot("foo{}{bar}"), slot("foo{}{bar}"));
        assert_ne!(slot("foo{}{bar}"), slot("bar"));
        assert_eq!(slot("foo{{bar}}zap"), slot("{bar"));
    }

    #[test]
    fn tags_land_on_their_masters() {
        let masters = vec![vec![(0, 5460)], vec![(5461, 10922)], vec![(10923, 16383)]];
        let tags = choose_tags(6, &masters).unwrap();
        for (j, tag) in tags.iter().enumerate() {
            let (from, to) = masters[j % 3][0];
            let key = format!("recd:{{{tag}}}:item:x");
            assert!((from..=to).contains(&slot(&key)), "{tag}");
        }
        assert!(choose_tags(3, &[]).is_none());
    }

    #[test]
    fn ids_spread_over_shards_and_stay_put() {
        let mut counts = [0usize; 3];
        for i in 0..3000 {
            counts[shard_of(&format!("item-{i}"), 3)] += 1;
        }
        assert!(counts.iter().all(|c| (800..1200).contains(c)), "{counts:?}");
        assert_eq!(shard_of("anything", 1), 0);
        // The placement is part of the data format: it must never change.
        // (FNV-1a 64 of "a" is 0xaf63dc4c8601ec8c.)
        assert_eq!(shard_of("a", 7), (0xaf63_dc4c_8601_ec8c_u64 % 7) as usize);
        assert_eq!(id_tag('u', "a"), "{uec8c}");
    }
}
