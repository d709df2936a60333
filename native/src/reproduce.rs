//! `bilevel reproduce [--quick]`: the reference's figure set — 20 Newsgroups with reverse, AID-CG,
//! AID-FP, HOAG and stocBiO; stocBiO at batch 100/500/1000/2000; MNIST hyper-cleaning at noise 0.1
//! and 0.4 for every algorithm — run here, with the figures and a markdown table written under
//! `--out_dir`. `--quick` is a minutes-long version (short time budgets, few iterations).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use bilevel_core::algorithms::{AlgKind, Hyper};
use bilevel_core::experiment::Experiment;
use bilevel_core::outer::OuterOpt;
use bilevel_core::problems::RegScale;
use bilevel_core::sampler::Batching;
use clap::Args;
use serde_json::Value;

use bilevel_core::steps::AutoSteps;

use crate::common::{on_backend, BackendArgs};
use crate::data::DataArgs;
use crate::experiments::{hyperclean_experiment, newsgroups_experiment, HYPERCLEAN, L2REG};
use crate::run::Drive;

#[derive(Args, Debug)]
#[command(rename_all = "snake_case")]
pub struct ReproduceArgs {
    /// Minutes, not hours: 6 s budgets on 20news; 5 outer iterations of T = 20 on MNIST.
    #[arg(long)]
    quick: bool,
    #[arg(long, default_value = "results/reproduce")]
    out_dir: PathBuf,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[command(flatten)]
    backend: BackendArgs,
    #[command(flatten)]
    data: DataArgs,
    /// Overrides for tests: 20news budget (s), MNIST outer iterations, T and training rows.
    #[arg(long, hide = true)]
    budget_s: Option<f64>,
    #[arg(long, hide = true)]
    mnist_epochs: Option<usize>,
    #[arg(long, hide = true)]
    mnist_t: Option<usize>,
    #[arg(long, hide = true)]
    mnist_training_size: Option<usize>,
}

/// The per-iteration records of a results file (without its summary and hyper-cleaning's extra lines).
fn read(path: &Path) -> Result<Vec<Value>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(text.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).filter(|v| v.get("iter").is_some()).collect())
}

/// Test loss at time `t` by linear interpolation (None past the run's end).
fn loss_at(records: &[Value], t: f64) -> Option<f64> {
    let pts: Vec<(f64, f64)> = records.iter().filter_map(|r| Some((r["time_s"].as_f64()?, r["test_loss"].as_f64()?))).collect();
    pts.windows(2).find(|w| w[0].0 <= t && t <= w[1].0).map(|w| {
        let f = if w[1].0 > w[0].0 { (t - w[0].0) / (w[1].0 - w[0].0) } else { 1.0 };
        w[0].1 + f * (w[1].1 - w[0].1)
    })
}

/// The first time the test loss reaches `level` (interpolated).
fn time_to(records: &[Value], level: f64) -> Option<f64> {
    let pts: Vec<(f64, f64)> = records.iter().filter_map(|r| Some((r["time_s"].as_f64()?, r["test_loss"].as_f64()?))).collect();
    pts.windows(2).find(|w| w[0].1 > level && w[1].1 <= level).map(|w| w[0].0 + (w[0].1 - level) / (w[0].1 - w[1].1) * (w[1].0 - w[0].0))
}

fn fmt(v: Option<f64>, digits: usize) -> String {
    v.map_or("—".into(), |v| format!("{v:.digits$}"))
}

pub fn run(args: ReproduceArgs) -> Result<()> {
    std::fs::create_dir_all(&args.out_dir).with_context(|| format!("cannot create {}", args.out_dir.display()))?;
    let budget = args.budget_s.unwrap_or(if args.quick { 6.0 } else { 60.0 });
    let mnist_epochs = args.mnist_epochs.unwrap_or(if args.quick { 5 } else { 50 });
    let run = |name: String, exp: Experiment, alg: AlgKind, hyper: Hyper, epochs: usize, time_budget: Option<f64>| -> Result<PathBuf> {
        let out = args.out_dir.join(format!("{name}.jsonl"));
        let drive = Drive {
            name,
            exp,
            alg,
            hyper,
            opt: OuterOpt::Sgd { momentum: 0.0 },
            epochs,
            seed: args.seed,
            out: Some(out.clone()),
            time_budget,
            batching: Batching::Independent,
            // The reference's step sizes, as its figures used them.
            auto: AutoSteps::off(),
            explicit_steps: Vec::new(),
            baselines: false,
        };
        on_backend(&args.backend, drive)?;
        Ok(out)
    };
    let mut table = String::from("# Reproduced figure set\n\n");
    let _ = writeln!(
        table,
        "Backend: `{:?}`; {} (`--quick`: {}).\n",
        args.backend.kind(),
        if args.quick { "6 s budgets" } else { "60 s budgets" },
        args.quick
    );

    // 20 Newsgroups, the reference's mean-scaled penalty and its settings.
    let ng = newsgroups_experiment(&args.data, args.seed, RegScale::Mean)?;
    let full = Hyper { t: 10, q: 10, ..L2REG };
    let mut alg_files = Vec::new();
    for (label, alg, hyper) in [
        ("reverse", AlgKind::Reverse, full.clone()),
        ("AID-CG", AlgKind::AidCg, full.clone()),
        ("AID-FP", AlgKind::AidFp, full.clone()),
        ("HOAG", AlgKind::Hoag, full.clone()),
        ("stocBiO-1000", AlgKind::StocBiO, Hyper { batch_size: 1000, val_batch_size: 1000, ..full.clone() }),
    ] {
        alg_files.push((label.to_string(), run(format!("20news_{label}"), ng.clone(), alg, hyper, 100_000, Some(budget))?));
    }
    let mut batch_files = Vec::new();
    for b in [100, 500, 1000, 2000] {
        let hyper = Hyper { batch_size: b, val_batch_size: b, ..full.clone() };
        batch_files.push((
            format!("stocBiO-{b}"),
            run(format!("20news_stocBiO-{b}"), ng.clone(), AlgKind::StocBiO, hyper, 100_000, Some(budget))?,
        ));
    }
    drop(ng);
    let _ = writeln!(table, "## 20 Newsgroups: test loss at 10/20/40/60 s, time to test loss 1.2\n");
    let _ = writeln!(table, "| run | 10 s | 20 s | 40 s | 60 s | time to 1.2 | final test acc |\n|---|---|---|---|---|---|---|");
    for (label, path) in alg_files.iter().chain(&batch_files) {
        let r = read(path)?;
        let acc = r.last().and_then(|v| v["test_acc"].as_f64()).map(|a| 100.0 * a);
        let _ = writeln!(
            table,
            "| {label} | {} | {} | {} | {} | {} | {}% |",
            fmt(loss_at(&r, 10.0), 3),
            fmt(loss_at(&r, 20.0), 3),
            fmt(loss_at(&r, 40.0), 3),
            fmt(loss_at(&r, 60.0), 3),
            fmt(time_to(&r, 1.2), 1),
            fmt(acc, 1)
        );
    }
    let plot = |files: &[(String, PathBuf)], name: &str, reference: bool| -> Result<()> {
        let mut results: Vec<PathBuf> = files.iter().map(|f| f.1.clone()).collect();
        results.dedup();
        crate::plot::run(crate::plot::PlotArgs::new(results, args.out_dir.join(name), reference))
    };
    plot(&alg_files, "20news_alg.png", true)?;
    plot(&batch_files, "20news_batch.png", false)?;

    // MNIST hyper-cleaning at noise 0.1 and 0.4, every algorithm (the reference's batch 50).
    let _ = writeln!(table, "\n## MNIST hyper-cleaning: test accuracy and the weight detector\n");
    let _ = writeln!(table, "| noise | algorithm | test acc | precision | recall | time (s) |\n|---|---|---|---|---|---|");
    for noise in [0.1, 0.4] {
        let exp = hyperclean_experiment(&args.data, noise, args.seed, args.mnist_training_size)?;
        let mut files = Vec::new();
        for alg in AlgKind::ALL {
            let t = args.mnist_t.unwrap_or(if args.quick { 20 } else { HYPERCLEAN.t });
            let hyper = Hyper { t, batch_size: 50, val_batch_size: 50, ..HYPERCLEAN };
            let path = run(format!("mnist_noise{noise}_{}", alg.name()), exp.clone(), alg, hyper, mnist_epochs, None)?;
            let last = read(&path)?.pop();
            let get = |k: &str| last.as_ref().and_then(|v| v[k].as_f64());
            let _ = writeln!(
                table,
                "| {noise} | {alg} | {}% | {} | {} | {} |",
                fmt(get("test_acc").map(|a| 100.0 * a), 2),
                fmt(get("precision"), 3),
                fmt(get("recall"), 3),
                fmt(get("time_s"), 1)
            );
            files.push((alg.name().to_string(), path));
        }
        plot(&files, &format!("mnist_noise{noise}.png"), false)?;
    }
    let table_path = args.out_dir.join("table.md");
    std::fs::write(&table_path, &table).with_context(|| format!("cannot write {}", table_path.display()))?;
    println!("{table}");
    println!("figures and table in {}", args.out_dir.display());
    Ok(())
}
