//! Times each MetaBackend op at one layer's shape on a backend (dev tool).
//! `meta_ops_time BACKEND TASKS PER_TASK C_IN C_OUT SIZE ITERS [ADAPTER]`

use std::time::Instant;

use bilevel_core::cpu::CpuBackend;
use bilevel_core::gpu::{GpuBackend, GpuOptions};
use bilevel_core::meta::{BnLayer, Conv3x3, ImageBatch, MetaBackend, View, ViewMut};
use bilevel_core::Backend;

fn time<B: MetaBackend>(be: &B, b: ImageBatch, c_out: usize, iters: usize) {
    let o = b.with_channels(c_out);
    let x = be.vector_from(&(0..b.len()).map(|i| ((i % 7) as f64 - 3.0) * 0.1).collect::<Vec<_>>(), "x");
    let dy = be.vector_from(&(0..o.len()).map(|i| ((i % 5) as f64 - 2.0) * 0.1).collect::<Vec<_>>(), "dy");
    let plen = c_out * b.channels * 9 + c_out;
    let p = be.vector_from(&vec![0.01; plen], "p");
    let mut y = be.zeros(o.len(), "y");
    let mut dx = be.zeros(b.len(), "dx");
    let mut g = be.zeros(plen, "g");
    let bnp = be.vector_from(&vec![1.0; 2 * c_out], "bn");
    let mut stats = be.zeros(2 * b.tasks * c_out, "stats");
    let mut bg = be.zeros(2 * c_out, "bg");
    let mut pooled = be.zeros(o.pooled().len(), "pooled");
    let sync = |v: &B::Vector| {
        pollster::block_on(be.read_vector(v)).unwrap();
    };
    let sentinel = be.zeros(1, "sentinel");
    let run = |name: &str, f: &mut dyn FnMut()| {
        f();
        sync(&sentinel);
        let t0 = Instant::now();
        for _ in 0..iters {
            f();
        }
        sync(&sentinel);
        println!("{name:>22}: {:.4} s", t0.elapsed().as_secs_f64() / iters as f64);
    };
    run("conv forward", &mut || be.conv3x3(&x, Conv3x3 { batch: b, c_out, accumulate: false }, View::shared(&p), true, &mut y));
    run("conv input grad", &mut || be.conv3x3_input_grad(&dy, Conv3x3 { batch: b, c_out, accumulate: false }, View::shared(&p), &mut dx));
    run("conv param grad", &mut || be.conv3x3_param_grad(&x, &dy, Conv3x3 { batch: b, c_out, accumulate: false }, ViewMut::shared(&mut g)));
    run("bn forward", &mut || be.batch_norm(&dy, o, View::shared(&bnp), &mut y, &mut stats));
    run("bn backward", &mut || {
        be.batch_norm_backward(&dy, &y, BnLayer { batch: o, params: View::shared(&bnp), stats: &stats }, &mut dx, ViewMut::shared(&mut bg))
    });
    run("relu_maxpool", &mut || be.relu_maxpool(&y, o, &mut pooled));
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let n = |i: usize| a[i].parse::<usize>().expect("number");
    let b = ImageBatch { tasks: n(2), per_task: n(3), channels: n(4), height: n(6), width: n(6) };
    if a[1] == "cpu32" {
        time(&CpuBackend::<f32>::new(), b, n(5), n(7));
    } else {
        let gpu = pollster::block_on(GpuBackend::new(&GpuOptions { adapter: a.get(8).cloned() })).expect("adapter");
        eprintln!("{}", gpu.describe());
        time(&gpu, b, n(5), n(7));
    }
}
