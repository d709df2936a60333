// Softmax cross-entropy of the few-shot head, batched over tasks: one workgroup per task
// (rows strided over its invocations, then a tree reduction of the loss and the correct
// count), and the softmax curvature p o (u - <p, u>) one invocation per row.

struct Params {
    tasks: u32,
    rows: u32,
    classes: u32,
    want_grad: u32,
    accumulate: u32,
    scale: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
// Logits z (softmax_xent) or probabilities (softmax_curvature).
@group(0) @binding(1) var<storage, read> z: array<f32>;
// Labels as reals (softmax_xent) or the direction u (softmax_curvature).
@group(0) @binding(2) var<storage, read> labels: array<f32>;
// Probabilities (softmax_xent) or the curvature output.
@group(0) @binding(3) var<storage, read_write> probs: array<f32>;
@group(0) @binding(4) var<storage, read_write> grad: array<f32>;
@group(0) @binding(5) var<storage, read_write> stats: array<f32>;

var<workgroup> tree: array<vec2<f32>, 256>;

@compute @workgroup_size(256)
fn softmax_xent(@builtin(local_invocation_index) lid: u32,
                @builtin(workgroup_id) wid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = workgroup_index(wid, nwg);
    if (t >= p.tasks) { return; }
    var loss = 0.0;
    var correct = 0.0;
    for (var r = lid; r < p.rows; r = r + 256u) {
        let row = t * p.rows + r;
        let base = row * p.classes;
        var mx = z[base];
        var arg = 0u;
        for (var j = 1u; j < p.classes; j = j + 1u) {
            if (z[base + j] > mx) { mx = z[base + j]; arg = j; }
        }
        var s = 0.0;
        for (var j = 0u; j < p.classes; j = j + 1u) { s = s + exp(z[base + j] - mx); }
        let label = u32(labels[row]);
        for (var j = 0u; j < p.classes; j = j + 1u) {
            let pj = exp(z[base + j] - mx) / s;
            probs[base + j] = pj;
            if (p.want_grad == 1u) { grad[base + j] = p.scale * (pj - select(0.0, 1.0, j == label)); }
        }
        // A label outside the classes has no logit: the loss is NaN, as on the CPU. (Built at run
        // time: a NaN const-expression is a shader-creation error in WGSL.)
        var zl = bitcast<f32>(0x7fc00000u | (p.tasks & 0u));
        if (label < p.classes) { zl = z[base + label]; }
        loss = loss + mx + log(s) - zl;
        if (arg == label) { correct = correct + 1.0; }
    }
    tree[lid] = vec2<f32>(loss, correct);
    for (var stride = 128u; stride > 0u; stride = stride >> 1u) {
        workgroupBarrier();
        if (lid < stride) { tree[lid] = tree[lid] + tree[lid + stride]; }
    }
    workgroupBarrier();
    if (lid == 0u) {
        stats[2u * t] = tree[0].x / f32(p.rows);
        stats[2u * t + 1u] = tree[0].y;
    }
}

// out (+)= scale p o (u - <p, u>) row by row (`tasks` unused: rows counts every row).
@compute @workgroup_size(256)
fn softmax_curvature(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = linear_index(gid, nwg);
    if (r >= p.rows) { return; }
    let base = r * p.classes;
    var pu = 0.0;
    for (var j = 0u; j < p.classes; j = j + 1u) { pu = pu + z[base + j] * labels[base + j]; }
    for (var j = 0u; j < p.classes; j = j + 1u) {
        var v = p.scale * z[base + j] * (labels[base + j] - pu);
        if (p.accumulate == 1u) { v = v + probs[base + j]; }
        probs[base + j] = v;
    }
}
