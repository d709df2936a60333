//! `shaders/pool.wgsl`: ReLU + 2×2 max-pool (floor), its backward and forward tangent.

use super::{u32_of, Kernel};
use crate::gpu::Access::{Read, ReadWrite};
use crate::gpu::{GpuBackend, GpuVector};
use crate::meta::ImageBatch;

crate::kernel_params! {
    struct Params {
        planes: u32,
        height: u32,
        width: u32,
    }
}

const fn spec(entry: &'static str) -> Kernel {
    Kernel::new("pool.wgsl", bilevel_shaders::POOL, entry, &[(1, Read), (2, Read), (3, ReadWrite)])
}
const FORWARD: Kernel = spec("relu_maxpool");
const TANGENT: Kernel = spec("relu_maxpool_tangent");
const BACKWARD: Kernel = spec("relu_maxpool_backward");

/// The forward (`other = None`) or the tangent along `other = Rx`: one invocation per pooled entry.
fn params(batch: ImageBatch) -> Params {
    Params { planes: u32_of(batch.images() * batch.channels, "planes"), height: batch.height as u32, width: batch.width as u32 }
}

pub(crate) fn forward(gpu: &GpuBackend, x: &GpuVector, other: Option<&GpuVector>, batch: ImageBatch, y: &mut GpuVector) {
    let pooled = batch.pooled().len();
    assert!(x.len() >= batch.len() && y.len() >= pooled, "relu_maxpool: shape mismatch");
    assert!(other.is_none_or(|r| r.len() >= batch.len()), "relu_maxpool_tangent: Rx is too short");
    let p = params(batch);
    let (spec, other) = match other {
        Some(r) => (&TANGENT, r.binding()),
        None => (&FORWARD, gpu.unused_binding()),
    };
    gpu.dispatch(spec, &p, &[x.binding(), other, y.binding()], u32_of(pooled, "pooled entries"));
}

/// One invocation per input entry, so dx is written without scatter or atomics.
pub(crate) fn backward(gpu: &GpuBackend, x: &GpuVector, dy: &GpuVector, batch: ImageBatch, dx: &mut GpuVector) {
    assert!(x.len() >= batch.len() && dx.len() >= batch.len() && dy.len() >= batch.pooled().len(), "relu_maxpool_backward: shape mismatch");
    let p = params(batch);
    gpu.dispatch(&BACKWARD, &p, &[x.binding(), dy.binding(), dx.binding()], u32_of(batch.len(), "pool input entries"));
}

/// Each kernel of this file, reflected against its WGSL.
#[cfg(test)]
pub(super) fn reflect_all() -> Vec<(Kernel, crate::Result<()>)> {
    [FORWARD, TANGENT, BACKWARD].into_iter().map(|k| (k, k.check::<Params>())).collect()
}
