//! `recd eval`: offline metrics and the online replay on a file or a MovieLens folder.
//!
//! Models (offline, the protocol of `recd_train::eval`): popularity, item-kNN, ALS, and
//! `pipeline`: the serving pipeline itself. For the pipeline the train half goes through
//! the same steps as `recd import` + `recd train`: an in-memory `EmbeddedStore` with the
//! MovieLens schema gets every item (no vector), the train events in time order (counters,
//! recent items, popularity), then the ALS item vectors and user long-term vectors; each
//! test user is then answered by `recd_server::recommend::Recommender`, the code behind
//! `/v1/recommend`, with the user's train items as the request's `exclude`.
//!
//! `pipeline` runs without the transitions candidate source (`[ranking]
//! transitions_candidates = 0`), `pipeline_transitions` with it (the config's size, or the
//! default when the config has it off): the store holds the transition table of the
//! train half as its live model version's, as `recd train` stores it.
//!
//! Replay arms (`recd_train::replay`: before each test event, in time order, ask for the
//! user's top k; then let the recommender see the event):
//! - `popularity`: real-time popularity;
//! - `batch`: ALS vectors fixed at training, no event applied (the library's model);
//! - `batch_pipeline`: the pipeline store above, no event applied (the serving pipeline
//!   with yesterday's state: same ranking code as `realtime`, nothing learnt live);
//! - `realtime_fold_in` and `realtime_decayed_average`: the same store and pipeline (one
//!   store each), each event applied with `Store::apply_events` after asking: counters,
//!   popularity, recent and purchased exclusions all live, and the user's real-time vector
//!   updated by the rule of `[model.session] update` the arm is named after (the fold-in
//!   of the user's recent items, or the decayed-average session vector);
//! - `realtime`: the arm of the configured rule (the same figures, not another run);
//! - `realtime_transitions`: the arm of the configured rule with the transitions source on
//!   (its own store): the user's recent items move with every event, so the source follows
//!   the session.
//!
//! `--ranker` adds `pipeline_learned` (`crate::eval_ranker`): the same pipeline scored by a
//! learned ranker trained on impressions replayed from the train half only.
//!
//! The real-time knobs come from the usual config (`--config FILE`, `RECD_MODEL__SESSION__*`,
//! `RECD_RANKING__*`): `[model.session]`, `[model.popularity]`, `[ranking]`; the pipeline
//! store has the MovieLens schema with the config's `[schema]` vector metric, if it has one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context, Result};
use recd_core::pipeline::RankParams;
use recd_core::{Event, EventType, Filter, ItemUpsert, UpdateRule};
use recd_server::config::Overrides;
use recd_server::features::Features;
use recd_server::recommend::{Recommender, Request};
use recd_store::Store;
use recd_store::embedded::EmbeddedStore;
use recd_train::als::AlsModel;
use recd_train::eval::{EvalConfig, EvalReport, Evaluation};
use recd_train::movielens::{Format, Loaded, genre_sets, read_interactions_with};
use recd_train::replay::{ReplayEvent, ReplayRecommender};
use recd_train::split::{self, SplitMethod};
use recd_train::table::{TableOptions, write_csv};
use recd_train::{IdMap, Interaction, Interactions, neutral_warning};
use tokio::runtime::Handle;

use crate::UsageError;
use crate::progress::Progress;
use crate::train::{AlsArgs, train_error};

/// Events per `apply_events` batch while loading the pipeline store.
const EVENT_BATCH: usize = 5000;
/// Vectors per write batch.
const VECTOR_BATCH: usize = 2000;

/// `recd eval` flags.
#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// An interactions file (CSV, TSV or JSON lines, plain or gzip), or a MovieLens folder
    /// (ml-100k, ml-1m, ml-latest).
    #[arg(long, required_unless_present_all = ["train", "test"], conflicts_with_all = ["train", "test"])]
    pub interactions: Option<PathBuf>,
    /// A given train half (with --test) instead of splitting --interactions, e.g. one
    /// written by --write-split or by another library.
    #[arg(long, requires = "test")]
    pub train: Option<PathBuf>,
    /// The given test half (with --train).
    #[arg(long, requires = "train")]
    pub test: Option<PathBuf>,
    /// Write the split (train.csv, test.csv: user_id,item_id,type,value,timestamp, the
    /// events the evaluation uses) into this folder, to evaluate another library on it.
    #[arg(long, value_name = "DIR")]
    pub write_split: Option<PathBuf>,
    /// Format of the files: csv, tsv, jsonl or movielens [default: a folder is movielens,
    /// a file's format is sniffed].
    #[arg(long)]
    pub format: Option<Format>,
    #[command(flatten)]
    pub table: crate::import::TableArgs,
    /// How to split: random (per user), time (one global cutoff), leave-last-out.
    #[arg(long, default_value = "random", value_parser = ["random", "time", "leave-last-out"])]
    pub split: String,
    /// Share of events in the test half (random and time splits).
    #[arg(long, default_value_t = 0.2)]
    pub test_fraction: f64,
    /// Seed of the random split.
    #[arg(long, default_value_t = 42)]
    pub split_seed: u64,
    /// List length (1 to 1000).
    #[arg(long, default_value_t = 10)]
    pub k: usize,
    /// Print the report as one JSON document.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub als: AlsArgs,
    /// TOML config whose `[model]` and `[ranking]` the pipeline uses (real-time knobs), and
    /// whose `[schema]` vector metric it takes (default ip; the dimension is always --factors).
    #[arg(long, env = "RECD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Skip the online replay.
    #[arg(long)]
    pub no_replay: bool,
    /// Also evaluate `pipeline_learned`: the pipeline scored by a learned ranker trained on
    /// impressions replayed from the train half (use with --split time).
    #[arg(long, conflicts_with = "new_items")]
    pub ranker: bool,
    /// How much of the session vector the fold-in's query mixes in
    /// (`[model.session.fold_in] session_mix`, 0 to 1), or `auto`: chosen on a validation
    /// split of the train half by the replay (the test half is never read for it) and
    /// used for the `als_fold_in` and `realtime_fold_in` arms [default: the config's].
    #[arg(long, value_name = "MIX|auto")]
    pub session_mix: Option<String>,
    /// Evaluate new items instead: items first seen in the last --test-fraction of time,
    /// ranked with the item fold-in, the content map, both or neither (the rest is skipped).
    #[arg(long)]
    pub new_items: bool,
    /// Content of the items for --new-items (JSON lines: `id`, tag fields as strings or
    /// arrays, `title` as text), for data without a catalog (MovieLens folders bring theirs).
    #[arg(long, value_name = "FILE", requires = "new_items")]
    pub items: Option<PathBuf>,
}

/// The ranking of the `pipeline` arms: the config's, the transitions source off.
pub(crate) fn without_transitions(config: &recd_server::Config) -> recd_core::pipeline::RankParams {
    recd_core::pipeline::RankParams {
        transitions_candidates: 0,
        ..config.ranking.clone()
    }
}

/// The ranking of the `*_transitions` arms: the config's, the transitions source on.
fn with_transitions(config: &recd_server::Config) -> recd_core::pipeline::RankParams {
    let mut r = config.ranking.clone();
    if r.transitions_candidates == 0 {
        r.transitions_candidates = recd_core::pipeline::DEFAULT_TRANSITIONS_CANDIDATES;
    }
    r
}

/// How a pipeline scores its answers: the ranking settings, and the online features a
/// learned ranker reads (fed with the same events).
pub(crate) struct Scoring {
    pub(crate) ranking: RankParams,
    pub(crate) features: Option<Arc<Features>>,
}

impl Scoring {
    /// The given ranking, no features.
    pub(crate) fn ranking(ranking: RankParams) -> Self {
        Scoring {
            ranking,
            features: None,
        }
    }
}

/// The pipeline under evaluation: a store, the serving `Recommender`, the id maps.
pub(crate) struct Pipeline {
    pub(crate) handle: Handle,
    pub(crate) store: Arc<EmbeddedStore>,
    pub(crate) recommender: Recommender,
    /// The scoring settings of its answers (the config's, or a learned ranker's).
    pub(crate) ranking: RankParams,
    /// Online features fed with the same events, when a learned ranker may read them.
    pub(crate) features: Option<Arc<Features>>,
    /// The catalog, by id (the features' per-tag updates need each event's item).
    pub(crate) catalog: HashMap<String, Arc<recd_core::Item>>,
    pub(crate) users: Arc<IdMap>,
    pub(crate) items: Arc<IdMap>,
    /// The clock of offline answers (just after the last train event).
    now_ms: i64,
    errors: AtomicUsize,
    first_error: std::sync::Mutex<Option<String>>,
    /// Counts the offline questions of the phase under way (the pipeline model's users).
    counting: std::sync::Mutex<Option<Progress>>,
}

impl Pipeline {
    /// The same store and ids, ranked with `ranking`.
    fn ranked(
        &self,
        ranking: recd_core::pipeline::RankParams,
        session: &recd_core::SessionParams,
    ) -> Pipeline {
        let mut recommender =
            Recommender::new(self.store.clone(), ranking.clone(), session.clone());
        if let Some(f) = &self.features {
            recommender = recommender.with_features(Arc::clone(f));
        }
        Pipeline {
            handle: self.handle.clone(),
            store: self.store.clone(),
            recommender,
            ranking,
            features: self.features.clone(),
            catalog: self.catalog.clone(),
            users: self.users.clone(),
            items: self.items.clone(),
            now_ms: self.now_ms,
            errors: AtomicUsize::new(0),
            first_error: std::sync::Mutex::new(None),
            counting: std::sync::Mutex::new(None),
        }
    }

    /// The clock of offline answers.
    pub(crate) fn now_ms(&self) -> i64 {
        self.now_ms
    }

    /// Counts every question from now on into `progress` (`None`: stop counting).
    fn count_into(&self, progress: Option<Progress>) {
        if let Ok(mut c) = self.counting.lock() {
            *c = progress;
        }
    }

    /// The pipeline's top `k` for `user` as item indices, never one of `exclude`.
    fn ask(&self, user: u32, k: usize, exclude: &[u32], now_ms: i64) -> Vec<u32> {
        if let Ok(c) = self.counting.lock()
            && let Some(p) = c.as_ref()
        {
            p.add(1);
        }
        self.answer(user, k, exclude, now_ms)
            .map_or_else(Vec::new, |answer| {
                answer
                    .items
                    .iter()
                    .filter_map(|r| self.items.get(&r.item.id))
                    .collect()
            })
    }

    /// The pipeline's answer for `user` (`None` when unknown or failed; failures are
    /// counted for [`Pipeline::check`]).
    pub(crate) fn answer(
        &self,
        user: u32,
        k: usize,
        exclude: &[u32],
        now_ms: i64,
    ) -> Option<recd_server::recommend::Answer> {
        let user_id = self.users.id(user)?;
        let req = Request {
            strategy: None,
            user_id: user_id.to_owned(),
            count: k,
            filter: Filter::all(),
            exclude: exclude
                .iter()
                .filter_map(|&i| self.items.id(i).map(str::to_owned))
                .collect(),
            query: None,
            diversity: None,
            explain: false,
            use_cache: false,
        };
        match self
            .handle
            .block_on(self.recommender.recommend_with(&req, now_ms, &self.ranking))
        {
            Ok(answer) => Some(answer),
            Err(e) => {
                self.error(format!("recommend for {user_id}: {e}"));
                None
            }
        }
    }

    /// Applies `events` to the store and to the features, as `/v1/events` does.
    pub(crate) fn apply(&self, events: &[Event]) {
        if let Err(e) = self.handle.block_on(self.store.apply_events(events)) {
            self.error(format!("apply_events: {e}"));
        }
        if let Some(f) = &self.features {
            let items: Vec<Option<Arc<recd_core::Item>>> = events
                .iter()
                .map(|e| self.catalog.get(&e.item_id).cloned())
                .collect();
            if let Err(e) = self.handle.block_on(f.apply_events(events, &items)) {
                self.error(format!("features: {e}"));
            }
        }
    }

    pub(crate) fn error(&self, message: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut first) = self.first_error.lock() {
            first.get_or_insert(message);
        }
    }

    /// Fails if any request or write failed (the figures would be wrong).
    pub(crate) fn check(&self) -> Result<()> {
        let n = self.errors.load(Ordering::Relaxed);
        if n > 0 {
            let first = self
                .first_error
                .lock()
                .ok()
                .and_then(|f| f.clone())
                .unwrap_or_default();
            anyhow::bail!("{n} pipeline calls failed; the first: {first}");
        }
        Ok(())
    }
}

impl recd_train::recommender::Recommender for Pipeline {
    fn recommend(&self, user: u32, k: usize, exclude: &[u32]) -> Vec<u32> {
        self.ask(user, k, exclude, self.now_ms)
    }
}

/// The pipeline with its state frozen at training time; `.1` counts the replayed events.
struct Frozen<'a>(&'a Pipeline, Progress);

impl ReplayRecommender for Frozen<'_> {
    fn recommend(&mut self, user: u32, k: usize, exclude: &[u32], now_ms: i64) -> Vec<u32> {
        self.0.ask(user, k, exclude, now_ms)
    }

    fn observe(&mut self, _event: &ReplayEvent) {
        self.1.add(1);
    }
}

/// The pipeline learning from every event, as `/v1/events` would make it.
pub(crate) struct Live<'a> {
    pub(crate) pipeline: &'a Pipeline,
    pub(crate) kinds: &'a EventKinds,
    /// Counts the replayed events.
    pub(crate) progress: Progress,
}

impl ReplayRecommender for Live<'_> {
    fn recommend(&mut self, user: u32, k: usize, exclude: &[u32], now_ms: i64) -> Vec<u32> {
        self.pipeline.ask(user, k, exclude, now_ms)
    }

    fn observe(&mut self, ev: &ReplayEvent) {
        self.progress.add(1);
        let p = self.pipeline;
        let Some(event) = self
            .kinds
            .event(ev.user, ev.item, ev.timestamp_ms, ev.weight, p)
        else {
            return;
        };
        p.apply(&[event]);
    }
}

/// The type and value of each raw event, by (user, item, timestamp) index: the dense
/// interactions keep only a weight, the store wants the event as it happened.
pub(crate) struct EventKinds(HashMap<(u32, u32, i64), (EventType, Option<f64>)>);

impl EventKinds {
    fn new(loaded: &Loaded, data: &Interactions) -> Self {
        let mut map = HashMap::with_capacity(loaded.interactions.len());
        for r in &loaded.interactions {
            let (Some(u), Some(i)) = (data.user_ids().get(&r.user), data.item_ids().get(&r.item))
            else {
                continue;
            };
            map.insert((u, i, r.timestamp_ms), (r.kind, r.value));
        }
        Self(map)
    }

    /// The store event of a dense one; a rating of `w` stars when the raw one is unknown.
    pub(crate) fn event(
        &self,
        user: u32,
        item: u32,
        t: i64,
        w: f32,
        p: &Pipeline,
    ) -> Option<Event> {
        let (kind, value) = self
            .0
            .get(&(user, item, t))
            .copied()
            .unwrap_or((EventType::Rating, Some(f64::from(w).clamp(0.5, 5.0))));
        Some(Event {
            user_id: p.users.id(user)?.to_owned(),
            item_id: p.items.id(item)?.to_owned(),
            kind,
            value,
            timestamp_ms: t.max(0),
            recommendation_id: None,
        })
    }
}

/// A zero (or non-finite) vector is what ALS leaves to rows without observations.
fn usable(v: &[f32]) -> bool {
    v.iter().all(|x| x.is_finite()) && v.iter().any(|x| *x != 0.0)
}

/// The vector metric of the pipeline store: the config's, else the MovieLens schema's.
fn pipeline_metric(config: &recd_server::Config) -> recd_core::Metric {
    config.schema.as_ref().map_or_else(
        || crate::movielens::schema(1).vector.metric,
        |s| s.vector.metric,
    )
}

/// Builds the pipeline store from `train` and the ALS `model` trained on it, as `recd
/// import` + `recd train` would; with `features`, they get the same events.
pub(crate) fn build_pipeline(
    handle: &Handle,
    train: &Interactions,
    model: &AlsModel,
    loaded: &Loaded,
    kinds: &EventKinds,
    config: &recd_server::Config,
    scoring: Scoring,
) -> Result<Pipeline> {
    let Scoring { ranking, features } = scoring;
    let mut schema = crate::movielens::schema(model.factors);
    schema.vector.metric = pipeline_metric(config);
    let store = Arc::new(
        EmbeddedStore::in_memory(schema.clone(), config.model.clone())
            .context("creating the in-memory store")?,
    );
    let users = train.user_ids().clone();
    let items = train.item_ids().clone();
    let mut recommender =
        Recommender::new(store.clone(), ranking.clone(), config.model.session.clone());
    if let Some(f) = &features {
        recommender = recommender.with_features(Arc::clone(f));
    }
    let now_ms = train.timestamps.iter().copied().max().unwrap_or(0) + 1;
    let mut pipeline = Pipeline {
        handle: handle.clone(),
        store: store.clone(),
        recommender,
        ranking,
        features,
        catalog: HashMap::new(),
        users,
        items,
        now_ms,
        errors: AtomicUsize::new(0),
        first_error: std::sync::Mutex::new(None),
        counting: std::sync::Mutex::new(None),
    };

    // 1. the catalog, without vectors (import)
    let upserts: Vec<ItemUpsert> = crate::movielens::items(
        &loaded.movies,
        pipeline.items.ids().iter().cloned(),
        &schema,
    )?;
    pipeline.catalog = upserts
        .iter()
        .map(|u| (u.item.id.clone(), Arc::new(u.item.clone())))
        .collect();
    let p = Progress::new("pipeline items", Some(upserts.len() as u64));
    for chunk in upserts.chunks(EVENT_BATCH) {
        handle
            .block_on(store.upsert_items(chunk.to_vec()))
            .context("loading items")?;
        p.add(chunk.len() as u64);
    }
    p.finish();
    // 2. the train events in time order (import)
    let mut order: Vec<usize> = (0..train.len()).collect();
    order.sort_by_key(|&e| (train.timestamps[e], e));
    let events: Vec<Event> = order
        .into_iter()
        .filter_map(|e| {
            kinds.event(
                train.users[e],
                train.items[e],
                train.timestamps[e],
                train.weights[e],
                &pipeline,
            )
        })
        .collect();
    let p = Progress::new("pipeline train events", Some(events.len() as u64));
    for chunk in events.chunks(EVENT_BATCH) {
        handle
            .block_on(store.apply_events(chunk))
            .context("applying train events")?;
        if let Some(f) = &pipeline.features {
            let items: Vec<Option<Arc<recd_core::Item>>> = chunk
                .iter()
                .map(|e| pipeline.catalog.get(&e.item_id).cloned())
                .collect();
            handle
                .block_on(f.apply_events(chunk, &items))
                .context("applying train events to the features")?;
        }
        p.add(chunk.len() as u64);
    }
    p.finish();
    // 3. the ALS vectors (train); rows without train events have none
    let item_vectors: Vec<(String, Vec<f32>)> = (0..model.n_items() as u32)
        .filter_map(|i| {
            let v = model.item_vector(i).filter(|v| usable(v))?;
            Some((model.item_ids.id(i)?.to_owned(), v.to_vec()))
        })
        .collect();
    for chunk in item_vectors.chunks(VECTOR_BATCH) {
        handle
            .block_on(store.set_item_vectors(chunk.to_vec()))
            .context("writing item vectors")?;
    }
    let user_vectors: Vec<(String, Vec<f32>)> = (0..model.n_users() as u32)
        .filter_map(|u| {
            let v = model.user_vector(u).filter(|v| usable(v))?;
            Some((model.user_ids.id(u)?.to_owned(), v.to_vec()))
        })
        .collect();
    for chunk in user_vectors.chunks(VECTOR_BATCH) {
        handle
            .block_on(store.set_user_vectors(chunk.to_vec()))
            .context("writing user vectors")?;
    }
    // 4. the transition table as the live version's (train)
    let lists = recd_train::transitions::Transitions::fit(train, config.train.transitions_top)
        .lists(train.item_ids());
    handle
        .block_on(async {
            let seq = store.next_model_seq().await?;
            for chunk in lists.chunks(VECTOR_BATCH) {
                store.put_model_transitions(seq, chunk.to_vec()).await?;
            }
            store
                .put_model(recd_store::ModelRecord {
                    seq,
                    chunks: 0,
                    info: serde_json::json!({}),
                })
                .await?;
            store.set_live_model(seq).await
        })
        .context("writing the transition table")?;
    Ok(pipeline)
}

/// Reads one file or folder of `args`, saying what was read.
pub(crate) fn load(path: &Path, args: &EvalArgs, opts: &TableOptions) -> Result<Loaded> {
    let loaded = read_interactions_with(path, args.format, opts).map_err(train_error)?;
    if !loaded.description.is_empty() {
        eprintln!("recd eval: {}", loaded.description);
    }
    Ok(loaded)
}

/// Writes `train.csv` and `test.csv` of `split` into `dir`: the raw events (`raw[kept[e]]`
/// is dense event `e`).
fn write_split(
    dir: &Path,
    raw: &[Interaction],
    kept: &[usize],
    is_test: &[bool],
) -> Result<(usize, usize)> {
    std::fs::create_dir_all(dir)
        .map_err(|e| UsageError(format!("--write-split {}: {e}", dir.display())))?;
    let half = |test: bool| {
        kept.iter()
            .zip(is_test)
            .filter(move |(_, t)| **t == test)
            .filter_map(|(&p, _)| raw.get(p))
    };
    let n_train = write_csv(&dir.join("train.csv"), half(false)).map_err(train_error)?;
    let n_test = write_csv(&dir.join("test.csv"), half(true)).map_err(train_error)?;
    Ok((n_train, n_test))
}

/// Everything after loading the file, on a thread that may block.
fn evaluate(handle: &Handle, args: &EvalArgs, config: &recd_server::Config) -> Result<EvalReport> {
    let t = Instant::now();
    let opts = args
        .table
        .options(None, &config.import, recd_server::clock::now_ms())?;
    let method = SplitMethod::from_name(&args.split, args.test_fraction).map_err(train_error)?;
    // the whole data set, and the size of a given train half at its front
    let (loaded, given_train) = match (&args.interactions, &args.train, &args.test) {
        (Some(path), _, _) => (load(path, args, &opts)?, None),
        (None, Some(train), Some(test)) => {
            let mut a = load(train, args, &opts)?;
            let b = load(test, args, &opts)?;
            if a.timed != b.timed {
                return Err(UsageError(
                    "--train and --test: one has timestamps and the other not".into(),
                )
                .into());
            }
            let n = a.interactions.len();
            a.interactions.extend(b.interactions);
            if b.movies.len() > a.movies.len() {
                a.movies = b.movies;
            }
            a.name = format!("{} + {}", a.name, b.name);
            (a, Some(n))
        }
        _ => {
            return Err(
                UsageError("give --interactions, or both --train and --test".into()).into(),
            );
        }
    };
    if !loaded.timed && matches!(method, SplitMethod::Time { .. }) && given_train.is_none() {
        return Err(UsageError(format!(
            "the time split cannot run on {}: it has no time column (file order defines time \
             only for ordering); name the column with --time-col, or use --split random or \
             leave-last-out",
            loaded.name
        ))
        .into());
    }
    // One definition of event weights: the config's, as the pipeline store applies them.
    let weights = &config.model.session.weights;
    if let Some(warning) = neutral_warning(&loaded.interactions, weights) {
        tracing::warn!(dataset = %loaded.name, "{warning}");
        eprintln!("recd eval: warning: {warning}");
    }
    let catalog: IdMap = loaded.movies.iter().map(|m| m.id.clone()).collect();
    let (data, kept, skipped) =
        Interactions::from_raw_positions(&loaded.interactions, weights, catalog);
    let sets = genre_sets(&loaded.movies, data.item_ids());
    let (split, is_test) = match given_train {
        Some(n) => {
            let is_test: Vec<bool> = kept.iter().map(|&p| p >= n).collect();
            let split =
                split::from_mask(&data, &is_test, SplitMethod::Given).map_err(train_error)?;
            (split, is_test)
        }
        None => {
            let is_test = split::split_mask(&data, method, args.split_seed).map_err(train_error)?;
            (
                split::from_mask(&data, &is_test, method).map_err(train_error)?,
                is_test,
            )
        }
    };
    if let Some(dir) = &args.write_split {
        let (a, b) = write_split(dir, &loaded.interactions, &kept, &is_test)?;
        eprintln!(
            "recd eval: wrote the split to {}: train.csv ({a} events), test.csv ({b} events)",
            dir.display()
        );
    }
    let factors = args.als.factors(&config.train).unwrap_or(64);
    let mut config = config.clone();
    let choose_session_mix = match args.session_mix.as_deref() {
        None => false,
        Some("auto") => true,
        Some(v) => {
            let mix = v
                .parse::<f64>()
                .ok()
                .filter(|m| (0.0..=1.0).contains(m))
                .ok_or_else(|| {
                    UsageError(format!("--session-mix must be auto or 0 to 1, got {v:?}"))
                })?;
            config.model.session.fold_in.session_mix = mix;
            false
        }
    };
    let config = &mut config;
    let eval_config = EvalConfig {
        k: args.k,
        split: split.method,
        seed: args.split_seed,
        als: args.als.params(factors, &config.train)?,
        early_stopping: args.als.early_stopping(&config.train)?,
        skip_replay: args.no_replay,
        fold_in_capacity: config.model.session.recent_capacity,
        fold_in_share: config.model.session.fold_in.share,
        fold_in_session_mix: config.model.session.fold_in.session_mix,
        choose_session_mix,
        session: config.model.session.clone(),
        session_saturation: config.ranking.session_saturation,
        ..EvalConfig::default()
    };
    eprintln!(
        "recd eval: {} interactions of {} users on {} items from {} (read in {:.1} s{})",
        data.len(),
        data.n_users(),
        data.n_items(),
        loaded.name,
        t.elapsed().as_secs_f64(),
        if skipped > 0 {
            format!("; {skipped} without positive weight skipped")
        } else {
            String::new()
        }
    );
    // ALS on the train half is the long step of a small evaluation: counted like `recd
    // train`'s (a bar on a terminal, periodic lines otherwise).
    if eval_config.early_stopping.patience > 0 {
        eprintln!(
            "recd eval: early stopping on a validation split of the train half (patience {})",
            eval_config.early_stopping.patience
        );
    }
    // A known total without early stopping; with it, the validation runs and the final
    // retraining add up to a count known only at the end.
    let total =
        (eval_config.early_stopping.patience == 0).then_some(eval_config.als.iterations as u64);
    let iterations = Progress::new("ALS iterations", total);
    let ev =
        Evaluation::from_split_with(split, &loaded.name, eval_config, Some(sets), |_, _, _| {
            iterations.add(1)
        })
        .map_err(train_error)?;
    iterations.finish();
    eprintln!(
        "recd eval: {} split, {} train / {} test events; ALS trained in {:.2} s",
        ev.split.method.name(),
        ev.split.train.len(),
        ev.split.test.len(),
        ev.als.train_seconds
    );
    let mut report = ev.run_builtin();
    if let Some(choice) = &report.session_mix {
        eprintln!(
            "recd eval: session mix {} chosen on a {} validation split of the train half \
             ({} events; hit rate by mix: {})",
            choice.chosen,
            choice.split,
            choice.validation_events,
            choice
                .trials
                .iter()
                .map(|t| format!("{} {:.4}", t.mix, t.hit_rate))
                .collect::<Vec<_>>()
                .join(", ")
        );
        // the pipeline's real-time arms serve with it
        config.model.session.fold_in.session_mix = choice.chosen;
    }
    eprintln!(
        "recd eval: built-in models done; loading the pipeline store (vector metric {:?})",
        pipeline_metric(config)
    );

    let t = Instant::now();
    let kinds = EventKinds::new(&loaded, &data);
    let pipeline = build_pipeline(
        handle,
        &ev.split.train,
        &ev.als,
        &loaded,
        &kinds,
        config,
        Scoring::ranking(without_transitions(config)),
    )?;
    let load_seconds = t.elapsed().as_secs_f64();
    let users = Progress::new("pipeline model users", None);
    pipeline.count_into(Some(users.clone()));
    ev.add_model(
        &mut report,
        "pipeline",
        &pipeline,
        ev.als.train_seconds + load_seconds,
    );
    pipeline.count_into(None);
    users.finish();
    pipeline.check()?;
    let next = pipeline.ranked(with_transitions(config), &config.model.session);
    ev.add_model(
        &mut report,
        "pipeline_transitions",
        &next,
        ev.als.train_seconds + load_seconds,
    );
    next.check()?;
    eprintln!("recd eval: pipeline models done");
    if args.ranker {
        crate::eval_ranker::add_learned(
            handle,
            &ev,
            &loaded,
            &kinds,
            config,
            !args.no_replay,
            &mut report,
        )?;
    }
    if !args.no_replay {
        let t = Instant::now();
        let replayed = || Progress::new("replayed events", Some(ev.split.test.len() as u64));
        let p = replayed();
        ev.add_replay(
            &mut report,
            "batch_pipeline",
            &mut Frozen(&pipeline, p.clone()),
        );
        p.finish();
        pipeline.check()?;
        eprintln!(
            "recd eval: batch_pipeline replay done in {:.1} s",
            t.elapsed().as_secs_f64()
        );
        // Both update rules, the configured one first (on the store already loaded).
        let configured = config.model.session.update;
        let other = match configured {
            UpdateRule::FoldIn => UpdateRule::DecayedAverage,
            UpdateRule::DecayedAverage => UpdateRule::FoldIn,
        };
        let mut pipeline = Some(pipeline);
        for rule in [configured, other] {
            let live_pipeline = match pipeline.take() {
                Some(p) => p,
                None => {
                    let mut config = config.clone();
                    config.model.session.update = rule;
                    let ranking = without_transitions(&config);
                    build_pipeline(
                        handle,
                        &ev.split.train,
                        &ev.als,
                        &loaded,
                        &kinds,
                        &config,
                        Scoring::ranking(ranking),
                    )?
                }
            };
            let t = Instant::now();
            let p = replayed();
            let mut live = Live {
                pipeline: &live_pipeline,
                kinds: &kinds,
                progress: p.clone(),
            };
            let name = format!("realtime_{}", rule.as_str());
            ev.add_replay(&mut report, &name, &mut live);
            p.finish();
            live_pipeline.check()?;
            eprintln!(
                "recd eval: {name} replay done in {:.1} s",
                t.elapsed().as_secs_f64()
            );
        }
        let name = format!("realtime_{}", configured.as_str());
        if let Some(m) = report.replay.get(&name).copied() {
            report.replay.insert("realtime".into(), m);
        }
        // The configured rule with the transitions source.
        let live_pipeline = build_pipeline(
            handle,
            &ev.split.train,
            &ev.als,
            &loaded,
            &kinds,
            config,
            Scoring::ranking(with_transitions(config)),
        )?;
        let t = Instant::now();
        let p = replayed();
        let mut live = Live {
            pipeline: &live_pipeline,
            kinds: &kinds,
            progress: p.clone(),
        };
        ev.add_replay(&mut report, "realtime_transitions", &mut live);
        p.finish();
        live_pipeline.check()?;
        eprintln!(
            "recd eval: realtime_transitions replay done in {:.1} s",
            t.elapsed().as_secs_f64()
        );
    }
    Ok(report)
}

/// `a / b`, or NaN-free "n/a".
fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}x", a / b)
    } else {
        "n/a".into()
    }
}

/// `recd eval`.
pub async fn run(args: EvalArgs) -> Result<()> {
    if args.k == 0 || args.k > 1000 {
        return Err(UsageError(format!("--k must be 1 to 1000, got {}", args.k)).into());
    }
    for (flag, path) in [
        ("--interactions", &args.interactions),
        ("--train", &args.train),
        ("--test", &args.test),
    ] {
        if let Some(p) = path
            && !p.exists()
        {
            return Err(
                UsageError(format!("{flag} {}: no such file or folder", p.display())).into(),
            );
        }
    }
    let config = recd_server::Config::load(args.config.as_deref(), &Overrides::default())?;
    let json = args.json;
    if args.new_items {
        let (name, report) =
            tokio::task::spawn_blocking(move || crate::eval_new::run(&args, &config))
                .await
                .context("the evaluation task failed")??;
        return crate::eval_new::print(&name, &report, json);
    }
    let handle = Handle::current();
    let report = tokio::task::spawn_blocking(move || evaluate(&handle, &args, &config))
        .await
        .context("the evaluation task failed")??;
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", report.to_table());
        let m = |name: &str| report.models.get(name).map_or(0.0, |m| m.metrics.ndcg);
        let r = |name: &str| report.replay.get(name).map_or(0.0, |r| r.hit_rate);
        println!(
            "ALS / popularity NDCG@{k}: {}   pipeline / popularity NDCG@{k}: {}   \
             pipeline_transitions / pipeline NDCG@{k}: {}",
            ratio(m("als"), m("popularity")),
            ratio(m("pipeline"), m("popularity")),
            ratio(m("pipeline_transitions"), m("pipeline")),
            k = report.k
        );
        if report.models.contains_key("pipeline_learned") {
            println!(
                "pipeline_learned / pipeline NDCG@{k}: {}",
                ratio(m("pipeline_learned"), m("pipeline")),
                k = report.k
            );
        }
        if report.replay.contains_key("realtime_learned") {
            println!(
                "replay HR@{k}: realtime_learned / realtime {}",
                ratio(r("realtime_learned"), r("realtime")),
                k = report.k
            );
        }
        if !report.replay.is_empty() {
            println!(
                "replay HR@{k}: fold_in / batch {}   decayed_average / batch {}   \
                 fold_in / batch_pipeline {}   decayed_average / batch_pipeline {}",
                ratio(r("realtime_fold_in"), r("batch")),
                ratio(r("realtime_decayed_average"), r("batch")),
                ratio(r("realtime_fold_in"), r("batch_pipeline")),
                ratio(r("realtime_decayed_average"), r("batch_pipeline")),
                k = report.k
            );
            println!(
                "replay HR@{k}: realtime_transitions / realtime {}",
                ratio(r("realtime_transitions"), r("realtime")),
                k = report.k
            );
        }
    }
    Ok(())
}
