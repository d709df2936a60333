//! Hypergradient algorithms, one file each, written against [`Backend`] and [`Problem`] only.
//! Each implements [`Algorithm`]: its inner loop from the warm start, then a hypergradient
//! estimate. The shared outer update (SGD, momentum, Adam; step schedules) lives in
//! [`crate::outer`]. The pieces several algorithms share — inner descent, a Neumann step, CG —
//! are here, written once.

pub mod aid_cg;
pub mod aid_fp;
pub mod amigo;
pub mod bsa;
pub mod double_momentum;
pub mod hoag;
pub mod ma_soba;
pub mod mrbo;
pub mod reverse;
pub mod saba;
pub mod soba;
pub mod srba;
pub mod stocbio;
pub mod sustain;
pub mod ttsa;

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use crate::backend::{Backend, Coef, Rows};
use crate::problems::{NeumannStep, Problem};
use crate::sampler::Sampler;
use crate::{Error, Result};

/// The algorithms' settings, with the paper's names.
#[derive(Clone, Debug, Serialize)]
pub struct Hyper {
    /// T: inner steps per outer iteration (warm-started).
    pub t: usize,
    /// Q: Neumann terms (stocBiO, BSA, TTSA); K: CG, fixed-point or backpropagated steps
    /// (AID-CG, AID-FP, reverse, HOAG) — the reference code's `--hessian_q`.
    pub q: usize,
    /// η: Neumann step size (and SOBA's, MA-SOBA's and AmIGO's step for v).
    pub eta: f64,
    /// α: inner step size.
    pub alpha: f64,
    /// β: outer step size.
    pub beta: f64,
    /// Mini-batch size for the training-set oracles (stochastic algorithms).
    pub batch_size: usize,
    /// Mini-batch size for the validation-set oracle (stochastic algorithms' D_F).
    pub val_batch_size: usize,
}

impl Hyper {
    /// Rejects settings no run can use: non-positive or non-finite step sizes, zero counts.
    pub fn validate(&self) -> Result<()> {
        for (name, v) in [("eta", self.eta), ("inner_lr", self.alpha), ("outer_lr", self.beta)] {
            if !(v.is_finite() && v > 0.0) {
                return Err(Error::InvalidArgument(format!("--{name} must be a positive finite number, got {v}")));
            }
        }
        for (name, v) in [("T", self.t), ("hessian_q", self.q), ("batch_size", self.batch_size), ("val_batch_size", self.val_batch_size)] {
            if v == 0 {
                return Err(Error::InvalidArgument(format!("--{name} must be at least 1")));
            }
        }
        Ok(())
    }
}

/// How the outer step size evolves with the outer iteration k (0-based).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub enum Schedule {
    /// β_k = β.
    Constant,
    /// β_k = β / (k + 1)^p  (BSA: p = 1/2; TTSA: p = 3/5).
    Power(f64),
}

impl Schedule {
    /// The factor β_k / β at outer iteration `k` (0-based).
    pub fn factor(self, k: usize) -> f64 {
        match self {
            Schedule::Constant => 1.0,
            Schedule::Power(p) => ((k + 1) as f64).powf(-p),
        }
    }
}

/// What one outer iteration of an [`Algorithm`] works on: the outer iteration `k` (0-based),
/// the hyperparameters `x`, the warm-started inner variable `y` (updated in place), the
/// hypergradient estimate `h` (written), and the run's mini-batch sampler.
pub struct Step<'a, B: Backend> {
    /// The outer iteration, 0-based (for algorithms whose inner steps decay with it).
    pub k: usize,
    /// The hyperparameters x at this iteration.
    pub x: &'a B::Vector,
    /// The inner variable y: the last iteration's value on entry (warm start), this one's on exit.
    pub y: &'a mut B::Vector,
    /// Where the hypergradient estimate goes.
    pub h: &'a mut B::Vector,
    /// The run's seeded mini-batch sampler.
    pub rng: &'a mut Sampler,
}

/// One outer iteration's inner loop and hypergradient estimate: what a solver is. The outer
/// step on x, the step-size schedule's factor, data-chosen steps and the oracle counts are the
/// [`OuterLoop`](crate::outer::OuterLoop)'s, the same for every algorithm.
///
/// A user's algorithm implements this for any problem (`impl<B: Backend, P: Problem<B>>`) and
/// runs through [`OuterLoop::with_algorithm`](crate::outer::OuterLoop::with_algorithm);
/// `core/examples/custom_algorithm.rs` writes one in a few lines.
pub trait Algorithm<B: Backend, P: Problem<B>> {
    /// Runs the inner loop on `step.y` (warm start) at `step.x` in outer iteration `step.k`,
    /// then writes the hypergradient estimate into `step.h`. Enqueues work only: nothing is read.
    fn inner_and_hypergradient(&mut self, be: &B, p: &P, step: Step<'_, B>);

    /// The settings in use, for the outer loop to replace the step sizes α and η when it
    /// re-estimates them from the data ([`crate::steps::AutoSteps`]).
    fn hyper_mut(&mut self) -> &mut Hyper;

    /// The outer step-size schedule the algorithm's paper prescribes.
    fn outer_schedule(&self) -> Schedule {
        Schedule::Constant
    }
}

/// A boxed algorithm (what [`AlgKind::build`] returns) is that algorithm.
impl<B: Backend, P: Problem<B>, A: Algorithm<B, P> + ?Sized> Algorithm<B, P> for Box<A> {
    fn inner_and_hypergradient(&mut self, be: &B, p: &P, step: Step<'_, B>) {
        (**self).inner_and_hypergradient(be, p, step)
    }
    fn hyper_mut(&mut self) -> &mut Hyper {
        (**self).hyper_mut()
    }
    fn outer_schedule(&self) -> Schedule {
        (**self).outer_schedule()
    }
}

/// The algorithms by name (names as in the reference code, parsed case-insensitively).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum AlgKind {
    /// stocBiO as the paper states it (Algorithms 2 and 3): fresh mini-batches everywhere.
    #[serde(rename = "stocBiO")]
    StocBiO,
    /// stocBiO as the reference code implements it (`--compat v1|head`).
    #[serde(rename = "stocBiO-compat")]
    StocBiOReference(stocbio::Reference),
    /// AID with conjugate gradient for the linear system.
    #[serde(rename = "AID-CG")]
    AidCg,
    /// AID with fixed-point iteration for the linear system.
    #[serde(rename = "AID-FP")]
    AidFp,
    /// Iterative differentiation: backpropagation through the last K inner steps (ITD).
    #[serde(rename = "reverse")]
    Reverse,
    /// HOAG (Pedregosa 2016): inner problem and linear system solved to decreasing tolerances.
    #[serde(rename = "HOAG")]
    Hoag,
    /// BSA (Ghadimi & Wang 2018): a randomly truncated Neumann series.
    #[serde(rename = "BSA")]
    Bsa,
    /// TTSA (Hong et al. 2020): one inner step per outer step, two timescales.
    #[serde(rename = "TTSA")]
    Ttsa,
    /// SOBA (Dagréou et al. 2022): y, v and x moved together in a single loop.
    #[serde(rename = "SOBA")]
    Soba,
    /// SABA (Dagréou et al. 2022): SOBA with its five stochastic terms variance-reduced by SAGA.
    #[serde(rename = "SABA")]
    Saba,
    /// SRBA (Dagréou et al. 2024): SOBA with SARAH-type recursive directions, restarted from
    /// full batches periodically.
    #[serde(rename = "SRBA")]
    Srba,
    /// MA-SOBA (Chen, Xiao, Balasubramanian 2024): SOBA with x moved along a moving average of
    /// its hypergradient direction.
    #[serde(rename = "MA-SOBA")]
    MaSoba,
    /// SUSTAIN (Khanduri et al. 2021): single loop, STORM momentum on the inner gradient and on
    /// a randomly truncated Neumann hypergradient.
    #[serde(rename = "SUSTAIN")]
    Sustain,
    /// MRBO (Yang, Ji, Liang 2021): single loop, STORM momentum on the inner gradient and on
    /// stocBiO's Neumann hypergradient.
    #[serde(rename = "MRBO")]
    Mrbo,
    /// AmIGO (Arbel & Mairal 2022): stochastic inner steps, then stochastic steps on the linear
    /// system, both warm-started across outer steps.
    #[serde(rename = "AmIGO")]
    Amigo,
}

impl AlgKind {
    /// Every algorithm in its default (paper) form, in the order the CLI lists them.
    pub const ALL: [AlgKind; 14] = [
        AlgKind::StocBiO,
        AlgKind::AidCg,
        AlgKind::AidFp,
        AlgKind::Reverse,
        AlgKind::Hoag,
        AlgKind::Bsa,
        AlgKind::Ttsa,
        AlgKind::Soba,
        AlgKind::Saba,
        AlgKind::Srba,
        AlgKind::MaSoba,
        AlgKind::Sustain,
        AlgKind::Mrbo,
        AlgKind::Amigo,
    ];

    /// Whether the estimator samples mini-batches (so repeated draws differ).
    pub fn is_stochastic(self) -> bool {
        matches!(
            self,
            AlgKind::StocBiO
                | AlgKind::Bsa
                | AlgKind::Ttsa
                | AlgKind::Soba
                | AlgKind::Saba
                | AlgKind::Srba
                | AlgKind::MaSoba
                | AlgKind::Sustain
                | AlgKind::Mrbo
                | AlgKind::Amigo
        )
    }

    /// Whether the method moves y, the linear system's solution v and x together by one step
    /// each (SOBA, its variance-reduced forms and MA-SOBA): x must then move slowly enough for v to
    /// track −H⁻¹∇f, so such methods take a smaller outer step than the double-loop ones.
    pub fn is_joint(self) -> bool {
        matches!(self, AlgKind::Soba | AlgKind::Saba | AlgKind::Srba | AlgKind::MaSoba)
    }

    /// The display name, as in the reference code ([`FromStr`] parses those of [`AlgKind::ALL`]).
    pub fn name(self) -> &'static str {
        match self {
            AlgKind::StocBiO => "stocBiO",
            AlgKind::StocBiOReference(stocbio::Reference::V1) => "stocBiO (compat v1)",
            AlgKind::StocBiOReference(stocbio::Reference::Head) => "stocBiO (compat head)",
            AlgKind::AidCg => "AID-CG",
            AlgKind::AidFp => "AID-FP",
            AlgKind::Reverse => "reverse",
            AlgKind::Hoag => "HOAG",
            AlgKind::Bsa => "BSA",
            AlgKind::Ttsa => "TTSA",
            AlgKind::Soba => "SOBA",
            AlgKind::Saba => "SABA",
            AlgKind::Srba => "SRBA",
            AlgKind::MaSoba => "MA-SOBA",
            AlgKind::Sustain => "SUSTAIN",
            AlgKind::Mrbo => "MRBO",
            AlgKind::Amigo => "AmIGO",
        }
    }

    /// The reference code's version `reference` of this algorithm (only stocBiO has them).
    pub fn with_reference(self, reference: stocbio::Reference) -> Result<Self> {
        match self {
            AlgKind::StocBiO => Ok(AlgKind::StocBiOReference(reference)),
            other => Err(Error::InvalidArgument(format!("--compat applies to stocBiO only, not {other}"))),
        }
    }

    /// Refuses combinations a problem cannot run (the reference stocBiO needs g on validation
    /// batches, which per-sample weights do not have).
    pub fn check<B: Backend, P: Problem<B>>(self, p: &P) -> Result<()> {
        if matches!(self, AlgKind::StocBiOReference(_)) && p.val_as_train().is_none() {
            return Err(Error::InvalidArgument(format!("{self} needs g on validation batches, which this problem does not define")));
        }
        Ok(())
    }

    /// A fresh instance with workspaces sized for `p`.
    pub fn build<B: Backend + 'static, P: Problem<B>>(self, be: &B, p: &P, hyper: &Hyper) -> Box<dyn Algorithm<B, P>> {
        let h = hyper.clone();
        match self {
            AlgKind::StocBiO => Box::new(stocbio::StocBiO::new(be, p, h)),
            AlgKind::StocBiOReference(r) => Box::new(stocbio::StocBiO::with_reference(be, p, h, r)),
            AlgKind::AidCg => Box::new(aid_cg::AidCg::new(be, p, h)),
            AlgKind::AidFp => Box::new(aid_fp::AidFp::new(be, p, h)),
            AlgKind::Reverse => Box::new(reverse::Reverse::new(be, p, h)),
            AlgKind::Hoag => Box::new(hoag::Hoag::new(be, p, h)),
            AlgKind::Bsa => Box::new(bsa::Bsa::new(be, p, h)),
            AlgKind::Ttsa => Box::new(ttsa::Ttsa::new(be, p, h)),
            AlgKind::Soba => Box::new(soba::Soba::new(be, p, h)),
            AlgKind::Saba => Box::new(saba::Saba::new(be, p, h)),
            AlgKind::Srba => Box::new(srba::Srba::new(be, p, h)),
            AlgKind::MaSoba => Box::new(ma_soba::MaSoba::new(be, p, h)),
            AlgKind::Sustain => Box::new(sustain::Sustain::new(be, p, h)),
            AlgKind::Mrbo => Box::new(mrbo::Mrbo::new(be, p, h)),
            AlgKind::Amigo => Box::new(amigo::Amigo::new(be, p, h)),
        }
    }
}

impl fmt::Display for AlgKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for AlgKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        AlgKind::ALL.into_iter().find(|a| a.name().eq_ignore_ascii_case(s)).ok_or_else(|| {
            let names: Vec<_> = AlgKind::ALL.iter().map(|a| a.name()).collect();
            Error::InvalidArgument(format!("unknown algorithm {s:?} (expected one of: {})", names.join(", ")))
        })
    }
}

// ---- pieces shared by several algorithms ----

/// How an inner loop descends: `steps` steps of size α, each on a fresh training batch of
/// `batch` rows (`None`: the full training set).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct InnerSteps {
    /// How many steps (T in the papers).
    pub steps: usize,
    /// The step size α.
    pub alpha: f64,
    /// Rows per step's batch; `None` for full-batch steps.
    pub batch: Option<usize>,
}

/// `y ← y − α ∇_y g(x, y; S_t)` as `how` says (the problem's fused step; `grad` is its
/// y-sized scratch).
pub fn inner_descent<B: Backend, P: Problem<B>>(
    be: &B,
    p: &P,
    x: &B::Vector,
    y: &mut B::Vector,
    grad: &mut B::Vector,
    how: InnerSteps,
    rng: &mut Sampler,
) {
    for _ in 0..how.steps {
        match how.batch {
            Some(b) => {
                let s_t = be.indices(&rng.train_batch(p.n_train(), b));
                p.inner_step(be, x, y, how.alpha, Rows::Batch(&s_t), grad);
            }
            None => p.inner_step(be, x, y, how.alpha, Rows::All, grad),
        }
    }
}

/// A point (x, y) where g's Hessian is taken.
#[derive(Clone, Copy)]
pub struct Point<'a, B: Backend> {
    /// The hyperparameters.
    pub x: &'a B::Vector,
    /// The inner variable.
    pub y: &'a B::Vector,
}

/// The implicit-function term of a hypergradient: `c·J_rows[v]`, the mixed product of g on
/// `rows` applied to the adjoint `v` (a Neumann sum, a CG or fixed-point solution), scaled by
/// `c` (1 for a solved system; η or α where the series' step is folded into the scale).
#[derive(Clone, Copy)]
pub struct Adjoint<'a, B: Backend> {
    /// The adjoint vector v (y-sized).
    pub v: &'a B::Vector,
    /// The factor c.
    pub c: f64,
    /// The training rows the mixed product reads.
    pub rows: Rows<'a, B::Indices>,
}

/// `h ← ∇ₓf(x, y; rows_f) − c·J_rows[v]`: the hypergradient assembled from its adjoint term,
/// the tail every implicit-differentiation solver shares.
pub fn implicit_hypergradient<B: Backend, P: Problem<B>>(
    be: &B,
    p: &P,
    x: &B::Vector,
    y: &B::Vector,
    adjoint: Adjoint<'_, B>,
    rows_f: Rows<'_, B::Indices>,
    h: &mut B::Vector,
) {
    p.mixed_jvp(be, x, y, adjoint.v, adjoint.rows, h);
    // (A factor of −1 · −1 leaves J[v] as it is: no pass over h.)
    if adjoint.c != -1.0 {
        be.scale(Coef::c(-adjoint.c), h);
    }
    p.add_outer_grad_x(be, x, y, rows_f, h);
}

/// The five stochastic terms of SOBA's directions at one point, each on one batch: what the
/// SOBA family (SABA, SRBA) combines into `D_y = ∇_y g`, `D_v = Hv + ∇_y f` and
/// `D_x = J v + ∇_x f`.
pub struct Terms<B: Backend> {
    /// `∇_y g` on the training batch.
    pub grad_g: B::Vector,
    /// `∇²_yy g · v` on the training batch.
    pub hvp: B::Vector,
    /// `∇²_xy g · v` on the training batch (x-sized).
    pub cross: B::Vector,
    /// `∇_y f` on the validation batch.
    pub grad_f_y: B::Vector,
    /// `∇_x f` on the validation batch (x-sized).
    pub grad_f_x: B::Vector,
}

impl<B: Backend> Terms<B> {
    /// Zeroed terms for `p`, labelled `label.*`.
    pub fn zeros<P: Problem<B>>(be: &B, p: &P, label: &str) -> Self {
        let (x, y) = (p.dim_x(), p.dim_y());
        Terms {
            grad_g: be.zeros(y, &format!("{label}.grad_g")),
            hvp: be.zeros(y, &format!("{label}.hvp")),
            cross: be.zeros(x, &format!("{label}.cross")),
            grad_f_y: be.zeros(y, &format!("{label}.grad_f_y")),
            grad_f_x: be.zeros(x, &format!("{label}.grad_f_x")),
        }
    }

    /// The training-batch terms at (x, y, v).
    pub fn eval_g<P: Problem<B>>(&mut self, be: &B, p: &P, at: [&B::Vector; 3], rows: Rows<'_, B::Indices>) {
        let [x, y, v] = at;
        p.inner_grad(be, x, y, rows, &mut self.grad_g);
        p.inner_hvp(be, x, y, v, rows, &mut self.hvp);
        p.mixed_jvp(be, x, y, v, rows, &mut self.cross);
    }

    /// The validation-batch terms at (x, y).
    pub fn eval_f<P: Problem<B>>(&mut self, be: &B, p: &P, at: [&B::Vector; 2], rows: Rows<'_, B::Indices>) {
        let [x, y] = at;
        p.outer_grad_y(be, x, y, rows, &mut self.grad_f_y);
        be.fill(Coef::c(0.0), &mut self.grad_f_x);
        p.add_outer_grad_x(be, x, y, rows, &mut self.grad_f_x);
    }
}

/// The mini-batches of one Neumann-series hypergradient ([`neumann_hypergradient`]), drawn by
/// the caller (so that an estimate can be repeated on the same batches at another point).
pub struct NeumannBatches<B: Backend> {
    /// D_F: the validation rows of ∇_y f and ∇ₓf.
    pub d_f: B::Indices,
    /// B_1..B_q: one training batch per Hessian-vector product.
    pub hvp: Vec<B::Indices>,
    /// D_G: the training rows of the mixed product J.
    pub d_g: B::Indices,
}

/// Which Neumann series [`neumann_hypergradient`] runs: its batches, its step η, and the factor
/// c on J's output.
pub struct NeumannSeries<'a, B: Backend> {
    /// The batches, drawn by the caller.
    pub batches: &'a NeumannBatches<B>,
    /// η: the Neumann step.
    pub eta: f64,
    /// c: η for the summed series, Qη for BSA's randomly truncated one.
    pub c: f64,
}

/// The y-sized workspaces of [`neumann_hypergradient`]: the current term r, the HVP's scratch,
/// and (for a summed series) Σ r_j.
pub struct NeumannWork<'a, B: Backend> {
    /// r_j.
    pub r: &'a mut B::Vector,
    /// The Neumann step's scratch.
    pub hr: &'a mut B::Vector,
    /// `Some`: v = Σ_{j=0..q} r_j (stocBiO, MRBO); `None`: v = r_q (BSA, SUSTAIN).
    pub sum: Option<&'a mut B::Vector>,
}

/// `h ← ∇ₓf(D_F) − c·J_{D_G}[v]` with v built from the Neumann terms of ∇_y f on the series'
/// batches:
/// `r_0 = ∇_y f(x, y; D_F)`, `r_j = (I − η H_{B_j}) r_{j−1}`, and v their sum or the last one
/// as `work` says — the series stocBiO, BSA, TTSA, SUSTAIN and MRBO share (`c` folds η, or
/// BSA's Qη, into J's output).
pub fn neumann_hypergradient<B: Backend, P: Problem<B>>(
    be: &B,
    p: &P,
    at: Point<'_, B>,
    series: NeumannSeries<'_, B>,
    work: NeumannWork<'_, B>,
    h: &mut B::Vector,
) {
    let (Point { x, y }, NeumannSeries { batches, eta, c }) = (at, series);
    let NeumannWork { r, hr, mut sum } = work;
    p.outer_grad_y(be, x, y, Rows::Batch(&batches.d_f), r);
    if let Some(sum) = sum.as_deref_mut() {
        be.copy(r, sum);
    }
    for b_j in &batches.hvp {
        p.neumann_step(be, x, y, r, NeumannStep { eta, rows: Rows::Batch(b_j) }, hr);
        if let Some(sum) = sum.as_deref_mut() {
            be.axpy(Coef::c(1.0), r, sum);
        }
    }
    let v = match sum {
        Some(sum) => &*sum,
        None => &*r,
    };
    implicit_hypergradient(be, p, x, y, Adjoint { v, c, rows: Rows::Batch(&batches.d_g) }, Rows::Batch(&batches.d_f), h);
}

/// How [`Cg::solve`] runs: `iters` iterations from the `v` given (`warm`) or from 0, moving
/// only while ‖r‖ > `tol` (decided on the device).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CgSolve {
    /// Iterations (K in the papers).
    pub iters: usize,
    /// Start from the `v` given instead of 0.
    pub warm: bool,
    /// Stop moving once ‖r‖ ≤ tol.
    pub tol: Option<f64>,
}

/// Conjugate gradient for `H v = b` (H = ∇²_yy g on the full training set), with every scalar
/// on the device. `tol`: stop moving once ‖r‖ ≤ tol (decided on the device by gated steps).
pub struct Cg<B: Backend> {
    r: B::Vector,
    d: B::Vector,
    hd: B::Vector,
    rho: B::Scalar,
    rho_next: B::Scalar,
    d_hd: B::Scalar,
}

impl<B: Backend> Cg<B> {
    /// Workspaces for systems of dimension `n` (the inner variable's).
    pub fn new(be: &B, n: usize) -> Self {
        Cg {
            r: be.zeros(n, "cg.r"),
            d: be.zeros(n, "cg.d"),
            hd: be.zeros(n, "cg.hd"),
            rho: be.scalar("cg.rho"),
            rho_next: be.scalar("cg.rho_next"),
            d_hd: be.scalar("cg.d_hd"),
        }
    }

    /// CG iterations on `H v = b`, H the full-batch inner Hessian at `at`, as `run` says.
    pub fn solve<P: Problem<B>>(&mut self, be: &B, p: &P, at: Point<'_, B>, b: &B::Vector, v: &mut B::Vector, run: CgSolve) {
        let (Point { x, y }, CgSolve { iters, warm, tol }) = (at, run);
        // r = b − H v (= b from v = 0), d = r, ρ = rᵀr.
        if warm {
            p.inner_hvp(be, x, y, v, Rows::All, &mut self.hd);
            be.copy(b, &mut self.r);
            be.axpy(Coef::c(-1.0), &self.hd, &mut self.r);
        } else {
            be.fill(Coef::c(0.0), v);
            be.copy(b, &mut self.r);
        }
        be.copy(&self.r, &mut self.d);
        be.dot(&self.r, &self.r, 1.0, &self.rho, false);
        let threshold = tol.map_or(0.0, |t| t * t);
        for _ in 0..iters {
            p.inner_hvp(be, x, y, &self.d, Rows::All, &mut self.hd);
            be.dot(&self.d, &self.hd, 1.0, &self.d_hd, false);
            // α = ρ / dᵀHd (0 once ρ ≤ tol²):  v += α d,  r −= α H d
            let alpha = |sign| Coef::ratio(sign, &self.rho, &self.d_hd).gated(&self.rho, threshold);
            be.axpy(alpha(1.0), &self.d, v);
            be.axpy(alpha(-1.0), &self.hd, &mut self.r);
            // β = ρ' / ρ:  d = r + β d
            be.dot(&self.r, &self.r, 1.0, &self.rho_next, false);
            be.axpby(Coef::c(1.0), &self.r, Coef::ratio(1.0, &self.rho_next, &self.rho), &mut self.d);
            std::mem::swap(&mut self.rho, &mut self.rho_next);
        }
    }
}
