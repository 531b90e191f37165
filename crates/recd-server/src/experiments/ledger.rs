//! Where experiment state lives: the shared definitions, the impression log that events are
//! attributed against, and the running counts the results are computed from.
//!
//! Two implementations behind one trait, as the stores have: [`MemoryLedger`] for the
//! embedded backend (in process; definitions and counts snapshotted to
//! `experiments.json` in the data dir, atomically, after every definition change and at
//! most every `flush_ms` for counts), and [`RedisLedger`] for the redis backend, where
//! every server of the deployment reads and counts into the same keys.
//!
//! Counts are kept per variant as sums over its users, so the results can use the user as
//! the unit (delta method): for each user x = clicks (or conversions), y = impressions, and
//! the variant keeps n, Σx, Σy, Σx², Σy², Σxy. A user's own counts are kept to update the
//! squares when one of them changes.
//!
//! Redis keys (under the deployment prefix): `exp:defs` (JSON), `exp:imp:{rec_id}` (a Hash
//! per impression with a TTL: the served list, and `clicked` / `converted` marks set once),
//! `exp:c:{id}` (a Hash of the experiment's counters), `exp:u:{id}:{user}` (a user's counts,
//! with the impression TTL renewed on each count), and the stream `exp:log` (impressions
//! for offline analysis, capped).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use recd_core::experiment::Team;
use recd_store::redis::Conn;
use recd_store::{StoreError, StoreResult};
use redis::Script;
use serde::{Deserialize, Serialize};

use super::model::Definitions;

/// One served list, as logged for attribution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Impression {
    /// Who it was shown to.
    pub user: String,
    /// The strategy that built it (for interleaving, the control's).
    pub strategy: String,
    /// The experiment and variant, if the user was in one.
    pub experiment: Option<String>,
    /// The variant's name.
    pub variant: Option<String>,
    /// Whether the user counts in the experiment's statistics (not a QA override).
    pub analyzed: bool,
    /// The item ids, in order (position = index + 1).
    pub items: Vec<String>,
    /// Interleaving: which team each position belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teams: Option<Vec<Team>>,
    /// When it was served, ms since the epoch.
    pub at_ms: i64,
}

/// What an event can mark on an impression (each at most once).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// One of its items was clicked.
    Click,
    /// One of its items was bought.
    Conversion,
}

impl Mark {
    fn field(self) -> &'static str {
        match self {
            Mark::Click => "clicked",
            Mark::Conversion => "converted",
        }
    }
}

/// Changes to one user's counts in one variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Delta {
    /// Lists shown.
    pub impressions: u64,
    /// Lists clicked.
    pub clicks: u64,
    /// Lists that led to a purchase.
    pub conversions: u64,
}

/// Experiment state, shared by a deployment's servers.
#[async_trait]
pub trait Ledger: Send + Sync {
    /// The stored definitions (`None` before the first save).
    async fn load(&self) -> StoreResult<Option<Definitions>>;
    /// Replaces the stored definitions.
    async fn save(&self, defs: &Definitions) -> StoreResult<()>;
    /// Logs a served list under its recommendation id.
    async fn log_impression(&self, rec_id: &str, imp: &Impression) -> StoreResult<()>;
    /// Marks `mark` on the impression; returns it only the first time (so each list counts
    /// one click and one conversion at most, however many events cite it).
    async fn mark_first(&self, rec_id: &str, mark: Mark) -> StoreResult<Option<Impression>>;
    /// Adds `delta` to `user`'s counts in `variant` of `experiment`, and to the variant's
    /// sums, atomically.
    async fn count(
        &self,
        experiment: &str,
        variant: &str,
        user: &str,
        delta: Delta,
    ) -> StoreResult<()>;
    /// Adds `by` to one of the experiment's other counters (positions, interleaving wins).
    async fn add(&self, experiment: &str, field: &str, by: f64) -> StoreResult<()>;
    /// Every counter of an experiment.
    async fn counters(&self, experiment: &str) -> StoreResult<HashMap<String, f64>>;
}

/// The variant sums' field names, in [`SUM_FIELDS`] order.
pub const SUM_FIELDS: [&str; 9] = [
    "users", "imp", "clk", "cnv", "imp2", "clk2", "clkimp", "cnv2", "cnvimp",
];

/// The changes to the variant sums when a user's counts go from `old` to `new`
/// (`[impressions, clicks, conversions]`), in [`SUM_FIELDS`] order.
pub fn sum_changes(old: [u64; 3], new: [u64; 3]) -> [f64; 9] {
    let f = |v: [u64; 3]| v.map(|x| x as f64);
    let (o, n) = (f(old), f(new));
    let fresh = if old == [0, 0, 0] && new != [0, 0, 0] {
        1.0
    } else {
        0.0
    };
    [
        fresh,
        n[0] - o[0],
        n[1] - o[1],
        n[2] - o[2],
        n[0] * n[0] - o[0] * o[0],
        n[1] * n[1] - o[1] * o[1],
        n[1] * n[0] - o[1] * o[0],
        n[2] * n[2] - o[2] * o[2],
        n[2] * n[0] - o[2] * o[0],
    ]
}

// ---- in process ---------------------------------------------------------------------------

/// What the snapshot file holds.
#[derive(Default, Serialize, Deserialize)]
struct Snapshot {
    definitions: Option<Definitions>,
    /// experiment → counter → value.
    counters: HashMap<String, HashMap<String, f64>>,
    /// experiment → variant → user → [impressions, clicks, conversions].
    users: HashMap<String, HashMap<String, HashMap<String, [u64; 3]>>>,
}

struct ImpressionState {
    imp: Impression,
    clicked: AtomicBool,
    converted: AtomicBool,
}

/// Experiment state of the embedded backend.
pub struct MemoryLedger {
    state: Mutex<Snapshot>,
    impressions: moka::sync::Cache<String, Arc<ImpressionState>>,
    file: Option<PathBuf>,
    dirty: AtomicBool,
}

impl std::fmt::Debug for MemoryLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryLedger")
            .field("file", &self.file)
            .finish()
    }
}

fn io_error(what: &str, path: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("{what} {}: {e}", path.display()))
}

impl MemoryLedger {
    /// A ledger kept in `dir/experiments.json` (none: in memory only). Impressions are
    /// kept for `impression_ttl` and at most `max_impressions` of them (oldest dropped).
    pub fn open(
        dir: Option<&Path>,
        impression_ttl: Duration,
        max_impressions: u64,
        flush_every: Duration,
    ) -> StoreResult<Arc<Self>> {
        let file = dir.map(|d| d.join("experiments.json"));
        let snapshot = match &file {
            Some(path) if path.exists() => {
                let bytes = std::fs::read(path).map_err(|e| io_error("cannot read", path, e))?;
                serde_json::from_slice(&bytes)
                    .map_err(|e| StoreError::Internal(format!("corrupt {}: {e}", path.display())))?
            }
            _ => Snapshot::default(),
        };
        let ledger = Arc::new(Self {
            state: Mutex::new(snapshot),
            impressions: moka::sync::Cache::builder()
                .max_capacity(max_impressions)
                .time_to_live(impression_ttl)
                .build(),
            file,
            dirty: AtomicBool::new(false),
        });
        if ledger.file.is_some() {
            spawn_flusher(Arc::downgrade(&ledger), flush_every);
        }
        Ok(ledger)
    }

    /// Writes the snapshot now (atomically: a temporary file renamed over the old one).
    pub fn flush(&self) -> StoreResult<()> {
        let Some(path) = &self.file else {
            return Ok(());
        };
        if !self.dirty.swap(false, Ordering::SeqCst) {
            return Ok(());
        }
        let bytes = {
            let state = self.state.lock();
            serde_json::to_vec(&*state).map_err(|e| StoreError::Internal(e.to_string()))?
        };
        let tmp = path.with_extension("json.tmp");
        let written = std::fs::write(&tmp, &bytes)
            .and_then(|()| std::fs::File::open(&tmp)?.sync_all())
            .and_then(|()| std::fs::rename(&tmp, path));
        written.map_err(|e| {
            self.dirty.store(true, Ordering::SeqCst);
            io_error("cannot write", path, e)
        })
    }
}

impl Drop for MemoryLedger {
    fn drop(&mut self) {
        if let Err(e) = self.flush() {
            tracing::error!(cause = %e, "final experiment snapshot failed");
        }
    }
}

fn spawn_flusher(ledger: Weak<MemoryLedger>, every: Duration) {
    let started = std::thread::Builder::new()
        .name("recd-experiments".into())
        .spawn(move || {
            loop {
                std::thread::sleep(every);
                let Some(ledger) = ledger.upgrade() else {
                    return;
                };
                if let Err(e) = ledger.flush() {
                    tracing::warn!(cause = %e, "experiment snapshot failed; retrying");
                }
            }
        });
    if let Err(e) = started {
        tracing::error!(cause = %e, "cannot start the experiment snapshot thread");
    }
}

#[async_trait]
impl Ledger for MemoryLedger {
    async fn load(&self) -> StoreResult<Option<Definitions>> {
        Ok(self.state.lock().definitions.clone())
    }

    async fn save(&self, defs: &Definitions) -> StoreResult<()> {
        self.state.lock().definitions = Some(defs.clone());
        self.dirty.store(true, Ordering::SeqCst);
        // Definitions are rare and must survive a crash: write them at once.
        self.flush()
    }

    async fn log_impression(&self, rec_id: &str, imp: &Impression) -> StoreResult<()> {
        self.impressions.insert(
            rec_id.to_string(),
            Arc::new(ImpressionState {
                imp: imp.clone(),
                clicked: AtomicBool::new(false),
                converted: AtomicBool::new(false),
            }),
        );
        Ok(())
    }

    async fn mark_first(&self, rec_id: &str, mark: Mark) -> StoreResult<Option<Impression>> {
        let Some(state) = self.impressions.get(rec_id) else {
            return Ok(None);
        };
        let flag = match mark {
            Mark::Click => &state.clicked,
            Mark::Conversion => &state.converted,
        };
        Ok((!flag.swap(true, Ordering::SeqCst)).then(|| state.imp.clone()))
    }

    async fn count(
        &self,
        experiment: &str,
        variant: &str,
        user: &str,
        delta: Delta,
    ) -> StoreResult<()> {
        let mut state = self.state.lock();
        let counts = state
            .users
            .entry(experiment.to_string())
            .or_default()
            .entry(variant.to_string())
            .or_default()
            .entry(user.to_string())
            .or_default();
        let old = *counts;
        let new = [
            old[0] + delta.impressions,
            old[1] + delta.clicks,
            old[2] + delta.conversions,
        ];
        *counts = new;
        let changes = sum_changes(old, new);
        let counters = state.counters.entry(experiment.to_string()).or_default();
        for (field, by) in SUM_FIELDS.iter().zip(changes) {
            *counters.entry(format!("{variant}|{field}")).or_default() += by;
        }
        self.dirty.store(true, Ordering::SeqCst);
        Ok(())
    }

    async fn add(&self, experiment: &str, field: &str, by: f64) -> StoreResult<()> {
        *self
            .state
            .lock()
            .counters
            .entry(experiment.to_string())
            .or_default()
            .entry(field.to_string())
            .or_default() += by;
        self.dirty.store(true, Ordering::SeqCst);
        Ok(())
    }

    async fn counters(&self, experiment: &str) -> StoreResult<HashMap<String, f64>> {
        Ok(self
            .state
            .lock()
            .counters
            .get(experiment)
            .cloned()
            .unwrap_or_default())
    }
}

// ---- redis --------------------------------------------------------------------------------

/// Adds a delta to a user's counts and the variant's sums in one step.
/// KEYS: user hash, counters hash. ARGV: variant, d_imp, d_clk, d_cnv, ttl_ms.
const COUNT: &str = r"
local o = redis.call('HMGET', KEYS[1], 'i', 'c', 'v')
local oi, oc, ov = tonumber(o[1]) or 0, tonumber(o[2]) or 0, tonumber(o[3]) or 0
local ni, nc, nv = oi + tonumber(ARGV[2]), oc + tonumber(ARGV[3]), ov + tonumber(ARGV[4])
redis.call('HSET', KEYS[1], 'i', ni, 'c', nc, 'v', nv)
redis.call('PEXPIRE', KEYS[1], ARGV[5])
local v = ARGV[1] .. '|'
if oi == 0 and oc == 0 and ov == 0 then redis.call('HINCRBYFLOAT', KEYS[2], v .. 'users', 1) end
redis.call('HINCRBYFLOAT', KEYS[2], v .. 'imp', ni - oi)
redis.call('HINCRBYFLOAT', KEYS[2], v .. 'clk', nc - oc)
redis.call('HINCRBYFLOAT', KEYS[2], v .. 'cnv', nv - ov)
redis.call('HINCRBYFLOAT', KEYS[2], v .. 'imp2', ni * ni - oi * oi)
redis.call('HINCRBYFLOAT', KEYS[2], v .. 'clk2', nc * nc - oc * oc)
redis.call('HINCRBYFLOAT', KEYS[2], v .. 'clkimp', nc * ni - oc * oi)
redis.call('HINCRBYFLOAT', KEYS[2], v .. 'cnv2', nv * nv - ov * ov)
redis.call('HINCRBYFLOAT', KEYS[2], v .. 'cnvimp', nv * ni - ov * oi)
return 1";

/// Experiment state in Redis, shared by every server of a deployment.
#[derive(Clone)]
pub struct RedisLedger {
    conn: Conn,
    prefix: String,
    impression_ttl_ms: u64,
    log_max: u64,
    count: Script,
}

impl std::fmt::Debug for RedisLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLedger")
            .field("prefix", &self.prefix)
            .finish()
    }
}

fn redis_error(e: redis::RedisError) -> StoreError {
    StoreError::Unavailable(format!("redis (experiments): {e}"))
}

impl RedisLedger {
    /// Connects under the deployment's key prefix (a `redis+cluster://` URL: a cluster,
    /// where every ledger key shares one hash tag, so that an impression and its log
    /// entry, or a user's counts and the experiment's, stay one atomic unit).
    pub async fn connect(
        url: &str,
        prefix: &str,
        impression_ttl: Duration,
        log_max: u64,
        timeout: Duration,
    ) -> StoreResult<Self> {
        let conn = recd_store::redis::connect_url(url, false, timeout, timeout).await?;
        let prefix = if conn.is_cluster() {
            format!("{prefix}{{exp}}:")
        } else {
            format!("{prefix}exp:")
        };
        Ok(Self {
            conn,
            prefix,
            impression_ttl_ms: impression_ttl.as_millis() as u64,
            log_max,
            count: Script::new(COUNT),
        })
    }

    fn key(&self, rest: &str) -> String {
        format!("{}{rest}", self.prefix)
    }
}

#[async_trait]
impl Ledger for RedisLedger {
    async fn load(&self) -> StoreResult<Option<Definitions>> {
        let mut conn = self.conn.clone();
        let raw: Option<Vec<u8>> = redis::cmd("GET")
            .arg(self.key("defs"))
            .query_async(&mut conn)
            .await
            .map_err(redis_error)?;
        raw.map(|b| {
            serde_json::from_slice(&b)
                .map_err(|e| StoreError::Internal(format!("corrupt experiment definitions: {e}")))
        })
        .transpose()
    }

    async fn save(&self, defs: &Definitions) -> StoreResult<()> {
        let body = serde_json::to_vec(defs).map_err(|e| StoreError::Internal(e.to_string()))?;
        let mut conn = self.conn.clone();
        let () = redis::cmd("SET")
            .arg(self.key("defs"))
            .arg(body)
            .query_async(&mut conn)
            .await
            .map_err(redis_error)?;
        Ok(())
    }

    async fn log_impression(&self, rec_id: &str, imp: &Impression) -> StoreResult<()> {
        let body = serde_json::to_vec(imp).map_err(|e| StoreError::Internal(e.to_string()))?;
        let key = self.key(&format!("imp:{rec_id}"));
        let mut pipe = redis::pipe();
        pipe.cmd("HSET").arg(&key).arg("imp").arg(&body).ignore();
        pipe.cmd("PEXPIRE")
            .arg(&key)
            .arg(self.impression_ttl_ms)
            .ignore();
        pipe.cmd("XADD")
            .arg(self.key("log"))
            .arg("MAXLEN")
            .arg("~")
            .arg(self.log_max)
            .arg("*")
            .arg("id")
            .arg(rec_id)
            .arg("imp")
            .arg(&body)
            .ignore();
        let mut conn = self.conn.clone();
        let () = pipe.query_async(&mut conn).await.map_err(redis_error)?;
        Ok(())
    }

    async fn mark_first(&self, rec_id: &str, mark: Mark) -> StoreResult<Option<Impression>> {
        let key = self.key(&format!("imp:{rec_id}"));
        let mut conn = self.conn.clone();
        let (body, first): (Option<Vec<u8>>, i64) = redis::pipe()
            .cmd("HGET")
            .arg(&key)
            .arg("imp")
            .cmd("HSETNX")
            .arg(&key)
            .arg(mark.field())
            .arg(1)
            .query_async(&mut conn)
            .await
            .map_err(redis_error)?;
        let Some(body) = body else {
            // Expired or never logged: drop the mark we may just have created.
            let _: redis::RedisResult<i64> =
                redis::cmd("DEL").arg(&key).query_async(&mut conn).await;
            return Ok(None);
        };
        if first == 0 {
            return Ok(None);
        }
        serde_json::from_slice(&body)
            .map(Some)
            .map_err(|e| StoreError::Internal(format!("corrupt impression: {e}")))
    }

    async fn count(
        &self,
        experiment: &str,
        variant: &str,
        user: &str,
        delta: Delta,
    ) -> StoreResult<()> {
        let mut conn = self.conn.clone();
        let _: i64 = self
            .count
            .key(self.key(&format!("u:{experiment}:{user}")))
            .key(self.key(&format!("c:{experiment}")))
            .arg(variant)
            .arg(delta.impressions)
            .arg(delta.clicks)
            .arg(delta.conversions)
            // A user's counts outlive their last impression by the attribution window.
            .arg(self.impression_ttl_ms.max(1) * 30)
            .invoke_async(&mut conn)
            .await
            .map_err(redis_error)?;
        Ok(())
    }

    async fn add(&self, experiment: &str, field: &str, by: f64) -> StoreResult<()> {
        let mut conn = self.conn.clone();
        let _: f64 = redis::cmd("HINCRBYFLOAT")
            .arg(self.key(&format!("c:{experiment}")))
            .arg(field)
            .arg(by)
            .query_async(&mut conn)
            .await
            .map_err(redis_error)?;
        Ok(())
    }

    async fn counters(&self, experiment: &str) -> StoreResult<HashMap<String, f64>> {
        let mut conn = self.conn.clone();
        let raw: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(self.key(&format!("c:{experiment}")))
            .query_async(&mut conn)
            .await
            .map_err(redis_error)?;
        Ok(raw
            .into_iter()
            .filter_map(|(k, v)| v.parse::<f64>().ok().map(|v| (k, v)))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_follow_a_users_counts() {
        // A user seen twice with one click: n 1, Σy 2, Σx 1, Σy² 4, Σx² 1, Σxy 2.
        let mut sums = [0.0; 9];
        let steps = [[0, 0, 0], [1, 0, 0], [1, 1, 0], [2, 1, 0]];
        for w in steps.windows(2) {
            for (s, d) in sums.iter_mut().zip(sum_changes(w[0], w[1])) {
                *s += d;
            }
        }
        assert_eq!(sums, [1.0, 2.0, 1.0, 0.0, 4.0, 1.0, 2.0, 0.0, 0.0]);
    }

    #[tokio::test]
    async fn a_list_counts_one_click_however_many_events_cite_it() {
        let ledger =
            MemoryLedger::open(None, Duration::from_secs(60), 100, Duration::from_secs(1)).unwrap();
        let imp = Impression {
            user: "u".into(),
            strategy: "default".into(),
            experiment: Some("e".into()),
            variant: Some("a".into()),
            analyzed: true,
            items: vec!["x".into()],
            teams: None,
            at_ms: 1,
        };
        ledger.log_impression("r1", &imp).await.unwrap();
        assert_eq!(
            ledger.mark_first("r1", Mark::Click).await.unwrap(),
            Some(imp.clone())
        );
        assert_eq!(ledger.mark_first("r1", Mark::Click).await.unwrap(), None);
        assert!(
            ledger
                .mark_first("r1", Mark::Conversion)
                .await
                .unwrap()
                .is_some()
        );
        assert_eq!(ledger.mark_first("nope", Mark::Click).await.unwrap(), None);
    }

    #[tokio::test]
    async fn counts_and_definitions_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let ledger = MemoryLedger::open(
                Some(dir.path()),
                Duration::from_secs(60),
                100,
                Duration::from_secs(3600),
            )
            .unwrap();
            ledger.save(&Definitions::default()).await.unwrap();
            let d = Delta {
                impressions: 1,
                clicks: 1,
                conversions: 0,
            };
            ledger.count("e", "a", "u1", d).await.unwrap();
            ledger.add("e", "a_wins", 2.0).await.unwrap();
        }
        let ledger = MemoryLedger::open(
            Some(dir.path()),
            Duration::from_secs(60),
            100,
            Duration::from_secs(3600),
        )
        .unwrap();
        assert!(ledger.load().await.unwrap().is_some());
        let c = ledger.counters("e").await.unwrap();
        assert_eq!(c["a|users"], 1.0);
        assert_eq!(c["a|clk"], 1.0);
        assert_eq!(c["a_wins"], 2.0);
    }
}
