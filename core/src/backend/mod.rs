//! The backend abstraction every solver is written against.
//!
//! A backend owns resident buffers (vectors, device scalars, data matrices, mini-batch index
//! sets) and *enqueues* operations on them. On the CPU an operation runs at once; on wgpu it is
//! recorded and submitted in batches. Only [`Backend::read_vector`] and
//! [`Backend::read_scalar`] wait for results, and they are `async` so that a browser never
//! blocks; native callers block on them with `pollster`.

use std::future::Future;

use crate::Result;

mod glm;
pub use glm::{glm_batch_unfused, GlmBackend, GlmRows, GlmScales, LossKind, LossRows, RowTerm};

/// A coefficient `c · num / den` where `num` and `den` are optional device scalars. Keeping
/// ratios on the device lets CG compute `α = rᵀr / pᵀHp` with no readback. A zero denominator
/// yields 0 on every backend (CG has converged: take no step).
pub struct Coef<'a, S> {
    /// The host constant c.
    pub c: f64,
    /// A device scalar multiplying c, if any.
    pub num: Option<&'a S>,
    /// A device scalar dividing c, if any (0 gives a zero coefficient).
    pub den: Option<&'a S>,
    /// `Some((s, τ))`: the coefficient is 0 unless `s > τ` (a solver that has reached its
    /// tolerance stops moving, decided on the device).
    pub gate: Option<(&'a S, f64)>,
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
        Coef { c, num: None, den: None, gate: None }
    }
    /// `c · num / den`, both device scalars.
    pub fn ratio(c: f64, num: &'a S, den: &'a S) -> Self {
        Coef { c, num: Some(num), den: Some(den), gate: None }
    }
    /// This coefficient while `s > threshold`, else 0.
    pub fn gated(self, s: &'a S, threshold: f64) -> Self {
        Coef { gate: Some((s, threshold)), ..self }
    }
    /// The coefficient evaluated from host values of the scalars (the CPU backend's rule, and
    /// the rule the WGSL `coef` function implements).
    pub fn eval(&self, get: impl Fn(&S) -> f64) -> f64 {
        if let Some((s, threshold)) = self.gate {
            if get(s) <= threshold {
                return 0.0;
            }
        }
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
    /// Every row (full-batch oracles).
    All,
    /// The rows whose indices the resident set holds, in its order.
    Batch(&'a I),
}

impl<I> Clone for Rows<'_, I> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<I> Copy for Rows<'_, I> {}

/// The regulariser term added by [`Backend::gather_tmatmul`] (its derivative, in fact).
pub enum Reg<'a, B: Backend + ?Sized> {
    /// No penalty: `out = scale·X_Bᵀ E`.
    None,
    /// `+ coef·e^{λ_j}·v_jk` (per-feature ridge).
    ExpLambda {
        /// λ, one per row j of `out` (feature).
        lambda: &'a B::Vector,
        /// The `d × c` matrix the penalty's derivative is taken at.
        v: &'a B::Vector,
        /// The factor in front.
        coef: f64,
    },
    /// `+ coef·v_jk` (a fixed Frobenius penalty).
    Scaled {
        /// The `d × c` matrix the penalty's derivative is taken at.
        v: &'a B::Vector,
        /// The factor in front.
        coef: f64,
    },
    /// In place: `out ← (const_coef + exp_coef·e^{λ_j})·out + scale·X_Bᵀ E`. One pass over
    /// `out` for a whole descent or Neumann step (the fused form of product + penalty + axpy).
    Decay {
        /// λ per feature for the `e^{λ_j}` part (`None`: no such part).
        lambda: Option<&'a B::Vector>,
        /// The factor of `e^{λ_j}`.
        exp_coef: f64,
        /// The constant factor (1 − α·ρ for a plain decay, 1 for a Neumann step's identity).
        const_coef: f64,
    },
}

/// What [`Backend::gather_tmatmul`] writes to `out`: the product `X_Bᵀ E` times `scale`, plus
/// the regulariser term `reg`.
pub struct TmatmulOut<'a, B: Backend + ?Sized> {
    /// The factor of the product `X_Bᵀ E`.
    pub scale: f64,
    /// The penalty term added (or, [`Reg::Decay`], the in-place decay of `out`).
    pub reg: Reg<'a, B>,
}

/// The largest fraction of non-zero entries at which [`HostMatrix::by_density`] stores a matrix
/// as CSR: a sparse product costs about twice a dense one per stored entry (an index per value,
/// W's rows read out of order), so CSR pays below about half; a third leaves a margin.
pub const SPARSE_DENSITY: f64 = 1.0 / 3.0;

/// A data matrix on the host, before upload: dense row-major or sparse CSR.
#[derive(Clone, Debug)]
pub enum HostMatrix {
    /// Row-major entries.
    Dense {
        /// Rows (samples).
        rows: usize,
        /// Columns (features).
        cols: usize,
        /// `rows × cols` entries, row by row.
        data: Vec<f64>,
    },
    /// Compressed sparse rows.
    Csr {
        /// Rows (samples).
        rows: usize,
        /// Columns (features).
        cols: usize,
        /// Row i's entries are `indptr[i]..indptr[i + 1]` (`rows + 1` offsets).
        indptr: Vec<u32>,
        /// Each entry's column.
        indices: Vec<u32>,
        /// Each entry's value.
        values: Vec<f64>,
    },
}

impl HostMatrix {
    /// `(rows, columns)`.
    pub fn shape(&self) -> (usize, usize) {
        match self {
            HostMatrix::Dense { rows, cols, .. } | HostMatrix::Csr { rows, cols, .. } => (*rows, *cols),
        }
    }
    /// Stored entries (all of them for a dense matrix).
    pub fn nnz(&self) -> usize {
        match self {
            HostMatrix::Dense { data, .. } => data.len(),
            HostMatrix::Csr { values, .. } => values.len(),
        }
    }
    /// The rows `rows`, in that order.
    pub fn select_rows(&self, rows: &[usize]) -> HostMatrix {
        match self {
            HostMatrix::Dense { cols, data, .. } => {
                let mut out = Vec::with_capacity(rows.len() * cols);
                for &i in rows {
                    out.extend_from_slice(&data[i * cols..(i + 1) * cols]);
                }
                HostMatrix::Dense { rows: rows.len(), cols: *cols, data: out }
            }
            HostMatrix::Csr { cols, indptr, indices, values, .. } => {
                let (mut ip, mut ix, mut vs) = (Vec::with_capacity(rows.len() + 1), Vec::new(), Vec::new());
                ip.push(0u32);
                for &i in rows {
                    let (a, b) = (indptr[i] as usize, indptr[i + 1] as usize);
                    ix.extend_from_slice(&indices[a..b]);
                    vs.extend_from_slice(&values[a..b]);
                    ip.push(ix.len() as u32);
                }
                HostMatrix::Csr { rows: rows.len(), cols: *cols, indptr: ip, indices: ix, values: vs }
            }
        }
    }
    /// Row `i` as (column, value) pairs.
    pub fn row(&self, i: usize) -> Vec<(usize, f64)> {
        match self {
            HostMatrix::Dense { cols, data, .. } => (0..*cols).map(|j| (j, data[i * cols + j])).collect(),
            HostMatrix::Csr { indptr, indices, values, .. } => {
                (indptr[i] as usize..indptr[i + 1] as usize).map(|p| (indices[p] as usize, values[p])).collect()
            }
        }
    }
    /// The same matrix, stored sparse (CSR, explicit zeros dropped) when at most
    /// [`SPARSE_DENSITY`] of its entries are non-zero and dense otherwise.
    pub fn by_density(self) -> HostMatrix {
        let (rows, cols) = self.shape();
        let nonzeros = match &self {
            HostMatrix::Dense { data, .. } => data.iter().filter(|v| **v != 0.0).count(),
            HostMatrix::Csr { values, .. } => values.iter().filter(|v| **v != 0.0).count(),
        };
        let sparse = (nonzeros as f64) <= SPARSE_DENSITY * (rows * cols) as f64;
        match self {
            HostMatrix::Dense { .. } if sparse => {
                let (mut indptr, mut indices, mut values) =
                    (Vec::with_capacity(rows + 1), Vec::with_capacity(nonzeros), Vec::with_capacity(nonzeros));
                indptr.push(0u32);
                for i in 0..rows {
                    for (j, v) in self.row(i).into_iter().filter(|(_, v)| *v != 0.0) {
                        indices.push(j as u32);
                        values.push(v);
                    }
                    indptr.push(indices.len() as u32);
                }
                HostMatrix::Csr { rows, cols, indptr, indices, values }
            }
            HostMatrix::Csr { .. } if !sparse => {
                let mut data = vec![0.0; rows * cols];
                for i in 0..rows {
                    for (j, v) in self.row(i) {
                        data[i * cols + j] += v;
                    }
                }
                HostMatrix::Dense { rows, cols, data }
            }
            m => m,
        }
    }
    /// The transpose's CSR arrays (= this matrix's CSC): `(colptr, rowidx, values)`.
    pub fn csc(&self) -> (Vec<u32>, Vec<u32>, Vec<f64>) {
        let (rows, cols) = self.shape();
        let mut count = vec![0u32; cols + 1];
        for i in 0..rows {
            for (j, _) in self.row(i) {
                count[j + 1] += 1;
            }
        }
        for j in 0..cols {
            count[j + 1] += count[j];
        }
        let mut next = count.clone();
        let nnz = count[cols] as usize;
        let (mut ri, mut vals) = (vec![0u32; nnz], vec![0.0; nnz]);
        for i in 0..rows {
            for (j, v) in self.row(i) {
                let p = next[j] as usize;
                ri[p] = i as u32;
                vals[p] = v;
                next[j] += 1;
            }
        }
        (count, ri, vals)
    }
}

/// Resident buffers and the enqueue-only operations on them.
pub trait Backend {
    /// A resident vector of reals (f64 on the CPU reference, f32 on the GPU).
    type Vector;
    /// A resident scalar, written by reductions and read by [`Coef`]s.
    type Scalar;
    /// A resident data matrix (dense row-major or sparse CSR).
    type Matrix;
    /// A resident set of row indices (a mini-batch).
    type Indices;

    /// A short human-readable description (backend and adapter).
    fn describe(&self) -> String;

    // ---- allocation and transfer (host → backend) ----
    /// A vector of `len` zeros (`label` names the GPU buffer in debuggers and errors).
    fn zeros(&self, len: usize, label: &str) -> Self::Vector;
    /// A vector holding `data` (rounded to the backend's precision).
    fn vector_from(&self, data: &[f64], label: &str) -> Self::Vector;
    /// A device scalar, initially 0.
    fn scalar(&self, label: &str) -> Self::Scalar;
    /// Uploads a data matrix once, in the layouts the backend's products read.
    fn matrix_from(&self, m: &HostMatrix, label: &str) -> Self::Matrix;
    /// Uploads a set of row indices (a mini-batch).
    fn indices(&self, idx: &[u32]) -> Self::Indices;
    /// A vector's length.
    fn vector_len(&self, v: &Self::Vector) -> usize;
    /// How many indices a set holds.
    fn indices_len(&self, idx: &Self::Indices) -> usize;
    /// A matrix's `(rows, columns)`.
    fn matrix_shape(&self, m: &Self::Matrix) -> (usize, usize);

    // ---- reading back (the only operations that wait) ----
    /// Submit everything enqueued so far (a no-op on the CPU).
    fn flush(&self);
    /// The vector's values, once everything enqueued before has run (a device error
    /// recorded since the last read is returned here).
    fn read_vector(&self, v: &Self::Vector) -> impl Future<Output = Result<Vec<f64>>>;
    /// The scalar's value, once everything enqueued before has run.
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

    // ---- data products (X dense row-major or sparse CSR; mini-batches as row indices) ----
    /// `Z[k, :] = X[row_k, :] · W` for the batch's rows, with `W` a `d × c` row-major matrix
    /// (feature-major: row j holds the c class weights of feature j) and `Z` a `b × c` one.
    fn gather_matmul(&self, x: &Self::Matrix, rows: Rows<'_, Self::Indices>, w: &Self::Vector, c: usize, z: &mut Self::Vector);
    /// `out = scale · X_Bᵀ E + reg` (`scale` and `reg` from `terms`), with `E` a `b × c` matrix
    /// of the batch's rows and `out` `d × c` (with [`Reg::Decay`], `out` is also read: an
    /// in-place update).
    fn gather_tmatmul(
        &self,
        x: &Self::Matrix,
        rows: Rows<'_, Self::Indices>,
        e: &Self::Vector,
        c: usize,
        terms: TmatmulOut<'_, Self>,
        out: &mut Self::Vector,
    );

    /// Adam's update ([`AdamStep`](crate::optim::AdamStep), bias corrections folded into its
    /// `lr` and `eps`): `m ← β₁m + (1−β₁)g;  v ← β₂v + (1−β₂)g²;  x ← x − lr·m/(√v + eps)`.
    fn adam(&self, g: &Self::Vector, m: &mut Self::Vector, v: &mut Self::Vector, x: &mut Self::Vector, step: crate::optim::AdamStep);
    /// `out ← scale·Σ_i x_i` (or `+=` when `accumulate`).
    fn sum(&self, x: &Self::Vector, scale: f64, out: &Self::Scalar, accumulate: bool);

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
