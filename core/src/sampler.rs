//! Seeded mini-batch sampling on the host. Indices are drawn on the CPU (a few KB) and handed to
//! the backend, so the same seed gives the same batches on every backend: CPU/GPU parity tests
//! are exact in their sampling.

use rand::seq::index;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A seeded source of mini-batches and normal variates.
pub struct Sampler {
    rng: ChaCha8Rng,
}

impl Sampler {
    pub fn new(seed: u64) -> Self {
        Sampler { rng: ChaCha8Rng::seed_from_u64(seed) }
    }

    /// `b` distinct row indices out of `0..n` (all of them, in order, when `b >= n`).
    pub fn batch(&mut self, n: usize, b: usize) -> Vec<u32> {
        if b >= n {
            return (0..n as u32).collect();
        }
        index::sample(&mut self.rng, n, b).into_iter().map(|i| i as u32).collect()
    }

    /// A uniformly random order of `0..n`.
    pub fn permutation(&mut self, n: usize) -> Vec<u32> {
        use rand::seq::SliceRandom;
        let mut v: Vec<u32> = (0..n as u32).collect();
        v.shuffle(&mut self.rng);
        v
    }

    /// A uniform integer in `0..n` (`n ≥ 1`).
    pub fn below(&mut self, n: usize) -> usize {
        self.rng.random_range(0..n.max(1))
    }

    /// A uniform variate in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        self.rng.random::<f64>()
    }

    /// The underlying generator (for samplers that take any `rand::Rng`).
    pub fn rng(&mut self) -> &mut ChaCha8Rng {
        &mut self.rng
    }

    /// A standard normal variate (Box–Muller; `rand_distr` is not needed for this).
    pub fn normal(&mut self) -> f64 {
        let u1: f64 = 1.0 - self.rng.random::<f64>();
        let u2: f64 = self.rng.random::<f64>();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}
