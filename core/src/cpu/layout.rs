//! How the CPU backend stores a data matrix: dense rows (with MNIST's shifted-sparse batch
//! form), CSR (with its CSC for full passes), and the column that halves a CSR's non-zeros for
//! the two-thread split.

use super::*;

/// A resident data matrix of the CPU backend. Opaque, because the kernels index its rows
/// without bounds checks: only the backend builds one (from a checked [`HostMatrix`]), and
/// nothing outside changes it.
pub struct CpuMatrix<T>(pub(super) Layout<T>);

impl<T: Real> CpuMatrix<T> {
    /// Rows (samples).
    pub fn rows(&self) -> usize {
        self.0.rows()
    }
    /// Columns (features).
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
    pub(super) fn for_rows(&self, rows: Rows<'_, Vec<u32>>) -> &Layout<T> {
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
    pub(super) indptr: [u32; 2],
    pub(super) indices: Vec<u32>,
    pub(super) values: Vec<T>,
}

impl<T> Shift<T> {
    /// The one-row CSR's arrays, for the kernels.
    pub(super) fn lines(&self) -> Compressed<'_, T> {
        Compressed { ptr: &self.indptr, idx: &self.indices, values: &self.values }
    }
}

/// Compressed sparse columns: column j's entries are `rowidx[colptr[j]..colptr[j + 1]]`.
pub struct Csc<T> {
    pub(super) colptr: Vec<u32>,
    pub(super) rowidx: Vec<u32>,
    pub(super) values: Vec<T>,
}

impl<T> Csc<T> {
    /// The columns' arrays, for the kernels.
    pub(super) fn lines(&self) -> Compressed<'_, T> {
        Compressed { ptr: &self.colptr, idx: &self.rowidx, values: &self.values }
    }
}

impl<T: Real> Layout<T> {
    pub(super) fn rows(&self) -> usize {
        match self {
            Layout::Dense { rows, .. } | Layout::Csr { rows, .. } => *rows,
        }
    }
    pub(super) fn cols(&self) -> usize {
        match self {
            Layout::Dense { cols, .. } | Layout::Csr { cols, .. } => *cols,
        }
    }
    /// Average stored entries per row (the work of one row's product).
    pub(super) fn row_nnz_estimate(&self) -> usize {
        match self {
            Layout::Dense { cols, .. } => *cols,
            Layout::Csr { rows, values, .. } => values.len() / (*rows).max(1) + 1,
        }
    }

    pub(super) fn for_rows(&self, rows: Rows<'_, Vec<u32>>) -> &Layout<T> {
        match (self, rows) {
            (Layout::Dense { batch_form: Some(sparse), .. }, Rows::Batch(_)) => sparse,
            _ => self,
        }
    }

    pub(super) fn batch_len(&self, rows: Rows<'_, Vec<u32>>) -> usize {
        match rows {
            Rows::All => self.rows(),
            Rows::Batch(idx) => idx.len(),
        }
    }
}

/// A CSR matrix on the CPU (with its CSC when asked for).
pub(super) fn csr_matrix<T: Real>(m: &HostMatrix, with_csc: bool, shift: Option<Vec<f64>>) -> Layout<T> {
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
pub(super) fn halving_column(cols: usize, indptr: &[u32], indices: &[u32]) -> Option<Split> {
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
