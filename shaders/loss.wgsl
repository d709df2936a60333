// Row-wise losses of generalised linear models on a batch of predictions Z (b x c), one
// invocation per row, and the per-feature / per-sample reductions of the mixed products.
// kind: squared (c = 1), binary logistic (c = 1, t in {0, 1}), softmax (t = class). The Rust
// side's values for these are checked against the constants when the pipeline is created.
const LOSS_SQUARED: u32 = 0u;
const LOSS_LOGISTIC: u32 = 1u;
const LOSS_SOFTMAX: u32 = 2u;

struct Params {
    // Batch rows b (or features d for exp_rowdot), classes c.
    rows: u32,
    c: u32,
    kind: u32,
    use_idx: u32,
    // 1: weight row k by sigmoid(lam[row_k]).
    use_w: u32,
    want_loss: u32,
    scale: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> z: array<f32>;
@group(0) @binding(2) var<storage, read> tgt: array<f32>;
@group(0) @binding(3) var<storage, read> idx: array<u32>;
@group(0) @binding(4) var<storage, read> lam: array<f32>;
@group(0) @binding(5) var<storage, read_write> r: array<f32>;
@group(0) @binding(6) var<storage, read_write> loss: array<f32>;
@group(0) @binding(7) var<storage, read> u: array<f32>;


fn row_of(k: u32) -> u32 {
    if (p.use_idx == 1u) { return idx[k]; }
    return k;
}

fn sigmoid(x: f32) -> f32 {
    return 1.0 / (1.0 + exp(-x));
}

fn weight(row: u32) -> f32 {
    if (p.use_w == 1u) { return p.scale * sigmoid(lam[row]); }
    return p.scale;
}

fn row_max(base: u32) -> f32 {
    var m = z[base];
    for (var kk = 1u; kk < p.c; kk = kk + 1u) { m = max(m, z[base + kk]); }
    return m;
}

fn row_expsum(base: u32, m: f32) -> f32 {
    var s = 0.0;
    for (var kk = 0u; kk < p.c; kk = kk + 1u) { s = s + exp(z[base + kk] - m); }
    return s;
}

// R_k = w_k * l'(Z_k; t_row), loss_k = w_k * l(Z_k; t_row).
@compute @workgroup_size(256)
fn loss_residual(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let k = linear_index(gid, nwg);
    if (k >= p.rows) { return; }
    let row = row_of(k);
    let w = weight(row);
    let t = tgt[row];
    let base = k * p.c;
    var l = 0.0;
    if (p.kind == LOSS_SQUARED) {
        let d = z[base] - t;
        r[base] = w * d;
        l = 0.5 * d * d;
    } else if (p.kind == LOSS_LOGISTIC) {
        let zz = z[base];
        r[base] = w * (sigmoid(zz) - t);
        l = max(zz, 0.0) + log(1.0 + exp(-abs(zz))) - t * zz;
    } else {
        let m = row_max(base);
        let s = row_expsum(base, m);
        let label = u32(t);
        for (var kk = 0u; kk < p.c; kk = kk + 1u) {
            var pk = exp(z[base + kk] - m) / s;
            if (kk == label) { pk = pk - 1.0; }
            r[base + kk] = w * pk;
        }
        l = m + log(s) - z[base + label];
    }
    if (p.want_loss == 1u) { loss[k] = w * l; }
}

// M_k = w_k * l''(Z_k) U_k   (written to r).
@compute @workgroup_size(256)
fn loss_curvature(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let k = linear_index(gid, nwg);
    if (k >= p.rows) { return; }
    let w = weight(row_of(k));
    let base = k * p.c;
    if (p.kind == LOSS_SQUARED) {
        r[base] = w * u[base];
    } else if (p.kind == LOSS_LOGISTIC) {
        let s = sigmoid(z[base]);
        r[base] = w * s * (1.0 - s) * u[base];
    } else {
        let m = row_max(base);
        let s = row_expsum(base, m);
        var pu = 0.0;
        for (var kk = 0u; kk < p.c; kk = kk + 1u) { pu = pu + exp(z[base + kk] - m) / s * u[base + kk]; }
        for (var kk = 0u; kk < p.c; kk = kk + 1u) {
            r[base + kk] = w * exp(z[base + kk] - m) / s * (u[base + kk] - pu);
        }
    }
}

@group(0) @binding(8) var<storage, read_write> xout: array<f32>;

// xout[row_k] = scale * sigmoid'(lam[row_k]) * <Z_k, U_k>   (hyper-cleaning's J, Z = residual).
@compute @workgroup_size(256)
fn rowdot_sigmoid_scatter(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let k = linear_index(gid, nwg);
    if (k >= p.rows) { return; }
    let row = row_of(k);
    var d = 0.0;
    for (var kk = 0u; kk < p.c; kk = kk + 1u) { d = d + z[k * p.c + kk] * u[k * p.c + kk]; }
    let s = sigmoid(lam[row]);
    xout[row] = p.scale * s * (1.0 - s) * d;
}

// xout[j] = scale * exp(lam_j) * sum_kk Z[j, kk] U[j, kk]   (per-feature ridge's J).
@compute @workgroup_size(256)
fn exp_rowdot(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let j = linear_index(gid, nwg);
    if (j >= p.rows) { return; }
    var d = 0.0;
    for (var kk = 0u; kk < p.c; kk = kk + 1u) { d = d + z[j * p.c + kk] * u[j * p.c + kk]; }
    xout[j] = p.scale * exp(lam[j]) * d;
}
