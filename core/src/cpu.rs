//! The CPU backend: the reference every GPU kernel is tested against, and the path for machines
//! without a GPU. Generic over the real type: `CpuBackend<f64>` is the reference used by the
//! finite-difference and closed-form tests, `CpuBackend<f32>` matches the GPU's precision.
//! Operations run at once; `flush` has nothing to do and reads are ready futures.

use std::cell::Cell;
use std::future::{ready, Future};
use std::marker::PhantomData;

use num_traits::Float;

use crate::backend::{Backend, Coef, Rows};
use crate::Result;

/// Real types the CPU backend computes in.
pub trait Real: Float + std::fmt::Debug + Default + 'static {}
impl Real for f32 {}
impl Real for f64 {}

/// A resident dense row-major matrix.
pub struct CpuMatrix<T> {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<T>,
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

fn rows_count<T: Real>(x: &CpuMatrix<T>, rows: Rows<'_, Vec<u32>>) -> usize {
    match rows {
        Rows::All => x.rows,
        Rows::Batch(idx) => idx.len(),
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
    fn matrix_from(&self, rows: usize, cols: usize, data: &[f64], _label: &str) -> CpuMatrix<T> {
        assert_eq!(data.len(), rows * cols, "matrix data has the wrong length");
        CpuMatrix { rows, cols, data: data.iter().map(|&v| to_t(v)).collect() }
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
        (m.rows, m.cols)
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

    fn rows_matvec(&self, x: &CpuMatrix<T>, rows: Rows<'_, Vec<u32>>, v: &Vec<T>, t: Option<&Vec<T>>, scale: f64, r: &mut Vec<T>) {
        let b = rows_count(x, rows);
        assert!(r.len() >= b && v.len() == x.cols, "rows_matvec: shape mismatch");
        let scale = to_t::<T>(scale);
        for (k, rk) in r.iter_mut().enumerate().take(b) {
            let row = row_of(rows, k);
            let xr = &x.data[row * x.cols..(row + 1) * x.cols];
            let mut acc = xr.iter().zip(v).fold(T::zero(), |acc, (&a, &b)| acc + a * b);
            if let Some(t) = t {
                acc = acc - t[row];
            }
            *rk = scale * acc;
        }
    }

    fn rows_tmatvec(
        &self,
        x: &CpuMatrix<T>,
        rows: Rows<'_, Vec<u32>>,
        r: &Vec<T>,
        scale: f64,
        ridge: Option<(&Vec<T>, &Vec<T>)>,
        out: &mut Vec<T>,
    ) {
        let b = rows_count(x, rows);
        assert!(r.len() >= b && out.len() == x.cols, "rows_tmatvec: shape mismatch");
        out.iter_mut().for_each(|o| *o = T::zero());
        // Row-wise accumulation (cache-friendly on the CPU); same sum as the GPU's column walk.
        for (k, &rk) in r.iter().enumerate().take(b) {
            let row = row_of(rows, k);
            let xr = &x.data[row * x.cols..(row + 1) * x.cols];
            out.iter_mut().zip(xr).for_each(|(o, &xv)| *o = *o + xv * rk);
        }
        let scale = to_t::<T>(scale);
        match ridge {
            Some((lam, v)) => {
                for ((o, &l), &vj) in out.iter_mut().zip(lam).zip(v) {
                    *o = scale * *o + l.exp() * vj;
                }
            }
            None => out.iter_mut().for_each(|o| *o = scale * *o),
        }
    }

    fn exp_hadamard(&self, lambda: &Vec<T>, a: &Vec<T>, b: &Vec<T>, scale: f64, out: &mut Vec<T>) {
        let scale = to_t::<T>(scale);
        for (j, o) in out.iter_mut().enumerate() {
            *o = scale * lambda[j].exp() * a[j] * b[j];
        }
    }
}
