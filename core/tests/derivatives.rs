//! Every oracle of every problem against central finite differences, in f64 on the CPU
//! reference backend, on the full data and on a mini-batch, dense and sparse. And the closed-form hypergradient
//! against finite differences of Φ(λ) = f(w*(λ)).

mod common;

use bilevel_core::backend::LossKind;
use bilevel_core::cpu::CpuBackend;
use bilevel_core::problems::glm::{Glm, GlmData, HyperKind};
use bilevel_core::problems::ridge::{Ridge, RidgeData};
use bilevel_core::problems::synthetic::SyntheticSpec;
use bilevel_core::problems::Problem;
use bilevel_core::sampler::Sampler;
use bilevel_core::{Backend, Rows};
use common::{randn, rel_err};

type Cpu = CpuBackend<f64>;
const FD_STEP: f64 = 1e-5;

/// A small instance of a problem configuration, and a point (λ, W, V) with a mini-batch.
struct Setup {
    name: &'static str,
    be: Cpu,
    p: Glm<Cpu>,
    lam: Vec<f64>,
    w: Vec<f64>,
    v: Vec<f64>,
    batch: Vec<u32>,
    val_batch: Vec<u32>,
}

/// Every problem configuration: ridge, logreg (ijcnn1-like), multilogreg on sparse data (20news,
/// both regulariser scalings), and hyper-cleaning (per-sample weights, bias column).
fn setups() -> Vec<Setup> {
    let spec = |loss, classes, nnz, bias, seed| SyntheticSpec {
        n_train: 37,
        n_val: 29,
        features: 13,
        classes,
        loss,
        nnz_per_row: nnz,
        bias,
        seed,
    };
    let cases: Vec<(&str, GlmData, HyperKind)> = vec![
        ("ridge", RidgeData::synthetic(37, 29, 13, 0.3, 7).glm(), HyperKind::FeatureRidge { scale: 1.0 }),
        ("logreg", spec(LossKind::Logistic, 1, None, false, 8).generate(), HyperKind::FeatureRidge { scale: 1.0 }),
        ("multilogreg sparse", spec(LossKind::Softmax, 4, Some(5), false, 9).generate(), HyperKind::FeatureRidge { scale: 1.0 }),
        (
            "multilogreg sparse, mean-scaled",
            spec(LossKind::Softmax, 4, Some(5), false, 10).generate(),
            HyperKind::FeatureRidge { scale: 1.0 / 52.0 },
        ),
        ("hyperclean", spec(LossKind::Softmax, 3, None, true, 11).generate(), HyperKind::SampleWeights { rho: 0.05 }),
    ];
    cases
        .into_iter()
        .map(|(name, data, hyper)| {
            let be = Cpu::new();
            let p = Glm::new(&be, &data, hyper);
            let mut s = Sampler::new(99);
            let lam = randn(&mut s, p.dim_x(), 0.7);
            let w = randn(&mut s, p.dim_y(), 1.0);
            let v = randn(&mut s, p.dim_y(), 1.0);
            let batch = s.batch(37, 11);
            let val_batch = s.batch(29, 9);
            Setup { name, be, p, lam, w, v, batch, val_batch }
        })
        .collect()
}

fn scalar(f: impl FnOnce(&std::cell::Cell<f64>)) -> f64 {
    let s = std::cell::Cell::new(0.0);
    f(&s);
    s.get()
}

/// Central difference of a scalar function along direction `dir` at `at`.
fn fd_dir(at: &[f64], dir: &[f64], f: impl Fn(&[f64]) -> f64) -> f64 {
    let plus: Vec<f64> = at.iter().zip(dir).map(|(a, d)| a + FD_STEP * d).collect();
    let minus: Vec<f64> = at.iter().zip(dir).map(|(a, d)| a - FD_STEP * d).collect();
    (f(&plus) - f(&minus)) / (2.0 * FD_STEP)
}

/// Central-difference gradient of a scalar function (coordinate by coordinate).
fn fd_grad(at: &[f64], f: impl Fn(&[f64]) -> f64) -> Vec<f64> {
    (0..at.len())
        .map(|j| {
            let mut e = vec![0.0; at.len()];
            e[j] = 1.0;
            fd_dir(at, &e, &f)
        })
        .collect()
}

/// Central-difference Jacobian-vector product of a vector function along `dir`.
fn fd_jvp(at: &[f64], dir: &[f64], f: impl Fn(&[f64]) -> Vec<f64>) -> Vec<f64> {
    let plus: Vec<f64> = at.iter().zip(dir).map(|(a, d)| a + FD_STEP * d).collect();
    let minus: Vec<f64> = at.iter().zip(dir).map(|(a, d)| a - FD_STEP * d).collect();
    f(&plus).iter().zip(f(&minus)).map(|(p, m)| (p - m) / (2.0 * FD_STEP)).collect()
}

/// Runs `check` for every problem configuration, on all rows and on a mini-batch.
fn for_every_problem(check: impl Fn(&Setup, Rows<'_, Vec<u32>>, Rows<'_, Vec<u32>>, String)) {
    for s in setups() {
        check(&s, Rows::All, Rows::All, format!("{} (all rows)", s.name));
        check(&s, Rows::Batch(&s.batch), Rows::Batch(&s.val_batch), format!("{} (mini-batch)", s.name));
    }
}

#[test]
fn inner_gradient_matches_finite_differences_of_inner_loss() {
    for_every_problem(|s, rows, _, what| {
        let mut g = s.be.zeros(s.p.dim_y(), "g");
        s.p.inner_grad(&s.be, &s.lam, &s.w, rows, &mut g);
        let fd = fd_grad(&s.w, |w| scalar(|out| s.p.inner_loss(&s.be, &s.lam, &w.to_vec(), rows, out)));
        let err = rel_err(&g, &fd);
        assert!(err < 1e-8, "{what}: ∇_w g vs FD rel err {err:e}");
    });
}

#[test]
fn hessian_vector_product_matches_finite_differences_of_gradient() {
    for_every_problem(|s, rows, _, what| {
        let mut hv = s.be.zeros(s.p.dim_y(), "hv");
        s.p.inner_hvp(&s.be, &s.lam, &s.w, &s.v, rows, &mut hv);
        let fd = fd_jvp(&s.w, &s.v, |w| {
            let mut g = s.be.zeros(s.p.dim_y(), "g");
            s.p.inner_grad(&s.be, &s.lam, &w.to_vec(), rows, &mut g);
            g
        });
        let err = rel_err(&hv, &fd);
        assert!(err < 1e-8, "{what}: H v vs FD rel err {err:e}");
    });
}

#[test]
fn mixed_product_matches_finite_differences_in_lambda() {
    // J[v] = ∇_λ ⟨∇_w g(w, λ), v⟩: the FD gradient in λ of that scalar.
    for_every_problem(|s, rows, _, what| {
        let mut jv = s.be.zeros(s.p.dim_x(), "jv");
        s.p.mixed_jvp(&s.be, &s.lam, &s.w, &s.v, rows, &mut jv);
        let fd = fd_grad(&s.lam, |lam| {
            let mut g = s.be.zeros(s.p.dim_y(), "g");
            s.p.inner_grad(&s.be, &lam.to_vec(), &s.w, rows, &mut g);
            g.iter().zip(&s.v).map(|(a, b)| a * b).sum()
        });
        let err = rel_err(&jv, &fd);
        assert!(err < 1e-8, "{what}: J v vs FD rel err {err:e}");
    });
}

#[test]
fn outer_gradient_matches_finite_differences_of_outer_loss() {
    for_every_problem(|s, _, val_rows, what| {
        let mut g = s.be.zeros(s.p.dim_y(), "g");
        s.p.outer_grad_y(&s.be, &s.lam, &s.w, val_rows, &mut g);
        let fd = fd_grad(&s.w, |w| scalar(|out| s.p.outer_loss(&s.be, &s.lam, &w.to_vec(), val_rows, out)));
        let err = rel_err(&g, &fd);
        assert!(err < 1e-8, "{what}: ∇_w f vs FD rel err {err:e}");
    });
}

#[test]
fn closed_form_hypergradient_matches_finite_differences_of_phi() {
    // Φ(λ) = f(w*(λ)) with w* by Cholesky: the exact hypergradient is its gradient.
    let be = Cpu::new();
    let data = RidgeData::synthetic(37, 29, 13, 0.3, 7);
    let p = Ridge::ridge(&be, &data);
    let lam = randn(&mut Sampler::new(99), 13, 0.7);
    let (exact, phi) = data.exact_hypergradient(&lam);
    let phi_of = |lam: &[f64]| data.exact_hypergradient(lam).1;
    assert!((phi - phi_of(&lam)).abs() < 1e-15);
    let fd = fd_grad(&lam, phi_of);
    let err = rel_err(&exact, &fd);
    assert!(err < 1e-7, "closed-form ∇Φ vs FD rel err {err:e}");
    // And the inner solution is stationary: ∇_w g(w*) = 0.
    let w_star = data.inner_solution(&lam);
    let mut g = be.zeros(13, "g");
    p.inner_grad(&be, &lam, &w_star, Rows::All, &mut g);
    assert!(common::norm(&g) < 1e-12, "‖∇_w g(w*)‖ = {:e}", common::norm(&g));
}

#[test]
fn fused_descent_and_neumann_steps_equal_gradient_and_hvp_steps() {
    for_every_problem(|s, rows, _, what| {
        let (alpha, eta) = (0.3, 0.7);
        // Fused: the problem's one-pass steps.
        let mut scratch = s.be.zeros(s.p.dim_y(), "scratch");
        let mut y = s.w.clone();
        s.p.inner_step(&s.be, &s.lam, &mut y, alpha, rows, &mut scratch);
        let mut r = s.v.clone();
        s.p.neumann_step(&s.be, &s.lam, &s.w, &mut r, eta, rows, &mut scratch);
        // Unfused: the oracles and an axpy.
        let mut g = s.be.zeros(s.p.dim_y(), "g");
        s.p.inner_grad(&s.be, &s.lam, &s.w, rows, &mut g);
        let y_ref: Vec<f64> = s.w.iter().zip(&g).map(|(w, g)| w - alpha * g).collect();
        s.p.inner_hvp(&s.be, &s.lam, &s.w, &s.v, rows, &mut g);
        let r_ref: Vec<f64> = s.v.iter().zip(&g).map(|(v, hv)| v - eta * hv).collect();
        assert!(rel_err(&y, &y_ref) < 1e-13, "{what}: fused inner step");
        assert!(rel_err(&r, &r_ref) < 1e-13, "{what}: fused Neumann step");
    });
}

#[test]
fn outer_x_gradient_with_a_penalty_matches_finite_differences_of_outer_loss() {
    // f(x, y) = data loss + (μ/2)‖x‖²: ∇_x f (added to what `out` holds) against the FD gradient
    // in x of f, on all rows and on a mini-batch (the penalty is whole on either); μ = 0 adds
    // nothing.
    let mu = 0.37;
    for s in setups() {
        let plain = s.p;
        let mut zero = vec![0.0; plain.dim_x()];
        plain.add_outer_grad_x(&s.be, &s.lam, &s.w, Rows::All, &mut zero);
        assert!(zero.iter().all(|&v| v == 0.0), "{}: μ = 0 should add nothing: {zero:?}", s.name);
        let p = plain.with_outer_penalty(mu);
        for (rows, what) in [(Rows::All, "all rows"), (Rows::Batch(&s.val_batch), "mini-batch")] {
            let start = randn(&mut Sampler::new(4), p.dim_x(), 1.0);
            let mut g = start.clone();
            p.add_outer_grad_x(&s.be, &s.lam, &s.w, rows, &mut g);
            let added: Vec<f64> = g.iter().zip(&start).map(|(a, b)| a - b).collect();
            let fd = fd_grad(&s.lam, |lam| scalar(|out| p.outer_loss(&s.be, &lam.to_vec(), &s.w, rows, out)));
            let err = rel_err(&added, &fd);
            assert!(err < 1e-8, "{} ({what}): ∇_x f vs FD rel err {err:e}", s.name);
        }
    }
}

#[test]
fn penalised_hypergradient_matches_finite_differences_of_phi() {
    // Φ(λ) = f(w*(λ), λ) with f = val_loss + (μ/2)‖λ‖², evaluated through the problem's
    // outer_loss at the Cholesky w*(λ); its central differences against the closed form
    // ∇Φ = μλ − J H⁻¹ ∇_w f and against the generic reference (exact.rs: Newton–CG, then
    // ∇_x f − J[v] through add_outer_grad_x).
    let be = Cpu::new();
    let mu = 0.6;
    let data = RidgeData::synthetic(37, 29, 13, 0.3, 7).with_outer_penalty(mu);
    let p = Ridge::ridge(&be, &data);
    let lam = randn(&mut Sampler::new(99), 13, 0.7);
    let phi = |lam: &[f64]| {
        let w = data.inner_solution(lam);
        scalar(|out| p.outer_loss(&be, &lam.to_vec(), &w, Rows::All, out))
    };
    let fd = fd_grad(&lam, phi);
    let (exact, phi_closed) = data.exact_hypergradient(&lam);
    assert!((phi_closed - phi(&lam)).abs() < 1e-14, "closed-form Φ {phi_closed} vs the problem's f(w*, λ) {}", phi(&lam));
    let err = rel_err(&exact, &fd);
    assert!(err < 1e-7, "penalised closed-form ∇Φ vs FD rel err {err:e}");
    let reference = pollster::block_on(bilevel_core::exact::exact_hypergradient(&be, &p, &lam, &vec![0.0; 13], 1e-12)).unwrap();
    let err = rel_err(&reference.hypergradient, &fd);
    assert!(err < 1e-7, "penalised Newton–CG reference ∇Φ vs FD rel err {err:e}");
    // The penalty's share is μλ exactly, and not negligible next to the data term here.
    let (plain, _) = RidgeData { outer_penalty: 0.0, ..data.clone() }.exact_hypergradient(&lam);
    let share: Vec<f64> = exact.iter().zip(&plain).map(|(a, b)| a - b).collect();
    let mu_lam: Vec<f64> = lam.iter().map(|l| mu * l).collect();
    assert!(rel_err(&share, &mu_lam) < 1e-12);
    assert!(common::norm(&mu_lam) > 0.1 * common::norm(&plain), "the penalty term should matter: ‖μλ‖ vs ‖∇Φ_0‖");
}
