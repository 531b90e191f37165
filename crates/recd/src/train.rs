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
//! Cached lists: the session rebuild, the last step, drops every cached recommendation list
//! of the servers (by the admin API with `--target`; on the servers' shared cache tier,
//! invalidation marks + pub/sub, when writing a Redis store directly). Not each vector batch:
//! emptying the cache once per batch made every request a miss while the vectors were being
//! written. Meanwhile cached lists of the old model are served until they expire.

mod remote;

use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use recd_server::Engine;
use recd_server::config::Backend;
use recd_server::engine::{EngineError, shared_tier};
use recd_train::als::{self, AlsModel, AlsParams};
use recd_train::movielens::{Format, read_interactions};
use recd_train::{IdMap, Interaction, Interactions, neutral_warning};

use self::remote::{Failure, LogPage, Remote};
use crate::movielens::open;
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

/// ALS hyper-parameters, shared by `recd train` and `recd eval`.
#[derive(clap::Args, Debug, Clone)]
pub struct AlsArgs {
    /// Latent factors (= the store's vector dimension) [default: the store's dimension; 64 for eval].
    #[arg(long)]
    pub factors: Option<usize>,
    /// ALS iterations.
    #[arg(long, default_value_t = AlsParams::default().iterations)]
    pub iterations: usize,
    /// L2 regularization (lambda).
    #[arg(long, default_value_t = AlsParams::default().regularization)]
    pub regularization: f32,
    /// Confidence slope: c = 1 + alpha * w (w: stars for a rating, 8 for a purchase, ...).
    #[arg(long, default_value_t = AlsParams::default().alpha)]
    pub alpha: f32,
    /// Worker threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Seed of the initial factors.
    #[arg(long, default_value_t = AlsParams::default().seed)]
    pub seed: u64,
}

impl AlsArgs {
    /// The parameters with `factors` resolved.
    pub fn params(&self, factors: usize) -> AlsParams {
        AlsParams {
            factors,
            iterations: self.iterations,
            regularization: self.regularization,
            alpha: self.alpha,
            threads: self.threads,
            seed: self.seed,
            ..AlsParams::default()
        }
    }
}

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
async fn with_retries<T, F, Fut>(what: &'static str, mut call: F) -> Result<T>
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
fn engine_failure(e: EngineError) -> Failure {
    match e {
        EngineError::Unavailable(cause) => Failure::Transient(cause),
        other => Failure::Fatal(anyhow::Error::new(other)),
    }
}

/// Where the trainer reads events and writes vectors.
enum Target {
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

    /// Live catalog items.
    async fn catalog_items(&self) -> Result<u64, Failure> {
        match self {
            Target::Store(engine) => Ok(engine.health().await.map_err(engine_failure)?.items),
            Target::Server(remote, _) => Ok(remote.health().await?.1),
        }
    }
}

/// The (id, vector) rows whose vector is usable; counts the others in `unusable`.
fn usable_rows<'a>(
    ids: &IdMap,
    vector: impl Fn(u32) -> Option<&'a [f32]>,
    unusable: &mut usize,
) -> Vec<(String, Vec<f32>)> {
    let mut rows = Vec::with_capacity(ids.len());
    for (i, id) in ids.ids().iter().enumerate() {
        match vector(i as u32) {
            Some(v) if usable(v) => rows.push((id.clone(), v.to_vec())),
            _ => *unusable += 1,
        }
    }
    rows
}

/// Writes `model`'s item vectors, then its user vectors, to `target`, `batch` at a time.
async fn write_back(target: &Target, model: &AlsModel, batch: usize) -> Result<Written> {
    let batch = batch.max(1);
    let mut w = Written::default();
    let items = usable_rows(&model.item_ids, |i| model.item_vector(i), &mut w.unusable);
    let users = usable_rows(&model.user_ids, |u| model.user_vector(u), &mut w.unusable);
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
async fn connect(url: &str, api_key: Option<&str>) -> Result<(Target, usize)> {
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
async fn open_direct(store_args: &StoreArgs) -> Result<(Target, usize)> {
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
    // The event weights of the config (`[model.session.weights]`): training weighs events
    // exactly as the servers' real-time model does.
    let weights = args.store.load()?.model.session.weights;
    let (target, dim) = match &args.target {
        Some(url) => connect(url, args.api_key.as_deref()).await?,
        None => open_direct(&args.store).await?,
    };
    let factors = args.als.factors.unwrap_or(dim);
    if factors != dim {
        return Err(UsageError(format!(
            "--factors {factors} does not fit {}, whose vectors have {dim} dimensions \
             (schema.vector.dim); train with --factors {dim}, or use a new store",
            target.label()
        ))
        .into());
    }
    let params = args.als.params(factors);
    params.validate().map_err(train_error)?;

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
    let data = Arc::new(data);
    let progress = std::io::stderr().is_terminal();
    let model = {
        let data = data.clone();
        let params = params.clone();
        tokio::task::spawn_blocking(move || {
            als::train_with(&data, &params, |info, _, _| {
                if progress {
                    eprint!(
                        "\rrecd train: iteration {}/{} ({:.2} s)",
                        info.iteration + 1,
                        params.iterations,
                        info.seconds
                    );
                }
            })
        })
        .await
        .context("the training task failed")?
        .map_err(train_error)?
    };
    if progress {
        eprintln!();
    }
    let threads = if params.threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        params.threads
    };
    println!(
        "trained ALS: {factors} factors, {} iterations, lambda {}, alpha {}, {threads} threads, in {:.2} s",
        params.iterations, params.regularization, params.alpha, model.train_seconds
    );

    let batch = args.batch.unwrap_or(VECTOR_BATCH).max(1);
    let t = Instant::now();
    let written = write_back(&target, &model, batch).await?;
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
    Ok(())
}
