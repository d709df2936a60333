//! The fused GLM batch oracle in f32 with AVX-512 intrinsics, for CPUs that have it: a row of
//! up to 16 classes is one register (masked lanes), so MNIST's 10 classes take one masked load
//! and one multiply-add per stored entry, and the softmax or sigmoid row terms run on whole
//! registers with a polynomial `exp` instead of one libm call per class. Same contract and
//! arithmetic as the portable kernels in `fused.rs` (which the tests compare these against,
//! and which serve f64 and every other CPU).

use std::arch::x86_64::*;

use super::super::prefetch_bytes;
use super::{Call, PADDED};
use crate::backend::LossKind;

/// `dst[j, :] = m[j, :]` for a `d × c` matrix `m` into rows of [`PADDED`] lanes (zeros past c).
///
/// Safety: the CPU has AVX-512F; `c ≤ 16`, `m` has `d × c` entries and `dst` `d × PADDED`.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn pad(m: &[f32], c: usize, dst: &mut [f32]) {
    let mask = lanes(c);
    for (j, row) in dst.chunks_exact_mut(PADDED).enumerate() {
        debug_assert!(j * c + c <= m.len());
        // SAFETY: the masked lanes of row j lie inside m (the contract); row has 16 entries.
        unsafe { _mm512_storeu_ps(row.as_mut_ptr(), _mm512_maskz_loadu_ps(mask, m.as_ptr().add(j * c))) };
    }
}

/// Whether this CPU has the AVX-512 foundation instructions (detected once, cached by std).
pub(super) fn available() -> bool {
    std::is_x86_feature_detected!("avx512f")
}

/// The lanes below `c`.
fn lanes(c: usize) -> __mmask16 {
    ((1u32 << c) - 1) as __mmask16
}

/// `e^x` lane by lane (Cephes `expf`: Cody–Waite reduction by ln 2, a degree-6 polynomial,
/// `2^n` applied by `scalef`); relative error below 2·10⁻⁷ on the clamped range, NaN in, NaN
/// out.
#[target_feature(enable = "avx512f")]
#[inline]
fn exp(x: __m512) -> __m512 {
    // max/min return their second operand when either is NaN: x second keeps NaNs.
    let x = _mm512_min_ps(_mm512_set1_ps(88.72), _mm512_max_ps(_mm512_set1_ps(-103.9), x));
    let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm512_mul_ps(
        x,
        _mm512_set1_ps(std::f32::consts::LOG2_E),
    ));
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693_359_4), x);
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.121_944_4e-4), r);
    let mut p = _mm512_set1_ps(1.987_569_1e-4);
    for c in [1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 0.5] {
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
    }
    let p = _mm512_add_ps(_mm512_fmadd_ps(_mm512_mul_ps(p, r), r, r), _mm512_set1_ps(1.0));
    _mm512_scalef_ps(p, n)
}

/// `σ(z)` lane by lane.
#[target_feature(enable = "avx512f")]
#[inline]
fn sigmoid(z: __m512) -> __m512 {
    let one = _mm512_set1_ps(1.0);
    _mm512_div_ps(one, _mm512_add_ps(one, exp(_mm512_sub_ps(_mm512_setzero_ps(), z))))
}

/// The element-wise losses' row terms on lanes that are independent rows (or the one class
/// of a row): `ℓ'(z; t)`, or with `u` the curvature `ℓ''(z)·u`.
#[target_feature(enable = "avx512f")]
#[inline]
fn pointwise_term(loss: LossKind, z: __m512, t: __m512, u: Option<__m512>) -> __m512 {
    match (loss, u) {
        (LossKind::Squared, None) => _mm512_sub_ps(z, t),
        (LossKind::Squared, Some(u)) => u,
        (LossKind::Logistic, None) => _mm512_sub_ps(sigmoid(z), t),
        (LossKind::Logistic, Some(u)) => {
            let s = sigmoid(z);
            _mm512_mul_ps(_mm512_mul_ps(s, _mm512_sub_ps(_mm512_set1_ps(1.0), s)), u)
        }
        (LossKind::Softmax, _) => unreachable!("softmax rows go through softmax_term"),
    }
}

/// One row's softmax term on the lanes of `mask` (its classes): `P − 1_t` or `P∘(U − ⟨P, U⟩)`,
/// with `P = softmax(z)`; 0 in the other lanes.
#[target_feature(enable = "avx512f")]
#[inline]
fn softmax_term(z: __m512, mask: __mmask16, label: f32, u: Option<__m512>) -> __m512 {
    let m = _mm512_mask_reduce_max_ps(mask, z);
    let p = _mm512_maskz_mov_ps(mask, exp(_mm512_sub_ps(z, _mm512_set1_ps(m))));
    let p = _mm512_mul_ps(p, _mm512_set1_ps(1.0 / _mm512_reduce_add_ps(p)));
    match u {
        None => {
            // A label outside 0..c subtracts nothing (as the portable kernel).
            let at = if (0.0..16.0).contains(&label) { (1u32 << label as u32) as __mmask16 & mask } else { 0 };
            _mm512_mask_sub_ps(p, at, p, _mm512_set1_ps(1.0))
        }
        Some(u) => {
            let pu = _mm512_reduce_add_ps(_mm512_mul_ps(p, u));
            _mm512_mul_ps(p, _mm512_sub_ps(u, _mm512_set1_ps(pu)))
        }
    }
}

/// A row's term for any loss, on the lanes of `mask` (its `c ≤ 16` classes).
#[target_feature(enable = "avx512f")]
#[inline]
fn row_term(loss: LossKind, z: __m512, mask: __mmask16, t: f32, u: Option<__m512>) -> __m512 {
    match loss {
        LossKind::Softmax => softmax_term(z, mask, t, u),
        _ => _mm512_maskz_mov_ps(mask, pointwise_term(loss, z, _mm512_set1_ps(t), u)),
    }
}

/// The weights of up to 16 batch rows, `coef·σ(λ_row)` or `coef`, with the vector sigmoid (a
/// libm `exp` per row cost as much as a tenth of MNIST's step).
#[target_feature(enable = "avx512f")]
#[inline]
fn row_coefs(f: &Call<'_, f32>, rows: &[u32]) -> [f32; 16] {
    let mut w = [f.coef; 16];
    if let Some(l) = f.weights {
        let lam: [f32; 16] = std::array::from_fn(|i| rows.get(i).map_or(0.0, |&r| l[r as usize]));
        // SAFETY: both arrays hold 16 lanes.
        unsafe { _mm512_storeu_ps(w.as_mut_ptr(), _mm512_mul_ps(_mm512_set1_ps(f.coef), sigmoid(_mm512_loadu_ps(lam.as_ptr())))) };
    }
    w
}

/// CSR rows (plain or shifted, `X = S + 1sᵀ`) with `c ≤ 16` classes: see `fused.rs`.
///
/// Safety: the CPU has AVX-512F; every column index is below `d`; `f.y`, `f.v` and `g` have
/// `d` rows of [`PADDED`] entries (one entry when c = 1) (the caller checked the shapes; the
/// indices come from a validated CSR).
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn csr_rows(
    f: &Call<'_, f32>,
    indptr: &[u32],
    indices: &[u32],
    values: &[f32],
    shift: Option<(&[u32], &[f32])>,
    c: usize,
    stride: usize,
    g: &mut [f32],
) {
    let mask = lanes(c);
    // Y's and V's rows are `stride` apart: padded to 16 lanes on 64-byte boundaries when c > 1
    // (see `fused.rs`), so that no load straddles two cache lines.
    let (y, v) = (f.y.as_ptr(), f.v.map_or(std::ptr::null(), |v| v.as_ptr()));
    // SAFETY (both): the column indices are below d (this function's contract).
    let dots = |cols: &[u32], vals: &[f32]| unsafe {
        match f.v {
            Some(_) if stride == PADDED => dots::<true, true>(cols, vals, y, v, stride, mask),
            Some(_) => dots::<true, false>(cols, vals, y, v, stride, mask),
            None if stride == PADDED => dots::<false, true>(cols, vals, y, v, stride, mask),
            None => dots::<false, false>(cols, vals, y, v, stride, mask),
        }
    };
    let (zs, us) = match shift {
        Some((cols, vals)) => dots(cols, vals),
        None => (_mm512_setzero_ps(), _mm512_setzero_ps()),
    };
    let span = |row: usize| indptr[row] as usize..indptr[row + 1] as usize;
    // Two passes over the batch: first every row's terms e_k (the dot products read Y and
    // V), then G += x_k ⊗ e_k (reading and writing G only), so that each pass's matrices
    // share L1 with fewer others.
    let b = f.rows.len();
    let mut es: Vec<__m512> = Vec::with_capacity(b);
    let mut e_sum = _mm512_setzero_ps();
    let mut coefs = [0.0; 16];
    for (k, &row) in f.rows.iter().enumerate() {
        if k % 16 == 0 {
            coefs = row_coefs(f, &f.rows[k..]);
        }
        // The whole of a later row (its entries sit in memory, not cache: a batch row is read
        // at random, once per step), two rows ahead so that it arrives in time.
        if let Some(&ahead) = f.rows.get(k + 2) {
            let r = span(ahead as usize);
            prefetch_bytes(&indices[r.clone()], usize::MAX);
            prefetch_bytes(&values[r], usize::MAX);
        }
        let row = row as usize;
        let (cols, vals) = (&indices[span(row)], &values[span(row)]);
        let (z, u) = dots(cols, vals);
        let (z, u) = (_mm512_add_ps(z, zs), _mm512_add_ps(u, us));
        let e = row_term(f.loss, z, mask, f.targets[row], f.v.map(|_| u));
        let e = _mm512_mul_ps(e, _mm512_set1_ps(coefs[k % 16]));
        e_sum = _mm512_add_ps(e_sum, e);
        es.push(e);
    }
    for (&row, &e) in f.rows.iter().zip(&es) {
        let row = row as usize;
        // SAFETY: this function's contract.
        unsafe { scatter(&indices[span(row)], &values[span(row)], e, c, g) };
    }
    // X = S + 1sᵀ:  G += s ⊗ Σ_k e_k.
    if let Some((cols, vals)) = shift {
        // SAFETY: as above.
        unsafe { scatter(cols, vals, e_sum, c, g) };
    }
}

/// `(x·Y, x·V)` for one sparse row (`x·V` only when `DUAL`), four accumulator pairs over
/// successive entries: a multiply-add waits 4 cycles for its accumulator, so one pair would
/// hold a row to an entry per 4 cycles.
///
/// Safety: every `cols[p]`'s row (`stride` apart, the `mask` lanes) lies inside Y (and V);
/// with `PADDED_ROWS`, the rows are [`PADDED`] apart on 64-byte boundaries.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn dots<const DUAL: bool, const PADDED_ROWS: bool>(
    cols: &[u32],
    vals: &[f32],
    y: *const f32,
    v: *const f32,
    stride: usize,
    mask: __mmask16,
) -> (__m512, __m512) {
    let zero = _mm512_setzero_ps();
    let (mut z, mut u) = ([zero; 4], [zero; 4]);
    let n = cols.len().min(vals.len());
    let full = n - n % 4;
    // SAFETY: the caller's contract for every column index. Padded rows are whole aligned
    // registers (zeros past c): a plain load, which folds into the multiply-add.
    let row = |m: *const f32, j: u32| unsafe {
        if PADDED_ROWS {
            _mm512_load_ps(m.add(j as usize * PADDED))
        } else {
            _mm512_maskz_loadu_ps(mask, m.add(j as usize * stride))
        }
    };
    let mut p = 0;
    while p < full {
        for a in 0..4 {
            let (j, x) = (cols[p + a], _mm512_set1_ps(vals[p + a]));
            z[a] = _mm512_fmadd_ps(x, row(y, j), z[a]);
            if DUAL {
                u[a] = _mm512_fmadd_ps(x, row(v, j), u[a]);
            }
        }
        p += 4;
    }
    for p in full..n {
        let (j, x) = (cols[p], _mm512_set1_ps(vals[p]));
        z[0] = _mm512_fmadd_ps(x, row(y, j), z[0]);
        if DUAL {
            u[0] = _mm512_fmadd_ps(x, row(v, j), u[0]);
        }
    }
    let sum = |a: [__m512; 4]| _mm512_add_ps(_mm512_add_ps(a[0], a[1]), _mm512_add_ps(a[2], a[3]));
    (sum(z), sum(u))
}

/// `G[j, :] += x_j·e` over a sparse row. With `c > 1`, G's rows are padded to 16 lanes: whole
/// register loads and stores, because a load from a *masked* store's address cannot take its
/// value from the store buffer and waits for the store to retire — and consecutive batch rows
/// share most columns (the masked form runs MNIST at half the speed). One class is a
/// scalar.
///
/// Safety: every column index is below `d`, with `g` of `d` rows of [`PADDED`] (c > 1) or of `d`
/// entries (c = 1).
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn scatter(cols: &[u32], vals: &[f32], e: __m512, c: usize, g: &mut [f32]) {
    if c == 1 {
        let e = _mm512_cvtss_f32(e);
        for (&j, &xv) in cols.iter().zip(vals) {
            g[j as usize] += xv * e;
        }
        return;
    }
    debug_assert!(cols.iter().all(|&j| (j as usize + 1) * PADDED <= g.len()));
    let g = g.as_mut_ptr();
    for (&j, &xv) in cols.iter().zip(vals) {
        // SAFETY: this function's contract (checked in debug builds above).
        unsafe {
            let gj = g.add(j as usize * PADDED);
            _mm512_storeu_ps(gj, _mm512_fmadd_ps(_mm512_set1_ps(xv), e, _mm512_loadu_ps(gj)));
        }
    }
}

/// Dense rows, one class, element-wise losses (ijcnn1), in three passes over the batch while
/// its rows sit in L1: the dot products, the row terms 16 rows to a register, then `G += e_k·x_k`.
/// `z` and `u` are work slices of at least `b` entries.
///
/// Safety: the CPU has AVX-512F; `data` holds every batch row (`d` entries each) and `g`,
/// `f.y` (and `f.v`) have `d` entries.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn dense_rows(f: &Call<'_, f32>, data: &[f32], d: usize, g: &mut [f32], z: &mut [f32], u: &mut [f32]) {
    let b = f.rows.len();
    let (z, u) = (&mut z[..b], &mut u[..b]);
    let tail = lanes(d % 16);
    let chunks = d.div_ceil(16);
    let mask = |q: usize| if q + 1 == chunks && !d.is_multiple_of(16) { tail } else { 0xFFFF };
    let x = |row: u32| &data[row as usize * d..][..d];
    // SAFETY (every masked load and store below): chunk q covers entries 16q.. of a slice of d
    // entries, and its mask keeps the lanes below d.
    let load = |s: &[f32], q: usize| unsafe { _mm512_maskz_loadu_ps(mask(q), s.as_ptr().add(16 * q)) };
    for (k, &row) in f.rows.iter().enumerate() {
        if let Some(&ahead) = f.rows.get(k + 8) {
            super::super::prefetch(x(ahead));
        }
        let xk = x(row);
        let (mut zy, mut zv) = (_mm512_setzero_ps(), _mm512_setzero_ps());
        for q in 0..chunks {
            let xq = load(xk, q);
            zy = _mm512_fmadd_ps(xq, load(f.y, q), zy);
            if let Some(v) = f.v {
                zv = _mm512_fmadd_ps(xq, load(v, q), zv);
            }
        }
        z[k] = _mm512_reduce_add_ps(zy);
        u[k] = _mm512_reduce_add_ps(zv);
    }
    // The row terms, 16 rows at a time; e overwrites z.
    for k0 in (0..b).step_by(16) {
        let n = (b - k0).min(16);
        let m = lanes(n);
        let rows = &f.rows[k0..k0 + n];
        let t: [f32; 16] = std::array::from_fn(|i| rows.get(i).map_or(0.0, |&r| f.targets[r as usize]));
        let w = row_coefs(f, rows);
        // SAFETY: lanes below n lie inside z[k0..k0 + n] and u[k0..k0 + n].
        let (zk, uk) = unsafe { (_mm512_maskz_loadu_ps(m, z.as_ptr().add(k0)), _mm512_maskz_loadu_ps(m, u.as_ptr().add(k0))) };
        let (tv, wv) = unsafe { (_mm512_loadu_ps(t.as_ptr()), _mm512_loadu_ps(w.as_ptr())) };
        let e = _mm512_mul_ps(pointwise_term(f.loss, zk, tv, f.v.map(|_| uk)), wv);
        unsafe { _mm512_mask_storeu_ps(z.as_mut_ptr().add(k0), m, e) };
    }
    for q in 0..chunks {
        let mut acc = load(g, q);
        for (k, &row) in f.rows.iter().enumerate() {
            acc = _mm512_fmadd_ps(_mm512_set1_ps(z[k]), load(x(row), q), acc);
        }
        unsafe { _mm512_mask_storeu_ps(g.as_mut_ptr().add(16 * q), mask(q), acc) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The polynomial `exp` against f64's on a fine grid over the range the kernels use (softmax
    /// arguments ≤ 0, sigmoid arguments of either sign), to a few f32 ulps; NaN stays NaN.
    #[test]
    fn exp_is_accurate() {
        if !available() {
            eprintln!("no AVX-512F on this CPU: nothing to check");
            return;
        }
        let xs: Vec<f32> = (0..200_000).map(|i| -87.0 + i as f32 * (175.0 / 200_000.0)).chain([0.0, -0.0, 1e-30, -1e-30]).collect();
        let mut worst = 0.0f64;
        for chunk in xs.chunks(16) {
            let mut lanes = [0.0f32; 16];
            lanes[..chunk.len()].copy_from_slice(chunk);
            let mut got = [0.0f32; 16];
            // SAFETY: the CPU has AVX-512F (checked above); both arrays hold 16 lanes.
            unsafe { _mm512_storeu_ps(got.as_mut_ptr(), exp(_mm512_loadu_ps(lanes.as_ptr()))) };
            for (&x, &g) in chunk.iter().zip(&got) {
                let want = (x as f64).exp();
                worst = worst.max(((g as f64) - want).abs() / want);
            }
        }
        assert!(worst < 3.0e-7, "exp: worst relative error {worst:.2e}");
        let mut nan = [f32::NAN; 16];
        // SAFETY: as above.
        unsafe { _mm512_storeu_ps(nan.as_mut_ptr(), exp(_mm512_set1_ps(f32::NAN))) };
        assert!(nan.iter().all(|v| v.is_nan()), "exp(NaN) must be NaN");
    }
}
