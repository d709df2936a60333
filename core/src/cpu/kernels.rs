//! The data-product and BLAS-1 kernels: dot products and sums with lane-wide accumulators, the
//! dense `X_B W` and `X_Bᵀ E` blocks (with their AVX2 intrinsics for f32), the CSR and CSC
//! row and column kernels with their prefetches. Each is compiled for the baseline target and
//! for AVX2 + FMA ([`multiversion!`]), picked at run time.

use std::ops::Range;

use super::*;

multiversion! {
    /// `x · y` with `LANES`-wide accumulators.
    pub(super) fn dot_kernel(x: &[T], y: &[T]) -> T {
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
pub(super) fn dot_shifted_kernel_body<T: Real, M: MulAdd, const PRODUCT: bool>(a: &[T], b: &[T], shift: T) -> T {
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
pub(super) mod avx2 {
    use std::arch::x86_64::*;

    use super::BatchRows;

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

    /// `Z[i, k] = X[rows.row(i), :] · Wᵀ[k, :]` for the rows of `z` (`b' × c`), dense X (`· × d`).
    ///
    /// Safety: the CPU has AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dense_dots(data: &[f32], d: usize, rows: BatchRows<'_>, wt: &[f32], c: usize, z: &mut [f32]) {
        let x = |i: usize| {
            let r = rows.row(i);
            &data[r * d..(r + 1) * d]
        };
        let w = |k: usize| &wt[k * d..(k + 1) * d];
        let n = z.len() / c;
        for i in (0..n).step_by(2) {
            // Batch rows are scattered through X: fetch the pair after next while this one is
            // computed (the hardware prefetcher cannot guess them).
            for ahead in (i + 4..n).take(2) {
                let r = rows.row(ahead);
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
pub(super) fn prefetch<T>(x: &[T]) {
    prefetch_bytes(x, 512)
}

/// Asks the CPU to fetch the cache lines of the first `max` bytes of `x` (a hint only).
#[inline]
pub(super) fn prefetch_bytes<T>(x: &[T], max: usize) {
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
pub(super) fn axpy_lanes<T: Real, M: MulAdd>(a: T, x: &[T], y: &mut [T]) {
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
    /// `Z[i, :] += Σ_j X[i, j] W[j, :]` over the features `cols`, from the CSC (all rows).
    pub(super) fn csc_matmul(x: Compressed<'_, T>, cols: Range<usize>, w: &[T], c: usize, z: &mut [T]) {
        for j in cols {
            let wj = &w[j * c..(j + 1) * c];
            let (rowidx, values) = x.line(j);
            for (&i, &xv) in rowidx.iter().zip(values) {
                let i = i as usize;
                axpy_lanes::<T, M>(xv, wj, &mut z[i * c..(i + 1) * c]);
            }
        }
    }
}

multiversion! {
    /// `out[j, :] += scale · Σ_i X[i, j] E[i, :]` for the feature rows `j0..` that `out` holds,
    /// from the CSC (all rows).
    pub(super) fn csc_tmatmul(x: Compressed<'_, T>, j0: usize, e: &[T], c: usize, scale: T, out: &mut [T]) {
        for (jj, oj) in out.chunks_exact_mut(c).enumerate() {
            let (rowidx, values) = x.line(j0 + jj);
            for (&i, &xv) in rowidx.iter().zip(values) {
                let i = i as usize;
                axpy_lanes::<T, M>(scale * xv, &e[i * c..(i + 1) * c], oj);
            }
        }
    }
}

multiversion! {
    /// `Z[k, :] = X[rows.row(k), :] · W` for the rows of `z`, from the CSR.
    pub(super) fn csr_matmul(x: Compressed<'_, T>, rows: BatchRows<'_>, w: &[T], c: usize, z: &mut [T]) {
        // The class counts of the real problems get a copy with c known at compile time, which
        // keeps a row's sums in registers (through memory, each entry would wait on the last).
        // W's rows are fetched ahead only when W is too large to stay in cache (20 Newsgroups).
        let far = std::mem::size_of_val(w) > FAR_BYTES;
        match (c, far) {
            (1, _) => csr_rows::<T, M, 1, false>(x, rows, w, z),
            (10, false) => csr_rows::<T, M, 10, false>(x, rows, w, z),
            (10, true) => csr_rows::<T, M, 10, true>(x, rows, w, z),
            (20, false) => csr_rows::<T, M, 20, false>(x, rows, w, z),
            (20, true) => csr_rows::<T, M, 20, true>(x, rows, w, z),
            _ => {
                for (k, zk) in z.chunks_exact_mut(c).enumerate() {
                    let (cols, vals) = x.line(rows.row(k));
                    zk.fill(T::zero());
                    for (&j, &xv) in cols.iter().zip(vals) {
                        let j = j as usize;
                        axpy_lanes::<T, M>(xv, &w[j * c..(j + 1) * c], zk);
                    }
                }
            }
        }
    }
}

/// Above this size a W is assumed to miss cache when its rows are read at random.
pub(super) const FAR_BYTES: usize = 1 << 18;

/// A compressed sparse matrix's arrays, borrowed: line `i`'s entries (a row of a CSR, a column
/// of a CSC) are `idx[ptr[i]..ptr[i + 1]]` (the other coordinate) with the same range of
/// `values`. The kernels take one of these instead of three slices.
#[derive(Clone, Copy)]
pub(super) struct Compressed<'a, T> {
    pub(super) ptr: &'a [u32],
    pub(super) idx: &'a [u32],
    pub(super) values: &'a [T],
}

impl<'a, T> Compressed<'a, T> {
    /// Line `i`'s range in `idx` and `values`.
    #[inline(always)]
    pub(super) fn span(&self, i: usize) -> Range<usize> {
        self.ptr[i] as usize..self.ptr[i + 1] as usize
    }

    /// Line `i`'s indices and values.
    #[inline(always)]
    pub(super) fn line(&self, i: usize) -> (&'a [u32], &'a [T]) {
        let span = self.span(i);
        (&self.idx[span.clone()], &self.values[span])
    }

    /// Fetches the start of line `i` (its indices and values): a mini-batch's rows are read at
    /// random, so the hardware cannot guess them, and each would otherwise start with a miss.
    #[inline(always)]
    pub(super) fn prefetch(&self, i: usize) {
        let (idx, values) = self.line(i);
        prefetch(idx);
        prefetch(values);
    }
}

/// The batch rows a kernel call covers: its `k`-th is the draw's row `first + k`, that is X's
/// row [`BatchRows::row`]`(k)` (a thread's share of a batch starts at its `first`).
#[derive(Clone, Copy)]
pub(super) struct BatchRows<'a> {
    pub(super) rows: Rows<'a, Vec<u32>>,
    pub(super) first: usize,
}

impl BatchRows<'_> {
    /// The call's `k`-th row of X.
    #[inline(always)]
    pub(super) fn row(&self, k: usize) -> usize {
        row_of(self.rows, self.first + k)
    }
}

/// [`csr_matmul`] for `C` classes: two sets of `C` accumulators (alternate entries), so that
/// consecutive fused multiply-adds do not wait on each other; W's rows, read in the columns'
/// random order, fetched a few entries ahead.
#[inline(always)]
pub(super) fn csr_rows<T: Real, M: MulAdd, const C: usize, const FETCH_W: bool>(
    x: Compressed<'_, T>,
    rows: BatchRows<'_>,
    w: &[T],
    z: &mut [T],
) {
    const AHEAD: usize = 8;
    let batch = z.len() / C;
    for (k, zk) in z.chunks_exact_mut(C).enumerate() {
        if k + 1 < batch {
            x.prefetch(rows.row(k + 1));
        }
        let (cols, vals) = x.line(rows.row(k));
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
    /// `out[j − cols.start, :] += scale · X[rows.row(k), j] · E[k, :]` for the rows of `e` and
    /// the features `cols` (those `out` holds), from the CSR.
    pub(super) fn csr_scatter(x: Compressed<'_, T>, rows: BatchRows<'_>, e: &[T], c: usize, scale: T, cols: Range<usize>, out: &mut [T]) {
        // As in csr_matmul, the real problems' class counts get a copy with c known at compile
        // time (E's row then stays in registers across the row's entries).
        match c {
            1 => csr_scatter_rows::<T, M, 1>(x, rows, e, scale, cols, out),
            10 => csr_scatter_rows::<T, M, 10>(x, rows, e, scale, cols, out),
            20 => csr_scatter_rows::<T, M, 20>(x, rows, e, scale, cols, out),
            _ => {
                for (k, ek) in e.chunks_exact(c).enumerate() {
                    let (idx, vals) = x.line(rows.row(k));
                    for (&j, &xv) in idx.iter().zip(vals) {
                        let j = j as usize;
                        if cols.contains(&j) {
                            let o = (j - cols.start) * c;
                            axpy_lanes::<T, M>(scale * xv, ek, &mut out[o..o + c]);
                        }
                    }
                }
            }
        }
    }
}

/// [`csr_scatter`] for `C` classes, the next batch row fetched while this one is added.
#[inline(always)]
pub(super) fn csr_scatter_rows<T: Real, M: MulAdd, const C: usize>(
    x: Compressed<'_, T>,
    rows: BatchRows<'_>,
    e: &[T],
    scale: T,
    cols: Range<usize>,
    out: &mut [T],
) {
    let batch = e.len() / C;
    for (k, ek) in e.chunks_exact(C).enumerate() {
        if k + 1 < batch {
            x.prefetch(rows.row(k + 1));
        }
        let ek: [T; C] = std::array::from_fn(|l| scale * ek[l]);
        let (idx, vals) = x.line(rows.row(k));
        for (&j, &xv) in idx.iter().zip(vals) {
            let j = j as usize;
            if cols.contains(&j) {
                let o: &mut [T; C] = (&mut out[(j - cols.start) * C..][..C]).try_into().expect("C entries");
                for l in 0..C {
                    o[l] = M::madd(xv, ek[l], o[l]);
                }
            }
        }
    }
}

/// SIMD lanes of the dense kernels' accumulators (one AVX2 register of f32).
pub(super) const LANES: usize = 8;
/// Batch rows the dense kernels take together (each load of W or of an accumulator serves
/// that many rows).
pub(super) const ROW_BLOCK: usize = 4;

/// `acc += x ∘ w` lane by lane (one vector multiply-add once compiled).
#[inline(always)]
pub(super) fn lane_madd<T: Real, M: MulAdd>(x: &[T], w: &[T], acc: &mut [T; LANES]) {
    let (x, w) = (&x[..LANES], &w[..LANES]);
    for l in 0..LANES {
        acc[l] = M::madd(x[l], w[l], acc[l]);
    }
}

/// The 2 × 4 dot products `xs[r] · ws[k]` of equal-length slices: each of the 6 loads per
/// step feeds several multiply-adds, and the 8 accumulators stay in registers (they are named
/// one by one: loops over them are not unrolled reliably).
#[inline(always)]
pub(super) fn dots_2x4<T: Real, M: MulAdd>(xs: [&[T]; 2], ws: [&[T]; 4]) -> [[T; 4]; 2] {
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
pub(super) fn tail_dot<T: Real, M: MulAdd>(x: &[T], w: &[T]) -> T {
    x.iter().zip(w).fold(T::zero(), |s, (&a, &b)| M::madd(a, b, s))
}

/// One dot product `x · w` with `LANES`-wide accumulators.
#[inline(always)]
pub(super) fn dot_1x1<T: Real, M: MulAdd>(x: &[T], w: &[T]) -> T {
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
pub(super) fn axpys<T: Real, M: MulAdd, const R: usize>(a: [T; R], xs: [&[T]; R], y: &mut [T]) {
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
    /// `Z[i, k] = X[rows.row(i), :] · Wᵀ[k, :]` for the rows of `z` (`b' × c`), dense X (`· × d`).
    pub(super) fn dense_dots(data: &[T], d: usize, rows: BatchRows<'_>, wt: &[T], c: usize, z: &mut [T]) {
        let x = |i: usize| {
            let r = rows.row(i);
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
    /// `acc[k, :] += scale · Σ_i e[i, k] · X[rows.row(i), :]` for the rows of `e` (`b' × c`):
    /// `(scale · X_Bᵀ E)ᵀ` accumulated into a `c × d` buffer.
    pub(super) fn dense_scatter(data: &[T], d: usize, rows: BatchRows<'_>, e: &[T], c: usize, scale: T, acc: &mut [T]) {
        let x = |i: usize| {
            let r = rows.row(i);
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
