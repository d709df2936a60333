//! The CPU backend: the reference every GPU kernel is tested against, and the path for machines
//! without a GPU. Generic over the real type: `CpuBackend<f64>` is the reference used by the
//! finite-difference and closed-form tests, `CpuBackend<f32>` matches the GPU's precision.
//! Operations run at once; `flush` has nothing to do and reads are ready futures.

use std::cell::Cell;
use std::future::{ready, Future};
use std::marker::PhantomData;

use num_traits::Float;

use crate::backend::{Backend, Coef, HostMatrix, LossKind, Reg, Rows};
use crate::Result;

/// Real types the CPU backend computes in.
pub trait Real: Float + std::fmt::Debug + Default + Send + Sync + 'static {}
impl Real for f32 {}
impl Real for f64 {}

/// A resident data matrix: dense row-major or sparse CSR.
pub enum CpuMatrix<T> {
    Dense { rows: usize, cols: usize, data: Vec<T> },
    Csr { rows: usize, cols: usize, indptr: Vec<u32>, indices: Vec<u32>, values: Vec<T> },
}

impl<T: Real> CpuMatrix<T> {
    pub fn rows(&self) -> usize {
        match self {
            CpuMatrix::Dense { rows, .. } | CpuMatrix::Csr { rows, .. } => *rows,
        }
    }
    pub fn cols(&self) -> usize {
        match self {
            CpuMatrix::Dense { cols, .. } | CpuMatrix::Csr { cols, .. } => *cols,
        }
    }
    /// Average stored entries per row (the work of one row's product).
    fn row_nnz_estimate(&self) -> usize {
        match self {
            CpuMatrix::Dense { cols, .. } => *cols,
            CpuMatrix::Csr { rows, values, .. } => values.len() / (*rows).max(1) + 1,
        }
    }

    /// `z = X[row, :] · W` for a `d × c` feature-major W.
    #[inline]
    fn row_times(&self, row: usize, w: &[T], z: &mut [T]) {
        let c = z.len();
        match self {
            CpuMatrix::Dense { cols, data, .. } => {
                let xr = &data[row * cols..(row + 1) * cols];
                if c == 1 {
                    z[0] = dot(xr, w);
                } else {
                    z.fill(T::zero());
                    for (&xv, wj) in xr.iter().zip(w.chunks_exact(c)) {
                        axpy_slice(xv, wj, z);
                    }
                }
            }
            CpuMatrix::Csr { indptr, indices, values, .. } => {
                let span = indptr[row] as usize..indptr[row + 1] as usize;
                z.fill(T::zero());
                for (&j, &xv) in indices[span.clone()].iter().zip(&values[span]) {
                    let j = j as usize;
                    axpy_slice(xv, &w[j * c..(j + 1) * c], z);
                }
            }
        }
    }

    /// `out[j, :] += scale · X[row, j] · e` for the features j in `range` (`out` holds exactly
    /// those rows).
    #[inline]
    fn scatter_row(&self, row: usize, range: std::ops::Range<usize>, scale: T, e: &[T], out: &mut [T]) {
        let c = e.len();
        match self {
            CpuMatrix::Dense { cols, data, .. } => {
                let xr = &data[row * cols + range.start..row * cols + range.end];
                if c == 1 {
                    axpy_slice(scale * e[0], xr, out);
                } else {
                    for (&xv, oj) in xr.iter().zip(out.chunks_exact_mut(c)) {
                        axpy_slice(scale * xv, e, oj);
                    }
                }
            }
            CpuMatrix::Csr { indptr, indices, values, .. } => {
                let span = indptr[row] as usize..indptr[row + 1] as usize;
                for (&j, &xv) in indices[span.clone()].iter().zip(&values[span]) {
                    let j = j as usize;
                    if range.contains(&j) {
                        let o = (j - range.start) * c;
                        axpy_slice(scale * xv, e, &mut out[o..o + c]);
                    }
                }
            }
        }
    }

    fn batch_len(&self, rows: Rows<'_, Vec<u32>>) -> usize {
        match rows {
            Rows::All => self.rows(),
            Rows::Batch(idx) => idx.len(),
        }
    }
}

/// The CPU backend over the real type `T`.
#[derive(Default)]
pub struct CpuBackend<T: Real> {
    _t: PhantomData<T>,
}

impl<T: Real> CpuBackend<T> {
    pub fn new() -> Self {
        CpuBackend { _t: PhantomData }
    }
}

pub(crate) fn to_t<T: Real>(x: f64) -> T {
    T::from(x).expect("f64 converts to every Real")
}

fn coef<T: Real>(a: Coef<'_, Cell<T>>) -> T {
    to_t(a.eval(|s| s.get().to_f64().unwrap_or(f64::NAN)))
}

fn row_of<'a>(rows: Rows<'a, Vec<u32>>, k: usize) -> usize {
    match rows {
        Rows::All => k,
        Rows::Batch(idx) => idx[k] as usize,
    }
}

impl<T: Real> Backend for CpuBackend<T> {
    type Vector = Vec<T>;
    type Scalar = Cell<T>;
    type Matrix = CpuMatrix<T>;
    type Indices = Vec<u32>;

    fn describe(&self) -> String {
        format!("cpu ({})", std::any::type_name::<T>())
    }

    fn zeros(&self, len: usize, _label: &str) -> Vec<T> {
        vec![T::zero(); len]
    }
    fn vector_from(&self, data: &[f64], _label: &str) -> Vec<T> {
        data.iter().map(|&v| to_t(v)).collect()
    }
    fn scalar(&self, _label: &str) -> Cell<T> {
        Cell::new(T::zero())
    }
    fn matrix_from(&self, m: &HostMatrix, _label: &str) -> CpuMatrix<T> {
        match m {
            HostMatrix::Dense { rows, cols, data } => {
                assert_eq!(data.len(), rows * cols, "matrix data has the wrong length");
                CpuMatrix::Dense { rows: *rows, cols: *cols, data: data.iter().map(|&v| to_t(v)).collect() }
            }
            HostMatrix::Csr { rows, cols, indptr, indices, values } => CpuMatrix::Csr {
                rows: *rows,
                cols: *cols,
                indptr: indptr.clone(),
                indices: indices.clone(),
                values: values.iter().map(|&v| to_t(v)).collect(),
            },
        }
    }
    fn indices(&self, idx: &[u32]) -> Vec<u32> {
        idx.to_vec()
    }
    fn vector_len(&self, v: &Vec<T>) -> usize {
        v.len()
    }
    fn indices_len(&self, idx: &Vec<u32>) -> usize {
        idx.len()
    }
    fn matrix_shape(&self, m: &CpuMatrix<T>) -> (usize, usize) {
        (m.rows(), m.cols())
    }

    fn flush(&self) {}
    fn read_vector(&self, v: &Vec<T>) -> impl Future<Output = Result<Vec<f64>>> {
        ready(Ok(v.iter().map(|x| x.to_f64().unwrap_or(f64::NAN)).collect()))
    }
    fn read_scalar(&self, s: &Cell<T>) -> impl Future<Output = Result<f64>> {
        ready(Ok(s.get().to_f64().unwrap_or(f64::NAN)))
    }

    fn axpby(&self, a: Coef<'_, Cell<T>>, x: &Vec<T>, b: Coef<'_, Cell<T>>, y: &mut Vec<T>) {
        assert_eq!(x.len(), y.len(), "axpby: length mismatch");
        let (a, b) = (coef(a), coef(b));
        let n = y.len();
        chunked(y, n.div_ceil(pieces()), n, |start, yc| {
            let xc = &x[start..start + yc.len()];
            if b == T::zero() {
                yc.iter_mut().zip(xc).for_each(|(yi, &xi)| *yi = a * xi);
            } else {
                yc.iter_mut().zip(xc).for_each(|(yi, &xi)| *yi = a * xi + b * *yi);
            }
        });
    }
    fn scale(&self, b: Coef<'_, Cell<T>>, y: &mut Vec<T>) {
        let b = coef(b);
        y.iter_mut().for_each(|yi| *yi = b * *yi);
    }
    fn fill(&self, a: Coef<'_, Cell<T>>, y: &mut Vec<T>) {
        let a = coef(a);
        y.iter_mut().for_each(|yi| *yi = a);
    }
    fn dot(&self, x: &Vec<T>, y: &Vec<T>, scale: f64, out: &Cell<T>, accumulate: bool) {
        assert_eq!(x.len(), y.len(), "dot: length mismatch");
        let s = x.iter().zip(y).fold(T::zero(), |acc, (&a, &b)| acc + a * b) * to_t(scale);
        out.set(if accumulate { out.get() + s } else { s });
    }

    fn gather_matmul(&self, x: &CpuMatrix<T>, rows: Rows<'_, Vec<u32>>, w: &Vec<T>, c: usize, z: &mut Vec<T>) {
        let b = x.batch_len(rows);
        assert!(z.len() >= b * c && w.len() == x.cols() * c, "gather_matmul: shape mismatch");
        // Rows of Z are independent: split them across threads.
        let work = b * c * x.row_nnz_estimate();
        if let (CpuMatrix::Dense { cols, data, .. }, true) = (x, c > 1) {
            // Dense with several classes: c dot products of length d per row, on Wᵀ (c × d).
            let wt = transpose(w, *cols, c);
            chunked(&mut z[..b * c], b.div_ceil(pieces()) * c, work, |start, zc| {
                for (i, zk) in zc.chunks_exact_mut(c).enumerate() {
                    let row = row_of(rows, start / c + i);
                    let xr = &data[row * cols..(row + 1) * cols];
                    for (zv, wk) in zk.iter_mut().zip(wt.chunks_exact(*cols)) {
                        *zv = dot(xr, wk);
                    }
                }
            });
            return;
        }
        chunked(&mut z[..b * c], b.div_ceil(pieces()) * c, work, |start, zc| {
            for (i, zk) in zc.chunks_exact_mut(c).enumerate() {
                x.row_times(row_of(rows, start / c + i), w, zk);
            }
        });
    }

    fn gather_tmatmul(
        &self,
        x: &CpuMatrix<T>,
        rows: Rows<'_, Vec<u32>>,
        e: &Vec<T>,
        c: usize,
        scale: f64,
        reg: Reg<'_, Self>,
        out: &mut Vec<T>,
    ) {
        let b = x.batch_len(rows);
        let d = x.cols();
        assert!(e.len() >= b * c && out.len() == d * c, "gather_tmatmul: shape mismatch");
        let scale = to_t::<T>(scale);
        // Each thread owns a range of features (rows of out): it applies the penalty there,
        // then adds every batch row's entries that fall in its range (no write conflicts).
        let work = d * c + b * c * x.row_nnz_estimate();
        // Few features (ijcnn1, MNIST): split the batch rows instead, each thread adding into
        // a private d × c buffer, then sum the buffers.
        #[cfg(not(target_arch = "wasm32"))]
        if work >= PARALLEL_WORK && d * c <= PARALLEL_WORK {
            use rayon::prelude::*;
            let per = b.div_ceil(rayon::current_num_threads());
            let dense_multi = matches!(x, CpuMatrix::Dense { .. }) && c > 1;
            let parts: Vec<Vec<T>> = (0..b.div_ceil(per.max(1)))
                .into_par_iter()
                .map(|t| {
                    let mut acc = vec![T::zero(); d * c];
                    for k in t * per..((t + 1) * per).min(b) {
                        let ek = &e[k * c..(k + 1) * c];
                        match x {
                            // Accumulate Xᵀ E transposed (c × d): vectorisable length-d axpys.
                            CpuMatrix::Dense { data, .. } if dense_multi => {
                                let row = row_of(rows, k);
                                let xr = &data[row * d..(row + 1) * d];
                                for (acc_k, &ev) in acc.chunks_exact_mut(d).zip(ek) {
                                    axpy_slice(scale * ev, xr, acc_k);
                                }
                            }
                            _ => x.scatter_row(row_of(rows, k), 0..d, scale, ek, &mut acc),
                        }
                    }
                    if dense_multi {
                        acc = transpose(&acc, c, d);
                    }
                    acc
                })
                .collect();
            apply_reg(&reg, 0, c, out);
            for part in parts {
                axpy_slice(T::one(), &part, out);
            }
            return;
        }
        let threads = if work >= PARALLEL_WORK { pieces() } else { 1 };
        chunked(out, d.div_ceil(threads) * c, work, |start, oc| {
            let (j0, j1) = (start / c, start / c + oc.len() / c);
            apply_reg(&reg, j0, c, oc);
            for (k, ek) in e.chunks_exact(c).take(b).enumerate() {
                x.scatter_row(row_of(rows, k), j0..j1, scale, ek, oc);
            }
        });
    }

    fn loss_residual(
        &self,
        kind: LossKind,
        z: &Vec<T>,
        targets: &Vec<T>,
        rows: Rows<'_, Vec<u32>>,
        c: usize,
        weights: Option<&Vec<T>>,
        scale: f64,
        r: &mut Vec<T>,
        mut loss: Option<&mut Vec<T>>,
    ) {
        let b = r.len() / c;
        let scale = to_t::<T>(scale);
        for k in 0..b {
            let row = row_of(rows, k);
            let w = scale * weights.map_or(T::one(), |l| sigmoid(l[row]));
            let l = row_residual(kind, &z[k * c..(k + 1) * c], targets[row], &mut r[k * c..(k + 1) * c]);
            r[k * c..(k + 1) * c].iter_mut().for_each(|v| *v = w * *v);
            if let Some(loss) = loss.as_deref_mut() {
                loss[k] = w * l;
            }
        }
    }

    fn loss_curvature(
        &self,
        kind: LossKind,
        z: &Vec<T>,
        u: &Vec<T>,
        rows: Rows<'_, Vec<u32>>,
        c: usize,
        weights: Option<&Vec<T>>,
        scale: f64,
        m: &mut Vec<T>,
    ) {
        let b = m.len() / c;
        let scale = to_t::<T>(scale);
        for k in 0..b {
            let w = scale * weights.map_or(T::one(), |l| sigmoid(l[row_of(rows, k)]));
            row_curvature(kind, &z[k * c..(k + 1) * c], &u[k * c..(k + 1) * c], &mut m[k * c..(k + 1) * c]);
            m[k * c..(k + 1) * c].iter_mut().for_each(|v| *v = w * *v);
        }
    }

    fn rowdot_sigmoid_scatter(
        &self,
        a: &Vec<T>,
        bv: &Vec<T>,
        rows: Rows<'_, Vec<u32>>,
        c: usize,
        lambda: &Vec<T>,
        scale: f64,
        out: &mut Vec<T>,
    ) {
        let b = match rows {
            Rows::All => out.len(),
            Rows::Batch(idx) => idx.len(),
        };
        let scale = to_t::<T>(scale);
        for k in 0..b {
            let row = row_of(rows, k);
            let s = sigmoid(lambda[row]);
            let dot = a[k * c..(k + 1) * c].iter().zip(&bv[k * c..(k + 1) * c]).fold(T::zero(), |acc, (&x, &y)| acc + x * y);
            out[row] = scale * s * (T::one() - s) * dot;
        }
    }

    fn exp_rowdot(&self, lambda: &Vec<T>, a: &Vec<T>, b: &Vec<T>, c: usize, scale: f64, out: &mut Vec<T>) {
        let scale = to_t::<T>(scale);
        for (j, o) in out.iter_mut().enumerate() {
            let dot = a[j * c..(j + 1) * c].iter().zip(&b[j * c..(j + 1) * c]).fold(T::zero(), |acc, (&x, &y)| acc + x * y);
            *o = scale * lambda[j].exp() * dot;
        }
    }

    fn adam(&self, g: &Vec<T>, m: &mut Vec<T>, v: &mut Vec<T>, x: &mut Vec<T>, lr: f64, beta1: f64, beta2: f64, eps: f64) {
        let (lr, b1, b2, eps) = (to_t::<T>(lr), to_t::<T>(beta1), to_t::<T>(beta2), to_t::<T>(eps));
        for i in 0..x.len() {
            m[i] = b1 * m[i] + (T::one() - b1) * g[i];
            v[i] = b2 * v[i] + (T::one() - b2) * g[i] * g[i];
            x[i] = x[i] - lr * m[i] / (v[i].sqrt() + eps);
        }
    }

    fn sum(&self, x: &Vec<T>, scale: f64, out: &Cell<T>, accumulate: bool) {
        let s = x.iter().fold(T::zero(), |acc, &v| acc + v) * to_t(scale);
        out.set(if accumulate { out.get() + s } else { s });
    }
}

/// Work (multiply-adds or elements) below which an operation stays on one thread: spawning
/// onto the pool costs a few microseconds.
pub(crate) const PARALLEL_WORK: usize = 1 << 16;

/// Runs `f(first_index, chunk)` over `chunk_len`-sized chunks of `data`, on the rayon pool when
/// `work` is large (natively), else in order on this thread.
pub(crate) fn chunked<T: Send>(data: &mut [T], chunk_len: usize, work: usize, f: impl Fn(usize, &mut [T]) + Sync + Send) {
    let chunk_len = chunk_len.max(1);
    #[cfg(not(target_arch = "wasm32"))]
    if work >= PARALLEL_WORK {
        use rayon::prelude::*;
        data.par_chunks_mut(chunk_len).enumerate().for_each(|(i, c)| f(i * chunk_len, c));
        return;
    }
    let _ = work;
    data.chunks_mut(chunk_len).enumerate().for_each(|(i, c)| f(i * chunk_len, c));
}

/// How many pieces to cut parallel work into.
pub(crate) fn pieces() -> usize {
    #[cfg(not(target_arch = "wasm32"))]
    return 4 * rayon::current_num_threads();
    #[cfg(target_arch = "wasm32")]
    1
}

/// The penalty part of `gather_tmatmul` on the feature rows `j0..` held by `out`.
fn apply_reg<T: Real>(reg: &Reg<'_, CpuBackend<T>>, j0: usize, c: usize, out: &mut [T]) {
    let n = out.len();
    let range = j0 * c..j0 * c + n;
    match *reg {
        Reg::None => out.fill(T::zero()),
        Reg::ExpLambda { lambda, v, coef } => {
            let coef = to_t::<T>(coef);
            for (j, (oj, vj)) in out.chunks_exact_mut(c).zip(v[range.clone()].chunks_exact(c)).enumerate() {
                let f = coef * lambda[j0 + j].exp();
                oj.iter_mut().zip(vj).for_each(|(o, &vv)| *o = f * vv);
            }
        }
        Reg::Scaled { v, coef } => {
            let coef = to_t::<T>(coef);
            out.iter_mut().zip(&v[range.clone()]).for_each(|(o, &vv)| *o = coef * vv);
        }
        Reg::Decay { lambda, exp_coef, const_coef } => {
            let (ec, cc) = (to_t::<T>(exp_coef), to_t::<T>(const_coef));
            match lambda {
                Some(lambda) => {
                    for (j, oj) in out.chunks_exact_mut(c).enumerate() {
                        let f = cc + ec * lambda[j0 + j].exp();
                        oj.iter_mut().for_each(|o| *o = f * *o);
                    }
                }
                None => out.iter_mut().for_each(|o| *o = cc * *o),
            }
        }
    }
}

/// `xᵀy` with eight independent accumulators, so the compiler can vectorise it.
#[inline]
pub(crate) fn dot<T: Real>(x: &[T], y: &[T]) -> T {
    let mut acc = [T::zero(); 8];
    let (xc, yc) = (x.chunks_exact(8), y.chunks_exact(8));
    let (xr, yr) = (xc.remainder(), yc.remainder());
    for (a, b) in xc.zip(yc) {
        for l in 0..8 {
            acc[l] = acc[l] + a[l] * b[l];
        }
    }
    let tail = xr.iter().zip(yr).fold(T::zero(), |s, (&a, &b)| s + a * b);
    acc.iter().fold(tail, |s, &a| s + a)
}

/// The transpose of a row-major `rows × cols` matrix.
fn transpose<T: Real>(m: &[T], rows: usize, cols: usize) -> Vec<T> {
    let mut t = vec![T::zero(); rows * cols];
    for (i, row) in m.chunks_exact(cols).enumerate() {
        for (j, &v) in row.iter().enumerate() {
            t[j * rows + i] = v;
        }
    }
    t
}

/// `y += a·x` over a slice.
#[inline]
pub(crate) fn axpy_slice<T: Real>(a: T, x: &[T], y: &mut [T]) {
    for (yi, &xi) in y.iter_mut().zip(x) {
        *yi = *yi + a * xi;
    }
}

fn sigmoid<T: Real>(x: T) -> T {
    T::one() / (T::one() + (-x).exp())
}

/// `ℓ'(z)` into `r` and `ℓ(z)` returned, for one row (see [`LossKind`]).
pub fn row_residual<T: Real>(kind: LossKind, z: &[T], t: T, r: &mut [T]) -> T {
    match kind {
        LossKind::Squared => {
            r[0] = z[0] - t;
            to_t::<T>(0.5) * r[0] * r[0]
        }
        LossKind::Logistic => {
            r[0] = sigmoid(z[0]) - t;
            // softplus(z) − t z, stable for large |z|.
            z[0].max(T::zero()) + (-z[0].abs()).exp().ln_1p() - t * z[0]
        }
        LossKind::Softmax => {
            let m = z.iter().fold(T::neg_infinity(), |a, &b| a.max(b));
            let sum = z.iter().fold(T::zero(), |a, &v| a + (v - m).exp());
            let label = t.to_usize().unwrap_or(usize::MAX);
            for (kk, (rv, &zv)) in r.iter_mut().zip(z).enumerate() {
                *rv = (zv - m).exp() / sum - if kk == label { T::one() } else { T::zero() };
            }
            m + sum.ln() - z.get(label).copied().unwrap_or(T::nan())
        }
    }
}

/// `ℓ''(z)·u` into `m`, for one row.
pub(crate) fn row_curvature<T: Real>(kind: LossKind, z: &[T], u: &[T], m: &mut [T]) {
    match kind {
        LossKind::Squared => m[0] = u[0],
        LossKind::Logistic => {
            let s = sigmoid(z[0]);
            m[0] = s * (T::one() - s) * u[0];
        }
        LossKind::Softmax => {
            let mx = z.iter().fold(T::neg_infinity(), |a, &b| a.max(b));
            let sum = z.iter().fold(T::zero(), |a, &v| a + (v - mx).exp());
            let pu = z.iter().zip(u).fold(T::zero(), |a, (&zv, &uv)| a + (zv - mx).exp() / sum * uv);
            for ((mv, &zv), &uv) in m.iter_mut().zip(z).zip(u) {
                *mv = (zv - mx).exp() / sum * (uv - pu);
            }
        }
    }
}
