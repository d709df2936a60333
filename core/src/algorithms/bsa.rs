//! BSA (Ghadimi & Wang 2018, bilevel stochastic approximation): T inner SGD steps, then a
//! hypergradient whose inverse Hessian is estimated by a Neumann series truncated at a random
//! length, which makes it unbiased for the truncated series:
//!
//! ```text
//! for t = 1..T:  y ← y − α ∇_y g(x, y; S_t)
//! q ~ U{0, …, Q−1};   v = Q η Π_{i=1..q} (I − η ∇²_yy g(x, y; B_i)) ∇_y f(x, y; D_F)
//! ĥ = ∇_x f − ∇_x∇_y g(x, y; D_G) v;      β_k = β / √(k+1)
//! ```

use super::{
    inner_descent, neumann_hypergradient, Algorithm, Hyper, InnerSteps, NeumannBatches, NeumannSeries, NeumannWork, Point, Schedule, Step,
};
use crate::backend::Backend;
use crate::problems::Problem;

/// BSA's workspaces (the inner gradient and the random-length Neumann estimator) and settings.
pub struct Bsa<B: Backend> {
    hyper: Hyper,
    grad: B::Vector,
    work: RandomNeumann<B>,
}

impl<B: Backend> Bsa<B> {
    /// Workspaces sized for `p`; `hyper` gives T, Q (the largest series length), α, η and the
    /// batch sizes.
    pub fn new<P: Problem<B>>(be: &B, p: &P, hyper: Hyper) -> Self {
        Bsa { grad: be.zeros(p.dim_y(), "bsa.grad"), work: RandomNeumann::new(be, p.dim_y()), hyper }
    }
}

impl<B: Backend, P: Problem<B>> Algorithm<B, P> for Bsa<B> {
    fn hyper_mut(&mut self) -> &mut Hyper {
        &mut self.hyper
    }

    fn inner_and_hypergradient(&mut self, be: &B, p: &P, step: Step<'_, B>) {
        let Step { k, x, y, h, rng } = step;
        let Hyper { t, alpha, batch_size, .. } = self.hyper;
        inner_descent(be, p, x, y, &mut self.grad, InnerSteps { steps: t, alpha, batch: Some(batch_size) }, rng);
        self.work.hypergradient(be, p, &self.hyper, Step { k, x, y, h, rng });
    }

    fn outer_schedule(&self) -> Schedule {
        Schedule::Power(0.5)
    }
}

/// Ghadimi & Wang's hypergradient estimator with a randomly truncated Neumann series (BSA and
/// TTSA share it).
pub(crate) struct RandomNeumann<B: Backend> {
    r: B::Vector,
    hr: B::Vector,
}

impl<B: Backend> RandomNeumann<B> {
    pub(crate) fn new(be: &B, n: usize) -> Self {
        RandomNeumann { r: be.zeros(n, "neumann.r"), hr: be.zeros(n, "neumann.hr") }
    }

    /// The estimate at `at` (its y as the inner loop left it) with a random truncation length
    /// q ~ U{0, …, Q−1}.
    pub(crate) fn hypergradient<P: Problem<B>>(&mut self, be: &B, p: &P, hyper: &Hyper, at: Step<'_, B>) {
        let q = at.rng.below(hyper.q);
        self.truncated(be, p, hyper, q, at);
    }

    /// The estimate for a given truncation length q.
    pub(crate) fn truncated<P: Problem<B>>(&mut self, be: &B, p: &P, hyper: &Hyper, q: usize, at: Step<'_, B>) {
        let Step { x, y, h, rng, .. } = at;
        let d_f = be.indices(&rng.val_batch(p.n_val(), hyper.val_batch_size));
        // r ← (I − η H_{B_j}) r on a fresh training batch B_j, q times.
        let hvp = (0..q).map(|_| be.indices(&rng.train_batch(p.n_train(), hyper.batch_size))).collect();
        let d_g = be.indices(&rng.train_batch(p.n_train(), hyper.batch_size));
        let batches = NeumannBatches { d_f, hvp, d_g };
        let series = NeumannSeries { batches: &batches, eta: hyper.eta, c: hyper.q as f64 * hyper.eta };
        let work = NeumannWork { r: &mut self.r, hr: &mut self.hr, sum: None };
        neumann_hypergradient(be, p, Point { x, y: &*y }, series, work, h);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Rows;
    use crate::cpu::CpuBackend;
    use crate::problems::ridge::{Ridge, RidgeData};
    use crate::sampler::Sampler;

    /// Averaged over every truncation length q ∈ {0..Q−1}, the estimate equals the truncated
    /// series −J η Σ_{q<Q} (I − ηH)^q ∇f exactly (full batches: no other randomness), and that
    /// series approaches the closed form as Q grows.
    #[test]
    fn the_mean_over_truncation_lengths_is_the_truncated_neumann_series() {
        let be = CpuBackend::<f64>::new();
        let data = RidgeData::synthetic(80, 60, 7, 0.4, 5);
        let p = Ridge::ridge(&be, &data);
        let lam: Vec<f64> = (0..7).map(|j| 0.1 * j as f64 - 0.3).collect();
        let w = data.inner_solution(&lam);
        let (big_q, eta) = (60, 0.5);
        let hyper = Hyper { t: 1, q: big_q, eta, alpha: 0.1, beta: 1.0, batch_size: 80, val_batch_size: 60 };
        let mut est = RandomNeumann::new(&be, 7);
        let mut h = vec![0.0; 7];
        let mut mean = vec![0.0; 7];
        for q in 0..big_q {
            let at = Step { k: 0, x: &lam, y: &mut w.clone(), h: &mut h, rng: &mut Sampler::new(0) };
            est.truncated(&be, &p, &hyper, q, at);
            mean.iter_mut().zip(&h).for_each(|(m, v)| *m += v / big_q as f64);
        }
        // The truncated series directly: r_0 = ∇f, r_{q+1} = (I − ηH) r_q, sum of Q terms.
        let (mut r, mut hr, mut sum) = (vec![0.0; 7], vec![0.0; 7], vec![0.0; 7]);
        p.outer_grad_y(&be, &lam, &w, Rows::All, &mut r);
        for _ in 0..big_q {
            sum.iter_mut().zip(&r).for_each(|(s, v)| *s += v);
            p.inner_hvp(&be, &lam, &w, &r, Rows::All, &mut hr);
            r.iter_mut().zip(&hr).for_each(|(v, hv)| *v -= eta * hv);
        }
        let mut series = vec![0.0; 7];
        p.mixed_jvp(&be, &lam, &w, &sum, Rows::All, &mut series);
        series.iter_mut().for_each(|v| *v *= -eta);
        let rel = |a: &[f64], b: &[f64]| {
            let d: f64 = a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum::<f64>().sqrt();
            d / b.iter().map(|y| y * y).sum::<f64>().sqrt()
        };
        assert!(rel(&mean, &series) < 1e-12, "mean over q vs truncated series: {:e}", rel(&mean, &series));
        let (exact, _) = data.exact_hypergradient(&lam);
        assert!(rel(&series, &exact) < 1e-6, "truncated series vs closed form: {:e}", rel(&series, &exact));
    }
}
