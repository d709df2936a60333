//! `bilevel toy`: the ridge experiment with a closed-form hypergradient, on any backend.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use bilevel_core::algorithms::Hyper;
use bilevel_core::outer::OuterOpt;
use bilevel_core::toy::{ToyConfig, ToyRun};
use bilevel_core::GlmBackend;
use clap::Args;

use bilevel_core::steps::AutoSteps;

use crate::common::{algorithm, on_backend, BackendArgs, CompatArg, HyperArgs, Job};
use crate::run::{describe_steps, start_steps};

/// Flags are snake_case, as in the reference code (`--hessian_q`, `--inner_lr`).
#[derive(Args, Debug)]
#[command(rename_all = "snake_case", allow_negative_numbers = true)]
pub struct ToyArgs {
    /// Algorithm (case-insensitive): stocBiO, AID-CG, AID-FP, reverse, HOAG, BSA, TTSA, SOBA, SABA, SRBA, MA-SOBA, SUSTAIN, MRBO, AmIGO.
    #[arg(long, default_value = "stocBiO")]
    alg: String,
    /// stocBiO's version: the paper's, or the reference code's (v1: its published figures).
    #[arg(long, value_enum, default_value = "paper", ignore_case = true)]
    compat: CompatArg,
    #[command(flatten)]
    backend: BackendArgs,
    #[command(flatten)]
    hyper: HyperArgs,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Outer iterations.
    #[arg(long, default_value_t = 50)]
    epochs: usize,
    #[arg(long, default_value_t = 500)]
    n_train: usize,
    #[arg(long, default_value_t = 500)]
    n_val: usize,
    #[arg(long, default_value_t = 40)]
    features: usize,
    #[arg(long, default_value_t = 0.5)]
    noise: f64,
    /// μ ≥ 0 of an outer penalty on the hyperparameters: the validation objective becomes
    /// f(w, λ) = val_loss(w) + (μ/2)‖λ‖², so the hypergradient gains the term μλ (0: none).
    #[arg(long, default_value_t = 0.0)]
    outer_penalty: f64,
    /// Also write the estimated and exact hypergradient vectors in every record.
    #[arg(long)]
    record_vectors: bool,
    /// Write one JSON object per line per outer iteration here (flushed as it goes).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// How much smaller the toy's default outer step is for the joint methods (SOBA, SABA, SRBA) than
/// for the double-loop ones.
const JOINT_OUTER_SLOWDOWN: f64 = 25.0;

/// The toy's defaults: T = Q = 10, β = 50 (SOBA, SABA, SRBA: 2), batches of 64; α and η are chosen from
/// the data unless given (the α = η = 0.5 here only fill the settings until the first estimate).
const DEFAULTS: Hyper = Hyper { t: 10, q: 10, eta: 0.5, alpha: 0.5, beta: 50.0, batch_size: 64, val_batch_size: 64 };

pub fn run(args: ToyArgs) -> Result<()> {
    let alg = algorithm(&args.alg, args.compat)?;
    let mut hyper = args.hyper.hyper(DEFAULTS);
    if args.hyper.outer_lr_auto() && alg.is_joint() {
        // The joint methods move y, v and x together by one step each: x must move slowly enough for v
        // to track −H⁻¹∇f. At the double-loop methods' β the joint iteration goes unstable
        // once the noise features' penalties e^λ make the inner problem ill-conditioned.
        hyper.beta = DEFAULTS.beta / JOINT_OUTER_SLOWDOWN;
    }
    let auto = args.hyper.auto_steps(true, alg.is_stochastic().then_some(hyper.batch_size));
    let config = ToyConfig {
        alg,
        hyper,
        opt: OuterOpt::Sgd { momentum: 0.0 },
        seed: args.seed,
        epochs: args.epochs,
        n_train: args.n_train,
        n_val: args.n_val,
        features: args.features,
        noise: args.noise,
        outer_penalty: args.outer_penalty,
        record_vectors: args.record_vectors,
    };
    config.validate()?;
    let out = match &args.out {
        Some(path) => Some(BufWriter::new(File::create(path).with_context(|| format!("cannot create {}", path.display()))?)),
        None => None,
    };
    on_backend(&args.backend, Toy { config, auto, explicit_steps: args.hyper.explicit_steps(), out })
}

struct Toy {
    config: ToyConfig,
    auto: AutoSteps,
    explicit_steps: Vec<(&'static str, f64)>,
    out: Option<BufWriter<File>>,
}

impl Job for Toy {
    fn run<B: GlmBackend + 'static>(mut self, be: &B) -> Result<()> {
        let c = &self.config;
        eprintln!("toy: {} on {} ({} epochs, d = {}, n = {}, m = {})", c.alg, be.describe(), c.epochs, c.features, c.n_train, c.n_val);
        let mut run = ToyRun::new(be, self.config)?;
        start_steps(&mut run.outer, self.auto, &self.explicit_steps)?;
        let start = Instant::now();
        let now = move || start.elapsed().as_secs_f64();
        while !run.done() {
            let record = pollster::block_on(run.step(&now))?;
            if let Some(choice) = run.outer.steps.filter(|c| c.iter == 0 && record.iter == 1) {
                eprintln!("{}", describe_steps(&self.auto, &choice));
            }
            if let Some(w) = self.out.as_mut() {
                writeln!(w, "{}", serde_json::to_string(&record)?)?;
                w.flush()?;
            }
            println!(
                "iter {:>4}  time {:>8.4}s  outer_loss {:.6}  (exact {:.6})  hypergrad_rel_err {:.3e}",
                record.iter, record.time_s, record.outer_loss, record.exact_outer_loss, record.hypergrad_rel_err
            );
        }
        Ok(())
    }
}
