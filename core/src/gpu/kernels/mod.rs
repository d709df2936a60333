//! Typed dispatch wrappers, one file per WGSL kernel family in `shaders/` (same name). Each
//! wrapper mirrors its shader's `Params` struct and binding list; the parity tests in
//! `core/tests/gpu_parity.rs` check every one against the CPU backend.

pub mod batch_norm;
pub mod blas1;
pub mod conv;
pub mod dense;
pub mod gemm;
pub mod loss;
pub mod optim;
pub mod pool;
pub mod reduce;
pub mod sparse;
pub mod xent;

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

/// A grid of `n` workgroups (at least one) for kernels that rebuild the index with
/// `workgroup_index`: x up to 65,535, spilling into y.
pub(crate) fn groups_2d(n: usize) -> (u32, u32) {
    let n = (n as u32).max(1);
    (n.min(65_535), n.div_ceil(65_535))
}

/// Workgroups of the tiled product (`tiled.wgsl`) along a dimension of `len`.
pub(crate) fn tiles(len: usize) -> u32 {
    (len as u32).div_ceil(TILE).max(1)
}

/// The output tile edge of `tiled.wgsl`.
pub(crate) const TILE: u32 = 64;
/// Its depth step: K chunks of the conv parameter gradient are multiples of it.
pub(crate) const TILE_K: u32 = 16;

/// Offsets and strides go to the shaders as u32 element indices.
pub(crate) fn u32_of(v: usize, what: &str) -> u32 {
    u32::try_from(v).unwrap_or_else(|_| panic!("{what} = {v} exceeds a 32-bit element index"))
}

/// Divisors of `div_u32` (common.wgsl) must stay below this.
pub(crate) const DIV_LIMIT: usize = 1 << 21;
