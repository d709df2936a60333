//! The backend abstraction every solver is written against.
//!
//! A backend owns resident buffers (vectors, device scalars, data matrices, mini-batch index
//! sets) and *enqueues* operations on them. On the CPU an operation runs at once; on wgpu it is
//! recorded and submitted in batches. Only [`Backend::read_vector`] and
//! [`Backend::read_scalar`] wait for results, and they are `async` so that a browser never
//! blocks; native callers block on them with `pollster`.

use std::future::Future;

use crate::Result;

/// A coefficient `c · num / den` where `num` and `den` are optional device scalars. Keeping
/// ratios on the device lets CG compute `α = rᵀr / pᵀHp` with no readback. A zero denominator
/// yields 0 on every backend (CG has converged: take no step).
pub struct Coef<'a, S> {
    pub c: f64,
    pub num: Option<&'a S>,
    pub den: Option<&'a S>,
}

impl<S> Clone for Coef<'_, S> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<S> Copy for Coef<'_, S> {}

impl<'a, S> Coef<'a, S> {
    /// A host constant.
    pub fn c(c: f64) -> Self {
        Coef { c, num: None, den: None }
    }
    /// `c · num / den`, both device scalars.
    pub fn ratio(c: f64, num: &'a S, den: &'a S) -> Self {
        Coef { c, num: Some(num), den: Some(den) }
    }
    /// The coefficient evaluated from host values of the scalars (the CPU backend's rule, and
    /// the rule the WGSL `coef` function implements).
    pub fn eval(&self, get: impl Fn(&S) -> f64) -> f64 {
        let mut v = self.c;
        if let Some(n) = self.num {
            v *= get(n);
        }
        if let Some(d) = self.den {
            let d = get(d);
            if d == 0.0 {
                return 0.0;
            }
            v /= d;
        }
        v
    }
}

/// Which rows of a data set an oracle reads: all of them, or a mini-batch of row indices that
/// the backend already holds.
pub enum Rows<'a, I> {
    All,
    Batch(&'a I),
}

impl<I> Clone for Rows<'_, I> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<I> Copy for Rows<'_, I> {}

/// Resident buffers and the enqueue-only operations on them.
pub trait Backend {
    /// A resident vector of reals (f64 on the CPU reference, f32 on the GPU).
    type Vector;
    /// A resident scalar, written by reductions and read by [`Coef`]s.
    type Scalar;
    /// A resident dense row-major data matrix.
    type Matrix;
    /// A resident set of row indices (a mini-batch).
    type Indices;

    /// A short human-readable description (backend and adapter).
    fn describe(&self) -> String;

    // ---- allocation and transfer (host → backend) ----
    fn zeros(&self, len: usize, label: &str) -> Self::Vector;
    fn vector_from(&self, data: &[f64], label: &str) -> Self::Vector;
    fn scalar(&self, label: &str) -> Self::Scalar;
    fn matrix_from(&self, rows: usize, cols: usize, data: &[f64], label: &str) -> Self::Matrix;
    fn indices(&self, idx: &[u32]) -> Self::Indices;
    fn vector_len(&self, v: &Self::Vector) -> usize;
    fn indices_len(&self, idx: &Self::Indices) -> usize;
    fn matrix_shape(&self, m: &Self::Matrix) -> (usize, usize);

    // ---- reading back (the only operations that wait) ----
    /// Submit everything enqueued so far (a no-op on the CPU).
    fn flush(&self);
    fn read_vector(&self, v: &Self::Vector) -> impl Future<Output = Result<Vec<f64>>>;
    fn read_scalar(&self, s: &Self::Scalar) -> impl Future<Output = Result<f64>>;

    // ---- BLAS-1 ----
    /// `y ← a·x + b·y` (with `b = 0` the old `y` is not read).
    fn axpby(&self, a: Coef<'_, Self::Scalar>, x: &Self::Vector, b: Coef<'_, Self::Scalar>, y: &mut Self::Vector);
    /// `y ← b·y`.
    fn scale(&self, b: Coef<'_, Self::Scalar>, y: &mut Self::Vector);
    /// `y ← a`.
    fn fill(&self, a: Coef<'_, Self::Scalar>, y: &mut Self::Vector);
    /// `out ← scale·xᵀy` (or `out += scale·xᵀy` when `accumulate`).
    fn dot(&self, x: &Self::Vector, y: &Self::Vector, scale: f64, out: &Self::Scalar, accumulate: bool);

    // ---- dense data (row-major X, mini-batches as row indices) ----
    /// `r_k = scale·(X[row_k,:]·v − t[row_k])` for the batch's rows (`t` optional).
    fn rows_matvec(
        &self,
        x: &Self::Matrix,
        rows: Rows<'_, Self::Indices>,
        v: &Self::Vector,
        t: Option<&Self::Vector>,
        scale: f64,
        r: &mut Self::Vector,
    );
    /// `out_j = scale·Σ_k X[row_k, j] r_k (+ e^{λ_j} v_j when `ridge = Some((λ, v))`)`.
    fn rows_tmatvec(
        &self,
        x: &Self::Matrix,
        rows: Rows<'_, Self::Indices>,
        r: &Self::Vector,
        scale: f64,
        ridge: Option<(&Self::Vector, &Self::Vector)>,
        out: &mut Self::Vector,
    );
    /// `out_j = scale·e^{λ_j}·a_j·b_j`.
    fn exp_hadamard(&self, lambda: &Self::Vector, a: &Self::Vector, b: &Self::Vector, scale: f64, out: &mut Self::Vector);

    // ---- conveniences built on the primitives ----
    /// `y ← y + a·x`.
    fn axpy(&self, a: Coef<'_, Self::Scalar>, x: &Self::Vector, y: &mut Self::Vector) {
        self.axpby(a, x, Coef::c(1.0), y)
    }
    /// `y ← x`.
    fn copy(&self, x: &Self::Vector, y: &mut Self::Vector) {
        self.axpby(Coef::c(1.0), x, Coef::c(0.0), y)
    }
}
