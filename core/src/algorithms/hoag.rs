//! HOAG (Pedregosa 2016): hyperparameter optimisation with approximate gradient. Each outer
//! iteration solves the inner problem and the linear system only to a tolerance ε_k that
//! decreases geometrically (summable, as the method's convergence needs), warm-starting both:
//!
//! ```text
//! y: full-batch descent until ‖∇_y g‖ ≤ ε_k            (at most T steps)
//! v: CG on H v = ∇_y f from the previous v until ‖H v − ∇_y f‖ ≤ ε_k   (at most K steps)
//! ĥ = ∇_x f − J[v];   ε_{k+1} = ρ ε_k
//! ```
//! The tolerance tests run on the device (gated steps), so no readback is needed. The step size
//! is the outer optimiser's (Pedregosa adapts it with a Lipschitz estimate; not done here).

use super::{implicit_hypergradient, Adjoint, Algorithm, Cg, CgSolve, Hyper, Point, Step};
use crate::backend::{Backend, Coef, Rows};
use crate::problems::Problem;

/// ε_0: the first outer iteration's tolerance, of the sequence ε_k = ε_0 ρ^k (Pedregosa's
/// exponential one).
pub const TOL0: f64 = 1e-2;
/// ρ: the factor by which the tolerance ε_k decreases each outer iteration.
pub const TOL_DECAY: f64 = 0.9;

/// HOAG's workspaces (inner gradient and its squared norm, ∇_y f, the warm-started v, CG's
/// state) and settings.
pub struct Hoag<B: Backend> {
    hyper: Hyper,
    grad: B::Vector,
    grad_sq: B::Scalar,
    b: B::Vector,
    /// The linear system's solution, kept between outer iterations as the next warm start.
    v: B::Vector,
    cg: Cg<B>,
}

impl<B: Backend> Hoag<B> {
    /// Workspaces sized for `p`, v starting at 0; `hyper` gives T and K (the most inner and CG
    /// steps per outer iteration) and α.
    pub fn new<P: Problem<B>>(be: &B, p: &P, hyper: Hyper) -> Self {
        let n = p.dim_y();
        Hoag {
            hyper,
            grad: be.zeros(n, "hoag.grad"),
            grad_sq: be.scalar("hoag.grad_sq"),
            b: be.zeros(n, "hoag.b"),
            v: be.zeros(n, "hoag.v"),
            cg: Cg::new(be, n),
        }
    }
}

impl<B: Backend, P: Problem<B>> Algorithm<B, P> for Hoag<B> {
    fn hyper_mut(&mut self) -> &mut Hyper {
        &mut self.hyper
    }

    fn inner_and_hypergradient(&mut self, be: &B, p: &P, step: Step<'_, B>) {
        let Step { k, x, y, h, .. } = step;
        let Hyper { t: big_t, q: big_k, alpha, .. } = self.hyper;
        let eps = TOL0 * TOL_DECAY.powi(k as i32);

        // Inner descent that stops moving once ‖∇_y g‖ ≤ ε_k.
        for _ in 0..big_t {
            p.inner_grad(be, x, y, Rows::All, &mut self.grad);
            be.dot(&self.grad, &self.grad, 1.0, &self.grad_sq, false);
            be.axpy(Coef::c(-alpha).gated(&self.grad_sq, eps * eps), &self.grad, y);
        }

        // CG to ‖r‖ ≤ ε_k, warm-started from the previous solution.
        p.outer_grad_y(be, x, y, Rows::All, &mut self.b);
        self.cg.solve(be, p, Point { x, y }, &self.b, &mut self.v, CgSolve { iters: big_k, warm: k > 0, tol: Some(eps) });

        implicit_hypergradient(be, p, x, y, Adjoint { v: &self.v, c: 1.0, rows: Rows::All }, Rows::All, h);
    }
}
