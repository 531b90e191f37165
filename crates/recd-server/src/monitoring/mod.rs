//! Whether recommendations still work, watched online: what every served list and every
//! event says about quality (catalog coverage and exposure Gini over a sliding window,
//! per-list category entropy and diversity, the source mix, events per type), and drift of
//! the features that move when something breaks (top score and score spread of served
//! lists, the category mix of served items, the event-type mix) against a reference.
//!
//! The math is `recd_core::monitor`'s; this module feeds it and exports it. A feature's
//! reference is the first `reference_size` observations after start (or after
//! `POST /v1/monitoring/drift/reset`, e.g. after a retrain); the live side is the latest
//! `live_size` observations (a window that restarts when full; until the new one has
//! `min_live` values the previous full window is reported). Crossing the PSI threshold
//! (with a significant two-sample test) logs a warning once and sets
//! `recd_drift_detected{feature}`.
//!
//! Cost per request: a served list is counted (cached counter handles), and what it says
//! alone — category entropy, diversity, novelty (against a snapshot of the exposure window
//! refreshed every few seconds) — is measured at once, while its items are in the CPU's
//! caches. What needs the shared summaries (the exposure window, the drift features) goes,
//! as a compact record (hashed ids, joined categories), to a per-thread buffer (see
//! [`pending`]) folded in batches under one lock: by [`Monitor::tick`], which the server runs
//! every 250 ms, or before anything reads the state. Memory is bounded (see
//! `recd_core::monitor`).

use metrics::{Counter, Histogram};
use parking_lot::{Mutex, RwLock};
use recd_core::monitor::drift::{
    CategoricalDriftMonitor, DriftReport, DriftThresholds, NumericDriftMonitor,
    NumericMonitorParams,
};
use recd_core::monitor::quality::{
    category_entropy, intra_list_diversity, novelty, smoothed_share,
};
use recd_core::monitor::window::{ExposureParams, ExposureSnapshot, ExposureWindow, WindowSpec};
use recd_core::{Event, EventType, Schema};
use serde::{Deserialize, Serialize};

use crate::answer::{Recommendation, Source};

mod counters;
pub mod pending;
pub mod tag;

use counters::CounterCache;
use pending::{Batch, CATEGORY_SEPARATOR, Pending, SeenEvent, ServedList};
use tag::ListLabels;

/// `[monitoring]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MonitoringConfig {
    /// Whether served lists and events are watched at all.
    pub enabled: bool,
    /// Observations that make a feature's reference.
    pub reference_size: usize,
    /// Observations in a live window.
    pub live_size: usize,
    /// A live window is reported once it has this many observations.
    pub min_live: usize,
    /// PSI at or above which a feature drifted (with the test's p below `alpha`).
    pub psi_threshold: f64,
    /// Significance level of the two-sample tests.
    pub alpha: f64,
    /// The tag field whose values make the category mix (default: the schema's first tag
    /// field, or `category` when there is one).
    pub category_field: Option<String>,
    /// The sliding window of coverage and exposure, in minutes.
    pub window_minutes: usize,
    /// A command (program and arguments, no shell) run when a feature starts drifting,
    /// e.g. a retraining script: `recd train` then refuses a model that does worse than the
    /// live one (the model gate). It gets `RECD_DRIFTED_FEATURE` and `RECD_DRIFT_PSI` in its
    /// environment. Empty: none.
    pub on_drift_command: Vec<String>,
    /// The command runs at most once per this many minutes.
    pub on_drift_min_interval_minutes: u64,
    /// Share of served lists whose items come without vectors (Redis backend, cached lists)
    /// for which the vectors are fetched, off the request path, to measure diversity.
    pub diversity_sample: f64,
}

impl Default for MonitoringConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            reference_size: 2_000,
            live_size: 10_000,
            min_live: 500,
            psi_threshold: 0.2,
            alpha: 0.05,
            category_field: None,
            window_minutes: 60,
            on_drift_command: Vec::new(),
            on_drift_min_interval_minutes: 60,
            diversity_sample: 0.05,
        }
    }
}

impl MonitoringConfig {
    /// Checks values that parse but make no sense.
    pub fn validate(&self) -> Result<(), String> {
        if self.reference_size < 10 || self.live_size < 10 || self.min_live == 0 {
            return Err(
                "monitoring.reference_size and live_size must be >= 10, min_live >= 1".into(),
            );
        }
        if self.min_live > self.live_size {
            return Err("monitoring.min_live must be at most live_size".into());
        }
        DriftThresholds {
            psi: self.psi_threshold,
            alpha: self.alpha,
        }
        .validate()
        .map_err(|e| format!("monitoring: {}", e.message))?;
        if self.window_minutes == 0 {
            return Err("monitoring.window_minutes must be at least 1".into());
        }
        if !(0.0..=1.0).contains(&self.diversity_sample) {
            return Err("monitoring.diversity_sample must be in [0, 1]".into());
        }
        if self.on_drift_command.first().is_some_and(String::is_empty) {
            return Err("monitoring.on_drift_command must start with a program".into());
        }
        Ok(())
    }
}

/// One watched feature: collecting its reference, then comparing live windows with it.
enum Feature {
    /// Numeric, still collecting the reference.
    NumericReference(Vec<f64>),
    /// Numeric, watching.
    Numeric(Box<Watched<NumericDriftMonitor>>),
    /// Categorical, still collecting the reference.
    CategoricalReference(Vec<String>),
    /// Categorical, watching.
    Categorical(Box<Watched<CategoricalDriftMonitor>>),
}

struct Watched<M> {
    monitor: M,
    live: usize,
    /// The report of the last full live window.
    last_full: Option<DriftReport>,
    /// Whether the last report said drifted (to log a crossing once).
    drifted: bool,
}

/// What the two kinds of drift monitor have in common.
trait Watch {
    /// What one observation is.
    type Value: ?Sized;
    fn observe(&mut self, value: &Self::Value);
    fn report(&self, thresholds: &DriftThresholds) -> Option<DriftReport>;
    fn reset_live(&mut self);
}

impl Watch for NumericDriftMonitor {
    type Value = f64;
    fn observe(&mut self, value: &f64) {
        NumericDriftMonitor::observe(self, *value);
    }
    fn report(&self, thresholds: &DriftThresholds) -> Option<DriftReport> {
        NumericDriftMonitor::report(self, thresholds)
    }
    fn reset_live(&mut self) {
        NumericDriftMonitor::reset_live(self);
    }
}

impl Watch for CategoricalDriftMonitor {
    type Value = str;
    fn observe(&mut self, value: &str) {
        CategoricalDriftMonitor::observe(self, value);
    }
    fn report(&self, thresholds: &DriftThresholds) -> Option<DriftReport> {
        CategoricalDriftMonitor::report(self, thresholds)
    }
    fn reset_live(&mut self) {
        CategoricalDriftMonitor::reset_live(self);
    }
}

impl<M: Watch> Watched<M> {
    fn new(monitor: M) -> Box<Self> {
        Box::new(Self {
            monitor,
            live: 0,
            last_full: None,
            drifted: false,
        })
    }

    /// Feeds one live value; a full window is reported and a new one begins.
    fn observe(&mut self, value: &M::Value, live_size: usize, thresholds: &DriftThresholds) {
        self.monitor.observe(value);
        self.live += 1;
        if self.live >= live_size {
            self.last_full = self.monitor.report(thresholds);
            self.monitor.reset_live();
            self.live = 0;
        }
    }

    /// The current window's report once it has `min_live` values, else the last full one's.
    fn current(&self, min_live: usize, thresholds: &DriftThresholds) -> Option<DriftReport> {
        if self.live >= min_live {
            self.monitor.report(thresholds)
        } else {
            self.last_full.clone()
        }
    }
}

/// The features, by name.
const FEATURES: [(&str, bool); 7] = [
    ("top_score", true),
    ("score_spread", true),
    ("served_category", false),
    ("event_type", false),
    ("item_vector_norm", true),
    ("query_vector_norm", true),
    ("user_event_gap_seconds", true),
];

/// Positions in [`FEATURES`] of the features fed per served list (found by position, not
/// by comparing names, on the hot path).
const TOP_SCORE: usize = 0;
const SCORE_SPREAD: usize = 1;
const SERVED_CATEGORY: usize = 2;
const EVENT_TYPE: usize = 3;
const QUERY_VECTOR_NORM: usize = 5;
const USER_EVENT_GAP: usize = 6;

/// Users whose last event time is kept to measure the gap to their next one (the table
/// starts afresh when full: bounded memory, about 2 MiB).
const GAP_USERS: usize = 100_000;

struct State {
    features: Vec<(&'static str, Feature)>,
    /// None only if the window settings were refused (they are validated first).
    exposure: Option<ExposureWindow>,
    /// The catalog's size at the last export (novelty's smoothing).
    catalog_items: u64,
    /// Last event time per user (by a hash of the id), for `user_event_gap_seconds`.
    last_event_ms: std::collections::HashMap<u64, i64>,
    /// When the novelty reference was last taken (time of the newest folded list).
    novelty_taken_ms: Option<i64>,
}

/// How often the novelty reference is taken anew from the exposure window.
const NOVELTY_REFRESH_MS: i64 = 5_000;

/// What a served list's novelty is measured against: the exposure window as it was at most
/// [`NOVELTY_REFRESH_MS`] (of folded lists) ago.
#[derive(Debug, Default)]
struct NoveltyReference {
    exposure: ExposureSnapshot,
    catalog_items: u64,
}

/// Handles of the unlabelled metrics recorded per list (made once: a `metrics!` macro call
/// looks its key up in the registry every time).
struct Handles {
    cold: Counter,
    entropy: Histogram,
    diversity: Histogram,
    novelty: Histogram,
}

impl Handles {
    fn register() -> Self {
        Self {
            cold: metrics::counter!("recd_cold_recommendations_total"),
            entropy: metrics::histogram!("recd_list_category_entropy"),
            diversity: metrics::histogram!("recd_list_diversity"),
            novelty: metrics::histogram!("recd_list_novelty"),
        }
    }
}

/// The online monitor of one server.
pub struct Monitor {
    config: MonitoringConfig,
    category_field: Option<String>,
    state: Mutex<State>,
    /// Observations not folded into `state` yet.
    pending: Pending,
    /// What novelty is measured against (read on the request path; taken anew by a fold).
    novelty: RwLock<NoveltyReference>,
    counters: CounterCache,
    handles: Handles,
    /// When `on_drift_command` last ran.
    last_command: Mutex<Option<std::time::Instant>>,
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor").finish_non_exhaustive()
    }
}

fn fresh_features() -> Vec<(&'static str, Feature)> {
    FEATURES
        .iter()
        .map(|(name, numeric)| {
            let f = if *numeric {
                Feature::NumericReference(Vec::new())
            } else {
                Feature::CategoricalReference(Vec::new())
            };
            (*name, f)
        })
        .collect()
}

/// `categories` as one string (see [`ServedList::categories`]); a separator inside a value
/// (never in practice) is dropped rather than splitting it.
fn join_categories(categories: &[&str]) -> String {
    let mut joined = String::with_capacity(categories.iter().map(|c| c.len() + 1).sum());
    for c in categories {
        if !joined.is_empty() {
            joined.push(CATEGORY_SEPARATOR);
        }
        joined.extend(c.chars().filter(|&ch| ch != CATEGORY_SEPARATOR));
    }
    joined
}

/// Categories beyond this many fall into "other" (bounded label values and memory).
const MAX_CATEGORIES: usize = 32;

impl Monitor {
    /// A monitor for `schema`'s items; settings that `validate` refuses are an error, as is
    /// a `category_field` that is not a tag field of the schema.
    pub fn new(config: MonitoringConfig, schema: &Schema) -> Result<Self, String> {
        config.validate()?;
        let category_field = match &config.category_field {
            Some(f) => match schema.field(f) {
                Some(recd_core::FieldType::Tag) => Some(f.clone()),
                _ => {
                    return Err(format!(
                        "monitoring.category_field '{f}' is not a tag field"
                    ));
                }
            },
            None => {
                let mut tags: Vec<&String> = schema
                    .fields
                    .iter()
                    .filter(|(_, t)| **t == recd_core::FieldType::Tag)
                    .map(|(n, _)| n)
                    .collect();
                tags.sort_by_key(|n| (n.as_str() != "category", n.as_str()));
                tags.first().map(|s| (*s).clone())
            }
        };
        let exposure = ExposureWindow::new(
            WindowSpec {
                bucket_ms: 60_000,
                buckets: config.window_minutes,
            },
            ExposureParams::default(),
        )
        .map_err(|e| e.message)?;
        let exposure = Some(exposure);
        Ok(Self {
            state: Mutex::new(State {
                features: fresh_features(),
                exposure,
                catalog_items: 0,
                last_event_ms: std::collections::HashMap::new(),
                novelty_taken_ms: None,
            }),
            category_field,
            config,
            pending: Pending::default(),
            novelty: RwLock::default(),
            counters: CounterCache::default(),
            handles: Handles::register(),
            last_command: Mutex::new(None),
        })
    }

    /// A monitor without a category mix (invalid numbers fall back to the defaults).
    pub fn without_categories(config: MonitoringConfig) -> Self {
        let config = if config.validate().is_ok() {
            config
        } else {
            MonitoringConfig::default()
        };
        let spec = WindowSpec {
            bucket_ms: 60_000,
            buckets: config.window_minutes,
        };
        Self {
            state: Mutex::new(State {
                features: fresh_features(),
                exposure: ExposureWindow::new(spec, ExposureParams::default()).ok(),
                catalog_items: 0,
                last_event_ms: std::collections::HashMap::new(),
                novelty_taken_ms: None,
            }),
            category_field: None,
            config: MonitoringConfig {
                category_field: None,
                ..config
            },
            pending: Pending::default(),
            novelty: RwLock::default(),
            counters: CounterCache::default(),
            handles: Handles::register(),
            last_command: Mutex::new(None),
        }
    }

    fn thresholds(&self) -> DriftThresholds {
        DriftThresholds {
            psi: self.config.psi_threshold,
            alpha: self.config.alpha,
        }
    }

    /// Watches one served list, which carries `labels`. What the list says alone (category
    /// entropy, diversity, novelty) is measured here, while its items are still in the CPU's
    /// caches from ranking; what needs the shared summaries waits for the next fold (see
    /// [`tick`](Self::tick)).
    pub fn served(&self, answer: &Recommendation, labels: &ListLabels, now_ms: i64) {
        self.counters.with(labels, |c| {
            c.recommendations.increment(1);
            c.impressions.increment(1);
        });
        if answer.source == Source::Popular {
            self.handles.cold.increment(1);
        }
        if !self.config.enabled || answer.items.is_empty() {
            return;
        }
        let categories: Vec<&str> = match &self.category_field {
            Some(field) => answer
                .items
                .iter()
                .filter_map(|i| i.item.0.field(field)?.as_tags()?.first())
                .map(String::as_str)
                .collect(),
            None => Vec::new(),
        };
        if !categories.is_empty() {
            self.handles
                .entropy
                .record(category_entropy(categories.iter().copied()));
        }
        // Diversity needs the items' vectors: present on lists computed now, not on cached
        // ones (nor on the Redis backend's; see `wants_vectors`).
        let vectors: Vec<&[f32]> = answer
            .items
            .iter()
            .filter_map(|i| i.item.0.vector.as_deref())
            .collect();
        if vectors.len() == answer.items.len()
            && let Ok(Some(d)) = intra_list_diversity(&vectors)
        {
            self.handles.diversity.record(d);
        }
        if let Some(n) = self.novelty_of(answer.items.iter().map(|i| i.id.as_str())) {
            self.handles.novelty.record(n);
        }
        let top = answer.items[0].score;
        let list = ServedList {
            t_ms: now_ms,
            top,
            spread: top - answer.items[answer.items.len() - 1].score,
            item_hashes: answer
                .items
                .iter()
                .map(|i| recd_core::monitor::key_hash(i.id.as_bytes()))
                .collect(),
            categories: join_categories(&categories),
        };
        if let Some(full) = self.pending.push(|b| b.lists.push(list)) {
            self.fold(vec![full]);
        }
    }

    /// A list's novelty against what was shown before it: the mean over its items of -log2
    /// of the item's smoothed share of the window's impressions, as of the last novelty
    /// reference (at most a few seconds old: looking every item up in every bucket of the
    /// live window would cost more than the rest of the monitoring).
    pub fn novelty_of<'a>(&self, ids: impl ExactSizeIterator<Item = &'a str>) -> Option<f64> {
        Self::list_novelty(&self.novelty.read(), ids)
    }

    fn list_novelty<'a>(
        reference: &NoveltyReference,
        ids: impl ExactSizeIterator<Item = &'a str>,
    ) -> Option<f64> {
        let shown = reference.exposure.impressions();
        let catalog = reference.catalog_items.max(ids.len() as u64);
        let shares: Vec<f64> = ids
            .map(|id| smoothed_share(reference.exposure.count(id), shown, catalog))
            .collect();
        novelty(&shares).ok().flatten()
    }

    /// Folds what waits into the shared state (the server calls it every 250 ms; anything
    /// that reads the state calls it first).
    pub fn tick(&self) {
        let batches = self.pending.take_all();
        if !batches.is_empty() {
            self.fold(batches);
        }
    }

    /// Folds `batches` into the shared state, and takes a new novelty reference when the
    /// last one is old.
    fn fold(&self, batches: Vec<Batch>) {
        let thresholds = self.thresholds();
        let mut state = self.state.lock();
        let state = &mut *state;
        let mut newest = None;
        for batch in batches {
            for list in batch.lists {
                newest = newest.max(Some(list.t_ms));
                self.measure_list(state, &list, &thresholds);
            }
            if let Some((name, feature)) = state.features.get_mut(QUERY_VECTOR_NORM) {
                for &norm in &batch.query_norms {
                    self.observe_numeric(name, feature, norm, &thresholds);
                }
            }
            self.measure_events(state, &batch.events, &thresholds);
        }
        let stale = match (state.novelty_taken_ms, newest) {
            (None, _) => true,
            (Some(taken), Some(newest)) => newest.saturating_sub(taken) >= NOVELTY_REFRESH_MS,
            (Some(_), None) => false,
        };
        if stale {
            self.take_novelty_reference(state, newest);
        }
    }

    /// What one served list adds to the shared summaries: its items' exposure and its
    /// drift features.
    fn measure_list(&self, state: &mut State, list: &ServedList, thresholds: &DriftThresholds) {
        if let Some(exposure) = &mut state.exposure {
            exposure.add_hashes(list.t_ms, list.item_hashes.iter().copied());
        }
        if let Some((name, feature)) = state.features.get_mut(TOP_SCORE) {
            self.observe_numeric(name, feature, list.top, thresholds);
        }
        if let Some((name, feature)) = state.features.get_mut(SCORE_SPREAD) {
            self.observe_numeric(name, feature, list.spread, thresholds);
        }
        if let Some((name, feature)) = state.features.get_mut(SERVED_CATEGORY) {
            for c in list.categories() {
                self.observe_categorical(name, feature, c, thresholds);
            }
        }
    }

    fn take_novelty_reference(&self, state: &mut State, now_ms: Option<i64>) {
        let Some(exposure) = &state.exposure else {
            return;
        };
        *self.novelty.write() = NoveltyReference {
            exposure: exposure.snapshot(),
            catalog_items: state.catalog_items,
        };
        if now_ms.is_some() {
            state.novelty_taken_ms = now_ms;
        }
    }

    /// Whether to fetch the vectors of a served list's items to measure its diversity (its
    /// items came without them, and the list is in the sample).
    pub fn wants_vectors(&self, answer: &Recommendation) -> bool {
        self.config.enabled
            && answer.items.len() > 1
            && answer.items.iter().any(|i| i.item.0.vector.is_none())
            && rand::random::<f64>() < self.config.diversity_sample
    }

    /// Records one list's intra-list diversity from its items' vectors.
    pub fn record_diversity<V: AsRef<[f32]>>(vectors: &[V]) {
        if let Ok(Some(d)) = intra_list_diversity(vectors) {
            metrics::histogram!("recd_list_diversity").record(d);
        }
    }

    /// Watches the vectors of upserted items (their norms drift when whatever makes the
    /// embeddings upstream changes).
    pub fn items_upserted(&self, items: &[recd_core::ItemUpsert]) {
        self.watch("item_vector_norm", |name, feature, thresholds| {
            for v in items.iter().filter_map(|u| u.item.vector.as_deref()) {
                let norm = recd_core::vector::norm_squared_f64(v).sqrt();
                self.observe_numeric(name, feature, norm, thresholds);
            }
        });
    }

    /// Runs `observe` on the feature called `wanted` (when monitoring is on).
    fn watch(&self, wanted: &str, mut observe: impl FnMut(&str, &mut Feature, &DriftThresholds)) {
        if !self.config.enabled {
            return;
        }
        let thresholds = self.thresholds();
        let mut state = self.state.lock();
        for (name, feature) in &mut state.features {
            if *name == wanted {
                observe(name, feature, &thresholds);
            }
        }
    }

    /// Counts a click or purchase that named a served list (by the list's labels).
    pub fn attributed(&self, kind: EventType, labels: &ListLabels) {
        self.counters.with(labels, |c| match kind {
            EventType::Click => c.clicks.increment(1),
            EventType::Purchase => c.conversions.increment(1),
            _ => {}
        });
    }

    /// Watches applied events: counted at once; their type and their users' event gaps wait
    /// in this thread's buffer for the next fold (no shared lock on the event path).
    pub fn events(&self, events: &[Event]) {
        for e in events {
            metrics::counter!("recd_events_total", "type" => e.kind.as_str()).increment(1);
        }
        if !self.config.enabled || events.is_empty() {
            return;
        }
        let full = self.pending.push(|b| {
            b.events.extend(events.iter().map(|e| SeenEvent {
                kind: e.kind,
                user_hash: recd_core::monitor::key_hash(e.user_id.as_bytes()),
                t_ms: e.timestamp_ms,
            }))
        });
        if let Some(full) = full {
            self.fold(vec![full]);
        }
    }

    /// What folded events add to the drift features: their type, and per-user event rates
    /// as the gaps between a user's consecutive events.
    fn measure_events(
        &self,
        state: &mut State,
        events: &[SeenEvent],
        thresholds: &DriftThresholds,
    ) {
        if events.is_empty() {
            return;
        }
        if let Some((name, feature)) = state.features.get_mut(EVENT_TYPE) {
            for e in events {
                self.observe_categorical(name, feature, e.kind.as_str(), thresholds);
            }
        }
        for e in events {
            if state.last_event_ms.len() >= GAP_USERS {
                state.last_event_ms.clear();
            }
            let before = state.last_event_ms.insert(e.user_hash, e.t_ms);
            let Some(before) = before.filter(|b| *b <= e.t_ms) else {
                continue;
            };
            let gap = (e.t_ms - before) as f64 / 1000.0;
            if let Some((name, feature)) = state.features.get_mut(USER_EVENT_GAP) {
                self.observe_numeric(name, feature, gap, thresholds);
            }
        }
    }

    fn observe_numeric(
        &self,
        name: &str,
        feature: &mut Feature,
        x: f64,
        thresholds: &DriftThresholds,
    ) {
        if !x.is_finite() {
            return;
        }
        match feature {
            Feature::NumericReference(values) => {
                values.push(x);
                if values.len() >= self.config.reference_size {
                    match NumericDriftMonitor::new(name, values, &NumericMonitorParams::default()) {
                        Ok(monitor) => *feature = Feature::Numeric(Watched::new(monitor)),
                        // A degenerate reference (e.g. all equal): collect a new one.
                        Err(e) => {
                            tracing::debug!(feature = name, cause = %e.message, "drift reference rejected");
                            values.clear();
                        }
                    }
                }
            }
            Feature::Numeric(w) => w.observe(&x, self.config.live_size, thresholds),
            _ => {}
        }
    }

    fn observe_categorical(
        &self,
        name: &str,
        feature: &mut Feature,
        value: &str,
        thresholds: &DriftThresholds,
    ) {
        match feature {
            Feature::CategoricalReference(values) => {
                values.push(value.to_string());
                if values.len() >= self.config.reference_size {
                    match CategoricalDriftMonitor::from_values(name, values.iter(), MAX_CATEGORIES)
                    {
                        Ok(monitor) => *feature = Feature::Categorical(Watched::new(monitor)),
                        Err(e) => {
                            tracing::debug!(feature = name, cause = %e.message, "drift reference rejected");
                            values.clear();
                        }
                    }
                }
            }
            Feature::Categorical(w) => w.observe(value, self.config.live_size, thresholds),
            _ => {}
        }
    }

    /// The drift report (`GET /v1/monitoring/drift`), exporting each feature's PSI and
    /// verdict as gauges and logging a threshold crossing once.
    pub fn drift(&self) -> DriftAnswer {
        self.tick();
        let thresholds = self.thresholds();
        let min_live = self.config.min_live;
        let mut state = self.state.lock();
        let mut features = Vec::new();
        for (name, feature) in &mut state.features {
            let (status, report, drifted_before) = match feature {
                Feature::NumericReference(v) => (
                    format!(
                        "collecting reference ({}/{})",
                        v.len(),
                        self.config.reference_size
                    ),
                    None,
                    None,
                ),
                Feature::CategoricalReference(v) => (
                    format!(
                        "collecting reference ({}/{})",
                        v.len(),
                        self.config.reference_size
                    ),
                    None,
                    None,
                ),
                Feature::Numeric(w) => (
                    "watching".into(),
                    w.current(min_live, &thresholds),
                    Some(&mut w.drifted),
                ),
                Feature::Categorical(w) => (
                    "watching".into(),
                    w.current(min_live, &thresholds),
                    Some(&mut w.drifted),
                ),
            };
            if let (Some(r), Some(before)) = (&report, drifted_before) {
                metrics::gauge!("recd_drift_psi", "feature" => *name).set(r.psi);
                metrics::gauge!("recd_drift_p_value", "feature" => *name).set(r.p_value);
                metrics::gauge!("recd_drift_detected", "feature" => *name)
                    .set(f64::from(u8::from(r.drifted)));
                if r.drifted && !*before {
                    tracing::warn!(
                        feature = *name,
                        psi = r.psi,
                        p_value = r.p_value,
                        "drift detected"
                    );
                    self.on_drift(name, r.psi);
                }
                *before = r.drifted;
            }
            features.push(FeatureDrift {
                name: name.to_string(),
                status,
                report,
            });
        }
        DriftAnswer {
            threshold: thresholds.psi,
            alpha: thresholds.alpha,
            drifted: features
                .iter()
                .filter(|f| f.report.as_ref().is_some_and(|r| r.drifted))
                .map(|f| f.name.clone())
                .collect(),
            features,
        }
    }

    /// Runs `on_drift_command` (in the background, at most once per interval).
    fn on_drift(&self, feature: &str, psi: f64) {
        let Some((program, args)) = self.config.on_drift_command.split_first() else {
            return;
        };
        let interval =
            std::time::Duration::from_secs(self.config.on_drift_min_interval_minutes * 60);
        {
            let mut last = self.last_command.lock();
            if last.is_some_and(|t| t.elapsed() < interval) {
                tracing::info!(
                    feature,
                    "drift command not run: it ran less than the interval ago"
                );
                return;
            }
            *last = Some(std::time::Instant::now());
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args)
            .env("RECD_DRIFTED_FEATURE", feature)
            .env("RECD_DRIFT_PSI", psi.to_string())
            .stdin(std::process::Stdio::null())
            .kill_on_drop(false);
        let feature = feature.to_string();
        let program = program.clone();
        runtime.spawn(async move {
            match cmd.status().await {
                Ok(status) if status.success() => {
                    tracing::info!(feature, program, "drift command succeeded");
                }
                Ok(status) => tracing::warn!(feature, program, %status, "drift command failed"),
                Err(e) => {
                    tracing::warn!(feature, program, cause = %e, "drift command could not run")
                }
            }
        });
    }

    /// Pins new references: every feature collects one anew from now on.
    pub fn reset(&self) {
        // What was served before belongs to the old reference's side.
        self.tick();
        self.state.lock().features = fresh_features();
    }

    /// Coverage of `catalog_items` and exposure Gini over the window, as gauges.
    pub fn export(&self, catalog_items: u64, now_ms: i64) {
        self.tick();
        let mut state = self.state.lock();
        let state = &mut *state;
        state.catalog_items = catalog_items;
        let Some(exposure) = &mut state.exposure else {
            return;
        };
        exposure.advance(now_ms);
        // The window moved: the novelty reference follows it (and learns the catalog size).
        self.take_novelty_reference(state, None);
        let Some(exposure) = &state.exposure else {
            return;
        };
        if let Some(c) = exposure.coverage(catalog_items) {
            metrics::gauge!("recd_catalog_coverage_ratio").set(c);
        }
        if let Some(g) = exposure.exposure_gini(catalog_items) {
            metrics::gauge!("recd_exposure_gini").set(g.gini);
        }
    }
}

impl crate::recommend::QueryWatch for Monitor {
    fn query_norm(&self, norm: f64) {
        if !self.config.enabled {
            return;
        }
        if let Some(full) = self.pending.push(|b| b.query_norms.push(norm)) {
            self.fold(vec![full]);
        }
    }
}

/// One feature's drift.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FeatureDrift {
    /// The feature.
    pub name: String,
    /// "collecting reference (n/N)" or "watching".
    pub status: String,
    /// Reference and live summaries, PSI, test, threshold, verdict (once watching and a
    /// live window has enough values).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object, nullable = false)]
    pub report: Option<DriftReport>,
}

/// `GET /v1/monitoring/drift`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DriftAnswer {
    /// The PSI threshold.
    pub threshold: f64,
    /// The tests' significance level.
    pub alpha: f64,
    /// The features that drifted.
    pub drifted: Vec<String>,
    /// Every feature.
    pub features: Vec<FeatureDrift>,
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use recd_core::{EventType, Item};

    use super::*;
    use crate::answer::{ItemFields, ServedItem};

    fn config() -> MonitoringConfig {
        MonitoringConfig {
            reference_size: 200,
            live_size: 400,
            min_live: 200,
            ..MonitoringConfig::default()
        }
    }

    /// One click of user `u` on item `i` at time 0.
    fn click() -> Event {
        Event {
            user_id: "u".into(),
            item_id: "i".into(),
            kind: EventType::Click,
            value: None,
            timestamp_ms: 0,
            recommendation_id: None,
        }
    }

    fn answer(category: &str, top: f64) -> Recommendation {
        let item = Item::from_json(
            &serde_json::json!({"id": format!("i-{category}"), "category": category}),
            &Schema::demo(2),
        )
        .unwrap();
        Recommendation {
            recommendation_id: "r".into(),
            user_id: Some("u".into()),
            items: vec![ServedItem {
                id: item.id.clone(),
                score: top,
                reasons: vec![],
                item: ItemFields(Arc::new(item)),
                signals: None,
            }],
            source: Source::Personalized,
            cache: None,
            strategy: "default".into(),
            experiment: None,
            variant: None,
            took_ms: 0.1,
            stages: None,
        }
    }

    /// Deterministic pseudo-random scores in [lo, lo + 0.2).
    fn score(i: u64, lo: f64) -> f64 {
        let x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 11;
        lo + 0.2 * (x as f64 / (1u64 << 53) as f64)
    }

    #[test]
    fn a_shifted_stream_drifts_and_an_unshifted_one_does_not() {
        let cats = ["a", "b", "c", "d"];
        for (shift, expect) in [(false, false), (true, true)] {
            let m = Monitor::new(config(), &Schema::demo(2)).unwrap();
            for i in 0..200u64 {
                m.served(
                    &answer(cats[(i % 4) as usize], score(i, 0.5)),
                    &ListLabels::unknown(),
                    0,
                );
            }
            for i in 200..600u64 {
                let (cat, lo) = if shift {
                    (cats[(i % 2) as usize], 0.6)
                } else {
                    (cats[(i % 4) as usize], 0.5)
                };
                m.served(&answer(cat, score(i, lo)), &ListLabels::unknown(), 0);
            }
            let d = m.drift();
            let drifted = |name: &str| d.drifted.iter().any(|f| f == name);
            assert_eq!(drifted("top_score"), expect, "{d:?}");
            assert_eq!(drifted("served_category"), expect, "{d:?}");
            assert!(!drifted("event_type"));
        }
    }

    fn drifted(m: &Monitor, feature: &str) -> bool {
        m.drift().drifted.iter().any(|f| f == feature)
    }

    #[test]
    fn query_norms_and_user_event_gaps_drift_when_they_shift() {
        use crate::recommend::QueryWatch;
        for (shift, expect) in [(false, false), (true, true)] {
            let m = Monitor::new(config(), &Schema::demo(2)).unwrap();
            // Reference: norms around 1, each user's events ~10 s apart.
            let mut t = 0i64;
            let mut feed = |m: &Monitor, rounds: u64, gap_ms: i64, norm_lo: f64| {
                for i in 0..rounds {
                    m.query_norm(score(i, norm_lo));
                    t += gap_ms + (i % 7) as i64 * 100;
                    m.events(&[Event {
                        user_id: format!("u{}", i % 3),
                        item_id: "x".into(),
                        kind: EventType::View,
                        value: None,
                        timestamp_ms: t,
                        recommendation_id: None,
                    }]);
                }
            };
            feed(&m, 300, 3_333, 1.0);
            let (gap, lo) = if shift { (60_000, 3.0) } else { (3_333, 1.0) };
            feed(&m, 400, gap, lo);
            assert_eq!(drifted(&m, "query_vector_norm"), expect, "shift {shift}");
            assert_eq!(
                drifted(&m, "user_event_gap_seconds"),
                expect,
                "shift {shift}"
            );
        }
    }

    #[test]
    fn events_are_watched_without_the_shared_lock_and_counted_once_folded() {
        let m = std::sync::Arc::new(Monitor::new(config(), &Schema::demo(2)).unwrap());
        let e = click();
        // A fold (or a drift report) holding the shared state must not stall event requests.
        let held = m.state.lock();
        let (tx, rx) = std::sync::mpsc::channel();
        let watcher = {
            let m = m.clone();
            let batch = vec![e; 3];
            std::thread::spawn(move || {
                m.events(&batch);
                let _ = tx.send(());
            })
        };
        assert!(
            rx.recv_timeout(std::time::Duration::from_secs(60)).is_ok(),
            "an event batch waited for the monitor's shared lock"
        );
        drop(held);
        watcher.join().unwrap();
        let d = m.drift();
        let event = d.features.iter().find(|f| f.name == "event_type").unwrap();
        assert_eq!(event.status, "collecting reference (3/200)");
    }

    #[test]
    fn references_are_collected_first_and_pinned_again_on_reset() {
        let m = Monitor::new(config(), &Schema::demo(2)).unwrap();
        let e = click();
        m.events(&vec![e; 50]);
        let d = m.drift();
        let event = d.features.iter().find(|f| f.name == "event_type").unwrap();
        assert_eq!(event.status, "collecting reference (50/200)");
        assert!(event.report.is_none());
        m.reset();
        let d = m.drift();
        let event = d.features.iter().find(|f| f.name == "event_type").unwrap();
        assert_eq!(event.status, "collecting reference (0/200)");
    }

    #[test]
    fn novelty_falls_for_items_shown_often_once_folded() {
        let m = Monitor::new(config(), &Schema::demo(2)).unwrap();
        m.export(1_000, 0);
        let often = ["often-0", "often-1"];
        let fresh = ["fresh-0", "fresh-1"];
        let before = m.novelty_of(often.iter().copied()).unwrap();
        assert_eq!(Some(before), m.novelty_of(fresh.iter().copied()));
        let mut list = answer("books", 1.0);
        list.items = often
            .iter()
            .map(|id| {
                let item = Item::from_json(
                    &serde_json::json!({"id": id, "category": "books"}),
                    &Schema::demo(2),
                )
                .unwrap();
                ServedItem {
                    id: item.id.clone(),
                    score: 1.0,
                    reasons: vec![],
                    item: ItemFields(Arc::new(item)),
                    signals: None,
                }
            })
            .collect();
        for i in 0..500 {
            m.served(&list, &ListLabels::unknown(), i);
        }
        // Not folded yet: the reference has not seen them.
        assert_eq!(m.novelty_of(often.iter().copied()), Some(before));
        m.tick();
        let after = m.novelty_of(often.iter().copied()).unwrap();
        assert!(after < before - 1.0, "{after} vs {before}");
        let unseen = m.novelty_of(fresh.iter().copied()).unwrap();
        assert!(
            unseen > before,
            "smoothed against more impressions: {unseen} vs {before}"
        );
    }

    #[test]
    fn categories_survive_the_buffer() {
        let list = |categories: &[&str]| ServedList {
            t_ms: 0,
            top: 1.0,
            spread: 0.0,
            item_hashes: vec![],
            categories: join_categories(categories),
        };
        let l = list(&["books", "", "music", "books"]);
        assert_eq!(
            l.categories().collect::<Vec<_>>(),
            ["books", "music", "books"]
        );
        assert_eq!(list(&[]).categories().count(), 0);
        let odd = list(&["a\u{1f}b", "c"]);
        assert_eq!(odd.categories().collect::<Vec<_>>(), ["ab", "c"]);
    }

    #[test]
    fn hot_path_positions_name_their_features() {
        assert_eq!(FEATURES[TOP_SCORE].0, "top_score");
        assert_eq!(FEATURES[SCORE_SPREAD].0, "score_spread");
        assert_eq!(FEATURES[SERVED_CATEGORY].0, "served_category");
        assert_eq!(FEATURES[QUERY_VECTOR_NORM].0, "query_vector_norm");
    }

    #[test]
    fn bad_settings_are_refused() {
        let bad = MonitoringConfig {
            min_live: 10_000_000,
            ..MonitoringConfig::default()
        };
        assert!(Monitor::new(bad, &Schema::demo(2)).is_err());
        let bad = MonitoringConfig {
            category_field: Some("price".into()),
            ..MonitoringConfig::default()
        };
        assert!(Monitor::new(bad, &Schema::demo(2)).is_err());
    }
}
