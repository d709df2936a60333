//! `shaders/blas1.wgsl`: `y ← a·x + b·y` and `y ← a`, with coefficients that may be ratios of
//! device scalars.

use super::{KernelSpec, NONE};
use crate::backend::Coef;
use crate::gpu::{GpuBackend, GpuScalar, GpuVector};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
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

const BINDINGS: &[(u32, bool)] = &[(1, true), (2, true), (3, false)];
const AXPBY: KernelSpec = KernelSpec { module: "blas1.wgsl", source: bilevel_shaders::BLAS1, entry: "axpby", storage: BINDINGS };
const SCALE: KernelSpec = KernelSpec { module: "blas1.wgsl", source: bilevel_shaders::BLAS1, entry: "scale", storage: BINDINGS };
const FILL: KernelSpec = KernelSpec { module: "blas1.wgsl", source: bilevel_shaders::BLAS1, entry: "fill", storage: BINDINGS };

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
    gpu.dispatch(&AXPBY, &params(y.len(), a, b), &[gpu.scalars_bound(), x.bound(), y.bound()], y.len() as u32);
}

pub(crate) fn fill(gpu: &GpuBackend, a: Coef<'_, GpuScalar>, y: &mut GpuVector) {
    let p = params(y.len(), a, Coef::c(0.0));
    gpu.dispatch(&FILL, &p, &[gpu.scalars_bound(), gpu.dummy_bound(), y.bound()], y.len() as u32);
}

pub(crate) fn scale(gpu: &GpuBackend, b: Coef<'_, GpuScalar>, y: &mut GpuVector) {
    let p = params(y.len(), Coef::c(0.0), b);
    gpu.dispatch(&SCALE, &p, &[gpu.scalars_bound(), gpu.dummy_bound(), y.bound()], y.len() as u32);
}
