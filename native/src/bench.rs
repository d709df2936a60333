//! `bilevel bench`: per-outer-iteration time and oracle throughput at the real problems' shapes
//! (synthetic data of those shapes, or with `--real` the data sets themselves), on each backend,
//! written as JSON lines; with `--setting benchopt`, the Benchopt bilevel benchmark's MNIST
//! cleaning and ijcnn1 cases on the real data, to set beside benchmark_bilevel's StocBiO timed on
//! the same machine. A benchmark, not a test: it asserts nothing and reports what it measured,
//! with the machine and the backend.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use bilevel_core::algorithms::{AlgKind, Hyper};
use bilevel_core::backend::{HostMatrix, LossKind};
use bilevel_core::outer::{OuterLoop, OuterOpt};
use bilevel_core::problems::glm::{Glm, GlmData, HyperKind};
use bilevel_core::problems::synthetic::SyntheticSpec;
use bilevel_core::sampler::Batching;
use bilevel_core::GlmBackend;
use clap::{Args, ValueEnum};
use serde_json::json;

use crate::common::{on_backend, BackendArgs, BackendKind, BatchesArg, Job};
use crate::data::DataArgs;
use crate::experiments::{
    hyperclean_benchopt, hyperclean_experiment, ijcnn1_benchopt, ijcnn1_experiment, newsgroups_experiment, BenchoptCleaning,
};
use bilevel_core::problems::RegScale;

#[derive(Args, Debug)]
#[command(rename_all = "snake_case")]
pub struct BenchArgs {
    /// Which problems' settings the cases use.
    #[arg(long, value_enum, default_value = "paper", ignore_case = true)]
    setting: BenchSetting,
    /// Problems: 20news, hyperclean, ijcnn1 (comma-separated; default: all three, with
    /// `--setting benchopt` hyperclean and ijcnn1).
    #[arg(long, value_delimiter = ',')]
    problems: Option<Vec<String>>,
    /// Algorithms (comma-separated; default: stocBiO, AID-CG, AID-FP and reverse, with
    /// `--setting benchopt` stocBiO).
    #[arg(long, value_delimiter = ',')]
    algs: Option<Vec<String>>,
    /// Backends: cpu, cpu32, cpu32-avx2 (cpu32 with AVX-512 off), cpu32-1t (cpu32 on one
    /// thread), gpu (comma-separated).
    #[arg(long, default_value = "cpu32,gpu", value_delimiter = ',')]
    backends: Vec<String>,
    /// Mini-batch drawing, one case each (comma-separated): independent (the paper's uniform
    /// draws; the default) and/or slices (Benchopt's: rows shuffled once, fixed consecutive
    /// batches, a new batch order each epoch; the default with `--setting benchopt`).
    #[arg(long, value_enum, value_delimiter = ',', ignore_case = true)]
    batches: Option<Vec<BatchesArg>>,
    /// Timed outer iterations per case (after 2 warm-up iterations); at least this many, and
    /// more until --min_time seconds have been timed (small problems need thousands).
    #[arg(long, default_value_t = 10)]
    iters: usize,
    /// Keep timing iterations until this many seconds have passed.
    #[arg(long, default_value_t = 2.0)]
    min_time: f64,
    #[arg(long)]
    adapter: Option<String>,
    /// Time the real data sets (20 Newsgroups, MNIST hyper-cleaning with 10 % noise, ijcnn1; read
    /// as the experiments read them) instead of synthetic data of their shapes (always with
    /// `--setting benchopt`).
    #[arg(long)]
    real: bool,
    #[command(flatten)]
    data: DataArgs,
    /// Append one JSON line per case here.
    #[arg(long, default_value = "results/bench.jsonl")]
    out: PathBuf,
}

/// The settings of the benchmark's cases.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BenchSetting {
    /// The reference figures': 20 Newsgroups, MNIST hyper-cleaning (785 features with the bias,
    /// ρ = 0.001) and ijcnn1, on synthetic data of their shapes unless --real.
    Paper,
    /// The Benchopt bilevel benchmark's, on the real data: MNIST cleaning (20,000 + 5,000 random
    /// training images, 784 standardised features, no bias, labels corrupted with probability
    /// 0.5, ρ = 0.2) and ijcnn1 (Benchopt's split: the whole training file, 49,990 rows, for
    /// training and the whole test file, 91,701 rows, for validation); stocBiO, batch 64,
    /// T = Q = 10, Benchopt's batches (slices).
    Benchopt,
}

impl BenchSetting {
    fn name(self) -> &'static str {
        match self {
            BenchSetting::Paper => "paper",
            BenchSetting::Benchopt => "benchopt",
        }
    }
}

/// A problem at its real shape, and the settings the reference figures used.
struct Shape {
    name: &'static str,
    spec: SyntheticSpec,
    hyper_kind: HyperKind,
    /// stocBiO's settings; the full-batch algorithms use T and K = hessian_q from it too.
    hyper: Hyper,
}

/// The Benchopt benchmark's stocBiO settings: batch 64 for every oracle, T = Q = 10 (the steps
/// change the iterates, not the work of an iteration).
const BENCHOPT_STOCBIO: Hyper = Hyper { t: 10, q: 10, eta: 0.5, alpha: 0.1, beta: 0.1, batch_size: 64, val_batch_size: 64 };

/// A problem in the Benchopt setting: its shape (that of the real data), penalty and stocBiO's
/// settings, with a line that says what the case is.
fn benchopt_shape(name: &str) -> Result<(Shape, String)> {
    let spec = |n_train, n_val, features, classes, loss| SyntheticSpec {
        n_train,
        n_val,
        features,
        classes,
        loss,
        nnz_per_row: None,
        bias: false,
        seed: 0,
    };
    let cleaning = BenchoptCleaning::benchmark(0);
    let (shape, about) = match name {
        "hyperclean" => (
            Shape {
                name: "hyperclean",
                spec: spec(cleaning.training_size, cleaning.validation_size, 784, 10, LossKind::Softmax),
                hyper_kind: HyperKind::SampleWeights { rho: cleaning.rho },
                hyper: BENCHOPT_STOCBIO,
            },
            format!(
                "MNIST cleaning, {} + {} random training images, 784 standardised features, no bias, p = 0.5, ρ = {}",
                cleaning.training_size, cleaning.validation_size, cleaning.rho
            ),
        ),
        "ijcnn1" => (
            Shape {
                name: "ijcnn1",
                spec: spec(49_990, 91_701, 22, 1, LossKind::Logistic),
                hyper_kind: HyperKind::FeatureRidge { scale: 1.0 },
                hyper: BENCHOPT_STOCBIO,
            },
            "ijcnn1, Benchopt's split: the training file for training, the whole test file for validation, one penalty per feature"
                .to_string(),
        ),
        other => bail!("no Benchopt setting for the benchmark problem {other:?} (expected hyperclean or ijcnn1)"),
    };
    let about = format!("{about}; batch {}, T = {}, Q = {}", shape.hyper.batch_size, shape.hyper.t, shape.hyper.q);
    Ok((shape, about))
}

/// A problem's shape and a line that says what the case is, in `setting`.
fn setting_shape(name: &str, setting: BenchSetting) -> Result<(Shape, String)> {
    match setting {
        BenchSetting::Paper => shape(name).map(|s| {
            let about = format!("the paper's setting; stocBiO batch {}, T = {}, Q = {}", s.hyper.batch_size, s.hyper.t, s.hyper.q);
            (s, about)
        }),
        BenchSetting::Benchopt => benchopt_shape(name),
    }
}

fn shape(name: &str) -> Result<Shape> {
    let spec = |n_train, n_val, features, classes, loss, nnz_per_row, bias| SyntheticSpec {
        n_train,
        n_val,
        features,
        classes,
        loss,
        nnz_per_row,
        bias,
        seed: 0,
    };
    Ok(match name {
        // 20 Newsgroups: 5,657 × 130,107 sparse, ~158 non-zeros per row, 20 classes.
        "20news" => Shape {
            name: "20news",
            spec: spec(5657, 5657, 130_107, 20, LossKind::Softmax, Some(158), false),
            // The reference figure's α = β = 100 assume its mean-scaled penalty 1/(2dc) Σ e^λ W².
            hyper_kind: HyperKind::FeatureRidge { scale: 1.0 / (130_107.0 * 20.0) },
            hyper: Hyper { t: 10, q: 10, eta: 0.5, alpha: 100.0, beta: 100.0, batch_size: 1000, val_batch_size: 1000 },
        },
        // MNIST hyper-cleaning: 20,000 × 785 dense (bias included), 10 classes.
        "hyperclean" => Shape {
            name: "hyperclean",
            spec: spec(20_000, 5_000, 784, 10, LossKind::Softmax, None, true),
            hyper_kind: HyperKind::SampleWeights { rho: 0.001 },
            hyper: Hyper { t: 10, q: 10, eta: 0.5, alpha: 0.1, beta: 0.1, batch_size: 64, val_batch_size: 64 },
        },
        // ijcnn1: 49,990 × 22, binary.
        "ijcnn1" => Shape {
            name: "ijcnn1",
            spec: spec(49_990, 49_990, 22, 1, LossKind::Logistic, None, false),
            hyper_kind: HyperKind::FeatureRidge { scale: 1.0 },
            hyper: Hyper { t: 10, q: 10, eta: 0.5, alpha: 0.1, beta: 0.1, batch_size: 64, val_batch_size: 64 },
        },
        other => bail!("unknown benchmark problem {other:?} (expected 20news, hyperclean or ijcnn1)"),
    })
}

/// The real data set behind a benchmark problem, with the same settings as its shape (the
/// hyper-cleaning penalty and 20news's mean-scaled penalty included).
fn real_data(name: &str, setting: BenchSetting, data: &DataArgs) -> Result<GlmData> {
    Ok(match (setting, name) {
        (BenchSetting::Paper, "20news") => newsgroups_experiment(data, 0, RegScale::Mean)?.data,
        (BenchSetting::Paper, "hyperclean") => hyperclean_experiment(data, 0.1, 0, None)?.data,
        (BenchSetting::Paper, "ijcnn1") => ijcnn1_experiment(data, 0)?.data,
        (BenchSetting::Benchopt, "hyperclean") => hyperclean_benchopt(&data.mnist()?, &BenchoptCleaning::benchmark(0))?.data,
        (BenchSetting::Benchopt, "ijcnn1") => ijcnn1_benchopt(data)?,
        (_, other) => bail!("no real data set for {other:?}"),
    })
}

fn backend_kind(name: &str) -> Result<BackendKind> {
    // The `--backend` flag's own names (clap's value enum), so that the two lists cannot drift.
    BackendKind::from_str(name, true).map_err(|_| {
        let names: Vec<String> =
            BackendKind::value_variants().iter().filter_map(|k| Some(k.to_possible_value()?.get_name().to_owned())).collect();
        anyhow::anyhow!("unknown backend {name:?} (expected one of {})", names.join(", "))
    })
}

/// Peak resident memory of this process (Linux), in bytes.
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|kb| kb * 1024)
}

pub fn run(args: BenchArgs) -> Result<()> {
    let benchopt = args.setting == BenchSetting::Benchopt;
    let names = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let problems = args
        .problems
        .clone()
        .unwrap_or_else(|| names(if benchopt { &["hyperclean", "ijcnn1"] } else { &["20news", "hyperclean", "ijcnn1"] }));
    let alg_names =
        args.algs.clone().unwrap_or_else(|| names(if benchopt { &["stocBiO"] } else { &["stocBiO", "AID-CG", "AID-FP", "reverse"] }));
    let batch_modes = args.batches.clone().unwrap_or(vec![if benchopt { BatchesArg::Slices } else { BatchesArg::Independent }]);
    let real = args.real || benchopt;
    let shapes: Vec<(Shape, String)> = problems.iter().map(|p| setting_shape(p, args.setting)).collect::<Result<_>>()?;
    let algs: Vec<AlgKind> = alg_names.iter().map(|a| a.parse()).collect::<Result<_, _>>()?;
    let backends: Vec<BackendKind> = args.backends.iter().map(|b| backend_kind(b)).collect::<Result<_>>()?;
    if args.iters == 0 {
        bail!("--iters must be at least 1");
    }
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&args.out)
        .with_context(|| format!("cannot open {}", args.out.display()))?;
    let mut out = BufWriter::new(file);
    let machine = format!("{} cores, {}", std::thread::available_parallelism().map_or(0, |n| n.get()), std::env::consts::ARCH);
    println!("{:<11} {:<8} {:<12} {:<34} {:>12} {:>14}", "problem", "alg", "batches", "backend", "s/iter", "samples/s");
    for (shape, about) in &shapes {
        let data = if real { real_data(shape.name, args.setting, &args.data)? } else { shape.spec.generate() };
        // Slices take consecutive batches of rows, so they need the rows in a random order.
        let shuffled = batch_modes.contains(&BatchesArg::Slices).then(|| data.shuffled(0).0);
        let (rows, cols) = data.x_train.shape();
        let layout = if matches!(data.x_train, HostMatrix::Csr { .. }) { "CSR" } else { "dense" };
        println!("{} ({} setting): {about}", shape.name, args.setting.name());
        println!(
            "{}: {} training rows × {cols} features, {layout}, {} non-zeros, {} validation rows",
            shape.name,
            rows,
            data.x_train.nnz(),
            data.x_val.shape().0
        );
        for &backend in &backends {
            for &batches in &batch_modes {
                let job = Cases {
                    shape,
                    setting: args.setting,
                    about,
                    real,
                    data: if batches == BatchesArg::Slices { shuffled.as_ref().unwrap_or(&data) } else { &data },
                    batching: batches.into(),
                    algs: &algs,
                    iters: args.iters,
                    min_time: args.min_time,
                    machine: &machine,
                    out: &mut out,
                };
                on_backend(&BackendArgs { backend: Some(backend), default: backend, adapter: args.adapter.clone() }, job)?;
            }
        }
    }
    println!("results appended to {}", args.out.display());
    Ok(())
}

struct Cases<'a> {
    shape: &'a Shape,
    setting: BenchSetting,
    /// What the case is, in words.
    about: &'a str,
    real: bool,
    data: &'a GlmData,
    batching: Batching,
    algs: &'a [AlgKind],
    iters: usize,
    min_time: f64,
    machine: &'a str,
    out: &'a mut BufWriter<File>,
}

impl Job for Cases<'_> {
    fn run<B: GlmBackend + 'static>(self, be: &B) -> Result<()> {
        for &alg in self.algs {
            let mut run = OuterLoop::new(
                be,
                Glm::new(be, self.data, self.shape.hyper_kind),
                alg,
                self.shape.hyper.clone(),
                OuterOpt::Sgd { momentum: 0.0 },
                0,
            )?;
            run.rng.set_batching(self.batching);
            // Waiting (one scalar read) ends every timed iteration.
            let wait = |run: &OuterLoop<'_, B, Glm<B>>| -> Result<()> {
                pollster::block_on(run.wait())?;
                Ok(())
            };
            for _ in 0..2 {
                run.estimate();
                run.update();
            }
            wait(&run)?;
            let before = run.counts();
            let mut times = Vec::with_capacity(self.iters);
            let start = Instant::now();
            while times.len() < self.iters || (start.elapsed().as_secs_f64() < self.min_time && times.len() < 1_000_000) {
                let t0 = Instant::now();
                run.estimate();
                run.update();
                wait(&run)?;
                times.push(t0.elapsed().as_secs_f64());
            }
            let iters = times.len();
            let after = run.counts();
            times.sort_by(f64::total_cmp);
            let median = times[times.len() / 2];
            let mean = times.iter().sum::<f64>() / times.len() as f64;
            let per_iter = |a: u64, b: u64| (a - b) as f64 / iters as f64;
            let samples = per_iter(after.samples, before.samples);
            let record = json!({
                "problem": self.shape.name,
                "setting": self.setting.name(),
                "case": self.about,
                "data": if self.real { "real" } else { "synthetic" },
                "alg": alg.name(),
                "backend": be.describe(),
                "machine": self.machine,
                "iters": iters,
                "s_per_iter_median": median,
                "s_per_iter_mean": mean,
                "samples_per_s": samples / mean,
                "per_iter": {
                    "inner_grads": per_iter(after.inner_grads, before.inner_grads),
                    "hvps": per_iter(after.hvps, before.hvps),
                    "jvps": per_iter(after.jvps, before.jvps),
                    "outer_grads": per_iter(after.outer_grads, before.outer_grads),
                    "samples": samples,
                },
                "settings": self.shape.hyper,
                "batches": self.batching,
                "peak_rss_bytes": peak_rss(),
            });
            writeln!(self.out, "{record}")?;
            self.out.flush()?;
            println!(
                "{:<11} {:<8} {:<12} {:<34} {:>12.6} {:>14.0}",
                self.shape.name,
                alg.name(),
                format!("{:?}", self.batching).to_lowercase(),
                truncate(&be.describe(), 34),
                median,
                samples / mean
            );
        }
        Ok(())
    }
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}
