//! The CPU backend's data products against naive loops, at sizes that take each of its
//! execution paths: sequential (small), rows split across threads with private accumulators
//! (few features), and feature ranges split across threads (many features).

mod common;

use bilevel_core::backend::{HostMatrix, LossKind, Reg};
use bilevel_core::cpu::CpuBackend;
use bilevel_core::problems::synthetic::SyntheticSpec;
use bilevel_core::sampler::Sampler;
use bilevel_core::{Backend, Rows};
use common::{randn, rel_err};

/// Naive `Z = X_B W` and `scale·X_Bᵀ E + coef·e^λ∘V` on the host matrix.
#[allow(clippy::too_many_arguments)]
fn naive(
    x: &HostMatrix,
    rows: &[usize],
    w: &[f64],
    e: &[f64],
    c: usize,
    scale: f64,
    lam: &[f64],
    v: &[f64],
    coef: f64,
) -> (Vec<f64>, Vec<f64>) {
    let d = x.shape().1;
    let mut z = vec![0.0; rows.len() * c];
    let mut out: Vec<f64> = (0..d * c).map(|t| coef * lam[t / c].exp() * v[t]).collect();
    for (k, &r) in rows.iter().enumerate() {
        for (j, xv) in x.row(r) {
            for kk in 0..c {
                z[k * c + kk] += xv * w[j * c + kk];
                out[j * c + kk] += scale * xv * e[k * c + kk];
            }
        }
    }
    (z, out)
}

/// Every product of `be` against the naive loops, on a batch of `rows` (None: all rows).
fn check_products<B: Backend>(be: &B, x: &HostMatrix, batch: Option<&[u32]>, c: usize, tol: f64, what: &str) {
    let (n, d) = x.shape();
    let mut s = Sampler::new(2);
    let rows: Vec<usize> = batch.map_or((0..n).collect(), |b| b.iter().map(|&r| r as usize).collect());
    let (w, lam, v) = (randn(&mut s, d * c, 1.0), randn(&mut s, d, 0.3), randn(&mut s, d * c, 1.0));
    let e = randn(&mut s, rows.len() * c, 1.0);
    let (z_ref, out_ref) = naive(x, &rows, &w, &e, c, 0.7, &lam, &v, 0.2);
    let xm = be.matrix_from(x, "X");
    let idx = batch.map(|b| be.indices(b));
    let sel = match &idx {
        Some(i) => Rows::Batch(i),
        None => Rows::All,
    };
    let (wv, lv, vv, ev) = (be.vector_from(&w, "W"), be.vector_from(&lam, "lam"), be.vector_from(&v, "V"), be.vector_from(&e, "E"));
    let read = |v: &B::Vector| common::block(be.read_vector(v)).expect("read");
    let mut z = be.zeros(rows.len() * c, "Z");
    be.gather_matmul(&xm, sel, &wv, c, &mut z);
    assert!(rel_err(&read(&z), &z_ref) < tol, "{what}: gather_matmul");
    let mut out = be.zeros(d * c, "out");
    be.gather_tmatmul(&xm, sel, &ev, c, 0.7, Reg::ExpLambda { lambda: &lv, v: &vv, coef: 0.2 }, &mut out);
    assert!(rel_err(&read(&out), &out_ref) < tol, "{what}: gather_tmatmul");
    // The in-place form: out ← (1 + 0.2 e^λ)·v + 0.7 X_Bᵀ E.
    let mut inplace = be.vector_from(&v, "V");
    be.gather_tmatmul(&xm, sel, &ev, c, 0.7, Reg::Decay { lambda: Some(&lv), exp_coef: 0.2, const_coef: 1.0 }, &mut inplace);
    let (_, scattered) = naive(x, &rows, &w, &e, c, 0.7, &lam, &vec![0.0; d * c], 0.0);
    let want: Vec<f64> = (0..d * c).map(|t| (1.0 + 0.2 * lam[t / c].exp()) * v[t] + scattered[t]).collect();
    assert!(rel_err(&read(&inplace), &want) < tol, "{what}: in-place gather_tmatmul");
}

/// Cases that take each of the CPU backend's execution paths: sequential (small), rows split
/// across threads with private accumulators (few features), feature ranges split across threads
/// (many features, sparse), the CSC gather (sparse, all rows); dense kernels with every class
/// remainder (c mod 4), odd batches and row lengths that are not multiples of the SIMD width.
#[test]
fn data_products_match_naive_loops_on_every_execution_path() {
    let cases = [
        // (rows, features, classes, nnz per row, batch size or all rows)
        (20, 7, 3, None, Some(11)),
        (3000, 40, 3, None, Some(1501)),
        (800, 30_000, 4, Some(50), Some(401)),
        (800, 30_000, 4, Some(50), None),
        (300, 50, 2, Some(9), None),
        (300, 50, 2, Some(9), Some(77)),
        (2000, 22, 1, None, Some(64)),
        (500, 785, 10, None, Some(63)),
        (500, 785, 10, None, Some(64)),
        (300, 33, 7, None, None),
        (200, 17, 1, None, None),
    ];
    for (n, d, c, nnz, batch) in cases {
        let x = SyntheticSpec {
            n_train: n,
            n_val: 1,
            features: d,
            classes: 1,
            loss: LossKind::Squared,
            nnz_per_row: nnz,
            bias: false,
            seed: 1,
        }
        .generate()
        .x_train;
        let batch: Option<Vec<u32>> = batch.map(|b| Sampler::new(3).batch(n, b));
        let what = format!("n={n} d={d} c={c} nnz={nnz:?} batch={:?}", batch.as_ref().map(Vec::len));
        check_products(&CpuBackend::<f64>::new(), &x, batch.as_deref(), c, 1e-12, &format!("f64 {what}"));
        check_products(&CpuBackend::<f32>::new(), &x, batch.as_deref(), c, 1e-5, &format!("f32 {what}"));
    }
}

/// `dot` and `sum` against plain loops, below and above the size that splits them into pieces
/// on the pool, with accumulation and scaling.
#[test]
fn reductions_match_plain_sums() {
    let be = CpuBackend::<f64>::new();
    let mut s = Sampler::new(5);
    for n in [1, 7, 8, 1000, 3_000_001] {
        let (x, y) = (randn(&mut s, n, 1.0), randn(&mut s, n, 1.0));
        let want_dot: f64 = x.iter().zip(&y).map(|(a, b)| a * b).sum();
        let want_sum: f64 = x.iter().sum();
        let out = be.scalar("s");
        out.set(0.5);
        be.dot(&x, &y, 2.0, &out, true);
        let tol = 1e-9 * (n as f64).sqrt();
        assert!((out.get() - (0.5 + 2.0 * want_dot)).abs() < tol, "n={n}: dot {} vs {}", out.get(), 0.5 + 2.0 * want_dot);
        be.sum(&x, -1.0, &out, false);
        assert!((out.get() + want_sum).abs() < tol, "n={n}: sum {} vs {}", out.get(), -want_sum);
    }
}
