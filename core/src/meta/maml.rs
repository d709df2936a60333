//! MAML (Finn et al. 2017; SPEC §6.3): every parameter θ = [backbone | head] is adapted per
//! task by N gradient steps on the support loss, `θ_{t,k+1} = θ_{t,k} − α ∇L_S(θ_{t,k})`, and
//! the meta-gradient is the derivative of the query loss at `θ_{t,N}` w.r.t. the shared
//! initialisation, second order through the whole network:
//! ```text
//! g_N = ∇L_Q(θ_{t,N});   g_k = g_{k+1} − α H_S(θ_{t,k}) g_{k+1}   (k = N−1 … 0);   ∇θ = Σ_t g_{t,0}
//! ```
//! The Hessian-vector products are exact: forward-mode tangents (Pearlmutter's R-operator)
//! through the forward and the backward of the network. First-order MAML drops the `H_S` terms.
//! Support and query are forwarded separately (as learn2learn's MAML examples do), so batch-norm
//! statistics are per task over the support, resp. the query. The inner loss is the plain mean
//! cross-entropy (the reference's extra `/25` is an inner learning rate 25× smaller).

use crate::backend::Coef;
use crate::meta::head::{self, HeadShape};
use crate::meta::learner::{broadcast, sum_tasks, Learner, TaskBatch};
use crate::meta::model::{self, Activations, Conv4};
use crate::meta::ops::{Gemm, MetaBackend, SoftmaxCurvature, SoftmaxXent, SumRows, View, ViewMut};

/// Per-rows buffers of one forward/backward (support or query).
struct Pass<B: MetaBackend> {
    rows: usize,
    act: Activations<B>,
    z: B::Vector,
    probs: B::Vector,
    resid: B::Vector,
    stats: B::Vector,
    rz: B::Vector,
    rresid: B::Vector,
}

impl<B: MetaBackend> Pass<B> {
    fn new(be: &B, net: &Conv4, tasks: usize, rows: usize) -> Self {
        let n = tasks * rows * net.ways;
        Pass {
            rows,
            act: Activations::new(be, net, tasks, rows),
            z: be.zeros(n, "maml logits"),
            probs: be.zeros(n, "maml probs"),
            resid: be.zeros(n, "maml residual"),
            stats: be.zeros(2 * tasks, "maml stats"),
            rz: be.zeros(n, "maml logits tangent"),
            rresid: be.zeros(n, "maml residual tangent"),
        }
    }
}

/// MAML's buffers: the per-task parameters at every inner step, the running meta-gradient and
/// scratch.
pub struct MamlWork<B: MetaBackend> {
    support: Pass<B>,
    query: Pass<B>,
    thetas: Vec<B::Vector>,
    g: B::Vector,
    hv: B::Vector,
    scratch: B::Vector,
    /// Per task: mean query cross-entropy and number correct.
    pub stats_q: B::Vector,
}

fn take_work<B: MetaBackend>(be: &B, l: &mut Learner<B>) -> MamlWork<B> {
    l.maml.take().unwrap_or_else(|| {
        let (net, t) = (l.cfg.net, l.cfg.meta_batch);
        let p = net.total_len();
        MamlWork {
            support: Pass::new(be, &net, t, l.cfg.support_rows()),
            query: Pass::new(be, &net, t, l.cfg.query_rows()),
            thetas: (0..=l.cfg.inner_steps).map(|k| be.zeros(t * p, &format!("maml theta {k}"))).collect(),
            g: be.zeros(t * p, "maml meta-gradient"),
            hv: be.zeros(t * p, "maml hvp"),
            scratch: be.zeros(t * p, "maml scratch gradient"),
            stats_q: be.zeros(2 * t, "maml query stats"),
        }
    })
}

/// The loss `scale·Σ_rows CE` on one set (support or query) of every task's images.
struct SetLoss<'a, B: MetaBackend> {
    /// Tasks in the meta-batch.
    tasks: usize,
    /// The set's images, task-major.
    images: &'a B::Vector,
    /// One class label per image.
    labels: &'a B::Vector,
    /// The factor on the summed cross-entropy.
    scale: f64,
}

/// Where and along what [`hvp`] takes its Hessian-vector products: per-task parameters θ and
/// per-task directions v (blocks of `net.total_len()` each).
struct HvpAt<'a, V> {
    theta: &'a V,
    v: &'a V,
}

/// The loss of every task at its own θ (per-task blocks of `net.total_len()`), and, when `grad`
/// is given, its gradient w.r.t. θ per task.
fn loss_grad<B: MetaBackend>(
    be: &B,
    net: &Conv4,
    loss: &SetLoss<'_, B>,
    theta: &B::Vector,
    pass: &mut Pass<B>,
    grad: Option<&mut B::Vector>,
) {
    let SetLoss { tasks, images, labels, scale } = *loss;
    let (p, bl, d, ways, rows) = (net.total_len(), net.backbone_len(), net.features(), net.ways, pass.rows);
    let hs = HeadShape { tasks, ns: rows, nq: 0, d, ways };
    let th = View::per_task(theta, p);
    model::forward(be, net, images, th, &mut pass.act);
    let feats = View::per_task(pass.act.features(), rows * d);
    head::logits(be, &hs, feats, rows, th.shifted(bl), &mut pass.z);
    be.softmax_xent(
        SoftmaxXent { tasks, rows, classes: ways, scale },
        &pass.z,
        labels,
        &mut pass.probs,
        Some(&mut pass.resid),
        &mut pass.stats,
    );
    let Some(grad) = grad else { return };
    let resid = View::per_task(&pass.resid, rows * ways);
    // Head: dA = Eᵀ F, db = Eᵀ1; features: dF = E A.
    let g = Gemm { tasks, m: ways, n: d, k: rows, trans_a: true, trans_b: false, alpha: 1.0, beta: 0.0 };
    be.gemm(g, resid, View::per_task(pass.act.features(), rows * d), ViewMut { buf: &mut *grad, offset: bl, stride: p });
    be.sum_rows(
        SumRows { tasks, rows, cols: ways, alpha: 1.0, beta: 0.0 },
        resid,
        ViewMut { buf: &mut *grad, offset: bl + ways * d, stride: p },
    );
    let g = Gemm { tasks, m: rows, n: d, k: ways, trans_a: false, trans_b: false, alpha: 1.0, beta: 0.0 };
    be.gemm(g, resid, th.shifted(bl), ViewMut::per_task(pass.act.features_grad(), rows * d));
    model::backward(be, net, images, th, &mut pass.act, ViewMut::per_task(grad, p));
}

/// `hv_t = H_t(θ_t) v_t`, the Hessian of `scale·Σ_rows CE` at each task's θ applied to its `v`,
/// exactly: the forward and backward at θ (the gradient into `scratch`), then their tangents
/// along v.
fn hvp<B: MetaBackend>(
    be: &B,
    net: &Conv4,
    loss: &SetLoss<'_, B>,
    at: HvpAt<'_, B::Vector>,
    pass: &mut Pass<B>,
    scratch: &mut B::Vector,
    hv: &mut B::Vector,
) {
    let SetLoss { tasks, images, scale, .. } = *loss;
    let HvpAt { theta, v } = at;
    let (p, bl, d, ways, rows) = (net.total_len(), net.backbone_len(), net.features(), net.ways, pass.rows);
    let hs = HeadShape { tasks, ns: rows, nq: 0, d, ways };
    loss_grad(be, net, loss, theta, pass, Some(scratch));
    let (th, rv) = (View::per_task(theta, p), View::per_task(v, p));
    model::forward_tangent(be, net, images, th, rv, &mut pass.act);
    // RZ = F RAᵀ + 1 Rbᵀ + RF Aᵀ.
    head::logits(be, &hs, View::per_task(pass.act.features(), rows * d), rows, rv.shifted(bl), &mut pass.rz);
    let g = Gemm { tasks, m: rows, n: ways, k: d, trans_a: false, trans_b: true, alpha: 1.0, beta: 1.0 };
    be.gemm(g, View::per_task(pass.act.features_tangent(), rows * d), th.shifted(bl), ViewMut::per_task(&mut pass.rz, rows * ways));
    // RE = scale·(diag P − P Pᵀ) RZ row by row.
    be.softmax_curvature(
        SoftmaxCurvature { rows: tasks * rows, classes: ways, scale, accumulate: false },
        &pass.probs,
        &pass.rz,
        &mut pass.rresid,
    );
    let (e, re) = (View::per_task(&pass.resid, rows * ways), View::per_task(&pass.rresid, rows * ways));
    // R dA = REᵀ F + Eᵀ RF,  R db = REᵀ1.
    let g = Gemm { tasks, m: ways, n: d, k: rows, trans_a: true, trans_b: false, alpha: 1.0, beta: 0.0 };
    be.gemm(g, re, View::per_task(pass.act.features(), rows * d), ViewMut { buf: &mut *hv, offset: bl, stride: p });
    be.gemm(
        Gemm { beta: 1.0, ..g },
        e,
        View::per_task(pass.act.features_tangent(), rows * d),
        ViewMut { buf: &mut *hv, offset: bl, stride: p },
    );
    be.sum_rows(
        SumRows { tasks, rows, cols: ways, alpha: 1.0, beta: 0.0 },
        re,
        ViewMut { buf: &mut *hv, offset: bl + ways * d, stride: p },
    );
    // R dF = RE A + E RA.
    let g = Gemm { tasks, m: rows, n: d, k: ways, trans_a: false, trans_b: false, alpha: 1.0, beta: 0.0 };
    be.gemm(g, re, th.shifted(bl), ViewMut::per_task(pass.act.features_grad_tangent(), rows * d));
    be.gemm(Gemm { beta: 1.0, ..g }, e, rv.shifted(bl), ViewMut::per_task(pass.act.features_grad_tangent(), rows * d));
    model::backward_tangent(be, net, images, th, rv, &mut pass.act, ViewMut::per_task(hv, p));
}

/// θ_{t,0} = θ, then N inner steps on each task's support: `θ_{t,k+1} = θ_{t,k} − α ∇L_S(θ_{t,k})`.
fn adapt<B: MetaBackend>(be: &B, l: &Learner<B>, batch: &TaskBatch<B>, w: &mut MamlWork<B>) {
    let (net, t, alpha) = (l.cfg.net, l.cfg.meta_batch, l.cfg.inner_lr);
    broadcast(be, t, net.total_len(), &l.theta, &mut w.thetas[0]);
    let support = SetLoss { tasks: t, images: &batch.support, labels: &batch.labels_s, scale: 1.0 / l.cfg.support_rows() as f64 };
    for k in 0..l.cfg.inner_steps {
        let (done, next) = w.thetas.split_at_mut(k + 1);
        loss_grad(be, &net, &support, &done[k], &mut w.support, Some(&mut w.scratch));
        be.copy(&done[k], &mut next[0]);
        be.axpy(Coef::c(-alpha), &w.scratch, &mut next[0]);
    }
}

/// The meta-gradient into `l.grad_theta` (see the module doc).
pub(crate) fn meta_gradient<B: MetaBackend>(be: &B, l: &mut Learner<B>, batch: &TaskBatch<B>, first_order: bool) {
    let mut w = take_work(be, l);
    let (net, t, alpha, n) = (l.cfg.net, l.cfg.meta_batch, l.cfg.inner_lr, l.cfg.inner_steps);
    adapt(be, l, batch, &mut w);
    // g_N = ∇ of the mean over tasks of each task's mean query CE, at θ_{t,N}.
    let query = SetLoss { tasks: t, images: &batch.query, labels: &batch.labels_q, scale: 1.0 / (l.cfg.query_rows() * t) as f64 };
    loss_grad(be, &net, &query, &w.thetas[n], &mut w.query, Some(&mut w.g));
    be.copy(&w.query.stats, &mut w.stats_q);
    if !first_order {
        let support = SetLoss { tasks: t, images: &batch.support, labels: &batch.labels_s, scale: 1.0 / l.cfg.support_rows() as f64 };
        for k in (0..n).rev() {
            hvp(be, &net, &support, HvpAt { theta: &w.thetas[k], v: &w.g }, &mut w.support, &mut w.scratch, &mut w.hv);
            be.axpy(Coef::c(-alpha), &w.hv, &mut w.g);
        }
    }
    sum_tasks(be, t, net.total_len(), &w.g, &mut l.grad_theta);
    l.maml = Some(w);
}

/// Adaptation and query statistics only (evaluation).
pub(crate) fn adapt_and_query<B: MetaBackend>(be: &B, l: &mut Learner<B>, batch: &TaskBatch<B>) {
    let mut w = take_work(be, l);
    let (net, t, n) = (l.cfg.net, l.cfg.meta_batch, l.cfg.inner_steps);
    adapt(be, l, batch, &mut w);
    let query = SetLoss { tasks: t, images: &batch.query, labels: &batch.labels_q, scale: 1.0 / (l.cfg.query_rows() * t) as f64 };
    loss_grad(be, &net, &query, &w.thetas[n], &mut w.query, None);
    be.copy(&w.query.stats, &mut w.stats_q);
    l.maml = Some(w);
}
