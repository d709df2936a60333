//! The paper's experiments on real data: `hyperclean` (MNIST data hyper-cleaning), `l2reg`
//! (20 Newsgroups, one λ per feature) and `ijcnn1` (binary logistic regression, one λ per
//! feature). Flags are the reference code's, so its README commands work with `bilevel
//! hyperclean` for `python3 mnist_exp.py` and `bilevel l2reg` for `python3
//! l2reg_on_twentynews.py`; defaults are the reference's (SPEC §2.3, §3.3).

use anyhow::{bail, Result};
use bilevel_core::algorithms::Hyper;
use bilevel_core::data::idx::Mnist;
use bilevel_core::data::{select_rows, stratified_split, Labeled};
use bilevel_core::experiment::{corrupt_labels_uniform, hyperclean_paper, Experiment};
use bilevel_core::problems::glm::GlmData;
use bilevel_core::problems::glm::HyperKind;
use bilevel_core::problems::{ProblemKind, RegScale};
use bilevel_core::sampler::Sampler;
use clap::{Args, ValueEnum};

use crate::common::{on_backend, BackendArgs, BackendKind, RegScaleArg};
use crate::data::DataArgs;
use crate::run::{Drive, OptArg, RunArgs};

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

/// The reference's MNIST settings (`mnist_exp.py`): T = 200, Q = 3, η = 0.5, α = β = 0.1,
/// batches of 1,000. `bilevel reproduce` runs them as they are.
pub const HYPERCLEAN: Hyper = Hyper { t: 200, q: 3, eta: 0.5, alpha: 0.1, beta: 0.1, batch_size: 1000, val_batch_size: 1000 };

/// `bilevel hyperclean`'s defaults: the reference's T and batches, Q = 10 Neumann terms, and
/// α, η and β chosen from the data unless given (`auto`; the α, η and β here are not used
/// then). At η = 1/(2L̂), three Neumann terms sum too little of the series for the
/// hypergradient to rank the samples; ten do.
const HYPERCLEAN_DEFAULTS: Hyper = Hyper { q: 10, ..HYPERCLEAN };

/// Outer iterations of `bilevel hyperclean` when neither --epochs nor --time_budget is given.
const HYPERCLEAN_EPOCHS: usize = 100;

pub fn hyperclean(args: HypercleanArgs) -> Result<()> {
    let HypercleanArgs { run, noise_rate, training_size, validation_size, test_rows, rho, setting, no_baselines, data, .. } = args;
    if !(0.0..=1.0).contains(&noise_rate) {
        bail!("--noise_rate must be in [0, 1], got {noise_rate}");
    }
    let mnist = data.mnist()?;
    let rho = rho.unwrap_or(if setting == Setting::Benchopt { 0.2 } else { 0.001 });
    let exp = match setting {
        Setting::Paper => {
            let (train, val, test) = mnist.hyperclean();
            if training_size == 0 || training_size > train.labels.len() || validation_size == 0 || validation_size > val.labels.len() {
                bail!("--training_size must be in 1..=20000 and --validation_size in 1..=5000 (the paper's split)");
            }
            let test_rows = test_rows.unwrap_or(test.labels.len());
            if test_rows == 0 || test_rows > test.labels.len() {
                bail!("--test_rows must be in 1..={}", test.labels.len());
            }
            let first = |l: &Labeled, n: usize| select_rows(l, &(0..n).collect::<Vec<_>>());
            hyperclean_paper(
                first(&train, training_size),
                first(&val, validation_size),
                first(&test, test_rows),
                noise_rate,
                run.seed,
                rho,
            )?
        }
        Setting::Benchopt => hyperclean_benchopt(&mnist, &BenchoptCleaning { training_size, validation_size, rho, seed: run.seed })?,
    };
    drive(run, exp, "hyperclean", Defaults { hyper: HYPERCLEAN_DEFAULTS, epochs: HYPERCLEAN_EPOCHS, opt: OptArg::Sgd }, !no_baselines)
}

/// The Benchopt setting's sizes, penalty and seed (see [`Setting::Benchopt`]).
pub struct BenchoptCleaning {
    pub training_size: usize,
    pub validation_size: usize,
    pub rho: f64,
    /// Seeds the draw of the images and the label corruption.
    pub seed: u64,
}

impl BenchoptCleaning {
    /// The benchmark's own: 20,000 + 5,000 images, ρ = 0.2.
    pub fn benchmark(seed: u64) -> Self {
        BenchoptCleaning { training_size: 20_000, validation_size: 5_000, rho: 0.2, seed }
    }
}

/// MNIST hyper-cleaning in the Benchopt bilevel benchmark's setting ([`Setting::Benchopt`]):
/// `training_size` + `validation_size` of the 60,000 training images drawn at random, the
/// features standardised with the training rows' statistics, no bias, each training label
/// corrupted with probability 0.5 to a uniformly drawn class; the 10,000 test images for test.
pub fn hyperclean_benchopt(mnist: &Mnist, setting: &BenchoptCleaning) -> Result<Experiment> {
    let BenchoptCleaning { training_size, validation_size, rho, seed } = *setting;
    let available = mnist.train_labels.len();
    if training_size == 0 || validation_size == 0 || training_size + validation_size > available {
        bail!(
            "--training_size and --validation_size must be at least 1 and together at most {available} (the MNIST training images \
             the Benchopt setting draws from), got {training_size} + {validation_size}"
        );
    }
    let (_, _, test) = mnist.hyperclean();
    let all = Mnist::features(&mnist.train_images, &mnist.train_labels, 0..available);
    let rows = Sampler::new(seed).permutation(available);
    let pick = |r: &[u32]| select_rows(&all, &r.iter().map(|&i| i as usize).collect::<Vec<_>>());
    let (train, val) = (pick(&rows[..training_size]), pick(&rows[training_size..training_size + validation_size]));
    let (mut train, val, test) = standardise(train, val, test);
    let true_labels = Some(train.labels.clone());
    let corrupted = Some(corrupt_labels_uniform(&mut train.labels, 10, 0.5, seed.wrapping_add(17)));
    let (glm, hyper_kind) = ProblemKind::Hyperclean.from_svmlight(train, val, RegScale::Sum, rho)?;
    // No bias in the Benchopt setting: drop the column from_svmlight added (the test set has none).
    Ok(Experiment { data: drop_bias(glm), hyper_kind, global: false, x_test: test.x, t_test: test.labels, corrupted, true_labels })
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
    drive(run, exp, "20news", Defaults { hyper: L2REG, epochs: 50, opt: OptArg::Sgd }, false)
}

/// 20 Newsgroups: the paper's split of the train subset, the test documents.
pub fn newsgroups_experiment(data: &DataArgs, seed: u64, scale: RegScale) -> Result<Experiment> {
    let (ng, _) = data.newsgroups()?;
    let (train, val) = ng.paper_split(seed);
    let (glm, hyper_kind) = ProblemKind::Multilogreg.from_svmlight(train, val, scale, 0.0)?;
    let test = ng.test.with_cols(glm.x_train.shape().1);
    Ok(Experiment { data: glm, hyper_kind, global: false, x_test: test.x, t_test: test.labels, corrupted: None, true_labels: None })
}

#[derive(Args, Debug)]
#[command(rename_all = "snake_case", allow_negative_numbers = true)]
pub struct Ijcnn1Args {
    #[command(flatten)]
    run: RunArgs,
    #[command(flatten)]
    data: DataArgs,
}

/// ijcnn1: Benchopt's stochastic settings (batch 64, 10 inner and 10 Neumann steps), α and η
/// from the data, and Adam at β = 0.05 for λ: Adam's step is in λ's own units (about β per
/// iteration, whatever the hypergradient's scale), which SGD's is not — at λ = 0 the penalty
/// e^λ = 1 holds the model at the majority class, and SGD at a stable β barely moves it.
const IJCNN1: Hyper = Hyper { t: 10, q: 10, eta: 0.5, alpha: 0.1, beta: 0.05, batch_size: 64, val_batch_size: 64 };

pub fn ijcnn1(args: Ijcnn1Args) -> Result<()> {
    let exp = ijcnn1_experiment(&args.data, args.run.seed)?;
    drive(args.run, exp, "ijcnn1", Defaults { hyper: IJCNN1, epochs: 100, opt: OptArg::Adam }, false)
}

/// ijcnn1: the training file; the test file split 50/50 (stratified, seeded) into validation and test.
pub fn ijcnn1_experiment(data: &DataArgs, seed: u64) -> Result<Experiment> {
    let (train, tst) = data.ijcnn1()?;
    let labels: Vec<usize> = tst.labels.iter().map(|&y| (y > 0.0) as usize).collect();
    let (val_rows, test_rows) = stratified_split(&labels, labels.len() / 2, seed);
    let (val, test) = (select_rows(&tst, &val_rows), select_rows(&tst, &test_rows));
    let t_test = test.labels.iter().map(|&y| (y > 0.0) as u8 as f64).collect();
    let (glm, hyper_kind) = ProblemKind::Logreg.from_svmlight(train, val, RegScale::Sum, 0.0)?;
    Ok(Experiment { data: glm, hyper_kind, global: false, x_test: test.x, t_test, corrupted: None, true_labels: None })
}

/// ijcnn1 as the Benchopt bilevel benchmark reads it (`fetch_libsvm('ijcnn1')` and
/// `fetch_libsvm('ijcnn1_test')`): the whole training file (49,990 rows) is the inner problem's
/// data, the whole test file (91,701 rows) the validation set; there is no test split.
pub fn ijcnn1_benchopt(data: &DataArgs) -> Result<GlmData> {
    let (train, val) = data.ijcnn1()?;
    Ok(ProblemKind::Logreg.from_svmlight(train, val, RegScale::Sum, 0.0)?.0)
}

/// The outer step β for one weight per training sample, per sample: the hypergradient of a
/// sample's weight scales as 1/n (g averages over the n samples), so β = OUTER_LR_PER_SAMPLE · n
/// moves each weight at a rate that does not depend on n.
pub const OUTER_LR_PER_SAMPLE: f64 = 0.15;

/// A command's defaults for what its flags leave unset.
struct Defaults {
    hyper: Hyper,
    /// Outer iterations without --epochs or --time_budget.
    epochs: usize,
    opt: OptArg,
}

fn drive(run: RunArgs, exp: Experiment, name: &str, defaults: Defaults, baselines: bool) -> Result<()> {
    let Defaults { hyper: default_hyper, epochs, opt } = defaults;
    let alg = run.alg()?;
    let mut hyper = run.hyper.hyper(default_hyper);
    if run.hyper.outer_lr_auto() {
        if let HyperKind::SampleWeights { .. } = exp.hyper_kind {
            hyper.beta = OUTER_LR_PER_SAMPLE * exp.data.t_train.len() as f64;
        }
    }
    let batch = alg.is_stochastic().then_some(hyper.batch_size);
    let drive = Drive {
        name: name.to_string(),
        alg,
        auto: run.hyper.auto_steps(true, batch),
        explicit_steps: run.hyper.explicit_steps(),
        hyper,
        opt: run.opt(opt),
        // With a time budget and no --epochs, the budget alone ends the run.
        epochs: run.epochs.unwrap_or(if run.time_budget.is_some() { usize::MAX } else { epochs }),
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
    // The real-data runs default to f32, the GPU's precision at twice the f64 reference's speed.
    let backend = BackendArgs { default: BackendKind::Cpu32, ..run.backend.clone() };
    on_backend(&backend, drive)
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
