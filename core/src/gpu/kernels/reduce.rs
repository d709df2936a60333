//! `shaders/reduce.wgsl`: `out ← scale·xᵀy` as a deterministic two-pass tree reduction.

use super::Kernel;
use crate::gpu::Access::{Read, ReadWrite};
use crate::gpu::{GpuBackend, GpuScalar, GpuVector, REDUCE_PARTIALS};

crate::kernel_params! {
    struct Params {
        n: u32,
        out: u32,
        accumulate: u32,
        num_partials: u32,
        scale: f32,
        has_y: u32,
    }
}

const DOT_PARTIAL: Kernel = Kernel::new("reduce.wgsl", bilevel_shaders::REDUCE, "dot_partial", &[(1, Read), (2, Read), (3, ReadWrite)]);
const SUM_PARTIALS: Kernel = Kernel::new("reduce.wgsl", bilevel_shaders::REDUCE, "sum_partials", &[(3, ReadWrite), (4, ReadWrite)]);

/// `out ← scale·xᵀy` (`y = None`: `scale·Σx`), `+=` when `accumulate`.
fn reduce(gpu: &GpuBackend, x: &GpuVector, y: Option<&GpuVector>, scale: f64, out: &GpuScalar, accumulate: bool) {
    let groups = (x.len() as u32).div_ceil(bilevel_shaders::WORKGROUP_SIZE).clamp(1, REDUCE_PARTIALS);
    let p = Params {
        n: x.len() as u32,
        out: out.slot(),
        accumulate: accumulate as u32,
        num_partials: groups,
        scale: scale as f32,
        has_y: y.is_some() as u32,
    };
    let y = y.map_or(gpu.unused_binding(), |y| y.binding());
    gpu.dispatch_groups(&DOT_PARTIAL, &p, &[x.binding(), y, gpu.partials_binding()], (groups, 1));
    gpu.dispatch_groups(&SUM_PARTIALS, &p, &[gpu.partials_binding(), gpu.scalars_binding()], (1, 1));
}

pub(crate) fn dot(gpu: &GpuBackend, x: &GpuVector, y: &GpuVector, scale: f64, out: &GpuScalar, accumulate: bool) {
    assert_eq!(x.len(), y.len(), "dot: length mismatch");
    reduce(gpu, x, Some(y), scale, out, accumulate)
}

pub(crate) fn sum(gpu: &GpuBackend, x: &GpuVector, scale: f64, out: &GpuScalar, accumulate: bool) {
    reduce(gpu, x, None, scale, out, accumulate)
}

/// Each kernel of this file, reflected against its WGSL.
#[cfg(test)]
pub(super) fn reflect_all() -> Vec<(Kernel, crate::Result<()>)> {
    [DOT_PARTIAL, SUM_PARTIALS].into_iter().map(|k| (k, k.check::<Params>())).collect()
}
