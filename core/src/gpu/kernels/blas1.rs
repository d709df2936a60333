//! `shaders/blas1.wgsl`: `y ← a·x + b·y` and `y ← a`, with coefficients that may be ratios of
//! device scalars.

use super::{Kernel, NONE};
use crate::backend::Coef;
use crate::gpu::Access::{self, Read, ReadWrite};
use crate::gpu::{GpuBackend, GpuScalar, GpuVector};

crate::kernel_params! {
    struct Params {
        n: u32,
        a_num: u32,
        a_den: u32,
        b_num: u32,
        b_den: u32,
        a_gate: u32,
        b_gate: u32,
        _pad: u32,
        a_c: f32,
        b_c: f32,
        a_thr: f32,
        b_thr: f32,
    }
}

const BINDINGS: &[(u32, Access)] = &[(1, Read), (2, Read), (3, ReadWrite)];
const AXPBY: Kernel = Kernel::new("blas1.wgsl", bilevel_shaders::BLAS1, "axpby", BINDINGS);
const SCALE: Kernel = Kernel::new("blas1.wgsl", bilevel_shaders::BLAS1, "scale", BINDINGS);
const FILL: Kernel = Kernel::new("blas1.wgsl", bilevel_shaders::BLAS1, "fill", BINDINGS);

fn slot(s: Option<&GpuScalar>) -> u32 {
    s.map_or(NONE, |s| s.slot())
}

fn params(n: usize, a: Coef<'_, GpuScalar>, b: Coef<'_, GpuScalar>) -> Params {
    Params {
        n: n as u32,
        a_num: slot(a.num),
        a_den: slot(a.den),
        b_num: slot(b.num),
        b_den: slot(b.den),
        a_gate: slot(a.gate.map(|g| g.0)),
        b_gate: slot(b.gate.map(|g| g.0)),
        _pad: 0,
        a_c: a.c as f32,
        b_c: b.c as f32,
        a_thr: a.gate.map_or(0.0, |g| g.1 as f32),
        b_thr: b.gate.map_or(0.0, |g| g.1 as f32),
    }
}

pub(crate) fn axpby(gpu: &GpuBackend, a: Coef<'_, GpuScalar>, x: &GpuVector, b: Coef<'_, GpuScalar>, y: &mut GpuVector) {
    assert_eq!(x.len(), y.len(), "axpby: length mismatch");
    gpu.dispatch(&AXPBY, &params(y.len(), a, b), &[gpu.scalars_binding(), x.binding(), y.binding()], y.len() as u32);
}

pub(crate) fn fill(gpu: &GpuBackend, a: Coef<'_, GpuScalar>, y: &mut GpuVector) {
    let p = params(y.len(), a, Coef::c(0.0));
    gpu.dispatch(&FILL, &p, &[gpu.scalars_binding(), gpu.unused_binding(), y.binding()], y.len() as u32);
}

pub(crate) fn scale(gpu: &GpuBackend, b: Coef<'_, GpuScalar>, y: &mut GpuVector) {
    let p = params(y.len(), Coef::c(0.0), b);
    gpu.dispatch(&SCALE, &p, &[gpu.scalars_binding(), gpu.unused_binding(), y.binding()], y.len() as u32);
}

/// Each kernel of this file, reflected against its WGSL.
#[cfg(test)]
pub(super) fn reflect_all() -> Vec<(Kernel, crate::Result<()>)> {
    [AXPBY, SCALE, FILL].into_iter().map(|k| (k, k.check::<Params>())).collect()
}
