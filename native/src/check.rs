//! `bilevel check`: the oracle checker (`bilevel_core::check`) on the CLI's problems — ridge,
//! logreg, multilogreg on sparse data, hyper-cleaning with per-sample weights — at small seeded
//! synthetic sizes of their kinds and a seeded random point, on any backend.

use std::io::Write;

use anyhow::{bail, Result};
use bilevel_core::backend::LossKind;
use bilevel_core::check::{check_oracles_with, CheckOptions};
use bilevel_core::problems::glm::{Glm, HyperKind};
use bilevel_core::problems::synthetic::SyntheticSpec;
use bilevel_core::problems::Problem;
use bilevel_core::sampler::Sampler;
use bilevel_core::{Error, GlmBackend};
use clap::{Args, ValueEnum};

use crate::common::{on_backend, BackendArgs, BackendKind, Job};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CheckProblem {
    All,
    Ridge,
    Logreg,
    Multilogreg,
    Hyperclean,
}

#[derive(Args, Debug)]
#[command(rename_all = "snake_case", allow_negative_numbers = true)]
pub struct CheckArgs {
    /// Which problem: ridge, logreg, multilogreg (sparse features), hyperclean (per-sample
    /// weights), or all.
    #[arg(long, value_enum, default_value = "all", ignore_case = true)]
    problem: CheckProblem,
    /// Seeds the data, the point, the directions and the mini-batch.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The finite-difference step ε [default: 1e-5 on cpu (f64), 3e-2 on the f32 backends].
    #[arg(long)]
    fd_step: Option<f64>,
    /// The largest relative error that passes [default: 1e-6 on cpu (f64), 5e-3 on the f32
    /// backends].
    #[arg(long)]
    tolerance: Option<f64>,
    /// Rows of the training and the validation mini-batch also checked (0: all rows only).
    #[arg(long, default_value_t = 10)]
    batch_size: usize,
    /// μ of an outer penalty (μ/2)‖λ‖² in f, so that f depends on λ and its x-gradient is
    /// checked against something non-zero (0: f as the experiments run it).
    #[arg(long, default_value_t = 0.1)]
    outer_penalty: f64,
    /// Print each report as one JSON object per line instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    backend: BackendArgs,
}

/// A problem's kind at a small size: the data's loss, classes and density, and its
/// hyperparameters.
struct Case {
    name: &'static str,
    spec: SyntheticSpec,
    hyper: HyperKind,
}

fn cases(which: CheckProblem, seed: u64) -> Vec<Case> {
    let spec = |features, classes, loss, nnz_per_row, bias, offset: u64| SyntheticSpec {
        n_train: 40,
        n_val: 30,
        features,
        classes,
        loss,
        nnz_per_row,
        bias,
        seed: seed.wrapping_add(offset),
    };
    let all = [
        Case { name: "ridge", spec: spec(12, 1, LossKind::Squared, None, false, 1), hyper: HyperKind::FeatureRidge { scale: 1.0 } },
        Case { name: "logreg", spec: spec(12, 1, LossKind::Logistic, None, false, 2), hyper: HyperKind::FeatureRidge { scale: 1.0 } },
        Case {
            name: "multilogreg",
            spec: spec(30, 5, LossKind::Softmax, Some(4), false, 3),
            hyper: HyperKind::FeatureRidge { scale: 1.0 },
        },
        Case { name: "hyperclean", spec: spec(12, 4, LossKind::Softmax, None, true, 4), hyper: HyperKind::SampleWeights { rho: 0.001 } },
    ];
    all.into_iter().filter(|c| which == CheckProblem::All || c.name == format!("{which:?}").to_lowercase()).collect()
}

struct CheckJob {
    cases: Vec<Case>,
    options: CheckOptions,
    outer_penalty: f64,
    seed: u64,
    json: bool,
}

impl Job for CheckJob {
    fn run<B: GlmBackend + 'static>(self, be: &B) -> Result<()> {
        let mut failed = Vec::new();
        // Written with `?`, so a closed pipe (`| head`) ends the command with an error line.
        let mut out = std::io::stdout().lock();
        for case in &self.cases {
            let data = case.spec.generate();
            let p = Glm::new(be, &data, case.hyper).with_outer_penalty(self.outer_penalty);
            let mut s = Sampler::new(self.seed ^ 0xc4ec);
            let x: Vec<f64> = (0..p.dim_x()).map(|_| 0.5 * s.normal()).collect();
            let y: Vec<f64> = (0..p.dim_y()).map(|_| s.normal()).collect();
            let report = pollster::block_on(check_oracles_with(&p, be, &x, &y, &self.options))?;
            if self.json {
                let mut value = serde_json::to_value(&report)?;
                value["problem"] = case.name.into();
                value["passed"] = report.passed().into();
                writeln!(out, "{value}")?;
            } else {
                let (n, m) = (p.n_train(), p.n_val());
                writeln!(
                    out,
                    "{}: {n} training and {m} validation rows, {} features, {} output column(s)",
                    case.name,
                    p.features(),
                    p.classes()
                )?;
                writeln!(out, "{report}\n")?;
            }
            let failures = report.failures().count();
            if failures > 0 {
                failed.push(format!("{} ({failures} of {})", case.name, report.checks.len()));
            }
        }
        if !failed.is_empty() {
            bail!("oracle checks failed: {}", failed.join(", "));
        }
        Ok(())
    }
}

pub fn run(args: CheckArgs) -> Result<()> {
    if !(args.outer_penalty.is_finite() && args.outer_penalty >= 0.0) {
        bail!("--outer_penalty must be finite and non-negative, got {}", args.outer_penalty);
    }
    let base = match args.backend.kind() {
        BackendKind::Cpu => CheckOptions::default(),
        _ => CheckOptions::for_f32(),
    };
    let options = CheckOptions {
        fd_step: args.fd_step.unwrap_or(base.fd_step),
        tolerance: args.tolerance.unwrap_or(base.tolerance),
        seed: args.seed,
        batch: (args.batch_size > 0).then_some(args.batch_size),
        ..base
    };
    // Refused before any backend is opened; the settings the flags can get wrong are named
    // as the flags are.
    if let Err(Error::InvalidArgument(setting)) = options.validate() {
        bail!("--{setting}");
    }
    let job =
        CheckJob { cases: cases(args.problem, args.seed), options, outer_penalty: args.outer_penalty, seed: args.seed, json: args.json };
    on_backend(&args.backend, job)
}
