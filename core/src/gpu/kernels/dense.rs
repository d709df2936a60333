//! `shaders/dense.wgsl`: gathered products with a dense row-major data matrix, and the
//! elementwise `scale·e^λ∘a∘b`.

use super::KernelSpec;
use crate::backend::Rows;
use crate::gpu::{GpuBackend, GpuIndices, GpuMatrix, GpuVector};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    cols: u32,
    use_idx: u32,
    flag: u32,
    scale: f32,
}

const fn spec(entry: &'static str, storage: &'static [(u32, bool)]) -> KernelSpec {
    KernelSpec { module: "dense.wgsl", source: bilevel_shaders::DENSE, entry, storage }
}
const ROWS_MATVEC: KernelSpec = spec("rows_matvec", &[(1, true), (2, true), (3, true), (4, true), (5, false)]);
const ROWS_TMATVEC: KernelSpec = spec("rows_tmatvec", &[(1, true), (2, true), (3, true), (5, false), (6, true), (7, false)]);
const EXP_HADAMARD: KernelSpec = spec("exp_hadamard", &[(3, true), (4, true), (6, true), (7, false)]);

fn batch<'a>(gpu: &'a GpuBackend, x: &GpuMatrix, rows: Rows<'a, GpuIndices>) -> (u32, u32, crate::gpu::Bound<'a>) {
    match rows {
        Rows::All => (x.rows as u32, 0, gpu.dummy_bound()),
        Rows::Batch(idx) => (idx.data.len() as u32, 1, idx.bound()),
    }
}

pub(crate) fn rows_matvec(
    gpu: &GpuBackend,
    x: &GpuMatrix,
    rows: Rows<'_, GpuIndices>,
    v: &GpuVector,
    t: Option<&GpuVector>,
    scale: f64,
    r: &mut GpuVector,
) {
    let (b, use_idx, idx) = batch(gpu, x, rows);
    assert!(r.len() >= b as usize && v.len() == x.cols, "rows_matvec: shape mismatch");
    let p = Params { rows: b, cols: x.cols as u32, use_idx, flag: t.is_some() as u32, scale: scale as f32 };
    let t = t.map_or(gpu.dummy_bound(), |t| t.bound());
    gpu.dispatch(&ROWS_MATVEC, &p, &[x.bound(), idx, v.bound(), t, r.bound()], b);
}

pub(crate) fn rows_tmatvec(
    gpu: &GpuBackend,
    x: &GpuMatrix,
    rows: Rows<'_, GpuIndices>,
    r: &GpuVector,
    scale: f64,
    ridge: Option<(&GpuVector, &GpuVector)>,
    out: &mut GpuVector,
) {
    let (b, use_idx, idx) = batch(gpu, x, rows);
    assert!(r.len() >= b as usize && out.len() == x.cols, "rows_tmatvec: shape mismatch");
    let p = Params { rows: b, cols: x.cols as u32, use_idx, flag: ridge.is_some() as u32, scale: scale as f32 };
    let (lam, v) = ridge.map_or((gpu.dummy_bound(), gpu.dummy_bound()), |(l, v)| (l.bound(), v.bound()));
    gpu.dispatch(&ROWS_TMATVEC, &p, &[x.bound(), idx, v, r.bound(), lam, out.bound()], x.cols as u32);
}

pub(crate) fn exp_hadamard(gpu: &GpuBackend, lambda: &GpuVector, a: &GpuVector, b: &GpuVector, scale: f64, out: &mut GpuVector) {
    let n = out.len();
    assert!(lambda.len() == n && a.len() == n && b.len() == n, "exp_hadamard: length mismatch");
    let p = Params { rows: 0, cols: n as u32, use_idx: 0, flag: 0, scale: scale as f32 };
    gpu.dispatch(&EXP_HADAMARD, &p, &[a.bound(), b.bound(), lambda.bound(), out.bound()], n as u32);
}
