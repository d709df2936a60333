//! The landscape (two-feature ridge): the stacked grid solve against the closed form, on the CPU
//! (f64) and on lavapipe (f32); estimators against the closed form and GPU against CPU.

mod common;

use bilevel_core::algorithms::{AlgKind, Hyper};
use bilevel_core::cpu::CpuBackend;
use bilevel_core::landscape::{Landscape, LandscapeConfig};
use common::{block, gpu, rel_err};

fn landscape(grid: usize) -> Landscape {
    Landscape::new(LandscapeConfig { grid, ..LandscapeConfig::default() }).unwrap()
}

fn hyper(t: usize, q: usize, batch: usize) -> Hyper {
    Hyper { t, q, eta: 0.5, alpha: 0.5, beta: 1.0, batch_size: batch, val_batch_size: batch }
}

#[test]
fn grid_values_match_the_closed_form_on_cpu_and_gpu() {
    let l = landscape(7);
    let points = l.grid_points();
    assert_eq!(points.len(), 49);
    assert_eq!(points[1], [l.axis(1), l.axis(0)]);
    let exact: Vec<f64> = points.iter().map(|p| l.exact(p).1).collect();
    let cpu = block(l.outer_values(&CpuBackend::<f64>::new(), &points, 200)).unwrap();
    let e = rel_err(&cpu, &exact);
    assert!(e < 1e-7, "CPU f64 grid vs closed form: {e:e}");
    let gpu = block(l.outer_values(&gpu(), &points, 200)).unwrap();
    let e = rel_err(&gpu, &exact);
    assert!(e < 1e-4, "GPU f32 grid vs closed form: {e:e}");
    // The surface is not flat: the closed form varies across the plane by more than the tolerance.
    let (lo, hi) = exact.iter().fold((f64::MAX, f64::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    assert!(hi - lo > 0.1 * hi, "flat landscape {lo}..{hi}");
}

#[test]
fn deterministic_estimators_converge_to_the_exact_hypergradient() {
    let l = landscape(5);
    let cpu = CpuBackend::<f64>::new();
    let lambda = [-1.0, 0.5];
    let (exact, _) = l.exact(&lambda);
    for alg in [AlgKind::AidCg, AlgKind::AidFp, AlgKind::Reverse] {
        let h = block(l.estimate(&cpu, alg, &hyper(400, 200, 40), &lambda, 0)).unwrap();
        let e = rel_err(&h, &exact);
        assert!(e < 1e-4, "{alg} with T = 400, K = 200: rel err {e:e}");
        // Few inner steps from w = 0 give a visibly biased estimate.
        let short = block(l.estimate(&cpu, alg, &hyper(2, 200, 40), &lambda, 0)).unwrap();
        assert!(rel_err(&short, &exact) > 1e-2, "{alg} with T = 2 is not biased");
    }
}

#[test]
fn stochastic_estimates_spread_around_the_exact_one_and_match_on_gpu() {
    let l = landscape(5);
    let cpu = CpuBackend::<f64>::new();
    let lambda = [-3.0, -2.0];
    let (exact, _) = l.exact(&lambda);
    let hy = hyper(200, 50, 8);
    let seeds: Vec<Vec<f64>> = (0..16).map(|s| block(l.estimate(&cpu, AlgKind::StocBiO, &hy, &lambda, s)).unwrap()).collect();
    assert!(seeds.windows(2).all(|w| w[0] != w[1]), "different seeds give different estimates");
    let mean: Vec<f64> = (0..2).map(|j| seeds.iter().map(|h| h[j]).sum::<f64>() / seeds.len() as f64).collect();
    let e = rel_err(&mean, &exact);
    assert!(e < 0.5, "mean of 16 stocBiO estimates vs exact: {e}");
    let g = gpu();
    for s in [0, 3] {
        let on_gpu = block(l.estimate(&g, AlgKind::StocBiO, &hy, &lambda, s)).unwrap();
        let e = rel_err(&on_gpu, &seeds[s as usize]);
        assert!(e < 1e-3, "stocBiO seed {s}: GPU vs CPU {e:e}");
    }
}

#[test]
fn the_inner_path_ends_at_the_inner_solution() {
    let l = landscape(5);
    let lambda = [-2.0, 1.0];
    let path = block(l.inner_path(&CpuBackend::<f64>::new(), &hyper(300, 1, 40), &lambda, 0)).unwrap();
    assert_eq!(path.len(), 301);
    assert_eq!(path[0], [0.0, 0.0]);
    let w = l.inner_solution(&lambda);
    let e = rel_err(&path[300], &w);
    assert!(e < 1e-6, "full-batch path end vs w*: {e:e}");
    let on_gpu = block(l.inner_path(&gpu(), &hyper(20, 1, 7), &lambda, 1)).unwrap();
    let on_cpu = block(l.inner_path(&CpuBackend::<f64>::new(), &hyper(20, 1, 7), &lambda, 1)).unwrap();
    let flat = |p: &[[f64; 2]]| p.iter().flatten().copied().collect::<Vec<_>>();
    let e = rel_err(&flat(&on_gpu), &flat(&on_cpu));
    assert!(e < 1e-4, "mini-batch path GPU vs CPU: {e:e}");
}

#[test]
fn bad_settings_are_refused() {
    for c in [
        LandscapeConfig { grid: 1, ..LandscapeConfig::default() },
        LandscapeConfig { lo: 2.0, hi: 1.0, ..LandscapeConfig::default() },
        LandscapeConfig { n_train: 0, ..LandscapeConfig::default() },
    ] {
        assert!(Landscape::new(c).is_err());
    }
}
