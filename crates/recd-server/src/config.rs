//! Configuration: one typed [`Config`], loaded in layers (defaults → TOML file → `RECD_*`
//! environment → command-line flags) and validated once.
//!
//! Environment variables: the top-level keys as `RECD_LISTEN`, `RECD_BACKEND`,
//! `RECD_REDIS_URL`, `RECD_DATA_DIR`, `RECD_INSECURE`, and any nested key as `RECD_SECTION__KEY`
//! (e.g. `RECD_EMBEDDED__FSYNC=always`). Unknown keys are errors that name the key.

use std::net::SocketAddr;
use std::path::PathBuf;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use recd_core::Schema;
use recd_core::pipeline::RankParams;
use recd_store::embedded::EmbeddedOptions;
use recd_store::{ModelSettings, RedisConfig};
use serde::{Deserialize, Serialize};

use crate::access::{AuthConfig, KeySet, LimitsConfig};
use crate::cache::CacheConfig;
use crate::catalog::CatalogConfig;
use crate::experiments::ExperimentsConfig;
use crate::experiments::model::{Strategy, check_ranking};
use crate::monitoring::MonitoringConfig;

/// Which store holds the serving state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// In-process and durable in the data dir.
    #[default]
    Embedded,
    /// Redis with the Query Engine.
    Redis,
}

impl Backend {
    /// The name used in config and `/health`.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Embedded => "embedded",
            Backend::Redis => "redis",
        }
    }
}

/// HTTP server limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Largest request body accepted, in bytes.
    pub body_limit_bytes: usize,
    /// Requests taking longer than this are answered 503.
    pub request_timeout_ms: u64,
    /// Most items or events in one batch.
    pub max_batch: usize,
    /// Event timestamps may lie at most this far in the server's future (clock skew);
    /// later ones are refused, as they would dominate time-decayed popularity.
    pub max_event_future_seconds: u64,
    /// Most open client connections; beyond it, new connections wait in the kernel's
    /// accept queue instead of taking a file descriptor each.
    pub max_connections: usize,
    /// Most requests to non-public routes being handled at once; more are answered 503
    /// at once (load shedding) instead of queueing without bound.
    pub max_in_flight: usize,
    /// A client must send a request's whole head (request line and headers) within this
    /// long, counted from the connection's start or the end of its previous request; this
    /// also closes keep-alive connections idle between requests (slowloris).
    pub header_read_timeout_ms: u64,
    /// A connection on which no byte moves either way for this long is closed (a client
    /// that stopped reading its answer, or one that trickles a body).
    pub idle_timeout_ms: u64,
    /// Largest total size of a request's headers; larger is a 431.
    pub max_header_bytes: usize,
    /// Origins (`https://shop.example`) whose web pages may call the API from a browser
    /// (CORS); empty = none (no CORS headers at all); `["*"]` = any origin.
    pub cors_allow_origins: Vec<String>,
    /// Serve the web console at `/` (its files carry no data; the page calls the API
    /// with the user's key). Off: `/` and `/console/*` are 404s.
    pub console: bool,
    /// Threads that answer requests (the async runtime's workers); 0 = one per core (or
    /// `TOKIO_WORKER_THREADS`). Fewer than the cores leave a core to the write log, the
    /// checkpoints and whatever else runs on the machine (a shorter event tail at c = 32 on
    /// two shared cores), at the cost of what CPU-bound requests can use. Read at start.
    pub workers: usize,
}

impl ServerConfig {
    /// `max_event_future_seconds` in milliseconds.
    pub fn max_event_future_ms(&self) -> i64 {
        i64::try_from(self.max_event_future_seconds.saturating_mul(1000)).unwrap_or(i64::MAX)
    }
}

/// Most `[server] workers`: beyond a few per core threads only wait for a core.
pub const MAX_WORKERS: usize = 1024;

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            body_limit_bytes: 16 * 1024 * 1024,
            request_timeout_ms: 10_000,
            max_batch: 10_000,
            max_event_future_seconds: (recd_core::event::DEFAULT_MAX_FUTURE_MS / 1000) as u64,
            max_connections: 4096,
            max_in_flight: 1024,
            header_read_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            max_header_bytes: 16 * 1024,
            cors_allow_origins: Vec::new(),
            console: true,
            workers: 0,
        }
    }
}

/// How `recd import events` and `recd eval` read interaction files by default (their
/// `--user-col` etc. flags win); every key unset means "sniffed / the usual names".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImportConfig {
    /// csv, tsv or jsonl.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// The user id column (a header name, or a 1-based position without a header).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_col: Option<String>,
    /// The item id column.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item_col: Option<String>,
    /// The timestamp column.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_col: Option<String>,
    /// The event type column.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub type_col: Option<String>,
    /// The value column.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_col: Option<String>,
    /// The unit of integer timestamps: ms or s.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_unit: Option<String>,
}

/// Training settings of `recd train`, `recd eval` and `recd tune` (their flags win): ALS
/// and how events become its confidences. The meaning of each lives in recd-train
/// (`AlsParams`, `confidence::Confidence`, `early_stop::EarlyStopping`); a test in the
/// binary holds these defaults to those.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Latent factors; unset: the store's vector dimension (64 for `recd eval`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub factors: Option<usize>,
    /// ALS iterations (the most, with early stopping).
    pub iterations: usize,
    /// λ of both sides.
    pub regularization: f32,
    /// Confidence slope: c = 1 + alpha · s(r).
    pub alpha: f32,
    /// How a pair's summed event weight r becomes s(r): linear, log, bm25 or tfidf.
    pub scaling: String,
    /// epsilon of the log scaling: s = ln(1 + r / epsilon).
    pub log_epsilon: f32,
    /// K1 of bm25.
    pub bm25_k1: f32,
    /// B of bm25.
    pub bm25_b: f32,
    /// An event's weight halves per this many days of age (counted from the newest event);
    /// 0 = off.
    pub recency_half_life_days: f64,
    /// Early stopping: stop after this many iterations without a better validation
    /// NDCG@10 (validation carved from the training data); 0 = off.
    pub early_stopping_patience: usize,
    /// Share of each user's training items held out for early stopping's validation.
    pub validation_fraction: f64,
    /// Successors kept per item in the transition table `recd train` stores with each
    /// version (the serving pipeline's transitions source); 0 = no table.
    pub transitions_top: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            factors: None,
            iterations: 15,
            regularization: 20.0,
            alpha: 0.5,
            scaling: "linear".into(),
            log_epsilon: 1.0,
            bm25_k1: 100.0,
            bm25_b: 0.8,
            recency_half_life_days: 0.0,
            early_stopping_patience: 0,
            validation_fraction: 0.1,
            transitions_top: 50,
        }
    }
}

impl TrainConfig {
    /// The scalings recd-train knows.
    pub const SCALINGS: [&'static str; 4] = ["linear", "log", "bm25", "tfidf"];

    /// Checks values that parse but cannot train.
    pub fn validate(&self) -> Result<(), String> {
        if !Self::SCALINGS.contains(&self.scaling.as_str()) {
            return Err(format!(
                "train.scaling: unknown scaling {:?} (expected linear, log, bm25 or tfidf)",
                self.scaling
            ));
        }
        if self.factors == Some(0) {
            return Err("train.factors must be at least 1".into());
        }
        if !(self.validation_fraction > 0.0 && self.validation_fraction < 1.0) {
            return Err("train.validation_fraction must be in (0, 1)".into());
        }
        if !(self.recency_half_life_days.is_finite() && self.recency_half_life_days >= 0.0) {
            return Err("train.recency_half_life_days must be finite and >= 0 (0 = off)".into());
        }
        Ok(())
    }
}

/// Everything recd can be told.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to serve on.
    pub listen: SocketAddr,
    /// Where the embedded backend keeps its file (and a data dir remembers its schema).
    pub data_dir: PathBuf,
    /// Which store to use.
    pub backend: Backend,
    /// The Redis URL for the redis backend.
    pub redis_url: String,
    /// The item schema; a data dir that already has one may omit it.
    pub schema: Option<Schema>,
    /// HTTP limits.
    pub server: ServerConfig,
    /// Embedded backend options.
    pub embedded: EmbeddedOptions,
    /// Redis backend options (key prefix, HNSW, timeouts).
    pub redis: RedisConfig,
    /// Real-time model: session vector, event weights, popularity decay.
    pub model: ModelSettings,
    /// Ranking pipeline.
    pub ranking: RankParams,
    /// Cache tiers.
    pub cache: CacheConfig,
    /// Where item details come from besides recd's own items (PostgreSQL, read through
    /// the item cache).
    pub catalog: CatalogConfig,
    /// Named ranking strategies besides `default` (`[strategies.NAME]`: `ranking` keys that
    /// differ from `[ranking]`, `diversity`, `model`); more through `PUT /v1/strategies`.
    pub strategies: std::collections::BTreeMap<String, serde_json::Value>,
    /// Impression logging and attribution for experiments.
    pub experiments: ExperimentsConfig,
    /// Online features, the impression log and learned rankers.
    pub features: crate::features::FeaturesConfig,
    /// Online quality and drift.
    pub monitoring: MonitoringConfig,
    /// API keys.
    pub auth: AuthConfig,
    /// Rate limits per key and per client address.
    pub limits: LimitsConfig,
    /// Serve without API keys on a non-loopback address (`--insecure`): only behind
    /// something else that controls access.
    pub insecure: bool,
    /// How interaction files are read (`recd import events`, `recd eval`).
    pub import: ImportConfig,
    /// Training settings (`recd train`, `recd eval`, `recd tune`).
    pub train: TrainConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./recd-data"),
            backend: Backend::Embedded,
            redis_url: "redis://127.0.0.1:6379".into(),
            schema: None,
            server: ServerConfig::default(),
            embedded: EmbeddedOptions::default(),
            redis: RedisConfig::default(),
            model: ModelSettings::default(),
            ranking: RankParams::default(),
            cache: CacheConfig::default(),
            catalog: CatalogConfig::default(),
            strategies: Default::default(),
            experiments: ExperimentsConfig::default(),
            features: crate::features::FeaturesConfig::default(),
            monitoring: MonitoringConfig::default(),
            auth: AuthConfig::default(),
            limits: LimitsConfig::default(),
            insecure: false,
            import: ImportConfig::default(),
            train: TrainConfig::default(),
        }
    }
}

/// A configuration error that names the offending key.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// Flags given on the command line; only the ones present override the lower layers.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Overrides {
    /// `--listen`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// `--data-dir`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// `--backend`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend: Option<Backend>,
    /// `--redis-url`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_url: Option<String>,
    /// `--insecure`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub insecure: Option<bool>,
}

/// Top-level keys that may come from plain `RECD_<KEY>` variables.
const ENV_KEYS: &[&str] = &["listen", "data_dir", "backend", "redis_url", "insecure"];

impl Config {
    /// Loads defaults → `file` (if given) → environment → `flags`, and validates the result.
    pub fn load(file: Option<&std::path::Path>, flags: &Overrides) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError(format!(
                    "config file {} does not exist",
                    path.display()
                )));
            }
            figment = figment.merge(Toml::file(path));
        }
        // Only known top-level names and `SECTION__KEY` forms: other RECD_* variables
        // (used by scripts) must not turn into unknown-key errors.
        let env = Env::prefixed("RECD_")
            .filter(|k| {
                // `k` keeps the variable's case (`LISTEN`); the keys are lower-case.
                ENV_KEYS
                    .iter()
                    .any(|known| k.as_str().eq_ignore_ascii_case(known))
                    || k.as_str().contains("__")
            })
            .split("__");
        figment = figment.merge(env).merge(Serialized::defaults(flags));
        let config: Config = figment.extract().map_err(|e| {
            let errors: Vec<String> = e.into_iter().map(|e| e.to_string()).collect();
            ConfigError(format!("bad configuration: {}", errors.join("; ")))
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks values that parse but make no sense.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(schema) = &self.schema {
            schema
                .validate()
                .map_err(|e| ConfigError(format!("bad configuration: schema: {e}")))?;
        }
        // The same rule as every named strategy's.
        check_ranking(&self.ranking)
            .map_err(|e| ConfigError(format!("bad configuration: {}", e.message)))?;
        self.catalog
            .validate()
            .map_err(|e| ConfigError(format!("bad configuration: {e}")))?;
        self.cache
            .validate()
            .map_err(|e| ConfigError(format!("bad configuration: {e}")))?;
        self.monitoring
            .validate()
            .map_err(|e| ConfigError(format!("bad configuration: {e}")))?;
        self.experiments
            .validate()
            .map_err(|e| ConfigError(format!("bad configuration: {e}")))?;
        if self.features.refresh_seconds == 0 {
            return Err(ConfigError(
                "bad configuration: features.refresh_seconds must be at least 1".into(),
            ));
        }
        if let Some(schema) = &self.schema {
            self.features
                .feature_set(schema)
                .map_err(|e| ConfigError(format!("bad configuration: {}", e.message)))?;
        }
        for (name, body) in &self.strategies {
            Strategy::from_json(body, &self.ranking).map_err(|e| {
                ConfigError(format!(
                    "bad configuration: strategies.{name}: {}",
                    e.message
                ))
            })?;
        }
        if self.server.max_batch == 0 {
            return Err(ConfigError(
                "bad configuration: server.max_batch must be at least 1".into(),
            ));
        }
        let server = &self.server;
        for (name, value) in [
            ("server.max_connections", server.max_connections as u64),
            ("server.max_in_flight", server.max_in_flight as u64),
            (
                "server.header_read_timeout_ms",
                server.header_read_timeout_ms,
            ),
            ("server.idle_timeout_ms", server.idle_timeout_ms),
            ("server.request_timeout_ms", server.request_timeout_ms),
        ] {
            if value == 0 {
                return Err(ConfigError(format!(
                    "bad configuration: {name} must be at least 1"
                )));
            }
        }
        if server.idle_timeout_ms < server.request_timeout_ms {
            // A request that is still being worked on moves no bytes; the idle timeout
            // must not close its connection before the deadline answers it.
            return Err(ConfigError(
                "bad configuration: server.idle_timeout_ms must be at least server.request_timeout_ms"
                    .into(),
            ));
        }
        if server.workers > MAX_WORKERS {
            return Err(ConfigError(format!(
                "bad configuration: server.workers must be at most {MAX_WORKERS} (0 = one per core)"
            )));
        }
        if !(0..=19).contains(&self.embedded.checkpoint_nice) {
            return Err(ConfigError(
                "bad configuration: embedded.checkpoint_nice must be from 0 to 19 (a nice value; 0 = the process's priority)".into(),
            ));
        }
        if server.max_header_bytes < 1024 {
            return Err(ConfigError(
                "bad configuration: server.max_header_bytes must be at least 1024".into(),
            ));
        }
        for origin in &server.cors_allow_origins {
            let ok = origin == "*"
                || ((origin.starts_with("http://") || origin.starts_with("https://"))
                    && axum::http::HeaderValue::from_str(origin).is_ok()
                    && !origin.ends_with('/'));
            if !ok {
                return Err(ConfigError(format!(
                    "bad configuration: server.cors_allow_origins: '{origin}' is not an origin \
                     such as https://shop.example (scheme and host, no path), nor \"*\""
                )));
            }
        }
        KeySet::new(&self.auth.keys)
            .map_err(|e| ConfigError(format!("bad configuration: auth.keys: {e}")))?;
        self.limits
            .validate()
            .map_err(|e| ConfigError(format!("bad configuration: {e}")))?;
        if self.model.session.half_life_seconds <= 0.0
            || self.model.popularity.half_life_hours <= 0.0
        {
            return Err(ConfigError(
                "bad configuration: model half-lives must be positive".into(),
            ));
        }
        if !(0.0..1.0).contains(&self.model.gate_margin) {
            return Err(ConfigError(format!(
                "bad configuration: model.gate_margin must be at least 0 and below 1 \
                 (a share of the live model's NDCG), got {}",
                self.model.gate_margin
            )));
        }
        if self.model.keep_versions == 0 {
            return Err(ConfigError(
                "bad configuration: model.keep_versions must be at least 1".into(),
            ));
        }
        self.train
            .validate()
            .map_err(|e| ConfigError(format!("bad configuration: {e}")))?;
        self.model
            .session
            .check()
            .map_err(|e| ConfigError(format!("bad configuration: model.session.{}", e.message)))?;
        self.model
            .new_items
            .check()
            .map_err(|e| ConfigError(format!("bad configuration: model.{}", e.message)))?;
        Ok(())
    }
}

/// Refuses to serve without keys on a non-loopback address unless told `--insecure`.
pub fn check_exposure(config: &Config) -> Result<(), ConfigError> {
    if config.auth.configured() || config.insecure || config.listen.ip().is_loopback() {
        return Ok(());
    }
    Err(ConfigError(format!(
        "refusing to listen on {} without API keys: anyone who can reach it could read and change \
         everything. Add keys under [auth] (keys, or keys_file; `recd keys create --name NAME \
         --scopes read,write` makes one), listen on a loopback address, or pass --insecure \
         (RECD_INSECURE=true, or insecure = true in the config) to serve without auth",
        config.listen
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(addr: &str) -> Config {
        Config {
            listen: addr.parse().expect("address"),
            ..Config::default()
        }
    }

    #[test]
    fn a_non_loopback_address_needs_keys_or_insecure() {
        for open in ["127.0.0.1:8080", "[::1]:8080"] {
            assert!(check_exposure(&at(open)).is_ok(), "{open}");
        }
        for exposed in ["0.0.0.0:8080", "10.1.2.3:8080", "[::]:8080"] {
            let err = check_exposure(&at(exposed)).unwrap_err().0;
            assert!(
                err.contains("--insecure") && err.contains("[auth]"),
                "{err}"
            );
            let mut insecure = at(exposed);
            insecure.insecure = true;
            assert!(check_exposure(&insecure).is_ok());
            let mut keyed = at(exposed);
            keyed.auth.keys_file = Some("/etc/recd/keys.toml".into());
            assert!(check_exposure(&keyed).is_ok());
        }
    }

    #[test]
    fn the_checkpoint_nice_value_must_be_one_linux_has() {
        let mut c = Config::default();
        for ok in [0, 10, 19] {
            c.embedded.checkpoint_nice = ok;
            assert!(c.validate().is_ok(), "{ok}");
        }
        for bad in [-1, 20] {
            c.embedded.checkpoint_nice = bad;
            let err = c.validate().unwrap_err().0;
            assert!(err.contains("embedded.checkpoint_nice"), "{err}");
        }
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment::Jail's closure type, not ours
    fn every_documented_environment_variable_applies() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("RECD_LISTEN", "127.0.0.1:9311");
            jail.set_env("RECD_DATA_DIR", "/tmp/recd-env-data");
            jail.set_env("RECD_BACKEND", "redis");
            jail.set_env("RECD_REDIS_URL", "redis://127.0.0.1:6390");
            jail.set_env("RECD_SERVER__MAX_BATCH", "7");
            jail.set_env("RECD_INSECURE", "true");
            jail.set_env("RECD_LIMITS__PER_IP__RPS", "50");
            jail.set_env("RECD_LIMITS__PER_IP__BURST", "100");
            jail.set_env(
                "RECD_MONITORING__ON_DRIFT_COMMAND",
                r#"["sh", "-c", "echo $X"]"#,
            );
            // Scripts' own RECD_* variables are not config keys and must not fail the load.
            jail.set_env("RECD_BIN", "/usr/bin/true");
            let c = Config::load(None, &Overrides::default()).map_err(|e| e.0)?;
            assert_eq!(c.listen.port(), 9311);
            assert_eq!(c.data_dir, PathBuf::from("/tmp/recd-env-data"));
            assert_eq!(c.backend, Backend::Redis);
            assert_eq!(c.redis_url, "redis://127.0.0.1:6390");
            assert_eq!(c.server.max_batch, 7);
            assert!(c.insecure);
            assert_eq!(c.limits.per_ip.burst, 100);
            assert_eq!(c.monitoring.on_drift_command, ["sh", "-c", "echo $X"]);
            // flags beat the environment
            let flags = Overrides {
                data_dir: Some(PathBuf::from("/tmp/flag")),
                ..Default::default()
            };
            let c = Config::load(None, &flags).map_err(|e| e.0)?;
            assert_eq!(c.data_dir, PathBuf::from("/tmp/flag"));
            assert_eq!(c.listen.port(), 9311);
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)]
    fn layers_apply_in_order_and_unknown_keys_are_named() {
        // Under the Jail lock: the environment test sets RECD_* variables meanwhile.
        figment::Jail::expect_with(|_jail| {
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join("recd.toml");
            std::fs::write(
                &file,
                "listen = \"127.0.0.1:9000\"\n[schema]\nvector = { dim = 8 }\n[schema.fields]\nc = \"tag\"\n[embedded]\nfsync = \"always\"\n",
            )
            .unwrap();
            let c = Config::load(Some(&file), &Overrides::default()).unwrap();
            assert_eq!(c.listen.port(), 9000);
            assert_eq!(c.schema.unwrap().vector.dim, 8);
            assert_eq!(c.embedded.fsync, recd_store::embedded::Fsync::Always);
            let flags = Overrides {
                listen: Some("127.0.0.1:9100".parse().unwrap()),
                ..Default::default()
            };
            assert_eq!(
                Config::load(Some(&file), &flags).unwrap().listen.port(),
                9100
            );

            std::fs::write(
                &file,
                "[model.session.fold_in]\nsolver = \"cholesky\"\ncg_steps = 7\n",
            )
            .unwrap();
            let fold_in = Config::load(Some(&file), &Overrides::default())
                .unwrap()
                .model
                .session
                .fold_in;
            assert_eq!(
                (fold_in.solver, fold_in.cg_steps),
                (recd_core::FoldSolver::Cholesky, 7)
            );
            std::fs::write(&file, "[ranking]\ncandidatez = 5\n").unwrap();
            let err = Config::load(Some(&file), &Overrides::default()).unwrap_err();
            assert!(err.0.contains("candidatez"), "{err}");
            std::fs::write(&file, "[cache]\njitter = 0.7\n").unwrap();
            let err = Config::load(Some(&file), &Overrides::default()).unwrap_err();
            assert!(err.0.contains("cache.jitter"), "{err}");
            std::fs::write(&file, "[cache.ttl_seconds]\nrecs = 0\n").unwrap();
            let err = Config::load(Some(&file), &Overrides::default()).unwrap_err();
            assert!(err.0.contains("cache.ttl_seconds.recs"), "{err}");
            std::fs::write(&file, "[schema]\nvector = { dim = 0 }\n").unwrap();
            assert!(Config::load(Some(&file), &Overrides::default()).is_err());
            for (toml, key) in [
                (
                    "[auth]\nkeys = [{ name = \"a\", hash = \"xyz\", scopes = [\"read\"] }]\n",
                    "auth.keys",
                ),
                (
                    "[auth]\nkeys = [{ name = \"a\", hash = \"xyz\", scopes = [\"root\"] }]\n",
                    "root",
                ),
                ("[limits]\nper_key = { rps = 5 }\n", "limits.per_key.burst"),
                (
                    "[server]\ncors_allow_origins = [\"shop.example\"]\n",
                    "cors_allow_origins",
                ),
                ("[server]\nmax_in_flight = 0\n", "server.max_in_flight"),
                (
                    "[model.session.fold_in]\ncg_steps = 0\n",
                    "model.session.fold_in.cg_steps",
                ),
                ("[model.session.fold_in]\nsolver = \"qr\"\n", "cholesky"),
            ] {
                std::fs::write(&file, toml).unwrap();
                let err = Config::load(Some(&file), &Overrides::default()).unwrap_err();
                assert!(err.0.contains(key), "{toml}: {err}");
            }
            Ok(())
        });
    }

    #[test]
    fn model_version_settings_are_checked() {
        let mut c = Config::default();
        assert_eq!((c.model.gate_margin, c.model.keep_versions), (0.05, 5));
        c.validate().expect("the defaults are valid");
        for margin in [-0.1, 1.0, f64::NAN] {
            c.model.gate_margin = margin;
            let err = c.validate().expect_err("a margin outside [0, 1)");
            assert!(err.0.contains("model.gate_margin"), "{err}");
        }
        c.model.gate_margin = 0.0;
        c.validate().expect("margin 0");
        c.model.keep_versions = 0;
        let err = c.validate().expect_err("keep no version");
        assert!(err.0.contains("model.keep_versions"), "{err}");
    }

    #[test]
    fn train_settings_are_checked() {
        let mut c = Config::default();
        c.train.scaling = "bm25".into();
        c.validate().expect("bm25 is a scaling");
        c.train.scaling = "cubic".into();
        let err = c.validate().expect_err("an unknown scaling");
        assert!(err.0.contains("train.scaling"), "{err}");
        c.train.scaling = "log".into();
        c.train.validation_fraction = 1.0;
        let err = c.validate().expect_err("nothing left to train on");
        assert!(err.0.contains("train.validation_fraction"), "{err}");
        c.train.validation_fraction = 0.1;
        c.train.recency_half_life_days = -2.0;
        let err = c.validate().expect_err("a negative half-life");
        assert!(err.0.contains("train.recency_half_life_days"), "{err}");
    }
}
