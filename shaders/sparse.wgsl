// Sparse data X in CSR (for X_B W) and CSC (for X_B^T E), atomic-free. For a mini-batch the
// transposed product walks each CSC column and keeps the entries whose row is in the batch,
// found through `pos` (pos[row] = position of row in the batch, or NONE), which two tiny
// kernels rebuild from the batch's indices.

const NONE: u32 = 0xffffffffu;

struct Params {
    // Batch rows b, data columns d, classes c, data rows n.
    rows: u32,
    cols: u32,
    c: u32,
    use_idx: u32,
    reg: u32,
    scale: f32,
    coef: f32,
    // reg 3/4 (in place): out = (coef2 + coef*exp(lam_j)) * out + scale * acc (4: no lam).
    coef2: f32,
    n_rows: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> ptr: array<u32>;
@group(0) @binding(2) var<storage, read> ind: array<u32>;
@group(0) @binding(3) var<storage, read> val: array<f32>;
@group(0) @binding(4) var<storage, read> sel: array<u32>;
@group(0) @binding(5) var<storage, read> rhs: array<f32>;
@group(0) @binding(6) var<storage, read> lam: array<f32>;
@group(0) @binding(7) var<storage, read> v: array<f32>;
@group(0) @binding(8) var<storage, read_write> out: array<f32>;

fn linear_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * 256u;
}

// Z[k, kk] = sum_p val[p] W[ind[p], kk] over row_k's entries (ptr/ind/val = CSR, sel = batch).
@compute @workgroup_size(256)
fn csr_gather_matmul(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = linear_index(gid, nwg);
    if (t >= p.rows * p.c) { return; }
    let k = t / p.c;
    let kk = t % p.c;
    var row = k;
    if (p.use_idx == 1u) { row = sel[k]; }
    var acc = 0.0;
    for (var q = ptr[row]; q < ptr[row + 1u]; q = q + 1u) {
        acc = acc + val[q] * rhs[ind[q] * p.c + kk];
    }
    out[t] = acc;
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

// out[j, kk] = scale * sum over column j's entries in the batch of val * E[pos[row], kk] + reg
// (ptr/ind/val = CSC, sel = pos).
@compute @workgroup_size(256)
fn csc_gather_tmatmul(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = linear_index(gid, nwg);
    if (t >= p.cols * p.c) { return; }
    let j = t / p.c;
    let kk = t % p.c;
    var acc = 0.0;
    for (var q = ptr[j]; q < ptr[j + 1u]; q = q + 1u) {
        var k = ind[q];
        if (p.use_idx == 1u) { k = sel[k]; }
        if (k != NONE) { acc = acc + val[q] * rhs[k * p.c + kk]; }
    }
    out[t] = finish(j, t, acc);
}

@group(0) @binding(9) var<storage, read_write> pos: array<u32>;

// pos[row] = NONE for every data row.
@compute @workgroup_size(256)
fn pos_clear(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = linear_index(gid, nwg);
    if (t >= p.n_rows) { return; }
    pos[t] = NONE;
}

// pos[sel[k]] = k (a batch has distinct rows, so there are no write conflicts).
@compute @workgroup_size(256)
fn pos_scatter(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let k = linear_index(gid, nwg);
    if (k >= p.rows) { return; }
    pos[sel[k]] = k;
}
