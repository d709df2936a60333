//! The web page's landscape: ridge regression with two features, so the hyperparameter λ ∈ R²
//! is a plane a person can look at. The outer objective Φ(λ) = f(w*(λ)) over a grid of that
//! plane, the estimators' hypergradients at a point, and the inner solver's path there, all
//! computed through a [`Backend`](crate::Backend) (the browser's WebGPU, or the CPU for the reference).
//!
//! The grid is evaluated in one solve: G grid points become one *stacked* ridge problem whose
//! design matrix is block-diagonal (block g is the data X, with its own two features 2g, 2g+1
//! and its own λ_g), uploaded as sparse CSR. Its inner objective is the mean of the G
//! independent ones (the penalty scale 1/G keeps each block's minimiser w*(λ_g)), so one CG
//! solve on the device finds every w*(λ_g) at once, and one product gives every validation
//! residual; only the G·m per-row losses come back, summed per block on the host.

use serde::Serialize;

use crate::algorithms::{inner_descent, AlgKind, Cg, CgSolve, Hyper, InnerSteps, Point};
use crate::backend::{Coef, GlmBackend, HostMatrix, LossKind, LossRows, Rows};
use crate::outer::{OuterLoop, OuterOpt};
use crate::problems::counted::OracleCounts;
use crate::problems::glm::{Glm, GlmData, HyperKind};
use crate::problems::ridge::{Ridge, RidgeData};
use crate::problems::Problem;
use crate::sampler::Sampler;
use crate::{Error, Result};

/// The landscape's data and the part of the λ-plane shown.
#[derive(Clone, Debug, Serialize)]
pub struct LandscapeConfig {
    /// Training rows n (few, so that the penalty matters).
    pub n_train: usize,
    /// Validation rows m.
    pub n_val: usize,
    /// Standard deviation of the Gaussian noise on the targets.
    pub noise: f64,
    /// Seed of the data.
    pub seed: u64,
    /// The ground-truth weights of the two features.
    pub truth: [f64; 2],
    /// Both axes span `[lo, hi]` (λ is a log-penalty: e^λ from e^lo to e^hi).
    pub lo: f64,
    /// The upper end of both axes.
    pub hi: f64,
    /// Grid points per axis.
    pub grid: usize,
}

impl Default for LandscapeConfig {
    fn default() -> Self {
        LandscapeConfig { n_train: 30, n_val: 100, noise: 2.0, seed: 0, truth: [1.0, 0.4], lo: -4.0, hi: 2.0, grid: 25 }
    }
}

impl LandscapeConfig {
    /// Rejects settings the page cannot show: empty sets, negative or non-finite noise, a λ
    /// range outside [−20, 20] or empty, fewer than 2 or more than 256 grid points per axis.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidArgument(m));
        if self.n_train == 0 || self.n_val == 0 {
            return bad("--n_train and --n_val must be at least 1".into());
        }
        if !(self.noise.is_finite() && self.noise >= 0.0) {
            return bad(format!("--noise must be finite and non-negative, got {}", self.noise));
        }
        if !(self.lo.is_finite() && self.hi.is_finite() && self.lo < self.hi && self.hi <= 20.0 && self.lo >= -20.0) {
            return bad(format!("the λ range must satisfy -20 ≤ lo < hi ≤ 20, got [{}, {}]", self.lo, self.hi));
        }
        if !(2..=256).contains(&self.grid) {
            return bad(format!("--grid must be between 2 and 256, got {}", self.grid));
        }
        Ok(())
    }
}

/// A landscape instance (host data in f64).
///
/// ```
/// use bilevel_core::algorithms::{AlgKind, Hyper};
/// use bilevel_core::cpu::CpuBackend;
/// use bilevel_core::landscape::{Landscape, LandscapeConfig};
///
/// let be = CpuBackend::<f64>::new();
/// let landscape = Landscape::new(LandscapeConfig::default()).unwrap();
/// let hyper = Hyper { t: 200, q: 20, eta: 0.5, alpha: 0.5, beta: 1.0, batch_size: 10, val_batch_size: 10 };
/// let lambda = [0.0, -1.0];
/// let h = pollster::block_on(landscape.estimate(&be, AlgKind::AidCg, &hyper, &lambda, 0)).unwrap();
/// let (exact, _) = landscape.exact(&lambda); // the closed form
/// assert!(h.iter().zip(&exact).all(|(a, b)| (a - b).abs() <= 1e-6 * b.abs().max(1.0)));
/// ```
#[derive(Clone, Debug)]
pub struct Landscape {
    /// The settings it was built from.
    pub config: LandscapeConfig,
    /// The two-feature ridge instance.
    pub data: RidgeData,
}

impl Landscape {
    /// Seeded two-feature ridge data ([`RidgeData::with_truth`]): a strong and a weak feature,
    /// so the best penalty differs between them and Φ has its minimum inside the plane.
    pub fn new(config: LandscapeConfig) -> Result<Self> {
        config.validate()?;
        let data = RidgeData::with_truth(config.n_train, config.n_val, &config.truth, config.noise, config.seed);
        Ok(Landscape { config, data })
    }

    /// The grid's coordinate along either axis, `k = 0..grid`.
    pub fn axis(&self, k: usize) -> f64 {
        let c = &self.config;
        c.lo + (c.hi - c.lo) * k as f64 / (c.grid - 1) as f64
    }

    /// Every grid point, row-major: point `i·grid + j` is `(λ₀, λ₁) = (axis(j), axis(i))`.
    pub fn grid_points(&self) -> Vec<[f64; 2]> {
        let g = self.config.grid;
        (0..g * g).map(|p| [self.axis(p % g), self.axis(p / g)]).collect()
    }

    /// The exact hypergradient ∇Φ(λ) and Φ(λ) (closed form, f64).
    pub fn exact(&self, lambda: &[f64]) -> (Vec<f64>, f64) {
        self.data.exact_hypergradient(lambda)
    }

    /// The inner solution w*(λ) (closed form, f64).
    pub fn inner_solution(&self, lambda: &[f64]) -> Vec<f64> {
        self.data.inner_solution(lambda)
    }

    /// Φ at each of `points` (any number), on `be`, in one stacked solve of `cg_iters` CG
    /// iterations (see the module docs).
    pub async fn outer_values<B: GlmBackend>(&self, be: &B, points: &[[f64; 2]], cg_iters: usize) -> Result<Vec<f64>> {
        let blocks = points.len();
        if blocks == 0 {
            return Ok(Vec::new());
        }
        let data = self.stacked(blocks);
        let m = self.data.m;
        let problem = Glm::new(be, &data, HyperKind::FeatureRidge { scale: 1.0 / blocks as f64 });
        let lambda: Vec<f64> = points.iter().flatten().copied().collect();
        let lambda = be.vector_from(&lambda, "landscape.lambda");
        let zero = be.zeros(2 * blocks, "landscape.w0");
        // H w = b with b = −∇_w g(λ, 0) = X_stᵀ y / (G n): every block's normal equations.
        let mut rhs = be.zeros(2 * blocks, "landscape.rhs");
        problem.inner_grad(be, &lambda, &zero, Rows::All, &mut rhs);
        be.scale(Coef::c(-1.0), &mut rhs);
        let mut w = be.zeros(2 * blocks, "landscape.w");
        // Stop once ‖r‖ ≤ 1e-7‖b‖ (f32 noise below that; ‖b‖ = ‖Xᵀy‖ / (n √G) from the host data).
        let d = &self.data;
        let xty = (0..2).map(|j| (0..d.n).map(|i| d.x_train[2 * i + j] * d.y_train[i]).sum::<f64>());
        let rhs_norm = xty.map(|v| v * v).sum::<f64>().sqrt() / (d.n as f64 * (blocks as f64).sqrt());
        let run = CgSolve { iters: cg_iters, warm: false, tol: Some(1e-7 * rhs_norm) };
        Cg::new(be, 2 * blocks).solve(be, &problem, Point { x: &lambda, y: &zero }, &rhs, &mut w, run);
        // Per-row validation losses ½(x_v·w_g − y_v)², summed per block.
        let (x_val, t_val) = problem.validation();
        let rows = blocks * m;
        let (mut z, mut r, mut l) = (be.zeros(rows, "landscape.z"), be.zeros(rows, "landscape.r"), be.zeros(rows, "landscape.l"));
        be.gather_matmul(x_val, Rows::All, &w, 1, &mut z);
        let on = LossRows { loss: LossKind::Squared, targets: t_val, rows: Rows::All, c: 1, weights: None };
        be.loss_residual(on, &z, 1.0 / m as f64, &mut r, Some(&mut l));
        let l = be.read_vector(&l).await?;
        let values: Vec<f64> = l.chunks_exact(m).map(|c| c.iter().sum()).collect();
        if let Some(k) = values.iter().position(|v| !v.is_finite()) {
            return Err(Error::NonFinite { iter: 0, quantity: format!("outer objective at grid point {k}") });
        }
        Ok(values)
    }

    /// G copies of the data on a block-diagonal design (CSR): rows `g·n + i` use columns
    /// `2g, 2g + 1`.
    fn stacked(&self, blocks: usize) -> GlmData {
        let block = |x: &[f64], rows: usize| {
            let mut indptr = Vec::with_capacity(blocks * rows + 1);
            let (mut indices, mut values) = (Vec::with_capacity(2 * blocks * rows), Vec::with_capacity(2 * blocks * rows));
            indptr.push(0u32);
            for g in 0..blocks {
                for row in x.chunks_exact(2) {
                    indices.extend([2 * g as u32, 2 * g as u32 + 1]);
                    values.extend_from_slice(row);
                    indptr.push(indices.len() as u32);
                }
            }
            HostMatrix::Csr { rows: blocks * rows, cols: 2 * blocks, indptr, indices, values }
        };
        let repeat = |t: &[f64]| t.iter().copied().cycle().take(blocks * t.len()).collect();
        let d = &self.data;
        GlmData {
            x_train: block(&d.x_train, d.n),
            t_train: repeat(&d.y_train),
            x_val: block(&d.x_val, d.m),
            t_val: repeat(&d.y_val),
            loss: LossKind::Squared,
            classes: 1,
        }
    }

    /// The ridge problem on `be` (the single, unstacked instance).
    pub fn problem<B: GlmBackend>(&self, be: &B) -> Ridge<B> {
        Ridge::ridge(be, &self.data)
    }

    /// One estimate of the hypergradient at `lambda` by `alg`, its inner loop starting from
    /// w = 0 (no warm start: what T inner steps alone achieve), mini-batches from `seed`.
    pub async fn estimate<B: GlmBackend + 'static>(
        &self,
        be: &B,
        alg: AlgKind,
        hyper: &Hyper,
        lambda: &[f64],
        seed: u64,
    ) -> Result<Vec<f64>> {
        Ok(self.estimate_counted(be, alg, hyper, lambda, seed).await?.0)
    }

    /// [`Landscape::estimate`] and the oracle calls it took.
    pub async fn estimate_counted<B: GlmBackend + 'static>(
        &self,
        be: &B,
        alg: AlgKind,
        hyper: &Hyper,
        lambda: &[f64],
        seed: u64,
    ) -> Result<(Vec<f64>, OracleCounts)> {
        let mut outer =
            OuterLoop::new(be, self.problem(be), alg, hyper.clone(), OuterOpt::Sgd { momentum: 0.0 }, seed)?.with_start(Some(lambda), None);
        outer.estimate();
        let h = be.read_vector(&outer.h).await?;
        if h.iter().any(|v| !v.is_finite()) {
            return Err(Error::NonFinite { iter: 0, quantity: format!("{alg} hypergradient") });
        }
        Ok((h, outer.counts()))
    }

    /// The outer descent from `start` with `alg` (its inner loop warm-started across outer steps,
    /// as in a real run), one [`DescentPoint`] per [`Descent::step`].
    pub fn descent<'a, B: GlmBackend + 'static>(
        &self,
        be: &'a B,
        alg: AlgKind,
        hyper: &Hyper,
        start: &[f64],
        seed: u64,
    ) -> Result<Descent<'a, B>> {
        let outer =
            OuterLoop::new(be, self.problem(be), alg, hyper.clone(), OuterOpt::Sgd { momentum: 0.0 }, seed)?.with_start(Some(start), None);
        Ok(Descent { outer, data: self.data.clone() })
    }

    /// The inner solver's path at `lambda`: w after each of T mini-batch SGD steps from w = 0
    /// (step α, batch size `batch_size`, batches from `seed`, as stocBiO's inner loop), w = 0
    /// first.
    pub async fn inner_path<B: GlmBackend>(&self, be: &B, hyper: &Hyper, lambda: &[f64], seed: u64) -> Result<Vec<[f64; 2]>> {
        hyper.validate()?;
        let problem = self.problem(be);
        let x = be.vector_from(lambda, "landscape.path.lambda");
        let mut w = be.zeros(2, "landscape.path.w");
        let mut grad = be.zeros(2, "landscape.path.grad");
        let mut rng = Sampler::new(seed);
        let mut path = vec![[0.0, 0.0]];
        for _ in 0..hyper.t {
            inner_descent(
                be,
                &problem,
                &x,
                &mut w,
                &mut grad,
                InnerSteps { steps: 1, alpha: hyper.alpha, batch: Some(hyper.batch_size) },
                &mut rng,
            );
            let v = be.read_vector(&w).await?;
            path.push([v[0], v[1]]);
        }
        Ok(path)
    }
}

/// One outer step of a [`Descent`]: λ before the step, the estimate used, Φ there (closed form).
#[derive(Clone, Debug, Serialize)]
pub struct DescentPoint {
    /// Outer iterations completed, this one included (1 for the first point).
    pub iter: usize,
    /// λ before the step.
    pub lambda: Vec<f64>,
    /// The estimate ĥ the step used.
    pub hypergradient: Vec<f64>,
    /// Φ(λ) at that λ (closed form).
    pub exact_loss: f64,
}

/// An outer descent on the landscape's problem.
pub struct Descent<'a, B: GlmBackend> {
    /// The outer loop: the resident problem, λ, w and the algorithm.
    pub outer: OuterLoop<'a, B, Ridge<B>>,
    data: RidgeData,
}

impl<B: GlmBackend + 'static> Descent<'_, B> {
    /// One outer iteration (estimate and update); returns where it started.
    pub async fn step(&mut self) -> Result<DescentPoint> {
        let be = self.outer.be;
        self.outer.estimate();
        let lambda = be.read_vector(&self.outer.x).await?;
        let h = be.read_vector(&self.outer.h).await?;
        self.outer.update();
        if h.iter().any(|v| !v.is_finite()) {
            return Err(Error::NonFinite { iter: self.outer.iter, quantity: "hypergradient".into() });
        }
        let (_, exact_loss) = self.data.exact_hypergradient(&lambda);
        Ok(DescentPoint { iter: self.outer.iter, lambda, hypergradient: h, exact_loss })
    }
}
