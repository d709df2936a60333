//! The toy end-to-end experiment: per-feature ridge regression on seeded synthetic data,
//! one algorithm, the outer loop, and a record per outer iteration that compares the estimate
//! with the closed-form hypergradient at the same point. The CLI and the web page both drive it.

use serde::Serialize;

use crate::algorithms::{AlgKind, Hyper};
use crate::backend::{GlmBackend, Rows};
use crate::outer::{OuterLoop, OuterOpt};
use crate::problems::counted::OracleCounts;
use crate::problems::ridge::{Ridge, RidgeData};
use crate::problems::Problem;
use crate::{Error, Result};

/// Everything a toy run depends on.
#[derive(Clone, Debug, Serialize)]
pub struct ToyConfig {
    /// The hypergradient algorithm.
    pub alg: AlgKind,
    /// Its settings (T, Q, step sizes, batch sizes).
    pub hyper: Hyper,
    /// The outer optimiser.
    pub opt: OuterOpt,
    /// Seed of the synthetic data; the algorithm's mini-batches use `seed + 1`.
    pub seed: u64,
    /// Outer iterations to run.
    pub epochs: usize,
    /// Training rows n of the synthetic ridge instance.
    pub n_train: usize,
    /// Validation rows m.
    pub n_val: usize,
    /// Features d: the dimension of both w and λ.
    pub features: usize,
    /// Standard deviation of the Gaussian noise on the targets.
    pub noise: f64,
    /// μ of the outer penalty (μ/2)‖λ‖² added to the validation loss (0: the plain problem).
    pub outer_penalty: f64,
    /// Put the hypergradient estimate and the exact one in every record.
    pub record_vectors: bool,
}

impl ToyConfig {
    /// Rejects settings no run can use: the algorithm's and optimiser's own checks, zero sizes,
    /// negative or non-finite noise and outer penalty.
    pub fn validate(&self) -> Result<()> {
        self.hyper.validate()?;
        self.opt.validate()?;
        for (name, v) in [("epochs", self.epochs), ("n_train", self.n_train), ("n_val", self.n_val), ("features", self.features)] {
            if v == 0 {
                return Err(Error::InvalidArgument(format!("--{name} must be at least 1")));
            }
        }
        if !(self.noise.is_finite() && self.noise >= 0.0) {
            return Err(Error::InvalidArgument(format!("--noise must be finite and non-negative, got {}", self.noise)));
        }
        if !(self.outer_penalty.is_finite() && self.outer_penalty >= 0.0) {
            return Err(Error::InvalidArgument(format!("--outer_penalty must be finite and non-negative, got {}", self.outer_penalty)));
        }
        Ok(())
    }
}

/// One outer iteration's record (a JSON line).
#[derive(Clone, Debug, Serialize)]
pub struct ToyRecord {
    /// Outer iterations completed, this one included (1 for the first record).
    pub iter: usize,
    /// Cumulative solver time: inner loop, estimate, update and the readback of the estimate;
    /// the closed-form reference and the loss evaluation are excluded.
    pub time_s: f64,
    /// f(w, λ) on the whole validation set at this iteration's λ and the w of its inner loop.
    pub outer_loss: f64,
    /// Φ(λ) = f(w*(λ), λ) at this iteration's λ (closed form).
    pub exact_outer_loss: f64,
    /// ‖ĥ − ∇Φ(λ)‖ / ‖∇Φ(λ)‖ at this iteration's λ.
    pub hypergrad_rel_err: f64,
    /// ‖ĥ‖: the norm of this iteration's estimate.
    pub hypergrad_norm: f64,
    /// ‖λ‖ at this iteration's λ (before the update).
    pub lambda_norm: f64,
    /// Oracle calls so far (cumulative).
    pub oracle_counts: OracleCounts,
    /// The estimate ĥ, when [`ToyConfig::record_vectors`] asks for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hypergradient: Option<Vec<f64>>,
    /// The closed-form ∇Φ(λ), when [`ToyConfig::record_vectors`] asks for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exact_hypergradient: Option<Vec<f64>>,
}

/// A toy run in progress on backend `B`.
pub struct ToyRun<'a, B: GlmBackend> {
    /// The settings the run was built from.
    pub config: ToyConfig,
    /// The host copy of the instance, for the closed-form reference.
    pub data: RidgeData,
    /// The outer loop: the resident problem, x, y, the algorithm and its counts.
    pub outer: OuterLoop<'a, B, Ridge<B>>,
    loss: B::Scalar,
    elapsed: f64,
}

fn norm(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

impl<'a, B: GlmBackend + 'static> ToyRun<'a, B> {
    /// Builds the data (host, f64), uploads it, and sets up the algorithm.
    ///
    /// ```
    /// use bilevel_core::algorithms::{AlgKind, Hyper};
    /// use bilevel_core::cpu::CpuBackend;
    /// use bilevel_core::outer::OuterOpt;
    /// use bilevel_core::toy::{ToyConfig, ToyRun};
    ///
    /// let be = CpuBackend::<f64>::new();
    /// let hyper = Hyper { t: 20, q: 20, eta: 0.5, alpha: 0.5, beta: 1.0, batch_size: 50, val_batch_size: 50 };
    /// let opt = OuterOpt::Sgd { momentum: 0.0 };
    /// let config = ToyConfig { alg: AlgKind::AidCg, hyper, opt, seed: 0, epochs: 3, n_train: 100, n_val: 100,
    ///     features: 5, noise: 0.1, outer_penalty: 0.0, record_vectors: false };
    /// let mut run = ToyRun::new(&be, config).unwrap();
    /// while !run.done() {
    ///     let record = pollster::block_on(run.step(&|| 0.0)).unwrap();
    ///     assert!(record.hypergrad_rel_err < 1e-3, "{record:?}");
    /// }
    /// ```
    pub fn new(be: &'a B, config: ToyConfig) -> Result<Self> {
        config.validate()?;
        // The data seed is fixed by the run seed, so every backend sees the same instance.
        let data = RidgeData::synthetic(config.n_train, config.n_val, config.features, config.noise, config.seed)
            .with_outer_penalty(config.outer_penalty);
        let problem = Ridge::ridge(be, &data);
        let outer = OuterLoop::new(be, problem, config.alg, config.hyper.clone(), config.opt, config.seed.wrapping_add(1))?;
        Ok(ToyRun { loss: be.scalar("toy.loss"), config, data, outer, elapsed: 0.0 })
    }

    /// Whether all [`ToyConfig::epochs`] outer iterations have run.
    pub fn done(&self) -> bool {
        self.outer.iter >= self.config.epochs
    }

    /// One outer iteration. `now` is a clock in seconds (std's Instant natively,
    /// `performance.now()` in a browser).
    pub async fn step(&mut self, now: &dyn Fn() -> f64) -> Result<ToyRecord> {
        let be = self.outer.be;
        let t0 = now();
        self.outer.adapt_steps().await?;
        self.outer.estimate();
        let lambda = be.read_vector(&self.outer.x).await?;
        let h = be.read_vector(&self.outer.h).await?;
        self.elapsed += now() - t0;
        // The loss at this iteration's (λ, w), before the update moves λ.
        self.outer.problem.outer_loss(be, &self.outer.x, &self.outer.y, Rows::All, &self.loss);
        let outer_loss = be.read_scalar(&self.loss).await?;
        let t1 = now();
        self.outer.update();
        self.elapsed += now() - t1;

        let iter = self.outer.iter;
        for (q, ok) in [("hypergradient", h.iter().all(|v| v.is_finite())), ("outer loss", outer_loss.is_finite())] {
            if !ok {
                return Err(Error::NonFinite { iter, quantity: q.into() });
            }
        }
        let (exact, exact_loss) = self.data.exact_hypergradient(&lambda);
        let diff: Vec<f64> = h.iter().zip(&exact).map(|(a, b)| a - b).collect();
        let record_vectors = self.config.record_vectors;
        Ok(ToyRecord {
            iter,
            time_s: self.elapsed,
            outer_loss,
            exact_outer_loss: exact_loss,
            hypergrad_rel_err: norm(&diff) / norm(&exact).max(f64::MIN_POSITIVE),
            hypergrad_norm: norm(&h),
            lambda_norm: norm(&lambda),
            oracle_counts: self.outer.counts(),
            hypergradient: record_vectors.then(|| h.clone()),
            exact_hypergradient: record_vectors.then_some(exact),
        })
    }
}
