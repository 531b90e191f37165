//! Single-thread KNN latency (p50 / p99 / QPS) and recall@k for a sweep of `ef` values,
//! unfiltered and filtered, on the shared benchmark catalog (`.npy` files), so the figures
//! can be set beside hnswlib's on the same data (see `scripts/bench-ann.sh`).
//!
//! ```text
//! cargo run --release -p recd-index --example knn_latency -- \
//!     --items /tmp/catalog-100k/item_vectors.npy --queries /tmp/catalog-100k/user_vectors.npy \
//!     --category /tmp/catalog-100k/category.npy --brand /tmp/catalog-100k/brand.npy \
//!     [--nq 1000] [--k 10,50] [--ef 32,64,128] [--m 16] [--efc 200] \
//!     [--strategies auto,graph,exact] [--filters none,cat10,brand1] [--quant none,int8]
//! ```
//! `--repeat N`: time N passes over the queries per row (p50/p99/QPS over all of them), so
//! that the searches, not the exact ground truth, dominate a profile and p50 has more
//! samples on a noisy machine (default 1).
//! `--snapshot PATH`: load the index from PATH if it exists, else build it and save it
//! there (for quick A/B runs of search changes on one graph; the build figure is then 0).
//! `--build-only`: build (or load) the index, save it to `--snapshot`, and exit before any
//! query (`scripts/bench-ann.sh` runs it beside hnswlib's build, each on the same threads).
//! `--renumber-during`: a second thread renumbers the index in graph order
//! (`VectorIndex::reorder`) over and over while the queries run, to measure what a
//! renumbering in the background costs the searches; prints how many it completed.
//! Writes wait for a gap between renumberings, so the switch between `--quant` modes can
//! take many seconds (not part of any row).
//! `--quant`: the index's quantization modes to measure, one after the other on the same
//! graph (`engine` column: `recd` for `none`, `recd-int8` for `int8`). With int8 the
//! `exact` strategy still scans the `f32` vectors (it is the oracle); `auto` scans codes.
//! Filters (per query `j`, identical in the hnswlib script): `cat10` = items whose
//! `category % 10 == j % 10` (5–17 % of the items, ~10 % on average); `brand1` = items whose
//! `brand % 100 == j % 100` (~1 %). Both correlate with the embedding, like real filters.
//! `randP` (e.g. `rand20`): random subsets of P % of the items, for locating the planner's
//! scan/walk crossover.
//! `--by-category`: also build one index per category value over that category's items and
//! answer `cat10` through them (rows with strategy `per_category`: the five categories of the
//! query's filter searched unfiltered, their hits merged): what per-value indexes of a declared
//! tag field would give a filter on that field, and what they cost to build.
//! Without `--items`, a synthetic 100k × 64 Gaussian mixture is used.

use std::collections::HashMap;
use std::error::Error;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use recd_index::roaring::RoaringBitmap;
use recd_index::{Hit, HnswParams, Metric, Quantization, SearchOptions, Strategy, VectorIndex};

type Res<T> = Result<T, Box<dyn Error>>;

/// Vectors per step of the build (the server's `REBUILD_STEP`).
const BUILD_STEP: usize = 20_000;

fn main() -> Res<()> {
    let args = Args::parse()?;
    let (items, dim) = match &args.items {
        Some(p) => npy_f32(p)?,
        None => synthetic(100_000, 64, 1),
    };
    let (queries, qdim) = match &args.queries {
        Some(p) => npy_f32(p)?,
        None => synthetic(args.nq, 64, 2),
    };
    if qdim != dim {
        return Err(format!("query dim {qdim} != item dim {dim}").into());
    }
    let n = items.len() / dim;
    let nq = args.nq.min(queries.len() / dim);
    let category = match &args.category {
        Some(p) => npy_i64(p)?,
        None => (0..n as i64).map(|i| (i * 7919) % 50).collect(),
    };
    let brand = match &args.brand {
        Some(p) => npy_i64(p)?,
        None => (0..n as i64).map(|i| (i * 104_729) % 500).collect(),
    };

    let params = HnswParams {
        m: args.m,
        ef_construction: args.efc,
        ..HnswParams::default()
    };
    let batch: Vec<(u32, Vec<f32>)> = items
        .chunks_exact(dim)
        .enumerate()
        .map(|(i, v)| (i as u32, v.to_vec()))
        .collect();
    let t = Instant::now();
    let saved = args.snapshot.as_ref().and_then(|p| std::fs::read(p).ok());
    let index = match saved {
        Some(bytes) => {
            let index = VectorIndex::read_snapshot(&bytes, dim, Metric::Cosine, params)?.0;
            println!(
                "# recd-index loaded from its snapshot: {} x {dim}: {:.1} s",
                index.len(),
                t.elapsed().as_secs_f64()
            );
            index
        }
        None => {
            let load = loadavg();
            let index = VectorIndex::new(dim, Metric::Cosine, params);
            // As the server rebuilds: in steps, renumbering the nodes in graph order as
            // the index grows and at the end (the time includes that).
            index.insert_bulk(&batch, BUILD_STEP, |_| {})?;
            println!(
                "# recd-index build: {n} x {dim}, M {} efC {}, {} threads: {:.1} s (load at the start {load}, at the end {})",
                args.m,
                args.efc,
                rayon::current_num_threads(),
                t.elapsed().as_secs_f64(),
                loadavg()
            );
            if let Some(p) = &args.snapshot {
                index.write_snapshot(std::io::BufWriter::new(std::fs::File::create(p)?), &[])?;
            }
            index
        }
    };
    if args.build_only {
        return Ok(());
    }
    // Shared with the renumbering thread of `--renumber-during`: the worst case of what a
    // server's background renumbering does to the searches (a server renumbers after a
    // sixteenth of its nodes were written, not continuously).
    let index = Arc::new(index);
    let stop = Arc::new(AtomicBool::new(false));
    let renumbered = Arc::new(AtomicUsize::new(0));
    let renumberer = args.renumber_during.then(|| {
        let (index, stop, renumbered) = (index.clone(), stop.clone(), renumbered.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) && index.reorder().is_ok() {
                renumbered.fetch_add(1, Ordering::Relaxed);
            }
        })
    });

    // `--by-category`: one index per category value, built one after the other on the same
    // threads as the main one (the time printed is their sum).
    let mut by_category: Vec<(i64, VectorIndex)> = Vec::new();
    if args.by_category {
        let t = Instant::now();
        let mut members: std::collections::BTreeMap<i64, Vec<(u32, Vec<f32>)>> =
            std::collections::BTreeMap::new();
        for (id, v) in &batch {
            members
                .entry(category[*id as usize])
                .or_default()
                .push((*id, v.clone()));
        }
        for (c, part) in members {
            let sub = VectorIndex::new(dim, Metric::Cosine, params);
            sub.insert_bulk(&part, BUILD_STEP, |_| {})?;
            by_category.push((c, sub));
        }
        println!(
            "# per-category indexes: {} indexes over {n} items, built in {:.1} s (load at the end {})",
            by_category.len(),
            t.elapsed().as_secs_f64(),
            loadavg()
        );
    }

    let cat10: Vec<RoaringBitmap> = (0..10)
        .map(|r| bitmap(&category, |c| c % 10 == r))
        .collect();
    let brand1: Vec<RoaringBitmap> = (0..100).map(|r| bitmap(&brand, |b| b % 100 == r)).collect();
    // `randP`: 10 random subsets holding P % of the items (uncorrelated with the vectors).
    let mut rand: HashMap<String, Vec<RoaringBitmap>> = HashMap::new();
    for f in &args.filters {
        if let Some(p) = f.strip_prefix("rand") {
            let p: f64 = p.parse()?;
            let sets = (0..10u64)
                .map(|r| {
                    (0..n as u64)
                        .filter(|&i| ((splitmix(i ^ (r << 40)) % 10_000) as f64) < p * 100.0)
                        .map(|i| i as u32)
                        .collect()
                })
                .collect();
            rand.insert(f.clone(), sets);
        }
    }
    let pick = |fname: &str, j: usize| -> Option<&RoaringBitmap> {
        match fname {
            "cat10" => Some(&cat10[j % 10]),
            "brand1" => Some(&brand1[j % 100]),
            other => rand.get(other).map(|sets| &sets[j % sets.len()]),
        }
    };
    let kmax = args.ks.iter().copied().max().unwrap_or(10);
    let qs: Vec<&[f32]> = queries.chunks_exact(dim).take(nq).collect();

    println!("engine\tfilter\tk\tef\tstrategy\tqps\tp50_us\tp99_us\trecall");
    for &mode in &args.quant {
        let t = Instant::now();
        index.set_quantization(mode).expect("vector file");
        for (_, sub) in &by_category {
            sub.set_quantization(mode).expect("vector file");
        }
        let mem = index.memory();
        println!(
            "# recd-index {}: quantize {:.2} s; bytes per vector: vectors {:.1}, codes {:.1}, sketches {:.1}, graph {:.1}, ids {:.1}, total resident {:.1}; f32 vectors in the file mapping {:.1}",
            mode.as_str(),
            t.elapsed().as_secs_f64(),
            mem.vectors as f64 / n as f64,
            mem.codes as f64 / n as f64,
            mem.sketches as f64 / n as f64,
            mem.graph as f64 / n as f64,
            mem.ids as f64 / n as f64,
            mem.total() as f64 / n as f64,
            mem.vectors_mapped as f64 / n as f64,
        );
        // What the process holds: anonymous memory (heap) vs file pages (the mapping).
        if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
            let field = |name: &str| {
                status
                    .lines()
                    .find(|l| l.starts_with(name))
                    .map_or("?".to_string(), |l| l[name.len()..].trim().to_string())
            };
            println!(
                "# process after switching to {}: RssAnon {}, RssFile {}",
                mode.as_str(),
                field("RssAnon:"),
                field("RssFile:")
            );
        }
        let engine = match mode {
            Quantization::None => "recd",
            Quantization::Int8 => "recd-int8",
        };
        for fname in args.filters.iter().map(String::as_str) {
            let filter = |j: usize| pick(fname, j);
            // Ground truth once per filter at the largest k; smaller k use its prefix.
            let truth: Vec<Vec<u32>> = qs
                .iter()
                .enumerate()
                .map(|(j, q)| {
                    let hits = index.exact_search(q, kmax, filter(j))?;
                    Ok(hits.iter().map(|h| h.id).collect())
                })
                .collect::<Res<_>>()?;
            for &k in &args.ks {
                for &strategy in &args.strategies {
                    let efs: &[usize] = if strategy == Strategy::Exact {
                        &[0]
                    } else {
                        &args.efs
                    };
                    for &ef in efs {
                        let opts = SearchOptions {
                            ef: (ef > 0).then_some(ef),
                            strategy,
                        };
                        let m = measure(&qs, &truth, args.repeat, k, |j, q| {
                            Ok(index.search_with(q, k, filter(j), opts)?)
                        })?;
                        println!(
                            "{engine}\t{fname}\t{k}\t{}\t{}\t{m}",
                            if ef == 0 {
                                "-".to_string()
                            } else {
                                ef.to_string()
                            },
                            format!("{strategy:?}").to_lowercase(),
                        );
                    }
                }
                if fname == "cat10" && !by_category.is_empty() {
                    for &ef in &args.efs {
                        let opts = SearchOptions {
                            ef: Some(ef),
                            strategy: Strategy::Auto,
                        };
                        let m = measure(&qs, &truth, args.repeat, k, |j, q| {
                            let mut hits = Vec::new();
                            for (c, sub) in &by_category {
                                if c % 10 == (j % 10) as i64 {
                                    hits.extend(sub.search_with(q, k, None, opts)?);
                                }
                            }
                            hits.sort_by(|a, b| b.score.total_cmp(&a.score));
                            hits.truncate(k);
                            Ok(hits)
                        })?;
                        println!("{engine}\t{fname}\t{k}\t{ef}\tper_category\t{m}");
                    }
                }
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    if let Some(thread) = renumberer {
        thread
            .join()
            .map_err(|_| "the renumbering thread panicked")?;
        println!(
            "# renumberings while the queries ran: {}",
            renumbered.load(Ordering::Relaxed)
        );
    }
    Ok(())
}

/// The 1, 5 and 15 minute load averages, for the build line (the machine is shared).
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg").map_or_else(
        |_| "?".to_string(),
        |s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
    )
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// One row's figures: QPS, p50 and p99 in µs, recall@k against `truth`.
struct Measured {
    qps: f64,
    p50: f64,
    p99: f64,
    recall: f64,
}

impl std::fmt::Display for Measured {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.0}\t{:.0}\t{:.0}\t{:.4}",
            self.qps, self.p50, self.p99, self.recall
        )
    }
}

/// Times `search(j, query)` over the queries `repeat` times, one at a time, and scores its
/// hits against the exact top `k` of each query.
fn measure(
    qs: &[&[f32]],
    truth: &[Vec<u32>],
    repeat: usize,
    k: usize,
    mut search: impl FnMut(usize, &[f32]) -> Res<Vec<Hit>>,
) -> Res<Measured> {
    let mut lat = Vec::with_capacity(qs.len() * repeat);
    let (mut found, mut expected) = (0usize, 0usize);
    let start = Instant::now();
    for (j, q) in (0..repeat).flat_map(|_| qs.iter().enumerate()) {
        let t = Instant::now();
        let hits = search(j, q)?;
        lat.push(t.elapsed().as_secs_f64() * 1e6);
        let want = &truth[j][..k.min(truth[j].len())];
        expected += want.len();
        found += want
            .iter()
            .filter(|id| hits.iter().any(|h| h.id == **id))
            .count();
    }
    let total = start.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    Ok(Measured {
        qps: (qs.len() * repeat) as f64 / total,
        p50: pct(&lat, 0.50),
        p99: pct(&lat, 0.99),
        recall: found as f64 / expected.max(1) as f64,
    })
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn bitmap(values: &[i64], keep: impl Fn(i64) -> bool) -> RoaringBitmap {
    values
        .iter()
        .enumerate()
        .filter(|&(_, &v)| keep(v))
        .map(|(i, _)| i as u32)
        .collect()
}

struct Args {
    items: Option<String>,
    queries: Option<String>,
    category: Option<String>,
    brand: Option<String>,
    nq: usize,
    repeat: usize,
    ks: Vec<usize>,
    efs: Vec<usize>,
    m: usize,
    efc: usize,
    strategies: Vec<Strategy>,
    snapshot: Option<String>,
    build_only: bool,
    renumber_during: bool,
    by_category: bool,
    quant: Vec<Quantization>,
    filters: Vec<String>,
}

impl Args {
    fn parse() -> Res<Self> {
        let mut kv: HashMap<String, String> = HashMap::new();
        let mut build_only = false;
        let mut renumber_during = false;
        let mut by_category = false;
        let mut it = std::env::args().skip(1);
        while let Some(key) = it.next() {
            let key = key
                .strip_prefix("--")
                .ok_or_else(|| format!("unexpected argument {key}"))?
                .to_string();
            if key == "build-only" {
                build_only = true;
                continue;
            }
            if key == "renumber-during" {
                renumber_during = true;
                continue;
            }
            if key == "by-category" {
                by_category = true;
                continue;
            }
            let value = it.next().ok_or_else(|| format!("--{key} needs a value"))?;
            kv.insert(key, value);
        }
        let list = |key: &str, default: &str| -> Res<Vec<usize>> {
            let s = kv.get(key).map_or(default, String::as_str);
            Ok(s.split(',').map(str::parse).collect::<Result<_, _>>()?)
        };
        let strategies = kv
            .get("strategies")
            .map_or("auto", String::as_str)
            .split(',')
            .map(|s| match s {
                "auto" => Ok(Strategy::Auto),
                "graph" => Ok(Strategy::Graph),
                "exact" => Ok(Strategy::Exact),
                other => Err(format!("unknown strategy {other}")),
            })
            .collect::<Result<_, _>>()?;
        Ok(Args {
            items: kv.get("items").cloned(),
            queries: kv.get("queries").cloned(),
            category: kv.get("category").cloned(),
            brand: kv.get("brand").cloned(),
            nq: list("nq", "1000")?[0],
            repeat: list("repeat", "1")?[0].max(1),
            ks: list("k", "10,50")?,
            efs: list("ef", "32,64,128")?,
            m: list("m", "16")?[0],
            efc: list("efc", "200")?[0],
            strategies,
            snapshot: kv.get("snapshot").cloned(),
            build_only,
            renumber_during,
            by_category,
            quant: kv
                .get("quant")
                .map_or("none", String::as_str)
                .split(',')
                .map(|s| match s {
                    "none" => Ok(Quantization::None),
                    "int8" => Ok(Quantization::Int8),
                    other => Err(format!("unknown quantization {other}")),
                })
                .collect::<Result<_, _>>()?,
            filters: kv
                .get("filters")
                .map_or("none,cat10,brand1", String::as_str)
                .split(',')
                .map(str::to_string)
                .collect(),
        })
    }
}

/// Reads a little-endian C-order `.npy` array; returns the raw payload and its shape.
fn npy(path: &str, descr: &str) -> Res<(Vec<u8>, Vec<usize>)> {
    let bytes = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(format!("{path}: not a .npy file").into());
    }
    let (hlen, start) = match bytes[6] {
        1 => (usize::from(u16::from_le_bytes([bytes[8], bytes[9]])), 10),
        _ if bytes.len() >= 12 => {
            let l = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
            (usize::try_from(l)?, 12)
        }
        _ => return Err(format!("{path}: truncated header").into()),
    };
    let header = std::str::from_utf8(bytes.get(start..start + hlen).ok_or("truncated")?)?;
    if !header.contains(&format!("'descr': '{descr}'")) || header.contains("'fortran_order': True")
    {
        return Err(format!("{path}: expected C-order {descr}, header {header}").into());
    }
    let shape_str = header
        .split("'shape': (")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .ok_or("no shape")?;
    let shape = shape_str
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::parse)
        .collect::<Result<Vec<usize>, _>>()?;
    Ok((bytes[start + hlen..].to_vec(), shape))
}

fn npy_f32(path: &str) -> Res<(Vec<f32>, usize)> {
    let (data, shape) = npy(path, "<f4")?;
    let dim = *shape.get(1).ok_or("expected a 2-d array")?;
    let v = data
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Ok((v, dim))
}

fn npy_i64(path: &str) -> Res<Vec<i64>> {
    let (data, _) = npy(path, "<i8")?;
    Ok(data
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
        .collect())
}

/// A Gaussian-mixture stand-in (xorshift + Box-Muller), for runs without the catalog.
fn synthetic(n: usize, dim: usize, seed: u64) -> (Vec<f32>, usize) {
    let mut s = 0x2545_F491_4F6C_DD1D ^ seed;
    let mut uniform = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        ((s >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    let mut normal = move || {
        let (u, v) = (uniform(), uniform());
        ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
    };
    let centres: Vec<Vec<f32>> = (0..200)
        .map(|_| (0..dim).map(|_| normal()).collect())
        .collect();
    let mut out = Vec::with_capacity(n * dim);
    for i in 0..n {
        let c = &centres[(i * 2_654_435_761) % centres.len()];
        out.extend(c.iter().map(|x| x + 0.6 * normal()));
    }
    (out, dim)
}
