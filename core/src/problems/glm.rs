//! Generalised linear models with hyperparameters, the one oracle set behind every problem here:
//! ridge (squared loss), logreg (binary logistic, ijcnn1), multilogreg (softmax on sparse data,
//! 20 Newsgroups) and hyper-cleaning (softmax with per-sample weights, MNIST).
//!
//! With `Z = X_B W` (b × c), the row residual `R_k = ℓ'(Z_k)`, the row curvature
//! `ℓ''(Z_k)` and per-sample weights `s_k` (1, or σ(λ_{row_k}) for hyper-cleaning):
//! ```text
//! g(W, λ; B) = (1/b) Σ_k s_k ℓ(Z_k) + Reg(W, λ)          f(W, λ; V) = (1/|V|) Σ ℓ(Z_k) + (μ/2)‖λ‖²
//! ∇_W g      = X_Bᵀ diag(s) R / b + ∇Reg                ∇_W f = X_Vᵀ R_V / |V|,  ∇_λ f = μ λ
//! H[V]       = X_Bᵀ diag(s) M / b + ∇²Reg V,   M_k = ℓ''(Z_k) U_k,  U = X_B V
//! J[V]       feature ridge, Reg = (s/2) Σ_j e^{λ_j} ‖W_j‖²:  J[V]_j = s e^{λ_j} ⟨W_j, V_j⟩
//!            sample weights, Reg = ρ‖W‖²:  J[V]_{row_k} = (1/b) σ'(λ_{row_k}) ⟨R_k, U_k⟩
//! ```
//! (the softmax M is `P∘(U − ⟨P, U⟩1)`, the logistic one `σ(1−σ)U`, the squared one `U`).
//! The outer penalty μ ([`Glm::with_outer_penalty`], 0 unless set) makes f depend on λ
//! directly, so that `∇_x f` takes part in every hypergradient.

use std::cell::RefCell;

use super::{NeumannStep, Problem};
use crate::backend::{Coef, GlmBackend, GlmRows, GlmScales, HostMatrix, LossKind, LossRows, Reg, RowTerm, Rows, TmatmulOut};
use crate::sampler::Sampler;

/// The hyperparameters and the inner problem's regulariser.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub enum HyperKind {
    /// x = λ ∈ R^d, one per feature: `Reg = (scale/2) Σ_j e^{λ_j} Σ_k W_jk²`.
    FeatureRidge {
        /// s: the factor on the penalty (1 for a sum over features, 1/(d·c) for a mean).
        scale: f64,
    },
    /// x = λ ∈ R^n, one per training sample, weighting its loss by σ(λ_i); `Reg = ρ‖W‖²_F`.
    SampleWeights {
        /// ρ: the strength of the fixed `ρ‖W‖²_F`.
        rho: f64,
    },
}

/// A GLM data set on the host: features, targets (real values, 0/1 labels, or class indices).
#[derive(Clone, Debug)]
pub struct GlmData {
    /// Training features X (n × d): the rows g reads.
    pub x_train: HostMatrix,
    /// Training targets, one per row, in the loss's encoding.
    pub t_train: Vec<f64>,
    /// Validation features X_v (m × d): the rows f reads.
    pub x_val: HostMatrix,
    /// Validation targets, one per row, in the loss's encoding.
    pub t_val: Vec<f64>,
    /// The per-row loss ℓ of both g and f.
    pub loss: LossKind,
    /// Output columns c (1 for squared and logistic losses).
    pub classes: usize,
}

impl GlmData {
    /// The same data with the training rows and the validation rows each in a seeded random
    /// order, as [`Batching::Slices`](crate::sampler::Batching::Slices) expects (its fixed
    /// consecutive batches must be random sets of rows). Also returns the training order (row i
    /// of the result is row `order[i]` of `self`) for per-row metadata.
    pub fn shuffled(&self, seed: u64) -> (GlmData, Vec<usize>) {
        let mut rng = Sampler::new(seed ^ 0x5_11ce);
        let mut order = |n: usize| rng.permutation(n).into_iter().map(|i| i as usize).collect::<Vec<_>>();
        let (train, val) = (order(self.t_train.len()), order(self.t_val.len()));
        let pick = |t: &[f64], rows: &[usize]| rows.iter().map(|&i| t[i]).collect();
        let data = GlmData {
            x_train: self.x_train.select_rows(&train),
            t_train: pick(&self.t_train, &train),
            x_val: self.x_val.select_rows(&val),
            t_val: pick(&self.t_val, &val),
            loss: self.loss,
            classes: self.classes,
        };
        (data, train)
    }
}

/// A GLM bilevel problem resident on a backend.
pub struct Glm<B: GlmBackend> {
    x_train: B::Matrix,
    t_train: B::Vector,
    x_val: B::Matrix,
    t_val: B::Vector,
    n: usize,
    m: usize,
    d: usize,
    c: usize,
    loss: LossKind,
    hyper: HyperKind,
    /// μ of the outer penalty (μ/2)‖x‖² in f.
    outer_penalty: f64,
    /// Batch-sized buffers by length, reused across calls (no allocation per step); a short
    /// list searched linearly (a solver uses two or three lengths).
    scratch: RefCell<Vec<(usize, B::Vector)>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Split {
    Train,
    Val,
}

/// The rows an oracle reads: a split, and all or a batch of its rows.
struct SplitRows<'a, I> {
    split: Split,
    rows: Rows<'a, I>,
}

impl<B: GlmBackend> Glm<B> {
    /// The resident validation features and targets.
    pub(crate) fn validation(&self) -> (&B::Matrix, &B::Vector) {
        (&self.x_val, &self.t_val)
    }

    /// Uploads the data once; every oracle afterwards reads it where it lives. The inner
    /// variable y is the d × c weight matrix W (feature-major), x the hyperparameters `hyper`
    /// names. Panics if the splits' feature counts differ ([`GlmBuilder`](super::builder::GlmBuilder)
    /// checks that with an error).
    ///
    /// ```
    /// use bilevel_core::backend::{HostMatrix, LossKind};
    /// use bilevel_core::cpu::CpuBackend;
    /// use bilevel_core::problems::glm::{Glm, GlmData, HyperKind};
    /// use bilevel_core::problems::Problem;
    /// use bilevel_core::{Backend, Rows};
    ///
    /// let be = CpuBackend::<f64>::new();
    /// let x = HostMatrix::Dense { rows: 2, cols: 2, data: vec![1.0, 0.0, 0.0, 1.0] };
    /// let t = vec![1.0, 2.0];
    /// let data =
    ///     GlmData { x_train: x.clone(), t_train: t.clone(), x_val: x, t_val: t, loss: LossKind::Squared, classes: 1 };
    /// let p = Glm::new(&be, &data, HyperKind::FeatureRidge { scale: 1.0 });
    /// let (lambda, w, mut grad) = (be.zeros(2, "x"), be.zeros(2, "y"), be.zeros(2, "grad"));
    /// p.inner_grad(&be, &lambda, &w, Rows::All, &mut grad);
    /// // At W = 0 the penalty's gradient vanishes: ∇_W g = −Xᵀt / n.
    /// assert_eq!(pollster::block_on(be.read_vector(&grad)).unwrap(), vec![-0.5, -1.0]);
    /// ```
    pub fn new(be: &B, data: &GlmData, hyper: HyperKind) -> Self {
        let (n, d) = data.x_train.shape();
        let (m, dv) = data.x_val.shape();
        assert_eq!(d, dv, "train and validation have different feature counts");
        Glm {
            x_train: be.matrix_from(&data.x_train, "glm.x_train"),
            t_train: be.vector_from(&data.t_train, "glm.t_train"),
            x_val: be.matrix_from(&data.x_val, "glm.x_val"),
            t_val: be.vector_from(&data.t_val, "glm.t_val"),
            n,
            m,
            d,
            c: data.classes,
            loss: data.loss,
            hyper,
            outer_penalty: 0.0,
            scratch: RefCell::default(),
        }
    }

    /// The same problem with the outer objective `f(x, y) = f_data(y) + (μ/2)‖x‖²`: a penalty
    /// on the hyperparameters themselves, independent of the rows (a mini-batch's f carries it
    /// whole). μ = 0 is the plain problem.
    pub fn with_outer_penalty(mut self, mu: f64) -> Self {
        self.outer_penalty = mu;
        self
    }

    /// Output columns c of W (classes for softmax, else 1).
    pub fn classes(&self) -> usize {
        self.c
    }
    /// Feature columns d of X (the bias column included where there is one).
    pub fn features(&self) -> usize {
        self.d
    }

    fn take(&self, be: &B, len: usize) -> B::Vector {
        let mut pool = self.scratch.borrow_mut();
        match pool.iter().rposition(|(l, _)| *l == len) {
            Some(i) => pool.swap_remove(i).1,
            None => be.zeros(len, "glm.scratch"),
        }
    }

    fn give(&self, len: usize, v: B::Vector) {
        self.scratch.borrow_mut().push((len, v));
    }

    /// One [`GlmBackend::glm_batch`] on a split's rows: `out = scale·X_Bᵀ diag(s) E / b + reg`
    /// (`scale` and `reg` from `terms`).
    fn batch_op(
        &self,
        be: &B,
        on: SplitRows<'_, B::Indices>,
        x: &B::Vector,
        term: RowTerm<'_, B::Vector>,
        terms: TmatmulOut<'_, B>,
        out: &mut B::Vector,
    ) {
        let (SplitRows { split, rows }, TmatmulOut { scale, reg }) = (on, terms);
        let (xm, t, n) = self.data(split);
        let b = Self::batch_len(be, n, rows);
        let bc = b * self.c;
        let (mut z, mut u, mut e) = (self.take(be, bc), self.take(be, bc), self.take(be, bc));
        let data = GlmRows { loss: self.loss, x: xm, targets: t, rows, c: self.c, weights: self.weights(split, x) };
        be.glm_batch(data, term, GlmScales { row: 1.0 / b as f64, out: scale }, reg, out, [&mut z, &mut u, &mut e]);
        self.give(bc, z);
        self.give(bc, u);
        self.give(bc, e);
    }

    fn data(&self, split: Split) -> (&B::Matrix, &B::Vector, usize) {
        match split {
            Split::Train => (&self.x_train, &self.t_train, self.n),
            Split::Val => (&self.x_val, &self.t_val, self.m),
        }
    }

    fn batch_len(be: &B, n: usize, rows: Rows<'_, B::Indices>) -> usize {
        match rows {
            Rows::All => n,
            Rows::Batch(idx) => be.indices_len(idx),
        }
    }

    /// Per-sample weights σ(λ_row) on the training split of hyper-cleaning, else none.
    fn weights<'a>(&self, split: Split, x: &'a B::Vector) -> Option<&'a B::Vector> {
        match (split, self.hyper) {
            (Split::Train, HyperKind::SampleWeights { .. }) => Some(x),
            _ => None,
        }
    }

    /// `∇Reg` applied to `v` (the gradient's term at v = W, the Hessian's at v = direction).
    fn reg<'a>(&self, x: &'a B::Vector, v: &'a B::Vector) -> Reg<'a, B> {
        match self.hyper {
            HyperKind::FeatureRidge { scale } => Reg::ExpLambda { lambda: x, v, coef: scale },
            HyperKind::SampleWeights { rho } => Reg::Scaled { v, coef: 2.0 * rho },
        }
    }

    /// `out ← X_Bᵀ (weighted residual)/b + reg`: the inner gradient (reg on) and the outer
    /// gradient (reg off, validation split).
    fn gradient(&self, be: &B, on: SplitRows<'_, B::Indices>, x: &B::Vector, w: &B::Vector, reg: Reg<'_, B>, out: &mut B::Vector) {
        self.batch_op(be, on, x, RowTerm::Gradient { y: Some(w) }, TmatmulOut { scale: 1.0, reg }, out);
    }

    /// The in-place form of `v ← v − step·∇Reg(v)`, for the fused steps.
    fn decay<'a>(&self, x: &'a B::Vector, step: f64) -> Reg<'a, B> {
        match self.hyper {
            HyperKind::FeatureRidge { scale } => Reg::Decay { lambda: Some(x), exp_coef: -step * scale, const_coef: 1.0 },
            HyperKind::SampleWeights { rho } => Reg::Decay { lambda: None, exp_coef: 0.0, const_coef: 1.0 - 2.0 * step * rho },
        }
    }

    /// `out ← (1/b) Σ_k s_k ℓ(Z_k)` on a split.
    fn data_loss(&self, be: &B, split: Split, x: &B::Vector, w: &B::Vector, rows: Rows<'_, B::Indices>, out: &B::Scalar) {
        let (xm, t, n) = self.data(split);
        let b = Self::batch_len(be, n, rows);
        let (mut z, mut r, mut l) = (self.take(be, b * self.c), self.take(be, b * self.c), self.take(be, b));
        be.gather_matmul(xm, rows, w, self.c, &mut z);
        let on = LossRows { loss: self.loss, targets: t, rows, c: self.c, weights: self.weights(split, x) };
        be.loss_residual(on, &z, 1.0 / b as f64, &mut r, Some(&mut l));
        be.sum(&l, 1.0, out, false);
        self.give(b * self.c, z);
        self.give(b * self.c, r);
        self.give(b, l);
    }
}

/// The oracles, with a choice of which split plays the training set (`inner`, for g) and which
/// the validation set (`outer`, for f). [`Glm`] is the view (train, val); the reference code's
/// stocBiO also evaluates g on validation batches, through [`Problem::val_as_train`].
pub struct GlmView<'a, B: GlmBackend> {
    g: &'a Glm<B>,
    inner: Split,
    outer: Split,
}

impl<B: GlmBackend> Glm<B> {
    fn view(&self) -> GlmView<'_, B> {
        GlmView { g: self, inner: Split::Train, outer: Split::Val }
    }
}

/// Every oracle of [`Glm`] is its (train, val) view's.
impl<B: GlmBackend> Problem<B> for Glm<B> {
    fn dim_x(&self) -> usize {
        self.view().dim_x()
    }
    fn dim_y(&self) -> usize {
        self.view().dim_y()
    }
    fn n_train(&self) -> usize {
        self.n
    }
    fn n_val(&self) -> usize {
        self.m
    }
    fn inner_grad(&self, be: &B, x: &B::Vector, y: &B::Vector, rows: Rows<'_, B::Indices>, out: &mut B::Vector) {
        self.view().inner_grad(be, x, y, rows, out)
    }
    fn inner_hvp(&self, be: &B, x: &B::Vector, y: &B::Vector, v: &B::Vector, rows: Rows<'_, B::Indices>, out: &mut B::Vector) {
        self.view().inner_hvp(be, x, y, v, rows, out)
    }
    fn mixed_jvp(&self, be: &B, x: &B::Vector, y: &B::Vector, v: &B::Vector, rows: Rows<'_, B::Indices>, out: &mut B::Vector) {
        self.view().mixed_jvp(be, x, y, v, rows, out)
    }
    fn outer_grad_y(&self, be: &B, x: &B::Vector, y: &B::Vector, rows: Rows<'_, B::Indices>, out: &mut B::Vector) {
        self.view().outer_grad_y(be, x, y, rows, out)
    }
    fn add_outer_grad_x(&self, be: &B, x: &B::Vector, y: &B::Vector, rows: Rows<'_, B::Indices>, out: &mut B::Vector) {
        self.view().add_outer_grad_x(be, x, y, rows, out)
    }
    fn inner_step(&self, be: &B, x: &B::Vector, y: &mut B::Vector, alpha: f64, rows: Rows<'_, B::Indices>, scratch: &mut B::Vector) {
        self.view().inner_step(be, x, y, alpha, rows, scratch)
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
        self.view().neumann_step(be, x, y, r, step, scratch)
    }
    fn inner_loss(&self, be: &B, x: &B::Vector, y: &B::Vector, rows: Rows<'_, B::Indices>, out: &B::Scalar) {
        self.view().inner_loss(be, x, y, rows, out)
    }
    fn outer_loss(&self, be: &B, x: &B::Vector, y: &B::Vector, rows: Rows<'_, B::Indices>, out: &B::Scalar) {
        self.view().outer_loss(be, x, y, rows, out)
    }
    fn val_as_train<'s>(&'s self) -> Option<Box<dyn Problem<B> + 's>>
    where
        B: 's,
    {
        // Per-sample weights index training rows: there is no sound validation-set version.
        match self.hyper {
            HyperKind::FeatureRidge { .. } => Some(Box::new(GlmView { g: self, inner: Split::Val, outer: Split::Train })),
            HyperKind::SampleWeights { .. } => None,
        }
    }
}

impl<B: GlmBackend> Problem<B> for GlmView<'_, B> {
    fn dim_x(&self) -> usize {
        match self.g.hyper {
            HyperKind::FeatureRidge { .. } => self.g.d,
            HyperKind::SampleWeights { .. } => self.g.n,
        }
    }
    fn dim_y(&self) -> usize {
        self.g.d * self.g.c
    }
    fn n_train(&self) -> usize {
        self.g.data(self.inner).2
    }
    fn n_val(&self) -> usize {
        self.g.data(self.outer).2
    }

    fn inner_grad(&self, be: &B, x: &B::Vector, w: &B::Vector, rows: Rows<'_, B::Indices>, out: &mut B::Vector) {
        self.g.gradient(be, SplitRows { split: self.inner, rows }, x, w, self.g.reg(x, w), out);
    }

    fn inner_hvp(&self, be: &B, x: &B::Vector, w: &B::Vector, v: &B::Vector, rows: Rows<'_, B::Indices>, out: &mut B::Vector) {
        let terms = TmatmulOut { scale: 1.0, reg: self.g.reg(x, v) };
        self.g.batch_op(be, SplitRows { split: self.inner, rows }, x, RowTerm::Curvature { y: w, v: Some(v) }, terms, out);
    }

    fn inner_step(&self, be: &B, x: &B::Vector, w: &mut B::Vector, alpha: f64, rows: Rows<'_, B::Indices>, _scratch: &mut B::Vector) {
        // W ← (1 − α ∇Reg) W − α X_Bᵀ diag(s) R / b, one pass over W.
        let terms = TmatmulOut { scale: -alpha, reg: self.g.decay(x, alpha) };
        self.g.batch_op(be, SplitRows { split: self.inner, rows }, x, RowTerm::Gradient { y: None }, terms, w);
    }

    fn neumann_step(
        &self,
        be: &B,
        x: &B::Vector,
        w: &B::Vector,
        v: &mut B::Vector,
        step: NeumannStep<'_, B::Indices>,
        _scratch: &mut B::Vector,
    ) {
        let NeumannStep { eta, rows } = step;
        // V ← (1 − η ∇²Reg) V − η X_Bᵀ diag(s) M / b, one pass over V.
        let terms = TmatmulOut { scale: -eta, reg: self.g.decay(x, eta) };
        self.g.batch_op(be, SplitRows { split: self.inner, rows }, x, RowTerm::Curvature { y: w, v: None }, terms, v);
    }

    fn mixed_jvp(&self, be: &B, x: &B::Vector, w: &B::Vector, v: &B::Vector, rows: Rows<'_, B::Indices>, out: &mut B::Vector) {
        match self.g.hyper {
            // Only the penalty depends on λ: no data term.
            HyperKind::FeatureRidge { scale } => be.exp_rowdot(x, w, v, self.g.c, scale, out),
            HyperKind::SampleWeights { .. } => {
                let (xm, tm, n) = self.g.data(self.inner);
                let b = Glm::<B>::batch_len(be, n, rows);
                let bc = b * self.g.c;
                let (mut z, mut r, mut u) = (self.g.take(be, bc), self.g.take(be, bc), self.g.take(be, bc));
                be.gather_matmul(xm, rows, w, self.g.c, &mut z);
                be.loss_residual(LossRows { loss: self.g.loss, targets: tm, rows, c: self.g.c, weights: None }, &z, 1.0, &mut r, None);
                be.gather_matmul(xm, rows, v, self.g.c, &mut u);
                // Samples outside the batch have no term.
                be.fill(Coef::c(0.0), out);
                be.rowdot_sigmoid_scatter([&r, &u], rows, self.g.c, x, 1.0 / b as f64, out);
                self.g.give(bc, z);
                self.g.give(bc, r);
                self.g.give(bc, u);
            }
        }
    }

    fn outer_grad_y(&self, be: &B, x: &B::Vector, w: &B::Vector, rows: Rows<'_, B::Indices>, out: &mut B::Vector) {
        self.g.gradient(be, SplitRows { split: self.outer, rows }, x, w, Reg::None, out);
    }

    /// `out += μ x`, once per call whatever `rows` are: the penalty is not a sum over rows, so a
    /// mini-batch's ∇_x f is the full one (an unbiased estimate, exactly).
    fn add_outer_grad_x(&self, be: &B, x: &B::Vector, _w: &B::Vector, _rows: Rows<'_, B::Indices>, out: &mut B::Vector) {
        if self.g.outer_penalty != 0.0 {
            be.axpy(Coef::c(self.g.outer_penalty), x, out);
        }
    }

    fn inner_loss(&self, be: &B, x: &B::Vector, w: &B::Vector, rows: Rows<'_, B::Indices>, out: &B::Scalar) {
        self.g.data_loss(be, self.inner, x, w, rows, out);
        match self.g.hyper {
            HyperKind::FeatureRidge { scale } => {
                let mut per_feature = self.g.take(be, self.g.d);
                be.exp_rowdot(x, w, w, self.g.c, 0.5 * scale, &mut per_feature);
                be.sum(&per_feature, 1.0, out, true);
                self.g.give(self.g.d, per_feature);
            }
            HyperKind::SampleWeights { rho } => be.dot(w, w, rho, out, true),
        }
    }

    fn outer_loss(&self, be: &B, x: &B::Vector, w: &B::Vector, rows: Rows<'_, B::Indices>, out: &B::Scalar) {
        self.g.data_loss(be, self.outer, x, w, rows, out);
        if self.g.outer_penalty != 0.0 {
            be.dot(x, x, 0.5 * self.g.outer_penalty, out, true);
        }
    }
}
