//! Meta-learning (SPEC §6): the conv4 backbone, its head, and ITD-BiO, FO-ITD-BiO, ANIL and MAML
//! on batched few-shot episodes. Every algorithm is written against [`ops::MetaBackend`], the
//! primitives a backend implements (the CPU reference in [`cpu`], the WGSL kernels on wgpu).
//!
//! - [`ops`]: the primitives (one call per layer for a whole meta-batch);
//! - [`model`]: the conv4 network composed from them (forward, backward, tangents);
//! - [`head`]: the head's adaptation and the closed-form head-level hypergradient (SPEC §6.4);
//! - [`itd_bio`], [`fo_itd_bio`], [`anil`], [`maml`]: one file per algorithm;
//! - [`learner`]: configuration, resident task batches, outer state and Adam;
//! - [`train`]: the meta-training loop, evaluation and confidence intervals.

pub mod anil;
pub mod cpu;
pub mod fo_itd_bio;
pub mod head;
pub mod itd_bio;
pub mod learner;
pub mod maml;
pub mod model;
pub mod ops;

pub use learner::{HostTasks, Learner, MetaAlg, MetaConfig, TaskBatch};
pub use model::Conv4;
pub use ops::{BnLayer, Conv3x3, Dual, Gemm, ImageBatch, MetaBackend, SoftmaxCurvature, SoftmaxXent, SumRows, View, ViewMut};
pub mod train;
