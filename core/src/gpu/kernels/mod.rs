//! The crate's own kernels, one file per WGSL kernel family in `shaders/` (same name): each
//! declares its `Params` with [`kernel_params!`](crate::kernel_params) and its entry points as
//! [`Kernel`]s, and dispatches through the public [`GpuBackend::dispatch`], so every one is
//! reflected against its WGSL like a user's kernel. The parity tests in
//! `core/tests/gpu_parity.rs` check each against the CPU backend.

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

#[cfg(doc)]
use crate::gpu::GpuBackend;
pub(crate) use crate::gpu::Kernel;

/// `NONE` in the shaders: no device-scalar slot.
pub(crate) const NONE: u32 = u32::MAX;

/// The regulariser selector of `reg.wgsl` (shared by `dense.wgsl` and `sparse.wgsl`), checked
/// against its named WGSL constants.
const REG_NONE: u32 = 0;
const REG_EXP_LAMBDA: u32 = 1;
const REG_SCALED: u32 = 2;
const REG_DECAY: u32 = 3;
const REG_DECAY_CONST: u32 = 4;
pub(crate) const REG_CONSTANTS: &[(&str, u32)] = &[
    ("REG_NONE", REG_NONE),
    ("REG_EXP_LAMBDA", REG_EXP_LAMBDA),
    ("REG_SCALED", REG_SCALED),
    ("REG_DECAY", REG_DECAY),
    ("REG_DECAY_CONST", REG_DECAY_CONST),
];

/// The regulariser of a transposed product: its selector, two coefficients, and its two
/// buffers (λ and v).
#[allow(clippy::type_complexity)]
pub(crate) fn reg_parts<'a>(
    gpu: &'a crate::gpu::GpuBackend,
    reg: &crate::backend::Reg<'a, crate::gpu::GpuBackend>,
) -> (u32, f32, f32, crate::gpu::Binding<'a>, crate::gpu::Binding<'a>) {
    use crate::backend::Reg;
    match reg {
        Reg::None => (REG_NONE, 0.0, 0.0, gpu.unused_binding(), gpu.unused_binding()),
        Reg::ExpLambda { lambda, v, coef } => (REG_EXP_LAMBDA, *coef as f32, 0.0, lambda.binding(), v.binding()),
        Reg::Scaled { v, coef } => (REG_SCALED, *coef as f32, 0.0, gpu.unused_binding(), v.binding()),
        Reg::Decay { lambda: Some(lambda), exp_coef, const_coef } => {
            (REG_DECAY, *exp_coef as f32, *const_coef as f32, lambda.binding(), gpu.unused_binding())
        }
        Reg::Decay { lambda: None, const_coef, .. } => {
            (REG_DECAY_CONST, 0.0, *const_coef as f32, gpu.unused_binding(), gpu.unused_binding())
        }
    }
}

/// `(rows in the batch, use_idx, the index buffer)` for a batch of a matrix with `n` rows.
pub(crate) fn batch<'a>(
    gpu: &'a crate::gpu::GpuBackend,
    n: usize,
    rows: crate::backend::Rows<'a, crate::gpu::GpuIndices>,
) -> (u32, u32, crate::gpu::Binding<'a>) {
    use crate::backend::Rows;
    match rows {
        Rows::All => (n as u32, 0, gpu.unused_binding()),
        Rows::Batch(idx) => (idx.len() as u32, 1, idx.binding()),
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

#[cfg(test)]
mod tests {
    /// Every built-in kernel matches its WGSL (params, buffers, constants), and every compute
    /// entry point of every shipped module is one of them, so none escapes the check.
    #[test]
    fn every_builtin_kernel_passes_reflection() {
        let all: Vec<_> = [
            super::batch_norm::reflect_all(),
            super::blas1::reflect_all(),
            super::conv::reflect_all(),
            super::dense::reflect_all(),
            super::gemm::reflect_all(),
            super::loss::reflect_all(),
            super::optim::reflect_all(),
            super::pool::reflect_all(),
            super::reduce::reflect_all(),
            super::sparse::reflect_all(),
            super::xent::reflect_all(),
        ]
        .into_iter()
        .flatten()
        .collect();
        let failures: Vec<String> = all.iter().filter_map(|(_, r)| r.as_ref().err().map(|e| e.to_string())).collect();
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        for (module, source) in bilevel_shaders::ALL {
            let parsed = naga::front::wgsl::parse_str(source).expect("shipped WGSL parses");
            for entry in parsed.entry_points.iter().filter(|e| e.stage == naga::ShaderStage::Compute) {
                assert!(
                    all.iter().any(|(k, _)| k.module == *module && k.entry == entry.name),
                    "{module}::{} has no Kernel in gpu::kernels",
                    entry.name
                );
            }
        }
    }
}
