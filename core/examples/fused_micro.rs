use bilevel_core::backend::{GlmRows, HostMatrix, LossKind, Reg, RowTerm};
use bilevel_core::cpu::CpuBackend;
use bilevel_core::sampler::Sampler;
use bilevel_core::{Backend, Rows};
use std::time::Instant;

fn main() {
    let mut s = Sampler::new(1);
    let (n, cols, c) = (20000usize, 785usize, 10usize);
    // MNIST-like: a central blob of active pixels.
    let mut data = vec![-0.4f64; n * cols];
    for i in 0..n {
        data[i * cols + cols - 1] = 1.0;
        for j in 0..cols - 1 {
            let (r, q) = ((j / 28) as f64 - 13.5, (j % 28) as f64 - 13.5);
            let p = 0.45 * (-(r * r + q * q) / 60.0).exp();
            if s.uniform() < p {
                data[i * cols + j] = s.uniform() * 2.4;
            }
        }
    }
    let hm = HostMatrix::Dense { rows: n, cols, data };
    for wide in [true, false].into_iter().take(if std::env::var("PORTABLE").is_ok() { 2 } else { 1 }) {
        let be = if wide { CpuBackend::<f32>::new() } else { CpuBackend::<f32>::new().portable() };
        let x = be.matrix_from(&hm, "x");
        let t: Vec<f64> = (0..n).map(|_| s.below(c) as f64).collect();
        let tv = be.vector_from(&t, "t");
        let y = be.vector_from(&(0..cols * c).map(|_| 0.01 * s.normal()).collect::<Vec<_>>(), "y");
        let mut out = be.vector_from(&vec![0.0; cols * c], "o");
        let (mut z, mut u, mut e) = (be.zeros(64 * c, "z"), be.zeros(64 * c, "u"), be.zeros(64 * c, "e"));
        let batches: Vec<_> = (0..200).map(|_| be.indices(&s.batch(n, 64))).collect();
        for curv in [false, true] {
            let t0 = Instant::now();
            let reps = 20000;
            for r in 0..reps {
                let idx = &batches[r % 200];
                let data = GlmRows { loss: LossKind::Softmax, x: &x, targets: &tv, rows: Rows::Batch(idx), c, weights: None };
                let term = if curv { RowTerm::Curvature { y: &y, v: None } } else { RowTerm::Gradient { y: None } };
                be.glm_batch(
                    data,
                    term,
                    1.0 / 64.0,
                    -0.01,
                    Reg::Decay { lambda: None, exp_coef: 0.0, const_coef: 0.999 },
                    &mut out,
                    [&mut z, &mut u, &mut e],
                );
            }
            let dt = t0.elapsed().as_secs_f64() / reps as f64;
            let data = GlmRows { loss: LossKind::Softmax, x: &x, targets: &tv, rows: Rows::Batch(&batches[0]), c, weights: None };
            println!("{} curvature={curv}: {:.2} µs/call", be.glm_batch_kernel(&data).unwrap_or("-"), dt * 1e6);
        }
    }
}
