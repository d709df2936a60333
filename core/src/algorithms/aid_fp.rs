//! AID-FP (approximate implicit differentiation by fixed-point iteration; HyperTorch's
//! `fixed_point` on the map y ↦ y − α∇_y g): full-batch inner descent, then
//!
//! ```text
//! v_0 = 0;  v_{i+1} = (I − α H) v_i + ∇_y f        (K times; v_K ≈ (αH)⁻¹ ∇_y f)
//! ĥ = ∇_x f − α ∇_x∇_y g(x, y) v_K
//! ```

use super::{implicit_hypergradient, inner_descent, Adjoint, Algorithm, Hyper, InnerSteps, Step};
use crate::backend::{Backend, Coef, Rows};
use crate::problems::Problem;

/// AID-FP's workspaces (gradient, ∇_y f, the fixed-point iterate v and H v) and settings.
pub struct AidFp<B: Backend> {
    hyper: Hyper,
    grad: B::Vector,
    b: B::Vector,
    v: B::Vector,
    hv: B::Vector,
}

impl<B: Backend> AidFp<B> {
    /// Workspaces sized for `p`; `hyper` gives T (inner steps), K (fixed-point steps) and α.
    pub fn new<P: Problem<B>>(be: &B, p: &P, hyper: Hyper) -> Self {
        let n = p.dim_y();
        AidFp {
            hyper,
            grad: be.zeros(n, "aid_fp.grad"),
            b: be.zeros(n, "aid_fp.b"),
            v: be.zeros(n, "aid_fp.v"),
            hv: be.zeros(n, "aid_fp.hv"),
        }
    }
}

impl<B: Backend, P: Problem<B>> Algorithm<B, P> for AidFp<B> {
    fn hyper_mut(&mut self) -> &mut Hyper {
        &mut self.hyper
    }

    fn inner_and_hypergradient(&mut self, be: &B, p: &P, step: Step<'_, B>) {
        let Step { x, y, h, rng, .. } = step;
        let Hyper { t: big_t, q: big_k, alpha, .. } = self.hyper;

        inner_descent(be, p, x, y, &mut self.grad, InnerSteps { steps: big_t, alpha, batch: None }, rng);

        // v ← (I − αH) v + ∇_y f, K times from v = 0.
        p.outer_grad_y(be, x, y, Rows::All, &mut self.b);
        be.fill(Coef::c(0.0), &mut self.v);
        for _ in 0..big_k {
            p.inner_hvp(be, x, y, &self.v, Rows::All, &mut self.hv);
            be.axpy(Coef::c(-alpha), &self.hv, &mut self.v);
            be.axpy(Coef::c(1.0), &self.b, &mut self.v);
        }

        // ĥ = ∇_x f − α J[v]
        implicit_hypergradient(be, p, x, y, Adjoint { v: &self.v, c: alpha, rows: Rows::All }, Rows::All, h);
    }
}
