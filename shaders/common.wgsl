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
