//! The WGSL sources of every bilevel compute kernel, one file per kernel family, embedded at
//! build time so the native binary and the wasm bundle carry them without any file access.
//!
//! Conventions shared by every file (the typed dispatch wrappers in `bilevel-core`'s
//! `gpu::kernels` rely on them):
//! - `@group(0) @binding(0)` is a uniform `Params` struct bound with a dynamic offset: each
//!   dispatch gets its own 256-byte slot of one per-submit arena.
//! - Storage buffers follow from `@binding(1)` in the order the wrapper lists them.
//! - Workgroups are 1-D, [`WORKGROUP_SIZE`] invocations; grids wider than 65,535 workgroups
//!   spill into `y`, and kernels rebuild the linear index from `num_workgroups`.
//! - A device scalar is a slot of the shared `scalars` buffer; `NONE` (0xffffffff) means "no
//!   slot".

/// Invocations per workgroup in every kernel (the WebGPU default limit is 256).
pub const WORKGROUP_SIZE: u32 = 256;

/// A kernel file with the shared helpers (`common.wgsl`) appended: WGSL has no includes, and
/// module-scope declarations may come in any order.
macro_rules! module {
    ($file:literal) => {
        concat!(include_str!($file), "\n", include_str!("../common.wgsl"))
    };
    ($file:literal, reg) => {
        concat!(include_str!($file), "\n", include_str!("../common.wgsl"), "\n", include_str!("../reg.wgsl"))
    };
    ($file:literal, tiled) => {
        concat!(include_str!($file), "\n", include_str!("../common.wgsl"), "\n", include_str!("../tiled.wgsl"))
    };
}

/// Vector BLAS-1: fill, copy, `y ← a·x + b·y` with device-scalar coefficients, `exp(λ)∘a∘b`.
pub const BLAS1: &str = module!("../blas1.wgsl");
/// Deterministic two-pass reductions: dot products into device scalars.
pub const REDUCE: &str = include_str!("../reduce.wgsl");
/// Dense row-major data: gathered `X_B W` and transposed `X_Bᵀ E` (atomic-free).
pub const DENSE: &str = module!("../dense.wgsl", reg);
/// Sparse CSR/CSC data: the same products, with batch positions instead of atomics.
pub const SPARSE: &str = module!("../sparse.wgsl", reg);
/// Row-wise GLM losses (squared, logistic, softmax), their curvature, and the mixed products.
pub const LOSS: &str = module!("../loss.wgsl");
/// Outer optimiser updates (Adam).
pub const OPTIM: &str = module!("../optim.wgsl");

/// 3×3 convolutions of a meta-batch (forward, input and parameter gradients) as implicit GEMMs.
pub const CONV: &str = module!("../conv.wgsl", tiled);
/// Strided batched GEMM, bias broadcast and column sums for the few-shot head.
pub const GEMM: &str = module!("../gemm.wgsl", tiled);
/// Batch norm with per-task statistics, its backward and R-op tangents.
pub const BATCH_NORM: &str = module!("../batch_norm.wgsl");
/// ReLU + 2×2 max-pool, its backward and tangent.
pub const POOL: &str = module!("../pool.wgsl");
/// Softmax cross-entropy with per-task loss/accuracy, and the softmax curvature.
pub const XENT: &str = module!("../xent.wgsl");

/// Every composed WGSL module with its main file's name, for validation and pipeline caching.
pub const ALL: &[(&str, &str)] = &[
    ("blas1.wgsl", BLAS1),
    ("reduce.wgsl", REDUCE),
    ("dense.wgsl", DENSE),
    ("sparse.wgsl", SPARSE),
    ("loss.wgsl", LOSS),
    ("optim.wgsl", OPTIM),
    ("conv.wgsl", CONV),
    ("gemm.wgsl", GEMM),
    ("batch_norm.wgsl", BATCH_NORM),
    ("pool.wgsl", POOL),
    ("xent.wgsl", XENT),
];
