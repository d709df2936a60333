//! Hyperparameters shared by groups: a problem whose own hyperparameters `x_full` (one per
//! feature, say) are tied to fewer, `x_full = T x` with `T` the 0/1 matrix sending each full
//! hyperparameter to its group — one global L2 strength is the case of a single group. Every
//! oracle is the wrapped problem's at `T x`; the x-derivatives are summed over each group,
//! `J_tied[v] = Tᵀ J[v]` and `∇ₓf_tied = Tᵀ ∇ₓf` (the chain rule through a linear map). `T` is a
//! resident sparse matrix and both maps are the backend's data products (`T x` by
//! `gather_matmul`, `Tᵀ u` by `gather_tmatmul`), so a tied problem runs on every backend.
//!
//! ```
//! use bilevel_core::cpu::CpuBackend;
//! use bilevel_core::problems::{ridge::{Ridge, RidgeData}, tied::Tied, Problem};
//!
//! let be = CpuBackend::<f64>::new();
//! // Ridge regression with one L2 strength e^λ for all 6 features.
//! let p = Tied::global(&be, Ridge::ridge(&be, &RidgeData::synthetic(40, 30, 6, 0.1, 0)));
//! assert_eq!((p.dim_x(), p.dim_y()), (1, 6));
//! let report = pollster::block_on(bilevel_core::check_oracles(&p, &be, &[0.4], &[0.2; 6]))?;
//! assert!(report.passed(), "{report}");
//! # Ok::<(), bilevel_core::Error>(())
//! ```

use std::cell::RefCell;

use super::{NeumannStep, Problem};
use crate::backend::{Backend, HostMatrix, Reg, Rows, TmatmulOut};
use crate::{Error, Result};

/// `P` with its hyperparameters tied into groups (see the module docs).
pub struct Tied<B: Backend, P> {
    inner: P,
    /// T: one row per full hyperparameter, a 1 in its group's column.
    tie: B::Matrix,
    groups: usize,
    /// `T x`, rebuilt by each oracle call.
    full_x: RefCell<B::Vector>,
    /// A full-sized x-derivative before it is summed over groups.
    full_dx: RefCell<B::Vector>,
}

impl<B: Backend, P: Problem<B>> Tied<B, P> {
    /// `inner` with full hyperparameter j in group `group_of[j]` (groups numbered from 0; a
    /// group without members is an error, as is a length other than `inner.dim_x()`).
    pub fn new(be: &B, inner: P, group_of: &[usize]) -> Result<Self> {
        let full = inner.dim_x();
        if group_of.len() != full {
            return Err(Error::InvalidArgument(format!("{} group indices for {full} hyperparameters", group_of.len())));
        }
        let groups = group_of.iter().max().map_or(0, |g| g + 1);
        if let Some(empty) = (0..groups).find(|g| !group_of.contains(g)) {
            return Err(Error::InvalidArgument(format!("hyperparameter group {empty} has no members")));
        }
        let tie = HostMatrix::Csr {
            rows: full,
            cols: groups,
            indptr: (0..=full as u32).collect(),
            indices: group_of.iter().map(|&g| g as u32).collect(),
            values: vec![1.0; full],
        };
        Ok(Tied {
            tie: be.matrix_from(&tie, "tied.T"),
            groups,
            full_x: RefCell::new(be.zeros(full, "tied.full_x")),
            full_dx: RefCell::new(be.zeros(full, "tied.full_dx")),
            inner,
        })
    }

    /// `inner` with one hyperparameter shared by all of its own (one global L2 strength).
    pub fn global(be: &B, inner: P) -> Self {
        let full = inner.dim_x();
        Self::new(be, inner, &vec![0; full]).expect("one group with every member")
    }

    /// The wrapped problem.
    pub fn inner(&self) -> &P {
        &self.inner
    }

    /// Runs `f` with `T x`.
    fn at_full<R>(&self, be: &B, x: &B::Vector, f: impl FnOnce(&B::Vector) -> R) -> R {
        let mut full = self.full_x.borrow_mut();
        be.gather_matmul(&self.tie, Rows::All, x, 1, &mut full);
        f(&full)
    }

    /// `out ← Tᵀ·full_dx` (or `out += …` when `accumulate`).
    fn sum_groups(&self, be: &B, full_dx: &B::Vector, accumulate: bool, out: &mut B::Vector) {
        let reg = if accumulate { Reg::Decay { lambda: None, exp_coef: 0.0, const_coef: 1.0 } } else { Reg::None };
        be.gather_tmatmul(&self.tie, Rows::All, full_dx, 1, TmatmulOut { scale: 1.0, reg }, out);
    }
}

impl<B: Backend, P: Problem<B>> Problem<B> for Tied<B, P> {
    fn dim_x(&self) -> usize {
        self.groups
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
        self.at_full(be, x, |x| self.inner.inner_grad(be, x, y, rows, out))
    }
    fn inner_hvp(&self, be: &B, x: &B::Vector, y: &B::Vector, v: &B::Vector, rows: Rows<'_, B::Indices>, out: &mut B::Vector) {
        self.at_full(be, x, |x| self.inner.inner_hvp(be, x, y, v, rows, out))
    }
    fn mixed_jvp(&self, be: &B, x: &B::Vector, y: &B::Vector, v: &B::Vector, rows: Rows<'_, B::Indices>, out: &mut B::Vector) {
        let mut dx = self.full_dx.borrow_mut();
        self.at_full(be, x, |x| self.inner.mixed_jvp(be, x, y, v, rows, &mut dx));
        self.sum_groups(be, &dx, false, out);
    }
    fn outer_grad_y(&self, be: &B, x: &B::Vector, y: &B::Vector, rows: Rows<'_, B::Indices>, out: &mut B::Vector) {
        self.at_full(be, x, |x| self.inner.outer_grad_y(be, x, y, rows, out))
    }
    fn add_outer_grad_x(&self, be: &B, x: &B::Vector, y: &B::Vector, rows: Rows<'_, B::Indices>, out: &mut B::Vector) {
        let mut dx = self.full_dx.borrow_mut();
        be.fill(crate::Coef::c(0.0), &mut dx);
        self.at_full(be, x, |x| self.inner.add_outer_grad_x(be, x, y, rows, &mut dx));
        self.sum_groups(be, &dx, true, out);
    }
    fn inner_step(&self, be: &B, x: &B::Vector, y: &mut B::Vector, alpha: f64, rows: Rows<'_, B::Indices>, scratch: &mut B::Vector) {
        self.at_full(be, x, |x| self.inner.inner_step(be, x, y, alpha, rows, scratch))
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
        self.at_full(be, x, |x| self.inner.neumann_step(be, x, y, r, step, scratch))
    }
    fn inner_loss(&self, be: &B, x: &B::Vector, y: &B::Vector, rows: Rows<'_, B::Indices>, out: &B::Scalar) {
        self.at_full(be, x, |x| self.inner.inner_loss(be, x, y, rows, out))
    }
    fn outer_loss(&self, be: &B, x: &B::Vector, y: &B::Vector, rows: Rows<'_, B::Indices>, out: &B::Scalar) {
        self.at_full(be, x, |x| self.inner.outer_loss(be, x, y, rows, out))
    }
}
