//! The fused GLM batch oracle in f32 with AVX2 and FMA intrinsics, for x86-64 CPUs without
//! AVX-512 (AMD Zen 1–3, Intel client cores). The passes are those of `avx512.rs`; what
//! differs is the register width: a padded row of up to 16 classes is two 8-lane registers
//! (the upper one only when c > 8), and dense c = 1 rows are reduced eight at a time by a
//! horizontal-add tree, so that the row terms run on whole registers. `exp` is the same
//! polynomial, with `2^n` built in the exponent bits (AVX2 has no `scalef`). The portable
//! kernels in `fused.rs` serve f64 and the tests compare both against them.

use std::arch::x86_64::*;

use super::super::prefetch_bytes;
use super::super::Split;
use super::Call;
use crate::backend::LossKind;

/// Whether this CPU has AVX2 and FMA (detected once, cached by std).
pub(super) fn available() -> bool {
    std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
}

/// Sixteen lanes, a padded row: classes 0–7 in `lo`, 8–15 in `hi`.
#[derive(Clone, Copy)]
struct Row {
    lo: __m256,
    hi: __m256,
}

/// All-ones in the lanes below `c` (class lanes), as float masks for `and`/`blendv`.
#[derive(Clone, Copy)]
struct Lanes {
    lo: __m256,
    hi: __m256,
}

#[target_feature(enable = "avx2,fma")]
#[inline]
fn lanes(c: usize) -> Lanes {
    let c = _mm256_set1_epi32(c as i32);
    let below = |first: i32| {
        let idx = _mm256_setr_epi32(first, first + 1, first + 2, first + 3, first + 4, first + 5, first + 6, first + 7);
        _mm256_castsi256_ps(_mm256_cmpgt_epi32(c, idx))
    };
    Lanes { lo: below(0), hi: below(8) }
}

/// `e^x` lane by lane: Cephes `expf` as in `avx512.rs` (Cody–Waite reduction by ln 2, a degree-6
/// polynomial), `2^n` written into the exponent bits of two factors (AVX2 has no `scalef`).
/// Below −87.34 the result is 0 (it would be below f32's smallest normal number, which the
/// kernels flush to 0 anyway), above 88.72 it is +∞, as libm's. Relative error below 2·10⁻⁷
/// in between; NaN in, NaN out.
#[target_feature(enable = "avx2,fma")]
#[inline]
fn exp(x: __m256) -> __m256 {
    const LOW: f32 = -87.336_54; // ln(2^-126)
    const HIGH: f32 = 88.722_84; // ln(f32::MAX)
    let under = _mm256_cmp_ps::<_CMP_LT_OQ>(x, _mm256_set1_ps(LOW));
    let over = _mm256_cmp_ps::<_CMP_GT_OQ>(x, _mm256_set1_ps(HIGH));
    // max/min return their second operand when either is NaN: x second keeps NaNs.
    let x = _mm256_min_ps(_mm256_set1_ps(HIGH), _mm256_max_ps(_mm256_set1_ps(LOW), x));
    let n =
        _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(x, _mm256_set1_ps(std::f32::consts::LOG2_E)));
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693_359_4), x);
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.121_944_4e-4), r);
    let mut p = _mm256_set1_ps(1.987_569_1e-4);
    for c in [1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 0.5] {
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
    }
    let p = _mm256_add_ps(_mm256_fmadd_ps(_mm256_mul_ps(p, r), r, r), _mm256_set1_ps(1.0));
    // n ∈ [−126, 128]: 2^n = 2^h · 2^(n−h) with h = ⌊n/2⌋, each a float with biased exponent
    // h + 127 (or n − h + 127) and no mantissa.
    let n = _mm256_cvtps_epi32(n);
    let h = _mm256_srai_epi32::<1>(n);
    let pow2 = |k: __m256i| _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(k, _mm256_set1_epi32(127))));
    let y = _mm256_mul_ps(_mm256_mul_ps(p, pow2(h)), pow2(_mm256_sub_epi32(n, h)));
    _mm256_blendv_ps(_mm256_andnot_ps(under, y), _mm256_set1_ps(f32::INFINITY), over)
}

/// `σ(z)` lane by lane.
#[target_feature(enable = "avx2,fma")]
#[inline]
fn sigmoid(z: __m256) -> __m256 {
    let one = _mm256_set1_ps(1.0);
    _mm256_div_ps(one, _mm256_add_ps(one, exp(_mm256_sub_ps(_mm256_setzero_ps(), z))))
}

/// The sum of the eight lanes.
#[target_feature(enable = "avx2,fma")]
#[inline]
fn reduce_add(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
}

/// The largest of the eight lanes.
#[target_feature(enable = "avx2,fma")]
#[inline]
fn reduce_max(v: __m256) -> f32 {
    let s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_max_ss(s, _mm_movehdup_ps(s)))
}

/// The element-wise losses' row terms on lanes that are independent rows (or the one class
/// of a row): `ℓ'(z; t)`, or with `u` the curvature `ℓ''(z)·u`.
#[target_feature(enable = "avx2,fma")]
#[inline]
fn pointwise_term(loss: LossKind, z: __m256, t: __m256, u: Option<__m256>) -> __m256 {
    match (loss, u) {
        (LossKind::Squared, None) => _mm256_sub_ps(z, t),
        (LossKind::Squared, Some(u)) => u,
        (LossKind::Logistic, None) => _mm256_sub_ps(sigmoid(z), t),
        (LossKind::Logistic, Some(u)) => {
            let s = sigmoid(z);
            _mm256_mul_ps(_mm256_mul_ps(s, _mm256_sub_ps(_mm256_set1_ps(1.0), s)), u)
        }
        (LossKind::Softmax, _) => unreachable!("softmax rows go through softmax_term"),
    }
}

/// One row's softmax term on its class lanes: `P − 1_t` or `P∘(U − ⟨P, U⟩)`, with
/// `P = softmax(z)`; 0 in the other lanes. `HI`: whether there are classes past 8.
#[target_feature(enable = "avx2,fma")]
#[inline]
fn softmax_term<const HI: bool>(z: Row, mask: Lanes, label: f32, u: Option<Row>) -> Row {
    let low = _mm256_set1_ps(f32::NEG_INFINITY);
    let mut top = _mm256_blendv_ps(low, z.lo, mask.lo);
    if HI {
        top = _mm256_max_ps(top, _mm256_blendv_ps(low, z.hi, mask.hi));
    }
    let m = _mm256_set1_ps(reduce_max(top));
    let lo = _mm256_and_ps(mask.lo, exp(_mm256_sub_ps(z.lo, m)));
    let hi = if HI { _mm256_and_ps(mask.hi, exp(_mm256_sub_ps(z.hi, m))) } else { _mm256_setzero_ps() };
    let inv = _mm256_set1_ps(1.0 / reduce_add(_mm256_add_ps(lo, hi)));
    let p = Row { lo: _mm256_mul_ps(lo, inv), hi: _mm256_mul_ps(hi, inv) };
    match u {
        None => {
            // A label outside 0..c subtracts nothing (as the portable kernel).
            let at = if (0.0..16.0).contains(&label) { label as i32 } else { -1 };
            let hit = |first: i32, mask: __m256| {
                let idx = _mm256_setr_epi32(first, first + 1, first + 2, first + 3, first + 4, first + 5, first + 6, first + 7);
                let eq = _mm256_castsi256_ps(_mm256_cmpeq_epi32(idx, _mm256_set1_epi32(at)));
                _mm256_and_ps(_mm256_and_ps(eq, mask), _mm256_set1_ps(1.0))
            };
            Row { lo: _mm256_sub_ps(p.lo, hit(0, mask.lo)), hi: _mm256_sub_ps(p.hi, hit(8, mask.hi)) }
        }
        Some(u) => {
            let pu = _mm256_set1_ps(reduce_add(_mm256_fmadd_ps(p.hi, u.hi, _mm256_mul_ps(p.lo, u.lo))));
            Row { lo: _mm256_mul_ps(p.lo, _mm256_sub_ps(u.lo, pu)), hi: _mm256_mul_ps(p.hi, _mm256_sub_ps(u.hi, pu)) }
        }
    }
}

/// The weights of up to 8 batch rows, `coef·σ(λ_row)` or `coef`, with the vector sigmoid.
#[target_feature(enable = "avx2,fma")]
#[inline]
fn row_coefs(f: &Call<'_, f32>, rows: &[u32]) -> __m256 {
    match f.weights {
        None => _mm256_set1_ps(f.coef),
        Some(l) => {
            let lam: [f32; 8] = std::array::from_fn(|i| rows.get(i).map_or(0.0, |&r| l[r as usize]));
            // SAFETY: lam holds 8 lanes.
            let lam = unsafe { _mm256_loadu_ps(lam.as_ptr()) };
            _mm256_mul_ps(_mm256_set1_ps(f.coef), sigmoid(lam))
        }
    }
}

/// Lane `k % 8` of `v`.
#[inline]
fn lane(v: __m256, k: usize) -> f32 {
    // SAFETY: __m256 is eight f32s.
    let a: [f32; 8] = unsafe { std::mem::transmute(v) };
    a[k % 8]
}

/// A row of `C` classes (1 or 10) of a row-major `d × C` matrix, unpadded: one class
/// broadcast to every lane (the row terms read lane 0), or classes 0–7 by one unaligned load
/// and 8–9 by a 64-bit load into the upper register's low lanes.
///
/// Safety: row `j` lies inside the matrix at `m`.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn load_row<const C: usize>(m: *const f32, j: usize) -> Row {
    // SAFETY: the caller's contract; the 64-bit load has no alignment requirement.
    unsafe {
        match C {
            1 => Row { lo: _mm256_broadcast_ss(&*m.add(j)), hi: _mm256_setzero_ps() },
            10 => {
                let p = m.add(j * 10);
                Row { lo: _mm256_loadu_ps(p), hi: _mm256_zextps128_ps256(load_pair(p.add(8))) }
            }
            _ => unreachable!("the AVX2 CSR kernels compile 1 and 10 classes"),
        }
    }
}

/// Two floats into the low lanes (the others 0), from any address.
///
/// Safety: `p` and `p + 1` are readable.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn load_pair(p: *const f32) -> __m128 {
    // SAFETY: the caller's contract; movq has no alignment requirement.
    unsafe { _mm_castsi128_ps(_mm_loadl_epi64(p.cast())) }
}

/// The low two lanes of `v` to `p` (exactly two floats written).
///
/// Safety: `p` and `p + 1` are writable.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn store_pair(p: *mut f32, v: __m128) {
    // SAFETY: the caller's contract; movq has no alignment requirement.
    unsafe { _mm_storel_epi64(p.cast(), _mm_castps_si128(v)) }
}

/// Row `k` of a row-major matrix of `C` (1 or 10) entries a row at `m` = `r`'s class lanes
/// (see [`load_row`]; lane 0 for one class).
///
/// Safety: row `k` lies inside the matrix.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn store_row<const C: usize>(m: *mut f32, k: usize, r: Row) {
    // SAFETY: the caller's contract.
    unsafe {
        let p = m.add(k * C);
        match C {
            1 => *p = _mm256_cvtss_f32(r.lo),
            _ => {
                _mm256_storeu_ps(p, r.lo);
                store_pair(p.add(8), _mm256_castps256_ps128(r.hi));
            }
        }
    }
}

/// CSR rows (plain or shifted, `X = S + 1sᵀ`), first pass: every batch row's term
/// `e_k = w_k·ℓ'(x_k·Y)` (or `ℓ''·(x_k·V)`), written to `e` (`b × c`, row-major); returns
/// `Σ_k e_k` in the lanes of a row (for the shift's part of G). `u` is work space of the size
/// of `e`. Y and V are read in place, with c entries a row (no padded copies: AVX2 writes G
/// without masked stores, see [`csr_scatter`]). `c` is 1 or 10 (the compiled class counts up
/// to 16).
///
/// Safety: the CPU has AVX2 and FMA; every column index is below `d`, `f.y` (and `f.v`) have
/// `d × c` entries, `e` and `u` at least `b × c` (the caller checked the shapes; the indices come from a
/// validated CSR).
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn csr_terms(
    f: &Call<'_, f32>,
    indptr: &[u32],
    indices: &[u32],
    values: &[f32],
    shift: Option<(&[u32], &[f32])>,
    c: usize,
    e: &mut [f32],
    u: &mut [f32],
) -> [f32; 16] {
    // SAFETY (both): this function's contract.
    match c {
        1 => unsafe { csr_terms_c::<1>(f, indptr, indices, values, shift, e, u) },
        10 => unsafe { csr_terms_c::<10>(f, indptr, indices, values, shift, e, u) },
        _ => panic!("avx2::csr_terms: {c} classes (1 or 10 are compiled)"),
    }
}

#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn csr_terms_c<const C: usize>(
    f: &Call<'_, f32>,
    indptr: &[u32],
    indices: &[u32],
    values: &[f32],
    shift: Option<(&[u32], &[f32])>,
    e: &mut [f32],
    u: &mut [f32],
) -> [f32; 16] {
    let mask = lanes(C);
    let (y, v) = (f.y.as_ptr(), f.v.map_or(std::ptr::null(), |v| v.as_ptr()));
    // SAFETY (both): the column indices are below d (this function's contract).
    let dots = |cols: &[u32], vals: &[f32]| unsafe {
        match f.v {
            Some(_) => dots::<true, C>(cols, vals, y, v),
            None => dots::<false, C>(cols, vals, y, v),
        }
    };
    let zero = Row { lo: _mm256_setzero_ps(), hi: _mm256_setzero_ps() };
    let (zs, us) = match shift {
        Some((cols, vals)) => dots(cols, vals),
        None => (zero, zero),
    };
    let span = |row: usize| indptr[row] as usize..indptr[row + 1] as usize;
    assert!(e.len() >= f.rows.len() * C && u.len() >= f.rows.len() * C, "avx2::csr_terms: e or u too short");
    // All the rows' products first (z in e, u in `u`), the row terms after, so that the
    // softmax's reductions and exp of successive rows overlap instead of each holding up the
    // next row's loads.
    for (k, &row) in f.rows.iter().enumerate() {
        // The whole of a later row, two rows ahead (see `avx512.rs`).
        if let Some(&ahead) = f.rows.get(k + 2) {
            let r = span(ahead as usize);
            prefetch_bytes(&indices[r.clone()], usize::MAX);
            prefetch_bytes(&values[r], usize::MAX);
        }
        let row = row as usize;
        let (z, uk) = dots(&indices[span(row)], &values[span(row)]);
        // SAFETY: row k of e and u lies inside them (asserted above).
        unsafe {
            store_row::<C>(e.as_mut_ptr(), k, Row { lo: _mm256_add_ps(z.lo, zs.lo), hi: _mm256_add_ps(z.hi, zs.hi) });
            if f.v.is_some() {
                store_row::<C>(u.as_mut_ptr(), k, Row { lo: _mm256_add_ps(uk.lo, us.lo), hi: _mm256_add_ps(uk.hi, us.hi) });
            }
        }
    }
    let mut e_sum = zero;
    let mut coefs = _mm256_setzero_ps();
    for (k, &row) in f.rows.iter().enumerate() {
        if k % 8 == 0 {
            coefs = row_coefs(f, &f.rows[k..]);
        }
        // SAFETY: as above.
        let z = unsafe { load_row::<C>(e.as_ptr(), k) };
        let uk = if f.v.is_some() { unsafe { load_row::<C>(u.as_ptr(), k) } } else { zero };
        let t = f.targets[row as usize];
        let ek = match f.loss {
            LossKind::Softmax if C > 8 => softmax_term::<true>(z, mask, t, f.v.map(|_| uk)),
            LossKind::Softmax => softmax_term::<false>(z, mask, t, f.v.map(|_| uk)),
            loss => {
                let ek = pointwise_term(loss, z.lo, _mm256_set1_ps(t), f.v.map(|_| uk.lo));
                Row { lo: _mm256_and_ps(mask.lo, ek), hi: _mm256_setzero_ps() }
            }
        };
        let w = _mm256_set1_ps(lane(coefs, k));
        let ek = Row { lo: _mm256_mul_ps(ek.lo, w), hi: _mm256_mul_ps(ek.hi, w) };
        e_sum = Row { lo: _mm256_add_ps(e_sum.lo, ek.lo), hi: _mm256_add_ps(e_sum.hi, ek.hi) };
        // SAFETY: as above.
        unsafe { store_row::<C>(e.as_mut_ptr(), k, ek) };
    }
    let mut sum = [0.0; 16];
    // SAFETY: sum holds 16 lanes.
    unsafe {
        _mm256_storeu_ps(sum.as_mut_ptr(), e_sum.lo);
        _mm256_storeu_ps(sum.as_mut_ptr().add(8), e_sum.hi);
    }
    sum
}

/// CSR rows, second pass: `G += x_k ⊗ e_k` over the batch (and `s ⊗ Σ_k e_k` for a shifted
/// matrix), into `g` (`d × c`, row-major) in place — the caller's `out` after its
/// regulariser part, so no G buffer is zeroed and folded. Each row of G is read and written
/// by plain loads and stores of the same width at the same address (8 floats, then 2), so a
/// later batch row's load of it takes the value from the store buffer (a masked store's could
/// not be forwarded; see `avx512.rs`).
///
/// `part` says which rows of G `g` holds and this call updates: all of them, or those below or
/// from a split column (two threads, each its own part; `g` then starts at the part's first
/// row), each row's entries of the part cut at the split's precomputed position.
///
/// Safety: the CPU has AVX2 and FMA; every column index is below `d`, `g` holds `part`'s rows
/// of the `d × c` G, `e` holds `b × c` terms from [`csr_terms`], `c` is 1 or 10; a split
/// belongs to this matrix (its rows' and the shift's column indices ascend).
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn csr_scatter(
    rows: &[u32],
    indptr: &[u32],
    indices: &[u32],
    values: &[f32],
    shift: Option<(&[u32], &[f32])>,
    c: usize,
    e: &[f32],
    e_sum: &[f32; 16],
    part: Part<'_>,
    g: &mut [f32],
) {
    // SAFETY (both): this function's contract.
    match c {
        1 => unsafe { csr_scatter_c::<1>(rows, indptr, indices, values, shift, e, e_sum, part, g) },
        10 => unsafe { csr_scatter_c::<10>(rows, indptr, indices, values, shift, e, e_sum, part, g) },
        _ => panic!("avx2::csr_scatter: {c} classes (1 or 10 are compiled)"),
    }
}

#[target_feature(enable = "avx2,fma")]
#[inline]
#[allow(clippy::too_many_arguments)]
unsafe fn csr_scatter_c<const C: usize>(
    rows: &[u32],
    indptr: &[u32],
    indices: &[u32],
    values: &[f32],
    shift: Option<(&[u32], &[f32])>,
    e: &[f32],
    e_sum: &[f32; 16],
    part: Part<'_>,
    g: &mut [f32],
) {
    let span = |row: usize| indptr[row] as usize..indptr[row + 1] as usize;
    assert!(e.len() >= rows.len() * C, "avx2::csr_scatter: e too short");
    let first = part.first();
    for (k, &row) in rows.iter().enumerate() {
        let row = row as usize;
        let entries = part.cut(span(row), |split| split.at[row] as usize);
        // SAFETY: row k of e lies inside e (asserted above); the part's entries have columns
        // in its rows (this function's contract).
        unsafe {
            let ek = load_row::<C>(e.as_ptr(), k);
            scatter::<C>(&indices[entries.clone()], &values[entries], ek, first, g)
        };
    }
    // X = S + 1sᵀ:  G += s ⊗ Σ_k e_k.
    if let Some((cols, vals)) = shift {
        let entries = part.cut(0..cols.len(), |split| cols.partition_point(|&j| j < split.col));
        // SAFETY: e_sum holds 16 lanes; as above.
        unsafe {
            let sum = Row { lo: _mm256_loadu_ps(e_sum.as_ptr()), hi: _mm256_loadu_ps(e_sum.as_ptr().add(8)) };
            scatter::<C>(&cols[entries.clone()], &vals[entries], sum, first, g)
        };
    }
}

/// `(x·Y, x·V)` for one sparse row (`x·V` only when `DUAL`), over successive entries in two
/// (`DUAL`) or four accumulator sets: a multiply-add waits 4 cycles for its accumulator and
/// two issue per cycle, so eight chains keep the units busy (and AVX2's 16 registers hold them).
/// Classes 8–9 accumulate in 128-bit registers.
///
/// Safety: every `cols[p]`'s row lies inside Y (and V).
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn dots<const DUAL: bool, const C: usize>(cols: &[u32], vals: &[f32], y: *const f32, v: *const f32) -> (Row, Row) {
    const SETS: usize = 4;
    let sets = if DUAL { 2 } else { SETS };
    let zero = _mm256_setzero_ps();
    let (mut z, mut u) = ([zero; SETS], [zero; SETS]);
    let (mut zq, mut uq) = ([_mm_setzero_ps(); SETS], [_mm_setzero_ps(); SETS]);
    let n = cols.len().min(vals.len());
    let full = n - n % sets;
    let mut step = |a: usize, p: usize| {
        let (j, x) = (cols[p] as usize, _mm256_set1_ps(vals[p]));
        // SAFETY: the caller's contract.
        let yj = unsafe { load_row::<C>(y, j) };
        let vj = if DUAL { unsafe { load_row::<C>(v, j) } } else { yj };
        z[a] = _mm256_fmadd_ps(x, yj.lo, z[a]);
        if C > 8 {
            zq[a] = _mm_fmadd_ps(_mm256_castps256_ps128(x), _mm256_castps256_ps128(yj.hi), zq[a]);
        }
        if DUAL {
            u[a] = _mm256_fmadd_ps(x, vj.lo, u[a]);
            if C > 8 {
                uq[a] = _mm_fmadd_ps(_mm256_castps256_ps128(x), _mm256_castps256_ps128(vj.hi), uq[a]);
            }
        }
    };
    let mut p = 0;
    while p < full {
        for a in 0..sets {
            step(a, p + a);
        }
        p += sets;
    }
    for p in full..n {
        step(0, p);
    }
    let sum = |a: [__m256; SETS]| _mm256_add_ps(_mm256_add_ps(a[0], a[1]), _mm256_add_ps(a[2], a[3]));
    let sum_q = |a: [__m128; SETS]| _mm256_zextps128_ps256(_mm_add_ps(_mm_add_ps(a[0], a[1]), _mm_add_ps(a[2], a[3])));
    (Row { lo: sum(z), hi: sum_q(zq) }, Row { lo: sum(u), hi: sum_q(uq) })
}

/// Which rows of G a scatter updates (see [`csr_scatter`]).
#[derive(Clone, Copy)]
pub(super) enum Part<'a> {
    All,
    /// Rows `0..split.col`.
    Below(&'a Split),
    /// Rows `split.col..d`, with `g` starting at row `split.col`.
    From(&'a Split),
}

impl Part<'_> {
    /// G's first row in `g`.
    fn first(self) -> usize {
        match self {
            Part::From(split) => split.col as usize,
            _ => 0,
        }
    }

    /// The entries `span` (sorted columns) that fall in this part, `at(split)` being where
    /// they reach the split column.
    fn cut(self, span: std::ops::Range<usize>, at: impl FnOnce(&Split) -> usize) -> std::ops::Range<usize> {
        match self {
            Part::All => span,
            Part::Below(split) => span.start..at(split),
            Part::From(split) => at(split)..span.end,
        }
    }
}

/// `G[j, :] += x_j·e` over sparse entries, G row-major with `C` entries a row and `g` starting
/// at row `first` (see [`csr_scatter`]); one class is a scalar.
///
/// Safety: every column index is in `first..first + g.len() / C`.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn scatter<const C: usize>(cols: &[u32], vals: &[f32], e: Row, first: usize, g: &mut [f32]) {
    debug_assert!(cols.iter().all(|&j| j as usize >= first && (j as usize + 1 - first) * C <= g.len()));
    if C == 1 {
        let e = _mm256_cvtss_f32(e.lo);
        for (&j, &xv) in cols.iter().zip(vals) {
            g[j as usize - first] += xv * e;
        }
        return;
    }
    let g = g.as_mut_ptr();
    let e_hi = _mm256_castps256_ps128(e.hi);
    for (&j, &xv) in cols.iter().zip(vals) {
        let x = _mm256_set1_ps(xv);
        // SAFETY: this function's contract (checked in debug builds above).
        unsafe {
            let gj = g.add((j as usize - first) * C);
            _mm256_storeu_ps(gj, _mm256_fmadd_ps(x, e.lo, _mm256_loadu_ps(gj)));
            store_pair(gj.add(8), _mm_fmadd_ps(_mm256_castps256_ps128(x), e_hi, load_pair(gj.add(8))));
        }
    }
}

/// The widest dense rows the AVX2 kernels take (eight 8-lane chunks, held in registers);
/// wider ones run the portable kernels.
pub(super) const MAX_DENSE_COLS: usize = 64;

/// Calls `$kernel::<CH>(args)` with `CH = ⌈d/8⌉`, the register chunks of a dense row (1 to 8,
/// each compiled), or panics naming `$what` for a wider row.
macro_rules! by_chunks {
    ($d:expr, $kernel:ident($($arg:expr),*), $what:literal) => {
        match $d.div_ceil(8) {
            1 => $kernel::<1>($($arg),*),
            2 => $kernel::<2>($($arg),*),
            3 => $kernel::<3>($($arg),*),
            4 => $kernel::<4>($($arg),*),
            5 => $kernel::<5>($($arg),*),
            6 => $kernel::<6>($($arg),*),
            7 => $kernel::<7>($($arg),*),
            8 => $kernel::<8>($($arg),*),
            _ => panic!("{}: {} columns (at most {MAX_DENSE_COLS})", $what, $d),
        }
    };
}

/// Dense rows, one class, element-wise losses (ijcnn1), first pass: the dot products eight
/// rows at a time (each row's partial sums in a register, the eight reduced together by a
/// horizontal-add tree into one register of z), then the row terms, written to `e` (`b`
/// entries; `u` is work space of as many). y (and v) are loaded once, into registers; the
/// batch rows stay in L1 for [`dense_scatter`].
///
/// Safety: the CPU has AVX2 and FMA; `data` holds every batch row (`d` entries each, `d ≤`
/// [`MAX_DENSE_COLS`]), `f.y` (and `f.v`) have `d` entries, `e` at least `b`.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn dense_terms(f: &Call<'_, f32>, data: &[f32], d: usize, e: &mut [f32], u: &mut [f32]) {
    assert!(
        e.len() >= f.rows.len() && u.len() >= f.rows.len() && f.y.len() == d && f.v.is_none_or(|v| v.len() == d),
        "avx2::dense_terms: shapes"
    );
    // SAFETY (all): this function's contract.
    unsafe { by_chunks!(d, dense_terms_n(f, data, d, e, u), "avx2::dense_terms") }
}

/// Chunk `q` (8 entries) of a `d`-entry row at `p` of `CH` chunks: a plain load, or for the last
/// chunk of a row that does not fill it, a masked one (zeros past d).
///
/// Safety: the row's `d` entries are readable.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn chunk<const CH: usize>(p: *const f32, d: usize, q: usize) -> __m256 {
    // SAFETY: the caller's contract; a full chunk lies inside the row, the mask keeps the last
    // one's lanes inside it.
    unsafe {
        if q + 1 < CH || d.is_multiple_of(8) {
            _mm256_loadu_ps(p.add(8 * q))
        } else {
            _mm256_maskload_ps(p.add(8 * q), _mm256_castps_si256(lanes(d % 8).lo))
        }
    }
}

#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn dense_terms_n<const CH: usize>(f: &Call<'_, f32>, data: &[f32], d: usize, e: &mut [f32], u: &mut [f32]) {
    let b = f.rows.len();
    let x = |row: u32| data[row as usize * d..][..d].as_ptr();
    // SAFETY (every chunk read below): y, v and every batch row have d entries.
    let ys: [__m256; CH] = std::array::from_fn(|q| unsafe { chunk::<CH>(f.y.as_ptr(), d, q) });
    let vs: Option<[__m256; CH]> = f.v.map(|v| std::array::from_fn(|q| unsafe { chunk::<CH>(v.as_ptr(), d, q) }));
    // Eight rows' dot products with `w` → one register of them: each row's partial sums in a
    // register, the eight reduced together by a horizontal-add tree.
    let dots8 = |rows: &[u32], w: &[__m256; CH]| {
        let mut acc = [_mm256_setzero_ps(); 8];
        for (a, &row) in acc.iter_mut().zip(rows) {
            let p = x(row);
            *a = _mm256_mul_ps(unsafe { chunk::<CH>(p, d, 0) }, w[0]);
            for (q, &wq) in w.iter().enumerate().skip(1) {
                *a = _mm256_fmadd_ps(unsafe { chunk::<CH>(p, d, q) }, wq, *a);
            }
        }
        let h01 = _mm256_hadd_ps(acc[0], acc[1]);
        let h23 = _mm256_hadd_ps(acc[2], acc[3]);
        let h45 = _mm256_hadd_ps(acc[4], acc[5]);
        let h67 = _mm256_hadd_ps(acc[6], acc[7]);
        // Lanes: [0 1 2 3 | 0 1 2 3] for rows 0–3 and 4–7, low and high halves of each row.
        let (h0123, h4567) = (_mm256_hadd_ps(h01, h23), _mm256_hadd_ps(h45, h67));
        _mm256_add_ps(_mm256_permute2f128_ps::<0x20>(h0123, h4567), _mm256_permute2f128_ps::<0x31>(h0123, h4567))
    };
    for k0 in (0..b).step_by(8) {
        let n = (b - k0).min(8);
        let rows = &f.rows[k0..k0 + n];
        // Batch rows are scattered through X: fetch the next eight while these are used.
        for &ahead in f.rows.iter().skip(k0 + 8).take(8) {
            super::super::prefetch(&data[ahead as usize * d..][..d]);
        }
        // SAFETY: block k0 lies inside e and u (the caller checked their lengths).
        unsafe {
            store_block(e, k0, n, dots8(rows, &ys));
            if let Some(vs) = vs.as_ref() {
                store_block(u, k0, n, dots8(rows, vs));
            }
        }
    }
    // The row terms after all the dot products (z in e, u in `u`), so that the exp and
    // division chains of successive blocks overlap (measured: 5 % of an ijcnn1 iteration).
    for k0 in (0..b).step_by(8) {
        let n = (b - k0).min(8);
        let rows = &f.rows[k0..k0 + n];
        // SAFETY: as above.
        let (zk, uk) = unsafe { (load_block(e, k0, n), f.v.map(|_| load_block(u, k0, n))) };
        let t: [f32; 8] = std::array::from_fn(|i| rows.get(i).map_or(0.0, |&r| f.targets[r as usize]));
        // SAFETY: t holds 8 lanes.
        let tv = unsafe { _mm256_loadu_ps(t.as_ptr()) };
        let ek = _mm256_mul_ps(pointwise_term(f.loss, zk, tv, uk), row_coefs(f, rows));
        // SAFETY: as above.
        unsafe { store_block(e, k0, n, ek) };
    }
}

/// `s[k0..k0 + n] = v`'s first `n ≤ 8` lanes (a plain store for a whole block).
///
/// Safety: `k0 + n ≤ s.len()`.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn store_block(s: &mut [f32], k0: usize, n: usize, v: __m256) {
    // SAFETY: the caller's contract; the mask keeps a short block's lanes inside s.
    unsafe {
        if n == 8 {
            _mm256_storeu_ps(s.as_mut_ptr().add(k0), v)
        } else {
            _mm256_maskstore_ps(s.as_mut_ptr().add(k0), _mm256_castps_si256(lanes(n).lo), v)
        }
    }
}

/// `s[k0..k0 + n]` in the first `n ≤ 8` lanes (0 in the others).
///
/// Safety: `k0 + n ≤ s.len()`.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn load_block(s: &[f32], k0: usize, n: usize) -> __m256 {
    // SAFETY: as for `store_block`.
    unsafe {
        if n == 8 {
            _mm256_loadu_ps(s.as_ptr().add(k0))
        } else {
            _mm256_maskload_ps(s.as_ptr().add(k0), _mm256_castps_si256(lanes(n).lo))
        }
    }
}

/// Dense rows, second pass: `G += Σ_k e_k·x_k` into `g` (`d` entries) in place — the
/// caller's `out` after its regulariser part — every chunk of G in registers (two sets, so
/// consecutive rows' multiply-adds do not wait on each other).
///
/// Safety: the CPU has AVX2 and FMA; `data` holds every batch row, `e` the `b` terms of
/// [`dense_terms`], `g` has `d ≤` [`MAX_DENSE_COLS`] entries.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn dense_scatter(rows: &[u32], data: &[f32], d: usize, e: &[f32], g: &mut [f32]) {
    assert!(e.len() >= rows.len() && g.len() == d, "avx2::dense_scatter: shapes");
    // SAFETY (all): this function's contract.
    unsafe { by_chunks!(d, dense_scatter_n(rows, data, d, e, g), "avx2::dense_scatter") }
}

#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn dense_scatter_n<const CH: usize>(rows: &[u32], data: &[f32], d: usize, e: &[f32], g: &mut [f32]) {
    // SAFETY (every chunk read): g and every batch row have d entries.
    let mut acc: [[__m256; CH]; 2] = [std::array::from_fn(|q| unsafe { chunk::<CH>(g.as_ptr(), d, q) }), [_mm256_setzero_ps(); CH]];
    for (k, (&row, &ek)) in rows.iter().zip(e).enumerate() {
        let (p, ek) = (data[row as usize * d..][..d].as_ptr(), _mm256_set1_ps(ek));
        for (q, a) in acc[k % 2].iter_mut().enumerate() {
            *a = _mm256_fmadd_ps(ek, unsafe { chunk::<CH>(p, d, q) }, *a);
        }
    }
    for (q, (&a0, &a1)) in acc[0].iter().zip(&acc[1]).enumerate() {
        let sum = _mm256_add_ps(a0, a1);
        // SAFETY: a full chunk lies inside g; the mask keeps the last one's lanes inside it.
        unsafe {
            if q + 1 < CH || d.is_multiple_of(8) {
                _mm256_storeu_ps(g.as_mut_ptr().add(8 * q), sum)
            } else {
                _mm256_maskstore_ps(g.as_mut_ptr().add(8 * q), _mm256_castps_si256(lanes(d % 8).lo), sum)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `dst = e^src` entry by entry, eight at a time (the tail masked).
    ///
    /// Safety: the CPU has AVX2 and FMA.
    unsafe fn exp_slice(src: &[f32], dst: &mut [f32]) {
        for (s, d) in src.chunks(8).zip(dst.chunks_mut(8)) {
            // SAFETY: the caller's contract; the mask keeps the lanes inside both chunks.
            unsafe {
                let m = _mm256_castps_si256(lanes(s.len()).lo);
                _mm256_maskstore_ps(d.as_mut_ptr(), m, exp(_mm256_maskload_ps(s.as_ptr(), m)))
            };
        }
    }

    /// The polynomial `exp` against f64's on a fine grid over [−87.3, 88.7] (softmax arguments
    /// ≤ 0, sigmoid arguments of either sign, hyperparameters), to a few f32 ulps; 0 below the
    /// range, +∞ above; NaN stays NaN.
    #[test]
    fn exp_is_accurate() {
        if !available() {
            eprintln!("no AVX2 and FMA on this CPU: nothing to check");
            return;
        }
        let xs: Vec<f32> =
            (0..200_000).map(|i| -87.3 + i as f32 * (176.0 / 200_000.0)).chain([0.0, -0.0, 1e-30, -1e-30, 88.0, 88.72]).collect();
        let mut got = vec![0.0f32; xs.len()];
        // SAFETY: the CPU has AVX2 and FMA (checked above); got is as long as xs.
        unsafe { exp_slice(&xs, &mut got) };
        let mut worst = 0.0f64;
        for (&x, &g) in xs.iter().zip(&got) {
            let want = (x as f64).exp();
            worst = worst.max(((g as f64) - want).abs() / want);
        }
        assert!(worst < 3.0e-7, "exp: worst relative error {worst:.2e}");
        let special = [f32::NAN, -88.0, -100.0, f32::NEG_INFINITY, -1e30, 88.73, 1e30, f32::INFINITY, 1.0];
        let mut out = [1.0f32; 9];
        // SAFETY: as above (9 entries: a full chunk and a masked tail).
        unsafe { exp_slice(&special, &mut out) };
        assert!(out[0].is_nan(), "exp(NaN) must be NaN");
        assert!(out[1..5].iter().all(|&v| v == 0.0), "exp below the range must be 0: {out:?}");
        assert!(out[5..8].iter().all(|&v| v == f32::INFINITY), "exp above the range must be +inf: {out:?}");
        assert!((out[8] - std::f32::consts::E).abs() < 1e-6, "exp(1) in the tail chunk: {}", out[8]);
    }

    /// The horizontal sum and maximum against plain ones (exact on these powers of two).
    #[test]
    fn reductions_sum_and_max() {
        if !available() {
            eprintln!("no AVX2 and FMA on this CPU: nothing to check");
            return;
        }
        let v: [f32; 8] = [1.0, -2.0, 4.0, 8.0, 16.0, 32.0, -64.0, 128.0];
        // SAFETY: the CPU has AVX2 (checked above); v holds 8 lanes.
        let (s, m) = unsafe { (reduce_add(_mm256_loadu_ps(v.as_ptr())), reduce_max(_mm256_loadu_ps(v.as_ptr()))) };
        assert_eq!((s, m), (123.0, 128.0));
    }
}
