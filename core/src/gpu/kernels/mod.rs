//! Typed dispatch wrappers, one file per WGSL kernel family in `shaders/` (same name). Each
//! wrapper mirrors its shader's `Params` struct and binding list; the parity tests in
//! `core/tests/gpu_parity.rs` check every one against the CPU backend.

pub mod blas1;
pub mod dense;
pub mod loss;
pub mod optim;
pub mod reduce;
pub mod sparse;

/// A compute entry point: its module, entry name and storage bindings `(binding, read_only)`
/// in the order the wrapper passes buffers (binding 0 is always the uniform params slot).
pub struct KernelSpec {
    pub module: &'static str,
    pub source: &'static str,
    pub entry: &'static str,
    pub storage: &'static [(u32, bool)],
}

/// `NONE` in the shaders: no device-scalar slot.
pub(crate) const NONE: u32 = u32::MAX;

/// The regulariser selector shared by `dense.wgsl` and `sparse.wgsl`: its id, two
/// coefficients, and its two buffers (λ and v).
#[allow(clippy::type_complexity)]
pub(crate) fn reg_parts<'a>(
    gpu: &'a crate::gpu::GpuBackend,
    reg: &crate::backend::Reg<'a, crate::gpu::GpuBackend>,
) -> (u32, f32, f32, crate::gpu::Bound<'a>, crate::gpu::Bound<'a>) {
    use crate::backend::Reg;
    match reg {
        Reg::None => (0, 0.0, 0.0, gpu.dummy_bound(), gpu.dummy_bound()),
        Reg::ExpLambda { lambda, v, coef } => (1, *coef as f32, 0.0, lambda.bound(), v.bound()),
        Reg::Scaled { v, coef } => (2, *coef as f32, 0.0, gpu.dummy_bound(), v.bound()),
        Reg::Decay { lambda: Some(lambda), exp_coef, const_coef } => {
            (3, *exp_coef as f32, *const_coef as f32, lambda.bound(), gpu.dummy_bound())
        }
        Reg::Decay { lambda: None, const_coef, .. } => (4, 0.0, *const_coef as f32, gpu.dummy_bound(), gpu.dummy_bound()),
    }
}

/// `(rows in the batch, use_idx, the index buffer)` for a batch of a matrix with `n` rows.
pub(crate) fn batch<'a>(
    gpu: &'a crate::gpu::GpuBackend,
    n: usize,
    rows: crate::backend::Rows<'a, crate::gpu::GpuIndices>,
) -> (u32, u32, crate::gpu::Bound<'a>) {
    use crate::backend::Rows;
    match rows {
        Rows::All => (n as u32, 0, gpu.dummy_bound()),
        Rows::Batch(idx) => (idx.len() as u32, 1, idx.bound()),
    }
}
