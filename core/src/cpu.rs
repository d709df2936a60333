//! The CPU backend: the reference every GPU kernel is tested against, and the path for machines
//! without a GPU. Generic over the real type: `CpuBackend<f64>` is the reference used by the
//! finite-difference and closed-form tests, `CpuBackend<f32>` matches the GPU's precision.
//! Operations run at once; `flush` has nothing to do and reads are ready futures.

use std::cell::Cell;
use std::future::{ready, Future};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use num_traits::Float;

use crate::backend::{glm_batch_unfused, Backend, Coef, GlmBackend, GlmRows, HostMatrix, LossKind, Reg, RowTerm, Rows, SPARSE_DENSITY};
use crate::optim::AdamStep;
use crate::Result;

/// Real types the CPU backend computes in.
pub trait Real: Float + std::fmt::Debug + Default + Send + Sync + 'static {}
impl Real for f32 {}
impl Real for f64 {}

/// A resident data matrix of the CPU backend. Opaque, because the kernels index its rows
/// without bounds checks: only the backend builds one (from a checked [`HostMatrix`]), and
/// nothing outside changes it.
pub struct CpuMatrix<T>(Layout<T>);

impl<T: Real> CpuMatrix<T> {
    pub fn rows(&self) -> usize {
        self.0.rows()
    }
    pub fn cols(&self) -> usize {
        self.0.cols()
    }
    /// Whether the matrix is stored dense (else CSR).
    pub fn is_dense(&self) -> bool {
        matches!(self.0, Layout::Dense { .. })
    }
    /// Whether a dense matrix carries a sparse batch form for mini-batches (a shifted CSR).
    pub fn has_batch_form(&self) -> bool {
        matches!(self.0, Layout::Dense { batch_form: Some(_), .. })
    }
    /// The storage a product over `rows` reads: a dense matrix's batch form for mini-batches.
    fn for_rows(&self, rows: Rows<'_, Vec<u32>>) -> &Layout<T> {
        self.0.for_rows(rows)
    }
}

/// How a [`CpuMatrix`] is stored: dense row-major or sparse CSR.
pub(crate) enum Layout<T> {
    /// Row-major. When the columns mostly hold one value each, as in normalised MNIST
    /// (background pixels −0.424, the bias column 1), `batch_form` holds the same matrix as a
    /// shifted CSR (see [`shifted_sparse`]) for mini-batch products, which then touch only the
    /// ~20 % of entries that differ; full-batch products stay on the dense rows, whose kernels
    /// beat a sparse pass at that density when every row is read.
    Dense { rows: usize, cols: usize, data: Vec<T>, batch_form: Option<Box<Layout<T>>> },
    /// CSR, with the CSC (the transpose's CSR) beside it for full-batch `Xᵀ E`: a gather per
    /// feature, no scattered writes (`None` for a batch form, which full batches do not use).
    /// With `shift = Some(s)` the matrix is this CSR plus `s` added to every row (`X = S + 1sᵀ`).
    ///
    /// `split` is there when every row's column indices ascend (see [`Split`]).
    Csr {
        rows: usize,
        cols: usize,
        indptr: Vec<u32>,
        indices: Vec<u32>,
        values: Vec<T>,
        csc: Option<Csc<T>>,
        shift: Option<Shift<T>>,
        // Only the x86-64 kernels split (wasm32 has one thread).
        #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
        split: Option<Split>,
    },
}

/// A column that splits a CSR matrix's non-zeros about in half, and where each row reaches it,
/// so that two threads can write G's rows below it and from it apart.
// Only the x86-64 kernels split (wasm32 has one thread).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub struct Split {
    pub(crate) col: u32,
    /// Row r's entries with columns from `col` on start at `at[r]` (an index into `indices`).
    pub(crate) at: Vec<u32>,
}

/// The row `s` that [`Layout::Csr`] adds to every row, as a one-row CSR of its non-zeros, so
/// that its corrections `sᵀW` and `s (1ᵀE)` run through the same kernels as the rows.
pub struct Shift<T> {
    indptr: [u32; 2],
    indices: Vec<u32>,
    values: Vec<T>,
}

/// Compressed sparse columns: column j's entries are `rowidx[colptr[j]..colptr[j + 1]]`.
pub struct Csc<T> {
    colptr: Vec<u32>,
    rowidx: Vec<u32>,
    values: Vec<T>,
}

impl<T: Real> Layout<T> {
    fn rows(&self) -> usize {
        match self {
            Layout::Dense { rows, .. } | Layout::Csr { rows, .. } => *rows,
        }
    }
    fn cols(&self) -> usize {
        match self {
            Layout::Dense { cols, .. } | Layout::Csr { cols, .. } => *cols,
        }
    }
    /// Average stored entries per row (the work of one row's product).
    fn row_nnz_estimate(&self) -> usize {
        match self {
            Layout::Dense { cols, .. } => *cols,
            Layout::Csr { rows, values, .. } => values.len() / (*rows).max(1) + 1,
        }
    }

    fn for_rows(&self, rows: Rows<'_, Vec<u32>>) -> &Layout<T> {
        match (self, rows) {
            (Layout::Dense { batch_form: Some(sparse), .. }, Rows::Batch(_)) => sparse,
            _ => self,
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
pub struct CpuBackend<T: Real> {
    /// Work buffers of the data products (Wᵀ, per-thread accumulators), reused across calls so
    /// that a solver's steady state allocates nothing.
    pool: Mutex<Vec<Vec<T>>>,
    /// Whether the fused f32 kernels may use intrinsics (AVX-512 or AVX2, where the CPU has
    /// them), and the meta-learning GEMM its AVX-512 tiles.
    pub(crate) wide: bool,
    /// Whether the fused f32 kernels may use AVX-512 (else AVX2 at most).
    pub(crate) avx512: bool,
    /// Whether the AVX2 CSR kernel may split a call with a partner thread.
    pub(crate) threads: Threads,
    /// The partner thread, started on first use.
    #[cfg(target_arch = "x86_64")]
    partner: std::sync::OnceLock<Option<pair::Pair>>,
    /// Calls of the data products that ran on the rayon pool, per [`ThreadedPath`] (counted once
    /// per call, outside the kernels).
    threaded: [AtomicUsize; ThreadedPath::ALL.len()],
}

/// The data products' execution paths on the rayon pool, taken by calls of
/// [`PARALLEL_WORK`] multiply-adds or more (for tests, which must reach each one: see
/// [`CpuBackend::threaded_calls`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThreadedPath {
    /// `gather_matmul` with Z's rows split across threads (dense rows, or a sparse batch).
    MatmulRows,
    /// `gather_matmul` over every row of a CSR matrix: its CSC's feature ranges split across
    /// threads, each into a private Z, then the Z's summed.
    MatmulFeatures,
    /// `gather_tmatmul` with the rows split across threads, each adding into a private d × c
    /// accumulator, then the accumulators summed (dense rows, or a sparse batch over few features).
    TmatmulRows,
    /// `gather_tmatmul` with out's feature rows split across threads (the CSC gather over every
    /// row, or a sparse batch over many features).
    TmatmulFeatures,
    /// `dot` and `sum`: fixed pieces summed on the pool.
    Reduction,
    /// `axpby`: chunks of the vectors on the pool.
    Elementwise,
}

impl ThreadedPath {
    pub const ALL: [ThreadedPath; 6] = [
        ThreadedPath::MatmulRows,
        ThreadedPath::MatmulFeatures,
        ThreadedPath::TmatmulRows,
        ThreadedPath::TmatmulFeatures,
        ThreadedPath::Reduction,
        ThreadedPath::Elementwise,
    ];
}

/// Whether the f32 fused kernel for sparse mini-batches (MNIST's) splits a call over two
/// threads, on a machine with two cores or more (`fused.rs`, `cpu/pair.rs`). The results are
/// the same to the bit whichever it does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Threads {
    /// Never: the calling thread alone.
    One,
    /// Always where the call qualifies (for tests).
    Two,
    /// Where timing the run so far says that it pays (the default): a virtual machine's two
    /// cores may be two hyperthreads of one core at times, and then it does not.
    Timed,
}

impl<T: Real> Default for CpuBackend<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Real> CpuBackend<T> {
    pub fn new() -> Self {
        CpuBackend {
            pool: Mutex::default(),
            wide: true,
            avx512: true,
            threads: Threads::Timed,
            #[cfg(target_arch = "x86_64")]
            partner: std::sync::OnceLock::new(),
            threaded: Default::default(),
        }
    }

    /// The same backend without the intrinsics kernels (the portable ones every other CPU
    /// runs; for tests and comparisons).
    pub fn portable(self) -> Self {
        CpuBackend { wide: false, ..self }
    }

    /// The same backend with the fused kernels' AVX-512 forms off: AVX2 where the CPU has it
    /// (so that a CPU with AVX-512 tests and times the AVX2 kernels too).
    pub fn without_avx512(self) -> Self {
        CpuBackend { avx512: false, ..self }
    }

    /// The same backend with another [`Threads`] mode for its fused sparse kernel.
    pub fn threads(self, threads: Threads) -> Self {
        CpuBackend { threads, ..self }
    }

    /// The partner thread, when this backend may use one and the machine has a second core.
    #[cfg(target_arch = "x86_64")]
    fn partner(&self) -> Option<&pair::Pair> {
        if self.threads == Threads::One {
            return None;
        }
        self.partner.get_or_init(pair::Pair::new).as_ref()
    }

    /// Which kernel [`Backend::glm_batch`] runs for `data`: `"avx512"`, `"avx2"`, `"portable"`
    /// (fused), or `None` (the unfused composition of the primitives).
    pub fn glm_batch_kernel(&self, data: &GlmRows<'_, Self>) -> Option<&'static str> {
        fused::applies(data).then(|| fused::simd(self, data).map_or("portable", fused::Simd::name))
    }

    /// Whether [`Backend::glm_batch`] may split this call over two threads (with
    /// [`Threads::Two`] it does).
    pub fn glm_batch_splits(&self, data: &GlmRows<'_, Self>) -> bool {
        fused::applies(data) && fused::splits(self, data)
    }

    /// How many calls so far ran `path` on the rayon pool (tests assert that they reach each one).
    #[doc(hidden)]
    pub fn threaded_calls(&self, path: ThreadedPath) -> usize {
        self.threaded[path as usize].load(Ordering::Relaxed)
    }

    /// Whether a call of `work` multiply-adds (or elements) runs on the rayon pool: natively, at
    /// [`PARALLEL_WORK`] or more. Counts the call under `path` when it does.
    fn parallel(&self, path: ThreadedPath, work: usize) -> bool {
        let parallel = cfg!(not(target_arch = "wasm32")) && work >= PARALLEL_WORK;
        if parallel {
            self.threaded[path as usize].fetch_add(1, Ordering::Relaxed);
        }
        parallel
    }

    /// A work buffer of `len` elements (contents unspecified).
    fn take(&self, len: usize) -> Vec<T> {
        let mut v = self.pool.lock().map(|mut p| p.pop()).ok().flatten().unwrap_or_default();
        v.resize(len, T::zero());
        v
    }

    /// A work buffer of at least `len` elements, contents unspecified: a pooled one that is
    /// long enough if there is one (taken as it is: nothing is cleared), else a new one.
    pub(crate) fn take_at_least(&self, len: usize) -> Vec<T> {
        let found = self.pool.lock().ok().and_then(|mut p| p.iter().rposition(|v| v.len() >= len).map(|i| p.swap_remove(i)));
        found.unwrap_or_else(|| vec![T::zero(); len])
    }

    pub(crate) fn give(&self, v: Vec<T>) {
        if let Ok(mut p) = self.pool.lock() {
            p.push(v);
        }
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
                        unsafe { avx2::dense_dots(data, *cols, rows, start / c, wt, c, zc) };
                        return;
                    }
                    dense_dots(data, *cols, rows, start / c, wt, c, zc)
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
                    csc_matmul(&csc.colptr, &csc.rowidx, &csc.values, first, (first + per).min(*d), w, c, zp);
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
                    csr_matmul(indptr, indices, values, rows, start / c, w, c, zc);
                })
            }
        }
        // X = S + 1sᵀ:  Z += 1 (sᵀW).
        if let Layout::Csr { shift: Some(s), .. } = x {
            let mut stw = self.take(c);
            csr_matmul(&s.indptr, &s.indices, &s.values, Rows::All, 0, w, c, &mut stw);
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
        scale: f64,
        reg: Reg<'_, Self>,
        out: &mut Vec<T>,
    ) {
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
                        dense_scatter(data, d, rows, first, &e[first * c..last * c], c, scale, acc_p);
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
                    csc_tmatmul(&csc.colptr, &csc.rowidx, &csc.values, start / c, e, c, scale, oc);
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
                    csr_scatter(indptr, indices, values, rows, first, &e[first * c..last * c], c, scale, 0, d, acc_p);
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
                    csr_scatter(indptr, indices, values, rows, 0, &e[..b * c], c, scale, j0, j1, oc);
                });
            }
        }
        // X = S + 1sᵀ:  out += scale · s (1ᵀE).
        if let Layout::Csr { shift: Some(s), .. } = x {
            let mut e_sum = self.take(c);
            e_sum.fill(T::zero());
            e[..b * c].chunks_exact(c).for_each(|ek| axpy_slice(T::one(), ek, &mut e_sum));
            csr_scatter(&s.indptr, &s.indices, &s.values, Rows::All, 0, &e_sum, c, scale, 0, d, out);
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
    fn glm_batch(
        &self,
        data: GlmRows<'_, Self>,
        term: RowTerm<'_, Vec<T>>,
        row_scale: f64,
        scale: f64,
        reg: Reg<'_, Self>,
        out: &mut Vec<T>,
        scratch: [&mut Vec<T>; 3],
    ) {
        if fused::applies(&data) {
            fused::glm_batch(self, data, term, row_scale, scale, reg, out, scratch);
        } else {
            glm_batch_unfused(self, data, term, row_scale, scale, reg, out, scratch);
        }
    }
}

/// Work (multiply-adds or elements) below which an operation stays on one thread. Waking the
/// pool costs microseconds, and far more when the cores are shared (measured: MNIST's 64-row
/// products, ~0.5 M multiply-adds each, run faster on one thread than split over two).
pub(crate) const PARALLEL_WORK: usize = 1 << 21;

/// A CSR matrix on the CPU (with its CSC when asked for).
fn csr_matrix<T: Real>(m: &HostMatrix, with_csc: bool, shift: Option<Vec<f64>>) -> Layout<T> {
    let HostMatrix::Csr { rows, cols, indptr, indices, values } = m else { unreachable!("csr_matrix takes a CSR matrix") };
    // The kernels index W's rows by these without bounds checks (fused::avx512).
    assert!(indices.iter().all(|&j| (j as usize) < *cols), "CSR column index out of range");
    assert!(
        indptr.len() == rows + 1 && indptr.windows(2).all(|w| w[0] <= w[1]) && indptr[*rows] as usize == indices.len(),
        "malformed CSR row pointers"
    );
    let convert = |v: &[f64]| v.iter().map(|&v| to_t(v)).collect::<Vec<T>>();
    let csc = with_csc.then(|| {
        let (colptr, rowidx, cvalues) = m.csc();
        Csc { colptr, rowidx, values: convert(&cvalues) }
    });
    Layout::Csr {
        rows: *rows,
        cols: *cols,
        indptr: indptr.clone(),
        indices: indices.clone(),
        values: convert(values),
        csc,
        split: if cfg!(target_arch = "x86_64") { halving_column(*cols, indptr, indices) } else { None },
        shift: shift.map(|s| {
            let indices: Vec<u32> = (0..s.len() as u32).filter(|&j| s[j as usize] != 0.0).collect();
            let values = indices.iter().map(|&j| to_t(s[j as usize])).collect();
            Shift { indptr: [0, indices.len() as u32], indices, values }
        }),
    }
}

/// The column with about half the non-zeros below it, and where each row reaches it, if every
/// row's column indices ascend strictly (else `None`).
fn halving_column(cols: usize, indptr: &[u32], indices: &[u32]) -> Option<Split> {
    let ascending = indptr.windows(2).all(|w| indices[w[0] as usize..w[1] as usize].windows(2).all(|p| p[0] < p[1]));
    if !ascending || cols < 2 || indices.is_empty() {
        return None;
    }
    let mut count = vec![0usize; cols];
    indices.iter().for_each(|&j| count[j as usize] += 1);
    let (mut below, half) = (0, indices.len() / 2);
    let s = count.iter().position(|&n| {
        below += n;
        below > half
    });
    let col = s.unwrap_or(cols - 1).max(1) as u32;
    let at = indptr.windows(2).map(|w| w[0] + indices[w[0] as usize..w[1] as usize].partition_point(|&j| j < col) as u32).collect();
    Some(Split { col, at })
}

/// A dense `rows × cols` matrix as `S + 1sᵀ` with `S` sparse, when that pays: `s_j` is, of 0,
/// column j's majority candidate and the value most columns agree on, the one most of column j's
/// entries hold, and `S` keeps the entries that differ from it — when they are at most
/// [`SPARSE_DENSITY`] of all. `None` otherwise, or when every `s_j` is 0 (plain CSR covers that).
pub(crate) fn shifted_sparse(rows: usize, cols: usize, data: &[f64]) -> Option<(HostMatrix, Vec<f64>)> {
    if rows < 2 || cols == 0 {
        return None;
    }
    // Boyer–Moore majority vote per column, in one pass over the rows.
    let (mut candidate, mut votes) = (vec![0.0; cols], vec![0usize; cols]);
    for row in data.chunks_exact(cols) {
        for ((&v, c), n) in row.iter().zip(&mut candidate).zip(&mut votes) {
            if *n == 0 {
                *c = v;
                *n = 1;
            } else if *c == v {
                *n += 1;
            } else {
                *n -= 1;
            }
        }
    }
    // The candidate most columns share (a common background value where a column has no
    // majority, as in the middle of MNIST's images).
    let mut sorted: Vec<f64> = candidate.clone();
    sorted.sort_by(f64::total_cmp);
    let common = sorted.chunk_by(|a, b| a == b).max_by_key(|run| run.len()).map_or(0.0, |run| run[0]);
    // How many entries of each column equal 0, its candidate and the common value.
    let mut count = vec![[0usize; 3]; cols];
    for row in data.chunks_exact(cols) {
        for ((&v, &c), n) in row.iter().zip(&candidate).zip(&mut count) {
            n[0] += (v == 0.0) as usize;
            n[1] += (v == c) as usize;
            n[2] += (v == common) as usize;
        }
    }
    let shift: Vec<f64> = candidate
        .iter()
        .zip(&count)
        .map(|(&c, n)| {
            let best = (0..3).max_by_key(|&k| (n[k], k == 0)).unwrap_or(0);
            [0.0, c, common][best]
        })
        .collect();
    let differing = data.chunks_exact(cols).map(|row| row.iter().zip(&shift).filter(|(v, s)| v != s).count()).sum::<usize>();
    if shift.iter().all(|&s| s == 0.0) || differing as f64 > SPARSE_DENSITY * (rows * cols) as f64 {
        return None;
    }
    let (mut indptr, mut indices, mut values) =
        (Vec::with_capacity(rows + 1), Vec::with_capacity(differing), Vec::with_capacity(differing));
    indptr.push(0u32);
    for row in data.chunks_exact(cols) {
        for (j, (&v, &s)) in row.iter().zip(&shift).enumerate().filter(|(_, (v, s))| v != s) {
            indices.push(j as u32);
            values.push(v - s);
        }
        indptr.push(indices.len() as u32);
    }
    Some((HostMatrix::Csr { rows, cols, indptr, indices, values }, shift))
}

/// Runs `f(first_index, chunk)` over `chunk_len`-sized chunks of `data`, on the rayon pool when
/// `work` is large (natively), else in order on this thread.
pub(crate) fn chunked<T: Send>(data: &mut [T], chunk_len: usize, work: usize, f: impl Fn(usize, &mut [T]) + Sync + Send) {
    split_chunks(data, chunk_len, work >= PARALLEL_WORK, f)
}

/// Runs `f(first_index, chunk)` over `chunk_len`-sized chunks of `data`, on the rayon pool when
/// `parallel` (natively), else in order on this thread.
fn split_chunks<T: Send>(data: &mut [T], chunk_len: usize, parallel: bool, f: impl Fn(usize, &mut [T]) + Sync + Send) {
    let chunk_len = chunk_len.max(1);
    #[cfg(not(target_arch = "wasm32"))]
    if parallel {
        use rayon::prelude::*;
        data.par_chunks_mut(chunk_len).enumerate().for_each(|(i, c)| f(i * chunk_len, c));
        return;
    }
    let _ = parallel;
    data.chunks_mut(chunk_len).enumerate().for_each(|(i, c)| f(i * chunk_len, c));
}

/// Threads of the pool (1 on wasm).
fn threads() -> usize {
    #[cfg(not(target_arch = "wasm32"))]
    return rayon::current_num_threads();
    #[cfg(target_arch = "wasm32")]
    1
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

/// `t ← mᵀ` for a row-major `rows × cols` matrix `m`.
fn transpose_into<T: Real>(m: &[T], rows: usize, cols: usize, t: &mut [T]) {
    for (i, row) in m.chunks_exact(cols).enumerate() {
        for (j, &v) in row.iter().enumerate() {
            t[j * rows + i] = v;
        }
    }
}

/// `out += accᵀ` for a row-major `rows × cols` matrix `acc` (a plain sum when `rows` = 1).
fn add_transposed<T: Real>(acc: &[T], rows: usize, cols: usize, out: &mut [T]) {
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

// ---- the dense kernels, compiled twice on x86-64 ----

/// A multiply-add `a·b + c`: fused (one rounding, one instruction) where the CPU has FMA, plain
/// elsewhere (a fused one without FMA hardware would be a slow library call).
pub(crate) trait MulAdd {
    fn madd<T: Real>(a: T, b: T, c: T) -> T;
}

#[cfg(target_arch = "x86_64")]
pub(crate) struct Fused;
#[cfg(target_arch = "x86_64")]
impl MulAdd for Fused {
    #[inline(always)]
    fn madd<T: Real>(a: T, b: T, c: T) -> T {
        a.mul_add(b, c)
    }
}

pub(crate) struct Plain;
impl MulAdd for Plain {
    #[inline(always)]
    fn madd<T: Real>(a: T, b: T, c: T) -> T {
        a * b + c
    }
}

/// Defines `fn $name<T: Real>(...)` running `$body` compiled for AVX2 + FMA where the CPU has
/// them (checked at run time: the binary stays portable, no `-C target-cpu` needed) and for the
/// baseline target otherwise. In the body, `M` is the [`MulAdd`] to use.
macro_rules! multiversion {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name<T: Real>($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn imp<T: Real, M: MulAdd>($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn wide<T: Real>($($arg: $ty),*) $(-> $ret)? {
                    imp::<T, $crate::cpu::Fused>($($arg),*)
                }
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    // SAFETY: this CPU has the features `wide` is compiled for.
                    return unsafe { wide::<T>($($arg),*) };
                }
            }
            imp::<T, $crate::cpu::Plain>($($arg),*)
        }
    };
}

mod fused;
#[cfg(target_arch = "x86_64")]
mod pair;

multiversion! {
    /// `x · y` with `LANES`-wide accumulators.
    fn dot_kernel(x: &[T], y: &[T]) -> T {
        dot_1x1::<T, M>(x, y)
    }
}

multiversion! {
    /// `Σ x` with `LANES`-wide accumulators.
    pub(crate) fn sum_kernel(x: &[T]) -> T {
        dot_shifted_kernel_body::<T, M, false>(x, x, T::zero())
    }
}

multiversion! {
    /// `Σ a·(b − shift)` with `LANES`-wide accumulators (batch-norm statistics: the shift is a
    /// mean, subtracted before the product so that nothing cancels).
    pub(crate) fn dot_shifted_kernel(a: &[T], b: &[T], shift: T) -> T {
        dot_shifted_kernel_body::<T, M, true>(a, b, shift)
    }
}

/// `Σ a·(b − shift)`, or `Σ a` when not `PRODUCT`, with `LANES` partial sums: a plain fold is
/// one long chain of dependent additions (the compiler may not reassociate them).
#[inline(always)]
fn dot_shifted_kernel_body<T: Real, M: MulAdd, const PRODUCT: bool>(a: &[T], b: &[T], shift: T) -> T {
    let b = &b[..a.len()];
    let term = |x: T, y: T, acc: T| if PRODUCT { M::madd(x, y - shift, acc) } else { acc + x };
    let full = a.len() - a.len() % LANES;
    let mut acc = [T::zero(); LANES];
    for (ca, cb) in a[..full].chunks_exact(LANES).zip(b[..full].chunks_exact(LANES)) {
        for l in 0..LANES {
            acc[l] = term(ca[l], cb[l], acc[l]);
        }
    }
    let lanes = acc.iter().fold(T::zero(), |s, &v| s + v);
    a[full..].iter().zip(&b[full..]).fold(lanes, |s, (&x, &y)| term(x, y, s))
}

/// `Σ_pieces part(range)` over `0..n` cut into fixed pieces (the same cut, hence the same
/// rounding, however many threads run them), on the pool when `parallel` (natively).
fn reduce<T: Real>(n: usize, parallel: bool, part: impl Fn(std::ops::Range<usize>) -> T + Sync + Send) -> T {
    let chunk = n.div_ceil(8).next_multiple_of(LANES).max(LANES);
    #[cfg(not(target_arch = "wasm32"))]
    if parallel {
        use rayon::prelude::*;
        let parts: Vec<T> = (0..n.div_ceil(chunk)).into_par_iter().map(|t| part(t * chunk..((t + 1) * chunk).min(n))).collect();
        return parts.iter().fold(T::zero(), |s, &p| s + p);
    }
    let _ = parallel;
    (0..n.div_ceil(chunk)).fold(T::zero(), |s, t| s + part(t * chunk..((t + 1) * chunk).min(n)))
}

/// `x` as `f32`s when `T` is `f32` (for the hand-vectorised f32 kernels).
#[cfg(target_arch = "x86_64")]
pub(crate) fn as_f32<T: Real>(x: &[T]) -> Option<&[f32]> {
    // SAFETY: T is f32: the same type.
    use std::any::TypeId;
    (TypeId::of::<T>() == TypeId::of::<f32>()).then(|| unsafe { std::slice::from_raw_parts(x.as_ptr().cast::<f32>(), x.len()) })
}

#[cfg(target_arch = "x86_64")]
pub(crate) fn as_f32_mut<T: Real>(x: &mut [T]) -> Option<&mut [f32]> {
    // SAFETY: T is f32: the same type.
    use std::any::TypeId;
    (TypeId::of::<T>() == TypeId::of::<f32>()).then(|| unsafe { std::slice::from_raw_parts_mut(x.as_mut_ptr().cast::<f32>(), x.len()) })
}

/// The f32 dot-product kernel of the dense products, written with AVX2 + FMA intrinsics: the
/// auto-vectoriser does not keep a block of accumulators in registers reliably.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{row_of, Rows};

    /// Whether this CPU has AVX2 and FMA (detected once, then cached by std).
    pub fn available() -> bool {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }

    /// The sum of a register's 8 lanes.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps(s, s, 1)))
    }

    /// `[x0, x1] · w[k]` for K columns of equal length: 2K accumulators in registers, each
    /// load of w serving two rows.
    ///
    /// Safety: the CPU has AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn dots<const K: usize>(x0: &[f32], x1: &[f32], w: [&[f32]; K]) -> [[f32; K]; 2] {
        let d = x0.len();
        assert!(x1.len() == d && w.iter().all(|wk| wk.len() == d), "dots: length mismatch");
        let full = d - d % 8;
        let (mut a0, mut a1) = ([_mm256_setzero_ps(); K], [_mm256_setzero_ps(); K]);
        let mut j = 0;
        while j < full {
            // SAFETY: j + 8 ≤ d, the length of every slice.
            let (xa, xb) = unsafe { (_mm256_loadu_ps(x0.as_ptr().add(j)), _mm256_loadu_ps(x1.as_ptr().add(j))) };
            for k in 0..K {
                let wk = unsafe { _mm256_loadu_ps(w[k].as_ptr().add(j)) };
                a0[k] = _mm256_fmadd_ps(xa, wk, a0[k]);
                a1[k] = _mm256_fmadd_ps(xb, wk, a1[k]);
            }
            j += 8;
        }
        // The last d mod 8 entries through masked loads (which never touch the masked-off lanes):
        // one more step instead of a scalar chain (ijcnn1's rows are 22 long).
        if full < d {
            let mask = _mm256_cmpgt_epi32(_mm256_set1_epi32((d - full) as i32), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
            // SAFETY: only the lanes below d − full are read, all inside the slices.
            let (xa, xb) = unsafe { (_mm256_maskload_ps(x0.as_ptr().add(full), mask), _mm256_maskload_ps(x1.as_ptr().add(full), mask)) };
            for k in 0..K {
                let wk = unsafe { _mm256_maskload_ps(w[k].as_ptr().add(full), mask) };
                a0[k] = _mm256_fmadd_ps(xa, wk, a0[k]);
                a1[k] = _mm256_fmadd_ps(xb, wk, a1[k]);
            }
        }
        let mut out = [[0.0; K]; 2];
        for k in 0..K {
            out[0][k] = hsum(a0[k]);
            out[1][k] = hsum(a1[k]);
        }
        out
    }

    /// `Z[i, k] = X[row_{first+i}, :] · Wᵀ[k, :]` for the rows of `z` (`b' × c`), dense X (`· × d`).
    ///
    /// Safety: the CPU has AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dense_dots(data: &[f32], d: usize, rows: Rows<'_, Vec<u32>>, first: usize, wt: &[f32], c: usize, z: &mut [f32]) {
        let x = |i: usize| {
            let r = row_of(rows, first + i);
            &data[r * d..(r + 1) * d]
        };
        let w = |k: usize| &wt[k * d..(k + 1) * d];
        let n = z.len() / c;
        for i in (0..n).step_by(2) {
            // Batch rows are scattered through X: fetch the pair after next while this one is
            // computed (the hardware prefetcher cannot guess them).
            for ahead in (i + 4..n).take(2) {
                let r = row_of(rows, first + ahead);
                super::prefetch(&data[r * d..(r + 1) * d]);
            }
            // An odd last row is paired with itself (its second result is dropped).
            let two = i + 1 < n;
            let (x0, x1) = (x(i), x(if two { i + 1 } else { i }));
            let mut k = 0;
            while k < c {
                let mut put = |s: &[[f32; 4]; 2], len: usize| {
                    z[i * c + k..i * c + k + len].copy_from_slice(&s[0][..len]);
                    if two {
                        z[(i + 1) * c + k..(i + 1) * c + k + len].copy_from_slice(&s[1][..len]);
                    }
                };
                let len = (c - k).min(4);
                // SAFETY (all three): this function's own precondition.
                let s = match len {
                    4 => unsafe { dots::<4>(x0, x1, [w(k), w(k + 1), w(k + 2), w(k + 3)]) },
                    2 | 3 => {
                        let s = unsafe { dots::<2>(x0, x1, [w(k), w(k + 1)]) };
                        [[s[0][0], s[0][1], 0.0, 0.0], [s[1][0], s[1][1], 0.0, 0.0]]
                    }
                    _ => {
                        let s = unsafe { dots::<1>(x0, x1, [w(k)]) };
                        [[s[0][0], 0.0, 0.0, 0.0], [s[1][0], 0.0, 0.0, 0.0]]
                    }
                };
                let len = len.min(if len == 3 { 2 } else { 4 });
                put(&s, len);
                k += len;
            }
        }
    }
}

/// Asks the CPU to fetch the start of `x` (at most 512 bytes; the hardware prefetcher follows
/// a longer row once it is read) into cache. Only a hint: nothing else changes.
#[inline]
fn prefetch<T>(x: &[T]) {
    prefetch_bytes(x, 512)
}

/// Asks the CPU to fetch the cache lines of the first `max` bytes of `x` (a hint only).
#[inline]
fn prefetch_bytes<T>(x: &[T], max: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let bytes = std::mem::size_of_val(x).min(max);
        if bytes == 0 {
            return;
        }
        // Every cache line from the first byte's to the last one's (an 88-byte row that starts
        // late in a line touches three).
        // A plain loop: an inclusive stepped range compiled to a dozen instructions a line,
        // which on MNIST's 1.2 KB rows cost as much as a tenth of the products.
        let start = x.as_ptr().cast::<i8>();
        let (mut line, last) = (start as usize & !63, start as usize + bytes - 1);
        while line <= last {
            // SAFETY: a prefetch never faults; the address is within the lines x touches.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(start.wrapping_add(line.wrapping_sub(start as usize))) };
            line += 64;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (x, max);
}

/// `y += a·x` in `LANES`-wide steps, then a 4-wide one, then single elements (for the short
/// rows of c entries the sparse kernels add: c = 20 is two full steps and one half step).
#[inline(always)]
fn axpy_lanes<T: Real, M: MulAdd>(a: T, x: &[T], y: &mut [T]) {
    let n = y.len();
    let x = &x[..n];
    let mut j = 0;
    while j + LANES <= n {
        let (xj, yj) = (&x[j..j + LANES], &mut y[j..j + LANES]);
        for l in 0..LANES {
            yj[l] = M::madd(a, xj[l], yj[l]);
        }
        j += LANES;
    }
    if j + 4 <= n {
        let (xj, yj) = (&x[j..j + 4], &mut y[j..j + 4]);
        for l in 0..4 {
            yj[l] = M::madd(a, xj[l], yj[l]);
        }
        j += 4;
    }
    for (yv, &xv) in y[j..].iter_mut().zip(&x[j..]) {
        *yv = M::madd(a, xv, *yv);
    }
}

multiversion! {
    /// `Z[i, :] += Σ_j X[i, j] W[j, :]` over the features `j0..j1`, from the CSC (all rows).
    fn csc_matmul(colptr: &[u32], rowidx: &[u32], values: &[T], j0: usize, j1: usize, w: &[T], c: usize, z: &mut [T]) {
        for j in j0..j1 {
            let wj = &w[j * c..(j + 1) * c];
            let span = colptr[j] as usize..colptr[j + 1] as usize;
            for (&i, &xv) in rowidx[span.clone()].iter().zip(&values[span]) {
                let i = i as usize;
                axpy_lanes::<T, M>(xv, wj, &mut z[i * c..(i + 1) * c]);
            }
        }
    }
}

multiversion! {
    /// `out[j, :] += scale · Σ_i X[i, j] E[i, :]` for the feature rows `j0..` that `out` holds,
    /// from the CSC (all rows).
    fn csc_tmatmul(colptr: &[u32], rowidx: &[u32], values: &[T], j0: usize, e: &[T], c: usize, scale: T, out: &mut [T]) {
        for (jj, oj) in out.chunks_exact_mut(c).enumerate() {
            let span = colptr[j0 + jj] as usize..colptr[j0 + jj + 1] as usize;
            for (&i, &xv) in rowidx[span.clone()].iter().zip(&values[span]) {
                let i = i as usize;
                axpy_lanes::<T, M>(scale * xv, &e[i * c..(i + 1) * c], oj);
            }
        }
    }
}

multiversion! {
    /// `Z[k, :] = X[row_{first+k}, :] · W` for the rows of `z`, from the CSR.
    fn csr_matmul(indptr: &[u32], indices: &[u32], values: &[T], rows: Rows<'_, Vec<u32>>, first: usize, w: &[T], c: usize, z: &mut [T]) {
        // The class counts of the real problems get a copy with c known at compile time, which
        // keeps a row's sums in registers (through memory, each entry would wait on the last).
        // W's rows are fetched ahead only when W is too large to stay in cache (20 Newsgroups).
        let far = std::mem::size_of_val(w) > FAR_BYTES;
        match (c, far) {
            (1, _) => csr_rows::<T, M, 1, false>(indptr, indices, values, rows, first, w, z),
            (10, false) => csr_rows::<T, M, 10, false>(indptr, indices, values, rows, first, w, z),
            (10, true) => csr_rows::<T, M, 10, true>(indptr, indices, values, rows, first, w, z),
            (20, false) => csr_rows::<T, M, 20, false>(indptr, indices, values, rows, first, w, z),
            (20, true) => csr_rows::<T, M, 20, true>(indptr, indices, values, rows, first, w, z),
            _ => {
                for (k, zk) in z.chunks_exact_mut(c).enumerate() {
                    let row = row_of(rows, first + k);
                    let span = indptr[row] as usize..indptr[row + 1] as usize;
                    zk.fill(T::zero());
                    for (&j, &xv) in indices[span.clone()].iter().zip(&values[span]) {
                        let j = j as usize;
                        axpy_lanes::<T, M>(xv, &w[j * c..(j + 1) * c], zk);
                    }
                }
            }
        }
    }
}

/// Above this size a W is assumed to miss cache when its rows are read at random.
const FAR_BYTES: usize = 1 << 18;

/// Fetches the start of a CSR row (its column indices and values): a mini-batch's rows are read
/// at random, so the hardware cannot guess them, and each would otherwise start with a miss.
#[inline(always)]
fn prefetch_csr_row<T>(indptr: &[u32], indices: &[u32], values: &[T], row: usize) {
    let span = indptr[row] as usize..indptr[row + 1] as usize;
    prefetch(&indices[span.clone()]);
    prefetch(&values[span]);
}

/// [`csr_matmul`] for `C` classes: two sets of `C` accumulators (alternate entries), so that
/// consecutive fused multiply-adds do not wait on each other; W's rows, read in the columns'
/// random order, fetched a few entries ahead.
#[inline(always)]
fn csr_rows<T: Real, M: MulAdd, const C: usize, const FETCH_W: bool>(
    indptr: &[u32],
    indices: &[u32],
    values: &[T],
    rows: Rows<'_, Vec<u32>>,
    first: usize,
    w: &[T],
    z: &mut [T],
) {
    const AHEAD: usize = 8;
    let batch = z.len() / C;
    for (k, zk) in z.chunks_exact_mut(C).enumerate() {
        if k + 1 < batch {
            prefetch_csr_row(indptr, indices, values, row_of(rows, first + k + 1));
        }
        let row = row_of(rows, first + k);
        let span = indptr[row] as usize..indptr[row + 1] as usize;
        let (cols, vals) = (&indices[span.clone()], &values[span]);
        let (mut a0, mut a1) = ([T::zero(); C], [T::zero(); C]);
        let w_row = |j: u32| -> &[T; C] { w[j as usize * C..][..C].try_into().expect("C entries") };
        let mut p = 0;
        while p + 2 <= cols.len() {
            if let (true, Some(&next)) = (FETCH_W, cols.get(p + AHEAD)) {
                prefetch(&w[next as usize * C..][..C]);
            }
            let (w0, w1) = (w_row(cols[p]), w_row(cols[p + 1]));
            let (x0, x1) = (vals[p], vals[p + 1]);
            for l in 0..C {
                a0[l] = M::madd(x0, w0[l], a0[l]);
                a1[l] = M::madd(x1, w1[l], a1[l]);
            }
            p += 2;
        }
        if p < cols.len() {
            let w0 = w_row(cols[p]);
            for l in 0..C {
                a0[l] = M::madd(vals[p], w0[l], a0[l]);
            }
        }
        for l in 0..C {
            zk[l] = a0[l] + a1[l];
        }
    }
}

multiversion! {
    /// `out[j − j0, :] += scale · X[row_{first+k}, j] · E[k, :]` for the rows of `e` and the
    /// features `j0..j1` (those `out` holds), from the CSR.
    fn csr_scatter(
        indptr: &[u32],
        indices: &[u32],
        values: &[T],
        rows: Rows<'_, Vec<u32>>,
        first: usize,
        e: &[T],
        c: usize,
        scale: T,
        j0: usize,
        j1: usize,
        out: &mut [T],
    ) {
        // As in csr_matmul, the real problems' class counts get a copy with c known at compile
        // time (E's row then stays in registers across the row's entries).
        match c {
            1 => csr_scatter_rows::<T, M, 1>(indptr, indices, values, rows, first, e, scale, j0, j1, out),
            10 => csr_scatter_rows::<T, M, 10>(indptr, indices, values, rows, first, e, scale, j0, j1, out),
            20 => csr_scatter_rows::<T, M, 20>(indptr, indices, values, rows, first, e, scale, j0, j1, out),
            _ => {
                for (k, ek) in e.chunks_exact(c).enumerate() {
                    let row = row_of(rows, first + k);
                    let span = indptr[row] as usize..indptr[row + 1] as usize;
                    for (&j, &xv) in indices[span.clone()].iter().zip(&values[span]) {
                        let j = j as usize;
                        if (j0..j1).contains(&j) {
                            let o = (j - j0) * c;
                            axpy_lanes::<T, M>(scale * xv, ek, &mut out[o..o + c]);
                        }
                    }
                }
            }
        }
    }
}

/// [`csr_scatter`] for `C` classes, the next batch row fetched while this one is added.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn csr_scatter_rows<T: Real, M: MulAdd, const C: usize>(
    indptr: &[u32],
    indices: &[u32],
    values: &[T],
    rows: Rows<'_, Vec<u32>>,
    first: usize,
    e: &[T],
    scale: T,
    j0: usize,
    j1: usize,
    out: &mut [T],
) {
    let batch = e.len() / C;
    for (k, ek) in e.chunks_exact(C).enumerate() {
        if k + 1 < batch {
            prefetch_csr_row(indptr, indices, values, row_of(rows, first + k + 1));
        }
        let ek: [T; C] = std::array::from_fn(|l| scale * ek[l]);
        let row = row_of(rows, first + k);
        let span = indptr[row] as usize..indptr[row + 1] as usize;
        for (&j, &xv) in indices[span.clone()].iter().zip(&values[span]) {
            let j = j as usize;
            if (j0..j1).contains(&j) {
                let o: &mut [T; C] = (&mut out[(j - j0) * C..][..C]).try_into().expect("C entries");
                for l in 0..C {
                    o[l] = M::madd(xv, ek[l], o[l]);
                }
            }
        }
    }
}

/// SIMD lanes of the dense kernels' accumulators (one AVX2 register of f32).
const LANES: usize = 8;
/// Batch rows the dense kernels take together (each load of W or of an accumulator serves
/// that many rows).
const ROW_BLOCK: usize = 4;

/// `acc += x ∘ w` lane by lane (one vector multiply-add once compiled).
#[inline(always)]
fn lane_madd<T: Real, M: MulAdd>(x: &[T], w: &[T], acc: &mut [T; LANES]) {
    let (x, w) = (&x[..LANES], &w[..LANES]);
    for l in 0..LANES {
        acc[l] = M::madd(x[l], w[l], acc[l]);
    }
}

/// The 2 × 4 dot products `xs[r] · ws[k]` of equal-length slices: each of the 6 loads per
/// step feeds several multiply-adds, and the 8 accumulators stay in registers (they are named
/// one by one: loops over them are not unrolled reliably).
#[inline(always)]
fn dots_2x4<T: Real, M: MulAdd>(xs: [&[T]; 2], ws: [&[T]; 4]) -> [[T; 4]; 2] {
    let d = xs[0].len();
    let ([x0, x1], [w0, w1, w2, w3]) = (xs.map(|x| &x[..d]), ws.map(|w| &w[..d]));
    let full = d - d % LANES;
    let z = [T::zero(); LANES];
    let (mut a00, mut a01, mut a02, mut a03, mut a10, mut a11, mut a12, mut a13) = (z, z, z, z, z, z, z, z);
    for j in (0..full).step_by(LANES) {
        let (x0, x1) = (&x0[j..], &x1[j..]);
        let (w0, w1, w2, w3) = (&w0[j..], &w1[j..], &w2[j..], &w3[j..]);
        lane_madd::<T, M>(x0, w0, &mut a00);
        lane_madd::<T, M>(x0, w1, &mut a01);
        lane_madd::<T, M>(x0, w2, &mut a02);
        lane_madd::<T, M>(x0, w3, &mut a03);
        lane_madd::<T, M>(x1, w0, &mut a10);
        lane_madd::<T, M>(x1, w1, &mut a11);
        lane_madd::<T, M>(x1, w2, &mut a12);
        lane_madd::<T, M>(x1, w3, &mut a13);
    }
    let lanes = |acc: [T; LANES]| acc.iter().fold(T::zero(), |s, &a| s + a);
    let mut out = [[lanes(a00), lanes(a01), lanes(a02), lanes(a03)], [lanes(a10), lanes(a11), lanes(a12), lanes(a13)]];
    // The tails (d not a multiple of LANES) after the main loop: kept out of it, they stop
    // LLVM from vectorising the accumulators.
    for (r, x) in [x0, x1].into_iter().enumerate() {
        for (k, w) in [w0, w1, w2, w3].into_iter().enumerate() {
            out[r][k] = out[r][k] + tail_dot::<T, M>(&x[full..], &w[full..]);
        }
    }
    out
}

/// `x · w` one element at a time (a kernel's tail).
#[inline(always)]
fn tail_dot<T: Real, M: MulAdd>(x: &[T], w: &[T]) -> T {
    x.iter().zip(w).fold(T::zero(), |s, (&a, &b)| M::madd(a, b, s))
}

/// One dot product `x · w` with `LANES`-wide accumulators.
#[inline(always)]
fn dot_1x1<T: Real, M: MulAdd>(x: &[T], w: &[T]) -> T {
    let d = x.len();
    let (x, w) = (&x[..d], &w[..d]);
    let full = d - d % LANES;
    let mut acc = [T::zero(); LANES];
    for j in (0..full).step_by(LANES) {
        lane_madd::<T, M>(&x[j..], &w[j..], &mut acc);
    }
    acc.iter().fold(T::zero(), |s, &a| s + a) + tail_dot::<T, M>(&x[full..], &w[full..])
}

/// `y += Σ_r a[r]·xs[r]` over equal-length slices.
#[inline(always)]
fn axpys<T: Real, M: MulAdd, const R: usize>(a: [T; R], xs: [&[T]; R], y: &mut [T]) {
    let d = y.len();
    let xs = xs.map(|x| &x[..d]);
    for (j, yj) in y.iter_mut().enumerate() {
        let mut v = *yj;
        for r in 0..R {
            v = M::madd(a[r], xs[r][j], v);
        }
        *yj = v;
    }
}

multiversion! {
    /// `Z[i, k] = X[row_{first+i}, :] · Wᵀ[k, :]` for the rows of `z` (`b' × c`), dense X (`· × d`).
    fn dense_dots(data: &[T], d: usize, rows: Rows<'_, Vec<u32>>, first: usize, wt: &[T], c: usize, z: &mut [T]) {
        let x = |i: usize| {
            let r = row_of(rows, first + i);
            &data[r * d..(r + 1) * d]
        };
        let w = |k: usize| &wt[k * d..(k + 1) * d];
        let n = z.len() / c;
        // Two rows against four classes at a time; single dot products for what is left.
        let (pairs, quads) = (n / 2 * 2, c / 4 * 4);
        for i in (0..pairs).step_by(2) {
            for k in (0..quads).step_by(4) {
                let s = dots_2x4::<T, M>([x(i), x(i + 1)], [w(k), w(k + 1), w(k + 2), w(k + 3)]);
                z[i * c + k..i * c + k + 4].copy_from_slice(&s[0]);
                z[(i + 1) * c + k..(i + 1) * c + k + 4].copy_from_slice(&s[1]);
            }
        }
        for i in 0..n {
            let ks = if i < pairs { quads..c } else { 0..c };
            for k in ks {
                z[i * c + k] = dot_1x1::<T, M>(x(i), w(k));
            }
        }
    }
}

multiversion! {
    /// `acc[k, :] += scale · Σ_i e[i, k] · X[row_{first+i}, :]` for the rows of `e` (`b' × c`):
    /// `(scale · X_Bᵀ E)ᵀ` accumulated into a `c × d` buffer.
    fn dense_scatter(data: &[T], d: usize, rows: Rows<'_, Vec<u32>>, first: usize, e: &[T], c: usize, scale: T, acc: &mut [T]) {
        let x = |i: usize| {
            let r = row_of(rows, first + i);
            &data[r * d..(r + 1) * d]
        };
        let n = e.len() / c;
        let mut i = 0;
        while i + ROW_BLOCK <= n {
            let xs = [x(i), x(i + 1), x(i + 2), x(i + 3)];
            for (k, acc_k) in acc.chunks_exact_mut(d).enumerate() {
                let a = [0, 1, 2, 3].map(|r| scale * e[(i + r) * c + k]);
                axpys::<T, M, 4>(a, xs, acc_k);
            }
            i += ROW_BLOCK;
        }
        for i in i..n {
            for (k, acc_k) in acc.chunks_exact_mut(d).enumerate() {
                axpys::<T, M, 1>([scale * e[i * c + k]], [x(i)], acc_k);
            }
        }
    }
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
    residual_and_loss(kind, z, t, r, true)
}

/// `ℓ'(z)` into `r`, and `ℓ(z)` returned when `want_loss` (else 0).
#[inline(always)]
fn residual_and_loss<T: Real>(kind: LossKind, z: &[T], t: T, r: &mut [T], want_loss: bool) -> T {
    match kind {
        LossKind::Squared => {
            r[0] = z[0] - t;
            to_t::<T>(0.5) * r[0] * r[0]
        }
        LossKind::Logistic => {
            r[0] = sigmoid(z[0]) - t;
            // softplus(z) − t z, stable for large |z|.
            if want_loss {
                z[0].max(T::zero()) + (-z[0].abs()).exp().ln_1p() - t * z[0]
            } else {
                T::zero()
            }
        }
        LossKind::Softmax => {
            let m = z.iter().fold(T::neg_infinity(), |a, &b| a.max(b));
            // e^{z−m} once per entry, kept in r until the sum is known.
            let mut sum = T::zero();
            for (rv, &zv) in r.iter_mut().zip(z) {
                *rv = (zv - m).exp();
                sum = sum + *rv;
            }
            let label = t.to_usize().unwrap_or(usize::MAX);
            for (kk, rv) in r.iter_mut().enumerate() {
                *rv = *rv / sum - if kk == label { T::one() } else { T::zero() };
            }
            if want_loss {
                m + sum.ln() - z.get(label).copied().unwrap_or(T::nan())
            } else {
                T::zero()
            }
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
            // P = softmax(z) (e^{z−max} once per entry, kept in m), then M = P∘(U − ⟨P, U⟩1).
            let mx = z.iter().fold(T::neg_infinity(), |a, &b| a.max(b));
            let mut sum = T::zero();
            for (mv, &zv) in m.iter_mut().zip(z) {
                *mv = (zv - mx).exp();
                sum = sum + *mv;
            }
            m.iter_mut().for_each(|mv| *mv = *mv / sum);
            let pu = m.iter().zip(u).fold(T::zero(), |a, (&p, &uv)| a + p * uv);
            for (mv, &uv) in m.iter_mut().zip(u) {
                *mv = *mv * (uv - pu);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The split column halves the non-zeros, and each row's split position is where its
    /// columns reach it; rows out of order get no split.
    #[test]
    fn halving_column_splits_the_non_zeros_in_half() {
        // Rows: {0, 1, 5}, {2}, {}, {3, 4, 5, 6}, {1, 6}: 10 entries over 7 columns.
        let indptr = [0, 3, 4, 4, 8, 10];
        let indices = [0, 1, 5, 2, 3, 4, 5, 6, 1, 6];
        let split = halving_column(7, &indptr, &indices).expect("ascending rows");
        let below = indices.iter().filter(|&&j| j < split.col).count();
        // Column 4 is the first with more than half (5) of the entries up to and including it.
        assert_eq!((split.col, below), (4, 5));
        assert_eq!(split.at, vec![2, 4, 4, 5, 9]);
        for (r, w) in indptr.windows(2).enumerate() {
            let at = split.at[r] as usize;
            assert!(indices[w[0] as usize..at].iter().all(|&j| j < split.col));
            assert!(indices[at..w[1] as usize].iter().all(|&j| j >= split.col));
        }
        assert!(halving_column(7, &[0, 2], &[3, 1]).is_none(), "descending row");
        assert!(halving_column(7, &[0, 2], &[3, 3]).is_none(), "repeated column");
        assert!(halving_column(1, &[0, 1], &[0]).is_none(), "one column");
    }
}
