//! The CPU implementation of [`MetaBackend`]: the f64 reference for the finite-difference
//! tests and, in f32, the path for machines without a GPU. Convolutions are im2col + a
//! row-blocked product per image, images split across the rayon pool; parameter gradients are
//! summed per chunk of images into private buffers, then reduced (no two threads write one
//! entry, and the order of the sums is fixed, so runs are reproducible).

#[cfg(target_arch = "x86_64")]
use crate::cpu::{as_f32, as_f32_mut, Fused};
use crate::cpu::{axpy_slice, chunked, dot_shifted_kernel as dot_shifted, sum_kernel as sum, to_t, CpuBackend, MulAdd, Plain, Real};
use crate::meta::ops::{
    BnLayer, Conv3x3, Dual, Gemm, ImageBatch, MetaBackend, SoftmaxCurvature, SoftmaxXent, SumRows, View, ViewMut, BN_EPS,
};

/// `f(i)` for `i < n`, on the rayon pool when `work` is large (natively), collected in order.
fn map_range<R: Send>(n: usize, work: usize, f: impl Fn(usize) -> R + Sync + Send) -> Vec<R> {
    #[cfg(not(target_arch = "wasm32"))]
    if work >= crate::cpu::PARALLEL_WORK && n > 1 {
        use rayon::prelude::*;
        return (0..n).into_par_iter().map(f).collect();
    }
    let _ = work;
    (0..n).map(f).collect()
}

/// Task t's block of a view (`len` entries).
fn block<'a, T>(v: &View<'a, Vec<T>>, t: usize, len: usize) -> &'a [T] {
    let start = v.offset + t * v.stride;
    &v.buf[start..start + len]
}

/// `col[(ci·9 + ky·3 + kx)·hw + y·w + x] = img[ci, y+ky−1, x+kx−1]` (0 outside the image).
fn im2col<T: Real>(img: &[T], channels: usize, h: usize, w: usize, col: &mut [T]) {
    let hw = h * w;
    for ci in 0..channels {
        let plane = &img[ci * hw..(ci + 1) * hw];
        for ky in 0..3 {
            for kx in 0..3 {
                let row = &mut col[(ci * 9 + ky * 3 + kx) * hw..(ci * 9 + ky * 3 + kx + 1) * hw];
                for y in 0..h {
                    let sy = y as isize + ky as isize - 1;
                    let out = &mut row[y * w..(y + 1) * w];
                    if sy < 0 || sy >= h as isize {
                        out.fill(T::zero());
                        continue;
                    }
                    let src = &plane[sy as usize * w..(sy as usize + 1) * w];
                    // x + kx − 1 in range: x from lo to hi.
                    let (lo, hi) = (if kx == 0 { 1 } else { 0 }, if kx == 2 { w - 1 } else { w });
                    out[..lo].fill(T::zero());
                    out[hi..].fill(T::zero());
                    out[lo..hi].copy_from_slice(&src[lo + kx - 1..hi + kx - 1]);
                }
            }
        }
    }
}

/// The adjoint of [`im2col`]: `img[ci, y+ky−1, x+kx−1] += col[...]`.
fn col2im_add<T: Real>(col: &[T], channels: usize, h: usize, w: usize, img: &mut [T]) {
    let hw = h * w;
    for ci in 0..channels {
        let plane = &mut img[ci * hw..(ci + 1) * hw];
        for ky in 0..3 {
            for kx in 0..3 {
                let row = &col[(ci * 9 + ky * 3 + kx) * hw..(ci * 9 + ky * 3 + kx + 1) * hw];
                for y in 0..h {
                    let sy = y as isize + ky as isize - 1;
                    if sy < 0 || sy >= h as isize {
                        continue;
                    }
                    let (lo, hi) = (if kx == 0 { 1 } else { 0 }, if kx == 2 { w - 1 } else { w });
                    let dst = &mut plane[sy as usize * w + lo + kx - 1..sy as usize * w + hi + kx - 1];
                    axpy_slice(T::one(), &row[y * w + lo..y * w + hi], dst);
                }
            }
        }
    }
}

/// A (`m × k`, row-major) packed for [`gemm_acc`]: panels of `mr` rows, k-major
/// (`[panel][k][mr]`, zero rows past m), so the tile kernel reads it contiguously. Packed once
/// per weight block and reused for every image.
struct PackedA<T> {
    m: usize,
    k: usize,
    mr: usize,
    panels: Vec<T>,
}

impl<T: Real> PackedA<T> {
    fn new(wide: bool, m: usize, k: usize, a: &[T]) -> Self {
        assert!(a.len() >= m * k, "PackedA: shape mismatch");
        let mr = if uses_avx512::<T>(wide) { 8 } else { 4 };
        let mut panels = vec![T::zero(); m.div_ceil(mr) * k * mr];
        for i in 0..m {
            let (p, r) = (i / mr, i % mr);
            for (kk, &v) in a[i * k..(i + 1) * k].iter().enumerate() {
                panels[(p * k + kk) * mr + r] = v;
            }
        }
        PackedA { m, k, mr, panels }
    }
}

/// Whether [`gemm_acc`] runs the AVX-512 tiles: f32, allowed (`wide`), and the CPU has them.
fn uses_avx512<T: Real>(wide: bool) -> bool {
    let wide_f32 = wide && std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>();
    #[cfg(target_arch = "x86_64")]
    return wide_f32 && std::is_x86_feature_detected!("avx512f");
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = wide_f32;
        false
    }
}

/// `C += A·B` with A packed ([`PackedA`]) and C `m × n` row-major; B is `k × n` row-major, or,
/// with `b_transposed`, given as Bᵀ (`n × k` row-major), which saves materialising a transpose.
/// Register-blocked: an `MR × NR` tile of C is accumulated over the whole k loop in registers,
/// so each step loads one NR-wide row piece of B and MR entries of A. In f32 on CPUs with
/// AVX-512 (when the backend is `wide`), 8 × 32 tiles written with intrinsics (16 zmm
/// accumulators: LLVM's auto-vectoriser turns a tile that large into gathers and spills);
/// elsewhere 4 × 16 tiles in plain code, compiled again for AVX2 + FMA and picked at run time.
fn gemm_acc<T: Real>(a: &PackedA<T>, n: usize, b: &[T], b_transposed: bool, c: &mut [T]) {
    let (m, k) = (a.m, a.k);
    assert!(b.len() >= k * n && c.len() >= m * n, "gemm_acc: shape mismatch");
    debug_assert_eq!(a.panels.len(), m.div_ceil(a.mr) * k * a.mr, "gemm_acc: badly packed A");
    #[cfg(target_arch = "x86_64")]
    {
        if a.mr == 8 {
            if let (Some(ap), Some(b), Some(c)) = (as_f32(&a.panels), as_f32(b), as_f32_mut(c)) {
                // SAFETY: `PackedA` chose 8-row panels only where the CPU has AVX-512F.
                gemm_tiles::<f32, 8, 32>(GemmShape { m, n, k }, ap, b, b_transposed, c, |ap, bp| unsafe { avx512::tile_8x32(ap, bp) });
                return;
            }
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has AVX2 and FMA (checked just above).
            unsafe { gemm_acc_avx2(GemmShape { m, n, k }, &a.panels, b, b_transposed, c) };
            return;
        }
    }
    gemm_tiles::<T, 4, 16>(GemmShape { m, n, k }, &a.panels, b, b_transposed, c, tile::<T, Plain, 4, 16>);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn gemm_acc_avx2<T: Real>(shape: GemmShape, ap: &[T], b: &[T], b_transposed: bool, c: &mut [T]) {
    gemm_tiles::<T, 4, 16>(shape, ap, b, b_transposed, c, tile::<T, Fused, 4, 16>);
}

/// The dimensions of one `C (m × n) += A (m × k) · B (k × n)` of [`gemm_acc`].
#[derive(Clone, Copy)]
struct GemmShape {
    m: usize,
    n: usize,
    k: usize,
}

#[inline(always)]
fn gemm_tiles<T: Real, const MR: usize, const NR: usize>(
    shape: GemmShape,
    ap: &[T],
    b: &[T],
    b_transposed: bool,
    c: &mut [T],
    tile: impl Fn(&[T], &[T]) -> [[T; NR]; MR],
) {
    let GemmShape { m, n, k } = shape;
    // Pack each NR-column panel of B (`[k][NR]`) so the kernel reads it contiguously; partial
    // tiles need no special case (a last panel's columns past n hold stale values, but their
    // accumulators are never written to C).
    let panels = m.div_ceil(MR);
    let mut bp = vec![T::zero(); k * NR];
    let mut j0 = 0;
    while j0 < n {
        let nr = NR.min(n - j0);
        if b_transposed {
            for j in 0..nr {
                for (kk, &v) in b[(j0 + j) * k..(j0 + j + 1) * k].iter().enumerate() {
                    bp[kk * NR + j] = v;
                }
            }
        } else {
            for kk in 0..k {
                bp[kk * NR..kk * NR + nr].copy_from_slice(&b[kk * n + j0..kk * n + j0 + nr]);
            }
        }
        for p in 0..panels {
            let acc = tile(&ap[p * k * MR..(p + 1) * k * MR], &bp);
            for (r, accr) in acc.iter().enumerate().take(m - p * MR) {
                let i = p * MR + r;
                for (x, &v) in c[i * n + j0..i * n + j0 + nr].iter_mut().zip(accr) {
                    *x = *x + v;
                }
            }
        }
        j0 += NR;
    }
}

/// An `MR × NR` tile of `A_panel · B_panel` (`[k][MR]` times `[k][NR]`), accumulated in locals.
#[inline(always)]
fn tile<T: Real, M: MulAdd, const MR: usize, const NR: usize>(ap: &[T], bp: &[T]) -> [[T; NR]; MR] {
    let mut acc = [[T::zero(); NR]; MR];
    for (a_col, b_row) in ap.chunks_exact(MR).zip(bp.chunks_exact(NR)) {
        for (accr, &av) in acc.iter_mut().zip(a_col) {
            for (x, &bv) in accr.iter_mut().zip(b_row) {
                *x = M::madd(av, bv, *x);
            }
        }
    }
    acc
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    /// [`super::tile`] for f32, 8 × 32: per step two loads of B, eight broadcasts of A and 16
    /// fused multiply-adds into 16 zmm accumulators.
    #[target_feature(enable = "avx512f")]
    pub(super) fn tile_8x32(ap: &[f32], bp: &[f32]) -> [[f32; 32]; 8] {
        let k = ap.len() / 8;
        assert!(bp.len() >= 32 * k);
        let mut acc = [_mm512_setzero_ps(); 16];
        for (a, b) in ap.chunks_exact(8).zip(bp.chunks_exact(32)) {
            // SAFETY: `b` has 32 entries (chunks_exact).
            let (b0, b1) = unsafe { (_mm512_loadu_ps(b.as_ptr()), _mm512_loadu_ps(b.as_ptr().add(16))) };
            for r in 0..8 {
                let av = _mm512_set1_ps(a[r]);
                acc[2 * r] = _mm512_fmadd_ps(av, b0, acc[2 * r]);
                acc[2 * r + 1] = _mm512_fmadd_ps(av, b1, acc[2 * r + 1]);
            }
        }
        let mut out = [[0.0f32; 32]; 8];
        for (r, row) in out.iter_mut().enumerate() {
            // SAFETY: each row has 32 entries.
            unsafe {
                _mm512_storeu_ps(row.as_mut_ptr(), acc[2 * r]);
                _mm512_storeu_ps(row.as_mut_ptr().add(16), acc[2 * r + 1]);
            }
        }
        out
    }
}

/// The transpose of a row-major `rows × cols` matrix.
fn transpose<T: Real>(m: &[T], rows: usize, cols: usize) -> Vec<T> {
    let mut t = vec![T::zero(); rows * cols];
    for (i, row) in m.chunks_exact(cols).enumerate() {
        for (j, &v) in row.iter().enumerate() {
            t[j * rows + i] = v;
        }
    }
    t
}

/// Sums per-chunk partial gradients into the parameter blocks of `grad`: chunk j belongs to
/// task `task_of[j]`; with a shared block (stride 0) everything goes to block 0.
fn reduce_into<T: Real>(parts: &[Vec<T>], task_of: &[usize], grad: ViewMut<'_, Vec<T>>, tasks: usize, accumulate: bool) {
    let len = parts.first().map_or(0, |p| p.len());
    let blocks = if grad.stride == 0 { 1 } else { tasks };
    for t in 0..blocks {
        let start = grad.offset + t * grad.stride;
        let out = &mut grad.buf[start..start + len];
        if !accumulate {
            out.fill(T::zero());
        }
        for (p, &pt) in parts.iter().zip(task_of) {
            if grad.stride == 0 || pt == t {
                axpy_slice(T::one(), p, out);
            }
        }
    }
}

/// Chunks of images for parameter gradients: no chunk crosses a task, about four per thread.
fn image_chunks(batch: ImageBatch) -> Vec<(usize, std::ops::Range<usize>)> {
    let threads = crate::cpu::pieces();
    let per_chunk = (batch.images().div_ceil(threads)).clamp(1, batch.per_task.max(1));
    let mut chunks = Vec::new();
    for t in 0..batch.tasks {
        let mut i = 0;
        while i < batch.per_task {
            let end = (i + per_chunk).min(batch.per_task);
            chunks.push((t, t * batch.per_task + i..t * batch.per_task + end));
            i = end;
        }
    }
    chunks
}

/// Per (task, channel) group: `Σ f(plane, group)` over the group's planes, where a plane is the
/// `height·width` range of one (image, channel) in the batch buffer. Returns `tasks·channels`
/// values.
fn group_reduce<T: Real>(batch: ImageBatch, f: impl Fn(std::ops::Range<usize>, usize) -> T + Sync + Send) -> Vec<T> {
    let hw = batch.height * batch.width;
    let c = batch.channels;
    map_range(batch.tasks * c, batch.len(), |g| {
        let (t, ch) = (g / c, g % c);
        (0..batch.per_task).fold(T::zero(), |acc, n| {
            let p = (t * batch.per_task + n) * c + ch;
            acc + f(p * hw..(p + 1) * hw, g)
        })
    })
}

/// `f(plane range, group, out plane)` for every plane of `out` (shape `batch`), images split
/// across threads.
fn map_planes<T: Real>(batch: ImageBatch, out: &mut [T], f: impl Fn(std::ops::Range<usize>, usize, &mut [T]) + Sync + Send) {
    let hw = batch.height * batch.width;
    let c = batch.channels;
    chunked(&mut out[..batch.len()], batch.image_len(), batch.len(), |start, o| {
        let img = start / batch.image_len();
        for (ch, plane) in o.chunks_exact_mut(hw).enumerate() {
            let p = img * c + ch;
            f(p * hw..(p + 1) * hw, (img / batch.per_task) * c + ch, plane);
        }
    });
}

/// Writes per-group parameter sums (`gsum`, `bsum`: `tasks·channels` each) into a BN block of
/// `grad` (γ part then β part), summing over tasks when the block is shared.
fn write_bn_grad<T: Real>(batch: ImageBatch, gsum: &[T], bsum: &[T], grad: ViewMut<'_, Vec<T>>) {
    let c = batch.channels;
    let blocks = if grad.stride == 0 { 1 } else { batch.tasks };
    for t in 0..blocks {
        let start = grad.offset + t * grad.stride;
        grad.buf[start..start + 2 * c].fill(T::zero());
    }
    for t in 0..batch.tasks {
        let start = grad.offset + if grad.stride == 0 { 0 } else { t * grad.stride };
        for ch in 0..c {
            grad.buf[start + ch] = grad.buf[start + ch] + gsum[t * c + ch];
            grad.buf[start + c + ch] = grad.buf[start + c + ch] + bsum[t * c + ch];
        }
    }
}

/// For every pooled entry of a plane `x` (`h × w`, row-major), in order: the argmax's offset in
/// the plane (scan order (0,0), (0,1), (1,0), (1,1), first maximum wins; a NaN never wins) and
/// the maximum. Row by row, so no division per entry.
#[inline(always)]
fn window_maxima<T: Real>(x: &[T], h: usize, w: usize, mut f: impl FnMut(usize, usize, T)) {
    let (ph, pw) = (h / 2, w / 2);
    for py in 0..ph {
        let top = 2 * py * w;
        let (r0, r1) = (&x[top..top + w], &x[top + w..top + 2 * w]);
        for px in 0..pw {
            let (mut best, mut m) = (2 * px, r0[2 * px]);
            if r0[2 * px + 1] > m {
                (best, m) = (2 * px + 1, r0[2 * px + 1]);
            }
            if r1[2 * px] > m {
                (best, m) = (w + 2 * px, r1[2 * px]);
            }
            if r1[2 * px + 1] > m {
                (best, m) = (w + 2 * px + 1, r1[2 * px + 1]);
            }
            f(py * pw + px, top + best, m);
        }
    }
}

/// `f(input plane offset, pooled plane)` for every pooled plane, images split across threads.
fn pool_planes<T: Real>(batch: ImageBatch, y: &mut [T], f: impl Fn(usize, &mut [T]) + Sync + Send) {
    let pooled = batch.pooled();
    let (hw, phw) = (batch.height * batch.width, pooled.height * pooled.width);
    if phw == 0 {
        return;
    }
    chunked(&mut y[..pooled.len()], pooled.image_len(), batch.len(), |start, yc| {
        for (j, plane) in yc.chunks_exact_mut(phw).enumerate() {
            f((start / phw + j) * hw, plane);
        }
    });
}

impl<T: Real> MetaBackend for CpuBackend<T> {
    fn conv3x3(&self, x: &Vec<T>, conv: Conv3x3, params: View<'_, Vec<T>>, bias: bool, out: &mut Vec<T>) {
        let Conv3x3 { batch, c_out, accumulate } = conv;
        let (hw, k) = (batch.height * batch.width, batch.channels * 9);
        let out_len = c_out * hw;
        assert!(x.len() >= batch.len() && out.len() >= batch.images() * out_len, "conv3x3: shape mismatch");
        // The weights (c_out × k) of each distinct block, packed once for all its images.
        let blocks = if params.stride == 0 { 1 } else { batch.tasks };
        let packed: Vec<PackedA<T>> = (0..blocks).map(|t| PackedA::new(self.wide, c_out, k, block(&params, t, c_out * k))).collect();
        let work = batch.images() * out_len * k;
        chunked(&mut out[..batch.images() * out_len], out_len, work, |start, o| {
            let i = start / out_len;
            let t = i / batch.per_task;
            let p = block(&params, t, c_out * k + c_out);
            let a = &packed[if params.stride == 0 { 0 } else { t }];
            // A pooled buffer: im2col writes every entry, and a fresh allocation this large
            // would be fresh pages from the kernel for every image.
            let mut col = self.take_at_least(k * hw);
            im2col(&x[i * batch.image_len()..(i + 1) * batch.image_len()], batch.channels, batch.height, batch.width, &mut col[..k * hw]);
            if !accumulate {
                o.fill(T::zero());
            }
            if bias {
                for (co, orow) in o.chunks_exact_mut(hw).enumerate() {
                    let b = p[c_out * k + co];
                    orow.iter_mut().for_each(|v| *v = *v + b);
                }
            }
            gemm_acc(a, hw, &col[..k * hw], false, o);
            self.give(col);
        });
    }

    fn conv3x3_input_grad(&self, dy: &Vec<T>, conv: Conv3x3, params: View<'_, Vec<T>>, dx: &mut Vec<T>) {
        let Conv3x3 { batch, c_out, accumulate } = conv;
        let (hw, k) = (batch.height * batch.width, batch.channels * 9);
        let img = batch.image_len();
        assert!(dy.len() >= batch.images() * c_out * hw && dx.len() >= batch.len(), "conv3x3_input_grad: shape mismatch");
        // Wᵀ (k × c_out) per distinct weight block.
        let blocks = if params.stride == 0 { 1 } else { batch.tasks };
        let wt: Vec<PackedA<T>> = (0..blocks)
            .map(|t| PackedA::new(self.wide, k, c_out, &transpose(&block(&params, t, c_out * k)[..c_out * k], c_out, k)))
            .collect();
        let work = batch.images() * c_out * hw * k;
        chunked(&mut dx[..batch.len()], img, work, |start, d| {
            let i = start / img;
            let t = if params.stride == 0 { 0 } else { i / batch.per_task };
            let mut dcol = self.take_at_least(k * hw);
            dcol[..k * hw].fill(T::zero());
            gemm_acc(&wt[t], hw, &dy[i * c_out * hw..(i + 1) * c_out * hw], false, &mut dcol[..k * hw]);
            if !accumulate {
                d.fill(T::zero());
            }
            col2im_add(&dcol[..k * hw], batch.channels, batch.height, batch.width, d);
            self.give(dcol);
        });
    }

    fn conv3x3_param_grad(&self, x: &Vec<T>, dy: &Vec<T>, conv: Conv3x3, grad: ViewMut<'_, Vec<T>>) {
        let Conv3x3 { batch, c_out, accumulate } = conv;
        let (hw, k) = (batch.height * batch.width, batch.channels * 9);
        let img = batch.image_len();
        assert!(dy.len() >= batch.images() * c_out * hw && x.len() >= batch.len(), "conv3x3_param_grad: shape mismatch");
        let chunks = image_chunks(batch);
        let work = batch.images() * c_out * hw * k;
        let parts = map_range(chunks.len(), work, |j| {
            let mut acc = vec![T::zero(); c_out * k + c_out];
            let mut col = self.take_at_least(k * hw);
            for i in chunks[j].1.clone() {
                im2col(&x[i * img..(i + 1) * img], batch.channels, batch.height, batch.width, &mut col[..k * hw]);
                let dyi = &dy[i * c_out * hw..(i + 1) * c_out * hw];
                // dW (c_out × k) += dy (c_out × hw) · colᵀ (hw × k), colᵀ read in place.
                gemm_acc(&PackedA::new(self.wide, c_out, hw, dyi), k, &col[..k * hw], true, &mut acc[..c_out * k]);
                for (co, drow) in dyi.chunks_exact(hw).enumerate() {
                    acc[c_out * k + co] = acc[c_out * k + co] + sum(drow);
                }
            }
            self.give(col);
            acc
        });
        let task_of: Vec<usize> = chunks.iter().map(|c| c.0).collect();
        reduce_into(&parts, &task_of, grad, batch.tasks, accumulate);
    }

    fn batch_norm(&self, x: &Vec<T>, batch: ImageBatch, params: View<'_, Vec<T>>, y: &mut Vec<T>, stats: &mut Vec<T>) {
        let c = batch.channels;
        let m = to_t::<T>((batch.per_task * batch.height * batch.width) as f64);
        let mean: Vec<T> = group_reduce(batch, |r, _| sum(&x[r])).into_iter().map(|v| v / m).collect();
        let var = group_reduce(batch, |r, g| x[r].iter().fold(T::zero(), |s, &v| s + (v - mean[g]) * (v - mean[g])));
        let eps = to_t::<T>(BN_EPS);
        let inv: Vec<T> = var.iter().map(|&v| T::one() / (v / m + eps).sqrt()).collect();
        for g in 0..batch.tasks * c {
            stats[2 * g] = mean[g];
            stats[2 * g + 1] = inv[g];
        }
        // y = γ s (x − μ) + β = a·x + b per plane.
        map_planes(batch, y, |r, g, out| {
            let p = block(&params, g / c, 2 * c);
            let a = p[g % c] * inv[g];
            let b = p[c + g % c] - a * mean[g];
            for (o, &xv) in out.iter_mut().zip(&x[r]) {
                *o = a * xv + b;
            }
        });
    }

    fn batch_norm_backward(&self, x: &Vec<T>, dy: &Vec<T>, layer: BnLayer<'_, Vec<T>>, dx: &mut Vec<T>, grad: ViewMut<'_, Vec<T>>) {
        let BnLayer { batch, params, stats } = layer;
        let c = batch.channels;
        let m = to_t::<T>((batch.per_task * batch.height * batch.width) as f64);
        let sum_dy = group_reduce(batch, |r, _| sum(&dy[r]));
        // Σ dy·x̂ = s·Σ dy·(x − μ).
        let sum_dy_xhat: Vec<T> = group_reduce(batch, |r, g| dot_shifted(&dy[r.clone()], &x[r], stats[2 * g]))
            .iter()
            .enumerate()
            .map(|(g, &v)| v * stats[2 * g + 1])
            .collect();
        // dx = γ s (dy − mean(dy) − x̂ mean(dy x̂)) = A·dy + B·x + C per plane.
        map_planes(batch, dx, |r, g, out| {
            let (mu, s) = (stats[2 * g], stats[2 * g + 1]);
            let gamma = block(&params, g / c, 2 * c)[g % c];
            let a = gamma * s;
            let b = -a * s * sum_dy_xhat[g] / m;
            let c0 = -a * sum_dy[g] / m - b * mu;
            for ((o, &d), &xv) in out.iter_mut().zip(&dy[r.clone()]).zip(&x[r]) {
                *o = a * d + b * xv + c0;
            }
        });
        write_bn_grad(batch, &sum_dy_xhat, &sum_dy, grad);
    }

    fn batch_norm_tangent(&self, x: Dual<'_, Vec<T>>, layer: BnLayer<'_, Vec<T>>, rparams: View<'_, Vec<T>>, ry: &mut Vec<T>) {
        let (Dual { value: x, tangent: rx }, BnLayer { batch, params, stats }) = (x, layer);
        let c = batch.channels;
        let m = to_t::<T>((batch.per_task * batch.height * batch.width) as f64);
        let sum_rx = group_reduce(batch, |r, _| sum(&rx[r]));
        let sum_xc_rx = group_reduce(batch, |r, g| dot_shifted(&rx[r.clone()], &x[r], stats[2 * g]));
        // Ry = Rγ x̂ + γ s (Rx − mean(Rx) − x̂ mean(x̂ Rx)) + Rβ = A·Rx + B·x + C per plane.
        map_planes(batch, ry, |r, g, out| {
            let (mu, s) = (stats[2 * g], stats[2 * g + 1]);
            let (p, rp) = (block(&params, g / c, 2 * c), block(&rparams, g / c, 2 * c));
            let (gamma, rgamma, rbeta) = (p[g % c], rp[g % c], rp[c + g % c]);
            let mean_xhat_rx = s * sum_xc_rx[g] / m;
            let a = gamma * s;
            let b = rgamma * s - gamma * s * s * mean_xhat_rx;
            let c0 = -b * mu - a * sum_rx[g] / m + rbeta;
            for ((o, &rv), &xv) in out.iter_mut().zip(&rx[r.clone()]).zip(&x[r]) {
                *o = a * rv + b * xv + c0;
            }
        });
    }

    fn batch_norm_backward_tangent(
        &self,
        x: Dual<'_, Vec<T>>,
        dy: Dual<'_, Vec<T>>,
        layer: BnLayer<'_, Vec<T>>,
        rparams: View<'_, Vec<T>>,
        rdx: &mut Vec<T>,
        rgrad: ViewMut<'_, Vec<T>>,
    ) {
        let (Dual { value: x, tangent: rx }, Dual { value: dy, tangent: rdy }) = (x, dy);
        let BnLayer { batch, params, stats } = layer;
        let c = batch.channels;
        let m = to_t::<T>((batch.per_task * batch.height * batch.width) as f64);
        // Group sums (x_c = x − μ; x̂ = s·x_c).
        let s_rx = group_reduce(batch, |r, _| sum(&rx[r]));
        let s_xc_rx = group_reduce(batch, |r, g| dot_shifted(&rx[r.clone()], &x[r], stats[2 * g]));
        let s_dy = group_reduce(batch, |r, _| sum(&dy[r]));
        let s_dy_xc = group_reduce(batch, |r, g| dot_shifted(&dy[r.clone()], &x[r], stats[2 * g]));
        let s_rdy = group_reduce(batch, |r, _| sum(&rdy[r]));
        let s_rdy_xc = group_reduce(batch, |r, g| dot_shifted(&rdy[r.clone()], &x[r], stats[2 * g]));
        let s_dy_rx = group_reduce(batch, |r, _| dot_shifted(&dy[r.clone()], &rx[r], T::zero()));
        let groups = batch.tasks * c;
        let mut rgam = vec![T::zero(); groups];
        let mut consts = Vec::with_capacity(groups);
        for g in 0..groups {
            let s = stats[2 * g + 1];
            let gamma = block(&params, g / c, 2 * c)[g % c];
            let rgamma = block(&rparams, g / c, 2 * c)[g % c];
            let mean_rx = s_rx[g] / m;
            let mean_xhat_rx = s * s_xc_rx[g] / m;
            let (sum_dy_xhat, sum_rdy_xhat) = (s * s_dy_xc[g], s * s_rdy_xc[g]);
            // Σ dy·Rx̂ with Rx̂ = s (Rx − mean(Rx) − x̂ mean(x̂ Rx)).
            let sum_dy_rxhat = s * (s_dy_rx[g] - mean_rx * s_dy[g] - mean_xhat_rx * sum_dy_xhat);
            rgam[g] = sum_rdy_xhat + sum_dy_rxhat;
            // With g = γ dy, Rg = Rγ dy + γ Rdy:
            let mean_rg = (rgamma * s_dy[g] + gamma * s_rdy[g]) / m;
            let mean_g_xhat = gamma * sum_dy_xhat / m;
            let mean_cross = (rgamma * sum_dy_xhat + gamma * sum_rdy_xhat + gamma * sum_dy_rxhat) / m;
            let rs_over_s = -s * mean_xhat_rx;
            consts.push((
                s,
                gamma,
                rgamma,
                mean_rx,
                mean_xhat_rx,
                s_dy[g] / m,
                sum_dy_xhat / m,
                mean_rg,
                mean_g_xhat,
                mean_cross,
                rs_over_s,
            ));
        }
        map_planes(batch, rdx, |r, g, out| {
            let mu = stats[2 * g];
            let (s, gamma, rgamma, mean_rx, mean_xhat_rx, mean_dy, mean_dy_xhat, mean_rg, mean_g_xhat, mean_cross, rs_over_s) = consts[g];
            for (j, o) in out.iter_mut().enumerate() {
                let i = r.start + j;
                let xh = s * (x[i] - mu);
                let rxh = s * (rx[i] - mean_rx - xh * mean_xhat_rx);
                let rg = rgamma * dy[i] + gamma * rdy[i];
                let dx = s * gamma * (dy[i] - mean_dy - xh * mean_dy_xhat);
                *o = rs_over_s * dx + s * (rg - mean_rg - rxh * mean_g_xhat - xh * mean_cross);
            }
        });
        write_bn_grad(batch, &rgam, &s_rdy, rgrad);
    }

    fn relu_maxpool(&self, x: &Vec<T>, batch: ImageBatch, y: &mut Vec<T>) {
        let (h, w) = (batch.height, batch.width);
        pool_planes(batch, y, |off, plane| {
            window_maxima(&x[off..off + h * w], h, w, |o, _, m| plane[o] = if m > T::zero() { m } else { T::zero() });
        });
    }

    fn relu_maxpool_backward(&self, x: &Vec<T>, dy: &Vec<T>, batch: ImageBatch, dx: &mut Vec<T>) {
        let (h, w) = (batch.height, batch.width);
        let phw = (h / 2) * (w / 2);
        map_planes(batch, dx, |r, _, out| {
            out.fill(T::zero());
            let dyp = &dy[(r.start / (h * w)) * phw..][..phw];
            window_maxima(&x[r], h, w, |o, best, m| {
                if m > T::zero() {
                    out[best] = dyp[o];
                }
            });
        });
    }

    fn relu_maxpool_tangent(&self, x: &Vec<T>, rx: &Vec<T>, batch: ImageBatch, ry: &mut Vec<T>) {
        let (h, w) = (batch.height, batch.width);
        pool_planes(batch, ry, |off, plane| {
            let rxp = &rx[off..off + h * w];
            window_maxima(&x[off..off + h * w], h, w, |o, best, m| plane[o] = if m > T::zero() { rxp[best] } else { T::zero() });
        });
    }

    fn gemm(&self, g: Gemm, a: View<'_, Vec<T>>, b: View<'_, Vec<T>>, c: ViewMut<'_, Vec<T>>) {
        assert!(c.stride > 0 || g.tasks <= 1, "gemm: C needs a task stride");
        let (alpha, beta) = (to_t::<T>(g.alpha), to_t::<T>(g.beta));
        let (m, n, k) = (g.m, g.n, g.k);
        for t in 0..g.tasks {
            let at = block(&a, t, m * k);
            let bt = block(&b, t, k * n);
            let start = c.offset + t * c.stride;
            let ct = &mut c.buf[start..start + m * n];
            for i in 0..m {
                for j in 0..n {
                    let mut acc = T::zero();
                    for l in 0..k {
                        let av = if g.trans_a { at[l * m + i] } else { at[i * k + l] };
                        let bv = if g.trans_b { bt[j * k + l] } else { bt[l * n + j] };
                        acc = acc + av * bv;
                    }
                    let old = if g.beta == 0.0 { T::zero() } else { beta * ct[i * n + j] };
                    ct[i * n + j] = alpha * acc + old;
                }
            }
        }
    }

    fn add_row_bias(&self, tasks: usize, rows: usize, cols: usize, bias: View<'_, Vec<T>>, c: ViewMut<'_, Vec<T>>) {
        for t in 0..tasks {
            let bt = block(&bias, t, cols);
            let start = c.offset + t * c.stride;
            for row in c.buf[start..start + rows * cols].chunks_exact_mut(cols) {
                axpy_slice(T::one(), bt, row);
            }
        }
    }

    fn sum_rows(&self, s: SumRows, e: View<'_, Vec<T>>, out: ViewMut<'_, Vec<T>>) {
        let SumRows { tasks, rows, cols, alpha, beta } = s;
        let (al, be) = (to_t::<T>(alpha), to_t::<T>(beta));
        for t in 0..tasks {
            let et = block(&e, t, rows * cols);
            let start = out.offset + t * out.stride;
            let ot = &mut out.buf[start..start + cols];
            for (j, o) in ot.iter_mut().enumerate() {
                let s = (0..rows).fold(T::zero(), |acc, i| acc + et[i * cols + j]);
                *o = al * s + if beta == 0.0 { T::zero() } else { be * *o };
            }
        }
    }

    fn softmax_xent(
        &self,
        x: SoftmaxXent,
        z: &Vec<T>,
        labels: &Vec<T>,
        probs: &mut Vec<T>,
        mut grad: Option<&mut Vec<T>>,
        stats: &mut Vec<T>,
    ) {
        let SoftmaxXent { tasks, rows, classes, scale } = x;
        let sc = to_t::<T>(scale);
        for t in 0..tasks {
            let (mut loss, mut correct) = (T::zero(), T::zero());
            for r in 0..rows {
                let row = t * rows + r;
                let zr = &z[row * classes..(row + 1) * classes];
                let label = labels[row].to_usize().unwrap_or(usize::MAX);
                let (mut arg, mut mx) = (0, zr[0]);
                for (j, &v) in zr.iter().enumerate() {
                    if v > mx {
                        mx = v;
                        arg = j;
                    }
                }
                let sum = zr.iter().fold(T::zero(), |s, &v| s + (v - mx).exp());
                let pr = &mut probs[row * classes..(row + 1) * classes];
                for (p, &v) in pr.iter_mut().zip(zr) {
                    *p = (v - mx).exp() / sum;
                }
                loss = loss + mx + sum.ln() - zr.get(label).copied().unwrap_or(T::nan());
                if arg == label {
                    correct = correct + T::one();
                }
                if let Some(gr) = grad.as_deref_mut() {
                    for (j, gv) in gr[row * classes..(row + 1) * classes].iter_mut().enumerate() {
                        *gv = sc * (pr[j] - if j == label { T::one() } else { T::zero() });
                    }
                }
            }
            stats[2 * t] = loss / to_t::<T>(rows as f64);
            stats[2 * t + 1] = correct;
        }
    }

    fn softmax_curvature(&self, c: SoftmaxCurvature, p: &Vec<T>, u: &Vec<T>, out: &mut Vec<T>) {
        let SoftmaxCurvature { rows, classes, scale, accumulate } = c;
        let sc = to_t::<T>(scale);
        for r in 0..rows {
            let (pr, ur) = (&p[r * classes..(r + 1) * classes], &u[r * classes..(r + 1) * classes]);
            let pu = pr.iter().zip(ur).fold(T::zero(), |s, (&a, &b)| s + a * b);
            for ((o, &pv), &uv) in out[r * classes..(r + 1) * classes].iter_mut().zip(pr).zip(ur) {
                let v = sc * pv * (uv - pu);
                *o = if accumulate { *o + v } else { v };
            }
        }
    }
}
