//! Fold-in: a user's implicit-ALS vector solved from their interactions with the item
//! factors fixed — the real-time update of [`crate::UserState`] under
//! `update = "fold_in"`.
//!
//! Implicit ALS (Hu, Koren & Volinsky 2008) solves, for a user with confidences
//! `c_i = 1 + alpha·w_i` on the items they touched (`w_i` their summed positive event
//! weight, `p_i = 1`):
//!
//! `x = (YᵀY + λI + Σ_i (c_i − 1) y_i y_iᵀ)⁻¹ Σ_i c_i y_i`
//!
//! which is the user half-step of training (`recd-train`'s `als`) and `implicit`'s
//! `recalculate_user`. `YᵀY` is the same for every user of a model: [`Gram`] keeps it as
//! a running sum that the stores update when an item vector is written or removed, so
//! that it always describes the vectors actually served. A solve is then O(n·k²) to add
//! the user's `n` items plus a `k×k` Cholesky (k³/3): for n = 200 and k = 64 about a
//! million multiply-adds, a few hundred µs, bounded by the number of items a user's state
//! keeps (`recent_capacity`).
//!
//! Everything is in `f64`: the running sum takes many additions and removals, and the
//! Cholesky of a system with λ small against `YᵀY` needs the precision.
//!
//! The per-event solve ([`FoldModel::fold`]) runs conjugate gradient by default
//! (`solver = "cg"`, CG-ALS as in `implicit`): a few steps on the same system, started
//! from the user's previous folded vector, which solved the system of one event ago and
//! so is already close. A step multiplies by `A` as `(YᵀY + λI)·p + Σ s_i y_i (y_i·p)`
//! (k² + 2·n·k), so neither the `k×k` rank-one assembly (n·k²/2) nor the Cholesky (k³/6)
//! runs. `solver = "cholesky"` keeps the exact solve; the item fold-in and the content
//! map always use it.

use serde::{Deserialize, Serialize};

use crate::vector::{dot, dot_f64};

/// How each event changes the user's real-time vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpdateRule {
    /// Fold the interaction into the user's ALS vector: solve the user's regularised
    /// weighted least squares over their recent items with the item vectors fixed.
    #[default]
    FoldIn,
    /// The session vector: a time-decayed weighted average of the touched items' vectors.
    DecayedAverage,
}

impl UpdateRule {
    /// The config name.
    pub fn as_str(self) -> &'static str {
        match self {
            UpdateRule::FoldIn => "fold_in",
            UpdateRule::DecayedAverage => "decayed_average",
        }
    }
}

/// How the per-event fold-in solves its system ([`FoldModel::fold`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FoldSolver {
    /// `cg_steps` conjugate-gradient steps from the previous folded vector (else the
    /// long-term one): approximate, no `k×k` assembly and no factorisation.
    #[default]
    Cg,
    /// The exact solve: the system assembled and factored (Cholesky) at every event.
    Cholesky,
}

impl FoldSolver {
    /// The config name.
    pub fn as_str(self) -> &'static str {
        match self {
            FoldSolver::Cg => "cg",
            FoldSolver::Cholesky => "cholesky",
        }
    }
}

/// Most conjugate-gradient steps accepted: past the dimension (k ≤ 4,096 in a schema is
/// far above any sane step count) more steps only repeat work, and a large value would
/// make every event cost more than the exact solve.
pub const MAX_CG_STEPS: usize = 64;

/// Settings of the fold-in (`[model.session.fold_in]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FoldInParams {
    /// `λ` of the solve: the trained model's (`recd train --regularization`).
    pub regularization: f64,
    /// The confidence slope `c = 1 + alpha·w`: the trained model's (`recd train --alpha`).
    pub alpha: f64,
    /// Share of the folded-in vector in the query, the rest being the long-term vector
    /// (both unit length): 1 = the fold-in alone.
    pub share: f64,
    /// The largest share of the decayed-average session vector mixed into the fold-in's
    /// query (0: the fold-in alone), reached as the session's decayed weight grows
    /// (`[ranking] session_saturation`, [`session_mix_share`]): the fold-in is the user's
    /// least-squares taste, the session points at the last few items, and which of the
    /// two predicts the next event is a property of the data, so `recd eval
    /// --session-mix auto` and `recd tune` choose it on a validation split.
    pub session_mix: f64,
    /// How each event's solve runs: `cg` (a few conjugate-gradient steps from the previous
    /// vector) or `cholesky` (exact).
    pub solver: FoldSolver,
    /// Conjugate-gradient steps per solve under `solver = "cg"` (1 to [`MAX_CG_STEPS`]).
    pub cg_steps: usize,
}

/// The share of the session vector in the fold-in's query: `mix · w / (w + saturation)`
/// for a session of decayed weight `w` — the decayed-average rule's formula with
/// `session_mix` as its maximum, so that a session fades out of the query as it ages.
pub fn session_mix_share(mix: f64, weight: f64, saturation: f64) -> f64 {
    if !(mix > 0.0 && weight > 0.0 && weight.is_finite()) {
        return 0.0;
    }
    mix.min(1.0) * weight / (weight + saturation.max(1e-9))
}

/// λ and alpha are `recd train`'s defaults; `share` was chosen on a validation split cut
/// from the train half of ml-latest-small (BENCHMARKS.md, "Fold-in").
impl Default for FoldInParams {
    fn default() -> Self {
        Self {
            regularization: 20.0,
            alpha: 0.5,
            share: 1.0,
            session_mix: 0.0,
            solver: FoldSolver::default(),
            cg_steps: 3,
        }
    }
}

impl FoldInParams {
    /// Checks a configuration; the message names the key.
    pub fn check(&self) -> Result<(), crate::ValidationError> {
        if !(self.regularization.is_finite() && self.regularization > 0.0) {
            return crate::invalid!("fold_in.regularization must be a number > 0");
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return crate::invalid!("fold_in.alpha must be a number > 0");
        }
        if !(self.share.is_finite() && (0.0..=1.0).contains(&self.share)) {
            return crate::invalid!("fold_in.share must be between 0 and 1");
        }
        if !(self.session_mix.is_finite() && (0.0..=1.0).contains(&self.session_mix)) {
            return crate::invalid!("fold_in.session_mix must be between 0 and 1");
        }
        if !(1..=MAX_CG_STEPS).contains(&self.cg_steps) {
            return crate::invalid!(
                "fold_in.cg_steps must be between 1 and {MAX_CG_STEPS} (got {})",
                self.cg_steps
            );
        }
        Ok(())
    }
}

/// `YᵀY`: the sum of `y yᵀ` over the item vectors of one dimension (full symmetric,
/// row-major), kept up to date as vectors come and go.
#[derive(Debug, Clone, PartialEq)]
pub struct Gram {
    k: usize,
    sum: Vec<f64>,
    items: i64,
}

impl Gram {
    /// The sum over no vectors, for dimension `k`.
    pub fn new(k: usize) -> Self {
        Self {
            k,
            sum: vec![0.0; k * k],
            items: 0,
        }
    }

    /// The dimension.
    pub fn dim(&self) -> usize {
        self.k
    }

    /// How many vectors are in the sum.
    pub fn items(&self) -> i64 {
        self.items
    }

    /// Adds `y yᵀ` (a vector of another dimension is ignored).
    pub fn add(&mut self, y: &[f32]) {
        self.update(y, 1.0);
    }

    /// Removes `y yᵀ` (a vector added before).
    pub fn remove(&mut self, y: &[f32]) {
        self.update(y, -1.0);
    }

    fn update(&mut self, y: &[f32], sign: f64) {
        if y.len() != self.k {
            return;
        }
        let k = self.k;
        for r in 0..k {
            let yr = sign * f64::from(y[r]);
            let row = &mut self.sum[r * k..(r + 1) * k];
            for (s, yc) in row.iter_mut().zip(y) {
                *s += yr * f64::from(*yc);
            }
        }
        self.items += sign as i64;
        if self.items <= 0 {
            // Back to empty: drop what rounding left behind.
            self.items = 0;
            self.sum.fill(0.0);
        }
    }

    /// The sum, row-major `k×k`.
    pub fn matrix(&self) -> &[f64] {
        &self.sum
    }
}

/// What a fold-in needs of the model: `YᵀY + λI`, alpha and the solver, built once per
/// batch of events.
#[derive(Debug, Clone, PartialEq)]
pub struct FoldModel {
    k: usize,
    base: Vec<f64>,
    /// `base` in f32, for CG's products ([`FoldModel::apply`]).
    base32: Vec<f32>,
    alpha: f64,
    solver: FoldSolver,
    cg_steps: usize,
}

/// One user's system `A x = b` without `A` assembled: `A = base + Σ s_i y_i y_iᵀ`.
struct System<'v> {
    /// `(y_i, s_i = alpha·|w_i|)` of every item in the system (`s_i` may be 0: an item
    /// whose only part is in `b`).
    terms: Vec<(&'v [f32], f64)>,
    b: Vec<f64>,
    /// The prior in f64, when one of the right dimension was given.
    prior: Option<Vec<f64>>,
}

impl FoldModel {
    /// From the items' Gram matrix; `None` while no item has a vector.
    pub fn new(gram: &Gram, params: &FoldInParams) -> Option<Self> {
        if gram.items() == 0 || gram.dim() == 0 {
            return None;
        }
        let k = gram.dim();
        let mut base = gram.matrix().to_vec();
        for d in 0..k {
            base[d * k + d] += params.regularization.max(1e-9);
        }
        Some(Self {
            k,
            base32: base.iter().map(|&x| x as f32).collect(),
            base,
            alpha: params.alpha,
            solver: params.solver,
            cg_steps: params.cg_steps.clamp(1, MAX_CG_STEPS),
        })
    }

    /// The dimension.
    pub fn dim(&self) -> usize {
        self.k
    }

    /// The same model with another solver for [`FoldModel::fold`] (`cg_steps` bounded to
    /// 1 to [`MAX_CG_STEPS`]).
    pub fn with_solver(mut self, solver: FoldSolver, cg_steps: usize) -> Self {
        self.solver = solver;
        self.cg_steps = cg_steps.clamp(1, MAX_CG_STEPS);
        self
    }

    /// The solver [`FoldModel::fold`] runs.
    pub fn solver(&self) -> FoldSolver {
        self.solver
    }

    /// The user vector for `(item vector, summed weight w)` interactions: `w > 0` is a
    /// positive (`p = 1`) with confidence `1 + alpha·w`, `w < 0` a negative (`p = 0`, what
    /// a dislike or skip says) with confidence `1 + alpha·|w|`; items with `w = 0` or a
    /// vector of another dimension are left out. `None` when nothing is left, or the
    /// system is not positive definite (only possible with non-finite vectors).
    pub fn solve<'v>(
        &self,
        interactions: impl IntoIterator<Item = (&'v [f32], f32)>,
    ) -> Option<Vec<f32>> {
        self.solve_from(None, interactions.into_iter().map(|(y, w)| (y, w, w)))
    }

    /// The per-event solve of [`FoldModel::solve_from`]'s system with the configured
    /// solver: exact under `cholesky`; under `cg`, `cg_steps` conjugate-gradient steps
    /// from `start` (the user's previous folded vector: the solution of the system before
    /// their latest events, so close to this one) or, without one of the right dimension,
    /// from `prior`.
    pub fn fold<'v>(
        &self,
        prior: Option<&[f32]>,
        start: Option<&[f32]>,
        interactions: impl IntoIterator<Item = (&'v [f32], f32, f32)>,
    ) -> Option<Vec<f32>> {
        self.fold_batches(prior, start, 1, interactions)
    }

    /// [`FoldModel::fold`] for a `start` that solved the system of `batches` batches of
    /// events ago (at least 1), as a store that solves at the user's next read has it: CG
    /// takes `cg_steps` per batch, as many as solving after each batch would have taken
    /// in all, up to `k` (where CG in exact arithmetic has converged) or `cg_steps` if
    /// more. So a burst of events read once lands as close to the exact solve as solving
    /// after each of its batches did, from a start further back.
    pub fn fold_batches<'v>(
        &self,
        prior: Option<&[f32]>,
        start: Option<&[f32]>,
        batches: u32,
        interactions: impl IntoIterator<Item = (&'v [f32], f32, f32)>,
    ) -> Option<Vec<f32>> {
        match self.solver {
            FoldSolver::Cholesky => self.solve_from(prior, interactions),
            FoldSolver::Cg => {
                let per_batch = self.cg_steps;
                let steps = per_batch
                    .saturating_mul(batches.max(1) as usize)
                    .min(self.k.max(per_batch));
                self.solve_cg(prior, start, steps, interactions)
            }
        }
    }

    /// The user vector for `(item vector, summed weight, fresh weight)` interactions, where
    /// the fresh weight is what came after the trained vector `prior` was solved (the rest
    /// the model knew). The items the user touched before their last few hundred are not
    /// kept, but `prior` carries them: with `A_T` the system of the trained weights
    /// (`YᵀY + λI + Σ alpha·(w − fresh) y yᵀ`), whose solution `prior` is, the fold-in
    /// solves `A x = A_T·prior + Σ (alpha·fresh + [item new to the user]) y` with `A` the
    /// system of the summed weights: without fresh weight it returns `prior`; when every
    /// item the user touched is kept and `prior` is exact, it is the exact solve over all
    /// of them (training's user step); a dropped item keeps its pull through `prior`.
    /// Without `prior` (or of another dimension) every weight counts as fresh. A negative
    /// summed weight (a disliked or skipped item) is a `p = 0` with confidence
    /// `1 + alpha·|w|` (it turns the vector away from the item); an item the prior was
    /// solved with as a positive loses that pull. Exact: the system is assembled and
    /// factored (Cholesky).
    pub fn solve_from<'v>(
        &self,
        prior: Option<&[f32]>,
        interactions: impl IntoIterator<Item = (&'v [f32], f32, f32)>,
    ) -> Option<Vec<f32>> {
        self.solve_from_on(pulp::Arch::new(), prior, interactions)
    }

    /// [`FoldModel::solve_from`] with its assembly and factorisation dispatched by `arch`
    /// (as [`FoldModel::solve_cg`]'s steps are): at k = 64, 0.89x the time with 25 items and
    /// 0.75x with 200 (criterion; the factorisation's short rows gain less than the assembly).
    fn solve_from_on<'v>(
        &self,
        arch: pulp::Arch,
        prior: Option<&[f32]>,
        interactions: impl IntoIterator<Item = (&'v [f32], f32, f32)>,
    ) -> Option<Vec<f32>> {
        let interactions: Vec<_> = interactions.into_iter().collect();
        arch.dispatch(ExactSolve {
            model: self,
            prior,
            interactions: &interactions,
        })
    }

    /// [`FoldModel::solve_from`] in the caller's instruction set: the system's assembly
    /// and its solve.
    #[inline(always)]
    fn exact_solve_of(
        &self,
        prior: Option<&[f32]>,
        interactions: &[(&[f32], f32, f32)],
    ) -> Option<Vec<f32>> {
        let System { terms, mut b, .. } = self.system(prior, interactions, false)?;
        self.exact_solve(&terms, &mut b)?;
        finite_f32(&b)
    }

    /// Assembles `A = base + Σ s y yᵀ` (its lower triangle) and solves `A x = b` in place;
    /// `None` if `A` is not positive definite.
    #[inline(always)]
    fn exact_solve(&self, terms: &[(&[f32], f64)], b: &mut [f64]) -> Option<()> {
        let k = self.k;
        let mut a = self.base.clone();
        let mut y = vec![0f64; k];
        for &(v, s) in terms {
            if s == 0.0 {
                continue;
            }
            for (d, x) in y.iter_mut().zip(v) {
                *d = f64::from(*x);
            }
            for r in 0..k {
                let yr = s * y[r];
                // lower triangle only: the Cholesky below reads nothing else
                let row = &mut a[r * k..r * k + r + 1];
                for (acc, yc) in row.iter_mut().zip(&y) {
                    *acc += yr * yc;
                }
            }
        }
        cholesky_solve(&mut a, b, k)
    }

    /// [`FoldModel::solve_from`]'s system solved approximately by `steps` steps of
    /// conjugate gradient from `start` (else `prior`, else 0); `A` is only ever applied to
    /// a vector ([`FoldModel::apply`]), never assembled. Converges to the exact solution
    /// (in at most k steps, in exact arithmetic); from the previous event's vector a few
    /// steps get close. `None` when nothing is in the system, or `A` is not positive
    /// definite along a search direction (only possible with non-finite vectors).
    pub fn solve_cg<'v>(
        &self,
        prior: Option<&[f32]>,
        start: Option<&[f32]>,
        steps: usize,
        interactions: impl IntoIterator<Item = (&'v [f32], f32, f32)>,
    ) -> Option<Vec<f32>> {
        self.solve_cg_on(pulp::Arch::new(), prior, start, steps, interactions)
    }

    /// [`FoldModel::solve_cg`] with its steps dispatched by `arch` (tests pass
    /// `pulp::Arch::Scalar` to run the baseline build on any machine).
    fn solve_cg_on<'v>(
        &self,
        arch: pulp::Arch,
        prior: Option<&[f32]>,
        start: Option<&[f32]>,
        steps: usize,
        interactions: impl IntoIterator<Item = (&'v [f32], f32, f32)>,
    ) -> Option<Vec<f32>> {
        let interactions: Vec<_> = interactions.into_iter().collect();
        // The steps are compiled once per instruction set and run on the widest the CPU
        // has (AVX2: eight f32 lanes per instruction, against four in the x86-64
        // baseline's SSE2); `apply`'s products are most of an event's fold-in, and with
        // them still in f64 the dispatch took 3 steps at k = 64 to 0.67x the time
        // (criterion, `benches/foldin.rs`). The system's assembly runs
        // in the same build: left in the baseline's, it was a third of the solve's time at
        // 200 items. The operations and their order are the same in every build (Rust
        // never fuses a multiply and an add on its own), so the result is too, bit for bit
        // (tested).
        arch.dispatch(CgSolve {
            model: self,
            prior,
            start,
            steps,
            interactions: &interactions,
        })
    }

    /// [`FoldModel::solve_cg`] in the caller's instruction set.
    #[inline(always)]
    fn cg_solve_of(
        &self,
        prior: Option<&[f32]>,
        start: Option<&[f32]>,
        steps: usize,
        interactions: &[(&[f32], f32, f32)],
    ) -> Option<Vec<f32>> {
        let k = self.k;
        let System { terms, b, prior } = self.system(prior, interactions, true)?;
        let mut x: Vec<f64> =
            match start.filter(|s| s.len() == k && s.iter().all(|v| v.is_finite())) {
                Some(s) => s.iter().map(|&v| f64::from(v)).collect(),
                None => prior.unwrap_or_else(|| vec![0.0; k]),
            };
        self.cg_steps(&terms, &b, &mut x, steps);
        finite_f32(&x)
    }

    /// `steps` conjugate-gradient steps on `A x = b` from `x` (see [`FoldModel::solve_cg`]);
    /// `x` is left as NaN if `A` is not positive definite along a search direction.
    #[inline(always)]
    fn cg_steps(&self, terms: &[(&[f32], f64)], b: &[f64], x: &mut [f64], steps: usize) {
        let k = self.k;
        // Items with no confidence term (their part is all in `b`) add nothing to `A·v`.
        let terms: Vec<(&[f32], f64)> = terms.iter().copied().filter(|t| t.1 != 0.0).collect();
        let terms = terms.as_slice();
        let mut scratch = ApplyScratch {
            v: vec![0f32; k],
            t: Vec::with_capacity(terms.len()),
            items: vec![0f32; k],
        };
        let mut ap = vec![0f64; k];
        self.apply(terms, x, &mut ap, &mut scratch);
        let mut r: Vec<f64> = b.iter().zip(&ap).map(|(b, a)| b - a).collect();
        let mut p = r.clone();
        let mut rs = dot_f64(&r, &r);
        // Stop once the residual is at the rounding level of `apply`'s f32 item terms
        // (an exact start, such as the prior when nothing is fresh): a further step would
        // divide noise by noise. One event moves a user's system far more than this.
        let tiny = dot_f64(b, b) * CG_RESIDUAL_FLOOR;
        for _ in 0..steps {
            if rs.is_nan() || rs <= tiny {
                break;
            }
            self.apply(terms, &p, &mut ap, &mut scratch);
            let pap = dot_f64(&p, &ap);
            if !(pap > 0.0 && pap.is_finite()) {
                x.fill(f64::NAN);
                return;
            }
            let step = rs / pap;
            for ((xi, ri), (pi, api)) in x.iter_mut().zip(&mut r).zip(p.iter().zip(&ap)) {
                *xi += step * pi;
                *ri -= step * api;
            }
            let rs_next = dot_f64(&r, &r);
            let beta = rs_next / rs;
            for (pi, ri) in p.iter_mut().zip(&r) {
                *pi = ri + beta * *pi;
            }
            rs = rs_next;
        }
    }

    /// `out = A·v` for a system's terms: `base·v + Σ s_i y_i (y_i·v)`, k² + 2·n·k
    /// multiply-adds, computed in f32 (`v` rounded to f32, `base` kept in f32 beside the
    /// f64 one): eight lanes per instruction where f64 has four, and no conversion of each
    /// item's f32 vector; the items' part is 2·n·k of them (n up to `recent_capacity`, 200
    /// by default, against k = 64). The rounding (~1e-7 of the sum, relative) is far below
    /// what 3 steps from the previous vector leave of the error; the CG vectors and the
    /// result stay in f64.
    ///
    /// The items' part runs in two passes, every `y_i·v` first, then `Σ t_i y_i` by
    /// column blocks ([`add_scaled_rows`]), so that no item's dot waits for the previous
    /// item's additions to the sum: 0.97x the time of one pass at 200 items (criterion,
    /// `benches/foldin.rs`; the f32 terms alone were 0.85x the f64 ones).
    #[inline(always)]
    fn apply(
        &self,
        terms: &[(&[f32], f64)],
        v: &[f64],
        out: &mut [f64],
        scratch: &mut ApplyScratch,
    ) {
        for (d, x) in scratch.v.iter_mut().zip(v) {
            *d = *x as f32;
        }
        for (o, row) in out.iter_mut().zip(self.base32.chunks_exact(self.k)) {
            *o = f64::from(dot(row, &scratch.v));
        }
        scratch.t.clear();
        for &(y, s) in terms {
            scratch.t.push(s as f32 * dot(y, &scratch.v));
        }
        scratch.items.fill(0.0);
        add_scaled_rows(&mut scratch.items, terms, &scratch.t);
        for (o, i) in out.iter_mut().zip(&scratch.items) {
            *o += f64::from(*i);
        }
    }

    /// The system both solvers solve (see [`FoldModel::solve_from`]): `b`, and the items'
    /// `(y, s)` of `A = base + Σ s y yᵀ`; `None` when nothing is in it. `b`'s items' part
    /// (`Σ coef_i y_i`, with each trained item's `y·prior`) is computed in f64 for the
    /// exact solve and in f32 for CG (`items_in_f32`), as [`FoldModel::apply`] does: at
    /// 200 items it is as much work as one of CG's products.
    #[inline(always)]
    fn system<'v>(
        &self,
        prior: Option<&[f32]>,
        interactions: &[(&'v [f32], f32, f32)],
        items_in_f32: bool,
    ) -> Option<System<'v>> {
        let k = self.k;
        let prior32 = prior.filter(|p| p.len() == k && p.iter().all(|x| x.is_finite()));
        let prior: Option<Vec<f64>> = prior32.map(|p| p.iter().map(|&x| f64::from(x)).collect());
        let mut b = match &prior {
            // (YᵀY + λI)·prior; the trained items' part is added below
            Some(p) => self
                .base
                .chunks_exact(k)
                .map(|row| dot_f64(row, p))
                .collect(),
            None => vec![0f64; k],
        };
        let mut terms = Vec::new();
        let mut coefs = Vec::new();
        for &(v, total, fresh) in interactions {
            if v.len() != k || !total.is_finite() {
                continue;
            }
            // The trained part: what the prior was solved with (never a negative: training
            // drops those). Without a prior everything is fresh.
            let trained = match (&prior, fresh.is_finite()) {
                (Some(_), true) => f64::from(total - fresh).max(0.0),
                _ => 0.0,
            };
            let total = f64::from(total);
            if total == 0.0 && trained == 0.0 {
                continue;
            }
            // b = A_T·prior (its trained part here) − the trained b part + the true b part
            let mut coef = if total > 0.0 {
                1.0 + self.alpha * total
            } else {
                0.0
            };
            if let (Some(p), Some(p32), true) = (&prior, prior32, trained > 0.0) {
                let along = if items_in_f32 {
                    f64::from(dot(v, p32))
                } else {
                    dot_mixed(v, p)
                };
                coef += self.alpha * trained * along - (1.0 + self.alpha * trained);
            }
            if items_in_f32 {
                coefs.push(coef);
            } else {
                for (br, yr) in b.iter_mut().zip(v) {
                    *br += coef * f64::from(*yr);
                }
            }
            // c − 1 = alpha·|w|: a negative weight is confidence that p = 0
            terms.push((v, self.alpha * total.abs()));
        }
        if prior.is_none() && terms.is_empty() {
            return None;
        }
        if items_in_f32 {
            let t: Vec<f32> = coefs.iter().map(|&c| c as f32).collect();
            let mut sum = vec![0f32; k];
            add_scaled_rows(&mut sum, &terms, &t);
            for (br, s) in b.iter_mut().zip(&sum) {
                *br += f64::from(*s);
            }
        }
        Some(System { terms, b, prior })
    }
}

/// [`FoldModel::apply`]'s working vectors, allocated once per solve.
struct ApplyScratch {
    /// The vector applied to, in f32.
    v: Vec<f32>,
    /// `s_i (y_i·v)` per term.
    t: Vec<f32>,
    /// `Σ s_i y_i (y_i·v)` in f32.
    items: Vec<f32>,
}

/// `out += Σ t_i y_i` over the terms' vectors `y_i` (each of `out`'s length). Each block
/// of 64 (then 16) columns of `out` is summed over every item in a local array, which
/// the compiler may keep in registers (64 f32 are eight AVX registers); the columns past
/// the last whole block, if any, are summed lane by lane.
#[inline(always)]
fn add_scaled_rows(out: &mut [f32], terms: &[(&[f32], f64)], t: &[f32]) {
    let done = add_scaled_blocks::<64>(out, 0, terms, t);
    let done = add_scaled_blocks::<16>(out, done, terms, t);
    if done < out.len() {
        for (&(y, _), &ti) in terms.iter().zip(t) {
            for (o, yi) in out[done..].iter_mut().zip(&y[done.min(y.len())..]) {
                *o += ti * yi;
            }
        }
    }
}

/// [`add_scaled_rows`] over the whole blocks of `B` columns from `from`; returns where
/// they end.
#[inline(always)]
fn add_scaled_blocks<const B: usize>(
    out: &mut [f32],
    from: usize,
    terms: &[(&[f32], f64)],
    t: &[f32],
) -> usize {
    let mut start = from;
    while start + B <= out.len() {
        let mut acc = [0f32; B];
        for (&(y, _), &ti) in terms.iter().zip(t) {
            if let Some(block) = y.get(start..start + B)
                && let Ok(block) = <&[f32; B]>::try_from(block)
            {
                for (a, yi) in acc.iter_mut().zip(block) {
                    *a += ti * yi;
                }
            }
        }
        for (o, a) in out[start..start + B].iter_mut().zip(acc) {
            *o += a;
        }
        start += B;
    }
    start
}

/// Where CG stops, as `|r|² / |b|²`: the square of the rounding of `apply`'s f32
/// products (~1e-6 relative with a few hundred items).
const CG_RESIDUAL_FLOOR: f64 = 1e-12;

/// [`FoldModel::solve_cg`] as a `pulp` operation, compiled once per instruction set.
struct CgSolve<'a, 'v> {
    model: &'a FoldModel,
    prior: Option<&'a [f32]>,
    start: Option<&'a [f32]>,
    steps: usize,
    interactions: &'a [(&'v [f32], f32, f32)],
}

impl pulp::WithSimd for CgSolve<'_, '_> {
    type Output = Option<Vec<f32>>;

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) -> Option<Vec<f32>> {
        self.model
            .cg_solve_of(self.prior, self.start, self.steps, self.interactions)
    }
}

/// [`FoldModel::solve_from`] as a `pulp` operation.
struct ExactSolve<'a, 'v> {
    model: &'a FoldModel,
    prior: Option<&'a [f32]>,
    interactions: &'a [(&'v [f32], f32, f32)],
}

impl pulp::WithSimd for ExactSolve<'_, '_> {
    type Output = Option<Vec<f32>>;

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) -> Option<Vec<f32>> {
        self.model.exact_solve_of(self.prior, self.interactions)
    }
}

/// `y·v` for an f32 item vector against an f64 one, in f64 (four lanes, as `dot_f64`).
#[inline(always)]
fn dot_mixed(y: &[f32], v: &[f64]) -> f64 {
    let n = y.len().min(v.len());
    let (cy, cv) = (y[..n].chunks_exact(4), v[..n].chunks_exact(4));
    let tail: f64 = cy
        .remainder()
        .iter()
        .zip(cv.remainder())
        .map(|(a, b)| f64::from(*a) * b)
        .sum();
    let mut acc = [0f64; 4];
    for (a, b) in cy.zip(cv) {
        for l in 0..4 {
            acc[l] += f64::from(a[l]) * b[l];
        }
    }
    acc.iter().sum::<f64>() + tail
}

/// The solution in f32, if every coordinate is finite.
fn finite_f32(x: &[f64]) -> Option<Vec<f32>> {
    let x: Vec<f32> = x.iter().map(|&v| v as f32).collect();
    x.iter().all(|v| v.is_finite()).then_some(x)
}

/// Solves `A x = b` in place (`b` becomes `x`) for a symmetric positive-definite `A` given
/// by its lower triangle (overwritten by the Cholesky factor); `None` if not SPD.
#[inline(always)]
fn cholesky_solve(a: &mut [f64], b: &mut [f64], k: usize) -> Option<()> {
    cholesky(a, k)?;
    solve_factored(a, b, k);
    Some(())
}

/// Factors a symmetric positive-definite `k×k` `A`, given by its lower triangle, into
/// `L Lᵀ` in place (the lower triangle becomes `L`); `None` if not SPD. The one Cholesky of
/// the crate: the fold-ins of users and items and the content map's ridge regression
/// (`crate::newitems`) all solve through it.
#[inline(always)]
pub(crate) fn cholesky(a: &mut [f64], k: usize) -> Option<()> {
    for r in 0..k {
        for c in 0..=r {
            // L[r][c] from the first c entries of rows r and c (both already factored)
            let sum = a[r * k + c] - dot_f64(&a[r * k..r * k + c], &a[c * k..c * k + c]);
            if r == c {
                if !(sum > 0.0 && sum.is_finite()) {
                    return None;
                }
                a[r * k + r] = sum.sqrt();
            } else {
                a[r * k + c] = sum / a[c * k + c];
            }
        }
    }
    Some(())
}

/// Solves `L Lᵀ x = b` in place with the factor of [`cholesky`].
#[inline(always)]
pub(crate) fn solve_factored(a: &[f64], b: &mut [f64], k: usize) {
    // L z = b, then Lᵀ x = z
    for r in 0..k {
        b[r] = (b[r] - dot_f64(&a[r * k..r * k + r], &b[..r])) / a[r * k + r];
    }
    for r in (0..k).rev() {
        let mut sum = b[r];
        for j in r + 1..k {
            sum -= a[j * k + r] * b[j];
        }
        b[r] = sum / a[r * k + r];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vector::dot;

    /// Deterministic pseudo-random item vectors.
    fn items(n: usize, k: usize) -> Vec<Vec<f32>> {
        let mut s = 0x9e37_79b9_7f4a_7c15u64;
        (0..n)
            .map(|_| {
                (0..k)
                    .map(|_| {
                        s ^= s << 13;
                        s ^= s >> 7;
                        s ^= s << 17;
                        ((s >> 11) as f64 / (1u64 << 53) as f64 - 0.5) as f32
                    })
                    .collect()
            })
            .collect()
    }

    fn gram(ys: &[Vec<f32>]) -> Gram {
        let mut g = Gram::new(ys[0].len());
        ys.iter().for_each(|y| g.add(y));
        g
    }

    /// The normal equations' residual `‖A x − b‖` computed densely, independently of the
    /// solver: the fold-in must be the exact least-squares solution.
    fn residual(ys: &[Vec<f32>], p: &FoldInParams, seen: &[(usize, f32)], x: &[f32]) -> f64 {
        let k = ys[0].len();
        let mut worst = 0f64;
        for r in 0..k {
            let mut ax = p.regularization * f64::from(x[r]);
            let mut b = 0.0;
            for (i, y) in ys.iter().enumerate() {
                let c = seen
                    .iter()
                    .find(|(j, _)| *j == i)
                    .map_or(1.0, |(_, w)| 1.0 + p.alpha * f64::from(*w));
                let p_i = if c > 1.0 { 1.0 } else { 0.0 };
                ax += c * f64::from(y[r]) * f64::from(dot(y, x));
                b += c * p_i * f64::from(y[r]);
            }
            worst = worst.max((ax - b).abs());
        }
        worst
    }

    #[test]
    fn the_fold_in_is_the_exact_als_user_step() {
        let ys = items(40, 6);
        let p = FoldInParams {
            regularization: 0.7,
            alpha: 3.0,
            ..Default::default()
        };
        let model = FoldModel::new(&gram(&ys), &p).unwrap();
        let seen = [(3usize, 1.0f32), (7, 2.5), (19, 0.5), (33, 4.0)];
        let x = model
            .solve(seen.iter().map(|(i, w)| (ys[*i].as_slice(), *w)))
            .unwrap();
        assert!(residual(&ys, &p, &seen, &x) < 1e-4, "{x:?}");
    }

    #[test]
    fn an_interaction_raises_its_items_score() {
        let ys = items(30, 8);
        let model = FoldModel::new(&gram(&ys), &FoldInParams::default()).unwrap();
        let before = [(1usize, 2.0f32), (2, 1.0)];
        let x0 = model
            .solve(before.iter().map(|(i, w)| (ys[*i].as_slice(), *w)))
            .unwrap();
        let after = [(1usize, 2.0f32), (2, 1.0), (9, 2.0)];
        let x1 = model
            .solve(after.iter().map(|(i, w)| (ys[*i].as_slice(), *w)))
            .unwrap();
        assert!(dot(&x1, &ys[9]) > dot(&x0, &ys[9]));
    }

    #[test]
    fn nothing_positive_folds_to_nothing_and_the_gram_sum_round_trips() {
        let ys = items(5, 3);
        let mut g = gram(&ys);
        let model = FoldModel::new(&g, &FoldInParams::default()).unwrap();
        assert_eq!(model.solve([(ys[0].as_slice(), 0.0)]), None);
        assert_eq!(model.solve([(&[1.0f32][..], 1.0)]), None);
        let before = g.clone();
        g.add(&[1.0, 2.0, 3.0]);
        g.remove(&[1.0, 2.0, 3.0]);
        assert_eq!(g.items(), before.items());
        assert!(
            g.matrix()
                .iter()
                .zip(before.matrix())
                .all(|(a, b)| (a - b).abs() < 1e-9)
        );
        ys.iter().for_each(|y| g.remove(y));
        assert_eq!(FoldModel::new(&g, &FoldInParams::default()), None);
    }

    #[test]
    fn settings_are_checked() {
        assert!(FoldInParams::default().check().is_ok());
        let bad = FoldInParams {
            share: 1.5,
            ..Default::default()
        };
        assert!(bad.check().unwrap_err().message.contains("fold_in.share"));
    }

    #[test]
    fn a_prior_carries_the_trained_items_and_fresh_events_move_it() {
        let ys = items(40, 6);
        let p = FoldInParams {
            regularization: 0.7,
            alpha: 3.0,
            ..Default::default()
        };
        let model = FoldModel::new(&gram(&ys), &p).unwrap();
        let trained = [(3usize, 1.0f32), (7, 2.5), (19, 0.5)];
        let x_lt = model
            .solve(trained.iter().map(|(i, w)| (ys[*i].as_slice(), *w)))
            .unwrap();
        // nothing fresh: the prior itself
        let same = model
            .solve_from(
                Some(&x_lt),
                trained.iter().map(|(i, w)| (ys[*i].as_slice(), *w, 0.0)),
            )
            .unwrap();
        assert!(same.iter().zip(&x_lt).all(|(a, b)| (a - b).abs() < 1e-5));
        // fresh events on a known item and a new one: the exact solve over everything
        let all = [
            (3usize, 1.0f32, 0.0f32),
            (7, 4.0, 1.5),
            (19, 0.5, 0.0),
            (33, 2.0, 2.0),
        ];
        let folded = model
            .solve_from(
                Some(&x_lt),
                all.iter().map(|(i, w, f)| (ys[*i].as_slice(), *w, *f)),
            )
            .unwrap();
        let seen: Vec<(usize, f32)> = all.iter().map(|(i, w, _)| (*i, *w)).collect();
        assert!(residual(&ys, &p, &seen, &folded) < 1e-4, "{folded:?}");
        // an item the state no longer keeps still pulls through the prior
        let kept = &all[1..];
        let partial = model
            .solve_from(
                Some(&x_lt),
                kept.iter().map(|(i, w, f)| (ys[*i].as_slice(), *w, *f)),
            )
            .unwrap();
        let cold = model
            .solve(kept.iter().map(|(i, w, _)| (ys[*i].as_slice(), *w)))
            .unwrap();
        assert!(dot(&partial, &ys[3]) > dot(&cold, &ys[3]));
    }

    #[test]
    fn a_negative_weight_turns_the_vector_away_and_undoes_a_trained_positive() {
        let ys = items(30, 6);
        let model = FoldModel::new(&gram(&ys), &FoldInParams::default()).unwrap();
        let liked = [(1usize, 2.0f32)];
        let x = model
            .solve(liked.iter().map(|(i, w)| (ys[*i].as_slice(), *w)))
            .unwrap();
        let x_neg = model
            .solve([(ys[1].as_slice(), 2.0), (ys[5].as_slice(), -4.0)])
            .unwrap();
        assert!(dot(&x_neg, &ys[5]) < dot(&x, &ys[5]));
        // trained positive on item 5, then disliked: weight -4, of which the trained 3
        let x_lt = model
            .solve([(ys[1].as_slice(), 2.0), (ys[5].as_slice(), 3.0)])
            .unwrap();
        let undone = model
            .solve_from(
                Some(&x_lt),
                [(ys[1].as_slice(), 2.0, 0.0), (ys[5].as_slice(), -4.0, -7.0)],
            )
            .unwrap();
        assert!(
            undone.iter().zip(&x_neg).all(|(a, b)| (a - b).abs() < 1e-4),
            "{undone:?} vs {x_neg:?}"
        );
    }

    /// A random user of `n` items among `ys` with a prior solved from some of them, mixed
    /// trained / fresh / negative weights: `(item, summed weight, fresh weight)`.
    fn user_of(ys: &[Vec<f32>], n: usize, seed: u64) -> Vec<(usize, f32, f32)> {
        let mut s = seed | 1;
        let mut next = move |m: u64| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s % m
        };
        let mut taken = Vec::new();
        while taken.len() < n {
            let i = next(ys.len() as u64) as usize;
            if taken.iter().any(|(j, _, _)| *j == i) {
                continue;
            }
            let w = 0.5 + next(8) as f32 * 0.5;
            taken.push(match next(5) {
                0 => (i, w, w),               // fresh only
                1 => (i, w + 1.0, 1.0),       // trained, more came since
                2 => (i, -2.0 * w, -2.0 * w), // a fresh dislike
                3 => (i, -w, -w - 1.5),       // a trained positive, now disliked
                _ => (i, w, 0.0),             // trained, nothing new
            });
        }
        taken
    }

    fn interactions<'a>(
        ys: &'a [Vec<f32>],
        user: &'a [(usize, f32, f32)],
    ) -> impl Iterator<Item = (&'a [f32], f32, f32)> + 'a {
        user.iter().map(|(i, w, f)| (ys[*i].as_slice(), *w, *f))
    }

    /// The largest coordinate difference relative to the solution's largest coordinate.
    fn rel_error(x: &[f32], exact: &[f32]) -> f64 {
        let scale = exact.iter().fold(0f64, |m, v| m.max(f64::from(v.abs())));
        let worst = x
            .iter()
            .zip(exact)
            .fold(0f64, |m, (a, b)| m.max(f64::from((a - b).abs())));
        worst / scale.max(1e-12)
    }

    #[test]
    fn cg_with_enough_steps_is_the_cholesky_solution() {
        for (seed, k) in [(1u64, 6usize), (2, 12), (3, 16), (4, 24)] {
            let ys = items(120, k);
            let p = FoldInParams {
                regularization: 0.3 + seed as f64,
                alpha: 0.5 * seed as f64,
                ..Default::default()
            };
            let model = FoldModel::new(&gram(&ys), &p).unwrap();
            let trained: Vec<(usize, f32)> =
                (0..15).map(|i| (i * 7 % 120, 1.0 + i as f32)).collect();
            let prior = model
                .solve(trained.iter().map(|(i, w)| (ys[*i].as_slice(), *w)))
                .unwrap();
            let user = user_of(&ys, 30, seed);
            for prior in [None, Some(prior.as_slice())] {
                let exact = model.solve_from(prior, interactions(&ys, &user)).unwrap();
                // from 0 (or the prior) and from an unrelated start: CG converges in k
                // steps in exact arithmetic; 2k leaves room for rounding. The items' part
                // of `A·v` is in f32, so CG gets as close as f32 allows: an f64-only CG
                // stayed under 1e-5, the f32 items' part reached 1.25e-5 (k 16, seed 3)
                let far: Vec<f32> = ys[99].iter().map(|v| v * 50.0).collect();
                for start in [None, Some(far.as_slice())] {
                    let cg = model
                        .solve_cg(prior, start, 2 * k, interactions(&ys, &user))
                        .unwrap();
                    let err = rel_error(&cg, &exact);
                    assert!(err < 1e-4, "k {k} seed {seed}: {err:e} {cg:?} vs {exact:?}");
                }
            }
        }
    }

    #[test]
    fn cg_solves_the_same_system_in_the_edge_cases() {
        let ys = items(40, 6);
        let model = FoldModel::new(&gram(&ys), &FoldInParams::default()).unwrap();
        // nothing fresh from the prior: the prior itself, at once
        let x_lt = model
            .solve([(ys[1].as_slice(), 2.0), (ys[5].as_slice(), 3.0)])
            .unwrap();
        let same = model
            .solve_cg(
                Some(&x_lt),
                None,
                1,
                [(ys[1].as_slice(), 2.0, 0.0), (ys[5].as_slice(), 3.0, 0.0)],
            )
            .unwrap();
        assert!(rel_error(&same, &x_lt) < 1e-6, "{same:?} vs {x_lt:?}");
        // nothing in the system: none, as the exact solve
        assert_eq!(
            model.solve_cg(None, None, 3, [(ys[0].as_slice(), 0.0, 0.0)]),
            None
        );
        // a start of another dimension is ignored (the prior is the start)
        let user = [(ys[1].as_slice(), 2.0, 0.0), (ys[5].as_slice(), -4.0, -7.0)];
        let exact = model.solve_from(Some(&x_lt), user).unwrap();
        let cg = model
            .solve_cg(Some(&x_lt), Some(&[1.0, 2.0][..]), 24, user)
            .unwrap();
        assert!(rel_error(&cg, &exact) < 1e-5, "{cg:?} vs {exact:?}");
        // the configured solver is what `fold` runs
        let chol = model.clone().with_solver(FoldSolver::Cholesky, 3);
        assert_eq!(chol.fold(Some(&x_lt), None, user), Some(exact));
        let one = model.clone().with_solver(FoldSolver::Cg, 1);
        assert_eq!(
            one.fold(Some(&x_lt), None, user),
            model.solve_cg(Some(&x_lt), None, 1, user)
        );
    }

    /// The serving case at the served shape (k = 64, λ 20, alpha 0.5, vectors of norm
    /// ~1): a user of 60 items folded exactly, then one more event, then 3 CG steps from
    /// the previous vector — against 3 steps from the prior, and the exact solve.
    #[test]
    fn three_warm_cg_steps_after_one_more_event_are_close_to_exact() {
        let k = 64;
        let ys: Vec<Vec<f32>> = items(3_000, k)
            .into_iter()
            .map(|y| y.into_iter().map(|v| v * 0.4).collect())
            .collect();
        let model = FoldModel::new(&gram(&ys), &FoldInParams::default()).unwrap();
        let mut worst_warm = 0f64;
        let mut worst_cold = 0f64;
        for seed in 1..=8u64 {
            let user = user_of(&ys, 60, seed);
            let trained: Vec<(&[f32], f32)> = user
                .iter()
                .filter(|(_, w, f)| w - f > 0.0)
                .map(|(i, w, f)| (ys[*i].as_slice(), w - f))
                .collect();
            let prior = model.solve(trained).unwrap();
            let before = model
                .solve_from(Some(&prior), interactions(&ys, &user))
                .unwrap();
            // one more click on an item new to the user
            let mut after = user.clone();
            after.insert(0, ((seed as usize * 37) % 3_000, 2.0, 2.0));
            let exact = model
                .solve_from(Some(&prior), interactions(&ys, &after))
                .unwrap();
            let warm = model
                .solve_cg(Some(&prior), Some(&before), 3, interactions(&ys, &after))
                .unwrap();
            let cold = model
                .solve_cg(Some(&prior), None, 3, interactions(&ys, &after))
                .unwrap();
            worst_warm = worst_warm.max(rel_error(&warm, &exact));
            worst_cold = worst_cold.max(rel_error(&cold, &exact));
        }
        println!("3 CG steps, relative error: warm {worst_warm:e}, from the prior {worst_cold:e}");
        assert!(worst_warm < 1e-3, "warm {worst_warm:e}");
        assert!(
            worst_warm <= worst_cold,
            "warm {worst_warm:e} vs cold {worst_cold:e}"
        );
    }

    #[test]
    fn the_dispatched_solvers_give_the_baseline_builds_vector_bit_for_bit() {
        // k = 64 (the served size) and sizes that leave a remainder to the four-lane loops
        for k in [64, 10, 7] {
            let ys = items(400, k);
            let model = FoldModel::new(&gram(&ys), &FoldInParams::default()).unwrap();
            for seed in 1..=4u64 {
                let user = user_of(&ys, 50, seed);
                let prior = model
                    .solve_from(None, interactions(&ys, &user[1..]))
                    .unwrap();
                let run = |arch| {
                    model
                        .solve_cg_on(arch, Some(&prior), None, 3, interactions(&ys, &user))
                        .unwrap()
                };
                let bits = |v: Vec<f32>| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                let (best, base) = (run(pulp::Arch::new()), run(pulp::Arch::Scalar));
                assert_ne!(best, prior, "the steps moved the vector");
                assert_eq!(bits(best), bits(base), "cg, k {k} seed {seed}");
                let exact = |arch| {
                    model
                        .solve_from_on(arch, Some(&prior), interactions(&ys, &user))
                        .unwrap()
                };
                let (best, base) = (exact(pulp::Arch::new()), exact(pulp::Arch::Scalar));
                assert_eq!(bits(best), bits(base), "cholesky, k {k} seed {seed}");
            }
        }
    }

    #[test]
    fn the_solver_setting_round_trips_and_is_checked() {
        let p: FoldInParams =
            serde_json::from_str(r#"{"solver": "cholesky", "cg_steps": 5}"#).unwrap();
        assert_eq!((p.solver, p.cg_steps), (FoldSolver::Cholesky, 5));
        let back: FoldInParams = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!(back, p);
        assert_eq!(p.solver.as_str(), "cholesky");
        let default: FoldInParams = serde_json::from_str("{}").unwrap();
        assert_eq!((default.solver, default.cg_steps), (FoldSolver::Cg, 3));
        assert!(serde_json::from_str::<FoldInParams>(r#"{"solver": "qr"}"#).is_err());
        for steps in [0, MAX_CG_STEPS + 1] {
            let bad = FoldInParams {
                cg_steps: steps,
                ..Default::default()
            };
            let err = bad.check().unwrap_err().message;
            assert!(err.contains("fold_in.cg_steps"), "{err}");
        }
        let ok = FoldInParams {
            cg_steps: MAX_CG_STEPS,
            ..Default::default()
        };
        assert!(ok.check().is_ok());
    }
}
