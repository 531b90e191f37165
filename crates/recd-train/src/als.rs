//! Implicit-feedback ALS (Hu, Koren & Volinsky 2008) with the conjugate-gradient solver
//! (Takács, Pilászy & Tikk 2011), as in the `implicit` library.
//!
//! Objective, with `p_ui = 1` for observed pairs (else 0) and confidence `c_ui = 1 + alpha·w_ui`
//! (1 for unobserved pairs):
//!
//! `L = Σ_u Σ_i c_ui (p_ui − x_u·y_i)² + λ (Σ_u ‖x_u‖² + Σ_i ‖y_i‖²)`
//!
//! Each half-iteration fixes one side and solves, for every row, the ridge system
//! `(YᵀY + λI + Σ_{i∈obs} (c_i − 1) y_i y_iᵀ) x = Σ_{i∈obs} c_i y_i`. `YᵀY + λI` is computed
//! once per half-iteration; the rest is applied on the fly, so a CG step costs one dense
//! `k×k` mat-vec plus two passes over the row's observed items. Like `implicit`, each row
//! runs `cg_steps = 3` CG steps warm-started from its previous factors; rows are solved in
//! parallel with rayon. Factors are `f32`, initialised uniform in `[0, 0.01)` (as `implicit`).
//!
//! Rows without any observation get a zero vector. [`loss`] evaluates `L` exactly (tests).

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Instant;

use pulp::{Simd, WithSimd};
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use rayon::prelude::*;
use recd_core::vector::dot;
use serde::{Deserialize, Serialize};

use crate::confidence::Confidence;
use crate::dataset::{Csr, IdMap, Interactions};
use crate::error::{Result, TrainError};
use crate::rank::top_k;
use crate::recommender::Recommender;

/// ALS hyper-parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlsParams {
    /// Latent dimension `k`.
    pub factors: usize,
    /// `λ` on both sides.
    pub regularization: f32,
    /// Confidence slope: `c = 1 + alpha · w`.
    pub alpha: f32,
    /// Full iterations (users then items).
    pub iterations: usize,
    /// CG steps per row per half-iteration.
    pub cg_steps: usize,
    /// Seed of the initial factors.
    pub seed: u64,
    /// Worker threads; 0 uses rayon's global pool.
    pub threads: usize,
    /// How event weights become confidences (scaling, recency); linear by default.
    pub confidence: Confidence,
}

/// Defaults: 64 factors, 15 iterations and 3 CG steps as `implicit`; `alpha = 0.5` and
/// `regularization = 20` were the best NDCG@10 on ml-latest-small of a grid over
/// alpha ∈ {0.25 … 20} × λ ∈ {0.05 … 50} (random split, seed 42; the same pair also won on
/// seed 7 and on the time and leave-last-out splits; see BENCHMARKS-train.md). With the
/// default [`crate::ConfidenceWeights`] that makes c ∈ [1.25, 3.5] for ratings and up to 5
/// for a purchase.
impl Default for AlsParams {
    fn default() -> Self {
        Self {
            factors: 64,
            regularization: 20.0,
            alpha: 0.5,
            iterations: 15,
            cg_steps: 3,
            seed: 42,
            threads: 0,
            confidence: Confidence::default(),
        }
    }
}

impl AlsParams {
    /// Reject parameters that cannot train.
    pub fn validate(&self) -> Result<()> {
        if self.factors == 0 || self.factors > 4096 {
            return Err(TrainError::param("factors", "must be 1..=4096"));
        }
        if !(self.regularization.is_finite() && self.regularization >= 0.0) {
            return Err(TrainError::param(
                "regularization",
                "must be finite and >= 0",
            ));
        }
        // alpha = 0 makes every observed pair as confident as an unobserved one: the
        // events carry no weight and the model learns nothing from them.
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return Err(TrainError::param("alpha", "must be finite and > 0"));
        }
        if self.cg_steps == 0 {
            return Err(TrainError::param("cg_steps", "must be >= 1"));
        }
        self.confidence.validate()?;
        // Zero sweeps leave the random initialisation: vectors that would replace a trained
        // model with noise (issue 11: `--iterations 0` did exactly that to a live server).
        if self.iterations == 0 || self.iterations > 10_000 {
            return Err(TrainError::param("iterations", "must be 1..=10000"));
        }
        Ok(())
    }
}

/// A trained model: user and item factors (row-major) and the ids they belong to.
#[derive(Debug, Clone)]
pub struct AlsModel {
    /// Latent dimension.
    pub factors: usize,
    /// `n_users × factors`.
    pub user_factors: Vec<f32>,
    /// `n_items × factors`.
    pub item_factors: Vec<f32>,
    /// External user ids, by index.
    pub user_ids: Arc<IdMap>,
    /// External item ids, by index.
    pub item_ids: Arc<IdMap>,
    /// The training items of each user (CSR structure), for `exclude_seen`.
    seen_indptr: Vec<usize>,
    seen_indices: Vec<u32>,
    /// `YᵀY + λI`, for folding in new users.
    gram: Vec<f32>,
    regularization: f32,
    alpha: f32,
    /// Wall-clock seconds of training.
    pub train_seconds: f64,
}

/// Per-iteration information passed to a training callback.
#[derive(Debug, Clone, Copy)]
pub struct IterationInfo {
    /// 0-based iteration.
    pub iteration: usize,
    /// Seconds this iteration took.
    pub seconds: f64,
}

/// Train on interactions: `c = 1 + alpha · (summed w)` per user-item pair.
pub fn train(data: &Interactions, params: &AlsParams) -> Result<AlsModel> {
    train_with(data, params, |_, _, _| {})
}

/// [`train`] with a callback after each iteration (`info`, user factors, item factors).
pub fn train_with(
    data: &Interactions,
    params: &AlsParams,
    mut on_iteration: impl FnMut(IterationInfo, &[f32], &[f32]),
) -> Result<AlsModel> {
    train_inner(data, params, None, |info, x, y| {
        on_iteration(info, x, y);
        ControlFlow::Continue(())
    })
}

/// [`train_with`] whose callback may stop the training early (`ControlFlow::Break`): the
/// model has the factors of the last iteration run (early stopping, `crate::early_stop`).
pub fn train_until(
    data: &Interactions,
    params: &AlsParams,
    on_iteration: impl FnMut(IterationInfo, &[f32], &[f32]) -> ControlFlow<()>,
) -> Result<AlsModel> {
    train_inner(data, params, None, on_iteration)
}

/// Retrain starting from `previous` (for `recd train` on a live system): users and items
/// that `previous` knows (by external id) start from their old factors, new ones from the
/// usual random init. Besides converging in fewer iterations, this keeps the new vectors
/// close to the old ones, so that session vectors and cached scores built from the old
/// item vectors stay meaningful after the swap. When `params.factors` differs from the
/// previous model's, this is a cold start.
pub fn train_warm(
    data: &Interactions,
    params: &AlsParams,
    previous: &AlsModel,
) -> Result<AlsModel> {
    train_inner(data, params, Some(previous), |_, _, _| {
        ControlFlow::Continue(())
    })
}

fn train_inner(
    data: &Interactions,
    params: &AlsParams,
    previous: Option<&AlsModel>,
    on_iteration: impl FnMut(IterationInfo, &[f32], &[f32]) -> ControlFlow<()>,
) -> Result<AlsModel> {
    params.validate()?;
    if data.is_empty() {
        return Err(TrainError::Empty("no interactions to train on".into()));
    }
    let start = Instant::now();
    let alpha = params.alpha;
    let cui = params.confidence.matrix(data, alpha)?;
    let k = params.factors;
    let (mut x0, mut y0) = random_init(cui.rows, cui.cols, k, params.seed);
    if let Some(prev) = previous.filter(|p| p.factors == k) {
        copy_known(
            &mut x0,
            data.user_ids(),
            &prev.user_ids,
            &prev.user_factors,
            k,
        );
        copy_known(
            &mut y0,
            data.item_ids(),
            &prev.item_ids,
            &prev.item_factors,
            k,
        );
    }
    let (x, y) = fit_from(&cui, params, x0, y0, on_iteration)?;
    let gram = with_pool(params.threads, || gramian(&y, k, params.regularization))?;
    Ok(AlsModel {
        factors: k,
        user_factors: x,
        item_factors: y,
        user_ids: Arc::clone(data.user_ids()),
        item_ids: Arc::clone(data.item_ids()),
        seen_indptr: cui.indptr,
        seen_indices: cui.indices,
        gram,
        regularization: params.regularization,
        alpha,
        train_seconds: start.elapsed().as_secs_f64(),
    })
}

/// A pool of `threads` workers, or `None` for rayon's global pool (`threads == 0`).
pub(crate) fn pool(threads: usize) -> Result<Option<rayon::ThreadPool>> {
    if threads == 0 {
        return Ok(None);
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map(Some)
        .map_err(|e| TrainError::ThreadPool(e.to_string()))
}

/// Run `f` inside `pool` (or directly, on the global pool).
pub(crate) fn run<R: Send>(pool: &Option<rayon::ThreadPool>, f: impl FnOnce() -> R + Send) -> R {
    match pool {
        Some(p) => p.install(f),
        None => f(),
    }
}

/// Run `f` on a fresh pool of `threads` workers (0: the global pool).
pub(crate) fn with_pool<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> Result<R> {
    Ok(run(&pool(threads)?, f))
}

/// Factorise a confidence matrix `cui` (values are `c_ui`, `p_ui = 1` where stored).
/// Returns `(user_factors, item_factors)`, row-major.
pub fn fit_confidence(
    cui: &Csr,
    params: &AlsParams,
    mut on_iteration: impl FnMut(IterationInfo, &[f32], &[f32]),
) -> Result<(Vec<f32>, Vec<f32>)> {
    let (x, y) = random_init(cui.rows, cui.cols, params.factors, params.seed);
    fit_from(cui, params, x, y, |info, x, y| {
        on_iteration(info, x, y);
        ControlFlow::Continue(())
    })
}

/// Uniform `[0, 0.01)` factors for `rows` users and `cols` items (as `implicit`).
fn random_init(rows: usize, cols: usize, k: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let x: Vec<f32> = (0..rows * k).map(|_| rng.random::<f32>() * 0.01).collect();
    let y: Vec<f32> = (0..cols * k).map(|_| rng.random::<f32>() * 0.01).collect();
    (x, y)
}

/// Overwrite the rows of `dst` (indexed by `ids`) whose id `old_ids` knows with the old factors.
fn copy_known(dst: &mut [f32], ids: &IdMap, old_ids: &IdMap, old: &[f32], k: usize) {
    for (row, id) in dst.chunks_exact_mut(k).zip(ids.ids()) {
        let src = old_ids
            .get(id)
            .and_then(|o| old.get(o as usize * k..(o as usize + 1) * k));
        if let Some(src) = src {
            row.copy_from_slice(src);
        }
    }
}

/// ALS iterations from the given initial factors.
fn fit_from(
    cui: &Csr,
    params: &AlsParams,
    mut x: Vec<f32>,
    mut y: Vec<f32>,
    mut on_iteration: impl FnMut(IterationInfo, &[f32], &[f32]) -> ControlFlow<()>,
) -> Result<(Vec<f32>, Vec<f32>)> {
    params.validate()?;
    let k = params.factors;
    let ciu = cui.transpose();
    let reg = params.regularization;
    let pool = pool(params.threads)?;
    for iteration in 0..params.iterations {
        let t = Instant::now();
        run(&pool, || {
            solve_side(cui, &mut x, &y, k, reg, params.cg_steps);
            solve_side(&ciu, &mut y, &x, k, reg, params.cg_steps);
        });
        let seconds = t.elapsed().as_secs_f64();
        tracing::debug!(iteration, seconds, "als iteration");
        if on_iteration(IterationInfo { iteration, seconds }, &x, &y).is_break() {
            break;
        }
    }
    Ok((x, y))
}

/// `Σ_i y_i y_iᵀ + reg·I` (`k×k`, full symmetric, row-major), in parallel over rows of `y`.
fn gramian(y: &[f32], k: usize, reg: f32) -> Vec<f32> {
    // Fixed chunks summed in order: the result does not depend on how rayon schedules
    // them, so a seed gives the same model whatever the thread count. At most 64 partial
    // k×k sums are alive at once.
    let rows = y.len() / k.max(1);
    let chunk_rows = rows.div_ceil(64).max(256);
    let partials: Vec<Vec<f32>> = y
        .par_chunks(chunk_rows * k)
        .map(|rows| {
            let mut acc = vec![0f32; k * k];
            pulp::Arch::new().dispatch(RankUpdates {
                rows,
                k,
                acc: &mut acc,
            });
            acc
        })
        .collect();
    let mut g = vec![0f32; k * k];
    for p in &partials {
        g.iter_mut().zip(p).for_each(|(a, b)| *a += b);
    }
    for d in 0..k {
        g[d * k + d] += reg;
    }
    g
}

/// Rows per parallel task (and per SIMD dispatch).
const ROWS_PER_TASK: usize = 16;

/// `acc += Σ_rows y yᵀ`, as a `pulp` SIMD operation.
struct RankUpdates<'a> {
    rows: &'a [f32],
    k: usize,
    acc: &'a mut [f32],
}

impl WithSimd for RankUpdates<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let k = self.k;
        for row in self.rows.chunks_exact(k) {
            for (a, &ya) in row.iter().enumerate() {
                if ya != 0.0 {
                    axpy_s(simd, ya, row, &mut self.acc[a * k..(a + 1) * k]);
                }
            }
        }
    }
}

/// Dot products of every row of `m` with `q`, as a `pulp` SIMD operation.
struct RowDots<'a> {
    m: &'a [f32],
    k: usize,
    q: &'a [f32],
}

impl WithSimd for RowDots<'_> {
    type Output = Vec<f32>;

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) -> Vec<f32> {
        // a plain loop, not an iterator closure: closures are not inlined into the
        // target-feature context and would lose the SIMD instruction set
        let mut out = Vec::with_capacity(self.m.len() / self.k.max(1));
        for row in self.m.chunks_exact(self.k) {
            out.push(dot_s(simd, row, self.q));
        }
        out
    }
}

/// One half-iteration: update every row of `x` from the fixed `y`.
///
/// The kernels are plain loops written to auto-vectorise; `pulp`'s runtime dispatch
/// compiles them for the best instruction set the CPU has (AVX2 on x86-64 machines
/// that have it) without `unsafe` here or a `-C target-cpu` flag.
fn solve_side(c: &Csr, x: &mut [f32], y: &[f32], k: usize, reg: f32, cg_steps: usize) {
    let gram = gramian(y, k, reg);
    let arch = pulp::Arch::new();
    x.par_chunks_mut(k * ROWS_PER_TASK)
        .enumerate()
        .for_each_init(
            || Scratch::new(k),
            |s, (task, rows)| {
                arch.dispatch(SolveRows {
                    gram: &gram,
                    y,
                    k,
                    c,
                    first_row: task * ROWS_PER_TASK,
                    rows,
                    scratch: s,
                    cg_steps,
                })
            },
        );
}

/// A run of consecutive rows to solve, as a `pulp` SIMD operation.
struct SolveRows<'a> {
    gram: &'a [f32],
    y: &'a [f32],
    k: usize,
    c: &'a Csr,
    first_row: usize,
    rows: &'a mut [f32],
    scratch: &'a mut Scratch,
    cg_steps: usize,
}

impl WithSimd for SolveRows<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let k = self.k;
        for (r, xr) in self.rows.chunks_exact_mut(k).enumerate() {
            let (cols, conf) = self.c.row(self.first_row + r);
            if cols.is_empty() {
                xr.fill(0.0);
            } else {
                cg_solve(
                    simd,
                    self.gram,
                    self.y,
                    k,
                    cols,
                    conf,
                    xr,
                    self.scratch,
                    self.cg_steps,
                );
            }
        }
    }
}

/// Per-thread CG buffers.
struct Scratch {
    r: Vec<f32>,
    p: Vec<f32>,
    ap: Vec<f32>,
    /// The row's observed factors `y_i`, gathered contiguously (see [`cg_solve`]).
    rows: Vec<f32>,
    /// One coefficient per observed `y_i`.
    w: Vec<f32>,
}

impl Scratch {
    fn new(k: usize) -> Self {
        Self {
            r: vec![0.0; k],
            p: vec![0.0; k],
            ap: vec![0.0; k],
            rows: Vec::new(),
            w: Vec::new(),
        }
    }
}

/// `cg_steps` CG steps on `(G + Σ (c_i − 1) y_i y_iᵀ) x = Σ c_i y_i`, from the current `x`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn cg_solve<S: Simd>(
    simd: S,
    gram: &[f32],
    y: &[f32],
    k: usize,
    cols: &[u32],
    conf: &[f32],
    x: &mut [f32],
    s: &mut Scratch,
    cg_steps: usize,
) {
    let Scratch { r, p, ap, rows, w } = s;
    // Each CG step reads every observed y_i again. Scattered over a factor matrix larger
    // than the cache (51 MB of user factors at 10M interactions), those reads cost more
    // than the arithmetic; gathered once into a contiguous buffer (a row's few hundred
    // y_i fit in L2), only the first pass pays for them.
    rows.clear();
    for &i in cols {
        rows.extend_from_slice(&y[i as usize * k..(i as usize + 1) * k]);
    }
    // r = b − A x
    symv_s(simd, gram, k, x, r);
    for v in r.iter_mut() {
        *v = -*v;
    }
    w.clear();
    for (yi, &c) in rows.chunks_exact(k).zip(conf) {
        w.push(c - (c - 1.0) * dot_s(simd, yi, x));
    }
    weighted_sum_s(simd, rows, k, w, r);
    p.copy_from_slice(r);
    let mut rsold = dot_s(simd, r, r);
    if rsold < 1e-20 {
        return;
    }
    for _ in 0..cg_steps {
        // Ap = A p
        symv_s(simd, gram, k, p, ap);
        w.clear();
        for (yi, &c) in rows.chunks_exact(k).zip(conf) {
            w.push((c - 1.0) * dot_s(simd, yi, p));
        }
        weighted_sum_s(simd, rows, k, w, ap);
        let pap = dot_s(simd, p, ap);
        if pap <= 0.0 || !pap.is_finite() {
            return;
        }
        let step = rsold / pap;
        axpy_s(simd, step, p, x);
        axpy_s(simd, -step, ap, r);
        let rsnew = dot_s(simd, r, r);
        if rsnew < 1e-20 {
            return;
        }
        let beta = rsnew / rsold;
        // p = r + beta p
        let (ph, pt) = S::as_mut_simd_f32s(p);
        let (rh, rt) = S::as_simd_f32s(r);
        let b = simd.splat_f32s(beta);
        for (pv, &rv) in ph.iter_mut().zip(rh) {
            *pv = simd.mul_add_e_f32s(b, *pv, rv);
        }
        for (pv, &rv) in pt.iter_mut().zip(rt) {
            *pv = rv + beta * *pv;
        }
        rsold = rsnew;
    }
}

/// Dot product in SIMD registers (four accumulators, FMA where the CPU has it), for the
/// CG solver inside `pulp`'s dispatched SIMD context; everywhere else ALS uses the
/// workspace's kernel, `recd_core::vector::dot`.
#[inline(always)]
fn dot_s<S: Simd>(simd: S, a: &[f32], b: &[f32]) -> f32 {
    let (ah, at) = S::as_simd_f32s(a);
    let (bh, bt) = S::as_simd_f32s(b);
    let zero = simd.splat_f32s(0.0);
    let (mut a0, mut a1, mut a2, mut a3) = (zero, zero, zero, zero);
    let ca = ah.chunks_exact(4);
    let cb = bh.chunks_exact(4);
    for (&x, &y) in ca.remainder().iter().zip(cb.remainder()) {
        a0 = simd.mul_add_e_f32s(x, y, a0);
    }
    for (x, y) in ca.zip(cb) {
        a0 = simd.mul_add_e_f32s(x[0], y[0], a0);
        a1 = simd.mul_add_e_f32s(x[1], y[1], a1);
        a2 = simd.mul_add_e_f32s(x[2], y[2], a2);
        a3 = simd.mul_add_e_f32s(x[3], y[3], a3);
    }
    let sum = simd.add_f32s(simd.add_f32s(a0, a1), simd.add_f32s(a2, a3));
    let mut out = simd.reduce_sum_f32s(sum);
    for (x, y) in at.iter().zip(bt) {
        out += x * y;
    }
    out
}

/// Registers of accumulators [`weighted_sum_s`] keeps per block of columns.
const SUM_REGS: usize = 8;

/// `out += Σ_i w_i · rows_i` (`rows` holds `w.len()` rows of `k`), in blocks of columns that
/// stay in registers across all rows (eight registers: 64 columns with AVX2). Row-by-row
/// `axpy`s would store `out` after every row and load it back for the next, a chain through
/// memory on every row; here each row costs only its loads and FMAs.
#[inline(always)]
fn weighted_sum_s<S: Simd>(simd: S, rows: &[f32], k: usize, w: &[f32], out: &mut [f32]) {
    let lanes = std::mem::size_of::<S::f32s>() / std::mem::size_of::<f32>();
    let width = SUM_REGS * lanes;
    let mut c0 = 0;
    while c0 + width <= k {
        let mut acc = [simd.splat_f32s(0.0); SUM_REGS];
        for (row, &wi) in rows.chunks_exact(k).zip(w) {
            let (block, _) = S::as_simd_f32s(&row[c0..c0 + width]);
            let wv = simd.splat_f32s(wi);
            for (a, &y) in acc.iter_mut().zip(block) {
                *a = simd.mul_add_e_f32s(wv, y, *a);
            }
        }
        let (oh, _) = S::as_mut_simd_f32s(&mut out[c0..c0 + width]);
        for (o, a) in oh.iter_mut().zip(acc) {
            *o = simd.add_f32s(*o, a);
        }
        c0 += width;
    }
    if c0 < k {
        for (row, &wi) in rows.chunks_exact(k).zip(w) {
            axpy_s(simd, wi, &row[c0..], &mut out[c0..]);
        }
    }
}

/// `y += a · x` in SIMD registers.
#[inline(always)]
fn axpy_s<S: Simd>(simd: S, a: f32, x: &[f32], y: &mut [f32]) {
    let (xh, xt) = S::as_simd_f32s(x);
    let (yh, yt) = S::as_mut_simd_f32s(y);
    let av = simd.splat_f32s(a);
    for (yv, &xv) in yh.iter_mut().zip(xh) {
        *yv = simd.mul_add_e_f32s(av, xv, *yv);
    }
    for (yv, &xv) in yt.iter_mut().zip(xt) {
        *yv += a * xv;
    }
}

/// `out = M v` for a symmetric row-major `k×k` matrix, as `Σ_j v_j · M[j, :]` four rows at
/// a time (each pass over `out` does four FMAs per vector).
#[inline(always)]
fn symv_s<S: Simd>(simd: S, m: &[f32], k: usize, v: &[f32], out: &mut [f32]) {
    out.fill(0.0);
    let mut j = 0;
    while j + 4 <= k {
        let (r0, _) = S::as_simd_f32s(&m[j * k..(j + 1) * k]);
        let (r1, _) = S::as_simd_f32s(&m[(j + 1) * k..(j + 2) * k]);
        let (r2, _) = S::as_simd_f32s(&m[(j + 2) * k..(j + 3) * k]);
        let (r3, _) = S::as_simd_f32s(&m[(j + 3) * k..(j + 4) * k]);
        let (b0, b1, b2, b3) = (
            simd.splat_f32s(v[j]),
            simd.splat_f32s(v[j + 1]),
            simd.splat_f32s(v[j + 2]),
            simd.splat_f32s(v[j + 3]),
        );
        let (oh, ot) = S::as_mut_simd_f32s(out);
        for (c, o) in oh.iter_mut().enumerate() {
            let mut acc = simd.mul_add_e_f32s(b0, r0[c], *o);
            acc = simd.mul_add_e_f32s(b1, r1[c], acc);
            acc = simd.mul_add_e_f32s(b2, r2[c], acc);
            *o = simd.mul_add_e_f32s(b3, r3[c], acc);
        }
        let tail = k - ot.len();
        for (t, o) in ot.iter_mut().enumerate() {
            let c = tail + t;
            *o += v[j] * m[j * k + c]
                + v[j + 1] * m[(j + 1) * k + c]
                + v[j + 2] * m[(j + 2) * k + c]
                + v[j + 3] * m[(j + 3) * k + c];
        }
        j += 4;
    }
    while j < k {
        axpy_s(simd, v[j], &m[j * k..(j + 1) * k], out);
        j += 1;
    }
}

/// `out = M v` for a row-major `k×k` matrix.
#[inline(always)]
fn symv(m: &[f32], k: usize, v: &[f32], out: &mut [f32]) {
    for (o, row) in out.iter_mut().zip(m.chunks_exact(k)) {
        *o = dot(row, v);
    }
}

/// The full objective `L` (see the module doc) of factors `x`, `y` on confidences `cui`.
pub fn loss(cui: &Csr, x: &[f32], y: &[f32], k: usize, regularization: f32) -> f64 {
    let gram = gramian(y, k, 0.0);
    let data: f64 = x
        .par_chunks(k)
        .enumerate()
        .map_init(
            || vec![0f32; k],
            |tmp, (u, xu)| {
                // Σ_all (x·y_i)² = xᵀ YᵀY x, then correct the observed pairs
                symv(&gram, k, xu, tmp);
                let mut l = dot(tmp, xu) as f64;
                let (cols, conf) = cui.row(u);
                for (&i, &c) in cols.iter().zip(conf) {
                    let s = dot(&y[i as usize * k..(i as usize + 1) * k], xu) as f64;
                    l += c as f64 * (1.0 - s) * (1.0 - s) - s * s;
                }
                l
            },
        )
        .sum();
    let norms: f64 = x.iter().chain(y).map(|&v| (v as f64) * (v as f64)).sum();
    data + regularization as f64 * norms
}

/// The objective `L` of one training run, to follow it per iteration (`recd train` prints
/// it): the confidences are built once, then [`Objective::at`] costs about a third of an
/// iteration.
#[derive(Debug, Clone)]
pub struct Objective {
    cui: Csr,
    k: usize,
    regularization: f32,
}

impl Objective {
    /// The objective `train(data, params)` minimises.
    pub fn new(data: &Interactions, params: &AlsParams) -> Self {
        // Training validated the same settings: a failure here cannot happen after a
        // successful `train`; the plain linear confidences are the fallback.
        let cui = params
            .confidence
            .matrix(data, params.alpha)
            .unwrap_or_else(|_| {
                let alpha = params.alpha;
                data.user_item_matrix().map_values(|w| 1.0 + alpha * w)
            });
        Objective {
            cui,
            k: params.factors,
            regularization: params.regularization,
        }
    }

    /// `L` at user factors `x` and item factors `y` (as a training callback gets them).
    pub fn at(&self, x: &[f32], y: &[f32]) -> f64 {
        loss(&self.cui, x, y, self.k, self.regularization)
    }
}

/// Folding in one user, as a `pulp` SIMD operation.
struct FoldIn<'a> {
    gram: &'a [f32],
    y: &'a [f32],
    k: usize,
    cols: &'a [u32],
    conf: &'a [f32],
    x: &'a mut [f32],
    scratch: &'a mut Scratch,
    steps: usize,
}

impl WithSimd for FoldIn<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let steps = self.steps;
        cg_solve(
            simd,
            self.gram,
            self.y,
            self.k,
            self.cols,
            self.conf,
            self.x,
            self.scratch,
            steps,
        );
    }
}

impl AlsModel {
    /// Number of users.
    pub fn n_users(&self) -> usize {
        self.user_ids.len()
    }

    /// Number of items.
    pub fn n_items(&self) -> usize {
        self.item_ids.len()
    }

    /// The factors of user `u` (None if out of range).
    pub fn user_vector(&self, u: u32) -> Option<&[f32]> {
        let a = u as usize * self.factors;
        self.user_factors.get(a..a + self.factors)
    }

    /// The factors of item `i` (None if out of range).
    pub fn item_vector(&self, i: u32) -> Option<&[f32]> {
        let a = i as usize * self.factors;
        self.item_factors.get(a..a + self.factors)
    }

    /// The items user `u` had in training, sorted.
    pub fn seen(&self, u: u32) -> &[u32] {
        let u = u as usize;
        match (self.seen_indptr.get(u), self.seen_indptr.get(u + 1)) {
            (Some(&a), Some(&b)) => &self.seen_indices[a..b],
            _ => &[],
        }
    }

    /// Score of every item for a query vector (dot products).
    pub fn scores(&self, query: &[f32]) -> Vec<f32> {
        if query.len() != self.factors {
            return vec![0.0; self.n_items()];
        }
        pulp::Arch::new().dispatch(RowDots {
            m: &self.item_factors,
            k: self.factors,
            q: query,
        })
    }

    /// Top `k` items for user `u` by dot product, best first, optionally without the user's
    /// training items. Unknown users get an empty list.
    pub fn recommend(&self, u: u32, k: usize, exclude_seen: bool) -> Vec<(u32, f32)> {
        let exclude = if exclude_seen { self.seen(u) } else { &[] };
        self.recommend_excluding(u, k, exclude)
    }

    /// Top `k` items for user `u`, skipping the sorted `exclude`.
    pub fn recommend_excluding(&self, u: u32, k: usize, exclude: &[u32]) -> Vec<(u32, f32)> {
        match self.user_vector(u) {
            Some(q) => top_k(&self.scores(q), k, exclude),
            None => Vec::new(),
        }
    }

    /// Items most similar to item `i` by cosine of item factors (not `i` itself).
    pub fn similar_items(&self, i: u32, k: usize) -> Vec<(u32, f32)> {
        let Some(q) = self.item_vector(i) else {
            return Vec::new();
        };
        let qn = dot(q, q).sqrt();
        let scores: Vec<f32> = self
            .item_factors
            .chunks_exact(self.factors)
            .map(|yi| {
                let n = dot(yi, yi).sqrt() * qn;
                if n > 0.0 { dot(yi, q) / n } else { 0.0 }
            })
            .collect();
        top_k(&scores, k, &[i])
    }

    /// A user vector for a user outside training (or with new events), from their
    /// `(item, w)` interactions with the item factors fixed: the same ridge system as
    /// training, solved by CG from zero to convergence (k steps). Unknown items are ignored.
    pub fn fold_in_user(&self, interactions: &[(u32, f32)]) -> Vec<f32> {
        let mut x = vec![0f32; self.factors];
        self.refine_user(&mut x, interactions, self.factors.max(3));
        x
    }

    /// Improve a user vector `x` in place for the `(item, w)` interactions with
    /// `cg_steps` CG steps warm-started from `x` (what training does per iteration): the
    /// cheap real-time update after an event. `x` must have `factors` entries.
    pub fn refine_user(&self, x: &mut [f32], interactions: &[(u32, f32)], cg_steps: usize) {
        let k = self.factors;
        if x.len() != k {
            return;
        }
        let mut pairs: Vec<(u32, f32)> = interactions
            .iter()
            .filter(|(i, w)| (*i as usize) < self.n_items() && w.is_finite() && *w > 0.0)
            .copied()
            .collect();
        pairs.sort_unstable_by_key(|p| p.0);
        let mut merged: Vec<(u32, f32)> = Vec::with_capacity(pairs.len());
        for (i, w) in pairs {
            match merged.last_mut() {
                Some(last) if last.0 == i => last.1 += w,
                _ => merged.push((i, w)),
            }
        }
        if merged.is_empty() {
            x.fill(0.0);
            return;
        }
        let cols: Vec<u32> = merged.iter().map(|p| p.0).collect();
        let conf: Vec<f32> = merged.iter().map(|p| 1.0 + self.alpha * p.1).collect();
        let mut s = Scratch::new(k);
        pulp::Arch::new().dispatch(FoldIn {
            gram: &self.gram,
            y: &self.item_factors,
            k,
            cols: &cols,
            conf: &conf,
            x,
            scratch: &mut s,
            steps: cg_steps.max(1),
        });
    }

    /// An exact incremental solver for one user's vector, starting from their
    /// `(item, w)` history: see [`UserSolver`].
    pub fn user_solver(&self, interactions: &[(u32, f32)]) -> UserSolver {
        UserSolver::new(self, interactions)
    }

    /// The regularization the model was trained with.
    pub fn regularization(&self) -> f32 {
        self.regularization
    }

    /// The confidence slope the model was trained with.
    pub fn alpha(&self) -> f32 {
        self.alpha
    }
}

/// One user's ALS system kept as an explicit inverse, so that each new event updates the
/// exact least-squares vector in O(k²) (Sherman–Morrison), however long the history:
/// `A = YᵀY + λI + Σ_i alpha·W_i y_i y_iᵀ`, `b = Σ_i (1 + alpha·W_i) y_i`, `x = A⁻¹ b`, where
/// `W_i` is the user's summed weight on item `i`. Another event on item `i` with weight
/// `w` adds `alpha·w·y_i y_iᵀ` to `A` (rank one) and `(alpha·w + [i is new]) y_i` to `b`.
/// Built once in O(n k² + k³); `f64` inside, so that thousands of updates stay accurate.
#[derive(Debug, Clone)]
pub struct UserSolver {
    k: usize,
    a_inv: Vec<f64>,
    b: Vec<f64>,
    items: Vec<u32>,
}

impl UserSolver {
    fn new(model: &AlsModel, interactions: &[(u32, f32)]) -> Self {
        let k = model.factors;
        let mut a: Vec<f64> = model.gram.iter().map(|&v| f64::from(v)).collect();
        let mut b = vec![0f64; k];
        let mut items = Vec::new();
        let mut summed: std::collections::BTreeMap<u32, f64> = std::collections::BTreeMap::new();
        for &(i, w) in interactions {
            if (i as usize) < model.n_items() && w.is_finite() && w > 0.0 {
                *summed.entry(i).or_default() += f64::from(w);
            }
        }
        let alpha = f64::from(model.alpha);
        for (&i, &w) in &summed {
            let Some(y) = model.item_vector(i) else {
                continue;
            };
            let s = alpha * w;
            for r in 0..k {
                b[r] += (1.0 + s) * f64::from(y[r]);
                let yr = s * f64::from(y[r]);
                for c in 0..k {
                    a[r * k + c] += yr * f64::from(y[c]);
                }
            }
            items.push(i);
        }
        let a_inv = invert_spd(&a, k).unwrap_or_else(|| {
            // only for λ = 0 with too few items; fall back to the identity (x = b)
            let mut id = vec![0f64; k * k];
            (0..k).for_each(|d| id[d * k + d] = 1.0);
            id
        });
        Self { k, a_inv, b, items }
    }

    /// Account for one more event on `item` with weight `w`.
    pub fn add(&mut self, model: &AlsModel, item: u32, w: f32) {
        let k = self.k;
        let Some(y) = model.item_vector(item) else {
            return;
        };
        if !(w.is_finite() && w > 0.0) || y.len() != k {
            return;
        }
        let s = f64::from(model.alpha) * f64::from(w);
        let is_new = match self.items.binary_search(&item) {
            Ok(_) => false,
            Err(pos) => {
                self.items.insert(pos, item);
                true
            }
        };
        let y: Vec<f64> = y.iter().map(|&v| f64::from(v)).collect();
        let coef_b = s + if is_new { 1.0 } else { 0.0 };
        self.b
            .iter_mut()
            .zip(&y)
            .for_each(|(bv, yv)| *bv += coef_b * yv);
        if s > 0.0 {
            // A⁻¹ ← A⁻¹ − s (A⁻¹y)(A⁻¹y)ᵀ / (1 + s yᵀA⁻¹y)   (A⁻¹ symmetric)
            let z: Vec<f64> = (0..k)
                .map(|r| (0..k).map(|c| self.a_inv[r * k + c] * y[c]).sum())
                .collect();
            let denom = 1.0 + s * z.iter().zip(&y).map(|(a, b)| a * b).sum::<f64>();
            if denom > 0.0 && denom.is_finite() {
                let f = s / denom;
                for r in 0..k {
                    for c in 0..k {
                        self.a_inv[r * k + c] -= f * z[r] * z[c];
                    }
                }
            }
        }
    }

    /// The current exact vector `A⁻¹ b`.
    pub fn vector(&self) -> Vec<f32> {
        let k = self.k;
        (0..k)
            .map(|r| {
                (0..k)
                    .map(|c| self.a_inv[r * k + c] * self.b[c])
                    .sum::<f64>() as f32
            })
            .collect()
    }
}

/// Inverse of a symmetric positive-definite `k×k` matrix by Cholesky; `None` if not SPD.
fn invert_spd(a: &[f64], k: usize) -> Option<Vec<f64>> {
    // A = L Lᵀ
    let mut l = vec![0f64; k * k];
    for r in 0..k {
        for c in 0..=r {
            let mut sum = a[r * k + c];
            for j in 0..c {
                sum -= l[r * k + j] * l[c * k + j];
            }
            if r == c {
                if sum <= 0.0 || !sum.is_finite() {
                    return None;
                }
                l[r * k + r] = sum.sqrt();
            } else {
                l[r * k + c] = sum / l[c * k + c];
            }
        }
    }
    // solve L Lᵀ X = I column by column
    let mut inv = vec![0f64; k * k];
    let mut col = vec![0f64; k];
    for e in 0..k {
        for r in 0..k {
            let mut sum = if r == e { 1.0 } else { 0.0 };
            for j in 0..r {
                sum -= l[r * k + j] * col[j];
            }
            col[r] = sum / l[r * k + r];
        }
        for r in (0..k).rev() {
            let mut sum = col[r];
            for j in r + 1..k {
                sum -= l[j * k + r] * col[j];
            }
            col[r] = sum / l[r * k + r];
        }
        for r in 0..k {
            inv[r * k + e] = col[r];
        }
    }
    Some(inv)
}

impl Recommender for AlsModel {
    fn recommend(&self, user: u32, k: usize, exclude: &[u32]) -> Vec<u32> {
        self.recommend_excluding(user, k, exclude)
            .into_iter()
            .map(|(i, _)| i)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(factors: usize, iterations: usize) -> AlsParams {
        AlsParams {
            factors,
            regularization: 1.0,
            alpha: 10.0,
            iterations,
            cg_steps: 3,
            seed: 7,
            threads: 2,
            confidence: Confidence::default(),
        }
    }

    const BLOCKS: u32 = 4;
    const USERS_PER_BLOCK: u32 = 25;
    const ITEMS_PER_BLOCK: u32 = 10;

    /// Planted blocks: the users of block b like only the items of block b. Each user
    /// interacted with 8 of the block's 10 items; the 2 left out (chosen by a hash) are
    /// the held-out truth that ALS must rank first.
    fn planted() -> (Interactions, Vec<Vec<u32>>) {
        let mut events = Vec::new();
        let mut held_out = Vec::new();
        for b in 0..BLOCKS {
            for u in b * USERS_PER_BLOCK..(b + 1) * USERS_PER_BLOCK {
                let first = (u * 7 + 3) % ITEMS_PER_BLOCK;
                let second = (first + 1 + (u * 13) % (ITEMS_PER_BLOCK - 1)) % ITEMS_PER_BLOCK;
                let mut held = Vec::new();
                for j in 0..ITEMS_PER_BLOCK {
                    let item = b * ITEMS_PER_BLOCK + j;
                    if j == first || j == second {
                        held.push(item);
                    } else {
                        events.push((u, item, 1.0, i64::from(u * 100 + j)));
                    }
                }
                held.sort_unstable();
                held_out.push(held);
            }
        }
        let n_users = (BLOCKS * USERS_PER_BLOCK) as usize;
        let n_items = (BLOCKS * ITEMS_PER_BLOCK) as usize;
        (
            Interactions::from_indices(n_users, n_items, &events),
            held_out,
        )
    }

    #[test]
    fn degenerate_settings_are_refused() {
        assert!(
            params(8, 0).validate().is_err(),
            "zero sweeps leave random vectors"
        );
        assert!(params(0, 5).validate().is_err());
        assert!(params(8, 1).validate().is_ok());
    }

    #[test]
    fn loss_decreases_every_iteration() {
        let (data, _) = planted();
        let p = params(8, 10);
        let cui = data.user_item_matrix().map_values(|w| 1.0 + p.alpha * w);
        let mut losses = Vec::new();
        let (x0, y0) = random_init(cui.rows, cui.cols, p.factors, p.seed);
        let initial = loss(&cui, &x0, &y0, p.factors, p.regularization);
        fit_confidence(&cui, &p, |_, x, y| {
            losses.push(loss(&cui, x, y, p.factors, p.regularization))
        })
        .unwrap();
        assert_eq!(losses.len(), 10);
        assert!(losses[0] < initial, "{} !< {initial}", losses[0]);
        for w in losses.windows(2) {
            assert!(w[1] <= w[0] * (1.0 + 1e-5), "loss went up: {losses:?}");
        }
        assert!(losses[9] < 0.5 * initial, "{losses:?} vs {initial}");
    }

    #[test]
    fn objective_follows_train_with_and_decreases() {
        let (data, _) = planted();
        let p = params(8, 6);
        let objective = Objective::new(&data, &p);
        let mut losses = Vec::new();
        let model = train_with(&data, &p, |_, x, y| losses.push(objective.at(x, y))).unwrap();
        assert_eq!(losses.len(), 6);
        for w in losses.windows(2) {
            assert!(w[1] <= w[0] * (1.0 + 1e-5), "loss went up: {losses:?}");
        }
        let last = objective.at(&model.user_factors, &model.item_factors);
        assert!(
            (last - losses[5]).abs() <= 1e-9 * last.abs(),
            "{last} vs {losses:?}"
        );
    }

    #[test]
    fn loss_matches_brute_force() {
        let data =
            Interactions::from_indices(2, 3, &[(0, 1, 2.0, 0), (1, 0, 1.0, 0), (1, 2, 3.0, 0)]);
        let cui = data.user_item_matrix().map_values(|w| 1.0 + 0.5 * w);
        let k = 2;
        let x = [0.3, -0.2, 0.5, 0.1];
        let y = [0.1, 0.4, -0.3, 0.2, 0.7, 0.7];
        let reg = 0.1;
        let mut brute = 0.0;
        for u in 0..2 {
            for i in 0..3 {
                let s: f64 = (0..k)
                    .map(|d| x[u * k + d] as f64 * y[i * k + d] as f64)
                    .sum();
                let (cols, conf) = cui.row(u);
                let (c, p) = match cols.iter().position(|&c| c == i as u32) {
                    Some(pos) => (conf[pos] as f64, 1.0),
                    None => (1.0, 0.0),
                };
                brute += c * (p - s) * (p - s);
            }
        }
        brute += reg * x.iter().chain(&y).map(|v| (*v as f64).powi(2)).sum::<f64>();
        let l = loss(&cui, &x, &y, k, reg as f32);
        assert!((l - brute).abs() < 1e-5, "{l} vs {brute}");
    }

    #[test]
    fn cg_converges_to_the_exact_ridge_solution() {
        // one user, 2 factors: solve (G + Σ(c−1) y yᵀ) x = Σ c y by hand
        let y = [1.0f32, 0.0, 0.0, 1.0, 1.0, 1.0];
        let k = 2;
        let gram = gramian(&y, k, 0.5); // [[2.5, 1], [1, 2.5]]
        assert_eq!(gram, vec![2.5, 1.0, 1.0, 2.5]);
        // observed: item 0 with c = 3 → A = [[4.5, 1], [1, 2.5]], b = [3, 0]
        // x = A⁻¹ b = [2.5·3, −1·3] / (4.5·2.5 − 1) = [7.5, −3] / 10.25
        let mut x = [0.0f32; 2];
        let mut s = Scratch::new(k);
        cg_solve(
            pulp::Scalar::new(),
            &gram,
            &y,
            k,
            &[0],
            &[3.0],
            &mut x,
            &mut s,
            2,
        );
        let mut x2 = [0.0f32; 2];
        let g = &gram;
        pulp::Arch::new().dispatch(FoldIn {
            gram: g,
            y: &y,
            k,
            cols: &[0],
            conf: &[3.0],
            x: &mut x2,
            scratch: &mut s,
            steps: 2,
        });
        assert!(
            (x[0] - x2[0]).abs() < 1e-6 && (x[1] - x2[1]).abs() < 1e-6,
            "{x:?} vs {x2:?}"
        );
        assert!(
            (x[0] - 7.5 / 10.25).abs() < 1e-5 && (x[1] + 3.0 / 10.25).abs() < 1e-5,
            "{x:?}"
        );
    }

    #[test]
    fn recovers_planted_blocks() {
        let (data, held_out) = planted();
        let model = train(&data, &params(8, 15)).unwrap();
        let mut hits = 0;
        for (u, held) in held_out.iter().enumerate() {
            let recs = model.recommend(u as u32, 2, true);
            assert_eq!(recs.len(), 2);
            for (i, _) in &recs {
                assert!(!model.seen(u as u32).contains(i), "seen item recommended");
                // every recommendation comes from the user's own block
                assert_eq!(
                    i / ITEMS_PER_BLOCK,
                    u as u32 / USERS_PER_BLOCK,
                    "user {u} got item {i}"
                );
                hits += held.contains(i) as usize;
            }
        }
        // the only unseen items of a block are exactly the held-out ones
        assert_eq!(hits, held_out.len() * 2);
        // item similarity stays inside blocks too
        for i in 0..BLOCKS * ITEMS_PER_BLOCK {
            for (j, _) in model.similar_items(i, 3) {
                assert_eq!(j / ITEMS_PER_BLOCK, i / ITEMS_PER_BLOCK);
            }
        }
    }

    #[test]
    fn fold_in_matches_the_block() {
        let (data, _) = planted();
        let model = train(&data, &params(8, 15)).unwrap();
        let v = model.fold_in_user(&[(20, 1.0), (21, 1.0), (22, 1.0), (999, 1.0)]);
        let recs = top_k(&model.scores(&v), 5, &[20, 21, 22]);
        assert!(
            recs.iter().all(|(i, _)| i / ITEMS_PER_BLOCK == 2),
            "{recs:?}"
        );
        assert!(model.fold_in_user(&[]).iter().all(|&x| x == 0.0));
        // folding in a training user's own items reproduces (about) their trained vector
        let items: Vec<(u32, f32)> = model.seen(5).iter().map(|&i| (i, 1.0)).collect();
        let v = model.fold_in_user(&items);
        let u = model.user_vector(5).unwrap();
        let cos = dot(&v, u) / (dot(&v, &v).sqrt() * dot(u, u).sqrt());
        assert!(cos > 0.99, "cos {cos}");
        // a few warm-started steps after one more event move toward the full solve
        let mut w = u.to_vec();
        let mut more = items.clone();
        more.push((3, 1.0));
        model.refine_user(&mut w, &more, 3);
        let full = model.fold_in_user(&more);
        let dist =
            |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum::<f32>();
        assert!(
            dist(&w, &full) < dist(u, &full),
            "refine did not move toward the solution"
        );
    }

    #[test]
    fn user_solver_matches_a_full_solve_after_updates() {
        let (data, _) = planted();
        let model = train(&data, &params(8, 10)).unwrap();
        let mut history: Vec<(u32, f32)> = vec![(20, 1.0), (21, 2.0)];
        let mut solver = model.user_solver(&history);
        let close = |a: &[f32], b: &[f32]| {
            a.iter()
                .zip(b)
                .all(|(x, y)| (x - y).abs() < 1e-3 * (1.0 + y.abs()))
        };
        let v0 = solver.vector();
        assert!(close(&v0, &model.fold_in_user(&history)), "{v0:?}");
        // a new item, a repeat of a known one, and an unknown item (ignored)
        for (i, w) in [(22u32, 1.0f32), (20, 3.0), (5, 0.5), (999, 1.0)] {
            solver.add(&model, i, w);
            if i < 40 {
                history.push((i, w));
            }
            let exact = model.fold_in_user(&history);
            assert!(
                close(&solver.vector(), &exact),
                "after ({i}, {w}): {:?} vs {exact:?}",
                solver.vector()
            );
        }
        assert!(
            invert_spd(&[1.0, 2.0, 2.0, 1.0], 2).is_none(),
            "not positive definite"
        );
        let inv = invert_spd(&[4.0, 2.0, 2.0, 3.0], 2).unwrap();
        // [[4,2],[2,3]]⁻¹ = [[3,−2],[−2,4]] / 8
        let want = [0.375, -0.25, -0.25, 0.5];
        assert!(
            inv.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-12),
            "{inv:?}"
        );
    }

    #[test]
    fn training_is_deterministic_for_a_seed_whatever_the_threads() {
        let (data, _) = planted();
        let a = train(&data, &params(4, 3)).unwrap();
        let b = train(&data, &params(4, 3)).unwrap();
        let one = train(
            &data,
            &AlsParams {
                threads: 1,
                ..params(4, 3)
            },
        )
        .unwrap();
        assert_eq!(a.user_factors, b.user_factors);
        assert_eq!(a.item_factors, b.item_factors);
        assert_eq!(a.item_factors, one.item_factors);
        let other_seed = train(
            &data,
            &AlsParams {
                seed: 8,
                ..params(4, 3)
            },
        )
        .unwrap();
        assert_ne!(a.item_factors, other_seed.item_factors);
    }

    #[test]
    fn warm_start_converges_faster_and_keeps_vectors_aligned() {
        let (data, _) = planted();
        let p = params(8, 15);
        let old = train(&data, &p).unwrap();
        // the same data with one more user who joins block 1
        let mut events: Vec<(u32, u32, f32, i64)> = (0..data.len())
            .map(|e| {
                (
                    data.users[e],
                    data.items[e],
                    data.weights[e],
                    data.timestamps[e],
                )
            })
            .collect();
        events.extend([(100, 10, 1.0, 0), (100, 11, 1.0, 0), (100, 12, 1.0, 0)]);
        let grown = Interactions::from_indices(101, 40, &events);
        let one = AlsParams {
            iterations: 1,
            ..p.clone()
        };
        let warm = train_warm(&grown, &one, &old).unwrap();
        let cold = train(&grown, &one).unwrap();
        let cui = grown.user_item_matrix().map_values(|w| 1.0 + p.alpha * w);
        let lw = loss(
            &cui,
            &warm.user_factors,
            &warm.item_factors,
            8,
            p.regularization,
        );
        let lc = loss(
            &cui,
            &cold.user_factors,
            &cold.item_factors,
            8,
            p.regularization,
        );
        assert!(lw < lc, "warm {lw} !< cold {lc}");
        // item vectors stay close to the old ones (cosine > 0.95)
        for i in 0..40u32 {
            let (a, b) = (old.item_vector(i).unwrap(), warm.item_vector(i).unwrap());
            let cos = dot(a, b) / (dot(a, a).sqrt() * dot(b, b).sqrt());
            assert!(cos > 0.95, "item {i}: cos {cos}");
        }
        // the new user is served from their block
        assert!(
            warm.recommend(100, 3, true)
                .iter()
                .all(|(i, _)| i / ITEMS_PER_BLOCK == 1)
        );
        // another dimension: cold start, no error
        let other = train_warm(&grown, &AlsParams { factors: 4, ..one }, &old).unwrap();
        assert_eq!(other.factors, 4);
    }

    #[test]
    fn bad_params_are_rejected() {
        let (data, _) = planted();
        let e = train(
            &data,
            &AlsParams {
                factors: 0,
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("factors"));
        let e = train(
            &data,
            &AlsParams {
                regularization: f32::NAN,
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("regularization"));
        // degenerate settings (issue 11): no sweep, no confidence, negative or NaN numbers
        for bad in [
            AlsParams {
                iterations: 0,
                ..Default::default()
            },
            AlsParams {
                alpha: 0.0,
                ..Default::default()
            },
            AlsParams {
                alpha: -1.0,
                ..Default::default()
            },
            AlsParams {
                alpha: f32::NAN,
                ..Default::default()
            },
            AlsParams {
                regularization: -0.5,
                ..Default::default()
            },
            AlsParams {
                factors: 5000,
                ..Default::default()
            },
        ] {
            assert!(
                matches!(bad.validate(), Err(TrainError::InvalidParam { .. })),
                "{bad:?}"
            );
        }
        let empty = Interactions::from_indices(1, 1, &[]);
        assert!(matches!(
            train(&empty, &AlsParams::default()),
            Err(TrainError::Empty(_))
        ));
    }
}
