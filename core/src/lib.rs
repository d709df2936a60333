//! bilevel-core: bilevel optimisation (stocBiO, AID, ITD) with hand-derived oracles.
//!
//! Solvers are written once against [`Backend`]: the CPU backend ([`cpu::CpuBackend`], the f64
//! reference) and the wgpu backend ([`gpu::GpuBackend`], WGSL kernels on Vulkan/Metal/DX12 or
//! WebGPU in a browser). Solver steps only *enqueue* work; reading a number back is the one
//! asynchronous operation, so the same solver code runs in a browser tab. See ARCHITECTURE.md.

pub mod algorithms;
pub mod backend;
pub mod check;
pub mod cpu;
pub mod data;
pub mod error;
pub mod exact;
pub mod experiment;
pub mod gpu;
pub mod landscape;
pub mod meta;
pub mod optim;
pub mod outer;
pub mod problems;
pub mod sampler;
pub mod steps;

pub use backend::{Backend, Coef, GlmBackend, Rows};
pub use check::{check_oracles, check_oracles_with};
pub use error::{Error, Result};
pub mod toy;
