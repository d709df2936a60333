//! Shared test helpers: the lavapipe adapter (required, never skipped), seeded inputs, and
//! relative errors.
#![allow(dead_code)]

use bilevel_core::gpu::{GpuBackend, GpuOptions};
use bilevel_core::sampler::Sampler;

/// The GPU backend for tests: lavapipe by default (`BILEVEL_TEST_ADAPTER` picks another).
/// A missing adapter fails the test: GPU tests never skip silently.
pub fn gpu() -> GpuBackend {
    let want = std::env::var("BILEVEL_TEST_ADAPTER").unwrap_or_else(|_| "llvmpipe".into());
    match pollster::block_on(GpuBackend::new(&GpuOptions { adapter: Some(want.clone()) })) {
        Ok(g) => g,
        Err(e) => panic!("GPU tests need the {want:?} adapter (scripts/setup.sh installs lavapipe): {e}"),
    }
}

pub fn randn(s: &mut Sampler, n: usize, scale: f64) -> Vec<f64> {
    (0..n).map(|_| scale * s.normal()).collect()
}

pub fn norm(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

/// ‖a − b‖ / max(‖b‖, tiny).
pub fn rel_err(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    norm(&d) / norm(b).max(1e-300)
}

pub fn block<T>(f: impl std::future::Future<Output = T>) -> T {
    pollster::block_on(f)
}
