//! Writes the synthetic shop log of `recd_train::shop` as CSV for `recd eval --interactions`
//! (or `recd import events`): `user_id,item_id,type,timestamp` (epoch ms), in time order.
//!
//! ```text
//! shop_sessions --out shop.csv [--users 6000 --items 4000 --categories 40 --days 180
//!                               --sessions 6 --seed 1] [--items-out items.jsonl]
//! ```
//!
//! `--items-out` also writes each product's content as JSON lines (`{"id":"p7","category":"k7"}`),
//! for `recd eval --new-items --items`.

use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use recd_train::shop::ShopSpec;

fn run() -> Result<(), String> {
    let mut spec = ShopSpec::default();
    let mut out: Option<PathBuf> = None;
    let mut items_out: Option<PathBuf> = None;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let v = it.next().ok_or(format!("{flag} needs a value"))?;
        let num = |v: &str| {
            v.parse::<f64>()
                .map_err(|_| format!("{flag}: not a number: {v}"))
        };
        match flag.as_str() {
            "--out" => out = Some(v.into()),
            "--items-out" => items_out = Some(v.into()),
            "--users" => spec.users = num(&v)? as usize,
            "--items" => spec.items = num(&v)? as usize,
            "--categories" => spec.categories = num(&v)? as usize,
            "--days" => spec.days = num(&v)? as u32,
            "--sessions" => spec.mean_sessions = num(&v)?,
            "--seed" => spec.seed = num(&v)? as u64,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    let out = out.ok_or("--out FILE is required")?;
    let events = spec.generate();
    let file = std::fs::File::create(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let mut w = BufWriter::new(file);
    let io = |e: std::io::Error| format!("{}: {e}", out.display());
    writeln!(w, "user_id,item_id,type,timestamp").map_err(io)?;
    for e in &events {
        writeln!(
            w,
            "{},{},{},{}",
            e.user,
            e.item,
            e.kind.as_str(),
            e.timestamp_ms
        )
        .map_err(io)?;
    }
    w.flush().map_err(io)?;
    if let Some(path) = items_out {
        let io = |e: std::io::Error| format!("{}: {e}", path.display());
        let mut w = BufWriter::new(std::fs::File::create(&path).map_err(io)?);
        for i in 0..spec.items.max(1) {
            writeln!(
                w,
                r#"{{"id":"p{i}","category":"k{}"}}"#,
                spec.category_of(i)
            )
            .map_err(io)?;
        }
        w.flush().map_err(io)?;
    }
    eprintln!(
        "shop_sessions: {} events to {}",
        events.len(),
        out.display()
    );
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shop_sessions: {e}");
            ExitCode::from(2)
        }
    }
}
