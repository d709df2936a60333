//! AID-CG (approximate implicit differentiation with conjugate gradient; HyperTorch's `CG`):
//! full-batch inner gradient descent, then K CG iterations for H v = ∇_y f from v = 0.
//!
//! ```text
//! for t = 1..T:  y ← y − α ∇_y g(x, y)
//! v ≈ H⁻¹ ∇_y f(x, y)      (K steps of CG, H = ∇²_yy g(x, y))
//! ĥ = ∇_x f − ∇_x∇_y g(x, y) v
//! ```
//! CG's scalars (ρ = rᵀr, pᵀHp, α_cg, β_cg) stay on the device: a CG iteration is a handful
//! of dispatches and no readback. A converged CG (ρ = 0) takes zero steps from then on.

use super::{Algorithm, Hyper};
use crate::backend::{Backend, Coef, Rows};
use crate::problems::Problem;
use crate::sampler::Sampler;

pub struct AidCg<B: Backend> {
    hyper: Hyper,
    grad: B::Vector,
    /// CG iterate v, residual r, direction d, and H d.
    v: B::Vector,
    r: B::Vector,
    d: B::Vector,
    hd: B::Vector,
    rho: B::Scalar,
    rho_next: B::Scalar,
    d_hd: B::Scalar,
}

impl<B: Backend> AidCg<B> {
    pub fn new<P: Problem<B>>(be: &B, p: &P, hyper: Hyper) -> Self {
        let n = p.dim_y();
        AidCg {
            hyper,
            grad: be.zeros(n, "aid_cg.grad"),
            v: be.zeros(n, "aid_cg.v"),
            r: be.zeros(n, "aid_cg.r"),
            d: be.zeros(n, "aid_cg.d"),
            hd: be.zeros(n, "aid_cg.hd"),
            rho: be.scalar("aid_cg.rho"),
            rho_next: be.scalar("aid_cg.rho_next"),
            d_hd: be.scalar("aid_cg.d_hd"),
        }
    }
}

impl<B: Backend, P: Problem<B>> Algorithm<B, P> for AidCg<B> {
    fn inner_and_hypergradient(&mut self, be: &B, p: &P, x: &B::Vector, y: &mut B::Vector, h: &mut B::Vector, _rng: &mut Sampler) {
        let Hyper { t: big_t, q: big_k, alpha, .. } = self.hyper;

        // Full-batch inner gradient descent from the warm start.
        for _ in 0..big_t {
            p.inner_grad(be, x, y, Rows::All, &mut self.grad);
            be.axpy(Coef::c(-alpha), &self.grad, y);
        }

        // CG on H v = ∇_y f from v = 0: r = d = ∇_y f, ρ = rᵀr.
        p.outer_grad_y(be, x, y, Rows::All, &mut self.r);
        be.fill(Coef::c(0.0), &mut self.v);
        be.copy(&self.r, &mut self.d);
        be.dot(&self.r, &self.r, 1.0, &self.rho, false);
        for _ in 0..big_k {
            p.inner_hvp(be, x, y, &self.d, Rows::All, &mut self.hd);
            be.dot(&self.d, &self.hd, 1.0, &self.d_hd, false);
            // α_cg = ρ / dᵀHd:  v += α_cg d,  r −= α_cg H d
            be.axpy(Coef::ratio(1.0, &self.rho, &self.d_hd), &self.d, &mut self.v);
            be.axpy(Coef::ratio(-1.0, &self.rho, &self.d_hd), &self.hd, &mut self.r);
            // β_cg = ρ' / ρ:  d = r + β_cg d
            be.dot(&self.r, &self.r, 1.0, &self.rho_next, false);
            be.axpby(Coef::c(1.0), &self.r, Coef::ratio(1.0, &self.rho_next, &self.rho), &mut self.d);
            std::mem::swap(&mut self.rho, &mut self.rho_next);
        }

        // ĥ = ∇_x f − J[v]
        p.mixed_jvp(be, x, y, &self.v, Rows::All, h);
        be.scale(Coef::c(-1.0), h);
        p.add_outer_grad_x(be, x, y, Rows::All, h);
    }
}
