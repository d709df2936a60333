//! The [`Backend`] and [`GlmBackend`] implementations: each operation's choice of data path
//! (dense, CSR batch, CSC full pass, shifted-sparse batch form, fused GLM batch) and threads.

use std::cell::Cell;
use std::future::{ready, Future};

use super::*;
use crate::backend::{
    glm_batch_unfused, Backend, Coef, GlmBackend, GlmRows, GlmScales, HostMatrix, LossRows, Reg, RowTerm, Rows, TmatmulOut,
};
use crate::optim::AdamStep;
use crate::Result;

impl<T: Real> Backend for CpuBackend<T> {
    type Vector = Vec<T>;
    type Scalar = Cell<T>;
    type Matrix = CpuMatrix<T>;
    type Indices = Vec<u32>;

    fn describe(&self) -> String {
        // The f32 backend names the intrinsics its fused kernels may use, when capped.
        let cap = match (self.wide, self.avx512) {
            (false, _) => ", portable kernels",
            (true, false) => ", AVX-512 off",
            (true, true) => "",
        };
        let threads = match self.threads {
            Threads::Timed => "",
            Threads::One => ", one thread",
            Threads::Two => ", two threads",
        };
        let cap = if std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>() { cap } else { "" };
        format!("cpu ({}{cap}{threads})", std::any::type_name::<T>())
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
        CpuMatrix(match m {
            HostMatrix::Dense { rows, cols, data } => {
                assert_eq!(data.len(), rows * cols, "matrix data has the wrong length");
                let batch_form =
                    shifted_sparse(*rows, *cols, data).map(|(sparse, shift)| Box::new(csr_matrix(&sparse, false, Some(shift))));
                Layout::Dense { rows: *rows, cols: *cols, data: data.iter().map(|&v| to_t(v)).collect(), batch_form }
            }
            HostMatrix::Csr { .. } => csr_matrix(m, true, None),
        })
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
        let parallel = self.parallel(ThreadedPath::Elementwise, n);
        split_chunks(y, n.div_ceil(pieces()), parallel, |start, yc| {
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
        let parallel = self.parallel(ThreadedPath::Reduction, x.len());
        let s = reduce(x.len(), parallel, |r| dot_kernel(&x[r.clone()], &y[r])) * to_t(scale);
        out.set(if accumulate { out.get() + s } else { s });
    }

    fn gather_matmul(&self, x: &CpuMatrix<T>, rows: Rows<'_, Vec<u32>>, w: &Vec<T>, c: usize, z: &mut Vec<T>) {
        let x = x.for_rows(rows);
        let b = x.batch_len(rows);
        assert!(z.len() >= b * c && w.len() == x.cols() * c, "gather_matmul: shape mismatch");
        // Rows of Z are independent: split them across threads.
        let work = b * c * x.row_nnz_estimate();
        let rows_per_piece = |parallel: bool| b.div_ceil(if parallel { pieces() } else { 1 });
        match x {
            Layout::Dense { cols, data, .. } => {
                let parallel = self.parallel(ThreadedPath::MatmulRows, work);
                // c dot products of length d per row, on Wᵀ (c × d; W itself when c = 1).
                let mut transposed = self.take(if c > 1 { w.len() } else { 0 });
                if c > 1 {
                    transpose_into(w, *cols, c, &mut transposed);
                }
                let wt = if c > 1 { &transposed[..] } else { &w[..] };
                // Pieces start on a row block of the kernel.
                split_chunks(&mut z[..b * c], rows_per_piece(parallel).next_multiple_of(ROW_BLOCK) * c, parallel, |start, zc| {
                    #[cfg(target_arch = "x86_64")]
                    if let (Some(data), Some(wt), true) = (as_f32(data), as_f32(wt), avx2::available()) {
                        let zc = as_f32_mut(zc).expect("T is f32");
                        // SAFETY: the CPU has AVX2 and FMA; the shapes are dense_dots's.
                        unsafe { avx2::dense_dots(data, *cols, BatchRows { rows, first: start / c }, wt, c, zc) };
                        return;
                    }
                    dense_dots(data, *cols, BatchRows { rows, first: start / c }, wt, c, zc)
                });
                self.give(transposed);
            }
            // The full training set: feature ranges split across threads, each streaming its part
            // of W and its CSC columns into a private Z (n × c), then the Z's summed.
            Layout::Csr { csc: Some(csc), cols: d, .. } if matches!(rows, Rows::All) => {
                let parallel = self.parallel(ThreadedPath::MatmulFeatures, work);
                let parts = if parallel { threads() } else { 1 };
                let per = d.div_ceil(parts);
                let mut acc = self.take(parts * b * c);
                split_chunks(&mut acc, b * c, parallel, |start, zp| {
                    let first = start / (b * c) * per;
                    zp.fill(T::zero());
                    csc_matmul(csc.lines(), first..(first + per).min(*d), w, c, zp);
                });
                let (first, others) = acc.split_at(b * c);
                z[..b * c].copy_from_slice(first);
                for part in others.chunks_exact(b * c) {
                    axpy_slice(T::one(), part, &mut z[..b * c]);
                }
                self.give(acc);
            }
            // A batch: its rows split across threads, W's rows read in the columns' order.
            Layout::Csr { indptr, indices, values, .. } => {
                let parallel = self.parallel(ThreadedPath::MatmulRows, work);
                split_chunks(&mut z[..b * c], rows_per_piece(parallel) * c, parallel, |start, zc| {
                    csr_matmul(Compressed { ptr: indptr, idx: indices, values }, BatchRows { rows, first: start / c }, w, c, zc);
                })
            }
        }
        // X = S + 1sᵀ:  Z += 1 (sᵀW).
        if let Layout::Csr { shift: Some(s), .. } = x {
            let mut stw = self.take(c);
            csr_matmul(s.lines(), BatchRows { rows: Rows::All, first: 0 }, w, c, &mut stw);
            z[..b * c].chunks_exact_mut(c).for_each(|zk| axpy_slice(T::one(), &stw, zk));
            self.give(stw);
        }
    }

    fn gather_tmatmul(
        &self,
        x: &CpuMatrix<T>,
        rows: Rows<'_, Vec<u32>>,
        e: &Vec<T>,
        c: usize,
        terms: TmatmulOut<'_, Self>,
        out: &mut Vec<T>,
    ) {
        let TmatmulOut { scale, reg } = terms;
        let x = x.for_rows(rows);
        let b = x.batch_len(rows);
        let d = x.cols();
        assert!(e.len() >= b * c && out.len() == d * c, "gather_tmatmul: shape mismatch");
        let scale = to_t::<T>(scale);
        let work = d * c + b * c * x.row_nnz_estimate();
        let large = work >= PARALLEL_WORK;
        match x {
            // Few features (ijcnn1, MNIST): batch rows split across threads, each adding its rows
            // into a private c × d buffer (Xᵀ E transposed: length-d axpys), then the buffers
            // summed into out. A dense d × c is small by construction.
            Layout::Dense { data, .. } => {
                let parallel = self.parallel(ThreadedPath::TmatmulRows, work);
                let parts = if parallel { threads().min(b.div_ceil(ROW_BLOCK)).max(1) } else { 1 };
                let per = b.div_ceil(parts).next_multiple_of(ROW_BLOCK);
                let mut acc = self.take(parts * d * c);
                split_chunks(&mut acc, d * c, parallel, |start, acc_p| {
                    let first = (start / (d * c)) * per;
                    let last = (first + per).min(b);
                    acc_p.fill(T::zero());
                    if first < last {
                        dense_scatter(data, d, BatchRows { rows, first }, &e[first * c..last * c], c, scale, acc_p);
                    }
                });
                apply_reg(&reg, 0, c, out);
                for acc_p in acc.chunks_exact(d * c) {
                    add_transposed(acc_p, c, d, out);
                }
                self.give(acc);
            }
            // The full training set: per feature, a gather over its CSC column, in the same pass
            // over out as the penalty (no scattered writes; each thread owns a range of out's rows).
            Layout::Csr { csc: Some(csc), .. } if matches!(rows, Rows::All) => {
                let parallel = self.parallel(ThreadedPath::TmatmulFeatures, work);
                let per = d.div_ceil(if parallel { pieces() } else { 1 });
                split_chunks(out, per * c, parallel, |start, oc| {
                    apply_reg(&reg, start / c, c, oc);
                    csc_tmatmul(csc.lines(), start / c, e, c, scale, oc);
                });
            }
            // A sparse batch over few features: private d × c buffers per thread, as for dense.
            Layout::Csr { indptr, indices, values, .. } if large && d * c <= PARALLEL_WORK => {
                let parallel = self.parallel(ThreadedPath::TmatmulRows, work);
                let parts = threads().min(b).max(1);
                let per = b.div_ceil(parts);
                let mut acc = self.take(parts * d * c);
                split_chunks(&mut acc, d * c, parallel, |start, acc_p| {
                    let first = (start / (d * c)) * per;
                    acc_p.fill(T::zero());
                    let last = (first + per).min(b);
                    csr_scatter(
                        Compressed { ptr: indptr, idx: indices, values },
                        BatchRows { rows, first },
                        &e[first * c..last * c],
                        c,
                        scale,
                        0..d,
                        acc_p,
                    );
                });
                apply_reg(&reg, 0, c, out);
                for acc_p in acc.chunks_exact(d * c) {
                    axpy_slice(T::one(), acc_p, out);
                }
                self.give(acc);
            }
            // A sparse batch over many features (20 Newsgroups): each thread owns a range of
            // features (rows of out), applies the penalty there, then adds every batch row's
            // entries that fall in its range (no write conflicts).
            Layout::Csr { indptr, indices, values, .. } => {
                let parallel = self.parallel(ThreadedPath::TmatmulFeatures, work);
                let per = d.div_ceil(if parallel { threads() } else { 1 });
                split_chunks(out, per * c, parallel, |start, oc| {
                    let (j0, j1) = (start / c, start / c + oc.len() / c);
                    apply_reg(&reg, j0, c, oc);
                    csr_scatter(
                        Compressed { ptr: indptr, idx: indices, values },
                        BatchRows { rows, first: 0 },
                        &e[..b * c],
                        c,
                        scale,
                        j0..j1,
                        oc,
                    );
                });
            }
        }
        // X = S + 1sᵀ:  out += scale · s (1ᵀE).
        if let Layout::Csr { shift: Some(s), .. } = x {
            let mut e_sum = self.take(c);
            e_sum.fill(T::zero());
            e[..b * c].chunks_exact(c).for_each(|ek| axpy_slice(T::one(), ek, &mut e_sum));
            csr_scatter(s.lines(), BatchRows { rows: Rows::All, first: 0 }, &e_sum, c, scale, 0..d, out);
            self.give(e_sum);
        }
    }

    fn adam(&self, g: &Vec<T>, m: &mut Vec<T>, v: &mut Vec<T>, x: &mut Vec<T>, step: AdamStep) {
        let (lr, b1, b2, eps) = (to_t::<T>(step.lr), to_t::<T>(step.beta1), to_t::<T>(step.beta2), to_t::<T>(step.eps));
        for i in 0..x.len() {
            m[i] = b1 * m[i] + (T::one() - b1) * g[i];
            v[i] = b2 * v[i] + (T::one() - b2) * g[i] * g[i];
            x[i] = x[i] - lr * m[i] / (v[i].sqrt() + eps);
        }
    }

    fn sum(&self, x: &Vec<T>, scale: f64, out: &Cell<T>, accumulate: bool) {
        let parallel = self.parallel(ThreadedPath::Reduction, x.len());
        let s = reduce(x.len(), parallel, |r| sum_kernel(&x[r])) * to_t(scale);
        out.set(if accumulate { out.get() + s } else { s });
    }
}

impl<T: Real> GlmBackend for CpuBackend<T> {
    fn loss_residual(&self, on: LossRows<'_, Self>, z: &Vec<T>, scale: f64, r: &mut Vec<T>, mut loss: Option<&mut Vec<T>>) {
        let LossRows { loss: kind, targets, rows, c, weights } = on;
        let b = r.len() / c;
        let scale = to_t::<T>(scale);
        // The loss only where asked for: its logarithms cost as much as the residual.
        let want_loss = loss.is_some();
        for k in 0..b {
            let row = row_of(rows, k);
            let w = scale * weights.map_or(T::one(), |l| sigmoid(l[row]));
            let l = residual_and_loss(kind, &z[k * c..(k + 1) * c], targets[row], &mut r[k * c..(k + 1) * c], want_loss);
            r[k * c..(k + 1) * c].iter_mut().for_each(|v| *v = w * *v);
            if let Some(loss) = loss.as_deref_mut() {
                loss[k] = w * l;
            }
        }
    }
    fn loss_curvature(&self, on: LossRows<'_, Self>, z: &Vec<T>, u: &Vec<T>, scale: f64, m: &mut Vec<T>) {
        let LossRows { loss: kind, rows, c, weights, .. } = on;
        let b = m.len() / c;
        let scale = to_t::<T>(scale);
        for k in 0..b {
            let w = scale * weights.map_or(T::one(), |l| sigmoid(l[row_of(rows, k)]));
            row_curvature(kind, &z[k * c..(k + 1) * c], &u[k * c..(k + 1) * c], &mut m[k * c..(k + 1) * c]);
            m[k * c..(k + 1) * c].iter_mut().for_each(|v| *v = w * *v);
        }
    }
    fn rowdot_sigmoid_scatter(&self, ab: [&Vec<T>; 2], rows: Rows<'_, Vec<u32>>, c: usize, lambda: &Vec<T>, scale: f64, out: &mut Vec<T>) {
        let [a, bv] = ab;
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
    fn glm_batch(
        &self,
        data: GlmRows<'_, Self>,
        term: RowTerm<'_, Vec<T>>,
        scales: GlmScales,
        reg: Reg<'_, Self>,
        out: &mut Vec<T>,
        scratch: [&mut Vec<T>; 3],
    ) {
        if fused::applies(&data) {
            fused::glm_batch(self, data, term, scales, reg, out, scratch);
        } else {
            glm_batch_unfused(self, data, term, scales, reg, out, scratch);
        }
    }
}

/// The penalty part of `gather_tmatmul` on the feature rows `j0..` held by `out`.
pub(super) fn apply_reg<T: Real>(reg: &Reg<'_, CpuBackend<T>>, j0: usize, c: usize, out: &mut [T]) {
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

/// `t ← mᵀ` for a row-major `rows × cols` matrix `m`.
pub(super) fn transpose_into<T: Real>(m: &[T], rows: usize, cols: usize, t: &mut [T]) {
    for (i, row) in m.chunks_exact(cols).enumerate() {
        for (j, &v) in row.iter().enumerate() {
            t[j * rows + i] = v;
        }
    }
}

/// `out += accᵀ` for a row-major `rows × cols` matrix `acc` (a plain sum when `rows` = 1).
pub(super) fn add_transposed<T: Real>(acc: &[T], rows: usize, cols: usize, out: &mut [T]) {
    if rows == 1 {
        axpy_slice(T::one(), acc, out);
        return;
    }
    for (i, row) in acc.chunks_exact(cols).enumerate() {
        for (j, &v) in row.iter().enumerate() {
            out[j * rows + i] = out[j * rows + i] + v;
        }
    }
}
