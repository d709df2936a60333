//! `shaders/reduce.wgsl`: `out ← scale·xᵀy` as a deterministic two-pass tree reduction.

use super::KernelSpec;
use crate::gpu::{GpuBackend, GpuScalar, GpuVector, REDUCE_PARTIALS};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    out: u32,
    accumulate: u32,
    num_partials: u32,
    scale: f32,
    has_y: u32,
}

const DOT_PARTIAL: KernelSpec = KernelSpec {
    module: "reduce.wgsl",
    source: bilevel_shaders::REDUCE,
    entry: "dot_partial",
    storage: &[(1, true), (2, true), (3, false)],
};
const SUM_PARTIALS: KernelSpec =
    KernelSpec { module: "reduce.wgsl", source: bilevel_shaders::REDUCE, entry: "sum_partials", storage: &[(3, false), (4, false)] };

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
    let y = y.map_or(gpu.dummy_bound(), |y| y.bound());
    gpu.dispatch_groups(&DOT_PARTIAL, &p, &[x.bound(), y, gpu.partials_bound()], (groups, 1));
    gpu.dispatch_groups(&SUM_PARTIALS, &p, &[gpu.partials_bound(), gpu.scalars_bound()], (1, 1));
}

pub(crate) fn dot(gpu: &GpuBackend, x: &GpuVector, y: &GpuVector, scale: f64, out: &GpuScalar, accumulate: bool) {
    assert_eq!(x.len(), y.len(), "dot: length mismatch");
    reduce(gpu, x, Some(y), scale, out, accumulate)
}

pub(crate) fn sum(gpu: &GpuBackend, x: &GpuVector, scale: f64, out: &GpuScalar, accumulate: bool) {
    reduce(gpu, x, None, scale, out, accumulate)
}
