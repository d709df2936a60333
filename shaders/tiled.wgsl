// The shared tiled matrix product behind the conv and GEMM kernels (appended to them by
// `bilevel_shaders`). A workgroup of 256 invocations owns a 64 x 64 tile of C = A B: it walks
// K in steps of 16, staging a 64 x 16 slice of A and a 16 x 64 slice of B in workgroup memory
// (8 KiB), and each invocation keeps a 4 x 4 block of C in registers (rows tr + 16 i, columns
// tc + 16 j, so neighbouring invocations read neighbouring shared words).
//
// The including file defines the operands as functions, so one loop serves plain, strided and
// implicit (im2col) matrices alike:
//   fn load_a(block: u32, row: u32, k: u32) -> f32   // A[row, k] of block `block`, 0 outside
//   fn load_b(block: u32, k: u32, col: u32) -> f32   // B[k, col], 0 outside

const TILE: u32 = 64u;
const TILE_K: u32 = 16u;

// [TILE_K][16] vec4s: entry (k, r) holds rows (or columns) r, r + 16, r + 32, r + 48, so an
// invocation reads its four rows (columns) of one k with a single vector load.
var<workgroup> tile_a: array<vec4<f32>, 256>;
var<workgroup> tile_b: array<vec4<f32>, 256>;

// The 4 x 4 block of sum_{k0 <= k < k1} A[row, k] B[k, col] of invocation `lid`, for the tile at
// (row0, col0). `a_k_fast` / `b_k_fast`: neighbouring invocations load neighbouring k (the
// operand is contiguous along k) rather than neighbouring rows / columns. All arguments must be
// uniform across the workgroup (the loop holds barriers).
fn tiled_product(lid: u32, block: u32, row0: u32, col0: u32, k0: u32, k1: u32, a_k_fast: bool, b_k_fast: bool) -> array<vec4<f32>, 4> {
    // acc[i][j]: row tr + 16 i, column tc + 16 j (vec4 arithmetic, constant indices only).
    var acc: array<vec4<f32>, 4>;
    let tr = lid / 16u;
    let tc = lid % 16u;
    for (var kb = k0; kb < k1; kb = kb + TILE_K) {
        for (var e = 0u; e < 4u; e = e + 1u) {
            let idx = lid + e * 256u;
            var ka = idx / TILE;
            var ra = idx % TILE;
            if (a_k_fast) { ka = idx % TILE_K; ra = idx / TILE_K; }
            var va = 0.0;
            if (kb + ka < k1) { va = load_a(block, row0 + ra, kb + ka); }
            tile_a[ka * 16u + ra % 16u][ra / 16u] = va;
            var kb2 = idx / TILE;
            var cb = idx % TILE;
            if (b_k_fast) { kb2 = idx % TILE_K; cb = idx / TILE_K; }
            var vb = 0.0;
            if (kb + kb2 < k1) { vb = load_b(block, kb + kb2, col0 + cb); }
            tile_b[kb2 * 16u + cb % 16u][cb / 16u] = vb;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TILE_K; kk = kk + 1u) {
            let a = tile_a[kk * 16u + tr];
            let b = tile_b[kk * 16u + tc];
            acc[0] = acc[0] + a.x * b;
            acc[1] = acc[1] + a.y * b;
            acc[2] = acc[2] + a.z * b;
            acc[3] = acc[3] + a.w * b;
        }
        workgroupBarrier();
    }
    return acc;
}

// The output row / column of entry (i, j) of invocation `lid`'s 4 x 4 block.
fn tile_row(lid: u32, i: u32) -> u32 {
    return lid / 16u + 16u * i;
}
fn tile_col(lid: u32, j: u32) -> u32 {
    return lid % 16u + 16u * j;
}
