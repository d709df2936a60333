// Dot products as deterministic two-pass tree reductions (no float atomics in WGSL):
// pass 1: each of at most 256 workgroups reduces a strided share of the vectors into
// partials[wg]; pass 2: one workgroup reduces the partials into a device scalar.

struct Params {
    n: u32,
    // Pass 2 writes scalars[out] = scale * sum (+ scalars[out] when accumulate == 1).
    out: u32,
    accumulate: u32,
    num_partials: u32,
    scale: f32,
    // 0: sum x (y unread), 1: x . y.
    has_y: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

var<workgroup> tree: array<f32, 256>;

fn tree_reduce(lid: u32) {
    for (var stride = 128u; stride > 0u; stride = stride >> 1u) {
        workgroupBarrier();
        if (lid < stride) { tree[lid] = tree[lid] + tree[lid + stride]; }
    }
    workgroupBarrier();
}

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> y: array<f32>;
@group(0) @binding(3) var<storage, read_write> partials: array<f32>;

@compute @workgroup_size(256)
fn dot_partial(@builtin(local_invocation_id) lid3: vec3<u32>,
               @builtin(workgroup_id) wid: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>) {
    let lid = lid3.x;
    var acc = 0.0;
    var i = wid.x * 256u + lid;
    let stride = nwg.x * 256u;
    while (i < p.n) {
        if (p.has_y == 1u) { acc = acc + x[i] * y[i]; } else { acc = acc + x[i]; }
        i = i + stride;
    }
    tree[lid] = acc;
    tree_reduce(lid);
    if (lid == 0u) { partials[wid.x] = tree[0]; }
}

@group(0) @binding(4) var<storage, read_write> scalars: array<f32>;

@compute @workgroup_size(256)
fn sum_partials(@builtin(local_invocation_id) lid3: vec3<u32>) {
    let lid = lid3.x;
    var acc = 0.0;
    if (lid < p.num_partials) { acc = partials[lid]; }
    tree[lid] = acc;
    tree_reduce(lid);
    if (lid == 0u) {
        var v = p.scale * tree[0];
        if (p.accumulate == 1u) { v = v + scalars[p.out]; }
        scalars[p.out] = v;
    }
}
