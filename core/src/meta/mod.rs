//! Meta-learning (SPEC §6): the conv4 backbone, its head, and ITD-BiO, FO-ITD-BiO, ANIL and MAML
//! on batched few-shot episodes. Every algorithm is written against [`ops::MetaBackend`], the
//! primitives a backend implements (the CPU reference in [`cpu`], the WGSL kernels on wgpu).

pub mod cpu;
pub mod ops;

pub use ops::{Gemm, ImageBatch, MetaBackend, View, ViewMut};
