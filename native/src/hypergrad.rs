//! `bilevel hypergrad`: the hypergradient of the user's own data at a given λ.

use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use bilevel_core::algorithms::{AlgKind, Hyper, Step};
use bilevel_core::data::svmlight::{self, Svmlight};
use bilevel_core::exact::exact_hypergradient;
use bilevel_core::problems::counted::Counted;
use bilevel_core::problems::glm::{Glm, GlmData, HyperKind};
use bilevel_core::problems::{Problem, ProblemKind, RegScale};
use bilevel_core::sampler::Sampler;
use bilevel_core::{GlmBackend, Rows};
use clap::{Args, ValueEnum};
use serde_json::json;

use bilevel_core::steps::{AutoSteps, Curvature};

use crate::common::{algorithm, on_backend, BackendArgs, CompatArg, HyperArgs, Job, RegScaleArg};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ProblemArg {
    Ridge,
    Logreg,
    Multilogreg,
    Hyperclean,
}

#[derive(Args, Debug)]
#[command(rename_all = "snake_case", allow_negative_numbers = true)]
pub struct HypergradArgs {
    #[arg(long, value_enum, ignore_case = true)]
    problem: ProblemArg,
    /// Training set, svmlight/LIBSVM text.
    #[arg(long)]
    train: PathBuf,
    /// Validation set, svmlight/LIBSVM text.
    #[arg(long)]
    val: PathBuf,
    /// λ: one number for every entry, or a file of numbers (one per feature; per training row
    /// for hyperclean).
    #[arg(long)]
    lambda: String,
    /// exact (Newton–CG inner solve and a tight CG solve: a reference) or an algorithm.
    #[arg(long, default_value = "exact")]
    estimator: String,
    /// stocBiO's version: the paper's, or the reference code's.
    #[arg(long, value_enum, default_value = "paper", ignore_case = true)]
    compat: CompatArg,
    /// multilogreg's penalty: sum (the paper's) or mean (the reference code's 1/(2dc) Σ).
    #[arg(long, value_enum, default_value = "sum")]
    reg_scale: RegScaleArg,
    /// hyperclean's ρ in ρ‖Θ‖².
    #[arg(long, default_value_t = 0.001)]
    rho: f64,
    /// exact: inner gradient-norm tolerance.
    #[arg(long, default_value_t = 1e-9)]
    tol: f64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[command(flatten)]
    backend: BackendArgs,
    #[command(flatten)]
    hyper: HyperArgs,
}

const DEFAULTS: Hyper = Hyper { t: 100, q: 20, eta: 0.5, alpha: 0.1, beta: 1.0, batch_size: 256, val_batch_size: 256 };

fn read_svmlight(path: &Path) -> Result<Svmlight> {
    let file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    Ok(svmlight::parse(BufReader::new(file), &path.display().to_string())?)
}

/// λ from a number or a file of numbers, checked against the problem's dimension.
fn read_lambda(spec: &str, dim: usize) -> Result<Vec<f64>> {
    if let Ok(v) = spec.parse::<f64>() {
        if !v.is_finite() {
            bail!("--lambda {v} is not finite");
        }
        return Ok(vec![v; dim]);
    }
    let text = std::fs::read_to_string(spec).with_context(|| format!("--lambda {spec:?} is neither a number nor a readable file"))?;
    let values: Vec<f64> = text
        .split_whitespace()
        .enumerate()
        .map(|(i, w)| {
            w.parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .with_context(|| format!("{spec}: entry {} ({w:?}) is not a finite number", i + 1))
        })
        .collect::<Result<_>>()?;
    if values.len() != dim {
        bail!("{spec}: λ has {} entries, the problem needs {dim}", values.len());
    }
    Ok(values)
}

pub fn run(args: HypergradArgs) -> Result<()> {
    let hyper = args.hyper.hyper(DEFAULTS);
    hyper.validate()?;
    let estimator = match args.estimator.to_lowercase().as_str() {
        "exact" => None,
        _ => Some(algorithm(&args.estimator, args.compat)?),
    };
    if !(args.rho.is_finite() && args.rho >= 0.0) {
        bail!("--rho must be finite and non-negative, got {}", args.rho);
    }
    let kind = match args.problem {
        ProblemArg::Ridge => ProblemKind::Ridge,
        ProblemArg::Logreg => ProblemKind::Logreg,
        ProblemArg::Multilogreg => ProblemKind::Multilogreg,
        ProblemArg::Hyperclean => ProblemKind::Hyperclean,
    };
    let reg_scale = RegScale::from(args.reg_scale);
    let (train, val) = (read_svmlight(&args.train)?, read_svmlight(&args.val)?);
    let (data, hyper_kind) = kind.from_svmlight(train, val, reg_scale, args.rho)?;
    let dim_x = match hyper_kind {
        HyperKind::FeatureRidge { .. } => data.x_train.shape().1,
        HyperKind::SampleWeights { .. } => data.x_train.shape().0,
    };
    let lambda = read_lambda(&args.lambda, dim_x)?;
    let auto = args.hyper.auto_steps(true, None);
    on_backend(&args.backend, Hypergrad { kind, data, hyper_kind, lambda, estimator, hyper, auto, tol: args.tol, seed: args.seed })
}

struct Hypergrad {
    kind: ProblemKind,
    data: GlmData,
    hyper_kind: HyperKind,
    lambda: Vec<f64>,
    estimator: Option<AlgKind>,
    hyper: Hyper,
    auto: AutoSteps,
    tol: f64,
    seed: u64,
}

impl Job for Hypergrad {
    fn run<B: GlmBackend + 'static>(self, be: &B) -> Result<()> {
        let start = Instant::now();
        let p = Counted::new(Glm::new(be, &self.data, self.hyper_kind));
        let x = be.vector_from(&self.lambda, "lambda");
        let y0 = be.zeros(p.dim_y(), "y0");
        let (h, y, newton_steps) = match self.estimator {
            None => {
                let e = pollster::block_on(exact_hypergradient(be, &p, &x, &y0, self.tol))?;
                (e.hypergradient, e.y, Some(e.newton_steps))
            }
            Some(alg) => {
                alg.check(&p)?;
                let mut hyper = self.hyper.clone();
                let auto = self.auto.with_batch(alg.is_stochastic().then_some(hyper.batch_size));
                if auto.any() {
                    // The steps from the curvature at the starting point (see bilevel_core::steps).
                    let l = pollster::block_on(Curvature::new(be, p.dim_y(), self.seed).estimate(be, &p.inner, &x, &y0, auto.batch, 0))?;
                    auto.apply(l, &mut hyper);
                }
                let mut a = alg.build(be, &p, &hyper);
                let (mut y, mut h) = (y0, be.zeros(self.lambda.len(), "h"));
                a.inner_and_hypergradient(be, &p, Step { k: 0, x: &x, y: &mut y, h: &mut h, rng: &mut Sampler::new(self.seed) });
                (h, y, None)
            }
        };
        let hypergradient = pollster::block_on(be.read_vector(&h))?;
        // Report the point's outer loss and inner stationarity.
        let (s, mut g) = (be.scalar("s"), be.zeros(p.dim_y(), "g"));
        p.inner.outer_loss(be, &x, &y, Rows::All, &s);
        let outer_loss = pollster::block_on(be.read_scalar(&s))?;
        p.inner.inner_grad(be, &x, &y, Rows::All, &mut g);
        be.dot(&g, &g, 1.0, &s, false);
        let inner_grad_norm = pollster::block_on(be.read_scalar(&s))?.sqrt();
        if hypergradient.iter().any(|v| !v.is_finite()) || !outer_loss.is_finite() {
            bail!("the hypergradient became non-finite (step sizes too large?)");
        }
        let (n, d) = self.data.x_train.shape();
        let out = json!({
            "problem": self.kind,
            "estimator": self.estimator.map_or("exact".to_string(), |a| a.to_string()),
            "backend": be.describe(),
            "n_train": n,
            "n_val": self.data.x_val.shape().0,
            "features": d,
            "classes": self.data.classes,
            "hypergradient": hypergradient,
            "outer_loss": outer_loss,
            "inner_grad_norm": inner_grad_norm,
            "newton_steps": newton_steps,
            "oracle_counts": p.counts(),
            "time_s": start.elapsed().as_secs_f64(),
        });
        println!("{out}");
        Ok(())
    }
}
