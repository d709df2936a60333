//! The paper's experiments on real data: `hyperclean` (MNIST data hyper-cleaning), `l2reg`
//! (20 Newsgroups, one λ per feature) and `ijcnn1` (binary logistic regression, one λ per
//! feature). Flags are the reference code's, so its README commands work with `bilevel
//! hyperclean` for `python3 mnist_exp.py` and `bilevel l2reg` for `python3
//! l2reg_on_twentynews.py`; defaults are the reference's (SPEC §2.3, §3.3).

use anyhow::{bail, Result};
use bilevel_core::algorithms::Hyper;
use bilevel_core::data::{select_rows, stratified_split, Labeled};
use bilevel_core::experiment::{corrupt_labels_uniform, hyperclean_paper, Experiment};
use bilevel_core::problems::{ProblemKind, RegScale};
use clap::{Args, ValueEnum};

use crate::common::{on_backend, RegScaleArg};
use crate::data::DataArgs;
use crate::run::{Drive, RunArgs};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Setting {
    /// The paper's: the first 20,000 training images, the next 5,000 as clean validation, a
    /// fraction `noise_rate` of the training labels replaced by a different class.
    Paper,
    /// The Benchopt bilevel benchmark's: 20,000 + 5,000 images drawn at random, each training
    /// label corrupted with probability 0.5 to a uniformly drawn class, features standardised
    /// with the training set's mean and deviation, no bias, ρ = 0.2.
    Benchopt,
}

#[derive(Args, Debug)]
#[command(rename_all = "snake_case", allow_negative_numbers = true)]
pub struct HypercleanArgs {
    #[command(flatten)]
    run: RunArgs,
    /// Fraction of corrupted training labels.
    #[arg(long, default_value_t = 0.1)]
    noise_rate: f64,
    #[arg(long, default_value_t = 20_000)]
    training_size: usize,
    #[arg(long, default_value_t = 5_000)]
    validation_size: usize,
    /// Use only the first N of the 10,000 test images (paper setting; the web page's subset).
    #[arg(long)]
    test_rows: Option<usize>,
    /// ρ in ρ‖Θ‖² (default 0.001; 0.2 in the Benchopt setting).
    #[arg(long)]
    rho: Option<f64>,
    #[arg(long, value_enum, default_value = "paper", ignore_case = true)]
    setting: Setting,
    /// Skip the baselines (the inner problem solved with uniform weights, and with the clean
    /// samples only), which are otherwise computed before the run, outside its time.
    #[arg(long)]
    no_baselines: bool,
    /// The reference's test loader batch and class count: accepted, not needed.
    #[arg(long, hide = true)]
    test_size: Option<usize>,
    #[arg(long, hide = true)]
    num_classes: Option<usize>,
    #[command(flatten)]
    data: DataArgs,
}

/// The reference's MNIST defaults (`mnist_exp.py`).
pub const HYPERCLEAN: Hyper = Hyper { t: 200, q: 3, eta: 0.5, alpha: 0.1, beta: 0.1, batch_size: 1000, val_batch_size: 1000 };

pub fn hyperclean(args: HypercleanArgs) -> Result<()> {
    let HypercleanArgs { run, noise_rate, training_size, validation_size, test_rows, rho, setting, no_baselines, data, .. } = args;
    if !(0.0..=1.0).contains(&noise_rate) {
        bail!("--noise_rate must be in [0, 1], got {noise_rate}");
    }
    let mnist = data.mnist()?;
    let (train, val, test) = mnist.hyperclean();
    let rho = rho.unwrap_or(if setting == Setting::Benchopt { 0.2 } else { 0.001 });
    let (mut train, val, test) = match setting {
        Setting::Paper => {
            if training_size == 0 || training_size > train.labels.len() || validation_size == 0 || validation_size > val.labels.len() {
                bail!("--training_size must be in 1..=20000 and --validation_size in 1..=5000 (the paper's split)");
            }
            let test_rows = test_rows.unwrap_or(test.labels.len());
            if test_rows == 0 || test_rows > test.labels.len() {
                bail!("--test_rows must be in 1..={}", test.labels.len());
            }
            let first = |l: &Labeled, n: usize| select_rows(l, &(0..n).collect::<Vec<_>>());
            let exp = hyperclean_paper(
                first(&train, training_size),
                first(&val, validation_size),
                first(&test, test_rows),
                noise_rate,
                run.seed,
                rho,
            )?;
            return drive(run, exp, "hyperclean", HYPERCLEAN, 50, !no_baselines);
        }
        Setting::Benchopt => {
            // 25,000 of the 60,000 training images at random, then standardised.
            let all = bilevel_core::data::idx::Mnist::features(&mnist.train_images, &mnist.train_labels, 0..mnist.train_labels.len());
            let rows = bilevel_core::sampler::Sampler::new(run.seed).permutation(all.labels.len());
            let pick = |r: &[u32]| select_rows(&all, &r.iter().map(|&i| i as usize).collect::<Vec<_>>());
            let (tr, va) = (
                pick(&rows[..training_size.min(rows.len())]),
                pick(&rows[training_size..(training_size + validation_size).min(rows.len())]),
            );
            standardise(tr, va, test)
        }
    };
    let true_labels = Some(train.labels.clone());
    let corrupted = Some(corrupt_labels_uniform(&mut train.labels, 10, 0.5, run.seed.wrapping_add(17)));
    let (glm, hyper_kind) = ProblemKind::Hyperclean.from_svmlight(train, val, RegScale::Sum, rho)?;
    // No bias in the Benchopt setting: drop the column from_svmlight added (the test set has none).
    let exp = Experiment { data: drop_bias(glm), hyper_kind, x_test: test.x, t_test: test.labels, corrupted, true_labels };
    drive(run, exp, "hyperclean", HYPERCLEAN, 50, !no_baselines)
}

/// MNIST hyper-cleaning in the paper's setting: the full 20,000 / 5,000 / 10,000 split with a
/// fraction `noise_rate` of the training labels corrupted (from the seed); `training_size` keeps
/// only the first rows (for quick tests).
pub fn hyperclean_experiment(data: &DataArgs, noise_rate: f64, seed: u64, training_size: Option<usize>) -> Result<Experiment> {
    let (mut train, val, test) = data.mnist()?.hyperclean();
    if let Some(n) = training_size {
        train = select_rows(&train, &(0..n.min(train.labels.len())).collect::<Vec<_>>());
    }
    Ok(hyperclean_paper(train, val, test, noise_rate, seed, 0.001)?)
}

/// Standardises every split with the training set's per-feature mean and deviation.
fn standardise(mut train: Labeled, mut val: Labeled, mut test: Labeled) -> (Labeled, Labeled, Labeled) {
    use bilevel_core::backend::HostMatrix;
    let HostMatrix::Dense { rows, cols, data } = &train.x else { return (train, val, test) };
    let (n, d) = (*rows as f64, *cols);
    let mut mean = vec![0.0; d];
    let mut var = vec![0.0; d];
    for row in data.chunks_exact(d) {
        row.iter().zip(&mut mean).for_each(|(v, m)| *m += v / n);
    }
    for row in data.chunks_exact(d) {
        row.iter().zip(&mean).zip(&mut var).for_each(|((v, m), s)| *s += (v - m) * (v - m) / n);
    }
    let std: Vec<f64> = var.iter().map(|v| v.sqrt().max(1e-8)).collect();
    for split in [&mut train, &mut val, &mut test] {
        if let HostMatrix::Dense { data, .. } = &mut split.x {
            for row in data.chunks_exact_mut(d) {
                row.iter_mut().zip(&mean).zip(&std).for_each(|((v, m), s)| *v = (*v - m) / s);
            }
        }
    }
    (train, val, test)
}

/// Removes the bias column `from_svmlight` appends for hyper-cleaning (the Benchopt setting has none).
fn drop_bias(mut glm: bilevel_core::problems::glm::GlmData) -> bilevel_core::problems::glm::GlmData {
    use bilevel_core::backend::HostMatrix;
    for x in [&mut glm.x_train, &mut glm.x_val] {
        match x {
            HostMatrix::Dense { cols, data, .. } => {
                let d = *cols - 1;
                *data = data.chunks_exact(*cols).flat_map(|r| r[..d].iter().copied()).collect();
                *cols = d;
            }
            // The bias is each row's last entry (column d).
            HostMatrix::Csr { cols, indptr, indices, values, .. } => {
                *cols -= 1;
                for (i, end) in indptr.iter_mut().skip(1).enumerate() {
                    *end -= i as u32 + 1;
                }
                let d = *cols as u32;
                let keep: Vec<bool> = indices.iter().map(|&j| j != d).collect();
                let mut k = keep.iter();
                indices.retain(|_| *k.next().unwrap_or(&true));
                let mut k = keep.iter();
                values.retain(|_| *k.next().unwrap_or(&true));
            }
        }
    }
    glm
}

#[derive(Args, Debug)]
#[command(rename_all = "snake_case", allow_negative_numbers = true)]
pub struct L2regArgs {
    #[command(flatten)]
    run: RunArgs,
    /// The penalty's scaling: mean (the reference's 1/(2dc) Σ e^λ W², for which its default steps
    /// α = β = 100 are tuned) or sum (the paper's ½ Σ e^λ W²; needs far smaller steps).
    #[arg(long, value_enum, default_value = "mean", ignore_case = true)]
    reg_scale: RegScaleArg,
    /// The reference's unused size flags (data is always the full split): accepted, not used.
    #[arg(long, hide = true)]
    training_size: Option<usize>,
    #[arg(long, hide = true)]
    val_size: Option<usize>,
    #[arg(long, hide = true)]
    inner_mu: Option<f64>,
    #[command(flatten)]
    data: DataArgs,
}

/// The reference's 20 Newsgroups defaults (`l2reg_on_twentynews.py`).
pub const L2REG: Hyper = Hyper { t: 10, q: 10, eta: 0.5, alpha: 100.0, beta: 100.0, batch_size: 100, val_batch_size: 100 };

pub fn l2reg(args: L2regArgs) -> Result<()> {
    let L2regArgs { mut run, reg_scale, val_size, data, .. } = args;
    if run.alg.eq_ignore_ascii_case("stocbio") && run.hyper.val_batch_size.is_none() {
        run.hyper.val_batch_size = val_size.or(run.hyper.batch_size);
    }
    let scale = RegScale::from(reg_scale);
    let exp = newsgroups_experiment(&data, run.seed, scale)?;
    drive(run, exp, "20news", L2REG, 50, false)
}

/// 20 Newsgroups: the paper's split of the train subset, the test documents.
pub fn newsgroups_experiment(data: &DataArgs, seed: u64, scale: RegScale) -> Result<Experiment> {
    let (ng, _) = data.newsgroups()?;
    let (train, val) = ng.paper_split(seed);
    let (glm, hyper_kind) = ProblemKind::Multilogreg.from_svmlight(train, val, scale, 0.0)?;
    let test = ng.test.with_cols(glm.x_train.shape().1);
    Ok(Experiment { data: glm, hyper_kind, x_test: test.x, t_test: test.labels, corrupted: None, true_labels: None })
}

#[derive(Args, Debug)]
#[command(rename_all = "snake_case", allow_negative_numbers = true)]
pub struct Ijcnn1Args {
    #[command(flatten)]
    run: RunArgs,
    #[command(flatten)]
    data: DataArgs,
}

/// ijcnn1: Benchopt's stochastic settings (batch 64, 10 inner and 10 Neumann steps).
const IJCNN1: Hyper = Hyper { t: 10, q: 10, eta: 0.5, alpha: 0.1, beta: 0.1, batch_size: 64, val_batch_size: 64 };

pub fn ijcnn1(args: Ijcnn1Args) -> Result<()> {
    let exp = ijcnn1_experiment(&args.data, args.run.seed)?;
    drive(args.run, exp, "ijcnn1", IJCNN1, 100, false)
}

/// ijcnn1: the training file; the test file split 50/50 (stratified, seeded) into validation and test.
pub fn ijcnn1_experiment(data: &DataArgs, seed: u64) -> Result<Experiment> {
    let (train, tst) = data.ijcnn1()?;
    let labels: Vec<usize> = tst.labels.iter().map(|&y| (y > 0.0) as usize).collect();
    let (val_rows, test_rows) = stratified_split(&labels, labels.len() / 2, seed);
    let (val, test) = (select_rows(&tst, &val_rows), select_rows(&tst, &test_rows));
    let t_test = test.labels.iter().map(|&y| (y > 0.0) as u8 as f64).collect();
    let (glm, hyper_kind) = ProblemKind::Logreg.from_svmlight(train, val, RegScale::Sum, 0.0)?;
    Ok(Experiment { data: glm, hyper_kind, x_test: test.x, t_test, corrupted: None, true_labels: None })
}

fn drive(run: RunArgs, exp: Experiment, name: &str, defaults: Hyper, epochs: usize, baselines: bool) -> Result<()> {
    let drive = Drive {
        name: name.to_string(),
        alg: run.alg()?,
        hyper: run.hyper.hyper(defaults),
        opt: run.opt(),
        epochs: run.epochs.unwrap_or(epochs),
        seed: run.seed,
        out: run.out.clone(),
        time_budget: run.time_budget,
        batching: run.batches.into(),
        exp,
        baselines,
    };
    if drive.epochs == 0 {
        bail!("--epochs must be at least 1");
    }
    on_backend(&run.backend, drive)
}

#[cfg(test)]
mod tests {
    use super::drop_bias;
    use bilevel_core::backend::{HostMatrix, LossKind};
    use bilevel_core::problems::glm::GlmData;
    use bilevel_core::problems::with_bias;

    /// `drop_bias` undoes `with_bias` whichever storage that chose.
    #[test]
    fn drop_bias_undoes_with_bias_dense_and_sparse() {
        let dense = HostMatrix::Dense { rows: 3, cols: 4, data: (1..=12).map(f64::from).collect() };
        let mut sparse = vec![0.0; 3 * 4];
        sparse[1] = 2.0;
        sparse[11] = 12.0;
        let sparse = HostMatrix::Dense { rows: 3, cols: 4, data: sparse };
        for (x, csr) in [(dense, false), (sparse, true)] {
            let biased = with_bias(&x);
            assert_eq!(matches!(biased, HostMatrix::Csr { .. }), csr);
            let glm = GlmData {
                x_train: biased.clone(),
                t_train: vec![0.; 3],
                x_val: biased,
                t_val: vec![0.; 3],
                loss: LossKind::Softmax,
                classes: 2,
            };
            let glm = drop_bias(glm);
            for m in [&glm.x_train, &glm.x_val] {
                assert_eq!(m.shape(), (3, 4));
                for i in 0..3 {
                    let kept: Vec<(usize, f64)> = m.row(i).into_iter().filter(|(_, v)| *v != 0.0).collect();
                    let want: Vec<(usize, f64)> = x.row(i).into_iter().filter(|(_, v)| *v != 0.0).collect();
                    assert_eq!(kept, want, "row {i}");
                }
            }
        }
    }
}
