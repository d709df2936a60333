//! Bilevel problems: `min_x f(x, y*(x))` with `y*(x) = argmin_y g(x, y)`. Each problem gives
//! hand-derived oracles written once against [`Backend`] primitives, so they run on every
//! backend. `x` are the hyperparameters (λ), `y` the model parameters (w).

pub mod builder;
pub mod counted;
pub mod glm;
pub mod ridge;
pub mod synthetic;
pub mod tied;

use crate::backend::{Backend, Coef, Rows};

/// One step `r ← r − η ∇²_yy g(x, y; rows) r` of the truncated Neumann series for `H⁻¹ v`
/// ([`Problem::neumann_step`]): the step size and the batch it draws its Hessian on.
pub struct NeumannStep<'a, I> {
    /// The step size η.
    pub eta: f64,
    /// The rows of g's Hessian (a fresh batch `B_j` per step in the stochastic algorithms).
    pub rows: Rows<'a, I>,
}

impl<I> Clone for NeumannStep<'_, I> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<I> Copy for NeumannStep<'_, I> {}

/// The oracles the hypergradient algorithms use. `rows` index the training set for `g` and the
/// validation set for `f`.
pub trait Problem<B: Backend> {
    /// Dimension of the hyperparameters x.
    fn dim_x(&self) -> usize;
    /// Dimension of the inner variable y.
    fn dim_y(&self) -> usize;
    /// Training rows: the data set g's `rows` index.
    fn n_train(&self) -> usize;
    /// Validation rows: the data set f's `rows` index.
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
    /// One descent step `y ← y − α ∇_y g(x, y; rows)`; `scratch` (y-sized) is free to use.
    /// The default is the gradient and an axpy; problems fuse it into one pass over y.
    fn inner_step(&self, be: &B, x: &B::Vector, y: &mut B::Vector, alpha: f64, rows: Rows<'_, B::Indices>, scratch: &mut B::Vector) {
        self.inner_grad(be, x, y, rows, scratch);
        be.axpy(Coef::c(-alpha), scratch, y);
    }
    /// One Neumann step `r ← r − η ∇²_yy g(x, y; rows) r` (η and the rows from `step`);
    /// `scratch` is free to use. The default is the HVP and an axpy; problems fuse it into one
    /// pass over r.
    fn neumann_step(
        &self,
        be: &B,
        x: &B::Vector,
        y: &B::Vector,
        r: &mut B::Vector,
        step: NeumannStep<'_, B::Indices>,
        scratch: &mut B::Vector,
    ) {
        let NeumannStep { eta, rows } = step;
        self.inner_hvp(be, x, y, r, rows, scratch);
        be.axpy(Coef::c(-eta), scratch, r);
    }
    /// The same problem with the validation set in the training set's place, for the reference
    /// code's stocBiO (`--compat`), which evaluates g's HVP and J on validation batches. `None`
    /// where that has no sound meaning. (`B: 's` lets a wrapper such as
    /// [`Counted`](counted::Counted) box a view of its own around the one it wraps.)
    fn val_as_train<'s>(&'s self) -> Option<Box<dyn Problem<B> + 's>>
    where
        B: 's,
    {
        None
    }
    /// `out ← g(x, y; rows)`.
    fn inner_loss(&self, be: &B, x: &B::Vector, y: &B::Vector, rows: Rows<'_, B::Indices>, out: &B::Scalar);
    /// `out ← f(x, y; rows)`.
    fn outer_loss(&self, be: &B, x: &B::Vector, y: &B::Vector, rows: Rows<'_, B::Indices>, out: &B::Scalar);
}

/// A boxed problem (such as the view [`Problem::val_as_train`] returns) is that problem: every
/// oracle forwards, the fused steps included.
impl<B: Backend, T: Problem<B> + ?Sized> Problem<B> for Box<T> {
    fn dim_x(&self) -> usize {
        (**self).dim_x()
    }
    fn dim_y(&self) -> usize {
        (**self).dim_y()
    }
    fn n_train(&self) -> usize {
        (**self).n_train()
    }
    fn n_val(&self) -> usize {
        (**self).n_val()
    }
    fn inner_grad(&self, be: &B, x: &B::Vector, y: &B::Vector, rows: Rows<'_, B::Indices>, out: &mut B::Vector) {
        (**self).inner_grad(be, x, y, rows, out)
    }
    fn inner_hvp(&self, be: &B, x: &B::Vector, y: &B::Vector, v: &B::Vector, rows: Rows<'_, B::Indices>, out: &mut B::Vector) {
        (**self).inner_hvp(be, x, y, v, rows, out)
    }
    fn mixed_jvp(&self, be: &B, x: &B::Vector, y: &B::Vector, v: &B::Vector, rows: Rows<'_, B::Indices>, out: &mut B::Vector) {
        (**self).mixed_jvp(be, x, y, v, rows, out)
    }
    fn outer_grad_y(&self, be: &B, x: &B::Vector, y: &B::Vector, rows: Rows<'_, B::Indices>, out: &mut B::Vector) {
        (**self).outer_grad_y(be, x, y, rows, out)
    }
    fn add_outer_grad_x(&self, be: &B, x: &B::Vector, y: &B::Vector, rows: Rows<'_, B::Indices>, out: &mut B::Vector) {
        (**self).add_outer_grad_x(be, x, y, rows, out)
    }
    fn inner_step(&self, be: &B, x: &B::Vector, y: &mut B::Vector, alpha: f64, rows: Rows<'_, B::Indices>, scratch: &mut B::Vector) {
        (**self).inner_step(be, x, y, alpha, rows, scratch)
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
        (**self).neumann_step(be, x, y, r, step, scratch)
    }
    fn val_as_train<'s>(&'s self) -> Option<Box<dyn Problem<B> + 's>>
    where
        B: 's,
    {
        (**self).val_as_train()
    }
    fn inner_loss(&self, be: &B, x: &B::Vector, y: &B::Vector, rows: Rows<'_, B::Indices>, out: &B::Scalar) {
        (**self).inner_loss(be, x, y, rows, out)
    }
    fn outer_loss(&self, be: &B, x: &B::Vector, y: &B::Vector, rows: Rows<'_, B::Indices>, out: &B::Scalar) {
        (**self).outer_loss(be, x, y, rows, out)
    }
}

use crate::backend::{HostMatrix, LossKind};
use crate::data::svmlight::Svmlight;
use crate::Result;
use builder::GlmBuilder;
pub use builder::RegScale;
use glm::{GlmData, HyperKind};

/// The problems, by the names the CLI uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProblemKind {
    /// Squared loss, one λ per feature.
    Ridge,
    /// Binary logistic regression (labels ±1), one λ per feature (ijcnn1).
    Logreg,
    /// Multinomial logistic regression on sparse features, one λ per feature (20 Newsgroups).
    Multilogreg,
    /// Multinomial logistic regression with a bias column, one weight σ(λ_i) per training
    /// sample, `ρ‖W‖²` (MNIST hyper-cleaning).
    Hyperclean,
}

impl ProblemKind {
    /// The problem as a [`GlmBuilder`] instance: ridge = squared loss, logreg = logistic and
    /// multilogreg = softmax, each with one L2 per feature (scaled as `reg_scale` says), and
    /// hyper-cleaning = softmax with a bias column and one weight per sample (`ρ‖W‖²`).
    pub fn builder(self, reg_scale: RegScale, rho: f64) -> GlmBuilder {
        match self {
            ProblemKind::Ridge => GlmBuilder::new(LossKind::Squared).per_feature_l2(reg_scale),
            ProblemKind::Logreg => GlmBuilder::new(LossKind::Logistic).per_feature_l2(reg_scale),
            ProblemKind::Multilogreg => GlmBuilder::new(LossKind::Softmax).per_feature_l2(reg_scale),
            ProblemKind::Hyperclean => GlmBuilder::new(LossKind::Softmax).per_sample_weights(rho).with_bias(),
        }
    }

    /// Builds the problem's data from svmlight train and validation sets (see
    /// [`ProblemKind::builder`] and [`GlmBuilder::build`]).
    pub fn from_svmlight(self, train: Svmlight, val: Svmlight, reg_scale: RegScale, rho: f64) -> Result<(GlmData, HyperKind)> {
        let built = self.builder(reg_scale, rho).build(train, val)?;
        Ok((built.data, built.hyper_kind))
    }
}

/// The rows of `x` with a constant-1 column appended (the bias of hyper-cleaning's model), stored
/// as [`HostMatrix::by_density`] chooses: MNIST's pixels are ~80 % zeros, so it becomes CSR.
pub fn with_bias(x: &HostMatrix) -> HostMatrix {
    let (rows, cols) = x.shape();
    let (mut indptr, mut indices, mut values) = (Vec::with_capacity(rows + 1), Vec::new(), Vec::new());
    indptr.push(0u32);
    for i in 0..rows {
        for (j, v) in x.row(i) {
            indices.push(j as u32);
            values.push(v);
        }
        indices.push(cols as u32);
        values.push(1.0);
        indptr.push(indices.len() as u32);
    }
    HostMatrix::Csr { rows, cols: cols + 1, indptr, indices, values }.by_density()
}
