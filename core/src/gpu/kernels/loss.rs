//! `shaders/loss.wgsl`: row-wise GLM losses on a batch, their curvature, and the mixed-product
//! reductions (per sample for hyper-cleaning, per feature for the ridge penalties).

use super::{batch, KernelSpec};
use crate::backend::{LossKind, Rows};
use crate::gpu::{GpuBackend, GpuIndices, GpuVector};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    c: u32,
    kind: u32,
    use_idx: u32,
    use_w: u32,
    want_loss: u32,
    scale: f32,
}

const fn spec(entry: &'static str, storage: &'static [(u32, bool)]) -> KernelSpec {
    KernelSpec { module: "loss.wgsl", source: bilevel_shaders::LOSS, entry, storage }
}
const RESIDUAL: KernelSpec = spec("loss_residual", &[(1, true), (2, true), (3, true), (4, true), (5, false), (6, false)]);
const CURVATURE: KernelSpec = spec("loss_curvature", &[(1, true), (3, true), (4, true), (5, false), (7, true)]);
const ROWDOT_SIGMOID: KernelSpec = spec("rowdot_sigmoid_scatter", &[(1, true), (3, true), (4, true), (7, true), (8, false)]);
const EXP_ROWDOT: KernelSpec = spec("exp_rowdot", &[(1, true), (4, true), (7, true), (8, false)]);

/// The batch length implied by an output of `len` entries with `c` columns.
fn rows_of(len: usize, c: usize, rows: Rows<'_, GpuIndices>) -> u32 {
    match rows {
        Rows::All => (len / c) as u32,
        Rows::Batch(idx) => idx.len() as u32,
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn residual(
    gpu: &GpuBackend,
    kind: LossKind,
    z: &GpuVector,
    targets: &GpuVector,
    rows: Rows<'_, GpuIndices>,
    c: usize,
    weights: Option<&GpuVector>,
    scale: f64,
    r: &mut GpuVector,
    loss: Option<&mut GpuVector>,
) {
    let b = rows_of(r.len(), c, rows);
    let (_, use_idx, idx) = batch(gpu, b as usize, rows);
    let p = Params {
        rows: b,
        c: c as u32,
        kind: kind.id(),
        use_idx,
        use_w: weights.is_some() as u32,
        want_loss: loss.is_some() as u32,
        scale: scale as f32,
    };
    let lam = weights.map_or(gpu.dummy_bound(), |w| w.bound());
    // Without a loss output the kernel writes nothing there; bind the (small, otherwise idle)
    // reduction partials so no read_write binding aliases another.
    let loss = loss.map_or(gpu.partials_bound(), |l| l.bound());
    gpu.dispatch(&RESIDUAL, &p, &[z.bound(), targets.bound(), idx, lam, r.bound(), loss], b);
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn curvature(
    gpu: &GpuBackend,
    kind: LossKind,
    z: &GpuVector,
    u: &GpuVector,
    rows: Rows<'_, GpuIndices>,
    c: usize,
    weights: Option<&GpuVector>,
    scale: f64,
    m: &mut GpuVector,
) {
    let b = rows_of(m.len(), c, rows);
    let (_, use_idx, idx) = batch(gpu, b as usize, rows);
    let p = Params { rows: b, c: c as u32, kind: kind.id(), use_idx, use_w: weights.is_some() as u32, want_loss: 0, scale: scale as f32 };
    let lam = weights.map_or(gpu.dummy_bound(), |w| w.bound());
    gpu.dispatch(&CURVATURE, &p, &[z.bound(), idx, lam, m.bound(), u.bound()], b);
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn rowdot_sigmoid_scatter(
    gpu: &GpuBackend,
    a: &GpuVector,
    b_vec: &GpuVector,
    rows: Rows<'_, GpuIndices>,
    c: usize,
    lambda: &GpuVector,
    scale: f64,
    out: &mut GpuVector,
) {
    let b = match rows {
        Rows::All => out.len() as u32,
        Rows::Batch(idx) => idx.len() as u32,
    };
    let (_, use_idx, idx) = batch(gpu, b as usize, rows);
    let p = Params { rows: b, c: c as u32, kind: 0, use_idx, use_w: 0, want_loss: 0, scale: scale as f32 };
    gpu.dispatch(&ROWDOT_SIGMOID, &p, &[a.bound(), idx, lambda.bound(), b_vec.bound(), out.bound()], b);
}

pub(crate) fn exp_rowdot(gpu: &GpuBackend, lambda: &GpuVector, a: &GpuVector, b: &GpuVector, c: usize, scale: f64, out: &mut GpuVector) {
    let d = out.len();
    assert!(lambda.len() == d && a.len() == d * c && b.len() == d * c, "exp_rowdot: shape mismatch");
    let p = Params { rows: d as u32, c: c as u32, kind: 0, use_idx: 0, use_w: 0, want_loss: 0, scale: scale as f32 };
    gpu.dispatch(&EXP_ROWDOT, &p, &[a.bound(), lambda.bound(), b.bound(), out.bound()], d as u32);
}
