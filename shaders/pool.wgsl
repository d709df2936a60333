// ReLU then 2x2 / stride-2 max-pool (floor) over `planes` = images * channels planes of
// height x width, with the argmax rule shared by forward, backward and tangent: scan
// (0,0), (0,1), (1,0), (1,1), the first maximum wins, routed only when the maximum is > 0.

struct Params {
    planes: u32,
    height: u32,
    width: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
// rx (tangent) or dy (backward); unused by the forward.
@group(0) @binding(2) var<storage, read> other: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

// The flat index in x of pooled entry o's argmax, and whether its maximum is positive.
fn window_argmax(o: u32) -> vec2<u32> {
    let ph = p.height / 2u;
    let pw = p.width / 2u;
    let plane = o / (ph * pw);
    let py = (o % (ph * pw)) / pw;
    let px = o % pw;
    let base = plane * p.height * p.width + 2u * py * p.width + 2u * px;
    var best = base;
    let candidates = array<u32, 3>(base + 1u, base + p.width, base + p.width + 1u);
    for (var c = 0u; c < 3u; c = c + 1u) {
        if (x[candidates[c]] > x[best]) { best = candidates[c]; }
    }
    return vec2<u32>(best, select(0u, 1u, x[best] > 0.0));
}

fn pooled_len() -> u32 {
    return p.planes * (p.height / 2u) * (p.width / 2u);
}

@compute @workgroup_size(256)
fn relu_maxpool(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let o = linear_index(gid, nwg);
    if (o >= pooled_len()) { return; }
    let a = window_argmax(o);
    out[o] = select(0.0, x[a.x], a.y == 1u);
}

@compute @workgroup_size(256)
fn relu_maxpool_tangent(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let o = linear_index(gid, nwg);
    if (o >= pooled_len()) { return; }
    let a = window_argmax(o);
    out[o] = select(0.0, other[a.x], a.y == 1u);
}

// One invocation per input entry (no scatter): dx[e] = dy[o] when e is o's routed argmax.
@compute @workgroup_size(256)
fn relu_maxpool_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = linear_index(gid, nwg);
    let hw = p.height * p.width;
    if (e >= p.planes * hw) { return; }
    let plane = e / hw;
    let py = (e % hw) / p.width / 2u;
    let px = (e % p.width) / 2u;
    var v = 0.0;
    if (py < p.height / 2u && px < p.width / 2u) {
        let o = (plane * (p.height / 2u) + py) * (p.width / 2u) + px;
        let a = window_argmax(o);
        if (a.x == e && a.y == 1u) { v = other[o]; }
    }
    out[e] = v;
}
