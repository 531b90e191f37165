//! `recd features export|simulate` and `recd train-ranker`: the learned ranker's offline
//! side, over the store of `--data-dir` / `--backend` (its schema, items, event log and
//! model registry) and an impression log (`[features] impression_log`, JSON lines of
//! served lists).

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use recd_core::features::{FeatureSet, LoggedList};
use recd_core::{Event, Filter, Item, ItemUpsert};
use recd_server::Engine;
use recd_server::engine::models::{ModelInfo, now_rfc3339};
use recd_server::features::RankerSettings;
use recd_store::Store;
use recd_train::ctr::export::{Row, export};
use recd_train::ctr::fit::FitParams;
use recd_train::ctr::sim::{SimParams, simulate};
use serde_json::json;

use crate::serve::{bulk_options, open_store};
use crate::train::train_error;
use crate::{StoreArgs, UsageError};

/// `recd features ...`.
#[derive(Subcommand, Debug)]
pub enum FeaturesCommand {
    /// Write point-in-time training rows (JSON lines): each logged item's features as
    /// they were when its list was served, and whether it was clicked.
    Export(ExportArgs),
    /// Load a simulated shop with a known click model (users prefer categories they
    /// clicked recently, with position bias) into the store, and write its impression log.
    Simulate(SimulateArgs),
}

/// Where the logs come from.
#[derive(Args, Debug)]
pub struct LogArgs {
    /// The impression log (JSON lines of served lists) [default: the configured
    /// `features.impression_log`].
    #[arg(long)]
    pub impressions: Option<PathBuf>,
    /// A click credits the latest list that showed the item to the user this long before
    /// (clicks citing their list's recommendation_id credit that list).
    #[arg(long, default_value_t = 3600)]
    pub attribution_seconds: i64,
    #[command(flatten)]
    pub store: StoreArgs,
}

/// `recd features export`.
#[derive(Args, Debug)]
pub struct ExportArgs {
    #[command(flatten)]
    pub logs: LogArgs,
    /// Write here [default: stdout].
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// `recd features simulate`.
#[derive(Args, Debug)]
pub struct SimulateArgs {
    /// Simulated users.
    #[arg(long, default_value_t = 300)]
    pub users: usize,
    /// Items.
    #[arg(long, default_value_t = 800)]
    pub items: usize,
    /// Days of history (ending now).
    #[arg(long, default_value_t = 8)]
    pub days: usize,
    /// Seed.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Write the impression log here [default: the configured `features.impression_log`,
    /// else impressions.jsonl in the data dir].
    #[arg(long)]
    pub impressions: Option<PathBuf>,
    #[command(flatten)]
    pub store: StoreArgs,
}

/// `recd train-ranker`.
#[derive(Args, Debug)]
pub struct TrainRankerArgs {
    #[command(flatten)]
    pub logs: LogArgs,
    /// The latest share of the lists held out to judge the ranker on.
    #[arg(long, default_value_t = 0.2)]
    pub test_fraction: f64,
    /// L2 penalty per row on the standardized weights.
    #[arg(long, default_value_t = 1e-4)]
    pub l2: f64,
    /// Quality gate: the new ranker's per-list AUC on the held-out lists may be at most
    /// this much below the best of the fixed blend's and the live ranker's.
    #[arg(long, default_value_t = 0.0)]
    pub gate_margin: f64,
    /// Record the ranker as accepted even if it fails the gate.
    #[arg(long)]
    pub force: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The impression log path: the flag, else the configured one (under the data dir).
fn log_path(flag: Option<&Path>, config: &recd_server::Config) -> Option<PathBuf> {
    let p = flag
        .map(Path::to_path_buf)
        .or_else(|| config.features.impression_log.clone())?;
    Some(if p.is_absolute() || flag.is_some() {
        p
    } else {
        config.data_dir.join(p)
    })
}

/// Reads the impression log; a malformed line is a usage error naming it.
fn read_lists(path: &Path) -> Result<Vec<LoggedList>> {
    let file = std::fs::File::open(path)
        .map_err(|e| UsageError(format!("--impressions {}: {e}", path.display())))?;
    let mut out = Vec::new();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let list: LoggedList = serde_json::from_str(&line)
            .map_err(|e| UsageError(format!("{}:{}: {e}", path.display(), n + 1)))?;
        out.push(list);
    }
    Ok(out)
}

/// Every item of the store, by id.
async fn catalog(store: &dyn Store) -> Result<HashMap<String, Item>> {
    let mut out = HashMap::new();
    let mut after: Option<String> = None;
    loop {
        let page = store
            .list_items(after.as_deref(), 1000, &Filter::all())
            .await?;
        for it in page.entries {
            out.insert(it.id.clone(), (*it).clone());
        }
        match page.next {
            Some(n) => after = Some(n),
            None => return Ok(out),
        }
    }
}

/// The rows of the store's logs, and the feature set they were computed with.
async fn rows(
    logs: &LogArgs,
) -> Result<(recd_server::Config, Arc<dyn Store>, FeatureSet, Vec<Row>)> {
    let config = logs.store.load()?;
    let path = log_path(logs.impressions.as_deref(), &config).ok_or_else(|| {
        UsageError(
            "no impression log: give --impressions FILE or set [features] impression_log".into(),
        )
    })?;
    let lists = read_lists(&path)?;
    let store = open_store(&config).await?;
    let set = config
        .features
        .feature_set(store.schema())
        .map_err(|e| UsageError(e.message))?;
    let items = catalog(store.as_ref()).await?;
    let events: Vec<Event> = store.events().await?;
    let rows = export(
        &set,
        &items,
        &events,
        &lists,
        logs.attribution_seconds.saturating_mul(1000),
    );
    Ok((config, store, set, rows))
}

/// `recd features ...`.
pub async fn run_features(cmd: FeaturesCommand) -> Result<()> {
    match cmd {
        FeaturesCommand::Export(args) => {
            let (_, _, set, rows) = rows(&args.logs).await?;
            let names: Vec<&str> = set.names().collect();
            let mut out: Box<dyn Write> = match &args.out {
                Some(p) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(p)
                        .with_context(|| format!("creating {}", p.display()))?,
                )),
                None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
            };
            for r in &rows {
                let features: serde_json::Map<String, serde_json::Value> = names
                    .iter()
                    .zip(&r.features)
                    .map(|(n, v)| (n.to_string(), json!(v)))
                    .collect();
                let line = json!({
                    "at_ms": r.at_ms, "recommendation_id": r.recommendation_id,
                    "user_id": r.user_id, "item_id": r.item_id, "position": r.position,
                    "label": r.label, "served_score": r.served_score,
                    "features": features, "signals": r.signals,
                });
                writeln!(out, "{line}")?;
            }
            out.flush()?;
            let clicks = rows.iter().filter(|r| r.label).count();
            eprintln!(
                "recd: {} rows ({clicks} clicked), {} features",
                rows.len(),
                names.len()
            );
            Ok(())
        }
        FeaturesCommand::Simulate(args) => simulate_into(args).await,
    }
}

async fn simulate_into(args: SimulateArgs) -> Result<()> {
    let mut config = args.store.load()?;
    let day = 86_400_000;
    let sim = simulate(&SimParams {
        users: args.users,
        items: args.items,
        days: args.days,
        seed: args.seed,
        start_ms: now_ms() - args.days as i64 * day,
        ..SimParams::default()
    });
    if config.schema.is_none() {
        config.schema = Some(sim.schema.clone());
    }
    let store = open_store(&config).await?;
    if store.schema().fields != sim.schema.fields {
        return Err(UsageError(
            "the store's schema is not the simulation's (category tag, popularity numeric): use a new data dir or prefix".into(),
        )
        .into());
    }
    let opts = bulk_options(&config);
    let ups: Vec<ItemUpsert> = sim
        .items
        .iter()
        .map(|i| ItemUpsert {
            item: i.clone(),
            keep_vector: false,
        })
        .collect();
    recd_store::bulk::upsert_items(store.as_ref(), ups, &opts).await?;
    let mut events = sim.events.clone();
    events.sort_by_key(|e| e.timestamp_ms);
    recd_store::bulk::apply_events(store.as_ref(), &events, &opts).await?;
    let path = log_path(args.impressions.as_deref(), &config)
        .unwrap_or_else(|| config.data_dir.join("impressions.jsonl"));
    let mut w = std::io::BufWriter::new(
        std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?,
    );
    for l in &sim.lists {
        serde_json::to_writer(&mut w, l)?;
        writeln!(w)?;
    }
    w.flush()?;
    eprintln!(
        "recd: {} items, {} events, {} lists in {}",
        sim.items.len(),
        events.len(),
        sim.lists.len(),
        path.display()
    );
    Ok(())
}

/// `recd train-ranker`.
pub async fn run_train(args: TrainRankerArgs) -> Result<()> {
    if !(0.0..1.0).contains(&args.test_fraction)
        || !args.l2.is_finite()
        || args.l2 < 0.0
        || !args.gate_margin.is_finite()
    {
        return Err(UsageError(
            "--test-fraction must be in [0, 1), --l2 at least 0, --gate-margin finite".into(),
        )
        .into());
    }
    let (config, store, set, rows) = rows(&args.logs).await?;
    // The deployment's strategies (configured and stored): retention keeps the rankers
    // they pin.
    let experiments = crate::serve::experiments(&config).await?;
    let mut serving = config.clone();
    // The engine only records the version; it serves nothing.
    serving.features.enabled = true;
    serving.features.impression_log = None;
    let engine = Engine::new(Arc::clone(&store), serving, None, None, experiments);
    engine.refresh_rankers().await?;
    let live = engine
        .features()
        .and_then(|f| f.ranker("latest"))
        .map(|(_, r)| r);
    let params = FitParams {
        l2: args.l2,
        ..FitParams::default()
    };
    let started = std::time::Instant::now();
    let (ranker, report) = recd_train::ctr::train(
        &set,
        &rows,
        &params,
        args.test_fraction,
        live.as_deref(),
        args.gate_margin,
    )
    .map_err(train_error)?;
    let seconds = started.elapsed().as_secs_f64();
    let accepted = report.passed || args.force;
    let version = engine.new_model_version().await?;
    let settings = RankerSettings {
        kind: "ranker".into(),
        features: set.fingerprint().to_string(),
        ranker,
        fit: json!({"l2": args.l2, "test_fraction": args.test_fraction, "attribution_seconds": args.logs.attribution_seconds, "seconds": seconds}),
    };
    let info = ModelInfo {
        created_at: now_rfc3339(),
        accepted,
        settings: serde_json::to_value(&settings)?,
        gate: serde_json::to_value(&report)?,
        counts: json!({"rows": rows.len(), "clicks": rows.iter().filter(|r| r.label).count()}),
    };
    engine.record_model(&version, 0, info).await?;
    if args.json {
        println!(
            "{}",
            json!({"version": version, "accepted": accepted, "report": report, "seconds": seconds})
        );
    } else {
        let f = |q: Option<f64>| q.map_or("-".to_string(), |v| format!("{v:.4}"));
        println!(
            "ranker {version}: {} ({} rows trained, {} held out, {:.2} s)",
            if accepted {
                "accepted"
            } else {
                "rejected by the gate"
            },
            report.train_rows,
            report.test_rows,
            seconds
        );
        println!("held out        AUC     per-list AUC");
        println!(
            "learned         {}  {}",
            f(report.learned.auc),
            f(report.learned.gauc)
        );
        println!(
            "fixed blend     {}  {}",
            f(report.blend.auc),
            f(report.blend.gauc)
        );
        if let Some(l) = report.live {
            println!("live ranker     {}  {}", f(l.auc), f(l.gauc));
        }
        println!(
            "serve it with a strategy: {{\"ranking\": {{\"ranker\": \"{version}\"}}}} (or \"latest\")"
        );
    }
    if !accepted {
        return Err(anyhow::anyhow!(
            "ranker {version} failed the quality gate (recorded, not accepted)"
        ));
    }
    Ok(())
}
