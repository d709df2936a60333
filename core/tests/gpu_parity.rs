//! Every GPU kernel and oracle against the CPU reference, on lavapipe (a missing adapter fails).
//! One generic body computes named outputs on any backend; the GPU (f32) must match the CPU
//! (f64) to f32 tolerance. Sizes are deliberately not multiples of the workgroup size.

mod common;

use bilevel_core::algorithms::{AlgKind, Hyper};
use bilevel_core::cpu::CpuBackend;
use bilevel_core::problems::ridge::{Ridge, RidgeData};
use bilevel_core::problems::Problem;
use bilevel_core::sampler::Sampler;
use bilevel_core::toy::{ToyConfig, ToyRecord, ToyRun};
use bilevel_core::{Backend, Coef, Rows};
use common::{block, gpu, randn, rel_err};

const F32_TOL: f64 = 1e-4;

/// Named outputs of every primitive on backend `B`, from seeded inputs of length `n`.
fn kernel_outputs<B: Backend>(be: &B, n: usize, rows: usize, seed: u64) -> Vec<(String, Vec<f64>)> {
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
    be.copy(&x, &mut y);
    read(&mut out, "copy", &y);
    be.fill(Coef::ratio(3.0, &s_xy, &s_xx), &mut y);
    read(&mut out, "fill ratio", &y);
    let scalars = [&s_xx, &s_xy, &zero].map(|sc| block(be.read_scalar(sc)).unwrap());
    out.push((format!("dot scalars (n={n})"), scalars.to_vec()));

    // Dense gathered products: X is rows × n, a batch of about a third of the rows.
    let xm = randn(&mut s, rows * n, 1.0);
    let t = randn(&mut s, rows, 1.0);
    let idx = s.batch(rows, rows / 3 + 1);
    let (mat, tv, batch) = (be.matrix_from(rows, n, &xm, "X"), be.vector_from(&t, "t"), be.indices(&idx));
    let mut r = be.zeros(rows, "r");
    let mut g = be.zeros(n, "g");
    for (label, sel) in [("all", Rows::All), ("batch", Rows::Batch(&batch))] {
        be.rows_matvec(&mat, sel, &x, Some(&tv), 0.9, &mut r);
        read(&mut out, &format!("rows_matvec {label} with targets"), &r);
        be.rows_matvec(&mat, sel, &x, None, 1.0, &mut r);
        read(&mut out, &format!("rows_matvec {label}"), &r);
        be.rows_tmatvec(&mat, sel, &r, 0.3, None, &mut g);
        read(&mut out, &format!("rows_tmatvec {label}"), &g);
        be.rows_tmatvec(&mat, sel, &r, 0.3, Some((&lam, &x)), &mut g);
        read(&mut out, &format!("rows_tmatvec {label} with ridge"), &g);
    }
    be.exp_hadamard(&lam, &x, &be.vector_from(&ys, "y"), -0.4, &mut g);
    read(&mut out, "exp_hadamard", &g);
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

/// Every ridge oracle, on all rows and on a mini-batch.
fn oracle_outputs<B: Backend>(be: &B, data: &RidgeData) -> Vec<(String, Vec<f64>)> {
    let p = Ridge::new(be, data);
    let mut s = Sampler::new(21);
    let d = data.d;
    let (lam, w, v) = (
        be.vector_from(&randn(&mut s, d, 0.5), "lam"),
        be.vector_from(&randn(&mut s, d, 1.0), "w"),
        be.vector_from(&randn(&mut s, d, 1.0), "v"),
    );
    let tb = be.indices(&s.batch(data.n, data.n / 4 + 1));
    let vb = be.indices(&s.batch(data.m, data.m / 4 + 1));
    let mut out = Vec::new();
    let mut o = be.zeros(d, "o");
    let sc = be.scalar("loss");
    for (label, tr, va) in [("all", Rows::All, Rows::All), ("batch", Rows::Batch(&tb), Rows::Batch(&vb))] {
        p.inner_grad(be, &lam, &w, tr, &mut o);
        out.push((format!("inner_grad {label}"), block(be.read_vector(&o)).unwrap()));
        p.inner_hvp(be, &lam, &w, &v, tr, &mut o);
        out.push((format!("inner_hvp {label}"), block(be.read_vector(&o)).unwrap()));
        p.mixed_jvp(be, &lam, &w, &v, tr, &mut o);
        out.push((format!("mixed_jvp {label}"), block(be.read_vector(&o)).unwrap()));
        p.outer_grad_y(be, &lam, &w, va, &mut o);
        out.push((format!("outer_grad_y {label}"), block(be.read_vector(&o)).unwrap()));
        p.inner_loss(be, &lam, &w, tr, &sc);
        let inner = block(be.read_scalar(&sc)).unwrap();
        p.outer_loss(be, &lam, &w, va, &sc);
        out.push((format!("losses {label}"), vec![inner, block(be.read_scalar(&sc)).unwrap()]));
    }
    out
}

#[test]
fn every_ridge_oracle_matches_the_cpu_reference() {
    let data = RidgeData::synthetic(301, 259, 263, 0.5, 8);
    assert_parity(oracle_outputs(&CpuBackend::<f64>::new(), &data), oracle_outputs(&gpu(), &data), F32_TOL);
}

fn toy_records<B: Backend + 'static>(be: &B, alg: AlgKind, epochs: usize) -> Vec<ToyRecord> {
    let config = ToyConfig {
        alg,
        hyper: Hyper { t: 10, q: 10, eta: 0.5, alpha: 0.5, beta: 5.0, batch_size: 37, val_batch_size: 41 },
        seed: 3,
        epochs,
        n_train: 300,
        n_val: 257,
        features: 45,
        noise: 0.5,
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
            seed: 0,
            epochs: 8,
            n_train: 200,
            n_val: 200,
            features: 30,
            noise: 0.5,
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
