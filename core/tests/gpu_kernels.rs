//! User GPU kernels through the public API only: a kernel gives the host reference's result,
//! and every kind of mismatch between its Rust declaration and its WGSL is a clear error
//! (eagerly from `check_kernel`, and from the next read after a dispatch), never a panic or a
//! wrong answer. Runs on lavapipe; a missing adapter fails.

mod common;

use bilevel_core::gpu::{Access, GpuBackend, Kernel, KernelParams, ParamType};
use bilevel_core::{kernel_params, Backend, Error};
use common::{block, gpu};

const SOURCE: &str = r#"
const MODE_SQUARE: u32 = 1u;

struct Params {
    n: u32,
    scale: f32,
    shift: i32,
    mode: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read> idx: array<u32>;

// y += scale·x² + shift (MODE_SQUARE) or scale·x + shift; workgroups of 64 to check that
// dispatch sizes its grid from the shader.
@compute @workgroup_size(64)
fn affine(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if (i >= p.n) { return; }
    var t = x[i];
    if (p.mode == MODE_SQUARE) { t = t * x[i]; }
    y[i] = y[i] + p.scale * t + f32(p.shift);
}

// y[k] = x[idx[k]].
@compute @workgroup_size(256)
fn gather(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let k = gid.x + gid.y * nwg.x * 256u;
    if (k >= p.n) { return; }
    y[k] = x[idx[k]];
}
"#;

kernel_params! {
    struct Params { n: u32, scale: f32, shift: i32, mode: u32 }
}

const AFFINE: Kernel =
    Kernel::new("test_user.wgsl", SOURCE, "affine", &[(1, Access::Read), (2, Access::ReadWrite)]).with_constants(&[("MODE_SQUARE", 1)]);
const GATHER: Kernel = Kernel::new("test_user.wgsl", SOURCE, "gather", &[(1, Access::Read), (2, Access::ReadWrite), (3, Access::Read)]);

const N: usize = 1000;

fn inputs() -> (Vec<f64>, Vec<f64>) {
    let x = (0..N).map(|i| ((i as f64) * 0.37).sin()).collect();
    let y = (0..N).map(|i| ((i as f64) * 0.11).cos()).collect();
    (x, y)
}

fn params() -> Params {
    Params { n: N as u32, scale: 0.5, shift: -2, mode: 1 }
}

/// Dispatches `AFFINE` with params of type `P` and returns what the next read gives.
fn run_affine<P: KernelParams>(g: &GpuBackend, kernel: &Kernel, p: &P) -> bilevel_core::Result<Vec<f64>> {
    let (xs, ys) = inputs();
    let (x, y) = (g.vector_from(&xs, "x"), g.vector_from(&ys, "y"));
    g.dispatch(kernel, p, &[x.binding(), y.binding()], N as u32);
    block(g.read_vector(&y))
}

fn expect_error(result: bilevel_core::Result<Vec<f64>>, needles: &[&str]) {
    match result {
        Ok(_) => panic!("a mismatched kernel ran and returned numbers; expected an error mentioning {needles:?}"),
        Err(Error::Gpu(msg)) => {
            assert!(!msg.contains('\n'), "error spans several lines: {msg}");
            for n in needles {
                assert!(msg.contains(n), "error {msg:?} does not mention {n:?}");
            }
        }
        Err(e) => panic!("expected Error::Gpu, got {e}"),
    }
}

#[test]
fn user_kernel_matches_the_host_reference() {
    let g = gpu();
    g.check_kernel::<Params>(&AFFINE).unwrap();
    let (xs, ys) = inputs();
    let got = run_affine(&g, &AFFINE, &params()).unwrap();
    for i in 0..N {
        let want = ys[i] + 0.5 * xs[i] * xs[i] - 2.0;
        assert!((got[i] - want).abs() < 1e-5, "affine[{i}]: {} vs {want}", got[i]);
    }
    // The same module's second entry, with an index buffer.
    let idx: Vec<u32> = (0..N as u32).map(|k| (k * 7) % N as u32).collect();
    let (x, y, ix) = (g.vector_from(&xs, "x"), g.zeros(N, "y"), g.indices(&idx));
    g.dispatch(&GATHER, &params(), &[x.binding(), y.binding(), ix.binding()], N as u32);
    let got = block(g.read_vector(&y)).unwrap();
    for k in 0..N {
        assert!((got[k] - xs[idx[k] as usize]).abs() < 1e-6, "gather[{k}]");
    }
}

#[test]
fn params_fields_mirror_the_declaration() {
    let names: Vec<_> = Params::FIELDS.iter().map(|f| (f.name, f.ty)).collect();
    assert_eq!(names, [("n", ParamType::U32), ("scale", ParamType::F32), ("shift", ParamType::I32), ("mode", ParamType::U32)]);
}

#[test]
fn wrong_field_type_is_an_error() {
    kernel_params! { struct WrongType { n: u32, scale: u32, shift: i32, mode: u32 } }
    let g = gpu();
    let p = WrongType { n: N as u32, scale: 1, shift: 0, mode: 1 };
    let needles = ["test_user.wgsl::affine", "`scale`", "u32", "f32", "WrongType"];
    expect_error(g.check_kernel::<WrongType>(&AFFINE).map(|_| vec![]), &needles);
    // A correct dispatch first: the pipeline exists, and the other params type is still caught.
    run_affine(&g, &AFFINE, &params()).unwrap();
    expect_error(run_affine(&g, &AFFINE, &p), &needles);
    // The error was consumed by that read; the backend keeps working.
    run_affine(&g, &AFFINE, &params()).unwrap();
}

#[test]
fn wrong_field_order_is_an_error() {
    kernel_params! { struct Swapped { scale: f32, n: u32, shift: i32, mode: u32 } }
    let g = gpu();
    let p = Swapped { scale: 0.5, n: N as u32, shift: 0, mode: 1 };
    expect_error(run_affine(&g, &AFFINE, &p), &["field 0", "`scale`", "`n`"]);
}

#[test]
fn wrong_field_offset_is_an_error() {
    // The WGSL pads `n` to 8 bytes: the names and types agree, the offsets do not.
    const PADDED: &str = "struct Params { @size(8) n: u32, scale: f32 }
        @group(0) @binding(0) var<uniform> p: Params;
        @group(0) @binding(1) var<storage, read_write> y: array<f32>;
        @compute @workgroup_size(64) fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
            if (gid.x < p.n) { y[gid.x] = p.scale; }
        }";
    kernel_params! { struct Packed { n: u32, scale: f32 } }
    let kernel = Kernel::new("test_padded.wgsl", PADDED, "main", &[(1, Access::ReadWrite)]);
    let g = gpu();
    let y = g.zeros(4, "y");
    g.dispatch(&kernel, &Packed { n: 4, scale: 3.0 }, &[y.binding()], 4);
    expect_error(block(g.read_vector(&y)), &["test_padded.wgsl::main", "`scale`", "byte 4", "byte 8"]);
}

#[test]
fn missing_field_is_an_error() {
    kernel_params! { struct Short { n: u32, scale: f32, shift: i32 } }
    let g = gpu();
    let p = Short { n: N as u32, scale: 0.5, shift: 0 };
    expect_error(run_affine(&g, &AFFINE, &p), &["member 3", "`mode: u32`", "missing from", "Short"]);
    kernel_params! { struct Long { n: u32, scale: f32, shift: i32, mode: u32, extra: f32 } }
    expect_error(g.check_kernel::<Long>(&AFFINE).map(|_| vec![]), &["`extra: f32`", "no counterpart"]);
}

#[test]
fn wrong_buffer_access_is_an_error() {
    let g = gpu();
    let read_only_y = Kernel::new("test_user.wgsl", SOURCE, "affine", &[(1, Access::Read), (2, Access::Read)]);
    let needles = ["test_user.wgsl::affine", "binding 2", "`y`", "read in the buffer list", "read_write"];
    expect_error(g.check_kernel::<Params>(&read_only_y).map(|_| vec![]), &needles);
    expect_error(run_affine(&g, &read_only_y, &params()), &needles);
    // A buffer the entry uses but the list leaves out, and one the module lacks.
    let missing = Kernel::new("test_user.wgsl", SOURCE, "gather", &[(1, Access::Read), (2, Access::ReadWrite)]);
    expect_error(g.check_kernel::<Params>(&missing).map(|_| vec![]), &["uses binding 3 `idx`", "not in the buffer list"]);
    let extra = Kernel::new("test_user.wgsl", SOURCE, "affine", &[(1, Access::Read), (2, Access::ReadWrite), (5, Access::Read)]);
    expect_error(g.check_kernel::<Params>(&extra).map(|_| vec![]), &["binding 5", "does not declare"]);
}

#[test]
fn wrong_buffer_count_and_constant_are_errors() {
    let g = gpu();
    let (xs, _) = inputs();
    let (x, y) = (g.vector_from(&xs, "x"), g.zeros(N, "y"));
    g.dispatch(&AFFINE, &params(), &[x.binding()], N as u32);
    expect_error(block(g.read_vector(&y)), &["test_user.wgsl::affine", "1 buffers passed", "has 2"]);
    let wrong = AFFINE.with_constants(&[("MODE_SQUARE", 2)]);
    expect_error(g.check_kernel::<Params>(&wrong).map(|_| vec![]), &["`MODE_SQUARE`", "1 in WGSL", "2 in Rust"]);
    let absent = AFFINE.with_constants(&[("MODE_CUBE", 3)]);
    expect_error(AFFINE.with_constants(absent.constants).check::<Params>().map(|_| vec![]), &["no constant `MODE_CUBE`"]);
}

#[test]
fn bad_wgsl_and_unknown_entry_are_errors() {
    let g = gpu();
    let broken = Kernel::new("test_broken.wgsl", "fn main( {", "main", &[]);
    expect_error(g.check_kernel::<Params>(&broken).map(|_| vec![]), &["test_broken.wgsl", "does not parse"]);
    let unknown = Kernel::new("test_user.wgsl", SOURCE, "nope", &[]);
    expect_error(g.check_kernel::<Params>(&unknown).map(|_| vec![]), &["no compute entry point \"nope\"", "affine, gather"]);
}
