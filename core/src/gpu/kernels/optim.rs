//! `shaders/optim.wgsl`: the Adam update.

use super::Kernel;
use crate::gpu::Access::{Read, ReadWrite};
use crate::gpu::{GpuBackend, GpuVector};
use crate::optim::AdamStep;

crate::kernel_params! {
    struct Params {
        n: u32,
        lr: f32,
        beta1: f32,
        beta2: f32,
        eps: f32,
    }
}

const ADAM: Kernel =
    Kernel::new("optim.wgsl", bilevel_shaders::OPTIM, "adam", &[(1, Read), (2, ReadWrite), (3, ReadWrite), (4, ReadWrite)]);

pub(crate) fn adam(gpu: &GpuBackend, g: &GpuVector, m: &mut GpuVector, v: &mut GpuVector, x: &mut GpuVector, step: AdamStep) {
    let n = x.len();
    assert!(g.len() == n && m.len() == n && v.len() == n, "adam: length mismatch");
    let p = Params { n: n as u32, lr: step.lr as f32, beta1: step.beta1 as f32, beta2: step.beta2 as f32, eps: step.eps as f32 };
    gpu.dispatch(&ADAM, &p, &[g.binding(), m.binding(), v.binding(), x.binding()], n as u32);
}

/// Each kernel of this file, reflected against its WGSL.
#[cfg(test)]
pub(super) fn reflect_all() -> Vec<(Kernel, crate::Result<()>)> {
    [ADAM].into_iter().map(|k| (k, k.check::<Params>())).collect()
}
