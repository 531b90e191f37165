//! `recd import`: items and events from files, straight into the configured store.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use recd_core::{Event, Item, ItemUpsert, ValidationError};
use recd_core::{Metric, Schema, VectorSpec};
use recd_server::config::{Backend, ImportConfig};
use recd_store::Store;
use recd_train::table::{ColumnMap, TableFormat, TableOptions, TimeUnit, describe, read_table};

use crate::serve::{bulk_options, open_store};
use crate::{StoreArgs, UsageError, progress};

/// What to import.
#[derive(clap::Subcommand, Debug)]
pub enum ImportCommand {
    /// Items, one JSON object per line (all validated first; nothing is written if any is bad).
    Items {
        /// The JSON-lines file.
        file: PathBuf,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Events from a CSV, TSV or JSON-lines file, plain or gzip (all validated first;
    /// nothing is written if any is bad). Columns are found by their usual names
    /// (user_id, item_id, timestamp, type, value, ...) or named with --user-col etc.
    Events {
        /// The file (the format is sniffed; gzip is recognised by its bytes).
        file: PathBuf,
        /// csv, tsv or jsonl [default: sniffed from the first line].
        #[arg(long)]
        format: Option<TableFormat>,
        #[command(flatten)]
        table: TableArgs,
        /// Also create every item the file names that the store does not have, as a bare
        /// item (no fields, no vector; `recd train` gives it one), so that its events count
        /// for popularity and training. Existing items are left as they are.
        #[arg(long)]
        create_items: bool,
        /// With --create-items on a new store without a [schema]: the vector dimension of
        /// the schema created (items with no fields; the ALS factors `recd train` writes).
        #[arg(long, default_value_t = 64)]
        factors: usize,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// A GroupLens MovieLens folder: movies as items, ratings as events.
    Movielens(crate::movielens::MovielensArgs),
}

/// How to read an interactions file: format, columns, time unit (`recd import events`,
/// `recd eval`).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct TableArgs {
    /// The user id column: a header name, or a 1-based position for a file without a header.
    #[arg(long, value_name = "COLUMN")]
    pub user_col: Option<String>,
    /// The item id column.
    #[arg(long, value_name = "COLUMN")]
    pub item_col: Option<String>,
    /// The timestamp column (none: file order defines time).
    #[arg(long, value_name = "COLUMN")]
    pub time_col: Option<String>,
    /// The event type column (none: ratings when there is a value column, else views).
    #[arg(long, value_name = "COLUMN")]
    pub type_col: Option<String>,
    /// The value column (stars of a rating, seconds of a dwell).
    #[arg(long, value_name = "COLUMN")]
    pub value_col: Option<String>,
    /// The unit of integer timestamps: ms or s [default: ms].
    #[arg(long, value_name = "UNIT")]
    pub time_unit: Option<TimeUnit>,
}

impl TableArgs {
    /// The reader's options: these flags over the config's `[import]` section.
    pub fn options(
        &self,
        format: Option<TableFormat>,
        config: &ImportConfig,
        now_ms: i64,
    ) -> Result<TableOptions> {
        let from_config = ColumnMap {
            user: config.user_col.clone(),
            item: config.item_col.clone(),
            time: config.time_col.clone(),
            kind: config.type_col.clone(),
            value: config.value_col.clone(),
        };
        let format = match (format, &config.format) {
            (Some(f), _) => Some(f),
            (None, Some(f)) => Some(
                f.parse()
                    .map_err(|e: String| UsageError(format!("[import] format: {e}")))?,
            ),
            (None, None) => None,
        };
        let time_unit = match (&self.time_unit, &config.time_unit) {
            (Some(u), _) => *u,
            (None, Some(u)) => u
                .parse()
                .map_err(|e: String| UsageError(format!("[import] time_unit: {e}")))?,
            (None, None) => TimeUnit::default(),
        };
        Ok(TableOptions {
            format,
            columns: ColumnMap {
                user: self.user_col.clone(),
                item: self.item_col.clone(),
                time: self.time_col.clone(),
                kind: self.type_col.clone(),
                value: self.value_col.clone(),
            }
            .or(&from_config),
            time_unit,
            now_ms,
        })
    }
}

/// Reads an events file and validates every event as `/v1/events` would (types, ids,
/// values, timestamps at most `max_future_ms` ahead); any bad one fails the whole file.
fn read_events(
    file: &Path,
    opts: &TableOptions,
    now_ms: i64,
    max_future_ms: i64,
) -> Result<(Vec<Event>, String)> {
    let table = read_table(file, opts).map_err(crate::train::train_error)?;
    let mut events = Vec::with_capacity(table.interactions.len());
    let mut errors = Vec::new();
    for ((ev, line), rec) in table
        .interactions
        .iter()
        .zip(&table.lines)
        .zip(&table.recommendation_ids)
    {
        let v = serde_json::json!({
            "user_id": ev.user,
            "item_id": ev.item,
            "type": ev.kind.as_str(),
            "value": ev.value,
            "timestamp": ev.timestamp_ms,
            "recommendation_id": rec,
        });
        match Event::from_json(&v, now_ms, max_future_ms) {
            Ok(e) => events.push(e),
            Err(e) => errors.push(format!("{}:{line}: {}", file.display(), e.message)),
        }
    }
    if !errors.is_empty() {
        let shown: Vec<_> = errors.iter().take(20).cloned().collect();
        return Err(UsageError(format!(
            "{} invalid events, nothing imported:\n  {}",
            errors.len(),
            shown.join("\n  ")
        ))
        .into());
    }
    Ok((events, describe(file, &table)))
}

/// A new store without a `[schema]` gets items with a vector of `dim` and no fields (for
/// `--create-items`: the events are all recd knows about the items).
async fn default_schema(config: &mut recd_server::Config, dim: usize) -> Result<()> {
    if config.schema.is_some() {
        return Ok(());
    }
    let fresh = match config.backend {
        Backend::Embedded => !recd_store::embedded::EmbeddedStore::holds_data(&config.data_dir),
        Backend::Redis => {
            recd_store::redis::RedisStore::recorded_schema(&config.redis_url, &config.redis)
                .await
                .with_context(|| format!("connecting to {}", config.redis_url))?
                .is_none()
        }
    };
    if fresh {
        config.schema = Some(Schema {
            vector: VectorSpec {
                dim,
                metric: Metric::Ip,
                quantization: Default::default(),
                partition_by: None,
            },
            fields: Default::default(),
        });
    }
    Ok(())
}

/// Ids looked up per `get_items` call when checking which items exist.
const LOOKUP_BATCH: usize = 1000;

/// Creates the items `events` name that `store` lacks, as bare items (written as a bulk
/// load: time-sized batches, retried); returns how many.
async fn create_missing_items(
    store: &dyn Store,
    events: &[Event],
    opts: &recd_store::bulk::BulkOptions,
) -> Result<usize> {
    let mut seen = std::collections::HashSet::new();
    let ids: Vec<String> = events
        .iter()
        .filter(|e| seen.insert(e.item_id.as_str()))
        .map(|e| e.item_id.clone())
        .collect();
    let mut missing_all = Vec::new();
    for chunk in ids.chunks(LOOKUP_BATCH) {
        let found = store.get_items(chunk).await?;
        let missing: Vec<ItemUpsert> = chunk
            .iter()
            .zip(found)
            .filter(|(_, f)| f.is_none())
            .map(|(id, _)| ItemUpsert {
                item: Item {
                    id: id.clone(),
                    vector: None,
                    fields: Default::default(),
                },
                keep_vector: true,
            })
            .collect();
        missing_all.extend(missing);
    }
    let created = missing_all.len();
    let (opts, p) = progress::bulk(opts, "items created", created);
    recd_store::bulk::upsert_items(store, missing_all, &opts).await?;
    p.finish();
    Ok(created)
}

/// How many of `events` name an item `store` does not have.
async fn unknown_items(store: &dyn Store, events: &[Event]) -> Result<(usize, usize)> {
    let mut seen = std::collections::HashSet::new();
    let ids: Vec<String> = events
        .iter()
        .filter(|e| seen.insert(e.item_id.as_str()))
        .map(|e| e.item_id.clone())
        .collect();
    let mut unknown = std::collections::HashSet::new();
    for chunk in ids.chunks(LOOKUP_BATCH) {
        for (id, found) in chunk.iter().zip(store.get_items(chunk).await?) {
            if found.is_none() {
                unknown.insert(id.as_str());
            }
        }
    }
    let n = events
        .iter()
        .filter(|e| unknown.contains(e.item_id.as_str()))
        .count();
    Ok((unknown.len(), n))
}

fn read_lines(file: &PathBuf) -> Result<Vec<(usize, serde_json::Value)>> {
    // A file that cannot be opened is the caller's mistake (exit 2), not a runtime failure.
    let f = std::fs::File::open(file)
        .map_err(|e| UsageError(format!("cannot open {}: {e}", file.display())))?;
    let mut out = Vec::new();
    for (n, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line.with_context(|| format!("{}: line {}", file.display(), n + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let v = serde_json::from_str(&line).map_err(|e| {
            UsageError(format!("{}: line {}: not JSON: {e}", file.display(), n + 1))
        })?;
        out.push((n + 1, v));
    }
    Ok(out)
}

/// Reads and validates every line with `parse`; any invalid line fails the whole file
/// (nothing is imported), listing the first 20 problems.
fn parse_file<T>(
    file: &PathBuf,
    what: &str,
    parse: impl Fn(&serde_json::Value) -> Result<T, ValidationError>,
) -> Result<Vec<T>> {
    let mut parsed = Vec::new();
    let mut errors = Vec::new();
    for (line, v) in read_lines(file)? {
        match parse(&v) {
            Ok(x) => parsed.push(x),
            Err(e) => errors.push(format!("line {line}: {}", e.message)),
        }
    }
    if !errors.is_empty() {
        let shown: Vec<_> = errors.iter().take(20).cloned().collect();
        return Err(UsageError(format!(
            "{} invalid {what}, nothing imported:\n  {}",
            errors.len(),
            shown.join("\n  ")
        ))
        .into());
    }
    Ok(parsed)
}

/// Refuses a missing input before anything (a data dir, a Redis key) is created.
fn check_input(file: &std::path::Path) -> Result<(), UsageError> {
    if file.is_file() {
        Ok(())
    } else {
        Err(UsageError(format!(
            "{} does not exist or is not a file",
            file.display()
        )))
    }
}

/// `recd import ...`.
pub async fn run(cmd: ImportCommand) -> Result<()> {
    match cmd {
        ImportCommand::Movielens(args) => crate::movielens::run(args).await?,
        ImportCommand::Items { file, store } => {
            check_input(&file)?;
            let config = store.load()?;
            let store = open_store(&config).await?;
            let schema = store.schema().clone();
            let items = parse_file(&file, "items", |v| ItemUpsert::from_json(v, &schema))?;
            let n = items.len();
            // Batches sized by time, retried when Redis is slow; validation above already
            // covers the whole file.
            let (opts, p) = progress::bulk(&bulk_options(&config), "items", n);
            recd_store::bulk::upsert_items(&*store, items, &opts).await?;
            p.finish();
            println!("imported {n} items");
        }
        ImportCommand::Events {
            file,
            format,
            table,
            create_items,
            factors,
            store,
        } => {
            check_input(&file)?;
            let mut config = store.load()?;
            if create_items {
                if !(1..=4096).contains(&factors) {
                    return Err(
                        UsageError(format!("--factors must be 1 to 4096, got {factors}")).into(),
                    );
                }
                default_schema(&mut config, factors).await?;
            }
            let now = recd_server::clock::now_ms();
            let max_future = config.server.max_event_future_ms();
            // the whole file is read and validated before the store is opened
            let opts = table.options(format, &config.import, now)?;
            let (events, what) = read_events(&file, &opts, now, max_future)?;
            eprintln!("recd import: {what}");
            let store = open_store(&config).await?;
            if create_items {
                let n =
                    create_missing_items(store.as_ref(), &events, &bulk_options(&config)).await?;
                println!("created {n} items (no vectors until `recd train`)");
            } else {
                let (items, n) = unknown_items(store.as_ref(), &events).await?;
                if n > 0 {
                    tracing::warn!(
                        items,
                        events = n,
                        "events for items the store does not have"
                    );
                    eprintln!(
                        "recd import: warning: {n} events name {items} items the store does not \
                         have: they count for their users but make no popularity and get no \
                         vectors; import the items first, or pass --create-items"
                    );
                }
            }
            let (opts, p) = progress::bulk(&bulk_options(&config), "events", events.len());
            recd_store::bulk::apply_events(&*store, &events, &opts).await?;
            p.finish();
            println!("imported {} events", events.len());
        }
    }
    Ok(())
}
