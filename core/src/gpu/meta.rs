//! [`MetaBackend`] on wgpu: every method is a fixed handful of dispatches over the whole
//! meta-batch (the kernels are in `kernels::{conv, batch_norm, pool, gemm, xent}`).

use super::kernels::batch_norm::{self, Fields, Mode};
use super::kernels::{conv, gemm, pool, xent};
use super::{GpuBackend, GpuVector};
use crate::meta::{Gemm, ImageBatch, MetaBackend, SoftmaxCurvature, SoftmaxXent, SumRows, View, ViewMut};

impl MetaBackend for GpuBackend {
    fn conv3x3(
        &self,
        x: &GpuVector,
        batch: ImageBatch,
        c_out: usize,
        params: View<'_, GpuVector>,
        bias: bool,
        out: &mut GpuVector,
        accumulate: bool,
    ) {
        conv::forward(self, x, batch, c_out, params, bias, out, accumulate)
    }

    fn conv3x3_input_grad(
        &self,
        dy: &GpuVector,
        batch: ImageBatch,
        c_out: usize,
        params: View<'_, GpuVector>,
        dx: &mut GpuVector,
        accumulate: bool,
    ) {
        conv::input_grad(self, dy, batch, c_out, params, dx, accumulate)
    }

    fn conv3x3_param_grad(
        &self,
        x: &GpuVector,
        dy: &GpuVector,
        batch: ImageBatch,
        c_out: usize,
        grad: ViewMut<'_, GpuVector>,
        accumulate: bool,
    ) {
        conv::param_grad(self, x, dy, batch, c_out, grad, accumulate)
    }

    fn batch_norm(&self, x: &GpuVector, batch: ImageBatch, params: View<'_, GpuVector>, y: &mut GpuVector, stats: &mut GpuVector) {
        batch_norm::stats(self, x, batch, stats);
        let f = Fields { x, rx: None, dy: None, rdy: None, stats };
        batch_norm::apply(self, Mode::Forward, batch, f, params, None, y, None)
    }

    fn batch_norm_backward(
        &self,
        x: &GpuVector,
        dy: &GpuVector,
        batch: ImageBatch,
        params: View<'_, GpuVector>,
        stats: &GpuVector,
        dx: &mut GpuVector,
        grad: ViewMut<'_, GpuVector>,
    ) {
        let f = Fields { x, rx: None, dy: Some(dy), rdy: None, stats };
        batch_norm::apply(self, Mode::Backward, batch, f, params, None, dx, Some(grad))
    }

    fn batch_norm_tangent(
        &self,
        x: &GpuVector,
        rx: &GpuVector,
        batch: ImageBatch,
        params: View<'_, GpuVector>,
        rparams: View<'_, GpuVector>,
        stats: &GpuVector,
        ry: &mut GpuVector,
    ) {
        let f = Fields { x, rx: Some(rx), dy: None, rdy: None, stats };
        batch_norm::apply(self, Mode::Tangent, batch, f, params, Some(rparams), ry, None)
    }

    fn batch_norm_backward_tangent(
        &self,
        x: &GpuVector,
        rx: &GpuVector,
        dy: &GpuVector,
        rdy: &GpuVector,
        batch: ImageBatch,
        params: View<'_, GpuVector>,
        rparams: View<'_, GpuVector>,
        stats: &GpuVector,
        rdx: &mut GpuVector,
        rgrad: ViewMut<'_, GpuVector>,
    ) {
        let f = Fields { x, rx: Some(rx), dy: Some(dy), rdy: Some(rdy), stats };
        batch_norm::apply(self, Mode::BackwardTangent, batch, f, params, Some(rparams), rdx, Some(rgrad))
    }

    fn relu_maxpool(&self, x: &GpuVector, batch: ImageBatch, y: &mut GpuVector) {
        pool::forward(self, x, None, batch, y)
    }

    fn relu_maxpool_backward(&self, x: &GpuVector, dy: &GpuVector, batch: ImageBatch, dx: &mut GpuVector) {
        pool::backward(self, x, dy, batch, dx)
    }

    fn relu_maxpool_tangent(&self, x: &GpuVector, rx: &GpuVector, batch: ImageBatch, ry: &mut GpuVector) {
        pool::forward(self, x, Some(rx), batch, ry)
    }

    fn gemm(&self, g: Gemm, a: View<'_, GpuVector>, b: View<'_, GpuVector>, c: ViewMut<'_, GpuVector>) {
        gemm::gemm(self, g, a, b, c)
    }

    fn add_row_bias(&self, tasks: usize, rows: usize, cols: usize, bias: View<'_, GpuVector>, c: ViewMut<'_, GpuVector>) {
        gemm::add_row_bias(self, tasks, rows, cols, bias, c)
    }

    fn sum_rows(&self, s: SumRows, e: View<'_, GpuVector>, out: ViewMut<'_, GpuVector>) {
        gemm::sum_rows(self, s, e, out)
    }

    fn softmax_xent(
        &self,
        x: SoftmaxXent,
        z: &GpuVector,
        labels: &GpuVector,
        probs: &mut GpuVector,
        grad: Option<&mut GpuVector>,
        stats: &mut GpuVector,
    ) {
        xent::softmax_xent(self, x, z, labels, probs, grad, stats)
    }

    fn softmax_curvature(&self, c: SoftmaxCurvature, p: &GpuVector, u: &GpuVector, out: &mut GpuVector) {
        xent::softmax_curvature(self, c, p, u, out)
    }
}
