//! The meta-learning primitives: the operations of the conv4 backbone, its head and the
//! hypergradient recursions, for a whole meta-batch of tasks at once.
//!
//! Conventions shared by every method:
//! - **Images** are NCHW f32/f64 in one buffer: `tasks × per_task` images, task-major (task t's
//!   images are `t·per_task .. (t+1)·per_task`), each `channels × height × width`, row-major
//!   inside a channel. Every image operation covers all images of all tasks in one call (one
//!   dispatch per layer per meta-batch on the GPU, never a loop over tasks).
//! - **Parameters** are addressed through a [`View`]: `offset` of task 0's block in the buffer
//!   and `stride` between consecutive tasks' blocks, so task t reads `buf[offset + t·stride ..]`.
//!   `stride = 0` means one block shared by every task (the backbone φ of ITD-BiO); a positive
//!   stride gives each task its own copy (MAML's adapted weights, the adapted heads).
//! - **Parameter gradients** are written through a [`ViewMut`] with the same convention: with
//!   `stride = 0` the gradient is summed over *all* images of all tasks into the one block; with
//!   `stride > 0` task t's gradient (summed over its own images only) goes to its own block.
//! - Each layer's parameters are one contiguous block: conv = weight `[c_out][c_in][3][3]`
//!   (PyTorch OIHW) then bias `[c_out]`; batch norm = γ `[channels]` then β `[channels]`; a
//!   linear head = weight `[ways][features]` (PyTorch `nn.Linear`) then bias `[ways]`.
//! - "Overwritten" outputs are fully written (old contents ignored); "accumulated" outputs get
//!   `+=` when `accumulate` is true and are overwritten when false.
//! - Tangent (`*_tangent`) methods are forward-mode derivatives (Pearlmutter's R-operator):
//!   given the primal inputs and a direction `R·` of the inputs and parameters, they return the
//!   directional derivative `R·` of the output. MAML's exact Hessian-vector products are built
//!   from them (conv and GEMM are bilinear, so their R-ops are sums of the ordinary ops with
//!   `accumulate`; ReLU/max-pool route the tangent with the primal's mask).

use crate::backend::Backend;

/// Batch-norm ε (PyTorch's default, as in learn2learn's `ConvBase`).
pub const BN_EPS: f64 = 1e-5;

/// The shape of a meta-batch of images: `tasks × per_task` images of `channels × height × width`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageBatch {
    /// Tasks in the meta-batch.
    pub tasks: usize,
    /// Images per task.
    pub per_task: usize,
    /// Channels per image.
    pub channels: usize,
    /// Rows per channel.
    pub height: usize,
    /// Columns per row.
    pub width: usize,
}

impl ImageBatch {
    /// Number of images (all tasks).
    pub fn images(&self) -> usize {
        self.tasks * self.per_task
    }
    /// Entries of one image.
    pub fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }
    /// Entries of the whole batch.
    pub fn len(&self) -> usize {
        self.images() * self.image_len()
    }
    /// Whether the batch has no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The same images with another channel count (a conv's output).
    pub fn with_channels(&self, channels: usize) -> ImageBatch {
        ImageBatch { channels, ..*self }
    }
    /// The shape after a 2×2 max-pool with floor (`⌊h/2⌋ × ⌊w/2⌋`).
    pub fn pooled(&self) -> ImageBatch {
        ImageBatch { height: self.height / 2, width: self.width / 2, ..*self }
    }
}

/// A 3×3 convolution (padding 1, stride 1) over a meta-batch: the input's shape, the output
/// channels, and whether the operation accumulates into its output (`+=`) or overwrites it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv3x3 {
    /// The input's shape (the output has `batch.with_channels(c_out)`).
    pub batch: ImageBatch,
    /// Output channels.
    pub c_out: usize,
    /// `+=` into the output (true) or overwrite it (false).
    pub accumulate: bool,
}

/// A batch-norm layer as its forward pass left it: the shape, the layer's (γ, β) view, and the
/// statistics [`MetaBackend::batch_norm`] saved (per group μ and s).
pub struct BnLayer<'a, V> {
    /// The shape of the layer's input and output.
    pub batch: ImageBatch,
    /// The BN block (γ then β, `channels` each) per task or shared.
    pub params: View<'a, V>,
    /// `tasks·channels·2` entries: μ and s per (task, channel) group.
    pub stats: &'a V,
}

/// A value with its tangent (its directional derivative `R·` along the current direction), for
/// the forward-mode (`*_tangent`) methods.
pub struct Dual<'a, V> {
    /// The primal value.
    pub value: &'a V,
    /// Its tangent, the same shape.
    pub tangent: &'a V,
}

/// A read-only block of per-task (or shared) data inside a buffer: task t's block starts at
/// `offset + t·stride` (`stride = 0`: one block shared by all tasks).
pub struct View<'a, V> {
    /// The buffer holding the blocks.
    pub buf: &'a V,
    /// Where task 0's block starts.
    pub offset: usize,
    /// Entries between consecutive tasks' blocks (0: one shared block).
    pub stride: usize,
}

impl<V> Clone for View<'_, V> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<V> Copy for View<'_, V> {}

impl<'a, V> View<'a, V> {
    /// One block at the start of `buf`, shared by all tasks.
    pub fn shared(buf: &'a V) -> Self {
        View { buf, offset: 0, stride: 0 }
    }
    /// Per-task blocks of `stride` entries from the start of `buf`.
    pub fn per_task(buf: &'a V, stride: usize) -> Self {
        View { buf, offset: 0, stride }
    }
    /// The same view moved `by` entries further (a later part of each task's block).
    pub fn shifted(self, by: usize) -> Self {
        View { offset: self.offset + by, ..self }
    }
}

/// A writable block of per-task (or shared, `stride = 0`) data inside a buffer; see [`View`].
pub struct ViewMut<'a, V> {
    /// The buffer holding the blocks.
    pub buf: &'a mut V,
    /// Where task 0's block starts.
    pub offset: usize,
    /// Entries between consecutive tasks' blocks (0: one shared block).
    pub stride: usize,
}

impl<'a, V> ViewMut<'a, V> {
    /// One block at the start of `buf`, shared by all tasks.
    pub fn shared(buf: &'a mut V) -> Self {
        ViewMut { buf, offset: 0, stride: 0 }
    }
    /// Per-task blocks of `stride` entries from the start of `buf`.
    pub fn per_task(buf: &'a mut V, stride: usize) -> Self {
        ViewMut { buf, offset: 0, stride }
    }
    /// The same view moved `by` entries further (a later part of each task's block).
    pub fn shifted(self, by: usize) -> Self {
        ViewMut { offset: self.offset + by, ..self }
    }
}

/// A strided batched matrix product `C_t = α·op(A_t)·op(B_t) + β·C_t` for `t < tasks`, with
/// `op(A_t)` `m × k`, `op(B_t)` `k × n`, `C_t` `m × n`. Every matrix is row-major and packed
/// (leading dimension = its stored column count): A_t is stored `m × k`, or `k × m` when
/// `trans_a`; B_t is stored `k × n`, or `n × k` when `trans_b`. With `β = 0` the old C is not
/// read (NaNs in it do not propagate).
#[derive(Clone, Copy, Debug)]
pub struct Gemm {
    /// Products in the batch (one per task).
    pub tasks: usize,
    /// Rows of op(A) and C.
    pub m: usize,
    /// Columns of op(B) and C.
    pub n: usize,
    /// Columns of op(A), rows of op(B): the summed dimension.
    pub k: usize,
    /// A is stored transposed (`k × m`).
    pub trans_a: bool,
    /// B is stored transposed (`n × k`).
    pub trans_b: bool,
    /// α: the factor on the product.
    pub alpha: f64,
    /// β: the factor on the old C (0: C is not read).
    pub beta: f64,
}

/// Column sums of a batch of matrices, [`MetaBackend::sum_rows`]: `out_t[j] = α·Σ_i E_t[i, j] +
/// β·out_t[j]` for the `rows × cols` matrices E_t, `t < tasks`.
#[derive(Clone, Copy, Debug)]
pub struct SumRows {
    /// Matrices in the batch (one per task).
    pub tasks: usize,
    /// Rows of each E_t: the summed dimension.
    pub rows: usize,
    /// Columns of each E_t: the entries of out_t.
    pub cols: usize,
    /// α: the factor on the sums.
    pub alpha: f64,
    /// β: the factor on the old out (0: out is not read).
    pub beta: f64,
}

/// Row-wise softmax cross-entropy, [`MetaBackend::softmax_xent`]: `tasks × rows` rows of
/// `classes` logits, the gradient of `scale·Σ_rows CE`.
#[derive(Clone, Copy, Debug)]
pub struct SoftmaxXent {
    /// Tasks in the batch.
    pub tasks: usize,
    /// Rows per task.
    pub rows: usize,
    /// Logits per row.
    pub classes: usize,
    /// The factor of the loss the gradient is of.
    pub scale: f64,
}

/// The softmax curvature, [`MetaBackend::softmax_curvature`]: `out (+)= scale·p∘(u − ⟨p, u⟩1)`
/// on `rows` rows of `classes` entries.
#[derive(Clone, Copy, Debug)]
pub struct SoftmaxCurvature {
    /// Rows (all tasks').
    pub rows: usize,
    /// Entries per row.
    pub classes: usize,
    /// The factor in front.
    pub scale: f64,
    /// `out +=` (true) or `out =` (false).
    pub accumulate: bool,
}

/// The meta-learning primitives, enqueue-only like the rest of [`Backend`].
pub trait MetaBackend: Backend {
    // ---- 3×3 convolution, padding 1, stride 1 (output has the input's height and width) ----

    /// `out[i, co] (+)= Σ_{ci,ky,kx} w_t[co, ci, ky, kx]·x[i, ci, y+ky−1, x+kx−1] + bias_t[co]`
    /// for every image i (of task t), zero padding outside the image. `x` has shape
    /// `conv.batch`; `out` has shape `conv.batch.with_channels(conv.c_out)`. `params` points at
    /// the conv block (weight `c_out·c_in·9`, then bias `c_out`); with `bias = false` the bias
    /// is not added (the tangent `conv(Rx, w)` term). `out` is accumulated.
    fn conv3x3(&self, x: &Self::Vector, conv: Conv3x3, params: View<'_, Self::Vector>, bias: bool, out: &mut Self::Vector);

    /// The input gradient: `dx (+)= convᵀ(dy, w_t)`, i.e.
    /// `dx[i, ci, y, x] = Σ_{co,ky,kx} w_t[co, ci, ky, kx]·dy[i, co, y−ky+1, x−kx+1]` (zero outside).
    /// `conv.batch` is the *input's* shape (`dx`), `dy` has `batch.with_channels(c_out)`. `dx`
    /// is accumulated.
    fn conv3x3_input_grad(&self, dy: &Self::Vector, conv: Conv3x3, params: View<'_, Self::Vector>, dx: &mut Self::Vector);

    /// The parameter gradient: `dw[co, ci, ky, kx] (+)= Σ_i Σ_{y,x} dy[i, co, y, x]·x[i, ci, y+ky−1, x+kx−1]`
    /// and `db[co] (+)= Σ_i Σ_{y,x} dy[i, co, y, x]`, written to the conv block of `grad` (weight
    /// then bias). With `grad.stride = 0` the sums run over all images of all tasks; otherwise
    /// task t's images go to task t's block. `conv.batch` is the input's shape. Accumulated.
    fn conv3x3_param_grad(&self, x: &Self::Vector, dy: &Self::Vector, conv: Conv3x3, grad: ViewMut<'_, Self::Vector>);

    // ---- batch norm with per-task batch statistics (training mode, always) ----

    /// Per (task t, channel c) group — the `per_task·height·width` entries of channel c in
    /// task t's images — `μ = mean(x)`, `σ² = mean((x−μ)²)` (biased), `s = 1/√(σ²+ε)`
    /// (ε = [`BN_EPS`]), and `y = γ_t[c]·(x−μ)·s + β_t[c]`. `params` points at the BN block
    /// (γ then β, `channels` each). Overwrites `y` (shape `batch`) and `stats`
    /// (`tasks·channels·2` entries: `stats[2(t·C+c)] = μ`, `stats[2(t·C+c)+1] = s`).
    fn batch_norm(
        &self,
        x: &Self::Vector,
        batch: ImageBatch,
        params: View<'_, Self::Vector>,
        y: &mut Self::Vector,
        stats: &mut Self::Vector,
    );

    /// Backward of [`MetaBackend::batch_norm`] given its input `x` and the `layer` it left: with
    /// `x̂ = (x−μ)s` and `g = γ·dy`, per group `dx = s·(g − mean(g) − x̂·mean(g·x̂))`;
    /// `dγ = Σ dy·x̂`, `dβ = Σ dy` (summed over all tasks when `grad.stride = 0`). Overwrites
    /// `dx` and the BN block of `grad`.
    fn batch_norm_backward(
        &self,
        x: &Self::Vector,
        dy: &Self::Vector,
        layer: BnLayer<'_, Self::Vector>,
        dx: &mut Self::Vector,
        grad: ViewMut<'_, Self::Vector>,
    );

    /// Forward tangent along `x.tangent` (Rx) and `rparams`, the direction's BN block:
    /// `Ry = Rγ·x̂ + γ·Rx̂ + Rβ` with `Rx̂ = s·(Rx − mean(Rx) − x̂·mean(x̂·Rx))` per group.
    /// Overwrites `ry`.
    fn batch_norm_tangent(
        &self,
        x: Dual<'_, Self::Vector>,
        layer: BnLayer<'_, Self::Vector>,
        rparams: View<'_, Self::Vector>,
        ry: &mut Self::Vector,
    );

    /// Tangent of [`MetaBackend::batch_norm_backward`] along (`x.tangent` = Rx,
    /// `dy.tangent` = Rdy, `rparams`): the
    /// directional derivative of (dx, dγ, dβ). With `g = γ·dy`, `Rg = Rγ·dy + γ·Rdy`,
    /// `Rs = −s²·mean(x̂·Rx)`:
    /// `Rdx = (Rs/s)·dx + s·(Rg − mean(Rg) − Rx̂·mean(g·x̂) − x̂·mean(Rg·x̂ + g·Rx̂))`,
    /// `Rdγ = Σ (Rdy·x̂ + dy·Rx̂)`, `Rdβ = Σ Rdy`. Overwrites `rdx` and `rgrad`'s BN block.
    fn batch_norm_backward_tangent(
        &self,
        x: Dual<'_, Self::Vector>,
        dy: Dual<'_, Self::Vector>,
        layer: BnLayer<'_, Self::Vector>,
        rparams: View<'_, Self::Vector>,
        rdx: &mut Self::Vector,
        rgrad: ViewMut<'_, Self::Vector>,
    );

    // ---- ReLU then 2×2 max-pool (stride 2, floor) ----

    /// `y[i, c, py, px] = max(0, max_{dy,dx<2} x[i, c, 2py+dy, 2px+dx])`. `batch` is `x`'s shape;
    /// `y` has `batch.pooled()`. Overwrites `y`. (Odd trailing rows/columns are dropped.)
    fn relu_maxpool(&self, x: &Self::Vector, batch: ImageBatch, y: &mut Self::Vector);

    /// Backward: each pooled entry's gradient goes to the argmax of its 2×2 window in `x`
    /// (scan order (0,0), (0,1), (1,0), (1,1); the first maximum wins) if that maximum is > 0,
    /// else nowhere. Overwrites `dx` (shape `batch`; entries no window selects are 0). The same
    /// routing of a tangent `Rdy` gives the tangent of the backward.
    fn relu_maxpool_backward(&self, x: &Self::Vector, dy: &Self::Vector, batch: ImageBatch, dx: &mut Self::Vector);

    /// Forward tangent: `Ry[o] = Rx[argmax(o)]` when the window's maximum is > 0, else 0 (the
    /// argmax rule of [`MetaBackend::relu_maxpool_backward`]). Overwrites `ry` (`batch.pooled()`).
    fn relu_maxpool_tangent(&self, x: &Self::Vector, rx: &Self::Vector, batch: ImageBatch, ry: &mut Self::Vector);

    // ---- the head and the hypergradient recursions ----

    /// Strided batched GEMM, see [`Gemm`]: task t's A, B, C blocks are at the views'
    /// `offset + t·stride` (a stride of 0 shares one matrix across tasks; C's stride must be > 0
    /// unless `tasks = 1`).
    fn gemm(&self, g: Gemm, a: View<'_, Self::Vector>, b: View<'_, Self::Vector>, c: ViewMut<'_, Self::Vector>);

    /// `C_t[i, j] += bias_t[j]` for the `rows × cols` matrices C_t (a head's bias; with
    /// `rows = tasks`-style use on a zeroed C it broadcasts a shared block to every task).
    fn add_row_bias(&self, tasks: usize, rows: usize, cols: usize, bias: View<'_, Self::Vector>, c: ViewMut<'_, Self::Vector>);

    /// Column sums, see [`SumRows`]: `out_t[j] = α·Σ_i E_t[i, j] + β·out_t[j]` for `rows × cols`
    /// matrices E_t (a head's bias gradient `Eᵀ1`; with `β = 0` the old `out` is not read).
    fn sum_rows(&self, s: SumRows, e: View<'_, Self::Vector>, out: ViewMut<'_, Self::Vector>);

    /// Row-wise softmax cross-entropy (shape and scale from `x`) for `tasks × rows` rows of `classes` logits `z`
    /// (`[tasks][rows][classes]`) with integer class labels stored as reals in `labels`
    /// (`[tasks][rows]`). Overwrites `probs` (softmax of each row, same layout as `z`), `grad`
    /// when given (`scale·(probs − onehot(label))`, the gradient of `scale·Σ_rows CE`), and
    /// `stats` (`2·tasks` entries: `stats[2t]` = task t's mean CE over its rows, `stats[2t+1]`
    /// = how many of its rows have the label as the argmax of z, first maximum winning).
    fn softmax_xent(
        &self,
        x: SoftmaxXent,
        z: &Self::Vector,
        labels: &Self::Vector,
        probs: &mut Self::Vector,
        grad: Option<&mut Self::Vector>,
        stats: &mut Self::Vector,
    );

    /// The softmax curvature on `rows` rows of `classes` entries (see [`SoftmaxCurvature`]):
    /// `out (+)= scale·p∘(u − ⟨p, u⟩1)` row by row (`p` a row of probabilities). It is both the
    /// tangent of `softmax_xent`'s gradient (`u = Rz`) and the `M = P∘(U − ((P∘U)1)1ᵀ)` of SPEC
    /// §6.4. Accumulated.
    fn softmax_curvature(&self, c: SoftmaxCurvature, p: &Self::Vector, u: &Self::Vector, out: &mut Self::Vector);
}
