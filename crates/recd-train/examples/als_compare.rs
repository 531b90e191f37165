//! Peer comparison with `implicit` (driven by `scripts/bench-als.sh`), and a quick
//! `recd eval`-like run on a MovieLens folder.
//!
//! ```text
//! als_compare export --data DIR --out OUT [params]   # split → OUT/train.tsv, OUT/test.tsv
//! als_compare score  --data DIR --out OUT [params]   # recd models + OUT/implicit_recs.tsv → table
//! als_compare eval   --data DIR [params] [--split random|time|leave-last-out]  # JSON report
//! als_compare fit    --data DIR [params]             # ALS fit seconds, `--runs` times
//! params: --factors 64 --iterations 15 --regularization R --alpha A --threads 2 --seed 42 --k 10 --runs 3
//! ```
//! `--train FILE --test FILE` instead of `--data` reads a split written by `recd eval
//! --write-split` (the events of each half, any format `recd eval` reads) and keeps it as
//! it is, so that `implicit` trains and is scored on exactly the split `recd eval`
//! evaluated (`scripts/eval-implicit.sh`); `score --json` then prints one JSON document
//! (NDCG, recall, coverage of recd ALS and of implicit on that split).
//! Both sides train on the same confidence matrix `c = 1 + alpha·w` (implicit gets `c` with
//! its own `alpha = 1`), and implicit's recommendations are scored by this crate's metric
//! code, so the figures differ only by the models.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use recd_train::als::{self, AlsParams};
use recd_train::baselines::{ItemKnn, Popularity};
use recd_train::eval::{EvalConfig, EvalContext, Evaluation};
use recd_train::metrics::MetricsAccumulator;
use recd_train::movielens::{Format, read_interactions};
use recd_train::split::{Split, SplitMethod, from_mask, split};
use recd_train::{ConfidenceWeights, IdMap, Interactions};

struct Args {
    cmd: String,
    data: PathBuf,
    out: PathBuf,
    als: AlsParams,
    seed: u64,
    k: usize,
    runs: usize,
    split: String,
    /// A given split (`--train`, `--test`) instead of splitting `data`.
    given: Option<(PathBuf, PathBuf)>,
    json: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let cmd = it
        .next()
        .ok_or("usage: als_compare export|score|eval --data DIR [--out DIR] ...")?;
    let mut a = Args {
        cmd,
        data: PathBuf::from("../shared/data/ml-latest-small"),
        out: PathBuf::from("/tmp/recd-als-compare"),
        als: AlsParams {
            threads: 2,
            ..AlsParams::default()
        },
        seed: 42,
        k: 10,
        runs: 3,
        split: "random".into(),
        given: None,
        json: false,
    };
    let mut train: Option<PathBuf> = None;
    let mut test: Option<PathBuf> = None;
    while let Some(flag) = it.next() {
        if flag == "--json" {
            a.json = true;
            continue;
        }
        let v = it.next().ok_or(format!("{flag} needs a value"))?;
        let num = |v: &str| {
            v.parse::<f64>()
                .map_err(|_| format!("{flag}: not a number: {v}"))
        };
        match flag.as_str() {
            "--data" => a.data = v.into(),
            "--out" => a.out = v.into(),
            "--factors" => a.als.factors = num(&v)? as usize,
            "--iterations" => a.als.iterations = num(&v)? as usize,
            "--regularization" => a.als.regularization = num(&v)? as f32,
            "--alpha" => a.als.alpha = num(&v)? as f32,
            "--threads" => a.als.threads = num(&v)? as usize,
            "--cg-steps" => a.als.cg_steps = num(&v)? as usize,
            "--seed" => a.seed = num(&v)? as u64,
            "--k" => a.k = num(&v)? as usize,
            "--runs" => a.runs = (num(&v)? as usize).max(1),
            "--split" => a.split = v,
            "--train" => train = Some(v.into()),
            "--test" => test = Some(v.into()),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    a.given = match (train, test) {
        (Some(tr), Some(te)) => Some((tr, te)),
        (None, None) => None,
        _ => return Err("--train and --test go together".into()),
    };
    Ok(a)
}

fn load(a: &Args) -> Result<(Interactions, Split, Vec<Vec<u32>>), String> {
    if let Some((train, test)) = &a.given {
        return load_given(train, test);
    }
    let loaded = read_interactions(&a.data, Some(Format::Movielens)).map_err(|e| e.to_string())?;
    let (data, sets, _) = loaded.to_interactions(&ConfidenceWeights::default());
    let method = SplitMethod::from_name(&a.split, 0.2).map_err(|e| e.to_string())?;
    let s = split(&data, method, a.seed).map_err(|e| e.to_string())?;
    Ok((data, s, sets))
}

/// A split as `recd eval --train F --test F` reads it: both files into one data set (the
/// default event weights, as `recd eval`'s default config), the test half being the
/// second file's events.
fn load_given(train: &Path, test: &Path) -> Result<(Interactions, Split, Vec<Vec<u32>>), String> {
    let read = |p: &Path| read_interactions(p, None).map_err(|e| format!("{}: {e}", p.display()));
    let (mut all, b) = (read(train)?, read(test)?);
    let n = all.interactions.len();
    all.interactions.extend(b.interactions);
    let catalog: IdMap = all.movies.iter().map(|m| m.id.clone()).collect();
    let (data, kept, _) =
        Interactions::from_raw_positions(&all.interactions, &ConfidenceWeights::default(), catalog);
    let is_test: Vec<bool> = kept.iter().map(|&p| p >= n).collect();
    let s = from_mask(&data, &is_test, SplitMethod::Given).map_err(|e| e.to_string())?;
    let sets = vec![Vec::new(); data.n_items()];
    Ok((data, s, sets))
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

fn export(a: &Args) -> Result<(), String> {
    let (_, s, _) = load(a)?;
    std::fs::create_dir_all(&a.out).map_err(|e| e.to_string())?;
    let alpha = a.als.alpha;
    let m = s.train.user_item_matrix().map_values(|w| 1.0 + alpha * w);
    let mut train = format!("# users {} items {}\n", m.rows, m.cols);
    for u in 0..m.rows {
        let (cols, vals) = m.row(u);
        for (c, v) in cols.iter().zip(vals) {
            let _ = writeln!(train, "{u}\t{c}\t{v}");
        }
    }
    write(&a.out.join("train.tsv"), &train)?;
    let ctx = EvalContext::new(&s);
    let mut test = String::new();
    for &u in &ctx.users {
        for i in &ctx.relevant[u as usize] {
            let _ = writeln!(test, "{u}\t{i}");
        }
    }
    write(&a.out.join("test.tsv"), &test)?;
    println!(
        "exported {} train pairs, {} eval users, {} relevant test pairs to {}",
        m.nnz(),
        ctx.users.len(),
        test.lines().count(),
        a.out.display()
    );
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn score(a: &Args) -> Result<(), String> {
    let (_, s, _) = load(a)?;
    let ctx = EvalContext::new(&s);
    let k = a.k;
    // recd ALS: metrics of one fit here; the time is the median of the fits the script
    // interleaved with implicit's (or of `runs` fits here when there are none)
    let model = als::train(&s.train, &a.als).map_err(|e| e.to_string())?;
    let recd = ctx.accumulate(&model, k, None);
    let t = Instant::now();
    let pop = Popularity::fit(&s.train);
    let pop_time = t.elapsed().as_secs_f64();
    let pop_acc = ctx.accumulate(&pop, k, None);
    let knn = ItemKnn::fit(&s.train, 100);
    let knn_acc = ctx.accumulate(&knn, k, None);

    // implicit: recommendations and its own timing / metrics, written by the Python side
    let recs_path = a.out.join("implicit_recs.tsv");
    let text =
        std::fs::read_to_string(&recs_path).map_err(|e| format!("{}: {e}", recs_path.display()))?;
    let mut lists: HashMap<u32, Vec<u32>> = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let mut f = line.split('\t');
        let u: u32 = f.next().and_then(|x| x.parse().ok()).ok_or(format!(
            "{}:{}: bad user",
            recs_path.display(),
            n + 1
        ))?;
        let items: Result<Vec<u32>, _> = f.map(str::parse).collect();
        lists.insert(
            u,
            items.map_err(|_| format!("{}:{}: bad item", recs_path.display(), n + 1))?,
        );
    }
    let imp = ctx.accumulate_lists(k, None, |u| lists.get(&u).cloned().unwrap_or_default());
    let meta_path = a.out.join("implicit.json");
    let meta: serde_json::Value = std::fs::read_to_string(&meta_path)
        .map_err(|e| e.to_string())
        .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
        .map_err(|e| format!("{}: {e}", meta_path.display()))?;
    let imp_time = meta["fit_seconds_median"].as_f64().unwrap_or(f64::NAN);
    let recd_time = match meta["recd_fit_seconds_median"].as_f64() {
        Some(t) => t,
        None => {
            let mut times = Vec::new();
            for _ in 0..a.runs {
                let t = Instant::now();
                als::train(&s.train, &a.als).map_err(|e| e.to_string())?;
                times.push(t.elapsed().as_secs_f64());
            }
            median(times)
        }
    };

    if a.json {
        let m = |acc: &MetricsAccumulator, secs: f64| {
            let m = acc.finish();
            serde_json::json!({"ndcg": m.ndcg, "recall": m.recall, "coverage": m.coverage,
                "precision": m.precision, "hit_rate": m.hit_rate, "users": m.users, "fit_seconds": secs})
        };
        let doc = serde_json::json!({
            "users": ctx.users.len(),
            "items": s.train.n_items(),
            "train_events": s.train.len(),
            "test_events": s.test.len(),
            "params": {"factors": a.als.factors, "iterations": a.als.iterations,
                "regularization": a.als.regularization, "alpha": a.als.alpha,
                "cg_steps": a.als.cg_steps, "threads": a.als.threads},
            "implicit_version": meta["implicit_version"],
            "recd_als": m(&recd, recd_time),
            "implicit": m(&imp, imp_time),
            "popularity": m(&pop_acc, pop_time),
            "implicit_eval": meta["implicit_eval"],
        });
        println!("{doc}");
        return Ok(());
    }
    let row = |name: &str, secs: f64, acc: &MetricsAccumulator| {
        let m = acc.finish();
        format!(
            "| {name:<10} | {secs:>9.3} | {:.4} | {:.4} | {:.4} | {:.4} | {:.4} |",
            m.ndcg,
            m.precision,
            acc.implicit_precision(),
            m.map,
            m.recall
        )
    };
    println!(
        "ml: {} | split {} seed {} | {} eval users | factors {} iterations {} reg {} alpha {} cg_steps {} threads {}",
        a.data.display(),
        a.split,
        a.seed,
        ctx.users.len(),
        a.als.factors,
        a.als.iterations,
        a.als.regularization,
        a.als.alpha,
        a.als.cg_steps,
        a.als.threads
    );
    println!("| model      | train s   | NDCG@{k} | P@{k}   | implicit-P@{k} | MAP@{k} | R@{k} |");
    println!("|------------|-----------|---------|--------|--------|--------|--------|");
    println!("{}", row("recd ALS", recd_time, &recd));
    println!("{}", row("implicit", imp_time, &imp));
    println!("{}", row("popularity", pop_time, &pop_acc));
    println!("{}", row("item-kNN", knn.train_seconds, &knn_acc));
    let (r, i, p) = (recd.finish(), imp.finish(), pop_acc.finish());
    // implicit's own evaluation of its model must agree with our metric code on its lists
    if let (Some(nd), Some(pr)) = (
        meta["implicit_eval"]["ndcg"].as_f64(),
        meta["implicit_eval"]["precision"].as_f64(),
    ) {
        let ok = (nd - i.ndcg).abs() < 1e-6 && (pr - imp.implicit_precision()).abs() < 1e-6;
        println!(
            "metric check: implicit.evaluation ndcg {nd:.6} / precision {pr:.6} vs ours on its lists {:.6} / {:.6}: {}",
            i.ndcg,
            imp.implicit_precision(),
            if ok { "identical" } else { "DIFFERENT" }
        );
    }
    println!(
        "targets: train time recd/implicit = {:.2} (≤ 1); NDCG recd/implicit = {:.4} (≥ 0.99); ALS/popularity NDCG = {:.2} (≥ 1.5)",
        recd_time / imp_time,
        r.ndcg / i.ndcg,
        r.ndcg / p.ndcg
    );
    Ok(())
}

/// Train ALS `runs` times on the split's train half and print each fit's seconds (the
/// bench script interleaves this with implicit's fits so both see the same machine load).
fn fit(a: &Args) -> Result<(), String> {
    let (_, s, _) = load(a)?;
    for _ in 0..a.runs {
        let t = Instant::now();
        let m = als::train(&s.train, &a.als).map_err(|e| e.to_string())?;
        println!(
            "fit_seconds {:.4} (model {}x{})",
            t.elapsed().as_secs_f64(),
            m.n_items(),
            m.factors
        );
    }
    Ok(())
}

fn eval(a: &Args) -> Result<(), String> {
    let (data, _, sets) = load(a)?;
    let config = EvalConfig {
        k: a.k,
        split: SplitMethod::from_name(&a.split, 0.2).map_err(|e| e.to_string())?,
        seed: a.seed,
        als: a.als.clone(),
        ..EvalConfig::default()
    };
    let name = a
        .data
        .file_name()
        .map_or("data".into(), |n| n.to_string_lossy().into_owned());
    let t = Instant::now();
    let ev = Evaluation::prepare(&data, &name, config, Some(sets)).map_err(|e| e.to_string())?;
    let report = ev.run_builtin();
    eprintln!("eval took {:.2}s", t.elapsed().as_secs_f64());
    println!(
        "{}",
        serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?
    );
    Ok(())
}

fn main() -> ExitCode {
    let result = parse_args().and_then(|a| match a.cmd.as_str() {
        "export" => export(&a),
        "score" => score(&a),
        "eval" => eval(&a),
        "fit" => fit(&a),
        other => Err(format!("unknown command {other} (export, score, eval)")),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("als_compare: {e}");
            ExitCode::from(2)
        }
    }
}
