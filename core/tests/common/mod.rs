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

/// A meta-batch of random images for `cfg`; labels class-major (support then query), as
/// episodes store them.
pub fn random_tasks(cfg: &bilevel_core::meta::MetaConfig, seed: u64) -> bilevel_core::meta::HostTasks {
    let mut s = Sampler::new(seed);
    let (ns, nq) = (cfg.support_rows(), cfg.query_rows());
    let image_len = cfg.net.channels * cfg.net.height * cfg.net.width;
    let images = randn(&mut s, cfg.meta_batch * (ns + nq) * image_len, 1.0).into_iter().map(|v| v as f32).collect();
    let labels = (0..cfg.meta_batch)
        .flat_map(|_| (0..ns).map(|i| (i / cfg.shots) as u32).chain((0..nq).map(|i| (i / cfg.queries) as u32)))
        .collect();
    bilevel_core::meta::HostTasks { tasks: cfg.meta_batch, ns, nq, image_len, images, labels }
}
