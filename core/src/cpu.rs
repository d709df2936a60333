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
pub trait Real: Float + std::fmt::Debug + Default + 'static {}
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
    fn batch_len(&self, rows: Rows<'_, Vec<u32>>) -> usize {
        match rows {
            Rows::All => self.rows(),
            Rows::Batch(idx) => idx.len(),
        }
    }
    /// Calls `f(j, x_ij)` for the stored entries of row i.
    #[inline]
    fn for_each_in_row(&self, i: usize, mut f: impl FnMut(usize, T)) {
        match self {
            CpuMatrix::Dense { cols, data, .. } => data[i * cols..(i + 1) * cols].iter().enumerate().for_each(|(j, &v)| f(j, v)),
            CpuMatrix::Csr { indptr, indices, values, .. } => {
                for p in indptr[i] as usize..indptr[i + 1] as usize {
                    f(indices[p] as usize, values[p]);
                }
            }
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

fn to_t<T: Real>(x: f64) -> T {
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
        if b == T::zero() {
            y.iter_mut().zip(x).for_each(|(yi, &xi)| *yi = a * xi);
        } else {
            y.iter_mut().zip(x).for_each(|(yi, &xi)| *yi = a * xi + b * *yi);
        }
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
        for k in 0..b {
            let zk = &mut z[k * c..(k + 1) * c];
            zk.iter_mut().for_each(|v| *v = T::zero());
            x.for_each_in_row(row_of(rows, k), |j, xv| {
                for (zv, &wv) in zk.iter_mut().zip(&w[j * c..(j + 1) * c]) {
                    *zv = *zv + xv * wv;
                }
            });
        }
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
        assert!(e.len() >= b * c && out.len() == x.cols() * c, "gather_tmatmul: shape mismatch");
        match reg {
            Reg::None => out.iter_mut().for_each(|o| *o = T::zero()),
            Reg::ExpLambda { lambda, v, coef } => {
                let coef = to_t::<T>(coef);
                for (j, (oj, vj)) in out.chunks_mut(c).zip(v.chunks(c)).enumerate() {
                    let f = coef * lambda[j].exp();
                    oj.iter_mut().zip(vj).for_each(|(o, &vv)| *o = f * vv);
                }
            }
            Reg::Scaled { v, coef } => {
                let coef = to_t::<T>(coef);
                out.iter_mut().zip(v.iter()).for_each(|(o, &vv)| *o = coef * vv);
            }
        }
        // Scatter row by row (cache-friendly on the CPU); the GPU gathers column by column.
        let scale = to_t::<T>(scale);
        for k in 0..b {
            let ek = &e[k * c..(k + 1) * c];
            x.for_each_in_row(row_of(rows, k), |j, xv| {
                let f = scale * xv;
                for (o, &ev) in out[j * c..(j + 1) * c].iter_mut().zip(ek) {
                    *o = *o + f * ev;
                }
            });
        }
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

fn sigmoid<T: Real>(x: T) -> T {
    T::one() / (T::one() + (-x).exp())
}

/// `ℓ'(z)` into `r` and `ℓ(z)` returned, for one row (see [`LossKind`]).
pub(crate) fn row_residual<T: Real>(kind: LossKind, z: &[T], t: T, r: &mut [T]) -> T {
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
