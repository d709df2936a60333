// Dense row-major data X (rows x cols) times feature-major c-column matrices, with mini-batches
// given as row indices gathered from data already resident on the GPU. Atomic-free: one
// invocation owns one output entry.

struct Params {
    // Batch rows b, data columns d, classes c.
    rows: u32,
    cols: u32,
    c: u32,
    // 1 when `idx` holds the batch's row indices, 0 for "all rows in order".
    use_idx: u32,
    // gather_tmatmul's regulariser: 0 none, 1 coef*exp(lam_j)*v_jk, 2 coef*v_jk, 3/4 in place.
    reg: u32,
    scale: f32,
    coef: f32,
    // reg 3/4 (in place): out = (coef2 + coef*exp(lam_j)) * out + scale * acc (4: no lam).
    coef2: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> xmat: array<f32>;
@group(0) @binding(2) var<storage, read> idx: array<u32>;
@group(0) @binding(3) var<storage, read> rhs: array<f32>;
@group(0) @binding(4) var<storage, read> lam: array<f32>;
@group(0) @binding(5) var<storage, read> v: array<f32>;
@group(0) @binding(6) var<storage, read_write> out: array<f32>;

fn linear_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * 256u;
}

fn row_of(k: u32) -> u32 {
    if (p.use_idx == 1u) { return idx[k]; }
    return k;
}

fn reg_term(j: u32, t: u32) -> f32 {
    if (p.reg == 1u) { return p.coef * exp(lam[j]) * v[t]; }
    if (p.reg == 2u) { return p.coef * v[t]; }
    return 0.0;
}

// The product's final value: with reg 3/4 the old out[t] decays in place.
fn finish(j: u32, t: u32, acc: f32) -> f32 {
    if (p.reg == 3u) { return (p.coef2 + p.coef * exp(lam[j])) * out[t] + p.scale * acc; }
    if (p.reg == 4u) { return p.coef2 * out[t] + p.scale * acc; }
    return p.scale * acc + reg_term(j, t);
}

// Z[k, kk] = X[row_k, :] . W[:, kk]   (rhs = W, d x c)
@compute @workgroup_size(256)
fn gather_matmul(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = linear_index(gid, nwg);
    if (t >= p.rows * p.c) { return; }
    let k = t / p.c;
    let kk = t % p.c;
    let base = row_of(k) * p.cols;
    var acc = 0.0;
    for (var j = 0u; j < p.cols; j = j + 1u) {
        acc = acc + xmat[base + j] * rhs[j * p.c + kk];
    }
    out[t] = acc;
}

// out[j, kk] = scale * sum_k X[row_k, j] E[k, kk] + reg   (rhs = E, b x c). Neighbouring
// invocations read neighbouring columns of X.
@compute @workgroup_size(256)
fn gather_tmatmul(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = linear_index(gid, nwg);
    if (t >= p.cols * p.c) { return; }
    let j = t / p.c;
    let kk = t % p.c;
    var acc = 0.0;
    for (var k = 0u; k < p.rows; k = k + 1u) {
        acc = acc + xmat[row_of(k) * p.cols + j] * rhs[k * p.c + kk];
    }
    out[t] = finish(j, t, acc);
}
