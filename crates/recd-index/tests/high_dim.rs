//! Recall at text-embedding sizes: 1,536-d vectors (OpenAI's `text-embedding-3-small`, the
//! largest common size; the redis.io reference uses 384-d) under each metric, default
//! parameters, against the exact scan; then the same graph in the int8 quantized mode
//! (24 code lines per vector, re-scored exactly).
//!
//! Data: see [`data`]; 4,000 points (one 1,536-d distance costs 24 × a 64-d one, so the
//! build is the cost of 100k × 64).
//! Text embeddings are unit-normalised, so the inner-product case normalises them too (on
//! raw Gaussian vectors MIPS is a different problem, where HNSW's recall is not guaranteed).

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rand_distr::StandardNormal;
use recd_index::roaring::RoaringBitmap;
use recd_index::{HnswParams, Metric, Quantization, SearchOptions, Strategy, VectorIndex};

const DIM: usize = 1_536;
const N: usize = 4_000;
const LATENT: usize = 24;
const QUERIES: usize = 40;
const K: usize = 10;
const MIN_RECALL: f64 = 0.95;

/// An id and its vector.
type Point = (u32, Vec<f32>);

fn gaussian(rng: &mut StdRng, dim: usize, sigma: f32) -> Vec<f32> {
    (0..dim)
        .map(|_| sigma * rng.sample::<f32, _>(StandardNormal))
        .collect()
}

fn unit(mut v: Vec<f32>) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= n);
    v
}

/// `N` points and `QUERIES` fresh queries: latent `LATENT`-d Gaussian points mapped into
/// `DIM` dimensions by a fixed random projection, plus a little isotropic noise. Real
/// embeddings have a low intrinsic dimension like this; a mixture of isotropic clusters in
/// 1,536-d would be too easy (every neighbourhood is its cluster).
fn data(seed: u64, normalise: bool) -> (Vec<Point>, Vec<Vec<f32>>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let projection: Vec<Vec<f32>> = (0..LATENT).map(|_| gaussian(&mut rng, DIM, 1.0)).collect();
    let scale = 1.0 / (LATENT as f32).sqrt();
    let draw = |rng: &mut StdRng| {
        let latent = gaussian(rng, LATENT, 1.0);
        let mut v = gaussian(rng, DIM, 0.05);
        for (z, row) in latent.iter().zip(&projection) {
            for (x, p) in v.iter_mut().zip(row) {
                *x += z * p * scale;
            }
        }
        if normalise { unit(v) } else { v }
    };
    let points = (0..N as u32).map(|i| (i, draw(&mut rng))).collect();
    let queries = (0..QUERIES).map(|_| draw(&mut rng)).collect();
    (points, queries)
}

fn recall(
    index: &VectorIndex,
    queries: &[Vec<f32>],
    filter: Option<&RoaringBitmap>,
    strategy: Strategy,
) -> f64 {
    let options = SearchOptions { ef: None, strategy };
    let (mut found, mut expected) = (0, 0);
    for q in queries {
        let exact = index.exact_search(q, K, filter).expect("valid query");
        let approx = index
            .search_with(q, K, filter, options)
            .expect("valid query");
        assert_eq!(approx.len(), exact.len(), "never fewer matches than exist");
        expected += exact.len();
        found += exact
            .iter()
            .filter(|e| approx.iter().any(|a| a.id == e.id))
            .count();
    }
    found as f64 / expected.max(1) as f64
}

fn check(metric: Metric, normalise: bool, seed: u64) {
    let (points, queries) = data(seed, normalise);
    let index = VectorIndex::new(DIM, metric, HnswParams::default());
    index.insert_batch(&points).expect("valid vectors");
    // A 30 % filter, walked with the filter applied (forced: at this size the planner would
    // scan, which is exact).
    let third: RoaringBitmap = (0..N as u32).filter(|i| i % 10 < 3).collect();
    for mode in [Quantization::None, Quantization::Int8] {
        index.set_quantization(mode).expect("vector file");
        let m = mode.as_str();
        let r = recall(&index, &queries, None, Strategy::Auto);
        println!("{metric:?} {DIM}-d {m}: recall@{K} = {r:.4}");
        assert!(
            r >= MIN_RECALL,
            "{metric:?} {DIM}-d {m}: recall@{K} = {r:.4}"
        );
        let r = recall(&index, &queries, Some(&third), Strategy::Graph);
        println!("{metric:?} {DIM}-d {m}, 30 % filter: recall@{K} = {r:.4}");
        assert!(
            r >= MIN_RECALL,
            "{metric:?} {DIM}-d {m} 30 % filter: recall@{K} = {r:.4}"
        );
    }
}

#[test]
fn cosine_at_1536_dimensions() {
    check(Metric::Cosine, false, 1);
}

#[test]
fn inner_product_at_1536_dimensions() {
    check(Metric::InnerProduct, true, 2);
}

#[test]
fn l2_at_1536_dimensions() {
    check(Metric::L2, false, 3);
}
