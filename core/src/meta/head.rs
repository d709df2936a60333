//! The linear head on top of the features, its inner adaptation, and the closed-form
//! head-level hypergradient of SPEC §6.4 — batched over the tasks of a meta-batch with the
//! strided GEMM and row-wise kernels.
//!
//! Per task t: `F_t` is `n × D` (support rows `S` first, `ns` of them, then query rows `Q̃`, `nq`);
//! the head is `A` (`ways × D`) and `b` (`ways`), stored as one block `[A | b]`. The inner loss is
//! the mean cross-entropy over the support rows.

use crate::backend::Coef;
use crate::meta::ops::{Gemm, MetaBackend, SoftmaxCurvature, SoftmaxXent, SumRows, View, ViewMut};

/// Sizes of one meta-batch at the head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeadShape {
    /// Tasks in the meta-batch.
    pub tasks: usize,
    /// Support rows per task.
    pub ns: usize,
    /// Query rows per task.
    pub nq: usize,
    /// Feature dimension D.
    pub d: usize,
    /// Classes: the head's outputs.
    pub ways: usize,
}

impl HeadShape {
    /// Entries of one task's head block `[A | b]`: `ways × D + ways`.
    pub fn head_len(&self) -> usize {
        self.ways * self.d + self.ways
    }
    fn rows(&self) -> usize {
        self.ns + self.nq
    }
    /// Support rows of the features (task stride `n·D`).
    fn support<'a, V>(&self, feats: &'a V) -> View<'a, V> {
        View { buf: feats, offset: 0, stride: self.rows() * self.d }
    }
    fn query<'a, V>(&self, feats: &'a V) -> View<'a, V> {
        View { buf: feats, offset: self.ns * self.d, stride: self.rows() * self.d }
    }
}

/// `Z_t = X_t A_tᵀ + 1 b_tᵀ` for `rows` feature rows per task.
pub fn logits<B: MetaBackend>(be: &B, s: &HeadShape, x: View<'_, B::Vector>, rows: usize, head: View<'_, B::Vector>, z: &mut B::Vector) {
    let g = Gemm { tasks: s.tasks, m: rows, n: s.ways, k: s.d, trans_a: false, trans_b: true, alpha: 1.0, beta: 0.0 };
    be.gemm(g, x, head, ViewMut::per_task(&mut *z, rows * s.ways));
    be.add_row_bias(s.tasks, rows, s.ways, head.shifted(s.ways * s.d), ViewMut::per_task(z, rows * s.ways));
}

/// `head ← head − α·(E_tᵀ X_t, E_tᵀ1)`: a gradient step on the head from residuals `E` of `rows`
/// rows (or, with other α, any head update of that form).
fn head_step<B: MetaBackend>(be: &B, s: &HeadShape, alpha: f64, e: &B::Vector, rows: usize, x: View<'_, B::Vector>, head: &mut B::Vector) {
    let g = Gemm { tasks: s.tasks, m: s.ways, n: s.d, k: rows, trans_a: true, trans_b: false, alpha: -alpha, beta: 1.0 };
    be.gemm(g, View::per_task(e, rows * s.ways), x, ViewMut::per_task(&mut *head, s.head_len()));
    let out = ViewMut { buf: head, offset: s.ways * s.d, stride: s.head_len() };
    be.sum_rows(SumRows { tasks: s.tasks, rows, cols: s.ways, alpha: -alpha, beta: 1.0 }, View::per_task(e, rows * s.ways), out);
}

/// The class labels (stored as reals, task-major) of every task's support and query rows.
pub struct SetLabels<'a, V> {
    /// One label per support row.
    pub support: &'a V,
    /// One label per query row.
    pub query: &'a V,
}

/// The inner adaptation's record: the heads `A_k` (k = 0..N), the support probabilities `P_k`
/// and residuals `E_k = (P_k − Y_s)/ns` (k < N), and the query's at `A_N`.
pub struct Adaptation<B: MetaBackend> {
    /// The sizes the buffers are for.
    pub shape: HeadShape,
    /// The heads `A_0 … A_N`, each per task (`tasks × head_len`).
    pub heads: Vec<B::Vector>,
    probs: Vec<B::Vector>,
    resid: Vec<B::Vector>,
    z_s: B::Vector,
    z_q: B::Vector,
    probs_q: B::Vector,
    resid_q: B::Vector,
    stats_s: B::Vector,
    /// Per task: mean query cross-entropy and number of correct query predictions.
    pub stats_q: B::Vector,
}

impl<B: MetaBackend> Adaptation<B> {
    /// Buffers for an adaptation of `steps` (N) steps on meta-batches of `shape`.
    pub fn new(be: &B, shape: HeadShape, steps: usize) -> Self {
        let s = shape;
        let v = |n: usize, l: &str| be.zeros(n, l);
        Adaptation {
            shape,
            heads: (0..=steps).map(|k| v(s.tasks * s.head_len(), &format!("meta head {k}"))).collect(),
            probs: (0..steps).map(|k| v(s.tasks * s.ns * s.ways, &format!("meta support probs {k}"))).collect(),
            resid: (0..steps).map(|k| v(s.tasks * s.ns * s.ways, &format!("meta support residual {k}"))).collect(),
            z_s: v(s.tasks * s.ns * s.ways, "meta support logits"),
            z_q: v(s.tasks * s.nq * s.ways, "meta query logits"),
            probs_q: v(s.tasks * s.nq * s.ways, "meta query probs"),
            resid_q: v(s.tasks * s.nq * s.ways, "meta query residual"),
            stats_s: v(2 * s.tasks, "meta support stats"),
            stats_q: v(2 * s.tasks, "meta query stats"),
        }
    }
    /// N: the adaptation steps the buffers hold.
    pub fn steps(&self) -> usize {
        self.heads.len() - 1
    }
}

/// Inner loop: `A_0 = init` (shared, stride 0, or per task), then for k < N
/// `A_{k+1} = A_k − α E_kᵀ S`, `b_{k+1} = b_k − α E_kᵀ1`; finally the query's probabilities,
/// residual `scale_q·(P_q − Y_q)` and statistics at `A_N`.
pub fn adapt<B: MetaBackend>(
    be: &B,
    feats: &B::Vector,
    init: View<'_, B::Vector>,
    labels: SetLabels<'_, B::Vector>,
    alpha: f64,
    scale_q: f64,
    ad: &mut Adaptation<B>,
) {
    let SetLabels { support: labels_s, query: labels_q } = labels;
    let s = ad.shape;
    be.fill(Coef::c(0.0), &mut ad.heads[0]);
    be.add_row_bias(s.tasks, 1, s.head_len(), init, ViewMut::per_task(&mut ad.heads[0], s.head_len()));
    for k in 0..ad.steps() {
        let (done, next) = ad.heads.split_at_mut(k + 1);
        logits(be, &s, s.support(feats), s.ns, View::per_task(&done[k], s.head_len()), &mut ad.z_s);
        be.softmax_xent(
            SoftmaxXent { tasks: s.tasks, rows: s.ns, classes: s.ways, scale: 1.0 / s.ns as f64 },
            &ad.z_s,
            labels_s,
            &mut ad.probs[k],
            Some(&mut ad.resid[k]),
            &mut ad.stats_s,
        );
        be.copy(&done[k], &mut next[0]);
        head_step(be, &s, alpha, &ad.resid[k], s.ns, s.support(feats), &mut next[0]);
    }
    let last = &ad.heads[ad.steps()];
    logits(be, &s, s.query(feats), s.nq, View::per_task(last, s.head_len()), &mut ad.z_q);
    be.softmax_xent(
        SoftmaxXent { tasks: s.tasks, rows: s.nq, classes: s.ways, scale: scale_q },
        &ad.z_q,
        labels_q,
        &mut ad.probs_q,
        Some(&mut ad.resid_q),
        &mut ad.stats_q,
    );
}

/// Scratch for [`hypergradient`].
pub struct HeadBackward<B: MetaBackend> {
    u: B::Vector,
    m: B::Vector,
    /// Per task `(Ā, b̄)`: after [`hypergradient`], the gradient w.r.t. the initial head `A_0`.
    pub head_bar: B::Vector,
}

impl<B: MetaBackend> HeadBackward<B> {
    /// Scratch for meta-batches of shape `s`.
    pub fn new(be: &B, s: HeadShape) -> Self {
        HeadBackward {
            u: be.zeros(s.tasks * s.ns * s.ways, "meta hg U"),
            m: be.zeros(s.tasks * s.ns * s.ways, "meta hg M"),
            head_bar: be.zeros(s.tasks * s.head_len(), "meta hg head bar"),
        }
    }
}

/// SPEC §6.4: the gradient of the query loss (scaled as in [`adapt`]) w.r.t. the features
/// `F̄` (overwritten, the same layout as F) and w.r.t. the initial head (`hb.head_bar`), through
/// the whole adaptation:
/// ```text
/// Q̄ = E_q A_N;  Ā = E_qᵀ Q̃;  b̄ = E_qᵀ1;  S̄ = 0
/// for k = N−1 … 0:
///    U = S Āᵀ + 1 b̄ᵀ;  M = P_k∘(U − ((P_k∘U)1)1ᵀ)
///    S̄ += −α (E_k Ā + (M/ns) A_k)
///    Ā ← Ā − α (M/ns)ᵀ S;  b̄ ← b̄ − α (M/ns)ᵀ1
/// ```
/// With `first_order` (FO-ITD-BiO) the adaptation is not differentiated: `S̄ = 0` and the head
/// gradient is the query's `(Ā, b̄)` at `A_N`.
pub fn hypergradient<B: MetaBackend>(
    be: &B,
    feats: &B::Vector,
    ad: &Adaptation<B>,
    alpha: f64,
    first_order: bool,
    hb: &mut HeadBackward<B>,
    fbar: &mut B::Vector,
) {
    let s = ad.shape;
    let hl = s.head_len();
    let n = s.rows();
    let eq = View::per_task(&ad.resid_q, s.nq * s.ways);
    let a_n = View::per_task(&ad.heads[ad.steps()], hl);
    // Q̄ = E_q A_N into the query rows of F̄; S̄ = 0 in the support rows.
    be.fill(Coef::c(0.0), fbar);
    let g = Gemm { tasks: s.tasks, m: s.nq, n: s.d, k: s.ways, trans_a: false, trans_b: false, alpha: 1.0, beta: 0.0 };
    be.gemm(g, eq, a_n, ViewMut { buf: &mut *fbar, offset: s.ns * s.d, stride: n * s.d });
    // Ā = E_qᵀ Q̃, b̄ = E_qᵀ1.
    be.fill(Coef::c(0.0), &mut hb.head_bar);
    head_step(be, &s, -1.0, &ad.resid_q, s.nq, s.query(feats), &mut hb.head_bar);
    if first_order {
        return;
    }
    for k in (0..ad.steps()).rev() {
        // U = S Āᵀ + 1 b̄ᵀ, M = softmax curvature of P_k on U, over ns.
        logits(be, &s, s.support(feats), s.ns, View::per_task(&hb.head_bar, hl), &mut hb.u);
        be.softmax_curvature(
            SoftmaxCurvature { rows: s.tasks * s.ns, classes: s.ways, scale: 1.0 / s.ns as f64, accumulate: false },
            &ad.probs[k],
            &hb.u,
            &mut hb.m,
        );
        // S̄ += −α (E_k Ā + M A_k).
        let g = Gemm { tasks: s.tasks, m: s.ns, n: s.d, k: s.ways, trans_a: false, trans_b: false, alpha: -alpha, beta: 1.0 };
        be.gemm(
            g,
            View::per_task(&ad.resid[k], s.ns * s.ways),
            View::per_task(&hb.head_bar, hl),
            ViewMut { buf: &mut *fbar, offset: 0, stride: n * s.d },
        );
        be.gemm(
            g,
            View::per_task(&hb.m, s.ns * s.ways),
            View::per_task(&ad.heads[k], hl),
            ViewMut { buf: &mut *fbar, offset: 0, stride: n * s.d },
        );
        // Ā ← Ā − α Mᵀ S, b̄ ← b̄ − α Mᵀ1.
        head_step(be, &s, alpha, &hb.m, s.ns, s.support(feats), &mut hb.head_bar);
    }
}
