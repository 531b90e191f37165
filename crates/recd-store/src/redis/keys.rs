//! Key names of one deployment: everything lives under the configured prefix.
//!
//! Ids may contain any character but control characters (`:` included), so a key never
//! has anything *after* an id: each kind of per-user key gets its own family
//! (`user:`, `recent:`, `purchased:`, `user-events:`) instead of `user:{id}:purchased`,
//! which user `"a:purchased"` would collide with.
//!
//! Items of index version 1 live at `{prefix}item:{id}`; a later version `N` (after a
//! schema or dimension change, see [`super::RedisStore::migrate`]) at `{prefix}item.vN:{id}`.
//! No version's key prefix is a prefix of another's, so each index sees only its own hashes.
//! The per-tag popularity ZSETs (`popby:` / `popby.vN:`) and the item docs (`doc:` /
//! `doc.vN:`) are versioned the same way, since both depend on the schema.

/// The keys of one deployment at one index version.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    prefix: String,
    version: u32,
    item_prefix: String,
    popular_by_prefix: String,
    doc_prefix: String,
    ids: String,
}

impl Keys {
    pub(crate) fn new(prefix: &str, version: u32) -> Self {
        Self {
            prefix: prefix.to_string(),
            version,
            item_prefix: item_prefix(prefix, version),
            popular_by_prefix: versioned(prefix, "popby", version),
            doc_prefix: versioned(prefix, "doc", version),
            ids: if version <= 1 {
                format!("{prefix}ids")
            } else {
                format!("{prefix}ids.v{version}")
            },
        }
    }

    /// The index version these keys belong to.
    pub(crate) fn version(&self) -> u32 {
        self.version
    }

    /// `{prefix}meta`: the current index version and the schema it was created for.
    pub(crate) fn meta(&self) -> String {
        format!("{}meta", self.prefix)
    }

    /// `{prefix}idx:items`: the alias every query goes through.
    pub(crate) fn alias(&self) -> String {
        format!("{}idx:items", self.prefix)
    }

    /// `{prefix}idx:items@<node id>`: on a cluster, the alias of the shard's index set by
    /// master `node` once the index there was complete (see `super::reshard`).
    pub(crate) fn alias_at(&self, node: &str) -> String {
        format!("{}idx:items@{node}", self.prefix)
    }

    /// `{prefix}idx:items:vN`: the index of this version.
    pub(crate) fn index(&self) -> String {
        format!("{}idx:items:v{}", self.prefix, self.version)
    }

    /// The key prefix of this version's item hashes.
    pub(crate) fn item_prefix(&self) -> &str {
        &self.item_prefix
    }

    pub(crate) fn item(&self, id: &str) -> String {
        format!("{}{id}", self.item_prefix)
    }

    /// The id of an item key of this version.
    pub(crate) fn item_id<'a>(&self, key: &'a str) -> Option<&'a str> {
        key.strip_prefix(self.item_prefix.as_str())
    }

    /// The id of an item key of any version (a query through the alias may meet a newer
    /// version's keys right after a migration).
    pub(crate) fn any_item_id<'a>(&self, key: &'a str) -> Option<&'a str> {
        self.any_item_version(key).map(|(_, id)| id)
    }

    /// The version and id of an item key of any version.
    fn any_item_version<'a>(&self, key: &'a str) -> Option<(u32, &'a str)> {
        let rest = key.strip_prefix(self.prefix.as_str())?;
        if let Some(id) = rest.strip_prefix("item:") {
            return Some((1, id));
        }
        let rest = rest.strip_prefix("item.v")?;
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        let version = rest[..digits].parse().ok()?;
        Some((version, rest[digits..].strip_prefix(':')?))
    }

    /// `{prefix}doc:{id}` (`doc.vN:` at later versions): the item's fields (no vector) in
    /// one string, written together with its hash, so that fetching many items is one
    /// `MGET` (a pipelined `HMGET` per item cost Redis ~4x more).
    /// `{prefix}newitem:{id}` (versioned like the items): the interaction list of a new
    /// item (JSON `[[user, weight], ...]`), present while the item is new
    /// (`Store::touch_new_items`). In the item's slot on a cluster.
    pub(crate) fn new_item(&self, id: &str) -> String {
        format!("{}{id}", versioned(&self.prefix, "newitem", self.version))
    }

    pub(crate) fn doc(&self, id: &str) -> String {
        format!("{}{id}", self.doc_prefix)
    }

    /// The doc key of an item key of any version.
    pub(crate) fn doc_of_item_key(&self, key: &str) -> Option<String> {
        let (version, id) = self.any_item_version(key)?;
        // Nearly every hit is of this version: no `Keys` of another version to build (that
        // was ~2.5 % of a redis-backed server's CPU, one per KNN hit).
        if version == self.version {
            return Some(self.doc(id));
        }
        Some(Keys::new(&self.prefix, version).doc(id))
    }

    /// A `SCAN MATCH` pattern for this version's doc keys.
    pub(crate) fn doc_pattern(&self) -> String {
        glob_prefix(&self.doc_prefix)
    }

    /// ZSET (all scores 0) of this version's item ids, kept by the item scripts, so that
    /// listing items in id order is `ZRANGE ... BYLEX` from a cursor and counting them is
    /// `ZCARD` (an `FT.SEARCH * LIMIT 0 0` iterates every document: 64 ms on 100k items,
    /// during which Redis serves no one else).
    pub(crate) fn ids(&self) -> &str {
        &self.ids
    }

    /// The keys of another version of the same deployment.
    pub(crate) fn at_version(&self, version: u32) -> Keys {
        Keys::new(&self.prefix, version)
    }

    /// A `SCAN MATCH` pattern for this version's item keys (glob characters escaped).
    pub(crate) fn item_pattern(&self) -> String {
        glob_prefix(&self.item_prefix)
    }

    /// ZSET id → log-domain popularity, also for ids that are not (yet) items.
    pub(crate) fn popularity(&self) -> String {
        format!("{}popularity", self.prefix)
    }

    /// The key prefix of this version's per-tag popularity ZSETs (see [`Keys::popular_by`]).
    pub(crate) fn popular_by_prefix(&self) -> &str {
        &self.popular_by_prefix
    }

    /// ZSET of the *touched* items of this version whose tag (or bool) field `field` holds
    /// `stored` (the value as the item hash stores it: `schema::encode_tag`, or
    /// `true`/`false`), scored like [`Keys::popularity`]. Field names are identifiers (no
    /// `:`), so the first `:` after the prefix ends the field name.
    pub(crate) fn popular_by(&self, field: &str, stored: &str) -> String {
        format!("{}{field}:{stored}", self.popular_by_prefix)
    }

    /// A `SCAN MATCH` pattern for this version's per-tag popularity ZSETs.
    pub(crate) fn popular_by_pattern(&self) -> String {
        glob_prefix(&self.popular_by_prefix)
    }

    /// ZSET (all scores 0) of the ids of users with state: listed in id order with
    /// `ZRANGE ... BYLEX`, counted with `ZCARD`.
    pub(crate) fn users(&self) -> String {
        format!("{}users", self.prefix)
    }

    pub(crate) fn user(&self, id: &str) -> String {
        format!("{}user:{id}", self.prefix)
    }

    pub(crate) fn recent(&self, id: &str) -> String {
        format!("{}recent:{id}", self.prefix)
    }

    pub(crate) fn purchased(&self, id: &str) -> String {
        format!("{}purchased:{id}", self.prefix)
    }

    /// LIST of the stream ids of the user's events (so that forgetting them is cheap).
    pub(crate) fn user_events(&self, id: &str) -> String {
        format!("{}user-events:{id}", self.prefix)
    }

    /// The event log STREAM.
    pub(crate) fn events(&self) -> String {
        format!("{}events", self.prefix)
    }

    /// Counter moved (INCR) after every write of item vectors: servers keep the fold-in's
    /// `YᵀY` while it stays the same (see `super::gram`).
    pub(crate) fn vectors_gen(&self) -> String {
        format!("{}vectors:gen", self.prefix)
    }

    /// The model registry's version counter (INCR).
    pub(crate) fn model_seq(&self) -> String {
        format!("{}model:seq", self.prefix)
    }

    /// Hash: model version seq → its record (JSON).
    pub(crate) fn models(&self) -> String {
        format!("{}models", self.prefix)
    }

    /// The live model version's seq.
    pub(crate) fn model_live(&self) -> String {
        format!("{}model:live", self.prefix)
    }

    /// Hash: chunk index → bytes, of model version `seq`'s vectors.
    pub(crate) fn model_chunks(&self, seq: u64) -> String {
        format!("{}model:{seq}", self.prefix)
    }

    /// Hash: item id → its successor list (`crate::models::encode_next`), of model version
    /// `seq`'s transition table.
    pub(crate) fn model_next(&self, seq: u64) -> String {
        format!("{}model-next:{seq}", self.prefix)
    }
}

/// `prefix*` with the glob characters of `prefix` escaped.
fn glob_prefix(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('*');
    out
}

fn item_prefix(prefix: &str, version: u32) -> String {
    versioned(prefix, "item", version)
}

/// `{prefix}{family}:` at version 1, `{prefix}{family}.v{N}:` later.
fn versioned(prefix: &str, family: &str, version: u32) -> String {
    if version <= 1 {
        format!("{prefix}{family}:")
    } else {
        format!("{prefix}{family}.v{version}:")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_version_prefix_is_a_prefix_of_another() {
        let names: Vec<String> = [1, 2, 3, 20, 21]
            .iter()
            .map(|v| Keys::new("recd:", *v).item_prefix().to_string())
            .collect();
        for a in &names {
            for b in &names {
                assert!(a == b || !b.starts_with(a.as_str()), "{a} / {b}");
            }
        }
        let k = Keys::new("p:", 1);
        assert_eq!(k.item("a:b"), "p:item:a:b");
        assert_eq!(k.item_id("p:item:a:b"), Some("a:b"));
        assert_eq!(k.item_id("p:item.v2:a"), None);
        assert_eq!(k.any_item_id("p:item.v2:a:b"), Some("a:b"));
        assert_eq!(k.any_item_id("p:item:x"), Some("x"));
        assert_eq!(k.any_item_id("p:item.vx:a"), None);
        assert_eq!(k.any_item_id("p:item.v:a"), None);
        assert_eq!(
            k.doc_of_item_key("p:item:a:b").as_deref(),
            Some("p:doc:a:b")
        );
        assert_eq!(
            k.doc_of_item_key("p:item.v3:a").as_deref(),
            Some("p:doc.v3:a")
        );
        assert_eq!(k.doc_of_item_key("q:item:a"), None);
        assert_eq!(Keys::new("p:", 2).doc_pattern(), "p:doc.v2:*");
        assert_eq!((k.ids(), Keys::new("p:", 3).ids()), ("p:ids", "p:ids.v3"));
        assert_eq!(Keys::new("a*[b]", 2).item_pattern(), "a\\*\\[b\\]item.v2:*");
        assert_eq!(k.popular_by("category", "a:b"), "p:popby:category:a:b");
        assert_eq!(Keys::new("p:", 2).popular_by_pattern(), "p:popby.v2:*");
        assert!(!"p:popby.v20:x".starts_with("p:popby.v2:"));
    }
}
