//! The real-data runs (`hyperclean`, `l2reg`, `ijcnn1`): the flags they share with the reference
//! code, and one driver that runs an [`Experiment`] on any backend, streaming a JSON line per
//! outer iteration to disk as it goes, with a progress bar and a final summary line.
//!
//! A hyper-cleaning results file holds, in order: `{"baselines": true, "uniform_test_acc": …,
//! "clean_test_acc": …}` (unless `--no_baselines`), the records, `{"downweighted": [...]}` (the
//! [`DOWNWEIGHTED`] lowest-weight training samples with their images), and the summary.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use bilevel_core::algorithms::{AlgKind, Hyper};
use bilevel_core::experiment::{downweighted, Baselines, Event, Experiment, Plan, Record, Run};
use bilevel_core::outer::{OuterLoop, OuterOpt};
use bilevel_core::problems::Problem;
use bilevel_core::sampler::Batching;
use bilevel_core::steps::{unstable_step_warning, AutoSteps};
use bilevel_core::{Backend, GlmBackend};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use crate::common::{algorithm, BackendArgs, BatchesArg, CompatArg, HyperArgs, Job};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum OptArg {
    Sgd,
    Adam,
}

/// Flags shared by the real-data runs (named as in the reference code).
#[derive(Args, Debug, Clone)]
#[command(rename_all = "snake_case")]
pub struct RunArgs {
    /// stocBiO, AID-FP, AID-CG, reverse, HOAG, BSA, TTSA, SOBA, SABA, SRBA, MA-SOBA, SUSTAIN, MRBO, AmIGO (case-insensitive).
    #[arg(long, default_value = "stocBiO")]
    pub alg: String,
    /// stocBiO's version: the paper's, or the reference code's (v1: its published figures).
    #[arg(long, value_enum, default_value = "paper", ignore_case = true)]
    pub compat: CompatArg,
    /// How mini-batches are drawn: independent uniform draws (the paper's), or Benchopt's
    /// slices (the rows shuffled once, fixed consecutive batches, a new batch order each epoch).
    #[arg(long, value_enum, default_value = "independent", ignore_case = true)]
    pub batches: BatchesArg,
    /// Outer iterations.
    #[arg(long)]
    pub epochs: Option<usize>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Outer optimiser [default: adam for ijcnn1, sgd elsewhere].
    #[arg(long, value_enum, ignore_case = true)]
    pub outer_opt: Option<OptArg>,
    /// Outer SGD momentum (the reference's --outer_mu).
    #[arg(long, default_value_t = 0.0)]
    pub outer_mu: f64,
    /// Write one JSON object per line per outer iteration here (flushed as it goes).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Stop once this much solver time (seconds, evaluation excluded) has been spent.
    #[arg(long)]
    pub time_budget: Option<f64>,
    /// The reference's output folder and run name: accepted for its commands, not used (use --out).
    #[arg(long, hide = true)]
    pub save_folder: Option<String>,
    #[arg(long, hide = true)]
    pub model_name: Option<String>,
    #[command(flatten)]
    pub backend: BackendArgs,
    #[command(flatten)]
    pub hyper: HyperArgs,
}

impl RunArgs {
    /// The outer optimiser, or the command's `default`.
    pub fn opt(&self, default: OptArg) -> OuterOpt {
        match self.outer_opt.unwrap_or(default) {
            OptArg::Sgd => OuterOpt::Sgd { momentum: self.outer_mu },
            OptArg::Adam => OuterOpt::adam(),
        }
    }
    pub fn alg(&self) -> Result<AlgKind> {
        algorithm(&self.alg, self.compat)
    }
}

/// A run ready to go on any backend.
pub struct Drive {
    pub name: String,
    pub exp: Experiment,
    pub alg: AlgKind,
    pub hyper: Hyper,
    pub opt: OuterOpt,
    pub epochs: usize,
    pub seed: u64,
    pub out: Option<PathBuf>,
    pub time_budget: Option<f64>,
    pub batching: Batching,
    /// Data-chosen α and η (see `bilevel_core::steps`).
    pub auto: AutoSteps,
    /// α and η given explicitly, checked against the stable range at the start.
    pub explicit_steps: Vec<(&'static str, f64)>,
    /// Hyper-cleaning: compute the uniform-weight and clean-data [`Baselines`] first.
    pub baselines: bool,
}

/// How many of the most down-weighted training samples a hyper-cleaning run writes.
pub const DOWNWEIGHTED: usize = 16;

impl Job for Drive {
    fn run<B: GlmBackend + 'static>(self, be: &B) -> Result<()> {
        let mut out = match &self.out {
            Some(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
                }
                Some(BufWriter::new(File::create(path).with_context(|| format!("cannot create {}", path.display()))?))
            }
            None => None,
        };
        let mut write = |line: String| -> Result<()> {
            if let Some(w) = out.as_mut() {
                writeln!(w, "{line}")?;
                w.flush()?;
            }
            Ok(())
        };
        let length = match self.time_budget {
            Some(b) if self.epochs == usize::MAX => format!("{b} s of solver time"),
            Some(b) => format!("{} outer iterations or {b} s", self.epochs),
            None => format!("{} outer iterations", self.epochs),
        };
        eprintln!("{}: {} on {} ({length})", self.name, self.alg, be.describe());
        // Slices need randomly ordered rows: shuffle the data once (seeded), as Benchopt does.
        let exp = if self.batching == Batching::Slices { self.exp.shuffled(self.seed) } else { self.exp };
        let mut run = Run::new(be, &exp, self.alg, self.hyper.clone(), self.opt, self.seed)?;
        run.outer.rng.set_batching(self.batching);
        start_steps(&mut run.outer, self.auto, &self.explicit_steps)?;
        // Evaluation, outside the solver's time (Run times only its steps).
        let baselines = match self.baselines && exp.corrupted.is_some() {
            true => {
                let t0 = Instant::now();
                eprintln!("baselines: the inner problem solved with uniform weights, and with the clean samples only…");
                let b = pollster::block_on(run.baselines())?;
                eprintln!(
                    "baselines: uniform weights {:.2} %, clean data {:.2} % test accuracy ({:.1} s, not counted in time_s)",
                    100.0 * b.uniform_test_acc,
                    100.0 * b.clean_test_acc,
                    t0.elapsed().as_secs_f64()
                );
                write(json!({"baselines": true, "uniform_test_acc": b.uniform_test_acc, "clean_test_acc": b.clean_test_acc}).to_string())?;
                Some(b)
            }
            false => None,
        };
        let start = Instant::now();
        let now = move || start.elapsed().as_secs_f64();
        // Progress in outer iterations, or in solver seconds when only the time budget ends the run.
        let by_time = self.time_budget.filter(|_| self.epochs == usize::MAX);
        let (len, template) = match by_time {
            Some(b) => ((b * 10.0).ceil() as u64, "{bar:30} {msg} [{elapsed_precise}]"),
            None => (self.epochs as u64, "{bar:30} {pos}/{len} {msg} [{elapsed_precise}]"),
        };
        let bar = ProgressBar::new(len);
        bar.set_style(ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()));
        // The first iterations all recorded, later ones with evaluation under a tenth of the wall clock.
        let plan = Plan { time_budget: self.time_budget, ..Plan::epochs(self.epochs) };
        let mut steps_shown = false;
        let mut on = |event: Event<'_>| -> bilevel_core::Result<()> {
            match event {
                Event::Record(record) => {
                    let line = serde_json::to_string(record).map_err(|e| bilevel_core::Error::Output(e.to_string()))?;
                    write(line).map_err(|e| bilevel_core::Error::Output(format!("{e:#}")))?;
                    bar.set_message(format!("iter {} test loss {:.4} acc {:.2}%", record.iter, record.test_loss, 100.0 * record.test_acc));
                }
                Event::Steps(choice) if !steps_shown => {
                    bar.suspend(|| eprintln!("{}", describe_steps(&self.auto, &choice)));
                    steps_shown = true;
                }
                Event::Steps(_) => {}
                Event::Iteration { elapsed, .. } => match by_time {
                    Some(_) => bar.set_position(((elapsed * 10.0) as u64).min(len)),
                    None => bar.inc(1),
                },
            }
            Ok(())
        };
        // A failure keeps everything written so far and ends with one error line.
        let last = match pollster::block_on(run.drive(&plan, &now, &mut on)) {
            Ok(last) => last,
            Err(e) => {
                bar.abandon();
                return Err(e.into());
            }
        };
        bar.finish();
        if exp.true_labels.is_some() {
            write(json!({ "downweighted": downweighted(&exp, &run.lambda, DOWNWEIGHTED)? }).to_string())?;
        }
        let summary = json!({
            "summary": true,
            "name": self.name,
            "alg": self.alg.name(),
            "backend": be.describe(),
            "settings": run.outer.hyper,
            "batches": self.batching,
            "outer_iterations": last.iter,
            "time_s": last.time_s,
            "test_loss": last.test_loss,
            "test_acc": last.test_acc,
            "val_loss": last.val_loss,
            "precision": last.precision,
            "recall": last.recall,
            "oracle_counts": last.oracle_counts,
        });
        write(summary.to_string())?;
        eprint!("{}", human_summary(&self.name, self.alg.name(), &last, baselines.as_ref()));
        println!("{summary}");
        Ok(())
    }
}

/// The printed line saying which steps the data chose, and from what.
pub fn describe_steps(auto: &AutoSteps, choice: &bilevel_core::steps::StepChoice) -> String {
    let rows = match auto.batch {
        Some(b) => format!("the largest over batches of {b} rows"),
        None => "all training rows".to_string(),
    };
    let mut chosen = Vec::new();
    if auto.alpha {
        chosen.push(format!("inner_lr α = {:.4e}", choice.alpha));
    }
    if auto.eta {
        chosen.push(format!("eta η = {:.4e}", choice.eta));
    }
    format!(
        "steps from the data: the inner Hessian's top eigenvalue L̂ = {:.4e} ({rows}, power iteration), so {} ({} / L̂, re-estimated every {} outer iterations)",
        choice.lipschitz,
        chosen.join(", "),
        auto.fraction,
        auto.every
    )
}

/// Warns, one line each, about explicitly given steps above the stable range at the starting
/// point, then hands the data-chosen ones to the run.
pub fn start_steps<'a, B: Backend + 'static, P: Problem<B> + 'a>(
    outer: &mut OuterLoop<'a, B, P>,
    auto: AutoSteps,
    explicit: &[(&'static str, f64)],
) -> Result<()> {
    if !explicit.is_empty() {
        let l = pollster::block_on(outer.curvature(auto.batch, false))?;
        for (name, step) in explicit {
            if let Some(warning) = unstable_step_warning(name, *step, l) {
                eprintln!("{warning}");
            }
        }
    }
    outer.set_auto_steps(auto);
    Ok(())
}

/// The run's outcome in a few lines for a person: test accuracy and time, and for hyper-cleaning
/// the gain over training without cleaning, the distance to the clean-data bound and how well
/// "weight < ½" finds the corrupted samples.
fn human_summary(name: &str, alg: &str, last: &Record, baselines: Option<&Baselines>) -> String {
    let pct = |a: f64| 100.0 * a;
    let mut s = format!(
        "{name}: {alg} reached {:.2} % test accuracy after {} outer iterations, {:.1} s of solver time\n",
        pct(last.test_acc),
        last.iter,
        last.time_s
    );
    if let Some(b) = baselines {
        s += &format!(
            "  {:+.2} points over uniform weights ({:.2} %), {:.2} points below the clean-data bound ({:.2} %)\n",
            pct(last.test_acc - b.uniform_test_acc),
            pct(b.uniform_test_acc),
            pct(b.clean_test_acc - last.test_acc),
            pct(b.clean_test_acc)
        );
    }
    if let (Some(p), Some(r)) = (last.precision, last.recall) {
        s += &format!("  corrupted-label detector (weight σ(λ_i) < ½): precision {:.1} %, recall {:.1} %\n", pct(p), pct(r));
    }
    s
}
