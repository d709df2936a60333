//! [`MetaBackend`] on wgpu: every method is a fixed handful of dispatches over the whole
//! meta-batch (the kernels are in `kernels::{conv, batch_norm, pool, gemm, xent}`).

use super::kernels::batch_norm::{self, Fields, Mode};
use super::kernels::{conv, gemm, pool, xent};
use super::{GpuBackend, GpuVector};
use crate::meta::{BnLayer, Conv3x3, Dual, Gemm, ImageBatch, MetaBackend, SoftmaxCurvature, SoftmaxXent, SumRows, View, ViewMut};

impl MetaBackend for GpuBackend {
    fn conv3x3(&self, x: &GpuVector, conv: Conv3x3, params: View<'_, GpuVector>, bias: bool, out: &mut GpuVector) {
        conv::forward(self, x, conv, params, bias, out)
    }

    fn conv3x3_input_grad(&self, dy: &GpuVector, conv: Conv3x3, params: View<'_, GpuVector>, dx: &mut GpuVector) {
        conv::input_grad(self, dy, conv, params, dx)
    }

    fn conv3x3_param_grad(&self, x: &GpuVector, dy: &GpuVector, conv: Conv3x3, grad: ViewMut<'_, GpuVector>) {
        conv::param_grad(self, x, dy, conv, grad)
    }

    fn batch_norm(&self, x: &GpuVector, batch: ImageBatch, params: View<'_, GpuVector>, y: &mut GpuVector, stats: &mut GpuVector) {
        batch_norm::stats(self, x, batch, stats);
        let f = Fields { x, rx: None, dy: None, rdy: None };
        batch_norm::apply(self, Mode::Forward, BnLayer { batch, params, stats }, f, None, y, None)
    }

    fn batch_norm_backward(
        &self,
        x: &GpuVector,
        dy: &GpuVector,
        layer: BnLayer<'_, GpuVector>,
        dx: &mut GpuVector,
        grad: ViewMut<'_, GpuVector>,
    ) {
        let f = Fields { x, rx: None, dy: Some(dy), rdy: None };
        batch_norm::apply(self, Mode::Backward, layer, f, None, dx, Some(grad))
    }

    fn batch_norm_tangent(&self, x: Dual<'_, GpuVector>, layer: BnLayer<'_, GpuVector>, rparams: View<'_, GpuVector>, ry: &mut GpuVector) {
        let f = Fields { x: x.value, rx: Some(x.tangent), dy: None, rdy: None };
        batch_norm::apply(self, Mode::Tangent, layer, f, Some(rparams), ry, None)
    }

    fn batch_norm_backward_tangent(
        &self,
        x: Dual<'_, GpuVector>,
        dy: Dual<'_, GpuVector>,
        layer: BnLayer<'_, GpuVector>,
        rparams: View<'_, GpuVector>,
        rdx: &mut GpuVector,
        rgrad: ViewMut<'_, GpuVector>,
    ) {
        let f = Fields { x: x.value, rx: Some(x.tangent), dy: Some(dy.value), rdy: Some(dy.tangent) };
        batch_norm::apply(self, Mode::BackwardTangent, layer, f, Some(rparams), rdx, Some(rgrad))
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
