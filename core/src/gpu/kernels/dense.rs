//! `shaders/dense.wgsl`: `Z = X_B W` and `out = scale·X_Bᵀ E + reg` for dense row-major X.

use super::{batch, reg_parts, Kernel, REG_CONSTANTS};
use crate::backend::{Rows, TmatmulOut};
use crate::gpu::Access::{Read, ReadWrite};
use crate::gpu::{GpuBackend, GpuIndices, GpuMatrix, GpuVector};

crate::kernel_params! {
    struct Params {
        rows: u32,
        cols: u32,
        c: u32,
        use_idx: u32,
        reg: u32,
        scale: f32,
        coef: f32,
        coef2: f32,
    }
}

const fn spec(entry: &'static str) -> Kernel {
    Kernel::new("dense.wgsl", bilevel_shaders::DENSE, entry, &[(1, Read), (2, Read), (3, Read), (4, Read), (5, Read), (6, ReadWrite)])
        .with_constants(REG_CONSTANTS)
}
const GATHER_MATMUL: Kernel = spec("gather_matmul");
const GATHER_TMATMUL: Kernel = spec("gather_tmatmul");

fn data(x: &GpuMatrix) -> (&GpuVector, usize, usize) {
    match x {
        GpuMatrix::Dense { data, rows, cols } => (data, *rows, *cols),
        GpuMatrix::Sparse { .. } => unreachable!("dense kernel on a sparse matrix"),
    }
}

pub(crate) fn gather_matmul(gpu: &GpuBackend, x: &GpuMatrix, rows: Rows<'_, GpuIndices>, w: &GpuVector, c: usize, z: &mut GpuVector) {
    let (xd, n, d) = data(x);
    let (b, use_idx, idx) = batch(gpu, n, rows);
    assert!(z.len() >= b as usize * c && w.len() == d * c, "gather_matmul: shape mismatch");
    let p = Params { rows: b, cols: d as u32, c: c as u32, use_idx, reg: 0, scale: 1.0, coef: 0.0, coef2: 0.0 };
    let bound = [xd.binding(), idx, w.binding(), gpu.unused_binding(), gpu.unused_binding(), z.binding()];
    gpu.dispatch(&GATHER_MATMUL, &p, &bound, b * c as u32);
}

pub(crate) fn gather_tmatmul(
    gpu: &GpuBackend,
    x: &GpuMatrix,
    rows: Rows<'_, GpuIndices>,
    e: &GpuVector,
    c: usize,
    terms: TmatmulOut<'_, GpuBackend>,
    out: &mut GpuVector,
) {
    let TmatmulOut { scale, reg } = terms;
    let (xd, n, d) = data(x);
    let (b, use_idx, idx) = batch(gpu, n, rows);
    assert!(e.len() >= b as usize * c && out.len() == d * c, "gather_tmatmul: shape mismatch");
    let (reg_id, coef, coef2, lam, v) = reg_parts(gpu, &reg);
    let p = Params { rows: b, cols: d as u32, c: c as u32, use_idx, reg: reg_id, scale: scale as f32, coef, coef2 };
    let bound = [xd.binding(), idx, e.binding(), lam, v, out.binding()];
    gpu.dispatch(&GATHER_TMATMUL, &p, &bound, (d * c) as u32);
}

/// Each kernel of this file, reflected against its WGSL.
#[cfg(test)]
pub(super) fn reflect_all() -> Vec<(Kernel, crate::Result<()>)> {
    [GATHER_MATMUL, GATHER_TMATMUL].into_iter().map(|k| (k, k.check::<Params>())).collect()
}
