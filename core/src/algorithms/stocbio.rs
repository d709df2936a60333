//! stocBiO (Ji, Yang, Liang 2021, Algorithms 2 and 3), paper mode: fresh mini-batches for every
//! inner step, for every Neumann HVP and for the J product.
//!
//! ```text
//! for t = 1..T:  y ← y − α ∇_y g(x, y; S_t)
//! v_0 = ∇_y f(x, y; D_F)
//! v_Q = η Σ_{q=0..Q} Π_{j=Q+1−q..Q} (I − η ∇²_yy g(x, y; B_j)) v_0
//! ĥ   = ∇_x f(x, y; D_F) − ∇_x∇_y g(x, y; D_G) v_Q
//! ```

use super::{inner_descent, neumann_step, Algorithm, Hyper};
use crate::backend::{Backend, Coef, Rows};
use crate::problems::Problem;
use crate::sampler::Sampler;

pub struct StocBiO<B: Backend> {
    hyper: Hyper,
    grad: B::Vector,
    /// r: the current Neumann term Π(I − ηH) v_0.
    r: B::Vector,
    hr: B::Vector,
    /// Σ_q r_q (v_Q = η · sum).
    sum: B::Vector,
}

impl<B: Backend> StocBiO<B> {
    pub fn new<P: Problem<B>>(be: &B, p: &P, hyper: Hyper) -> Self {
        let n = p.dim_y();
        StocBiO {
            hyper,
            grad: be.zeros(n, "stocbio.grad"),
            r: be.zeros(n, "stocbio.r"),
            hr: be.zeros(n, "stocbio.hr"),
            sum: be.zeros(n, "stocbio.sum"),
        }
    }
}

impl<B: Backend, P: Problem<B>> Algorithm<B, P> for StocBiO<B> {
    fn inner_and_hypergradient(
        &mut self,
        be: &B,
        p: &P,
        _k: usize,
        x: &B::Vector,
        y: &mut B::Vector,
        h: &mut B::Vector,
        rng: &mut Sampler,
    ) {
        let Hyper { t: big_t, q: big_q, eta, alpha, batch_size, val_batch_size, .. } = self.hyper;

        // Inner SGD from the warm start, a fresh training batch S_t per step.
        inner_descent(be, p, x, y, &mut self.grad, big_t, alpha, Some(batch_size), rng);

        // v_0 = ∇_y f(x, y; D_F)
        let d_f = be.indices(&rng.batch(p.n_val(), val_batch_size));
        p.outer_grad_y(be, x, y, Rows::Batch(&d_f), &mut self.r);
        be.copy(&self.r, &mut self.sum);

        // Truncated Neumann series for H⁻¹ v_0, a fresh training batch B_j per HVP.
        for _ in 0..big_q {
            neumann_step(be, p, x, y, &mut self.r, &mut self.hr, eta, Some(batch_size), rng);
            be.axpy(Coef::c(1.0), &self.r, &mut self.sum);
        }

        // ĥ = ∇_x f − J_{D_G}[v_Q],  v_Q = η·sum  (η folded into the scale of J's output).
        let d_g = be.indices(&rng.batch(p.n_train(), batch_size));
        p.mixed_jvp(be, x, y, &self.sum, Rows::Batch(&d_g), h);
        be.scale(Coef::c(-eta), h);
        p.add_outer_grad_x(be, x, y, Rows::Batch(&d_f), h);
    }
}
