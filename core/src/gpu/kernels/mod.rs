//! Typed dispatch wrappers, one file per WGSL kernel family in `shaders/` (same name). Each
//! wrapper mirrors its shader's `Params` struct and binding list; the parity tests in
//! `core/tests/gpu_parity.rs` check every one against the CPU backend.

pub mod blas1;
pub mod dense;
pub mod reduce;

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
