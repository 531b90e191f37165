//! `recd`: the command line of the recommendation engine.
//!
//! Subcommands: `serve`, `demo`, `import`, `bench`, `train`, `train-ranker`, `features`,
//! `model`, `eval`, `tune`, `keys`, `config`.
//! Exit codes: 0 ok, 2 bad usage or bad configuration, 1 runtime failure.

mod admin;
mod allocator;
mod bench;
mod config;
mod demo;
mod eval;
mod eval_new;
mod eval_ranker;
mod import;
mod keys;
mod model;
mod movielens;
mod progress;
mod ranker;
mod ranker_report;
mod serve;
mod synthetic;
mod telemetry;
mod train;
mod tune;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use recd_server::config::{Backend, ConfigError, Overrides};

/// mimalloc instead of glibc malloc: under recommend load glibc's malloc/free (with
/// `malloc_consolidate`) was ~30 % of the server's CPU; see BENCHMARKS.md for the A/B. Its
/// purge delay is recd's (`allocator`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Real-time recommendation engine.
#[derive(Parser, Debug)]
#[command(name = "recd", version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("RECD_GIT_COMMIT"), ")"), about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Flags of every command that opens a store. Only the commands that serve add
/// [`ServeArgs`]' `--listen` and `--insecure`: a flag is offered only where it does something.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct StoreArgs {
    /// TOML config file (schema, limits, model settings).
    #[arg(long, env = "RECD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory of the embedded backend [default: ./recd-data].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Where the serving state lives [default: embedded].
    #[arg(long, value_enum)]
    pub backend: Option<BackendArg>,
    /// Redis URL for `--backend redis`.
    #[arg(long)]
    pub redis_url: Option<String>,
}

/// Flags of the commands that serve HTTP (`serve`, `demo`): the store's, and where to listen.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ServeArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long)]
    pub listen: Option<std::net::SocketAddr>,
    /// Serve without API keys on a non-loopback address (only behind something else that
    /// controls access). Also RECD_INSECURE=true or `insecure = true` in the config.
    #[arg(long)]
    pub insecure: bool,
}

/// `--backend` values.
#[derive(clap::ValueEnum, Debug, Clone, Copy)]
pub enum BackendArg {
    /// In-process, durable in the data dir.
    Embedded,
    /// Redis with the Query Engine.
    Redis,
}

impl StoreArgs {
    /// The flags as the top configuration layer.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            listen: None,
            data_dir: self.data_dir.clone(),
            backend: self.backend.map(|b| match b {
                BackendArg::Embedded => Backend::Embedded,
                BackendArg::Redis => Backend::Redis,
            }),
            redis_url: self.redis_url.clone(),
            insecure: None,
        }
    }

    /// Loads the layered configuration.
    pub fn load(&self) -> Result<recd_server::Config, ConfigError> {
        recd_server::Config::load(self.config.as_deref(), &self.overrides())
    }
}

impl ServeArgs {
    /// The flags as the top configuration layer.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            listen: self.listen,
            // Only a given flag overrides: its absence must not undo RECD_INSECURE.
            insecure: self.insecure.then_some(true),
            ..self.store.overrides()
        }
    }

    /// Loads the layered configuration.
    pub fn load(&self) -> Result<recd_server::Config, ConfigError> {
        recd_server::Config::load(self.store.config.as_deref(), &self.overrides())
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve the HTTP API.
    Serve(ServeArgs),
    /// Generate a synthetic catalog and history, load it, and serve.
    Demo(demo::DemoArgs),
    /// Import items or events into the store.
    #[command(subcommand)]
    Import(import::ImportCommand),
    /// Load-test a running server.
    Bench(bench::BenchArgs),
    /// Train ALS on the event history and write item and user vectors to the store.
    Train(train::TrainArgs),
    /// Train the learned ranker (logistic regression) on the impression log and the event
    /// log, gate it against the fixed blend, and record it as a model version.
    TrainRanker(ranker::TrainRankerArgs),
    /// Online features offline: `recd features export` (point-in-time training rows),
    /// `recd features simulate` (a shop with a known click model).
    #[command(subcommand)]
    Features(ranker::FeaturesCommand),
    /// Model versions: `recd model list`, `recd model activate VERSION` (rollback).
    #[command(subcommand)]
    Model(model::ModelCommand),
    /// Offline metrics and the online replay on a file or a MovieLens folder.
    Eval(eval::EvalArgs),
    /// Search ALS settings (grid or random) on a validation split of training data.
    Tune(tune::TuneArgs),
    /// API keys: `recd keys create --name NAME --scopes read,write`.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Operations: `recd admin reshard-check` (the shards of a Redis deployment).
    #[command(subcommand)]
    Admin(admin::AdminCommand),
    /// Configuration: `recd config defaults` prints every key with its default.
    #[command(subcommand)]
    Config(config::ConfigCommand),
}

fn main() -> ExitCode {
    // First: mimalloc's options may only change while this is the only thread.
    let tuning = allocator::tune();
    let cli = Cli::parse();
    // Held to the end: dropping it flushes the OpenTelemetry export (feature `otel`).
    let _telemetry = telemetry::init();
    tuning.log();
    recd_server::metrics::set_build_info(env!("CARGO_PKG_VERSION"), env!("RECD_GIT_COMMIT"));
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Some(workers) = configured_workers(&cli.command) {
        builder.worker_threads(workers);
    }
    let runtime = match builder.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("recd: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve::run(args).await,
            Command::Demo(args) => demo::run(args).await,
            Command::Import(cmd) => import::run(cmd).await,
            Command::Bench(args) => bench::run(args).await,
            Command::Train(args) => train::run(args).await,
            Command::TrainRanker(args) => ranker::run_train(args).await,
            Command::Features(cmd) => ranker::run_features(cmd).await,
            Command::Model(cmd) => model::run(cmd).await,
            Command::Eval(args) => eval::run(args).await,
            Command::Tune(args) => tune::run(args).await,
            Command::Keys(cmd) => keys::run(cmd),
            Command::Config(cmd) => config::run(cmd),
            Command::Admin(cmd) => admin::run(cmd).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let usage = e
                .chain()
                .any(|c| c.is::<ConfigError>() || c.is::<UsageError>());
            eprintln!("recd: {e:#}");
            ExitCode::from(if usage { 2 } else { 1 })
        }
    }
}

/// `[server] workers` of a command that serves, when set (not 0): the runtime is built
/// before the command runs, so its configuration is read here once more. A configuration
/// that does not load is left to the command, which reports it.
fn configured_workers(command: &Command) -> Option<usize> {
    let serving = match command {
        Command::Serve(args) => args,
        Command::Demo(args) => args.serve_args(),
        _ => return None,
    };
    let workers = serving.load().ok()?.server.workers;
    (workers > 0).then_some(workers)
}

/// Default headers of a client of a recd server: `Authorization: Bearer <key>` when a key
/// is given (`--api-key` / `RECD_API_KEY`).
pub fn api_headers(key: Option<&str>) -> Result<reqwest::header::HeaderMap, UsageError> {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(key) = key {
        let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {key}"))
            .map_err(|_| UsageError("--api-key: not a valid header value".into()))?;
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    Ok(headers)
}

/// A mistake in how recd was called (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every subcommand's flags are well formed (unique names, valid defaults): clap checks
    /// this only when a command is parsed, so a clash would otherwise surface at run time.
    #[test]
    fn the_command_line_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
