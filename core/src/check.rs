//! Checking a problem's oracles against finite differences: what a user runs on a new
//! [`Problem`] before trusting a hypergradient built from it.
//!
//! Every oracle of the trait is compared with an independent reference computed from the
//! problem's own lower-order oracles, by central differences `(φ(z + εu) − φ(z − εu)) / 2ε`:
//!
//! | oracle | reference |
//! |---|---|
//! | `inner_grad` | central differences of `inner_loss` in y |
//! | `inner_hvp` | central differences of `inner_grad` in y along v (as a vector) |
//! | `inner_hvp` symmetry | `⟨u, Hv⟩ = ⟨v, Hu⟩` |
//! | `mixed_jvp` | central differences of `⟨inner_grad, v⟩` in x |
//! | `outer_grad_y` | central differences of `outer_loss` in y |
//! | `add_outer_grad_x` | central differences of `outer_loss` in x (added into zeros) |
//! | `add_outer_grad_x` adds | what it adds to a non-zero vector equals what it adds to zeros |
//! | `inner_step` | `y − α·inner_grad` (the fused path equals the unfused one) |
//! | `neumann_step` | `r − η·inner_hvp(r)` |
//!
//! on all rows and, when [`CheckOptions::batch`] is set, on a seeded mini-batch (training rows
//! for g, validation rows for f), and again for the view [`Problem::val_as_train`] returns, if
//! any. Derivatives are checked along a few seeded random unit directions (along every
//! coordinate when the dimension is at most [`COORDINATE_DIM`]): a wrong entry anywhere shows in
//! every random direction. Outputs the trait says are overwritten start as NaN, so an oracle
//! that reads or accumulates into them fails instead of passing by luck.
//!
//! Check at a generic point (random x and y), not at a minimiser: there the gradients are
//! near zero and the differences' rounding dominates them.

use std::fmt;

use serde::{Serialize, Serializer};

use crate::backend::{Backend, Rows};
use crate::problems::{NeumannStep, Problem};
use crate::sampler::Sampler;
use crate::{Coef, Error, Result};

/// Up to this dimension a derivative is checked along every coordinate instead of random
/// directions.
pub const COORDINATE_DIM: usize = 8;

/// Settings of [`check_oracles_with`].
#[derive(Clone, Debug, PartialEq)]
pub struct CheckOptions {
    /// The length ε of the finite-difference step (directions have unit norm).
    pub fd_step: f64,
    /// The largest relative error that passes.
    pub tolerance: f64,
    /// Random directions per derivative check (dimensions above [`COORDINATE_DIM`]).
    pub directions: usize,
    /// Seeds the directions and the mini-batch.
    pub seed: u64,
    /// `Some(b)`: also check on a seeded mini-batch of `b` training rows (for g) and `b`
    /// validation rows (for f), each at most the set's size; skipped for a problem without rows.
    pub batch: Option<usize>,
}

/// For an f64 backend ([`CpuBackend<f64>`](crate::cpu::CpuBackend)): ε = 1e-5, whose central
/// differences are accurate to about 1e-10 relative on smooth problems (truncation ε², rounding
/// 1e-16/ε), and a tolerance of 1e-6, far above that and far below any real error; 3
/// directions; seed 0; a mini-batch of 10 rows. An f32 backend (the GPU, `CpuBackend<f32>`)
/// rounds every value to 6e-8 relative, which ε = 1e-5 turns into errors of 1e-2 and more in
/// the differences: use [`CheckOptions::for_f32`].
impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions { fd_step: 1e-5, tolerance: 1e-6, directions: 3, seed: 0, batch: Some(10) }
    }
}

impl CheckOptions {
    /// For an f32 backend: ε = 3e-2. f32 rounds a loss to 6e-8 of its size, and the difference
    /// divides that by ε while a random unit direction's derivative is only ~‖∇‖/√dim, so
    /// rounding dominates below that step; truncation (~ε²) stays near 1e-4 at it. The shipped
    /// problems then agree to a few 1e-4; the tolerance, 5e-3, is ten times that (a wrong
    /// derivative is off by far more; check in f64 to see smaller errors). The rest as
    /// [`Default`].
    pub fn for_f32() -> Self {
        CheckOptions { fd_step: 3e-2, tolerance: 5e-3, ..Self::default() }
    }

    /// Refuses settings that cannot give a meaningful check.
    pub fn validate(&self) -> Result<()> {
        let positive = |name: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(Error::InvalidArgument(format!("{name} must be positive and finite, got {v}")))
            }
        };
        positive("fd_step", self.fd_step)?;
        positive("tolerance", self.tolerance)?;
        if self.directions == 0 {
            return Err(Error::InvalidArgument("directions must be at least 1".into()));
        }
        if self.batch == Some(0) {
            return Err(Error::InvalidArgument("batch must be at least 1 row (or none)".into()));
        }
        Ok(())
    }
}

/// An oracle of [`Problem`] (or a property of one) that a [`Check`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Oracle {
    /// `inner_grad`: ∇_y g.
    InnerGrad,
    /// `inner_hvp`: ∇²_yy g · v.
    InnerHvp,
    /// `⟨u, Hv⟩ = ⟨v, Hu⟩`: the inner Hessian is symmetric.
    HvpSymmetry,
    /// `mixed_jvp`: `J[v] = ∇_x⟨∇_y g, v⟩`.
    MixedJvp,
    /// `outer_grad_y`: ∇_y f.
    OuterGradY,
    /// `add_outer_grad_x`: ∇_x f.
    OuterGradX,
    /// `add_outer_grad_x` adds to what `out` holds instead of overwriting it.
    OuterGradXAdds,
    /// `inner_step`: the fused `y ← y − α ∇_y g`.
    InnerStep,
    /// `neumann_step`: the fused `r ← r − η ∇²_yy g · r`.
    NeumannStep,
}

impl Oracle {
    /// Every check, in the order a report lists them.
    pub const ALL: [Oracle; 9] = [
        Oracle::InnerGrad,
        Oracle::InnerHvp,
        Oracle::HvpSymmetry,
        Oracle::MixedJvp,
        Oracle::OuterGradY,
        Oracle::OuterGradX,
        Oracle::OuterGradXAdds,
        Oracle::InnerStep,
        Oracle::NeumannStep,
    ];

    /// The name of the check: the trait method's, and a suffix for the properties.
    pub fn name(self) -> &'static str {
        match self {
            Oracle::InnerGrad => "inner_grad",
            Oracle::InnerHvp => "inner_hvp",
            Oracle::HvpSymmetry => "inner_hvp_symmetry",
            Oracle::MixedJvp => "mixed_jvp",
            Oracle::OuterGradY => "outer_grad_y",
            Oracle::OuterGradX => "add_outer_grad_x",
            Oracle::OuterGradXAdds => "add_outer_grad_x_adds",
            Oracle::InnerStep => "inner_step",
            Oracle::NeumannStep => "neumann_step",
        }
    }

    /// What the oracle is compared with.
    pub fn reference(self) -> &'static str {
        match self {
            Oracle::InnerGrad => "differences of inner_loss in y",
            Oracle::InnerHvp => "differences of inner_grad in y",
            Oracle::HvpSymmetry => "⟨u, Hv⟩ = ⟨v, Hu⟩",
            Oracle::MixedJvp => "differences of ⟨inner_grad, v⟩ in x",
            Oracle::OuterGradY => "differences of outer_loss in y",
            Oracle::OuterGradX => "differences of outer_loss in x",
            Oracle::OuterGradXAdds => "the same added into zeros",
            Oracle::InnerStep => "y − α·inner_grad",
            Oracle::NeumannStep => "r − η·inner_hvp(r)",
        }
    }
}

impl fmt::Display for Oracle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for Oracle {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// One comparison: an oracle on one set of rows.
///
/// `error` is a relative error: for vectors (gradients as the vector of their directional
/// derivatives, HVPs, steps) the norm ratio `‖a − b‖ / max(‖a‖, ‖b‖, tiny)`, the largest over
/// the directions where there are several; for the fused steps `a` and `b` are the two steps
/// taken (new point minus old), so the point's own size does not dilute an error in the step;
/// for symmetry `|⟨u, Hv⟩ − ⟨v, Hu⟩| / max(‖u‖‖Hv‖, ‖v‖‖Hu‖, tiny)`, the largest over pairs
/// of directions. Infinite (`null` in JSON) when a value is not finite; `non_finite` then
/// names it.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    /// The oracle (or property) checked.
    pub oracle: Oracle,
    /// Which rows: `all rows` or the mini-batch's sizes, prefixed `val_as_train, ` for that view.
    pub rows: String,
    /// The relative error, as defined above.
    pub error: f64,
    /// The largest error that passes ([`CheckOptions::tolerance`]).
    pub tolerance: f64,
    /// `error ≤ tolerance` (false for a non-finite value).
    pub passed: bool,
    /// The value that was NaN or infinite, if one was.
    pub non_finite: Option<String>,
}

impl Check {
    /// How far past its tolerance the check is (infinite when a value was not finite): the
    /// order of [`OracleReport::worst`].
    pub fn severity(&self) -> f64 {
        self.error / self.tolerance
    }
}

/// The result of [`check_oracles`]: one [`Check`] per (oracle, rows).
#[derive(Clone, Debug, Serialize)]
pub struct OracleReport {
    /// The backend's description.
    pub backend: String,
    /// The problem's dimension of x.
    pub dim_x: usize,
    /// The problem's dimension of y.
    pub dim_y: usize,
    /// The finite-difference step ε used.
    pub fd_step: f64,
    /// Every comparison, set of rows by set of rows.
    pub checks: Vec<Check>,
}

impl OracleReport {
    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }

    /// The failed checks.
    pub fn failures(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| !c.passed)
    }

    /// The check with the largest error relative to its tolerance (a failure if there is one).
    pub fn worst(&self) -> Option<&Check> {
        self.checks.iter().max_by(|a, b| a.severity().total_cmp(&b.severity()))
    }
}

/// A table, one line per check (oracle, rows, reference, error, tolerance, verdict), then a
/// verdict line.
impl fmt::Display for OracleReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "oracle check on {}: dim_x {}, dim_y {}, finite-difference step {:e}",
            self.backend, self.dim_x, self.dim_y, self.fd_step
        )?;
        let header = ["oracle", "rows", "against", "rel. error", "tolerance", "result"];
        let rows: Vec<[String; 6]> = self
            .checks
            .iter()
            .map(|c| {
                let verdict = match (&c.non_finite, c.passed) {
                    (Some(what), _) => format!("FAIL: {what}"),
                    (None, true) => "ok".into(),
                    (None, false) => "FAIL".into(),
                };
                [
                    c.oracle.name().into(),
                    c.rows.clone(),
                    c.oracle.reference().into(),
                    format!("{:.2e}", c.error),
                    format!("{:e}", c.tolerance),
                    verdict,
                ]
            })
            .collect();
        let mut width = header.map(|h| h.chars().count());
        for row in &rows {
            for (w, cell) in width.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |f: &mut fmt::Formatter<'_>, cells: &[&str]| {
            let padded: Vec<String> = cells.iter().zip(width).map(|(c, w)| format!("{c:<w$}")).collect();
            writeln!(f, "  {}", padded.join("  ").trim_end())
        };
        line(f, &header)?;
        for row in &rows {
            line(f, &row.each_ref().map(String::as_str))?;
        }
        let failed: Vec<String> = self.failures().map(|c| format!("{} ({})", c.oracle, c.rows)).collect();
        match self.worst() {
            None => write!(f, "no checks"),
            Some(_) if !failed.is_empty() => write!(f, "FAILED {} of {} checks: {}", failed.len(), self.checks.len(), failed.join(", ")),
            Some(w) => write!(f, "passed: all {} checks, worst {:.2e} ({}, {})", self.checks.len(), w.error, w.oracle, w.rows),
        }
    }
}

/// Checks every oracle of `problem` at `(x, y)` with [`CheckOptions::default`] (suited to an
/// f64 backend).
///
/// ```
/// use bilevel_core::backend::LossKind;
/// use bilevel_core::cpu::CpuBackend;
/// use bilevel_core::problems::glm::{Glm, HyperKind};
/// use bilevel_core::problems::synthetic::SyntheticSpec;
/// use bilevel_core::problems::Problem;
///
/// let spec = SyntheticSpec { n_train: 30, n_val: 20, features: 6, classes: 3, loss: LossKind::Softmax,
///                            nnz_per_row: None, bias: true, seed: 1 };
/// let be = CpuBackend::<f64>::new();
/// let problem = Glm::new(&be, &spec.generate(), HyperKind::SampleWeights { rho: 0.01 });
/// let x = vec![0.3; problem.dim_x()];
/// let y: Vec<f64> = (0..problem.dim_y()).map(|i| (i as f64).sin()).collect();
/// let report = pollster::block_on(bilevel_core::check_oracles(&problem, &be, &x, &y)).unwrap();
/// println!("{report}");
/// assert!(report.passed(), "{report}");
/// ```
pub async fn check_oracles<B: Backend, P: Problem<B> + ?Sized>(problem: &P, be: &B, x: &[f64], y: &[f64]) -> Result<OracleReport> {
    check_oracles_with(problem, be, x, y, &CheckOptions::default()).await
}

/// [`check_oracles`] with explicit settings. Errors (`InvalidArgument`) when `x` or `y` has the
/// wrong length or a non-finite entry, the options are invalid, or the `val_as_train` view has
/// other dimensions than the problem; a failing oracle is not an error but a failed [`Check`]
/// in the report (and a backend's read error is returned as it is).
pub async fn check_oracles_with<B: Backend, P: Problem<B> + ?Sized>(
    problem: &P,
    be: &B,
    x: &[f64],
    y: &[f64],
    options: &CheckOptions,
) -> Result<OracleReport> {
    options.validate()?;
    let (dim_x, dim_y) = (problem.dim_x(), problem.dim_y());
    for (name, v, dim) in [("x", x, dim_x), ("y", y, dim_y)] {
        if v.len() != dim {
            return Err(Error::InvalidArgument(format!("{name} has {} entries, the problem's dim_{name} is {dim}", v.len())));
        }
        if let Some(i) = v.iter().position(|e| !e.is_finite()) {
            return Err(Error::InvalidArgument(format!("{name}[{i}] = {} is not finite", v[i])));
        }
    }
    let mut rng = Sampler::new(options.seed);
    let mut checks = Vec::new();
    Checker::new(problem, be, x, y, options).await?.run("", &mut rng, &mut checks).await?;
    if let Some(view) = problem.val_as_train() {
        if (view.dim_x(), view.dim_y()) != (dim_x, dim_y) {
            return Err(Error::InvalidArgument(format!(
                "val_as_train has dim_x {} and dim_y {}, the problem {dim_x} and {dim_y}",
                view.dim_x(),
                view.dim_y()
            )));
        }
        Checker::new(&*view, be, x, y, options).await?.run("val_as_train, ", &mut rng, &mut checks).await?;
    }
    Ok(OracleReport { backend: be.describe(), dim_x, dim_y, fd_step: options.fd_step, checks })
}

/// A relative error, or the name of the value that was not finite.
#[derive(Clone, Debug, PartialEq)]
enum Measure {
    Error(f64),
    NonFinite(String),
}

impl Measure {
    /// The worse of two (a non-finite value is the worst).
    fn max(self, other: Measure) -> Measure {
        match (self, other) {
            (Measure::NonFinite(w), _) | (_, Measure::NonFinite(w)) => Measure::NonFinite(w),
            (Measure::Error(a), Measure::Error(b)) => Measure::Error(a.max(b)),
        }
    }
}

/// Below any norm an oracle gives, above zero: two zero vectors agree exactly.
const TINY: f64 = f64::MIN_POSITIVE;

/// `‖a − b‖ / max(‖a‖, ‖b‖, tiny)`, naming `a_name` or `b_name` if a value is not finite.
fn vector_error(a: &[f64], b: &[f64], a_name: &str, b_name: &str) -> Measure {
    for (v, name) in [(a, a_name), (b, b_name)] {
        if v.iter().any(|e| !e.is_finite()) {
            return Measure::NonFinite(format!("non-finite {name}"));
        }
    }
    let diff: Vec<f64> = a.iter().zip(b).map(|(p, q)| p - q).collect();
    Measure::Error(norm(&diff) / norm(a).max(norm(b)).max(TINY))
}

fn norm(v: &[f64]) -> f64 {
    dot(v, v).sqrt()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(p, q)| p * q).sum()
}

/// `a − b`, entry by entry.
fn sub(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(p, q)| p - q).collect()
}

/// A random direction of unit norm.
fn unit(rng: &mut Sampler, dim: usize) -> Vec<f64> {
    let v: Vec<f64> = (0..dim).map(|_| rng.normal()).collect();
    let n = norm(&v).max(TINY);
    v.into_iter().map(|e| e / n).collect()
}

/// The directions a derivative in a `dim`-dimensional argument is checked along: every
/// coordinate up to [`COORDINATE_DIM`], else `count` random unit vectors.
fn directions(rng: &mut Sampler, dim: usize, count: usize) -> Vec<Vec<f64>> {
    if dim <= COORDINATE_DIM {
        (0..dim)
            .map(|j| {
                let mut e = vec![0.0; dim];
                e[j] = 1.0;
                e
            })
            .collect()
    } else {
        (0..count).map(|_| unit(rng, dim)).collect()
    }
}

/// Which argument a difference perturbs.
#[derive(Clone, Copy)]
enum Wrt {
    X,
    Y,
}

/// The scalar functions whose differences are the references.
enum ScalarFn<'a> {
    InnerLoss,
    OuterLoss,
    /// `⟨inner_grad, v⟩`, for the mixed product.
    InnerGradDot(&'a [f64]),
}

/// `z ± εu` resident, and the direction the backend's rounding of them left,
/// `(z⁺ − z⁻) / 2ε`: the analytic side is taken along that direction, so an f32 backend's
/// rounding of the perturbed points is not mistaken for an error.
struct Probe<B: Backend> {
    plus: B::Vector,
    minus: B::Vector,
    dir: Vec<f64>,
}

/// One set of rows: all, or a mini-batch of training and validation rows.
struct RowSet<I> {
    label: String,
    batch: Option<(I, I)>,
}

impl<I> RowSet<I> {
    /// (training rows for g, validation rows for f).
    fn rows(&self) -> (Rows<'_, I>, Rows<'_, I>) {
        match &self.batch {
            None => (Rows::All, Rows::All),
            Some((train, val)) => (Rows::Batch(train), Rows::Batch(val)),
        }
    }
}

/// One problem at one point: the resident point, its host copies as the backend holds them,
/// and the differences.
struct Checker<'a, B: Backend, P: ?Sized> {
    p: &'a P,
    be: &'a B,
    options: &'a CheckOptions,
    x: Vec<f64>,
    y: Vec<f64>,
    xv: B::Vector,
    yv: B::Vector,
}

impl<'a, B: Backend, P: Problem<B> + ?Sized> Checker<'a, B, P> {
    async fn new(p: &'a P, be: &'a B, x: &[f64], y: &[f64], options: &'a CheckOptions) -> Result<Self> {
        let (xv, yv) = (be.vector_from(x, "check.x"), be.vector_from(y, "check.y"));
        let (x, y) = (be.read_vector(&xv).await?, be.read_vector(&yv).await?);
        Ok(Checker { p, be, options, x, y, xv, yv })
    }

    /// Every check on all rows and, if asked for, on a mini-batch, labelled after `prefix`.
    async fn run(&self, prefix: &str, rng: &mut Sampler, out: &mut Vec<Check>) -> Result<()> {
        let mut sets = vec![RowSet { label: format!("{prefix}all rows"), batch: None }];
        let (n, m) = (self.p.n_train(), self.p.n_val());
        if let Some(b) = self.options.batch.filter(|_| n > 0 && m > 0) {
            let (train, val) = (rng.batch(n, b), rng.batch(m, b));
            let label = format!("{prefix}batch of {} train / {} val rows", train.len(), val.len());
            sets.push(RowSet { label, batch: Some((self.be.indices(&train), self.be.indices(&val))) });
        }
        for set in &sets {
            self.check_rows(set, rng, out).await?;
        }
        Ok(())
    }

    async fn check_rows(&self, set: &RowSet<B::Indices>, rng: &mut Sampler, out: &mut Vec<Check>) -> Result<()> {
        let (train, val) = set.rows();
        let k = self.options.directions;
        let (dim_x, dim_y) = (self.x.len(), self.y.len());
        let mut push = |oracle: Oracle, m: Measure| {
            let (error, non_finite) = match m {
                Measure::Error(e) => (e, None),
                Measure::NonFinite(what) => (f64::INFINITY, Some(what)),
            };
            let tolerance = self.options.tolerance;
            out.push(Check { oracle, rows: set.label.clone(), error, tolerance, passed: error <= tolerance, non_finite });
        };

        // Gradients of the losses, as their directional derivatives.
        let g = self.inner_grad(&self.xv, &self.yv, train).await?;
        let dirs = directions(rng, dim_y, k);
        let cases: Vec<_> = dirs.iter().map(|u| (u.as_slice(), g.as_slice(), ScalarFn::InnerLoss)).collect();
        push(Oracle::InnerGrad, self.directional(Wrt::Y, train, &cases, "inner_grad output", "difference of inner_loss").await?);

        // HVPs against differences of the gradient, and their symmetry.
        let mut products = Vec::new();
        let mut hvp_error = Measure::Error(0.0);
        for u in &directions(rng, dim_y, k) {
            let probe = self.probe(Wrt::Y, u).await?;
            let (v, v_host) = self.upload(&probe.dir).await?;
            let hv = self.hvp(&v, train).await?;
            let plus = self.inner_grad(&self.xv, &probe.plus, train).await?;
            let minus = self.inner_grad(&self.xv, &probe.minus, train).await?;
            let fd: Vec<f64> = plus.iter().zip(&minus).map(|(p, q)| (p - q) / (2.0 * self.options.fd_step)).collect();
            hvp_error = hvp_error.max(vector_error(&hv, &fd, "inner_hvp output", "difference of inner_grad"));
            products.push((v_host, hv));
        }
        push(Oracle::InnerHvp, hvp_error);
        push(Oracle::HvpSymmetry, symmetry(&products));

        // The mixed product: ⟨J[v], u⟩ = d/dx ⟨∇_y g, v⟩ along u, a fresh v per direction.
        let mut jvps = Vec::new();
        let mut vs = Vec::new();
        let x_dirs = directions(rng, dim_x, k);
        for _ in &x_dirs {
            let (v, v_host) = self.upload(&unit(rng, dim_y)).await?;
            let mut jv = self.nan(dim_x);
            self.p.mixed_jvp(self.be, &self.xv, &self.yv, &v, train, &mut jv);
            jvps.push(self.be.read_vector(&jv).await?);
            vs.push(v_host);
        }
        let cases: Vec<_> =
            x_dirs.iter().zip(&jvps).zip(&vs).map(|((u, jv), v)| (u.as_slice(), jv.as_slice(), ScalarFn::InnerGradDot(v))).collect();
        push(Oracle::MixedJvp, self.directional(Wrt::X, train, &cases, "mixed_jvp output", "difference of ⟨inner_grad, v⟩").await?);

        // The outer gradients.
        let mut gy = self.nan(dim_y);
        self.p.outer_grad_y(self.be, &self.xv, &self.yv, val, &mut gy);
        let gy = self.be.read_vector(&gy).await?;
        let dirs = directions(rng, dim_y, k);
        let cases: Vec<_> = dirs.iter().map(|u| (u.as_slice(), gy.as_slice(), ScalarFn::OuterLoss)).collect();
        push(Oracle::OuterGradY, self.directional(Wrt::Y, val, &cases, "outer_grad_y output", "difference of outer_loss").await?);
        let mut gx = self.be.zeros(dim_x, "check.gx");
        self.p.add_outer_grad_x(self.be, &self.xv, &self.yv, val, &mut gx);
        let gx = self.be.read_vector(&gx).await?;
        let dirs = directions(rng, dim_x, k);
        let cases: Vec<_> = dirs.iter().map(|u| (u.as_slice(), gx.as_slice(), ScalarFn::OuterLoss)).collect();
        push(Oracle::OuterGradX, self.directional(Wrt::X, val, &cases, "add_outer_grad_x output", "difference of outer_loss").await?);
        // Into a start of the gradient's size (so an f32 backend's rounding of the sum stays
        // at the gradient's scale), what it adds must be what it adds to zeros.
        let scale = if norm(&gx).is_finite() && norm(&gx) > 0.0 { norm(&gx) } else { 1.0 };
        let start: Vec<f64> = unit(rng, dim_x).into_iter().map(|e| scale * e).collect();
        let (mut acc, start) = self.upload(&start).await?;
        self.p.add_outer_grad_x(self.be, &self.xv, &self.yv, val, &mut acc);
        let added = sub(&self.be.read_vector(&acc).await?, &start);
        push(Oracle::OuterGradXAdds, vector_error(&added, &gx, "add_outer_grad_x output", "add_outer_grad_x into zeros"));

        // The fused steps against the problem's own gradient and HVP. The step sizes make each
        // step half as long as the vector it moves, so the comparison of the steps (new minus
        // old) is not lost in the rounding of the vectors.
        let alpha = step_size(&self.y, &g);
        let (mut y_step, _) = self.upload(&self.y).await?;
        let mut scratch = self.nan(dim_y);
        self.p.inner_step(self.be, &self.xv, &mut y_step, alpha, train, &mut scratch);
        let taken = sub(&self.be.read_vector(&y_step).await?, &self.y);
        let unfused: Vec<f64> = g.iter().map(|e| -alpha * e).collect();
        push(Oracle::InnerStep, vector_error(&taken, &unfused, "inner_step result", "inner_grad"));
        let (r, r_host) = self.upload(&unit(rng, dim_y)).await?;
        let hr = self.hvp(&r, train).await?;
        let eta = step_size(&r_host, &hr);
        let (mut r_step, _) = self.upload(&r_host).await?;
        let mut scratch = self.nan(dim_y);
        self.p.neumann_step(self.be, &self.xv, &self.yv, &mut r_step, NeumannStep { eta, rows: train }, &mut scratch);
        let taken = sub(&self.be.read_vector(&r_step).await?, &r_host);
        let unfused: Vec<f64> = hr.iter().map(|e| -eta * e).collect();
        push(Oracle::NeumannStep, vector_error(&taken, &unfused, "neumann_step result", "inner_hvp"));
        Ok(())
    }

    /// The analytic directional derivatives `⟨grad_i, u_i⟩` against central differences of
    /// the scalar functions `φ_i` along `u_i` in `wrt`, as two vectors over the cases.
    async fn directional(
        &self,
        wrt: Wrt,
        rows: Rows<'_, B::Indices>,
        cases: &[(&[f64], &[f64], ScalarFn<'_>)],
        analytic_name: &str,
        reference_name: &str,
    ) -> Result<Measure> {
        let (mut analytic, mut reference) = (Vec::new(), Vec::new());
        for (u, grad, f) in cases {
            let probe = self.probe(wrt, u).await?;
            let at = |v| match wrt {
                Wrt::X => (v, &self.yv),
                Wrt::Y => (&self.xv, v),
            };
            let (xp, yp) = at(&probe.plus);
            let plus = self.value(f, xp, yp, rows).await?;
            let (xm, ym) = at(&probe.minus);
            let minus = self.value(f, xm, ym, rows).await?;
            reference.push((plus - minus) / (2.0 * self.options.fd_step));
            analytic.push(dot(grad, &probe.dir));
        }
        Ok(vector_error(&analytic, &reference, analytic_name, reference_name))
    }

    async fn value(&self, f: &ScalarFn<'_>, x: &B::Vector, y: &B::Vector, rows: Rows<'_, B::Indices>) -> Result<f64> {
        let s = self.be.scalar("check.loss");
        match f {
            ScalarFn::InnerLoss => self.p.inner_loss(self.be, x, y, rows, &s),
            ScalarFn::OuterLoss => self.p.outer_loss(self.be, x, y, rows, &s),
            ScalarFn::InnerGradDot(v) => return Ok(dot(&self.inner_grad(x, y, rows).await?, v)),
        }
        self.be.read_scalar(&s).await
    }

    /// The base point in `wrt` moved by ±ε·u.
    async fn probe(&self, wrt: Wrt, u: &[f64]) -> Result<Probe<B>> {
        let at = match wrt {
            Wrt::X => &self.x,
            Wrt::Y => &self.y,
        };
        let eps = self.options.fd_step;
        let moved = |sign: f64| -> Vec<f64> { at.iter().zip(u).map(|(a, d)| a + sign * eps * d).collect() };
        let (plus, plus_host) = self.upload(&moved(1.0)).await?;
        let (minus, minus_host) = self.upload(&moved(-1.0)).await?;
        let dir = plus_host.iter().zip(&minus_host).map(|(p, m)| (p - m) / (2.0 * eps)).collect();
        Ok(Probe { plus, minus, dir })
    }

    /// `v` resident, and its host copy as the backend holds it (rounded on an f32 backend).
    async fn upload(&self, v: &[f64]) -> Result<(B::Vector, Vec<f64>)> {
        let resident = self.be.vector_from(v, "check.v");
        let host = self.be.read_vector(&resident).await?;
        Ok((resident, host))
    }

    /// A resident vector of NaNs: the start of an output the oracle must overwrite.
    fn nan(&self, len: usize) -> B::Vector {
        let mut v = self.be.zeros(len, "check.out");
        self.be.fill(Coef::c(f64::NAN), &mut v);
        v
    }

    async fn inner_grad(&self, x: &B::Vector, y: &B::Vector, rows: Rows<'_, B::Indices>) -> Result<Vec<f64>> {
        let mut out = self.nan(self.y.len());
        self.p.inner_grad(self.be, x, y, rows, &mut out);
        self.be.read_vector(&out).await
    }

    async fn hvp(&self, v: &B::Vector, rows: Rows<'_, B::Indices>) -> Result<Vec<f64>> {
        let mut out = self.nan(self.y.len());
        self.p.inner_hvp(self.be, &self.xv, &self.yv, v, rows, &mut out);
        self.be.read_vector(&out).await
    }
}

/// `|⟨u, Hv⟩ − ⟨v, Hu⟩| / max(‖u‖‖Hv‖, ‖v‖‖Hu‖, tiny)` for successive pairs of `(v, Hv)`, the
/// largest: each inner product is bounded by its norm product, so this is the error on the scale
/// the products could have.
fn symmetry(products: &[(Vec<f64>, Vec<f64>)]) -> Measure {
    let k = products.len();
    let pairs = if k > 2 { k } else { k.saturating_sub(1) };
    let mut worst = Measure::Error(0.0);
    for i in 0..pairs {
        let ((u, hu), (v, hv)) = (&products[i], &products[(i + 1) % k]);
        let (a, b) = (dot(u, hv), dot(v, hu));
        let m = if !(a.is_finite() && b.is_finite()) {
            Measure::NonFinite("non-finite inner_hvp output".into())
        } else {
            Measure::Error((a - b).abs() / (norm(u) * norm(hv)).max(norm(v) * norm(hu)).max(TINY))
        };
        worst = worst.max(m);
    }
    worst
}

/// A step size that moves `v` by half its length along `d` (1 when either is zero or not
/// finite).
fn step_size(v: &[f64], d: &[f64]) -> f64 {
    let s = 0.5 * norm(v) / norm(d);
    if s.is_finite() && s > 0.0 {
        s
    } else {
        1.0
    }
}
