//! Tied hyperparameters (`problems::tied`): the oracles against finite differences, the
//! hypergradient against the closed form of the untied problem summed over groups, the GPU
//! against the CPU, and bad groupings as errors.

mod common;

use bilevel_core::backend::LossKind;
use bilevel_core::check::CheckOptions;
use bilevel_core::cpu::CpuBackend;
use bilevel_core::exact::exact_hypergradient;
use bilevel_core::problems::glm::{Glm, HyperKind};
use bilevel_core::problems::ridge::{Ridge, RidgeData};
use bilevel_core::problems::synthetic::SyntheticSpec;
use bilevel_core::problems::tied::Tied;
use bilevel_core::{check_oracles, check_oracles_with, Backend, GlmBackend};
use common::{block, gpu, rel_err};

type Cpu = CpuBackend<f64>;

/// Ridge with an outer penalty (so ∇ₓf is not zero), 8 features.
fn ridge<B: GlmBackend>(be: &B) -> Ridge<B> {
    Ridge::ridge(be, &RidgeData::synthetic(60, 40, 8, 0.2, 3).with_outer_penalty(0.05))
}

/// Logistic regression, 9 features tied in three groups of three.
fn logreg<B: GlmBackend>(be: &B) -> Tied<B, Glm<B>> {
    let data = SyntheticSpec {
        n_train: 50,
        n_val: 40,
        features: 9,
        classes: 1,
        loss: LossKind::Logistic,
        nnz_per_row: None,
        bias: false,
        seed: 4,
    }
    .generate();
    let glm = Glm::new(be, &data, HyperKind::FeatureRidge { scale: 1.0 }).with_outer_penalty(0.1);
    Tied::new(be, glm, &[0, 0, 0, 1, 1, 1, 2, 2, 2]).unwrap()
}

#[test]
fn every_oracle_of_a_tied_problem_matches_finite_differences() {
    let be = Cpu::new();
    let global = Tied::global(&be, ridge(&be));
    let report = block(check_oracles(&global, &be, &[0.3], &[0.2; 8])).unwrap();
    assert!(report.passed(), "{report}");
    let grouped = logreg(&be);
    let report = block(check_oracles(&grouped, &be, &[0.4, -0.3, 0.1], &[0.1, -0.2, 0.3, 0.0, 0.5, -0.1, 0.2, 0.3, -0.4])).unwrap();
    assert!(report.passed(), "{report}");
}

#[test]
fn the_tied_hypergradient_is_the_untied_one_summed_over_each_group() {
    let be = Cpu::new();
    // One global λ = 0.3: dΦ/dλ = Σ_j ∂Φ/∂λ_j at λ_j = 0.3.
    let (x, y0) = (be.vector_from(&[0.3], "x"), be.zeros(8, "y0"));
    let tied = block(exact_hypergradient(&be, &Tied::global(&be, ridge(&be)), &x, &y0, 1e-12)).unwrap();
    let full = block(exact_hypergradient(&be, &ridge(&be), &be.vector_from(&[0.3; 8], "x"), &y0, 1e-12)).unwrap();
    let full_h = block(be.read_vector(&full.hypergradient)).unwrap();
    let want = [full_h.iter().sum::<f64>()];
    let got = block(be.read_vector(&tied.hypergradient)).unwrap();
    assert!(rel_err(&got, &want) < 1e-9, "tied {got:?} vs summed {want:?}");
    // Three groups: each group's entry is the sum of its three members'.
    let groups = [0.4, -0.3, 0.1];
    let p = logreg(&be);
    let (x, y0) = (be.vector_from(&groups, "x"), be.zeros(9, "y0"));
    let tied = block(be.read_vector(&block(exact_hypergradient(&be, &p, &x, &y0, 1e-12)).unwrap().hypergradient)).unwrap();
    let expanded: Vec<f64> = (0..9).map(|j| groups[j / 3]).collect();
    let full = block(exact_hypergradient(&be, p.inner(), &be.vector_from(&expanded, "x"), &y0, 1e-12)).unwrap();
    let full_h = block(be.read_vector(&full.hypergradient)).unwrap();
    let want: Vec<f64> = (0..3).map(|g| full_h[3 * g..3 * g + 3].iter().sum()).collect();
    assert!(rel_err(&tied, &want) < 1e-9, "tied {tied:?} vs summed {want:?}");
}

#[test]
fn a_tied_problem_on_the_gpu_matches_finite_differences_in_f32() {
    let g = gpu();
    let report = block(check_oracles_with(&logreg(&g), &g, &[0.4, -0.3, 0.1], &[0.1; 9], &CheckOptions::for_f32())).unwrap();
    assert!(report.passed(), "{report}");
}

#[test]
fn bad_groupings_are_errors() {
    let be = Cpu::new();
    let err = |groups: &[usize]| Tied::new(&be, ridge(&be), groups).err().expect("an error").to_string();
    assert!(err(&[0; 7]).contains("7 group indices for 8 hyperparameters"));
    assert!(err(&[0, 0, 0, 0, 2, 2, 2, 2]).contains("group 1 has no members"));
}
