//! `shaders/loss.wgsl`: row-wise GLM losses on a batch, their curvature, and the mixed-product
//! reductions (per sample for hyper-cleaning, per feature for the ridge penalties).

use super::{batch, Kernel};
use crate::backend::{LossKind, LossRows, Rows};
use crate::gpu::Access::{self, Read, ReadWrite};
use crate::gpu::{GpuBackend, GpuIndices, GpuVector};

crate::kernel_params! {
    struct Params {
        rows: u32,
        c: u32,
        kind: u32,
        use_idx: u32,
        use_w: u32,
        want_loss: u32,
        scale: f32,
    }
}

/// The loss selector, checked against the WGSL's named constants.
const LOSS_SQUARED: u32 = 0;
const LOSS_LOGISTIC: u32 = 1;
const LOSS_SOFTMAX: u32 = 2;
const LOSS_CONSTANTS: &[(&str, u32)] = &[("LOSS_SQUARED", LOSS_SQUARED), ("LOSS_LOGISTIC", LOSS_LOGISTIC), ("LOSS_SOFTMAX", LOSS_SOFTMAX)];

fn loss_id(kind: LossKind) -> u32 {
    match kind {
        LossKind::Squared => LOSS_SQUARED,
        LossKind::Logistic => LOSS_LOGISTIC,
        LossKind::Softmax => LOSS_SOFTMAX,
    }
}

const fn spec(entry: &'static str, buffers: &'static [(u32, Access)]) -> Kernel {
    Kernel::new("loss.wgsl", bilevel_shaders::LOSS, entry, buffers).with_constants(LOSS_CONSTANTS)
}
const RESIDUAL: Kernel = spec("loss_residual", &[(1, Read), (2, Read), (3, Read), (4, Read), (5, ReadWrite), (6, ReadWrite)]);
const CURVATURE: Kernel = spec("loss_curvature", &[(1, Read), (3, Read), (4, Read), (5, ReadWrite), (7, Read)]);
const ROWDOT_SIGMOID: Kernel = spec("rowdot_sigmoid_scatter", &[(1, Read), (3, Read), (4, Read), (7, Read), (8, ReadWrite)]);
const EXP_ROWDOT: Kernel = spec("exp_rowdot", &[(1, Read), (4, Read), (7, Read), (8, ReadWrite)]);

/// The batch length implied by an output of `len` entries with `c` columns.
fn rows_of(len: usize, c: usize, rows: Rows<'_, GpuIndices>) -> u32 {
    match rows {
        Rows::All => (len / c) as u32,
        Rows::Batch(idx) => idx.len() as u32,
    }
}

pub(crate) fn residual(
    gpu: &GpuBackend,
    on: LossRows<'_, GpuBackend>,
    z: &GpuVector,
    scale: f64,
    r: &mut GpuVector,
    loss: Option<&mut GpuVector>,
) {
    let LossRows { loss: kind, targets, rows, c, weights } = on;
    let b = rows_of(r.len(), c, rows);
    let (_, use_idx, idx) = batch(gpu, b as usize, rows);
    let p = Params {
        rows: b,
        c: c as u32,
        kind: loss_id(kind),
        use_idx,
        use_w: weights.is_some() as u32,
        want_loss: loss.is_some() as u32,
        scale: scale as f32,
    };
    let lam = weights.map_or(gpu.unused_binding(), |w| w.binding());
    // Without a loss output the kernel writes nothing there; bind the (small, otherwise idle)
    // reduction partials so no read_write binding aliases another.
    let loss = loss.map_or(gpu.partials_binding(), |l| l.binding());
    gpu.dispatch(&RESIDUAL, &p, &[z.binding(), targets.binding(), idx, lam, r.binding(), loss], b);
}

pub(crate) fn curvature(gpu: &GpuBackend, on: LossRows<'_, GpuBackend>, z: &GpuVector, u: &GpuVector, scale: f64, m: &mut GpuVector) {
    let LossRows { loss: kind, rows, c, weights, .. } = on;
    let b = rows_of(m.len(), c, rows);
    let (_, use_idx, idx) = batch(gpu, b as usize, rows);
    let p =
        Params { rows: b, c: c as u32, kind: loss_id(kind), use_idx, use_w: weights.is_some() as u32, want_loss: 0, scale: scale as f32 };
    let lam = weights.map_or(gpu.unused_binding(), |w| w.binding());
    gpu.dispatch(&CURVATURE, &p, &[z.binding(), idx, lam, m.binding(), u.binding()], b);
}

pub(crate) fn rowdot_sigmoid_scatter(
    gpu: &GpuBackend,
    ab: [&GpuVector; 2],
    rows: Rows<'_, GpuIndices>,
    c: usize,
    lambda: &GpuVector,
    scale: f64,
    out: &mut GpuVector,
) {
    let [a, b_vec] = ab;
    let b = match rows {
        Rows::All => out.len() as u32,
        Rows::Batch(idx) => idx.len() as u32,
    };
    let (_, use_idx, idx) = batch(gpu, b as usize, rows);
    let p = Params { rows: b, c: c as u32, kind: 0, use_idx, use_w: 0, want_loss: 0, scale: scale as f32 };
    gpu.dispatch(&ROWDOT_SIGMOID, &p, &[a.binding(), idx, lambda.binding(), b_vec.binding(), out.binding()], b);
}

pub(crate) fn exp_rowdot(gpu: &GpuBackend, lambda: &GpuVector, a: &GpuVector, b: &GpuVector, c: usize, scale: f64, out: &mut GpuVector) {
    let d = out.len();
    assert!(lambda.len() == d && a.len() == d * c && b.len() == d * c, "exp_rowdot: shape mismatch");
    let p = Params { rows: d as u32, c: c as u32, kind: 0, use_idx: 0, use_w: 0, want_loss: 0, scale: scale as f32 };
    gpu.dispatch(&EXP_ROWDOT, &p, &[a.binding(), lambda.binding(), b.binding(), out.binding()], d as u32);
}

/// Each kernel of this file, reflected against its WGSL.
#[cfg(test)]
pub(super) fn reflect_all() -> Vec<(Kernel, crate::Result<()>)> {
    [RESIDUAL, CURVATURE, ROWDOT_SIGMOID, EXP_ROWDOT].into_iter().map(|k| (k, k.check::<Params>())).collect()
}
