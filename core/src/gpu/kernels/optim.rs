//! `shaders/optim.wgsl`: the Adam update.

use super::KernelSpec;
use crate::gpu::{GpuBackend, GpuVector};
use crate::optim::AdamStep;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
}

const ADAM: KernelSpec = KernelSpec {
    module: "optim.wgsl",
    source: bilevel_shaders::OPTIM,
    entry: "adam",
    storage: &[(1, true), (2, false), (3, false), (4, false)],
};

pub(crate) fn adam(gpu: &GpuBackend, g: &GpuVector, m: &mut GpuVector, v: &mut GpuVector, x: &mut GpuVector, step: AdamStep) {
    let n = x.len();
    assert!(g.len() == n && m.len() == n && v.len() == n, "adam: length mismatch");
    let p = Params { n: n as u32, lr: step.lr as f32, beta1: step.beta1 as f32, beta2: step.beta2 as f32, eps: step.eps as f32 };
    gpu.dispatch(&ADAM, &p, &[g.bound(), m.bound(), v.bound(), x.bound()], n as u32);
}
