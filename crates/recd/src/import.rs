//! `recd import`: items and events from files, straight into the configured store.

use std::io::BufRead;
use std::path::PathBuf;

use anyhow::{Context, Result};
use recd_core::{Event, ItemUpsert, ValidationError};

use crate::serve::{bulk_options, open_store};
use crate::{StoreArgs, UsageError};

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
    /// Events, one JSON object per line (API.md Event).
    Events {
        /// The JSON-lines file.
        file: PathBuf,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// A GroupLens MovieLens folder: movies as items, ratings as events.
    Movielens(crate::movielens::MovielensArgs),
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
            recd_store::bulk::upsert_items(&*store, items, &bulk_options(&config)).await?;
            println!("imported {n} items");
        }
        ImportCommand::Events { file, store } => {
            check_input(&file)?;
            let config = store.load()?;
            let store = open_store(&config).await?;
            let now = recd_server::clock::now_ms();
            let max_future = config.server.max_event_future_ms();
            let events = parse_file(&file, "events", |v| Event::from_json(v, now, max_future))?;
            recd_store::bulk::apply_events(&*store, &events, &bulk_options(&config)).await?;
            println!("imported {} events", events.len());
        }
    }
    Ok(())
}
