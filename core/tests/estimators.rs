//! Hypergradient estimators against the closed form on ridge regression, in f64 on the CPU.

mod common;

use bilevel_core::algorithms::saba::{MemoryInit, Saba};
use bilevel_core::algorithms::{AlgKind, Algorithm, Hyper, Step};
use bilevel_core::cpu::CpuBackend;
use bilevel_core::outer::OuterOpt;
use bilevel_core::problems::ridge::{Ridge, RidgeData};
use bilevel_core::sampler::Sampler;
use bilevel_core::toy::{ToyConfig, ToyRun};
use bilevel_core::Backend;
use common::{block, randn, rel_err};

type Cpu = CpuBackend<f64>;

fn hyper(t: usize, q: usize, batch: usize) -> Hyper {
    Hyper { t, q, eta: 0.5, alpha: 0.2, beta: 1.0, batch_size: batch, val_batch_size: batch }
}

struct Case {
    be: Cpu,
    data: RidgeData,
    p: Ridge<Cpu>,
    lam: Vec<f64>,
    exact: Vec<f64>,
}

fn case(n: usize, d: usize, seed: u64) -> Case {
    penalised_case(n, d, seed, 0.0)
}

/// [`case`] with the outer penalty (μ/2)‖λ‖² in f (the closed form includes it).
fn penalised_case(n: usize, d: usize, seed: u64, mu: f64) -> Case {
    let be = Cpu::new();
    let data = RidgeData::synthetic(n, n * 3 / 4, d, 0.4, seed).with_outer_penalty(mu);
    let p = Ridge::ridge(&be, &data);
    let lam = randn(&mut Sampler::new(seed + 1), d, 0.5);
    let (exact, _) = data.exact_hypergradient(&lam);
    Case { be, data, p, lam, exact }
}

/// `iters` applications of the algorithm at fixed λ from `y0` (the last estimate), and its
/// relative error against the closed form.
fn rel_error(c: &Case, alg: AlgKind, h: Hyper, y0: &[f64], iters: usize, seed: u64) -> f64 {
    let mut a = alg.build(&c.be, &c.p, &h);
    let x = c.be.vector_from(&c.lam, "x");
    let mut y = c.be.vector_from(y0, "y");
    let mut est = c.be.zeros(c.lam.len(), "h");
    let mut rng = Sampler::new(seed);
    for k in 0..iters {
        a.inner_and_hypergradient(&c.be, &c.p, Step { k, x: &x, y: &mut y, h: &mut est, rng: &mut rng });
    }
    rel_err(&est, &c.exact)
}

#[test]
fn aid_cg_with_enough_iterations_matches_the_closed_form() {
    let c = case(120, 17, 3);
    // T = 3000 full-batch steps converge the inner problem; K = 2d CG iterations solve H v = ∇f.
    let err = rel_error(&c, AlgKind::AidCg, hyper(3000, 34, 1), &[0.0; 17], 1, 0);
    assert!(err < 1e-6, "AID-CG vs closed form: rel err {err:e}");
    // With few CG iterations it is visibly inexact, so the test above can fail.
    let err_short = rel_error(&c, AlgKind::AidCg, hyper(3000, 2, 1), &[0.0; 17], 1, 0);
    assert!(err_short > 1e-3, "K = 2 should not be exact (rel err {err_short:e})");
}

#[test]
fn aid_fp_converges_to_the_closed_form_as_k_grows() {
    let c = case(120, 17, 5);
    let errors: Vec<f64> = [5, 50, 500].iter().map(|&k| rel_error(&c, AlgKind::AidFp, hyper(3000, k, 1), &[0.0; 17], 1, 0)).collect();
    assert!(errors[0] > errors[1] && errors[1] > errors[2], "AID-FP error should fall with K: {errors:?}");
    assert!(errors[2] < 1e-6, "AID-FP with K = 500: {errors:?}");
}

#[test]
fn reverse_converges_to_the_closed_form_as_t_and_k_grow() {
    // From y_0 = 0, backpropagating through all T steps: the ITD hypergradient of y_T(λ).
    let c = case(120, 17, 7);
    let errors: Vec<f64> = [5, 40, 400].iter().map(|&t| rel_error(&c, AlgKind::Reverse, hyper(t, t, 1), &[0.0; 17], 1, 0)).collect();
    assert!(errors[0] > errors[1] && errors[1] > errors[2], "reverse error should fall with T = K: {errors:?}");
    assert!(errors[2] < 1e-6, "reverse with T = K = 400: {errors:?}");
}

#[test]
fn reverse_with_checkpoints_equals_reverse_through_stored_iterates() {
    // The same T and K with 8 checkpoints (recomputation) and with K ≤ 8 (every iterate kept)
    // must agree: differentiate T = 6 steps with K = 6 vs the direct formula with K = T = 24
    // checkpointed — compare K = 24 against a run of T = 24, K = 24 started from y_18's state by
    // splitting: simpler, compare against finite differences of f(y_T(λ)) in λ.
    let c = case(60, 9, 9);
    let h = hyper(24, 24, 1);
    let y0: Vec<f64> = randn(&mut Sampler::new(3), 9, 0.3);
    let mut a = AlgKind::Reverse.build(&c.be, &c.p, &h);
    let x = c.be.vector_from(&c.lam, "x");
    let mut est = c.be.zeros(9, "h");
    a.inner_and_hypergradient(
        &c.be,
        &c.p,
        Step { k: 0, x: &x, y: &mut c.be.vector_from(&y0, "y"), h: &mut est, rng: &mut Sampler::new(0) },
    );
    // f(y_T(λ)) by running T plain GD steps.
    let f_of = |lam: &[f64]| {
        let mut w = y0.clone();
        for _ in 0..24 {
            let mut g = vec![0.0; 9];
            bilevel_core::problems::Problem::inner_grad(&c.p, &c.be, &lam.to_vec(), &w, bilevel_core::Rows::All, &mut g);
            w.iter_mut().zip(&g).for_each(|(wi, gi)| *wi -= 0.2 * gi);
        }
        c.data.outer_grad_loss(&w).1
    };
    let fd: Vec<f64> = (0..9)
        .map(|j| {
            let (mut p, mut m) = (c.lam.clone(), c.lam.clone());
            p[j] += 1e-5;
            m[j] -= 1e-5;
            (f_of(&p) - f_of(&m)) / 2e-5
        })
        .collect();
    let err = rel_err(&est, &fd);
    assert!(err < 1e-7, "checkpointed reverse vs FD of f(y_T(λ)): rel err {err:e}");
}

#[test]
fn hoag_reaches_the_closed_form_once_its_tolerance_is_tight() {
    let c = case(120, 17, 11);
    // After 150 outer iterations at fixed λ the tolerance is 1e-2·0.9^150 ≈ 1.4e-9.
    let err = rel_error(&c, AlgKind::Hoag, hyper(200, 40, 1), &[0.0; 17], 150, 0);
    assert!(err < 1e-6, "HOAG vs closed form: rel err {err:e}");
    let err_early = rel_error(&c, AlgKind::Hoag, hyper(200, 40, 1), &[0.0; 17], 1, 0);
    assert!(err_early > 10.0 * err, "a loose tolerance should be visibly less exact ({err_early:e} vs {err:e})");
}

/// Mean relative error over seeds of a stochastic estimator started at the exact inner solution.
fn mean_error(c: &Case, alg: AlgKind, h: &Hyper, seeds: u64) -> f64 {
    let w_star = c.data.inner_solution(&c.lam);
    (0..seeds).map(|s| rel_error(c, alg, h.clone(), &w_star, 1, s)).sum::<f64>() / seeds as f64
}

#[test]
fn stocbio_error_shrinks_as_q_grows() {
    // A small η makes the Neumann truncation (1 − ημ)^Q the dominant error, and large batches
    // keep the sampling variance below it.
    let c = case(400, 12, 11);
    let errors: Vec<f64> = [1, 3, 10, 30]
        .iter()
        .map(|&q| mean_error(&c, AlgKind::StocBiO, &Hyper { alpha: 0.05, eta: 0.1, ..hyper(5, q, 300) }, 24))
        .collect();
    for pair in errors.windows(2) {
        assert!(pair[1] < pair[0], "mean error should fall with Q: {errors:?}");
    }
    assert!(errors[3] < 0.5 * errors[0], "Q = 30 should at least halve the error of Q = 1: {errors:?}");
}

#[test]
fn stocbio_error_shrinks_as_batches_grow() {
    // (BSA's error is dominated by its random truncation, not by the batches; its mean is
    // tested below.)
    let c = case(400, 12, 11);
    for alg in [AlgKind::StocBiO] {
        let errors: Vec<f64> = [8, 32, 128].iter().map(|&b| mean_error(&c, alg, &Hyper { alpha: 0.05, ..hyper(5, 30, b) }, 24)).collect();
        for pair in errors.windows(2) {
            assert!(pair[1] < pair[0], "{alg}: mean error should fall with the batch size: {errors:?}");
        }
    }
}

#[test]
fn soba_converges_to_the_closed_form_at_a_fixed_lambda() {
    // At fixed λ, SOBA's y → w*, v → −H⁻¹∇f and D_x → ∇Φ; full batches remove the noise.
    let c = case(150, 10, 17);
    let err = rel_error(&c, AlgKind::Soba, Hyper { eta: 0.3, alpha: 0.3, ..hyper(1, 1, 150) }, &[0.0; 10], 3000, 0);
    assert!(err < 1e-6, "SOBA at a fixed λ: rel err {err:e}");
}

#[test]
fn variance_reduced_solvers_converge_to_the_closed_form_at_a_fixed_lambda_on_mini_batches() {
    // Variance reduction: with batches of 15 of 150 rows (SOBA's estimate would keep its
    // batch noise), SABA's and SRBA's D_x still converge to ∇Φ itself — at every seed.
    let c = case(150, 10, 17);
    for alg in [AlgKind::Saba, AlgKind::Srba] {
        for seed in 0..3 {
            let err = rel_error(&c, alg, Hyper { alpha: 0.3, ..hyper(1, 1, 15) }, &[0.0; 10], 4000, seed);
            assert!(err < 1e-6, "{alg} at a fixed λ, seed {seed}: rel err {err:e}");
        }
    }
    // Benchopt's zero start: biased until every batch has been seen, then the same limit.
    let mut saba = Saba::new(&c.be, &c.p, Hyper { alpha: 0.3, ..hyper(1, 1, 15) });
    saba.init = MemoryInit::Zero;
    let (x, mut y, mut est) = (c.be.vector_from(&c.lam, "x"), c.be.zeros(10, "y"), c.be.zeros(10, "h"));
    let mut rng = Sampler::new(0);
    for k in 0..4000 {
        saba.inner_and_hypergradient(&c.be, &c.p, Step { k, x: &x, y: &mut y, h: &mut est, rng: &mut rng });
    }
    let err = rel_err(&est, &c.exact);
    assert!(err < 1e-6, "SABA from a zero memory at a fixed λ: rel err {err:e}");
    let soba = rel_error(&c, AlgKind::Soba, Hyper { eta: 0.3, alpha: 0.3, ..hyper(1, 1, 15) }, &[0.0; 10], 4000, 0);
    assert!(soba > 1e-3, "SOBA on the same batches keeps its noise: rel err {soba:e}");
}

#[test]
fn every_algorithm_and_optimiser_descends_the_exact_objective() {
    for alg in AlgKind::ALL {
        for opt in [OuterOpt::Sgd { momentum: 0.0 }, OuterOpt::Sgd { momentum: 0.5 }, OuterOpt::adam()] {
            let be = Cpu::new();
            let beta = if matches!(opt, OuterOpt::Adam(_)) { 0.05 } else { 20.0 };
            let config = ToyConfig {
                alg,
                hyper: Hyper { beta, ..hyper(10, 10, 64) },
                opt,
                seed: 1,
                epochs: 40,
                n_train: 300,
                n_val: 300,
                features: 20,
                noise: 0.5,
                outer_penalty: 0.0,
                record_vectors: false,
            };
            let mut run = ToyRun::new(&be, config).unwrap();
            let mut records = Vec::new();
            while !run.done() {
                records.push(block(run.step(&|| 0.0)).unwrap());
            }
            let (first, last) = (records[0].exact_outer_loss, records.last().unwrap().exact_outer_loss);
            assert!(last < first, "{alg} with {opt:?}: Φ should decrease: {first} -> {last}");
        }
    }
}

#[test]
fn exact_on_logreg_agrees_with_finite_differences_through_a_solved_inner_problem() {
    use bilevel_core::backend::LossKind;
    use bilevel_core::exact::exact_hypergradient;
    use bilevel_core::problems::glm::{Glm, HyperKind};
    use bilevel_core::problems::synthetic::SyntheticSpec;
    let be = Cpu::new();
    let data = SyntheticSpec {
        n_train: 150,
        n_val: 90,
        features: 6,
        classes: 1,
        loss: LossKind::Logistic,
        nnz_per_row: None,
        bias: false,
        seed: 2,
    }
    .generate();
    let p = Glm::new(&be, &data, HyperKind::FeatureRidge { scale: 1.0 });
    let lam = randn(&mut Sampler::new(5), 6, 0.5).iter().map(|v| v - 2.0).collect::<Vec<_>>();
    let y0 = vec![0.0; 6];
    let phi = |lam: &[f64]| block(exact_hypergradient(&be, &p, &lam.to_vec(), &y0, 1e-12)).unwrap().outer_loss;
    let e = block(exact_hypergradient(&be, &p, &lam, &y0, 1e-12)).unwrap();
    assert!(e.inner_grad_norm <= 1e-12, "inner problem not solved: {}", e.inner_grad_norm);
    let fd: Vec<f64> = (0..6)
        .map(|j| {
            let (mut a, mut b) = (lam.clone(), lam.clone());
            a[j] += 1e-5;
            b[j] -= 1e-5;
            (phi(&a) - phi(&b)) / 2e-5
        })
        .collect();
    let err = rel_err(&e.hypergradient, &fd);
    assert!(err < 1e-6, "exact vs FD of Φ: rel err {err:e}");
}

#[test]
fn reference_stocbio_versions_follow_their_neumann_sums() {
    use bilevel_core::algorithms::stocbio::Reference;
    use bilevel_core::problems::Problem;
    use bilevel_core::Rows;
    // Full batches make the batch lists single: v_0 and the HVP come from the whole validation
    // set, with g's Hessian evaluated there. With Q = 1 and r_1 = (I − η H_val) v_0:
    // HEAD: v_Q = η r_1 + r_1;  v1: v_Q = η v_0 + r_1;  ĥ = −J[v_Q].
    let c = case(50, 6, 19);
    let (eta, y) = (0.4, c.data.inner_solution(&c.lam));
    let h = Hyper { t: 0, q: 1, eta, alpha: 0.1, beta: 1.0, batch_size: 50, val_batch_size: 37 };
    let val = c.p.val_as_train().unwrap();
    let mut v0 = vec![0.0; 6];
    c.p.outer_grad_y(&c.be, &c.lam, &y, Rows::All, &mut v0);
    let mut hv = vec![0.0; 6];
    val.inner_hvp(&c.be, &c.lam, &y, &v0, Rows::All, &mut hv);
    let r1: Vec<f64> = v0.iter().zip(&hv).map(|(v, h)| v - eta * h).collect();
    let j = |v: &[f64]| {
        let mut out = vec![0.0; 6];
        c.p.mixed_jvp(&c.be, &c.lam, &y, &v.to_vec(), Rows::All, &mut out);
        out.iter().map(|o| -o).collect::<Vec<f64>>()
    };
    let head_want = j(&r1.iter().map(|r| (1.0 + eta) * r).collect::<Vec<_>>());
    let v1_want = j(&v0.iter().zip(&r1).map(|(v, r)| eta * v + r).collect::<Vec<_>>());
    for (version, want) in [(Reference::Head, head_want), (Reference::V1, v1_want)] {
        let mut a = AlgKind::StocBiO.with_reference(version).unwrap().build(&c.be, &c.p, &h);
        let mut est = vec![0.0; 6];
        a.inner_and_hypergradient(&c.be, &c.p, Step { k: 0, x: &c.lam, y: &mut y.clone(), h: &mut est, rng: &mut Sampler::new(1) });
        assert!(rel_err(&est, &want) < 1e-12, "{version:?}: {est:?} vs {want:?}");
    }
    // Only stocBiO has reference versions.
    assert!(AlgKind::AidCg.with_reference(Reference::V1).is_err());
}

/// Every algorithm, the reference code's stocBiO versions included.
fn every_kind() -> Vec<AlgKind> {
    use bilevel_core::algorithms::stocbio::Reference;
    AlgKind::ALL.into_iter().chain([Reference::V1, Reference::Head].map(AlgKind::StocBiOReference)).collect()
}

/// The estimate after `iters` applications of `alg` at the case's λ from `y0`, seeded.
fn estimate(c: &Case, alg: AlgKind, h: &Hyper, y0: &[f64], iters: usize, seed: u64) -> Vec<f64> {
    let mut a = alg.build(&c.be, &c.p, h);
    let mut y = y0.to_vec();
    let mut est = vec![0.0; c.lam.len()];
    let mut rng = Sampler::new(seed);
    for k in 0..iters {
        a.inner_and_hypergradient(&c.be, &c.p, Step { k, x: &c.lam, y: &mut y, h: &mut est, rng: &mut rng });
    }
    est
}

#[test]
fn every_algorithm_adds_the_outer_penalty_gradient_once() {
    // The penalty changes neither y's nor any linear system's iterates, nor the draws: with the
    // same seed, each estimate with μ > 0 is the μ = 0 one plus ∇_x f = μλ, added once. The
    // reference stocBiO versions return −J[v_Q] with no ∇_x f term, as the reference code does.
    let mu = 0.8;
    let (plain, penalised) = (case(90, 8, 21), penalised_case(90, 8, 21, mu));
    let mu_lam: Vec<f64> = penalised.lam.iter().map(|l| mu * l).collect();
    let h = Hyper { batch_size: 16, val_batch_size: 12, ..hyper(6, 4, 16) };
    for alg in every_kind() {
        let (e0, e_mu) = (estimate(&plain, alg, &h, &[0.0; 8], 3, 5), estimate(&penalised, alg, &h, &[0.0; 8], 3, 5));
        let added: Vec<f64> = e_mu.iter().zip(&e0).map(|(a, b)| a - b).collect();
        let want = if matches!(alg, AlgKind::StocBiOReference(_)) { vec![0.0; 8] } else { mu_lam.clone() };
        let off = common::norm(&added.iter().zip(&want).map(|(a, b)| a - b).collect::<Vec<_>>());
        assert!(off <= 1e-12 * (common::norm(&e0) + common::norm(&mu_lam)), "{alg}: added {added:?}, want {want:?}");
    }
}

#[test]
fn deterministic_algorithms_reach_the_penalised_closed_form() {
    // With long inner loops and enough CG / fixed-point / backprop steps, each estimate is the
    // penalised ∇Φ = μλ − J H⁻¹ ∇_w f, where the μ = 0 one would be off by ‖μλ‖.
    let mu = 0.5;
    let c = penalised_case(120, 17, 3, mu);
    let off_without = common::norm(&c.lam.iter().map(|l| mu * l).collect::<Vec<_>>()) / common::norm(&c.exact);
    assert!(off_without > 0.1, "the penalty should matter here: {off_without}");
    for (alg, h, iters) in [
        (AlgKind::AidCg, hyper(3000, 34, 1), 1),
        (AlgKind::AidFp, hyper(3000, 500, 1), 1),
        (AlgKind::Reverse, hyper(400, 400, 1), 1),
        (AlgKind::Hoag, hyper(200, 40, 1), 150),
    ] {
        let err = rel_error(&c, alg, h, &[0.0; 17], iters, 0);
        assert!(err < 1e-6, "{alg} vs the penalised closed form: rel err {err:e}");
    }
}

#[test]
fn stochastic_algorithms_descend_to_the_penalised_optimum() {
    // The outer loop with μ > 0 drives the penalised ∇Φ_μ towards 0; the same run on the plain
    // problem settles where ∇Φ_μ = μλ is not small. (The reference stocBiO versions have no
    // ∇_x f term by design; see the test above.)
    let mu = 0.05;
    let run_to_end = |alg: AlgKind, outer_penalty: f64| {
        let be = Cpu::new();
        let config = ToyConfig {
            alg,
            hyper: Hyper { beta: 20.0, ..hyper(10, 10, 128) },
            opt: OuterOpt::Sgd { momentum: 0.0 },
            seed: 4,
            epochs: 300,
            n_train: 300,
            n_val: 300,
            features: 10,
            noise: 0.5,
            outer_penalty,
            record_vectors: false,
        };
        let mut run = ToyRun::new(&be, config).unwrap();
        while !run.done() {
            block(run.step(&|| 0.0)).unwrap();
        }
        let lam = block(be.read_vector(&run.outer.x)).unwrap();
        (run.data.clone().with_outer_penalty(mu), lam)
    };
    for alg in [AlgKind::StocBiO, AlgKind::Bsa, AlgKind::Ttsa, AlgKind::Soba] {
        let (data, lam_mu) = run_to_end(alg, mu);
        let (_, lam_0) = run_to_end(alg, 0.0);
        let grad = |lam: &[f64]| common::norm(&data.exact_hypergradient(lam).0);
        let (start, with, without) = (grad(&[0.0; 10]), grad(&lam_mu), grad(&lam_0));
        assert!(with < 0.2 * start && with < 0.5 * without, "{alg}: ‖∇Φ_μ‖ from {start:.3e} to {with:.3e} (plain run: {without:.3e})");
    }
}

#[test]
fn ma_soba_and_mrbo_converge_to_the_closed_form_at_a_fixed_lambda() {
    // At fixed λ and full batches the previous point's corrections cancel exactly, so MRBO's
    // estimate is stocBiO's at its current y (→ w*), whose Q-term series converges for Q large;
    // MA-SOBA's average of SOBA's D_x → ∇Φ as SOBA's does.
    let c = case(150, 10, 17);
    let err = rel_error(&c, AlgKind::MaSoba, Hyper { eta: 0.3, alpha: 0.3, ..hyper(1, 1, 150) }, &[0.0; 10], 3000, 0);
    assert!(err < 1e-6, "MA-SOBA at a fixed λ: rel err {err:e}");
    let err = rel_error(&c, AlgKind::Mrbo, Hyper { eta: 0.3, alpha: 0.3, ..hyper(1, 200, 150) }, &[0.0; 10], 3000, 0);
    assert!(err < 1e-6, "MRBO at a fixed λ: rel err {err:e}");
}

#[test]
fn sustain_averages_its_random_truncations_towards_the_closed_form() {
    // At fixed λ and full batches SUSTAIN's hypergradient momentum is an exponential average
    // (weights η_k = 0.5/(k+1)^{2/3}) of Ghadimi–Wang estimates, unbiased for the truncated
    // series: its error falls as the average window grows, far below one estimate's.
    let c = case(150, 10, 17);
    let h = Hyper { eta: 0.3, alpha: 0.3, ..hyper(1, 60, 150) };
    let single = mean_error(&c, AlgKind::Bsa, &h, 8);
    let errors: Vec<f64> = [300, 3000].iter().map(|&k| rel_error(&c, AlgKind::Sustain, h.clone(), &[0.0; 10], k, 1)).collect();
    assert!(
        errors[1] < errors[0] && errors[1] < 0.2 * single && errors[1] < 0.1,
        "SUSTAIN after 300, 3000 iterations: {errors:?} (one estimate: {single:.3})"
    );
}
