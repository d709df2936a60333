//! Every `MetaBackend` kernel on wgpu (lavapipe; a missing adapter fails) against the CPU
//! reference in f64. One generic body per kernel family computes named outputs from seeded
//! inputs on any backend; the GPU (f32) must match to f32 tolerance. Shapes are not multiples
//! of the workgroup or tile sizes, heights/widths are odd (floor pooling), tasks > 1, parameter
//! views are shared (stride 0) and per task with nonzero offsets, and outputs that must not be
//! read start as NaN.

mod common;

use bilevel_core::cpu::CpuBackend;
use bilevel_core::meta::{Gemm, ImageBatch, MetaBackend, View, ViewMut};
use bilevel_core::sampler::Sampler;
use common::{block, gpu, randn, rel_err};

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
        be.conv3x3(&x, batch, c_out, view, true, &mut y, false);
        read(be, &mut out, format!("conv forward ({tag})"), &y);
        be.conv3x3(&x, batch, c_out, view, false, &mut y, true);
        read(be, &mut out, format!("conv forward accumulated, no bias ({tag})"), &y);
        let mut dx = nans(be, batch.len(), "dx");
        be.conv3x3_input_grad(&dy, batch, c_out, view, &mut dx, false);
        read(be, &mut out, format!("conv input grad ({tag})"), &dx);
        be.conv3x3_input_grad(&dy, batch, c_out, view, &mut dx, true);
        read(be, &mut out, format!("conv input grad accumulated ({tag})"), &dx);
        // The gradient lands at an offset, the entries around it untouched.
        let glen = offset + blocks * stride.max(plen);
        let mut g = be.vector_from(&vec![1.5; glen], "grad");
        be.conv3x3_param_grad(&x, &dy, batch, c_out, ViewMut { buf: &mut g, offset, stride }, true);
        read(be, &mut out, format!("conv param grad accumulated ({tag})"), &g);
        let mut g = nans(be, glen, "grad");
        be.conv3x3_param_grad(&x, &dy, batch, c_out, ViewMut { buf: &mut g, offset, stride }, false);
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
