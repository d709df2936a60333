// The head's linear algebra, batched over tasks with strided views (task t's matrix at
// offset + t * stride; stride 0 shares one matrix): C_t = alpha op(A_t) op(B_t) + beta C_t on
// the tiled product (tiled.wgsl), the bias broadcast C_t[i, :] += bias_t, and column sums.

struct Params {
    tasks: u32,
    m: u32,
    n: u32,
    k: u32,
    trans_a: u32,
    trans_b: u32,
    a_offset: u32,
    a_stride: u32,
    b_offset: u32,
    b_stride: u32,
    c_offset: u32,
    c_stride: u32,
    tiles_m: u32,
    tiles_n: u32,
    alpha: f32,
    beta: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> amat: array<f32>;
@group(0) @binding(2) var<storage, read> bmat: array<f32>;
@group(0) @binding(3) var<storage, read_write> cmat: array<f32>;

// A_t is stored m x k (k x m when transposed), B_t k x n (n x k), both packed row-major.
fn load_a(t: u32, row: u32, k: u32) -> f32 {
    if (row >= p.m) { return 0.0; }
    let base = p.a_offset + t * p.a_stride;
    if (p.trans_a == 1u) { return amat[base + k * p.m + row]; }
    return amat[base + row * p.k + k];
}

fn load_b(t: u32, k: u32, col: u32) -> f32 {
    if (col >= p.n) { return 0.0; }
    let base = p.b_offset + t * p.b_stride;
    if (p.trans_b == 1u) { return bmat[base + col * p.k + k]; }
    return bmat[base + k * p.n + col];
}

@compute @workgroup_size(256)
fn gemm(@builtin(local_invocation_index) lid: u32,
        @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let tiles = p.tiles_m * p.tiles_n;
    let wg = workgroup_index(wid, nwg);
    if (wg >= p.tasks * tiles) { return; }
    let t = wg / tiles;
    let tm = (wg % tiles) / p.tiles_n;
    let tn = wg % p.tiles_n;
    let acc = tiled_product(lid, t, tm * TILE, tn * TILE, 0u, p.k, p.trans_a == 0u, p.trans_b == 1u);
    for (var i = 0u; i < 4u; i = i + 1u) {
        let row = tm * TILE + tile_row(lid, i);
        if (row >= p.m) { continue; }
        for (var j = 0u; j < 4u; j = j + 1u) {
            let col = tn * TILE + tile_col(lid, j);
            if (col >= p.n) { continue; }
            let o = p.c_offset + t * p.c_stride + row * p.n + col;
            var v = p.alpha * acc[i][j];
            // beta = 0 never reads C, so NaNs in it do not propagate.
            if (p.beta != 0.0) { v = v + p.beta * cmat[o]; }
            cmat[o] = v;
        }
    }
}

// C_t[i, j] += bias_t[j] for m x n matrices (bias view = a_offset / a_stride).
@compute @workgroup_size(256)
fn add_row_bias(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = linear_index(gid, nwg);
    if (e >= p.tasks * p.m * p.n) { return; }
    let t = e / (p.m * p.n);
    let j = e % p.n;
    let o = p.c_offset + t * p.c_stride + e % (p.m * p.n);
    cmat[o] = cmat[o] + amat[p.a_offset + t * p.a_stride + j];
}

// out_t[j] = alpha sum_i E_t[i, j] + beta out_t[j] for m x n matrices E_t (E view = a_*,
// out view = c_*). One invocation per output entry, rows summed in order.
@compute @workgroup_size(256)
fn sum_rows(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = linear_index(gid, nwg);
    if (e >= p.tasks * p.n) { return; }
    let t = e / p.n;
    let j = e % p.n;
    let base = p.a_offset + t * p.a_stride;
    var s = 0.0;
    for (var i = 0u; i < p.m; i = i + 1u) { s = s + amat[base + i * p.n + j]; }
    let o = p.c_offset + t * p.c_stride + j;
    var v = p.alpha * s;
    if (p.beta != 0.0) { v = v + p.beta * cmat[o]; }
    cmat[o] = v;
}
