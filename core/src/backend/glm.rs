//! The operations of generalised linear models, as an extension of the linear-algebra
//! [`Backend`]: row-wise losses on a batch of predictions, the mixed-product reductions of the
//! two hyperparameter kinds (per-feature ridge, per-sample weights), and one fused GLM oracle
//! ([`GlmBackend::glm_batch`]). A problem that needs them says so with a `B: GlmBackend` bound;
//! one that does not (a user's own problem) runs on any [`Backend`].

use super::{Backend, Reg, Rows, TmatmulOut};

/// The loss of a generalised linear model, row by row (`z` a row of predictions, `t` its target).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum LossKind {
    /// `ℓ = ½(z − t)²` (c = 1).
    Squared,
    /// Binary logistic, `t ∈ {0, 1}`: `ℓ = log(1 + e^z) − t z` (c = 1; labels ±1 map to 1/0).
    Logistic,
    /// Softmax cross-entropy over c classes, `t` the class index: `ℓ = lse(z) − z_t`.
    Softmax,
}

impl LossKind {
    /// The id the WGSL kernels switch on.
    pub fn id(self) -> u32 {
        match self {
            LossKind::Squared => 0,
            LossKind::Logistic => 1,
            LossKind::Softmax => 2,
        }
    }
}

/// What [`GlmBackend::glm_batch`] evaluates per batch row from `Z = X_B·y` (and `U = X_B·v`).
pub enum RowTerm<'a, V> {
    /// `E_k = ℓ'(Z_k; t_{row_k})`: a gradient at `y` (`None`: at `out` itself, read before it
    /// is written — the in-place descent step).
    Gradient {
        /// Where the gradient is taken (`None`: at `out`).
        y: Option<&'a V>,
    },
    /// `E_k = ℓ''(Z_k)·U_k`: the loss Hessian at `y` applied to `v` (`None`: to `out` itself —
    /// the in-place Neumann step).
    Curvature {
        /// Where the Hessian is taken.
        y: &'a V,
        /// The direction it is applied to (`None`: `out`).
        v: Option<&'a V>,
    },
}

impl<V> Clone for RowTerm<'_, V> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<V> Copy for RowTerm<'_, V> {}

/// The data side of a GLM oracle on [`GlmBackend::glm_batch`]: which rows of which matrix, their
/// targets, the loss, and the per-sample weights `σ(λ_row)` (hyper-cleaning) if any.
pub struct GlmRows<'a, B: GlmBackend + ?Sized> {
    /// The row loss ℓ.
    pub loss: LossKind,
    /// The data matrix X (all the split's rows; `rows` picks the batch).
    pub x: &'a B::Matrix,
    /// One target per row of X (a real value, 0/1, or a class index).
    pub targets: &'a B::Vector,
    /// The batch: all rows or row indices.
    pub rows: Rows<'a, B::Indices>,
    /// Output columns (classes) of `W`.
    pub c: usize,
    /// `Some(λ)`: row k's term weighted by `σ(λ[row_k])` (one weight per training sample).
    pub weights: Option<&'a B::Vector>,
}

impl<B: GlmBackend + ?Sized> Clone for GlmRows<'_, B> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<B: GlmBackend + ?Sized> Copy for GlmRows<'_, B> {}

impl<'a, B: GlmBackend + ?Sized> GlmRows<'a, B> {
    /// What a row-wise loss reads of these rows (everything but the matrix).
    pub fn losses(&self) -> LossRows<'a, B> {
        LossRows { loss: self.loss, targets: self.targets, rows: self.rows, c: self.c, weights: self.weights }
    }
}

/// The rows a row-wise loss operation ([`GlmBackend::loss_residual`],
/// [`GlmBackend::loss_curvature`]) reads: a batch of predictions `Z` (`b × c`) belongs to these
/// rows of a split, whose targets and per-sample weights it looks up.
pub struct LossRows<'a, B: Backend + ?Sized> {
    /// The row loss ℓ.
    pub loss: LossKind,
    /// One target per row of the split (a real value, 0/1, or a class index).
    pub targets: &'a B::Vector,
    /// Which rows of the split the batch holds, in order.
    pub rows: Rows<'a, B::Indices>,
    /// Columns of Z (classes).
    pub c: usize,
    /// `Some(λ)`: row k weighted by `σ(λ[row_k])`.
    pub weights: Option<&'a B::Vector>,
}

impl<B: Backend + ?Sized> Clone for LossRows<'_, B> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<B: Backend + ?Sized> Copy for LossRows<'_, B> {}

/// The two scales of [`GlmBackend::glm_batch`]: `out = out_scale·X_Bᵀ diag(row·w) E + reg`
/// (`row` is usually 1/b, the batch mean; `out` the penalty-free step size, −α or −η).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GlmScales {
    /// The factor of each row term (1/b for a batch mean).
    pub row: f64,
    /// The factor of the product `X_Bᵀ E`.
    pub out: f64,
}

/// [`GlmBackend::glm_batch`] as the composition of its primitives (the default every backend
/// starts from, and the CPU's path where it does not fuse): `Z = X_B y` (and `U = X_B v`), the
/// row terms scaled by `scales.row·w_k`, then `out = scales.out·X_Bᵀ E + reg`, in `scratch`'s
/// three `b × c` vectors.
pub fn glm_batch_unfused<B: GlmBackend + ?Sized>(
    be: &B,
    data: GlmRows<'_, B>,
    term: RowTerm<'_, B::Vector>,
    scales: GlmScales,
    reg: Reg<'_, B>,
    out: &mut B::Vector,
    scratch: [&mut B::Vector; 3],
) {
    let GlmRows { x, rows, c, .. } = data;
    let [z, u, e] = scratch;
    match term {
        RowTerm::Gradient { y } => {
            be.gather_matmul(x, rows, y.unwrap_or(&*out), c, z);
            be.loss_residual(data.losses(), z, scales.row, e, None);
        }
        RowTerm::Curvature { y, v } => {
            be.gather_matmul(x, rows, y, c, z);
            be.gather_matmul(x, rows, v.unwrap_or(&*out), c, u);
            be.loss_curvature(data.losses(), z, u, scales.row, e);
        }
    }
    be.gather_tmatmul(x, rows, e, c, TmatmulOut { scale: scales.out, reg }, out);
}

/// The GLM operations every shipped backend implements on top of [`Backend`].
pub trait GlmBackend: Backend {
    /// `R_k = scale·w_k·ℓ'(Z_k; t_{row_k})` and optionally `loss_k = scale·w_k·ℓ(Z_k; t_{row_k})`,
    /// for the batch `Z` of `on`'s rows, with `w_k = σ(λ[row_k])` when `on.weights = Some(λ)`,
    /// else 1.
    fn loss_residual(&self, on: LossRows<'_, Self>, z: &Self::Vector, scale: f64, r: &mut Self::Vector, loss: Option<&mut Self::Vector>);
    /// `M_k = scale·w_k·ℓ''(Z_k)·U_k` (the loss Hessian applied to a batch direction U).
    fn loss_curvature(&self, on: LossRows<'_, Self>, z: &Self::Vector, u: &Self::Vector, scale: f64, m: &mut Self::Vector);
    /// `out[row_k] = scale·σ'(λ[row_k])·⟨A_k, B_k⟩` for the batch's rows (other entries
    /// untouched), with `[A, B] = ab` two `b × c` matrices.
    fn rowdot_sigmoid_scatter(
        &self,
        ab: [&Self::Vector; 2],
        rows: Rows<'_, Self::Indices>,
        c: usize,
        lambda: &Self::Vector,
        scale: f64,
        out: &mut Self::Vector,
    );
    /// `out_j = scale·e^{λ_j}·Σ_k A_jk B_jk` for `d × c` matrices A, B.
    fn exp_rowdot(&self, lambda: &Self::Vector, a: &Self::Vector, b: &Self::Vector, c: usize, scale: f64, out: &mut Self::Vector);
    /// One GLM oracle on a batch, from the data to the `d × c` result:
    /// `out = scales.out·X_Bᵀ diag(scales.row·w) E + reg` with `E` the [`RowTerm`] of `Z = X_B y`
    /// (and `U = X_B v`) — a gradient, an HVP, and with [`Reg::Decay`] a whole descent or
    /// Neumann step in place. `scratch` holds three vectors of at least `b × c` entries. The
    /// default composes the primitives ([`glm_batch_unfused`]); the CPU fuses them for small
    /// `d × c` (each batch row read once, no intermediate passes).
    fn glm_batch(
        &self,
        data: GlmRows<'_, Self>,
        term: RowTerm<'_, Self::Vector>,
        scales: GlmScales,
        reg: Reg<'_, Self>,
        out: &mut Self::Vector,
        scratch: [&mut Self::Vector; 3],
    ) {
        glm_batch_unfused(self, data, term, scales, reg, out, scratch)
    }
}
