//! A bilevel run on a real data set with a test split: the outer loop, evaluation on the side
//! (excluded from the time), and a record per outer iteration. The CLI's `hyperclean`, `l2reg`
//! and `ijcnn1` subcommands drive it.

use serde::Serialize;

use crate::algorithms::{AlgKind, Algorithm, Hyper};
use crate::backend::{GlmBackend, HostMatrix, LossKind, Rows};
use crate::data::Labeled;
use crate::exact::{solve_inner, InnerSolve};
use crate::outer::{OuterLoop, OuterOpt};
use crate::problems::counted::{Counted, OracleCounts};
use crate::problems::glm::{GlmData, HyperKind};
use crate::problems::{builder, with_bias, Problem, ProblemKind, RegScale};
use crate::sampler::Sampler;
use crate::steps::StepChoice;
use crate::{Error, Result};

/// A problem's data with its held-out test split.
#[derive(Clone, Debug)]
pub struct Experiment {
    /// The training and validation splits.
    pub data: GlmData,
    /// The hyperparameters and the inner regulariser.
    pub hyper_kind: HyperKind,
    /// Whether the per-feature hyperparameters are tied into one (one global L2 strength,
    /// [`Tied::global`](crate::problems::tied::Tied::global)).
    pub global: bool,
    /// The test features (never seen by the solver; evaluation only).
    pub x_test: HostMatrix,
    /// The test targets, in the loss's encoding.
    pub t_test: Vec<f64>,
    /// For hyper-cleaning: which training labels were corrupted (for precision and recall).
    pub corrupted: Option<Vec<bool>>,
    /// For hyper-cleaning: the training labels before corruption, as class indices (the true
    /// labels of [`downweighted`] samples).
    pub true_labels: Option<Vec<f64>>,
}

impl Experiment {
    /// The problem resident on `be`: the GLM, tied to one hyperparameter when
    /// [`Experiment::global`].
    pub fn problem<B: GlmBackend + 'static>(&self, be: &B) -> Box<dyn Problem<B>> {
        builder::resident(be, &self.data, self.hyper_kind, self.global)
    }

    /// The training and validation rows in a seeded random order, the corruption mask and the
    /// true labels with them (see [`GlmData::shuffled`]); the test set is untouched.
    pub fn shuffled(self, seed: u64) -> Experiment {
        let (data, order) = self.data.shuffled(seed);
        let corrupted = self.corrupted.map(|mask| order.iter().map(|&i| mask[i]).collect());
        let true_labels = self.true_labels.map(|labels| order.iter().map(|&i| labels[i]).collect());
        Experiment { data, corrupted, true_labels, ..self }
    }
}

/// One outer iteration's record.
#[derive(Clone, Debug, Serialize)]
pub struct Record {
    /// Outer iterations done (0: the starting point).
    pub iter: usize,
    /// Cumulative solver time (inner loop, hypergradient, outer step); evaluation excluded.
    pub time_s: f64,
    /// Mean loss of the inner model y on the test set.
    pub test_loss: f64,
    /// Its test accuracy (for classification; 1 for regression).
    pub test_acc: f64,
    /// The outer objective f on the whole validation set.
    pub val_loss: f64,
    /// ‖x‖₂.
    pub lambda_norm: f64,
    /// Oracle calls so far, the step-size choice's included.
    pub oracle_counts: OracleCounts,
    /// Hyper-cleaning: of the samples with weight σ(λ_i) < 0.5, the fraction that are corrupted…
    #[serde(skip_serializing_if = "Option::is_none")]
    pub precision: Option<f64>,
    /// …and of the corrupted samples, the fraction with weight < 0.5.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recall: Option<f64>,
}

/// Hyper-cleaning's two reference points: the test accuracy of the inner problem solved to
/// convergence at two fixed weightings, on the same corrupted labels as the run.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Baselines {
    /// Every training sample weighted equally (λ = 0, σ(λ_i) = ½): training without cleaning.
    pub uniform_test_acc: f64,
    /// Weight 1 on the clean samples and 0 on the corrupted ones (the corruption mask known):
    /// what a perfect cleaner would reach.
    pub clean_test_acc: f64,
}

/// λ standing for weight 1 (and −λ for 0): σ(±40) is 1 and 0 to within 5·10⁻¹⁸.
const CERTAIN: f64 = 40.0;

/// How far the baselines' inner problems are solved: the gradient norm down by 100 (on MNIST the
/// test accuracy then moves by less than 0.1 point), by Newton steps of 40 CG iterations each.
/// MNIST's inner problem is ill-conditioned (ρ = 0.001 against pixel-scale curvature), so a
/// Newton step with fewer CG iterations barely descends and one with many costs more passes
/// over X than it saves: 40 reached this tolerance in 8 steps (about 350 Hessian products).
const BASELINE_SOLVE: InnerSolve = InnerSolve { tol: 0.0, rel_tol: 1e-2, max_newton: 20, cg_iters: 40, cg_rel: 1e-3 };

/// One of the most down-weighted training samples, with its image.
#[derive(Clone, Debug, Serialize)]
pub struct Downweighted {
    /// Its row of the training set, in the run's order.
    pub index: usize,
    /// σ(λ_i), its learned weight.
    pub weight: f64,
    /// The label it was trained with (possibly corrupted)…
    pub given_label: usize,
    /// …and its label before corruption.
    pub true_label: usize,
    /// The image's side: its first `side²` features, row-major.
    pub side: usize,
    /// Those features as grey levels 0–255, the row's lowest value 0 and its highest 255 (for
    /// MNIST's affine pixel normalisation, the original image stretched to its own range).
    pub pixels: Vec<u8>,
}

/// The `k` training samples with the smallest weight σ(λ_i) (lowest first, ties by row), from
/// the λ a run read back ([`Run::lambda`]). Needs the experiment's true labels.
pub fn downweighted(exp: &Experiment, lambda: &[f64], k: usize) -> Result<Vec<Downweighted>> {
    let x = &exp.data.x_train;
    let (n, cols) = x.shape();
    let Some(true_labels) = &exp.true_labels else {
        return Err(Error::InvalidArgument("the most down-weighted samples need the true labels (hyper-cleaning)".into()));
    };
    if lambda.len() != n || true_labels.len() != n {
        return Err(Error::InvalidArgument(format!(
            "{} weights and {} true labels for {n} training samples",
            lambda.len(),
            true_labels.len()
        )));
    }
    let side = (cols as f64).sqrt().floor() as usize;
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| lambda[a].total_cmp(&lambda[b]).then(a.cmp(&b)));
    Ok(order
        .into_iter()
        .take(k)
        .map(|i| {
            let mut values = vec![0.0; side * side];
            for (j, v) in x.row(i).into_iter().filter(|(j, _)| *j < side * side) {
                values[j] = v;
            }
            let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let span = if hi > lo { hi - lo } else { 1.0 };
            Downweighted {
                index: i,
                weight: 1.0 / (1.0 + (-lambda[i]).exp()),
                given_label: exp.data.t_train[i] as usize,
                true_label: true_labels[i] as usize,
                side,
                pixels: values.iter().map(|v| ((v - lo) / span * 255.0).round() as u8).collect(),
            }
        })
        .collect())
}

/// Corrupts a fraction `p` of the labels once, from the seed: `round(p·n)` positions, each given
/// a uniformly drawn *different* class (the paper's setting). Returns the corruption mask.
pub fn corrupt_labels(labels: &mut [f64], classes: usize, p: f64, seed: u64) -> Vec<bool> {
    let mut rng = Sampler::new(seed);
    let n = labels.len();
    let mut mask = vec![false; n];
    for i in rng.batch(n, ((p * n as f64).round() as usize).min(n)) {
        let i = i as usize;
        let shift = 1 + rng.below(classes - 1);
        labels[i] = ((labels[i] as usize + shift) % classes) as f64;
        mask[i] = true;
    }
    mask
}

/// Corrupts each label with probability `p`, replacing it by a class drawn uniformly from all
/// classes, so it may stay correct (the Benchopt benchmark's setting). Returns which changed.
pub fn corrupt_labels_uniform(labels: &mut [f64], classes: usize, p: f64, seed: u64) -> Vec<bool> {
    let mut rng = Sampler::new(seed);
    labels
        .iter_mut()
        .map(|y| {
            // Probability p at a resolution of 10⁻⁶ (kept: recorded results use this draw).
            let flip = rng.below(1_000_000) < (p * 1e6) as usize;
            let new = if flip { rng.below(classes) as f64 } else { *y };
            let changed = new != *y;
            *y = new;
            changed
        })
        .collect()
}

/// MNIST hyper-cleaning in the paper's setting from its normalised splits: a fraction
/// `noise_rate` of the training labels corrupted (seeded by `seed + 17`), one weight per
/// training sample, a bias column, `ρ‖W‖²`. The CLI's `hyperclean` and the web page share it.
pub fn hyperclean_paper(mut train: Labeled, val: Labeled, test: Labeled, noise_rate: f64, seed: u64, rho: f64) -> Result<Experiment> {
    if !(0.0..=1.0).contains(&noise_rate) {
        return Err(Error::InvalidArgument(format!("--noise_rate must be in [0, 1], got {noise_rate}")));
    }
    let true_labels = train.labels.clone();
    let corrupted = corrupt_labels(&mut train.labels, 10, noise_rate, seed.wrapping_add(17));
    let (data, hyper_kind) = ProblemKind::Hyperclean.from_svmlight(train, val, RegScale::Sum, rho)?;
    Ok(Experiment {
        data,
        hyper_kind,
        global: false,
        x_test: with_bias(&test.x),
        t_test: test.labels,
        corrupted: Some(corrupted),
        true_labels: Some(true_labels),
    })
}

/// How long [`Run::drive`] goes and which iterations it records.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Plan {
    /// Outer iterations at most (`usize::MAX`: until the time budget).
    pub epochs: usize,
    /// Stop once this much solver time (seconds, evaluation excluded) has been spent.
    pub time_budget: Option<f64>,
    /// Every one of the first `record_all` iterations is recorded…
    pub record_all: usize,
    /// …and later ones once the solver time since the last record is `eval_ratio` times what
    /// the last evaluation cost, so that evaluating takes at most `1 / (1 + eval_ratio)` of
    /// the wall clock however cheap an iteration is.
    pub eval_ratio: f64,
}

impl Plan {
    /// `epochs` outer iterations, the first 100 recorded, then evaluation kept under a tenth
    /// of the wall clock.
    pub fn epochs(epochs: usize) -> Self {
        Plan { epochs, time_budget: None, record_all: 100, eval_ratio: 9.0 }
    }
}

/// What [`Run::drive`] reports as it goes.
#[derive(Clone, Copy, Debug)]
pub enum Event<'r> {
    /// A record: the starting point's first, then as the [`Plan`] says.
    Record(&'r Record),
    /// The data chose new step sizes before an iteration.
    Steps(StepChoice),
    /// An outer iteration ended (for progress displays): the iteration count and the solver
    /// time so far.
    Iteration {
        /// Outer iterations done.
        iter: usize,
        /// Solver seconds so far.
        elapsed: f64,
    },
}

/// The problem an [`Experiment`] runs: the GLM, or the GLM with its hyperparameters tied.
pub type ExperimentProblem<B> = Box<dyn Problem<B>>;

/// A run in progress on backend `B`.
pub struct Run<'a, B: GlmBackend> {
    /// The solver's state (x, y, counts, settings).
    pub outer: OuterLoop<'a, B, ExperimentProblem<B>>,
    x_test: B::Matrix,
    t_test: Vec<f64>,
    corrupted: Option<Vec<bool>>,
    loss: LossKind,
    classes: usize,
    z_test: B::Vector,
    scalar: B::Scalar,
    elapsed: f64,
    /// λ as read back by the last record (the hyper-cleaning page colours images by σ(λ)).
    pub lambda: Vec<f64>,
}

impl<'a, B: GlmBackend + 'static> Run<'a, B> {
    /// One of the shipped algorithms on the experiment's problem (see [`OuterLoop::new`]).
    pub fn new(be: &'a B, exp: &Experiment, alg: AlgKind, hyper: Hyper, opt: OuterOpt, seed: u64) -> Result<Self> {
        let outer = OuterLoop::new(be, exp.problem(be), alg, hyper, opt, seed)?;
        Ok(Self::around(be, exp, outer))
    }

    /// Any algorithm on the experiment's problem (see [`OuterLoop::with_algorithm`]): the
    /// records, counts and evaluation are those of a shipped one.
    pub fn with_algorithm<A, F>(be: &'a B, exp: &Experiment, build: F, opt: OuterOpt, seed: u64) -> Result<Self>
    where
        A: Algorithm<B, Counted<ExperimentProblem<B>>> + 'a,
        F: FnOnce(&B, &Counted<ExperimentProblem<B>>) -> A,
    {
        let outer = OuterLoop::with_algorithm(be, exp.problem(be), build, opt, seed)?;
        Ok(Self::around(be, exp, outer))
    }

    /// The run's evaluation state (the test set resident) around an outer loop.
    fn around(be: &'a B, exp: &Experiment, outer: OuterLoop<'a, B, ExperimentProblem<B>>) -> Self {
        let n_test = exp.x_test.shape().0;
        Run {
            outer,
            x_test: be.matrix_from(&exp.x_test, "test.x"),
            t_test: exp.t_test.clone(),
            corrupted: exp.corrupted.clone(),
            loss: exp.data.loss,
            classes: exp.data.classes,
            z_test: be.zeros(n_test * exp.data.classes, "test.z"),
            scalar: be.scalar("run.scalar"),
            elapsed: 0.0,
            lambda: Vec::new(),
        }
    }

    /// Hyper-cleaning's [`Baselines`], on the run's resident data (not counted as oracle calls,
    /// not timed). Needs the corruption mask.
    pub async fn baselines(&mut self) -> Result<Baselines> {
        let Some(mask) = &self.corrupted else {
            return Err(Error::InvalidArgument("baselines need a corruption mask (hyper-cleaning)".into()));
        };
        let clean: Vec<f64> = mask.iter().map(|&m| if m { -CERTAIN } else { CERTAIN }).collect();
        let uniform = vec![0.0; mask.len()];
        Ok(Baselines { uniform_test_acc: self.test_acc_at(&uniform).await?, clean_test_acc: self.test_acc_at(&clean).await? })
    }

    /// The test accuracy of the inner solution at fixed weights λ.
    async fn test_acc_at(&mut self, lambda: &[f64]) -> Result<f64> {
        let be = self.outer.be;
        let problem = &self.outer.problem.inner;
        let x = be.vector_from(lambda, "baseline.lambda");
        let y0 = be.zeros(problem.dim_y(), "baseline.y0");
        let solution = solve_inner(be, problem, &x, &y0, &BASELINE_SOLVE).await?;
        be.gather_matmul(&self.x_test, Rows::All, &solution.y, self.classes, &mut self.z_test);
        let z = be.read_vector(&self.z_test).await?;
        Ok(evaluate(self.loss, &z, &self.t_test, self.classes).1)
    }

    /// The record of the starting point (iteration 0, no time spent).
    pub async fn initial(&mut self) -> Result<Record> {
        self.record().await
    }

    /// One outer iteration, then its evaluation.
    pub async fn step(&mut self, now: &dyn Fn() -> f64) -> Result<Record> {
        self.advance(now).await?;
        self.record().await
    }

    /// One outer iteration without an evaluation (a driver that records only some iterations
    /// calls [`Run::record`] when it wants one). Returns the steps the data chose, when this
    /// iteration chose them.
    pub async fn advance(&mut self, now: &dyn Fn() -> f64) -> Result<Option<StepChoice>> {
        let t0 = now();
        let choice = self.outer.adapt_steps().await?;
        self.outer.estimate();
        self.outer.update();
        // Wait for the device inside the timing.
        self.outer.wait().await?;
        self.elapsed += now() - t0;
        Ok(choice)
    }

    /// Runs the plan: the starting point's record, then outer iterations until `plan.epochs`
    /// or the time budget, each recorded as the plan says (the last always). Every record,
    /// step choice and iteration goes to `on` as it happens (a results file, a progress bar);
    /// an error from `on` or from the run ends it, with everything already handed over kept.
    /// Returns the last record.
    pub async fn drive(&mut self, plan: &Plan, now: &dyn Fn() -> f64, on: &mut dyn FnMut(Event<'_>) -> Result<()>) -> Result<Record> {
        let mut last = self.initial().await?;
        on(Event::Record(&last))?;
        let mut eval_cost = 0.0;
        for i in 0..plan.epochs {
            if let Some(choice) = self.advance(now).await? {
                on(Event::Steps(choice))?;
            }
            let out_of_time = plan.time_budget.is_some_and(|b| self.elapsed >= b);
            let last_iter = out_of_time || i + 1 == plan.epochs;
            // Evaluation (the test set, the validation loss, λ read back) is excluded from
            // time_s but not from the wall clock: past the first iterations, record one only
            // once the solver has run `eval_ratio` times as long as the last evaluation took.
            if last_iter || i < plan.record_all || self.elapsed - last.time_s >= plan.eval_ratio * eval_cost {
                let t = now();
                last = self.record().await?;
                eval_cost = now() - t;
                on(Event::Record(&last))?;
            }
            on(Event::Iteration { iter: self.outer.iter, elapsed: self.elapsed })?;
            if out_of_time {
                break;
            }
        }
        Ok(last)
    }

    /// Solver time so far (evaluation excluded).
    pub fn elapsed(&self) -> f64 {
        self.elapsed
    }

    /// The record of the current point: test loss and accuracy, validation loss, λ's norm,
    /// oracle counts (and precision/recall for hyper-cleaning).
    pub async fn record(&mut self) -> Result<Record> {
        let be = self.outer.be;
        let iter = self.outer.iter;
        // Test loss and accuracy from the test logits (read back: evaluation only).
        be.gather_matmul(&self.x_test, Rows::All, &self.outer.y, self.classes, &mut self.z_test);
        let z = be.read_vector(&self.z_test).await?;
        let (test_loss, test_acc) = evaluate(self.loss, &z, &self.t_test, self.classes);
        self.outer.problem.inner.outer_loss(be, &self.outer.x, &self.outer.y, Rows::All, &self.scalar);
        let val_loss = be.read_scalar(&self.scalar).await?;
        let lambda = be.read_vector(&self.outer.x).await?;
        for (q, v) in [("test loss", test_loss), ("validation loss", val_loss)] {
            if !v.is_finite() {
                return Err(Error::NonFinite { iter, quantity: q.into() });
            }
        }
        let (precision, recall) = match &self.corrupted {
            Some(mask) => {
                // Weight σ(λ) < 0.5 ⇔ λ < 0: the detector of corrupted labels.
                let flagged: Vec<bool> = lambda.iter().map(|&l| l < 0.0).collect();
                let tp = flagged.iter().zip(mask).filter(|(f, m)| **f && **m).count() as f64;
                let (nf, nm) = (flagged.iter().filter(|f| **f).count() as f64, mask.iter().filter(|m| **m).count() as f64);
                (Some(if nf > 0.0 { tp / nf } else { 0.0 }), Some(if nm > 0.0 { tp / nm } else { 0.0 }))
            }
            None => (None, None),
        };
        let record = Record {
            iter,
            time_s: self.elapsed,
            test_loss,
            test_acc,
            val_loss,
            lambda_norm: lambda.iter().map(|v| v * v).sum::<f64>().sqrt(),
            oracle_counts: self.outer.counts(),
            precision,
            recall,
        };
        self.lambda = lambda;
        Ok(record)
    }
}

/// Mean loss and accuracy of predictions `z` (rows × c) against targets.
pub fn evaluate(loss: LossKind, z: &[f64], targets: &[f64], c: usize) -> (f64, f64) {
    let n = targets.len().max(1);
    let (mut total, mut correct) = (0.0, 0usize);
    let mut r = vec![0.0; c];
    for (zi, &t) in z.chunks_exact(c).zip(targets) {
        total += crate::cpu::row_residual(loss, zi, t, &mut r);
        let predicted = match loss {
            LossKind::Squared => t, // accuracy is not meaningful for regression
            LossKind::Logistic => (zi[0] > 0.0) as u8 as f64,
            LossKind::Softmax => zi.iter().enumerate().fold(0, |best, (k, &v)| if v > zi[best] { k } else { best }) as f64,
        };
        correct += (predicted == t) as usize;
    }
    (total / n as f64, correct as f64 / n as f64)
}
