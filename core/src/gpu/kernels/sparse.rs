//! `shaders/sparse.wgsl`: `Z = X_B W` over CSR rows, and `out = scale·X_Bᵀ E + reg` over CSC
//! columns with a per-row batch position (rebuilt by two small kernels for each batch).

use super::{batch, reg_parts, KernelSpec};
use crate::backend::{Reg, Rows};
use crate::gpu::{GpuBackend, GpuIndices, GpuMatrix, GpuVector};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    cols: u32,
    c: u32,
    use_idx: u32,
    reg: u32,
    scale: f32,
    coef: f32,
    coef2: f32,
    n_rows: u32,
}

const fn spec(entry: &'static str, storage: &'static [(u32, bool)]) -> KernelSpec {
    KernelSpec { module: "sparse.wgsl", source: bilevel_shaders::SPARSE, entry, storage }
}
const CSR_MATMUL: KernelSpec = spec("csr_gather_matmul", &[(1, true), (2, true), (3, true), (4, true), (5, true), (8, false)]);
const CSC_TMATMUL: KernelSpec =
    spec("csc_gather_tmatmul", &[(1, true), (2, true), (3, true), (4, true), (5, true), (6, true), (7, true), (8, false)]);
const POS_CLEAR: KernelSpec = spec("pos_clear", &[(9, false)]);
const POS_SCATTER: KernelSpec = spec("pos_scatter", &[(4, true), (9, false)]);

pub(crate) fn gather_matmul(gpu: &GpuBackend, x: &GpuMatrix, rows: Rows<'_, GpuIndices>, w: &GpuVector, c: usize, z: &mut GpuVector) {
    let GpuMatrix::Sparse { csr, rows: n, cols: d, .. } = x else { unreachable!("sparse kernel on a dense matrix") };
    let (b, use_idx, idx) = batch(gpu, *n, rows);
    assert!(z.len() >= b as usize * c && w.len() == d * c, "gather_matmul: shape mismatch");
    let p = Params { rows: b, cols: *d as u32, c: c as u32, use_idx, reg: 0, scale: 1.0, coef: 0.0, coef2: 0.0, n_rows: *n as u32 };
    let bound = [csr[0].bound(), csr[1].bound(), csr[2].bound(), idx, w.bound(), z.bound()];
    gpu.dispatch(&CSR_MATMUL, &p, &bound, b * c as u32);
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn gather_tmatmul(
    gpu: &GpuBackend,
    x: &GpuMatrix,
    rows: Rows<'_, GpuIndices>,
    e: &GpuVector,
    c: usize,
    scale: f64,
    reg: Reg<'_, GpuBackend>,
    out: &mut GpuVector,
) {
    let GpuMatrix::Sparse { csc, pos, rows: n, cols: d, .. } = x else { unreachable!("sparse kernel on a dense matrix") };
    let (b, use_idx, idx) = batch(gpu, *n, rows);
    assert!(e.len() >= b as usize * c && out.len() == d * c, "gather_tmatmul: shape mismatch");
    let (reg_id, coef, coef2, lam, v) = reg_parts(gpu, &reg);
    let p = Params { rows: b, cols: *d as u32, c: c as u32, use_idx, reg: reg_id, scale: scale as f32, coef, coef2, n_rows: *n as u32 };
    if use_idx == 1 {
        // pos[row] = position of row in this batch, or NONE.
        gpu.dispatch(&POS_CLEAR, &p, &[pos.bound()], *n as u32);
        gpu.dispatch(&POS_SCATTER, &p, &[idx, pos.bound()], b);
    }
    let bound = [csc[0].bound(), csc[1].bound(), csc[2].bound(), pos.bound(), e.bound(), lam, v, out.bound()];
    gpu.dispatch(&CSC_TMATMUL, &p, &bound, (d * c) as u32);
}
