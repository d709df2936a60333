// Helpers shared by every kernel file; `bilevel_shaders` appends this file to each module.

// The linear invocation index of a 1-D grid that spills into y past 65,535 workgroups.
fn linear_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * 256u;
}
