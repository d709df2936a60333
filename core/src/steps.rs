//! Step sizes chosen from the data.
//!
//! Gradient descent on the inner problem (step α) and the Neumann or fixed-point iterations for
//! `H⁻¹ v` (step η) contract only while the step is below `2 / L`, where `L` is the largest
//! eigenvalue of the inner Hessian `∇²_yy g` on the rows each step reads. `L` depends on the data
//! and on the hyperparameters (the exp-parameterised penalty `½ Σ e^{λ_j} w_j²` has curvature
//! `e^{λ_j}`), so a constant that works on one problem diverges on another. [`Curvature`]
//! estimates `L` by power iteration with the problem's own Hessian-vector product, and
//! [`AutoSteps`] turns the estimate into `α = η = fraction / L̂`, re-estimated every few outer
//! iterations as the hyperparameters move.
//!
//! ```
//! use bilevel_core::cpu::CpuBackend;
//! use bilevel_core::problems::ridge::{Ridge, RidgeData};
//! use bilevel_core::steps::Curvature;
//! use bilevel_core::Backend;
//!
//! let be = CpuBackend::<f64>::new();
//! let data = RidgeData::synthetic(200, 100, 10, 0.1, 0);
//! let p = Ridge::ridge(&be, &data);
//! let (x, y) = (be.zeros(10, "x"), be.zeros(10, "y"));
//! let mut curvature = Curvature::new(&be, 10, 0);
//! let l = pollster::block_on(curvature.estimate(&be, &p, &x, &y, None, 50)).unwrap();
//! assert!(l > 0.0);
//! ```

use serde::Serialize;

use crate::backend::{Backend, Coef, Rows};
use crate::problems::Problem;
use crate::sampler::Sampler;
use crate::{Error, Result};

/// How many random batches the stochastic estimate takes the largest eigenvalue over: each
/// stochastic step reads one batch, and each step must be stable on its own batch.
const BATCHES: usize = 3;

/// Power iterations for the first estimate (from a random vector) and for later ones (warm
/// started from the last top eigenvector, which moves little between re-estimates).
const COLD_ITERS: usize = 30;
const WARM_ITERS: usize = 8;

/// Power iteration for the top eigenvalue of the inner Hessian `∇²_yy g(x, y; rows)`.
///
/// The estimate `‖H v‖` (with `‖v‖ = 1`) approaches `L` from below for a positive
/// semi-definite `H`; [`AutoSteps::fraction`] leaves the margin.
pub struct Curvature<B: Backend> {
    v: B::Vector,
    hv: B::Vector,
    v_hv: B::Scalar,
    hv_hv: B::Scalar,
    /// The estimate's own batches: drawing them does not move the algorithm's random stream.
    rng: Sampler,
    warm: bool,
}

impl<B: Backend> Curvature<B> {
    /// Workspaces for an inner variable of dimension `dim_y`; `seed` fixes the starting vector
    /// and the estimate's batches.
    pub fn new(be: &B, dim_y: usize, seed: u64) -> Self {
        let mut rng = Sampler::new(seed ^ 0xc0_ffee);
        let start: Vec<f64> = (0..dim_y).map(|_| rng.normal()).collect();
        let norm = start.iter().map(|v| v * v).sum::<f64>().sqrt().max(f64::MIN_POSITIVE);
        let start: Vec<f64> = start.iter().map(|v| v / norm).collect();
        Curvature {
            v: be.vector_from(&start, "curvature.v"),
            hv: be.zeros(dim_y, "curvature.hv"),
            v_hv: be.scalar("curvature.v_hv"),
            hv_hv: be.scalar("curvature.hv_hv"),
            rng,
            warm: false,
        }
    }

    /// The estimated top eigenvalue `L̂` of `∇²_yy g(x, y; ·)`: on all training rows when
    /// `batch` is `None`, else the largest over a few random batches of `batch` rows.
    /// `iters` power iterations per batch (`0`: the built-in cold / warm counts).
    pub async fn estimate<P: Problem<B> + ?Sized>(
        &mut self,
        be: &B,
        p: &P,
        x: &B::Vector,
        y: &B::Vector,
        batch: Option<usize>,
        iters: usize,
    ) -> Result<f64> {
        let iters = match iters {
            0 if self.warm => WARM_ITERS,
            0 => COLD_ITERS,
            n => n,
        };
        let mut top = 0.0f64;
        match batch {
            None => top = self.power(be, p, x, y, Rows::All, iters).await?,
            Some(b) => {
                for _ in 0..BATCHES {
                    let rows = be.indices(&self.rng.batch(p.n_train(), b.min(p.n_train())));
                    top = top.max(self.power(be, p, x, y, Rows::Batch(&rows), iters).await?);
                }
            }
        }
        self.warm = true;
        Ok(top)
    }

    async fn power<P: Problem<B> + ?Sized>(
        &mut self,
        be: &B,
        p: &P,
        x: &B::Vector,
        y: &B::Vector,
        rows: Rows<'_, B::Indices>,
        iters: usize,
    ) -> Result<f64> {
        let mut estimate = 0.0f64;
        for _ in 0..iters {
            p.inner_hvp(be, x, y, &self.v, rows, &mut self.hv);
            be.dot(&self.hv, &self.hv, 1.0, &self.hv_hv, false);
            let norm = be.read_scalar(&self.hv_hv).await?.sqrt();
            if !norm.is_finite() {
                return Err(Error::NonFinite { iter: 0, quantity: "inner Hessian-vector product (curvature estimate)".into() });
            }
            if norm == 0.0 {
                // H v = 0: v lies in the null space; nothing larger can be learnt from it.
                break;
            }
            estimate = estimate.max(norm);
            // v ← H v / ‖H v‖
            be.axpby(Coef::c(1.0 / norm), &self.hv, Coef::c(0.0), &mut self.v);
        }
        // The Rayleigh quotient vᵀHv at the final v, as a lower bound that never exceeds L for a
        // symmetric H: ‖Hv‖ can overshoot only when H has negative curvature.
        p.inner_hvp(be, x, y, &self.v, rows, &mut self.hv);
        be.dot(&self.v, &self.hv, 1.0, &self.v_hv, false);
        let rayleigh = be.read_scalar(&self.v_hv).await?;
        Ok(estimate.max(rayleigh))
    }
}

/// Data-chosen inner (α) and Neumann (η) step sizes: `fraction / L̂`, with `L̂` from
/// [`Curvature`] at the current `(x, y)`, re-estimated every [`AutoSteps::every`] outer
/// iterations. A step given explicitly keeps its value (`alpha` / `eta` false).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct AutoSteps {
    /// Choose α from the data.
    pub alpha: bool,
    /// Choose η from the data.
    pub eta: bool,
    /// The step is `fraction / L̂` (below 1: a margin for the power iteration's underestimate
    /// and for batches the estimate did not see).
    pub fraction: f64,
    /// Re-estimate `L̂` every this many outer iterations.
    pub every: usize,
    /// `None`: estimate on all training rows (full-batch solvers); `Some(b)`: on batches of `b`
    /// rows (stochastic solvers, whose every step reads one batch).
    pub batch: Option<usize>,
}

impl AutoSteps {
    /// The default margin: half the classical `1 / L` step.
    pub const FRACTION: f64 = 0.5;
    /// The default re-estimation period in outer iterations.
    pub const EVERY: usize = 20;
    /// A hyperparameter move (in any one coordinate) that triggers a re-estimate before the
    /// period is up: e^0.5 ≈ 1.65, so a step at `FRACTION / L̂` stays below `2 / L`.
    pub const MOVE: f64 = 0.5;

    /// Both steps as given (nothing chosen from the data).
    pub fn off() -> Self {
        AutoSteps { alpha: false, eta: false, fraction: Self::FRACTION, every: Self::EVERY, batch: None }
    }

    /// The same choice, estimated on other rows.
    pub fn with_batch(self, batch: Option<usize>) -> Self {
        AutoSteps { batch, ..self }
    }

    /// Whether either step is chosen from the data.
    pub fn any(&self) -> bool {
        self.alpha || self.eta
    }

    /// Sets the data-chosen steps of `hyper` for an estimated top eigenvalue `l`.
    pub fn apply(&self, l: f64, hyper: &mut crate::algorithms::Hyper) {
        if self.alpha {
            hyper.alpha = self.step(l);
        }
        if self.eta {
            hyper.eta = self.step(l);
        }
    }

    /// The step for an estimated top eigenvalue `l`.
    pub fn step(&self, l: f64) -> f64 {
        self.fraction / l
    }
}

/// The curvature estimate behind a run's steps, for its records and its first printed line.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct StepChoice {
    /// The outer iteration at which `L̂` was estimated.
    pub iter: usize,
    /// `L̂`, the estimated top eigenvalue of the inner Hessian.
    pub lipschitz: f64,
    /// α in use from this iteration.
    pub alpha: f64,
    /// η in use from this iteration.
    pub eta: f64,
}

/// A one-line warning when an explicitly given step is above the stable range `2 / L̂`.
pub fn unstable_step_warning(name: &str, step: f64, lipschitz: f64) -> Option<String> {
    let limit = 2.0 / lipschitz;
    (step > limit).then(|| {
        format!(
            "warning: --{name} {step} is above the stable range for this problem: the inner Hessian's top eigenvalue is about {lipschitz:.4} at the start, so steps above 2/L = {limit:.3e} diverge (--{name} auto chooses {:.3e})",
            AutoSteps::FRACTION / lipschitz
        )
    })
}
