//! The CPU backend's data products against naive loops in f64, at sizes that take each of its
//! execution paths: sequential (small), and on the rayon pool (from `PARALLEL_WORK`, 2²¹
//! multiply-adds, on): rows split across threads (with private accumulators for `Xᵀ E`), and
//! feature ranges split across threads (many features, or every row through the CSC). Each case
//! asserts which threaded path its products took (the backend counts them), and the threaded
//! cases run on a pool of four threads, so that they split whatever the machine's core count.

mod common;

use std::sync::OnceLock;

use bilevel_core::backend::{HostMatrix, LossKind, Reg, TmatmulOut};
use bilevel_core::cpu::{CpuBackend, Real, ThreadedPath};
use bilevel_core::problems::synthetic::SyntheticSpec;
use bilevel_core::sampler::Sampler;
use bilevel_core::{Backend, Coef, Rows};
use common::{randn, rel_err};

/// The penalty term `coef·e^λ∘V` that [`naive`] adds to `scale·X_Bᵀ E` (the host form of
/// [`Reg::ExpLambda`]).
struct ExpLambda<'a> {
    lam: &'a [f64],
    v: &'a [f64],
    coef: f64,
}

/// Naive `Z = X_B W` and `scale·X_Bᵀ E + coef·e^λ∘V` on the host matrix.
fn naive(x: &HostMatrix, rows: &[usize], w: &[f64], e: &[f64], c: usize, scale: f64, reg: ExpLambda<'_>) -> (Vec<f64>, Vec<f64>) {
    let ExpLambda { lam, v, coef } = reg;
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

/// `n` values spread over [−scale, scale) by a xorshift stream: as good as Gaussian draws for
/// checking products, and cheap at the threaded cases' millions of entries in a debug build.
fn spread(seed: u64, n: usize, scale: f64) -> Vec<f64> {
    let mut state = 0x9e37_79b9_7f4a_7c15 ^ seed.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            scale * ((state >> 11) as f64 / (1u64 << 52) as f64 - 1.0)
        })
        .collect()
}

/// The threaded paths a case's products take: `gather_matmul`'s and `gather_tmatmul`'s (`None`:
/// on the calling thread).
#[derive(Clone, Copy, Debug)]
struct Paths {
    matmul: Option<ThreadedPath>,
    tmatmul: Option<ThreadedPath>,
}

const SEQUENTIAL: Paths = Paths { matmul: None, tmatmul: None };

const fn threaded(matmul: Option<ThreadedPath>, tmatmul: ThreadedPath) -> Paths {
    Paths { matmul, tmatmul: Some(tmatmul) }
}

/// A pool of four threads for the threaded cases.
fn four_threads() -> &'static rayon::ThreadPool {
    static POOL: OnceLock<rayon::ThreadPool> = OnceLock::new();
    POOL.get_or_init(|| rayon::ThreadPoolBuilder::new().num_threads(4).build().expect("a rayon pool"))
}

/// Runs `op` and asserts that it made exactly `calls` calls on the pool, all as `path`.
fn assert_paths<T: Real>(be: &CpuBackend<T>, path: Option<ThreadedPath>, calls: usize, what: &str, op: impl FnOnce()) {
    let count = || ThreadedPath::ALL.map(|p| be.threaded_calls(p));
    let before = count();
    op();
    let after = count();
    for (k, p) in ThreadedPath::ALL.into_iter().enumerate() {
        let want = if path == Some(p) { calls } else { 0 };
        assert_eq!(after[k] - before[k], want, "{what}: calls on the pool as {p:?} (expected {path:?})");
    }
}

/// Every product of `be` against the naive loops, on a batch of `rows` (None: all rows), each
/// taking the threaded path `paths` says (run on the four-thread pool when there is one).
fn check_products<T: Real>(be: &CpuBackend<T>, x: &HostMatrix, batch: Option<&[u32]>, c: usize, paths: Paths, tol: f64, what: &str) {
    if paths.matmul.is_some() || paths.tmatmul.is_some() {
        four_threads().install(|| check_products_here(be, x, batch, c, paths, tol, what));
    } else {
        check_products_here(be, x, batch, c, paths, tol, what);
    }
}

fn check_products_here<T: Real>(be: &CpuBackend<T>, x: &HostMatrix, batch: Option<&[u32]>, c: usize, paths: Paths, tol: f64, what: &str) {
    let (n, d) = x.shape();
    let rows: Vec<usize> = batch.map_or((0..n).collect(), |b| b.iter().map(|&r| r as usize).collect());
    let (w, lam, v) = (spread(1, d * c, 1.0), spread(2, d, 0.3), spread(3, d * c, 1.0));
    let e = spread(4, rows.len() * c, 1.0);
    let (z_ref, out_ref) = naive(x, &rows, &w, &e, c, 0.7, ExpLambda { lam: &lam, v: &v, coef: 0.2 });
    let xm = be.matrix_from(x, "X");
    let idx = batch.map(|b| be.indices(b));
    let sel = match &idx {
        Some(i) => Rows::Batch(i),
        None => Rows::All,
    };
    let (wv, lv, vv, ev) = (be.vector_from(&w, "W"), be.vector_from(&lam, "lam"), be.vector_from(&v, "V"), be.vector_from(&e, "E"));
    let read = |v: &Vec<T>| common::block(be.read_vector(v)).expect("read");
    let mut z = be.zeros(rows.len() * c, "Z");
    assert_paths(be, paths.matmul, 1, &format!("{what}: gather_matmul"), || be.gather_matmul(&xm, sel, &wv, c, &mut z));
    assert!(rel_err(&read(&z), &z_ref) < tol, "{what}: gather_matmul");
    let mut out = be.zeros(d * c, "out");
    assert_paths(be, paths.tmatmul, 1, &format!("{what}: gather_tmatmul"), || {
        be.gather_tmatmul(&xm, sel, &ev, c, TmatmulOut { scale: 0.7, reg: Reg::ExpLambda { lambda: &lv, v: &vv, coef: 0.2 } }, &mut out)
    });
    assert!(rel_err(&read(&out), &out_ref) < tol, "{what}: gather_tmatmul");
    // The in-place form: out ← (1 + 0.2 e^λ)·v + 0.7 X_Bᵀ E.
    let mut inplace = be.vector_from(&v, "V");
    assert_paths(be, paths.tmatmul, 1, &format!("{what}: in-place gather_tmatmul"), || {
        be.gather_tmatmul(
            &xm,
            sel,
            &ev,
            c,
            TmatmulOut { scale: 0.7, reg: Reg::Decay { lambda: Some(&lv), exp_coef: 0.2, const_coef: 1.0 } },
            &mut inplace,
        )
    });
    let (_, scattered) = naive(x, &rows, &w, &e, c, 0.7, ExpLambda { lam: &lam, v: &vec![0.0; d * c], coef: 0.0 });
    let want: Vec<f64> = (0..d * c).map(|t| (1.0 + 0.2 * lam[t / c].exp()) * v[t] + scattered[t]).collect();
    assert!(rel_err(&read(&inplace), &want) < tol, "{what}: in-place gather_tmatmul");
}

/// Cases that take each of the CPU backend's execution paths: sequential (small), rows split
/// across threads (dense or a sparse batch; private accumulators for `Xᵀ E` over few features),
/// feature ranges split across threads (a sparse batch over many features; every row of a
/// sparse matrix through its CSC); dense kernels with every class remainder (c mod 4), odd
/// batches and row lengths that are not multiples of the SIMD width.
#[test]
fn data_products_match_naive_loops_on_every_execution_path() {
    use ThreadedPath::{MatmulFeatures, MatmulRows, TmatmulFeatures, TmatmulRows};
    let cases = [
        // (rows, features, classes, nnz per row, batch size or all rows, threaded paths)
        (20, 7, 3, None, Some(11), SEQUENTIAL),
        (3000, 40, 3, None, Some(1501), SEQUENTIAL),
        (800, 30_000, 4, Some(50), Some(401), SEQUENTIAL),
        (800, 30_000, 4, Some(50), None, SEQUENTIAL),
        (300, 50, 2, Some(9), None, SEQUENTIAL),
        (300, 50, 2, Some(9), Some(77), SEQUENTIAL),
        (2000, 22, 1, None, Some(64), SEQUENTIAL),
        (500, 785, 10, None, Some(63), SEQUENTIAL),
        (500, 785, 10, None, Some(64), SEQUENTIAL),
        (300, 33, 7, None, None, SEQUENTIAL),
        (200, 17, 1, None, None, SEQUENTIAL),
        // Sparse with the class counts that have their own compiled kernels (1, 10, 20).
        (400, 785, 10, Some(150), Some(64), SEQUENTIAL),
        (400, 2_000, 20, Some(40), Some(33), SEQUENTIAL),
        (400, 300, 1, Some(30), Some(65), SEQUENTIAL),
        (400, 785, 10, Some(150), None, SEQUENTIAL),
        // Threaded, 2.1 M to 2.4 M multiply-adds: dense rows, a batch and all of them.
        (6000, 40, 9, None, Some(5900), threaded(Some(MatmulRows), TmatmulRows)),
        (6000, 40, 9, None, None, threaded(Some(MatmulRows), TmatmulRows)),
        // A sparse batch over few features (MNIST's 10 classes, 20news's 20).
        (4000, 785, 10, Some(150), Some(1500), threaded(Some(MatmulRows), TmatmulRows)),
        (2000, 2_000, 20, Some(60), Some(1800), threaded(Some(MatmulRows), TmatmulRows)),
        // Every row of a sparse matrix: feature ranges of its CSC.
        (2000, 20_000, 8, Some(140), None, threaded(Some(MatmulFeatures), TmatmulFeatures)),
        // A sparse batch over many features (d·c = 2.4 M): Z's rows on one thread, Xᵀ E by
        // feature ranges.
        (1000, 300_000, 8, Some(60), Some(500), threaded(None, TmatmulFeatures)),
    ];
    for (n, d, c, nnz, batch, paths) in cases {
        let t0 = std::time::Instant::now();
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
        eprintln!("TIMING gen {:.2}", t0.elapsed().as_secs_f64());
        check_products(&CpuBackend::<f64>::new(), &x, batch.as_deref(), c, paths, 1e-12, &format!("f64 {what}"));
        check_products(&CpuBackend::<f32>::new(), &x, batch.as_deref(), c, paths, 1e-5, &format!("f32 {what}"));
        eprintln!("TIMING {what} {:.2}", t0.elapsed().as_secs_f64());
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
    use ThreadedPath::{MatmulRows, TmatmulRows};
    let rows = threaded(Some(MatmulRows), TmatmulRows);
    for (n, d, c, batch, paths) in [
        (300, 785, 10, Some(64), SEQUENTIAL),
        (300, 785, 10, None, rows),
        (3000, 785, 10, None, rows),
        // The batch form: a sparse batch over few features.
        (3000, 785, 10, Some(2500), rows),
        (200, 50, 1, Some(63), SEQUENTIAL),
        (200, 50, 20, Some(17), SEQUENTIAL),
        (200, 50, 3, None, SEQUENTIAL),
    ] {
        let x = backgrounded(n, d, 5);
        let be64 = CpuBackend::<f64>::new();
        assert!(
            be64.matrix_from(&x, "X").has_batch_form(),
            "a dense matrix whose columns mostly hold one value gets a shifted-CSR batch form"
        );
        let batch: Option<Vec<u32>> = batch.map(|b| Sampler::new(3).batch(n, b));
        let what = format!("shifted n={n} d={d} c={c} batch={:?}", batch.as_ref().map(Vec::len));
        check_products(&be64, &x, batch.as_deref(), c, paths, 1e-12, &format!("f64 {what}"));
        check_products(&CpuBackend::<f32>::new(), &x, batch.as_deref(), c, paths, 1e-5, &format!("f32 {what}"));
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

/// `dot`, `sum` and `axpby` against plain loops, below and above the size that splits them into
/// pieces on the pool (asserted), with accumulation and scaling.
#[test]
fn reductions_match_plain_sums() {
    let be = CpuBackend::<f64>::new();
    for n in [1, 7, 8, 1000, 3_000_001] {
        let pool = n >= 1 << 21;
        let (x, y) = (spread(5, n, 1.0), spread(6, n, 1.0));
        let want_dot: f64 = x.iter().zip(&y).map(|(a, b)| a * b).sum();
        let want_sum: f64 = x.iter().sum();
        let out = be.scalar("s");
        out.set(0.5);
        let reduction = pool.then_some(ThreadedPath::Reduction);
        assert_paths(&be, reduction, 1, &format!("n={n}: dot"), || be.dot(&x, &y, 2.0, &out, true));
        let tol = 1e-9 * (n as f64).sqrt();
        assert!((out.get() - (0.5 + 2.0 * want_dot)).abs() < tol, "n={n}: dot {} vs {}", out.get(), 0.5 + 2.0 * want_dot);
        assert_paths(&be, reduction, 1, &format!("n={n}: sum"), || be.sum(&x, -1.0, &out, false));
        assert!((out.get() + want_sum).abs() < tol, "n={n}: sum {} vs {}", out.get(), -want_sum);
        // y ← 0.5 x − 2 y, elementwise: exact.
        let mut z = y.clone();
        assert_paths(&be, pool.then_some(ThreadedPath::Elementwise), 1, &format!("n={n}: axpby"), || {
            be.axpby(Coef::c(0.5), &x, Coef::c(-2.0), &mut z)
        });
        assert!(z.iter().zip(&x).zip(&y).all(|((&zi, &xi), &yi)| zi == 0.5 * xi - 2.0 * yi), "n={n}: axpby");
    }
}
