//! `shaders/conv.wgsl`: 3×3 convolutions of a whole meta-batch as implicit GEMMs on the tiled
//! product, and the split-K parameter gradient with its ordered reduction.

use super::{groups_2d, tiles, u32_of, Kernel, DIV_LIMIT, TILE_K};
use crate::gpu::Access::{Read, ReadWrite};
use crate::gpu::{GpuBackend, GpuVector};
use crate::meta::{Conv3x3, ImageBatch, View, ViewMut};

crate::kernel_params! {
    struct Params {
        mode: u32,
        per_task: u32,
        c_in: u32,
        c_out: u32,
        height: u32,
        width: u32,
        w_offset: u32,
        w_stride: u32,
        m: u32,
        n: u32,
        k: u32,
        tiles_m: u32,
        tiles_n: u32,
        blocks: u32,
        chunks: u32,
        k_chunk: u32,
        images_per_block: u32,
        bias: u32,
        accumulate: u32,
        g_offset: u32,
        g_stride: u32,
    }
}

const PRODUCT: Kernel = Kernel::new("conv.wgsl", bilevel_shaders::CONV, "conv3x3_product", &[(1, Read), (2, Read), (3, ReadWrite)])
    .with_constants(&[("MODE_FORWARD", FORWARD), ("MODE_INPUT_GRAD", INPUT_GRAD), ("MODE_PARAM_GRAD", PARAM_GRAD)]);
const REDUCE: Kernel = Kernel::new("conv.wgsl", bilevel_shaders::CONV, "conv_grad_reduce", &[(3, ReadWrite), (4, ReadWrite)]);

const FORWARD: u32 = 0;
const INPUT_GRAD: u32 = 1;
const PARAM_GRAD: u32 = 2;

/// K chunks of the parameter gradient in flight at once (over all blocks): enough workgroups
/// to fill a GPU while the partial sums stay small (blocks·chunks·c_out·(9·c_in + 1) floats).
const TARGET_CHUNKS: usize = 64;
/// The shortest K chunk (pixels) worth a workgroup.
const MIN_CHUNK: usize = 256;

fn base(batch: ImageBatch, c_out: usize, mode: u32) -> Params {
    // The loaders split pixel indices of a task (or of the whole batch) with `div_u32`.
    assert!(
        batch.images() * batch.height * batch.width < DIV_LIMIT,
        "conv3x3: {} images of {}×{} exceed 2^21 pixels per dispatch",
        batch.images(),
        batch.height,
        batch.width
    );
    Params {
        mode,
        per_task: batch.per_task as u32,
        c_in: batch.channels as u32,
        c_out: c_out as u32,
        height: batch.height as u32,
        width: batch.width as u32,
        ..Params::default()
    }
}

/// `out (+)= conv(x, W_t) (+ b_t)` (mode 0) or `dx (+)= convᵀ(dy, W_t)` (mode 1): the product's
/// rows are output channels, its columns the pixels of one task's images.
fn product(gpu: &GpuBackend, mode: u32, src: &GpuVector, conv: Conv3x3, params: View<'_, GpuVector>, bias: bool, dst: &mut GpuVector) {
    let Conv3x3 { batch, c_out, accumulate } = conv;
    let hw = batch.height * batch.width;
    let (m, k) = if mode == FORWARD { (c_out, batch.channels * 9) } else { (batch.channels, c_out * 9) };
    let n = batch.per_task * hw;
    let blocks = batch.tasks;
    let p = Params {
        w_offset: u32_of(params.offset, "conv weight offset"),
        w_stride: u32_of(params.stride, "conv weight stride"),
        m: m as u32,
        n: u32_of(n, "pixels per task"),
        k: k as u32,
        tiles_m: tiles(m),
        tiles_n: tiles(n),
        blocks: blocks as u32,
        bias: bias as u32,
        accumulate: accumulate as u32,
        ..base(batch, c_out, mode)
    };
    let groups = blocks * (p.tiles_m * p.tiles_n) as usize;
    gpu.dispatch_groups(&PRODUCT, &p, &[src.binding(), params.buf.binding(), dst.binding()], groups_2d(groups));
}

pub(crate) fn forward(gpu: &GpuBackend, x: &GpuVector, conv: Conv3x3, params: View<'_, GpuVector>, bias: bool, out: &mut GpuVector) {
    let Conv3x3 { batch, c_out, .. } = conv;
    let plen = c_out * batch.channels * 9 + c_out;
    assert!(x.len() >= batch.len() && out.len() >= batch.with_channels(c_out).len(), "conv3x3: shape mismatch");
    assert!(
        params.buf.len() >= params.offset + batch.tasks.saturating_sub(1) * params.stride + plen,
        "conv3x3: parameter view out of range"
    );
    product(gpu, FORWARD, x, conv, params, bias, out)
}

pub(crate) fn input_grad(gpu: &GpuBackend, dy: &GpuVector, conv: Conv3x3, params: View<'_, GpuVector>, dx: &mut GpuVector) {
    let Conv3x3 { batch, c_out, .. } = conv;
    let wlen = c_out * batch.channels * 9;
    assert!(dy.len() >= batch.with_channels(c_out).len() && dx.len() >= batch.len(), "conv3x3_input_grad: shape mismatch");
    assert!(
        params.buf.len() >= params.offset + batch.tasks.saturating_sub(1) * params.stride + wlen,
        "conv3x3_input_grad: parameter view out of range"
    );
    product(gpu, INPUT_GRAD, dy, conv, params, false, dx)
}

/// `dW_b, db_b (+)= Σ dy ⊗ im2col(x)` per block b (each task, or all images when shared): the
/// pixels of a block are split into K chunks, each chunk's tile products go to a scratch
/// buffer, and a second pass adds the chunks in order into the gradient view.
pub(crate) fn param_grad(gpu: &GpuBackend, x: &GpuVector, dy: &GpuVector, conv: Conv3x3, grad: ViewMut<'_, GpuVector>) {
    let Conv3x3 { batch, c_out, accumulate } = conv;
    let hw = batch.height * batch.width;
    let (m, n) = (c_out, batch.channels * 9 + 1);
    assert!(x.len() >= batch.len() && dy.len() >= batch.with_channels(c_out).len(), "conv3x3_param_grad: shape mismatch");
    let blocks = if grad.stride == 0 { 1 } else { batch.tasks };
    assert!(
        grad.buf.len() >= grad.offset + blocks.saturating_sub(1) * grad.stride + m * n,
        "conv3x3_param_grad: gradient view out of range"
    );
    let images_per_block = batch.images() / blocks;
    let k = images_per_block * hw;
    let tk = TILE_K as usize;
    let max_chunks = k.div_ceil(MIN_CHUNK).max(1);
    let chunks = TARGET_CHUNKS.div_ceil(blocks).clamp(1, max_chunks);
    let k_chunk = (k.div_ceil(chunks).div_ceil(tk) * tk).max(tk);
    let chunks = k.div_ceil(k_chunk).max(1);
    let p = Params {
        m: m as u32,
        n: n as u32,
        k: u32_of(k, "pixels per gradient block"),
        tiles_m: tiles(m),
        tiles_n: tiles(n),
        blocks: blocks as u32,
        chunks: chunks as u32,
        k_chunk: k_chunk as u32,
        images_per_block: images_per_block as u32,
        accumulate: accumulate as u32,
        g_offset: u32_of(grad.offset, "conv gradient offset"),
        g_stride: u32_of(grad.stride, "conv gradient stride"),
        ..base(batch, c_out, PARAM_GRAD)
    };
    let partials = gpu.scratch(blocks * chunks * m * n, "conv.grad_partials");
    let groups = blocks * chunks * (p.tiles_m * p.tiles_n) as usize;
    gpu.dispatch_groups(&PRODUCT, &p, &[x.binding(), dy.binding(), partials.binding()], groups_2d(groups));
    gpu.dispatch(&REDUCE, &p, &[partials.binding(), grad.buf.binding()], u32_of(blocks * m * n, "conv gradient entries"));
}

/// Each kernel of this file, reflected against its WGSL.
#[cfg(test)]
pub(super) fn reflect_all() -> Vec<(Kernel, crate::Result<()>)> {
    [PRODUCT, REDUCE].into_iter().map(|k| (k, k.check::<Params>())).collect()
}
