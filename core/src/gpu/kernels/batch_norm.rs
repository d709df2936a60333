//! `shaders/batch_norm.wgsl`: batch norm with per-(task, channel) statistics, its backward and
//! both tangents, as group sums → per-group coefficients → one elementwise pass (+ the γ/β
//! gradient block).

use super::{groups_2d, u32_of, Kernel, DIV_LIMIT};
use crate::gpu::Access::{self, Read, ReadWrite};
use crate::gpu::{Binding, GpuBackend, GpuVector};
use crate::meta::ops::BN_EPS;
use crate::meta::{BnLayer, ImageBatch, View, ViewMut};

crate::kernel_params! {
    struct Params {
        mode: u32,
        tasks: u32,
        per_task: u32,
        channels: u32,
        hw: u32,
        fields: u32,
        p_offset: u32,
        p_stride: u32,
        r_offset: u32,
        r_stride: u32,
        g_offset: u32,
        g_stride: u32,
        eps: f32,
    }
}

const fn spec(entry: &'static str, buffers: &'static [(u32, Access)]) -> Kernel {
    Kernel::new("batch_norm.wgsl", bilevel_shaders::BATCH_NORM, entry, buffers).with_constants(MODE_CONSTANTS)
}
const STATS: Kernel = spec("bn_stats", &[(1, Read), (8, ReadWrite)]);
const SUMS: Kernel = spec("bn_sums", &[(1, Read), (2, Read), (3, Read), (4, Read), (5, Read), (9, ReadWrite)]);
const COEFFICIENTS: Kernel = spec("bn_coefficients", &[(5, Read), (6, Read), (7, Read), (9, ReadWrite)]);
const APPLY: Kernel = spec("bn_apply", &[(1, Read), (2, Read), (3, Read), (4, Read), (5, Read), (9, ReadWrite), (10, ReadWrite)]);
const PARAM_GRAD: Kernel = spec("bn_param_grad", &[(5, Read), (9, ReadWrite), (10, ReadWrite)]);

/// Floats of scratch per group (sums, then coefficients), as in the shader.
const SCRATCH: usize = 16;

/// Which operation the coefficients describe (the shader's `mode`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Forward = 0,
    Backward = 1,
    Tangent = 2,
    BackwardTangent = 3,
}

/// The shader's names for the modes, checked against [`Mode`]'s values by reflection.
const MODE_CONSTANTS: &[(&str, u32)] = &[
    ("MODE_FORWARD", Mode::Forward as u32),
    ("MODE_BACKWARD", Mode::Backward as u32),
    ("MODE_TANGENT", Mode::Tangent as u32),
    ("MODE_BACKWARD_TANGENT", Mode::BackwardTangent as u32),
];

/// The per-entry inputs of one operation (`None`: not part of it, not read).
pub(crate) struct Fields<'a> {
    pub x: &'a GpuVector,
    pub rx: Option<&'a GpuVector>,
    pub dy: Option<&'a GpuVector>,
    pub rdy: Option<&'a GpuVector>,
}

fn opt<'a>(gpu: &'a GpuBackend, v: Option<&'a GpuVector>) -> Binding<'a> {
    v.map_or(gpu.unused_binding(), |v| v.binding())
}

/// The shape fields every batch-norm kernel reads.
fn shape(batch: ImageBatch) -> Params {
    // Entry indices are split into (image, channel, pixel) with `div_u32`.
    let hw = batch.height * batch.width;
    assert!(hw < DIV_LIMIT && batch.channels < DIV_LIMIT && batch.per_task < DIV_LIMIT, "batch norm: shape {batch:?} too large");
    Params {
        tasks: batch.tasks as u32,
        per_task: batch.per_task as u32,
        channels: batch.channels as u32,
        hw: hw as u32,
        eps: BN_EPS as f32,
        ..Params::default()
    }
}

fn params(mode: Mode, batch: ImageBatch, f: &Fields<'_>) -> Params {
    let fields = f.rx.is_some() as u32 | (f.dy.is_some() as u32) << 1 | (f.rdy.is_some() as u32) << 2;
    Params { mode: mode as u32, fields, ..shape(batch) }
}

fn check_view(len: usize, offset: usize, stride: usize, batch: ImageBatch, what: &str) {
    assert!(
        len >= offset + batch.tasks.saturating_sub(1) * stride + 2 * batch.channels,
        "batch norm: {what} view (offset {offset}, stride {stride}) exceeds its buffer"
    );
}

/// `stats` ← per-group mean and 1/√(σ² + ε).
pub(crate) fn stats(gpu: &GpuBackend, x: &GpuVector, batch: ImageBatch, stats: &mut GpuVector) {
    let groups = batch.tasks * batch.channels;
    assert!(x.len() >= batch.len() && stats.len() >= 2 * groups, "batch_norm: shape mismatch");
    let p = shape(batch);
    gpu.dispatch_groups(&STATS, &p, &[x.binding(), stats.binding()], groups_2d(groups));
}

/// `out` ← the operation `mode` of the fields, with the layer's (γ, β) view and statistics and,
/// for tangents, the direction's (γ, β); `grad` receives the (γ, β) gradient block of the
/// backward modes.
pub(crate) fn apply(
    gpu: &GpuBackend,
    mode: Mode,
    layer: BnLayer<'_, GpuVector>,
    f: Fields<'_>,
    rparams: Option<View<'_, GpuVector>>,
    out: &mut GpuVector,
    grad: Option<ViewMut<'_, GpuVector>>,
) {
    let BnLayer { batch, params: params_view, stats } = layer;
    let groups = batch.tasks * batch.channels;
    let n = batch.len();
    assert!(f.x.len() >= n && out.len() >= n && stats.len() >= 2 * groups, "batch norm: shape mismatch");
    assert!([f.rx, f.dy, f.rdy].iter().all(|v| v.is_none_or(|v| v.len() >= n)), "batch norm: an input is too short");
    check_view(params_view.buf.len(), params_view.offset, params_view.stride, batch, "parameter");
    let mut p = Params {
        p_offset: u32_of(params_view.offset, "BN parameter offset"),
        p_stride: u32_of(params_view.stride, "BN parameter stride"),
        ..params(mode, batch, &f)
    };
    if let Some(r) = &rparams {
        check_view(r.buf.len(), r.offset, r.stride, batch, "direction");
        p.r_offset = u32_of(r.offset, "BN direction offset");
        p.r_stride = u32_of(r.stride, "BN direction stride");
    }
    let scratch = gpu.scratch(groups * SCRATCH, "batch_norm.scratch");
    let (rx, dy, rdy) = (opt(gpu, f.rx), opt(gpu, f.dy), opt(gpu, f.rdy));
    if mode != Mode::Forward {
        let bound = [f.x.binding(), rx, dy, rdy, stats.binding(), scratch.binding()];
        gpu.dispatch_groups(&SUMS, &p, &bound, groups_2d(groups));
    }
    let rp = rparams.map_or(gpu.unused_binding(), |r| r.buf.binding());
    gpu.dispatch(&COEFFICIENTS, &p, &[stats.binding(), params_view.buf.binding(), rp, scratch.binding()], u32_of(groups, "BN groups"));
    gpu.dispatch(&APPLY, &p, &[f.x.binding(), rx, dy, rdy, stats.binding(), scratch.binding(), out.binding()], u32_of(n, "BN entries"));
    if let Some(g) = grad {
        let blocks = if g.stride == 0 { 1 } else { batch.tasks };
        check_view(g.buf.len(), g.offset, g.stride, batch, "gradient");
        p.g_offset = u32_of(g.offset, "BN gradient offset");
        p.g_stride = u32_of(g.stride, "BN gradient stride");
        gpu.dispatch(
            &PARAM_GRAD,
            &p,
            &[stats.binding(), scratch.binding(), g.buf.binding()],
            u32_of(blocks * batch.channels, "BN gradient entries"),
        );
    }
}

/// Each kernel of this file, reflected against its WGSL.
#[cfg(test)]
pub(super) fn reflect_all() -> Vec<(Kernel, crate::Result<()>)> {
    [STATS, SUMS, COEFFICIENTS, APPLY, PARAM_GRAD].into_iter().map(|k| (k, k.check::<Params>())).collect()
}
