//! The fused GLM batch oracle in f32 with AVX-512 intrinsics, for CPUs that have it: a row of
//! up to 16 classes is one register (masked lanes), so MNIST's 10 classes take one masked load
//! and one multiply-add per stored entry, and the softmax or sigmoid row terms (`lanes.rs`)
//! run on whole registers with a polynomial `exp` instead of one libm call per class. Same contract and
//! arithmetic as the portable kernels in `fused.rs` (which the tests compare these against,
//! and which serve f64 and every other CPU).

use std::arch::x86_64::*;

use super::super::prefetch_bytes;
use super::lanes::{pointwise_term, row_coefs, row_term, Avx512, Isa, MAX_LANES};
use super::{Call, ShiftedCsr, PADDED};

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
    Avx512::new().is_some()
}

/// The lanes below `c`.
#[inline(always)]
fn lanes(c: usize) -> __mmask16 {
    // SAFETY: only the AVX-512 kernels (whose callers guarantee AVX-512F) call this.
    unsafe { Avx512::assume() }.below(c)
}

/// CSR rows (plain or shifted, `X = S + 1sᵀ`) with `c ≤ 16` classes: see `fused.rs`.
///
/// Safety: the CPU has AVX-512F; every column index is below `d`; `f.y`, `f.v` and `g` have
/// `d` rows of [`PADDED`] entries (one entry when c = 1) (the caller checked the shapes; the
/// indices come from a validated CSR).
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn csr_rows(f: &Call<'_, f32>, x: ShiftedCsr<'_, f32>, c: usize, stride: usize, g: &mut [f32]) {
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
    let (zs, us) = match x.shift {
        Some((cols, vals)) => dots(cols, vals),
        None => (_mm512_setzero_ps(), _mm512_setzero_ps()),
    };
    // Two passes over the batch: first every row's terms e_k (the dot products read Y and
    // V), then G += x_k ⊗ e_k (reading and writing G only), so that each pass's matrices
    // share L1 with fewer others.
    let b = f.rows.len();
    let mut es: Vec<__m512> = Vec::with_capacity(b);
    let mut e_sum = _mm512_setzero_ps();
    // SAFETY: this function's contract.
    let s = unsafe { Avx512::assume() };
    let mut coefs = [0.0; MAX_LANES];
    for (k, &row) in f.rows.iter().enumerate() {
        if k % 16 == 0 {
            s.store(row_coefs(s, f, &f.rows[k..]), &mut coefs);
        }
        // The whole of a later row (its entries sit in memory, not cache: a batch row is read
        // at random, once per step), two rows ahead so that it arrives in time.
        if let Some(&ahead) = f.rows.get(k + 2) {
            let (cols, vals) = x.s.line(ahead as usize);
            prefetch_bytes(cols, usize::MAX);
            prefetch_bytes(vals, usize::MAX);
        }
        let row = row as usize;
        let (cols, vals) = x.s.line(row);
        let (z, u) = dots(cols, vals);
        let (z, u) = (_mm512_add_ps(z, zs), _mm512_add_ps(u, us));
        let e = row_term(s, f.loss, z, mask, f.targets[row], f.v.map(|_| u));
        let e = _mm512_mul_ps(e, _mm512_set1_ps(coefs[k % 16]));
        e_sum = _mm512_add_ps(e_sum, e);
        es.push(e);
    }
    for (&row, &e) in f.rows.iter().zip(&es) {
        let row = row as usize;
        // SAFETY: this function's contract.
        let (cols, vals) = x.s.line(row);
        unsafe { scatter(cols, vals, e, c, g) };
    }
    // X = S + 1sᵀ:  G += s ⊗ Σ_k e_k.
    if let Some((cols, vals)) = x.shift {
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
    // SAFETY: this function's contract.
    let s = unsafe { Avx512::assume() };
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
        let wv = row_coefs(s, f, rows);
        // SAFETY: lanes below n lie inside z[k0..k0 + n] and u[k0..k0 + n].
        let (zk, uk) = unsafe { (_mm512_maskz_loadu_ps(m, z.as_ptr().add(k0)), _mm512_maskz_loadu_ps(m, u.as_ptr().add(k0))) };
        let e = s.mul(pointwise_term(s, f.loss, zk, s.load(&t), f.v.map(|_| uk)), wv);
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
