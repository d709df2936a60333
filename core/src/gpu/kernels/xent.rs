//! `shaders/xent.wgsl`: the head's softmax cross-entropy (per-task loss and accuracy) and the
//! softmax curvature.

use super::{groups_2d, u32_of, Kernel};
use crate::gpu::Access::{Read, ReadWrite};
use crate::gpu::{GpuBackend, GpuVector};
use crate::meta::{SoftmaxCurvature, SoftmaxXent};

crate::kernel_params! {
    struct Params {
        tasks: u32,
        rows: u32,
        classes: u32,
        want_grad: u32,
        accumulate: u32,
        scale: f32,
    }
}

const XENT: Kernel = Kernel::new(
    "xent.wgsl",
    bilevel_shaders::XENT,
    "softmax_xent",
    &[(1, Read), (2, Read), (3, ReadWrite), (4, ReadWrite), (5, ReadWrite)],
);
const CURVATURE: Kernel = Kernel::new("xent.wgsl", bilevel_shaders::XENT, "softmax_curvature", &[(1, Read), (2, Read), (3, ReadWrite)]);

pub(crate) fn softmax_xent(
    gpu: &GpuBackend,
    x: SoftmaxXent,
    z: &GpuVector,
    labels: &GpuVector,
    probs: &mut GpuVector,
    grad: Option<&mut GpuVector>,
    stats: &mut GpuVector,
) {
    let SoftmaxXent { tasks, rows, classes, scale } = x;
    let n = tasks * rows;
    assert!(classes > 0, "softmax_xent: no classes");
    assert!(z.len() >= n * classes && probs.len() >= n * classes && labels.len() >= n, "softmax_xent: shape mismatch");
    assert!(stats.len() >= 2 * tasks && grad.as_ref().is_none_or(|g| g.len() >= n * classes), "softmax_xent: output too short");
    let p = Params {
        tasks: tasks as u32,
        rows: u32_of(rows, "rows"),
        classes: classes as u32,
        want_grad: grad.is_some() as u32,
        accumulate: 0,
        scale: scale as f32,
    };
    // Without a gradient the kernel writes nothing there; bind the (idle) reduction partials
    // so no read_write binding aliases another.
    let grad = grad.map_or(gpu.partials_binding(), |g| g.binding());
    gpu.dispatch_groups(&XENT, &p, &[z.binding(), labels.binding(), probs.binding(), grad, stats.binding()], groups_2d(tasks));
}

pub(crate) fn softmax_curvature(gpu: &GpuBackend, c: SoftmaxCurvature, probs: &GpuVector, u: &GpuVector, out: &mut GpuVector) {
    let SoftmaxCurvature { rows, classes, scale, accumulate } = c;
    let n = rows * classes;
    assert!(probs.len() >= n && u.len() >= n && out.len() >= n, "softmax_curvature: shape mismatch");
    let p = Params {
        tasks: 1,
        rows: u32_of(rows, "rows"),
        classes: classes as u32,
        want_grad: 0,
        accumulate: accumulate as u32,
        scale: scale as f32,
    };
    gpu.dispatch(&CURVATURE, &p, &[probs.binding(), u.binding(), out.binding()], p.rows);
}

/// Each kernel of this file, reflected against its WGSL.
#[cfg(test)]
pub(super) fn reflect_all() -> Vec<(Kernel, crate::Result<()>)> {
    [XENT, CURVATURE].into_iter().map(|k| (k, k.check::<Params>())).collect()
}
