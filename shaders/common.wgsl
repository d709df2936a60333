// Helpers shared by every kernel file; `bilevel_shaders` appends this file to each module.

// The linear invocation index of a 1-D grid that spills into y past 65,535 workgroups.
fn linear_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * 256u;
}

// The linear workgroup index of a grid that spills into y past 65,535 workgroups (kernels
// where one workgroup owns one group of outputs).
fn workgroup_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + wid.y * nwg.x;
}

// n / d for any n and 0 < d < 2^21 without an integer division (a long emulated sequence on
// GPUs, scalarised on CPU SIMD such as lavapipe): an f32 estimate of the quotient, one f32
// refinement from the remainder, then an exact fix-up by the remainder's sign (u32 arithmetic
// wraps, so the remainder is read as i32).
fn div_u32(n: u32, d: u32) -> u32 {
    let fd = f32(d);
    var q = u32(f32(n) / fd);
    q = q + bitcast<u32>(i32(floor(f32(bitcast<i32>(n - q * d)) / fd)));
    let r = bitcast<i32>(n - q * d);
    if (r < 0) { q = q - 1u; } else if (r >= i32(d)) { q = q + 1u; }
    return q;
}
