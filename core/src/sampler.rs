//! Seeded mini-batch sampling on the host. Indices are drawn on the CPU (a few KB) and handed to
//! the backend, so the same seed gives the same batches on every backend: CPU/GPU parity tests
//! are exact in their sampling.

use rand::seq::index;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

/// How the algorithms' mini-batches ([`Sampler::train_batch`], [`Sampler::val_batch`]) are drawn.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Batching {
    /// Every batch an independent uniform draw of distinct rows: the sampling the paper's
    /// analysis assumes. The default.
    #[default]
    Independent,
    /// The Benchopt bilevel benchmark's `MinibatchSampler`: the rows (shuffled once by whoever
    /// loads the data, see `Experiment::shuffled`) cut into fixed consecutive batches, visited
    /// in a fresh random order every epoch, one order per set. A draw costs next to nothing and
    /// a batch's rows are contiguous in memory, so the kernels stream them instead of gathering.
    Slices,
}

/// One set's epoch of consecutive batches ([`Batching::Slices`]).
struct Epoch {
    n: usize,
    b: usize,
    /// Batch numbers in this epoch's visiting order; `next` is the following one.
    order: Vec<u32>,
    next: usize,
}

/// One of a set's fixed consecutive batches ([`Sampler::train_slice`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slice {
    /// Its number: rows `index·b ..`, the set cut into `⌈n / b⌉` batches of `b`.
    pub index: usize,
    /// Its rows.
    pub rows: std::ops::Range<u32>,
}

impl Slice {
    /// How many batches of `b` rows a set of `n` is cut into (a batch as large as the set is
    /// the whole set).
    pub fn count(n: usize, b: usize) -> usize {
        n.div_ceil(b.clamp(1, n.max(1)))
    }

    /// Batch `index` of a set of `n` rows cut into batches of `b` (the last one may be short).
    pub fn nth(index: usize, n: usize, b: usize) -> Slice {
        let b = b.clamp(1, n.max(1));
        Slice { index, rows: (index * b).min(n) as u32..((index + 1) * b).min(n) as u32 }
    }

    /// Its rows as indices.
    pub fn indices(&self) -> Vec<u32> {
        self.rows.clone().collect()
    }
}

/// A seeded source of mini-batches and normal variates.
pub struct Sampler {
    rng: ChaCha8Rng,
    /// Floyd's sampler's membership bits over `0..n`, reused across batches and cleared after
    /// each (see [`Sampler::floyd`]).
    drawn: Vec<u64>,
    batching: Batching,
    /// The training and the validation set's epochs under [`Batching::Slices`].
    epochs: [Option<Epoch>; 2],
}

impl Sampler {
    /// A sampler whose every draw is fixed by `seed`, drawing [`Batching::Independent`] batches.
    pub fn new(seed: u64) -> Self {
        Sampler { rng: ChaCha8Rng::seed_from_u64(seed), drawn: Vec::new(), batching: Batching::Independent, epochs: [None, None] }
    }

    /// Switches how [`Sampler::train_batch`] and [`Sampler::val_batch`] draw.
    pub fn set_batching(&mut self, batching: Batching) {
        self.batching = batching;
        self.epochs = [None, None];
    }

    /// A mini-batch of `b` rows of the training set (`n` rows), drawn as [`Batching`] says.
    pub fn train_batch(&mut self, n: usize, b: usize) -> Vec<u32> {
        self.minibatch(0, n, b)
    }

    /// A mini-batch of `b` rows of the validation set (`n` rows), drawn as [`Batching`] says.
    pub fn val_batch(&mut self, n: usize, b: usize) -> Vec<u32> {
        self.minibatch(1, n, b)
    }

    fn minibatch(&mut self, set: usize, n: usize, b: usize) -> Vec<u32> {
        if self.batching == Batching::Independent || b >= n {
            return self.batch(n, b);
        }
        self.slice(set, n, b).indices()
    }

    /// The next of the training set's fixed consecutive batches ([`Batching::Slices`]'s, whatever
    /// [`Batching`] is set), with its number: the memory slots of SAGA-type solvers (SABA).
    pub fn train_slice(&mut self, n: usize, b: usize) -> Slice {
        self.slice(0, n, b)
    }

    /// [`Sampler::train_slice`] for the validation set.
    pub fn val_slice(&mut self, n: usize, b: usize) -> Slice {
        self.slice(1, n, b)
    }

    fn slice(&mut self, set: usize, n: usize, b: usize) -> Slice {
        // Batch k is rows k·b .. min((k+1)·b, n); the last one may be short, as in Benchopt (a
        // mean over its rows is still an unbiased row average).
        let b = b.clamp(1, n.max(1));
        let epoch = match &mut self.epochs[set] {
            Some(e) if e.n == n && e.b == b => e,
            slot => slot.insert(Epoch { n, b, order: (0..n.div_ceil(b) as u32).collect(), next: usize::MAX }),
        };
        if epoch.next >= epoch.order.len() {
            use rand::seq::SliceRandom;
            epoch.order.shuffle(&mut self.rng);
            epoch.next = 0;
        }
        let index = epoch.order[epoch.next] as usize;
        epoch.next += 1;
        Slice::nth(index, n, b)
    }

    /// `b` distinct row indices out of `0..n` (all of them, in order, when `b >= n`): exactly
    /// the indices `rand::seq::index::sample` draws from this generator.
    ///
    /// ```
    /// use bilevel_core::sampler::Sampler;
    ///
    /// let batch = Sampler::new(7).batch(100, 10);
    /// assert_eq!(batch, Sampler::new(7).batch(100, 10)); // the seed fixes the draw
    /// let mut sorted = batch.clone();
    /// sorted.sort();
    /// sorted.dedup();
    /// assert!(sorted.len() == 10 && sorted.iter().all(|&i| i < 100));
    /// assert_eq!(Sampler::new(7).batch(5, 10), vec![0, 1, 2, 3, 4]);
    /// ```
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

    /// Independent batching (the default) is exactly `batch`, for both sets.
    #[test]
    fn independent_minibatches_are_plain_batches() {
        let (mut a, mut b) = (Sampler::new(3), Sampler::new(3));
        for _ in 0..20 {
            assert_eq!(a.train_batch(1000, 64), b.batch(1000, 64));
            assert_eq!(a.val_batch(500, 32), b.batch(500, 32));
        }
    }

    /// Slices: each batch is a run of consecutive rows starting at a multiple of b; each epoch
    /// visits every batch once (so every row once, the short last batch included), in an order
    /// that changes from epoch to epoch; the two sets keep separate epochs; the seed fixes it all.
    #[test]
    fn slices_cover_each_epoch_once_in_consecutive_batches() {
        let (n, b, nv, bv) = (1003, 64, 1003, 100);
        let mut s = Sampler::new(11);
        s.set_batching(Batching::Slices);
        let mut orders = Vec::new();
        for _ in 0..3 {
            let mut seen = vec![0u32; n];
            let mut order = Vec::new();
            let mut val_seen = vec![0u32; nv];
            for k in 0..n.div_ceil(b) {
                let batch = s.train_batch(n, b);
                assert_eq!(batch[0] as usize % b, 0);
                assert!(batch.windows(2).all(|w| w[1] == w[0] + 1));
                assert_eq!(batch.len(), b.min(n - batch[0] as usize));
                order.push(batch[0] / b as u32);
                batch.iter().for_each(|&i| seen[i as usize] += 1);
                // Interleaved validation draws do not disturb the training epoch.
                if k < nv.div_ceil(bv) {
                    s.val_batch(nv, bv).iter().for_each(|&i| val_seen[i as usize] += 1);
                }
            }
            assert!(seen.iter().all(|&c| c == 1), "one epoch covers each row once");
            assert!(val_seen.iter().all(|&c| c == 1), "the validation epoch too");
            orders.push(order);
        }
        assert!(orders[0] != orders[1] && orders[1] != orders[2], "a fresh order each epoch");
        let mut again = Sampler::new(11);
        again.set_batching(Batching::Slices);
        assert_eq!(again.train_batch(n, b)[0] / b as u32, orders[0][0], "seeded");
        // A batch as large as the set is the whole set, in order.
        assert_eq!(s.train_batch(10, 10), (0..10).collect::<Vec<u32>>());
    }

    /// Slices with their numbers: batch i is `Slice::nth(i)`, each epoch visits every number
    /// once, whatever the batching mode; `count` and `nth` agree on a short last batch.
    #[test]
    fn numbered_slices_cover_each_epoch_once() {
        let (n, b) = (103, 10);
        assert_eq!(Slice::count(n, b), 11);
        assert_eq!(Slice::nth(10, n, b).rows, 100..103);
        assert_eq!(Slice::count(5, 64), 1);
        assert_eq!(Slice::nth(0, 5, 64).rows, 0..5);
        let mut s = Sampler::new(3);
        let mut seen = [false; 11];
        for _ in 0..11 {
            let slice = s.train_slice(n, b);
            assert_eq!(slice, Slice::nth(slice.index, n, b));
            assert!(!std::mem::replace(&mut seen[slice.index], true), "slice {} twice in an epoch", slice.index);
        }
        assert!(seen.iter().all(|&v| v));
    }
}
