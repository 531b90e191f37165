//! API keys: how they are made, stored (hashed), loaded, reloaded and checked.
//!
//! A key is `recd_` followed by 64 hex digits (32 bytes from the operating system's
//! random source). The server never stores a key, only the hex SHA-256 of its full text:
//! a leaked config or keys file does not leak working keys, and a key with 256 random bits
//! needs no salt or slow hash (nothing to guess). A presented key is hashed and compared
//! with every configured hash in constant time, so how long the check takes does not depend
//! on how close a guess came.
//!
//! A key carries exactly the scopes it lists: `admin` does not imply `write`, nor `write`
//! `read` (a training job needs `admin` only, an event collector `write` only). Give a
//! key every scope it needs: `recd keys create --scopes read,write,admin`.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use figment::Figment;
use figment::providers::{Format, Toml};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::scope::Scope;

/// What a key may be granted (`Scope::Public` needs no key and is never granted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Grant {
    /// Recommend, similar, GET items and users.
    Read,
    /// PUT items, events.
    Write,
    /// Deletes, `/v1/admin/*`, strategies, experiments, monitoring.
    Admin,
}

impl Grant {
    /// The scope of routes this grant opens.
    pub fn scope(self) -> Scope {
        match self {
            Grant::Read => Scope::Read,
            Grant::Write => Scope::Write,
            Grant::Admin => Scope::Admin,
        }
    }

    /// The config name.
    pub fn as_str(self) -> &'static str {
        match self {
            Grant::Read => "read",
            Grant::Write => "write",
            Grant::Admin => "admin",
        }
    }

    /// Parses `read`, `write` or `admin`.
    pub fn parse(s: &str) -> Option<Grant> {
        match s.trim() {
            "read" => Some(Grant::Read),
            "write" => Some(Grant::Write),
            "admin" => Some(Grant::Admin),
            _ => None,
        }
    }
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One configured key, as written in `[auth] keys` or a keys file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// Who holds the key (logs, per-key rate limits); 1–64 of `A-Z a-z 0-9 _ . -`.
    pub name: String,
    /// Hex SHA-256 of the key (64 hex digits), as `recd keys create` prints it.
    pub hash: String,
    /// What the key may do.
    pub scopes: BTreeSet<Grant>,
}

/// `[auth]`: the API keys.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Keys given in the config itself (fixed for the life of the process).
    pub keys: Vec<KeyConfig>,
    /// A TOML (`[[keys]]` tables, or `keys = [...]`) or JSON (`{"keys":[...]}`, by the
    /// `.json` extension) file of more keys, read at start and again on SIGHUP or when its
    /// modification time changes. Setting it turns auth on even while it holds no key.
    pub keys_file: Option<PathBuf>,
    /// How often to look at the keys file's modification time, in seconds; 0 = only on
    /// SIGHUP.
    pub reload_poll_seconds: u64,
}

impl AuthConfig {
    /// Whether any key source is configured (auth is then on, whatever the address).
    pub fn configured(&self) -> bool {
        !self.keys.is_empty() || self.keys_file.is_some()
    }
}

/// A problem with a key, a key list or a keys file.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A key entry that cannot be used.
    #[error("key '{name}': {reason}")]
    Invalid {
        /// The entry's name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The keys file cannot be read or parsed.
    #[error("keys file {path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The operating system's random source failed.
    #[error("cannot draw random bytes for a key: {0}")]
    Random(String),
}

/// The prefix of every key: recognisable in logs and by secret scanners.
pub const KEY_PREFIX: &str = "recd_";

/// A new random key (`recd_` + 64 hex digits).
pub fn generate_key() -> Result<String, KeyError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| KeyError::Random(e.to_string()))?;
    Ok(format!("{KEY_PREFIX}{}", hex(&bytes)))
}

/// The hex SHA-256 of a key, as the config stores it.
pub fn hash_key(key: &str) -> String {
    hex(&Sha256::digest(key.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        // Writing to a String cannot fail.
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn unhex(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// Checks a key's name: it appears in logs, metrics-free Redis key names and rate limits.
pub fn validate_name(name: &str) -> Result<(), String> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "key name '{name}' must be 1-64 characters of A-Z a-z 0-9 _ . -"
        ))
    }
}

/// A key ready to be checked.
#[derive(Clone)]
struct Entry {
    name: String,
    digest: [u8; 32],
    scopes: BTreeSet<Grant>,
}

/// Who a request authenticated as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The key's name.
    pub name: String,
    /// What it may do.
    pub scopes: BTreeSet<Grant>,
}

impl Principal {
    /// Whether the key opens routes of `scope`.
    pub fn allows(&self, scope: Scope) -> bool {
        scope == Scope::Public || self.scopes.iter().any(|g| g.scope() == scope)
    }
}

/// A validated set of keys.
#[derive(Clone, Default)]
pub struct KeySet {
    entries: Vec<Entry>,
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Names only: even hashes stay out of logs.
        f.debug_list()
            .entries(self.entries.iter().map(|e| &e.name))
            .finish()
    }
}

impl KeySet {
    /// Validates `keys`: names, hashes, at least one scope, no name twice.
    pub fn new(keys: &[KeyConfig]) -> Result<KeySet, KeyError> {
        let mut entries: Vec<Entry> = Vec::with_capacity(keys.len());
        for k in keys {
            let invalid = |reason: String| KeyError::Invalid {
                name: k.name.clone(),
                reason,
            };
            validate_name(&k.name).map_err(invalid)?;
            let digest = unhex(&k.hash.to_ascii_lowercase()).ok_or_else(|| {
                invalid(
                    "hash must be 64 hex digits (the SHA-256 that `recd keys create` prints)"
                        .into(),
                )
            })?;
            if k.scopes.is_empty() {
                return Err(invalid(
                    "scopes must list at least one of read, write, admin".into(),
                ));
            }
            if entries.iter().any(|e| e.name == k.name) {
                return Err(invalid("the name is used by another key".into()));
            }
            entries.push(Entry {
                name: k.name.clone(),
                digest,
                scopes: k.scopes.clone(),
            });
        }
        Ok(KeySet { entries })
    }

    /// The union of two sets (a name in both is an error).
    pub fn merged(&self, other: &KeySet) -> Result<KeySet, KeyError> {
        let mut entries = self.entries.clone();
        for e in &other.entries {
            if entries.iter().any(|x| x.name == e.name) {
                return Err(KeyError::Invalid {
                    name: e.name.clone(),
                    reason: "the name is used by another key".into(),
                });
            }
            entries.push(e.clone());
        }
        Ok(KeySet { entries })
    }

    /// How many keys there are.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The key's holder, if `presented` is one of the keys.
    pub fn authenticate(&self, presented: &str) -> Option<Principal> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found: Option<&Entry> = None;
        // Every entry is compared, in constant time each, and the loop never stops early.
        for e in &self.entries {
            if bool::from(e.digest.ct_eq(&digest)) {
                found = Some(e);
            }
        }
        found.map(|e| Principal {
            name: e.name.clone(),
            scopes: e.scopes.clone(),
        })
    }
}

/// What a keys file holds.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysFile {
    #[serde(default)]
    keys: Vec<KeyConfig>,
}

/// Reads and validates a keys file.
pub fn load_file(path: &Path) -> Result<KeySet, KeyError> {
    let file_error = |reason: String| KeyError::File {
        path: path.to_path_buf(),
        reason,
    };
    let is_json = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let parsed: KeysFile = if is_json {
        let bytes = std::fs::read(path).map_err(|e| file_error(e.to_string()))?;
        serde_json::from_slice(&bytes).map_err(|e| file_error(e.to_string()))?
    } else {
        if !path.exists() {
            return Err(file_error("does not exist".into()));
        }
        Figment::from(Toml::file(path))
            .extract()
            .map_err(|e| file_error(e.to_string()))?
    };
    KeySet::new(&parsed.keys).map_err(|e| file_error(e.to_string()))
}

/// The modification time of the keys file, to notice changes by polling.
pub fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str, secret: &str, scopes: &[Grant]) -> KeyConfig {
        KeyConfig {
            name: name.into(),
            hash: hash_key(secret),
            scopes: scopes.iter().copied().collect(),
        }
    }

    #[test]
    fn generated_keys_are_distinct_and_hash_to_what_the_config_stores() {
        let a = generate_key().unwrap();
        let b = generate_key().unwrap();
        assert_ne!(a, b);
        assert!(
            a.starts_with(KEY_PREFIX) && a.len() == KEY_PREFIX.len() + 64,
            "{a}"
        );
        let h = hash_key(&a);
        assert_eq!(h.len(), 64);
        // The known SHA-256 of "abc".
        assert_eq!(
            hash_key("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let set = KeySet::new(&[key("app", &a, &[Grant::Read])]).unwrap();
        assert_eq!(set.authenticate(&a).unwrap().name, "app");
        assert!(set.authenticate(&b).is_none());
        assert!(set.authenticate("").is_none());
    }

    #[test]
    fn a_key_has_exactly_the_scopes_it_lists() {
        let set = KeySet::new(&[key("ops", "k1", &[Grant::Admin])]).unwrap();
        let p = set.authenticate("k1").unwrap();
        assert!(p.allows(Scope::Admin));
        assert!(p.allows(Scope::Public));
        assert!(!p.allows(Scope::Write));
        assert!(!p.allows(Scope::Read));
    }

    #[test]
    fn bad_entries_are_named() {
        let mut bad_hash = key("x", "k", &[Grant::Read]);
        bad_hash.hash = "abc".into();
        let cases = [
            (key("bad name", "k", &[Grant::Read]), "key name"),
            (bad_hash, "64 hex digits"),
            (key("none", "k", &[]), "at least one"),
        ];
        for (k, needle) in cases {
            let err = KeySet::new(&[k]).unwrap_err().to_string();
            assert!(err.contains(needle), "{err}");
        }
        let twice = KeySet::new(&[key("a", "1", &[Grant::Read]), key("a", "2", &[Grant::Read])]);
        assert!(twice.is_err());
    }

    #[test]
    fn keys_files_in_toml_and_json() {
        let dir = std::env::temp_dir().join(format!("recd-keys-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let toml = dir.join("keys.toml");
        std::fs::write(
            &toml,
            format!(
                "[[keys]]\nname = \"a\"\nhash = \"{}\"\nscopes = [\"read\", \"write\"]\n",
                hash_key("ka")
            ),
        )
        .unwrap();
        let set = load_file(&toml).unwrap();
        assert_eq!(set.authenticate("ka").unwrap().scopes.len(), 2);
        let json = dir.join("keys.json");
        std::fs::write(
            &json,
            format!(
                r#"{{"keys":[{{"name":"b","hash":"{}","scopes":["admin"]}}]}}"#,
                hash_key("kb")
            ),
        )
        .unwrap();
        assert_eq!(
            load_file(&json).unwrap().authenticate("kb").unwrap().name,
            "b"
        );
        std::fs::write(&json, "{").unwrap();
        assert!(
            load_file(&json)
                .unwrap_err()
                .to_string()
                .contains("keys.json")
        );
        assert!(load_file(&dir.join("missing.toml")).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
