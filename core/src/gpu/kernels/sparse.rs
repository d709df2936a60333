//! `shaders/sparse.wgsl`: `Z = X_B W` over CSR rows, and `out = scale·X_Bᵀ E + reg` over CSC
//! columns with a per-row batch position (rebuilt by two small kernels for each batch).

use super::{batch, reg_parts, Kernel, REG_CONSTANTS};
use crate::backend::{Rows, TmatmulOut};
use crate::gpu::Access::{self, Read, ReadWrite};
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
        n_rows: u32,
    }
}

const fn spec(entry: &'static str, buffers: &'static [(u32, Access)]) -> Kernel {
    Kernel::new("sparse.wgsl", bilevel_shaders::SPARSE, entry, buffers).with_constants(REG_CONSTANTS)
}
const CSR_MATMUL: Kernel = spec("csr_gather_matmul", &[(1, Read), (2, Read), (3, Read), (4, Read), (5, Read), (8, ReadWrite)]);
const CSC_TMATMUL: Kernel =
    spec("csc_gather_tmatmul", &[(1, Read), (2, Read), (3, Read), (4, Read), (5, Read), (6, Read), (7, Read), (8, ReadWrite)]);
const POS_CLEAR: Kernel = spec("pos_clear", &[(9, ReadWrite)]);
const POS_SCATTER: Kernel = spec("pos_scatter", &[(4, Read), (9, ReadWrite)]);

pub(crate) fn gather_matmul(gpu: &GpuBackend, x: &GpuMatrix, rows: Rows<'_, GpuIndices>, w: &GpuVector, c: usize, z: &mut GpuVector) {
    let GpuMatrix::Sparse { csr, rows: n, cols: d, .. } = x else { unreachable!("sparse kernel on a dense matrix") };
    let (b, use_idx, idx) = batch(gpu, *n, rows);
    assert!(z.len() >= b as usize * c && w.len() == d * c, "gather_matmul: shape mismatch");
    let p = Params { rows: b, cols: *d as u32, c: c as u32, use_idx, reg: 0, scale: 1.0, coef: 0.0, coef2: 0.0, n_rows: *n as u32 };
    let bound = [csr[0].binding(), csr[1].binding(), csr[2].binding(), idx, w.binding(), z.binding()];
    gpu.dispatch(&CSR_MATMUL, &p, &bound, b * c as u32);
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
    let GpuMatrix::Sparse { csc, pos, rows: n, cols: d, .. } = x else { unreachable!("sparse kernel on a dense matrix") };
    let (b, use_idx, idx) = batch(gpu, *n, rows);
    assert!(e.len() >= b as usize * c && out.len() == d * c, "gather_tmatmul: shape mismatch");
    let (reg_id, coef, coef2, lam, v) = reg_parts(gpu, &reg);
    let p = Params { rows: b, cols: *d as u32, c: c as u32, use_idx, reg: reg_id, scale: scale as f32, coef, coef2, n_rows: *n as u32 };
    if use_idx == 1 {
        // pos[row] = position of row in this batch, or NONE.
        gpu.dispatch(&POS_CLEAR, &p, &[pos.binding()], *n as u32);
        gpu.dispatch(&POS_SCATTER, &p, &[idx, pos.binding()], b);
    }
    let bound = [csc[0].binding(), csc[1].binding(), csc[2].binding(), pos.binding(), e.binding(), lam, v, out.binding()];
    gpu.dispatch(&CSC_TMATMUL, &p, &bound, (d * c) as u32);
}

/// Each kernel of this file, reflected against its WGSL.
#[cfg(test)]
pub(super) fn reflect_all() -> Vec<(Kernel, crate::Result<()>)> {
    [CSR_MATMUL, CSC_TMATMUL, POS_CLEAR, POS_SCATTER].into_iter().map(|k| (k, k.check::<Params>())).collect()
}
