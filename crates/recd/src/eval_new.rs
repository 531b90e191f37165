//! `recd eval --new-items`: the new-item evaluation of `recd_train::newitems` (items first
//! seen in the test period; the item fold-in and the content map against no vector) on a
//! file or MovieLens folder. Content comes from the MovieLens catalog (genres as tags, the
//! title as text) or, for other data, from `--items FILE` (JSON lines: `id` and fields; a
//! string or an array of strings is a tag field, `title` is text).

use std::collections::{BTreeMap, HashMap};
use std::io::BufRead;
use std::path::Path;

use anyhow::Result;
use recd_core::{FieldValue, Item};
use recd_train::newitems::{NewItemEvalConfig, NewItemReport, evaluate, table};
use serde_json::Value;

use crate::UsageError;
use crate::eval::EvalArgs;
use crate::train::train_error;

/// Items with content, by id: `--items`, else the MovieLens catalog.
fn content(
    args: &EvalArgs,
    movies: &[recd_train::movielens::Movie],
) -> Result<HashMap<String, Item>> {
    let mut out = HashMap::new();
    if let Some(path) = &args.items {
        let file = std::fs::File::open(path)
            .map_err(|e| UsageError(format!("--items {}: {e}", path.display())))?;
        for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
            let line = line.map_err(|e| UsageError(format!("--items {}: {e}", path.display())))?;
            if line.trim().is_empty() {
                continue;
            }
            let bad = || {
                UsageError(format!(
                    "--items {} line {}: expected a JSON object with an id",
                    path.display(),
                    n + 1
                ))
            };
            let Value::Object(map) = serde_json::from_str(&line).map_err(|_| bad())? else {
                return Err(bad().into());
            };
            let Some(id) = map.get("id").and_then(Value::as_str) else {
                return Err(bad().into());
            };
            let mut fields = BTreeMap::new();
            for (k, v) in &map {
                let value = match (k.as_str(), v) {
                    ("id", _) => continue,
                    ("title", Value::String(s)) => FieldValue::Text(s.clone()),
                    (_, Value::String(s)) => FieldValue::Tags(vec![s.clone()]),
                    (_, Value::Array(a)) => FieldValue::Tags(
                        a.iter()
                            .filter_map(|x| x.as_str().map(str::to_string))
                            .collect(),
                    ),
                    _ => continue,
                };
                fields.insert(k.clone(), value);
            }
            out.insert(
                id.to_string(),
                Item {
                    id: id.to_string(),
                    vector: None,
                    fields,
                },
            );
        }
        return Ok(out);
    }
    for m in movies {
        let mut fields = BTreeMap::new();
        fields.insert("genres".to_string(), FieldValue::Tags(m.genres.clone()));
        fields.insert("title".to_string(), FieldValue::Text(m.title.clone()));
        out.insert(
            m.id.clone(),
            Item {
                id: m.id.clone(),
                vector: None,
                fields,
            },
        );
    }
    Ok(out)
}

/// Runs it (blocking).
pub fn run(args: &EvalArgs, config: &recd_server::Config) -> Result<(String, NewItemReport)> {
    let Some(path) = &args.interactions else {
        return Err(UsageError(
            "--new-items needs --interactions (it makes its own time split)".into(),
        )
        .into());
    };
    let opts = args
        .table
        .options(None, &config.import, recd_server::clock::now_ms())?;
    let loaded = crate::eval::load(Path::new(path), args, &opts)?;
    if !loaded.timed {
        return Err(UsageError(format!(
            "--new-items needs timestamps, and {} has none",
            loaded.name
        ))
        .into());
    }
    let items = content(args, &loaded.movies)?;
    let cfg = NewItemEvalConfig {
        k: args.k,
        test_fraction: args.test_fraction,
        als: args
            .als
            .params(args.als.factors(&config.train).unwrap_or(64), &config.train)?,
        params: config.model.new_items.clone(),
    };
    cfg.als.validate().map_err(train_error)?;
    let report = evaluate(
        &loaded.interactions,
        &items,
        &config.model.session.weights,
        &cfg,
    )
    .map_err(train_error)?;
    Ok((loaded.name, report))
}

/// Prints it.
pub fn print(name: &str, report: &NewItemReport, json: bool) -> Result<()> {
    if json {
        println!(
            "{}",
            serde_json::to_string(
                &serde_json::json!({"dataset": name, "split": "new-items", "new_items": report})
            )?
        );
    } else {
        println!("{name}: new-item split (time cutoff)");
        print!("{}", table(report));
    }
    Ok(())
}
