// Batch norm with per-(task, channel) batch statistics over a meta-batch of NCHW images, its
// backward and both R-op tangents. A group g = t * channels + c holds the per_task * h * w
// entries of channel c in task t's images. Every output is a per-group linear combination
//   out = c_dy dy + c_rdy Rdy + c_xh x^ + c_rx Rx + c_1,   x^ = (x - mu) s,
// so each operation is: group sums (one workgroup per group, tree reduction), a tiny kernel
// turning sums, statistics and (gamma, beta) into the five coefficients per group, and one
// elementwise pass; parameter gradients sum the per-group values over tasks in a fixed order.
// Scratch layout per group (16 floats): sums 0..7, coefficients 8..12.
//   sums: 0 S(dy), 1 S(dy x^), 2 S(Rx), 3 S(x^ Rx), 4 S(Rdy), 5 S(Rdy x^), 6 S(dy Rx)
//   mode: forward, backward, forward tangent, backward tangent (the constants below; the Rust
//   side's values are checked against them when the pipeline is created).

const MODE_FORWARD: u32 = 0u;
const MODE_BACKWARD: u32 = 1u;
const MODE_TANGENT: u32 = 2u;
const MODE_BACKWARD_TANGENT: u32 = 3u;

struct Params {
    mode: u32,
    tasks: u32,
    per_task: u32,
    channels: u32,
    hw: u32,
    // Which of rx, dy, rdy are bound (bits 0, 1, 2).
    fields: u32,
    p_offset: u32,
    p_stride: u32,
    r_offset: u32,
    r_stride: u32,
    g_offset: u32,
    g_stride: u32,
    eps: f32,
}

const HAS_RX: u32 = 1u;
const HAS_DY: u32 = 2u;
const HAS_RDY: u32 = 4u;
const SCRATCH: u32 = 16u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> rx: array<f32>;
@group(0) @binding(3) var<storage, read> dy: array<f32>;
@group(0) @binding(4) var<storage, read> rdy: array<f32>;
@group(0) @binding(5) var<storage, read> stats: array<f32>;
@group(0) @binding(6) var<storage, read> params: array<f32>;
@group(0) @binding(7) var<storage, read> rparams: array<f32>;
@group(0) @binding(8) var<storage, read_write> stats_out: array<f32>;
@group(0) @binding(9) var<storage, read_write> scratch: array<f32>;
@group(0) @binding(10) var<storage, read_write> out: array<f32>;

var<workgroup> tree: array<array<f32, 8>, 256>;

fn has(field: u32) -> bool {
    return (p.fields & field) != 0u;
}

fn group_size() -> u32 {
    return p.per_task * p.hw;
}

// The buffer index of entry j of group g.
fn group_entry(g: u32, j: u32) -> u32 {
    let t = g / p.channels;
    let c = g % p.channels;
    let image = div_u32(j, p.hw);
    return ((t * p.per_task + image) * p.channels + c) * p.hw + j - image * p.hw;
}

// The group of buffer index i.
fn group_of(i: u32) -> u32 {
    let plane = div_u32(i, p.hw);
    let image = div_u32(plane, p.channels);
    return div_u32(image, p.per_task) * p.channels + plane - image * p.channels;
}

fn xhat(i: u32, g: u32) -> f32 {
    return (x[i] - stats[2u * g]) * stats[2u * g + 1u];
}

// Sums tree[.][0..8] over the workgroup into tree[0].
fn tree_reduce(lid: u32) {
    for (var stride = 128u; stride > 0u; stride = stride >> 1u) {
        workgroupBarrier();
        if (lid < stride) {
            for (var q = 0u; q < 8u; q = q + 1u) { tree[lid][q] = tree[lid][q] + tree[lid + stride][q]; }
        }
    }
    workgroupBarrier();
}

// stats_out[2g] = mean, [2g+1] = 1 / sqrt(biased variance + eps); two passes over the group.
@compute @workgroup_size(256)
fn bn_stats(@builtin(local_invocation_index) lid: u32,
            @builtin(workgroup_id) wid: vec3<u32>,
            @builtin(num_workgroups) nwg: vec3<u32>) {
    let g = workgroup_index(wid, nwg);
    if (g >= p.tasks * p.channels) { return; }
    let m = group_size();
    var s = 0.0;
    for (var j = lid; j < m; j = j + 256u) { s = s + x[group_entry(g, j)]; }
    tree[lid][0] = s;
    tree_reduce(lid);
    let mean = tree[0][0] / f32(m);
    workgroupBarrier();
    var v = 0.0;
    for (var j = lid; j < m; j = j + 256u) {
        let d = x[group_entry(g, j)] - mean;
        v = v + d * d;
    }
    tree[lid][0] = v;
    tree_reduce(lid);
    if (lid == 0u) {
        stats_out[2u * g] = mean;
        stats_out[2u * g + 1u] = 1.0 / sqrt(tree[0][0] / f32(m) + p.eps);
    }
}

// The sums of the bound fields per group into scratch[g * 16 + 0..7].
@compute @workgroup_size(256)
fn bn_sums(@builtin(local_invocation_index) lid: u32,
           @builtin(workgroup_id) wid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    let g = workgroup_index(wid, nwg);
    if (g >= p.tasks * p.channels) { return; }
    var acc: array<f32, 8>;
    for (var j = lid; j < group_size(); j = j + 256u) {
        let i = group_entry(g, j);
        let xh = xhat(i, g);
        if (has(HAS_DY)) {
            acc[0] = acc[0] + dy[i];
            acc[1] = acc[1] + dy[i] * xh;
        }
        if (has(HAS_RX)) {
            acc[2] = acc[2] + rx[i];
            acc[3] = acc[3] + xh * rx[i];
        }
        if (has(HAS_RDY)) {
            acc[4] = acc[4] + rdy[i];
            acc[5] = acc[5] + rdy[i] * xh;
        }
        if (has(HAS_DY) && has(HAS_RX)) { acc[6] = acc[6] + dy[i] * rx[i]; }
    }
    tree[lid] = acc;
    tree_reduce(lid);
    if (lid < 8u) { scratch[g * SCRATCH + lid] = tree[0][lid]; }
}

fn gamma(g: u32) -> f32 {
    return params[p.p_offset + (g / p.channels) * p.p_stride + g % p.channels];
}
fn beta(g: u32) -> f32 {
    return params[p.p_offset + (g / p.channels) * p.p_stride + p.channels + g % p.channels];
}
fn rgamma(g: u32) -> f32 {
    return rparams[p.r_offset + (g / p.channels) * p.r_stride + g % p.channels];
}
fn rbeta(g: u32) -> f32 {
    return rparams[p.r_offset + (g / p.channels) * p.r_stride + p.channels + g % p.channels];
}

// S(dy Rx^) = s (S(dy Rx) - S(dy) S(Rx) / m - S(dy x^) S(x^ Rx) / m).
fn sum_dy_rxhat(g: u32) -> f32 {
    let b = g * SCRATCH;
    let m = f32(group_size());
    return stats[2u * g + 1u] * (scratch[b + 6u] - scratch[b] * scratch[b + 2u] / m - scratch[b + 1u] * scratch[b + 3u] / m);
}

// The five coefficients of each group (one invocation per group).
@compute @workgroup_size(256)
fn bn_coefficients(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let g = linear_index(gid, nwg);
    if (g >= p.tasks * p.channels) { return; }
    let b = g * SCRATCH;
    let m = f32(group_size());
    let s = stats[2u * g + 1u];
    let gm = gamma(g);
    var c_dy = 0.0;
    var c_rdy = 0.0;
    var c_xh = 0.0;
    var c_rx = 0.0;
    var c_1 = 0.0;
    if (p.mode == MODE_FORWARD) {
        // y = gamma x^ + beta.
        c_xh = gm;
        c_1 = beta(g);
    } else if (p.mode == MODE_BACKWARD) {
        // dx = gamma s (dy - S(dy)/m - x^ S(dy x^)/m).
        c_dy = gm * s;
        c_1 = -gm * s * scratch[b] / m;
        c_xh = -gm * s * scratch[b + 1u] / m;
    } else if (p.mode == MODE_TANGENT) {
        // Ry = Rgamma x^ + gamma s (Rx - S(Rx)/m - x^ S(x^ Rx)/m) + Rbeta.
        c_rx = gm * s;
        c_xh = rgamma(g) - gm * s * scratch[b + 3u] / m;
        c_1 = rbeta(g) - gm * s * scratch[b + 2u] / m;
    } else if (p.mode == MODE_BACKWARD_TANGENT) {
        // Rdx = (Rs/s) dx + s (Rg - mean(Rg) - Rx^ mean(g x^) - x^ mean(Rg x^ + g Rx^)) with
        // g = gamma dy, Rg = Rgamma dy + gamma Rdy, Rs/s = -s mean(x^ Rx), expanded in the fields.
        let rg = rgamma(g);
        let a = -s * s * scratch[b + 3u] / m * gm;
        c_dy = a + s * rg;
        c_1 = -a * scratch[b] / m;
        c_xh = -a * scratch[b + 1u] / m;
        c_rdy = s * gm;
        let sum_rg = rg * scratch[b] + gm * scratch[b + 4u];
        c_1 = c_1 - s * sum_rg / m;
        let bb = -s * s * gm * scratch[b + 1u] / m;
        c_rx = bb;
        c_1 = c_1 - bb * scratch[b + 2u] / m;
        c_xh = c_xh - bb * scratch[b + 3u] / m;
        let mean_cross = (rg * scratch[b + 1u] + gm * scratch[b + 5u] + gm * sum_dy_rxhat(g)) / m;
        c_xh = c_xh - s * mean_cross;
    }
    scratch[b + 8u] = c_dy;
    scratch[b + 9u] = c_rdy;
    scratch[b + 10u] = c_xh;
    scratch[b + 11u] = c_rx;
    scratch[b + 12u] = c_1;
}

@compute @workgroup_size(256)
fn bn_apply(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_index(gid, nwg);
    if (i >= p.tasks * group_size() * p.channels) { return; }
    let g = group_of(i);
    let b = g * SCRATCH;
    var v = scratch[b + 10u] * xhat(i, g) + scratch[b + 12u];
    if (has(HAS_DY)) { v = v + scratch[b + 8u] * dy[i]; }
    if (has(HAS_RDY)) { v = v + scratch[b + 9u] * rdy[i]; }
    if (has(HAS_RX)) { v = v + scratch[b + 11u] * rx[i]; }
    out[i] = v;
}

// The (gamma, beta) gradient block of each parameter block (one invocation per (block, c)):
// backward (S(dy x^), S(dy)), backward tangent (S(Rdy x^) + S(dy Rx^), S(Rdy)), summed over
// tasks in order when the block is shared (g_stride = 0).
@compute @workgroup_size(256)
fn bn_param_grad(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = linear_index(gid, nwg);
    var blocks = p.tasks;
    if (p.g_stride == 0u) { blocks = 1u; }
    if (e >= blocks * p.channels) { return; }
    let blk = e / p.channels;
    let c = e % p.channels;
    var t0 = blk;
    var t1 = blk + 1u;
    if (p.g_stride == 0u) { t0 = 0u; t1 = p.tasks; }
    var dgamma = 0.0;
    var dbeta = 0.0;
    for (var t = t0; t < t1; t = t + 1u) {
        let g = t * p.channels + c;
        let b = g * SCRATCH;
        if (p.mode == MODE_BACKWARD) {
            dgamma = dgamma + scratch[b + 1u];
            dbeta = dbeta + scratch[b];
        } else {
            dgamma = dgamma + scratch[b + 5u] + sum_dy_rxhat(g);
            dbeta = dbeta + scratch[b + 4u];
        }
    }
    let o = p.g_offset + blk * p.g_stride;
    out[o + c] = dgamma;
    out[o + p.channels + c] = dbeta;
}
