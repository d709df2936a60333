//! TTSA (Hong, Wai, Wang, Yang 2020, two-timescale stochastic approximation): a single loop
//! with one inner SGD step per outer step, the inner on the faster timescale:
//!
//! ```text
//! y ← y − α_k ∇_y g(x, y; S_k),        α_k = α / (k+1)^{2/5}
//! ĥ = BSA's randomly truncated Neumann estimate at (x, y)
//! x ← x − β_k ĥ,                        β_k = β / (k+1)^{3/5}
//! ```
//! (T is not used: one inner step per outer step is the method.)

use super::bsa::RandomNeumann;
use super::{inner_descent, Algorithm, Hyper, InnerSteps, Schedule, Step};
use crate::backend::Backend;
use crate::problems::Problem;

/// TTSA's workspaces (the inner gradient and BSA's random-length Neumann estimator) and settings.
pub struct Ttsa<B: Backend> {
    hyper: Hyper,
    grad: B::Vector,
    work: RandomNeumann<B>,
}

impl<B: Backend> Ttsa<B> {
    /// Workspaces sized for `p`; `hyper` gives α, η, Q (the largest series length) and the
    /// batch sizes.
    pub fn new<P: Problem<B>>(be: &B, p: &P, hyper: Hyper) -> Self {
        Ttsa { grad: be.zeros(p.dim_y(), "ttsa.grad"), work: RandomNeumann::new(be, p.dim_y()), hyper }
    }
}

impl<B: Backend, P: Problem<B>> Algorithm<B, P> for Ttsa<B> {
    fn hyper_mut(&mut self) -> &mut Hyper {
        &mut self.hyper
    }

    fn inner_and_hypergradient(&mut self, be: &B, p: &P, step: Step<'_, B>) {
        let Step { k, x, y, h, rng } = step;
        let alpha_k = self.hyper.alpha * Schedule::Power(0.4).factor(k);
        inner_descent(be, p, x, y, &mut self.grad, InnerSteps { steps: 1, alpha: alpha_k, batch: Some(self.hyper.batch_size) }, rng);
        self.work.hypergradient(be, p, &self.hyper, Step { k, x, y, h, rng });
    }

    fn outer_schedule(&self) -> Schedule {
        Schedule::Power(0.6)
    }
}
