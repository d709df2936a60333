// 3x3 convolutions (padding 1, stride 1) over a whole meta-batch of NCHW images, as implicit
// GEMMs on the tiled product (tiled.wgsl); im2col is never materialised, the loaders index
// the images directly. Per-task weights: task t's block at w_offset + t * w_stride.
//   mode 0, forward:     out_t[co, n]  = W_t[co, (ci,tap)] . im2col(x)[(ci,tap), n] (+ bias)
//   mode 1, input grad:  dx_t[ci, n]   = W_t[co, ci, tap] . im2col'(dy)[(co,tap), n]
//   mode 2, param grad:  dW_b[co, j]   = dy[co, q] . im2col(x)[j, q] over pixels q of block b
//                        (j = c_in*9 is the bias: a row of ones), split into K chunks whose
//                        partial sums conv_grad_reduce adds in a fixed order (no atomics).
// n runs over the pixels of all images of one task (per_task * h * w columns), so small
// images still fill the tiles.

// The modes; the Rust side's values are checked against these when the pipeline is created.
const MODE_FORWARD: u32 = 0u;
const MODE_INPUT_GRAD: u32 = 1u;
const MODE_PARAM_GRAD: u32 = 2u;

struct Params {
    mode: u32,
    per_task: u32,
    c_in: u32,
    c_out: u32,
    height: u32,
    width: u32,
    w_offset: u32,
    w_stride: u32,
    // The product's rows, columns and depth (per block).
    m: u32,
    n: u32,
    k: u32,
    tiles_m: u32,
    tiles_n: u32,
    // Mode 2: blocks (tasks, or 1 when shared), K chunks per block and their length,
    // images per block.
    blocks: u32,
    chunks: u32,
    k_chunk: u32,
    images_per_block: u32,
    bias: u32,
    accumulate: u32,
    // conv_grad_reduce: the gradient view.
    g_offset: u32,
    g_stride: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
// x (modes 0, 2) or dy (mode 1).
@group(0) @binding(1) var<storage, read> src: array<f32>;
// The weights (modes 0, 1) or dy (mode 2).
@group(0) @binding(2) var<storage, read> aux: array<f32>;
// out (mode 0), dx (mode 1) or the partial sums (mode 2, read by conv_grad_reduce).
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;
@group(0) @binding(4) var<storage, read_write> grad: array<f32>;

// The padded image value img[i, c, y + dy, x + dx] of a `channels`-channel image batch in `src`
// (0 outside the image), for pixel `pix` = y * width + x.
fn shifted(i: u32, channels: u32, c: u32, pix: u32, dy: i32, dx: i32) -> f32 {
    let row = div_u32(pix, p.width);
    let y = i32(row) + dy;
    let x = i32(pix - row * p.width) + dx;
    if (y < 0 || x < 0 || y >= i32(p.height) || x >= i32(p.width)) { return 0.0; }
    return src[((i * channels + c) * p.height + u32(y)) * p.width + u32(x)];
}

fn load_a(block: u32, row: u32, k: u32) -> f32 {
    if (row >= p.m) { return 0.0; }
    let w = p.w_offset + block * p.w_stride;
    if (p.mode == MODE_FORWARD) {
        return aux[w + row * p.k + k];
    }
    if (p.mode == MODE_INPUT_GRAD) {
        // row = ci, k = co * 9 + tap.
        return aux[w + (k / 9u) * p.c_in * 9u + row * 9u + k % 9u];
    }
    // row = co, k = pixel q of the block.
    let hw = p.height * p.width;
    let image = div_u32(k, hw);
    let i = block * p.images_per_block + image;
    return aux[(i * p.c_out + row) * hw + k - image * hw];
}

fn load_b(block: u32, k: u32, col: u32) -> f32 {
    let hw = p.height * p.width;
    if (p.mode == MODE_PARAM_GRAD) {
        // k = pixel q, col = ci * 9 + tap, or the bias row.
        let bias_row = p.c_in * 9u;
        if (col > bias_row) { return 0.0; }
        if (col == bias_row) { return 1.0; }
        let image = div_u32(k, hw);
        let i = block * p.images_per_block + image;
        let tap = col % 9u;
        return shifted(i, p.c_in, col / 9u, k - image * hw, i32(tap / 3u) - 1, i32(tap % 3u) - 1);
    }
    if (col >= p.n) { return 0.0; }
    let image = div_u32(col, hw);
    let i = block * p.per_task + image;
    let pix = col - image * hw;
    let tap = k % 9u;
    if (p.mode == MODE_FORWARD) {
        return shifted(i, p.c_in, k / 9u, pix, i32(tap / 3u) - 1, i32(tap % 3u) - 1);
    }
    // dx[y, x] gathers dy[y - ky + 1, x - kx + 1].
    return shifted(i, p.c_out, k / 9u, pix, 1 - i32(tap / 3u), 1 - i32(tap % 3u));
}

@compute @workgroup_size(256)
fn conv3x3_product(@builtin(local_invocation_index) lid: u32,
                   @builtin(workgroup_id) wid: vec3<u32>,
                   @builtin(num_workgroups) nwg: vec3<u32>) {
    let tiles = p.tiles_m * p.tiles_n;
    var wg = workgroup_index(wid, nwg);
    var chunk = 0u;
    var k0 = 0u;
    var k1 = p.k;
    var block = 0u;
    if (p.mode == MODE_PARAM_GRAD) {
        if (wg >= p.blocks * p.chunks * tiles) { return; }
        block = wg / (p.chunks * tiles);
        chunk = (wg / tiles) % p.chunks;
        k0 = chunk * p.k_chunk;
        k1 = min(k0 + p.k_chunk, p.k);
    } else {
        if (wg >= p.blocks * tiles) { return; }
        block = wg / tiles;
    }
    let tm = (wg % tiles) / p.tiles_n;
    let tn = wg % p.tiles_n;
    let acc = tiled_product(lid, block, tm * TILE, tn * TILE, k0, k1, true, p.mode == MODE_PARAM_GRAD);

    let hw = p.height * p.width;
    for (var i = 0u; i < 4u; i = i + 1u) {
        let row = tm * TILE + tile_row(lid, i);
        if (row >= p.m) { continue; }
        for (var j = 0u; j < 4u; j = j + 1u) {
            let col = tn * TILE + tile_col(lid, j);
            if (col >= p.n) { continue; }
            var v = acc[i][j];
            if (p.mode == MODE_PARAM_GRAD) {
                dst[((block * p.chunks + chunk) * p.m + row) * p.n + col] = v;
                continue;
            }
            // Modes 0 and 1: row is the output channel of image block * per_task + col / hw.
            let o = ((block * p.per_task + col / hw) * p.m + row) * hw + col % hw;
            if (p.mode == MODE_FORWARD && p.bias == 1u) {
                v = v + aux[p.w_offset + block * p.w_stride + p.m * p.k + row];
            }
            if (p.accumulate == 1u) { v = v + dst[o]; }
            dst[o] = v;
        }
    }
}

// grad_b[co, j] (+)= sum over chunks of the mode-2 partials, in chunk order. Entry j < c_in*9
// is the weight [co][j]; j = c_in*9 the bias of co (after all weights in the block).
@compute @workgroup_size(256)
fn conv_grad_reduce(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = linear_index(gid, nwg);
    let per_block = p.m * p.n;
    if (e >= p.blocks * per_block) { return; }
    let block = e / per_block;
    let co = (e % per_block) / p.n;
    let j = e % p.n;
    var s = 0.0;
    for (var c = 0u; c < p.chunks; c = c + 1u) {
        s = s + dst[((block * p.chunks + c) * p.m + co) * p.n + j];
    }
    let weights = p.m * (p.n - 1u);
    var o = p.g_offset + block * p.g_stride + co * (p.n - 1u) + j;
    if (j == p.n - 1u) { o = p.g_offset + block * p.g_stride + weights + co; }
    if (p.accumulate == 1u) { s = s + grad[o]; }
    grad[o] = s;
}
