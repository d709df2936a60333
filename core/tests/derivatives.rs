//! Every oracle of the ridge problem against central finite differences, in f64 on the CPU
//! reference backend, on the full data and on a mini-batch. And the closed-form hypergradient
//! against finite differences of Φ(λ) = f(w*(λ)).

mod common;

use bilevel_core::cpu::CpuBackend;
use bilevel_core::problems::ridge::{Ridge, RidgeData};
use bilevel_core::problems::Problem;
use bilevel_core::sampler::Sampler;
use bilevel_core::{Backend, Rows};
use common::{randn, rel_err};

type Cpu = CpuBackend<f64>;
const FD_STEP: f64 = 1e-5;

struct Setup {
    be: Cpu,
    data: RidgeData,
    p: Ridge<Cpu>,
    lam: Vec<f64>,
    w: Vec<f64>,
    v: Vec<f64>,
    batch: Vec<u32>,
}

fn setup() -> Setup {
    let be = Cpu::new();
    let data = RidgeData::synthetic(37, 29, 13, 0.3, 7);
    let p = Ridge::new(&be, &data);
    let mut s = Sampler::new(99);
    let lam = randn(&mut s, 13, 0.7);
    let w = randn(&mut s, 13, 1.0);
    let v = randn(&mut s, 13, 1.0);
    let batch = s.batch(37, 11);
    Setup { be, data, p, lam, w, v, batch }
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

fn for_both_row_sets(s: &Setup, check: impl Fn(Rows<'_, Vec<u32>>, &str)) {
    check(Rows::All, "all rows");
    check(Rows::Batch(&s.batch), "mini-batch");
}

#[test]
fn inner_gradient_matches_finite_differences_of_inner_loss() {
    let s = setup();
    for_both_row_sets(&s, |rows, what| {
        let mut g = s.be.zeros(13, "g");
        s.p.inner_grad(&s.be, &s.lam, &s.w, rows, &mut g);
        let fd = fd_grad(&s.w, |w| scalar(|out| s.p.inner_loss(&s.be, &s.lam, &w.to_vec(), rows, out)));
        let err = rel_err(&g, &fd);
        assert!(err < 1e-8, "{what}: ∇_w g vs FD rel err {err:e}");
    });
}

#[test]
fn hessian_vector_product_matches_finite_differences_of_gradient() {
    let s = setup();
    for_both_row_sets(&s, |rows, what| {
        let mut hv = s.be.zeros(13, "hv");
        s.p.inner_hvp(&s.be, &s.lam, &s.w, &s.v, rows, &mut hv);
        let fd = fd_jvp(&s.w, &s.v, |w| {
            let mut g = s.be.zeros(13, "g");
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
    let s = setup();
    for_both_row_sets(&s, |rows, what| {
        let mut jv = s.be.zeros(13, "jv");
        s.p.mixed_jvp(&s.be, &s.lam, &s.w, &s.v, rows, &mut jv);
        let fd = fd_grad(&s.lam, |lam| {
            let mut g = s.be.zeros(13, "g");
            s.p.inner_grad(&s.be, &lam.to_vec(), &s.w, rows, &mut g);
            g.iter().zip(&s.v).map(|(a, b)| a * b).sum()
        });
        let err = rel_err(&jv, &fd);
        assert!(err < 1e-8, "{what}: J v vs FD rel err {err:e}");
    });
}

#[test]
fn outer_gradient_matches_finite_differences_of_outer_loss() {
    let s = setup();
    let val_batch = Sampler::new(5).batch(29, 9);
    for rows in [Rows::All, Rows::Batch(&val_batch)] {
        let mut g = s.be.zeros(13, "g");
        s.p.outer_grad_y(&s.be, &s.lam, &s.w, rows, &mut g);
        let fd = fd_grad(&s.w, |w| scalar(|out| s.p.outer_loss(&s.be, &s.lam, &w.to_vec(), rows, out)));
        let err = rel_err(&g, &fd);
        assert!(err < 1e-8, "∇_w f vs FD rel err {err:e}");
    }
}

#[test]
fn closed_form_hypergradient_matches_finite_differences_of_phi() {
    // Φ(λ) = f(w*(λ)) with w* by Cholesky: the exact hypergradient is its gradient.
    let s = setup();
    let (exact, phi) = s.data.exact_hypergradient(&s.lam);
    let phi_of = |lam: &[f64]| s.data.exact_hypergradient(lam).1;
    assert!((phi - phi_of(&s.lam)).abs() < 1e-15);
    let fd = fd_grad(&s.lam, phi_of);
    let err = rel_err(&exact, &fd);
    assert!(err < 1e-7, "closed-form ∇Φ vs FD rel err {err:e}");
    // And the inner solution is stationary: ∇_w g(w*) = 0.
    let w_star = s.data.inner_solution(&s.lam);
    let mut g = s.be.zeros(13, "g");
    s.p.inner_grad(&s.be, &s.lam, &w_star, Rows::All, &mut g);
    assert!(common::norm(&g) < 1e-12, "‖∇_w g(w*)‖ = {:e}", common::norm(&g));
}
