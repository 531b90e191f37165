//! The `[catalog]` section: where item details come from, the query, the pool and the
//! deadline; checked without connecting, and printed without the password.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_postgres::config::SslMode;

use super::sqlstate::{CatalogError, error_chain};

/// The `[catalog]` section: where item details come from when they are not cached.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CatalogConfig {
    /// The PostgreSQL connection, as a URL (`postgres://user:password@host:port/db`) or a
    /// libpq key/value string. `None`: no catalog source. Connections are made without TLS,
    /// so `sslmode=require` is refused.
    pub source: Option<String>,
    /// The SQL that fetches one item: `$1` is the item id (bound, never interpolated) and it
    /// returns at most one row, whose columns become the item's JSON fields. It may join and
    /// aggregate. `$1` may be compared with a text, integer or uuid column: an id that is not
    /// a valid value of that type simply matches nothing.
    pub query: String,
    /// The channel to `LISTEN` on for changes; each `NOTIFY` payload is an item id (an empty
    /// payload means "anything may have changed"). `None`: no notifications.
    pub notify_channel: Option<String>,
    /// Most connections the pool keeps open.
    pub pool_size: usize,
    /// Deadline of each fetch, end to end (waiting for a connection, connecting, running the
    /// query), in milliseconds; also the server-side `statement_timeout`.
    pub timeout_ms: u64,
}

impl Default for CatalogConfig {
    fn default() -> Self {
        Self {
            source: None,
            query: "SELECT * FROM items WHERE id = $1".into(),
            notify_channel: None,
            pool_size: 8,
            timeout_ms: 1000,
        }
    }
}

/// Debug output hides the password of `source` (configs get logged).
impl fmt::Debug for CatalogConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CatalogConfig")
            .field("source", &self.source.as_deref().map(redact_password))
            .field("query", &self.query)
            .field("notify_channel", &self.notify_channel)
            .field("pool_size", &self.pool_size)
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

impl CatalogConfig {
    /// Checks what can be checked without connecting; the error names the key.
    pub fn validate(&self) -> Result<(), CatalogError> {
        if let Some(source) = &self.source {
            parse_source(source)?;
        }
        if self.query.trim().is_empty() {
            return Err(CatalogError::Invalid("catalog.query is empty".into()));
        }
        if self.pool_size == 0 {
            return Err(CatalogError::Invalid(
                "catalog.pool_size must be at least 1".into(),
            ));
        }
        if self.timeout_ms == 0 {
            return Err(CatalogError::Invalid(
                "catalog.timeout_ms must be at least 1".into(),
            ));
        }
        if let Some(channel) = &self.notify_channel
            && (channel.is_empty() || channel.len() > 63 || channel.contains('\0'))
        {
            return Err(CatalogError::Invalid(
                "catalog.notify_channel must be 1-63 bytes without NUL".into(),
            ));
        }
        Ok(())
    }

    pub(super) fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

/// `source` as connection settings; `sslmode=require` is refused (there is no TLS here).
pub(super) fn parse_source(source: &str) -> Result<tokio_postgres::Config, CatalogError> {
    let config: tokio_postgres::Config = source
        .parse()
        .map_err(|e| CatalogError::Invalid(format!("catalog.source: {}", error_chain(&e))))?;
    if config.get_ssl_mode() == SslMode::Require {
        return Err(CatalogError::Invalid(
            "catalog.source: sslmode=require is not supported (the catalog connects without TLS)"
                .into(),
        ));
    }
    Ok(config)
}

/// `source` with the password replaced by `***`, in URL (`user:pw@`) and key/value
/// (`password=pw`) forms.
fn redact_password(source: &str) -> String {
    let mut out = source.to_string();
    if let Some(scheme_end) = out.find("://") {
        let rest = scheme_end + 3;
        let authority_end = out[rest..].find(['/', '?']).map_or(out.len(), |i| rest + i);
        if let Some(at) = out[rest..authority_end].rfind('@')
            && let Some(colon) = out[rest..rest + at].find(':')
        {
            out.replace_range(rest + colon + 1..rest + at, "***");
        }
    }
    let mut from = 0;
    while let Some(i) = out[from..].find("password=") {
        let start = from + i + "password=".len();
        let end = out[start..]
            .find(['&', ' '])
            .map_or(out.len(), |j| start + j);
        out.replace_range(start..end, "***");
        from = start + 3;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_password() {
        assert_eq!(
            redact_password("postgres://u:secret@h:5432/db?password=other&x=1"),
            "postgres://u:***@h:5432/db?password=***&x=1"
        );
        assert_eq!(redact_password("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            redact_password("host=h password=secret dbname=db"),
            "host=h password=*** dbname=db"
        );
        let config = CatalogConfig {
            source: Some("postgres://u:secret@h/db".into()),
            ..CatalogConfig::default()
        };
        let debug = format!("{config:?}");
        assert!(!debug.contains("secret"), "{debug}");
    }

    #[test]
    fn config_defaults_and_unknown_keys() {
        let config: CatalogConfig =
            serde_json::from_value(serde_json::json!({"source": "postgres://h/db"}))
                .expect("valid config");
        assert_eq!(config.query, CatalogConfig::default().query);
        assert_eq!(config.pool_size, 8);
        config.validate().expect("valid");
        let err = serde_json::from_value::<CatalogConfig>(serde_json::json!({"sorce": "x"}))
            .expect_err("unknown key");
        assert!(err.to_string().contains("sorce"), "{err}");
    }

    #[test]
    fn validate_names_the_bad_key() {
        let bad = |c: CatalogConfig, key: &str| match c.validate() {
            Err(CatalogError::Invalid(m)) => assert!(m.contains(key), "{m}"),
            other => panic!("{key}: {other:?}"),
        };
        let base = CatalogConfig::default;
        bad(
            CatalogConfig {
                pool_size: 0,
                ..base()
            },
            "catalog.pool_size",
        );
        bad(
            CatalogConfig {
                timeout_ms: 0,
                ..base()
            },
            "catalog.timeout_ms",
        );
        bad(
            CatalogConfig {
                query: " ".into(),
                ..base()
            },
            "catalog.query",
        );
        bad(
            CatalogConfig {
                source: Some("postgres://h/db?sslmode=require".into()),
                ..base()
            },
            "sslmode",
        );
        bad(
            CatalogConfig {
                source: Some("postgres://h:notaport/db".into()),
                ..base()
            },
            "catalog.source",
        );
        bad(
            CatalogConfig {
                notify_channel: Some(String::new()),
                ..base()
            },
            "catalog.notify_channel",
        );
    }
}
