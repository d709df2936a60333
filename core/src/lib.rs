//! bilevel-core: bilevel optimisation by hypergradients, with hand-derived oracles on the CPU
//! and on wgpu.
//!
//! A bilevel problem is `min_x f(x, y*(x))` with `y*(x) = argmin_y g(x, y)`: hyperparameters x
//! (one L2 strength per feature, one weight per training sample) tuned on validation data f
//! through a model y trained on g. The crate gives:
//!
//! - [`Backend`]: the linear-algebra core every backend implements — the CPU
//!   ([`cpu::CpuBackend`], f64 as the reference, f32 with fused SIMD kernels) and wgpu
//!   ([`gpu::GpuBackend`], WGSL kernels on Vulkan/Metal/DX12 or WebGPU in a browser) — and
//!   [`GlmBackend`], the generalised-linear-model operations on top of it.
//! - [`problems::Problem`]: the oracles (gradients, Hessian-vector products, mixed products,
//!   fused steps) a solver needs; GLM problems from a user's data through
//!   [`problems::builder::GlmBuilder`]; a user's own problem by implementing the trait, checked
//!   by [`check_oracles`] against finite differences.
//! - [`algorithms`]: stocBiO, AID-CG, AID-FP, reverse-mode ITD, HOAG, BSA, TTSA and SOBA, each
//!   an [`algorithms::Algorithm`]; a user's own runs through the same driver
//!   ([`outer::OuterLoop::with_algorithm`], [`experiment::Run::drive`]) with the same records
//!   and oracle counts.
//! - [`meta`]: few-shot meta-learning (ITD-BiO, FO-ITD-BiO, MAML, ANIL).
//!
//! Solver steps only *enqueue* work; reading a number back is the one asynchronous operation
//! (a ready future on the CPU), so the same code runs in a browser tab.
//!
//! ```
//! use bilevel_core::algorithms::{AlgKind, Hyper};
//! use bilevel_core::cpu::CpuBackend;
//! use bilevel_core::outer::{OuterLoop, OuterOpt};
//! use bilevel_core::problems::{glm::Glm, ridge::RidgeData, Problem};
//! use bilevel_core::{check_oracles, Backend, Rows};
//!
//! let be = CpuBackend::<f64>::new();
//! // Ridge regression with one L2 strength e^{λ_j} per feature, on seeded synthetic data.
//! let problem = Glm::ridge(&be, &RidgeData::synthetic(200, 100, 10, 0.3, 0));
//! // Every oracle against central finite differences, at some point (λ, w).
//! let report = pollster::block_on(check_oracles(&problem, &be, &[0.3; 10], &[0.1; 10]))?;
//! assert!(report.passed(), "{report}");
//! // stocBiO: T = 10 inner steps, Q = 10 Neumann terms per hypergradient; Adam on λ.
//! let hyper = Hyper { t: 10, q: 10, eta: 0.5, alpha: 0.5, beta: 0.1, batch_size: 32, val_batch_size: 32 };
//! let mut run = OuterLoop::new(&be, problem, AlgKind::StocBiO, hyper, OuterOpt::adam(), 0)?;
//! let validation_loss = |run: &OuterLoop<'_, _, _>| {
//!     let f = be.scalar("f");
//!     run.problem.outer_loss(&be, &run.x, &run.y, Rows::All, &f);
//!     pollster::block_on(be.read_scalar(&f))
//! };
//! run.estimate();
//! let before = validation_loss(&run)?;
//! for _ in 0..50 {
//!     run.update();
//!     run.estimate();
//! }
//! assert!(validation_loss(&run)? < before);
//! # Ok::<(), bilevel_core::Error>(())
//! ```
//!
//! `core/examples/` has a problem of your own on the CPU and the GPU, a solver of your own, and
//! cleaning your own CSV file. ARCHITECTURE.md says where a new problem, solver, kernel or
//! backend goes.

#![deny(missing_docs)]

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

// The README's Rust example compiles and runs as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeExample;
pub mod toy;
