//! Data-chosen step sizes: the curvature estimate against the exact top eigenvalue of the
//! inner Hessian, and runs that diverge with a constant step but not with `AutoSteps`.

use bilevel_core::algorithms::{AlgKind, Hyper};
use bilevel_core::cpu::CpuBackend;
use bilevel_core::outer::OuterOpt;
use bilevel_core::problems::ridge::{Ridge, RidgeData};
use bilevel_core::steps::{unstable_step_warning, AutoSteps, Curvature};
use bilevel_core::toy::{ToyConfig, ToyRun};
use bilevel_core::Backend;

/// H = XᵀX/n + diag e^λ of the toy ridge problem, dense, in f64.
fn ridge_hessian(data: &RidgeData, lambda: &[f64], rows: &[usize]) -> Vec<f64> {
    let d = data.d;
    let mut h = vec![0.0; d * d];
    for &i in rows {
        let xi = &data.x_train[i * d..(i + 1) * d];
        for a in 0..d {
            for b in 0..d {
                h[a * d + b] += xi[a] * xi[b] / rows.len() as f64;
            }
        }
    }
    for j in 0..d {
        h[j * d + j] += lambda[j].exp();
    }
    h
}

/// The largest eigenvalue of a symmetric matrix by cyclic Jacobi rotations (exact to round-off).
fn top_eigenvalue(mut a: Vec<f64>, d: usize) -> f64 {
    for _ in 0..100 {
        let off: f64 = (0..d).flat_map(|p| (0..d).filter(move |&q| q != p).map(move |q| (p, q))).map(|(p, q)| a[p * d + q].powi(2)).sum();
        if off < 1e-24 {
            break;
        }
        for p in 0..d {
            for q in p + 1..d {
                let apq = a[p * d + q];
                if apq.abs() < 1e-300 {
                    continue;
                }
                let theta = (a[q * d + q] - a[p * d + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let (c, s) = (1.0 / (t * t + 1.0).sqrt(), t / (t * t + 1.0).sqrt());
                for k in 0..d {
                    let (akp, akq) = (a[k * d + p], a[k * d + q]);
                    a[k * d + p] = c * akp - s * akq;
                    a[k * d + q] = s * akp + c * akq;
                }
                for k in 0..d {
                    let (apk, aqk) = (a[p * d + k], a[q * d + k]);
                    a[p * d + k] = c * apk - s * aqk;
                    a[q * d + k] = s * apk + c * aqk;
                }
            }
        }
    }
    (0..d).map(|i| a[i * d + i]).fold(f64::MIN, f64::max)
}

#[test]
fn full_batch_estimate_matches_the_exact_top_eigenvalue() {
    let be = CpuBackend::<f64>::new();
    let data = RidgeData::synthetic(300, 100, 12, 0.1, 3);
    let p = Ridge::ridge(&be, &data);
    // λ spread over two decades of e^λ, so the penalty moves the top eigenvector off XᵀX's.
    let lambda: Vec<f64> = (0..12).map(|j| -2.0 + 0.35 * j as f64).collect();
    let x = be.vector_from(&lambda, "x");
    let y = be.zeros(12, "y");
    let exact = top_eigenvalue(ridge_hessian(&data, &lambda, &(0..300).collect::<Vec<_>>()), 12);
    let estimate = pollster::block_on(Curvature::new(&be, 12, 0).estimate(&be, &p, &x, &y, None, 200)).unwrap();
    assert!((estimate - exact).abs() <= 1e-6 * exact, "estimate {estimate} vs exact {exact}");
    // Power iteration approaches L from below: the default iteration count is close already.
    let quick = pollster::block_on(Curvature::new(&be, 12, 1).estimate(&be, &p, &x, &y, None, 0)).unwrap();
    assert!(quick <= exact * (1.0 + 1e-9) && quick >= 0.9 * exact, "default-count estimate {quick} vs exact {exact}");
}

#[test]
fn batch_estimate_is_the_largest_batch_eigenvalue_seen() {
    let be = CpuBackend::<f64>::new();
    let data = RidgeData::synthetic(400, 100, 10, 0.1, 5);
    let p = Ridge::ridge(&be, &data);
    let lambda = vec![-3.0; 10];
    let (x, y) = (be.vector_from(&lambda, "x"), be.zeros(10, "y"));
    let full = top_eigenvalue(ridge_hessian(&data, &lambda, &(0..400).collect::<Vec<_>>()), 10);
    let batch = pollster::block_on(Curvature::new(&be, 10, 0).estimate(&be, &p, &x, &y, Some(8), 200)).unwrap();
    // A batch of 8 rows has a larger top eigenvalue than the average over 400 (its rank is 8,
    // the trace the same in expectation); a batch step must respect the batch's.
    assert!(batch > 1.5 * full, "batch estimate {batch} vs full {full}");
}

fn toy(alg: AlgKind, epochs: usize, seed: u64, hyper: Hyper) -> ToyConfig {
    ToyConfig {
        alg,
        hyper,
        opt: OuterOpt::Sgd { momentum: 0.0 },
        seed,
        epochs,
        n_train: 500,
        n_val: 500,
        features: 40,
        noise: 0.5,
        record_vectors: false,
        outer_penalty: 0.0,
    }
}

/// The toy CLI's defaults (T = Q = 10, α = η = 0.5, β = 50, batches of 64).
const TOY: Hyper = Hyper { t: 10, q: 10, eta: 0.5, alpha: 0.5, beta: 50.0, batch_size: 64, val_batch_size: 64 };

/// Runs `config`, with data-chosen α and η when `auto`; the last record's outer loss, or the
/// iteration at which it diverged.
fn run_toy(config: ToyConfig, auto: bool) -> Result<(f64, f64), usize> {
    let be = CpuBackend::<f64>::new();
    let batch = config.alg.is_stochastic().then_some(config.hyper.batch_size);
    let mut run = ToyRun::new(&be, config).unwrap();
    run.outer.set_auto_steps(AutoSteps { alpha: auto, eta: auto, fraction: AutoSteps::FRACTION, every: AutoSteps::EVERY, batch });
    let (mut first, mut last) = (None, 0.0);
    while !run.done() {
        match pollster::block_on(run.step(&|| 0.0)) {
            Ok(r) => {
                first.get_or_insert(r.exact_outer_loss);
                last = r.exact_outer_loss;
            }
            Err(e) => {
                eprintln!("{e}");
                return Err(run.outer.iter);
            }
        }
    }
    Ok((first.unwrap_or(f64::NAN), last))
}

/// The exp-parameterised penalty's curvature grows with e^λ as λ rises: a constant step that
/// was stable at the start diverges (SOBA within a few hundred iterations), while steps re-estimated from the data keep every run finite and decreasing.
#[test]
fn auto_steps_keep_the_toy_stable_where_constant_steps_diverge() {
    // SOBA at the toy CLI's β for it (its joint step needs a slower x than the double loops).
    let soba = Hyper { beta: 2.0, ..TOY };
    assert!(run_toy(toy(AlgKind::Soba, 1000, 0, TOY), false).is_err(), "SOBA at α = η = 0.5, β = 50 was expected to diverge");
    for (alg, epochs, hyper) in [(AlgKind::Soba, 1500, soba), (AlgKind::AidCg, 600, TOY), (AlgKind::StocBiO, 300, TOY)] {
        for seed in [0, 1] {
            let (first, last) =
                run_toy(toy(alg, epochs, seed, hyper.clone()), true).unwrap_or_else(|it| panic!("{alg} seed {seed} diverged at {it}"));
            assert!(last < first, "{alg} seed {seed}: Φ went from {first} to {last}");
        }
    }
}

#[test]
fn an_explicit_step_above_two_over_l_is_warned_about() {
    assert!(unstable_step_warning("eta", 0.5, 10.0).is_some_and(|w| w.starts_with("warning: --eta 0.5") && !w.contains('\n')));
    assert!(unstable_step_warning("eta", 0.19, 10.0).is_none());
}
