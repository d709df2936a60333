//! One error type for the library: every failure a user can cause or meet is a variant with a
//! one-line message, never a panic.

/// Errors of the library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No wgpu adapter could be found (no GPU, no lavapipe, or a browser without WebGPU).
    #[error("no GPU adapter found: {0}")]
    NoAdapter(String),
    /// The GPU device reported an error (validation, out of memory, lost device).
    #[error("GPU error: {0}")]
    Gpu(String),
    /// A user-supplied setting is invalid.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A quantity became NaN or infinite during a run (usually a step size that is too large).
    #[error("{quantity} became non-finite at outer iteration {iter} (step size too large?)")]
    NonFinite {
        /// Where it was seen: the outer iteration (0-based) in a run; a one-off computation's own
        /// step (Newton steps of the exact solve, 0 for a single evaluation).
        iter: usize,
        /// What became non-finite, in words ("hypergradient", "the meta-training loss").
        quantity: String,
    },
    /// A run's records could not be written (a full disk, a closed pipe).
    #[error("cannot write results: {0}")]
    Output(String),
}

/// Result with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
