//! Online features and learned rankers in the serving path.
//!
//! `[features]` turns it on: every applied event updates the online feature state
//! (`recd_store::features`), every served list counts as impressions of its items (item
//! CTR), and, with `impression_log`, is appended to a JSON-lines file for
//! `recd train-ranker` (`recd_core::features::LoggedList`: each item's score and the
//! signals it was scored with; lists answered from a cache are counted but not logged,
//! since their signals are not kept). A strategy whose `ranking.ranker` names a learned
//! ranker (`"latest"` or `"v7"`) scores its candidates with it; rankers are model versions
//! of the registry (`recd model list`) whose settings say `"kind": "ranker"`, read at start
//! and again every `refresh_seconds`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use recd_core::features::{FeatureSet, FeatureSpec, LinearRanker, LoggedItem, LoggedList};
use recd_core::{Event, Item, Schema, ValidationError};
use recd_store::features::FeatureStore;
use recd_store::{Store, StoreResult};
use serde::{Deserialize, Serialize};

use crate::answer::ServedItem;

/// `[features]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FeaturesConfig {
    /// Keep online features (each event and served list updates them).
    pub enabled: bool,
    /// Append every computed list to this JSON-lines file (the training log of
    /// `recd train-ranker`); relative paths are under the data dir.
    pub impression_log: Option<PathBuf>,
    /// How often learned rankers are re-read from the model registry.
    pub refresh_seconds: u64,
    /// The features (`[features.define.NAME]`); none: the default set.
    pub define: BTreeMap<String, FeatureSpec>,
}

impl Default for FeaturesConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            impression_log: None,
            refresh_seconds: 10,
            define: BTreeMap::new(),
        }
    }
}

impl FeaturesConfig {
    /// The feature set these settings define over `schema`.
    pub fn feature_set(&self, schema: &Schema) -> Result<FeatureSet, ValidationError> {
        if self.define.is_empty() {
            Ok(FeatureSet::default_for(schema))
        } else {
            FeatureSet::from_specs(&self.define, schema)
        }
    }
}

/// `"latest"` or a version name: what `ranking.ranker` may say.
pub fn check_ranker_name(name: &str) -> Result<(), ValidationError> {
    if name == "latest" || crate::engine::models::parse_version(name).is_some() {
        Ok(())
    } else {
        Err(ValidationError::new(format!(
            "ranking.ranker must be \"latest\" or a model version like \"v7\", got '{name}'"
        )))
    }
}

/// The rankers the registry holds, by version.
#[derive(Debug, Default)]
struct Rankers {
    by_seq: BTreeMap<u64, Arc<LinearRanker>>,
    /// The newest accepted one that fits the feature set.
    latest: Option<u64>,
}

/// What a ranker version records in its `settings`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RankerSettings {
    /// Always `"ranker"`.
    pub kind: String,
    /// The feature set's fingerprint it was trained on.
    pub features: String,
    /// The model.
    pub ranker: LinearRanker,
    /// How it was trained.
    #[serde(default)]
    pub fit: serde_json::Value,
}

/// Whether a registry record's settings are a ranker's.
pub fn is_ranker(info: &serde_json::Value) -> bool {
    info.get("settings")
        .and_then(|s| s.get("kind"))
        .and_then(|k| k.as_str())
        == Some("ranker")
}

/// The serving side of features: the set, its online store, the rankers, the log.
pub struct Features {
    set: FeatureSet,
    store: Arc<dyn FeatureStore>,
    rankers: RwLock<Rankers>,
    log: Option<Mutex<std::io::BufWriter<std::fs::File>>>,
}

impl std::fmt::Debug for Features {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Features")
            .field("features", &self.set.len())
            .finish_non_exhaustive()
    }
}

impl Features {
    /// Features over `store`, logging to `log` (opened for appending) when given.
    pub fn new(
        set: FeatureSet,
        store: Arc<dyn FeatureStore>,
        log: Option<&std::path::Path>,
    ) -> std::io::Result<Self> {
        let log = match log {
            Some(path) => {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?;
                Some(Mutex::new(std::io::BufWriter::new(file)))
            }
            None => None,
        };
        Ok(Self {
            set,
            store,
            rankers: RwLock::new(Rankers::default()),
            log,
        })
    }

    /// The feature set.
    pub fn set(&self) -> &FeatureSet {
        &self.set
    }

    /// The online store.
    pub fn store(&self) -> &Arc<dyn FeatureStore> {
        &self.store
    }

    /// Applies events whose items are `items` (in order, `None` for unknown items).
    pub async fn apply_events(
        &self,
        events: &[Event],
        items: &[Option<Arc<Item>>],
    ) -> StoreResult<()> {
        self.store.apply_events(&self.set, events, items).await
    }

    /// Counts a served list's impressions and logs it (when it carries its signals).
    pub async fn served(
        &self,
        rec_id: &str,
        user: &str,
        strategy: &str,
        items: &[ServedItem],
        at_ms: i64,
    ) -> StoreResult<()> {
        let ids: Vec<String> = items.iter().map(|i| i.id.clone()).collect();
        self.store.log_impressions(&self.set, &ids, at_ms).await?;
        let Some(log) = &self.log else { return Ok(()) };
        let logged: Option<Vec<LoggedItem>> = items
            .iter()
            .map(|i| {
                i.signals.map(|s| LoggedItem {
                    id: i.id.clone(),
                    score: i.score,
                    similarity: s.similarity,
                    popularity: s.popularity,
                    knn: s.knn,
                })
            })
            .collect();
        let Some(logged) = logged.filter(|l| !l.is_empty()) else {
            return Ok(());
        };
        let line = LoggedList {
            recommendation_id: rec_id.to_string(),
            user_id: user.to_string(),
            at_ms,
            strategy: strategy.to_string(),
            items: logged,
        };
        let mut json = serde_json::to_vec(&line)
            .map_err(|e| recd_store::StoreError::Internal(format!("impression log: {e}")))?;
        json.push(b'\n');
        let mut w = log.lock();
        w.write_all(&json)
            .and_then(|()| w.flush())
            .map_err(|e| recd_store::StoreError::Unavailable(format!("impression log: {e}")))
    }

    /// Forgets a user's features.
    pub async fn forget_user(&self, user: &str) -> StoreResult<()> {
        self.store.delete_user(&self.set, user).await
    }

    /// The ranker `name` names (`latest`, or `v7`) and its version, if loaded.
    pub fn ranker(&self, name: &str) -> Option<(u64, Arc<LinearRanker>)> {
        let r = self.rankers.read();
        let seq = if name == "latest" {
            r.latest?
        } else {
            crate::engine::models::parse_version(name)?
        };
        r.by_seq.get(&seq).map(|m| (seq, Arc::clone(m)))
    }

    /// Loads `ranker` as version `seq` (the newest accepted one when `accepted`) without
    /// the registry: offline evaluation (`recd eval --ranker`) serves a ranker it just fit.
    pub fn insert_ranker(&self, seq: u64, ranker: LinearRanker, accepted: bool) {
        let mut r = self.rankers.write();
        r.by_seq.insert(seq, Arc::new(ranker));
        if accepted {
            r.latest = Some(seq);
        }
    }

    /// Re-reads the rankers from the registry: versions whose settings are a ranker's and
    /// fit this feature set (same features, same fingerprint).
    pub async fn refresh(&self, store: &dyn Store) -> StoreResult<usize> {
        let registry = store.models().await?;
        let mut next = Rankers::default();
        for m in &registry.models {
            if !is_ranker(&m.info) {
                continue;
            }
            let Some(settings) = m
                .info
                .get("settings")
                .and_then(|s| serde_json::from_value::<RankerSettings>(s.clone()).ok())
            else {
                continue;
            };
            if settings.features != self.set.fingerprint()
                || settings.ranker.check(&self.set).is_err()
            {
                continue;
            }
            next.by_seq.insert(m.seq, Arc::new(settings.ranker));
            let accepted = m.info.get("accepted").and_then(|a| a.as_bool()) == Some(true);
            if accepted {
                next.latest = Some(m.seq);
            }
        }
        let n = next.by_seq.len();
        *self.rankers.write() = next;
        Ok(n)
    }
}
