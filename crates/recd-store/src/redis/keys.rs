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
//! The per-tag popularity ZSETs are versioned the same way (`popby:` / `popby.vN:`), since
//! which fields are tags is a property of the schema.

/// The keys of one deployment at one index version.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    prefix: String,
    version: u32,
    item_prefix: String,
    popular_by_prefix: String,
}

impl Keys {
    pub(crate) fn new(prefix: &str, version: u32) -> Self {
        Self {
            prefix: prefix.to_string(),
            version,
            item_prefix: item_prefix(prefix, version),
            popular_by_prefix: if version <= 1 {
                format!("{prefix}popby:")
            } else {
                format!("{prefix}popby.v{version}:")
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
        let rest = key.strip_prefix(self.prefix.as_str())?;
        if let Some(id) = rest.strip_prefix("item:") {
            return Some(id);
        }
        let rest = rest.strip_prefix("item.v")?;
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        (digits > 0).then_some(())?;
        rest[digits..].strip_prefix(':')
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

    /// SET of the ids of users with state.
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
    if version <= 1 {
        format!("{prefix}item:")
    } else {
        format!("{prefix}item.v{version}:")
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
        assert_eq!(Keys::new("a*[b]", 2).item_pattern(), "a\\*\\[b\\]item.v2:*");
        assert_eq!(k.popular_by("category", "a:b"), "p:popby:category:a:b");
        assert_eq!(Keys::new("p:", 2).popular_by_pattern(), "p:popby.v2:*");
        assert!(!"p:popby.v20:x".starts_with("p:popby.v2:"));
    }
}
