//! The CPU backend: the reference every GPU kernel is tested against, and the path for machines
//! without a GPU. Generic over the real type: `CpuBackend<f64>` is the reference used by the
//! finite-difference and closed-form tests, `CpuBackend<f32>` matches the GPU's precision.
//! Operations run at once; `flush` has nothing to do and reads are ready futures.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use num_traits::Float;

use crate::backend::{Coef, GlmRows, HostMatrix, LossKind, Rows, SPARSE_DENSITY};

/// Real types the CPU backend computes in.
pub trait Real: Float + std::fmt::Debug + Default + Send + Sync + 'static {}
impl Real for f32 {}
impl Real for f64 {}

/// The CPU backend over the real type `T`.
pub struct CpuBackend<T: Real> {
    /// Work buffers of the data products (Wᵀ, per-thread accumulators), reused across calls so
    /// that a solver's steady state allocates nothing.
    pool: Mutex<Vec<Vec<T>>>,
    /// Whether the fused f32 kernels may use intrinsics (AVX-512 or AVX2, where the CPU has
    /// them), and the meta-learning GEMM its AVX-512 tiles.
    pub(crate) wide: bool,
    /// Whether the fused f32 kernels may use AVX-512 (else AVX2 at most).
    pub(crate) avx512: bool,
    /// Whether the AVX2 CSR kernel may split a call with a partner thread.
    pub(crate) threads: Threads,
    /// The partner thread, started on first use.
    #[cfg(target_arch = "x86_64")]
    partner: std::sync::OnceLock<Option<pair::Pair>>,
    /// Calls of the data products that ran on the rayon pool, per [`ThreadedPath`] (counted once
    /// per call, outside the kernels).
    threaded: [AtomicUsize; ThreadedPath::ALL.len()],
}

/// The data products' execution paths on the rayon pool, taken by calls of
/// `PARALLEL_WORK` (2²¹) multiply-adds or more (for tests, which must reach each one: see
/// [`CpuBackend::threaded_calls`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThreadedPath {
    /// `gather_matmul` with Z's rows split across threads (dense rows, or a sparse batch).
    MatmulRows,
    /// `gather_matmul` over every row of a CSR matrix: its CSC's feature ranges split across
    /// threads, each into a private Z, then the Z's summed.
    MatmulFeatures,
    /// `gather_tmatmul` with the rows split across threads, each adding into a private d × c
    /// accumulator, then the accumulators summed (dense rows, or a sparse batch over few features).
    TmatmulRows,
    /// `gather_tmatmul` with out's feature rows split across threads (the CSC gather over every
    /// row, or a sparse batch over many features).
    TmatmulFeatures,
    /// `dot` and `sum`: fixed pieces summed on the pool.
    Reduction,
    /// `axpby`: chunks of the vectors on the pool.
    Elementwise,
}

impl ThreadedPath {
    /// Every path, in the order of [`CpuBackend::threaded_calls`].
    pub const ALL: [ThreadedPath; 6] = [
        ThreadedPath::MatmulRows,
        ThreadedPath::MatmulFeatures,
        ThreadedPath::TmatmulRows,
        ThreadedPath::TmatmulFeatures,
        ThreadedPath::Reduction,
        ThreadedPath::Elementwise,
    ];
}

/// Whether the f32 fused kernel for sparse mini-batches (MNIST's) splits a call over two
/// threads, on a machine with two cores or more (`fused.rs`, `cpu/pair.rs`). The results are
/// the same to the bit whichever it does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Threads {
    /// Never: the calling thread alone.
    One,
    /// Always where the call qualifies (for tests).
    Two,
    /// Where timing the run so far says that it pays (the default): a virtual machine's two
    /// cores may be two hyperthreads of one core at times, and then it does not.
    Timed,
}

impl<T: Real> Default for CpuBackend<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Real> CpuBackend<T> {
    /// The backend with every kernel the CPU supports, threads split where timing says it pays.
    pub fn new() -> Self {
        CpuBackend {
            pool: Mutex::default(),
            wide: true,
            avx512: true,
            threads: Threads::Timed,
            #[cfg(target_arch = "x86_64")]
            partner: std::sync::OnceLock::new(),
            threaded: Default::default(),
        }
    }

    /// The same backend without the intrinsics kernels (the portable ones every other CPU
    /// runs; for tests and comparisons).
    pub fn portable(self) -> Self {
        CpuBackend { wide: false, ..self }
    }

    /// The same backend with the fused kernels' AVX-512 forms off: AVX2 where the CPU has it
    /// (so that a CPU with AVX-512 tests and times the AVX2 kernels too).
    pub fn without_avx512(self) -> Self {
        CpuBackend { avx512: false, ..self }
    }

    /// The same backend with another [`Threads`] mode for its fused sparse kernel.
    pub fn threads(self, threads: Threads) -> Self {
        CpuBackend { threads, ..self }
    }

    /// The partner thread, when this backend may use one and the machine has a second core.
    #[cfg(target_arch = "x86_64")]
    fn partner(&self) -> Option<&pair::Pair> {
        if self.threads == Threads::One {
            return None;
        }
        self.partner.get_or_init(pair::Pair::new).as_ref()
    }

    /// Which kernel [`GlmBackend::glm_batch`](crate::backend::GlmBackend::glm_batch) runs for `data`: `"avx512"`, `"avx2"`, `"portable"`
    /// (fused), or `None` (the unfused composition of the primitives).
    pub fn glm_batch_kernel(&self, data: &GlmRows<'_, Self>) -> Option<&'static str> {
        fused::applies(data).then(|| fused::simd(self, data).map_or("portable", fused::Simd::name))
    }

    /// Whether [`GlmBackend::glm_batch`](crate::backend::GlmBackend::glm_batch) may split this call over two threads (with
    /// [`Threads::Two`] it does).
    pub fn glm_batch_splits(&self, data: &GlmRows<'_, Self>) -> bool {
        fused::applies(data) && fused::splits(self, data)
    }

    /// How many calls so far ran `path` on the rayon pool (tests assert that they reach each one).
    #[doc(hidden)]
    pub fn threaded_calls(&self, path: ThreadedPath) -> usize {
        self.threaded[path as usize].load(Ordering::Relaxed)
    }

    /// Whether a call of `work` multiply-adds (or elements) runs on the rayon pool: natively, at
    /// [`PARALLEL_WORK`] or more. Counts the call under `path` when it does.
    fn parallel(&self, path: ThreadedPath, work: usize) -> bool {
        let parallel = cfg!(not(target_arch = "wasm32")) && work >= PARALLEL_WORK;
        if parallel {
            self.threaded[path as usize].fetch_add(1, Ordering::Relaxed);
        }
        parallel
    }

    /// A work buffer of `len` elements (contents unspecified).
    fn take(&self, len: usize) -> Vec<T> {
        let mut v = self.pool.lock().map(|mut p| p.pop()).ok().flatten().unwrap_or_default();
        v.resize(len, T::zero());
        v
    }

    /// A work buffer of at least `len` elements, contents unspecified: a pooled one that is
    /// long enough if there is one (taken as it is: nothing is cleared), else a new one.
    pub(crate) fn take_at_least(&self, len: usize) -> Vec<T> {
        let found = self.pool.lock().ok().and_then(|mut p| p.iter().rposition(|v| v.len() >= len).map(|i| p.swap_remove(i)));
        found.unwrap_or_else(|| vec![T::zero(); len])
    }

    pub(crate) fn give(&self, v: Vec<T>) {
        if let Ok(mut p) = self.pool.lock() {
            p.push(v);
        }
    }
}

pub(crate) fn to_t<T: Real>(x: f64) -> T {
    T::from(x).expect("f64 converts to every Real")
}

fn coef<T: Real>(a: Coef<'_, Cell<T>>) -> T {
    to_t(a.eval(|s| s.get().to_f64().unwrap_or(f64::NAN)))
}

fn row_of<'a>(rows: Rows<'a, Vec<u32>>, k: usize) -> usize {
    match rows {
        Rows::All => k,
        Rows::Batch(idx) => idx[k] as usize,
    }
}

// ---- the dense kernels, compiled twice on x86-64 ----

/// A multiply-add `a·b + c`: fused (one rounding, one instruction) where the CPU has FMA, plain
/// elsewhere (a fused one without FMA hardware would be a slow library call).
pub(crate) trait MulAdd {
    fn madd<T: Real>(a: T, b: T, c: T) -> T;
}

#[cfg(target_arch = "x86_64")]
pub(crate) struct Fused;
#[cfg(target_arch = "x86_64")]
impl MulAdd for Fused {
    #[inline(always)]
    fn madd<T: Real>(a: T, b: T, c: T) -> T {
        a.mul_add(b, c)
    }
}

pub(crate) struct Plain;
impl MulAdd for Plain {
    #[inline(always)]
    fn madd<T: Real>(a: T, b: T, c: T) -> T {
        a * b + c
    }
}

/// Defines `fn $name<T: Real>(...)` running `$body` compiled for AVX2 + FMA where the CPU has
/// them (checked at run time: the binary stays portable, no `-C target-cpu` needed) and for the
/// baseline target otherwise. In the body, `M` is the [`MulAdd`] to use.
macro_rules! multiversion {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        $vis fn $name<T: Real>($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn imp<T: Real, M: MulAdd>($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                unsafe fn wide<T: Real>($($arg: $ty),*) $(-> $ret)? {
                    imp::<T, $crate::cpu::Fused>($($arg),*)
                }
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    // SAFETY: this CPU has the features `wide` is compiled for.
                    return unsafe { wide::<T>($($arg),*) };
                }
            }
            imp::<T, $crate::cpu::Plain>($($arg),*)
        }
    };
}

mod backend;
mod fused;
mod kernels;
mod layout;
mod loss;
#[cfg(target_arch = "x86_64")]
mod pair;
#[cfg(target_arch = "x86_64")]
mod pair_sync;
mod threads;

use backend::apply_reg;
pub(crate) use kernels::*;
pub use layout::CpuMatrix;
pub(crate) use layout::*;
pub use loss::*;
pub(crate) use threads::*;

#[cfg(test)]
mod tests {
    use super::*;

    /// The split column halves the non-zeros, and each row's split position is where its
    /// columns reach it; rows out of order get no split.
    #[test]
    fn halving_column_splits_the_non_zeros_in_half() {
        // Rows: {0, 1, 5}, {2}, {}, {3, 4, 5, 6}, {1, 6}: 10 entries over 7 columns.
        let indptr = [0, 3, 4, 4, 8, 10];
        let indices = [0, 1, 5, 2, 3, 4, 5, 6, 1, 6];
        let split = halving_column(7, &indptr, &indices).expect("ascending rows");
        let below = indices.iter().filter(|&&j| j < split.col).count();
        // Column 4 is the first with more than half (5) of the entries up to and including it.
        assert_eq!((split.col, below), (4, 5));
        assert_eq!(split.at, vec![2, 4, 4, 5, 9]);
        for (r, w) in indptr.windows(2).enumerate() {
            let at = split.at[r] as usize;
            assert!(indices[w[0] as usize..at].iter().all(|&j| j < split.col));
            assert!(indices[at..w[1] as usize].iter().all(|&j| j >= split.col));
        }
        assert!(halving_column(7, &[0, 2], &[3, 1]).is_none(), "descending row");
        assert!(halving_column(7, &[0, 2], &[3, 3]).is_none(), "repeated column");
        assert!(halving_column(1, &[0, 1], &[0]).is_none(), "one column");
    }
}
