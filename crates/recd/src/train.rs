//! `recd train`: implicit ALS on the stored event log (or an `--interactions` file), then
//! the item vectors and the users' long-term vectors are written back to the store in
//! batches, while the store keeps serving.
//!
//! Who writes: the process that trains opens the store itself.
//! - `--backend redis`: the store is shared, so `recd train` runs next to any number of
//!   `recd serve` processes; each batch is one atomic write and requests keep being answered
//!   (old vectors until a batch lands, new ones after). Batches are small (20 vectors) there,
//!   since Redis serves nobody else while one batch's script runs.
//! - `--backend embedded` (default): a data dir has one owner process. `recd train` opens it
//!   itself, so it runs while no server holds it (stop `recd serve`, train, start it again);
//!   against a running server it stops with a message saying so. Within one process the
//!   embedded store is safe to write while it serves (tested in the e2e suite).
//!
//! Items without interactions get no vector and stay with the popular source.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use recd_server::config::Backend;
use recd_store::{Store, StoreError, StoreResult};
use recd_train::als::{self, AlsModel, AlsParams};
use recd_train::movielens::{Format, read_interactions};
use recd_train::{ConfidenceWeights, IdMap, Interaction, Interactions, Kind};

use crate::movielens::{open, schema as movielens_schema};
use crate::{StoreArgs, UsageError};

/// Vectors per write on the embedded backend (one durable commit each).
const EMBEDDED_BATCH: usize = 1000;
/// Vectors per write on Redis: one batch is one Lua script, during which Redis serves no one
/// else while RediSearch indexes the vectors (~4 ms each on a loaded 2-core machine); 20
/// keeps that far under the 1 s response timeout of the servers' requests (batches of 1000
/// made concurrent requests fail, 100 still did on ml-latest-small).
const REDIS_BATCH: usize = 20;

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
    /// Vectors per write [default: 1000 embedded, 20 redis: a Redis batch runs as one
    /// script that blocks Redis while RediSearch indexes it, a few ms per vector].
    #[arg(long)]
    pub batch: Option<usize>,
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
pub fn interaction(e: &recd_core::Event) -> Option<Interaction> {
    let kind: Kind = e.kind.as_str().parse().ok()?;
    Some(Interaction {
        user: e.user_id.clone(),
        item: e.item_id.clone(),
        kind,
        value: e.value,
        timestamp_ms: e.timestamp_ms,
    })
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

/// `write` (one batch), tried again after a pause when the store was unavailable.
async fn with_retries<F, Fut>(what: &'static str, mut write: F) -> Result<usize>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = StoreResult<usize>>,
{
    let mut attempt = 0;
    loop {
        match write().await {
            Ok(n) => return Ok(n),
            Err(StoreError::Unavailable(cause)) if attempt < RETRIES => {
                attempt += 1;
                tracing::warn!(attempt, %cause, "{what}: the store is unavailable, retrying");
                tokio::time::sleep(Duration::from_millis(250 << attempt)).await;
            }
            Err(e) => return Err(anyhow::Error::new(e).context(what)),
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

/// Writes `model`'s item vectors and user vectors into `store`, `batch` at a time.
pub async fn write_back(store: &dyn Store, model: &AlsModel, batch: usize) -> Result<Written> {
    let batch = batch.max(1);
    let mut w = Written::default();
    let items = usable_rows(&model.item_ids, |i| model.item_vector(i), &mut w.unusable);
    let users = usable_rows(&model.user_ids, |u| model.user_vector(u), &mut w.unusable);
    for chunk in items.chunks(batch) {
        let done = with_retries("writing item vectors", || {
            store.set_item_vectors(chunk.to_vec())
        })
        .await?;
        w.items += done;
        w.unknown_items += chunk.len() - done.min(chunk.len());
    }
    for chunk in users.chunks(batch) {
        w.users += with_retries("writing user vectors", || {
            store.set_user_vectors(chunk.to_vec())
        })
        .await?;
    }
    Ok(w)
}

/// `recd train`.
pub async fn run(args: TrainArgs) -> Result<()> {
    let mut config = args.store.load()?;
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
    if config.schema.is_none() && config.backend == Backend::Redis {
        config.schema = Some(movielens_schema(args.als.factors.unwrap_or(64)));
    }
    let store = open(&config).await?;
    let dim = store.schema().vector.dim;
    let factors = args.als.factors.unwrap_or(dim);
    if factors != dim {
        return Err(UsageError(format!(
            "--factors {factors} does not fit the store, whose vectors have {dim} dimensions \
             (schema.vector.dim); train with --factors {dim}, or use a new store"
        ))
        .into());
    }
    let params = args.als.params(factors);
    params.validate().map_err(train_error)?;

    let t = Instant::now();
    let (raw, source) = match &args.interactions {
        Some(path) => {
            let loaded = read_interactions(path, args.format).map_err(train_error)?;
            (loaded.interactions, path.display().to_string())
        }
        None => {
            let events = store.events().await.context("reading the event log")?;
            let raw: Vec<Interaction> = events.iter().filter_map(interaction).collect();
            (raw, format!("the {} store's event log", store.backend()))
        }
    };
    let (data, skipped) = Interactions::from_raw(raw, &ConfidenceWeights::default());
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

    let batch = args
        .batch
        .unwrap_or(match config.backend {
            Backend::Embedded => EMBEDDED_BATCH,
            Backend::Redis => REDIS_BATCH,
        })
        .max(1);
    let t = Instant::now();
    let written = write_back(store.as_ref(), &model, batch).await?;
    let counts = store.counts().await?;
    println!(
        "wrote {} item vectors and {} user vectors to the {} store in {:.2} s \
         (batches of {}; {} trained items are not in the catalog; {} zero vectors left out); \
         {} of {} catalog items have no interactions and no new vector (popular source)",
        written.items,
        written.users,
        store.backend(),
        t.elapsed().as_secs_f64(),
        batch,
        written.unknown_items,
        written.unusable,
        counts.items.saturating_sub(written.items as u64),
        counts.items
    );
    Ok(())
}
