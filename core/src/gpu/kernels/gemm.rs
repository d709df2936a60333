//! `shaders/gemm.wgsl`: the head's strided batched GEMM (tiled), bias broadcast and column sums.

use super::{groups_2d, tiles, u32_of, Kernel};
use crate::gpu::Access::{self, Read, ReadWrite};
use crate::gpu::{GpuBackend, GpuVector};
use crate::meta::{Gemm, SumRows, View, ViewMut};

crate::kernel_params! {
    struct Params {
        tasks: u32,
        m: u32,
        n: u32,
        k: u32,
        trans_a: u32,
        trans_b: u32,
        a_offset: u32,
        a_stride: u32,
        b_offset: u32,
        b_stride: u32,
        c_offset: u32,
        c_stride: u32,
        tiles_m: u32,
        tiles_n: u32,
        alpha: f32,
        beta: f32,
    }
}

const fn spec(entry: &'static str, buffers: &'static [(u32, Access)]) -> Kernel {
    Kernel::new("gemm.wgsl", bilevel_shaders::GEMM, entry, buffers)
}
const GEMM: Kernel = spec("gemm", &[(1, Read), (2, Read), (3, ReadWrite)]);
const ADD_ROW_BIAS: Kernel = spec("add_row_bias", &[(1, Read), (3, ReadWrite)]);
const SUM_ROWS: Kernel = spec("sum_rows", &[(1, Read), (3, ReadWrite)]);

/// Checks that `tasks` blocks of `len` entries fit in a view's buffer.
fn fits(buf_len: usize, offset: usize, stride: usize, tasks: usize, len: usize, what: &str) {
    assert!(
        tasks == 0 || buf_len >= offset + (tasks - 1) * stride + len,
        "{what}: view (offset {offset}, stride {stride}) of {tasks} blocks of {len} exceeds its buffer ({buf_len})"
    );
}

pub(crate) fn gemm(gpu: &GpuBackend, g: Gemm, a: View<'_, GpuVector>, b: View<'_, GpuVector>, c: ViewMut<'_, GpuVector>) {
    assert!(c.stride > 0 || g.tasks <= 1, "gemm: C needs a task stride");
    fits(a.buf.len(), a.offset, a.stride, g.tasks, g.m * g.k, "gemm A");
    fits(b.buf.len(), b.offset, b.stride, g.tasks, g.k * g.n, "gemm B");
    fits(c.buf.len(), c.offset, c.stride, g.tasks, g.m * g.n, "gemm C");
    let p = Params {
        tasks: g.tasks as u32,
        m: g.m as u32,
        n: g.n as u32,
        k: g.k as u32,
        trans_a: g.trans_a as u32,
        trans_b: g.trans_b as u32,
        a_offset: u32_of(a.offset, "gemm A offset"),
        a_stride: u32_of(a.stride, "gemm A stride"),
        b_offset: u32_of(b.offset, "gemm B offset"),
        b_stride: u32_of(b.stride, "gemm B stride"),
        c_offset: u32_of(c.offset, "gemm C offset"),
        c_stride: u32_of(c.stride, "gemm C stride"),
        tiles_m: tiles(g.m),
        tiles_n: tiles(g.n),
        alpha: g.alpha as f32,
        beta: g.beta as f32,
    };
    let groups = g.tasks * (p.tiles_m * p.tiles_n) as usize;
    gpu.dispatch_groups(&GEMM, &p, &[a.buf.binding(), b.buf.binding(), c.buf.binding()], groups_2d(groups));
}

/// Params for the `rows × cols` elementwise kernels: the input view as A, the output as C.
fn rows_params(tasks: usize, rows: usize, cols: usize, input: &View<'_, GpuVector>, out: &ViewMut<'_, GpuVector>) -> Params {
    Params {
        tasks: tasks as u32,
        m: rows as u32,
        n: cols as u32,
        a_offset: u32_of(input.offset, "input offset"),
        a_stride: u32_of(input.stride, "input stride"),
        c_offset: u32_of(out.offset, "output offset"),
        c_stride: u32_of(out.stride, "output stride"),
        ..Params::default()
    }
}

pub(crate) fn add_row_bias(gpu: &GpuBackend, tasks: usize, rows: usize, cols: usize, bias: View<'_, GpuVector>, c: ViewMut<'_, GpuVector>) {
    fits(bias.buf.len(), bias.offset, bias.stride, tasks, cols, "add_row_bias bias");
    fits(c.buf.len(), c.offset, c.stride, tasks, rows * cols, "add_row_bias C");
    let p = rows_params(tasks, rows, cols, &bias, &c);
    gpu.dispatch(&ADD_ROW_BIAS, &p, &[bias.buf.binding(), c.buf.binding()], u32_of(tasks * rows * cols, "add_row_bias entries"));
}

pub(crate) fn sum_rows(gpu: &GpuBackend, s: SumRows, e: View<'_, GpuVector>, out: ViewMut<'_, GpuVector>) {
    let SumRows { tasks, rows, cols, alpha, beta } = s;
    fits(e.buf.len(), e.offset, e.stride, tasks, rows * cols, "sum_rows E");
    fits(out.buf.len(), out.offset, out.stride, tasks, cols, "sum_rows out");
    let p = Params { alpha: alpha as f32, beta: beta as f32, ..rows_params(tasks, rows, cols, &e, &out) };
    gpu.dispatch(&SUM_ROWS, &p, &[e.buf.binding(), out.buf.binding()], u32_of(tasks * cols, "sum_rows entries"));
}

/// Each kernel of this file, reflected against its WGSL.
#[cfg(test)]
pub(super) fn reflect_all() -> Vec<(Kernel, crate::Result<()>)> {
    [GEMM, ADD_ROW_BIAS, SUM_ROWS].into_iter().map(|k| (k, k.check::<Params>())).collect()
}
