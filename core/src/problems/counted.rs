//! Oracle accounting for any problem: a wrapper that forwards every oracle and counts the
//! calls and the samples each touched, so every run reports its cost beside its time.

use std::borrow::Borrow;
use std::cell::Cell;

use serde::Serialize;

use super::{NeumannStep, Problem};
use crate::backend::{Backend, Rows};

/// Oracle calls so far, and the data rows they read. `outer_grads` counts evaluations of f's
/// gradient: `outer_grad_y` calls; the `add_outer_grad_x` that every algorithm pairs with one on
/// the same rows is that evaluation's x-part (one stochastic gradient of f, as the paper counts
/// its oracle), so it adds neither a call nor samples.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct OracleCounts {
    /// Gradients ∇_y g (fused inner steps included).
    pub inner_grads: u64,
    /// Hessian-vector products ∇²_yy g · v (fused Neumann steps included).
    pub hvps: u64,
    /// Mixed products `J[v] = ∇_x∇_y g · v`.
    pub jvps: u64,
    /// Gradients of f: `outer_grad_y` calls (their `add_outer_grad_x` is not counted apart).
    pub outer_grads: u64,
    /// Evaluations of g or f.
    pub losses: u64,
    /// Data rows read by all the counted calls together.
    pub samples: u64,
}

impl OracleCounts {
    /// Gradient, HVP, J-product and outer-gradient calls together (loss evaluations excluded:
    /// they are the caller's reporting, not the algorithm's).
    pub fn calls(&self) -> u64 {
        self.inner_grads + self.hvps + self.jvps + self.outer_grads
    }
}

/// `P` with its oracle calls counted into `C`: its own counts, or (for the view
/// [`Problem::val_as_train`] returns) the counts of the problem it is a view of, so that the
/// view's calls land in the same [`OracleCounts`], with the view's row counts as samples.
///
/// ```
/// use bilevel_core::cpu::CpuBackend;
/// use bilevel_core::problems::counted::Counted;
/// use bilevel_core::problems::ridge::{Ridge, RidgeData};
/// use bilevel_core::problems::Problem;
/// use bilevel_core::{Backend, Rows};
///
/// let be = CpuBackend::<f64>::new();
/// let p = Counted::new(Ridge::ridge(&be, &RidgeData::synthetic(30, 20, 4, 0.1, 0)));
/// let (x, y, mut out) = (be.zeros(4, "x"), be.zeros(4, "y"), be.zeros(4, "out"));
/// p.inner_grad(&be, &x, &y, Rows::All, &mut out);
/// p.inner_hvp(&be, &x, &y, &x, Rows::All, &mut out);
/// let counts = p.counts();
/// assert_eq!((counts.inner_grads, counts.hvps, counts.calls(), counts.samples), (1, 1, 2, 60));
/// ```
pub struct Counted<P, C = Cell<OracleCounts>> {
    /// The wrapped problem, whose oracles do the work.
    pub inner: P,
    counts: C,
}

impl<P> Counted<P> {
    /// `inner` with its own counts, all zero.
    pub fn new(inner: P) -> Self {
        Counted { inner, counts: Cell::default() }
    }
}

impl<P, C: Borrow<Cell<OracleCounts>>> Counted<P, C> {
    /// The counts so far (of every view sharing them).
    pub fn counts(&self) -> OracleCounts {
        self.counts.borrow().get()
    }
    fn add<B: Backend>(&self, be: &B, rows: Rows<'_, B::Indices>, all: usize, field: impl Fn(&mut OracleCounts)) {
        let cell = self.counts.borrow();
        let mut c = cell.get();
        field(&mut c);
        c.samples += match rows {
            Rows::All => all,
            Rows::Batch(idx) => be.indices_len(idx),
        } as u64;
        cell.set(c);
    }
}

impl<B: Backend, P: Problem<B>, C: Borrow<Cell<OracleCounts>>> Problem<B> for Counted<P, C> {
    fn dim_x(&self) -> usize {
        self.inner.dim_x()
    }
    fn dim_y(&self) -> usize {
        self.inner.dim_y()
    }
    fn n_train(&self) -> usize {
        self.inner.n_train()
    }
    fn n_val(&self) -> usize {
        self.inner.n_val()
    }
    fn inner_grad(&self, be: &B, x: &B::Vector, y: &B::Vector, rows: Rows<'_, B::Indices>, out: &mut B::Vector) {
        self.add(be, rows, self.n_train(), |c| c.inner_grads += 1);
        self.inner.inner_grad(be, x, y, rows, out)
    }
    fn inner_hvp(&self, be: &B, x: &B::Vector, y: &B::Vector, v: &B::Vector, rows: Rows<'_, B::Indices>, out: &mut B::Vector) {
        self.add(be, rows, self.n_train(), |c| c.hvps += 1);
        self.inner.inner_hvp(be, x, y, v, rows, out)
    }
    fn mixed_jvp(&self, be: &B, x: &B::Vector, y: &B::Vector, v: &B::Vector, rows: Rows<'_, B::Indices>, out: &mut B::Vector) {
        self.add(be, rows, self.n_train(), |c| c.jvps += 1);
        self.inner.mixed_jvp(be, x, y, v, rows, out)
    }
    fn outer_grad_y(&self, be: &B, x: &B::Vector, y: &B::Vector, rows: Rows<'_, B::Indices>, out: &mut B::Vector) {
        self.add(be, rows, self.n_val(), |c| c.outer_grads += 1);
        self.inner.outer_grad_y(be, x, y, rows, out)
    }
    fn add_outer_grad_x(&self, be: &B, x: &B::Vector, y: &B::Vector, rows: Rows<'_, B::Indices>, out: &mut B::Vector) {
        // The x-part of the outer gradient counted at its `outer_grad_y` (see OracleCounts).
        self.inner.add_outer_grad_x(be, x, y, rows, out)
    }
    fn inner_step(&self, be: &B, x: &B::Vector, y: &mut B::Vector, alpha: f64, rows: Rows<'_, B::Indices>, scratch: &mut B::Vector) {
        self.add(be, rows, self.n_train(), |c| c.inner_grads += 1);
        self.inner.inner_step(be, x, y, alpha, rows, scratch)
    }
    fn neumann_step(
        &self,
        be: &B,
        x: &B::Vector,
        y: &B::Vector,
        r: &mut B::Vector,
        step: NeumannStep<'_, B::Indices>,
        scratch: &mut B::Vector,
    ) {
        self.add(be, step.rows, self.n_train(), |c| c.hvps += 1);
        self.inner.neumann_step(be, x, y, r, step, scratch)
    }
    fn val_as_train<'s>(&'s self) -> Option<Box<dyn Problem<B> + 's>>
    where
        B: 's,
    {
        let view = self.inner.val_as_train()?;
        Some(Box::new(Counted { inner: view, counts: self.counts.borrow() }))
    }
    fn inner_loss(&self, be: &B, x: &B::Vector, y: &B::Vector, rows: Rows<'_, B::Indices>, out: &B::Scalar) {
        self.add(be, rows, self.n_train(), |c| c.losses += 1);
        self.inner.inner_loss(be, x, y, rows, out)
    }
    fn outer_loss(&self, be: &B, x: &B::Vector, y: &B::Vector, rows: Rows<'_, B::Indices>, out: &B::Scalar) {
        self.add(be, rows, self.n_val(), |c| c.losses += 1);
        self.inner.outer_loss(be, x, y, rows, out)
    }
}
