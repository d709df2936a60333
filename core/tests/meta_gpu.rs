//! Every `MetaBackend` kernel on wgpu (lavapipe; a missing adapter fails) against the CPU
//! reference in f64. One generic body per kernel family computes named outputs from seeded
//! inputs on any backend; the GPU (f32) must match to f32 tolerance. Shapes are not multiples
//! of the workgroup or tile sizes, heights/widths are odd (floor pooling), tasks > 1, parameter
//! views are shared (stride 0) and per task with nonzero offsets, and outputs that must not be
//! read start as NaN.

mod common;

use bilevel_core::cpu::CpuBackend;
use bilevel_core::meta::{BnLayer, Conv3x3, Dual, Gemm, ImageBatch, MetaBackend, SoftmaxCurvature, SoftmaxXent, SumRows, View, ViewMut};
use bilevel_core::sampler::Sampler;
use common::{block, gpu, randn, random_tasks, rel_err};

type Outputs = Vec<(String, Vec<f64>)>;

/// Reads `v` into the named outputs.
fn read<B: MetaBackend>(be: &B, out: &mut Outputs, name: String, v: &B::Vector) {
    out.push((name, block(be.read_vector(v)).expect("readback")));
}

/// A vector of `len` NaNs: outputs that are overwritten must not read their old contents.
fn nans<B: MetaBackend>(be: &B, len: usize, label: &str) -> B::Vector {
    be.vector_from(&vec![f64::NAN; len], label)
}

/// Compares the GPU's outputs with the CPU's, entry-set by entry-set.
fn compare(cpu: &Outputs, gpu: &Outputs, tol: f64) {
    assert_eq!(cpu.len(), gpu.len());
    for ((name, want), (_, got)) in cpu.iter().zip(gpu) {
        assert!(got.iter().all(|v| v.is_finite()), "{name}: non-finite GPU output");
        let e = rel_err(got, want);
        eprintln!("{name}: {e:.2e}");
        assert!(e < tol, "{name}: GPU vs CPU relative error {e:.2e} (tolerance {tol:.0e})");
    }
}

const CONV_BATCH: ImageBatch = ImageBatch { tasks: 2, per_task: 3, channels: 3, height: 11, width: 9 };

fn conv_outputs<B: MetaBackend>(be: &B, c_out: usize, seed: u64) -> Outputs {
    let batch = CONV_BATCH;
    let mut s = Sampler::new(seed);
    let plen = c_out * batch.channels * 9 + c_out;
    let out_len = batch.with_channels(c_out).len();
    let mut out = Outputs::new();
    let x = be.vector_from(&randn(&mut s, batch.len(), 1.0), "x");
    let dy = be.vector_from(&randn(&mut s, out_len, 1.0), "dy");
    for (stride, offset) in [(0, 7), (plen + 3, 5)] {
        let blocks = if stride == 0 { 1 } else { batch.tasks };
        let params = be.vector_from(&randn(&mut s, offset + blocks * stride.max(plen), 0.3), "conv params");
        let view = View { buf: &params, offset, stride };
        let tag = format!("c_out {c_out}, stride {stride}");
        let mut y = nans(be, out_len, "y");
        be.conv3x3(&x, Conv3x3 { batch, c_out, accumulate: false }, view, true, &mut y);
        read(be, &mut out, format!("conv forward ({tag})"), &y);
        be.conv3x3(&x, Conv3x3 { batch, c_out, accumulate: true }, view, false, &mut y);
        read(be, &mut out, format!("conv forward accumulated, no bias ({tag})"), &y);
        let mut dx = nans(be, batch.len(), "dx");
        be.conv3x3_input_grad(&dy, Conv3x3 { batch, c_out, accumulate: false }, view, &mut dx);
        read(be, &mut out, format!("conv input grad ({tag})"), &dx);
        be.conv3x3_input_grad(&dy, Conv3x3 { batch, c_out, accumulate: true }, view, &mut dx);
        read(be, &mut out, format!("conv input grad accumulated ({tag})"), &dx);
        // The gradient lands at an offset, the entries around it untouched.
        let glen = offset + blocks * stride.max(plen);
        let mut g = be.vector_from(&vec![1.5; glen], "grad");
        be.conv3x3_param_grad(&x, &dy, Conv3x3 { batch, c_out, accumulate: true }, ViewMut { buf: &mut g, offset, stride });
        read(be, &mut out, format!("conv param grad accumulated ({tag})"), &g);
        let mut g = nans(be, glen, "grad");
        be.conv3x3_param_grad(&x, &dy, Conv3x3 { batch, c_out, accumulate: false }, ViewMut { buf: &mut g, offset, stride });
        let gv = block(be.read_vector(&g)).unwrap();
        // Only the gradient blocks are written: the NaNs before and between them stay.
        assert!(gv[..offset].iter().all(|v| v.is_nan()), "conv param grad wrote before its view");
        let written: Vec<f64> = (0..blocks).flat_map(|b| gv[offset + b * stride..offset + b * stride + plen].to_vec()).collect();
        out.push((format!("conv param grad ({tag})"), written));
    }
    out
}

#[test]
fn conv3x3_forward_input_and_parameter_gradients_match_the_cpu() {
    let g = gpu();
    let cpu = CpuBackend::<f64>::new();
    // c_out 5: one row tile; 67: two row tiles (and for the input grad, K = 603 taps).
    for c_out in [5, 67] {
        compare(&conv_outputs(&cpu, c_out, 11), &conv_outputs(&g, c_out, 11), 1e-4);
    }
}

/// Batch-norm parameters (γ, β) for `blocks` blocks of `c` channels at `offset`, stride `stride`.
fn bn_params(s: &mut Sampler, offset: usize, blocks: usize, stride: usize, c: usize) -> Vec<f64> {
    let mut p = randn(s, offset + blocks * stride.max(2 * c), 0.5);
    for b in 0..blocks {
        for ch in 0..c {
            p[offset + b * stride + ch] += 1.0;
        }
    }
    p
}

fn batch_norm_outputs<B: MetaBackend>(be: &B, batch: ImageBatch, seed: u64) -> Outputs {
    let mut s = Sampler::new(seed);
    let c = batch.channels;
    let n = batch.len();
    let mut out = Outputs::new();
    let x = be.vector_from(&randn(&mut s, n, 2.0).iter().map(|v| v + 1.0).collect::<Vec<_>>(), "x");
    let dy = be.vector_from(&randn(&mut s, n, 1.0), "dy");
    let rx = be.vector_from(&randn(&mut s, n, 1.0), "rx");
    let rdy = be.vector_from(&randn(&mut s, n, 1.0), "rdy");
    for (stride, offset) in [(0, 3), (2 * c + 1, 2)] {
        let blocks = if stride == 0 { 1 } else { batch.tasks };
        let tag = format!("{batch:?}, stride {stride}");
        let p = be.vector_from(&bn_params(&mut s, offset, blocks, stride, c), "bn params");
        let rp = be.vector_from(&randn(&mut s, offset + blocks * stride.max(2 * c), 1.0), "bn direction");
        let view = View { buf: &p, offset, stride };
        let rview = View { buf: &rp, offset, stride };
        let (mut y, mut stats) = (nans(be, n, "y"), nans(be, 2 * batch.tasks * c, "stats"));
        be.batch_norm(&x, batch, view, &mut y, &mut stats);
        read(be, &mut out, format!("bn forward ({tag})"), &y);
        read(be, &mut out, format!("bn stats ({tag})"), &stats);
        let glen = offset + blocks * stride.max(2 * c);
        let (mut dx, mut g) = (nans(be, n, "dx"), nans(be, glen, "grad"));
        be.batch_norm_backward(&x, &dy, BnLayer { batch, params: view, stats: &stats }, &mut dx, ViewMut { buf: &mut g, offset, stride });
        read(be, &mut out, format!("bn backward dx ({tag})"), &dx);
        let gv = block(be.read_vector(&g)).unwrap();
        let grads: Vec<f64> = (0..blocks).flat_map(|b| gv[offset + b * stride..offset + b * stride + 2 * c].to_vec()).collect();
        out.push((format!("bn backward dγ dβ ({tag})"), grads));
        let mut ry = nans(be, n, "ry");
        be.batch_norm_tangent(Dual { value: &x, tangent: &rx }, BnLayer { batch, params: view, stats: &stats }, rview, &mut ry);
        read(be, &mut out, format!("bn tangent ({tag})"), &ry);
        let (mut rdx, mut rg) = (nans(be, n, "rdx"), nans(be, glen, "rgrad"));
        be.batch_norm_backward_tangent(
            Dual { value: &x, tangent: &rx },
            Dual { value: &dy, tangent: &rdy },
            BnLayer { batch, params: view, stats: &stats },
            rview,
            &mut rdx,
            ViewMut { buf: &mut rg, offset, stride },
        );
        read(be, &mut out, format!("bn backward tangent Rdx ({tag})"), &rdx);
        let rv = block(be.read_vector(&rg)).unwrap();
        let rgrads: Vec<f64> = (0..blocks).flat_map(|b| rv[offset + b * stride..offset + b * stride + 2 * c].to_vec()).collect();
        out.push((format!("bn backward tangent Rdγ Rdβ ({tag})"), rgrads));
    }
    out
}

#[test]
fn batch_norm_forward_backward_and_tangents_match_the_cpu() {
    let g = gpu();
    let cpu = CpuBackend::<f64>::new();
    // Groups of 3·11·9 = 297 entries: more than one pass of a 256-invocation workgroup.
    let batch = ImageBatch { tasks: 3, per_task: 3, channels: 5, height: 11, width: 9 };
    compare(&batch_norm_outputs(&cpu, batch, 21), &batch_norm_outputs(&g, batch, 21), 1e-4);
}

#[test]
fn per_task_workgroups_spill_past_65535() {
    // 65,600 tasks of softmax cross-entropy, one workgroup each: past the x-dimension limit of
    // a dispatch, so the grid spills into y (every per-group kernel shares `groups_2d` and
    // `workgroup_index`; this is the cheapest of them on lavapipe).
    fn outputs<B: MetaBackend>(be: &B) -> Outputs {
        let (tasks, rows, classes) = (65_600, 1, 2);
        let mut s = Sampler::new(5);
        let z = be.vector_from(&randn(&mut s, tasks * classes, 1.0), "z");
        let labels: Vec<f64> = (0..tasks).map(|t| (t % classes) as f64).collect();
        let labels = be.vector_from(&labels, "labels");
        let (mut probs, mut stats) = (nans(be, tasks * classes, "probs"), nans(be, 2 * tasks, "stats"));
        be.softmax_xent(SoftmaxXent { tasks, rows, classes, scale: 1.0 }, &z, &labels, &mut probs, None, &mut stats);
        let mut out = Outputs::new();
        read(be, &mut out, "softmax_xent stats, 65,600 tasks".into(), &stats);
        out
    }
    compare(&outputs(&CpuBackend::<f64>::new()), &outputs(&gpu()), 1e-5);
}

fn pool_outputs<B: MetaBackend>(be: &B, batch: ImageBatch, seed: u64) -> Outputs {
    let mut s = Sampler::new(seed);
    let mut out = Outputs::new();
    let pooled = batch.pooled().len();
    // Values on a coarse grid, so windows hold ties (the first maximum must win) and all-negative
    // windows (nothing routed).
    let xs: Vec<f64> = randn(&mut s, batch.len(), 1.0).iter().map(|v| (2.0 * v).round() / 2.0).collect();
    let x = be.vector_from(&xs, "x");
    let rx = be.vector_from(&randn(&mut s, batch.len(), 1.0), "rx");
    let dy = be.vector_from(&randn(&mut s, pooled, 1.0), "dy");
    let mut y = nans(be, pooled, "y");
    be.relu_maxpool(&x, batch, &mut y);
    read(be, &mut out, format!("relu_maxpool ({batch:?})"), &y);
    let mut ry = nans(be, pooled, "ry");
    be.relu_maxpool_tangent(&x, &rx, batch, &mut ry);
    read(be, &mut out, format!("relu_maxpool tangent ({batch:?})"), &ry);
    let mut dx = nans(be, batch.len(), "dx");
    be.relu_maxpool_backward(&x, &dy, batch, &mut dx);
    read(be, &mut out, format!("relu_maxpool backward ({batch:?})"), &dx);
    out
}

#[test]
fn relu_maxpool_and_its_backward_and_tangent_match_the_cpu_with_odd_sizes() {
    let g = gpu();
    let cpu = CpuBackend::<f64>::new();
    for batch in [
        ImageBatch { tasks: 2, per_task: 3, channels: 3, height: 7, width: 5 },
        ImageBatch { tasks: 1, per_task: 2, channels: 2, height: 6, width: 9 },
    ] {
        compare(&pool_outputs(&cpu, batch, 31), &pool_outputs(&g, batch, 31), 1e-6);
    }
}

fn head_outputs<B: MetaBackend>(be: &B, seed: u64) -> Outputs {
    let mut s = Sampler::new(seed);
    let mut out = Outputs::new();
    let tasks = 3;
    for (m, n, k) in [(70, 5, 19), (7, 66, 3)] {
        for trans_a in [false, true] {
            for trans_b in [false, true] {
                for (a_stride, beta) in [(0, 0.0), (m * k + 2, -0.7)] {
                    let tag = format!("m {m} n {n} k {k}, trans ({trans_a}, {trans_b}), A stride {a_stride}, β {beta}");
                    let a_blocks = if a_stride == 0 { 1 } else { tasks };
                    let a = be.vector_from(&randn(&mut s, 4 + a_blocks * (m * k + 2), 1.0), "A");
                    let b = be.vector_from(&randn(&mut s, 1 + tasks * k * n, 1.0), "B");
                    let c_stride = m * n + 3;
                    // β = 0: C starts as NaN and must not be read.
                    let c0 = if beta == 0.0 { vec![f64::NAN; 2 + tasks * c_stride] } else { randn(&mut s, 2 + tasks * c_stride, 1.0) };
                    let mut c = be.vector_from(&c0, "C");
                    let g = Gemm { tasks, m, n, k, trans_a, trans_b, alpha: 1.3, beta };
                    be.gemm(
                        g,
                        View { buf: &a, offset: 4, stride: a_stride },
                        View { buf: &b, offset: 1, stride: k * n },
                        ViewMut { buf: &mut c, offset: 2, stride: c_stride },
                    );
                    let cv = block(be.read_vector(&c)).unwrap();
                    let blocks: Vec<f64> = (0..tasks).flat_map(|t| cv[2 + t * c_stride..2 + t * c_stride + m * n].to_vec()).collect();
                    out.push((format!("gemm ({tag})"), blocks));
                }
            }
        }
    }
    // Bias broadcast (shared and per-task bias) and column sums (β = 0 over NaN, β ≠ 0).
    let (rows, cols) = (37, 5);
    let e = be.vector_from(&randn(&mut s, 3 + tasks * rows * cols, 1.0), "E");
    for bias_stride in [0, cols + 1] {
        let bias = be.vector_from(&randn(&mut s, 2 + tasks * (cols + 1), 1.0), "bias");
        let mut c = be.vector_from(&randn(&mut s, 1 + tasks * rows * cols, 1.0), "C");
        be.add_row_bias(
            tasks,
            rows,
            cols,
            View { buf: &bias, offset: 2, stride: bias_stride },
            ViewMut { buf: &mut c, offset: 1, stride: rows * cols },
        );
        read(be, &mut out, format!("add_row_bias (bias stride {bias_stride})"), &c);
    }
    for beta in [0.0, 0.5] {
        let o0 = if beta == 0.0 { vec![f64::NAN; 4 + tasks * cols] } else { randn(&mut s, 4 + tasks * cols, 1.0) };
        let mut o = be.vector_from(&o0, "out");
        be.sum_rows(
            SumRows { tasks, rows, cols, alpha: -0.8, beta },
            View { buf: &e, offset: 3, stride: rows * cols },
            ViewMut { buf: &mut o, offset: 4, stride: cols },
        );
        let ov = block(be.read_vector(&o)).unwrap();
        out.push((format!("sum_rows (β {beta})"), ov[4..].to_vec()));
    }
    out
}

#[test]
fn gemm_bias_and_column_sums_match_the_cpu_for_every_transpose_and_stride() {
    let g = gpu();
    let cpu = CpuBackend::<f64>::new();
    compare(&head_outputs(&cpu, 41), &head_outputs(&g, 41), 1e-5);
}

fn xent_outputs<B: MetaBackend>(be: &B, seed: u64) -> Outputs {
    let mut s = Sampler::new(seed);
    let mut out = Outputs::new();
    // 300 rows per task: more rows than invocations in the per-task workgroup.
    let (tasks, rows, classes) = (3, 300, 7);
    let n = tasks * rows * classes;
    let z = be.vector_from(&randn(&mut s, n, 2.0), "z");
    let labels: Vec<f64> = (0..tasks * rows).map(|_| s.below(classes) as f64).collect();
    let labels = be.vector_from(&labels, "labels");
    let (mut probs, mut grad, mut stats) = (nans(be, n, "probs"), nans(be, n, "grad"), nans(be, 2 * tasks, "stats"));
    be.softmax_xent(SoftmaxXent { tasks, rows, classes, scale: 0.37 }, &z, &labels, &mut probs, Some(&mut grad), &mut stats);
    read(be, &mut out, "softmax_xent probs".into(), &probs);
    read(be, &mut out, "softmax_xent grad".into(), &grad);
    read(be, &mut out, "softmax_xent stats".into(), &stats);
    let u = be.vector_from(&randn(&mut s, n, 1.0), "u");
    let mut m = nans(be, n, "curvature");
    be.softmax_curvature(SoftmaxCurvature { rows: tasks * rows, classes, scale: 0.6, accumulate: false }, &probs, &u, &mut m);
    read(be, &mut out, "softmax_curvature".into(), &m);
    be.softmax_curvature(SoftmaxCurvature { rows: tasks * rows, classes, scale: -0.2, accumulate: true }, &probs, &u, &mut m);
    read(be, &mut out, "softmax_curvature accumulated".into(), &m);
    out
}

#[test]
fn softmax_xent_and_curvature_match_the_cpu() {
    let g = gpu();
    let cpu = CpuBackend::<f64>::new();
    compare(&xent_outputs(&cpu, 51), &xent_outputs(&g, 51), 1e-5);
}

// ---- one full meta-step of every algorithm, GPU against CPU ----

use bilevel_core::meta::{Conv4, Learner, MetaAlg, MetaConfig, TaskBatch};

fn step_config(alg: MetaAlg) -> MetaConfig {
    MetaConfig {
        alg,
        // 13×11 → 6×5 → 3×2 → 1×1 (floor pooling at every block): D = 6.
        net: Conv4 { channels: 1, height: 13, width: 11, hidden: 6, blocks: 3, ways: 3 },
        shots: 2,
        queries: 3,
        meta_batch: 3,
        inner_steps: 3,
        inner_lr: 0.4,
        outer_lr: 0.01,
        head_lr: 0.01,
        seed: 17,
    }
}

/// The meta-gradients and query statistics of one meta-step.
fn meta_step_outputs<B: MetaBackend>(be: &B, alg: MetaAlg) -> Outputs {
    let cfg = step_config(alg);
    let batch = TaskBatch::upload(be, &random_tasks(&cfg, 9));
    let mut l = Learner::new(be, cfg).expect("valid config");
    let mut out = Outputs::new();
    l.meta_gradient(be, &batch);
    read(be, &mut out, format!("{} meta-gradient θ", alg.name()), &l.grad_theta);
    if alg == MetaAlg::Anil {
        read(be, &mut out, format!("{} meta-gradient head init", alg.name()), &l.grad_head);
    }
    read(be, &mut out, format!("{} query loss / correct per task", alg.name()), l.query_stats());
    out
}

#[test]
fn one_meta_step_of_every_algorithm_matches_the_cpu() {
    let g = gpu();
    let cpu = CpuBackend::<f64>::new();
    for alg in MetaAlg::ALL {
        compare(&meta_step_outputs(&cpu, alg), &meta_step_outputs(&g, alg), 1e-4);
    }
}
