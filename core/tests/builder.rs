//! The GLM builder: label encodings, penalty scalings, the intercept, the three hyperparameter
//! kinds as checked problems, and bad input as one-line errors.

mod common;

use bilevel_core::algorithms::{AlgKind, Hyper};
use bilevel_core::backend::{Backend, Coef};
use bilevel_core::backend::{HostMatrix, LossKind};
use bilevel_core::check_oracles;
use bilevel_core::cpu::CpuBackend;
use bilevel_core::data::csv::{parse, LabelColumn};
use bilevel_core::data::Labeled;
use bilevel_core::exact::exact_hypergradient;
use bilevel_core::experiment::Run;
use bilevel_core::outer::OuterOpt;
use bilevel_core::problems::builder::{GlmBuilder, RegScale};
use bilevel_core::problems::glm::HyperKind;
use bilevel_core::problems::Problem;
use bilevel_core::sampler::Sampler;
use common::{block, randn};

/// `n` rows of 4 seeded features with the given labels cycled.
fn split(n: usize, labels: &[f64], seed: u64) -> Labeled {
    let mut s = Sampler::new(seed);
    Labeled {
        x: HostMatrix::Dense { rows: n, cols: 4, data: randn(&mut s, n * 4, 1.0) },
        labels: (0..n).map(|i| labels[i % labels.len()]).collect(),
    }
}

#[test]
fn labels_are_encoded_for_the_loss() {
    let softmax = GlmBuilder::new(LossKind::Softmax).build(split(6, &[7.0, -2.0, 3.0], 0), split(3, &[3.0], 1)).unwrap();
    assert_eq!(softmax.class_labels, vec![-2.0, 3.0, 7.0]);
    assert_eq!(softmax.data.t_train, vec![2.0, 0.0, 1.0, 2.0, 0.0, 1.0]);
    assert_eq!(softmax.data.classes, 3);
    let logistic = GlmBuilder::new(LossKind::Logistic).build(split(4, &[-1.0, 1.0], 0), split(2, &[0.0, 1.0], 1)).unwrap();
    assert_eq!(logistic.data.t_train, vec![0.0, 1.0, 0.0, 1.0]);
    assert_eq!(logistic.data.t_val, vec![0.0, 1.0]);
    let squared = GlmBuilder::new(LossKind::Squared).build(split(2, &[0.5, -1.5], 0), split(1, &[2.0], 1)).unwrap();
    assert_eq!((squared.data.t_train.clone(), squared.data.classes), (vec![0.5, -1.5], 1));
}

#[test]
fn penalty_scalings_and_the_intercept() {
    let b = GlmBuilder::new(LossKind::Softmax);
    let mean = b.per_feature_l2(RegScale::Mean).build(split(6, &[0.0, 1.0, 2.0], 0), split(3, &[0.0], 1)).unwrap();
    assert_eq!(mean.hyper_kind, HyperKind::FeatureRidge { scale: 1.0 / 12.0 });
    let weights = b.per_sample_weights(0.01).with_bias().build(split(6, &[0.0, 1.0], 0), split(3, &[0.0], 1)).unwrap();
    assert_eq!(weights.hyper_kind, HyperKind::SampleWeights { rho: 0.01 });
    assert_eq!(weights.data.x_train.shape(), (6, 5));
    assert_eq!(weights.data.x_train.row(2).last(), Some(&(4, 1.0)));
}

#[test]
fn every_hyperparameter_kind_builds_a_problem_whose_oracles_check() {
    let be = CpuBackend::<f64>::new();
    for (b, dim_x) in [
        (GlmBuilder::new(LossKind::Logistic), 4),
        (GlmBuilder::new(LossKind::Softmax).per_sample_weights(0.1).with_bias(), 12),
        (GlmBuilder::new(LossKind::Squared).global_l2(RegScale::Sum), 1),
    ] {
        let built = b.build(split(12, &[0.0, 1.0, 0.0], 0), split(8, &[1.0, 0.0], 1)).unwrap();
        let p = built.problem(&be);
        assert_eq!(p.dim_x(), dim_x);
        let mut s = Sampler::new(5);
        let (x, y) = (randn(&mut s, p.dim_x(), 0.5), randn(&mut s, p.dim_y(), 0.5));
        let report = block(check_oracles(&p, &be, &x, &y)).unwrap();
        assert!(report.passed(), "{b:?}: {report}");
    }
}

#[test]
fn a_csv_file_becomes_an_experiment() {
    let text = "a,b,label\n1,0,5\n0,1,9\n1,1,5\n0,0,9\n";
    let data = || parse(text.as_bytes(), "t.csv", &LabelColumn::Name("label".into())).unwrap().data;
    let exp = GlmBuilder::new(LossKind::Softmax).per_sample_weights(1e-3).with_bias().experiment(data(), data(), data()).unwrap();
    assert_eq!(exp.t_test, vec![0.0, 1.0, 0.0, 1.0]);
    assert_eq!(exp.x_test.shape(), (4, 3));
}

#[test]
fn bad_input_is_an_error_naming_it() {
    let err = |b: GlmBuilder, train: Labeled, val: Labeled| b.build(train, val).expect_err("an error").to_string();
    assert!(err(GlmBuilder::new(LossKind::Logistic), split(3, &[2.0], 0), split(2, &[1.0], 1))
        .contains("training sample 1: logistic (logreg) labels must be ±1"));
    assert!(err(GlmBuilder::new(LossKind::Softmax), split(3, &[0.5], 0), split(2, &[1.0], 1))
        .contains("multiclass labels must be integers, got 0.5"));
    assert!(err(GlmBuilder::new(LossKind::Softmax).per_sample_weights(-1.0), split(3, &[0.0], 0), split(2, &[1.0], 1))
        .contains("ρ must be a finite non-negative number"));
    let wide = Labeled { x: HostMatrix::Dense { rows: 1, cols: 6, data: vec![0.0; 6] }, labels: vec![0.0] };
    assert!(err(GlmBuilder::new(LossKind::Squared), split(3, &[0.0], 0), wide)
        .contains("the validation set has 6 features but the training set only 4"));
    let empty = Labeled { x: HostMatrix::Dense { rows: 0, cols: 4, data: vec![] }, labels: vec![] };
    assert!(err(GlmBuilder::new(LossKind::Squared), split(3, &[0.0], 0), empty).contains("empty split"));
    // A test class the other splits never show.
    let b = GlmBuilder::new(LossKind::Softmax);
    let e = b.experiment(split(4, &[0.0, 1.0], 0), split(2, &[0.0], 1), split(2, &[4.0], 2)).expect_err("an error").to_string();
    assert!(e.contains("test sample 1: a class the training and validation sets do not have, got 4"), "{e}");
}

/// One global L2 strength through the experiment driver: one hyperparameter, and the
/// validation loss of an overfitting ridge regression falls as it is tuned.
#[test]
fn a_global_l2_experiment_runs_and_tunes_its_one_hyperparameter() {
    // y = ⟨w, a⟩ + noise on 4 features, 6 training rows: the unregularised fit overfits.
    let noisy = |n: usize, seed: u64| {
        let mut s = Sampler::new(seed);
        let x = randn(&mut s, n * 4, 1.0);
        let noise = randn(&mut s, n, 1.0);
        let labels = (0..n).map(|i| 0.5 * x[4 * i] - 0.25 * x[4 * i + 1] + noise[i]).collect();
        Labeled { x: HostMatrix::Dense { rows: n, cols: 4, data: x }, labels }
    };
    let exp = GlmBuilder::new(LossKind::Squared).global_l2(RegScale::Sum).experiment(noisy(6, 0), noisy(200, 1), noisy(200, 2)).unwrap();
    assert!(exp.global);
    let be = CpuBackend::<f64>::new();
    // λ = log(penalty) starts at −4: almost no penalty.
    let hyper = Hyper { t: 100, q: 20, eta: 0.5, alpha: 0.05, beta: 2.0, batch_size: 6, val_batch_size: 200 };
    let mut run = Run::new(&be, &exp, AlgKind::AidCg, hyper, OuterOpt::Sgd { momentum: 0.0 }, 1).unwrap();
    be.fill(Coef::c(-4.0), &mut run.outer.x);
    let first = block(run.initial()).unwrap();
    let mut last = first.clone();
    for _ in 0..100 {
        last = block(run.step(&|| 0.0)).unwrap();
    }
    assert_eq!(run.lambda.len(), 1, "one hyperparameter");
    // The best validation loss over a grid of λ, each at its exact inner solution.
    let p = exp.problem(&be);
    let y0 = be.zeros(p.dim_y(), "y0");
    let best = (0..=48)
        .map(|i| -4.0 + 0.25 * i as f64)
        .map(|l| block(exact_hypergradient(&be, &p, &be.vector_from(&[l], "x"), &y0, 1e-12)).unwrap().outer_loss)
        .fold(f64::INFINITY, f64::min);
    eprintln!("λ = {:.3}, validation loss {:.5} → {:.5} (grid best {best:.5})", run.lambda[0], first.val_loss, last.val_loss);
    assert!(last.val_loss - best < 0.05 * (first.val_loss - best), "validation loss {} → {} (best {best})", first.val_loss, last.val_loss);
}
