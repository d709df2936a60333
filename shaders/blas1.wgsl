// Vector BLAS-1 kernels. Coefficients may be host constants or ratios of device scalars, so
// solvers such as CG compute alpha = r'r / p'Ap on the device with no readback.

const NONE: u32 = 0xffffffffu;

struct Params {
    n: u32,
    // a = a_c * scalars[a_num] / scalars[a_den]; a missing slot (NONE) counts as 1.
    a_num: u32,
    a_den: u32,
    b_num: u32,
    b_den: u32,
    // Gates: a (b) is 0 unless scalars[a_gate] > a_thr (NONE: no gate).
    a_gate: u32,
    b_gate: u32,
    _pad: u32,
    a_c: f32,
    b_c: f32,
    a_thr: f32,
    b_thr: f32,
}

@group(0) @binding(0) var<uniform> p: Params;


// A coefficient c * num / den. A zero denominator gives 0: for CG this means "converged, take
// no step", the same guard the CPU backend applies.
fn coef(c: f32, num: u32, den: u32, gate: u32, thr: f32) -> f32 {
    if (gate != NONE && scalars_in[gate] <= thr) { return 0.0; }
    var v = c;
    if (num != NONE) { v = v * scalars_in[num]; }
    if (den != NONE) {
        let d = scalars_in[den];
        if (d == 0.0) { return 0.0; }
        v = v / d;
    }
    return v;
}

@group(0) @binding(1) var<storage, read> scalars_in: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

// y <- a x + b y. With b = 0 the old y is not read, so NaN garbage in y cannot leak in.
@compute @workgroup_size(256)
fn axpby(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_index(gid, nwg);
    if (i >= p.n) { return; }
    let a = coef(p.a_c, p.a_num, p.a_den, p.a_gate, p.a_thr);
    let b = coef(p.b_c, p.b_num, p.b_den, p.b_gate, p.b_thr);
    var v = a * x[i];
    if (b != 0.0) { v = v + b * y[i]; }
    y[i] = v;
}

// y <- a (x is bound but unread; a may be a device scalar).
@compute @workgroup_size(256)
fn fill(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_index(gid, nwg);
    if (i >= p.n) { return; }
    y[i] = coef(p.a_c, p.a_num, p.a_den, p.a_gate, p.a_thr);
}

// y <- b y (x is bound but unread).
@compute @workgroup_size(256)
fn scale(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_index(gid, nwg);
    if (i >= p.n) { return; }
    y[i] = coef(p.b_c, p.b_num, p.b_den, p.b_gate, p.b_thr) * y[i];
}
