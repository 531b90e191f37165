//! Strategies and experiments in the serving path: which ranking a request gets, what was
//! shown to whom (impressions), which events answer which list (attribution), and what the
//! experiments' numbers say.
//!
//! The engine asks [`Experiments::choose`] before ranking (a strategy named by the request,
//! else the experiment the user is enrolled in, else `default`), logs every list it serves
//! with [`Experiments::log`], and hands every applied event to [`Experiments::attribute`].
//! The statistics are `recd_core::experiment`'s; the state lives in a [`Ledger`] (in
//! process for the embedded backend, in Redis for the redis backend, so every server
//! assigns and counts alike).
//!
//! Assignment is deterministic (a stable hash of experiment and user), so a user keeps
//! their variant across servers and restarts; bandits choose per request by Thompson
//! sampling over the variants' click posteriors (refreshed at most once a second);
//! interleaving serves both strategies' lists merged by team draft, seeded by the
//! recommendation id.
//!
//! # Layout
//! - [`model`]: strategies, experiment definitions, validation and layer placement.
//! - [`ledger`]: where definitions, impressions and counts live.
//! - [`results`]: the statistics of an experiment's counts.

pub mod ledger;
pub mod model;
pub mod results;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use recd_core::experiment::{Arm, Assignment, Layer, Team, bandit};
use recd_core::pipeline::RankParams;
use recd_core::{Event, EventType, ValidationError};
use recd_store::StoreResult;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use self::ledger::{Delta, Impression, Ledger, Mark};
use self::model::{
    DEFAULT_STRATEGY, Definitions, ExperimentDef, ExperimentRequest, Kind, Metric, Status, Strategy,
};
use self::results::{ExperimentResults, msprt_field};
use crate::answer::ServedItem;
use crate::failure::{EngineError, EngineResult};
use crate::monitoring::tag::{self, ListLabels};

/// `[experiments]`: impression logging and attribution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExperimentsConfig {
    /// Events citing a list count for it this long after it was served (the impression
    /// log's TTL).
    pub attribution_window_seconds: u64,
    /// The most impressions kept in process (embedded backend); the oldest go first.
    pub max_impressions: u64,
    /// Share of lists outside experiments that are logged (experiment lists always are).
    /// Off by default: nothing in the server reads those (attribution credits experiment
    /// lists only), and in redis mode each one costs a round trip on Redis's one thread;
    /// turn it on to collect the offline log (`{prefix}exp:log`).
    pub log_sample: f64,
    /// How often the embedded backend snapshots counts to `experiments.json`.
    pub flush_ms: u64,
    /// Redis: the impression stream `exp:log` is capped at about this many entries.
    pub stream_max: u64,
}

impl Default for ExperimentsConfig {
    fn default() -> Self {
        Self {
            attribution_window_seconds: 86_400,
            max_impressions: 1_000_000,
            log_sample: 0.0,
            flush_ms: 2_000,
            stream_max: 1_000_000,
        }
    }
}

impl ExperimentsConfig {
    /// Checks values that parse but make no sense.
    pub fn validate(&self) -> Result<(), String> {
        if self.attribution_window_seconds == 0 {
            return Err("experiments.attribution_window_seconds must be at least 1".into());
        }
        if !(0.0..=1.0).contains(&self.log_sample) {
            return Err("experiments.log_sample must be in [0, 1]".into());
        }
        if self.flush_ms == 0 {
            return Err("experiments.flush_ms must be at least 1".into());
        }
        Ok(())
    }

    /// The attribution window.
    pub fn window(&self) -> Duration {
        Duration::from_secs(self.attribution_window_seconds)
    }
}

/// The user's place in an experiment, as the answer names it.
#[derive(Debug, Clone, PartialEq)]
pub struct Enrolment {
    /// The experiment.
    pub experiment: String,
    /// The variant (for interleaving: `interleaved`).
    pub variant: String,
    /// Whether the user counts in the statistics (not a QA override).
    pub analyzed: bool,
    /// How the experiment decides.
    pub kind: Kind,
}

/// What a request is ranked with.
#[derive(Debug, Clone)]
pub struct Choice {
    /// The strategy's name.
    pub strategy_name: String,
    /// The strategy.
    pub strategy: Arc<Strategy>,
    /// The experiment that picked it, if any.
    pub enrolment: Option<Enrolment>,
    /// Interleaving: the treatment's strategy (the control's is `strategy`).
    pub interleave_with: Option<(String, Arc<Strategy>)>,
}

/// The definitions in the form requests use them.
struct Active {
    defs: Definitions,
    strategies: HashMap<String, Arc<Strategy>>,
    layers: Vec<Layer>,
    /// Every (strategy, experiment, variant) a served list can carry, by the hash its
    /// recommendation id tags it with (see `monitoring::tag`).
    list_names: HashMap<u32, (String, String, String)>,
}

impl Active {
    fn new(defs: Definitions, default: &Arc<Strategy>) -> Self {
        let mut strategies: HashMap<String, Arc<Strategy>> = defs
            .strategies
            .iter()
            .map(|(k, v)| (k.clone(), Arc::new(v.clone())))
            .collect();
        strategies.insert(DEFAULT_STRATEGY.to_string(), Arc::clone(default));
        let layers = defs.layers();
        let mut list_names = HashMap::new();
        let mut name = |s: &str, e: &str, v: &str| {
            list_names.insert(
                tag::names_hash(s, e, v),
                (s.to_string(), e.to_string(), v.to_string()),
            );
        };
        for s in strategies.keys() {
            name(s, tag::NONE, tag::NONE);
        }
        for def in defs.experiments.values() {
            for (i, v) in def.spec.variants.iter().enumerate() {
                name(&v.strategy, &def.spec.id, &v.name);
                if def.spec.kind == Kind::Interleaving && i == 0 {
                    // Interleaved lists carry the control's strategy.
                    name(&v.strategy, &def.spec.id, results::INTERLEAVED);
                }
            }
        }
        Self {
            defs,
            strategies,
            layers,
            list_names,
        }
    }
}

/// A summary line of `GET /v1/experiments`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ExperimentSummary {
    /// Its id.
    pub id: String,
    /// ab, bandit or interleaving.
    pub kind: Kind,
    /// running or stopped.
    pub status: Status,
    /// Its layer.
    pub layer: String,
    /// Its share of the layer's users.
    pub traffic: f64,
    /// RFC 3339.
    pub started_at: String,
    /// Variant names, the control first.
    pub variants: Vec<String>,
}

/// Strategies, experiments, impressions and attribution of one server.
pub struct Experiments {
    ledger: Arc<dyn Ledger>,
    active: RwLock<Arc<Active>>,
    default: Arc<Strategy>,
    config: ExperimentsConfig,
    /// Bandit arms per experiment, with when they were read.
    arms: Mutex<HashMap<String, ReadArms>>,
}

impl std::fmt::Debug for Experiments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Experiments").finish_non_exhaustive()
    }
}

/// A bandit's arms and when they were read.
type ReadArms = (Instant, Arc<Vec<Arm>>);

/// How long a bandit's arms are reused before they are read again.
const ARMS_TTL: Duration = Duration::from_secs(1);

fn rfc3339_now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

impl Experiments {
    /// Loads the stored definitions; strategies from config (`[strategies.NAME]`, over the
    /// configured `base` ranking) are added where the store has none of that name.
    pub async fn open(
        ledger: Arc<dyn Ledger>,
        base: RankParams,
        configured: &BTreeMap<String, Value>,
        config: ExperimentsConfig,
    ) -> EngineResult<Self> {
        let defs = ledger.load().await?.unwrap_or_default();
        Self::with_definitions(ledger, defs, base, configured, config)
    }

    /// Experiments kept in process only, starting from the configured strategies (tests,
    /// and commands that do not serve).
    pub fn in_memory(
        base: RankParams,
        configured: &BTreeMap<String, Value>,
        config: ExperimentsConfig,
    ) -> EngineResult<Self> {
        let ledger = ledger::MemoryLedger::open(
            None,
            config.window(),
            config.max_impressions,
            Duration::from_millis(config.flush_ms),
        )?;
        Self::with_definitions(ledger, Definitions::default(), base, configured, config)
    }

    fn with_definitions(
        ledger: Arc<dyn Ledger>,
        mut defs: Definitions,
        base: RankParams,
        configured: &BTreeMap<String, Value>,
        config: ExperimentsConfig,
    ) -> EngineResult<Self> {
        let default = Arc::new(Strategy::from_ranking(base.clone()));
        for (name, body) in configured {
            if !defs.strategies.contains_key(name) {
                let s = Strategy::from_json(body, &base).map_err(|e| {
                    EngineError::Invalid(ValidationError::new(format!(
                        "strategies.{name}: {}",
                        e.message
                    )))
                })?;
                defs.strategies.insert(name.clone(), s);
            }
        }
        Ok(Self {
            active: RwLock::new(Arc::new(Active::new(defs, &default))),
            ledger,
            default,
            config,
            arms: Mutex::new(HashMap::new()),
        })
    }

    fn active(&self) -> Arc<Active> {
        Arc::clone(&self.active.read())
    }

    /// Reads the definitions again (other servers may have changed them).
    pub async fn refresh(&self) -> StoreResult<()> {
        if let Some(defs) = self.ledger.load().await? {
            let mut merged = defs;
            // Strategies only this server's config has stay available.
            for (k, v) in &self.active().defs.strategies {
                merged
                    .strategies
                    .entry(k.clone())
                    .or_insert_with(|| v.clone());
            }
            *self.active.write() = Arc::new(Active::new(merged, &self.default));
        }
        Ok(())
    }

    /// Re-reads the definitions every `every` until the engine is dropped (redis mode:
    /// experiments created on another server start here within that time).
    pub fn follow(self: &Arc<Self>, every: Duration) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(this) = weak.upgrade() else { return };
                if let Err(e) = this.refresh().await {
                    tracing::debug!(cause = %e, "experiment definitions: refresh failed");
                }
            }
        });
    }

    /// The labels of the served list an event's recommendation id names (`unknown` when it
    /// names nothing this server knows).
    pub fn list_labels(&self, recommendation_id: &str) -> ListLabels {
        let active = self.active();
        match tag::parse(recommendation_id) {
            Some((source, hash)) => match active.list_names.get(&hash) {
                Some((s, e, v)) => ListLabels {
                    strategy: s.clone(),
                    experiment: e.clone(),
                    variant: v.clone(),
                    source,
                },
                None => ListLabels::unknown(),
            },
            None => ListLabels::unknown(),
        }
    }

    /// What `user` is ranked with: the `requested` strategy, else their experiment's
    /// (the first layer, by name, that enrols them), else `default`.
    pub async fn choose(&self, user: &str, requested: Option<&str>) -> EngineResult<Choice> {
        let active = self.active();
        if let Some(name) = requested {
            let Some(strategy) = active.strategies.get(name) else {
                // A name is well formed or not (the route checks it); one that names no
                // strategy refers to something absent, like an unknown item.
                return Err(EngineError::NotFound(format!(
                    "strategy '{name}' does not exist (GET /v1/strategies lists them)"
                )));
            };
            return Ok(Choice {
                strategy_name: name.to_string(),
                strategy: Arc::clone(strategy),
                enrolment: None,
                interleave_with: None,
            });
        }
        for layer in &active.layers {
            let Some((experiment, assignment)) = layer.assign(user) else {
                continue;
            };
            let Some(def) = active.defs.experiments.get(experiment.id()) else {
                continue;
            };
            if let Some(choice) = self.enrol(&active, def, assignment).await? {
                return Ok(choice);
            }
        }
        Ok(self.default_choice())
    }

    fn default_choice(&self) -> Choice {
        Choice {
            strategy_name: DEFAULT_STRATEGY.to_string(),
            strategy: Arc::clone(&self.default),
            enrolment: None,
            interleave_with: None,
        }
    }

    async fn enrol(
        &self,
        active: &Active,
        def: &ExperimentDef,
        assignment: Assignment,
    ) -> EngineResult<Option<Choice>> {
        let spec = &def.spec;
        let strategy = |i: usize| {
            let name = &spec.variants[i].strategy;
            active
                .strategies
                .get(name)
                .map(|s| (name.clone(), Arc::clone(s)))
        };
        let analyzed = assignment.is_analyzed();
        let Some(assigned) = assignment.variant() else {
            return Ok(None); // holdout: the default experience, not analyzed
        };
        let index = match spec.kind {
            Kind::Ab | Kind::Interleaving => assigned,
            Kind::Bandit if !analyzed => assigned,
            Kind::Bandit => {
                let arms = self.arms(def).await?;
                let mut rng = rand::rng();
                bandit::choose(&arms, spec.min_explore, &mut rng)
                    .map_err(|e| EngineError::Internal(format!("bandit: {e}")))?
            }
        };
        let Some((name, chosen)) = strategy(if spec.kind == Kind::Interleaving {
            0
        } else {
            index
        }) else {
            return Ok(None);
        };
        let (variant, interleave_with) = if spec.kind == Kind::Interleaving {
            (results::INTERLEAVED.to_string(), strategy(1))
        } else {
            (spec.variants[index].name.clone(), None)
        };
        if spec.kind == Kind::Interleaving && interleave_with.is_none() {
            return Ok(None);
        }
        Ok(Some(Choice {
            strategy_name: name,
            strategy: chosen,
            enrolment: Some(Enrolment {
                experiment: spec.id.clone(),
                variant,
                analyzed,
                kind: spec.kind,
            }),
            interleave_with,
        }))
    }

    /// A bandit's arms from its counts (successes: lists clicked, or converted).
    async fn arms(&self, def: &ExperimentDef) -> EngineResult<Arc<Vec<Arm>>> {
        if let Some((at, arms)) = self.arms.lock().get(&def.spec.id)
            && at.elapsed() < ARMS_TTL
        {
            return Ok(Arc::clone(arms));
        }
        let counters = self.ledger.counters(&def.spec.id).await?;
        let success = match def.spec.metric {
            Metric::Click => "clk",
            Metric::Conversion => "cnv",
        };
        let arms: Arc<Vec<Arm>> = Arc::new(
            def.spec
                .variants
                .iter()
                .map(|v| {
                    let get = |f: &str| {
                        counters
                            .get(&format!("{}|{f}", v.name))
                            .copied()
                            .unwrap_or(0.0)
                            .max(0.0) as u64
                    };
                    let (s, n) = (get(success), get("imp"));
                    Arm {
                        successes: s,
                        failures: n.saturating_sub(s),
                    }
                })
                .collect(),
        );
        self.arms
            .lock()
            .insert(def.spec.id.clone(), (Instant::now(), Arc::clone(&arms)));
        Ok(arms)
    }

    /// Logs a served list: always inside an experiment (its statistics need it), else for
    /// a `log_sample` share of lists.
    pub async fn log(
        &self,
        rec_id: &str,
        user: &str,
        choice: &Choice,
        items: &[ServedItem],
        teams: Option<Vec<Team>>,
        at_ms: i64,
    ) -> EngineResult<()> {
        let enrolled = choice.enrolment.as_ref();
        if enrolled.is_none()
            && (self.config.log_sample <= 0.0
                || (self.config.log_sample < 1.0
                    && rand::random::<f64>() >= self.config.log_sample))
        {
            return Ok(());
        }
        let imp = Impression {
            user: user.to_string(),
            strategy: choice.strategy_name.clone(),
            experiment: enrolled.map(|e| e.experiment.clone()),
            variant: enrolled.map(|e| e.variant.clone()),
            analyzed: enrolled.is_some_and(|e| e.analyzed),
            items: items.iter().map(|i| i.id.clone()).collect(),
            teams,
            at_ms,
        };
        self.ledger.log_impression(rec_id, &imp).await?;
        if let Some(e) = enrolled
            && e.analyzed
        {
            let delta = Delta {
                impressions: 1,
                ..Delta::default()
            };
            self.ledger
                .count(&e.experiment, &e.variant, user, delta)
                .await?;
        }
        Ok(())
    }

    /// Credits the lists that applied events cite: a click marks its list clicked, a
    /// purchase converted (each list once), for the list's variant, with the position of
    /// the item; for interleaving, the first click credits the team whose pick it was.
    pub async fn attribute(&self, events: &[Event]) -> EngineResult<()> {
        for e in events {
            let Some(rec_id) = &e.recommendation_id else {
                continue;
            };
            let mark = match e.kind {
                EventType::Click => Mark::Click,
                EventType::Purchase => Mark::Conversion,
                _ => continue,
            };
            let Some(imp) = self.ledger.mark_first(rec_id, mark).await? else {
                continue;
            };
            let (Some(experiment), Some(variant)) = (&imp.experiment, &imp.variant) else {
                continue;
            };
            if !imp.analyzed {
                continue;
            }
            let delta = match mark {
                Mark::Click => Delta {
                    clicks: 1,
                    ..Delta::default()
                },
                Mark::Conversion => Delta {
                    conversions: 1,
                    ..Delta::default()
                },
            };
            self.ledger
                .count(experiment, variant, &imp.user, delta)
                .await?;
            let position = imp.items.iter().position(|i| *i == e.item_id);
            if let (Some(p), Mark::Click) = (position, mark) {
                self.ledger
                    .add(experiment, &format!("{variant}|pos:{}", p + 1), 1.0)
                    .await?;
                if let Some(team) = imp.teams.as_ref().and_then(|t| t.get(p)) {
                    let field = match team {
                        Team::A => "a_wins",
                        Team::B => "b_wins",
                    };
                    self.ledger.add(experiment, field, 1.0).await?;
                }
            }
        }
        Ok(())
    }

    // ---- administration -------------------------------------------------------------------

    /// Every strategy, `default` included.
    pub fn strategies(&self) -> BTreeMap<String, Strategy> {
        let active = self.active();
        let mut out = active.defs.strategies.clone();
        out.insert(DEFAULT_STRATEGY.to_string(), (*self.default).clone());
        out
    }

    /// Creates or replaces a strategy (`default` is the configured `[ranking]`: read-only).
    pub async fn put_strategy(&self, name: &str, body: &Value) -> EngineResult<Strategy> {
        recd_core::id::validate_id(name, "strategy name")?;
        if name == DEFAULT_STRATEGY {
            return Err(EngineError::Invalid(ValidationError::new(
                "the default strategy is the configured [ranking]; create another name",
            )));
        }
        let strategy = Strategy::from_json(body, &self.default.ranking)?;
        self.update(|defs| {
            defs.strategies.insert(name.to_string(), strategy.clone());
            Ok(())
        })
        .await?;
        Ok(strategy)
    }

    /// Creates an experiment.
    pub async fn create(&self, spec: ExperimentRequest) -> EngineResult<ExperimentDef> {
        let mut created = None;
        self.update(|defs| {
            let def = defs.admit(spec.clone(), rfc3339_now())?;
            defs.experiments.insert(def.spec.id.clone(), def.clone());
            created = Some(def);
            Ok(())
        })
        .await?;
        created.ok_or_else(|| EngineError::Internal("experiment not created".into()))
    }

    /// Stops an experiment: no more assignment; results stay.
    pub async fn stop(&self, id: &str) -> EngineResult<ExperimentDef> {
        let mut stopped = None;
        self.update(|defs| {
            let Some(def) = defs.experiments.get_mut(id) else {
                return Err(EngineError::NotFound(format!("no experiment '{id}'")));
            };
            if def.status == Status::Running {
                def.status = Status::Stopped;
                def.stopped_at = Some(rfc3339_now());
            }
            stopped = Some(def.clone());
            Ok(())
        })
        .await?;
        stopped.ok_or_else(|| EngineError::NotFound(format!("no experiment '{id}'")))
    }

    /// All experiments.
    pub fn list(&self) -> Vec<ExperimentSummary> {
        self.active()
            .defs
            .experiments
            .values()
            .map(|d| ExperimentSummary {
                id: d.spec.id.clone(),
                kind: d.spec.kind,
                status: d.status,
                layer: d.spec.layer.clone(),
                traffic: d.range[1] - d.range[0],
                started_at: d.started_at.clone(),
                variants: d.spec.variants.iter().map(|v| v.name.clone()).collect(),
            })
            .collect()
    }

    /// An experiment's results; each call is a "look" for the always-valid p-values.
    pub async fn results(&self, id: &str) -> EngineResult<ExperimentResults> {
        // Another server may have created it.
        if !self.active().defs.experiments.contains_key(id) {
            self.refresh().await?;
        }
        let Some(def) = self.active().defs.experiments.get(id).cloned() else {
            return Err(EngineError::NotFound(format!("no experiment '{id}'")));
        };
        let counters = self.ledger.counters(id).await?;
        let (results, looks) = results::compute(&def, &counters);
        for (variant, p) in looks {
            let field = msprt_field(&variant);
            let stored = counters.get(&field).copied().unwrap_or(0.0);
            if 1.0 - p > stored {
                self.ledger.add(id, &field, (1.0 - p) - stored).await?;
            }
        }
        Ok(results)
    }

    /// Applies `change` to the freshest definitions and stores them.
    async fn update(
        &self,
        change: impl FnOnce(&mut Definitions) -> EngineResult<()>,
    ) -> EngineResult<()> {
        self.refresh().await?;
        let mut defs = self.active().defs.clone();
        change(&mut defs)?;
        self.ledger.save(&defs).await?;
        *self.active.write() = Arc::new(Active::new(defs, &self.default));
        Ok(())
    }
}
