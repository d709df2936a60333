//! `bilevel toy`: the ridge experiment on the CPU (f64 reference) or GPU backend.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use bilevel_core::algorithms::{AlgKind, Hyper};
use bilevel_core::cpu::CpuBackend;
use bilevel_core::gpu::{GpuBackend, GpuOptions};
use bilevel_core::outer::OuterOpt;
use bilevel_core::toy::{ToyConfig, ToyRun};
use bilevel_core::Backend;
use clap::{Args, ValueEnum};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum BackendKind {
    Cpu,
    Gpu,
}

/// Flags are snake_case, as in the reference code (`--hessian_q`, `--inner_lr`).
#[derive(Args, Debug)]
#[command(rename_all = "snake_case", allow_negative_numbers = true)]
pub struct ToyArgs {
    /// stocBiO or AID-CG (case-insensitive).
    #[arg(long, default_value = "stocBiO")]
    alg: String,
    #[arg(long, value_enum, default_value = "cpu", ignore_case = true)]
    backend: BackendKind,
    /// GPU adapter to use: first whose name contains this (e.g. llvmpipe).
    #[arg(long)]
    adapter: Option<String>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Outer iterations.
    #[arg(long, default_value_t = 50)]
    epochs: usize,
    /// T: inner steps per outer iteration.
    #[arg(long = "T", default_value_t = 10)]
    t: usize,
    /// Q: Neumann terms (stocBiO) or CG iterations (AID-CG).
    #[arg(long, default_value_t = 10)]
    hessian_q: usize,
    /// η: Neumann step size.
    #[arg(long, default_value_t = 0.5)]
    eta: f64,
    /// α: inner step size.
    #[arg(long, default_value_t = 0.5)]
    inner_lr: f64,
    /// β: outer step size.
    #[arg(long, default_value_t = 50.0)]
    outer_lr: f64,
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Validation mini-batch (defaults to --batch_size).
    #[arg(long)]
    val_batch_size: Option<usize>,
    #[arg(long, default_value_t = 500)]
    n_train: usize,
    #[arg(long, default_value_t = 500)]
    n_val: usize,
    #[arg(long, default_value_t = 40)]
    features: usize,
    #[arg(long, default_value_t = 0.5)]
    noise: f64,
    /// Also write the estimated and exact hypergradient vectors in every record.
    #[arg(long)]
    record_vectors: bool,
    /// Write one JSON object per line per outer iteration here (flushed as it goes).
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn run(args: ToyArgs) -> Result<()> {
    let alg: AlgKind = args.alg.parse()?;
    let config = ToyConfig {
        alg,
        hyper: Hyper {
            t: args.t,
            q: args.hessian_q,
            eta: args.eta,
            alpha: args.inner_lr,
            beta: args.outer_lr,
            batch_size: args.batch_size,
            val_batch_size: args.val_batch_size.unwrap_or(args.batch_size),
        },
        opt: OuterOpt::Sgd { momentum: 0.0 },
        seed: args.seed,
        epochs: args.epochs,
        n_train: args.n_train,
        n_val: args.n_val,
        features: args.features,
        noise: args.noise,
        record_vectors: args.record_vectors,
    };
    config.validate()?;
    let mut out = match &args.out {
        Some(path) => Some(BufWriter::new(File::create(path).with_context(|| format!("cannot create {}", path.display()))?)),
        None => None,
    };
    match args.backend {
        BackendKind::Cpu => drive(&CpuBackend::<f64>::new(), config, &mut out),
        BackendKind::Gpu => {
            let gpu = pollster::block_on(GpuBackend::new(&GpuOptions { adapter: args.adapter.clone() }))?;
            drive(&gpu, config, &mut out)
        }
    }
}

fn drive<B: Backend + 'static>(be: &B, config: ToyConfig, out: &mut Option<BufWriter<File>>) -> Result<()> {
    eprintln!(
        "toy: {} on {} ({} epochs, d = {}, n = {}, m = {})",
        config.alg,
        be.describe(),
        config.epochs,
        config.features,
        config.n_train,
        config.n_val
    );
    let mut run = ToyRun::new(be, config)?;
    let start = Instant::now();
    let now = move || start.elapsed().as_secs_f64();
    while !run.done() {
        let record = pollster::block_on(run.step(&now))?;
        let line = serde_json::to_string(&record)?;
        if let Some(w) = out.as_mut() {
            writeln!(w, "{line}")?;
            w.flush()?;
        }
        println!(
            "iter {:>4}  time {:>8.4}s  outer_loss {:.6}  (exact {:.6})  hypergrad_rel_err {:.3e}",
            record.iter, record.time_s, record.outer_loss, record.exact_outer_loss, record.hypergrad_rel_err
        );
    }
    Ok(())
}
