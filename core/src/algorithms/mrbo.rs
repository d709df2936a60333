//! MRBO (Yang, Ji, Liang 2021, "Provably faster algorithms for bilevel optimization",
//! Algorithm 1, the momentum-based recursive bilevel optimiser): a single loop with
//! momentum-based recursive (STORM-type) estimators of the inner gradient and of the
//! hypergradient, each corrected at the previous point on the same mini-batches; the
//! hypergradient is stocBiO's Neumann-series estimate:
//!
//! ```text
//! v_k = ∇_y g(x_k, y_k; B_y) + (1 − η_k)(v_{k−1} − ∇_y g(x_{k−1}, y_{k−1}; B_y))
//! u_k = ∇̂Φ(x_k, y_k; B_x)    + (1 − η_k)(u_{k−1} − ∇̂Φ(x_{k−1}, y_{k−1}; B_x))
//! ∇̂Φ(x, y; B_x) = ∇ₓf(x, y; D_F) − ∇_x∇_y g(x, y; D_G) · η Σ_{q=0..Q} Π_{j=1..q} (I − η∇²_yy g(x, y; B_j)) ∇_y f(x, y; D_F)
//! y_{k+1} = y_k − α_k v_k;   x_{k+1} = x_k − β_k u_k
//! α_k = α/(k+1)^{1/3},  β_k = β/(k+1)^{1/3},  η_k = c/(k+1)^{2/3}  (c = 0.5)
//! ```
//! B_y and B_x (D_F, D_G, B_1..B_Q) are drawn once per iteration and used at both points. T is
//! not used: one step of y per outer step is the method. The momentum constant c is
//! [`Mrbo::momentum`] (Benchopt's default 0.5), not a [`Hyper`] field.

use super::double_momentum::{DoubleMomentum, Momentum, Neumann, STEP_SCHEDULE};
use super::{Algorithm, Hyper, Schedule, Step};
use crate::backend::Backend;
use crate::problems::Problem;

/// MRBO's state: the previous point and the two momentum estimates (see the module docs).
pub struct Mrbo<B: Backend>(DoubleMomentum<B>);

impl<B: Backend> Mrbo<B> {
    /// Workspaces sized for `p`; `hyper` gives α, β, η (the Neumann step), Q and the batch
    /// sizes; the momentum constant is 0.5.
    pub fn new<P: Problem<B>>(be: &B, p: &P, hyper: Hyper) -> Self {
        Mrbo(DoubleMomentum::new(be, p, hyper, Neumann::Summed))
    }

    /// The momentum factor's schedule η_k = c/(k+1)^{2/3} (c = 0.5, Benchopt's default).
    pub fn momentum(&mut self) -> &mut Momentum {
        &mut self.0.momentum
    }
}

impl<B: Backend, P: Problem<B>> Algorithm<B, P> for Mrbo<B> {
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
