//! The CPU implementation of [`MetaBackend`]: the f64 reference for the finite-difference
//! tests and, in f32, the path for machines without a GPU. Convolutions are im2col + a
//! row-blocked product per image, images split across the rayon pool; parameter gradients are
//! summed per chunk of images into private buffers, then reduced (no two threads write one
//! entry, and the order of the sums is fixed, so runs are reproducible).

use crate::cpu::{axpy_slice, chunked, dot, to_t, CpuBackend, Real, PARALLEL_WORK};
use crate::meta::ops::{Gemm, ImageBatch, MetaBackend, View, ViewMut, BN_EPS};

/// `f(i)` for `i < n`, on the rayon pool when `work` is large (natively), collected in order.
fn map_range<R: Send>(n: usize, work: usize, f: impl Fn(usize) -> R + Sync + Send) -> Vec<R> {
    #[cfg(not(target_arch = "wasm32"))]
    if work >= PARALLEL_WORK && n > 1 {
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

/// `C += A·B` with A `m × k`, B `k × n`, C `m × n`, all row-major: four rows of C at a time
/// share each streamed row of B (the rows stay in L1, the axpys vectorise).
fn gemm_acc<T: Real>(m: usize, n: usize, k: usize, a: &[T], b: &[T], c: &mut [T]) {
    for i0 in (0..m).step_by(4) {
        let rb = 4.min(m - i0);
        let cblock = &mut c[i0 * n..(i0 + rb) * n];
        for kk in 0..k {
            let brow = &b[kk * n..(kk + 1) * n];
            for (r, crow) in cblock.chunks_exact_mut(n).enumerate() {
                let av = a[(i0 + r) * k + kk];
                if av != T::zero() {
                    axpy_slice(av, brow, crow);
                }
            }
        }
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

/// Per (task, channel) group sums `Σ f(i, j)` over its entries, where `i` indexes the batch
/// buffer. Returns `tasks·channels` values.
fn group_sums<T: Real>(batch: ImageBatch, f: impl Fn(usize) -> T + Sync + Send) -> Vec<T> {
    let hw = batch.height * batch.width;
    let c = batch.channels;
    map_range(batch.tasks * c, batch.len(), |g| {
        let (t, ch) = (g / c, g % c);
        let mut acc = T::zero();
        for n in 0..batch.per_task {
            let base = ((t * batch.per_task + n) * c + ch) * hw;
            let mut part = T::zero();
            for i in base..base + hw {
                part = part + f(i);
            }
            acc = acc + part;
        }
        acc
    })
}

/// The (task, channel) group of entry `i`.
#[inline]
fn group_of(batch: ImageBatch, i: usize) -> usize {
    let hw = batch.height * batch.width;
    let img = i / (batch.channels * hw);
    let ch = (i / hw) % batch.channels;
    (img / batch.per_task) * batch.channels + ch
}

/// Applies `f(i, group)` to every entry of `out` (shape `batch`), images split across threads.
fn map_entries<T: Real>(batch: ImageBatch, out: &mut [T], f: impl Fn(usize, usize) -> T + Sync + Send) {
    let img = batch.image_len();
    chunked(&mut out[..batch.len()], img, batch.len(), |start, o| {
        for (j, v) in o.iter_mut().enumerate() {
            let i = start + j;
            *v = f(i, group_of(batch, i));
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

/// The 2×2 window's argmax (flat index into the batch buffer) for pooled entry `o`, and
/// whether its maximum is positive.
#[inline]
fn pool_argmax<T: Real>(x: &[T], batch: ImageBatch, o: usize) -> (usize, bool) {
    let (ph, pw) = (batch.height / 2, batch.width / 2);
    let plane = o / (ph * pw);
    let (py, px) = ((o % (ph * pw)) / pw, o % pw);
    let base = plane * batch.height * batch.width + 2 * py * batch.width + 2 * px;
    let mut best = base;
    for idx in [base + 1, base + batch.width, base + batch.width + 1] {
        if x[idx] > x[best] {
            best = idx;
        }
    }
    (best, x[best] > T::zero())
}

impl<T: Real> MetaBackend for CpuBackend<T> {
    fn conv3x3(
        &self,
        x: &Vec<T>,
        batch: ImageBatch,
        c_out: usize,
        params: View<'_, Vec<T>>,
        bias: bool,
        out: &mut Vec<T>,
        accumulate: bool,
    ) {
        let (hw, k) = (batch.height * batch.width, batch.channels * 9);
        let out_len = c_out * hw;
        assert!(x.len() >= batch.len() && out.len() >= batch.images() * out_len, "conv3x3: shape mismatch");
        let work = batch.images() * out_len * k;
        chunked(&mut out[..batch.images() * out_len], out_len, work, |start, o| {
            let i = start / out_len;
            let t = i / batch.per_task;
            let p = block(&params, t, c_out * k + c_out);
            let mut col = vec![T::zero(); k * hw];
            im2col(&x[i * batch.image_len()..(i + 1) * batch.image_len()], batch.channels, batch.height, batch.width, &mut col);
            if !accumulate {
                o.fill(T::zero());
            }
            if bias {
                for (co, orow) in o.chunks_exact_mut(hw).enumerate() {
                    let b = p[c_out * k + co];
                    orow.iter_mut().for_each(|v| *v = *v + b);
                }
            }
            gemm_acc(c_out, hw, k, &p[..c_out * k], &col, o);
        });
    }

    fn conv3x3_input_grad(
        &self,
        dy: &Vec<T>,
        batch: ImageBatch,
        c_out: usize,
        params: View<'_, Vec<T>>,
        dx: &mut Vec<T>,
        accumulate: bool,
    ) {
        let (hw, k) = (batch.height * batch.width, batch.channels * 9);
        let img = batch.image_len();
        assert!(dy.len() >= batch.images() * c_out * hw && dx.len() >= batch.len(), "conv3x3_input_grad: shape mismatch");
        // Wᵀ (k × c_out) per distinct weight block.
        let blocks = if params.stride == 0 { 1 } else { batch.tasks };
        let wt: Vec<Vec<T>> = (0..blocks).map(|t| transpose(&block(&params, t, c_out * k)[..c_out * k], c_out, k)).collect();
        let work = batch.images() * c_out * hw * k;
        chunked(&mut dx[..batch.len()], img, work, |start, d| {
            let i = start / img;
            let t = if params.stride == 0 { 0 } else { i / batch.per_task };
            let mut dcol = vec![T::zero(); k * hw];
            gemm_acc(k, hw, c_out, &wt[t], &dy[i * c_out * hw..(i + 1) * c_out * hw], &mut dcol);
            if !accumulate {
                d.fill(T::zero());
            }
            col2im_add(&dcol, batch.channels, batch.height, batch.width, d);
        });
    }

    fn conv3x3_param_grad(&self, x: &Vec<T>, dy: &Vec<T>, batch: ImageBatch, c_out: usize, grad: ViewMut<'_, Vec<T>>, accumulate: bool) {
        let (hw, k) = (batch.height * batch.width, batch.channels * 9);
        let img = batch.image_len();
        assert!(dy.len() >= batch.images() * c_out * hw && x.len() >= batch.len(), "conv3x3_param_grad: shape mismatch");
        let chunks = image_chunks(batch);
        let work = batch.images() * c_out * hw * k;
        let parts = map_range(chunks.len(), work, |j| {
            let mut acc = vec![T::zero(); c_out * k + c_out];
            let mut col = vec![T::zero(); k * hw];
            for i in chunks[j].1.clone() {
                im2col(&x[i * img..(i + 1) * img], batch.channels, batch.height, batch.width, &mut col);
                let dyi = &dy[i * c_out * hw..(i + 1) * c_out * hw];
                for (co, drow) in dyi.chunks_exact(hw).enumerate() {
                    for (kk, crow) in col.chunks_exact(hw).enumerate() {
                        acc[co * k + kk] = acc[co * k + kk] + dot(drow, crow);
                    }
                    acc[c_out * k + co] = acc[c_out * k + co] + drow.iter().fold(T::zero(), |s, &v| s + v);
                }
            }
            acc
        });
        let task_of: Vec<usize> = chunks.iter().map(|c| c.0).collect();
        reduce_into(&parts, &task_of, grad, batch.tasks, accumulate);
    }

    fn batch_norm(&self, x: &Vec<T>, batch: ImageBatch, params: View<'_, Vec<T>>, y: &mut Vec<T>, stats: &mut Vec<T>) {
        let c = batch.channels;
        let m = to_t::<T>((batch.per_task * batch.height * batch.width) as f64);
        let mean: Vec<T> = group_sums(batch, |i| x[i]).into_iter().map(|s| s / m).collect();
        let var: Vec<T> = group_sums(batch, |i| {
            let d = x[i] - mean[group_of(batch, i)];
            d * d
        })
        .into_iter()
        .map(|s| s / m)
        .collect();
        let eps = to_t::<T>(BN_EPS);
        let inv: Vec<T> = var.iter().map(|&v| T::one() / (v + eps).sqrt()).collect();
        for g in 0..batch.tasks * c {
            stats[2 * g] = mean[g];
            stats[2 * g + 1] = inv[g];
        }
        map_entries(batch, y, |i, g| {
            let p = block(&params, g / c, 2 * c);
            let ch = g % c;
            p[ch] * (x[i] - mean[g]) * inv[g] + p[c + ch]
        });
    }

    fn batch_norm_backward(
        &self,
        x: &Vec<T>,
        dy: &Vec<T>,
        batch: ImageBatch,
        params: View<'_, Vec<T>>,
        stats: &Vec<T>,
        dx: &mut Vec<T>,
        grad: ViewMut<'_, Vec<T>>,
    ) {
        let c = batch.channels;
        let m = to_t::<T>((batch.per_task * batch.height * batch.width) as f64);
        let xhat = |i: usize, g: usize| (x[i] - stats[2 * g]) * stats[2 * g + 1];
        let gamma = |g: usize| block(&params, g / c, 2 * c)[g % c];
        let sum_dy = group_sums(batch, |i| dy[i]);
        let sum_dy_xhat = group_sums(batch, |i| dy[i] * xhat(i, group_of(batch, i)));
        map_entries(batch, dx, |i, g| {
            let s = stats[2 * g + 1];
            gamma(g) * s * (dy[i] - sum_dy[g] / m - xhat(i, g) * sum_dy_xhat[g] / m)
        });
        write_bn_grad(batch, &sum_dy_xhat, &sum_dy, grad);
    }

    fn batch_norm_tangent(
        &self,
        x: &Vec<T>,
        rx: &Vec<T>,
        batch: ImageBatch,
        params: View<'_, Vec<T>>,
        rparams: View<'_, Vec<T>>,
        stats: &Vec<T>,
        ry: &mut Vec<T>,
    ) {
        let c = batch.channels;
        let m = to_t::<T>((batch.per_task * batch.height * batch.width) as f64);
        let xhat = |i: usize, g: usize| (x[i] - stats[2 * g]) * stats[2 * g + 1];
        let sum_rx = group_sums(batch, |i| rx[i]);
        let sum_xhat_rx = group_sums(batch, |i| xhat(i, group_of(batch, i)) * rx[i]);
        map_entries(batch, ry, |i, g| {
            let (p, rp) = (block(&params, g / c, 2 * c), block(&rparams, g / c, 2 * c));
            let ch = g % c;
            let xh = xhat(i, g);
            let rxhat = stats[2 * g + 1] * (rx[i] - sum_rx[g] / m - xh * sum_xhat_rx[g] / m);
            rp[ch] * xh + p[ch] * rxhat + rp[c + ch]
        });
    }

    fn batch_norm_backward_tangent(
        &self,
        x: &Vec<T>,
        rx: &Vec<T>,
        dy: &Vec<T>,
        rdy: &Vec<T>,
        batch: ImageBatch,
        params: View<'_, Vec<T>>,
        rparams: View<'_, Vec<T>>,
        stats: &Vec<T>,
        rdx: &mut Vec<T>,
        rgrad: ViewMut<'_, Vec<T>>,
    ) {
        let c = batch.channels;
        let m = to_t::<T>((batch.per_task * batch.height * batch.width) as f64);
        let xhat = |i: usize, g: usize| (x[i] - stats[2 * g]) * stats[2 * g + 1];
        let gamma = |g: usize| block(&params, g / c, 2 * c)[g % c];
        let rgamma = |g: usize| block(&rparams, g / c, 2 * c)[g % c];
        let gr = |i: usize| group_of(batch, i);
        let sum_rx = group_sums(batch, |i| rx[i]);
        let sum_xhat_rx = group_sums(batch, |i| xhat(i, gr(i)) * rx[i]);
        let rxhat = |i: usize, g: usize| stats[2 * g + 1] * (rx[i] - sum_rx[g] / m - xhat(i, g) * sum_xhat_rx[g] / m);
        // g = γ·dy and its tangent Rg = Rγ·dy + γ·Rdy.
        let rg = |i: usize, g: usize| rgamma(g) * dy[i] + gamma(g) * rdy[i];
        let sum_dy = group_sums(batch, |i| dy[i]);
        let sum_dy_xhat = group_sums(batch, |i| dy[i] * xhat(i, gr(i)));
        let sum_rg = group_sums(batch, |i| rg(i, gr(i)));
        let sum_rg_xhat = group_sums(batch, |i| rg(i, gr(i)) * xhat(i, gr(i)));
        let sum_dy_rxhat = group_sums(batch, |i| dy[i] * rxhat(i, gr(i)));
        let sum_rdy = group_sums(batch, |i| rdy[i]);
        let sum_rdy_xhat = group_sums(batch, |i| rdy[i] * xhat(i, gr(i)));
        map_entries(batch, rdx, |i, g| {
            let s = stats[2 * g + 1];
            let xh = xhat(i, g);
            let gm = gamma(g);
            // dx/s and Rs/s = −s·mean(x̂·Rx).
            let dx_over_s = gm * (dy[i] - sum_dy[g] / m - xh * sum_dy_xhat[g] / m);
            let rs_over_s = -s * sum_xhat_rx[g] / m;
            let mean_g_xhat = gm * sum_dy_xhat[g] / m;
            let mean_cross = (sum_rg_xhat[g] + gm * sum_dy_rxhat[g]) / m;
            rs_over_s * s * dx_over_s + s * (rg(i, g) - sum_rg[g] / m - rxhat(i, g) * mean_g_xhat - xh * mean_cross)
        });
        let rgam: Vec<T> = sum_rdy_xhat.iter().zip(&sum_dy_rxhat).map(|(&a, &b)| a + b).collect();
        write_bn_grad(batch, &rgam, &sum_rdy, rgrad);
    }

    fn relu_maxpool(&self, x: &Vec<T>, batch: ImageBatch, y: &mut Vec<T>) {
        let pooled = batch.pooled();
        let n = pooled.len();
        chunked(&mut y[..n], pooled.image_len().max(1), n * 4, |start, yc| {
            for (j, v) in yc.iter_mut().enumerate() {
                let (best, pos) = pool_argmax(x, batch, start + j);
                *v = if pos { x[best] } else { T::zero() };
            }
        });
    }

    fn relu_maxpool_backward(&self, x: &Vec<T>, dy: &Vec<T>, batch: ImageBatch, dx: &mut Vec<T>) {
        let pooled = batch.pooled();
        let (img, pimg) = (batch.image_len(), pooled.image_len());
        chunked(&mut dx[..batch.len()], img, batch.len(), |start, d| {
            d.fill(T::zero());
            let i = start / img;
            for (o, &g) in dy.iter().enumerate().skip(i * pimg).take(pimg) {
                let (best, pos) = pool_argmax(x, batch, o);
                if pos {
                    d[best - start] = g;
                }
            }
        });
    }

    fn relu_maxpool_tangent(&self, x: &Vec<T>, rx: &Vec<T>, batch: ImageBatch, ry: &mut Vec<T>) {
        let pooled = batch.pooled();
        let n = pooled.len();
        chunked(&mut ry[..n], pooled.image_len().max(1), n * 4, |start, yc| {
            for (j, v) in yc.iter_mut().enumerate() {
                let (best, pos) = pool_argmax(x, batch, start + j);
                *v = if pos { rx[best] } else { T::zero() };
            }
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

    fn sum_rows(&self, tasks: usize, rows: usize, cols: usize, alpha: f64, e: View<'_, Vec<T>>, beta: f64, out: ViewMut<'_, Vec<T>>) {
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
        tasks: usize,
        rows: usize,
        classes: usize,
        z: &Vec<T>,
        labels: &Vec<T>,
        scale: f64,
        probs: &mut Vec<T>,
        mut grad: Option<&mut Vec<T>>,
        stats: &mut Vec<T>,
    ) {
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

    fn softmax_curvature(&self, rows: usize, classes: usize, p: &Vec<T>, u: &Vec<T>, scale: f64, out: &mut Vec<T>, accumulate: bool) {
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
