//! Seeded mini-batch sampling on the host. Indices are drawn on the CPU (a few KB) and handed to
//! the backend, so the same seed gives the same batches on every backend: CPU/GPU parity tests
//! are exact in their sampling.

use rand::seq::index;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A seeded source of mini-batches and normal variates.
pub struct Sampler {
    rng: ChaCha8Rng,
    /// Floyd's sampler's membership bits over `0..n`, reused across batches and cleared after
    /// each (see [`Sampler::floyd`]).
    drawn: Vec<u64>,
}

impl Sampler {
    pub fn new(seed: u64) -> Self {
        Sampler { rng: ChaCha8Rng::seed_from_u64(seed), drawn: Vec::new() }
    }

    /// `b` distinct row indices out of `0..n` (all of them, in order, when `b >= n`): exactly
    /// the indices `rand::seq::index::sample` draws from this generator.
    pub fn batch(&mut self, n: usize, b: usize) -> Vec<u32> {
        if b >= n {
            return (0..n as u32).collect();
        }
        if uses_floyd(n, b) {
            return self.floyd(n as u32, b as u32);
        }
        index::sample(&mut self.rng, n, b).into_iter().map(|i| i as u32).collect()
    }

    /// rand's `sample_floyd`, draw for draw: `t ~ U{0..=j}` for `j = n − b .. n`, and a `t` drawn
    /// before is replaced, where it stands, by `j` (new: every earlier draw is below j). rand
    /// finds an earlier copy by a linear search; here a bit per index says whether there is one
    /// (a collision is rare: about b²/2n per batch), and only then is it searched for. The bits
    /// are cleared again by the draws themselves, not by a pass over all n.
    /// Above `MAX_BITS` indices (a bit set of more than 2 MiB) every draw is searched for, as
    /// rand does (b < 163 here, so that is cheap next to the memory).
    fn floyd(&mut self, length: u32, amount: u32) -> Vec<u32> {
        const MAX_BITS: usize = 1 << 24;
        let bits = length as usize <= MAX_BITS;
        let words = (length as usize).div_ceil(64);
        if bits && self.drawn.len() < words {
            self.drawn.resize(words, 0);
        }
        let mut indices = Vec::with_capacity(amount as usize);
        for j in length - amount..length {
            let t = self.rng.random_range(..=j);
            let seen = !bits || self.drawn[t as usize / 64] & (1u64 << (t % 64)) != 0;
            if seen {
                if let Some(pos) = indices.iter().position(|&x| x == t) {
                    indices[pos] = j;
                    if bits {
                        self.drawn[j as usize / 64] |= 1 << (j % 64);
                    }
                }
            }
            if bits {
                self.drawn[t as usize / 64] |= 1 << (t % 64);
            }
            indices.push(t);
        }
        if bits {
            for &i in &indices {
                self.drawn[i as usize / 64] = 0;
            }
        }
        indices
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

/// Whether `rand::seq::index::sample(n, b)` (rand 0.9) uses Floyd's algorithm: its choice,
/// constants and f32 arithmetic copied, so that [`Sampler::batch`] keeps its exact draws.
fn uses_floyd(length: usize, amount: usize) -> bool {
    if length > u32::MAX as usize || amount >= 163 {
        return false;
    }
    const C: [[f32; 2]; 2] = [[1.6, 8.0 / 45.0], [10.0, 70.0 / 9.0]];
    let j = usize::from(length >= 500_000);
    let amount_fp = amount as f32;
    let m4 = C[0][j] * amount_fp;
    !(amount > 11 && (length as f32) < (C[1][j] + m4) * amount_fp)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fast Floyd path draws exactly what rand's `index::sample` draws, batch after batch
    /// from one generator (so the table is reused), on both sides of rand's algorithm choice.
    #[test]
    fn batches_match_rand_index_sample() {
        for (n, b) in
            [(49_990, 64), (20_000, 64), (5_657, 1000), (100, 5), (1000, 150), (600_000, 100), (40_000_000, 100), (30, 12), (7, 6), (2, 1)]
        {
            let mut ours = Sampler::new(7);
            let mut reference = ChaCha8Rng::seed_from_u64(7);
            for _ in 0..50 {
                let want: Vec<u32> = index::sample(&mut reference, n, b).into_iter().map(|i| i as u32).collect();
                assert_eq!(ours.batch(n, b), want, "n = {n}, b = {b}");
            }
        }
    }
}
