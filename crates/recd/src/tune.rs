//! `recd tune`: a grid or random search of ALS settings (factors, regularization, alpha,
//! confidence scaling; iterations by early stopping) on a validation split carved from the
//! given interactions (`recd_train::tune`). Give it training data only (a file, or the
//! `train.csv` of `recd eval --write-split`): it never sees a test half. It prints every
//! trial and the chosen settings as a `[train]` section, which `--write FILE` saves for
//! `recd train --config FILE` and `recd eval --config FILE`. With `--session-mix-split`
//! it also chooses the real-time query's `[model.session.fold_in] session_mix` for those
//! settings (`recd_train::session_mix`: the replay of a validation split made that way)
//! and writes it too, for `recd serve --config FILE`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use recd_server::config::Overrides;
use recd_train::Interactions;
use recd_train::als::AlsParams;
use recd_train::confidence::Scaling;
use recd_train::early_stop::{Validation, choose_iterations};
use recd_train::movielens::{Format, read_interactions_with};
use recd_train::session_mix::{DEFAULT_GRID, MixChoice, MixSearch, choose_session_mix};
use recd_train::split::SplitMethod;
use recd_train::tune::{Grid, Trial, TuneReport, tune};
use recd_train::{IdMap, neutral_warning};

use crate::UsageError;
use crate::train::{AlsArgs, train_error};

/// `recd tune` flags.
#[derive(clap::Args, Debug)]
pub struct TuneArgs {
    /// Training interactions: a file (CSV, TSV or JSON lines, plain or gzip) or a MovieLens
    /// folder. A validation split is carved from them.
    #[arg(long)]
    pub interactions: PathBuf,
    /// Format of the file [default: sniffed; a folder is movielens].
    #[arg(long)]
    pub format: Option<Format>,
    #[command(flatten)]
    pub table: crate::import::TableArgs,
    /// Factors to try, comma-separated.
    #[arg(
        long = "grid-factors",
        value_delimiter = ',',
        default_value = "32,64,128"
    )]
    pub grid_factors: Vec<usize>,
    /// Regularizations (lambda) to try.
    #[arg(
        long = "grid-regularization",
        value_delimiter = ',',
        default_value = "1,5,20,50"
    )]
    pub grid_regularization: Vec<f32>,
    /// Alphas to try.
    #[arg(long = "grid-alpha", value_delimiter = ',', default_value = "0.5,2,10")]
    pub grid_alpha: Vec<f32>,
    /// Confidence scalings to try (linear, log, bm25, tfidf).
    #[arg(
        long = "grid-scaling",
        value_delimiter = ',',
        default_value = "linear,log,bm25"
    )]
    pub grid_scaling: Vec<String>,
    /// Most iterations per trial; early stopping picks the count.
    #[arg(long, default_value_t = Grid::default().max_iterations)]
    pub max_iterations: usize,
    /// Early-stopping patience of each trial (0: run every iteration, keep the best count).
    #[arg(long, default_value_t = Grid::default().patience)]
    pub patience: usize,
    /// Trials drawn at random from the grid (seeded); 0: the whole grid.
    #[arg(long, default_value_t = Grid::default().trials)]
    pub trials: usize,
    /// Seed of the draw and of the validation split.
    #[arg(long, default_value_t = Grid::default().seed)]
    pub tune_seed: u64,
    /// List length of the validation NDCG.
    #[arg(long, default_value_t = 10)]
    pub k: usize,
    /// The settings every trial starts from (threads, seed, the config's `[train]` scaling
    /// parameters), and the reference the winner is compared with.
    #[command(flatten)]
    pub als: AlsArgs,
    /// TOML config whose `[train]` and `[model.session.weights]` apply.
    #[arg(long, env = "RECD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Write the chosen settings as a `[train]` section to this file.
    #[arg(long, value_name = "FILE")]
    pub write: Option<PathBuf>,
    /// Print the report as one JSON document.
    #[arg(long)]
    pub json: bool,
    /// Also choose `[model.session.fold_in] session_mix` for the chosen settings by the
    /// replay of a validation split of the interactions made this way (the split the
    /// serving traffic looks like: time for most live systems); written with --write.
    #[arg(long, value_name = "SPLIT", value_parser = ["random", "time", "leave-last-out"])]
    pub session_mix_split: Option<String>,
}

/// The chosen settings as a `[train]` section (what `--write` saves): only the keys the
/// search set, so that the rest of a config's `[train]` stays as it was; with a chosen
/// session mix, a `[model.session.fold_in]` section with it (and λ, alpha of the fold-in,
/// which must be the trained model's).
fn train_section(chosen: &AlsParams, session_mix: Option<f64>) -> String {
    let mut out = format!(
        "[train]\nfactors = {}\niterations = {}\nregularization = {:?}\nalpha = {:?}\nscaling = \"{}\"\n",
        chosen.factors,
        chosen.iterations,
        chosen.regularization,
        chosen.alpha,
        chosen.confidence.scaling.as_str()
    );
    if let Some(mix) = session_mix {
        out += &format!(
            "\n[model.session.fold_in]\nregularization = {:?}\nalpha = {:?}\nsession_mix = {mix:?}\n",
            f64::from(chosen.regularization),
            f64::from(chosen.alpha),
        );
    }
    out
}

fn line(i: &str, t: &Trial) -> String {
    let p = &t.params;
    format!(
        "{i:<9} {:>7} {:>8} {:>7} {:>8} {:>10} {:>8.4} {:>8.2}",
        p.factors,
        p.regularization,
        p.alpha,
        p.confidence.scaling.as_str(),
        p.iterations,
        t.ndcg,
        t.seconds
    )
}

/// The search, on a thread that may block.
fn search(
    args: &TuneArgs,
    config: &recd_server::Config,
) -> Result<(TuneReport, Trial, Interactions)> {
    let opts = args
        .table
        .options(None, &config.import, recd_server::clock::now_ms())?;
    let loaded =
        read_interactions_with(&args.interactions, args.format, &opts).map_err(train_error)?;
    let weights = &config.model.session.weights;
    if let Some(warning) = neutral_warning(&loaded.interactions, weights) {
        eprintln!("recd tune: warning: {warning}");
    }
    let catalog: IdMap = loaded.movies.iter().map(|m| m.id.clone()).collect();
    let (data, _, _) = Interactions::from_raw_positions(&loaded.interactions, weights, catalog);
    let fraction = args.als.early_stopping(&config.train)?.validation_fraction;
    let validation =
        Validation::carve(&data, fraction, args.tune_seed, args.k).map_err(train_error)?;
    eprintln!(
        "recd tune: {} interactions of {} users on {} items from {}; validation: {} events of {} users",
        data.len(),
        data.n_users(),
        data.n_items(),
        loaded.name,
        validation.split.test.len(),
        validation.users()
    );
    let scaling = args
        .grid_scaling
        .iter()
        .map(|s| Scaling::from_name(s))
        .collect::<Result<Vec<_>, _>>()
        .map_err(train_error)?;
    let grid = Grid {
        factors: args.grid_factors.clone(),
        regularization: args.grid_regularization.clone(),
        alpha: args.grid_alpha.clone(),
        scaling,
        max_iterations: args.max_iterations,
        patience: args.patience,
        trials: args.trials,
        seed: args.tune_seed,
    };
    let factors = args.als.factors(&config.train).unwrap_or(64);
    let mut base = args.als.params(factors, &config.train)?;
    base.iterations = args.max_iterations.max(1);
    // The reference: the configured settings, their iterations chosen the same way.
    let t = Instant::now();
    let stop = choose_iterations(&validation, &base, args.patience).map_err(train_error)?;
    let reference = Trial {
        params: AlsParams {
            iterations: stop.iterations,
            ..base.clone()
        },
        ndcg: stop.ndcg,
        seconds: t.elapsed().as_secs_f64(),
    };
    if !args.json {
        println!(
            "{:<9} {:>7} {:>8} {:>7} {:>8} {:>10} {:>8} {:>8}",
            "trial",
            "factors",
            "lambda",
            "alpha",
            "scaling",
            "iterations",
            format!("NDCG@{}", args.k),
            "seconds"
        );
        println!("{}", line("reference", &reference));
    }
    let mut n = 0;
    let report = tune(&validation, &base, &grid, |trial| {
        n += 1;
        if !args.json {
            println!("{}", line(&n.to_string(), trial));
        }
    })
    .map_err(train_error)?;
    Ok((report, reference, data))
}

/// The session mix for `params` on a validation split of `data` made by `split`.
fn choose_mix(
    data: &Interactions,
    params: &AlsParams,
    split: &str,
    args: &TuneArgs,
    config: &recd_server::Config,
) -> Result<MixChoice> {
    let session = &config.model.session;
    let search = MixSearch {
        grid: DEFAULT_GRID.to_vec(),
        method: SplitMethod::from_name(split, 0.2).map_err(train_error)?,
        seed: args.tune_seed,
        k: args.k,
        capacity: session.recent_capacity,
        share: session.fold_in.share,
        session: session.clone(),
        saturation: config.ranking.session_saturation,
    };
    choose_session_mix(data, params, &search).map_err(train_error)
}

/// `recd tune`.
pub async fn run(args: TuneArgs) -> Result<()> {
    if !args.interactions.exists() {
        return Err(UsageError(format!(
            "--interactions {}: no such file or folder",
            args.interactions.display()
        ))
        .into());
    }
    let config = recd_server::Config::load(args.config.as_deref(), &Overrides::default())?;
    let (args, (report, reference, mix)) = tokio::task::spawn_blocking(move || {
        let (report, reference, data) = search(&args, &config)?;
        // The reference competes too: a grid that holds nothing better keeps the settings
        // in use.
        let best = if reference.ndcg >= report.best().ndcg {
            &reference
        } else {
            report.best()
        };
        let mix = match &args.session_mix_split {
            Some(split) => Some(choose_mix(&data, &best.params, split, &args, &config)?),
            None => None,
        };
        anyhow::Ok((args, (report, reference, mix)))
    })
    .await
    .context("the tuning task failed")??;
    let best = if reference.ndcg >= report.best().ndcg {
        &reference
    } else {
        report.best()
    };
    let section = train_section(&best.params, mix.as_ref().map(|m| m.chosen));
    if args.json {
        let doc = serde_json::json!({
            "trials": report.trials,
            "best": report.best,
            "chosen": best,
            "reference": reference,
            "validation_users": report.users,
            "validation_events": report.validation_events,
            "k": args.k,
            "session_mix": mix,
        });
        println!("{doc}");
    } else {
        let p = &best.params;
        println!(
            "chosen: {} factors, lambda {}, alpha {}, {} scaling, {} iterations: validation NDCG@{} {:.4} ({} the reference's {:.4})",
            p.factors,
            p.regularization,
            p.alpha,
            p.confidence.scaling.as_str(),
            p.iterations,
            args.k,
            best.ndcg,
            if reference.ndcg > 0.0 {
                format!("{:.2}x", best.ndcg / reference.ndcg)
            } else {
                "vs".into()
            },
            reference.ndcg
        );
        if let Some(m) = &mix {
            println!(
                "session mix: {} on a {} validation split ({} events; replay HR@{} by mix: {})",
                m.chosen,
                m.split,
                m.validation_events,
                args.k,
                m.trials
                    .iter()
                    .map(|t| format!("{} {:.4}", t.mix, t.hit_rate))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        print!("{section}");
    }
    if let Some(path) = &args.write {
        std::fs::write(path, &section)
            .map_err(|e| UsageError(format!("--write {}: {e}", path.display())))?;
        eprintln!(
            "recd tune: wrote the chosen [train] settings to {}",
            path.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_written_section_loads_as_the_chosen_settings() {
        let mut chosen = AlsParams {
            factors: 32,
            iterations: 9,
            regularization: 5.0,
            alpha: 2.0,
            ..AlsParams::default()
        };
        chosen.confidence.scaling = Scaling::Log;
        let dir = std::env::temp_dir().join(format!("recd-tune-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("tuned.toml");
        std::fs::write(&file, train_section(&chosen, Some(0.6))).unwrap();
        let config = recd_server::Config::load(Some(&file), &Overrides::default()).unwrap();
        // the chosen session mix is what serving reads, with the fold-in's λ and alpha
        let fold_in = &config.model.session.fold_in;
        assert_eq!(
            (fold_in.session_mix, fold_in.regularization, fold_in.alpha),
            (0.6, 5.0, 2.0)
        );
        let args = AlsArgs::default();
        let factors = args.factors(&config.train).unwrap();
        let loaded = args.params(factors, &config.train).unwrap();
        assert_eq!(
            (loaded.factors, loaded.iterations, loaded.confidence),
            (32, 9, chosen.confidence)
        );
        assert_eq!((loaded.regularization, loaded.alpha), (5.0, 2.0));
        std::fs::remove_dir_all(&dir).ok();
    }
}
