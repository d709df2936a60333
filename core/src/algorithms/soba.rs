//! SOBA (Dagréou, Ablin, Vaiter, Moreau 2022): a single loop that moves y, the linear system's
//! solution v ≈ −H⁻¹∇_y f, and x together, each along a stochastic direction:
//!
//! ```text
//! D_y = ∇_y g(x, y; B_1)
//! D_v = ∇²_yy g(x, y; B_2) v + ∇_y f(x, y; D_F)
//! D_x = ∇²_xy g(x, y; B_2) v + ∇_x f(x, y; D_F)        (ĥ = D_x)
//! y ← y − α D_y;   v ← v − η D_v;   x ← x − β D_x
//! ```
//! (T and Q are not used: one joint step per outer step is the method.)

use super::{implicit_hypergradient, Adjoint, Algorithm, Hyper, Step};
use crate::backend::{Backend, Coef, Rows};
use crate::problems::Problem;

/// SOBA's state (v, kept between outer steps), its directions' workspaces and settings.
pub struct Soba<B: Backend> {
    hyper: Hyper,
    v: B::Vector,
    d_y: B::Vector,
    d_v: B::Vector,
    grad_f: B::Vector,
}

impl<B: Backend> Soba<B> {
    /// Workspaces sized for `p`, v starting at 0; `hyper` gives α, η and the batch sizes.
    pub fn new<P: Problem<B>>(be: &B, p: &P, hyper: Hyper) -> Self {
        let n = p.dim_y();
        Soba {
            hyper,
            v: be.zeros(n, "soba.v"),
            d_y: be.zeros(n, "soba.d_y"),
            d_v: be.zeros(n, "soba.d_v"),
            grad_f: be.zeros(n, "soba.grad_f"),
        }
    }
}

impl<B: Backend, P: Problem<B>> Algorithm<B, P> for Soba<B> {
    fn hyper_mut(&mut self) -> &mut Hyper {
        &mut self.hyper
    }

    fn inner_and_hypergradient(&mut self, be: &B, p: &P, step: Step<'_, B>) {
        let Step { x, y, h, rng, .. } = step;
        let Hyper { eta, alpha, batch_size, val_batch_size, .. } = self.hyper;
        let b_1 = be.indices(&rng.train_batch(p.n_train(), batch_size));
        let b_2 = be.indices(&rng.train_batch(p.n_train(), batch_size));
        let d_f = be.indices(&rng.val_batch(p.n_val(), val_batch_size));

        // All three directions at the current (x, y, v).
        p.inner_grad(be, x, y, Rows::Batch(&b_1), &mut self.d_y);
        p.inner_hvp(be, x, y, &self.v, Rows::Batch(&b_2), &mut self.d_v);
        p.outer_grad_y(be, x, y, Rows::Batch(&d_f), &mut self.grad_f);
        be.axpy(Coef::c(1.0), &self.grad_f, &mut self.d_v);
        // SOBA's v solves H v = −∇_y f, so its sign is in v: c = −1.
        implicit_hypergradient(be, p, x, y, Adjoint { v: &self.v, c: -1.0, rows: Rows::Batch(&b_2) }, Rows::Batch(&d_f), h);

        be.axpy(Coef::c(-alpha), &self.d_y, y);
        be.axpy(Coef::c(-eta), &self.d_v, &mut self.v);
    }
}
