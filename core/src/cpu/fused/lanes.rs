//! The fused kernels' row-term math, written once over a register of f32 lanes: `exp`, `σ`,
//! the element-wise losses' terms, the softmax term of one row and the rows' weights. [`Isa`]
//! names the few lane operations that math needs; each instruction set implements it —
//! [`Avx2`] (8 lanes), [`Avx512`] (16), and [`Pair`] of either (AVX2 holds a padded row of up
//! to 16 classes as two registers) — and `avx2.rs` and `avx512.rs` keep only what differs
//! between them: how rows are loaded, accumulated and scattered.
//!
//! A value of an `Isa` type is the proof that the CPU has its instructions (one is made only
//! after detection, and it is zero-sized), so its operations are safe functions. They and the
//! math here are `#[inline(always)]`: inlined into a kernel compiled with the instruction set
//! enabled, each operation becomes the one instruction it names (no calls, no spills).

use std::arch::x86_64::*;

use super::Call;
use crate::backend::LossKind;

/// The lanes of a register of f32s on one instruction set, and the operations the row terms
/// use. `min` and `max` follow x86: where either operand is NaN they return the second.
pub(super) trait Isa: Copy {
    /// A register of [`Isa::LANES`] f32s.
    type V: Copy;
    /// One flag per lane.
    type M: Copy;
    /// The lanes of a register.
    const LANES: usize;
    fn splat(self, x: f32) -> Self::V;
    fn add(self, a: Self::V, b: Self::V) -> Self::V;
    fn sub(self, a: Self::V, b: Self::V) -> Self::V;
    fn mul(self, a: Self::V, b: Self::V) -> Self::V;
    fn div(self, a: Self::V, b: Self::V) -> Self::V;
    fn min(self, a: Self::V, b: Self::V) -> Self::V;
    fn max(self, a: Self::V, b: Self::V) -> Self::V;
    /// `a·b + c`, one rounding.
    fn fmadd(self, a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    /// `c − a·b`, one rounding.
    fn fnmadd(self, a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    /// The nearest integer (ties to even).
    fn round(self, x: Self::V) -> Self::V;
    /// `p·2ⁿ` for integral `n` in [−126, 128].
    fn scale2(self, p: Self::V, n: Self::V) -> Self::V;
    /// `a < b` (false where either is NaN).
    fn lt(self, a: Self::V, b: Self::V) -> Self::M;
    /// `a > b` (false where either is NaN).
    fn gt(self, a: Self::V, b: Self::V) -> Self::M;
    /// `a` where `m`, `b` elsewhere.
    fn select(self, m: Self::M, a: Self::V, b: Self::V) -> Self::V;
    /// `v` where `m`, 0 elsewhere.
    fn keep(self, m: Self::M, v: Self::V) -> Self::V;
    /// 0 where `m`, `v` elsewhere.
    fn clear(self, m: Self::M, v: Self::V) -> Self::V;
    /// `a − b` where `m`, `a` elsewhere.
    fn masked_sub(self, m: Self::M, a: Self::V, b: Self::V) -> Self::V;
    fn and(self, a: Self::M, b: Self::M) -> Self::M;
    /// The lanes below `c`.
    fn below(self, c: usize) -> Self::M;
    /// Lane `i` alone (no lane when `i ≥ LANES`).
    fn lane_is(self, i: usize) -> Self::M;
    fn reduce_add(self, v: Self::V) -> f32;
    fn reduce_max(self, v: Self::V) -> f32;
    /// `Σ a∘b`.
    fn dot(self, a: Self::V, b: Self::V) -> f32 {
        self.reduce_add(self.mul(a, b))
    }
    /// The first `LANES` entries of `s`.
    fn load(self, s: &[f32]) -> Self::V;
    /// `v` into the first `LANES` entries of `s`.
    fn store(self, v: Self::V, s: &mut [f32]);
}

/// The most lanes of any [`Isa`] here (a padded row).
pub(super) const MAX_LANES: usize = 16;

/// `e^x` lane by lane: Cephes `expf` (Cody–Waite reduction by ln 2, a degree-6 polynomial,
/// then `2ⁿ`). Below −87.34 the result is 0 (it would be below f32's smallest normal number,
/// which the kernels flush to 0 anyway), above 88.72 it is +∞, as libm's. Relative error below
/// 2·10⁻⁷ in between; NaN in, NaN out.
#[inline(always)]
pub(super) fn exp<S: Isa>(s: S, x: S::V) -> S::V {
    const LOW: f32 = -87.336_54; // ln(2^-126)
    const HIGH: f32 = 88.722_84; // ln(f32::MAX)
    let under = s.lt(x, s.splat(LOW));
    let over = s.gt(x, s.splat(HIGH));
    // max/min return their second operand when either is NaN: x second keeps NaNs.
    let x = s.min(s.splat(HIGH), s.max(s.splat(LOW), x));
    let n = s.round(s.mul(x, s.splat(std::f32::consts::LOG2_E)));
    let r = s.fnmadd(n, s.splat(0.693_359_4), x);
    let r = s.fnmadd(n, s.splat(-2.121_944_4e-4), r);
    let mut p = s.splat(1.987_569_1e-4);
    for c in [1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 0.5] {
        p = s.fmadd(p, r, s.splat(c));
    }
    let p = s.add(s.fmadd(s.mul(p, r), r, r), s.splat(1.0));
    s.select(over, s.splat(f32::INFINITY), s.clear(under, s.scale2(p, n)))
}

/// `σ(z)` lane by lane.
#[inline(always)]
pub(super) fn sigmoid<S: Isa>(s: S, z: S::V) -> S::V {
    let one = s.splat(1.0);
    s.div(one, s.add(one, exp(s, s.sub(s.splat(0.0), z))))
}

/// The element-wise losses' row terms on lanes that are independent rows (or the one class
/// of a row): `ℓ'(z; t)`, or with `u` the curvature `ℓ''(z)·u`.
#[inline(always)]
pub(super) fn pointwise_term<S: Isa>(s: S, loss: LossKind, z: S::V, t: S::V, u: Option<S::V>) -> S::V {
    match (loss, u) {
        (LossKind::Squared, None) => s.sub(z, t),
        (LossKind::Squared, Some(u)) => u,
        (LossKind::Logistic, None) => s.sub(sigmoid(s, z), t),
        (LossKind::Logistic, Some(u)) => {
            let p = sigmoid(s, z);
            s.mul(s.mul(p, s.sub(s.splat(1.0), p)), u)
        }
        (LossKind::Softmax, _) => unreachable!("softmax rows go through softmax_term"),
    }
}

/// One row's softmax term on the lanes of `mask` (its classes): `P − 1_t` or `P∘(U − ⟨P, U⟩)`,
/// with `P = softmax(z)`; 0 in the other lanes.
#[inline(always)]
pub(super) fn softmax_term<S: Isa>(s: S, z: S::V, mask: S::M, label: f32, u: Option<S::V>) -> S::V {
    let top = s.reduce_max(s.select(mask, z, s.splat(f32::NEG_INFINITY)));
    let e = s.keep(mask, exp(s, s.sub(z, s.splat(top))));
    let p = s.mul(e, s.splat(1.0 / s.reduce_add(e)));
    match u {
        None => {
            // A label outside 0..c subtracts nothing (as the portable kernel).
            let at = if (0.0..S::LANES as f32).contains(&label) { label as usize } else { usize::MAX };
            s.masked_sub(s.and(s.lane_is(at), mask), p, s.splat(1.0))
        }
        Some(u) => {
            let pu = s.dot(p, u);
            s.mul(p, s.sub(u, s.splat(pu)))
        }
    }
}

/// A row's term for any loss, on the lanes of `mask` (its classes).
#[inline(always)]
pub(super) fn row_term<S: Isa>(s: S, loss: LossKind, z: S::V, mask: S::M, t: f32, u: Option<S::V>) -> S::V {
    match loss {
        LossKind::Softmax => softmax_term(s, z, mask, t, u),
        _ => s.keep(mask, pointwise_term(s, loss, z, s.splat(t), u)),
    }
}

/// The weights of the next `LANES` batch rows (fewer at the batch's end), `coef·σ(λ_row)` or
/// `coef`, with the vector sigmoid (a libm `exp` per row cost as much as a tenth of MNIST's
/// step).
#[inline(always)]
pub(super) fn row_coefs<S: Isa>(s: S, f: &Call<'_, f32>, rows: &[u32]) -> S::V {
    match f.weights {
        None => s.splat(f.coef),
        Some(l) => {
            let lam: [f32; MAX_LANES] = std::array::from_fn(|i| match rows.get(i) {
                Some(&r) if i < S::LANES => l[r as usize],
                _ => 0.0,
            });
            s.mul(s.splat(f.coef), sigmoid(s, s.load(&lam)))
        }
    }
}

/// AVX2 with FMA: 8 lanes, masks as all-ones floats (for `and` and `blendv`).
#[derive(Clone, Copy, Debug)]
pub(super) struct Avx2(());

impl Avx2 {
    /// The token, where this CPU has AVX2 and FMA (detected once, cached by std).
    pub(super) fn new() -> Option<Self> {
        (std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")).then_some(Avx2(()))
    }

    /// The token inside a kernel compiled for AVX2.
    ///
    /// Safety: the CPU has AVX2 and FMA (the kernel's own contract).
    #[inline(always)]
    pub(super) unsafe fn assume() -> Self {
        Avx2(())
    }
}

/// The lanes of `first..first + 8` below `c`, as a float mask.
#[inline(always)]
fn avx2_below(first: i32, c: i32) -> __m256 {
    // SAFETY: only called by Avx2's operations (the CPU has AVX2).
    unsafe {
        let idx = _mm256_setr_epi32(first, first + 1, first + 2, first + 3, first + 4, first + 5, first + 6, first + 7);
        _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(c), idx))
    }
}

// SAFETY (every `unsafe` block in this impl): an `Avx2` exists only where the CPU has AVX2 and
// FMA (`Avx2::new`); loads and stores are of slices checked to hold 8 entries.
impl Isa for Avx2 {
    type V = __m256;
    type M = __m256;
    const LANES: usize = 8;
    #[inline(always)]
    fn splat(self, x: f32) -> __m256 {
        unsafe { _mm256_set1_ps(x) }
    }
    #[inline(always)]
    fn add(self, a: __m256, b: __m256) -> __m256 {
        unsafe { _mm256_add_ps(a, b) }
    }
    #[inline(always)]
    fn sub(self, a: __m256, b: __m256) -> __m256 {
        unsafe { _mm256_sub_ps(a, b) }
    }
    #[inline(always)]
    fn mul(self, a: __m256, b: __m256) -> __m256 {
        unsafe { _mm256_mul_ps(a, b) }
    }
    #[inline(always)]
    fn div(self, a: __m256, b: __m256) -> __m256 {
        unsafe { _mm256_div_ps(a, b) }
    }
    #[inline(always)]
    fn min(self, a: __m256, b: __m256) -> __m256 {
        unsafe { _mm256_min_ps(a, b) }
    }
    #[inline(always)]
    fn max(self, a: __m256, b: __m256) -> __m256 {
        unsafe { _mm256_max_ps(a, b) }
    }
    #[inline(always)]
    fn fmadd(self, a: __m256, b: __m256, c: __m256) -> __m256 {
        unsafe { _mm256_fmadd_ps(a, b, c) }
    }
    #[inline(always)]
    fn fnmadd(self, a: __m256, b: __m256, c: __m256) -> __m256 {
        unsafe { _mm256_fnmadd_ps(a, b, c) }
    }
    #[inline(always)]
    fn round(self, x: __m256) -> __m256 {
        unsafe { _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(x) }
    }
    /// `2ⁿ = 2ʰ·2ⁿ⁻ʰ` with `h = ⌊n/2⌋`, each a float with biased exponent `h + 127` (or
    /// `n − h + 127`) and no mantissa (AVX2 has no `scalef`).
    #[inline(always)]
    fn scale2(self, p: __m256, n: __m256) -> __m256 {
        unsafe {
            let n = _mm256_cvtps_epi32(n);
            let h = _mm256_srai_epi32::<1>(n);
            // (Not a closure: a closure is compiled without AVX2, and its intrinsics become calls.)
            let bias = _mm256_set1_epi32(127);
            let pow2_h = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(h, bias)));
            let pow2_rest = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(_mm256_sub_epi32(n, h), bias)));
            _mm256_mul_ps(_mm256_mul_ps(p, pow2_h), pow2_rest)
        }
    }
    #[inline(always)]
    fn lt(self, a: __m256, b: __m256) -> __m256 {
        unsafe { _mm256_cmp_ps::<_CMP_LT_OQ>(a, b) }
    }
    #[inline(always)]
    fn gt(self, a: __m256, b: __m256) -> __m256 {
        unsafe { _mm256_cmp_ps::<_CMP_GT_OQ>(a, b) }
    }
    #[inline(always)]
    fn select(self, m: __m256, a: __m256, b: __m256) -> __m256 {
        unsafe { _mm256_blendv_ps(b, a, m) }
    }
    #[inline(always)]
    fn keep(self, m: __m256, v: __m256) -> __m256 {
        unsafe { _mm256_and_ps(m, v) }
    }
    #[inline(always)]
    fn clear(self, m: __m256, v: __m256) -> __m256 {
        unsafe { _mm256_andnot_ps(m, v) }
    }
    #[inline(always)]
    fn masked_sub(self, m: __m256, a: __m256, b: __m256) -> __m256 {
        unsafe { _mm256_sub_ps(a, _mm256_and_ps(m, b)) }
    }
    #[inline(always)]
    fn and(self, a: __m256, b: __m256) -> __m256 {
        unsafe { _mm256_and_ps(a, b) }
    }
    #[inline(always)]
    fn below(self, c: usize) -> __m256 {
        avx2_below(0, c.min(8) as i32)
    }
    #[inline(always)]
    fn lane_is(self, i: usize) -> __m256 {
        unsafe {
            let at = if i < 8 { i as i32 } else { -1 };
            let idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
            _mm256_castsi256_ps(_mm256_cmpeq_epi32(idx, _mm256_set1_epi32(at)))
        }
    }
    #[inline(always)]
    fn reduce_add(self, v: __m256) -> f32 {
        unsafe {
            let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
            let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
            _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
        }
    }
    #[inline(always)]
    fn reduce_max(self, v: __m256) -> f32 {
        unsafe {
            let s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
            let s = _mm_max_ps(s, _mm_movehl_ps(s, s));
            _mm_cvtss_f32(_mm_max_ss(s, _mm_movehdup_ps(s)))
        }
    }
    #[inline(always)]
    fn load(self, s: &[f32]) -> __m256 {
        let s = &s[..8];
        unsafe { _mm256_loadu_ps(s.as_ptr()) }
    }
    #[inline(always)]
    fn store(self, v: __m256, s: &mut [f32]) {
        let s = &mut s[..8];
        unsafe { _mm256_storeu_ps(s.as_mut_ptr(), v) }
    }
}

/// AVX-512F: 16 lanes, masks as mask registers.
#[derive(Clone, Copy, Debug)]
pub(super) struct Avx512(());

impl Avx512 {
    /// The token, where this CPU has the AVX-512 foundation instructions.
    pub(super) fn new() -> Option<Self> {
        std::is_x86_feature_detected!("avx512f").then_some(Avx512(()))
    }

    /// The token inside a kernel compiled for AVX-512F.
    ///
    /// Safety: the CPU has AVX-512F (the kernel's own contract).
    #[inline(always)]
    pub(super) unsafe fn assume() -> Self {
        Avx512(())
    }
}

// SAFETY (every `unsafe` block in this impl): an `Avx512` exists only where the CPU has
// AVX-512F (`Avx512::new`); loads and stores are of slices checked to hold 16 entries.
impl Isa for Avx512 {
    type V = __m512;
    type M = __mmask16;
    const LANES: usize = 16;
    #[inline(always)]
    fn splat(self, x: f32) -> __m512 {
        unsafe { _mm512_set1_ps(x) }
    }
    #[inline(always)]
    fn add(self, a: __m512, b: __m512) -> __m512 {
        unsafe { _mm512_add_ps(a, b) }
    }
    #[inline(always)]
    fn sub(self, a: __m512, b: __m512) -> __m512 {
        unsafe { _mm512_sub_ps(a, b) }
    }
    #[inline(always)]
    fn mul(self, a: __m512, b: __m512) -> __m512 {
        unsafe { _mm512_mul_ps(a, b) }
    }
    #[inline(always)]
    fn div(self, a: __m512, b: __m512) -> __m512 {
        unsafe { _mm512_div_ps(a, b) }
    }
    #[inline(always)]
    fn min(self, a: __m512, b: __m512) -> __m512 {
        unsafe { _mm512_min_ps(a, b) }
    }
    #[inline(always)]
    fn max(self, a: __m512, b: __m512) -> __m512 {
        unsafe { _mm512_max_ps(a, b) }
    }
    #[inline(always)]
    fn fmadd(self, a: __m512, b: __m512, c: __m512) -> __m512 {
        unsafe { _mm512_fmadd_ps(a, b, c) }
    }
    #[inline(always)]
    fn fnmadd(self, a: __m512, b: __m512, c: __m512) -> __m512 {
        unsafe { _mm512_fnmadd_ps(a, b, c) }
    }
    #[inline(always)]
    fn round(self, x: __m512) -> __m512 {
        unsafe { _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(x) }
    }
    #[inline(always)]
    fn scale2(self, p: __m512, n: __m512) -> __m512 {
        unsafe { _mm512_scalef_ps(p, n) }
    }
    #[inline(always)]
    fn lt(self, a: __m512, b: __m512) -> __mmask16 {
        unsafe { _mm512_cmp_ps_mask::<_CMP_LT_OQ>(a, b) }
    }
    #[inline(always)]
    fn gt(self, a: __m512, b: __m512) -> __mmask16 {
        unsafe { _mm512_cmp_ps_mask::<_CMP_GT_OQ>(a, b) }
    }
    #[inline(always)]
    fn select(self, m: __mmask16, a: __m512, b: __m512) -> __m512 {
        unsafe { _mm512_mask_blend_ps(m, b, a) }
    }
    #[inline(always)]
    fn keep(self, m: __mmask16, v: __m512) -> __m512 {
        unsafe { _mm512_maskz_mov_ps(m, v) }
    }
    #[inline(always)]
    fn clear(self, m: __mmask16, v: __m512) -> __m512 {
        unsafe { _mm512_maskz_mov_ps(!m, v) }
    }
    #[inline(always)]
    fn masked_sub(self, m: __mmask16, a: __m512, b: __m512) -> __m512 {
        unsafe { _mm512_mask_sub_ps(a, m, a, b) }
    }
    #[inline(always)]
    fn and(self, a: __mmask16, b: __mmask16) -> __mmask16 {
        a & b
    }
    #[inline(always)]
    fn below(self, c: usize) -> __mmask16 {
        ((1u32 << c.min(16)) - 1) as __mmask16
    }
    #[inline(always)]
    fn lane_is(self, i: usize) -> __mmask16 {
        if i < 16 {
            1 << i
        } else {
            0
        }
    }
    #[inline(always)]
    fn reduce_add(self, v: __m512) -> f32 {
        unsafe { _mm512_reduce_add_ps(v) }
    }
    #[inline(always)]
    fn reduce_max(self, v: __m512) -> f32 {
        unsafe { _mm512_reduce_max_ps(v) }
    }
    #[inline(always)]
    fn load(self, s: &[f32]) -> __m512 {
        let s = &s[..16];
        unsafe { _mm512_loadu_ps(s.as_ptr()) }
    }
    #[inline(always)]
    fn store(self, v: __m512, s: &mut [f32]) {
        let s = &mut s[..16];
        unsafe { _mm512_storeu_ps(s.as_mut_ptr(), v) }
    }
}

/// Two registers of an instruction set as one of twice the lanes: `lo` the first half.
#[derive(Clone, Copy, Debug)]
pub(super) struct Two<V> {
    pub(super) lo: V,
    pub(super) hi: V,
}

/// The instruction set `S` on pairs of its registers ([`Two`]). Each operation is spelled out
/// on both halves: a helper taking the operation as a closure or function item would be
/// compiled without the instruction set, and its intrinsics would become calls.
#[derive(Clone, Copy, Debug)]
pub(super) struct Pair<S>(pub(super) S);

impl<S: Isa> Isa for Pair<S> {
    type V = Two<S::V>;
    type M = Two<S::M>;
    const LANES: usize = 2 * S::LANES;
    #[inline(always)]
    fn splat(self, x: f32) -> Self::V {
        let v = self.0.splat(x);
        Two { lo: v, hi: v }
    }
    #[inline(always)]
    fn add(self, a: Self::V, b: Self::V) -> Self::V {
        Two { lo: self.0.add(a.lo, b.lo), hi: self.0.add(a.hi, b.hi) }
    }
    #[inline(always)]
    fn sub(self, a: Self::V, b: Self::V) -> Self::V {
        Two { lo: self.0.sub(a.lo, b.lo), hi: self.0.sub(a.hi, b.hi) }
    }
    #[inline(always)]
    fn mul(self, a: Self::V, b: Self::V) -> Self::V {
        Two { lo: self.0.mul(a.lo, b.lo), hi: self.0.mul(a.hi, b.hi) }
    }
    #[inline(always)]
    fn div(self, a: Self::V, b: Self::V) -> Self::V {
        Two { lo: self.0.div(a.lo, b.lo), hi: self.0.div(a.hi, b.hi) }
    }
    #[inline(always)]
    fn min(self, a: Self::V, b: Self::V) -> Self::V {
        Two { lo: self.0.min(a.lo, b.lo), hi: self.0.min(a.hi, b.hi) }
    }
    #[inline(always)]
    fn max(self, a: Self::V, b: Self::V) -> Self::V {
        Two { lo: self.0.max(a.lo, b.lo), hi: self.0.max(a.hi, b.hi) }
    }
    #[inline(always)]
    fn fmadd(self, a: Self::V, b: Self::V, c: Self::V) -> Self::V {
        let s = self.0;
        Two { lo: s.fmadd(a.lo, b.lo, c.lo), hi: s.fmadd(a.hi, b.hi, c.hi) }
    }
    #[inline(always)]
    fn fnmadd(self, a: Self::V, b: Self::V, c: Self::V) -> Self::V {
        let s = self.0;
        Two { lo: s.fnmadd(a.lo, b.lo, c.lo), hi: s.fnmadd(a.hi, b.hi, c.hi) }
    }
    #[inline(always)]
    fn round(self, x: Self::V) -> Self::V {
        Two { lo: self.0.round(x.lo), hi: self.0.round(x.hi) }
    }
    #[inline(always)]
    fn scale2(self, p: Self::V, n: Self::V) -> Self::V {
        Two { lo: self.0.scale2(p.lo, n.lo), hi: self.0.scale2(p.hi, n.hi) }
    }
    #[inline(always)]
    fn lt(self, a: Self::V, b: Self::V) -> Self::M {
        Two { lo: self.0.lt(a.lo, b.lo), hi: self.0.lt(a.hi, b.hi) }
    }
    #[inline(always)]
    fn gt(self, a: Self::V, b: Self::V) -> Self::M {
        Two { lo: self.0.gt(a.lo, b.lo), hi: self.0.gt(a.hi, b.hi) }
    }
    #[inline(always)]
    fn select(self, m: Self::M, a: Self::V, b: Self::V) -> Self::V {
        Two { lo: self.0.select(m.lo, a.lo, b.lo), hi: self.0.select(m.hi, a.hi, b.hi) }
    }
    #[inline(always)]
    fn keep(self, m: Self::M, v: Self::V) -> Self::V {
        Two { lo: self.0.keep(m.lo, v.lo), hi: self.0.keep(m.hi, v.hi) }
    }
    #[inline(always)]
    fn clear(self, m: Self::M, v: Self::V) -> Self::V {
        Two { lo: self.0.clear(m.lo, v.lo), hi: self.0.clear(m.hi, v.hi) }
    }
    #[inline(always)]
    fn masked_sub(self, m: Self::M, a: Self::V, b: Self::V) -> Self::V {
        Two { lo: self.0.masked_sub(m.lo, a.lo, b.lo), hi: self.0.masked_sub(m.hi, a.hi, b.hi) }
    }
    #[inline(always)]
    fn and(self, a: Self::M, b: Self::M) -> Self::M {
        Two { lo: self.0.and(a.lo, b.lo), hi: self.0.and(a.hi, b.hi) }
    }
    #[inline(always)]
    fn below(self, c: usize) -> Self::M {
        Two { lo: self.0.below(c), hi: self.0.below(c.saturating_sub(S::LANES)) }
    }
    #[inline(always)]
    fn lane_is(self, i: usize) -> Self::M {
        let none = self.0.below(0);
        if i < S::LANES {
            Two { lo: self.0.lane_is(i), hi: none }
        } else {
            Two { lo: none, hi: self.0.lane_is(i - S::LANES) }
        }
    }
    #[inline(always)]
    fn reduce_add(self, v: Self::V) -> f32 {
        self.0.reduce_add(self.0.add(v.lo, v.hi))
    }
    #[inline(always)]
    fn reduce_max(self, v: Self::V) -> f32 {
        self.0.reduce_max(self.0.max(v.lo, v.hi))
    }
    #[inline(always)]
    fn dot(self, a: Self::V, b: Self::V) -> f32 {
        self.0.reduce_add(self.0.fmadd(a.hi, b.hi, self.0.mul(a.lo, b.lo)))
    }
    #[inline(always)]
    fn load(self, s: &[f32]) -> Self::V {
        Two { lo: self.0.load(s), hi: self.0.load(&s[S::LANES..]) }
    }
    #[inline(always)]
    fn store(self, v: Self::V, s: &mut [f32]) {
        self.0.store(v.lo, s);
        self.0.store(v.hi, &mut s[S::LANES..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `f` lane by lane over `src` into `dst`, `S::LANES` at a time (a short tail padded with
    /// `pad`).
    fn map<S: Isa>(s: S, src: &[f32], pad: f32, f: impl Fn(S::V) -> S::V) -> Vec<f32> {
        let mut out = Vec::with_capacity(src.len());
        for chunk in src.chunks(S::LANES) {
            let mut lanes = [pad; MAX_LANES];
            lanes[..chunk.len()].copy_from_slice(chunk);
            let mut got = [0.0f32; MAX_LANES];
            s.store(f(s.load(&lanes)), &mut got);
            out.extend_from_slice(&got[..chunk.len()]);
        }
        out
    }

    /// The polynomial `exp` against f64's on a fine grid over [−87.3, 88.7] (softmax
    /// arguments ≤ 0, sigmoid arguments of either sign, hyperparameters), to a few f32 ulps;
    /// 0 below the range, +∞ above; NaN stays NaN.
    fn exp_is_accurate<S: Isa>(s: S) {
        let xs: Vec<f32> =
            (0..200_000).map(|i| -87.3 + i as f32 * (176.0 / 200_000.0)).chain([0.0, -0.0, 1e-30, -1e-30, 88.0, 88.72]).collect();
        let got = map(s, &xs, 0.0, |x| exp(s, x));
        let worst = xs.iter().zip(&got).map(|(&x, &g)| ((g as f64) - (x as f64).exp()).abs() / (x as f64).exp()).fold(0.0, f64::max);
        assert!(worst < 3.0e-7, "exp: worst relative error {worst:.2e}");
        let special = [f32::NAN, -88.0, -100.0, f32::NEG_INFINITY, -1e30, 88.73, 1e30, f32::INFINITY, 1.0];
        let out = map(s, &special, 0.0, |x| exp(s, x));
        assert!(out[0].is_nan(), "exp(NaN) must be NaN");
        assert!(out[1..5].iter().all(|&v| v == 0.0), "exp below the range must be 0: {out:?}");
        assert!(out[5..8].iter().all(|&v| v == f32::INFINITY), "exp above the range must be +inf: {out:?}");
        assert!((out[8] - std::f32::consts::E).abs() < 1e-6, "exp(1): {}", out[8]);
    }

    /// σ and the logistic terms against f64's formulas, lane by lane.
    fn pointwise_terms_match_f64<S: Isa>(s: S) {
        let zs: Vec<f32> = (0..4001).map(|i| -20.0 + i as f32 * 0.01).collect();
        let sig = |z: f32| 1.0 / (1.0 + (-(z as f64)).exp());
        let got = map(s, &zs, 0.0, |z| sigmoid(s, z));
        for (&z, &g) in zs.iter().zip(&got) {
            assert!((g as f64 - sig(z)).abs() < 2e-7, "σ({z}) = {g}, want {}", sig(z));
        }
        let (t, u) = (0.25f32, -1.5f32);
        let grad = map(s, &zs, 0.0, |z| pointwise_term(s, LossKind::Logistic, z, s.splat(t), None));
        let curv = map(s, &zs, 0.0, |z| pointwise_term(s, LossKind::Logistic, z, s.splat(0.0), Some(s.splat(u))));
        let sq = map(s, &zs, 0.0, |z| pointwise_term(s, LossKind::Squared, z, s.splat(t), None));
        for (k, &z) in zs.iter().enumerate() {
            let p = sig(z);
            assert!((grad[k] as f64 - (p - t as f64)).abs() < 3e-7, "ℓ'({z})");
            assert!((curv[k] as f64 - p * (1.0 - p) * u as f64).abs() < 1e-6, "ℓ''({z})·u");
            assert_eq!(sq[k], z - t, "squared loss at {z}");
        }
    }

    /// The softmax terms of a row of c classes (for c up to the register's lanes) against
    /// f64's, with the lanes past c 0; a label outside the classes subtracts nothing.
    fn softmax_terms_match_f64<S: Isa>(s: S) {
        for c in [1, 2, 7, 8, 10, S::LANES].into_iter().filter(|&c| c <= S::LANES) {
            let z: Vec<f32> = (0..S::LANES).map(|l| if l < c { (l as f32 * 1.7).sin() * 30.0 } else { 1e3 }).collect();
            let u: Vec<f32> = (0..S::LANES).map(|l| (l as f32 * 0.9).cos()).collect();
            let (zd, ud): (Vec<f64>, Vec<f64>) = (z[..c].iter().map(|&v| v as f64).collect(), u[..c].iter().map(|&v| v as f64).collect());
            let top = zd.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let total: f64 = zd.iter().map(|v| (v - top).exp()).sum();
            let p: Vec<f64> = zd.iter().map(|v| (v - top).exp() / total).collect();
            let pu: f64 = p.iter().zip(&ud).map(|(a, b)| a * b).sum();
            let mask = s.below(c);
            for label in [0.0, (c - 1) as f32, c as f32 + 0.0, -1.0] {
                let mut got = [0.0f32; MAX_LANES];
                s.store(softmax_term(s, s.load(&z), mask, label, None), &mut got);
                for l in 0..S::LANES {
                    let want = if l < c { p[l] - f64::from(l as f32 == label && label < c as f32) } else { 0.0 };
                    assert!((got[l] as f64 - want).abs() < 1e-6, "c = {c}, label {label}, lane {l}: {} vs {want}", got[l]);
                }
            }
            let mut got = [0.0f32; MAX_LANES];
            s.store(softmax_term(s, s.load(&z), mask, 0.0, Some(s.load(&u))), &mut got);
            for l in 0..S::LANES {
                let want = if l < c { p[l] * (ud[l] - pu) } else { 0.0 };
                assert!((got[l] as f64 - want).abs() < 1e-6, "c = {c}, curvature lane {l}: {} vs {want}", got[l]);
            }
        }
    }

    /// The horizontal sum and maximum against plain ones (exact on these powers of two).
    fn reductions_sum_and_max<S: Isa>(s: S) {
        let v: Vec<f32> = (0..S::LANES).map(|l| if l % 3 == 1 { -(1 << l) as f32 } else { (1 << l) as f32 }).collect();
        let x = s.load(&v);
        assert_eq!(s.reduce_add(x), v.iter().sum::<f32>());
        assert_eq!(s.reduce_max(x), v.iter().cloned().fold(f32::NEG_INFINITY, f32::max));
    }

    fn all<S: Isa>(s: S) {
        exp_is_accurate(s);
        pointwise_terms_match_f64(s);
        softmax_terms_match_f64(s);
        reductions_sum_and_max(s);
    }

    /// AVX2 (8 lanes) and its pairs (a padded row): the CPUs this project runs on have them, so
    /// a missing AVX2 is a failure, not a skip.
    #[test]
    fn avx2_row_terms() {
        let s = Avx2::new().expect("this x86-64 CPU has no AVX2 and FMA: the AVX2 row terms cannot be checked");
        all(s);
        all(Pair(s));
    }

    /// AVX-512 (16 lanes), where the CPU has it.
    #[test]
    fn avx512_row_terms() {
        let Some(s) = Avx512::new() else {
            eprintln!("no AVX-512F on this CPU: the AVX-512 row terms are not checked here");
            return;
        };
        all(s);
    }
}
