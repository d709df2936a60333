//! The conv4 backbone of SPEC §6.2 (learn2learn's `ConvBase`): `blocks` × [3×3 conv → batch
//! norm with per-task batch statistics → ReLU → 2×2 max-pool], then a linear head. Forward,
//! backward and their forward-mode tangents (for MAML's exact Hessian-vector products) are
//! composed from [`MetaBackend`] primitives, one call per layer for the whole meta-batch.
//!
//! Parameter layout of the backbone (one flat vector): for each block, the conv block (weight
//! `[hidden][c_in][3][3]`, bias `[hidden]`) then the batch-norm block (γ `[hidden]`, β
//! `[hidden]`). The head (weight `[ways][D]`, bias `[ways]`) is a separate block; MAML keeps
//! `θ = [backbone | head]` in one vector.

use crate::meta::ops::{BnLayer, Conv3x3, Dual, ImageBatch, MetaBackend, View, ViewMut};
use crate::sampler::Sampler;

/// The network's shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Conv4 {
    /// Input image channels.
    pub channels: usize,
    /// Input image height in pixels.
    pub height: usize,
    /// Input image width in pixels.
    pub width: usize,
    /// Channels of every hidden layer (64 in the reference).
    pub hidden: usize,
    /// Number of conv blocks (4 in the reference).
    pub blocks: usize,
    /// Classes of the head.
    pub ways: usize,
}

impl Conv4 {
    /// The input shape of block `l` for `tasks × per_task` images.
    pub fn block_input(&self, l: usize, tasks: usize, per_task: usize) -> ImageBatch {
        let mut b = ImageBatch { tasks, per_task, channels: self.channels, height: self.height, width: self.width };
        for _ in 0..l {
            b = b.with_channels(self.hidden).pooled();
        }
        b
    }
    fn c_in(&self, l: usize) -> usize {
        if l == 0 {
            self.channels
        } else {
            self.hidden
        }
    }
    fn conv_len(&self, l: usize) -> usize {
        self.hidden * self.c_in(l) * 9 + self.hidden
    }
    /// Offset of block `l`'s conv parameters in the backbone vector.
    pub fn conv_offset(&self, l: usize) -> usize {
        (0..l).map(|j| self.conv_len(j) + 2 * self.hidden).sum()
    }
    /// Offset of block `l`'s batch-norm parameters.
    pub fn bn_offset(&self, l: usize) -> usize {
        self.conv_offset(l) + self.conv_len(l)
    }
    /// Parameters of the backbone φ (every block's conv and batch norm).
    pub fn backbone_len(&self) -> usize {
        self.conv_offset(self.blocks)
    }
    /// Feature dimension D (the flattened output of the last block).
    pub fn features(&self) -> usize {
        self.block_input(self.blocks, 1, 1).image_len()
    }
    /// Parameters of the head: weight `ways × D` and bias `ways`.
    pub fn head_len(&self) -> usize {
        self.ways * self.features() + self.ways
    }
    /// Backbone then head (MAML's θ).
    pub fn total_len(&self) -> usize {
        self.backbone_len() + self.head_len()
    }

    /// SPEC §6.2 init: conv weights Xavier-uniform (gain 1), conv bias 0, BN γ ~ U(0, 1), β 0.
    pub fn init_backbone(&self, rng: &mut Sampler) -> Vec<f64> {
        let mut p = vec![0.0; self.backbone_len()];
        for l in 0..self.blocks {
            let (fan_in, fan_out) = (self.c_in(l) * 9, self.hidden * 9);
            let a = (6.0 / (fan_in + fan_out) as f64).sqrt();
            let off = self.conv_offset(l);
            for v in &mut p[off..off + self.hidden * self.c_in(l) * 9] {
                *v = a * (2.0 * rng.uniform() - 1.0);
            }
            let bn = self.bn_offset(l);
            for v in &mut p[bn..bn + self.hidden] {
                *v = rng.uniform();
            }
        }
        p
    }

    /// PyTorch `nn.Linear` default init: weight and bias U(±1/√D).
    pub fn init_head(&self, rng: &mut Sampler) -> Vec<f64> {
        let a = 1.0 / (self.features() as f64).sqrt();
        (0..self.head_len()).map(|_| a * (2.0 * rng.uniform() - 1.0)).collect()
    }
}

/// Per-block buffers for one shape of meta-batch: the block outputs of the forward (conv, BN,
/// pooled), BN statistics, and scratch for the backward and the tangents (allocated lazily).
pub struct Activations<B: MetaBackend> {
    /// Tasks of the meta-batch shape the buffers are sized for.
    pub tasks: usize,
    /// Images per task.
    pub per_task: usize,
    conv: Vec<B::Vector>,
    bn: Vec<B::Vector>,
    stats: Vec<B::Vector>,
    /// Pooled outputs: `pooled[l]` is block l's output = block l+1's input; the last is F.
    pooled: Vec<B::Vector>,
    /// Gradient scratch: `d_out[l]` is the gradient w.r.t. block l's output (shape of
    /// `pooled[l]`), `d_bn`/`d_conv` inside the block.
    d_out: Vec<B::Vector>,
    d_bn: Vec<B::Vector>,
    d_conv: Vec<B::Vector>,
    tangent: Option<Tangents<B>>,
}

/// Tangent (R-op) buffers, the same shapes as the primal ones.
struct Tangents<B: MetaBackend> {
    conv: Vec<B::Vector>,
    bn: Vec<B::Vector>,
    pooled: Vec<B::Vector>,
    d_out: Vec<B::Vector>,
    d_bn: Vec<B::Vector>,
    d_conv: Vec<B::Vector>,
}

fn alloc<B: MetaBackend>(be: &B, net: &Conv4, tasks: usize, per_task: usize, label: &str) -> [Vec<B::Vector>; 3] {
    let mut inner = Vec::new();
    let mut inner2 = Vec::new();
    let mut pooled = Vec::new();
    for l in 0..net.blocks {
        let b = net.block_input(l, tasks, per_task).with_channels(net.hidden);
        inner.push(be.zeros(b.len(), &format!("{label} conv {l}")));
        inner2.push(be.zeros(b.len(), &format!("{label} bn {l}")));
        pooled.push(be.zeros(b.pooled().len(), &format!("{label} pooled {l}")));
    }
    [inner, inner2, pooled]
}

impl<B: MetaBackend> Activations<B> {
    /// Buffers for `tasks × per_task` images through `net` (tangent buffers come later, on
    /// first use).
    pub fn new(be: &B, net: &Conv4, tasks: usize, per_task: usize) -> Self {
        let [conv, bn, pooled] = alloc(be, net, tasks, per_task, "meta act");
        let [d_conv, d_bn, d_out] = alloc(be, net, tasks, per_task, "meta grad");
        let stats = (0..net.blocks).map(|l| be.zeros(2 * tasks * net.hidden, &format!("meta bn stats {l}"))).collect();
        Activations { tasks, per_task, conv, bn, stats, pooled, d_out, d_bn, d_conv, tangent: None }
    }

    /// The features F (`tasks × per_task × D`) after [`forward`].
    pub fn features(&self) -> &B::Vector {
        self.pooled.last().expect("at least one block")
    }
    /// The tangent of the features after [`forward_tangent`].
    pub fn features_tangent(&self) -> &B::Vector {
        self.tangent.as_ref().and_then(|t| t.pooled.last()).expect("forward_tangent ran")
    }
    /// Where the gradient w.r.t. the features goes before [`backward`].
    pub fn features_grad(&mut self) -> &mut B::Vector {
        self.d_out.last_mut().expect("at least one block")
    }
    /// Where the tangent of the features' gradient goes before [`backward_tangent`].
    pub fn features_grad_tangent(&mut self) -> &mut B::Vector {
        self.tangent.as_mut().and_then(|t| t.d_out.last_mut()).expect("forward_tangent ran")
    }
}

fn conv_view<'a, V>(net: &Conv4, theta: View<'a, V>, l: usize) -> View<'a, V> {
    theta.shifted(net.conv_offset(l))
}
fn bn_view<'a, V>(net: &Conv4, theta: View<'a, V>, l: usize) -> View<'a, V> {
    theta.shifted(net.bn_offset(l))
}

/// The backbone's forward for `act.tasks × act.per_task` images: features in `act.features()`.
/// `theta` points at the backbone (stride 0 shared, or per task).
pub fn forward<B: MetaBackend>(be: &B, net: &Conv4, images: &B::Vector, theta: View<'_, B::Vector>, act: &mut Activations<B>) {
    for l in 0..net.blocks {
        let b = net.block_input(l, act.tasks, act.per_task);
        let conv = Conv3x3 { batch: b, c_out: net.hidden, accumulate: false };
        let (before, after) = act.pooled.split_at_mut(l);
        let x = if l == 0 { images } else { &before[l - 1] };
        be.conv3x3(x, conv, conv_view(net, theta, l), true, &mut act.conv[l]);
        let h = b.with_channels(net.hidden);
        be.batch_norm(&act.conv[l], h, bn_view(net, theta, l), &mut act.bn[l], &mut act.stats[l]);
        be.relu_maxpool(&act.bn[l], h, &mut after[0]);
    }
}

/// The backbone's backward from `act.features_grad()` (set by the caller): parameter gradients
/// into the parameter blocks of `grad` (stride 0: summed over all tasks; per task otherwise),
/// overwritten.
pub fn backward<B: MetaBackend>(
    be: &B,
    net: &Conv4,
    images: &B::Vector,
    theta: View<'_, B::Vector>,
    act: &mut Activations<B>,
    grad: ViewMut<'_, B::Vector>,
) {
    let ViewMut { buf: grad, offset: grad_offset, stride: grad_stride } = grad;
    for l in (0..net.blocks).rev() {
        let b = net.block_input(l, act.tasks, act.per_task);
        let conv = Conv3x3 { batch: b, c_out: net.hidden, accumulate: false };
        let h = b.with_channels(net.hidden);
        be.relu_maxpool_backward(&act.bn[l], &act.d_out[l], h, &mut act.d_bn[l]);
        let g = ViewMut { buf: &mut *grad, offset: grad_offset + net.bn_offset(l), stride: grad_stride };
        be.batch_norm_backward(
            &act.conv[l],
            &act.d_bn[l],
            BnLayer { batch: h, params: bn_view(net, theta, l), stats: &act.stats[l] },
            &mut act.d_conv[l],
            g,
        );
        let x = if l == 0 { images } else { &act.pooled[l - 1] };
        let g = ViewMut { buf: &mut *grad, offset: grad_offset + net.conv_offset(l), stride: grad_stride };
        be.conv3x3_param_grad(x, &act.d_conv[l], conv, g);
        if l > 0 {
            be.conv3x3_input_grad(&act.d_conv[l], conv, conv_view(net, theta, l), &mut act.d_out[l - 1]);
        }
    }
}

impl<B: MetaBackend> Activations<B> {
    fn tangents(&mut self, be: &B, net: &Conv4) -> &mut Tangents<B> {
        if self.tangent.is_none() {
            let [conv, bn, pooled] = alloc(be, net, self.tasks, self.per_task, "meta tangent");
            let [d_conv, d_bn, d_out] = alloc(be, net, self.tasks, self.per_task, "meta grad tangent");
            self.tangent = Some(Tangents { conv, bn, pooled, d_out, d_bn, d_conv });
        }
        self.tangent.as_mut().expect("just set")
    }
}

/// The forward tangent along a parameter direction `rtheta` (images fixed), after [`forward`]
/// at the same `theta`: the features' tangent in `act.features_tangent()`.
pub fn forward_tangent<B: MetaBackend>(
    be: &B,
    net: &Conv4,
    images: &B::Vector,
    theta: View<'_, B::Vector>,
    rtheta: View<'_, B::Vector>,
    act: &mut Activations<B>,
) {
    let (tasks, per_task) = (act.tasks, act.per_task);
    act.tangents(be, net);
    let t = act.tangent.as_mut().expect("allocated");
    for l in 0..net.blocks {
        let b = net.block_input(l, tasks, per_task);
        let conv = Conv3x3 { batch: b, c_out: net.hidden, accumulate: false };
        let h = b.with_channels(net.hidden);
        let x = if l == 0 { images } else { &act.pooled[l - 1] };
        // R(conv(x, w)) = conv(x, Rw) (with Rb) + conv(Rx, w) (no bias).
        be.conv3x3(x, conv, conv_view(net, rtheta, l), true, &mut t.conv[l]);
        if l > 0 {
            let (before, _) = t.pooled.split_at_mut(l);
            be.conv3x3(&before[l - 1], Conv3x3 { accumulate: true, ..conv }, conv_view(net, theta, l), false, &mut t.conv[l]);
        }
        be.batch_norm_tangent(
            Dual { value: &act.conv[l], tangent: &t.conv[l] },
            BnLayer { batch: h, params: bn_view(net, theta, l), stats: &act.stats[l] },
            bn_view(net, rtheta, l),
            &mut t.bn[l],
        );
        be.relu_maxpool_tangent(&act.bn[l], &t.bn[l], h, &mut t.pooled[l]);
    }
}

/// The tangent of [`backward`] along `rtheta` (after [`backward`] and [`forward_tangent`], with
/// the features-gradient tangent set by the caller): the parameter-gradient tangent, i.e. the
/// Hessian-vector product's backbone part, into the parameter blocks of `rgrad` (overwritten).
pub fn backward_tangent<B: MetaBackend>(
    be: &B,
    net: &Conv4,
    images: &B::Vector,
    theta: View<'_, B::Vector>,
    rtheta: View<'_, B::Vector>,
    act: &mut Activations<B>,
    rgrad: ViewMut<'_, B::Vector>,
) {
    let ViewMut { buf: rgrad, offset: grad_offset, stride: grad_stride } = rgrad;
    let (tasks, per_task) = (act.tasks, act.per_task);
    let t = act.tangent.as_mut().expect("forward_tangent ran");
    for l in (0..net.blocks).rev() {
        let b = net.block_input(l, tasks, per_task);
        let conv = Conv3x3 { batch: b, c_out: net.hidden, accumulate: false };
        let h = b.with_channels(net.hidden);
        be.relu_maxpool_backward(&act.bn[l], &t.d_out[l], h, &mut t.d_bn[l]);
        let g = ViewMut { buf: &mut *rgrad, offset: grad_offset + net.bn_offset(l), stride: grad_stride };
        be.batch_norm_backward_tangent(
            Dual { value: &act.conv[l], tangent: &t.conv[l] },
            Dual { value: &act.d_bn[l], tangent: &t.d_bn[l] },
            BnLayer { batch: h, params: bn_view(net, theta, l), stats: &act.stats[l] },
            bn_view(net, rtheta, l),
            &mut t.d_conv[l],
            g,
        );
        let x = if l == 0 { images } else { &act.pooled[l - 1] };
        let g = ViewMut { buf: &mut *rgrad, offset: grad_offset + net.conv_offset(l), stride: grad_stride };
        be.conv3x3_param_grad(x, &t.d_conv[l], conv, g);
        if l > 0 {
            let g = ViewMut { buf: &mut *rgrad, offset: grad_offset + net.conv_offset(l), stride: grad_stride };
            be.conv3x3_param_grad(&t.pooled[l - 1], &act.d_conv[l], Conv3x3 { accumulate: true, ..conv }, g);
            let (before, _) = t.d_out.split_at_mut(l);
            be.conv3x3_input_grad(&t.d_conv[l], conv, conv_view(net, theta, l), &mut before[l - 1]);
            be.conv3x3_input_grad(&act.d_conv[l], Conv3x3 { accumulate: true, ..conv }, conv_view(net, rtheta, l), &mut before[l - 1]);
        }
    }
}
