//! The recursive-momentum (STORM-type) single loop that SUSTAIN and MRBO share: both keep a
//! momentum estimate of the inner gradient and one of the hypergradient, each corrected by
//! the same oracle at the previous point on the *same* mini-batches,
//!
//! ```text
//! d_k = ∇_y g(x_k, y_k; B_k) + (1 − η_k)(d_{k−1} − ∇_y g(x_{k−1}, y_{k−1}; B_k))
//! u_k = ĥ(x_k, y_k; B̄_k)     + (1 − η_k)(u_{k−1} − ĥ(x_{k−1}, y_{k−1}; B̄_k))
//! y_{k+1} = y_k − α_k d_k;   x_{k+1} = x_k − β_k u_k
//! α_k = α/(k+1)^{1/3},  β_k = β/(k+1)^{1/3},  η_k = c/(k+1)^{2/3}
//! ```
//! (d_0 and u_0 are the plain estimates), and differ only in the Neumann estimate ĥ of the
//! hypergradient (`Neumann`). The schedules are the papers' (α_k ∝ (w+k)^{−1/3}, η_k ∝ α_k²)
//! with w = 1, as the Benchopt benchmark runs them.

use super::{neumann_hypergradient, Hyper, NeumannBatches, NeumannSeries, NeumannWork, Point, Schedule, Step};
use crate::backend::{Backend, Coef, Rows};
use crate::problems::Problem;

/// Which Neumann-series estimate of the hypergradient ĥ the loop corrects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Neumann {
    /// stocBiO's (MRBO): `ĥ = ∇ₓf − J[η Σ_{q=0..Q} Π_{j≤q} (I − ηH_{B_j}) ∇_y f]`.
    Summed,
    /// Ghadimi & Wang's (SUSTAIN): q ~ U{0..Q−1}, `ĥ = ∇ₓf − J[Qη Π_{j≤q} (I − ηH_{B_j}) ∇_y f]`.
    RandomTruncation,
}

/// The momentum factor's schedule: η_k = c/(k+1)^{2/3}, capped at 1.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Momentum {
    /// The constant c (Benchopt's `eta`, 0.5 by default).
    pub c: f64,
}

impl Default for Momentum {
    fn default() -> Self {
        Momentum { c: 0.5 }
    }
}

impl Momentum {
    /// η_k at outer iteration `k` (0-based).
    pub fn at(self, k: usize) -> f64 {
        (self.c * Schedule::Power(2.0 / 3.0).factor(k)).min(1.0)
    }
}

/// The exponent of the inner and outer step schedules, α_k = α/(k+1)^{1/3}.
pub(crate) const STEP_SCHEDULE: Schedule = Schedule::Power(1.0 / 3.0);

/// The loop's state: the previous point, the two momentum estimates, and workspaces.
pub(crate) struct DoubleMomentum<B: Backend> {
    pub(crate) hyper: Hyper,
    pub(crate) momentum: Momentum,
    neumann: Neumann,
    /// (x_{k−1}, y_{k−1}), once there is a previous iteration.
    prev: Option<(B::Vector, B::Vector)>,
    /// d: the inner-gradient estimate.
    d: B::Vector,
    /// u: the hypergradient estimate.
    u: B::Vector,
    grad: B::Vector,
    hyp: B::Vector,
    r: B::Vector,
    hr: B::Vector,
    sum: B::Vector,
}

impl<B: Backend> DoubleMomentum<B> {
    pub(crate) fn new<P: Problem<B>>(be: &B, p: &P, hyper: Hyper, neumann: Neumann) -> Self {
        let (nx, ny) = (p.dim_x(), p.dim_y());
        DoubleMomentum {
            hyper,
            momentum: Momentum::default(),
            neumann,
            prev: None,
            d: be.zeros(ny, "momentum.d"),
            u: be.zeros(nx, "momentum.u"),
            grad: be.zeros(ny, "momentum.grad"),
            hyp: be.zeros(nx, "momentum.hyp"),
            r: be.zeros(ny, "momentum.r"),
            hr: be.zeros(ny, "momentum.hr"),
            sum: be.zeros(ny, "momentum.sum"),
        }
    }

    /// ĥ at `at` on `batches` into `self.hyp`.
    fn hypergradient<P: Problem<B>>(&mut self, be: &B, p: &P, at: Point<'_, B>, batches: &NeumannBatches<B>) {
        let eta = self.hyper.eta;
        let (c, sum) = match self.neumann {
            Neumann::Summed => (eta, Some(&mut self.sum)),
            Neumann::RandomTruncation => (self.hyper.q as f64 * eta, None),
        };
        let work = NeumannWork { r: &mut self.r, hr: &mut self.hr, sum };
        neumann_hypergradient(be, p, at, NeumannSeries { batches, eta, c }, work, &mut self.hyp);
    }

    /// One iteration: the two estimates at (x_k, y_k) corrected at (x_{k−1}, y_{k−1}), the
    /// step on y, u_k into `step.h`.
    pub(crate) fn step<P: Problem<B>>(&mut self, be: &B, p: &P, step: Step<'_, B>) {
        let Step { k, x, y, h, rng } = step;
        let Hyper { q, alpha, batch_size, val_batch_size, .. } = self.hyper;
        let hvp_count = match self.neumann {
            Neumann::Summed => q,
            Neumann::RandomTruncation => rng.below(q),
        };
        // The mini-batches of this iteration, drawn once and used at both points.
        let inner = be.indices(&rng.train_batch(p.n_train(), batch_size));
        let d_f = be.indices(&rng.val_batch(p.n_val(), val_batch_size));
        let d_g = be.indices(&rng.train_batch(p.n_train(), batch_size));
        let hvp = (0..hvp_count).map(|_| be.indices(&rng.train_batch(p.n_train(), batch_size))).collect();
        let batches = NeumannBatches { d_f, hvp, d_g };
        let keep = 1.0 - self.momentum.at(k);

        // The previous point's terms first: d ← (1 − η)(d − ∇g_prev), u ← (1 − η)(u − ĥ_prev).
        let prev = self.prev.take();
        if let Some((x_prev, y_prev)) = &prev {
            p.inner_grad(be, x_prev, y_prev, Rows::Batch(&inner), &mut self.grad);
            be.axpby(Coef::c(-keep), &self.grad, Coef::c(keep), &mut self.d);
            self.hypergradient(be, p, Point { x: x_prev, y: y_prev }, &batches);
            be.axpby(Coef::c(-keep), &self.hyp, Coef::c(keep), &mut self.u);
        }
        // Then the current point's: d += ∇g, u += ĥ (d_0, u_0: the plain estimates).
        let y_now = &*y;
        p.inner_grad(be, x, y_now, Rows::Batch(&inner), &mut self.grad);
        self.hypergradient(be, p, Point { x, y: y_now }, &batches);
        let first = if prev.is_some() { 1.0 } else { 0.0 };
        be.axpby(Coef::c(1.0), &self.grad, Coef::c(first), &mut self.d);
        be.axpby(Coef::c(1.0), &self.hyp, Coef::c(first), &mut self.u);

        // Remember (x_k, y_k), then step y and hand u_k to the outer step.
        let (mut x_prev, mut y_prev) =
            prev.unwrap_or_else(|| (be.zeros(p.dim_x(), "momentum.x_prev"), be.zeros(p.dim_y(), "momentum.y_prev")));
        be.copy(x, &mut x_prev);
        be.copy(y, &mut y_prev);
        self.prev = Some((x_prev, y_prev));
        be.axpy(Coef::c(-alpha * STEP_SCHEDULE.factor(k)), &self.d, y);
        be.copy(&self.u, h);
    }
}
