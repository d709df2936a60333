//! Every GPU kernel and oracle against the CPU reference, on lavapipe (a missing adapter fails).
//! One generic body computes named outputs on any backend; the GPU (f32) must match the CPU
//! (f64) to f32 tolerance. Sizes are deliberately not multiples of the workgroup size.

mod common;

use bilevel_core::algorithms::{AlgKind, Hyper};
use bilevel_core::backend::{HostMatrix, LossKind, LossRows, Reg, TmatmulOut};
use bilevel_core::cpu::CpuBackend;
use bilevel_core::optim::AdamStep;
use bilevel_core::outer::{OuterLoop, OuterOpt};
use bilevel_core::problems::glm::{Glm, GlmData, HyperKind};
use bilevel_core::problems::ridge::RidgeData;
use bilevel_core::problems::synthetic::SyntheticSpec;
use bilevel_core::problems::Problem;
use bilevel_core::sampler::Sampler;
use bilevel_core::toy::{ToyConfig, ToyRecord, ToyRun};
use bilevel_core::{Backend, Coef, GlmBackend, Rows};
use common::{block, gpu, randn, rel_err};

const F32_TOL: f64 = 1e-4;

/// Named outputs of every primitive on backend `B`, from seeded inputs of length `n`.
fn kernel_outputs<B: GlmBackend>(be: &B, n: usize, rows: usize, seed: u64) -> Vec<(String, Vec<f64>)> {
    let mut s = Sampler::new(seed);
    let xs = randn(&mut s, n, 1.0);
    let ys = randn(&mut s, n, 1.0);
    let lam_s = randn(&mut s, n, 0.5);
    let (x, lam) = (be.vector_from(&xs, "x"), be.vector_from(&lam_s, "lam"));
    let mut out = Vec::new();
    let read = |out: &mut Vec<(String, Vec<f64>)>, name: &str, v: &B::Vector| {
        out.push((format!("{name} (n={n})"), block(be.read_vector(v)).unwrap()))
    };

    // BLAS-1 with constant and device-scalar coefficients.
    let (s_xx, s_xy, zero) = (be.scalar("xx"), be.scalar("xy"), be.scalar("zero"));
    be.dot(&x, &x, 1.0, &s_xx, false);
    be.dot(&x, &be.vector_from(&ys, "y"), 0.5, &s_xy, false);
    be.dot(&x, &be.vector_from(&ys, "y"), 0.25, &s_xy, true); // accumulate: 0.75 xᵀy
    be.dot(&x, &be.zeros(n, "z"), 1.0, &zero, false);
    let mut y = be.vector_from(&ys, "y");
    be.axpby(Coef::c(0.7), &x, Coef::c(-1.3), &mut y);
    read(&mut out, "axpby const", &y);
    be.axpby(Coef::ratio(2.0, &s_xx, &s_xy), &x, Coef::ratio(-1.0, &s_xy, &s_xx), &mut y);
    read(&mut out, "axpby ratio", &y);
    be.axpby(Coef::ratio(1.0, &s_xx, &zero), &x, Coef::c(1.0), &mut y);
    read(&mut out, "axpby zero denominator", &y);
    be.scale(Coef::ratio(1.0, &s_xy, &s_xx), &mut y);
    read(&mut out, "scale ratio", &y);
    // Gates: open (xᵀx > 0.5) and shut (0 > 0.5 is false).
    be.axpby(Coef::c(0.5).gated(&s_xx, 0.5), &x, Coef::c(1.0).gated(&zero, 0.5), &mut y);
    read(&mut out, "axpby gated", &y);
    be.copy(&x, &mut y);
    read(&mut out, "copy", &y);
    let (mut m1, mut m2, mut xa) = (be.vector_from(&ys, "m"), be.zeros(n, "v"), be.vector_from(&xs, "xa"));
    for _ in 0..3 {
        be.adam(&y, &mut m1, &mut m2, &mut xa, AdamStep { lr: 0.1, beta1: 0.9, beta2: 0.99, eps: 1e-3 });
    }
    read(&mut out, "adam x", &xa);
    read(&mut out, "adam m", &m1);
    read(&mut out, "adam v", &m2);
    be.fill(Coef::ratio(3.0, &s_xy, &s_xx), &mut y);
    read(&mut out, "fill ratio", &y);
    let scalars = [&s_xx, &s_xy, &zero].map(|sc| block(be.read_scalar(sc)).unwrap());
    out.push((format!("dot scalars (n={n})"), scalars.to_vec()));

    let total = be.scalar("sum");
    be.sum(&x, 0.5, &total, false);
    be.sum(&x, 1.0, &total, true);
    out.push((format!("sum (n={n})"), vec![block(be.read_scalar(&total)).unwrap()]));

    // Data products, dense and sparse, with c = 3 columns: X is rows × n.
    let c = 3;
    let lam_rows = randn(&mut s, rows, 1.0);
    let w = be.vector_from(&randn(&mut s, n * c, 1.0), "W");
    let e = be.vector_from(&randn(&mut s, rows * c, 1.0), "E");
    let idx = s.batch(rows, rows / 3 + 1);
    let batch = be.indices(&idx);
    let dense = HostMatrix::Dense { rows, cols: n, data: randn(&mut s, rows * n, 1.0) };
    let sparse = SyntheticSpec {
        n_train: rows,
        n_val: 1,
        features: n,
        classes: 1,
        loss: LossKind::Squared,
        nnz_per_row: Some(5),
        bias: false,
        seed,
    }
    .generate()
    .x_train;
    let mut z = be.zeros(rows * c, "Z");
    let mut g = be.zeros(n * c, "G");
    for (kind, host) in [("dense", &dense), ("sparse", &sparse)] {
        let mat = be.matrix_from(host, "X");
        for (label, sel) in [("all", Rows::All), ("batch", Rows::Batch(&batch))] {
            be.gather_matmul(&mat, sel, &w, c, &mut z);
            read(&mut out, &format!("{kind} gather_matmul {label}"), &z);
            be.gather_tmatmul(&mat, sel, &e, c, TmatmulOut { scale: 0.3, reg: Reg::None }, &mut g);
            read(&mut out, &format!("{kind} gather_tmatmul {label}"), &g);
            be.gather_tmatmul(&mat, sel, &e, c, TmatmulOut { scale: 0.3, reg: Reg::ExpLambda { lambda: &lam, v: &w, coef: 0.7 } }, &mut g);
            read(&mut out, &format!("{kind} gather_tmatmul {label} exp-lambda reg"), &g);
            be.gather_tmatmul(&mat, sel, &e, c, TmatmulOut { scale: 0.3, reg: Reg::Scaled { v: &w, coef: 0.2 } }, &mut g);
            read(&mut out, &format!("{kind} gather_tmatmul {label} scaled reg"), &g);
            be.gather_tmatmul(
                &mat,
                sel,
                &e,
                c,
                TmatmulOut { scale: -0.4, reg: Reg::Decay { lambda: Some(&lam), exp_coef: -0.1, const_coef: 1.0 } },
                &mut g,
            );
            read(&mut out, &format!("{kind} gather_tmatmul {label} in place, exp decay"), &g);
            be.gather_tmatmul(
                &mat,
                sel,
                &e,
                c,
                TmatmulOut { scale: 0.5, reg: Reg::Decay { lambda: None, exp_coef: 0.0, const_coef: 0.9 } },
                &mut g,
            );
            read(&mut out, &format!("{kind} gather_tmatmul {label} in place, constant decay"), &g);
        }
    }

    // Row-wise losses on a batch of predictions, for every loss kind, weighted and not.
    let lam_r = be.vector_from(&lam_rows, "lam_rows");
    for (kind, cc) in [(LossKind::Squared, 1), (LossKind::Logistic, 1), (LossKind::Softmax, 4)] {
        let targets: Vec<f64> = (0..rows)
            .map(|i| match kind {
                LossKind::Squared => lam_rows[i] * 2.0,
                LossKind::Logistic => (i % 2) as f64,
                LossKind::Softmax => (i % cc) as f64,
            })
            .collect();
        let t = be.vector_from(&targets, "t");
        let zb = be.vector_from(&randn(&mut s, idx.len() * cc, 2.0), "Zb");
        let ub = be.vector_from(&randn(&mut s, idx.len() * cc, 1.0), "Ub");
        let (mut r, mut l, mut m) = (be.zeros(idx.len() * cc, "R"), be.zeros(idx.len(), "l"), be.zeros(idx.len() * cc, "M"));
        for weights in [None, Some(&lam_r)] {
            let tag = format!("{kind:?} weighted={}", weights.is_some());
            let on = LossRows { loss: kind, targets: &t, rows: Rows::Batch(&batch), c: cc, weights };
            be.loss_residual(on, &zb, 0.7, &mut r, Some(&mut l));
            read(&mut out, &format!("loss_residual {tag}"), &r);
            read(&mut out, &format!("loss rows {tag}"), &l);
            be.loss_curvature(on, &zb, &ub, 0.7, &mut m);
            read(&mut out, &format!("loss_curvature {tag}"), &m);
        }
        let mut xo = be.zeros(rows, "x-space");
        be.rowdot_sigmoid_scatter([&r, &ub], Rows::Batch(&batch), cc, &lam_r, 0.9, &mut xo);
        read(&mut out, &format!("rowdot_sigmoid_scatter {kind:?}"), &xo);
    }
    let mut xo = be.zeros(n, "feature-space");
    be.exp_rowdot(&lam, &w, &be.vector_from(&randn(&mut s, n * c, 1.0), "V"), c, -0.4, &mut xo);
    read(&mut out, "exp_rowdot", &xo);
    out
}

fn assert_parity(cpu: Vec<(String, Vec<f64>)>, gpu: Vec<(String, Vec<f64>)>, tol: f64) {
    assert_eq!(cpu.len(), gpu.len());
    for ((name, c), (_, g)) in cpu.iter().zip(&gpu) {
        let err = rel_err(g, c);
        assert!(err < tol, "{name}: GPU vs CPU rel err {err:e}");
    }
}

#[test]
fn every_kernel_matches_the_cpu_reference() {
    let g = gpu();
    let c = CpuBackend::<f64>::new();
    for (n, rows) in [(1, 3), (255, 7), (257, 40), (1000, 33), (4099, 5)] {
        assert_parity(kernel_outputs(&c, n, rows, n as u64), kernel_outputs(&g, n, rows, n as u64), F32_TOL);
    }
}

/// `y = 2x` and `yᵀx` on any backend.
fn double_and_dot<B: Backend>(be: &B, xs: &[f64]) -> (Vec<f64>, f64) {
    let (x, mut y, s) = (be.vector_from(xs, "x"), be.zeros(xs.len(), "y"), be.scalar("s"));
    be.axpby(Coef::c(2.0), &x, Coef::c(0.0), &mut y);
    be.dot(&y, &x, 1.0, &s, false);
    (block(be.read_vector(&y)).unwrap(), block(be.read_scalar(&s)).unwrap())
}

#[test]
fn grids_wider_than_65535_workgroups_cover_every_element() {
    // 65,535 × 256 + 77 elements forces the dispatch to spill into the y dimension.
    let n = 65_535 * 256 + 77;
    let xs: Vec<f64> = (0..n).map(|i| ((i % 1013) as f64 + 1.0) * 1e-3).collect();
    let ((yg, sg), (yc, sc)) = (double_and_dot(&gpu(), &xs), double_and_dot(&CpuBackend::<f64>::new(), &xs));
    assert!(rel_err(&yg, &yc) < 1e-6, "axpby over a 2-D grid");
    assert!((yg[n - 1] - yc[n - 1]).abs() < 1e-6 * yc[n - 1].abs(), "the last element: {} vs {}", yg[n - 1], yc[n - 1]);
    assert!(((sg - sc) / sc).abs() < 1e-4, "dot over {n} elements: {sg} vs {sc}");
}

/// Every oracle of a problem, on all rows and on a mini-batch.
fn oracle_outputs<B: GlmBackend>(be: &B, data: &GlmData, hyper: HyperKind) -> Vec<(String, Vec<f64>)> {
    let p = Glm::new(be, data, hyper);
    let mut s = Sampler::new(21);
    let (dx, dy) = (p.dim_x(), p.dim_y());
    let (lam, w, v) = (
        be.vector_from(&randn(&mut s, dx, 0.5), "lam"),
        be.vector_from(&randn(&mut s, dy, 1.0), "w"),
        be.vector_from(&randn(&mut s, dy, 1.0), "v"),
    );
    let tb = be.indices(&s.batch(p.n_train(), p.n_train() / 4 + 1));
    let vb = be.indices(&s.batch(p.n_val(), p.n_val() / 4 + 1));
    let mut out = Vec::new();
    let (mut oy, mut ox) = (be.zeros(dy, "oy"), be.zeros(dx, "ox"));
    let sc = be.scalar("loss");
    for (label, tr, va) in [("all", Rows::All, Rows::All), ("batch", Rows::Batch(&tb), Rows::Batch(&vb))] {
        p.inner_grad(be, &lam, &w, tr, &mut oy);
        out.push((format!("inner_grad {label}"), block(be.read_vector(&oy)).unwrap()));
        p.inner_hvp(be, &lam, &w, &v, tr, &mut oy);
        out.push((format!("inner_hvp {label}"), block(be.read_vector(&oy)).unwrap()));
        p.mixed_jvp(be, &lam, &w, &v, tr, &mut ox);
        out.push((format!("mixed_jvp {label}"), block(be.read_vector(&ox)).unwrap()));
        p.outer_grad_y(be, &lam, &w, va, &mut oy);
        out.push((format!("outer_grad_y {label}"), block(be.read_vector(&oy)).unwrap()));
        p.inner_loss(be, &lam, &w, tr, &sc);
        let inner = block(be.read_scalar(&sc)).unwrap();
        p.outer_loss(be, &lam, &w, va, &sc);
        out.push((format!("losses {label}"), vec![inner, block(be.read_scalar(&sc)).unwrap()]));
    }
    out
}

#[test]
fn every_problem_oracle_matches_the_cpu_reference() {
    let spec = |loss, classes, nnz, bias, features| SyntheticSpec {
        n_train: 301,
        n_val: 259,
        features,
        classes,
        loss,
        nnz_per_row: nnz,
        bias,
        seed: 8,
    };
    let cases = [
        ("ridge", RidgeData::synthetic(301, 259, 263, 0.5, 8).glm(), HyperKind::FeatureRidge { scale: 1.0 }),
        ("logreg", spec(LossKind::Logistic, 1, None, false, 22).generate(), HyperKind::FeatureRidge { scale: 1.0 }),
        ("multilogreg", spec(LossKind::Softmax, 20, Some(17), false, 1031).generate(), HyperKind::FeatureRidge { scale: 0.3 }),
        ("hyperclean", spec(LossKind::Softmax, 10, None, true, 300).generate(), HyperKind::SampleWeights { rho: 0.001 }),
    ];
    let (c, g) = (CpuBackend::<f64>::new(), gpu());
    for (name, data, hyper) in cases {
        let cpu = oracle_outputs(&c, &data, hyper);
        let gpu = oracle_outputs(&g, &data, hyper);
        for ((what, a), (_, b)) in cpu.iter().zip(&gpu) {
            let err = rel_err(b, a);
            assert!(err < F32_TOL, "{name} {what}: GPU vs CPU rel err {err:e}");
        }
    }
}

fn toy_records<B: GlmBackend + 'static>(be: &B, alg: AlgKind, epochs: usize) -> Vec<ToyRecord> {
    let config = ToyConfig {
        alg,
        hyper: Hyper { t: 10, q: 10, eta: 0.5, alpha: 0.5, beta: 5.0, batch_size: 37, val_batch_size: 41 },
        opt: OuterOpt::Sgd { momentum: 0.0 },
        seed: 3,
        epochs,
        n_train: 300,
        n_val: 257,
        features: 45,
        noise: 0.5,
        outer_penalty: 0.0,
        record_vectors: true,
    };
    let mut run = ToyRun::new(be, config).unwrap();
    let mut records = Vec::new();
    while !run.done() {
        records.push(block(run.step(&|| 0.0)).unwrap());
    }
    records
}

#[test]
fn full_toy_runs_match_the_cpu_run() {
    let (g, c) = (gpu(), CpuBackend::<f64>::new());
    for alg in AlgKind::ALL {
        let (rg, rc) = (toy_records(&g, alg, 6), toy_records(&c, alg, 6));
        for (a, b) in rg.iter().zip(&rc) {
            let err = rel_err(a.hypergradient.as_ref().unwrap(), b.hypergradient.as_ref().unwrap());
            assert!(err < 1e-3, "{alg} iter {}: hypergradient GPU vs CPU rel err {err:e}", a.iter);
            let loss_err = ((a.outer_loss - b.outer_loss) / b.outer_loss).abs();
            assert!(loss_err < 1e-4, "{alg} iter {}: outer loss {} vs {}", a.iter, a.outer_loss, b.outer_loss);
        }
    }
}

#[test]
fn steady_state_iterations_allocate_no_new_buffers() {
    let g = gpu();
    for alg in AlgKind::ALL {
        let config = ToyConfig {
            alg,
            hyper: Hyper { t: 5, q: 5, eta: 0.5, alpha: 0.5, beta: 1.0, batch_size: 33, val_batch_size: 33 },
            opt: OuterOpt::Sgd { momentum: 0.0 },
            seed: 0,
            epochs: 8,
            n_train: 200,
            n_val: 200,
            features: 30,
            noise: 0.5,
            outer_penalty: 0.0,
            record_vectors: false,
        };
        let mut run = ToyRun::new(&g, config).unwrap();
        for _ in 0..3 {
            block(run.step(&|| 0.0)).unwrap();
        }
        let after_warmup = g.allocated_bytes().0;
        while !run.done() {
            block(run.step(&|| 0.0)).unwrap();
        }
        assert_eq!(g.allocated_bytes().0, after_warmup, "{alg}: pooled buffers should be reused");
    }
}

/// x after each of `iters` outer iterations of `alg` on backend `B`.
fn trajectory<B: GlmBackend + 'static>(be: &B, data: &GlmData, hyper_kind: HyperKind, alg: AlgKind, iters: usize) -> Vec<Vec<f64>> {
    let h = Hyper { t: 5, q: 5, eta: 0.3, alpha: 0.3, beta: 0.5, batch_size: 23, val_batch_size: 19 };
    let mut run = OuterLoop::new(be, Glm::new(be, data, hyper_kind), alg, h, OuterOpt::adam(), 5).unwrap();
    (0..iters)
        .map(|_| {
            run.estimate();
            run.update();
            block(be.read_vector(&run.x)).unwrap()
        })
        .collect()
}

#[test]
fn every_algorithm_matches_the_cpu_run_on_every_problem() {
    let spec =
        |loss, classes, nnz, bias| SyntheticSpec { n_train: 67, n_val: 45, features: 11, classes, loss, nnz_per_row: nnz, bias, seed: 4 };
    let cases = [
        ("ridge", RidgeData::synthetic(67, 45, 11, 0.5, 4).glm(), HyperKind::FeatureRidge { scale: 1.0 }),
        ("logreg", spec(LossKind::Logistic, 1, None, false).generate(), HyperKind::FeatureRidge { scale: 1.0 }),
        ("multilogreg", spec(LossKind::Softmax, 5, Some(4), false).generate(), HyperKind::FeatureRidge { scale: 1.0 }),
        ("hyperclean", spec(LossKind::Softmax, 3, None, true).generate(), HyperKind::SampleWeights { rho: 0.01 }),
    ];
    let (c, g) = (CpuBackend::<f64>::new(), gpu());
    for (name, data, hk) in &cases {
        for alg in AlgKind::ALL {
            let (tc, tg) = (trajectory(&c, data, *hk, alg, 3), trajectory(&g, data, *hk, alg, 3));
            for (k, (a, b)) in tg.iter().zip(&tc).enumerate() {
                let err = rel_err(a, b);
                assert!(err < 1e-3, "{name} {alg} iteration {k}: x on GPU vs CPU rel err {err:e}");
            }
        }
    }
}

#[test]
fn reverse_mode_memory_does_not_grow_with_t() {
    // Backpropagating through all T steps (K = T) keeps a fixed number of checkpoints and
    // recomputes the rest, so the peak of GPU bytes allocated is the same for every T.
    let data = SyntheticSpec {
        n_train: 200,
        n_val: 100,
        features: 50,
        classes: 10,
        loss: LossKind::Softmax,
        nnz_per_row: None,
        bias: true,
        seed: 1,
    }
    .generate();
    let peaks: Vec<u64> = [8, 32, 128]
        .iter()
        .map(|&t| {
            let g = gpu();
            let h = Hyper { t, q: t, eta: 0.5, alpha: 0.1, beta: 0.1, batch_size: 10, val_batch_size: 10 };
            let mut run = OuterLoop::new(
                &g,
                Glm::new(&g, &data, HyperKind::SampleWeights { rho: 0.001 }),
                AlgKind::Reverse,
                h,
                OuterOpt::Sgd { momentum: 0.0 },
                0,
            )
            .unwrap();
            run.estimate();
            block(g.read_vector(&run.h)).unwrap();
            g.allocated_bytes().1
        })
        .collect();
    assert!(peaks.windows(2).all(|w| w[0] == w[1]), "peak GPU bytes grew with T: {peaks:?}");
}
