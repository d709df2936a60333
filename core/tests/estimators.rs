//! Hypergradient estimators against the closed form on ridge regression, in f64 on the CPU.

mod common;

use bilevel_core::algorithms::aid_cg::AidCg;
use bilevel_core::algorithms::stocbio::StocBiO;
use bilevel_core::algorithms::{AlgKind, Algorithm, Hyper};
use bilevel_core::cpu::CpuBackend;
use bilevel_core::problems::ridge::{Ridge, RidgeData};
use bilevel_core::sampler::Sampler;
use bilevel_core::toy::{ToyConfig, ToyRun};
use bilevel_core::Backend;
use common::{block, randn, rel_err};

type Cpu = CpuBackend<f64>;

fn hyper(t: usize, q: usize, batch: usize) -> Hyper {
    Hyper { t, q, eta: 0.5, alpha: 0.2, beta: 1.0, batch_size: batch, val_batch_size: batch }
}

/// One estimate at λ, starting the inner loop from `y0`.
fn estimate(alg: &mut dyn Algorithm<Cpu, Ridge<Cpu>>, be: &Cpu, p: &Ridge<Cpu>, lam: &[f64], y0: &[f64], seed: u64) -> Vec<f64> {
    let x = be.vector_from(lam, "x");
    let mut y = be.vector_from(y0, "y");
    let mut h = be.zeros(lam.len(), "h");
    alg.inner_and_hypergradient(be, p, &x, &mut y, &mut h, &mut Sampler::new(seed));
    h
}

#[test]
fn aid_cg_with_enough_iterations_matches_the_closed_form() {
    let be = Cpu::new();
    let data = RidgeData::synthetic(120, 90, 17, 0.4, 3);
    let p = Ridge::ridge(&be, &data);
    let lam = randn(&mut Sampler::new(4), 17, 0.5);
    let (exact, _) = data.exact_hypergradient(&lam);
    // T = 3000 full-batch steps converge the inner problem; K = 2d CG iterations solve H v = ∇f.
    let mut alg = AidCg::new(&be, &p, hyper(3000, 34, 1));
    let h = estimate(&mut alg, &be, &p, &lam, &[0.0; 17], 0);
    let err = rel_err(&h, &exact);
    assert!(err < 1e-6, "AID-CG vs closed form: rel err {err:e}");

    // And with few CG iterations it is visibly inexact, so the test above can fail.
    let mut short = AidCg::new(&be, &p, hyper(3000, 2, 1));
    let err_short = rel_err(&estimate(&mut short, &be, &p, &lam, &[0.0; 17], 0), &exact);
    assert!(err_short > 1e-3, "K = 2 should not be exact (rel err {err_short:e})");
}

/// stocBiO's mean relative error over seeds, started at the exact inner solution.
fn stocbio_mean_error(q: usize, batch: usize, eta: f64) -> f64 {
    let be = Cpu::new();
    let data = RidgeData::synthetic(400, 400, 12, 0.4, 11);
    let p = Ridge::ridge(&be, &data);
    let lam = randn(&mut Sampler::new(12), 12, 0.3);
    let (exact, _) = data.exact_hypergradient(&lam);
    let w_star = data.inner_solution(&lam);
    let seeds = 24;
    let mut total = 0.0;
    for seed in 0..seeds {
        let mut alg = StocBiO::new(&be, &p, Hyper { alpha: 0.05, eta, ..hyper(5, q, batch) });
        total += rel_err(&estimate(&mut alg, &be, &p, &lam, &w_star, seed), &exact);
    }
    total / seeds as f64
}

#[test]
fn stocbio_error_shrinks_as_q_grows() {
    // A small η makes the Neumann truncation (1 − ημ)^Q the dominant error, and large batches
    // keep the sampling variance below it.
    let errors: Vec<f64> = [1, 3, 10, 30].iter().map(|&q| stocbio_mean_error(q, 300, 0.1)).collect();
    for pair in errors.windows(2) {
        assert!(pair[1] < pair[0], "mean error should fall with Q: {errors:?}");
    }
    assert!(errors[3] < 0.5 * errors[0], "Q = 30 should at least halve the error of Q = 1: {errors:?}");
}

#[test]
fn stocbio_error_shrinks_as_batches_grow() {
    let errors: Vec<f64> = [8, 32, 128].iter().map(|&b| stocbio_mean_error(30, b, 0.5)).collect();
    for pair in errors.windows(2) {
        assert!(pair[1] < pair[0], "mean error should fall with the batch size: {errors:?}");
    }
}

#[test]
fn outer_loop_descends_the_exact_objective() {
    for alg in AlgKind::ALL {
        let be = Cpu::new();
        let config = ToyConfig {
            alg,
            hyper: Hyper { beta: 20.0, ..hyper(10, 10, 64) },
            seed: 1,
            epochs: 30,
            n_train: 300,
            n_val: 300,
            features: 20,
            noise: 0.5,
            record_vectors: false,
        };
        let mut run = ToyRun::new(&be, config).unwrap();
        let mut records = Vec::new();
        while !run.done() {
            records.push(block(run.step(&|| 0.0)).unwrap());
        }
        let (first, last) = (records[0].exact_outer_loss, records.last().unwrap().exact_outer_loss);
        assert!(last < first, "{alg}: Φ should decrease: {first} -> {last}");
    }
}
