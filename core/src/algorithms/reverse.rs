//! reverse (iterative differentiation, ITD): backpropagation through the last K of the T
//! full-batch inner steps `y_{t+1} = y_t − α ∇_y g(x, y_t)`:
//!
//! ```text
//! a = ∇_y f(x, y_T);  ĥ = ∇_x f
//! for t = T−1 … T−K:   ĥ ← ĥ − α J(y_t)[a];   a ← a − α H(y_t)[a]
//! ```
//! Memory does not grow with T: instead of storing every iterate, at most
//! [`MAX_CHECKPOINTS`] iterates are kept, evenly spaced over the last K steps, and each y_t the
//! backward pass needs is recomputed from the nearest checkpoint before it (deterministic full
//! batches make the recomputation exact).

use super::{inner_descent, Algorithm, Hyper, InnerSteps, Step};
use crate::backend::{Backend, Coef, Rows};
use crate::problems::Problem;

/// Iterates kept for the backward pass, whatever T and K are.
pub const MAX_CHECKPOINTS: usize = 8;

/// reverse's workspaces (the adjoint, its products, the checkpointed iterates) and settings.
pub struct Reverse<B: Backend> {
    hyper: Hyper,
    grad: B::Vector,
    /// The adjoint a, H a, J a, and the recomputed iterate y_t.
    a: B::Vector,
    ha: B::Vector,
    ja: B::Vector,
    y_t: B::Vector,
    checkpoints: Vec<B::Vector>,
}

impl<B: Backend> Reverse<B> {
    /// Workspaces sized for `p`, with min(K, T, [`MAX_CHECKPOINTS`]) checkpoints (at least 1);
    /// `hyper` gives T (inner steps), K (steps backpropagated through) and α.
    pub fn new<P: Problem<B>>(be: &B, p: &P, hyper: Hyper) -> Self {
        let n = p.dim_y();
        let kept = hyper.q.min(hyper.t).clamp(1, MAX_CHECKPOINTS);
        Reverse {
            grad: be.zeros(n, "reverse.grad"),
            a: be.zeros(n, "reverse.a"),
            ha: be.zeros(n, "reverse.ha"),
            ja: be.zeros(p.dim_x(), "reverse.ja"),
            y_t: be.zeros(n, "reverse.y_t"),
            checkpoints: (0..kept).map(|_| be.zeros(n, "reverse.checkpoint")).collect(),
            hyper,
        }
    }
}

impl<B: Backend, P: Problem<B>> Algorithm<B, P> for Reverse<B> {
    fn hyper_mut(&mut self) -> &mut Hyper {
        &mut self.hyper
    }

    fn inner_and_hypergradient(&mut self, be: &B, p: &P, step: Step<'_, B>) {
        let Step { x, y, h, rng, .. } = step;
        let Hyper { t: big_t, q, alpha, .. } = self.hyper;
        let big_k = q.min(big_t);
        let first = big_t - big_k;
        // Checkpoint c holds y at step first + c·stride.
        let stride = big_k.div_ceil(self.checkpoints.len()).max(1);

        // Forward: the steps before the window, then the window with its checkpoints.
        inner_descent(be, p, x, y, &mut self.grad, InnerSteps { steps: first, alpha, batch: None }, rng);
        for t in first..big_t {
            if (t - first) % stride == 0 {
                be.copy(y, &mut self.checkpoints[(t - first) / stride]);
            }
            inner_descent(be, p, x, y, &mut self.grad, InnerSteps { steps: 1, alpha, batch: None }, rng);
        }

        // Backward through the window, recomputing each y_t from its checkpoint.
        p.outer_grad_y(be, x, y, Rows::All, &mut self.a);
        be.fill(Coef::c(0.0), h);
        for t in (first..big_t).rev() {
            let c = (t - first) / stride;
            be.copy(&self.checkpoints[c], &mut self.y_t);
            inner_descent(be, p, x, &mut self.y_t, &mut self.grad, InnerSteps { steps: t - (first + c * stride), alpha, batch: None }, rng);
            p.mixed_jvp(be, x, &self.y_t, &self.a, Rows::All, &mut self.ja);
            be.axpy(Coef::c(-alpha), &self.ja, h);
            p.inner_hvp(be, x, &self.y_t, &self.a, Rows::All, &mut self.ha);
            be.axpy(Coef::c(-alpha), &self.ha, &mut self.a);
        }
        p.add_outer_grad_x(be, x, y, Rows::All, h);
    }
}
