//! The outer loop shared by every algorithm: the algorithm's inner loop and hypergradient
//! estimate, then the outer step on x with SGD (optionally with momentum, as the reference code
//! offers) or Adam, at the algorithm's step-size schedule. Oracle calls are counted.
//!
//! The loop runs any [`Algorithm`]: one of the shipped ones by name ([`OuterLoop::new`] with an
//! [`AlgKind`]) or a user's own ([`OuterLoop::with_algorithm`]), with the same step-size
//! adaptation, schedules and oracle counts.

use serde::Serialize;

use crate::algorithms::{AlgKind, Algorithm, Hyper, Schedule, Step};
use crate::backend::{Backend, Coef};
use crate::optim::{Adam, AdamSettings};
use crate::problems::counted::{Counted, OracleCounts};
use crate::problems::Problem;
use crate::sampler::Sampler;
use crate::steps::{AutoSteps, Curvature, StepChoice};
use crate::{Error, Result};

/// The outer optimiser.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub enum OuterOpt {
    /// `m ← μ m + ĥ;  x ← x − β_k m` (PyTorch's SGD; μ = 0 is plain SGD).
    Sgd {
        /// μ ∈ [0, 1) (the reference's `--outer_mu`).
        momentum: f64,
    },
    /// Adam (Kingma & Ba) with bias correction.
    Adam(AdamSettings),
}

impl OuterOpt {
    /// Adam with PyTorch's constants.
    pub fn adam() -> Self {
        OuterOpt::Adam(AdamSettings::default())
    }
    /// Rejects settings no run can use (momentum and Adam's betas outside [0, 1), ε ≤ 0).
    pub fn validate(&self) -> Result<()> {
        let ok = match *self {
            OuterOpt::Sgd { momentum } => (0.0..1.0).contains(&momentum),
            OuterOpt::Adam(AdamSettings { beta1, beta2, eps }) => (0.0..1.0).contains(&beta1) && (0.0..1.0).contains(&beta2) && eps > 0.0,
        };
        if ok {
            Ok(())
        } else {
            Err(Error::InvalidArgument(format!("invalid outer optimiser settings {self:?} (momentum and Adam betas in [0, 1))")))
        }
    }
}

/// A bilevel run's resident state: hyperparameters x, warm-started inner variable y, the last
/// hypergradient estimate h, and the optimiser's moments.
pub struct OuterLoop<'a, B: Backend, P: Problem<B>> {
    /// The backend everything is resident on.
    pub be: &'a B,
    /// The problem, its oracle calls counted.
    pub problem: Counted<P>,
    /// The settings in use (α and η as last chosen, when chosen from the data).
    pub hyper: Hyper,
    /// The outer optimiser.
    pub opt: OuterOpt,
    alg: Box<dyn Algorithm<B, Counted<P>> + 'a>,
    /// The hyperparameters x.
    pub x: B::Vector,
    /// The inner variable y, warm-started across outer iterations.
    pub y: B::Vector,
    /// The last hypergradient estimate ĥ.
    pub h: B::Vector,
    /// The optimiser's state on x.
    moments: Moments<B>,
    /// ‖ĥ‖², read back by [`OuterLoop::wait`].
    sync: B::Scalar,
    /// The run's mini-batch sampler (seeded).
    pub rng: Sampler,
    /// Outer iterations done.
    pub iter: usize,
    /// Data-chosen α and η ([`OuterLoop::set_auto_steps`]).
    auto: Option<AutoSteps>,
    curvature: Option<Curvature<B>>,
    seed: u64,
    /// x where the curvature was last estimated.
    x_at_estimate: Option<Vec<f64>>,
    /// The last data-chosen steps, if any.
    pub steps: Option<StepChoice>,
}

/// The outer optimiser's state on x.
enum Moments<B: Backend> {
    None,
    /// The heavy-ball buffer m and μ.
    Momentum(B::Vector, f64),
    Adam(Adam<B>),
}

impl<'a, B: Backend + 'static, P: Problem<B> + 'a> OuterLoop<'a, B, P> {
    /// One of the shipped algorithms on `problem`, from x = 0 and y = 0 (as in the reference
    /// code; see [`OuterLoop::with_start`]). Settings no run can use, and an algorithm the
    /// problem cannot run, are errors.
    pub fn new(be: &'a B, problem: P, alg: AlgKind, hyper: Hyper, opt: OuterOpt, seed: u64) -> Result<Self> {
        alg.check::<B, _>(&problem)?;
        hyper.validate()?;
        Self::with_algorithm(be, problem, |be, p| alg.build(be, p, &hyper), opt, seed)
    }

    /// Any algorithm on `problem`: `build` makes it for the problem the loop runs (the user's
    /// problem wrapped in [`Counted`], so its oracle calls are counted), with its workspaces
    /// sized from the problem's dimensions. The loop's settings are the algorithm's
    /// ([`Algorithm::hyper_mut`]).
    ///
    /// ```
    /// use bilevel_core::algorithms::{stocbio::StocBiO, Hyper};
    /// use bilevel_core::cpu::CpuBackend;
    /// use bilevel_core::outer::{OuterLoop, OuterOpt};
    /// use bilevel_core::problems::{glm::Glm, ridge::RidgeData};
    ///
    /// let be = CpuBackend::<f64>::new();
    /// let problem = Glm::ridge(&be, &RidgeData::synthetic(40, 30, 5, 0.1, 1));
    /// let hyper = Hyper { t: 5, q: 5, eta: 0.1, alpha: 0.1, beta: 1.0, batch_size: 10, val_batch_size: 10 };
    /// let mut run = OuterLoop::with_algorithm(&be, problem, |be, p| StocBiO::new(be, p, hyper), OuterOpt::adam(), 0)?;
    /// for _ in 0..3 {
    ///     run.estimate();
    ///     run.update();
    /// }
    /// assert_eq!(run.iter, 3);
    /// assert!(run.counts().hvps > 0);
    /// # Ok::<(), bilevel_core::Error>(())
    /// ```
    pub fn with_algorithm<A, F>(be: &'a B, problem: P, build: F, opt: OuterOpt, seed: u64) -> Result<Self>
    where
        A: Algorithm<B, Counted<P>> + 'a,
        F: FnOnce(&B, &Counted<P>) -> A,
    {
        opt.validate()?;
        let problem = Counted::new(problem);
        let mut alg = build(be, &problem);
        let hyper = alg.hyper_mut().clone();
        hyper.validate()?;
        let (dx, dy) = (problem.dim_x(), problem.dim_y());
        let moments = match opt {
            OuterOpt::Sgd { momentum: 0.0 } => Moments::None,
            OuterOpt::Sgd { momentum } => Moments::Momentum(be.zeros(dx, "outer.momentum"), momentum),
            OuterOpt::Adam(settings) => Moments::Adam(Adam::new(be, dx, "outer.x", settings)),
        };
        Ok(OuterLoop {
            x: be.zeros(dx, "outer.x"),
            y: be.zeros(dy, "outer.y"),
            h: be.zeros(dx, "outer.h"),
            moments,
            sync: be.scalar("outer.sync"),
            be,
            problem,
            hyper,
            opt,
            alg: Box::new(alg),
            rng: Sampler::new(seed),
            iter: 0,
            auto: None,
            curvature: None,
            seed,
            x_at_estimate: None,
            steps: None,
        })
    }

    /// Chooses α and/or η from the data: `fraction / L̂` with `L̂` the inner Hessian's top
    /// eigenvalue, estimated when [`OuterLoop::adapt_steps`] is due (see [`crate::steps`]).
    pub fn set_auto_steps(&mut self, auto: AutoSteps) {
        self.auto = Some(auto).filter(AutoSteps::any);
    }

    /// The estimated top eigenvalue of the inner Hessian at the current (x, y), on the rows
    /// `batch` says (all training rows, or the largest over a few batches of that size). Its
    /// HVPs are counted with the run's oracles when `counted` (a step choice is part of the
    /// solver's work; a diagnostic is not).
    pub async fn curvature(&mut self, batch: Option<usize>, counted: bool) -> Result<f64> {
        let OuterLoop { be, problem, x, y, curvature, seed, .. } = self;
        let curvature = curvature.get_or_insert_with(|| Curvature::new(*be, problem.dim_y(), *seed));
        if counted {
            curvature.estimate(*be, &*problem, &*x, &*y, batch, 0).await
        } else {
            curvature.estimate(*be, &problem.inner, &*x, &*y, batch, 0).await
        }
    }

    /// Re-estimates the curvature when due and sets the data-chosen steps for the following
    /// iterations: at the first iteration, every [`AutoSteps::every`] iterations, and as soon
    /// as some hyperparameter has moved by more than [`AutoSteps::MOVE`] since the last
    /// estimate (an exp-parameterised penalty's curvature changes by e^{Δλ}; reading x back
    /// costs a copy of dim x, which the records read anyway). Returns the new choice when one
    /// was made. Its HVPs are counted with the run's oracles.
    pub async fn adapt_steps(&mut self) -> Result<Option<StepChoice>> {
        let Some(auto) = self.auto else { return Ok(None) };
        let x = self.be.read_vector(&self.x).await?;
        let due = match (&self.steps, &self.x_at_estimate) {
            (Some(last), Some(x_ref)) => {
                self.iter >= last.iter + auto.every.max(1) || x.iter().zip(x_ref).any(|(a, b)| (a - b).abs() > AutoSteps::MOVE)
            }
            _ => true,
        };
        if !due {
            return Ok(None);
        }
        self.x_at_estimate = Some(x);
        let lipschitz = self.curvature(auto.batch, true).await?;
        if !(lipschitz.is_finite() && lipschitz > 0.0) {
            return Err(Error::NonFinite { iter: self.iter, quantity: format!("inner curvature estimate ({lipschitz})") });
        }
        auto.apply(lipschitz, self.alg.hyper_mut());
        auto.apply(lipschitz, &mut self.hyper);
        let choice = StepChoice { iter: self.iter, lipschitz, alpha: self.hyper.alpha, eta: self.hyper.eta };
        self.steps = Some(choice);
        Ok(Some(choice))
    }

    /// Replaces the starting point (x, y) (host values).
    pub fn with_start(mut self, x: Option<&[f64]>, y: Option<&[f64]>) -> Self {
        if let Some(x) = x {
            self.x = self.be.vector_from(x, "outer.x");
        }
        if let Some(y) = y {
            self.y = self.be.vector_from(y, "outer.y");
        }
        self
    }

    /// Oracle calls so far.
    pub fn counts(&self) -> OracleCounts {
        self.problem.counts()
    }

    /// The algorithm's inner loop and hypergradient estimate at the current x (enqueued).
    pub fn estimate(&mut self) {
        let step = Step { k: self.iter, x: &self.x, y: &mut self.y, h: &mut self.h, rng: &mut self.rng };
        self.alg.inner_and_hypergradient(self.be, &self.problem, step);
    }

    /// The outer step with the current estimate (enqueued).
    pub fn update(&mut self) {
        let k = self.iter;
        let lr = self.hyper.beta * self.schedule().factor(k);
        match &mut self.moments {
            Moments::None => self.be.axpy(Coef::c(-lr), &self.h, &mut self.x),
            Moments::Momentum(m, momentum) => {
                self.be.axpby(Coef::c(1.0), &self.h, Coef::c(*momentum), m);
                self.be.axpy(Coef::c(-lr), m, &mut self.x);
            }
            Moments::Adam(adam) => adam.step(self.be, &self.h, &mut self.x, lr),
        }
        self.iter += 1;
    }

    /// Waits for everything enqueued (reading a scalar does) and returns ‖ĥ‖²; a non-finite
    /// estimate (a step size too large) is an error naming the iteration.
    pub async fn wait(&self) -> Result<f64> {
        self.be.dot(&self.h, &self.h, 1.0, &self.sync, false);
        let h2 = self.be.read_scalar(&self.sync).await?;
        if !h2.is_finite() {
            return Err(Error::NonFinite { iter: self.iter, quantity: "hypergradient".into() });
        }
        Ok(h2)
    }

    /// The schedule of the algorithm in use.
    pub fn schedule(&self) -> Schedule {
        self.alg.outer_schedule()
    }
}
