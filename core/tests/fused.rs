//! The CPU's fused GLM batch oracle (`Backend::glm_batch`: MNIST hyper-cleaning's and ijcnn1's
//! descent and Neumann steps in one call) against the unfused composition of the primitives
//! (`glm_batch_unfused`, itself checked against naive loops and finite differences elsewhere):
//! every storage it fuses (dense c = 1, CSR, shifted CSR `S + 1sᵀ`), every term (gradient and
//! curvature, at a separate point or in place), every regulariser, with and without sample
//! weights, odd batch sizes; in f64 (the portable kernels, to rounding) and in f32 (the
//! AVX-512 and AVX2 kernels where the CPU has them, and the portable ones).

mod common;

use bilevel_core::backend::{glm_batch_unfused, GlmRows, GlmScales, HostMatrix, LossKind, Reg, RowTerm};
use bilevel_core::cpu::{CpuBackend, Real, Threads};
use bilevel_core::sampler::Sampler;
use bilevel_core::{Backend, GlmBackend, Rows};
use common::randn;

/// A test matrix and its loss.
struct Case {
    name: &'static str,
    x: HostMatrix,
    c: usize,
    loss: LossKind,
    /// Whether the CPU must take a fused kernel for it.
    fused: bool,
}

/// `rows × cols` with about `density` of the entries random and the rest `background` (a
/// shifted CSR when the background is not 0, as for normalised MNIST), plus a bias column of 1.
fn images(s: &mut Sampler, rows: usize, cols: usize, density: f64, background: f64) -> HostMatrix {
    let mut data = vec![background; rows * cols];
    for i in 0..rows {
        data[i * cols + cols - 1] = 1.0;
        for j in 0..cols - 1 {
            if s.uniform() < density {
                data[i * cols + j] = 2.0 * s.uniform() - 0.5;
            }
        }
    }
    HostMatrix::Dense { rows, cols, data }
}

fn cases() -> Vec<Case> {
    let mut s = Sampler::new(11);
    let n = 300;
    let dense = |s: &mut Sampler, d: usize| HostMatrix::Dense { rows: n, cols: d, data: randn(s, n * d, 1.0) };
    vec![
        Case { name: "dense d=22 logistic", x: dense(&mut s, 22), c: 1, loss: LossKind::Logistic, fused: true },
        Case { name: "dense d=37 squared", x: dense(&mut s, 37), c: 1, loss: LossKind::Squared, fused: true },
        Case { name: "dense d=16 logistic", x: dense(&mut s, 16), c: 1, loss: LossKind::Logistic, fused: true },
        // Wider than the AVX2 dense kernels hold in registers: the portable ones there.
        Case { name: "dense d=70 logistic", x: dense(&mut s, 70), c: 1, loss: LossKind::Logistic, fused: true },
        Case { name: "shifted csr c=10 softmax", x: images(&mut s, n, 61, 0.2, -0.4), c: 10, loss: LossKind::Softmax, fused: true },
        Case { name: "shifted csr c=1 logistic", x: images(&mut s, n, 45, 0.15, -0.4), c: 1, loss: LossKind::Logistic, fused: true },
        Case { name: "csr c=10 softmax", x: images(&mut s, n, 70, 0.1, 0.0).by_density(), c: 10, loss: LossKind::Softmax, fused: true },
        Case { name: "csr c=20 softmax", x: images(&mut s, n, 53, 0.1, 0.0).by_density(), c: 20, loss: LossKind::Softmax, fused: true },
        Case { name: "csr c=1 squared", x: images(&mut s, n, 40, 0.1, 0.0).by_density(), c: 1, loss: LossKind::Squared, fused: true },
        // MNIST's full width (its padded Y, V and G outgrow L1), and one class over many columns.
        Case { name: "shifted csr c=10 softmax d=785", x: images(&mut s, n, 785, 0.2, -0.4), c: 10, loss: LossKind::Softmax, fused: true },
        Case {
            name: "csr c=1 logistic d=13000",
            x: images(&mut s, n, 13_000, 0.01, 0.0).by_density(),
            c: 1,
            loss: LossKind::Logistic,
            fused: true,
        },
        // Not fused (the composition runs): dense with several classes, an uncompiled class count.
        Case { name: "dense c=3 softmax", x: dense(&mut s, 9), c: 3, loss: LossKind::Softmax, fused: false },
        Case { name: "csr c=3 softmax", x: images(&mut s, n, 50, 0.1, 0.0).by_density(), c: 3, loss: LossKind::Softmax, fused: false },
    ]
}

/// Targets for a loss: class indices, 0/1 labels or real values.
fn targets(s: &mut Sampler, n: usize, c: usize, loss: LossKind) -> Vec<f64> {
    (0..n)
        .map(|_| match loss {
            LossKind::Softmax => s.below(c) as f64,
            LossKind::Logistic => s.below(2) as f64,
            LossKind::Squared => s.normal(),
        })
        .collect()
}

/// Which term, point and regulariser a check runs (the oracles of `Glm`).
#[derive(Clone, Copy, Debug)]
enum Op {
    /// `∇g` at a separate point, per-feature ridge (`Reg::ExpLambda`).
    Gradient,
    /// The outer gradient: no regulariser.
    GradientNoReg,
    /// The in-place descent step (`Reg::Decay` with λ).
    DescentStep,
    /// An HVP at a separate point and direction, Frobenius penalty (`Reg::Scaled`).
    Hvp,
    /// The in-place Neumann step (`Reg::Decay` without λ).
    NeumannStep,
}

const OPS: [Op; 5] = [Op::Gradient, Op::GradientNoReg, Op::DescentStep, Op::Hvp, Op::NeumannStep];

/// A case's inputs, drawn the same way for every check: targets, y, v, the initial out, the
/// per-feature and the per-sample λ.
struct Inputs([Vec<f64>; 6]);

impl Inputs {
    fn new(case: &Case) -> Inputs {
        let ((n, d), c) = (case.x.shape(), case.c);
        let mut s = Sampler::new(5);
        let t = targets(&mut s, n, c, case.loss);
        let (y, v, out0) = (randn(&mut s, d * c, 0.5), randn(&mut s, d * c, 0.5), randn(&mut s, d * c, 0.5));
        let (lam_feature, lam_sample) = (randn(&mut s, d, 0.3), randn(&mut s, n, 1.0));
        Inputs([t, y, v, out0, lam_feature, lam_sample])
    }

    fn vecs(&self) -> [&[f64]; 6] {
        std::array::from_fn(|i| &self.0[i][..])
    }
}

/// Runs the op on a backend: fused (`glm_batch`) or not, returns `out`.
fn run<B: GlmBackend>(be: &B, case: &Case, batch: &[u32], op: Op, vecs: [&[f64]; 6], weighted: bool, fused: bool) -> Vec<f64> {
    let [t, y, v, out0, lam_feature, lam_sample] = vecs;
    let c = case.c;
    let x = be.matrix_from(&case.x, "x");
    let (tv, yv, vv, lf, ls) = (
        be.vector_from(t, "t"),
        be.vector_from(y, "y"),
        be.vector_from(v, "v"),
        be.vector_from(lam_feature, "lf"),
        be.vector_from(lam_sample, "ls"),
    );
    let mut out = be.vector_from(out0, "out");
    let idx = be.indices(batch);
    let b = batch.len();
    let data = GlmRows { loss: case.loss, x: &x, targets: &tv, rows: Rows::Batch(&idx), c, weights: weighted.then_some(&ls) };
    let (term, reg) = match op {
        Op::Gradient => (RowTerm::Gradient { y: Some(&yv) }, Reg::ExpLambda { lambda: &lf, v: &yv, coef: 0.7 }),
        Op::GradientNoReg => (RowTerm::Gradient { y: Some(&yv) }, Reg::None),
        Op::DescentStep => (RowTerm::Gradient { y: None }, Reg::Decay { lambda: Some(&lf), exp_coef: -0.05, const_coef: 1.0 }),
        Op::Hvp => (RowTerm::Curvature { y: &yv, v: Some(&vv) }, Reg::Scaled { v: &vv, coef: 0.02 }),
        Op::NeumannStep => (RowTerm::Curvature { y: &yv, v: None }, Reg::Decay { lambda: None, exp_coef: 0.0, const_coef: 0.99 }),
    };
    let scale = match op {
        Op::DescentStep | Op::NeumannStep => -0.3,
        _ => 1.0,
    };
    let (mut z, mut u, mut e) = (be.zeros(b * c, "z"), be.zeros(b * c, "u"), be.zeros(b * c, "e"));
    let scratch = [&mut z, &mut u, &mut e];
    if fused {
        be.glm_batch(data, term, GlmScales { row: 1.0 / b as f64, out: scale }, reg, &mut out, scratch);
    } else {
        glm_batch_unfused(be, data, term, GlmScales { row: 1.0 / b as f64, out: scale }, reg, &mut out, scratch);
    }
    common::block(be.read_vector(&out)).expect("read")
}

/// `glm_batch` on `be` and `glm_batch_unfused` on the f64 reference, for one case, batch and op.
fn check<T: Real>(be: &CpuBackend<T>, case: &Case, batch: &[u32], op: Op, weighted: bool, tol: f64, kernel: &str) {
    let reference = CpuBackend::<f64>::new();
    let c = case.c;
    let inputs = Inputs::new(case);
    let vecs = inputs.vecs();
    let [t, _, _, out0, _, lam_sample] = vecs;
    // The kernel the backend picks must be the one this check is about.
    {
        let x = be.matrix_from(&case.x, "x");
        let (tv, ls, idx) = (be.vector_from(t, "t"), be.vector_from(lam_sample, "ls"), be.indices(batch));
        let data = GlmRows { loss: case.loss, x: &x, targets: &tv, rows: Rows::Batch(&idx), c, weights: weighted.then_some(&ls) };
        // A call split over two threads runs the AVX2 kernel (on a CPU with AVX-512 too): only
        // sparse rows with several classes split.
        let splits = be.glm_batch_splits(&data);
        assert!(!splits || (case.name.contains("csr") && c > 1), "{}: split", case.name);
        let want = case.fused.then_some(if splits { "avx2" } else { kernel });
        assert_eq!(be.glm_batch_kernel(&data), want, "{}: kernel", case.name);
    }
    let got = run(be, case, batch, op, vecs, weighted, true);
    let want = run(&reference, case, batch, op, vecs, weighted, false);
    // The update's own size: in-place steps are mostly the old out.
    let base: Vec<f64> = match op {
        Op::DescentStep | Op::NeumannStep => want.iter().zip(out0).map(|(w, o)| w - o).collect(),
        _ => want.clone(),
    };
    let diff: Vec<f64> = got.iter().zip(&want).map(|(g, w)| g - w).collect();
    let err = common::norm(&diff) / common::norm(&base).max(1e-300);
    assert!(
        err < tol,
        "{} ({kernel}), {op:?}, batch {}, weighted {weighted}: relative error {err:.2e} (tolerance {tol:.0e})",
        case.name,
        batch.len()
    );
    assert!(got.iter().all(|v| v.is_finite()), "{}: non-finite output", case.name);
}

fn batches(n: usize) -> Vec<Vec<u32>> {
    let mut s = Sampler::new(3);
    // 64 (the benchmarks'), odd sizes (tails of the 16-row blocks), one row, repeated draws.
    // And a run of consecutive rows (Benchopt-style slices).
    vec![s.batch(n, 64), s.batch(n, 37), s.batch(n, 1), s.batch(n, 17), (100..164).collect()]
}

fn check_all<T: Real>(be: &CpuBackend<T>, tol: f64, kernel: &str) {
    for case in cases() {
        for batch in batches(case.x.shape().0) {
            for op in OPS {
                for weighted in [false, true] {
                    // The intrinsics kernels hold a row in 16 lanes: more than 16 classes stay
                    // portable, as do AVX2's dense rows past 64 columns.
                    let wide_dense = case.name.starts_with("dense") && case.x.shape().1 > 64;
                    let kernel = if case.c > 16 || (kernel == "avx2" && wide_dense) { "portable" } else { kernel };
                    check(be, &case, &batch, op, weighted, tol, kernel);
                }
            }
        }
    }
}

#[test]
fn fused_f64_matches_the_composition() {
    check_all(&CpuBackend::<f64>::new(), 1e-12, "portable");
}

#[test]
fn fused_f32_portable_matches_the_composition() {
    check_all(&CpuBackend::<f32>::new().portable(), 2e-5, "portable");
}

/// Whether this CPU has AVX-512F, and AVX2 with FMA.
fn cpu_simd() -> (bool, bool) {
    #[cfg(target_arch = "x86_64")]
    return (
        std::arch::is_x86_feature_detected!("avx512f"),
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma"),
    );
    #[cfg(not(target_arch = "x86_64"))]
    (false, false)
}

/// The default f32 backend takes the widest intrinsics kernels this CPU has (where it has
/// none, the portable kernels run and the test says so rather than passing on nothing).
#[test]
fn fused_f32_simd_matches_the_composition() {
    let kernel = match cpu_simd() {
        (true, _) => "avx512",
        (false, true) => "avx2",
        _ => {
            eprintln!("this CPU has neither AVX-512F nor AVX2: checking the portable f32 kernels instead");
            "portable"
        }
    };
    check_all(&CpuBackend::<f32>::new(), 2e-5, kernel);
}

/// The AVX2 kernels, on a CPU with AVX-512 too (the default backend takes those there).
#[test]
fn fused_f32_avx2_matches_the_composition() {
    let avx2 = cpu_simd().1;
    if !avx2 {
        eprintln!("this CPU has no AVX2 and FMA: checking the portable f32 kernels instead");
    }
    check_all(&CpuBackend::<f32>::new().without_avx512(), 2e-5, if avx2 { "avx2" } else { "portable" });
}

/// The sparse kernel split over two threads: the one-thread kernel's results to the bit
/// (each of G's rows sees the same updates in the same order), for every op and batch, and
/// the split does happen (MNIST's shape and batch size among others).
#[test]
fn fused_f32_two_threads_match_one_thread_to_the_bit() {
    assert!(cpu_simd().1, "this test needs AVX2 and FMA (every machine of this project's kind has them)");
    let (one, two) =
        (CpuBackend::<f32>::new().without_avx512().threads(Threads::One), CpuBackend::<f32>::new().without_avx512().threads(Threads::Two));
    let mut split_calls = 0;
    for case in cases().into_iter().filter(|c| c.fused && c.name.contains("csr")) {
        let (n, c) = (case.x.shape().0, case.c);
        let inputs = Inputs::new(&case);
        let vecs = inputs.vecs();
        for batch in batches(n) {
            let x = two.matrix_from(&case.x, "x");
            let (tv, idx) = (two.vector_from(vecs[0], "t"), two.indices(&batch));
            let data = GlmRows { loss: case.loss, x: &x, targets: &tv, rows: Rows::Batch(&idx), c, weights: None };
            let splits = two.glm_batch_splits(&data);
            if case.name.ends_with("d=785") && batch.len() == 64 {
                assert!(splits, "{}: MNIST's shape and batch must split", case.name);
            }
            for op in OPS {
                for weighted in [false, true] {
                    let (a, b) = (run(&one, &case, &batch, op, vecs, weighted, true), run(&two, &case, &batch, op, vecs, weighted, true));
                    assert!(
                        a.iter().zip(&b).all(|(a, b)| a.to_bits() == b.to_bits()),
                        "{}, {op:?}, batch {}, weighted {weighted}: two threads differ from one",
                        case.name,
                        batch.len()
                    );
                    split_calls += usize::from(splits);
                }
            }
        }
    }
    assert!(split_calls >= 30, "only {split_calls} calls split");
    // And against the composition, as every kernel.
    check_all(&two, 2e-5, "avx2");
}

/// A NaN in the point reaches the output (divergence must not be hidden by the clamped `exp`
/// of the AVX-512 kernels).
#[test]
fn fused_propagates_nan() {
    for be in [CpuBackend::<f32>::new(), CpuBackend::<f32>::new().without_avx512(), CpuBackend::<f32>::new().portable()] {
        for case in cases().into_iter().filter(|c| c.fused) {
            let (n, d) = case.x.shape();
            let c = case.c;
            let mut s = Sampler::new(9);
            let x = be.matrix_from(&case.x, "x");
            let t = be.vector_from(&targets(&mut s, n, c, case.loss), "t");
            let mut y = randn(&mut s, d * c, 0.5);
            y[d * c - 1] = f64::NAN; // the bias column's weights: in every row
            let yv = be.vector_from(&y, "y");
            let mut out = be.zeros(d * c, "out");
            let idx = be.indices(&s.batch(n, 20));
            let data = GlmRows { loss: case.loss, x: &x, targets: &t, rows: Rows::Batch(&idx), c, weights: None };
            let (mut z, mut u, mut e) = (be.zeros(20 * c, "z"), be.zeros(20 * c, "u"), be.zeros(20 * c, "e"));
            be.glm_batch(
                data,
                RowTerm::Gradient { y: Some(&yv) },
                GlmScales { row: 0.05, out: 1.0 },
                Reg::None,
                &mut out,
                [&mut z, &mut u, &mut e],
            );
            assert!(out.iter().any(|v| v.is_nan()), "{}: NaN lost", case.name);
        }
    }
}
