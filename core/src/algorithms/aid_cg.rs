//! AID-CG (approximate implicit differentiation with conjugate gradient; HyperTorch's `CG`):
//! full-batch inner gradient descent, then K CG iterations for H v = ∇_y f from v = 0.
//!
//! ```text
//! for t = 1..T:  y ← y − α ∇_y g(x, y)
//! v ≈ H⁻¹ ∇_y f(x, y)      (K steps of CG, H = ∇²_yy g(x, y))
//! ĥ = ∇_x f − ∇_x∇_y g(x, y) v
//! ```
//! CG's scalars stay on the device: a CG iteration is a handful of dispatches, no readback.

use super::{implicit_hypergradient, inner_descent, Adjoint, Algorithm, Cg, CgSolve, Hyper, InnerSteps, Point, Step};
use crate::backend::{Backend, Rows};
use crate::problems::Problem;

/// AID-CG's workspaces (gradient, right-hand side ∇_y f, the solution v, CG's state) and settings.
pub struct AidCg<B: Backend> {
    hyper: Hyper,
    grad: B::Vector,
    b: B::Vector,
    v: B::Vector,
    cg: Cg<B>,
}

impl<B: Backend> AidCg<B> {
    /// Workspaces sized for `p`; `hyper` gives T (inner steps), K (CG iterations) and α.
    pub fn new<P: Problem<B>>(be: &B, p: &P, hyper: Hyper) -> Self {
        let n = p.dim_y();
        AidCg { hyper, grad: be.zeros(n, "aid_cg.grad"), b: be.zeros(n, "aid_cg.b"), v: be.zeros(n, "aid_cg.v"), cg: Cg::new(be, n) }
    }
}

impl<B: Backend, P: Problem<B>> Algorithm<B, P> for AidCg<B> {
    fn hyper_mut(&mut self) -> &mut Hyper {
        &mut self.hyper
    }

    fn inner_and_hypergradient(&mut self, be: &B, p: &P, step: Step<'_, B>) {
        let Step { x, y, h, rng, .. } = step;
        let Hyper { t: big_t, q: big_k, alpha, .. } = self.hyper;

        // Full-batch inner gradient descent from the warm start.
        inner_descent(be, p, x, y, &mut self.grad, InnerSteps { steps: big_t, alpha, batch: None }, rng);

        // v ≈ H⁻¹ ∇_y f by K CG iterations from 0.
        p.outer_grad_y(be, x, y, Rows::All, &mut self.b);
        self.cg.solve(be, p, Point { x, y }, &self.b, &mut self.v, CgSolve { iters: big_k, warm: false, tol: None });

        // ĥ = ∇_x f − J[v]
        implicit_hypergradient(be, p, x, y, Adjoint { v: &self.v, c: 1.0, rows: Rows::All }, Rows::All, h);
    }
}
