//! Flags and plumbing shared by the subcommands: the algorithm settings (named as in the
//! reference code), the backend choice, and running generic work on the chosen backend.

use anyhow::Result;
use bilevel_core::algorithms::stocbio::Reference;
use bilevel_core::algorithms::{AlgKind, Hyper};
use bilevel_core::cpu::{CpuBackend, Threads};
use bilevel_core::gpu::{GpuBackend, GpuOptions};
use bilevel_core::problems::RegScale;
use bilevel_core::sampler::Batching;
use bilevel_core::steps::AutoSteps;
use bilevel_core::GlmBackend;
use clap::{Args, ValueEnum};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BackendKind {
    /// The CPU reference, in f64.
    Cpu,
    /// The CPU backend in f32 (the GPU's precision, twice the speed).
    Cpu32,
    /// cpu32 with its fused kernels' AVX-512 forms off (the AVX2 ones run): for comparing the
    /// two on a CPU that has both.
    #[value(name = "cpu32-avx2")]
    Cpu32Avx2,
    /// cpu32 on the calling thread alone (its AVX2 sparse kernel splits no call with a partner
    /// thread): for comparing one thread with two.
    #[value(name = "cpu32-1t")]
    Cpu32OneThread,
    /// wgpu: Vulkan/Metal/DX12 (lavapipe on machines without a GPU).
    Gpu,
}

/// Where to run.
#[derive(Args, Debug, Clone)]
#[command(rename_all = "snake_case")]
pub struct BackendArgs {
    /// Where to run [default: cpu32 for the real-data runs (hyperclean, l2reg, ijcnn1), cpu
    /// (the f64 reference) elsewhere].
    #[arg(long, value_enum, ignore_case = true)]
    pub backend: Option<BackendKind>,
    /// The command's backend when --backend is not given.
    #[arg(skip = BackendKind::Cpu)]
    pub default: BackendKind,
    /// GPU adapter to use: the first whose name contains this (e.g. llvmpipe).
    #[arg(long)]
    pub adapter: Option<String>,
}

impl BackendArgs {
    /// The backend chosen, or the command's default.
    pub fn kind(&self) -> BackendKind {
        self.backend.unwrap_or(self.default)
    }
}

/// A step size given on the command line: a number, or `auto` (chosen from the data).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum StepArg {
    Auto,
    Value(f64),
}

impl std::str::FromStr for StepArg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.eq_ignore_ascii_case("auto") {
            return Ok(StepArg::Auto);
        }
        s.parse::<f64>().map(StepArg::Value).map_err(|_| format!("expected a number or `auto`, got {s:?}"))
    }
}

impl StepArg {
    fn value(self) -> Option<f64> {
        match self {
            StepArg::Auto => None,
            StepArg::Value(v) => Some(v),
        }
    }
}

/// Algorithm settings; unset ones take the subcommand's defaults.
#[derive(Args, Debug, Clone)]
#[command(rename_all = "snake_case")]
pub struct HyperArgs {
    /// T: inner steps per outer iteration.
    #[arg(long = "T", alias = "iterations")]
    pub t: Option<usize>,
    /// Q: Neumann terms (stocBiO, BSA, TTSA); K: CG/fixed-point/backprop steps (AID-*, reverse, HOAG).
    #[arg(long)]
    pub hessian_q: Option<usize>,
    /// η: Neumann step size, or `auto` (the default where the command says so): half of 1/L̂,
    /// L̂ the inner Hessian's top eigenvalue estimated by power iteration and re-estimated as
    /// the hyperparameters move.
    #[arg(long, value_parser = clap::value_parser!(StepArg))]
    pub eta: Option<StepArg>,
    /// α: inner step size, or `auto` (as --eta).
    #[arg(long, value_parser = clap::value_parser!(StepArg))]
    pub inner_lr: Option<StepArg>,
    /// β: outer step size, or `auto` (the default where the command says so).
    #[arg(long, value_parser = clap::value_parser!(StepArg))]
    pub outer_lr: Option<StepArg>,
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Validation mini-batch (defaults to --batch_size).
    #[arg(long)]
    pub val_batch_size: Option<usize>,
}

impl HyperArgs {
    /// The settings, with `defaults` where a flag is unset or `auto` (an `auto` step is
    /// replaced once the run has estimated it: see [`HyperArgs::auto_steps`]).
    pub fn hyper(&self, defaults: Hyper) -> Hyper {
        let batch_size = self.batch_size.unwrap_or(defaults.batch_size);
        Hyper {
            t: self.t.unwrap_or(defaults.t),
            q: self.hessian_q.unwrap_or(defaults.q),
            eta: self.eta.and_then(StepArg::value).unwrap_or(defaults.eta),
            alpha: self.inner_lr.and_then(StepArg::value).unwrap_or(defaults.alpha),
            beta: self.outer_lr.and_then(StepArg::value).unwrap_or(defaults.beta),
            batch_size,
            val_batch_size: self.val_batch_size.unwrap_or(if self.batch_size.is_some() { batch_size } else { defaults.val_batch_size }),
        }
    }

    /// Which of α and η the data chooses: those set to `auto`, and those unset when
    /// `auto_by_default`. `batch`: the rows the algorithm's steps read (see [`AutoSteps`]).
    pub fn auto_steps(&self, auto_by_default: bool, batch: Option<usize>) -> AutoSteps {
        let auto = |a: Option<StepArg>| match a {
            None => auto_by_default,
            Some(a) => a == StepArg::Auto,
        };
        AutoSteps { alpha: auto(self.inner_lr), eta: auto(self.eta), fraction: AutoSteps::FRACTION, every: AutoSteps::EVERY, batch }
    }

    /// The explicitly given α and η, for the warning when one is above the stable range.
    pub fn explicit_steps(&self) -> Vec<(&'static str, f64)> {
        [("inner_lr", self.inner_lr), ("eta", self.eta)].into_iter().filter_map(|(n, a)| Some((n, a?.value()?))).collect()
    }

    /// Whether β was left to the command (unset or `auto`).
    pub fn outer_lr_auto(&self) -> bool {
        self.outer_lr.is_none_or(|a| a == StepArg::Auto)
    }

    /// Refuses `auto` where a command has no data-chosen steps.
    pub fn refuse_auto(&self, command: &str) -> Result<()> {
        for (name, a) in [("eta", self.eta), ("inner_lr", self.inner_lr), ("outer_lr", self.outer_lr)] {
            if a == Some(StepArg::Auto) {
                anyhow::bail!("--{name} auto is not available in `bilevel {command}`: give a number");
            }
        }
        Ok(())
    }
}

/// The multilogreg penalty's scaling (`--reg_scale`): the paper's sum, or the reference's mean.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum RegScaleArg {
    Sum,
    Mean,
}

impl From<RegScaleArg> for RegScale {
    fn from(a: RegScaleArg) -> RegScale {
        match a {
            RegScaleArg::Sum => RegScale::Sum,
            RegScaleArg::Mean => RegScale::Mean,
        }
    }
}

/// stocBiO's version (`--compat`): the paper's (default) or the reference code's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum CompatArg {
    #[default]
    Paper,
    V1,
    Head,
}

impl CompatArg {
    /// The reference code's version named, or `None` for the paper's algorithm.
    fn reference(self) -> Option<Reference> {
        match self {
            CompatArg::Paper => None,
            CompatArg::V1 => Some(Reference::V1),
            CompatArg::Head => Some(Reference::Head),
        }
    }
}

/// How mini-batches are drawn (`--batches`; see `bilevel_core::sampler::Batching`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum BatchesArg {
    /// Independent uniform draws (the paper's sampling).
    #[default]
    Independent,
    /// Benchopt's: rows shuffled once, fixed consecutive batches, a fresh batch order each epoch.
    Slices,
}

impl From<BatchesArg> for Batching {
    fn from(a: BatchesArg) -> Self {
        match a {
            BatchesArg::Independent => Batching::Independent,
            BatchesArg::Slices => Batching::Slices,
        }
    }
}

/// `--alg NAME [--compat ...]` as an algorithm.
pub fn algorithm(name: &str, compat: CompatArg) -> Result<AlgKind> {
    let alg: AlgKind = name.parse()?;
    Ok(match compat.reference() {
        None => alg,
        Some(reference) => alg.with_reference(reference)?,
    })
}

/// Work that runs on any backend.
pub trait Job {
    fn run<B: GlmBackend + 'static>(self, be: &B) -> Result<()>;
}

/// Opens the chosen backend and runs `job` on it.
pub fn on_backend(args: &BackendArgs, job: impl Job) -> Result<()> {
    match args.kind() {
        BackendKind::Cpu => job.run(&CpuBackend::<f64>::new()),
        BackendKind::Cpu32 => job.run(&CpuBackend::<f32>::new()),
        BackendKind::Cpu32Avx2 => job.run(&CpuBackend::<f32>::new().without_avx512()),
        BackendKind::Cpu32OneThread => job.run(&CpuBackend::<f32>::new().threads(Threads::One)),
        BackendKind::Gpu => {
            let gpu = pollster::block_on(GpuBackend::new(&GpuOptions { adapter: args.adapter.clone() }))?;
            job.run(&gpu)
        }
    }
}
