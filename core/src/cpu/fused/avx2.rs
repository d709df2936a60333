//! The fused GLM batch oracle in f32 with AVX2 and FMA intrinsics, for x86-64 CPUs without
//! AVX-512 (AMD Zen 1–3, Intel client cores). The passes are those of `avx512.rs`; what
//! differs is the register width: a padded row of up to 16 classes is two 8-lane registers
//! (the upper one only when c > 8), and dense c = 1 rows are reduced eight at a time by a
//! horizontal-add tree, so that the row terms run on whole registers. The row terms are
//! `lanes.rs`'s, on one register (8 rows, or a row's one class) or a pair (a row of classes).
//! The portable kernels in `fused.rs` serve f64 and the tests compare both against them.

use std::arch::x86_64::*;

use super::super::prefetch_bytes;
use super::super::Split;
use super::lanes::{pointwise_term, row_coefs, softmax_term, Avx2, Isa, Pair, Two, MAX_LANES};
use super::{Call, ShiftedCsr};
use crate::backend::LossKind;

/// Whether this CPU has AVX2 and FMA (detected once, cached by std).
pub(super) fn available() -> bool {
    Avx2::new().is_some()
}

/// Sixteen lanes, a padded row: classes 0–7 in `lo`, 8–15 in `hi`.
type Row = Two<__m256>;

/// All-ones in the lanes below `c` (class lanes), as float masks for `and`/`blendv`.
#[inline(always)]
fn lanes(c: usize) -> Two<__m256> {
    // SAFETY: only the AVX2 kernels (whose callers guarantee AVX2) call this.
    Pair(unsafe { Avx2::assume() }).below(c)
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
pub(super) unsafe fn csr_terms(f: &Call<'_, f32>, x: ShiftedCsr<'_, f32>, c: usize, e: &mut [f32], u: &mut [f32]) -> [f32; 16] {
    // SAFETY (both): this function's contract.
    match c {
        1 => unsafe { csr_terms_c::<1>(f, x, e, u) },
        10 => unsafe { csr_terms_c::<10>(f, x, e, u) },
        _ => panic!("avx2::csr_terms: {c} classes (1 or 10 are compiled)"),
    }
}

#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn csr_terms_c<const C: usize>(f: &Call<'_, f32>, x: ShiftedCsr<'_, f32>, e: &mut [f32], u: &mut [f32]) -> [f32; 16] {
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
    let (zs, us) = match x.shift {
        Some((cols, vals)) => dots(cols, vals),
        None => (zero, zero),
    };
    assert!(e.len() >= f.rows.len() * C && u.len() >= f.rows.len() * C, "avx2::csr_terms: e or u too short");
    // All the rows' products first (z in e, u in `u`), the row terms after, so that the
    // softmax's reductions and exp of successive rows overlap instead of each holding up the
    // next row's loads.
    for (k, &row) in f.rows.iter().enumerate() {
        // The whole of a later row, two rows ahead (see `avx512.rs`).
        if let Some(&ahead) = f.rows.get(k + 2) {
            let (cols, vals) = x.s.line(ahead as usize);
            prefetch_bytes(cols, usize::MAX);
            prefetch_bytes(vals, usize::MAX);
        }
        let (cols, vals) = x.s.line(row as usize);
        let (z, uk) = dots(cols, vals);
        // SAFETY: row k of e and u lies inside them (asserted above).
        unsafe {
            store_row::<C>(e.as_mut_ptr(), k, Row { lo: _mm256_add_ps(z.lo, zs.lo), hi: _mm256_add_ps(z.hi, zs.hi) });
            if f.v.is_some() {
                store_row::<C>(u.as_mut_ptr(), k, Row { lo: _mm256_add_ps(uk.lo, us.lo), hi: _mm256_add_ps(uk.hi, us.hi) });
            }
        }
    }
    // SAFETY: this function's contract.
    let s = unsafe { Avx2::assume() };
    let s2 = Pair(s);
    let mut e_sum = zero;
    let mut coefs = [0.0; MAX_LANES];
    for (k, &row) in f.rows.iter().enumerate() {
        if k % 8 == 0 {
            s.store(row_coefs(s, f, &f.rows[k..]), &mut coefs);
        }
        // SAFETY: as above.
        let z = unsafe { load_row::<C>(e.as_ptr(), k) };
        let uk = if f.v.is_some() { unsafe { load_row::<C>(u.as_ptr(), k) } } else { zero };
        let t = f.targets[row as usize];
        let ek = match f.loss {
            LossKind::Softmax => softmax_term(s2, z, mask, t, f.v.map(|_| uk)),
            // One class: lane 0 of the low register.
            loss => Row { lo: s.keep(mask.lo, pointwise_term(s, loss, z.lo, s.splat(t), f.v.map(|_| uk.lo))), hi: s.splat(0.0) },
        };
        let ek = s2.mul(ek, s2.splat(coefs[k % 8]));
        e_sum = s2.add(e_sum, ek);
        // SAFETY: as above.
        unsafe { store_row::<C>(e.as_mut_ptr(), k, ek) };
    }
    let mut sum = [0.0; 16];
    s2.store(e_sum, &mut sum);
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
pub(super) unsafe fn csr_scatter(
    rows: &[u32],
    x: ShiftedCsr<'_, f32>,
    c: usize,
    e: &[f32],
    e_sum: &[f32; 16],
    part: Part<'_>,
    g: &mut [f32],
) {
    // SAFETY (both): this function's contract.
    match c {
        1 => unsafe { csr_scatter_c::<1>(rows, x, e, e_sum, part, g) },
        10 => unsafe { csr_scatter_c::<10>(rows, x, e, e_sum, part, g) },
        _ => panic!("avx2::csr_scatter: {c} classes (1 or 10 are compiled)"),
    }
}

#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn csr_scatter_c<const C: usize>(rows: &[u32], x: ShiftedCsr<'_, f32>, e: &[f32], e_sum: &[f32; 16], part: Part<'_>, g: &mut [f32]) {
    assert!(e.len() >= rows.len() * C, "avx2::csr_scatter: e too short");
    let first = part.first();
    for (k, &row) in rows.iter().enumerate() {
        let row = row as usize;
        let entries = part.cut(x.s.span(row), |split| split.at[row] as usize);
        // SAFETY: row k of e lies inside e (asserted above); the part's entries have columns
        // in its rows (this function's contract).
        unsafe {
            let ek = load_row::<C>(e.as_ptr(), k);
            scatter::<C>(&x.s.idx[entries.clone()], &x.s.values[entries], ek, first, g)
        };
    }
    // X = S + 1sᵀ:  G += s ⊗ Σ_k e_k.
    if let Some((cols, vals)) = x.shift {
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
    // SAFETY: this function's contract.
    let s = unsafe { Avx2::assume() };
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
        let ek = s.mul(pointwise_term(s, f.loss, zk, tv, uk), row_coefs(s, f, rows));
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
