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
        // Sparse with the class counts that have their own compiled kernels (1, 10, 20).
        (400, 785, 10, Some(150), Some(64)),
        (400, 2_000, 20, Some(40), Some(33)),
        (400, 300, 1, Some(30), Some(65)),
        (400, 785, 10, Some(150), None),
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

/// A dense matrix shaped like normalised MNIST with a bias column: each column mostly holds one
/// background value (the same for most columns, its own for some, none for a few), 1 in the last.
fn backgrounded(n: usize, d: usize, seed: u64) -> HostMatrix {
    let mut s = Sampler::new(seed);
    let background: Vec<Option<f64>> = (0..d)
        .map(|j| match j % 7 {
            _ if j == d - 1 => Some(1.0),
            0 => Some(0.37 + j as f64),
            1 => None,
            _ => Some(-0.4242),
        })
        .collect();
    let mut data = Vec::with_capacity(n * d);
    for _ in 0..n {
        for b in &background {
            // 15 % of a backgrounded column's entries differ; a column without one is Gaussian.
            data.push(match b {
                Some(b) if s.below(100) >= 15 => *b,
                _ => s.normal(),
            });
        }
    }
    HostMatrix::Dense { rows: n, cols: d, data }
}

/// Dense data whose columns mostly hold one value get, on the CPU backend, a batch form: a
/// sparse matrix plus a per-column shift (`X = S + 1sᵀ`); products still match the naive loops
/// on every path (batches through the batch form, all rows through the dense rows, sequential
/// and threaded, the compiled class counts and others).
#[test]
fn shifted_sparse_storage_matches_naive_loops() {
    for (n, d, c, batch) in [
        (300, 785, 10, Some(64)),
        (300, 785, 10, None),
        (3000, 785, 10, None),
        (3000, 785, 10, Some(2500)),
        (200, 50, 1, Some(63)),
        (200, 50, 20, Some(17)),
        (200, 50, 3, None),
    ] {
        let x = backgrounded(n, d, 5);
        let be64 = CpuBackend::<f64>::new();
        assert!(
            be64.matrix_from(&x, "X").has_batch_form(),
            "a dense matrix whose columns mostly hold one value gets a shifted-CSR batch form"
        );
        let batch: Option<Vec<u32>> = batch.map(|b| Sampler::new(3).batch(n, b));
        let what = format!("shifted n={n} d={d} c={c} batch={:?}", batch.as_ref().map(Vec::len));
        check_products(&be64, &x, batch.as_deref(), c, 1e-12, &format!("f64 {what}"));
        check_products(&CpuBackend::<f32>::new(), &x, batch.as_deref(), c, 1e-5, &format!("f32 {what}"));
    }
    // Gaussian data has no column background: no batch form.
    let gaussian = HostMatrix::Dense { rows: 50, cols: 9, data: randn(&mut Sampler::new(4), 450, 1.0) };
    let stored = CpuBackend::<f64>::new().matrix_from(&gaussian, "X");
    assert!(stored.is_dense() && !stored.has_batch_form());
}

/// `HostMatrix::by_density` keeps the matrix (every entry) and picks CSR only for sparse data.
#[test]
fn storage_by_density_keeps_every_entry() {
    let mut s = Sampler::new(6);
    let dense: Vec<f64> = (0..60 * 11).map(|t| if t % 5 == 0 { s.normal() } else { 0.0 }).collect();
    let x = HostMatrix::Dense { rows: 60, cols: 11, data: dense.clone() };
    let sparse = x.clone().by_density();
    assert!(matches!(sparse, HostMatrix::Csr { .. }), "a fifth non-zero: CSR");
    let back = sparse.clone().by_density();
    assert!(matches!(back, HostMatrix::Csr { .. }), "stays CSR");
    for i in 0..60 {
        let mut row = vec![0.0; 11];
        for (j, v) in sparse.row(i) {
            row[j] += v;
        }
        assert_eq!(row, dense[i * 11..(i + 1) * 11], "row {i}");
    }
    let full = HostMatrix::Dense { rows: 4, cols: 3, data: vec![1.0; 12] };
    let csr = HostMatrix::Csr { rows: 4, cols: 3, indptr: vec![0, 3, 6, 9, 12], indices: [0, 1, 2].repeat(4), values: vec![1.0; 12] };
    assert!(matches!(csr.by_density(), HostMatrix::Dense { ref data, .. } if *data == vec![1.0; 12]), "a full CSR becomes dense");
    assert!(matches!(full.by_density(), HostMatrix::Dense { .. }));
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
