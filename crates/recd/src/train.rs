//! `recd train`: implicit ALS on the event log (or an `--interactions` file), then the item
//! vectors and the users' long-term vectors are written back in batches, and the users'
//! session vectors rebuilt with the new item vectors, while the store keeps serving.
//!
//! Where it reads and writes:
//! - `--target http://HOST:PORT`: through a running server's admin API ([`remote`]): the
//!   event log from `GET /v1/admin/events`, vectors to `PUT /v1/admin/vectors`, sessions via
//!   `POST /v1/admin/sessions/rebuild`. The server keeps its store (an embedded data dir has
//!   one owner process) and keeps answering; batches are sized for its backend.
//! - `--backend redis`: the store is shared, so `recd train` opens it itself next to any
//!   number of `recd serve` processes. The store writes a few vectors per script, so that
//!   Redis serves requests between them however large a batch is.
//! - `--backend embedded` (default) with `--data-dir`: opens the data dir itself, so only
//!   while no server holds it; against a running server it stops and points to `--target`.
//!
//! Either way each vector lands atomically (a whole batch at once on the embedded backend)
//! and requests keep being answered (old vectors until they land, new ones after). A batch that failed transiently (a timeout, a busy
//! server) is sent again: writing the same vectors twice is harmless. Items without
//! interactions get no new vector and stay with the popular source (or their old vector).
//!
//! Sessions: a session vector is a decayed average of the vectors of the items the user
//! touched, so after the item vectors change it points nowhere in the new space. Once every
//! item vector is in, the sessions of every user in the event log (including users whose
//! events arrived while training ran) are recomputed from their events with the new vectors
//! (`Store::rebuild_sessions`, atomic per user against concurrent events, so an event is
//! never lost and read-your-writes holds throughout).
//!
//! Model versions and the quality gate (see `recd_train::gate` and
//! `recd_server::engine::models`): the model is trained without each user's last event,
//! which is held out; the new model and the live one (popularity when none is live) are
//! scored on those events, and every run is recorded as a version (`v1`, `v2`, ...) with
//! its vectors, settings and figures. Only a model that passes the gate (or `--force`) is
//! written into the serving state and recorded live; a rejected one is kept, listed as
//! `rejected`, and `recd train` exits with 1 and says why. `recd model activate` (or
//! `POST /v1/models/{version}/activate`) makes any kept version live again.
//!
//! Transitions: with the vectors, each version stores its transition table (per item, the
//! `[train] transitions_top` items most often touched next, from the same events and event
//! weights; `recd_train::transitions`). It serves the pipeline's transitions source from
//! the moment the version is live (`Store::transitions`), and comes back with a rollback.
//!
//! Cached lists: the session rebuild, the last step, drops every cached recommendation list
//! of the servers (by the admin API with `--target`; on the servers' shared cache tier,
//! invalidation marks + pub/sub, when writing a Redis store directly). Not each vector batch:
//! emptying the cache once per batch made every request a miss while the vectors were being
//! written. Meanwhile cached lists of the old model are served until they expire.

pub(crate) mod remote;
pub(crate) mod settings;

pub use self::settings::AlsArgs;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use recd_server::Engine;
use recd_server::config::Backend;
use recd_server::engine::models::{ModelChunk, ModelInfo};
use recd_server::engine::{EngineError, shared_tier};
use recd_train::als;
use recd_train::early_stop::{Validation, choose_iterations};
use recd_train::gate::{self, Baseline, Factors, HoldoutScore};
use recd_train::movielens::{Format, read_interactions};
use recd_train::split::{Split, SplitMethod, split};
use recd_train::{IdMap, Interaction, Interactions, neutral_warning};

use self::remote::{Failure, LogPage, Remote, VectorRows};
use crate::movielens::open;
use crate::progress::Progress;
use crate::{StoreArgs, UsageError};

/// Users per session rebuild call, on either backend: a rebuild is per-user compare-and-set
/// work (no long script), and each call drops the servers' cached lists once.
const SESSION_BATCH: usize = 1000;
/// Vectors per write, on either backend. Embedded: one durable commit each. Redis: the
/// store splits a batch into scripts of 8 vectors (each re-indexes its item, ~1 ms), one
/// after the other, so the batch only sets the round trips and the unit of retry. Measured
/// on 100k x 64 under recommend load (c = 32): 72.6k item + 10k user vectors in 161 s, 0
/// errors, requests' p99 230-330 ms during the write; one script per batch of 20 (before):
/// 112 s, p99 400-490 ms; of 100: 78 s, p99 up to 1.4 s.
const VECTOR_BATCH: usize = 1000;

/// `recd train` flags.
#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    #[command(flatten)]
    pub als: AlsArgs,
    /// Train on this file (or MovieLens folder) instead of the store's event log.
    #[arg(long)]
    pub interactions: Option<PathBuf>,
    /// Format of --interactions [default: from the path: folder = movielens, .csv, else jsonl].
    #[arg(long)]
    pub format: Option<Format>,
    /// Vectors per write [default: 1000; the redis store writes a few vectors per script,
    /// so that Redis serves requests between them]. Sessions are rebuilt 1000 users per call.
    #[arg(long)]
    pub batch: Option<usize>,
    /// Train against the running server at this URL (http://HOST:PORT): read its event log
    /// and write the vectors back through its admin API while it keeps serving. Without it,
    /// the store of --backend / --data-dir is opened directly.
    #[arg(long, value_name = "URL", conflicts_with_all = ["data_dir", "backend", "redis_url"])]
    pub target: Option<String>,
    /// API key with the admin scope, for --target.
    #[arg(long, env = "RECD_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Quality gate: the new model's NDCG@10 on the held-out events may be at most this
    /// share below the live model's [default: `[model] gate_margin` (0.05); with --target
    /// the server's].
    #[arg(long, value_name = "SHARE")]
    pub gate_margin: Option<f64>,
    /// Make the new model live even if it fails the quality gate (its vectors must still
    /// be usable to be written).
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub store: StoreArgs,
}

/// A recd-train error for the exit code: bad input, a bad parameter or a folder that is no
/// MovieLens layout are usage errors (2), the rest runtime failures (1).
pub fn train_error(e: recd_train::TrainError) -> anyhow::Error {
    use recd_train::TrainError as E;
    match e {
        E::BadInput { .. } | E::InvalidParam { .. } | E::UnknownLayout { .. } => {
            anyhow::Error::new(UsageError(e.to_string()))
        }
        other => anyhow::Error::new(other),
    }
}

/// A store event as a training interaction.
pub fn interaction(e: &recd_core::Event) -> Interaction {
    Interaction {
        user: e.user_id.clone(),
        item: e.item_id.clone(),
        kind: e.kind,
        value: e.value,
        timestamp_ms: e.timestamp_ms,
    }
}

/// A vector every schema accepts: finite and not all zeros.
fn usable(v: &[f32]) -> bool {
    v.iter().all(|x| x.is_finite()) && v.iter().any(|x| *x != 0.0)
}

/// What a write-back did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Written {
    /// Items whose vector was replaced.
    pub items: usize,
    /// Model items the store does not have (skipped).
    pub unknown_items: usize,
    /// Users whose long-term vector was set.
    pub users: usize,
    /// Zero (or non-finite) vectors left out.
    pub unusable: usize,
}

/// How often one vector batch that failed as unavailable (a timeout) is tried again:
/// writing the same vectors twice is harmless, whether or not the first write landed.
const RETRIES: u32 = 3;

/// `call` (one batch, or one read), tried again after a pause when it failed transiently.
pub(crate) async fn with_retries<T, F, Fut>(what: &'static str, mut call: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Failure>>,
{
    let mut attempt = 0;
    loop {
        match call().await {
            Ok(n) => return Ok(n),
            Err(Failure::Transient(cause)) if attempt < RETRIES => {
                attempt += 1;
                tracing::warn!(attempt, %cause, "{what}: the store is unavailable, retrying");
                tokio::time::sleep(Duration::from_millis(250 << attempt)).await;
            }
            Err(Failure::Transient(cause)) => {
                return Err(anyhow::anyhow!("{cause} (tried {} times)", RETRIES + 1).context(what));
            }
            Err(Failure::Fatal(e)) => return Err(e.context(what)),
        }
    }
}

/// An engine error as a [`Failure`]: unavailable is worth another try.
pub(crate) fn engine_failure(e: EngineError) -> Failure {
    match e {
        EngineError::Unavailable(cause) => Failure::Transient(cause),
        other => Failure::Fatal(anyhow::Error::new(other)),
    }
}

/// Where the trainer reads events and writes vectors.
pub(crate) enum Target {
    /// The store, opened by this process, through an engine (which, on Redis, drops the
    /// servers' cached lists on their shared cache tier as a server would).
    Store(Arc<Engine>),
    /// A running server's admin API, and the name of the server's backend.
    Server(Remote, String),
}

impl Target {
    /// "the embedded store" or "the embedded store at URL", for messages.
    fn label(&self) -> String {
        match self {
            Target::Store(engine) => format!("the {} store", engine.backend()),
            Target::Server(remote, backend) => {
                format!("the {backend} store at {}", remote.base())
            }
        }
    }

    /// Whether others may write events while we train (a server, or a shared Redis).
    fn shared(&self) -> bool {
        !matches!(self, Target::Store(engine) if engine.backend() == "embedded")
    }

    async fn events(&self, offset: usize) -> Result<LogPage, Failure> {
        match self {
            Target::Store(engine) => {
                let mut events = engine.events().await.map_err(engine_failure)?;
                let next_offset = events.len();
                events.drain(..offset.min(next_offset));
                Ok(LogPage {
                    events,
                    next_offset,
                })
            }
            Target::Server(remote, _) => remote.events(offset).await,
        }
    }

    /// Replaces item vectors: (replaced, not in the catalog).
    async fn put_items(&self, rows: &[(String, Vec<f32>)]) -> Result<(usize, usize), Failure> {
        match self {
            Target::Store(engine) => {
                let written = engine
                    .write_vectors(rows.to_vec(), Vec::new())
                    .await
                    .map_err(engine_failure)?;
                Ok((written.items, written.unknown_items))
            }
            Target::Server(remote, _) => remote.put_item_vectors(rows).await,
        }
    }

    async fn put_users(&self, rows: &[(String, Vec<f32>)]) -> Result<usize, Failure> {
        match self {
            Target::Store(engine) => engine
                .write_vectors(Vec::new(), rows.to_vec())
                .await
                .map(|written| written.users)
                .map_err(engine_failure),
            Target::Server(remote, _) => remote.put_user_vectors(rows).await,
        }
    }

    async fn rebuild_sessions(&self, users: &[String]) -> Result<usize, Failure> {
        match self {
            Target::Store(engine) => engine.rebuild_sessions(users).await.map_err(engine_failure),
            Target::Server(remote, _) => remote.rebuild_sessions(users).await,
        }
    }

    /// The live version and its chunk count, and the gate margin of the store's config.
    async fn live_model(&self) -> Result<(Option<(String, u32)>, f64), Failure> {
        match self {
            Target::Store(engine) => {
                let m = engine.models().await.map_err(engine_failure)?;
                let live = m.live.as_ref().and_then(|l| {
                    m.models
                        .iter()
                        .find(|v| &v.version == l)
                        .map(|v| (l.clone(), v.chunks))
                });
                Ok((live, m.gate_margin))
            }
            Target::Server(remote, _) => {
                let v = remote.models().await?;
                let live = v["live"].as_str().and_then(|l| {
                    v["models"].as_array()?.iter().find_map(|m| {
                        (m["version"] == l)
                            .then(|| (l.to_string(), m["chunks"].as_u64().unwrap_or(0) as u32))
                    })
                });
                let margin = v["gate_margin"].as_f64().unwrap_or(0.05);
                Ok((live, margin))
            }
        }
    }

    async fn model_chunk(&self, version: &str, index: u32) -> Result<VectorRows, Failure> {
        match self {
            Target::Store(engine) => {
                let c = engine
                    .model_chunk(version, index)
                    .await
                    .map_err(engine_failure)?;
                Ok((c.items, c.users))
            }
            Target::Server(remote, _) => remote.model_chunk(version, index).await,
        }
    }

    async fn new_model_version(&self) -> Result<String, Failure> {
        match self {
            Target::Store(engine) => engine.new_model_version().await.map_err(engine_failure),
            Target::Server(remote, _) => remote.new_model_version().await,
        }
    }

    async fn put_model_chunk(
        &self,
        version: &str,
        index: u32,
        items: &[(String, Vec<f32>)],
        users: &[(String, Vec<f32>)],
    ) -> Result<(), Failure> {
        match self {
            Target::Store(engine) => {
                let chunk = ModelChunk {
                    items: items.to_vec(),
                    users: users.to_vec(),
                };
                engine
                    .put_model_chunk(version, index, &chunk)
                    .await
                    .map_err(engine_failure)
            }
            Target::Server(remote, _) => remote.put_model_chunk(version, index, items, users).await,
        }
    }

    async fn put_model_transitions(
        &self,
        version: &str,
        lists: &[recd_store::NextList],
    ) -> Result<(), Failure> {
        match self {
            Target::Store(engine) => engine
                .put_model_transitions(version, lists.to_vec())
                .await
                .map_err(engine_failure),
            Target::Server(remote, _) => remote.put_model_transitions(version, lists).await,
        }
    }

    async fn record_model(
        &self,
        version: &str,
        chunks: u32,
        info: &ModelInfo,
    ) -> Result<(), Failure> {
        match self {
            Target::Store(engine) => engine
                .record_model(version, chunks, info.clone())
                .await
                .map(|_| ())
                .map_err(engine_failure),
            Target::Server(remote, _) => {
                let info = serde_json::to_value(info)
                    .map_err(|e| Failure::Fatal(anyhow::Error::new(e)))?;
                remote.record_model(version, chunks, &info).await
            }
        }
    }

    async fn mark_model_live(&self, version: &str) -> Result<(), Failure> {
        match self {
            Target::Store(engine) => {
                engine
                    .mark_model_live(version)
                    .await
                    .map_err(engine_failure)?;
                // This process exits next: new items move into the model's space now
                // (a server does it in the background).
                engine.place_new_items_logged().await;
                Ok(())
            }
            Target::Server(remote, _) => remote.mark_model_live(version).await,
        }
    }

    /// Live catalog items.
    async fn catalog_items(&self) -> Result<u64, Failure> {
        match self {
            Target::Store(engine) => Ok(engine.health().await.map_err(engine_failure)?.items),
            Target::Server(remote, _) => Ok(remote.health().await?.1),
        }
    }
}

/// A model's vectors as written: the usable ones, and how many were left out.
struct Rows {
    items: Vec<(String, Vec<f32>)>,
    users: Vec<(String, Vec<f32>)>,
    unusable: usize,
}

impl Rows {
    /// The usable vectors of `model` (see `recd_train::gate::Factors::from_model`).
    fn of(model: &Factors, user_ids: &IdMap, item_ids: &IdMap) -> Rows {
        let mut unusable = 0;
        let mut keep = |rows: Vec<(String, Vec<f32>)>| -> Vec<(String, Vec<f32>)> {
            let before = rows.len();
            let kept: Vec<_> = rows.into_iter().filter(|(_, v)| usable(v)).collect();
            unusable += before - kept.len();
            kept
        };
        let items = keep(model.item_rows(item_ids));
        let users = keep(model.user_rows(user_ids));
        Rows {
            items,
            users,
            unusable,
        }
    }
}

/// Writes the item vectors, then the user vectors, to `target`, `batch` at a time.
async fn write_back(target: &Target, rows: &Rows, batch: usize) -> Result<Written> {
    let batch = batch.max(1);
    let mut w = Written {
        unusable: rows.unusable,
        ..Written::default()
    };
    let (items, users) = (&rows.items, &rows.users);
    for chunk in items.chunks(batch) {
        let (done, unknown) =
            with_retries("writing item vectors", || target.put_items(chunk)).await?;
        w.items += done;
        w.unknown_items += unknown;
    }
    for chunk in users.chunks(batch) {
        w.users += with_retries("writing user vectors", || target.put_users(chunk)).await?;
    }
    Ok(w)
}

/// The users of the event log as read for training, and the offset it was read up to.
struct LogRead {
    users: BTreeSet<String>,
    next_offset: usize,
}

/// Rebuilds the sessions of every user in the event log with the item vectors now in the
/// store: those read for training, plus those of the events logged since (or, when training
/// read a file, of the whole log). Returns how many users had a session state to rebuild.
async fn rebuild_sessions(target: &Target, read: Option<LogRead>, batch: usize) -> Result<usize> {
    let (mut users, offset) = match read {
        Some(r) => (r.users, Some(r.next_offset)),
        None => (BTreeSet::new(), None),
    };
    if target.shared() || offset.is_none() {
        let since = offset.unwrap_or(0);
        let page = with_retries("reading the event log", || target.events(since)).await?;
        users.extend(page.events.into_iter().map(|e| e.user_id));
    }
    let users: Vec<String> = users.into_iter().collect();
    let mut rebuilt = 0;
    for chunk in users.chunks(batch.max(1)) {
        rebuilt += with_retries("rebuilding session vectors", || {
            target.rebuild_sessions(chunk)
        })
        .await?;
    }
    Ok(rebuilt)
}

/// The server at `url`, checked to be reachable.
pub(crate) async fn connect(url: &str, api_key: Option<&str>) -> Result<(Target, usize)> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(UsageError(format!(
            "--target {url}: expected the server's base URL, e.g. http://127.0.0.1:8080"
        ))
        .into());
    }
    let remote = Remote::new(url, api_key)?;
    let (backend, _) = with_retries("reaching the server", || remote.health()).await?;
    let schema = with_retries("reading the server's schema", || remote.schema()).await?;
    Ok((Target::Server(remote, backend), schema.vector.dim))
}

/// The store of `--backend` / `--data-dir`, opened by this process.
pub(crate) async fn open_direct(store_args: &StoreArgs) -> Result<(Target, usize)> {
    let config = store_args.load()?;
    if config.backend == Backend::Embedded
        && config.schema.is_none()
        && !config.data_dir.join("recd.redb").exists()
    {
        return Err(UsageError(format!(
            "the data dir {} is empty: import a catalog and events first \
             (recd import movielens DIR, recd import items/events)",
            config.data_dir.display()
        ))
        .into());
    }
    // Redis without a [schema]: the store uses the one its deployment recorded (an empty
    // prefix is a usage error there: nothing to train on).
    let store = open(&config).await.map_err(|e| {
        if format!("{e:#}").contains("in use by another process") {
            e.context(
                "a server holds the data dir: train through it instead, with \
                 `recd train --target http://HOST:PORT` (the server's --listen address)",
            )
        } else {
            e
        }
    })?;
    let dim = store.schema().vector.dim;
    let l2 = shared_cache(&config).await;
    // Training serves nothing: experiments are not consulted, so in memory is enough.
    let experiments = recd_server::experiments::Experiments::in_memory(
        config.ranking.clone(),
        &config.strategies,
        config.experiments.clone(),
    )?;
    let engine = Engine::new(store, config, l2, None, Arc::new(experiments));
    Ok((Target::Store(Arc::new(engine)), dim))
}

/// The cache tier the servers of a Redis store share, as `recd serve` connects it (none
/// when caching or its L2 is off, or for the embedded backend, whose one server is
/// reached through `--target` instead).
async fn shared_cache(config: &recd_server::Config) -> Option<recd_server::cache::RedisTier> {
    shared_tier(config).await.unwrap_or_else(|e| {
        tracing::warn!(cause = %e, "cannot reach the servers' cache tier: their cached lists expire by their TTL");
        None
    })
}

/// `recd train`.
pub async fn run(args: TrainArgs) -> Result<()> {
    if let Some(path) = &args.interactions
        && !path.exists()
    {
        // The caller's mistake (exit 2), found before a store is opened or created.
        return Err(UsageError(format!(
            "--interactions {}: no such file or folder",
            path.display()
        ))
        .into());
    }
    // The event weights of the config (`[model.session.weights]`): training weighs events
    // exactly as the servers' real-time model does.
    let config = args.store.load()?;
    let weights = config.model.session.weights;
    let (target, dim) = match &args.target {
        Some(url) => connect(url, args.api_key.as_deref()).await?,
        None => open_direct(&args.store).await?,
    };
    let factors = args.als.factors(&config.train).unwrap_or(dim);
    if factors != dim {
        return Err(UsageError(format!(
            "--factors {factors} does not fit {}, whose vectors have {dim} dimensions \
             (schema.vector.dim); train with --factors {dim}, or use a new store",
            target.label()
        ))
        .into());
    }
    let mut params = args.als.params(factors, &config.train)?;
    let stopping = args.als.early_stopping(&config.train)?;

    let t = Instant::now();
    let (raw, source, log) = match &args.interactions {
        Some(path) => {
            let loaded = read_interactions(path, args.format).map_err(train_error)?;
            (loaded.interactions, path.display().to_string(), None)
        }
        None => {
            let page = with_retries("reading the event log", || target.events(0)).await?;
            let raw: Vec<Interaction> = page.events.iter().map(interaction).collect();
            let users = page.events.into_iter().map(|e| e.user_id).collect();
            let read = LogRead {
                users,
                next_offset: page.next_offset,
            };
            (raw, format!("{}'s event log", target.label()), Some(read))
        }
    };
    if let Some(warning) = neutral_warning(&raw, &weights) {
        tracing::warn!(source = %source, "{warning}");
        eprintln!("recd train: warning: {warning}");
    }
    let (data, skipped) = Interactions::from_raw(raw, &weights);
    if data.is_empty() {
        return Err(UsageError(format!(
            "no positive interactions in {source} to train on ({skipped} events carry no positive weight)"
        ))
        .into());
    }
    eprintln!(
        "recd train: {} interactions of {} users on {} items from {source} (read in {:.2} s{})",
        data.len(),
        data.n_users(),
        data.n_items(),
        t.elapsed().as_secs_f64(),
        if skipped > 0 {
            format!("; {skipped} without positive weight skipped")
        } else {
            String::new()
        }
    );
    // Each user's last item is held out for the quality gate (users with two or more).
    let held: Option<Split> = match split(&data, SplitMethod::LeaveLastOut, params.seed) {
        Ok(s) => Some(s),
        Err(recd_train::TrainError::Empty(_)) => None,
        Err(e) => return Err(train_error(e)),
    };
    let train_set = Arc::new(match &held {
        Some(s) => s.train.clone(),
        None => data.clone(),
    });
    // Early stopping: the iteration count chosen on a validation split of the training
    // part (never the gate's held-out events), then the model trained with it.
    if stopping.patience > 0 {
        let data = train_set.clone();
        let trial = params.clone();
        let report = tokio::task::spawn_blocking(move || {
            let validation = Validation::carve(
                &data,
                stopping.validation_fraction,
                stopping.seed,
                stopping.k,
            )?;
            choose_iterations(&validation, &trial, stopping.patience)
        })
        .await
        .context("the early-stopping task failed")?
        .map_err(train_error)?;
        println!(
            "early stopping: {} iterations chosen (validation NDCG@{} {:.4} on {} users; {} of at most {} run)",
            report.iterations,
            stopping.k,
            report.ndcg,
            report.users,
            report.ndcg_by_iteration.len(),
            params.iterations
        );
        params.iterations = report.iterations;
    }
    // Each iteration's objective printed (the loss should fall, then flatten), with a bar.
    let progress = Progress::new("ALS iterations", Some(params.iterations as u64));
    let model = {
        let data = train_set.clone();
        let params = params.clone();
        let progress = progress.clone();
        tokio::task::spawn_blocking(move || {
            let objective = als::Objective::new(&data, &params);
            als::train_with(&data, &params, |info, x, y| {
                let loss = objective.at(x, y);
                progress.say(&format!(
                    "recd train: iteration {}/{}: loss {loss:.6e} ({:.2} s)",
                    info.iteration + 1,
                    params.iterations,
                    info.seconds
                ));
                progress.add(1);
            })
        })
        .await
        .context("the training task failed")?
        .map_err(train_error)?
    };
    progress.finish();
    let threads = if params.threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        params.threads
    };
    println!(
        "trained ALS: {factors} factors, {} iterations, lambda {}, alpha {}, {} scaling, {threads} threads, in {:.2} s",
        params.iterations,
        params.regularization,
        params.alpha,
        params.confidence.scaling.as_str(),
        model.train_seconds
    );

    // The quality gate.
    let candidate = Factors::from_model(&model, &train_set);
    let (live, server_margin) =
        with_retries("reading the model versions", || target.live_model()).await?;
    let margin = args.gate_margin.unwrap_or(server_margin);
    if !(0.0..1.0).contains(&margin) {
        return Err(UsageError(format!(
            "--gate-margin {margin}: expected a share in [0, 1), e.g. 0.05"
        ))
        .into());
    }
    let verdict = run_gate(&target, &candidate, held.as_ref(), live.as_ref(), margin).await?;
    println!("quality gate: {}", verdict.decision.reason);

    // The version: its vectors, then its record.
    let rows = Rows::of(&candidate, model.user_ids.as_ref(), model.item_ids.as_ref());
    let batch = args.batch.unwrap_or(VECTOR_BATCH).max(1);
    let version = with_retries("creating a model version", || target.new_model_version()).await?;
    let mut chunks = 0u32;
    let empty: Vec<(String, Vec<f32>)> = Vec::new();
    let parts = rows
        .items
        .chunks(batch)
        .map(|c| (c, empty.as_slice()))
        .chain(rows.users.chunks(batch).map(|c| (empty.as_slice(), c)));
    let stored = Progress::new(
        "model vectors stored",
        Some((rows.items.len() + rows.users.len()) as u64),
    );
    for (items, users) in parts {
        let index = chunks;
        with_retries("storing the model version's vectors", || {
            target.put_model_chunk(&version, index, items, users)
        })
        .await?;
        chunks += 1;
        stored.add((items.len() + users.len()) as u64);
    }
    stored.finish();
    // The transition table (the serving pipeline's transitions source): from the same
    // training events and event weights as ALS, stored with the version before its record.
    let transitions_top = config.train.transitions_top;
    let next_lists = if transitions_top > 0 {
        let data = train_set.clone();
        tokio::task::spawn_blocking(move || {
            recd_train::transitions::Transitions::fit(&data, transitions_top).lists(data.item_ids())
        })
        .await
        .context("the transitions task failed")?
    } else {
        Vec::new()
    };
    for part in next_lists.chunks(batch) {
        with_retries("storing the model version's transitions", || {
            target.put_model_transitions(&version, part)
        })
        .await?;
    }
    if transitions_top > 0 {
        println!(
            "stored the transitions of {} items (up to {transitions_top} next items each)",
            next_lists.len()
        );
    }
    let accepted = verdict.decision.passed || args.force;
    let info = ModelInfo {
        created_at: recd_server::engine::models::now_rfc3339(),
        accepted,
        settings: serde_json::json!({
            "algorithm": "als",
            "factors": factors,
            "iterations": params.iterations,
            "regularization": params.regularization,
            "alpha": params.alpha,
            "seed": params.seed,
            "cg_steps": params.cg_steps,
            "confidence": params.confidence,
            "early_stopping_patience": stopping.patience,
            "transitions_top": transitions_top,
            "source": source,
        }),
        gate: serde_json::json!({
            "k": GATE_K,
            "holdout": "leave-last-out",
            "baseline": verdict.against,
            "baseline_version": live.as_ref().map(|(v, _)| v.clone()),
            "margin": margin,
            "candidate": verdict.candidate,
            "baseline_score": verdict.baseline,
            "popularity": verdict.popularity,
            "sanity": verdict.sanity,
            "passed": verdict.decision.passed,
            "forced": args.force && !verdict.decision.passed,
            "reason": verdict.decision.reason,
        }),
        counts: serde_json::json!({
            "interactions": data.len(),
            "held_out": held.as_ref().map_or(0, |s| s.test.len()),
            "items": rows.items.len(),
            "users": rows.users.len(),
            "unusable": rows.unusable,
            "transitions": next_lists.len(),
        }),
    };
    with_retries("recording the model version", || {
        target.record_model(&version, chunks, &info)
    })
    .await?;
    if !accepted {
        return Err(Rejected(format!(
            "model {version} failed the quality gate and was not made live: {} \
             (it is kept as rejected: `recd model list`; `recd train --force` or \
             `recd model activate {version}` makes such a model live anyway)",
            verdict.decision.reason
        ))
        .into());
    }
    if !verdict.decision.passed {
        eprintln!("recd train: --force: making {version} live although it failed the quality gate");
    }

    let t = Instant::now();
    let written = write_back(&target, &rows, batch).await?;
    let wrote_in = t.elapsed().as_secs_f64();
    let catalog = with_retries("counting the catalog", || target.catalog_items()).await?;
    println!(
        "wrote {} item vectors and {} user vectors to {} in {wrote_in:.2} s \
         (batches of {}; {} trained items are not in the catalog; {} zero vectors left out); \
         {} of {} catalog items have no interactions and no new vector (popular source)",
        written.items,
        written.users,
        target.label(),
        batch,
        written.unknown_items,
        written.unusable,
        catalog.saturating_sub(written.items as u64),
        catalog
    );
    let t = Instant::now();
    let rebuilt = rebuild_sessions(&target, log, SESSION_BATCH).await?;
    println!(
        "rebuilt the session vectors of {rebuilt} users with the new item vectors in {:.2} s",
        t.elapsed().as_secs_f64()
    );
    with_retries("recording the live model version", || {
        target.mark_model_live(&version)
    })
    .await?;
    println!("model {version} is live");
    Ok(())
}

/// Top-k of the quality gate's metrics.
const GATE_K: usize = 10;
/// Held-out users the gate scores at most (the first by index).
const GATE_USERS: usize = 20_000;

/// A model the gate turned down: exit code 1, with the reason.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Rejected(pub String);

/// What the gate measured and decided.
struct Verdict {
    candidate: HoldoutScore,
    baseline: HoldoutScore,
    popularity: HoldoutScore,
    against: Baseline,
    sanity: gate::Sanity,
    decision: gate::Decision,
}

/// Scores the candidate, the live version (read back from the registry) and popularity
/// on the held-out events, and decides.
async fn run_gate(
    target: &Target,
    candidate: &Factors,
    held: Option<&Split>,
    live: Option<&(String, u32)>,
    margin: f64,
) -> Result<Verdict> {
    let sanity = candidate.sanity();
    let Some(split) = held else {
        let passed = sanity.ok();
        return Ok(Verdict {
            candidate: HoldoutScore::default(),
            baseline: HoldoutScore::default(),
            popularity: HoldoutScore::default(),
            against: if live.is_some() {
                Baseline::Live
            } else {
                Baseline::Popularity
            },
            sanity,
            decision: gate::Decision {
                passed,
                reason: if passed {
                    "no user has two items to hold one out: the vectors are sane, nothing to compare".into()
                } else {
                    gate::decide(
                        &HoldoutScore::default(),
                        &sanity,
                        &HoldoutScore::default(),
                        Baseline::Live,
                        margin,
                    )
                    .reason
                },
            },
        });
    };
    let live_factors = match live {
        Some((version, chunks)) => {
            let (mut items, mut users) = (Vec::new(), Vec::new());
            for index in 0..*chunks {
                let (i, u) = with_retries("reading the live model's vectors", || {
                    target.model_chunk(version, index)
                })
                .await?;
                items.extend(i);
                users.extend(u);
            }
            Some(Factors::from_ids(
                candidate.dim(),
                split.train.user_ids(),
                split.train.item_ids(),
                users.iter().map(|(id, v)| (id.as_str(), v.as_slice())),
                items.iter().map(|(id, v)| (id.as_str(), v.as_slice())),
            ))
        }
        None => None,
    };
    let split = split.clone();
    let candidate = candidate.clone();
    tokio::task::spawn_blocking(move || {
        let scored = gate::score(&split, &candidate, GATE_K, GATE_USERS);
        let popularity = gate::score_popularity(&split, GATE_K, GATE_USERS);
        let (baseline, against) = match &live_factors {
            Some(f) => (gate::score(&split, f, GATE_K, GATE_USERS), Baseline::Live),
            None => (popularity, Baseline::Popularity),
        };
        let decision = gate::decide(&scored, &sanity, &baseline, against, margin);
        Verdict {
            candidate: scored,
            baseline,
            popularity,
            against,
            sanity,
            decision,
        }
    })
    .await
    .context("the quality gate task failed")
}
