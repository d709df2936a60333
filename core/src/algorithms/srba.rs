//! SRBA (Dagréou, Moreau, Vaiter, Ablin, AISTATS 2024, "A lower bound and a near-optimal
//! algorithm for bilevel empirical risk minimization"): SOBA's joint step with its directions
//! kept by a SARAH-type recursion, restarted from full batches every q iterations:
//!
//! ```text
//! k ≡ 0 (mod q):  D_y = ∇_y g(x, y)            D_v = H v + ∇_y f        D_x = J v + ∇_x f    (all rows)
//! otherwise:      D ← D + φ(x, y, v; B, D') − φ(x₋, y₋, v₋; B, D')   for each of the three,
//!                 the same batches at the current point and at the previous one
//! (x₋, y₋, v₋) ← (x, y, v)
//! y ← y − ρ D_y;   v ← v − ρ D_v;   x ← x − γ D_x                            (ĥ = D_x)
//! ```
//!
//! ρ is [`Hyper::alpha`] (y and v step alike), γ the outer loop's β; T and Q are not used. The
//! period is the Benchopt bilevel benchmark's, `q = ⌊(n + m)·period_frac / b⌋` with
//! `period_frac = ½` ([`Srba::period_frac`]): about half an epoch of mini-batch steps per full
//! pass. Memory: the previous point and the directions, `3·dim y + 2·dim x` numbers beyond the
//! terms' workspaces.

use super::{Algorithm, Hyper, Step, Terms};
use crate::backend::{Backend, Coef, Rows};
use crate::problems::Problem;

/// SRBA's state: v, the previous point, the recursive directions, the terms' workspaces.
pub struct Srba<B: Backend> {
    hyper: Hyper,
    /// The full-batch period as a fraction of an epoch over both sets (Benchopt's ½).
    pub period_frac: f64,
    v: B::Vector,
    /// (x₋, y₋, v₋): where the last directions were taken.
    prev: [B::Vector; 3],
    d_y: B::Vector,
    d_v: B::Vector,
    d_x: B::Vector,
    now: Terms<B>,
    before: Terms<B>,
}

impl<B: Backend> Srba<B> {
    /// Workspaces sized for `p`, v starting at 0, the Benchopt period (`period_frac = ½`).
    pub fn new<P: Problem<B>>(be: &B, p: &P, hyper: Hyper) -> Self {
        let (dx, dy) = (p.dim_x(), p.dim_y());
        Srba {
            hyper,
            period_frac: 0.5,
            v: be.zeros(dy, "srba.v"),
            prev: [be.zeros(dx, "srba.x_prev"), be.zeros(dy, "srba.y_prev"), be.zeros(dy, "srba.v_prev")],
            d_y: be.zeros(dy, "srba.d_y"),
            d_v: be.zeros(dy, "srba.d_v"),
            d_x: be.zeros(dx, "srba.d_x"),
            now: Terms::zeros(be, p, "srba.now"),
            before: Terms::zeros(be, p, "srba.before"),
        }
    }

    /// q: the directions are recomputed on all rows every q outer iterations (at least 1).
    pub fn period(&self, n_train: usize, n_val: usize) -> usize {
        (((n_train + n_val) as f64 * self.period_frac / self.hyper.batch_size as f64) as usize).max(1)
    }
}

impl<B: Backend, P: Problem<B>> Algorithm<B, P> for Srba<B> {
    fn hyper_mut(&mut self) -> &mut Hyper {
        &mut self.hyper
    }

    fn inner_and_hypergradient(&mut self, be: &B, p: &P, step: Step<'_, B>) {
        let Step { k, x, y, h, rng } = step;
        let Hyper { alpha: rho, batch_size, val_batch_size, .. } = self.hyper;
        let restart = k % self.period(p.n_train(), p.n_val()) == 0;
        let (now, before) = (&mut self.now, &mut self.before);
        if restart {
            // A restart: every term on all rows.
            now.eval_g(be, p, [x, y, &self.v], Rows::All);
            now.eval_f(be, p, [x, y], Rows::All);
            be.copy(&now.grad_g, &mut self.d_y);
            be.copy(&now.hvp, &mut self.d_v);
            be.axpy(Coef::c(1.0), &now.grad_f_y, &mut self.d_v);
            be.copy(&now.cross, &mut self.d_x);
            be.axpy(Coef::c(1.0), &now.grad_f_x, &mut self.d_x);
        } else {
            // The recursion: each term's change between the previous point and this one, on
            // the same batches.
            let b = be.indices(&rng.train_batch(p.n_train(), batch_size));
            let d = be.indices(&rng.val_batch(p.n_val(), val_batch_size));
            let [x_prev, y_prev, v_prev] = &self.prev;
            now.eval_g(be, p, [x, y, &self.v], Rows::Batch(&b));
            now.eval_f(be, p, [x, y], Rows::Batch(&d));
            before.eval_g(be, p, [x_prev, y_prev, v_prev], Rows::Batch(&b));
            before.eval_f(be, p, [x_prev, y_prev], Rows::Batch(&d));
            let change = |d: &mut B::Vector, terms: &[(&B::Vector, &B::Vector)]| {
                for &(plus, minus) in terms {
                    be.axpy(Coef::c(1.0), plus, d);
                    be.axpy(Coef::c(-1.0), minus, d);
                }
            };
            change(&mut self.d_y, &[(&now.grad_g, &before.grad_g)]);
            change(&mut self.d_v, &[(&now.hvp, &before.hvp), (&now.grad_f_y, &before.grad_f_y)]);
            change(&mut self.d_x, &[(&now.cross, &before.cross), (&now.grad_f_x, &before.grad_f_x)]);
        }
        let [x_prev, y_prev, v_prev] = &mut self.prev;
        be.copy(x, x_prev);
        be.copy(y, y_prev);
        be.copy(&self.v, v_prev);

        be.copy(&self.d_x, h);
        be.axpy(Coef::c(-rho), &self.d_y, y);
        be.axpy(Coef::c(-rho), &self.d_v, &mut self.v);
    }
}
