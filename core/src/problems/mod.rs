//! Bilevel problems: `min_x f(x, y*(x))` with `y*(x) = argmin_y g(x, y)`. Each problem gives
//! hand-derived oracles written once against [`Backend`] primitives, so they run on every
//! backend. `x` are the hyperparameters (λ), `y` the model parameters (w).

pub mod counted;
pub mod glm;
pub mod ridge;
pub mod synthetic;

use crate::backend::{Backend, Rows};

/// The oracles the hypergradient algorithms use. `rows` index the training set for `g` and the
/// validation set for `f`.
pub trait Problem<B: Backend> {
    /// Dimension of the hyperparameters x.
    fn dim_x(&self) -> usize;
    /// Dimension of the inner variable y.
    fn dim_y(&self) -> usize;
    fn n_train(&self) -> usize;
    fn n_val(&self) -> usize;

    /// `out ← ∇_y g(x, y; rows)`.
    fn inner_grad(&self, be: &B, x: &B::Vector, y: &B::Vector, rows: Rows<'_, B::Indices>, out: &mut B::Vector);
    /// `out ← ∇²_yy g(x, y; rows) · v` (Hessian-vector product).
    fn inner_hvp(&self, be: &B, x: &B::Vector, y: &B::Vector, v: &B::Vector, rows: Rows<'_, B::Indices>, out: &mut B::Vector);
    /// `out ← J[v] = ∇_x ⟨∇_y g(x, y; rows), v⟩` (mixed second derivative, y-space → x-space).
    fn mixed_jvp(&self, be: &B, x: &B::Vector, y: &B::Vector, v: &B::Vector, rows: Rows<'_, B::Indices>, out: &mut B::Vector);
    /// `out ← ∇_y f(x, y; rows)`.
    fn outer_grad_y(&self, be: &B, x: &B::Vector, y: &B::Vector, rows: Rows<'_, B::Indices>, out: &mut B::Vector);
    /// `out += ∇_x f(x, y; rows)`. The default is for problems whose f does not depend on x
    /// directly (every hyperparameter problem here): nothing to add.
    fn add_outer_grad_x(&self, _be: &B, _x: &B::Vector, _y: &B::Vector, _rows: Rows<'_, B::Indices>, _out: &mut B::Vector) {}
    /// `out ← g(x, y; rows)`.
    fn inner_loss(&self, be: &B, x: &B::Vector, y: &B::Vector, rows: Rows<'_, B::Indices>, out: &B::Scalar);
    /// `out ← f(x, y; rows)`.
    fn outer_loss(&self, be: &B, x: &B::Vector, y: &B::Vector, rows: Rows<'_, B::Indices>, out: &B::Scalar);
}
