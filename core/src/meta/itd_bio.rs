//! ITD-BiO (Ji, Yang & Liang 2021; SPEC §6.3): the outer variable is the backbone φ, the inner
//! variable each task's linear head, adapted by N gradient steps on the support loss from one
//! fixed random head (drawn once, never learned). The hypergradient is the exact derivative of
//! the query loss through all N steps: closed form at the head (SPEC §6.4), then one ordinary
//! first-order backward through φ.
//!
//! FO-ITD-BiO and ANIL are this same meta-step with other choices (`HeadOnly`); they live in
//! their own files and call `head_only_meta_gradient`.

use crate::backend::Coef;
use crate::meta::head::{self, Adaptation, HeadBackward, SetLabels};
use crate::meta::learner::{sum_tasks, HeadOnlyWork, Learner, TaskBatch};
use crate::meta::model::{self, Activations};
use crate::meta::ops::{MetaBackend, View, ViewMut};

/// The choices that distinguish ITD-BiO, FO-ITD-BiO and ANIL.
#[derive(Clone, Copy, Debug)]
pub(crate) struct HeadOnly {
    /// Differentiate through the adaptation (ITD-BiO, ANIL) or not (FO-ITD-BiO).
    pub through_adaptation: bool,
    /// Every task starts from its own random head (FO-ITD-BiO) instead of the shared one.
    pub random_init: bool,
    /// Also compute the gradient w.r.t. the shared initial head (ANIL).
    pub learn_init: bool,
}

/// ITD-BiO's meta-gradient: [`head_only_meta_gradient`] through the adaptation, from the fixed head.
pub(crate) fn meta_gradient<B: MetaBackend>(be: &B, l: &mut Learner<B>, batch: &TaskBatch<B>) {
    head_only_meta_gradient(be, l, batch, HeadOnly { through_adaptation: true, random_init: false, learn_init: false });
}

fn take_work<B: MetaBackend>(be: &B, l: &mut Learner<B>) -> HeadOnlyWork<B> {
    l.head_only.take().unwrap_or_else(|| {
        let s = l.cfg.head_shape();
        HeadOnlyWork {
            act: Activations::new(be, &l.cfg.net, s.tasks, s.ns + s.nq),
            ad: Adaptation::new(be, s, l.cfg.inner_steps),
            hb: HeadBackward::new(be, s),
        }
    })
}

/// F = φ(X) for every task (support and query forwarded together: each task's BN statistics
/// cover both, as in the reference), then the heads' adaptation and the query loss at A_N.
fn forward_and_adapt<B: MetaBackend>(be: &B, l: &mut Learner<B>, batch: &TaskBatch<B>, w: &mut HeadOnlyWork<B>, random_init: bool) {
    let (net, alpha) = (l.cfg.net, l.cfg.inner_lr);
    let s = l.cfg.head_shape();
    model::forward(be, &net, &batch.images, View::shared(&l.theta), &mut w.act);
    let init = if random_init { View::per_task(&l.random_heads, s.head_len()) } else { View::shared(&l.head) };
    // The outer loss is the mean over tasks of each task's mean query cross-entropy.
    let scale_q = 1.0 / (s.nq * s.tasks) as f64;
    let labels = SetLabels { support: &batch.labels_s, query: &batch.labels_q };
    head::adapt(be, w.act.features(), init, labels, alpha, scale_q, &mut w.ad);
}

/// The meta-step shared by ITD-BiO, FO-ITD-BiO and ANIL:
/// ```text
/// F = φ(X_t) for all tasks t
/// A_{t,0} = A_init (or a random head);  A_{t,k+1} = A_{t,k} − α ∇_A L_S(A_{t,k}; F)   (k < N)
/// F̄ = ∂ L_Q(A_{t,N}; F) / ∂F   through the N steps (SPEC §6.4), or at fixed A_{t,N} (first order)
/// ∇_φ = backward of φ from F̄;   ANIL: ∇_{A_init} = Σ_t Ā_{t,0}
/// ```
pub(crate) fn head_only_meta_gradient<B: MetaBackend>(be: &B, l: &mut Learner<B>, batch: &TaskBatch<B>, how: HeadOnly) {
    let mut w = take_work(be, l);
    if how.random_init {
        l.draw_random_heads(be);
    }
    forward_and_adapt(be, l, batch, &mut w, how.random_init);
    head::hypergradient(be, w.act.features(), &w.ad, l.cfg.inner_lr, !how.through_adaptation, &mut w.hb, &mut l.fbar);
    be.copy(&l.fbar, w.act.features_grad());
    model::backward(be, &l.cfg.net, &batch.images, View::shared(&l.theta), &mut w.act, ViewMut::shared(&mut l.grad_theta));
    if how.learn_init {
        sum_tasks(be, l.cfg.meta_batch, l.cfg.net.head_len(), &w.hb.head_bar, &mut l.grad_head);
    } else {
        be.fill(Coef::c(0.0), &mut l.grad_head);
    }
    l.head_only = Some(w);
}

/// Adaptation and query statistics only (evaluation).
pub(crate) fn adapt_and_query<B: MetaBackend>(be: &B, l: &mut Learner<B>, batch: &TaskBatch<B>, random_init: bool) {
    let mut w = take_work(be, l);
    forward_and_adapt(be, l, batch, &mut w, random_init);
    l.head_only = Some(w);
}
