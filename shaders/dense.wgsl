// Dense row-major data X (rows x cols) with mini-batches given as row indices, gathered from
// data already resident on the GPU. Both products are atomic-free: one invocation owns one
// output entry.

const NONE: u32 = 0xffffffffu;

struct Params {
    // Number of batch rows (b), columns (d).
    rows: u32,
    cols: u32,
    // 1 when `idx` holds the batch's row indices, 0 for "all rows in order".
    use_idx: u32,
    // rows_matvec: 1 to subtract the gathered targets t[row].
    // rows_tmatvec: 1 to add the ridge term exp(lam_j) * v_j.
    flag: u32,
    scale: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> xmat: array<f32>;
@group(0) @binding(2) var<storage, read> idx: array<u32>;

fn linear_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * 256u;
}

fn row_of(k: u32) -> u32 {
    if (p.use_idx == 1u) { return idx[k]; }
    return k;
}

@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read> t: array<f32>;
@group(0) @binding(5) var<storage, read_write> r: array<f32>;

// r_k = scale * (X[row_k, :] . v - flag * t[row_k])   for k < rows.
@compute @workgroup_size(256)
fn rows_matvec(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let k = linear_index(gid, nwg);
    if (k >= p.rows) { return; }
    let row = row_of(k);
    let base = row * p.cols;
    var acc = 0.0;
    for (var j = 0u; j < p.cols; j = j + 1u) {
        acc = acc + xmat[base + j] * v[j];
    }
    if (p.flag == 1u) { acc = acc - t[row]; }
    r[k] = p.scale * acc;
}

@group(0) @binding(6) var<storage, read> lam: array<f32>;
@group(0) @binding(7) var<storage, read_write> out: array<f32>;

// out_j = scale * sum_k X[row_k, j] r_k  (+ exp(lam_j) v_j when flag == 1)   for j < cols.
// Invocations walk a column each, so neighbouring invocations read neighbouring addresses.
@compute @workgroup_size(256)
fn rows_tmatvec(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let j = linear_index(gid, nwg);
    if (j >= p.cols) { return; }
    var acc = 0.0;
    for (var k = 0u; k < p.rows; k = k + 1u) {
        acc = acc + xmat[row_of(k) * p.cols + j] * r[k];
    }
    acc = p.scale * acc;
    if (p.flag == 1u) { acc = acc + exp(lam[j]) * v[j]; }
    out[j] = acc;
}

// out_j = scale * exp(lam_j) * v_j * t_j  (the ridge mixed product J[v] and the regulariser).
@compute @workgroup_size(256)
fn exp_hadamard(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let j = linear_index(gid, nwg);
    if (j >= p.cols) { return; }
    out[j] = p.scale * exp(lam[j]) * v[j] * t[j];
}
