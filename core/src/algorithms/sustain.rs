//! SUSTAIN (Khanduri, Zeng, Hong, Wai, Wang, Yang 2021, "A near-optimal algorithm for
//! stochastic bilevel optimization via double-momentum", Algorithm 1): a single loop with
//! STORM-type momentum on both the inner gradient and the hypergradient, each corrected at the
//! previous point on the same samples; the hypergradient is Ghadimi & Wang's randomly
//! truncated Neumann estimate (BSA's):
//!
//! ```text
//! h_g^k = ∇_y g(x_k, y_k; ζ_k) + (1 − η_k)(h_g^{k−1} − ∇_y g(x_{k−1}, y_{k−1}; ζ_k))
//! h_f^k = ∇̄f(x_k, y_k; ξ̄_k)   + (1 − η_k)(h_f^{k−1} − ∇̄f(x_{k−1}, y_{k−1}; ξ̄_k))
//! ∇̄f(x, y; ξ̄) = ∇ₓf(x, y; D_F) − ∇_x∇_y g(x, y; D_G) · Qη Π_{i=1..q} (I − η∇²_yy g(x, y; B_i)) ∇_y f(x, y; D_F),  q ~ U{0..Q−1}
//! y_{k+1} = y_k − α_k h_g^k;   x_{k+1} = x_k − β_k h_f^k
//! α_k = α/(k+1)^{1/3},  β_k = β/(k+1)^{1/3},  η_k = c/(k+1)^{2/3}  (c = 0.5)
//! ```
//! ξ̄_k (D_F, D_G, q and the B_i) is drawn once per iteration and used at both points. T is
//! not used: one step of y per outer step is the method. The momentum constant c is
//! [`Sustain::momentum`] (Benchopt's default 0.5), not a [`Hyper`] field.

use super::double_momentum::{DoubleMomentum, Momentum, Neumann, STEP_SCHEDULE};
use super::{Algorithm, Hyper, Schedule, Step};
use crate::backend::Backend;
use crate::problems::Problem;

/// SUSTAIN's state: the previous point and the two momentum estimates (see the module docs).
pub struct Sustain<B: Backend>(DoubleMomentum<B>);

impl<B: Backend> Sustain<B> {
    /// Workspaces sized for `p`; `hyper` gives α, β, η (the Neumann step), Q (the largest
    /// series length) and the batch sizes; the momentum constant is 0.5.
    pub fn new<P: Problem<B>>(be: &B, p: &P, hyper: Hyper) -> Self {
        Sustain(DoubleMomentum::new(be, p, hyper, Neumann::RandomTruncation))
    }

    /// The momentum factor's schedule η_k = c/(k+1)^{2/3} (c = 0.5, Benchopt's default).
    pub fn momentum(&mut self) -> &mut Momentum {
        &mut self.0.momentum
    }
}

impl<B: Backend, P: Problem<B>> Algorithm<B, P> for Sustain<B> {
    fn hyper_mut(&mut self) -> &mut Hyper {
        &mut self.0.hyper
    }

    fn inner_and_hypergradient(&mut self, be: &B, p: &P, step: Step<'_, B>) {
        self.0.step(be, p, step);
    }

    fn outer_schedule(&self) -> Schedule {
        STEP_SCHEDULE
    }
}
