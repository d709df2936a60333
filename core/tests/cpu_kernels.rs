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

#[test]
fn data_products_match_naive_loops_on_every_execution_path() {
    let be = CpuBackend::<f64>::new();
    let cases = [
        // (rows, features, classes, nnz per row): small; few features; many features (sparse).
        (20, 7, 3, None),
        (3000, 40, 3, None),
        (800, 30_000, 4, Some(50)),
    ];
    for (n, d, c, nnz) in cases {
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
        let mut s = Sampler::new(2);
        let batch: Vec<u32> = s.batch(n, n / 2 + 1);
        let (w, lam, v) = (randn(&mut s, d * c, 1.0), randn(&mut s, d, 0.3), randn(&mut s, d * c, 1.0));
        let e = randn(&mut s, batch.len() * c, 1.0);
        let rows: Vec<usize> = batch.iter().map(|&r| r as usize).collect();
        let (z_ref, out_ref) = naive(&x, &rows, &w, &e, c, 0.7, &lam, &v, 0.2);
        let (xm, idx) = (be.matrix_from(&x, "X"), be.indices(&batch));
        let mut z = be.zeros(batch.len() * c, "Z");
        be.gather_matmul(&xm, Rows::Batch(&idx), &w, c, &mut z);
        let mut out = be.zeros(d * c, "out");
        be.gather_tmatmul(&xm, Rows::Batch(&idx), &e, c, 0.7, Reg::ExpLambda { lambda: &lam, v: &v, coef: 0.2 }, &mut out);
        assert!(rel_err(&z, &z_ref) < 1e-12, "n={n} d={d}: gather_matmul");
        assert!(rel_err(&out, &out_ref) < 1e-12, "n={n} d={d}: gather_tmatmul");
        // The in-place form: out ← (1 + 0.2 e^λ)·v + 0.7 X_Bᵀ E.
        let mut inplace = v.clone();
        be.gather_tmatmul(
            &xm,
            Rows::Batch(&idx),
            &e,
            c,
            0.7,
            Reg::Decay { lambda: Some(&lam), exp_coef: 0.2, const_coef: 1.0 },
            &mut inplace,
        );
        let (_, scattered) = naive(&x, &rows, &w, &e, c, 0.7, &lam, &vec![0.0; d * c], 0.0);
        let want: Vec<f64> = (0..d * c).map(|t| (1.0 + 0.2 * lam[t / c].exp()) * v[t] + scattered[t]).collect();
        assert!(rel_err(&inplace, &want) < 1e-12, "n={n} d={d}: in-place gather_tmatmul");
    }
}
