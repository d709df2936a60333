//! The CPU's fused GLM batch oracle ([`Backend::glm_batch`](crate::Backend::glm_batch)) for
//! problems whose `d × c` result is small — MNIST hyper-cleaning (785 × 10, sparse batch form)
//! and ijcnn1 (22 × 1, dense). Their mini-batch steps are a few thousand multiply-adds each, so
//! the unfused chain of four backend calls (two products, the row terms, the transposed product)
//! spent as long on its glue and on reading every batch row twice or three times as on the
//! arithmetic. Here each batch row is read once and used at once, while it is in L1:
//!
//! ```text
//! for each batch row k:   z = x_k·y   (u = x_k·v: the same pass over x_k)
//!                         e = row_scale·scale·w_k · ℓ'(z; t)   or   ·ℓ''(z)·u
//!                         G += x_k ⊗ e                                        (G: d × c)
//! out = reg + G
//! ```
//!
//! For a shifted CSR (`X = S + 1sᵀ`, the MNIST batch form) the shift's part is `sᵀy` added to
//! every z and `s ⊗ Σ_k e_k` added to G at the end. The AVX-512 CSR kernel splits the loop in
//! two passes over the batch (all the e_k, then all the `G +=`): with rows padded to 16 lanes,
//! MNIST's Y, V and G are 50 KiB each, and a row that touches all three at once runs out of L1
//! (two passes are 6–8 % faster per stocBiO iteration; a third pass, V apart from Y, is not).
//! The AVX2 CSR kernel's two passes split over two threads where that pays (see
//! `two_thread_split` and `pair.rs`): the first by batch rows, the second by G's rows.

use super::{apply_reg, axpy_slice, residual_and_loss, row_curvature, sigmoid, to_t, Compressed, CpuBackend, Layout, MulAdd, Real};
use crate::backend::{GlmRows, GlmScales, LossKind, Reg, RowTerm, Rows};

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
use super::{
    pair::{Choice, Pair},
    Split, Threads,
};
#[cfg(target_arch = "x86_64")]
use avx2::Part;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "x86_64")]
mod lanes;

/// The largest `d × c` result the fused path accumulates privately (a 256 KiB f32 buffer,
/// inside L2); larger ones (20 Newsgroups) keep the unfused, feature-parallel path.
const MAX_OUT: usize = 1 << 16;

/// The least work (batch entries × classes) for which the AVX2 CSR kernel splits a call with
/// the partner thread: a hand-off costs under a microsecond, MNIST's batch (64 rows of ~150
/// entries, 10 classes) ~100 k multiply-adds a pass.
#[cfg(target_arch = "x86_64")]
const SPLIT_WORK: usize = 1 << 15;

/// The class counts with a compiled copy of the row loop (their sums live in registers).
fn compiled_classes(c: usize) -> bool {
    matches!(c, 1 | 10 | 20)
}

/// Whether [`glm_batch`] takes this oracle: a mini-batch (not the full set: those products
/// are large and parallel), a small result, one thread's worth of work, and either a CSR
/// matrix (plain or shifted) with a compiled class count, or dense rows with c = 1.
pub(super) fn applies<T: Real>(data: &GlmRows<'_, CpuBackend<T>>) -> bool {
    let Rows::Batch(idx) = data.rows else { return false };
    let x = data.x.for_rows(data.rows);
    let (d, c) = (x.cols(), data.c);
    let work = idx.len() * c * x.row_nnz_estimate();
    let layout = match x {
        Layout::Csr { .. } => compiled_classes(c),
        Layout::Dense { .. } => c == 1,
    };
    layout && d * c <= MAX_OUT && work < super::PARALLEL_WORK
}

/// The hand-written f32 kernels a CPU can run, widest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
// Only x86-64 constructs them; elsewhere (wasm32) `simd` always answers `None`.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(super) enum Simd {
    Avx512,
    Avx2,
}

impl Simd {
    /// The kernel's name in [`CpuBackend::glm_batch_kernel`](super::CpuBackend::glm_batch_kernel).
    pub(super) fn name(self) -> &'static str {
        match self {
            Simd::Avx512 => "avx512",
            Simd::Avx2 => "avx2",
        }
    }
}

/// Which intrinsics kernels [`glm_batch`] runs for `data`, if any: f32, the backend allows
/// them, at most 16 classes, an element-wise loss for dense rows, and the CPU has AVX-512F
/// (unless the backend excludes it) or else AVX2 with FMA (dense rows: up to 64 columns).
pub(super) fn simd<T: Real>(be: &CpuBackend<T>, data: &GlmRows<'_, CpuBackend<T>>) -> Option<Simd> {
    #[cfg(target_arch = "x86_64")]
    {
        let dense = matches!(data.x.for_rows(data.rows), Layout::Dense { .. });
        let eligible = be.wide
            && std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>()
            && data.c <= 16
            && !(dense && data.loss == LossKind::Softmax);
        if !eligible {
            None
        } else if be.avx512 && avx512::available() && two_thread_split(be, data.x.for_rows(data.rows), data.rows, data.c).is_none() {
            Some(Simd::Avx512)
        } else {
            // AVX2 holds a dense row in registers: up to 64 columns.
            (avx2::available() && !(dense && data.x.cols() > avx2::MAX_DENSE_COLS)).then_some(Simd::Avx2)
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (be.wide, data);
        None
    }
}

/// A sparse batch matrix as the fused kernels read it: `X = S + 1sᵀ`, `s` (sparse: its columns
/// and values) only for a shifted CSR.
#[derive(Clone, Copy)]
struct ShiftedCsr<'a, T> {
    s: Compressed<'a, T>,
    shift: Option<(&'a [u32], &'a [T])>,
}

impl<'a, T: Real> ShiftedCsr<'a, T> {
    /// The view of a CSR layout (`None` for dense rows).
    fn of(x: &'a Layout<T>) -> Option<Self> {
        match x {
            Layout::Csr { indptr, indices, values, shift, .. } => Some(ShiftedCsr {
                s: Compressed { ptr: indptr, idx: indices, values },
                shift: shift.as_ref().map(|s| (&s.indices[..], &s.values[..])),
            }),
            Layout::Dense { .. } => None,
        }
    }

    /// The same matrix in f32 when `T` is f32 (for the intrinsics kernels).
    #[cfg(target_arch = "x86_64")]
    fn as_f32(self) -> Option<ShiftedCsr<'a, f32>> {
        use super::as_f32;
        let s = Compressed { ptr: self.s.ptr, idx: self.s.idx, values: as_f32(self.s.values)? };
        let shift = match self.shift {
            Some((cols, vals)) => Some((cols, as_f32(vals)?)),
            None => None,
        };
        Some(ShiftedCsr { s, shift })
    }
}

/// The data of one fused call, borrowed from [`GlmRows`] and the vectors.
struct Call<'a, T> {
    loss: LossKind,
    targets: &'a [T],
    rows: &'a [u32],
    weights: Option<&'a [T]>,
    /// `row_scale · scale`.
    coef: T,
    y: &'a [T],
    /// `Some` for a curvature term.
    v: Option<&'a [T]>,
}

/// Whether [`glm_batch`] may split this call over two threads (see `two_thread_split`).
pub(super) fn splits<T: Real>(be: &CpuBackend<T>, data: &GlmRows<'_, CpuBackend<T>>) -> bool {
    #[cfg(target_arch = "x86_64")]
    return simd(be, data) == Some(Simd::Avx2) && two_thread_split(be, data.x.for_rows(data.rows), data.rows, data.c).is_some();
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (be, data);
        false
    }
}

/// The split column and the partner thread, when the AVX2 CSR kernel splits this call over two
/// threads: a CSR batch with a split column (ascending rows), several classes, enough work to
/// pay for two hand-offs, and a second core. The AVX2 kernel then serves even where the CPU has
/// AVX-512: the split exists in its memory plan only (on a 2-core AMD Zen 4 the AVX2 kernel is
/// the faster of the two for MNIST's stocBiO iteration on one thread, and faster still on two).
#[cfg(target_arch = "x86_64")]
fn two_thread_split<'a, T: Real>(
    be: &'a CpuBackend<T>,
    x: &'a Layout<T>,
    rows: Rows<'_, Vec<u32>>,
    c: usize,
) -> Option<(&'a Split, &'a Pair)> {
    let (Layout::Csr { split: Some(split), .. }, Rows::Batch(idx)) = (x, rows) else { return None };
    let enough = c > 1 && idx.len() * c * x.row_nnz_estimate() >= SPLIT_WORK;
    (enough && avx2::available()).then(|| be.partner()).flatten().map(|pair| (split, pair))
}

/// The fused oracle (the caller has checked [`applies`]). `scratch` holds three work vectors of
/// at least `b × c` entries.
pub(super) fn glm_batch<T: Real>(
    be: &CpuBackend<T>,
    data: GlmRows<'_, CpuBackend<T>>,
    term: RowTerm<'_, Vec<T>>,
    scales: GlmScales,
    reg: Reg<'_, CpuBackend<T>>,
    out: &mut [T],
    scratch: [&mut Vec<T>; 3],
) {
    let [z, u, e] = scratch;
    // f32: subnormal numbers flushed to zero while the kernels run (see `FlushSubnormals`).
    #[cfg(target_arch = "x86_64")]
    let _flush = (std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>()).then(FlushSubnormals::new);
    let Rows::Batch(idx) = data.rows else { unreachable!("applies() admits batches only") };
    let x = data.x.for_rows(data.rows);
    let (d, c, b) = (x.cols(), data.c, idx.len());
    assert!(out.len() == d * c && e.len() >= b * c, "glm_batch: shape mismatch");
    // y or v may be `out` itself: read here, written only below.
    let (y, v) = match term {
        RowTerm::Gradient { y } => (y.map_or(&out[..], |y| &y[..]), None),
        RowTerm::Curvature { y, v } => (&y[..], Some(v.map_or(&out[..], |v| &v[..]))),
    };
    assert!(y.len() == d * c && v.is_none_or(|v| v.len() == d * c), "glm_batch: shape mismatch");
    let f = Call {
        loss: data.loss,
        targets: data.targets,
        rows: idx,
        weights: data.weights.map(|w| &w[..]),
        coef: to_t::<T>(scales.row * scales.out),
        y,
        v,
    };
    // f32 on a CPU with AVX-512 (a row of c ≤ 16 classes is one register) or AVX2 (two).
    #[cfg(target_arch = "x86_64")]
    let f32call = simd(be, &data).and_then(|simd| Some((simd, f.as_f32()?)));
    // The sparse matrix in f32, for both intrinsics kernels (`None` for dense rows).
    #[cfg(target_arch = "x86_64")]
    let sparse32 = f32call.as_ref().and_then(|_| ShiftedCsr::of(x)?.as_f32());
    // AVX2: the row terms first (reading Y and V in place; either may be `out`), then `out`
    // becomes the regulariser's part and the second pass adds G into it: no G buffer to zero
    // and fold, no padded copies of Y and V (see `avx2.rs`).
    #[cfg(target_arch = "x86_64")]
    if let Some((Simd::Avx2, call)) = &f32call {
        let e32 = super::as_f32_mut(e).expect("T is f32");
        match x {
            // SAFETY: the CPU has AVX2 and FMA; the shapes were checked above, the batch rows
            // and the column indices lie inside the matrix (checked when it was built).
            Layout::Dense { data, .. } => unsafe {
                let data = super::as_f32(data).expect("f32");
                avx2::dense_terms(call, data, d, e32, super::as_f32_mut(u).expect("f32"));
                apply_reg(&reg, 0, c, out);
                avx2::dense_scatter(idx, data, d, e32, super::as_f32_mut(out).expect("f32"));
            },
            Layout::Csr { .. } => {
                let sx = sparse32.expect("a CSR in f32");
                let u32s = super::as_f32_mut(u).expect("f32");
                // Whether two threads beat one is timed as the run goes (see `pair.rs`); the
                // results are the same either way.
                let halves = two_thread_split(be, x, data.rows, c);
                let choice = halves.filter(|_| be.threads == Threads::Timed).map(|(_, pair)| {
                    // Calls of a kind: the same batch size, loss, with or without V and
                    // sample weights.
                    let kind =
                        (b as u64) << 8 | u64::from(call.weights.is_some()) << 5 | u64::from(call.v.is_some()) << 4 | call.loss as u64;
                    pair.choose(kind)
                });
                // SAFETY (every kernel call): the CPU has AVX2 and FMA; the shapes were checked
                // above, the batch rows and the column indices lie inside the matrix (checked
                // when it was built), and a split column comes with ascending rows.
                match halves.filter(|_| choice.as_ref().is_none_or(Choice::split)) {
                    None => unsafe {
                        let e_sum = avx2::csr_terms(call, sx, c, e32, u32s);
                        apply_reg(&reg, 0, c, out);
                        avx2::csr_scatter(idx, sx, c, e32, &e_sum, Part::All, super::as_f32_mut(out).expect("f32"));
                    },
                    // Two threads: the first pass split by batch rows (each its half of e),
                    // the second by G's rows (each the columns on its side of the split), so
                    // that neither writes what the other reads. The results are the one-thread
                    // kernel's to the bit: each G row sees the same updates in the same order.
                    Some((s, pair)) => {
                        let h = b / 2;
                        let (e_a, e_b) = e32.split_at_mut(h * c);
                        let (u_a, u_b) = u32s.split_at_mut(h * c);
                        let (call_a, call_b) = (Call { rows: &idx[..h], ..*call }, Call { rows: &idx[h..], ..*call });
                        pair.join(
                            || unsafe { avx2::csr_terms(&call_a, sx, c, e_a, u_a) },
                            || unsafe {
                                // MXCSR is per thread.
                                let _flush = FlushSubnormals::new();
                                avx2::csr_terms(&call_b, sx, c, e_b, u_b)
                            },
                        );
                        // Σ_k e_k in the order the one-thread kernel sums it.
                        let e32 = &*e32;
                        let mut e_sum = [0.0f32; 16];
                        e32[..b * c].chunks_exact(c).for_each(|ek| axpy_slice(1.0, ek, &mut e_sum[..c]));
                        let s_col = s.col as usize;
                        let (g_a, g_b) = out.split_at_mut(s_col * c);
                        let reg = &reg;
                        pair.join(
                            || unsafe {
                                apply_reg(reg, 0, c, g_a);
                                let g_a = super::as_f32_mut(g_a).expect("f32");
                                avx2::csr_scatter(idx, sx, c, e32, &e_sum, Part::Below(s), g_a)
                            },
                            || unsafe {
                                let _flush = FlushSubnormals::new();
                                apply_reg(reg, s_col, c, g_b);
                                let g_b = super::as_f32_mut(g_b).expect("f32");
                                avx2::csr_scatter(idx, sx, c, e32, &e_sum, Part::From(s), g_b)
                            },
                        );
                    }
                }
                // The time of this call goes to the chooser here.
                drop(choice);
            }
        }
        let _ = z;
        return;
    }
    #[cfg(target_arch = "x86_64")]
    let wide = f32call.is_some();
    #[cfg(not(target_arch = "x86_64"))]
    let wide = false;
    let stride = match x {
        // AVX-512: Y, V and G with rows padded to 16 lanes on 64-byte boundaries: a load that
        // straddles two cache lines costs two, and a load from a masked store's address waits
        // for the store to retire (consecutive batch rows share most columns).
        Layout::Csr { .. } if wide && c > 1 => PADDED,
        _ => c,
    };
    // G = X_Bᵀ E accumulates in a private buffer with rows `stride` apart.
    let mut g_buf = be.take_at_least(aligned_len::<T>(d, stride));
    let g = zeroed_rows(&mut g_buf, d, stride);
    #[cfg(target_arch = "x86_64")]
    if let Some((_, f32call)) = f32call {
        let g32 = super::as_f32_mut(g).expect("T is f32");
        match x {
            // SAFETY: the CPU has AVX-512F; the shapes were checked above, the batch rows and
            // the column indices lie inside the matrix (checked when it was built).
            Layout::Dense { data, .. } => unsafe {
                let (z, u) = (super::as_f32_mut(z).expect("f32"), super::as_f32_mut(u).expect("f32"));
                avx512::dense_rows(&f32call, super::as_f32(data).expect("f32"), d, g32, z, u)
            },
            Layout::Csr { .. } => {
                let (mut y_buf, mut v_buf) = (be.take_at_least(aligned_len::<T>(d, PADDED)), be.take_at_least(aligned_len::<T>(d, PADDED)));
                let padded = if stride == PADDED {
                    let y = padded_rows(&mut y_buf, f32call.y, d, c);
                    Call { y, v: f32call.v.map(|v| padded_rows(&mut v_buf, v, d, c)), ..f32call }
                } else {
                    f32call
                };
                let sx = sparse32.expect("a CSR in f32");
                // One thread: where a call can be split over two, the AVX2 kernel takes it (see
                // `two_thread_split`).
                // SAFETY: as above; Y, V and G have d rows `stride` apart.
                unsafe { avx512::csr_rows(&padded, sx, c, stride, g32) };
                be.give(y_buf);
                be.give(v_buf);
            }
        }
    }
    if !wide {
        portable(&f, x, d, c, g, &mut e[..b * c]);
    }
    let _ = (z, u);
    // out = reg + G.
    apply_reg(&reg, 0, c, out);
    match (stride == c, c) {
        (true, _) => axpy_slice(T::one(), g, out),
        // Row by row, c known at compile time for the real class counts: whole unmasked
        // vector loads and stores (a masked store's bytes cannot be forwarded to the next
        // row's overlapping load, which then waits for the store to retire).
        (false, 10) => fold_rows::<T, 10>(out, g, stride),
        (false, _) => fold_rows_dyn(out, c, g, stride),
    }
    be.give(g_buf);
}

/// `out[j, :] += g[j, :]`, `g` with rows `stride` apart.
fn fold_rows<T: Real, const C: usize>(out: &mut [T], g: &[T], stride: usize) {
    for (j, oj) in out.chunks_exact_mut(C).enumerate() {
        let oj: &mut [T; C] = oj.try_into().expect("C entries");
        let gj: &[T; C] = g[j * stride..][..C].try_into().expect("C entries");
        for l in 0..C {
            oj[l] = oj[l] + gj[l];
        }
    }
}

fn fold_rows_dyn<T: Real>(out: &mut [T], c: usize, g: &[T], stride: usize) {
    for (j, oj) in out.chunks_exact_mut(c).enumerate() {
        oj.iter_mut().zip(&g[j * stride..]).for_each(|(o, &gv)| *o = *o + gv);
    }
}

/// While alive, this thread's SSE/AVX arithmetic flushes subnormal results to zero and reads
/// subnormal inputs as zero (MXCSR's FTZ and DAZ bits); the previous mode comes back on drop.
/// MNIST's softmax rows produce probabilities below 10⁻³⁸ (a class far from the top one),
/// and every multiply-add that touches such a number takes a microcode assist of ~100 cycles:
/// with them a MNIST stocBiO iteration takes about 1.5× as long. The values lost are below
/// 1.2·10⁻³⁸ in magnitude (GPUs flush them too); the f64 reference keeps IEEE subnormals.
#[cfg(target_arch = "x86_64")]
struct FlushSubnormals(u32);

#[cfg(target_arch = "x86_64")]
impl FlushSubnormals {
    /// MXCSR's flush-to-zero (bit 15) and denormals-are-zero (bit 6).
    const FTZ_DAZ: u32 = 0x8040;

    fn new() -> Self {
        let mut old: u32 = 0;
        // SAFETY: stmxcsr stores the 32-bit control word at the address given, a local.
        unsafe { std::arch::asm!("stmxcsr [{}]", in(reg) &mut old, options(nostack, preserves_flags)) };
        let new = old | Self::FTZ_DAZ;
        // SAFETY: ldmxcsr loads a valid control word (the current one with two mode bits set).
        unsafe { std::arch::asm!("ldmxcsr [{}]", in(reg) &new, options(nostack, preserves_flags, readonly)) };
        FlushSubnormals(old)
    }
}

#[cfg(target_arch = "x86_64")]
impl Drop for FlushSubnormals {
    fn drop(&mut self) {
        // SAFETY: restores the control word read in `new`.
        unsafe { std::arch::asm!("ldmxcsr [{}]", in(reg) &self.0, options(nostack, preserves_flags, readonly)) };
    }
}

/// Row stride of the padded matrices (one AVX-512 register of f32).
const PADDED: usize = 16;

/// `d` zero rows `stride` apart inside `buf` (grown as needed), starting on a 64-byte boundary.
fn zeroed_rows<T: Real>(buf: &mut Vec<T>, d: usize, stride: usize) -> &mut [T] {
    let rows = aligned_rows(buf, d, stride);
    rows.fill(T::zero());
    rows
}

/// The buffer length [`aligned_rows`] needs.
fn aligned_len<T>(d: usize, stride: usize) -> usize {
    d * stride + 64 / std::mem::size_of::<T>()
}

/// `d × stride` entries inside `buf` (grown as needed, contents unspecified) starting on a
/// 64-byte boundary.
fn aligned_rows<T: Real>(buf: &mut Vec<T>, d: usize, stride: usize) -> &mut [T] {
    let need = aligned_len::<T>(d, stride);
    if buf.len() < need {
        buf.resize(need, T::zero());
    }
    let skip = buf.as_ptr().align_offset(64).min(need - d * stride);
    &mut buf[skip..skip + d * stride]
}

/// `m` (`d × c`) copied into rows of [`PADDED`] lanes on 64-byte boundaries inside `buf` (the
/// lanes past c are 0).
#[cfg(target_arch = "x86_64")]
fn padded_rows<'b, T: Real>(buf: &'b mut Vec<T>, m: &[f32], d: usize, c: usize) -> &'b [f32] {
    let out = super::as_f32_mut(aligned_rows(buf, d, PADDED)).expect("T is f32");
    // SAFETY: the CPU has AVX-512F (the only caller's condition); the shapes match.
    unsafe { avx512::pad(m, c, out) };
    out
}

/// The portable kernels (f64, or a CPU without AVX-512).
fn portable<T: Real>(f: &Call<'_, T>, x: &Layout<T>, d: usize, c: usize, g: &mut [T], e: &mut [T]) {
    match x {
        Layout::Dense { data, .. } => dense_rows(f, data, d, g),
        Layout::Csr { .. } => csr_rows(f, ShiftedCsr::of(x).expect("a CSR"), c, g, e),
    }
}

impl<'a, T: Real> Call<'a, T> {
    /// The same call in f32 when `T` is f32 (for the AVX-512 kernels).
    #[cfg(target_arch = "x86_64")]
    fn as_f32(&self) -> Option<Call<'a, f32>> {
        use super::as_f32;
        Some(Call {
            loss: self.loss,
            targets: as_f32(self.targets)?,
            rows: self.rows,
            weights: match self.weights {
                Some(w) => Some(as_f32(w)?),
                None => None,
            },
            coef: self.coef.to_f32()?,
            y: as_f32(self.y)?,
            v: match self.v {
                Some(v) => Some(as_f32(v)?),
                None => None,
            },
        })
    }
}

/// The weight of batch row k in the row terms: `coef · σ(λ_row)` or `coef`.
#[inline(always)]
fn row_coef<T: Real>(f: &Call<'_, T>, row: usize) -> T {
    f.weights.map_or(f.coef, |l| f.coef * sigmoid(l[row]))
}

/// `e ← coef·ℓ'(z; t)` or `coef·ℓ''(z)·u`, for one row of `C` classes.
#[inline(always)]
fn row_term<T: Real, const C: usize>(f: &Call<'_, T>, row: usize, z: &[T; C], u: &[T; C], e: &mut [T; C]) {
    match f.v {
        None => {
            residual_and_loss(f.loss, z, f.targets[row], e, false);
        }
        Some(_) => row_curvature(f.loss, z, u, e),
    }
    let w = row_coef(f, row);
    e.iter_mut().for_each(|v| *v = w * *v);
}

multiversion! {
    /// Dense rows, c = 1 (ijcnn1): `z = x_k·y` (and `u = x_k·v`) with lane-wide accumulators,
    /// `G += e·x_k`.
    fn dense_rows(f: &Call<'_, T>, data: &[T], d: usize, g: &mut [T]) {
        let x = |row: usize| &data[row * d..(row + 1) * d];
        for (k, &row) in f.rows.iter().enumerate() {
            // Batch rows are scattered through X: fetch a later one while this one is used.
            if let Some(&ahead) = f.rows.get(k + 4) {
                super::prefetch(x(ahead as usize));
            }
            let row = row as usize;
            let xk = x(row);
            let z = super::dot_1x1::<T, M>(xk, &f.y[..d]);
            let u = f.v.map_or(T::zero(), |v| super::dot_1x1::<T, M>(xk, &v[..d]));
            let mut e = [T::zero()];
            row_term::<T, 1>(f, row, &[z], &[u], &mut e);
            super::axpys::<T, M, 1>(e, [xk], &mut g[..d]);
        }
    }
}

multiversion! {
    /// CSR rows (plain or shifted), c ∈ {1, 10, 20}: the class count compiled in.
    fn csr_rows(f: &Call<'_, T>, x: ShiftedCsr<'_, T>, c: usize, g: &mut [T], e: &mut [T]) {
        match c {
            1 => csr_rows_c::<T, M, 1>(f, x, g, e),
            10 => csr_rows_c::<T, M, 10>(f, x, g, e),
            20 => csr_rows_c::<T, M, 20>(f, x, g, e),
            _ => unreachable!("applies() admits the compiled class counts only"),
        }
    }
}

/// [`csr_rows`] for `C` classes.
#[inline(always)]
fn csr_rows_c<T: Real, M: MulAdd, const C: usize>(f: &Call<'_, T>, x: ShiftedCsr<'_, T>, g: &mut [T], e: &mut [T]) {
    // The shift's products sᵀy (and sᵀv), the same for every row.
    let (zs, us) = match x.shift {
        Some((cols, vals)) => row_dots::<T, M, C>(cols, vals, f.y, f.v),
        None => ([T::zero(); C], [T::zero(); C]),
    };
    for (k, &row) in f.rows.iter().enumerate() {
        if let Some(&next) = f.rows.get(k + 1) {
            x.s.prefetch(next as usize);
        }
        let row = row as usize;
        let (cols, vals) = x.s.line(row);
        let (mut z, mut u) = row_dots::<T, M, C>(cols, vals, f.y, f.v);
        for l in 0..C {
            z[l] = z[l] + zs[l];
            u[l] = u[l] + us[l];
        }
        let ek: &mut [T; C] = (&mut e[k * C..(k + 1) * C]).try_into().expect("C entries");
        row_term::<T, C>(f, row, &z, &u, ek);
        for (&j, &xv) in cols.iter().zip(vals) {
            let gj: &mut [T; C] = (&mut g[j as usize * C..][..C]).try_into().expect("C entries");
            for l in 0..C {
                gj[l] = M::madd(xv, ek[l], gj[l]);
            }
        }
    }
    // X = S + 1sᵀ:  G += s ⊗ Σ_k e_k.
    if let Some((cols, vals)) = x.shift {
        let mut sum = [T::zero(); C];
        for ek in e.chunks_exact(C) {
            for l in 0..C {
                sum[l] = sum[l] + ek[l];
            }
        }
        for (&j, &sv) in cols.iter().zip(vals) {
            let gj = &mut g[j as usize * C..][..C];
            for l in 0..C {
                gj[l] = M::madd(sv, sum[l], gj[l]);
            }
        }
    }
}

/// `(x·Y, x·V)` for one sparse row (`Y`, `V`: `d × C` row-major; zeros for a missing V), two
/// sets of accumulators over alternate entries so consecutive multiply-adds do not wait on
/// each other.
#[inline(always)]
fn row_dots<T: Real, M: MulAdd, const C: usize>(cols: &[u32], vals: &[T], y: &[T], v: Option<&[T]>) -> ([T; C], [T; C]) {
    match v {
        Some(v) => row_dots_n::<T, M, C, true>(cols, vals, y, v),
        None => row_dots_n::<T, M, C, false>(cols, vals, y, y),
    }
}

/// [`row_dots`], `x·V` computed only when `DUAL`.
#[inline(always)]
fn row_dots_n<T: Real, M: MulAdd, const C: usize, const DUAL: bool>(cols: &[u32], vals: &[T], y: &[T], v: &[T]) -> ([T; C], [T; C]) {
    let at = |m: &[T], j: u32| -> [T; C] { m[j as usize * C..][..C].try_into().expect("C entries") };
    let zero = [T::zero(); C];
    let (mut z, mut u) = ([zero; 2], [zero; 2]);
    for (p, (&j, &xv)) in cols.iter().zip(vals).enumerate() {
        let (a, yj) = (p % 2, at(y, j));
        for l in 0..C {
            z[a][l] = M::madd(xv, yj[l], z[a][l]);
        }
        if DUAL {
            let vj = at(v, j);
            for l in 0..C {
                u[a][l] = M::madd(xv, vj[l], u[a][l]);
            }
        }
    }
    (std::array::from_fn(|l| z[0][l] + z[1][l]), std::array::from_fn(|l| u[0][l] + u[1][l]))
}
