//! The outer loop shared by every algorithm: T inner steps from a warm start and a hypergradient
//! estimate (the algorithm's part), then the outer SGD step `x ← x − β ĥ`.

use crate::algorithms::{AlgKind, Algorithm, Hyper};
use crate::backend::{Backend, Coef};
use crate::problems::Problem;
use crate::sampler::Sampler;

/// A bilevel run's resident state: hyperparameters x, warm-started inner variable y, the last
/// hypergradient estimate h.
pub struct OuterLoop<'a, B: Backend, P: Problem<B>> {
    pub be: &'a B,
    pub problem: P,
    pub hyper: Hyper,
    alg: Box<dyn Algorithm<B, P>>,
    pub x: B::Vector,
    pub y: B::Vector,
    pub h: B::Vector,
    pub rng: Sampler,
    pub iter: usize,
}

impl<'a, B: Backend + 'static, P: Problem<B>> OuterLoop<'a, B, P> {
    /// x and y start at zero (as in the reference code).
    pub fn new(be: &'a B, problem: P, alg: AlgKind, hyper: Hyper, seed: u64) -> Self {
        let alg = alg.build(be, &problem, &hyper);
        OuterLoop {
            x: be.zeros(problem.dim_x(), "outer.x"),
            y: be.zeros(problem.dim_y(), "outer.y"),
            h: be.zeros(problem.dim_x(), "outer.h"),
            be,
            problem,
            hyper,
            alg,
            rng: Sampler::new(seed),
            iter: 0,
        }
    }

    /// The algorithm's inner loop and hypergradient estimate at the current x (enqueued).
    pub fn estimate(&mut self) {
        self.alg.inner_and_hypergradient(self.be, &self.problem, &self.x, &mut self.y, &mut self.h, &mut self.rng);
    }

    /// The outer SGD step x ← x − β ĥ (enqueued).
    pub fn update(&mut self) {
        self.be.axpy(Coef::c(-self.hyper.beta), &self.h, &mut self.x);
        self.iter += 1;
    }
}
