//! ALS at scale against `implicit` (driven by `scripts/bench-als-scale.sh`): a synthetic
//! power-law matrix of any size written where Python can read it, and timed fits on it.
//!
//! ```text
//! als_scale write --interactions N --out DIR [--seed 1 --alpha 0.5]
//!     # DIR/indptr.u64, DIR/indices.u32, DIR/data.f32 (little-endian; data = c = 1 + alpha·w)
//!     # and DIR/meta.json {"rows","cols","nnz","interactions"}
//! als_scale fit --dir DIR [--factors 64 --iterations 15 --regularization 20 --cg-steps 3
//!                          --threads 2 --seed 42]
//!     # prints {"seconds": …} (the fit alone, as implicit's is timed) and writes
//!     # DIR/recd_user_factors.f32 and DIR/recd_item_factors.f32 for the loss comparison
//! ```

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use recd_train::Csr;
use recd_train::als::{self, AlsParams};
use recd_train::synthetic::PowerLawSpec;

struct Args {
    cmd: String,
    dir: PathBuf,
    interactions: usize,
    seed: u64,
    alpha: f32,
    als: AlsParams,
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let cmd = it.next().ok_or("usage: als_scale write|fit ...")?;
    let mut a = Args {
        cmd,
        dir: PathBuf::from("/tmp/recd-als-scale"),
        interactions: 1_000_000,
        seed: 1,
        alpha: 0.5,
        als: AlsParams {
            threads: 2,
            ..AlsParams::default()
        },
    };
    while let Some(flag) = it.next() {
        let v = it.next().ok_or(format!("{flag} needs a value"))?;
        let num = |v: &str| {
            v.parse::<f64>()
                .map_err(|_| format!("{flag}: not a number: {v}"))
        };
        match flag.as_str() {
            "--out" | "--dir" => a.dir = v.into(),
            "--interactions" => a.interactions = num(&v)? as usize,
            "--alpha" => a.alpha = num(&v)? as f32,
            "--factors" => a.als.factors = num(&v)? as usize,
            "--iterations" => a.als.iterations = num(&v)? as usize,
            "--regularization" => a.als.regularization = num(&v)? as f32,
            "--cg-steps" => a.als.cg_steps = num(&v)? as usize,
            "--threads" => a.als.threads = num(&v)? as usize,
            "--seed" => {
                a.seed = num(&v)? as u64;
                a.als.seed = a.seed;
            }
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(a)
}

fn put(path: &Path, bytes: Vec<u8>) -> Result<(), String> {
    std::fs::write(path, bytes).map_err(|e| format!("{}: {e}", path.display()))
}

fn get(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn f32s_le(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn write(a: &Args) -> Result<(), String> {
    let t = Instant::now();
    let spec = PowerLawSpec::scaled(a.interactions, a.seed);
    let alpha = a.alpha;
    let m = spec.generate().map_values(|w| 1.0 + alpha * w);
    std::fs::create_dir_all(&a.dir).map_err(|e| e.to_string())?;
    put(
        &a.dir.join("indptr.u64"),
        m.indptr
            .iter()
            .flat_map(|&x| (x as u64).to_le_bytes())
            .collect(),
    )?;
    put(
        &a.dir.join("indices.u32"),
        m.indices.iter().flat_map(|x| x.to_le_bytes()).collect(),
    )?;
    put(&a.dir.join("data.f32"), f32s_le(&m.data))?;
    let meta = serde_json::json!({
        "rows": m.rows, "cols": m.cols, "nnz": m.nnz(), "interactions": a.interactions,
        "seed": a.seed, "alpha": alpha,
    });
    put(&a.dir.join("meta.json"), meta.to_string().into_bytes())?;
    eprintln!(
        "als_scale: {} draws -> {} x {} with {} stored values in {:.1} s",
        a.interactions,
        m.rows,
        m.cols,
        m.nnz(),
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

fn read(dir: &Path) -> Result<Csr, String> {
    let meta: serde_json::Value =
        serde_json::from_slice(&get(&dir.join("meta.json"))?).map_err(|e| e.to_string())?;
    let dim = |k: &str| {
        meta[k]
            .as_u64()
            .map(|v| v as usize)
            .ok_or(format!("meta: no {k}"))
    };
    let (rows, cols) = (dim("rows")?, dim("cols")?);
    let indptr: Vec<usize> = get(&dir.join("indptr.u64"))?
        .chunks_exact(8)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default()) as usize)
        .collect();
    let indices: Vec<u32> = get(&dir.join("indices.u32"))?
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes(b.try_into().unwrap_or_default()))
        .collect();
    let data: Vec<f32> = get(&dir.join("data.f32"))?
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap_or_default()))
        .collect();
    if indptr.len() != rows + 1 || indices.len() != data.len() || indptr[rows] != data.len() {
        return Err(format!("{}: inconsistent matrix files", dir.display()));
    }
    Ok(Csr {
        rows,
        cols,
        indptr,
        indices,
        data,
    })
}

fn fit(a: &Args) -> Result<(), String> {
    let cui = read(&a.dir)?;
    let t = Instant::now();
    let (x, y) = als::fit_confidence(&cui, &a.als, |_, _, _| {}).map_err(|e| e.to_string())?;
    let seconds = t.elapsed().as_secs_f64();
    put(&a.dir.join("recd_user_factors.f32"), f32s_le(&x))?;
    put(&a.dir.join("recd_item_factors.f32"), f32s_le(&y))?;
    println!("{}", serde_json::json!({ "seconds": seconds }));
    Ok(())
}

fn main() -> ExitCode {
    let result = parse_args().and_then(|a| match a.cmd.as_str() {
        "write" => write(&a),
        "fit" => fit(&a),
        other => Err(format!("unknown command {other} (write, fit)")),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("als_scale: {e}");
            ExitCode::from(2)
        }
    }
}
