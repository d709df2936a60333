//! Meta-learning: every primitive of `MetaBackend` against finite differences (f64, tiny shapes
//! that are not multiples of anything), the forward ops against naive loops, and the
//! algorithms' hypergradients against finite differences through the whole adaptation.

mod common;

use bilevel_core::cpu::CpuBackend;
use bilevel_core::meta::{BnLayer, Conv3x3, Dual, Gemm, ImageBatch, MetaBackend, SoftmaxCurvature, SoftmaxXent, SumRows, View, ViewMut};
use bilevel_core::sampler::Sampler;
use common::{randn, random_tasks, rel_err};

type Cpu = CpuBackend<f64>;

/// Central differences of `f` at `x` along the coordinate basis.
fn fd_grad(mut f: impl FnMut(&[f64]) -> f64, x: &[f64]) -> Vec<f64> {
    let h = 1e-6;
    let mut xp = x.to_vec();
    (0..x.len())
        .map(|i| {
            let v = xp[i];
            xp[i] = v + h;
            let fp = f(&xp);
            xp[i] = v - h;
            let fm = f(&xp);
            xp[i] = v;
            (fp - fm) / (2.0 * h)
        })
        .collect()
}

/// Central difference of a vector function along direction `d`.
fn fd_dir(f: impl Fn(&[f64]) -> Vec<f64>, x: &[f64], d: &[f64]) -> Vec<f64> {
    let h = 1e-6;
    let xp: Vec<f64> = x.iter().zip(d).map(|(a, b)| a + h * b).collect();
    let xm: Vec<f64> = x.iter().zip(d).map(|(a, b)| a - h * b).collect();
    f(&xp).iter().zip(f(&xm)).map(|(a, b)| (a - b) / (2.0 * h)).collect()
}

fn dotv(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

const BATCH: ImageBatch = ImageBatch { tasks: 2, per_task: 3, channels: 2, height: 5, width: 4 };
const C_OUT: usize = 3;

fn conv_len(b: ImageBatch, c_out: usize) -> usize {
    c_out * b.channels * 9 + c_out
}

/// A direct 3×3 convolution (zero padding), the definition the kernels must match.
fn naive_conv(x: &[f64], b: ImageBatch, c_out: usize, params: &[f64], stride: usize) -> Vec<f64> {
    let (h, w, ci) = (b.height, b.width, b.channels);
    let mut out = vec![0.0; b.images() * c_out * h * w];
    for i in 0..b.images() {
        let p = &params[(i / b.per_task) * stride..];
        for co in 0..c_out {
            for y in 0..h {
                for xx in 0..w {
                    let mut s = p[c_out * ci * 9 + co];
                    for c in 0..ci {
                        for ky in 0..3 {
                            for kx in 0..3 {
                                let (sy, sx) = (y as isize + ky as isize - 1, xx as isize + kx as isize - 1);
                                if sy >= 0 && sx >= 0 && (sy as usize) < h && (sx as usize) < w {
                                    s += p[((co * ci + c) * 3 + ky) * 3 + kx] * x[((i * ci + c) * h + sy as usize) * w + sx as usize];
                                }
                            }
                        }
                    }
                    out[((i * c_out + co) * h + y) * w + xx] = s;
                }
            }
        }
    }
    out
}

#[test]
fn conv3x3_forward_matches_direct_convolution_and_its_gradients_match_finite_differences() {
    let be = Cpu::new();
    let mut s = Sampler::new(1);
    let plen = conv_len(BATCH, C_OUT);
    let out_len = BATCH.images() * C_OUT * BATCH.height * BATCH.width;
    for per_task in [false, true] {
        let stride = if per_task { plen } else { 0 };
        let blocks = if per_task { BATCH.tasks } else { 1 };
        let x = randn(&mut s, BATCH.len(), 1.0);
        let p = randn(&mut s, blocks * plen, 0.5);
        let r = randn(&mut s, out_len, 1.0);
        let forward = |x: &[f64], p: &[f64]| {
            let mut out = vec![f64::NAN; out_len];
            be.conv3x3(
                &x.to_vec(),
                Conv3x3 { batch: BATCH, c_out: C_OUT, accumulate: false },
                View { buf: &p.to_vec(), offset: 0, stride },
                true,
                &mut out,
            );
            out
        };
        let out = forward(&x, &p);
        assert!(rel_err(&out, &naive_conv(&x, BATCH, C_OUT, &p, stride)) < 1e-14, "conv forward");
        // Accumulate adds, bias = false leaves the bias out.
        let mut acc = out.clone();
        be.conv3x3(&x, Conv3x3 { batch: BATCH, c_out: C_OUT, accumulate: true }, View { buf: &p, offset: 0, stride }, false, &mut acc);
        let mut nobias = p.clone();
        for blk in 0..blocks {
            nobias[blk * plen + C_OUT * BATCH.channels * 9..(blk + 1) * plen].fill(0.0);
        }
        let twice: Vec<f64> = out.iter().zip(naive_conv(&x, BATCH, C_OUT, &nobias, stride)).map(|(a, b)| a + b).collect();
        assert!(rel_err(&acc, &twice) < 1e-14, "conv accumulate / bias flag");

        let loss = |x: &[f64], p: &[f64]| dotv(&r, &forward(x, p));
        let mut dx = vec![f64::NAN; BATCH.len()];
        be.conv3x3_input_grad(&r, Conv3x3 { batch: BATCH, c_out: C_OUT, accumulate: false }, View { buf: &p, offset: 0, stride }, &mut dx);
        assert!(rel_err(&dx, &fd_grad(|x| loss(x, &p), &x)) < 1e-8, "conv input grad (per_task {per_task})");
        // The parameter gradient lands at an offset, leaving the rest of the buffer alone.
        let mut g = vec![7.0; 5 + blocks * plen];
        be.conv3x3_param_grad(
            &x,
            &r,
            Conv3x3 { batch: BATCH, c_out: C_OUT, accumulate: false },
            ViewMut { buf: &mut g, offset: 5, stride },
        );
        assert_eq!(&g[..5], &[7.0; 5]);
        assert!(rel_err(&g[5..], &fd_grad(|p| loss(&x, p), &p)) < 1e-8, "conv param grad (per_task {per_task})");
        // Accumulating doubles.
        let once = g.clone();
        be.conv3x3_param_grad(&x, &r, Conv3x3 { batch: BATCH, c_out: C_OUT, accumulate: true }, ViewMut { buf: &mut g, offset: 5, stride });
        let doubled: Vec<f64> = once[5..].iter().map(|v| 2.0 * v).collect();
        assert!(rel_err(&g[5..], &doubled) < 1e-14);
        let mut dx2 = dx.clone();
        be.conv3x3_input_grad(&r, Conv3x3 { batch: BATCH, c_out: C_OUT, accumulate: true }, View { buf: &p, offset: 0, stride }, &mut dx2);
        let doubled: Vec<f64> = dx.iter().map(|v| 2.0 * v).collect();
        assert!(rel_err(&dx2, &doubled) < 1e-14);
    }
}

/// Batch-norm parameters (γ, β) per block, γ away from 0.
fn bn_params(s: &mut Sampler, blocks: usize, c: usize) -> Vec<f64> {
    let mut p = randn(s, blocks * 2 * c, 0.5);
    for b in 0..blocks {
        for ch in 0..c {
            p[b * 2 * c + ch] += 1.0;
        }
    }
    p
}

#[test]
fn batch_norm_forward_statistics_and_backward_match_definitions_and_finite_differences() {
    let be = Cpu::new();
    let mut s = Sampler::new(2);
    let c = BATCH.channels;
    let hw = BATCH.height * BATCH.width;
    for per_task in [false, true] {
        let stride = if per_task { 2 * c } else { 0 };
        let blocks = if per_task { BATCH.tasks } else { 1 };
        let x: Vec<f64> = randn(&mut s, BATCH.len(), 2.0).iter().map(|v| v + 1.0).collect();
        let p = bn_params(&mut s, blocks, c);
        let r = randn(&mut s, BATCH.len(), 1.0);
        let forward = |x: &[f64], p: &[f64]| {
            let (mut y, mut st) = (vec![f64::NAN; BATCH.len()], vec![f64::NAN; BATCH.tasks * c * 2]);
            be.batch_norm(&x.to_vec(), BATCH, View { buf: &p.to_vec(), offset: 0, stride }, &mut y, &mut st);
            (y, st)
        };
        let (y, stats) = forward(&x, &p);
        // Each (task, channel) group is normalised over its own images: mean β, variance γ²·σ²/(σ²+ε).
        for t in 0..BATCH.tasks {
            for ch in 0..c {
                let idx: Vec<usize> =
                    (0..BATCH.per_task).flat_map(|n| (0..hw).map(move |k| ((t * BATCH.per_task + n) * c + ch) * hw + k)).collect();
                let m = idx.len() as f64;
                let mu = idx.iter().map(|&i| x[i]).sum::<f64>() / m;
                let var = idx.iter().map(|&i| (x[i] - mu).powi(2)).sum::<f64>() / m;
                assert!((stats[2 * (t * c + ch)] - mu).abs() < 1e-12);
                assert!((stats[2 * (t * c + ch) + 1] - 1.0 / (var + 1e-5).sqrt()).abs() < 1e-9);
                let pb = if per_task { t * 2 * c } else { 0 };
                for &i in &idx {
                    let want = p[pb + ch] * (x[i] - mu) / (var + 1e-5).sqrt() + p[pb + c + ch];
                    assert!((y[i] - want).abs() < 1e-12);
                }
            }
        }
        let loss = |x: &[f64], p: &[f64]| dotv(&r, &forward(x, p).0);
        let mut dx = vec![f64::NAN; BATCH.len()];
        let mut g = vec![f64::NAN; 3 + blocks * 2 * c];
        be.batch_norm_backward(
            &x,
            &r,
            BnLayer { batch: BATCH, params: View { buf: &p, offset: 0, stride }, stats: &stats },
            &mut dx,
            ViewMut { buf: &mut g, offset: 3, stride },
        );
        assert!(rel_err(&dx, &fd_grad(|x| loss(x, &p), &x)) < 1e-7, "bn dx (per_task {per_task})");
        assert!(rel_err(&g[3..], &fd_grad(|p| loss(&x, p), &p)) < 1e-7, "bn dγ dβ (per_task {per_task})");

        // Tangents: directional derivatives of the forward and of the backward.
        let (rx, rp, rr) = (randn(&mut s, BATCH.len(), 1.0), randn(&mut s, p.len(), 1.0), randn(&mut s, BATCH.len(), 1.0));
        let mut ry = vec![f64::NAN; BATCH.len()];
        be.batch_norm_tangent(
            Dual { value: &x, tangent: &rx },
            BnLayer { batch: BATCH, params: View { buf: &p, offset: 0, stride }, stats: &stats },
            View { buf: &rp, offset: 0, stride },
            &mut ry,
        );
        let (nx, np) = (x.len(), p.len());
        let joint: Vec<f64> = x.iter().chain(&p).chain(&r).copied().collect();
        let dir: Vec<f64> = rx.iter().chain(&rp).chain(&rr).copied().collect();
        let fwd = |z: &[f64]| forward(&z[..nx], &z[nx..nx + np]).0;
        assert!(rel_err(&ry, &fd_dir(fwd, &joint, &dir)) < 1e-7, "bn forward tangent (per_task {per_task})");
        let bwd = |z: &[f64]| {
            let (xz, pz, dyz) = (z[..nx].to_vec(), z[nx..nx + np].to_vec(), z[nx + np..].to_vec());
            let st = forward(&xz, &pz).1;
            let mut dx = vec![0.0; nx];
            let mut g = vec![0.0; np];
            be.batch_norm_backward(
                &xz,
                &dyz,
                BnLayer { batch: BATCH, params: View { buf: &pz, offset: 0, stride }, stats: &st },
                &mut dx,
                ViewMut { buf: &mut g, offset: 0, stride },
            );
            dx.into_iter().chain(g).collect::<Vec<f64>>()
        };
        let mut rdx = vec![f64::NAN; nx];
        let mut rg = vec![f64::NAN; np];
        be.batch_norm_backward_tangent(
            Dual { value: &x, tangent: &rx },
            Dual { value: &r, tangent: &rr },
            BnLayer { batch: BATCH, params: View { buf: &p, offset: 0, stride }, stats: &stats },
            View { buf: &rp, offset: 0, stride },
            &mut rdx,
            ViewMut { buf: &mut rg, offset: 0, stride },
        );
        let got: Vec<f64> = rdx.into_iter().chain(rg).collect();
        assert!(rel_err(&got, &fd_dir(bwd, &joint, &dir)) < 1e-6, "bn backward tangent (per_task {per_task})");
    }
}

#[test]
fn relu_maxpool_forward_backward_and_tangent_match_definitions() {
    let be = Cpu::new();
    let mut s = Sampler::new(3);
    // Odd sizes: the last row/column is dropped by the floor.
    let b = ImageBatch { tasks: 2, per_task: 2, channels: 3, height: 5, width: 7 };
    let p = b.pooled();
    let x = randn(&mut s, b.len(), 1.0);
    let mut y = vec![f64::NAN; p.len()];
    be.relu_maxpool(&x, b, &mut y);
    for pl in 0..b.images() * b.channels {
        for py in 0..p.height {
            for px in 0..p.width {
                let mut m = 0.0f64;
                for dy in 0..2 {
                    for dx in 0..2 {
                        m = m.max(x[pl * b.height * b.width + (2 * py + dy) * b.width + 2 * px + dx]);
                    }
                }
                assert_eq!(y[(pl * p.height + py) * p.width + px], m);
            }
        }
    }
    let r = randn(&mut s, p.len(), 1.0);
    let forward = |x: &[f64]| {
        let mut y = vec![0.0; p.len()];
        be.relu_maxpool(&x.to_vec(), b, &mut y);
        y
    };
    let mut dx = vec![f64::NAN; b.len()];
    be.relu_maxpool_backward(&x, &r, b, &mut dx);
    assert!(rel_err(&dx, &fd_grad(|x| dotv(&r, &forward(x)), &x)) < 1e-8);
    let rx = randn(&mut s, b.len(), 1.0);
    let mut ry = vec![f64::NAN; p.len()];
    be.relu_maxpool_tangent(&x, &rx, b, &mut ry);
    assert!(rel_err(&ry, &fd_dir(forward, &x, &rx)) < 1e-8);
    // Ties: the first maximum of the window takes the whole gradient.
    let b1 = ImageBatch { tasks: 1, per_task: 1, channels: 1, height: 2, width: 2 };
    let mut d = vec![f64::NAN; 4];
    be.relu_maxpool_backward(&vec![0.5, 1.0, 1.0, 0.2], &vec![3.0], b1, &mut d);
    assert_eq!(d, vec![0.0, 3.0, 0.0, 0.0]);
    be.relu_maxpool_backward(&vec![-0.5, -1.0, -1.0, -0.2], &vec![3.0], b1, &mut d);
    assert_eq!(d, vec![0.0; 4]);
}

#[test]
fn gemm_row_bias_and_row_sums_match_naive_loops_with_strides_and_transposes() {
    let be = Cpu::new();
    let mut s = Sampler::new(4);
    let (tasks, m, n, k) = (3, 4, 5, 6);
    for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
        for a_shared in [false, true] {
            // A at offset 2 with stride m·k + 1 (or shared), B at offset 1, C at offset 3.
            let a_stride = if a_shared { 0 } else { m * k + 1 };
            let a = randn(&mut s, 2 + tasks * (m * k + 1), 1.0);
            let b = randn(&mut s, 1 + tasks * k * n, 1.0);
            let c0 = randn(&mut s, 3 + tasks * m * n, 1.0);
            let mut c = c0.clone();
            let g = Gemm { tasks, m, n, k, trans_a: ta, trans_b: tb, alpha: 0.7, beta: -0.3 };
            be.gemm(
                g,
                View { buf: &a, offset: 2, stride: a_stride },
                View { buf: &b, offset: 1, stride: k * n },
                ViewMut { buf: &mut c, offset: 3, stride: m * n },
            );
            for t in 0..tasks {
                for i in 0..m {
                    for j in 0..n {
                        let mut acc = 0.0;
                        for l in 0..k {
                            let av = a[2 + t * a_stride + if ta { l * m + i } else { i * k + l }];
                            let bv = b[1 + t * k * n + if tb { j * k + l } else { l * n + j }];
                            acc += av * bv;
                        }
                        let want = 0.7 * acc - 0.3 * c0[3 + t * m * n + i * n + j];
                        assert!((c[3 + t * m * n + i * n + j] - want).abs() < 1e-12);
                    }
                }
            }
            assert_eq!(&c[..3], &c0[..3]);
        }
    }
    // β = 0 ignores NaNs in C.
    let mut c = vec![f64::NAN; m * n];
    let a = randn(&mut s, m * k, 1.0);
    let b = randn(&mut s, k * n, 1.0);
    let g = Gemm { tasks: 1, m, n, k, trans_a: false, trans_b: false, alpha: 1.0, beta: 0.0 };
    be.gemm(g, View::shared(&a), View::shared(&b), ViewMut::per_task(&mut c, m * n));
    assert!(c.iter().all(|v| v.is_finite()));

    let (rows, cols) = (4, 3);
    let bias = randn(&mut s, tasks * cols, 1.0);
    let e = randn(&mut s, tasks * rows * cols, 1.0);
    let mut cm = e.clone();
    be.add_row_bias(tasks, rows, cols, View::per_task(&bias, cols), ViewMut::per_task(&mut cm, rows * cols));
    for (idx, v) in cm.iter().enumerate() {
        let (t, j) = (idx / (rows * cols), idx % cols);
        assert!((v - e[idx] - bias[t * cols + j]).abs() < 1e-14);
    }
    let o0 = randn(&mut s, tasks * cols, 1.0);
    let mut o = o0.clone();
    be.sum_rows(SumRows { tasks, rows, cols, alpha: 2.0, beta: 0.5 }, View::per_task(&e, rows * cols), ViewMut::per_task(&mut o, cols));
    for t in 0..tasks {
        for j in 0..cols {
            let sum: f64 = (0..rows).map(|i| e[t * rows * cols + i * cols + j]).sum();
            assert!((o[t * cols + j] - 2.0 * sum - 0.5 * o0[t * cols + j]).abs() < 1e-12);
        }
    }
}

#[test]
fn softmax_xent_gradient_stats_and_curvature_match_finite_differences() {
    let be = Cpu::new();
    let mut s = Sampler::new(5);
    let (tasks, rows, classes) = (3, 4, 5);
    let n = tasks * rows * classes;
    let z = randn(&mut s, n, 2.0);
    let labels: Vec<f64> = (0..tasks * rows).map(|i| ((i * 7) % classes) as f64).collect();
    let scale = 0.37;
    let eval = |z: &[f64]| {
        let (mut p, mut g, mut st) = (vec![f64::NAN; n], vec![f64::NAN; n], vec![f64::NAN; 2 * tasks]);
        be.softmax_xent(SoftmaxXent { tasks, rows, classes, scale }, &z.to_vec(), &labels, &mut p, Some(&mut g), &mut st);
        (p, g, st)
    };
    let (p, g, st) = eval(&z);
    // Total loss = Σ_t rows·mean_t; its gradient is scale·(P − Y) / scale.
    let loss = |z: &[f64]| scale * eval(z).2.chunks(2).map(|c| c[0] * rows as f64).sum::<f64>();
    assert!(rel_err(&g, &fd_grad(loss, &z)) < 1e-7);
    for t in 0..tasks {
        let correct = (0..rows)
            .filter(|&r| {
                let row = &z[(t * rows + r) * classes..(t * rows + r + 1) * classes];
                let arg = (0..classes).fold(0, |a, j| if row[j] > row[a] { j } else { a });
                arg == labels[t * rows + r] as usize
            })
            .count();
        assert_eq!(st[2 * t + 1], correct as f64);
    }
    let u = randn(&mut s, n, 1.0);
    let mut m = vec![f64::NAN; n];
    be.softmax_curvature(SoftmaxCurvature { rows: tasks * rows, classes, scale, accumulate: false }, &p, &u, &mut m);
    assert!(rel_err(&m, &fd_dir(|z| eval(z).1, &z, &u)) < 1e-7);
    let mut m2 = m.clone();
    be.softmax_curvature(SoftmaxCurvature { rows: tasks * rows, classes, scale, accumulate: true }, &p, &u, &mut m2);
    let doubled: Vec<f64> = m.iter().map(|v| 2.0 * v).collect();
    assert!(rel_err(&m2, &doubled) < 1e-14);
}

// ---- algorithms: hypergradients through the whole adaptation ----

use bilevel_core::meta::{Conv4, HostTasks, Learner, MetaAlg, MetaConfig, TaskBatch};
use bilevel_core::Backend;

fn tiny_config(alg: MetaAlg, inner_steps: usize) -> MetaConfig {
    MetaConfig {
        alg,
        // 8×7 → 4×3 → 2×1: D = 3·2·1 = 6.
        net: Conv4 { channels: 1, height: 8, width: 7, hidden: 3, blocks: 2, ways: 3 },
        shots: 2,
        queries: 2,
        meta_batch: 2,
        inner_steps,
        inner_lr: 0.7,
        outer_lr: 0.01,
        head_lr: 0.01,
        seed: 11,
    }
}

/// The meta-objective (mean over tasks of the adapted model's mean query CE) as a function of
/// the outer variable θ (`head = false`) or of the initial head (`head = true`).
fn meta_loss(be: &Cpu, l: &mut Learner<Cpu>, batch: &TaskBatch<Cpu>, x: &[f64], head: bool) -> f64 {
    if head {
        l.head = be.vector_from(x, "head");
    } else {
        l.theta = be.vector_from(x, "theta");
    }
    l.evaluate(be, batch);
    common::block(l.read_query(be)).expect("cpu read").0
}

fn check_hypergradient(alg: MetaAlg, inner_steps: usize, head: bool, tol: f64) {
    let be = Cpu::new();
    let cfg = tiny_config(alg, inner_steps);
    let batch = TaskBatch::upload(&be, &random_tasks(&cfg, 3));
    let mut l = Learner::new(&be, cfg).expect("valid config");
    l.meta_gradient(&be, &batch);
    let got = if head { l.grad_head.clone() } else { l.grad_theta.clone() };
    let x0 = if head { l.head.clone() } else { l.theta.clone() };
    let fd = fd_grad(|x| meta_loss(&be, &mut l, &batch, x, head), &x0);
    let err = rel_err(&got, &fd);
    assert!(err < tol, "{} hypergradient ({} steps, head {head}): relative error {err:.2e}", alg.name(), inner_steps);
    // The hypergradient is not trivially small.
    assert!(common::norm(&fd) > 1e-3, "degenerate test: ‖∇‖ = {}", common::norm(&fd));
}

#[test]
fn itd_bio_hypergradient_matches_finite_differences_through_the_adaptation() {
    check_hypergradient(MetaAlg::ItdBio, 3, false, 1e-6);
}

#[test]
fn anil_hypergradients_for_backbone_and_head_init_match_finite_differences() {
    check_hypergradient(MetaAlg::Anil, 3, false, 1e-6);
    check_hypergradient(MetaAlg::Anil, 3, true, 1e-6);
}

#[test]
fn maml_second_order_meta_gradient_matches_finite_differences_through_the_adaptation() {
    check_hypergradient(MetaAlg::Maml { first_order: false }, 2, false, 1e-6);
}

#[test]
fn without_inner_steps_every_variant_is_the_plain_query_gradient() {
    // N = 0: ITD-BiO's and first-order MAML's gradients are exact (nothing to differentiate through).
    check_hypergradient(MetaAlg::Maml { first_order: true }, 0, false, 1e-6);
}

#[test]
fn first_order_variants_differ_from_the_exact_ones_with_inner_steps() {
    let be = Cpu::new();
    let grads = |alg| {
        let cfg = tiny_config(alg, 3);
        let batch = TaskBatch::upload(&be, &random_tasks(&cfg, 3));
        let mut l = Learner::new(&be, cfg).expect("valid config");
        l.meta_gradient(&be, &batch);
        l.grad_theta.clone()
    };
    let (exact, fo) = (grads(MetaAlg::Maml { first_order: false }), grads(MetaAlg::Maml { first_order: true }));
    assert!(rel_err(&fo, &exact) > 1e-3, "first-order MAML equals second order: the HVP terms vanished");
}

// ---- meta-training on easy synthetic episodes ----

use bilevel_core::data::episodes::{sample_episode, ImageSet};
use bilevel_core::meta::train::{meta_train, Split, TrainOptions};

/// Classes = a random 1×10×10 prototype each; an image = its class's prototype + noise.
fn prototype_set(classes: usize, per_class: usize, noise: f64, seed: u64) -> ImageSet {
    let mut s = Sampler::new(seed);
    let len = 100;
    let images = (0..classes)
        .map(|_| {
            let proto = randn(&mut s, len, 1.0);
            (0..per_class).flat_map(|_| proto.iter().map(|p| (p + noise * s.normal()) as f32).collect::<Vec<_>>()).collect()
        })
        .collect();
    ImageSet { channels: 1, height: 10, width: 10, class_names: (0..classes).map(|c| format!("c{c}")).collect(), images }
}

#[test]
fn a_few_meta_steps_on_easy_synthetic_episodes_raise_test_accuracy() {
    for alg in [MetaAlg::ItdBio, MetaAlg::FoItdBio, MetaAlg::Anil, MetaAlg::Maml { first_order: false }] {
        let be = CpuBackend::<f32>::new();
        let cfg = MetaConfig {
            alg,
            net: Conv4 { channels: 1, height: 10, width: 10, hidden: 8, blocks: 2, ways: 3 },
            shots: 1,
            queries: 3,
            meta_batch: 4,
            inner_steps: 3,
            inner_lr: if matches!(alg, MetaAlg::Maml { .. }) { 0.3 } else { 0.5 },
            // MAML adapts the whole network: a smaller outer step keeps it stable.
            outer_lr: if matches!(alg, MetaAlg::Maml { .. }) { 0.01 } else { 0.05 },
            head_lr: 0.05,
            seed: 5,
        };
        let (train, test) = (prototype_set(30, 6, 1.2, 1), prototype_set(30, 6, 1.2, 2));
        let mut rng = Sampler::new(9);
        let mut sample = |split: Split| {
            let set = if split == Split::Train { &train } else { &test };
            let eps: Vec<_> = (0..4).map(|_| sample_episode(set, 3, 1, 3, rng.rng()).expect("episode")).collect();
            HostTasks::from_episodes(&eps)
        };
        let mut l = Learner::new(&be, cfg).expect("valid config");
        let eval = |l: &mut Learner<CpuBackend<f32>>, sample: &mut dyn FnMut(Split) -> bilevel_core::Result<HostTasks>| {
            let opts = TrainOptions::plain(0, None, 400);
            common::block(meta_train(&be, l, &opts, &mut *sample, || 0.0, |_| Ok(()))).expect("eval").test_acc
        };
        let before = eval(&mut l, &mut sample);
        let opts = TrainOptions::plain(60, None, 400);
        let mut lines = 0;
        let fin = common::block(meta_train(
            &be,
            &mut l,
            &opts,
            &mut sample,
            || 0.0,
            |r| {
                lines += 1;
                assert!(r.train_loss.is_finite() && (0.0..=1.0).contains(&r.test_acc));
                Ok(())
            },
        ))
        .expect("training");
        assert_eq!((lines, fin.iterations, fin.test_tasks), (60, 60, 400));
        // 400 tasks: the 95 % half-width is about 0.02.
        assert!(fin.test_acc > before + 0.05, "{}: accuracy {before:.3} → {:.3}", alg.name(), fin.test_acc);
        eprintln!("{}: accuracy {before:.3} → {:.3} ± {:.3}", alg.name(), fin.test_acc, fin.test_acc_ci95);
    }
}

// ---- backend parity: every primitive and one meta-step of every algorithm ----

/// Every `MetaBackend` primitive and one meta-gradient of every algorithm on fixed inputs
/// (shapes that are not multiples of any workgroup size), read back. A backend is checked by
/// comparing this against `CpuBackend<f64>`: the f32 CPU backend below, and the GPU backend by
/// adding `assert_parity(&common::gpu(), 1e-4)` once `impl MetaBackend for GpuBackend` exists.
fn meta_outputs<B: MetaBackend>(be: &B) -> Vec<(String, Vec<f64>)> {
    let mut s = Sampler::new(77);
    let b = ImageBatch { tasks: 3, per_task: 5, channels: 2, height: 7, width: 9 };
    let c_out = 5;
    let h = b.with_channels(c_out);
    let read = |v: &B::Vector| common::block(be.read_vector(v)).expect("read");
    let up = |v: &[f64]| be.vector_from(v, "parity input");
    let mut out = Vec::new();
    for per_task in [false, true] {
        let plen = c_out * b.channels * 9 + c_out;
        let (stride, blocks) = if per_task { (plen, b.tasks) } else { (0, 1) };
        let x = up(&randn(&mut s, b.len(), 1.0));
        let p = up(&randn(&mut s, blocks * plen, 0.3));
        let dy = up(&randn(&mut s, h.len(), 1.0));
        let mut y = be.zeros(h.len(), "y");
        be.conv3x3(&x, Conv3x3 { batch: b, c_out, accumulate: false }, View { buf: &p, offset: 0, stride }, true, &mut y);
        out.push((format!("conv3x3 per_task {per_task}"), read(&y)));
        let mut dx = be.zeros(b.len(), "dx");
        be.conv3x3_input_grad(&dy, Conv3x3 { batch: b, c_out, accumulate: false }, View { buf: &p, offset: 0, stride }, &mut dx);
        out.push((format!("conv3x3_input_grad per_task {per_task}"), read(&dx)));
        let mut g = be.zeros(blocks * plen, "g");
        be.conv3x3_param_grad(&x, &dy, Conv3x3 { batch: b, c_out, accumulate: false }, ViewMut { buf: &mut g, offset: 0, stride });
        out.push((format!("conv3x3_param_grad per_task {per_task}"), read(&g)));

        let bstride = if per_task { 2 * c_out } else { 0 };
        let bnp = up(&bn_params(&mut s, blocks, c_out));
        let rbnp = up(&randn(&mut s, blocks * 2 * c_out, 1.0));
        let (rx, rdy) = (up(&randn(&mut s, h.len(), 1.0)), up(&randn(&mut s, h.len(), 1.0)));
        let (mut yb, mut stats) = (be.zeros(h.len(), "bn y"), be.zeros(2 * b.tasks * c_out, "stats"));
        be.batch_norm(&y, h, View { buf: &bnp, offset: 0, stride: bstride }, &mut yb, &mut stats);
        out.push((format!("batch_norm per_task {per_task}"), read(&yb)));
        out.push((format!("batch_norm stats per_task {per_task}"), read(&stats)));
        let (mut bdx, mut bg) = (be.zeros(h.len(), "bn dx"), be.zeros(blocks * 2 * c_out, "bn g"));
        let bv = View { buf: &bnp, offset: 0, stride: bstride };
        let rbv = View { buf: &rbnp, offset: 0, stride: bstride };
        be.batch_norm_backward(
            &y,
            &dy,
            BnLayer { batch: h, params: bv, stats: &stats },
            &mut bdx,
            ViewMut { buf: &mut bg, offset: 0, stride: bstride },
        );
        out.push((format!("batch_norm_backward dx per_task {per_task}"), read(&bdx)));
        out.push((format!("batch_norm_backward dparams per_task {per_task}"), read(&bg)));
        let mut ry = be.zeros(h.len(), "bn ry");
        be.batch_norm_tangent(Dual { value: &y, tangent: &rx }, BnLayer { batch: h, params: bv, stats: &stats }, rbv, &mut ry);
        out.push((format!("batch_norm_tangent per_task {per_task}"), read(&ry)));
        be.batch_norm_backward_tangent(
            Dual { value: &y, tangent: &rx },
            Dual { value: &dy, tangent: &rdy },
            BnLayer { batch: h, params: bv, stats: &stats },
            rbv,
            &mut bdx,
            ViewMut { buf: &mut bg, offset: 0, stride: bstride },
        );
        out.push((format!("batch_norm_backward_tangent dx per_task {per_task}"), read(&bdx)));
        out.push((format!("batch_norm_backward_tangent dparams per_task {per_task}"), read(&bg)));
    }
    let x = up(&randn(&mut s, b.len(), 1.0));
    let (pdy, prx) = (up(&randn(&mut s, b.pooled().len(), 1.0)), up(&randn(&mut s, b.len(), 1.0)));
    let mut py = be.zeros(b.pooled().len(), "pool y");
    be.relu_maxpool(&x, b, &mut py);
    out.push(("relu_maxpool".into(), read(&py)));
    be.relu_maxpool_tangent(&x, &prx, b, &mut py);
    out.push(("relu_maxpool_tangent".into(), read(&py)));
    let mut pdx = be.zeros(b.len(), "pool dx");
    be.relu_maxpool_backward(&x, &pdy, b, &mut pdx);
    out.push(("relu_maxpool_backward".into(), read(&pdx)));

    let (tasks, m, n, k) = (3, 5, 7, 6);
    let (a, bb) = (up(&randn(&mut s, tasks * m * k + 2, 1.0)), up(&randn(&mut s, tasks * k * n, 1.0)));
    for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
        let mut c = up(&randn(&mut s, tasks * m * n, 1.0));
        let g = Gemm { tasks, m, n, k, trans_a: ta, trans_b: tb, alpha: 0.6, beta: 0.4 };
        be.gemm(g, View { buf: &a, offset: 2, stride: m * k }, View::per_task(&bb, k * n), ViewMut::per_task(&mut c, m * n));
        out.push((format!("gemm {ta} {tb}"), read(&c)));
    }
    let mut c = up(&randn(&mut s, tasks * m * n, 1.0));
    be.add_row_bias(tasks, m, n, View::per_task(&bb, n), ViewMut::per_task(&mut c, m * n));
    out.push(("add_row_bias".into(), read(&c)));
    let mut o = up(&randn(&mut s, tasks * n, 1.0));
    be.sum_rows(SumRows { tasks, rows: m, cols: n, alpha: 0.5, beta: -1.5 }, View::per_task(&c, m * n), ViewMut::per_task(&mut o, n));
    out.push(("sum_rows".into(), read(&o)));
    let (rows, classes) = (7, 5);
    let z = up(&randn(&mut s, tasks * rows * classes, 2.0));
    let labels = up(&(0..tasks * rows).map(|i| (i % classes) as f64).collect::<Vec<_>>());
    let (mut pr, mut gr, mut st) =
        (be.zeros(tasks * rows * classes, "p"), be.zeros(tasks * rows * classes, "g"), be.zeros(2 * tasks, "st"));
    be.softmax_xent(SoftmaxXent { tasks, rows, classes, scale: 0.3 }, &z, &labels, &mut pr, Some(&mut gr), &mut st);
    out.push(("softmax_xent probs".into(), read(&pr)));
    out.push(("softmax_xent grad".into(), read(&gr)));
    out.push(("softmax_xent stats".into(), read(&st)));
    let u = up(&randn(&mut s, tasks * rows * classes, 1.0));
    be.softmax_curvature(SoftmaxCurvature { rows: tasks * rows, classes, scale: 0.7, accumulate: true }, &pr, &u, &mut gr);
    out.push(("softmax_curvature".into(), read(&gr)));

    for alg in [MetaAlg::ItdBio, MetaAlg::Anil, MetaAlg::Maml { first_order: false }, MetaAlg::Maml { first_order: true }] {
        let cfg = tiny_config(alg, 2);
        let batch = TaskBatch::upload(be, &random_tasks(&cfg, 4));
        let mut l = Learner::new(be, cfg).expect("valid config");
        l.meta_gradient(be, &batch);
        out.push((format!("{} meta-gradient", alg.name()), read(&l.grad_theta)));
        if alg == MetaAlg::Anil {
            out.push(("ANIL head-init gradient".into(), read(&l.grad_head)));
        }
        out.push((format!("{} query stats", alg.name()), read(l.query_stats())));
    }
    out
}

/// `be`'s outputs against the f64 CPU reference, each within `tol` relative error.
fn assert_parity<B: MetaBackend>(be: &B, tol: f64) {
    let reference = meta_outputs(&Cpu::new());
    for ((name, got), (_, want)) in meta_outputs(be).iter().zip(&reference) {
        let err = rel_err(got, want);
        assert!(err < tol, "{name} on {}: relative error {err:.2e}", be.describe());
    }
}

#[test]
fn f32_cpu_backend_matches_the_f64_reference_on_every_primitive_and_meta_step() {
    // With the AVX-512 convolution tiles where the CPU has them, and without.
    assert_parity(&CpuBackend::<f32>::new(), 1e-4);
    assert_parity(&CpuBackend::<f32>::new().portable(), 1e-4);
}

/// Model selection on meta-validation tasks: validation accuracies are recorded every
/// `val_every` iterations and after the last, and the model finally evaluated is exactly the one
/// after the best of them (the same as a run stopped there); the cosine schedule decays the
/// outer step.
#[test]
fn model_selection_keeps_the_best_validated_model() {
    use bilevel_core::meta::train::LrSchedule;
    let be = CpuBackend::<f64>::new();
    let cfg = MetaConfig {
        alg: MetaAlg::ItdBio,
        net: Conv4 { channels: 1, height: 10, width: 10, hidden: 4, blocks: 2, ways: 3 },
        shots: 1,
        queries: 2,
        meta_batch: 3,
        inner_steps: 2,
        inner_lr: 0.5,
        // A large outer step: validation accuracy rises and falls, so the best is not the last.
        outer_lr: 0.5,
        head_lr: 0.05,
        seed: 7,
    };
    let sets = &[prototype_set(20, 4, 1.0, 1), prototype_set(20, 4, 1.0, 2), prototype_set(20, 4, 1.0, 3)];
    // One stream per split, so that validation draws do not change the training tasks.
    let sampler = || {
        let mut rngs = [Sampler::new(11), Sampler::new(12), Sampler::new(13)];
        move |split: Split| {
            let k = match split {
                Split::Train => 0,
                Split::Val => 1,
                Split::Test => 2,
            };
            let eps: Vec<_> = (0..3).map(|_| sample_episode(&sets[k], 3, 1, 2, rngs[k].rng()).expect("episode")).collect();
            HostTasks::from_episodes(&eps)
        }
    };
    let opts = TrainOptions { val_every: 4, val_tasks: 30, ..TrainOptions::plain(18, None, 30) };
    let mut validated = Vec::new();
    let mut l = Learner::new(&be, cfg.clone()).expect("valid config");
    let fin = common::block(meta_train(
        &be,
        &mut l,
        &opts,
        sampler(),
        || 0.0,
        |r| {
            if let Some(v) = r.val_acc {
                validated.push((r.iter, v));
            }
            Ok(())
        },
    ))
    .expect("training");
    assert_eq!(validated.iter().map(|v| v.0).collect::<Vec<_>>(), [3, 7, 11, 15, 17], "validated iterations");
    let best = validated.iter().copied().fold((0, f64::MIN), |b, v| if v.1 > b.1 { v } else { b });
    assert_eq!((fin.selected_iter, fin.val_acc), (Some(best.0), Some(best.1)));
    assert_ne!(best.0, 17, "this setting's best validated model is not the last (so restoring is exercised)");
    // The same run stopped after the selected iteration has the same outer variables.
    let mut stopped = Learner::new(&be, cfg).expect("valid config");
    common::block(meta_train(&be, &mut stopped, &TrainOptions::plain(best.0 + 1, None, 3), sampler(), || 0.0, |_| Ok(())))
        .expect("training");
    let read = |v| common::block(be.read_vector(v)).expect("read");
    assert_eq!(read(&l.theta), read(&stopped.theta), "the restored model is the selected one");
    // Cosine: the last of 18 iterations steps with ½(1 + cos(17π/18)).
    let opts = TrainOptions { schedule: LrSchedule::Cosine, ..TrainOptions::plain(18, None, 3) };
    common::block(meta_train(&be, &mut l, &opts, sampler(), || 0.0, |_| Ok(()))).expect("training");
    assert!((l.lr_scale - 0.5 * (1.0 + (17.0 * std::f64::consts::PI / 18.0).cos())).abs() < 1e-15);
}
