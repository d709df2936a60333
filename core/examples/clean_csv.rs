//! Cleaning your own labelled table: one weight per training row, learned so that a model
//! trained on the weighted rows does well on a small trusted validation set (data
//! hyper-cleaning). Rows whose label disagrees with the rest of the data get weight → 0.
//!
//! Run: `cargo run --release -p bilevel-core --example clean_csv -- TRAIN.csv VAL.csv TEST.csv`
//! (numeric features, the label in the last column, an optional header line). Without
//! arguments it writes a demo: three Gaussian classes with 30 % of the training labels
//! flipped, and checks that the flipped rows are the ones it down-weights.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use bilevel_core::algorithms::{AlgKind, Hyper};
use bilevel_core::backend::LossKind;
use bilevel_core::cpu::CpuBackend;
use bilevel_core::data::csv::{self, LabelColumn};
use bilevel_core::data::Labeled;
use bilevel_core::experiment::{Event, Plan, Run};
use bilevel_core::outer::OuterOpt;
use bilevel_core::problems::builder::GlmBuilder;
use bilevel_core::sampler::Sampler;
use bilevel_core::steps::AutoSteps;

/// Demo rows: 8 features, class k centred at 3·e_k, labels in {0, 1, 2}.
fn demo_rows(rng: &mut Sampler, n: usize) -> Vec<(Vec<f64>, usize)> {
    (0..n)
        .map(|i| {
            let k = i % 3;
            let x = (0..8).map(|j| rng.normal() + if j == k { 3.0 } else { 0.0 }).collect();
            (x, k)
        })
        .collect()
}

/// Writes the demo's three files; returns their paths and which training rows were flipped.
fn write_demo(dir: &Path) -> std::io::Result<([PathBuf; 3], Vec<bool>)> {
    let mut rng = Sampler::new(7);
    let header = "f1,f2,f3,f4,f5,f6,f7,f8,label";
    let mut flipped = Vec::new();
    let mut paths = Vec::new();
    for (name, n, noisy) in [("train.csv", 900, true), ("val.csv", 150, false), ("test.csv", 600, false)] {
        let path = dir.join(name);
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path)?);
        writeln!(f, "{header}")?;
        for (x, k) in demo_rows(&mut rng, n) {
            // 30 % of the training labels replaced by another class.
            let flip = noisy && rng.uniform() < 0.3;
            let label = if flip { (k + 1 + rng.below(2)) % 3 } else { k };
            if noisy {
                flipped.push(flip);
            }
            let row: Vec<String> = x.iter().map(|v| format!("{v:.4}")).collect();
            writeln!(f, "{},{label}", row.join(","))?;
        }
        paths.push(path);
    }
    Ok((paths.try_into().expect("three files"), flipped))
}

fn read(path: &Path) -> Result<Labeled, Box<dyn std::error::Error>> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let parsed = csv::parse(std::io::BufReader::new(file), &path.display().to_string(), &LabelColumn::Last).map_err(|e| e.to_string())?;
    Ok(parsed.data)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let (paths, flipped) = match args.as_slice() {
        [train, val, test] => ([train.clone(), val.clone(), test.clone()], None),
        [] => {
            let dir = std::env::temp_dir().join("bilevel-clean-csv");
            std::fs::create_dir_all(&dir)?;
            let (paths, flipped) = write_demo(&dir)?;
            println!("demo data in {} (30 % of the training labels flipped)", dir.display());
            (paths, Some(flipped))
        }
        _ => return Err("usage: clean_csv [TRAIN.csv VAL.csv TEST.csv]".into()),
    };
    let [train, val, test] = [read(&paths[0])?, read(&paths[1])?, read(&paths[2])?];
    let (n, labels) = (train.labels.len(), train.labels.clone());

    // Softmax regression with an intercept, one weight σ(λ_i) per training row, ρ‖W‖².
    let exp = GlmBuilder::new(LossKind::Softmax).per_sample_weights(1e-3).with_bias().experiment(train, val, test)?;
    // The CLI's hyper-cleaning defaults: β grows with n (a weight's hypergradient scales as 1/n),
    // α and η chosen from the inner Hessian's curvature.
    let hyper = Hyper { t: 10, q: 10, eta: 0.1, alpha: 0.1, beta: 0.15 * n as f64, batch_size: 64, val_batch_size: 64 };
    let be = CpuBackend::<f32>::new();
    let mut run = Run::new(&be, &exp, AlgKind::StocBiO, hyper, OuterOpt::Sgd { momentum: 0.0 }, 0)?;
    run.outer.set_auto_steps(AutoSteps { alpha: true, eta: true, ..AutoSteps::off() }.with_batch(Some(64)));
    let start = Instant::now();
    let now = move || start.elapsed().as_secs_f64();
    let mut first_acc = None;
    let last = pollster::block_on(run.drive(&Plan::epochs(300), &now, &mut |event| {
        if let Event::Record(r) = event {
            first_acc.get_or_insert(r.test_acc);
        }
        Ok(())
    }))?;
    println!(
        "test accuracy {:.1} % → {:.1} % after {} outer iterations ({:.1} s)",
        100.0 * first_acc.unwrap_or(0.0),
        100.0 * last.test_acc,
        last.iter,
        last.time_s
    );

    // The learned weights, lowest first: the rows the model is told to ignore.
    let lambda = &run.lambda;
    let weight = |i: usize| 1.0 / (1.0 + (-lambda[i]).exp());
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| lambda[a].total_cmp(&lambda[b]));
    println!("the 10 most down-weighted rows of {}:", paths[0].display());
    for &i in order.iter().take(10) {
        let note = match &flipped {
            Some(f) if f[i] => " (its label was flipped)",
            Some(_) => " (a clean row)",
            None => "",
        };
        println!("  row {:4}: label {}, weight {:.3}{note}", i + 1, labels[i], weight(i));
    }
    let down = (0..n).filter(|&i| weight(i) < 0.5).count();
    println!("{down} of {n} rows have weight < ½");

    // In the demo the flipped rows are known: the down-weighted ones should be them.
    if let Some(flipped) = flipped {
        let hits = (0..n).filter(|&i| weight(i) < 0.5 && flipped[i]).count() as f64;
        let (precision, recall) = (hits / down.max(1) as f64, hits / flipped.iter().filter(|f| **f).count() as f64);
        println!("weight < ½ finds the flipped labels with precision {:.1} % and recall {:.1} %", 100.0 * precision, 100.0 * recall);
        if precision < 0.8 || recall < 0.6 {
            return Err(format!("cleaning failed: precision {precision:.2}, recall {recall:.2}").into());
        }
    }
    Ok(())
}
