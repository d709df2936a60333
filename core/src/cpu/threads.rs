//! Splitting work over the rayon pool (natively; one thread on wasm): the size below which an
//! operation stays on the calling thread, chunked loops, and reductions with a fixed cut (the
//! same rounding however many threads run them).

use super::*;

/// Work (multiply-adds or elements) below which an operation stays on one thread. Waking the
/// pool costs microseconds, and far more when the cores are shared (measured: MNIST's 64-row
/// products, ~0.5 M multiply-adds each, run faster on one thread than split over two).
pub(crate) const PARALLEL_WORK: usize = 1 << 21;

/// Runs `f(first_index, chunk)` over `chunk_len`-sized chunks of `data`, on the rayon pool when
/// `work` is large (natively), else in order on this thread.
pub(crate) fn chunked<T: Send>(data: &mut [T], chunk_len: usize, work: usize, f: impl Fn(usize, &mut [T]) + Sync + Send) {
    split_chunks(data, chunk_len, work >= PARALLEL_WORK, f)
}

/// Runs `f(first_index, chunk)` over `chunk_len`-sized chunks of `data`, on the rayon pool when
/// `parallel` (natively), else in order on this thread.
pub(super) fn split_chunks<T: Send>(data: &mut [T], chunk_len: usize, parallel: bool, f: impl Fn(usize, &mut [T]) + Sync + Send) {
    let chunk_len = chunk_len.max(1);
    #[cfg(not(target_arch = "wasm32"))]
    if parallel {
        use rayon::prelude::*;
        data.par_chunks_mut(chunk_len).enumerate().for_each(|(i, c)| f(i * chunk_len, c));
        return;
    }
    let _ = parallel;
    data.chunks_mut(chunk_len).enumerate().for_each(|(i, c)| f(i * chunk_len, c));
}

/// Threads of the pool (1 on wasm).
pub(super) fn threads() -> usize {
    #[cfg(not(target_arch = "wasm32"))]
    return rayon::current_num_threads();
    #[cfg(target_arch = "wasm32")]
    1
}

/// How many pieces to cut parallel work into.
pub(crate) fn pieces() -> usize {
    #[cfg(not(target_arch = "wasm32"))]
    return 4 * rayon::current_num_threads();
    #[cfg(target_arch = "wasm32")]
    1
}

/// `Σ_pieces part(range)` over `0..n` cut into fixed pieces (the same cut, hence the same
/// rounding, however many threads run them), on the pool when `parallel` (natively).
pub(super) fn reduce<T: Real>(n: usize, parallel: bool, part: impl Fn(std::ops::Range<usize>) -> T + Sync + Send) -> T {
    let chunk = n.div_ceil(8).next_multiple_of(LANES).max(LANES);
    #[cfg(not(target_arch = "wasm32"))]
    if parallel {
        use rayon::prelude::*;
        let parts: Vec<T> = (0..n.div_ceil(chunk)).into_par_iter().map(|t| part(t * chunk..((t + 1) * chunk).min(n))).collect();
        return parts.iter().fold(T::zero(), |s, &p| s + p);
    }
    let _ = parallel;
    (0..n.div_ceil(chunk)).fold(T::zero(), |s, t| s + part(t * chunk..((t + 1) * chunk).min(n)))
}
