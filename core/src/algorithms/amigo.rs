//! AmIGO (Arbel & Mairal, ICLR 2022, "Amortized implicit differentiation for stochastic bilevel
//! optimization", Algorithm 1): stochastic inner steps on y, then stochastic steps on the linear
//! system's quadratic `½ vᵀHv − vᵀ∇_y f` for v, both warm-started from the last outer step
//! (amortised: the previous solutions are good starts when x moves little):
//!
//! ```text
//! for t = 1..T:  y ← y − α ∇_y g(x, y; S_t)
//! b = ∇_y f(x, y; D_F)
//! for q = 1..Q:  v ← v − η (∇²_yy g(x, y; B_q) v − b)        (v ≈ H⁻¹ ∇_y f)
//! ĥ = ∇_x f(x, y; D_F) − ∇_x∇_y g(x, y; D_G) v
//! ```
//!
//! Fresh batches for every inner step, every v step and the J product, as the Benchopt bilevel
//! benchmark's AmIGO draws them (it uses one step size for y and v and T = Q; here α and η, T and
//! Q are apart, and the CLI's defaults make them equal). Memory: v, one y-sized vector.

use super::{implicit_hypergradient, inner_descent, Adjoint, Algorithm, Hyper, InnerSteps, Step};
use crate::backend::{Backend, Coef, Rows};
use crate::problems::{NeumannStep, Problem};

/// AmIGO's state (v, kept between outer steps) and workspaces.
pub struct Amigo<B: Backend> {
    hyper: Hyper,
    v: B::Vector,
    grad: B::Vector,
    /// ∇_y f on the outer step's validation batch: the linear system's right-hand side.
    b: B::Vector,
}

impl<B: Backend> Amigo<B> {
    /// Workspaces sized for `p`, v starting at 0; `hyper` gives T, Q, α, η and the batch sizes.
    pub fn new<P: Problem<B>>(be: &B, p: &P, hyper: Hyper) -> Self {
        let n = p.dim_y();
        Amigo { hyper, v: be.zeros(n, "amigo.v"), grad: be.zeros(n, "amigo.grad"), b: be.zeros(n, "amigo.b") }
    }
}

impl<B: Backend, P: Problem<B>> Algorithm<B, P> for Amigo<B> {
    fn hyper_mut(&mut self) -> &mut Hyper {
        &mut self.hyper
    }

    fn inner_and_hypergradient(&mut self, be: &B, p: &P, step: Step<'_, B>) {
        let Step { x, y, h, rng, .. } = step;
        let Hyper { t: big_t, q: big_q, eta, alpha, batch_size, val_batch_size, .. } = self.hyper;

        // T inner SGD steps from the warm start.
        inner_descent(be, p, x, y, &mut self.grad, InnerSteps { steps: big_t, alpha, batch: Some(batch_size) }, rng);

        // Q SGD steps on ½ vᵀHv − vᵀb from the last v: v ← (I − ηH_B) v + η b.
        let d_f = be.indices(&rng.val_batch(p.n_val(), val_batch_size));
        p.outer_grad_y(be, x, y, Rows::Batch(&d_f), &mut self.b);
        for _ in 0..big_q {
            let b_q = be.indices(&rng.train_batch(p.n_train(), batch_size));
            p.neumann_step(be, x, y, &mut self.v, NeumannStep { eta, rows: Rows::Batch(&b_q) }, &mut self.grad);
            be.axpy(Coef::c(eta), &self.b, &mut self.v);
        }

        // ĥ = ∇_x f − J[v], J on a fresh batch.
        let d_g = be.indices(&rng.train_batch(p.n_train(), batch_size));
        implicit_hypergradient(be, p, x, y, Adjoint { v: &self.v, c: 1.0, rows: Rows::Batch(&d_g) }, Rows::Batch(&d_f), h);
    }
}
