//! The closed-form ridge hypergradient (plain and with an outer penalty) and the Newton–CG
//! reference against central finite differences of Φ(λ) = f(w*(λ), λ), in f64. Every oracle of
//! every problem is checked against finite differences by the public checker, in `check.rs`.

mod common;

use bilevel_core::cpu::CpuBackend;
use bilevel_core::problems::ridge::{Ridge, RidgeData};
use bilevel_core::problems::Problem;
use bilevel_core::sampler::Sampler;
use bilevel_core::{Backend, Rows};
use common::{randn, rel_err};

type Cpu = CpuBackend<f64>;
const FD_STEP: f64 = 1e-5;

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
